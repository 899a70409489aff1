//! What every benchmark runs, from the [`crate::fixtures`]: the typical Job made realistic and its
//! `AdmissionReview`; and how they measure: quantiles, CPU time, and the runtime driving the
//! clients.

use crate::fixtures::{TP, TestJob, review};
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

/// A Job of `pods` pods, all in parallel, each running `run_for` on kwok (the stages read it),
/// never retried; carrying the creator's `traceparent` when `traced`.
pub fn kwok_job(name: &str, pods: usize, run_for: &str, traced: bool) -> Value {
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name },
        "spec": {
            "completions": pods, "parallelism": pods, "backoffLimit": 0,
            "template": {
                "metadata": { "annotations": { "sim.jobtrace.dev/run-for": run_for } },
                "spec": { "restartPolicy": "Never",
                          "containers": [{ "name": "work", "image": "example.invalid/work:1" }] }
            }
        }
    });
    if traced {
        job["metadata"]["annotations"] = json!({ "traceparent": TP });
    }
    job
}

/// A number from the environment variable `name`, else `default`.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list of numbers from the environment variable `name`, else `default`'s.
pub fn env_numbers(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect()
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

/// The CPU time (user and system) process `pid` has used so far, from `/proc`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces), from the third: utime is the 14th field.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let seconds = ticks as f64 / 100.0;
    seconds
}

/// The id of the running process whose command is `name` (the local control plane's
/// `kube-apiserver`, say), if there is one.
pub fn pid_of(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim() == name).then_some(pid)
        })
}

/// (current, peak) resident memory of `pid` in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
