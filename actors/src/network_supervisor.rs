//! A network's supervisor: parent of its coordinator and agents.
//!
//! Restart policy (one-for-one, per child): a crashed agent or coordinator is restarted, at most
//! `agent_policy` times (3 in 5 s by default). A restarted agent is announced to the coordinator,
//! which redelivers the agent's open subtasks; a restarted coordinator reloads its unfinished
//! tasks from the store. Past the intensity the failure escalates: the coordinator first fails
//! every task that had work on the agent (naming it), then this supervisor fails, and the node
//! supervisor applies its own policy to the whole network.
//!
//! Registered as `<node>/net/<id>`. Also adds and removes agents at run time.

use std::collections::HashSet;

use futures::future::join_all;
use std::sync::Arc;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use ractor_cluster_derive::RactorMessage;
use serde::Serialize;
use tokio::time::Instant;

use crate::admission::Admission;
use crate::agent::{Agent, AgentArgs, AgentMsg, Reporter};
use crate::behavior::Behaviors;
use crate::cluster::Cluster;
use crate::coordinator::{AgentHandle, Coordinator, CoordinatorArgs, CoordinatorMsg};
use crate::ids::{AgentId, NetworkId};
use crate::memory::MemoryClient;
use crate::names::Names;
use crate::policy::{Decision, RestartWindow};
use crate::rpc::ask;
use crate::settings::Settings;
use crate::stats::{AgentStats, AgentStatsView, AgentStatus, StatsTotals};
use crate::store::{Store, StoreError};
use crate::types::{AgentSpec, NetworkRecord, now};
use crate::watch::TaskWatch;

/// Agents started concurrently at a time when a network starts.
const SPAWN_BATCH: usize = 256;

/// Messages to a network supervisor.
#[derive(RactorMessage)]
pub enum NetworkMsg {
    /// Add a specialist agent.
    AddAgent(AgentSpec, RpcReplyPort<Result<AgentView, NetworkError>>),
    /// Remove an agent; its open subtasks are re-delegated.
    RemoveAgent(AgentId, RpcReplyPort<Result<(), NetworkError>>),
    /// Every agent with its live counters, the coordinator first.
    Agents(RpcReplyPort<Vec<AgentView>>),
    /// The counters summed, the coordinator's then the agents' (a scrape of a network of
    /// thousands of agents gets two small totals, not a view per agent).
    Counts(RpcReplyPort<[StatsTotals; 2]>),
}

