//! `AdmissionReview` in, `AdmissionReview` out (pure apart from the JSON): the dispatch on kind and
//! operation, and the response that always allows.
//!
//! Hand-written rather than kube's `AdmissionReview<DynamicObject>`, which decodes the whole
//! object into JSON values before its kind is even looked at: here the object stays raw until
//! then, and only the fields the mutation reads are built, so that what a review costs is bounded
//! whatever it holds (docs/benchmarks.md: the mutation, and a hostile tenant's reviews).

use base64::Engine;
use k8s_openapi::jiff::Timestamp;
use kube::core::GroupVersionKind;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::admitted;
use crate::core::context::{RequestContext, SpanId, TraceId, Warning, WarningReason, Warnings};
use crate::core::mutate::{self, Mutation, Outcome};
use crate::k8s::policy::Policies;

/// Which mutation an endpoint performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionEndpoint {
    Jobs,
    Pods,
}

impl AdmissionEndpoint {
    pub fn label(self) -> &'static str {
        match self {
            Self::Jobs => "jobs",
            Self::Pods => "pods",
        }
    }

    /// The URL path it is served at.
    pub fn path(self) -> &'static str {
        match self {
            Self::Jobs => "/mutate/jobs",
            Self::Pods => "/mutate/pods",
        }
    }

    fn handles(self, kind: &GroupVersionKind) -> bool {
        match self {
            Self::Jobs => kind.group == "batch" && kind.kind == "Job",
            Self::Pods => kind.group.is_empty() && kind.kind == "Pod",
        }
    }
}

/// What an admission did: the `result` label of `jobtrace_admission_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionResult {
    /// The object carries trace context and was given it.
    Injected,
    /// The object has no valid trace context: left unchanged.
    NotTraced,
    /// Another kind or operation than the endpoint's: left unchanged.
    Skipped,
    /// The body is not an `AdmissionReview`.
    BadRequest,
    /// The webhook had no room for the review in its budget: allowed unchanged.
    Overloaded,
}

impl AdmissionResult {
    pub fn label(self) -> &'static str {
        match self {
            Self::Injected => "injected",
            Self::NotTraced => "not_traced",
            Self::Skipped => "skipped",
            Self::BadRequest => "bad_request",
            Self::Overloaded => "overloaded",
        }
    }
}

/// A request body that is not an `AdmissionReview`.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the body is not an AdmissionReview: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// Only what the dispatch needs; the object stays raw until its kind is known.
#[derive(Deserialize)]
struct Review<'a> {
    #[serde(borrow)]
    request: Option<Request<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    uid: String,
    kind: GroupVersionKind,
    operation: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
}

/// The response to one review.
#[derive(Debug)]
pub struct Reviewed {
    /// The serialized `AdmissionReview`.
    pub body: Vec<u8>,
    /// Injected, not traced or skipped: a review is never a bad request.
    pub result: AdmissionResult,
    pub warnings: Warnings,
    /// The trace the object joined and its trace flags, when it is traced.
    pub traced: Option<(
        crate::core::context::TraceId,
        crate::core::context::TraceFlags,
    )>,
}

/// What a review brings besides its body: fresh ids for new spans and traces, and the time.
#[derive(Debug, Clone, Copy)]
pub struct Fresh {
    pub span: SpanId,
    pub trace: TraceId,
    pub now: Timestamp,
}

impl Fresh {
    /// Random ids and the clock's time.
    pub fn now() -> Self {
        Self {
            span: SpanId::from_random(rand::random()),
            trace: TraceId::from_random(rand::random()),
            now: Timestamp::now(),
        }
    }
}

/// Handles one `AdmissionReview` body, with the settings `policies` give. `request_context` is the
/// trace context headers of the request the review is about. Anything that is a
/// review is allowed, changed or not; only a body that is not a review at all is an error.
pub fn review(
    endpoint: AdmissionEndpoint,
    body: &[u8],
    fresh: Fresh,
    request_context: &RequestContext,
    policies: &Policies,
) -> Result<Reviewed, ReviewError> {
    let review: Review = serde_json::from_slice(body)?;
    let request = review.request.ok_or(ReviewError::NoRequest)?;
    let object = request
        .object
        .filter(|_| request.operation == "CREATE" && endpoint.handles(&request.kind));
    let Some(object) = object else {
        return Ok(respond(request.uid, None, AdmissionResult::Skipped));
    };
    if object.get().len() >= MAX_OBJECT_BYTES {
        // Any patch would take it past what the apiserver stores: not worth reading.
        let mutation = unchanged(Warning {
            reason: WarningReason::ObjectTooLarge,
            message: format!(
                "not traced, left unchanged: the object has {} bytes, and the context would take \
                 it past the {MAX_OBJECT_BYTES} the apiserver stores",
                object.get().len()
            ),
        });
        return Ok(respond(
            request.uid,
            Some(mutation),
            AdmissionResult::NotTraced,
        ));
    }
    let keys = super::keys::keyring();
    let mutation = match endpoint {
        AdmissionEndpoint::Jobs => admitted::job(object.get()).map(|job| {
            let namespace = request
                .namespace
                .as_deref()
                .or(job.metadata.namespace.as_deref())
                .unwrap_or_default();
            let admission = mutate::Admission {
                namespace,
                new_span: fresh.span,
                new_trace: fresh.trace,
                now: fresh.now,
                request: request_context,
                keys: &keys,
            };
            let empty = std::collections::BTreeMap::new();
            let labels = job.metadata.labels.as_ref().unwrap_or(&empty);
            let (resolution, unsynced) = policies.resolve(namespace, labels);
            let mut mutation = mutate::job::mutate(&job, &admission, &resolution);
            mutation.warnings.extend(unsynced);
            mutation
        }),
        AdmissionEndpoint::Pods => admitted::pod(object.get()).map(|pod| {
            let admission = mutate::Admission {
                namespace: request.namespace.as_deref().unwrap_or_default(),
                new_span: fresh.span,
                new_trace: fresh.trace,
                now: fresh.now,
                request: request_context,
                keys: &keys,
            };
            mutate::pod::mutate(&pod, &admission)
        }),
    };
    let mutation = match mutation {
        Ok(m) => within_object_limit(m, object.get().len()),
        Err(e) => {
            let (reason, what) = if e.too_large() {
                (WarningReason::ObjectTooLarge, "not traced")
            } else {
                (WarningReason::UnreadableObject, "could not read the object")
            };
            unchanged(Warning {
                reason,
                message: format!("{what}, left unchanged: {e}"),
            })
        }
    };
    let (result, traced) = match mutation.outcome {
        Outcome::Traced { trace_id, flags } => (AdmissionResult::Injected, Some((trace_id, flags))),
        Outcome::NotTraced => (AdmissionResult::NotTraced, None),
    };
    let mut reviewed = respond(request.uid, Some(mutation), result);
    reviewed.traced = traced;
    Ok(reviewed)
}

