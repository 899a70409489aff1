//! Span building (pure): a Job or a pod in, the spans jobtrace exports for it out. Ids come from
//! the annotations the webhook wrote, times from the objects' own timestamps, so any replica,
//! before or after a restart, builds the very same spans.

mod job;
mod pod;

pub use job::{MAX_JOB_LABELS, job_spans};
pub use pod::pod_span;

use k8s_openapi::jiff::Timestamp;

use crate::core::context::{SpanId, TraceFlags, TraceId};

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Int(i64),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::String(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::String(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Self::Int(i64::from(v))
    }
}

pub type Attributes = Vec<(&'static str, Value)>;

/// A span's outcome, as OpenTelemetry defines it.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Unset,
    Ok,
    Error { description: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub time: Timestamp,
    pub attributes: Attributes,
}

/// What a span stands for, as OpenTelemetry's span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpanKind {
    /// Lifecycle spans of Jobs and pods, and jobtrace's own background work.
    #[default]
    Internal,
    /// An admission request jobtrace served.
    Server,
}

/// One finished span, ready for export.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub name: String,
    pub start: Timestamp,
    pub end: Timestamp,
    pub attributes: Attributes,
    pub events: Vec<Event>,
    pub status: Status,
    pub kind: SpanKind,
    /// Attributes whose keys are known only at run time: the Job labels a policy copies to the
    /// span, as `k8s.job.label.<key>`.
    pub label_attributes: Vec<(String, String)>,
    /// Attributes left out as the span was built (Job labels past [`MAX_JOB_LABELS`]); the
    /// export adds those its limits drop, in OTLP's `dropped_attributes_count`.
    pub dropped_attributes: u32,
    /// The W3C trace flags of the span's context (sampled, and Level 2's random bit).
    pub trace_flags: u8,
    /// Spans in other traces this one relates to (jobtrace's own spans link to the Job's trace),
    /// with the trace flags of each linked context.
    pub links: Vec<Link>,
}

/// A span in another trace that a span relates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_flags: u8,
}

impl SpanRecord {
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// Why an object yields no span (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The webhook didn't trace it: no trace ids on it.
    NotTraced,
    /// Still running, and not deleted.
    NotFinished,
    /// Its trace context was not sampled: propagated, never exported.
    Unsampled,
    /// Its span has been exported already.
    Exported,
}

/// The annotations of a traced object whose spans are not exported yet, and its trace id.
fn traced(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<(&std::collections::BTreeMap<String, String>, TraceId), Skip> {
    let annotations = meta.annotations.as_ref().ok_or(Skip::NotTraced)?;
    let trace_id = annotations
        .get(crate::core::names::TRACE_ID)
        .and_then(|v| TraceId::parse(v))
        .ok_or(Skip::NotTraced)?;
    if annotations.contains_key(crate::core::names::EXPORTED) {
        return Err(Skip::Exported);
    }
    Ok((annotations, trace_id))
}

/// The latest moment a Kubernetes timestamp can stand for: the apiserver, the controllers and the
/// kubelet write times to the second, cut down, so the true moment lies within the second after.
/// Ends use it, so that a span surely contains what it stands for (a process that ran 1.2 s in a
/// pod whose timestamps say 1 s).
fn latest(time: Timestamp) -> Timestamp {
    time.saturating_add(k8s_openapi::jiff::SignedDuration::from_secs(1))
        .unwrap_or(time)
}

/// When the object began, as precisely as known: the webhook's admission time (microseconds),
/// else its `creationTimestamp` (whole seconds).
fn began(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Timestamp> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(crate::core::names::ADMITTED_AT))
        .and_then(|v| v.parse().ok())
        .or_else(|| meta.creation_timestamp.as_ref().map(|t| t.0))
}

/// A span id derived from another, for spans with no id of their own stored anywhere (the queued
/// span): the same input always gives the same id, and it never equals the input.
pub fn derived_span_id(from: SpanId, salt: &[u8]) -> SpanId {
    // FNV-1a: stable across versions and platforms, which std's hashers don't promise.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in from.0.iter().chain(salt) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut id = SpanId::from_random(hash.to_be_bytes());
    if id == from {
        id.0[7] ^= 1;
    }
    id
}

/// The trace flags of a traced object's context: those the webhook recorded at admission. An
/// object admitted before jobtrace recorded them has them only in its containers' `TRACEPARENT`
/// (the first that belongs to `trace_id`; sampled when there is none).
fn trace_flags<'a>(
    annotations: &std::collections::BTreeMap<String, String>,
    containers: impl IntoIterator<Item = &'a k8s_openapi::api::core::v1::Container>,
    trace_id: TraceId,
) -> TraceFlags {
    if let Some(flags) = annotations
        .get(crate::core::names::TRACE_FLAGS)
        .and_then(|v| u8::from_str_radix(v, 16).ok())
    {
        return TraceFlags::from_bits(flags);
    }
    containers
        .into_iter()
        .flat_map(|c| c.env.iter().flatten())
        .filter(|v| v.name == crate::core::names::env::TRACEPARENT)
        .filter_map(|v| crate::core::context::traceparent::parse(v.value.as_deref()?).ok())
        .find(|tp| tp.trace_id == trace_id)
        .map_or(TraceFlags::SAMPLED, |tp| tp.flags)
}

#[cfg(test)]
mod tests;
