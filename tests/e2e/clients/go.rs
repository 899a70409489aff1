//! The go client example (examples/go/): see the module's contract in mod.rs.

use std::path::PathBuf;
use std::process::Command;

use super::{Parent, installed, run_and_check};
use crate::jaeger::OTLP_GRPC;
use jobtrace_testkit::cluster::TestNamespace;
use jobtrace_testkit::process::{Runner, Webhook};

/// A program hack/clients/go.sh built.
fn binary(name: &str) -> PathBuf {
    installed("go").join("bin").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creator_annotates_the_job_and_the_job_program_continues_its_trace() {
    let ns = TestNamespace::create("go").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let _runner = Runner::start(&ns);

    let creator = Command::new(binary("creator"));
    let job = binary("job");
    run_and_check(&ns, creator, &[&job], "report-creator", Parent::Creator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_code_creator_sends_the_context_as_headers_of_its_create_request() {
    let ns = TestNamespace::create("go-auto").await;
    let _jobtrace = Webhook::start_request_context(&ns, OTLP_GRPC).await;
    let _runner = Runner::start(&ns);

    let creator = Command::new(binary("creator-auto"));
    let job = binary("job");
    run_and_check(
        &ns,
        creator,
        &[&job],
        "report-creator",
        Parent::HttpClientSpan,
    )
    .await;
}
