//! Objects for tests and benchmarks, all built from one typical Job and its pod, in the style of
//! kube-rs's `Document::test()`: `TestJob::new().traced().created().status(&complete)`.
//!
//! They are JSON and Kubernetes objects, never jobtrace's own types, so that jobtrace's unit tests
//! (a second build of the crate, whose types differ from those this kit links) use them as the
//! integration tests do. The few jobtrace values the unit tests need are the crate's own
//! `testing` module's.

use std::marker::PhantomData;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use jobtrace::core::context::SpanId;
use jobtrace::core::names;

/// The creator's `traceparent`: trace [`TRACE_ID`], parent [`CREATOR_SPAN`], sampled.
pub const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// The trace every fixture belongs to.
pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The creator's span, the Job span's parent.
pub const CREATOR_SPAN: &str = "00f067aa0ba902b7";
/// The Job span's id, as the Job webhook chose it.
pub const JOB_SPAN: &str = "1111111111111111";
/// The pod attempt's span id, as the pod webhook chose it.
pub const POD_SPAN: &str = "2222222222222222";
/// The Job's uid, once created.
pub const JOB_UID: &str = "5f0c7b4e-1b1f-4c3e-9d55-7a1e2b3c4d5e";
/// The pod's uid, once created.
pub const POD_UID: &str = "9a8b7c6d-0000-4000-8000-000000000001";
/// Span ids the tests give to new objects.
pub const SPAN_A: SpanId = SpanId([0xa; 8]);
pub const SPAN_B: SpanId = SpanId([0xb; 8]);

/// The webhook's clock in tests, and the Job's creation time.
pub fn now() -> Timestamp {
    "2026-11-23T10:00:00Z".parse().expect("a timestamp")
}

/// An `AdmissionReview` v1 request for `object` of `kind` (`group`/`kind`) in namespace
/// `reports`, as the apiserver sends it.
pub fn review(group: &str, kind: &str, operation: &str, object: &Value) -> Value {
    let resource = format!("{}s", kind.to_lowercase());
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": { "group": group, "version": "v1", "kind": kind },
            "resource": { "group": group, "version": "v1", "resource": resource },
            "requestKind": { "group": group, "version": "v1", "kind": kind },
            "requestResource": { "group": group, "version": "v1", "resource": resource },
            "namespace": "reports",
            "operation": operation,
            "userInfo": { "username": "ci", "groups": ["system:authenticated"] },
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": { "apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" }
        }
    })
}

/// `value` as a typed object.
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

/// The typical Job as a creator writes it, with `annotations`: the shorthand of the mutation
/// tests for `TestJob::new().annotations(annotations).json()`.
pub fn job(annotations: &Value) -> Value {
    TestJob::new().annotations(annotations).json()
}

/// The pod the job controller creates from a Job's template (named by `generateName`, not
/// created yet).
pub fn pod_of(job: &Value) -> Value {
    let template = &job["spec"]["template"];
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("{}-", job["metadata"]["name"].as_str().unwrap_or("job")),
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"]["annotations"]
        },
        "spec": template["spec"]
    })
}

/// Sets `pointer` in `object`, creating the objects on the way.
fn set(object: &mut Value, pointer: &str, value: Value) {
    let mut at = object;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if !at.is_object() {
            *at = json!({});
        }
        at = at
            .as_object_mut()
            .expect("an object")
            .entry(token)
            .or_insert(Value::Null);
    }
    *at = value;
}

/// Adds `entries` (a JSON object) to the map at `pointer`, which is created when absent.
fn extend(object: &mut Value, pointer: &str, entries: &Value) {
    if !object.pointer(pointer).is_some_and(Value::is_object) {
        set(object, pointer, json!({}));
    }
    let map = object
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .expect("a map");
    for (key, value) in entries.as_object().expect("a JSON object of entries") {
        map.insert(key.clone(), value.clone());
    }
}

/// An object for a test, built up step by step from a typical one: [`TestJob`] or [`TestPod`].
#[derive(Debug, Clone)]
pub struct TestObject<K> {
    object: Value,
    kind: PhantomData<K>,
}

/// A Job for a test, built up from the typical one.
pub type TestJob = TestObject<Job>;
/// A pod for a test: the attempt of the traced typical Job.
pub type TestPod = TestObject<Pod>;

impl<K: DeserializeOwned> TestObject<K> {
    fn of(object: Value) -> Self {
        Self {
            object,
            kind: PhantomData,
        }
    }

    /// With `value` at the JSON pointer `pointer` (objects on the way created).
    #[must_use]
    pub fn set(mut self, pointer: &str, value: Value) -> Self {
        set(&mut self.object, pointer, value);
        self
    }

