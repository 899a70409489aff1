//! The processes the end-to-end tests and the cluster benchmarks start: `jobtrace` registered
//! with the apiserver for one namespace, the pod runner, kubectl; and the ports they listen on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jobtrace::k8s::registration::{Registration, WebhookAddress, webhook_configuration};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use crate::cluster::TestNamespace;
use crate::fixtures::TP;
use crate::metrics::Scrape;

/// The local control plane's state: `$JOBTRACE_CLUSTER_DIR`, or `target/cluster`.
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("JOBTRACE_CLUSTER_DIR")
        .map_or_else(|| crate::repo_dir().join("target/cluster"), PathBuf::from)
}

/// A program built by `cargo build --workspace --examples`: the client library's `create-job` and
/// `traced-task` (every member's examples land in the same directory).
pub fn example(name: &str) -> PathBuf {
    crate::profile_dir().join("examples").join(name)
}

/// The pod runner (this kit's binary) for one namespace; stopped on drop.
pub struct Runner(Child);

impl Runner {
    pub fn start(ns: &TestNamespace) -> Self {
        let child = Command::new(crate::profile_dir().join("pod-runner"))
            .arg(&ns.name)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the pod runner (cargo build --workspace --bins)");
        Self(child)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub use crate::helm::bin_dir;

pub fn kubectl() -> Command {
    Command::new(bin_dir().join("kubectl"))
}

/// A port that nothing listens on, for a process a test starts next.
///
/// The port is free only until someone else binds it, so it is taken below the kernel's
/// ephemeral range (32768 and up by default): a port the kernel hands out, to a listener on
/// port 0 or to any outgoing connection of the cluster's processes, is never one of ours. Each
/// call moves on to the next port, so two tests never get the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const LAST: u16 = 32_000;
    static NEXT: AtomicU16 = AtomicU16::new(FIRST);
    for _ in FIRST..LAST {
        let port = NEXT
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(if p + 1 >= LAST { FIRST } else { p + 1 })
            })
            .unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{LAST}");
}

