//! The patch builders of the mutations: JSON pointers from unescaped tokens, the operations of
//! one patch ([`Ops`]), and the edits of an object's metadata applied at once ([`MetaEdit`]).

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{Patch, PatchOperation};
use k8s_openapi::api::batch::v1::Job;
use serde_json::Value;

use crate::core::names;

pub(super) use crate::core::patch::pointer;

/// Collects `add` operations.
#[derive(Default)]
pub(super) struct Ops(Vec<PatchOperation>);

impl Ops {
    pub(super) fn add(&mut self, path: PointerBuf, value: Value) {
        self.0.push(crate::core::patch::add(path, value));
    }

    /// Makes the string map at `base` (labels or annotations) hold `entries`, adding the map
    /// itself when it is absent and only the entries that differ otherwise.
    pub(super) fn ensure_entries(
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

    pub(super) fn remove(&mut self, path: PointerBuf) {
        self.0.push(crate::core::patch::remove(path));
    }

    /// Removes from the string map at `base` those of `keys` it holds.
    pub(super) fn remove_entries(
        &mut self,
        base: &[&str],
        existing: Option<&BTreeMap<String, String>>,
        keys: &[&str],
    ) {
        for key in keys {
            if existing.is_some_and(|m| m.contains_key(*key)) {
                self.remove(pointer(base.iter().copied().chain([*key])));
            }
        }
    }

    pub(super) fn into_patch(self) -> Patch {
        Patch(self.0)
    }
}

/// The labels and annotations to set on an object's metadata and those to remove, applied at
/// once (two `add`s of a map that was absent would replace each other).
#[derive(Default)]
pub(super) struct MetaEdit {
    pub(super) labels: Vec<(&'static str, String)>,
    pub(super) unlabel: Vec<&'static str>,
    pub(super) annotations: Vec<(&'static str, String)>,
    pub(super) unannotate: Vec<&'static str>,
    /// `Some(true)`: the Job holds jobtrace's export finalizer; `Some(false)`: it doesn't.
    pub(super) hold: Option<bool>,
}

impl MetaEdit {
    pub(super) fn annotation(&mut self, key: &'static str, value: Option<String>) {
        match value {
            Some(value) => self.annotations.push((key, value)),
            None => self.unannotate.push(key),
        }
    }

    pub(super) fn apply(self, ops: &mut Ops, job: &Job) {
        let meta = &job.metadata;
        if !self.labels.is_empty() {
            ops.ensure_entries(&["metadata", "labels"], meta.labels.as_ref(), &self.labels);
        }
        ops.remove_entries(&["metadata", "labels"], meta.labels.as_ref(), &self.unlabel);
        if !self.annotations.is_empty() {
            ops.ensure_entries(
                &["metadata", "annotations"],
                meta.annotations.as_ref(),
                &self.annotations,
            );
        }
        ops.remove_entries(
            &["metadata", "annotations"],
            meta.annotations.as_ref(),
            &self.unannotate,
        );
        if let Some(hold) = self.hold {
            finalizer(ops, &["metadata"], meta.finalizers.as_deref(), hold);
        }
    }
}

/// Adds jobtrace's export finalizer to the finalizers `existing` of the metadata at `base` when
/// `hold` (unless there already), or removes every copy of it.
pub(super) fn finalizer(ops: &mut Ops, base: &[&str], existing: Option<&[String]>, hold: bool) {
    let found: Vec<usize> = existing
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(|(_, f)| *f == names::EXPORT_FINALIZER)
        .map(|(i, _)| i)
        .collect();
    let path = |last: &[&str]| {
        pointer(
            base.iter()
                .copied()
                .chain(["finalizers"])
                .chain(last.iter().copied()),
        )
    };
    if hold && found.is_empty() {
        let value = Value::String(names::EXPORT_FINALIZER.to_owned());
        if existing.is_none() {
            ops.add(path(&[]), Value::Array(vec![value]));
        } else {
            ops.add(path(&["-"]), value);
        }
    } else if !hold {
        // Highest index first, so that each removal leaves the next one's index as it was.
        for i in found.iter().rev() {
            ops.remove(path(&[&i.to_string()]));
        }
    }
}
