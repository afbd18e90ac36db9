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
use crate::types::{MemoryItem, MemoryKind, MemoryQuery};

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
    items: HashMap<NetworkId, NetworkItems>,
    count: usize,
}

/// One network's items on this shard, in arrival order, with an index per kind, so the common
/// queries (newest k, filtered by kind) cost O(k) and their totals O(1).
#[derive(Default)]
struct NetworkItems {
    items: Vec<MemoryItem>,
    by_kind: [Vec<usize>; 4],
}

fn kind_index(kind: MemoryKind) -> usize {
    match kind {
        MemoryKind::Fact => 0,
        MemoryKind::Context => 1,
        MemoryKind::Decision => 2,
        MemoryKind::Feedback => 3,
    }
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
                if let Some(n) = state.items.remove(&network) {
                    state.count -= n.items.len();
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
        let n = self.items.entry(item.network_id).or_default();
        n.by_kind[kind_index(item.kind)].push(n.items.len());
        n.items.push(item);
        self.count += 1;
    }

    fn query(&self, network: NetworkId, query: &MemoryQuery) -> ShardPage {
        let Some(n) = self.items.get(&network) else {
            return ShardPage::default();
        };
        let want = query.offset.saturating_add(query.limit);
        let kinds: Vec<usize> = if query.kinds.is_empty() {
            Vec::new()
        } else {
            let mut k: Vec<usize> = query.kinds.iter().map(|k| kind_index(*k)).collect();
            k.sort_unstable();
            k.dedup();
            k
        };
        let only_kinds =
            query.agent_id.is_none() && query.task_id.is_none() && query.session_id.is_none();
        if only_kinds && kinds.is_empty() {
            return ShardPage {
                items: n.items.iter().rev().take(want).cloned().collect(),
                total: n.items.len(),
            };
        }
        if only_kinds {
            // Merge the per-kind indexes newest first; stop after `want`.
            let mut cursors: Vec<&[usize]> =
                kinds.iter().map(|k| n.by_kind[*k].as_slice()).collect();
            let total = cursors.iter().map(|c| c.len()).sum();
            let mut items = Vec::with_capacity(want.min(total));
            while items.len() < want {
                let best = cursors
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| c.last().map(|pos| (*pos, i)))
                    .max();
                let Some((pos, i)) = best else { break };
                items.push(n.items[pos].clone());
                let c = &mut cursors[i];
                *c = &c[..c.len() - 1];
            }
            return ShardPage { items, total };
        }
        let mut page = ShardPage::default();
        for item in n.items.iter().rev().filter(|i| query.matches(i)) {
            if page.items.len() < want {
                page.items.push(item.clone());
            }
            page.total += 1;
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AgentId, MemoryId};
    use crate::store::InMemoryStore;
    use crate::types::now;

    fn item(network: NetworkId, kind: MemoryKind, n: u32, agent: Option<AgentId>) -> MemoryItem {
        MemoryItem {
            memory_id: MemoryId::new(),
            network_id: network,
            kind,
            content: serde_json::Value::from(format!("item {n}")),
            metadata: Default::default(),
            agent_id: agent,
            task_id: None,
            session_id: None,
            created_at: now(),
            updated_at: now(),
            expires_at: None,
        }
    }

    #[test]
    fn kind_queries_merge_newest_first_and_count_exactly() {
        let net = NetworkId::new();
        let agent = AgentId::new();
        let mut s = ShardState {
            store: Arc::new(InMemoryStore::new()),
            items: HashMap::new(),
            count: 0,
        };
        let kinds = [MemoryKind::Fact, MemoryKind::Decision, MemoryKind::Feedback];
        for n in 0..30u32 {
            let a = (n % 4 == 0).then_some(agent);
            s.insert(item(net, kinds[n as usize % 3], n, a));
        }
        let q = MemoryQuery {
            kinds: vec![MemoryKind::Fact, MemoryKind::Feedback],
            limit: 5,
            offset: 2,
            ..MemoryQuery::default()
        };
        let page = s.query(net, &q);
        assert_eq!(page.total, 20);
        let got: Vec<String> = page.items.iter().map(|i| i.content_text()).collect();
        // Newest first among facts (n % 3 == 0) and feedback (n % 3 == 2): 29, 27, 26, 24, 23...
        assert_eq!(
            got,
            [
                "item 29", "item 27", "item 26", "item 24", "item 23", "item 21", "item 20"
            ]
        );
        let by_agent = s.query(
            net,
            &MemoryQuery {
                agent_id: Some(agent),
                limit: 100,
                ..MemoryQuery::default()
            },
        );
        assert_eq!(by_agent.total, 8);
        assert_eq!(s.query(NetworkId::new(), &q).total, 0);
    }
}
