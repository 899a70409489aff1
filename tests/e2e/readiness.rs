//! The webhook stays available while the controller lists: `jobtrace run`, leading over more
//! finished traced pods than it can queue while the collector hangs, never finishes its list,
//! and all the while answers `/readyz` with 200 (what keeps a replica in its Service's
//! endpoints) and mutates the Jobs it is sent.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use jobtrace::core::names;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use jobtrace_testkit::cluster::TestNamespace;
use jobtrace_testkit::fixtures::TP;
use jobtrace_testkit::poll;
use jobtrace_testkit::process::{Webhook, job};

/// More finished objects than the controller holds while the collector doesn't answer (a batch
/// of 512 spans being retried, and a queue of 512): its list of the pods can't end.
const PODS: usize = 1_200;
/// How long the test watches the webhook while the controller lists.
const WATCHED: Duration = Duration::from_secs(10);

/// A traced pod in `trace_id`, as the webhook leaves one, that never gets scheduled (a scheduling
/// gate): no Job, no node and no kubelet, just an object to list.
pub fn traced_pod(name: &str, trace_id: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": { names::TRACED_LABEL: "true" },
            "annotations": {
                names::TRACE_ID: trace_id,
                names::PARENT_SPAN_ID: "00f067aa0ba902b7",
                names::TRACE_FLAGS: "01"
            }
        },
        "spec": {
            "schedulingGates": [{ "name": "e2e.jobtrace.dev/never" }],
            "restartPolicy": "Never",
            "containers": [{ "name": "main", "image": "example.invalid/main" }]
        }
    }))
    .unwrap()
}

/// Creates `PODS` traced pods and makes each one Succeeded, a few requests at a time.
async fn finished_traced_pods(ns: &TestNamespace) {
    let pods: Api<Pod> = ns.api();
    futures::stream::iter(0..PODS)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let name = format!("listed-{i}");
                pods.create(
                    &PostParams::default(),
                    &traced_pod(&name, "4bf92f3577b34da6a3ce929d0e0e4736"),
                )
                .await?;
                let phase = json!({ "status": { "phase": "Succeeded" } });
                pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&phase))
                    .await
                    .map(drop)
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("create the finished traced pods");
}

/// Whether a server-side dry-run create of a Job with context comes back mutated, as
/// `kubectl create --dry-run=server` shows it.
async fn admission_mutates(ns: &TestNamespace) -> bool {
    let jobs: Api<Job> = ns.api();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let created = jobs
        .create(
            &dry_run,
            &job("probe", &json!({ "traceparent": TP }), false),
        )
        .await
        .expect("dry-run create");
    created
        .metadata
        .labels
        .unwrap_or_default()
        .contains_key(names::TRACED_LABEL)
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_listing_many_traced_pods_keeps_answering_admissions() {
    let ns = TestNamespace::create("listing").await;
    let started = Instant::now();
    finished_traced_pods(&ns).await;
    eprintln!("{PODS} finished traced pods in {:?}", started.elapsed());
    // A collector that takes connections and never answers: exports time out and are retried.
    let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let otlp = format!("http://{}", collector.local_addr().unwrap());
    let args = [
        "run",
        "--watch-namespace",
        &ns.name,
        "--lease-namespace",
        &ns.name,
        "--lease-name",
        "listing",
    ];
    // Ready, registered, and mutating Jobs although its controller lists: the start waits for
    // `/readyz` alone, and for a dry-run Job to come back mutated.
    let jobtrace =
        Webhook::start_unsynced(&ns, &args, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)]).await;
    let base = format!("http://{}", jobtrace.metrics);
    let listing = (
        503,
        "not synced: listing the traced Jobs and pods".to_owned(),
    );
    let (within, every) = (Duration::from_secs(20), Duration::from_millis(100));
    poll::until("jobtrace leading and listing", within, every, async || {
        let leads = jobtrace.scrape().await.gauge("jobtrace_leader") == 1;
        let syncz = get(&format!("{base}/syncz")).await;
        if leads && syncz == listing {
            Ok(())
        } else {
            Err(format!("leads {leads}, {syncz:?}"))
        }
    })
    .await;
    let until = Instant::now() + WATCHED;
    let mut rounds = 0;
    while Instant::now() < until {
        let readyz = get(&format!("{base}/readyz")).await;
        assert_eq!(readyz, (200, "ready".to_owned()), "round {rounds}");
        assert_eq!(
            get(&format!("{base}/syncz")).await,
            listing,
            "round {rounds}: the list can't end while the collector hangs"
        );
        let scrape = jobtrace.scrape().await;
        assert_eq!(scrape.gauge("jobtrace_leader"), 1, "round {rounds}");
        assert_eq!(
            scrape.gauge("jobtrace_controller_listing"),
            1,
            "round {rounds}"
        );
        assert!(
            admission_mutates(&ns).await,
            "round {rounds}: a Job with context is admitted unmutated"
        );
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let pending = jobtrace
        .scrape()
        .await
        .gauge("jobtrace_spans_pending_objects");
    assert!(
        pending > 512,
        "the leader holds more listed pods than its queue: {pending} pending"
    );
    drop(collector);
}
