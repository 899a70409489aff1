//! Command-line interface of the `jobtrace` binary.

use clap::Parser;

/// Carries W3C trace context into Kubernetes Jobs and records their lifecycle as OTLP spans.
#[derive(Debug, Parser)]
#[command(name = "jobtrace", version, about)]
pub struct Cli {}
