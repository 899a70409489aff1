//! Any bytes posted to either endpoint, with the same bytes as the request's trace context
//! headers and those read (`requestContext`): the handler answers or errors, never panics, and
//! what it answers is an allowed AdmissionReview.
#![no_main]

use jobtrace::core::context::{RequestContext, SpanId, TraceId};
use jobtrace::core::policy::TraceSettings;
use jobtrace::k8s::policy::Policies;
use jobtrace::k8s::webhook::review::{AdmissionEndpoint, Fresh, review};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fresh = Fresh {
        span: SpanId::from_random([1; 8]),
        trace: TraceId::from_random([1; 16]),
        now: "2026-11-23T10:00:00Z".parse().unwrap(),
    };
    let policies = Policies::defaults_only(TraceSettings {
        request_context: true,
        ..TraceSettings::default()
    });
    let header = String::from_utf8_lossy(data).into_owned();
    let request = RequestContext {
        traceparent: vec![header.clone()],
        tracestate: vec![header.clone()],
        baggage: vec![header],
    };
    for endpoint in [AdmissionEndpoint::Jobs, AdmissionEndpoint::Pods] {
        if let Ok(reviewed) = review(endpoint, data, fresh, &request, &policies) {
            let body: serde_json::Value = serde_json::from_slice(&reviewed.body).unwrap();
            assert_eq!(body["response"]["allowed"], true);
        }
    }
});
