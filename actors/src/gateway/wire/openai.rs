//! OpenAI Chat Completions: `POST {base}/v1/chat/completions` (no second `/v1` when the base
//! already ends with a version), whole or streamed as SSE `data:` chunks ending in
//! `data: [DONE]`. Also every OpenAI-compatible server (vLLM, llama.cpp, LiteLLM, Mistral,
//! DeepSeek...), so optional fields are read leniently: `null` anywhere, `content` as a string
//! or an array of text parts, error bodies as `{"error": {...}}`, `{"error": "..."}` or vLLM's
//! and Mistral's top-level `{"object": "error", "message": ...}`.
//!
//! Classification beyond the status: `context_length_exceeded` is
//! [`ModelError::ContextTooLong`], `rate_limit_exceeded` [`ModelError::RateLimited`], and
//! `insufficient_quota` (also a 429) [`ModelError::Auth`]: it is a billing failure that waiting
//! does not cure, so it should fall back and trip the circuit, not be retried after a delay.
//! `finish_reason: "content_filter"` is [`ModelError::ContentFiltered`].
//!
//! `stream_options: {"include_usage": true}` is sent with streamed requests, except to Mistral's
//! API (`mistral.ai` hosts), which rejects unknown fields with 422 and reports usage anyway.

mod error;

use error::{failure_of_body, failure_of_value};

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{
    self, Framed, Handler, append, count, join_url, malformed, nullable, opt_count, to_error,
    transport,
};
use super::sse::{SseEvent, SseParser};
use super::{
    Completion, Endpoint, HttpCall, ProviderRequest, StreamDecoder, StreamEvent, WireFormat,
};
use crate::gateway::{ModelError, Role};
use crate::types::Usage;

/// OpenAI Chat Completions and compatible servers.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenAi;

impl WireFormat for OpenAi {
    fn kind(&self) -> &'static str {
        "openai"
    }

    fn default_base_url(&self) -> &'static str {
        "https://api.openai.com"
    }

    fn build(&self, endpoint: &Endpoint, request: &ProviderRequest) -> HttpCall {
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if let Some(key) = common::key(&endpoint.api_key) {
            headers.push(("authorization".to_owned(), format!("Bearer {key}")));
        }
        let usage_option = request.stream && !rejects_stream_options(&endpoint.base_url);
        let body = Body {
            model: &request.model,
            messages: request
                .messages
                .iter()
                .map(|m| Message {
                    role: m.role,
                    content: &m.content,
                })
                .collect(),
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
            stop: &request.stop,
            stream: request.stream,
            stream_options: usage_option.then_some(StreamOptions {
                include_usage: true,
            }),
        };
        HttpCall {
            url: join_url(&endpoint.base_url, "v1", "chat/completions"),
            headers,
            body: common::to_body(&body),
        }
    }

    fn parse(
        &self,
        provider: &str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Completion, ModelError> {
        let http = Some((status, headers));
        if !(200..300).contains(&status) {
            return Err(to_error(provider, http, failure_of_body(body)));
        }
        let value: Value = common::from_json(provider, body)?;
        if let Some(failure) = failure_of_value(&value) {
            return Err(to_error(provider, http, failure));
        }
        let response: Response = serde_json::from_value(value)
            .map_err(|e| malformed(provider, format!("not a chat completion: {e}")))?;
        let Some(choice) = response.choices.into_iter().next() else {
            return Err(malformed(provider, "a chat completion without choices"));
        };
        let finish_reason = choice.finish_reason;
        filtered(provider, finish_reason.as_deref())?;
        let mut text = String::new();
        let message = choice.message.or(choice.delta).unwrap_or_default();
        append(provider, &mut text, &content_text(&message.content))?;
        if text.is_empty() {
            append(provider, &mut text, &choice.text)?;
        }
        Ok(Completion {
            text,
            model: response.model,
            usage: response.usage.unwrap_or_default().usage(),
            finish_reason,
        })
    }

    fn decoder(&self, provider: &str) -> Box<dyn StreamDecoder> {
        Box::new(Framed::new(
            provider,
            SseParser::new(),
            Stream {
                provider: provider.to_owned(),
                ..Stream::default()
            },
        ))
    }
}

