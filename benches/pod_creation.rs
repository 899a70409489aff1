//! What jobtrace's pod webhook costs the job controller: the time from creating an Indexed Job of
//! `BENCH_COMPLETIONS` completions (default `200,1000`: each in turn), all in
//! parallel, until all its pods exist, in three namespaces side by side, in rotating rounds
//! (`BENCH_ROUNDS`, default 5): every pod through the pod webhook, the Job traced with
//! `--pod-spans false` (no pod calls a webhook), and untraced. With the CPU the kube-apiserver
//! and jobtrace used, and the pod webhook's calls as the apiserver timed them against jobtrace's
//! own time for them. `BENCH_MODES` (`pod-webhook,job-webhook,untraced`) runs only some, to
//! profile one alone. The report names the controller-manager's client rate limits: the local
//! cluster raises them to 500 requests/s, `JOBTRACE_CLIENT_QPS=N` (or `default`) to
//! `hack/cluster-up.sh` sets others. Needs `make cluster-up`.

use jobtrace_testkit::metrics::Scrape;
use jobtrace_testkit::{cluster, poll, process, workload};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

use cluster::TestNamespace;
use process::Webhook;

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
    let within = Duration::from_secs(600).saturating_sub(started.elapsed());
    let every = Duration::from_millis(100);
    poll::until(&format!("{name}: every pod"), within, every, async || {
        // (A list with a label selector carries no remaining count: list them all.)
        let count = pods
            .list_metadata(&selector)
            .await
            .expect("count the pods")
            .items
            .len();
        if count >= completions {
            Ok(started.elapsed())
        } else {
            Err(format!("{count} of {completions} pods"))
        }
    })
    .await
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
    /// The name `BENCH_MODES` lists it by.
    fn name(self) -> &'static str {
        match self {
            Self::PodWebhook => "pod-webhook",
            Self::JobWebhookOnly => "job-webhook",
            Self::Untraced => "untraced",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::PodWebhook => "traced, the pod webhook on every pod",
            Self::JobWebhookOnly => "traced, `--pod-spans false` (no pod webhook)",
            Self::Untraced => "untraced, no webhook",
        }
    }
}

/// What the rounds of one mode measured.
#[derive(Default)]
struct Tally {
    times: Vec<Duration>,
    /// CPU seconds the kube-apiserver used meanwhile.
    apiserver_cpu: f64,
    /// CPU seconds the jobtrace processes used meanwhile.
    jobtrace_cpu: f64,
    /// The pod webhook's calls as the apiserver timed them: seconds in all, and how many.
    calls: (f64, f64),
    /// The same calls as jobtrace timed its handling of them.
    handled: (f64, f64),
}

/// The pod webhook's calls so far, as the apiserver and as jobtrace timed them.
async fn call_times(client: &kube::Client, webhook: &Webhook) -> [(f64, f64); 2] {
    let apiserver = Scrape::apiserver(client).await;
    let series = "apiserver_admission_webhook_admission_duration_seconds";
    let pods = ["name=\"pods.jobtrace.dev\"", "type=\"admit\""];
    let own = webhook.scrape().await;
    let handled = "jobtrace_admission_duration_seconds";
    let endpoint = ["endpoint=\"pods\""];
    [
        (
            apiserver.sum(&format!("{series}_sum"), &pods),
            apiserver.sum(&format!("{series}_count"), &pods),
        ),
        (
            own.sum(&format!("{handled}_sum"), &endpoint),
            own.sum(&format!("{handled}_count"), &endpoint),
        ),
    ]
}

/// The modes `BENCH_MODES` names (comma-separated), or all; one alone is for profiling.
fn chosen_modes() -> Vec<Mode> {
    let chosen = std::env::var("BENCH_MODES").unwrap_or_default();
    let modes: Vec<Mode> = [Mode::PodWebhook, Mode::JobWebhookOnly, Mode::Untraced]
        .into_iter()
        .filter(|m| chosen.is_empty() || chosen.split(',').any(|c| c.trim() == m.name()))
        .collect();
    assert!(
        !modes.is_empty(),
        "BENCH_MODES={chosen:?} names none of the modes"
    );
    modes
}

