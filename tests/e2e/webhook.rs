//! The admission webhook through the real apiserver: the `jobtrace webhook` binary, registered by
//! URL for the test's namespace only.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jobtrace::registration::{Endpoint, Registration, webhook_configuration};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use crate::support::{DEADLINE, TestNamespace, finished_condition};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn cluster_dir() -> PathBuf {
    std::env::var_os("JOBTRACE_CLUSTER_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cluster"),
        PathBuf::from,
    )
}

pub fn kubectl() -> Command {
    let bin = std::env::var_os("JOBTRACE_BIN").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/jobtrace/bin"),
        PathBuf::from,
    );
    Command::new(bin.join("kubectl"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `jobtrace webhook` process registered for one namespace; stopped and unregistered on drop.
pub struct Webhook {
    child: Option<Child>,
    pub metrics: SocketAddr,
    name: String,
}

impl Webhook {
    pub async fn start(ns: &TestNamespace) -> Self {
        let pki = cluster_dir().join("pki");
        let (port, metrics_port) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_jobtrace"))
            .args(["webhook", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .arg("--tls-cert-file")
            .arg(pki.join("webhook.crt"))
            .arg("--tls-key-file")
            .arg(pki.join("webhook.key"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start jobtrace webhook");
        let metrics: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while metrics_text(metrics, "/readyz").await.is_none() {
            assert!(Instant::now() < deadline, "the webhook never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let mut registration = Registration::new(
            Endpoint::Url(format!("https://127.0.0.1:{port}")),
            "jobtrace",
        );
        registration.name = format!("jobtrace-{}", ns.name);
        registration.only_namespaces = Some(vec![ns.name.clone()]);
        registration.ca_bundle = Some(std::fs::read(pki.join("ca.crt")).unwrap());
        let configs: Api<MutatingWebhookConfiguration> = Api::all(ns.client.clone());
        configs
            .create(
                &PostParams::default(),
                &webhook_configuration(&registration),
            )
            .await
            .expect("register the webhook");
        let webhook = Self {
            child: Some(child),
            metrics,
            name: registration.name,
        };
        webhook.wait_until_active(ns).await;
        webhook
    }

    /// The apiserver picks configurations up asynchronously: probe with dry-run creates.
    async fn wait_until_active(&self, ns: &TestNamespace) {
        let jobs: Api<Job> = ns.api();
        let probe = job("probe", &json!({ "traceparent": TP }), false);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let created = jobs
                .create(
                    &PostParams {
                        dry_run: true,
                        ..PostParams::default()
                    },
                    &probe,
                )
                .await
                .expect("dry-run create");
            if created
                .metadata
                .labels
                .unwrap_or_default()
                .contains_key("jobtrace.dev/traced")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook configuration never took effect"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The webhook's count of admission requests for `endpoint`, all results together.
    pub async fn requests(&self, endpoint: &str) -> u64 {
        let text = metrics_text(self.metrics, "/metrics")
            .await
            .expect("metrics");
        text.lines()
            .filter(|l| l.starts_with("jobtrace_admission_requests_total{"))
            .filter(|l| l.contains(&format!("endpoint=\"{endpoint}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(client) = kube::Client::try_default().await {
                    let configs: Api<MutatingWebhookConfiguration> = Api::all(client);
                    let _ = configs.delete(&name, &DeleteParams::default()).await;
                }
            });
        })
        .join();
    }
}

/// GET on the webhook's plain-HTTP port; `None` unless it answers 200.
async fn metrics_text(addr: SocketAddr, path: &str) -> Option<String> {
    let response = reqwest::get(format!("http://{addr}{path}")).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// A Job with one init container and two containers; `fail_first` makes attempts fail until the
/// backoff limit is spent (kwok reads the pod annotation).
pub fn job(name: &str, annotations: &serde_json::Value, fail_first: bool) -> Job {
    let mut pod_annotations = json!({ "sim.jobtrace.dev/run-for": "500ms" });
    if fail_first {
        pod_annotations["sim.jobtrace.dev/exit-code"] = json!("1");
    }
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name, "annotations": annotations },
        "spec": {
            "backoffLimit": 1,
            "template": {
                "metadata": { "annotations": pod_annotations },
                "spec": {
                    "restartPolicy": "Never",
                    "initContainers": [{ "name": "setup", "image": "example.invalid/setup" }],
                    "containers": [
                        { "name": "main", "image": "example.invalid/main" },
                        { "name": "helper", "image": "example.invalid/helper", "env": [{ "name": "A", "value": "1" }] }
                    ]
                }
            }
        }
    }))
    .unwrap()
}

/// Creates `job` with kubectl, as a user would; kubectl's stderr (where warnings go).
fn kubectl_create(ns: &TestNamespace, job: &Job) -> String {
    let mut child = kubectl()
        .args(["create", "-n", &ns.name, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(job).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "kubectl create failed: {stderr}");
    stderr
}

fn env_of(containers: &[k8s_openapi::api::core::v1::Container], name: &str) -> Vec<Option<String>> {
    containers
        .iter()
        .map(|c| {
            c.env
                .iter()
                .flatten()
                .find(|v| v.name == name)
                .and_then(|v| v.value.clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_job_gets_context_in_every_container_and_each_pod_its_own_span() {
    let ns = TestNamespace::create("inject").await;
    let _webhook = Webhook::start(&ns).await;
    let annotations = json!({ "traceparent": TP, "tracestate": "rojo=00f067aa0ba902b7", "baggage": "tenant=acme" });
    let warnings = kubectl_create(&ns, &job("traced", &annotations, true));
    assert!(!warnings.contains("Warning"), "{warnings}");

    let jobs: Api<Job> = ns.api();
    let created = jobs.get("traced").await.unwrap();
    let job_annotations = created.metadata.annotations.clone().unwrap();
    let job_span = job_annotations["jobtrace.dev/span-id"].clone();
    assert_eq!(
        job_annotations["jobtrace.dev/trace-id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        job_annotations["jobtrace.dev/parent-span-id"],
        "00f067aa0ba902b7"
    );
    assert_eq!(
        created.metadata.labels.unwrap()["jobtrace.dev/traced"],
        "true"
    );
    let pod_spec = created.spec.unwrap().template.spec.unwrap();
    let expected = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{job_span}-01");
    for containers in [
        pod_spec.init_containers.clone().unwrap(),
        pod_spec.containers.clone(),
    ] {
        assert!(
            env_of(&containers, "TRACEPARENT")
                .iter()
                .all(|v| v.as_deref() == Some(&expected))
        );
        assert!(
            env_of(&containers, "TRACESTATE")
                .iter()
                .all(|v| v.as_deref() == Some("rojo=00f067aa0ba902b7"))
        );
        assert!(
            env_of(&containers, "BAGGAGE")
                .iter()
                .all(|v| v.as_deref() == Some("tenant=acme"))
        );
        for attributes in env_of(&containers, "OTEL_RESOURCE_ATTRIBUTES") {
            let attributes = attributes.unwrap();
            assert!(
                attributes.contains(&format!("k8s.namespace.name={}", ns.name)),
                "{attributes}"
            );
            assert!(attributes.contains("k8s.job.name=traced"), "{attributes}");
        }
    }

    // Both attempts fail (backoffLimit 1): two pods, each with its own span under the Job span.
    let finished = tokio::time::timeout(DEADLINE, async {
        loop {
            let job = jobs.get("traced").await.unwrap();
            if finished_condition(&job).is_some() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("the Job finishes");
    assert_eq!(
        finished_condition(&finished).unwrap().1,
        "BackoffLimitExceeded"
    );
    let pods: Vec<Pod> = ns.pods_of("traced").await;
    assert_eq!(pods.len(), 2);
    let mut spans = Vec::new();
    for pod in &pods {
        let annotations = pod.metadata.annotations.clone().unwrap();
        assert_eq!(annotations["jobtrace.dev/parent-span-id"], job_span);
        let span = annotations["jobtrace.dev/span-id"].clone();
        assert_ne!(span, job_span);
        let spec = pod.spec.clone().unwrap();
        let expected = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{span}-01");
        for containers in [spec.init_containers.unwrap(), spec.containers] {
            assert!(
                env_of(&containers, "TRACEPARENT")
                    .iter()
                    .all(|v| v.as_deref() == Some(&expected))
            );
        }
        spans.push(span);
    }
    assert_ne!(spans[0], spans[1], "each attempt is its own span");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_without_annotations_never_reaches_the_webhook() {
    let ns = TestNamespace::create("plain").await;
    let webhook = Webhook::start(&ns).await;
    let jobs_before = webhook.requests("jobs").await;
    let pods_before = webhook.requests("pods").await;

    let plain = ns
        .run_job(&job("plain", &json!({ "team": "data" }), false))
        .await;
    assert_eq!(finished_condition(&plain).unwrap().0, "Complete");
    assert!(
        !plain
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("jobtrace.dev/traced")
    );
    assert_eq!(
        webhook.requests("jobs").await,
        jobs_before,
        "matchConditions kept the Job away"
    );
    assert_eq!(
        webhook.requests("pods").await,
        pods_before,
        "objectSelector kept the pod away"
    );

    // The same webhook does see an annotated Job: the counter can move.
    let jobs: Api<Job> = ns.api();
    jobs.create(
        &PostParams::default(),
        &job("traced", &json!({ "traceparent": TP }), false),
    )
    .await
    .unwrap();
    assert_eq!(webhook.requests("jobs").await, jobs_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_traceparent_creates_the_job_and_warns_the_client() {
    let ns = TestNamespace::create("broken").await;
    let _webhook = Webhook::start(&ns).await;
    let broken = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let stderr = kubectl_create(
        &ns,
        &job("broken", &json!({ "traceparent": broken }), false),
    );
    assert!(
        stderr.contains("Warning: jobtrace: annotation traceparent ignored"),
        "kubectl shows the warning: {stderr}"
    );
    assert!(stderr.contains("trace-id is not lowercase hex"), "{stderr}");
    let jobs: Api<Job> = ns.api();
    let job = jobs.get("broken").await.expect("the Job was created");
    assert!(
        !job.metadata
            .labels
            .unwrap_or_default()
            .contains_key("jobtrace.dev/traced")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_still_created_with_the_webhook_stopped() {
    let ns = TestNamespace::create("down").await;
    let mut webhook = Webhook::start(&ns).await;
    webhook.stop();
    let jobs: Api<Job> = ns.api();
    let created = jobs
        .create(
            &PostParams::default(),
            &job("unhooked", &json!({ "traceparent": TP }), false),
        )
        .await
        .expect("failurePolicy Ignore: the Job is created");
    assert!(
        !created
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("jobtrace.dev/traced")
    );
    let done = ns
        .run_job(&job("second", &json!({ "traceparent": TP }), false))
        .await;
    assert_eq!(finished_condition(&done).unwrap().0, "Complete");
}
