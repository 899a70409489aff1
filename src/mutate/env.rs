//! Injection of environment variables into the containers of a pod template.

use k8s_openapi::api::core::v1::{Container, EnvVar};
use serde_json::{Value, json};

use super::{Ops, pointer};
use crate::context::{Traceparent, Warning, WarningReason, Warnings, traceparent};
use crate::names::env;

/// What every container of a traced pod should carry, prepared once for all containers.
pub(super) struct Injection {
    /// Literal variables (`TRACEPARENT`, `TRACESTATE`, `BAGGAGE`) and their JSON.
    vars: Vec<(&'static str, String, Value)>,
    /// Resource attributes for `OTEL_RESOURCE_ATTRIBUTES`; `k8s.container.name` is added per
    /// container. `None`: `OTEL_RESOURCE_ATTRIBUTES` is left alone.
    attributes: Option<Vec<(&'static str, String)>>,
    /// `attributes` joined, for the common case of a container without its own value.
    joined: String,
    /// The downward-API variables `attributes` reference.
    helpers: Vec<Helper>,
    /// The `TRACEPARENT` jobtrace wrote for the span the object had before it was re-created from
    /// a saved manifest: a container holding it holds jobtrace's old injection, not the user's.
    stale: Option<Traceparent>,
}

/// One downward-API variable the resource attributes reference.
struct Helper {
    name: &'static str,
    /// Its downward-API field.
    field: &'static str,
    /// How the attributes refer to it: `$(NAME)`.
    reference: String,
    /// Its `env` entry.
    json: Value,
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

/// `value` as it must stand in `env[].value` for the process to receive it byte for byte: the
/// kubelet expands `$(VAR)` there and turns `$$` into `$`, so every `$` is doubled.
pub(super) fn kubelet_literal(value: &str) -> String {
    value.replace('$', "$$")
}

/// Whether `name` may reach `container` through one of its `envFrom` sources, which jobtrace can't
/// look into at admission (a source with a prefix only defines names that start with it).
fn may_come_from_env_from(container: &Container, name: &str) -> bool {
    container
        .env_from
        .iter()
        .flatten()
        .any(|source| name.starts_with(source.prefix.as_deref().unwrap_or_default()))
}

impl Injection {
    /// `vars` and `attributes` hold values as received; they are escaped for the kubelet here
    /// (attribute values of the form `$(HELPER)` are references and stay as they are).
    pub fn new(
        vars: Vec<(&'static str, String)>,
        attributes: Option<Vec<(&'static str, String)>>,
        stale: Option<Traceparent>,
    ) -> Self {
        let vars = vars
            .into_iter()
            .map(|(name, value)| {
                let value = kubelet_literal(&value);
                let json = json!({ "name": name, "value": value });
                (name, value, json)
            })
            .collect();
        let attributes: Option<Vec<(&'static str, String)>> = attributes.map(|attributes| {
            attributes
                .into_iter()
                .map(|(k, v)| {
                    let v = if helper_reference(&v).is_some() {
                        v
                    } else {
                        kubelet_literal(&v)
                    };
                    (k, v)
                })
                .collect()
        });
        let listed = attributes.as_deref().unwrap_or_default();
        let helpers = HELPERS
            .iter()
            .filter(|(name, _)| {
                listed
                    .iter()
                    .any(|(_, v)| helper_reference(v) == Some(*name))
            })
            .map(|&(name, field)| Helper {
                name,
                field,
                reference: format!("$({name})"),
                json: json!({
                    "name": name,
                    "valueFrom": { "fieldRef": { "fieldPath": field } }
                }),
            })
            .collect();
        Self {
            vars,
            joined: join_attributes(listed),
            attributes,
            helpers,
            stale,
        }
    }

    /// Whether the container's `TRACEPARENT` is the one jobtrace wrote before a re-creation.
    fn holds_stale_injection(&self, existing: &[EnvVar]) -> bool {
        let Some(stale) = self.stale else {
            return false;
        };
        existing
            .iter()
            .rfind(|v| v.name == env::TRACEPARENT)
            .and_then(|v| traceparent::parse(v.value.as_deref()?).ok())
            .is_some_and(|tp| tp.trace_id == stale.trace_id && tp.parent_id == stale.parent_id)
    }

    /// Adds the injection to `container`, whose JSON pointer is `path`.
    pub fn inject(
        &self,
        ops: &mut Ops,
        path: &[&str],
        container: &Container,
        warnings: &mut Warnings,
    ) {
        let existing = container.env.as_deref().unwrap_or_default();
        let find = |name: &str| existing.iter().rposition(|v| v.name == name);
        let mut appended: Vec<Value> = Vec::new();
        let env_path = |tail: &[&str]| {
            pointer(
                path.iter()
                    .copied()
                    .chain(["env"])
                    .chain(tail.iter().copied()),
            )
        };
        let stale = self.holds_stale_injection(existing);
        if stale {
            // jobtrace's own old values: brought up to date, and emptied where the context no
            // longer has them (an empty TRACESTATE or BAGGAGE is no tracestate or baggage).
            for name in [env::TRACESTATE, env::BAGGAGE] {
                let dropped = !self.vars.iter().any(|(n, ..)| *n == name);
                let old = find(name).filter(|&i| {
                    dropped
                        && existing[i].value_from.is_none()
                        && existing[i].value.as_deref() != Some("")
                });
                if let Some(i) = old {
                    ops.add(
                        env_path(&[&i.to_string(), "value"]),
                        Value::String(String::new()),
                    );
                }
            }
        }
        // The context variables describe this Job alone, so they are set even where `envFrom`
        // might define them too (an `env` entry wins over `envFrom`): a ConfigMap shared by many
        // Jobs can't hold a per-Job context, and the three must come from one source.
        for (name, value, json) in &self.vars {
            match find(name) {
                None => appended.push(json.clone()),
                Some(i) if existing[i].value.as_ref() == Some(value) => {}
                Some(i) if stale && existing[i].value_from.is_none() => {
                    ops.add(
                        env_path(&[&i.to_string(), "value"]),
                        Value::String(value.clone()),
                    );
                }
                Some(_) => warnings.push(Warning {
                    reason: WarningReason::EnvUserSet,
                    message: format!(
                        "container {:?} sets {name} itself; jobtrace left it unchanged",
                        container.name
                    ),
                }),
            }
        }

        match find(env::RESOURCE_ATTRIBUTES) {
            _ if self.attributes.is_none() => {}
            None if may_come_from_env_from(container, env::RESOURCE_ATTRIBUTES) => {
                warnings.push(Warning {
                    reason: WarningReason::EnvFrom,
                    message: format!(
                        "container {:?} may take {} from envFrom; jobtrace left it alone (set it \
                         in env to have the Kubernetes attributes added)",
                        container.name,
                        env::RESOURCE_ATTRIBUTES
                    ),
                });
            }
            None => {
                let value = format!(
                    "{},k8s.container.name={}",
                    self.joined,
                    kubelet_literal(&container.name)
                );
                appended.extend(self.helpers_missing_before(existing, existing.len(), &value));
                appended.push(json!({ "name": env::RESOURCE_ATTRIBUTES, "value": value }));
            }
            Some(i) => {
                if let Some(value) = self.user_attributes(container, &existing[i], warnings) {
                    let helpers = self.helpers_missing_before(existing, i, &value);
                    for (k, helper) in helpers.iter().enumerate() {
                        ops.add(env_path(&[&(i + k).to_string()]), helper.clone());
                    }
                    if existing[i].value.as_deref() != Some(value.as_str()) {
                        let index = (i + helpers.len()).to_string();
                        ops.add(env_path(&[&index, "value"]), Value::String(value));
                    }
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

    /// jobtrace's helper variables that `value` references and that are not defined as jobtrace
    /// defines them by the last entry of that name in `existing[..before]`: the kubelet expands
    /// `$(VAR)` only from variables defined earlier, so each must stand before its user.
    fn helpers_missing_before(
        &self,
        existing: &[EnvVar],
        before: usize,
        value: &str,
    ) -> Vec<Value> {
        self.helpers
            .iter()
            .filter(|helper| value.contains(&helper.reference))
            .filter(|helper| {
                let last = existing[..before]
                    .iter()
                    .rev()
                    .find(|v| v.name == helper.name);
                last.is_none_or(|v| !is_helper(v, helper.field))
            })
            .map(|helper| helper.json.clone())
            .collect()
    }

    /// The user's `OTEL_RESOURCE_ATTRIBUTES` with the attributes it lacks appended (unchanged
    /// when nothing is missing); `None` when it comes from a reference jobtrace can't extend.
    fn user_attributes(
        &self,
        container: &Container,
        user: &EnvVar,
        warnings: &mut Warnings,
    ) -> Option<String> {
        if user.value_from.is_some() {
            warnings.push(Warning {
                reason: WarningReason::EnvUserSet,
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
        let container_attribute = ("k8s.container.name", kubelet_literal(&container.name));
        let missing: Vec<(&str, String)> = self
            .attributes
            .iter()
            .flatten()
            .chain(std::iter::once(&container_attribute))
            .filter(|(k, _)| !keys.contains(k))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Some(value.to_owned());
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

/// Whether `var` is defined as jobtrace defines a helper: the downward-API field `field` (the
/// apiserver may have defaulted `fieldRef.apiVersion`).
fn is_helper(var: &EnvVar, field: &str) -> bool {
    var.value.as_deref().is_none_or(str::is_empty)
        && var.value_from.as_ref().is_some_and(|from| {
            from.field_ref
                .as_ref()
                .is_some_and(|f| f.field_path == field)
                && from.config_map_key_ref.is_none()
                && from.secret_key_ref.is_none()
                && from.resource_field_ref.is_none()
        })
}

/// The helper a `$(NAME)` attribute value refers to.
fn helper_reference(value: &str) -> Option<&str> {
    value.strip_prefix("$(")?.strip_suffix(')')
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
