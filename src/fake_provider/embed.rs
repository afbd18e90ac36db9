//! Embedding routes: OpenAI `POST /v1/embeddings`, Ollama `POST /api/embed`, and Gemini
//! `POST /v1beta/models/{model}:embedContent` / `:batchEmbedContents`.
//!
//! Vectors are deterministic: aimesh's hashing embedder over the text ([`FAKE_DIMS`] long, or
//! the request's `dimensions` / `outputDimensionality`), so texts that share words are similar.
//! OpenAI and Ollama vectors are unit length, as the real APIs' are; Gemini's are twice that, as
//! the real API's truncated vectors are not normalised either. OpenAI's
//! `"encoding_format": "base64"` (the official SDKs' default) is honoured. Each request is counted
//! in the call statistics (format, model, key) and in [`super::CallStats::embeddings`]. Fault
//! rules apply as to generation requests (non-streaming); `content_filter` has no effect here.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use aimesh_actors::search::{Embedder, HashingEmbedder};

use super::FakeProvider;
use super::body::{self, BodyPlan, Ending};
use super::faults::Fault;
use super::gemini::Gemini;
use super::ollama::Ollama;
use super::openai::OpenAi;
use super::text::tokens;
use super::wire::{self, Refusal, Rendered, Wire, error_response};

/// Vector length when the request asks for none.
pub const FAKE_DIMS: usize = 256;
/// Most dimensions a request may ask for.
const MAX_DIMS: usize = 4096;

/// A parsed embedding request.
struct EmbedRequest {
    model: String,
    texts: Vec<String>,
    dims: usize,
    base64: bool,
}

/// `POST /v1/embeddings`.
pub(super) async fn openai(State(provider): State<FakeProvider>, request: Request) -> Response {
    serve::<OpenAi>(provider, request, parse_openai, render_openai).await
}

/// `POST /api/embed`.
pub(super) async fn ollama(State(provider): State<FakeProvider>, request: Request) -> Response {
    serve::<Ollama>(provider, request, parse_ollama, render_ollama).await
}

/// `POST /v1beta/models/{model}:embedContent` (`batch` false) or `:batchEmbedContents`.
pub(super) async fn gemini(
    provider: FakeProvider,
    model: String,
    batch: bool,
    request: Request,
) -> Response {
    let parse = move |body: &[u8]| parse_gemini(&model, batch, body);
    let render =
        move |req: &EmbedRequest, vectors: Vec<Vec<f32>>| render_gemini(req, vectors, batch);
    serve::<Gemini>(provider, request, parse, render).await
}

/// Text input: one string or a list of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

impl Input {
    fn texts(self) -> Vec<String> {
        match self {
            Input::One(s) => vec![s],
            Input::Many(v) => v,
        }
    }
}

fn dims(asked: Option<u64>) -> Result<usize, Refusal> {
    match asked {
        None => Ok(FAKE_DIMS),
        Some(n) if (1..=MAX_DIMS as u64).contains(&n) => Ok(n as usize),
        Some(n) => Err(Refusal::bad_request(format!(
            "dimensions must be between 1 and {MAX_DIMS}, got {n}"
        ))),
    }
}

#[derive(Deserialize)]
struct OpenAiBody {
    #[serde(default)]
    model: String,
    input: Option<Value>,
    #[serde(default)]
    dimensions: Option<u64>,
    #[serde(default)]
    encoding_format: Option<String>,
}

fn parse_openai(body: &[u8]) -> Result<EmbedRequest, Refusal> {
    let req: OpenAiBody = serde_json::from_slice(body).map_err(|e| {
        Refusal::bad_request(format!(
            "We could not parse the JSON body of your request. {e}"
        ))
    })?;
    if req.model.is_empty() {
        return Err(Refusal::bad_request("you must provide a model parameter"));
    }
    let input = req
        .input
        .ok_or_else(|| Refusal::bad_request("Missing required parameter: 'input'."))?;
    let texts = serde_json::from_value::<Input>(input)
        .map_err(|_| {
            Refusal::bad_request(
                "'$.input' is invalid: the fake provider takes a string or a list of strings",
            )
        })?
        .texts();
    if texts.is_empty() || texts.len() > 2048 || texts.iter().any(String::is_empty) {
        return Err(Refusal::bad_request(
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
        ));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(Refusal::bad_request(format!(
                "Invalid value for 'encoding_format': {other:?}; expected 'float' or 'base64'."
            )));
        }
    };
    Ok(EmbedRequest {
        model: req.model,
        texts,
        dims: dims(req.dimensions)?,
        base64,
    })
}

