//! The admission webhook's HTTP surface: `POST /mutate/jobs` and `POST /mutate/pods`.

pub mod review;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::metrics::{AdmissionLabels, EndpointLabels, Metrics, WarningLabels};
use crate::policy::Policies;
use crate::selftrace::SelfTracer;
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
}

/// The router for the webhook's HTTPS port, with the default settings and no policies.
pub fn router(metrics: Arc<Metrics>) -> Router {
    traced_router(
        metrics,
        None,
        Policies::defaults_only(crate::policy::Defaults::default()),
    )
}

/// The router, deciding with `policies`, and recording a span of jobtrace's own for a share of
/// admissions when `tracer` is set.
pub fn traced_router(
    metrics: Arc<Metrics>,
    tracer: Option<SelfTracer>,
    policies: Policies,
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
async fn read_body(request: Request) -> Result<Bytes, (StatusCode, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY} bytes"),
        )
    };
    if content_length(request.headers()).is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err((
            StatusCode::BAD_REQUEST,
            format!("the body could not be read: {e}"),
        )),
    }
}

async fn handle(endpoint: AdmissionEndpoint, shared: &Shared, request: Request) -> Response {
    let metrics = &shared.metrics;
    let started = Instant::now();
    let mut own = shared
        .tracer
        .as_ref()
        .and_then(|t| t.admission(endpoint.label()));
    let labels = |result: AdmissionResult| AdmissionLabels {
        endpoint: endpoint.label(),
        result: result.label(),
    };
    let request_context = crate::context::RequestContext::from_headers(request.headers());
    let response = match read_body(request).await {
        Err((status, message)) => {
            metrics
                .admissions
                .get_or_create(&labels(AdmissionResult::BadRequest))
                .inc();
            if let Some(span) = own.as_mut() {
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
                    if let Some(span) = own.as_mut() {
                        span.fail(e.to_string());
                    }
                    error(StatusCode::BAD_REQUEST, &e.to_string())
                }
                Ok(reviewed) => {
                    metrics
                        .admissions
                        .get_or_create(&labels(reviewed.result))
                        .inc();
                    for warning in &reviewed.warnings {
                        metrics
                            .admission_warnings
                            .get_or_create(&WarningLabels {
                                reason: warning.reason.label(),
                            })
                            .inc();
                    }
                    if let Some(span) = own.as_mut() {
                        span.set("jobtrace.admission.result", reviewed.result.label());
                        span.set(
                            "jobtrace.admission.warnings",
                            i32::try_from(reviewed.warnings.len()).unwrap_or(i32::MAX),
                        );
                        if let Some((trace_id, flags)) = reviewed.traced {
                            span.link(trace_id, span_id, flags);
                        }
                    }
                    tracing::debug!(
                        endpoint = endpoint.label(),
                        result = reviewed.result.label(),
                        warnings = reviewed.warnings.len(),
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
    if let (Some(tracer), Some(mut span)) = (&shared.tracer, own) {
        span.set("http.route", endpoint.path());
        tracer.record(span);
    }
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
