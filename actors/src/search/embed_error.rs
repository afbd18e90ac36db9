//! [`EmbedError`] and the reading of provider error answers: the class of a status, the
//! provider's message, shortened, with anything that looks like an API key redacted.

use serde_json::Value;

/// Longest detail kept from a provider's error message, in characters.
const MAX_DETAIL_CHARS: usize = 200;

/// Why an embedding call failed. Messages are short and never contain the API key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    /// HTTP 429: retry later.
    #[error("embedding provider rate limited the request (HTTP 429)")]
    RateLimited,
    /// HTTP 401 or 403, or a 4xx saying the key is not valid (Gemini answers a bad key with
    /// 400): the key is missing, wrong or lacks access.
    #[error("embedding provider refused the credentials (HTTP {status})")]
    Auth {
        /// The HTTP status.
        status: u16,
    },
    /// Another 4xx: the model or the input was refused; retrying will not help.
    #[error("embedding request rejected (HTTP {status}): {detail}")]
    BadRequest {
        /// The HTTP status.
        status: u16,
        /// The provider's message, shortened, key-like words redacted.
        detail: String,
    },
    /// 5xx, or a status that is neither success nor a client error: retry later.
    #[error("embedding provider failed (HTTP {status}): {detail}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The provider's message, shortened, key-like words redacted.
        detail: String,
    },
    /// A 2xx body that is not the format's answer.
    #[error("malformed embedding response: {detail}")]
    Malformed {
        /// What was wrong, shortened.
        detail: String,
    },
    /// The answer has a different number of vectors than texts were sent.
    #[error("embedding response has {got} vectors for {expected} texts")]
    CountMismatch {
        /// Texts sent.
        expected: usize,
        /// Vectors received.
        got: usize,
    },
}

impl EmbedError {
    /// True for failures that may pass if the same request is sent again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, EmbedError::RateLimited | EmbedError::Server { .. })
    }
}

/// A [`EmbedError::Malformed`] with `detail` shortened.
pub(super) fn malformed(detail: impl AsRef<str>) -> EmbedError {
    EmbedError::Malformed {
        detail: short(detail.as_ref()),
    }
}

/// The error of a non-2xx answer.
pub(super) fn status_error(status: u16, body: &[u8]) -> EmbedError {
    let detail = || {
        error_detail(body)
            .or_else(|| Some(short(&String::from_utf8_lossy(body))).filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "no details".to_owned())
    };
    match status {
        429 => EmbedError::RateLimited,
        401 | 403 => EmbedError::Auth { status },
        400..=499 if rejects_key(body) => EmbedError::Auth { status },
        400..=499 if status != 408 => EmbedError::BadRequest {
            status,
            detail: detail(),
        },
        _ => EmbedError::Server {
            status,
            detail: detail(),
        },
    }
}

/// True for bodies that say the key is invalid: Gemini answers a bad key with HTTP 400 and reason
/// `API_KEY_INVALID`.
fn rejects_key(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.contains("API_KEY_INVALID") || text.to_lowercase().contains("api key not valid")
}

/// The message of a JSON error body: `{"error": {"message": ..}}` (OpenAI, Gemini),
/// `{"error": ".."}` (Ollama) or `{"message"|"detail": ..}`, shortened.
pub(super) fn error_detail(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let message = match value.get("error") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(e) => e.get("message").and_then(Value::as_str),
        None => None,
    }
    .or_else(|| value.get("message").and_then(Value::as_str))
    .or_else(|| value.get("detail").and_then(Value::as_str))?;
    Some(short(message)).filter(|s| !s.is_empty())
}

/// `message` with whitespace collapsed, key-like words redacted, at most [`MAX_DETAIL_CHARS`]
/// characters.
fn short(message: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
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
            if chars >= MAX_DETAIL_CHARS {
                out.push('…');
                return out;
            }
            out.push(c);
            chars += 1;
        }
    }
    out
}

/// OpenAI-style (`sk-…`) and Google (`AIza…`) keys, also inside a word (`key=sk-…`), and any
/// run of 24 or more letters, digits and underscores that mixes letters and digits (other
/// providers' keys, bearer tokens).
fn looks_like_key(word: &str) -> bool {
    let prefixed = ["sk-", "AIza"].iter().any(|prefix| {
        word.match_indices(prefix).any(|(i, _)| {
            let starts_word = word[..i]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_ascii_alphanumeric());
            starts_word && word.len() - i >= 20
        })
    });
    let token = word
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|run| {
            run.len() >= 24
                && run.bytes().any(|b| b.is_ascii_digit())
                && run.bytes().any(|b| b.is_ascii_alphabetic())
        });
    prefixed || token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_collapses_truncates_and_redacts() {
        assert_eq!(short("  a\n\tb  c "), "a b c");
        assert_eq!(
            short("Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwx."),
            "Incorrect API key provided: [redacted]"
        );
        assert_eq!(
            short("key AIzaSyA1234567890abcdefghij invalid"),
            "key [redacted] invalid"
        );
        assert_eq!(
            short("token 0123456789abcdef0123456789abcdef01 bad"),
            "token [redacted] bad"
        );
        assert_eq!(
            short("model text-embedding-3-small-and-more-words"),
            "model text-embedding-3-small-and-more-words"
        );
        assert_eq!(
            short("header key=sk-proj-abcdefghijklmnopqrstuvwx, rejected"),
            "header [redacted] rejected"
        );
        assert_eq!(
            short("model task-embedding-model-with-a-long-name"),
            "model task-embedding-model-with-a-long-name"
        );
        let long = short(&"word ".repeat(100));
        assert_eq!(long.chars().count(), MAX_DETAIL_CHARS + 1);
        assert!(long.ends_with('…'));
    }
}
