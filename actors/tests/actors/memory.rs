//! Shared memory on every backend: TTLs, sessions and retention enforced by the janitor (run
//! as of a chosen time, so no test waits), and search relevance on a small labelled set.

use std::sync::Arc;

use aimesh_actors::Node;
use aimesh_actors::ids::{MemoryId, NetworkId};
use aimesh_actors::node::NewNetwork;
use aimesh_actors::store::{EmbeddedStore, InMemoryStore, Store};
use aimesh_actors::types::{MemoryItem, MemoryKind, MemoryQuery, Retention, Session, now};
use serde_json::Value;

use crate::support::options;

/// Every backend this machine can run: PostgreSQL too when `AIMESH_TEST_DATABASE_URL` is set.
async fn backends(dir: &std::path::Path) -> Vec<(&'static str, Arc<dyn Store>)> {
    let mut all: Vec<(&'static str, Arc<dyn Store>)> = vec![
        ("memory", Arc::new(InMemoryStore::new())),
        (
            "embedded",
            Arc::new(EmbeddedStore::open(&dir.join("memory-test.redb"), 1024).unwrap()),
        ),
    ];
    if let Some(store) = crate::support::postgres_store().await {
        all.push(("postgres", store));
    }
    all
}

async fn node_on(store: Arc<dyn Store>) -> Node {
    let mut opts = options();
    opts.store = store;
    opts.sweep_interval = None;
    Node::start(opts).await.unwrap()
}

async fn network(node: &Node, retention: Option<Retention>) -> NetworkId {
    node.create_network(NewNetwork {
        name: "memory".into(),
        description: String::new(),
        max_iterations: 1,
        timeout_seconds: 30,
        agents: Some(vec![crate::support::coordinator()]),
        budget_usd: None,
        retention,
        network_id: None,
    })
    .await
    .unwrap()
    .record
    .network_id
}

fn item(net: NetworkId, kind: MemoryKind, text: &str) -> MemoryItem {
    let at = now();
    MemoryItem {
        memory_id: MemoryId::new(),
        network_id: net,
        kind,
        content: Value::String(text.into()),
        metadata: Default::default(),
        agent_id: None,
        task_id: None,
        session_id: None,
        created_at: at,
        updated_at: at,
        expires_at: None,
    }
}

