//! jobtrace's own spans, for its own work: admissions served, export batches, certificate
//! changes. Each is a root span of its own trace (so jobtrace never adds spans to its users'
//! traces) with a link to the Job's span where there is one. They travel with the Job spans
//! through the same exporter, and are dropped, counted, when its queue is full.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;

use crate::core::context::{SpanId, TraceId};
use crate::core::spans::{Link, SpanKind, SpanRecord, Status, Value};
use crate::k8s::metrics::Metrics;

/// Own spans waiting for the exporter, at most.
const QUEUE: usize = 2048;

/// Records jobtrace's own spans when enabled.
#[derive(Clone)]
pub struct SelfTracer {
    /// Share of admissions traced (export and certificate spans are always recorded when on).
    ratio: f64,
    queue: mpsc::Sender<SpanRecord>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SelfTracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfTracer")
            .field("ratio", &self.ratio)
            .finish_non_exhaustive()
    }
}

impl SelfTracer {
    /// A tracer sampling `ratio` (0 to 1) of admissions, and the receiving end for the exporter.
    pub fn new(ratio: f64, metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<SpanRecord>) {
        let (queue, spans) = mpsc::channel(QUEUE);
        (
            Self {
                ratio: ratio.clamp(0.0, 1.0),
                queue,
                metrics,
            },
            spans,
        )
    }

    /// Starts the span of an admission at `endpoint` (`jobs`, `pods`), for the sampled share of
    /// admissions; nothing is built for the others.
    pub fn admission(&self, endpoint: &str) -> Option<SelfSpan> {
        (rand::random::<f64>() < self.ratio)
            .then(|| SelfSpan::start(&format!("admission {endpoint}"), SpanKind::Server))
    }

    /// Starts a span for background work (always recorded).
    pub fn background(&self, name: &str) -> SelfSpan {
        SelfSpan::start(name, SpanKind::Internal)
    }

    /// Queues a finished span; a full queue drops it and counts it.
    pub fn record(&self, span: SelfSpan) {
        let mut record = span.record;
        record.end = Timestamp::now();
        if self.queue.try_send(record).is_err() {
            self.metrics.self_spans_dropped.inc();
        }
    }
}

/// One of jobtrace's own spans, being recorded.
#[derive(Debug)]
pub struct SelfSpan {
    record: SpanRecord,
}

impl SelfSpan {
    fn start(name: &str, kind: SpanKind) -> Self {
        let now = Timestamp::now();
        Self {
            record: SpanRecord {
                trace_id: random_trace_id(),
                span_id: SpanId::from_random(rand::random()),
                parent_span_id: None,
                name: name.to_owned(),
                start: now,
                end: now,
                attributes: Vec::new(),
                events: Vec::new(),
                status: Status::Unset,
                kind,
                // Sampled, and the ids are random (W3C Level 2's random flag).
                trace_flags: 0x03,
                label_attributes: Vec::new(),
                dropped_attributes: 0,
                links: Vec::new(),
            },
        }
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        self.record.attributes.push((key, value.into()));
    }

    pub fn link(&mut self, trace_id: TraceId, span_id: SpanId, trace_flags: u8) {
        self.record.links.push(Link {
            trace_id,
            span_id,
            trace_flags,
        });
    }

    pub fn fail(&mut self, description: impl Into<String>) {
        self.record.status = Status::Error {
            description: description.into(),
        };
    }
}

/// Own spans sent in one request at most.
const BATCH: usize = 512;

/// Exports jobtrace's own spans until `shutdown`, then what is queued. Best effort, unlike the
/// Job spans: a failed export is logged and its spans counted as dropped, never retried, so
/// telemetry about jobtrace never competes with its users' spans.
pub async fn export(
    mut spans: mpsc::Receiver<SpanRecord>,
    exporter: crate::k8s::otlp::Exporter,
    resource: Vec<(String, String)>,
    metrics: Arc<Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stopping = tokio::select! {
            n = spans.recv_many(&mut batch, BATCH) => n == 0,
            () = shutdown.cancelled() => true,
        };
        if !stopping {
            // Let a few more arrive: one request a second at most.
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                () = shutdown.cancelled() => {}
            }
        }
        while batch.len() < BATCH {
            match spans.try_recv() {
                Ok(span) => batch.push(span),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let request = crate::k8s::otlp::request(&batch, &resource, exporter.limits());
            if let Err(e) = exporter.export(request).await {
                tracing::debug!(error = %e, spans = batch.len(), "own spans not exported");
                metrics.self_spans_dropped.inc_by(batch.len() as u64);
            }
            batch.clear();
        }
        if stopping || shutdown.is_cancelled() {
            return;
        }
    }
}

fn random_trace_id() -> TraceId {
    let mut id: [u8; 16] = rand::random();
    if id == [0; 16] {
        id[15] = 1;
    }
    TraceId(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_zero_never_samples_admissions_and_one_always_does() {
        let metrics = Arc::new(Metrics::default());
        let (never, _rx) = SelfTracer::new(0.0, metrics.clone());
        assert!((0..1000).all(|_| never.admission("jobs").is_none()));
        let (always, _rx) = SelfTracer::new(1.0, metrics);
        assert!((0..1000).all(|_| always.admission("jobs").is_some()));
    }

    #[test]
    fn spans_are_roots_with_links_and_a_full_queue_counts_drops() {
        let metrics = Arc::new(Metrics::default());
        let (tracer, mut rx) = SelfTracer::new(1.0, metrics.clone());
        let job_trace = TraceId([7; 16]);
        let mut span = tracer.admission("jobs").unwrap();
        span.set("jobtrace.admission.result", "injected");
        span.link(job_trace, SpanId([3; 8]), 0x01);
        tracer.record(span);
        let record = rx.try_recv().unwrap();
        assert_eq!(record.parent_span_id, None);
        assert_ne!(record.trace_id, job_trace);
        assert_eq!(record.kind, SpanKind::Server);
        assert_eq!(record.name, "admission jobs");
        assert_eq!(
            record.links,
            vec![Link {
                trace_id: job_trace,
                span_id: SpanId([3; 8]),
                trace_flags: 0x01
            }]
        );
        assert_eq!(record.trace_flags, 0x03);
        assert!(record.end >= record.start);
        for _ in 0..QUEUE + 5 {
            tracer.record(tracer.background("export"));
        }
        assert_eq!(metrics.self_spans_dropped.get(), 5);
    }
}
