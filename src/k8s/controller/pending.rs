//! What the controller remembers between a watch event and the end of an export: the objects
//! queued (each once), and, per Job, which of its pods go with its spans and which went alone.
//!
//! A Job's pods are exported with the Job, from a list of them taken when the Job is exported, so
//! marking the Job is the only write. A pod deleted before that list (pod GC, eviction,
//! replacement) would be missing from it: its delete event exports it alone instead, and the list
//! leaves it out. A pod the list found still running (the Job was deleted while it ran) is
//! exported alone when it ends or goes. Nothing else is kept: no span, no object.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use super::{ObjectKind, Work};

/// At most this many Jobs whose pods were still running when the Job was exported are
/// remembered (their pods then end or go as the Job's deletion proceeds, within seconds or
/// minutes); past it the oldest is forgotten, and its pods' spans with it.
const UNFINISHED_JOBS: usize = 4096;
/// At most this many objects exported and marked lately are remembered, so that a watch event or
/// a list page read before the mark (a relist after 410 Gone, a lagging watch) doesn't export
/// them again: more than the queue and a batch hold (1,024 objects), which is how far behind a
/// relist's pages can be.
const RECENTLY_DONE: usize = 4096;

#[derive(Default)]
struct Entry {
    /// Queued (or being exported).
    queued: bool,
    /// A Job's pods exported alone, before its pods were listed.
    alone: HashSet<String>,
    /// A Job's pods whose spans go with its own, once its pods are listed.
    with_job: Option<HashSet<String>>,
    /// A Job's pods that list found still running.
    unfinished: HashSet<String>,
}

#[derive(Default)]
struct State {
    /// By uid: objects queued, and Jobs whose pods were exported alone while they ran.
    entries: HashMap<String, Entry>,
    /// By Job uid, for Jobs exported already: the pods that were still running then.
    unfinished: Recent<HashSet<String>, UNFINISHED_JOBS>,
    /// Objects exported (or released) and marked lately.
    done: Recent<(), RECENTLY_DONE>,
}

/// Values by key, `CAP` of them at most: one more forgets the oldest.
#[derive(Default)]
struct Recent<V, const CAP: usize> {
    map: HashMap<String, V>,
    /// The keys of `map`, oldest first.
    order: VecDeque<String>,
}

impl<V, const CAP: usize> Recent<V, CAP> {
    /// Keeps `value` under `key`, unless `key` is there already (`false` then).
    fn insert(&mut self, key: &str, value: V) -> bool {
        if self.map.contains_key(key) {
            return false;
        }
        self.map.insert(key.to_owned(), value);
        self.order.push_back(key.to_owned());
        while self.order.len() > CAP {
            if let Some(oldest) = self.order.pop_front() {
                self.map.remove(&oldest);
            }
        }
        true
    }

    fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    fn remove(&mut self, key: &str) {
        if self.map.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

/// What [`Pending::pod`] decides for a finished or deleted pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PodExport {
    /// Its span goes with its Job's (or went already): nothing to do now.
    WithJob,
    /// Its span is exported now, on its own.
    Alone,
}

/// The objects queued or being exported, and what their Jobs' exports cover.
#[derive(Default)]
pub(super) struct Pending(Mutex<State>);

impl Pending {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().expect("not poisoned")
    }

    /// Records `work`; `true` when it is new (to be queued), `false` when it was queued already.
    pub(super) fn add(&self, work: &Work) -> bool {
        let mut state = self.state();
        if !work.spans.is_empty() && state.done.contains(&work.uid) {
            // Seen as it was before its mark: its spans went already. (A finalizer still to
            // release is always queued.)
            return false;
        }
        let entry = state.entries.entry(work.uid.clone()).or_default();
        if entry.queued {
            return false;
        }
        entry.queued = true;
        true
    }

    /// Whether the finished or deleted `pod` is exported now on its own, or with its Job. `running`:
    /// its Job is traced and not finished, as the Job watch last saw it.
    pub(super) fn pod(&self, pod: &Work, running: bool) -> PodExport {
        debug_assert_eq!(pod.kind, ObjectKind::Pod);
        // A pod of no Job (or of one the watch can't tell) is exported on its own, as it ends.
        let Some(job) = &pod.owner else {
            return PodExport::Alone;
        };
        let mut state = self.state();
        if running && pod.deleted {
            // Its Job's list, later, must leave it out.
            state.entries.entry(job.clone()).or_default();
        }
        if let Some(entry) = state.entries.get_mut(job) {
            return match &entry.with_job {
                Some(with_job) if with_job.contains(&pod.uid) => PodExport::WithJob,
                // Not finished when its Job's pods were listed, or not there yet.
                Some(_) => {
                    entry.unfinished.remove(&pod.uid);
                    PodExport::Alone
                }
                None if pod.deleted => {
                    entry.alone.insert(pod.uid.clone());
                    PodExport::Alone
                }
                None => PodExport::WithJob,
            };
        }
        if running {
            return PodExport::WithJob;
        }
        // The Job was exported already: with this pod, unless the pod was still running then.
        let (alone, last) = state
            .unfinished
            .get_mut(job)
            .map_or((false, false), |pods| {
                (pods.remove(&pod.uid), pods.is_empty())
            });
        if last {
            state.unfinished.remove(job);
        }
        if alone {
            PodExport::Alone
        } else {
            PodExport::WithJob
        }
    }

