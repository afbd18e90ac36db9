//! A memory shard: owns the items that hash to it, serves listings and semantic search over
//! them, and removes what has expired.
//!
//! Supervised by the node supervisor, registered as `<node>/memory/<i>`. It indexes each item
//! as it arrives (by network, by kind, and as a vector for search) and has the store keep it;
//! the writer's reply comes once the item is durable, from an owned task, so the shard's mailbox
//! never waits on a disk. A restarted shard reloads its partition from the store.
//!
//! With an in-process embedder an item is embedded as it is indexed. With a provider's
//! ([`crate::embedding`]) an item is searchable once its vector has come back: items wait in a
//! queue that an owned task embeds in batches and casts back as [`ShardMsg::Embedded`] (the
//! `vectors` module); vectors are kept by content hash in the node's [`VectorCache`] for this
//! shard, so a network loaded again is not paid for twice. Writes never wait for embeddings.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;

use crate::embedding::{Embedding, EmbeddingError, VectorCache};
use crate::ids::{MemoryId, NetworkId};
use crate::search::VectorIndex;
use crate::store::{Store, StoreError};
use crate::types::{MemoryItem, MemoryKind, MemoryQuery, Retention, Timestamp};

mod vectors;

/// Messages to a shard.
#[derive(RactorMessage)]
pub enum ShardMsg {
    /// Store an item; the reply (if asked for) comes once it is durable.
    Put(
        Box<MemoryItem>,
        Option<RpcReplyPort<Result<(), StoreError>>>,
    ),
    /// The first `offset + limit` matching items of a network, newest first, and the count.
    Query(NetworkId, MemoryQuery, RpcReplyPort<ShardPage>),
    /// The `k` items most similar to a query vector, best first, among those matching filters.
    Search(
        NetworkId,
        Arc<Vec<f32>>,
        MemoryQuery,
        RpcReplyPort<Vec<(MemoryItem, f32)>>,
    ),
    /// Remove expired items and items past their network's retention age, as of `now`.
    Sweep {
        /// The time to sweep as of.
        now: Timestamp,
        /// Retention per network (networks not listed use `default`).
        retention: Arc<HashMap<NetworkId, Retention>>,
        /// The default retention.
        default: Retention,
        /// How many items were removed.
        reply: RpcReplyPort<usize>,
    },
    /// A network's item ids, newest first (for its `max_items` retention).
    Ids(NetworkId, RpcReplyPort<Vec<MemoryId>>),
    /// Remove a network's items older than the given id (ids are time-ordered).
    DropOlder(NetworkId, MemoryId, RpcReplyPort<usize>),
    /// Remove a session's items.
    DropSession(NetworkId, String, RpcReplyPort<usize>),
    /// Forget a network (deleted, or now owned by another node); the store keeps its items.
    DropNetwork(NetworkId),
    /// Load a network's items from the store (this node took it over); replies with the count.
    LoadNetwork(NetworkId, RpcReplyPort<Result<usize, StoreError>>),
    /// Counts.
    Stats(RpcReplyPort<ShardStats>),
    /// Internal: the vectors of the batch in flight (provider embedders), or why there are none.
    Embedded(Result<Vec<Vec<f32>>, EmbeddingError>),
    /// Internal: the back-off after a failed embedding is over; embed the waiting items.
    EmbedRetry,
    /// The store found these items nearest a query (its own vector index): the ones here that
    /// match the filters, with their scores.
    Resolve(
        NetworkId,
        Vec<(MemoryId, f32)>,
        MemoryQuery,
        RpcReplyPort<Vec<(MemoryItem, f32)>>,
    ),
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShardStats {
    /// Items held.
    pub items: usize,
    /// Networks with items here.
    pub networks: usize,
    /// Items waiting for their vectors (provider embedders); not yet found by search.
    pub unembedded: usize,
    /// Text bytes of the items held (content and string metadata).
    pub bytes: usize,
}

/// What a shard starts with.
pub struct ShardArgs {
    /// Its index.
    pub index: u32,
    /// How many shards the node has.
    pub shards: u32,
    /// Where items are kept.
    pub store: Arc<dyn Store>,
    /// Turns text into vectors for search.
    pub embedder: Embedding,
    /// Provider vectors by content hash (kept by the node across this shard's restarts).
    pub vector_cache: Arc<VectorCache>,
    /// Per-network vector indexes switch to HNSW past this many items.
    pub ann_threshold: usize,
    /// With a shared store, only the networks this node owns (loaded on demand); `None`: every
    /// network in the store.
    pub owned: Option<Arc<dashmap::DashMap<NetworkId, crate::node_supervisor::NetworkStatus>>>,
}

/// A shard's state.
pub struct ShardState {
    /// Its counters in the actor directory.
    counters: std::sync::Arc<crate::directory::Counters>,
    index: u32,
    shards: u32,
    store: Arc<dyn Store>,
    embedder: Embedding,
    ann_threshold: usize,
    networks: HashMap<NetworkId, NetworkItems>,
    count: usize,
    /// Text bytes of the items held.
    bytes: usize,
    /// Replies waiting for their writes to be durable, and store deletions.
    pending: tokio::task::JoinSet<()>,
    /// Items waiting for provider vectors, and the batch in flight.
    queue: vectors::EmbedQueue,
    /// Provider vectors by content hash.
    cache: Arc<VectorCache>,
    /// With the store's vector index: vectors made here, to be kept once their items are.
    outbox: Vec<(NetworkId, MemoryId, Vec<f32>)>,
}

/// One network's items on this shard, by id (time order), by kind, and as vectors (the index
/// is made with the first vector, whose length fixes its dimensions).
struct NetworkItems {
    items: BTreeMap<MemoryId, MemoryItem>,
    by_kind: [BTreeSet<MemoryId>; 4],
    vectors: Option<VectorIndex>,
}

fn kind_index(kind: MemoryKind) -> usize {
    match kind {
        MemoryKind::Fact => 0,
        MemoryKind::Context => 1,
        MemoryKind::Decision => 2,
        MemoryKind::Feedback => 3,
    }
}

/// The text an item is searched by: its content and its string metadata.
pub fn search_text(item: &MemoryItem) -> String {
    let mut text = item.content_text();
    for v in item.metadata.values() {
        if let serde_json::Value::String(s) = v {
            text.push(' ');
            text.push_str(s);
        }
    }
    text
}

/// The shard actor.
pub struct MemoryShard;

impl Actor for MemoryShard {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ShardMsg>,
        args: ShardArgs,
    ) -> Result<ShardState, ActorProcessingErr> {
        let loaded = match &args.owned {
            None => args.store.load_memory(args.index, args.shards).await?,
            Some(owned) if owned.is_empty() => Vec::new(),
            Some(owned) => args
                .store
                .load_memory(args.index, args.shards)
                .await?
                .into_iter()
                .filter(|i| owned.contains_key(&i.network_id))
                .collect(),
        };
        let (index, shards) = (args.index, args.shards);
        let mut state = ShardState {
            counters: crate::directory::counters(&myself.get_name().unwrap_or_default()),
            index,
            shards,
            store: args.store,
            embedder: args.embedder,
            ann_threshold: args.ann_threshold,
            networks: HashMap::new(),
            count: 0,
            bytes: 0,
            pending: tokio::task::JoinSet::new(),
            queue: vectors::EmbedQueue::default(),
            cache: args.vector_cache,
            outbox: Vec::new(),
        };
        state.load(loaded).await?;
        state.pump(&myself);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<ShardMsg>,
        msg: ShardMsg,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        state.counters.message();
        while state.pending.try_join_next().is_some() {}
        match msg {
            ShardMsg::Put(item, reply) => {
                let durable = state.store.put_memory(&item);
                state.insert(*item, true);
                state.pump(&myself);
                // Its vector is kept once the item is, before the write is acknowledged (a
                // search after the acknowledgement finds it).
                let vectors = std::mem::take(&mut state.outbox);
                let store = state.store.clone();
                let embedder = state.embedder.name().to_owned();
                state.pending.spawn(async move {
                    let r = durable.await;
                    if r.is_ok()
                        && let Some(vs) = store.vectors()
                    {
                        for (network, id, vector) in vectors {
                            vs.put(&embedder, network, id, vector);
                        }
                    }
                    match reply {
                        Some(reply) => {
                            let _ = reply.send(r);
                        }
                        None => {
                            if let Err(e) = r {
                                tracing::warn!(error = %e, "a memory write nobody waited for failed");
                            }
                        }
                    }
                });
            }
            ShardMsg::Query(network, query, reply) => {
                let _ = reply.send(state.query(network, &query));
            }
            ShardMsg::Search(network, vector, query, reply) => {
                let _ = reply.send(state.search(network, &vector, &query));
            }
            ShardMsg::Sweep {
                now,
                retention,
                default,
                reply,
            } => {
                let gone = state.expired(now, &retention, default);
                let _ = reply.send(state.remove(gone));
            }
            ShardMsg::Ids(network, reply) => {
                let ids = state
                    .networks
                    .get(&network)
                    .map(|n| n.items.keys().rev().copied().collect())
                    .unwrap_or_default();
                let _ = reply.send(ids);
            }
            ShardMsg::DropOlder(network, cutoff, reply) => {
                let gone: Vec<MemoryId> = state
                    .networks
                    .get(&network)
                    .map(|n| n.items.range(..cutoff).map(|(id, _)| *id).collect())
                    .unwrap_or_default();
                let _ = reply.send(state.remove(gone));
            }
            ShardMsg::DropSession(network, session, reply) => {
                let gone: Vec<MemoryId> = state
                    .networks
                    .get(&network)
                    .map(|n| {
                        n.items
                            .values()
                            .filter(|i| i.session_id.as_deref() == Some(session.as_str()))
                            .map(|i| i.memory_id)
                            .collect()
                    })
                    .unwrap_or_default();
                let _ = reply.send(state.remove(gone));
            }
            ShardMsg::DropNetwork(network) => state.drop_network(network),
            ShardMsg::LoadNetwork(network, reply) => {
                state.drop_network(network);
                let loaded = state
                    .store
                    .load_network_memory(network, state.index, state.shards)
                    .await;
                let r = match loaded {
                    Ok(items) => {
                        let n = items.len();
                        state.load(items).await.map(|()| n)
                    }
                    Err(e) => Err(e),
                };
                state.pump(&myself);
                let _ = reply.send(r);
            }
            ShardMsg::Stats(reply) => {
                let _ = reply.send(ShardStats {
                    items: state.count,
                    bytes: state.bytes,
                    networks: state.networks.len(),
                    unembedded: state.queue.len(),
                });
            }
            ShardMsg::Embedded(result) => state.embedded(&myself, result),
            ShardMsg::EmbedRetry => state.retry(&myself),
            ShardMsg::Resolve(network, hits, query, reply) => {
                let _ = reply.send(state.resolve(network, hits, &query));
            }
        }
        // Vectors of items already durable (loaded, or embedded by a provider) go at once.
        state.send_vectors();
        Ok(())
    }
}