/// Starts `jobtrace ARGS` with the cluster's webhook certificate on the given ports.
fn spawn(args: &[String], env: &[(String, String)], port: u16, metrics_port: u16) -> Child {
    let pki = cluster_dir().join("pki");
    Command::new(crate::jobtrace_binary())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .arg("--tls-cert-file")
        .arg(pki.join("webhook.crt"))
        .arg("--tls-key-file")
        .arg(pki.join("webhook.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start jobtrace")
}

/// A webhook configuration for a jobtrace on this machine's `port`, for the test's namespace only.
pub fn local_registration(ns: &TestNamespace, port: u16) -> Registration {
    let mut registration = Registration::new(
        WebhookAddress::Url(format!("https://127.0.0.1:{port}")),
        "jobtrace",
    );
    registration.name = format!("jobtrace-{}", ns.name);
    registration.only_namespaces = Some(vec![ns.name.clone()]);
    registration
}

pub async fn register(ns: &TestNamespace, registration: &Registration) {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(ns.client.clone());
    configs
        .create(&PostParams::default(), &webhook_configuration(registration))
        .await
        .expect("register the webhook");
}

/// A `jobtrace webhook` process registered for one namespace; stopped and unregistered on drop.
pub struct Webhook {
    child: Option<Child>,
    pub metrics: SocketAddr,
    name: String,
    port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Whether a start waits for the controller's `/syncz` too, not only for `/readyz`: so that
    /// the tests' objects are not deleted before the controller has listed.
    wait_for_sync: bool,
}

impl Webhook {
    /// The jobtrace process's id, while it runs (for the benchmarks, which measure its CPU).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub async fn start(ns: &TestNamespace) -> Self {
        Self::start_with(ns, &["webhook"], &[]).await
    }

    /// `jobtrace webhook` registered for the namespace and for `others` too.
    pub async fn start_for(ns: &TestNamespace, others: &[&TestNamespace]) -> Self {
        let others: Vec<String> = others.iter().map(|other| other.name.clone()).collect();
        Self::start_registered(ns, &["webhook"], &[], |r| {
            r.only_namespaces
                .get_or_insert_with(Vec::new)
                .extend(others);
        })
        .await
    }

    /// `jobtrace run` (webhook and controller) for the namespace, exporting to `otlp`.
    pub async fn start_run(ns: &TestNamespace, otlp: &str) -> Self {
        let args = ["run", "--no-leader-election", "--watch-namespace", &ns.name];
        Self::start_with(ns, &args, &[("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)]).await
    }

    /// `jobtrace run` for the namespace with the context of the create request's headers on
    /// (`--request-context`), registered for every Job of the namespace: a Job without
    /// annotations reaches it, as the policies' `matchConditions` sync makes it do in a cluster.
    pub async fn start_request_context(ns: &TestNamespace, otlp: &str) -> Self {
        let args = [
            "run",
            "--no-leader-election",
            "--watch-namespace",
            &ns.name,
            "--request-context",
        ];
        let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)];
        Self::start_registered(ns, &args, &env, |r| {
            "true".clone_into(&mut r.jobs_condition);
        })
        .await
    }

    /// `jobtrace ARGS`: once ready, and when it runs a controller (`run`, `controller`) once that
    /// has listed the traced objects.
    pub async fn start_with(ns: &TestNamespace, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_registered(ns, args, env, |_| {}).await
    }

    /// `jobtrace ARGS`, once ready, whatever its controller does: what a Service would see.
    pub async fn start_unsynced(ns: &TestNamespace, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_waiting(ns, args, env, |_| {}, false).await
    }

    async fn start_registered(
        ns: &TestNamespace,
        args: &[&str],
        env: &[(&str, &str)],
        adjust: impl FnOnce(&mut Registration),
    ) -> Self {
        let controller = args.first().is_some_and(|command| *command != "webhook");
        Self::start_waiting(ns, args, env, adjust, controller).await
    }

    async fn start_waiting(
        ns: &TestNamespace,
        args: &[&str],
        env: &[(&str, &str)],
        adjust: impl FnOnce(&mut Registration),
        wait_for_sync: bool,
    ) -> Self {
        let pki = cluster_dir().join("pki");
        let port = free_port();
        let metrics_port = free_port();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut registration = local_registration(ns, port);
        registration.ca_bundle = Some(std::fs::read(pki.join("ca.crt")).unwrap());
        adjust(&mut registration);
        // Owned from the start, so that a failure stops the process.
        let mut webhook = Self {
            child: Some(spawn(&args, &env, port, metrics_port)),
            metrics: format!("127.0.0.1:{metrics_port}").parse().unwrap(),
            name: registration.name.clone(),
            port,
            args,
            env,
            wait_for_sync,
        };
        webhook.wait_until_ready().await;
        register(ns, &registration).await;
        webhook.wait_until_active(ns).await;
        webhook
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Starts the same process again on the same ports.
    pub async fn restart(&mut self) {
        self.child = Some(spawn(&self.args, &self.env, self.port, self.metrics.port()));
        self.wait_until_ready().await;
    }

    /// Waits until the process answers `/readyz` (and, if it waits for sync, `/syncz`) on its
    /// metrics port; panics when it exits first or takes too long.
    async fn wait_until_ready(&mut self) {
        let (metrics, wait_for_sync) = (self.metrics, self.wait_for_sync);
        let child = self.child.as_mut().expect("a started process");
        let synced = if wait_for_sync { " and synced" } else { "" };
        let what = format!("jobtrace ready{synced} on {metrics}");
        let every = Duration::from_millis(100);
        crate::poll::until(&what, Duration::from_secs(20), every, async || {
            if let Some(status) = child.try_wait().expect("the jobtrace process's status") {
                panic!("jobtrace exited ({status}) before it was ready on {metrics}");
            }
            let ready = answers(metrics, "/readyz").await
                && (!wait_for_sync || answers(metrics, "/syncz").await);
            ready.then_some(())
        })
        .await;
    }

    /// What the process's `/metrics` serves now.
    pub async fn scrape(&self) -> Scrape {
        Scrape::read(&format!("http://{}/metrics", self.metrics)).await
    }

    /// A counter jobtrace registers at start-up, such as `jobtrace_spans_dropped_total`. It is
    /// there from the start, so its absence fails the test rather than reading as 0.
    pub async fn counter(&self, name: &str) -> u64 {
        self.scrape().await.counter(name)
    }

    /// The apiserver picks configurations up asynchronously: probe with dry-run creates.
    async fn wait_until_active(&self, ns: &TestNamespace) {
        let jobs: Api<Job> = ns.api();
        let probe = job("probe", &json!({ "traceparent": TP }), false);
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        crate::poll::until(
            "the webhook configuration taking effect",
            Duration::from_secs(30),
            Duration::from_millis(200),
            async || {
                let created = jobs.create(&dry_run, &probe).await.expect("dry-run create");
                created
                    .metadata
                    .labels
                    .unwrap_or_default()
                    .contains_key(jobtrace::core::names::TRACED_LABEL)
                    .then_some(())
            },
        )
        .await;
    }

    /// The webhook's count of admission requests for `endpoint`, all results together: 0 before
    /// the first (the counter's series appear with their first request).
    pub async fn requests(&self, endpoint: &str) -> u64 {
        self.scrape().await.counter_family(
            "jobtrace_admission_requests",
            &format!("endpoint=\"{endpoint}\""),
        )
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

/// Whether `path` (`/readyz`, `/syncz`) on the metrics port at `addr` answers 200.
pub async fn answers(addr: SocketAddr, path: &str) -> bool {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .is_ok_and(|r| r.status().is_success())
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
