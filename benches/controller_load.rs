//! The controller under many concurrent traced Jobs on kwok: its peak resident memory, the CPU
//! time it used, and the export lag from a Job's terminal condition to its span being queryable in
//! Jaeger (sampled Jobs, polled). Needs `make cluster-up`. `BENCH_JOBS=1000,10000` by default.
//! `BENCH_FAT_BYTES=1048576` makes every Job as large as a tenant may (and so its pod): its
//! container carries a variable of that many bytes (etcd takes objects of up to 1.5 MiB).
//! `BENCH_LATE=1` starts the controller only once every Job finished, so that it lists them all
//! and their pods, as a replica taking the lead does; its lag then counts from its start.
//!
//! Fat Jobs fill etcd: each version of a Job or pod is kept whole until compacted, a dozen per Job
//! and its pod (12.6 MB per Job of 1 MiB measured), and the apiserver compacts every 5 minutes,
//! so 400 such Jobs would take about 5 GB, past the local control plane's 4 GiB quota, before its
//! first compaction. With `BENCH_FAT_BYTES` set the bench compacts etcd every
//! [`COMPACT_EVERY`] (as the apiserver's compactor does) until every Job finished, and once more
//! then, before a late controller starts.

use jobtrace_testkit::{cluster, poll, process, workload};
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jobtrace_testkit::fixtures::TestJob;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

const SAMPLE_EVERY: usize = 20;
/// How often etcd is compacted while fat Jobs run.
const COMPACT_EVERY: Duration = Duration::from_secs(10);

/// A Job as the webhook leaves it: ids chosen, pod template labelled and annotated.
/// One pod running `run_for` (the pod runner reads it), no retry; without the creator's
/// annotation, so no webhook takes it for a Job to trace. Its container carries a variable of
/// `fat` bytes, when `fat` is not 0.
fn traced_job(i: usize, trace: &str, run_for: &str, fat: usize) -> Job {
    let span = format!("{:016x}", (i as u64 + 1) * 7919);
    let mut container = json!({ "name": "main", "image": "example.invalid/main" });
    if fat > 0 {
        container["env"] = json!([{ "name": "PAYLOAD", "value": "x".repeat(fat) }]);
    }
    TestJob::new()
        .named(&format!("load-{i}"))
        .without_init_containers()
        .containers(json!([container]))
        .set("/spec/backoffLimit", json!(0))
        .set("/spec/completions", json!(1))
        .traced_as(trace, &span)
        .without_annotation("traceparent")
        .template_annotations(&json!({ "sim.jobtrace.dev/run-for": run_for }))
        .typed()
}

/// etcd's database size, and how much of it is in use, in MiB.
async fn etcd_size() -> Option<(u64, u64)> {
    let status = cluster::etcd("/v3/maintenance/status", json!({})).await?;
    let mib = |field: &str| Some(status[field].as_str()?.parse::<u64>().ok()? >> 20);
    Some((mib("dbSize")?, mib("dbSizeInUse")?))
}

