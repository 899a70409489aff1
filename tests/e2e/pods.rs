//! A Job's pods are exported with it and only the Job is marked; a pod deleted while its Job
//! runs (as pod GC or an eviction would) is exported from its deletion; pods deleted after their
//! Job was exported are not exported again.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};

use crate::faults::{count_spans, marked};
use crate::jaeger::{JAEGER_QUERY, OTLP_GRPC};
use crate::spans::{all_exported, random_trace_id};
use jobtrace_testkit::cluster::{DEADLINE, TestNamespace, finished_condition, sim_job};
use jobtrace_testkit::poll;
use jobtrace_testkit::process::Webhook;

/// Waits until the namespace's pods satisfy `done`; returns them.
async fn pods_until(ns: &TestNamespace, what: &str, done: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
    let pods: Api<Pod> = ns.api();
    poll::until(what, DEADLINE, Duration::from_millis(300), async || {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        if done(&list) {
            return Ok(list);
        }
        let seen: Vec<(Option<&str>, Option<&str>)> = list
            .iter()
            .map(|p| (p.metadata.name.as_deref(), phase(p)))
            .collect();
        Err(format!("pods {seen:?}"))
    })
    .await
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_go_with_their_job_and_a_pod_deleted_early_from_its_deletion_each_once() {
    let ns = TestNamespace::create("pods-with-job").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let trace_id = random_trace_id();
    // Two attempts that fail (the job controller waits ~10 s before the second): the first is
    // deleted while the second runs.
    let mut job = sim_job("attempts", "2s", Some(1));
    job.metadata.annotations = Some(
        [(
            "traceparent".to_owned(),
            format!("00-{trace_id}-00f067aa0ba902b7-01"),
        )]
        .into(),
    );
    let jobs: Api<Job> = ns.api();
    jobs.create(&PostParams::default(), &job).await.unwrap();

    let first = pods_until(&ns, "the first attempt failed", |pods| {
        pods.iter().any(|p| phase(p) == Some("Failed"))
    })
    .await;
    let first = first
        .into_iter()
        .find(|p| phase(p) == Some("Failed"))
        .unwrap();
    let first_name = first.metadata.name.clone().unwrap();
    let pods: Api<Pod> = ns.api();
    pods.delete(&first_name, &DeleteParams::default())
        .await
        .unwrap();
    pods_until(&ns, "the first attempt gone", |pods| {
        pods.iter()
            .all(|p| p.metadata.name.as_deref() != Some(&first_name))
    })
    .await;
    let job = jobs.get("attempts").await.unwrap();
    assert_eq!(
        finished_condition(&job),
        None,
        "the Job still runs when its first pod is deleted"
    );

    all_exported(&ns, 1).await;
    // The job controller may or may not have counted the deleted attempt before it went: the
    // attempts after it are whatever pods are left.
    let rest = pods.list(&ListParams::default()).await.unwrap().items;
    assert!(!rest.is_empty(), "attempts after the deleted one");
    assert!(
        !rest.iter().any(marked),
        "no pod is written to: the Job's mark stands for them"
    );
    let expected: BTreeSet<String> = rest
        .iter()
        .map(|p| format!("pod {}", p.metadata.name.as_deref().unwrap()))
        .chain([
            format!("job {}/attempts", ns.name),
            format!("pod {first_name}"),
        ])
        .collect();
    let count = count_spans(JAEGER_QUERY, &trace_id, &expected).await;
    assert_eq!(count.arrived, expected.len(), "{count}");
    assert_eq!(count.duplicated, 0, "each span once: {count}");

    // The Job goes, and its pod with it: nothing is exported again.
    jobs.delete("attempts", &DeleteParams::background())
        .await
        .unwrap();
    pods_until(&ns, "the pods gone with the Job", <[Pod]>::is_empty).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let count = count_spans(JAEGER_QUERY, &trace_id, &expected).await;
    assert_eq!(
        (count.stored, count.duplicated),
        (expected.len(), 0),
        "nothing exported again when the exported Job's pods are deleted: {count}"
    );
}
