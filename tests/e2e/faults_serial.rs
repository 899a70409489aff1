//! Faults of the control plane itself, which every other test would see: the kube-apiserver
//! killed by SIGKILL and restarted mid-flight, and etcd compacted under the controller's list. They run
//! alone, one at a time, after the other end-to-end tests (`make test-faults`; `make e2e` skips
//! them), and count what arrived as `faults.rs` does (docs/reliability.md).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::faults::{
    BATCH, Controller, Recording, all_marked, count_spans, create_jobs, expected_spans, jobs,
    unfinished, until,
};
use crate::jaeger::Collector;
use crate::readiness::traced_pod;
use crate::spans::random_trace_id;
use jobtrace_testkit::cluster::{TestNamespace, compact_etcd};
use jobtrace_testkit::process::Webhook;

const EXPORTED: &str = "jobtrace_spans_exported_total";
/// What the controller logs for each object whose mark failed after its export.
const MARK_FAILED: &str = "could not mark as exported";
/// What it logs when a watch or a list fails.
const WATCH_ERROR: &str = "watch error; retrying";

/// Whether a logged watch error is the apiserver's 410 Gone (reason `Expired`: a resource
/// version or continue token too old), after which the watch lists again.
fn gone(line: &str) -> bool {
    line.contains("Expired") || line.contains("410")
}

/// `hack/restart-component.sh NAME DOWN`: SIGKILLs the component, leaves it down `down`, starts
/// it again with its very command line and waits until it answers.
async fn restart_component(name: &str, down: Duration) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/hack/restart-component.sh");
    let output = tokio::process::Command::new(script)
        .arg(name)
        .arg(down.as_secs().to_string())
        .output()
        .await
        .expect("run hack/restart-component.sh");
    assert!(
        output.status.success(),
        "restart-component.sh {name}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiserver_sigkilled_and_restarted_mid_flight_loses_no_span() {
    const JOBS: usize = 100;
    const DOWN: Duration = Duration::from_secs(5);
    let ns = TestNamespace::create("fault-apiserver").await;
    let collector = Collector::reserve().start();
    let _webhook = Webhook::start(&ns).await;
    let controller = Controller::start(
        &ns,
        "through-outage",
        &["--no-leader-election"],
        &collector.otlp(),
    )
    .await;
    let exported = Recording::of(controller.metrics, EXPORTED);
    let trace_id = random_trace_id();
    create_jobs(&ns, jobs(JOBS, &trace_id, |i| format!("{}s", 2 + i % 12))).await;
    until(
        "the controller exported the first Jobs",
        Duration::from_secs(60),
        async || controller.count(EXPORTED).await >= 40,
    )
    .await;
    let in_flight = unfinished(&ns).await;

    let killed = Instant::now();
    restart_component("kube-apiserver", DOWN).await;
    let ready = Instant::now();
    let outage = ready - killed;
    until(
        "the controller exports after the apiserver is back",
        Duration::from_secs(60),
        async || exported.rise_after(ready).is_some(),
    )
    .await;
    let first_export = exported.rise_after(ready).unwrap();
    // Queued before the kill: exported meanwhile, to a collector that was up, but not marked.
    let exported_in_outage = exported.at(ready) - exported.at(killed);
    // The Jobs finish as fast as the job controller and kwok recover: the job controller
    // retries its failed syncs with a backoff of up to a minute.
    all_marked(&ns, JOBS, JOBS, Duration::from_secs(150)).await;
    let all_exported = ready.elapsed();

    let arrived = count_spans(&collector.query(), &trace_id, &expected_spans(&ns).await).await;
    let marks_failed = controller.log_lines(MARK_FAILED).len();
    let watch_errors = controller.log_lines(WATCH_ERROR);
    let relists = watch_errors.iter().filter(|l| gone(l)).count();

    eprintln!(
        "fault apiserver-sigkill: {arrived}; {in_flight} of {JOBS} Jobs in flight at the kill; \
         apiserver down {DOWN:?}, answering again {outage:.1?} after the kill; \
         {exported_in_outage} spans exported meanwhile, {marks_failed} marks failed, {} watch errors ({relists} of them 410 Gone, each a relist); first export \
         {first_export:.1?} after the apiserver was ready, all exported after {all_exported:.1?}",
        watch_errors.len()
    );
    assert_eq!(arrived.arrived, arrived.expected);
    assert!(
        arrived.duplicated <= marks_failed + BATCH,
        "re-exports only of objects whose mark failed, or exported while a relist read them: \
         {arrived}, {marks_failed} marks failed"
    );
}