    pub fn json(self) -> Value {
        self.object
    }

    pub fn typed(self) -> K {
        typed(&self.object)
    }
}

impl Default for TestJob {
    fn default() -> Self {
        Self::new()
    }
}

impl TestObject<Job> {
    /// `nightly` as a creator submits it, without a namespace (an admission's is the request's)
    /// and without annotations: one init container
    /// (`fetch`) and three containers, `main` with an env variable, `side` without `env`, `third`
    /// with an empty `env`; two completions, one at a time, one retry.
    pub fn new() -> Self {
        Self::of(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": "nightly" },
            "spec": {
                "backoffLimit": 1,
                "completions": 2,
                "parallelism": 1,
                "completionMode": "NonIndexed",
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
        }))
    }

    /// Named `name`.
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.object["metadata"]["name"] = json!(name);
        self
    }

    /// With these annotations (a JSON object) besides those it has.
    #[must_use]
    pub fn annotations(mut self, annotations: &Value) -> Self {
        extend(&mut self.object, "/metadata/annotations", annotations);
        self
    }

    /// Without the annotation `key`.
    #[must_use]
    pub fn without_annotation(mut self, key: &str) -> Self {
        if let Some(annotations) = self.object["metadata"]["annotations"].as_object_mut() {
            annotations.remove(key);
        }
        self
    }

    /// With these labels (a JSON object) on the Job and its pod template.
    #[must_use]
    pub fn labels(mut self, labels: &Value) -> Self {
        extend(&mut self.object, "/metadata/labels", labels);
        extend(&mut self.object, "/spec/template/metadata/labels", labels);
        self
    }

    /// With these annotations (a JSON object) on its pod template.
    #[must_use]
    pub fn template_annotations(mut self, annotations: &Value) -> Self {
        extend(
            &mut self.object,
            "/spec/template/metadata/annotations",
            annotations,
        );
        self
    }

    /// With these containers (a JSON array) in place of its own; the init container stays.
    #[must_use]
    pub fn containers(mut self, containers: Value) -> Self {
        self.object["spec"]["template"]["spec"]["containers"] = containers;
        self
    }

    /// Without its init container.
    #[must_use]
    pub fn without_init_containers(mut self) -> Self {
        if let Some(spec) = self.object["spec"]["template"]["spec"].as_object_mut() {
            spec.remove("initContainers");
        }
        self
    }

    /// Every container as a production Job has it, which the benchmarks measure: an image from a
    /// registry, arguments, two env variables and resource requests; labelled `app: reports`.
    #[must_use]
    pub fn realistic(self) -> Self {
        let mut job = self.labels(&json!({ "app": "reports" }));
        for list in ["initContainers", "containers"] {
            let containers = job.object["spec"]["template"]["spec"][list].as_array_mut();
            for container in containers.into_iter().flatten() {
                container["image"] = json!("registry.example/app:1.2.3");
                container["args"] = json!(["--mode", "full"]);
                container["env"] = json!([
                    { "name": "MODE", "value": "full" },
                    { "name": "LOG", "value": "info" }
                ]);
                container["resources"] =
                    json!({ "requests": { "cpu": "100m", "memory": "128Mi" } });
            }
        }
        job
    }

    /// As the Job webhook leaves it for the creator's context [`TP`]: the creator's
    /// `traceparent`, the traced label, the trace and span ids on the Job and its pod template,
    /// and `TRACEPARENT` in every container. Its trace flags are the containers' (sampled),
    /// no `jobtrace.dev/trace-flags` being recorded.
    #[must_use]
    pub fn traced(self) -> Self {
        self.traced_as(TRACE_ID, JOB_SPAN)
    }

    /// [`Self::traced`] in trace `trace_id`, with Job span `span_id`.
    #[must_use]
    pub fn traced_as(mut self, trace_id: &str, span_id: &str) -> Self {
        let traced = json!({ names::TRACED_LABEL: "true" });
        extend(&mut self.object, "/metadata/labels", &traced);
        extend(&mut self.object, "/spec/template/metadata/labels", &traced);
        self = self.annotations(&json!({
            "traceparent": format!("00-{trace_id}-{CREATOR_SPAN}-01"),
            names::TRACE_ID: trace_id,
            names::SPAN_ID: span_id,
            names::PARENT_SPAN_ID: CREATOR_SPAN,
        }));
        self = self.template_annotations(&json!({
            names::TRACE_ID: trace_id,
            names::PARENT_SPAN_ID: span_id,
        }));
        let traceparent = format!("00-{trace_id}-{span_id}-01");
        for list in ["initContainers", "containers"] {
            let containers = self.object["spec"]["template"]["spec"][list].as_array_mut();
            for container in containers.into_iter().flatten() {
                let env = &mut container["env"];
                if !env.is_array() {
                    *env = json!([]);
                }
                env.as_array_mut()
                    .expect("an env list")
                    .push(json!({ "name": names::env::TRACEPARENT, "value": traceparent }));
            }
        }
        self
    }

    /// With the creator's trace flags `flags` (two hex digits) in its `traceparent` annotation and
    /// its containers' `TRACEPARENT`.
    #[must_use]
    pub fn context_flags(mut self, flags: &str) -> Self {
        let reflag = |value: &mut Value| {
            if let Some(tp) = value.as_str().filter(|tp| tp.len() == 55) {
                *value = json!(format!("{}{flags}", &tp[..53]));
            }
        };
        reflag(&mut self.object["metadata"]["annotations"]["traceparent"]);
        for list in ["initContainers", "containers"] {
            let containers = self.object["spec"]["template"]["spec"][list].as_array_mut();
            for container in containers.into_iter().flatten() {
                let env = container["env"].as_array_mut();
                for var in env.into_iter().flatten() {
                    if var["name"] == names::env::TRACEPARENT {
                        reflag(&mut var["value"]);
                    }
                }
            }
        }
        self
    }

    /// As the apiserver returns it once created: in namespace `reports`, uid [`JOB_UID`],
    /// created at [`now`].
    #[must_use]
    pub fn created(mut self) -> Self {
        self.object["metadata"]["namespace"] = json!("reports");
        self.object["metadata"]["uid"] = json!(JOB_UID);
        self.object["metadata"]["creationTimestamp"] = json!(now().to_string());
        self
    }

    /// With this `status`.
    #[must_use]
    pub fn status(mut self, status: &Value) -> Self {
        self.object["status"] = status.clone();
        self
    }
}

