//! How large a `JobTracePolicy` may be. The CRD's schema carries every limit (so the apiserver
//! refuses a larger policy, and can bound the cost of the CRD's CEL rules), and [`check`] applies
//! the same schema to what the watch delivers: a policy stored before the CRD carried the limits
//! is ignored whole, never used at its size.

use std::sync::OnceLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResourceExt;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::{JobTracePolicy, KeyFilter};

/// `metadata.name`: it is written on the Jobs a policy decides as a label value.
pub const NAME: usize = 63;
/// A label key: a DNS subdomain prefix (253), `/`, and a name (63).
pub const LABEL_KEY: usize = 253 + 1 + 63;
/// A label value.
pub const LABEL_VALUE: usize = 63;
/// A container name: a DNS label.
pub const CONTAINER_NAME: usize = 63;
/// A baggage key. W3C Baggage bounds only the whole header (8,192 bytes, room for at least 64
/// members); 256, what W3C Trace Context allows a `tracestate` key, is far above any key in use.
pub const BAGGAGE_KEY: usize = 256;
/// Entries of each list of names of `baggage` and `containers` (`include`, `exclude`).
pub const NAMES: usize = 64;
/// Entries of `jobLabels`: each key is written on every Job the policy decides (32 keys of the
/// longest make a 10 KiB annotation) and becomes an attribute of its span.
pub const JOB_LABELS: usize = 32;
/// Pairs of `selector.matchLabels`.
pub const MATCH_LABELS: usize = 32;
/// Entries of `selector.matchExpressions`.
pub const MATCH_EXPRESSIONS: usize = 32;
/// Values of one expression.
pub const EXPRESSION_VALUES: usize = 32;
/// An expression's operator: the longest one, `DoesNotExist`.
pub const OPERATOR: usize = "DoesNotExist".len();
/// Conditions in the status (jobtrace writes two).
pub const CONDITIONS: usize = 8;
/// A condition's `type`, `reason` and `message`: the limits of Kubernetes' own `Condition`.
pub const CONDITION_TYPE: usize = 316;
pub const CONDITION_REASON: usize = 1024;
pub const CONDITION_MESSAGE: usize = 32768;

/// A policy over one of the limits, by the first field found over it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverLimit {
    #[error("{field} has {count} entries, more than {limit}")]
    Entries {
        field: String,
        count: usize,
        limit: usize,
    },
    #[error("{field} has {length} characters, more than {limit}")]
    Length {
        field: String,
        length: usize,
        limit: usize,
    },
}

/// Whether `policy` is within every limit of the CRD's schema: its name, and its spec against the
/// `maxItems`, `maxProperties` and `maxLength` of the schema the CRD carries (so a bound added
/// to the schema is checked here too). Costs work in proportion to the policy's size, once, when
/// it is stored.
pub fn check(policy: &JobTracePolicy) -> Result<(), OverLimit> {
    let name = policy.metadata.name.as_deref().unwrap_or_default();
    length(&Path::Root("metadata.name"), name, NAME)?;
    let spec = serde_json::to_value(&policy.spec).expect("a policy's spec always serializes");
    within(spec_schema(), &spec, &Path::Root("spec"))
}

/// The schema of `spec`, as the CRD carries it.
fn spec_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut crd = serde_json::to_value(JobTracePolicy::crd()).expect("a CRD always serializes");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].take()
    })
}

