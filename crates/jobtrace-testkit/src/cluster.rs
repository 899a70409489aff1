//! What every end-to-end test needs: a client from `KUBECONFIG`, a namespace of its own, and waits
//! with a deadline.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};

/// How long a test waits for the cluster to reach a state before it fails.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// [`crate::poll::until`] at the cluster's pace: a look every half second, [`DEADLINE`] at most.
pub async fn until<O: crate::poll::Outcome>(what: &str, check: impl AsyncFnMut() -> O) -> O::Value {
    crate::poll::until(what, DEADLINE, Duration::from_millis(500), check).await
}

/// A kind of object that lives in a namespace, as k8s-openapi's types do.
pub trait Namespaced:
    kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Namespaced for K where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
{
}

/// A namespace created for one test and deleted when the test ends, even when it panics.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    pub async fn create(prefix: &str) -> Self {
        let client = Client::try_default()
            .await
            .expect("KUBECONFIG must point at the local control plane (make cluster-up)");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("e2e-{prefix}-")),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create the test namespace");
        let name = created
            .metadata
            .name
            .expect("the apiserver names the namespace");
        Self { client, name }
    }

    pub fn api<K: Namespaced>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Waits until `done` holds for the namespace's objects of kind `K`, and returns them; the
    /// failure names those it saw last.
    pub async fn until_listed<K: Namespaced>(
        &self,
        what: &str,
        done: impl Fn(&[K]) -> bool,
    ) -> Vec<K> {
        let objects: Api<K> = self.api();
        until(what, async || {
            let list = objects.list(&ListParams::default()).await.unwrap().items;
            if done(&list) {
                Ok(list)
            } else {
                let names: Vec<&str> = list
                    .iter()
                    .filter_map(|o| o.meta().name.as_deref())
                    .collect();
                Err(format!("{names:?}"))
            }
        })
        .await
    }

    /// Creates `job` and waits until it has a `Complete` or `Failed` condition.
    pub async fn run_job(&self, job: &Job) -> Job {
        let jobs: Api<Job> = self.api();
        let name = job.metadata.name.clone().expect("test Jobs are named");
        jobs.create(&PostParams::default(), job)
            .await
            .expect("create the Job");
        self.finished(&name).await
    }

    /// Waits until the Job `name` has a `Complete` or `Failed` condition.
    pub async fn finished(&self, name: &str) -> Job {
        let jobs: Api<Job> = self.api();
        let finished = tokio::time::timeout(
            DEADLINE,
            await_condition(jobs, name, |job: Option<&Job>| {
                job.is_some_and(|job| finished_condition(job).is_some())
            }),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "Job {}/{name} did not finish within {DEADLINE:?}",
                self.name
            )
        })
        .expect("watch the Job");
        finished.expect("the Job exists")
    }

    pub async fn pods_of(&self, job: &str) -> Vec<Pod> {
        let pods: Api<Pod> = self.api();
        pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
            .await
            .expect("list the Job's pods")
            .items
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop can't await, and the test's runtime may be single-threaded: delete from a thread
        // of its own with a client of its own.
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let client = Client::try_default().await.ok()?;
                let namespaces: Api<Namespace> = Api::all(client);
                namespaces
                    .delete(&name, &DeleteParams::background())
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(deleted, Ok(Some(_))) {
            eprintln!("could not delete test namespace {}", self.name);
        }
    }
}

/// The `(type, reason)` of a Job's terminal condition, if it has one.
pub fn finished_condition(job: &Job) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| (c.type_.clone(), c.reason.clone().unwrap_or_default()))
}

/// A Job of one container that kwok "runs" for `run_for`; `exit_code` makes its pods fail.
pub fn sim_job(name: &str, run_for: &str, exit_code: Option<i32>) -> Job {
    let mut annotations = serde_json::json!({ "sim.jobtrace.dev/run-for": run_for });
    if let Some(code) = exit_code {
        annotations["sim.jobtrace.dev/exit-code"] = code.to_string().into();
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name },
        "spec": {
            "backoffLimit": 1,
            "template": {
                "metadata": { "annotations": annotations },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "main", "image": "example.invalid/batch:1" }]
                }
            }
        }
    }))
    .expect("a valid Job")
}

/// A request to etcd's JSON gateway on the local control plane's client port; `None` when etcd
/// doesn't answer or refuses.
pub async fn etcd(path: &str, body: serde_json::Value) -> Option<serde_json::Value> {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:2379{path}"))
        .json(&body)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// Compacts etcd at its current revision, once that is past `past`, the way the apiserver's own
/// compactor does every 5 minutes: it records the revision under `compact_rev_key` (a
/// compare-and-swap on the key's version, so that two compactors take turns), which tells every
/// apiserver, then compacts. The apiserver's watch cache then drops its snapshots older than
/// that revision (it reads the key within 15 s), so that lists at those revisions go to etcd,
/// which refuses them; the versions older than it are freed. Returns the revision, or `None` when
/// etcd doesn't answer.
pub async fn compact_etcd(past: u64) -> Option<u64> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use serde_json::json;
    let key = BASE64.encode("compact_rev_key");
    loop {
        let range = etcd("/v3/kv/range", json!({ "key": key })).await?;
        let revision: u64 = range["header"]["revision"].as_str()?.parse().ok()?;
        if revision <= past {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let version = range["kvs"][0]["version"].as_str().unwrap_or("0");
        let swapped = etcd(
            "/v3/kv/txn",
            json!({
                "compare": [{ "target": "VERSION", "key": key, "version": version, "result": "EQUAL" }],
                "success": [{ "requestPut": { "key": key, "value": BASE64.encode(revision.to_string()) } }]
            }),
        )
        .await?;
        if swapped["succeeded"] == true {
            etcd(
                "/v3/kv/compaction",
                json!({ "revision": revision.to_string() }),
            )
            .await?;
            return Some(revision);
        }
        // The apiserver's compactor took its turn meanwhile: read the key again.
    }
}
