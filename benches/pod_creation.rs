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

fn main() {
    let completions = workload::env_number("BENCH_COMPLETIONS", 1000);
    let rounds = workload::env_number("BENCH_ROUNDS", 3);
    let runtime = workload::runtime();
    runtime.block_on(async {
        let with = TestNamespace::create("bench-pods-with").await;
        let without = TestNamespace::create("bench-pods-without").await;
        let webhook = Webhook::start(&with).await;
        let webhook_pid = webhook.pid().expect("the webhook runs");
        let apiserver = workload::pid_of("kube-apiserver");
        let cpu = |pid: Option<u32>| pid.map_or(0.0, workload::cpu_seconds);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        // CPU seconds used while the pods were created: (the apiserver's, the webhook's).
        let (mut cpu_a, mut cpu_b) = ((0.0, 0.0), (0.0, 0.0));
        for round in 0..rounds {
            let name = format!("indexed-{round}");
            // Alternate which goes first.
            let order = if round % 2 == 0 { [true, false] } else { [false, true] };
            for traced in order {
                let ns = if traced { &with } else { &without };
                let before = (cpu(apiserver), cpu(Some(webhook_pid)));
                let took = time_pods(ns, &name, completions, traced).await;
                let used = (
                    cpu(apiserver) - before.0,
                    cpu(Some(webhook_pid)) - before.1,
                );
                clean(ns, &name).await;
                eprintln!("pod_creation: round {round}, traced {traced}: {took:?}, CPU {used:?}");
                let (times, cpus) = if traced {
                    (&mut a, &mut cpu_a)
                } else {
                    (&mut b, &mut cpu_b)
                };
                times.push(took);
                cpus.0 += used.0;
                cpus.1 += used.1;
            }
        }
        a.sort_unstable();
        b.sort_unstable();
        let (ma, mb) = (workload::quantile(&a, 0.5), workload::quantile(&b, 0.5));
        println!("pod_creation: an Indexed Job of {completions} completions, {rounds} rounds each, alternating");
        println!("| | median | min | max |");
        println!("|---|---|---|---|");
        for (label, s) in [("traced (pod webhook on every pod)", &a), ("untraced, no webhook", &b)] {
            println!(
                "| {label} | {:.2} s | {:.2} s | {:.2} s |",
                workload::quantile(s, 0.5).as_secs_f64(),
                s[0].as_secs_f64(),
                s[s.len() - 1].as_secs_f64()
            );
        }
        println!(
            "pod_creation: median ratio traced/untraced = {:.3}",
            ma.as_secs_f64() / mb.as_secs_f64()
        );
        #[allow(clippy::cast_precision_loss)]
        let per_pod = |seconds: f64| seconds * 1e3 / (rounds * completions) as f64;
        println!(
            "pod_creation: CPU per pod, traced: kube-apiserver {:.3} ms, jobtrace webhook {:.3} ms; \
             untraced: kube-apiserver {:.3} ms, jobtrace webhook {:.3} ms",
            per_pod(cpu_a.0),
            per_pod(cpu_a.1),
            per_pod(cpu_b.0),
            per_pod(cpu_b.1),
        );
    });
}
