//! jobtrace: carries W3C trace context into Kubernetes Jobs and records their lifecycle as spans.
#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod core;
pub mod k8s;
pub mod wiring;

#[cfg(test)]
mod testing;
