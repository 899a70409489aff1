//! The python client example (examples/python/): see the module's contract in mod.rs.

use std::path::PathBuf;
use std::process::Command;

use super::{Parent, installed, repo, run_and_check};
use crate::jaeger::OTLP_GRPC;
use jobtrace_testkit::cluster::TestNamespace;
use jobtrace_testkit::process::{Runner, Webhook};

/// The interpreter of the venv that `hack/clients/python.sh` installs.
pub fn python() -> PathBuf {
    installed("python").join("venv/bin/python")
}

/// A program of examples/python/.
pub fn script(name: &str) -> PathBuf {
    repo().join("examples/python").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creator_annotates_the_job_and_the_job_continues_the_trace_from_its_environment() {
    let ns = TestNamespace::create("python").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let _runner = Runner::start(&ns);

    let (python, job) = (python(), script("job.py"));
    let mut creator = Command::new(&python);
    creator.arg(script("creator.py"));
    run_and_check(
        &ns,
        creator,
        &[&python, &job],
        "report-creator",
        Parent::Creator,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_code_creator_sends_the_context_as_headers_of_its_create_request() {
    let ns = TestNamespace::create("python-auto").await;
    let _jobtrace = Webhook::start_request_context(&ns, OTLP_GRPC).await;
    let _runner = Runner::start(&ns);

    let (python, job) = (python(), script("job.py"));
    let mut creator = Command::new(installed("python").join("venv/bin/opentelemetry-instrument"));
    creator
        .arg(&python)
        .arg(script("creator_auto.py"))
        // the distro also turns on metrics and logs, which the local Jaeger does not take
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("OTEL_LOGS_EXPORTER", "none");
    run_and_check(
        &ns,
        creator,
        &[&python, &job],
        "report-creator",
        Parent::HttpClientSpan,
    )
    .await;
}
