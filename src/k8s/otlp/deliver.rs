//! A batch of objects delivered to the collector. An object (a Job with its pods, or a pod of its
//! own) is what gets marked, so its spans are accepted or dropped together: requests are sized by
//! their encoded bytes, with as many whole objects as fit under the limit; and when the collector
//! refuses a request of several objects for good, the request is halved and each half sent again,
//! down to the object it refuses, alone. One object's spans never get another's dropped.

use std::collections::VecDeque;
use std::ops::Range;

use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::classify::{ExportError, Outcome};
use super::proto::{envelope, proto_span};
use super::transport::Exporter;
use crate::core::spans::SpanRecord;

/// The largest request sent unless configured otherwise, in bytes of encoded protobuf: safely
/// under the 4 MiB a collector takes by default (the OpenTelemetry Collector's and gRPC's
/// default receive limit).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

/// What the length prefixes of the request's two enclosing messages (its resource's spans, its
/// scope's spans) may grow by as spans are added: from one byte each to five at most.
const ENVELOPE_GROWTH: usize = 8;

/// What became of one object's spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// The collector accepted every one of them (or there were none).
    Accepted,
    /// The collector refused them for good, alone in their request; why.
    Dropped(String),
    /// Not sent, or sent in a request that failed in a way worth retrying: to send again.
    Pending,
}

/// What delivering a batch came to.
#[derive(Debug)]
pub struct Delivery {
    /// One for each object, in their order.
    pub fates: Vec<Fate>,
    /// Spans the collector accepted requests for but rejected (partial success).
    pub rejected: i64,
    /// What each request sent came to, in order.
    pub requests: Vec<Outcome>,
    /// The failure that stopped the delivery, leaving the objects not accepted yet pending.
    pub retry: Option<ExportError>,
}

/// What one request carries: whole objects, or part of the spans of one object too large for a
/// request of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Objects(Range<usize>),
    Spans { object: usize, spans: Range<usize> },
}

impl Exporter {
    /// Delivers the spans of `objects` (each object's spans one slice), in requests of at most
    /// the configured number of bytes, each span within the configured limits. Stops at the first
    /// failure worth retrying. A request of k objects refused for good is halved, and each half
    /// sent again, down to single objects: isolating one refused object among them costs at most
    /// 2⌈log2 k⌉ more requests, and however many are refused, never more than 2k − 2.
    pub async fn deliver(
        &self,
        objects: &[&[SpanRecord]],
        resource: &[(String, String)],
    ) -> Delivery {
        let limits = self.limits();
        let encoded: Vec<Vec<Span>> = objects
            .iter()
            .map(|spans| spans.iter().map(|s| proto_span(s, limits)).collect())
            .collect();
        let sizes: Vec<Vec<usize>> = encoded
            .iter()
            .map(|spans| spans.iter().map(field_len).collect())
            .collect();
        let base = envelope(Vec::new(), resource).encoded_len() + ENVELOPE_GROWTH;
        let mut delivery = Delivery {
            fates: vec![Fate::Pending; objects.len()],
            rejected: 0,
            requests: Vec::new(),
            retry: None,
        };
        let fates = &mut delivery.fates;
        let mut parts: VecDeque<Part> = pack(&sizes, base, self.max_request_bytes()).into();
        while let Some(part) = parts.pop_front() {
            let spans: Vec<Span> = match &part {
                Part::Objects(range) => range
                    .clone()
                    .flat_map(|i| encoded[i].iter().cloned())
                    .collect(),
                Part::Spans { object, .. } if matches!(fates[*object], Fate::Dropped(_)) => {
                    continue;
                }
                Part::Spans { object, spans } => encoded[*object][spans.clone()].to_vec(),
            };
            let outcome = if spans.is_empty() {
                Ok(super::PartialSuccess::default())
            } else {
                let outcome = self.export(envelope(spans, resource)).await;
                delivery.requests.push(
                    outcome
                        .as_ref()
                        .map_or_else(ExportError::outcome, |_| Outcome::Accepted),
                );
                outcome
            };
            match (outcome, part) {
                (Ok(accepted), Part::Objects(range)) => {
                    delivery.rejected += accepted.rejected;
                    fates[range].fill(Fate::Accepted);
                }
                (Ok(accepted), Part::Spans { object, spans }) => {
                    delivery.rejected += accepted.rejected;
                    if spans.end == encoded[object].len() {
                        fates[object] = Fate::Accepted;
                    }
                }
                (Err(error), _) if error.retryable() => {
                    delivery.retry = Some(error);
                    break;
                }
                (Err(error), Part::Objects(range)) if range.len() > 1 => {
                    tracing::debug!(%error, objects = range.len(), "a request of several objects refused; sending it in halves");
                    let middle = range.start + range.len() / 2;
                    parts.push_front(Part::Objects(middle..range.end));
                    parts.push_front(Part::Objects(range.start..middle));
                }
                (
                    Err(error),
                    Part::Objects(Range { start: object, .. }) | Part::Spans { object, .. },
                ) => {
                    fates[object] = Fate::Dropped(error.to_string());
                }
            }
        }
        delivery
    }
}

/// The bytes a span adds to a request: its encoding, with its field's tag and length prefix.
fn field_len(span: &Span) -> usize {
    let len = span.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

/// The requests for objects whose spans encode to `sizes` (as [`field_len`] has them), each of at
/// most `max` bytes with an envelope of `base`: as many whole objects as fit, in their order; an
/// object that fits in none alone has its spans split over requests of its own (a span larger
/// than `max` alone still goes, alone).
fn pack(sizes: &[Vec<usize>], base: usize, max: usize) -> Vec<Part> {
    let mut parts = Vec::new();
    let (mut start, mut size) = (0, base);
    for (object, spans) in sizes.iter().enumerate() {
        let len: usize = spans.iter().sum();
        if base + len > max {
            if start < object {
                parts.push(Part::Objects(start..object));
            }
            parts.extend(split(object, spans, base, max));
            (start, size) = (object + 1, base);
            continue;
        }
        if size + len > max {
            parts.push(Part::Objects(start..object));
            (start, size) = (object, base);
        }
        size += len;
    }
    if start < sizes.len() {
        parts.push(Part::Objects(start..sizes.len()));
    }
    parts
}

/// The spans of one object too large for a request, over as few requests as fit them in order.
fn split(object: usize, spans: &[usize], base: usize, max: usize) -> Vec<Part> {
    let mut parts = Vec::new();
    let (mut start, mut size) = (0, base);
    for (i, len) in spans.iter().enumerate() {
        if size + len > max && start < i {
            parts.push(Part::Spans {
                object,
                spans: start..i,
            });
            (start, size) = (i, base);
        }
        size += len;
    }
    if start < spans.len() {
        parts.push(Part::Spans {
            object,
            spans: start..spans.len(),
        });
    }
    parts
}

#[cfg(test)]
mod tests;
