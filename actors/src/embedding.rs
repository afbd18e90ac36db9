//! How memory text becomes vectors: in process, or through a provider's embedding API.
//!
//! - [`Embedding`]: what a node embeds with. [`Embedding::Local`] is a synchronous
//!   [`Embedder`] (the default hashing embedder): cheap, so shards run it in place.
//!   [`Embedding::Provider`] is a [`ProviderEmbedder`]: HTTP, so it never runs inside an actor's
//!   handler. Shards call it from owned tasks and cast the vectors back; [`crate::memory`]'s
//!   client embeds queries with it before a search reaches the shards.
//! - [`provider`]: the provider embedder (batching, timeout, normalisation, metrics).
//! - [`VectorCache`]: a shard's provider vectors by content hash, kept across the shard's
//!   restarts, so a re-load of a network does not pay for the same text twice in one process.
//! - [`EmbeddingError`]: why a provider embedding failed, naming the provider.
//!
//! Vectors from one embedder are never mixed with another's: a node has exactly one, and when
//! its provider fails, searches fail (and unembedded items wait) instead of falling back.

pub mod provider;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use provider::{EmbedderConfigError, ProviderEmbedder};

use crate::search::Embedder;
use crate::search::embeddings::EmbedError;

/// What a node embeds memory text with.
#[derive(Clone)]
pub enum Embedding {
    /// In process and synchronous (the hashing embedder).
    Local(Arc<dyn Embedder>),
    /// A provider's embedding API, over HTTP.
    Provider(Arc<ProviderEmbedder>),
}

impl std::fmt::Debug for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Embedding").field(&self.name()).finish()
    }
}

impl From<Arc<dyn Embedder>> for Embedding {
    fn from(embedder: Arc<dyn Embedder>) -> Self {
        Embedding::Local(embedder)
    }
}

impl<E: Embedder> From<E> for Embedding {
    fn from(embedder: E) -> Self {
        Embedding::Local(Arc::new(embedder))
    }
}

impl From<ProviderEmbedder> for Embedding {
    fn from(embedder: ProviderEmbedder) -> Self {
        Embedding::Provider(Arc::new(embedder))
    }
}

impl Embedding {
    /// Its name for logs and the API: `hashing-512`, `openai:text-embedding-3-small`.
    pub fn name(&self) -> &str {
        match self {
            Embedding::Local(e) => e.name(),
            Embedding::Provider(p) => p.name(),
        }
    }

    /// The vector of a search query. A provider is called (with its timeout); its failure is
    /// the search's failure.
    pub async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbeddingError> {
        match self {
            Embedding::Local(e) => Ok(e.embed(text)),
            Embedding::Provider(p) => {
                let mut vectors = p.embed(&[text.to_owned()]).await?;
                Ok(vectors.pop().unwrap_or_default())
            }
        }
    }
}

/// Why a provider embedding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("embedding provider {provider} (model {model}): {failure}")]
pub struct EmbeddingError {
    /// The provider's configured name, e.g. `openai`.
    pub provider: String,
    /// The embedding model.
    pub model: String,
    /// What went wrong.
    pub failure: EmbedFailure,
}

/// What went wrong with a provider embedding call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedFailure {
    /// No answer within the provider's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The provider could not be reached, or its answer could not be read.
    #[error("{0}")]
    Transport(String),
    /// The provider answered with an error, or with something that is not vectors.
    #[error(transparent)]
    Answer(#[from] EmbedError),
    /// The call's worst-case cost does not fit in the node's budget (it was not made).
    #[error("the node's budget has no room for this embedding call: {0}")]
    Budget(String),
}

impl EmbeddingError {
    /// A short, closed label for metrics: `timeout`, `transport`, `rate_limited`, `auth`,
    /// `bad_request`, `server`, `malformed`, `budget_exceeded`.
    pub fn code(&self) -> &'static str {
        match &self.failure {
            EmbedFailure::Timeout(_) => "timeout",
            EmbedFailure::Transport(_) => "transport",
            EmbedFailure::Budget(_) => "budget_exceeded",
            EmbedFailure::Answer(e) => match e {
                EmbedError::RateLimited => "rate_limited",
                EmbedError::Auth { .. } => "auth",
                EmbedError::BadRequest { .. } => "bad_request",
                EmbedError::Server { .. } => "server",
                EmbedError::Malformed { .. } | EmbedError::CountMismatch { .. } => "malformed",
            },
        }
    }
}

