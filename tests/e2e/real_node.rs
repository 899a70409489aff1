//! On the local control plane's real node (`hack/node-up.sh`: a kubelet on containerd): the Job's
//! pods run in containers, the kubelet expands what jobtrace injects, reports the exit codes, the
//! OOM kills and the restarts, and the Job's own code exports its spans from inside a container.
//! These tests fail, not skip, when the node is not there.

use std::collections::BTreeMap;
use std::process::Command;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::Api;
use kube::api::{LogParams, PostParams};
use serde_json::{Value, json};

use crate::clients::{OTLP_HTTP, repo};
use crate::jaeger::{OTLP_GRPC, fetch_trace};
use crate::spans::{named, parent, random_trace_id, tag};
use jobtrace_testkit::cluster::{TestNamespace, finished_condition};
use jobtrace_testkit::process::{Runner, Webhook, example};

/// The real node's name and the label and taint that keep other pods off it.
pub const NODE: &str = "real-node";

/// A busybox image built for the node (`hack/node-images.sh`).
const BUSYBOX: &str = "localhost/busybox:jobtrace";

/// The pod spec fields that put a pod on the real node.
fn on_the_real_node(spec: &mut Value) {
    spec["nodeSelector"] = json!({ "type": "real" });
    spec["tolerations"] = json!([{ "key": "type", "value": "real", "effect": "NoSchedule" }]);
}

/// Fails the test, saying why, unless the real node is Ready.
pub async fn the_node_is_ready(ns: &TestNamespace) {
    let nodes: Api<Node> = Api::all(ns.client.clone());
    let node = nodes.get_opt(NODE).await.expect("read the nodes");
    let ready = node
        .as_ref()
        .and_then(|n| n.status.as_ref()?.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    assert!(
        ready,
        "the real node {NODE} is not Ready (hack/node-up.sh; logs in target/cluster/logs/kubelet.log)"
    );
}

/// A traced Job of one busybox container on the real node running `sh -c script`.
fn busybox_job(name: &str, traceparent: &str, script: &str, restart: &str) -> Value {
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name, "annotations": { "traceparent": traceparent } },
        "spec": { "backoffLimit": 0, "template": { "spec": {
            "restartPolicy": restart,
            "containers": [{
                "name": "main", "image": BUSYBOX, "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", script]
            }]
        } } }
    });
    on_the_real_node(&mut job["spec"]["template"]["spec"]);
    job
}

/// A namespace of the test's own with jobtrace running for it, and in it a traced busybox Job on
/// the real node (`busybox_job`, changed by `edit`) run to its end. Returns the namespace,
/// jobtrace, the Job's trace id and the finished Job.
async fn run_on_the_real_node(
    prefix: &str,
    name: &str,
    script: &str,
    restart: &str,
    edit: impl FnOnce(&mut Value),
) -> (TestNamespace, Webhook, String, Job) {
    let ns = TestNamespace::create(prefix).await;
    the_node_is_ready(&ns).await;
    let jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let trace_id = random_trace_id();
    let mut job = busybox_job(
        name,
        &format!("00-{trace_id}-00f067aa0ba902b7-01"),
        script,
        restart,
    );
    edit(&mut job);
    let finished = create(&ns, &job).await;
    (ns, jobtrace, trace_id, finished)
}

async fn create(ns: &TestNamespace, job: &Value) -> Job {
    let job: Job = serde_json::from_value(job.clone()).unwrap();
    let name = job.metadata.name.clone().unwrap();
    let jobs: Api<Job> = ns.api();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    ns.finished(&name).await
}

fn one_pod(pods: &[Pod]) -> &Pod {
    assert_eq!(pods.len(), 1, "one pod: {pods:?}");
    &pods[0]
}

fn main_status(pod: &Pod) -> &k8s_openapi::api::core::v1::ContainerStatus {
    &pod.status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
}

/// How the pod's only container ended.
fn terminated(pod: &Pod) -> &k8s_openapi::api::core::v1::ContainerStateTerminated {
    main_status(pod)
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("the container terminated")
}

