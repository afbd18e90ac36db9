//! A running node, as the API and the benchmarks use it: every operation of seed 001's REST
//! API, each one a message to the right actor with a timeout, or a read of the store.

mod admin;

pub use admin::{ActorAction, DrainStatus};

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use ractor::{Actor, ActorRef};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::admission::Admission;
use crate::behavior::Behaviors;
use crate::cluster::{Cluster, ClusterConfig, View};
use crate::coordinator::{CoordinatorError, CoordinatorMsg};
use crate::embedding::{Embedding, VectorCache};
use crate::gateway::ledger::{Ledger, Spend};
use crate::gateway::sink::DeltaSink;
use crate::gateway::{
    GatewayConfig, GatewayMsg, GatewayStatus, ModelError, ModelRequest, ModelResponse, Provider,
};
use crate::ids::{AgentId, NetworkId, TaskId};
use crate::memory::{MemoryClient, MemoryError};
use crate::names::{Names, lookup};
use crate::network_supervisor::{AgentView, NetworkError, NetworkMsg};
use crate::node_supervisor::{NetworkStatus, NodeArgs, NodeMsg, NodeSupervisor};
use crate::rpc::{CallError, ask};
use crate::search::HashingEmbedder;
use crate::settings::Settings;
use crate::store::{Store, StoreError};
use crate::types::{
    AgentSpec, MemoryItem, MemoryQuery, NetworkRecord, Page, Retention, Session, TaskQuery,
    TaskRecord, TaskStatus, TaskSummary, Timestamp, Usd, default_agents, now,
};
use crate::watch::TaskWatch;

/// How to start a node.
pub struct NodeOptions {
    /// The node's name (unique in its cluster, and in its process).
    pub name: String,
    /// Where it keeps its state.
    pub store: Arc<dyn Store>,
    /// How many memory shards.
    pub memory_shards: u32,
    /// Turns memory text into vectors for search: in process, or a provider's embedding API.
    pub embedder: Embedding,
    /// Per-network vector indexes switch from exact scan to HNSW past this many items.
    pub ann_threshold: usize,
    /// How often the janitor sweeps memory (none: never; tests sweep by hand).
    pub sweep_interval: Option<Duration>,
    /// Retention of networks that set none.
    pub retention: Retention,
    /// The model gateway: providers, models, chains, limits, cache, safety, selection.
    pub gateway: GatewayConfig,
    /// Extra in-process providers (each also becomes a model of its own name).
    pub providers: Vec<Arc<dyn Provider>>,
    /// The global budget, if any.
    pub budget: Option<Usd>,
    /// The budget of networks that set none, if any.
    pub network_budget: Option<Usd>,
    /// Most unfinished tasks per network; submissions past it get `Busy`.
    pub max_unfinished_tasks: usize,
    /// Agent behaviors by type.
    pub behaviors: Behaviors,
    /// Tunables.
    pub settings: Settings,
    /// The cluster it is part of (none: a standalone node).
    pub cluster: Option<ClusterConfig>,
}

impl NodeOptions {
    /// Defaults for a node called `name` with an in-memory store.
    pub fn new(name: &str, store: Arc<dyn Store>) -> Self {
        Self {
            name: name.to_owned(),
            store,
            memory_shards: 4,
            embedder: Embedding::from(HashingEmbedder::new(512)),
            ann_threshold: 20_000,
            sweep_interval: Some(Duration::from_secs(30)),
            retention: Retention::default(),
            gateway: GatewayConfig::default(),
            providers: Vec::new(),
            budget: None,
            network_budget: None,
            max_unfinished_tasks: 10_000,
            behaviors: Behaviors::default(),
            settings: Settings::default(),
            cluster: None,
        }
    }
}

