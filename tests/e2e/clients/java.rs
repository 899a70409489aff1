//! The java client example (examples/java/): see the module's contract in mod.rs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Parent, installed, run_and_check};
use crate::jaeger::OTLP_GRPC;
use jobtrace_testkit::cluster::TestNamespace;
use jobtrace_testkit::process::{Runner, Webhook};

/// What hack/clients/java.sh built: the JVM by its absolute path (the pod runner starts the
/// Job's command with only the pod's environment) and the classpath of the example's jars.
struct Java {
    dir: PathBuf,
    jvm: PathBuf,
    classpath: OsString,
}

impl Java {
    fn installed() -> Self {
        let dir = installed("java");
        let mut classpath = dir.join("lib").into_os_string();
        classpath.push("/*"); // every jar of lib/, expanded by the JVM itself
        Self {
            jvm: dir.join("java"),
            dir,
            classpath,
        }
    }

    /// The Job's command: `ReportJob`, which continues the trace from its environment.
    fn report_job(&self) -> [&Path; 4] {
        [
            &self.jvm,
            Path::new("-cp"),
            Path::new(&self.classpath),
            Path::new("dev.jobtrace.examples.ReportJob"),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creator_annotates_the_job_and_the_job_program_continues_its_trace() {
    let java = Java::installed();
    let ns = TestNamespace::create("java").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let _runner = Runner::start(&ns);

    let mut creator = Command::new(&java.jvm);
    creator
        .arg("-cp")
        .arg(&java.classpath)
        .arg("dev.jobtrace.examples.Creator");
    let job = java.report_job();
    run_and_check(&ns, creator, &job, "report-creator", Parent::Creator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_creator_sends_the_context_with_the_create_request() {
    let java = Java::installed();
    let ns = TestNamespace::create("java-agent").await;
    let _jobtrace = Webhook::start_request_context(&ns, OTLP_GRPC).await;
    let _runner = Runner::start(&ns);

    let mut agent = OsString::from("-javaagent:");
    agent.push(java.dir.join("agent/opentelemetry-javaagent.jar"));
    let mut creator = Command::new(&java.jvm);
    creator
        .arg(agent)
        .args(["-Dotel.metrics.exporter=none", "-Dotel.logs.exporter=none"])
        .arg("-cp")
        .arg(&java.classpath)
        .arg("dev.jobtrace.examples.AgentCreator");
    let job = java.report_job();
    run_and_check(&ns, creator, &job, "report-creator", Parent::HttpClientSpan).await;
}
