//! The controller: watches traced Jobs and pods, and when one reaches a terminal state (or is
//! deleted) exports its spans, then marks it `jobtrace.dev/exported`. Nothing is cached while a
//! Job runs: a restarted controller rebuilds the same spans from the objects, and finds the ones
//! it had not marked yet. A crash between export and mark repeats a span with the same ids; it
//! never loses one. Jobs and pods are read slim ([`crate::core::slim`]: only what the spans use)
//! and listed in small pages ([`crate::k8s::pages`]), so a tenant's fat objects cost it bounded
//! memory.
//!
//! The stages, one file each: `watch` (what the events mean), `assemble` (a finished Job's
//! pods listed and their spans joined to the Job's), `export_loop` (batches delivered over
//! OTLP, retried) and `mark` (the Job's `jobtrace.dev/exported`, and the holds released).
//! Beside them: `pending` (what is queued, and which pods go with their Job), `holds` (the
//! keeper that ends every hold), `leader` (the Lease) and `sync` (`/syncz`).

mod assemble;
mod export_loop;
mod holds;
mod leader;
mod mark;
mod pending;
mod sync;
mod watch;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use leader::{LeaseSettings, run_as_leader};
pub use sync::{ControllerSync, SyncState};

use crate::core::names;
use crate::core::slim::Slim;
use crate::core::spans::SpanRecord;
use crate::k8s::metrics::Metrics;
use crate::k8s::otlp::Exporter;
use crate::k8s::selftrace::SelfTracer;
use pending::{Pending, PodExport};
use watch::{InFlight, Seen};

/// Which kind of object a watch event or a piece of work is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjectKind {
    Job,
    Pod,
}

/// The spans of one object, waiting to be exported and the object marked.
#[derive(Debug)]
struct Work {
    kind: ObjectKind,
    namespace: String,
    name: String,
    uid: String,
    /// A pod's Job (its uid), if it has one.
    owner: Option<String>,
    /// The object's `resourceVersion` as the watch saw it: a Job's pods are listed as of it, or
    /// later.
    version: Option<String>,
    deleted: bool,
    /// No spans: the object only holds jobtrace's finalizer still (exported before, say by a
    /// mark that raced another write), to be released.
    spans: Vec<SpanRecord>,
    /// Where the object's `jobtrace.dev/export` finalizer is in its list, if it holds one: the
    /// mark removes it in the same write.
    hold: Option<usize>,
    /// When the object reached its terminal state, for the export-lag metric.
    finished: Timestamp,
    /// A Job's held pods whose spans go with its own: released once it is marked.
    held_pods: Vec<HeldPod>,
}

/// A pod that holds jobtrace's finalizer, to release.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeldPod {
    name: String,
    uid: String,
    /// Where the finalizer is among the pod's finalizers, as last seen.
    hold: usize,
}

/// What the controller needs.
pub struct Deps {
    pub client: Client,
    pub exporter: Exporter,
    pub metrics: Arc<Metrics>,
    /// OTLP resource attributes of the exported spans.
    pub resource: Vec<(String, String)>,
    pub instance: String,
    /// Only this namespace, when set.
    pub namespace: Option<String>,
    /// How far the watches have got, for `/syncz` and `jobtrace_controller_listing`.
    pub sync: Arc<ControllerSync>,
    /// Records a span of jobtrace's own for each export, when set.
    pub tracer: Option<SelfTracer>,
    /// Keep the status of the `JobTracePolicy` objects while exporting (only where the webhook
    /// reads them: a status would otherwise claim a policy in force that nothing applies).
    pub policy_status: bool,
    /// How long a held object being deleted waits for its export at most (then `holds` releases
    /// it, exported or not).
    pub hold_timeout: std::time::Duration,
    /// Pods may be held too (`--hold-pods`): the hold keeper watches the traced pods' metadata.
    pub hold_pods: bool,
    /// Record a `TraceExported` Event on each exported Job (a write per Job, so off by default).
    pub record_events: bool,
}

