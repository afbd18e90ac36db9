//! The guest host: runs subtasks that other nodes' coordinators place on this node.
//!
//! Supervised by the node supervisor (a node service), registered as `<node>/guests`. A guest
//! agent is an ordinary [`Agent`] of a network owned elsewhere, started on the first subtask
//! for it and stopped after `IDLE` without work. It calls this node's gateway, and reports to
//! the owner's coordinator through the cluster. The host keeps each guest's unreported work:
//! a guest that crashes is restarted (3 restarts in 5 s, per guest) and its work redelivered;
//! past that, the work is reported failed, naming the agent and this node. When an owner is
//! lost, its work here is dropped: the owner's successor redelivers it. The host renews the
//! owners' leases on the work it holds every two heartbeats; an owner redelivers work whose
//! lease lapses (dropped here while the owner was merely suspected, or a lost report).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use ractor_cluster_derive::RactorMessage;
use tokio::time::Instant;

use crate::agent::{Agent, AgentArgs, AgentMsg, Reporter};
use crate::behavior::{Assignment, Behaviors};
use crate::cluster::Cluster;
use crate::cluster::wire::{Cast, RemoteAssign, Report};
use crate::ids::{AgentId, NetworkId, SubtaskId, TaskId};
use crate::memory::MemoryClient;
use crate::names::Names;
use crate::owned::OwnedTask;
use crate::policy::{Decision, RestartPolicy, RestartWindow};
use crate::settings::Settings;
use crate::stats::AgentStats;
use crate::store::Store;
use crate::types::{AgentSpec, SubtaskOutcome};

/// A guest agent with no work for this long is stopped.
const IDLE: Duration = Duration::from_secs(300);

/// Messages to the guest host.
#[derive(RactorMessage)]
pub enum GuestMsg {
    /// A subtask from another node's coordinator.
    Assign(Box<RemoteAssign>),
    /// Drop a task's work.
    Cancel {
        /// The network.
        network: NetworkId,
        /// The task.
        task: TaskId,
    },
    /// A guest agent reported a subtask's end to its owner.
    Settled(NetworkId, AgentId, SubtaskId),
    /// These owners were lost: drop their work (their successors redeliver it).
    OwnersLost(Vec<String>),
    /// Stop idle guests.
    Sweep,
    /// Renew the owners' leases on the work held here.
    Renew,
    /// How many guest agents and subtasks are here.
    Count(ractor::RpcReplyPort<(usize, usize)>),
}

/// What the guest host starts with.
#[derive(Clone)]
pub struct GuestArgs {
    /// The node's actor names.
    pub names: Names,
    /// The cluster.
    pub cluster: Cluster,
    /// Agent behaviors by type.
    pub behaviors: Behaviors,
    /// Tunables.
    pub settings: Settings,
    /// Kept answers (model calls are made here).
    pub store: Arc<dyn Store>,
    /// Shared memory (unused by guests, which write through their owner; required by agents).
    pub memory: MemoryClient,
}

struct Guest {
    network: NetworkId,
    owner: String,
    spec: Arc<AgentSpec>,
    actor: Option<ActorRef<AgentMsg>>,
    stats: Arc<AgentStats>,
    restarts: RestartWindow,
    /// Work handed to it and not yet reported.
    open: HashMap<SubtaskId, Assignment>,
    used: Instant,
}

/// The guest host's state.
pub struct GuestState {
    /// Its counters in the actor directory.
    counters: std::sync::Arc<crate::directory::Counters>,
    args: GuestArgs,
    guests: HashMap<(NetworkId, AgentId), Guest>,
    by_actor: HashMap<ActorId, (NetworkId, AgentId)>,
    _sweeper: OwnedTask,
    _renewer: Option<OwnedTask>,
}

/// The guest host actor.
pub struct GuestHost;

