//! The mutations (pure: object in, JSON patch and warnings out). Every operation is an RFC 6902
//! `add` with an escaped pointer (or the `remove` of an annotation of jobtrace's that arrived on a
//! CREATE), and a second pass over a mutated object yields an empty patch.

mod env;
pub mod job;
mod patch;
mod plan;
pub mod pod;
pub mod tag;

pub use plan::Origin;

use json_patch::Patch;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::core::context::{SpanId, TraceId, Warnings};
use crate::core::names;

/// What an admission brings besides the object, passed in so the mutation stays pure.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// The request's namespace.
    pub namespace: &'a str,
    /// The id the object's span gets unless it already has one from this very request.
    pub new_span: SpanId,
    /// The id a trace of the object's own gets (a root trace, a linked one), on the same terms.
    pub new_trace: TraceId,
    /// The webhook's clock.
    pub now: Timestamp,
    /// The trace context headers of the create request, read where the settings say so.
    pub request: &'a crate::core::context::RequestContext,
    /// The keys the admission tags with, and checks a reinvocation's tag against.
    pub keys: &'a tag::Keyring,
}

/// How long one create request can last, reinvocations included: the apiserver ends a request
/// after a minute. An admission stamp older than this is from another request.
const REQUEST_LIFETIME: SignedDuration = SignedDuration::from_secs(60);
/// Clock skew between webhook replicas tolerated in an admission stamp from the future.
const CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(5);

/// The admission time jobtrace writes on an object.
fn admission_time(now: Timestamp) -> String {
    now.round(k8s_openapi::jiff::Unit::Microsecond)
        .unwrap_or(now)
        .to_string()
}

/// What a reinvocation keeps of the request's first pass: the ids and the stamp jobtrace wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kept {
    trace_id: TraceId,
    span_id: SpanId,
    admitted_at: String,
}

/// What jobtrace wrote on an object arriving on a CREATE, when jobtrace already admitted it in
/// this same request (the apiserver reinvoking the webhook), as opposed to an old object
/// re-created from a saved manifest or a stamp the creator wrote: only then are the ids kept. In
/// a reinvocation the object has no `creationTimestamp` yet (the apiserver sets it after
/// admission), jobtrace's stamp on it is younger than a request can live, no entry of its
/// `managedFields` (which the apiserver writes for this request before admission, to the second)
/// is later than the stamp, and the admission tag over the stamp, the ids, and the object's kind,
/// namespace and name verifies under the webhook's key ([`tag`]). A tag that is missing, malformed
/// or made for anything else is a fresh create.
fn reinvocation(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: tag::Kind,
    admission: &Admission,
) -> Option<Kept> {
    reinvocation_with(meta, kind, admission, admission.keys)
}

/// [`reinvocation`] with the tag checked against `keys`.
fn reinvocation_with(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: tag::Kind,
    admission: &Admission,
    keys: &tag::Keyring,
) -> Option<Kept> {
    if meta.creation_timestamp.is_some() {
        return None;
    }
    let annotations = meta.annotations.as_ref()?;
    let admitted_at = annotations.get(names::ADMITTED_AT)?;
    let stamp = admitted_at.parse::<Timestamp>().ok()?;
    let age = admission.now.duration_since(stamp);
    let this_request = meta
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|entry| entry.time.as_ref())
        .map(|time| time.0)
        .max();
    if age > REQUEST_LIFETIME || age < -CLOCK_SKEW || this_request.is_some_and(|t| t > stamp) {
        return None;
    }
    let stamped = tag::Stamped {
        kind,
        namespace: admission.namespace,
        name: meta.name.as_deref().unwrap_or_default(),
        trace_id: TraceId::parse(annotations.get(names::TRACE_ID)?)?,
        span_id: SpanId::parse(annotations.get(names::SPAN_ID)?)?,
        admitted_at,
    };
    let tag = annotations.get(names::ADMISSION_TAG)?;
    keys.verifies(&stamped, tag, admission.now).then(|| Kept {
        trace_id: stamped.trace_id,
        span_id: stamped.span_id,
        admitted_at: admitted_at.clone(),
    })
}

/// The admission tag of an object of `kind` named `name`, in the admission's namespace, given
/// these ids and stamp: what a reinvocation checks.
fn admission_tag(
    kind: tag::Kind,
    admission: &Admission,
    name: Option<&str>,
    trace_id: TraceId,
    span_id: SpanId,
    admitted_at: &str,
) -> String {
    admission.keys.tag(&tag::Stamped {
        kind,
        namespace: admission.namespace,
        name: name.unwrap_or_default(),
        trace_id,
        span_id,
        admitted_at,
    })
}

/// What a mutation decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The object carries trace context: the patch injects it (and is empty on a second pass).
    /// `flags` are the W3C trace flags of the creator's context.
    Traced {
        trace_id: TraceId,
        flags: crate::core::context::TraceFlags,
    },
    /// No valid trace context: nothing to inject.
    NotTraced,
}

/// A mutation's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub patch: Patch,
    pub warnings: Warnings,
    pub outcome: Outcome,
}

impl Outcome {
    /// Whether the spans of a traced object will be exported.
    pub fn sampled(&self) -> bool {
        matches!(self, Self::Traced { flags, .. } if flags.is_sampled())
    }
}

impl Mutation {
    fn untouched(warnings: Warnings) -> Self {
        Self {
            patch: Patch(Vec::new()),
            warnings,
            outcome: Outcome::NotTraced,
        }
    }
}

#[cfg(test)]
mod tests;
