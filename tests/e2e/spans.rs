//! The controller through the real control plane and Jaeger: the whole tree of one traced Job,
//! a restart mid-flight, and a collector that is down.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{ListParams, PostParams};
use opentelemetry::trace::{Span, Tracer, TracerProvider};
use serde_json::{Value, json};

use crate::jaeger::{OTLP_GRPC, fetch_trace, fetch_trace_from};
use jobtrace_testkit::cluster::{DEADLINE, TestNamespace, finished_condition};
use jobtrace_testkit::process::{Runner, Webhook, example};
use jobtrace_testkit::{cluster, poll};

/// The value of the span's attribute `key`, as Jaeger's query API gives it.
pub fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

/// The span id of the span's parent (its `CHILD_OF` reference).
pub fn parent(span: &Value) -> Option<&str> {
    span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")?["spanID"]
        .as_str()
}

pub fn named<'a>(trace: &'a Value, prefix: &str) -> Vec<&'a Value> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["operationName"]
                .as_str()
                .unwrap_or_default()
                .starts_with(prefix)
        })
        .collect()
}

pub fn random_trace_id() -> String {
    format!("{:032x}", rand::random::<u128>() | 1)
}

/// Waits until every Job in the namespace is finished and marked exported.
pub async fn all_exported(ns: &TestNamespace, count: usize) -> Vec<Job> {
    let jobs: Api<Job> = ns.api();
    poll::until(
        "every Job finished and exported",
        DEADLINE * 2,
        Duration::from_millis(500),
        async || {
            let list = jobs.list(&ListParams::default()).await.unwrap().items;
            let done = list
                .iter()
                .filter(|j| finished_condition(j).is_some())
                .filter(|j| {
                    j.metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key("jobtrace.dev/exported"))
                })
                .count();
            if list.len() == count && done == count {
                Ok(list)
            } else {
                Err(format!("{done} of {count}"))
            }
        },
    )
    .await
}

