//! The controller against a mocked apiserver that plays a scenario, and a fake OTLP/HTTP
//! collector: a finished Job's pods listed and exported with it, then the Job marked (its mark
//! the only write); a marked Job is never exported again, even when a relist shows it once more;
//! a finished pod of a running Job waits for it; nothing marked while the collector can't take
//! the spans, a `Retry-After: 0` waited as the backoff and a refusal of the credentials retried;
//! refused spans dropped and marked so.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use jobtrace::k8s::controller::{Deps, run};
use jobtrace::k8s::metrics::Metrics;
use jobtrace::k8s::otlp::{Exporter, ExporterConfig, Outcome, Protocol};
use jobtrace_testkit::fixtures::{JOB_SPAN, JOB_UID, POD_SPAN, TRACE_ID, TestJob, TestPod};
use kube::client::Body;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The selector of every list and watch the controller makes.
const TRACED: &str = "jobtrace.dev/traced=true";
/// How long the controller has to make all the requests of a scenario.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(10);
/// How long the apiserver listens for a request too many once the scenario is played: longer
/// than the export loop takes to batch, export and mark a Job it wrongly took for unexported.
const QUIET: Duration = Duration::from_secs(1);

/// The typical Job `reports/nightly`, traced and complete; marked `jobtrace.dev/exported:
/// <outcome>` if given.
fn finished_job(exported: Option<&str>) -> Value {
    let mut job = TestJob::new()
        .traced()
        .created()
        .set("/metadata/resourceVersion", json!("7"))
        .status(&json!({ "succeeded": 1, "conditions": [{ "type": "Complete", "status": "True",
            "lastTransitionTime": "2026-11-23T10:00:30Z", "lastProbeTime": "2026-11-23T10:00:30Z" }] }));
    if let Some(outcome) = exported {
        job = job.annotations(&json!({ "jobtrace.dev/exported": outcome }));
    }
    job.json()
}

/// The typical Job's pod, succeeded.
fn finished_pod() -> Value {
    TestPod::new()
        .set("/metadata/resourceVersion", json!("6"))
        .status(
            "Succeeded",
            &json!([{ "name": "main", "state": { "terminated": { "exitCode": 0,
                "startedAt": "2026-11-23T10:00:02Z", "finishedAt": "2026-11-23T10:00:28Z" } } }]),
        )
        .json()
}

/// The typical Job, still running.
fn running_job() -> Value {
    TestJob::new()
        .traced()
        .created()
        .set("/metadata/resourceVersion", json!("6"))
        .status(&json!({ "active": 1 }))
        .json()
}

/// The JSON patch marking the very Job exported (same uid) with `outcome`.
fn mark(outcome: &str) -> Value {
    json!([
        { "op": "test", "path": "/metadata/uid", "value": JOB_UID },
        { "op": "add", "path": "/metadata/annotations/jobtrace.dev~1exported", "value": outcome }
    ])
}

/// What happened, in order: `export <status> <span ids>` from the collector, `patch` and `event`
/// from the apiserver.
type Log = Arc<Mutex<Vec<String>>>;

/// When each export reached the collector.
type Times = Arc<Mutex<Vec<std::time::Instant>>>;

