//! Google Gemini: `POST /v1beta/models/{model}:generateContent`,
//! `POST /v1beta/models/{model}:streamGenerateContent` and `GET /v1beta/models`.
//!
//! The key comes in `x-goog-api-key` or `?key=` (403 `PERMISSION_DENIED`
//! without one, as the real API answers unregistered callers). With `?alt=sse`
//! the stream is SSE `data:` lines, each a partial `GenerateContentResponse`;
//! without it, the real API's streamed JSON array (`[{…}` `,\r\n{…}` … `]`).
//! `finishReason` and `usageMetadata` ride on the last chunk. Both camelCase
//! and snake_case request fields are accepted, as the real API does.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::faults::Format;
use super::text::{Answer, Stop, new_id};
use super::wire::{self, Refusal, Rendered, Wire, error_response, sse};
use super::{FakeProvider, Inner, errors};

/// `POST /v1beta/models/{model}:{method}` (the embedding methods go to [`super::embed`]).
pub(super) async fn generate(
    State(provider): State<FakeProvider>,
    Path(model_and_method): Path<String>,
    mut request: Request,
) -> Response {
    if let Some((model, method)) = model_and_method.rsplit_once(':')
        && !model.is_empty()
        && matches!(method, "embedContent" | "batchEmbedContents")
    {
        let batch = method == "batchEmbedContents";
        return super::embed::gemini(provider, model.to_owned(), batch, request).await;
    }
    let parsed = model_and_method
        .rsplit_once(':')
        .and_then(|(model, method)| match method {
            "generateContent" => Some((model, false)),
            "streamGenerateContent" => Some((model, true)),
            _ => None,
        });
    let Some((model, stream)) = parsed.filter(|(model, _)| !model.is_empty()) else {
        let message = format!("Method not found: models/{model_and_method}");
        return error_response::<Gemini>(StatusCode::NOT_FOUND, Some(&message), None, None);
    };
    let sse = query_param(request.uri().query(), "alt") == Some("sse");
    let target = Target {
        model: model.to_owned(),
        stream,
        sse,
    };
    request.extensions_mut().insert(target);
    wire::handle::<Gemini>(provider, request).await
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

/// Model and method from the path.
#[derive(Clone)]
struct Target {
    model: String,
    stream: bool,
    sse: bool,
}

pub(super) struct Gemini;

pub(super) struct GeminiRequest {
    target: Target,
    body: GenerateRequest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest {
    #[serde(default)]
    contents: Vec<ContentIn>,
    #[serde(default, alias = "system_instruction")]
    system_instruction: Option<ContentIn>,
    #[serde(default, alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
}

#[derive(Deserialize)]
struct ContentIn {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    parts: Vec<PartIn>,
}

#[derive(Deserialize)]
struct PartIn {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    #[serde(default, alias = "max_output_tokens")]
    max_output_tokens: Option<u64>,
}

impl ContentIn {
    fn chars(&self) -> usize {
        self.parts
            .iter()
            .filter_map(|p| p.text.as_deref())
            .map(|t| t.chars().count())
            .sum()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Chunk<'a> {
    candidates: [Candidate<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_metadata: Option<UsageMetadata>,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<ContentOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_ratings: Option<serde_json::Value>,
    index: u32,
}

#[derive(Serialize)]
struct ContentOut<'a> {
    parts: [PartOut<'a>; 1],
    role: &'static str,
}

#[derive(Serialize)]
struct PartOut<'a> {
    text: &'a str,
}

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: u64,
    candidates_token_count: u64,
    total_token_count: u64,
    prompt_tokens_details: [ModalityCount; 1],
}

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct ModalityCount {
    modality: &'static str,
    token_count: u64,
}

impl Wire for Gemini {
    const FORMAT: Format = Format::Gemini;
    const JSON_TYPE: &'static str = "application/json; charset=UTF-8";
    const REQUEST_ID_HEADER: Option<&'static str> = None;
    const GARBAGE_FRAME: &'static [u8] =
        b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"<<malformed\n\n";
    type Req = GeminiRequest;

    fn parse(parts: &Parts, body: &[u8]) -> Result<GeminiRequest, Refusal> {
        let Some(target) = parts.extensions.get::<Target>().cloned() else {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "Requested entity was not found.",
            ));
        };
        let body: GenerateRequest = serde_json::from_slice(body)
            .map_err(|e| Refusal::bad_request(format!("Invalid JSON payload received. {e}")))?;
        if body.contents.is_empty() {
            return Err(Refusal::bad_request(
                "* GenerateContentRequest.contents: contents is not specified\n",
            ));
        }
        if body.contents.iter().any(|c| {
            c.role
                .as_deref()
                .is_some_and(|r| r != "user" && r != "model")
        }) {
            return Err(Refusal::bad_request(
                "Please use a valid role: user, model.",
            ));
        }
        Ok(GeminiRequest { target, body })
    }

    fn api_key(parts: &Parts) -> Option<&str> {
        parts
            .headers
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| query_param(parts.uri.query(), "key"))
            .filter(|k| !k.is_empty())
    }

    fn authorize(parts: &Parts) -> Result<(), Refusal> {
        match Self::api_key(parts) {
            Some(_) => Ok(()),
            None => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            )),
        }
    }

    fn model(req: &GeminiRequest) -> &str {
        &req.target.model
    }

    fn streaming(req: &GeminiRequest) -> bool {
        req.target.stream
    }

    fn question(req: &GeminiRequest) -> Cow<'_, str> {
        let last_user = req
            .body
            .contents
            .iter()
            .rev()
            .find(|c| c.role.as_deref().is_none_or(|r| r == "user"));
        let texts: Vec<&str> = last_user
            .map(|c| c.parts.iter().filter_map(|p| p.text.as_deref()).collect())
            .unwrap_or_default();
        match texts.as_slice() {
            [] => Cow::Borrowed(""),
            [one] => Cow::Borrowed(one),
            many => Cow::Owned(many.join("\n")),
        }
    }

    fn prompt_chars(req: &GeminiRequest) -> usize {
        req.body
            .system_instruction
            .as_ref()
            .map_or(0, ContentIn::chars)
            + req
                .body
                .contents
                .iter()
                .map(ContentIn::chars)
                .sum::<usize>()
    }

    fn max_tokens(req: &GeminiRequest) -> Option<u64> {
        req.body.generation_config.as_ref()?.max_output_tokens
    }

    fn error_body(
        status: StatusCode,
        message: Option<&str>,
        retry_after: Option<f64>,
        _request_id: &str,
    ) -> serde_json::Value {
        errors::gemini(status, message, retry_after)
    }

    fn render(_inner: &Inner, req: &GeminiRequest, answer: &Answer) -> Rendered {
        let response_id = new_id("", 22);
        let model = &req.target.model;
        let finish = match answer.stop {
            Stop::Complete => "STOP",
            Stop::Length => "MAX_TOKENS",
            Stop::Filtered => "SAFETY",
        };
        let usage = UsageMetadata {
            prompt_token_count: answer.prompt_tokens,
            candidates_token_count: answer.completion_tokens,
            total_token_count: answer.prompt_tokens + answer.completion_tokens,
            prompt_tokens_details: [ModalityCount {
                modality: "TEXT",
                token_count: answer.prompt_tokens,
            }],
        };
        let filtered = answer.stop == Stop::Filtered;
        let parts = ChunkParts {
            finish,
            filtered,
            usage,
            model,
            response_id: &response_id,
        };
        let chunk = |text, last| parts.chunk(text, last);
        if !req.target.stream {
            let text = (!filtered).then_some(answer.text.as_str());
            return Rendered {
                content_type: Self::JSON_TYPE,
                frames: vec![wire::json(&chunk(text, true), b"")],
                stream: false,
            };
        }
        let pieces = answer.pieces();
        let mut chunks = Vec::with_capacity(pieces.len() + 1);
        match pieces.split_last() {
            Some((last, rest)) if !filtered => {
                chunks.extend(rest.iter().map(|p| chunk(Some(p), false)));
                chunks.push(chunk(Some(last), true));
            }
            _ => {
                chunks.extend(pieces.iter().map(|p| chunk(Some(p), false)));
                chunks.push(chunk(None, true));
            }
        }
        if req.target.sse {
            return Rendered {
                content_type: "text/event-stream",
                frames: chunks.iter().map(|c| sse(None, c)).collect(),
                stream: true,
            };
        }
        let count = chunks.len();
        let frames = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut buf = Vec::with_capacity(256);
                buf.extend_from_slice(if i == 0 { b"[" } else { b",\r\n" });
                let _ = serde_json::to_writer(&mut buf, c);
                if i + 1 == count {
                    buf.push(b']');
                }
                Bytes::from(buf)
            })
            .collect();
        Rendered {
            content_type: Self::JSON_TYPE,
            frames,
            stream: true,
        }
    }
}

