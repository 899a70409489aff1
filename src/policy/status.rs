//! The status of each `JobTracePolicy`, kept by the exporting replica: how many Jobs in its
//! namespace it decided for and traced now (read from the `jobtrace.dev/policy` label the webhook
//! writes), whether it is in force, and whether policies of higher precedence took some of its
//! Jobs. A pure count over Job metadata, and a loop that writes it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::{JobTracePolicy, JobTracePolicyStatus, limits};
use crate::names;

/// How often the counts are brought up to date.
const EVERY: Duration = Duration::from_secs(15);

/// What the Jobs of one namespace say of one policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub selected: i64,
    pub traced: i64,
    /// Jobs it selected too, decided by a policy of higher precedence.
    pub overridden: i64,
}

/// Counts, per policy name, the Jobs (metadata only) of one namespace.
pub fn count<'a>(jobs: impl IntoIterator<Item = &'a ObjectMeta>) -> BTreeMap<String, Counts> {
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    for meta in jobs {
        let labels = meta.labels.as_ref();
        if let Some(policy) = labels.and_then(|l| l.get(names::POLICY)) {
            let entry = counts.entry(policy.clone()).or_default();
            entry.selected += 1;
            if labels
                .and_then(|l| l.get(names::TRACED_LABEL))
                .map(String::as_str)
                == Some("true")
            {
                entry.traced += 1;
            }
        }
        let losers = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::POLICY_OVERRIDDEN));
        for loser in losers.into_iter().flat_map(|l| l.split(',')) {
            counts
                .entry(loser.trim().to_owned())
                .or_default()
                .overridden += 1;
        }
    }
    counts
}

/// The status a policy gets from its counts; `previous` keeps the conditions' transition times.
pub fn status(policy: &JobTracePolicy, counts: Counts, now: Timestamp) -> JobTracePolicyStatus {
    let generation = policy.metadata.generation;
    let previous = policy.status.as_ref();
    let condition = |type_: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" };
        let unchanged = previous
            .into_iter()
            .flat_map(|s| &s.conditions)
            .find(|c| c.type_ == type_ && c.status == status);
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: unchanged.map_or(Time(now), |c| c.last_transition_time.clone()),
        }
    };
    let overridden = if counts.overridden > 0 {
        condition(
            "Overridden",
            true,
            "HigherPrecedence",
            format!(
                "{} Job(s) it selects are decided by a policy of higher priority (or of the same \
                 priority and a name that sorts first): see their {} label",
                counts.overridden,
                names::POLICY
            ),
        )
    } else {
        condition(
            "Overridden",
            false,
            "InForce",
            "no other policy takes precedence".to_owned(),
        )
    };
    let ready = match limits::check(policy) {
        Ok(()) => condition(
            "Ready",
            true,
            "Accepted",
            "in force for the Jobs it selects that reach the webhook".to_owned(),
        ),
        Err(over) => condition(
            "Ready",
            false,
            "ExceedsLimits",
            format!(
                "ignored, as if it did not exist: {over} (the CRD refuses such a policy now; it \
                 was stored before): bring it within the limits"
            ),
        ),
    };
    JobTracePolicyStatus {
        observed_generation: generation,
        conditions: vec![ready, overridden],
        selected_jobs: Some(counts.selected),
        traced_jobs: Some(counts.traced),
    }
}

