//! The node supervisor: root of a node's actor tree.
//!
//! Children: the model gateway, the memory shards, and one network supervisor per network.
//! Restart policy (one-for-one, per child):
//! - gateway and shards: restarted up to `service_policy` (5 in 10 s); past it the node cannot
//!   serve, so this supervisor fails and the node process exits non-zero for its own supervisor
//!   (systemd, Kubernetes, `aimesh up`) to handle;
//! - networks: an escalated network is restarted from its stored record up to `network_policy`
//!   (3 in 60 s); its coordinator resumes the unfinished tasks. Past it the network is marked
//!   `failed` and its unfinished tasks end `failed` with `network_failed`.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use ractor_cluster_derive::RactorMessage;
use serde::Serialize;
use tokio::time::Instant;

use crate::admission::Admission;
use crate::behavior::Behaviors;
use crate::gateway::ledger::Ledger;
use crate::gateway::{Gateway, GatewayArgs, GatewayConfig, GatewayMsg};
use crate::ids::NetworkId;
use crate::memory::MemoryClient;
use crate::memory_shard::{MemoryShard, ShardArgs, ShardMsg};
use crate::names::Names;
use crate::network_supervisor::{NetworkArgs, NetworkMsg, NetworkSupervisor};
use crate::policy::{Decision, RestartWindow};
use crate::search::Embedder;
use crate::settings::Settings;
use crate::store::{Store, StoreError};
use crate::types::{FailureCode, NetworkRecord, Retention, TaskError, TaskEvent, TaskStatus, now};
use crate::watch::TaskWatch;

/// Messages to the node supervisor.
#[derive(RactorMessage)]
pub enum NodeMsg {
    /// Start a stored network's actors.
    StartNetwork(Box<NetworkRecord>, RpcReplyPort<Result<(), String>>),
    /// Stop a network's actors (before its deletion).
    StopNetwork(NetworkId, RpcReplyPort<()>),
}

/// Whether a network's actors are serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkStatus {
    /// Serving.
    Active,
    /// Being restarted after an escalation.
    Restarting,
    /// Restarted past its intensity; its tasks were failed. Delete and recreate it.
    Failed,
}

/// What the node supervisor starts with.
#[derive(Clone)]
pub struct NodeArgs {
    /// Actor names of this node.
    pub names: Names,
    /// Where everything is kept.
    pub store: Arc<dyn Store>,
    /// Shared memory client.
    pub memory: MemoryClient,
    /// The model gateway's configuration.
    pub gateway: Arc<GatewayConfig>,
    /// Spend and budgets.
    pub ledger: Arc<Ledger>,
    /// Turns memory text into vectors.
    pub embedder: Arc<dyn Embedder>,
    /// Vector indexes switch to HNSW past this many items.
    pub ann_threshold: usize,
    /// How often the janitor sweeps.
    pub sweep_interval: Option<std::time::Duration>,
    /// Retention of networks that set none.
    pub retention: Retention,
    /// Unfinished-task accounting.
    pub admission: Arc<Admission>,
    /// Task-end subscribers.
    pub watch: Arc<TaskWatch>,
    /// Agent behaviors by type.
    pub behaviors: Behaviors,
    /// Tunables.
    pub settings: Settings,
    /// Network statuses, published for the API.
    pub statuses: Arc<DashMap<NetworkId, NetworkStatus>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Child {
    Gateway,
    Shard(u32),
    Network(NetworkId),
}

/// The node supervisor's state.
pub struct NodeState {
    args: NodeArgs,
    children: HashMap<ActorId, Child>,
    restarts: HashMap<Child, RestartWindow>,
    networks: HashMap<NetworkId, ActorRef<NetworkMsg>>,
    _janitor: Option<crate::owned::OwnedTask>,
}

/// The node supervisor actor.
pub struct NodeSupervisor;

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = NodeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeMsg>,
        args: NodeArgs,
    ) -> Result<NodeState, ActorProcessingErr> {
        let mut state = NodeState {
            args,
            children: HashMap::new(),
            restarts: HashMap::new(),
            networks: HashMap::new(),
            _janitor: None,
        };
        let me = myself.get_cell();
        state.spawn(&me, Child::Gateway).await?;
        for i in 0..state.args.memory.shards() {
            state.spawn(&me, Child::Shard(i)).await?;
        }
        for record in state.args.store.networks().await? {
            let unfinished = state.args.store.unfinished_tasks(record.network_id).await?;
            state
                .args
                .admission
                .set(record.network_id, unfinished.len());
            state.start_network(&me, record).await?;
        }
        if let Some(every) = state.args.sweep_interval {
            let (store, memory, retention) = (
                state.args.store.clone(),
                state.args.memory.clone(),
                state.args.retention,
            );
            state._janitor = Some(crate::owned::OwnedTask::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = crate::janitor::sweep(&store, &memory, retention, now()).await {
                        tracing::warn!(error = %e, "memory sweep failed; the next one retries");
                    }
                }
            }));
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<NodeMsg>,
        msg: NodeMsg,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::StartNetwork(record, reply) => {
                let r = state
                    .start_network(&myself.get_cell(), *record)
                    .await
                    .map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            NodeMsg::StopNetwork(network, reply) => {
                if let Some(actor) = state.networks.remove(&network) {
                    state.children.remove(&actor.get_id());
                    let _ = actor
                        .stop_and_wait(
                            Some("network deleted".into()),
                            Some(state.args.settings.call_timeout),
                        )
                        .await;
                }
                state.restarts.remove(&Child::Network(network));
                state.args.statuses.remove(&network);
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NodeMsg>,
        event: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, error) = match event {
            SupervisionEvent::ActorFailed(cell, e) => (cell, e.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!("exited ({})", reason.unwrap_or_else(|| "no reason".into())),
            ),
            _ => return Ok(()),
        };
        let Some(child) = state.children.remove(&cell.get_id()) else {
            return Ok(()); // stopped on purpose
        };
        state.child_failed(&myself.get_cell(), child, error).await
    }
}

