//! The `/_fake` control routes: script faults, read counters, reset.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;

use super::{CallStats, FakeProvider, FaultRule};

/// The control routes (merged into [`FakeProvider::router`]).
pub(super) fn routes() -> axum::Router<FakeProvider> {
    axum::Router::new()
        .route(
            "/_fake/faults",
            post(add_faults).get(list_faults).delete(clear_faults),
        )
        .route("/_fake/calls", get(calls))
        .route("/_fake/reset", post(reset))
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

/// `POST /_fake/faults` with one [`FaultRule`] or a list of them; answers
/// `{"added": n, "active": m}`. Nothing is added if any rule is invalid.
async fn add_faults(State(provider): State<FakeProvider>, body: Bytes) -> Response {
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(err) => return bad_request(format!("body is not JSON: {err}")),
    };
    let rules: Vec<FaultRule> = if value.is_array() {
        match serde_json::from_value(value) {
            Ok(rules) => rules,
            Err(err) => return bad_request(format!("invalid fault rule list: {err}")),
        }
    } else {
        match serde_json::from_value(value) {
            Ok(rule) => vec![rule],
            Err(err) => return bad_request(format!("invalid fault rule: {err}")),
        }
    };
    if let Some(problem) = rules.iter().find_map(|r| r.validate().err()) {
        return bad_request(problem);
    }
    let added = rules.len();
    provider.inner.faults.push(rules);
    let active = provider.inner.faults.list().len();
    Json(json!({ "added": added, "active": active })).into_response()
}

/// A live rule as listed by `GET /_fake/faults`.
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    rule: FaultRule,
    /// Uses left (`null` = unlimited).
    remaining: Option<u64>,
}

async fn list_faults(State(provider): State<FakeProvider>) -> Json<Vec<Listed>> {
    let rules = provider.inner.faults.list();
    Json(
        rules
            .into_iter()
            .map(|(rule, remaining)| Listed { rule, remaining })
            .collect(),
    )
}

async fn clear_faults(State(provider): State<FakeProvider>) -> Json<serde_json::Value> {
    let cleared = provider.inner.faults.clear();
    Json(json!({ "cleared": cleared }))
}

async fn calls(State(provider): State<FakeProvider>) -> Json<CallStats> {
    Json(provider.calls())
}

async fn reset(State(provider): State<FakeProvider>) -> StatusCode {
    provider.reset();
    StatusCode::NO_CONTENT
}
