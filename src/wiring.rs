//! Wiring: which tasks the long-running commands (`webhook`, `controller`, `run`) start, with
//! what. Each takes a typed configuration (built from the flags by `crate::cli::config`), which
//! becomes the webhook's certificate source, the controller's dependencies and the OTLP
//! resource; serving is [`crate::k8s::serve`]'s, exporting [`crate::k8s::controller`]'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::core::policy::TraceSettings;
use crate::k8s::controller::{self, ControllerSync, Deps};
use crate::k8s::metrics::Metrics;
use crate::k8s::metrics_port::{PortState, Readiness};
use crate::k8s::otlp::{Exporter, ExporterConfig, Resource};
use crate::k8s::selftrace::SelfTracer;
use crate::k8s::serve::{self, Listeners, ServeError, TlsSource, WebhookServer};
use crate::k8s::tls::ServingCertFiles;

/// Why a subcommand could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("no Kubernetes client (KUBECONFIG or in-cluster configuration): {0}")]
    Kube(#[from] kube::Error),
    #[error("OTLP exporter configuration: {0}")]
    ExporterConfig(#[from] crate::k8s::otlp::ConfigError),
    #[error("OTLP resource: {0}")]
    Resource(#[from] crate::k8s::otlp::ResourceError),
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] crate::k8s::otlp::BuildError),
    #[error("certificates: give --tls-cert-file and --tls-key-file, or --cert-secret")]
    NoCertificateSource,
    #[error("certificates: --cert-secret needs --cert-name (the Service's <name>.<namespace>.svc)")]
    NoCertificateNames,
    #[error("certificates: --cert-validity must be 3 s or more and shorter than --ca-validity")]
    CertificateValidity,
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
}

/// What `jobtrace webhook` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub certificates: Certificates,
    pub policies: PoliciesConfig,
    /// How long a stopping webhook keeps serving, not ready, before it drains.
    pub shutdown_delay: Duration,
    /// The share of admissions recorded as jobtrace's own spans; 0: none.
    pub self_tracing_ratio: f64,
}

/// Where the webhook's serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certificates {
    /// PEM files, read again every `reload`.
    Files {
        files: ServingCertFiles,
        reload: Duration,
    },
    /// Issued and kept by jobtrace, in Secrets ([`crate::k8s::certs`]).
    Managed(crate::k8s::certs::Settings),
}

/// Which settings admission decides with.
#[derive(Debug, Clone, PartialEq)]
pub struct PoliciesConfig {
    /// Read the `JobTracePolicy` objects; `false`: only `defaults` apply.
    pub read: bool,
    /// The cluster-wide settings, where no policy says otherwise.
    pub defaults: TraceSettings,
    /// Keep the Jobs webhook's `matchConditions` of the webhook configuration named
    /// `webhook_configuration` in step with the policies.
    pub sync_match_conditions: bool,
    pub webhook_configuration: String,
}

/// How the controller exports, in `jobtrace controller` and `jobtrace run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// The Lease electing the one replica that exports; `None`: export without an election.
    pub lease: Option<controller::LeaseSettings>,
    /// This replica's identity; `None`: the host name, or a random one.
    pub instance: Option<String>,
    /// Only this namespace, when set.
    pub watch_namespace: Option<String>,
    /// Keep the status of the `JobTracePolicy` objects.
    pub policy_status: bool,
    /// How long a held object being deleted waits for its export at most.
    pub hold_timeout: Duration,
    /// Record a `TraceExported` Event on each exported Job.
    pub record_events: bool,
    /// The largest OTLP request, in bytes of encoded protobuf.
    pub max_request_bytes: usize,
    /// Pods may be held for export too.
    pub hold_pods: bool,
}

/// What `jobtrace controller` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerConfig {
    pub export: ExportConfig,
    pub metrics_listen: SocketAddr,
    /// The share of exports recorded as jobtrace's own spans; 0: none.
    pub self_tracing_ratio: f64,
}

