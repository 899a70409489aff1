//! Holds that always end. The export loop releases a held Job as it marks it (and a held pod,
//! with `--hold-pods`, once its span is exported); this keeper makes sure nothing else keeps
//! jobtrace's finalizer on a Job or pod for longer than it should, whatever the export queue
//! holds. It reads watches of its own (the traced Jobs' metadata, slim, and the traced pods' with
//! `--hold-pods`), which never wait for the queue, and for each kind
//!
//! - releases a held object whose deletion began the hold timeout ago, exported or not: with the
//!   collector down and hundreds of Jobs queued ahead of it, a deleted one goes at the timeout
//!   (plus at most [`TICK`]), not when its turn comes. Its spans stay queued and are exported
//!   when the collector takes them; only the copy a restarted controller would read again is gone;
//! - releases an object that holds the finalizer but left the watch's selection (its `traced` label
//!   removed: no export is coming for it), as the watch reports it;
//! - after every (re)list, looks through all the kind's metadata (paged) for one that holds the
//!   finalizer without the label: a label removed while no watch ran.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio_util::sync::CancellationToken;

use super::Deps;
use crate::core::names;
use crate::core::slim::Slim;
use crate::k8s::pages::{self, Pages};
use crate::k8s::release::{self, Released};

/// A Job's or pod's metadata, as the keeper reads it.
type Meta<K = Job> = Slim<PartialObjectMeta<K>>;

/// What the keeper needs of a kind it keeps (Job, pod).
trait Kept:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Kept for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// How often held deletions are held against the hold timeout.
pub(super) const TICK: Duration = Duration::from_secs(1);

/// A held object being deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Deleting {
    namespace: String,
    name: String,
    hold: usize,
    since: Timestamp,
}

/// What the keeper is to do about a watch event.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// Release this object now: it holds the finalizer and is traced no more.
    Untraced(Held),
    /// A (re)list is complete: look for holders the watch can't see.
    Sweep,
}

/// An object to release: where it is and where its finalizer was.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    namespace: String,
    name: String,
    uid: String,
    hold: Option<usize>,
}

impl Held {
    fn of<K: Resource>(job: &Meta<K>) -> Option<Self> {
        let meta = &job.object.metadata;
        Some(Self {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            hold: job.hold,
        })
    }
}

/// The held objects being deleted, as the keeper's watch last saw them.
#[derive(Default)]
struct Holds {
    deleting: HashMap<String, Deleting>,
    /// During a (re)list: the Jobs listed so far.
    listing: Option<HashSet<String>>,
}

impl Holds {
    /// What `event`, seen at `now`, asks for.
    fn see<K: Resource>(
        &mut self,
        event: watcher::Event<Meta<K>>,
        now: Timestamp,
    ) -> Option<Action> {
        match event {
            watcher::Event::Init => {
                self.listing = Some(HashSet::new());
                None
            }
            watcher::Event::InitApply(job) => {
                if let (Some(listing), Some(uid)) =
                    (&mut self.listing, job.object.metadata.uid.clone())
                {
                    listing.insert(uid);
                }
                self.apply(&job, now);
                None
            }
            watcher::Event::InitDone => {
                if let Some(listed) = self.listing.take() {
                    self.deleting.retain(|uid, _| listed.contains(uid));
                }
                Some(Action::Sweep)
            }
            watcher::Event::Apply(job) => {
                self.apply(&job, now);
                None
            }
            watcher::Event::Delete(job) => {
                if let Some(uid) = &job.object.metadata.uid {
                    self.deleting.remove(uid);
                }
                // A Job deleted for good holds no finalizer: this one left the selection.
                job.hold.and(Held::of(&job)).map(Action::Untraced)
            }
        }
    }

    /// Records a held Job's deletion, since when it began or since `now`, whichever is later: the
    /// timeout is the controller's, and counts only while one runs (a Job deleted while none ran
    /// is exported when one starts, like any other).
    fn apply<K: Resource>(&mut self, job: &Meta<K>, now: Timestamp) {
        let meta = &job.object.metadata;
        let Some(uid) = &meta.uid else {
            return;
        };
        let deleting = meta.deletion_timestamp.as_ref().map(|t| t.0);
        match (job.hold, deleting, &meta.namespace, &meta.name) {
            (Some(hold), Some(deleted), Some(namespace), Some(name)) => {
                let since = self
                    .deleting
                    .get(uid)
                    .map_or_else(|| deleted.max(now), |d| d.since);
                self.deleting.insert(
                    uid.clone(),
                    Deleting {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        hold,
                        since,
                    },
                );
            }
            _ => {
                self.deleting.remove(uid);
            }
        }
    }

