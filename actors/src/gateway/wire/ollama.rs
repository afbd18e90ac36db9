//! Ollama's native chat API: `POST {base}/api/chat`, whole or streamed as NDJSON objects
//! (message deltas, then a last object with `done: true` and the token counts). `stream` is
//! always sent explicitly because Ollama streams by default. Sampling settings go in
//! `options` (`num_predict`, `temperature`, `top_p`, `stop`); system messages stay messages.
//!
//! Errors are `{"error": "..."}`, with a 4xx/5xx status or as a line inside a stream. Ollama
//! reports no cached-token count, and omits `prompt_eval_count` when the whole prompt came from
//! its cache: those counts are 0. A key, if configured (Ollama behind a proxy, Ollama's cloud),
//! is sent as `Authorization: Bearer`.

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{
    self, Class, Failure, Framed, Handler, append, count, join_url, lenient_text, malformed,
    nullable, raw_message, to_error, transport,
};
use super::ndjson::NdjsonSplitter;
use super::{
    Completion, Endpoint, HttpCall, ProviderRequest, StreamDecoder, StreamEvent, WireFormat,
};
use crate::gateway::{ModelError, Role};
use crate::types::Usage;

/// Ollama's `/api/chat`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ollama;

impl WireFormat for Ollama {
    fn kind(&self) -> &'static str {
        "ollama"
    }

    fn default_base_url(&self) -> &'static str {
        "http://127.0.0.1:11434"
    }

    fn build(&self, endpoint: &Endpoint, request: &ProviderRequest) -> HttpCall {
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        if let Some(key) = common::key(&endpoint.api_key) {
            headers.push(("authorization".to_owned(), format!("Bearer {key}")));
        }
        let base = endpoint.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/api").unwrap_or(base);
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
            stream: request.stream,
            options: Options {
                num_predict: request.max_tokens,
                temperature: request.temperature,
                top_p: request.top_p,
                stop: &request.stop,
            },
        };
        HttpCall {
            url: join_url(base, "", "api/chat"),
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
            let failure = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| failure_of(&v))
                .unwrap_or_else(|| Failure {
                    message: raw_message(body),
                    ..Failure::default()
                });
            return Err(to_error(provider, http, failure));
        }
        let value: Value = common::from_json(provider, body)?;
        if let Some(failure) = failure_of(&value) {
            return Err(to_error(provider, http, failure));
        }
        let reply: Reply = serde_json::from_value(value)
            .map_err(|e| malformed(provider, format!("not a chat response: {e}")))?;
        let Some(message) = reply.message.as_ref() else {
            return Err(malformed(provider, "a chat response without a message"));
        };
        let mut text = String::new();
        append(provider, &mut text, &message.content)?;
        Ok(Completion {
            text,
            model: reply.model,
            usage: usage(reply.prompt_eval_count, reply.eval_count),
            finish_reason: reply.done_reason,
        })
    }

    fn decoder(&self, provider: &str) -> Box<dyn StreamDecoder> {
        Box::new(Framed::new(
            provider,
            NdjsonSplitter::new(),
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
    messages: Vec<Message<'a>>,
    stream: bool,
    options: Options<'a>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: Role,
    content: &'a str,
}

#[derive(Serialize)]
struct Options<'a> {
    num_predict: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default, deserialize_with = "nullable")]
    model: String,
    #[serde(default)]
    message: Option<ReplyMessage>,
    #[serde(default, deserialize_with = "nullable")]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default, deserialize_with = "count")]
    prompt_eval_count: u64,
    #[serde(default, deserialize_with = "count")]
    eval_count: u64,
}

#[derive(Deserialize)]
struct ReplyMessage {
    #[serde(default, deserialize_with = "nullable")]
    content: String,
}

fn usage(prompt: u64, completion: u64) -> Usage {
    Usage {
        input_tokens: prompt,
        output_tokens: completion,
        ..Usage::default()
    }
}

/// The failure an `{"error": ...}` object describes, if the value is one.
fn failure_of(value: &Value) -> Option<Failure> {
    let error = value.get("error").filter(|e| !e.is_null())?;
    let message = match error {
        Value::Object(fields) => fields.get("message").map(lenient_text).unwrap_or_default(),
        other => lenient_text(other),
    };
    let lower = message.to_ascii_lowercase();
    let specific =
        (lower.contains("model") && lower.contains("not found")).then_some(Class::BadRequest);
    Some(Failure {
        specific,
        message,
        ..Failure::default()
    })
}

/// One streamed answer being decoded.
#[derive(Default)]
struct Stream {
    provider: String,
    text: String,
    model: String,
    usage: Usage,
    done_reason: Option<String>,
    done: bool,
}

