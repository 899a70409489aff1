//! Properties that hold for any input: the parsers never panic and what they keep is valid, and
//! the mutations produce patches that apply and are idempotent.

use std::collections::BTreeMap;

use jobtrace::core::context::{RequestContext, SpanId, TraceId, baggage, traceparent, tracestate};
use jobtrace::core::mutate::tag::{Keyring, TagKey};
use jobtrace::core::mutate::{Admission, job, pod};
use jobtrace_testkit::fixtures::{TestJob, now, pod_of};
use proptest::prelude::*;
use serde_json::{Value, json};

/// An admission in namespace `reports` giving `span` to a new object, with a key of its own.
fn admission(span: SpanId) -> Admission<'static> {
    static KEYS: std::sync::LazyLock<Keyring> =
        std::sync::LazyLock::new(|| Keyring::new(TagKey::random()));
    Admission {
        namespace: "reports",
        new_span: span,
        new_trace: TraceId::from_random([0x5a; 16]),
        now: now(),
        request: RequestContext::none(),
        keys: &KEYS,
    }
}

fn hex(n: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(b"0123456789abcdef".to_vec()), n)
        .prop_map(|b| String::from_utf8(b).unwrap())
}

/// Annotation values: valid contexts, near misses and noise.
fn traceparent_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (hex(32), hex(16), hex(2)).prop_map(|(t, p, f)| format!("00-{t}-{p}-{f}")),
        (hex(2), hex(32), hex(16), hex(2), ".{0,8}")
            .prop_map(|(v, t, p, f, rest)| format!("{v}-{t}-{p}-{f}{rest}")),
        ".{0,80}",
    ]
}

fn list_value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec("[a-z0-9@_A][a-z0-9_*/@-]{0,6}=[ -+--<>-~]{0,8}", 0..40)
            .prop_map(|m| m.join(",")),
        ".{0,200}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn traceparent_is_accepted_exactly_when_the_grammar_says_so(value in traceparent_value()) {
        let parsed = traceparent::parse(&value);
        prop_assert_eq!(parsed.is_ok(), traceparent_grammar(&value), "{:?}: {:?}", value, parsed);
        if let Ok(parsed) = parsed {
            let written = parsed.to_string();
            prop_assert_eq!(written.len(), 55);
            prop_assert_eq!(traceparent::parse(&written), Ok(parsed));
        }
    }

    #[test]
    fn tracestate_is_accepted_exactly_when_the_grammar_says_so(value in list_value()) {
        let parsed = tracestate::parse(&value);
        prop_assert_eq!(parsed.is_ok(), tracestate_grammar(&value), "{:?}: {:?}", value, parsed);
        if let Ok(mut parsed) = parsed {
            parsed.truncate(tracestate::MAX_LEN);
            let header = parsed.header();
            prop_assert!(header.len() <= tracestate::MAX_LEN);
            prop_assert_eq!(tracestate::parse(&header).map(|t| t.header()), Ok(header));
        }
    }

    #[test]
    fn baggage_keeps_exactly_the_members_the_grammar_allows(value in list_value()) {
        let (kept, problems) = baggage::parse(&value);
        let members: Vec<&str> = value
            .split(',')
            .map(|m| m.trim_matches([' ', '\t']))
            .filter(|m| !m.is_empty())
            .collect();
        let valid: Vec<&str> = members.iter().copied().filter(|m| baggage_member_grammar(m)).collect();
        prop_assert_eq!(kept.header(), valid.join(","));
        let dropped: usize = problems
            .iter()
            .map(|p| match p {
                baggage::BaggageProblem::MoreMalformed(n) => *n,
                _ => 1,
            })
            .sum();
        prop_assert_eq!(dropped, members.len() - valid.len(), "each dropped member counted once");
        prop_assert!(problems.len() <= baggage::MAX_DESCRIBED + 1, "a bounded list of problems");
    }

    #[test]
    fn baggage_keeps_a_valid_value_within_the_limits(value in list_value(), repeat in 1usize..300) {
        let value = vec![value; repeat].join(",");
        let (kept, _) = baggage::parse(&value);
        let header = kept.header();
        prop_assert!(header.len() <= baggage::MAX_BYTES);
        let (again, problems) = baggage::parse(&header);
        prop_assert!(problems.is_empty(), "{:?}", problems);
        prop_assert_eq!(again.header(), header);
    }

    #[test]
    fn job_mutation_applies_and_is_idempotent(
        annotations in proptest::collection::btree_map(
            prop_oneof![
                Just("traceparent".to_owned()),
                Just("jobtrace.dev/traceparent".to_owned()),
                Just("tracing.k8s.io/traceparent".to_owned()),
                Just("tracestate".to_owned()),
                Just("baggage".to_owned()),
                Just("jobtrace.dev/span-id".to_owned()),
                "[a-z]{1,5}",
            ],
            prop_oneof![traceparent_value(), list_value()],
            0..6,
        ),
        containers in proptest::collection::vec(
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("TRACEPARENT"), Just("BAGGAGE"), Just("OTEL_RESOURCE_ATTRIBUTES"),
                        Just("JOBTRACE_POD_NAME"), Just("OTHER"),
                    ],
                    proptest::option::of(".{0,30}"),
                ),
                0..4,
            ),
            1..4,
        ),
        span in any::<[u8; 8]>(),
        settings in settings(),
        cron_run in any::<bool>(),
    ) {
        let mut object = job_object(&annotations, &containers);
        if cron_run {
            object["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "u", "controller": true
            }]);
        }
        let resolution = jobtrace::core::policy::resolve(&settings, [], &BTreeMap::new());
        let first = job::mutate(&serde_json::from_value(object.clone()).unwrap(), &admission(SpanId::from_random(span)), &resolution);
        let mut patched = object;
        json_patch::patch(&mut patched, &first.patch).expect("the patch applies");
        let typed = serde_json::from_value(patched.clone()).expect("the result is a Job");
        let second = job::mutate(&typed, &admission(SpanId::from_random([9; 8])), &resolution);
        prop_assert!(second.patch.0.is_empty(), "second pass: {:?}", second.patch);

        // The pod the job controller would make from it is idempotent too.
        let pod_object = pod_of(&patched);
        let pod_first = pod::mutate(&serde_json::from_value(pod_object.clone()).unwrap(), &admission(SpanId::from_random([7; 8])));
        let mut pod_patched = pod_object;
        json_patch::patch(&mut pod_patched, &pod_first.patch).expect("the pod patch applies");
        let pod_second = pod::mutate(&serde_json::from_value(pod_patched).unwrap(), &admission(SpanId::from_random([8; 8])));
        prop_assert!(pod_second.patch.0.is_empty());
    }
}

