//! The java client example (examples/java/): see the module's contract in mod.rs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Parent, installed, run_and_check};
use crate::jaeger::OTLP_GRPC;
use crate::support::TestNamespace;
use crate::webhook_process::{Runner, Webhook};

/// `java -cp CLASSPATH` as hack/clients/java.sh built it: the JVM by its absolute path (the pod
/// runner starts the Job's command with only the pod's environment) and the example's jars.
fn java() -> (PathBuf, OsString) {
    let dir = installed("java");
    let mut classpath = dir.join("lib").into_os_string();
    classpath.push("/*"); // every jar of lib/, expanded by the JVM itself
    (dir.join("java"), classpath)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creator_annotates_the_job_and_the_job_program_continues_its_trace() {
    let (java, classpath) = java();
    let ns = TestNamespace::create("java").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let _runner = Runner::start(&ns);

    let mut creator = Command::new(&java);
    creator
        .arg("-cp")
        .arg(&classpath)
        .arg("dev.jobtrace.examples.Creator");
    let job = [
        java.as_path(),
        Path::new("-cp"),
        Path::new(&classpath),
        Path::new("dev.jobtrace.examples.ReportJob"),
    ];
    run_and_check(&ns, creator, &job, "report-creator", Parent::Creator).await;
}
