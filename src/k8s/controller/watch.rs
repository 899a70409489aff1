//! What watch events mean: an object finished (its spans to export), a Job still running, a
//! (re)list beginning or done.

use std::collections::HashSet;

use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};

use super::{ObjectKind, Work};
use crate::core::names;
use crate::core::slim::Slim;
use crate::core::spans::{self, SpanRecord};

/// What a watch saw.
#[derive(Debug)]
pub(super) enum Seen {
    /// An object finished (or was deleted): its spans are to be exported.
    Finished(Work),
    /// A traced Job that is not finished.
    Running(String),
    /// A Job that needs nothing more (exported, or gone).
    Gone(String),
    /// A (re)list begins.
    Listing(ObjectKind),
    /// A (re)list is complete.
    Listed(ObjectKind),
}

/// Traced Jobs not finished yet, for the in-flight gauge; rebuilt on each re-list.
#[derive(Default)]
pub(super) struct InFlight {
    pub(super) jobs: HashSet<String>,
    pub(super) listing: Option<HashSet<String>>,
}

impl InFlight {
    pub(super) fn see(&mut self, seen: &Seen) {
        match seen {
            Seen::Running(uid) => {
                self.jobs.insert(uid.clone());
                if let Some(listing) = &mut self.listing {
                    listing.insert(uid.clone());
                }
            }
            Seen::Gone(uid) => {
                self.jobs.remove(uid);
            }
            Seen::Finished(w) if w.kind == ObjectKind::Job => {
                self.jobs.remove(&w.uid);
            }
            Seen::Listing(ObjectKind::Job) => self.listing = Some(HashSet::new()),
            Seen::Listed(ObjectKind::Job) => {
                if let Some(listed) = self.listing.take() {
                    self.jobs = listed;
                }
            }
            _ => {}
        }
    }
}

/// What one object's watch events mean for the controller.
pub(super) fn events<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: ObjectKind,
) -> impl futures::Stream<Item = Result<Seen, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K: ToWork,
{
    watcher(api, config)
        .default_backoff()
        .map_ok(move |event| {
            let seen = match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => o.seen(kind, false),
                watcher::Event::Delete(o) => o.seen(kind, true),
                watcher::Event::Init => Some(Seen::Listing(kind)),
                watcher::Event::InitDone => Some(Seen::Listed(kind)),
            };
            futures::stream::iter(seen.map(Ok))
        })
        .try_flatten()
}

/// What one object's state means for the controller.
pub(super) trait ToWork {
    fn seen(&self, kind: ObjectKind, deleted: bool) -> Option<Seen>;
}

impl ToWork for Slim<Job> {
    fn seen(&self, kind: ObjectKind, deleted: bool) -> Option<Seen> {
        let job = &self.object;
        if deleted && self.hold.is_some() {
            // A Job deleted for good holds no finalizer: this one left the watch's selection (its
            // `traced` label removed), and is traced no more. The hold keeper releases it.
            return job.metadata.uid.clone().map(Seen::Gone);
        }
        let now = deleted.then(Timestamp::now);
        let held = !deleted && self.hold.is_some();
        match spans::job_spans(job, now) {
            Ok(spans) => {
                let finished = spans.first()?.end;
                work(self, kind, deleted, spans, finished).map(Seen::Finished)
            }
            Err(spans::Skip::NotFinished) => job.metadata.uid.clone().map(Seen::Running),
            // Nothing (more) to export, but the finalizer is still there: release it.
            Err(_) if held => {
                work(self, kind, false, Vec::new(), Timestamp::now()).map(Seen::Finished)
            }
            Err(_) => job.metadata.uid.clone().map(Seen::Gone),
        }
    }
}

impl ToWork for Slim<Pod> {
    fn seen(&self, kind: ObjectKind, deleted: bool) -> Option<Seen> {
        if deleted && self.hold.is_some() {
            // Left the watch's selection, finalizer and all: the hold keeper releases it.
            return None;
        }
        // A held pod being deleted stays, with its `deletionTimestamp`, until it is released: no
        // delete event comes before. It is deleted as far as its span goes, and released once
        // its span is exported.
        let terminating = self.hold.is_some() && self.object.metadata.deletion_timestamp.is_some();
        let now = deleted.then(Timestamp::now);
        let span = spans::pod_span(&self.object, now).ok()?;
        let finished = span.end;
        let mut work = work(self, kind, deleted || terminating, vec![span], finished)?;
        work.hold = self.hold;
        Some(Seen::Finished(work))
    }
}

