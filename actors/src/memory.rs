//! The client side of shared memory: places writes on shards and fans queries out over them.
//! It embeds search queries itself, before a search reaches the shards, so a provider's
//! embedding call runs in the caller's task, never in a shard's handler.

use std::time::Duration;

use futures::future::join_all;

use crate::embedding::{Embedding, EmbeddingError};
use crate::ids::{MemoryId, NetworkId};
use crate::memory_shard::{ShardMsg, ShardPage};
use crate::names::{Names, lookup};
use crate::placement::shard_of;
use crate::rpc::{CallError, ask};
use crate::store::StoreError;
use crate::types::{MemoryItem, MemoryQuery, Page};

/// Why a memory operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MemoryError {
    /// The shard is not running (it may be restarting).
    #[error("memory shard {shard} is unavailable: {cause}")]
    ShardUnavailable {
        /// Which shard.
        shard: u32,
        /// Why.
        cause: CallError,
    },
    /// The store refused the write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The query could not be embedded (the embedding provider failed).
    #[error(transparent)]
    Embedding(#[from] EmbeddingError),
}

/// Reaches a node's memory shards by name.
#[derive(Clone)]
pub struct MemoryClient {
    names: Names,
    shards: u32,
    timeout: Duration,
    embedder: Embedding,
    /// The store, when it keeps and searches vectors itself (pgvector).
    store: Option<std::sync::Arc<dyn crate::store::Store>>,
}

impl std::fmt::Debug for MemoryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryClient")
            .field("node", &self.names.node())
            .field("shards", &self.shards)
            .field("embedder", &self.embedder.name())
            .finish()
    }
}

impl MemoryClient {
    /// A client for `shards` shards of the node `names` belongs to, embedding queries with
    /// `embedder` (the shards' own).
    pub fn new(names: Names, shards: u32, timeout: Duration, embedder: Embedding) -> Self {
        Self {
            names,
            shards: shards.max(1),
            timeout,
            embedder,
            store: None,
        }
    }

    /// Searches run in `store` when it has its own vector index (PostgreSQL with pgvector).
    pub fn with_store(mut self, store: std::sync::Arc<dyn crate::store::Store>) -> Self {
        if store.vectors().is_some() {
            self.store = Some(store);
        }
        self
    }

    /// The items of a network most relevant to `text` (by the shards' embedder), best first,
    /// with scores. Fails if the embedding provider does: results are never ranked in another
    /// embedder's vector space.
    pub async fn relevant(
        &self,
        network: NetworkId,
        text: &str,
        query: &MemoryQuery,
    ) -> Result<Vec<(MemoryItem, f32)>, MemoryError> {
        let vector = self.embedder.embed_query(text).await?;
        if vector.is_empty() {
            // Blank text: a provider is not asked, and nothing is similar to nothing.
            return Ok(Vec::new());
        }
        self.search(network, vector, query).await
    }

    /// The embedder (its name is in search answers).
    pub fn embedder(&self) -> &Embedding {
        &self.embedder
    }

