//! OpenAI Chat Completions: `POST /v1/chat/completions` (JSON, or SSE `data:`
//! lines ending with `data: [DONE]` when `"stream": true`) and `GET /v1/models`.
//!
//! Any `Authorization: Bearer` key, or none, is accepted (and counted). The
//! output limit is `max_completion_tokens`, or the older `max_tokens`. With
//! `stream_options.include_usage`, every chunk carries `"usage": null` and a
//! last chunk with `"choices": []` carries the usage, as documented.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::faults::Format;
use super::text::{Answer, Content, Stop, new_id, unix_now};
use super::wire::{self, Refusal, Rendered, Wire, json, sse};
use super::{FakeProvider, Inner, errors};

/// `POST /v1/chat/completions`.
pub(super) async fn chat_completions(
    State(provider): State<FakeProvider>,
    request: Request,
) -> Response {
    wire::handle::<OpenAi>(provider, request).await
}

pub(super) struct OpenAi;

#[derive(Deserialize)]
pub(super) struct ChatRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

impl ChatRequest {
    fn messages(&self) -> &[ChatMessage] {
        self.messages.as_deref().unwrap_or_default()
    }

    fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

#[derive(Serialize, Clone, Copy)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
}

#[derive(Serialize, Clone, Copy)]
struct PromptDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

#[derive(Serialize, Clone, Copy)]
struct CompletionDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
    service_tier: &'static str,
    system_fingerprint: &'static str,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<&'a str>,
    annotations: [(); 0],
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    service_tier: &'static str,
    system_fingerprint: &'static str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Option<&'a str>>,
}

const FINGERPRINT: &str = "fp_fake0001";
const DONE: &[u8] = b"data: [DONE]\n\n";

impl Wire for OpenAi {
    const FORMAT: Format = Format::Openai;
    const JSON_TYPE: &'static str = "application/json";
    const REQUEST_ID_HEADER: Option<&'static str> = Some("x-request-id");
    const GARBAGE_FRAME: &'static [u8] = b"data: {\"id\":\"chatcmpl-garbage\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"<<malformed\n\n";
    type Req = ChatRequest;

    fn parse(_parts: &Parts, body: &[u8]) -> Result<ChatRequest, Refusal> {
        let req: ChatRequest = serde_json::from_slice(body).map_err(|e| {
            Refusal::bad_request(format!(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.) {e}"
            ))
        })?;
        if req.model.is_empty() {
            return Err(Refusal::bad_request("you must provide a model parameter"));
        }
        match &req.messages {
            None => {
                return Err(Refusal::bad_request(
                    "Missing required parameter: 'messages'.",
                ));
            }
            Some(m) if m.is_empty() => {
                return Err(Refusal::bad_request(
                    "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                ));
            }
            Some(_) => {}
        }
        if req.stream_options.is_some() && !Self::streaming(&req) {
            return Err(Refusal::bad_request(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            ));
        }
        Ok(req)
    }

    fn api_key(parts: &Parts) -> Option<&str> {
        parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|k| !k.is_empty())
    }

    fn authorize(_parts: &Parts) -> Result<(), Refusal> {
        Ok(())
    }

    fn model(req: &ChatRequest) -> &str {
        &req.model
    }

    fn streaming(req: &ChatRequest) -> bool {
        req.stream.unwrap_or(false)
    }

