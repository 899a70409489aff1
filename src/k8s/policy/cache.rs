//! What admission knows of the policies: a watch-backed copy kept by every replica, and the
//! cluster-wide defaults. Admission never waits on the apiserver: until the copy is first synced
//! (or when there is none), the defaults apply and the answer says so.
//!
//! The copy holds each namespace's policies apart, prepared when they are stored (see
//! [`NamespacePolicies`]): a Job's admission reads only its own namespace's, and of those only the
//! ones that can select it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::core::context::Warning;
use crate::core::policy::index::{NamespacePolicies, Prepared};
use crate::core::policy::limits::OverLimit;
use crate::core::policy::{JobTracePolicy, Resolution, TraceSettings};

/// The policies as admission sees them. Cheap to clone.
#[derive(Clone)]
pub struct Policies {
    defaults: Arc<TraceSettings>,
    /// `None`: no policy is read.
    index: Option<Arc<RwLock<Index>>>,
    synced: Arc<AtomicBool>,
}

/// What admission reads: each namespace that has policies, with them.
#[derive(Debug, Default)]
struct Index {
    namespaces: HashMap<String, Arc<NamespacePolicies>>,
}

impl Index {
    /// The policies of `namespace`, if it has any.
    fn namespace(&self, namespace: &str) -> Option<Arc<NamespacePolicies>> {
        self.namespaces.get(namespace).cloned()
    }
}

impl Policies {
    /// Only the cluster-wide defaults: no policy is read.
    pub fn defaults_only(defaults: TraceSettings) -> Self {
        Self {
            defaults: Arc::new(defaults),
            index: None,
            synced: Arc::new(AtomicBool::new(true)),
        }
    }

    /// A fixed set of policies, synced from the start (benchmarks, tools that read them once).
    pub fn fixed(defaults: TraceSettings, policies: Vec<JobTracePolicy>) -> Self {
        let (fixed, mut writer) = Self::with_writer(defaults);
        writer.apply(watcher::Event::Init);
        for policy in policies {
            writer.apply(watcher::Event::InitApply(policy));
        }
        writer.apply(watcher::Event::InitDone);
        fixed
    }

    /// Policies read through a watch (of `namespace`, or all), and the task that keeps them: the
    /// caller runs it for as long as the process serves.
    pub fn watch(
        client: Client,
        namespace: Option<&str>,
        defaults: TraceSettings,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let api: Api<JobTracePolicy> = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let (policies, mut writer) = Self::with_writer(defaults);
        let task = async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => writer.apply(event),
                    Err(e) => {
                        tracing::warn!(error = %e, "watching JobTracePolicies; the last known ones (or the cluster defaults) apply");
                    }
                }
            }
        };
        (policies, task)
    }

    /// Policies not synced yet, and the writer that fills them.
    fn with_writer(defaults: TraceSettings) -> (Self, Writer) {
        let index = Arc::new(RwLock::new(Index::default()));
        let policies = Self {
            defaults: Arc::new(defaults),
            index: Some(index.clone()),
            synced: Arc::new(AtomicBool::new(false)),
        };
        let writer = Writer {
            defaults: policies.defaults.clone(),
            index,
            synced: policies.synced.clone(),
            stored: BTreeMap::new(),
            relist: None,
        };
        (policies, writer)
    }

    /// Whether the watch has listed the policies at least once.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The settings for a Job with `labels` in `namespace`, and a warning when the policies are
    /// not known yet.
    pub fn resolve(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> (Resolution, Option<Warning>) {
        let Some(index) = self.index.as_ref().filter(|_| self.synced()) else {
            let warning = self.index.is_some().then(|| Warning {
                reason: crate::core::context::WarningReason::PoliciesNotSynced,
                message: "the JobTracePolicies are not loaded yet; the cluster defaults apply"
                    .to_owned(),
            });
            return (self.defaults_alone(), warning);
        };
        let policies = read(index).namespace(namespace);
        let resolution = match policies {
            Some(policies) => policies.resolve(&self.defaults, labels),
            None => self.defaults_alone(),
        };
        (resolution, None)
    }

    fn defaults_alone(&self) -> Resolution {
        Resolution {
            settings: self.defaults.clone(),
            policy: None,
            overridden: Vec::new(),
        }
    }

    /// The namespaces whose Jobs can all be traced (root traces on in one of their policies), or
    /// `None` when the defaults trace every Job: what the webhook's `matchConditions` must let
    /// through besides Jobs carrying context.
    pub fn namespaces_tracing_all_jobs(&self) -> Option<Vec<String>> {
        if self.defaults.root_traces.is_some() || self.defaults.request_context {
            return None;
        }
        let Some(index) = &self.index else {
            return Some(Vec::new());
        };
        let mut namespaces: Vec<String> = read(index)
            .namespaces
            .iter()
            .filter(|(_, policies)| policies.traces_all_jobs())
            .map(|(namespace, _)| namespace.clone())
            .collect();
        namespaces.sort_unstable();
        Some(namespaces)
    }
}

