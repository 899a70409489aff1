//! Delivery against an in-process gRPC collector that refuses what the OpenTelemetry Collector
//! refuses by default: a request over 4 MiB, with `RESOURCE_EXHAUSTED`.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use super::*;
use crate::core::context::{SpanId, TraceId};
use crate::core::spans::{SpanKind, Status};
use crate::k8s::otlp::{ExporterConfig, SpanLimits};

/// The OpenTelemetry Collector's default receive limit (gRPC's `max_recv_msg_size_mib`).
const COLLECTOR_LIMIT: usize = 4 * 1024 * 1024;

/// One request as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    /// Its encoded size.
    bytes: usize,
    /// The names of its spans (each object's spans share theirs).
    names: Vec<String>,
    accepted: bool,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// Answers each request as `answer` says given the number of requests before it (`None`:
/// accepted); refuses a request over [`COLLECTOR_LIMIT`] first, as grpc-go does.
struct Collector {
    log: Log,
    answer: fn(usize) -> Option<tonic::Status>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let bytes = request.encoded_len();
        let names = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect();
        let mut log = self.log.lock().unwrap();
        let refusal = if bytes > COLLECTOR_LIMIT {
            Some(tonic::Status::resource_exhausted(format!(
                "grpc: received message larger than max ({bytes} vs. {COLLECTOR_LIMIT})"
            )))
        } else {
            (self.answer)(log.len())
        };
        log.push(Received {
            bytes,
            names,
            accepted: refusal.is_none(),
        });
        match refusal {
            Some(status) => Err(status),
            None => Ok(tonic::Response::new(ExportTraceServiceResponse::default())),
        }
    }
}

/// A collector answering as `answer` says, and an exporter to it with `limits` and requests of
/// at most `max_request_bytes`.
async fn exporter(
    answer: fn(usize) -> Option<tonic::Status>,
    limits: SpanLimits,
    max_request_bytes: usize,
) -> (Exporter, Log) {
    let log = Log::default();
    let service = TraceServiceServer::new(Collector {
        log: log.clone(),
        answer,
    })
    // The receive limit is the collector's own check, with the status grpc-go gives.
    .max_decoding_message_size(usize::MAX);
    let router = axum::Router::new().route_service(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        service,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let config = ExporterConfig::from_sources(
        |k| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| endpoint.clone()),
        |p| std::fs::read(p),
    )
    .unwrap();
    let config = ExporterConfig {
        limits,
        max_request_bytes,
        ..config
    };
    (Exporter::new(config).unwrap(), log)
}

fn accepted(_: usize) -> Option<tonic::Status> {
    None
}

/// Limits that let anything through, as an exporter without them would.
fn unlimited() -> SpanLimits {
    SpanLimits {
        attribute_count: usize::MAX,
        attribute_value_length: usize::MAX,
        ..SpanLimits::default()
    }
}

/// The spans of one object named `name`: a Job span and `pods` pod spans, each with `labels`
/// label attributes of `value_len` characters.
fn object(name: &str, pods: usize, labels: usize, value_len: usize) -> Vec<SpanRecord> {
    let time: k8s_openapi::jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
    let value = "v".repeat(value_len);
    (0..=pods)
        .map(|i| SpanRecord {
            trace_id: TraceId([7; 16]),
            span_id: SpanId::from_random(rand::random()),
            parent_span_id: None,
            name: name.to_owned(),
            start: time,
            end: time,
            attributes: vec![("k8s.namespace.name", "team-b".into())],
            events: Vec::new(),
            status: Status::Ok,
            kind: SpanKind::Internal,
            trace_flags: 0x01,
            label_attributes: if i == 0 {
                vec![("k8s.job.label.a".to_owned(), value.clone()); labels]
            } else {
                Vec::new()
            },
            dropped_attributes: 0,
            links: Vec::new(),
        })
        .collect()
}

/// How many of `name`'s spans the collector accepted.
fn stored(log: &[Received], name: &str) -> usize {
    log.iter()
        .filter(|r| r.accepted)
        .flat_map(|r| &r.names)
        .filter(|n| *n == name)
        .count()
}

