//! The Job every benchmark uses: three containers and one init container, annotated.
#![allow(dead_code)]

use serde_json::{Value, json};

pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

pub fn typical_job(name: &str) -> Value {
    let container = |name: &str| {
        json!({
            "name": name, "image": "registry.example/app:1.2.3",
            "args": ["--mode", "full"],
            "env": [{ "name": "MODE", "value": "full" }, { "name": "LOG", "value": "info" }],
            "resources": { "requests": { "cpu": "100m", "memory": "128Mi" } }
        })
    };
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": { "app": "reports" },
            "annotations": {
                "traceparent": TRACEPARENT,
                "tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
                "baggage": "tenant=acme,region=eu-west-1"
            }
        },
        "spec": {
            "backoffLimit": 3,
            "template": {
                "metadata": { "labels": { "app": "reports" } },
                "spec": {
                    "restartPolicy": "Never",
                    "initContainers": [container("fetch")],
                    "containers": [container("main"), container("upload"), container("metrics")]
                }
            }
        }
    })
}

/// The `AdmissionReview` the apiserver would send for `typical_job`.
pub fn typical_review() -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": { "group": "batch", "version": "v1", "kind": "Job" },
            "resource": { "group": "batch", "version": "v1", "resource": "jobs" },
            "namespace": "reports",
            "operation": "CREATE",
            "userInfo": { "username": "ci" },
            "object": typical_job("nightly-report")
        }
    })
    .to_string()
    .into_bytes()
}

/// The `q` quantile (0..=1) of sorted samples.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// The runtime every benchmark drives its clients with: two workers, as the machine has two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
