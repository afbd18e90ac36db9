//! An agent: one actor per agent, with a priority mailbox.
//!
//! Supervised by its network's supervisor (which restarts it and has the coordinator redeliver
//! its subtasks). Subtasks arrive as `Assign` and wait in an [`AgingQueue`]; up to
//! `parameters.concurrency` run at once, each model call as an owned task whose answer is cast
//! back, so `CancelTask` and status requests are served at once even during long calls. It
//! reports `Started` / `Finished` to the coordinator (looked up by name, so a restarted
//! coordinator gets them) and writes a note of its output to shared memory. A guest agent (one
//! running a subtask another node placed here, see [`crate::guest`]) reports to the owner's
//! coordinator and writes to the owner's memory through the cluster instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster_derive::RactorMessage;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::behavior::{AgentBehavior, Assignment};
use crate::cluster::Cluster;
use crate::cluster::wire::{Cast, Report};
use crate::coordinator::CoordinatorMsg;
use crate::gateway::{ModelError, ModelResponse};
use crate::guest::GuestMsg;
use crate::ids::{MemoryId, NetworkId, SubtaskId, TaskId};
use crate::memory::MemoryClient;
use crate::names::{Names, lookup};
use crate::owned::OwnedTask;
use crate::sched::AgingQueue;
use crate::stats::AgentStats;
use crate::types::{AgentSpec, MemoryItem, MemoryKind, SubtaskOutcome, now};

/// Messages to an agent.
#[derive(RactorMessage)]
pub enum AgentMsg {
    /// Work from the coordinator; queued by priority. A duplicate delivery is ignored.
    Assign(Box<Assignment>),
    /// Drop every queued and running subtask of a task.
    CancelTask(TaskId),
    /// Internal: a model call ended.
    ModelDone(SubtaskId, Box<Result<ModelResponse, ModelError>>),
}

/// What an agent starts with (kept by its supervisor for restarts).
#[derive(Clone)]
pub struct AgentArgs {
    /// Its configuration.
    pub spec: Arc<AgentSpec>,
    /// Its network.
    pub network: NetworkId,
    /// How it works.
    pub behavior: Arc<dyn AgentBehavior>,
    /// Its counters (owned by the supervisor, so they outlive restarts).
    pub stats: Arc<AgentStats>,
    /// Actor names of its node.
    pub names: Names,
    /// Shared memory.
    pub memory: MemoryClient,
    /// Aging interval of its mailbox.
    pub aging: Duration,
    /// Time limit of one model call.
    pub model_timeout: Duration,
    /// Where kept answers are looked up.
    pub store: Arc<dyn crate::store::Store>,
    /// The cluster (this node's load is counted there).
    pub cluster: Cluster,
    /// Where its reports go.
    pub reporter: Reporter,
}

/// Where an agent's reports and memory writes go.
#[derive(Clone)]
pub enum Reporter {
    /// Its network's coordinator and memory, on this node.
    Local,
    /// The coordinator of a network owned by node `owner`, through the cluster; `host` hears
    /// when a subtask is reported done.
    Remote {
        /// The owner node.
        owner: String,
        /// The guest host.
        host: ActorRef<GuestMsg>,
    },
}

/// An agent's state.
pub struct AgentState {
    args: AgentArgs,
    queue: AgingQueue<Assignment>,
    running: HashMap<SubtaskId, Running>,
    /// The load last added to the node's count.
    counted: i64,
}

struct Running {
    work: Assignment,
    _call: OwnedTask,
    /// The subtask's span in its task's trace (ended when the subtask ends here).
    span: crate::trace::TaskSpan,
}

/// The agent actor.
pub struct Agent;

