//! What keeps a tenant from forging spans, on the real apiserver: the chart's admission policies
//! installed as the chart renders them (a tenant refused a change to what jobtrace wrote on a
//! Job, jobtrace's service account refused anything but its marks, while the job controller, the
//! kubelet's status updates and the garbage collector go through), and the webhook giving a Job
//! created with another trace's ids ids of its own.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use jobtrace_testkit::cluster::TestNamespace;
use jobtrace_testkit::helm::render;
use jobtrace_testkit::poll;
use jobtrace_testkit::process::{Webhook, kubectl};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const JOB_SPAN: &str = "a1b2c3d4e5f60718";

/// The chart's objects of some kinds, applied; the cluster-wide ones deleted on drop.
struct Installed {
    cluster_wide: Vec<(String, String)>,
}

impl Installed {
    fn apply(docs: &[Value], kinds: &[&str], dir: &std::path::Path) -> Self {
        let chosen: Vec<&Value> = docs
            .iter()
            .filter(|d| kinds.contains(&d["kind"].as_str().unwrap_or_default()))
            .collect();
        let path = dir.join("security.json");
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": chosen });
        std::fs::write(&path, list.to_string()).unwrap();
        let output = kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster_wide = chosen
            .iter()
            .filter(|d| d["metadata"]["namespace"].is_null())
            .map(|d| {
                (
                    d["kind"].as_str().unwrap().to_owned(),
                    d["metadata"]["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        Self { cluster_wide }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        for (kind, name) in &self.cluster_wide {
            let _ = kubectl()
                .args(["delete", "--ignore-not-found", kind, name])
                .output();
        }
    }
}

/// A client that authenticates as the test's kubeconfig says and acts as `user`.
async fn client_as(user: &str) -> Client {
    let mut config = kube::Config::infer()
        .await
        .expect("KUBECONFIG must point at the local control plane");
    config.auth_info.impersonate = Some(user.to_owned());
    Client::try_from(config).expect("a client")
}

/// The message of the refusal `result` must be, naming the policy; `what` says what was tried.
fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>, policy: &str) -> String {
    match result {
        Err(kube::Error::Api(e)) if e.code == 403 => {
            assert!(
                e.message.contains(&format!("'{policy}'")),
                "{what}: {}",
                e.message
            );
            e.message
        }
        Err(e) => panic!("{what}: refused by {policy} expected, got {e}"),
        Ok(o) => panic!("{what}: refused by {policy} expected, but it went through: {o:?}"),
    }
}

fn merge(value: &Value) -> Patch<&Value> {
    Patch::Merge(value)
}

/// A JSON patch: each operation changes the object or fails, never a silent no-op.
fn ops(ops: &Value) -> Patch<()> {
    Patch::Json(serde_json::from_value(ops.clone()).expect("a JSON patch"))
}

/// A suspended Job carrying what jobtrace's webhook writes, held for export: its pods (once
/// resumed) run for a second on kwok.
fn traced_job(name: &str) -> Job {
    let written = json!({
        "jobtrace.dev/trace-id": TRACE_ID,
        "jobtrace.dev/parent-span-id": JOB_SPAN,
        "jobtrace.dev/trace-flags": "01",
    });
    let mut job_annotations = written.clone();
    job_annotations["jobtrace.dev/span-id"] = json!(JOB_SPAN);
    job_annotations["jobtrace.dev/parent-span-id"] = json!("00f067aa0ba902b7");
    job_annotations["jobtrace.dev/origin"] = json!("child");
    job_annotations["jobtrace.dev/admitted-at"] = json!("2026-11-23T10:00:00.000000Z");
    let mut pod_annotations = written;
    pod_annotations["sim.jobtrace.dev/run-for"] = json!("1s");
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": name,
            "labels": { "jobtrace.dev/traced": "true" },
            "annotations": job_annotations,
            "finalizers": ["jobtrace.dev/export"],
        },
        "spec": { "suspend": true, "backoffLimit": 0, "template": {
            "metadata": {
                "labels": { "jobtrace.dev/traced": "true" },
                "annotations": pod_annotations,
            },
            "spec": { "restartPolicy": "Never", "containers": [{ "name": "main", "image": "example.invalid/main" }] }
        } }
    }))
    .unwrap()
}

/// Lets the user `tenant` read and update the namespace's Jobs, status included, and nothing
/// else: what a tenant who runs batch work there has.
async fn tenant_role(ns: &TestNamespace, tenant: &str) {
    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "tenant" },
        "rules": [{
            "apiGroups": ["batch"],
            "resources": ["jobs", "jobs/status"],
            "verbs": ["get", "list", "update", "patch"]
        }]
    }))
    .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "tenant" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": tenant }]
    }))
    .unwrap();
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