/// Where in the policy a value is: written out only for an error.
enum Path<'a> {
    Root(&'static str),
    Field(&'a Path<'a>, &'a str),
    Entry(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root(root) => f.write_str(root),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Entry(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn within(schema: &Value, value: &Value, path: &Path<'_>) -> Result<(), OverLimit> {
    let limit = |bound: &str| {
        schema
            .get(bound)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
    };
    match value {
        Value::String(s) => limit("maxLength").map_or(Ok(()), |max| length(path, s, max)),
        Value::Array(items) => {
            entries(path, items.len(), limit("maxItems"))?;
            let Some(item) = schema.get("items") else {
                return Ok(());
            };
            items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| within(item, v, &Path::Entry(path, i)))
        }
        Value::Object(fields) => {
            entries(path, fields.len(), limit("maxProperties"))?;
            let map = schema.get("additionalProperties");
            for (name, v) in fields {
                let here = Path::Field(path, name);
                // The schema's only map, `matchLabels`, is keyed by label keys; a structural
                // schema can't bound keys (the CRD does it with a rule).
                if map.is_some() {
                    length(&here, name, LABEL_KEY)?;
                }
                if let Some(field) = schema["properties"].get(name.as_str()).or(map) {
                    within(field, v, &here)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn entries(path: &Path<'_>, count: usize, limit: Option<usize>) -> Result<(), OverLimit> {
    match limit {
        Some(limit) if count > limit => Err(OverLimit::Entries {
            field: path.to_string(),
            count,
            limit,
        }),
        _ => Ok(()),
    }
}

/// A length in characters, as the apiserver counts them for `maxLength`.
fn length(path: &Path<'_>, s: &str, limit: usize) -> Result<(), OverLimit> {
    // A string of at most `limit` bytes has at most `limit` characters: no count needed.
    if s.len() > limit && s.chars().count() > limit {
        return Err(OverLimit::Length {
            field: path.to_string(),
            length: s.chars().count(),
            limit,
        });
    }
    Ok(())
}

/// The schema of `spec.selector`: Kubernetes' `LabelSelector`, which carries no limits of its
/// own, with this module's.
pub(super) fn selector_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<Option<LabelSelector>>();
    let selector = non_null(&mut schema);
    let properties = &mut selector["properties"];
    let labels = &mut properties["matchLabels"];
    labels["maxProperties"] = MATCH_LABELS.into();
    labels["additionalProperties"]["maxLength"] = LABEL_VALUE.into();
    // A map's keys can't carry `maxLength` in a structural schema: a rule bounds them instead.
    labels["x-kubernetes-validations"] = json!([{
        "rule": format!("self.all(k, k.size() <= {LABEL_KEY})"),
        "message": "spec.selector.matchLabels: each key is a label key",
    }]);
    let expressions = &mut properties["matchExpressions"];
    expressions["maxItems"] = MATCH_EXPRESSIONS.into();
    let expression = &mut expressions["items"]["properties"];
    expression["key"]["maxLength"] = LABEL_KEY.into();
    expression["operator"]["maxLength"] = OPERATOR.into();
    // The operators Kubernetes defines: the apiserver refuses another (one stored before this
    // rule makes its policy Ready=False, InvalidSelector).
    expression["operator"]["enum"] = json!(["In", "NotIn", "Exists", "DoesNotExist"]);
    expression["values"]["maxItems"] = EXPRESSION_VALUES.into();
    expression["values"]["items"]["maxLength"] = LABEL_VALUE.into();
    schema
}

/// The schema of `spec.baggage`: its names are baggage keys.
pub(super) fn baggage_schema(generator: &mut SchemaGenerator) -> Schema {
    key_filter_schema(generator, BAGGAGE_KEY)
}

/// The schema of `spec.containers`: its names are container names.
pub(super) fn containers_schema(generator: &mut SchemaGenerator) -> Schema {
    key_filter_schema(generator, CONTAINER_NAME)
}

/// A `KeyFilter`'s schema (which bounds its lists) with names of at most `longest` characters.
fn key_filter_schema(generator: &mut SchemaGenerator, longest: usize) -> Schema {
    let mut schema = generator.subschema_for::<Option<KeyFilter>>();
    let properties = &mut non_null(&mut schema)["properties"];
    for list in ["include", "exclude"] {
        properties[list]["items"]["maxLength"] = longest.into();
    }
    schema
}

/// The schema of `status.conditions`: Kubernetes' `Condition`, with the limits its Go type
/// declares (its generated schema leaves them out).
pub(super) fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("maxItems".into(), CONDITIONS.into());
    let condition = &mut schema
        .as_object_mut()
        .expect("an array's schema is an object")["items"]["properties"];
    condition["type"]["maxLength"] = CONDITION_TYPE.into();
    condition["status"]["enum"] = json!(["True", "False", "Unknown"]);
    condition["reason"]["maxLength"] = CONDITION_REASON.into();
    condition["message"]["maxLength"] = CONDITION_MESSAGE.into();
    schema
}

/// The object schema of an optional value: the schema itself, or its non-null alternative.
fn non_null(schema: &mut Schema) -> &mut Map<String, Value> {
    let object = schema
        .as_object_mut()
        .expect("an object's schema is an object");
    if object.contains_key("properties") {
        return object;
    }
    object
        .get_mut("anyOf")
        .and_then(Value::as_array_mut)
        .and_then(|alternatives| {
            alternatives
                .iter_mut()
                .find_map(|a| a.as_object_mut().filter(|a| a.contains_key("properties")))
        })
        .expect("an optional object's schema has properties or an alternative that has")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use jobtrace_testkit::fixtures::typed;

    /// The kit's policy at the limits, as this crate's type.
    fn policy_at_limits(
        namespace: &str,
        name: &str,
        seed: &str,
        include: &[&str],
    ) -> JobTracePolicy {
        typed(&jobtrace_testkit::fixtures::policy_at_limits(
            namespace, name, seed, include,
        ))
    }

    /// Walks a schema; returns how many lists, strings and maps it found, and puts in `unbounded`
    /// the paths of those without a bound.
    fn bounds(schema: &Value, path: &str, unbounded: &mut Vec<String>) -> usize {
        let mut seen = 0;
        let has = |key: &str| schema.get(key).is_some();
        match schema.get("type").and_then(Value::as_str) {
            Some("array") => {
                seen += 1;
                if !has("maxItems") {
                    unbounded.push(format!("{path}: an array without maxItems"));
                }
            }
            Some("string") => {
                seen += 1;
                if !(has("maxLength") || has("enum") || has("format")) {
                    unbounded.push(format!(
                        "{path}: a string without maxLength, enum or format"
                    ));
                }
            }
            Some("object")
                if schema
                    .get("additionalProperties")
                    .is_some_and(Value::is_object) =>
            {
                seen += 1;
                if !has("maxProperties") {
                    unbounded.push(format!("{path}: a map without maxProperties"));
                }
            }
            _ => {}
        }
        for (name, property) in schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            seen += bounds(property, &format!("{path}.{name}"), unbounded);
        }
        for key in ["items", "additionalProperties"] {
            if let Some(sub) = schema.get(key).filter(|s| s.is_object()) {
                seen += bounds(sub, &format!("{path}.{key}"), unbounded);
            }
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for (i, sub) in schema
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                seen += bounds(sub, &format!("{path}.{key}[{i}]"), unbounded);
            }
        }
        seen
    }

    #[test]
    fn every_list_string_and_map_of_the_crd_has_a_bound() {
        let crd = serde_json::to_value(JobTracePolicy::crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut unbounded = Vec::new();
        let seen = bounds(schema, "", &mut unbounded);
        assert!(
            unbounded.is_empty(),
            "every list needs maxItems, every string maxLength (or an enum or a format), every \
             map maxProperties, so that the apiserver can cost the CRD's rules:\n{}",
            unbounded.join("\n")
        );
        assert!(
            seen >= 25,
            "the walk reached every field of the schema: {seen}"
        );
    }

    #[test]
    fn a_policy_at_every_limit_is_within_them() {
        assert_eq!(
            check(&policy_at_limits(
                "reports",
                &"p".repeat(NAME),
                "a",
                &["main"]
            )),
            Ok(())
        );
    }

    /// The largest policy, changed by `change` on its JSON.
    fn changed(change: impl FnOnce(&mut Value)) -> JobTracePolicy {
        let largest = policy_at_limits("reports", &"p".repeat(NAME), "a", &[]);
        let mut value = serde_json::to_value(largest).unwrap();
        change(&mut value);
        serde_json::from_value(value).unwrap()
    }

    /// One more entry in the list at `pointer`, one more character in the string there.
    fn one_more(pointer: &str) -> JobTracePolicy {
        changed(|value| match value.pointer_mut(pointer).unwrap() {
            Value::Array(items) => {
                let mut extra = items[0].clone();
                if let Value::String(s) = &mut extra {
                    s.replace_range(..1, "_");
                }
                items.push(extra);
            }
            Value::String(s) => s.push('x'),
            Value::Object(map) => {
                map.insert("extra".into(), json!("x"));
            }
            other => panic!("{pointer} is {other}"),
        })
    }

    #[test]
    fn one_past_any_limit_is_over_it_and_named() {
        let cases = [
            (
                "/metadata/name",
                "metadata.name has 64 characters, more than 63",
            ),
            (
                "/spec/selector/matchLabels",
                "spec.selector.matchLabels has 33 entries, more than 32",
            ),
            (
                "/spec/selector/matchExpressions",
                "spec.selector.matchExpressions has 33 entries, more than 32",
            ),
            (
                "/spec/selector/matchExpressions/0/key",
                "spec.selector.matchExpressions[0].key has 318 characters, more than 317",
            ),
            (
                "/spec/selector/matchExpressions/5/values",
                "spec.selector.matchExpressions[5].values has 33 entries, more than 32",
            ),
            (
                "/spec/selector/matchExpressions/5/values/3",
                "spec.selector.matchExpressions[5].values[3] has 64 characters, more than 63",
            ),
            (
                "/spec/baggage/include",
                "spec.baggage.include has 65 entries, more than 64",
            ),
            (
                "/spec/baggage/exclude/0",
                "spec.baggage.exclude[0] has 257 characters, more than 256",
            ),
            (
                "/spec/containers/include/0",
                "spec.containers.include[0] has 64 characters, more than 63",
            ),
            (
                "/spec/containers/exclude",
                "spec.containers.exclude has 65 entries, more than 64",
            ),
            (
                "/spec/jobLabels",
                "spec.jobLabels has 33 entries, more than 32",
            ),
            (
                "/spec/jobLabels/31",
                "spec.jobLabels[31] has 318 characters, more than 317",
            ),
        ];
        for (pointer, error) in cases {
            let over = check(&one_more(pointer)).expect_err(pointer);
            assert_eq!(over.to_string(), error, "{pointer}");
        }
        let operator = changed(|v| {
            v["spec"]["selector"]["matchExpressions"][0]["operator"] = json!("DoesNotExist!");
        });
        assert_eq!(
            check(&operator).unwrap_err().to_string(),
            "spec.selector.matchExpressions[0].operator has 13 characters, more than 12"
        );
        let long_key = "k".repeat(LABEL_KEY + 1);
        let key = changed(|v| {
            let labels = v["spec"]["selector"]["matchLabels"]
                .as_object_mut()
                .unwrap();
            let first = labels.keys().next().unwrap().clone();
            labels.remove(&first);
            labels.insert(long_key.clone(), json!("v"));
        });
        assert_eq!(
            check(&key).unwrap_err().to_string(),
            format!("spec.selector.matchLabels.{long_key} has 318 characters, more than 317")
        );
        let value = changed(|v| {
            let labels = v["spec"]["selector"]["matchLabels"]
                .as_object_mut()
                .unwrap();
            let first = labels.values_mut().next().unwrap();
            let longer = format!("{}x", first.as_str().unwrap());
            *first = json!(longer);
        });
        assert!(
            check(&value)
                .unwrap_err()
                .to_string()
                .ends_with("has 64 characters, more than 63")
        );
    }

    #[test]
    fn lengths_are_counted_in_characters_as_the_apiserver_does() {
        let name = "é".repeat(NAME);
        assert!(name.len() > NAME);
        assert_eq!(check(&policy_at_limits("reports", &name, "a", &[])), Ok(()));
        let longer = "é".repeat(NAME + 1);
        assert!(check(&policy_at_limits("reports", &longer, "a", &[])).is_err());
    }
}