impl Default for TestPod {
    fn default() -> Self {
        Self::new()
    }
}

impl TestObject<Pod> {
    /// `reports/nightly-abc12`, the pod of `TestJob::new().traced().created()` as the apiserver
    /// returns it once the pod webhook gave it span [`POD_SPAN`] and the scheduler a node: one
    /// container `main` with its `TRACEPARENT`, no status.
    pub fn new() -> Self {
        Self::of(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "nightly-abc12", "namespace": "reports", "uid": POD_UID,
                "creationTimestamp": "2026-11-23T10:00:01Z",
                "labels": { names::TRACED_LABEL: "true", names::JOB_NAME_LABEL: "nightly",
                            names::JOB_UID_LABEL: JOB_UID },
                "annotations": { names::TRACE_ID: TRACE_ID, names::PARENT_SPAN_ID: JOB_SPAN,
                                 names::SPAN_ID: POD_SPAN }
            },
            "spec": { "nodeName": "kwok-node-0", "containers": [{ "name": "main", "image": "app",
                "env": [{ "name": "TRACEPARENT", "value": format!("00-{TRACE_ID}-{POD_SPAN}-01") }] }] }
        }))
    }

    /// In `phase`, started a second after creation, scheduled at creation, with these
    /// `containerStatuses` (a JSON array).
    #[must_use]
    pub fn status(mut self, phase: &str, containers: &Value) -> Self {
        self.object["status"] = json!({
            "phase": phase,
            "startTime": "2026-11-23T10:00:02Z",
            "conditions": [{ "type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-23T10:00:01Z" }],
            "containerStatuses": containers
        });
        self
    }
}

