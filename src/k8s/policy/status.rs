//! The status of each `JobTracePolicy`, kept by the exporting replica: how many Jobs in its
//! namespace it decided for and traced now (read from the `jobtrace.dev/policy` label the webhook
//! writes, on the Jobs jobtrace admitted), whether it is in force, and whether policies of higher
//! precedence took some of its Jobs. A pure count over Job metadata, and a loop that writes it,
//! reading the Jobs' metadata in pages.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::core::names;
use crate::core::policy::{JobTracePolicy, JobTracePolicyStatus, limits, selector};
use crate::core::slim::Slim;
use crate::k8s::pages::{self, Pages};

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

/// Counts of nothing yet for each of `policies` (the names of one namespace's policies): the only
/// names [`count`] counts for.
pub fn counts_for<'a>(policies: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Counts> {
    policies
        .into_iter()
        .map(|name| (name.to_owned(), Counts::default()))
        .collect()
}

/// Adds to `counts` what the Jobs (metadata only) of its namespace say. Only a Job jobtrace
/// admitted counts, one carrying the `jobtrace.dev/admitted-at` the Job webhook writes on each Job
/// it traces, not any Job labelled by hand; and only for the names `counts` holds (the policies
/// that exist), so that whatever the Jobs' labels name, the counts stay one per policy.
pub fn count<'a>(
    counts: &mut BTreeMap<String, Counts>,
    jobs: impl IntoIterator<Item = &'a ObjectMeta>,
) {
    for meta in jobs {
        let admitted = meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(names::ADMITTED_AT));
        if !admitted {
            continue;
        }
        let labels = meta.labels.as_ref();
        let decided = labels
            .and_then(|l| l.get(names::POLICY))
            .and_then(|policy| counts.get_mut(policy));
        if let Some(entry) = decided {
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
            if let Some(entry) = counts.get_mut(loser.trim()) {
                entry.overridden += 1;
            }
        }
    }
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
    let invalid = selector::invalid(policy.spec.selector.as_ref());
    let ready = match (limits::check(policy), invalid) {
        (Ok(()), None) => condition(
            "Ready",
            true,
            "Accepted",
            "in force for the Jobs it selects that reach the webhook".to_owned(),
        ),
        (Ok(()), Some(why)) => condition(
            "Ready",
            false,
            "InvalidSelector",
            format!("selects no Job: {why}"),
        ),
        (Err(over), _) => condition(
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
        let mut counts = counts_for(policies.iter().filter_map(|p| p.metadata.name.as_deref()));
        let jobs: Api<Slim<PartialObjectMeta<Job>>> = Api::namespaced(client.clone(), &ns);
        let params = ListParams::default().labels(names::POLICY);
        let mut pages = Pages::new(jobs, params, pages::METADATA);
        while let Some(page) = pages.next().await {
            count(&mut counts, page?.iter().map(|j| &j.object.metadata));
        }
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

    /// The metadata of a Job jobtrace admitted, with these labels and annotations.
    fn meta(labels: &serde_json::Value, annotations: &serde_json::Value) -> ObjectMeta {
        let mut meta = by_hand(labels, annotations);
        meta.annotations.get_or_insert_default().insert(
            names::ADMITTED_AT.to_owned(),
            "2026-11-23T10:00:00.000000Z".to_owned(),
        );
        meta
    }

    /// The metadata of a Job jobtrace never admitted, labelled and annotated by its creator.
    fn by_hand(labels: &serde_json::Value, annotations: &serde_json::Value) -> ObjectMeta {
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
        let mut counts = counts_for(["a", "b", "c"]);
        count(&mut counts, jobs.iter());
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

    #[test]
    fn a_job_labelled_by_hand_is_not_counted() {
        let jobs = [by_hand(
            &json!({ "jobtrace.dev/policy": "a", "jobtrace.dev/traced": "true" }),
            &json!({ "jobtrace.dev/policy-overridden": "a" }),
        )];
        let mut counts = counts_for(["a"]);
        count(&mut counts, jobs.iter());
        assert_eq!(counts["a"], Counts::default());
    }

    #[test]
    fn names_of_no_policy_are_not_counted_whatever_the_jobs_say() {
        let jobs: Vec<ObjectMeta> = (0..1_000)
            .map(|i| {
                meta(
                    &json!({ "jobtrace.dev/policy": format!("made-up-{i}") }),
                    &json!({ "jobtrace.dev/policy-overridden": format!("a,other-{i}") }),
                )
            })
            .collect();
        let mut counts = counts_for(["a"]);
        count(&mut counts, jobs.iter());
        assert_eq!(counts.len(), 1, "one count per policy");
        assert_eq!(
            counts["a"],
            Counts {
                selected: 0,
                traced: 0,
                overridden: 1_000
            }
        );
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
    fn a_policy_whose_selector_is_invalid_is_not_ready_and_says_why() {
        for (operator, values) in [("Gt", Some(vec!["1".to_owned()])), ("In", None)] {
            let mut invalid = policy();
            invalid.spec.selector = Some(
                serde_json::from_value(serde_json::json!({
                    "matchLabels": { "team": "data" },
                    "matchExpressions": [
                        { "key": "tier", "operator": "Exists" },
                        { "key": "tier", "operator": operator, "values": values },
                    ],
                }))
                .unwrap(),
            );
            let status = status(
                &invalid,
                Counts::default(),
                "2026-11-23T10:00:00Z".parse().unwrap(),
            );
            let ready = &status.conditions[0];
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_str()),
                ("False", "InvalidSelector"),
                "{operator}"
            );
            assert!(
                ready.message.contains(&format!(
                    "spec.selector.matchExpressions[1] (operator \"{operator}\")"
                )),
                "{}",
                ready.message
            );
        }
        let valid = policy();
        assert_eq!(
            status(
                &valid,
                Counts::default(),
                "2026-11-23T10:00:00Z".parse().unwrap()
            )
            .conditions[0]
                .reason,
            "Accepted"
        );
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
