//! The edges of injection and export on the real apiserver: values the kubelet would expand,
//! `envFrom`, a Job re-created from its saved manifest, and an unsampled Job whose container sets
//! a sampled `TRACEPARENT` of its own.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::jaeger::{JAEGER_QUERY, OTLP_GRPC, fetch_trace};
use crate::spans::{all_exported, kwok_job, named, random_trace_id};
use crate::webhook::kubectl_create;
use jobtrace_testkit::cluster::{DEADLINE, TestNamespace};
use jobtrace_testkit::fixtures::TP;
use jobtrace_testkit::poll;
use jobtrace_testkit::process::{Runner, Webhook};

/// A Job whose only container the pod runner runs: `sh -c script`, with `env` and `env_from`.
fn shell_job(name: &str, annotations: &Value, script: &str, env: &Value, env_from: &Value) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name, "annotations": annotations },
        "spec": { "backoffLimit": 0, "template": {
            "metadata": { "labels": { "sim.jobtrace.dev/runner": "true" } },
            "spec": { "restartPolicy": "Never", "containers": [{
                "name": "main", "image": "example.invalid/main",
                "command": ["/bin/sh", "-c", script],
                "env": env, "envFrom": env_from
            }] }
        } }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_sees_injected_values_as_written_and_keeps_what_env_from_gives() {
    let ns = TestNamespace::create("dollar").await;
    let _webhook = Webhook::start(&ns).await;
    let _runner = Runner::start(&ns);
    let secrets: Api<Secret> = ns.api();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "db" }, "stringData": { "password": "hunter2" }
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = ns.api();
    let config: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "otel" },
        "data": { "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-config-map" }
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &config)
        .await
        .unwrap();

    let out = std::env::temp_dir().join(format!("jobtrace-e2e-{}", ns.name));
    let script = format!(
        "printf '%s\\n' \"$BAGGAGE\" \"$TRACESTATE\" \"$OTEL_RESOURCE_ATTRIBUTES\" > {}",
        out.display()
    );
    let baggage = "k=$(DB_PASSWORD),m=a$$b";
    let tracestate = "rojo=$(DB_PASSWORD)";
    let job = shell_job(
        "dollar",
        &json!({ "traceparent": TP, "tracestate": tracestate, "baggage": baggage }),
        &script,
        &json!([{ "name": "DB_PASSWORD", "valueFrom": { "secretKeyRef": { "name": "db", "key": "password" } } }]),
        &json!([{ "configMapRef": { "name": "otel" } }]),
    );
    let warnings = kubectl_create(&ns, &job);
    assert!(
        warnings.contains("may take OTEL_RESOURCE_ATTRIBUTES from envFrom"),
        "kubectl shows why the attributes were left alone: {warnings}"
    );
    let finished = ns.finished("dollar").await;
    assert_eq!(
        jobtrace_testkit::cluster::finished_condition(&finished).map(|(t, _)| t),
        Some("Complete".to_owned())
    );
    let seen = std::fs::read_to_string(&out).expect("the container wrote what it saw");
    let _ = std::fs::remove_file(&out);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(
        lines,
        [baggage, tracestate, "service.name=from-config-map"],
        "byte for byte, no secret expanded, envFrom's attributes kept"
    );
}