/// Watches and exports until `shutdown`; then exports what is queued, if the collector takes it.
/// Keeps the policies' status meanwhile, when its dependencies ask for it.
pub async fn run(deps: Arc<Deps>, shutdown: CancellationToken) {
    deps.sync.leading();
    let reporting_stop = shutdown.child_token();
    let reporting = deps.policy_status.then(|| {
        tokio::spawn(crate::k8s::policy::status::report(
            deps.client.clone(),
            deps.namespace.clone(),
            reporting_stop.clone(),
        ))
    });
    // Short queues: when the collector is slow the watch waits, instead of memory growing.
    let (queue, work) = mpsc::channel::<Work>(512);
    let (jobs_queue, jobs_work) = mpsc::channel::<Work>(512);
    let pending = Arc::new(Pending::default());
    let exporting = tokio::spawn(export_loop::export_loop(
        deps.clone(),
        work,
        pending.clone(),
        shutdown.clone(),
    ));
    let assembling = tokio::spawn(assemble::assemble_loop(
        deps.clone(),
        jobs_work,
        queue.clone(),
        pending.clone(),
        shutdown.clone(),
    ));
    let keeping = tokio::spawn(holds::keep(deps.clone(), shutdown.child_token()));
    // A pod's span waits for its Job's unless the pod is deleted first: which Jobs are still
    // running is known once the Jobs are listed, so the pods are watched from then on.
    let jobs_listed = Arc::new(tokio::sync::Notify::new());
    let (jobs, pods) = watches(&deps, jobs_listed.clone());
    let mut events = std::pin::pin!(futures::stream::select(jobs, pods));
    let mut in_flight = InFlight::default();
    loop {
        let seen = tokio::select! {
            () = shutdown.cancelled() => break,
            next = events.next() => match next {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watch error; retrying");
                    continue;
                }
                Some(Ok(seen)) => seen,
            }
        };
        in_flight.see(&seen);
        deps.metrics
            .jobs_in_flight
            .set(i64::try_from(in_flight.jobs.len()).unwrap_or(i64::MAX));
        match seen {
            Seen::Listing(kind) => deps.sync.listing(kind),
            Seen::Listed(kind) => {
                deps.sync.listed(kind);
                if kind == ObjectKind::Job {
                    jobs_listed.notify_one();
                    pending.forget_gone(&in_flight.jobs);
                }
            }
            Seen::Finished(mut work) => {
                if work.kind == ObjectKind::Pod {
                    let running = work
                        .owner
                        .as_ref()
                        .is_some_and(|job| in_flight.jobs.contains(job));
                    if pending.pod(&work, running) == PodExport::WithJob {
                        // Its span goes with its Job's, which releases it; or went already (its
                        // Job exported before, by this replica or another): then only its hold
                        // is left to release.
                        let job_queued = work.owner.as_ref().is_some_and(|job| pending.has(job));
                        if work.hold.is_none() || running || job_queued {
                            continue;
                        }
                        work.spans.clear();
                    }
                }
                if pending.add(&work) {
                    deps.metrics.controller_pending.inc();
                    // A Job with spans first has its pods' spans added; the rest goes as it is.
                    let to = if work.kind == ObjectKind::Job && !work.spans.is_empty() {
                        &jobs_queue
                    } else {
                        &queue
                    };
                    if to.send(work).await.is_err() {
                        break;
                    }
                }
            }
            Seen::Running(_) | Seen::Gone(_) => {}
        }
    }
    deps.metrics.jobs_in_flight.set(0);
    reporting_stop.cancel();
    drop(jobs_queue);
    let _ = assembling.await;
    drop(queue);
    let _ = exporting.await;
    let _ = keeping.await;
    if let Some(reporting) = reporting {
        let _ = reporting.await;
    }
}

/// The watches of traced Jobs and of traced pods; the pods' begins once `jobs_listed` is told.
fn watches(
    deps: &Deps,
    jobs_listed: Arc<tokio::sync::Notify>,
) -> (
    impl futures::Stream<Item = Result<Seen, watcher::Error>> + Send + use<>,
    impl futures::Stream<Item = Result<Seen, watcher::Error>> + Send + use<>,
) {
    // Small pages: a traced Job or pod may be 1.5 MiB, and a page arrives whole.
    let config = watcher::Config::default()
        .labels(&format!("{}=true", names::TRACED_LABEL))
        .page_size(crate::k8s::pages::OBJECTS);
    let (jobs, pods) = match &deps.namespace {
        Some(ns) => (
            Api::namespaced(deps.client.clone(), ns),
            Api::namespaced(deps.client.clone(), ns),
        ),
        None => (Api::all(deps.client.clone()), Api::all(deps.client.clone())),
    };
    let jobs = watch::events::<Slim<Job>>(jobs, config.clone(), ObjectKind::Job);
    let pods =
        futures::stream::once(async move { jobs_listed.notified().await }).flat_map(move |()| {
            watch::events::<Slim<Pod>>(pods.clone(), config.clone(), ObjectKind::Pod)
        });
    (jobs, pods)
}
