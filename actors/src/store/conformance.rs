//! The behaviour every [`Store`] must have, as one suite each backend's tests run.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{Store, StoredResponse};
use crate::ids::{AgentId, MemoryId, NetworkId, SubtaskId, TaskId};
use crate::priority::Priority;
use crate::types::{
    AgentParameters, AgentSpec, FailureCode, MemoryItem, MemoryKind, NetworkRecord, Session,
    SubtaskOutcome, SubtaskRecord, SubtaskStatus, TaskError, TaskEvent, TaskQuery, TaskRecord,
    TaskResult, TaskStatus, Usage, Usd, now,
};

/// Runs every check against a fresh, empty store.
pub async fn run_all(store: &dyn Store) {
    networks(store).await;
    task_journal(store).await;
    listing_and_unfinished(store).await;
    responses(store).await;
    memory(store).await;
    sessions(store).await;
    deleting_a_network_removes_everything_of_it(store).await;
}

pub fn network() -> NetworkRecord {
    let at = now();
    NetworkRecord {
        network_id: NetworkId::new(),
        name: "conformance".into(),
        description: "ünïcode ✓".into(),
        max_iterations: 3,
        timeout_seconds: 60,
        agents: vec![AgentSpec {
            agent_id: AgentId::new(),
            name: "Writer".into(),
            kind: "content".into(),
            model: "offline".into(),
            description: String::new(),
            parameters: AgentParameters::for_kind("content"),
            capabilities: vec!["copywriting".into()],
        }],
        budget_usd: Some(Usd::from_dollars(1.25)),
        retention: None,
        created_at: at,
        updated_at: at,
    }
}

pub fn task(network: NetworkId, text: &str) -> TaskRecord {
    TaskRecord {
        task_id: TaskId::new(),
        network_id: network,
        task: text.into(),
        context: json!({"product_name": "TechPro X1", "n": 1}),
        priority: Priority::new(2).unwrap(),
        max_iterations: 3,
        timeout_seconds: 60,
        status: TaskStatus::Queued,
        iterations: 0,
        subtasks: vec![],
        result: None,
        error: None,
        errors: vec![],
        usage: Usage::default(),
        created_at: now(),
        started_at: None,
        finished_at: None,
        duration_ms: None,
        client_traceparent: None,
    }
}

fn subtask(task: TaskId, step: u32) -> SubtaskRecord {
    SubtaskRecord {
        subtask_id: SubtaskId { task, step },
        step,
        iteration: 1,
        replaces: None,
        agent_id: AgentId::new(),
        agent: "Writer".into(),
        agent_type: "content".into(),
        description: "write".into(),
        status: SubtaskStatus::Pending,
        attempts: 1,
        output: None,
        model: None,
        provider: None,
        usage: None,
        route: None,
        error: None,
        queued_at: now(),
        started_at: None,
        finished_at: None,
        duration_ms: None,
        node: None,
    }
}

pub fn item(network: NetworkId, kind: MemoryKind, text: &str) -> MemoryItem {
    let at = now();
    MemoryItem {
        memory_id: MemoryId::new(),
        network_id: network,
        kind,
        content: Value::String(text.into()),
        metadata: Map::from_iter([("source".to_owned(), json!("conformance"))]),
        agent_id: None,
        task_id: None,
        session_id: None,
        created_at: at,
        updated_at: at,
        expires_at: None,
    }
}

async fn networks(store: &dyn Store) {
    let n = network();
    store.put_network(&n).await.unwrap();
    assert_eq!(store.network(n.network_id).await.unwrap(), Some(n.clone()));
    let mut changed = n.clone();
    changed.name = "renamed".into();
    store.put_network(&changed).await.unwrap();
    assert_eq!(
        store.network(n.network_id).await.unwrap().unwrap().name,
        "renamed"
    );
    let other = network();
    store.put_network(&other).await.unwrap();
    let all: Vec<NetworkId> = store
        .networks()
        .await
        .unwrap()
        .iter()
        .map(|n| n.network_id)
        .collect();
    assert!(
        all.ends_with(&[n.network_id, other.network_id]),
        "oldest first: {all:?}"
    );
    assert!(store.network(NetworkId::new()).await.unwrap().is_none());
}

