//! The HTTP API: seed 001's REST endpoints under `/api/mesh`.
//!
//! Handlers validate, call the [`Node`], and answer JSON. Every error goes through
//! [`ApiError`], so every 4xx/5xx has the same body shape and names the field at fault.

mod admin;
mod cluster;
mod dto;
mod error;
mod extract;
mod memory;
mod metrics;
mod networks;
mod openai;
mod tasks;

pub use admin::AdminAuth;
pub use cluster::{SERVED_BY, service as forward_service};
pub use error::ApiError;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};

use aimesh_actors::Node;

use crate::config::Limits;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// The node.
    pub node: Node,
    /// Request limits.
    pub limits: Arc<Limits>,
    /// Time limit of one model call on the OpenAI-compatible API.
    pub model_timeout: std::time::Duration,
    /// Who may use the admin API.
    pub admin: Arc<AdminAuth>,
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    let mesh = Router::new()
        .route("/health", get(memory::health))
        .route("/gateway", get(memory::gateway))
        .route("/cluster/ping", post(cluster::ping))
        .route("/networks", post(networks::create).get(networks::list))
        .route(
            "/networks/{network_id}",
            get(networks::get).delete(networks::delete),
        )
        .route(
            "/networks/{network_id}/agents",
            post(networks::add_agent).get(networks::agents),
        )
        .route(
            "/networks/{network_id}/agents/{agent_id}",
            delete(networks::remove_agent),
        )
        .route(
            "/networks/{network_id}/tasks",
            post(tasks::submit).get(tasks::list),
        )
        .route("/networks/{network_id}/tasks/{task_id}", get(tasks::get))
        .route(
            "/networks/{network_id}/tasks/{task_id}/process",
            post(tasks::process),
        )
        .route(
            "/networks/{network_id}/tasks/{task_id}/cancel",
            post(tasks::cancel),
        )
        .route(
            "/networks/{network_id}/memory",
            post(memory::add).get(memory::list),
        )
        .route(
            "/networks/{network_id}/sessions",
            post(memory::create_session).get(memory::sessions),
        )
        .route(
            "/networks/{network_id}/sessions/{session_id}",
            delete(memory::delete_session),
        )
        .method_not_allowed_fallback(method_not_allowed);
    let admin = Router::new()
        .route("/node", get(admin::node))
        .route("/nodes", get(admin::nodes))
        .route(
            "/nodes/{node}/drain",
            post(admin::drain).get(admin::drain_status),
        )
        .route("/actors", get(admin::actors))
        .route("/actors/{id}", get(admin::actor))
        .route("/actors/{id}/{action}", post(admin::act))
        .route("/memory/stats", get(admin::memory_stats))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::auth,
        ));
    let v1 = Router::new()
        .route("/chat/completions", post(openai::chat_completions))
        .route("/models", get(openai::models));
    Router::new()
        .nest("/api/mesh", mesh)
        .nest("/api/admin", admin)
        .nest("/v1", v1)
        .route("/metrics", get(metrics::metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cluster::route,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; the API is under /api/mesh (see README)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

#[cfg(test)]
mod tests;
