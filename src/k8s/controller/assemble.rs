//! A finished Job's pods go with it: before the Job is exported its traced pods are listed (a
//! read, as of the Job's own version or later, so each pod is seen at least as late as the Job
//! was), and the spans of those that ended join the Job's. The Job's mark then covers them: no
//! write per pod. Jobs of one namespace queued together share one list (`controller-uid in
//! (...)`), so a namespace of many Jobs isn't scanned once per Job. The list is read in pages of
//! [`crate::k8s::pages::OBJECTS`] pods, each pod only as far as its span needs ([`crate::core::slim`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, VersionMatch};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Deps, HeldPod, Pending, Work};
use crate::core::names;
use crate::core::slim::Slim;
use crate::core::spans::{self, Skip, SpanRecord};
use crate::k8s::pages::{self, Pages};

/// Lists made at once: each has a page of up to [`pages::OBJECTS`] pods (of up to 1.5 MiB each)
/// in hand at a time.
const CONCURRENT_LISTS: usize = 4;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Jobs taken from the queue at once, at most: those of one namespace share a list.
const BATCH: usize = 50;

/// Adds to each queued Job the spans of its finished pods, and passes it on to the export.
pub(super) async fn assemble_loop(
    deps: Arc<Deps>,
    mut jobs: mpsc::Receiver<Work>,
    export: mpsc::Sender<Work>,
    pending: Arc<Pending>,
    shutdown: CancellationToken,
) {
    let assembled = futures::stream::poll_fn(move |cx| jobs.poll_recv(cx))
        .ready_chunks(BATCH)
        .flat_map(|queued| futures::stream::iter(by_namespace(queued)))
        .map(|group| {
            let (deps, pending, shutdown) = (&deps, &pending, &shutdown);
            async move { with_pods(deps, pending, group, shutdown).await }
        })
        .buffer_unordered(CONCURRENT_LISTS);
    let mut assembled = std::pin::pin!(assembled);
    while let Some(group) = assembled.next().await {
        let Some(group) = group else { return };
        for job in group {
            if export.send(job).await.is_err() {
                return;
            }
        }
    }
}

/// The Jobs grouped by namespace, in the order each namespace first came.
fn by_namespace(jobs: Vec<Work>) -> Vec<Vec<Work>> {
    let mut groups: Vec<Vec<Work>> = Vec::new();
    for job in jobs {
        match groups.iter_mut().find(|g| g[0].namespace == job.namespace) {
            Some(group) => group.push(job),
            None => groups.push(vec![job]),
        }
    }
    groups
}

/// The list of the traced pods of `jobs` (one namespace's): by the Job's uid for one Job, else by
/// the set of them; as of the newest of their versions or later.
fn list_params(jobs: &[Work]) -> ListParams {
    let uids: Vec<&str> = jobs.iter().map(|j| j.uid.as_str()).collect();
    let (traced, job) = (names::TRACED_LABEL, names::JOB_UID_LABEL);
    let selector = if let [uid] = uids[..] {
        format!("{traced}=true,{job}={uid}")
    } else {
        format!("{traced}=true,{job} in ({})", uids.join(","))
    };
    let params = ListParams::default().labels(&selector);
    match newest_version(jobs) {
        Some(version) => params.at(&version).matching(VersionMatch::NotOlderThan),
        // A read of the latest state: not older than any of them either.
        None => params,
    }
}

/// The newest of the Jobs' `resourceVersion`s; none when one is missing or, of several, one
/// isn't the decimal integer the apiserver writes (then they can't be compared).
fn newest_version(jobs: &[Work]) -> Option<String> {
    if let [job] = jobs {
        return job.version.clone();
    }
    let versions: Option<Vec<u64>> = jobs
        .iter()
        .map(|j| j.version.as_deref()?.parse().ok())
        .collect();
    versions?.into_iter().max().map(|v| v.to_string())
}