/// W3C Trace Context `traceparent`, written from the specification as regular expressions: version
/// 00 exactly, a later version with any ASCII (the header's alphabet) after a `-`; never version
/// ff, never zero ids.
fn traceparent_grammar(value: &str) -> bool {
    let v00 = regex::Regex::new(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$").unwrap();
    let later =
        regex::Regex::new(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[\x00-\x7f]*)?$")
            .unwrap();
    let shape = if value.starts_with("00") {
        v00.is_match(value)
    } else {
        later.is_match(value)
    };
    shape
        && !value.starts_with("ff")
        && value[3..35] != "0".repeat(32)
        && value[36..52] != "0".repeat(16)
}

/// W3C Trace Context Level 2 `tracestate`: at most 32 members, each `key=value`.
fn tracestate_grammar(value: &str) -> bool {
    let member = regex::Regex::new(
        r"^[a-z0-9][a-z0-9_\-*/@]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$",
    )
    .unwrap();
    let members: Vec<&str> = value
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
        .collect();
    members.len() <= 32 && members.iter().all(|m| member.is_match(m))
}

/// W3C Baggage `list-member`: `key OWS "=" OWS value *( OWS ";" OWS property )`.
fn baggage_member_grammar(member: &str) -> bool {
    let token = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+";
    let octets = r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*";
    let ows = r"[ \t]*";
    let property = format!("{token}{ows}(={ows}{octets})?");
    let pattern = format!("^{token}{ows}={ows}{octets}({ows};{ows}{property})*$");
    regex::Regex::new(&pattern).unwrap().is_match(member)
}

/// Any cluster-wide settings.
fn settings() -> impl Strategy<Value = jobtrace::core::policy::TraceSettings> {
    use jobtrace::core::policy::{CronJobMode, KeyFilter, Relationship, TraceSettings};
    (
        proptest::option::of(0.0f64..=1.0),
        any::<bool>(),
        prop_oneof![
            Just(CronJobMode::NewTracePerRun),
            Just(CronJobMode::Child),
            Just(CronJobMode::Off)
        ],
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(proptest::collection::vec(
            prop_oneof![Just("c0".to_owned()), Just("c1".to_owned())],
            0..2,
        )),
    )
        .prop_map(
            |(root_traces, link, cron_jobs, pod_spans, resource_attributes, include)| {
                TraceSettings {
                    root_traces,
                    relationship: if link {
                        Relationship::Link
                    } else {
                        Relationship::Child
                    },
                    cron_jobs,
                    baggage: KeyFilter::excluding(["k"]),
                    containers: include.map_or_else(KeyFilter::default, KeyFilter::including),
                    pod_spans,
                    resource_attributes,
                    job_labels: vec!["team".into()],
                    request_context: link,
                    hold_for_export: pod_spans,
                    hold_pods: link,
                }
            },
        )
}

fn job_object(
    annotations: &BTreeMap<String, String>,
    containers: &[Vec<(&str, Option<String>)>],
) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .enumerate()
        .map(|(i, env)| {
            let mut container = json!({ "name": format!("c{i}"), "image": "i" });
            if !env.is_empty() {
                let mut seen = std::collections::HashSet::new();
                let env: Vec<Value> = env
                    .iter()
                    .filter(|(name, _)| seen.insert(*name))
                    .map(|(name, value)| match value {
                        Some(v) => json!({ "name": name, "value": v }),
                        None => json!({ "name": name, "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }),
                    })
                    .collect();
                container["env"] = json!(env);
            }
            container
        })
        .collect();
    TestJob::new()
        .named("j")
        .annotations(&json!(annotations))
        .without_init_containers()
        .containers(json!(containers))
        .json()
}
