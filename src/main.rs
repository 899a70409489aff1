#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use jobtrace::cli::{Cli, Command, LogFormat};
use jobtrace::registration::{Endpoint, Registration, webhook_configuration};

// The system allocator spends half the admission path in malloc and free; musl's is slower still.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(_) => tracing_subscriber::EnvFilter::try_new(&cli.common.log_level)
            .with_context(|| format!("log level {:?}", cli.common.log_level))?,
    };
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match cli.common.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("another TLS crypto provider is already installed"))?;
    match cli.command {
        Command::Webhook(args) => jobtrace::server::run_webhook(args, cli.common)
            .await
            .context("webhook"),
        Command::Controller(args) => jobtrace::server::run_controller(args, cli.common)
            .await
            .context("controller"),
        Command::Run(args) => jobtrace::server::run_all(args, cli.common)
            .await
            .context("run"),
        Command::WebhookConfig(args) => {
            let mut registration = Registration::new(Endpoint::Url(args.url), &args.namespace);
            if let Some(path) = args.ca_file {
                let ca = std::fs::read(&path)
                    .with_context(|| format!("reading the CA file {}", path.display()))?;
                registration.ca_bundle = Some(ca);
            }
            print!(
                "{}",
                serde_saphyr::to_string(&webhook_configuration(&registration))?
            );
            Ok(())
        }
    }
}
