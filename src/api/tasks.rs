//! Tasks: submit, process, get, list, cancel.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use aimesh_actors::ids::{NetworkId, TaskId};
use aimesh_actors::types::{TaskQuery, TaskStatus};

use super::AppState;
use super::dto::SubmitTask;
use super::error::ApiError;
use super::extract::{JsonBody, QueryMap, path_id};

fn ids(network: &str, task: &str) -> Result<(NetworkId, TaskId), ApiError> {
    Ok((path_id("network", network)?, path_id("task", task)?))
}

/// `POST /networks/{network_id}/tasks`: 202 once the task is kept. A W3C `traceparent`
/// header names the client's span: the task's trace links to it (an invalid one is ignored, as
/// the Trace Context spec asks).
pub async fn submit(
    State(s): State<AppState>,
    Path(network): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SubmitTask>,
) -> Result<impl IntoResponse, ApiError> {
    let id: NetworkId = path_id("network", &network)?;
    let mut new = body.validate(&s.limits)?;
    // The node keeps it only when valid.
    new.client_traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let task = s.node.submit_task(id, new).await?;
    let location = format!("/api/mesh/networks/{id}/tasks/{}", task.task_id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(task),
    ))
}

/// `POST /networks/{network_id}/tasks/{task_id}/process`: 202 at once, or with `?wait=N` the
/// task itself once it ends (at most N seconds later).
pub async fn process(
    State(s): State<AppState>,
    Path((network, task)): Path<(String, String)>,
    query: QueryMap,
) -> Result<impl IntoResponse, ApiError> {
    query.only(&["wait"])?;
    let wait = query.int("wait", 0, 0..=300)?;
    let (network, task) = ids(&network, &task)?;
    let status = s.node.process_task(network, task).await?;
    if wait == 0 {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"task_id": task, "network_id": network, "status": status})),
        ));
    }
    let record = s
        .node
        .wait_task(network, task, Duration::from_secs(wait))
        .await?;
    let code = if record.status.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(serde_json::to_value(record).unwrap_or_default())))
}

/// `POST /networks/{network_id}/tasks/{task_id}/cancel`.
pub async fn cancel(
    State(s): State<AppState>,
    Path((network, task)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (network, task) = ids(&network, &task)?;
    let status = s.node.cancel_task(network, task).await?;
    Ok(Json(
        json!({"task_id": task, "network_id": network, "status": status}),
    ))
}

/// `GET /networks/{network_id}/tasks/{task_id}`.
pub async fn get(
    State(s): State<AppState>,
    Path((network, task)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (network, task) = ids(&network, &task)?;
    Ok(Json(s.node.task(network, task).await?))
}

/// `GET /networks/{network_id}/tasks?status=&limit=&offset=`.
pub async fn list(
    State(s): State<AppState>,
    Path(network): Path<String>,
    query: QueryMap,
) -> Result<impl IntoResponse, ApiError> {
    query.only(&["status", "limit", "offset"])?;
    let id: NetworkId = path_id("network", &network)?;
    let status = match query.get("status") {
        None => None,
        Some(raw) => Some(
            TaskStatus::ALL
                .into_iter()
                .find(|s| s.as_str() == raw)
                .ok_or_else(|| {
                    ApiError::query(
                        "status",
                        format!(
                            "unknown status {raw:?}; expected one of: queued, processing, completed, failed, cancelled"
                        ),
                    )
                })?,
        ),
    };
    let q = TaskQuery {
        status,
        limit: query.int("limit", 50, 1..=500)? as usize,
        offset: query.int("offset", 0, 0..=u64::from(u32::MAX))? as usize,
    };
    let page = s.node.tasks(id, &q).await?;
    Ok(Json(json!({
        "tasks": page.items,
        "total": page.total,
        "limit": page.limit,
        "offset": page.offset,
        "next_offset": page.next_offset,
    })))
}
