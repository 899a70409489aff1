//! Running the servers: the HTTPS webhook and the plain-HTTP operations port, stopped gracefully.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness};
use crate::cli::{CommonArgs, ControllerArgs, ControllerCommand, RunArgs, WebhookArgs};
use crate::controller::{self, Context};
use crate::export::{Exporter, ExporterConfig};
use crate::metrics::Metrics;
use crate::selftrace::SelfTracer;
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
    #[error("certificates: {0}")]
    Certs(String),
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
}

/// The webhook's listening sockets, bound before serving so that start-up errors come first and
/// tests can bind port 0.
pub struct Listeners {
    pub webhook: std::net::TcpListener,
    pub admin: std::net::TcpListener,
}

/// A non-blocking listening socket, ready for tokio.
fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| ServeError::Listen { addr, source })
}

impl Listeners {
    pub fn bind(webhook: SocketAddr, admin: SocketAddr) -> Result<Self, ServeError> {
        Ok(Self {
            webhook: bind(webhook)?,
            admin: bind(admin)?,
        })
    }
}

/// Where the serving certificate comes from.
pub enum TlsSource {
    /// PEM files, reread every `reload` (a mounted Secret, from cert-manager for instance).
    Files { files: TlsFiles, reload: Duration },
    /// A Secret jobtrace manages itself, with the webhook configuration's `caBundle`.
    Managed(Box<crate::certs::Manager>),
}

/// What the webhook server needs.
pub struct Serve {
    pub listeners: Listeners,
    pub tls: TlsSource,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub tracer: Option<SelfTracer>,
    /// The cluster defaults and the policies admission decides with.
    pub policies: crate::policy::Policies,
    /// How long to keep serving, not ready, after the shutdown signal.
    pub shutdown_delay: Duration,
}

/// The policies admission decides with: the flags' defaults, and a watch of the `JobTracePolicy`
/// objects (kept by a task until `shutdown`) unless turned off or no client can be had.
async fn policies(
    args: &crate::cli::PolicyArgs,
    shutdown: &CancellationToken,
) -> crate::policy::Policies {
    let defaults = args.defaults();
    if !args.policies {
        return crate::policy::Policies::defaults_only(defaults);
    }
    match kube::Client::try_default().await {
        Ok(client) => {
            let (policies, keep) = crate::policy::Policies::watch(client, None, defaults);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = keep => {}
                    () = shutdown.cancelled() => {}
                }
            });
            policies
        }
        Err(e) => {
            tracing::warn!(error = %e, "no Kubernetes client: JobTracePolicies are not read, the cluster defaults apply");
            crate::policy::Policies::defaults_only(defaults)
        }
    }
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
            if let Some(expiry) = crate::certs::expiry(&cert) {
                metrics.certificate_expiry.set(expiry);
            }
            let watcher = tokio::spawn(files.watch(
                config.clone(),
                reload,
                metrics.certificate_expiry.clone(),
            ));
            Ok(Some((config, watcher)))
        }
        TlsSource::Managed(manager) => {
            let Some(decision) = manager.first(shutdown).await else {
                return Ok(None);
            };
            let config = crate::certs::load(&decision)
                .await
                .map_err(|e| ServeError::Certs(e.to_string()))?;
            metrics.certificate_expiry.set(decision.cert_not_after);
            let keeper = tokio::spawn(manager.run(config.clone(), decision, shutdown.clone()));
            Ok(Some((config, keeper)))
        }
    }
}