impl Actor for Agent {
    type Msg = AgentMsg;
    type State = AgentState;
    type Arguments = AgentArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<AgentMsg>,
        args: AgentArgs,
    ) -> Result<AgentState, ActorProcessingErr> {
        args.stats.set_load(0, 0);
        Ok(AgentState {
            queue: AgingQueue::new(args.aging),
            running: HashMap::new(),
            counted: 0,
            args,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AgentMsg>,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        state.args.cluster.add_load(-state.counted);
        state.counted = 0;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        msg: AgentMsg,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        state.args.stats.message();
        match msg {
            AgentMsg::Assign(work) => state.assign(*work),
            AgentMsg::CancelTask(task) => state.cancel(task),
            AgentMsg::ModelDone(subtask, result) => state.model_done(subtask, *result),
        }
        state.pump(&myself);
        Ok(())
    }
}

impl AgentState {
    fn assign(&mut self, work: Assignment) {
        let id = work.subtask;
        if self.running.contains_key(&id) || self.queue.contains(|w| w.subtask == id) {
            return; // already here: redelivery after a coordinator restart
        }
        // A redelivered subtask (its agent crashed or its node was lost) had reached the head
        // of a queue once already: it goes first within its priority.
        if work.attempt > 1 {
            self.queue.push_front(work.priority, work, Instant::now());
        } else {
            self.queue.push(work.priority, work, Instant::now());
        }
    }

    fn cancel(&mut self, task: TaskId) {
        self.queue.remove_where(|w| w.subtask.task == task);
        self.running.retain(|id, _| id.task != task);
    }

    /// Starts queued subtasks, highest priority first, while there is capacity.
    fn pump(&mut self, myself: &ActorRef<AgentMsg>) {
        let capacity = self.args.spec.parameters.concurrency.max(1) as usize;
        while self.running.len() < capacity {
            let Some(next) = self.queue.pop(Instant::now()) else {
                break;
            };
            metrics::histogram!(crate::metrics_names::QUEUE_WAIT, "queue" => "agent")
                .record(next.waited.as_secs_f64());
            self.start(next.item, myself);
        }
        self.args
            .stats
            .set_load(self.queue.len(), self.running.len());
        let load = (self.queue.len() + self.running.len()) as i64;
        self.args.cluster.add_load(load - self.counted);
        self.counted = load;
    }

    fn start(&mut self, work: Assignment, myself: &ActorRef<AgentMsg>) {
        self.report(CoordinatorMsg::Started {
            subtask: work.subtask,
            agent: self.args.spec.agent_id,
            attempt: work.attempt,
            node: self.args.names.node().to_owned(),
        });
        let request = self
            .args
            .behavior
            .request(&self.args.spec, &work, self.args.model_timeout);
        let gateway_name = self.args.names.gateway();
        let me = myself.clone();
        let subtask = work.subtask;
        // The call waits for admission and the model; allow for both.
        let wait = self.args.model_timeout * 2;
        let store = self.args.store.clone();
        let span = crate::trace::TaskSpan::start("subtask", subtask.task, None, || {
            vec![
                KeyValue::new("aimesh.step", i64::from(subtask.step)),
                KeyValue::new("aimesh.agent", self.args.spec.name.clone()),
                KeyValue::new("aimesh.attempt", i64::from(work.attempt)),
            ]
        });
        let parent = span.context();
        let call = OwnedTask::spawn(async move {
            let result = crate::gateway::call(&store, &gateway_name, request, wait, parent).await;
            let _ = me.cast(AgentMsg::ModelDone(subtask, Box::new(result)));
        });
        self.running.insert(
            subtask,
            Running {
                work,
                _call: call,
                span,
            },
        );
    }

    fn model_done(&mut self, subtask: SubtaskId, result: Result<ModelResponse, ModelError>) {
        let Some(running) = self.running.remove(&subtask) else {
            return; // cancelled meanwhile
        };
        let Running { work, span, _call } = running;
        let outcome = match result {
            Ok(response) => match self.args.behavior.finish(&self.args.spec, &work, &response) {
                Ok(output) => {
                    self.remember(&work, &output);
                    SubtaskOutcome::Completed {
                        output,
                        model: response.model,
                        provider: response.provider,
                        usage: response.usage,
                        route: Some(response.route),
                    }
                }
                Err(error) => SubtaskOutcome::Failed { error },
            },
            Err(e) => SubtaskOutcome::Failed {
                error: format!("{}: {e}", e.code()),
            },
        };
        match &outcome {
            SubtaskOutcome::Completed { .. } => self.args.stats.handled(),
            _ => self.args.stats.failed(),
        }
        let mut span = span;
        span.set(|| {
            let outcome = match &outcome {
                SubtaskOutcome::Completed { .. } => "completed",
                SubtaskOutcome::Failed { .. } => "failed",
                SubtaskOutcome::Cancelled { .. } => "cancelled",
            };
            vec![KeyValue::new("aimesh.outcome", outcome)]
        });
        span.end();
        self.report(CoordinatorMsg::Finished {
            subtask,
            agent: self.args.spec.agent_id,
            outcome,
        });
    }

    /// Records what the agent produced as a decision in shared memory.
    fn remember(&self, work: &Assignment, output: &str) {
        let summary: String = output
            .lines()
            .map(|l| l.trim_start_matches('#').trim())
            .filter(|l| !l.is_empty())
            .take(3)
            .collect::<Vec<_>>()
            .join(" / ");
        let mut metadata = Map::new();
        metadata.insert("subtask_id".into(), json!(work.subtask.to_string()));
        metadata.insert("source".into(), Value::from("subtask_output"));
        let at = now();
        self.write_memory(MemoryItem {
            memory_id: MemoryId::new(),
            network_id: work.network,
            kind: MemoryKind::Decision,
            content: Value::String(format!(
                "{} on \"{}\": {}",
                self.args.spec.name,
                work.brief.task.chars().take(80).collect::<String>(),
                summary.chars().take(280).collect::<String>()
            )),
            metadata,
            agent_id: Some(self.args.spec.agent_id),
            task_id: Some(work.subtask.task),
            session_id: None,
            created_at: at,
            updated_at: at,
            expires_at: None,
        });
    }

    fn write_memory(&self, item: MemoryItem) {
        match &self.args.reporter {
            Reporter::Local => self.args.memory.put_detached(item),
            Reporter::Remote { owner, .. } => {
                let report = Report::Remember(Box::new(item));
                if !self
                    .args
                    .cluster
                    .cast(owner, &Cast::Report(Box::new(report)))
                {
                    tracing::debug!(%owner, "owner unreachable; a memory note is dropped");
                }
            }
        }
    }

    fn report(&self, msg: CoordinatorMsg) {
        let network = self.args.network;
        match &self.args.reporter {
            Reporter::Local => {
                match lookup::<CoordinatorMsg>(&self.args.names.coordinator(network)) {
                    Some(c) => {
                        if c.cast(msg).is_err() {
                            tracing::debug!(
                                "coordinator stopped before a report; it will redeliver"
                            );
                        }
                    }
                    None => tracing::debug!("coordinator restarting; it will redeliver"),
                }
            }
            Reporter::Remote { owner, host } => {
                let report = match msg {
                    CoordinatorMsg::Started {
                        subtask,
                        agent,
                        attempt,
                        node,
                    } => Report::Started {
                        network,
                        subtask,
                        agent,
                        attempt,
                        node,
                    },
                    CoordinatorMsg::Finished {
                        subtask,
                        agent,
                        outcome,
                    } => {
                        let _ = host.cast(GuestMsg::Settled(network, agent, subtask));
                        Report::Finished {
                            network,
                            subtask,
                            agent,
                            outcome,
                        }
                    }
                    _ => return,
                };
                if !self
                    .args
                    .cluster
                    .cast(owner, &Cast::Report(Box::new(report)))
                {
                    tracing::debug!(%owner, "owner unreachable; its successor will redeliver");
                }
            }
        }
    }
}
