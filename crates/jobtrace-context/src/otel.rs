//! Between an OpenTelemetry [`Context`](opentelemetry::Context) and jobtrace's carriers: a Job's
//! annotations on the creator's side, the process environment inside the Job.
//!
//! ```
//! use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
//! use jobtrace_context::otel;
//!
//! // The creator: its current context (here a remote one, for the example) onto the Job.
//! let span = SpanContext::new(
//!     TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
//!     SpanId::from_hex("00f067aa0ba902b7").unwrap(),
//!     TraceFlags::SAMPLED,
//!     true,
//!     TraceState::default(),
//! );
//! let cx = opentelemetry::Context::new().with_remote_span_context(span);
//! let annotations = otel::annotations(&cx);
//! assert_eq!(
//!     annotations["traceparent"],
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
//! );
//!
//! // Inside the Job: the parent of the Job's own spans, from TRACEPARENT & co.
//! let parent = otel::context_from_env();
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use opentelemetry::baggage::{Baggage as OtelBaggage, BaggageExt};
use opentelemetry::trace::{
    SpanContext, SpanId as OtelSpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId,
    TraceState,
};

use crate::{Baggage, Context, SpanId, TraceId, Traceparent, baggage, names, tracestate};

/// The annotations that carry `cx` on a Job: its span's context as `traceparent` (and
/// `tracestate`), its baggage as `baggage`; what `inject()` with the map as carrier writes, and
/// nothing when `cx` has no valid span context.
pub fn annotations(cx: &opentelemetry::Context) -> BTreeMap<String, String> {
    from_otel(cx)
        .map(|context| context.annotations())
        .unwrap_or_default()
}

/// Writes [`annotations`] of `cx` into `meta.annotations` (a Job's `metadata`, or a CronJob's
/// `spec.jobTemplate.metadata`), replacing any context annotations already there.
#[cfg(feature = "k8s-openapi")]
pub fn annotate(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    cx: &opentelemetry::Context,
) {
    let written = annotations(cx);
    if written.is_empty() {
        return;
    }
    let existing = meta.annotations.get_or_insert_with(BTreeMap::new);
    for key in names::TRACEPARENT_KEYS
        .iter()
        .chain(&names::TRACESTATE_KEYS)
        .chain(&names::BAGGAGE_KEYS)
    {
        existing.remove(*key);
    }
    existing.extend(written);
}

/// The context jobtrace gave this process: the remote parent of `TRACEPARENT` (with
/// `TRACESTATE`) and the members of `BAGGAGE`, for the Job's own spans. As a propagator's
/// `extract()` is, lenient: an invalid `TRACEPARENT` gives a context without a span (new spans
/// are roots), an invalid `TRACESTATE` is left out, invalid baggage members are dropped.
pub fn context_from_env() -> opentelemetry::Context {
    context_from_vars(|name| std::env::var(name).ok())
}

/// The same from the variables `lookup` gives.
pub fn context_from_vars(lookup: impl Fn(&str) -> Option<String>) -> opentelemetry::Context {
    let get = |name: &str| lookup(name).map(|v| v.trim_ascii().to_owned());
    let mut cx = opentelemetry::Context::new();
    if let Some(parent) =
        get(names::env::TRACEPARENT).and_then(|v| crate::traceparent::parse(&v).ok())
    {
        let state = get(names::env::TRACESTATE)
            .and_then(|v| tracestate::parse(&v).ok())
            .and_then(|t| t.header().parse::<TraceState>().ok())
            .unwrap_or_default();
        cx = cx.with_remote_span_context(SpanContext::new(
            OtelTraceId::from_bytes(parent.trace_id.0),
            OtelSpanId::from_bytes(parent.parent_id.0),
            TraceFlags::new(parent.flags.bits()),
            true,
            state,
        ));
    }
    if let Some(value) = get(names::env::BAGGAGE) {
        let members = to_otel_baggage(&baggage::parse(&value).0);
        if !members.is_empty() {
            cx = cx.with_baggage(members);
        }
    }
    cx
}

/// jobtrace's context of `cx`, when its span context is valid.
fn from_otel(cx: &opentelemetry::Context) -> Option<Context> {
    let span = cx.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return None;
    }
    let traceparent = Traceparent {
        trace_id: TraceId(span_context.trace_id().to_bytes()),
        parent_id: SpanId(span_context.span_id().to_bytes()),
        flags: crate::TraceFlags::from_bits(span_context.trace_flags().to_u8()),
    };
    let tracestate = tracestate::parse(&span_context.trace_state().header())
        .ok()
        .filter(|t| !t.is_empty());
    let header: Vec<String> = cx
        .baggage()
        .iter()
        .map(|(key, (value, metadata))| {
            let mut member = format!("{}={}", key.as_str(), encode(value.as_str()));
            if !metadata.as_str().is_empty() {
                member.push(';');
                member.push_str(metadata.as_str());
            }
            member
        })
        .collect();
    let baggage = Some(baggage::parse(&header.join(",")).0).filter(|b| !b.is_empty());
    Some(Context {
        traceparent,
        tracestate,
        baggage,
    })
}

