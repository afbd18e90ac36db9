//! Ollama: `POST /api/chat`, `GET /api/tags` and `GET /` ("Ollama is running").
//!
//! As in real Ollama, `stream` defaults to true: the answer is NDJSON
//! (`application/x-ndjson`), one object per piece with `"done": false`, then a
//! final object with `"done": true`, `done_reason` and the timing/count
//! fields. `options.num_predict` is the token limit (`done_reason: "length"`).
//! A request without messages just "loads the model" (`done_reason: "load"`).
//! No key is needed; an `Authorization: Bearer` one is recorded.

use std::borrow::Cow;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::faults::Format;
use super::text::{Answer, Stop, rfc3339_now, tokens};
use super::wire::{self, Refusal, Rendered, Wire};
use super::{FakeProvider, Inner, errors};

/// `POST /api/chat`.
pub(super) async fn chat(State(provider): State<FakeProvider>, request: Request) -> Response {
    wire::handle::<Ollama>(provider, request).await
}

pub(super) struct Ollama;

#[derive(Deserialize)]
pub(super) struct ChatRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    options: Option<Options>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: String,
}

#[derive(Deserialize)]
struct Options {
    #[serde(default)]
    num_predict: Option<i64>,
}

#[derive(Serialize)]
struct Line<'a> {
    model: &'a str,
    created_at: &'a str,
    message: MessageOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'static str>,
    done: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    metrics: Option<Metrics>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct Metrics {
    total_duration: u64,
    load_duration: u64,
    prompt_eval_count: u64,
    prompt_eval_duration: u64,
    eval_count: u64,
    eval_duration: u64,
}

/// What Ollama "answers" under a `content_filter` fault (it has no filter).
const REFUSAL: &str = "I can't help with that.";

impl Wire for Ollama {
    const FORMAT: Format = Format::Ollama;
    const JSON_TYPE: &'static str = "application/json; charset=utf-8";
    const REQUEST_ID_HEADER: Option<&'static str> = None;
    const GARBAGE_FRAME: &'static [u8] =
        b"{\"model\":\"garbage\",\"message\":{\"role\":\"assistant\",\"content\":\"<<malformed\n";
    type Req = ChatRequest;

