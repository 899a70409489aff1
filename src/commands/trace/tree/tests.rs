use serde_json::{Value, json};

use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A span of the query API's JSON, a child of `parent` in [`TRACE`] when there is one.
fn span(
    id: &str,
    name: &str,
    parent: Option<&str>,
    start: u64,
    duration: u64,
    tags: &Value,
) -> Value {
    let references: Vec<Value> = parent
        .map(|p| json!({ "refType": "CHILD_OF", "traceID": TRACE, "spanID": p }))
        .into_iter()
        .collect();
    json!({
        "traceID": TRACE, "spanID": id, "operationName": name, "references": references,
        "startTime": start, "duration": duration, "tags": tags,
        "processID": if name.starts_with("job ") || name.starts_with("pod ") { "p1" } else { "p2" },
    })
}

fn answer(spans: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "data": [{
            "traceID": TRACE, "spans": spans,
            "processes": { "p1": { "serviceName": "jobtrace" }, "p2": { "serviceName": "report-task" } },
        }],
        "total": 0, "limit": 0, "offset": 0, "errors": null,
    }))
    .unwrap()
}

fn rendered(spans: &[Value]) -> String {
    render(&parse(&answer(spans), TRACE).unwrap().unwrap())
}

#[test]
fn recorded_answer_is_the_demo_tree() {
    // What Jaeger answered for the end-to-end tree test's trace: the creator, the Job, a failed
    // attempt and its retry, and the task's span in each (the answer lists them out of order).
    let body = include_bytes!("../../../../tests/data/recorded/jaeger-trace-retried.json");
    let trace = parse(body, "06bf102ada89d54ad92632045f417f65")
        .unwrap()
        .unwrap();
    assert_eq!(
        render(&trace),
        "\
POST /reports [e2e-creator] 12637 ms
└── job e2e-tree-nd5q8/report [jobtrace] 12607 ms
    ├── pod report-hhfkm [jobtrace] 599 ms ERROR error.type=\"Error\" jobtrace.container.exit_code=1 k8s.container.status.reason=\"Error\"
    │   └── generate-report [report-task] 1202 ms ERROR
    └── pod report-96kz5 [jobtrace] 997 ms
        └── generate-report [report-task] 1202 ms
"
    );
    assert!(trace.has_span(Some("1c44cba95fed4086"), "job e2e-tree-nd5q8/report"));
    assert!(trace.has_span(None, "job e2e-tree-nd5q8/report"));
    assert!(!trace.has_span(Some("0000000000000001"), "job e2e-tree-nd5q8/other"));
}

#[test]
fn children_in_start_order_with_the_tree_characters() {
    let job = "a000000000000001";
    let spans = [
        span(
            "b000000000000003",
            "pod r-3",
            Some(job),
            300,
            1_000,
            &json!([]),
        ),
        span(
            "c000000000000001",
            "step",
            Some("b000000000000001"),
            110,
            2_000,
            &json!([]),
        ),
        span(job, "job ns/r", None, 0, 400_000, &json!([])),
        span(
            "b000000000000001",
            "pod r-1",
            Some(job),
            100,
            1_000,
            &json!([]),
        ),
        span(
            "c000000000000002",
            "upload",
            Some("b000000000000001"),
            120,
            3_000,
            &json!([]),
        ),
        span(
            "b000000000000002",
            "pod r-2",
            Some(job),
            200,
            1_000,
            &json!([]),
        ),
        span(
            "c000000000000003",
            "step",
            Some("b000000000000003"),
            310,
            2_000,
            &json!([]),
        ),
    ];
    assert_eq!(
        rendered(&spans),
        "\
job ns/r [jobtrace] 400 ms
├── pod r-1 [jobtrace] 1 ms
│   ├── step [report-task] 2 ms
│   └── upload [report-task] 3 ms
├── pod r-2 [jobtrace] 1 ms
└── pod r-3 [jobtrace] 1 ms
    └── step [report-task] 2 ms
"
    );
}

#[test]
fn durations_are_rounded_milliseconds() {
    for (micros, shown) in [
        (0, "0 ms"),
        (499, "0 ms"),
        (500, "1 ms"),
        (1_499, "1 ms"),
        (13_000_000, "13000 ms"),
    ] {
        let line = rendered(&[span(
            "a000000000000001",
            "job ns/r",
            None,
            0,
            micros,
            &json!([]),
        )]);
        assert_eq!(
            line,
            format!("job ns/r [jobtrace] {shown}\n"),
            "{micros} µs"
        );
    }
}

