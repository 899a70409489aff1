//! A Job's program in Rust that continues the trace it was started in: its parent and baggage
//! from `TRACEPARENT`, `TRACESTATE` and `BAGGAGE` (`jobtrace_context::otel::context_from_env`),
//! one span `generate-report` as their child, exported over OTLP as the `OTEL_EXPORTER_OTLP_*`
//! variables say. With `--fail-first MARKER` it fails (exit 1) when MARKER doesn't exist yet,
//! after creating it: the first attempt fails, the retry succeeds.

use opentelemetry::KeyValue;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{Span, Status, Tracer, TracerProvider};
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
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

    let http = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").is_ok_and(|p| p == "http/protobuf");
    let exporter = if http {
        SpanExporter::builder().with_http().build()
    } else {
        SpanExporter::builder().with_tonic().build()
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "report-task".to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter.expect("an OTLP exporter"))
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracer = provider.tracer("report-job");

    // docs:begin job
    // The parent jobtrace injected (TRACEPARENT, TRACESTATE) and the creator's BAGGAGE.
    let parent = jobtrace_context::otel::context_from_env();
    let mut span = tracer.start_with_context("generate-report", &parent);
    // docs:end job
    if let Some(tenant) = parent.baggage().get("tenant") {
        span.set_attribute(KeyValue::new("report.tenant", tenant.to_string()));
    }
    // The report itself: a little work, so the span has a visible length.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    span.set_attribute(KeyValue::new("report.attempt_failed", fail));
    if fail {
        span.set_status(Status::error("simulated failure on the first attempt"));
    }
    println!(
        "report-job: trace {} span {} (parent from TRACEPARENT={})",
        span.span_context().trace_id(),
        span.span_context().span_id(),
        std::env::var("TRACEPARENT").as_deref().unwrap_or("none")
    );
    span.end();
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .ok();
    std::process::exit(i32::from(fail));
}
