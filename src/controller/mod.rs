//! The controller: watches traced Jobs and pods, and when one reaches a terminal state (or is
//! deleted) exports its spans, then marks it `jobtrace.dev/exported`. Nothing is cached while a
//! Job runs: a restarted controller rebuilds the same spans from the objects, and finds the ones
//! it had not marked yet. A crash between export and mark repeats a span with the same ids; it
//! never loses one.

mod batch;
mod leader;
mod mark;
mod sync;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use leader::run_as_leader;
pub use sync::{ControllerSync, SyncState};

use crate::export::Exporter;
use crate::metrics::Metrics;
use crate::names;
use crate::selftrace::SelfTracer;
use crate::spans::SpanRecord;
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
    deleted: bool,
    /// No spans: the object only holds jobtrace's finalizer still (exported before, say by a
    /// mark that raced another write), to be released.
    spans: Vec<SpanRecord>,
    /// Where the object's `jobtrace.dev/export` finalizer is in its list, if it holds one: the
    /// mark removes it in the same write.
    hold: Option<usize>,
    /// For a held object being deleted: since when. Its hold ends the controller's hold timeout
    /// later, exported or not.
    deleting_since: Option<Timestamp>,
    /// When the object reached its terminal state, for the export-lag metric.
    finished: Timestamp,
}

/// The objects queued or being exported, by uid, each with the time its deletion began if it is
/// held for export: a Job queued when it finished and deleted while its export retries gets its
/// hold timeout all the same.
#[derive(Default)]
struct Pending(Mutex<HashMap<String, Option<Timestamp>>>);

impl Pending {
    /// Records `work`; `true` when it is new (to be queued), `false` when it was queued already
    /// (its deletion, if it began since, is recorded).
    fn add(&self, work: &Work) -> bool {
        let mut pending = self.0.lock().expect("not poisoned");
        if let Some(deleting) = pending.get_mut(&work.uid) {
            if deleting.is_none() {
                *deleting = work.deleting_since;
            }
            return false;
        }
        pending.insert(work.uid.clone(), work.deleting_since);
        true
    }

    /// Since when the held object `uid` is being deleted, as far as the watch has seen.
    fn deleting_since(&self, uid: &str) -> Option<Timestamp> {
        self.0
            .lock()
            .expect("not poisoned")
            .get(uid)
            .copied()
            .flatten()
    }

    fn remove(&self, uid: &str) {
        self.0.lock().expect("not poisoned").remove(uid);
    }
}

/// What the controller needs.
pub struct Context {
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
    /// How long a held object being deleted waits for its export at most.
    pub hold_timeout: std::time::Duration,
}

/// Watches and exports until `shutdown`; then exports what is queued, if the collector takes it.
/// Keeps the policies' status meanwhile, when the context asks for it.
pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    context.sync.leading();
    let reporting_stop = shutdown.child_token();
    let reporting = context.policy_status.then(|| {
        tokio::spawn(crate::policy::status::report(
            context.client.clone(),
            context.namespace.clone(),
            reporting_stop.clone(),
        ))
    });
    // A short queue: when the collector is slow the watch waits, instead of memory growing.
    let (queue, work) = mpsc::channel::<Work>(512);
    let pending = Arc::new(Pending::default());
    let exporting = tokio::spawn(batch::export_loop(
        context.clone(),
        work,
        pending.clone(),
        shutdown.clone(),
    ));
    let config = watcher::Config::default()
        .labels(&format!("{}=true", names::TRACED_LABEL))
        .page_size(100);
    let (jobs, pods) = match &context.namespace {
        Some(ns) => (
            Api::namespaced(context.client.clone(), ns),
            Api::namespaced(context.client.clone(), ns),
        ),
        None => (
            Api::all(context.client.clone()),
            Api::all(context.client.clone()),
        ),
    };
    let jobs = watch::events::<Job>(jobs, config.clone(), ObjectKind::Job);
    let pods = watch::events::<Pod>(pods, config, ObjectKind::Pod);
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
        context
            .metrics
            .jobs_in_flight
            .set(i64::try_from(in_flight.jobs.len()).unwrap_or(i64::MAX));
        match seen {
            Seen::Listing(kind) => context.sync.listing(kind),
            Seen::Listed(kind) => context.sync.listed(kind),
            Seen::Finished(work) => {
                if pending.add(&work) {
                    context.metrics.controller_pending.inc();
                    if queue.send(work).await.is_err() {
                        break;
                    }
                }
            }
            Seen::Running(_) | Seen::Gone(_) => {}
        }
    }
    context.metrics.jobs_in_flight.set(0);
    reporting_stop.cancel();
    drop(queue);
    let _ = exporting.await;
    if let Some(reporting) = reporting {
        let _ = reporting.await;
    }
}
