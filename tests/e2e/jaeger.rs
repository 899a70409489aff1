//! Jaeger receives OTLP spans and answers for them through its query API.

use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

pub const JAEGER_QUERY: &str = "http://127.0.0.1:16686";
pub const OTLP_GRPC: &str = "http://127.0.0.1:4317";

/// Polls Jaeger for a trace until it holds at least `spans` spans or the deadline passes.
pub async fn fetch_trace(trace_id: &str, spans: usize) -> serde_json::Value {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + crate::support::DEADLINE;
    let mut last = String::new();
    while Instant::now() < deadline {
        let response = http
            .get(format!("{JAEGER_QUERY}/api/traces/{trace_id}"))
            .send()
            .await;
        if let Ok(response) = response {
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let found = body["data"][0]["spans"].as_array().map_or(0, Vec::len);
            if status.is_success() && found >= spans {
                return body["data"][0].clone();
            }
            last = format!("HTTP {status}, {found} spans");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("trace {trace_id} with {spans} spans not in Jaeger in time (last answer: {last})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_sent_over_otlp_is_found_in_jaeger() {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(OTLP_GRPC)
        .build()
        .expect("an OTLP/gRPC exporter");
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("jobtrace-e2e")
                .build(),
        )
        .build();
    let tracer = provider.tracer("jobtrace-e2e");
    let trace_id = tracer.in_span("smoke-parent", |cx| {
        let mut child = tracer.start("smoke-child");
        child.set_attribute(KeyValue::new("k8s.job.name", "smoke"));
        child.end();
        cx.span().span_context().trace_id().to_string()
    });
    // The batch processor's shutdown blocks until it has exported: keep it off the async workers.
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .expect("join")
        .expect("the exporter flushes to Jaeger");

    let trace = fetch_trace(&trace_id, 2).await;
    let spans = trace["spans"].as_array().unwrap();
    let names: Vec<&str> = spans
        .iter()
        .filter_map(|s| s["operationName"].as_str())
        .collect();
    assert!(
        names.contains(&"smoke-parent") && names.contains(&"smoke-child"),
        "{names:?}"
    );
    let child = spans
        .iter()
        .find(|s| s["operationName"] == "smoke-child")
        .unwrap();
    let parent = spans
        .iter()
        .find(|s| s["operationName"] == "smoke-parent")
        .unwrap();
    assert_eq!(child["references"][0]["refType"], "CHILD_OF");
    assert_eq!(child["references"][0]["spanID"], parent["spanID"]);
    let tag = child["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == "k8s.job.name")
        .expect("the attribute reaches Jaeger");
    assert_eq!(tag["value"], "smoke");
    let process = &trace["processes"][child["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "jobtrace-e2e");
}
