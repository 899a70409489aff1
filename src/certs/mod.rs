//! Self-managed webhook certificates: jobtrace keeps its CA and serving certificate in a Secret,
//! publishes the CA bundle as the `caBundle` of its `MutatingWebhookConfiguration` (and puts it
//! back when something, such as a `helm upgrade` or a `kubectl apply`, overwrites it), renews
//! before expiry, and serves whatever the Secret holds.
//!
//! Every replica runs this loop. They agree through the apiserver: the Secret is created once
//! (the others get a conflict and read it) and replaced with its `resourceVersion`, so two
//! replicas never both rotate; each one loads the certificate from the Secret it reads, not from
//! a mounted file, so a rotation reaches all replicas within a watch event.

pub mod authority;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use authority::{Decision, Issuance, Material};

use crate::metrics::{Metrics, ReasonLabels};
use crate::selftrace::SelfTracer;

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

/// Where the certificates live and what they are for.
#[derive(Debug, Clone)]
pub struct Settings {
    pub namespace: String,
    pub secret: String,
    /// The `MutatingWebhookConfiguration` whose `caBundle` jobtrace keeps.
    pub webhook_configuration: String,
    pub issuance: Issuance,
    /// Longest wait between two looks at the Secret, besides watch events.
    pub resync: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Cert(#[from] authority::CertError),
    #[error("the certificate could not be loaded: {0}")]
    Load(#[source] std::io::Error),
}

/// Keeps the certificates of one install.
pub struct CertificateKeeper {
    secrets: Api<Secret>,
    webhooks: Api<MutatingWebhookConfiguration>,
    settings: Settings,
    metrics: Arc<Metrics>,
    tracer: Option<SelfTracer>,
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    String::from_utf8(data.get(key)?.0.clone()).ok()
}

/// The material in a Secret, when it has every part.
pub fn material(secret: &Secret) -> Option<Material> {
    let data = secret.data.as_ref()?;
    Some(Material {
        ca_bundle: text(data, CA_CERT)?,
        ca_key: text(data, CA_KEY)?,
        cert: text(data, TLS_CERT)?,
        key: text(data, TLS_KEY)?,
    })
}

fn data(material: &Material) -> BTreeMap<String, ByteString> {
    [
        (CA_CERT, &material.ca_bundle),
        (CA_KEY, &material.ca_key),
        (TLS_CERT, &material.cert),
        (TLS_KEY, &material.key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.clone().into_bytes())))
    .collect()
}

fn owner_reference(config: &MutatingWebhookConfiguration) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "admissionregistration.k8s.io/v1".to_owned(),
        kind: "MutatingWebhookConfiguration".to_owned(),
        name: config.metadata.name.clone()?,
        uid: config.metadata.uid.clone()?,
        // Blocking the owner's deletion would need more permissions, and nothing to gain.
        block_owner_deletion: None,
        controller: None,
    })
}

/// Whether every webhook of the configuration trusts exactly `bundle`.
fn publishes(config: &MutatingWebhookConfiguration, bundle: &str) -> bool {
    config.webhooks.iter().flatten().all(|w| {
        w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(bundle.as_bytes())
    })
}

fn unix_now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

