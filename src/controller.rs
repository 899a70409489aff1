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

use crate::export::{ExportError, Exporter};
use crate::metrics::Metrics;
use crate::names;
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
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return Ok(()); },
                () = shutdown.cancelled() => { lease.abort(); return Ok(()); }
            }
        }
        tracing::info!(instance = %context.instance, "leading: exporting spans");
        let term = shutdown.child_token();
        let exporting = tokio::spawn(run(context.clone(), term.clone()));
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
        if shutdown.is_cancelled() {
            lease.abort();
            return Ok(());
        }
        tracing::warn!(instance = %context.instance, "lost the lease: stopped exporting");
    }
}

/// Watches and exports until `shutdown`; then exports what is queued, if the collector takes it.
pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
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
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            next = events.next() => match next {
                None => break,
                Some(Err(e)) => tracing::warn!(error = %e, "watch error; retrying"),
                Some(Ok(work)) => {
                    if pending.lock().expect("not poisoned").insert(work.uid.clone()) {
                        context.metrics.controller_pending.inc();
                        if queue.send(work).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    }
    drop(queue);
    let _ = exporting.await;
}

/// Terminal or deleted objects of one kind, as work items.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: Kind,
) -> impl futures::Stream<Item = Result<Work, watcher::Error>> + Send
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
            let (objects, deleted) = match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => (vec![o], false),
                watcher::Event::Delete(o) => (vec![o], true),
                watcher::Event::Init | watcher::Event::InitDone => (Vec::new(), false),
            };
            futures::stream::iter(
                objects
                    .into_iter()
                    .filter_map(move |o| o.to_work(kind, deleted))
                    .map(Ok),
            )
        })
        .try_flatten()
}

/// Builds the work for one object, when it has spans to export.
trait ToWork {
    fn to_work(&self, kind: Kind, deleted: bool) -> Option<Work>;
}

impl ToWork for Job {
    fn to_work(&self, kind: Kind, deleted: bool) -> Option<Work> {
        let now = deleted.then(Timestamp::now);
        let spans = spans::job_spans(self, now).ok()?;
        let finished = spans.first()?.end;
        work(self, kind, deleted, spans, finished)
    }
}

impl ToWork for Pod {
    fn to_work(&self, kind: Kind, deleted: bool) -> Option<Work> {
        let now = deleted.then(Timestamp::now);
        let span = spans::pod_span(self, now).ok()?;
        let finished = span.end;
        work(self, kind, deleted, vec![span], finished)
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
        match context.exporter.export(request).await {
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