    /// Whether the Job `job` is queued, or being exported, or has pods exported alone while it
    /// runs: its export is still to come.
    pub(super) fn has(&self, job: &str) -> bool {
        self.state().entries.contains_key(job)
    }

    /// Of the pods of the queued Job `job` that a list found, which go with it: those listed
    /// `finished`, less those exported alone already. Those listed `running` are exported alone
    /// when they end or go.
    pub(super) fn with_job(
        &self,
        job: &str,
        finished: impl IntoIterator<Item = String>,
        running: impl IntoIterator<Item = String>,
    ) -> HashSet<String> {
        let mut state = self.state();
        let entry = state.entries.entry(job.to_owned()).or_default();
        let with_job: HashSet<String> = finished
            .into_iter()
            .filter(|p| !entry.alone.contains(p))
            .collect();
        entry.unfinished = running
            .into_iter()
            .filter(|p| !entry.alone.contains(p))
            .collect();
        entry.with_job = Some(with_job.clone());
        with_job
    }

    /// Forgets the exported (or released) object `uid`, remembering it as done when it was
    /// `marked` (or is gone); a Job's pods still running at its export are remembered for when
    /// they end.
    pub(super) fn remove(&self, uid: &str, marked: bool) {
        let mut state = self.state();
        if marked {
            state.done.insert(uid, ());
        }
        let Some(entry) = state.entries.remove(uid) else {
            return;
        };
        if !entry.unfinished.is_empty() {
            state.unfinished.insert(uid, entry.unfinished);
        }
    }

