//! A memory shard actor embedding with a provider (the fake one, over TCP): writes are
//! acknowledged before their vectors exist, vectors come back from an owned task and make the
//! items searchable, a provider outage delays indexing without losing an item, and the vector
//! cache spares the provider a network's re-load and the shard's restart.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use serde_json::Value;

use aimesh_actors::embedding::{Embedding, ProviderEmbedder, VectorCache};
use aimesh_actors::gateway::catalog::{Backend, ProviderSpec};
use aimesh_actors::ids::{MemoryId, NetworkId};
use aimesh_actors::memory_shard::{MemoryShard, ShardArgs, ShardMsg, ShardStats};
use aimesh_actors::rpc::ask;
use aimesh_actors::store::{InMemoryStore, Store};
use aimesh_actors::types::{MemoryItem, MemoryKind, MemoryQuery, now};

use super::testkit::Server;
use super::{FakeOptions, Fault, FaultRule, Format};

const MODEL: &str = "text-embedding-3-small";
const WAIT: Duration = Duration::from_secs(5);

fn embedding(server: &Server) -> Embedding {
    let spec = ProviderSpec {
        name: "openai".into(),
        backend: Backend::Http {
            kind: "openai".into(),
            base_url: server.url(""),
            api_key: Some("sk-test".into()),
        },
        timeout: Duration::from_secs(5),
        stall_timeout: Duration::from_secs(5),
        max_response_bytes: 16 << 20,
    };
    Embedding::from(ProviderEmbedder::new(&spec, MODEL, None).unwrap())
}

async fn shard(
    embedder: &Embedding,
    store: &Arc<dyn Store>,
    cache: &Arc<VectorCache>,
) -> ActorRef<ShardMsg> {
    let args = ShardArgs {
        index: 0,
        shards: 1,
        store: store.clone(),
        embedder: embedder.clone(),
        vector_cache: cache.clone(),
        ann_threshold: 1000,
        owned: None,
    };
    Actor::spawn(None, MemoryShard, args).await.unwrap().0
}

fn item(net: NetworkId, text: &str) -> MemoryItem {
    MemoryItem {
        memory_id: MemoryId::new(),
        network_id: net,
        kind: MemoryKind::Fact,
        content: Value::String(text.into()),
        metadata: Default::default(),
        agent_id: None,
        task_id: None,
        session_id: None,
        created_at: now(),
        updated_at: now(),
        expires_at: None,
    }
}

async fn stats(shard: &ActorRef<ShardMsg>) -> ShardStats {
    ask(shard, WAIT, ShardMsg::Stats).await.unwrap()
}

async fn put(shard: &ActorRef<ShardMsg>, item: MemoryItem) {
    ask(shard, WAIT, |r| ShardMsg::Put(Box::new(item), Some(r)))
        .await
        .unwrap()
        .unwrap();
}

/// Waits until no item on the shard waits for its vector.
async fn all_embedded(shard: &ActorRef<ShardMsg>) {
    let start = tokio::time::Instant::now();
    while stats(shard).await.unembedded > 0 {
        assert!(start.elapsed() < WAIT, "items still wait for vectors");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn best(shard: &ActorRef<ShardMsg>, embedder: &Embedding, net: NetworkId, q: &str) -> String {
    let vector = Arc::new(embedder.embed_query(q).await.unwrap());
    let query = MemoryQuery {
        limit: 3,
        ..MemoryQuery::default()
    };
    let hits = ask(shard, WAIT, |r| ShardMsg::Search(net, vector, query, r))
        .await
        .unwrap();
    hits.first()
        .map(|(i, _)| i.content_text())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_shard_indexes_provider_vectors_and_pays_once_per_text() {
    let server = Server::start(FakeOptions::default()).await;
    let embedder = embedding(&server);
    let store: Arc<dyn Store> = Arc::new(InMemoryStore::new());
    let cache = Arc::new(VectorCache::default());
    let s = shard(&embedder, &store, &cache).await;
    let net = NetworkId::new();
    for text in [
        "Refunds are issued within 14 days of a return",
        "The brand voice is friendly and direct",
        "Deployments happen on Tuesdays",
    ] {
        put(&s, item(net, text)).await;
    }
    all_embedded(&s).await;
    let batches = server.fake.calls().count(Format::Openai, MODEL);
    assert!(
        (1..=3).contains(&batches),
        "{batches} batches for three writes"
    );
    assert!(
        best(&s, &embedder, net, "how many days for a refund")
            .await
            .starts_with("Refunds")
    );
    assert_eq!(cache.len(), 3);

    // The network moves away and back: its vectors come from the cache, not the provider.
    s.cast(ShardMsg::DropNetwork(net)).unwrap();
    let loaded = ask(&s, WAIT, |r| ShardMsg::LoadNetwork(net, r))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded, 3);
    assert_eq!(stats(&s).await.unembedded, 0);
    assert!(
        best(&s, &embedder, net, "brand voice")
            .await
            .starts_with("The brand voice")
    );
    let queries = 2;
    assert_eq!(
        server.fake.calls().count(Format::Openai, MODEL),
        batches + queries
    );

    // The provider fails once: the write is acknowledged at once, its vector comes after the
    // back-off, and nothing else is lost.
    server.fake.push_fault(
        FaultRule::always(Fault::Status {
            status: 500,
            retry_after_seconds: None,
            body: None,
        })
        .model(MODEL)
        .times(1),
    );
    put(&s, item(net, "Invoices are sent on the first business day")).await;
    assert!(stats(&s).await.items == 4);
    all_embedded(&s).await;
    assert_eq!(server.fake.calls().faulted, 1);
    assert!(
        best(&s, &embedder, net, "when are invoices sent")
            .await
            .starts_with("Invoices")
    );

    // A restarted shard reloads from the store and finds every vector in the node's cache.
    let before = server.fake.calls().count(Format::Openai, MODEL);
    s.stop_and_wait(None, None).await.unwrap();
    let s = shard(&embedder, &store, &cache).await;
    assert_eq!(stats(&s).await.items, 4);
    assert_eq!(stats(&s).await.unembedded, 0);
    assert_eq!(server.fake.calls().count(Format::Openai, MODEL), before);
    s.stop_and_wait(None, None).await.unwrap();
    server.shutdown().await;
}