/// Mistral's API validates strictly and refuses `stream_options` (it sends usage regardless).
fn rejects_stream_options(base_url: &str) -> bool {
    let host = base_url
        .split("://")
        .nth(1)
        .unwrap_or(base_url)
        .split(['/', ':'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    host == "mistral.ai" || host.ends_with(".mistral.ai")
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: Role,
    content: &'a str,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Deserialize)]
struct Response {
    choices: Vec<Choice>,
    #[serde(default, deserialize_with = "nullable")]
    model: String,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Default, Deserialize)]
struct Choice {
    #[serde(default, deserialize_with = "count")]
    index: u64,
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    delta: Option<ChoiceMessage>,
    /// Legacy completions-style text, which a few servers still send.
    #[serde(default, deserialize_with = "nullable")]
    text: String,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Value,
}

/// `content` as a string, or an array of parts whose text parts are joined.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| {
                p.get("type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t == "text")
            })
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

#[derive(Default, Deserialize)]
struct RawUsage {
    #[serde(default, deserialize_with = "count")]
    prompt_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    /// DeepSeek's name for cached prompt tokens.
    #[serde(default, deserialize_with = "opt_count")]
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Default, Deserialize)]
struct PromptDetails {
    #[serde(default, deserialize_with = "opt_count")]
    cached_tokens: Option<u64>,
}

impl RawUsage {
    fn usage(self) -> Usage {
        Usage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
            cached_input_tokens: self
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .or(self.prompt_cache_hit_tokens)
                .unwrap_or(0),
            ..Usage::default()
        }
    }
}

fn filtered(provider: &str, finish_reason: Option<&str>) -> Result<(), ModelError> {
    if finish_reason == Some("content_filter") {
        return Err(ModelError::ContentFiltered {
            provider: provider.to_owned(),
            message: "the answer was stopped by a content filter (finish_reason: content_filter)"
                .to_owned(),
        });
    }
    Ok(())
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default, deserialize_with = "nullable")]
    choices: Vec<Choice>,
    #[serde(default, deserialize_with = "nullable")]
    model: String,
    #[serde(default)]
    usage: Option<RawUsage>,
}

/// One streamed answer being decoded.
#[derive(Default)]
struct Stream {
    provider: String,
    text: String,
    model: String,
    usage: Usage,
    finish_reason: Option<String>,
    done: bool,
}

impl Handler<SseEvent> for Stream {
    fn item(&mut self, sse: SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), ModelError> {
        let data = sse.data.trim();
        if self.done || data.is_empty() {
            return Ok(());
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let value: Value = serde_json::from_str(data)
            .map_err(|e| malformed(&self.provider, format!("bad stream chunk: {e}")))?;
        if let Some(failure) = failure_of_value(&value) {
            return Err(to_error(&self.provider, None, failure));
        }
        let chunk: Chunk = serde_json::from_value(value)
            .map_err(|e| malformed(&self.provider, format!("bad stream chunk: {e}")))?;
        if !chunk.model.is_empty() {
            self.model = chunk.model;
        }
        if let Some(usage) = chunk.usage {
            self.usage = usage.usage();
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let mut piece = choice
                .delta
                .map(|d| content_text(&d.content))
                .unwrap_or_default();
            if piece.is_empty() {
                piece = choice.text;
            }
            if !piece.is_empty() {
                append(&self.provider, &mut self.text, &piece)?;
                out.push(StreamEvent::Delta(piece));
            }
            if let Some(reason) = choice.finish_reason {
                filtered(&self.provider, Some(&reason))?;
                self.finish_reason = Some(reason);
            }
        }
        Ok(())
    }

    fn end(self) -> Result<Completion, ModelError> {
        if !self.done {
            return Err(transport(&self.provider, "stream ended before [DONE]"));
        }
        Ok(Completion {
            text: self.text,
            model: self.model,
            usage: self.usage,
            finish_reason: self.finish_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderValue;
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::common::testing::{every_split, run};
    use super::*;
    use crate::gateway::ChatMessage;

    fn request(stream: bool) -> ProviderRequest {
        ProviderRequest {
            model: "gpt-4o".into(),
            messages: vec![
                ChatMessage::new(Role::System, "You are terse.".into()),
                ChatMessage::new(Role::User, "Hi".into()),
                ChatMessage::new(Role::Assistant, "Hello.".into()),
                ChatMessage::new(Role::User, "Name?".into()),
            ],
            max_tokens: 256,
            temperature: Some(0.2),
            top_p: Some(1.0),
            stop: vec!["END".into()],
            stream,
            cache_system_prompt: true,
        }
    }

    fn endpoint(base: &str, key: Option<&str>) -> Endpoint {
        Endpoint {
            base_url: base.into(),
            api_key: key.map(str::to_owned),
        }
    }

    fn header<'a>(call: &'a HttpCall, name: &str) -> Option<&'a str> {
        call.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json_body(call: &HttpCall) -> Value {
        serde_json::from_slice(&call.body).unwrap()
    }

    #[test]
    fn builds_a_chat_completion_request() {
        let call = OpenAi.build(
            &endpoint("https://api.openai.com", Some("sk-test")),
            &request(false),
        );
        assert_eq!(call.url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(header(&call, "authorization"), Some("Bearer sk-test"));
        assert_eq!(header(&call, "content-type"), Some("application/json"));
        assert_eq!(
            json_body(&call),
            json!({
                "model": "gpt-4o",
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": "Name?"},
                ],
                "max_tokens": 256,
                "temperature": 0.2,
                "top_p": 1.0,
                "stop": ["END"],
                "stream": false,
            })
        );
    }

    #[test]
    fn streaming_asks_for_usage_and_bases_keep_their_version() {
        let call = OpenAi.build(&endpoint("http://localhost:8000/v1", None), &request(true));
        assert_eq!(call.url, "http://localhost:8000/v1/chat/completions");
        assert_eq!(header(&call, "authorization"), None);
        let body = json_body(&call);
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        let call = OpenAi.build(
            &endpoint("http://localhost:4000/", Some(" ")),
            &request(true),
        );
        assert_eq!(call.url, "http://localhost:4000/v1/chat/completions");
        assert_eq!(header(&call, "authorization"), None);
        // Mistral refuses unknown fields.
        let call = OpenAi.build(
            &endpoint("https://api.mistral.ai/v1", Some("k")),
            &request(true),
        );
        assert_eq!(call.url, "https://api.mistral.ai/v1/chat/completions");
        assert!(
            !json_body(&call)
                .as_object()
                .unwrap()
                .contains_key("stream_options")
        );
        // Optional fields left out.
        let mut r = request(false);
        r.temperature = None;
        r.top_p = None;
        r.stop.clear();
        let body = json_body(&OpenAi.build(&endpoint("https://api.openai.com", None), &r));
        let obj = body.as_object().unwrap();
        for absent in ["temperature", "top_p", "stop", "stream_options"] {
            assert!(!obj.contains_key(absent), "{absent}");
        }
    }

    const RESPONSE: &str = r#"{
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "My name is GPT. 👋",
                "refusal": null,
                "annotations": []
            },
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": 1117,
            "completion_tokens": 46,
            "total_tokens": 1163,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        },
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035"
    }"#;