// One install, step by step: the tenant's side, then jobtrace's.
#[allow(clippy::too_many_lines)]
#[tokio::test]
async fn a_tenant_cant_change_what_jobtrace_wrote_nor_jobtrace_anything_else() {
    let ns = TestNamespace::create("security").await;
    let release = ns.name.clone();
    let fullname = format!("{release}-jobtrace");
    let (keys, writes) = (format!("{fullname}-keys"), format!("{fullname}-writes"));
    let dir = std::env::temp_dir().join(format!("jobtrace-{release}"));
    std::fs::create_dir_all(&dir).unwrap();
    // Installed in the test's namespace, watching it only: the policies hold nothing elsewhere
    // (other tests run alongside).
    let watch = format!("controller.watchNamespace={}", ns.name);
    let docs = render(&release, &ns.name, &["--set", &watch]).unwrap();
    let _installed = Installed::apply(
        &docs,
        &[
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ],
        &dir,
    );
    tenant_role(&ns, "e2e-tenant").await;
    let tenant: Api<Job> = Api::namespaced(client_as("e2e-tenant").await, &ns.name);
    let account = format!("system:serviceaccount:{}:{fullname}", ns.name);
    let jobtrace: Api<Job> = Api::namespaced(client_as(&account).await, &ns.name);
    let admin: Api<Job> = ns.api();
    let job = admin
        .create(&PostParams::default(), &traced_job("nightly"))
        .await
        .unwrap();
    let uid = job.metadata.uid.clone().unwrap();
    // Until the job controller has seen the Job, an update of it may come back unchanged (the
    // apiserver's own doing): wait, so that what goes through below is what the policies allow.
    poll::until(
        "the job controller never saw the Job",
        Duration::from_secs(60),
        Duration::from_millis(250),
        async || {
            (admin
                .get("nightly")
                .await
                .unwrap()
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Suspended")))
            .then_some(())
        },
    )
    .await;

    // The policies take effect within seconds: a dry run of the tenant's forgery tells when.
    let forged = json!([{ "op": "replace", "path": "/metadata/annotations/jobtrace.dev~1trace-id",
        "value": "0af7651916cd43dd8448eb211c80319c" }]);
    let policy_in_force = async || {
        let dry = tenant
            .patch("nightly", &PatchParams::default().dry_run(), &ops(&forged))
            .await;
        match &dry {
            Err(kube::Error::Api(e)) if e.message.contains(&keys) => Ok(()),
            _ => Err(format!("{dry:?}")),
        }
    };
    let (within, every) = (Duration::from_secs(60), Duration::from_millis(250));
    poll::until("the policy in force", within, every, policy_in_force).await;

    // The tenant: refused a change to jobtrace's ids, its labels, through the status too, and in
    // the suspended Job's pod template; free to write its other annotations and its own context.
    let message = refused(
        "the tenant's forged trace id",
        tenant
            .patch("nightly", &PatchParams::default(), &ops(&forged))
            .await,
        &keys,
    );
    assert!(
        message.contains("only jobtrace may add, change or remove jobtrace.dev/trace-id"),
        "{message}"
    );
    let relabelled = json!([{ "op": "add", "path": "/metadata/labels/jobtrace.dev~1policy",
        "value": "another-teams" }]);
    let message = refused(
        "the tenant's policy label",
        tenant
            .patch("nightly", &PatchParams::default(), &ops(&relabelled))
            .await,
        &keys,
    );
    assert!(message.contains("jobtrace.dev/policy"), "{message}");
    let through_status = json!([{ "op": "replace", "path": "/metadata/annotations/jobtrace.dev~1span-id",
        "value": "0102030405060708" }]);
    refused(
        "the tenant's span id through the status",
        tenant
            .patch_status("nightly", &PatchParams::default(), &ops(&through_status))
            .await,
        &keys,
    );
    let in_template = json!([{ "op": "replace",
        "path": "/spec/template/metadata/annotations/jobtrace.dev~1trace-id",
        "value": "0af7651916cd43dd8448eb211c80319c" }]);
    let message = refused(
        "the tenant's trace id in the pod template",
        tenant
            .patch("nightly", &PatchParams::default(), &ops(&in_template))
            .await,
        &keys,
    );
    assert!(message.contains("in the pod template"), "{message}");
    let own = json!({ "metadata": { "annotations": {
        "team": "reports",
        "jobtrace.dev/traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    } } });
    tenant
        .patch("nightly", &PatchParams::default(), &merge(&own))
        .await
        .expect("a tenant's own annotations, and its input context, stay free");

    // jobtrace's ServiceAccount: refused a change to the spec, the labels, its own ids and
    // another Secret; its mark goes through.
    let message = refused(
        "jobtrace's parallelism",
        jobtrace
            .patch(
                "nightly",
                &PatchParams::default(),
                &merge(&json!({ "spec": { "parallelism": 3 } })),
            )
            .await,
        &writes,
    );
    assert!(message.contains("may not change a Job's spec"), "{message}");
    refused(
        "jobtrace's label",
        jobtrace
            .patch(
                "nightly",
                &PatchParams::default(),
                &merge(&json!({ "metadata": { "labels": { "team": "jobtrace" } } })),
            )
            .await,
        &writes,
    );
    refused(
        "jobtrace's change of a trace id",
        jobtrace
            .patch("nightly", &PatchParams::default(), &ops(&forged))
            .await,
        &writes,
    );
    let secrets: Api<Secret> = Api::namespaced(client_as(&account).await, &ns.name);
    let secret = |name: &str, key: &str| -> Secret {
        serde_json::from_value(json!({ "metadata": { "name": name }, "stringData": { key: "x" } }))
            .unwrap()
    };
    refused(
        "jobtrace's other Secret",
        secrets
            .create(&PostParams::default(), &secret("database", "password"))
            .await,
        &writes,
    );
    let message = refused(
        "jobtrace's serving Secret with the CA's key",
        secrets
            .create(
                &PostParams::default(),
                &secret(&format!("{fullname}-tls"), "ca.key"),
            )
            .await,
        &writes,
    );
    assert!(message.contains("ca.key"), "{message}");

    // The Job runs: the job controller's and the kubelet's (kwok's) status updates go through.
    tenant
        .patch(
            "nightly",
            &PatchParams::default(),
            &merge(&json!({ "spec": { "suspend": false } })),
        )
        .await
        .unwrap();
    ns.finished("nightly").await;
    // The controller's mark: exported, and its finalizer released, in one JSON patch.
    let mut mark = vec![
        json!({ "op": "test", "path": "/metadata/uid", "value": uid }),
        json!({ "op": "add", "path": "/metadata/annotations/jobtrace.dev~1exported", "value": "true" }),
    ];
    mark.extend(jobtrace::k8s::release::release_ops(0).map(|op| serde_json::to_value(op).unwrap()));
    jobtrace
        .patch("nightly", &PatchParams::default(), &ops(&json!(mark)))
        .await
        .expect("jobtrace's mark");
    let marked = admin.get("nightly").await.unwrap();
    let annotations = marked.metadata.annotations.unwrap();
    assert_eq!(annotations["jobtrace.dev/exported"], "true");
    assert_eq!(
        annotations["jobtrace.dev/trace-id"], TRACE_ID,
        "never forged"
    );
    assert!(marked.metadata.finalizers.is_none_or(|f| f.is_empty()));

    // `jobtrace release`, run by an admin, removes the finalizer of a held Job; the garbage
    // collector deletes a Job in the foreground (its pods first), writing its finalizers.
    let held = admin
        .create(&PostParams::default(), &traced_job("held"))
        .await
        .unwrap();
    let release = jobtrace::k8s::release::release_patch(held.metadata.uid.as_deref().unwrap(), 0);
    admin
        .patch(
            "held",
            &PatchParams::default(),
            &ops(&serde_json::to_value(&release).unwrap()),
        )
        .await
        .expect("jobtrace release");
    admin
        .delete("nightly", &DeleteParams::foreground())
        .await
        .unwrap();
    poll::until(
        "the garbage collector finishing the Job",
        Duration::from_secs(60),
        Duration::from_millis(250),
        async || {
            admin
                .get_opt("nightly")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_created_with_another_traces_ids_gets_its_own() {
    let ns = TestNamespace::create("foreign-ids").await;
    let _webhook = Webhook::start(&ns).await;
    // A manifest saved from a Job of another trace, given a context of this one.
    let (other_trace, other_span) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let mut job = jobtrace_testkit::cluster::sim_job("copied", "1s", None);
    job.metadata.annotations = Some(
        [
            ("traceparent", traceparent.as_str()),
            ("jobtrace.dev/trace-id", other_trace),
            ("jobtrace.dev/span-id", other_span),
            ("jobtrace.dev/parent-span-id", "0102030405060708"),
            ("jobtrace.dev/admitted-at", "2026-11-23T10:00:00.000000Z"),
            ("jobtrace.dev/exported", "true"),
            ("jobtrace.dev/created-suspended", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    let created = ns
        .api::<Job>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let annotations = created.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["jobtrace.dev/trace-id"], TRACE_ID);
    assert_eq!(
        annotations["jobtrace.dev/parent-span-id"],
        "00f067aa0ba902b7"
    );
    let span = &annotations["jobtrace.dev/span-id"];
    assert_ne!(span, other_span, "a span id of its own");
    assert_eq!(span.len(), 16);
    let admitted: Timestamp = annotations["jobtrace.dev/admitted-at"].parse().unwrap();
    let age = Timestamp::now().duration_since(admitted);
    assert!(
        age.as_secs() < 60,
        "admitted now, not when the other Job was: {admitted}"
    );
    for gone in ["jobtrace.dev/exported", "jobtrace.dev/created-suspended"] {
        assert!(!annotations.contains_key(gone), "{gone}: {annotations:?}");
    }
    let container = &created.spec.unwrap().template.spec.unwrap().containers[0];
    let injected = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "TRACEPARENT")
        .and_then(|e| e.value.clone());
    assert_eq!(injected, Some(format!("00-{TRACE_ID}-{span}-01")));
}