impl ShardState {
    /// Holds items loaded from the store; with the store's vector index, only those without a
    /// kept vector are embedded.
    async fn load(&mut self, items: Vec<MemoryItem>) -> Result<(), StoreError> {
        let missing: Option<std::collections::HashSet<MemoryId>> = match self.store.vectors() {
            Some(vs) => {
                let ids: Vec<MemoryId> = items.iter().map(|i| i.memory_id).collect();
                Some(
                    vs.missing(self.embedder.name(), &ids)
                        .await?
                        .into_iter()
                        .collect(),
                )
            }
            None => None,
        };
        for item in items {
            let embed = missing.as_ref().is_none_or(|m| m.contains(&item.memory_id));
            self.insert(item, embed);
        }
        Ok(())
    }

    /// Hands the store the vectors made here (their items are durable).
    fn send_vectors(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let Some(vs) = self.store.vectors() else {
            self.outbox.clear();
            return;
        };
        for (network, id, vector) in self.outbox.drain(..) {
            vs.put(self.embedder.name(), network, id, vector);
        }
    }

    /// The items among the store's nearest hits that are here and match the filters.
    fn resolve(
        &self,
        network: NetworkId,
        hits: Vec<(MemoryId, f32)>,
        query: &MemoryQuery,
    ) -> Vec<(MemoryItem, f32)> {
        let Some(n) = self.networks.get(&network) else {
            return Vec::new();
        };
        hits.into_iter()
            .filter_map(|(id, score)| {
                n.items
                    .get(&id)
                    .filter(|i| query.matches(i))
                    .map(|i| (i.clone(), score))
            })
            .collect()
    }

