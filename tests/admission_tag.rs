//! The admission tag's key is the serving key's: once the webhook loads its certificate, the tags
//! it writes verify under the key derived from that certificate's private key, as they do in any
//! replica serving the same Secret, and a rotation keeps a stamp written just before it good for
//! its reinvocation. (A test binary of its own: the key is the process's.)

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use jobtrace::core::context::{SpanId, TraceId};
use jobtrace::core::mutate::tag::{Keyring, Kind, Stamped, TagKey};
use jobtrace::k8s::tls::ServingCertFiles;
use jobtrace_testkit::fixtures::{TP, apply, job, review};
use jobtrace_testkit::pki::TestPki;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tower::ServiceExt;

/// `object` as the webhook admits it in `reports`: its answer's patch applied, if any.
async fn admitted(object: &Value) -> Value {
    let body = review("batch", "Job", "CREATE", object).to_string();
    let request = Request::post("/mutate/jobs")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = jobtrace::k8s::webhook::router(Arc::default())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    let Some(patch) = answer["response"]["patch"].as_str() else {
        return object.clone();
    };
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap();
    apply(object, &serde_json::from_slice(&patch).unwrap())
}

/// Loads `pki` as the webhook's serving certificate, from files as a mounted Secret gives it.
async fn serve_with(pki: &TestPki, name: &str) {
    let dir = std::env::temp_dir().join(format!("jobtrace-tag-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), &pki.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &pki.key_pem).unwrap();
    ServingCertFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    }
    .load()
    .await
    .unwrap();
    std::fs::remove_dir_all(dir).ok();
}

fn annotation<'a>(object: &'a Value, key: &str) -> &'a str {
    object["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn the_webhook_tags_with_the_key_derived_from_its_serving_key() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = TestPki::generate();
    serve_with(&pki, "first").await;
    let once = admitted(&job(&json!({ "traceparent": TP }))).await;
    let stamped = Stamped {
        kind: Kind::Job,
        namespace: "reports",
        name: "nightly",
        trace_id: TraceId::parse(annotation(&once, "jobtrace.dev/trace-id")).unwrap(),
        span_id: SpanId::parse(annotation(&once, "jobtrace.dev/span-id")).unwrap(),
        admitted_at: annotation(&once, "jobtrace.dev/admitted-at"),
    };
    let tag = annotation(&once, "jobtrace.dev/admission-tag");
    // Another replica, serving the same Secret.
    let replica = Keyring::new(TagKey::from_serving_key(pki.key_pem.as_bytes()).unwrap());
    assert!(replica.verifies(&stamped, tag, Timestamp::now()));
    let stranger =
        Keyring::new(TagKey::from_serving_key(TestPki::generate().key_pem.as_bytes()).unwrap());
    assert!(!stranger.verifies(&stamped, tag, Timestamp::now()));

    // The serving key rotated between the request's two passes: its reinvocation keeps the ids
    // and the stamp, tagged anew with the new key.
    serve_with(&TestPki::generate(), "rotated").await;
    let again = admitted(&once).await;
    for key in ["jobtrace.dev/span-id", "jobtrace.dev/admitted-at"] {
        assert_eq!(annotation(&again, key), annotation(&once, key), "{key}");
    }
    let retagged = annotation(&again, "jobtrace.dev/admission-tag");
    assert_ne!(retagged, tag);
    assert!(!replica.verifies(&stamped, retagged, Timestamp::now()));
    assert_eq!(admitted(&again).await, again, "and holds from then on");
}
