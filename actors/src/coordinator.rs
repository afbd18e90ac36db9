//! The coordinator: one per network. It owns the network's tasks from `process` to their one
//! terminal state.
//!
//! Supervised by the network supervisor, registered as `<node>/net/<id>/coordinator`. Tasks
//! asked to process wait in a priority mailbox ([`AgingQueue`]) for one of `max_active` slots.
//! A started task is planned (capability matching, [`crate::planner`]), its subtasks are
//! delegated to agents, their results are journaled as they arrive, failed subtasks are
//! re-delegated to another capable agent while `max_iterations` allows, and the outputs are
//! synthesized by a model call that runs as an owned task. A deadline per task fails it with
//! `timeout` and cancels its subtasks. Every change is journaled before it is acted on, so a
//! restarted coordinator picks up every unfinished task from the store.
//!
//! In a cluster, each subtask goes to the least-loaded of two random nodes (power of two
//! choices over the live members, see [`Cluster::place`]); on another node it runs on a guest
//! agent ([`crate::guest`]), whose reports come back through the cluster. When a node is lost,
//! the subtasks placed there are redelivered.
//!
//! Sends: `Assign` / `CancelTask` to agents (or through the cluster), `Complete` to the gateway,
//! notes to memory.

mod flow;
mod live;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorMessage;

use crate::admission::Admission;
use crate::agent::AgentMsg;
use crate::cluster::Cluster;
use crate::gateway::{ModelError, ModelResponse};
use crate::ids::{AgentId, NetworkId, SubtaskId, TaskId};
use crate::memory::MemoryClient;
use crate::names::Names;
use crate::owned::OwnedTask;
use crate::planner::Vocabulary;
use crate::sched::AgingQueue;
use crate::stats::AgentStats;
use crate::store::{Store, StoreError};
use crate::types::{AgentSpec, SubtaskOutcome, TaskStatus};
use crate::watch::TaskWatch;

use live::Live;

/// Messages to a coordinator.
#[derive(RactorMessage)]
pub enum CoordinatorMsg {
    /// Start processing a queued task (idempotent while it is processing).
    Process(TaskId, RpcReplyPort<Result<TaskStatus, CoordinatorError>>),
    /// Cancel a task that has not ended.
    Cancel(TaskId, RpcReplyPort<Result<TaskStatus, CoordinatorError>>),
    /// An agent started a subtask.
    Started {
        /// Which.
        subtask: SubtaskId,
        /// Who.
        agent: AgentId,
        /// Delivery number.
        attempt: u32,
        /// The node it runs on.
        node: String,
    },
    /// An agent finished a subtask.
    Finished {
        /// Which.
        subtask: SubtaskId,
        /// Who.
        agent: AgentId,
        /// How it ended.
        outcome: SubtaskOutcome,
    },
    /// Internal: shared memory was read for a task; plan it.
    Briefed(TaskId, Vec<String>),
    /// Internal: a synthesis call ended.
    Synthesized(TaskId, Result<ModelResponse, ModelError>),
    /// Internal: a task's deadline passed.
    Deadline(TaskId),
    /// From the supervisor: an agent joined, or was restarted after a crash (`crash` says why;
    /// its subtasks are redelivered).
    AgentUp {
        /// The agent.
        agent: AgentHandle,
        /// Set when this is a restart.
        crash: Option<String>,
    },
    /// From the supervisor: an agent left the network; its subtasks are re-delegated.
    AgentDown(AgentId),
    /// From the supervisor: an agent crashed past its restart intensity. Every task with work on
    /// it fails, naming it. Replies once that is journaled.
    Escalated {
        /// The agent.
        agent: AgentId,
        /// What happened, for the tasks' error.
        reason: String,
        /// Answered when done.
        reply: RpcReplyPort<()>,
    },
    /// From the node supervisor: these nodes were lost (dead, restarted, or cut off); the open
    /// subtasks placed there are redelivered.
    NodesLost(Vec<String>),
    /// From a peer's guest host: it still holds these subtasks (renews their leases).
    Held {
        /// The peer.
        node: String,
        /// Which subtasks.
        subtasks: Vec<SubtaskId>,
    },
    /// Internal: redeliver subtasks on peers whose lease lapsed.
    LeaseCheck,
    /// Current load.
    Load(RpcReplyPort<CoordinatorLoad>),
}

/// Why a request to the coordinator was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoordinatorError {
    /// No such task in this network.
    #[error("no task {0} in this network")]
    UnknownTask(TaskId),
    /// The task has already ended.
    #[error("task {task} is already {status}", status = .status.as_str())]
    AlreadyFinished {
        /// The task.
        task: TaskId,
        /// How it ended.
        status: TaskStatus,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A coordinator's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CoordinatorLoad {
    /// Tasks waiting for a slot.
    pub waiting: usize,
    /// Tasks being worked on.
    pub active: usize,
}

/// One agent as the coordinator sees it.
#[derive(Clone)]
pub struct AgentHandle {
    /// Its configuration.
    pub spec: Arc<AgentSpec>,
    /// Its actor.
    pub actor: ActorRef<AgentMsg>,
    /// Its counters.
    pub stats: Arc<AgentStats>,
    /// The words it answers to, for planning; computed when first needed.
    vocabulary: OnceLock<Vocabulary>,
}

impl AgentHandle {
    /// The words it answers to.
    pub fn vocabulary(&self) -> &Vocabulary {
        self.vocabulary.get_or_init(|| Vocabulary::of(&self.spec))
    }

