//! What every wire format shares: bounds, short error messages, lenient serde helpers, the
//! status-and-body error classification, URL joining, and [`Framed`], the stream decoder that
//! drives a framing ([`super::sse::SseParser`] or [`super::ndjson::NdjsonSplitter`]) and a
//! per-format [`Handler`].

use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::sse::FrameTooLarge;
use super::{Completion, StreamDecoder, StreamEvent, retry_after};
use crate::gateway::ModelError;

/// Most bytes of answer text a call may assemble (whole or streamed).
pub const MAX_TEXT_BYTES: usize = 4 << 20;

/// Most characters of an upstream message kept in a [`ModelError`].
pub const MAX_MESSAGE_CHARS: usize = 300;

/// Most bytes of a non-JSON error body looked at for its message.
const MAX_ERROR_BODY_PEEK: usize = 4096;

/// How an error is classified, before it becomes a [`ModelError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Slow down.
    RateLimited,
    /// Provider overloaded.
    Overloaded,
    /// Provider failed.
    Server,
    /// Our request was refused.
    BadRequest,
    /// Credentials, permissions or billing.
    Auth,
    /// Blocked by a content filter.
    ContentFiltered,
    /// The prompt does not fit.
    ContextTooLong,
}

/// What a format could read from an error body (or an in-stream error event).
#[derive(Clone, Debug, Default)]
pub struct Failure {
    /// A class the body states unambiguously (e.g. `context_length_exceeded`); beats the status.
    pub specific: Option<Class>,
    /// A class the body only hints at (e.g. `invalid_request_error`); used when there is no
    /// non-2xx HTTP status to go by.
    pub generic: Option<Class>,
    /// A status the body carries (e.g. Gemini's `code`), used when the HTTP status is 2xx.
    pub body_status: Option<u16>,
    /// What the provider said.
    pub message: String,
}

/// The class of a non-2xx HTTP status.
pub fn class_of_status(status: u16) -> Class {
    match status {
        429 => Class::RateLimited,
        401..=403 => Class::Auth,
        400 | 404 | 422 => Class::BadRequest,
        413 => Class::ContextTooLong,
        503 | 529 => Class::Overloaded,
        _ => Class::Server,
    }
}

/// Turns a [`Failure`] into a [`ModelError`]. `http` is the HTTP status and headers of the
/// answer, or `None` for an error event inside a 2xx stream.
pub fn to_error(provider: &str, http: Option<(u16, &HeaderMap)>, failure: Failure) -> ModelError {
    let http_status = http.map(|(s, _)| s).filter(|s| !(200..300).contains(s));
    let body_status = failure.body_status.filter(|s| (400..600).contains(s));
    let status = http_status.or(body_status);
    let mut class = failure
        .specific
        .or(http_status.map(class_of_status))
        .or(failure.generic)
        .or(body_status.map(class_of_status))
        .unwrap_or(Class::Server);
    let message = short(&failure.message);
    if class == Class::BadRequest {
        if says_context_too_long(&message) {
            class = Class::ContextTooLong;
        } else if says_content_filtered(&message) {
            class = Class::ContentFiltered;
        }
    }
    let message = if message.is_empty() {
        status.map_or_else(
            || "error event in stream".to_owned(),
            |s| format!("HTTP {s}"),
        )
    } else {
        message
    };
    let provider = provider.to_owned();
    match class {
        Class::RateLimited => ModelError::RateLimited {
            provider,
            retry_after: http.and_then(|(_, h)| retry_after(h)),
            message,
        },
        Class::Overloaded => ModelError::Overloaded { provider, message },
        Class::Server => ModelError::Server {
            provider,
            status: status.unwrap_or(500),
            message,
        },
        Class::BadRequest => ModelError::BadRequest { provider, message },
        Class::Auth => ModelError::Auth { provider, message },
        Class::ContentFiltered => ModelError::ContentFiltered { provider, message },
        Class::ContextTooLong => ModelError::ContextTooLong { provider, message },
    }
}

/// The message of an error body that is not the format's JSON (an HTML proxy page, plain text).
pub fn raw_message(body: &[u8]) -> String {
    let peek = body.get(..MAX_ERROR_BODY_PEEK).unwrap_or(body);
    String::from_utf8_lossy(peek).into_owned()
}

fn says_context_too_long(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "prompt is too long",
        "context length",
        "context_length_exceeded",
        "maximum context",
        "context window",
        "exceeds the available context size",
        "exceeds the maximum number of tokens",
        "too many input tokens",
    ]
    .iter()
    .any(|p| m.contains(p))
}

