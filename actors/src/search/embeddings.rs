//! Provider embedding APIs as pure request builders and response parsers; the HTTP goes through
//! aimesh's gateway.
//!
//! - [`Format::OpenAi`]: `POST {base}/v1/embeddings` with `{"model", "input": [..]}`, answered by
//!   `data[].embedding` (ordered by `data[].index`); the key as `Authorization: Bearer`. Also
//!   every OpenAI-compatible server (vLLM, llama.cpp, LM Studio, ...) and Ollama's
//!   `/v1/embeddings`.
//! - [`Format::Ollama`]: Ollama's native `POST {base}/api/embed` with `{"model", "input": [..]}`,
//!   answered by `embeddings`. No key is needed; one that is configured (an Ollama behind an
//!   authenticating proxy) is sent as `Authorization: Bearer`, as the gateway's chat format does.
//! - [`Format::Gemini`]: `POST {base}/v1beta/models/{model}:batchEmbedContents` with one
//!   `requests[]` entry per text, answered by `embeddings[].values`; the key in `x-goog-api-key`,
//!   never in the URL.
//!
//! A base URL that already ends with a version segment (`https://api.openai.com/v1`) is not given
//! a second one. Header names are lower case. Vectors come back L2-normalised.

use serde::{Deserialize, Serialize};

pub use super::embed_error::EmbedError;
use super::embed_error::{error_detail, malformed, status_error};
use super::normalize;

/// An embedding API's wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OpenAI `/v1/embeddings` and compatible servers.
    OpenAi,
    /// Ollama's native `/api/embed`.
    Ollama,
    /// Gemini `batchEmbedContents`.
    Gemini,
}

impl Format {
    /// The provider's public base URL (Ollama's local default).
    pub fn default_base_url(self) -> &'static str {
        match self {
            Format::OpenAi => "https://api.openai.com",
            Format::Ollama => "http://127.0.0.1:11434",
            Format::Gemini => "https://generativelanguage.googleapis.com",
        }
    }

    /// The most texts one request should carry (OpenAI accepts 2,048 inputs, Gemini 100
    /// requests per batch; Ollama has no limit, 256 keeps requests modest). Split larger
    /// batches.
    pub fn max_batch(self) -> usize {
        match self {
            Format::OpenAi => 2048,
            Format::Ollama => 256,
            Format::Gemini => 100,
        }
    }
}

/// An HTTP request to send: always a `POST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbedRequest {
    /// The full URL.
    pub url: String,
    /// Header names (lower case) and values, the API key among them.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// The request that embeds `texts` with `model`. An empty or blank `api_key` counts as none.
pub fn build(
    format: Format,
    base_url: &str,
    api_key: Option<&str>,
    model: &str,
    texts: &[String],
) -> EmbedRequest {
    let key = api_key.filter(|k| !k.trim().is_empty());
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let (url, body) = match format {
        Format::OpenAi | Format::Ollama => {
            if let Some(key) = key {
                headers.push(("authorization".to_owned(), format!("Bearer {key}")));
            }
            let url = if format == Format::OpenAi {
                join_url(base_url, "v1", "embeddings")
            } else {
                join_url(base_url, "", "api/embed")
            };
            (
                url,
                serde_json::to_vec(&InputBody {
                    model,
                    input: texts,
                }),
            )
        }
        Format::Gemini => {
            if let Some(key) = key {
                headers.push(("x-goog-api-key".to_owned(), key.to_owned()));
            }
            let name = model.strip_prefix("models/").unwrap_or(model);
            let path = format!("models/{}:batchEmbedContents", escape_path(name));
            let model = format!("models/{name}");
            let requests = texts
                .iter()
                .map(|text| GeminiRequest {
                    model: &model,
                    content: GeminiContent {
                        parts: [GeminiPart { text }],
                    },
                })
                .collect();
            let body = serde_json::to_vec(&GeminiBody { requests });
            (join_url(base_url, "v1beta", &path), body)
        }
    };
    EmbedRequest {
        url,
        headers,
        // Serialising these plain structs cannot fail.
        body: body.unwrap_or_default(),
    }
}

/// The body of OpenAI's and Ollama's requests.
#[derive(Serialize)]
struct InputBody<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Serialize)]
struct GeminiBody<'a> {
    requests: Vec<GeminiRequest<'a>>,
}

#[derive(Serialize)]
struct GeminiRequest<'a> {
    model: &'a str,
    content: GeminiContent<'a>,
}

#[derive(Serialize)]
struct GeminiContent<'a> {
    parts: [GeminiPart<'a>; 1],
}

#[derive(Serialize)]
struct GeminiPart<'a> {
    text: &'a str,
}