/// A fingerprint of a text: the first 16 bytes of its SHA-256.
pub type ContentKey = [u8; 16];

/// The [`ContentKey`] of `text`.
pub fn content_key(text: &str) -> ContentKey {
    let digest = Sha256::digest(text.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// Floats one shard's [`VectorCache`] keeps by default: 32 MiB, about 5,000 vectors of 1,536
/// dimensions.
pub const VECTOR_CACHE_FLOATS: usize = 8 << 20;

/// Provider vectors by [`ContentKey`], least recently used first out once the cache holds more
/// than its budget of floats. One per shard; the node keeps it, so it outlives the shard's
/// restarts. Only its shard's handler touches it (the lock is never held across an await).
#[derive(Debug)]
pub struct VectorCache {
    inner: Mutex<CacheInner>,
    max_floats: usize,
}

#[derive(Debug, Default)]
struct CacheInner {
    vectors: HashMap<ContentKey, (Arc<[f32]>, u64)>,
    /// Use order: tick → key.
    order: std::collections::BTreeMap<u64, ContentKey>,
    tick: u64,
    floats: usize,
}

impl VectorCache {
    /// A cache of at most `max_floats` floats.
    pub fn new(max_floats: usize) -> Self {
        Self {
            inner: Mutex::new(CacheInner::default()),
            max_floats,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The vector of `key`, if kept (and marks it used).
    pub fn get(&self, key: &ContentKey) -> Option<Arc<[f32]>> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let (vector, old) = {
            let entry = inner.vectors.get_mut(key)?;
            let old = std::mem::replace(&mut entry.1, tick);
            (entry.0.clone(), old)
        };
        inner.order.remove(&old);
        inner.order.insert(tick, *key);
        Some(vector)
    }

    /// Keeps `vector` for `key`, dropping the least recently used vectors past the budget.
    pub fn put(&self, key: ContentKey, vector: Arc<[f32]>) {
        if vector.len() > self.max_floats {
            return;
        }
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        inner.floats += vector.len();
        if let Some((old, old_tick)) = inner.vectors.insert(key, (vector, tick)) {
            inner.floats -= old.len();
            inner.order.remove(&old_tick);
        }
        inner.order.insert(tick, key);
        while inner.floats > self.max_floats {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some((v, _)) = inner.vectors.remove(&oldest) {
                inner.floats -= v.len();
            }
        }
    }

    /// How many vectors are kept.
    pub fn len(&self) -> usize {
        self.lock().vectors.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for VectorCache {
    fn default() -> Self {
        Self::new(VECTOR_CACHE_FLOATS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_the_recently_used_within_its_float_budget() {
        let cache = VectorCache::new(10);
        let v = |x: f32| -> Arc<[f32]> { Arc::from(vec![x; 4]) };
        cache.put(content_key("a"), v(1.0));
        cache.put(content_key("b"), v(2.0));
        // Using "a" makes "b" the least recently used.
        assert_eq!(cache.get(&content_key("a")).unwrap()[0], 1.0);
        cache.put(content_key("c"), v(3.0));
        assert!(cache.get(&content_key("b")).is_none());
        assert!(cache.get(&content_key("a")).is_some());
        assert!(cache.get(&content_key("c")).is_some());
        assert_eq!(cache.len(), 2);
        // Replacing a key does not count its floats twice.
        cache.put(content_key("c"), v(4.0));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&content_key("c")).unwrap()[0], 4.0);
        // A vector larger than the whole budget is not kept.
        cache.put(content_key("d"), Arc::from(vec![0.0; 11]));
        assert!(cache.get(&content_key("d")).is_none());
    }

    #[test]
    fn content_keys_tell_texts_apart() {
        assert_eq!(content_key("refund policy"), content_key("refund policy"));
        assert_ne!(content_key("refund policy"), content_key("refund policy."));
    }

    #[tokio::test]
    async fn a_local_embedder_embeds_queries_in_place() {
        let e = Embedding::from(crate::search::HashingEmbedder::new(64));
        assert_eq!(e.name(), "hashing-64");
        let v = e.embed_query("brand voice").await.unwrap();
        assert_eq!(v.len(), 64);
    }
}
