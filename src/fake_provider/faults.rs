//! Scripted faults: the [`FaultRule`] and [`Fault`] types (their JSON is the
//! body of `POST /_fake/faults`) and the rule book that hands them out.
//!
//! Rules are kept in order; a request takes the first rule that matches it and
//! still has uses left. A rule's remaining uses are an atomic counter that is
//! decremented with a compare-and-swap, so `times: 5` faults exactly five
//! requests however many arrive at once. Readers take a snapshot (`Arc`) of the
//! rule list under a read lock held for a pointer copy, never across an await.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// A provider wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Anthropic Messages API (`POST /v1/messages`).
    Anthropic,
    /// OpenAI Chat Completions (`POST /v1/chat/completions`).
    Openai,
    /// Google Gemini (`POST /v1beta/models/{model}:generateContent`).
    Gemini,
    /// Ollama (`POST /api/chat`).
    Ollama,
}

impl Format {
    /// All formats, in counter order.
    pub const ALL: [Format; 4] = [Self::Anthropic, Self::Openai, Self::Gemini, Self::Ollama];

    /// The lowercase name used in JSON ("anthropic", "openai", "gemini", "ollama").
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::Openai => "openai",
            Self::Gemini => "gemini",
            Self::Ollama => "ollama",
        }
    }

    /// Index into per-format counter arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// When and how often a [`Fault`] applies.
///
/// JSON: `{"format": "openai", "model": "gpt-4o", "stream": true, "times": 3,
/// "fault": {"kind": "status", "status": 429, "retry_after_seconds": 2}}`;
/// every field but `fault` may be left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Only requests in this format (any format when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Only requests for exactly this model (any model when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Only streaming (`true`) or only non-streaming (`false`) requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// How many requests the rule faults before it expires (unlimited when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// What happens to a matching request.
    pub fault: Fault,
}

impl FaultRule {
    /// A rule that applies `fault` to every request until removed.
    pub fn always(fault: Fault) -> Self {
        Self {
            format: None,
            model: None,
            stream: None,
            times: None,
            fault,
        }
    }

    /// Restricts the rule to one format.
    pub fn format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// Restricts the rule to one model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Limits the rule to `times` requests.
    pub fn times(mut self, times: u64) -> Self {
        self.times = Some(times);
        self
    }

    /// Checks what serde cannot: a `status` fault's code must be 400–599.
    pub fn validate(&self) -> Result<(), String> {
        match &self.fault {
            Fault::Status { status, .. } if !(400..=599).contains(status) => Err(format!(
                "fault status {status} is not an error status (400-599)"
            )),
            Fault::Status {
                retry_after_seconds: Some(secs),
                ..
            } if !secs.is_finite() || *secs < 0.0 => Err(format!(
                "retry_after_seconds {secs} must be a non-negative number"
            )),
            _ => Ok(()),
        }
    }

    fn matches(&self, format: Format, model: &str, stream: bool) -> bool {
        self.format.is_none_or(|f| f == format)
            && self.model.as_deref().is_none_or(|m| m == model)
            && self.stream.is_none_or(|s| s == stream)
    }
}

/// What a fault does to a request (the JSON tag is `kind`).
///
/// A "chunk" below is one wire frame of a streamed answer: one SSE event, one
/// NDJSON line, or one element of Gemini's JSON-array stream, counted from the
/// first. The terminal frame (Anthropic `message_stop`, OpenAI `data: [DONE]`,
/// Gemini's chunk carrying `finishReason`, Ollama's `"done": true`) is never
/// sent by `stall` or `cut`. For a non-streaming request, `stall` and `cut`
/// send the first half of the JSON body (whatever `after_chunks` says).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Answer with an error status. The body is the format's own error body for
    /// that status (e.g. Anthropic `rate_limit_error`, `overloaded_error` for
    /// 529; OpenAI `rate_limit_exceeded`; Gemini `RESOURCE_EXHAUSTED`; Ollama
    /// `{"error": ...}`) unless `body` overrides it.
    Status {
        /// HTTP status, 400–599.
        status: u16,
        /// Sent as a `retry-after` header (whole seconds, rounded up); OpenAI
        /// answers also get `retry-after-ms` and Gemini bodies a `RetryInfo`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_seconds: Option<f64>,
        /// Raw JSON body replacing the default one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<serde_json::Value>,
    },
    /// Close the connection without sending a single byte of response
    /// (an RST when served by [`super::FakeProvider::serve`]).
    Reset,
    /// Send the status line and headers at once, then hold the first byte of
    /// the body back for `delay_ms` (a slow time-to-first-token).
    SlowFirstByte {
        /// Delay before the body's first byte, in milliseconds.
        delay_ms: u64,
    },
    /// Hold the whole answer, headers included, back for `ms` milliseconds.
    Latency {
        /// Delay before the response, in milliseconds.
        ms: u64,
    },
    /// Send `after_chunks` chunks, then keep the connection open without sending
    /// anything more (until the client gives up or the server shuts down).
    Stall {
        /// Chunks sent before the stall.
        after_chunks: usize,
    },
    /// Send `after_chunks` chunks, then end the body cleanly but without the
    /// terminal event.
    Cut {
        /// Chunks sent before the cut.
        after_chunks: usize,
    },
    /// Answer 200 with a body that is not valid JSON; a streamed answer gets one
    /// well-framed event whose data is garbage as its second chunk and then
    /// continues normally.
    Malformed,
    /// A format-correct blocked answer: OpenAI `finish_reason: "content_filter"`,
    /// Anthropic `stop_reason: "refusal"`, Gemini `finishReason: "SAFETY"` (with
    /// `safetyRatings`, no content), each with only the first quarter of the
    /// text; Ollama, which has no filter, answers a short refusal.
    ContentFilter,
}

