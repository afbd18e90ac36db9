//! Shared memory, and the health check.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use aimesh_actors::ids::{AgentId, NetworkId, TaskId};
use aimesh_actors::types::{MemoryKind, MemoryQuery};

use super::AppState;
use super::dto::{AddMemory, CreateSession};
use super::error::ApiError;
use super::extract::{JsonBody, QueryMap, path_id};

/// `POST /networks/{network_id}/memory`: 201 once the item is stored.
pub async fn add(
    State(s): State<AppState>,
    Path(network): Path<String>,
    JsonBody(body): JsonBody<AddMemory>,
) -> Result<impl IntoResponse, ApiError> {
    let id: NetworkId = path_id("network", &network)?;
    let session = match body.session_id() {
        Some(sid) => Some(s.node.session(id, sid).await?.ok_or_else(|| {
            ApiError::invalid(
                "session_id",
                format!(
                    "no session {sid:?} in this network (it was never created, was deleted, or expired); create it with POST /networks/{{network_id}}/sessions"
                ),
            )
        })?),
        None => None,
    };
    let item = body.validate(id, &s.limits, session.as_ref())?;
    let item = s.node.add_memory(item).await?;
    Ok((StatusCode::CREATED, Json(item)))
}

/// `POST /networks/{network_id}/sessions`.
pub async fn create_session(
    State(s): State<AppState>,
    Path(network): Path<String>,
    JsonBody(body): JsonBody<CreateSession>,
) -> Result<impl IntoResponse, ApiError> {
    let id: NetworkId = path_id("network", &network)?;
    let session = s.node.create_session(body.validate(id)?).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// `GET /networks/{network_id}/sessions`: sessions that have not expired.
pub async fn sessions(
    State(s): State<AppState>,
    Path(network): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id: NetworkId = path_id("network", &network)?;
    let sessions = s.node.sessions(id).await?;
    Ok(Json(json!({"total": sessions.len(), "sessions": sessions})))
}

/// `DELETE /networks/{network_id}/sessions/{session_id}`: the session and its items.
pub async fn delete_session(
    State(s): State<AppState>,
    Path((network, session)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let id: NetworkId = path_id("network", &network)?;
    let removed = s.node.delete_session(id, &session).await?;
    Ok(Json(
        json!({"session_id": session, "deleted": true, "items_removed": removed}),
    ))
}

/// `GET /networks/{network_id}/memory?type=&agent_id=&task_id=&session_id=&limit=&offset=`, or
/// with `query=` (and `k=`) the items most similar to the query, best first, with scores.
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
        "query",
        "k",
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
    let search = query.get("query").map(str::trim);
    if search.is_none() && query.get("k").is_some() {
        return Err(ApiError::query("k", "`k` goes with `query`"));
    }
    let q = MemoryQuery {
        kinds,
        agent_id,
        task_id,
        session_id: query.get("session_id").map(str::to_owned),
        limit: if search.is_some() {
            query.int("k", 10, 1..=100)? as usize
        } else {
            query.int("limit", 50, 1..=500)? as usize
        },
        offset: query.int("offset", 0, 0..=u64::from(u32::MAX))? as usize,
    };
    if let Some(text) = search {
        if text.is_empty() || text.chars().count() > 2000 {
            return Err(ApiError::query(
                "query",
                "`query` must be 1 to 2000 characters",
            ));
        }
        if query.get("offset").is_some() || query.get("limit").is_some() {
            return Err(ApiError::query(
                if query.get("offset").is_some() {
                    "offset"
                } else {
                    "limit"
                },
                "a search takes `k`, not `limit` or `offset`",
            ));
        }
        let hits = s.node.search_memory(id, text, &q).await?;
        let items: Vec<serde_json::Value> = hits
            .into_iter()
            .map(|(item, score)| {
                let mut v = serde_json::to_value(item).unwrap_or_default();
                v["score"] = json!(score);
                v
            })
            .collect();
        return Ok(Json(json!({
            "query": text,
            "k": q.limit,
            "embedder": s.node.embedder_name(),
            "items": items,
        })));
    }
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
    let code = if health.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!(health)))
}