impl Handler<String> for Stream {
    fn item(&mut self, line: String, out: &mut Vec<StreamEvent>) -> Result<(), ModelError> {
        if self.done {
            return Ok(());
        }
        let value: Value = serde_json::from_str(&line)
            .map_err(|e| malformed(&self.provider, format!("bad stream line: {e}")))?;
        if let Some(failure) = failure_of(&value) {
            return Err(to_error(&self.provider, None, failure));
        }
        let reply: Reply = serde_json::from_value(value)
            .map_err(|e| malformed(&self.provider, format!("bad stream line: {e}")))?;
        if !reply.model.is_empty() {
            self.model = reply.model;
        }
        if let Some(message) = reply.message
            && !message.content.is_empty()
        {
            append(&self.provider, &mut self.text, &message.content)?;
            out.push(StreamEvent::Delta(message.content));
        }
        if reply.done {
            self.done = true;
            self.done_reason = reply.done_reason;
            self.usage = usage(reply.prompt_eval_count, reply.eval_count);
        }
        Ok(())
    }

    fn end(self) -> Result<Completion, ModelError> {
        if !self.done {
            return Err(transport(&self.provider, "stream ended before done: true"));
        }
        Ok(Completion {
            text: self.text,
            model: self.model,
            usage: self.usage,
            finish_reason: self.done_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::common::testing::{every_split, run};
    use super::*;
    use crate::gateway::ChatMessage;

    fn request(stream: bool) -> ProviderRequest {
        ProviderRequest {
            model: "llama3.2".into(),
            messages: vec![
                ChatMessage::new(Role::System, "You are terse.".into()),
                ChatMessage::new(Role::User, "Hi".into()),
                ChatMessage::new(Role::Assistant, "Hello.".into()),
                ChatMessage::new(Role::User, "Name?".into()),
            ],
            max_tokens: 128,
            temperature: Some(0.25),
            top_p: Some(0.5),
            stop: vec!["<|eot|>".into()],
            stream,
            cache_system_prompt: true,
        }
    }

    fn endpoint(base: &str) -> Endpoint {
        Endpoint {
            base_url: base.into(),
            api_key: None,
        }
    }

    fn json_body(call: &HttpCall) -> Value {
        serde_json::from_slice(&call.body).unwrap()
    }

    #[test]
    fn builds_a_chat_request() {
        let call = Ollama.build(&endpoint("http://127.0.0.1:11434"), &request(false));
        assert_eq!(call.url, "http://127.0.0.1:11434/api/chat");
        assert_eq!(
            call.headers,
            vec![("content-type".to_owned(), "application/json".to_owned())]
        );
        assert_eq!(
            json_body(&call),
            json!({
                "model": "llama3.2",
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": "Name?"},
                ],
                "stream": false,
                "options": {"num_predict": 128, "temperature": 0.25, "top_p": 0.5, "stop": ["<|eot|>"]},
            })
        );
    }

    #[test]
    fn stream_flag_options_key_and_base() {
        let mut r = request(true);
        r.temperature = None;
        r.top_p = None;
        r.stop.clear();
        let e = Endpoint {
            base_url: "https://ollama.example/api/".into(),
            api_key: Some("secret".into()),
        };
        let call = Ollama.build(&e, &r);
        assert_eq!(call.url, "https://ollama.example/api/chat");
        assert!(
            call.headers
                .contains(&("authorization".to_owned(), "Bearer secret".to_owned()))
        );
        let body = json_body(&call);
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["options"], json!({"num_predict": 128}));
    }

    const RESPONSE: &str = r#"{
        "model": "llama3.2",
        "created_at": "2023-12-12T14:13:43.416799Z",
        "message": {"role": "assistant", "content": "Hello! How are you today? 👋"},
        "done": true,
        "done_reason": "stop",
        "total_duration": 5191566416,
        "load_duration": 2154458,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 383809000,
        "eval_count": 298,
        "eval_duration": 4799921000
    }"#;

    fn parse(status: u16, headers: &HeaderMap, body: &str) -> Result<Completion, ModelError> {
        Ollama.parse("ollama", status, headers, body.as_bytes())
    }