#[test]
fn error_status_and_the_attributes_that_matter_in_order() {
    let tags = json!([
        { "key": "k8s.pod.status.reason", "type": "string", "value": "Evicted" },
        { "key": "k8s.node.name", "type": "string", "value": "node-1" },
        { "key": "otel.status_code", "type": "string", "value": "ERROR" },
        { "key": "error.type", "type": "string", "value": "Evicted" },
        { "key": "k8s.container.status.reason", "type": "string", "value": "OOMKilled" },
        { "key": "jobtrace.container.exit_code", "type": "int64", "value": 137 },
    ]);
    assert_eq!(
        rendered(&[span(
            "a000000000000001",
            "pod r-1",
            None,
            0,
            2_000_000,
            &tags,
        )]),
        "pod r-1 [jobtrace] 2000 ms ERROR error.type=\"Evicted\" jobtrace.container.exit_code=137 \
         k8s.container.status.reason=\"OOMKilled\" k8s.pod.status.reason=\"Evicted\"\n"
    );
    // Instrumentations other than OpenTelemetry's mark an error with the `error` tag only.
    let legacy = json!([{ "key": "error", "type": "bool", "value": true }]);
    assert_eq!(
        rendered(&[span("a000000000000001", "task", None, 0, 1_000, &legacy)]),
        "task [report-task] 1 ms ERROR\n"
    );
    // OK and UNSET spans have no mark; attributes are shown whatever the status.
    let ok = json!([
        { "key": "otel.status_code", "type": "string", "value": "OK" },
        { "key": "error", "type": "bool", "value": false },
        { "key": "jobtrace.container.exit_code", "type": "int64", "value": 0 },
    ]);
    assert_eq!(
        rendered(&[span("a000000000000001", "pod r-1", None, 0, 1_000, &ok)]),
        "pod r-1 [jobtrace] 1 ms jobtrace.container.exit_code=0\n"
    );
}

#[test]
fn a_span_whose_parent_is_not_in_the_trace_is_a_root() {
    // The creator's span was never exported: the Job span is a root, and so is another span of
    // the trace whose parent is missing; roots are in start order too.
    let spans = [
        span(
            "b000000000000001",
            "pod r-1",
            Some("a000000000000001"),
            100,
            1_000,
            &json!([]),
        ),
        span(
            "d000000000000001",
            "POST /retry",
            Some("ffffffffffffffff"),
            5,
            3_000,
            &json!([]),
        ),
        span(
            "a000000000000001",
            "job ns/r",
            Some("00f067aa0ba902b7"),
            10,
            9_000,
            &json!([]),
        ),
    ];
    assert_eq!(
        rendered(&spans),
        "\
POST /retry [report-task] 3 ms
job ns/r [jobtrace] 9 ms
└── pod r-1 [jobtrace] 1 ms
"
    );
}

#[test]
fn a_linked_span_says_which_trace_it_is_linked_from() {
    let creator = "0af7651916cd43dd8448eb211c80319c";
    let link =
        json!({ "refType": "FOLLOWS_FROM", "traceID": creator, "spanID": "b7ad6b7169203331" });
    let mut job = span(
        "a000000000000001",
        "job ns/r-28472",
        None,
        0,
        13_000_000,
        &json!([]),
    );
    job["references"] = json!([link]);
    let pod = span(
        "b000000000000001",
        "pod r-28472-x",
        Some("a000000000000001"),
        1,
        1_000_000,
        &json!([]),
    );
    assert_eq!(
        rendered(&[job.clone(), pod.clone()]),
        format!(
            "\
job ns/r-28472 [jobtrace] 13000 ms
│ ↪ linked from trace {creator}
└── pod r-28472-x [jobtrace] 1000 ms
"
        )
    );
    // Without children, and under a parent: the line stays in the span's column.
    let mut linked_pod = pod;
    linked_pod["references"].as_array_mut().unwrap().push(link);
    let other = span(
        "b000000000000002",
        "pod r-28472-y",
        Some("a000000000000001"),
        2,
        1_000_000,
        &json!([]),
    );
    job["references"] = json!([]);
    assert_eq!(
        rendered(&[job, linked_pod, other]),
        format!(
            "\
job ns/r-28472 [jobtrace] 13000 ms
├── pod r-28472-x [jobtrace] 1000 ms
│     ↪ linked from trace {creator}
└── pod r-28472-y [jobtrace] 1000 ms
"
        )
    );
}

#[test]
fn a_span_exported_twice_is_shown_once_and_a_parent_cycle_ends() {
    let job = span("a000000000000001", "job ns/r", None, 0, 9_000, &json!([]));
    let pod = span(
        "b000000000000001",
        "pod r-1",
        Some("a000000000000001"),
        1,
        1_000,
        &json!([]),
    );
    assert_eq!(
        rendered(&[job.clone(), pod.clone(), job, pod]),
        "job ns/r [jobtrace] 9 ms\n└── pod r-1 [jobtrace] 1 ms\n"
    );
    // Malformed: each the other's parent. Both are shown, the earliest as the root.
    let a = span(
        "a000000000000001",
        "a",
        Some("b000000000000001"),
        0,
        1_000,
        &json!([]),
    );
    let b = span(
        "b000000000000001",
        "b",
        Some("a000000000000001"),
        1,
        1_000,
        &json!([]),
    );
    assert_eq!(
        rendered(&[b, a]),
        "a [report-task] 1 ms\n└── b [report-task] 1 ms\n"
    );
}

