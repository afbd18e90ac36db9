//! Anthropic's Messages API: `POST /v1/messages` (JSON, or SSE with named
//! events when `"stream": true`) and its model list.
//!
//! Requests need `x-api-key` (401 `authentication_error` without it) and
//! `anthropic-version` (400 without it), and a body with `model`, `messages`
//! and `max_tokens`, as the real API does. When `system` is a block list with a
//! `cache_control` marker, the system text up to the last marked block is a
//! cache prefix: the first call for a given model and prefix reports it as
//! `cache_creation_input_tokens`, later ones as `cache_read_input_tokens`.

use std::borrow::Cow;
use std::hash::{DefaultHasher, Hash, Hasher};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::faults::Format;
use super::text::{Answer, Content, Stop, new_id, prompt_tokens, tokens};
use super::wire::{self, Refusal, Rendered, Wire, json, sse};
use super::{FakeProvider, Inner, errors};

/// `POST /v1/messages`.
pub(super) async fn messages(State(provider): State<FakeProvider>, request: Request) -> Response {
    wire::handle::<Anthropic>(provider, request).await
}

pub(super) struct Anthropic;

#[derive(Deserialize)]
pub(super) struct MessagesRequest {
    model: String,
    messages: Vec<Message>,
    max_tokens: u64,
    #[serde(default)]
    system: Option<Content>,
    #[serde(default)]
    stream: Option<bool>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: Content,
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct Event<T> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: T,
}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: TextBlock<'a>,
}

const BLOCK_START: &[u8] = b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";
const BLOCK_STOP: &[u8] =
    b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
const MESSAGE_STOP: &[u8] = b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

#[derive(Serialize)]
struct MessageOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<TextBlock<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'static str>,
    usage: Usage,
}

impl Wire for Anthropic {
    const FORMAT: Format = Format::Anthropic;
    const JSON_TYPE: &'static str = "application/json";
    const REQUEST_ID_HEADER: Option<&'static str> = Some("request-id");
    const GARBAGE_FRAME: &'static [u8] = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_del<<malformed\n\n";
    type Req = MessagesRequest;

    fn parse(_parts: &Parts, body: &[u8]) -> Result<MessagesRequest, Refusal> {
        let req: MessagesRequest = serde_json::from_slice(body)
            .map_err(|e| Refusal::bad_request(format!("invalid request body: {e}")))?;
        if req.model.is_empty() {
            return Err(Refusal::bad_request(
                "model: String should have at least 1 character",
            ));
        }
        if req.max_tokens == 0 {
            return Err(Refusal::bad_request(
                "max_tokens: Input should be greater than or equal to 1",
            ));
        }
        if req.messages.is_empty() {
            return Err(Refusal::bad_request(
                "messages: at least one message is required",
            ));
        }
        if let Some(bad) = req
            .messages
            .iter()
            .find(|m| m.role != "user" && m.role != "assistant")
        {
            return Err(Refusal::bad_request(format!(
                "messages: Unexpected role \"{}\". Use the top-level `system` parameter for system prompts; roles must be \"user\" or \"assistant\"",
                bad.role
            )));
        }
        Ok(req)
    }

