//! The admin API under `/api/admin`: the node's members, its actor tree, actions on actors,
//! drain, memory counts. Protected by `AIMESH_ADMIN_TOKEN` (`Authorization: Bearer ...`); with
//! no token set it is open only when the API listens on loopback. Requests forwarded from a
//! peer (`?node=N` asked elsewhere) arrive over the cookie-authenticated cluster and are not
//! checked again.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use aimesh_actors::cluster::MemberStatus;
use aimesh_actors::cluster::wire::{Call, Reply};
use aimesh_actors::node::ActorAction;

use super::cluster::{Forwarded, forward};
use super::{ApiError, AppState};

/// Who may use the admin API.
#[derive(Debug, Clone, Default)]
pub struct AdminAuth {
    /// The token (`AIMESH_ADMIN_TOKEN`), if set.
    pub token: Option<String>,
    /// Open without a token (the API listens on loopback only).
    pub open_without_token: bool,
}

impl AdminAuth {
    /// From the environment, for an API listening on `api`.
    pub fn from_env(api: std::net::SocketAddr) -> Self {
        Self {
            token: std::env::var("AIMESH_ADMIN_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty()),
            open_without_token: api.ip().is_loopback(),
        }
    }
}

/// Equal in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware guarding `/api/admin`.
pub async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if req.extensions().get::<Forwarded>().is_some() {
        return next.run(req).await;
    }
    match &s.admin.token {
        Some(token) => {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match given {
                Some(g) if same(g.as_bytes(), token.as_bytes()) => next.run(req).await,
                Some(_) => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the admin token is wrong",
                )
                .into_response(),
                None => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the admin API needs `Authorization: Bearer <AIMESH_ADMIN_TOKEN>`",
                )
                .into_response(),
            }
        }
        None if s.admin.open_without_token => next.run(req).await,
        None => ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_token_required",
            "this node's API listens beyond loopback: set AIMESH_ADMIN_TOKEN on the node to use the admin API",
        )
        .into_response(),
    }
}

/// `?node=N`: which node should answer.
#[derive(Debug, Deserialize)]
pub struct NodeQuery {
    node: Option<String>,
    kind: Option<String>,
    force: Option<bool>,
}

/// Forwards to node `n` when it is not this one.
async fn elsewhere(s: &AppState, node: Option<&str>, req: Request) -> Result<Response, Request> {
    let Some(n) = node else { return Err(req) };
    if n == s.node.name() {
        return Err(req);
    }
    let cluster = s.node.cluster();
    if !cluster.all_nodes().iter().any(|m| m == n) {
        return Ok(ApiError::not_found("node", n).field("node").into_response());
    }
    // Inside `/api/admin` the URI has lost its prefix: forward the one the client sent.
    let mut req = req;
    if let Some(original) = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .cloned()
    {
        *req.uri_mut() = original.0;
    }
    Ok(forward(s, n, req, None, false).await)
}

/// This node's own line in `nodes`.
fn me(s: &AppState) -> Value {
    let node = &s.node;
    let status = node.drain_status();
    json!({
        "name": node.name(),
        "status": if status.draining { "draining" } else { "up" },
        "uptime_seconds": node.uptime().as_secs(),
        "load": status.in_flight,
        "version": env!("CARGO_PKG_VERSION"),
        "draining": status.draining,
        "networks": node.local_networks(),
    })
}

/// `GET /api/admin/node`: this node.
pub async fn node(State(s): State<AppState>) -> Json<Value> {
    Json(me(&s))
}

/// `GET /api/admin/nodes`: every member, with what each says of itself when reachable.
pub async fn nodes(State(s): State<AppState>) -> Json<Value> {
    let cluster = s.node.cluster().clone();
    let mut out = vec![me(&s)];
    if cluster.enabled() {
        let view = cluster.view();
        for m in view.members.iter().filter(|m| m.name != view.me) {
            let mut line = json!({
                "name": m.name,
                "status": m.status,
                "address": m.address,
                "load": m.load,
                "rtt_ms": m.rtt_ms,
                "draining": m.draining,
            });
            if m.status == MemberStatus::Alive {
                let call = Call::Http(Box::new(aimesh_actors::cluster::wire::HttpRequest {
                    from: s.node.name().to_owned(),
                    method: "GET".into(),
                    uri: "/api/admin/node".into(),
                    headers: Vec::new(),
                    body: Vec::new(),
                    network_id: None,
                    local_only: true,
                }));
                if let Ok(Reply::Http(r)) =
                    cluster.call(&m.name, &call, Duration::from_secs(2)).await
                    && let Ok(Value::Object(own)) = serde_json::from_slice::<Value>(&r.body)
                    && let Value::Object(l) = &mut line
                {
                    for (k, v) in own {
                        if k != "status" {
                            l.insert(k, v);
                        }
                    }
                }
            }
            out.push(line);
        }
    }
    Json(json!({"node": s.node.name(), "nodes": out}))
}

