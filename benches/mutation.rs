//! The pure Job mutation on a typical Job (three containers, one init container), the whole
//! admission handler (parse, mutate, serialize) on the same Job, and the HTTP router with and
//! without jobtrace's own spans, side by side.

// Measured with the allocator the `jobtrace` binary ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use jobtrace_testkit::workload;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::BTreeMap;

use jobtrace::core::context::{RequestContext, SpanId, TraceId};
use jobtrace::core::policy::TraceSettings;
use jobtrace::k8s::policy::Policies;
use jobtrace::k8s::webhook::review::{AdmissionEndpoint, Fresh, review};

fn benches(c: &mut Criterion) {
    let job = serde_json::from_value(workload::typical_job("nightly-report")).unwrap();
    let now = k8s_openapi::jiff::Timestamp::now();
    let defaults = jobtrace::core::policy::resolve(&TraceSettings::default(), [], &BTreeMap::new());
    let policies = Policies::defaults_only(TraceSettings::default());
    let keys = jobtrace::k8s::webhook::keys::keyring();
    c.bench_function("mutate::job (3 containers + 1 init)", |b| {
        b.iter(|| {
            let admission = jobtrace::core::mutate::Admission {
                namespace: "reports",
                new_span: SpanId::from_random([7; 8]),
                new_trace: TraceId::from_random([7; 16]),
                now,
                request: jobtrace::core::context::RequestContext::none(),
                keys: &keys,
            };
            jobtrace::core::mutate::job::mutate(black_box(&job), &admission, &defaults)
        });
    });
    let body = workload::typical_review();
    c.bench_function("review (parse + mutate + respond)", |b| {
        b.iter(|| {
            let fresh = Fresh {
                span: SpanId::from_random([7; 8]),
                trace: TraceId::from_random([7; 16]),
                now,
            };
            review(
                AdmissionEndpoint::Jobs,
                black_box(&body),
                fresh,
                RequestContext::none(),
                &policies,
            )
            .unwrap()
        });
    });
}

/// The whole admission handler with the settings from no policy, from one policy in the Job's
/// namespace, and from 50 there among 500 in the cluster (one selects the Job): what resolving
/// the policies costs each admission, side by side.
fn with_policies(c: &mut Criterion) {
    let mut job = workload::typical_job("nightly-report");
    job["metadata"]["labels"] = serde_json::json!({ "team": "data", "app": "reports" });
    let body = jobtrace_testkit::fixtures::review("batch", "Job", "CREATE", &job)
        .to_string()
        .into_bytes();
    let now = k8s_openapi::jiff::Timestamp::now();
    let policy =
        |namespace: &str, name: String, team: &str| -> jobtrace::core::policy::JobTracePolicy {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "jobtrace.dev/v1alpha1", "kind": "JobTracePolicy",
                "metadata": { "name": name, "namespace": namespace },
                "spec": { "selector": { "matchLabels": { "team": team } }, "podSpans": true,
                          "baggage": { "exclude": ["user.email"] } }
            }))
            .unwrap()
        };
    let one = vec![policy("reports", "only".into(), "data")];
    let many: Vec<_> = (0..500)
        .map(|i| {
            let namespace = if i < 50 {
                "reports".to_owned()
            } else {
                format!("ns-{i}")
            };
            policy(
                &namespace,
                format!("p-{i:03}"),
                if i == 7 { "data" } else { "other" },
            )
        })
        .collect();
    let cases = [
        (
            "no policy",
            Policies::defaults_only(TraceSettings::default()),
        ),
        (
            "1 policy in the namespace",
            Policies::fixed(TraceSettings::default(), one),
        ),
        (
            "50 in the namespace, 500 in all",
            Policies::fixed(TraceSettings::default(), many),
        ),
    ];
    // What is measured is what is meant: the policy decides in the cases that have one.
    for (name, policies) in &cases {
        let fresh = Fresh {
            span: SpanId::from_random([7; 8]),
            trace: TraceId::from_random([7; 16]),
            now,
        };
        let reviewed = review(
            AdmissionEndpoint::Jobs,
            &body,
            fresh,
            RequestContext::none(),
            policies,
        )
        .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&reviewed.body).unwrap();
        let patch = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            answer["response"]["patch"].as_str().unwrap(),
        )
        .unwrap();
        let decided = String::from_utf8(patch)
            .unwrap()
            .contains("jobtrace.dev~1policy");
        assert_eq!(decided, *name != "no policy", "{name}");
    }
    let mut group = c.benchmark_group("review with policies");
    for (name, policies) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let fresh = Fresh {
                    span: SpanId::from_random([7; 8]),
                    trace: TraceId::from_random([7; 16]),
                    now,
                };
                review(
                    AdmissionEndpoint::Jobs,
                    black_box(&body),
                    fresh,
                    RequestContext::none(),
                    policies,
                )
                .unwrap()
            });
        });
    }
    group.finish();
}

