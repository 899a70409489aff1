//! Batching: queued work gathered into OTLP requests of up to 512 spans, exported, retried with
//! backoff while the collector can't take them, and recorded as jobtrace's own spans.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::mark::finish;
use super::{Context, Pending, Work};
use crate::export::ExportError;
use crate::names::Exported;
use crate::selftrace::SelfTracer;
use crate::spans::SpanRecord;

/// Spans sent in one OTLP request at most.
const MAX_BATCH: usize = 512;
/// How long the first span of a batch waits for others.
const BATCH_DELAY: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Batches queued work, exports it, and marks the objects; retries what the collector couldn't
/// take, with backoff, for as long as the process runs.
pub(super) async fn export_loop(
    context: Arc<Context>,
    mut work: mpsc::Receiver<Work>,
    pending: Arc<Pending>,
    shutdown: CancellationToken,
) {
    // Events only when asked for: each is a write, and the recorder keeps each for minutes.
    let recorder = context.record_events.then(|| {
        Recorder::new(
            context.client.clone(),
            Reporter {
                controller: "jobtrace".to_owned(),
                instance: Some(context.instance.clone()),
            },
        )
    });
    let recorder = recorder.as_ref();
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
        if spans.is_empty() {
            // Only finalizers to release.
            finish(
                &context,
                recorder,
                std::mem::take(&mut batch),
                Exported::Accepted,
                &pending,
            )
            .await;
            continue;
        }
        let started = Instant::now();
        let own = context.tracer.as_ref().map(|t| t.background("export"));
        let outcome = export(&context, &spans).await;
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
                    recorder,
                    std::mem::take(&mut batch),
                    Exported::Accepted,
                    &pending,
                )
                .await;
            }
            Err(ExportError::Permanent(message)) => {
                tracing::error!(%message, spans = spans.len(), "the collector refused spans; dropping them");
                context.metrics.spans_dropped.inc_by(spans.len() as u64);
                finish(
                    &context,
                    recorder,
                    std::mem::take(&mut batch),
                    Exported::Dropped,
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
                release_expired(&context, recorder, &mut batch, &pending).await;
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

/// Exports `spans` in requests of [`MAX_BATCH`] at most (a Job of many pods brings more at
/// once); fails as the first request that fails, to retry them all.
async fn export(
    context: &Context,
    spans: &[SpanRecord],
) -> Result<crate::export::Accepted, ExportError> {
    let mut accepted = crate::export::Accepted::default();
    for chunk in spans.chunks(MAX_BATCH) {
        let request = crate::export::request(chunk, &context.resource);
        accepted.rejected += context.exporter.export(request).await?.rejected;
    }
    Ok(accepted)
}

/// Objects held for export and being deleted for longer than the hold timeout leave the batch
/// unexported: their spans are dropped (counted) and their finalizers released, so a collector
/// that is down never blocks a deletion for longer than that.
async fn release_expired(
    context: &Context,
    recorder: Option<&Recorder>,
    batch: &mut Vec<Work>,
    pending: &Pending,
) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let timeout = k8s_openapi::jiff::SignedDuration::try_from(context.hold_timeout)
        .unwrap_or(k8s_openapi::jiff::SignedDuration::MAX);
    let (expired, kept): (Vec<Work>, Vec<Work>) =
        std::mem::take(batch).into_iter().partition(|w| {
            let since = w.deleting_since.or_else(|| pending.deleting_since(&w.uid));
            since.is_some_and(|t| now.duration_since(t) >= timeout)
        });
    *batch = kept;
    if expired.is_empty() {
        return;
    }
    let spans: usize = expired.iter().map(|w| w.spans.len()).sum();
    tracing::error!(
        objects = expired.len(),
        spans,
        hold_timeout = ?context.hold_timeout,
        "held objects deleted longer than the hold timeout ago are released unexported; their spans are dropped"
    );
    context.metrics.spans_dropped.inc_by(spans as u64);
    context.metrics.holds_expired.inc_by(expired.len() as u64);
    finish(context, recorder, expired, Exported::Dropped, pending).await;
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
