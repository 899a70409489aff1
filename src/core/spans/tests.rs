//! Span building from Job and pod objects shaped as the apiserver returns them.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value as Json, json};

use super::*;

use jobtrace_testkit::fixtures::{
    CREATOR_SPAN as CREATOR, JOB_SPAN, TRACE_ID as TRACE, TestJob, TestPod,
};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The typical Job, traced and created, with `status`: the creator's context has `flags`.
fn job(status: &Json, extra_annotations: &Json, flags: &str) -> Job {
    TestJob::new()
        .traced()
        .context_flags(flags)
        .created()
        .annotations(extra_annotations)
        .status(status)
        .typed()
}

fn condition(type_: &str, reason: &str, time: &str) -> Json {
    json!({ "type": type_, "status": "True", "reason": reason, "message": format!("{reason} message"),
            "lastTransitionTime": time, "lastProbeTime": time })
}

/// The typical Job's pod in `phase`; `extra` sets fields such as `status.reason`.
fn pod(phase: &str, containers: &Json, extra: &Json) -> Pod {
    let mut pod = TestPod::new().status(phase, containers);
    for (k, v) in extra.as_object().unwrap() {
        pod = pod.set(&format!("/{}", k.replace('.', "/")), v.clone());
    }
    pod.typed()
}

fn terminated(name: &str, code: i32, reason: &str, finished: &str) -> Json {
    json!({ "name": name, "image": "app", "ready": false, "restartCount": 0,
            "state": { "terminated": { "exitCode": code, "reason": reason,
                "startedAt": "2026-11-23T10:00:02Z", "finishedAt": finished } } })
}

