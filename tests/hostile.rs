//! A hostile tenant against the webhook, in process: whatever a user can put on a Job (or post to
//! the webhook's port) gets an answer of bounded size, in bounded time, and never a refusal.
//! docs/security.md states what each test holds jobtrace to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use http_body_util::BodyExt;
use jobtrace::core::policy::TraceSettings;
use jobtrace::k8s::metrics::Metrics;
use jobtrace::k8s::policy::Policies;
use jobtrace::k8s::webhook::budget::Budget;
use jobtrace::k8s::webhook::review::MAX_OBJECT_BYTES;
use jobtrace_testkit::fixtures::{TP, TestJob, job, review};
use serde_json::{Value, json};
use tower::ServiceExt;

const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

fn router(metrics: &Arc<Metrics>, budget: Budget) -> Router {
    jobtrace::k8s::webhook::budgeted_router(
        metrics.clone(),
        None,
        Policies::defaults_only(TraceSettings::default()),
        budget,
    )
}

async fn send(router: Router, body: Body, length: Option<usize>) -> (StatusCode, Vec<u8>) {
    let mut request = Request::post("/mutate/jobs").header("content-type", "application/json");
    if let Some(length) = length {
        request = request.header("content-length", length);
    }
    let response = router.oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

/// Posts `object` in a review and returns the review's `response` and the whole answer's size.
async fn admit(metrics: &Arc<Metrics>, object: &Value) -> (Value, usize) {
    let body = review("batch", "Job", "CREATE", object).to_string();
    let length = body.len();
    let (status, bytes) = send(
        router(metrics, Budget::default()),
        Body::from(body),
        Some(length),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(answer["response"]["uid"], UID);
    assert_eq!(answer["response"]["allowed"], true, "never refused");
    (answer["response"].clone(), bytes.len())
}

fn warnings(response: &Value) -> Vec<String> {
    response["warnings"]
        .as_array()
        .map(|w| w.iter().map(|m| m.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn warning_count(metrics: &Metrics, reason: &str) -> u64 {
    let needle = format!("jobtrace_admission_warnings_total{{reason=\"{reason}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A traced Job whose pod has `containers` and no init container.
fn traced_job_of(containers: &[Value]) -> Value {
    let mut object = job(&json!({ "traceparent": TP }));
    object["spec"]["template"]["spec"]["containers"] = json!(containers);
    object["spec"]["template"]["spec"]["initContainers"] = json!([]);
    object
}

/// What the apiserver keeps of a request's warnings: about 4 KiB of text.
fn assert_fits_the_apiserver(warnings: &[String]) {
    assert!(warnings.len() <= 16, "{} warnings", warnings.len());
    let text: usize = warnings.iter().map(|w| w.chars().count()).sum();
    assert!(text <= 4096 + 256, "{text} characters of warnings");
    for w in warnings {
        assert!(w.chars().count() <= 257, "{w}");
    }
}

#[tokio::test]
async fn a_baggage_of_125000_malformed_members_gets_a_few_warnings() {
    let baggage = vec!["x"; 125_000].join(",");
    let metrics = Arc::new(Metrics::default());
    let (response, size) = admit(
        &metrics,
        &job(&json!({ "traceparent": TP, "baggage": baggage })),
    )
    .await;
    let warnings = warnings(&response);
    assert_fits_the_apiserver(&warnings);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("124992 more malformed members")),
        "{warnings:?}"
    );
    assert!(response["patch"].is_string(), "the Job is still traced");
    assert!(size < 64 * 1024, "an answer of {size} bytes");
}

#[tokio::test]
async fn warnings_past_the_fifteenth_are_counted_in_one_line() {
    let containers: Vec<Value> = (0..100)
        .map(|i| {
            json!({
                "name": format!("c{i}"),
                "image": "busybox",
                "env": [{ "name": "TRACEPARENT", "value": "mine" }]
            })
        })
        .collect();
    let object = traced_job_of(&containers);
    let metrics = Arc::new(Metrics::default());
    let (response, _) = admit(&metrics, &object).await;
    let warnings = warnings(&response);
    assert_fits_the_apiserver(&warnings);
    assert_eq!(warnings.len(), 16, "{warnings:?}");
    assert_eq!(
        warnings[15],
        "jobtrace: 85 more warnings not shown (85 env_user_set)"
    );
    assert_eq!(warning_count(&metrics, "env_user_set"), 100, "all counted");
}

/// A Job just under the 1.5 MiB the apiserver stores whose pod has half a million empty volumes:
/// as typed objects they would take gigabytes; the webhook counts them and leaves the Job alone.
#[tokio::test]
async fn a_job_of_half_a_million_empty_volumes_is_admitted_unchanged() {
    let mut object = job(&json!({ "traceparent": TP }));
    object["spec"]["template"]["spec"]["volumes"] = json!(vec![json!({}); 500_000]);
    assert!(object.to_string().len() < MAX_OBJECT_BYTES);
    let metrics = Arc::new(Metrics::default());
    let started = Instant::now();
    let (response, size) = admit(&metrics, &object).await;
    assert!(response["patch"].is_null(), "unchanged");
    let warnings = warnings(&response);
    assert!(
        warnings[0].contains("not traced") && warnings[0].contains("JSON values"),
        "{warnings:?}"
    );
    assert_eq!(warning_count(&metrics, "object_too_large"), 1);
    assert!(size < 4096);
    // Not a timing test: a typed read of this object takes minutes and gigabytes, not seconds.
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// A Job larger than the apiserver stores (a review may carry 3 MiB of it) is left alone unread:
/// whatever it holds, even JSON that is no Job, it costs the webhook no more than its bytes.
#[tokio::test]
async fn a_job_past_the_storable_size_is_admitted_unchanged_without_being_read() {
    let mut object = job(&json!({ "traceparent": TP }));
    // Read, this would be an unreadable object: a pod template that is a number.
    object["spec"]["template"] = json!(7);
    object["metadata"]["annotations"]["pad"] = json!("p".repeat(MAX_OBJECT_BYTES));
    let metrics = Arc::new(Metrics::default());
    let (response, size) = admit(&metrics, &object).await;
    assert!(response["patch"].is_null(), "unchanged");
    let warnings = warnings(&response);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("not traced") && warnings[0].contains("the apiserver stores"),
        "{warnings:?}"
    );
    assert_eq!(warning_count(&metrics, "object_too_large"), 1);
    assert_eq!(warning_count(&metrics, "unreadable_object"), 0);
    assert!(size < 4096);
}

#[tokio::test]
async fn a_pod_of_too_many_containers_is_admitted_unchanged() {
    let containers: Vec<Value> = (0..129)
        .map(|i| json!({ "name": format!("c{i}") }))
        .collect();
    let object = traced_job_of(&containers);
    let metrics = Arc::new(Metrics::default());
    let (response, _) = admit(&metrics, &object).await;
    assert!(response["patch"].is_null(), "unchanged");
    assert!(warnings(&response)[0].contains("129 containers"));
}

/// A Job the context would take past what etcd stores would be refused by the apiserver: it is
/// admitted unchanged instead.
#[tokio::test]
async fn a_patch_that_would_pass_the_object_limit_is_not_sent() {
    let baggage = (0..180)
        .map(|i| format!("k{i}={}", "v".repeat(40)))
        .collect::<Vec<_>>()
        .join(",");
    let containers: Vec<Value> = (0..128)
        .map(|i| json!({ "name": format!("c{i}") }))
        .collect();
    let mut object = TestJob::new()
        .annotations(&json!({ "traceparent": TP, "baggage": baggage, "pad": "p".repeat(700_000) }))
        .json();
    object["spec"]["template"]["spec"]["containers"] = json!(containers);
    object["spec"]["template"]["spec"]["initContainers"] = json!([]);
    let metrics = Arc::new(Metrics::default());
    let (response, _) = admit(&metrics, &object).await;
    assert!(response["patch"].is_null(), "unchanged");
    let warnings = warnings(&response);
    assert!(
        warnings.iter().any(|w| w.contains("past the 1572864")),
        "{warnings:?}"
    );
    // The same Job with a small annotation is traced.
    object["metadata"]["annotations"]["pad"] = json!("p");
    let (response, _) = admit(&metrics, &object).await;
    assert!(response["patch"].is_string());
}

/// A body that arrives slowly holds its share of the budget while it is read.
fn stalled_body(first: &'static [u8]) -> (Body, tokio::sync::oneshot::Sender<()>) {
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(first.to_vec()) })
        .chain(futures::stream::once(async move {
            let _ = released.await;
            Ok(Vec::new())
        }));
    (Body::from_stream(stream), release)
}

#[tokio::test]
async fn an_overloaded_webhook_answers_in_time_unchanged_with_a_warning() {
    let metrics = Arc::new(Metrics::default());
    let router = router(
        &metrics,
        Budget::new(4 * 1024 * 1024, Duration::from_millis(200)),
    );
    // A review that declares 4 MiB takes the whole budget while its body trickles in.
    let (slow, release) = stalled_body(b"{\"request\":");
    let holder = tokio::spawn(send(router.clone(), slow, Some(4 * 1024 * 1024)));
    tokio::time::sleep(Duration::from_millis(50)).await;

    let object = job(&json!({ "traceparent": TP }));
    let body = review("batch", "Job", "CREATE", &object).to_string();
    let started = Instant::now();
    let (status, bytes) = send(router.clone(), Body::from(body.clone()), Some(body.len())).await;
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    let response = &answer["response"];
    assert_eq!(response["uid"], UID);
    assert_eq!(response["allowed"], true);
    assert!(response["patch"].is_null(), "unchanged");
    assert!(
        warnings(response)[0].contains("memory budget"),
        "{response}"
    );
    assert!(waited < Duration::from_secs(2), "answered after {waited:?}");
    assert_eq!(warning_count(&metrics, "overloaded"), 1);
    assert!(
        metrics.encode().contains(
            "jobtrace_admission_requests_total{endpoint=\"jobs\",result=\"overloaded\"} 1"
        ),
        "{}",
        metrics.encode()
    );

    // Without a uid in the first bytes there is no review to answer: 503, and the apiserver
    // applies the failure policy (Ignore).
    let (status, _) = send(router.clone(), Body::from("{\"x\":1}"), Some(7)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    release.send(()).unwrap();
    let _ = holder.await.unwrap();
    let (status, bytes) = send(router, Body::from(body.clone()), Some(body.len())).await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        answer["response"]["patch"].is_string(),
        "room again: traced"
    );
}

/// `object` as the webhook admits it in `namespace`: its answer's patch applied, if any.
async fn admitted_in(namespace: &str, object: &Value) -> Value {
    use base64::Engine;
    let mut review = review("batch", "Job", "CREATE", object);
    review["request"]["namespace"] = json!(namespace);
    let body = review.to_string();
    let length = body.len();
    let (status, bytes) = send(
        router(&Arc::default(), Budget::default()),
        Body::from(body),
        Some(length),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    let Some(patch) = answer["response"]["patch"].as_str() else {
        return object.clone();
    };
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap();
    jobtrace_testkit::fixtures::apply(object, &serde_json::from_slice(&patch).unwrap())
}

fn annotation<'a>(object: &'a Value, key: &str) -> &'a str {
    object["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_job_carrying_another_jobs_stamp_gets_ids_of_its_own() {
    let span = |object: &Value| annotation(object, "jobtrace.dev/span-id").to_owned();
    // Tenant A's Job, just admitted: its stamp is fresh.
    let original = job(&json!({ "traceparent": TP }));
    let admitted = admitted_in("tenant-a", &original).await;
    assert_eq!(
        annotation(&admitted, "jobtrace.dev/admission-tag").len(),
        43
    );
    // The apiserver reinvoking the webhook for the same request: the ids stay.
    let reinvoked = admitted_in("tenant-a", &admitted).await;
    assert_eq!(span(&reinvoked), span(&admitted), "a true reinvocation");
    // Tenant B copies every annotation of that Job, stamp and tag included, onto a Job of the
    // same name in its own namespace.
    let copied = admitted_in("tenant-b", &admitted).await;
    // In tenant A's namespace itself, onto a Job of another name.
    let mut renamed = admitted.clone();
    renamed["metadata"]["name"] = json!("copied");
    let renamed = admitted_in("tenant-a", &renamed).await;
    // A stamp forged a second ahead (within the clock skew allowed), next to the copied tag.
    let mut restamped = admitted.clone();
    let ahead =
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(1);
    restamped["metadata"]["annotations"]["jobtrace.dev/admitted-at"] = json!(ahead.to_string());
    let restamped = admitted_in("tenant-b", &restamped).await;
    // A forged stamp without a tag.
    let mut untagged = admitted.clone();
    untagged["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("jobtrace.dev/admission-tag");
    let untagged = admitted_in("tenant-b", &untagged).await;
    for (what, out) in [
        ("copied to another namespace", copied),
        ("copied to another name", renamed),
        ("a forged stamp with the copied tag", restamped),
        ("a forged stamp without a tag", untagged),
    ] {
        assert_eq!(
            annotation(&out, "jobtrace.dev/trace-id"),
            annotation(&admitted, "jobtrace.dev/trace-id"),
            "{what}: the creator's trace, as its traceparent says"
        );
        assert_ne!(span(&out), span(&admitted), "{what}: a span of its own");
        assert_ne!(
            annotation(&out, "jobtrace.dev/admission-tag"),
            annotation(&admitted, "jobtrace.dev/admission-tag"),
            "{what}"
        );
        let container = &out["spec"]["template"]["spec"]["containers"][0];
        let traceparent = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "TRACEPARENT")
            .unwrap();
        assert!(
            traceparent["value"].as_str().unwrap().contains(&span(&out)),
            "{what}: its containers are children of its own span"
        );
    }
}