/// Six objects: the fourth the reproduction's Job, `a` named 200,000 times in its
/// `jobtrace.dev/job-labels` (6.2 MB encoded without limits); the others of another namespace,
/// a Job and two pods each.
fn batch_with_a_huge_object() -> Vec<Vec<SpanRecord>> {
    (0..6)
        .map(|i| {
            if i == 3 {
                object("huge", 0, 200_000, 1)
            } else {
                object(&format!("other {i}"), 2, 1, 8)
            }
        })
        .collect()
}

#[tokio::test]
async fn the_object_the_collector_refuses_is_dropped_alone_and_the_others_are_accepted() {
    // No limits, and requests allowed past the collector's: the six go in one request, refused.
    let (exporter, log) = exporter(accepted, unlimited(), 64 * 1024 * 1024).await;
    let batch = batch_with_a_huge_object();
    let objects: Vec<&[SpanRecord]> = batch.iter().map(Vec::as_slice).collect();
    let delivery = exporter.deliver(&objects, &[]).await;
    let log = log.lock().unwrap().clone();
    assert!(
        log[0].bytes > COLLECTOR_LIMIT && !log[0].accepted,
        "{log:?}"
    );
    for (i, fate) in delivery.fates.iter().enumerate() {
        if i == 3 {
            assert!(
                matches!(fate, Fate::Dropped(m) if m.contains("ResourceExhausted")),
                "{fate:?}"
            );
        } else {
            assert_eq!(fate, &Fate::Accepted, "object {i}");
            assert_eq!(
                stored(&log, &format!("other {i}")),
                3,
                "object {i}: each span once"
            );
        }
    }
    assert_eq!(stored(&log, "huge"), 0);
    assert!(delivery.retry.is_none());
    // One refused object among six: at most 2⌈log2 6⌉ = 6 requests beyond the first.
    assert!(log.len() <= 7, "{} requests", log.len());
    assert_eq!(delivery.requests.len(), log.len());
    assert_eq!(
        delivery
            .requests
            .iter()
            .filter(|o| **o == Outcome::Refused)
            .count(),
        log.iter().filter(|r| !r.accepted).count()
    );
}

#[tokio::test]
async fn under_the_default_limits_the_same_batch_goes_in_one_request() {
    let (exporter, log) =
        exporter(accepted, SpanLimits::default(), DEFAULT_MAX_REQUEST_BYTES).await;
    let batch = batch_with_a_huge_object();
    let objects: Vec<&[SpanRecord]> = batch.iter().map(Vec::as_slice).collect();
    let delivery = exporter.deliver(&objects, &[]).await;
    assert!(delivery.fates.iter().all(|f| *f == Fate::Accepted));
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].bytes < 64 * 1024, "{} bytes", log[0].bytes);
}

#[tokio::test]
async fn requests_are_sized_by_their_encoded_bytes_and_keep_objects_whole() {
    let max = 100_000;
    let (exporter, log) = exporter(accepted, SpanLimits::default(), max).await;
    // 40 objects of about 20 kB: a Job span with 5 label values of 4,000 characters, two pods.
    let batch: Vec<Vec<SpanRecord>> = (0..40)
        .map(|i| object(&format!("object {i}"), 2, 5, 4000))
        .collect();
    let objects: Vec<&[SpanRecord]> = batch.iter().map(Vec::as_slice).collect();
    let delivery = exporter
        .deliver(&objects, &[("service.name".into(), "jobtrace".into())])
        .await;
    assert!(delivery.fates.iter().all(|f| *f == Fate::Accepted));
    let log = log.lock().unwrap().clone();
    assert!(log.len() >= 8, "{} requests", log.len());
    for request in &log {
        assert!(request.bytes <= max, "{} bytes", request.bytes);
    }
    for i in 0..40 {
        let name = format!("object {i}");
        let holding: Vec<usize> = (0..log.len())
            .filter(|r| log[*r].names.contains(&name))
            .collect();
        assert_eq!(holding.len(), 1, "{name} in one request: {holding:?}");
        assert_eq!(stored(&log, &name), 3);
    }
}