fn string(span: &SpanRecord, key: &str) -> String {
    match span.attribute(key) {
        Some(Value::String(s)) => s.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

fn int(span: &SpanRecord, key: &str) -> i64 {
    match span.attribute(key) {
        Some(Value::Int(i)) => *i,
        other => panic!("{key}: {other:?}"),
    }
}

#[test]
fn completed_job_is_an_ok_span_under_the_creator() {
    let status = json!({
        "startTime": "2026-11-23T10:00:01Z", "completionTime": "2026-11-23T10:00:42Z",
        "succeeded": 2, "conditions": [
            condition("SuccessCriteriaMet", "CompletionsReached", "2026-11-23T10:00:41Z"),
            condition("Complete", "CompletionsReached", "2026-11-23T10:00:42Z")
        ]
    });
    let spans = job_spans(&job(&status, &json!({}), "01"), None).unwrap();
    assert_eq!(spans.len(), 1, "no queued span for a Job created running");
    let span = &spans[0];
    assert_eq!(span.trace_id.to_string(), TRACE);
    assert_eq!(span.span_id.to_string(), JOB_SPAN);
    assert_eq!(span.parent_span_id.unwrap().to_string(), CREATOR);
    assert_eq!(span.name, "job reports/nightly");
    assert_eq!(span.start, ts("2026-11-23T10:00:00Z"));
    assert_eq!(
        span.end,
        ts("2026-11-23T10:00:43Z"),
        "the Complete condition's second, to its end: surely after the true end"
    );
    assert_eq!(span.status, Status::Ok);
    assert_eq!(string(span, "k8s.namespace.name"), "reports");
    assert_eq!(string(span, "k8s.job.name"), "nightly");
    assert_eq!(
        string(span, "k8s.job.uid"),
        "5f0c7b4e-1b1f-4c3e-9d55-7a1e2b3c4d5e"
    );
    assert_eq!(string(span, "jobtrace.job.result"), "succeeded");
    assert_eq!(int(span, "jobtrace.job.completions"), 2);
    assert_eq!(int(span, "jobtrace.job.parallelism"), 1);
    assert_eq!(int(span, "jobtrace.job.backoff_limit"), 1);
    assert_eq!(int(span, "jobtrace.job.succeeded"), 2);
    assert_eq!(int(span, "jobtrace.job.failed"), 0);
    assert!(span.attribute("error.type").is_none());
    assert_eq!(span.events[0].name, "started");
}

#[test]
fn job_failed_after_retries_is_an_error_with_the_reason() {
    let status = json!({
        "startTime": "2026-11-23T10:00:01Z", "failed": 2, "conditions": [
            condition("FailureTarget", "BackoffLimitExceeded", "2026-11-23T10:00:30Z"),
            condition("Failed", "BackoffLimitExceeded", "2026-11-23T10:00:31Z")
        ]
    });
    let span = &job_spans(&job(&status, &json!({}), "01"), None).unwrap()[0];
    assert_eq!(span.end, ts("2026-11-23T10:00:32Z"));
    assert_eq!(
        span.status,
        Status::Error {
            description: "BackoffLimitExceeded message".into()
        }
    );
    assert_eq!(string(span, "error.type"), "BackoffLimitExceeded");
    assert_eq!(string(span, "jobtrace.job.result"), "failed");
    assert_eq!(int(span, "jobtrace.job.failed"), 2);
}

#[test]
fn active_deadline_exceeded_is_the_error_type() {
    let status =
        json!({ "conditions": [condition("Failed", "DeadlineExceeded", "2026-11-23T10:05:00Z")] });
    let span = &job_spans(&job(&status, &json!({}), "01"), None).unwrap()[0];
    assert_eq!(string(span, "error.type"), "DeadlineExceeded");
}

#[test]
fn running_job_has_no_span_yet() {
    let status = json!({ "startTime": "2026-11-23T10:00:01Z", "active": 1 });
    assert_eq!(
        job_spans(&job(&status, &json!({}), "01"), None),
        Err(Skip::NotFinished)
    );
}

#[test]
fn unsampled_job_is_not_exported() {
    let status = json!({ "conditions": [condition("Complete", "CompletionsReached", "2026-11-23T10:00:42Z")] });
    assert_eq!(
        job_spans(&job(&status, &json!({}), "00"), None),
        Err(Skip::Unsampled)
    );
}

#[test]
fn exported_job_is_not_exported_again() {
    let status = json!({ "conditions": [condition("Complete", "CompletionsReached", "2026-11-23T10:00:42Z")] });
    let marked = job(&status, &json!({ "jobtrace.dev/exported": "true" }), "01");
    assert_eq!(job_spans(&marked, None), Err(Skip::Exported));
}

#[test]
fn untraced_job_is_skipped() {
    let mut plain = job(&json!({}), &json!({}), "01");
    plain.metadata.annotations = None;
    assert_eq!(job_spans(&plain, None), Err(Skip::NotTraced));
}

#[test]
fn job_deleted_before_completion_ends_at_its_deletion() {
    let status = json!({ "startTime": "2026-11-23T10:00:01Z", "active": 1 });
    let running = job(&status, &json!({}), "01");
    let span = &job_spans(&running, Some(ts("2026-11-23T10:01:00Z"))).unwrap()[0];
    assert_eq!(span.end, ts("2026-11-23T10:01:00Z"));
    assert_eq!(span.status, Status::Unset);
    assert_eq!(string(span, "jobtrace.job.result"), "deleted");
}

#[test]
fn suspended_then_resumed_job_has_a_queued_span() {
    let status = json!({
        "startTime": "2026-11-23T10:03:00Z", "succeeded": 2, "conditions": [
            { "type": "Suspended", "status": "False", "reason": "JobResumed", "message": "Job resumed",
              "lastTransitionTime": "2026-11-23T10:03:00Z", "lastProbeTime": "2026-11-23T10:03:00Z" },
            condition("Complete", "CompletionsReached", "2026-11-23T10:04:00Z")
        ]
    });
    let spans = job_spans(
        &job(
            &status,
            &json!({ "jobtrace.dev/created-suspended": "true" }),
            "01",
        ),
        None,
    )
    .unwrap();
    assert_eq!(spans.len(), 2);
    let queued = &spans[1];
    assert_eq!(queued.name, "queued");
    assert_eq!(queued.parent_span_id, Some(spans[0].span_id));
    assert_eq!(queued.start, ts("2026-11-23T10:00:00Z"));
    assert_eq!(queued.end, ts("2026-11-23T10:03:01Z"));
    assert_ne!(queued.span_id, spans[0].span_id);
    let again = job_spans(
        &job(
            &status,
            &json!({ "jobtrace.dev/created-suspended": "true" }),
            "01",
        ),
        None,
    )
    .unwrap();
    assert_eq!(
        again[1].span_id, queued.span_id,
        "the queued span id is derived, stably"
    );
    let events: Vec<&str> = spans[0].events.iter().map(|e| e.name.as_str()).collect();
    assert!(events.contains(&"resumed"), "{events:?}");
}

#[test]
fn succeeded_pod_is_an_ok_span_under_the_job_span() {
    let containers = json!([terminated("main", 0, "Completed", "2026-11-23T10:00:20Z")]);
    let span = pod_span(&pod("Succeeded", &containers, &json!({})), None).unwrap();
    assert_eq!(span.trace_id.to_string(), TRACE);
    assert_eq!(span.span_id.to_string(), "2222222222222222");
    assert_eq!(span.parent_span_id.unwrap().to_string(), JOB_SPAN);
    assert_eq!(span.name, "pod nightly-abc12");
    assert_eq!(span.start, ts("2026-11-23T10:00:01Z"));
    assert_eq!(span.end, ts("2026-11-23T10:00:21Z"));
    assert_eq!(span.status, Status::Ok);
    assert_eq!(string(&span, "k8s.pod.name"), "nightly-abc12");
    assert_eq!(
        string(&span, "k8s.pod.uid"),
        "9a8b7c6d-0000-4000-8000-000000000001"
    );
    assert_eq!(string(&span, "k8s.node.name"), "kwok-node-0");
    assert_eq!(string(&span, "k8s.job.name"), "nightly");
    let events: Vec<&str> = span.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        events,
        ["scheduled", "container started", "container terminated"]
    );
}

/// A container event of a pod span: its name, restart count, exit code and reason.
type Run<'a> = (
    &'a str,
    Option<&'a Value>,
    Option<&'a Value>,
    Option<&'a Value>,
);

