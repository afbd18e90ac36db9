//! `GET /metrics`: the Prometheus text exposition of this process's `aimesh_*` metrics.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// `GET /metrics`.
pub async fn metrics(State(s): State<AppState>) -> Response {
    match crate::telemetry::metrics() {
        Some(handle) => {
            s.node.publish_actor_metrics().await;
            handle.run_upkeep();
            let mut resp = handle.render().into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n",
        )
            .into_response(),
    }
}
