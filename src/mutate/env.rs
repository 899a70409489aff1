//! Injection of environment variables into the containers of a pod template.

use k8s_openapi::api::core::v1::{Container, EnvVar};
use serde_json::{Value, json};

use super::{Ops, pointer};
use crate::context::Warning;
use crate::names::env;

/// What every container of a traced pod should carry, prepared once for all containers.
pub(super) struct Injection {
    /// Literal variables (`TRACEPARENT`, `TRACESTATE`, `BAGGAGE`) and their JSON.
    vars: Vec<(&'static str, String, Value)>,
    /// Resource attributes for `OTEL_RESOURCE_ATTRIBUTES`; `k8s.container.name` is added per
    /// container.
    attributes: Vec<(&'static str, String)>,
    /// `attributes` joined, for the common case of a container without its own value.
    joined: String,
    /// The downward-API variables `attributes` reference, and their JSON.
    helpers: Vec<(&'static str, Value)>,
}

/// Downward-API variables that resource attributes reference with `$(NAME)`, and their fields.
const HELPERS: [(&str, &str); 4] = [
    (
        env::JOB_NAME,
        "metadata.labels['batch.kubernetes.io/job-name']",
    ),
    (
        env::JOB_UID,
        "metadata.labels['batch.kubernetes.io/controller-uid']",
    ),
    (env::POD_NAME, "metadata.name"),
    (env::POD_UID, "metadata.uid"),
];

impl Injection {
    pub fn new(vars: Vec<(&'static str, String)>, attributes: Vec<(&'static str, String)>) -> Self {
        let vars = vars
            .into_iter()
            .map(|(name, value)| {
                let json = json!({ "name": name, "value": value });
                (name, value, json)
            })
            .collect();
        let helpers = HELPERS
            .iter()
            .filter(|(name, _)| referenced(&attributes, name))
            .map(|(name, field)| {
                let json = json!({
                    "name": name,
                    "valueFrom": { "fieldRef": { "fieldPath": field } }
                });
                (*name, json)
            })
            .collect();
        Self {
            vars,
            joined: join_attributes(&attributes),
            attributes,
            helpers,
        }
    }

    /// Adds the injection to `container`, whose JSON pointer is `path`.
    pub fn inject(
        &self,
        ops: &mut Ops,
        path: &[&str],
        container: &Container,
        warnings: &mut Vec<Warning>,
    ) {
        let existing = container.env.as_deref().unwrap_or_default();
        let find = |name: &str| existing.iter().position(|v| v.name == name);
        let mut appended: Vec<Value> = Vec::new();
        for (name, value, json) in &self.vars {
            match find(name) {
                None => appended.push(json.clone()),
                Some(i) if existing[i].value.as_ref() == Some(value) => {}
                Some(_) => warnings.push(Warning {
                    reason: "env_user_set",
                    message: format!(
                        "container {:?} sets {name} itself; jobtrace left it unchanged",
                        container.name
                    ),
                }),
            }
        }

        let env_path = |tail: &[&str]| {
            pointer(
                path.iter()
                    .copied()
                    .chain(["env"])
                    .chain(tail.iter().copied()),
            )
        };
        let container_attribute = format!("k8s.container.name={}", container.name);
        match find(env::RESOURCE_ATTRIBUTES) {
            None => {
                appended.extend(self.missing_helpers(existing, |_| true));
                appended.push(json!({
                    "name": env::RESOURCE_ATTRIBUTES,
                    "value": format!("{},{container_attribute}", self.joined),
                }));
            }
            Some(i) => {
                if let Some(value) = self.extend_user_attributes(container, &existing[i], warnings)
                {
                    let helpers = self.missing_helpers(existing, |name| value.contains(name));
                    for (k, helper) in helpers.iter().enumerate() {
                        ops.add(env_path(&[&(i + k).to_string()]), helper.clone());
                    }
                    let index = (i + helpers.len()).to_string();
                    ops.add(env_path(&[&index, "value"]), Value::String(value));
                }
            }
        }

        if container.env.is_none() {
            if !appended.is_empty() {
                ops.add(env_path(&[]), Value::Array(appended));
            }
        } else {
            for var in appended {
                ops.add(env_path(&["-"]), var);
            }
        }
    }

    /// The helper variables `container` lacks, among those `wanted` by name.
    fn missing_helpers(&self, existing: &[EnvVar], wanted: impl Fn(&str) -> bool) -> Vec<Value> {
        self.helpers
            .iter()
            .filter(|(name, _)| wanted(name) && !existing.iter().any(|v| v.name == *name))
            .map(|(_, json)| json.clone())
            .collect()
    }

    /// The user's `OTEL_RESOURCE_ATTRIBUTES` with the attributes it lacks appended; `None` when
    /// nothing is missing or the value comes from a reference jobtrace can't extend.
    fn extend_user_attributes(
        &self,
        container: &Container,
        user: &EnvVar,
        warnings: &mut Vec<Warning>,
    ) -> Option<String> {
        if user.value_from.is_some() {
            warnings.push(Warning {
                reason: "env_user_set",
                message: format!(
                    "container {:?} takes {} from a reference; jobtrace can't extend it",
                    container.name,
                    env::RESOURCE_ATTRIBUTES
                ),
            });
            return None;
        }
        let value = user.value.as_deref().unwrap_or_default();
        let keys: Vec<&str> = value
            .split(',')
            .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.trim()))
            .collect();
        let container_attribute = ("k8s.container.name", container.name.clone());
        let missing: Vec<(&str, String)> = self
            .attributes
            .iter()
            .chain(std::iter::once(&container_attribute))
            .filter(|(k, _)| !keys.contains(k))
            .cloned()
            .collect();
        if missing.is_empty() {
            return None;
        }
        let value = value.trim_end_matches([',', ' ']);
        let added = join_attributes(&missing);
        Some(if value.is_empty() {
            added
        } else {
            format!("{value},{added}")
        })
    }
}

fn referenced(attributes: &[(&str, String)], helper: &str) -> bool {
    attributes
        .iter()
        .any(|(_, v)| v.strip_prefix("$(").and_then(|v| v.strip_suffix(')')) == Some(helper))
}

fn join_attributes(attributes: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (k, v) in attributes {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}