#[tokio::test]
async fn an_object_larger_than_a_request_goes_in_requests_of_its_own() {
    let max = 64 * 1024;
    let (exporter, log) = exporter(accepted, SpanLimits::default(), max).await;
    let small = object("small", 0, 0, 0);
    // Ten spans of about 16 kB: 160 kB.
    let mut large = object("large", 9, 0, 0);
    for span in &mut large {
        span.label_attributes = vec![("k8s.job.label.a".to_owned(), "v".repeat(4000)); 4];
    }
    let delivery = exporter.deliver(&[&small, &large, &small], &[]).await;
    assert_eq!(
        delivery.fates,
        [Fate::Accepted, Fate::Accepted, Fate::Accepted]
    );
    let log = log.lock().unwrap().clone();
    assert!(log.iter().all(|r| r.bytes <= max), "{log:?}");
    assert_eq!(stored(&log, "large"), 10);
    assert!(
        log.iter()
            .all(|r| !r.names.contains(&"large".to_owned()) || r.names.iter().all(|n| n == "large")),
        "alone in its requests"
    );
}

#[tokio::test]
async fn a_retryable_failure_leaves_what_was_not_accepted_pending() {
    fn second_unavailable(before: usize) -> Option<tonic::Status> {
        (before == 1).then(|| tonic::Status::unavailable("restarting"))
    }
    let (exporter, log) = exporter(second_unavailable, SpanLimits::default(), 30_000).await;
    let batch: Vec<Vec<SpanRecord>> = (0..3)
        .map(|i| object(&format!("object {i}"), 0, 5, 4000))
        .collect();
    let objects: Vec<&[SpanRecord]> = batch.iter().map(Vec::as_slice).collect();
    let delivery = exporter.deliver(&objects, &[]).await;
    assert_eq!(
        delivery.fates,
        [Fate::Accepted, Fate::Pending, Fate::Pending]
    );
    assert!(matches!(
        delivery.retry,
        Some(ExportError::Retryable { .. })
    ));
    assert_eq!(delivery.requests, [Outcome::Accepted, Outcome::Failed]);
    assert_eq!(
        log.lock().unwrap().len(),
        2,
        "nothing sent after the failure"
    );
}

#[test]
fn objects_are_packed_whole_in_order_and_one_too_large_is_split_alone() {
    let sizes = vec![
        vec![30, 30],
        vec![50],
        vec![10],
        vec![60, 60, 60],
        vec![],
        vec![40],
    ];
    assert_eq!(
        pack(&sizes, 10, 100),
        [
            Part::Objects(0..1),
            Part::Objects(1..3),
            Part::Spans {
                object: 3,
                spans: 0..1
            },
            Part::Spans {
                object: 3,
                spans: 1..2
            },
            Part::Spans {
                object: 3,
                spans: 2..3
            },
            Part::Objects(4..6),
        ]
    );
    // A span larger than a request still goes, alone.
    assert_eq!(
        pack(&[vec![500, 20, 20]], 10, 100),
        [
            Part::Spans {
                object: 0,
                spans: 0..1
            },
            Part::Spans {
                object: 0,
                spans: 1..3
            },
        ]
    );
}

#[test]
fn the_size_counted_for_a_request_is_at_least_its_encoding() {
    let spans: Vec<Span> = object("o", 40, 3, 1000)
        .iter()
        .map(|s| proto_span(s, &SpanLimits::default()))
        .collect();
    let resource = [("service.name".to_owned(), "jobtrace".to_owned())];
    let counted = envelope(Vec::new(), &resource).encoded_len()
        + ENVELOPE_GROWTH
        + spans.iter().map(field_len).sum::<usize>();
    let actual = envelope(spans, &resource).encoded_len();
    assert!(actual <= counted, "{actual} > {counted}");
    assert!(counted - actual <= ENVELOPE_GROWTH, "{counted} - {actual}");
}
