//! The controller: watches traced Jobs and pods, and when one reaches a terminal state (or is
//! deleted) exports its spans, then marks it `jobtrace.dev/exported`. Nothing is cached while a
//! Job runs: a restarted controller rebuilds the same spans from the objects, and finds the ones
//! it had not marked yet. A crash between export and mark repeats a span with the same ids; it
//! never loses one.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin::Readiness;
use crate::export::{ExportError, Exporter};
use crate::metrics::Metrics;
use crate::names;
use crate::selftrace::SelfTracer;
use crate::spans::{self, SpanRecord};

/// Spans sent in one OTLP request at most.
const MAX_BATCH: usize = 512;
/// How long the first span of a batch waits for others.
const BATCH_DELAY: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Job,
    Pod,
}

/// The spans of one object, waiting to be exported and the object marked.
#[derive(Debug)]
struct Work {
    kind: Kind,
    namespace: String,
    name: String,
    uid: String,
    deleted: bool,
    spans: Vec<SpanRecord>,
    /// When the object reached its terminal state, for the export-lag metric.
    finished: Timestamp,
}

/// What the controller needs.
pub struct Context {
    pub client: Client,
    pub exporter: Exporter,
    pub metrics: Arc<Metrics>,
    /// OTLP resource attributes of the exported spans.
    pub resource: Vec<(&'static str, String)>,
    pub instance: String,
    /// Only this namespace, when set.
    pub namespace: Option<String>,
    /// `/readyz`: not ready while a leading replica lists the traced objects for the first time.
    pub readiness: Arc<Readiness>,
    /// Records a span of jobtrace's own for each export, when set.
    pub tracer: Option<SelfTracer>,
}

/// Exports only while this replica holds the Lease, so two replicas never both export; loses
/// nothing when leadership moves, since the next leader finds the unmarked objects.
pub async fn run_as_leader(
    context: Arc<Context>,
    lease_namespace: &str,
    lease_name: &str,
    shutdown: CancellationToken,
) -> Result<(), kube_lease_manager::LeaseManagerError> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(context.client.clone(), lease_name)
        .with_namespace(lease_namespace)
        .with_identity(context.instance.clone())
        .with_duration(15)
        .with_grace(5)
        .build()
        .await?;
    let (mut leader, lease) = manager.watch().await;
    loop {
        context.metrics.leader.set(0);
        // A standby replica has nothing to sync: ready as soon as its webhook is.
        context.readiness.set_controller_synced();
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return Ok(()); },
                () = shutdown.cancelled() => { release(leader, lease).await; return Ok(()); }
            }
        }
        tracing::info!(instance = %context.instance, "leading: exporting spans");
        context.metrics.leader.set(1);
        let term = shutdown.child_token();
        let exporting = tokio::spawn(run(context.clone(), term.clone()));
        let reporting = tokio::spawn(crate::policy::status::report(
            context.client.clone(),
            context.namespace.clone(),
            term.clone(),
        ));
        loop {
            tokio::select! {
                changed = leader.changed() => {
                    if changed.is_err() || !*leader.borrow_and_update() { break; }
                }
                () = shutdown.cancelled() => break,
            }
        }
        term.cancel();
        let _ = exporting.await;
        let _ = reporting.await;
        if shutdown.is_cancelled() {
            context.metrics.leader.set(0);
            release(leader, lease).await;
            return Ok(());
        }
        tracing::warn!(instance = %context.instance, "lost the lease: stopped exporting");
    }
}

/// Gives the Lease up, so that another replica leads at once rather than when it expires.
async fn release(
    leader: tokio::sync::watch::Receiver<bool>,
    lease: tokio::task::JoinHandle<
        Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>,
    >,
) {
    // The lease task releases the Lease once nobody listens to it any more.
    drop(leader);
    match tokio::time::timeout(Duration::from_secs(5), lease).await {
        Ok(Ok(Ok(_))) => tracing::info!("Lease released"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the Lease; it expires"),
        Ok(Err(_)) | Err(_) => tracing::warn!("could not release the Lease in time; it expires"),
    }
}

/// What a watch saw.
#[derive(Debug)]
enum Seen {
    /// An object finished (or was deleted): its spans are to be exported.
    Finished(Work),
    /// A traced Job that is not finished.
    Running(String),
    /// A Job that needs nothing more (exported, or gone).
    Gone(String),
    /// A (re)list begins.
    Listing(Kind),
    /// A (re)list is complete.
    Listed(Kind),
}

/// Traced Jobs not finished yet, for the in-flight gauge; rebuilt on each re-list.
#[derive(Default)]
struct InFlight {
    jobs: HashSet<String>,
    listing: Option<HashSet<String>>,
}

impl InFlight {
    fn see(&mut self, seen: &Seen) {
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
            Seen::Finished(w) if w.kind == Kind::Job => {
                self.jobs.remove(&w.uid);
            }
            Seen::Listing(Kind::Job) => self.listing = Some(HashSet::new()),
            Seen::Listed(Kind::Job) => {
                if let Some(listed) = self.listing.take() {
                    self.jobs = listed;
                }
            }
            _ => {}
        }
    }
}

