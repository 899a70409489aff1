//! `jobtrace release`: removes jobtrace's `jobtrace.dev/export` finalizer from every Job and pod
//! that holds it, for an uninstall (the chart's pre-delete hook) or an emergency (a controller
//! that can't run). Their spans that were not exported yet are not exported.

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::core::PartialObjectMeta;
use kube::{Api, Client, Resource};

use crate::core::slim::Slim;
use crate::k8s::pages::{self, Pages};
use crate::k8s::release::{Released, release_held};

/// Why `jobtrace release` could not release every Job.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("no Kubernetes client (KUBECONFIG or in-cluster configuration): {0}")]
    Client(#[source] kube::Error),
    #[error("deleting the webhook configuration {name}: {source}")]
    WebhookConfiguration { name: String, source: kube::Error },
    #[error("listing the {kind}s: {source}")]
    List {
        kind: &'static str,
        source: kube::Error,
    },
    #[error("{failed} of {held} held Jobs and pods could not be released (see the messages above)")]
    Incomplete { failed: usize, held: usize },
}

/// Which held objects `jobtrace release` releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Only this namespace's (`None`: every namespace).
    pub namespace: Option<String>,
    /// The `MutatingWebhookConfiguration` to delete first, so that no Job created meanwhile is
    /// held again (an uninstall).
    pub webhook_configuration: Option<String>,
}

/// Deletes the webhook configuration first when asked (so no Job created meanwhile is held
/// again), then releases every held Job of the namespace, or of all.
pub async fn run(config: &Config) -> Result<(), ReleaseError> {
    let client = Client::try_default().await.map_err(ReleaseError::Client)?;
    if let Some(name) = &config.webhook_configuration {
        let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        match configs.delete(name, &DeleteParams::default()).await {
            Ok(_) => eprintln!("deleted the webhook configuration {name}"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(ReleaseError::WebhookConfiguration {
                    name: name.clone(),
                    source,
                });
            }
        }
    }
    // Every Job's and pod's metadata, not only the traced ones': an object keeps the finalizer
    // if its label was removed (by someone the chart's admission policy doesn't cover). Pods are
    // held only with `--hold-pods`; their list costs a read all the same, and finds none else.
    let (jobs_held, jobs_failed) = release_all::<Job>(&client, config.namespace.as_deref()).await?;
    let (pods_held, pods_failed) = release_all::<Pod>(&client, config.namespace.as_deref()).await?;
    let (held, failed) = (jobs_held + pods_held, jobs_failed + pods_failed);
    eprintln!(
        "released {} of {jobs_held} held Jobs and {} of {pods_held} held pods",
        jobs_held - jobs_failed,
        pods_held - pods_failed
    );
    if failed > 0 {
        return Err(ReleaseError::Incomplete { failed, held });
    }
    Ok(())
}

/// Releases every held object of kind `K` in `namespace` (or all): how many held the finalizer,
/// and how many of those could not be released.
async fn release_all<K>(
    client: &Client,
    namespace: Option<&str>,
) -> Result<(usize, usize), ReleaseError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    // The metadata only, in pages: what is read of each is where jobtrace's finalizer is.
    let api: Api<Slim<PartialObjectMeta<K>>> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let mut pages = Pages::new(api, ListParams::default(), pages::METADATA);
    let (mut held, mut failed) = (0, 0);
    while let Some(page) = pages.next().await {
        let page = page.map_err(|source| ReleaseError::List {
            kind: kind::<K>(),
            source,
        })?;
        let outcomes: Vec<bool> = futures::stream::iter(page.iter().filter(|o| o.hold.is_some()))
            .map(|object| release(client, object))
            .buffer_unordered(16)
            .collect()
            .await;
        held += outcomes.len();
        failed += outcomes.iter().filter(|released| !**released).count();
    }
    Ok((held, failed))
}

/// `Job` or `Pod`, for messages.
fn kind<K: Resource<DynamicType = ()>>() -> &'static str {
    if K::kind(&()) == "Pod" { "pod" } else { "Job" }
}

/// Releases one Job or pod for `jobtrace release`, saying why when it couldn't.
async fn release<K>(client: &Client, object: &Slim<PartialObjectMeta<K>>) -> bool
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let meta = &object.object.metadata;
    let kind = kind::<K>();
    let (Some(namespace), Some(name), Some(uid)) = (
        meta.namespace.as_deref(),
        meta.name.as_deref(),
        meta.uid.as_deref(),
    ) else {
        return false;
    };
    let api: Api<Slim<PartialObjectMeta<K>>> = Api::namespaced(client.clone(), namespace);
    match release_held(&api, name, uid, object.hold).await {
        Ok(Released::Released | Released::NotHeld) => true,
        Ok(Released::KeptChanging) => {
            eprintln!("{kind} {namespace}/{name}: its finalizers kept changing; try again");
            false
        }
        Err(e) => {
            eprintln!("{kind} {namespace}/{name}: {e}");
            false
        }
    }
}