fn says_content_filtered(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "content management policy",
        "content filter",
        "content_filter",
        "content_policy",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// `message` fit for a [`ModelError`]: whitespace and control characters collapsed, things
/// that look like API keys redacted, at most [`MAX_MESSAGE_CHARS`] characters.
pub fn short(message: &str) -> String {
    let mut out = String::new();
    let mut chars = 0usize;
    for word in message.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        let word = if looks_like_key(word) {
            "[redacted]"
        } else {
            word
        };
        if !out.is_empty() {
            out.push(' ');
            chars += 1;
        }
        for c in word.chars() {
            if chars >= MAX_MESSAGE_CHARS {
                out.push('…');
                return out;
            }
            out.push(c);
            chars += 1;
        }
    }
    out
}

fn looks_like_key(word: &str) -> bool {
    let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    word.len() >= 20 && (word.starts_with("sk-") || word.starts_with("AIza"))
}

/// Appends `piece` to the answer text, refusing to grow it past [`MAX_TEXT_BYTES`].
pub fn append(provider: &str, text: &mut String, piece: &str) -> Result<(), ModelError> {
    if text.len().saturating_add(piece.len()) > MAX_TEXT_BYTES {
        return Err(malformed(
            provider,
            format!("answer text longer than {MAX_TEXT_BYTES} bytes"),
        ));
    }
    text.push_str(piece);
    Ok(())
}

/// A [`ModelError::Malformed`].
pub fn malformed(provider: &str, message: impl AsRef<str>) -> ModelError {
    ModelError::Malformed {
        provider: provider.to_owned(),
        message: short(message.as_ref()),
    }
}

/// A [`ModelError::Transport`].
pub fn transport(provider: &str, message: &str) -> ModelError {
    ModelError::Transport {
        provider: provider.to_owned(),
        message: message.to_owned(),
    }
}

/// Deserializes a whole 2xx body, or says why it is not the expected JSON.
pub fn from_json<T: DeserializeOwned>(provider: &str, bytes: &[u8]) -> Result<T, ModelError> {
    serde_json::from_slice(bytes)
        .map_err(|e| malformed(provider, format!("not the expected JSON: {e}")))
}

/// Serializes a request body (cannot fail for the formats' plain structs; empty if it did).
pub fn to_body<T: serde::Serialize>(body: &T) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

/// `null` (or missing, with `#[serde(default)]`) as the type's default.
pub fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A token count, leniently: integers, floats, numeric strings; anything else is absent.
pub fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f.min(u64::MAX as f64) as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A token count, leniently (see [`opt_count`]); absent is 0.
pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(opt_count(d)?.unwrap_or(0))
}

/// A message that should be a string but may be an object (Mistral puts validation details
/// there): strings as they are, `null` empty, anything else as compact JSON.
pub fn lenient_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A status-like code: a number or a numeric string.
pub fn status_like(value: &Value) -> Option<u16> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `base` joined with `path`, with `/{version}` in between unless `base` already ends with a
/// version segment (`/v1`, `/v1beta`, ...).
pub fn join_url(base: &str, version: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
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

/// The API key, if one is set and not empty.
pub fn key(api_key: &Option<String>) -> Option<&str> {
    api_key.as_deref().filter(|k| !k.trim().is_empty())
}

/// Splits a streamed body into items: SSE events or NDJSON lines.
pub trait Framing: Send {
    /// What one frame is.
    type Item;
    /// The items `bytes` complete.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Self::Item>, FrameTooLarge>;
    /// The body ended: the last item, if it was left unterminated.
    fn finish(&mut self) -> Result<Option<Self::Item>, FrameTooLarge>;
}

/// A format's reading of the items of one stream.
pub trait Handler<I>: Send {
    /// Handles one item, pushing the text deltas it carries.
    fn item(&mut self, item: I, out: &mut Vec<StreamEvent>) -> Result<(), ModelError>;
    /// The stream ended: the answer, or an error if the terminal event never came.
    fn end(self) -> Result<Completion, ModelError>;
}

/// A [`StreamDecoder`] made of a framing and a format's handler. After an error it keeps
/// returning that error.
pub struct Framed<F, H> {
    provider: String,
    framing: F,
    handler: H,
    failed: Option<ModelError>,
}

impl<F, H> Framed<F, H> {
    /// A decoder for `provider`.
    pub fn new(provider: &str, framing: F, handler: H) -> Self {
        Self {
            provider: provider.to_owned(),
            framing,
            handler,
            failed: None,
        }
    }
}

impl<F: Framing, H: Handler<F::Item>> Framed<F, H> {
    fn run(&mut self, bytes: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), ModelError> {
        let items = self
            .framing
            .feed(bytes)
            .map_err(|e| malformed(&self.provider, e.to_string()))?;
        for item in items {
            self.handler.item(item, out)?;
        }
        Ok(())
    }
}

impl<F: Framing, H: Handler<F::Item>> StreamDecoder for Framed<F, H> {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), ModelError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.run(bytes, out);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn finish(self: Box<Self>) -> Result<Completion, ModelError> {
        let Framed {
            provider,
            mut framing,
            mut handler,
            failed,
        } = *self;
        if let Some(e) = failed {
            return Err(e);
        }
        match framing.finish() {
            Err(e) => return Err(malformed(&provider, e.to_string())),
            Ok(Some(item)) => {
                // An unterminated last frame: fine if whole, a cut stream if not.
                handler.item(item, &mut Vec::new()).map_err(|e| match e {
                    ModelError::Malformed { .. } => {
                        transport(&provider, "stream cut inside an event")
                    }
                    other => other,
                })?;
            }
            Ok(None) => {}
        }
        handler.end()
    }
}

