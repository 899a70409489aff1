//! The shell example (`examples/shell/`): `otel-cli exec` runs the creating step in a span,
//! `jobtrace stamp` writes its context on the manifest, kubectl creates the Job; the Job's step
//! runs under `otel-cli exec`, which reads `TRACEPARENT` by itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Parent, installed, repo, run_and_check};
use crate::jaeger::OTLP_GRPC;
use jobtrace_testkit::cluster::TestNamespace;
use jobtrace_testkit::process::{Runner, Webhook, bin_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stamped_manifest_and_otel_cli_continue_the_steps_trace() {
    let ns = TestNamespace::create("client-shell").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let _runner = Runner::start(&ns);
    let jobtrace = PathBuf::from(env!("CARGO_BIN_EXE_jobtrace"));
    let path = [
        installed("shell").join("bin"),
        jobtrace.parent().unwrap().to_owned(),
        bin_dir(),
        PathBuf::from("/usr/bin"),
        PathBuf::from("/bin"),
    ];
    let path = std::env::join_paths(path).unwrap();
    let examples = repo().join("examples/shell");
    let mut creator = Command::new("/bin/sh");
    creator.arg(examples.join("creator.sh")).env("PATH", &path);
    let job: [&Path; 2] = [Path::new("/bin/sh"), &examples.join("job.sh")];
    run_and_check(&ns, creator, &job, "shell-creator", Parent::Creator).await;
}