    /// Forgets what it kept for Jobs that are neither queued nor `running` (deleted while the
    /// watch was broken, say): called when a list of the Jobs is complete.
    pub(super) fn forget_gone(&self, running: &HashSet<String>) {
        self.state()
            .entries
            .retain(|uid, e| e.queued || running.contains(uid));
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A pod's work, of namespace `ns`.
    pub(in crate::k8s::controller) fn pod(uid: &str, job: &str, deleted: bool) -> Work {
        Work {
            kind: ObjectKind::Pod,
            namespace: "ns".into(),
            name: uid.into(),
            uid: uid.into(),
            owner: Some(job.into()),
            version: None,
            deleted,
            spans: Vec::new(),
            hold: None,
            finished: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            held_pods: Vec::new(),
        }
    }

    /// A finished Job's work, with its span.
    fn job(uid: &str) -> Work {
        let finished: k8s_openapi::api::batch::v1::Job = jobtrace_testkit::fixtures::TestJob::new()
            .traced()
            .created()
            .status(
                &serde_json::json!({ "conditions": [{ "type": "Complete", "status": "True",
                "lastTransitionTime": "2026-11-23T10:00:30Z" }] }),
            )
            .typed();
        Work {
            kind: ObjectKind::Job,
            owner: None,
            spans: crate::core::spans::job_spans(&finished, None).expect("a finished Job's spans"),
            ..pod(uid, "", false)
        }
    }

    fn set(uids: &[&str]) -> HashSet<String> {
        uids.iter().map(|&u| u.to_owned()).collect()
    }

    #[test]
    fn a_running_jobs_finished_pods_wait_for_it_and_its_deleted_pods_go_alone() {
        let pending = Pending::default();
        assert_eq!(
            pending.pod(&pod("p1", "j", false), true),
            PodExport::WithJob
        );
        assert_eq!(pending.pod(&pod("p2", "j", true), true), PodExport::Alone);
        // The Job finishes: its list finds p1, and p2 too (the list lags the deletion).
        assert!(pending.add(&job("j")));
        let with_job = pending.with_job("j", ["p1".into(), "p2".into()], []);
        assert_eq!(with_job, set(&["p1"]), "p2 went alone already");
        // p1's deletion (the Job's TTL) after the list: it went with the Job.
        assert_eq!(
            pending.pod(&pod("p1", "j", true), false),
            PodExport::WithJob
        );
        pending.remove("j", true);
        assert_eq!(
            pending.pod(&pod("p1", "j", true), false),
            PodExport::WithJob
        );
        assert!(pending.state().entries.is_empty(), "nothing kept");
    }

    #[test]
    fn a_pod_deleted_between_the_jobs_end_and_its_list_goes_alone_and_only_alone() {
        let pending = Pending::default();
        assert!(pending.add(&job("j")));
        assert_eq!(
            pending.pod(&pod("p", "j", false), false),
            PodExport::WithJob
        );
        assert_eq!(pending.pod(&pod("p", "j", true), false), PodExport::Alone);
        assert!(pending.with_job("j", ["p".into()], []).is_empty());
    }

    #[test]
    fn a_pod_deleted_after_the_list_found_it_finished_is_not_exported_again() {
        let pending = Pending::default();
        assert!(pending.add(&job("j")));
        assert_eq!(pending.with_job("j", ["p".into()], []), set(&["p"]));
        assert_eq!(pending.pod(&pod("p", "j", true), false), PodExport::WithJob);
    }

    #[test]
    fn pods_still_running_at_the_jobs_export_go_alone_once_when_they_end() {
        let pending = Pending::default();
        assert!(pending.add(&job("j")));
        assert!(
            pending
                .with_job("j", [], ["p1".into(), "p2".into()])
                .is_empty()
        );
        // p1 ends before the Job's export is done, p2 after.
        assert_eq!(pending.pod(&pod("p1", "j", false), false), PodExport::Alone);
        pending.remove("j", true);
        assert_eq!(pending.pod(&pod("p2", "j", true), false), PodExport::Alone);
        assert_eq!(
            pending.pod(&pod("p2", "j", true), false),
            PodExport::WithJob,
            "once"
        );
        assert!(pending.state().unfinished.map.is_empty(), "nothing kept");
        assert!(pending.state().unfinished.order.is_empty());
    }

    #[test]
    fn a_pod_of_an_exported_job_or_of_no_job() {
        let pending = Pending::default();
        // Its Job exported before this controller started, or long ago.
        assert_eq!(pending.pod(&pod("p", "j", true), false), PodExport::WithJob);
        let mut orphan = pod("q", "", false);
        orphan.owner = None;
        assert_eq!(pending.pod(&orphan, false), PodExport::Alone);
    }

    #[test]
    fn a_jobs_export_is_to_come_while_it_is_queued_or_its_pods_went_alone() {
        let pending = Pending::default();
        assert!(!pending.has("j"));
        assert!(pending.add(&job("j")));
        assert!(
            pending.has("j"),
            "queued: its export releases its listed pods"
        );
        pending.remove("j", true);
        assert!(
            !pending.has("j"),
            "exported: a held pod of it has only its hold left"
        );
        assert_eq!(pending.pod(&pod("p", "k", true), true), PodExport::Alone);
        assert!(pending.has("k"));
    }

    #[test]
    fn objects_are_queued_once() {
        let pending = Pending::default();
        let j = job("j");
        assert!(pending.add(&j));
        assert!(!pending.add(&j));
        pending.remove("j", false);
        assert!(pending.add(&j), "queued again when its mark failed");
    }

    #[test]
    fn an_object_seen_again_as_it_was_before_its_mark_is_not_queued_again() {
        let pending = Pending::default();
        assert!(pending.add(&job("j")));
        pending.remove("j", true);
        assert!(!pending.add(&job("j")), "a stale event of a marked Job");
        let mut release = job("j");
        release.spans.clear();
        assert!(
            pending.add(&release),
            "a finalizer to release goes all the same"
        );
        pending.remove("j", true);
        // Only so many are remembered.
        for i in 0..RECENTLY_DONE {
            let uid = format!("other-{i}");
            assert!(pending.add(&job(&uid)));
            pending.remove(&uid, true);
        }
        assert!(pending.add(&job("j")), "forgotten after so many others");
        assert_eq!(pending.state().done.map.len(), RECENTLY_DONE);
        assert_eq!(pending.state().done.order.len(), RECENTLY_DONE);
    }

    #[test]
    fn entries_of_jobs_gone_unseen_are_forgotten_at_a_relist() {
        let pending = Pending::default();
        assert_eq!(pending.pod(&pod("p", "gone", true), true), PodExport::Alone);
        assert_eq!(pending.pod(&pod("q", "runs", true), true), PodExport::Alone);
        assert!(pending.add(&job("queued")));
        pending.forget_gone(&set(&["runs"]));
        let state = pending.state();
        let mut kept: Vec<&String> = state.entries.keys().collect();
        kept.sort();
        assert_eq!(kept, ["queued", "runs"]);
    }

    #[test]
    fn the_unfinished_pods_of_at_most_so_many_jobs_are_remembered() {
        let pending = Pending::default();
        for i in 0..=UNFINISHED_JOBS {
            let uid = format!("j{i}");
            assert!(pending.add(&job(&uid)));
            pending.with_job(&uid, [], [format!("p{i}")]);
            pending.remove(&uid, true);
        }
        assert_eq!(pending.state().unfinished.map.len(), UNFINISHED_JOBS);
        assert_eq!(
            pending.pod(&pod("p0", "j0", true), false),
            PodExport::WithJob,
            "the oldest is forgotten"
        );
        assert_eq!(pending.pod(&pod("p1", "j1", true), false), PodExport::Alone);
    }
}
