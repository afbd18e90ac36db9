//! Google Gemini (Generative Language API): `POST {base}/v1beta/models/{model}:generateContent`,
//! or `:streamGenerateContent?alt=sse` for SSE chunks that are each a whole
//! `GenerateContentResponse`. The key goes in the `x-goog-api-key` header, never the URL.
//!
//! Leading system messages become `systemInstruction`; a later one is sent as a `user` turn;
//! assistant turns are `model`. The stream has no terminal event: it is whole once a chunk
//! carried a `finishReason`. A blocked prompt (`promptFeedback.blockReason`) or a blocked answer
//! (`finishReason` SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII, IMAGE_SAFETY) is
//! [`ModelError::ContentFiltered`]. Usage: `promptTokenCount` (which includes cached tokens),
//! `cachedContentTokenCount`, and output = `candidatesTokenCount + thoughtsTokenCount` (thinking
//! tokens are billed as output). Parts marked `thought: true` are not answer text.

mod error;

use error::{error_of, error_to_model};

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{
    self, Failure, Framed, Handler, append, count, join_url, malformed, nullable, raw_message,
    to_error, transport,
};
use super::sse::{SseEvent, SseParser};
use super::{
    Completion, Endpoint, HttpCall, ProviderRequest, StreamDecoder, StreamEvent, WireFormat,
};
use crate::gateway::{ModelError, Role};
use crate::types::Usage;

/// Google Gemini's `generateContent` API.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gemini;

impl WireFormat for Gemini {
    fn kind(&self) -> &'static str {
        "gemini"
    }

    fn default_base_url(&self) -> &'static str {
        "https://generativelanguage.googleapis.com"
    }

    fn build(&self, endpoint: &Endpoint, request: &ProviderRequest) -> HttpCall {
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if let Some(key) = common::key(&endpoint.api_key) {
            headers.push(("x-goog-api-key".to_owned(), key.to_owned()));
        }
        let method = if request.stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        let path = format!("models/{}:{method}", model_path(&request.model));
        HttpCall {
            url: join_url(&endpoint.base_url, "v1beta", &path),
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
            let value = serde_json::from_slice::<Value>(body).ok();
            return Err(match value.as_ref().and_then(error_of) {
                Some(error) => error_to_model(provider, http, error),
                None => to_error(
                    provider,
                    http,
                    Failure {
                        message: raw_message(body),
                        ..Failure::default()
                    },
                ),
            });
        }
        let value: Value = common::from_json(provider, body)?;
        if let Some(error) = error_of(&value) {
            return Err(error_to_model(provider, http, error));
        }
        let response: Response = serde_json::from_value(value)
            .map_err(|e| malformed(provider, format!("not a GenerateContentResponse: {e}")))?;
        if response.candidates.is_empty() && response.blocked().is_none() {
            return Err(malformed(provider, "a response without candidates"));
        }
        let mut answer = Answer::default();
        answer.take(provider, response, &mut Vec::new())?;
        Ok(answer.completion())
    }

    fn decoder(&self, provider: &str) -> Box<dyn StreamDecoder> {
        Box::new(Framed::new(
            provider,
            SseParser::new(),
            Stream {
                provider: provider.to_owned(),
                answer: Answer::default(),
            },
        ))
    }
}

/// The model id as a URL path segment: without a `models/` prefix, and percent-encoded so no
/// character can change the URL's meaning.
fn model_path(model: &str) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let mut out = String::with_capacity(model.len());
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Instruction>,
    generation_config: Config<'a>,
}

#[derive(Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: [Part<'a>; 1],
}

#[derive(Serialize)]
struct Part<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct Instruction {
    parts: [OwnedPart; 1],
}

#[derive(Serialize)]
struct OwnedPart {
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Config<'a> {
    max_output_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
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
    let system = system
        .iter()
        .map(|m| m.content.as_str())
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    Body {
        contents: rest
            .iter()
            .map(|m| Content {
                role: if m.role == Role::Assistant {
                    "model"
                } else {
                    "user"
                },
                parts: [Part { text: &m.content }],
            })
            .collect(),
        system_instruction: (!system.is_empty()).then_some(Instruction {
            parts: [OwnedPart { text: system }],
        }),
        generation_config: Config {
            max_output_tokens: request.max_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
            stop_sequences: &request.stop,
        },
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default, deserialize_with = "nullable")]
    candidates: Vec<Candidate>,
    #[serde(default)]
    prompt_feedback: Option<Feedback>,
    #[serde(default)]
    usage_metadata: Option<Metadata>,
    #[serde(default, deserialize_with = "nullable")]
    model_version: String,
}

