//! Which settings apply to one Job: the cluster-wide defaults, overridden field by field by the
//! one policy of its namespace that selects it and takes precedence.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::index::{NamespacePolicies, Prepared};
use super::{CronJobMode, JobTracePolicy, JobTracePolicySpec, KeyFilter, Relationship};

/// How the Jobs a policy selects are traced. The cluster-wide defaults (flags and Helm values)
/// are one, in force where no policy says otherwise; each policy's are those, overridden field by
/// field by what the policy sets.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::struct_excessive_bools)] // one per setting, as the policy fields are
pub struct TraceSettings {
    /// The sampling ratio of root traces for Jobs without context; `None`: no root traces.
    pub root_traces: Option<f64>,
    pub relationship: Relationship,
    pub cron_jobs: CronJobMode,
    pub baggage: KeyFilter,
    pub containers: KeyFilter,
    pub pod_spans: bool,
    pub resource_attributes: bool,
    pub job_labels: Vec<String>,
    /// Read the context from the create request's headers when the annotations carry none.
    pub request_context: bool,
    /// Hold each sampled traced Job with a finalizer until its spans are exported.
    pub hold_for_export: bool,
    /// Hold the pods of each Job held for export too (pod spans on), with the same finalizer in
    /// its pod template: a write per pod. The cluster's alone (`--hold-pods`): it needs the
    /// `patch` verb on pods, which the chart grants only then.
    pub hold_pods: bool,
}

impl Default for TraceSettings {
    fn default() -> Self {
        Self {
            root_traces: None,
            relationship: Relationship::Child,
            cron_jobs: CronJobMode::NewTracePerRun,
            baggage: KeyFilter::default(),
            containers: KeyFilter::default(),
            pod_spans: true,
            resource_attributes: true,
            job_labels: Vec::new(),
            request_context: false,
            hold_for_export: false,
            hold_pods: false,
        }
    }
}

/// The outcome of resolving: the settings, the policy they came from, and the other policies
/// that selected the Job too but lost to it. The settings are shared with the stored policy (or
/// the defaults), not copied for each Job.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub settings: Arc<TraceSettings>,
    pub policy: Option<String>,
    pub overridden: Vec<String>,
}

/// Resolves the settings for a Job with `labels` among `policies` (those of its namespace), as
/// admission does with the policies it keeps prepared; a policy over the limits is ignored.
///
/// Of the policies whose selector selects the Job, the one with the highest `priority` wins, then
/// the one whose name sorts first; its fields override the defaults one by one, and what it
/// leaves out stays as the defaults say. Policies are never merged with each other.
pub fn resolve<'a>(
    defaults: &TraceSettings,
    policies: impl IntoIterator<Item = &'a JobTracePolicy>,
    labels: &BTreeMap<String, String>,
) -> Resolution {
    let prepared = policies
        .into_iter()
        .filter_map(|p| Prepared::new(p, defaults).ok())
        .map(Arc::new);
    NamespacePolicies::new(prepared).resolve(&Arc::new(defaults.clone()), labels)
}

