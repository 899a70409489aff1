//! `jobtrace release`: removes jobtrace's `jobtrace.dev/export` finalizer from every Job that
//! holds it, for an uninstall (the chart's pre-delete hook) or an emergency (a controller that
//! can't run). Their spans that were not exported yet are not exported.

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::{Api, Client};
use serde_json::json;

use crate::cli::ReleaseArgs;
use crate::names;
use crate::pages::{self, Pages};
use crate::slim::Slim;

/// Why `jobtrace release` could not release every Job.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("no Kubernetes client (KUBECONFIG or in-cluster configuration): {0}")]
    Client(#[source] kube::Error),
    #[error("deleting the webhook configuration {name}: {source}")]
    WebhookConfiguration { name: String, source: kube::Error },
    #[error("listing the traced Jobs: {0}")]
    List(#[source] kube::Error),
    #[error("{failed} of {held} held Jobs could not be released (see the messages above)")]
    Incomplete { failed: usize, held: usize },
}

/// Deletes the webhook configuration first when asked (so no Job created meanwhile is held
/// again), then releases every held Job of the namespace, or of all.
pub async fn run(args: &ReleaseArgs) -> Result<(), ReleaseError> {
    let client = Client::try_default().await.map_err(ReleaseError::Client)?;
    if let Some(name) = &args.webhook_configuration {
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
    // The Jobs' metadata only, in pages: what is read of each is where jobtrace's finalizer is.
    let jobs: Api<Slim<PartialObjectMeta<Job>>> = match &args.namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let params = ListParams::default().labels(&format!("{}=true", names::TRACED_LABEL));
    let mut pages = Pages::new(jobs, params, pages::METADATA);
    let (mut held, mut failed) = (0, 0);
    while let Some(page) = pages.next().await {
        let page = page.map_err(ReleaseError::List)?;
        let outcomes: Vec<bool> = futures::stream::iter(page.iter().filter(|j| j.hold.is_some()))
            .map(|job| release(&client, job))
            .buffer_unordered(16)
            .collect()
            .await;
        held += outcomes.len();
        failed += outcomes.iter().filter(|released| !**released).count();
    }
    eprintln!("released {} of {held} held Jobs", held - failed);
    if failed > 0 {
        return Err(ReleaseError::Incomplete { failed, held });
    }
    Ok(())
}

/// The JSON patch operations that remove jobtrace's finalizer at `index`, only if it is still
/// there (the controller's mark writes them too).
pub fn release_ops(index: usize) -> [serde_json::Value; 2] {
    let path = format!("/metadata/finalizers/{index}");
    [
        json!({ "op": "test", "path": path, "value": names::EXPORT_FINALIZER }),
        json!({ "op": "remove", "path": path }),
    ]
}

/// The JSON patch that removes the finalizer at `index` of the Job `uid`, only if it is still
/// there.
pub fn release_patch(uid: &str, index: usize) -> serde_json::Value {
    let mut ops = vec![json!({ "op": "test", "path": "/metadata/uid", "value": uid })];
    ops.extend(release_ops(index));
    ops.into()
}

/// Releases one Job, looking its finalizer up again once when the list moved meanwhile.
async fn release(client: &Client, job: &Slim<PartialObjectMeta<Job>>) -> bool {
    let meta = &job.object.metadata;
    let (Some(namespace), Some(name), Some(uid)) = (
        meta.namespace.as_deref(),
        meta.name.as_deref(),
        meta.uid.as_deref(),
    ) else {
        return false;
    };
    // Answered with the Job's metadata, read slim: never the whole Job.
    let api: Api<Slim<PartialObjectMeta<Job>>> = Api::namespaced(client.clone(), namespace);
    let mut index = job.hold;
    for _ in 0..2 {
        let Some(i) = index else {
            return true;
        };
        let patch: json_patch::Patch =
            serde_json::from_value(release_patch(uid, i)).expect("a valid patch");
        match api
            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => return true,
            Err(kube::Error::Api(e)) if e.code == 404 => return true,
            Err(kube::Error::Api(e)) if e.code == 422 => match api.get_opt(name).await {
                Ok(Some(current)) if current.object.metadata.uid.as_deref() == Some(uid) => {
                    index = current.hold;
                }
                Ok(_) => return true,
                Err(e) => {
                    eprintln!("Job {namespace}/{name}: {e}");
                    return false;
                }
            },
            Err(e) => {
                eprintln!("Job {namespace}/{name}: {e}");
                return false;
            }
        }
    }
    eprintln!("Job {namespace}/{name}: its finalizers kept changing; try again");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_removes_only_jobtraces_finalizer_of_that_very_job() {
        let mut job = serde_json::json!({
            "metadata": { "uid": "u1", "finalizers": ["example.com/keep", "jobtrace.dev/export"] }
        });
        let patch: json_patch::Patch = serde_json::from_value(release_patch("u1", 1)).unwrap();
        json_patch::patch(&mut job, &patch).unwrap();
        assert_eq!(job["metadata"]["finalizers"], json!(["example.com/keep"]));

        let mut other = serde_json::json!({
            "metadata": { "uid": "u2", "finalizers": ["example.com/keep", "jobtrace.dev/export"] }
        });
        assert!(
            json_patch::patch(&mut other, &patch).is_err(),
            "another Job"
        );
        let mut moved = serde_json::json!({
            "metadata": { "uid": "u1", "finalizers": ["jobtrace.dev/export", "example.com/keep"] }
        });
        assert!(
            json_patch::patch(&mut moved, &patch).is_err(),
            "never another finalizer"
        );
    }
}
