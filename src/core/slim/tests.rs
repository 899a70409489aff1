//! The slim objects keep every field jobtrace reads: the spans built from them equal those built
//! from the whole objects, and what the controller and the counts read of them is the same.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::core::PartialObjectMeta;
use serde_json::{Value, json};

use super::*;
use crate::core::spans::{job_spans, pod_span};
use jobtrace_testkit::fixtures::{JOB_UID, TRACE_ID, TestJob, TestPod};

/// When the controller saw a deletion, for the objects deleted without a deletion time.
fn seen_deleted() -> Timestamp {
    "2026-11-23T10:09:00Z".parse().unwrap()
}

/// `object` read as jobtrace reads it from the apiserver: from the text of the response.
fn slim<K>(object: &Value) -> Slim<K>
where
    Slim<K>: serde::de::DeserializeOwned,
{
    serde_json::from_str(&object.to_string()).expect("read slim")
}

fn condition(type_: &str, status: &str, reason: &str, time: &str) -> Value {
    json!({ "type": type_, "status": status, "reason": reason,
            "message": format!("{reason} message"), "lastTransitionTime": time,
            "lastProbeTime": time })
}

fn finished_job(status: &Value) -> TestJob {
    TestJob::new()
        .traced()
        .created()
        .set("/metadata/resourceVersion", json!("42"))
        .set(
            "/metadata/managedFields",
            json!([{ "manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                     "fieldsV1": { "f:spec": { "f:completions": {} } } }]),
        )
        .status(status)
}

/// The Jobs the spans are tested on, as the apiserver returns them.
fn jobs() -> Vec<(&'static str, Value)> {
    let complete = json!({
        "startTime": "2026-11-23T10:00:01Z", "completionTime": "2026-11-23T10:00:42Z",
        "succeeded": 2, "active": 0, "ready": 0, "uncountedTerminatedPods": {},
        "conditions": [
            condition("SuccessCriteriaMet", "True", "CompletionsReached", "2026-11-23T10:00:41Z"),
            condition("Complete", "True", "CompletionsReached", "2026-11-23T10:00:42Z")
        ]
    });
    let failed = json!({
        "startTime": "2026-11-23T10:00:01Z", "failed": 2,
        "conditions": [
            condition("FailureTarget", "True", "BackoffLimitExceeded", "2026-11-23T10:00:30Z"),
            condition("Failed", "True", "BackoffLimitExceeded", "2026-11-23T10:00:31Z")
        ]
    });
    let resumed = json!({
        "startTime": "2026-11-23T10:03:00Z", "succeeded": 2,
        "conditions": [
            condition("Suspended", "False", "JobResumed", "2026-11-23T10:03:00Z"),
            condition("Complete", "True", "CompletionsReached", "2026-11-23T10:04:00Z")
        ]
    });
    let running = json!({ "startTime": "2026-11-23T10:00:01Z", "active": 1 });
    vec![
        ("complete", finished_job(&complete).json()),
        ("failed", finished_job(&failed).json()),
        (
            "suspended, then resumed",
            finished_job(&resumed)
                .set("/spec/suspend", json!(false))
                .annotations(&json!({ names::CREATED_SUSPENDED: "true" }))
                .json(),
        ),
        (
            "held and deleted while running",
            finished_job(&running)
                .set("/metadata/deletionTimestamp", json!("2026-11-23T10:05:00Z"))
                .set(
                    "/metadata/finalizers",
                    json!([
                        "example.com/keep",
                        names::EXPORT_FINALIZER,
                        "example.com/later"
                    ]),
                )
                .json(),
        ),
        ("running", finished_job(&running).json()),
        (
            "a CronJob's run in a trace of its own, with labels for its span",
            finished_job(&complete)
                .without_annotation(names::PARENT_SPAN_ID)
                .labels(&json!({ "team": "data", "tier": "batch", "unnamed": "x" }))
                .annotations(&json!({
                    names::ORIGIN: "cronjob-run",
                    names::LINK: format!("00-{TRACE_ID}-00f067aa0ba902b7-01"),
                    names::JOB_LABELS: "team,tier,absent",
                    "batch.kubernetes.io/cronjob-scheduled-timestamp": "2026-11-23T09:59:58Z",
                    "example.com/other": "not read",
                }))
                .set(
                    "/metadata/ownerReferences",
                    json!([
                        { "apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "u0" },
                        { "apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
                          "uid": "u1", "controller": true, "blockOwnerDeletion": true }
                    ]),
                )
                .json(),
        ),
        (
            "trace flags recorded at admission, precise admission time",
            finished_job(&complete)
                .realistic()
                .annotations(&json!({
                    names::TRACE_FLAGS: "03",
                    names::ADMITTED_AT: "2026-11-23T10:00:00.123456Z",
                }))
                .json(),
        ),
        (
            "unsampled, flags only in the containers",
            TestJob::new()
                .traced()
                .context_flags("00")
                .created()
                .status(&complete)
                .json(),
        ),
        (
            "exported already",
            finished_job(&complete)
                .annotations(&json!({ names::EXPORTED: "true" }))
                .json(),
        ),
    ]
}

fn terminated(name: &str, code: i32, reason: &str, finished: &str) -> Value {
    json!({ "name": name, "image": "registry.example/app:1.2.3", "imageID": "sha256:0",
            "containerID": "containerd://0", "ready": false, "restartCount": 0, "started": false,
            "volumeMounts": [{ "name": "v", "mountPath": "/v" }],
            "lastState": { "terminated": { "exitCode": 1, "finishedAt": "2026-11-23T10:00:01Z" } },
            "state": { "terminated": { "exitCode": code, "reason": reason,
                "message": format!("{reason} message"), "startedAt": "2026-11-23T10:00:02Z",
                "finishedAt": finished } } })
}

fn pod(phase: &str, containers: &Value) -> TestPod {
    TestPod::new()
        .set("/metadata/resourceVersion", json!("41"))
        .set(
            "/metadata/ownerReferences",
            json!([{ "apiVersion": "batch/v1", "kind": "Job", "name": "nightly", "uid": JOB_UID,
                     "controller": true, "blockOwnerDeletion": true }]),
        )
        .set("/spec/volumes", json!([{ "name": "v", "emptyDir": {} }]))
        .status(phase, containers)
        .set("/status/hostIP", json!("10.0.0.1"))
        .set("/status/podIPs", json!([{ "ip": "10.1.0.7" }]))
}

/// The pods the spans are tested on.
fn pods() -> Vec<(&'static str, Value)> {
    let succeeded = json!([terminated("main", 0, "Completed", "2026-11-23T10:00:28Z")]);
    let oom = json!([terminated("main", 137, "OOMKilled", "2026-11-23T10:00:20Z")]);
    let running = json!([{ "name": "main", "image": "app", "imageID": "", "ready": true,
        "restartCount": 0, "state": { "running": { "startedAt": "2026-11-23T10:00:02Z" } } }]);
    let mut restarted = terminated("main", 0, "Completed", "2026-11-23T10:00:28Z");
    restarted["restartCount"] = json!(1);
    vec![
        ("succeeded", pod("Succeeded", &succeeded).json()),
        (
            "restarted once in its pod",
            pod("Succeeded", &json!([restarted])).json(),
        ),
        (
            "OOM killed after its init container",
            pod("Failed", &oom)
                .set(
                    "/status/initContainerStatuses",
                    json!([terminated("fetch", 0, "Completed", "2026-11-23T10:00:05Z")]),
                )
                .json(),
        ),
        (
            "evicted",
            pod("Failed", &running)
                .set("/status/reason", json!("Evicted"))
                .set(
                    "/status/message",
                    json!("The node was low on resource: memory."),
                )
                .json(),
        ),
        (
            "an Indexed Job's",
            pod("Succeeded", &succeeded)
                .set(
                    "/metadata/annotations/batch.kubernetes.io~1job-completion-index",
                    json!("3"),
                )
                .json(),
        ),
        (
            "deleted while running",
            pod("Running", &running)
                .set("/metadata/deletionTimestamp", json!("2026-11-23T10:00:40Z"))
                .json(),
        ),
        ("running", pod("Running", &running).json()),
        {
            let mut object = pod("Succeeded", &succeeded)
                .set(
                    "/metadata/annotations",
                    json!({ names::TRACE_ID: TRACE_ID, names::PARENT_SPAN_ID: "1111111111111111" }),
                )
                .set(
                    "/spec/initContainers",
                    json!([{ "name": "fetch", "image": "busybox", "env": [
                        { "name": "TRACEPARENT",
                          "value": "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-1111111111111111-01" },
                        { "name": "TRACEPARENT", "valueFrom": { "fieldRef": { "fieldPath": "x" } } },
                        { "name": "TRACEPARENT",
                          "value": format!("00-{TRACE_ID}-1111111111111111-03") }
                    ] }]),
                )
                .json();
            // The first variable of its trace is its init container's, sampled; its own
            // container's says unsampled.
            object["spec"]["containers"][0]["env"][0]["value"] =
                json!(format!("00-{TRACE_ID}-1111111111111111-00"));
            (
                "without a span id of its own, flags from its containers",
                object,
            )
        },
    ]
}

#[test]
fn a_jobs_spans_from_its_slim_form_equal_those_from_the_whole_job() {
    let mut built = 0;
    for (case, object) in jobs() {
        let whole: Job = jobtrace_testkit::fixtures::typed(&object);
        let read: Slim<Job> = slim(&object);
        for deleted in [None, Some(seen_deleted())] {
            let spans = job_spans(&whole, deleted);
            built += usize::from(spans.is_ok());
            assert_eq!(
                job_spans(&read.object, deleted),
                spans,
                "{case}, deleted at {deleted:?}"
            );
        }
    }
    assert_eq!(built, 13, "most cases have spans");
}

#[test]
fn a_pods_span_from_its_slim_form_equals_that_from_the_whole_pod() {
    let mut built = 0;
    for (case, object) in pods() {
        let whole: Pod = jobtrace_testkit::fixtures::typed(&object);
        let read: Slim<Pod> = slim(&object);
        for deleted in [None, Some(seen_deleted())] {
            let span = pod_span(&whole, deleted);
            built += usize::from(span.is_ok());
            assert_eq!(
                pod_span(&read.object, deleted),
                span,
                "{case}, deleted at {deleted:?}"
            );
        }
    }
    assert_eq!(built, 15, "most cases have a span");
}

/// What the controller reads of an object besides its spans: identity, version, deletion, hold,
/// and a pod's Job.
fn assert_the_controller_reads_the_same<K: Resource>(case: &str, whole: &K, read: &Slim<K>) {
    let (a, b) = (whole.meta(), read.object.meta());
    assert_eq!(
        (&b.namespace, &b.name, &b.uid, &b.resource_version),
        (&a.namespace, &a.name, &a.uid, &a.resource_version),
        "{case}"
    );
    assert_eq!(b.deletion_timestamp, a.deletion_timestamp, "{case}");
    let hold = a
        .finalizers
        .iter()
        .flatten()
        .position(|f| f == names::EXPORT_FINALIZER);
    assert_eq!(read.hold, hold, "{case}");
    let job_owner = |meta: &ObjectMeta| {
        meta.owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.kind == "Job" && o.api_version == "batch/v1")
            .map(|o| o.uid.clone())
    };
    assert_eq!(job_owner(b), job_owner(a), "{case}");
    let label = |meta: &ObjectMeta, key| meta.labels.as_ref()?.get(key).cloned();
    for key in [
        names::JOB_UID_LABEL,
        names::JOB_NAME_LABEL,
        names::TRACED_LABEL,
    ] {
        assert_eq!(label(b, key), label(a, key), "{case}: {key}");
    }
}

#[test]
fn what_the_controller_reads_of_a_job_or_pod_is_kept() {
    for (case, object) in jobs() {
        let whole: Job = jobtrace_testkit::fixtures::typed(&object);
        assert_the_controller_reads_the_same(case, &whole, &slim::<Job>(&object));
    }
    for (case, object) in pods() {
        let whole: Pod = jobtrace_testkit::fixtures::typed(&object);
        assert_the_controller_reads_the_same(case, &whole, &slim::<Pod>(&object));
    }
}

/// `bytes` bytes of text.
fn filler(bytes: usize) -> String {
    "x".repeat(bytes)
}

/// The typical finished Job made fat as a tenant may: a variable of 1 MiB in its template, many
/// variables, volumes and finalizers, another party's annotation of 200 KiB and owners.
fn fat_job() -> Value {
    let many_env: Vec<Value> = (0..5_000)
        .map(|i| json!({ "name": format!("V{i}"), "value": "v" }))
        .collect();
    let volumes: Vec<Value> = (0..1_000)
        .map(|i| json!({ "name": format!("v{i}"), "emptyDir": {} }))
        .collect();
    let finalizers: Vec<String> = (0..1_000)
        .map(|i| format!("example.com/f{i}"))
        .chain([names::EXPORT_FINALIZER.to_owned()])
        .collect();
    let owners: Vec<Value> = (0..1_000)
        .map(|i| {
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "name": format!("c{i}"),
                         "uid": format!("u{i}") })
        })
        .collect();
    let mut job = finished_job(&json!({ "succeeded": 2, "conditions": [
            condition("Complete", "True", "CompletionsReached", "2026-11-23T10:00:42Z")] }))
    .containers(json!([{ "name": "main", "image": "app", "env": many_env }]))
    .traced()
    .set("/spec/template/spec/volumes", json!(volumes))
    .set("/metadata/finalizers", json!(finalizers))
    .set("/metadata/ownerReferences", json!(owners))
    .annotations(&json!({ "example.com/notes": filler(200 << 10) }))
    .json();
    job["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = json!(filler(1 << 20));
    job
}

#[test]
fn a_fat_job_is_read_without_its_template_or_others_annotations() {
    let object = fat_job();
    assert!(object.to_string().len() > 1 << 20, "a fat Job");
    let read: Slim<Job> = slim(&object);
    let kept = serde_json::to_string(&read.object).unwrap();
    assert!(
        kept.len() < 2_048,
        "{} bytes kept of {}: {kept}",
        kept.len(),
        object.to_string().len()
    );
    assert_eq!(read.hold, Some(1_000));
    let whole: Job = jobtrace_testkit::fixtures::typed(&object);
    assert_eq!(job_spans(&read.object, None), job_spans(&whole, None));
}

#[test]
fn a_fat_pod_is_read_without_its_spec() {
    let mut object = pod(
        "Succeeded",
        &json!([terminated("main", 0, "Completed", "2026-11-23T10:00:28Z")]),
    )
    .set("/metadata/labels/example.com~1big", json!(filler(63)))
    .json();
    object["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "PAYLOAD", "value": filler(1 << 20) }));
    let read: Slim<Pod> = slim(&object);
    let kept = serde_json::to_string(&read.object).unwrap();
    assert!(kept.len() < 2_048, "{} bytes kept: {kept}", kept.len());
    let whole: Pod = jobtrace_testkit::fixtures::typed(&object);
    assert_eq!(pod_span(&read.object, None), pod_span(&whole, None));
}

#[test]
fn traceparents_are_kept_once_each_and_only_so_many() {
    let value = |i: usize| format!("00-{TRACE_ID}-{:016x}-01", i + 1);
    let mut env: Vec<Value> = (0..3)
        .map(|_| json!({ "name": "TRACEPARENT", "value": value(0) }))
        .collect();
    env.extend((0..100).map(|i| json!({ "name": "TRACEPARENT", "value": value(i) })));
    env.push(json!({ "name": "OTHER", "value": value(500) }));
    env.push(json!({ "name": "TRACEPARENT", "value": "not a traceparent" }));
    let object = json!({ "metadata": {}, "spec": { "containers": [{ "name": "c", "env": env }] } });
    let read: Slim<Pod> = slim(&object);
    let spec = read.object.spec.unwrap();
    let kept: Vec<String> = spec.containers[0]
        .env
        .iter()
        .flatten()
        .map(|v| v.value.clone().unwrap())
        .collect();
    let expected: Vec<String> = (0..MAX_TRACEPARENTS).map(value).collect();
    assert_eq!(kept, expected);
}

#[test]
fn a_jobs_metadata_keeps_what_the_counts_and_the_release_read() {
    let object = TestJob::new()
        .traced()
        .created()
        .labels(&json!({ names::POLICY: "team", "app": "reports" }))
        .annotations(&json!({
            names::ADMITTED_AT: "2026-11-23T10:00:00.000001Z",
            names::POLICY_OVERRIDDEN: "other",
            "example.com/notes": filler(1_000),
        }))
        .set(
            "/metadata/finalizers",
            json!(["example.com/keep", names::EXPORT_FINALIZER]),
        )
        .json();
    // What a metadata-only list returns: the metadata, not the spec.
    let partial = json!({ "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                          "metadata": object["metadata"] });
    let read: Slim<PartialObjectMeta<Job>> = slim(&partial);
    let meta = &read.object.metadata;
    assert_eq!(read.hold, Some(1));
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels.get(names::POLICY).map(String::as_str), Some("team"));
    assert_eq!(
        labels.get(names::TRACED_LABEL).map(String::as_str),
        Some("true")
    );
    assert!(!labels.contains_key("app"), "not read");
    let annotations = meta.annotations.as_ref().unwrap();
    assert!(annotations.contains_key(names::ADMITTED_AT));
    assert!(annotations.contains_key(names::POLICY_OVERRIDDEN));
    assert!(!annotations.contains_key("example.com/notes"), "not read");
    assert_eq!(meta.uid.as_deref(), Some(JOB_UID));
    assert!(Slim::<PartialObjectMeta<Job>>::metadata_api());
}

#[test]
fn a_slim_object_is_of_its_objects_kind() {
    assert_eq!(
        (
            Slim::<Job>::api_version(&()),
            Slim::<Job>::kind(&()),
            Slim::<Job>::plural(&())
        ),
        ("batch/v1".into(), "Job".into(), "jobs".into())
    );
    assert_eq!(
        Slim::<Pod>::url_path(&(), Some("ns")),
        "/api/v1/namespaces/ns/pods"
    );
    assert!(!Slim::<Job>::metadata_api() && !Slim::<Pod>::metadata_api());
}