/// The controller-manager's client rate limits as its command line sets them.
fn job_controller_limits() -> String {
    // (`comm` holds the first 15 characters of a process's name.)
    let cmdline = workload::pid_of("kube-controller")
        .and_then(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .unwrap_or_default();
    let limits: Vec<&str> = cmdline
        .split(|&b| b == 0)
        .filter_map(|arg| std::str::from_utf8(arg).ok())
        .filter(|arg| arg.starts_with("--kube-api-qps") || arg.starts_with("--kube-api-burst"))
        .collect();
    if limits.is_empty() {
        "its defaults (no --kube-api-qps or --kube-api-burst)".to_owned()
    } else {
        limits.join(" ")
    }
}

fn report(completions: usize, rounds: usize, modes: &[Mode], tallies: &mut [Tally]) {
    for t in tallies.iter_mut() {
        t.times.sort_unstable();
    }
    let median = |t: &Tally| workload::quantile(&t.times, 0.5).as_secs_f64();
    // Ratios are to the untraced rounds, or to the last mode run when those weren't.
    let base = median(
        &tallies[modes
            .iter()
            .position(|m| *m == Mode::Untraced)
            .unwrap_or(modes.len() - 1)],
    );
    #[allow(clippy::cast_precision_loss)]
    let per_pod = |seconds: f64| seconds * 1e3 / (rounds * completions) as f64;
    let mean_ms = |(sum, count): (f64, f64)| {
        if count > 0.0 {
            format!("{:.2} ms", sum * 1e3 / count)
        } else {
            "-".to_owned()
        }
    };
    println!(
        "pod_creation: an Indexed Job of {completions} completions, {rounds} rounds each, \
         rotating; the controller-manager's client rate limits: {}",
        job_controller_limits()
    );
    println!(
        "| | median | min | max | ratio to untraced | kube-apiserver CPU per pod | jobtrace CPU \
         per pod | pod webhook call, as the apiserver timed it (mean) | jobtrace's handling of it (mean) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (mode, t) in modes.iter().zip(tallies.iter()) {
        println!(
            "| {} | {:.2} s | {:.2} s | {:.2} s | {:.2} | {:.2} ms | {:.3} ms | {} | {} |",
            mode.label(),
            median(t),
            t.times[0].as_secs_f64(),
            t.times[t.times.len() - 1].as_secs_f64(),
            median(t) / base,
            per_pod(t.apiserver_cpu),
            per_pod(t.jobtrace_cpu),
            mean_ms(t.calls),
            mean_ms(t.handled),
        );
    }
    if modes[0] == Mode::PodWebhook && modes.last() == Some(&Mode::Untraced) {
        println!(
            "pod_creation: {completions} completions, median ratio with the pod webhook / untraced = {:.3}",
            median(&tallies[0]) / base
        );
    }
}

fn main() {
    let sizes = workload::env_numbers("BENCH_COMPLETIONS", "200,1000");
    let rounds = workload::env_number("BENCH_ROUNDS", 5);
    let modes = chosen_modes();
    let runtime = workload::runtime();
    runtime.block_on(async {
        let client = kube::Client::try_default().await.expect("a kube client");
        let with = TestNamespace::create("bench-pods-with").await;
        let job_only = TestNamespace::create("bench-pods-job-only").await;
        let without = TestNamespace::create("bench-pods-without").await;
        let webhook = Webhook::start(&with).await;
        let job_webhook =
            Webhook::start_with(&job_only, &["webhook", "--pod-spans", "false"], &[]).await;
        let pids = [webhook.pid(), job_webhook.pid()];
        let apiserver = workload::pid_of("kube-apiserver");
        let cpu = |pid: Option<u32>| pid.map_or(0.0, workload::cpu_seconds);
        let webhooks_cpu = || pids.iter().map(|&p| cpu(p)).sum::<f64>();
        for &completions in &sizes {
            let mut tallies: Vec<Tally> = modes.iter().map(|_| Tally::default()).collect();
            for round in 0..rounds {
                let name = format!("indexed-{completions}-{round}");
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
                    let calls = call_times(&client, &webhook).await;
                    let took = time_pods(ns, &name, completions, mode != Mode::Untraced).await;
                    let used = (cpu(apiserver) - before.0, webhooks_cpu() - before.1);
                    let after = call_times(&client, &webhook).await;
                    clean(ns, &name).await;
                    eprintln!("pod_creation: {completions}, round {round}, {mode:?}: {took:?}, CPU {used:?}");
                    let t = &mut tallies[m];
                    t.times.push(took);
                    t.apiserver_cpu += used.0;
                    t.jobtrace_cpu += used.1;
                    t.calls.0 += after[0].0 - calls[0].0;
                    t.calls.1 += after[0].1 - calls[0].1;
                    t.handled.0 += after[1].0 - calls[1].0;
                    t.handled.1 += after[1].1 - calls[1].1;
                }
            }
            report(completions, rounds, &modes, &mut tallies);
        }
    });
}
