//! Shared memory, and the health check.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use aimesh_actors::ids::{AgentId, NetworkId, TaskId};
use aimesh_actors::types::{MemoryKind, MemoryQuery};

use super::AppState;
use super::dto::AddMemory;
use super::error::ApiError;
use super::extract::{JsonBody, QueryMap, path_id};

/// `POST /networks/{network_id}/memory`: 201 once the item is stored.
pub async fn add(
    State(s): State<AppState>,
    Path(network): Path<String>,
    JsonBody(body): JsonBody<AddMemory>,
) -> Result<impl IntoResponse, ApiError> {
    let id: NetworkId = path_id("network", &network)?;
    let item = body.validate(id, &s.limits)?;
    let item = s.node.add_memory(item).await?;
    Ok((StatusCode::CREATED, Json(item)))
}

/// `GET /networks/{network_id}/memory?type=&agent_id=&task_id=&session_id=&limit=&offset=`.
pub async fn list(
    State(s): State<AppState>,
    Path(network): Path<String>,
    query: QueryMap,
) -> Result<impl IntoResponse, ApiError> {
    query.only(&[
        "type",
        "agent_id",
        "task_id",
        "session_id",
        "limit",
        "offset",
    ])?;
    let id: NetworkId = path_id("network", &network)?;
    let mut kinds = Vec::new();
    if let Some(raw) = query.get("type") {
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let kind = MemoryKind::ALL
                .into_iter()
                .find(|k| k.as_str() == part)
                .ok_or_else(|| {
                    ApiError::query(
                        "type",
                        format!(
                            "unknown memory type {part:?}; expected fact, context, decision or feedback"
                        ),
                    )
                })?;
            kinds.push(kind);
        }
    }
    let agent_id = query
        .get("agent_id")
        .map(|a| {
            a.parse::<AgentId>()
                .map_err(|_| ApiError::query("agent_id", format!("{a:?} is not an agent id")))
        })
        .transpose()?;
    let task_id = query
        .get("task_id")
        .map(|t| {
            t.parse::<TaskId>()
                .map_err(|_| ApiError::query("task_id", format!("{t:?} is not a task id")))
        })
        .transpose()?;
    let q = MemoryQuery {
        kinds,
        agent_id,
        task_id,
        session_id: query.get("session_id").map(str::to_owned),
        limit: query.int("limit", 50, 1..=500)? as usize,
        offset: query.int("offset", 0, 0..=u64::from(u32::MAX))? as usize,
    };
    let page = s.node.memory(id, &q).await?;
    Ok(Json(json!({
        "items": page.items,
        "total": page.total,
        "limit": page.limit,
        "offset": page.offset,
        "next_offset": page.next_offset,
    })))
}

/// `GET /gateway`: spend against the global budget, breakers, queues and the cache.
pub async fn gateway(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let status = s.node.gateway_status().await?;
    Ok(Json(json!({"spend": s.node.spend(), "status": status})))
}

/// `GET /health`: 200 when every component is up, 503 otherwise.
pub async fn health(State(s): State<AppState>) -> impl IntoResponse {
    let health = s.node.health().await;
    let code = if health.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!(health)))
}