/// The settings of a Job `spec` decides: each field it sets in place of the default's, as a
/// whole, except the cluster's baggage exclusions, which stay on top of its own.
pub(super) fn settings(defaults: &TraceSettings, spec: &JobTracePolicySpec) -> TraceSettings {
    let mut effective = defaults.clone();
    if let Some(root) = &spec.root_traces {
        effective.root_traces = (root.enabled != Some(false)).then_some(root.ratio);
    }
    if let Some(relationship) = spec.relationship {
        effective.relationship = relationship;
    }
    if let Some(mode) = spec.cron_jobs {
        effective.cron_jobs = mode;
    }
    if let Some(filter) = &spec.baggage {
        effective.baggage = filter.clone();
        effective
            .baggage
            .exclude
            .extend(defaults.baggage.exclude.iter().cloned());
    }
    if let Some(filter) = &spec.containers {
        effective.containers = filter.clone();
    }
    if let Some(on) = spec.request_context {
        effective.request_context = on;
    }
    if let Some(on) = spec.hold_for_export {
        effective.hold_for_export = on;
    }
    if let Some(on) = spec.pod_spans {
        effective.pod_spans = on;
    }
    if let Some(on) = spec.resource_attributes {
        effective.resource_attributes = on;
    }
    if let Some(keys) = &spec.job_labels {
        effective.job_labels.clone_from(keys);
    }
    effective
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(name: &str, spec: &serde_json::Value) -> JobTracePolicy {
        serde_json::from_value(json!({
            "apiVersion": "jobtrace.dev/v1alpha1", "kind": "JobTracePolicy",
            "metadata": { "name": name, "namespace": "reports" },
            "spec": spec
        }))
        .unwrap()
    }

    use jobtrace_testkit::fixtures::string_map as labels;

    #[test]
    fn without_policies_the_defaults_apply() {
        let defaults = TraceSettings {
            root_traces: Some(0.5),
            ..TraceSettings::default()
        };
        let resolution = resolve(&defaults, [], &BTreeMap::new());
        assert_eq!(*resolution.settings, defaults);
        assert_eq!(resolution.policy, None);
    }

    #[test]
    fn each_field_overrides_its_default_alone() {
        let cases = [
            (
                json!({ "rootTraces": { "ratio": 0.25 } }),
                TraceSettings {
                    root_traces: Some(0.25),
                    ..TraceSettings::default()
                },
            ),
            (
                json!({ "relationship": "link" }),
                TraceSettings {
                    relationship: Relationship::Link,
                    ..TraceSettings::default()
                },
            ),
            (
                json!({ "cronJobs": "off" }),
                TraceSettings {
                    cron_jobs: CronJobMode::Off,
                    ..TraceSettings::default()
                },
            ),
            (
                json!({ "cronJobs": "child" }),
                TraceSettings {
                    cron_jobs: CronJobMode::Child,
                    ..TraceSettings::default()
                },
            ),
            (
                json!({ "baggage": { "exclude": ["user.email"] } }),
                TraceSettings {
                    baggage: KeyFilter::excluding(["user.email"]),
                    ..TraceSettings::default()
                },
            ),
            (
                json!({ "containers": { "include": ["main"] } }),
                TraceSettings {
                    containers: KeyFilter::including(["main"]),
                    ..TraceSettings::default()
                },
            ),
            (
                json!({ "podSpans": false }),
                TraceSettings {
                    pod_spans: false,
                    ..TraceSettings::default()
                },
            ),
            (
                json!({ "resourceAttributes": false }),
                TraceSettings {
                    resource_attributes: false,
                    ..TraceSettings::default()
                },
            ),
            (
                json!({ "jobLabels": ["team"] }),
                TraceSettings {
                    job_labels: vec!["team".into()],
                    ..TraceSettings::default()
                },
            ),
        ];
        for (spec, expected) in cases {
            let p = policy("p", &spec);
            let resolution = resolve(&TraceSettings::default(), [&p], &BTreeMap::new());
            assert_eq!(*resolution.settings, expected, "{spec}");
            assert_eq!(resolution.policy.as_deref(), Some("p"));
        }
    }

    #[test]
    fn a_policy_can_turn_root_traces_off_and_a_missing_ratio_is_all() {
        let defaults = TraceSettings {
            root_traces: Some(0.5),
            ..TraceSettings::default()
        };
        let off = policy("off", &json!({ "rootTraces": { "enabled": false } }));
        assert_eq!(
            resolve(&defaults, [&off], &BTreeMap::new())
                .settings
                .root_traces,
            None
        );
        let all = policy("all", &json!({ "rootTraces": {} }));
        assert_eq!(
            resolve(&TraceSettings::default(), [&all], &BTreeMap::new())
                .settings
                .root_traces,
            Some(1.0)
        );
    }

    #[test]
    fn the_clusters_baggage_exclusions_always_apply() {
        let defaults = TraceSettings {
            baggage: KeyFilter::excluding(["user.email"]),
            ..TraceSettings::default()
        };
        let p = policy(
            "p",
            &json!({ "baggage": { "include": ["user.email", "tenant"] } }),
        );
        let resolution = resolve(&defaults, [&p], &BTreeMap::new());
        let baggage = &resolution.settings.baggage;
        assert!(baggage.allows("tenant"));
        assert!(
            !baggage.allows("user.email"),
            "a namespace can't bring it back"
        );
    }

    #[test]
    fn a_policy_that_does_not_select_the_job_changes_nothing() {
        let p = policy(
            "p",
            &json!({ "selector": { "matchLabels": { "team": "data" } }, "podSpans": false }),
        );
        let resolution = resolve(&TraceSettings::default(), [&p], &labels(&[("team", "web")]));
        assert!(resolution.settings.pod_spans);
        assert_eq!(resolution.policy, None);
        let resolution = resolve(
            &TraceSettings::default(),
            [&p],
            &labels(&[("team", "data")]),
        );
        assert!(!resolution.settings.pod_spans);
    }

    #[test]
    fn the_highest_priority_wins_and_the_others_are_overridden() {
        let low = policy("a-low", &json!({ "podSpans": false }));
        let high = policy("z-high", &json!({ "priority": 10, "relationship": "link" }));
        let resolution = resolve(&TraceSettings::default(), [&low, &high], &BTreeMap::new());
        assert_eq!(resolution.policy.as_deref(), Some("z-high"));
        assert_eq!(resolution.overridden, ["a-low"]);
        assert_eq!(resolution.settings.relationship, Relationship::Link);
        assert!(resolution.settings.pod_spans, "policies are never merged");
    }

    #[test]
    fn equal_priorities_go_to_the_name_that_sorts_first_in_any_order() {
        let a = policy("alpha", &json!({ "cronJobs": "off" }));
        let b = policy("beta", &json!({ "cronJobs": "child" }));
        for order in [[&a, &b], [&b, &a]] {
            let resolution = resolve(&TraceSettings::default(), order, &BTreeMap::new());
            assert_eq!(resolution.policy.as_deref(), Some("alpha"));
            assert_eq!(resolution.overridden, ["beta"]);
            assert_eq!(resolution.settings.cron_jobs, CronJobMode::Off);
        }
    }
}