    /// A handle for `actor`, running `spec`.
    pub fn new(spec: Arc<AgentSpec>, actor: ActorRef<AgentMsg>, stats: Arc<AgentStats>) -> Self {
        Self {
            vocabulary: OnceLock::new(),
            spec,
            actor,
            stats,
        }
    }
}

/// What a coordinator starts with.
#[derive(Clone)]
pub struct CoordinatorArgs {
    /// Its network.
    pub network: NetworkId,
    /// Its own agent configuration (model and parameters for synthesis).
    pub spec: Arc<AgentSpec>,
    /// The specialists, in network order.
    pub agents: Vec<AgentHandle>,
    /// Where tasks are journaled.
    pub store: Arc<dyn Store>,
    /// Shared memory.
    pub memory: MemoryClient,
    /// Actor names of its node.
    pub names: Names,
    /// Unfinished-task accounting.
    pub admission: Arc<Admission>,
    /// Who waits for tasks to end.
    pub watch: Arc<TaskWatch>,
    /// Its own counters, shown as the coordinator agent's.
    pub stats: Arc<AgentStats>,
    /// Aging interval of its mailbox.
    pub aging: Duration,
    /// Most tasks worked on at once.
    pub max_active: usize,
    /// Time limit of one model call.
    pub model_timeout: Duration,
    /// The cluster: where subtasks may be placed.
    pub cluster: Cluster,
    /// Whether subtasks may run on other nodes (not for networks with a budget: their model
    /// calls stay on this node, whose ledger reserves exactly).
    pub spread: bool,
}

/// A coordinator's state.
pub struct CoordinatorState {
    /// Its counters in the actor directory.
    counters: std::sync::Arc<crate::directory::Counters>,
    args: CoordinatorArgs,
    /// The specialists, in network order.
    agents: Vec<AgentHandle>,
    waiting: AgingQueue<TaskId>,
    live: HashMap<TaskId, Live>,
    active: usize,
    /// Tasks announcing their end once it is durable.
    finalizers: tokio::task::JoinSet<()>,
    /// Checks the leases of subtasks placed on peers (clustered networks only).
    _lease_ticker: Option<OwnedTask>,
}

/// The coordinator actor.
pub struct Coordinator;

impl Actor for Coordinator {
    type Msg = CoordinatorMsg;
    type State = CoordinatorState;
    type Arguments = CoordinatorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<CoordinatorMsg>,
        args: CoordinatorArgs,
    ) -> Result<CoordinatorState, ActorProcessingErr> {
        let counters = crate::directory::counters(&myself.get_name().unwrap_or_default());
        let lease_ticker = args
            .cluster
            .lease()
            .filter(|_| args.spread)
            .map(|(every, _)| OwnedTask::every(every, myself, || CoordinatorMsg::LeaseCheck));
        Ok(CoordinatorState {
            counters,
            _lease_ticker: lease_ticker,
            agents: args.agents.clone(),
            waiting: AgingQueue::new(args.aging),
            live: HashMap::new(),
            active: 0,
            finalizers: tokio::task::JoinSet::new(),
            args,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<CoordinatorMsg>,
        state: &mut CoordinatorState,
    ) -> Result<(), ActorProcessingErr> {
        state.recover(&myself).await?;
        state.pump(&myself).await?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<CoordinatorMsg>,
        msg: CoordinatorMsg,
        state: &mut CoordinatorState,
    ) -> Result<(), ActorProcessingErr> {
        state.counters.message();
        state.args.stats.message();
        match msg {
            CoordinatorMsg::Process(task, reply) => {
                let r = state.process(task, &myself).await;
                let _ = reply.send(r);
            }
            CoordinatorMsg::Cancel(task, reply) => {
                let r = state.cancel(task).await;
                let _ = reply.send(r);
            }
            CoordinatorMsg::Started {
                subtask,
                agent,
                attempt,
                node,
            } => state.started(subtask, agent, attempt, node).await?,
            CoordinatorMsg::Finished {
                subtask,
                agent,
                outcome,
            } => state.finished(subtask, agent, outcome, &myself).await?,
            CoordinatorMsg::Briefed(task, memory) => state.plan(task, memory, &myself).await?,
            CoordinatorMsg::Synthesized(task, result) => state.synthesized(task, result).await?,
            CoordinatorMsg::Deadline(task) => state.deadline(task).await?,
            CoordinatorMsg::AgentUp { agent, crash } => state.agent_up(agent, crash).await?,
            CoordinatorMsg::AgentDown(agent) => state.agent_down(agent, &myself).await?,
            CoordinatorMsg::NodesLost(nodes) => state.nodes_lost(&nodes).await?,
            CoordinatorMsg::Held { node, subtasks } => state.held(&node, &subtasks),
            CoordinatorMsg::LeaseCheck => state.lease_check().await?,
            CoordinatorMsg::Escalated {
                agent,
                reason,
                reply,
            } => {
                state.escalated(agent, &reason).await?;
                let _ = reply.send(());
            }
            CoordinatorMsg::Load(reply) => {
                let _ = reply.send(CoordinatorLoad {
                    waiting: state.waiting.len(),
                    active: state.active,
                });
            }
        }
        state.pump(&myself).await?;
        state.args.stats.set_load(state.waiting.len(), state.active);
        Ok(())
    }
}
