//! `JobTracePolicy` on the real apiserver: its CEL rules, root traces at ratio 1 and 0 with the
//! webhook's `matchConditions` following them, link mode, a baggage rule, the status counts, and
//! CronJob runs each in a trace of its own.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::jaeger::{JAEGER_QUERY, OTLP_GRPC, fetch_trace};
use crate::spans::{all_exported, kwok_job, named, random_trace_id};
use crate::webhook::kubectl_with_manifest;
use jobtrace_testkit::cluster::{DEADLINE, TestNamespace};
use jobtrace_testkit::poll;
use jobtrace_testkit::process::{Webhook, kubectl};

/// Applies `manifest` with kubectl in the test's namespace; its success and what it printed.
fn kubectl_apply(ns: &TestNamespace, manifest: &Value) -> (bool, String) {
    let out = kubectl_with_manifest(ns, "apply", manifest);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn policy(name: &str, spec: &Value) -> Value {
    json!({
        "apiVersion": "jobtrace.dev/v1alpha1", "kind": "JobTracePolicy",
        "metadata": { "name": name }, "spec": spec
    })
}

/// `jobtrace run` for the namespace, keeping its own webhook configuration's `matchConditions` in
/// step with the policies.
async fn jobtrace(ns: &TestNamespace) -> Webhook {
    let configuration = format!("jobtrace-{}", ns.name);
    let args = [
        "run",
        "--no-leader-election",
        "--watch-namespace",
        &ns.name,
        "--sync-match-conditions",
        "--webhook-configuration",
        &configuration,
    ];
    Webhook::start_with(ns, &args, &[("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP_GRPC)]).await
}

/// Waits until the test's webhook configuration lets Jobs without context of the namespace
/// through (`wanted`), or no longer does.
async fn wait_for_condition(ns: &TestNamespace, wanted: bool) {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(ns.client.clone());
    let name = format!("jobtrace-{}", ns.name);
    let every = Duration::from_millis(300);
    poll::until(
        "the matchConditions following the policies",
        DEADLINE,
        every,
        async || {
            let config = configs.get(&name).await.unwrap();
            let expression = config.webhooks.unwrap()[0]
                .match_conditions
                .as_ref()
                .unwrap()[0]
                .expression
                .clone();
            if expression.contains(&format!("'{}'", ns.name)) == wanted {
                Ok(())
            } else {
                Err(expression)
            }
        },
    )
    .await;
}

/// A Job kwok runs for `run_for`, with `annotations`.
fn plain_job(name: &str, annotations: &Value) -> Job {
    let mut job = kwok_job(name, "unused", "500ms");
    job.metadata.annotations = serde_json::from_value(annotations.clone()).unwrap();
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_policy_is_refused_with_a_message_naming_the_field() {
    let ns = TestNamespace::create("badpolicy").await;
    let (ok, out) = kubectl_apply(
        &ns,
        &policy("bad", &json!({ "rootTraces": { "ratio": 2 } })),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("spec.rootTraces.ratio: between 0 and 1"),
        "{out}"
    );
    let (ok, out) = kubectl_apply(&ns, &policy("bad", &json!({ "priority": 5000 })));
    assert!(
        !ok && out.contains("spec.priority: between -1000 and 1000"),
        "{out}"
    );
    let selector = json!({ "selector": { "matchExpressions": [
        { "key": "tier", "operator": "Gt", "values": ["1"] }
    ] } });
    let (ok, out) = kubectl_apply(&ns, &policy("bad", &selector));
    assert!(
        !ok && out
            .contains("spec.selector.matchExpressions[0].operator: Unsupported value: \"Gt\""),
        "{out}"
    );
    let long = "p".repeat(64);
    let (ok, out) = kubectl_apply(&ns, &policy(&long, &json!({})));
    assert!(
        !ok && out.contains("metadata.name: at most 63 characters"),
        "{out}"
    );
    let (ok, out) = kubectl_apply(
        &ns,
        &policy("good", &json!({ "rootTraces": { "ratio": 0.5 } })),
    );
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_traces_follow_the_ratio_and_jobs_of_other_namespaces_never_call() {
    let ns = TestNamespace::create("roots").await;
    let jobtrace = jobtrace(&ns).await;
    let jobs: Api<Job> = ns.api();

    // No policy: a Job without context never reaches the webhook.
    let before = jobtrace.requests("jobs").await;
    jobs.create(&PostParams::default(), &plain_job("untraced", &json!({})))
        .await
        .unwrap();
    ns.finished("untraced").await;
    assert_eq!(
        jobtrace.requests("jobs").await,
        before,
        "untraced work pays nothing"
    );

    let (ok, out) = kubectl_apply(
        &ns,
        &policy("roots", &json!({ "rootTraces": { "ratio": 1.0 } })),
    );
    assert!(ok, "{out}");
    wait_for_condition(&ns, true).await;
    jobs.create(&PostParams::default(), &plain_job("sampled", &json!({})))
        .await
        .unwrap();
    let created = jobs.get("sampled").await.unwrap();
    let annotations = created.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["jobtrace.dev/origin"], "root");
    assert_eq!(annotations["jobtrace.dev/trace-flags"], "03");
    assert!(!annotations.contains_key("jobtrace.dev/parent-span-id"));
    assert_eq!(
        created.metadata.labels.unwrap()["jobtrace.dev/policy"],
        "roots"
    );
    let trace_id = annotations["jobtrace.dev/trace-id"].clone();
    let trace = fetch_trace(&trace_id, 2).await;
    let job_span = named(&trace, "job ")[0];
    assert!(
        job_span["references"].as_array().is_none_or(Vec::is_empty),
        "a root: {job_span}"
    );

    let (ok, out) = kubectl_apply(
        &ns,
        &policy("roots", &json!({ "rootTraces": { "ratio": 0.0 } })),
    );
    assert!(ok, "{out}");
    // The webhook's copy follows the change; a Job admitted before it would still be sampled.
    let mut n = 0;
    let every = Duration::from_secs(1);
    let unsampled = poll::until(
        "the policy change in the webhook",
        DEADLINE,
        every,
        async || {
            n += 1;
            let name = format!("unsampled-{n}");
            jobs.create(&PostParams::default(), &plain_job(&name, &json!({})))
                .await
                .unwrap();
            let job = jobs.get(&name).await.unwrap();
            let flags = &job.metadata.annotations.as_ref().unwrap()["jobtrace.dev/trace-flags"];
            (flags == "02").then_some(job)
        },
    )
    .await;
    let env = &unsampled.spec.unwrap().template.spec.unwrap().containers[0].env;
    let traceparent = env
        .iter()
        .flatten()
        .find(|v| v.name == "TRACEPARENT")
        .and_then(|v| v.value.clone())
        .expect("a context all the same");
    assert!(traceparent.ends_with("-02"), "{traceparent}");

    // The policy gone, Jobs without context stop calling the webhook again.
    let (ok, out) = kubectl_delete_policy(&ns, "roots");
    assert!(ok, "{out}");
    wait_for_condition(&ns, false).await;
    let before = jobtrace.requests("jobs").await;
    jobs.create(
        &PostParams::default(),
        &plain_job("untraced-again", &json!({})),
    )
    .await
    .unwrap();
    ns.finished("untraced-again").await;
    assert_eq!(jobtrace.requests("jobs").await, before);
}

fn kubectl_delete_policy(ns: &TestNamespace, name: &str) -> (bool, String) {
    let out = kubectl()
        .args(["delete", "-n", &ns.name, "jobtracepolicy", name])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_mode_and_a_baggage_rule_and_the_status_counts() {
    let ns = TestNamespace::create("link").await;
    let spec = json!({
        "relationship": "link",
        "baggage": { "exclude": ["user.email"] },
        "jobLabels": ["team"]
    });
    let (ok, out) = kubectl_apply(&ns, &policy("fan-out", &spec));
    assert!(ok, "{out}");
    let _jobtrace = jobtrace(&ns).await;
    let jobs: Api<Job> = ns.api();
    let creator_trace = random_trace_id();
    let creator = format!("00-{creator_trace}-00f067aa0ba902b7-01");
    // The webhook lists the policies when it starts; make sure this Job is decided by them.
    let mut n = 0;
    let every = Duration::from_secs(1);
    let job = poll::until("the policy deciding", DEADLINE, every, async || {
        n += 1;
        let name = format!("linked-{n}");
        let mut job = plain_job(
            &name,
            &json!({ "traceparent": creator, "baggage": "tenant=acme,user.email=a@b.c" }),
        );
        job.metadata.labels = Some([("team".to_owned(), "data".to_owned())].into());
        jobs.create(&PostParams::default(), &job).await.unwrap();
        let job = jobs.get(&name).await.unwrap();
        if job
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key("jobtrace.dev/policy")
        {
            Some(job)
        } else {
            None
        }
    })
    .await;
    let annotations = job.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["jobtrace.dev/link"], creator);
    let own_trace = annotations["jobtrace.dev/trace-id"].clone();
    assert_ne!(own_trace, creator_trace, "a trace of its own");
    let env = job.spec.clone().unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let baggage = env
        .iter()
        .find(|v| v.name == "BAGGAGE")
        .and_then(|v| v.value.clone());
    assert_eq!(
        baggage.as_deref(),
        Some("tenant=acme"),
        "the excluded key is gone"
    );

    let trace = fetch_trace(&own_trace, 2).await;
    let job_span = named(&trace, "job ")[0];
    let references = job_span["references"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        references.iter().any(|r| r["refType"] == "FOLLOWS_FROM"
            && r["traceID"] == creator_trace
            && r["spanID"] == "00f067aa0ba902b7"),
        "a link to the creator: {references:?}"
    );
    let tags = job_span["tags"].as_array().unwrap();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "k8s.job.label.team" && t["value"] == "data"),
        "{tags:?}"
    );

    // The status counts the Jobs it traced.
    let status = wait_for_status(&ns, "fan-out").await;
    assert!(
        status["selectedJobs"].as_i64() <= Some(i64::from(n)),
        "{status}"
    );
}

/// The policy's status once it is `Ready` and counts a traced Job.
async fn wait_for_status(ns: &TestNamespace, name: &str) -> Value {
    let what = format!("a status for {name}");
    poll::until(&what, DEADLINE, Duration::from_secs(1), async || {
        let out = kubectl()
            .args(["get", "-n", &ns.name, "jobtracepolicy", name, "-o", "json"])
            .output()
            .unwrap();
        let policy: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let status = policy["status"].clone();
        let ready = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready && status["tracedJobs"].as_i64() >= Some(1) {
            Ok(status)
        } else {
            Err(status.to_string())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_of_a_cronjob_is_a_trace_of_its_own_linked_to_its_context() {
    let ns = TestNamespace::create("cron").await;
    let _jobtrace = jobtrace(&ns).await;
    let template_trace = random_trace_id();
    let template_context = format!("00-{template_trace}-00f067aa0ba902b7-01");
    let cronjob = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": { "name": "nightly" },
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {
                "metadata": { "annotations": { "traceparent": template_context } },
                "spec": { "backoffLimit": 0, "template": {
                    "metadata": { "annotations": { "sim.jobtrace.dev/run-for": "500ms" } },
                    "spec": { "restartPolicy": "Never", "containers": [{ "name": "main", "image": "example.invalid/main" }] }
                } }
            }
        }
    });
    let (ok, out) = kubectl_apply(&ns, &cronjob);
    assert!(ok, "{out}");
    for run in ["run-1", "run-2"] {
        let out = kubectl()
            .args([
                "create",
                "job",
                "-n",
                &ns.name,
                run,
                "--from=cronjob/nightly",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let runs = all_exported(&ns, 2).await;
    let traces: Vec<String> = runs
        .iter()
        .map(|j| {
            let a = j.metadata.annotations.as_ref().unwrap();
            assert_eq!(a["jobtrace.dev/origin"], "cronjob-run");
            assert_eq!(a["jobtrace.dev/link"], template_context);
            a["jobtrace.dev/trace-id"].clone()
        })
        .collect();
    assert_ne!(traces[0], traces[1], "two runs, two traces");
    for trace_id in &traces {
        assert_ne!(trace_id, &template_trace);
        let trace = fetch_trace(trace_id, 2).await;
        let job_span = named(&trace, "job ")[0];
        let tags = job_span["tags"].as_array().unwrap();
        assert!(
            tags.iter()
                .any(|t| t["key"] == "k8s.cronjob.name" && t["value"] == "nightly")
        );
        let references = job_span["references"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            references
                .iter()
                .any(|r| r["refType"] == "FOLLOWS_FROM" && r["traceID"] == template_trace),
            "{references:?}"
        );
    }
    // The template's own trace gets nothing: it is not one trace that grows with every run.
    let response = reqwest::get(format!("{JAEGER_QUERY}/api/traces/{template_trace}"))
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    let jobs: Api<Job> = ns.api();
    let _ = jobs.delete("run-1", &DeleteParams::background()).await;
}
