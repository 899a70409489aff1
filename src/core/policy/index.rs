//! The policies of one namespace as admission reads them, prepared once when they are stored:
//! each checked against the limits and its settings resolved against the cluster defaults; all of
//! them in order of precedence, their selectors compiled together (see `Selector`) and indexed
//! by the label each needs, so that a Job is matched only against the policies that can select it.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::JobTracePolicy;
use super::limits::{self, OverLimit};
use super::resolve::{Resolution, TraceSettings, settings};
use super::selector::{JobLabels, Names, Needs, Selector};

/// One policy, ready for admission.
#[derive(Debug)]
pub struct Prepared {
    name: String,
    priority: i32,
    selector: Option<LabelSelector>,
    /// The defaults with the policy's fields in their place: what a Job it decides gets.
    settings: Arc<TraceSettings>,
    /// Root traces or `requestContext`: every Job of the namespace must reach the webhook.
    traces_all_jobs: bool,
    /// The `metadata.uid` and `metadata.generation` it was prepared from.
    version: (Option<String>, Option<i64>),
}

impl Prepared {
    /// `policy` prepared, or why it is ignored.
    pub fn new(policy: &JobTracePolicy, defaults: &TraceSettings) -> Result<Self, OverLimit> {
        limits::check(policy)?;
        let spec = &policy.spec;
        Ok(Self {
            name: policy.metadata.name.clone().unwrap_or_default(),
            priority: spec.priority.unwrap_or(0),
            selector: spec.selector.clone(),
            settings: Arc::new(settings(defaults, spec)),
            traces_all_jobs: spec.root_traces.is_some() || spec.request_context == Some(true),
            version: version(policy),
        })
    }

    /// Whether `policy` has the spec this was prepared from (a status update changes neither its
    /// uid nor its generation).
    pub fn is_prepared_from(&self, policy: &JobTracePolicy) -> bool {
        self.version.1.is_some() && self.version == version(policy)
    }
}

fn version(policy: &JobTracePolicy) -> (Option<String>, Option<i64>) {
    (policy.metadata.uid.clone(), policy.metadata.generation)
}

/// A namespace's policies.
#[derive(Debug, Default)]
pub struct NamespacePolicies {
    /// Highest priority first, then the name that sorts first; with their selectors. A policy
    /// whose selector selects nothing is left out.
    policies: Vec<(Arc<Prepared>, Selector)>,
    /// What the selectors name.
    names: Names,
    /// By the number of the label key each needs; positions in `policies`.
    by_key: BTreeMap<u32, Needing>,
    /// Those that need no label: candidates for every Job.
    unkeyed: Vec<usize>,
    traces_all_jobs: bool,
}

/// The policies that need a label with one key.
#[derive(Debug, Default)]
struct Needing {
    /// Those that need it with this value.
    by_value: BTreeMap<u32, Vec<usize>>,
    /// Those that need it with any value.
    any: Vec<usize>,
}

impl NamespacePolicies {
    pub fn new(policies: impl IntoIterator<Item = Arc<Prepared>>) -> Self {
        let mut sorted: Vec<Arc<Prepared>> = policies.into_iter().collect();
        sorted.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        let traces_all_jobs = sorted.iter().any(|p| p.traces_all_jobs);
        let mut names = Names::default();
        let policies: Vec<(Arc<Prepared>, Selector)> = sorted
            .into_iter()
            .filter_map(|p| {
                let selector = Selector::new(p.selector.as_ref(), &mut names)?;
                Some((p, selector))
            })
            .collect();
        let mut by_key: BTreeMap<u32, Needing> = BTreeMap::new();
        let mut unkeyed = Vec::new();
        for (i, (_, selector)) in policies.iter().enumerate() {
            match selector.needs() {
                Needs::Label(key, value) => by_key
                    .entry(key)
                    .or_default()
                    .by_value
                    .entry(value)
                    .or_default()
                    .push(i),
                Needs::Key(key) => by_key.entry(key).or_default().any.push(i),
                Needs::Nothing => unkeyed.push(i),
            }
        }
        Self {
            policies,
            names,
            by_key,
            unkeyed,
            traces_all_jobs,
        }
    }

