//! Any node's API serves any network: a request for a network this node does not own goes to
//! its owner through the cluster (ractor_cluster, not a second HTTP hop), which serves it with
//! its own router and sends the response back. A new network is created on the node that will
//! own it; a listing merges every live node's part.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tower::ServiceExt;

use aimesh_actors::cluster::wire::{Call, HttpRequest, HttpResponse, Reply};
use aimesh_actors::cluster::{HttpService, Owner};
use aimesh_actors::ids::NetworkId;

use super::AppState;
use super::error::ApiError;

/// Set on a request that another node forwarded here: it is served here, never forwarded again.
#[derive(Clone, Debug)]
pub struct Forwarded {
    /// The node it came in at.
    pub from: String,
    /// Answer with this node's part only.
    pub local_only: bool,
}

/// The id a new network must get (chosen by the entry node so that this node owns it).
#[derive(Clone, Copy, Debug)]
pub struct ChosenId(pub NetworkId);

/// Header naming the node that served a forwarded request.
pub const SERVED_BY: &str = "x-aimesh-node";

const KEEP_HEADERS: [&str; 4] = ["content-type", "accept", "retry-after", "traceparent"];

enum Route {
    Here,
    Network(NetworkId),
    Create,
    List,
}

fn classify(method: &Method, path: &str) -> Route {
    let Some(rest) = path.strip_prefix("/api/mesh/networks") else {
        return Route::Here;
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return match *method {
            Method::POST => Route::Create,
            Method::GET => Route::List,
            _ => Route::Here,
        };
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Route::Here;
    };
    let id = rest.split('/').next().unwrap_or_default();
    match id.parse::<NetworkId>() {
        Ok(id) => Route::Network(id),
        Err(_) => Route::Here, // the handler answers 404 naming the id
    }
}

/// The middleware: serves here, forwards to the owner, or merges a listing. Every answer names
/// the node that served it (`x-aimesh-node`).
pub async fn route(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let me = s.node.cluster().me();
    let mut response = dispatch(&s, req, next).await;
    if !response.headers().contains_key(SERVED_BY)
        && let Ok(v) = HeaderValue::from_str(&me)
    {
        response.headers_mut().insert(SERVED_BY, v);
    }
    response
}

async fn dispatch(s: &AppState, mut req: Request, next: Next) -> Response {
    let cluster = s.node.cluster().clone();
    if let Some(f) = req.extensions().get::<Forwarded>() {
        tracing::debug!(from = %f.from, uri = %req.uri(), "serving a forwarded request");
        return next.run(req).await;
    }
    if !cluster.enabled() {
        return next.run(req).await;
    }
    match classify(req.method(), req.uri().path()) {
        Route::Here => next.run(req).await,
        Route::Network(id) => match cluster.owner_of(id) {
            Owner::Local => next.run(req).await,
            Owner::Remote(owner) => forward(s, &owner, req, None, false).await,
            Owner::Unavailable(why) => unavailable(why),
        },
        Route::Create => {
            let (id, owner) = cluster.new_network_id();
            match owner {
                Owner::Local => {
                    req.extensions_mut().insert(ChosenId(id));
                    next.run(req).await
                }
                Owner::Remote(owner) => forward(s, &owner, req, Some(id), false).await,
                Owner::Unavailable(why) => unavailable(why),
            }
        }
        Route::List => list(s, req, next).await,
    }
}

fn unavailable(why: String) -> Response {
    let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "owner_unavailable", why);
    e.retry_after = Some(1);
    e.into_response()
}

/// How long the owner may take: the handlers' own limit, or a `wait` the request asks for.
fn timeout_for(uri: &axum::http::Uri) -> Duration {
    let wait = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("wait="))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .min(300);
    Duration::from_secs(30 + wait)
}

pub(super) async fn forward(
    s: &AppState,
    to: &str,
    req: Request,
    network_id: Option<NetworkId>,
    local_only: bool,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, s.limits.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the request body is over {} bytes (limits.max_body_bytes)",
                    s.limits.max_body_bytes
                ),
            )
            .into_response();
        }
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(k, _)| KEEP_HEADERS.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let request = HttpRequest {
        from: s.node.name().to_owned(),
        method: parts.method.as_str().to_owned(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| parts.uri.path().to_owned()),
        headers,
        body: body.to_vec(),
        network_id,
        local_only,
    };
    let started = std::time::Instant::now();
    let answer = s
        .node
        .cluster()
        .call(to, &Call::Http(Box::new(request)), timeout_for(&parts.uri))
        .await;
    metrics::histogram!("aimesh_cluster_forward_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match answer {
        Ok(Reply::Http(response)) => into_response(*response, to),
        Ok(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "bad_peer_reply",
            format!("node {to} answered a forwarded request with something else"),
        )
        .into_response(),
        Err(e) => {
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "owner_unreachable",
                format!("{e}; retry shortly"),
            );
            err.retry_after = Some(1);
            err.into_response()
        }
    }
}

fn into_response(r: HttpResponse, node: &str) -> Response {
    let mut response = Response::new(Body::from(r.body));
    *response.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            response.headers_mut().insert(k, v);
        }
    }
    if let Ok(v) = HeaderValue::try_from(node) {
        response.headers_mut().insert(SERVED_BY, v);
    }
    response
}

