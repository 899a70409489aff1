//! Self-managed certificates rotating under load: lifetimes of seconds, admissions sent through
//! the apiserver all along with `failurePolicy: Fail`, so that a single TLS error would fail a
//! create.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use jobtrace_testkit::cluster::TestNamespace;
use jobtrace_testkit::fixtures::TP;
use jobtrace_testkit::poll;
use jobtrace_testkit::process::{free_port, job, local_registration, register};

/// How long admissions are sent while certificates rotate.
const LOAD: Duration = Duration::from_secs(40);

fn injected(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .is_some_and(|p| {
            p.containers
                .iter()
                .all(|c| c.env.iter().flatten().any(|e| e.name == "TRACEPARENT"))
        })
}

// One scenario, step by step.
#[allow(clippy::too_many_lines)]
#[tokio::test]
async fn certificates_rotate_under_load_without_a_failed_admission() {
    let ns = TestNamespace::create("rotate").await;
    let (port, metrics_port) = (free_port(), free_port());
    let mut registration = local_registration(&ns, port);
    registration.failure_policy = "Fail".to_owned();
    register(&ns, &registration).await;
    let configs: Api<MutatingWebhookConfiguration> = Api::all(ns.client.clone());
    // A 9 s certificate is renewed every 6 s; a 36 s CA rolls over after 24 s.
    let child = std::process::Command::new(crate::chart::jobtrace_binary())
        .args(["webhook", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .args([
            "--cert-secret",
            "rotating-tls",
            "--cert-namespace",
            &ns.name,
        ])
        .args(["--webhook-configuration", &registration.name])
        .args(["--cert-name", "127.0.0.1"])
        .args(["--cert-validity", "9s", "--ca-validity", "36s"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _process = crate::chart::Process(child);

    // The apiserver trusts jobtrace once the caBundle is set: probe with dry-run creates.
    let jobs: Api<Job> = ns.api();
    let probe = job("probe", &json!({ "traceparent": TP }), false);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let (within, every) = (Duration::from_secs(60), Duration::from_millis(250));
    poll::until("the webhook in force", within, every, async || {
        jobs.create(&dry, &probe)
            .await
            .is_ok_and(|j| injected(&j))
            .then_some(())
    })
    .await;

    // Admissions from four clients, and a look at the Secret twice a second.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (jobs, probe, dry, stop) = (jobs.clone(), probe.clone(), dry.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let (mut sent, mut failures) = (0_u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                sent += 1;
                match jobs.create(&dry, &probe).await {
                    Ok(job) if injected(&job) => {}
                    Ok(_) => failures.push("created without injection".to_owned()),
                    Err(e) => failures.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (sent, failures)
        }));
    }
    let secrets: Api<Secret> = ns.api();
    let (mut certs, mut signing_cas) = (BTreeSet::new(), BTreeSet::new());
    let started = Instant::now();
    while started.elapsed() < LOAD {
        if let Some(secret) = secrets.get_opt("rotating-tls").await.unwrap() {
            let data = secret.data.unwrap();
            certs.insert(data["tls.crt"].0.clone());
            let bundle = String::from_utf8(data["ca.crt"].0.clone()).unwrap();
            let first = bundle
                .split_inclusive("-----END CERTIFICATE-----\n")
                .next()
                .unwrap()
                .to_owned();
            signing_cas.insert(first);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut failures) = (0, Vec::new());
    for client in clients {
        let (n, f) = client.await.unwrap();
        sent += n;
        failures.extend(f);
    }
    let _ = configs
        .delete(&registration.name, &DeleteParams::default())
        .await;
    assert!(
        failures.is_empty(),
        "{} of {sent} admissions failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(sent > 200, "only {sent} admissions");
    assert!(
        certs.len() >= 5,
        "{} serving certificates seen",
        certs.len()
    );
    assert!(
        signing_cas.len() >= 2,
        "{} signing CAs seen: no rollover",
        signing_cas.len()
    );
}
