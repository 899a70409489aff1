//! The Job mutation: trace context from the Job's annotations, or a trace of its own, into its
//! pod template, as the settings that apply to it say.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::env::{AttributeValue, Helper, Injection};
use super::patch::{MetaEdit, Ops, finalizer, pointer};
use super::plan::{Plan, plan};
use super::tag::Kind;
use super::{Admission, Mutation, Outcome, admission_tag, admission_time, reinvocation};
use crate::core::context::TraceFlags;
use crate::core::context::{self, SpanId, TraceId, Traceparent};
use crate::core::names::attribute;
use crate::core::names::{self, env};
use crate::core::policy::Resolution;

/// Mutates a Job being created, with the settings `resolution` found for it. The Job span (and a
/// trace of its own) gets the ids of `admission` unless this is a reinvocation of the request that
/// already gave it some; whatever else of jobtrace's the Job carries (say, from a saved manifest)
/// is recomputed or removed.
pub fn mutate(job: &Job, admission: &Admission, resolution: &Resolution) -> Mutation {
    let empty = BTreeMap::new();
    let annotations = job.metadata.annotations.as_ref().unwrap_or(&empty);
    let settings = &resolution.settings;
    let (context, mut warnings) = if settings.request_context {
        context::from_annotations_and_request(annotations, admission.request)
    } else {
        context::from_annotations(annotations)
    };
    let kept = reinvocation(&job.metadata, Kind::Job, admission);
    let previous_trace = annotations
        .get(names::TRACE_ID)
        .and_then(|id| TraceId::parse(id));
    let previous_span = annotations
        .get(names::SPAN_ID)
        .and_then(|id| SpanId::parse(id));
    let new_trace = kept.as_ref().map_or(admission.new_trace, |k| k.trace_id);
    let Some(plan) = plan(context, settings, cron_run(job), new_trace) else {
        let mut ops = Ops::default();
        let mut edit = MetaEdit::default();
        label_policy(&mut edit, resolution);
        untrace(&mut edit, &mut ops, job);
        edit.apply(&mut ops, job);
        return Mutation {
            patch: ops.into_patch(),
            warnings,
            outcome: Outcome::NotTraced,
        };
    };
    let trace_id = plan.trace_id;
    let (job_span, admitted_at) = kept.filter(|k| k.trace_id == trace_id).map_or_else(
        || (admission.new_span, admission_time(admission.now)),
        |k| (k.span_id, k.admitted_at),
    );
    let tag = admission_tag(
        Kind::Job,
        admission,
        job.metadata.name.as_deref(),
        trace_id,
        job_span,
        &admitted_at,
    );
    let flags = plan.flags.to_string();
    let outcome = Outcome::Traced {
        trace_id,
        flags: plan.flags,
    };

    let mut ops = Ops::default();
    let mut edit = MetaEdit::default();
    label_policy(&mut edit, resolution);
    // Held until exported, where the settings ask for it and there is something to export.
    edit.hold = Some(held_for_export(settings, plan.flags));
    label_job(
        &mut edit,
        job,
        &plan,
        job_span,
        admitted_at,
        tag,
        &settings.job_labels,
    );
    edit.apply(&mut ops, job);

    let Some(spec) = &job.spec else {
        return Mutation {
            patch: ops.into_patch(),
            warnings,
            outcome,
        };
    };
    let template = &spec.template;
    // Its pods held too where the settings ask for it: the pod spans are the processes' parent.
    let hold_pods =
        settings.hold_pods && settings.pod_spans && held_for_export(settings, plan.flags);
    label_template(
        &mut ops,
        template,
        trace_id,
        job_span,
        &flags,
        settings.pod_spans,
        hold_pods,
    );

    let previous = previous_trace.zip(previous_span);
    inject_containers(
        &mut ops,
        &mut warnings,
        job,
        &plan,
        job_span,
        previous,
        admission.namespace,
        settings,
    );

    Mutation {
        patch: ops.into_patch(),
        warnings,
        outcome,
    }
}

/// Whether a Job of trace `flags` is held for export under `settings`: where they ask for it and
/// there is something to export.
fn held_for_export(settings: &crate::core::policy::TraceSettings, flags: TraceFlags) -> bool {
    settings.hold_for_export && flags.is_sampled()
}

