//! The exporter delivering a batch to an in-process gRPC collector: 64 objects (a Job span and two
//! pod spans each) all accepted in one request; the same batch with one object the collector
//! refuses for good, isolated by halves; and with every object refused. What the split path costs
//! the exporter, and how many requests each takes.

// Measured with the allocator the `jobtrace` binary ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, criterion_group, criterion_main};
use jobtrace::core::context::{SpanId, TraceId};
use jobtrace::core::spans::{SpanKind, SpanRecord, Status};
use jobtrace::k8s::otlp::{Exporter, ExporterConfig, Fate};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

const OBJECTS: usize = 64;

/// Refuses, with `INVALID_ARGUMENT`, a request holding a span named `refused`.
struct Collector;

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let refused = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .any(|s| s.name == "refused");
        if refused {
            Err(tonic::Status::invalid_argument("refused"))
        } else {
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }
}

/// The spans of one object named `name`: a Job span and two pod spans.
fn object(name: &str) -> Vec<SpanRecord> {
    let time: k8s_openapi::jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
    (0..3u8)
        .map(|i| SpanRecord {
            trace_id: TraceId([7; 16]),
            span_id: SpanId([i + 1; 8]),
            parent_span_id: None,
            name: name.to_owned(),
            start: time,
            end: time,
            attributes: vec![
                ("k8s.namespace.name", "reports".into()),
                ("k8s.job.name", "nightly".into()),
            ],
            events: Vec::new(),
            status: Status::Ok,
            kind: SpanKind::Internal,
            trace_flags: 0x01,
            label_attributes: Vec::new(),
            dropped_attributes: 0,
            links: Vec::new(),
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let exporter = runtime.block_on(async {
        let service = TraceServiceServer::new(Collector);
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
        Exporter::new(config).unwrap()
    });
    let resource = [("service.name".to_owned(), "jobtrace".to_owned())];
    let batches = [
        ("all accepted", usize::MAX),
        ("one refused", OBJECTS / 3),
        ("all refused", 0),
    ];
    for (what, refused) in batches {
        let objects: Vec<Vec<SpanRecord>> = (0..OBJECTS)
            .map(|i| {
                let refused = refused == 0 || i == refused;
                object(if refused { "refused" } else { "accepted" })
            })
            .collect();
        let slices: Vec<&[SpanRecord]> = objects.iter().map(Vec::as_slice).collect();
        let delivery = runtime.block_on(exporter.deliver(&slices, &resource));
        let dropped = delivery
            .fates
            .iter()
            .filter(|f| matches!(f, Fate::Dropped(_)))
            .count();
        println!(
            "{what}: {OBJECTS} objects, {} requests, {dropped} dropped",
            delivery.requests.len()
        );
        c.bench_function(&format!("deliver {OBJECTS} objects, {what}"), |b| {
            b.iter(|| runtime.block_on(exporter.deliver(&slices, &resource)));
        });
    }
}

criterion_group!(split, benches);
criterion_main!(split);