/// What `jobtrace run` runs with: the webhook's configuration, and how its controller exports
/// (the policies' status only where this webhook reads the policies).
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub webhook: WebhookConfig,
    pub export: ExportConfig,
}

/// The process's one Kubernetes client, shared by the controller, the certificate keeper and the
/// policies' watch. It is made when a task first needs it: a webhook serving certificate files
/// with the policies off runs without one.
#[derive(Default)]
struct KubeClient(tokio::sync::OnceCell<kube::Client>);

impl KubeClient {
    async fn get(&self) -> Result<kube::Client, kube::Error> {
        self.0
            .get_or_try_init(kube::Client::try_default)
            .await
            .cloned()
    }
}

/// The certificate source the configuration asks for.
async fn tls_source(
    certificates: &Certificates,
    client: &KubeClient,
    metrics: &Arc<Metrics>,
    tracer: Option<&SelfTracer>,
) -> Result<TlsSource, CommandError> {
    let settings = match certificates {
        Certificates::Files { files, reload } => {
            return Ok(TlsSource::Files {
                files: files.clone(),
                reload: *reload,
            });
        }
        Certificates::Managed(settings) => settings.clone(),
    };
    tracing::info!(secret = %settings.secret, namespace = %settings.namespace, configuration = %settings.webhook_configuration, "self-managed certificates");
    Ok(TlsSource::Managed(Box::new(
        crate::k8s::certs::CertificateKeeper::new(
            client.get().await?,
            settings,
            metrics.clone(),
            tracer.cloned(),
        ),
    )))
}

/// The policies admission decides with: the flags' defaults, and a watch of the `JobTracePolicy`
/// objects (kept by a task until `shutdown`) unless turned off or no client can be had. With
/// `--sync-match-conditions`, a task keeps the webhook configuration in step.
async fn policies(
    config: &PoliciesConfig,
    client: &KubeClient,
    shutdown: &CancellationToken,
) -> crate::k8s::policy::Policies {
    let defaults = config.defaults.clone();
    if !config.read {
        if config.sync_match_conditions {
            tracing::warn!("--sync-match-conditions does nothing with --policies=false");
        }
        return crate::k8s::policy::Policies::defaults_only(defaults);
    }
    match client.get().await {
        Ok(client) => {
            let (policies, keep) =
                crate::k8s::policy::Policies::watch(client.clone(), None, defaults);
            let stop = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = keep => {}
                    () = stop.cancelled() => {}
                }
            });
            if config.sync_match_conditions {
                tokio::spawn(crate::k8s::policy::match_conditions::keep_in_step(
                    client,
                    config.webhook_configuration.clone(),
                    policies.clone(),
                    shutdown.clone(),
                ));
            }
            policies
        }
        Err(e) => {
            tracing::warn!(error = %e, "no Kubernetes client: JobTracePolicies are not read, the cluster defaults apply");
            crate::k8s::policy::Policies::defaults_only(defaults)
        }
    }
}

/// jobtrace's own spans, when the ratio asks for them: the tracer, and the task exporting them,
/// with the exporter configuration and the resource `exporting` gives.
fn self_tracing(
    ratio: f64,
    metrics: &Arc<Metrics>,
    exporting: impl FnOnce() -> Result<Exporting, CommandError>,
    shutdown: &CancellationToken,
) -> Result<(Option<SelfTracer>, Option<tokio::task::JoinHandle<()>>), CommandError> {
    if ratio <= 0.0 {
        return Ok((None, None));
    }
    let (tracer, spans) = SelfTracer::new(ratio, metrics.clone());
    let (config, resource) = exporting()?;
    let exporter = Exporter::new(config)?;
    let task = tokio::spawn(crate::k8s::selftrace::export(
        spans,
        exporter,
        resource,
        metrics.clone(),
        shutdown.clone(),
    ));
    Ok((Some(tracer), Some(task)))
}

/// Where and how spans are exported, and the OTLP resource of everything jobtrace exports.
type Exporting = (ExporterConfig, Vec<(String, String)>);

