//! The metrics port, plain HTTP: `/healthz`, `/readyz`, `/syncz` and `/metrics`.
//!
//! `/readyz` is what the Service's endpoints follow, so it says only whether this process can
//! answer admissions; the controller's progress is `/syncz`'s, and never takes a replica out of
//! the Service.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::k8s::controller::ControllerSync;
use crate::k8s::metrics::Metrics;

/// What `/readyz` reports: ready once admissions can be answered (the serving certificate loaded,
/// the webhook's socket listening), and not any more once shutdown begins, so that endpoints stop
/// sending admissions before the server drains. Nothing else: neither the controller's watches
/// nor the `JobTracePolicy` copy, which the webhook answers without (with the cluster defaults
/// and a `policies_not_synced` warning).
#[derive(Debug, Default)]
pub struct Readiness {
    serving: AtomicBool,
    stopping: AtomicBool,
}

impl Readiness {
    /// Admissions can be answered: the webhook has its certificate and accepts connections (or,
    /// in a process without a webhook, the metrics port is up).
    pub fn set_serving(&self) {
        self.serving.store(true, Ordering::Release);
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// `None` when ready, or why not.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.stopping.load(Ordering::Acquire) {
            Some("shutting down")
        } else if !self.serving.load(Ordering::Acquire) {
            Some("serving certificate not loaded")
        } else {
            None
        }
    }
}

/// What the metrics port reports on.
#[derive(Clone)]
pub struct PortState {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    /// The controller's state, in a process that runs one.
    pub controller: Option<Arc<ControllerSync>>,
}

pub fn router(port_state: PortState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/syncz", get(syncz))
        .route("/metrics", get(metrics_text))
        .with_state(port_state)
}

async fn readyz(State(state): State<PortState>) -> impl IntoResponse {
    match state.readiness.not_ready() {
        None => (StatusCode::OK, "ready".to_owned()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    }
}

/// 200 when the controller has nothing left to list (synced, or standing by), 503 while it starts
/// or lists, 404 in a process without one.
async fn syncz(State(state): State<PortState>) -> impl IntoResponse {
    let Some(controller) = state.controller else {
        return (
            StatusCode::NOT_FOUND,
            "no controller in this process".to_owned(),
        );
    };
    let sync = controller.state();
    if sync.synced() {
        (StatusCode::OK, sync.describe().to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not synced: {}", sync.describe()),
        )
    }
}

async fn metrics_text(State(state): State<PortState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn ready_once_serving_and_until_stopping() {
        let readiness = Readiness::default();
        assert_eq!(
            readiness.not_ready(),
            Some("serving certificate not loaded")
        );
        readiness.set_serving();
        assert_eq!(readiness.not_ready(), None);
        readiness.set_stopping();
        assert_eq!(readiness.not_ready(), Some("shutting down"));
    }

    /// The status and body of `GET path`.
    async fn get(port_state: &PortState, path: &str) -> (StatusCode, String) {
        let response = router(port_state.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn reporting_on(controller: Option<Arc<ControllerSync>>) -> PortState {
        PortState {
            metrics: Arc::default(),
            readiness: Arc::default(),
            controller,
        }
    }

    #[tokio::test]
    async fn readyz_never_waits_on_a_listing_controller() {
        let controller = Arc::new(ControllerSync::default());
        controller.leading();
        let port_state = reporting_on(Some(controller));
        port_state.readiness.set_serving();
        assert_eq!(
            get(&port_state, "/readyz").await,
            (StatusCode::OK, "ready".to_owned())
        );
        assert_eq!(
            get(&port_state, "/syncz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not synced: listing the traced Jobs and pods".to_owned()
            )
        );
        port_state.readiness.set_stopping();
        assert_eq!(
            get(&port_state, "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: shutting down".to_owned()
            )
        );
    }

    #[tokio::test]
    async fn syncz_tells_the_controllers_state() {
        let controller = Arc::new(ControllerSync::default());
        let port_state = reporting_on(Some(controller.clone()));
        assert_eq!(
            get(&port_state, "/syncz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not synced: starting".to_owned()
            )
        );
        controller.standby();
        assert_eq!(
            get(&port_state, "/syncz").await,
            (
                StatusCode::OK,
                "standby: another replica leads and lists".to_owned()
            )
        );
        assert_eq!(
            get(&port_state, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE,
            "a synced controller doesn't make the webhook ready either"
        );
        assert_eq!(
            get(&reporting_on(None), "/syncz").await,
            (
                StatusCode::NOT_FOUND,
                "no controller in this process".to_owned()
            )
        );
    }

    #[tokio::test]
    async fn healthz_and_metrics_answer_from_the_start() {
        let port_state = reporting_on(None);
        assert_eq!(
            get(&port_state, "/healthz").await,
            (StatusCode::OK, "ok".to_owned())
        );
        let (status, metrics) = get(&port_state, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            metrics.contains("jobtrace_controller_listing 0"),
            "{metrics}"
        );
    }
}
