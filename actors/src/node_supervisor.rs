//! The node supervisor: root of a node's actor tree.
//!
//! Children: the model gateway, the memory shards, one network supervisor per network it owns,
//! and in a cluster the membership actor (with the node's endpoint) and the guest host.
//! Restart policy (one-for-one, per child):
//! - gateway, shards, membership, guest host: restarted up to `service_policy` (5 in 10 s);
//!   past it the node cannot
//!   serve, so this supervisor fails and the node process exits non-zero for its own supervisor
//!   (systemd, Kubernetes, `aimesh up`) to handle;
//! - networks: an escalated network is restarted from its stored record up to `network_policy`
//!   (3 in 60 s); its coordinator resumes the unfinished tasks. Past it the network is marked
//!   `failed` and its unfinished tasks end `failed` with `network_failed`.
//!
//! With a node-local store it starts every network in its store. With a shared store it starts
//! none by itself: each membership change (and a periodic check) reconciles the networks it runs
//! with those it owns ([`crate::cluster::Cluster::owner_of`]): it releases the ones it no
//! longer owns at once, and adopts new ones after a hand-off delay (so the previous owner has
//! stopped), loading their memory and resuming their unfinished tasks.

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
use crate::cluster::member::{ClusterMember, MemberArgs, MemberMsg};
use crate::cluster::{Cluster, Owner};
use crate::coordinator::CoordinatorMsg;
use crate::embedding::{Embedding, VectorCache};
use crate::gateway::ledger::Ledger;
use crate::gateway::{Gateway, GatewayArgs, GatewayConfig, GatewayMsg};
use crate::guest::{GuestArgs, GuestHost, GuestMsg};
use crate::ids::NetworkId;
use crate::memory::MemoryClient;
use crate::memory_shard::{MemoryShard, ShardArgs, ShardMsg};
use crate::names::Names;
use crate::network_supervisor::{NetworkArgs, NetworkMsg, NetworkSupervisor};
use crate::policy::{Decision, RestartWindow};
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
    /// From the membership actor: the view changed; `lost` are peers whose work must move.
    Membership {
        /// The new view.
        view: Arc<crate::cluster::View>,
        /// Peers lost since the last view.
        lost: Vec<String>,
    },
    /// Shared store: compare the networks run here with those owned here.
    Reconcile,
    /// Shared store: the networks this node owns, as read from the store.
    Owned(Vec<NetworkRecord>),
    /// Shared store: start a network this node now owns (after the hand-off delay).
    Adopt(Box<NetworkRecord>),
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
    pub embedder: Embedding,
    /// Each shard's provider vectors by content hash (outliving the shard's restarts).
    pub vector_caches: Vec<Arc<VectorCache>>,
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
    /// The cluster.
    pub cluster: Cluster,
    /// When this process started (unix ns), for heartbeats.
    pub incarnation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Child {
    Gateway,
    Shard(u32),
    Member,
    Guests,
    Network(NetworkId),
}

/// How long a node waits before adopting a network that may have had another owner a moment
/// ago: two heartbeats, so that owner has seen the same view and stopped it.
fn handoff(cluster: &Cluster) -> std::time::Duration {
    cluster
        .config()
        .map(|c| c.heartbeat * 2)
        .unwrap_or_default()
}

