//! Durable export: a traced Job held by jobtrace's finalizer can't disappear before its spans are
//! exported, whether it is deleted early (`ttlSecondsAfterFinished: 0`) while no controller runs,
//! with its namespace, or while the collector is down (bounded by `--hold-timeout`); and
//! `jobtrace release` lets every held Job go. With `--hold-pods` the same holds for their pods.

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};

use crate::jaeger::{OTLP_GRPC, fetch_trace};
use crate::spans::{kwok_job, named, random_trace_id};
use jobtrace_testkit::cluster;
use jobtrace_testkit::cluster::{DEADLINE, TestNamespace};
use jobtrace_testkit::process::Webhook;

const FINALIZER: &str = "jobtrace.dev/export";

/// `jobtrace run` for the namespace that holds Jobs for export.
async fn run_holding(ns: &TestNamespace, otlp: &str, extra: &[&str]) -> Webhook {
    let mut args = vec![
        "run",
        "--no-leader-election",
        "--watch-namespace",
        &ns.name,
        "--hold-for-export",
    ];
    args.extend_from_slice(extra);
    Webhook::start_with(ns, &args, &[("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)]).await
}

fn held<K: kube::Resource>(object: &K) -> bool {
    object
        .meta()
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// A node no kwok manages: its pods run nowhere, and the test is their kubelet. (kwok's
/// `pod-delete` stage strips a deleted pod's finalizers, as no kubelet does.)
const NOWHERE: &str = "jobtrace-e2e-nowhere";

/// A traced Job whose pods are bound to [`NOWHERE`].
fn nowhere_job(name: &str, trace: &str) -> Job {
    let mut job = kwok_job(name, &format!("00-{trace}-00f067aa0ba902b7-01"), "1s");
    let template = &mut job.spec.as_mut().unwrap().template;
    template.spec.as_mut().unwrap().node_name = Some(NOWHERE.to_owned());
    job
}

/// Ends `pod` successfully, as its kubelet would.
async fn succeed(ns: &TestNamespace, pod: &str) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = serde_json::json!({ "status": {
        "phase": "Succeeded",
        "startTime": now,
        "conditions": [{ "type": "Ready", "status": "False", "reason": "PodCompleted",
            "lastTransitionTime": now }],
        "containerStatuses": [{ "name": "main", "image": "example.invalid/main", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": { "terminated": { "exitCode": 0, "reason": "Completed",
                "startedAt": now, "finishedAt": now } } }]
    } });
    let pods: Api<Pod> = ns.api();
    pods.patch_status(
        pod,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&status),
    )
    .await
    .unwrap();
}

/// Deletes `pod` at once, as its kubelet would once its containers stopped.
async fn delete_now(ns: &TestNamespace, pod: &str) {
    let pods: Api<Pod> = ns.api();
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::background()
    };
    match pods.delete(pod, &now).await {
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Ok(_) => {}
        Err(e) => panic!("deleting {pod}: {e}"),
    }
}

/// The span id the pod webhook gave `pod`: the parent of its processes.
fn pod_span_id(pod: &Pod) -> String {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("jobtrace.dev/span-id"))
        .cloned()
        .expect("a traced pod's span id")
}