/// A Job as `kubectl get -o yaml` shows it, stripped of what a create refuses or the apiserver
/// sets (as `kubectl neat` and hand edits do); jobtrace's annotations stay.
fn saved_manifest(job: &Job) -> Job {
    let mut value = serde_json::to_value(job).unwrap();
    let meta = value["metadata"].as_object_mut().unwrap();
    for field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
        "generation",
    ] {
        meta.remove(field);
    }
    value.as_object_mut().unwrap().remove("status");
    value["spec"].as_object_mut().unwrap().remove("selector");
    for labels in ["/metadata/labels", "/spec/template/metadata/labels"] {
        if let Some(labels) = value.pointer_mut(labels).and_then(Value::as_object_mut) {
            labels.retain(|k, _| !k.contains("controller-uid") && !k.contains("job-name"));
        }
    }
    serde_json::from_value(value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_recreated_from_its_saved_manifest_is_traced_and_exported_again() {
    let ns = TestNamespace::create("recreate").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let trace_id = random_trace_id();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let jobs: Api<Job> = ns.api();
    jobs.create(
        &PostParams::default(),
        &kwok_job("nightly", &traceparent, "500ms"),
    )
    .await
    .unwrap();
    let first = all_exported(&ns, 1).await.remove(0);
    let first_span = first.metadata.annotations.as_ref().unwrap()["jobtrace.dev/span-id"].clone();

    let saved = saved_manifest(&first);
    assert_eq!(
        saved.metadata.annotations.as_ref().unwrap()["jobtrace.dev/exported"],
        "true",
        "the saved manifest carries the old mark"
    );
    jobs.delete("nightly", &DeleteParams::background())
        .await
        .unwrap();
    poll::until(
        "the old Job gone",
        DEADLINE,
        Duration::from_millis(200),
        async || {
            jobs.get_opt("nightly")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    kubectl_create(&ns, &saved);
    let second = all_exported(&ns, 1).await.remove(0);
    let second_span = second.metadata.annotations.as_ref().unwrap()["jobtrace.dev/span-id"].clone();
    assert_ne!(second_span, first_span, "a new Job span for the new Job");

    let trace = fetch_trace(&trace_id, 4).await;
    let mut spans: Vec<&str> = named(&trace, "job ")
        .iter()
        .map(|s| s["spanID"].as_str().unwrap())
        .collect();
    spans.sort_unstable();
    let mut expected = [first_span.as_str(), second_span.as_str()];
    expected.sort_unstable();
    assert_eq!(spans, expected, "both Jobs' spans, each once");
}

/// Whether Jaeger knows nothing of `trace_id`.
async fn trace_absent(trace_id: &str) -> bool {
    let response = reqwest::get(format!("{JAEGER_QUERY}/api/traces/{trace_id}"))
        .await
        .expect("Jaeger answers");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    status == reqwest::StatusCode::NOT_FOUND
        || body["data"].as_array().is_some_and(|d| {
            d.iter()
                .all(|t| t["spans"].as_array().is_none_or(Vec::is_empty))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_job_exports_nothing_whatever_its_containers_set() {
    let ns = TestNamespace::create("unsampled").await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let unsampled_trace = random_trace_id();
    let mut unsampled = kwok_job(
        "unsampled",
        &format!("00-{unsampled_trace}-00f067aa0ba902b7-00"),
        "500ms",
    );
    // The container's own TRACEPARENT: the same trace, sampled.
    unsampled
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
        name: "TRACEPARENT".into(),
        value: Some(format!("00-{unsampled_trace}-1111111111111111-01")),
        value_from: None,
    }]);
    let jobs: Api<Job> = ns.api();
    jobs.create(&PostParams::default(), &unsampled)
        .await
        .unwrap();
    let created = jobs.get("unsampled").await.unwrap();
    assert_eq!(
        created.metadata.annotations.as_ref().unwrap()["jobtrace.dev/trace-flags"],
        "00",
        "the creator's decision, recorded at admission"
    );
    ns.finished("unsampled").await;

    // A sampled Job after it: once it is exported, the controller has been past the first.
    let sampled_trace = random_trace_id();
    let sampled = kwok_job(
        "sampled",
        &format!("00-{sampled_trace}-00f067aa0ba902b7-01"),
        "500ms",
    );
    jobs.create(&PostParams::default(), &sampled).await.unwrap();
    fetch_trace(&sampled_trace, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        trace_absent(&unsampled_trace).await,
        "no span of the unsampled trace reached Jaeger"
    );
    let unsampled = jobs.get("unsampled").await.unwrap();
    assert!(
        !unsampled
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("jobtrace.dev/exported"),
        "an unsampled Job is never marked exported"
    );
}
