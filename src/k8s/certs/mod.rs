//! Self-managed webhook certificates: jobtrace keeps its serving certificate (with the CA bundle)
//! in one Secret and its CA's private key in another, publishes the CA bundle as the `caBundle`
//! of its `MutatingWebhookConfiguration` (and puts it back when something, such as a `helm
//! upgrade` or a `kubectl apply`, overwrites it), renews before expiry, and serves whatever the
//! serving Secret holds.
//!
//! Every replica runs this loop. They agree through the apiserver: each Secret is created once
//! (the others get a conflict and read it) and patched with its `resourceVersion`, so two
//! replicas never both rotate; each one loads the certificate from the Secret it reads, not from
//! a mounted file, so a rotation reaches all replicas within a watch event.
//!
//! The CA's key is kept apart (in `<secret>-ca`) so that whatever may read the serving Secret
//! can't issue certificates the apiserver trusts. An older jobtrace kept it in the serving Secret:
//! the first pass moves it out, keeping the CA and the serving certificate as they are.

pub mod authority;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

use crate::k8s::metrics::{Metrics, ReasonLabels};
use crate::k8s::selftrace::SelfTracer;

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

/// Where the certificates live and what they are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub namespace: String,
    /// The serving certificate's Secret; the CA's key is in [`Settings::ca_secret`].
    pub secret: String,
    /// The `MutatingWebhookConfiguration` whose `caBundle` jobtrace keeps.
    pub webhook_configuration: String,
    pub issuance: Issuance,
    /// Longest wait between two looks at the Secret, besides watch events.
    pub resync: Duration,
}

