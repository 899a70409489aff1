//! The queue client example (examples/python/producer.py and worker.py): a producer puts a report
//! request with its trace context on a Redis list, a worker takes it and creates the Job as a
//! creator does; one trace from the producer's span to the Job's own code.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::python::{python, script};
use super::{OTLP_HTTP, Parent, check_tree, repo, span_parent};
use crate::jaeger::{OTLP_GRPC, fetch_trace};
use jobtrace_testkit::cluster::{TestNamespace, finished_condition};
use jobtrace_testkit::poll;
use jobtrace_testkit::process::{Runner, Webhook};

/// A `redis-server` of the test's own on a free local port, nothing persisted; stopped on drop.
struct Redis {
    server: Child,
    url: String,
}

impl Redis {
    async fn start() -> Self {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let server = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server (hack/clients/python.sh installs it)");
        let redis = Self {
            server,
            url: format!("redis://127.0.0.1:{port}"),
        };
        poll::until(
            &format!("redis-server listening on {port}"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            async || {
                TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                    .is_ok()
                    .then_some(())
            },
        )
        .await;
        redis
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// One of the example's services, `python SCRIPT`, with the Redis and OpenTelemetry settings.
fn service(redis: &Redis, script_name: &str, name: &str) -> Command {
    let mut command = Command::new(python());
    command
        .arg(script(script_name))
        .env("REDIS_URL", &redis.url)
        .env("KUBECONFIG", repo().join("target/cluster/kubeconfig"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP_HTTP)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_SERVICE_NAME", name);
    command
}

/// Runs `command` to its successful end; what it printed.
async fn run(mut command: Command) -> String {
    let program = format!("{command:?}");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The text after `prefix` on the line of `stdout` that starts with it.
fn after<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?}... in:\n{stdout}"))
}

// Not run_and_check: it waits for the creator's four spans, and the producer's fifth would let it
// read the trace before the Job span is in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_continues_the_producers_trace_from_the_message_into_the_job() {
    let redis = Redis::start().await;
    let ns = TestNamespace::create("queue").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let _runner = Runner::start(&ns);

    let mut producer = service(&redis, "producer.py", "report-producer");
    producer.arg("monthly-usage");
    let published = run(producer).await;
    let trace_id = after(
        &published,
        "published report request monthly-usage in trace ",
    );

    let mut worker = service(&redis, "worker.py", "report-worker");
    worker.arg(&ns.name).arg(python()).arg(script("job.py"));
    let created = run(worker).await;
    let (job, worker_trace) = after(&created, &format!("created Job {}/", ns.name))
        .split_once(" in trace ")
        .expect("the created line names the trace");
    assert_eq!(
        worker_trace, trace_id,
        "the worker continued the producer's trace"
    );

    let finished = ns.finished(job).await;
    assert_eq!(
        finished_condition(&finished).map(|c| c.0).as_deref(),
        Some("Complete"),
        "the Job's program succeeded: {:?}",
        finished.status
    );
    // the producer's span, then the creator's tree of the contract under it
    let trace = fetch_trace(trace_id, 5).await;
    check_tree(&trace, &ns.name, job, "report-worker", Parent::Creator);
    let spans = trace["spans"].as_array().unwrap();
    let named = |name: &str| spans.iter().find(|s| s["operationName"] == name).unwrap();
    let publish = named("publish-report-request");
    assert_eq!(
        span_parent(named("create-report-job")),
        publish["spanID"].as_str(),
        "the worker's span is the producer's span's child"
    );
    assert_eq!(
        span_parent(publish),
        None,
        "the producer's span is the root"
    );
    let process = publish["processID"].as_str().unwrap();
    assert_eq!(
        trace["processes"][process]["serviceName"],
        "report-producer"
    );
}
