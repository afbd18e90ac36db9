//! Call counters: exact under concurrency (atomics, and a [`DashMap`] of
//! per-model atomics), plus a small ring of the most recent request bodies.
//! [`CallStats`] is the snapshot served by `GET /_fake/calls`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::faults::{Fault, Format};

/// How many recent requests [`CallStats::recent`] keeps.
pub const RECENT_CAPACITY: usize = 50;

/// A snapshot of the calls the fake provider has received (`GET /_fake/calls`).
///
/// Every request to a generation or embedding route is counted when it arrives, before auth
/// checks, validation and faults; listing routes (`/v1/models`, `/api/tags`, …)
/// and `/_fake` routes are not counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    /// Generation requests received.
    pub total: u64,
    /// Requests a fault rule applied to.
    pub faulted: u64,
    /// Requests refused before any fault could apply: missing credentials,
    /// unparseable or invalid bodies.
    pub rejected: u64,
    /// Requests that carried an API key (any value).
    pub with_api_key: u64,
    /// Requests by format; every format is present, zero or not.
    pub by_format: BTreeMap<Format, u64>,
    /// Requests by model (requests whose body could not be parsed have no model).
    pub by_model: BTreeMap<String, u64>,
    /// Requests by format, then model.
    pub by_format_model: BTreeMap<Format, BTreeMap<String, u64>>,
    /// Faults applied, by `kind`; every kind is present.
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Requests to the embedding routes (also counted in `total`, by format and by model).
    #[serde(default)]
    pub embeddings: u64,
    /// Texts those requests asked vectors for.
    #[serde(default)]
    pub embedded_inputs: u64,
    /// Requests by their `x-aimesh-idempotency-key` header (the calls aimesh makes for
    /// subtasks carry one), so a test can tell whether a call was repeated.
    #[serde(default)]
    pub by_idempotency_key: BTreeMap<String, u64>,
    /// The last [`RECENT_CAPACITY`] requests, oldest first.
    pub recent: Vec<RecordedCall>,
}

impl CallStats {
    /// Requests for `model` in `format`.
    pub fn count(&self, format: Format, model: &str) -> u64 {
        self.by_format_model
            .get(&format)
            .and_then(|m| m.get(model))
            .copied()
            .unwrap_or(0)
    }
}

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedCall {
    /// Arrival number, from 1 (not reset by [`super::FakeProvider::reset`]).
    pub seq: u64,
    /// The request's format.
    pub format: Format,
    /// The requested model, when the body could be parsed.
    pub model: Option<String>,
    /// Whether a streamed answer was asked for.
    pub stream: bool,
    /// The API key sent, if any.
    pub api_key: Option<String>,
    /// The W3C `traceparent` header sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The request body as JSON (a JSON string holding the raw text when the
    /// body was not valid JSON).
    pub body: serde_json::Value,
}

/// What is kept of a recent request until a snapshot parses its body.
#[derive(Clone)]
struct Recent {
    seq: u64,
    format: Format,
    model: Option<Box<str>>,
    stream: bool,
    api_key: Option<Box<str>>,
    traceparent: Option<Box<str>>,
    body: Bytes,
}

