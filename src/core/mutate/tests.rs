use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::tag::{Keyring, Kind, Stamped, TagKey};
use super::*;
use crate::testing::admission;
use jobtrace_testkit::fixtures::SPAN_A;
use jobtrace_testkit::fixtures::now;

/// A Job's metadata as jobtrace stamped it at [`now`] with span A, tagged by `keys`.
fn stamped(keys: &Keyring) -> ObjectMeta {
    let admitted_at = admission_time(now());
    let tag = keys.tag(&Stamped {
        kind: Kind::Job,
        namespace: "reports",
        name: "nightly",
        trace_id: TraceId([0x4b; 16]),
        span_id: SPAN_A,
        admitted_at: &admitted_at,
    });
    ObjectMeta {
        name: Some("nightly".to_owned()),
        annotations: Some(
            [
                (names::TRACE_ID, TraceId([0x4b; 16]).to_string()),
                (names::SPAN_ID, SPAN_A.to_string()),
                (names::ADMITTED_AT, admitted_at),
                (names::ADMISSION_TAG, tag),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        ),
        ..ObjectMeta::default()
    }
}

#[test]
fn a_stamp_is_a_reinvocation_only_under_the_key_that_tagged_it() {
    let keys = Keyring::new(TagKey::random());
    let meta = stamped(&keys);
    let kept = reinvocation_with(&meta, Kind::Job, &admission(SPAN_A), &keys);
    assert_eq!(
        kept,
        Some(Kept {
            trace_id: TraceId([0x4b; 16]),
            span_id: SPAN_A,
            admitted_at: admission_time(now()),
        })
    );
    let another_replica = Keyring::new(TagKey::random());
    assert_eq!(
        reinvocation_with(&meta, Kind::Job, &admission(SPAN_A), &another_replica),
        None
    );
    // Rotated between the two passes: the key before still holds.
    let rotated = keys.rotated(TagKey::random(), now());
    assert!(reinvocation_with(&meta, Kind::Job, &admission(SPAN_A), &rotated).is_some());
    // A pod's stamp is no Job's.
    assert_eq!(
        reinvocation_with(&meta, Kind::Pod, &admission(SPAN_A), &keys),
        None
    );
}

/// A Job's reinvocations, re-creations from saved manifests and forged stamps.
mod jobs {
    use serde_json::{Value, json};

    use crate::core::context::{SpanId, TraceId};
    use crate::core::mutate::job::tests::{CONTAINERS, run, run_with, with};
    use crate::core::mutate::job::*;
    use crate::testing::{admission, defaults};
    use jobtrace_testkit::fixtures::{SPAN_A, SPAN_B};
    use jobtrace_testkit::fixtures::{TP, apply, env_value, job, typed};

    #[test]
    fn reinvocation_yields_empty_patch() {
        let object = job(&json!({ "traceparent": TP, "tracestate": "rojo=1", "baggage": "k=v" }));
        let (_, once) = run(&object, SPAN_A);
        let (again, twice) = run(&once, SPAN_B);
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
        assert!(again.warnings.is_empty(), "{:?}", again.warnings);
        assert_eq!(once, twice);
    }

    #[test]
    fn changed_context_gets_a_new_span() {
        let (_, once) = run(&job(&json!({ "traceparent": TP })), SPAN_A);
        let mut copied = once.clone();
        copied["metadata"]["annotations"]["traceparent"] =
            json!("00-11111111111111111111111111111111-2222222222222222-01");
        let (_, out) = run(&copied, SPAN_B);
        assert_eq!(
            out["metadata"]["annotations"]["jobtrace.dev/span-id"],
            "0b0b0b0b0b0b0b0b"
        );
        assert_eq!(
            out["metadata"]["annotations"]["jobtrace.dev/trace-id"],
            "11111111111111111111111111111111"
        );
    }

    /// A Job as `kubectl get -o yaml` saves it after jobtrace admitted and exported it, with the
    /// fields a re-create can't carry stripped.
    fn saved(suspended_at_admission: bool) -> Value {
        let mut object = job(&json!({ "traceparent": TP }));
        if suspended_at_admission {
            object["spec"]["suspend"] = json!(true);
        }
        let (_, mut out) = run(&object, SPAN_A);
        out["spec"]["suspend"] = json!(false);
        out["metadata"]["annotations"]["jobtrace.dev/exported"] = json!("true");
        out["metadata"]["creationTimestamp"] = json!("2026-11-23T10:00:00Z");
        out
    }

    #[test]
    fn a_job_recreated_from_a_saved_manifest_is_traced_afresh() {
        let object = saved(true);
        let later = crate::core::mutate::Admission {
            now: "2026-11-24T08:00:00Z".parse().unwrap(),
            ..admission(SPAN_B)
        };
        let mutation = mutate(&typed(&object), &later, &defaults());
        let out = apply(&object, &mutation.patch);
        let annotations = &out["metadata"]["annotations"];
        assert!(
            annotations.get("jobtrace.dev/exported").is_none(),
            "exported is removed"
        );
        assert!(
            annotations.get("jobtrace.dev/created-suspended").is_none(),
            "recomputed"
        );
        assert_eq!(
            annotations["jobtrace.dev/span-id"], "0b0b0b0b0b0b0b0b",
            "a new Job span"
        );
        assert_eq!(
            annotations["jobtrace.dev/admitted-at"],
            "2026-11-24T08:00:00Z"
        );
        assert_eq!(
            out["spec"]["template"]["metadata"]["annotations"]["jobtrace.dev/parent-span-id"],
            "0b0b0b0b0b0b0b0b"
        );
        let child = "00-4bf92f3577b34da6a3ce929d0e0e4736-0b0b0b0b0b0b0b0b-01";
        for c in CONTAINERS {
            assert_eq!(
                env_value(&out, c, "TRACEPARENT"),
                Some(&json!(child)),
                "{c}"
            );
        }
        assert!(
            mutation.warnings.is_empty(),
            "jobtrace's own values are not the user's: {:?}",
            mutation.warnings
        );
        let again = mutate(&typed(&out), &later, &defaults());
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    }

    #[test]
    fn a_saved_job_without_creation_time_but_an_old_stamp_gets_a_new_span() {
        let mut object = saved(false);
        object["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("creationTimestamp");
        let later = crate::core::mutate::Admission {
            now: "2026-11-23T10:01:01Z".parse().unwrap(),
            ..admission(SPAN_B)
        };
        let out = apply(&object, &mutate(&typed(&object), &later, &defaults()).patch);
        assert_eq!(
            out["metadata"]["annotations"]["jobtrace.dev/span-id"],
            "0b0b0b0b0b0b0b0b"
        );
    }

    #[test]
    fn a_saved_job_recreated_within_a_minute_is_new_by_its_creation_time() {
        let object = saved(false);
        let soon = crate::core::mutate::Admission {
            now: "2026-11-23T10:00:20Z".parse().unwrap(),
            ..admission(SPAN_B)
        };
        let out = apply(&object, &mutate(&typed(&object), &soon, &defaults()).patch);
        assert_eq!(
            out["metadata"]["annotations"]["jobtrace.dev/span-id"],
            "0b0b0b0b0b0b0b0b"
        );
    }

    #[test]
    fn a_saved_job_recreated_within_a_minute_is_new_by_its_managed_fields() {
        let mut object = saved(false);
        object["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("creationTimestamp");
        object["metadata"]["managedFields"] = json!([{
            "manager": "kubectl-create", "operation": "Update", "apiVersion": "batch/v1",
            "time": "2026-11-23T10:00:21Z", "fieldsType": "FieldsV1", "fieldsV1": {}
        }]);
        let soon = crate::core::mutate::Admission {
            now: "2026-11-23T10:00:21.300Z".parse().unwrap(),
            ..admission(SPAN_B)
        };
        let out = apply(&object, &mutate(&typed(&object), &soon, &defaults()).patch);
        assert_eq!(
            out["metadata"]["annotations"]["jobtrace.dev/span-id"],
            "0b0b0b0b0b0b0b0b"
        );
        // The apiserver's reinvocation of the request that stamped the Job: fields written in
        // the second the request began, before jobtrace's stamp.
        let (_, once) = run(&job(&json!({ "traceparent": TP })), SPAN_A);
        let mut reinvoked = once.clone();
        reinvoked["metadata"]["managedFields"] = json!([{
            "manager": "kubectl-create", "operation": "Update", "apiVersion": "batch/v1",
            "time": "2026-11-23T10:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {}
        }]);
        assert!(
            mutate(&typed(&reinvoked), &admission(SPAN_B), &defaults())
                .patch
                .0
                .is_empty()
        );
    }

    #[test]
    fn reinvocation_within_the_request_keeps_the_span() {
        let (_, once) = run(&job(&json!({ "traceparent": TP })), SPAN_A);
        let soon = crate::core::mutate::Admission {
            now: "2026-11-23T10:00:02Z".parse().unwrap(),
            ..admission(SPAN_B)
        };
        let again = mutate(&typed(&once), &soon, &defaults());
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    }

    /// A Job's jobtrace annotations after its admission in `reports` with span A.
    fn admitted() -> Value {
        run(&job(&json!({ "traceparent": TP })), SPAN_A).1
    }

    #[test]
    fn a_true_reinvocation_with_its_tag_keeps_the_ids_and_the_tag() {
        let once = admitted();
        let annotations = &once["metadata"]["annotations"];
        let tag = annotations["jobtrace.dev/admission-tag"].as_str().unwrap();
        assert_eq!(tag.len(), 43, "HMAC-SHA256 in unpadded base64url: {tag}");
        let soon = crate::core::mutate::Admission {
            now: "2026-11-23T10:00:02Z".parse().unwrap(),
            ..admission(SPAN_B)
        };
        let again = mutate(&typed(&once), &soon, &defaults());
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
        // A trace of its own, kept too.
        let link = with(
            crate::core::policy::TraceSettings {
                relationship: crate::core::policy::Relationship::Link,
                ..crate::core::policy::TraceSettings::default()
            },
            None,
        );
        let (_, once) = run_with(&job(&json!({ "traceparent": TP })), &link);
        let fresh = crate::core::mutate::Admission {
            new_trace: TraceId([0x6b; 16]),
            ..soon
        };
        let again = mutate(&typed(&once), &fresh, &link);
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    }

    /// Each way a creator can write a stamp of jobtrace's on a Job it creates, starting from a Job
    /// jobtrace just admitted (span A, in `reports`), and the namespace it creates it in: none
    /// passes for a reinvocation.
    fn forgeries() -> Vec<(&'static str, Value, &'static str)> {
        let admitted = admitted();
        let forged = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut object = admitted.clone();
            edit(object["metadata"]["annotations"].as_object_mut().unwrap());
            object
        };
        let other_key = {
            let keys =
                crate::core::mutate::tag::Keyring::new(crate::core::mutate::tag::TagKey::random());
            keys.tag(&crate::core::mutate::tag::Stamped {
                kind: crate::core::mutate::tag::Kind::Job,
                namespace: "reports",
                name: "nightly",
                trace_id: TraceId::parse(jobtrace_testkit::fixtures::TRACE_ID).unwrap(),
                span_id: SpanId([0xc; 8]),
                admitted_at: "2026-11-23T10:00:00Z",
            })
        };
        vec![
            (
                "a fresh stamp without a tag",
                forged(&|a| {
                    a.remove("jobtrace.dev/admission-tag");
                    a.insert("jobtrace.dev/span-id".into(), json!("0c0c0c0c0c0c0c0c"));
                }),
                "reports",
            ),
            (
                "a tag made with another key",
                forged(&|a| {
                    a.insert("jobtrace.dev/span-id".into(), json!("0c0c0c0c0c0c0c0c"));
                    a.insert("jobtrace.dev/admission-tag".into(), json!(other_key));
                }),
                "reports",
            ),
            (
                "a malformed tag",
                forged(&|a| {
                    a.insert("jobtrace.dev/admission-tag".into(), json!("not-a-tag"));
                }),
                "reports",
            ),
            (
                "the tag of another span id",
                forged(&|a| {
                    a.insert("jobtrace.dev/span-id".into(), json!("0c0c0c0c0c0c0c0c"));
                }),
                "reports",
            ),
            (
                "the tag of another admission time",
                forged(&|a| {
                    a.insert(
                        "jobtrace.dev/admitted-at".into(),
                        json!("2026-11-23T10:00:01Z"),
                    );
                }),
                "reports",
            ),
            (
                "the whole stamp, in another namespace",
                admitted.clone(),
                "tenant-b",
            ),
            (
                "the whole stamp, on a Job of another name",
                {
                    let mut object = admitted.clone();
                    object["metadata"]["name"] = json!("copied");
                    object
                },
                "reports",
            ),
        ]
    }

    #[test]
    fn a_forged_or_copied_stamp_gets_new_ids() {
        for (what, object, namespace) in forgeries() {
            let there = crate::core::mutate::Admission {
                namespace,
                ..admission(SPAN_B)
            };
            let mutation = mutate(&typed(&object), &there, &defaults());
            let out = apply(&object, &mutation.patch);
            let annotations = &out["metadata"]["annotations"];
            assert_eq!(
                annotations["jobtrace.dev/span-id"], "0b0b0b0b0b0b0b0b",
                "{what}"
            );
            assert_eq!(
                annotations["jobtrace.dev/admitted-at"], "2026-11-23T10:00:00Z",
                "{what}"
            );
            let again = mutate(&typed(&out), &there, &defaults());
            assert!(again.patch.0.is_empty(), "{what}: its own tag holds");
        }
    }

    #[test]
    fn the_tag_of_another_trace_gets_a_new_trace_of_its_own() {
        // A Job in a trace of its own (link mode) carrying another trace's id and span id, with
        // a fresh stamp and the tag of its own first admission.
        let link = with(
            crate::core::policy::TraceSettings {
                relationship: crate::core::policy::Relationship::Link,
                ..crate::core::policy::TraceSettings::default()
            },
            None,
        );
        let (_, mut object) = run_with(&job(&json!({ "traceparent": TP })), &link);
        object["metadata"]["annotations"]["jobtrace.dev/trace-id"] =
            json!("0af7651916cd43dd8448eb211c80319c");
        let fresh = crate::core::mutate::Admission {
            new_trace: TraceId([0x6b; 16]),
            ..admission(SPAN_B)
        };
        let out = apply(&object, &mutate(&typed(&object), &fresh, &link).patch);
        let annotations = &out["metadata"]["annotations"];
        assert_eq!(
            annotations["jobtrace.dev/trace-id"],
            "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b"
        );
        assert_eq!(annotations["jobtrace.dev/span-id"], "0b0b0b0b0b0b0b0b");
    }
}