#[test]
fn a_container_restarted_in_its_pod_shows_its_run_before_and_its_restarts() {
    let containers = json!([{ "name": "main", "image": "app", "ready": false, "restartCount": 2,
        "lastState": { "terminated": { "exitCode": 3, "reason": "Error",
            "startedAt": "2026-11-23T10:00:05Z", "finishedAt": "2026-11-23T10:00:06Z" } },
        "state": { "terminated": { "exitCode": 0, "reason": "Completed",
            "startedAt": "2026-11-23T10:00:20Z", "finishedAt": "2026-11-23T10:00:21Z" } } }]);
    let span = pod_span(&pod("Succeeded", &containers, &json!({})), None).unwrap();
    assert_eq!(span.status, Status::Ok);
    assert_eq!(int(&span, "jobtrace.pod.restarts"), 2);
    let runs: Vec<Run> = span
        .events
        .iter()
        .filter(|e| e.name.starts_with("container"))
        .map(|e| {
            let get = |key: &str| e.attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
            (
                e.name.as_str(),
                get("k8s.container.restart_count"),
                get("jobtrace.container.exit_code"),
                get("k8s.container.status.reason"),
            )
        })
        .collect();
    let (int, text) = (|i: i64| Some(Value::Int(i)), |s: &str| Some(Value::from(s)));
    assert_eq!(
        runs,
        [
            ("container started", int(1).as_ref(), None, None),
            (
                "container terminated",
                int(1).as_ref(),
                int(3).as_ref(),
                text("Error").as_ref()
            ),
            ("container started", int(2).as_ref(), None, None),
            (
                "container terminated",
                int(2).as_ref(),
                int(0).as_ref(),
                text("Completed").as_ref()
            ),
        ],
        "the run before the last (the kubelet keeps no earlier one), then the last, in time order"
    );
    assert_eq!(
        span.end,
        ts("2026-11-23T10:00:22Z"),
        "the pod ends with its last run"
    );
}