    /// How many policies here can select a Job.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether no policy here can select a Job.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Whether a policy here turns root traces or `requestContext` on.
    pub fn traces_all_jobs(&self) -> bool {
        self.traces_all_jobs
    }

    /// The policies that select a Job with `labels`, in order of precedence.
    fn selecting<'a>(
        &'a self,
        labels: &BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a Arc<Prepared>> {
        let labels = self.names.job(labels);
        self.candidates(&labels).into_iter().filter_map(move |i| {
            let (policy, selector) = &self.policies[i];
            selector.selects(&labels).then_some(policy)
        })
    }

    /// The positions of the policies that may select a Job with `labels`, in order of
    /// precedence: those indexed under one of its labels, and those that need none.
    fn candidates(&self, labels: &JobLabels) -> Vec<usize> {
        let mut candidates = self.unkeyed.clone();
        for (key, value) in labels.iter() {
            if let Some(needing) = self.by_key.get(&key) {
                candidates.extend(&needing.any);
                candidates.extend(needing.by_value.get(&value).into_iter().flatten());
            }
        }
        // Each policy is indexed once, and a Job carries each key once: no duplicates.
        candidates.sort_unstable();
        candidates
    }

    /// How many of the policies here a Job with `labels` is matched against.
    #[cfg(test)]
    pub fn matched_against(&self, labels: &BTreeMap<String, String>) -> usize {
        self.candidates(&self.names.job(labels)).len()
    }

