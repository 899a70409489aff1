//! The `JobTracePolicy` custom resource (`jobtrace.dev/v1alpha1`, namespaced): what a namespace's
//! platform team says about tracing its Jobs. The schema, its CEL rules and printer columns come
//! from these types (`jobtrace crds` prints them; `crds/` holds the output). Resolving which
//! settings apply to one Job is pure: [`resolve`].

pub mod index;
pub mod limits;
mod resolve;
pub mod sampling;
pub mod selector;

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use resolve::{Resolution, TraceSettings, resolve};

/// Settings for the Jobs of one namespace, or of those its `selector` picks. Every field is
/// optional: what a policy leaves out comes from the cluster-wide defaults (flags and Helm values).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "jobtrace.dev",
    version = "v1alpha1",
    kind = "JobTracePolicy",
    plural = "jobtracepolicies",
    shortname = "jtp",
    category = "jobtrace",
    namespaced,
    status = "JobTracePolicyStatus",
    doc = "Tracing settings for the Jobs of a namespace.",
    printcolumn(
        name = "Root traces",
        type_ = "number",
        json_path = ".spec.rootTraces.ratio",
        description = "Share of Jobs without context traced as roots"
    ),
    printcolumn(
        name = "Relationship",
        type_ = "string",
        json_path = ".spec.relationship"
    ),
    printcolumn(name = "CronJobs", type_ = "string", json_path = ".spec.cronJobs"),
    printcolumn(
        name = "Selected",
        type_ = "integer",
        json_path = ".status.selectedJobs"
    ),
    printcolumn(name = "Traced", type_ = "integer", json_path = ".status.tracedJobs"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("self.metadata.name.size() <= 63").message(
        "metadata.name: at most 63 characters, since it is written as a label value on the Jobs it selects"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct JobTracePolicySpec {
    /// Which Jobs of the namespace the policy applies to; all of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "limits::selector_schema")]
    pub selector: Option<LabelSelector>,
    /// Decides between policies that select the same Job: the highest wins, then the name that
    /// sorts first. 0 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= -1000 && self <= 1000").message("spec.priority: between -1000 and 1000"))]
    pub priority: Option<i32>,
    /// Jobs without trace context get a trace of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_traces: Option<RootTraces>,
    /// How a Job's span relates to its creator's: `child` (in the creator's trace) or `link` (a
    /// new trace, linked to the creator's span).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationship: Option<Relationship>,
    /// How runs of a CronJob are traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_jobs: Option<CronJobMode>,
    /// Which baggage members reach the Jobs' containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "limits::baggage_schema")]
    pub baggage: Option<KeyFilter>,
    /// Which containers (and init containers), by name, get the trace context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "limits::containers_schema")]
    pub containers: Option<KeyFilter>,
    /// Whether each pod attempt gets a span of its own (and pods reach the pod webhook at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_spans: Option<bool>,
    /// Whether `OTEL_RESOURCE_ATTRIBUTES` is set or extended with the Kubernetes attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_attributes: Option<bool>,
    /// Read the trace context from the `traceparent`, `tracestate` and `baggage` headers of the
    /// request that creates the Job when its annotations carry none (an annotation always wins):
    /// a creator whose HTTP client is instrumented needs no code at all. Every Job of the
    /// namespace then calls the webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_context: Option<bool>,
    /// Hold each traced, sampled Job with the finalizer `jobtrace.dev/export` until its spans are
    /// exported, so that a Job deleted early (`ttlSecondsAfterFinished`, a CronJob's history
    /// limit, `kubectl delete`) or while no controller runs still has its trace; the hold is
    /// bounded by the controller's `--hold-timeout`. `false`: no finalizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_for_export: Option<bool>,
    /// Job labels copied to the Job span as `k8s.job.label.<key>` attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::JOB_LABELS), inner(length(max = limits::LABEL_KEY)))]
    #[x_kube(validation = Rule::new("self.all(k, k.size() > 0 && k.size() <= 317)").message("spec.jobLabels: each entry is a label key"))]
    pub job_labels: Option<Vec<String>>,
}

/// Traces for Jobs that carry no context.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RootTraces {
    /// `false` turns root traces off for the Jobs the policy selects, even where the cluster
    /// defaults turn them on. `true` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Share of such Jobs whose trace is sampled, decided from the trace id alone (so any replica
    /// decides the same); the others still get a context, with the sampled flag off.
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message("spec.rootTraces.ratio: between 0 and 1"))]
    #[serde(default = "all")]
    pub ratio: f64,
}