/// Whether two statuses differ in more than the conditions' transition times.
fn differs(a: Option<&JobTracePolicyStatus>, b: &JobTracePolicyStatus) -> bool {
    let Some(a) = a else { return true };
    let key = |s: &JobTracePolicyStatus| {
        (
            s.observed_generation,
            s.selected_jobs,
            s.traced_jobs,
            s.conditions
                .iter()
                .map(|c| {
                    (
                        c.type_.clone(),
                        c.status.clone(),
                        c.reason.clone(),
                        c.message.clone(),
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    key(a) != key(b)
}

/// Keeps every policy's status (of `namespace`, or all) up to date until `shutdown`.
pub async fn report(client: Client, namespace: Option<String>, shutdown: CancellationToken) {
    loop {
        if let Err(e) = report_once(&client, namespace.as_deref()).await {
            tracing::warn!(error = %e, "could not update the status of the JobTracePolicies");
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn report_once(client: &Client, namespace: Option<&str>) -> Result<(), kube::Error> {
    let policies: Api<JobTracePolicy> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let list = policies.list(&ListParams::default()).await?;
    let mut by_namespace: BTreeMap<String, Vec<JobTracePolicy>> = BTreeMap::new();
    for policy in list.items {
        let ns = policy.metadata.namespace.clone().unwrap_or_default();
        by_namespace.entry(ns).or_default().push(policy);
    }
    for (ns, policies) in by_namespace {
        let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
        let metas = jobs
            .list_metadata(&ListParams::default().labels(names::POLICY))
            .await?;
        let counts = count(metas.items.iter().map(|m| &m.metadata));
        let api: Api<JobTracePolicy> = Api::namespaced(client.clone(), &ns);
        for policy in policies {
            let name = policy.metadata.name.clone().unwrap_or_default();
            let status = status(
                &policy,
                counts.get(&name).copied().unwrap_or_default(),
                Timestamp::now(),
            );
            if differs(policy.status.as_ref(), &status) {
                let patch = serde_json::json!({ "status": status });
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(labels: &serde_json::Value, annotations: &serde_json::Value) -> ObjectMeta {
        serde_json::from_value(json!({ "labels": labels, "annotations": annotations })).unwrap()
    }

    #[test]
    fn jobs_are_counted_for_the_policy_that_decided_and_the_ones_it_overrode() {
        let jobs = [
            meta(
                &json!({ "jobtrace.dev/policy": "a", "jobtrace.dev/traced": "true" }),
                &json!({}),
            ),
            meta(
                &json!({ "jobtrace.dev/policy": "a" }),
                &json!({ "jobtrace.dev/policy-overridden": "b,c" }),
            ),
            meta(
                &json!({ "jobtrace.dev/policy": "b", "jobtrace.dev/traced": "true" }),
                &json!({}),
            ),
            meta(&json!({ "jobtrace.dev/traced": "true" }), &json!({})),
        ];
        let counts = count(jobs.iter());
        assert_eq!(
            counts["a"],
            Counts {
                selected: 2,
                traced: 1,
                overridden: 0
            }
        );
        assert_eq!(
            counts["b"],
            Counts {
                selected: 1,
                traced: 1,
                overridden: 1
            }
        );
        assert_eq!(
            counts["c"],
            Counts {
                selected: 0,
                traced: 0,
                overridden: 1
            }
        );
        assert_eq!(counts.len(), 3);
    }

    fn policy() -> JobTracePolicy {
        serde_json::from_value(json!({
            "apiVersion": "jobtrace.dev/v1alpha1", "kind": "JobTracePolicy",
            "metadata": { "name": "a", "namespace": "reports", "generation": 3 },
            "spec": {}
        }))
        .unwrap()
    }

    #[test]
    fn the_status_says_ready_counts_and_whether_it_was_overridden() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let counts = Counts {
            selected: 4,
            traced: 3,
            overridden: 2,
        };
        let status = status(&policy(), counts, now);
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(
            (status.selected_jobs, status.traced_jobs),
            (Some(4), Some(3))
        );
        let find = |t: &str| status.conditions.iter().find(|c| c.type_ == t).unwrap();
        assert_eq!(find("Ready").status, "True");
        assert_eq!(find("Overridden").status, "True");
        assert!(find("Overridden").message.starts_with("2 Job(s)"));
        assert_eq!(find("Ready").observed_generation, Some(3));
    }

    #[test]
    fn a_policy_over_the_limits_is_not_ready_and_says_why() {
        let mut over = policy();
        over.spec.job_labels = Some((0..=limits::JOB_LABELS).map(|i| format!("k{i}")).collect());
        let status = status(
            &over,
            Counts::default(),
            "2026-11-23T10:00:00Z".parse().unwrap(),
        );
        let ready = &status.conditions[0];
        assert_eq!(
            (
                ready.type_.as_str(),
                ready.status.as_str(),
                ready.reason.as_str()
            ),
            ("Ready", "False", "ExceedsLimits")
        );
        assert!(
            ready
                .message
                .contains("spec.jobLabels has 33 entries, more than 32"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let mut with_status = policy();
        let first = status(
            &with_status,
            Counts::default(),
            "2026-11-23T10:00:00Z".parse().unwrap(),
        );
        with_status.status = Some(first.clone());
        let later = status(
            &with_status,
            Counts {
                selected: 1,
                ..Counts::default()
            },
            "2026-11-23T11:00:00Z".parse().unwrap(),
        );
        assert_eq!(
            later.conditions[0].last_transition_time,
            first.conditions[0].last_transition_time
        );
        assert!(differs(Some(&first), &later), "the counts changed");
        let same = status(
            &with_status,
            Counts::default(),
            "2026-11-23T12:00:00Z".parse().unwrap(),
        );
        assert!(
            !differs(Some(&first), &same),
            "only times would change: no write"
        );
    }
}
