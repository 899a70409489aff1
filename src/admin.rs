//! The plain-HTTP operations port: `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_certificates_synced_watches_and_not_stopping() {
        let readiness = Readiness::default();
        assert_eq!(
            readiness.not_ready(),
            Some("serving certificate not loaded")
        );
        readiness.set_tls_loaded();
        assert_eq!(readiness.not_ready(), None, "no controller in this process");
        readiness.set_controller_syncing();
        assert_eq!(readiness.not_ready(), Some("controller watches not synced"));
        readiness.set_controller_synced();
        assert_eq!(readiness.not_ready(), None);
        readiness.set_stopping();
        assert_eq!(readiness.not_ready(), Some("shutting down"));
    }
}

/// What `/readyz` reports: ready once every part that must be up says so, and not any more once
/// shutdown begins (so endpoints stop sending admissions before the server drains).
#[derive(Debug, Default)]
pub struct Readiness {
    tls_loaded: AtomicBool,
    /// The controller's state, one of the `CONTROLLER_*` values.
    controller: AtomicU8,
    stopping: AtomicBool,
}

// 0: no controller in this process.
/// Starting, or leading and listing the traced objects for the first time.
const CONTROLLER_SYNCING: u8 = 1;
/// Its watches have listed everything once, or it is a standby replica (not leading).
const CONTROLLER_SYNCED: u8 = 2;

impl Readiness {
    pub fn set_tls_loaded(&self) {
        self.tls_loaded.store(true, Ordering::Release);
    }

    /// The controller is starting or (re)listing: not ready until [`Self::set_controller_synced`].
    pub fn set_controller_syncing(&self) {
        self.controller.store(CONTROLLER_SYNCING, Ordering::Release);
    }

    pub fn set_controller_synced(&self) {
        self.controller.store(CONTROLLER_SYNCED, Ordering::Release);
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// `None` when ready, or why not.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.stopping.load(Ordering::Acquire) {
            Some("shutting down")
        } else if !self.tls_loaded.load(Ordering::Acquire) {
            Some("serving certificate not loaded")
        } else if self.controller.load(Ordering::Acquire) == CONTROLLER_SYNCING {
            Some("controller watches not synced")
        } else {
            None
        }
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

pub fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { metrics, readiness })
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    match state.readiness.not_ready() {
        None => (StatusCode::OK, "ready".to_owned()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
    }
}

async fn metrics_text(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
