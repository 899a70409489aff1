//! The Rust client example (`crates/jobtrace-context/examples/`): kube-rs and the OpenTelemetry
//! SDK create the Job, `jobtrace_context::otel::annotate` writes the context; the Job's program
//! continues it with `jobtrace_context::otel::context_from_env`.

use std::process::Command;

use super::{Parent, run_and_check};
use crate::jaeger::OTLP_GRPC;
use jobtrace_testkit::cluster::TestNamespace;
use jobtrace_testkit::process::{Runner, Webhook, example};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creator_annotates_the_job_and_the_job_program_continues_its_trace() {
    let ns = TestNamespace::create("client-rust").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let _runner = Runner::start(&ns);
    let run = run_and_check(
        &ns,
        Command::new(example("create-job")),
        &[&example("traced-task")],
        "rust-creator",
        Parent::Creator,
    )
    .await;
    let job = &run.trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operationName"] == format!("job {}/{}", ns.name, run.job))
        .unwrap();
    assert_eq!(job["traceID"], run.trace_id);
}