/// A fake OTLP/HTTP collector answering each export with the next status of `statuses` (the last
/// one repeats); a 429 says `Retry-After: 0`.
async fn collector(log: Log, times: Times, statuses: Vec<u16>) -> String {
    let statuses = Arc::new(Mutex::new(statuses));
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let (log, times, statuses) = (log.clone(), times.clone(), statuses.clone());
            async move {
                times.lock().unwrap().push(std::time::Instant::now());
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let spans: Vec<String> = request
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                    .map(|s| {
                        jobtrace::core::context::SpanId(s.span_id.clone().try_into().unwrap())
                            .to_string()
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
                let mut headers = hyper::http::HeaderMap::new();
                if status == 429 {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
                }
                (StatusCode::from_u16(status).unwrap(), headers, body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The controller's request streams. Each makes its requests in order, but they run
/// concurrently: the order is checked within a stream, never across streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stream {
    /// The watcher of traced Jobs.
    Jobs,
    /// The watcher of traced pods.
    Pods,
    /// The export loop: a mark, then an Event, for each exported Job.
    Export,
}

/// One request the controller is to make, and the apiserver's answer.
#[derive(Debug)]
enum Step {
    /// A watcher lists the traced objects, and gets `items` at `version`.
    List {
        version: &'static str,
        items: Vec<Value>,
    },
    /// A watcher watches from `version`; its events end as `ends` says.
    Watch { version: &'static str, ends: Ends },
    /// The export loop lists the pods of the finished Job, as of its version or later, and gets
    /// `items`.
    PodsOfJob(Vec<Value>),
    /// The export loop patches the Job with exactly this JSON patch.
    Mark(Value),
    /// The export loop records that the Job's span was exported, as an `events.k8s.io` Event.
    Event,
}

/// How the events of a watch end.
#[derive(Debug, Clone, Copy)]
enum Ends {
    /// They don't: the watch stays open until the test ends.
    Never,
    /// With `410 Gone` as soon as the Job is marked, before the watch delivers the change (as
    /// when etcd compacted it away): the watcher has to list again.
    ExpiredOnceMarked,
}

impl Step {
    fn list<const N: usize>(version: &'static str, items: [Value; N]) -> Self {
        Self::List {
            version,
            items: items.into(),
        }
    }

    /// The method and the path this step expects in `stream`.
    fn target(&self, stream: Stream) -> (Method, &'static str) {
        match (self, stream) {
            (Self::List { .. } | Self::Watch { .. }, Stream::Jobs) => {
                (Method::GET, "/apis/batch/v1/jobs")
            }
            (Self::List { .. } | Self::Watch { .. }, Stream::Pods) => (Method::GET, "/api/v1/pods"),
            (Self::PodsOfJob(_), Stream::Export) => {
                (Method::GET, "/api/v1/namespaces/reports/pods")
            }
            (Self::Mark(_), Stream::Export) => (
                Method::PATCH,
                "/apis/batch/v1/namespaces/reports/jobs/nightly",
            ),
            (Self::Event, Stream::Export) => (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/reports/events",
            ),
            (step, stream) => panic!("a scenario can't expect {step:?} from {stream:?}"),
        }
    }

    /// A line naming the step, for the record of what was played.
    fn describe(&self) -> String {
        match self {
            Self::List { version, items } => format!("list {} at {version}", items.len()),
            Self::Watch { version, ends } => format!("watch from {version} ({ends:?})"),
            Self::PodsOfJob(items) => format!("pods of the Job: {}", items.len()),
            Self::Mark(patch) => format!("mark {}", patch[1]["value"]),
            Self::Event => "event".to_owned(),
        }
    }
}

/// What the controller is to ask, stream by stream, in the order of each stream.
struct Scenario {
    jobs: Vec<Step>,
    pods: Vec<Step>,
    export: Vec<Step>,
}

impl Scenario {
    /// The Job listed unmarked, watched until the test ends; no pods; and what the export loop
    /// is to ask.
    fn one_job(export: Vec<Step>) -> Self {
        Self {
            jobs: vec![
                Step::list("7", [finished_job(None)]),
                Step::Watch {
                    version: "7",
                    ends: Ends::Never,
                },
            ],
            pods: no_pods(),
            export,
        }
    }
}

fn no_pods() -> Vec<Step> {
    vec![
        Step::list("7", []),
        Step::Watch {
            version: "7",
            ends: Ends::Never,
        },
    ]
}

type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// The steps each stream played, described.
type Played = BTreeMap<Stream, Vec<String>>;

/// A mocked apiserver that answers exactly the requests of a [`Scenario`] and fails the test on
/// any other: a request no stream expects next, a request that doesn't come in time, a request
/// once the scenario is played, or one whose query or body isn't the expected one.
struct ApiServerVerifier {
    handle: tower_test::mock::Handle<Request<Body>, Response<ResponseBody>>,
    log: Log,
    /// Whether the Job has been marked: ends the watches that expire then.
    marked: tokio::sync::watch::Sender<bool>,
}

/// Whether `request` is the hold keeper's (a list or watch of the Jobs' metadata): not part of a
/// scenario, which is about the controller's export.
fn hold_keepers(request: &Request<Body>) -> bool {
    request.method() == Method::GET
        && request.uri().path().ends_with("/jobs")
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("PartialObjectMetadata"))
}

/// The hold keeper's answers: no Job's metadata; a watch that never says anything.
fn keepers_answer(request: &Request<Body>) -> Response<ResponseBody> {
    if query(request.uri()).contains_key("watch") {
        let nothing = futures::stream::pending::<Result<Frame<Bytes>, Infallible>>();
        return Response::new(StreamBody::new(nothing).boxed_unsync());
    }
    let list = json!({ "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                       "metadata": { "resourceVersion": "7" }, "items": [] });
    json_response(StatusCode::OK, serde_json::to_vec(&list).unwrap())
}

impl ApiServerVerifier {
    fn new(log: Log) -> (kube::Client, Self) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<ResponseBody>>();
        let verifier = Self {
            handle,
            log,
            marked: tokio::sync::watch::Sender::new(false),
        };
        (kube::Client::new(service, "default"), verifier)
    }

    /// Answers the controller's requests as `scenario` says, each matched to the stream whose
    /// next step it is; then listens for one more request for [`QUIET`], which would be one too
    /// many.
    async fn play(mut self, scenario: Scenario) -> Played {
        let mut expected = BTreeMap::from([
            (Stream::Jobs, VecDeque::from(scenario.jobs)),
            (Stream::Pods, VecDeque::from(scenario.pods)),
            (Stream::Export, VecDeque::from(scenario.export)),
        ]);
        let mut played = Played::new();
        let deadline = tokio::time::Instant::now() + SCENARIO_DEADLINE;
        while expected.values().any(|steps| !steps.is_empty()) {
            let next = tokio::time::timeout_at(deadline, self.handle.next_request()).await;
            let Ok(Some((request, send))) = next else {
                panic!(
                    "the controller didn't make every expected request within \
                     {SCENARIO_DEADLINE:?}; still expected: {expected:?}; played: {played:?}"
                );
            };
            if hold_keepers(&request) {
                send.send_response(keepers_answer(&request));
                continue;
            }
            let target = (request.method().clone(), request.uri().path());
            let Some((&stream, steps)) = expected.iter_mut().find(|(stream, steps)| {
                steps
                    .front()
                    .is_some_and(|step| step.target(**stream) == target)
            }) else {
                panic!(
                    "unexpected {} {}; expected next: {:?}; played: {played:?}",
                    request.method(),
                    request.uri(),
                    expected
                        .iter()
                        .map(|(s, steps)| (s, steps.front()))
                        .collect::<Vec<_>>()
                );
            };
            let step = steps.pop_front().expect("the step just matched");
            played.entry(stream).or_default().push(step.describe());
            send.send_response(self.answer(stream, step, request).await);
        }
        let quiet = tokio::time::Instant::now() + QUIET;
        while let Ok(Some((request, send))) =
            tokio::time::timeout_at(quiet, self.handle.next_request()).await
        {
            if hold_keepers(&request) {
                send.send_response(keepers_answer(&request));
                continue;
            }
            panic!(
                "unexpected {} {} after the whole scenario was played: {played:?}",
                request.method(),
                request.uri()
            );
        }
        played
    }

    /// Checks `request` against `step`, and answers it.
    async fn answer(
        &self,
        stream: Stream,
        step: Step,
        request: Request<Body>,
    ) -> Response<ResponseBody> {
        let what = format!("{} {}", request.method(), request.uri());
        let query = query(request.uri());
        match step {
            Step::List { version, items } => {
                assert_eq!(
                    query,
                    pairs(&[("labelSelector", TRACED), ("limit", "10")]),
                    "{what}: a list of the traced objects, by pages"
                );
                let (api_version, kind) = match stream {
                    Stream::Jobs => ("batch/v1", "JobList"),
                    _ => ("v1", "PodList"),
                };
                let list = json!({ "apiVersion": api_version, "kind": kind,
                                   "metadata": { "resourceVersion": version }, "items": items });
                json_response(StatusCode::OK, serde_json::to_vec(&list).unwrap())
            }
            Step::Watch { version, ends } => {
                let mut query = query;
                // kube's own defaults, not the controller's choice.
                query.remove("timeoutSeconds");
                query.remove("allowWatchBookmarks");
                assert_eq!(
                    query,
                    pairs(&[
                        ("watch", "true"),
                        ("labelSelector", TRACED),
                        ("resourceVersion", version)
                    ]),
                    "{what}: a watch of the traced objects from the last list"
                );
                Response::new(StreamBody::new(self.watch_events(version, ends)).boxed_unsync())
            }
            Step::PodsOfJob(items) => {
                assert_eq!(
                    query,
                    pairs(&[
                        (
                            "labelSelector",
                            &format!("{TRACED},batch.kubernetes.io/controller-uid={JOB_UID}")
                        ),
                        ("limit", "10"),
                        ("resourceVersion", "7"),
                        ("resourceVersionMatch", "NotOlderThan")
                    ]),
                    "{what}: the Job's traced pods, by pages, at least as recent as the finished Job"
                );
                self.log.lock().unwrap().push("list pods".to_owned());
                let list = json!({ "apiVersion": "v1", "kind": "PodList",
                                   "metadata": { "resourceVersion": "7" }, "items": items });
                json_response(StatusCode::OK, serde_json::to_vec(&list).unwrap())
            }
            Step::Mark(patch) => {
                assert_eq!(
                    request.headers().get(header::CONTENT_TYPE).unwrap(),
                    "application/json-patch+json",
                    "{what}"
                );
                assert_eq!(query, pairs(&[]), "{what}");
                let body = request.into_body().collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&body).expect("a JSON patch");
                assert_eq!(body, patch, "{what}: the mark");
                self.log.lock().unwrap().push("patch".to_owned());
                self.marked.send_replace(true);
                let outcome = patch[1]["value"].as_str().unwrap();
                let marked = finished_job(Some(outcome));
                json_response(StatusCode::OK, serde_json::to_vec(&marked).unwrap())
            }
            Step::Event => {
                assert_eq!(query, pairs(&[]), "{what}");
                let body = request.into_body().collect_bytes().await.unwrap();
                let event: Value = serde_json::from_slice(&body).expect("an Event");
                assert_eq!(
                    what_it_says(&event),
                    json!({
                        "apiVersion": "events.k8s.io/v1", "kind": "Event",
                        "type": "Normal", "reason": "TraceExported", "action": "ExportSpan",
                        "note": format!("trace {TRACE_ID}: Job span exported"),
                        "regarding": { "apiVersion": "batch/v1", "kind": "Job",
                                       "namespace": "reports", "name": "nightly", "uid": JOB_UID },
                        "reportingController": "jobtrace", "reportingInstance": "test",
                        "namespace": "reports"
                    }),
                    "{what}: the Event on the Job"
                );
                self.log.lock().unwrap().push("event".to_owned());
                json_response(StatusCode::CREATED, body.to_vec())
            }
        }
    }

    /// The events of a watch, as `ends` says.
    fn watch_events(
        &self,
        version: &'static str,
        ends: Ends,
    ) -> BoxStream<'static, Result<Frame<Bytes>, Infallible>> {
        match ends {
            Ends::Never => futures::stream::pending().boxed(),
            Ends::ExpiredOnceMarked => {
                let mut marked = self.marked.subscribe();
                futures::stream::once(async move {
                    let _ = marked.wait_for(|marked| *marked).await;
                    let expired = json!({ "type": "ERROR", "object": {
                        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                        "message": format!("too old resource version: {version}"),
                        "reason": "Expired", "code": 410 } });
                    Ok(Frame::data(Bytes::from(format!("{expired}\n"))))
                })
                .boxed()
            }
        }
    }
}

/// The fields of an Event that say what it is, about what, and from whom (not its name or time).
fn what_it_says(event: &Value) -> Value {
    let fields = [
        "apiVersion",
        "kind",
        "type",
        "reason",
        "action",
        "note",
        "regarding",
        "reportingController",
        "reportingInstance",
    ];
    let mut said: serde_json::Map<String, Value> = fields
        .iter()
        .map(|&f| (f.to_owned(), event[f].clone()))
        .collect();
    said.insert("namespace".into(), event["metadata"]["namespace"].clone());
    Value::Object(said)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<ResponseBody> {
    let body = http_body_util::Full::new(Bytes::from(body)).boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn pairs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The query of `uri`, decoded.
fn query(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding.
fn decode(encoded: &str) -> String {
    let mut bytes = Vec::new();
    let mut rest = encoded.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        match first {
            b'%' => {
                let hex = std::str::from_utf8(&tail[..2]).unwrap();
                bytes.push(u8::from_str_radix(hex, 16).expect("a percent-encoded byte"));
                rest = &tail[2..];
            }
            b'+' => {
                bytes.push(b' ');
                rest = tail;
            }
            byte => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).unwrap()
}

/// Runs the controller against `scenario` and a collector answering `statuses`, until the
/// scenario is played; then stops it. What happened, what each stream played, and the metrics.
async fn play(statuses: Vec<u16>, scenario: Scenario) -> (Vec<String>, Played, Arc<Metrics>) {
    let (log, played, metrics, _) = play_timed(statuses, scenario).await;
    (log, played, metrics)
}

/// [`play`], and when each export reached the collector.
async fn play_timed(
    statuses: Vec<u16>,
    scenario: Scenario,
) -> (Vec<String>, Played, Arc<Metrics>, Vec<std::time::Instant>) {
    let log = Log::default();
    let times = Times::default();
    let endpoint = collector(log.clone(), times.clone(), statuses).await;
    let config = ExporterConfig {
        protocol: Protocol::HttpProtobuf,
        endpoint,
        headers: Vec::new(),
        timeout: Duration::from_secs(2),
        compression: jobtrace::k8s::otlp::Compression::None,
        tls: jobtrace::k8s::otlp::CollectorTls::default(),
        limits: jobtrace::k8s::otlp::SpanLimits::default(),
        max_request_bytes: jobtrace::k8s::otlp::DEFAULT_MAX_REQUEST_BYTES,
        warnings: Vec::new(),
    };
    let (client, apiserver) = ApiServerVerifier::new(log.clone());
    let verifier = tokio::spawn(apiserver.play(scenario));
    let metrics = Arc::new(Metrics::default());
    let deps = Arc::new(Deps {
        client,
        exporter: Exporter::new(config).unwrap(),
        metrics: metrics.clone(),
        resource: vec![("service.name".to_owned(), "jobtrace".to_owned())],
        instance: "test".to_owned(),
        namespace: None,
        sync: Arc::default(),
        tracer: None,
        policy_status: false,
        hold_timeout: std::time::Duration::from_secs(600),
        hold_pods: false,
        record_events: true,
    });
    let shutdown = CancellationToken::new();
    let controller = tokio::spawn(run(deps, shutdown.clone()));
    let outcome =
        tokio::time::timeout(SCENARIO_DEADLINE + QUIET + Duration::from_secs(2), verifier).await;
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(2), controller).await;
    let log = log.lock().unwrap().clone();
    let played = match outcome {
        Ok(Ok(played)) => played,
        Ok(Err(e)) if e.is_panic() => {
            eprintln!("what happened: {log:?}");
            std::panic::resume_unwind(e.into_panic())
        }
        Ok(Err(e)) => panic!("the apiserver verifier failed: {e}; what happened: {log:?}"),
        Err(elapsed) => panic!("the apiserver verifier never finished ({elapsed}): {log:?}"),
    };
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "the controller stops when told"
    );
    let times = times.lock().unwrap().clone();
    (log, played, metrics, times)
}

/// The Job listed unmarked, exported and marked; its watch then expires and the relist shows
/// `relisted`: the Job is exported, marked and given its Event once, and nothing more happens.
async fn exported_once_though_listed_again(relisted: Value) {
    let scenario = Scenario {
        jobs: vec![
            Step::list("7", [finished_job(None)]),
            Step::Watch {
                version: "7",
                ends: Ends::ExpiredOnceMarked,
            },
            Step::list("8", [relisted]),
            Step::Watch {
                version: "8",
                ends: Ends::Never,
            },
        ],
        pods: no_pods(),
        export: vec![
            Step::PodsOfJob(vec![]),
            Step::Mark(mark("true")),
            Step::Event,
        ],
    };
    let (log, played, metrics) = play(vec![200], scenario).await;
    assert_eq!(
        log,
        [
            "list pods".into(),
            format!("export 200 {JOB_SPAN}"),
            "patch".into(),
            "event".into()
        ],
        "one export, then its mark and Event; nothing more after the relist"
    );
    assert_eq!(
        played[&Stream::Jobs],
        [
            "list 1 at 7",
            "watch from 7 (ExpiredOnceMarked)",
            "list 1 at 8",
            "watch from 8 (Never)"
        ],
        "the watcher listed the Job again"
    );
    assert_eq!(metrics.spans_exported.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_then_marks_the_very_object() {
    // The relist shows the Job again, marked this time.
    exported_once_though_listed_again(finished_job(Some("true"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_marked_until_the_collector_takes_the_spans() {
    let scenario = Scenario::one_job(vec![
        Step::PodsOfJob(vec![]),
        Step::Mark(mark("true")),
        Step::Event,
    ]);
    let (log, _, metrics) = play(vec![503, 503, 200], scenario).await;
    let export = |status: u16| format!("export {status} {JOB_SPAN}");
    assert_eq!(
        log,
        [
            "list pods".into(),
            export(503),
            export(503),
            export(200),
            "patch".into(),
            "event".into()
        ],
        "retried, and marked only after the collector took the spans"
    );
    assert_eq!(metrics.export_retries.get(), 2);
    assert_eq!(metrics.spans_exported.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_spans_are_dropped_and_marked_dropped() {
    // No Event: nothing was exported.
    let scenario = Scenario::one_job(vec![Step::PodsOfJob(vec![]), Step::Mark(mark("dropped"))]);
    let (log, _, metrics) = play(vec![400], scenario).await;
    assert_eq!(
        log,
        [
            "list pods".into(),
            format!("export 400 {JOB_SPAN}"),
            "patch".into()
        ],
        "a 400 is not retried"
    );
    assert_eq!(metrics.spans_dropped.get(), 1);
    assert_eq!(metrics.spans_exported.get(), 0);
    assert_eq!(metrics.export_request_count(Outcome::Refused), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_nothing_is_waited_as_the_least_backoff() {
    let scenario = Scenario::one_job(vec![
        Step::PodsOfJob(vec![]),
        Step::Mark(mark("true")),
        Step::Event,
    ]);
    let (log, _, _, times) = play_timed(vec![429, 429, 200], scenario).await;
    let export = |status: u16| format!("export {status} {JOB_SPAN}");
    assert_eq!(
        log[..4],
        ["list pods".into(), export(429), export(429), export(200)]
    );
    for pair in times.windows(2) {
        let waited = pair[1] - pair[0];
        assert!(
            waited >= Duration::from_millis(500),
            "Retry-After: 0 answered after {waited:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_an_outage_retried_not_spans_dropped() {
    let scenario = Scenario::one_job(vec![
        Step::PodsOfJob(vec![]),
        Step::Mark(mark("true")),
        Step::Event,
    ]);
    let (log, _, metrics) = play(vec![401, 403, 200], scenario).await;
    let export = |status: u16| format!("export {status} {JOB_SPAN}");
    assert_eq!(
        log,
        [
            "list pods".into(),
            export(401),
            export(403),
            export(200),
            "patch".into(),
            "event".into()
        ],
        "retried until the credentials were taken, then marked exported"
    );
    assert_eq!(metrics.export_request_count(Outcome::Unauthorized), 2);
    assert_eq!(metrics.export_request_count(Outcome::Accepted), 1);
    assert_eq!(metrics.spans_dropped.get(), 0);
    assert_eq!(metrics.spans_exported.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_finished_pods_go_with_it_and_only_the_job_is_marked() {
    // The pod's list comes before the Jobs are listed in no order the controller may rely on:
    // the pods are watched once the Jobs are listed.
    let scenario = Scenario {
        jobs: vec![
            Step::list("7", [finished_job(None)]),
            Step::Watch {
                version: "7",
                ends: Ends::Never,
            },
        ],
        pods: vec![
            Step::list("7", [finished_pod()]),
            Step::Watch {
                version: "7",
                ends: Ends::Never,
            },
        ],
        export: vec![
            Step::PodsOfJob(vec![finished_pod()]),
            Step::Mark(mark("true")),
            Step::Event,
        ],
    };
    let (log, _, metrics) = play(vec![200], scenario).await;
    assert_eq!(
        log,
        [
            "list pods".into(),
            format!("export 200 {JOB_SPAN},{POD_SPAN}"),
            "patch".into(),
            "event".into()
        ],
        "the pod's span in the Job's export, the Job's mark the only write besides the Event"
    );
    assert_eq!(metrics.spans_exported.get(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_pod_of_a_running_job_waits_for_it() {
    let scenario = Scenario {
        jobs: vec![
            Step::list("6", [running_job()]),
            Step::Watch {
                version: "6",
                ends: Ends::Never,
            },
        ],
        pods: vec![
            Step::list("6", [finished_pod()]),
            Step::Watch {
                version: "6",
                ends: Ends::Never,
            },
        ],
        export: vec![],
    };
    let (log, _, metrics) = play(vec![200], scenario).await;
    assert!(log.is_empty(), "nothing exported, nothing marked: {log:?}");
    assert_eq!(metrics.spans_exported.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_read_before_the_mark_does_not_export_the_job_again() {
    // A page the apiserver read before the mark: the Job unmarked, as the first time.
    exported_once_though_listed_again(finished_job(None)).await;
}
