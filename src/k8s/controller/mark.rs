//! Marking: each exported Job gets `jobtrace.dev/exported` through a JSON patch that first tests
//! its uid (its mark stands for its pods' spans too), and, when asked for, a `TraceExported`
//! Event. Pods are never marked; a held pod (`--hold-pods`) is released once its span is
//! exported, with its Job's or alone: one write per pod, the only one.

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource};

use super::{Deps, HeldPod, ObjectKind, Pending, Work};
use crate::core::names::{self, Exported};
use crate::core::patch;
use crate::core::slim::Slim;
use crate::k8s::release::{self, Released};

/// Marks exported Jobs, records an Event on each if `recorder` is given, and forgets the objects.
pub(super) async fn finish(
    deps: &Deps,
    recorder: Option<&Recorder>,
    batch: Vec<Work>,
    outcome: Exported,
    pending: &Pending,
) {
    let now = Timestamp::now();
    futures::stream::iter(batch)
        .for_each_concurrent(16, |w| async move {
            if !w.spans.is_empty() {
                let lag = (now - w.finished).total(k8s_openapi::jiff::Unit::Second).unwrap_or(0.0);
                deps.metrics.export_lag.observe(lag.max(0.0));
            }
            let mut done = true;
            if marked(&w) {
                if let Err(e) = mark(deps, &w, outcome).await {
                    done = false;
                    tracing::warn!(error = %e, object = %w.name, "could not mark as exported; its spans may be exported again");
                }
                if let Some(recorder) = recorder
                    && outcome == Exported::Accepted
                    && !w.spans.is_empty()
                {
                    publish(recorder, &w).await;
                }
            }
            if done {
                // The held pods whose spans went: with the Job's, once it is marked, or alone.
                let alone = (w.kind == ObjectKind::Pod)
                    .then(|| {
                        w.hold.map(|hold| HeldPod {
                            name: w.name.clone(),
                            uid: w.uid.clone(),
                            hold,
                        })
                    })
                    .flatten();
                let pods: Vec<HeldPod> = w.held_pods.iter().cloned().chain(alone).collect();
                let released = release_pods(deps, &w.namespace, pods).await;
                // A pod exported alone and still held is exported again at its next event.
                done = released || w.kind == ObjectKind::Job;
            }
            // Marked (or gone): a watch event or list page older than the mark is not queued
            // again. Unmarked: the next event showing it unmarked queues it again.
            pending.remove(&w.uid, done);
            deps.metrics.controller_pending.dec();
        })
        .await;
}

/// Releases the held `pods` of `namespace`, 16 at a time; `true` when none holds the finalizer
/// any more. One that couldn't be is released by the hold keeper at the hold timeout, or by the
/// next export of its Job or of itself.
async fn release_pods(deps: &Deps, namespace: &str, pods: Vec<HeldPod>) -> bool {
    if pods.is_empty() {
        return true;
    }
    let api = Api::<Slim<PartialObjectMeta<Pod>>>::namespaced(deps.client.clone(), namespace);
    let namespace = namespace.to_owned();
    futures::stream::iter(pods)
        .map(move |pod| {
            let (api, namespace) = (api.clone(), namespace.clone());
            let released = deps.metrics.pods_released.clone();
            async move { release_pod(&api, &namespace, &pod, &released).await }
        })
        .buffer_unordered(16)
        .fold(true, |all, released| async move { all && released })
        .await
}

/// Releases one exported pod; `true` when it holds the finalizer no more.
async fn release_pod(
    api: &Api<Slim<PartialObjectMeta<Pod>>>,
    namespace: &str,
    pod: &HeldPod,
    counted: &prometheus_client::metrics::counter::Counter,
) -> bool {
    match release::release_held(api, &pod.name, &pod.uid, Some(pod.hold)).await {
        Ok(Released::Released) => {
            counted.inc();
            true
        }
        Ok(Released::NotHeld) => true,
        Ok(Released::KeptChanging) => {
            tracing::warn!(namespace, pod = %pod.name, "could not release the exported pod: its finalizers kept changing");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, namespace, pod = %pod.name, "could not release the exported pod");
            false
        }
    }
}

/// Whether the exported object gets a mark: a Job still there. A pod's span goes with its Job's
/// mark, or alone once (from its delete event, or as it ends after its Job was exported), and the
/// controller's memory of what it exported lately keeps it from going twice.
fn marked(w: &Work) -> bool {
    w.kind == ObjectKind::Job && !w.deleted
}

/// A JSON patch that only applies to the very object exported (same uid): `exported`, and the
/// release of jobtrace's finalizer in the same write when the object holds it.
pub(super) fn mark_patch(w: &Work, hold: Option<usize>, outcome: Exported) -> json_patch::Patch {
    let mut ops = vec![patch::test(
        patch::pointer(["metadata", "uid"]),
        w.uid.as_str(),
    )];
    if !w.spans.is_empty() {
        ops.push(patch::add(
            patch::pointer(["metadata", "annotations", names::EXPORTED]),
            outcome.label(),
        ));
    }
    if let Some(i) = hold {
        ops.extend(release::release_ops(i));
    }
    json_patch::Patch(ops)
}

async fn mark(deps: &Deps, w: &Work, outcome: Exported) -> Result<(), kube::Error> {
    let result = patch(deps, w, mark_patch(w, w.hold, outcome)).await;
    let refused = match result {
        // Gone: nothing to mark, nothing held.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(kube::Error::Api(e)) if e.code == 422 => e,
        other => return other,
    };
    // Replaced by another Job of the same name, its finalizers moved since the watch saw them, or
    // the mark itself refused (its annotations at the apiserver's limit, say). Look the Job up
    // again and mark it once more; whatever the mark comes to, a hold must not outlive it.
    let api = Api::<Slim<PartialObjectMeta<Job>>>::namespaced(deps.client.clone(), &w.namespace);
    let Some(current) = api
        .get_opt(&w.name)
        .await?
        .filter(|o| o.meta().uid.as_deref() == Some(w.uid.as_str()))
    else {
        return Ok(());
    };
    match patch(deps, w, mark_patch(w, current.hold, outcome)).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 422 => {
            tracing::warn!(namespace = %w.namespace, object = %w.name, first = %refused.message, error = %e.message, "the apiserver refused the mark; releasing the Job unmarked (its spans may be exported again after a restart)");
            match release::release_held(&api, &w.name, &w.uid, current.hold).await? {
                Released::Released | Released::NotHeld => Ok(()),
                Released::KeptChanging => Err(kube::Error::Api(e)),
            }
        }
        other => other,
    }
}

/// Applies `patch` to the Job; the apiserver answers with its metadata, not the whole Job (which
/// may be 1.5 MiB).
async fn patch(deps: &Deps, w: &Work, patch: json_patch::Patch) -> Result<(), kube::Error> {
    Api::<Slim<PartialObjectMeta<Job>>>::namespaced(deps.client.clone(), &w.namespace)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::controller::pending::tests::pod;

    #[test]
    fn only_a_job_still_there_is_written_never_a_pod() {
        let ended = pod("p", "job", false);
        let orphan = Work {
            owner: None,
            ..pod("q", "", false)
        };
        let job = Work {
            kind: ObjectKind::Job,
            owner: None,
            ..pod("j", "", false)
        };
        let deleted_job = Work {
            deleted: true,
            ..Work {
                kind: ObjectKind::Job,
                ..pod("k", "", false)
            }
        };
        assert!(
            !marked(&ended) && !marked(&orphan),
            "pods are never patched"
        );
        assert!(marked(&job));
        assert!(!marked(&deleted_job), "a deleted Job has nothing to mark");
    }
}