/// What every chunk of one answer shares.
struct ChunkParts<'a> {
    finish: &'static str,
    filtered: bool,
    usage: UsageMetadata,
    model: &'a str,
    response_id: &'a str,
}

impl<'a> ChunkParts<'a> {
    /// A chunk with `text` (none: no `content`); the last one carries
    /// `finishReason` and `usageMetadata`.
    fn chunk(&self, text: Option<&'a str>, last: bool) -> Chunk<'a> {
        Chunk {
            candidates: [Candidate {
                content: text.map(|text| ContentOut {
                    parts: [PartOut { text }],
                    role: "model",
                }),
                finish_reason: last.then_some(self.finish),
                safety_ratings: (last && self.filtered).then(safety_ratings),
                index: 0,
            }],
            usage_metadata: last.then_some(self.usage),
            model_version: self.model,
            response_id: self.response_id,
        }
    }
}

fn safety_ratings() -> serde_json::Value {
    let rating = |category, probability, blocked: bool| {
        let mut r = json!({"category": category, "probability": probability});
        if blocked {
            r["blocked"] = json!(true);
        }
        r
    };
    json!([
        rating("HARM_CATEGORY_SEXUALLY_EXPLICIT", "NEGLIGIBLE", false),
        rating("HARM_CATEGORY_HATE_SPEECH", "NEGLIGIBLE", false),
        rating("HARM_CATEGORY_HARASSMENT", "NEGLIGIBLE", false),
        rating("HARM_CATEGORY_DANGEROUS_CONTENT", "HIGH", true),
    ])
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::fake_provider::testkit::{body_json, gemini_request, send, sse_events};
    use crate::fake_provider::{FakeOptions, FakeProvider, Format};

    fn body(q: &str) -> Value {
        json!({"systemInstruction": {"parts": [{"text": "Be kind."}]},
               "contents": [{"role": "user", "parts": [{"text": q}]}]})
    }

    #[tokio::test]
    async fn generate_content_has_the_documented_shape() {
        let fake = FakeProvider::new(FakeOptions::default());
        let req = gemini_request(
            "gemini-test:generateContent",
            Some("k"),
            body("Why is the sky blue?"),
        );
        let (status, headers, bytes) = send(&fake, req).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/json; charset=UTF-8");
        let v = body_json(&bytes);
        let cand = &v["candidates"][0];
        assert_eq!(cand["content"]["role"], "model");
        let text = cand["content"]["parts"][0]["text"].as_str().unwrap();
        assert!(text.starts_with("Fake gemini answer to: Why is the sky blue?."));
        assert_eq!(cand["finishReason"], "STOP");
        assert_eq!(cand["index"], 0);
        let usage = &v["usageMetadata"];
        assert_eq!(usage["promptTokenCount"], 7);
        assert_eq!(
            usage["candidatesTokenCount"],
            (text.len() as u64).div_ceil(4)
        );
        assert_eq!(
            usage["totalTokenCount"],
            usage["promptTokenCount"].as_u64().unwrap()
                + usage["candidatesTokenCount"].as_u64().unwrap()
        );
        assert_eq!(v["modelVersion"], "gemini-test");
        assert!(v["responseId"].is_string());
        assert_eq!(fake.calls().count(Format::Gemini, "gemini-test"), 1);
    }

    #[tokio::test]
    async fn sse_stream_carries_finish_and_usage_on_the_last_chunk() {
        let fake = FakeProvider::new(FakeOptions::default());
        let req = gemini_request(
            "gemini-test:streamGenerateContent?alt=sse&key=k",
            None,
            body("Tell me"),
        );
        let (status, headers, bytes) = send(&fake, req).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "text/event-stream");
        assert_eq!(headers["cache-control"], "no-cache");
        let events = sse_events(&bytes);
        assert!(events.len() >= 6);
        let (last, rest) = events.split_last().unwrap();
        for (name, chunk) in rest {
            assert!(name.is_none());
            assert!(chunk["candidates"][0].get("finishReason").is_none());
            assert!(chunk.get("usageMetadata").is_none());
            assert_eq!(chunk["modelVersion"], "gemini-test");
        }
        assert_eq!(last.1["candidates"][0]["finishReason"], "STOP");
        assert!(last.1["usageMetadata"]["totalTokenCount"].as_u64().unwrap() > 0);
        let text: String = events
            .iter()
            .map(|(_, c)| {
                c["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert!(text.starts_with("Fake gemini answer to: Tell me."));
        assert_eq!(fake.calls().recent[0].api_key.as_deref(), Some("k"));
    }

    #[tokio::test]
    async fn stream_without_alt_is_a_json_array_and_max_tokens_applies() {
        let fake = FakeProvider::new(FakeOptions::default());
        let mut b = body("Tell me");
        b["generation_config"] = json!({"max_output_tokens": 4});
        let (status, headers, bytes) = send(
            &fake,
            gemini_request("gemini-test:streamGenerateContent", Some("k"), b),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/json; charset=UTF-8");
        assert!(bytes.starts_with(b"[{") && bytes.ends_with(b"}]"));
        let chunks: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
        let last = chunks.last().unwrap();
        assert_eq!(last["candidates"][0]["finishReason"], "MAX_TOKENS");
        assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 4);
    }

    #[tokio::test]
    async fn errors_are_google_rpc_statuses() {
        let fake = FakeProvider::new(FakeOptions::default());
        let (status, _, bytes) =
            send(&fake, gemini_request("g:generateContent", None, body("x"))).await;
        assert_eq!(status, 403);
        let v = body_json(&bytes);
        assert_eq!(v["error"]["code"], 403);
        assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
        let (status, _, bytes) = send(
            &fake,
            gemini_request("g:generateContent", Some("k"), json!({"contents": []})),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body_json(&bytes)["error"]["status"], "INVALID_ARGUMENT");
        let (status, _, bytes) =
            send(&fake, gemini_request("g:countTokens", Some("k"), body("x"))).await;
        assert_eq!(status, 404);
        assert_eq!(body_json(&bytes)["error"]["status"], "NOT_FOUND");
        let calls = fake.calls();
        assert_eq!(
            (calls.total, calls.rejected),
            (2, 2),
            "unknown methods are not counted"
        );
    }

    #[tokio::test]
    async fn lists_models() {
        let fake = FakeProvider::new(FakeOptions::default());
        let req = axum::http::Request::get("/v1beta/models")
            .body(axum::body::Body::empty())
            .unwrap();
        let v = body_json(&send(&fake, req).await.2);
        assert!(
            v["models"][0]["name"]
                .as_str()
                .unwrap()
                .starts_with("models/")
        );
    }
}
