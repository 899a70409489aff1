//! Command-line interface of the `jobtrace` binary: the flags ([`flags`], [`policy`]), their
//! values ([`values`]), the name it answers to ([`plugin`]), the typed configuration each
//! command is given ([`config`]), and [`Cli::parse_and_run`], which runs the command.

pub mod config;
pub mod flags;
pub mod plugin;
pub mod policy;
pub mod values;

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands::{release, stamp, trace, webhook_config};
use crate::wiring::{self, ControllerConfig, RunConfig, WebhookConfig};

pub use flags::{
    CertArgs, CommonArgs, ControllerArgs, ControllerCommand, LogFormat, ReleaseArgs, RunArgs,
    StampArgs, TraceArgs, WebhookArgs, WebhookConfigArgs,
};
pub use plugin::{KUBECTL_PLUGIN, bin_name};
pub use policy::{CronJobsArg, PolicyArgs, RelationshipArg};
pub use values::duration;

/// Carries W3C trace context into Kubernetes Jobs and records their lifecycle as OTLP spans.
#[derive(Debug, Parser)]
#[command(name = "jobtrace", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub common: CommonArgs,
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
        if let Command::Stamp(args) = self.command {
            // A filter: stdout is the manifests', stderr its warnings; no logging, no network.
            return Ok(stamp::run(&stamp::Config::from_args(args))?);
        }
        if matches!(self.command, Command::Trace(_)) {
            // Its stdout is the tree's.
            trace::init_logging(&self.common.log_level);
        } else {
            crate::k8s::logging::init(&self.common.log_level, self.common.log_format)?;
        }
        rustls::crypto::ring::default_provider()
            .install_default()
            .map_err(|_| Error::CryptoProvider)?;
        let failed = |command| move |source| Error::Command { command, source };
        match self.command {
            Command::Webhook(args) => {
                let config =
                    WebhookConfig::from_args(args, &self.common).map_err(failed("webhook"))?;
                wiring::webhook(config).await.map_err(failed("webhook"))
            }
            Command::Controller(args) => {
                let config = ControllerConfig::from_args(args, &self.common);
                wiring::controller(config)
                    .await
                    .map_err(failed("controller"))
            }
            Command::Run(args) => {
                let config = RunConfig::from_args(args, &self.common).map_err(failed("run"))?;
                wiring::run(config).await.map_err(failed("run"))
            }
            Command::WebhookConfig(args) => {
                let config = webhook_config::Config::from_args(args);
                print!("{}", webhook_config::webhook_config_yaml(&config)?);
                Ok(())
            }
            Command::Crds => {
                print!("{}", crate::core::policy::crd_yaml());
                Ok(())
            }
            Command::Trace(args) => Ok(trace::run(trace::Config::from_args(args)).await?),
            Command::Stamp(_) => unreachable!("stamp runs before the set-up"),
            Command::Release(args) => Ok(release::run(&release::Config::from_args(args)).await?),
        }
    }
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
