//! Plays the kubelet for pods labelled `sim.jobtrace.dev/runner`, which kwok leaves alone: runs
//! each container's command as a local process with exactly the pod's environment (`envFrom`,
//! config map and secret keys, downward-API values and `$(VAR)` expansion resolved as the kubelet
//! does) and writes the real exit codes
//! and times back to the pod's status. Images are ignored: `command` names a program on this host.
//!
//! Usage: `cargo run -p jobtrace-testkit --bin pod-runner [NAMESPACE]` with `KUBECONFIG` set; without a namespace
//! it runs such pods in every namespace.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};

const LABEL: &str = "sim.jobtrace.dev/runner";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await?;
    let pods: Api<Pod> = match std::env::args().nth(1) {
        Some(namespace) => Api::namespaced(client.clone(), &namespace),
        None => Api::all(client.clone()),
    };
    let started: Arc<Mutex<HashSet<String>>> = Arc::default();
    eprintln!("pod-runner: running pods labelled {LABEL}");
    let mut events = std::pin::pin!(
        watcher(pods, watcher::Config::default().labels(LABEL))
            .default_backoff()
            .applied_objects()
    );
    while let Some(pod) = events.try_next().await? {
        let scheduled = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some();
        let pending = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Pending");
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if scheduled
            && pending
            && pod.metadata.deletion_timestamp.is_none()
            && started.lock().unwrap().insert(uid)
        {
            let client = client.clone();
            tokio::spawn(async move {
                let name = pod.metadata.name.clone().unwrap_or_default();
                if let Err(e) = run(client, pod).await {
                    eprintln!("pod-runner: {name}: {e}");
                }
            });
        }
    }
    Ok(())
}

fn now() -> String {
    Timestamp::now().to_string()
}

async fn run(client: Client, pod: Pod) -> anyhow::Result<()> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let spec = pod.spec.clone().unwrap_or_default();
    let start = now();
    let running: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| json!({ "name": c.name, "image": c.image, "ready": true, "started": true, "restartCount": 0,
                         "state": { "running": { "startedAt": start } } }))
        .collect();
    let conditions = |ready: &str| {
        json!([
            { "type": "Initialized", "status": "True", "lastTransitionTime": start },
            { "type": "Ready", "status": ready, "lastTransitionTime": now() },
            { "type": "ContainersReady", "status": ready, "lastTransitionTime": now() },
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": start }
        ])
    };
    patch_status(
        &api,
        &name,
        json!({ "phase": "Running", "startTime": start, "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1", "conditions": conditions("True"), "containerStatuses": running }),
    )
    .await?;

    let mut init_statuses = Vec::new();
    let mut failed = false;
    for container in spec.init_containers.iter().flatten() {
        let status = run_container(&client, &pod, container).await;
        failed |= status.0 != 0;
        init_statuses.push(terminated(container, &status));
        if failed {
            break;
        }
    }
    let mut statuses = Vec::new();
    if !failed {
        let runs = spec
            .containers
            .iter()
            .map(|c| run_container(&client, &pod, c));
        for (container, status) in spec
            .containers
            .iter()
            .zip(futures::future::join_all(runs).await)
        {
            failed |= status.0 != 0;
            statuses.push(terminated(container, &status));
        }
    }
    let phase = if failed { "Failed" } else { "Succeeded" };
    patch_status(
        &api,
        &name,
        json!({ "phase": phase, "conditions": conditions("False"),
        "initContainerStatuses": init_statuses, "containerStatuses": statuses }),
    )
    .await?;
    eprintln!("pod-runner: {namespace}/{name} {phase}");
    Ok(())
}

async fn patch_status(api: &Api<Pod>, name: &str, status: Value) -> kube::Result<()> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map(drop)
}

/// (exit code, started, finished)
type Outcome = (i32, String, String);

fn terminated(container: &Container, (code, started, finished): &Outcome) -> Value {
    let reason = if *code == 0 { "Completed" } else { "Error" };
    json!({ "name": container.name, "image": container.image, "ready": false, "started": false, "restartCount": 0,
            "state": { "terminated": { "exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished } } })
}

async fn run_container(client: &Client, pod: &Pod, container: &Container) -> Outcome {
    let started = now();
    let mut argv: Vec<String> = container.command.clone().unwrap_or_default();
    argv.extend(container.args.clone().unwrap_or_default());
    let env = environment(client, pod, container).await;
    let argv: Vec<String> = argv.iter().map(|a| expand(a, &env)).collect();
    let Some((program, rest)) = argv.split_first() else {
        eprintln!("pod-runner: container {} has no command", container.name);
        return (128, started, now());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null());
    let code = match command.status().await {
        Ok(status) => status.code().unwrap_or(137),
        Err(e) => {
            eprintln!("pod-runner: can't run {program}: {e}");
            127
        }
    };
    (code, started, now())
}

/// The container's environment as the kubelet builds it: a runtime's defaults, then `envFrom` in
/// order (with its prefix), then `env` in order, each value expanded against the variables before
/// it. A missing config map, secret or key gives an empty value (the kubelet would not start the
/// container; these tests never rely on that).
async fn environment(client: &Client, pod: &Pod, container: &Container) -> HashMap<String, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let config_map = |name: String| {
        let api = config_maps.clone();
        async move {
            let data = api.get_opt(&name).await.ok().flatten().and_then(|c| c.data);
            data.unwrap_or_default()
        }
    };
    let secret = |name: String| {
        let api = secrets.clone();
        async move {
            let data = api.get_opt(&name).await.ok().flatten().and_then(|s| s.data);
            data.unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect::<std::collections::BTreeMap<_, _>>()
        }
    };
    let mut env: HashMap<String, String> = HashMap::from([
        (
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ),
        (
            "HOSTNAME".to_owned(),
            pod.metadata.name.clone().unwrap_or_default(),
        ),
    ]);
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let data = if let Some(c) = &source.config_map_ref {
            config_map(c.name.clone()).await
        } else if let Some(s) = &source.secret_ref {
            secret(s.name.clone()).await
        } else {
            continue;
        };
        env.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(value) = &var.value {
            Some(expand(value, &env))
        } else if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                field(pod, &f.field_path)
            } else if let Some(k) = &from.secret_key_ref {
                secret(k.name.clone()).await.remove(&k.key)
            } else if let Some(k) = &from.config_map_key_ref {
                config_map(k.name.clone()).await.remove(&k.key)
            } else {
                None
            }
        } else {
            None
        };
        env.insert(var.name.clone(), value.unwrap_or_default());
    }
    env
}

fn field(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let keyed = |prefix: &str, map: Option<&std::collections::BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key).cloned()).unwrap_or_default())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone(),
        "status.hostIP" | "status.podIP" => Some("127.0.0.1".to_owned()),
        _ => keyed("metadata.labels['", meta.labels.as_ref())
            .or_else(|| keyed("metadata.annotations['", meta.annotations.as_ref())),
    }
}

/// `$(VAR)` becomes the value of an earlier variable; `$$(VAR)` stays a literal `$(VAR)`; an
/// unknown reference is left as written: the kubelet's expansion.
fn expand(input: &str, env: &HashMap<String, String>) -> String {
    jobtrace_testkit::fixtures::kubelet_expand(input, |name| env.get(name).cloned())
}
