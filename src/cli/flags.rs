//! The flags of each command, as clap reads them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::policy::PolicyArgs;
use super::values::{duration, ratio, url_template};

pub use crate::k8s::logging::LogFormat;

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Log level or filter (`info`, `debug`, `jobtrace=debug,kube=warn`); `RUST_LOG` wins when set.
    #[arg(
        long,
        global = true,
        env = "JOBTRACE_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
    /// Log format.
    #[arg(long, global = true, env = "JOBTRACE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Share (0 to 1) of admissions recorded as jobtrace's own spans; above 0, export batches and
    /// certificate changes are recorded too. Sent to the same OTLP endpoint. 0 turns them off.
    #[arg(long, global = true, env = "JOBTRACE_SELF_TRACING_RATIO", default_value_t = 0.0, value_parser = ratio)]
    pub self_tracing_ratio: f64,
}

#[derive(Debug, Clone, Args)]
pub struct ReleaseArgs {
    /// Only this namespace's Jobs (default: every namespace).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Delete this `MutatingWebhookConfiguration` first, so that no Job created meanwhile is
    /// held again (an uninstall).
    #[arg(long)]
    pub webhook_configuration: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct StampArgs {
    /// Manifest files; standard input when there is none, or for `-`.
    pub files: Vec<std::path::PathBuf>,
    /// Fail when the environment has no trace context (default: a warning, and the manifests
    /// written unchanged).
    #[arg(long)]
    pub require: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// The Job's name.
    pub job: String,
    /// The Job's namespace [default: the kubeconfig context's namespace, else `default`].
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Base URL of the Jaeger-compatible query API the trace is read from, as
    /// `{URL}/api/traces/{trace id}`.
    #[arg(
        long,
        env = "JOBTRACE_QUERY_URL",
        default_value = "http://127.0.0.1:16686"
    )]
    pub query_url: String,
    /// Also print a link to the trace: this URL with `{trace_id}` replaced, e.g.
    /// `http://127.0.0.1:16686/trace/{trace_id}` (Jaeger's UI) or
    /// `http://127.0.0.1:8000/traces/{trace_id}` (otel-desktop-viewer).
    #[arg(long, env = "JOBTRACE_URL_TEMPLATE", value_parser = url_template)]
    pub url_template: Option<String>,
    /// Wait up to this long (`30s`, `2m`) for the trace to hold the Job's span, which is exported
    /// once the Job finished; 0 asks once.
    #[arg(long, default_value = "0s", value_parser = duration)]
    pub wait: Duration,
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
#[command(group(clap::ArgGroup::new("certificate").required(true).args(["tls_cert_file", "cert_secret"])))]
pub struct WebhookArgs {
    /// Address of the HTTPS webhook server.
    #[arg(long, env = "JOBTRACE_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate (chain) the webhook serves, reloaded when the file changes (for example
    /// a Secret written by cert-manager). Without it, `--cert-secret` is required.
    #[arg(
        long,
        env = "JOBTRACE_TLS_CERT_FILE",
        requires = "tls_key_file",
        required_unless_present = "cert_secret",
        conflicts_with = "cert_secret"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the certificate; reloaded when the file changes.
    #[arg(long, env = "JOBTRACE_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// How often the certificate files are checked for changes, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_reload_seconds: u64,
    #[command(flatten)]
    pub certs: CertArgs,
    /// Address of the metrics port (plain HTTP): /healthz, /readyz, /syncz and /metrics.
    #[arg(long, env = "JOBTRACE_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// On SIGTERM, how long to keep serving while reporting not ready (so the Service stops
    /// sending admissions here) before draining open requests.
    #[arg(long, env = "JOBTRACE_SHUTDOWN_DELAY", default_value = "5s", value_parser = duration)]
    pub shutdown_delay: Duration,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// Self-managed certificates: jobtrace keeps a CA and a serving certificate in Secrets and the
/// CA in the webhook configuration's `caBundle`.
#[derive(Debug, Clone, Args)]
pub struct CertArgs {
    /// Name of the Secret holding the serving certificate (created when missing); the CA's key is
    /// kept apart, in the Secret `<name>-ca`.
    #[arg(long, env = "JOBTRACE_CERT_SECRET")]
    pub cert_secret: Option<String>,
    /// Namespace of that Secret (jobtrace's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub cert_namespace: String,
    /// The `MutatingWebhookConfiguration` whose `caBundle` jobtrace keeps.
    #[arg(
        long,
        env = "JOBTRACE_WEBHOOK_CONFIGURATION",
        default_value = "jobtrace"
    )]
    pub webhook_configuration: String,
    /// DNS names (or IP addresses) of the serving certificate, comma-separated: the Service's
    /// `<name>.<namespace>.svc` at least.
    #[arg(long = "cert-name", env = "JOBTRACE_CERT_NAMES", value_delimiter = ',')]
    pub cert_names: Vec<String>,
    /// Lifetime of a serving certificate; it is renewed with a third of it left.
    #[arg(long, env = "JOBTRACE_CERT_VALIDITY", default_value = "90d", value_parser = duration)]
    pub cert_validity: Duration,
    /// Lifetime of a CA; a new one is trusted alongside it with a third of it left.
    #[arg(long, env = "JOBTRACE_CA_VALIDITY", default_value = "3650d", value_parser = duration)]
    pub ca_validity: Duration,
    /// Longest time between two checks of the Secret and the `caBundle` (changes to either are
    /// seen at once through watches).
    #[arg(long, env = "JOBTRACE_CERT_RESYNC", default_value = "5m", value_parser = duration)]
    pub cert_resync: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    /// Namespace of the Lease that elects the one replica that exports.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of that Lease.
    #[arg(long, default_value = "jobtrace-controller")]
    pub lease_name: String,
    /// The Deployment (in the Lease's namespace) that runs the replicas: the leader makes it the
    /// Lease's owner, so that the Lease goes with it (the chart sets it; empty: none).
    #[arg(long, env = "JOBTRACE_LEASE_OWNER", default_value = "")]
    pub lease_owner: String,
    /// This replica's identity in the Lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
    /// Export without electing a leader (a single replica, or tests).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Watch only this namespace (default: all namespaces). The webhook should serve no other:
    /// a Job it traces and holds elsewhere is never exported nor released.
    #[arg(long, env = "JOBTRACE_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Keep the status of the `JobTracePolicy` objects (of `--watch-namespace`, or all) while
    /// exporting. `jobtrace run --policies=false` turns it off too.
    #[arg(long, env = "JOBTRACE_POLICY_STATUS", default_value_t = true, action = clap::ArgAction::Set)]
    pub policy_status: bool,
    /// How long a Job held for export (`--hold-for-export`) and being deleted waits for its
    /// spans to be exported at most, counted from its deletion or from when this controller first
    /// saw it, whichever is later; past it the Job is released (counted in
    /// `jobtrace_export_holds_expired_total`) and its spans stay queued, exported when the
    /// collector takes them.
    #[arg(long, env = "JOBTRACE_HOLD_TIMEOUT", default_value = "10m", value_parser = duration)]
    pub hold_timeout: Duration,
    /// Record a `TraceExported` Event, with the trace id, on each exported Job. Each is one more
    /// write to the apiserver per Job; the Job's `jobtrace.dev/trace-id` and
    /// `jobtrace.dev/exported` annotations say as much at no cost.
    #[arg(long, env = "JOBTRACE_RECORD_EVENTS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub record_events: bool,
    /// The largest OTLP request sent, in bytes of encoded protobuf (before compression): a batch
    /// larger goes in several. Keep it under the collector's receive limit (4 MiB by default).
    #[arg(long, env = "JOBTRACE_MAX_REQUEST_BYTES", default_value_t = crate::k8s::otlp::DEFAULT_MAX_REQUEST_BYTES as u64, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_request_bytes: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ControllerCommand {
    #[command(flatten)]
    pub controller: ControllerArgs,
    /// Pods may be held for export (the webhook's `--hold-pods`): watch the traced pods' metadata
    /// too, to release a held pod that is untraced or whose deletion waited `--hold-timeout`.
    #[arg(long, env = "JOBTRACE_HOLD_PODS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub hold_pods: bool,
    /// Address of the metrics port (plain HTTP): /healthz, /readyz, /syncz and /metrics.
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

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::time::Duration;

    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn a_certificate_source_is_required_and_only_one() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["jobtrace"][..], args].concat());
        let missing = parse(&["webhook"]).unwrap_err().to_string();
        assert!(
            missing.contains("--tls-cert-file") && missing.contains("--cert-secret"),
            "{missing}"
        );
        assert!(
            parse(&[
                "webhook",
                "--cert-secret",
                "s",
                "--tls-cert-file",
                "c",
                "--tls-key-file",
                "k"
            ])
            .is_err()
        );
        let ok = parse(&[
            "run",
            "--cert-secret",
            "jobtrace-tls",
            "--cert-name",
            "a.b.svc,127.0.0.1",
        ])
        .unwrap();
        let Command::Run(run) = ok.command else {
            panic!()
        };
        assert_eq!(run.webhook.certs.cert_names, ["a.b.svc", "127.0.0.1"]);
        assert!(parse(&["--self-tracing-ratio", "1.5", "run", "--cert-secret", "s"]).is_err());
    }

    fn args(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn trace_takes_a_job_a_namespace_and_where_its_trace_is() {
        let Command::Trace(trace) = Cli::try_parse_args(args(&["jobtrace", "trace", "nightly"]))
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(trace.job, "nightly");
        assert_eq!(trace.namespace, None);
        assert_eq!(trace.query_url, "http://127.0.0.1:16686");
        assert_eq!(trace.url_template, None);
        assert_eq!(trace.wait, Duration::ZERO);
        let Command::Trace(trace) = Cli::try_parse_args(args(&[
            "jobtrace",
            "trace",
            "-n",
            "demo",
            "nightly",
            "--query-url",
            "http://jaeger:16686",
            "--url-template",
            "http://127.0.0.1:8000/traces/{trace_id}",
            "--wait",
            "30s",
        ]))
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(trace.namespace.as_deref(), Some("demo"));
        assert_eq!(trace.query_url, "http://jaeger:16686");
        assert_eq!(
            trace.url_template.as_deref(),
            Some("http://127.0.0.1:8000/traces/{trace_id}")
        );
        assert_eq!(trace.wait, Duration::from_secs(30));
        let no_placeholder = Cli::try_parse_args(args(&[
            "jobtrace",
            "trace",
            "nightly",
            "--url-template",
            "http://127.0.0.1:16686/trace/",
        ]))
        .unwrap_err();
        assert!(
            no_placeholder.to_string().contains("no {trace_id}"),
            "{no_placeholder}"
        );
        assert!(Cli::try_parse_args(args(&["jobtrace", "trace"])).is_err());
    }

    #[test]
    fn the_largest_request_is_3_mib_unless_set_and_never_below_1_kib() {
        let controller = |extra: &[&str]| {
            let mut argv = vec!["jobtrace", "controller"];
            argv.extend(extra);
            Cli::try_parse_args(args(&argv)).map(|cli| match cli.command {
                Command::Controller(c) => c.controller.max_request_bytes,
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(controller(&[]).unwrap(), 3 * 1024 * 1024);
        assert_eq!(
            controller(&["--max-request-bytes", "1048576"]).unwrap(),
            1_048_576
        );
        assert!(controller(&["--max-request-bytes", "512"]).is_err());
        assert!(controller(&["--max-request-bytes", "3MiB"]).is_err());
    }
}
