//! Running the servers: the HTTPS webhook and the plain-HTTP operations port, stopped gracefully.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness};
use crate::cli::WebhookArgs;
use crate::metrics::Metrics;
use crate::tls::TlsFiles;
use crate::webhook;

/// How long open connections get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);
/// How long the first request on a connection (or its headers) may take to arrive.
const IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("can't listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the {0} server stopped: {1}")]
    Stopped(&'static str, std::io::Error),
}

/// Serves the webhook until `shutdown` is cancelled, then drains open requests.
pub async fn webhook(
    args: WebhookArgs,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let files = TlsFiles {
        cert: args.tls_cert_file,
        key: args.tls_key_file,
    };
    let config = files.load().await?;
    readiness.set_tls_loaded();
    tokio::spawn(files.watch(config.clone(), Duration::from_secs(args.tls_reload_seconds)));

    let admin_listener = TcpListener::bind(args.metrics_listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: args.metrics_listen,
            source,
        })?;
    let admin_router = admin::router(metrics.clone(), readiness);
    let admin = tokio::spawn(
        axum::serve(admin_listener, admin_router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    let handle = Handle::new();
    let drain = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        drain.graceful_shutdown(Some(DRAIN));
    });

    let listener =
        std::net::TcpListener::bind(args.listen).map_err(|source| ServeError::Listen {
            addr: args.listen,
            source,
        })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| ServeError::Stopped("webhook", e))?;
    tracing::info!(listen = %args.listen, metrics = %args.metrics_listen, "webhook serving");
    let mut server = axum_server::from_tcp_rustls(listener, config)
        .map_err(|e| ServeError::Stopped("webhook", e))?
        .handle(handle)
        .first_request_timeout(IDLE);
    server
        .http_builder()
        .http1()
        .header_read_timeout(Some(IDLE));
    server
        .serve(webhook::router(metrics).into_make_service())
        .await
        .map_err(|e| ServeError::Stopped("webhook", e))?;
    match admin.await {
        Ok(Ok(())) | Err(_) => Ok(()),
        Ok(Err(e)) => Err(ServeError::Stopped("metrics", e)),
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
pub async fn shutdown_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: draining open requests");
    shutdown.cancel();
}
