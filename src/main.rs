#![forbid(unsafe_code)]

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use jobtrace::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("another TLS crypto provider is already installed"))?;
    match cli.command {
        Command::Webhook(args) => {
            let shutdown = tokio_util::sync::CancellationToken::new();
            tokio::spawn(jobtrace::server::shutdown_on_signal(shutdown.clone()));
            jobtrace::server::webhook(args, Arc::default(), Arc::default(), shutdown)
                .await
                .context("webhook")
        }
    }
}