#[allow(clippy::too_many_lines)] // one benchmark run, read top to bottom
async fn run(jobs_count: usize, fat: usize, late: bool) {
    let ns = cluster::TestNamespace::create("load").await;
    let metrics_port = process::free_port();
    let spawn_controller = || {
        Command::new(env!("CARGO_BIN_EXE_jobtrace"))
            .args([
                "controller",
                "--no-leader-election",
                "--watch-namespace",
                &ns.name,
            ])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start jobtrace controller")
    };
    // When the controller started: a lag counts from its end, or from then.
    let controller_start: Arc<Mutex<Timestamp>> = Arc::new(Mutex::new(Timestamp::now()));
    let controller = (!late).then(spawn_controller);
    let jobs: Api<Job> = ns.api();

    // Every Job is its own trace; every SAMPLE_EVERY-th is polled in Jaeger once it finishes.
    // Of this run only: Jaeger keeps the traces of earlier runs.
    let run_id: u64 = rand::random::<u64>() | 1;
    let traces: Vec<String> = (0..jobs_count)
        .map(|i| format!("{run_id:016x}{:016x}", i as u64 + 1))
        .collect();
    let lags: Arc<Mutex<Vec<f64>>> = Arc::default();
    let finished: Arc<Mutex<usize>> = Arc::default();
    let watch = {
        let (jobs, traces, lags, finished, controller_start) = (
            jobs.clone(),
            traces.clone(),
            lags.clone(),
            finished.clone(),
            controller_start.clone(),
        );
        tokio::spawn(async move {
            let mut seen: HashSet<String> = HashSet::new();
            // Through its errors (a compaction expires the version it resumes from): it lists
            // again, and `seen` counts each Job once.
            let mut events = std::pin::pin!(
                watcher(jobs, watcher::Config::default())
                    .default_backoff()
                    .applied_objects()
            );
            while let Some(job) = events.next().await {
                let Ok(job) = job else { continue };
                let name = job.metadata.name.clone().unwrap_or_default();
                let done = job
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| {
                        c.iter().find(|c| {
                            (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                        })
                    });
                let Some(time) = done.and_then(|c| c.last_transition_time.clone()) else {
                    continue;
                };
                if !seen.insert(name.clone()) {
                    continue;
                }
                *finished.lock().unwrap() += 1;
                let i: usize = name.trim_start_matches("load-").parse().unwrap_or(0);
                if i.is_multiple_of(SAMPLE_EVERY) {
                    let (trace, lags) = (traces[i].clone(), lags.clone());
                    let controller_start = controller_start.clone();
                    tokio::spawn(async move {
                        let url = format!("http://127.0.0.1:16686/api/traces/{trace}");
                        for _ in 0..6000 {
                            let found = reqwest::get(&url)
                                .await
                                .is_ok_and(|r| r.status().is_success());
                            if found {
                                let since = time.0.max(*controller_start.lock().unwrap());
                                let lag = Timestamp::now() - since;
                                lags.lock().unwrap().push(
                                    lag.total(k8s_openapi::jiff::Unit::Second).unwrap_or(0.0),
                                );
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    });
                }
            }
        })
    };

    let compacting = (fat > 0).then(|| {
        tokio::spawn(async {
            loop {
                tokio::time::sleep(COMPACT_EVERY).await;
                cluster::compact_etcd(0).await;
            }
        })
    });
    let started = Instant::now();
    let run_for = format!("{}s", 20 + jobs_count / 200);
    futures::stream::iter(0..jobs_count)
        .for_each_concurrent(16, |i| {
            let (jobs, trace) = (jobs.clone(), traces[i].clone());
            let run_for = run_for.clone();
            async move {
                jobs.create(
                    &PostParams::default(),
                    &traced_job(i, &trace, &run_for, fat),
                )
                .await
                .expect("create");
            }
        })
        .await;
    let created = started.elapsed();
    poll::until(
        "every Job finished",
        Duration::from_secs(1800),
        Duration::from_secs(1),
        async || (*finished.lock().unwrap() >= jobs_count).then_some(()),
    )
    .await;
    let all_finished = started.elapsed();
    if let Some(compacting) = compacting {
        compacting.abort();
        cluster::compact_etcd(0).await;
        if let Some((size, in_use)) = etcd_size().await {
            eprintln!("controller_load: etcd {size} MiB, {in_use} MiB in use");
        }
    }
    let mut controller = controller.unwrap_or_else(|| {
        *controller_start.lock().unwrap() = Timestamp::now();
        spawn_controller()
    });
    let pid = controller.id();
    let sample = jobs_count.div_ceil(SAMPLE_EVERY);
    let deadline = Instant::now() + Duration::from_secs(300);
    while lags.lock().unwrap().len() < sample && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ((_, peak_kib), cpu) = (workload::rss_kib(pid), workload::cpu_seconds(pid));
    let _ = controller.kill();
    let _ = controller.wait();
    watch.abort();
    let mut lags = lags.lock().unwrap().clone();
    lags.sort_by(f64::total_cmp);
    let q = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((lags.len().max(1) - 1) as f64 * q).round() as usize;
        lags.get(i).copied().unwrap_or(f64::NAN)
    };
    let size = if fat > 0 {
        format!(" of {} KiB", fat / 1024)
    } else {
        String::new()
    };
    let when = if late {
        ", listed by a controller started after"
    } else {
        ""
    };
    let jobs = format!("{jobs_count}{size}{when}");
    println!(
        "| {jobs} | {:.0} s | {} s | {:.1} MiB | {cpu:.1} s | {:.2} s | {:.2} s | {}/{sample} |",
        created.as_secs_f64(),
        all_finished.as_secs(),
        f64::from(u32::try_from(peak_kib).unwrap_or(u32::MAX)) / 1024.0,
        q(0.5),
        q(0.99),
        lags.len()
    );
}

fn main() {
    let counts = workload::env_numbers("BENCH_JOBS", "1000,10000");
    let fat = workload::env_numbers("BENCH_FAT_BYTES", "0")
        .first()
        .copied()
        .unwrap_or(0);
    let late = std::env::var("BENCH_LATE").is_ok_and(|v| v == "1");
    let runtime = workload::runtime();
    runtime.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        println!("controller_load: each Job one pod on kwok, two spans per Job; export lag sampled on 1 Job in {SAMPLE_EVERY}");
        println!("| Jobs | to create | until all finished | controller peak RSS | controller CPU | lag p50 | lag p99 | sampled |");
        println!("|---|---|---|---|---|---|---|---|");
        for count in counts {
            run(count, fat, late).await;
        }
    });
}