    fn api_key(parts: &Parts) -> Option<&str> {
        let headers = &parts.headers;
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            })
            .filter(|k| !k.is_empty())
    }

    fn authorize(parts: &Parts) -> Result<(), Refusal> {
        if Self::api_key(parts).is_none() {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "x-api-key header is required",
            ));
        }
        if !parts.headers.contains_key("anthropic-version") {
            return Err(Refusal::bad_request(
                "anthropic-version: header is required",
            ));
        }
        Ok(())
    }

    fn model(req: &MessagesRequest) -> &str {
        &req.model
    }

    fn streaming(req: &MessagesRequest) -> bool {
        req.stream.unwrap_or(false)
    }

    fn question(req: &MessagesRequest) -> Cow<'_, str> {
        req.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.text())
            .unwrap_or_default()
    }

    fn prompt_chars(req: &MessagesRequest) -> usize {
        req.system.as_ref().map_or(0, Content::chars)
            + req
                .messages
                .iter()
                .map(|m| m.content.chars())
                .sum::<usize>()
    }

    fn max_tokens(req: &MessagesRequest) -> Option<u64> {
        Some(req.max_tokens)
    }

    fn error_body(
        status: StatusCode,
        message: Option<&str>,
        _retry_after: Option<f64>,
        request_id: &str,
    ) -> serde_json::Value {
        errors::anthropic(status, message, request_id)
    }

    fn render(inner: &Inner, req: &MessagesRequest, answer: &Answer) -> Rendered {
        let id = new_id("msg_01", 22);
        let (input_tokens, created, read) = cache_usage(inner, req, answer.prompt_tokens);
        let stop_reason = match answer.stop {
            Stop::Complete => "end_turn",
            Stop::Length => "max_tokens",
            Stop::Filtered => "refusal",
        };
        let usage = |output_tokens| Usage {
            input_tokens,
            cache_creation_input_tokens: created,
            cache_read_input_tokens: read,
            output_tokens,
        };
        if !Self::streaming(req) {
            let out = MessageOut {
                id: &id,
                kind: "message",
                role: "assistant",
                model: &req.model,
                content: vec![TextBlock {
                    kind: "text",
                    text: &answer.text,
                }],
                stop_reason: Some(stop_reason),
                stop_sequence: None,
                usage: usage(answer.completion_tokens),
            };
            return Rendered {
                content_type: Self::JSON_TYPE,
                frames: vec![json(&out, b"")],
                stream: false,
            };
        }
        let pieces = answer.pieces();
        let mut frames = Vec::with_capacity(pieces.len() + 6);
        let start = MessageOut {
            id: &id,
            kind: "message",
            role: "assistant",
            model: &req.model,
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: usage(answer.completion_tokens.min(1)),
        };
        frames.push(sse(
            Some("message_start"),
            &Event {
                kind: "message_start",
                message: start,
            },
        ));
        frames.push(Bytes::from_static(BLOCK_START));
        frames.push(Bytes::from_static(PING));
        for text in pieces {
            let delta = BlockDelta {
                kind: "content_block_delta",
                index: 0,
                delta: TextBlock {
                    kind: "text_delta",
                    text,
                },
            };
            frames.push(sse(Some("content_block_delta"), &delta));
        }
        frames.push(Bytes::from_static(BLOCK_STOP));
        frames.push(sse(
            Some("message_delta"),
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": answer.completion_tokens},
            }),
        ));
        frames.push(Bytes::from_static(MESSAGE_STOP));
        Rendered {
            content_type: "text/event-stream; charset=utf-8",
            frames,
            stream: true,
        }
    }
}