/// Why a network supervisor refused a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetworkError {
    /// No such agent.
    #[error("no agent {0} in this network")]
    UnknownAgent(AgentId),
    /// The coordinator is not removable, and a second one cannot be added.
    #[error("{0}")]
    Coordinator(&'static str),
    /// The agent could not be started.
    #[error("agent failed to start: {0}")]
    Spawn(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An agent and its live counters.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    /// Its configuration.
    #[serde(flatten)]
    pub spec: AgentSpec,
    /// Its counters.
    #[serde(flatten)]
    pub stats: AgentStatsView,
    /// Its actor's current id (none while it restarts).
    #[serde(skip)]
    pub actor: Option<ractor::ActorId>,
}

/// What a network supervisor starts with.
#[derive(Clone)]
pub struct NetworkArgs {
    /// The network.
    pub record: NetworkRecord,
    /// Where it is kept.
    pub store: Arc<dyn Store>,
    /// Actor names of its node.
    pub names: Names,
    /// Shared memory.
    pub memory: MemoryClient,
    /// Unfinished-task accounting.
    pub admission: Arc<Admission>,
    /// Task-end subscribers.
    pub watch: Arc<TaskWatch>,
    /// Agent behaviors by type.
    pub behaviors: Behaviors,
    /// Tunables.
    pub settings: Settings,
    /// The cluster.
    pub cluster: Cluster,
    /// Whether its subtasks may run on other nodes.
    pub spread: bool,
}

struct Slot {
    spec: Arc<AgentSpec>,
    actor: Option<ActorRef<AgentMsg>>,
    stats: Arc<AgentStats>,
    restarts: RestartWindow,
}

/// A network supervisor's state.
pub struct NetworkState {
    /// Its counters in the actor directory.
    counters: std::sync::Arc<crate::directory::Counters>,
    args: NetworkArgs,
    coordinator: Option<ActorRef<CoordinatorMsg>>,
    coordinator_stats: Arc<AgentStats>,
    coordinator_restarts: RestartWindow,
    agents: Vec<Slot>,
    removing: HashSet<ActorId>,
}

/// The network supervisor actor.
pub struct NetworkSupervisor;

impl Actor for NetworkSupervisor {
    type Msg = NetworkMsg;
    type State = NetworkState;
    type Arguments = NetworkArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NetworkMsg>,
        args: NetworkArgs,
    ) -> Result<NetworkState, ActorProcessingErr> {
        let policy = args.settings.agent_policy;
        let mut state = NetworkState {
            counters: crate::directory::counters(&myself.get_name().unwrap_or_default()),
            coordinator: None,
            coordinator_stats: Arc::new(AgentStats::default()),
            coordinator_restarts: RestartWindow::new(policy),
            agents: Vec::new(),
            removing: HashSet::new(),
            args,
        };
        // Agents start in batches, concurrently: a network of thousands comes up in one pass.
        let specs: Vec<Arc<AgentSpec>> = state
            .args
            .record
            .specialists()
            .map(|s| Arc::new(s.clone()))
            .collect();
        let cell = myself.get_cell();
        for batch in specs.chunks(SPAWN_BATCH) {
            let started = join_all(batch.iter().map(|spec| {
                let stats = Arc::new(AgentStats::default());
                let started = state.spawn_agent(&cell, spec.clone(), stats.clone());
                async move { (spec.clone(), stats, started.await) }
            }))
            .await;
            for (spec, stats, actor) in started {
                state.agents.push(Slot {
                    spec,
                    actor: Some(actor?),
                    stats,
                    restarts: RestartWindow::new(policy),
                });
            }
        }
        state.spawn_coordinator(&myself.get_cell()).await?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<NetworkMsg>,
        msg: NetworkMsg,
        state: &mut NetworkState,
    ) -> Result<(), ActorProcessingErr> {
        state.counters.message();
        match msg {
            NetworkMsg::AddAgent(spec, reply) => {
                let r = state.add_agent(&myself.get_cell(), spec).await;
                let _ = reply.send(r);
            }
            NetworkMsg::RemoveAgent(agent, reply) => {
                let r = state.remove_agent(agent).await;
                let _ = reply.send(r);
            }
            NetworkMsg::Agents(reply) => {
                let _ = reply.send(state.views());
            }
            NetworkMsg::Counts(reply) => {
                let mut totals = [StatsTotals::default(), StatsTotals::default()];
                totals[0].add(&state.coordinator_stats.view());
                for agent in &state.agents {
                    totals[1].add(&agent.stats.view());
                }
                let _ = reply.send(totals);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NetworkMsg>,
        event: SupervisionEvent,
        state: &mut NetworkState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, error) = match event {
            SupervisionEvent::ActorFailed(cell, e) => (cell, e.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let reason = reason.unwrap_or_else(|| "stopped".into());
                (cell, format!("exited unexpectedly ({reason})"))
            }
            _ => return Ok(()),
        };
        if state.removing.remove(&cell.get_id()) {
            return Ok(());
        }
        state.child_failed(&myself.get_cell(), cell, error).await
    }
}

impl NetworkState {
    fn network(&self) -> NetworkId {
        self.args.record.network_id
    }

    async fn spawn_agent(
        &self,
        supervisor: &ActorCell,
        spec: Arc<AgentSpec>,
        stats: Arc<AgentStats>,
    ) -> Result<ActorRef<AgentMsg>, ActorProcessingErr> {
        let args = AgentArgs {
            behavior: self.args.behaviors.for_kind(&spec.kind),
            spec,
            network: self.network(),
            stats,
            names: self.args.names.clone(),
            memory: self.args.memory.clone(),
            aging: self.args.settings.aging,
            model_timeout: self.args.settings.model_timeout,
            store: self.args.store.clone(),
            cluster: self.args.cluster.clone(),
            reporter: Reporter::Local,
        };
        let (actor, _) = Actor::spawn_linked(None, Agent, args, supervisor.clone()).await?;
        Ok(actor)
    }

    fn handles(&self) -> Vec<AgentHandle> {
        self.agents
            .iter()
            .filter_map(|s| {
                Some(AgentHandle::new(
                    s.spec.clone(),
                    s.actor.clone()?,
                    s.stats.clone(),
                ))
            })
            .collect()
    }

    async fn spawn_coordinator(
        &mut self,
        supervisor: &ActorCell,
    ) -> Result<(), ActorProcessingErr> {
        let spec = self
            .args
            .record
            .coordinator()
            .cloned()
            .ok_or("network has no coordinator")?;
        let args = CoordinatorArgs {
            network: self.network(),
            spec: Arc::new(spec),
            agents: self.handles(),
            store: self.args.store.clone(),
            memory: self.args.memory.clone(),
            names: self.args.names.clone(),
            admission: self.args.admission.clone(),
            watch: self.args.watch.clone(),
            stats: self.coordinator_stats.clone(),
            aging: self.args.settings.aging,
            max_active: self.args.settings.max_active_tasks.max(1),
            model_timeout: self.args.settings.model_timeout,
            cluster: self.args.cluster.clone(),
            spread: self.args.spread,
        };
        let name = self.args.names.coordinator(self.network());
        let (actor, _) =
            Actor::spawn_linked(Some(name), Coordinator, args, supervisor.clone()).await?;
        self.coordinator = Some(actor);
        Ok(())
    }

    async fn child_failed(
        &mut self,
        supervisor: &ActorCell,
        cell: ActorCell,
        error: String,
    ) -> Result<(), ActorProcessingErr> {
        let id = cell.get_id();
        let network = self.network();
        if self.coordinator.as_ref().is_some_and(|c| c.get_id() == id) {
            self.coordinator = None;
            self.coordinator_stats.restarted();
            let counters = crate::directory::counters(&self.args.names.coordinator(network));
            return match self.coordinator_restarts.on_failure(Instant::now()) {
                Decision::Restart { n } => {
                    counters.restarted();
                    tracing::warn!(%network, restart = n, %error, "coordinator crashed; restarting it");
                    self.coordinator_stats.set_status(AgentStatus::Restarting);
                    self.spawn_coordinator(supervisor).await
                }
                Decision::Escalate => {
                    counters.escalated();
                    tracing::error!(%network, %error, "coordinator crash loop; escalating");
                    Err(format!(
                        "network {network}: coordinator exceeded its restart intensity ({}): {error}",
                        self.coordinator_restarts.policy()
                    )
                    .into())
                }
            };
        }
        let Some(index) = self
            .agents
            .iter()
            .position(|s| s.actor.as_ref().is_some_and(|a| a.get_id() == id))
        else {
            return Ok(()); // not a child we know (already replaced)
        };
        let slot = &mut self.agents[index];
        slot.actor = None;
        let (spec, stats) = (slot.spec.clone(), slot.stats.clone());
        match slot.restarts.on_failure(Instant::now()) {
            Decision::Restart { n } => {
                tracing::warn!(%network, agent = %spec.name, restart = n, %error, "agent crashed; restarting it");
                stats.restarted();
                stats.set_status(AgentStatus::Restarting);
                let actor = self
                    .spawn_agent(supervisor, spec.clone(), stats.clone())
                    .await?;
                self.agents[index].actor = Some(actor.clone());
                if let Some(c) = &self.coordinator {
                    let _ = c.cast(CoordinatorMsg::AgentUp {
                        agent: AgentHandle::new(spec, actor, stats),
                        crash: Some(error),
                    });
                }
                Ok(())
            }
            Decision::Escalate => {
                stats.set_status(AgentStatus::Failed);
                crate::directory::counters(&crate::directory::agent_id(
                    self.args.names.node(),
                    network,
                    spec.agent_id,
                ))
                .escalated();
                let policy = self.agents[index].restarts.policy();
                let reason = format!(
                    "crashed again after {} restarts within {:?} (restart intensity exceeded); last error: {error}",
                    policy.max_restarts, policy.within
                );
                tracing::error!(%network, agent = %spec.name, %reason, "agent crash loop; escalating");
                if let Some(c) = &self.coordinator {
                    let agent = spec.agent_id;
                    let sent = ask(c, self.args.settings.call_timeout, |reply| {
                        CoordinatorMsg::Escalated {
                            agent,
                            reason: reason.clone(),
                            reply,
                        }
                    })
                    .await;
                    if let Err(e) = sent {
                        tracing::error!(%network, error = %e, "coordinator did not take the escalation");
                    }
                }
                Err(format!("network {network}: agent {} {reason}", spec.name).into())
            }
        }
    }

    async fn persist(&mut self) -> Result<(), StoreError> {
        let mut agents: Vec<AgentSpec> = self
            .args
            .record
            .coordinator()
            .cloned()
            .into_iter()
            .collect();
        agents.extend(self.agents.iter().map(|s| (*s.spec).clone()));
        self.args.record.agents = agents;
        self.args.record.updated_at = now();
        self.args.store.put_network(&self.args.record).await
    }

    async fn add_agent(
        &mut self,
        supervisor: &ActorCell,
        spec: AgentSpec,
    ) -> Result<AgentView, NetworkError> {
        if spec.is_coordinator() {
            return Err(NetworkError::Coordinator(
                "a network has exactly one coordinator; it cannot be added",
            ));
        }
        let spec = Arc::new(spec);
        let stats = Arc::new(AgentStats::default());
        let actor = self
            .spawn_agent(supervisor, spec.clone(), stats.clone())
            .await
            .map_err(|e| NetworkError::Spawn(e.to_string()))?;
        self.agents.push(Slot {
            spec: spec.clone(),
            actor: Some(actor.clone()),
            stats: stats.clone(),
            restarts: RestartWindow::new(self.args.settings.agent_policy),
        });
        self.persist().await?;
        if let Some(c) = &self.coordinator {
            let _ = c.cast(CoordinatorMsg::AgentUp {
                agent: AgentHandle::new(spec.clone(), actor, stats.clone()),
                crash: None,
            });
        }
        Ok(AgentView {
            spec: (*spec).clone(),
            stats: stats.view(),
            actor: None,
        })
    }

    async fn remove_agent(&mut self, agent: AgentId) -> Result<(), NetworkError> {
        if self
            .args
            .record
            .coordinator()
            .is_some_and(|c| c.agent_id == agent)
        {
            return Err(NetworkError::Coordinator(
                "the coordinator cannot be removed from its network",
            ));
        }
        let index = self
            .agents
            .iter()
            .position(|s| s.spec.agent_id == agent)
            .ok_or(NetworkError::UnknownAgent(agent))?;
        let slot = self.agents.remove(index);
        slot.stats.set_status(AgentStatus::Stopped);
        if let Some(actor) = slot.actor {
            self.removing.insert(actor.get_id());
            actor.stop(Some("removed from the network".into()));
        }
        self.persist().await?;
        if let Some(c) = &self.coordinator {
            let _ = c.cast(CoordinatorMsg::AgentDown(agent));
        }
        Ok(())
    }

    fn views(&self) -> Vec<AgentView> {
        let mut out: Vec<AgentView> = self
            .args
            .record
            .coordinator()
            .map(|c| AgentView {
                spec: c.clone(),
                stats: self.coordinator_stats.view(),
                actor: self.coordinator.as_ref().map(|a| a.get_id()),
            })
            .into_iter()
            .collect();
        out.extend(self.agents.iter().map(|s| AgentView {
            spec: (*s.spec).clone(),
            stats: s.stats.view(),
            actor: s.actor.as_ref().map(|a| a.get_id()),
        }));
        out
    }
}