/// Why a node operation failed; the API maps each to a status code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// Unknown id.
    #[error("no {kind} {id}")]
    NotFound {
        /// `network`, `task` or `agent`.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// Machine-readable reason.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The request is not valid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Too much work queued; try again later.
    #[error("{message}")]
    Busy {
        /// Explanation.
        message: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// A component is not answering (restarting, overloaded).
    #[error("{component} unavailable: {message}")]
    Unavailable {
        /// Which component.
        component: &'static str,
        /// Why.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The embedding provider failed, so a search could not be ranked.
    #[error("{message}")]
    EmbeddingUnavailable {
        /// The provider's configured name.
        provider: String,
        /// What happened, naming the provider and model.
        message: String,
    },
}

impl From<MemoryError> for NodeError {
    fn from(e: MemoryError) -> Self {
        match e {
            MemoryError::Store(s) => NodeError::Store(s),
            MemoryError::Embedding(e) => NodeError::EmbeddingUnavailable {
                provider: e.provider.clone(),
                message: e.to_string(),
            },
            other => NodeError::Unavailable {
                component: "memory",
                message: other.to_string(),
            },
        }
    }
}

/// A network as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkView {
    /// The stored record.
    #[serde(flatten)]
    pub record: NetworkRecord,
    /// Whether its actors are serving.
    pub status: NetworkStatus,
    /// Its unfinished tasks.
    pub unfinished_tasks: usize,
    /// What its model calls cost, against its budget.
    pub spend: Spend,
}

/// A new network.
#[derive(Debug, Clone)]
pub struct NewNetwork {
    /// Display name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Delegation rounds per task.
    pub max_iterations: u32,
    /// Time limit per task.
    pub timeout_seconds: u64,
    /// Its agents; `None` gives the five defaults. A coordinator is added if none is given.
    pub agents: Option<Vec<AgentSpec>>,
    /// What its model calls may cost in all (none: the node's default budget).
    pub budget_usd: Option<Usd>,
    /// How long its memory items are kept (none: the node's default).
    pub retention: Option<crate::types::Retention>,
    /// Its id, when the caller chose it (a cluster's entry node picks one this node owns).
    pub network_id: Option<NetworkId>,
}

/// A new task.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// What to do.
    pub task: String,
    /// Facts to do it with.
    pub context: serde_json::Value,
    /// Its priority.
    pub priority: crate::priority::Priority,
    /// Overrides the network's bound on delegation rounds.
    pub max_iterations: Option<u32>,
    /// Overrides the network's time limit.
    pub timeout_seconds: Option<u64>,
    /// The W3C `traceparent` of the client's span it came from (the task's spans link to it);
    /// an invalid one ([`crate::trace::parse_traceparent`]) is ignored.
    pub client_traceparent: Option<String>,
}

/// The node's health.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `ok`, `degraded` (serving, something is wrong) or `down` (not ready).
    pub status: &'static str,
    /// False while the node cannot take work (`down`); the API answers 503.
    pub ready: bool,
    /// The node's name.
    pub node: String,
    /// The build.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Networks on this node.
    pub networks: usize,
    /// Per component: `ok` or why not.
    pub components: serde_json::Map<String, serde_json::Value>,
    /// This node's view of its cluster (absent on a standalone node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Arc<View>>,
}

struct Inner {
    retention: Retention,
    names: Names,
    ledger: Arc<Ledger>,
    gateway: Arc<GatewayConfig>,
    store: Arc<dyn Store>,
    memory: MemoryClient,
    admission: Arc<Admission>,
    watch: Arc<TaskWatch>,
    statuses: Arc<DashMap<NetworkId, NetworkStatus>>,
    supervisor: ActorRef<NodeMsg>,
    join: std::sync::Mutex<Option<JoinHandle<()>>>,
    settings: Settings,
    started: Instant,
    cluster: Cluster,
}

