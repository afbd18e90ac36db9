//! The fake provider's answers: deterministic text derived from the request,
//! token estimates (4 characters a token), stream chunking, ids and timestamps.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// Characters counted as one token.
pub(crate) const CHARS_PER_TOKEN: u64 = 4;
/// How many characters of the question are quoted back.
const QUOTE_CHARS: usize = 200;
/// How many pieces a streamed answer is split into (at most).
const STREAM_PIECES: usize = 8;

/// Message content as the Anthropic and OpenAI formats send it: a plain string,
/// or a list of typed blocks of which only the `text` ones count here.
#[derive(Debug)]
pub(crate) enum Content {
    /// `"content": "Hello"`.
    Text(String),
    /// `"content": [{"type": "text", "text": "Hello"}, {"type": "image", ...}]`.
    Blocks(Vec<Block>),
}

/// One content block; fields other than `text` and `cache_control` are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct Block {
    /// The block's text, for text blocks.
    #[serde(default)]
    pub text: Option<String>,
    /// Anthropic's prompt-caching marker (its value is not looked at).
    #[serde(default)]
    pub cache_control: Option<serde::de::IgnoredAny>,
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A hand-written visitor instead of `#[serde(untagged)]`, which would
        // buffer every message before trying each variant.
        struct ContentVisitor;

        impl<'de> serde::de::Visitor<'de> for ContentVisitor {
            type Value = Content;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of content blocks")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Content, E> {
                Ok(Content::Text(text.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Content, E> {
                Ok(Content::Text(text))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Content, A::Error> {
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(block) = seq.next_element()? {
                    blocks.push(block);
                }
                Ok(Content::Blocks(blocks))
            }
        }

        deserializer.deserialize_any(ContentVisitor)
    }
}

impl Content {
    /// Number of characters of text in this content.
    pub(crate) fn chars(&self) -> usize {
        match self {
            Self::Text(text) => text.chars().count(),
            Self::Blocks(blocks) => blocks
                .iter()
                .filter_map(|b| b.text.as_deref())
                .map(|t| t.chars().count())
                .sum(),
        }
    }

    /// The text of this content (text blocks joined by newlines).
    pub(crate) fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Text(text) => text.as_str().into(),
            Self::Blocks(blocks) => {
                let mut texts = blocks.iter().filter_map(|b| b.text.as_deref());
                match (texts.next(), texts.next()) {
                    (None, _) => "".into(),
                    (Some(one), None) => one.into(),
                    (Some(first), Some(second)) => {
                        let mut joined = format!("{first}\n{second}");
                        for t in texts {
                            joined.push('\n');
                            joined.push_str(t);
                        }
                        joined.into()
                    }
                }
            }
        }
    }
}

/// Why an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The whole answer was produced.
    Complete,
    /// The answer was cut at the request's token limit.
    Length,
    /// A `content_filter` fault blocked the answer.
    Filtered,
}

/// A generated answer with its token accounting.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// The answer's text (possibly truncated).
    pub text: String,
    /// Why it ended.
    pub stop: Stop,
    /// Estimated prompt tokens (at least 1).
    pub prompt_tokens: u64,
    /// Estimated completion tokens.
    pub completion_tokens: u64,
}

/// What an answer is generated from.
pub(crate) struct Prompt<'a> {
    /// Format label used in the text, e.g. "anthropic".
    pub format: &'a str,
    /// The requested model.
    pub model: &'a str,
    /// The last user message.
    pub question: &'a str,
    /// Characters in the whole prompt (system and all messages).
    pub chars: usize,
    /// The request's output token limit, if any.
    pub max_tokens: Option<u64>,
}

/// Estimated prompt tokens for `chars` characters: ceil(chars / 4), at least 1.
pub(crate) fn prompt_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(CHARS_PER_TOKEN).max(1)
}

/// Estimated tokens for `chars` characters: ceil(chars / 4).
pub(crate) fn tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(CHARS_PER_TOKEN)
}

impl Answer {
    /// The deterministic answer to `prompt`; `filtered` applies a content filter
    /// (only the first quarter of the words survives).
    pub(crate) fn generate(prompt: &Prompt<'_>, filtered: bool) -> Self {
        let mut text = String::with_capacity(320 + prompt.question.len().min(QUOTE_CHARS * 4));
        let quoted = prefix_chars(prompt.question.trim(), QUOTE_CHARS);
        let _ = write!(
            text,
            "Fake {} answer to: {}. This is a deterministic reply from the aimesh fake provider \
             for model {}. It arrives in several pieces when streamed, so clients can exercise \
             incremental decoding. No real model was consulted.",
            prompt.format,
            if quoted.is_empty() { "(empty)" } else { quoted },
            prompt.model,
        );
        let mut stop = Stop::Complete;
        if filtered {
            let words = text.split_inclusive(char::is_whitespace).count();
            let keep: usize = text
                .split_inclusive(char::is_whitespace)
                .take(words.div_ceil(4))
                .map(str::len)
                .sum();
            text.truncate(keep);
            stop = Stop::Filtered;
        }
        if let Some(max) = prompt.max_tokens {
            let max_chars =
                usize::try_from(max.saturating_mul(CHARS_PER_TOKEN)).unwrap_or(usize::MAX);
            let kept = prefix_chars(&text, max_chars).len();
            if kept < text.len() {
                text.truncate(kept);
                stop = Stop::Length;
            }
        }
        let completion_tokens = tokens(text.chars().count());
        Self {
            text,
            stop,
            prompt_tokens: prompt_tokens(prompt.chars),
            completion_tokens,
        }
    }

