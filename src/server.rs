//! Running the servers: the HTTPS webhook and the plain-HTTP operations port, stopped gracefully.

use std::future::IntoFuture;
use std::net::SocketAddr;
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
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the {0} server stopped: {1}")]
    Stopped(&'static str, std::io::Error),
}

/// The webhook's listening sockets, bound before serving so that start-up errors come first and
/// tests can bind port 0.
pub struct Listeners {
    pub webhook: std::net::TcpListener,
    pub admin: std::net::TcpListener,
}

impl Listeners {
    pub fn bind(webhook: SocketAddr, admin: SocketAddr) -> Result<Self, ServeError> {
        let bind = |addr| {
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| ServeError::Listen { addr, source })?;
            Ok::<_, ServeError>(listener)
        };
        Ok(Self {
            webhook: bind(webhook)?,
            admin: bind(admin)?,
        })
    }
}

/// Serves the webhook until `shutdown` is cancelled, then drains open requests.
pub async fn webhook(
    listeners: Listeners,
    tls: TlsFiles,
    tls_reload: Duration,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let config = tls.load().await?;
    readiness.set_tls_loaded();
    let watcher = tokio::spawn(tls.watch(config.clone(), tls_reload));

    let admin_listener =
        TcpListener::from_std(listeners.admin).map_err(|e| ServeError::Stopped("metrics", e))?;
    let admin = tokio::spawn(
        axum::serve(admin_listener, admin::router(metrics.clone(), readiness))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    let handle = Handle::new();
    let drain = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        drain.graceful_shutdown(Some(DRAIN));
    });

    let mut server = axum_server::from_tcp_rustls(listeners.webhook, config)
        .map_err(|e| ServeError::Stopped("webhook", e))?
        .handle(handle)
        .first_request_timeout(IDLE);
    server
        .http_builder()
        .http1()
        .header_read_timeout(Some(IDLE));
    let outcome = server
        .serve(webhook::router(metrics).into_make_service())
        .await
        .map_err(|e| ServeError::Stopped("webhook", e));
    watcher.abort();
    outcome?;
    match admin.await {
        Ok(Ok(())) | Err(_) => Ok(()),
        Ok(Err(e)) => Err(ServeError::Stopped("metrics", e)),
    }
}

/// `jobtrace webhook`: binds, logs where, and serves until a signal.
pub async fn run_webhook(args: WebhookArgs) -> Result<(), ServeError> {
    let listeners = Listeners::bind(args.listen, args.metrics_listen)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    tracing::info!(listen = %args.listen, metrics = %args.metrics_listen, "webhook serving");
    let tls = TlsFiles {
        cert: args.tls_cert_file,
        key: args.tls_key_file,
    };
    webhook(
        listeners,
        tls,
        Duration::from_secs(args.tls_reload_seconds),
        Arc::default(),
        Arc::default(),
        shutdown,
    )
    .await
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
