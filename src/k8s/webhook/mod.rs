//! The admission webhook's HTTP surface: `POST /mutate/jobs` and `POST /mutate/pods`.

pub mod admitted;
pub mod budget;
pub mod keys;
pub mod review;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::core::context::RequestContext;
use crate::k8s::metrics::{AdmissionLabels, EndpointLabels, Metrics, WarningLabels};
use crate::k8s::policy::Policies;
use crate::k8s::selftrace::SelfTracer;
pub use review::{AdmissionEndpoint, AdmissionResult};

/// Largest `AdmissionReview` accepted. Objects are at most 1.5 MiB in etcd; a review carries at
/// most the object and its old version.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// The apiserver gives a webhook at most 30 s; never hold a request longer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the handlers share.
#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    tracer: Option<SelfTracer>,
    policies: Policies,
    budget: budget::Budget,
}

/// The router for the webhook's HTTPS port, with the default settings and no policies.
pub fn router(metrics: Arc<Metrics>) -> Router {
    traced_router(
        metrics,
        None,
        Policies::defaults_only(crate::core::policy::TraceSettings::default()),
    )
}

/// The router, deciding with `policies`, and recording a span of jobtrace's own for a share of
/// admissions when `tracer` is set.
pub fn traced_router(
    metrics: Arc<Metrics>,
    tracer: Option<SelfTracer>,
    policies: Policies,
) -> Router {
    budgeted_router(metrics, tracer, policies, budget::Budget::default())
}

/// The router, holding at most `budget` of admission work at once.
pub fn budgeted_router(
    metrics: Arc<Metrics>,
    tracer: Option<SelfTracer>,
    policies: Policies,
    budget: budget::Budget,
) -> Router {
    Router::new()
        .route(AdmissionEndpoint::Jobs.path(), post(mutate_jobs))
        .route(AdmissionEndpoint::Pods.path(), post(mutate_pods))
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::new())
        .with_state(Shared {
            metrics,
            tracer,
            policies,
            budget,
        })
}

async fn mutate_jobs(State(shared): State<Shared>, request: Request) -> Response {
    handle(AdmissionEndpoint::Jobs, &shared, request).await
}

async fn mutate_pods(State(shared): State<Shared>, request: Request) -> Response {
    handle(AdmissionEndpoint::Pods, &shared, request).await
}

fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads at most `MAX_BODY` bytes; a larger declared length is refused before any byte is read.
/// The body goes into one buffer of its declared length, each piece copied in as it arrives and
/// dropped: gathering the pieces, then copying them into one buffer, held it twice.
async fn read_body(request: Request) -> Result<Bytes, (StatusCode, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        )
    };
    let declared = content_length(request.headers());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let mut read = Vec::with_capacity(declared.map_or(0, |n| usize::try_from(n).unwrap_or(0)));
    let mut body = request.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if read.len() + data.len() > MAX_BODY {
                return Err(too_large());
            }
            read.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(read))
}

/// The trace context headers of the create request (`traceparent`, `tracestate`, `baggage`), each
/// value it carried; a value that is not visible ASCII is left out.
fn request_context(headers: &axum::http::HeaderMap) -> RequestContext {
    let all = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    };
    RequestContext {
        traceparent: all("traceparent"),
        tracestate: all("tracestate"),
        baggage: all("baggage"),
    }
}

