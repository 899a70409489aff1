//! jobtrace: carries W3C trace context into Kubernetes Jobs and records their lifecycle as spans.
#![forbid(unsafe_code)]

pub mod admin;
pub mod certs;
pub mod cli;
pub mod controller;
pub mod core;
pub mod export;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod logging;
pub mod metrics;
pub mod pages;
pub mod registration;
pub mod release;
pub mod run;
pub mod selftrace;
pub mod serve;
pub mod stamp;
pub mod tls;
pub mod trace;
pub mod webhook;

/// Old paths of modules now under [`core`], for `tests/chart.rs` until its imports move.
pub use crate::core::names;
