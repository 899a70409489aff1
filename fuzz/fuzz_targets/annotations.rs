//! Any annotation values on a Job: the mutation never panics, its patch applies, and a second pass
//! is empty.
#![no_main]

use jobtrace::core::context::SpanId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|values: (String, String, String, String)| {
    let (traceparent, tracestate, baggage, env) = values;
    let object = serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": "j", "annotations": {
            "traceparent": traceparent, "tracestate": tracestate, "baggage": baggage,
            "jobtrace.dev/traceparent": format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", env.get(..16).unwrap_or("00f067aa0ba902b7")),
        } },
        "spec": { "template": { "spec": { "containers": [
            { "name": "c", "image": "i", "env": [{ "name": "OTEL_RESOURCE_ATTRIBUTES", "value": env }] }
        ] } } }
    });
    let job = serde_json::from_value(object.clone()).unwrap();
    let keys = jobtrace::k8s::webhook::keys::keyring();
    let admission = |span| jobtrace::core::mutate::Admission {
        namespace: "ns",
        new_span: SpanId::from_random(span),
        new_trace: jobtrace::core::context::TraceId::from_random([3; 16]),
        now: "2026-11-23T10:00:00Z".parse().unwrap(),
        request: jobtrace::core::context::RequestContext::none(),
        keys: &keys,
    };
    let settings = jobtrace::core::policy::resolve(
        &jobtrace::core::policy::TraceSettings::default(),
        [],
        &std::collections::BTreeMap::new(),
    );
    let first = jobtrace::core::mutate::job::mutate(&job, &admission([1; 8]), &settings);
    let mut patched = object;
    json_patch_apply(&mut patched, &first.patch);
    let job = serde_json::from_value(patched).unwrap();
    let second = jobtrace::core::mutate::job::mutate(&job, &admission([2; 8]), &settings);
    assert!(second.patch.0.is_empty());
});

fn json_patch_apply(doc: &mut serde_json::Value, patch: &json_patch::Patch) {
    json_patch::patch(doc, patch).expect("the patch applies");
}
