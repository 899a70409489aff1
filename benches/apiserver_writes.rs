//! What a traced Job costs the apiserver in writes: the writes to Jobs, pods and Events (the
//! apiserver's own `apiserver_request_total`, verbs that write) while `BENCH_JOBS` Jobs (default
//! 40) are created and run to their end, in three namespaces side by side, in rotating order: one
//! jobtrace doesn't serve; one only `jobtrace webhook` serves (traced Jobs, nothing exported);
//! one `jobtrace run` serves (webhook, and the controller exporting to the local Jaeger, Jobs held
//! for export as the chart does). For Jobs of 1 and of 5 pods. Needs `make cluster-up`.

use jobtrace_testkit::metrics::Scrape;
use jobtrace_testkit::{cluster, poll, process, workload};
use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{ListParams, PostParams};

use cluster::TestNamespace;
use process::Webhook;

/// The resources whose writes are counted: what a Job's run and its tracing write.
const RESOURCES: [&str; 3] = ["jobs", "pods", "events"];
const WRITES: [&str; 5] = ["POST", "PUT", "PATCH", "DELETE", "APPLY"];

fn job(name: &str, pods: usize, traced: bool) -> Job {
    serde_json::from_value(workload::kwok_job(name, pods, "1s", traced)).unwrap()
}

/// The apiserver's write requests so far, by `resource/subresource verb`, for [`RESOURCES`].
async fn writes(client: &kube::Client) -> BTreeMap<String, f64> {
    let scrape = Scrape::apiserver(client).await;
    let mut counts = BTreeMap::new();
    for (labels, value) in scrape.samples("apiserver_request_total") {
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_owned()
        };
        let (resource, verb) = (label("resource"), label("verb"));
        if !RESOURCES.contains(&resource.as_str()) || !WRITES.contains(&verb.as_str()) {
            continue;
        }
        // A write refused for a stale resourceVersion (409) writes nothing, but is a request.
        let refused = if label("code") == "409" { " 409" } else { "" };
        let key = format!("{resource}/{} {verb}{refused}", label("subresource"));
        *counts.entry(key).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    counts
}

/// Who serves the namespace of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    /// Nothing of jobtrace.
    Untraced,
    /// `jobtrace webhook`: the Jobs are traced, nothing is exported.
    WebhookOnly,
    /// `jobtrace run`: traced and exported.
    Exported,
}

fn exported(job: &Job) -> bool {
    job.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("jobtrace.dev/exported"))
}

/// Creates `count` Jobs of `pods` pods named `prefix-N`, waits until every one has ended (and,
/// traced, been exported with nothing held), and a little more for the last writes; the writes
/// counted meanwhile.
async fn round(
    ns: &TestNamespace,
    prefix: &str,
    count: usize,
    pods: usize,
    mode: Mode,
) -> BTreeMap<String, f64> {
    let traced = mode != Mode::Untraced;
    let jobs: Api<Job> = ns.api();
    let before = writes(&ns.client).await;
    futures::stream::iter(0..count)
        .map(|i| {
            let jobs = jobs.clone();
            async move {
                jobs.create(
                    &PostParams::default(),
                    &job(&format!("{prefix}-{i}"), pods, traced),
                )
                .await
                .expect("create the Job")
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let (within, every) = (Duration::from_secs(300), Duration::from_millis(500));
    poll::until(
        &format!("{prefix}: every Job done"),
        within,
        every,
        async || {
            let list = jobs.list(&ListParams::default()).await.unwrap().items;
            let ours: Vec<&Job> = list
                .iter()
                .filter(|j| {
                    j.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with(&format!("{prefix}-")))
                })
                .collect();
            let done = ours.iter().all(|j| {
                cluster::finished_condition(j).is_some()
                    && (mode != Mode::Exported
                        || (exported(j)
                            && j.metadata.finalizers.as_ref().is_none_or(Vec::is_empty)))
            });
            (ours.len() == count && done).then_some(())
        },
    )
    .await;
    // The job controller's last status write and the removal of its pods' tracking finalizers
    // follow the Job's end by a moment.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = writes(&ns.client).await;
    if mode == Mode::Exported {
        let pods: Api<k8s_openapi::api::core::v1::Pod> = ns.api();
        let marked: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| {
                p.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("jobtrace.dev/exported"))
            })
            .filter_map(|p| p.metadata.name)
            .collect();
        eprintln!("apiserver_writes: {prefix}: pods marked exported on their own: {marked:?}");
    }
    after
        .into_iter()
        .map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0.0);
            (k, d)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

/// Write requests per Job (those refused with 409 included: each is a request).
fn per_job(counts: &BTreeMap<String, f64>, jobs: usize) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let jobs = jobs as f64;
    counts.values().sum::<f64>() / jobs
}

fn main() {
    let count = workload::env_number("BENCH_JOBS", 40);
    let rounds = workload::env_number("BENCH_ROUNDS", 2);
    let runtime = workload::runtime();
    runtime.block_on(async {
        let with = TestNamespace::create("bench-writes-with").await;
        let webhook_only = TestNamespace::create("bench-writes-webhook").await;
        let without = TestNamespace::create("bench-writes-without").await;
        let args = [
            "run",
            "--no-leader-election",
            "--watch-namespace",
            &with.name,
            "--hold-for-export",
        ];
        let _jobtrace = Webhook::start_with(
            &with,
            &args,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")],
        )
        .await;
        let _webhook = Webhook::start(&webhook_only).await;
        println!(
            "apiserver_writes: {count} Jobs per round, {rounds} rounds each, writes to jobs, pods \
             and events (the apiserver's apiserver_request_total)"
        );
        println!(
            "| pods per Job | round | writes per Job, untraced | traced, webhook only | traced and \
             exported | extra per traced Job | of it, the controller's |"
        );
        println!("|---|---|---|---|---|---|---|");
        let modes = [Mode::Untraced, Mode::WebhookOnly, Mode::Exported];
        for pods in [1, 5] {
            let mut extras = Vec::new();
            for r in 0..rounds {
                let mut by_mode = BTreeMap::new();
                // Which goes first rotates.
                for i in 0..modes.len() {
                    let mode = modes[(i + r) % modes.len()];
                    let ns = match mode {
                        Mode::Untraced => &without,
                        Mode::WebhookOnly => &webhook_only,
                        Mode::Exported => &with,
                    };
                    let prefix = format!("p{pods}-r{r}");
                    by_mode.insert(mode, round(ns, &prefix, count, pods, mode).await);
                }
                let per = |mode| per_job(&by_mode[&mode], count);
                let extra = per(Mode::Exported) - per(Mode::Untraced);
                let controller = per(Mode::Exported) - per(Mode::WebhookOnly);
                extras.push(extra);
                println!(
                    "| {pods} | {} | {:.2} | {:.2} | {:.2} | **{extra:.2}** | {controller:.2} |",
                    r + 1,
                    per(Mode::Untraced),
                    per(Mode::WebhookOnly),
                    per(Mode::Exported),
                );
                for (mode, counts) in &by_mode {
                    eprintln!(
                        "apiserver_writes: {pods} pods, round {}: {mode:?} {counts:?}",
                        r + 1
                    );
                }
            }
            let worst = extras.iter().copied().fold(f64::MIN, f64::max);
            println!(
                "apiserver_writes: {pods} pod(s) per Job: at most {worst:.2} extra writes per \
                 traced Job (goal: at most 1)"
            );
        }
    });
}
