//! A shard's vectors: putting them in its networks' indexes, and the items waiting for
//! provider vectors.
//!
//! Waiting items queue in id (time) order. One owned task at a time embeds a batch of them (up to the
//! provider's batch size, identical texts sent once) and casts the vectors back as
//! [`ShardMsg::Embedded`]; the shard caches them by content hash and indexes them. When the
//! provider fails, the items stay queued and the shard tries again after a back-off (1 s,
//! doubling up to a minute), so an outage loses no item and none is ever indexed with another
//! embedder's vector. Searches meanwhile fail at the query's own embedding, with the cause.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;

use super::{ShardMsg, ShardState, search_text};
use crate::embedding::{ContentKey, Embedding, EmbeddingError, content_key};
use crate::ids::{MemoryId, NetworkId};
use crate::owned::OwnedTask;
use crate::search::VectorIndex;

/// The wait after a first failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Items waiting for vectors, the batch in flight and the back-off.
#[derive(Default)]
pub(super) struct EmbedQueue {
    /// Each waiting item's network and the content key of its text.
    waiting: BTreeMap<MemoryId, (NetworkId, ContentKey)>,
    /// The batch being embedded.
    in_flight: Option<Batch>,
    /// The timer that ends a back-off.
    retry: Option<OwnedTask>,
    /// The current back-off, while the provider is failing.
    backoff: Option<Duration>,
}

/// A batch being embedded.
struct Batch {
    /// The items it covers and the key of each one's text.
    entries: Vec<(MemoryId, ContentKey)>,
    /// The key of each text sent, in order.
    keys: Vec<ContentKey>,
    /// The call; dropping it aborts the call.
    _task: OwnedTask,
}

impl EmbedQueue {
    /// Items waiting.
    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Stops waiting for a removed item.
    pub(super) fn forget(&mut self, id: &MemoryId) {
        self.waiting.remove(id);
    }

    /// Stops waiting for a dropped network's items.
    pub(super) fn forget_network(&mut self, network: NetworkId) {
        self.waiting.retain(|_, (n, _)| *n != network);
    }
}

impl ShardState {
    /// Puts `vector` in its network's index (made now if it is the first); an empty vector
    /// (blank text) or one of another length than the index's is left out.
    pub(super) fn index(&mut self, network: NetworkId, id: MemoryId, vector: &[f32]) {
        let threshold = self.ann_threshold;
        let Some(n) = self.networks.get_mut(&network) else {
            return;
        };
        if vector.is_empty() || !n.items.contains_key(&id) {
            return;
        }
        if self.store.vectors().is_some() {
            // The store keeps and searches vectors (pgvector): it gets this one.
            self.outbox.push((network, id, vector.to_vec()));
            return;
        }
        let index = n
            .vectors
            .get_or_insert_with(|| VectorIndex::new(vector.len(), threshold));
        if index.dims() != vector.len() {
            tracing::warn!(
                %network, expected = index.dims(), got = vector.len(),
                "the embedder answered a vector of another length; the item is left out of search"
            );
            return;
        }
        index.insert(id.as_uuid().as_u128(), vector.to_vec());
    }

    /// Indexes the item with its cached vector, or queues it for one.
    pub(super) fn wait_for_vector(&mut self, network: NetworkId, id: MemoryId, text: &str) {
        let key = content_key(text);
        match self.cache.get(&key) {
            Some(vector) => {
                self.queue.waiting.remove(&id);
                self.index(network, id, &vector);
            }
            None => {
                self.queue.waiting.insert(id, (network, key));
            }
        }
    }

    /// Starts embedding the next batch, unless one is in flight, a back-off runs, or nothing
    /// waits.
    pub(super) fn pump(&mut self, myself: &ActorRef<ShardMsg>) {
        let Embedding::Provider(provider) = &self.embedder else {
            return;
        };
        let q = &mut self.queue;
        if q.in_flight.is_some() || q.retry.is_some() || q.waiting.is_empty() {
            return;
        }
        let max = provider.max_batch();
        let (mut entries, mut keys, mut texts) = (Vec::new(), Vec::new(), Vec::new());
        let mut seen = HashSet::new();
        let mut gone = Vec::new();
        for (id, (network, key)) in &q.waiting {
            let Some(item) = self.networks.get(network).and_then(|n| n.items.get(id)) else {
                gone.push(*id);
                continue;
            };
            if seen.insert(*key) {
                if keys.len() == max {
                    break;
                }
                keys.push(*key);
                texts.push(search_text(item));
            }
            entries.push((*id, *key));
        }
        for id in gone {
            q.waiting.remove(&id);
        }
        if entries.is_empty() {
            return;
        }
        let (provider, me) = (provider.clone(), myself.clone());
        let task = OwnedTask::spawn(async move {
            let result = provider.embed(&texts).await;
            if me.cast(ShardMsg::Embedded(result)).is_err() {
                tracing::debug!("memory shard stopped before its vectors came back");
            }
        });
        q.in_flight = Some(Batch {
            entries,
            keys,
            _task: task,
        });
    }

    /// The batch in flight came back: cache and index its vectors and go on, or back off.
    pub(super) fn embedded(
        &mut self,
        myself: &ActorRef<ShardMsg>,
        result: Result<Vec<Vec<f32>>, EmbeddingError>,
    ) {
        let Some(batch) = self.queue.in_flight.take() else {
            return;
        };
        match result {
            Ok(vectors) => {
                if self.queue.backoff.take().is_some() {
                    tracing::info!(
                        waiting = self.queue.len(),
                        "the embedding provider answers again; indexing the waiting memory items"
                    );
                }
                let by_key: HashMap<ContentKey, Arc<[f32]>> = batch
                    .keys
                    .iter()
                    .zip(vectors)
                    .map(|(k, v)| (*k, Arc::from(v)))
                    .collect();
                for (key, vector) in &by_key {
                    if !vector.is_empty() {
                        self.cache.put(*key, vector.clone());
                    }
                }
                for (id, key) in batch.entries {
                    // An item rewritten meanwhile waits for the vector of its new text.
                    if self.queue.waiting.get(&id).is_none_or(|(_, k)| *k != key) {
                        continue;
                    }
                    if let (Some((network, _)), Some(vector)) =
                        (self.queue.waiting.remove(&id), by_key.get(&key))
                    {
                        self.index(network, id, vector);
                    }
                }
                self.pump(myself);
            }
            Err(e) => {
                let backoff = self
                    .queue
                    .backoff
                    .map_or(FIRST_BACKOFF, |b| (b * 2).min(MAX_BACKOFF));
                if self.queue.backoff.is_none() {
                    tracing::warn!(error = %e, waiting = self.queue.len(), retry_in = ?backoff,
                        "memory items wait for their vectors: the embedding provider failed");
                } else {
                    tracing::debug!(error = %e, retry_in = ?backoff, "embedding still failing");
                }
                self.queue.backoff = Some(backoff);
                let me = myself.clone();
                self.queue.retry = Some(OwnedTask::spawn(async move {
                    tokio::time::sleep(backoff).await;
                    let _ = me.cast(ShardMsg::EmbedRetry);
                }));
            }
        }
    }

    /// A back-off is over.
    pub(super) fn retry(&mut self, myself: &ActorRef<ShardMsg>) {
        self.queue.retry = None;
        self.pump(myself);
    }
}
