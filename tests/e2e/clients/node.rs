//! The node client example (examples/node/): see the module's contract in mod.rs.

use std::path::PathBuf;
use std::process::Command;

use super::{Parent, installed, repo, run_and_check};
use crate::jaeger::OTLP_GRPC;
use jobtrace_testkit::cluster::TestNamespace;
use jobtrace_testkit::process::{Runner, Webhook};

/// The `node` on this `PATH`, as an absolute path: the pod runner starts the Job's command with
/// only the pod's environment.
fn node() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("node"))
        .find(|node| node.is_file())
        .expect("node on PATH")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creator_annotates_the_job_and_the_job_program_continues_its_trace() {
    installed("node");
    let ns = TestNamespace::create("node").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let _runner = Runner::start(&ns);

    let node = node();
    let examples = repo().join("examples/node");
    let mut creator = Command::new(&node);
    creator.arg(examples.join("creator.mjs"));
    let job = [node.as_path(), &examples.join("job.mjs")];
    run_and_check(&ns, creator, &job, "report-creator", Parent::Creator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_code_creator_sends_the_context_as_headers_of_its_create_request() {
    installed("node");
    let ns = TestNamespace::create("node-auto").await;
    let _jobtrace = Webhook::start_request_context(&ns, OTLP_GRPC).await;
    let _runner = Runner::start(&ns);

    let node = node();
    let examples = repo().join("examples/node");
    let mut creator = Command::new(&node);
    creator
        .current_dir(&examples) // where --require finds the register module
        .arg("--require")
        .arg("@opentelemetry/auto-instrumentations-node/register")
        .arg(examples.join("creator-auto.mjs"))
        // the local Jaeger takes traces only
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("OTEL_LOGS_EXPORTER", "none")
        // http alone: net, dns and the others would add spans of their own, and the cloud
        // resource detectors would probe metadata servers
        .env("OTEL_NODE_ENABLED_INSTRUMENTATIONS", "http")
        .env("OTEL_NODE_RESOURCE_DETECTORS", "env");
    let job = [node.as_path(), &examples.join("job.mjs")];
    run_and_check(&ns, creator, &job, "report-creator", Parent::HttpClientSpan).await;
}
