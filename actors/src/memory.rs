//! The client side of shared memory: places writes on shards and fans queries out over them.

use std::time::Duration;

use futures::future::join_all;

use crate::ids::NetworkId;
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
}

/// Reaches a node's memory shards by name.
#[derive(Clone, Debug)]
pub struct MemoryClient {
    names: Names,
    shards: u32,
    timeout: Duration,
}

impl MemoryClient {
    /// A client for `shards` shards of the node `names` belongs to.
    pub fn new(names: Names, shards: u32, timeout: Duration) -> Self {
        Self {
            names,
            shards: shards.max(1),
            timeout,
        }
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
    pub fn drop_network(&self, network: NetworkId) {
        for shard in 0..self.shards {
            if let Ok(actor) = self.shard_ref(shard) {
                let _ = actor.cast(ShardMsg::DropNetwork(network));
            }
        }
    }
}