/// Watches and exports until `shutdown`; then exports what is queued, if the collector takes it.
pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    context.readiness.set_controller_syncing();
    // A short queue: when the collector is slow the watch waits, instead of memory growing.
    let (queue, work) = mpsc::channel::<Work>(512);
    let pending = Arc::new(Mutex::new(HashSet::<String>::new()));
    let exporting = tokio::spawn(export_loop(
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
    let jobs = watch::<Job>(jobs, config.clone(), Kind::Job);
    let pods = watch::<Pod>(pods, config, Kind::Pod);
    let mut events = std::pin::pin!(futures::stream::select(jobs, pods));
    let mut in_flight = InFlight::default();
    let mut listed = (false, false);
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
            Seen::Listed(kind) => {
                match kind {
                    Kind::Job => listed.0 = true,
                    Kind::Pod => listed.1 = true,
                }
                if listed == (true, true) {
                    context.readiness.set_controller_synced();
                }
            }
            Seen::Finished(work) => {
                if pending
                    .lock()
                    .expect("not poisoned")
                    .insert(work.uid.clone())
                {
                    context.metrics.controller_pending.inc();
                    if queue.send(work).await.is_err() {
                        break;
                    }
                }
            }
            Seen::Running(_) | Seen::Gone(_) | Seen::Listing(_) => {}
        }
    }
    context.metrics.jobs_in_flight.set(0);
    drop(queue);
    let _ = exporting.await;
}

/// What one object's watch events mean for the controller.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: Kind,
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
trait ToWork {
    fn seen(&self, kind: Kind, deleted: bool) -> Option<Seen>;
}

impl ToWork for Job {
    fn seen(&self, kind: Kind, deleted: bool) -> Option<Seen> {
        let now = deleted.then(Timestamp::now);
        match spans::job_spans(self, now) {
            Ok(spans) => {
                let finished = spans.first()?.end;
                work(self, kind, deleted, spans, finished).map(Seen::Finished)
            }
            Err(spans::Skip::NotFinished) => self.metadata.uid.clone().map(Seen::Running),
            Err(_) => self.metadata.uid.clone().map(Seen::Gone),
        }
    }
}

impl ToWork for Pod {
    fn seen(&self, kind: Kind, deleted: bool) -> Option<Seen> {
        let now = deleted.then(Timestamp::now);
        let span = spans::pod_span(self, now).ok()?;
        let finished = span.end;
        work(self, kind, deleted, vec![span], finished).map(Seen::Finished)
    }
}

fn work<K: Resource>(
    object: &K,
    kind: Kind,
    deleted: bool,
    spans: Vec<SpanRecord>,
    finished: Timestamp,
) -> Option<Work> {
    Some(Work {
        kind,
        namespace: object.meta().namespace.clone()?,
        name: object.meta().name.clone()?,
        uid: object.meta().uid.clone()?,
        deleted,
        spans,
        finished,
    })
}

