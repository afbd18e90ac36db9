//! The exact-match response cache: same chain, messages and sampling parameters → the same
//! answer, for free. Bounded by entries, bytes and age; a request may opt out.

use std::num::NonZeroUsize;
use std::time::Duration;

use lru::LruCache;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::ModelRequest;
use crate::types::Usage;

/// Cache bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// On or off.
    pub enabled: bool,
    /// How long an answer stays.
    pub ttl: Duration,
    /// Most answers kept.
    pub max_entries: usize,
    /// Most bytes of answer text kept.
    pub max_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl: Duration::from_secs(3600),
            max_entries: 10_000,
            max_bytes: 64 << 20,
        }
    }
}

/// A cached answer.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedAnswer {
    /// The text.
    pub text: String,
    /// The model that answered originally.
    pub model: String,
    /// The provider that answered originally.
    pub provider: String,
    /// Its token counts (a hit costs nothing).
    pub usage: Usage,
    /// Why it stopped.
    pub finish_reason: Option<String>,
}

struct Entry {
    answer: CachedAnswer,
    stored: Instant,
    size: usize,
}

/// A cache key: SHA-256 of everything that shapes the answer.
pub type Key = [u8; 32];

/// The key of `request` served by `chain`.
pub fn key(chain: &str, request: &ModelRequest) -> Key {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(chain.as_bytes());
    for m in &request.messages {
        field(m.role.to_string().as_bytes());
        field(m.content.as_bytes());
    }
    field(&request.max_tokens.to_le_bytes());
    field(&request.temperature.to_bits().to_le_bytes());
    field(&request.top_p.map_or(u32::MAX, f32::to_bits).to_le_bytes());
    for s in &request.stop {
        field(s.as_bytes());
    }
    h.finalize().into()
}

/// The cache.
pub struct ResponseCache {
    config: CacheConfig,
    entries: LruCache<Key, Entry>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl ResponseCache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> Self {
        Self {
            entries: LruCache::new(
                NonZeroUsize::new(config.max_entries.max(1)).unwrap_or(NonZeroUsize::MIN),
            ),
            config,
            bytes: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// True if the cache is on.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The answer stored under `key`, if fresh.
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<CachedAnswer> {
        if !self.config.enabled {
            return None;
        }
        let fresh = match self.entries.get(key) {
            Some(e) if now.saturating_duration_since(e.stored) < self.config.ttl => {
                Some(e.answer.clone())
            }
            Some(_) => None,
            None => {
                self.misses += 1;
                return None;
            }
        };
        match fresh {
            Some(a) => {
                self.hits += 1;
                Some(a)
            }
            None => {
                if let Some(e) = self.entries.pop(key) {
                    self.bytes -= e.size;
                }
                self.misses += 1;
                None
            }
        }
    }

    /// Stores an answer, evicting the least recently used ones past the bounds.
    pub fn put(&mut self, key: Key, answer: CachedAnswer, now: Instant) {
        if !self.config.enabled {
            return;
        }
        let size = answer.text.len() + answer.model.len() + answer.provider.len() + 64;
        if size > self.config.max_bytes {
            return;
        }
        if let Some((_, old)) = self.entries.push(
            key,
            Entry {
                answer,
                stored: now,
                size,
            },
        ) {
            self.bytes -= old.size;
        }
        self.bytes += size;
        while self.bytes > self.config.max_bytes {
            match self.entries.pop_lru() {
                Some((_, e)) => self.bytes -= e.size,
                None => break,
            }
        }
    }

    /// Hits and misses so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Entries and bytes held.
    pub fn size(&self) -> (usize, usize) {
        (self.entries.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{ChatMessage, Role};

    fn request(text: &str) -> ModelRequest {
        ModelRequest::new("m", vec![ChatMessage::new(Role::User, text.into())])
    }

    fn answer(text: &str) -> CachedAnswer {
        CachedAnswer {
            text: text.into(),
            model: "m".into(),
            provider: "p".into(),
            usage: Usage::default(),
            finish_reason: None,
        }
    }

    #[test]
    fn keys_cover_everything_that_shapes_the_answer() {
        let a = request("hi");
        let mut b = request("hi");
        assert_eq!(key("c", &a), key("c", &b));
        b.temperature = 0.1;
        assert_ne!(key("c", &a), key("c", &b));
        assert_ne!(key("c", &a), key("d", &a));
        assert_ne!(key("c", &a), key("c", &request("hi!")));
        // Field boundaries matter: ("ab","c") differs from ("a","bc").
        let mut x = request("ab");
        x.stop = vec!["c".into()];
        let mut y = request("a");
        y.stop = vec!["bc".into()];
        assert_ne!(key("c", &x), key("c", &y));
    }

    #[test]
    fn hits_expire_and_bytes_are_bounded() {
        let t0 = Instant::now();
        let mut c = ResponseCache::new(CacheConfig {
            enabled: true,
            ttl: Duration::from_secs(10),
            max_entries: 100,
            max_bytes: 300,
        });
        let k1 = key("c", &request("1"));
        c.put(k1, answer("one"), t0);
        assert_eq!(c.get(&k1, t0).map(|a| a.text), Some("one".into()));
        assert!(c.get(&k1, t0 + Duration::from_secs(10)).is_none());
        assert_eq!(c.counts(), (1, 1));
        for i in 0..10 {
            c.put(
                key("c", &request(&i.to_string())),
                answer(&"x".repeat(50)),
                t0,
            );
        }
        let (entries, bytes) = c.size();
        assert!(
            bytes <= 300 && entries <= 3,
            "{entries} entries, {bytes} bytes"
        );
    }
}