impl Settings {
    /// The Secret holding the CA's private key, named after the serving Secret.
    pub fn ca_secret(&self) -> String {
        format!("{}-ca", self.secret)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Cert(#[from] authority::CertError),
    #[error("the certificate could not be loaded: {0}")]
    Load(#[source] std::io::Error),
    /// The webhook configuration this replica has seen is gone: the release is being
    /// uninstalled (`jobtrace release` deletes it first), and the Secrets it owns go with it.
    #[error("the webhook configuration was deleted: the certificate Secrets are left alone")]
    ConfigurationGone,
}

/// Keeps the certificates of one install.
pub struct CertificateKeeper {
    secrets: Api<Secret>,
    webhooks: Api<MutatingWebhookConfiguration>,
    settings: Settings,
    metrics: Arc<Metrics>,
    tracer: Option<SelfTracer>,
    /// Whether this replica has seen its webhook configuration: once it has, the configuration's
    /// absence means an uninstall, not an install still under way.
    configuration_seen: AtomicBool,
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    String::from_utf8(data.get(key)?.0.clone()).ok()
}

/// The material the two Secrets hold, when there is a CA: the CA bundle and key from the CA's
/// Secret, the serving certificate from the serving Secret (empty when it is missing: the decision
/// then issues one from that CA). Without a CA's Secret, an older jobtrace's single Secret, with
/// the CA's key in it, still counts.
pub fn material(serving: Option<&Secret>, authority: Option<&Secret>) -> Option<Material> {
    let serving = serving.and_then(|s| s.data.as_ref());
    let authority = match authority {
        Some(authority) => authority.data.as_ref()?,
        None => serving?,
    };
    let cert = serving.and_then(|s| Some((text(s, TLS_CERT)?, text(s, TLS_KEY)?)));
    let (cert, key) = cert.unwrap_or_default();
    Some(Material {
        ca_bundle: text(authority, CA_CERT)?,
        ca_key: text(authority, CA_KEY)?,
        cert,
        key,
    })
}

fn data(pairs: &[(&str, &String)]) -> BTreeMap<String, ByteString> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

/// What the CA's Secret holds: the bundle and the newest CA's key.
pub fn authority_data(material: &Material) -> BTreeMap<String, ByteString> {
    data(&[(CA_CERT, &material.ca_bundle), (CA_KEY, &material.ca_key)])
}

/// What the serving Secret holds: the certificate, its key, and the bundle (what the webhook
/// configuration's `caBundle` is, and what `helm upgrade` renders it from). Never the CA's key.
pub fn serving_data(material: &Material) -> BTreeMap<String, ByteString> {
    data(&[
        (CA_CERT, &material.ca_bundle),
        (TLS_CERT, &material.cert),
        (TLS_KEY, &material.key),
    ])
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

/// One of the two Secrets as it is and as it should be.
struct Write {
    name: String,
    type_: &'static str,
    data: BTreeMap<String, ByteString>,
    existing: Option<Secret>,
}

impl Write {
    fn owned(&self, owner: Option<&OwnerReference>) -> bool {
        let (Some(existing), Some(owner)) = (&self.existing, owner) else {
            return true;
        };
        existing
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == owner.uid)
    }

    /// Whether the Secret must be written: missing, holding something else, or not owned yet.
    fn needed(&self, owner: Option<&OwnerReference>) -> bool {
        self.existing
            .as_ref()
            .is_none_or(|s| s.data.as_ref() != Some(&self.data))
            || !self.owned(owner)
    }

    /// Why the Secret is written when the material itself didn't change.
    fn layout_change(&self, owner: Option<&OwnerReference>) -> Option<&'static str> {
        let existing = self.existing.as_ref();
        let data = existing.and_then(|s| s.data.as_ref());
        if existing.is_none() {
            Some("the CA's key kept in a Secret of its own")
        } else if data.is_some_and(|d| d.contains_key(CA_KEY) && !self.data.contains_key(CA_KEY)) {
            Some("the CA's key moved out of the serving Secret")
        } else if data != Some(&self.data) {
            Some("brought in line with the CA's Secret")
        } else if !self.owned(owner) {
            Some("owned by the webhook configuration")
        } else {
            None
        }
    }

    /// A JSON merge patch from `existing` to what the Secret should hold: its `resourceVersion`
    /// (a precondition), the owner, every key of `data`, and `null` for any other key.
    fn patch(&self, existing: &Secret, owner: Option<OwnerReference>) -> serde_json::Value {
        use base64::Engine;
        let mut data = serde_json::Map::new();
        for key in existing.data.iter().flatten().map(|(k, _)| k) {
            data.insert(key.clone(), serde_json::Value::Null);
        }
        for (key, value) in &self.data {
            data.insert(
                key.clone(),
                base64::engine::general_purpose::STANDARD
                    .encode(&value.0)
                    .into(),
            );
        }
        let mut metadata = json!({ "resourceVersion": existing.metadata.resource_version });
        if let Some(owner) = owner {
            let mut refs = existing
                .metadata
                .owner_references
                .clone()
                .unwrap_or_default();
            refs.retain(|r| r.kind != owner.kind || r.api_version != owner.api_version);
            refs.push(owner);
            metadata["ownerReferences"] = json!(refs);
        }
        json!({ "metadata": metadata, "data": data })
    }
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
            configuration_seen: AtomicBool::new(false),
        }
    }