async fn all(node: &Node, net: NetworkId) -> Vec<String> {
    node.memory(
        net,
        &MemoryQuery {
            limit: 500,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .items
    .iter()
    .map(|i| i.content_text())
    .collect()
}

#[tokio::test]
async fn ttls_sessions_and_retention_are_enforced_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in backends(dir.path()).await {
        let node = node_on(store.clone()).await;
        let t0 = now();
        let net = network(
            &node,
            Some(Retention {
                max_age_seconds: Some(7200),
                max_items: Some(3),
            }),
        )
        .await;
        let plain = network(&node, None).await;
        // Five facts in a network that keeps three.
        node.add_memory(item(net, MemoryKind::Fact, "oldest fact"))
            .await
            .unwrap();
        node.add_memory(item(net, MemoryKind::Fact, "older fact"))
            .await
            .unwrap();
        for i in 0..3 {
            node.add_memory(item(net, MemoryKind::Fact, &format!("kept fact {i}")))
                .await
                .unwrap();
        }
        for i in 0..5 {
            node.add_memory(item(plain, MemoryKind::Fact, &format!("plain {i}")))
                .await
                .unwrap();
        }
        // Now: max_items = 3 keeps the three newest; nothing has expired.
        node.sweep(t0).await.unwrap();
        assert_eq!(
            all(&node, net).await,
            ["kept fact 2", "kept fact 1", "kept fact 0"],
            "{backend}"
        );
        // In a network with an age limit only, watch a session's item and a TTL'd item expire.
        let capless = network(
            &node,
            Some(Retention {
                max_age_seconds: Some(7200),
                max_items: None,
            }),
        )
        .await;
        let mut in_session = item(capless, MemoryKind::Context, "said in the chat");
        in_session.session_id = Some("chat-1".into());
        in_session.expires_at = Some(t0 + time::Duration::minutes(10));
        let mut short = item(capless, MemoryKind::Fact, "short-lived fact");
        short.expires_at = Some(t0 + time::Duration::minutes(30));
        node.create_session(Session {
            session_id: "chat-1".into(),
            network_id: capless,
            metadata: Default::default(),
            created_at: t0,
            expires_at: Some(t0 + time::Duration::minutes(10)),
        })
        .await
        .unwrap();
        node.add_memory(in_session).await.unwrap();
        node.add_memory(short).await.unwrap();
        node.add_memory(item(capless, MemoryKind::Fact, "lasting fact"))
            .await
            .unwrap();
        // Eleven minutes on: the session and its item are gone.
        let swept = node.sweep(t0 + time::Duration::minutes(11)).await.unwrap();
        assert!(swept.sessions >= 1, "{backend}: {swept:?}");
        assert_eq!(
            all(&node, capless).await,
            ["lasting fact", "short-lived fact"],
            "{backend}"
        );
        assert!(node.sessions(capless).await.unwrap().is_empty());
        // Thirty-one minutes on: the item's own TTL.
        node.sweep(t0 + time::Duration::minutes(31)).await.unwrap();
        assert_eq!(all(&node, capless).await, ["lasting fact"], "{backend}");
        // Three hours on: the network's two-hour retention age; the network without
        // retention keeps everything.
        node.sweep(t0 + time::Duration::hours(3)).await.unwrap();
        assert!(all(&node, capless).await.is_empty(), "{backend}");
        assert!(all(&node, net).await.is_empty(), "{backend}");
        assert_eq!(all(&node, plain).await.len(), 5, "{backend}");
        // What the sweep removed is gone from the store too: a restarted node agrees.
        node.shutdown().await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let again = node_on(store.clone()).await;
        assert!(all(&again, net).await.is_empty(), "{backend} after restart");
        assert_eq!(all(&again, plain).await.len(), 5, "{backend} after restart");
        again.shutdown().await;
    }
}

#[tokio::test]
async fn search_ranks_the_related_item_first_on_every_backend() {
    let labelled = [
        (
            "Invoices are emailed on the first business day of every month.",
            "when are invoices sent out",
        ),
        (
            "Our brand voice is friendly, direct and never uses jargon.",
            "what voice should our copy have",
        ),
        (
            "Production deploys happen on Tuesdays after the canary passes.",
            "which day do deploys to production happen",
        ),
        (
            "The Pro plan costs 49 dollars per seat per month.",
            "price of a Pro seat",
        ),
        (
            "New customers get a 14-day free trial without a credit card.",
            "is there a free trial for new customers",
        ),
        (
            "Customer data is encrypted at rest with AES-256.",
            "how is stored data encrypted",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (backend, store) in backends(dir.path()).await {
        let node = node_on(store).await;
        let net = network(&node, None).await;
        for (fact, _) in labelled {
            node.add_memory(item(net, MemoryKind::Fact, fact))
                .await
                .unwrap();
        }
        node.add_memory(item(
            net,
            MemoryKind::Decision,
            "We decided the brand voice stays direct.",
        ))
        .await
        .unwrap();
        let mut first = 0;
        for (fact, query) in labelled {
            let hits = node
                .search_memory(
                    net,
                    query,
                    &MemoryQuery {
                        kinds: vec![MemoryKind::Fact],
                        limit: 3,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert!(hits.iter().all(|(i, _)| i.kind == MemoryKind::Fact));
            let rank = hits.iter().position(|(i, _)| i.content_text() == fact);
            assert!(rank.is_some(), "{backend}: {query:?} → {hits:?}");
            first += usize::from(rank == Some(0));
        }
        assert!(first >= 5, "{backend}: only {first} of 6 ranked first");
        node.shutdown().await;
    }
}

/// Rows in `memory_vectors` of the database at `url`.
async fn kept_vectors(url: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let n = sqlx::query_scalar("SELECT count(*) FROM memory_vectors")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    n
}

#[tokio::test]
async fn with_pgvector_vectors_are_kept_searched_and_dropped_in_postgres() {
    let Some((store, url)) = crate::support::postgres_store_at().await else {
        eprintln!(
            "skipped: AIMESH_TEST_DATABASE_URL is not set (no PostgreSQL to test pgvector on)"
        );
        return;
    };
    if store.vectors().is_none() {
        eprintln!(
            "skipped: this PostgreSQL server has no pgvector extension (vectors stay in the shards)"
        );
        return;
    }
    let node = node_on(store.clone()).await;
    let net = network(&node, None).await;
    // Many facts about deploys, one decision about something else, one session note.
    for i in 0..150 {
        node.add_memory(item(
            net,
            MemoryKind::Fact,
            &format!("Deploy number {i} to production went out on a Tuesday after the canary."),
        ))
        .await
        .unwrap();
    }
    let decision = "We decided the brand voice stays friendly and direct.";
    node.add_memory(item(net, MemoryKind::Decision, decision))
        .await
        .unwrap();
    let mut note = item(
        net,
        MemoryKind::Context,
        "Session scratch note about deploys.",
    );
    note.session_id = Some("s1".into());
    node.create_session(Session {
        session_id: "s1".into(),
        network_id: net,
        metadata: Default::default(),
        created_at: now(),
        expires_at: None,
    })
    .await
    .unwrap();
    node.add_memory(note).await.unwrap();
    // Acknowledged writes are found at once: the search waits for their vectors.
    let hits = node
        .search_memory(
            net,
            "when do production deploys happen",
            &MemoryQuery {
                limit: 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
    assert_eq!(
        kept_vectors(&url).await,
        152,
        "every item's vector is in PostgreSQL"
    );
    // A filter that the nearest candidates do not satisfy: the search reads further.
    let hits = node
        .search_memory(
            net,
            "when do production deploys happen",
            &MemoryQuery {
                kinds: vec![MemoryKind::Decision],
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].0.content_text(), decision);
    // Deleting a session's items drops their vectors with them.
    node.delete_session(net, "s1").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while kept_vectors(&url).await != 151 {
        assert!(
            std::time::Instant::now() < deadline,
            "the session's vector stays"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    node.shutdown().await;

    // A restart finds every vector kept: nothing is embedded again, and search still ranks.
    let again = node_on(store.clone()).await;
    let vs = store.vectors().unwrap();
    let ids: Vec<MemoryId> = again
        .memory(
            net,
            &MemoryQuery {
                limit: 500,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items
        .iter()
        .map(|i| i.memory_id)
        .collect();
    assert_eq!(ids.len(), 151);
    let embedder = again.embedder_name();
    assert!(vs.missing(&embedder, &ids).await.unwrap().is_empty());
    assert_eq!(
        vs.missing("another-embedder", &ids).await.unwrap().len(),
        151
    );
    let hits = again
        .search_memory(
            net,
            "what voice should our brand have",
            &MemoryQuery {
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(hits[0].0.content_text(), decision);
    again.shutdown().await;
}
