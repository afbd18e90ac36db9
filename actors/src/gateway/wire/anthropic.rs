//! The Anthropic Messages API: `POST {base}/v1/messages`, whole or streamed as SSE
//! (`message_start`, `content_block_*`, `message_delta`, `message_stop`, `ping`, `error`).
//!
//! Leading system messages become the top-level `system` field (a cacheable content block
//! when [`ProviderRequest::cache_system_prompt`] is set); a later system message, which the API
//! has no place for, is sent as a user message. Usage: `input_tokens` in [`Usage`] is
//! `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`, and the cached
//! count is `cache_read_input_tokens`. `stop_reason: "refusal"` (a safety classifier stopped
//! the answer) is [`ModelError::ContentFiltered`].

mod error;

use error::{ErrorBody, ErrorEnvelope, error_body, failure};

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{
    self, Framed, Handler, append, join_url, malformed, nullable, opt_count, to_error, transport,
};
use super::sse::{SseEvent, SseParser};
use super::{
    Completion, Endpoint, HttpCall, ProviderRequest, StreamDecoder, StreamEvent, WireFormat,
};
use crate::gateway::{ModelError, Role};
use crate::types::Usage;

/// The `anthropic-version` header value.
pub const API_VERSION: &str = "2023-06-01";

/// The Anthropic Messages API.
#[derive(Clone, Copy, Debug, Default)]
pub struct Anthropic;

impl WireFormat for Anthropic {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    fn default_base_url(&self) -> &'static str {
        "https://api.anthropic.com"
    }

    fn build(&self, endpoint: &Endpoint, request: &ProviderRequest) -> HttpCall {
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("anthropic-version".to_owned(), API_VERSION.to_owned()),
        ];
        if let Some(key) = common::key(&endpoint.api_key) {
            headers.push(("x-api-key".to_owned(), key.to_owned()));
        }
        HttpCall {
            url: join_url(&endpoint.base_url, "v1", "messages"),
            headers,
            body: common::to_body(&body(request)),
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
            return Err(error_body(provider, http, body));
        }
        match serde_json::from_slice::<Response>(body) {
            Ok(response) => complete(provider, response),
            Err(e) => match serde_json::from_slice::<ErrorEnvelope>(body) {
                Ok(envelope) => Err(to_error(provider, http, failure(&envelope.error))),
                Err(_) => Err(malformed(provider, format!("not a Messages response: {e}"))),
            },
        }
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

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<System>,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    stream: bool,
}

#[derive(Serialize)]
#[serde(untagged)]
enum System {
    Text(String),
    Blocks([SystemBlock; 1]),
}

#[derive(Serialize)]
struct SystemBlock {
    #[serde(rename = "type")]
    kind: &'static str,
    text: String,
    cache_control: CacheControl,
}

#[derive(Serialize)]
struct CacheControl {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

fn body(request: &ProviderRequest) -> Body<'_> {
    let leading = request
        .messages
        .iter()
        .take_while(|m| m.role == Role::System)
        .count();
    let (system, rest) = request
        .messages
        .split_at_checked(leading)
        .unwrap_or((&[], &[]));
    let system_text = system
        .iter()
        .map(|m| m.content.as_str())
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    let system = match (system_text.is_empty(), request.cache_system_prompt) {
        (true, _) => None,
        (false, true) => Some(System::Blocks([SystemBlock {
            kind: "text",
            text: system_text,
            cache_control: CacheControl { kind: "ephemeral" },
        }])),
        (false, false) => Some(System::Text(system_text)),
    };
    let messages = rest
        .iter()
        .map(|m| Message {
            role: if m.role == Role::Assistant {
                "assistant"
            } else {
                "user"
            },
            content: &m.content,
        })
        .collect();
    Body {
        model: &request.model,
        max_tokens: request.max_tokens,
        system,
        messages,
        temperature: request.temperature,
        top_p: request.top_p,
        stop_sequences: &request.stop,
        stream: request.stream,
    }
}

#[derive(Deserialize)]
struct Response {
    content: Vec<Block>,
    #[serde(default, deserialize_with = "nullable")]
    model: String,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Default, Deserialize)]
struct Block {
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    kind: String,
    #[serde(default, deserialize_with = "nullable")]
    text: String,
}