/// `make demo`'s Job, created by the Rust client example in the namespace: its first attempt
/// fails (the marker, in the host's `/tmp` which the pods see, is new), the retry succeeds.
/// Returns the Job's name and its trace id.
fn create_the_demo_job(ns: &TestNamespace) -> (String, String) {
    let marker = format!("/tmp/jobtrace-e2e-{}", ns.name);
    let output = Command::new(example("create-job"))
        .args([
            "--backoff-limit",
            "2",
            "--image",
            "localhost/traced-task:dev",
        ])
        .args([&ns.name, "/traced-task", "--fail-first", &marker])
        .env("KUBECONFIG", repo().join("target/cluster/kubeconfig"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP_HTTP)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_SERVICE_NAME", "real-node-creator")
        .output()
        .expect("run create-job (cargo build --workspace --examples)");
    let _ = std::fs::remove_file(&marker);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("created Job {}/", ns.name)))
        .unwrap_or_else(|| panic!("no 'created Job' line: {stdout}"));
    let (job, trace_id) = line.split_once(" in trace ").unwrap();
    (job.to_owned(), trace_id.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_job_runs_in_containers_and_its_code_continues_the_trace_from_inside() {
    let ns = TestNamespace::create("real-demo").await;
    the_node_is_ready(&ns).await;
    let _jobtrace = Webhook::start_run(&ns, OTLP_GRPC).await;
    let (job, trace_id) = create_the_demo_job(&ns);
    let (job, trace_id) = (job.as_str(), trace_id.as_str());
    let finished = ns.finished(job).await;
    assert_eq!(
        finished_condition(&finished).map(|c| c.0).as_deref(),
        Some("Complete")
    );

    let mut pods = ns.pods_of(job).await;
    assert_eq!(pods.len(), 2, "two attempts: {pods:?}");
    pods.sort_by_key(|p| terminated(p).exit_code);
    for pod in &pods {
        assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some(NODE));
        assert!(
            pod.metadata
                .annotations
                .as_ref()
                .unwrap()
                .contains_key("jobtrace.dev/span-id"),
            "the pod webhook admitted the real pod"
        );
    }
    let codes: Vec<i32> = pods.iter().map(|p| terminated(p).exit_code).collect();
    assert_eq!(codes, [0, 1], "the kubelet reports the task's exit codes");

    // creator, Job, two pods, and the task's span in each.
    let trace = fetch_trace(trace_id, 6).await;
    let pod_spans = named(&trace, "pod ");
    let tasks = named(&trace, "generate-report");
    assert_eq!((pod_spans.len(), tasks.len()), (2, 2), "{trace:#}");
    for pod in &pods {
        let name = pod.metadata.name.as_deref().unwrap();
        let span = pod_spans
            .iter()
            .find(|s| s["operationName"] == format!("pod {name}"))
            .unwrap_or_else(|| panic!("a span for pod {name}"));
        assert_eq!(tag(span, "k8s.node.name"), Some(&json!(NODE)));
        let task = tasks
            .iter()
            .find(|t| parent(t) == span["spanID"].as_str())
            .unwrap_or_else(|| panic!("the task in pod {name} continues its pod's span"));
        assert_eq!(
            tag(task, "report.tenant"),
            Some(&json!("acme")),
            "the creator's baggage reached the container"
        );
    }
    let failed = pod_spans
        .iter()
        .find(|s| tag(s, "jobtrace.container.exit_code") == Some(&json!(1)))
        .expect("the failed attempt's span has its exit code");
    assert_eq!(
        tag(failed, "k8s.container.status.reason"),
        Some(&json!("Error"))
    );
}

/// What a container saw of the variables jobtrace injects and of those its pod spec gives, with
/// the values that differ between two Jobs (names, uids, span ids) replaced by what they are.
fn environment(printed: &str, job: &Job, pod: &Pod) -> BTreeMap<String, String> {
    let job_uid = job.metadata.uid.as_deref().unwrap();
    let job_name = job.metadata.name.as_deref().unwrap();
    let pod_uid = pod.metadata.uid.as_deref().unwrap();
    let pod_name = pod.metadata.name.as_deref().unwrap();
    let span_id = &pod.metadata.annotations.as_ref().unwrap()["jobtrace.dev/span-id"];
    printed
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(k, _)| {
            ["TRACE", "BAGGAGE", "OTEL_", "JOBTRACE_", "CFG_", "DB_"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| {
            let v = v
                .replace(pod_name, "<pod>")
                .replace(pod_uid, "<pod uid>")
                .replace(job_uid, "<job uid>")
                .replace(job_name, "<job>")
                .replace(span_id.as_str(), "<pod span>");
            (k.to_owned(), v)
        })
        .collect()
}

/// What the environment test's container takes its variables from: a Secret and two ConfigMaps.
async fn env_sources(ns: &TestNamespace) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "db" }, "stringData": { "password": "hunter2", "USER": "ops" }
    }))
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    for (name, data) in [
        ("settings", json!({ "REGION": "eu-1" })),
        (
            "otel",
            json!({ "PARENT": "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01" }),
        ),
    ] {
        let config: ConfigMap =
            serde_json::from_value(json!({ "metadata": { "name": name }, "data": data })).unwrap();
        ns.api::<ConfigMap>()
            .create(&PostParams::default(), &config)
            .await
            .unwrap();
    }
}

