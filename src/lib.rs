//! jobtrace: carries W3C trace context into Kubernetes Jobs and records their lifecycle as spans.
#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod core;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod k8s;
pub mod wiring;

// Old paths of moved modules, for `tests/chart.rs` until its imports move.
#[doc(hidden)]
pub use crate::core::names;
#[doc(hidden)]
pub use crate::k8s::otlp as export;
#[doc(hidden)]
pub use crate::k8s::{admin, controller, registration};