async fn create_finished_pods(ns: &TestNamespace, count: usize, trace_id: &str) {
    let pods: Api<Pod> = ns.api();
    futures::stream::iter(0..count)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let name = format!("listed-{i}");
                pods.create(&PostParams::default(), &traced_pod(&name, trace_id))
                    .await?;
                let phase = json!({ "status": { "phase": "Succeeded" } });
                pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&phase))
                    .await
                    .map(drop)
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("create the finished traced pods");
}

/// Whether the list of the namespace's pods that `continue_token` continues is refused as too old
/// (410 Expired).
async fn continue_refused(ns: &TestNamespace, continue_token: &str) -> bool {
    let pods: Api<Pod> = ns.api();
    let mut params = ListParams::default().limit(1);
    params.continue_token = Some(continue_token.to_owned());
    matches!(pods.list(&params).await, Err(kube::Error::Api(e)) if e.code == 410)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_compacted_under_a_paused_list_makes_it_list_again_and_loses_no_span() {
    // With the collector down the controller holds a batch (512 spans: the Jobs', two each with
    // their pods', then pods') and a queue (512 objects) of finished objects, and its list of the
    // pods waits, two thirds of the way through its pages, holding a continue token. The Jobs' own pods go with them:
    // the pods that fill the queue are pods of no Job.
    const JOBS: usize = 100;
    const PODS: usize = 1_500;
    let ns = TestNamespace::create("fault-compact").await;
    let webhook = Webhook::start(&ns).await;
    let trace_id = random_trace_id();
    create_jobs(&ns, jobs(JOBS, &trace_id, |_| "1s".to_owned())).await;
    create_finished_pods(&ns, PODS, &trace_id).await;
    until("every Job finished", Duration::from_secs(90), async || {
        unfinished(&ns).await == 0
    })
    .await;
    drop(webhook);

    let collector = Collector::reserve();
    let controller = Controller::spawn(
        &ns,
        "paused-list",
        &["--no-leader-election"],
        &collector.otlp(),
    );
    let mut pending = (0, Instant::now());
    until(
        "the controller's list waits for the collector",
        Duration::from_secs(60),
        async || {
            let now = controller.count("jobtrace_spans_pending_objects").await;
            if now != pending.0 {
                pending = (now, Instant::now());
            }
            controller.count("jobtrace_controller_listing").await == 1
                && now > 512
                && pending.1.elapsed() > Duration::from_secs(2)
        },
    )
    .await;
    let paused_at = pending.0;

    // A list of our own, begun now: once the apiserver refuses to continue it, it refuses the
    // controller's, which began earlier.
    let pods: Api<Pod> = ns.api();
    let probe = pods.list(&ListParams::default().limit(1)).await.unwrap();
    let probe_revision: u64 = probe.metadata.resource_version.unwrap().parse().unwrap();
    let probe_token = probe.metadata.continue_.unwrap();
    let compacted = compact_etcd(probe_revision).await.expect("etcd compacts");
    let compacted_at = Instant::now();
    until(
        "the apiserver refuses lists older than the compaction",
        Duration::from_secs(60),
        async || continue_refused(&ns, &probe_token).await,
    )
    .await;
    let refused_after = compacted_at.elapsed();

    let collector = collector.start();
    let resumed = Instant::now();
    until(
        "the controller lists everything",
        Duration::from_secs(90),
        async || controller.ok("/syncz").await,
    )
    .await;
    let listed = resumed.elapsed();
    all_marked(&ns, JOBS, JOBS + PODS, Duration::from_secs(90)).await;
    let all_exported = resumed.elapsed();

    let expected = expected_spans(&ns).await;
    let arrived = count_spans(&collector.query(), &trace_id, &expected).await;
    let watch_errors = controller.log_lines(WATCH_ERROR);
    let expired: Vec<&String> = watch_errors.iter().filter(|l| gone(l)).collect();
    eprintln!(
        "fault etcd-compaction: {arrived}; the list paused with {paused_at} objects pending; \
         etcd compacted at revision {compacted}, lists older refused after {refused_after:.1?}; \
         {} list or watch errors ({} of them 410); once the collector was up, listed in \
         {listed:.1?}, all exported in {all_exported:.1?}",
        watch_errors.len(),
        expired.len()
    );
    assert!(
        !expired.is_empty(),
        "the controller's paused list was refused with 410 Gone and listed again: {watch_errors:?}"
    );
    eprintln!("the refusal, as the controller logged it: {}", expired[0]);
    assert_eq!(arrived.arrived, arrived.expected);
    assert!(
        arrived.duplicated <= usize::try_from(paused_at).unwrap() + 100,
        "re-exports only of objects queued before the relist read them (what was pending, and \
         a page): {arrived}"
    );
    assert_eq!(
        expected.len(),
        2 * JOBS + PODS,
        "{:?}",
        expected.iter().take(3).collect::<BTreeSet<_>>()
    );
}
