//! The pod mutation: each pod of a traced Job gets its own attempt span, and `TRACEPARENT` in its
//! containers points at that span.

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::patch::Ops;
use super::tag::Kind;
use super::{Admission, Mutation, Outcome, admission_tag, admission_time, reinvocation};
use crate::core::context::{SpanId, TraceId, traceparent};
use crate::core::names::{self, env};

/// Mutates a pod of a traced Job. The attempt span gets `admission.new_span` unless this is a
/// reinvocation of the request that already gave it one.
pub fn mutate(pod: &Pod, admission: &Admission) -> Mutation {
    let empty = std::collections::BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let trace_id = annotations
        .get(names::TRACE_ID)
        .and_then(|v| TraceId::parse(v));
    let parent = annotations
        .get(names::PARENT_SPAN_ID)
        .and_then(|v| SpanId::parse(v));
    let (Some(trace_id), Some(parent)) = (trace_id, parent) else {
        // Labelled traced, but not by the Job webhook: nothing jobtrace can vouch for.
        return Mutation::untouched(crate::core::context::Warnings::new());
    };
    let kept = reinvocation(&pod.metadata, Kind::Pod, admission);
    let previous = annotations
        .get(names::SPAN_ID)
        .and_then(|v| SpanId::parse(v));
    // The tag covers the trace id read above: a span kept is one of this trace.
    let (span, admitted_at) = kept.map_or_else(
        || (admission.new_span, admission_time(admission.now)),
        |kept| (kept.span_id, kept.admitted_at),
    );
    let tag = admission_tag(
        Kind::Pod,
        admission,
        pod.metadata.name.as_deref(),
        trace_id,
        span,
        &admitted_at,
    );

    let mut ops = Ops::default();
    ops.ensure_entries(
        &["metadata", "annotations"],
        Some(annotations),
        &[
            (names::SPAN_ID, span.to_string()),
            (names::ADMITTED_AT, admitted_at),
            (names::ADMISSION_TAG, tag),
        ],
    );
    ops.remove_entries(
        &["metadata", "annotations"],
        Some(annotations),
        &[names::EXPORTED],
    );
    let flags = annotations
        .get(names::TRACE_FLAGS)
        .and_then(|v| u8::from_str_radix(v, 16).ok())
        .map(crate::core::context::TraceFlags::from_bits);
    let mut env_flags = None;
    if let Some(spec) = &pod.spec {
        let lists = [
            (
                "initContainers",
                spec.init_containers.as_deref().unwrap_or_default(),
            ),
            ("containers", spec.containers.as_slice()),
        ];
        for (field, containers) in lists {
            for (i, container) in containers.iter().enumerate() {
                for (j, var) in container.env.iter().flatten().enumerate() {
                    let Some(value) = var
                        .value
                        .as_deref()
                        .filter(|_| var.name == env::TRACEPARENT)
                    else {
                        continue;
                    };
                    let Ok(tp) = traceparent::parse(value) else {
                        continue;
                    };
                    if tp.trace_id != trace_id {
                        continue;
                    }
                    env_flags.get_or_insert(tp.flags);
                    // Only what the Job webhook wrote (child of the Job span), or what this
                    // webhook wrote for an earlier pod the object was saved from, is rewritten.
                    let ours = tp.parent_id == parent || previous == Some(tp.parent_id);
                    if ours && tp.parent_id != span {
                        let (i, j) = (i.to_string(), j.to_string());
                        let path = super::patch::pointer(["spec", field, &i, "env", &j, "value"]);
                        ops.add(path, Value::String(tp.with_parent(span).to_string()));
                    }
                }
            }
        }
    }
    Mutation {
        patch: ops.into_patch(),
        warnings: crate::core::context::Warnings::new(),
        outcome: Outcome::Traced {
            trace_id,
            // Pods of Jobs admitted before the flags were recorded carry them only in the env.
            flags: flags
                .or(env_flags)
                .unwrap_or(crate::core::context::TraceFlags::NONE),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::{admission, defaults};
    use jobtrace_testkit::fixtures::{SPAN_A, SPAN_B};
    use jobtrace_testkit::fixtures::{TP, apply, env_value, job, pod_of, typed};

    /// The pod the job controller would create from a Job mutated with span A.
    fn pod_of_mutated_job() -> Value {
        let object = job(&json!({ "traceparent": TP }));
        let mutation =
            crate::core::mutate::job::mutate(&typed(&object), &admission(SPAN_A), &defaults());
        pod_of(&apply(&object, &mutation.patch))
    }

    #[test]
    fn each_pod_gets_its_own_span_and_traceparent_points_at_it() {
        let pod = pod_of_mutated_job();
        let mutation = mutate(&typed(&pod), &admission(SPAN_B));
        let out = apply(&pod, &mutation.patch);
        assert_eq!(
            out["metadata"]["annotations"]["jobtrace.dev/span-id"],
            "0b0b0b0b0b0b0b0b"
        );
        for c in [
            "/spec/initContainers/0",
            "/spec/containers/0",
            "/spec/containers/1",
            "/spec/containers/2",
        ] {
            assert_eq!(
                env_value(&out, c, "TRACEPARENT"),
                Some(&json!(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-0b0b0b0b0b0b0b0b-01"
                )),
                "{c}"
            );
        }
        assert!(mutation.outcome.sampled());
    }

    #[test]
    fn pod_reinvocation_yields_empty_patch() {
        let pod = pod_of_mutated_job();
        let once = apply(&pod, &mutate(&typed(&pod), &admission(SPAN_B)).patch);
        let again = mutate(&typed(&once), &admission(SPAN_A));
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    }

    #[test]
    fn user_traceparent_is_not_rewritten() {
        let mut pod = pod_of_mutated_job();
        let own = "00-11111111111111111111111111111111-2222222222222222-01";
        pod["spec"]["containers"][1]["env"] = json!([{ "name": "TRACEPARENT", "value": own }]);
        let out = apply(&pod, &mutate(&typed(&pod), &admission(SPAN_B)).patch);
        assert_eq!(
            env_value(&out, "/spec/containers/1", "TRACEPARENT"),
            Some(&json!(own))
        );
    }

    #[test]
    fn pod_without_job_annotations_is_untouched() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "p", "labels": { "jobtrace.dev/traced": "true" } },
            "spec": { "containers": [{ "name": "c", "image": "i" }] }
        });
        let mutation = mutate(&typed(&pod), &admission(SPAN_B));
        assert!(mutation.patch.0.is_empty());
        assert_eq!(mutation.outcome, Outcome::NotTraced);
    }

    #[test]
    fn a_pod_recreated_from_a_saved_manifest_gets_a_new_span_and_is_exported_afresh() {
        let pod = pod_of_mutated_job();
        let mut saved = apply(&pod, &mutate(&typed(&pod), &admission(SPAN_B)).patch);
        saved["metadata"]["annotations"]["jobtrace.dev/exported"] = json!("true");
        saved["metadata"]["creationTimestamp"] = json!("2026-11-23T10:00:00Z");
        let fresh = crate::core::context::SpanId([0xc; 8]);
        let out = apply(&saved, &mutate(&typed(&saved), &admission(fresh)).patch);
        assert_eq!(
            out["metadata"]["annotations"]["jobtrace.dev/span-id"],
            "0c0c0c0c0c0c0c0c"
        );
        assert!(
            out["metadata"]["annotations"]
                .get("jobtrace.dev/exported")
                .is_none()
        );
        assert_eq!(
            env_value(&out, "/spec/containers/0", "TRACEPARENT"),
            Some(&json!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0c0c0c0c0c0c0c0c-01"
            )),
            "the old attempt's TRACEPARENT is jobtrace's own: rewritten"
        );
    }

    #[test]
    fn a_pod_reinvoked_with_its_tag_keeps_its_span() {
        let pod = pod_of_mutated_job();
        let once = apply(&pod, &mutate(&typed(&pod), &admission(SPAN_B)).patch);
        assert_eq!(
            once["metadata"]["annotations"]["jobtrace.dev/admission-tag"]
                .as_str()
                .map(str::len),
            Some(43)
        );
        let again = mutate(&typed(&once), &admission(SPAN_A));
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    }

    #[test]
    fn a_pod_with_a_forged_or_copied_stamp_gets_a_new_span() {
        let pod = pod_of_mutated_job();
        let once = apply(&pod, &mutate(&typed(&pod), &admission(SPAN_B)).patch);
        let forged = |key: &str, value: Option<Value>| {
            let mut object = once.clone();
            let annotations = object["metadata"]["annotations"].as_object_mut().unwrap();
            match value {
                Some(value) => annotations.insert(key.to_owned(), value),
                None => annotations.remove(key),
            };
            object
        };
        let fresh = crate::core::context::SpanId([0xc; 8]);
        let cases = [
            (
                "no tag",
                forged("jobtrace.dev/admission-tag", None),
                "reports",
            ),
            (
                "the tag of another span",
                forged("jobtrace.dev/span-id", Some(json!("0d0d0d0d0d0d0d0d"))),
                "reports",
            ),
            (
                "the tag of another trace",
                forged(
                    "jobtrace.dev/trace-id",
                    Some(json!("0af7651916cd43dd8448eb211c80319c")),
                ),
                "reports",
            ),
            (
                "the whole stamp, in another namespace",
                once.clone(),
                "tenant-b",
            ),
        ];
        for (what, object, namespace) in cases {
            let there = crate::core::mutate::Admission {
                namespace,
                ..admission(fresh)
            };
            let out = apply(&object, &mutate(&typed(&object), &there).patch);
            assert_eq!(
                out["metadata"]["annotations"]["jobtrace.dev/span-id"], "0c0c0c0c0c0c0c0c",
                "{what}"
            );
        }
    }

    #[test]
    fn pod_sampling_comes_from_the_recorded_flags() {
        let mut pod = pod_of_mutated_job();
        pod["metadata"]["annotations"]["jobtrace.dev/trace-flags"] = json!("00");
        assert!(!mutate(&typed(&pod), &admission(SPAN_B)).outcome.sampled());
    }
}
