//! A hostile tenant's Jobs through the real apiserver and the `jobtrace webhook` binary: the Job
//! is created, kubectl prints a bounded list of warnings, and the webhook answers in time; a Job
//! carrying another Job's stamp gets ids of its own. (What the apiserver would refuse anyway, such
//! as a million empty volumes, is covered in process: tests/hostile.rs.)

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use crate::webhook::kubectl_create;
use jobtrace_testkit::cluster::TestNamespace;
use jobtrace_testkit::fixtures::TP;
use jobtrace_testkit::process::{Webhook, job};

fn warning_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("Warning:"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baggage_of_125000_malformed_members_is_created_traced_with_a_few_warnings() {
    let ns = TestNamespace::create("hostile-baggage").await;
    let _webhook = Webhook::start(&ns).await;
    let baggage = vec!["x"; 125_000].join(",");
    let stderr = kubectl_create(
        &ns,
        &job(
            "fat-baggage",
            &json!({ "traceparent": TP, "baggage": baggage }),
            false,
        ),
    );
    let warnings = warning_lines(&stderr);
    assert!(
        (2..=16).contains(&warnings.len()),
        "{} warnings: {:?}",
        warnings.len(),
        &warnings[..warnings.len().min(3)]
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("124992 more malformed members")),
        "{warnings:?}"
    );
    let created = Api::<Job>::namespaced(ns.client.clone(), &ns.name)
        .get("fat-baggage")
        .await
        .unwrap();
    let annotations = created.metadata.annotations.unwrap();
    assert!(
        annotations.contains_key("jobtrace.dev/span-id"),
        "still traced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_containers_setting_their_own_context_get_sixteen_warning_lines() {
    let ns = TestNamespace::create("hostile-containers").await;
    let _webhook = Webhook::start(&ns).await;
    let mut object =
        serde_json::to_value(job("many", &json!({ "traceparent": TP }), false)).unwrap();
    object["spec"]["template"]["spec"]["initContainers"] = json!([]);
    object["spec"]["template"]["spec"]["containers"] = json!(
        (0..100)
            .map(|i| json!({
                "name": format!("c{i}"),
                "image": "example.invalid/c",
                "env": [{ "name": "TRACEPARENT", "value": "mine" }]
            }))
            .collect::<Vec<_>>()
    );
    let stderr = kubectl_create(&ns, &serde_json::from_value(object).unwrap());
    let warnings = warning_lines(&stderr);
    assert_eq!(warnings.len(), 16, "{warnings:?}");
    assert!(
        warnings[15].contains("85 more warnings not shown (85 env_user_set)"),
        "{warnings:?}"
    );
}

/// The annotations of jobtrace's domain on a Job.
fn jobtraces(job: &Job) -> BTreeMap<String, String> {
    job.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(key, _)| key.starts_with("jobtrace.dev/"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// The newest of a created object's `managedFields` times: when the apiserver began its create
/// request (to the second), before admission.
fn request_time(job: &Job) -> Timestamp {
    job.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|entry| entry.time.as_ref())
        .map(|time| time.0)
        .max()
        .expect("the apiserver's managedFields")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_carrying_another_jobs_stamp_gets_new_ids() {
    let owner = TestNamespace::create("stamp-owner").await;
    let tenant = TestNamespace::create("stamp-tenant").await;
    let _webhook = Webhook::start_for(&owner, &[&tenant]).await;
    let (original, copied) = 'attempts: {
        // Within the second the original is stamped, its stamp passes every check but the tag:
        // start just after a second begins, so that the copy lands in the same one.
        for attempt in 0..5 {
            let into_second = Timestamp::now().subsec_nanosecond();
            tokio::time::sleep(Duration::from_nanos(
                u64::try_from(1_050_000_000 - into_second).unwrap_or(0),
            ))
            .await;
            let name = format!("nightly-{attempt}");
            let original = owner
                .api::<Job>()
                .create(
                    &PostParams::default(),
                    &job(&name, &json!({ "traceparent": TP }), false),
                )
                .await
                .unwrap();
            let mut annotations = jobtraces(&original);
            annotations.insert("traceparent".to_owned(), TP.to_owned());
            let copy = job(&name, &json!(annotations), false);
            let copied = tenant
                .api::<Job>()
                .create(&PostParams::default(), &copy)
                .await
                .unwrap();
            let stamp: Timestamp = jobtraces(&original)["jobtrace.dev/admitted-at"]
                .parse()
                .unwrap();
            if request_time(&copied) <= stamp {
                break 'attempts (original, copied);
            }
            eprintln!("attempt {attempt}: the copy's request began after the second of the stamp");
        }
        panic!("no copy was created within the second of the original's admission");
    };
    let (original, copied) = (jobtraces(&original), jobtraces(&copied));
    assert_eq!(
        original["jobtrace.dev/admission-tag"].len(),
        43,
        "{original:?}"
    );
    assert_eq!(
        copied["jobtrace.dev/trace-id"],
        original["jobtrace.dev/trace-id"]
    );
    assert_ne!(
        copied["jobtrace.dev/span-id"], original["jobtrace.dev/span-id"],
        "the stamp and tag of a Job of another namespace: a span id of its own"
    );
    assert_ne!(
        copied["jobtrace.dev/admitted-at"],
        original["jobtrace.dev/admitted-at"]
    );
    assert_ne!(
        copied["jobtrace.dev/admission-tag"],
        original["jobtrace.dev/admission-tag"]
    );

    // A stamp forged two seconds ahead (within the clock skew allowed) next to the copied tag:
    // fresh whenever it arrives.
    let mut annotations = original.clone();
    let ahead = Timestamp::now() + SignedDuration::from_secs(2);
    annotations.insert("jobtrace.dev/admitted-at".to_owned(), ahead.to_string());
    annotations.insert("traceparent".to_owned(), TP.to_owned());
    let forged = job("forged", &json!(annotations), false);
    let forged = jobtraces(
        &tenant
            .api::<Job>()
            .create(&PostParams::default(), &forged)
            .await
            .unwrap(),
    );
    assert_ne!(
        forged["jobtrace.dev/span-id"], original["jobtrace.dev/span-id"],
        "a forged stamp: a span id of its own"
    );
    assert_ne!(forged["jobtrace.dev/admitted-at"], ahead.to_string());
}