/// One traced Job's admission in a namespace without policies, and with 1,000 policies as large
/// as the CRD allows (`fixtures::policy_at_limits`): one of them selecting the Job and 999 for
/// other teams; and, the worst case, all 1,000 selecting it (each selector matched in full, 999
/// names written as overridden). The Job carries the labels the selectors ask for, and the
/// policies include its containers and baggage keys, so every case traces it alike.
fn with_policies_at_limits(c: &mut Criterion) {
    use jobtrace_testkit::fixtures::{labels_at_limits, policy_at_limits, typed};
    let labels = labels_at_limits("chosen");
    let mut job = workload::typical_job("nightly-report");
    job["metadata"]["labels"] = serde_json::to_value(&labels).unwrap();
    let body = jobtrace_testkit::fixtures::review("batch", "Job", "CREATE", &job)
        .to_string()
        .into_bytes();
    let now = k8s_openapi::jiff::Timestamp::now();
    let include = ["fetch", "main", "side", "third", "tenant", "region"];
    let policies = |seed: &dyn Fn(usize) -> String| {
        let policies = (0..1000)
            .map(|i| {
                typed(&policy_at_limits(
                    "reports",
                    &format!("p-{i:04}"),
                    &seed(i),
                    &include,
                ))
            })
            .collect();
        Policies::fixed(TraceSettings::default(), policies)
    };
    let cases = [
        (
            "no policy",
            Policies::fixed(TraceSettings::default(), Vec::new()),
            None,
        ),
        (
            "1,000 at the limits, 1 selects the Job",
            policies(&|i| {
                if i == 500 {
                    "chosen".into()
                } else {
                    format!("team{i}")
                }
            }),
            Some(("p-0500", 0)),
        ),
        (
            "1,000 at the limits, all select the Job",
            policies(&|_| "chosen".into()),
            Some(("p-0000", 999)),
        ),
    ];
    let fresh = Fresh {
        span: SpanId::from_random([7; 8]),
        trace: TraceId::from_random([7; 16]),
        now,
    };
    // What is measured is what is meant: the Job is traced, by the policy expected.
    for (name, policies, decided) in &cases {
        let (resolution, _) = policies.resolve("reports", &labels);
        assert_eq!(
            resolution.policy.as_deref(),
            decided.map(|(policy, _)| policy),
            "{name}"
        );
        assert_eq!(
            resolution.overridden.len(),
            decided.map_or(0, |(_, losers)| losers),
            "{name}"
        );
        let reviewed = review(
            AdmissionEndpoint::Jobs,
            &body,
            fresh,
            RequestContext::none(),
            policies,
        )
        .unwrap();
        assert!(reviewed.traced.is_some(), "{name}");
    }
    let mut group = c.benchmark_group("review with policies at the limits");
    for (name, policies, _) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| {
                review(
                    AdmissionEndpoint::Jobs,
                    black_box(&body),
                    fresh,
                    RequestContext::none(),
                    policies,
                )
                .unwrap()
            });
        });
    }
    group.finish();
    // The part of it that depends on the policies: finding the one that decides.
    let mut group = c.benchmark_group("resolve with policies at the limits");
    for (name, policies, _) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| policies.resolve("reports", black_box(&labels)));
        });
    }
    group.finish();
}

/// One admission through the router (no TLS), without and with an own span for every admission.
fn router(c: &mut Criterion) {
    use std::sync::Arc;
    use tower::ServiceExt;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let body = workload::typical_review();
    let metrics = Arc::new(jobtrace::k8s::metrics::Metrics::default());
    let (tracer, mut spans) = jobtrace::k8s::selftrace::SelfTracer::new(1.0, metrics.clone());
    // The exporter's end, taking the own spans in batches as `selftrace::export` does (which
    // waits a second between batches; 10 ms here, so that the queue never fills and drops).
    runtime.spawn(async move {
        let mut batch = Vec::with_capacity(512);
        while spans.recv_many(&mut batch, 512).await > 0 {
            batch.clear();
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    let plain = jobtrace::k8s::webhook::router(metrics.clone());
    let with_spans = jobtrace::k8s::webhook::traced_router(
        metrics,
        Some(tracer),
        Policies::defaults_only(TraceSettings::default()),
    );
    let mut group = c.benchmark_group("router admission");
    for (name, router) in [
        ("own spans off", plain),
        ("own spans on (ratio 1)", with_spans),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let request = axum::http::Request::post("/mutate/jobs")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body.clone()))
                    .unwrap();
                let response = runtime.block_on(router.clone().oneshot(request)).unwrap();
                assert!(response.status().is_success());
            });
        });
    }
    group.finish();
}

/// The same Job's admission with its context in its annotations, and with none there but the
/// same context in the create request's headers (`requestContext` on): what reading the headers
/// costs, side by side.
fn by_context_source(c: &mut Criterion) {
    let annotated = workload::typical_review();
    let mut bare = workload::typical_job("nightly-report");
    bare["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    let bare = jobtrace_testkit::fixtures::review("batch", "Job", "CREATE", &bare)
        .to_string()
        .into_bytes();
    let headers = RequestContext {
        traceparent: vec![jobtrace_testkit::fixtures::TP.to_owned()],
        tracestate: vec!["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".to_owned()],
        baggage: vec!["tenant=acme,region=eu-west-1".to_owned()],
    };
    let policies = Policies::defaults_only(TraceSettings {
        request_context: true,
        ..TraceSettings::default()
    });
    let now = k8s_openapi::jiff::Timestamp::now();
    let fresh = Fresh {
        span: SpanId::from_random([7; 8]),
        trace: TraceId::from_random([7; 16]),
        now,
    };
    let cases = [
        ("annotations", &annotated, RequestContext::none()),
        ("request headers", &bare, &headers),
    ];
    // Both are traced, with the same context.
    for (name, body, request) in cases {
        let reviewed = review(AdmissionEndpoint::Jobs, body, fresh, request, &policies).unwrap();
        assert!(reviewed.traced.is_some(), "{name}");
    }
    let mut group = c.benchmark_group("review by context source");
    for (name, body, request) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                review(
                    AdmissionEndpoint::Jobs,
                    black_box(body),
                    fresh,
                    request,
                    &policies,
                )
                .unwrap()
            });
        });
    }
    group.finish();
}

criterion_group!(
    mutation,
    benches,
    with_policies,
    with_policies_at_limits,
    by_context_source,
    router
);
criterion_main!(mutation);