/// A running node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl Node {
    /// Starts the node's actor tree and resumes what its store holds.
    pub async fn start(options: NodeOptions) -> Result<Node, NodeError> {
        let names = Names::new(&options.name);
        let memory = MemoryClient::new(
            names.clone(),
            options.memory_shards,
            options.settings.call_timeout,
            options.embedder.clone(),
        )
        .with_store(options.store.clone());
        let admission = Arc::new(Admission::new(options.max_unfinished_tasks));
        let watch = Arc::new(TaskWatch::default());
        let statuses = Arc::new(DashMap::new());
        let mut gateway = options.gateway;
        for p in options.providers {
            gateway.catalog.add_local(p);
        }
        let ledger = Arc::new(Ledger::new(options.budget, options.network_budget));
        if let crate::embedding::Embedding::Provider(p) = &options.embedder {
            p.charge_to(ledger.clone());
        }
        let gateway_config = Arc::new(gateway);
        let cluster = match options.cluster {
            Some(c) => Cluster::member(c),
            None => Cluster::standalone(&options.name),
        };
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let args = NodeArgs {
            names: names.clone(),
            store: options.store.clone(),
            memory: memory.clone(),
            gateway: gateway_config.clone(),
            ledger: ledger.clone(),
            embedder: options.embedder.clone(),
            vector_caches: (0..options.memory_shards.max(1))
                .map(|_| Arc::new(VectorCache::default()))
                .collect(),
            ann_threshold: options.ann_threshold,
            sweep_interval: options.sweep_interval,
            retention: options.retention,
            admission: admission.clone(),
            watch: watch.clone(),
            behaviors: options.behaviors,
            settings: options.settings.clone(),
            statuses: statuses.clone(),
            cluster: cluster.clone(),
            incarnation,
        };
        let (supervisor, join) = Actor::spawn(Some(names.node_supervisor()), NodeSupervisor, args)
            .await
            .map_err(|e| NodeError::Unavailable {
                component: "node",
                message: e.to_string(),
            })?;
        Ok(Node {
            inner: Arc::new(Inner {
                retention: options.retention,
                ledger,
                gateway: gateway_config,
                names,
                store: options.store,
                memory,
                admission,
                watch,
                statuses,
                supervisor,
                join: std::sync::Mutex::new(Some(join)),
                settings: options.settings,
                started: Instant::now(),
                cluster,
            }),
        })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.inner.names.node()
    }

    /// The node's cluster handle (a standalone node has one too: it owns everything).
    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// The node's store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    fn timeout(&self) -> Duration {
        self.inner.settings.call_timeout
    }

    fn unavailable(component: &'static str, e: CallError) -> NodeError {
        NodeError::Unavailable {
            component,
            message: e.to_string(),
        }
    }

    async fn record(&self, network: NetworkId) -> Result<NetworkRecord, NodeError> {
        self.inner
            .store
            .network(network)
            .await?
            .ok_or_else(|| NodeError::NotFound {
                kind: "network",
                id: network.to_string(),
            })
    }

    fn view(&self, record: NetworkRecord) -> NetworkView {
        let id = record.network_id;
        NetworkView {
            status: self
                .inner
                .statuses
                .get(&id)
                .map(|s| *s)
                .unwrap_or(NetworkStatus::Restarting),
            unfinished_tasks: self.inner.admission.unfinished(id),
            spend: self.inner.ledger.network(id),
            record,
        }
    }

    /// Creates a network and starts its actors.
    pub async fn create_network(&self, new: NewNetwork) -> Result<NetworkView, NodeError> {
        let mut agents = new.agents.unwrap_or_else(default_agents);
        match agents.iter().filter(|a| a.is_coordinator()).count() {
            0 => {
                let coordinator = default_agents()
                    .into_iter()
                    .find(|a| a.is_coordinator())
                    .ok_or(NodeError::Invalid {
                        field: "agents",
                        message: "no default coordinator".into(),
                    })?;
                agents.insert(0, coordinator);
            }
            1 => {
                // The coordinator goes first.
                agents.sort_by_key(|a| !a.is_coordinator());
            }
            _ => {
                return Err(NodeError::Invalid {
                    field: "agents",
                    message: "a network has exactly one agent of type \"coordinator\"".into(),
                });
            }
        }
        let at = now();
        let record = NetworkRecord {
            network_id: new.network_id.unwrap_or_default(),
            name: new.name,
            description: new.description,
            max_iterations: new.max_iterations,
            timeout_seconds: new.timeout_seconds,
            agents,
            budget_usd: new.budget_usd,
            retention: new.retention,
            created_at: at,
            updated_at: at,
        };
        self.inner.store.put_network(&record).await?;
        self.inner.admission.set(record.network_id, 0);
        let started = ask(&self.inner.supervisor, self.timeout(), |r| {
            NodeMsg::StartNetwork(Box::new(record.clone()), r)
        })
        .await;
        match started {
            Ok(Ok(())) => Ok(self.view(record)),
            Ok(Err(message)) => {
                let _ = self.inner.store.delete_network(record.network_id).await;
                Err(NodeError::Unavailable {
                    component: "network",
                    message,
                })
            }
            Err(e) => Err(Self::unavailable("node supervisor", e)),
        }
    }

    /// Every network, oldest first.
    pub async fn networks(&self) -> Result<Vec<NetworkView>, NodeError> {
        Ok(self
            .inner
            .store
            .networks()
            .await?
            .into_iter()
            .map(|r| self.view(r))
            .collect())
    }

    /// One network.
    pub async fn network(&self, network: NetworkId) -> Result<NetworkView, NodeError> {
        Ok(self.view(self.record(network).await?))
    }

    /// Stops a network's actors and deletes it with its tasks and memory.
    pub async fn delete_network(&self, network: NetworkId) -> Result<(), NodeError> {
        self.record(network).await?;
        ask(&self.inner.supervisor, self.timeout() * 2, |r| {
            NodeMsg::StopNetwork(network, r)
        })
        .await
        .map_err(|e| Self::unavailable("node supervisor", e))?;
        self.inner.store.delete_network(network).await?;
        self.inner.memory.drop_network(network);
        self.inner.ledger.forget(network);
        self.inner.admission.forget(network);
        Ok(())
    }

    /// Accepts a task (`queued`); it is kept before this returns.
    pub async fn submit_task(
        &self,
        network: NetworkId,
        new: NewTask,
    ) -> Result<TaskRecord, NodeError> {
        let record = self.record(network).await?;
        if !self.inner.admission.try_admit(network) {
            return Err(NodeError::Busy {
                message: format!(
                    "network {network} already holds {} unfinished tasks; retry later",
                    self.inner.admission.cap()
                ),
                retry_after: 1,
            });
        }
        // Kept in version-00 form, and only when valid.
        let client = new
            .client_traceparent
            .as_deref()
            .and_then(crate::trace::parse_traceparent);
        let task = TaskRecord {
            task_id: TaskId::new(),
            network_id: network,
            task: new.task,
            context: new.context,
            priority: new.priority,
            max_iterations: new.max_iterations.unwrap_or(record.max_iterations),
            timeout_seconds: new.timeout_seconds.unwrap_or(record.timeout_seconds),
            status: TaskStatus::Queued,
            iterations: 0,
            subtasks: Vec::new(),
            result: None,
            error: None,
            errors: Vec::new(),
            usage: Default::default(),
            created_at: now(),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            client_traceparent: client.as_ref().map(crate::trace::traceparent_of),
        };
        // The trace id is the task id and the resource names the node: no need to repeat them.
        let span =
            crate::trace::TaskSpan::start_linked("task.accept", task.task_id, None, client, || {
                vec![opentelemetry::KeyValue::new(
                    "aimesh.priority",
                    i64::from(task.priority.get()),
                )]
            });
        let kept = self.inner.store.insert_task(&task).await;
        span.end();
        if let Err(e) = kept {
            self.inner.admission.release(network);
            return Err(e.into());
        }
        metrics::counter!(crate::metrics_names::TASKS_SUBMITTED, "priority" => crate::metrics_names::priority_label(task.priority)).increment(1);
        Ok(task)
    }

    fn coordinator(&self, network: NetworkId) -> Result<ActorRef<CoordinatorMsg>, NodeError> {
        lookup(&self.inner.names.coordinator(network)).ok_or_else(|| {
            let failed = self
                .inner
                .statuses
                .get(&network)
                .is_some_and(|s| *s == NetworkStatus::Failed);
            if failed {
                NodeError::Conflict {
                    code: "network_failed",
                    message: format!(
                        "network {network} failed (restarted past its intensity); delete and recreate it"
                    ),
                }
            } else {
                NodeError::Unavailable {
                    component: "coordinator",
                    message: "restarting; retry shortly".into(),
                }
            }
        })
    }

    fn coordinator_error(e: CoordinatorError) -> NodeError {
        match e {
            CoordinatorError::UnknownTask(t) => NodeError::NotFound {
                kind: "task",
                id: t.to_string(),
            },
            CoordinatorError::AlreadyFinished { task, status } => NodeError::Conflict {
                code: "task_finished",
                message: format!("task {task} is already {}", status.as_str()),
            },
            CoordinatorError::Store(s) => NodeError::Store(s),
        }
    }

    /// Asks the network's coordinator to process a task.
    pub async fn process_task(
        &self,
        network: NetworkId,
        task: TaskId,
    ) -> Result<TaskStatus, NodeError> {
        self.record(network).await?;
        let c = self.coordinator(network)?;
        ask(&c, self.timeout(), |r| CoordinatorMsg::Process(task, r))
            .await
            .map_err(|e| Self::unavailable("coordinator", e))?
            .map_err(Self::coordinator_error)
    }

    /// Cancels a task that has not ended.
    pub async fn cancel_task(
        &self,
        network: NetworkId,
        task: TaskId,
    ) -> Result<TaskStatus, NodeError> {
        self.record(network).await?;
        let c = self.coordinator(network)?;
        ask(&c, self.timeout(), |r| CoordinatorMsg::Cancel(task, r))
            .await
            .map_err(|e| Self::unavailable("coordinator", e))?
            .map_err(Self::coordinator_error)
    }

    /// One task.
    pub async fn task(&self, network: NetworkId, task: TaskId) -> Result<TaskRecord, NodeError> {
        self.record(network).await?;
        self.inner
            .store
            .task(network, task)
            .await?
            .ok_or_else(|| NodeError::NotFound {
                kind: "task",
                id: task.to_string(),
            })
    }

    /// Waits until a task has ended, or `limit` passes; returns the task as it then is.
    pub async fn wait_task(
        &self,
        network: NetworkId,
        task: TaskId,
        limit: Duration,
    ) -> Result<TaskRecord, NodeError> {
        let ended = self.inner.watch.subscribe(task);
        let current = self.task(network, task).await?;
        if current.status.is_terminal() {
            self.inner.watch.forget(task);
            return Ok(current);
        }
        if tokio::time::timeout(limit, ended).await.is_err() {
            self.inner.watch.forget(task);
        }
        self.task(network, task).await
    }

    /// Waits until a task has ended, or `limit` passes; returns its status then. Cheaper than
    /// [`Node::wait_task`]: the record is not read.
    pub async fn wait_status(
        &self,
        network: NetworkId,
        task: TaskId,
        limit: Duration,
    ) -> Result<TaskStatus, NodeError> {
        let ended = self.inner.watch.subscribe(task);
        let not_found = || NodeError::NotFound {
            kind: "task",
            id: task.to_string(),
        };
        let current = self
            .inner
            .store
            .task_status(network, task)
            .await?
            .ok_or_else(not_found)?;
        if current.is_terminal() {
            self.inner.watch.forget(task);
            return Ok(current);
        }
        match tokio::time::timeout(limit, ended).await {
            Ok(Ok(status)) => Ok(status),
            _ => {
                self.inner.watch.forget(task);
                Ok(self
                    .inner
                    .store
                    .task_status(network, task)
                    .await?
                    .ok_or_else(not_found)?)
            }
        }
    }

    /// A page of a network's tasks, newest first.
    pub async fn tasks(
        &self,
        network: NetworkId,
        query: &TaskQuery,
    ) -> Result<Page<TaskSummary>, NodeError> {
        self.record(network).await?;
        Ok(self.inner.store.tasks(network, query).await?)
    }

    fn network_ref(&self, network: NetworkId) -> Result<ActorRef<NetworkMsg>, NodeError> {
        lookup(&self.inner.names.network(network)).ok_or(NodeError::Unavailable {
            component: "network",
            message: "restarting; retry shortly".into(),
        })
    }

    fn network_error(e: NetworkError) -> NodeError {
        match e {
            NetworkError::UnknownAgent(a) => NodeError::NotFound {
                kind: "agent",
                id: a.to_string(),
            },
            NetworkError::Coordinator(m) => NodeError::Conflict {
                code: "coordinator",
                message: m.into(),
            },
            NetworkError::Spawn(m) => NodeError::Unavailable {
                component: "agent",
                message: m,
            },
            NetworkError::Store(s) => NodeError::Store(s),
        }
    }

    /// Adds a specialist agent to a network.
    pub async fn add_agent(
        &self,
        network: NetworkId,
        spec: AgentSpec,
    ) -> Result<AgentView, NodeError> {
        self.record(network).await?;
        let n = self.network_ref(network)?;
        ask(&n, self.timeout(), |r| NetworkMsg::AddAgent(spec, r))
            .await
            .map_err(|e| Self::unavailable("network", e))?
            .map_err(Self::network_error)
    }

    /// Removes an agent from a network.
    pub async fn remove_agent(&self, network: NetworkId, agent: AgentId) -> Result<(), NodeError> {
        self.record(network).await?;
        let n = self.network_ref(network)?;
        ask(&n, self.timeout(), |r| NetworkMsg::RemoveAgent(agent, r))
            .await
            .map_err(|e| Self::unavailable("network", e))?
            .map_err(Self::network_error)
    }

    /// A network's agents with their live counters.
    pub async fn agents(&self, network: NetworkId) -> Result<Vec<AgentView>, NodeError> {
        self.record(network).await?;
        let n = self.network_ref(network)?;
        ask(&n, self.timeout(), NetworkMsg::Agents)
            .await
            .map_err(|e| Self::unavailable("network", e))
    }

    /// Stores a memory item; returns once it is stored.
    pub async fn add_memory(&self, item: MemoryItem) -> Result<MemoryItem, NodeError> {
        self.record(item.network_id).await?;
        self.inner.memory.put(item.clone()).await?;
        metrics::counter!(crate::metrics_names::MEMORY_WRITES).increment(1);
        Ok(item)
    }

    /// A page of a network's memory, newest first.
    pub async fn memory(
        &self,
        network: NetworkId,
        query: &MemoryQuery,
    ) -> Result<Page<MemoryItem>, NodeError> {
        self.record(network).await?;
        Ok(self.inner.memory.query(network, query).await?)
    }

    /// The `query.limit` items of a network most similar to `text`, best first, with scores.
    pub async fn search_memory(
        &self,
        network: NetworkId,
        text: &str,
        query: &MemoryQuery,
    ) -> Result<Vec<(MemoryItem, f32)>, NodeError> {
        self.record(network).await?;
        let started = Instant::now();
        let hits = self.inner.memory.relevant(network, text, query).await?;
        metrics::histogram!("aimesh_memory_search_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(hits)
    }

    /// The name of the embedder used for search.
    pub fn embedder_name(&self) -> String {
        self.inner.memory.embedder().name().to_owned()
    }

    /// Creates a session.
    pub async fn create_session(&self, session: Session) -> Result<Session, NodeError> {
        self.record(session.network_id).await?;
        let existing = self.inner.store.sessions(session.network_id).await?;
        if existing.iter().any(|s| s.session_id == session.session_id) {
            return Err(NodeError::Conflict {
                code: "session_exists",
                message: format!("session {:?} already exists", session.session_id),
            });
        }
        self.inner.store.put_session(&session).await?;
        Ok(session)
    }

    /// A network's sessions that have not expired.
    pub async fn sessions(&self, network: NetworkId) -> Result<Vec<Session>, NodeError> {
        self.record(network).await?;
        let at = now();
        Ok(self
            .inner
            .store
            .sessions(network)
            .await?
            .into_iter()
            .filter(|s| s.expires_at.is_none_or(|e| e > at))
            .collect())
    }

    /// A session, if it exists and has not expired.
    pub async fn session(
        &self,
        network: NetworkId,
        id: &str,
    ) -> Result<Option<Session>, NodeError> {
        Ok(self
            .sessions(network)
            .await?
            .into_iter()
            .find(|s| s.session_id == id))
    }

    /// Deletes a session and its items.
    pub async fn delete_session(&self, network: NetworkId, id: &str) -> Result<usize, NodeError> {
        self.record(network).await?;
        if !self.inner.store.delete_session(network, id).await? {
            return Err(NodeError::NotFound {
                kind: "session",
                id: id.to_owned(),
            });
        }
        Ok(self.inner.memory.drop_session(network, id).await?)
    }

    /// One janitor pass as of `at` (the node runs one every sweep interval by itself).
    pub async fn sweep(&self, at: Timestamp) -> Result<crate::janitor::Swept, NodeError> {
        crate::janitor::sweep(
            &self.inner.store,
            &self.inner.memory,
            self.inner.retention,
            at,
        )
        .await
        .map_err(|message| NodeError::Unavailable {
            component: "memory",
            message,
        })
    }

    /// True if `model` names a model or chain the gateway knows.
    pub fn knows_model(&self, model: &str) -> bool {
        self.inner.gateway.catalog.knows(model)
    }

    /// Every model or chain name a caller may use.
    pub fn model_names(&self) -> Vec<String> {
        self.inner.gateway.catalog.known_names()
    }

    /// Sets a network's budget (`None`: the node's default).
    pub fn set_network_budget(&self, network: NetworkId, budget: Option<Usd>) {
        self.inner.ledger.set_network_budget(network, budget);
    }

    /// A network's spend and budget.
    pub fn network_spend(&self, network: NetworkId) -> Spend {
        self.inner.ledger.network(network)
    }

    /// The global spend and budget.
    pub fn spend(&self) -> Spend {
        self.inner.ledger.global()
    }

    fn gateway(&self) -> Result<ActorRef<GatewayMsg>, NodeError> {
        lookup(&self.inner.names.gateway()).ok_or(NodeError::Unavailable {
            component: "gateway",
            message: "restarting; retry shortly".into(),
        })
    }

    /// Runs a model call through the gateway (the OpenAI-compatible API uses this).
    pub async fn complete(&self, request: ModelRequest) -> Result<ModelResponse, ModelError> {
        let gateway = self
            .gateway()
            .map_err(|e| ModelError::GatewayUnavailable(e.to_string()))?;
        let wait = request.timeout + self.timeout();
        ask(&gateway, wait, |r| {
            GatewayMsg::Complete(Box::new(request), r)
        })
        .await
        .unwrap_or_else(|e| Err(ModelError::GatewayUnavailable(e.to_string())))
    }

    /// Runs a streamed model call: pieces go to `sink`, the whole answer comes back at the end.
    pub async fn stream(
        &self,
        request: ModelRequest,
        sink: DeltaSink,
    ) -> Result<ModelResponse, ModelError> {
        let gateway = self
            .gateway()
            .map_err(|e| ModelError::GatewayUnavailable(e.to_string()))?;
        let wait = request.timeout + self.timeout();
        ask(&gateway, wait, |r| {
            GatewayMsg::Stream(Box::new(request), sink, r)
        })
        .await
        .unwrap_or_else(|e| Err(ModelError::GatewayUnavailable(e.to_string())))
    }

    /// The gateway's state: breakers, queues, cache.
    pub async fn gateway_status(&self) -> Result<GatewayStatus, NodeError> {
        let gateway = self.gateway()?;
        ask(&gateway, self.timeout(), GatewayMsg::Status)
            .await
            .map_err(|e| Self::unavailable("gateway", e))
    }

    /// The node's health, component by component. `down` (not ready: a core component is
    /// missing, or a clustered node with a shared store has no quorum) answers 503; `degraded`
    /// (a failed network, an open provider circuit, an unreachable peer) still serves.
    pub async fn health(&self) -> Health {
        let mut components = serde_json::Map::new();
        let mut down = false;
        let mut degraded = false;
        let gateway = lookup::<crate::gateway::GatewayMsg>(&self.inner.names.gateway()).is_some();
        down |= !gateway;
        components.insert(
            "gateway".into(),
            serde_json::Value::Object(component(gateway, "down", "model gateway actor".into())),
        );
        let shards = self.inner.memory.shards();
        let up = (0..shards)
            .filter(|i| {
                lookup::<crate::memory_shard::ShardMsg>(&self.inner.names.shard(*i)).is_some()
            })
            .count();
        down |= up as u32 != shards;
        components.insert(
            "memory".into(),
            serde_json::Value::Object(component(
                up as u32 == shards,
                "down",
                format!("{up}/{shards} shards running"),
            )),
        );
        let asked = Instant::now();
        let store = tokio::time::timeout(self.timeout(), self.inner.store.networks()).await;
        let latency_ms = asked.elapsed().as_secs_f64() * 1e3;
        let networks = match &store {
            Ok(Ok(n)) => n.len(),
            _ => 0,
        };
        let store_ok = matches!(store, Ok(Ok(_)));
        down |= !store_ok;
        let mut c = component(
            store_ok,
            "down",
            match &store {
                Ok(Ok(_)) => format!("{} backend", self.inner.store.backend()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {:?}", self.timeout()),
            },
        );
        c.insert("latency_ms".into(), serde_json::json!(latency_ms));
        components.insert("store".into(), serde_json::Value::Object(c));
        let failed = self
            .inner
            .statuses
            .iter()
            .filter(|s| *s.value() == NetworkStatus::Failed)
            .count();
        degraded |= failed > 0;
        components.insert(
            "networks".into(),
            serde_json::Value::Object(component(
                failed == 0,
                "degraded",
                format!("{networks} networks, {failed} failed"),
            )),
        );
        // Providers: each used link's breaker, grouped by provider.
        if let Ok(status) = self.gateway_status().await {
            let mut providers = serde_json::Map::new();
            for p in &status.providers {
                let links: Vec<_> = status
                    .links
                    .iter()
                    .filter(|l| l.link.split('/').next() == Some(p.name.as_str()))
                    .collect();
                let open = links
                    .iter()
                    .filter(|l| l.circuit == crate::gateway::circuit::CircuitState::Open)
                    .count();
                let ok = p.up && (links.is_empty() || open < links.len());
                degraded |= !ok;
                let mut c = component(
                    ok,
                    "degraded",
                    format!(
                        "{}{open}/{} circuits open",
                        if p.up { "" } else { "not running, " },
                        links.len()
                    ),
                );
                c.insert(
                    "circuits".into(),
                    serde_json::json!(
                        links
                            .iter()
                            .map(|l| (l.link.clone(), serde_json::json!(l.circuit)))
                            .collect::<serde_json::Map<_, _>>()
                    ),
                );
                providers.insert(p.name.clone(), serde_json::Value::Object(c));
            }
            components.insert("providers".into(), serde_json::Value::Object(providers));
        }
        let cluster = self
            .inner
            .cluster
            .enabled()
            .then(|| self.inner.cluster.view());
        if let Some(view) = &cluster {
            let peers = view.members.len().saturating_sub(1);
            let alive = view
                .members
                .iter()
                .filter(|m| m.status == crate::cluster::MemberStatus::Alive)
                .count();
            // Peers being down degrades the cluster, not this node; no quorum (with a shared
            // store) means this node takes no work.
            let up = !view.shared_store || view.quorum;
            down |= !up;
            degraded |= alive < peers;
            let mut c = component(
                up,
                "down",
                format!(
                    "{alive}/{peers} peers alive{}{}",
                    if view.formed { ", formed" } else { "" },
                    if view.shared_store && !view.quorum {
                        ", no quorum: taking no work"
                    } else {
                        ""
                    }
                ),
            );
            let members: serde_json::Map<_, _> = view
                .members
                .iter()
                .filter(|m| m.name != view.me)
                .map(|m| {
                    let ok = m.status == crate::cluster::MemberStatus::Alive;
                    (
                        m.name.clone(),
                        serde_json::json!({
                            "status": if ok { "ok" } else { "degraded" },
                            "member": m.status,
                            "rtt_ms": m.rtt_ms,
                            "last_heard_ms": m.last_heard_ms,
                        }),
                    )
                })
                .collect();
            c.insert("peers".into(), serde_json::Value::Object(members));
            components.insert("cluster".into(), serde_json::Value::Object(c));
        }
        Health {
            ready: !down,
            cluster,
            status: if down {
                "down"
            } else if degraded {
                "degraded"
            } else {
                "ok"
            },
            node: self.name().to_owned(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.inner.started.elapsed().as_secs(),
            networks,
            components,
        }
    }

    /// True while the node's actor tree runs.
    pub fn is_running(&self) -> bool {
        self.inner
            .join
            .lock()
            .map(|j| j.as_ref().is_some_and(|h| !h.is_finished()))
            .unwrap_or(false)
    }

    /// Waits until the node's actor tree stops by itself (a fatal escalation).
    pub async fn stopped(&self) {
        let join = self.inner.join.lock().ok().and_then(|mut j| j.take());
        if let Some(join) = join {
            let _ = join.await;
        }
    }

    /// Stops the actor tree: networks, shards, gateway.
    pub async fn shutdown(&self) {
        let _ = self
            .inner
            .supervisor
            .stop_and_wait(Some("shutdown".into()), Some(self.timeout()))
            .await;
    }
}

/// One health component: `{"status": "ok"|bad, "detail": ...}`.
fn component(
    ok: bool,
    bad: &'static str,
    detail: String,
) -> serde_json::Map<String, serde_json::Value> {
    let mut c = serde_json::Map::new();
    c.insert(
        "status".into(),
        serde_json::json!(if ok { "ok" } else { bad }),
    );
    c.insert("detail".into(), serde_json::json!(detail));
    c
}