    /// The held Jobs deleted `timeout` or longer before `now`.
    fn expired(&self, now: Timestamp, timeout: SignedDuration) -> Vec<Held> {
        self.deleting
            .iter()
            .filter(|(_, d)| now.duration_since(d.since) >= timeout)
            .map(|(uid, d)| Held {
                namespace: d.namespace.clone(),
                name: d.name.clone(),
                uid: uid.clone(),
                hold: Some(d.hold),
            })
            .collect()
    }
}

/// Keeps the holds until `shutdown`: the Jobs', and the pods' with `--hold-pods`.
pub(super) async fn keep(deps: Arc<Deps>, shutdown: CancellationToken) {
    if deps.hold_pods {
        tokio::join!(
            keep_kind::<Job>(&deps, &shutdown),
            keep_kind::<Pod>(&deps, &shutdown)
        );
    } else {
        keep_kind::<Job>(&deps, &shutdown).await;
    }
}

/// Keeps the holds of the objects of kind `K` until `shutdown`.
async fn keep_kind<K: Kept>(deps: &Arc<Deps>, shutdown: &CancellationToken) {
    let api: Api<Meta<K>> = match &deps.namespace {
        Some(ns) => Api::namespaced(deps.client.clone(), ns),
        None => Api::all(deps.client.clone()),
    };
    let config = watcher::Config::default()
        .labels(&format!("{}=true", names::TRACED_LABEL))
        .page_size(pages::METADATA);
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    let timeout = SignedDuration::try_from(deps.hold_timeout).unwrap_or(SignedDuration::MAX);
    let mut holds = Holds::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweeping: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {
                for held in holds.expired(Timestamp::now(), timeout) {
                    if release_one::<K>(&deps.client, &held, "its hold timed out").await {
                        holds.deleting.remove(&held.uid);
                        deps.metrics.holds_expired.inc();
                    }
                }
            }
            event = events.next() => match event {
                None => break,
                // The controller's own watches report the apiserver's errors.
                Some(Err(e)) => tracing::debug!(error = %e, "hold keeper: watch error; retrying"),
                Some(Ok(event)) => match holds.see(event, Timestamp::now()) {
                    Some(Action::Untraced(held)) => {
                        release_one::<K>(&deps.client, &held, "its traced label was removed").await;
                    }
                    Some(Action::Sweep) if sweeping.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) => {
                        sweeping = Some(tokio::spawn(sweep::<K>(
                            deps.client.clone(),
                            deps.namespace.clone(),
                        )));
                    }
                    Some(Action::Sweep) | None => {}
                },
            }
        }
    }
    if let Some(sweeping) = sweeping {
        sweeping.abort();
    }
}

/// `Job` or `pod`, for messages.
fn kind<K: Resource<DynamicType = ()>>() -> &'static str {
    if K::kind(&()) == "Pod" { "pod" } else { "Job" }
}

/// Releases `held` (of kind `K`); `true` when it holds the finalizer no more.
async fn release_one<K: Kept>(client: &Client, held: &Held, why: &str) -> bool {
    let api: Api<Meta<K>> = Api::namespaced(client.clone(), &held.namespace);
    let kind = kind::<K>();
    match release::release_held(&api, &held.name, &held.uid, held.hold).await {
        Ok(Released::Released) => {
            tracing::warn!(namespace = %held.namespace, kind, name = %held.name, "released jobtrace's finalizer: {why}");
            true
        }
        Ok(Released::NotHeld) => true,
        Ok(Released::KeptChanging) => {
            tracing::warn!(namespace = %held.namespace, kind, name = %held.name, "could not release jobtrace's finalizer ({why}): the finalizers kept changing; trying again");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, namespace = %held.namespace, kind, name = %held.name, "could not release jobtrace's finalizer ({why}); trying again");
            false
        }
    }
}

