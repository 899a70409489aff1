//! jobtrace: carries W3C trace context into Kubernetes Jobs and records their lifecycle as spans.
//!
//! The design lives in `docs/` and in DESIGN.md; each capability arrives in its own module.
#![forbid(unsafe_code)]

pub mod cli;