/// Injects the Job's context into every container of its pod template the settings allow.
/// `previous` are the ids the Job carried: a container holding what jobtrace wrote for them holds
/// jobtrace's old injection (a re-created Job), not the user's.
#[allow(clippy::too_many_arguments)]
fn inject_containers(
    ops: &mut Ops,
    warnings: &mut context::Warnings,
    job: &Job,
    plan: &Plan,
    job_span: SpanId,
    previous: Option<(TraceId, SpanId)>,
    namespace: &str,
    settings: &crate::core::policy::TraceSettings,
) {
    let trace_id = plan.trace_id;
    let Some(pod) = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return;
    };
    let context = Traceparent {
        trace_id,
        parent_id: job_span,
        flags: plan.flags,
    };
    let mut vars = vec![(env::TRACEPARENT, context.to_string())];
    if let Some(tracestate) = &plan.tracestate {
        vars.push((env::TRACESTATE, tracestate.header()));
    }
    if let Some(baggage) = &plan.baggage {
        vars.push((env::BAGGAGE, baggage.header()));
    }
    // What jobtrace wrote into the containers for the span this object had before.
    let stale = previous
        .filter(|&(trace, span)| (trace, span) != (trace_id, job_span))
        .map(|(trace, span)| Traceparent {
            trace_id: trace,
            parent_id: span,
            flags: plan.flags,
        });
    let attributes = settings
        .resource_attributes
        .then(|| resource_attributes(job, namespace));
    let injection = Injection::new(vars, attributes, stale);
    {
        let lists = [
            (
                "initContainers",
                pod.init_containers.as_deref().unwrap_or_default(),
            ),
            ("containers", pod.containers.as_slice()),
        ];
        for (field, containers) in lists {
            for (i, container) in containers.iter().enumerate() {
                if !settings.containers.allows(&container.name) {
                    continue;
                }
                let index = i.to_string();
                let path = ["spec", "template", "spec", field, &index];
                injection.inject(ops, &path, container, warnings);
            }
        }
    }
}

/// Whether a CronJob owns the Job: its scheduled runs, and those made by hand with
/// `kubectl create job --from=cronjob/...`, which sets the same owner.
fn cron_run(job: &Job) -> bool {
    cronjob_owner(job).is_some()
}

/// The CronJob that owns the Job, if one does.
fn cronjob_owner(
    job: &Job,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "CronJob" && o.api_version.starts_with("batch/"))
}

/// Records which policy decided for the Job (a label, so the controller can count its Jobs) and
/// which it overrode; removes what a saved manifest says of an earlier decision.
fn label_policy(edit: &mut MetaEdit, resolution: &Resolution) {
    match &resolution.policy {
        Some(name) => edit.labels.push((names::POLICY, name.clone())),
        None => edit.unlabel.push(names::POLICY),
    }
    let overridden = (!resolution.overridden.is_empty()).then(|| resolution.overridden.join(","));
    edit.annotation(names::POLICY_OVERRIDDEN, overridden);
}

/// Labels the Job traced and writes its annotations: the ids, flags, stamp, admission tag and
/// origin, the link and parent where the plan has them, the label keys for its span, and
/// `created-suspended` as the spec says now. Never trusted on a CREATE: `exported` (a Job
/// re-created from a saved manifest is exported afresh), and a parent, link or `created-suspended`
/// the plan no longer bears out.
fn label_job(
    edit: &mut MetaEdit,
    job: &Job,
    plan: &Plan,
    job_span: SpanId,
    admitted_at: String,
    tag: String,
    job_labels: &[String],
) {
    edit.labels.push((names::TRACED_LABEL, "true".to_owned()));
    edit.annotations.extend([
        (names::TRACE_ID, plan.trace_id.to_string()),
        (names::SPAN_ID, job_span.to_string()),
        (names::TRACE_FLAGS, plan.flags.to_string()),
        (names::ADMITTED_AT, admitted_at),
        (names::ADMISSION_TAG, tag),
        (names::ORIGIN, plan.origin.label().to_owned()),
    ]);
    edit.unannotate.push(names::EXPORTED);
    edit.annotation(names::PARENT_SPAN_ID, plan.parent.map(|p| p.to_string()));
    edit.annotation(names::LINK, plan.link.map(|l| l.to_string()));
    edit.annotation(
        names::JOB_LABELS,
        (!job_labels.is_empty()).then(|| job_labels.join(",")),
    );
    let suspended = job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
    edit.annotation(
        names::CREATED_SUSPENDED,
        suspended.then(|| "true".to_owned()),
    );
}

/// What jobtrace would have written on a traced Job, removed from one that is not traced (a
/// Job re-created from a saved manifest under settings that no longer trace it): its old ids are
/// never exported.
fn untrace(edit: &mut MetaEdit, ops: &mut Ops, job: &Job) {
    edit.unlabel.push(names::TRACED_LABEL);
    edit.hold = Some(false);
    edit.unannotate.extend([
        names::TRACE_ID,
        names::SPAN_ID,
        names::PARENT_SPAN_ID,
        names::TRACE_FLAGS,
        names::ADMITTED_AT,
        names::ADMISSION_TAG,
        names::ORIGIN,
        names::LINK,
        names::JOB_LABELS,
        names::EXPORTED,
        names::CREATED_SUSPENDED,
    ]);
    let Some(meta) = job.spec.as_ref().and_then(|s| s.template.metadata.as_ref()) else {
        return;
    };
    finalizer(
        ops,
        &["spec", "template", "metadata"],
        meta.finalizers.as_deref(),
        false,
    );
    ops.remove_entries(
        &["spec", "template", "metadata", "labels"],
        meta.labels.as_ref(),
        &[names::TRACED_LABEL],
    );
    ops.remove_entries(
        &["spec", "template", "metadata", "annotations"],
        meta.annotations.as_ref(),
        &[names::TRACE_ID, names::PARENT_SPAN_ID, names::TRACE_FLAGS],
    );
}