    /// The settings for a Job with `labels`: those of the policy of highest precedence that
    /// selects it, or `defaults`.
    pub fn resolve(
        &self,
        defaults: &Arc<TraceSettings>,
        labels: &BTreeMap<String, String>,
    ) -> Resolution {
        let mut selecting = self.selecting(labels);
        let Some(winner) = selecting.next() else {
            return Resolution {
                settings: defaults.clone(),
                policy: None,
                overridden: Vec::new(),
            };
        };
        Resolution {
            settings: winner.settings.clone(),
            policy: Some(winner.name.clone()),
            overridden: selecting.map(|p| p.name.clone()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use jobtrace_testkit::fixtures::string_map as labels;

    fn policy(name: &str, spec: &serde_json::Value) -> JobTracePolicy {
        serde_json::from_value(json!({
            "apiVersion": "jobtrace.dev/v1alpha1", "kind": "JobTracePolicy",
            "metadata": { "name": name, "namespace": "reports" },
            "spec": spec
        }))
        .unwrap()
    }

    fn prepared(policies: &[JobTracePolicy]) -> NamespacePolicies {
        NamespacePolicies::new(
            policies
                .iter()
                .map(|p| Arc::new(Prepared::new(p, &TraceSettings::default()).unwrap())),
        )
    }

    /// Policies with every kind of selector, and the names of the ones a Job with `labels`
    /// could be selected by: those the index offers.
    fn selectors() -> Vec<JobTracePolicy> {
        let selectors = [
            json!(null),
            json!({}),
            json!({ "matchLabels": { "team": "data" } }),
            json!({ "matchLabels": { "team": "web" } }),
            json!({ "matchLabels": { "team": "data", "tier": "etl" } }),
            json!({ "matchLabels": { "app": "r" }, "matchExpressions": [{ "key": "env", "operator": "NotIn", "values": ["dev"] }] }),
            json!({ "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["etl", "batch"] }] }),
            json!({ "matchExpressions": [{ "key": "tier", "operator": "In", "values": [] }] }),
            json!({ "matchExpressions": [{ "key": "env", "operator": "Exists" }] }),
            json!({ "matchExpressions": [{ "key": "env", "operator": "DoesNotExist" }] }),
            json!({ "matchExpressions": [{ "key": "env", "operator": "NotIn", "values": ["prod"] }] }),
            json!({ "matchExpressions": [{ "key": "team", "operator": "Near" }] }),
        ];
        let priorities = [0, 5, -3, 5, 0, 10, 0, 1, 5, 0, -3, 100];
        selectors
            .iter()
            .zip(priorities)
            .enumerate()
            .map(|(i, (selector, priority))| {
                policy(
                    &format!("p{i:02}"),
                    &json!({ "selector": selector, "priority": priority }),
                )
            })
            .collect()
    }

    /// Label selection as jobtrace did it before selectors were compiled: strings compared.
    fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
        let Some(selector) = selector else {
            return true;
        };
        let matched = selector
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v));
        matched
            && selector.match_expressions.iter().flatten().all(|e| {
                let values = e.values.as_deref().unwrap_or_default();
                let value = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => value.is_some_and(|v| values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }

    /// The resolution of old: every policy's selector tried, the selecting ones sorted.
    fn scanned(policies: &[JobTracePolicy], labels: &BTreeMap<String, String>) -> Vec<String> {
        let mut selecting: Vec<&JobTracePolicy> = policies
            .iter()
            .filter(|p| selects(p.spec.selector.as_ref(), labels))
            .collect();
        selecting.sort_by(|a, b| {
            let priority = |p: &JobTracePolicy| p.spec.priority.unwrap_or(0);
            priority(b)
                .cmp(&priority(a))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        selecting
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect()
    }

    #[test]
    fn the_index_selects_the_policies_a_scan_of_all_of_them_would() {
        let policies = selectors();
        let index = prepared(&policies);
        let jobs = [
            labels(&[]),
            labels(&[("team", "data")]),
            labels(&[("team", "data"), ("tier", "etl")]),
            labels(&[("team", "web"), ("tier", "batch"), ("env", "dev")]),
            labels(&[("app", "r"), ("env", "prod")]),
            labels(&[("app", "r"), ("env", "dev"), ("tier", "x")]),
            labels(&[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "4"),
                ("e", "5"),
                ("team", "data"),
            ]),
        ];
        let defaults = Arc::new(TraceSettings::default());
        for job in jobs {
            let mut expected = scanned(&policies, &job).into_iter();
            let resolution = index.resolve(&defaults, &job);
            assert_eq!(resolution.policy, expected.next(), "{job:?}");
            assert_eq!(
                resolution.overridden,
                expected.collect::<Vec<_>>(),
                "{job:?}"
            );
        }
    }

    #[test]
    fn a_job_is_matched_only_against_the_policies_that_can_select_it() {
        let mut policies: Vec<JobTracePolicy> = (0..100)
            .map(|i| {
                policy(
                    &format!("team-{i:03}"),
                    &json!({ "selector": { "matchLabels": { "team": format!("t{i}") } } }),
                )
            })
            .collect();
        policies.push(policy("anything", &json!({})));
        policies.push(policy(
            "never",
            &json!({ "selector": { "matchExpressions": [{ "key": "a", "operator": "Near" }] } }),
        ));
        let index = prepared(&policies);
        assert_eq!(index.len(), 101, "the one that selects nothing is left out");
        let matched = |job: &BTreeMap<String, String>| -> (usize, Vec<String>) {
            let names = index.selecting(job).map(|p| p.name.clone()).collect();
            (index.matched_against(job), names)
        };
        assert_eq!(
            matched(&labels(&[("team", "t7"), ("app", "r")])),
            (2, vec!["anything".to_owned(), "team-007".to_owned()])
        );
        assert_eq!(
            matched(&labels(&[("app", "r")])),
            (1, vec!["anything".to_owned()])
        );
        assert_eq!(matched(&labels(&[])), (1, vec!["anything".to_owned()]));
    }

    #[test]
    fn a_policy_is_stored_with_its_settings_resolved_once() {
        let p = policy(
            "p",
            &json!({ "podSpans": false, "baggage": { "include": ["tenant"] } }),
        );
        let defaults = TraceSettings {
            baggage: crate::core::policy::KeyFilter::excluding(["user.email"]),
            ..TraceSettings::default()
        };
        let index = NamespacePolicies::new([Arc::new(Prepared::new(&p, &defaults).unwrap())]);
        let first = index.resolve(&Arc::new(defaults.clone()), &BTreeMap::new());
        let second = index.resolve(&Arc::new(defaults), &BTreeMap::new());
        assert!(
            Arc::ptr_eq(&first.settings, &second.settings),
            "shared, not rebuilt"
        );
        assert!(!first.settings.pod_spans);
        assert!(first.settings.baggage.allows("tenant"));
        assert!(!first.settings.baggage.allows("user.email"));
    }
}
