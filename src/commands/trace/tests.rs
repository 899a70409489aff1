use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn job(annotations: &serde_json::Value, condition: Option<&str>) -> Job {
    let conditions: Vec<_> = condition
        .map(|c| json!({ "type": c, "status": "True" }))
        .into_iter()
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": "nightly", "namespace": "demo", "annotations": annotations },
        "spec": { "template": { "spec": { "containers": [] } } },
        "status": { "conditions": conditions },
    }))
    .unwrap()
}

#[test]
fn a_traced_job_names_its_trace_and_span() {
    let finished = job(
        &json!({
            "jobtrace.dev/trace-id": TRACE,
            "jobtrace.dev/span-id": "00f067aa0ba902b7",
            "jobtrace.dev/trace-flags": "01",
            "jobtrace.dev/exported": "true",
        }),
        Some("Complete"),
    );
    assert_eq!(
        traced(&finished).unwrap(),
        TracedJob {
            trace_id: TRACE.to_owned(),
            span_id: Some("00f067aa0ba902b7".to_owned()),
            sampled: true,
            finished: true,
            exported: true,
        }
    );
    let running = traced(&job(&json!({ "jobtrace.dev/trace-id": TRACE }), None)).unwrap();
    assert!(running.sampled, "no flags: sampled");
    assert!(!running.finished && !running.exported && running.span_id.is_none());
    let failed = job(
        &json!({ "jobtrace.dev/trace-id": TRACE, "jobtrace.dev/trace-flags": "00" }),
        Some("Failed"),
    );
    let failed = traced(&failed).unwrap();
    assert!(failed.finished && !failed.sampled);
}

#[test]
fn an_untraced_job_says_why() {
    assert_eq!(
        traced(&job(&json!({ "traceparent": "x" }), Some("Complete"))).unwrap_err(),
        "it has no jobtrace.dev/trace-id annotation"
    );
    assert_eq!(
        traced(&job(&json!({ "jobtrace.dev/trace-id": "../../x" }), None)).unwrap_err(),
        "its jobtrace.dev/trace-id annotation \"../../x\" is not a trace id"
    );
    assert!(
        traced(&job(
            &json!({ "jobtrace.dev/trace-id": "0".repeat(32) }),
            None
        ))
        .is_err()
    );
}

#[test]
fn hints_for_a_missing_trace() {
    let mut job = TracedJob {
        trace_id: TRACE.to_owned(),
        span_id: None,
        sampled: false,
        finished: true,
        exported: false,
    };
    assert!(not_found_hint(&job).contains("not sampled"));
    job.sampled = true;
    job.finished = false;
    assert!(not_found_hint(&job).contains("has not finished"));
    job.finished = true;
    assert!(not_found_hint(&job).contains("not exported yet"));
    job.exported = true;
    assert!(not_found_hint(&job).contains("collector"));
}

#[derive(Debug, thiserror::Error)]
#[error("outer")]
struct Outer(#[source] std::io::Error);

#[test]
fn links_and_failures() {
    assert_eq!(
        trace_link("https://grafana.example/explore?traceId={trace_id}", TRACE),
        format!("https://grafana.example/explore?traceId={TRACE}")
    );
    assert_eq!(
        trace_link("http://127.0.0.1:16686/trace/{trace_id}", TRACE),
        format!("http://127.0.0.1:16686/trace/{TRACE}")
    );

    let failure = Failure::failed(
        "query API",
        &Outer(std::io::Error::other("connection\nrefused")),
    );
    assert_eq!(failure.to_string(), "query API: outer: connection refused");
    assert_eq!(failure.exit_code(), exit::FAILED);
    let codes = [
        Failure::JobNotFound {
            namespace: "a".into(),
            name: "b".into(),
        }
        .exit_code(),
        Failure::NotTraced {
            namespace: "a".into(),
            name: "b".into(),
            why: String::new(),
        }
        .exit_code(),
        Failure::TraceNotFound {
            namespace: "a".into(),
            name: "b".into(),
            trace_id: TRACE.into(),
            query: "http://127.0.0.1:16686".into(),
            hint: "",
        }
        .exit_code(),
    ];
    assert_eq!(codes, [3, 4, 5]);
}

#[test]
fn query_urls() {
    let api = QueryApi::new("http://127.0.0.1:16686/").unwrap();
    assert_eq!(
        api.trace_url(TRACE),
        format!("http://127.0.0.1:16686/api/traces/{TRACE}")
    );
    let prefixed = QueryApi::new("https://tracing.example/jaeger").unwrap();
    assert_eq!(
        prefixed.trace_url(TRACE),
        format!("https://tracing.example/jaeger/api/traces/{TRACE}")
    );
    for bad in ["127.0.0.1:16686", "ftp://x", "not a url", ""] {
        assert!(QueryApi::new(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_failure_is_one_line_without_control_characters() {
    let annotation = traced(&job(
        &json!({ "jobtrace.dev/trace-id": "\u{1b}]52;c;eA==\u{7}\n\u{202e}" }),
        None,
    ))
    .unwrap_err();
    let failure = Failure::NotTraced {
        namespace: "demo".into(),
        name: "nightly".into(),
        why: annotation,
    };
    assert_eq!(
        failure.to_string(),
        "Job demo/nightly is not traced: its jobtrace.dev/trace-id annotation \
         \"\\u{1b}]52;c;eA==\\u{7}\\n\\u{202e}\" is not a trace id"
    );
    // A query API's answer, quoted in the error.
    let failure = Failure::failed(
        "query API",
        &Outer(std::io::Error::other("HTTP 500: \u{1b}[2J\u{1b}[Hboom")),
    );
    assert_eq!(
        failure.to_string(),
        "query API: outer: HTTP 500: \\u{1b}[2J\\u{1b}[Hboom"
    );
}