impl Response {
    fn blocked(&self) -> Option<&str> {
        self.prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_deref())
            .filter(|r| !r.is_empty())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<CandidateContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default, deserialize_with = "count")]
    index: u64,
}

#[derive(Default, Deserialize)]
struct CandidateContent {
    #[serde(default, deserialize_with = "nullable")]
    parts: Vec<ResponsePart>,
}

#[derive(Default, Deserialize)]
struct ResponsePart {
    #[serde(default, deserialize_with = "nullable")]
    text: String,
    #[serde(default, deserialize_with = "nullable")]
    thought: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Feedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default, deserialize_with = "count")]
    prompt_token_count: u64,
    #[serde(default, deserialize_with = "count")]
    candidates_token_count: u64,
    #[serde(default, deserialize_with = "count")]
    thoughts_token_count: u64,
    #[serde(default, deserialize_with = "count")]
    cached_content_token_count: u64,
}

fn filtered(provider: &str, what: &str, reason: &str) -> ModelError {
    ModelError::ContentFiltered {
        provider: provider.to_owned(),
        message: common::short(&format!("{what} blocked: {reason}")),
    }
}

fn blocks_answer(finish_reason: &str) -> bool {
    matches!(
        finish_reason,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
    )
}

/// The answer assembled from one response or from every chunk of a stream.
#[derive(Default)]
struct Answer {
    text: String,
    model: String,
    usage: Usage,
    finish_reason: Option<String>,
}

impl Answer {
    fn take(
        &mut self,
        provider: &str,
        response: Response,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), ModelError> {
        if let Some(reason) = response.blocked() {
            return Err(filtered(provider, "prompt", reason));
        }
        if !response.model_version.is_empty() {
            self.model = response.model_version;
        }
        if let Some(m) = response.usage_metadata {
            self.usage = Usage {
                input_tokens: m.prompt_token_count,
                output_tokens: m
                    .candidates_token_count
                    .saturating_add(m.thoughts_token_count),
                cached_input_tokens: m.cached_content_token_count,
                ..Usage::default()
            };
        }
        let Some(candidate) = response.candidates.into_iter().find(|c| c.index == 0) else {
            return Ok(());
        };
        for part in candidate.content.unwrap_or_default().parts {
            if !part.thought && !part.text.is_empty() {
                append(provider, &mut self.text, &part.text)?;
                out.push(StreamEvent::Delta(part.text));
            }
        }
        if let Some(reason) = candidate.finish_reason.filter(|r| !r.is_empty()) {
            if blocks_answer(&reason) {
                return Err(filtered(provider, "answer", &reason));
            }
            self.finish_reason = Some(reason);
        }
        Ok(())
    }

    fn completion(self) -> Completion {
        Completion {
            text: self.text,
            model: self.model,
            usage: self.usage,
            finish_reason: self.finish_reason,
        }
    }
}

/// One streamed answer being decoded.
struct Stream {
    provider: String,
    answer: Answer,
}

impl Handler<SseEvent> for Stream {
    fn item(&mut self, sse: SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), ModelError> {
        let data = sse.data.trim();
        if data.is_empty() {
            return Ok(());
        }
        let value: Value = serde_json::from_str(data)
            .map_err(|e| malformed(&self.provider, format!("bad stream chunk: {e}")))?;
        if let Some(error) = error_of(&value) {
            return Err(error_to_model(&self.provider, None, error));
        }
        let response: Response = serde_json::from_value(value)
            .map_err(|e| malformed(&self.provider, format!("bad stream chunk: {e}")))?;
        self.answer.take(&self.provider, response, out)
    }