/// Token counts as Anthropic reports them; absent ones are `None` so a `message_delta` only
/// overrides what it carries.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
struct RawUsage {
    #[serde(default, deserialize_with = "opt_count")]
    input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "opt_count")]
    output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "opt_count")]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "opt_count")]
    cache_read_input_tokens: Option<u64>,
}

impl RawUsage {
    fn merge(&mut self, newer: RawUsage) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = newer
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    fn usage(self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        Usage {
            input_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(read)
                .saturating_add(self.cache_creation_input_tokens.unwrap_or(0)),
            output_tokens: self.output_tokens.unwrap_or(0),
            cached_input_tokens: read,
            ..Usage::default()
        }
    }
}

fn refused(provider: &str, stop_reason: Option<&str>) -> Result<(), ModelError> {
    if stop_reason == Some("refusal") {
        return Err(ModelError::ContentFiltered {
            provider: provider.to_owned(),
            message: "the model refused to answer (stop_reason: refusal)".to_owned(),
        });
    }
    Ok(())
}

fn complete(provider: &str, response: Response) -> Result<Completion, ModelError> {
    refused(provider, response.stop_reason.as_deref())?;
    let mut text = String::new();
    for block in response.content.iter().filter(|b| b.kind == "text") {
        append(provider, &mut text, &block.text)?;
    }
    Ok(Completion {
        text,
        model: response.model,
        usage: response.usage.unwrap_or_default().usage(),
        finish_reason: response.stop_reason,
    })
}

/// The stream events that carry something we read.
const KNOWN_EVENTS: [&str; 6] = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "message_delta",
    "message_stop",
    "error",
];

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    message: Option<StartMessage>,
    #[serde(default)]
    content_block: Option<Block>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default, deserialize_with = "nullable")]
    model: String,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    kind: String,
    #[serde(default, deserialize_with = "nullable")]
    text: String,
    #[serde(default)]
    stop_reason: Option<String>,
}

/// One streamed answer being decoded.
#[derive(Default)]
struct Stream {
    provider: String,
    text: String,
    model: String,
    usage: RawUsage,
    stop_reason: Option<String>,
    done: bool,
}

impl Stream {
    fn push(&mut self, piece: String, out: &mut Vec<StreamEvent>) -> Result<(), ModelError> {
        if !piece.is_empty() {
            append(&self.provider, &mut self.text, &piece)?;
            out.push(StreamEvent::Delta(piece));
        }
        Ok(())
    }
}

impl Handler<SseEvent> for Stream {
    fn item(&mut self, sse: SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), ModelError> {
        if self.done || sse.data.trim().is_empty() {
            return Ok(());
        }
        let bad =
            |e: serde_json::Error| malformed(&self.provider, format!("bad stream event: {e}"));
        let value: Value = serde_json::from_str(&sse.data).map_err(bad)?;
        let kind = match value.get("type").and_then(Value::as_str) {
            Some(kind) => kind.to_owned(),
            None => sse.event.unwrap_or_default(),
        };
        if !KNOWN_EVENTS.contains(&kind.as_str()) {
            return Ok(()); // ping, content_block_stop, and event types added later
        }
        let event = Event::deserialize(&value).map_err(bad)?;
        match kind.as_str() {
            "message_start" => {
                if let Some(message) = event.message {
                    self.model = message.model;
                    self.usage.merge(message.usage.unwrap_or_default());
                }
            }
            "content_block_start" => {
                if let Some(block) = event.content_block
                    && block.kind == "text"
                {
                    self.push(block.text, out)?;
                }
            }
            "content_block_delta" => {
                if let Some(delta) = event.delta
                    && delta.kind == "text_delta"
                {
                    self.push(delta.text, out)?;
                }
            }
            "message_delta" => {
                if let Some(reason) = event.delta.and_then(|d| d.stop_reason) {
                    refused(&self.provider, Some(&reason))?;
                    self.stop_reason = Some(reason);
                }
                self.usage.merge(event.usage.unwrap_or_default());
            }
            "message_stop" => self.done = true,
            "error" => {
                let error = event.error.unwrap_or_default();
                return Err(to_error(&self.provider, None, failure(&error)));
            }
            _ => {}
        }
        Ok(())
    }