/// The index as it is now. A writer that panicked left no half-built namespace (each is swapped
/// in whole), so a poisoned lock's contents are still good.
fn read(index: &RwLock<Index>) -> std::sync::RwLockReadGuard<'_, Index> {
    index.read().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps the index from the watch's events: prepares each policy as it comes, and swaps in whole
/// the namespace it changed.
struct Writer {
    defaults: Arc<TraceSettings>,
    index: Arc<RwLock<Index>>,
    synced: Arc<AtomicBool>,
    /// What each namespace's entry is rebuilt from.
    stored: Stored,
    /// The policies of a relist under way, which replace `stored` when it ends.
    relist: Option<Stored>,
}

impl Writer {
    fn apply(&mut self, event: watcher::Event<JobTracePolicy>) {
        match event {
            watcher::Event::Init => self.relist = Some(BTreeMap::new()),
            watcher::Event::InitApply(policy) => {
                let prepared = prepare(&self.stored, &self.defaults, &policy);
                if let Some(relist) = &mut self.relist {
                    put(relist, &policy, prepared);
                }
            }
            watcher::Event::InitDone => {
                self.stored = self.relist.take().unwrap_or_default();
                let namespaces: HashMap<String, Arc<NamespacePolicies>> = self
                    .stored
                    .iter()
                    .map(|(namespace, policies)| {
                        (namespace.clone(), Arc::new(namespace_of(policies)))
                    })
                    .collect();
                let count: usize = namespaces.values().map(|n| n.len()).sum();
                write(&self.index).namespaces = namespaces;
                if !self.synced.swap(true, Ordering::AcqRel) {
                    tracing::info!(policies = count, "policies synced");
                }
            }
            watcher::Event::Apply(policy) => {
                let prepared = prepare(&self.stored, &self.defaults, &policy);
                if put(&mut self.stored, &policy, prepared) {
                    self.publish(namespace(&policy));
                }
            }
            watcher::Event::Delete(policy) => {
                let namespace = namespace(&policy);
                let name = policy.metadata.name.as_deref().unwrap_or_default();
                let removed = self
                    .stored
                    .get_mut(namespace)
                    .and_then(|policies| policies.remove(name));
                if removed.is_some() {
                    self.publish(namespace);
                }
            }
        }
    }

    /// Swaps in `namespace`'s policies as they are stored now.
    fn publish(&mut self, namespace: &str) {
        let policies = self
            .stored
            .get(namespace)
            .filter(|policies| !policies.is_empty())
            .map(|policies| Arc::new(namespace_of(policies)));
        if policies.is_none() {
            self.stored.remove(namespace);
        }
        let mut index = write(&self.index);
        match policies {
            Some(policies) => index.namespaces.insert(namespace.to_owned(), policies),
            None => index.namespaces.remove(namespace),
        };
    }
}

fn write(index: &RwLock<Index>) -> std::sync::RwLockWriteGuard<'_, Index> {
    index.write().unwrap_or_else(PoisonError::into_inner)
}

fn namespace(policy: &JobTracePolicy) -> &str {
    policy.metadata.namespace.as_deref().unwrap_or_default()
}

fn namespace_of(policies: &BTreeMap<String, Arc<Prepared>>) -> NamespacePolicies {
    NamespacePolicies::new(policies.values().cloned())
}

/// Every policy kept, by namespace and name.
type Stored = BTreeMap<String, BTreeMap<String, Arc<Prepared>>>;

