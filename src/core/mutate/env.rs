//! Injection of environment variables into the containers of a pod template.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Container, EnvVar};
use serde_json::{Value, json};

use super::patch::{Ops, pointer};
use crate::core::context::{Traceparent, Warning, WarningReason, Warnings, traceparent};
use crate::core::names::attribute;
use crate::core::names::env;

/// What every container of a traced pod should carry, prepared once for all containers.
pub(super) struct Injection {
    /// Literal variables (`TRACEPARENT`, `TRACESTATE`, `BAGGAGE`) and their JSON.
    vars: Vec<(&'static str, String, Value)>,
    /// Resource attributes for `OTEL_RESOURCE_ATTRIBUTES`, as written there; `k8s.container.name`
    /// is added per container. `None`: `OTEL_RESOURCE_ATTRIBUTES` is left alone.
    attributes: Option<Vec<(&'static str, String)>>,
    /// `attributes` joined, for the common case of a container without its own value.
    joined: String,
    /// The downward-API variables `attributes` reference.
    helpers: Vec<HelperVar>,
    /// The `TRACEPARENT` jobtrace wrote for the span the object had before it was re-created from
    /// a saved manifest: a container holding it holds jobtrace's old injection, not the user's.
    stale: Option<Traceparent>,
}

/// A resource attribute's value for `OTEL_RESOURCE_ATTRIBUTES`. Whether it is a reference is
/// decided by the code that chose it, never read from the value: a received name of the form
/// `$(VAR)` is a literal like any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AttributeValue {
    /// Known at admission, as received (a name, an owner's uid).
    Literal(String),
    /// Known to the pod only: the value of one of jobtrace's downward-API variables.
    Helper(Helper),
}

/// jobtrace's downward-API variables, for the values unknown at admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Helper {
    JobName,
    JobUid,
    PodName,
    PodUid,
}

impl Helper {
    const ALL: [Self; 4] = [Self::JobName, Self::JobUid, Self::PodName, Self::PodUid];

    fn name(self) -> &'static str {
        match self {
            Self::JobName => env::JOB_NAME,
            Self::JobUid => env::JOB_UID,
            Self::PodName => env::POD_NAME,
            Self::PodUid => env::POD_UID,
        }
    }

    /// Its downward-API field.
    fn field(self) -> &'static str {
        match self {
            Self::JobName => "metadata.labels['batch.kubernetes.io/job-name']",
            Self::JobUid => "metadata.labels['batch.kubernetes.io/controller-uid']",
            Self::PodName => "metadata.name",
            Self::PodUid => "metadata.uid",
        }
    }
}

impl AttributeValue {
    /// The value as it stands in `OTEL_RESOURCE_ATTRIBUTES`' `env[].value`: a literal
    /// percent-encoded, then escaped for the kubelet; a helper as the kubelet's `$(NAME)`.
    fn written(&self) -> String {
        match self {
            Self::Literal(value) => kubelet_literal(&percent_encode(value)),
            Self::Helper(helper) => format!("$({})", helper.name()),
        }
    }
}

/// One downward-API variable the resource attributes reference, prepared once for all
/// containers.
struct HelperVar {
    name: &'static str,
    /// Its downward-API field.
    field: &'static str,
    /// Its `env` entry.
    json: Value,
}

/// `value` as it must stand in `env[].value` for the process to receive it byte for byte: the
/// kubelet expands `$(VAR)` there and turns `$$` into `$`, so every `$` is doubled.
pub(super) fn kubelet_literal(value: &str) -> String {
    value.replace('$', "$$")
}

/// `value` as an `OTEL_RESOURCE_ATTRIBUTES` value, which OpenTelemetry's SDKs percent-decode:
/// every byte outside W3C Baggage's `baggage-octet` (`,`, `;`, `\`, `"`, spaces, controls,
/// non-ASCII) is percent-encoded, and so are `%` and `=`. A Kubernetes name or uid is unchanged.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        let baggage_octet =
            matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E);
        if baggage_octet && !matches!(byte, b'%' | b'=') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
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
    /// `vars` and `attributes` hold values as received; they are escaped for the kubelet here,
    /// and the attributes' literals percent-encoded first.
    pub fn new(
        vars: Vec<(&'static str, String)>,
        attributes: Option<Vec<(&'static str, AttributeValue)>>,
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
        let helpers = Helper::ALL
            .into_iter()
            .filter(|helper| {
                attributes
                    .iter()
                    .flatten()
                    .any(|(_, v)| *v == AttributeValue::Helper(*helper))
            })
            .map(|helper| HelperVar {
                name: helper.name(),
                field: helper.field(),
                json: json!({
                    "name": helper.name(),
                    "valueFrom": { "fieldRef": { "fieldPath": helper.field() } }
                }),
            })
            .collect();
        let attributes: Option<Vec<(&'static str, String)>> = attributes.map(|attributes| {
            attributes
                .into_iter()
                .map(|(k, v)| (k, v.written()))
                .collect()
        });
        let listed = attributes.as_deref().unwrap_or_default();
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
                    container_attribute(container)
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
            .filter(|helper| kubelet_references(value, helper.name))
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
        let container_attribute = (attribute::CONTAINER_NAME, container_attribute(container));
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

/// The container's `k8s.container.name`, as written in `OTEL_RESOURCE_ATTRIBUTES`.
fn container_attribute(container: &Container) -> String {
    AttributeValue::Literal(container.name.clone()).written()
}

/// Whether the kubelet expands `$(name)` in `value`: a reference not preceded by an escaping `$`
/// (`$$(name)` is the text `$(name)`).
fn kubelet_references(value: &str, name: &str) -> bool {
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
        } else if let Some((reference, tail)) =
            after.strip_prefix('(').and_then(|a| a.split_once(')'))
        {
            if reference == name {
                return true;
            }
            rest = tail;
        } else {
            rest = after;
        }
    }
    false
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

#[cfg(test)]
mod tests;
