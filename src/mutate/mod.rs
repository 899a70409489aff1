//! The mutations (pure: object in, JSON patch and warnings out). Every operation is an RFC 6902
//! `add` with an escaped pointer, and a second pass over a mutated object yields an empty patch.

mod env;
pub mod job;
pub mod pod;

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::Value;

use crate::context::{TraceId, Warning};

/// What a mutation decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The object carries trace context: the patch injects it (and is empty on a second pass).
    Traced { trace_id: TraceId, sampled: bool },
    /// No valid trace context: nothing to inject.
    NotTraced,
}

/// A mutation's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub patch: Patch,
    pub warnings: Vec<Warning>,
    pub outcome: Outcome,
}

impl Mutation {
    fn untouched(warnings: Vec<Warning>) -> Self {
        Self {
            patch: Patch(Vec::new()),
            warnings,
            outcome: Outcome::NotTraced,
        }
    }
}

/// A JSON pointer from unescaped tokens: `/` and `~` inside a token are escaped.
fn pointer<'a>(tokens: impl IntoIterator<Item = &'a str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

/// Collects `add` operations.
#[derive(Default)]
struct Ops(Vec<PatchOperation>);

impl Ops {
    fn add(&mut self, path: PointerBuf, value: Value) {
        self.0
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    /// Makes the string map at `base` (labels or annotations) hold `entries`, adding the map
    /// itself when it is absent and only the entries that differ otherwise.
    fn ensure_entries(
        &mut self,
        base: &[&str],
        existing: Option<&BTreeMap<String, String>>,
        entries: &[(&str, String)],
    ) {
        match existing {
            None => {
                let map: serde_json::Map<String, Value> = entries
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
                    .collect();
                self.add(pointer(base.iter().copied()), Value::Object(map));
            }
            Some(existing) => {
                for (key, value) in entries {
                    if existing.get(*key) != Some(value) {
                        let path = pointer(base.iter().copied().chain([*key]));
                        self.add(path, Value::String(value.clone()));
                    }
                }
            }
        }
    }

    fn into_patch(self) -> Patch {
        Patch(self.0)
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    pub const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    pub const SPAN_A: crate::context::SpanId = crate::context::SpanId([0xa; 8]);
    pub const SPAN_B: crate::context::SpanId = crate::context::SpanId([0xb; 8]);

    /// A typical Job: three containers and one init container.
    pub fn job(annotations: &Value) -> Value {
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": "nightly", "annotations": annotations },
            "spec": {
                "backoffLimit": 2,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "initContainers": [{ "name": "fetch", "image": "busybox" }],
                        "containers": [
                            { "name": "main", "image": "app", "env": [{ "name": "MODE", "value": "full" }] },
                            { "name": "side", "image": "app" },
                            { "name": "third", "image": "app", "env": [] }
                        ]
                    }
                }
            }
        })
    }

    pub fn typed<T: DeserializeOwned>(value: &Value) -> T {
        serde_json::from_value(value.clone()).expect("a valid object")
    }

    /// Applies `patch` to `object` as the apiserver would.
    pub fn apply(object: &Value, patch: &json_patch::Patch) -> Value {
        let mut out = object.clone();
        json_patch::patch(&mut out, patch).expect("the patch applies");
        out
    }

    /// The value of env variable `name` in the container at `pointer`, if set.
    pub fn env_value<'a>(object: &'a Value, pointer: &str, name: &str) -> Option<&'a Value> {
        object
            .pointer(pointer)?
            .get("env")?
            .as_array()?
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| v.get("value").unwrap_or(&v["valueFrom"]))
    }
}
