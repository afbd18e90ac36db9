//! The OpenAI-compatible surface: `POST /v1/chat/completions` (streamed as server-sent events
//! when `stream` is true) and `GET /v1/models`, through the same chains, limits, budgets,
//! cost accounting and cache as agents. The official OpenAI SDKs work unchanged against
//! `http://<node>/v1`.
//!
//! Unlike the mesh API this one ignores fields it does not use, as SDKs send many; values it
//! cannot honour (`n` > 1, tools) are 400s in OpenAI's error format. aimesh extensions are
//! headers: `x-aimesh-priority` (1..5), `x-aimesh-network` (charge a network's budget),
//! `x-aimesh-cache: off` (or `Cache-Control: no-cache`) to skip the response cache. Answers
//! carry `x-aimesh-provider` and an `aimesh` object with the route and cost.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use aimesh_actors::gateway::sink::DeltaSink;
use aimesh_actors::gateway::{ChatMessage, ModelError, ModelRequest, ModelResponse, Role, Route};
use aimesh_actors::ids::NetworkId;
use aimesh_actors::priority::Priority;
use aimesh_actors::types::Usd;

use super::AppState;

/// An error in OpenAI's shape.
pub struct OpenAiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    param: Option<&'static str>,
    message: String,
}

impl OpenAiError {
    fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            param: Some(param),
            message: message.into(),
        }
    }

    fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<ModelError> for OpenAiError {
    fn from(e: ModelError) -> Self {
        let (status, kind, code) = match &e {
            ModelError::BadRequest { provider, .. } if provider == "aimesh" => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
            ),
            ModelError::BadRequest { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "bad_request",
            ),
            ModelError::ContextTooLong { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "context_length_exceeded",
            ),
            ModelError::ContentFiltered { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "content_filter",
            ),
            ModelError::BudgetExceeded { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "budget_exceeded",
            ),
            ModelError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limit_exceeded",
            ),
            ModelError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "api_error", "timeout"),
            ModelError::GatewayUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "api_error", "unavailable")
            }
            _ => (StatusCode::BAD_GATEWAY, "api_error", "upstream_error"),
        };
        Self {
            status,
            kind,
            code: Some(code),
            param: None,
            message: e.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: Option<Stop>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    n: Option<u64>,
    tools: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Content,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Content {
    #[default]
    None,
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn parse(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(ModelRequest, bool, bool), OpenAiError> {
    let req: ChatRequest = serde_json::from_slice(body)
        .map_err(|e| OpenAiError::invalid("body", format!("invalid JSON body: {e}")))?;
    let model = req
        .model
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| OpenAiError::invalid("model", "you must provide a model parameter"))?;
    let raw = req
        .messages
        .filter(|m| !m.is_empty())
        .ok_or_else(|| OpenAiError::invalid("messages", "messages must be a non-empty array"))?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(OpenAiError::invalid("n", "only n = 1 is supported"));
    }
    if req.tools.as_ref().is_some_and(|t| !t.is_null()) {
        return Err(OpenAiError::invalid(
            "tools",
            "tool calls are not supported",
        ));
    }
    let mut messages = Vec::with_capacity(raw.len());
    for (i, m) in raw.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(OpenAiError::invalid(
                    "messages",
                    format!("messages[{i}].role {other:?} is not supported"),
                ));
            }
        };
        let content = match m.content {
            Content::None => String::new(),
            Content::Text(t) => t,
            Content::Parts(parts) => {
                let mut text = String::new();
                for p in parts {
                    if p.kind != "text" {
                        return Err(OpenAiError::invalid(
                            "messages",
                            format!(
                                "messages[{i}]: content parts of type {:?} are not supported",
                                p.kind
                            ),
                        ));
                    }
                    text.push_str(p.text.as_deref().unwrap_or(""));
                }
                text
            }
        };
        messages.push(ChatMessage::new(role, content));
    }
    let max_tokens = req.max_completion_tokens.or(req.max_tokens).unwrap_or(4096);
    if !(1..=1_000_000).contains(&max_tokens) {
        return Err(OpenAiError::invalid(
            "max_tokens",
            "max_tokens must be from 1 to 1000000",
        ));
    }
    if let Some(t) = req.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(OpenAiError::invalid(
            "temperature",
            "temperature must be from 0 to 2",
        ));
    }
    if let Some(p) = req.top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(OpenAiError::invalid("top_p", "top_p must be from 0 to 1"));
    }
    let mut request = ModelRequest::new(&model, messages);
    request.max_tokens = u32::try_from(max_tokens).unwrap_or(u32::MAX);
    request.temperature = req.temperature.map_or(1.0, |t| t as f32);
    request.top_p = req.top_p.map(|p| p as f32);
    request.stop = match req.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v.into_iter().take(4).collect(),
    };
    request.timeout = state.model_timeout;
    if let Some(p) = header(headers, "x-aimesh-priority") {
        request.priority = p
            .parse::<u8>()
            .ok()
            .and_then(Priority::new)
            .ok_or_else(|| OpenAiError::invalid("x-aimesh-priority", "priority must be 1 to 5"))?;
    }
    if let Some(n) = header(headers, "x-aimesh-network") {
        request.network_id = Some(
            n.parse::<NetworkId>()
                .map_err(|_| OpenAiError::invalid("x-aimesh-network", "not a network id"))?,
        );
    }
    let no_cache = header(headers, "x-aimesh-cache").is_some_and(|v| v.eq_ignore_ascii_case("off"))
        || header(headers, "cache-control").is_some_and(|v| v.contains("no-cache"));
    request.cache = !no_cache;
    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    Ok((request, req.stream, include_usage))
}

