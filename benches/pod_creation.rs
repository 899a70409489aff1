//! What jobtrace's pod webhook costs the job controller: the time from creating an Indexed Job of
//! `BENCH_COMPLETIONS` (default 1,000) completions, all in parallel, until all its pods exist,
//! for a traced Job (every pod goes through the pod webhook) and an untraced one in a namespace
//! the webhook doesn't serve, in alternating rounds (`BENCH_ROUNDS`, default 3), so the ratio of
//! the medians is measured side by side. Needs `make cluster-up`.

#[path = "../tests/helm/mod.rs"]
mod helm;
#[path = "../tests/e2e/support.rs"]
#[allow(dead_code)]
mod support;
#[path = "../tests/e2e/webhook_process.rs"]
#[allow(dead_code)]
mod webhook_process;
#[path = "workload.rs"]
mod workload;

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

use support::TestNamespace;
use webhook_process::Webhook;

/// An Indexed Job whose pods kwok keeps running (no completion adds pods while we count).
fn indexed_job(name: &str, completions: usize, traced: bool) -> Job {
    let mut job = workload::kwok_job(name, completions, "1h", traced);
    job["spec"]["completionMode"] = json!("Indexed");
    serde_json::from_value(job).unwrap()
}

/// Creates the Job and waits until it has `completions` pods; the time that took.
async fn time_pods(ns: &TestNamespace, name: &str, completions: usize, traced: bool) -> Duration {
    let jobs: Api<Job> = ns.api();
    let pods: Api<Pod> = ns.api();
    let started = Instant::now();
    let created = jobs
        .create(
            &PostParams::default(),
            &indexed_job(name, completions, traced),
        )
        .await
        .expect("create the Job");
    let is_traced = created
        .metadata
        .labels
        .unwrap_or_default()
        .contains_key("jobtrace.dev/traced");
    assert_eq!(
        is_traced, traced,
        "the webhook traced exactly the Job meant"
    );
    let selector = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"));
    let deadline = started + Duration::from_secs(600);
    loop {
        // (A list with a label selector carries no remaining count: list them all.)
        let count = pods
            .list_metadata(&selector)
            .await
            .expect("count the pods")
            .items
            .len();
        if count >= completions {
            break started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {count} of {completions} pods"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn clean(ns: &TestNamespace, name: &str) {
    let jobs: Api<Job> = ns.api();
    let pods: Api<Pod> = ns.api();
    jobs.delete(name, &DeleteParams::background()).await.ok();
    let selector = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"));
    pods.delete_collection(&DeleteParams::default().grace_period(0), &selector)
        .await
        .ok();
    while !pods
        .list_metadata(&selector.clone().limit(1))
        .await
        .unwrap()
        .items
        .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Who serves the namespace of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The pod webhook on every pod (each gets a span id of its own).
    PodWebhook,
    /// Traced with `--pod-spans false`: the Job webhook writes the context into the template,
    /// no pod calls a webhook.
    JobWebhookOnly,
    /// Nothing of jobtrace.
    Untraced,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Self::PodWebhook => "traced, the pod webhook on every pod",
            Self::JobWebhookOnly => "traced, `--pod-spans false` (no pod webhook)",
            Self::Untraced => "untraced, no webhook",
        }
    }
}

fn main() {
    let completions = workload::env_number("BENCH_COMPLETIONS", 1000);
    let rounds = workload::env_number("BENCH_ROUNDS", 3);
    let runtime = workload::runtime();
    runtime.block_on(async {
        let with = TestNamespace::create("bench-pods-with").await;
        let job_only = TestNamespace::create("bench-pods-job-only").await;
        let without = TestNamespace::create("bench-pods-without").await;
        let webhook = Webhook::start(&with).await;
        let job_webhook = Webhook::start_with(&job_only, &["webhook", "--pod-spans", "false"], &[]).await;
        let pids = [webhook.pid(), job_webhook.pid()];
        let apiserver = workload::pid_of("kube-apiserver");
        let cpu = |pid: Option<u32>| pid.map_or(0.0, workload::cpu_seconds);
        let webhooks_cpu = || pids.iter().map(|&p| cpu(p)).sum::<f64>();
        let modes = [Mode::PodWebhook, Mode::JobWebhookOnly, Mode::Untraced];
        // Per mode: the times, and the CPU seconds the apiserver and the webhooks used.
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); modes.len()];
        let mut cpus = vec![(0.0, 0.0); modes.len()];
        for round in 0..rounds {
            let name = format!("indexed-{round}");
            // Which goes first rotates.
            for i in 0..modes.len() {
                let m = (i + round) % modes.len();
                let mode = modes[m];
                let ns = match mode {
                    Mode::PodWebhook => &with,
                    Mode::JobWebhookOnly => &job_only,
                    Mode::Untraced => &without,
                };
                let before = (cpu(apiserver), webhooks_cpu());
                let took = time_pods(ns, &name, completions, mode != Mode::Untraced).await;
                let used = (cpu(apiserver) - before.0, webhooks_cpu() - before.1);
                clean(ns, &name).await;
                eprintln!("pod_creation: round {round}, {mode:?}: {took:?}, CPU {used:?}");
                times[m].push(took);
                cpus[m].0 += used.0;
                cpus[m].1 += used.1;
            }
        }
        for t in &mut times {
            t.sort_unstable();
        }
        let median = |m: usize| workload::quantile(&times[m], 0.5).as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let per_pod = |seconds: f64| seconds * 1e3 / (rounds * completions) as f64;
        println!(
            "pod_creation: an Indexed Job of {completions} completions, {rounds} rounds each, rotating"
        );
        println!("| | median | min | max | ratio to untraced | kube-apiserver CPU per pod | jobtrace CPU per pod |");
        println!("|---|---|---|---|---|---|---|");
        for (m, mode) in modes.iter().enumerate() {
            let t = &times[m];
            println!(
                "| {} | {:.2} s | {:.2} s | {:.2} s | {:.2} | {:.2} ms | {:.3} ms |",
                mode.label(),
                median(m),
                t[0].as_secs_f64(),
                t[t.len() - 1].as_secs_f64(),
                median(m) / median(2),
                per_pod(cpus[m].0),
                per_pod(cpus[m].1),
            );
        }
        println!(
            "pod_creation: median ratio with the pod webhook / untraced = {:.3}",
            median(0) / median(2)
        );
    });
}
