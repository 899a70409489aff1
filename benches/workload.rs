//! What every benchmark runs, from `jobtrace::fixtures`: the typical Job made realistic and its
//! `AdmissionReview`; and how they measure: quantiles, and the runtime driving the clients.
#![allow(dead_code)]

use jobtrace::fixtures::{TP, TestJob, review};
use serde_json::{Value, json};

/// The typical Job (three containers and one init container), each container as a production
/// Job has it, with a whole context: traceparent, tracestate and baggage.
pub fn typical_job(name: &str) -> Value {
    TestJob::new()
        .named(name)
        .realistic()
        .annotations(&json!({
            "traceparent": TP,
            "tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
            "baggage": "tenant=acme,region=eu-west-1"
        }))
        .json()
}

/// The `AdmissionReview` the apiserver would send for `typical_job`.
pub fn typical_review() -> Vec<u8> {
    review("batch", "Job", "CREATE", &typical_job("nightly-report"))
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