#[cfg(test)]
pub mod testing {
    //! Helpers for the formats' stream tests.
    use super::super::{Completion, StreamDecoder, StreamEvent};
    use crate::gateway::ModelError;

    /// Feeds `chunks` to a fresh decoder and finishes it: the deltas and the result.
    pub fn run(
        mut decoder: Box<dyn StreamDecoder>,
        chunks: &[&[u8]],
    ) -> (Vec<StreamEvent>, Result<Completion, ModelError>) {
        let mut out = Vec::new();
        for chunk in chunks {
            if let Err(e) = decoder.feed(chunk, &mut out) {
                return (out, Err(e));
            }
        }
        (out, decoder.finish())
    }

    /// The deltas joined.
    pub fn joined(events: &[StreamEvent]) -> String {
        events
            .iter()
            .map(|StreamEvent::Delta(t)| t.as_str())
            .collect()
    }

    /// Decodes `body` split at every position (and byte by byte); every result must equal the
    /// unsplit one, and the deltas must join to the answer text. Returns the unsplit result.
    pub fn every_split(
        make: impl Fn() -> Box<dyn StreamDecoder>,
        body: &[u8],
    ) -> Result<Completion, ModelError> {
        let (events, whole) = run(make(), &[body]);
        if let Ok(c) = &whole {
            assert_eq!(joined(&events), c.text);
        }
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            let (events, split) = run(make(), &[a, b]);
            assert_eq!(split, whole, "split at {at}");
            if let Ok(c) = &split {
                assert_eq!(joined(&events), c.text, "split at {at}");
            }
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        let (_, single) = run(make(), &bytes);
        assert_eq!(single, whole, "byte by byte");
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_caps_collapses_and_redacts() {
        let long = "é".repeat(1000);
        let s = short(&long);
        assert_eq!(s.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(s.ends_with('…'));
        assert_eq!(short("a\n\n b\tc\u{0}d"), "a b c d");
        let s = short("Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz123.");
        assert!(!s.contains("abcdefghij"), "{s}");
        assert!(s.contains("[redacted]"));
        assert!(short("key AIzaSyA-1234567890abcdefghijk bad").contains("[redacted]"));
    }

    #[test]
    fn statuses_classify() {
        let h = HeaderMap::new();
        let err = |status| to_error("p", Some((status, &h)), Failure::default());
        assert!(matches!(err(429), ModelError::RateLimited { .. }));
        assert!(matches!(err(401), ModelError::Auth { .. }));
        assert!(matches!(err(403), ModelError::Auth { .. }));
        assert!(matches!(err(400), ModelError::BadRequest { .. }));
        assert!(matches!(err(404), ModelError::BadRequest { .. }));
        assert!(matches!(err(422), ModelError::BadRequest { .. }));
        assert!(matches!(err(413), ModelError::ContextTooLong { .. }));
        assert!(matches!(err(503), ModelError::Overloaded { .. }));
        assert!(matches!(err(529), ModelError::Overloaded { .. }));
        assert!(matches!(err(500), ModelError::Server { status: 500, .. }));
        assert!(matches!(err(502), ModelError::Server { status: 502, .. }));
        assert!(matches!(err(504), ModelError::Server { status: 504, .. }));
        assert!(matches!(err(408), ModelError::Server { status: 408, .. }));
        assert!(matches!(err(302), ModelError::Server { status: 302, .. }));
        let ModelError::BadRequest { message, .. } = err(400) else {
            panic!()
        };
        assert_eq!(message, "HTTP 400");
    }

    #[test]
    fn urls_join_without_doubling_versions() {
        assert_eq!(join_url("https://a.b", "v1", "x"), "https://a.b/v1/x");
        assert_eq!(join_url("https://a.b/", "v1", "x"), "https://a.b/v1/x");
        assert_eq!(join_url("https://a.b/v1", "v1", "x"), "https://a.b/v1/x");
        assert_eq!(join_url("https://a.b/v1/", "v1", "x"), "https://a.b/v1/x");
        assert_eq!(
            join_url("https://a.b/openai/v1", "v1", "x"),
            "https://a.b/openai/v1/x"
        );
        assert_eq!(
            join_url("https://a.b/v1beta", "v1", "x"),
            "https://a.b/v1beta/x"
        );
        assert_eq!(
            join_url("https://a.b/vendor", "v1", "x"),
            "https://a.b/vendor/v1/x"
        );
    }

    fn formats() -> Vec<&'static dyn super::super::WireFormat> {
        use super::super::{anthropic, gemini, ollama, openai};
        vec![
            &anthropic::Anthropic,
            &openai::OpenAi,
            &gemini::Gemini,
            &ollama::Ollama,
        ]
    }

    #[test]
    fn deeply_nested_bodies_do_not_overflow_the_stack() {
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let deep_obj = format!(
            "{{\"error\":{}1{}}}",
            "{\"a\":".repeat(100_000),
            "}".repeat(100_000)
        );
        for format in formats() {
            for body in [&deep, &deep_obj] {
                for status in [200, 400, 500] {
                    assert!(
                        format
                            .parse("p", status, &HeaderMap::new(), body.as_bytes())
                            .is_err()
                    );
                }
                let mut d = format.decoder("p");
                let framed = format!("data: {body}\n\n{body}\n");
                let _ = d.feed(framed.as_bytes(), &mut Vec::new());
                assert!(d.finish().is_err());
            }
        }
    }

    #[test]
    fn oversized_stream_events_are_malformed() {
        let huge = vec![b'a'; super::super::sse::MAX_EVENT_BYTES + 1];
        for format in formats() {
            let mut d = format.decoder("p");
            let mut out = Vec::new();
            let mut result = d.feed(b"data: ", &mut out);
            for chunk in huge.chunks(64 * 1024) {
                if result.is_err() {
                    break;
                }
                result = d.feed(chunk, &mut out);
            }
            assert!(
                matches!(result, Err(ModelError::Malformed { .. })),
                "{}: {result:?}",
                format.kind()
            );
        }
    }

    #[test]
    fn streamed_text_is_bounded() {
        // 1 MiB deltas: the fifth one goes past the 4 MiB cap.
        let piece = "x".repeat(1 << 20);
        let sse = |data: String| format!("data: {data}\n\n");
        let streams: Vec<(&str, String)> = vec![
            (
                "anthropic",
                sse(serde_json::json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": piece}}).to_string()),
            ),
            (
                "openai",
                sse(serde_json::json!({"choices": [{"index": 0, "delta": {"content": piece}}]}).to_string()),
            ),
            (
                "gemini",
                sse(serde_json::json!({"candidates": [{"content": {"parts": [{"text": piece}]}}]}).to_string()),
            ),
            (
                "ollama",
                format!("{}\n", serde_json::json!({"message": {"content": piece}, "done": false})),
            ),
        ];
        for (kind, event) in streams {
            let format = super::super::format(kind).unwrap();
            let mut d = format.decoder("p");
            let mut out = Vec::new();
            for _ in 0..4 {
                d.feed(event.as_bytes(), &mut out).unwrap();
            }
            assert!(
                matches!(
                    d.feed(event.as_bytes(), &mut out),
                    Err(ModelError::Malformed { .. })
                ),
                "{kind}"
            );
            assert_eq!(out.len(), 4);
        }
    }

    #[test]
    fn text_is_bounded() {
        let mut text = "a".repeat(MAX_TEXT_BYTES - 1);
        assert!(append("p", &mut text, "b").is_ok());
        assert!(matches!(
            append("p", &mut text, "c"),
            Err(ModelError::Malformed { .. })
        ));
        assert_eq!(text.len(), MAX_TEXT_BYTES);
    }
}
