//! The admission webhook through the real apiserver: the `jobtrace webhook` binary, registered by
//! URL for the test's namespace only.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use jobtrace_testkit::cluster::{DEADLINE, TestNamespace, finished_condition};
use jobtrace_testkit::fixtures::TP;
use jobtrace_testkit::process::{Webhook, job, kubectl};

/// Creates `job` with kubectl, as a user would; kubectl's stderr (where warnings go).
pub fn kubectl_create(ns: &TestNamespace, job: &Job) -> String {
    let manifest = serde_json::to_value(job).unwrap();
    let output = kubectl_with_manifest(ns, "create", &manifest);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "kubectl create failed: {stderr}");
    stderr
}

/// `kubectl VERB -n NS -f -` with `manifest` on its standard input.
pub fn kubectl_with_manifest(
    ns: &TestNamespace,
    verb: &str,
    manifest: &serde_json::Value,
) -> std::process::Output {
    let mut child = kubectl()
        .args([verb, "-n", &ns.name, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.to_string().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn env_of(containers: &[k8s_openapi::api::core::v1::Container], name: &str) -> Vec<Option<String>> {
    containers
        .iter()
        .map(|c| {
            c.env
                .iter()
                .flatten()
                .find(|v| v.name == name)
                .and_then(|v| v.value.clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_job_gets_context_in_every_container_and_each_pod_its_own_span() {
    let ns = TestNamespace::create("inject").await;
    let _webhook = Webhook::start(&ns).await;
    let annotations = json!({ "traceparent": TP, "tracestate": "rojo=00f067aa0ba902b7", "baggage": "tenant=acme" });
    let warnings = kubectl_create(&ns, &job("traced", &annotations, true));
    assert!(!warnings.contains("Warning"), "{warnings}");

    let jobs: Api<Job> = ns.api();
    let created = jobs.get("traced").await.unwrap();
    let job_annotations = created.metadata.annotations.clone().unwrap();
    let job_span = job_annotations["jobtrace.dev/span-id"].clone();
    assert_eq!(
        job_annotations["jobtrace.dev/trace-id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        job_annotations["jobtrace.dev/parent-span-id"],
        "00f067aa0ba902b7"
    );
    assert_eq!(
        created.metadata.labels.unwrap()["jobtrace.dev/traced"],
        "true"
    );
    let pod_spec = created.spec.unwrap().template.spec.unwrap();
    let expected = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{job_span}-01");
    for containers in [
        pod_spec.init_containers.clone().unwrap(),
        pod_spec.containers.clone(),
    ] {
        assert!(
            env_of(&containers, "TRACEPARENT")
                .iter()
                .all(|v| v.as_deref() == Some(&expected))
        );
        assert!(
            env_of(&containers, "TRACESTATE")
                .iter()
                .all(|v| v.as_deref() == Some("rojo=00f067aa0ba902b7"))
        );
        assert!(
            env_of(&containers, "BAGGAGE")
                .iter()
                .all(|v| v.as_deref() == Some("tenant=acme"))
        );
        for attributes in env_of(&containers, "OTEL_RESOURCE_ATTRIBUTES") {
            let attributes = attributes.unwrap();
            assert!(
                attributes.contains(&format!("k8s.namespace.name={}", ns.name)),
                "{attributes}"
            );
            assert!(attributes.contains("k8s.job.name=traced"), "{attributes}");
        }
    }

    // Both attempts fail (backoffLimit 1): two pods, each with its own span under the Job span.
    let finished = tokio::time::timeout(DEADLINE, async {
        loop {
            let job = jobs.get("traced").await.unwrap();
            if finished_condition(&job).is_some() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("the Job finishes");
    assert_eq!(
        finished_condition(&finished).unwrap().1,
        "BackoffLimitExceeded"
    );
    let pods: Vec<Pod> = ns.pods_of("traced").await;
    assert_eq!(pods.len(), 2);
    let mut spans = Vec::new();
    for pod in &pods {
        let annotations = pod.metadata.annotations.clone().unwrap();
        assert_eq!(annotations["jobtrace.dev/parent-span-id"], job_span);
        let span = annotations["jobtrace.dev/span-id"].clone();
        assert_ne!(span, job_span);
        let spec = pod.spec.clone().unwrap();
        let expected = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{span}-01");
        for containers in [spec.init_containers.unwrap(), spec.containers] {
            assert!(
                env_of(&containers, "TRACEPARENT")
                    .iter()
                    .all(|v| v.as_deref() == Some(&expected))
            );
        }
        spans.push(span);
    }
    assert_ne!(spans[0], spans[1], "each attempt is its own span");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_without_annotations_never_reaches_the_webhook() {
    let ns = TestNamespace::create("plain").await;
    let webhook = Webhook::start(&ns).await;
    let jobs_before = webhook.requests("jobs").await;
    let pods_before = webhook.requests("pods").await;

    let plain = ns
        .run_job(&job("plain", &json!({ "team": "data" }), false))
        .await;
    assert_eq!(finished_condition(&plain).unwrap().0, "Complete");
    assert!(
        !plain
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("jobtrace.dev/traced")
    );
    assert_eq!(
        webhook.requests("jobs").await,
        jobs_before,
        "matchConditions kept the Job away"
    );
    assert_eq!(
        webhook.requests("pods").await,
        pods_before,
        "objectSelector kept the pod away"
    );

    // The same webhook does see an annotated Job: the counter can move.
    let jobs: Api<Job> = ns.api();
    jobs.create(
        &PostParams::default(),
        &job("traced", &json!({ "traceparent": TP }), false),
    )
    .await
    .unwrap();
    assert_eq!(webhook.requests("jobs").await, jobs_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_traceparent_creates_the_job_and_warns_the_client() {
    let ns = TestNamespace::create("broken").await;
    let _webhook = Webhook::start(&ns).await;
    let broken = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let stderr = kubectl_create(
        &ns,
        &job("broken", &json!({ "traceparent": broken }), false),
    );
    assert!(
        stderr.contains("Warning: jobtrace: annotation traceparent ignored"),
        "kubectl shows the warning: {stderr}"
    );
    assert!(stderr.contains("trace-id is not lowercase hex"), "{stderr}");
    let jobs: Api<Job> = ns.api();
    let job = jobs.get("broken").await.expect("the Job was created");
    assert!(
        !job.metadata
            .labels
            .unwrap_or_default()
            .contains_key("jobtrace.dev/traced")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_still_created_with_the_webhook_stopped() {
    let ns = TestNamespace::create("down").await;
    let mut webhook = Webhook::start(&ns).await;
    webhook.stop();
    let jobs: Api<Job> = ns.api();
    let created = jobs
        .create(
            &PostParams::default(),
            &job("unhooked", &json!({ "traceparent": TP }), false),
        )
        .await
        .expect("failurePolicy Ignore: the Job is created");
    assert!(
        !created
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("jobtrace.dev/traced")
    );
    let done = ns
        .run_job(&job("second", &json!({ "traceparent": TP }), false))
        .await;
    assert_eq!(finished_condition(&done).unwrap().0, "Complete");
}
