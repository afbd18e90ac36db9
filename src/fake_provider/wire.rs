//! The request pipeline shared by every format.
//!
//! Each format implements [`Wire`]: how to parse and authorize a request, what
//! its error bodies look like, and how to render an [`Answer`] as frames (one
//! JSON body, or SSE events / NDJSON lines). [`handle`] does the rest: count
//! the call, apply the options' latency, take a fault, answer.

use std::borrow::Cow;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;

use super::body::{self, BodyPlan, Ending};
use super::faults::{Fault, Format};
use super::net::ConnHandle;
use super::text::{Answer, Prompt, new_id};
use super::{FakeProvider, Inner};

/// A request refused before generation (bad credentials or input).
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

/// A rendered answer.
pub(crate) struct Rendered {
    /// The `content-type` header.
    pub content_type: &'static str,
    /// Streamed frames, or a single JSON body.
    pub frames: Vec<Bytes>,
    /// Whether `frames` is a stream.
    pub stream: bool,
}

/// One provider wire format.
pub(crate) trait Wire: Send + Sync + 'static {
    /// Which format this is.
    const FORMAT: Format;
    /// `content-type` of JSON bodies (answers and errors).
    const JSON_TYPE: &'static str;
    /// Response header carrying a request id, if the real API sends one.
    const REQUEST_ID_HEADER: Option<&'static str>;
    /// A well-framed stream frame whose data is not valid JSON.
    const GARBAGE_FRAME: &'static [u8];
    /// The parsed request.
    type Req: Send;

    /// Parses and validates a request body.
    fn parse(parts: &Parts, body: &[u8]) -> Result<Self::Req, Refusal>;
    /// The API key the request carries, if any.
    fn api_key(parts: &Parts) -> Option<&str>;
    /// Refuses requests without the credentials/headers the real API requires.
    fn authorize(parts: &Parts) -> Result<(), Refusal>;
    /// The requested model.
    fn model(req: &Self::Req) -> &str;
    /// Whether a streamed answer was asked for.
    fn streaming(req: &Self::Req) -> bool;
    /// The last user message.
    fn question(req: &Self::Req) -> Cow<'_, str>;
    /// Characters of prompt text (system and all messages).
    fn prompt_chars(req: &Self::Req) -> usize;
    /// The output token limit, if any.
    fn max_tokens(req: &Self::Req) -> Option<u64>;
    /// The format's error body for `status`; `message` replaces the default text.
    fn error_body(
        status: StatusCode,
        message: Option<&str>,
        retry_after: Option<f64>,
        request_id: &str,
    ) -> serde_json::Value;
    /// Renders the answer.
    fn render(inner: &Inner, req: &Self::Req, answer: &Answer) -> Rendered;
}

/// Serializes `data` as one SSE event (`event: x\ndata: {...}\n\n`).
pub(crate) fn sse(event: Option<&str>, data: &impl Serialize) -> Bytes {
    let mut buf = Vec::with_capacity(192);
    if let Some(event) = event {
        buf.extend_from_slice(b"event: ");
        buf.extend_from_slice(event.as_bytes());
        buf.push(b'\n');
    }
    buf.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut buf, data);
    buf.extend_from_slice(b"\n\n");
    buf.into()
}

/// Serializes `data` as JSON, followed by `suffix`.
pub(crate) fn json(data: &impl Serialize, suffix: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    let _ = serde_json::to_writer(&mut buf, data);
    buf.extend_from_slice(suffix);
    buf.into()
}

/// A JSON error response in `P`'s format.
pub(crate) fn error_response<P: Wire>(
    status: StatusCode,
    message: Option<&str>,
    retry_after: Option<f64>,
    body: Option<&serde_json::Value>,
) -> Response {
    let request_id = new_id("req_", 24);
    let body = match body {
        Some(body) => json(body, b""),
        None => json(
            &P::error_body(status, message, retry_after, &request_id),
            b"",
        ),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(P::JSON_TYPE));
    if let Some(name) = P::REQUEST_ID_HEADER
        && let Ok(value) = HeaderValue::try_from(request_id)
    {
        headers.insert(HeaderName::from_static(name), value);
    }
    if let Some(secs) = retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs.ceil() as u64));
        if P::FORMAT == Format::Openai {
            let ms = (secs * 1000.0).round() as u64;
            headers.insert(
                HeaderName::from_static("retry-after-ms"),
                HeaderValue::from(ms),
            );
        }
    }
    response
}