/// Serves the webhook until `shutdown` is cancelled; then reports not ready, keeps serving for
/// the shutdown delay, and drains open requests. The operations port is up from the start (so
/// probes see why the webhook isn't ready yet) and stops last.
pub async fn webhook(serve: Serve, shutdown: CancellationToken) -> Result<(), ServeError> {
    let admin_stop = CancellationToken::new();
    let admin = serve_admin(
        serve.listeners.admin,
        serve.metrics.clone(),
        serve.readiness.clone(),
        admin_stop.clone(),
    )?;
    let outcome = async {
        let Some((config, keeper)) =
            serving_certificate(serve.tls, &serve.metrics, &shutdown).await?
        else {
            return Ok(());
        };
        serve.readiness.set_tls_loaded();
        let handle = Handle::new();
        let drain = handle.clone();
        let readiness = serve.readiness.clone();
        let delay = serve.shutdown_delay;
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
        let mut server = axum_server::from_tcp_rustls(serve.listeners.webhook, config)
            .map_err(|e| ServeError::Stopped("webhook", e))?
            .handle(handle)
            .first_request_timeout(IDLE);
        server
            .http_builder()
            .http1()
            .header_read_timeout(Some(IDLE));
        let result = server
            .serve(
                webhook::traced_router(serve.metrics, serve.tracer, serve.policies)
                    .into_make_service(),
            )
            .await
            .map_err(|e| ServeError::Stopped("webhook", e));
        keeper.abort();
        result
    }
    .await;
    admin_stop.cancel();
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

/// The certificate source the flags ask for.
async fn tls_source(
    args: &WebhookArgs,
    metrics: &Arc<Metrics>,
    tracer: Option<&SelfTracer>,
) -> Result<TlsSource, ServeError> {
    if let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_key_file) {
        return Ok(TlsSource::Files {
            files: TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            },
            reload: Duration::from_secs(args.tls_reload_seconds),
        });
    }
    let certs = &args.certs;
    let secret = certs.cert_secret.clone().ok_or_else(|| {
        ServeError::Certs("give --tls-cert-file and --tls-key-file, or --cert-secret".to_owned())
    })?;
    if certs.cert_names.is_empty() {
        return Err(ServeError::Certs(
            "--cert-secret needs --cert-name (the Service's <name>.<namespace>.svc)".to_owned(),
        ));
    }
    let seconds = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if certs.cert_validity < Duration::from_secs(3) || certs.ca_validity <= certs.cert_validity {
        return Err(ServeError::Certs(
            "--cert-validity must be 3 s or more and shorter than --ca-validity".to_owned(),
        ));
    }
    let settings = crate::certs::Settings {
        namespace: certs.cert_namespace.clone(),
        secret,
        webhook_configuration: certs.webhook_configuration.clone(),
        policy: crate::certs::Policy {
            names: certs.cert_names.clone(),
            ca_validity_seconds: seconds(certs.ca_validity),
            cert_validity_seconds: seconds(certs.cert_validity),
        },
        resync: certs.cert_resync,
    };
    tracing::info!(secret = %settings.secret, namespace = %settings.namespace, configuration = %settings.webhook_configuration, "self-managed certificates");
    Ok(TlsSource::Managed(Box::new(crate::certs::Manager::new(
        kube::Client::try_default().await?,
        settings,
        metrics.clone(),
        tracer.cloned(),
    ))))
}

/// jobtrace's own spans, when the ratio asks for them: the tracer, and the task exporting them.
fn self_tracing(
    common: &CommonArgs,
    metrics: &Arc<Metrics>,
    resource: &[(&'static str, String)],
    shutdown: &CancellationToken,
) -> Result<(Option<SelfTracer>, Option<tokio::task::JoinHandle<()>>), ServeError> {
    if common.self_tracing_ratio <= 0.0 {
        return Ok((None, None));
    }
    let (tracer, spans) = SelfTracer::new(common.self_tracing_ratio, metrics.clone());
    let exporter = Exporter::new(ExporterConfig::from_env(|k| std::env::var(k).ok())?)?;
    let task = tokio::spawn(crate::selftrace::export(
        spans,
        exporter,
        resource.to_vec(),
        metrics.clone(),
        shutdown.clone(),
    ));
    Ok((Some(tracer), Some(task)))
}

/// The OTLP resource of everything jobtrace exports.
fn resource(instance: &str) -> Vec<(&'static str, String)> {
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "jobtrace".to_owned());
    vec![
        ("service.name", service),
        ("service.version", env!("CARGO_PKG_VERSION").to_owned()),
        ("service.instance.id", instance.to_owned()),
    ]
}

fn instance_name(given: Option<&String>) -> String {
    given.cloned().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("jobtrace-{:08x}", rand::random::<u32>()))
    })
}

