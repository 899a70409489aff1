//! The Helm chart installed as users install it: `helm install` with the image built for the real
//! node, two replicas in containers there, called by the apiserver through the chart's Service,
//! upgraded while Jobs are created, a leader replaced, and uninstalled; its objects for
//! cert-manager and the prometheus-operator dry-run against their CRDs. The chart's rendering,
//! which needs no cluster, is tested in tests/chart.rs.

use std::path::PathBuf;
use std::time::Duration;

use jobtrace::k8s::certs::Material;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use jobtrace_testkit::cluster::TestNamespace;
use jobtrace_testkit::fixtures::TP;
use jobtrace_testkit::helm::{args, bin_dir, chart_dir, helm, kind, render, webhooks};
use jobtrace_testkit::poll;
use jobtrace_testkit::process::kubectl;

fn run_kubectl(args: &[&str]) -> String {
    let output = kubectl().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `JOBTRACE_E2E_BINARY` (`make e2e` sets it to the static binary the image ships), else the
/// test build.
pub fn jobtrace_binary() -> PathBuf {
    std::env::var_os("JOBTRACE_E2E_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_jobtrace")),
        PathBuf::from,
    )
}

pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get_ok(url: String) -> Option<String> {
    let response = reqwest::get(url).await.ok()?;
    if response.status().is_success() {
        response.text().await.ok()
    } else {
        None
    }
}

/// [`poll::until`] at the chart tests' pace: a look every 250 ms, a minute at most.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let (within, every) = (Duration::from_secs(60), Duration::from_millis(250));
    poll::until(what, within, every, async || probe().await).await
}

/// `TRACEPARENT` of a pod's first container.
/// Waits until a server-side dry run of `job` comes back traced: the webhook configuration took
/// effect.
async fn until_mutated(jobs: &Api<Job>, job: &Job) {
    eventually("the webhook to take effect", || {
        let jobs = jobs.clone();
        let job = job.clone();
        async move {
            let dry = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            let created = jobs.create(&dry, &job).await.ok()?;
            created
                .metadata
                .labels
                .as_ref()?
                .contains_key("jobtrace.dev/traced")
                .then_some(())
        }
    })
    .await;
}

fn traceparent_of(pod: &k8s_openapi::api::core::v1::PodSpec) -> String {
    pod.containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "TRACEPARENT")
        .and_then(|e| e.value.clone())
        .expect("TRACEPARENT injected")
}

fn ca_bundles(config: &MutatingWebhookConfiguration) -> Vec<Vec<u8>> {
    config
        .webhooks
        .iter()
        .flatten()
        .map(|w| {
            w.client_config
                .ca_bundle
                .clone()
                .map(|b| b.0)
                .unwrap_or_default()
        })
        .collect()
}