    /// How many shards there are.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    fn shard_ref(&self, shard: u32) -> Result<ractor::ActorRef<ShardMsg>, MemoryError> {
        lookup(&self.names.shard(shard)).ok_or(MemoryError::ShardUnavailable {
            shard,
            cause: CallError::Gone,
        })
    }

    /// Stores `item`; returns once it is stored.
    pub async fn put(&self, item: MemoryItem) -> Result<(), MemoryError> {
        let shard = shard_of(item.network_id, item.memory_id, self.shards);
        let actor = self.shard_ref(shard)?;
        ask(&actor, self.timeout, |r| {
            ShardMsg::Put(Box::new(item), Some(r))
        })
        .await
        .map_err(|cause| MemoryError::ShardUnavailable { shard, cause })??;
        Ok(())
    }

    /// Stores `item` without waiting; for records whose loss only costs context.
    pub fn put_detached(&self, item: MemoryItem) {
        let shard = shard_of(item.network_id, item.memory_id, self.shards);
        match self.shard_ref(shard) {
            Ok(actor) => {
                if actor.cast(ShardMsg::Put(Box::new(item), None)).is_err() {
                    tracing::debug!(shard, "memory shard stopped before a detached write");
                }
            }
            Err(e) => tracing::debug!(error = %e, "detached memory write dropped"),
        }
    }

    /// A page of a network's items, newest first.
    pub async fn query(
        &self,
        network: NetworkId,
        query: &MemoryQuery,
    ) -> Result<Page<MemoryItem>, MemoryError> {
        let calls = (0..self.shards).map(|shard| async move {
            let actor = self.shard_ref(shard)?;
            ask(&actor, self.timeout, |r| {
                ShardMsg::Query(network, query.clone(), r)
            })
            .await
            .map_err(|cause| MemoryError::ShardUnavailable { shard, cause })
        });
        let mut all: Vec<MemoryItem> = Vec::new();
        let mut total = 0;
        for page in join_all(calls).await {
            let ShardPage { items, total: t } = page?;
            total += t;
            all.extend(items);
        }
        // Ids are UUID v7: descending id is newest first.
        all.sort_unstable_by_key(|i| std::cmp::Reverse(i.memory_id));
        let items: Vec<MemoryItem> = all
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .collect();
        Ok(Page::new(items, total, query.limit, query.offset))
    }

    /// Tells every shard to forget a deleted network.
    /// Loads a network's items into every shard (this node took the network over).
    pub async fn load_network(&self, network: NetworkId) -> Result<usize, MemoryError> {
        let mut loaded = 0;
        for shard in 0..self.shards {
            let actor = self.shard_ref(shard)?;
            loaded += ask(&actor, self.timeout * 4, |r| {
                ShardMsg::LoadNetwork(network, r)
            })
            .await
            .map_err(|cause| MemoryError::ShardUnavailable { shard, cause })??;
        }
        Ok(loaded)
    }

    /// Forgets a network in every shard (its items stay in the store).
    pub fn drop_network(&self, network: NetworkId) {
        for shard in 0..self.shards {
            if let Ok(actor) = self.shard_ref(shard) {
                let _ = actor.cast(ShardMsg::DropNetwork(network));
            }
        }
    }
}

