//! A batch task that continues the trace it was started in: reads `TRACEPARENT` and `TRACESTATE`
//! from its environment, records one span as their child, and exports it over OTLP
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, default `http://localhost:4317`), with the resource attributes
//! of `OTEL_RESOURCE_ATTRIBUTES`. With `--fail-first MARKER` it fails (exit 1) when MARKER doesn't
//! exist yet, after creating it: the first attempt fails, the retry succeeds.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span, Status, Tracer, TracerProvider};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let marker = args
        .iter()
        .position(|a| a == "--fail-first")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let fail = marker.as_ref().is_some_and(|m| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(m)
            .is_ok()
    });

    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .unwrap_or_else(|_| "http://localhost:4317".to_owned());
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .expect("an OTLP exporter");
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "report-task".to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let carrier: HashMap<String, String> =
        [("traceparent", "TRACEPARENT"), ("tracestate", "TRACESTATE")]
            .into_iter()
            .filter_map(|(key, var)| Some((key.to_owned(), std::env::var(var).ok()?)))
            .collect();
    let parent = TraceContextPropagator::new().extract(&carrier);
    let tracer = provider.tracer("traced-task");
    let mut span = tracer.start_with_context("generate-report", &parent);
    // The report itself: a little work, so the span has a visible length.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    span.set_attribute(opentelemetry::KeyValue::new("report.attempt_failed", fail));
    if fail {
        span.set_status(Status::error("simulated failure on the first attempt"));
    }
    println!(
        "traced-task: trace {} span {} (parent from TRACEPARENT={})",
        span.span_context().trace_id(),
        span.span_context().span_id(),
        carrier.get("traceparent").map_or("none", String::as_str)
    );
    span.end();
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .ok();
    std::process::exit(i32::from(fail));
}
