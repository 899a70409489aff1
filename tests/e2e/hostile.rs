//! A hostile tenant's Jobs through the real apiserver and the `jobtrace webhook` binary: the Job
//! is created, kubectl prints a bounded list of warnings, and the webhook answers in time.
//! (What the apiserver would refuse anyway, such as a million empty volumes, is covered in
//! process: tests/hostile.rs.)

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use serde_json::json;

use crate::support::TestNamespace;
use crate::webhook::kubectl_create;
use crate::webhook_process::{TP, Webhook, job};

fn warning_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("Warning:"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baggage_of_125000_malformed_members_is_created_traced_with_a_few_warnings() {
    let ns = TestNamespace::create("hostile-baggage").await;
    let _webhook = Webhook::start(&ns).await;
    let baggage = vec!["x"; 125_000].join(",");
    let stderr = kubectl_create(
        &ns,
        &job(
            "fat-baggage",
            &json!({ "traceparent": TP, "baggage": baggage }),
            false,
        ),
    );
    let warnings = warning_lines(&stderr);
    assert!(
        (2..=16).contains(&warnings.len()),
        "{} warnings: {:?}",
        warnings.len(),
        &warnings[..warnings.len().min(3)]
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("124992 more malformed members")),
        "{warnings:?}"
    );
    let created = Api::<Job>::namespaced(ns.client.clone(), &ns.name)
        .get("fat-baggage")
        .await
        .unwrap();
    let annotations = created.metadata.annotations.unwrap();
    assert!(
        annotations.contains_key("jobtrace.dev/span-id"),
        "still traced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_containers_setting_their_own_context_get_sixteen_warning_lines() {
    let ns = TestNamespace::create("hostile-containers").await;
    let _webhook = Webhook::start(&ns).await;
    let mut object =
        serde_json::to_value(job("many", &json!({ "traceparent": TP }), false)).unwrap();
    object["spec"]["template"]["spec"]["initContainers"] = json!([]);
    object["spec"]["template"]["spec"]["containers"] = json!(
        (0..100)
            .map(|i| json!({
                "name": format!("c{i}"),
                "image": "example.invalid/c",
                "env": [{ "name": "TRACEPARENT", "value": "mine" }]
            }))
            .collect::<Vec<_>>()
    );
    let stderr = kubectl_create(&ns, &serde_json::from_value(object).unwrap());
    let warnings = warning_lines(&stderr);
    assert_eq!(warnings.len(), 16, "{warnings:?}");
    assert!(
        warnings[15].contains("85 more warnings not shown (85 env_user_set)"),
        "{warnings:?}"
    );
}