#[test]
fn oom_killed_pod_is_an_error_with_exit_code_and_container() {
    let containers = json!([terminated("main", 137, "OOMKilled", "2026-11-23T10:00:09Z")]);
    let span = pod_span(&pod("Failed", &containers, &json!({})), None).unwrap();
    assert!(
        matches!(&span.status, Status::Error { description } if description.contains("137")),
        "{:?}",
        span.status
    );
    assert_eq!(string(&span, "error.type"), "OOMKilled");
    assert_eq!(string(&span, "k8s.container.name"), "main");
    assert_eq!(int(&span, "jobtrace.container.exit_code"), 137);
    assert_eq!(string(&span, "k8s.container.status.reason"), "OOMKilled");
    assert!(
        span.attribute("k8s.container.status.last_terminated_reason")
            .is_none(),
        "that attribute is for a previous instance of the container"
    );
}

#[test]
fn evicted_pod_takes_the_pod_reason() {
    let extra = json!({ "status.reason": "Evicted", "status.message": "The node was low on resource: memory." });
    let span = pod_span(&pod("Failed", &json!([]), &extra), None).unwrap();
    assert_eq!(string(&span, "error.type"), "Evicted");
    assert_eq!(string(&span, "k8s.pod.status.reason"), "Evicted");
    assert_eq!(
        span.status,
        Status::Error {
            description: "The node was low on resource: memory.".into()
        }
    );
    assert_eq!(
        span.end,
        ts("2026-11-23T10:00:02Z"),
        "no container finished: the last condition (to the end of its second)"
    );
}

#[test]
fn deadline_exceeded_pod_takes_the_pod_reason() {
    let containers = json!([terminated("main", 143, "Error", "2026-11-23T10:05:00Z")]);
    let extra = json!({ "status.reason": "DeadlineExceeded" });
    let span = pod_span(&pod("Failed", &containers, &extra), None).unwrap();
    assert_eq!(string(&span, "error.type"), "DeadlineExceeded");
    assert_eq!(int(&span, "jobtrace.container.exit_code"), 143);
}

#[test]
fn indexed_pod_carries_its_completion_index() {
    let containers = json!([terminated("main", 0, "Completed", "2026-11-23T10:00:20Z")]);
    let mut indexed = pod("Succeeded", &containers, &json!({}));
    indexed.metadata.annotations.as_mut().unwrap().insert(
        "batch.kubernetes.io/job-completion-index".into(),
        "3".into(),
    );
    let span = pod_span(&indexed, None).unwrap();
    assert_eq!(int(&span, "jobtrace.job.completion_index"), 3);
}

#[test]
fn running_pod_has_no_span_until_deleted() {
    let running = pod("Running", &json!([]), &json!({}));
    assert_eq!(pod_span(&running, None), Err(Skip::NotFinished));
    let span = pod_span(&running, Some(ts("2026-11-23T10:02:00Z"))).unwrap();
    assert_eq!(span.end, ts("2026-11-23T10:02:00Z"));
    assert_eq!(span.status, Status::Unset);
}

#[test]
fn pod_without_its_own_span_id_gets_a_stable_derived_one() {
    let containers = json!([terminated("main", 0, "Completed", "2026-11-23T10:00:20Z")]);
    let mut unhooked = pod("Succeeded", &containers, &json!({}));
    unhooked
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove("jobtrace.dev/span-id");
    let span = pod_span(&unhooked, None).unwrap();
    // Pinned: a replica of another version, or after a restart, must derive this very id.
    assert_eq!(span.span_id.to_string(), DERIVED_FROM_UID);
    let mut other = unhooked.clone();
    other.metadata.uid = Some("9a8b7c6d-0000-4000-8000-000000000002".into());
    assert_ne!(
        pod_span(&other, None).unwrap().span_id,
        span.span_id,
        "another pod, another id"
    );
}

/// FNV-1a-64 of the Job span's bytes then the fixture pod's uid, big-endian (computed apart from
/// this code).
const DERIVED_FROM_UID: &str = "aa696fd9dd01b4c2";