    /// Indexes `item` (`embed`: make its vector; false when the store keeps one already); with
    /// a provider embedder, its vector comes from the cache or later.
    fn insert(&mut self, item: MemoryItem, embed: bool) {
        let (network, id) = (item.network_id, item.memory_id);
        let text = search_text(&item);
        let n = self
            .networks
            .entry(network)
            .or_insert_with(|| NetworkItems {
                items: BTreeMap::new(),
                by_kind: Default::default(),
                vectors: None,
            });
        self.bytes += text.len();
        if let Some(old) = n.items.insert(id, item) {
            n.by_kind[kind_index(old.kind)].remove(&id);
            self.bytes = self.bytes.saturating_sub(search_text(&old).len());
        } else {
            self.count += 1;
        }
        if let Some(i) = n.items.get(&id) {
            n.by_kind[kind_index(i.kind)].insert(id);
        }
        if !embed {
            self.queue.forget(&id);
            return;
        }
        match &self.embedder {
            Embedding::Local(e) => {
                let vector = e.embed(&text);
                self.index(network, id, &vector);
            }
            Embedding::Provider(_) => self.wait_for_vector(network, id, &text),
        }
    }

    /// Forgets a network's items here (the store keeps them).
    fn drop_network(&mut self, network: NetworkId) {
        if let Some(n) = self.networks.remove(&network) {
            self.count -= n.items.len();
            let gone: usize = n.items.values().map(|i| search_text(i).len()).sum();
            self.bytes = self.bytes.saturating_sub(gone);
        }
        self.queue.forget_network(network);
    }