fn render_openai(req: &EmbedRequest, vectors: Vec<Vec<f32>>) -> Value {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if req.base64 {
                json!(base64(&v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let n = input_tokens(&req.texts);
    json!({"object": "list", "data": data, "model": req.model,
        "usage": {"prompt_tokens": n, "total_tokens": n}})
}

#[derive(Deserialize)]
struct OllamaBody {
    #[serde(default)]
    model: String,
    input: Option<Input>,
    #[serde(default)]
    dimensions: Option<u64>,
}

fn parse_ollama(body: &[u8]) -> Result<EmbedRequest, Refusal> {
    let req: OllamaBody =
        serde_json::from_slice(body).map_err(|e| Refusal::bad_request(e.to_string()))?;
    if req.model.is_empty() {
        return Err(Refusal::bad_request("model is required"));
    }
    let texts = req.input.map(Input::texts).unwrap_or_default();
    Ok(EmbedRequest {
        model: req.model,
        texts,
        dims: dims(req.dimensions)?,
        base64: false,
    })
}

fn render_ollama(req: &EmbedRequest, vectors: Vec<Vec<f32>>) -> Value {
    json!({"model": req.model, "embeddings": vectors, "total_duration": 1_000_000,
        "load_duration": 100_000, "prompt_eval_count": input_tokens(&req.texts)})
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiEmbed {
    #[serde(default)]
    model: Option<String>,
    content: Option<GeminiContent>,
    #[serde(default, alias = "output_dimensionality")]
    output_dimensionality: Option<u64>,
}

#[derive(Deserialize)]
struct GeminiContent {
    #[serde(default)]
    parts: Vec<GeminiPart>,
}

#[derive(Deserialize)]
struct GeminiPart {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct GeminiBatch {
    #[serde(default)]
    requests: Vec<GeminiEmbed>,
}

fn parse_gemini(model: &str, batch: bool, body: &[u8]) -> Result<EmbedRequest, Refusal> {
    let invalid =
        |e: serde_json::Error| Refusal::bad_request(format!("Invalid JSON payload received. {e}"));
    let requests = if batch {
        let b: GeminiBatch = serde_json::from_slice(body).map_err(invalid)?;
        if b.requests.is_empty() || b.requests.len() > 100 {
            return Err(Refusal::bad_request(
                "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n",
            ));
        }
        b.requests
    } else {
        vec![serde_json::from_slice::<GeminiEmbed>(body).map_err(invalid)?]
    };
    let path_model = format!("models/{model}");
    let mut texts = Vec::with_capacity(requests.len());
    let mut asked = None;
    for (i, r) in requests.into_iter().enumerate() {
        if batch && r.model.as_deref() != Some(path_model.as_str()) {
            return Err(Refusal::bad_request(format!(
                "* BatchEmbedContentsRequest.requests[{i}].model: the model must be {path_model}"
            )));
        }
        let Some(content) = r.content else {
            return Err(Refusal::bad_request(
                "* EmbedContentRequest.content: contents is not specified\n",
            ));
        };
        let text: Vec<String> = content.parts.into_iter().filter_map(|p| p.text).collect();
        texts.push(text.join(" "));
        asked = asked.or(r.output_dimensionality);
    }
    Ok(EmbedRequest {
        model: model.to_owned(),
        texts,
        dims: dims(asked)?,
        base64: false,
    })
}

fn render_gemini(_req: &EmbedRequest, vectors: Vec<Vec<f32>>, batch: bool) -> Value {
    let values = |v: Vec<f32>| -> Vec<f32> { v.into_iter().map(|x| x * 2.0).collect() };
    if batch {
        let embeddings: Vec<Value> = vectors
            .into_iter()
            .map(|v| json!({"values": values(v)}))
            .collect();
        json!({"embeddings": embeddings})
    } else {
        let v = vectors.into_iter().next().unwrap_or_default();
        json!({"embedding": {"values": values(v)}})
    }
}

fn input_tokens(texts: &[String]) -> u64 {
    texts.iter().map(|t| tokens(t.chars().count())).sum()
}

/// The fake vectors of `texts`.
pub fn vectors(texts: &[String], dims: usize) -> Vec<Vec<f32>> {
    let embedder = HashingEmbedder::new(dims);
    texts.iter().map(|t| embedder.embed(t)).collect()
}

/// Little-endian `f32`s in standard base64, as OpenAI encodes them.
fn base64(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Serves one embedding request in format `P`: count, latency, credentials, faults, answer.
async fn serve<P: Wire>(
    provider: FakeProvider,
    request: Request,
    parse: impl FnOnce(&[u8]) -> Result<EmbedRequest, Refusal>,
    render: impl FnOnce(&EmbedRequest, Vec<Vec<f32>>) -> Value,
) -> Response {
    let inner = &*provider.inner;
    let (parts, body) = request.into_parts();
    let bytes = match body::read_body(body).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refuse::<P>(&provider, &parts, refusal),
    };
    let parsed = parse(&bytes);
    let model = parsed.as_ref().ok().map(|r| r.model.as_str());
    let inputs = parsed.as_ref().map_or(0, |r| r.texts.len() as u64);
    inner
        .stats
        .record(P::FORMAT, model, false, P::api_key(&parts), None, &bytes);
    inner.stats.embedding(inputs);
    if !inner.options.latency.is_zero() {
        inner.pause(inner.options.latency).await;
    }
    let req = match P::authorize(&parts).and(parsed) {
        Ok(req) => req,
        Err(refusal) => {
            inner.stats.rejected();
            return error_response::<P>(refusal.status, Some(&refusal.message), None, None);
        }
    };
    let mut plan = BodyPlan::default();
    if let Some(rule) = inner.faults.take(P::FORMAT, &req.model, false) {
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
            Fault::Reset => return wire::reset(&parts),
            Fault::Latency { ms } => inner.pause(std::time::Duration::from_millis(*ms)).await,
            Fault::SlowFirstByte { delay_ms } => {
                plan.first_delay = std::time::Duration::from_millis(*delay_ms);
            }
            Fault::Stall { after_chunks } => plan.stop = Some((*after_chunks, Ending::Stall)),
            Fault::Cut { after_chunks } => plan.stop = Some((*after_chunks, Ending::Cut)),
            Fault::Malformed => plan.malformed = true,
            Fault::ContentFilter => {}
        }
    }
    let answer = render(&req, vectors(&req.texts, req.dims));
    let rendered = Rendered {
        content_type: P::JSON_TYPE,
        frames: vec![wire::json(&answer, b"")],
        stream: false,
    };
    wire::respond::<P>(inner, rendered, plan)
}

/// Counts and refuses a request whose body could not be read.
fn refuse<P: Wire>(provider: &FakeProvider, parts: &Parts, refusal: Refusal) -> Response {
    let stats = &provider.inner.stats;
    stats.record(
        P::FORMAT,
        None,
        false,
        P::api_key(parts),
        None,
        &Bytes::new(),
    );
    stats.embedding(0);
    stats.rejected();
    error_response::<P>(refusal.status, Some(&refusal.message), None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_encoding() {
        // 1.0f32 is 00 00 80 3f little-endian.
        assert_eq!(base64(&[1.0]), "AACAPw==");
        assert_eq!(base64(&[1.0, 1.0]), "AACAPwAAgD8=");
        assert_eq!(base64(&[]), "");
    }

    #[test]
    fn related_texts_get_similar_vectors() {
        let v = vectors(
            &[
                "Refunds are issued within 14 days".to_owned(),
                "How many days until a refund is issued?".to_owned(),
                "Deployments happen on Tuesdays".to_owned(),
            ],
            FAKE_DIMS,
        );
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!(dot(&v[0], &v[1]) > dot(&v[0], &v[2]) + 0.1);
    }
}