/// The `request.uid` of a review from the first bytes of its body, where the apiserver writes
/// it: the body is read only until the uid is found.
pub fn uid_of(prefix: &[u8]) -> Option<String> {
    let mut uid = None;
    let _ = UidSeek {
        uid: &mut uid,
        within_request: false,
    }
    .deserialize(&mut serde_json::Deserializer::from_slice(prefix));
    uid
}

/// Walks a review's top-level object to `request`, then to its `uid`, and stops there.
struct UidSeek<'u> {
    uid: &'u mut Option<String>,
    within_request: bool,
}

impl<'de> DeserializeSeed<'de> for UidSeek<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for UidSeek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an AdmissionReview")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match (self.within_request, key.as_ref()) {
                (false, "request") => {
                    return map.next_value_seed(UidSeek {
                        uid: self.uid,
                        within_request: true,
                    });
                }
                (true, "uid") => {
                    *self.uid = Some(map.next_value()?);
                    return Err(serde::de::Error::custom("found"));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The answer to a review the webhook had no room for: allowed, unchanged, with a warning.
pub fn overloaded(uid: String) -> Reviewed {
    let mutation = unchanged(Warning {
        reason: WarningReason::Overloaded,
        message: "not traced, left unchanged: the webhook has more admission work in hand than \
                  its memory budget allows"
            .to_owned(),
    });
    respond(uid, Some(mutation), AdmissionResult::Overloaded)
}

/// Largest object, in bytes of JSON, that jobtrace's patch may make: etcd's default request
/// limit, which an object's stored form (smaller than its JSON) must fit.
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// A mutation that leaves the object as it is, with one warning.
fn unchanged(warning: Warning) -> Mutation {
    Mutation {
        patch: json_patch::Patch(Vec::new()),
        warnings: Warnings::from_iter([warning]),
        outcome: Outcome::NotTraced,
    }
}

/// `mutation`, unless its patch would take an object of `object_bytes` past
/// [`MAX_OBJECT_BYTES`]: the apiserver would then refuse the object, and jobtrace never blocks a
/// create.
fn within_object_limit(mutation: Mutation, object_bytes: usize) -> Mutation {
    let patch_bytes = serde_json::to_vec(&mutation.patch).map_or(usize::MAX, |p| p.len());
    if object_bytes.saturating_add(patch_bytes) <= MAX_OBJECT_BYTES {
        return mutation;
    }
    let mut warnings = mutation.warnings;
    warnings.push(Warning {
        reason: WarningReason::ObjectTooLarge,
        message: format!(
            "not traced, left unchanged: the context would take the object from {object_bytes} \
             to {} bytes, past the {MAX_OBJECT_BYTES} the apiserver stores",
            object_bytes.saturating_add(patch_bytes)
        ),
    });
    Mutation {
        patch: json_patch::Patch(Vec::new()),
        warnings,
        outcome: Outcome::NotTraced,
    }
}

/// The `AdmissionReview` v1 response: always allowed, the patch base64-encoded as the API expects.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseReview {
    api_version: &'static str,
    kind: &'static str,
    response: Response,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

fn respond(uid: String, mutation: Option<Mutation>, result: AdmissionResult) -> Reviewed {
    let mut response = Response {
        uid,
        allowed: true,
        patch_type: None,
        patch: None,
        warnings: Vec::new(),
    };
    let mut warnings = Warnings::new();
    if let Some(mutation) = mutation {
        if !mutation.patch.0.is_empty() {
            let json = serde_json::to_vec(&mutation.patch).expect("a JSON patch always serializes");
            response.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
            response.patch_type = Some("JSONPatch");
        }
        response.warnings = mutation.warnings.messages();
        warnings = mutation.warnings;
    }
    let review = ResponseReview {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response,
    };
    let body = serde_json::to_vec(&review).expect("a review always serializes");
    Reviewed {
        body,
        result,
        warnings,
        traced: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uid_is_found_in_the_first_bytes_of_a_review() {
        let apiserver = br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u-1","kind":{"#;
        assert_eq!(uid_of(apiserver).as_deref(), Some("u-1"));
        let later =
            br#"{"request":{"kind":{"group":"batch"},"object":{"uid":"not-this"},"uid":"u-2"}}"#;
        assert_eq!(uid_of(later).as_deref(), Some("u-2"));
        for none in [
            &br#"{"kind":"AdmissionReview","request":{"kind":{"#[..],
            br#"{"uid":"top-level"}"#,
            b"[1,2]",
            b"",
        ] {
            assert_eq!(uid_of(none), None, "{}", String::from_utf8_lossy(none));
        }
    }
}