impl Fault {
    /// The `kind` tag, e.g. "slow_first_byte".
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Reset => "reset",
            Self::SlowFirstByte { .. } => "slow_first_byte",
            Self::Latency { .. } => "latency",
            Self::Stall { .. } => "stall",
            Self::Cut { .. } => "cut",
            Self::Malformed => "malformed",
            Self::ContentFilter => "content_filter",
        }
    }

    /// Index into per-kind counters (order of [`Fault::KINDS`]).
    pub(crate) fn kind_index(&self) -> usize {
        Self::KINDS
            .iter()
            .position(|k| *k == self.kind())
            .unwrap_or(0)
    }

    /// Every `kind` tag.
    pub const KINDS: [&'static str; 8] = [
        "status",
        "reset",
        "slow_first_byte",
        "latency",
        "stall",
        "cut",
        "malformed",
        "content_filter",
    ];
}

/// A rule in the book, with its remaining uses.
#[derive(Debug)]
pub(crate) struct ActiveRule {
    pub rule: FaultRule,
    /// Uses left; `u64::MAX` stands for unlimited.
    remaining: AtomicU64,
}

impl ActiveRule {
    fn try_consume(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match n {
                0 => None,
                u64::MAX => Some(u64::MAX),
                n => Some(n - 1),
            })
            .is_ok()
    }

    fn remaining(&self) -> Option<u64> {
        match self.remaining.load(Ordering::Acquire) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    fn live(&self) -> bool {
        self.remaining.load(Ordering::Acquire) > 0
    }
}

/// The ordered list of active rules.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    rules: RwLock<Arc<[Arc<ActiveRule>]>>,
    /// Length of `rules`, so that requests skip the lock when there are none.
    len: AtomicUsize,
}

impl FaultBook {
    fn snapshot(&self) -> Arc<[Arc<ActiveRule>]> {
        self.rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, f: impl FnOnce(&[Arc<ActiveRule>]) -> Vec<Arc<ActiveRule>>) {
        let mut guard = self
            .rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = f(&guard);
        self.len.store(next.len(), Ordering::Release);
        *guard = next.into();
    }

    /// Appends rules (expired ones are dropped on the way).
    pub(crate) fn push(&self, rules: impl IntoIterator<Item = FaultRule>) {
        let added: Vec<_> = rules
            .into_iter()
            .map(|rule| {
                let remaining =
                    AtomicU64::new(rule.times.map_or(u64::MAX, |t| t.min(u64::MAX - 1)));
                Arc::new(ActiveRule { rule, remaining })
            })
            .collect();
        self.replace(|old| {
            old.iter()
                .filter(|r| r.live())
                .cloned()
                .chain(added)
                .collect()
        });
    }

    /// Removes every rule; returns how many were live.
    pub(crate) fn clear(&self) -> usize {
        let mut live = 0;
        self.replace(|old| {
            live = old.iter().filter(|r| r.live()).count();
            Vec::new()
        });
        live
    }

    /// The live rules with their remaining uses (`None` = unlimited).
    pub(crate) fn list(&self) -> Vec<(FaultRule, Option<u64>)> {
        self.snapshot()
            .iter()
            .filter(|r| r.live())
            .map(|r| (r.rule.clone(), r.remaining()))
            .collect()
    }