async fn create(ns: &TestNamespace, job: &Job) {
    let jobs: Api<Job> = ns.api();
    jobs.create(&PostParams::default(), job).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_deleted_while_no_controller_runs_are_exported_once_when_one_starts() {
    let ns = TestNamespace::create("held").await;
    // Only the webhook: no controller exports, nothing releases.
    let webhook = Webhook::start_with(&ns, &["webhook", "--hold-for-export"], &[]).await;
    let traces: Vec<String> = (0..20).map(|_| random_trace_id()).collect();
    for (i, trace) in traces.iter().enumerate() {
        let mut job = kwok_job(
            &format!("short-{i}"),
            &format!("00-{trace}-00f067aa0ba902b7-01"),
            "1s",
        );
        job.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(0);
        create(&ns, &job).await;
    }
    // Every Job finishes and is deleted by the TTL controller at once, but stays, held.
    let held_jobs = ns
        .until_listed::<Job>("20 finished Jobs deleted and held", |jobs| {
            jobs.len() == 20
                && jobs
                    .iter()
                    .all(|j| j.metadata.deletion_timestamp.is_some() && held(j))
        })
        .await;
    assert_eq!(held_jobs.len(), 20);
    drop(webhook);

    let _controller = run_holding(&ns, OTLP_GRPC, &[]).await;
    ns.until_listed::<Job>("every held Job exported and gone", <[Job]>::is_empty)
        .await;
    for trace in &traces {
        let trace = fetch_trace(trace, 1).await;
        let job_spans = named(&trace, "job ");
        assert_eq!(job_spans.len(), 1, "each Job span exactly once: {trace:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_pods_deleted_while_no_controller_runs_are_exported_once_with_hold_pods() {
    const JOBS: usize = 10;
    let ns = TestNamespace::create("held-pods").await;
    // Only the webhook: the TTL controller deletes each finished Job in the foreground, its pod
    // first; held, both stay.
    let webhook =
        Webhook::start_with(&ns, &["webhook", "--hold-for-export", "--hold-pods"], &[]).await;
    let traces: Vec<String> = (0..JOBS).map(|_| random_trace_id()).collect();
    for (i, trace) in traces.iter().enumerate() {
        let mut job = nowhere_job(&format!("short-{i}"), trace);
        job.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(0);
        create(&ns, &job).await;
    }
    let pods = ns
        .until_listed::<Pod>("a held pod for each Job", |pods| {
            pods.len() == JOBS && pods.iter().all(held)
        })
        .await;
    for pod in &pods {
        succeed(&ns, pod.metadata.name.as_deref().unwrap()).await;
    }
    ns.until_listed::<Job>("the finished Jobs deleted and held", |jobs| {
        jobs.len() == JOBS
            && jobs
                .iter()
                .all(|j| j.metadata.deletion_timestamp.is_some() && held(j))
    })
    .await;
    let held_pods = ns
        .until_listed::<Pod>("their pods deleted and held", |pods| {
            pods.len() == JOBS
                && pods
                    .iter()
                    .all(|p| p.metadata.deletion_timestamp.is_some() && held(p))
        })
        .await;
    // Each pod's span id, by its trace: what the Job's processes name as their parent.
    let mut parents: Vec<(String, String)> = held_pods
        .iter()
        .map(|p| {
            let trace = p.metadata.annotations.as_ref().unwrap()["jobtrace.dev/trace-id"].clone();
            (trace, pod_span_id(p))
        })
        .collect();
    parents.sort();
    drop(webhook);

    let controller = run_holding(&ns, OTLP_GRPC, &["--hold-pods"]).await;
    ns.until_listed::<Job>("every held Job exported and gone", <[Job]>::is_empty)
        .await;
    ns.until_listed::<Pod>("every held pod exported and gone", <[Pod]>::is_empty)
        .await;
    // What it cost: one release per pod.
    assert_eq!(
        controller
            .counter("jobtrace_export_pods_released_total")
            .await,
        JOBS as u64
    );
    for trace in &traces {
        let trace_json = fetch_trace(trace, 2).await;
        let job_spans = named(&trace_json, "job ");
        assert_eq!(
            job_spans.len(),
            1,
            "each Job span exactly once: {trace_json:#}"
        );
        let pod_spans = named(&trace_json, "pod ");
        assert_eq!(
            pod_spans.len(),
            1,
            "each pod span exactly once: {trace_json:#}"
        );
        let (_, parent) = parents
            .iter()
            .find(|(t, _)| t == trace)
            .expect("the trace's pod");
        assert_eq!(
            pod_spans[0]["spanID"], *parent,
            "the pod span is the processes' parent: no hole in the tree"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_pod_deleted_while_its_job_runs_is_exported_and_released() {
    let ns = TestNamespace::create("held-pod-deleted").await;
    let _jobtrace = run_holding(&ns, OTLP_GRPC, &["--hold-pods"]).await;
    let trace = random_trace_id();
    let mut job = nowhere_job("long", &trace);
    // The deleted pod is replaced: the Job keeps running.
    job.spec.as_mut().unwrap().backoff_limit = Some(3);
    create(&ns, &job).await;
    let pods = ns
        .until_listed::<Pod>("the Job's pod held", |pods| {
            pods.len() == 1 && held(&pods[0])
        })
        .await;
    let first = pods[0].metadata.name.clone().unwrap();
    let span_id = pod_span_id(&pods[0]);
    delete_now(&ns, &first).await;
    // Exported alone while its Job runs, then released, so it goes.
    ns.until_listed::<Pod>("the deleted pod exported, released and gone", |pods| {
        pods.iter()
            .all(|p| p.metadata.name.as_deref() != Some(first.as_str()))
    })
    .await;
    let trace_json = fetch_trace(&trace, 1).await;
    let pod_spans = named(&trace_json, "pod ");
    assert_eq!(pod_spans.len(), 1, "{trace_json:#}");
    assert_eq!(pod_spans[0]["spanID"], span_id.as_str());
    let jobs: Api<Job> = ns.api();
    assert!(
        jobs.get("long")
            .await
            .unwrap()
            .status
            .and_then(|s| s.completion_time)
            .is_none(),
        "its Job still runs"
    );
    ns.until_listed::<Pod>("a replacement pod", |pods| {
        pods.len() == 1 && pods[0].metadata.name.as_deref() != Some(first.as_str())
    })
    .await;
    // Everything goes, exported and released, while jobtrace runs.
    jobs.delete("long", &DeleteParams::background())
        .await
        .unwrap();
    ns.until_listed::<Job>("the Job gone", <[Job]>::is_empty)
        .await;
    for pod in ns
        .until_listed::<Pod>("the replacement pod", |pods| pods.len() <= 1)
        .await
    {
        delete_now(&ns, pod.metadata.name.as_deref().unwrap()).await;
    }
    ns.until_listed::<Pod>("every pod gone", <[Pod]>::is_empty)
        .await;
    let trace_json = fetch_trace(&trace, 3).await;
    assert_eq!(named(&trace_json, "job ").len(), 1, "{trace_json:#}");
    assert_eq!(named(&trace_json, "pod ").len(), 2, "{trace_json:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_with_held_jobs_finishes_deleting() {
    let ns = TestNamespace::create("held-ns").await;
    let _jobtrace = run_holding(&ns, OTLP_GRPC, &[]).await;
    let trace = random_trace_id();
    for i in 0..3 {
        let job = kwok_job(
            &format!("long-{i}"),
            &format!("00-{trace}-00f067aa0ba902b7-01"),
            "10m",
        );
        create(&ns, &job).await;
    }
    ns.until_listed::<Job>("3 held Jobs", |jobs| {
        jobs.len() == 3 && jobs.iter().all(held)
    })
    .await;
    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
    namespaces
        .delete(&ns.name, &DeleteParams::background())
        .await
        .unwrap();
    cluster::until("the namespace deleted", async || {
        namespaces
            .get_opt(&ns.name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    // Deleted while running: each Job span ends at the deletion, exported before the release.
    let trace = fetch_trace(&trace, 3).await;
    assert_eq!(named(&trace, "job ").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_holds_a_deletion_no_longer_than_the_hold_timeout() {
    let ns = TestNamespace::create("held-timeout").await;
    // Nothing listens there: every export fails and is retried.
    let down = format!(
        "http://127.0.0.1:{}",
        jobtrace_testkit::process::free_port()
    );
    let jobtrace = run_holding(&ns, &down, &["--hold-timeout", "3s"]).await;
    let job = kwok_job(
        "doomed",
        &format!("00-{}-00f067aa0ba902b7-01", random_trace_id()),
        "1s",
    );
    create(&ns, &job).await;
    ns.until_listed::<Job>("the Job finished and held", |jobs| {
        jobs.len() == 1
            && held(&jobs[0])
            && jobs[0]
                .status
                .as_ref()
                .is_some_and(|s| s.completion_time.is_some())
    })
    .await;
    let jobs: Api<Job> = ns.api();
    jobs.delete("doomed", &DeleteParams::background())
        .await
        .unwrap();
    let started = Instant::now();
    ns.until_listed::<Job>("the Job released at the hold timeout", <[Job]>::is_empty)
        .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "released only once the hold timed out ({:?})",
        started.elapsed()
    );
    assert_eq!(
        jobtrace
            .counter("jobtrace_export_holds_expired_total")
            .await,
        1
    );
}

/// A traced Job that finishes as it is created: no pod (`completions: 0`).
fn finished_at_once(name: &str) -> Job {
    let mut job = kwok_job(
        name,
        &format!("00-{}-00f067aa0ba902b7-01", random_trace_id()),
        "1s",
    );
    job.spec.as_mut().unwrap().completions = Some(0);
    job
}

/// Waits until the namespace's Job `name` is gone; how long that took.
async fn gone(ns: &TestNamespace, name: &str, within: Duration) -> Duration {
    let jobs: Api<Job> = ns.api();
    let started = Instant::now();
    while jobs.get_opt(name).await.unwrap().is_some() {
        assert!(
            started.elapsed() < within,
            "{name} still there after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_deletion_queued_behind_hundreds_of_jobs_is_released_at_the_hold_timeout() {
    const QUEUED: i64 = 600;
    let ns = TestNamespace::create("held-queued").await;
    let down = format!(
        "http://127.0.0.1:{}",
        jobtrace_testkit::process::free_port()
    );
    let jobtrace = run_holding(&ns, &down, &["--hold-timeout", "3s"]).await;
    // More finished Jobs than a batch holds, their export failing: the batch is retried, the rest
    // wait behind it.
    futures::stream::iter(0..QUEUED)
        .for_each_concurrent(16, |i| {
            let ns = &ns;
            async move { create(ns, &finished_at_once(&format!("queued-{i}"))).await }
        })
        .await;
    let pending = || async {
        jobtrace
            .scrape()
            .await
            .gauge("jobtrace_spans_pending_objects")
    };
    cluster::until(&format!("{QUEUED} Jobs queued"), async || {
        (pending().await >= QUEUED).then_some(())
    })
    .await;
    create(&ns, &finished_at_once("doomed")).await;
    let jobs: Api<Job> = ns.api();
    cluster::until("the last Job queued", async || {
        (pending().await > QUEUED).then_some(())
    })
    .await;
    assert!(held(&jobs.get("doomed").await.unwrap()));
    jobs.delete("doomed", &DeleteParams::background())
        .await
        .unwrap();
    // The hold timeout plus what the keeper's tick and a write may take.
    let took = gone(&ns, "doomed", Duration::from_secs(3 + 12)).await;
    assert!(
        took >= Duration::from_secs(2),
        "released only once the hold timed out ({took:?})"
    );
    assert!(
        jobtrace
            .counter("jobtrace_export_holds_expired_total")
            .await
            >= 1
    );
    // The others go the same way, and the namespace with them.
    jobs.delete_collection(&DeleteParams::background(), &ListParams::default())
        .await
        .unwrap();
    ns.until_listed::<Job>("every Job released and gone", <[Job]>::is_empty)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_job_whose_traced_label_is_removed_is_released() {
    let ns = TestNamespace::create("held-untraced").await;
    let _jobtrace = run_holding(&ns, OTLP_GRPC, &[]).await;
    let job = kwok_job(
        "untraced",
        &format!("00-{}-00f067aa0ba902b7-01", random_trace_id()),
        "10m",
    );
    create(&ns, &job).await;
    // Until the job controller has written the Job's status, its own update may put back what
    // another changed: wait for it.
    ns.until_listed::<Job>("the Job held and started", |jobs| {
        jobs.len() == 1
            && held(&jobs[0])
            && jobs[0].status.as_ref().is_some_and(|s| s.active == Some(1))
    })
    .await;
    let jobs: Api<Job> = ns.api();
    // Right after a Job's creation an update may come back with the label still there (the
    // apiserver's own doing, seen in security.rs too): remove it until it stays removed.
    let traced = |job: &Job| {
        job.metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key("jobtrace.dev/traced"))
    };
    let untrace = serde_json::json!({ "metadata": { "labels": { "jobtrace.dev/traced": null } } });
    cluster::until("the label removed", async || {
        if !traced(&jobs.get("untraced").await.unwrap()) {
            return Ok(());
        }
        jobs.patch(
            "untraced",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&untrace),
        )
        .await
        .unwrap();
        Err(String::new())
    })
    .await;
    // No export is coming for it: released at once (the hold timeout is 10 minutes).
    let released = ns
        .until_listed::<Job>("the untraced Job released", |jobs| {
            jobs.len() == 1 && !held(&jobs[0])
        })
        .await;
    assert!(!traced(&released[0]), "traced no more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_job_whose_mark_the_apiserver_refuses_is_released_all_the_same() {
    // The apiserver's limit on all of an object's annotations, keys and values.
    const ANNOTATIONS_LIMIT: usize = 256 * 1024;
    let ns = TestNamespace::create("held-full").await;
    let _jobtrace = run_holding(&ns, OTLP_GRPC, &[]).await;
    let job = kwok_job(
        "full",
        &format!("00-{}-00f067aa0ba902b7-01", random_trace_id()),
        "10m",
    );
    create(&ns, &job).await;
    let listed = ns
        .until_listed::<Job>("the Job held", |jobs| jobs.len() == 1 && held(&jobs[0]))
        .await;
    // Its owner fills its annotations to the limit: the mark's annotation can't be added.
    let used: usize = listed[0]
        .metadata
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    let filler = "example.com/filler";
    let fill = serde_json::json!({ "metadata": { "annotations": {
        filler: "x".repeat(ANNOTATIONS_LIMIT - used - filler.len())
    } } });
    let jobs: Api<Job> = ns.api();
    jobs.patch(
        "full",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&fill),
    )
    .await
    .unwrap();
    jobs.delete("full", &DeleteParams::background())
        .await
        .unwrap();
    // Exported, its mark refused (422), and released without it: not held for the 10-minute
    // hold timeout.
    gone(&ns, "full", DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_lets_every_held_job_go() {
    let ns = TestNamespace::create("release").await;
    let mut webhook = Webhook::start_with(&ns, &["webhook", "--hold-for-export"], &[]).await;
    for i in 0..3 {
        let job = kwok_job(
            &format!("kept-{i}"),
            &format!("00-{}-00f067aa0ba902b7-01", random_trace_id()),
            "10m",
        );
        create(&ns, &job).await;
    }
    ns.until_listed::<Job>("3 held Jobs", |jobs| {
        jobs.len() == 3 && jobs.iter().all(held)
    })
    .await;
    webhook.stop();
    let jobs: Api<Job> = ns.api();
    jobs.delete_collection(&DeleteParams::background(), &ListParams::default())
        .await
        .unwrap();
    ns.until_listed::<Job>("3 Jobs deleted and held", |jobs| {
        jobs.len() == 3 && jobs.iter().all(|j| j.metadata.deletion_timestamp.is_some())
    })
    .await;
    let released = Command::new(env!("CARGO_BIN_EXE_jobtrace"))
        .args(["release", "--namespace", &ns.name])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&released.stderr);
    assert!(released.status.success(), "{stderr}");
    assert!(stderr.contains("released 3 of 3 held Jobs"), "{stderr}");
    ns.until_listed::<Job>("every Job gone", <[Job]>::is_empty)
        .await;
}
