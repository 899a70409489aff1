//! `jobtrace trace`, the binary, against the control plane and Jaeger: right after traced Jobs
//! finished it waits for their spans and prints their trees; an untraced Job is one line on
//! stderr and exit code 4.

use std::process::Output;

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::PostParams;
use regex::Regex;
use serde_json::json;

use crate::jaeger::{JAEGER_QUERY, OTLP_GRPC};
use crate::spans::{all_exported, kwok_job, random_trace_id};
use jobtrace_testkit::cluster::TestNamespace;
use jobtrace_testkit::process::Webhook;

async fn jobtrace_trace(ns: &TestNamespace, job: &str) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_jobtrace"))
        .args(["trace", "-n", &ns.name, job])
        .args(["--query-url", JAEGER_QUERY, "--wait", "30s"])
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run jobtrace trace")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines of `out`'s stdout match `expected`, one regex a line, in order.
fn assert_tree(out: &Output, expected: &[String]) {
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}; stdout:\n{stdout}\nstderr:\n{}",
        out.status.code(),
        text(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), expected.len(), "the tree:\n{stdout}");
    for (line, pattern) in lines.iter().zip(expected) {
        let pattern = Regex::new(&format!("^{pattern}$")).unwrap();
        assert!(
            pattern.is_match(line),
            "{line:?} !~ {pattern}; the tree:\n{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_prints_the_tree_of_a_job_that_just_finished() {
    let ns = TestNamespace::create("trace-cmd").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let jobs: Api<Job> = ns.api();
    // Their creator's span (00f067aa0ba902b7) is never exported: each Job span is a root.
    let traceparent = || format!("00-{}-00f067aa0ba902b7-01", random_trace_id());
    jobs.create(
        &PostParams::default(),
        &kwok_job("nightly", &traceparent(), "1s"),
    )
    .await
    .unwrap();
    let mut broken = kwok_job("broken", &traceparent(), "1s");
    broken
        .spec
        .as_mut()
        .unwrap()
        .template
        .metadata
        .as_mut()
        .unwrap()
        .annotations
        .as_mut()
        .unwrap()
        .insert("sim.jobtrace.dev/exit-code".to_owned(), "1".to_owned());
    jobs.create(&PostParams::default(), &broken).await.unwrap();
    ns.finished("nightly").await;
    ns.finished("broken").await;

    // Asked as soon as the Jobs finished: --wait covers the export.
    let ms = r"\d+ ms";
    let pod = |job: &str| format!(r"pod {job}-[a-z0-9]{{5}} \[jobtrace\] {ms}");
    let out = jobtrace_trace(&ns, "nightly").await;
    assert_tree(
        &out,
        &[
            format!(r"job {}/nightly \[jobtrace\] {ms}", ns.name),
            format!("└── {}", pod("nightly")),
        ],
    );
    let out = jobtrace_trace(&ns, "broken").await;
    assert_tree(
        &out,
        &[
            format!(
                r#"job {}/broken \[jobtrace\] {ms} ERROR error\.type="BackoffLimitExceeded""#,
                ns.name
            ),
            format!(
                r#"└── {} ERROR error\.type="Error" jobtrace\.container\.exit_code=1 k8s\.container\.status\.reason="Error""#,
                pod("broken")
            ),
        ],
    );
    all_exported(&ns, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_of_an_untraced_job_is_one_line_and_exit_code_4() {
    let ns = TestNamespace::create("trace-untraced").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let plain: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": "plain" },
        "spec": { "template": { "spec": { "restartPolicy": "Never", "containers": [{ "name": "main", "image": "example.invalid/main" }] } } }
    }))
    .unwrap();
    let jobs: Api<Job> = ns.api();
    jobs.create(&PostParams::default(), &plain).await.unwrap();

    let out = jobtrace_trace(&ns, "plain").await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: Job {}/plain is not traced: it has no jobtrace.dev/trace-id annotation\n",
            ns.name
        )
    );
    let out = jobtrace_trace(&ns, "missing").await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!("error: Job {}/missing not found\n", ns.name)
    );
}