    /// Takes one use of the first live rule matching the request.
    pub(crate) fn take(
        &self,
        format: Format,
        model: &str,
        stream: bool,
    ) -> Option<Arc<ActiveRule>> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let rules = self.snapshot();
        rules
            .iter()
            .find(|r| r.rule.matches(format, model, stream) && r.try_consume())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_syntax_round_trips() {
        let json = r#"[
            {"format":"anthropic","model":"claude-x","times":5,
             "fault":{"kind":"status","status":529,"retry_after_seconds":1.5}},
            {"fault":{"kind":"status","status":429,"body":{"error":"custom"}}},
            {"stream":true,"fault":{"kind":"stall","after_chunks":3}},
            {"fault":{"kind":"cut","after_chunks":0}},
            {"fault":{"kind":"slow_first_byte","delay_ms":250}},
            {"fault":{"kind":"latency","ms":100}},
            {"fault":{"kind":"reset"}},
            {"fault":{"kind":"malformed"}},
            {"format":"gemini","fault":{"kind":"content_filter"}}
        ]"#;
        let rules: Vec<FaultRule> = serde_json::from_str(json).unwrap();
        assert_eq!(rules.len(), 9);
        assert_eq!(rules[0].format, Some(Format::Anthropic));
        assert_eq!(
            rules[0].fault,
            Fault::Status {
                status: 529,
                retry_after_seconds: Some(1.5),
                body: None
            }
        );
        let mut kinds: Vec<_> = rules[1..].iter().map(|r| r.fault.kind()).collect();
        kinds.sort_unstable();
        let mut all = Fault::KINDS.to_vec();
        all.sort_unstable();
        assert_eq!(kinds, all);
        let back: Vec<FaultRule> =
            serde_json::from_value(serde_json::to_value(&rules).unwrap()).unwrap();
        assert_eq!(back, rules);
        for (i, kind) in Fault::KINDS.iter().enumerate() {
            assert_eq!(
                rules
                    .iter()
                    .find(|r| r.fault.kind() == *kind)
                    .unwrap()
                    .fault
                    .kind_index(),
                i
            );
        }
    }

    #[test]
    fn typos_are_rejected() {
        assert!(
            serde_json::from_str::<FaultRule>(r#"{"time":1,"fault":{"kind":"reset"}}"#).is_err()
        );
        assert!(
            serde_json::from_str::<FaultRule>(r#"{"fault":{"kind":"stall","after":1}}"#).is_err()
        );
        assert!(serde_json::from_str::<FaultRule>(r#"{"fault":{"kind":"explode"}}"#).is_err());
        assert!(
            serde_json::from_str::<FaultRule>(r#"{"format":"cohere","fault":{"kind":"reset"}}"#)
                .is_err()
        );
        let bad = FaultRule::always(Fault::Status {
            status: 200,
            retry_after_seconds: None,
            body: None,
        });
        assert!(bad.validate().is_err());
        let ok = FaultRule::always(Fault::Status {
            status: 529,
            retry_after_seconds: Some(2.0),
            body: None,
        });
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn first_matching_live_rule_wins_and_expires() {
        let book = FaultBook::default();
        book.push([
            FaultRule::always(Fault::Reset)
                .format(Format::Openai)
                .model("a")
                .times(1),
            FaultRule::always(Fault::Malformed)
                .format(Format::Openai)
                .times(2),
            FaultRule::always(Fault::ContentFilter),
        ]);
        let kind = |f, m| book.take(f, m, false).map(|r| r.rule.fault.kind());
        assert_eq!(kind(Format::Anthropic, "a"), Some("content_filter"));
        assert_eq!(kind(Format::Openai, "a"), Some("reset"));
        assert_eq!(kind(Format::Openai, "a"), Some("malformed"));
        assert_eq!(kind(Format::Openai, "b"), Some("malformed"));
        assert_eq!(kind(Format::Openai, "b"), Some("content_filter"));
        book.push([FaultRule::always(Fault::Reset).times(0)]);
        assert_eq!(book.list().len(), 1, "expired rules are dropped");
        assert_eq!(book.clear(), 1);
        assert!(book.take(Format::Ollama, "x", true).is_none());
    }

    #[test]
    fn stream_matcher() {
        let book = FaultBook::default();
        let mut rule = FaultRule::always(Fault::Reset);
        rule.stream = Some(true);
        book.push([rule]);
        assert!(book.take(Format::Gemini, "m", false).is_none());
        assert!(book.take(Format::Gemini, "m", true).is_some());
    }

    #[test]
    fn times_is_exact_across_threads() {
        let book = Arc::new(FaultBook::default());
        book.push([FaultRule::always(Fault::Reset).times(37)]);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let book = book.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| book.take(Format::Openai, "m", false).is_some())
                        .count()
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 37);
        assert!(book.list().is_empty());
    }
}