#[test]
fn unknown_names_and_services_are_question_marks() {
    let mut unnamed = span("a000000000000001", "", None, 0, 1_000, &json!([]));
    unnamed["processID"] = json!("p9");
    assert_eq!(rendered(&[unnamed]), "? [?] 1 ms\n");
}

#[test]
fn answers_without_the_trace() {
    let not_found = br#"{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":404,"msg":"trace not found"}]}"#;
    assert!(parse(not_found, TRACE).unwrap().is_none());
    assert!(parse(br#"{"data":[]}"#, TRACE).unwrap().is_none());
    assert!(
        parse(br#"{"data":[{"traceID":"x","spans":[]}]}"#, TRACE)
            .unwrap()
            .is_none()
    );
    assert!(parse(b"<html>", TRACE).is_err());
    // More than one trace: the one asked for.
    let two = json!({ "data": [
        { "traceID": "0af7651916cd43dd8448eb211c80319c", "spans": [span("a000000000000001", "other", None, 0, 1, &json!([]))] },
        { "traceID": TRACE, "spans": [span("a000000000000002", "mine", None, 0, 1, &json!([]))] },
    ] });
    let trace = parse(&serde_json::to_vec(&two).unwrap(), TRACE)
        .unwrap()
        .unwrap();
    assert_eq!(trace.spans[0].operation_name, "mine");
}

#[test]
fn what_a_span_holds_draws_no_line_and_sends_no_control_sequence() {
    // Any program that can export a span to the collector chooses all of this.
    let fake = "\n└── pod fake [jobtrace] 1 ms";
    let tags = json!([
        { "key": "error.type", "type": "string", "value": format!("Error\"{fake}\u{1b}[2J") },
        { "key": "k8s.pod.status.reason", "type": "string", "value": "\u{1b}]52;c;ZWNobyBvd25lZA==\u{7}" },
    ]);
    let mut job = span(
        "a000000000000001",
        &format!("job ns/r{fake}"),
        None,
        0,
        9_000,
        &json!([]),
    );
    job["references"] = json!([{ "refType": "FOLLOWS_FROM", "traceID": format!("0af7{fake}"), "spanID": "b7ad6b7169203331" }]);
    let pod = span(
        "b000000000000001",
        "pod r-1\r\u{1b}[1A\u{202e}\u{200b}\u{2028}",
        Some("a000000000000001"),
        1,
        1_000,
        &tags,
    );
    let mut task = span(
        "c000000000000001",
        "task",
        Some("b000000000000001"),
        2,
        1_000,
        &json!([]),
    );
    task["processID"] = json!("p3");
    let body = serde_json::to_vec(&json!({ "data": [{
        "traceID": TRACE, "spans": [job, pod, task],
        "processes": { "p1": { "serviceName": "jobtrace" }, "p3": { "serviceName": format!("svc{fake}\u{9b}2J") } },
    }] }))
    .unwrap();
    let out = render(&parse(&body, TRACE).unwrap().unwrap());
    assert_eq!(
        out.lines().count(),
        3 + 1,
        "a line per span and one for the link:\n{out}"
    );
    assert!(
        !out.chars()
            .any(|c| c != '\n' && (c.is_control() || ('\u{2000}'..='\u{206f}').contains(&c))),
        "{out:?}"
    );
    assert_eq!(
        out,
        "\
job ns/r\\n└── pod fake [jobtrace] 1 ms [jobtrace] 9 ms
│ ↪ linked from trace 0af7\\n└── pod fake [jobtrace] 1 ms
└── pod r-1\\r\\u{1b}[1A\\u{202e}\\u{200b}\\u{2028} [jobtrace] 1 ms error.type=\"Error\\\"\\n└── pod fake [jobtrace] 1 ms\\u{1b}[2J\" k8s.pod.status.reason=\"\\u{1b}]52;c;ZWNobyBvd25lZA==\\u{7}\"
    └── task [svc\\n└── pod fake [jobtrace] 1 ms\\u{9b}2J] 1 ms
"
    );
}

#[test]
fn a_span_named_to_fake_tree_lines_is_one_line() {
    let spans = [
        span("a000000000000001", "job ns/r", None, 0, 9_000, &json!([])),
        span(
            "b000000000000001",
            "pod r-1\n└── fake",
            Some("a000000000000001"),
            1,
            1_000,
            &json!([]),
        ),
    ];
    let out = rendered(&spans);
    assert_eq!(out.lines().count(), spans.len(), "{out}");
    assert_eq!(
        out,
        "job ns/r [jobtrace] 9 ms\n└── pod r-1\\n└── fake [jobtrace] 1 ms\n"
    );
}