async fn task_journal(store: &dyn Store) {
    let n = network();
    store.put_network(&n).await.unwrap();
    let t = task(n.network_id, "journal me");
    store.insert_task(&t).await.unwrap();
    let id = t.task_id;
    let net = n.network_id;
    let at = now();
    // Journal writes are ordered: the acks of later events resolve with later statuses.
    let a1 = store.append(net, id, TaskEvent::Processing { at });
    let a2 = store.append(
        net,
        id,
        TaskEvent::Planned {
            iteration: 1,
            subtasks: vec![subtask(id, 1), subtask(id, 2)],
        },
    );
    let a3 = store.append(
        net,
        id,
        TaskEvent::SubtaskStarted {
            step: 1,
            attempt: 1,
            at,
            node: Some("n1".into()),
        },
    );
    let usage = Usage {
        input_tokens: 10,
        output_tokens: 20,
        cached_input_tokens: 3,
        cost_usd: Usd(12_345),
    };
    let a4 = store.append(
        net,
        id,
        TaskEvent::SubtaskFinished {
            step: 1,
            at,
            outcome: SubtaskOutcome::Completed {
                output: "output ✓".repeat(500),
                model: "m".into(),
                provider: "p".into(),
                usage,
                route: None,
            },
        },
    );
    assert_eq!(a1.await.unwrap(), TaskStatus::Processing);
    assert_eq!(a2.await.unwrap(), TaskStatus::Processing);
    assert_eq!(a3.await.unwrap(), TaskStatus::Processing);
    assert_eq!(a4.await.unwrap(), TaskStatus::Processing);
    let r = store.task(net, id).await.unwrap().unwrap();
    assert_eq!(r.status, TaskStatus::Processing);
    assert_eq!(r.subtasks.len(), 2);
    assert_eq!(r.subtasks[0].status, SubtaskStatus::Completed);
    assert_eq!(
        r.subtasks[0].output.as_deref(),
        Some("output ✓".repeat(500).as_str())
    );
    assert_eq!(r.usage, usage);
    assert_eq!(r.context, t.context);
    let fin = store.append(
        net,
        id,
        TaskEvent::Finished {
            status: TaskStatus::Failed,
            at,
            result: None,
            error: Some(TaskError {
                code: FailureCode::Timeout,
                message: "late".into(),
                agent_id: None,
                agent_name: None,
            }),
        },
    );
    assert_eq!(fin.await.unwrap(), TaskStatus::Failed);
    // A terminal task does not move, and the ack says so.
    let late = store.append(
        net,
        id,
        TaskEvent::Finished {
            status: TaskStatus::Completed,
            at,
            result: Some(TaskResult {
                summary: "s".into(),
                output: "o".into(),
                model: "m".into(),
                contributors: vec![],
                usage: Usage::default(),
                route: None,
            }),
            error: None,
        },
    );
    assert_eq!(late.await.unwrap(), TaskStatus::Failed);
    let r = store.task(net, id).await.unwrap().unwrap();
    assert_eq!(r.status, TaskStatus::Failed);
    assert_eq!(r.subtasks[1].status, SubtaskStatus::Cancelled);
    assert_eq!(
        store.task_status(net, id).await.unwrap(),
        Some(TaskStatus::Failed)
    );
    // A task is only found in its own network.
    assert!(store.task(NetworkId::new(), id).await.unwrap().is_none());
    assert!(
        store
            .task_status(NetworkId::new(), id)
            .await
            .unwrap()
            .is_none()
    );
    // Journaling for an unknown task fails.
    assert!(
        store
            .append(net, TaskId::new(), TaskEvent::Processing { at })
            .await
            .is_err()
    );
}

