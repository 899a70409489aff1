//! Spans converted into one OTLP request, under jobtrace's resource and instrumentation scope.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span, status};

use crate::spans::{SpanRecord, Status, Value};

/// Converts spans into one OTLP request, under jobtrace's resource and scope.
pub fn request(spans: &[SpanRecord], resource: &[(String, String)]) -> ExportTraceServiceRequest {
    let resource = Resource {
        attributes: resource
            .iter()
            .map(|(k, v)| key_value(k, &Value::String(v.clone())))
            .collect(),
        ..Resource::default()
    };
    let scope = InstrumentationScope {
        name: "jobtrace".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..InstrumentationScope::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans: spans.iter().map(proto_span).collect(),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn key_value(key: &str, value: &Value) -> KeyValue {
    let value = match value {
        Value::String(s) => any_value::Value::StringValue(s.clone()),
        Value::Int(i) => any_value::Value::IntValue(*i),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn nanos(t: k8s_openapi::jiff::Timestamp) -> u64 {
    u64::try_from(t.as_nanosecond()).unwrap_or(0)
}

/// OTLP `SpanFlags`: whether the parent (or linked) span is remote is known, and that it is.
const SPAN_FLAGS_HAS_IS_REMOTE: u32 = 0x100;
const SPAN_FLAGS_IS_REMOTE: u32 = 0x200;

fn proto_span(record: &SpanRecord) -> Span {
    let status = match &record.status {
        Status::Unset => None,
        Status::Ok => Some(opentelemetry_proto::tonic::trace::v1::Status {
            code: status::StatusCode::Ok as i32,
            ..Default::default()
        }),
        Status::Error { description } => Some(opentelemetry_proto::tonic::trace::v1::Status {
            code: status::StatusCode::Error as i32,
            message: description.clone(),
        }),
    };
    Span {
        trace_id: record.trace_id.0.to_vec(),
        span_id: record.span_id.0.to_vec(),
        parent_span_id: record
            .parent_span_id
            .map(|p| p.0.to_vec())
            .unwrap_or_default(),
        // The low byte is the context's W3C trace flags; bit 8 says whether the parent is
        // remote is known, bit 9 that it is: a parent is always in another process (the creator,
        // or the Job span's exporter), and a span without one (jobtrace's own) is a root.
        flags: u32::from(record.trace_flags)
            | if record.parent_span_id.is_some() {
                SPAN_FLAGS_HAS_IS_REMOTE | SPAN_FLAGS_IS_REMOTE
            } else {
                SPAN_FLAGS_HAS_IS_REMOTE
            },
        name: record.name.clone(),
        kind: match record.kind {
            crate::spans::SpanKind::Internal => span::SpanKind::Internal,
            crate::spans::SpanKind::Server => span::SpanKind::Server,
        } as i32,
        links: record
            .links
            .iter()
            .map(|link| span::Link {
                trace_id: link.trace_id.0.to_vec(),
                span_id: link.span_id.0.to_vec(),
                // The linked span is the Job's, in another process.
                flags: u32::from(link.trace_flags)
                    | SPAN_FLAGS_HAS_IS_REMOTE
                    | SPAN_FLAGS_IS_REMOTE,
                ..span::Link::default()
            })
            .collect(),
        start_time_unix_nano: nanos(record.start),
        end_time_unix_nano: nanos(record.end),
        attributes: record
            .attributes
            .iter()
            .map(|(k, v)| key_value(k, v))
            .chain(
                record
                    .label_attributes
                    .iter()
                    .map(|(k, v)| key_value(k, &Value::String(v.clone()))),
            )
            .collect(),
        events: record
            .events
            .iter()
            .map(|e| span::Event {
                time_unix_nano: nanos(e.time),
                name: e.name.clone(),
                attributes: e.attributes.iter().map(|(k, v)| key_value(k, v)).collect(),
                ..Default::default()
            })
            .collect(),
        status,
        ..Span::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_ids_times_status_and_resource() {
        use crate::context::{SpanId, TraceId};
        let record = SpanRecord {
            trace_id: TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId([1; 8]),
            parent_span_id: Some(SpanId([2; 8])),
            name: "job reports/nightly".into(),
            start: "2026-11-23T10:00:00Z".parse().unwrap(),
            end: "2026-11-23T10:00:42Z".parse().unwrap(),
            attributes: vec![
                ("k8s.job.name", "nightly".into()),
                ("jobtrace.job.failed", 2.into()),
            ],
            events: Vec::new(),
            status: Status::Error {
                description: "BackoffLimitExceeded".into(),
            },
            kind: crate::spans::SpanKind::Internal,
            trace_flags: 0x03,
            label_attributes: vec![("k8s.job.label.team".into(), "data".into())],
            links: Vec::new(),
        };
        let request = request(&[record], &[("service.name".into(), "jobtrace".into())]);
        let resource_spans = &request.resource_spans[0];
        let resource = resource_spans.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        let span = &resource_spans.scope_spans[0].spans[0];
        assert_eq!(
            span.trace_id,
            TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736")
                .unwrap()
                .0
        );
        assert_eq!(span.span_id, vec![1; 8]);
        assert_eq!(span.parent_span_id, vec![2; 8]);
        assert_eq!(
            span.flags, 0x303,
            "the context's trace flags (sampled, random) and a remote parent"
        );
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            42_000_000_000
        );
        let status = span.status.as_ref().unwrap();
        assert_eq!(status.code, status::StatusCode::Error as i32);
        assert_eq!(status.message, "BackoffLimitExceeded");
        assert_eq!(
            span.attributes[1].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(2))
        );
        assert_eq!(span.attributes[2].key, "k8s.job.label.team");
        assert_eq!(
            span.attributes[2].value.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("data".into()))
        );
    }
}
