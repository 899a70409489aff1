//! The client examples of `examples/<language>/`, each run for real: the language's creator
//! program (its Kubernetes client and OpenTelemetry SDK) creates a Job whose command is the same
//! language's Job program, which the pod runner executes on this machine; the test then reads the
//! whole tree from Jaeger: creator span -> (HTTP client span, for the zero-code creators) -> Job
//! span -> pod span -> the Job's own span, one trace id, each the child of the one before.
//!
//! Every creator follows one contract, so that one check serves them all:
//! - argv: `NAMESPACE JOB_PROGRAM [JOB_ARGS...]`; environment: `KUBECONFIG`,
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_PROTOCOL` (OTLP/HTTP to the local
//!   Jaeger), `OTEL_SERVICE_NAME`;
//! - it starts a span named `create-report-job`, puts `tenant=acme` in the context's baggage, and
//!   (except the zero-code creators) writes the context on the Job's annotations with its SDK's
//!   propagators;
//! - the Job: `generateName: report-`, pod template labelled `sim.jobtrace.dev/runner: "true"`,
//!   `restartPolicy: Never`, `backoffLimit: 0`, one container `report` running
//!   `JOB_PROGRAM JOB_ARGS...` with `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`
//!   passed on and `OTEL_SERVICE_NAME=report-task`;
//! - after the create it ends its span, flushes its exporter and prints
//!   `created Job NAMESPACE/NAME in trace TRACE_ID` on a line of its own.
//!
//! Every Job program extracts the context from `TRACEPARENT`/`TRACESTATE`/`BAGGAGE` the way its
//! SDK does, records a span named `generate-report` with the attribute `report.tenant` set from
//! the baggage's `tenant`, flushes, and exits 0.

mod go;
mod java;
mod node;
mod python;
mod queue;
mod rust;
mod shell;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::jaeger::fetch_trace;
pub use crate::spans::{parent as span_parent, tag as span_tag};
use jobtrace_testkit::cluster::{TestNamespace, finished_condition};

/// OTLP over HTTP to the local Jaeger, what the examples' SDKs send.
pub const OTLP_HTTP: &str = "http://127.0.0.1:4318";

/// The checkout's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What `hack/clients/<language>.sh` installed or built for the tests, under `target/clients/`.
pub fn installed(language: &str) -> PathBuf {
    let dir = repo().join("target/clients").join(language);
    assert!(
        dir.exists(),
        "{} is missing: run hack/clients/{language}.sh (make clients)",
        dir.display()
    );
    dir
}

/// How the Job span's parent relates to the creator's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    /// The creator wrote its own span's context on the Job.
    Creator,
    /// The creator's instrumented HTTP client sent the context as request headers: the Job's
    /// parent is that client's span, a child of the creator's.
    HttpClientSpan,
}

/// A finished client run: the trace it started and the Job it created.
pub struct ClientRun {
    pub trace_id: String,
    pub job: String,
    pub trace: Value,
}

/// Runs `creator` (its program and any arguments before the contract's) for `ns` with
/// `job_command` as the Job's command, waits for the Job to complete, and checks the whole tree.
pub async fn run_and_check(
    ns: &TestNamespace,
    mut creator: Command,
    job_command: &[&Path],
    creator_service: &str,
    parent: Parent,
) -> ClientRun {
    creator
        .arg(&ns.name)
        .args(job_command)
        .env("KUBECONFIG", repo().join("target/cluster/kubeconfig"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP_HTTP)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_SERVICE_NAME", creator_service);
    let program = format!("{creator:?}");
    let output = tokio::task::spawn_blocking(move || creator.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the creator failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let (job, trace_id) = created_line(&stdout, &ns.name)
        .unwrap_or_else(|| panic!("no 'created Job' line from the creator:\n{stdout}\n{stderr}"));

    let finished = ns.finished(&job).await;
    assert_eq!(
        finished_condition(&finished).map(|c| c.0).as_deref(),
        Some("Complete"),
        "the Job's program succeeded: {:?}",
        finished.status
    );
    let spans = if parent == Parent::HttpClientSpan {
        5
    } else {
        4
    };
    let trace = fetch_trace(&trace_id, spans).await;
    check_tree(&trace, &ns.name, &job, creator_service, parent);
    ClientRun {
        trace_id,
        job,
        trace,
    }
}

/// `(job name, trace id)` from the creator's `created Job NS/NAME in trace ID` line.
fn created_line(stdout: &str, namespace: &str) -> Option<(String, String)> {
    stdout.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("created Job ")?;
        let (object, trace_id) = rest.split_once(" in trace ")?;
        let name = object.strip_prefix(namespace)?.strip_prefix('/')?;
        let valid = trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| (name.to_owned(), trace_id.to_ascii_lowercase()))
    })
}

fn spans_named<'a>(trace: &'a Value, name: &str) -> Vec<&'a Value> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["operationName"] == name)
        .collect()
}

fn one<'a>(trace: &'a Value, name: &str) -> &'a Value {
    let found = spans_named(trace, name);
    assert_eq!(found.len(), 1, "one span named {name:?} in {trace:#}");
    found[0]
}

fn service<'a>(trace: &'a Value, span: &Value) -> &'a str {
    trace["processes"][span["processID"].as_str().unwrap()]["serviceName"]
        .as_str()
        .unwrap_or_default()
}

fn id(span: &Value) -> &str {
    span["spanID"].as_str().unwrap()
}

/// The tree of one client run, as the module's contract describes it.
pub fn check_tree(
    trace: &Value,
    namespace: &str,
    job: &str,
    creator_service: &str,
    parent: Parent,
) {
    let creator = one(trace, "create-report-job");
    assert_eq!(service(trace, creator), creator_service);
    let job_span = one(trace, &format!("job {namespace}/{job}"));
    let job_parent = span_parent(job_span).expect("the Job span has a parent");
    match parent {
        Parent::Creator => assert_eq!(
            job_parent,
            id(creator),
            "the Job span is the creator's span's child"
        ),
        Parent::HttpClientSpan => {
            let http = trace["spans"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| id(s) == job_parent)
                .expect("the Job span's parent is in the trace");
            assert_eq!(
                span_parent(http),
                Some(id(creator)),
                "the Job span's parent ({}) is the creator's HTTP client span",
                http["operationName"]
            );
            assert_eq!(service(trace, http), creator_service);
        }
    }
    let pods = crate::spans::named(trace, "pod ");
    assert_eq!(pods.len(), 1, "one attempt");
    assert_eq!(
        span_parent(pods[0]),
        Some(id(job_span)),
        "the pod span is the Job span's child"
    );
    let task = one(trace, "generate-report");
    assert_eq!(
        span_parent(task),
        Some(id(pods[0])),
        "the Job's own span is the pod span's child"
    );
    assert_eq!(service(trace, task), "report-task");
    assert_eq!(
        span_tag(task, "report.tenant"),
        Some(&Value::from("acme")),
        "the creator's baggage reached the Job's code"
    );
}

#[test]
fn created_line_is_read_strictly() {
    let id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let out = format!("noise\ncreated Job ns/report-x1 in trace {id}\n");
    assert_eq!(
        created_line(&out, "ns"),
        Some(("report-x1".to_owned(), id.to_owned()))
    );
    assert_eq!(created_line(&out, "other"), None);
    assert_eq!(created_line("created Job ns/a in trace 123", "ns"), None);
}