/// The live counters.
pub(crate) struct Stats {
    seq: AtomicU64,
    total: AtomicU64,
    faulted: AtomicU64,
    rejected: AtomicU64,
    with_api_key: AtomicU64,
    embeddings: AtomicU64,
    embedded_inputs: AtomicU64,
    by_format: [AtomicU64; 4],
    by_model: DashMap<Box<str>, [AtomicU64; 4]>,
    by_kind: [AtomicU64; Fault::KINDS.len()],
    by_key: DashMap<Box<str>, AtomicU64>,
    /// A ring of [`RECENT_CAPACITY`] slots; request `seq` goes to slot
    /// `seq % RECENT_CAPACITY`, each slot with its own short-held lock.
    recent: Box<[Mutex<Option<Recent>>]>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            seq: AtomicU64::new(0),
            total: AtomicU64::new(0),
            faulted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            with_api_key: AtomicU64::new(0),
            embeddings: AtomicU64::new(0),
            embedded_inputs: AtomicU64::new(0),
            by_format: Default::default(),
            by_model: DashMap::new(),
            by_kind: Default::default(),
            by_key: DashMap::new(),
            recent: (0..RECENT_CAPACITY).map(|_| Mutex::new(None)).collect(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stats {
    /// Counts a request's idempotency key.
    pub(crate) fn keyed(&self, key: Option<&str>) {
        if let Some(key) = key {
            match self.by_key.get(key) {
                Some(n) => {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.by_key
                        .entry(key.into())
                        .or_default()
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Counts one arriving request.
    pub(crate) fn record(
        &self,
        format: Format,
        model: Option<&str>,
        stream: bool,
        api_key: Option<&str>,
        traceparent: Option<&str>,
        body: &Bytes,
    ) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        self.by_format[format.index()].fetch_add(1, Ordering::Relaxed);
        if api_key.is_some() {
            self.with_api_key.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(model) = model {
            let bump = |counts: &[AtomicU64; 4]| {
                counts[format.index()].fetch_add(1, Ordering::Relaxed);
            };
            match self.by_model.get(model) {
                Some(counts) => bump(&counts),
                None => bump(&self.by_model.entry(model.into()).or_default()),
            }
        }
        let entry = Recent {
            seq,
            format,
            model: model.map(Into::into),
            stream,
            api_key: api_key.map(Into::into),
            traceparent: traceparent.map(Into::into),
            body: body.clone(),
        };
        let slot = &self.recent[(seq % RECENT_CAPACITY as u64) as usize];
        let mut slot = lock(slot);
        // A slower request must not overwrite a newer one that shares its slot.
        if slot.as_ref().is_none_or(|old| old.seq < seq) {
            *slot = Some(entry);
        }
    }

    /// Counts a request to an embedding route asking for `inputs` vectors.
    pub(crate) fn embedding(&self, inputs: u64) {
        self.embeddings.fetch_add(1, Ordering::Relaxed);
        self.embedded_inputs.fetch_add(inputs, Ordering::Relaxed);
    }

    /// Counts a request refused before faults (auth or validation).
    pub(crate) fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request a fault applied to.
    pub(crate) fn faulted(&self, fault: &Fault) {
        self.faulted.fetch_add(1, Ordering::Relaxed);
        self.by_kind[fault.kind_index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Zeroes every counter and forgets recent requests.
    pub(crate) fn reset(&self) {
        for counter in [
            &self.total,
            &self.faulted,
            &self.rejected,
            &self.with_api_key,
            &self.embeddings,
            &self.embedded_inputs,
        ]
        .into_iter()
        .chain(&self.by_format)
        .chain(&self.by_kind)
        {
            counter.store(0, Ordering::Relaxed);
        }
        self.by_model.clear();
        self.by_key.clear();
        for slot in &self.recent {
            *lock(slot) = None;
        }
    }

    /// A snapshot of the counters.
    pub(crate) fn snapshot(&self) -> CallStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut stats = CallStats {
            total: load(&self.total),
            faulted: load(&self.faulted),
            rejected: load(&self.rejected),
            with_api_key: load(&self.with_api_key),
            embeddings: load(&self.embeddings),
            embedded_inputs: load(&self.embedded_inputs),
            ..CallStats::default()
        };
        for format in Format::ALL {
            stats
                .by_format
                .insert(format, load(&self.by_format[format.index()]));
        }
        for (kind, counter) in Fault::KINDS.iter().zip(&self.by_kind) {
            stats
                .faults_by_kind
                .insert((*kind).to_owned(), load(counter));
        }
        for entry in &self.by_key {
            stats
                .by_idempotency_key
                .insert(entry.key().to_string(), load(entry.value()));
        }
        for entry in &self.by_model {
            let mut model_total = 0;
            for format in Format::ALL {
                let n = load(&entry.value()[format.index()]);
                if n > 0 {
                    model_total += n;
                    stats
                        .by_format_model
                        .entry(format)
                        .or_default()
                        .insert(entry.key().to_string(), n);
                }
            }
            stats.by_model.insert(entry.key().to_string(), model_total);
        }
        let mut recent: Vec<Recent> = self
            .recent
            .iter()
            .filter_map(|slot| lock(slot).clone())
            .collect();
        recent.sort_unstable_by_key(|r| r.seq);
        stats.recent = recent
            .into_iter()
            .map(|r| RecordedCall {
                seq: r.seq,
                format: r.format,
                model: r.model.map(Into::into),
                stream: r.stream,
                api_key: r.api_key.map(Into::into),
                traceparent: r.traceparent.map(Into::into),
                body: serde_json::from_slice(&r.body).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&r.body).into_owned())
                }),
            })
            .collect();
        stats
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn counts_by_format_and_model() {
        let stats = Stats::default();
        let body = Bytes::from_static(br#"{"model":"m1"}"#);
        stats.record(
            Format::Openai,
            Some("m1"),
            false,
            Some("k"),
            Some("00-tp"),
            &body,
        );
        stats.record(Format::Openai, Some("m1"), true, None, None, &body);
        stats.record(Format::Anthropic, Some("m1"), false, None, None, &body);
        stats.record(
            Format::Gemini,
            None,
            false,
            None,
            None,
            &Bytes::from_static(b"not json"),
        );
        stats.rejected();
        stats.faulted(&Fault::Malformed);
        let snap = stats.snapshot();
        assert_eq!(snap.total, 4);
        assert_eq!(snap.with_api_key, 1);
        assert_eq!(snap.rejected, 1);
        assert_eq!(snap.faulted, 1);
        assert_eq!(snap.faults_by_kind["malformed"], 1);
        assert_eq!(snap.faults_by_kind["reset"], 0);
        assert_eq!(snap.by_format[&Format::Openai], 2);
        assert_eq!(snap.by_format[&Format::Ollama], 0);
        assert_eq!(snap.by_model["m1"], 3);
        assert_eq!(snap.count(Format::Openai, "m1"), 2);
        assert_eq!(snap.count(Format::Anthropic, "m1"), 1);
        assert_eq!(snap.count(Format::Gemini, "m1"), 0);
        assert_eq!(snap.recent.len(), 4);
        assert_eq!(snap.recent[0].seq, 1);
        assert_eq!(snap.recent[0].api_key.as_deref(), Some("k"));
        assert_eq!(snap.recent[0].traceparent.as_deref(), Some("00-tp"));
        assert_eq!(snap.recent[1].traceparent, None);
        assert_eq!(snap.recent[0].body["model"], "m1");
        assert_eq!(snap.recent[3].body, "not json");
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["by_format"]["openai"], 2);
        assert_eq!(json["by_format_model"]["anthropic"]["m1"], 1);
        assert_eq!(serde_json::from_value::<CallStats>(json).unwrap(), snap);
        stats.reset();
        let snap = stats.snapshot();
        assert_eq!(snap.total, 0);
        assert!(snap.by_model.is_empty() && snap.recent.is_empty());
    }

    #[test]
    fn recent_keeps_the_last_fifty() {
        let stats = Stats::default();
        for i in 0..120 {
            stats.record(
                Format::Ollama,
                Some("m"),
                true,
                None,
                None,
                &Bytes::from(format!("{{\"i\":{i}}}")),
            );
        }
        let snap = stats.snapshot();
        assert_eq!(snap.recent.len(), RECENT_CAPACITY);
        assert_eq!(snap.recent[0].body["i"], 70);
        assert_eq!(snap.recent[49].body["i"], 119);
        assert_eq!(snap.recent[49].seq, 120);
    }

    #[test]
    fn counting_is_exact_across_threads() {
        let stats = Arc::new(Stats::default());
        let body = Bytes::from_static(b"{}");
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let stats = stats.clone();
                let body = body.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let model = format!("m{}", (t + i) % 5);
                        stats.record(Format::ALL[i % 4], Some(&model), false, None, None, &body);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let snap = stats.snapshot();
        assert_eq!(snap.total, 4000);
        assert_eq!(snap.by_format.values().sum::<u64>(), 4000);
        assert_eq!(snap.by_model.values().sum::<u64>(), 4000);
        assert_eq!(snap.by_model.len(), 5);
    }
}
