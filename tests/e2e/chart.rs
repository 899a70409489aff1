//! The Helm chart installed on the local control plane, and jobtrace run against it as the
//! chart's `ServiceAccount`, with the chart's own arguments; its objects for cert-manager and the
//! prometheus-operator dry-run against their CRDs. The chart's rendering, which needs no cluster,
//! is tested in tests/chart.rs.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::helm::{args, bin_dir, chart_dir, container, helm, kind, render, webhooks};
use crate::support::TestNamespace;
use crate::webhook_process::{TP, free_port, kubectl};

fn run_kubectl(args: &[&str]) -> String {
    let output = kubectl().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A kubeconfig for the same cluster that authenticates as a `ServiceAccount`, so jobtrace runs
/// with the chart's RBAC and nothing more.
fn service_account_kubeconfig(namespace: &str, account: &str, dir: &std::path::Path) -> PathBuf {
    let token = run_kubectl(&["create", "token", account, "-n", namespace, "--duration=1h"]);
    let admin = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let admin: Value = serde_saphyr::from_str(&std::fs::read_to_string(admin).unwrap()).unwrap();
    let cluster = &admin["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "local", "cluster": cluster }],
        "users": [{ "name": account, "user": { "token": token.trim() } }],
        "contexts": [{ "name": "sa", "context": { "cluster": "local", "user": account } }],
        "current-context": "sa",
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    path
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

async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Points the webhook configuration's two webhooks at a local jobtrace on `port`, or back at the
/// chart's Service (`None`), keeping the `caBundle`.
async fn redirect(
    configs: &Api<MutatingWebhookConfiguration>,
    name: &str,
    namespace: &str,
    port: Option<u16>,
) {
    let mut ops = Vec::new();
    for (i, path) in ["/mutate/jobs", "/mutate/pods"].iter().enumerate() {
        let service = json!({
            "namespace": namespace, "name": name, "path": path, "port": 443
        });
        let (remove, add, value) = match port {
            Some(port) => (
                "service",
                "url",
                json!(format!("https://127.0.0.1:{port}{path}")),
            ),
            None => ("url", "service", service),
        };
        ops.push(json!({ "op": "remove", "path": format!("/webhooks/{i}/clientConfig/{remove}") }));
        ops.push(json!({ "op": "add", "path": format!("/webhooks/{i}/clientConfig/{add}"), "value": value }));
    }
    configs
        .patch(
            name,
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(json!(ops)).unwrap()),
        )
        .await
        .unwrap();
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

// One install, step by step, from apply to uninstall.
#[allow(clippy::too_many_lines)]
#[tokio::test]
async fn installed_chart_runs_jobtrace_with_its_certificates_and_rbac() {
    let install = TestNamespace::create("chart").await;
    let traced = TestNamespace::create("chart-jobs").await;
    let release = install.name.clone();
    let fullname = format!("{release}-jobtrace");
    let dir = std::env::temp_dir().join(format!("jobtrace-chart-{release}"));
    std::fs::create_dir_all(&dir).unwrap();

    // Rendered for this cluster: only the test's namespace is traced (other tests run
    // alongside), spans go to the local Jaeger.
    let traced_only = format!("webhook.namespaces={{{}}}", traced.name);
    let watch = format!("controller.watchNamespace={}", traced.name);
    let values = [
        "--set",
        &traced_only,
        "--set",
        &watch,
        "--set",
        "otlp.endpoint=http://127.0.0.1:4317",
    ];
    let docs = render(&release, &install.name, &values).unwrap();
    let manifest = dir.join("chart.yaml");
    let text: String = docs
        .iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .fold(String::new(), |all, d| all + "---\n" + &d + "\n");
    std::fs::write(&manifest, text).unwrap();
    let path = manifest.to_str().unwrap();
    // The restricted Pod Security profile is enforced on jobtrace's namespace.
    run_kubectl(&[
        "label",
        "namespace",
        &install.name,
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    run_kubectl(&["apply", "--server-side", "--dry-run=server", "-f", path]);
    // Then for real, as users install it.
    let chart = chart_dir();
    let helm_release = |verb: &str, extra: &[&str]| {
        let mut args = vec![verb, release.as_str()];
        if verb != "uninstall" {
            args.push(chart.to_str().unwrap());
        }
        args.extend_from_slice(&["--namespace", &install.name]);
        args.extend_from_slice(extra);
        let output = helm(&args);
        assert!(
            output.status.success(),
            "helm {verb}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let notes = helm_release("install", &values);
    assert!(
        notes.contains("traceparent:"),
        "NOTES tell how to annotate a Job: {notes}"
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = install.api();
    let selector = format!("app.kubernetes.io/instance={release}");
    eventually("the Deployment's two pods, admitted as restricted", || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            let list = pods
                .list(&kube::api::ListParams::default().labels(&selector))
                .await
                .ok()?;
            (list.items.len() == 2).then_some(())
        }
    })
    .await;

    // The Secret an older jobtrace left, as an upgrade finds it: the CA's key next to the
    // serving certificate. The first replica moves the key out and reissues nothing.
    let cert_names: Vec<String> = args(&docs)
        .iter()
        .find_map(|a| a.strip_prefix("--cert-name="))
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .chain(["127.0.0.1".to_owned()])
        .collect();
    let issuance = jobtrace::k8s::certs::Issuance {
        names: cert_names,
        ca_validity_seconds: 3650 * 86_400,
        cert_validity_seconds: 90 * 86_400,
    };
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let old = jobtrace::k8s::certs::authority::plan(None, true, now, &issuance)
        .unwrap()
        .material;
    let mut old_data = jobtrace::k8s::certs::serving_data(&old);
    old_data.extend(jobtrace::k8s::certs::authority_data(&old));
    let old_secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": format!("{fullname}-tls") },
        "type": "kubernetes.io/tls",
        "data": old_data,
    }))
    .unwrap();
    let secrets: Api<Secret> = install.api();
    secrets
        .create(&PostParams::default(), &old_secret)
        .await
        .unwrap();

    // kwok runs no containers: the webhook configuration is pointed at a local jobtrace,
    // started with the Deployment's own arguments and environment, as its ServiceAccount.
    let (port, metrics_port) = (free_port(), free_port());
    let configs: Api<MutatingWebhookConfiguration> = Api::all(install.client.clone());
    redirect(&configs, &fullname, &install.name, Some(port)).await;
    let kubeconfig = service_account_kubeconfig(&install.name, &fullname, &dir);
    let mut command = Command::new(jobtrace_binary());
    for arg in args(&docs) {
        if arg.starts_with("--listen=") || arg.starts_with("--metrics-listen=") {
            continue;
        }
        if let Some(names) = arg.strip_prefix("--cert-name=") {
            command.arg(format!("--cert-name={names},127.0.0.1"));
        } else {
            command.arg(arg);
        }
    }
    command
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--metrics-listen=127.0.0.1:{metrics_port}"));
    for entry in container(&docs)["env"].as_array().unwrap() {
        if let Some(value) = entry["value"].as_str() {
            command.env(entry["name"].as_str().unwrap(), value);
        }
    }
    let process = Process(
        command
            .env("POD_NAMESPACE", &install.name)
            .env("POD_NAME", "local-0")
            .env("KUBECONFIG", &kubeconfig)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let metrics = format!("http://127.0.0.1:{metrics_port}");
    eventually("readiness", || get_ok(format!("{metrics}/readyz"))).await;

    // The CA's key apart from the serving certificate, the same CA and certificate, both
    // Secrets owned by the webhook configuration (written as its ServiceAccount, through the
    // chart's policies), and the caBundle it set.
    let secret = secrets.get(&format!("{fullname}-tls")).await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.clone().unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["ca.crt", "tls.crt", "tls.key"],
        "no CA key where every replica reads"
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
    let config = configs.get(&fullname).await.unwrap();
    assert_eq!(ca_bundles(&config), vec![ca.clone(), ca.clone()]);

    // An annotated Job is injected through the installed configuration, its pod too.
    let jobs: Api<Job> = traced.api();
    let mut job = crate::support::sim_job("hello", "1s", None);
    job.metadata.annotations = Some([("traceparent".to_owned(), TP.to_owned())].into());
    until_mutated(&jobs, &job).await;
    let created = jobs.create(&PostParams::default(), &job).await.unwrap();
    let traceparent = traceparent_of(&created.spec.unwrap().template.spec.unwrap());
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    let pods = eventually("the Job's pod", || async {
        let pods = traced.pods_of("hello").await;
        (!pods.is_empty()).then_some(pods)
    })
    .await;
    let pod_traceparent = traceparent_of(pods[0].spec.as_ref().unwrap());
    assert_ne!(
        pod_traceparent, traceparent,
        "each pod attempt has a span of its own"
    );

    // Something overwrites the caBundle (an apply, an upgrade): jobtrace puts it back.
    let stranger =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/cluster/pki/ca.crt"))
            .unwrap();
    let mut ops = Vec::new();
    for i in 0..2 {
        ops.push(json!({ "op": "replace", "path": format!("/webhooks/{i}/clientConfig/caBundle"),
            "value": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &stranger) }));
    }
    configs
        .patch(
            &fullname,
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(json!(ops)).unwrap()),
        )
        .await
        .unwrap();
    eventually("the caBundle to be restored", || {
        let configs = configs.clone();
        let (fullname, ca) = (fullname.clone(), ca.clone());
        async move {
            let config = configs.get(&fullname).await.ok()?;
            (ca_bundles(&config) == vec![ca.clone(), ca]).then_some(())
        }
    })
    .await;

    // An upgrade renders the configuration with the current bundle, read from the Secret
    // (helm's `lookup`, which only a render against the cluster can do)...
    let upgrade = render(
        &release,
        &install.name,
        &["--set", &traced_only, "--set", &watch, "--dry-run=server"],
    )
    .unwrap();
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ca);
    for webhook in webhooks(&upgrade) {
        assert_eq!(webhook["clientConfig"]["caBundle"], encoded.as_str());
    }
    // ... and a real upgrade leaves the caBundle in place (nothing for jobtrace to restore).
    let writes = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("jobtrace_certificate_writes_total{what=\"ca_bundle\"} "))
            .map(str::to_owned)
    };
    let before = writes(&get_ok(format!("{metrics}/metrics")).await.unwrap());
    // (The chart's clientConfig back first: helm merges, and would add the Service next to the
    // test's URL.)
    redirect(&configs, &fullname, &install.name, None).await;
    helm_release("upgrade", &["--reuse-values", "--set", "logLevel=debug"]);
    let config = configs.get(&fullname).await.unwrap();
    assert_eq!(ca_bundles(&config), vec![ca.clone(), ca.clone()]);
    let deployment: Api<k8s_openapi::api::apps::v1::Deployment> = install.api();
    let upgraded = deployment.get(&fullname).await.unwrap();
    assert!(
        serde_json::to_string(&upgraded.spec)
            .unwrap()
            .contains("\"debug\"")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        writes(&get_ok(format!("{metrics}/metrics")).await.unwrap()),
        before
    );

    let text = get_ok(format!("{metrics}/metrics")).await.unwrap();
    let expiry: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("jobtrace_certificate_expiry_timestamp_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    assert!(expiry > now + 80 * 86_400, "a 90-day certificate: {expiry}");
    assert!(
        text.contains("jobtrace_certificate_writes_total{what=\"ca_bundle\"} 2"),
        "{text}"
    );

    // A Job still running when the chart goes is held for export (policy.holdForExport, on by
    // default): the uninstall hook releases it. kwok runs no containers, so the hook's own
    // command runs here, as the chart's ServiceAccount, and helm skips the hook.
    let mut running = crate::support::sim_job("still-running", "10m", None);
    running.metadata.annotations = Some([("traceparent".to_owned(), TP.to_owned())].into());
    redirect(&configs, &fullname, &install.name, Some(port)).await;
    until_mutated(&jobs, &running).await;
    let running = jobs.create(&PostParams::default(), &running).await.unwrap();
    let holds = |job: &Job| {
        job.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "jobtrace.dev/export")
    };
    assert!(holds(&running), "held for export: {:?}", running.metadata);
    drop(process);
    let hook = docs
        .iter()
        .find(|d| d["kind"] == "Job")
        .expect("the chart's uninstall hook");
    assert_eq!(
        hook["metadata"]["annotations"]["helm.sh/hook"],
        "pre-delete"
    );
    let hook_args: Vec<&str> = hook["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let released = Command::new(jobtrace_binary())
        .args(&hook_args)
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert!(
        released.status.success(),
        "the hook's command: {}",
        String::from_utf8_lossy(&released.stderr)
    );
    let after = jobs.get("still-running").await.unwrap();
    assert!(!holds(&after), "released: {:?}", after.metadata.finalizers);

    // Uninstall: nothing is left behind, the Secrets jobtrace made included.
    helm_release("uninstall", &["--wait", "--no-hooks"]);
    assert!(configs.get_opt(&fullname).await.unwrap().is_none());
    for name in [format!("{fullname}-tls"), format!("{fullname}-tls-ca")] {
        eventually("the certificate Secrets to be collected", || {
            let secrets = secrets.clone();
            let name = name.clone();
            async move { secrets.get_opt(&name).await.ok()?.is_none().then_some(()) }
        })
        .await;
    }
    std::fs::remove_dir_all(dir).ok();
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
