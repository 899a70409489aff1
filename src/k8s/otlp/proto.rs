//! Spans converted into OTLP requests, under jobtrace's resource and instrumentation scope, with
//! the span limits applied.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span, status};

use super::limits::{SpanLimits, dropped};
use crate::core::spans::{SpanRecord, Status, Value};

/// Converts spans into one OTLP request, under jobtrace's resource and scope, each span within
/// `limits`.
pub fn request(
    spans: &[SpanRecord],
    resource: &[(String, String)],
    limits: &SpanLimits,
) -> ExportTraceServiceRequest {
    envelope(
        spans.iter().map(|s| proto_span(s, limits)).collect(),
        resource,
    )
}

/// OTLP spans in one request, under jobtrace's resource and scope.
pub(super) fn envelope(
    spans: Vec<Span>,
    resource: &[(String, String)],
) -> ExportTraceServiceRequest {
    // Resource attributes are exempt from the limits, as the specification has it.
    let resource = Resource {
        attributes: resource
            .iter()
            .map(|(k, v)| key_value(k, &Value::String(v.clone()), None))
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
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// An attribute; a string value cut to the limits' length, when given.
fn key_value(key: &str, value: &Value, limits: Option<&SpanLimits>) -> KeyValue {
    let value = match value {
        Value::String(s) => any_value::Value::StringValue(match limits {
            Some(limits) => limits.truncate(s),
            None => s.clone(),
        }),
        Value::Int(i) => any_value::Value::IntValue(*i),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// The first `count` of the `total` `attributes`, their values cut to the limits' length; and how
/// many were left out.
fn limited<'a>(
    attributes: impl Iterator<Item = (&'a str, &'a Value)>,
    total: usize,
    count: usize,
    limits: &SpanLimits,
) -> (Vec<KeyValue>, u32) {
    let kept: Vec<KeyValue> = attributes
        .take(count)
        .map(|(k, v)| key_value(k, v, Some(limits)))
        .collect();
    let left_out = dropped(total, kept.len());
    (kept, left_out)
}

fn nanos(t: k8s_openapi::jiff::Timestamp) -> u64 {
    u64::try_from(t.as_nanosecond()).unwrap_or(0)
}

/// OTLP `SpanFlags`: whether the parent (or linked) span is remote is known, and that it is.
const SPAN_FLAGS_HAS_IS_REMOTE: u32 = 0x100;
const SPAN_FLAGS_IS_REMOTE: u32 = 0x200;

/// One span in OTLP, within `limits`: the first attributes, events and links kept, the rest
/// counted in the `dropped_*_count` fields; string values and the status message cut to length.
pub(super) fn proto_span(record: &SpanRecord, limits: &SpanLimits) -> Span {
    let status = match &record.status {
        Status::Unset => None,
        Status::Ok => Some(opentelemetry_proto::tonic::trace::v1::Status {
            code: status::StatusCode::Ok as i32,
            ..Default::default()
        }),
        Status::Error { description } => Some(opentelemetry_proto::tonic::trace::v1::Status {
            code: status::StatusCode::Error as i32,
            message: limits.truncate(description),
        }),
    };
    let labels: Vec<(&str, Value)> = record
        .label_attributes
        .iter()
        .map(|(k, v)| (k.as_str(), Value::String(v.clone())))
        .collect();
    let (attributes, dropped_attributes) = limited(
        record
            .attributes
            .iter()
            .map(|(k, v)| (*k, v))
            .chain(labels.iter().map(|(k, v)| (*k, v))),
        record.attributes.len() + labels.len(),
        limits.attribute_count,
        limits,
    );
    let events = record
        .events
        .iter()
        .take(limits.event_count)
        .map(|e| {
            let (attributes, dropped_attributes_count) = limited(
                e.attributes.iter().map(|(k, v)| (*k, v)),
                e.attributes.len(),
                limits.event_attribute_count,
                limits,
            );
            span::Event {
                time_unix_nano: nanos(e.time),
                name: e.name.clone(),
                attributes,
                dropped_attributes_count,
            }
        })
        .collect();
    let links = record
        .links
        .iter()
        .take(limits.link_count)
        .map(|link| span::Link {
            trace_id: link.trace_id.0.to_vec(),
            span_id: link.span_id.0.to_vec(),
            // The linked span is the Job's, in another process.
            flags: u32::from(link.trace_flags) | SPAN_FLAGS_HAS_IS_REMOTE | SPAN_FLAGS_IS_REMOTE,
            ..span::Link::default()
        })
        .collect();
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
            crate::core::spans::SpanKind::Internal => span::SpanKind::Internal,
            crate::core::spans::SpanKind::Server => span::SpanKind::Server,
        } as i32,
        links,
        dropped_links_count: dropped(record.links.len(), limits.link_count),
        start_time_unix_nano: nanos(record.start),
        end_time_unix_nano: nanos(record.end),
        attributes,
        dropped_attributes_count: record.dropped_attributes.saturating_add(dropped_attributes),
        events,
        dropped_events_count: dropped(record.events.len(), limits.event_count),
        status,
        ..Span::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_ids_times_status_and_resource() {
        use crate::core::context::{SpanId, TraceId};
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
            kind: crate::core::spans::SpanKind::Internal,
            trace_flags: 0x03,
            label_attributes: vec![("k8s.job.label.team".into(), "data".into())],
            dropped_attributes: 0,
            links: Vec::new(),
        };
        let request = request(
            &[record],
            &[("service.name".into(), "jobtrace".into())],
            &SpanLimits::default(),
        );
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

    /// The typical Job span, with `labels` label attributes and `events` events.
    fn span_with(labels: usize, events: usize) -> SpanRecord {
        use crate::core::context::{SpanId, TraceId};
        let time: k8s_openapi::jiff::Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        SpanRecord {
            trace_id: TraceId::parse("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId([1; 8]),
            parent_span_id: None,
            name: "job reports/nightly".into(),
            start: time,
            end: time,
            attributes: vec![
                ("k8s.job.name", "nightly".into()),
                ("error.type", "x".repeat(10_000).into()),
                ("jobtrace.job.failed", 2.into()),
            ],
            events: (0..events)
                .map(|i| crate::core::spans::Event {
                    name: format!("event {i}"),
                    time,
                    attributes: vec![
                        ("k8s.container.name", "main".into()),
                        ("jobtrace.container.exit_code", 1.into()),
                        ("k8s.container.status.reason", "é".repeat(50).into()),
                    ],
                })
                .collect(),
            status: Status::Error {
                description: "y".repeat(10_000),
            },
            kind: crate::core::spans::SpanKind::Internal,
            trace_flags: 0x01,
            label_attributes: (0..labels)
                .map(|i| (format!("k8s.job.label.l{i}"), "v".into()))
                .collect(),
            dropped_attributes: 7,
            links: vec![
                crate::core::spans::Link {
                    trace_id: TraceId([2; 16]),
                    span_id: SpanId([2; 8]),
                    trace_flags: 1,
                };
                3
            ],
        }
    }

    fn string(value: &KeyValue) -> &str {
        match &value.value.as_ref().unwrap().value {
            Some(any_value::Value::StringValue(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_default_limits_keep_128_attributes_and_events_and_cut_long_values() {
        let span = proto_span(&span_with(200, 130), &SpanLimits::default());
        assert_eq!(span.attributes.len(), 128);
        assert_eq!(
            span.attributes[0].key, "k8s.job.name",
            "the first ones are kept"
        );
        assert_eq!(span.attributes[127].key, "k8s.job.label.l124");
        assert_eq!(
            span.dropped_attributes_count,
            7 + 75,
            "those left out when built, and those the limit drops"
        );
        assert_eq!(string(&span.attributes[1]).len(), 4096);
        assert_eq!(span.status.unwrap().message.len(), 4096);
        assert_eq!(span.events.len(), 128);
        assert_eq!(span.events[0].name, "event 0");
        assert_eq!(span.dropped_events_count, 2);
        assert_eq!(span.links.len(), 3);
        assert_eq!(span.dropped_links_count, 0);
    }

    #[test]
    fn configured_limits_apply_to_events_and_links_too() {
        let limits = SpanLimits {
            attribute_count: 2,
            attribute_value_length: 10,
            event_count: 1,
            link_count: 1,
            event_attribute_count: 2,
            link_attribute_count: 0,
        };
        let span = proto_span(&span_with(3, 4), &limits);
        assert_eq!(span.attributes.len(), 2);
        assert_eq!(span.dropped_attributes_count, 7 + 4);
        assert_eq!(string(&span.attributes[1]), "x".repeat(10));
        assert_eq!(span.events.len(), 1);
        assert_eq!(span.dropped_events_count, 3);
        let event = &span.events[0];
        assert_eq!(event.attributes.len(), 2);
        assert_eq!(event.dropped_attributes_count, 1);
        assert_eq!(span.links.len(), 1);
        assert_eq!(span.dropped_links_count, 2);
        let limits = SpanLimits {
            event_attribute_count: 3,
            attribute_value_length: 10,
            ..SpanLimits::default()
        };
        let event = &proto_span(&span_with(0, 1), &limits).events[0];
        assert_eq!(
            string(&event.attributes[2]),
            "é".repeat(10),
            "characters, not bytes"
        );
        assert_eq!(event.dropped_attributes_count, 0);
    }
}
