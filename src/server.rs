//! Running the servers: the HTTPS webhook and the plain-HTTP operations port, stopped gracefully.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness};
use crate::cli::{ControllerArgs, ControllerCommand, RunArgs, WebhookArgs};
use crate::controller::{self, Context};
use crate::export::{Exporter, ExporterConfig};
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
    #[error("no Kubernetes client (KUBECONFIG or in-cluster configuration): {0}")]
    Kube(#[from] kube::Error),
    #[error("OTLP exporter configuration: {0}")]
    ExporterConfig(#[from] crate::export::ConfigError),
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] crate::export::ExportError),
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
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

    let admin = serve_admin(
        listeners.admin,
        metrics.clone(),
        readiness,
        shutdown.clone(),
    )?;
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

/// Serves `/healthz`, `/readyz` and `/metrics` until `shutdown`.
pub fn serve_admin(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, ServeError> {
    let listener =
        TcpListener::from_std(listener).map_err(|e| ServeError::Stopped("metrics", e))?;
    Ok(tokio::spawn(
        axum::serve(listener, admin::router(metrics, readiness))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .into_future(),
    ))
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

/// Everything the controller needs, from the environment and the flags.
async fn controller_context(
    args: &ControllerArgs,
    metrics: Arc<Metrics>,
) -> Result<Arc<Context>, ServeError> {
    let client = kube::Client::try_default().await?;
    let config = ExporterConfig::from_env(|k| std::env::var(k).ok())?;
    tracing::info!(endpoint = %config.endpoint, protocol = ?config.protocol, "exporting spans over OTLP");
    let exporter = Exporter::new(config)?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "jobtrace".to_owned());
    let instance = args.instance.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("jobtrace-{:08x}", rand::random::<u32>()))
    });
    Ok(Arc::new(Context {
        client,
        exporter,
        metrics,
        resource: vec![
            ("service.name", service),
            ("service.version", env!("CARGO_PKG_VERSION").to_owned()),
            ("service.instance.id", instance.clone()),
        ],
        instance,
        namespace: args.watch_namespace.clone(),
    }))
}

async fn export(
    context: Arc<Context>,
    args: &ControllerArgs,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if args.no_leader_election {
        controller::run(context, shutdown).await;
        Ok(())
    } else {
        Ok(
            controller::run_as_leader(context, &args.lease_namespace, &args.lease_name, shutdown)
                .await?,
        )
    }
}

/// `jobtrace controller`: exports spans, with the operations port, until a signal.
pub async fn run_controller(command: ControllerCommand) -> Result<(), ServeError> {
    let admin = std::net::TcpListener::bind(command.metrics_listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| ServeError::Listen {
            addr: command.metrics_listen,
            source,
        })?;
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    readiness.set_tls_loaded();
    let context = controller_context(&command.controller, metrics.clone()).await?;
    let admin = serve_admin(admin, metrics, readiness, shutdown.clone())?;
    export(context, &command.controller, shutdown).await?;
    let _ = admin.await;
    Ok(())
}

/// `jobtrace run`: the webhook and the controller, sharing the operations port and the metrics.
pub async fn run_all(args: RunArgs) -> Result<(), ServeError> {
    let listeners = Listeners::bind(args.webhook.listen, args.webhook.metrics_listen)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    let metrics = Arc::new(Metrics::default());
    let context = controller_context(&args.controller, metrics.clone()).await?;
    let tls = TlsFiles {
        cert: args.webhook.tls_cert_file.clone(),
        key: args.webhook.tls_key_file.clone(),
    };
    tracing::info!(listen = %args.webhook.listen, metrics = %args.webhook.metrics_listen, "webhook serving");
    let exporting = tokio::spawn({
        let shutdown = shutdown.clone();
        let controller = args.controller.clone();
        async move { export(context, &controller, shutdown).await }
    });
    let served = webhook(
        listeners,
        tls,
        Duration::from_secs(args.webhook.tls_reload_seconds),
        metrics,
        Arc::default(),
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    let exported = exporting.await.unwrap_or(Ok(()));
    served.and(exported)
}
