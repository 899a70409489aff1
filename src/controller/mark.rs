//! Marking: each exported object gets `jobtrace.dev/exported` through a JSON patch that first
//! tests its uid, and each exported Job a `TraceExported` Event.

use std::collections::HashSet;
use std::sync::Mutex;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource};
use serde_json::json;

use super::{Context, ObjectKind, Work};
use crate::names::Exported;

/// Marks exported objects, records an Event on each Job, and forgets them.
pub(super) async fn finish(
    context: &Context,
    recorder: &Recorder,
    batch: Vec<Work>,
    outcome: Exported,
    pending: &Mutex<HashSet<String>>,
) {
    let now = Timestamp::now();
    futures::stream::iter(batch)
        .for_each_concurrent(16, |w| async move {
            let lag = (now - w.finished).total(k8s_openapi::jiff::Unit::Second).unwrap_or(0.0);
            context.metrics.export_lag.observe(lag.max(0.0));
            if !w.deleted {
                if let Err(e) = mark(context, &w, outcome).await {
                    tracing::warn!(error = %e, object = %w.name, "could not mark as exported; its spans may be exported again");
                }
                if w.kind == ObjectKind::Job && outcome == Exported::Accepted {
                    publish(recorder, &w).await;
                }
            }
            pending.lock().expect("not poisoned").remove(&w.uid);
            context.metrics.controller_pending.dec();
        })
        .await;
}

/// A JSON patch that only applies to the very object exported (same uid).
async fn mark(context: &Context, w: &Work, outcome: Exported) -> Result<(), kube::Error> {
    let patch: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": "/metadata/uid", "value": w.uid },
        { "op": "add", "path": "/metadata/annotations/jobtrace.dev~1exported", "value": outcome.label() },
    ]))
    .expect("a valid patch");
    let result = match w.kind {
        ObjectKind::Job => apply_patch::<Job>(context, w, patch).await,
        ObjectKind::Pod => apply_patch::<Pod>(context, w, patch).await,
    };
    match result {
        // Gone, or replaced by another object of the same name: nothing to mark.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => Ok(()),
        other => other,
    }
}

async fn apply_patch<K>(
    context: &Context,
    w: &Work,
    patch: json_patch::Patch,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(context.client.clone(), &w.namespace)
        .patch(&w.name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map(drop)
}

async fn publish(recorder: &Recorder, w: &Work) {
    let trace_id = w
        .spans
        .first()
        .map(|s| s.trace_id.to_string())
        .unwrap_or_default();
    let job = Job {
        metadata: kube::api::ObjectMeta {
            name: Some(w.name.clone()),
            namespace: Some(w.namespace.clone()),
            uid: Some(w.uid.clone()),
            ..Default::default()
        },
        ..Job::default()
    };
    let event = Event {
        type_: EventType::Normal,
        reason: "TraceExported".to_owned(),
        note: Some(format!("trace {trace_id}: Job span exported")),
        action: "ExportSpan".to_owned(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &job.object_ref(&())).await {
        tracing::debug!(error = %e, job = %w.name, "could not record the event");
    }
}