/// `jobtrace webhook`: binds, logs where, and serves until a signal.
pub async fn run_webhook(args: WebhookArgs, common: CommonArgs) -> Result<(), ServeError> {
    let listeners = Listeners::bind(args.listen, args.metrics_listen)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    let metrics = Arc::new(Metrics::default());
    let (tracer, own) = self_tracing(
        &common,
        &metrics,
        &resource(&instance_name(None)),
        &shutdown,
    )?;
    let tls = tls_source(&args, &metrics, tracer.as_ref()).await?;
    let policies = policies(&args.policy, &shutdown).await;
    tracing::info!(listen = %args.listen, metrics = %args.metrics_listen, "webhook serving");
    let served = webhook(
        Serve {
            listeners,
            tls,
            metrics,
            readiness: Arc::default(),
            tracer,
            policies,
            shutdown_delay: args.shutdown_delay,
        },
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    if let Some(own) = own {
        let _ = own.await;
    }
    served
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

/// Everything the controller needs, from the environment and the flags.
async fn controller_context(
    args: &ControllerArgs,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    tracer: Option<SelfTracer>,
) -> Result<Arc<Context>, ServeError> {
    let client = kube::Client::try_default().await?;
    let config = ExporterConfig::from_env(|k| std::env::var(k).ok())?;
    tracing::info!(endpoint = %config.endpoint, protocol = ?config.protocol, "exporting spans over OTLP");
    let exporter = Exporter::new(config)?;
    let instance = instance_name(args.instance.as_ref());
    Ok(Arc::new(Context {
        client,
        exporter,
        metrics,
        resource: resource(&instance),
        instance,
        namespace: args.watch_namespace.clone(),
        readiness,
        tracer,
    }))
}

async fn export(
    context: Arc<Context>,
    args: &ControllerArgs,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if args.no_leader_election {
        context.metrics.leader.set(1);
        controller::run(context, shutdown).await;
        Ok(())
    } else {
        Ok(
            controller::run_as_leader(context, &args.lease_namespace, &args.lease_name, shutdown)
                .await?,
        )
    }
}

/// What `jobtrace controller` and `jobtrace run` share: the shutdown signal, metrics, readiness,
/// jobtrace's own spans, and the controller's context.
struct Started {
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    tracer: Option<SelfTracer>,
    /// The task exporting jobtrace's own spans.
    own: Option<tokio::task::JoinHandle<()>>,
    context: Arc<Context>,
}

async fn start_controller(
    args: &ControllerArgs,
    common: &CommonArgs,
) -> Result<Started, ServeError> {
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    readiness.set_controller_syncing();
    let instance = instance_name(args.instance.as_ref());
    let (tracer, own) = self_tracing(common, &metrics, &resource(&instance), &shutdown)?;
    let context =
        controller_context(args, metrics.clone(), readiness.clone(), tracer.clone()).await?;
    Ok(Started {
        shutdown,
        metrics,
        readiness,
        tracer,
        own,
        context,
    })
}

/// `jobtrace controller`: exports spans, with the operations port, until a signal; then exports
/// what is queued.
pub async fn run_controller(
    command: ControllerCommand,
    common: CommonArgs,
) -> Result<(), ServeError> {
    let admin = bind(command.metrics_listen)?;
    let started = start_controller(&command.controller, &common).await?;
    // No webhook here: nothing to load before being ready.
    started.readiness.set_tls_loaded();
    let admin_stop = CancellationToken::new();
    let admin = serve_admin(
        admin,
        started.metrics,
        started.readiness,
        admin_stop.clone(),
    )?;
    let exported = export(
        started.context,
        &command.controller,
        started.shutdown.clone(),
    )
    .await;
    started.shutdown.cancel();
    if let Some(own) = started.own {
        let _ = own.await;
    }
    admin_stop.cancel();
    let _ = admin.await;
    exported
}

/// `jobtrace run`: the webhook and the controller, sharing the operations port and the metrics.
pub async fn run_all(args: RunArgs, common: CommonArgs) -> Result<(), ServeError> {
    let listeners = Listeners::bind(args.webhook.listen, args.webhook.metrics_listen)?;
    let started = start_controller(&args.controller, &common).await?;
    let tls = tls_source(&args.webhook, &started.metrics, started.tracer.as_ref()).await?;
    let policies = policies(&args.webhook.policy, &started.shutdown).await;
    tracing::info!(listen = %args.webhook.listen, metrics = %args.webhook.metrics_listen, "webhook serving");
    let exporting = tokio::spawn({
        let shutdown = started.shutdown.clone();
        let controller = args.controller.clone();
        let context = started.context;
        async move { export(context, &controller, shutdown).await }
    });
    let served = webhook(
        Serve {
            listeners,
            tls,
            metrics: started.metrics,
            readiness: started.readiness,
            tracer: started.tracer,
            policies,
            shutdown_delay: args.webhook.shutdown_delay,
        },
        started.shutdown.clone(),
    )
    .await;
    started.shutdown.cancel();
    let exported = exporting.await.unwrap_or(Ok(()));
    if let Some(own) = started.own {
        let _ = own.await;
    }
    served.and(exported)
}
