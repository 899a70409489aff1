//! Command-line interface of the `jobtrace` binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Carries W3C trace context into Kubernetes Jobs and records their lifecycle as OTLP spans.
#[derive(Debug, Parser)]
#[command(name = "jobtrace", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the mutating admission webhook (`/mutate/jobs`, `/mutate/pods`) over HTTPS.
    Webhook(WebhookArgs),
    /// Watch traced Jobs and pods and export their spans over OTLP (`OTEL_EXPORTER_OTLP_*`).
    Controller(ControllerCommand),
    /// The webhook and the controller in one process (what the Helm chart runs).
    Run(RunArgs),
    /// Print the `MutatingWebhookConfiguration` for a webhook reached at a URL (local development).
    WebhookConfig(WebhookConfigArgs),
}

#[derive(Debug, Clone, Args)]
pub struct WebhookConfigArgs {
    /// Base URL of the webhook, e.g. `https://127.0.0.1:8443`.
    #[arg(long)]
    pub url: String,
    /// PEM file of the CA that signed the webhook's certificate, written as `caBundle`.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// jobtrace's own namespace, never sent to the webhook (nor is kube-system).
    #[arg(long, default_value = "jobtrace")]
    pub namespace: String,
}

#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// Address of the HTTPS webhook server.
    #[arg(long, env = "JOBTRACE_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate (chain) the webhook serves; reloaded when the file changes.
    #[arg(long, env = "JOBTRACE_TLS_CERT_FILE")]
    pub tls_cert_file: PathBuf,
    /// PEM private key of the certificate; reloaded when the file changes.
    #[arg(long, env = "JOBTRACE_TLS_KEY_FILE")]
    pub tls_key_file: PathBuf,
    /// Address of the plain-HTTP server for /healthz, /readyz and /metrics.
    #[arg(long, env = "JOBTRACE_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// How often the certificate files are checked for changes, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_reload_seconds: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    /// Namespace of the Lease that elects the one replica that exports.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of that Lease.
    #[arg(long, default_value = "jobtrace-controller")]
    pub lease_name: String,
    /// This replica's identity in the Lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
    /// Export without electing a leader (a single replica, or tests).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "JOBTRACE_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ControllerCommand {
    #[command(flatten)]
    pub controller: ControllerArgs,
    /// Address of the plain-HTTP server for /healthz, /readyz and /metrics.
    #[arg(long, env = "JOBTRACE_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub webhook: WebhookArgs,
    #[command(flatten)]
    pub controller: ControllerArgs,
}
