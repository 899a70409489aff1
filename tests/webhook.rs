//! The webhook's HTTP surface, in process: the router driven with `oneshot`, and the HTTPS server
//! with its certificate reload.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use jobtrace::k8s::metrics::Metrics;
use jobtrace_testkit::fixtures::{TP, job, review};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn post(metrics: &Arc<Metrics>, path: &str, body: Body) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let response = jobtrace::k8s::webhook::router(metrics.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "the body is JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, body)
}

async fn post_review(path: &str, review: &Value) -> (Arc<Metrics>, Value) {
    let metrics = Arc::new(Metrics::default());
    let (status, body) = post(&metrics, path, Body::from(review.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(
        body["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(body["response"]["allowed"], true, "never blocks: {body}");
    (metrics, body["response"].clone())
}

fn decode_patch(response: &Value) -> Vec<Value> {
    assert_eq!(response["patchType"], "JSONPatch");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("a patch"))
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

#[tokio::test]
async fn annotated_job_is_patched() {
    let object = job(&json!({ "traceparent": TP }));
    let (metrics, response) =
        post_review("/mutate/jobs", &review("batch", "Job", "CREATE", &object)).await;
    let ops = decode_patch(&response);
    assert!(ops.iter().all(|op| op["op"] == "add"), "{ops:?}");
    let mut patched = object.clone();
    let patch: json_patch::Patch = serde_json::from_value(json!(ops)).unwrap();
    json_patch::patch(&mut patched, &patch).unwrap();
    for c in [
        "initContainers/0",
        "containers/0",
        "containers/1",
        "containers/2",
    ] {
        let env = patched
            .pointer(&format!("/spec/template/spec/{c}/env"))
            .unwrap();
        assert!(
            env.as_array()
                .unwrap()
                .iter()
                .any(|v| v["name"] == "TRACEPARENT"),
            "{c}"
        );
    }
    assert!(response.get("warnings").is_none());
    assert_eq!(metrics.admission_count("jobs", "injected"), 1);
}

#[tokio::test]
async fn job_without_context_is_allowed_unchanged() {
    let object = job(&json!({ "team": "data" }));
    let (metrics, response) =
        post_review("/mutate/jobs", &review("batch", "Job", "CREATE", &object)).await;
    assert!(response.get("patch").is_none());
    assert_eq!(metrics.admission_count("jobs", "not_traced"), 1);
}

#[tokio::test]
async fn broken_traceparent_is_allowed_with_a_warning() {
    let object = job(&json!({ "traceparent": "00-abc-def-01" }));
    let (metrics, response) =
        post_review("/mutate/jobs", &review("batch", "Job", "CREATE", &object)).await;
    assert!(response.get("patch").is_none());
    let warnings = response["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.starts_with("jobtrace: annotation traceparent ignored:"),
        "{warning}"
    );
    assert!(warning.contains("version 00 has exactly 55"), "{warning}");
    let text = metrics.encode();
    assert!(
        text.contains(r#"jobtrace_admission_warnings_total{reason="length"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn another_kind_is_allowed_unchanged() {
    let pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p" },
                      "spec": { "containers": [{ "name": "c", "image": "i" }] } });
    let (metrics, response) = post_review("/mutate/jobs", &review("", "Pod", "CREATE", &pod)).await;
    assert!(response.get("patch").is_none());
    assert_eq!(metrics.admission_count("jobs", "skipped"), 1);
}

#[tokio::test]
async fn other_operations_are_allowed_unchanged() {
    let object = job(&json!({ "traceparent": TP }));
    let (metrics, response) =
        post_review("/mutate/jobs", &review("batch", "Job", "UPDATE", &object)).await;
    assert!(response.get("patch").is_none());
    assert_eq!(metrics.admission_count("jobs", "skipped"), 1);
}

#[tokio::test]
async fn unreadable_object_is_allowed_with_a_warning() {
    let object = json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": 5 } });
    let (_, response) =
        post_review("/mutate/jobs", &review("batch", "Job", "CREATE", &object)).await;
    assert!(response.get("patch").is_none());
    let warning = response["warnings"][0].as_str().unwrap();
    assert!(warning.contains("could not read the object"), "{warning}");
}

#[tokio::test]
async fn pod_of_a_traced_job_gets_its_span() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "nightly-",
            "labels": { "jobtrace.dev/traced": "true" },
            "annotations": {
                "jobtrace.dev/trace-id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "jobtrace.dev/parent-span-id": "1111111111111111"
            }
        },
        "spec": { "containers": [{ "name": "c", "image": "i", "env": [
            { "name": "TRACEPARENT", "value": "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01" }
        ] }] }
    });
    let (metrics, response) = post_review("/mutate/pods", &review("", "Pod", "CREATE", &pod)).await;
    let ops = decode_patch(&response);
    let span = ops
        .iter()
        .find(|op| op["path"] == "/metadata/annotations/jobtrace.dev~1span-id")
        .expect("the pod span id is recorded")["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let env = ops
        .iter()
        .find(|op| op["path"] == "/spec/containers/0/env/0/value")
        .expect("TRACEPARENT is rewritten");
    assert_eq!(
        env["value"],
        format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{span}-01")
    );
    assert_eq!(metrics.admission_count("pods", "injected"), 1);
}

#[tokio::test]
async fn malformed_body_is_a_json_400() {
    let metrics = Arc::new(Metrics::default());
    for body in ["", "{", "[]", "{\"request\": 5}", "not json at all"] {
        let (status, error) = post(&metrics, "/mutate/jobs", Body::from(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert!(
            error["error"].as_str().unwrap().contains("AdmissionReview"),
            "{error}"
        );
    }
    let (status, error) = post(&metrics, "/mutate/jobs", Body::from("{}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error"], "the AdmissionReview has no request");
    assert_eq!(metrics.admission_count("jobs", "bad_request"), 6);
}

#[tokio::test]
async fn oversized_body_is_refused_before_it_is_read() {
    let metrics = Arc::new(Metrics::default());
    // The declared length alone is refused: the body stream is never polled.
    let never_read = futures::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let request = Request::post("/mutate/jobs")
        .header("content-type", "application/json")
        .header(
            "content-length",
            (jobtrace::k8s::webhook::MAX_BODY + 1).to_string(),
        )
        .body(Body::from_stream(never_read))
        .unwrap();
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        jobtrace::k8s::webhook::router(metrics.clone()).oneshot(request),
    )
    .await
    .expect("answered without waiting for the body")
    .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let error: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(error["error"].is_string());

    // Without a declared length, reading stops at the limit.
    let chunk = vec![b' '; 64 * 1024];
    let chunks = (jobtrace::k8s::webhook::MAX_BODY / chunk.len()) + 2;
    let stream =
        futures::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let (status, _) = post(&metrics, "/mutate/jobs", Body::from_stream(stream)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let mut body = review(
        "batch",
        "Job",
        "CREATE",
        &job(&json!({ "traceparent": TP })),
    );
    body["request"]["somethingNew"] = json!({ "nested": [1, 2] });
    body["request"]["object"]["spec"]["futureField"] = json!(true);
    let (_, response) = post_review("/mutate/jobs", &body).await;
    assert!(!decode_patch(&response).is_empty());
}