/// Splits prompt tokens into (uncached input, cache creation, cache read).
fn cache_usage(inner: &Inner, req: &MessagesRequest, prompt: u64) -> (u64, u64, u64) {
    let Some(Content::Blocks(blocks)) = &req.system else {
        return (prompt, 0, 0);
    };
    let Some(last_marked) = blocks.iter().rposition(|b| b.cache_control.is_some()) else {
        return (prompt, 0, 0);
    };
    let mut hasher = DefaultHasher::new();
    req.model.hash(&mut hasher);
    let mut cached_chars = 0;
    for block in &blocks[..=last_marked] {
        let text = block.text.as_deref().unwrap_or("");
        text.hash(&mut hasher);
        cached_chars += text.chars().count();
    }
    let cached = tokens(cached_chars);
    let total_chars = Anthropic::prompt_chars(req);
    let input = prompt_tokens(total_chars.saturating_sub(cached_chars));
    if inner.prompt_cache.insert(hasher.finish()) {
        (input, cached, 0)
    } else {
        (input, 0, cached)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::fake_provider::testkit::{anthropic_request, body_json, send, sse_events};
    use crate::fake_provider::{FakeOptions, FakeProvider};

    fn request(body: Value) -> axum::extract::Request {
        anthropic_request(body, true)
    }

    #[tokio::test]
    async fn non_stream_response_has_the_documented_shape() {
        let fake = FakeProvider::new(FakeOptions::default());
        let body = json!({"model": "claude-test", "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Hello there"}]});
        let (status, headers, bytes) = send(&fake, request(body)).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/json");
        assert!(headers["request-id"].to_str().unwrap().starts_with("req_"));
        let v = body_json(&bytes);
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "id",
                "type",
                "role",
                "model",
                "content",
                "stop_reason",
                "stop_sequence",
                "usage"
            ]
        );
        assert!(v["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["model"], "claude-test");
        assert_eq!(v["content"][0]["type"], "text");
        let text = v["content"][0]["text"].as_str().unwrap();
        assert!(
            text.starts_with("Fake anthropic answer to: Hello there."),
            "{text}"
        );
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["stop_sequence"], Value::Null);
        assert_eq!(v["usage"]["input_tokens"], 3);
        assert_eq!(
            v["usage"]["output_tokens"],
            (text.chars().count() as u64).div_ceil(4)
        );
        assert_eq!(v["usage"]["cache_creation_input_tokens"], 0);
        assert_eq!(v["usage"]["cache_read_input_tokens"], 0);
    }

    #[tokio::test]
    async fn stream_sends_the_documented_event_sequence() {
        let fake = FakeProvider::new(FakeOptions::default());
        let body = json!({"model": "claude-test", "max_tokens": 1024, "stream": true,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Stream it"}]}]});
        let (status, headers, bytes) = send(&fake, request(body)).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "text/event-stream; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-cache");
        let events = sse_events(&bytes);
        let names: Vec<_> = events.iter().map(|(e, _)| e.as_deref().unwrap()).collect();
        let deltas = names
            .iter()
            .filter(|n| **n == "content_block_delta")
            .count();
        assert!((4..=8).contains(&deltas), "{names:?}");
        let mut expected = vec!["message_start", "content_block_start", "ping"];
        expected.extend(std::iter::repeat_n("content_block_delta", deltas));
        expected.extend(["content_block_stop", "message_delta", "message_stop"]);
        assert_eq!(names, expected);
        for (name, data) in &events {
            assert_eq!(data["type"], name.as_deref().unwrap());
        }
        let start = &events[0].1["message"];
        assert_eq!(start["model"], "claude-test");
        assert_eq!(start["content"], json!([]));
        assert_eq!(start["stop_reason"], Value::Null);
        assert_eq!(
            events[1].1["content_block"],
            json!({"type": "text", "text": ""})
        );
        let text: String = events
            .iter()
            .filter(|(n, _)| n.as_deref() == Some("content_block_delta"))
            .map(|(_, d)| {
                assert_eq!(d["delta"]["type"], "text_delta");
                d["delta"]["text"].as_str().unwrap().to_owned()
            })
            .collect();
        assert!(text.starts_with("Fake anthropic answer to: Stream it."));
        let delta = &events[events.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(
            delta["usage"]["output_tokens"],
            (text.len() as u64).div_ceil(4)
        );
        assert!(bytes.ends_with(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    }

    #[tokio::test]
    async fn max_tokens_stops_with_max_tokens() {
        let fake = FakeProvider::new(FakeOptions::default());
        let body =
            json!({"model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]});
        let v = body_json(&send(&fake, request(body)).await.2);
        assert_eq!(v["stop_reason"], "max_tokens");
        assert_eq!(
            v["content"][0]["text"].as_str().unwrap().chars().count(),
            12
        );
        assert_eq!(v["usage"]["output_tokens"], 3);
    }

    #[tokio::test]
    async fn missing_key_version_and_bad_bodies_get_anthropic_errors() {
        let fake = FakeProvider::new(FakeOptions::default());
        let good =
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
        let (status, _, bytes) = send(&fake, anthropic_request(good.clone(), false)).await;
        assert_eq!(status, 401);
        let v = body_json(&bytes);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert!(v["request_id"].as_str().unwrap().starts_with("req_"));

        let no_version = axum::http::Request::post("/v1/messages")
            .header("x-api-key", "k")
            .body(axum::body::Body::from(good.to_string()))
            .unwrap();
        let (status, _, bytes) = send(&fake, no_version).await;
        assert_eq!(status, 400);
        assert!(
            body_json(&bytes)["error"]["message"]
                .as_str()
                .unwrap()
                .contains("anthropic-version")
        );

        for bad in [
            Value::String("{not json".into()),
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            json!({"model": "m", "max_tokens": 5, "messages": []}),
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
        ] {
            let body = match &bad {
                Value::String(raw) => raw.clone(),
                other => other.to_string(),
            };
            let req = axum::http::Request::post("/v1/messages")
                .header("x-api-key", "k")
                .header("anthropic-version", "2023-06-01")
                .body(axum::body::Body::from(body))
                .unwrap();
            let (status, _, bytes) = send(&fake, req).await;
            assert_eq!(status, 400, "{bad}");
            let v = body_json(&bytes);
            assert_eq!(v["error"]["type"], "invalid_request_error", "{bad}");
        }
        let calls = fake.calls();
        assert_eq!(calls.total, 6);
        assert_eq!(calls.rejected, 6);
    }

    #[tokio::test]
    async fn cache_control_reports_creation_then_reads() {
        let fake = FakeProvider::new(FakeOptions::default());
        let system = "You are a careful assistant. ".repeat(40);
        let body = |q: &str| {
            json!({"model": "claude-test", "max_tokens": 64,
                "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": q}]})
        };
        let usage = |bytes: &[u8]| body_json(bytes)["usage"].clone();
        let first = usage(&send(&fake, request(body("first question"))).await.2);
        let cached = (system.len() as u64).div_ceil(4);
        assert_eq!(first["cache_creation_input_tokens"], cached);
        assert_eq!(first["cache_read_input_tokens"], 0);
        assert_eq!(first["input_tokens"], 4);
        let second = usage(&send(&fake, request(body("second question"))).await.2);
        assert_eq!(second["cache_creation_input_tokens"], 0);
        assert_eq!(second["cache_read_input_tokens"], cached);
        // A different system text is a new prefix; a plain string system is never cached.
        let other = json!({"model": "claude-test", "max_tokens": 64,
            "system": [{"type": "text", "text": "other", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "q"}]});
        assert_eq!(
            usage(&send(&fake, request(other)).await.2)["cache_creation_input_tokens"],
            2
        );
        let plain = json!({"model": "claude-test", "max_tokens": 64, "system": system,
            "messages": [{"role": "user", "content": "q"}]});
        let plain = usage(&send(&fake, request(plain)).await.2);
        assert_eq!(plain["cache_read_input_tokens"], 0);
        assert_eq!(plain["input_tokens"], cached + 1);
        fake.reset();
        let again = usage(&send(&fake, request(body("after reset"))).await.2);
        assert_eq!(again["cache_creation_input_tokens"], cached);
    }

    #[tokio::test]
    async fn lists_models_with_anthropic_headers() {
        let fake = FakeProvider::new(FakeOptions::default());
        let req = axum::http::Request::get("/v1/models")
            .header("anthropic-version", "2023-06-01")
            .header("x-api-key", "k")
            .body(axum::body::Body::empty())
            .unwrap();
        let v = body_json(&send(&fake, req).await.2);
        assert_eq!(v["data"][0]["type"], "model");
        assert_eq!(v["has_more"], false);
    }
}