    fn parse(_parts: &Parts, body: &[u8]) -> Result<ChatRequest, Refusal> {
        let req: ChatRequest =
            serde_json::from_slice(body).map_err(|e| Refusal::bad_request(e.to_string()))?;
        if req.model.is_empty() {
            return Err(Refusal::bad_request("model is required"));
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
        req.stream.unwrap_or(true)
    }

    fn question(req: &ChatRequest) -> Cow<'_, str> {
        req.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| Cow::Borrowed(m.content.as_str()))
            .unwrap_or_default()
    }

    fn prompt_chars(req: &ChatRequest) -> usize {
        req.messages.iter().map(|m| m.content.chars().count()).sum()
    }

    fn max_tokens(req: &ChatRequest) -> Option<u64> {
        let n = req.options.as_ref()?.num_predict?;
        u64::try_from(n).ok().filter(|n| *n > 0)
    }

    fn error_body(
        status: StatusCode,
        message: Option<&str>,
        _retry_after: Option<f64>,
        _request_id: &str,
    ) -> serde_json::Value {
        errors::ollama(status, message)
    }

    fn render(_inner: &Inner, req: &ChatRequest, answer: &Answer) -> Rendered {
        let created_at = rfc3339_now();
        let stream = Self::streaming(req);
        let line = |content, done_reason, metrics| Line {
            model: &req.model,
            created_at: &created_at,
            message: MessageOut {
                role: "assistant",
                content,
            },
            done_reason,
            done: done_reason.is_some(),
            metrics,
        };
        if req.messages.is_empty() {
            return Rendered {
                content_type: if stream {
                    "application/x-ndjson"
                } else {
                    Self::JSON_TYPE
                },
                frames: vec![wire::json(
                    &line("", Some("load"), None),
                    if stream { b"\n" } else { b"" },
                )],
                stream,
            };
        }
        let (text, eval_count) = match answer.stop {
            Stop::Filtered => (REFUSAL, tokens(REFUSAL.len())),
            _ => (answer.text.as_str(), answer.completion_tokens),
        };
        let done_reason = if answer.stop == Stop::Length {
            "length"
        } else {
            "stop"
        };
        let load_duration = 1_250_000;
        let prompt_eval_duration = answer.prompt_tokens * 250_000;
        let eval_duration = eval_count * 12_000_000;
        let metrics = Metrics {
            total_duration: load_duration + prompt_eval_duration + eval_duration + 400_000,
            load_duration,
            prompt_eval_count: answer.prompt_tokens,
            prompt_eval_duration,
            eval_count,
            eval_duration,
        };
        if !stream {
            return Rendered {
                content_type: Self::JSON_TYPE,
                frames: vec![wire::json(
                    &line(text, Some(done_reason), Some(metrics)),
                    b"",
                )],
                stream: false,
            };
        }
        let pieces = if answer.stop == Stop::Filtered {
            vec![REFUSAL]
        } else {
            answer.pieces()
        };
        let mut frames: Vec<_> = pieces
            .iter()
            .map(|piece| wire::json(&line(piece, None, None), b"\n"))
            .collect();
        frames.push(wire::json(
            &line("", Some(done_reason), Some(metrics)),
            b"\n",
        ));
        Rendered {
            content_type: "application/x-ndjson",
            frames,
            stream: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::fake_provider::testkit::{body_json, ndjson, ollama_request, send};
    use crate::fake_provider::{FakeOptions, FakeProvider};

    #[tokio::test]
    async fn streams_ndjson_by_default() {
        let fake = FakeProvider::new(FakeOptions::default());
        let body =
            json!({"model": "llama3.2", "messages": [{"role": "user", "content": "Hi there"}]});
        let (status, headers, bytes) = send(&fake, ollama_request(body)).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/x-ndjson");
        let lines = ndjson(&bytes);
        assert!(lines.len() >= 5);
        let (last, rest) = lines.split_last().unwrap();
        for line in rest {
            assert_eq!(line["model"], "llama3.2");
            assert!(line["created_at"].as_str().unwrap().ends_with('Z'));
            assert_eq!(line["message"]["role"], "assistant");
            assert_eq!(line["done"], false);
        }
        let text: String = rest
            .iter()
            .map(|l| l["message"]["content"].as_str().unwrap())
            .collect();
        assert!(text.starts_with("Fake ollama answer to: Hi there."));
        assert_eq!(last["done"], true);
        assert_eq!(last["done_reason"], "stop");
        assert_eq!(last["message"], json!({"role": "assistant", "content": ""}));
        assert_eq!(last["prompt_eval_count"], 2);
        assert_eq!(last["eval_count"], (text.len() as u64).div_ceil(4));
        for field in [
            "total_duration",
            "load_duration",
            "prompt_eval_duration",
            "eval_duration",
        ] {
            assert!(last[field].as_u64().unwrap() > 0, "{field}");
        }
        assert!(fake.calls().recent[0].stream);
    }

    #[tokio::test]
    async fn non_stream_is_one_object_and_num_predict_limits() {
        let fake = FakeProvider::new(FakeOptions::default());
        let body = json!({"model": "llama3.2", "stream": false, "options": {"num_predict": 3},
            "messages": [{"role": "user", "content": "Hi"}]});
        let (status, headers, bytes) = send(&fake, ollama_request(body)).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/json; charset=utf-8");
        let v = body_json(&bytes);
        assert_eq!(v["done"], true);
        assert_eq!(v["done_reason"], "length");
        assert_eq!(v["message"]["content"].as_str().unwrap().len(), 12);
        assert_eq!(v["eval_count"], 3);
    }

    #[tokio::test]
    async fn empty_messages_load_the_model_and_errors_are_plain() {
        let fake = FakeProvider::new(FakeOptions::default());
        let v = body_json(
            &send(
                &fake,
                ollama_request(json!({"model": "m", "stream": false})),
            )
            .await
            .2,
        );
        assert_eq!(v["done_reason"], "load");
        let (status, _, bytes) = send(&fake, ollama_request(json!({"messages": []}))).await;
        assert_eq!(status, 400);
        assert_eq!(body_json(&bytes), json!({"error": "model is required"}));
        let (status, _, bytes) = send(&fake, ollama_request(Value::String("{".into()))).await;
        assert_eq!(status, 400);
        assert!(body_json(&bytes)["error"].is_string());
    }

    #[tokio::test]
    async fn tags_and_root() {
        let fake = FakeProvider::new(FakeOptions::default());
        let req = axum::http::Request::get("/api/tags")
            .body(axum::body::Body::empty())
            .unwrap();
        let v = body_json(&send(&fake, req).await.2);
        assert_eq!(v["models"][0]["details"]["format"], "gguf");
        let req = axum::http::Request::get("/")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(&send(&fake, req).await.2[..], b"Ollama is running");
    }
}
