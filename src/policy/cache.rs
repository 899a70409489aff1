//! What admission knows of the policies: a watch-backed copy kept by every replica, and the
//! cluster-wide defaults. Admission never waits on the apiserver: until the copy is first synced
//! (or when there is none), the defaults apply and the answer says so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use super::{Defaults, JobTracePolicy, Resolution, resolve};
use crate::context::Warning;

/// The policies as admission sees them. Cheap to clone.
#[derive(Clone)]
pub struct Policies {
    defaults: Arc<Defaults>,
    store: Option<Store<JobTracePolicy>>,
    synced: Arc<AtomicBool>,
}

impl Policies {
    /// Only the cluster-wide defaults: no policy is read.
    pub fn defaults_only(defaults: Defaults) -> Self {
        Self {
            defaults: Arc::new(defaults),
            store: None,
            synced: Arc::new(AtomicBool::new(true)),
        }
    }

    /// A fixed set of policies, synced from the start (benchmarks, tools that read them once).
    pub fn fixed(defaults: Defaults, policies: Vec<JobTracePolicy>) -> Self {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for policy in policies {
            writer.apply_watcher_event(&watcher::Event::InitApply(policy));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        Self {
            defaults: Arc::new(defaults),
            store: Some(store),
            synced: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Policies read through a watch (of `namespace`, or all), and the task that keeps them: the
    /// caller runs it for as long as the process serves.
    pub fn watch(
        client: Client,
        namespace: Option<&str>,
        defaults: Defaults,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let api: Api<JobTracePolicy> = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let (store, writer) = reflector::store();
        let synced = Arc::new(AtomicBool::new(false));
        let policies = Self {
            defaults: Arc::new(defaults),
            store: Some(store.clone()),
            synced: synced.clone(),
        };
        let task = async move {
            let ready = async move {
                if store.wait_until_ready().await.is_ok() {
                    synced.store(true, Ordering::Release);
                    tracing::info!(policies = store.len(), "policies synced");
                }
            };
            let stream = reflector::reflector(
                writer,
                watcher(api, watcher::Config::default()).default_backoff(),
            )
            .for_each(|event| async move {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "watching JobTracePolicies; the last known ones (or the cluster defaults) apply");
                }
            });
            futures::join!(ready, stream);
        };
        (policies, task)
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
        let Some(store) = self.store.as_ref().filter(|_| self.synced()) else {
            let warning = self.store.is_some().then(|| Warning {
                reason: crate::context::WarningReason::PoliciesNotSynced,
                message: "the JobTracePolicies are not loaded yet; the cluster defaults apply"
                    .to_owned(),
            });
            return (resolve(&self.defaults, [], labels), warning);
        };
        let policies = store.state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace));
        (
            resolve(&self.defaults, policies.iter().map(AsRef::as_ref), labels),
            None,
        )
    }

    /// The namespaces whose Jobs can all be traced (root traces on in one of their policies), or
    /// `None` when the defaults trace every Job: what the webhook's `matchConditions` must let
    /// through besides Jobs carrying context.
    pub fn namespaces_tracing_all_jobs(&self) -> Option<Vec<String>> {
        if self.defaults.root_traces.is_some() || self.defaults.request_context {
            return None;
        }
        let mut namespaces: Vec<String> = self
            .store
            .iter()
            .flat_map(Store::state)
            .filter(|p| p.spec.root_traces.is_some() || p.spec.request_context == Some(true))
            .filter_map(|p| p.metadata.namespace.clone())
            .collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        Some(namespaces)
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

    /// Policies backed by a store that `events` filled, synced or not.
    fn policies(events: &[Event<JobTracePolicy>], synced: bool) -> Policies {
        let (store, mut writer) = reflector::store();
        for event in events {
            writer.apply_watcher_event(event);
        }
        Policies {
            defaults: Arc::new(Defaults::default()),
            store: Some(store),
            synced: Arc::new(AtomicBool::new(synced)),
        }
    }

    #[test]
    fn until_synced_the_defaults_apply_with_a_warning() {
        let unsynced = policies(&[], false);
        let (resolution, warning) = unsynced.resolve("reports", &BTreeMap::new());
        assert_eq!(resolution.effective, Defaults::default());
        assert_eq!(warning.unwrap().reason.label(), "policies_not_synced");
        let (_, warning) =
            Policies::defaults_only(Defaults::default()).resolve("reports", &BTreeMap::new());
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
        let synced = policies(&events, true);
        let (resolution, warning) = synced.resolve("reports", &BTreeMap::new());
        assert!(warning.is_none());
        assert!(!resolution.effective.pod_spans);
        assert_eq!(
            resolution.effective.root_traces, None,
            "the other namespace's"
        );
        assert_eq!(
            synced.namespaces_tracing_all_jobs(),
            Some(vec!["headers".to_owned(), "other".to_owned()])
        );
        let all = Policies {
            defaults: Arc::new(Defaults {
                root_traces: Some(0.1),
                ..Defaults::default()
            }),
            ..synced
        };
        assert_eq!(
            all.namespaces_tracing_all_jobs(),
            None,
            "the defaults trace every Job"
        );
        let headers = Policies {
            defaults: Arc::new(Defaults {
                request_context: true,
                ..Defaults::default()
            }),
            ..all
        };
        assert_eq!(headers.namespaces_tracing_all_jobs(), None);
    }
}