    fn parse(status: u16, headers: &HeaderMap, body: &str) -> Result<Completion, ModelError> {
        OpenAi.parse("openai", status, headers, body.as_bytes())
    }

    #[test]
    fn parses_a_chat_completion() {
        let c = parse(200, &HeaderMap::new(), RESPONSE).unwrap();
        assert_eq!(c.text, "My name is GPT. 👋");
        assert_eq!(c.model, "gpt-4o-2024-08-06");
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        assert_eq!(c.usage.input_tokens, 1117);
        assert_eq!(c.usage.output_tokens, 46);
        assert_eq!(c.usage.cached_input_tokens, 1024);
    }

    #[test]
    fn lenient_with_compatible_servers() {
        // llama.cpp / vLLM style: no details, nulls, content parts, DeepSeek cache counts.
        let body = r#"{"choices":[{"message":{"content":[{"type":"thinking","thinking":"x"},{"type":"text","text":"a"},{"type":"text","text":"b"}]},"finish_reason":null}],
            "model":null,"usage":{"prompt_tokens":10,"completion_tokens":2.0,"prompt_cache_hit_tokens":4,"prompt_tokens_details":null}}"#;
        let c = parse(200, &HeaderMap::new(), body).unwrap();
        assert_eq!(c.text, "ab");
        assert_eq!(c.finish_reason, None);
        assert_eq!(c.usage.input_tokens, 10);
        assert_eq!(c.usage.output_tokens, 2);
        assert_eq!(c.usage.cached_input_tokens, 4);
        let c = parse(
            200,
            &HeaderMap::new(),
            r#"{"choices":[{"message":{"content":null}}]}"#,
        )
        .unwrap();
        assert_eq!((c.text.as_str(), c.usage), ("", Usage::default()));
        for body in [
            "",
            "nope",
            "{}",
            r#"{"choices":[]}"#,
            r#"{"choices":null}"#,
            "[1]",
        ] {
            assert!(
                matches!(
                    parse(200, &HeaderMap::new(), body),
                    Err(ModelError::Malformed { .. })
                ),
                "{body}"
            );
        }
        let filtered =
            r#"{"choices":[{"message":{"content":""},"finish_reason":"content_filter"}]}"#;
        assert!(matches!(
            parse(200, &HeaderMap::new(), filtered),
            Err(ModelError::ContentFiltered { .. })
        ));
    }

    fn openai_error(message: &str, kind: Value, code: Value) -> String {
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
            .to_string()
    }

    #[test]
    fn classifies_errors() {
        let none = HeaderMap::new();
        let mut wait = HeaderMap::new();
        wait.insert("retry-after", HeaderValue::from_static("2"));
        let e = parse(
            429,
            &wait,
            &openai_error("Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000. Please try again in 2s.", json!("tokens"), json!("rate_limit_exceeded")),
        )
        .unwrap_err();
        assert!(
            matches!(e, ModelError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(2)),
        );
        let mut ms = HeaderMap::new();
        ms.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert!(matches!(
            parse(429, &ms, "").unwrap_err(),
            ModelError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_millis(1500)
        ));
        let quota = openai_error(
            "You exceeded your current quota, please check your plan and billing details.",
            json!("insufficient_quota"),
            json!("insufficient_quota"),
        );
        assert!(matches!(
            parse(429, &wait, &quota).unwrap_err(),
            ModelError::Auth { .. }
        ));
        let e = parse(
            401,
            &none,
            &openai_error("Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz1234. You can find your API key at https://platform.openai.com/account/api-keys.", json!("invalid_request_error"), json!("invalid_api_key")),
        )
        .unwrap_err();
        assert!(
            matches!(&e, ModelError::Auth { message, .. } if !message.contains("abcdefghij")),
            "{e:?}"
        );
        assert!(matches!(
            parse(
                400,
                &none,
                &openai_error("This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.", json!("invalid_request_error"), json!("context_length_exceeded")),
            )
            .unwrap_err(),
            ModelError::ContextTooLong { .. }
        ));
        // vLLM: top-level error object, numeric code, context length only in the message.
        let vllm = r#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.","type":"BadRequestError","param":null,"code":400}"#;
        assert!(matches!(
            parse(400, &none, vllm).unwrap_err(),
            ModelError::ContextTooLong { .. }
        ));
        // llama.cpp server.
        let llama = r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":5000,"n_ctx":4096}}"#;
        assert!(matches!(
            parse(400, &none, llama).unwrap_err(),
            ModelError::ContextTooLong { .. }
        ));
        // Mistral: the message is an object.
        let mistral = r#"{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","n"],"msg":"Extra inputs are not permitted","input":1}]},"type":"invalid_request_error","param":null,"code":null}"#;
        assert!(matches!(
            parse(422, &none, mistral).unwrap_err(),
            ModelError::BadRequest { message, .. } if message.contains("extra_forbidden")
        ));
        // Azure content filter.
        let azure = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400}}"#;
        assert!(matches!(
            parse(400, &none, azure).unwrap_err(),
            ModelError::ContentFiltered { .. }
        ));
        assert!(matches!(
            parse(
                404,
                &none,
                &openai_error(
                    "The model `gpt-9` does not exist",
                    json!("invalid_request_error"),
                    json!("model_not_found")
                )
            )
            .unwrap_err(),
            ModelError::BadRequest { .. }
        ));
        assert!(matches!(
            parse(
                500,
                &none,
                &openai_error(
                    "The server had an error while processing your request.",
                    json!("server_error"),
                    Value::Null
                )
            )
            .unwrap_err(),
            ModelError::Server { status: 500, .. }
        ));
        assert!(matches!(
            parse(
                503,
                &none,
                &openai_error(
                    "The engine is currently overloaded, please try again later",
                    json!("server_error"),
                    Value::Null
                )
            )
            .unwrap_err(),
            ModelError::Overloaded { .. }
        ));
        assert!(matches!(
            parse(502, &none, "<html>Bad Gateway</html>").unwrap_err(),
            ModelError::Server { status: 502, .. }
        ));
        assert!(matches!(
            parse(403, &none, r#"{"error":"forbidden"}"#).unwrap_err(),
            ModelError::Auth { .. }
        ));
        // An error object in a 2xx body (LiteLLM does this).
        assert!(matches!(
            parse(
                200,
                &none,
                &openai_error("quota", json!("insufficient_quota"), json!("429"))
            )
            .unwrap_err(),
            ModelError::Auth { .. }
        ));
        assert!(matches!(
            parse(
                200,
                &none,
                &openai_error("slow down", Value::Null, json!("429"))
            )
            .unwrap_err(),
            ModelError::RateLimited {
                retry_after: None,
                ..
            }
        ));
    }

    const STREAM: &str = "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\
\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\
\n\
: keep-alive\n\
\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" wörld 👋\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\
\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\
\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[],\"usage\":{\"prompt_tokens\":2006,\"completion_tokens\":12,\"total_tokens\":2018,\"prompt_tokens_details\":{\"cached_tokens\":1920,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\
\n\
data: [DONE]\n\
\n";

    fn decoder() -> Box<dyn StreamDecoder> {
        OpenAi.decoder("openai")
    }

    #[test]
    fn decodes_a_stream_split_anywhere() {
        let c = every_split(decoder, STREAM.as_bytes()).unwrap();
        assert_eq!(c.text, "Héllo wörld 👋");
        assert_eq!(c.model, "gpt-4o-mini-2024-07-18");
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        assert_eq!(c.usage.input_tokens, 2006);
        assert_eq!(c.usage.output_tokens, 12);
        assert_eq!(c.usage.cached_input_tokens, 1920);
        let crlf = STREAM.replace('\n', "\r\n");
        assert_eq!(every_split(decoder, crlf.as_bytes()).unwrap(), c);
    }

    #[test]
    fn a_cut_stream_is_a_transport_error() {
        let done = STREAM.find("data: [DONE]").unwrap();
        for end in [0, 30, done, done + 8] {
            let (_, r) = run(decoder(), &[&STREAM.as_bytes()[..end]]);
            assert!(
                matches!(r, Err(ModelError::Transport { .. })),
                "cut at {end}: {r:?}"
            );
        }
        // `data: [DONE]` without its blank line still ends the stream.
        let (_, r) = run(decoder(), &[STREAM.trim_end().as_bytes()]);
        assert!(r.is_ok());
    }

    #[test]
    fn error_chunks_classify() {
        let head = STREAM.find("data: [DONE]").unwrap();
        let with = |error: &str| format!("{}data: {error}\n\n", &STREAM[..head]);
        let server = with(
            r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#,
        );
        assert!(matches!(
            run(decoder(), &[server.as_bytes()]).1,
            Err(ModelError::Server { status: 500, .. })
        ));
        let vllm = with(
            r#"{"error":{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}}"#,
        );
        assert!(matches!(
            run(decoder(), &[vllm.as_bytes()]).1,
            Err(ModelError::BadRequest { .. })
        ));
        let limited =
            with(r#"{"error":{"message":"slow","type":"tokens","code":"rate_limit_exceeded"}}"#);
        assert!(matches!(
            run(decoder(), &[limited.as_bytes()]).1,
            Err(ModelError::RateLimited { .. })
        ));
        let filtered = STREAM.replace(
            "\"finish_reason\":\"stop\"",
            "\"finish_reason\":\"content_filter\"",
        );
        assert!(matches!(
            run(decoder(), &[filtered.as_bytes()]).1,
            Err(ModelError::ContentFiltered { .. })
        ));
        let garbage = "data: {\"choices\": 5}\n\n";
        assert!(matches!(
            run(decoder(), &[garbage.as_bytes()]).1,
            Err(ModelError::Malformed { .. })
        ));
        // Mistral and others put usage next to the finish reason; choices for other indexes are skipped.
        let other = "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"x\"}},{\"index\":0,\"delta\":{\"content\":\"y\"},\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
        let c = run(decoder(), &[other.as_bytes()]).1.unwrap();
        assert_eq!(
            (c.text.as_str(), c.finish_reason.as_deref()),
            ("y", Some("length"))
        );
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (3, 1));
    }

    proptest! {
        #[test]
        fn parse_never_panics(status in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = OpenAi.parse("openai", status, &HeaderMap::new(), &body);
        }

        #[test]
        fn parse_never_panics_on_json_like_bodies(status in prop_oneof![Just(200u16), 400u16..600], body in "[{}\\[\\]\":,a-z0-9 _]{0,200}") {
            let _ = OpenAi.parse("openai", status, &HeaderMap::new(), body.as_bytes());
        }

        #[test]
        fn decoder_never_panics(body in proptest::collection::vec(any::<u8>(), 0..1024), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
            let mut d = decoder();
            let mut out = Vec::new();
            let mut rest: &[u8] = &body;
            for cut in cuts {
                let (a, b) = rest.split_at(cut % (rest.len() + 1));
                let _ = d.feed(a, &mut out);
                rest = b;
            }
            let _ = d.feed(rest, &mut out);
            let _ = d.finish();
        }

        #[test]
        fn stream_chunking_never_matters(cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
            let body = STREAM.as_bytes();
            let mut positions: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
            positions.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in positions {
                chunks.push(&body[last..p]);
                last = p;
            }
            chunks.push(&body[last..]);
            prop_assert_eq!(run(decoder(), &chunks).1, run(decoder(), &[body]).1);
        }
    }
}