/// `policy` prepared, or as `stored` holds it when only its status changed since; or why it is
/// ignored (logged).
fn prepare(
    stored: &Stored,
    defaults: &TraceSettings,
    policy: &JobTracePolicy,
) -> Result<Arc<Prepared>, OverLimit> {
    let name = policy.metadata.name.as_deref().unwrap_or_default();
    let kept = stored
        .get(namespace(policy))
        .and_then(|policies| policies.get(name))
        .filter(|p| p.is_prepared_from(policy));
    if let Some(kept) = kept {
        return Ok(kept.clone());
    }
    Prepared::new(policy, defaults).map(Arc::new).inspect_err(|over| {
        tracing::warn!(namespace = %namespace(policy), policy = %name, reason = %over, "JobTracePolicy ignored: over the CRD's limits");
    })
}

/// Puts `policy` as `prepared` in `stored`, or takes it out when it is ignored. Whether that
/// changed anything.
fn put(
    stored: &mut Stored,
    policy: &JobTracePolicy,
    prepared: Result<Arc<Prepared>, OverLimit>,
) -> bool {
    let name = policy.metadata.name.clone().unwrap_or_default();
    match prepared {
        Ok(prepared) => stored
            .entry(namespace(policy).to_owned())
            .or_default()
            .insert(name, prepared.clone())
            .is_none_or(|old| !Arc::ptr_eq(&old, &prepared)),
        Err(_) => stored
            .get_mut(namespace(policy))
            .and_then(|policies| policies.remove(&name))
            .is_some(),
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher::Event;

    use super::*;

    fn policy(namespace: &str, spec: &serde_json::Value) -> JobTracePolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "jobtrace.dev/v1alpha1", "kind": "JobTracePolicy",
            "metadata": { "name": "p", "namespace": namespace }, "spec": spec
        }))
        .unwrap()
    }

    /// Policies kept from `events`, and the writer that kept them.
    fn policies(events: impl IntoIterator<Item = Event<JobTracePolicy>>) -> (Policies, Writer) {
        let (policies, mut writer) = Policies::with_writer(TraceSettings::default());
        for event in events {
            writer.apply(event);
        }
        (policies, writer)
    }

    #[test]
    fn until_synced_the_defaults_apply_with_a_warning() {
        let (unsynced, _) = policies([Event::Init]);
        let (resolution, warning) = unsynced.resolve("reports", &BTreeMap::new());
        assert_eq!(*resolution.settings, TraceSettings::default());
        assert_eq!(warning.unwrap().reason.label(), "policies_not_synced");
        let (_, warning) =
            Policies::defaults_only(TraceSettings::default()).resolve("reports", &BTreeMap::new());
        assert!(warning.is_none(), "nothing to wait for without a watch");
    }

    #[test]
    fn only_the_namespaces_own_policies_apply() {
        let events = [
            Event::Init,
            Event::InitApply(policy("reports", &serde_json::json!({ "podSpans": false }))),
            Event::InitApply(policy(
                "other",
                &serde_json::json!({ "rootTraces": { "ratio": 1.0 } }),
            )),
            Event::InitApply(policy(
                "headers",
                &serde_json::json!({ "requestContext": true }),
            )),
            Event::InitApply(policy(
                "no-headers",
                &serde_json::json!({ "requestContext": false }),
            )),
            Event::InitDone,
        ];
        let (synced, _) = policies(events);
        let (resolution, warning) = synced.resolve("reports", &BTreeMap::new());
        assert!(warning.is_none());
        assert!(!resolution.settings.pod_spans);
        assert_eq!(
            resolution.settings.root_traces, None,
            "the other namespace's"
        );
        assert_eq!(
            synced.namespaces_tracing_all_jobs(),
            Some(vec!["headers".to_owned(), "other".to_owned()])
        );
        let all = Policies {
            defaults: Arc::new(TraceSettings {
                root_traces: Some(0.1),
                ..TraceSettings::default()
            }),
            ..synced
        };
        assert_eq!(
            all.namespaces_tracing_all_jobs(),
            None,
            "the defaults trace every Job"
        );
        let headers = Policies {
            defaults: Arc::new(TraceSettings {
                request_context: true,
                ..TraceSettings::default()
            }),
            ..all
        };
        assert_eq!(headers.namespaces_tracing_all_jobs(), None);
    }

    fn named(
        namespace: &str,
        name: &str,
        generation: i64,
        spec: &serde_json::Value,
    ) -> JobTracePolicy {
        let mut p = policy(namespace, spec);
        p.metadata.name = Some(name.to_owned());
        p.metadata.uid = Some(format!("uid-{namespace}-{name}"));
        p.metadata.generation = Some(generation);
        p
    }

    #[test]
    fn admission_reads_only_its_own_namespaces_policies() {
        let others = (0..1000).map(|i| {
            Event::InitApply(named(
                &format!("ns-{i:04}"),
                "all",
                1,
                &serde_json::json!({ "podSpans": false }),
            ))
        });
        let events = [Event::Init].into_iter().chain(others).chain([
            Event::InitApply(named("reports", "own", 1, &serde_json::json!({}))),
            Event::InitDone,
        ]);
        let (policies, _) = policies(events);
        let index = read(policies.index.as_ref().unwrap());
        assert_eq!(index.namespaces.len(), 1001);
        assert!(index.namespace("quiet").is_none(), "nothing to look at");
        let own = index.namespace("reports").unwrap();
        assert_eq!(own.len(), 1, "one namespace's policies, not all of them");
        assert_eq!(own.matched_against(&BTreeMap::new()), 1);
        drop(index);
        let (quiet, _) = policies.resolve("quiet", &BTreeMap::new());
        assert_eq!((quiet.policy, quiet.settings.pod_spans), (None, true));
        let (reports, _) = policies.resolve("reports", &BTreeMap::new());
        assert_eq!(reports.policy.as_deref(), Some("own"));
        assert!(reports.overridden.is_empty());
    }

    #[test]
    fn a_policy_over_the_limits_is_ignored_until_it_is_within_them() {
        let too_many: Vec<String> = (0..=crate::core::policy::limits::JOB_LABELS)
            .map(|i| format!("k{i}"))
            .collect();
        let over = |generation| {
            named(
                "reports",
                "big",
                generation,
                &serde_json::json!({ "jobLabels": too_many, "podSpans": false }),
            )
        };
        let within = named(
            "reports",
            "big",
            2,
            &serde_json::json!({ "jobLabels": ["team"], "podSpans": false }),
        );
        let (policies, mut writer) =
            policies([Event::Init, Event::InitApply(over(1)), Event::InitDone]);
        let decided = |policies: &Policies| policies.resolve("reports", &BTreeMap::new()).0.policy;
        assert!(policies.synced());
        assert_eq!(decided(&policies), None, "ignored as if it did not exist");
        writer.apply(Event::Apply(within.clone()));
        assert_eq!(decided(&policies).as_deref(), Some("big"));
        writer.apply(Event::Apply(over(3)));
        assert_eq!(
            decided(&policies),
            None,
            "ignored again, not kept as it was"
        );
        assert!(
            read(policies.index.as_ref().unwrap())
                .namespace("reports")
                .is_none()
        );
        writer.apply(Event::Apply(within.clone()));
        writer.apply(Event::Delete(within));
        assert_eq!(decided(&policies), None);
    }

    #[test]
    fn a_status_update_keeps_the_policy_as_it_was_prepared() {
        let p = named("reports", "p", 4, &serde_json::json!({ "podSpans": false }));
        let (policies, mut writer) =
            policies([Event::Init, Event::InitApply(p.clone()), Event::InitDone]);
        let before = policies.resolve("reports", &BTreeMap::new()).0.settings;
        let mut with_status = p.clone();
        with_status.status = Some(crate::core::policy::JobTracePolicyStatus {
            selected_jobs: Some(3),
            ..Default::default()
        });
        writer.apply(Event::Apply(with_status));
        let after = policies.resolve("reports", &BTreeMap::new()).0.settings;
        assert!(
            Arc::ptr_eq(&before, &after),
            "same generation: not prepared again"
        );
        let mut changed = p;
        changed.metadata.generation = Some(5);
        changed.spec.pod_spans = Some(true);
        writer.apply(Event::Apply(changed));
        assert!(
            policies
                .resolve("reports", &BTreeMap::new())
                .0
                .settings
                .pod_spans
        );
    }
}