pub fn kwok_job(name: &str, traceparent: &str, run_for: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name, "annotations": { "traceparent": traceparent } },
        "spec": { "backoffLimit": 0, "template": {
            "metadata": { "annotations": { "sim.jobtrace.dev/run-for": run_for } },
            "spec": { "restartPolicy": "Never", "containers": [{ "name": "main", "image": "example.invalid/main" }] }
        } }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_job_is_one_tree_from_the_creator_to_the_jobs_own_code() {
    let ns = TestNamespace::create("tree").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let _runner = Runner::start(&ns);

    // The creating service: its own SDK, its own span.
    let provider = crate::jaeger::provider("e2e-creator");
    let mut creator = provider.tracer("e2e").start("POST /reports");
    let creator_context = creator.span_context().clone();
    let trace_id = creator_context.trace_id().to_string();
    let creator_span = creator_context.span_id().to_string();
    let traceparent = format!("00-{trace_id}-{creator_span}-01");

    let marker = std::env::temp_dir().join(format!("jobtrace-e2e-{}", ns.name));
    let task = example("traced-task");
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": "report", "annotations": { "traceparent": traceparent } },
        "spec": { "backoffLimit": 2, "template": {
            "metadata": { "labels": { "sim.jobtrace.dev/runner": "true" } },
            "spec": { "restartPolicy": "Never", "containers": [{
                "name": "report", "image": "example.invalid/report",
                "command": [task, "--fail-first", marker],
                "env": [
                    { "name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": OTLP_GRPC },
                    { "name": "OTEL_SERVICE_NAME", "value": "report-task" }
                ]
            }] }
        } }
    }))
    .unwrap();
    let finished = ns.run_job(&job).await;
    creator.end();
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_file(&marker);
    assert_eq!(finished_condition(&finished).unwrap().0, "Complete");

    // creator + Job + two attempts + the task's span in each attempt
    let trace = fetch_trace(&trace_id, 6).await;
    let job_span = named(&trace, "job ")[0];
    assert_eq!(job_span["operationName"], format!("job {}/report", ns.name));
    assert_eq!(
        parent(job_span),
        Some(creator_span.as_str()),
        "the Job span is the creator's child"
    );
    let job_span_id = job_span["spanID"].as_str().unwrap();
    assert_eq!(
        finished.metadata.annotations.as_ref().unwrap()["jobtrace.dev/span-id"],
        job_span_id,
        "the id chosen at admission"
    );
    assert_eq!(tag(job_span, "otel.status_code"), Some(&json!("OK")));
    assert_eq!(tag(job_span, "k8s.job.name"), Some(&json!("report")));
    assert_eq!(tag(job_span, "k8s.namespace.name"), Some(&json!(ns.name)));
    assert_eq!(tag(job_span, "jobtrace.job.failed"), Some(&json!(1)));
    assert_eq!(tag(job_span, "jobtrace.job.succeeded"), Some(&json!(1)));

    let pods = named(&trace, "pod ");
    assert_eq!(pods.len(), 2, "one span per attempt");
    let failed = pods
        .iter()
        .find(|p| tag(p, "otel.status_code") == Some(&json!("ERROR")))
        .expect("a failed attempt");
    let succeeded = pods
        .iter()
        .find(|p| tag(p, "otel.status_code") == Some(&json!("OK")))
        .expect("a successful attempt");
    for pod in &pods {
        assert_eq!(
            parent(pod),
            Some(job_span_id),
            "attempts are children of the Job span"
        );
    }
    assert_eq!(tag(failed, "jobtrace.container.exit_code"), Some(&json!(1)));
    assert_eq!(tag(failed, "error.type"), Some(&json!("Error")));
    assert_eq!(tag(failed, "k8s.container.name"), Some(&json!("report")));

    let tasks = named(&trace, "generate-report");
    assert_eq!(tasks.len(), 2, "the Job's own code ran twice");
    for task in &tasks {
        let attempt = pods
            .iter()
            .find(|p| Some(p["spanID"].as_str().unwrap()) == parent(task));
        let attempt = attempt.expect("the code's span is a child of the attempt that ran it");
        let task_failed = tag(task, "otel.status_code") == Some(&json!("ERROR"));
        assert_eq!(task_failed, attempt["spanID"] == failed["spanID"]);
        let process = &trace["processes"][task["processID"].as_str().unwrap()];
        assert_eq!(process["serviceName"], "report-task");
    }
    let _ = succeeded;

    assert_parents_contain_children(&trace, job_span, &pods, &tasks);
    all_exported(&ns, 1).await;
}