/// Records on the pod template what each pod needs to know without a lookup: the trace, the
/// pods' parent (the Job span) and the trace flags; labels it traced, so its pods reach the pod
/// webhook and the controller, unless pod spans are off. Annotations that belong to one object
/// only are kept off the template, so no pod inherits another's.
fn label_template(
    ops: &mut Ops,
    template: &PodTemplateSpec,
    trace_id: TraceId,
    job_span: SpanId,
    flags: &str,
    pod_spans: bool,
    hold_pods: bool,
) {
    let traced = [(names::TRACED_LABEL, "true".to_owned())];
    let traced: &[(&str, String)] = if pod_spans { &traced } else { &[] };
    let annotations = [
        (names::TRACE_ID, trace_id.to_string()),
        (names::PARENT_SPAN_ID, job_span.to_string()),
        (names::TRACE_FLAGS, flags.to_owned()),
    ];
    let Some(meta) = &template.metadata else {
        let map = |entries: &[(&str, String)]| -> serde_json::Map<String, serde_json::Value> {
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone().into()))
                .collect()
        };
        let mut metadata =
            serde_json::json!({ "labels": map(traced), "annotations": map(&annotations) });
        if hold_pods {
            metadata["finalizers"] = serde_json::json!([names::EXPORT_FINALIZER]);
        }
        ops.add(pointer(["spec", "template", "metadata"]), metadata);
        return;
    };
    finalizer(
        ops,
        &["spec", "template", "metadata"],
        meta.finalizers.as_deref(),
        hold_pods,
    );
    if pod_spans {
        ops.ensure_entries(
            &["spec", "template", "metadata", "labels"],
            meta.labels.as_ref(),
            traced,
        );
    } else {
        ops.remove_entries(
            &["spec", "template", "metadata", "labels"],
            meta.labels.as_ref(),
            &[names::TRACED_LABEL],
        );
    }
    ops.ensure_entries(
        &["spec", "template", "metadata", "annotations"],
        meta.annotations.as_ref(),
        &annotations,
    );
    ops.remove_entries(
        &["spec", "template", "metadata", "annotations"],
        meta.annotations.as_ref(),
        &names::OBJECT_OWN,
    );
}