/// `GET /networks` in a cluster: this node's networks and every live peer's, oldest first.
async fn list(s: &AppState, mut req: Request, next: Next) -> Response {
    let peers = s.node.cluster().live_peers();
    let uri = req.uri().clone();
    req.extensions_mut().insert(Forwarded {
        from: s.node.name().to_owned(),
        local_only: true,
    });
    let mine = next.run(req).await;
    if !mine.status().is_success() {
        return mine;
    }
    let mut parts = vec![body_json(mine).await];
    let asks = peers.iter().map(|peer| {
        let req = Request::builder()
            .method(Method::GET)
            .uri(uri.clone())
            .body(Body::empty())
            .unwrap_or_default();
        forward(s, peer, req, None, true)
    });
    let mut missing = Vec::new();
    for (peer, response) in peers.iter().zip(futures::future::join_all(asks).await) {
        if response.status().is_success() {
            parts.push(body_json(response).await);
        } else {
            missing.push(peer.clone());
        }
    }
    let mut networks: Vec<Value> = parts
        .iter_mut()
        .flat_map(|p| match p.get_mut("networks").map(Value::take) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    networks.retain(|n| seen.insert(n["network_id"].as_str().unwrap_or_default().to_owned()));
    networks.sort_by(|a, b| {
        a["created_at"]
            .as_str()
            .unwrap_or_default()
            .cmp(b["created_at"].as_str().unwrap_or_default())
    });
    let mut body = json!({"total": networks.len(), "networks": networks});
    let view = s.node.cluster().view();
    let unreachable: Vec<String> = view
        .members
        .iter()
        .filter(|m| {
            m.status != aimesh_actors::cluster::MemberStatus::Up
                && m.status != aimesh_actors::cluster::MemberStatus::Alive
        })
        .map(|m| m.name.clone())
        .chain(missing)
        .collect();
    if !unreachable.is_empty() {
        body["unreachable_nodes"] = json!(unreachable);
    }
    axum::Json(body).into_response()
}

async fn body_json(r: Response) -> Value {
    match axum::body::to_bytes(r.into_body(), 64 << 20).await {
        Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// The service that answers requests other nodes forward here: this node's own router.
pub fn service(app: Router, limit: usize) -> HttpService {
    Arc::new(move |r: HttpRequest| {
        let app = app.clone();
        Box::pin(async move { serve(app, r, limit).await })
    })
}

async fn serve(app: Router, r: HttpRequest, limit: usize) -> HttpResponse {
    let mut builder = Request::builder()
        .method(r.method.as_str())
        .uri(r.uri.as_str());
    for (k, v) in &r.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let mut req = match builder.body(Body::from(r.body)) {
        Ok(req) => req,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("bad forwarded request: {e}"),
            );
        }
    };
    req.extensions_mut().insert(Forwarded {
        from: r.from,
        local_only: r.local_only,
    });
    if let Some(id) = r.network_id {
        req.extensions_mut().insert(ChosenId(id));
    }
    let response = match app.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter(|(k, _)| KEEP_HEADERS.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    match axum::body::to_bytes(response.into_body(), limit.max(64 << 20)).await {
        Ok(body) => HttpResponse {
            status,
            headers,
            body: body.to_vec(),
        },
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("response unreadable: {e}"),
        ),
    }
}

fn error_response(status: StatusCode, message: &str) -> HttpResponse {
    let body = json!({"error": {"code": "forward_failed", "message": message}});
    HttpResponse {
        status: status.as_u16(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// The body of `POST /api/mesh/cluster/ping`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingBody {
    /// The peer to ping.
    node: String,
    /// Round trips to make (1 to 100,000; default 100).
    #[serde(default)]
    count: Option<u32>,
    /// Payload bytes per ping (0 to 65,536; default 64).
    #[serde(default)]
    bytes: Option<usize>,
}

/// `POST /api/mesh/cluster/ping`: `count` sequential round trips from this node to peer `node`
/// through its endpoint actor (ractor_cluster's session, MessagePack envelope), with their
/// latency distribution in microseconds. An operator's check of a link, and the cluster
/// benchmark's probe.
pub async fn ping(
    State(s): State<AppState>,
    super::extract::JsonBody(body): super::extract::JsonBody<PingBody>,
) -> Result<Response, ApiError> {
    let count = body.count.unwrap_or(100);
    if !(1..=100_000).contains(&count) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "between 1 and 100000",
        )
        .field("count"));
    }
    let bytes = body.bytes.unwrap_or(64);
    if bytes > 65_536 {
        return Err(
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "at most 65536")
                .field("bytes"),
        );
    }
    let cluster = s.node.cluster();
    if !cluster.all_nodes().contains(&body.node) || body.node == cluster.me() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("{:?} is not a peer of this node", body.node),
        )
        .field("node"));
    }
    let mut micros = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let rtt = cluster
            .ping(&body.node, bytes, Duration::from_secs(2))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "peer_unreachable",
                    e.to_string(),
                )
                .field("node")
            })?;
        micros.push(rtt.as_secs_f64() * 1e6);
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() as f64 - 1.0) * q).round() as usize];
    let mean = micros.iter().sum::<f64>() / micros.len() as f64;
    Ok(axum::Json(json!({
        "from": cluster.me(),
        "node": body.node,
        "count": count,
        "bytes": bytes,
        "mean_us": mean,
        "p50_us": at(0.5),
        "p99_us": at(0.99),
        "max_us": at(1.0),
    }))
    .into_response())
}