#[test]
fn derived_ids_are_pinned_and_never_the_input() {
    let from = SpanId::parse(JOB_SPAN).unwrap();
    assert_eq!(derived_span_id(from, b"queued").to_string(), DERIVED_QUEUED);
    assert_ne!(derived_span_id(from, b"queued"), from);
    assert_ne!(
        derived_span_id(from, b"queued"),
        derived_span_id(from, b"other")
    );
}

/// FNV-1a-64 of the Job span's bytes then `queued`, big-endian (computed apart from this code).
const DERIVED_QUEUED: &str = "3a1682604aa74dbc";

#[test]
fn sampling_follows_the_flags_recorded_at_admission_not_the_containers() {
    let status = json!({ "conditions": [condition("Complete", "CompletionsReached", "2026-11-23T10:00:42Z")] });
    // The creator's context was unsampled; a container sets a sampled TRACEPARENT of its own.
    let unsampled = job(&status, &json!({ "jobtrace.dev/trace-flags": "00" }), "01");
    assert_eq!(job_spans(&unsampled, None), Err(Skip::Unsampled));
    let sampled = job(&status, &json!({ "jobtrace.dev/trace-flags": "01" }), "00");
    assert!(job_spans(&sampled, None).is_ok());

    let containers = json!([terminated("main", 0, "Completed", "2026-11-23T10:00:20Z")]);
    let mut pod_unsampled = pod("Succeeded", &containers, &json!({}));
    pod_unsampled
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("jobtrace.dev/trace-flags".into(), "00".into());
    assert_eq!(pod_span(&pod_unsampled, None), Err(Skip::Unsampled));
}

#[test]
fn spans_carry_the_trace_flags_of_the_context() {
    let status = json!({ "conditions": [condition("Complete", "CompletionsReached", "2026-11-23T10:00:42Z")] });
    let suspended =
        json!({ "jobtrace.dev/trace-flags": "03", "jobtrace.dev/created-suspended": "true" });
    let spans = job_spans(&job(&status, &suspended, "01"), None).unwrap();
    assert_eq!(spans.len(), 2);
    assert!(spans.iter().all(|s| s.trace_flags == 0x03), "{spans:?}");
    let legacy = job_spans(&job(&status, &json!({}), "01"), None).unwrap();
    assert_eq!(
        legacy[0].trace_flags, 0x01,
        "without the annotation: the container's"
    );

    let containers = json!([terminated("main", 0, "Completed", "2026-11-23T10:00:20Z")]);
    let mut attempt = pod("Succeeded", &containers, &json!({}));
    attempt
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("jobtrace.dev/trace-flags".into(), "03".into());
    assert_eq!(pod_span(&attempt, None).unwrap().trace_flags, 0x03);
}

#[test]
fn unsampled_pod_is_not_exported() {
    let containers = json!([terminated("main", 0, "Completed", "2026-11-23T10:00:20Z")]);
    let mut unsampled = pod("Succeeded", &containers, &json!({}));
    unsampled.spec.as_mut().unwrap().containers[0]
        .env
        .as_mut()
        .unwrap()[0]
        .value = Some(format!("00-{TRACE}-2222222222222222-00"));
    assert_eq!(pod_span(&unsampled, None), Err(Skip::Unsampled));
}

/// Objects dumped with `kubectl get -o json` from the local control plane after running through
/// the webhook (`tests/data/recorded/`).
mod recorded {
    use super::*;

    /// `kubectl get pods -o json` prints a plain `List`.
    #[derive(serde::Deserialize)]
    struct List<T> {
        items: Vec<T>,
    }

