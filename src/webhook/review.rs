//! `AdmissionReview` in, `AdmissionReview` out (pure apart from the JSON): the dispatch on kind and
//! operation, and the response that always allows.

use base64::Engine;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::core::GroupVersionKind;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::context::{RequestContext, SpanId, TraceId, Warning, WarningReason};
use crate::mutate::{self, Mutation, Outcome};
use crate::policy::Policies;

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
}

impl AdmissionResult {
    pub fn label(self) -> &'static str {
        match self {
            Self::Injected => "injected",
            Self::NotTraced => "not_traced",
            Self::Skipped => "skipped",
            Self::BadRequest => "bad_request",
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
    pub warnings: Vec<Warning>,
    /// The trace the object joined and its trace flags, when it is traced.
    pub traced: Option<(crate::context::TraceId, u8)>,
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
    let mutation = match endpoint {
        AdmissionEndpoint::Jobs => serde_json::from_str::<Job>(object.get()).map(|job| {
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
            };
            let empty = std::collections::BTreeMap::new();
            let labels = job.metadata.labels.as_ref().unwrap_or(&empty);
            let (resolution, unsynced) = policies.resolve(namespace, labels);
            let mut mutation = mutate::job::mutate(&job, &admission, &resolution);
            mutation.warnings.extend(unsynced);
            mutation
        }),
        AdmissionEndpoint::Pods => serde_json::from_str::<Pod>(object.get()).map(|pod| {
            let admission = mutate::Admission {
                namespace: request.namespace.as_deref().unwrap_or_default(),
                new_span: fresh.span,
                new_trace: fresh.trace,
                now: fresh.now,
                request: request_context,
            };
            mutate::pod::mutate(&pod, &admission)
        }),
    };
    let mutation = mutation.unwrap_or_else(|e| Mutation {
        patch: json_patch::Patch(Vec::new()),
        warnings: vec![Warning {
            reason: WarningReason::UnreadableObject,
            message: format!("could not read the object, left unchanged: {e}"),
        }],
        outcome: Outcome::NotTraced,
    });
    let (result, traced) = match mutation.outcome {
        Outcome::Traced { trace_id, flags } => (AdmissionResult::Injected, Some((trace_id, flags))),
        Outcome::NotTraced => (AdmissionResult::NotTraced, None),
    };
    let mut reviewed = respond(request.uid, Some(mutation), result);
    reviewed.traced = traced;
    Ok(reviewed)
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
    let mut warnings = Vec::new();
    if let Some(mutation) = mutation {
        if !mutation.patch.0.is_empty() {
            let json = serde_json::to_vec(&mutation.patch).expect("a JSON patch always serializes");
            response.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
            response.patch_type = Some("JSONPatch");
        }
        response.warnings = mutation
            .warnings
            .iter()
            .map(|w| format!("jobtrace: {}", w.message))
            .collect();
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