impl CertificateKeeper {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        tracer: Option<SelfTracer>,
    ) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), &settings.namespace),
            webhooks: Api::all(client),
            settings,
            metrics,
            tracer,
        }
    }

    /// One pass: read the Secret and the webhook configuration, write what must change, and
    /// return what the Secret now holds.
    pub async fn reconcile(&self) -> Result<Decision, Error> {
        let secret = self.secrets.get_opt(&self.settings.secret).await?;
        let config = self
            .webhooks
            .get_opt(&self.settings.webhook_configuration)
            .await?;
        let current = secret.as_ref().and_then(material);
        if secret.is_some() && current.is_none() {
            tracing::warn!(secret = %self.settings.secret, "the certificate Secret is incomplete; replacing its contents");
        }
        // Nothing to publish to counts as published: the bundle is written when it appears.
        let published = match (&config, &current) {
            (Some(config), Some(m)) => publishes(config, &m.ca_bundle),
            _ => true,
        };
        let decision = authority::plan(
            current.as_ref(),
            published,
            unix_now(),
            &self.settings.issuance,
        )?;
        let owner = config.as_ref().and_then(owner_reference);
        // An existing Secret that the configuration doesn't own yet gets the owner reference.
        let needs_owner = match (&secret, &owner) {
            (Some(secret), Some(owner)) => !secret
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == owner.uid),
            _ => false,
        };
        let change = decision
            .change
            .or_else(|| needs_owner.then_some("owned by the webhook configuration"));
        if let Some(reason) = change {
            let mut span = self.tracer.as_ref().map(|t| {
                let mut span = t.background("certificate write");
                span.set("jobtrace.certificate.reason", reason);
                span
            });
            let written = self.write(secret, &decision.material, owner).await;
            if let (Some(span), Err(e)) = (span.as_mut(), &written) {
                span.fail(e.to_string());
            }
            if let (Some(tracer), Some(span)) = (&self.tracer, span) {
                tracer.record(span);
            }
            written?;
            tracing::info!(secret = %self.settings.secret, %reason, "certificate Secret written");
            self.metrics
                .certificate_writes
                .get_or_create(&ReasonLabels { what: "secret" })
                .inc();
        }
        if let Some(config) = config {
            if !publishes(&config, &decision.material.ca_bundle) {
                self.publish(&config, &decision.material.ca_bundle).await?;
            }
        } else {
            tracing::warn!(
                configuration = %self.settings.webhook_configuration,
                "the MutatingWebhookConfiguration does not exist (yet); its caBundle will be set when it does"
            );
        }
        Ok(decision)
    }

    /// Creates or replaces the Secret. It is owned by the webhook configuration, so uninstalling
    /// (which deletes the configuration) has the garbage collector delete it too.
    async fn write(
        &self,
        existing: Option<Secret>,
        material: &Material,
        owner: Option<OwnerReference>,
    ) -> Result<(), Error> {
        if let Some(mut secret) = existing {
            secret.data = Some(data(material));
            secret.string_data = None;
            if let Some(owner) = owner {
                let refs = secret
                    .metadata
                    .owner_references
                    .get_or_insert_with(Vec::new);
                refs.retain(|r| r.kind != owner.kind || r.api_version != owner.api_version);
                refs.push(owner);
            }
            // Replace carries the resourceVersion: a concurrent write by another replica makes
            // this one fail with a conflict, and the next pass reads theirs.
            self.secrets
                .replace(&self.settings.secret, &PostParams::default(), &secret)
                .await?;
        } else {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(self.settings.secret.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    labels: Some(BTreeMap::from([
                        ("app.kubernetes.io/name".to_owned(), "jobtrace".to_owned()),
                        (
                            "app.kubernetes.io/managed-by".to_owned(),
                            "jobtrace".to_owned(),
                        ),
                    ])),
                    owner_references: owner.map(|o| vec![o]),
                    ..ObjectMeta::default()
                },
                type_: Some("kubernetes.io/tls".to_owned()),
                data: Some(data(material)),
                ..Secret::default()
            };
            self.secrets.create(&PostParams::default(), &secret).await?;
        }
        Ok(())
    }

    /// Sets the `caBundle` of every webhook of the configuration (a strategic merge by webhook
    /// name, leaving the rest of the configuration alone).
    async fn publish(
        &self,
        config: &MutatingWebhookConfiguration,
        bundle: &str,
    ) -> Result<(), Error> {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
        let webhooks: Vec<_> = config
            .webhooks
            .iter()
            .flatten()
            .map(|w| json!({ "name": w.name, "clientConfig": { "caBundle": encoded } }))
            .collect();
        self.webhooks
            .patch(
                &self.settings.webhook_configuration,
                &PatchParams::default(),
                &Patch::Strategic(json!({ "webhooks": webhooks })),
            )
            .await?;
        tracing::info!(configuration = %self.settings.webhook_configuration, "caBundle set");
        self.metrics
            .certificate_writes
            .get_or_create(&ReasonLabels { what: "ca_bundle" })
            .inc();
        Ok(())
    }

    /// Reconciles until it succeeds (the apiserver may not be reachable yet), then returns the
    /// serving certificate to start with.
    pub async fn first(&self, shutdown: &CancellationToken) -> Option<Decision> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.reconcile().await {
                Ok(decision) => return Some(decision),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "certificates not ready yet");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return None,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// Keeps the certificates and the `caBundle` right until `shutdown`, swapping the served
    /// certificate into `tls` whenever the Secret's changes. Wakes on any change to the Secret or
    /// the webhook configuration, at the next renewal time, and every `resync`.
    pub async fn run(self, tls: RustlsConfig, mut served: Decision, shutdown: CancellationToken) {
        let wake = Arc::new(Notify::new());
        let watches = [
            watch_by_name(
                self.secrets.clone(),
                &self.settings.secret,
                wake.clone(),
                shutdown.clone(),
            ),
            watch_by_name(
                self.webhooks.clone(),
                &self.settings.webhook_configuration,
                wake.clone(),
                shutdown.clone(),
            ),
        ];
        let mut backoff = Duration::from_millis(200);
        loop {
            let until_due = u64::try_from(served.next_check - unix_now()).unwrap_or(0);
            let wait = Duration::from_secs(until_due).min(self.settings.resync);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            match self.reconcile().await {
                Ok(decision) => {
                    backoff = Duration::from_millis(200);
                    if decision.material.cert != served.material.cert
                        || decision.material.key != served.material.key
                    {
                        match tls
                            .reload_from_pem(
                                decision.material.cert.clone().into_bytes(),
                                decision.material.key.clone().into_bytes(),
                            )
                            .await
                        {
                            Ok(()) => {
                                tracing::info!(
                                    expires = decision.cert_not_after,
                                    "serving certificate reloaded"
                                );
                                self.metrics.certificate_expiry.set(decision.cert_not_after);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "the new serving certificate doesn't load; keeping the current one");
                                continue;
                            }
                        }
                    }
                    served = decision;
                }
                Err(e) => {
                    // A conflict means another replica wrote first: read theirs at once.
                    let conflict = matches!(&e, Error::Kube(kube::Error::Api(s)) if s.code == 409);
                    if !conflict {
                        tracing::warn!(error = %e, retry_in = ?backoff, "certificate check failed");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                    wake.notify_one();
                }
            }
        }
        for watch in watches {
            watch.abort();
        }
    }
}

/// Wakes `wake` on every change to the object `name` of `api` (and after each (re)list), until
/// `shutdown`.
fn watch_by_name<K>(
    api: Api<K>,
    name: &str,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(notify_on_change(watcher(api, config), wake, shutdown))
}

async fn notify_on_change<K>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut stream = std::pin::pin!(kube::runtime::WatchStreamExt::default_backoff(stream));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            event = stream.next() => match event {
                None => return,
                Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)) => wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::debug!(error = %e, "certificate watch error; retrying"),
            }
        }
    }
}

/// Loads a decision's serving certificate.
pub async fn load(decision: &Decision) -> Result<RustlsConfig, Error> {
    RustlsConfig::from_pem(
        decision.material.cert.clone().into_bytes(),
        decision.material.key.clone().into_bytes(),
    )
    .await
    .map_err(Error::Load)
}

/// The expiry (unix seconds) of the first certificate of a PEM text, when it parses.
pub fn expiry(pem: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(pem).ok()?;
    Some(authority::parse_bundle(text).ok()?.first()?.not_after)
}
