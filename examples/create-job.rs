//! Creating a traced Job from Rust: start a span, write its context on the Job as annotations
//! (exactly what `inject()` with the annotations map as the carrier does), create the Job, and end
//! the span. With `--wait` it then waits for the Job to finish, prints its trace from Jaeger's
//! query API as a tree (what `make demo` shows) and the trace's address in the trace UI.
//!
//! Usage: `create-job NAMESPACE TASK_PROGRAM [--wait]` (`KUBECONFIG` and the OTLP endpoint from
//! env; `JAEGER_QUERY` and `TRACE_UI` default to the local setup's)

use std::collections::{BTreeMap, HashMap};
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
use serde_json::{Value, json};

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

    let query =
        std::env::var("JAEGER_QUERY").unwrap_or_else(|_| "http://127.0.0.1:16686".to_owned());
    let trace = wait_for_trace(&query, &trace_id, 6).await?;
    println!("\ntrace {trace_id}:\n");
    print_tree(&trace);
    let ui = std::env::var("TRACE_UI").unwrap_or_else(|_| "http://127.0.0.1:8000".to_owned());
    println!("\nopen it in the trace UI: {ui}/traces/{trace_id}");
    Ok(())
}

async fn wait_for_trace(query: &str, trace_id: &str, spans: usize) -> anyhow::Result<Value> {
    let url = format!("{query}/api/traces/{trace_id}");
    let mut last = Value::Null;
    for _ in 0..60 {
        let body = match reqwest::get(&url).await {
            Ok(response) => response.json::<Value>().await.ok(),
            Err(_) => None,
        };
        if let Some(body) = body {
            let count = body["data"][0]["spans"].as_array().map_or(0, Vec::len);
            last = body["data"][0].clone();
            if count >= spans {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::ensure!(!last.is_null(), "trace {trace_id} not found in Jaeger");
    Ok(last)
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

/// One line per span, children indented under their parent, in start order.
fn print_tree(trace: &Value) {
    let spans = trace["spans"].as_array().cloned().unwrap_or_default();
    let mut children: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    let ids: Vec<&str> = spans.iter().filter_map(|s| s["spanID"].as_str()).collect();
    for span in &spans {
        let parent = span["references"]
            .as_array()
            .and_then(|r| r.first())
            .and_then(|r| r["spanID"].as_str());
        let key = parent.filter(|p| ids.contains(p)).unwrap_or("").to_owned();
        children.entry(key).or_default().push(span);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s["startTime"].as_i64());
    }
    walk(&children, trace, "", "");
}

fn walk(children: &BTreeMap<String, Vec<&Value>>, trace: &Value, id: &str, prefix: &str) {
    let Some(list) = children.get(id) else { return };
    for (i, span) in list.iter().enumerate() {
        let is_last = i + 1 == list.len();
        let service =
            trace["processes"][span["processID"].as_str().unwrap_or_default()]["serviceName"]
                .as_str()
                .unwrap_or("?");
        let millis = span["duration"].as_f64().unwrap_or(0.0) / 1000.0;
        let mut notes = Vec::new();
        if tag(span, "otel.status_code") == Some(&json!("ERROR")) {
            notes.push("ERROR".to_owned());
        }
        for key in ["error.type", "jobtrace.container.exit_code"] {
            if let Some(v) = tag(span, key) {
                notes.push(format!("{key}={v}"));
            }
        }
        let branch = if id.is_empty() {
            ""
        } else if is_last {
            "└── "
        } else {
            "├── "
        };
        println!(
            "{prefix}{branch}{} [{service}] {millis:.0} ms {}",
            span["operationName"].as_str().unwrap_or("?"),
            notes.join(" ")
        );
        let deeper = if id.is_empty() {
            String::new()
        } else if is_last {
            format!("{prefix}    ")
        } else {
            format!("{prefix}│   ")
        };
        walk(
            children,
            trace,
            span["spanID"].as_str().unwrap_or_default(),
            &deeper,
        );
    }
}