    /// Removes items from the index at once and from the store in the background.
    fn remove(&mut self, ids: Vec<MemoryId>) -> usize {
        let mut removed = Vec::with_capacity(ids.len());
        for id in ids {
            for n in self.networks.values_mut() {
                if let Some(item) = n.items.remove(&id) {
                    n.by_kind[kind_index(item.kind)].remove(&id);
                    self.bytes = self.bytes.saturating_sub(search_text(&item).len());
                    if let Some(v) = &mut n.vectors {
                        v.remove(id.as_uuid().as_u128());
                    }
                    removed.push(id);
                    break;
                }
            }
        }
        self.count -= removed.len();
        for id in &removed {
            self.queue.forget(id);
        }
        self.networks.retain(|_, n| !n.items.is_empty());
        let count = removed.len();
        if count > 0 {
            let store = self.store.clone();
            self.pending.spawn(async move {
                if let Err(e) = store.delete_memory(&removed).await {
                    tracing::warn!(error = %e, "expired memory items stay stored until the next sweep");
                }
            });
        }
        count
    }

    fn expired(
        &self,
        now: Timestamp,
        retention: &HashMap<NetworkId, Retention>,
        default: Retention,
    ) -> Vec<MemoryId> {
        let mut gone = Vec::new();
        for (network, n) in &self.networks {
            let r = retention.get(network).copied().unwrap_or(default);
            let oldest = r
                .max_age_seconds
                .map(|s| now - time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX)));
            gone.extend(
                n.items
                    .values()
                    .filter(|i| i.expired(now) || oldest.is_some_and(|o| i.created_at < o))
                    .map(|i| i.memory_id),
            );
        }
        gone
    }

    fn query(&self, network: NetworkId, query: &MemoryQuery) -> ShardPage {
        let Some(n) = self.networks.get(&network) else {
            return ShardPage::default();
        };
        let want = query.offset.saturating_add(query.limit);
        let only_kinds =
            query.agent_id.is_none() && query.task_id.is_none() && query.session_id.is_none();
        if only_kinds && query.kinds.is_empty() {
            return ShardPage {
                items: n.items.values().rev().take(want).cloned().collect(),
                total: n.items.len(),
            };
        }
        if only_kinds {
            let mut kinds: Vec<usize> = query.kinds.iter().map(|k| kind_index(*k)).collect();
            kinds.sort_unstable();
            kinds.dedup();
            let total = kinds.iter().map(|k| n.by_kind[*k].len()).sum();
            // Merge the per-kind indexes newest first; stop after `want`.
            let mut iters: Vec<_> = kinds
                .iter()
                .map(|k| n.by_kind[*k].iter().rev().peekable())
                .collect();
            let mut items = Vec::with_capacity(want.min(total));
            while items.len() < want {
                let best = iters
                    .iter_mut()
                    .enumerate()
                    .filter_map(|(i, it)| it.peek().map(|id| (**id, i)))
                    .max();
                let Some((id, i)) = best else { break };
                iters[i].next();
                if let Some(item) = n.items.get(&id) {
                    items.push(item.clone());
                }
            }
            return ShardPage { items, total };
        }
        let mut page = ShardPage::default();
        for item in n.items.values().rev().filter(|i| query.matches(i)) {
            if page.items.len() < want {
                page.items.push(item.clone());
            }
            page.total += 1;
        }
        page
    }

    fn search(
        &self,
        network: NetworkId,
        vector: &[f32],
        query: &MemoryQuery,
    ) -> Vec<(MemoryItem, f32)> {
        let Some(n) = self.networks.get(&network) else {
            return Vec::new();
        };
        let Some(vectors) = &n.vectors else {
            return Vec::new();
        };
        if vectors.dims() != vector.len() {
            tracing::warn!(
                %network, index = vectors.dims(), query = vector.len(),
                "a query vector of another length than the index's; nothing matches"
            );
            return Vec::new();
        }
        // An unfiltered search (the coordinator's) skips a lookup per indexed vector: every
        // indexed vector is a live item's.
        let everything = query.takes_everything();
        let keep = |id: u128| {
            everything
                || n.items
                    .get(&MemoryId::from(uuid::Uuid::from_u128(id)))
                    .is_some_and(|i| query.matches(i))
        };
        vectors
            .search(vector, query.limit, &keep)
            .into_iter()
            .filter_map(|(id, score)| {
                n.items
                    .get(&MemoryId::from(uuid::Uuid::from_u128(id)))
                    .map(|i| (i.clone(), score))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AgentId;
    use crate::search::{Embedder, HashingEmbedder};
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

    fn state() -> ShardState {
        ShardState {
            counters: Default::default(),
            index: 0,
            shards: 1,
            store: Arc::new(InMemoryStore::new()),
            embedder: Embedding::from(HashingEmbedder::new(256)),
            ann_threshold: 1000,
            networks: HashMap::new(),
            count: 0,
            bytes: 0,
            pending: tokio::task::JoinSet::new(),
            queue: vectors::EmbedQueue::default(),
            cache: Arc::new(VectorCache::default()),
            outbox: Vec::new(),
        }
    }

    #[tokio::test]
    async fn kind_queries_merge_newest_first_and_count_exactly() {
        let net = NetworkId::new();
        let agent = AgentId::new();
        let mut s = state();
        let kinds = [MemoryKind::Fact, MemoryKind::Decision, MemoryKind::Feedback];
        for n in 0..30u32 {
            let a = (n % 4 == 0).then_some(agent);
            s.insert(item(net, kinds[n as usize % 3], n, a), true);
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

    #[tokio::test]
    async fn sweeps_remove_expired_items_and_items_past_the_retention_age() {
        let net = NetworkId::new();
        let other = NetworkId::new();
        let mut s = state();
        let t0 = now();
        let mut ttl = item(net, MemoryKind::Fact, 1, None);
        ttl.expires_at = Some(t0 + time::Duration::minutes(10));
        let old = item(net, MemoryKind::Fact, 2, None);
        let keep = item(other, MemoryKind::Fact, 3, None);
        for i in [&ttl, &old, &keep] {
            s.insert(i.clone(), true);
        }
        let retention = HashMap::from([(
            net,
            Retention {
                max_age_seconds: Some(3600),
                max_items: None,
            },
        )]);
        // Nothing is due yet.
        assert!(s.expired(t0, &retention, Retention::default()).is_empty());
        // Eleven minutes on, the TTL has run out.
        let gone = s.expired(
            t0 + time::Duration::minutes(11),
            &retention,
            Retention::default(),
        );
        assert_eq!(gone, vec![ttl.memory_id]);
        assert_eq!(s.remove(gone), 1);
        // Two hours on, the network's retention takes the old item; the other network keeps its.
        let gone = s.expired(
            t0 + time::Duration::hours(2),
            &retention,
            Retention::default(),
        );
        assert_eq!(gone, vec![old.memory_id]);
        s.remove(gone);
        assert_eq!(s.count, 1);
        assert_eq!(
            s.query(
                other,
                &MemoryQuery {
                    limit: 10,
                    ..Default::default()
                }
            )
            .total,
            1
        );
    }

    #[tokio::test]
    async fn search_ranks_the_closest_item_first_within_the_filters() {
        let net = NetworkId::new();
        let mut s = state();
        let texts = [
            (
                MemoryKind::Fact,
                "Invoices are sent on the first business day of each month",
            ),
            (
                MemoryKind::Fact,
                "The brand voice is friendly, direct and free of jargon",
            ),
            (
                MemoryKind::Decision,
                "Deployments happen on Tuesdays after the canary passes",
            ),
        ];
        for (kind, text) in texts {
            let mut i = item(net, kind, 0, None);
            i.content = serde_json::Value::from(text);
            s.insert(i, true);
        }
        let embedder = HashingEmbedder::new(256);
        let q = MemoryQuery {
            limit: 2,
            ..MemoryQuery::default()
        };
        let hits = s.search(net, &embedder.embed("what voice should our brand use"), &q);
        assert!(hits[0].0.content_text().contains("brand voice"), "{hits:?}");
        let facts_only = MemoryQuery {
            kinds: vec![MemoryKind::Decision],
            limit: 5,
            ..MemoryQuery::default()
        };
        let hits = s.search(net, &embedder.embed("brand voice"), &facts_only);
        assert!(hits.iter().all(|(i, _)| i.kind == MemoryKind::Decision));
    }
}