/// `GET /api/admin/actors[?node=N][&kind=K]`.
pub async fn actors(
    State(s): State<AppState>,
    Query(q): Query<NodeQuery>,
    req: Request,
) -> Response {
    let req = match elsewhere(&s, q.node.as_deref(), req).await {
        Ok(answer) => return answer,
        Err(req) => req,
    };
    drop(req);
    let mut all = s.node.actors().await;
    if let Some(kind) = q.kind.as_deref() {
        if !aimesh_actors::directory::ActorKind::ALL
            .iter()
            .any(|k| k.as_str() == kind)
        {
            return ApiError::query(
                "kind",
                format!(
                    "unknown actor kind {kind:?} (one of: {})",
                    aimesh_actors::directory::ActorKind::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .into_response();
        }
        all.retain(|a| a.kind.as_str() == kind);
    }
    Json(json!({"node": s.node.name(), "actors": all})).into_response()
}

/// `GET /api/admin/actors/{id}`.
pub async fn actor(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<NodeQuery>,
    req: Request,
) -> Response {
    let target = q.node.clone().or_else(|| node_of(&id));
    match elsewhere(&s, target.as_deref(), req).await {
        Ok(answer) => answer,
        Err(_) => match s.node.actor(&id).await {
            Ok(a) => Json(json!({"node": s.node.name(), "actor": a})).into_response(),
            Err(e) => unknown_actor(e),
        },
    }
}

/// `POST /api/admin/actors/{id}/{action}`: `kill`, `restart` or `stop`.
pub async fn act(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    Query(q): Query<NodeQuery>,
    req: Request,
) -> Response {
    let action = match action.as_str() {
        "kill" => ActorAction::Kill,
        "restart" => ActorAction::Restart,
        "stop" => ActorAction::Stop,
        other => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_action",
                format!("no action {other:?}: use kill, restart or stop"),
            )
            .field("action")
            .into_response();
        }
    };
    let target = q.node.clone().or_else(|| node_of(&id));
    match elsewhere(&s, target.as_deref(), req).await {
        Ok(answer) => answer,
        Err(_) => match s.node.act(&id, action).await {
            Ok(a) => (
                StatusCode::ACCEPTED,
                Json(json!({"node": s.node.name(), "action": action.as_str(), "actor": a})),
            )
                .into_response(),
            Err(e) => unknown_actor(e),
        },
    }
}

/// Actor ids start with their node's name.
fn node_of(id: &str) -> Option<String> {
    id.split('/').next().map(str::to_owned)
}

fn unknown_actor(e: aimesh_actors::NodeError) -> Response {
    match e {
        aimesh_actors::NodeError::NotFound { id, .. } => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_actor",
            format!("no actor {id:?} on this node (list them with GET /api/admin/actors)"),
        )
        .into_response(),
        e => ApiError::from(e).into_response(),
    }
}

/// `POST /api/admin/nodes/{node}/drain[?force=true]`.
pub async fn drain(
    State(s): State<AppState>,
    Path(node): Path<String>,
    Query(q): Query<NodeQuery>,
    req: Request,
) -> Response {
    match elsewhere(&s, Some(&node), req).await {
        Ok(answer) => answer,
        Err(_) => match s.node.drain(q.force.unwrap_or(false)).await {
            Ok(status) => (StatusCode::ACCEPTED, Json(json!(status))).into_response(),
            Err(e) => ApiError::from(e).into_response(),
        },
    }
}

/// `GET /api/admin/nodes/{node}/drain`: where a drain is.
pub async fn drain_status(
    State(s): State<AppState>,
    Path(node): Path<String>,
    req: Request,
) -> Response {
    match elsewhere(&s, Some(&node), req).await {
        Ok(answer) => answer,
        Err(_) => Json(json!(s.node.drain_status())).into_response(),
    }
}

/// `GET /api/admin/memory/stats[?node=N]`: each shard's counts.
pub async fn memory_stats(
    State(s): State<AppState>,
    Query(q): Query<NodeQuery>,
    req: Request,
) -> Response {
    match elsewhere(&s, q.node.as_deref(), req).await {
        Ok(answer) => answer,
        Err(_) => match s.node.memory_stats().await {
            Ok(shards) => {
                let items: usize = shards.iter().map(|x| x.items).sum();
                let unembedded: usize = shards.iter().map(|x| x.unembedded).sum();
                Json(json!({
                    "node": s.node.name(),
                    "embedder": s.node.embedder_name(),
                    "items": items,
                    "unembedded": unembedded,
                    "shards": shards,
                }))
                .into_response()
            }
            Err(e) => ApiError::from(e).into_response(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"x"));
    }
}