/// The exporter's configuration and the resource of replica `instance`, from the environment; the
/// settings that have no effect are logged.
fn exporting_from_env(instance: &str) -> Result<Exporting, CommandError> {
    let config = ExporterConfig::from_env()?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let resource = Resource::from_env(instance)?;
    for key in &resource.overridden {
        tracing::warn!(
            "OTEL_RESOURCE_ATTRIBUTES: {key} is jobtrace's own; the given value is ignored"
        );
    }
    Ok((config, resource.attributes))
}

fn instance_name(given: Option<&String>) -> String {
    given.cloned().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("jobtrace-{:08x}", rand::random::<u32>()))
    })
}

/// `jobtrace webhook`: binds, logs where, and serves until a signal.
pub async fn webhook(config: WebhookConfig) -> Result<(), CommandError> {
    let listeners = Listeners::bind(config.listen, config.metrics_listen)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(serve::shutdown_on_signal(shutdown.clone()));
    let metrics = Arc::new(Metrics::default());
    let (tracer, self_export) = self_tracing(
        config.self_tracing_ratio,
        &metrics,
        || exporting_from_env(&instance_name(None)),
        &shutdown,
    )?;
    let client = KubeClient::default();
    let tls = tls_source(&config.certificates, &client, &metrics, tracer.as_ref()).await?;
    let policies = policies(&config.policies, &client, &shutdown).await;
    tracing::info!(listen = %config.listen, metrics = %config.metrics_listen, "webhook serving");
    let served = serve::webhook(
        WebhookServer {
            listeners,
            tls,
            metrics,
            readiness: Arc::default(),
            controller: None,
            tracer,
            policies,
            shutdown_delay: config.shutdown_delay,
        },
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    if let Some(task) = self_export {
        let _ = task.await;
    }
    Ok(served?)
}

/// Everything the controller needs, from the environment and the configuration.
fn controller_deps(
    export: &ExportConfig,
    client: kube::Client,
    (config, resource): Exporting,
    metrics: Arc<Metrics>,
    sync: Arc<ControllerSync>,
    tracer: Option<SelfTracer>,
) -> Result<Arc<Deps>, CommandError> {
    tracing::info!(
        endpoint = %config.endpoint,
        protocol = ?config.protocol,
        compression = ?config.compression,
        limits = ?config.limits,
        max_request_bytes = export.max_request_bytes,
        roots = ?config.tls.roots,
        client_certificate = ?config.tls.client.as_ref().map(|c| &c.certificate),
        "exporting spans over OTLP"
    );
    let exporter = Exporter::new(ExporterConfig {
        max_request_bytes: export.max_request_bytes,
        ..config
    })?;
    let instance = instance_name(export.instance.as_ref());
    Ok(Arc::new(Deps {
        client,
        exporter,
        metrics,
        resource,
        instance,
        namespace: export.watch_namespace.clone(),
        sync,
        tracer,
        policy_status: export.policy_status,
        hold_timeout: export.hold_timeout,
        hold_pods: export.hold_pods,
        record_events: export.record_events,
    }))
}

/// Exports until `shutdown`: as the leader when a Lease elects one, at once otherwise.
async fn export(
    deps: Arc<Deps>,
    lease: Option<&controller::LeaseSettings>,
    shutdown: CancellationToken,
) -> Result<(), CommandError> {
    if let Some(lease) = lease {
        Ok(controller::run_as_leader(deps, lease, shutdown).await?)
    } else {
        deps.metrics.leader.set(1);
        controller::run(deps, shutdown).await;
        Ok(())
    }
}

/// What `jobtrace controller` and `jobtrace run` share: the shutdown signal, metrics, the
/// controller's sync state, jobtrace's own spans, and the controller's dependencies.
struct Started {
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    /// For `/syncz` only: `/readyz` never waits on the controller.
    sync: Arc<ControllerSync>,
    tracer: Option<SelfTracer>,
    /// The task exporting jobtrace's own spans.
    self_export: Option<tokio::task::JoinHandle<()>>,
    deps: Arc<Deps>,
}

/// The controller's dependencies and what it shares with the rest of the process.
async fn start_controller(
    export: &ExportConfig,
    client: &KubeClient,
    self_tracing_ratio: f64,
) -> Result<Started, CommandError> {
    let shutdown = CancellationToken::new();
    tokio::spawn(serve::shutdown_on_signal(shutdown.clone()));
    let metrics = Arc::new(Metrics::default());
    let sync = Arc::new(ControllerSync::new(metrics.controller_listing.clone()));
    let instance = instance_name(export.instance.as_ref());
    let exporting = exporting_from_env(&instance)?;
    let (tracer, self_export) = self_tracing(
        self_tracing_ratio,
        &metrics,
        || Ok(exporting.clone()),
        &shutdown,
    )?;
    let deps = controller_deps(
        export,
        client.get().await?,
        exporting,
        metrics.clone(),
        sync.clone(),
        tracer.clone(),
    )?;
    Ok(Started {
        shutdown,
        metrics,
        sync,
        tracer,
        self_export,
        deps,
    })
}

/// `jobtrace controller`: exports spans, with the metrics port, until a signal; then exports
/// what is queued.
pub async fn controller(config: ControllerConfig) -> Result<(), CommandError> {
    let metrics_listener = serve::bind(config.metrics_listen)?;
    let client = KubeClient::default();
    let started = start_controller(&config.export, &client, config.self_tracing_ratio).await?;
    // No webhook here, so no admission to wait for: ready while up, as the docs say; the
    // controller's progress is `/syncz`'s.
    let readiness = Arc::new(Readiness::default());
    readiness.set_serving();
    tokio::spawn({
        let (readiness, shutdown) = (readiness.clone(), started.shutdown.clone());
        async move {
            shutdown.cancelled().await;
            readiness.set_stopping();
        }
    });
    let metrics_stop = CancellationToken::new();
    let metrics_port = serve::metrics_port(
        metrics_listener,
        PortState {
            metrics: started.metrics,
            readiness,
            controller: Some(started.sync),
        },
        metrics_stop.clone(),
    )?;
    let exported = export(
        started.deps,
        config.export.lease.as_ref(),
        started.shutdown.clone(),
    )
    .await;
    started.shutdown.cancel();
    if let Some(task) = started.self_export {
        let _ = task.await;
    }
    metrics_stop.cancel();
    let _ = metrics_port.await;
    exported
}

/// `jobtrace run`: the webhook and the controller, sharing the metrics port and the metrics.
pub async fn run(config: RunConfig) -> Result<(), CommandError> {
    let RunConfig {
        webhook,
        export: export_config,
    } = config;
    let listeners = Listeners::bind(webhook.listen, webhook.metrics_listen)?;
    let client = KubeClient::default();
    let started = start_controller(&export_config, &client, webhook.self_tracing_ratio).await?;
    let tls = tls_source(
        &webhook.certificates,
        &client,
        &started.metrics,
        started.tracer.as_ref(),
    )
    .await?;
    let policies = policies(&webhook.policies, &client, &started.shutdown).await;
    tracing::info!(listen = %webhook.listen, metrics = %webhook.metrics_listen, "webhook serving");
    let exporting = tokio::spawn({
        let shutdown = started.shutdown.clone();
        let lease = export_config.lease;
        let deps = started.deps;
        async move { export(deps, lease.as_ref(), shutdown).await }
    });
    let served = serve::webhook(
        WebhookServer {
            listeners,
            tls,
            metrics: started.metrics,
            readiness: Arc::default(),
            controller: Some(started.sync),
            tracer: started.tracer,
            policies,
            shutdown_delay: webhook.shutdown_delay,
        },
        started.shutdown.clone(),
    )
    .await;
    started.shutdown.cancel();
    let exported = exporting.await.unwrap_or(Ok(()));
    if let Some(task) = started.self_export {
        let _ = task.await;
    }
    served.map_err(CommandError::from).and(exported)
}
