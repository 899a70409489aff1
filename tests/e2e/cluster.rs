//! The local control plane behaves like a cluster: Jobs run on kwok nodes and the real job
//! controller decides their outcome.

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;

use jobtrace_testkit::cluster::{TestNamespace, finished_condition, sim_job};

#[tokio::test]
async fn nodes_are_ready() {
    let ns = TestNamespace::create("nodes").await;
    let nodes: Api<Node> = Api::all(ns.client.clone());
    let nodes = nodes
        .list(&ListParams::default())
        .await
        .expect("list nodes");
    assert!(!nodes.items.is_empty(), "cluster-up registers kwok nodes");
    for node in &nodes.items {
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        assert_eq!(ready, Some("True"), "node {:?}", node.metadata.name);
    }
}

#[tokio::test]
async fn job_completes() {
    let ns = TestNamespace::create("complete").await;
    let mut job = sim_job("completes", "1s", None);
    job.spec.as_mut().unwrap().completions = Some(2);
    let job = ns.run_job(&job).await;

    assert_eq!(
        finished_condition(&job),
        Some(("Complete".into(), "CompletionsReached".into()))
    );
    assert_eq!(job.status.as_ref().unwrap().succeeded, Some(2));
    let pods = ns.pods_of("completes").await;
    assert_eq!(pods.len(), 2, "one pod per completion");
    for pod in pods {
        let status = pod.status.expect("pod status");
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        let terminated = status.container_statuses.unwrap()[0]
            .state
            .clone()
            .and_then(|s| s.terminated)
            .expect("the container terminated");
        assert_eq!(terminated.exit_code, 0);
        assert_eq!(terminated.reason.as_deref(), Some("Completed"));
        let ran = terminated.finished_at.unwrap().0 - terminated.started_at.unwrap().0;
        assert!(
            ran.get_seconds() >= 1,
            "the pod ran for its run-for annotation (1s), ran {ran}"
        );
    }
}

#[tokio::test]
async fn failing_job_exhausts_its_backoff_limit() {
    let ns = TestNamespace::create("fail").await;
    let job = ns.run_job(&sim_job("fails", "200ms", Some(137))).await;

    assert_eq!(
        finished_condition(&job),
        Some(("Failed".into(), "BackoffLimitExceeded".into()))
    );
    // backoffLimit 1: the first attempt and one retry.
    assert_eq!(job.status.as_ref().unwrap().failed, Some(2));
    let pods = ns.pods_of("fails").await;
    assert_eq!(pods.len(), 2, "two attempts, one pod each");
    for pod in pods {
        let status = pod.status.expect("pod status");
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        let terminated = status.container_statuses.unwrap()[0]
            .state
            .clone()
            .and_then(|s| s.terminated)
            .expect("the container terminated");
        assert_eq!(terminated.exit_code, 137);
        assert_eq!(terminated.reason.as_deref(), Some("Error"));
    }
}

#[tokio::test]
async fn failure_reason_comes_from_the_annotation() {
    let ns = TestNamespace::create("oom").await;
    let mut job = sim_job("oom", "200ms", Some(137));
    job.spec.as_mut().unwrap().backoff_limit = Some(0);
    let template = job
        .spec
        .as_mut()
        .unwrap()
        .template
        .metadata
        .as_mut()
        .unwrap();
    template
        .annotations
        .as_mut()
        .unwrap()
        .insert("sim.jobtrace.dev/reason".into(), "OOMKilled".into());
    let job = ns.run_job(&job).await;

    assert_eq!(job.status.as_ref().unwrap().failed, Some(1));
    let pods = ns.pods_of("oom").await;
    let terminated = pods[0].status.clone().unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .and_then(|s| s.terminated)
        .expect("the container terminated");
    assert_eq!(terminated.reason.as_deref(), Some("OOMKilled"));
    assert_eq!(terminated.exit_code, 137);
}
