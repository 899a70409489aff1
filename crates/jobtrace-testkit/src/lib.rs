//! What jobtrace's tests beyond the unit tests share, and its benchmarks: one place for each
//! helper, so that no test or benchmark includes another's files.
//!
//! - [`fixtures`]: Jobs, pods, reviews and policies, built from one typical Job;
//! - [`pki`]: a CA and a serving certificate for 127.0.0.1;
//! - [`cluster`]: the local control plane (`make cluster-up`): a namespace per test, waits with a
//!   deadline, etcd;
//! - [`process`]: the `jobtrace` processes a test starts, their ports and their registration;
//! - [`https`]: a `jobtrace webhook` on its own and keep-alive HTTPS connections to it;
//! - [`metrics`]: one reading of a `/metrics` page;
//! - [`poll`]: waiting until something holds, with a deadline;
//! - [`helm`]: the chart as helm renders it;
//! - [`workload`]: what every benchmark runs and measures with.
//!
//! The pod runner (`src/bin/pod-runner.rs`) is its binary.

pub mod cluster;
pub mod fixtures;
pub mod helm;
pub mod https;
pub mod metrics;
pub mod pki;
pub mod poll;
pub mod process;
pub mod workload;

use std::path::PathBuf;

/// The repository's root, for the files the tests read (the chart, `hack/`, `docs/`).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Where cargo put the running test or benchmark's programs: `target/<profile>`, since its own
/// executable is in `target/<profile>/deps`. The `jobtrace` binary of the package under test is
/// there, the examples of every workspace member in `examples/`, and the pod runner.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent()
        .and_then(std::path::Path::parent)
        .expect("a test runs from target/<profile>/deps")
        .to_path_buf()
}

/// The `jobtrace` binary cargo built for the running test or benchmark.
pub fn jobtrace_binary() -> PathBuf {
    profile_dir().join("jobtrace")
}