/// The kubelet's `$(VAR)` expansion of an `env[].value` (or a command argument), as Kubernetes
/// implements it: `$$` is `$`, `$(NAME)` is the value `lookup` gives for an earlier variable, left
/// as written when there is none. The unit tests check jobtrace's escaping against it, and the pod
/// runner that plays the kubelet in the end-to-end tests expands with it.
pub fn kubelet_expand(value: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            if let Some(value) = lookup(name) {
                out.push_str(&value);
            } else {
                out.push_str("$(");
                out.push_str(name);
                out.push(')');
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A string map (labels, annotations) from pairs.
pub fn string_map(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A policy as large as the CRD allows (`policy::limits`), as JSON ([`typed`] makes it a
/// `JobTracePolicy`): every list at its limit, every string at its longest but the operators. Its selector asks for the labels [`labels_at_limits`] gives
/// for `seed`, and for 32 keys to hold none of 32 values (keys no Job carries); both `include`
/// lists start with `include` (container names and baggage keys a Job uses), filled up with names
/// no Job has.
pub fn policy_at_limits(namespace: &str, name: &str, seed: &str, include: &[&str]) -> Value {
    use jobtrace::core::policy::limits::{
        BAGGAGE_KEY, CONTAINER_NAME, EXPRESSION_VALUES, JOB_LABELS, LABEL_VALUE, MATCH_EXPRESSIONS,
        NAMES,
    };
    let names = |tag: &str, longest: usize, first: &[&str]| -> Vec<String> {
        let filler = (first.len()..NAMES).map(|i| fill(&format!("{tag}{i}-"), longest));
        first
            .iter()
            .map(|n| (*n).to_owned())
            .chain(filler)
            .collect()
    };
    let expressions: Vec<Value> = (0..MATCH_EXPRESSIONS)
        .map(|i| {
            let values: Vec<String> = (0..EXPRESSION_VALUES)
                .map(|j| fill(&format!("v{j}-"), LABEL_VALUE))
                .collect();
            json!({ "key": label_key(&format!("absent{i}")), "operator": "NotIn", "values": values })
        })
        .collect();
    json!({
        "apiVersion": "jobtrace.dev/v1alpha1", "kind": "JobTracePolicy",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "selector": { "matchLabels": labels_at_limits(seed), "matchExpressions": expressions },
            "rootTraces": { "ratio": 1.0 },
            "relationship": "child",
            "cronJobs": "newTracePerRun",
            "baggage": {
                "include": names("bi", BAGGAGE_KEY, include),
                "exclude": names("be", BAGGAGE_KEY, &[]),
            },
            "containers": {
                "include": names("ci", CONTAINER_NAME, include),
                "exclude": names("ce", CONTAINER_NAME, &[]),
            },
            "podSpans": true,
            "resourceAttributes": true,
            "requestContext": false,
            "holdForExport": false,
            "jobLabels": (0..JOB_LABELS).map(|i| label_key(&format!("span{i}"))).collect::<Vec<_>>(),
        }
    })
}

/// As many labels as a selector's `matchLabels` may hold, keys and values at their longest, the
/// values told apart by `seed`: a Job with them is selected by the [`policy_at_limits`] of `seed`.
pub fn labels_at_limits(seed: &str) -> std::collections::BTreeMap<String, String> {
    use jobtrace::core::policy::limits::{LABEL_VALUE, MATCH_LABELS};
    (0..MATCH_LABELS)
        .map(|i| {
            (
                label_key(&format!("l{i}")),
                fill(&format!("{seed}-{i}-"), LABEL_VALUE),
            )
        })
        .collect()
}

/// A label key of the longest form: a prefix of 253 characters, `/`, a name of 63.
fn label_key(tag: &str) -> String {
    format!(
        "{}/{}",
        fill(&format!("{tag}.example.com."), 253),
        fill(tag, 63)
    )
}

/// `start` filled up with `x` to `length` characters.
fn fill(start: &str, length: usize) -> String {
    assert!(start.len() <= length, "{start} is longer than {length}");
    format!("{start:x<length$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traced_job_carries_the_ids_the_spans_are_built_from() {
        let job = TestJob::new().traced().created().json();
        let annotations = &job["metadata"]["annotations"];
        assert_eq!(annotations["traceparent"], TP);
        assert_eq!(annotations["jobtrace.dev/span-id"], JOB_SPAN);
        assert_eq!(job["metadata"]["labels"]["jobtrace.dev/traced"], "true");
        assert_eq!(
            env_value(&job, "/spec/template/spec/containers/2", "TRACEPARENT"),
            Some(&json!(format!("00-{TRACE_ID}-{JOB_SPAN}-01")))
        );
        let unsampled = TestJob::new().traced().context_flags("00").json();
        assert!(
            unsampled["metadata"]["annotations"]["traceparent"]
                .as_str()
                .unwrap()
                .ends_with("-00")
        );
        assert_eq!(
            env_value(
                &unsampled,
                "/spec/template/spec/initContainers/0",
                "TRACEPARENT"
            ),
            Some(&json!(format!("00-{TRACE_ID}-{JOB_SPAN}-00")))
        );
        let _: Job = TestJob::new().realistic().typed();
        let _: Pod = TestPod::new().status("Running", &json!([])).typed();
    }

    #[test]
    fn set_escapes_keys_and_creates_the_way() {
        let job = TestJob::new()
            .template_annotations(&json!({ "sim.jobtrace.dev/run-for": "2s" }))
            .set("/status/succeeded", json!(1))
            .json();
        assert_eq!(
            job["spec"]["template"]["metadata"]["annotations"]["sim.jobtrace.dev/run-for"],
            "2s"
        );
        assert_eq!(job["status"]["succeeded"], 1);
    }
}