/// The resource attributes every container gets (`k8s.container.name` is added per container).
/// The owner reference's name and uid are whatever the Job's creator wrote: literals like the rest.
fn resource_attributes(job: &Job, namespace: &str) -> Vec<(&'static str, AttributeValue)> {
    let job_name = match job.metadata.name.as_deref() {
        Some(name) if !name.is_empty() => AttributeValue::Literal(name.to_owned()),
        _ => AttributeValue::Helper(Helper::JobName),
    };
    let mut attributes = vec![
        (
            attribute::NAMESPACE_NAME,
            AttributeValue::Literal(namespace.to_owned()),
        ),
        (attribute::JOB_NAME, job_name),
        (attribute::JOB_UID, AttributeValue::Helper(Helper::JobUid)),
        (attribute::POD_NAME, AttributeValue::Helper(Helper::PodName)),
        (attribute::POD_UID, AttributeValue::Helper(Helper::PodUid)),
    ];
    if let Some(owner) = cronjob_owner(job) {
        attributes.push((
            attribute::CRONJOB_NAME,
            AttributeValue::Literal(owner.name.clone()),
        ));
        attributes.push((
            attribute::CRONJOB_UID,
            AttributeValue::Literal(owner.uid.clone()),
        ));
    }
    attributes
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::{admission, defaults};
    use jobtrace_testkit::fixtures::{SPAN_A, SPAN_B};
    use jobtrace_testkit::fixtures::{TP, apply, env_value, job, typed};

    pub(in crate::core::mutate) const CONTAINERS: [&str; 4] = [
        "/spec/template/spec/initContainers/0",
        "/spec/template/spec/containers/0",
        "/spec/template/spec/containers/1",
        "/spec/template/spec/containers/2",
    ];

    pub(in crate::core::mutate) fn run(object: &Value, span: SpanId) -> (Mutation, Value) {
        let mutation = mutate(&typed(object), &admission(span), &defaults());
        let patched = apply(object, &mutation.patch);
        (mutation, patched)
    }

    #[test]
    fn annotated_job_gets_the_context_in_every_container() {
        let (mutation, out) = run(
            &job(&json!({ "traceparent": TP, "tracestate": "rojo=1", "baggage": "k=v" })),
            SPAN_A,
        );
        assert!(mutation.warnings.is_empty(), "{:?}", mutation.warnings);
        let child = "00-4bf92f3577b34da6a3ce929d0e0e4736-0a0a0a0a0a0a0a0a-01";
        for c in CONTAINERS {
            assert_eq!(
                env_value(&out, c, "TRACEPARENT"),
                Some(&json!(child)),
                "{c}"
            );
            assert_eq!(
                env_value(&out, c, "TRACESTATE"),
                Some(&json!("rojo=1")),
                "{c}"
            );
            assert_eq!(env_value(&out, c, "BAGGAGE"), Some(&json!("k=v")), "{c}");
        }
        assert_eq!(
            env_value(&out, CONTAINERS[1], "MODE"),
            Some(&json!("full")),
            "user env kept"
        );
        assert_eq!(out["metadata"]["labels"]["jobtrace.dev/traced"], "true");
        let annotations = &out["metadata"]["annotations"];
        assert_eq!(
            annotations["jobtrace.dev/trace-id"],
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(annotations["jobtrace.dev/span-id"], "0a0a0a0a0a0a0a0a");
        assert_eq!(
            annotations["jobtrace.dev/parent-span-id"],
            "00f067aa0ba902b7"
        );
        let template = &out["spec"]["template"]["metadata"];
        assert_eq!(template["labels"]["jobtrace.dev/traced"], "true");
        assert_eq!(
            template["annotations"]["jobtrace.dev/parent-span-id"],
            "0a0a0a0a0a0a0a0a"
        );
        assert_eq!(
            mutation.outcome,
            Outcome::Traced {
                trace_id: TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
                flags: TraceFlags::SAMPLED
            }
        );
    }

    #[test]
    fn resource_attributes_use_downward_api_for_what_admission_cannot_know() {
        let (_, out) = run(&job(&json!({ "traceparent": TP })), SPAN_A);
        let attributes = env_value(&out, CONTAINERS[2], "OTEL_RESOURCE_ATTRIBUTES").unwrap();
        assert_eq!(
            attributes,
            "k8s.namespace.name=reports,k8s.job.name=nightly,k8s.job.uid=$(JOBTRACE_JOB_UID),\
             k8s.pod.name=$(JOBTRACE_POD_NAME),k8s.pod.uid=$(JOBTRACE_POD_UID),k8s.container.name=side"
        );
        let env = out.pointer(CONTAINERS[2]).unwrap()["env"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = env.iter().map(|v| v["name"].as_str().unwrap()).collect();
        let ra = names
            .iter()
            .position(|n| *n == "OTEL_RESOURCE_ATTRIBUTES")
            .unwrap();
        for helper in ["JOBTRACE_JOB_UID", "JOBTRACE_POD_NAME", "JOBTRACE_POD_UID"] {
            let at = names.iter().position(|n| *n == helper).expect(helper);
            assert!(
                at < ra,
                "{helper} must precede OTEL_RESOURCE_ATTRIBUTES for $(VAR) expansion"
            );
        }
        assert!(
            !names.contains(&"JOBTRACE_JOB_NAME"),
            "the name is known: no helper needed"
        );
        let uid = env
            .iter()
            .find(|v| v["name"] == "JOBTRACE_JOB_UID")
            .unwrap();
        assert_eq!(
            uid["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.labels['batch.kubernetes.io/controller-uid']"
        );
    }

    #[test]
    fn job_without_context_is_untouched() {
        let (mutation, _) = run(&job(&json!({ "team": "data" })), SPAN_A);
        assert!(mutation.patch.0.is_empty());
        assert!(mutation.warnings.is_empty());
        assert_eq!(mutation.outcome, Outcome::NotTraced);
    }

    #[test]
    fn broken_traceparent_is_a_warning_and_nothing_else() {
        let (mutation, _) = run(&job(&json!({ "traceparent": "00-xyz" })), SPAN_A);
        assert!(mutation.patch.0.is_empty());
        assert_eq!(mutation.warnings.len(), 1);
        assert!(
            mutation.warnings[0]
                .message
                .contains("annotation traceparent ignored")
        );
    }

    #[test]
    fn unsampled_context_is_still_injected() {
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let (mutation, out) = run(
            &job(&json!({ "jobtrace.dev/traceparent": unsampled })),
            SPAN_A,
        );
        assert_eq!(
            env_value(&out, CONTAINERS[0], "TRACEPARENT"),
            Some(&json!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0a0a0a0a0a0a0a0a-00"
            ))
        );
        assert!(!mutation.outcome.sampled());
        assert_eq!(
            out["metadata"]["annotations"]["jobtrace.dev/trace-flags"],
            "00"
        );
    }

    #[test]
    fn generated_name_comes_from_the_downward_api() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["metadata"] =
            json!({ "generateName": "nightly-", "annotations": { "traceparent": TP } });
        let (_, out) = run(&object, SPAN_A);
        let attributes = env_value(&out, CONTAINERS[1], "OTEL_RESOURCE_ATTRIBUTES").unwrap();
        assert!(
            attributes
                .as_str()
                .unwrap()
                .contains("k8s.job.name=$(JOBTRACE_JOB_NAME)")
        );
        assert!(env_value(&out, CONTAINERS[1], "JOBTRACE_JOB_NAME").is_some());
        assert_eq!(out["metadata"]["labels"]["jobtrace.dev/traced"], "true");
    }

    #[test]
    fn cronjob_owner_adds_cronjob_attributes() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "6f1c", "controller": true
        }]);
        let (_, out) = run(&object, SPAN_A);
        let attributes = env_value(&out, CONTAINERS[1], "OTEL_RESOURCE_ATTRIBUTES").unwrap();
        assert!(
            attributes
                .as_str()
                .unwrap()
                .contains("k8s.cronjob.name=nightly,k8s.cronjob.uid=6f1c")
        );
    }

    #[test]
    fn existing_template_metadata_is_extended() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["spec"]["template"]["metadata"] = json!({ "labels": { "app": "r" } });
        object["metadata"]["labels"] = json!({ "team": "data" });
        let (_, out) = run(&object, SPAN_A);
        assert_eq!(
            out["spec"]["template"]["metadata"]["labels"],
            json!({ "app": "r", "jobtrace.dev/traced": "true" })
        );
        assert_eq!(
            out["metadata"]["labels"],
            json!({ "team": "data", "jobtrace.dev/traced": "true" })
        );
    }

    #[test]
    fn annotation_keys_are_escaped_in_pointers() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["metadata"]["labels"] = json!({});
        let (mutation, _) = run(&object, SPAN_A);
        let paths: Vec<String> = mutation
            .patch
            .0
            .iter()
            .map(|op| match op {
                json_patch::PatchOperation::Add(add) => add.path.to_string(),
                other => panic!("only add operations, got {other:?}"),
            })
            .collect();
        assert!(
            paths.contains(&"/metadata/labels/jobtrace.dev~1traced".to_owned()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"/metadata/annotations/jobtrace.dev~1span-id".to_owned()),
            "{paths:?}"
        );
    }

    #[test]
    fn created_suspended_follows_the_spec_on_every_pass() {
        let mut object = job(&json!({ "traceparent": TP }));
        let (_, once) = run(&object, SPAN_A);
        assert!(
            once["metadata"]["annotations"]
                .get("jobtrace.dev/created-suspended")
                .is_none()
        );
        object["spec"]["suspend"] = json!(true);
        let (_, suspended) = run(&object, SPAN_A);
        assert_eq!(
            suspended["metadata"]["annotations"]["jobtrace.dev/created-suspended"],
            "true"
        );
        // Another webhook (Kueue) suspends it between two passes.
        let mut reinvoked = once.clone();
        reinvoked["spec"]["suspend"] = json!(true);
        let (_, out) = run(&reinvoked, SPAN_B);
        assert_eq!(
            out["metadata"]["annotations"]["jobtrace.dev/created-suspended"],
            "true"
        );
    }

    #[test]
    fn the_pod_template_never_carries_annotations_of_one_object() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["spec"]["template"]["metadata"] = json!({ "annotations": {
            "jobtrace.dev/span-id": "1234123412341234",
            "jobtrace.dev/exported": "true",
            "jobtrace.dev/admitted-at": "2026-11-23T10:00:00Z",
            "team": "data"
        } });
        let (_, out) = run(&object, SPAN_A);
        let template = out["spec"]["template"]["metadata"]["annotations"]
            .as_object()
            .unwrap();
        let mut keys: Vec<&str> = template.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "jobtrace.dev/parent-span-id",
                "jobtrace.dev/trace-flags",
                "jobtrace.dev/trace-id",
                "team"
            ]
        );
    }

    #[test]
    fn trace_flags_are_recorded_on_the_job_and_its_pods() {
        let level2 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03";
        let (mutation, out) = run(&job(&json!({ "traceparent": level2 })), SPAN_A);
        assert_eq!(
            out["metadata"]["annotations"]["jobtrace.dev/trace-flags"],
            "03"
        );
        assert_eq!(
            out["spec"]["template"]["metadata"]["annotations"]["jobtrace.dev/trace-flags"],
            "03"
        );
        assert!(matches!(
            mutation.outcome,
            Outcome::Traced { flags, .. } if flags.bits() == 0x03
        ));
    }

    /// Resolution with these cluster defaults, and `policy` as the deciding policy's name.
    pub(in crate::core::mutate) fn with(
        settings: crate::core::policy::TraceSettings,
        policy: Option<&str>,
    ) -> Resolution {
        Resolution {
            settings: settings.into(),
            policy: policy.map(str::to_owned),
            overridden: Vec::new(),
        }
    }

    pub(in crate::core::mutate) fn run_with(
        object: &Value,
        resolution: &Resolution,
    ) -> (Mutation, Value) {
        let mutation = mutate(&typed(object), &admission(SPAN_A), resolution);
        let patched = apply(object, &mutation.patch);
        (mutation, patched)
    }

    const NEW_TRACE: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

    #[test]
    fn link_mode_gives_the_job_a_trace_of_its_own_linked_to_the_creator() {
        let settings = crate::core::policy::TraceSettings {
            relationship: crate::core::policy::Relationship::Link,
            ..crate::core::policy::TraceSettings::default()
        };
        let resolution = with(settings, Some("fan-out"));
        let (mutation, out) = run_with(
            &job(&json!({ "traceparent": TP, "tracestate": "rojo=1" })),
            &resolution,
        );
        let annotations = &out["metadata"]["annotations"];
        assert_eq!(annotations["jobtrace.dev/trace-id"], NEW_TRACE);
        assert_eq!(annotations["jobtrace.dev/link"], TP);
        assert_eq!(annotations["jobtrace.dev/origin"], "link");
        assert!(
            annotations.get("jobtrace.dev/parent-span-id").is_none(),
            "a root"
        );
        assert_eq!(out["metadata"]["labels"]["jobtrace.dev/policy"], "fan-out");
        let expected = format!("00-{NEW_TRACE}-0a0a0a0a0a0a0a0a-03");
        assert_eq!(
            env_value(&out, CONTAINERS[1], "TRACEPARENT"),
            Some(&json!(expected))
        );
        assert!(env_value(&out, CONTAINERS[1], "TRACESTATE").is_none());
        assert!(matches!(
            mutation.outcome,
            Outcome::Traced { flags, .. } if flags.bits() == 0x03
        ));
        let again = mutate(&typed(&out), &admission(SPAN_B), &resolution);
        assert!(
            again.patch.0.is_empty(),
            "the same trace on reinvocation: {:?}",
            again.patch
        );
    }

    #[test]
    fn root_traces_trace_a_job_without_context() {
        let settings = crate::core::policy::TraceSettings {
            root_traces: Some(1.0),
            ..crate::core::policy::TraceSettings::default()
        };
        let resolution = with(settings, None);
        let (mutation, out) = run_with(&job(&json!({})), &resolution);
        assert!(mutation.outcome.sampled());
        let annotations = &out["metadata"]["annotations"];
        assert_eq!(annotations["jobtrace.dev/origin"], "root");
        assert_eq!(annotations["jobtrace.dev/trace-flags"], "03");
        assert!(annotations.get("jobtrace.dev/parent-span-id").is_none());
        assert!(annotations.get("jobtrace.dev/link").is_none());
        assert_eq!(
            env_value(&out, CONTAINERS[0], "TRACEPARENT"),
            Some(&json!(format!("00-{NEW_TRACE}-0a0a0a0a0a0a0a0a-03")))
        );
        let unsampled = with(
            crate::core::policy::TraceSettings {
                root_traces: Some(0.0),
                ..crate::core::policy::TraceSettings::default()
            },
            None,
        );
        let (mutation, out) = run_with(&job(&json!({})), &unsampled);
        assert!(!mutation.outcome.sampled());
        assert_eq!(
            out["metadata"]["annotations"]["jobtrace.dev/trace-flags"],
            "02"
        );
        assert!(
            env_value(&out, CONTAINERS[0], "TRACEPARENT").is_some(),
            "context still injected"
        );
    }

    #[test]
    fn the_create_requests_headers_trace_a_job_only_where_the_settings_say() {
        let request = crate::core::context::RequestContext {
            traceparent: vec![TP.to_owned()],
            tracestate: Vec::new(),
            baggage: vec!["tenant=acme".to_owned()],
        };
        let admission = Admission {
            request: &request,
            ..admission(SPAN_A)
        };
        let object = job(&json!({}));
        let off = mutate(&typed(&object), &admission, &defaults());
        assert_eq!(off.outcome, Outcome::NotTraced, "off by default");

        let on = with(
            crate::core::policy::TraceSettings {
                request_context: true,
                ..crate::core::policy::TraceSettings::default()
            },
            None,
        );
        let mutation = mutate(&typed(&object), &admission, &on);
        let out = apply(&object, &mutation.patch);
        assert!(mutation.outcome.sampled());
        let annotations = &out["metadata"]["annotations"];
        assert_eq!(annotations["jobtrace.dev/origin"], "child");
        assert_eq!(
            annotations["jobtrace.dev/parent-span-id"],
            &TP[36..52],
            "the header's span is the Job span's parent"
        );
        assert_eq!(
            env_value(&out, CONTAINERS[0], "BAGGAGE"),
            Some(&json!("tenant=acme"))
        );
        assert_eq!(
            env_value(&out, CONTAINERS[0], "TRACEPARENT"),
            Some(&json!(format!("00-{}-0a0a0a0a0a0a0a0a-01", &TP[3..35])))
        );
    }

    #[test]
    fn a_sampled_job_is_held_for_export_where_the_settings_say() {
        let held = with(
            crate::core::policy::TraceSettings {
                hold_for_export: true,
                ..crate::core::policy::TraceSettings::default()
            },
            None,
        );
        let finalizers = |out: &Value| out["metadata"]["finalizers"].clone();
        let (_, out) = run_with(&job(&json!({ "traceparent": TP })), &held);
        assert_eq!(finalizers(&out), json!(["jobtrace.dev/export"]));
        let (_, out) = run_with(&job(&json!({ "traceparent": TP })), &defaults());
        assert!(finalizers(&out).is_null(), "off by default");

        // Others' finalizers stay; a reinvocation adds nothing.
        let mut object = job(&json!({ "traceparent": TP }));
        object["metadata"]["finalizers"] = json!(["example.com/keep"]);
        let (mutation, out) = run_with(&object, &held);
        assert_eq!(
            finalizers(&out),
            json!(["example.com/keep", "jobtrace.dev/export"])
        );
        let again = mutate(&typed(&out), &admission(SPAN_B), &held);
        assert!(
            !serde_json::to_string(&again.patch)
                .unwrap()
                .contains("finalizers"),
            "{:?}",
            again.patch
        );
        let _ = mutation;

        // Nothing to export: no hold, and one from a saved manifest goes.
        let unsampled = TP.replace("-01", "-00");
        let mut saved = job(&json!({ "traceparent": unsampled }));
        saved["metadata"]["finalizers"] = json!([
            "jobtrace.dev/export",
            "example.com/keep",
            "jobtrace.dev/export"
        ]);
        let (_, out) = run_with(&saved, &held);
        assert_eq!(finalizers(&out), json!(["example.com/keep"]));
        let mut untraced = job(&json!({}));
        untraced["metadata"]["finalizers"] = json!(["jobtrace.dev/export"]);
        let (_, out) = run_with(&untraced, &held);
        assert_eq!(finalizers(&out), json!([]));
    }

    #[test]
    fn a_held_jobs_pods_are_held_too_where_the_settings_say() {
        let settings = |hold_pods, pod_spans| {
            with(
                crate::core::policy::TraceSettings {
                    hold_for_export: true,
                    hold_pods,
                    pod_spans,
                    ..crate::core::policy::TraceSettings::default()
                },
                None,
            )
        };
        let template = |out: &Value| out["spec"]["template"]["metadata"]["finalizers"].clone();
        let sampled = job(&json!({ "traceparent": TP }));
        let (_, out) = run_with(&sampled, &settings(true, true));
        assert_eq!(template(&out), json!(["jobtrace.dev/export"]));
        assert_eq!(
            out["metadata"]["finalizers"],
            json!(["jobtrace.dev/export"])
        );
        let (_, out) = run_with(&sampled, &settings(false, true));
        assert!(template(&out).is_null(), "off by default");
        let (_, out) = run_with(&sampled, &settings(true, false));
        assert!(
            template(&out).is_null(),
            "no pod spans: nothing to hold pods for"
        );
        let not_held = with(
            crate::core::policy::TraceSettings {
                hold_pods: true,
                ..crate::core::policy::TraceSettings::default()
            },
            None,
        );
        let (_, out) = run_with(&sampled, &not_held);
        assert!(template(&out).is_null(), "only the pods of a held Job");

        // The template's other finalizers stay; a template without metadata gets it.
        let mut object = sampled.clone();
        object["spec"]["template"]["metadata"]["finalizers"] = json!(["example.com/keep"]);
        let (_, out) = run_with(&object, &settings(true, true));
        assert_eq!(
            template(&out),
            json!(["example.com/keep", "jobtrace.dev/export"])
        );
        let mut bare = sampled.clone();
        bare["spec"]["template"]
            .as_object_mut()
            .unwrap()
            .remove("metadata");
        let (_, out) = run_with(&bare, &settings(true, true));
        assert_eq!(template(&out), json!(["jobtrace.dev/export"]));

        // Unsampled, untraced or not held: one from a saved manifest goes.
        let mut saved = job(&json!({ "traceparent": TP.replace("-01", "-00") }));
        saved["spec"]["template"]["metadata"]["finalizers"] =
            json!(["jobtrace.dev/export", "example.com/keep"]);
        let (_, out) = run_with(&saved, &settings(true, true));
        assert_eq!(template(&out), json!(["example.com/keep"]));
        let mut untraced = job(&json!({}));
        untraced["spec"]["template"]["metadata"]["finalizers"] = json!(["jobtrace.dev/export"]);
        let (_, out) = run_with(&untraced, &settings(true, true));
        assert_eq!(template(&out), json!([]));
        let mut off = sampled.clone();
        off["spec"]["template"]["metadata"]["finalizers"] = json!(["jobtrace.dev/export"]);
        let (_, out) = run_with(&off, &settings(false, true));
        assert_eq!(template(&out), json!([]));
    }

    #[test]
    fn cronjob_runs_get_a_trace_each_by_default() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "6f1c", "controller": true
        }]);
        let (_, out) = run(&object, SPAN_A);
        let annotations = &out["metadata"]["annotations"];
        assert_eq!(annotations["jobtrace.dev/origin"], "cronjob-run");
        assert_eq!(annotations["jobtrace.dev/trace-id"], NEW_TRACE);
        assert_eq!(annotations["jobtrace.dev/link"], TP);
        let off = with(
            crate::core::policy::TraceSettings {
                cron_jobs: crate::core::policy::CronJobMode::Off,
                ..crate::core::policy::TraceSettings::default()
            },
            None,
        );
        let (mutation, _) = run_with(&object, &off);
        assert!(mutation.patch.0.is_empty(), "{:?}", mutation.patch);
        assert_eq!(mutation.outcome, Outcome::NotTraced);
    }

    #[test]
    fn only_the_containers_the_settings_allow_get_the_context() {
        let settings = crate::core::policy::TraceSettings {
            containers: crate::core::policy::KeyFilter::excluding(["side", "fetch"]),
            ..crate::core::policy::TraceSettings::default()
        };
        let (_, out) = run_with(&job(&json!({ "traceparent": TP })), &with(settings, None));
        assert!(
            env_value(&out, CONTAINERS[0], "TRACEPARENT").is_none(),
            "fetch"
        );
        assert!(
            env_value(&out, CONTAINERS[1], "TRACEPARENT").is_some(),
            "main"
        );
        assert!(
            env_value(&out, CONTAINERS[2], "TRACEPARENT").is_none(),
            "side"
        );
        assert!(
            env_value(&out, CONTAINERS[3], "TRACEPARENT").is_some(),
            "third"
        );
    }

    #[test]
    fn without_pod_spans_pods_are_not_labelled_and_point_at_the_job_span() {
        let settings = crate::core::policy::TraceSettings {
            pod_spans: false,
            resource_attributes: false,
            ..crate::core::policy::TraceSettings::default()
        };
        let mut object = job(&json!({ "traceparent": TP }));
        object["spec"]["template"]["metadata"] =
            json!({ "labels": { "jobtrace.dev/traced": "true", "app": "r" } });
        let (_, out) = run_with(&object, &with(settings, None));
        assert_eq!(
            out["spec"]["template"]["metadata"]["labels"],
            json!({ "app": "r" })
        );
        assert_eq!(
            out["metadata"]["labels"]["jobtrace.dev/traced"], "true",
            "the Job is traced"
        );
        assert!(env_value(&out, CONTAINERS[1], "OTEL_RESOURCE_ATTRIBUTES").is_none());
        assert!(env_value(&out, CONTAINERS[1], "JOBTRACE_POD_NAME").is_none());
    }

    #[test]
    fn the_deciding_policy_is_written_on_the_job_even_when_it_traces_nothing() {
        let resolution = Resolution {
            settings: crate::core::policy::TraceSettings::default().into(),
            policy: Some("quiet".into()),
            overridden: vec!["other".into(), "third".into()],
        };
        let (mutation, out) = run_with(&job(&json!({ "team": "data" })), &resolution);
        assert_eq!(mutation.outcome, Outcome::NotTraced);
        assert_eq!(out["metadata"]["labels"]["jobtrace.dev/policy"], "quiet");
        assert_eq!(
            out["metadata"]["annotations"]["jobtrace.dev/policy-overridden"],
            "other,third"
        );
        assert!(
            out["metadata"]["labels"]
                .get("jobtrace.dev/traced")
                .is_none()
        );
        let (again, _) = run_with(&out, &resolution);
        assert!(again.patch.0.is_empty());
        // A saved manifest's label of a policy that no longer decides is removed.
        let (_, cleared) = run_with(&out, &fixtures_defaults());
        assert!(
            cleared["metadata"]["labels"]
                .get("jobtrace.dev/policy")
                .is_none()
        );
        assert!(
            cleared["metadata"]["annotations"]
                .get("jobtrace.dev/policy-overridden")
                .is_none()
        );
    }

    fn fixtures_defaults() -> Resolution {
        defaults()
    }

    #[test]
    fn a_saved_traced_job_that_is_no_longer_traced_loses_what_jobtrace_wrote() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "6f1c", "controller": true
        }]);
        let (_, traced) = run(&object, SPAN_A);
        let off = with(
            crate::core::policy::TraceSettings {
                cron_jobs: crate::core::policy::CronJobMode::Off,
                ..crate::core::policy::TraceSettings::default()
            },
            None,
        );
        let (mutation, out) = run_with(&traced, &off);
        assert_eq!(mutation.outcome, Outcome::NotTraced);
        assert!(
            out["metadata"]["labels"]
                .get("jobtrace.dev/traced")
                .is_none()
        );
        let annotations = out["metadata"]["annotations"].as_object().unwrap();
        assert!(
            annotations.keys().all(|k| !k.starts_with("jobtrace.dev/")),
            "{annotations:?}"
        );
        let template = &out["spec"]["template"]["metadata"];
        assert!(template["labels"].get("jobtrace.dev/traced").is_none());
        assert!(
            template["annotations"]
                .get("jobtrace.dev/trace-id")
                .is_none()
        );
        let (again, _) = run_with(&out, &off);
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    }

    #[test]
    fn job_labels_to_copy_are_written_for_the_controller() {
        let settings = crate::core::policy::TraceSettings {
            job_labels: vec!["team".into(), "app".into()],
            ..crate::core::policy::TraceSettings::default()
        };
        let (_, out) = run_with(&job(&json!({ "traceparent": TP })), &with(settings, None));
        assert_eq!(
            out["metadata"]["annotations"]["jobtrace.dev/job-labels"],
            "team,app"
        );
    }
}