/// Releases every object of kind `K` that holds the finalizer without the `traced` label, in
/// `namespace` or all.
async fn sweep<K: Kept>(client: Client, namespace: Option<String>) {
    let api: Api<Meta<K>> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let untraced = format!("{}!=true", names::TRACED_LABEL);
    let mut pages = Pages::new(
        api,
        ListParams::default().labels(&untraced),
        pages::METADATA,
    );
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, kind = kind::<K>(), "hold keeper: could not list the objects to find untraced holders; trying at the next relist");
                return;
            }
        };
        for held in page
            .iter()
            .filter(|o| o.hold.is_some())
            .filter_map(Held::of)
        {
            release_one::<K>(
                &client,
                &held,
                "it is not traced (its traced label was removed)",
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn job(uid: &str, hold: Option<usize>, deleting: Option<i64>) -> Meta {
        let mut object = PartialObjectMeta::<Job>::default();
        object.metadata.namespace = Some("ns".into());
        object.metadata.name = Some(format!("job-{uid}"));
        object.metadata.uid = Some(uid.into());
        object.metadata.deletion_timestamp =
            deleting.map(|s| Time(Timestamp::from_second(s).unwrap()));
        Slim { object, hold }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_held_deletion_expires_at_the_hold_timeout_and_not_before() {
        let mut holds = Holds::default();
        assert_eq!(
            holds.see(watcher::Event::Apply(job("a", Some(1), Some(100))), at(100)),
            None
        );
        holds.see(watcher::Event::Apply(job("b", Some(0), None)), at(100));
        holds.see(watcher::Event::Apply(job("c", None, Some(100))), at(100));
        let timeout = SignedDuration::from_secs(60);
        assert!(holds.expired(at(159), timeout).is_empty());
        let expired = holds.expired(at(160), timeout);
        assert_eq!(
            expired,
            [Held {
                namespace: "ns".into(),
                name: "job-a".into(),
                uid: "a".into(),
                hold: Some(1),
            }],
            "only the held Job being deleted"
        );
        // Deleted before this controller saw it: the timeout counts from then.
        holds.see(watcher::Event::Apply(job("d", Some(0), Some(10))), at(100));
        assert!(holds.expired(at(159), timeout).is_empty());
        assert_eq!(holds.expired(at(160), timeout).len(), 2);
        holds.see(watcher::Event::Apply(job("d", None, Some(10))), at(100));
        // Released meanwhile (exported and marked): nothing to expire.
        holds.see(watcher::Event::Apply(job("a", None, Some(100))), at(100));
        assert!(holds.expired(at(160), timeout).is_empty());
    }

    #[test]
    fn a_held_job_that_leaves_the_selection_is_released_and_a_deleted_one_is_not() {
        let mut holds = Holds::default();
        holds.see(watcher::Event::Apply(job("a", Some(0), Some(100))), at(100));
        // Deleted for good: its last state holds no finalizer.
        assert_eq!(
            holds.see(watcher::Event::Delete(job("a", None, Some(100))), at(100)),
            None
        );
        assert!(holds.deleting.is_empty());
        // Its label removed: the watch reports it deleted, as it was, finalizer and all.
        let Some(Action::Untraced(untraced)) =
            holds.see(watcher::Event::Delete(job("b", Some(2), None)), at(100))
        else {
            panic!("a held Job that left the selection is released");
        };
        assert_eq!((untraced.uid.as_str(), untraced.hold), ("b", Some(2)));
    }

    #[test]
    fn held_pods_are_kept_by_the_same_rules() {
        let mut object = PartialObjectMeta::<Pod>::default();
        object.metadata.namespace = Some("ns".into());
        object.metadata.name = Some("pod-a".into());
        object.metadata.uid = Some("a".into());
        object.metadata.deletion_timestamp = Some(Time(at(100)));
        let pod: Meta<Pod> = Slim {
            object,
            hold: Some(0),
        };
        let mut holds = Holds::default();
        holds.see(watcher::Event::Apply(pod.clone()), at(100));
        let timeout = SignedDuration::from_secs(60);
        assert!(holds.expired(at(159), timeout).is_empty());
        assert_eq!(holds.expired(at(160), timeout)[0].name, "pod-a");
        let Some(Action::Untraced(untraced)) = holds.see(watcher::Event::Delete(pod), at(100))
        else {
            panic!("a held pod that left the selection is released");
        };
        assert_eq!(untraced.hold, Some(0));
        assert_eq!(kind::<Pod>(), "pod");
        assert_eq!(kind::<Job>(), "Job");
    }

    #[test]
    fn a_relist_forgets_deletions_it_no_longer_finds_and_asks_for_a_sweep() {
        let mut holds = Holds::default();
        holds.see(
            watcher::Event::Apply(job("gone", Some(0), Some(100))),
            at(100),
        );
        holds.see(
            watcher::Event::Apply(job("kept", Some(0), Some(100))),
            at(100),
        );
        assert_eq!(holds.see(watcher::Event::<Meta>::Init, at(100)), None);
        holds.see(
            watcher::Event::InitApply(job("kept", Some(0), Some(100))),
            at(100),
        );
        holds.see(
            watcher::Event::InitApply(job("new", Some(0), Some(120))),
            at(100),
        );
        assert_eq!(
            holds.see(watcher::Event::<Meta>::InitDone, at(100)),
            Some(Action::Sweep)
        );
        let mut uids: Vec<&String> = holds.deleting.keys().collect();
        uids.sort();
        assert_eq!(uids, ["kept", "new"]);
    }
}
