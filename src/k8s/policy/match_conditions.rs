//! Keeps the Jobs webhook's `matchConditions` in step with the policies, so Jobs without context
//! reach the webhook only in namespaces where a policy (or the cluster defaults) turns root traces
//! on: elsewhere untraced work never calls it. Every webhook replica runs this; they compute the
//! same condition, and each patch tests the value it replaces.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::Policies;
use crate::core::patch;
use crate::k8s::registration::job_match_condition_for;

/// How often the condition is compared with the policies.
const EVERY: Duration = Duration::from_secs(5);
/// The Jobs webhook in jobtrace's configuration.
const JOBS_WEBHOOK: &str = "jobs.jobtrace.dev";

/// The JSON patch that sets the Jobs webhook's first condition to `wanted`, or `None` when it
/// already is (or the configuration has no such webhook). It tests the configuration's
/// `resourceVersion`, not the old expression: the apiserver compares a `test` value with its own
/// JSON, which escapes the `&&` of a CEL expression, so such a test never matches.
pub fn patch(config: &MutatingWebhookConfiguration, wanted: &str) -> Option<json_patch::Patch> {
    let webhooks = config.webhooks.as_deref().unwrap_or_default();
    let (i, webhook) = webhooks
        .iter()
        .enumerate()
        .find(|(_, w)| w.name == JOBS_WEBHOOK)?;
    let current = webhook.match_conditions.as_deref()?.first()?;
    if current.expression == wanted {
        return None;
    }
    let i = i.to_string();
    let path = patch::pointer(["webhooks", i.as_str(), "matchConditions", "0", "expression"]);
    let version = config.metadata.resource_version.as_deref()?;
    Some(json_patch::Patch(vec![
        patch::test(patch::pointer(["metadata", "resourceVersion"]), version),
        patch::replace(path, wanted),
    ]))
}

/// Keeps the configuration `name` in step with `policies` until `shutdown`.
pub async fn keep_in_step(
    client: Client,
    name: String,
    policies: Policies,
    shutdown: CancellationToken,
) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    loop {
        if policies.synced() {
            let wanted = job_match_condition_for(policies.namespaces_tracing_all_jobs().as_deref());
            match api.get(&name).await {
                Ok(config) => {
                    if let Some(patch) = patch(&config, &wanted) {
                        let patched = api
                            .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
                            .await;
                        match patched {
                            Ok(_) => {
                                tracing::info!(configuration = %name, condition = %wanted, "webhook matchConditions follow the policies");
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "matchConditions patch lost a race; retrying");
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, configuration = %name, "can't read the webhook configuration to keep its matchConditions in step with the policies");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::registration::{
        Registration, WebhookAddress, job_match_condition, webhook_configuration,
    };

    #[test]
    fn the_condition_is_patched_only_when_it_differs_and_only_the_version_read() {
        let mut config = webhook_configuration(&Registration::new(
            WebhookAddress::Url("https://127.0.0.1:8443".into()),
            "jobtrace",
        ));
        config.metadata.resource_version = Some("41".into());
        assert_eq!(patch(&config, &job_match_condition()), None);
        let wanted = job_match_condition_for(Some(&["etl".into()]));
        let typed = patch(&config, &wanted).unwrap();
        let ops = serde_json::to_value(&typed).unwrap();
        assert_eq!(ops[0]["op"], "test");
        assert_eq!(ops[0]["path"], "/metadata/resourceVersion");
        assert_eq!(ops[0]["value"], "41");
        assert_eq!(ops[1]["path"], "/webhooks/0/matchConditions/0/expression");
        assert_eq!(ops[1]["value"], wanted);
        let mut applied = serde_json::to_value(&config).unwrap();
        json_patch::patch(&mut applied, &typed).unwrap();
        let applied: MutatingWebhookConfiguration = serde_json::from_value(applied).unwrap();
        assert_eq!(patch(&applied, &wanted), None, "in step afterwards");
    }
}