async fn handle(endpoint: AdmissionEndpoint, shared: &Shared, request: Request) -> Response {
    let metrics = &shared.metrics;
    let started = Instant::now();
    let mut self_span = shared
        .tracer
        .as_ref()
        .and_then(|t| t.admission(endpoint.label()));
    let labels = |result: AdmissionResult| AdmissionLabels {
        endpoint: endpoint.label(),
        result: result.label(),
    };
    let request_context = request_context(request.headers());
    let deadline = tokio::time::Instant::now() + shared.budget.wait;
    let declared = content_length(request.headers()).map_or(MAX_BODY, |n| {
        usize::try_from(n).unwrap_or(MAX_BODY).min(MAX_BODY)
    });
    let Some(_share) = shared
        .budget
        .reserve(budget::share(declared), deadline)
        .await
    else {
        let prefix = read_prefix(request).await;
        return overloaded(endpoint, shared, &prefix, self_span);
    };
    let response = match read_body(request).await {
        Err((status, message)) => {
            metrics
                .admissions
                .get_or_create(&labels(AdmissionResult::BadRequest))
                .inc();
            if let Some(span) = self_span.as_mut() {
                span.fail(message.clone());
            }
            error(status, &message)
        }
        Ok(body) => {
            let fresh = review::Fresh::now();
            let span_id = fresh.span;
            match review::review(endpoint, &body, fresh, &request_context, &shared.policies) {
                Err(e) => {
                    metrics
                        .admissions
                        .get_or_create(&labels(AdmissionResult::BadRequest))
                        .inc();
                    if let Some(span) = self_span.as_mut() {
                        span.fail(e.to_string());
                    }
                    error(StatusCode::BAD_REQUEST, &e.to_string())
                }
                Ok(reviewed) => {
                    metrics
                        .admissions
                        .get_or_create(&labels(reviewed.result))
                        .inc();
                    for (reason, count) in reviewed.warnings.by_reason() {
                        metrics
                            .admission_warnings
                            .get_or_create(&WarningLabels {
                                reason: reason.label(),
                            })
                            .inc_by(count);
                    }
                    if let Some(span) = self_span.as_mut() {
                        span.set("jobtrace.admission.result", reviewed.result.label());
                        span.set(
                            "jobtrace.admission.warnings",
                            i32::try_from(reviewed.warnings.total()).unwrap_or(i32::MAX),
                        );
                        if let Some((trace_id, flags)) = reviewed.traced {
                            span.link(trace_id, span_id, flags.bits());
                        }
                    }
                    tracing::debug!(
                        endpoint = endpoint.label(),
                        result = reviewed.result.label(),
                        warnings = reviewed.warnings.total(),
                        "admission reviewed"
                    );
                    ([(header::CONTENT_TYPE, "application/json")], reviewed.body).into_response()
                }
            }
        }
    };
    metrics
        .admission_duration
        .get_or_create(&EndpointLabels {
            endpoint: endpoint.label(),
        })
        .observe(started.elapsed().as_secs_f64());
    if let (Some(tracer), Some(mut span)) = (&shared.tracer, self_span) {
        span.set("http.route", endpoint.path());
        tracer.record(span);
    }
    response
}

/// How much of a body is read to answer a review the budget had no room for: the apiserver
/// writes the request's uid in its first hundred bytes.
const PREFIX: usize = 4096;

/// The first [`PREFIX`] bytes of the body; the rest is read and dropped as it arrives (up to
/// [`MAX_BODY`], for a moment at most), so that a client which sends the whole body before
/// reading gets the answer rather than a reset connection, and nothing is held.
async fn read_prefix(request: Request) -> Vec<u8> {
    let mut body = request.into_body();
    let mut prefix = Vec::new();
    let mut read = 0usize;
    let drain = async {
        while read <= MAX_BODY {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = PREFIX.saturating_sub(prefix.len());
                        prefix.extend_from_slice(&data[..data.len().min(room)]);
                        read += data.len();
                    }
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    prefix
}

/// The answer to a review the budget had no room for: allowed, unchanged, with a warning, or a
/// 503 when not even the request's uid can be found (the apiserver then applies the webhook's
/// failure policy, `Ignore` as jobtrace registers it).
fn overloaded(
    endpoint: AdmissionEndpoint,
    shared: &Shared,
    body: &[u8],
    mut self_span: Option<crate::k8s::selftrace::SelfSpan>,
) -> Response {
    let metrics = &shared.metrics;
    metrics
        .admissions
        .get_or_create(&AdmissionLabels {
            endpoint: endpoint.label(),
            result: AdmissionResult::Overloaded.label(),
        })
        .inc();
    metrics
        .admission_warnings
        .get_or_create(&WarningLabels {
            reason: crate::core::context::WarningReason::Overloaded.label(),
        })
        .inc();
    tracing::warn!(
        endpoint = endpoint.label(),
        "admission budget exhausted: answered unchanged"
    );
    if let Some(span) = self_span.as_mut() {
        span.set(
            "jobtrace.admission.result",
            AdmissionResult::Overloaded.label(),
        );
    }
    if let (Some(tracer), Some(mut span)) = (&shared.tracer, self_span) {
        span.set("http.route", endpoint.path());
        tracer.record(span);
    }
    match review::uid_of(body) {
        Some(uid) => (
            [(header::CONTENT_TYPE, "application/json")],
            review::overloaded(uid).body,
        )
            .into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "jobtrace has more admission work in hand than it may hold",
        ),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobtrace_testkit::fixtures::TP;

    #[test]
    fn headers_are_read_from_an_http_request() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append("traceparent", TP.parse().unwrap());
        headers.append("baggage", "a=1".parse().unwrap());
        headers.append("baggage", "b=2".parse().unwrap());
        assert_eq!(
            request_context(&headers),
            RequestContext {
                traceparent: vec![TP.to_owned()],
                tracestate: Vec::new(),
                baggage: vec!["a=1".to_owned(), "b=2".to_owned()],
            }
        );
    }
}