/// The values that put the chart on the local control plane's real node: the image built there,
/// the node's selector and taint, the apiserver and the collector where pods on the node's
/// bridge reach them (no kube-proxy serves the `kubernetes` Service's address), and only the
/// test's namespace traced (other tests run alongside).
fn real_node_values(traced: &str) -> Vec<String> {
    let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let kubeconfig: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    let server = kubeconfig["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap();
    let port = server.rsplit(':').next().unwrap().to_owned();
    let set = |value: String| ["--set".to_owned(), value];
    [
        set("image.repository=localhost/jobtrace".to_owned()),
        set("nodeSelector.type=real".to_owned()),
        set(
            "tolerations[0].key=type,tolerations[0].value=real,tolerations[0].effect=NoSchedule"
                .to_owned(),
        ),
        [
            "--set-string".to_owned(),
            format!(
                "extraEnv[0].name=KUBERNETES_SERVICE_HOST,extraEnv[0].value={GATEWAY},\
                 extraEnv[1].name=KUBERNETES_SERVICE_PORT,extraEnv[1].value={port}"
            ),
        ],
        set(format!("otlp.endpoint=http://{GATEWAY}:4317")),
        set(format!("webhook.namespaces={{{traced}}}")),
        set(format!("controller.watchNamespace={traced}")),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The host's address on the real node's bridge (`hack/node-up.sh`).
const GATEWAY: &str = "10.88.0.1";

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the release has `count` pods, every one Ready and none terminating; returns them.
async fn ready_replicas(pods: &Api<Pod>, release: &str, count: usize) -> Vec<Pod> {
    let selector = format!("app.kubernetes.io/instance={release},app.kubernetes.io/name=jobtrace");
    let what = format!("{count} Ready replicas of {release}");
    let (within, every) = (Duration::from_secs(120), Duration::from_millis(500));
    poll::until(&what, within, every, async || {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items;
        let serving: Vec<Pod> = list
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
            .cloned()
            .collect();
        if serving.len() == count && list.len() == count {
            return Ok(serving);
        }
        let seen: Vec<_> = list
            .iter()
            .map(|p| {
                (
                    p.metadata.name.clone(),
                    p.status.as_ref().and_then(|s| s.phase.clone()),
                )
            })
            .collect();
        Err(format!("{seen:?}"))
    })
    .await
}

/// The holder of the release's Lease.
async fn leader(install: &TestNamespace, fullname: &str) -> Option<String> {
    let leases: Api<Lease> = install.api();
    leases.get_opt(fullname).await.ok()??.spec?.holder_identity
}

/// A traced Job that kwok runs for `run_for`.
fn traced_sim_job(name: &str, traceparent: &str, run_for: &str) -> Job {
    let mut job = jobtrace_testkit::cluster::sim_job(name, run_for, None);
    job.metadata.annotations = Some([("traceparent".to_owned(), traceparent.to_owned())].into());
    job
}

/// A `helm` command on the test's release that must succeed; its standard output.
fn helm_release(release: &str, namespace: &str, verb: &str, extra: &[String]) -> String {
    let chart = chart_dir();
    let mut args = vec![verb, release];
    if verb != "uninstall" {
        args.push(chart.to_str().unwrap());
    }
    args.extend_from_slice(&["--namespace", namespace]);
    args.extend(extra.iter().map(String::as_str));
    let output = helm(&args);
    assert!(
        output.status.success(),
        "helm {verb}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The Secret an older jobtrace left, as an upgrade finds it: the CA's key next to the serving
/// certificate. Returns what it holds.
async fn old_layout_secret(install: &TestNamespace, fullname: &str, docs: &[Value]) -> Material {
    let cert_names: Vec<String> = args(docs)
        .iter()
        .find_map(|a| a.strip_prefix("--cert-name="))
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let issuance = jobtrace::k8s::certs::Issuance {
        names: cert_names,
        ca_validity_seconds: 3650 * 86_400,
        cert_validity_seconds: 90 * 86_400,
    };
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let old = jobtrace::k8s::certs::authority::decide(None, true, now, &issuance)
        .unwrap()
        .material;
    let mut data = jobtrace::k8s::certs::serving_data(&old);
    data.extend(jobtrace::k8s::certs::authority_data(&old));
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": format!("{fullname}-tls") },
        "type": "kubernetes.io/tls",
        "data": data,
    }))
    .unwrap();
    install
        .api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    old
}

/// The Secrets after the replicas' first pass: the CA's key moved out of the serving Secret,
/// the same CA and certificate, both owned by the webhook configuration, whose `caBundle` is
/// the CA. Returns the CA.
async fn check_the_certificates(
    install: &TestNamespace,
    fullname: &str,
    old: &Material,
) -> Vec<u8> {
    let secrets: Api<Secret> = install.api();
    let configs: Api<MutatingWebhookConfiguration> = Api::all(install.client.clone());
    let secret = eventually("the CA's key moved out of the serving Secret", || {
        let secrets = secrets.clone();
        let name = format!("{fullname}-tls");
        async move {
            let secret = secrets.get(&name).await.ok()?;
            (!secret.data.as_ref()?.contains_key("ca.key")).then_some(secret)
        }
    })
    .await;
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.clone().unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["ca.crt", "tls.crt", "tls.key"]
    );
    let authority = secrets.get(&format!("{fullname}-tls-ca")).await.unwrap();
    let authority_data = authority.data.clone().unwrap();
    assert_eq!(
        authority_data.keys().collect::<Vec<_>>(),
        ["ca.crt", "ca.key"]
    );
    assert_eq!(authority_data["ca.crt"], data["ca.crt"]);
    assert_eq!(
        authority_data["ca.key"].0,
        old.ca_key.as_bytes(),
        "the same CA"
    );
    assert_eq!(data["tls.crt"].0, old.cert.as_bytes(), "nothing reissued");
    for stored in [&secret, &authority] {
        let owner = &stored
            .metadata
            .owner_references
            .clone()
            .unwrap_or_else(|| panic!("no owner: {:?}", stored.metadata))[0];
        assert_eq!(owner.kind, "MutatingWebhookConfiguration");
        assert_eq!(owner.name, fullname);
    }
    let ca = data["ca.crt"].0.clone();
    until_bundle_is(&configs, fullname, &ca, "the caBundle published").await;
    ca
}

/// Waits until both webhooks of the configuration `fullname` trust exactly `ca`.
async fn until_bundle_is(
    configs: &Api<MutatingWebhookConfiguration>,
    fullname: &str,
    ca: &[u8],
    what: &str,
) {
    eventually(what, || {
        let configs = configs.clone();
        let (fullname, ca) = (fullname.to_owned(), ca.to_vec());
        async move {
            let config = configs.get(&fullname).await.ok()?;
            (ca_bundles(&config) == vec![ca.clone(), ca]).then_some(())
        }
    })
    .await;
}

/// Creates traced Jobs one after another until `stop`; returns their names.
async fn keep_creating_jobs(
    jobs: Api<Job>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0.. {
        if *stop.borrow() {
            break;
        }
        let name = format!("during-{i}");
        jobs.create(&PostParams::default(), &traced_sim_job(&name, TP, "1s"))
            .await
            .expect("a Job is never refused");
        names.push(name);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    names
}

/// The release's webhook called by the apiserver through its Service, while `helm upgrade`
/// replaces both replicas one by one: every Job created meanwhile is admitted by jobtrace.
async fn upgrade_while_jobs_are_created(
    install: &TestNamespace,
    traced: &TestNamespace,
    release: &str,
    before: &[Pod],
) {
    let jobs: Api<Job> = traced.api();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let creating = tokio::spawn(keep_creating_jobs(jobs.clone(), stopped));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (release_owned, namespace) = (release.to_owned(), install.name.clone());
    let upgraded = tokio::task::spawn_blocking(move || {
        helm_release(
            &release_owned,
            &namespace,
            "upgrade",
            &[
                "--reuse-values".to_owned(),
                "--set".to_owned(),
                "logLevel=debug".to_owned(),
                "--wait".to_owned(),
                "--timeout=180s".to_owned(),
            ],
        )
    });
    upgraded.await.unwrap();
    let pods: Api<Pod> = install.api();
    let after = ready_replicas(&pods, release, 2).await;
    // A few more Jobs once the new replicas serve.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send(true).unwrap();
    let names = creating.await.unwrap();
    let old: Vec<_> = before.iter().map(|p| p.metadata.name.clone()).collect();
    assert!(
        after.iter().all(|p| !old.contains(&p.metadata.name)),
        "both replicas replaced"
    );
    assert!(names.len() >= 10, "Jobs created throughout: {names:?}");
    let mut untraced = Vec::new();
    for name in &names {
        let job = jobs.get(name).await.unwrap();
        let traced = job
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key("jobtrace.dev/traced"));
        if !traced {
            untraced.push(name.clone());
        }
    }
    assert!(
        untraced.is_empty(),
        "{} of {} Jobs created during the rollout were not admitted by jobtrace: {untraced:?}",
        untraced.len(),
        names.len()
    );
}

/// The replica holding the Lease is deleted while Jobs it has not exported yet finish: the other
/// takes the Lease over and exports every one of them.
async fn the_leader_goes_and_the_standby_exports(
    install: &TestNamespace,
    traced: &TestNamespace,
    fullname: &str,
) {
    let first = eventually("a leader", || leader(install, fullname)).await;
    let trace_id = crate::spans::random_trace_id();
    let jobs: Api<Job> = traced.api();
    let names: Vec<String> = (0..4).map(|i| format!("handover-{i}")).collect();
    for name in &names {
        jobs.create(
            &PostParams::default(),
            &traced_sim_job(name, &format!("00-{trace_id}-00f067aa0ba902b7-01"), "2s"),
        )
        .await
        .unwrap();
    }
    for name in &names {
        traced.finished(name).await;
    }
    let pods: Api<Pod> = install.api();
    pods.delete(&first, &kube::api::DeleteParams::default())
        .await
        .unwrap();
    let next = eventually("another replica leading", || {
        let first = first.clone();
        async move { leader(install, fullname).await.filter(|l| *l != first) }
    })
    .await;
    assert_ne!(next, first);
    let mut expected: std::collections::BTreeSet<String> = names
        .iter()
        .map(|n| format!("job {}/{n}", traced.name))
        .collect();
    for name in &names {
        for pod in traced.pods_of(name).await {
            expected.insert(format!("pod {}", pod.metadata.name.unwrap()));
        }
    }
    let (within, every) = (Duration::from_secs(90), Duration::from_millis(500));
    let count = poll::until(
        "every Job's span, after the handover",
        within,
        every,
        async || {
            let count =
                crate::faults::count_spans(crate::jaeger::JAEGER_QUERY, &trace_id, &expected).await;
            if count.arrived == expected.len() {
                Ok(count)
            } else {
                Err(count.to_string())
            }
        },
    )
    .await;
    assert_eq!(count.duplicated, 0, "each span once: {count}");
}

/// An annotated Job: the apiserver calls the webhook through the chart's Service, for the Job
/// and for its pod.
async fn an_annotated_job_is_admitted_through_the_service(traced: &TestNamespace) {
    let jobs: Api<Job> = traced.api();
    let job = traced_sim_job("hello", TP, "1s");
    until_mutated(&jobs, &job).await;
    let created = jobs.create(&PostParams::default(), &job).await.unwrap();
    let traceparent = traceparent_of(&created.spec.unwrap().template.spec.unwrap());
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    let job_pods = eventually("the Job's pod", || async {
        let pods = traced.pods_of("hello").await;
        (!pods.is_empty()).then_some(pods)
    })
    .await;
    assert_ne!(
        traceparent_of(job_pods[0].spec.as_ref().unwrap()),
        traceparent,
        "each pod attempt has a span of its own: the pod webhook ran"
    );
}

/// Something overwrites the `caBundle` (an apply, an upgrade): a replica puts it back.
async fn an_overwritten_bundle_is_put_back(
    configs: &Api<MutatingWebhookConfiguration>,
    fullname: &str,
    ca: &[u8],
) {
    let stranger =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cluster/pki/ca.crt"))
            .unwrap();
    let ops: Vec<Value> = (0..2)
        .map(|i| json!({ "op": "replace", "path": format!("/webhooks/{i}/clientConfig/caBundle"),
            "value": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &stranger) }))
        .collect();
    configs
        .patch(
            fullname,
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(json!(ops)).unwrap()),
        )
        .await
        .unwrap();
    until_bundle_is(configs, fullname, ca, "the caBundle to be restored").await;
}