    /// The answer split at word boundaries into at most 8 pieces that
    /// concatenate back to the whole text (none for an empty answer).
    pub(crate) fn pieces(&self) -> Vec<&str> {
        split_pieces(&self.text, STREAM_PIECES)
    }
}

/// The first `n` characters of `s`.
pub(crate) fn prefix_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((index, _)) => &s[..index],
        None => s,
    }
}

/// Splits `text` at word boundaries into at most `pieces` slices.
fn split_pieces(text: &str, pieces: usize) -> Vec<&str> {
    let words = text.split_inclusive(char::is_whitespace).count();
    let per_piece = words.div_ceil(pieces.max(1)).max(1);
    let mut out = Vec::with_capacity(pieces);
    let mut start = 0;
    let mut end = 0;
    for (i, word) in text.split_inclusive(char::is_whitespace).enumerate() {
        end += word.len();
        if (i + 1) % per_piece == 0 {
            out.push(&text[start..end]);
            start = end;
        }
    }
    if start < end {
        out.push(&text[start..end]);
    }
    out
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The current time as RFC 3339 with nanoseconds, e.g. `2025-10-17T23:14:07.414671123Z`.
pub(crate) fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs(), now.subsec_nanos())
}

/// Formats a Unix time as RFC 3339 in UTC.
fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A fresh identifier: `prefix` followed by `len` base-62 characters, unique
/// within the process and unpredictable enough to look real.
pub(crate) fn new_id(prefix: &str, len: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut state = nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    for _ in 0..len {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        id.push(char::from(ALPHABET[(z % 62) as usize]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt<'a>(question: &'a str, max_tokens: Option<u64>) -> Prompt<'a> {
        Prompt {
            format: "openai",
            model: "gpt-test",
            question,
            chars: question.chars().count(),
            max_tokens,
        }
    }

    #[test]
    fn answers_are_deterministic_and_quote_the_question() {
        let a = Answer::generate(&prompt("What is 2+2?", None), false);
        let b = Answer::generate(&prompt("What is 2+2?", None), false);
        assert_eq!(a.text, b.text);
        assert!(
            a.text.starts_with("Fake openai answer to: What is 2+2?. "),
            "{}",
            a.text
        );
        assert!(a.text.contains("gpt-test"));
        assert_eq!(a.stop, Stop::Complete);
        assert_eq!(a.prompt_tokens, 3);
        assert_eq!(a.completion_tokens, (a.text.len() as u64).div_ceil(4));
    }

    #[test]
    fn question_is_quoted_up_to_200_chars() {
        let long = "é".repeat(500);
        let a = Answer::generate(&prompt(&long, None), false);
        let quoted = a.text.trim_start_matches("Fake openai answer to: ");
        assert!(quoted.starts_with(&"é".repeat(200)));
        assert!(!quoted.starts_with(&"é".repeat(201)));
        assert_eq!(a.prompt_tokens, 125);
    }

    #[test]
    fn max_tokens_truncates_and_reports_length() {
        let a = Answer::generate(&prompt("hi", Some(5)), false);
        assert_eq!(a.text.chars().count(), 20);
        assert_eq!(a.stop, Stop::Length);
        assert_eq!(a.completion_tokens, 5);
        let zero = Answer::generate(&prompt("hi", Some(0)), false);
        assert_eq!(zero.text, "");
        assert_eq!(zero.completion_tokens, 0);
        assert!(zero.pieces().is_empty());
        let roomy = Answer::generate(&prompt("hi", Some(10_000)), false);
        assert_eq!(roomy.stop, Stop::Complete);
    }

    #[test]
    fn filtered_answers_keep_a_quarter() {
        let full = Answer::generate(&prompt("hi", None), false);
        let cut = Answer::generate(&prompt("hi", None), true);
        assert_eq!(cut.stop, Stop::Filtered);
        assert!(full.text.starts_with(&cut.text));
        assert!(cut.text.len() * 3 < full.text.len());
    }

    #[test]
    fn pieces_concatenate_to_the_answer() {
        let a = Answer::generate(&prompt("split me please", None), false);
        let pieces = a.pieces();
        assert!(pieces.len() >= 6 && pieces.len() <= 8, "{}", pieces.len());
        assert_eq!(pieces.concat(), a.text);
        assert_eq!(split_pieces("one", 8), vec!["one"]);
        assert_eq!(split_pieces("a b", 8), vec!["a ", "b"]);
    }

    #[test]
    fn content_text_and_chars() {
        let c: Content = serde_json::from_str(
            r#"[{"type":"text","text":"ab"},{"type":"image"},{"type":"text","text":"cd"}]"#,
        )
        .unwrap();
        assert_eq!(c.text(), "ab\ncd");
        assert_eq!(c.chars(), 4);
        let s: Content = serde_json::from_str(r#""h\u00e9llo""#).unwrap();
        assert_eq!(s.chars(), 5);
        assert_eq!(s.text(), "héllo");
        assert!(serde_json::from_str::<Content>("42").is_err());
        assert!(serde_json::from_str::<Content>(r#"[{"type":"text","text":7}]"#).is_err());
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            rfc3339(1_760_742_847, 414_671_000),
            "2025-10-17T23:14:07.414671000Z"
        );
        assert!(rfc3339_now().ends_with('Z'));
    }

    #[test]
    fn ids_are_unique_and_well_formed() {
        let a = new_id("msg_", 24);
        let b = new_id("msg_", 24);
        assert_ne!(a, b);
        assert_eq!(a.len(), 28);
        assert!(a[4..].chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
