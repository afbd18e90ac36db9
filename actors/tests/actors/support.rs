//! Helpers for in-process actor tests.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aimesh_actors::gateway::{ModelError, ModelRequest, ModelResponse, OfflineModel, Provider};
use aimesh_actors::ids::NetworkId;
use aimesh_actors::node::{NewNetwork, NewTask};
use aimesh_actors::priority::Priority;
use aimesh_actors::store::InMemoryStore;
use aimesh_actors::types::{AgentParameters, AgentSpec, TaskRecord};
use aimesh_actors::{Node, NodeOptions};
use async_trait::async_trait;
use tokio::sync::Semaphore;

/// Polls `check` until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A provider that holds every call until a permit is released, and records the task text of
/// each call in the order calls start.
pub struct Gate {
    name: String,
    permits: Semaphore,
    calls: Mutex<Vec<String>>,
}

impl Gate {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            permits: Semaphore::new(0),
            calls: Mutex::new(Vec::new()),
        })
    }

    /// Lets `n` held calls finish.
    pub fn release(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// Task texts of the calls so far, in start order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Provider for Gate {
    fn name(&self) -> &str {
        &self.name
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let task = aimesh_actors::prompt::parse(&request.messages)
            .map(|b| b.task)
            .unwrap_or_default();
        self.calls.lock().unwrap().push(task);
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| ModelError::Server {
                status: 500,
                provider: self.name.clone(),
                message: e.to_string(),
            })?;
        permit.forget();
        let mut response = OfflineModel::default().complete(request).await?;
        response.provider = self.name.clone();
        response.model = self.name.clone();
        Ok(response)
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Options for a fresh node with a unique name and an in-memory store.
pub fn options() -> NodeOptions {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    NodeOptions::new(
        &format!("test-{}-{n}", std::process::id()),
        Arc::new(InMemoryStore::new()),
    )
}

/// An agent spec.
pub fn agent(name: &str, kind: &str, model: &str, capabilities: &[&str]) -> AgentSpec {
    let mut parameters = AgentParameters::for_kind(kind);
    parameters.concurrency = 1;
    AgentSpec {
        agent_id: aimesh_actors::ids::AgentId::new(),
        name: name.to_owned(),
        kind: kind.to_owned(),
        model: model.to_owned(),
        description: format!("{name} for tests"),
        parameters,
        capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
    }
}

/// A coordinator that synthesizes with the offline model.
pub fn coordinator() -> AgentSpec {
    agent("Coordinator", "coordinator", "offline", &["synthesis"])
}

/// Creates a network of `agents` (plus the coordinator).
pub async fn network(node: &Node, agents: Vec<AgentSpec>, timeout_seconds: u64) -> NetworkId {
    let mut all = vec![coordinator()];
    all.extend(agents);
    node.create_network(NewNetwork {
        name: "test".into(),
        description: "test network".into(),
        max_iterations: 3,
        timeout_seconds,
        agents: Some(all),
        budget_usd: None,
        retention: None,
        network_id: None,
    })
    .await
    .unwrap()
    .record
    .network_id
}

/// Submits and processes a task.
pub async fn run(node: &Node, net: NetworkId, text: &str, priority: u8) -> TaskRecord {
    let task = node
        .submit_task(
            net,
            NewTask {
                task: text.to_owned(),
                context: serde_json::json!({}),
                priority: Priority::new(priority).unwrap(),
                max_iterations: None,
                timeout_seconds: None,
                client_traceparent: None,
            },
        )
        .await
        .unwrap();
    node.process_task(net, task.task_id).await.unwrap();
    task
}

/// Waits for a task to end and returns it.
pub async fn finished(node: &Node, net: NetworkId, task: &TaskRecord) -> TaskRecord {
    let t = node
        .wait_task(net, task.task_id, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(t.status.is_terminal(), "task still {:?}", t.status);
    t
}

/// A PostgreSQL store over a fresh database on the server `AIMESH_TEST_DATABASE_URL` names
/// (CI runs a private, throw-away server); `None` when the variable is not set.
pub async fn postgres_store() -> Option<Arc<dyn aimesh_actors::store::Store>> {
    postgres_store_at().await.map(|(store, _)| store)
}

/// A PostgreSQL store on a fresh database, and that database's URL.
pub async fn postgres_store_at() -> Option<(Arc<dyn aimesh_actors::store::Store>, String)> {
    use sqlx::Connection;
    let admin = std::env::var("AIMESH_TEST_DATABASE_URL").ok()?;
    let name = format!("aimesh_it_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let url = with_database(&admin, &name);
    let store = aimesh_actors::store::PostgresStore::connect(&url, 1024)
        .await
        .unwrap();
    Some((Arc::new(store), url))
}

/// `url` with its database replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let start = base.find("://").map_or(0, |i| i + 3);
    let host = base[start..].rfind('@').map_or(start, |at| start + at);
    let path = base[host..].find('/').map_or(base.len(), |p| host + p);
    format!("{}/{name}{query}", &base[..path])
}