/// A Job still running when the chart goes is held for export (policy.holdForExport, on by
/// default): `helm uninstall` runs the hook, a Job in a container on the real node, which
/// releases it; then nothing of the release is left.
async fn the_uninstall_leaves_nothing_behind(
    install: &TestNamespace,
    traced: &TestNamespace,
    release: &str,
) {
    let fullname = format!("{release}-jobtrace");
    let jobs: Api<Job> = traced.api();
    let pods: Api<Pod> = install.api();
    let configs: Api<MutatingWebhookConfiguration> = Api::all(install.client.clone());
    let running = traced_sim_job("still-running", TP, "10m");
    let running = jobs.create(&PostParams::default(), &running).await.unwrap();
    let holds = |job: &Job| {
        job.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "jobtrace.dev/export")
    };
    assert!(holds(&running), "held for export: {:?}", running.metadata);
    helm_release(
        release,
        &install.name,
        "uninstall",
        &["--wait".to_owned(), "--timeout=180s".to_owned()],
    );
    let after = jobs.get("still-running").await.unwrap();
    assert!(!holds(&after), "released: {:?}", after.metadata.finalizers);

    // Nothing is left behind, the Secrets jobtrace made included.
    assert!(configs.get_opt(&fullname).await.unwrap().is_none());
    let secrets: Api<Secret> = install.api();
    for name in [format!("{fullname}-tls"), format!("{fullname}-tls-ca")] {
        until_deleted(&secrets, &name, "the certificate Secrets to be collected").await;
    }
    eventually("the replicas gone", || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        }
    })
    .await;
    // The Lease, owned by the Deployment, goes with it.
    let leases: Api<Lease> = install.api();
    until_deleted(
        &leases,
        &fullname,
        "the Lease collected with the Deployment",
    )
    .await;
}

