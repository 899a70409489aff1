//! What the webhook costs a client creating Jobs through the real apiserver: median create latency
//! with the webhook registered divided by the median without it, measured side by side (creates
//! alternate between a namespace the webhook serves and one it doesn't). Needs `make cluster-up`.

use jobtrace_testkit::{cluster, process, workload};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::PostParams;

use cluster::TestNamespace;
use process::Webhook;

fn suspended_job(name: &str) -> Job {
    let mut job = workload::typical_job(name);
    // Suspended: no pods, so the job controller's work doesn't load the machine mid-measurement.
    job["spec"]["suspend"] = true.into();
    serde_json::from_value(job).unwrap()
}

async fn create(jobs: &Api<Job>, name: &str) -> Duration {
    let job = suspended_job(name);
    let started = Instant::now();
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create");
    started.elapsed()
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let creates: usize = std::env::var("BENCH_CREATES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let runtime = workload::runtime();
    runtime.block_on(async {
        let with = TestNamespace::create("bench-with").await;
        let without = TestNamespace::create("bench-without").await;
        let _webhook = Webhook::start(&with).await;
        let (jobs_with, jobs_without): (Api<Job>, Api<Job>) = (with.api(), without.api());
        for i in 0..20 {
            create(&jobs_with, &format!("warm-{i}")).await;
            create(&jobs_without, &format!("warm-{i}")).await;
        }
        let (mut a, mut b) = (Vec::with_capacity(creates), Vec::with_capacity(creates));
        for i in 0..creates {
            let name = format!("job-{i}");
            // Alternate which goes first, so neither always follows the other.
            if i % 2 == 0 {
                a.push(create(&jobs_with, &name).await);
                b.push(create(&jobs_without, &name).await);
            } else {
                b.push(create(&jobs_without, &name).await);
                a.push(create(&jobs_with, &name).await);
            }
        }
        let traced = |job: Job| {
            job.metadata
                .labels
                .unwrap_or_default()
                .contains_key("jobtrace.dev/traced")
        };
        assert!(
            traced(jobs_with.get("job-0").await.unwrap()),
            "the webhook served one namespace"
        );
        assert!(
            !traced(jobs_without.get("job-0").await.unwrap()),
            "and not the other"
        );
        a.sort_unstable();
        b.sort_unstable();
        let (ma, mb) = (workload::quantile(&a, 0.5), workload::quantile(&b, 0.5));
        println!("apiserver_overhead: {creates} creates each, interleaved");
        println!("| | median | p90 | p99 |");
        println!("|---|---|---|---|");
        for (label, s) in [("with the webhook", &a), ("without", &b)] {
            println!(
                "| {label} | {} | {} | {} |",
                millis(workload::quantile(s, 0.5)),
                millis(workload::quantile(s, 0.9)),
                millis(workload::quantile(s, 0.99))
            );
        }
        println!(
            "apiserver_overhead: median ratio with/without = {:.3}",
            ma.as_secs_f64() / mb.as_secs_f64()
        );
    });
}