async fn listing_and_unfinished(store: &dyn Store) {
    let n = network();
    store.put_network(&n).await.unwrap();
    let net = n.network_id;
    let mut ids = Vec::new();
    for i in 0..7 {
        let t = task(net, &format!("task {i}"));
        store.insert_task(&t).await.unwrap();
        ids.push(t.task_id);
    }
    for id in &ids[..3] {
        store
            .append(net, *id, TaskEvent::Processing { at: now() })
            .await
            .unwrap();
    }
    store
        .append(
            net,
            ids[0],
            TaskEvent::Finished {
                status: TaskStatus::Cancelled,
                at: now(),
                result: None,
                error: None,
            },
        )
        .await
        .unwrap();
    let page = store
        .tasks(
            net,
            &TaskQuery {
                status: None,
                limit: 3,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 7);
    let listed: Vec<TaskId> = page.items.iter().map(|t| t.task_id).collect();
    assert_eq!(listed, vec![ids[6], ids[5], ids[4]], "newest first");
    assert_eq!(page.next_offset, Some(3));
    let processing = store
        .tasks(
            net,
            &TaskQuery {
                status: Some(TaskStatus::Processing),
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(processing.total, 2);
    assert_eq!(processing.items[0].status, TaskStatus::Processing);
    let unfinished: Vec<TaskId> = store
        .unfinished_tasks(net)
        .await
        .unwrap()
        .iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(
        unfinished,
        ids[1..].to_vec(),
        "oldest first, terminal ones left out"
    );
}

async fn responses(store: &dyn Store) {
    let key = format!("{}.1", TaskId::new());
    assert!(store.response(&key).await.unwrap().is_none());
    let r = StoredResponse {
        text: "kept answer".into(),
        model: "gpt-4o".into(),
        provider: "openai".into(),
        usage: Usage {
            input_tokens: 5,
            output_tokens: 7,
            cached_input_tokens: 0,
            cost_usd: Usd(99),
        },
        finish_reason: Some("stop".into()),
        at: now(),
    };
    store.put_response(&key, &r).await.unwrap();
    assert_eq!(store.response(&key).await.unwrap(), Some(r.clone()));
    let removed = store
        .expire_responses(now() + time::Duration::seconds(1))
        .await
        .unwrap();
    assert!(removed >= 1);
    assert!(store.response(&key).await.unwrap().is_none());
}

async fn memory(store: &dyn Store) {
    let n = network();
    store.put_network(&n).await.unwrap();
    let net = n.network_id;
    let mut big = item(net, MemoryKind::Fact, &"compressible text ".repeat(10_000));
    big.expires_at = Some(now() + time::Duration::hours(1));
    big.session_id = Some("s-1".into());
    big.agent_id = Some(AgentId::new());
    big.task_id = Some(TaskId::new());
    let small = item(net, MemoryKind::Decision, "small ✓");
    let structured = MemoryItem {
        content: json!({"k": [1, 2, {"x": null}]}),
        ..item(net, MemoryKind::Context, "")
    };
    for i in [&big, &small, &structured] {
        store.put_memory(i).await.unwrap();
    }
    let shards = 3;
    let mut loaded = Vec::new();
    for shard in 0..shards {
        loaded.extend(store.load_memory(shard, shards).await.unwrap());
    }
    loaded.retain(|i| i.network_id == net);
    loaded.sort_by_key(|i| i.memory_id);
    assert_eq!(loaded, vec![big.clone(), small.clone(), structured.clone()]);
    // Each item is on exactly one shard, as placement says.
    for shard in 0..shards {
        for i in store.load_memory(shard, shards).await.unwrap() {
            assert_eq!(
                crate::placement::shard_of(i.network_id, i.memory_id, shards),
                shard
            );
        }
    }
    // Replacing keeps one copy.
    let mut edited = small.clone();
    edited.content = Value::String("edited".into());
    store.put_memory(&edited).await.unwrap();
    let after: Vec<MemoryItem> = all_memory(store, net).await;
    assert_eq!(after.len(), 3);
    assert!(after.contains(&edited));
    assert_eq!(
        store
            .delete_memory(&[small.memory_id, MemoryId::new()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(all_memory(store, net).await.len(), 2);
}

async fn all_memory(store: &dyn Store, net: NetworkId) -> Vec<MemoryItem> {
    let mut v = store.load_memory(0, 1).await.unwrap();
    v.retain(|i| i.network_id == net);
    v
}

async fn sessions(store: &dyn Store) {
    let n = network();
    store.put_network(&n).await.unwrap();
    let net = n.network_id;
    let s = Session {
        session_id: "chat-42".into(),
        network_id: net,
        metadata: Map::from_iter([("user".to_owned(), json!("ada"))]),
        created_at: now(),
        expires_at: Some(now() + time::Duration::minutes(5)),
    };
    store.put_session(&s).await.unwrap();
    assert_eq!(store.sessions(net).await.unwrap(), vec![s.clone()]);
    assert!(store.sessions(NetworkId::new()).await.unwrap().is_empty());
    assert!(store.delete_session(net, "chat-42").await.unwrap());
    assert!(!store.delete_session(net, "chat-42").await.unwrap());
    assert!(store.sessions(net).await.unwrap().is_empty());
}

async fn deleting_a_network_removes_everything_of_it(store: &dyn Store) {
    let n = network();
    store.put_network(&n).await.unwrap();
    let net = n.network_id;
    let t = task(net, "doomed");
    store.insert_task(&t).await.unwrap();
    store
        .append(net, t.task_id, TaskEvent::Processing { at: now() })
        .await
        .unwrap();
    let key = format!("{}.1", t.task_id);
    store
        .put_response(
            &key,
            &StoredResponse {
                text: "x".into(),
                model: "m".into(),
                provider: "p".into(),
                usage: Usage::default(),
                finish_reason: None,
                at: now(),
            },
        )
        .await
        .unwrap();
    store
        .put_memory(&item(net, MemoryKind::Fact, "doomed fact"))
        .await
        .unwrap();
    store
        .put_session(&Session {
            session_id: "s".into(),
            network_id: net,
            metadata: Map::new(),
            created_at: now(),
            expires_at: None,
        })
        .await
        .unwrap();
    // A bystander network keeps everything.
    let keep = network();
    store.put_network(&keep).await.unwrap();
    store
        .put_memory(&item(keep.network_id, MemoryKind::Fact, "kept"))
        .await
        .unwrap();
    assert!(store.delete_network(net).await.unwrap());
    assert!(!store.delete_network(net).await.unwrap());
    assert!(store.network(net).await.unwrap().is_none());
    assert!(store.task(net, t.task_id).await.unwrap().is_none());
    assert!(store.unfinished_tasks(net).await.unwrap().is_empty());
    assert!(store.response(&key).await.unwrap().is_none());
    assert!(all_memory(store, net).await.is_empty());
    assert!(store.sessions(net).await.unwrap().is_empty());
    assert_eq!(all_memory(store, keep.network_id).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(1)).await;
}