/// Waits until the object `name` of `api` is gone.
async fn until_deleted<K>(api: &Api<K>, name: &str, what: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(what, || {
        let (api, name) = (api.clone(), name.to_owned());
        async move { api.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
}

// One install as users install it, on the real node, step by step from apply to uninstall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_jobtrace_in_containers_on_the_real_node() {
    let install = TestNamespace::create("chart").await;
    let traced = TestNamespace::create("chart-jobs").await;
    crate::real_node::the_node_is_ready(&install).await;
    let release = install.name.clone();
    let fullname = format!("{release}-jobtrace");
    let dir = std::env::temp_dir().join(format!("jobtrace-chart-{release}"));
    std::fs::create_dir_all(&dir).unwrap();

    let values = real_node_values(&traced.name);
    let value_refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let docs = render(&release, &install.name, &value_refs).unwrap();
    let manifest = dir.join("chart.yaml");
    let text: String = docs
        .iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .fold(String::new(), |all, d| all + "---\n" + &d + "\n");
    std::fs::write(&manifest, text).unwrap();
    // The restricted Pod Security profile is enforced on jobtrace's namespace.
    run_kubectl(&[
        "label",
        "namespace",
        &install.name,
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    run_kubectl(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        manifest.to_str().unwrap(),
    ]);

    // An older jobtrace's Secret, which the replicas find at their first start.
    let old = old_layout_secret(&install, &fullname, &docs).await;
    let mut install_args = values.clone();
    install_args.extend(["--wait".to_owned(), "--timeout=180s".to_owned()]);
    let notes = helm_release(&release, &install.name, "install", &install_args);
    assert!(
        notes.contains("traceparent:"),
        "NOTES tell how to annotate a Job: {notes}"
    );
    let pods: Api<Pod> = install.api();
    let replicas = ready_replicas(&pods, &release, 2).await;
    for pod in &replicas {
        assert_eq!(
            pod.spec.as_ref().unwrap().node_name.as_deref(),
            Some(crate::real_node::NODE),
            "in a container on the real node"
        );
    }
    let ca = check_the_certificates(&install, &fullname, &old).await;
    let holder = eventually("a leader", || leader(&install, &fullname)).await;
    assert!(
        replicas
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(holder.as_str())),
        "one of the two replicas holds the Lease: {holder}"
    );

    an_annotated_job_is_admitted_through_the_service(&traced).await;

    let configs: Api<MutatingWebhookConfiguration> = Api::all(install.client.clone());
    an_overwritten_bundle_is_put_back(&configs, &fullname, &ca).await;

    // An upgrade renders the configuration with the current bundle, read from the Secret
    // (helm's `lookup`, which only a render against the cluster can do).
    let mut dry = value_refs.clone();
    dry.push("--dry-run=server");
    let upgrade = render(&release, &install.name, &dry).unwrap();
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ca);
    for webhook in webhooks(&upgrade) {
        assert_eq!(webhook["clientConfig"]["caBundle"], encoded.as_str());
    }
    // A real one replaces both replicas while Jobs are created: none goes unadmitted.
    upgrade_while_jobs_are_created(&install, &traced, &release, &replicas).await;
    let config = configs.get(&fullname).await.unwrap();
    assert_eq!(
        ca_bundles(&config),
        vec![ca.clone(), ca.clone()],
        "the bundle stays"
    );

    // The serving certificate's expiry, from a replica's metrics port (the pod's own address).
    let replicas = ready_replicas(&pods, &release, 2).await;
    let ip = replicas[0].status.as_ref().unwrap().pod_ip.clone().unwrap();
    let text = get_ok(format!("http://{ip}:8080/metrics"))
        .await
        .expect("metrics");
    let expiry: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("jobtrace_certificate_expiry_timestamp_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    assert!(expiry > now + 80 * 86_400, "a 90-day certificate: {expiry}");

    the_leader_goes_and_the_standby_exports(&install, &traced, &fullname).await;

    the_uninstall_leaves_nothing_behind(&install, &traced, &release).await;
    std::fs::remove_dir_all(dir).ok();
}

/// The expiry a replica reports for the certificate it serves, from its metrics port.
async fn served_expiry(pod: &Pod) -> Option<i64> {
    let ip = pod.status.as_ref()?.pod_ip.clone()?;
    let text = get_ok(format!("http://{ip}:8080/metrics")).await?;
    text.lines()
        .find_map(|l| l.strip_prefix("jobtrace_certificate_expiry_timestamp_seconds "))?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicas_rotate_their_certificate_in_the_cluster_and_keep_admitting() {
    let install = TestNamespace::create("chart-rotate").await;
    let traced = TestNamespace::create("chart-rotate-jobs").await;
    crate::real_node::the_node_is_ready(&install).await;
    let release = install.name.clone();
    let fullname = format!("{release}-jobtrace");
    // A 30-second certificate: renewed with a third left, every 20 s or so.
    let mut values = real_node_values(&traced.name);
    values.extend(
        [
            "--set",
            "certificates.validity=30s",
            "--wait",
            "--timeout=180s",
        ]
        .map(str::to_owned),
    );
    helm_release(&release, &install.name, "install", &values);
    let pods: Api<Pod> = install.api();
    ready_replicas(&pods, &release, 2).await;
    let secrets: Api<Secret> = install.api();
    let serving = |secret: Secret| {
        secret
            .data
            .unwrap_or_default()
            .get("tls.crt")
            .map(|c| c.0.clone())
    };
    let first = eventually("the serving certificate", || {
        let secrets = secrets.clone();
        let name = format!("{fullname}-tls");
        async move { serving(secrets.get(&name).await.ok()?) }
    })
    .await;

    // Renewed in the Secret, then served by both replicas (read from the Secret, not a file).
    let renewed = eventually("a renewed certificate in the Secret", || {
        let secrets = secrets.clone();
        let (name, first) = (format!("{fullname}-tls"), first.clone());
        async move { serving(secrets.get(&name).await.ok()?).filter(|c| *c != first) }
    })
    .await;
    let expiry = jobtrace::k8s::certs::expiry(&renewed).expect("a certificate");
    eventually("both replicas serving the renewed certificate", || {
        let pods = pods.clone();
        let release = release.clone();
        async move {
            let replicas = ready_replicas(&pods, &release, 2).await;
            for pod in &replicas {
                if served_expiry(pod).await? < expiry {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    // And the apiserver, which trusts the same CA, still reaches the webhook.
    let jobs: Api<Job> = traced.api();
    until_mutated(&jobs, &traced_sim_job("after-rotation", TP, "1s")).await;
    helm_release(
        &release,
        &install.name,
        "uninstall",
        &["--wait".to_owned(), "--timeout=180s".to_owned()],
    );
}

/// Applies the rendered documents with a server-side dry-run; the error text when refused.
fn dry_run(docs: &[&Value], dir: &std::path::Path) -> Result<(), String> {
    let path = dir.join("dry-run.json");
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": docs });
    std::fs::write(&path, list.to_string()).unwrap();
    let output = kubectl()
        .args(["apply", "--server-side", "--dry-run=server", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn objects_for_cert_manager_and_prometheus_operator_pass_their_schemas() {
    // Their CRDs, from their modules (hack/build-bins.sh crds).
    for project in ["cert-manager", "prometheus-operator"] {
        let crds = bin_dir().parent().unwrap().join("crds").join(project);
        run_kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
    }
    run_kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/certificates.cert-manager.io",
        "crd/issuers.cert-manager.io",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    ]);
    let ns = TestNamespace::create("cert-manager").await;
    let dir = std::env::temp_dir().join(format!("jobtrace-{}", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    for flags in [
        &["--set", "certificates.certManager.enabled=true"][..],
        &[
            "--set",
            "certificates.certManager.enabled=true,certificates.certManager.issuerRef.name=corporate,certificates.certManager.issuerRef.kind=ClusterIssuer",
        ][..],
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true",
        ][..],
    ] {
        let docs = render("jt", &ns.name, flags).unwrap();
        let ours: Vec<&Value> = docs
            .iter()
            .filter(|d| {
                d["apiVersion"] == "cert-manager.io/v1"
                    || d["apiVersion"] == "monitoring.coreos.com/v1"
            })
            .collect();
        assert!(!ours.is_empty());
        dry_run(&ours, &dir).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
    }
    // The dry-run does check: a Certificate cert-manager's schema refuses is refused.
    let docs = render(
        "jt",
        &ns.name,
        &["--set", "certificates.certManager.enabled=true"],
    )
    .unwrap();
    let mut wrong = (*kind(&docs, "Certificate")
        .iter()
        .find(|c| c["metadata"]["name"] == "jt-jobtrace-tls")
        .unwrap())
    .clone();
    wrong["spec"]["privateKey"]["algorithm"] = json!("DSA");
    let error = dry_run(&[&wrong], &dir).expect_err("an unknown key algorithm");
    assert!(error.contains("privateKey.algorithm"), "{error}");
    std::fs::remove_dir_all(dir).ok();
}