fn all() -> f64 {
    1.0
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Relationship {
    /// The Job span is a child of the creator's span, in its trace.
    #[default]
    Child,
    /// The Job span starts a trace of its own with a span link to the creator's span: for long
    /// or fan-out flows, as the Kubernetes object-tracing proposal prefers.
    Link,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum CronJobMode {
    /// Each run is a trace of its own, linked to the context its CronJob's `jobTemplate`
    /// carries, if any.
    #[default]
    NewTracePerRun,
    /// Each run is a child of the context the `jobTemplate` carries (one trace for every run).
    Child,
    /// Runs of CronJobs are not traced.
    Off,
}

/// Names kept or dropped: with `include`, only those; then `exclude` drops names. For baggage, the
/// cluster-wide exclusions (`--baggage-exclude`) apply on top of a policy's: a namespace can
/// drop more keys, never bring back one the cluster drops. Sets, built when a policy is read, so
/// each name is looked up, not searched for.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::NAMES))]
    pub include: Option<BTreeSet<String>>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    #[schemars(length(max = limits::NAMES))]
    pub exclude: BTreeSet<String>,
}

impl KeyFilter {
    /// Every name but `names`.
    pub fn excluding<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            include: None,
            exclude: names.into_iter().map(Into::into).collect(),
        }
    }

    /// Only `names`.
    pub fn including<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            include: Some(names.into_iter().map(Into::into).collect()),
            exclude: BTreeSet::new(),
        }
    }

    pub fn allows(&self, name: &str) -> bool {
        self.include
            .as_ref()
            .is_none_or(|names| names.contains(name))
            && !self.exclude.contains(name)
    }
}

/// What the controller observed of a policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobTracePolicyStatus {
    /// The generation of the spec these counts and conditions are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the policy is valid and in force; `Overridden`: a policy of higher precedence
    /// also selects some of its Jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "limits::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Jobs in the namespace now that the policy decided for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_jobs: Option<i64>,
    /// Of those, the ones traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traced_jobs: Option<i64>,
}

/// The CRD as `jobtrace crds` prints it and `crds/` holds it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let yaml = serde_saphyr::to_string(&JobTracePolicy::crd())
        .expect("a CustomResourceDefinition always serializes");
    format!("# Generated by `jobtrace crds` from the Rust types; do not edit by hand.\n{yaml}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::json;

    #[test]
    fn key_filters_include_then_exclude() {
        let all = KeyFilter::default();
        assert!(all.allows("main"));
        let only = KeyFilter {
            include: Some(["main".into(), "side".into()].into()),
            exclude: ["side".into()].into(),
        };
        assert!(only.allows("main"));
        assert!(!only.allows("side"));
        assert!(!only.allows("other"));
        assert!(
            !KeyFilter::including::<&str>([]).allows("main"),
            "include: [] keeps none"
        );
        assert!(!KeyFilter::excluding(["side"]).allows("side"));
        assert!(KeyFilter::excluding(["side"]).allows("main"));
    }

    #[test]
    fn key_filters_read_from_a_policy_decide_as_its_lists_say() {
        // The lists as written, duplicates and all: each name as a scan of the lists decided it.
        let include = ["main", "side", "main", "fetch", "side-car"];
        let exclude = ["fetch", "fetch", "absent"];
        let filter: KeyFilter =
            serde_json::from_value(json!({ "include": include, "exclude": exclude })).unwrap();
        for name in [
            "main", "side", "fetch", "side-car", "absent", "other", "", "MAIN", "mai",
        ] {
            let scanned = include.contains(&name) && !exclude.contains(&name);
            assert_eq!(filter.allows(name), scanned, "{name}");
        }
        let excluding: KeyFilter = serde_json::from_value(json!({ "exclude": exclude })).unwrap();
        for name in ["main", "fetch", "absent", ""] {
            assert_eq!(excluding.allows(name), !exclude.contains(&name), "{name}");
        }
        assert_eq!(
            serde_json::to_value(&filter).unwrap(),
            json!({ "include": ["fetch", "main", "side", "side-car"], "exclude": ["absent", "fetch"] }),
            "written back as the sets they are"
        );
    }

    #[test]
    fn the_checked_in_crds_are_the_generated_ones() {
        let generated = crd_yaml();
        for path in [
            "crds/jobtracepolicies.jobtrace.dev.yaml",
            "charts/jobtrace/crds/jobtracepolicies.jobtrace.dev.yaml",
        ] {
            let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(
                checked_in == generated,
                "{path} is out of date: run `cargo run -- crds > {path}`"
            );
        }
    }

    #[test]
    fn the_crd_has_its_rules_columns_and_status() {
        let crd = serde_json::to_value(JobTracePolicy::crd()).unwrap();
        assert_eq!(crd["metadata"]["name"], "jobtracepolicies.jobtrace.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert!(version["subresources"]["status"].is_object());
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            columns,
            [
                "Root traces",
                "Relationship",
                "CronJobs",
                "Selected",
                "Traced",
                "Ready",
                "Age"
            ]
        );
        let text = crd.to_string();
        for message in [
            "spec.rootTraces.ratio: between 0 and 1",
            "spec.priority: between -1000 and 1000",
            "metadata.name: at most 63 characters",
        ] {
            assert!(text.contains(message), "{message}");
        }
    }
}