    fn load<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).expect("a recorded object")
    }

    #[test]
    fn failed_job_after_retries_with_oom_killed_pods() {
        let job: Job = load(include_str!(
            "../../../tests/data/recorded/job-oom-failed.json"
        ));
        let pods: List<Pod> = load(include_str!("../../../tests/data/recorded/pods-oom.json"));
        let job_span = &job_spans(&job, None).unwrap()[0];
        assert_eq!(job_span.name, "job recorded/oom");
        assert_eq!(string(job_span, "error.type"), "BackoffLimitExceeded");
        assert_eq!(int(job_span, "jobtrace.job.failed"), 2);
        assert_eq!(job_span.start, ts("2026-11-23T17:26:06Z"));
        assert_eq!(job_span.end, ts("2026-11-23T17:26:21Z"));
        assert_eq!(pods.items.len(), 2);
        let mut ids = Vec::new();
        for pod in &pods.items {
            let span = pod_span(pod, None).unwrap();
            assert_eq!(span.parent_span_id, Some(job_span.span_id));
            assert_eq!(span.trace_id, job_span.trace_id);
            assert_eq!(string(&span, "error.type"), "OOMKilled");
            assert_eq!(int(&span, "jobtrace.container.exit_code"), 137);
            assert_eq!(string(&span, "k8s.job.name"), "oom");
            assert!(span.end > span.start);
            ids.push(span.span_id);
        }
        assert_ne!(ids[0], ids[1], "each attempt has its own span");
    }

    #[test]
    fn indexed_job_pods_carry_their_index() {
        let job: Job = load(include_str!(
            "../../../tests/data/recorded/job-indexed-complete.json"
        ));
        let pods: List<Pod> = load(include_str!(
            "../../../tests/data/recorded/pods-indexed.json"
        ));
        let job_span = &job_spans(&job, None).unwrap()[0];
        assert_eq!(job_span.status, Status::Ok);
        assert_eq!(string(job_span, "jobtrace.job.completion_mode"), "Indexed");
        assert_eq!(int(job_span, "jobtrace.job.succeeded"), 2);
        let mut indexes: Vec<i64> = pods
            .items
            .iter()
            .map(|p| int(&pod_span(p, None).unwrap(), "jobtrace.job.completion_index"))
            .collect();
        indexes.sort_unstable();
        assert_eq!(indexes, [0, 1]);
    }
}

#[test]
fn a_trace_of_its_own_is_a_root_linked_to_the_creator() {
    let status = json!({ "conditions": [condition("Complete", "CompletionsReached", "2026-11-23T10:00:42Z")] });
    let creator = format!("00-{TRACE}-{CREATOR}-01");
    let mut linked = job(
        &status,
        &json!({ "jobtrace.dev/link": creator, "jobtrace.dev/trace-flags": "03" }),
        "01",
    );
    linked
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove("jobtrace.dev/parent-span-id");
    let span = &job_spans(&linked, None).unwrap()[0];
    assert_eq!(span.parent_span_id, None, "a root");
    assert_eq!(
        span.links,
        [Link {
            trace_id: TraceId::parse(TRACE).unwrap(),
            span_id: SpanId::parse(CREATOR).unwrap(),
            trace_flags: 0x01
        }]
    );
}

#[test]
fn job_labels_named_by_the_policy_become_attributes() {
    let status = json!({ "conditions": [condition("Complete", "CompletionsReached", "2026-11-23T10:00:42Z")] });
    let mut labelled = job(
        &status,
        &json!({ "jobtrace.dev/job-labels": "team,app,missing" }),
        "01",
    );
    labelled.metadata.labels.as_mut().unwrap().extend([
        ("team".to_owned(), "data".to_owned()),
        ("app".to_owned(), "reports".to_owned()),
        ("other".to_owned(), "x".to_owned()),
    ]);
    let span = &job_spans(&labelled, None).unwrap()[0];
    assert_eq!(
        span.label_attributes,
        [
            ("k8s.job.label.team".to_owned(), "data".to_owned()),
            ("k8s.job.label.app".to_owned(), "reports".to_owned())
        ]
    );
    let plain = &job_spans(&job(&status, &json!({}), "01"), None).unwrap()[0];
    assert!(plain.label_attributes.is_empty(), "only when asked");
}

