//! Wiring: which tasks the long-running commands (`webhook`, `controller`, `run`) start, with
//! what. The flags become the webhook's certificate source, the controller's context and the
//! OTLP resource; serving is [`crate::k8s::serve`]'s, exporting [`crate::k8s::controller`]'s.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cli::{CommonArgs, ControllerArgs, ControllerCommand, RunArgs, WebhookArgs};
use crate::k8s::admin::{Operations, Readiness};
use crate::k8s::controller::{self, Context, ControllerSync};
use crate::k8s::metrics::Metrics;
use crate::k8s::otlp::{Exporter, ExporterConfig, Resource};
use crate::k8s::selftrace::SelfTracer;
use crate::k8s::serve::{self, Listeners, ServeError, TlsSource, WebhookServer};
use crate::k8s::tls::TlsFiles;

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

/// The certificate source the flags ask for.
async fn tls_source(
    args: &WebhookArgs,
    client: &KubeClient,
    metrics: &Arc<Metrics>,
    tracer: Option<&SelfTracer>,
) -> Result<TlsSource, CommandError> {
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
    let secret = certs
        .cert_secret
        .clone()
        .ok_or(CommandError::NoCertificateSource)?;
    if certs.cert_names.is_empty() {
        return Err(CommandError::NoCertificateNames);
    }
    let seconds = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if certs.cert_validity < Duration::from_secs(3) || certs.ca_validity <= certs.cert_validity {
        return Err(CommandError::CertificateValidity);
    }
    let settings = crate::k8s::certs::Settings {
        namespace: certs.cert_namespace.clone(),
        secret,
        webhook_configuration: certs.webhook_configuration.clone(),
        issuance: crate::k8s::certs::Issuance {
            names: certs.cert_names.clone(),
            ca_validity_seconds: seconds(certs.ca_validity),
            cert_validity_seconds: seconds(certs.cert_validity),
        },
        resync: certs.cert_resync,
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
/// `--sync-match-conditions`, a task keeps the webhook configuration `configuration` in step.
async fn policies(
    args: &crate::cli::PolicyArgs,
    client: &KubeClient,
    configuration: &str,
    shutdown: &CancellationToken,
) -> crate::k8s::policy::Policies {
    let defaults = args.defaults();
    if !args.policies {
        if args.sync_match_conditions {
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
            if args.sync_match_conditions {
                tokio::spawn(crate::k8s::policy::match_conditions::keep_in_step(
                    client,
                    configuration.to_owned(),
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
    common: &CommonArgs,
    metrics: &Arc<Metrics>,
    exporting: impl FnOnce() -> Result<Exporting, CommandError>,
    shutdown: &CancellationToken,
) -> Result<(Option<SelfTracer>, Option<tokio::task::JoinHandle<()>>), CommandError> {
    if common.self_tracing_ratio <= 0.0 {
        return Ok((None, None));
    }
    let (tracer, spans) = SelfTracer::new(common.self_tracing_ratio, metrics.clone());
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
pub async fn webhook(args: WebhookArgs, common: CommonArgs) -> Result<(), CommandError> {
    let listeners = Listeners::bind(args.listen, args.metrics_listen)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(serve::shutdown_on_signal(shutdown.clone()));
    let metrics = Arc::new(Metrics::default());
    let (tracer, own) = self_tracing(
        &common,
        &metrics,
        || exporting_from_env(&instance_name(None)),
        &shutdown,
    )?;
    let client = KubeClient::default();
    let tls = tls_source(&args, &client, &metrics, tracer.as_ref()).await?;
    let policies = policies(
        &args.policy,
        &client,
        &args.certs.webhook_configuration,
        &shutdown,
    )
    .await;
    tracing::info!(listen = %args.listen, metrics = %args.metrics_listen, "webhook serving");
    let served = serve::webhook(
        WebhookServer {
            listeners,
            tls,
            metrics,
            readiness: Arc::default(),
            controller: None,
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
    Ok(served?)
}

/// Everything the controller needs, from the environment and the flags.
fn controller_context(
    args: &ControllerArgs,
    client: kube::Client,
    (config, resource): Exporting,
    metrics: Arc<Metrics>,
    sync: Arc<ControllerSync>,
    tracer: Option<SelfTracer>,
    hold_pods: bool,
) -> Result<Arc<Context>, CommandError> {
    tracing::info!(
        endpoint = %config.endpoint,
        protocol = ?config.protocol,
        compression = ?config.compression,
        limits = ?config.limits,
        max_request_bytes = args.max_request_bytes,
        roots = ?config.tls.roots,
        client_certificate = ?config.tls.client.as_ref().map(|c| &c.certificate),
        "exporting spans over OTLP"
    );
    let exporter = Exporter::new(ExporterConfig {
        max_request_bytes: usize::try_from(args.max_request_bytes).unwrap_or(usize::MAX),
        ..config
    })?;
    let instance = instance_name(args.instance.as_ref());
    Ok(Arc::new(Context {
        client,
        exporter,
        metrics,
        resource,
        instance,
        namespace: args.watch_namespace.clone(),
        sync,
        tracer,
        policy_status: args.policy_status,
        hold_timeout: args.hold_timeout,
        hold_pods,
        record_events: args.record_events,
    }))
}

/// Exports until `shutdown`: as the leader when leader election is on, at once otherwise.
async fn export(
    context: Arc<Context>,
    args: &ControllerArgs,
    shutdown: CancellationToken,
) -> Result<(), CommandError> {
    if args.no_leader_election {
        context.metrics.leader.set(1);
        controller::run(context, shutdown).await;
        Ok(())
    } else {
        let lease = controller::LeaseSettings {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            owner: Some(args.lease_owner.clone()).filter(|o| !o.is_empty()),
        };
        Ok(controller::run_as_leader(context, &lease, shutdown).await?)
    }
}

/// What `jobtrace controller` and `jobtrace run` share: the shutdown signal, metrics, the
/// controller's sync state, jobtrace's own spans, and the controller's context.
struct Started {
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    /// For `/syncz` only: `/readyz` never waits on the controller.
    sync: Arc<ControllerSync>,
    tracer: Option<SelfTracer>,
    /// The task exporting jobtrace's own spans.
    own: Option<tokio::task::JoinHandle<()>>,
    context: Arc<Context>,
}

/// `hold_pods`: pods may be held (`--hold-pods`).
async fn start_controller(
    args: &ControllerArgs,
    client: &KubeClient,
    common: &CommonArgs,
    hold_pods: bool,
) -> Result<Started, CommandError> {
    let shutdown = CancellationToken::new();
    tokio::spawn(serve::shutdown_on_signal(shutdown.clone()));
    let metrics = Arc::new(Metrics::default());
    let sync = Arc::new(ControllerSync::new(metrics.controller_listing.clone()));
    let instance = instance_name(args.instance.as_ref());
    let exporting = exporting_from_env(&instance)?;
    let (tracer, own) = self_tracing(common, &metrics, || Ok(exporting.clone()), &shutdown)?;
    let context = controller_context(
        args,
        client.get().await?,
        exporting,
        metrics.clone(),
        sync.clone(),
        tracer.clone(),
        hold_pods,
    )?;
    Ok(Started {
        shutdown,
        metrics,
        sync,
        tracer,
        own,
        context,
    })
}

/// `jobtrace controller`: exports spans, with the operations port, until a signal; then exports
/// what is queued.
pub async fn controller(
    command: ControllerCommand,
    common: CommonArgs,
) -> Result<(), CommandError> {
    let admin = serve::bind(command.metrics_listen)?;
    let client = KubeClient::default();
    let started =
        start_controller(&command.controller, &client, &common, command.hold_pods).await?;
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
    let admin_stop = CancellationToken::new();
    let admin = serve::admin(
        admin,
        Operations {
            metrics: started.metrics,
            readiness,
            controller: Some(started.sync),
        },
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
pub async fn run(mut args: RunArgs, common: CommonArgs) -> Result<(), CommandError> {
    let listeners = Listeners::bind(args.webhook.listen, args.webhook.metrics_listen)?;
    // No status for policies this process's webhook doesn't read.
    args.controller.policy_status &= args.webhook.policy.policies;
    let client = KubeClient::default();
    let started = start_controller(
        &args.controller,
        &client,
        &common,
        args.webhook.policy.hold_pods,
    )
    .await?;
    let tls = tls_source(
        &args.webhook,
        &client,
        &started.metrics,
        started.tracer.as_ref(),
    )
    .await?;
    let policies = policies(
        &args.webhook.policy,
        &client,
        &args.webhook.certs.webhook_configuration,
        &started.shutdown,
    )
    .await;
    tracing::info!(listen = %args.webhook.listen, metrics = %args.webhook.metrics_listen, "webhook serving");
    let exporting = tokio::spawn({
        let shutdown = started.shutdown.clone();
        let controller = args.controller.clone();
        let context = started.context;
        async move { export(context, &controller, shutdown).await }
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
    served.map_err(CommandError::from).and(exported)
}