/// OpenTelemetry's baggage of jobtrace's: each member's value percent-decoded, its properties
/// kept as metadata.
fn to_otel_baggage(baggage: &Baggage) -> OtelBaggage {
    let mut members = OtelBaggage::new();
    for member in baggage.members() {
        let (pair, properties) = member.split_once(';').unwrap_or((member, ""));
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        members.insert_with_metadata(
            key.trim_matches([' ', '\t']).to_owned(),
            decode(value.trim_matches([' ', '\t'])),
            properties.trim_matches([' ', '\t']).to_owned(),
        );
    }
    members
}

/// Percent-encodes what W3C Baggage doesn't allow in a value (and `%` itself).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        let allowed = matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
            && byte != b'%';
        if allowed {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Percent-decodes a baggage value; a `%` not followed by two hex digits stays as it is, and
/// bytes that are not UTF-8 become U+FFFD.
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).expect("two hex digits are a byte"));
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03";

    fn env(pairs: &[(&str, &str)]) -> opentelemetry::Context {
        context_from_vars(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_environment_gives_a_remote_parent_and_baggage() {
        let cx = env(&[
            ("TRACEPARENT", TP),
            ("TRACESTATE", "rojo=1,congo=2"),
            ("BAGGAGE", "tenant=acme,note=a%20b%2Cc;meta"),
        ]);
        let span = cx.span();
        let parent = span.span_context();
        assert!(parent.is_remote() && parent.is_sampled());
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(parent.trace_flags().to_u8(), 0x03, "the random bit is kept");
        assert_eq!(parent.trace_state().header(), "rojo=1,congo=2");
        assert_eq!(cx.baggage().get("tenant").unwrap().as_str(), "acme");
        let (note, meta) = cx.baggage().get_with_metadata("note").unwrap();
        assert_eq!(note.as_str(), "a b,c");
        assert_eq!(meta.as_str(), "meta");
    }

    #[test]
    fn what_is_read_from_the_environment_is_written_back_the_same() {
        let cx = env(&[
            ("TRACEPARENT", TP),
            ("TRACESTATE", "rojo=1"),
            ("BAGGAGE", "k=v%2C1"),
        ]);
        let annotations = annotations(&cx);
        assert_eq!(annotations["traceparent"], TP);
        assert_eq!(annotations["tracestate"], "rojo=1");
        assert_eq!(annotations["baggage"], "k=v%2C1");
    }

    #[test]
    fn an_invalid_environment_gives_no_parent() {
        let cx = env(&[("TRACEPARENT", "00-nope"), ("BAGGAGE", "bad member,k=v")]);
        assert!(!cx.span().span_context().is_valid());
        assert_eq!(cx.baggage().len(), 1, "valid members survive");
        assert!(
            annotations(&cx).is_empty(),
            "no span context: nothing to write"
        );
    }

    #[test]
    fn values_round_trip_through_percent_encoding() {
        for value in ["plain", "a b", "100%", "ünï,cödé;x\\y\"z", "%zz"] {
            assert_eq!(decode(&encode(value)), value, "{value}");
            assert!(
                baggage::parse(&format!("k={}", encode(value))).1.is_empty(),
                "{value} encodes to a valid value"
            );
        }
        assert_eq!(decode("%E2%82%AC"), "€");
        assert_eq!(decode("%4"), "%4");
    }

    #[cfg(feature = "k8s-openapi")]
    #[test]
    fn annotate_replaces_the_context_annotations_and_keeps_the_rest() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let mut meta = ObjectMeta {
            annotations: Some(BTreeMap::from([
                ("jobtrace.dev/traceparent".to_owned(), "00-old".to_owned()),
                ("team".to_owned(), "data".to_owned()),
            ])),
            ..ObjectMeta::default()
        };
        annotate(&mut meta, &env(&[("TRACEPARENT", TP)]));
        let annotations = meta.annotations.unwrap();
        assert_eq!(annotations.len(), 2, "{annotations:?}");
        assert_eq!(annotations["traceparent"], TP);
        assert_eq!(annotations["team"], "data");
    }
}