impl NodeState {
    async fn spawn(&mut self, me: &ActorCell, child: Child) -> Result<(), ActorProcessingErr> {
        let names = &self.args.names;
        let id = match child {
            Child::Gateway => {
                let args = GatewayArgs {
                    config: self.args.gateway.clone(),
                    ledger: self.args.ledger.clone(),
                    names: self.args.names.clone(),
                    aging: self.args.settings.aging,
                    policy: self.args.settings.service_policy,
                    store: self.args.store.clone(),
                };
                let (a, _) =
                    Actor::spawn_linked(Some(names.gateway()), Gateway, args, me.clone()).await?;
                let a: ActorRef<GatewayMsg> = a;
                a.get_id()
            }
            Child::Shard(index) => {
                let args = ShardArgs {
                    index,
                    shards: self.args.memory.shards(),
                    store: self.args.store.clone(),
                    embedder: self.args.embedder.clone(),
                    ann_threshold: self.args.ann_threshold,
                };
                let (a, _) =
                    Actor::spawn_linked(Some(names.shard(index)), MemoryShard, args, me.clone())
                        .await?;
                let a: ActorRef<ShardMsg> = a;
                a.get_id()
            }
            Child::Network(network) => {
                let record = self
                    .args
                    .store
                    .network(network)
                    .await?
                    .ok_or_else(|| format!("network {network} is not in the store"))?;
                return self.start_network(me, record).await;
            }
        };
        self.children.insert(id, child);
        Ok(())
    }

    async fn start_network(
        &mut self,
        me: &ActorCell,
        record: NetworkRecord,
    ) -> Result<(), ActorProcessingErr> {
        let network = record.network_id;
        self.args
            .ledger
            .set_network_budget(network, record.budget_usd);
        let args = NetworkArgs {
            record,
            store: self.args.store.clone(),
            names: self.args.names.clone(),
            memory: self.args.memory.clone(),
            admission: self.args.admission.clone(),
            watch: self.args.watch.clone(),
            behaviors: self.args.behaviors.clone(),
            settings: self.args.settings.clone(),
        };
        let name = self.args.names.network(network);
        let (actor, _) =
            Actor::spawn_linked(Some(name), NetworkSupervisor, args, me.clone()).await?;
        self.children
            .insert(actor.get_id(), Child::Network(network));
        self.networks.insert(network, actor);
        self.args.statuses.insert(network, NetworkStatus::Active);
        Ok(())
    }

    async fn child_failed(
        &mut self,
        me: &ActorCell,
        child: Child,
        error: String,
    ) -> Result<(), ActorProcessingErr> {
        let policy = match child {
            Child::Network(_) => self.args.settings.network_policy,
            _ => self.args.settings.service_policy,
        };
        let decision = self
            .restarts
            .entry(child)
            .or_insert_with(|| RestartWindow::new(policy))
            .on_failure(Instant::now());
        match (child, decision) {
            (Child::Network(network), Decision::Restart { n }) => {
                tracing::warn!(%network, restart = n, %error, "network escalated; restarting it");
                self.networks.remove(&network);
                self.args
                    .statuses
                    .insert(network, NetworkStatus::Restarting);
                self.spawn(me, child).await
            }
            (Child::Network(network), Decision::Escalate) => {
                tracing::error!(%network, %error, "network restarted past its intensity; marking it failed");
                self.networks.remove(&network);
                self.args.statuses.insert(network, NetworkStatus::Failed);
                self.fail_tasks(network, &error).await?;
                Ok(())
            }
            (service, Decision::Restart { n }) => {
                tracing::warn!(?service, restart = n, %error, "node service crashed; restarting it");
                self.spawn(me, service).await
            }
            (service, Decision::Escalate) => {
                tracing::error!(?service, %error, "node service crash loop; the node stops");
                Err(format!("{service:?} exceeded its restart intensity: {error}").into())
            }
        }
    }

    /// Ends every unfinished task of a failed network (its coordinator is gone).
    async fn fail_tasks(&self, network: NetworkId, error: &str) -> Result<(), StoreError> {
        for task in self.args.store.unfinished_tasks(network).await? {
            let event = TaskEvent::Finished {
                status: TaskStatus::Failed,
                at: now(),
                result: None,
                error: Some(TaskError {
                    code: FailureCode::NetworkFailed,
                    message: format!("the network failed and was not restarted: {error}"),
                    agent_id: None,
                    agent_name: None,
                }),
            };
            self.args.store.append(network, task.task_id, event).await?;
            self.args.admission.release(network);
            self.args.watch.finished(task.task_id, TaskStatus::Failed);
        }
        Ok(())
    }
}
