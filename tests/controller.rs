//! The controller against a mocked apiserver and a fake OTLP/HTTP collector: export first, then
//! mark; nothing marked while the collector can't take the spans; refused spans dropped and
//! marked so.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use hyper::http::{self, Request, Response, StatusCode};
use jobtrace::controller::{Context, run};
use jobtrace::export::{Exporter, ExporterConfig, Protocol};
use jobtrace::metrics::Metrics;
use kube::client::Body;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SPAN_ID: &str = "1111111111111111";

fn finished_job(exported: bool) -> Value {
    let mut annotations = json!({
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "jobtrace.dev/trace-id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "jobtrace.dev/span-id": SPAN_ID,
        "jobtrace.dev/parent-span-id": "00f067aa0ba902b7"
    });
    if exported {
        annotations["jobtrace.dev/exported"] = json!("true");
    }
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": "nightly", "namespace": "reports", "uid": "uid-1", "resourceVersion": "7",
                      "creationTimestamp": "2026-11-23T10:00:00Z",
                      "labels": { "jobtrace.dev/traced": "true" }, "annotations": annotations },
        "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "i" }] } } },
        "status": { "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True",
            "lastTransitionTime": "2026-11-23T10:00:30Z", "lastProbeTime": "2026-11-23T10:00:30Z" }] }
    })
}

/// What happened, in order: `export <status>` from the collector, `patch <body>` from the
/// apiserver.
type Log = Arc<Mutex<Vec<String>>>;

/// A fake OTLP/HTTP collector answering each export with the next status of `statuses` (the last
/// one repeats).
async fn collector(log: Log, statuses: Vec<u16>) -> String {
    let statuses = Arc::new(Mutex::new(statuses));
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let (log, statuses) = (log.clone(), statuses.clone());
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let spans: Vec<String> = request
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                    .map(|s| {
                        jobtrace::context::SpanId(s.span_id.clone().try_into().unwrap()).to_string()
                    })
                    .collect();
                let status = {
                    let mut statuses = statuses.lock().unwrap();
                    if statuses.len() > 1 {
                        statuses.remove(0)
                    } else {
                        statuses[0]
                    }
                };
                log.lock()
                    .unwrap()
                    .push(format!("export {status} {}", spans.join(",")));
                let body = ExportTraceServiceResponse::default().encode_to_vec();
                (StatusCode::from_u16(status).unwrap(), body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A mocked apiserver: lists return the Job (marked once patched), watches end at once, patches
/// and events are recorded.
fn apiserver(log: Log) -> kube::Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        let mut marked = false;
        while let Some((request, send)) = handle.next_request().await {
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or_default().to_owned();
            let method = request.method().clone();
            let response = if method == http::Method::PATCH {
                let body = request.into_body().collect_bytes().await.unwrap();
                log.lock()
                    .unwrap()
                    .push(format!("patch {}", String::from_utf8_lossy(&body)));
                marked = true;
                json!(finished_job(true))
            } else if method == http::Method::POST {
                json!({ "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": { "name": "e", "namespace": "reports" } })
            } else if query.contains("watch=true") {
                tokio::time::sleep(Duration::from_millis(100)).await;
                send.send_response(Response::builder().body(Body::empty()).unwrap());
                continue;
            } else if path.ends_with("/jobs") {
                json!({ "apiVersion": "batch/v1", "kind": "JobList", "metadata": { "resourceVersion": "7" },
                        "items": [finished_job(marked)] })
            } else {
                json!({ "apiVersion": "v1", "kind": "PodList", "metadata": { "resourceVersion": "7" }, "items": [] })
            };
            let body = Body::from(serde_json::to_vec(&response).unwrap());
            send.send_response(Response::builder().body(body).unwrap());
        }
    });
    kube::Client::new(service, "default")
}

async fn run_until(
    log: &Log,
    statuses: Vec<u16>,
    done: impl Fn(&[String]) -> bool,
) -> (Vec<String>, Arc<Metrics>) {
    let endpoint = collector(log.clone(), statuses).await;
    let config = ExporterConfig {
        protocol: Protocol::HttpProtobuf,
        endpoint,
        headers: Vec::new(),
        timeout: Duration::from_secs(2),
    };
    let metrics = Arc::new(Metrics::default());
    let context = Arc::new(Context {
        client: apiserver(log.clone()),
        exporter: Exporter::new(config).unwrap(),
        metrics: metrics.clone(),
        resource: vec![("service.name", "jobtrace".to_owned())],
        instance: "test".to_owned(),
        namespace: None,
        readiness: Arc::default(),
        tracer: None,
    });
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(context, shutdown.clone()));
    let finished = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if done(&log.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    shutdown.cancel();
    let _ = task.await;
    let entries = log.lock().unwrap().clone();
    assert!(finished.is_ok(), "timed out: {entries:?}");
    (entries, metrics)
}

fn patches(log: &[String]) -> Vec<&String> {
    log.iter().filter(|l| l.starts_with("patch")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_then_marks_the_very_object() {
    let log = Log::default();
    let (log, metrics) = run_until(&log, vec![200], |l| !patches(l).is_empty()).await;
    assert_eq!(log[0], format!("export 200 {SPAN_ID}"), "{log:?}");
    let patch: Value = serde_json::from_str(log[1].strip_prefix("patch ").unwrap()).unwrap();
    assert_eq!(
        patch,
        json!([
            { "op": "test", "path": "/metadata/uid", "value": "uid-1" },
            { "op": "add", "path": "/metadata/annotations/jobtrace.dev~1exported", "value": "true" }
        ])
    );
    assert_eq!(metrics.spans_exported.get(), 1);
    assert_eq!(
        patches(&log).len(),
        1,
        "a marked Job is not exported again: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_marked_until_the_collector_takes_the_spans() {
    let log = Log::default();
    let (log, metrics) = run_until(&log, vec![503, 503, 200], |l| !patches(l).is_empty()).await;
    let exports: Vec<&String> = log.iter().filter(|l| l.starts_with("export")).collect();
    assert!(exports.len() >= 3, "{log:?}");
    assert!(exports[0].starts_with("export 503") && exports[1].starts_with("export 503"));
    let first_patch = log.iter().position(|l| l.starts_with("patch")).unwrap();
    let first_success = log
        .iter()
        .position(|l| l.starts_with("export 200"))
        .unwrap();
    assert!(
        first_success < first_patch,
        "marked only after the export succeeded: {log:?}"
    );
    assert!(metrics.export_retries.get() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_spans_are_dropped_and_marked_dropped() {
    let log = Log::default();
    let (log, metrics) = run_until(&log, vec![400], |l| !patches(l).is_empty()).await;
    assert_eq!(
        log.iter().filter(|l| l.starts_with("export 400")).count(),
        1,
        "a 400 is not retried: {log:?}"
    );
    assert!(patches(&log)[0].contains(r#""value":"dropped""#), "{log:?}");
    assert_eq!(metrics.spans_dropped.get(), 1);
    assert_eq!(metrics.spans_exported.get(), 0);
}
