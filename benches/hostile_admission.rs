//! A hostile tenant's reviews against a `jobtrace webhook` process: for each shape, a fresh
//! server, then 20 reviews of about 3.8 MB sent at once on 20 connections (as the apiserver, or
//! any pod that reaches the port, could), each with an object just under the 1.5 MiB the webhook
//! reads (and, for the last shape, one past it). Reported: the server's peak RSS above its idle RSS, the
//! largest answer, the slowest answer, and how many were answered unchanged as overloaded.

use jobtrace_testkit::{https, workload};
use std::time::{Duration, Instant};

use jobtrace::k8s::webhook::review::MAX_OBJECT_BYTES;
use jobtrace_testkit::fixtures::TP;
use serde_json::{Value, json};

/// Bytes of each review, near the webhook's 4 MiB body limit.
const TARGET: usize = 3_800_000;
/// Bytes of each object, just under the 1.5 MiB the webhook reads (a larger one is left unread:
/// no patch could make it storable).
const OBJECT: usize = MAX_OBJECT_BYTES - 4096;

fn job_with(annotations: &Value, pod_spec: &Value) -> Value {
    let mut job = workload::typical_job("hostile");
    for (k, v) in annotations.as_object().unwrap() {
        job["metadata"]["annotations"][k] = v.clone();
    }
    for (k, v) in pod_spec.as_object().unwrap() {
        job["spec"]["template"]["spec"][k] = v.clone();
    }
    job
}

/// `unit` repeated (comma-separated) until it takes about `bytes`.
fn repeated(unit: &str, bytes: usize) -> String {
    vec![unit; bytes / (unit.len() + 1)].join(",")
}

/// Each shape: a name and its object.
fn shapes() -> Vec<(&'static str, Value)> {
    let env_entries: Vec<Value> = (0..24_000).map(|_| json!({ "name": "" })).collect();
    let env = json!({ "containers": [{ "name": "c", "image": "i", "env": env_entries }] });
    vec![
        (
            "baggage of malformed members",
            job_with(
                &json!({ "traceparent": TP, "baggage": repeated("x", OBJECT - 4096) }),
                &json!({}),
            ),
        ),
        (
            "one container with 24,000 empty env entries (just under 50,000 values)",
            job_with(
                &json!({ "traceparent": TP, "pad": "p".repeat(OBJECT - 300_000) }),
                &env,
            ),
        ),
        (
            "half a million empty volumes",
            job_with(
                &json!({ "traceparent": TP }),
                &json!({ "volumes": vec![json!({}); (OBJECT - 4096) / 3] }),
            ),
        ),
        (
            "128 containers each setting a 10 KB TRACEPARENT, and the largest baggage",
            job_with(
                &json!({
                    "traceparent": TP,
                    "baggage": (0..180).map(|i| format!("k{i}={}", "v".repeat(40))).collect::<Vec<_>>().join(","),
                }),
                &json!({
                    "initContainers": [],
                    "containers": (0..128).map(|i| json!({
                        "name": format!("c{i}"),
                        "image": "i",
                        "env": [{ "name": "TRACEPARENT", "value": "x".repeat(10_000) }]
                    })).collect::<Vec<_>>()
                }),
            ),
        ),
        (
            "an object past the storable size: 24,000 env entries and a 3.5 MB annotation",
            job_with(
                &json!({ "traceparent": TP, "pad": "p".repeat(TARGET - 300_000) }),
                &env,
            ),
        ),
    ]
}

/// A review as the apiserver writes it: its fields in the Go type's order, the uid first; padded
/// to [`TARGET`] bytes with a field the webhook skips (as a pod that reaches its port may send).
fn review_of(job: &Value) -> Vec<u8> {
    let job = job.to_string();
    let pad = "p".repeat(TARGET.saturating_sub(job.len() + 400));
    format!(
        "{{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\
         \"request\":{{\"uid\":\"705ab4f5-6393-11e8-b7cc-42010a800002\",\
         \"kind\":{{\"group\":\"batch\",\"version\":\"v1\",\"kind\":\"Job\"}},\
         \"resource\":{{\"group\":\"batch\",\"version\":\"v1\",\"resource\":\"jobs\"}},\
         \"namespace\":\"reports\",\"operation\":\"CREATE\",\
         \"userInfo\":{{\"username\":\"tenant\"}},\"object\":{job},\"oldObject\":null,\
         \"dryRun\":false,\"pad\":\"{pad}\"}}}}"
    )
    .into_bytes()
}

struct Outcome {
    peak_above_idle_kib: u64,
    largest_answer: usize,
    slowest: Duration,
    overloaded: usize,
    traced: usize,
}

async fn attack(body: &[u8], concurrency: usize) -> Outcome {
    let server = https::start_server().await;
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (idle, _) = workload::rss_kib(pid);
    let mut conns = Vec::new();
    for _ in 0..concurrency {
        conns.push(https::Conn::open(server.addr, &server.ca, body).await);
    }
    let start = Instant::now() + Duration::from_millis(100);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            tokio::spawn(async move {
                tokio::time::sleep_until(start.into()).await;
                let answer = conn.post().await;
                let took = start.elapsed();
                let parsed: Value = serde_json::from_slice(answer).unwrap();
                (answer.len(), took, parsed)
            })
        })
        .collect();
    let mut outcome = Outcome {
        peak_above_idle_kib: 0,
        largest_answer: 0,
        slowest: Duration::ZERO,
        overloaded: 0,
        traced: 0,
    };
    for task in tasks {
        let (size, took, answer) = task.await.unwrap();
        outcome.largest_answer = outcome.largest_answer.max(size);
        outcome.slowest = outcome.slowest.max(took);
        let warnings = answer["response"]["warnings"].to_string();
        outcome.overloaded += usize::from(warnings.contains("memory budget"));
        outcome.traced += usize::from(answer["response"]["patch"].is_string());
    }
    let (_, peak) = workload::rss_kib(pid);
    outcome.peak_above_idle_kib = peak.saturating_sub(idle);
    outcome
}

#[allow(clippy::cast_precision_loss)] // sizes far below 2^52
fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let concurrency = workload::env_number("BENCH_CONCURRENCY", 20);
    let runtime = workload::runtime();
    println!("hostile_admission: {concurrency} reviews at once per shape, a fresh server each");
    println!(
        "| shape | object | review | peak RSS above idle | largest answer | slowest answer | overloaded | traced |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, object) in shapes() {
        let body = review_of(&object);
        let outcome = runtime.block_on(attack(&body, concurrency));
        println!(
            "| {name} | {:.2} MB | {:.2} MB | {:.1} MiB | {} bytes | {} ms | {} | {} |",
            object.to_string().len() as f64 / 1e6,
            body.len() as f64 / 1e6,
            outcome.peak_above_idle_kib as f64 / 1024.0,
            outcome.largest_answer,
            outcome.slowest.as_millis(),
            outcome.overloaded,
            outcome.traced,
        );
    }
}
