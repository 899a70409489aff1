//! Injection of environment variables into one container, shared by the Job and pod mutations.

use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector};
use serde_json::Value;

use super::{Ops, pointer};
use crate::context::Warning;
use crate::names::env;

/// What every container of a traced pod should carry.
pub(super) struct Injection {
    /// Literal variables (`TRACEPARENT`, `TRACESTATE`, `BAGGAGE`), never overriding the user's.
    pub vars: Vec<(&'static str, String)>,
    /// Resource attributes for `OTEL_RESOURCE_ATTRIBUTES`, added to the user's value when the
    /// user has not set the same key. `k8s.container.name` is added per container.
    pub resource_attributes: Vec<(&'static str, String)>,
}

/// Downward-API variables that resource attributes reference with `$(NAME)`.
fn helper(name: &str) -> Option<EnvVar> {
    let field = match name {
        env::POD_NAME => "metadata.name".to_owned(),
        env::POD_UID => "metadata.uid".to_owned(),
        env::NODE_NAME => "spec.nodeName".to_owned(),
        env::JOB_NAME => format!("metadata.labels['{}']", crate::names::JOB_NAME_LABEL),
        env::JOB_UID => format!("metadata.labels['{}']", crate::names::JOB_UID_LABEL),
        _ => return None,
    };
    Some(EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: field,
            }),
            ..EnvVarSource::default()
        }),
    })
}

const HELPERS: [&str; 5] = [
    env::JOB_NAME,
    env::JOB_UID,
    env::POD_NAME,
    env::POD_UID,
    env::NODE_NAME,
];

fn literal(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    }
}

fn to_value(var: &EnvVar) -> Value {
    serde_json::to_value(var).expect("an EnvVar always serializes")
}

/// Keys already set in an `OTEL_RESOURCE_ATTRIBUTES` value (`key=value` pairs joined by commas).
fn attribute_keys(value: &str) -> Vec<&str> {
    value
        .split(',')
        .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.trim()))
        .collect()
}

/// Adds the injection to `container`, whose JSON pointer is `path`.
pub(super) fn inject(
    ops: &mut Ops,
    path: &[&str],
    container: &Container,
    injection: &Injection,
    warnings: &mut Vec<Warning>,
) {
    let existing = container.env.as_deref().unwrap_or_default();
    let find = |name: &str| existing.iter().position(|v| v.name == name);
    let mut appended: Vec<EnvVar> = Vec::new();

    for (name, value) in &injection.vars {
        match find(name) {
            None => appended.push(literal(name, value.clone())),
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

    let mut attributes = injection.resource_attributes.clone();
    attributes.push(("k8s.container.name", container.name.clone()));
    let user_attributes = find(env::RESOURCE_ATTRIBUTES);
    let missing = match user_attributes {
        None => attributes,
        Some(i) => missing_attributes(container, &existing[i], attributes, warnings),
    };
    // The helpers a new attribute references must come before OTEL_RESOURCE_ATTRIBUTES.
    let helpers: Vec<EnvVar> = HELPERS
        .iter()
        .filter(|name| find(name).is_none())
        .filter(|name| {
            missing
                .iter()
                .any(|(_, v)| v.contains(&format!("$({name})")))
        })
        .filter_map(|name| helper(name))
        .collect();

    let env_path = |tail: &[&str]| {
        pointer(
            path.iter()
                .copied()
                .chain(["env"])
                .chain(tail.iter().copied()),
        )
    };
    match user_attributes {
        None => {
            appended.extend(helpers);
            appended.push(literal(env::RESOURCE_ATTRIBUTES, join_attributes(&missing)));
        }
        Some(_) if missing.is_empty() => {}
        Some(i) => {
            for (k, var) in helpers.iter().enumerate() {
                ops.add(env_path(&[&(i + k).to_string()]), to_value(var));
            }
            let user = existing[i].value.as_deref().unwrap_or_default();
            let user = user.trim_end_matches([',', ' ']);
            let added = join_attributes(&missing);
            let value = if user.is_empty() {
                added
            } else {
                format!("{user},{added}")
            };
            let index = (i + helpers.len()).to_string();
            ops.add(env_path(&[&index, "value"]), Value::String(value));
        }
    }

    if container.env.is_none() {
        if !appended.is_empty() {
            let all = appended.iter().map(to_value).collect();
            ops.add(env_path(&[]), Value::Array(all));
        }
    } else {
        for var in &appended {
            ops.add(env_path(&["-"]), to_value(var));
        }
    }
}

/// The attributes the user's `OTEL_RESOURCE_ATTRIBUTES` lacks; none when it comes from a
/// reference jobtrace can't extend.
fn missing_attributes(
    container: &Container,
    user: &EnvVar,
    attributes: Vec<(&'static str, String)>,
    warnings: &mut Vec<Warning>,
) -> Vec<(&'static str, String)> {
    if user.value_from.is_some() {
        warnings.push(Warning {
            reason: "env_user_set",
            message: format!(
                "container {:?} takes {} from a reference; jobtrace can't extend it",
                container.name,
                env::RESOURCE_ATTRIBUTES
            ),
        });
        return Vec::new();
    }
    let keys = attribute_keys(user.value.as_deref().unwrap_or_default());
    attributes
        .into_iter()
        .filter(|(k, _)| !keys.contains(k))
        .collect()
}

fn join_attributes(attributes: &[(&str, String)]) -> String {
    attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