impl Actor for GuestHost {
    type Msg = GuestMsg;
    type State = GuestState;
    type Arguments = GuestArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<GuestMsg>,
        args: GuestArgs,
    ) -> Result<GuestState, ActorProcessingErr> {
        let sweeper = OwnedTask::every(Duration::from_secs(30), myself.clone(), || GuestMsg::Sweep);
        let renewer = args
            .cluster
            .lease()
            .map(|(every, _)| OwnedTask::every(every, myself.clone(), || GuestMsg::Renew));
        Ok(GuestState {
            counters: crate::directory::counters(&myself.get_name().unwrap_or_default()),
            args,
            guests: HashMap::new(),
            by_actor: HashMap::new(),
            _sweeper: sweeper,
            _renewer: renewer,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<GuestMsg>,
        msg: GuestMsg,
        state: &mut GuestState,
    ) -> Result<(), ActorProcessingErr> {
        state.counters.message();
        match msg {
            GuestMsg::Assign(assign) => state.assign(&myself, *assign).await,
            GuestMsg::Cancel { network, task } => state.cancel(network, task),
            GuestMsg::Settled(network, agent, subtask) => {
                if let Some(g) = state.guests.get_mut(&(network, agent)) {
                    g.open.remove(&subtask);
                    g.used = Instant::now();
                }
            }
            GuestMsg::OwnersLost(owners) => state.owners_lost(&owners),
            GuestMsg::Sweep => state.sweep(),
            GuestMsg::Renew => state.renew(),
            GuestMsg::Count(reply) => {
                let open = state.guests.values().map(|g| g.open.len()).sum();
                let _ = reply.send((state.guests.len(), open));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<GuestMsg>,
        event: SupervisionEvent,
        state: &mut GuestState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, error) = match event {
            SupervisionEvent::ActorFailed(cell, e) => (cell, e.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!("exited ({})", reason.unwrap_or_else(|| "no reason".into())),
            ),
            _ => return Ok(()),
        };
        let Some(key) = state.by_actor.remove(&cell.get_id()) else {
            return Ok(()); // stopped on purpose
        };
        state.guest_failed(&myself, key, error).await;
        Ok(())
    }
}

impl GuestState {
    async fn spawn(
        &self,
        myself: &ActorRef<GuestMsg>,
        network: NetworkId,
        owner: &str,
        spec: Arc<AgentSpec>,
        stats: Arc<AgentStats>,
    ) -> Result<ActorRef<AgentMsg>, ActorProcessingErr> {
        let args = AgentArgs {
            behavior: self.args.behaviors.for_kind(&spec.kind),
            spec,
            network,
            stats,
            names: self.args.names.clone(),
            memory: self.args.memory.clone(),
            aging: self.args.settings.aging,
            model_timeout: self.args.settings.model_timeout,
            store: self.args.store.clone(),
            cluster: self.args.cluster.clone(),
            reporter: Reporter::Remote {
                owner: owner.to_owned(),
                host: myself.clone(),
            },
        };
        let (actor, _) = Actor::spawn_linked(None, Agent, args, myself.get_cell()).await?;
        Ok(actor)
    }

    async fn assign(&mut self, myself: &ActorRef<GuestMsg>, assign: RemoteAssign) {
        let RemoteAssign { owner, spec, work } = assign;
        let key = (work.network, spec.agent_id);
        let fresh = match self.guests.get(&key) {
            Some(g) => g.actor.is_none() || g.owner != owner || *g.spec != spec,
            None => true,
        };
        if fresh {
            if let Some(old) = self.guests.remove(&key)
                && let Some(actor) = old.actor
            {
                self.by_actor.remove(&actor.get_id());
                actor.stop(Some("replaced".into()));
            }
            let spec = Arc::new(spec);
            let stats = Arc::new(AgentStats::default());
            match self
                .spawn(myself, work.network, &owner, spec.clone(), stats.clone())
                .await
            {
                Ok(actor) => {
                    self.by_actor.insert(actor.get_id(), key);
                    self.guests.insert(
                        key,
                        Guest {
                            network: work.network,
                            owner,
                            spec,
                            actor: Some(actor),
                            stats,
                            restarts: RestartWindow::new(RestartPolicy::AGENT),
                            open: HashMap::new(),
                            used: Instant::now(),
                        },
                    );
                }
                Err(e) => {
                    let failed = Report::Finished {
                        network: work.network,
                        subtask: work.subtask,
                        agent: spec.agent_id,
                        outcome: SubtaskOutcome::Failed {
                            error: format!(
                                "agent {} could not start on node {}: {e}",
                                spec.name,
                                self.args.names.node()
                            ),
                        },
                    };
                    self.args
                        .cluster
                        .cast(&owner, &Cast::Report(Box::new(failed)));
                    return;
                }
            }
        }
        let Some(guest) = self.guests.get_mut(&key) else {
            return;
        };
        guest.used = Instant::now();
        guest.open.insert(work.subtask, work.clone());
        if let Some(actor) = &guest.actor {
            let _ = actor.cast(AgentMsg::Assign(Box::new(work)));
        }
    }

    fn cancel(&mut self, network: NetworkId, task: TaskId) {
        for g in self.guests.values_mut().filter(|g| g.network == network) {
            g.open.retain(|id, _| id.task != task);
            if let Some(actor) = &g.actor {
                let _ = actor.cast(AgentMsg::CancelTask(task));
            }
        }
    }

    fn owners_lost(&mut self, owners: &[String]) {
        let lost: Vec<(NetworkId, AgentId)> = self
            .guests
            .iter()
            .filter(|(_, g)| owners.contains(&g.owner))
            .map(|(k, _)| *k)
            .collect();
        for key in lost {
            if let Some(g) = self.guests.remove(&key)
                && let Some(actor) = g.actor
            {
                self.by_actor.remove(&actor.get_id());
                actor.stop(Some("its network's owner was lost".into()));
            }
        }
    }

    /// Tells each owner which of its subtasks are held here, one report per network.
    fn renew(&self) {
        let mut held: HashMap<(&str, NetworkId), Vec<SubtaskId>> = HashMap::new();
        for g in self.guests.values().filter(|g| !g.open.is_empty()) {
            held.entry((g.owner.as_str(), g.network))
                .or_default()
                .extend(g.open.keys().copied());
        }
        let node = self.args.names.node();
        for ((owner, network), subtasks) in held {
            let report = Report::Holding {
                network,
                node: node.to_owned(),
                subtasks,
            };
            self.args
                .cluster
                .cast(owner, &Cast::Report(Box::new(report)));
        }
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let idle: Vec<(NetworkId, AgentId)> = self
            .guests
            .iter()
            .filter(|(_, g)| g.open.is_empty() && now.duration_since(g.used) > IDLE)
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            if let Some(g) = self.guests.remove(&key)
                && let Some(actor) = g.actor
            {
                self.by_actor.remove(&actor.get_id());
                actor.stop(Some("idle".into()));
            }
        }
    }

    async fn guest_failed(
        &mut self,
        myself: &ActorRef<GuestMsg>,
        key: (NetworkId, AgentId),
        error: String,
    ) {
        let node = self.args.names.node().to_owned();
        let Some(g) = self.guests.get_mut(&key) else {
            return;
        };
        g.actor = None;
        g.stats.restarted();
        let (network, owner, spec, stats) =
            (g.network, g.owner.clone(), g.spec.clone(), g.stats.clone());
        let decision = g.restarts.on_failure(Instant::now());
        if let Decision::Restart { n } = decision {
            tracing::warn!(%network, agent = %spec.name, restart = n, %error, "guest agent crashed; restarting it");
            match self
                .spawn(myself, network, &owner, spec.clone(), stats)
                .await
            {
                Ok(actor) => {
                    self.by_actor.insert(actor.get_id(), key);
                    if let Some(g) = self.guests.get_mut(&key) {
                        for work in g.open.values() {
                            let mut again = work.clone();
                            again.attempt += 1;
                            let _ = actor.cast(AgentMsg::Assign(Box::new(again)));
                        }
                        g.actor = Some(actor);
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!(%network, agent = %spec.name, error = %e, "guest agent did not restart")
                }
            }
        }
        // Past its intensity (or it would not start): its work fails, naming it and this node.
        let Some(g) = self.guests.remove(&key) else {
            return;
        };
        tracing::error!(%network, agent = %spec.name, %error, "guest agent crash loop; failing its work");
        for subtask in g.open.into_keys() {
            let report = Report::Finished {
                network,
                subtask,
                agent: spec.agent_id,
                outcome: SubtaskOutcome::Failed {
                    error: format!(
                        "agent {} crashed repeatedly on node {node} (restart intensity exceeded); last error: {error}",
                        spec.name
                    ),
                },
            };
            self.args
                .cluster
                .cast(&owner, &Cast::Report(Box::new(report)));
        }
    }
}