    fn question(req: &ChatRequest) -> Cow<'_, str> {
        req.messages()
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .and_then(|m| m.content.as_ref())
            .map(Content::text)
            .unwrap_or_default()
    }

    fn prompt_chars(req: &ChatRequest) -> usize {
        req.messages()
            .iter()
            .filter_map(|m| m.content.as_ref())
            .map(Content::chars)
            .sum()
    }

    fn max_tokens(req: &ChatRequest) -> Option<u64> {
        req.max_completion_tokens.or(req.max_tokens)
    }

    fn error_body(
        status: StatusCode,
        message: Option<&str>,
        _retry_after: Option<f64>,
        _request_id: &str,
    ) -> serde_json::Value {
        errors::openai(status, message)
    }

    fn render(_inner: &Inner, req: &ChatRequest, answer: &Answer) -> Rendered {
        let id = new_id("chatcmpl-", 29);
        let created = unix_now();
        let finish_reason = match answer.stop {
            Stop::Complete => "stop",
            Stop::Length => "length",
            Stop::Filtered => "content_filter",
        };
        let usage = Usage {
            prompt_tokens: answer.prompt_tokens,
            completion_tokens: answer.completion_tokens,
            total_tokens: answer.prompt_tokens + answer.completion_tokens,
            prompt_tokens_details: PromptDetails {
                cached_tokens: 0,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: 0,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        };
        if !Self::streaming(req) {
            let out = Completion {
                id: &id,
                object: "chat.completion",
                created,
                model: &req.model,
                choices: [Choice {
                    index: 0,
                    message: AssistantMessage {
                        role: "assistant",
                        content: &answer.text,
                        refusal: None,
                        annotations: [],
                    },
                    logprobs: None,
                    finish_reason,
                }],
                usage,
                service_tier: "default",
                system_fingerprint: FINGERPRINT,
            };
            return Rendered {
                content_type: Self::JSON_TYPE,
                frames: vec![json(&out, b"")],
                stream: false,
            };
        }
        let include_usage = req.include_usage();
        let chunk = |choices: &[ChunkChoice<'_>], usage: Option<Usage>| -> Bytes {
            let chunk = Chunk {
                id: &id,
                object: "chat.completion.chunk",
                created,
                model: &req.model,
                service_tier: "default",
                system_fingerprint: FINGERPRINT,
                choices,
                usage: include_usage.then_some(usage),
            };
            sse(None, &chunk)
        };
        let choice = |delta, finish_reason| ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        };
        let pieces = answer.pieces();
        let mut frames = Vec::with_capacity(pieces.len() + 4);
        let first = Delta {
            role: Some("assistant"),
            content: Some(""),
            refusal: Some(None),
        };
        frames.push(chunk(&[choice(first, None)], None));
        for text in pieces {
            let delta = Delta {
                content: Some(text),
                ..Delta::default()
            };
            frames.push(chunk(&[choice(delta, None)], None));
        }
        frames.push(chunk(
            &[choice(Delta::default(), Some(finish_reason))],
            None,
        ));
        if include_usage {
            frames.push(chunk(&[], Some(usage)));
        }
        frames.push(Bytes::from_static(DONE));
        Rendered {
            content_type: "text/event-stream; charset=utf-8",
            frames,
            stream: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::fake_provider::testkit::{body_json, openai_request, send, sse_events};
    use crate::fake_provider::{FakeOptions, FakeProvider, Format};

    #[tokio::test]
    async fn non_stream_response_has_the_documented_shape() {
        let fake = FakeProvider::new(FakeOptions::default());
        let body = json!({"model": "gpt-test", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is up?"}]}]});
        let (status, headers, bytes) = send(&fake, openai_request(body)).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/json");
        assert!(headers.contains_key("x-request-id"));
        let v = body_json(&bytes);
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(v["object"], "chat.completion");
        assert!(v["created"].as_u64().unwrap() > 1_700_000_000);
        assert_eq!(v["model"], "gpt-test");
        let choice = &v["choices"][0];
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["message"]["role"], "assistant");
        let text = choice["message"]["content"].as_str().unwrap();
        assert!(text.starts_with("Fake openai answer to: What is up?."));
        assert_eq!(choice["finish_reason"], "stop");
        let usage = &v["usage"];
        assert_eq!(usage["prompt_tokens"], 5);
        assert_eq!(usage["completion_tokens"], (text.len() as u64).div_ceil(4));
        assert_eq!(
            usage["total_tokens"],
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        );
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
        assert_eq!(fake.calls().with_api_key, 1);
    }

    fn stream_text(events: &[(Option<String>, Value)]) -> String {
        events
            .iter()
            .filter_map(|(_, d)| d["choices"][0]["delta"]["content"].as_str())
            .collect()
    }

    #[tokio::test]
    async fn stream_without_usage() {
        let fake = FakeProvider::new(FakeOptions::default());
        let body = json!({"model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": "Go"}]});
        let (status, headers, bytes) = send(&fake, openai_request(body)).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "text/event-stream; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-cache");
        let events = sse_events(&bytes);
        assert!(events.iter().all(|(name, _)| name.is_none()));
        assert_eq!(events.last().unwrap().1, "[DONE]");
        let chunks = &events[..events.len() - 1];
        assert!(chunks.len() >= 6);
        let id = &chunks[0].1["id"];
        for (_, c) in chunks {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(&c["id"], id);
            assert_eq!(c["model"], "gpt-test");
            assert!(c.get("usage").is_none());
        }
        assert_eq!(chunks[0].1["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[0].1["choices"][0]["finish_reason"], Value::Null);
        let last = &chunks[chunks.len() - 1].1["choices"][0];
        assert_eq!(last["finish_reason"], "stop");
        assert_eq!(last["delta"], json!({}));
        assert!(stream_text(&events).starts_with("Fake openai answer to: Go."));
        assert!(bytes.ends_with(b"\n\ndata: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn stream_with_usage_and_length() {
        let fake = FakeProvider::new(FakeOptions::default());
        let body = json!({"model": "gpt-test", "stream": true, "max_completion_tokens": 6,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Go"}]});
        let events = sse_events(&send(&fake, openai_request(body)).await.2);
        let n = events.len();
        assert_eq!(events[n - 1].1, "[DONE]");
        let usage_chunk = &events[n - 2].1;
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(usage_chunk["usage"]["completion_tokens"], 6);
        assert_eq!(usage_chunk["usage"]["total_tokens"], 7);
        assert_eq!(events[n - 3].1["choices"][0]["finish_reason"], "length");
        for (_, c) in &events[..n - 2] {
            assert_eq!(c["usage"], Value::Null);
            assert!(c.as_object().unwrap().contains_key("usage"));
        }
        assert_eq!(stream_text(&events).len(), 24);
    }

    #[tokio::test]
    async fn bad_requests_get_openai_errors() {
        let fake = FakeProvider::new(FakeOptions::default());
        for body in [
            "not json".to_owned(),
            json!({"messages": [{"role": "user", "content": "x"}]}).to_string(),
            json!({"model": "m"}).to_string(),
            json!({"model": "m", "messages": []}).to_string(),
            json!({"model": "m", "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "x"}]}).to_string(),
        ] {
            let req = axum::http::Request::post("/v1/chat/completions")
                .body(axum::body::Body::from(body.clone()))
                .unwrap();
            let (status, headers, bytes) = send(&fake, req).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(headers["content-type"], "application/json");
            let v = body_json(&bytes);
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert!(v["error"]["message"].as_str().unwrap().len() > 10);
            assert!(v["error"].as_object().unwrap().contains_key("param"));
        }
        let calls = fake.calls();
        assert_eq!((calls.total, calls.rejected, calls.with_api_key), (5, 5, 0));
        assert_eq!(calls.by_format[&Format::Openai], 5);
        assert_eq!(
            calls.count(Format::Openai, "m"),
            0,
            "rejected bodies have no model"
        );
    }

    #[tokio::test]
    async fn lists_models() {
        let fake = FakeProvider::new(FakeOptions::default());
        let req = axum::http::Request::get("/v1/models")
            .header("authorization", "Bearer sk-test")
            .body(axum::body::Body::empty())
            .unwrap();
        let v = body_json(&send(&fake, req).await.2);
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][0]["object"], "model");
        assert!(v["data"][0]["id"].is_string());
    }
}
