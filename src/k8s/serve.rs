//! Serving: the HTTPS webhook and the plain-HTTP metrics port on sockets bound up front, the
//! serving certificate kept current, and a graceful stop: not ready first, keep serving for the
//! shutdown delay, then drain.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::k8s::controller::ControllerSync;
use crate::k8s::metrics::Metrics;
use crate::k8s::metrics_port::{self, PortState, Readiness};
use crate::k8s::selftrace::SelfTracer;
use crate::k8s::tls::ServingCertFiles;
use crate::k8s::webhook;

/// How long open connections get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);
/// How long the first request on a connection (or its headers) may take to arrive.
const IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] crate::k8s::tls::TlsError),
    #[error("can't listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the {server} server stopped: {source}")]
    Stopped {
        /// `webhook` or `metrics`.
        server: &'static str,
        source: std::io::Error,
    },
    #[error("certificates: {0}")]
    Certificate(#[from] crate::k8s::certs::Error),
}

impl ServeError {
    fn stopped(server: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Stopped { server, source }
    }
}

/// The webhook's listening sockets, bound before serving so that start-up errors come first and
/// tests can bind port 0.
pub struct Listeners {
    pub webhook: std::net::TcpListener,
    pub metrics: std::net::TcpListener,
}

/// A non-blocking listening socket, ready for tokio.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| ServeError::Listen { addr, source })
}

impl Listeners {
    pub fn bind(webhook: SocketAddr, metrics: SocketAddr) -> Result<Self, ServeError> {
        Ok(Self {
            webhook: bind(webhook)?,
            metrics: bind(metrics)?,
        })
    }
}

/// Where the serving certificate comes from.
pub enum TlsSource {
    /// PEM files, reread every `reload` (a mounted Secret, from cert-manager for instance).
    Files {
        files: ServingCertFiles,
        reload: Duration,
    },
    /// A Secret jobtrace manages itself, with the webhook configuration's `caBundle`.
    Managed(Box<crate::k8s::certs::CertificateKeeper>),
}

/// What the webhook server needs.
pub struct WebhookServer {
    pub listeners: Listeners,
    pub tls: TlsSource,
    pub metrics: Arc<Metrics>,
    /// What `/readyz` reports: this server's own state only.
    pub readiness: Arc<Readiness>,
    /// The controller's state for `/syncz`, when the process runs one beside the webhook.
    pub controller: Option<Arc<ControllerSync>>,
    pub tracer: Option<SelfTracer>,
    /// The cluster defaults and the policies admission decides with.
    pub policies: crate::k8s::policy::Policies,
    /// How long to keep serving, not ready, after the shutdown signal.
    pub shutdown_delay: Duration,
}

/// Loads the first certificate and starts keeping it current.
async fn serving_certificate(
    tls: TlsSource,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<Option<(RustlsConfig, tokio::task::JoinHandle<()>)>, ServeError> {
    match tls {
        TlsSource::Files { files, reload } => {
            let (config, cert) = files.load().await?;
            if let Some(expiry) = crate::k8s::certs::expiry(&cert) {
                metrics.certificate_expiry.set(expiry);
            }
            let watcher = tokio::spawn(files.watch(
                config.clone(),
                reload,
                metrics.certificate_expiry.clone(),
            ));
            Ok(Some((config, watcher)))
        }
        TlsSource::Managed(certificates) => {
            let Some(decision) = certificates.first(shutdown).await else {
                return Ok(None);
            };
            let config = crate::k8s::certs::load(&decision).await?;
            metrics.certificate_expiry.set(decision.cert_not_after);
            let keeper = tokio::spawn(certificates.run(config.clone(), decision, shutdown.clone()));
            Ok(Some((config, keeper)))
        }
    }
}

/// Serves the webhook until `shutdown` is cancelled; then reports not ready, keeps serving for
/// the shutdown delay, and drains open requests. The metrics port is up from the start (so
/// probes see why the webhook isn't ready yet) and stops last.
pub async fn webhook(server: WebhookServer, shutdown: CancellationToken) -> Result<(), ServeError> {
    let metrics_stop = CancellationToken::new();
    let metrics = metrics_port(
        server.listeners.metrics,
        PortState {
            metrics: server.metrics.clone(),
            readiness: server.readiness.clone(),
            controller: server.controller,
        },
        metrics_stop.clone(),
    )?;
    let outcome = async {
        let Some((config, keeper)) =
            serving_certificate(server.tls, &server.metrics, &shutdown).await?
        else {
            return Ok(());
        };
        // The socket listens since it was bound: connections wait in its backlog until served.
        server.readiness.set_serving();
        let handle = Handle::new();
        let drain = handle.clone();
        let readiness = server.readiness.clone();
        let delay = server.shutdown_delay;
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                readiness.set_stopping();
                tracing::info!(?delay, "shutting down: not ready, still serving");
                tokio::time::sleep(delay).await;
                tracing::info!("shutting down: draining open requests");
                drain.graceful_shutdown(Some(DRAIN));
            }
        });
        let mut https = axum_server::from_tcp_rustls(server.listeners.webhook, config)
            .map_err(ServeError::stopped("webhook"))?
            .handle(handle)
            .first_request_timeout(IDLE);
        https.http_builder().http1().header_read_timeout(Some(IDLE));
        let result = https
            .serve(
                webhook::traced_router(server.metrics, server.tracer, server.policies)
                    .into_make_service(),
            )
            .await
            .map_err(ServeError::stopped("webhook"));
        keeper.abort();
        result
    }
    .await;
    metrics_stop.cancel();
    outcome?;
    match metrics.await {
        Ok(Ok(())) | Err(_) => Ok(()),
        Ok(Err(e)) => Err(ServeError::stopped("metrics")(e)),
    }
}

/// Serves `/healthz`, `/readyz`, `/syncz` and `/metrics` until `shutdown`.
pub fn metrics_port(
    listener: std::net::TcpListener,
    port_state: PortState,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, ServeError> {
    let listener = TcpListener::from_std(listener).map_err(ServeError::stopped("metrics"))?;
    Ok(tokio::spawn(
        axum::serve(listener, metrics_port::router(port_state))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .into_future(),
    ))
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
    tracing::info!("shutdown signal received");
    shutdown.cancel();
}