    fn end(self) -> Result<Completion, ModelError> {
        if !self.done {
            return Err(transport(
                &self.provider,
                "stream ended before message_stop",
            ));
        }
        Ok(Completion {
            text: self.text,
            model: self.model,
            usage: self.usage.usage(),
            finish_reason: self.stop_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use http::HeaderValue;
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::common::testing::{every_split, run};
    use super::*;
    use crate::gateway::ChatMessage;

    fn request(stream: bool, cache: bool) -> ProviderRequest {
        ProviderRequest {
            model: "claude-3-7-sonnet-20250219".into(),
            messages: vec![
                ChatMessage::new(Role::System, "You are terse.".into()),
                ChatMessage::new(Role::User, "Hi".into()),
                ChatMessage::new(Role::Assistant, "Hello.".into()),
                ChatMessage::new(Role::User, "Name?".into()),
            ],
            max_tokens: 1024,
            temperature: Some(0.7),
            top_p: Some(0.9),
            stop: vec!["\n\nHuman:".into()],
            stream,
            cache_system_prompt: cache,
        }
    }

    fn endpoint() -> Endpoint {
        Endpoint {
            base_url: "https://api.anthropic.com".into(),
            api_key: Some("sk-ant-test-key".into()),
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
    fn builds_a_messages_request() {
        let call = Anthropic.build(&endpoint(), &request(false, false));
        assert_eq!(call.url, "https://api.anthropic.com/v1/messages");
        assert_eq!(header(&call, "x-api-key"), Some("sk-ant-test-key"));
        assert_eq!(header(&call, "anthropic-version"), Some("2023-06-01"));
        assert_eq!(header(&call, "content-type"), Some("application/json"));
        assert_eq!(header(&call, "authorization"), None);
        assert_eq!(
            json_body(&call),
            json!({
                "model": "claude-3-7-sonnet-20250219",
                "max_tokens": 1024,
                "system": "You are terse.",
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": "Name?"},
                ],
                "temperature": 0.7,
                "top_p": 0.9,
                "stop_sequences": ["\n\nHuman:"],
                "stream": false,
            })
        );
    }

    #[test]
    fn caches_the_system_prompt_as_a_block() {
        let call = Anthropic.build(&endpoint(), &request(true, true));
        let body = json_body(&call);
        assert_eq!(
            body["system"],
            json!([{
                "type": "text",
                "text": "You are terse.",
                "cache_control": {"type": "ephemeral"},
            }])
        );
        assert_eq!(body["stream"], json!(true));
    }

    #[test]
    fn optional_fields_and_odd_system_messages() {
        let mut r = request(false, true);
        r.temperature = None;
        r.top_p = None;
        r.stop.clear();
        r.messages
            .push(ChatMessage::new(Role::System, "late".into()));
        r.messages
            .insert(1, ChatMessage::new(Role::System, "Second.".into()));
        let e = Endpoint {
            base_url: "http://proxy.local/v1/".into(),
            api_key: None,
        };
        let call = Anthropic.build(&e, &r);
        assert_eq!(call.url, "http://proxy.local/v1/messages");
        assert_eq!(header(&call, "x-api-key"), None);
        let body = json_body(&call);
        assert_eq!(
            body["system"][0]["text"],
            json!("You are terse.\n\nSecond.")
        );
        let obj = body.as_object().unwrap();
        for absent in ["temperature", "top_p", "stop_sequences"] {
            assert!(!obj.contains_key(absent), "{absent}");
        }
        assert_eq!(
            body["messages"][3],
            json!({"role": "user", "content": "late"})
        );
        // No system prompt: no system field even when caching is asked for.
        r.messages.retain(|m| m.role != Role::System);
        let body = json_body(&Anthropic.build(&e, &r));
        assert!(!body.as_object().unwrap().contains_key("system"));
    }

    const RESPONSE: &str = r#"{
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-7-sonnet-20250219",
        "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "EqQBCgIYAhIM"},
            {"type": "text", "text": "Hi! My name is "},
            {"type": "text", "text": "Claude.", "citations": null}
        ],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {
            "input_tokens": 2095,
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 2051,
            "output_tokens": 503,
            "service_tier": "standard"
        }
    }"#;

    fn parse(status: u16, headers: &HeaderMap, body: &str) -> Result<Completion, ModelError> {
        Anthropic.parse("anthropic", status, headers, body.as_bytes())
    }

    #[test]
    fn parses_a_message() {
        let c = parse(200, &HeaderMap::new(), RESPONSE).unwrap();
        assert_eq!(c.text, "Hi! My name is Claude.");
        assert_eq!(c.model, "claude-3-7-sonnet-20250219");
        assert_eq!(c.finish_reason.as_deref(), Some("end_turn"));
        assert_eq!(c.usage.input_tokens, 2095 + 2051 + 100);
        assert_eq!(c.usage.cached_input_tokens, 2051);
        assert_eq!(c.usage.output_tokens, 503);
        assert_eq!(c.usage.cost_usd, crate::types::Usd::default());
    }

    #[test]
    fn malformed_and_refused_answers() {
        for body in ["", "not json", "{}", "[]", r#"{"content": null}"#, "<html>"] {
            assert!(
                matches!(
                    parse(200, &HeaderMap::new(), body),
                    Err(ModelError::Malformed { .. })
                ),
                "{body}"
            );
        }
        let refusal = r#"{"content": [{"type":"text","text":"I"}], "stop_reason": "refusal"}"#;
        assert!(matches!(
            parse(200, &HeaderMap::new(), refusal),
            Err(ModelError::ContentFiltered { .. })
        ));
        // No usage at all: zero counts.
        let bare = parse(200, &HeaderMap::new(), r#"{"content": []}"#).unwrap();
        assert_eq!(bare.usage, Usage::default());
    }

    fn error(kind: &str, message: &str) -> String {
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"})
            .to_string()
    }

    #[test]
    fn classifies_errors() {
        let none = HeaderMap::new();
        let mut secs = HeaderMap::new();
        secs.insert("retry-after", HeaderValue::from_static("17"));
        let e = parse(
            429,
            &secs,
            &error(
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            ),
        )
        .unwrap_err();
        assert!(
            matches!(&e, ModelError::RateLimited { retry_after: Some(d), message, .. }
                if *d == Duration::from_secs(17) && message.contains("rate limit")),
            "{e:?}"
        );
        let mut date = HeaderMap::new();
        let when = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        date.insert("retry-after", HeaderValue::from_str(&when).unwrap());
        let e = parse(429, &date, &error("rate_limit_error", "slow down")).unwrap_err();
        assert!(
            matches!(e, ModelError::RateLimited { retry_after: Some(d), .. }
                if d > Duration::from_secs(100) && d <= Duration::from_secs(120)),
        );
        assert!(matches!(
            parse(529, &none, &error("overloaded_error", "Overloaded")).unwrap_err(),
            ModelError::Overloaded { .. }
        ));
        assert!(matches!(
            parse(529, &none, "").unwrap_err(),
            ModelError::Overloaded { .. }
        ));
        assert!(matches!(
            parse(503, &none, "<html>Service Unavailable</html>").unwrap_err(),
            ModelError::Overloaded { .. }
        ));
        assert!(matches!(
            parse(
                401,
                &none,
                &error("authentication_error", "invalid x-api-key")
            )
            .unwrap_err(),
            ModelError::Auth { .. }
        ));
        assert!(matches!(
            parse(403, &none, &error("permission_error", "no access")).unwrap_err(),
            ModelError::Auth { .. }
        ));
        let e = parse(
            400,
            &none,
            &error(
                "invalid_request_error",
                "prompt is too long: 208310 tokens > 200000 maximum",
            ),
        )
        .unwrap_err();
        assert!(
            matches!(&e, ModelError::ContextTooLong { message, .. } if message.contains("208310")),
            "{e:?}"
        );
        assert!(matches!(
            parse(
                400,
                &none,
                &error("invalid_request_error", "max_tokens: Field required")
            )
            .unwrap_err(),
            ModelError::BadRequest { .. }
        ));
        assert!(matches!(
            parse(404, &none, &error("not_found_error", "model: claude-9")).unwrap_err(),
            ModelError::BadRequest { .. }
        ));
        assert!(matches!(
            parse(
                413,
                &none,
                &error("request_too_large", "Request exceeds the maximum size")
            )
            .unwrap_err(),
            ModelError::ContextTooLong { .. }
        ));
        assert!(matches!(
            parse(500, &none, &error("api_error", "Internal server error")).unwrap_err(),
            ModelError::Server { status: 500, .. }
        ));
        // An error envelope in a 2xx body still classifies.
        assert!(matches!(
            parse(200, &none, &error("overloaded_error", "Overloaded")).unwrap_err(),
            ModelError::Overloaded { .. }
        ));
        let long = "x".repeat(5000);
        let ModelError::BadRequest { message, .. } =
            parse(400, &none, &error("invalid_request_error", &long)).unwrap_err()
        else {
            panic!()
        };
        assert!(message.chars().count() <= 301);
    }

    const STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-3-7-sonnet-20250219\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":1800,\"output_tokens\":1}}}\n\
\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\
\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Hmm.\"}}\n\
\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\
\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\
\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\
\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo\"}}\n\
\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\" wörld 👋\"}}\n\
\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":1}\n\
\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\
\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\
\n";

    fn decoder() -> Box<dyn StreamDecoder> {
        Anthropic.decoder("anthropic")
    }

    #[test]
    fn decodes_a_stream_split_anywhere() {
        let c = every_split(decoder, STREAM.as_bytes()).unwrap();
        assert_eq!(c.text, "Héllo wörld 👋");
        assert_eq!(c.model, "claude-3-7-sonnet-20250219");
        assert_eq!(c.finish_reason.as_deref(), Some("end_turn"));
        assert_eq!(c.usage.input_tokens, 1825);
        assert_eq!(c.usage.cached_input_tokens, 1800);
        assert_eq!(c.usage.output_tokens, 15);
        // The same stream with CRLF line ends.
        let crlf = STREAM.replace('\n', "\r\n");
        assert_eq!(every_split(decoder, crlf.as_bytes()).unwrap(), c);
    }

    #[test]
    fn a_cut_stream_is_a_transport_error() {
        let cut = STREAM.find("event: message_stop").unwrap();
        for end in [0, 10, cut, STREAM.len() - 3] {
            let (_, r) = run(decoder(), &[&STREAM.as_bytes()[..end]]);
            assert!(
                matches!(&r, Err(ModelError::Transport { message, .. })
                    if message.contains("message_stop") || message.contains("cut")),
                "cut at {end}: {r:?}"
            );
        }
        // A last event missing only its blank line is still whole.
        let (_, r) = run(decoder(), &[STREAM.trim_end().as_bytes()]);
        assert!(r.is_ok());
    }

    #[test]
    fn error_events_classify() {
        let head = STREAM.find("event: content_block_delta").unwrap();
        for (kind, check) in [
            (
                "overloaded_error",
                (|e: &ModelError| matches!(e, ModelError::Overloaded { .. }))
                    as fn(&ModelError) -> bool,
            ),
            ("rate_limit_error", |e| {
                matches!(
                    e,
                    ModelError::RateLimited {
                        retry_after: None,
                        ..
                    }
                )
            }),
            ("api_error", |e| {
                matches!(e, ModelError::Server { status: 500, .. })
            }),
            ("invalid_request_error", |e| {
                matches!(e, ModelError::BadRequest { .. })
            }),
        ] {
            let body = format!(
                "{}event: error\ndata: {}\n\n",
                &STREAM[..head],
                json!({"type": "error", "error": {"type": kind, "message": "Overloaded"}})
            );
            let (events, r) = run(decoder(), &[body.as_bytes()]);
            assert!(events.is_empty());
            assert!(check(&r.clone().unwrap_err()), "{kind}: {r:?}");
        }
        // Unknown event types are skipped whatever their shape.
        let future = format!(
            "{}event: shiny_new\ndata: {{\"type\":\"shiny_new\",\"message\":42}}\n\n{}",
            &STREAM[..head],
            &STREAM[head..]
        );
        assert_eq!(
            run(decoder(), &[future.as_bytes()]).1,
            run(decoder(), &[STREAM.as_bytes()]).1
        );
        // A refusal stop reason is a content filter verdict.
        let refusal = STREAM.replace("\"end_turn\"", "\"refusal\"");
        let (_, r) = run(decoder(), &[refusal.as_bytes()]);
        assert!(matches!(r, Err(ModelError::ContentFiltered { .. })));
        // Garbage data is malformed, and the decoder stays failed.
        let mut d = decoder();
        let mut out = Vec::new();
        assert!(matches!(
            d.feed(b"data: {nope\n\n", &mut out),
            Err(ModelError::Malformed { .. })
        ));
        assert!(d.feed(STREAM.as_bytes(), &mut out).is_err());
        assert!(d.finish().is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(status in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Anthropic.parse("anthropic", status, &HeaderMap::new(), &body);
        }

        #[test]
        fn parse_never_panics_on_json_like_bodies(status in prop_oneof![Just(200u16), 400u16..600], body in "[{}\\[\\]\":,a-z0-9 _]{0,200}") {
            let _ = Anthropic.parse("anthropic", status, &HeaderMap::new(), body.as_bytes());
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