/// Serves one generation request in format `P`.
pub(crate) async fn handle<P: Wire>(provider: FakeProvider, request: Request) -> Response {
    let inner = &*provider.inner;
    let (parts, body) = request.into_parts();
    let bytes = match body::read_body(body).await {
        Ok(bytes) => bytes,
        Err(refusal) => {
            inner.stats.record(
                P::FORMAT,
                None,
                false,
                P::api_key(&parts),
                None,
                &Bytes::new(),
            );
            inner.stats.rejected();
            return error_response::<P>(refusal.status, Some(&refusal.message), None, None);
        }
    };
    let parsed = P::parse(&parts, &bytes);
    let (model, stream) = match &parsed {
        Ok(req) => (Some(P::model(req)), P::streaming(req)),
        Err(_) => (None, false),
    };
    inner.stats.record(
        P::FORMAT,
        model,
        stream,
        P::api_key(&parts),
        parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok()),
        &bytes,
    );
    inner.stats.keyed(
        parts
            .headers
            .get("x-aimesh-idempotency-key")
            .and_then(|v| v.to_str().ok()),
    );
    if !inner.options.latency.is_zero() {
        inner.pause(inner.options.latency).await;
    }
    let refused = P::authorize(&parts).and(parsed);
    let req = match refused {
        Ok(req) => req,
        Err(refusal) => {
            inner.stats.rejected();
            return error_response::<P>(refusal.status, Some(&refusal.message), None, None);
        }
    };
    let rule = inner.faults.take(P::FORMAT, P::model(&req), stream);
    let mut plan = BodyPlan::default();
    let mut filtered = false;
    if let Some(rule) = &rule {
        let fault = &rule.rule.fault;
        inner.stats.faulted(fault);
        match fault {
            Fault::Status {
                status,
                retry_after_seconds,
                body,
            } => {
                let status =
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return error_response::<P>(status, None, *retry_after_seconds, body.as_ref());
            }
            Fault::Reset => return reset(&parts),
            Fault::Latency { ms } => inner.pause(Duration::from_millis(*ms)).await,
            Fault::SlowFirstByte { delay_ms } => {
                plan.first_delay = Duration::from_millis(*delay_ms)
            }
            Fault::Stall { after_chunks } => plan.stop = Some((*after_chunks, Ending::Stall)),
            Fault::Cut { after_chunks } => plan.stop = Some((*after_chunks, Ending::Cut)),
            Fault::Malformed => plan.malformed = true,
            Fault::ContentFilter => filtered = true,
        }
    }
    let question = P::question(&req);
    let prompt = Prompt {
        format: P::FORMAT.as_str(),
        model: P::model(&req),
        question: &question,
        chars: P::prompt_chars(&req),
        max_tokens: P::max_tokens(&req),
    };
    let answer = Answer::generate(&prompt, filtered);
    let rendered = P::render(inner, &req, &answer);
    respond::<P>(inner, rendered, plan)
}

/// Kills the request's connection (no response bytes at all). Without a
/// [`ConnHandle`] (router used outside [`FakeProvider::serve`]) the best
/// approximation is a response whose body fails at once.
pub(crate) fn reset(parts: &Parts) -> Response {
    if let Some(ConnectInfo(handle)) = parts.extensions.get::<ConnectInfo<ConnHandle>>() {
        handle.kill();
    }
    let mut response = Response::new(body::failing());
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

pub(crate) fn respond<P: Wire>(inner: &Inner, rendered: Rendered, plan: BodyPlan) -> Response {
    let Rendered {
        content_type,
        frames,
        stream,
    } = rendered;
    let chunk_delay = if stream {
        inner.options.chunk_delay
    } else {
        Duration::ZERO
    };
    let shutdown = inner.shutdown.subscribe();
    let body = body::build(
        frames,
        stream,
        &plan,
        P::GARBAGE_FRAME,
        chunk_delay,
        shutdown,
    );
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type.starts_with("text/event-stream") {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Some(name) = P::REQUEST_ID_HEADER
        && let Ok(value) = HeaderValue::try_from(new_id("req_", 24))
    {
        headers.insert(HeaderName::from_static(name), value);
    }
    response
}