fn work<K: Resource>(
    object: &Slim<K>,
    kind: ObjectKind,
    deleted: bool,
    spans: Vec<SpanRecord>,
    finished: Timestamp,
) -> Option<Work> {
    let hold = object.hold.filter(|_| !deleted);
    let meta = object.object.meta();
    let owner = (kind == ObjectKind::Pod)
        .then(|| owning_job(meta))
        .flatten();
    Some(Work {
        kind,
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        owner,
        version: meta.resource_version.clone(),
        deleted,
        spans,
        hold,
        finished,
        held_pods: Vec::new(),
    })
}

/// The uid of the Job a pod belongs to: its controller owner, or (orphaned, say by `kubectl
/// delete --cascade=orphan`) the job controller's label.
fn owning_job(meta: &kube::api::ObjectMeta) -> Option<String> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "Job" && o.api_version == "batch/v1")
        .map(|o| o.uid.clone())
        .or_else(|| meta.labels.as_ref()?.get(names::JOB_UID_LABEL).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A traced pod that still runs, held at `hold`, being deleted if `deleting`.
    fn pod(hold: Option<usize>, deleting: bool) -> Slim<Pod> {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "creationTimestamp": "2026-11-23T10:00:00Z",
                "labels": { "jobtrace.dev/traced": "true" },
                "annotations": {
                    "jobtrace.dev/trace-id": "4bf92f3577b34da6a3ce929d0e0e4736",
                    "jobtrace.dev/parent-span-id": "00f067aa0ba902b7",
                    "jobtrace.dev/span-id": "0a0a0a0a0a0a0a0a",
                    "jobtrace.dev/trace-flags": "01"
                }
            },
            "status": { "phase": "Running" }
        }))
        .unwrap();
        if deleting {
            pod.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    Timestamp::from_second(1_795_000_000).unwrap(),
                ));
        }
        Slim { object: pod, hold }
    }

    #[test]
    fn a_held_pod_being_deleted_is_deleted_for_its_span_and_keeps_its_hold_to_release() {
        let Some(Seen::Finished(work)) = pod(Some(1), true).seen(ObjectKind::Pod, false) else {
            panic!("a held pod being deleted has its span");
        };
        assert!(work.deleted, "exported alone while its Job runs");
        assert_eq!(work.hold, Some(1), "released once exported");
        assert_eq!(work.spans.len(), 1);
        // Not held: its delete event comes, as before.
        let Some(Seen::Finished(work)) = pod(None, true).seen(ObjectKind::Pod, false) else {
            panic!("a pod being deleted has its span");
        };
        assert!(!work.deleted);
        assert!(
            pod(Some(0), false).seen(ObjectKind::Pod, false).is_none(),
            "still running"
        );
        assert!(
            pod(Some(0), true).seen(ObjectKind::Pod, true).is_none(),
            "left the selection held: the hold keeper's"
        );
        let Some(Seen::Finished(work)) = pod(None, true).seen(ObjectKind::Pod, true) else {
            panic!("a deleted pod has its span");
        };
        assert!(work.deleted && work.hold.is_none());
    }

    #[test]
    fn in_flight_jobs_follow_the_watch_and_a_relist_forgets_the_missed_deletions() {
        let mut in_flight = InFlight::default();
        in_flight.see(&Seen::Listing(ObjectKind::Job));
        in_flight.see(&Seen::Running("a".into()));
        in_flight.see(&Seen::Running("b".into()));
        in_flight.see(&Seen::Listed(ObjectKind::Job));
        assert_eq!(in_flight.jobs.len(), 2);
        in_flight.see(&Seen::Gone("a".into()));
        in_flight.see(&Seen::Running("c".into()));
        assert_eq!(in_flight.jobs.len(), 2);
        // The watch broke and relists: "b" was deleted meanwhile and is not listed again.
        in_flight.see(&Seen::Listing(ObjectKind::Job));
        in_flight.see(&Seen::Running("c".into()));
        assert_eq!(
            in_flight.jobs.len(),
            2,
            "the old set holds until the list is done"
        );
        in_flight.see(&Seen::Listed(ObjectKind::Job));
        assert_eq!(in_flight.jobs, HashSet::from(["c".to_owned()]));
        // A pod's list doesn't touch the Jobs.
        in_flight.see(&Seen::Listing(ObjectKind::Pod));
        in_flight.see(&Seen::Listed(ObjectKind::Pod));
        assert_eq!(in_flight.jobs.len(), 1);
    }
}
