//! The node client example (examples/node/): see the module's contract in mod.rs.

use std::path::PathBuf;
use std::process::Command;

use super::{Parent, installed, repo, run_and_check};
use crate::jaeger::OTLP_GRPC;
use crate::support::TestNamespace;
use crate::webhook_process::{Runner, Webhook};

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