#[test]
fn a_job_label_named_again_and_again_is_copied_once() {
    // The annotation as a Job's owner can set it by UPDATE, which the webhook never sees.
    let status = json!({ "conditions": [condition("Complete", "CompletionsReached", "2026-11-23T10:00:42Z")] });
    let keys = vec!["a"; 120_000].join(",");
    let mut labelled = job(&status, &json!({ "jobtrace.dev/job-labels": keys }), "01");
    labelled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("a".to_owned(), "1".to_owned());
    let span = &job_spans(&labelled, None).unwrap()[0];
    assert_eq!(
        span.label_attributes,
        [("k8s.job.label.a".to_owned(), "1".to_owned())]
    );
    assert_eq!(span.dropped_attributes, 0, "a key named twice is one label");
}

#[test]
fn job_labels_past_the_limit_are_left_out_and_counted() {
    let status = json!({ "conditions": [condition("Complete", "CompletionsReached", "2026-11-23T10:00:42Z")] });
    let carried = MAX_JOB_LABELS + 72;
    let keys: Vec<String> = (0..carried).map(|i| format!("l{i}")).collect();
    let mut labelled = job(
        &status,
        &json!({ "jobtrace.dev/job-labels": keys.join(",") }),
        "01",
    );
    labelled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .extend(keys.iter().map(|k| (k.clone(), "v".to_owned())));
    let span = &job_spans(&labelled, None).unwrap()[0];
    assert_eq!(span.label_attributes.len(), MAX_JOB_LABELS);
    assert_eq!(
        span.label_attributes[0].0, "k8s.job.label.l0",
        "in the order named"
    );
    assert_eq!(
        span.label_attributes[MAX_JOB_LABELS - 1].0,
        format!("k8s.job.label.l{}", MAX_JOB_LABELS - 1)
    );
    assert_eq!(span.dropped_attributes, 72);
}

#[test]
fn a_cronjob_run_records_when_it_was_due() {
    let status = json!({ "conditions": [condition("Complete", "CompletionsReached", "2026-11-23T10:00:42Z")] });
    let run = job(
        &status,
        &json!({ "batch.kubernetes.io/cronjob-scheduled-timestamp": "2026-11-23T09:59:57Z" }),
        "01",
    );
    let span = &job_spans(&run, None).unwrap()[0];
    assert_eq!(
        string(span, "jobtrace.cronjob.scheduled_time"),
        "2026-11-23T09:59:57Z"
    );
    assert_eq!(int(span, "jobtrace.cronjob.schedule_delay_ms"), 3000);
}

#[test]
fn spans_start_at_the_precise_admission_and_end_after_the_last_second() {
    let status = json!({ "conditions": [condition("Complete", "CompletionsReached", "2026-11-23T10:00:42Z")] });
    let admitted = job(
        &status,
        &json!({ "jobtrace.dev/admitted-at": "2026-11-23T10:00:00.250731Z" }),
        "01",
    );
    let job_span = &job_spans(&admitted, None).unwrap()[0];
    assert_eq!(job_span.start, ts("2026-11-23T10:00:00.250731Z"));
    let containers = json!([terminated("main", 0, "Completed", "2026-11-23T10:00:20Z")]);
    let mut attempt = pod("Succeeded", &containers, &json!({}));
    attempt.metadata.annotations.as_mut().unwrap().insert(
        "jobtrace.dev/admitted-at".into(),
        "2026-11-23T10:00:01.5Z".into(),
    );
    let attempt_span = pod_span(&attempt, None).unwrap();
    assert_eq!(attempt_span.start, ts("2026-11-23T10:00:01.5Z"));
    assert!(
        job_span.start <= attempt_span.start && attempt_span.end <= job_span.end,
        "the Job span contains its attempt"
    );
    // A process that ran from 10:00:02.9 to 10:00:20.7 is inside the attempt's span.
    assert!(
        attempt_span.start <= ts("2026-11-23T10:00:02.9Z")
            && ts("2026-11-23T10:00:20.7Z") <= attempt_span.end
    );
    // The controller's own clock at a deletion is precise: no second added.
    let running = pod("Running", &json!([]), &json!({}));
    let deleted = pod_span(&running, Some(ts("2026-11-23T10:02:00.5Z"))).unwrap();
    assert_eq!(deleted.end, ts("2026-11-23T10:02:00.5Z"));
}