    #[test]
    fn parses_a_chat_response() {
        let c = parse(200, &HeaderMap::new(), RESPONSE).unwrap();
        assert_eq!(c.text, "Hello! How are you today? 👋");
        assert_eq!(c.model, "llama3.2");
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        assert_eq!(c.usage.input_tokens, 26);
        assert_eq!(c.usage.output_tokens, 298);
        assert_eq!(c.usage.cached_input_tokens, 0);
        // A cached prompt: no prompt_eval_count.
        let c = parse(200, &HeaderMap::new(), r#"{"model":"m","message":{"role":"assistant","content":"x"},"done":true,"eval_count":3}"#).unwrap();
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (0, 3));
        for body in [
            "",
            "{",
            "{}",
            r#"{"done":true}"#,
            r#"{"message":"hi"}"#,
            "[]",
        ] {
            assert!(
                matches!(
                    parse(200, &HeaderMap::new(), body),
                    Err(ModelError::Malformed { .. })
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn classifies_errors() {
        let none = HeaderMap::new();
        let e = parse(
            404,
            &none,
            r#"{"error":"model \"llama9\" not found, try pulling it first"}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&e, ModelError::BadRequest { message, .. } if message.contains("llama9")),
            "{e:?}"
        );
        assert!(matches!(
            parse(500, &none, r#"{"error":"model 'x' not found"}"#).unwrap_err(),
            ModelError::BadRequest { .. }
        ));
        assert!(matches!(
            parse(500, &none, r#"{"error":"model requires more system memory (8.0 GiB) than is available (4.0 GiB)"}"#).unwrap_err(),
            ModelError::Server { status: 500, .. }
        ));
        assert!(matches!(
            parse(400, &none, r#"{"error":"invalid options: foo"}"#).unwrap_err(),
            ModelError::BadRequest { .. }
        ));
        assert!(matches!(
            parse(
                503,
                &none,
                r#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#
            )
            .unwrap_err(),
            ModelError::Overloaded { .. }
        ));
        let mut wait = HeaderMap::new();
        wait.insert("retry-after", HeaderValue::from_static("3"));
        assert!(matches!(
            parse(429, &wait, r#"{"error":"too many requests"}"#).unwrap_err(),
            ModelError::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 3
        ));
        assert!(matches!(
            parse(401, &none, r#"{"error":"unauthorized"}"#).unwrap_err(),
            ModelError::Auth { .. }
        ));
        assert!(matches!(
            parse(502, &none, "Bad Gateway").unwrap_err(),
            ModelError::Server { status: 502, .. }
        ));
        assert!(matches!(
            parse(200, &none, r#"{"error":"boom"}"#).unwrap_err(),
            ModelError::Server { status: 500, .. }
        ));
    }

    const STREAM: &str = "{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T08:52:19.385406455-07:00\",\"message\":{\"role\":\"assistant\",\"content\":\"Héllo\",\"images\":null},\"done\":false}\n\
{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T08:52:19.485406455-07:00\",\"message\":{\"role\":\"assistant\",\"content\":\" wörld\"},\"done\":false}\n\
{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T08:52:19.585406455-07:00\",\"message\":{\"role\":\"assistant\",\"content\":\" 👋\"},\"done\":false}\n\
{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T19:22:45.499127Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":4883583458,\"load_duration\":1334875,\"prompt_eval_count\":26,\"prompt_eval_duration\":342546000,\"eval_count\":282,\"eval_duration\":4535599000}\n";

    fn decoder() -> Box<dyn StreamDecoder> {
        Ollama.decoder("ollama")
    }

    #[test]
    fn decodes_a_stream_split_anywhere() {
        let c = every_split(decoder, STREAM.as_bytes()).unwrap();
        assert_eq!(c.text, "Héllo wörld 👋");
        assert_eq!(c.model, "llama3.2");
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        assert_eq!(c.usage.input_tokens, 26);
        assert_eq!(c.usage.output_tokens, 282);
        let crlf = STREAM.replace('\n', "\r\n");
        assert_eq!(every_split(decoder, crlf.as_bytes()).unwrap(), c);
    }

    #[test]
    fn a_cut_stream_is_a_transport_error() {
        let last = STREAM.rfind("{\"model\"").unwrap();
        for end in [0, 15, last, last + 50, STREAM.len() - 3] {
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
    fn error_lines_classify() {
        let last = STREAM.rfind("{\"model\"").unwrap();
        let with = |line: &str| format!("{}{line}\n", &STREAM[..last]);
        let failed =
            with(r#"{"error":"an error was encountered while running the model: unexpected EOF"}"#);
        let (events, r) = run(decoder(), &[failed.as_bytes()]);
        assert_eq!(events.len(), 3);
        assert!(matches!(r, Err(ModelError::Server { status: 500, .. })));
        assert!(matches!(
            run(decoder(), &[b"not json\n"]).1,
            Err(ModelError::Malformed { .. })
        ));
        assert!(matches!(
            run(decoder(), &[b"{\"done\": 3}\n"]).1,
            Err(ModelError::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(status in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Ollama.parse("ollama", status, &HeaderMap::new(), &body);
        }

        #[test]
        fn parse_never_panics_on_json_like_bodies(status in prop_oneof![Just(200u16), 400u16..600], body in "[{}\\[\\]\":,a-z0-9 _]{0,200}") {
            let _ = Ollama.parse("ollama", status, &HeaderMap::new(), body.as_bytes());
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
