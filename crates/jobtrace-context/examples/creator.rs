//! Creating a traced Job from Rust with kube-rs: start a span, write its context (and baggage) on
//! the Job's annotations with `jobtrace_context::otel::annotate`, create the Job, end the span.
//!
//! Usage: `create-job [--wait] [--backoff-limit N] [--image IMAGE] NAMESPACE JOB_PROGRAM
//! [JOB_ARGS...]`: the Job runs `JOB_PROGRAM JOB_ARGS...`, on this machine through the local
//! setup's pod runner, or with `--image` in a container of IMAGE on the local setup's real node
//! (host network, so that it reaches the collector on 127.0.0.1, and the host's `/tmp`). The
//! cluster comes from `KUBECONFIG`, the collector from the standard `OTEL_EXPORTER_OTLP_*`
//! variables (OTLP/gRPC unless `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`), the service's name
//! from `OTEL_SERVICE_NAME`. With `--wait` it waits for the Job to finish (what `make demo` does
//! before `jobtrace trace` prints the trace).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;
use kube::{Api, Client};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::json;

struct Args {
    wait: bool,
    image: Option<String>,
    backoff_limit: i32,
    namespace: String,
    command: Vec<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1).peekable();
    let (mut wait, mut backoff_limit, mut image) = (false, 0, None);
    while let Some(flag) = args.next_if(|a| a.starts_with("--")) {
        match flag.as_str() {
            "--wait" => wait = true,
            "--backoff-limit" => backoff_limit = args.next().unwrap_or_default().parse()?,
            "--image" => image = args.next(),
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    let namespace = args.next().unwrap_or_default();
    let command: Vec<String> = args.collect();
    if namespace.is_empty() || command.is_empty() {
        anyhow::bail!(
            "usage: create-job [--wait] [--backoff-limit N] [--image IMAGE] NAMESPACE JOB_PROGRAM [JOB_ARGS...]"
        );
    }
    Ok(Args {
        wait,
        image,
        backoff_limit,
        namespace,
        command,
    })
}

/// A tracer provider exporting over OTLP as the `OTEL_EXPORTER_OTLP_*` variables say.
pub fn provider(default_service: &str) -> anyhow::Result<SdkTracerProvider> {
    let http = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").is_ok_and(|p| p == "http/protobuf");
    let exporter = if http {
        SpanExporter::builder().with_http().build()?
    } else {
        SpanExporter::builder().with_tonic().build()?
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| default_service.to_owned());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build())
}

/// The Job's code exports where this program does, as `report-task`.
fn job_env() -> serde_json::Value {
    let mut env = vec![json!({ "name": "OTEL_SERVICE_NAME", "value": "report-task" })];
    for name in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        if let Ok(value) = std::env::var(name) {
            env.push(json!({ "name": name, "value": value }));
        }
    }
    env.into()
}

/// Where the local setup runs the Job's pods: with an image, in a container on its real node (which
/// selects and taints `type=real`); without, through its pod runner.
fn place(job: &mut Job, image: Option<&str>) -> anyhow::Result<()> {
    let template = &mut job.spec.as_mut().expect("a spec").template;
    let Some(image) = image else {
        template.metadata = Some(serde_json::from_value(
            json!({ "labels": { "sim.jobtrace.dev/runner": "true" } }),
        )?);
        return Ok(());
    };
    let pod = template.spec.as_mut().expect("a pod spec");
    pod.containers[0].image = Some(image.to_owned());
    pod.containers[0].image_pull_policy = Some("IfNotPresent".to_owned());
    pod.containers[0].volume_mounts = Some(serde_json::from_value(
        json!([{ "name": "tmp", "mountPath": "/tmp" }]),
    )?);
    pod.volumes = Some(serde_json::from_value(
        json!([{ "name": "tmp", "hostPath": { "path": "/tmp", "type": "Directory" } }]),
    )?);
    pod.host_network = Some(true);
    pod.node_selector = Some([("type".to_owned(), "real".to_owned())].into());
    pod.tolerations = Some(serde_json::from_value(
        json!([{ "key": "type", "value": "real", "effect": "NoSchedule" }]),
    )?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = args()?;
    let provider = provider("report-api")?;
    let tracer = provider.tracer("create-job");

    let mut job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "generateName": "report-" },
        "spec": { "backoffLimit": args.backoff_limit, "template": {
            "spec": { "restartPolicy": "Never", "containers": [{
                "name": "report", "image": "example.invalid/report:1",
                "command": args.command,
                "env": job_env(),
            }] }
        } }
    }))?;
    place(&mut job, args.image.as_deref())?;

    // docs:begin creator
    let span = tracer.start("create-report-job");
    let cx = Context::current_with_span(span).with_baggage([KeyValue::new("tenant", "acme")]);
    // The Job's annotations carry the context: traceparent (tracestate) and baggage.
    jobtrace_context::otel::annotate(&mut job.metadata, &cx);
    // docs:end creator

    let client = Client::try_default().await?;
    let jobs: Api<Job> = Api::namespaced(client, &args.namespace);
    let created = jobs.create(&PostParams::default(), &job).await;
    if let Err(e) = &created {
        cx.span().set_status(Status::error(e.to_string()));
    }
    let trace_id = cx.span().span_context().trace_id().to_string();
    cx.span().end();
    tokio::task::spawn_blocking(move || provider.shutdown()).await??;
    let name = created?.metadata.name.unwrap_or_default();
    println!("created Job {}/{name} in trace {trace_id}", args.namespace);
    if !args.wait {
        return Ok(());
    }

    print!("waiting for it to finish ");
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
    Ok(())
}
