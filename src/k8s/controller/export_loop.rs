//! The export loop: queued work gathered into batches of up to 512 spans, delivered (in requests
//! sized by their bytes; an object the collector refuses dropped alone), retried with backoff
//! while the collector can't take them, and recorded as jobtrace's own spans.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::mark::finish;
use super::{Deps, Pending, Work};
use crate::core::names::Exported;
use crate::core::spans::SpanRecord;
use crate::k8s::metrics::OutcomeLabels;
use crate::k8s::otlp::{Delivery, ExportError, Fate};
use crate::k8s::selftrace::SelfTracer;

/// Spans gathered in one batch at most (a Job of many pods brings more at once).
const MAX_BATCH: usize = 512;
/// How long the first span of a batch waits for others.
const BATCH_DELAY: Duration = Duration::from_millis(200);
/// The first wait after a failed export, and the least one.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Batches queued work, exports it, and marks the objects; retries what the collector couldn't
/// take, with backoff, for as long as the process runs.
pub(super) async fn export_loop(
    deps: Arc<Deps>,
    mut work: mpsc::Receiver<Work>,
    pending: Arc<Pending>,
    shutdown: CancellationToken,
) {
    // Events only when asked for: each is a write, and the recorder keeps each for minutes.
    let recorder = deps.record_events.then(|| {
        Recorder::new(
            deps.client.clone(),
            Reporter {
                controller: "jobtrace".to_owned(),
                instance: Some(deps.instance.clone()),
            },
        )
    });
    let recorder = recorder.as_ref();
    let mut batch: Vec<Work> = Vec::new();
    let mut backoff = MIN_BACKOFF;
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
        if batch.iter().all(|w| w.spans.is_empty()) {
            // Only finalizers to release.
            finish(
                &deps,
                recorder,
                std::mem::take(&mut batch),
                Exported::Accepted,
                &pending,
            )
            .await;
            continue;
        }
        let started = Instant::now();
        let own = deps.tracer.as_ref().map(|t| t.background("export"));
        let objects: Vec<&[SpanRecord]> = batch.iter().map(|w| w.spans.as_slice()).collect();
        let delivery = deps.exporter.deliver(&objects, &deps.resource).await;
        drop(objects);
        if let (Some(tracer), Some(span)) = (&deps.tracer, own) {
            record_export(tracer, span, &batch, &delivery);
        }
        let (left, retry) = settle(&deps, recorder, batch, delivery, &pending, started).await;
        batch = left;
        let Some(error) = retry else {
            backoff = MIN_BACKOFF;
            continue;
        };
        let spans: usize = batch.iter().map(|w| w.spans.len()).sum();
        deps.metrics.export_retries.inc();
        deps.metrics.spans_retried.inc_by(spans as u64);
        let wait = retry_delay(error.retry_after(), backoff);
        if let ExportError::Unauthorized(message) = &error {
            tracing::error!(%message, retry_in = ?wait, spans, endpoint = deps.exporter.endpoint(), "the collector refused jobtrace's credentials; spans are kept and retried (held Jobs are released at the hold timeout)");
        } else {
            tracing::warn!(%error, retry_in = ?wait, spans, endpoint = deps.exporter.endpoint(), "export failed; will retry");
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Counts what a delivery came to, and marks the objects accepted and those refused for good;
/// the objects left to retry, and why.
async fn settle(
    deps: &Deps,
    recorder: Option<&Recorder>,
    batch: Vec<Work>,
    delivery: Delivery,
    pending: &Pending,
    started: Instant,
) -> (Vec<Work>, Option<ExportError>) {
    for outcome in &delivery.requests {
        deps.metrics
            .export_requests
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }
    if delivery.rejected > 0 {
        tracing::warn!(
            rejected = delivery.rejected,
            "the collector rejected part of a batch"
        );
        deps.metrics
            .spans_dropped
            .inc_by(delivery.rejected.unsigned_abs());
    }
    let Sorted {
        accepted,
        dropped,
        pending: retried,
    } = sort(batch, delivery.fates);
    if !accepted.is_empty() {
        let spans: usize = accepted.iter().map(|w| w.spans.len()).sum();
        deps.metrics.spans_exported.inc_by(spans as u64);
        tracing::debug!(spans, objects = accepted.len(), elapsed = ?started.elapsed(), "exported");
        finish(deps, recorder, accepted, Exported::Accepted, pending).await;
    }
    if !dropped.is_empty() {
        for (w, message) in &dropped {
            tracing::error!(%message, namespace = %w.namespace, object = %w.name, spans = w.spans.len(), "the collector refused the spans of one object; dropping them");
        }
        let dropped: Vec<Work> = dropped.into_iter().map(|(w, _)| w).collect();
        let spans: usize = dropped.iter().map(|w| w.spans.len()).sum();
        deps.metrics.spans_dropped.inc_by(spans as u64);
        finish(deps, recorder, dropped, Exported::Dropped, pending).await;
    }
    (retried, delivery.retry)
}

/// The wait before the next attempt: the collector's requested delay when it gave one of at least
/// [`MIN_BACKOFF`], else the backoff (so a `Retry-After: 0`, or a delay of nothing, never makes a
/// loop without pause); at most [`MAX_BACKOFF`].
fn retry_delay(requested: Option<Duration>, backoff: Duration) -> Duration {
    requested
        .filter(|d| *d >= MIN_BACKOFF)
        .unwrap_or(backoff)
        .clamp(MIN_BACKOFF, MAX_BACKOFF)
}

/// A batch sorted by what became of each object's spans.
struct Sorted {
    accepted: Vec<Work>,
    /// With why the collector refused it.
    dropped: Vec<(Work, String)>,
    pending: Vec<Work>,
}

fn sort(batch: Vec<Work>, fates: Vec<Fate>) -> Sorted {
    let mut sorted = Sorted {
        accepted: Vec::new(),
        dropped: Vec::new(),
        pending: Vec::new(),
    };
    for (w, fate) in batch.into_iter().zip(fates) {
        match fate {
            Fate::Accepted => sorted.accepted.push(w),
            Fate::Dropped(message) => sorted.dropped.push((w, message)),
            Fate::Pending => sorted.pending.push(w),
        }
    }
    sorted
}

/// Finishes jobtrace's own span for one export.
fn record_export(
    tracer: &SelfTracer,
    mut span: crate::k8s::selftrace::SelfSpan,
    batch: &[Work],
    delivery: &Delivery,
) {
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let spans: usize = batch.iter().map(|w| w.spans.len()).sum();
    span.set("jobtrace.export.spans", count(spans));
    span.set("jobtrace.export.objects", count(batch.len()));
    span.set("jobtrace.export.requests", count(delivery.requests.len()));
    let dropped = delivery
        .fates
        .iter()
        .filter(|f| matches!(f, Fate::Dropped(_)))
        .count();
    if let Some(error) = &delivery.retry {
        span.set("jobtrace.export.result", "retry");
        span.fail(error.to_string());
    } else if dropped > 0 {
        span.set("jobtrace.export.result", "dropped");
        span.set("jobtrace.export.objects_dropped", count(dropped));
        span.fail(format!("{dropped} of {} objects refused", batch.len()));
    } else {
        span.set("jobtrace.export.result", "exported");
    }
    tracer.record(span);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_after_of_nothing_waits_the_backoff_at_least() {
        for requested in [None, Some(Duration::ZERO), Some(Duration::from_millis(1))] {
            assert_eq!(
                retry_delay(requested, MIN_BACKOFF),
                MIN_BACKOFF,
                "{requested:?}"
            );
            assert_eq!(
                retry_delay(requested, Duration::from_secs(4)),
                Duration::from_secs(4),
                "{requested:?}"
            );
        }
    }

    #[test]
    fn a_retry_after_is_honoured_up_to_the_ceiling() {
        let backoff = Duration::from_secs(8);
        assert_eq!(
            retry_delay(Some(Duration::from_secs(2)), backoff),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_delay(Some(Duration::from_secs(3600)), backoff),
            MAX_BACKOFF
        );
    }
}
