//! A memory shard: owns the items that hash to it, serves queries over them.
//!
//! Supervised by the node supervisor, registered as `<node>/memory/<i>`. A write is acknowledged
//! once the store has it; a restarted shard reloads its partition from the store.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;

use crate::ids::NetworkId;
use crate::store::{Store, StoreError};
use crate::types::{MemoryItem, MemoryQuery};

/// Messages to a shard.
#[derive(RactorMessage)]
pub enum ShardMsg {
    /// Store an item; the reply (if asked for) comes once it is stored.
    Put(
        Box<MemoryItem>,
        Option<RpcReplyPort<Result<(), StoreError>>>,
    ),
    /// The first `offset + limit` matching items of a network, newest first, and the count.
    Query(NetworkId, MemoryQuery, RpcReplyPort<ShardPage>),
    /// Forget a deleted network.
    DropNetwork(NetworkId),
    /// Counts.
    Stats(RpcReplyPort<ShardStats>),
}

/// One shard's answer to a query.
#[derive(Debug, Clone, Default)]
pub struct ShardPage {
    /// Up to `offset + limit` items, newest first.
    pub items: Vec<MemoryItem>,
    /// All matching items on this shard.
    pub total: usize,
}

/// One shard's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Items held.
    pub items: usize,
    /// Networks with items here.
    pub networks: usize,
}

/// What a shard starts with.
pub struct ShardArgs {
    /// Its index.
    pub index: u32,
    /// How many shards the node has.
    pub shards: u32,
    /// Where items are kept.
    pub store: Arc<dyn Store>,
}

/// A shard's state.
pub struct ShardState {
    store: Arc<dyn Store>,
    items: HashMap<NetworkId, Vec<MemoryItem>>,
    count: usize,
}

/// The shard actor.
pub struct MemoryShard;

impl Actor for MemoryShard {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ShardMsg>,
        args: ShardArgs,
    ) -> Result<ShardState, ActorProcessingErr> {
        let loaded = args.store.load_memory(args.index, args.shards).await?;
        let mut state = ShardState {
            store: args.store,
            items: HashMap::new(),
            count: 0,
        };
        for item in loaded {
            state.insert(item);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<ShardMsg>,
        msg: ShardMsg,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ShardMsg::Put(item, reply) => {
                let stored = state.store.put_memory(&item).await;
                if stored.is_ok() {
                    state.insert(*item);
                } else if reply.is_none() {
                    tracing::warn!(error = ?stored, "memory write without a waiting caller failed");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(stored);
                }
            }
            ShardMsg::Query(network, query, reply) => {
                let _ = reply.send(state.query(network, &query));
            }
            ShardMsg::DropNetwork(network) => {
                if let Some(items) = state.items.remove(&network) {
                    state.count -= items.len();
                }
            }
            ShardMsg::Stats(reply) => {
                let _ = reply.send(ShardStats {
                    items: state.count,
                    networks: state.items.len(),
                });
            }
        }
        Ok(())
    }
}

impl ShardState {
    fn insert(&mut self, item: MemoryItem) {
        self.items.entry(item.network_id).or_default().push(item);
        self.count += 1;
    }

    fn query(&self, network: NetworkId, query: &MemoryQuery) -> ShardPage {
        let Some(items) = self.items.get(&network) else {
            return ShardPage::default();
        };
        let want = query.offset.saturating_add(query.limit);
        let mut page = ShardPage::default();
        for item in items.iter().rev().filter(|i| query.matches(i)) {
            if page.items.len() < want {
                page.items.push(item.clone());
            }
            page.total += 1;
        }
        page
    }
}