/// Parents contain their children: the Job its attempts, each attempt the code it ran; and the Job
/// starts after the creator's span that created it (its precise admission time).
fn assert_parents_contain_children(
    trace: &Value,
    job_span: &Value,
    pods: &[&Value],
    tasks: &[&Value],
) {
    let interval = |s: &Value| {
        let start = s["startTime"].as_u64().unwrap();
        (start, start + s["duration"].as_u64().unwrap())
    };
    let creator_start = interval(named(trace, "POST /reports")[0]).0;
    let (job_start, job_end) = interval(job_span);
    assert!(
        creator_start <= job_start,
        "the Job starts inside its creator's time"
    );
    for pod in pods {
        let (start, end) = interval(pod);
        assert!(
            job_start <= start && end <= job_end,
            "the Job span contains {pod}"
        );
        for task in tasks.iter().filter(|t| parent(t) == pod["spanID"].as_str()) {
            let (task_start, task_end) = interval(task);
            assert!(
                start <= task_start && task_end <= end,
                "the attempt {start}..{end} contains the code's span {task_start}..{task_end}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_flight_exports_each_job_span_once() {
    let ns = TestNamespace::create("restart").await;
    let mut jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let trace_id = random_trace_id();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let jobs: Api<Job> = ns.api();
    for i in 0..50 {
        jobs.create(
            &PostParams::default(),
            &kwok_job(&format!("job-{i}"), &traceparent, "6s"),
        )
        .await
        .unwrap();
    }
    // Some have finished, most are running: crash.
    tokio::time::sleep(Duration::from_secs(4)).await;
    jobtrace.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    jobtrace.restart().await;
    all_exported(&ns, 50).await;

    let trace = fetch_trace(&trace_id, 100).await;
    let job_spans = named(&trace, "job ");
    let distinct: HashSet<&str> = job_spans
        .iter()
        .map(|s| s["spanID"].as_str().unwrap())
        .collect();
    assert_eq!(
        distinct.len(),
        50,
        "one Job span per Job, whatever was repeated in the crash window"
    );
    let names: HashSet<&str> = job_spans
        .iter()
        .map(|s| s["operationName"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_wait_for_a_collector_that_is_down() {
    let ns = TestNamespace::create("down").await;
    let collector = crate::jaeger::Collector::reserve();
    let jobtrace = Webhook::start_run(&ns, &collector.otlp()).await;
    let trace_id = random_trace_id();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let jobs: Api<Job> = ns.api();
    for i in 0..5 {
        jobs.create(
            &PostParams::default(),
            &kwok_job(&format!("job-{i}"), &traceparent, "500ms"),
        )
        .await
        .unwrap();
    }
    cluster::until("the controller trying the missing collector", async || {
        (jobtrace.counter("jobtrace_export_retries_total").await >= 1).then_some(())
    })
    .await;
    for job in jobs.list(&ListParams::default()).await.unwrap().items {
        let marked = job
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("jobtrace.dev/exported");
        assert!(
            !marked,
            "nothing is marked exported while the collector is down"
        );
    }

    let collector = collector.start();
    all_exported(&ns, 5).await;
    let trace = fetch_trace_from(&collector.query(), &trace_id, 10).await;
    assert_eq!(named(&trace, "job ").len(), 5);
    assert_eq!(named(&trace, "pod ").len(), 5);
    assert_eq!(
        jobtrace.counter("jobtrace_spans_dropped_total").await,
        0,
        "nothing dropped"
    );
}

/// Traces of one operation of one service, from a Jaeger's query API.
async fn operation_traces(base: &str, service: &str, operation: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let what = format!("a {operation:?} span of {service}");
    cluster::until(&what, async || {
        let body: Value = http
            .get(format!(
                "{base}/api/traces?service={service}&operation={}&limit=50",
                operation.replace(' ', "%20")
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        let traces = body["data"].as_array().filter(|t| !t.is_empty());
        traces.cloned().ok_or_else(String::new)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobtrace_traces_its_own_work_in_traces_of_its_own() {
    let ns = TestNamespace::create("self").await;
    let collector = crate::jaeger::Collector::reserve().start();
    let service = format!("jobtrace-{}", ns.name);
    let args = ["run", "--no-leader-election", "--watch-namespace", &ns.name];
    let otlp = collector.otlp();
    let _jobtrace = Webhook::start_with(
        &ns,
        &args,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp),
            ("OTEL_SERVICE_NAME", &service),
            ("JOBTRACE_SELF_TRACING_RATIO", "1"),
        ],
    )
    .await;
    let trace_id = random_trace_id();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let jobs: Api<Job> = ns.api();
    jobs.create(
        &PostParams::default(),
        &kwok_job("own", &traceparent, "500ms"),
    )
    .await
    .unwrap();
    all_exported(&ns, 1).await;

    // The admission of the Job: a server span in a trace of its own, linked to the Job's.
    let admissions = operation_traces(&collector.query(), &service, "admission jobs").await;
    let linked: Vec<&Value> = admissions
        .iter()
        .flat_map(|t| t["spans"].as_array().unwrap())
        .filter(|s| {
            s["references"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["traceID"] == trace_id.as_str()))
        })
        .collect();
    assert!(
        !linked.is_empty(),
        "an admission span links to the Job's trace"
    );
    for span in &linked {
        assert_ne!(
            span["traceID"],
            trace_id.as_str(),
            "never in the user's trace"
        );
        assert_eq!(tag(span, "span.kind").unwrap(), "server");
        assert_eq!(tag(span, "jobtrace.admission.result").unwrap(), "injected");
    }
    // Each export is recorded too.
    let exports = operation_traces(&collector.query(), &service, "export").await;
    let results: HashSet<&str> = exports
        .iter()
        .flat_map(|t| t["spans"].as_array().unwrap())
        .filter_map(|s| tag(s, "jobtrace.export.result")?.as_str())
        .collect();
    assert!(results.contains("exported"), "{results:?}");
    // The user's trace holds the Job's spans only: nothing of jobtrace's own work.
    let trace = fetch_trace_from(&collector.query(), &trace_id, 2).await;
    assert!(named(&trace, "admission").is_empty() && named(&trace, "export").is_empty());
}

/// A `jobtrace controller` replica electing a leader through `lease` in the namespace.
struct Replica {
    child: std::process::Child,
    metrics: String,
}

impl Replica {
    fn start(ns: &TestNamespace, lease: &str, name: &str, otlp: &str) -> Self {
        let port = jobtrace_testkit::process::free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_jobtrace"))
            .args(["controller", "--watch-namespace", &ns.name])
            .args(["--lease-namespace", &ns.name, "--lease-name", lease])
            .args(["--instance", name])
            .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Self {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    async fn leads(&self) -> Option<bool> {
        let text = reqwest::get(&self.metrics).await.ok()?.text().await.ok()?;
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("jobtrace_leader "))?;
        Some(value.trim() == "1")
    }

    /// SIGTERM, as the kubelet stops a pod, and the exit.
    fn terminate(&mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_export_once_and_hand_over_on_shutdown() {
    use k8s_openapi::api::coordination::v1::Lease;
    let ns = TestNamespace::create("leader").await;
    let collector = crate::jaeger::Collector::reserve().start();
    let _webhook = Webhook::start(&ns).await;
    let replicas = [
        Replica::start(&ns, "exporter", "replica-a", &collector.otlp()),
        Replica::start(&ns, "exporter", "replica-b", &collector.otlp()),
    ];
    let leader = poll::until(
        "a single leader",
        DEADLINE,
        Duration::from_millis(250),
        async || match [replicas[0].leads().await, replicas[1].leads().await] {
            [Some(true), Some(false)] => Ok(0),
            [Some(false), Some(true)] => Ok(1),
            states => Err(format!("{states:?}")),
        },
    )
    .await;
    let [a, b] = replicas;
    let (mut first, second) = if leader == 0 { (a, b) } else { (b, a) };
    let trace_id = random_trace_id();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let jobs: Api<Job> = ns.api();
    for i in 0..3 {
        jobs.create(
            &PostParams::default(),
            &kwok_job(&format!("before-{i}"), &traceparent, "500ms"),
        )
        .await
        .unwrap();
    }
    all_exported(&ns, 3).await;

    // The leader is stopped: it gives the Lease up on its way out, the other one takes over.
    first.terminate();
    let leases: Api<Lease> = ns.api();
    let lease = leases.get("exporter").await.unwrap();
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(
        holder.is_empty() || holder != format!("replica-{}", ["a", "b"][leader]),
        "the stopped leader still holds the Lease: {holder}"
    );
    poll::until(
        "the other replica leading",
        DEADLINE,
        Duration::from_millis(250),
        async || (second.leads().await == Some(true)).then_some(()),
    )
    .await;
    for i in 0..3 {
        jobs.create(
            &PostParams::default(),
            &kwok_job(&format!("after-{i}"), &traceparent, "500ms"),
        )
        .await
        .unwrap();
    }
    all_exported(&ns, 6).await;
    let trace = fetch_trace_from(&collector.query(), &trace_id, 12).await;
    let job_spans = named(&trace, "job ");
    let ids: HashSet<&str> = job_spans
        .iter()
        .filter_map(|s| s["spanID"].as_str())
        .collect();
    assert_eq!(
        ids.len(),
        6,
        "each Job's span, from one replica or the other"
    );
    drop(second);
}