/// `jobs` (of one namespace) with their finished pods' spans; `None` on shutdown. Retries the
/// list, with backoff, until the apiserver answers.
async fn with_pods(
    deps: &Deps,
    pending: &Pending,
    mut jobs: Vec<Work>,
    shutdown: &CancellationToken,
) -> Option<Vec<Work>> {
    let api: Api<Slim<Pod>> = Api::namespaced(deps.client.clone(), &jobs[0].namespace);
    let params = list_params(&jobs);
    let mut backoff = Duration::from_millis(500);
    let mut sorted = loop {
        match found(&api, &params).await {
            Ok(sorted) => break sorted,
            Err(e) => {
                let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
                tracing::warn!(error = %e, jobs = ?names, namespace = %jobs[0].namespace, retry_in = ?backoff, "could not list the pods of finished Jobs; will retry");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return None,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    for job in &mut jobs {
        let Found { finished, running } = sorted.remove(&job.uid).unwrap_or_default();
        let with_job = pending.with_job(
            &job.uid,
            finished.iter().map(|(uid, _, _)| uid.clone()),
            running,
        );
        for (uid, span, held) in finished {
            if with_job.contains(&uid) {
                job.spans.push(span);
                job.held_pods.extend(held);
            }
        }
    }
    Some(jobs)
}

/// What the list of `params` found, page by page: only the spans of the pods and the uids of
/// those still running are kept, never a page longer than it takes to read it.
async fn found(
    api: &Api<Slim<Pod>>,
    params: &ListParams,
) -> Result<HashMap<String, Found>, kube::Error> {
    let mut sorted = HashMap::new();
    let mut pages = Pages::new(api.clone(), params.clone(), pages::OBJECTS);
    while let Some(page) = pages.next().await {
        sort_pods(&mut sorted, page?);
    }
    Ok(sorted)
}

/// The pods a list found for one Job: the spans of those that ended, by pod uid, with their hold
/// if they are held, and the uids of those still running.
#[derive(Default)]
struct Found {
    finished: Vec<(String, SpanRecord, Option<HeldPod>)>,
    running: Vec<String>,
}

/// Adds the listed pods to `sorted`, by their Job's uid (their `controller-uid` label).
fn sort_pods(sorted: &mut HashMap<String, Found>, pods: Vec<Slim<Pod>>) {
    for Slim { object: pod, hold } in pods {
        let (Some(uid), Some(job)) = (
            pod.metadata.uid.clone(),
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(names::JOB_UID_LABEL))
                .cloned(),
        ) else {
            continue;
        };
        let found = sorted.entry(job).or_default();
        match spans::pod_span(&pod, None) {
            Ok(span) => {
                let held = hold
                    .zip(pod.metadata.name.clone())
                    .map(|(hold, name)| HeldPod {
                        name,
                        uid: uid.clone(),
                        hold,
                    });
                found.finished.push((uid, span, held));
            }
            Err(Skip::NotFinished) => found.running.push(uid),
            Err(Skip::NotTraced | Skip::Unsampled | Skip::Exported) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::controller::pending::tests::pod;

    fn job(namespace: &str, uid: &str, version: Option<&str>) -> Work {
        Work {
            kind: crate::k8s::controller::ObjectKind::Job,
            namespace: namespace.into(),
            owner: None,
            version: version.map(Into::into),
            ..pod(uid, "", false)
        }
    }

    fn uids(groups: &[Vec<Work>]) -> Vec<Vec<&str>> {
        groups
            .iter()
            .map(|g| g.iter().map(|j| j.uid.as_str()).collect())
            .collect()
    }

    #[test]
    fn a_listed_pods_hold_goes_with_its_span() {
        let pod = |name: &str, phase: &str, hold: Option<usize>| -> Slim<Pod> {
            let object = serde_json::from_value(serde_json::json!({
                "metadata": {
                    "name": name, "namespace": "ns", "uid": name,
                    "creationTimestamp": "2026-11-23T10:00:00Z",
                    "labels": { "jobtrace.dev/traced": "true",
                        "batch.kubernetes.io/controller-uid": "j" },
                    "annotations": {
                        "jobtrace.dev/trace-id": "4bf92f3577b34da6a3ce929d0e0e4736",
                        "jobtrace.dev/parent-span-id": "00f067aa0ba902b7",
                        "jobtrace.dev/trace-flags": "01"
                    }
                },
                "status": { "phase": phase }
            }))
            .unwrap();
            Slim { object, hold }
        };
        let mut sorted = HashMap::new();
        sort_pods(
            &mut sorted,
            vec![
                pod("held", "Succeeded", Some(1)),
                pod("free", "Succeeded", None),
                pod("runs", "Running", Some(0)),
            ],
        );
        let found = &sorted["j"];
        let holds: Vec<(&str, Option<&HeldPod>)> = found
            .finished
            .iter()
            .map(|(uid, _, held)| (uid.as_str(), held.as_ref()))
            .collect();
        let held = HeldPod {
            name: "held".into(),
            uid: "held".into(),
            hold: 1,
        };
        assert_eq!(holds, [("held", Some(&held)), ("free", None)]);
        assert_eq!(
            found.running,
            ["runs"],
            "released when it ends or goes, alone"
        );
    }

    #[test]
    fn jobs_are_grouped_by_namespace_in_the_order_they_came() {
        let queued = vec![
            job("a", "1", None),
            job("b", "2", None),
            job("a", "3", None),
            job("c", "4", None),
            job("b", "5", None),
        ];
        let groups = by_namespace(queued);
        assert_eq!(uids(&groups), [vec!["1", "3"], vec!["2", "5"], vec!["4"]]);
        assert!(
            groups
                .iter()
                .all(|g| g.iter().all(|j| j.namespace == g[0].namespace))
        );
    }

    #[test]
    fn one_job_is_listed_by_its_uid_as_of_its_version() {
        let params = list_params(&[job("a", "u1", Some("7"))]);
        assert_eq!(
            params.label_selector.as_deref(),
            Some("jobtrace.dev/traced=true,batch.kubernetes.io/controller-uid=u1")
        );
        assert_eq!(params.resource_version.as_deref(), Some("7"));
        assert!(matches!(
            params.version_match,
            Some(VersionMatch::NotOlderThan)
        ));
    }

    #[test]
    fn several_jobs_share_a_list_as_of_the_newest_of_their_versions() {
        let jobs = [
            job("a", "u1", Some("9")),
            job("a", "u2", Some("12")),
            job("a", "u3", Some("10")),
        ];
        let params = list_params(&jobs);
        assert_eq!(
            params.label_selector.as_deref(),
            Some("jobtrace.dev/traced=true,batch.kubernetes.io/controller-uid in (u1,u2,u3)")
        );
        // Numerically newest: "9" sorts after "12" as text.
        assert_eq!(params.resource_version.as_deref(), Some("12"));
        assert!(matches!(
            params.version_match,
            Some(VersionMatch::NotOlderThan)
        ));
    }

    #[test]
    fn versions_that_cant_be_compared_give_a_read_of_the_latest_state() {
        for versions in [[Some("9"), None], [Some("9"), Some("x7")]] {
            let jobs = [job("a", "u1", versions[0]), job("a", "u2", versions[1])];
            let params = list_params(&jobs);
            assert_eq!(params.resource_version, None, "{versions:?}");
            assert_eq!(params.version_match, None, "{versions:?}");
        }
    }
}