/// The node supervisor's state.
pub struct NodeState {
    /// Its counters in the actor directory.
    counters: std::sync::Arc<crate::directory::Counters>,
    args: NodeArgs,
    children: HashMap<ActorId, Child>,
    restarts: HashMap<Child, RestartWindow>,
    networks: HashMap<NetworkId, ActorRef<NetworkMsg>>,
    /// Networks waiting out the hand-off delay.
    adopting: HashMap<NetworkId, crate::owned::OwnedTask>,
    /// A reconciliation reading the store.
    reconciling: Option<crate::owned::OwnedTask>,
    _janitor: Option<crate::owned::OwnedTask>,
    _reconciler: Option<crate::owned::OwnedTask>,
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
            counters: crate::directory::counters(&myself.get_name().unwrap_or_default()),
            args,
            children: HashMap::new(),
            restarts: HashMap::new(),
            networks: HashMap::new(),
            adopting: HashMap::new(),
            reconciling: None,
            _janitor: None,
            _reconciler: None,
        };
        let me = myself.get_cell();
        state.spawn(&me, Child::Gateway).await?;
        for i in 0..state.args.memory.shards() {
            state.spawn(&me, Child::Shard(i)).await?;
        }
        if state.args.cluster.enabled() {
            state.spawn(&me, Child::Guests).await?;
        }
        if !state.args.cluster.shared_store() {
            for record in state.args.store.networks().await? {
                let unfinished = state.args.store.unfinished_tasks(record.network_id).await?;
                state
                    .args
                    .admission
                    .set(record.network_id, unfinished.len());
                state.start_network(&me, record).await?;
            }
        } else {
            state._reconciler = Some(crate::owned::OwnedTask::every(
                std::time::Duration::from_secs(2),
                myself.clone(),
                || NodeMsg::Reconcile,
            ));
        }
        if state.args.cluster.enabled() {
            // Last: peers may send work as soon as the endpoint is up.
            state.spawn(&me, Child::Member).await?;
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
        state.counters.message();
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
                state.adopting.remove(&network);
                let _ = reply.send(());
            }
            NodeMsg::Membership { view, lost } => {
                if !lost.is_empty() {
                    for network in state.networks.keys() {
                        let name = state.args.names.coordinator(*network);
                        if let Some(c) = crate::names::lookup::<CoordinatorMsg>(&name) {
                            let _ = c.cast(CoordinatorMsg::NodesLost(lost.clone()));
                        }
                    }
                    if let Some(g) = crate::names::lookup::<GuestMsg>(&state.args.names.guests()) {
                        let _ = g.cast(GuestMsg::OwnersLost(lost));
                    }
                }
                if view.shared_store {
                    state.reconcile(&myself);
                }
            }
            NodeMsg::Reconcile => state.reconcile(&myself),
            NodeMsg::Owned(records) => state.owned(&myself, records).await,
            NodeMsg::Adopt(record) => state.adopt(&myself.get_cell(), *record).await,
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
                    vector_cache: self
                        .args
                        .vector_caches
                        .get(index as usize)
                        .cloned()
                        .unwrap_or_default(),
                    ann_threshold: self.args.ann_threshold,
                    owned: self
                        .args
                        .cluster
                        .shared_store()
                        .then(|| self.args.statuses.clone()),
                };
                let (a, _) =
                    Actor::spawn_linked(Some(names.shard(index)), MemoryShard, args, me.clone())
                        .await?;
                let a: ActorRef<ShardMsg> = a;
                a.get_id()
            }
            Child::Member => {
                let args = MemberArgs {
                    cluster: self.args.cluster.clone(),
                    names: self.args.names.clone(),
                    supervisor: ActorRef::from(me.clone()),
                    memory: self.args.memory.clone(),
                    incarnation: self.args.incarnation,
                };
                let (a, _) =
                    Actor::spawn_linked(Some(names.cluster()), ClusterMember, args, me.clone())
                        .await?;
                let a: ActorRef<MemberMsg> = a;
                a.get_id()
            }
            Child::Guests => {
                let args = GuestArgs {
                    names: self.args.names.clone(),
                    cluster: self.args.cluster.clone(),
                    behaviors: self.args.behaviors.clone(),
                    settings: self.args.settings.clone(),
                    store: self.args.store.clone(),
                    memory: self.args.memory.clone(),
                };
                let (a, _) =
                    Actor::spawn_linked(Some(names.guests()), GuestHost, args, me.clone()).await?;
                let a: ActorRef<GuestMsg> = a;
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
        if self.args.ledger.network(network).limit.is_some() {
            let spent = journaled_spend(&*self.args.store, network).await?;
            self.args.ledger.restore_network_spend(network, spent);
        }
        // Networks with a budget keep their model calls here, where the ledger reserves exactly.
        let spread =
            self.args.cluster.enabled() && self.args.ledger.network(network).limit.is_none();
        let args = NetworkArgs {
            record,
            store: self.args.store.clone(),
            names: self.args.names.clone(),
            memory: self.args.memory.clone(),
            admission: self.args.admission.clone(),
            watch: self.args.watch.clone(),
            behaviors: self.args.behaviors.clone(),
            settings: self.args.settings.clone(),
            cluster: self.args.cluster.clone(),
            spread,
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
        let names = &self.args.names;
        let counters = crate::directory::counters(&match child {
            Child::Gateway => names.gateway(),
            Child::Shard(i) => names.shard(i),
            Child::Member => names.cluster(),
            Child::Guests => names.guests(),
            Child::Network(n) => names.network(n),
        });
        match decision {
            Decision::Restart { .. } => counters.restarted(),
            Decision::Escalate => counters.escalated(),
        }
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

    /// Shared store: reads the networks in the store in an owned task; the ones this node owns
    /// come back as `Owned`.
    fn reconcile(&mut self, myself: &ActorRef<NodeMsg>) {
        if self.reconciling.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let (store, cluster, me) = (
            self.args.store.clone(),
            self.args.cluster.clone(),
            myself.clone(),
        );
        self.reconciling = Some(crate::owned::OwnedTask::spawn(async move {
            match store.networks().await {
                Ok(all) => {
                    let owned = all
                        .into_iter()
                        .filter(|r| cluster.owner_of(r.network_id) == Owner::Local)
                        .collect();
                    let _ = me.cast(NodeMsg::Owned(owned));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the networks to reconcile ownership")
                }
            }
        }));
    }

    /// Releases the networks run here that this node no longer owns; schedules the adoption of
    /// those it newly owns.
    async fn owned(&mut self, myself: &ActorRef<NodeMsg>, records: Vec<NetworkRecord>) {
        let owned: std::collections::HashSet<NetworkId> =
            records.iter().map(|r| r.network_id).collect();
        let running: Vec<NetworkId> = self.networks.keys().copied().collect();
        for network in running {
            if !owned.contains(&network) && self.args.cluster.owner_of(network) != Owner::Local {
                self.release(network).await;
            }
        }
        self.adopting.retain(|n, _| owned.contains(n));
        let delay = handoff(&self.args.cluster);
        for record in records {
            let id = record.network_id;
            if self.networks.contains_key(&id)
                || self.adopting.contains_key(&id)
                || self
                    .args
                    .statuses
                    .get(&id)
                    .is_some_and(|s| *s == NetworkStatus::Failed)
            {
                continue;
            }
            let me = myself.clone();
            self.adopting.insert(
                id,
                crate::owned::OwnedTask::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = me.cast(NodeMsg::Adopt(Box::new(record)));
                }),
            );
        }
    }

    /// Starts a network this node took over: its memory, its admission count, its actors
    /// (whose coordinator resumes its unfinished tasks).
    async fn adopt(&mut self, me: &ActorCell, record: NetworkRecord) {
        let network = record.network_id;
        if self.adopting.remove(&network).is_none()
            || self.networks.contains_key(&network)
            || self.args.cluster.owner_of(network) != Owner::Local
        {
            return;
        }
        let started = std::time::Instant::now();
        let unfinished = match self.args.store.unfinished_tasks(network).await {
            Ok(u) => u.len(),
            Err(e) => {
                tracing::warn!(%network, error = %e, "cannot adopt the network yet; the next reconciliation retries");
                return;
            }
        };
        self.args
            .statuses
            .insert(network, NetworkStatus::Restarting);
        let loaded = match self.args.memory.load_network(network).await {
            Ok(n) => n,
            Err(e) => {
                self.args.statuses.remove(&network);
                tracing::warn!(%network, error = %e, "cannot load the network's memory yet; the next reconciliation retries");
                return;
            }
        };
        self.args.admission.set(network, unfinished);
        match self.start_network(me, record).await {
            Ok(()) => {
                metrics::counter!("aimesh_cluster_networks_adopted_total").increment(1);
                tracing::info!(%network, unfinished, memory_items = loaded, took_ms = started.elapsed().as_millis() as u64, "took the network over");
            }
            Err(e) => {
                self.args.statuses.remove(&network);
                tracing::warn!(%network, error = %e, "cannot start the adopted network; the next reconciliation retries");
            }
        }
    }

    /// Stops running a network this node no longer owns (its state stays in the store).
    async fn release(&mut self, network: NetworkId) {
        if let Some(actor) = self.networks.remove(&network) {
            self.children.remove(&actor.get_id());
            let _ = actor
                .stop_and_wait(
                    Some("ownership moved to another node".into()),
                    Some(self.args.settings.call_timeout),
                )
                .await;
        }
        self.restarts.remove(&Child::Network(network));
        self.args.statuses.remove(&network);
        self.args.memory.drop_network(network);
        self.args.admission.forget(network);
        tracing::info!(%network, "released the network (owned elsewhere now)");
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

/// What a network's journaled tasks cost (its spend before this node started it).
async fn journaled_spend(
    store: &dyn crate::store::Store,
    network: NetworkId,
) -> Result<crate::types::Usd, crate::store::StoreError> {
    const PAGE: usize = 1000;
    let mut spent = crate::types::Usd(0);
    let mut offset = 0;
    loop {
        let query = crate::types::TaskQuery {
            status: None,
            limit: PAGE,
            offset,
        };
        let page = store.tasks(network, &query).await?;
        let n = page.items.len();
        for t in page.items {
            spent = spent.saturating_add(t.cost_usd);
        }
        if n < PAGE {
            return Ok(spent);
        }
        offset += n;
    }
}