/// The vectors, in input order, L2-normalized; an error for a non-2xx status or a body that is
/// not the format's answer (message short, never containing the key), or a count mismatch.
pub fn parse(
    format: Format,
    status: u16,
    body: &[u8],
    expected: usize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    if !(200..300).contains(&status) {
        return Err(status_error(status, body));
    }
    let mut vectors = match format {
        Format::OpenAi => openai_vectors(body)?,
        Format::Ollama => from_json::<OllamaAnswer>(body)?.embeddings,
        Format::Gemini => from_json::<GeminiAnswer>(body)?
            .embeddings
            .into_iter()
            .map(|e| e.values)
            .collect(),
    };
    if vectors.len() != expected {
        return Err(EmbedError::CountMismatch {
            expected,
            got: vectors.len(),
        });
    }
    let dims = vectors.first().map_or(0, Vec::len);
    for v in &mut vectors {
        if v.is_empty() || v.len() != dims {
            return Err(malformed("vectors are empty or of different lengths"));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(malformed("vector component out of range"));
        }
        normalize(v);
    }
    Ok(vectors)
}

/// The input tokens an answer reports, if its format reports them: OpenAI's
/// `usage.prompt_tokens` (else `usage.total_tokens`), Ollama's `prompt_eval_count`. Gemini's
/// `batchEmbedContents` reports none. Never fails: an unreadable body reports none.
pub fn input_tokens(format: Format, body: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match format {
        Format::OpenAi => {
            let usage = value.get("usage")?;
            usage
                .get("prompt_tokens")
                .or_else(|| usage.get("total_tokens"))
                .and_then(serde_json::Value::as_u64)
        }
        Format::Ollama => value
            .get("prompt_eval_count")
            .and_then(serde_json::Value::as_u64),
        Format::Gemini => None,
    }
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    data: Vec<OpenAiItem>,
}

#[derive(Deserialize)]
struct OpenAiItem {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

#[derive(Deserialize)]
struct OllamaAnswer {
    embeddings: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct GeminiAnswer {
    embeddings: Vec<GeminiItem>,
}

#[derive(Deserialize)]
struct GeminiItem {
    values: Vec<f32>,
}

/// OpenAI's `data[]`, put in input order by `index` (in array order when no item has one).
fn openai_vectors(body: &[u8]) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut data = from_json::<OpenAiAnswer>(body)?.data;
    if data.iter().any(|d| d.index.is_some()) {
        data.sort_by_key(|d| d.index.unwrap_or(usize::MAX));
        if data.iter().enumerate().any(|(i, d)| d.index != Some(i)) {
            return Err(malformed("data[].index is not 0..n"));
        }
    }
    Ok(data.into_iter().map(|d| d.embedding).collect())
}

fn from_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, EmbedError> {
    serde_json::from_slice(body).map_err(|e| match error_detail(body) {
        Some(detail) => malformed(format!("error in a 2xx answer: {detail}")),
        None => malformed(e.to_string()),
    })
}

/// `base` joined with `path`, with `/{version}` in between unless `base` already ends with a
/// version segment (`/v1`, `/v1beta`, ...) or `version` is empty.
fn join_url(base: &str, version: &str, path: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    let last = base.rsplit('/').next().unwrap_or("");
    let versioned = last.len() > 1
        && last.starts_with('v')
        && last.chars().nth(1).is_some_and(|c| c.is_ascii_digit());
    if versioned || version.is_empty() {
        format!("{base}/{path}")
    } else {
        format!("{base}/{version}/{path}")
    }
}

/// A model name made safe for a URL path segment (RFC 3986 unreserved characters kept).
fn escape_path(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_without_doubling_versions() {
        assert_eq!(join_url("https://a.b", "v1", "x"), "https://a.b/v1/x");
        assert_eq!(join_url("https://a.b/", "v1", "x"), "https://a.b/v1/x");
        assert_eq!(join_url("https://a.b/v1/", "v1", "x"), "https://a.b/v1/x");
        assert_eq!(
            join_url("https://a.b/v1beta", "v1beta", "x"),
            "https://a.b/v1beta/x"
        );
        assert_eq!(
            join_url("https://a.b/openai/v1", "v1", "x"),
            "https://a.b/openai/v1/x"
        );
        assert_eq!(
            join_url("http://h:11434", "", "api/embed"),
            "http://h:11434/api/embed"
        );
        assert_eq!(
            join_url("https://a.b/vault", "v1", "x"),
            "https://a.b/vault/v1/x"
        );
    }

    #[test]
    fn input_tokens_come_from_the_usage_each_format_reports() {
        let openai = br#"{"data":[],"usage":{"prompt_tokens":7,"total_tokens":7}}"#;
        assert_eq!(input_tokens(Format::OpenAi, openai), Some(7));
        let total_only = br#"{"usage":{"total_tokens":9}}"#;
        assert_eq!(input_tokens(Format::OpenAi, total_only), Some(9));
        let ollama = br#"{"embeddings":[],"prompt_eval_count":12}"#;
        assert_eq!(input_tokens(Format::Ollama, ollama), Some(12));
        assert_eq!(input_tokens(Format::Gemini, br#"{"embeddings":[]}"#), None);
        assert_eq!(input_tokens(Format::OpenAi, b"not json"), None);
        assert_eq!(
            input_tokens(Format::OpenAi, br#"{"usage":{"prompt_tokens":-1}}"#),
            None
        );
    }

    #[test]
    fn model_names_are_escaped_in_paths() {
        assert_eq!(escape_path("gemini-embedding-001"), "gemini-embedding-001");
        assert_eq!(escape_path("a/b c?"), "a%2Fb%20c%3F");
    }
}