/// Batches queued work, exports it, and marks the objects; retries what the collector couldn't
/// take, with backoff, for as long as the process runs.
async fn export_loop(
    context: Arc<Context>,
    mut work: mpsc::Receiver<Work>,
    pending: Arc<Mutex<HashSet<String>>>,
    shutdown: CancellationToken,
) {
    let recorder = Recorder::new(
        context.client.clone(),
        Reporter {
            controller: "jobtrace".to_owned(),
            instance: Some(context.instance.clone()),
        },
    );
    let mut batch: Vec<Work> = Vec::new();
    let mut backoff = Duration::from_millis(500);
    loop {
        if batch.is_empty() {
            match work.recv().await {
                Some(w) => batch.push(w),
                None => return,
            }
        }
        // Fill the batch for a moment, without waiting on an empty queue forever.
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        while batch.iter().map(|w| w.spans.len()).sum::<usize>() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, work.recv()).await {
                Ok(Some(w)) => batch.push(w),
                Ok(None) | Err(_) => break,
            }
        }
        let spans: Vec<SpanRecord> = batch.iter().flat_map(|w| w.spans.iter().cloned()).collect();
        let request = crate::export::request(&spans, &context.resource);
        let started = Instant::now();
        let own = context.tracer.as_ref().map(|t| t.background("export"));
        let outcome = context.exporter.export(request).await;
        if let (Some(tracer), Some(span)) = (&context.tracer, own) {
            record_export(tracer, span, spans.len(), batch.len(), &outcome);
        }
        match outcome {
            Ok(accepted) => {
                backoff = Duration::from_millis(500);
                context.metrics.spans_exported.inc_by(spans.len() as u64);
                if accepted.rejected > 0 {
                    tracing::warn!(
                        rejected = accepted.rejected,
                        "the collector rejected part of a batch"
                    );
                    context
                        .metrics
                        .spans_dropped
                        .inc_by(accepted.rejected.unsigned_abs());
                }
                tracing::debug!(spans = spans.len(), elapsed = ?started.elapsed(), "exported");
                finish(
                    &context,
                    &recorder,
                    std::mem::take(&mut batch),
                    "true",
                    &pending,
                )
                .await;
            }
            Err(ExportError::Permanent(message)) => {
                tracing::error!(%message, spans = spans.len(), "the collector refused spans; dropping them");
                context.metrics.spans_dropped.inc_by(spans.len() as u64);
                finish(
                    &context,
                    &recorder,
                    std::mem::take(&mut batch),
                    "dropped",
                    &pending,
                )
                .await;
            }
            Err(ExportError::Retryable {
                message,
                retry_after,
            }) => {
                context.metrics.export_retries.inc();
                context.metrics.spans_retried.inc_by(spans.len() as u64);
                let wait = retry_after.unwrap_or(backoff).min(MAX_BACKOFF);
                tracing::warn!(%message, retry_in = ?wait, spans = spans.len(), endpoint = context.exporter.endpoint(), "export failed; will retry");
                backoff = (backoff * 2).min(MAX_BACKOFF);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// Finishes jobtrace's own span for one export.
fn record_export(
    tracer: &SelfTracer,
    mut span: crate::selftrace::OwnSpan,
    spans: usize,
    objects: usize,
    outcome: &Result<crate::export::Accepted, ExportError>,
) {
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    span.set("jobtrace.export.spans", count(spans));
    span.set("jobtrace.export.objects", count(objects));
    match outcome {
        Ok(_) => span.set("jobtrace.export.result", "exported"),
        Err(ExportError::Permanent(m)) => {
            span.set("jobtrace.export.result", "dropped");
            span.fail(m.clone());
        }
        Err(ExportError::Retryable { message, .. }) => {
            span.set("jobtrace.export.result", "retry");
            span.fail(message.clone());
        }
    }
    tracer.record(span);
}

/// Marks exported objects, records an Event on each Job, and forgets them.
async fn finish(
    context: &Context,
    recorder: &Recorder,
    batch: Vec<Work>,
    outcome: &'static str,
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
                if w.kind == Kind::Job && outcome == "true" {
                    publish(recorder, &w).await;
                }
            }
            pending.lock().expect("not poisoned").remove(&w.uid);
            context.metrics.controller_pending.dec();
        })
        .await;
}

/// A JSON patch that only applies to the very object exported (same uid).
async fn mark(context: &Context, w: &Work, outcome: &str) -> Result<(), kube::Error> {
    let patch: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": "/metadata/uid", "value": w.uid },
        { "op": "add", "path": "/metadata/annotations/jobtrace.dev~1exported", "value": outcome },
    ]))
    .expect("a valid patch");
    let result = match w.kind {
        Kind::Job => apply_patch::<Job>(context, w, patch).await,
        Kind::Pod => apply_patch::<Pod>(context, w, patch).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_jobs_follow_the_watch_and_a_relist_forgets_the_missed_deletions() {
        let mut in_flight = InFlight::default();
        in_flight.see(&Seen::Listing(Kind::Job));
        in_flight.see(&Seen::Running("a".into()));
        in_flight.see(&Seen::Running("b".into()));
        in_flight.see(&Seen::Listed(Kind::Job));
        assert_eq!(in_flight.jobs.len(), 2);
        in_flight.see(&Seen::Gone("a".into()));
        in_flight.see(&Seen::Running("c".into()));
        assert_eq!(in_flight.jobs.len(), 2);
        // The watch broke and relists: "b" was deleted meanwhile and is not listed again.
        in_flight.see(&Seen::Listing(Kind::Job));
        in_flight.see(&Seen::Running("c".into()));
        assert_eq!(
            in_flight.jobs.len(),
            2,
            "the old set holds until the list is done"
        );
        in_flight.see(&Seen::Listed(Kind::Job));
        assert_eq!(in_flight.jobs, HashSet::from(["c".to_owned()]));
        // A pod's list doesn't touch the Jobs.
        in_flight.see(&Seen::Listing(Kind::Pod));
        in_flight.see(&Seen::Listed(Kind::Pod));
        assert_eq!(in_flight.jobs.len(), 1);
    }
}