impl MemoryClient {
    /// The `query.limit` items of a network most similar to `vector`, best first, with scores.
    pub async fn search(
        &self,
        network: NetworkId,
        vector: Vec<f32>,
        query: &MemoryQuery,
    ) -> Result<Vec<(MemoryItem, f32)>, MemoryError> {
        if let Some(vs) = self.store.as_ref().and_then(|s| s.vectors()) {
            return self.search_store(vs, network, &vector, query).await;
        }
        let vector = std::sync::Arc::new(vector);
        let calls = (0..self.shards).map(|shard| {
            let vector = vector.clone();
            async move {
                let actor = self.shard_ref(shard)?;
                ask(&actor, self.timeout, |r| {
                    ShardMsg::Search(network, vector, query.clone(), r)
                })
                .await
                .map_err(|cause| MemoryError::ShardUnavailable { shard, cause })
            }
        });
        let mut all = Vec::new();
        for hits in join_all(calls).await {
            all.extend(hits?);
        }
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.memory_id.cmp(&a.0.memory_id)));
        all.truncate(query.limit);
        Ok(all)
    }

    /// A search in the store's vector index: its nearest items, kept if they match the
    /// filters (the shards hold the items), asking for more while filters leave too few.
    async fn search_store(
        &self,
        vs: &dyn crate::store::VectorStore,
        network: NetworkId,
        vector: &[f32],
        query: &MemoryQuery,
    ) -> Result<Vec<(MemoryItem, f32)>, MemoryError> {
        /// The most candidates one search reads.
        const MAX_CANDIDATES: usize = 20_000;
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        // What was acknowledged before this search is found by it.
        if !vs.flush().await {
            tracing::debug!(%network, "searching before the newest memory vectors are written");
        }
        let mut limit = query.limit.saturating_mul(4).clamp(64, MAX_CANDIDATES);
        loop {
            let hits = vs
                .nearest(network, self.embedder.name(), vector, limit)
                .await?;
            let got = hits.len();
            let mut by_shard: std::collections::HashMap<u32, Vec<(MemoryId, f32)>> =
                std::collections::HashMap::new();
            for (id, score) in hits {
                by_shard
                    .entry(shard_of(network, id, self.shards))
                    .or_default()
                    .push((id, score));
            }
            let calls = by_shard.into_iter().map(|(shard, hits)| async move {
                let actor = self.shard_ref(shard)?;
                ask(&actor, self.timeout, |r| {
                    ShardMsg::Resolve(network, hits, query.clone(), r)
                })
                .await
                .map_err(|cause| MemoryError::ShardUnavailable { shard, cause })
            });
            let mut all = Vec::new();
            for found in join_all(calls).await {
                all.extend(found?);
            }
            if all.len() >= query.limit || got < limit || limit >= MAX_CANDIDATES {
                all.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.memory_id.cmp(&a.0.memory_id)));
                all.truncate(query.limit);
                return Ok(all);
            }
            limit = limit.saturating_mul(4).min(MAX_CANDIDATES);
        }
    }

    /// Each shard's counts, in shard order.
    pub async fn stats(&self) -> Result<Vec<crate::memory_shard::ShardStats>, MemoryError> {
        let calls = (0..self.shards).map(|shard| async move {
            let actor = self.shard_ref(shard)?;
            ask(&actor, self.timeout, ShardMsg::Stats)
                .await
                .map_err(|cause| MemoryError::ShardUnavailable { shard, cause })
        });
        join_all(calls).await.into_iter().collect()
    }

    /// One sweep over every shard as of `now`: expired items and items past their network's
    /// retention age go, then each network with `max_items` keeps only its newest items.
    pub async fn sweep(
        &self,
        now: crate::types::Timestamp,
        retention: std::collections::HashMap<NetworkId, crate::types::Retention>,
        default: crate::types::Retention,
    ) -> Result<usize, MemoryError> {
        let retention = std::sync::Arc::new(retention);
        let mut removed = 0;
        for shard in 0..self.shards {
            let actor = self.shard_ref(shard)?;
            let retention = retention.clone();
            removed += ask(&actor, self.timeout, |reply| ShardMsg::Sweep {
                now,
                retention,
                default,
                reply,
            })
            .await
            .map_err(|cause| MemoryError::ShardUnavailable { shard, cause })?;
        }
        for (network, r) in retention.iter() {
            if let Some(max) = r.max_items.or(default.max_items) {
                removed += self.keep_newest(*network, max).await?;
            }
        }
        Ok(removed)
    }

    /// Removes all but the `max` newest items of a network, across shards.
    pub async fn keep_newest(&self, network: NetworkId, max: u64) -> Result<usize, MemoryError> {
        let mut ids = Vec::new();
        for shard in 0..self.shards {
            let actor = self.shard_ref(shard)?;
            ids.extend(
                ask(&actor, self.timeout, |r| ShardMsg::Ids(network, r))
                    .await
                    .map_err(|cause| MemoryError::ShardUnavailable { shard, cause })?,
            );
        }
        let Ok(max) = usize::try_from(max) else {
            return Ok(0);
        };
        if ids.len() <= max {
            return Ok(0);
        }
        ids.sort_unstable_by(|a, b| b.cmp(a));
        // Everything older than the max-th newest goes.
        let Some(&cutoff) = ids.get(max.saturating_sub(1)) else {
            return Ok(0);
        };
        let mut removed = 0;
        for shard in 0..self.shards {
            let actor = self.shard_ref(shard)?;
            removed += ask(&actor, self.timeout, |r| {
                ShardMsg::DropOlder(network, cutoff, r)
            })
            .await
            .map_err(|cause| MemoryError::ShardUnavailable { shard, cause })?;
        }
        Ok(removed)
    }

    /// Removes a session's items from every shard.
    pub async fn drop_session(
        &self,
        network: NetworkId,
        session: &str,
    ) -> Result<usize, MemoryError> {
        let mut removed = 0;
        for shard in 0..self.shards {
            let actor = self.shard_ref(shard)?;
            let s = session.to_owned();
            removed += ask(&actor, self.timeout, |r| {
                ShardMsg::DropSession(network, s, r)
            })
            .await
            .map_err(|cause| MemoryError::ShardUnavailable { shard, cause })?;
        }
        Ok(removed)
    }
}
