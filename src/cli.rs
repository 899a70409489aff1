//! Command-line interface of the `jobtrace` binary: the flags, and [`Cli::parse_and_run`], which
//! hands each command its part of them.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Carries W3C trace context into Kubernetes Jobs and records their lifecycle as OTLP spans.
#[derive(Debug, Parser)]
#[command(name = "jobtrace", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The name kubectl finds jobtrace by, as a plugin, on `PATH`: `kubectl jobtrace ...` runs
/// `kubectl-jobtrace ...` (a symlink to, or a copy of, the binary).
pub const KUBECTL_PLUGIN: &str = "kubectl-jobtrace";

/// The name help and errors give the command, from the name it was run by: `kubectl jobtrace`
/// when run as the kubectl plugin; otherwise clap's, the file name it was run by.
pub fn bin_name(argv0: Option<&OsStr>) -> Option<&'static str> {
    let stem = Path::new(argv0?).file_stem()?;
    (stem == KUBECTL_PLUGIN).then_some("kubectl jobtrace")
}

impl Cli {
    /// Parses `args`, the first being the name the binary was run by.
    pub fn try_parse_args(args: Vec<OsString>) -> Result<Self, clap::Error> {
        let mut command = Self::command();
        if let Some(name) = bin_name(args.first().map(OsString::as_os_str)) {
            command = command.bin_name(name);
        }
        let mut matches = command.try_get_matches_from_mut(args)?;
        Self::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command))
    }

    /// Parses the process's arguments; on an error, or for `--help`, prints and exits.
    pub fn parse_args() -> Self {
        Self::try_parse_args(std::env::args_os().collect()).unwrap_or_else(|e| e.exit())
    }
}

