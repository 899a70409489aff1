//! Creating a traced Job from Rust: start a span, write its context on the Job as annotations
//! (exactly what `inject()` with the annotations map as the carrier does), create the Job, and end
//! the span. With `--wait` it then waits for the Job to finish; `jobtrace trace` prints its trace
//! (what `make demo` does next).
//!
//! Usage: `create-job NAMESPACE TASK_PROGRAM [--wait]` (`KUBECONFIG` and the OTLP endpoint from
//! env)

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;
use kube::{Api, Client};
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let (Some(namespace), Some(task)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: create-job NAMESPACE TASK_PROGRAM [--wait]");
    };
    let wait = args.iter().any(|a| a == "--wait");
    let otlp = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:4317".to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(
            SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&otlp)
                .build()?,
        )
        .with_resource(Resource::builder().with_service_name("report-api").build())
        .build();
    let tracer = provider.tracer("create-job");

    let span = tracer.start("POST /reports");
    let cx = Context::current_with_span(span);
    // The Job's annotations are the carrier: the propagator writes `traceparent` (and `tracestate`).
    let mut annotations: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut annotations);
    annotations.insert("baggage".to_owned(), "tenant=acme".to_owned());
    let trace_id = cx.span().span_context().trace_id().to_string();

    let name = format!("nightly-report-{}", &trace_id[..6]);
    let marker = std::env::temp_dir().join(format!("{name}.first-attempt"));
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name, "annotations": annotations },
        "spec": { "backoffLimit": 2, "template": {
            // The pod runner (hack/pod-runner.rs) runs these pods' commands on this machine.
            "metadata": { "labels": { "sim.jobtrace.dev/runner": "true" } },
            "spec": { "restartPolicy": "Never", "containers": [{
                "name": "report", "image": "example.invalid/report:1",
                "command": [task, "--fail-first", marker],
                "env": [
                    { "name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": otlp },
                    { "name": "OTEL_SERVICE_NAME", "value": "report-task" }
                ]
            }] }
        } }
    }))?;
    let client = Client::try_default().await?;
    let jobs: Api<Job> = Api::namespaced(client, namespace);
    jobs.create(&PostParams::default(), &job).await?;
    cx.span().end();
    tokio::task::spawn_blocking(move || provider.shutdown()).await??;
    println!("created Job {namespace}/{name} in trace {trace_id}");
    if !wait {
        return Ok(());
    }

    print!("waiting for it to finish (its first attempt fails, the retry succeeds) ");
    let outcome = loop {
        let job = jobs.get(&name).await?;
        let finished = job
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");
        if let Some(c) = finished {
            break c.type_;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!("\nJob {outcome}");
    let _ = std::fs::remove_file(&marker);
    Ok(())
}