    fn end(self) -> Result<Completion, ModelError> {
        if self.answer.finish_reason.is_none() {
            return Err(transport(
                &self.provider,
                "stream ended before a finishReason",
            ));
        }
        Ok(self.answer.completion())
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
            model: "gemini-2.5-flash".into(),
            messages: vec![
                ChatMessage::new(Role::System, "You are terse.".into()),
                ChatMessage::new(Role::User, "Hi".into()),
                ChatMessage::new(Role::Assistant, "Hello.".into()),
                ChatMessage::new(Role::User, "Name?".into()),
            ],
            max_tokens: 512,
            temperature: Some(0.5),
            top_p: Some(0.95),
            stop: vec!["STOP!".into()],
            stream,
            cache_system_prompt: true,
        }
    }

    fn endpoint() -> Endpoint {
        Endpoint {
            base_url: "https://generativelanguage.googleapis.com".into(),
            api_key: Some("AIzaSyTestKey0000000000000000000".into()),
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
    fn builds_a_generate_content_request() {
        let call = Gemini.build(&endpoint(), &request(false));
        assert_eq!(
            call.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            header(&call, "x-goog-api-key"),
            Some("AIzaSyTestKey0000000000000000000")
        );
        assert_eq!(header(&call, "content-type"), Some("application/json"));
        assert!(!call.url.contains("AIza"));
        assert_eq!(
            json_body(&call),
            json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "Hi"}]},
                    {"role": "model", "parts": [{"text": "Hello."}]},
                    {"role": "user", "parts": [{"text": "Name?"}]},
                ],
                "systemInstruction": {"parts": [{"text": "You are terse."}]},
                "generationConfig": {
                    "maxOutputTokens": 512,
                    "temperature": 0.5,
                    "topP": 0.95,
                    "stopSequences": ["STOP!"],
                },
            })
        );
    }

    #[test]
    fn streaming_url_and_optional_fields() {
        let mut r = request(true);
        r.model = "models/gemini-2.0-flash?x=1#y".into();
        r.messages.retain(|m| m.role != Role::System);
        r.temperature = None;
        r.top_p = None;
        r.stop.clear();
        let e = Endpoint {
            base_url: "http://localhost:9000/v1beta/".into(),
            api_key: None,
        };
        let call = Gemini.build(&e, &r);
        assert_eq!(
            call.url,
            "http://localhost:9000/v1beta/models/gemini-2.0-flash%3Fx%3D1%23y:streamGenerateContent?alt=sse"
        );
        assert_eq!(header(&call, "x-goog-api-key"), None);
        let body = json_body(&call);
        assert!(!body.as_object().unwrap().contains_key("systemInstruction"));
        assert_eq!(body["generationConfig"], json!({"maxOutputTokens": 512}));
    }

    const RESPONSE: &str = r#"{
        "candidates": [{
            "content": {
                "parts": [
                    {"text": "Thinking about names.", "thought": true},
                    {"text": "I am "},
                    {"text": "Gemini. 👋"}
                ],
                "role": "model"
            },
            "finishReason": "STOP",
            "avgLogprobs": -0.21,
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"}]
        }],
        "usageMetadata": {
            "promptTokenCount": 1200,
            "candidatesTokenCount": 15,
            "totalTokenCount": 1255,
            "cachedContentTokenCount": 1024,
            "thoughtsTokenCount": 40,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1200}]
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "mIvMaO3zJ8mSmNAPlbzR0Qk"
    }"#;

    fn parse(status: u16, headers: &HeaderMap, body: &str) -> Result<Completion, ModelError> {
        Gemini.parse("gemini", status, headers, body.as_bytes())
    }

    #[test]
    fn parses_a_response() {
        let c = parse(200, &HeaderMap::new(), RESPONSE).unwrap();
        assert_eq!(c.text, "I am Gemini. 👋");
        assert_eq!(c.model, "gemini-2.5-flash");
        assert_eq!(c.finish_reason.as_deref(), Some("STOP"));
        assert_eq!(c.usage.input_tokens, 1200);
        assert_eq!(c.usage.cached_input_tokens, 1024);
        assert_eq!(c.usage.output_tokens, 55);
    }

    #[test]
    fn blocked_and_malformed_answers() {
        let none = HeaderMap::new();
        let prompt = r#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8},"modelVersion":"gemini-2.5-flash"}"#;
        assert!(matches!(
            parse(200, &none, prompt),
            Err(ModelError::ContentFiltered { message, .. }) if message.contains("SAFETY")
        ));
        for reason in ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT"] {
            let body = RESPONSE.replace("\"STOP\"", &format!("\"{reason}\""));
            assert!(
                matches!(
                    parse(200, &none, &body),
                    Err(ModelError::ContentFiltered { .. })
                ),
                "{reason}"
            );
        }
        let max = RESPONSE.replace("\"STOP\"", "\"MAX_TOKENS\"");
        assert_eq!(
            parse(200, &none, &max).unwrap().finish_reason.as_deref(),
            Some("MAX_TOKENS")
        );
        for body in [
            "",
            "{",
            "{}",
            r#"{"candidates":[]}"#,
            r#"{"candidates":7}"#,
            "null",
        ] {
            assert!(
                matches!(parse(200, &none, body), Err(ModelError::Malformed { .. })),
                "{body}"
            );
        }
        // No usage: zero counts.
        let c = parse(
            200,
            &none,
            r#"{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}]}"#,
        )
        .unwrap();
        assert_eq!((c.text.as_str(), c.usage), ("x", Usage::default()));
    }

    fn google_error(code: u16, status: &str, message: &str, details: Value) -> String {
        json!({"error": {"code": code, "message": message, "status": status, "details": details}})
            .to_string()
    }

    #[test]
    fn classifies_errors() {
        let none = HeaderMap::new();
        let quota = google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            json!([
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"}
            ]),
        );
        assert!(matches!(
            parse(429, &none, &quota).unwrap_err(),
            ModelError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(38)
        ));
        let mut wait = HeaderMap::new();
        wait.insert("retry-after", HeaderValue::from_static("5"));
        assert!(matches!(
            parse(429, &wait, &quota).unwrap_err(),
            ModelError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(5)
        ));
        assert!(matches!(
            parse(
                503,
                &none,
                &google_error(
                    503,
                    "UNAVAILABLE",
                    "The model is overloaded. Please try again later.",
                    json!([])
                )
            )
            .unwrap_err(),
            ModelError::Overloaded { .. }
        ));
        let bad_key = google_error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]),
        );
        assert!(matches!(
            parse(400, &none, &bad_key).unwrap_err(),
            ModelError::Auth { .. }
        ));
        let expired = google_error(
            400,
            "INVALID_ARGUMENT",
            "API key expired. Please renew the API key.",
            json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_EXPIRED"}]),
        );
        assert!(matches!(
            parse(400, &none, &expired).unwrap_err(),
            ModelError::Auth { .. }
        ));
        assert!(matches!(
            parse(
                403,
                &none,
                &google_error(
                    403,
                    "PERMISSION_DENIED",
                    "Method doesn't allow unregistered callers.",
                    Value::Null
                )
            )
            .unwrap_err(),
            ModelError::Auth { .. }
        ));
        assert!(matches!(
            parse(
                401,
                &none,
                &google_error(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials.",
                    Value::Null
                )
            )
            .unwrap_err(),
            ModelError::Auth { .. }
        ));
        let long = google_error(
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
            Value::Null,
        );
        assert!(matches!(
            parse(400, &none, &long).unwrap_err(),
            ModelError::ContextTooLong { .. }
        ));
        assert!(matches!(
            parse(
                400,
                &none,
                &google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "* GenerateContentRequest.contents: contents is not specified",
                    Value::Null
                )
            )
            .unwrap_err(),
            ModelError::BadRequest { .. }
        ));
        assert!(matches!(
            parse(
                404,
                &none,
                &google_error(
                    404,
                    "NOT_FOUND",
                    "models/gemini-9 is not found for API version v1beta",
                    Value::Null
                )
            )
            .unwrap_err(),
            ModelError::BadRequest { .. }
        ));
        assert!(matches!(
            parse(
                500,
                &none,
                &google_error(
                    500,
                    "INTERNAL",
                    "An internal error has occurred.",
                    Value::Null
                )
            )
            .unwrap_err(),
            ModelError::Server { status: 500, .. }
        ));
        // The array form, and a non-JSON body.
        let array = format!(
            "[{}]",
            google_error(429, "RESOURCE_EXHAUSTED", "quota", Value::Null)
        );
        assert!(matches!(
            parse(429, &none, &array).unwrap_err(),
            ModelError::RateLimited { .. }
        ));
        assert!(matches!(
            parse(502, &none, "<html>").unwrap_err(),
            ModelError::Server { status: 502, .. }
        ));
        // An error object with a 2xx status uses the body's code and status.
        assert!(matches!(
            parse(
                200,
                &none,
                &google_error(503, "UNAVAILABLE", "overloaded", Value::Null)
            )
            .unwrap_err(),
            ModelError::Overloaded { .. }
        ));
    }

    const STREAM: &str = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Héllo\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 1100,\"totalTokenCount\": 1100,\"cachedContentTokenCount\": 1000,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 1100}]},\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"a1\"}\r\n\
\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" wörld\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 1100,\"totalTokenCount\": 1100},\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"a1\"}\r\n\
\r\n\
data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" 👋\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 1100,\"candidatesTokenCount\": 6,\"totalTokenCount\": 1106,\"cachedContentTokenCount\": 1000},\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"a1\"}\r\n\
\r\n";

    fn decoder() -> Box<dyn StreamDecoder> {
        Gemini.decoder("gemini")
    }

    #[test]
    fn decodes_a_stream_split_anywhere() {
        let c = every_split(decoder, STREAM.as_bytes()).unwrap();
        assert_eq!(c.text, "Héllo wörld 👋");
        assert_eq!(c.model, "gemini-2.0-flash");
        assert_eq!(c.finish_reason.as_deref(), Some("STOP"));
        assert_eq!(c.usage.input_tokens, 1100);
        assert_eq!(c.usage.cached_input_tokens, 1000);
        assert_eq!(c.usage.output_tokens, 6);
        let lf = STREAM.replace("\r\n", "\n");
        assert_eq!(every_split(decoder, lf.as_bytes()).unwrap(), c);
    }

    #[test]
    fn a_stream_without_a_finish_reason_is_cut() {
        let last = STREAM.rfind("data:").unwrap();
        for end in [0, 20, last, last + 40, STREAM.len() - 10] {
            let (_, r) = run(decoder(), &[&STREAM.as_bytes()[..end]]);
            assert!(
                matches!(r, Err(ModelError::Transport { .. })),
                "cut at {end}: {r:?}"
            );
        }
        let (_, r) = run(decoder(), &[STREAM.trim_end().as_bytes()]);
        assert!(r.is_ok());
    }

    #[test]
    fn error_chunks_classify() {
        let last = STREAM.rfind("data:").unwrap();
        let with = |chunk: &str| format!("{}data: {chunk}\r\n\r\n", &STREAM[..last]);
        let overloaded = with(&google_error(
            503,
            "UNAVAILABLE",
            "The model is overloaded.",
            Value::Null,
        ));
        let (events, r) = run(decoder(), &[overloaded.as_bytes()]);
        assert_eq!(events.len(), 2);
        assert!(matches!(r, Err(ModelError::Overloaded { .. })));
        let limited = with(&google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "quota",
            Value::Null,
        ));
        assert!(matches!(
            run(decoder(), &[limited.as_bytes()]).1,
            Err(ModelError::RateLimited { .. })
        ));
        let safety = STREAM.replace("\"STOP\"", "\"SAFETY\"");
        assert!(matches!(
            run(decoder(), &[safety.as_bytes()]).1,
            Err(ModelError::ContentFiltered { .. })
        ));
        let blocked =
            "data: {\"promptFeedback\": {\"blockReason\": \"PROHIBITED_CONTENT\"}}\r\n\r\n";
        assert!(matches!(
            run(decoder(), &[blocked.as_bytes()]).1,
            Err(ModelError::ContentFiltered { .. })
        ));
        assert!(matches!(
            run(decoder(), &[b"data: [1,\n\n"]).1,
            Err(ModelError::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(status in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Gemini.parse("gemini", status, &HeaderMap::new(), &body);
        }

        #[test]
        fn parse_never_panics_on_json_like_bodies(status in prop_oneof![Just(200u16), 400u16..600], body in "[{}\\[\\]\":,a-zA-Z0-9 _]{0,200}") {
            let _ = Gemini.parse("gemini", status, &HeaderMap::new(), body.as_bytes());
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

        #[test]
        fn retry_delays_never_panic(text in "\\PC{0,12}") {
            let _ = error::parse_delay(&text);
        }
    }
}