/// Why `jobtrace` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Logging(#[from] crate::k8s::logging::LoggingError),
    #[error("another TLS crypto provider is already installed")]
    CryptoProvider,
    #[error(transparent)]
    WebhookConfig(#[from] crate::commands::webhook_config::WebhookConfigError),
    /// `jobtrace trace` printed no tree; [`Cli::parse_and_run`] prints it as one line and exits
    /// with its own code.
    #[error(transparent)]
    Trace(#[from] crate::commands::trace::Failure),
    /// `jobtrace stamp` printed nothing: one line on stderr, exit code 1.
    #[error(transparent)]
    Stamp(#[from] crate::commands::stamp::StampError),
    #[error(transparent)]
    Release(#[from] crate::commands::release::ReleaseError),
    /// `command` is the subcommand: `webhook`, `controller` or `run`.
    #[error("{command}")]
    Command {
        command: &'static str,
        source: crate::wiring::CommandError,
    },
}

impl Cli {
    /// Parses the command line (as `kubectl jobtrace` when run as the kubectl plugin) and runs the
    /// subcommand. A failure of `jobtrace trace` is one line on stderr and its exit code.
    pub async fn parse_and_run() -> Result<(), Error> {
        match Self::parse_args().run().await {
            Err(Error::Trace(failure)) => {
                eprintln!("error: {failure}");
                std::process::exit(failure.exit_code().into());
            }
            Err(Error::Stamp(failure)) => {
                eprintln!("error: {failure}");
                std::process::exit(1);
            }
            done => done,
        }
    }

    /// Sets up logging and the TLS crypto provider, then runs the subcommand.
    pub async fn run(self) -> Result<(), Error> {
        if let Command::Stamp(args) = &self.command {
            // A filter: stdout is the manifests', stderr its warnings; no logging, no network.
            return Ok(crate::commands::stamp::run(args)?);
        }
        if matches!(self.command, Command::Trace(_)) {
            // Its stdout is the tree's.
            crate::commands::trace::init_logging(&self.common);
        } else {
            crate::k8s::logging::init(&self.common)?;
        }
        rustls::crypto::ring::default_provider()
            .install_default()
            .map_err(|_| Error::CryptoProvider)?;
        let failed = |command| move |source| Error::Command { command, source };
        match self.command {
            Command::Webhook(args) => crate::wiring::webhook(args, self.common)
                .await
                .map_err(failed("webhook")),
            Command::Controller(args) => crate::wiring::controller(args, self.common)
                .await
                .map_err(failed("controller")),
            Command::Run(args) => crate::wiring::run(args, self.common)
                .await
                .map_err(failed("run")),
            Command::WebhookConfig(args) => {
                print!(
                    "{}",
                    crate::commands::webhook_config::webhook_config_yaml(&args)?
                );
                Ok(())
            }
            Command::Crds => {
                print!("{}", crate::core::policy::crd_yaml());
                Ok(())
            }
            Command::Trace(args) => Ok(crate::commands::trace::run(args).await?),
            Command::Stamp(_) => unreachable!("stamp runs before the set-up"),
            Command::Release(args) => Ok(crate::commands::release::run(&args).await?),
        }
    }
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for log pipelines.
    Json,
}

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

fn ratio(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{value:?} is not a number from 0 to 1")),
    }
}

/// Parses a duration such as `90d`, `12h`, `15m`, `30s` or `500ms`.
pub fn duration(value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration such as 90d, 12h, 15m or 30s"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{value:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            ));
        }
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{value:?} is too long"))
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
    /// Print the `CustomResourceDefinition`s jobtrace reads (`JobTracePolicy`), as YAML.
    Crds,
    /// Print a Job's trace as a tree, read from a Jaeger-compatible query API.
    ///
    /// Exit codes: 3 the Job is not found, 4 it is not traced, 5 its trace is not found (after
    /// `--wait`), 1 any other failure, 2 a usage error.
    Trace(TraceArgs),
    /// Write the trace context of the environment (`TRACEPARENT`, `TRACESTATE`, `BAGGAGE`) on
    /// the Jobs and CronJobs of manifests, for `kubectl create -f -`.
    ///
    /// Reads YAML or JSON (several documents, `List`s), writes them to stdout in the same format
    /// with the context as annotations (a CronJob's on its `jobTemplate`); other kinds are written
    /// as they came. Exit code 1, and nothing written, on invalid input or an invalid context.
    Stamp(StampArgs),
    /// Remove jobtrace's finalizer (`jobtrace.dev/export`) from every Job that holds it: for an
    /// uninstall (the chart's pre-delete hook runs it), or when no controller can run. Spans not
    /// exported yet are not exported.
    Release(ReleaseArgs),
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

fn url_template(value: &str) -> Result<String, String> {
    if value.contains("{trace_id}") {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} has no {{trace_id}} to replace"))
    }
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
    /// Address of the plain-HTTP server for /healthz, /readyz, /syncz and /metrics.
    #[arg(long, env = "JOBTRACE_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// On SIGTERM, how long to keep serving while reporting not ready (so the Service stops
    /// sending admissions here) before draining open requests.
    #[arg(long, env = "JOBTRACE_SHUTDOWN_DELAY", default_value = "5s", value_parser = duration)]
    pub shutdown_delay: Duration,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// The cluster-wide tracing settings: in force wherever no `JobTracePolicy` says otherwise.
#[derive(Debug, Clone, Args)]
#[allow(clippy::struct_excessive_bools)] // one per flag
pub struct PolicyArgs {
    /// Read `JobTracePolicy` objects (every replica keeps a watch-backed copy); with `false`, only
    /// these flags apply.
    #[arg(long, env = "JOBTRACE_POLICIES", default_value_t = true, action = clap::ArgAction::Set)]
    pub policies: bool,
    /// Keep the Jobs webhook's `matchConditions` in the webhook configuration
    /// (`--webhook-configuration`) in step with the policies: Jobs without context then reach the
    /// webhook only in namespaces where root traces are on.
    #[arg(long, env = "JOBTRACE_SYNC_MATCH_CONDITIONS")]
    pub sync_match_conditions: bool,
    /// Give Jobs without trace context a trace of their own, sampled at this ratio (0 to 1).
    /// Every Job then calls the webhook.
    #[arg(long, env = "JOBTRACE_ROOT_TRACES", value_parser = ratio)]
    pub root_traces: Option<f64>,
    /// How a Job's span relates to its creator's.
    #[arg(long, env = "JOBTRACE_RELATIONSHIP", value_enum, default_value_t = RelationshipArg::Child)]
    pub relationship: RelationshipArg,
    /// How the runs of CronJobs are traced.
    #[arg(long, env = "JOBTRACE_CRONJOBS", value_enum, default_value_t = CronJobsArg::NewTracePerRun)]
    pub cronjobs: CronJobsArg,
    /// Baggage keys never injected into containers (comma-separated).
    #[arg(long, env = "JOBTRACE_BAGGAGE_EXCLUDE", value_delimiter = ',')]
    pub baggage_exclude: Vec<String>,
    /// Give each pod attempt a span of its own.
    #[arg(long, env = "JOBTRACE_POD_SPANS", default_value_t = true, action = clap::ArgAction::Set)]
    pub pod_spans: bool,
    /// Set or extend `OTEL_RESOURCE_ATTRIBUTES` with the Kubernetes attributes.
    #[arg(long, env = "JOBTRACE_RESOURCE_ATTRIBUTES", default_value_t = true, action = clap::ArgAction::Set)]
    pub resource_attributes: bool,
    /// Read the trace context from the headers of the request that creates a Job when its
    /// annotations carry none (for creators whose HTTP client is instrumented). Every Job then
    /// calls the webhook.
    #[arg(long, env = "JOBTRACE_REQUEST_CONTEXT")]
    pub request_context: bool,
    /// Hold each traced, sampled Job with the finalizer `jobtrace.dev/export` until the
    /// controller has exported its spans (the chart turns it on). Only where a controller runs:
    /// nothing else removes the finalizer.
    #[arg(long, env = "JOBTRACE_HOLD_FOR_EXPORT", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub hold_for_export: bool,
    /// With `--hold-for-export`, hold each held Job's pods too (through its pod template), so
    /// that their spans, the parent of the Job's processes, survive a deletion before their
    /// export (`ttlSecondsAfterFinished: 0` deletes the pods first). Costs one write per pod (the
    /// release); needs the `patch` verb on pods.
    #[arg(long, env = "JOBTRACE_HOLD_PODS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub hold_pods: bool,
    /// Job labels copied to Job spans as `k8s.job.label.<key>` (comma-separated keys).
    #[arg(long, env = "JOBTRACE_JOB_LABELS", value_delimiter = ',')]
    pub job_labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RelationshipArg {
    Child,
    Link,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CronJobsArg {
    #[value(name = "newTracePerRun")]
    NewTracePerRun,
    Child,
    Off,
}

impl PolicyArgs {
    /// The settings these flags give.
    pub fn defaults(&self) -> crate::core::policy::Defaults {
        use crate::core::policy::{CronJobMode, Defaults, KeyFilter, Relationship};
        Defaults {
            root_traces: self.root_traces,
            relationship: match self.relationship {
                RelationshipArg::Child => Relationship::Child,
                RelationshipArg::Link => Relationship::Link,
            },
            cron_jobs: match self.cronjobs {
                CronJobsArg::NewTracePerRun => CronJobMode::NewTracePerRun,
                CronJobsArg::Child => CronJobMode::Child,
                CronJobsArg::Off => CronJobMode::Off,
            },
            baggage: KeyFilter::excluding(self.baggage_exclude.iter().cloned()),
            containers: KeyFilter::default(),
            pod_spans: self.pod_spans,
            resource_attributes: self.resource_attributes,
            job_labels: self.job_labels.clone(),
            request_context: self.request_context,
            hold_for_export: self.hold_for_export,
            hold_pods: self.hold_pods,
        }
    }
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
    /// Address of the plain-HTTP server for /healthz, /readyz, /syncz and /metrics.
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
    use super::*;

    #[test]
    fn durations_in_every_unit_and_clear_refusals() {
        assert_eq!(duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(duration("5x").unwrap_err().contains("unknown unit \"x\""));
        assert!(duration("d").unwrap_err().contains("is not a duration"));
        assert!(duration("99999999999999999999d").is_err());
        assert!(
            duration("999999999999999999d")
                .unwrap_err()
                .contains("too long")
        );
    }

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

    #[test]
    fn policy_flags_give_the_cluster_defaults() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from([&["jobtrace", "webhook", "--cert-secret", "s"][..], args].concat())
        };
        let Command::Webhook(plain) = parse(&[]).unwrap().command else {
            panic!()
        };
        assert_eq!(
            plain.policy.defaults(),
            crate::core::policy::Defaults::default()
        );
        assert!(plain.policy.policies);
        let Command::Webhook(set) = parse(&[
            "--root-traces",
            "0.25",
            "--relationship",
            "link",
            "--cronjobs",
            "off",
            "--baggage-exclude",
            "user.email,session",
            "--pod-spans",
            "false",
            "--resource-attributes",
            "false",
            "--job-labels",
            "team,app",
            "--policies",
            "false",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        let defaults = set.policy.defaults();
        assert_eq!(defaults.root_traces, Some(0.25));
        assert_eq!(
            defaults.relationship,
            crate::core::policy::Relationship::Link
        );
        assert_eq!(defaults.cron_jobs, crate::core::policy::CronJobMode::Off);
        assert_eq!(
            defaults.baggage,
            crate::core::policy::KeyFilter::excluding(["user.email", "session"])
        );
        assert!(!defaults.pod_spans && !defaults.resource_attributes);
        assert_eq!(defaults.job_labels, ["team", "app"]);
        assert!(!set.policy.policies);
        assert!(parse(&["--root-traces", "2"]).is_err());
        assert!(parse(&["--cronjobs", "sometimes"]).is_err());
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

    #[test]
    fn as_the_kubectl_plugin_help_names_kubectl_jobtrace() {
        assert_eq!(
            bin_name(Some(OsStr::new("/home/u/.local/bin/kubectl-jobtrace"))),
            Some("kubectl jobtrace")
        );
        assert_eq!(
            bin_name(Some(OsStr::new("kubectl-jobtrace.exe"))),
            Some("kubectl jobtrace")
        );
        assert_eq!(bin_name(Some(OsStr::new("target/debug/jobtrace"))), None);
        assert_eq!(bin_name(None), None);
        let help = |argv0: &str| {
            let e = Cli::try_parse_args(args(&[argv0, "trace", "--help"])).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
            e.to_string()
        };
        let plugin = help("/usr/local/bin/kubectl-jobtrace");
        assert!(
            plugin.contains("Usage: kubectl jobtrace trace [OPTIONS] <JOB>"),
            "{plugin}"
        );
        let binary = help("target/debug/jobtrace");
        assert!(
            binary.contains("Usage: jobtrace trace [OPTIONS] <JOB>"),
            "{binary}"
        );
        let usage = Cli::try_parse_args(args(&["kubectl-jobtrace", "trace"])).unwrap_err();
        assert!(
            usage.to_string().contains("kubectl jobtrace trace"),
            "{usage}"
        );
    }
}