    /// One pass: read the two Secrets and the webhook configuration, write what must change,
    /// and return what the Secrets now hold.
    pub async fn reconcile(&self) -> Result<Decision, Error> {
        let serving = self.secrets.get_opt(&self.settings.secret).await?;
        let authority = self.secrets.get_opt(&self.settings.ca_secret()).await?;
        let config = self
            .webhooks
            .get_opt(&self.settings.webhook_configuration)
            .await?;
        // Written now, the Secrets would outlive the uninstall: nothing owns them any more.
        if config.is_some() {
            self.configuration_seen.store(true, Ordering::Relaxed);
        } else if self.configuration_seen.load(Ordering::Relaxed) {
            return Err(Error::ConfigurationGone);
        }
        let current = material(serving.as_ref(), authority.as_ref());
        if serving.is_some() && current.is_none() {
            tracing::warn!(secret = %self.settings.secret, "the certificate Secrets are incomplete; replacing their contents");
        }
        // Nothing to publish to counts as published: the bundle is written when it appears.
        let published = match (&config, &current) {
            (Some(config), Some(m)) => publishes(config, &m.ca_bundle),
            _ => true,
        };
        let decision = authority::decide(
            current.as_ref(),
            published,
            unix_now(),
            &self.settings.issuance,
        )?;
        let owner = config.as_ref().and_then(owner_reference);
        // The CA's Secret first: a serving certificate is never stored before the CA that signed
        // it, nor the serving Secret stripped of the CA's key before the key is kept elsewhere.
        let writes = [
            Write {
                name: self.settings.ca_secret(),
                type_: "Opaque",
                data: authority_data(&decision.material),
                existing: authority,
            },
            Write {
                name: self.settings.secret.clone(),
                type_: "kubernetes.io/tls",
                data: serving_data(&decision.material),
                existing: serving,
            },
        ];
        for write in writes {
            let Some(reason) = decision
                .change
                .or_else(|| write.layout_change(owner.as_ref()))
                .filter(|_| write.needed(owner.as_ref()))
            else {
                continue;
            };
            let mut span = self.tracer.as_ref().map(|t| {
                let mut span = t.background("certificate write");
                span.set("jobtrace.certificate.reason", reason);
                span
            });
            let name = write.name.clone();
            let written = self.write(write, owner.clone()).await;
            if let (Some(span), Err(e)) = (span.as_mut(), &written) {
                span.fail(e.to_string());
            }
            if let (Some(tracer), Some(span)) = (&self.tracer, span) {
                tracer.record(span);
            }
            written?;
            tracing::info!(secret = %name, %reason, "certificate Secret written");
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

    /// Creates the Secret, or patches it to what it should hold, carrying its `resourceVersion`
    /// (a concurrent write by another replica makes this one fail with a conflict, and the next
    /// pass reads theirs). Each Secret is owned by the webhook configuration, so uninstalling
    /// (which deletes the configuration) has the garbage collector delete it too.
    async fn write(&self, write: Write, owner: Option<OwnerReference>) -> Result<(), Error> {
        if let Some(existing) = &write.existing {
            let patch = write.patch(existing, owner);
            self.secrets
                .patch(&write.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        } else {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(write.name.clone()),
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
                type_: Some(write.type_.to_owned()),
                data: Some(write.data),
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
    /// certificate into `tls` (and the key derived from it into the admission tags) whenever the
    /// Secret's changes. Wakes on any change to the Secret or the webhook configuration, at the
    /// next renewal time, and every `resync`.
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
        let mut gone_logged = false;
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
                    gone_logged = false;
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
                                crate::k8s::webhook::keys::use_serving_key(
                                    decision.material.key.as_bytes(),
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
                Err(Error::ConfigurationGone) => {
                    // Serving on with the certificate it has; back when the configuration is.
                    if !gone_logged {
                        tracing::info!("{}", Error::ConfigurationGone);
                        gone_logged = true;
                    }
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

/// Loads a decision's serving certificate; from then on admissions are tagged with the key derived
/// from its private key ([`crate::core::mutate::tag`]).
pub async fn load(decision: &Decision) -> Result<RustlsConfig, Error> {
    let config = RustlsConfig::from_pem(
        decision.material.cert.clone().into_bytes(),
        decision.material.key.clone().into_bytes(),
    )
    .await
    .map_err(Error::Load)?;
    crate::k8s::webhook::keys::use_serving_key(decision.material.key.as_bytes());
    Ok(config)
}

/// The expiry (unix seconds) of the first certificate of a PEM text, when it parses.
pub fn expiry(pem: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(pem).ok()?;
    Some(authority::parse_bundle(text).ok()?.first()?.not_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued() -> Material {
        let issuance = Issuance {
            names: vec!["jobtrace.jobtrace.svc".to_owned()],
            ca_validity_seconds: 300 * 86_400,
            cert_validity_seconds: 30 * 86_400,
        };
        authority::decide(None, true, 1_800_000_000, &issuance)
            .unwrap()
            .material
    }

    fn secret(data: BTreeMap<String, ByteString>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                resource_version: Some("42".to_owned()),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..Secret::default()
        }
    }

    /// The single Secret an older jobtrace kept: the serving certificate and the CA's key.
    fn old_layout(m: &Material) -> Secret {
        let mut data = serving_data(m);
        data.extend(authority_data(m));
        secret(data)
    }

    fn write(name: &str, data: BTreeMap<String, ByteString>, existing: Option<Secret>) -> Write {
        Write {
            name: name.to_owned(),
            type_: "Opaque",
            data,
            existing,
        }
    }

    #[test]
    fn the_serving_secret_never_holds_the_cas_key() {
        let m = issued();
        assert!(!serving_data(&m).contains_key(CA_KEY));
        assert_eq!(
            authority_data(&m).keys().collect::<Vec<_>>(),
            [CA_CERT, CA_KEY]
        );
        let serving = secret(serving_data(&m));
        let authority = secret(authority_data(&m));
        assert_eq!(material(Some(&serving), Some(&authority)), Some(m.clone()));
        assert_eq!(
            material(Some(&serving), None),
            None,
            "without the CA's key nothing can be issued"
        );
        assert_eq!(
            material(None, Some(&authority)),
            Some(Material {
                cert: String::new(),
                key: String::new(),
                ..m.clone()
            }),
            "a CA without a serving certificate: one is issued from it"
        );
    }

    #[test]
    fn an_older_single_secret_is_read_and_its_ca_key_moved_out() {
        let m = issued();
        let old = old_layout(&m);
        assert_eq!(
            material(Some(&old), None),
            Some(m.clone()),
            "same CA, same certificate"
        );
        // The first pass creates the CA's Secret, then strips the key from the serving Secret.
        let ca = write("jt-tls-ca", authority_data(&m), None);
        assert!(ca.needed(None));
        assert_eq!(
            ca.layout_change(None),
            Some("the CA's key kept in a Secret of its own")
        );
        let serving = write("jt-tls", serving_data(&m), Some(old.clone()));
        assert!(serving.needed(None));
        assert_eq!(
            serving.layout_change(None),
            Some("the CA's key moved out of the serving Secret")
        );
        let patch = serving.patch(&old, None);
        assert_eq!(patch["metadata"]["resourceVersion"], "42", "a precondition");
        assert_eq!(patch["data"][CA_KEY], serde_json::Value::Null);
        for key in [CA_CERT, TLS_CERT, TLS_KEY] {
            assert!(patch["data"][key].is_string(), "{key}");
        }
        // A stale key left in the serving Secret (a crash between the two writes) is not read:
        // the CA's Secret is the one that counts.
        let other = issued();
        let authority = secret(authority_data(&other));
        let read = material(Some(&old), Some(&authority)).unwrap();
        assert_eq!(read.ca_key, other.ca_key);
        assert_eq!(read.cert, m.cert);
    }

    #[test]
    fn secrets_holding_what_they_should_are_left_alone() {
        let m = issued();
        let configuration = OwnerReference {
            api_version: "admissionregistration.k8s.io/v1".to_owned(),
            kind: "MutatingWebhookConfiguration".to_owned(),
            name: "jt".to_owned(),
            uid: "u1".to_owned(),
            ..OwnerReference::default()
        };
        let mut stored = secret(authority_data(&m));
        stored.metadata.owner_references = Some(vec![configuration.clone()]);
        let kept = write("jt-tls-ca", authority_data(&m), Some(stored));
        assert!(!kept.needed(Some(&configuration)));
        assert_eq!(kept.layout_change(Some(&configuration)), None);
        let unowned = write(
            "jt-tls-ca",
            authority_data(&m),
            Some(secret(authority_data(&m))),
        );
        assert!(unowned.needed(Some(&configuration)));
        assert_eq!(
            unowned.layout_change(Some(&configuration)),
            Some("owned by the webhook configuration")
        );
    }
}