/// The environment test's Job: one container that writes its environment to `out`, on the real
/// node or (`runner`) through the pod runner.
fn env_job(name: &str, out: &str, runner: bool) -> Value {
    let annotations = json!({
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "rojo=$(DB_PASSWORD),congo=t61rcWkgMzE",
        "baggage": "k=$(DB_PASSWORD),m=a$$b,n=$(REGION),tenant=acme"
    });
    let container = json!({
            "name": "main", "image": BUSYBOX, "imagePullPolicy": "Never",
            "command": ["/bin/sh", "-c", format!("env > {out}")],
            "env": [
                { "name": "DB_PASSWORD", "valueFrom": { "secretKeyRef": { "name": "db", "key": "password" } } },
                { "name": "DB_URL", "value": "postgres://$(DB_USER):$(DB_PASSWORD)@db/$(CFG_REGION)" }
            ],
            "envFrom": [
                { "configMapRef": { "name": "settings" }, "prefix": "CFG_" },
                // TRACE + PARENT: a TRACEPARENT of the user's, which the injected one overrides.
                { "configMapRef": { "name": "otel" }, "prefix": "TRACE" },
                { "secretRef": { "name": "db" }, "prefix": "DB_" }
            ]
    });
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name, "annotations": annotations },
        "spec": { "backoffLimit": 0, "template": { "spec": {
            "restartPolicy": "Never", "containers": [container]
        } } }
    });
    if runner {
        job["spec"]["template"]["metadata"] =
            json!({ "labels": { "sim.jobtrace.dev/runner": "true" } });
    } else {
        on_the_real_node(&mut job["spec"]["template"]["spec"]);
    }
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_gives_the_process_the_environment_the_pod_runner_models() {
    let ns = TestNamespace::create("real-env").await;
    the_node_is_ready(&ns).await;
    let _webhook = Webhook::start(&ns).await;
    let _runner = Runner::start(&ns);
    env_sources(&ns).await;
    let out = std::env::temp_dir().join(format!("jobtrace-e2e-{}", ns.name));
    // The same Job twice: in a container on the real node, printing to its log, and through
    // the pod runner, printing to a file.
    let real = create(&ns, &env_job("in-a-container", "/dev/stdout", false)).await;
    let modelled = create(
        &ns,
        &env_job("by-the-runner", &out.display().to_string(), true),
    )
    .await;
    for finished in [&real, &modelled] {
        assert_eq!(
            finished_condition(finished).map(|c| c.0).as_deref(),
            Some("Complete")
        );
    }

    let real_pod = one_pod(&ns.pods_of("in-a-container").await).clone();
    assert_eq!(
        real_pod.spec.as_ref().unwrap().node_name.as_deref(),
        Some(NODE)
    );
    let log = ns
        .api::<Pod>()
        .logs(
            real_pod.metadata.name.as_deref().unwrap(),
            &LogParams::default(),
        )
        .await
        .expect("the container's log, from the kubelet");
    let modelled_pod = one_pod(&ns.pods_of("by-the-runner").await).clone();
    let written = std::fs::read_to_string(&out).expect("the runner's process wrote what it saw");
    let _ = std::fs::remove_file(&out);

    let seen = environment(&log, &real, &real_pod);
    let model = environment(&written, &modelled, &modelled_pod);
    assert_eq!(seen, model, "the kubelet and the runner's model agree");
    // And both are what jobtrace meant: values as written, no secret expanded into the context.
    assert_eq!(
        seen["BAGGAGE"],
        "k=$(DB_PASSWORD),m=a$$b,n=$(REGION),tenant=acme"
    );
    assert_eq!(seen["TRACESTATE"], "rojo=$(DB_PASSWORD),congo=t61rcWkgMzE");
    assert_eq!(
        seen["TRACEPARENT"], "00-4bf92f3577b34da6a3ce929d0e0e4736-<pod span>-01",
        "the injected TRACEPARENT wins over envFrom's"
    );
    assert_eq!(seen["DB_URL"], "postgres://ops:hunter2@db/eu-1");
    assert_eq!(
        seen["DB_password"], "hunter2",
        "envFrom's prefix applies to every key"
    );
    assert!(
        seen["OTEL_RESOURCE_ATTRIBUTES"].contains("k8s.pod.name=<pod>")
            && seen["OTEL_RESOURCE_ATTRIBUTES"].contains("k8s.job.uid=<job uid>"),
        "the downward-API values are expanded: {}",
        seen["OTEL_RESOURCE_ATTRIBUTES"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_oom_killed_and_its_span_says_so() {
    // dd's one 200 MB block is more than the 32 MiB the container may have.
    let (ns, _jobtrace, trace_id, finished) = run_on_the_real_node(
        "real-oom",
        "hungry",
        "exec dd if=/dev/zero of=/dev/null bs=200M count=1",
        "Never",
        |job| {
            job["spec"]["template"]["spec"]["containers"][0]["resources"] =
                json!({ "limits": { "memory": "32Mi" } });
        },
    )
    .await;
    assert_eq!(
        finished_condition(&finished).map(|c| c.0).as_deref(),
        Some("Failed")
    );
    let pod = one_pod(&ns.pods_of("hungry").await).clone();
    let ended = terminated(&pod);
    assert_eq!(
        (ended.exit_code, ended.reason.as_deref()),
        (137, Some("OOMKilled")),
        "the kubelet's report"
    );

    let trace = fetch_trace(&trace_id, 2).await;
    let span = named(&trace, "pod ")[0];
    assert_eq!(tag(span, "error.type"), Some(&json!("OOMKilled")));
    assert_eq!(tag(span, "jobtrace.container.exit_code"), Some(&json!(137)));
    assert_eq!(
        tag(span, "k8s.container.status.reason"),
        Some(&json!("OOMKilled"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_restarted_in_its_pod_is_one_pod_span_with_both_runs() {
    // The first run fails and leaves a mark in the pod's emptyDir, which outlives it; the kubelet
    // restarts the container (OnFailure), and the second run succeeds.
    let (ns, _jobtrace, trace_id, finished) = run_on_the_real_node(
        "real-restart",
        "flaky",
        "if [ -e /state/ran ]; then exit 0; fi; touch /state/ran; exit 3",
        "OnFailure",
        |job| {
            job["spec"]["backoffLimit"] = json!(2);
            let spec = &mut job["spec"]["template"]["spec"];
            spec["volumes"] = json!([{ "name": "state", "emptyDir": {} }]);
            spec["containers"][0]["volumeMounts"] =
                json!([{ "name": "state", "mountPath": "/state" }]);
        },
    )
    .await;
    assert_eq!(
        finished_condition(&finished).map(|c| c.0).as_deref(),
        Some("Complete")
    );
    let pod = one_pod(&ns.pods_of("flaky").await).clone();
    assert_eq!(
        main_status(&pod).restart_count,
        1,
        "the kubelet restarted it once"
    );

    let trace = fetch_trace(&trace_id, 2).await;
    let pods = named(&trace, "pod ");
    assert_eq!(pods.len(), 1, "one span for the pod, whatever its restarts");
    let span = pods[0];
    assert_eq!(tag(span, "jobtrace.pod.restarts"), Some(&json!(1)));
    let runs: Vec<(String, Option<Value>, Option<Value>)> = span["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|log| {
            let field = |key: &str| {
                log["fields"]
                    .as_array()?
                    .iter()
                    .find(|f| f["key"] == key)
                    .map(|f| f["value"].clone())
            };
            let event = field("event")?.as_str()?.to_owned();
            event.starts_with("container").then(|| {
                (
                    event,
                    field("k8s.container.restart_count"),
                    field("jobtrace.container.exit_code"),
                )
            })
        })
        .collect();
    assert_eq!(
        runs,
        [
            ("container started".to_owned(), None, None),
            ("container terminated".to_owned(), None, Some(json!(3))),
            ("container started".to_owned(), Some(json!(1)), None),
            (
                "container terminated".to_owned(),
                Some(json!(1)),
                Some(json!(0))
            ),
        ],
        "both runs, in order, the second marked as the first restart: {span:#}"
    );
}