fn finish_reason(r: Option<&str>) -> &'static str {
    match r.unwrap_or("stop") {
        "length" | "max_tokens" | "MAX_TOKENS" => "length",
        "content_filter" | "SAFETY" | "RECITATION" | "refusal" => "content_filter",
        _ => "stop",
    }
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: Details,
}

#[derive(Serialize)]
struct Details {
    cached_tokens: u64,
}

fn usage_out(r: &ModelResponse) -> UsageOut {
    UsageOut {
        prompt_tokens: r.usage.input_tokens,
        completion_tokens: r.usage.output_tokens,
        total_tokens: r.usage.input_tokens + r.usage.output_tokens,
        prompt_tokens_details: Details {
            cached_tokens: r.usage.cached_input_tokens,
        },
    }
}

#[derive(Serialize)]
struct AimeshOut<'a> {
    provider: &'a str,
    cost_usd: Usd,
    route: &'a Route,
}

fn aimesh_out(r: &ModelResponse) -> AimeshOut<'_> {
    AimeshOut {
        provider: &r.provider,
        cost_usd: r.usage.cost_usd,
        route: &r.route,
    }
}

#[derive(Serialize)]
struct CompletionOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChoiceOut<'a>; 1],
    usage: UsageOut,
    aimesh: AimeshOut<'a>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    message: MessageOut<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aimesh: Option<AimeshOut<'a>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (request, stream, include_usage) = match parse(&state, &headers, &body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    if !stream {
        return match state.node.complete(request).await {
            Ok(r) => {
                let body = CompletionOut {
                    id: &id,
                    object: "chat.completion",
                    created: now_secs(),
                    model: &r.model,
                    choices: [ChoiceOut {
                        index: 0,
                        message: MessageOut {
                            role: "assistant",
                            content: &r.text,
                        },
                        logprobs: None,
                        finish_reason: finish_reason(r.finish_reason.as_deref()),
                    }],
                    usage: usage_out(&r),
                    aimesh: aimesh_out(&r),
                };
                let mut resp = Json(body).into_response();
                if let Ok(v) = HeaderValue::from_str(&r.provider) {
                    resp.headers_mut().insert("x-aimesh-provider", v);
                }
                resp
            }
            Err(e) => OpenAiError::from(e).into_response(),
        };
    }
    stream_response(state, request, id, include_usage)
}

fn event(chunk: &ChunkOut<'_>) -> Event {
    Event::default().data(serde_json::to_string(chunk).unwrap_or_default())
}

fn chunk(id: &str, model: &str, delta: Delta<'_>, finish: Option<&str>) -> Event {
    event(&ChunkOut {
        id,
        object: "chat.completion.chunk",
        created: now_secs(),
        model,
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish,
        }],
        usage: None,
        aimesh: None,
    })
}

fn stream_response(
    state: AppState,
    request: ModelRequest,
    id: String,
    include_usage: bool,
) -> Response {
    let (sink, pieces) = DeltaSink::new(64);
    let requested = request.model.clone();
    let node = state.node.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    // The call runs in its own task; the response body reads its pieces, then its end.
    let call = tokio::spawn(async move {
        let _ = done_tx.send(node.stream(request, sink).await);
    });
    // The first piece carries the role, so the first event is also the first token.
    let mut first = true;
    let deltas = tokio_stream_from(pieces).map({
        let (id, model) = (id.clone(), requested.clone());
        move |text| {
            let role = std::mem::take(&mut first).then_some("assistant");
            chunk(
                &id,
                &model,
                Delta {
                    role,
                    content: Some(&text),
                },
                None,
            )
        }
    });
    let tail = futures::stream::once(async move {
        let _guard = AbortOnDrop(call);
        let mut events = Vec::new();
        match done_rx.await {
            Ok(Ok(r)) => {
                events.push(chunk(
                    &id,
                    &r.model,
                    Delta::default(),
                    Some(finish_reason(r.finish_reason.as_deref())),
                ));
                if include_usage {
                    events.push(event(&ChunkOut {
                        id: &id,
                        object: "chat.completion.chunk",
                        created: now_secs(),
                        model: &r.model,
                        choices: Vec::new(),
                        usage: Some(usage_out(&r)),
                        aimesh: Some(aimesh_out(&r)),
                    }));
                }
            }
            Ok(Err(e)) => {
                events.push(Event::default().data(OpenAiError::from(e).body().to_string()))
            }
            Err(_) => events.push(
                Event::default().data(
                    OpenAiError::from(ModelError::GatewayUnavailable("the call was lost".into()))
                        .body()
                        .to_string(),
                ),
            ),
        }
        events.push(Event::default().data("[DONE]"));
        futures::stream::iter(events)
    })
    .flatten();
    let events = deltas.chain(tail).map(Ok::<_, Infallible>);
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Aborts the call task if the client disconnects before the end.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<String>,
) -> impl futures::Stream<Item = String> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// `GET /v1/models`.
pub async fn models(State(state): State<AppState>) -> impl IntoResponse {
    let created = now_secs();
    let data: Vec<Value> = state
        .node
        .model_names()
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "aimesh"}))
        .collect();
    (
        StatusCode::OK,
        Json(json!({"object": "list", "data": data})),
    )
}
