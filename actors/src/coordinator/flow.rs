//! The coordinator's logic: a task's path from `process` to its terminal state.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorProcessingErr, ActorRef};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::live::{Live, Phase, Sub};
use super::{AgentHandle, CoordinatorError, CoordinatorMsg, CoordinatorState};
use crate::agent::AgentMsg;
use crate::behavior::Assignment;
use crate::cluster::wire::{Cast, RemoteAssign};
use crate::gateway::offline::compose::summary_of;
use crate::gateway::{ModelError, ModelRequest, ModelResponse};
use crate::ids::{AgentId, MemoryId, NetworkId, SubtaskId, TaskId};
use crate::memory::MemoryClient;
use crate::metrics_names;
use crate::owned::OwnedTask;
use crate::planner::{self, Candidate};
use crate::prompt::{self, Output, TaskBrief};
use crate::stats::AgentStatus;
use crate::store::StoreError;
use crate::types::{
    AgentSpec, FailureCode, MemoryItem, MemoryKind, MemoryQuery, SubtaskOutcome, SubtaskRecord,
    SubtaskStatus, TaskError, TaskEvent, TaskNote, TaskRecord, TaskResult, TaskStatus, now,
};

type Me = ActorRef<CoordinatorMsg>;

impl CoordinatorState {
    /// Journals an event without waiting for it to be durable: the store keeps a task's events
    /// in order, so a crash leaves a prefix of its journal, which recovery resumes from. (A
    /// failed commit is logged by the store; the writes after it fail too.)
    async fn journal(&self, task: TaskId, event: TaskEvent) -> Result<(), StoreError> {
        drop(self.args.store.append(self.args.network, task, event));
        Ok(())
    }

    /// Journals an event and waits until it is durable.
    async fn journal_durable(
        &self,
        task: TaskId,
        event: TaskEvent,
    ) -> Result<TaskStatus, StoreError> {
        self.args.store.append(self.args.network, task, event).await
    }

    fn load_of(&self, agent: AgentId) -> usize {
        self.agent(agent).map(|a| a.stats.load()).unwrap_or(0)
    }

    fn agent(&self, agent: AgentId) -> Option<&AgentHandle> {
        self.agents.iter().find(|a| a.spec.agent_id == agent)
    }

    /// Re-queues every task that was processing when the last incarnation stopped.
    pub(super) async fn recover(&mut self, myself: &Me) -> Result<(), ActorProcessingErr> {
        let unfinished = self.args.store.unfinished_tasks(self.args.network).await?;
        let mut n = 0;
        for record in unfinished
            .iter()
            .filter(|r| r.status == TaskStatus::Processing)
        {
            self.enqueue(record, myself);
            n += 1;
        }
        if n > 0 {
            tracing::info!(network = %self.args.network, tasks = n, "coordinator resumed unfinished tasks");
        }
        Ok(())
    }

    /// Makes a processing task live and queues it for a slot, with its deadline armed.
    fn enqueue(&mut self, record: &TaskRecord, myself: &Me) {
        let mut live = Live::from_record(record);
        let started = record.started_at.unwrap_or_else(now);
        let deadline = started + Duration::from_secs(record.timeout_seconds);
        let left = Duration::try_from(deadline - now()).unwrap_or(Duration::ZERO);
        let me = myself.clone();
        let id = record.task_id;
        live.deadline = Some(OwnedTask::spawn(async move {
            tokio::time::sleep(left).await;
            let _ = me.cast(CoordinatorMsg::Deadline(id));
        }));
        self.waiting.push(record.priority, id, Instant::now());
        self.live.insert(id, live);
    }

    pub(super) async fn process(
        &mut self,
        task: TaskId,
        myself: &Me,
    ) -> Result<TaskStatus, CoordinatorError> {
        if self.live.contains_key(&task) {
            return Ok(TaskStatus::Processing);
        }
        let mut record = self
            .args
            .store
            .task(self.args.network, task)
            .await?
            .ok_or(CoordinatorError::UnknownTask(task))?;
        if record.status.is_terminal() {
            return Err(CoordinatorError::AlreadyFinished {
                task,
                status: record.status,
            });
        }
        let event = TaskEvent::Processing { at: now() };
        record.apply(event.clone());
        self.journal(task, event).await?;
        self.enqueue(&record, myself);
        Ok(TaskStatus::Processing)
    }

    /// Starts waiting tasks, highest priority first, while slots are free.
    pub(super) async fn pump(&mut self, myself: &Me) -> Result<(), ActorProcessingErr> {
        while self.active < self.args.max_active {
            let Some(next) = self.waiting.pop(Instant::now()) else {
                break;
            };
            metrics::histogram!(crate::metrics_names::QUEUE_WAIT, "queue" => "coordinator")
                .record(next.waited.as_secs_f64());
            let task = next.item;
            let Some(live) = self.live.get_mut(&task) else {
                continue;
            };
            live.phase = Phase::Delegating;
            self.active += 1;
            if live.subs.is_empty() {
                // Read shared memory in an owned task; planning continues on `Briefed`.
                let memory = self.args.memory.clone();
                let network = self.args.network;
                let me = myself.clone();
                let text = live.brief.task.clone();
                live.prep = Some(OwnedTask::spawn(async move {
                    let lines = read_memory(&memory, network, &text).await;
                    let _ = me.cast(CoordinatorMsg::Briefed(task, lines));
                }));
            } else {
                // Resumed after a restart: send again what is still out (agents ignore
                // duplicates), then see whether the round is already complete.
                let open: Vec<u32> = live
                    .current()
                    .filter(|s| !s.status.is_terminal())
                    .map(|s| s.step)
                    .collect();
                for step in open {
                    self.send(task, step).await?;
                }
                self.check(task, myself).await?;
            }
        }
        Ok(())
    }

    fn note(&self, task: TaskId, text: String) {
        let mut metadata = Map::new();
        metadata.insert("source".into(), Value::from("coordinator"));
        let at = now();
        self.args.memory.put_detached(MemoryItem {
            memory_id: MemoryId::new(),
            network_id: self.args.network,
            kind: MemoryKind::Decision,
            content: Value::String(text),
            metadata,
            agent_id: Some(self.args.spec.agent_id),
            task_id: Some(task),
            session_id: None,
            created_at: at,
            updated_at: at,
            expires_at: None,
        });
    }

    /// The first round, once memory is read: pick the agents whose capabilities fit, and
    /// delegate.
    pub(super) async fn plan(
        &mut self,
        task: TaskId,
        memory: Vec<String>,
        myself: &Me,
    ) -> Result<(), StoreError> {
        if self
            .live
            .get_mut(&task)
            .and_then(|l| l.prep.take())
            .is_none()
        {
            return Ok(()); // not waiting for its brief (ended meanwhile, or a stale message)
        }
        let candidates: Vec<Candidate> = self
            .agents
            .iter()
            .filter(|a| a.stats.status() != AgentStatus::Failed)
            .map(|a| Candidate {
                spec: &a.spec,
                vocabulary: a.vocabulary(),
            })
            .collect();
        let Some(live) = self.live.get(&task) else {
            return Ok(());
        };
        let delegations = planner::plan(&live.brief.task, &live.brief.context, &candidates, |id| {
            self.load_of(id)
        });
        let at = now();
        let records: Vec<SubtaskRecord> = delegations
            .iter()
            .zip(1u32..)
            .filter_map(|(d, step)| {
                let spec = self.agent(d.agent_id)?.spec.clone();
                Some(new_subtask(
                    task,
                    step,
                    1,
                    None,
                    &spec,
                    d.description.clone(),
                    at,
                ))
            })
            .collect();
        let decision = delegations
            .iter()
            .filter_map(|d| {
                let name = &self.agent(d.agent_id)?.spec.name;
                Some(if d.matched.is_empty() {
                    format!("{name} (no specialist matched; generalist)")
                } else {
                    format!("{name} (matched: {})", d.matched.join(", "))
                })
            })
            .collect::<Vec<_>>()
            .join("; ");
        let Some(live) = self.live.get_mut(&task) else {
            return Ok(());
        };
        if !memory.is_empty() {
            live.brief = Arc::new(TaskBrief {
                memory,
                ..(*live.brief).clone()
            });
        }
        if records.is_empty() {
            // No specialists: the coordinator answers alone.
            return self.synthesize(task, myself);
        }
        live.iteration = 1;
        live.subs.extend(records.iter().map(Sub::from_record));
        self.journal(
            task,
            TaskEvent::Planned {
                iteration: 1,
                subtasks: records.clone(),
            },
        )
        .await?;
        self.note(task, format!("Delegated task {task}: {decision}"));
        for r in &records {
            self.send(task, r.step).await?;
        }
        Ok(())
    }

    /// Sends subtask `step` to its agent. An agent that has left fails the subtask.
    async fn send(&mut self, task: TaskId, step: u32) -> Result<(), StoreError> {
        let Some(live) = self.live.get(&task) else {
            return Ok(());
        };
        let Some(sub) = live.subs.iter().find(|s| s.step == step) else {
            return Ok(());
        };
        let Some(agent) = self.agent(sub.agent) else {
            let agent = sub.agent;
            return self
                .settle(
                    SubtaskId { task, step },
                    agent,
                    SubtaskOutcome::Failed {
                        error: "the agent is no longer in the network".into(),
                    },
                )
                .await
                .map(|_| ());
        };
        let work = Assignment {
            network: self.args.network,
            subtask: SubtaskId { task, step },
            priority: live.priority,
            attempt: sub.attempts,
            description: sub.description.clone(),
            brief: live.brief.clone(),
        };
        let placed = if self.args.spread {
            self.args.cluster.place()
        } else {
            None
        };
        let node = match placed {
            Some(node) => {
                let assign = RemoteAssign {
                    owner: self.args.names.node().to_owned(),
                    spec: (*agent.spec).clone(),
                    work: work.clone(),
                };
                if self
                    .args
                    .cluster
                    .cast(&node, &Cast::Assign(Box::new(assign)))
                {
                    Some(node)
                } else {
                    // The peer went away meanwhile: run it here.
                    let _ = agent.actor.cast(AgentMsg::Assign(Box::new(work)));
                    None
                }
            }
            None => {
                // If the agent is down, its supervisor restarts it and we redeliver then.
                let _ = agent.actor.cast(AgentMsg::Assign(Box::new(work)));
                None
            }
        };
        let lease = node
            .as_ref()
            .and_then(|_| self.lease_ttl())
            .map(|ttl| Instant::now() + ttl);
        if let Some(sub) = self.live.get_mut(&task).and_then(|l| l.sub_mut(step)) {
            sub.node = node;
            sub.lease = lease;
        }
        Ok(())
    }

    fn lease_ttl(&self) -> Option<Duration> {
        self.args.cluster.lease().map(|(_, ttl)| ttl)
    }

    /// A peer still holds these subtasks: their leases are renewed.
    pub(super) fn held(&mut self, node: &str, subtasks: &[SubtaskId]) {
        let Some(ttl) = self.lease_ttl() else {
            return;
        };
        let until = Instant::now() + ttl;
        for id in subtasks {
            if let Some(sub) = self
                .live
                .get_mut(&id.task)
                .and_then(|l| l.sub_mut(id.step))
                .filter(|s| !s.status.is_terminal() && s.node.as_deref() == Some(node))
            {
                sub.lease = Some(until);
            }
        }
    }

    /// Redelivers the open subtasks on peers whose lease lapsed: the peer is alive (or it
    /// would have been declared lost) but no longer holds them.
    pub(super) async fn lease_check(&mut self) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut lapsed = Vec::new();
        for (task, live) in &self.live {
            for sub in live.current() {
                if !sub.status.is_terminal()
                    && sub.node.is_some()
                    && sub.lease.is_some_and(|until| until <= now)
                {
                    lapsed.push((*task, sub.step));
                }
            }
        }
        if !lapsed.is_empty() {
            tracing::warn!(
                network = %self.args.network,
                subtasks = lapsed.len(),
                "leases on subtasks placed on peers lapsed; redelivering them"
            );
        }
        self.redeliver(lapsed, "lease_expired", |from, step, attempt| {
            format!(
                "node {from} stopped holding step {step} (its lease lapsed); redelivered (attempt {attempt})"
            )
        })
        .await
    }

    /// Redelivers the open subtasks placed on nodes that were lost.
    pub(super) async fn nodes_lost(&mut self, nodes: &[String]) -> Result<(), StoreError> {
        let mut lost = Vec::new();
        for (task, live) in &self.live {
            lost.extend(live.open_at(nodes).into_iter().map(|step| (*task, step)));
        }
        self.redeliver(lost, "node_lost", |from, step, attempt| {
            format!(
                "node {from} was lost while it ran step {step}; redelivered (attempt {attempt})"
            )
        })
        .await
    }

    /// Sends these open subtasks again (same id, next attempt), noting why on each task.
    async fn redeliver(
        &mut self,
        subtasks: Vec<(TaskId, u32)>,
        code: &str,
        message: impl Fn(&str, u32, u32) -> String,
    ) -> Result<(), StoreError> {
        let mut redeliver = Vec::new();
        for (task, step) in subtasks {
            if let Some(sub) = self.live.get_mut(&task).and_then(|l| l.sub_mut(step)) {
                sub.attempts += 1;
                sub.status = SubtaskStatus::Pending;
                sub.lease = None;
                let from = sub.node.take().unwrap_or_default();
                redeliver.push((task, step, sub.attempts, from));
            }
        }
        for (task, step, attempt, from) in redeliver {
            self.journal(task, TaskEvent::SubtaskRedelivered { step, attempt })
                .await?;
            self.journal(
                task,
                TaskEvent::Noted(TaskNote {
                    at: now(),
                    code: code.into(),
                    message: message(&from, step, attempt),
                    agent_id: None,
                }),
            )
            .await?;
            self.send(task, step).await?;
        }
        Ok(())
    }

    pub(super) async fn started(
        &mut self,
        subtask: SubtaskId,
        agent: AgentId,
        attempt: u32,
        node: String,
    ) -> Result<(), StoreError> {
        let Some(sub) = self
            .live
            .get_mut(&subtask.task)
            .and_then(|l| l.sub_mut(subtask.step))
            .filter(|s| s.agent == agent && !s.status.is_terminal())
        else {
            return Ok(());
        };
        sub.status = SubtaskStatus::Running;
        if sub.node.as_deref() == Some(node.as_str())
            && let Some(ttl) = self.args.cluster.lease().map(|(_, ttl)| ttl)
        {
            sub.lease = Some(Instant::now() + ttl);
        }
        self.journal(
            subtask.task,
            TaskEvent::SubtaskStarted {
                step: subtask.step,
                attempt,
                at: now(),
                node: Some(node),
            },
        )
        .await?;
        Ok(())
    }

    /// Records a subtask's end; false if it was not open (a duplicate or a stale report).
    async fn settle(
        &mut self,
        subtask: SubtaskId,
        agent: AgentId,
        outcome: SubtaskOutcome,
    ) -> Result<bool, StoreError> {
        let Some(sub) = self
            .live
            .get_mut(&subtask.task)
            .and_then(|l| l.sub_mut(subtask.step))
            .filter(|s| s.agent == agent && !s.status.is_terminal())
        else {
            return Ok(false);
        };
        let label = match &outcome {
            SubtaskOutcome::Completed { .. } => "completed",
            SubtaskOutcome::Failed { .. } => "failed",
            SubtaskOutcome::Cancelled { .. } => "cancelled",
        };
        metrics::counter!(metrics_names::SUBTASKS_FINISHED, "status" => label).increment(1);
        metrics::histogram!(metrics_names::SUBTASK_DURATION, "status" => label)
            .record(sub.since.elapsed().as_secs_f64());
        match &outcome {
            SubtaskOutcome::Completed { output, .. } => {
                sub.status = SubtaskStatus::Completed;
                sub.output = Some(output.clone());
            }
            SubtaskOutcome::Failed { error } => {
                sub.status = SubtaskStatus::Failed;
                sub.error = Some(error.clone());
            }
            SubtaskOutcome::Cancelled { reason } => {
                sub.status = SubtaskStatus::Cancelled;
                sub.error = Some(reason.clone());
            }
        }
        self.journal(
            subtask.task,
            TaskEvent::SubtaskFinished {
                step: subtask.step,
                at: now(),
                outcome,
            },
        )
        .await?;
        Ok(true)
    }

    pub(super) async fn finished(
        &mut self,
        subtask: SubtaskId,
        agent: AgentId,
        outcome: SubtaskOutcome,
        myself: &Me,
    ) -> Result<(), StoreError> {
        if self.settle(subtask, agent, outcome).await? {
            self.check(subtask.task, myself).await?;
        }
        Ok(())
    }

    /// When a round is complete: synthesize, re-delegate failed work, or fail the task.
    async fn check(&mut self, task: TaskId, myself: &Me) -> Result<(), StoreError> {
        let Some(live) = self.live.get(&task) else {
            return Ok(());
        };
        if live.phase != Phase::Delegating || live.outstanding() {
            return Ok(());
        }
        let failed: Vec<&Sub> = live
            .current()
            .filter(|s| s.status != SubtaskStatus::Completed)
            .collect();
        if failed.is_empty() {
            return self.synthesize(task, myself);
        }
        let specialists: Vec<&AgentSpec> = self
            .agents
            .iter()
            .filter(|a| a.stats.status() != AgentStatus::Failed)
            .map(|a| &*a.spec)
            .collect();
        let rounds_left = live.iteration < live.max_iterations;
        let mut redo = Vec::new();
        let mut stuck = Vec::new();
        for sub in failed {
            let capabilities = self
                .agent(sub.agent)
                .map(|a| a.spec.capabilities.clone())
                .unwrap_or_default();
            let alternative = rounds_left
                .then(|| {
                    planner::alternative(
                        &sub.agent_type,
                        &capabilities,
                        &specialists,
                        &live.tried(sub.step),
                        |id| self.load_of(id),
                    )
                })
                .flatten();
            match alternative {
                Some(agent) => redo.push((sub.step, agent)),
                None => stuck.push(sub.clone()),
            }
        }
        if let Some(first) = stuck.first() {
            let why = if rounds_left {
                "no other agent can take it".to_owned()
            } else {
                format!("max_iterations ({}) reached", live.max_iterations)
            };
            let detail = stuck
                .iter()
                .map(|s| {
                    format!(
                        "{} (step {}): {}",
                        s.agent_name,
                        s.step,
                        s.error.as_deref().unwrap_or("failed")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let error = TaskError {
                code: FailureCode::SubtaskFailed,
                message: format!("subtask failed and {why}: {detail}"),
                agent_id: Some(first.agent),
                agent_name: Some(first.agent_name.clone()),
            };
            return self
                .finish(task, TaskStatus::Failed, None, Some(error))
                .await;
        }
        // A new round: hand each failed subtask's work to another capable agent.
        let iteration = live.iteration + 1;
        let at = now();
        let mut step = live.next_step();
        let mut records = Vec::new();
        let mut notes = Vec::new();
        for (failed_step, agent) in redo {
            let (Some(handle), Some(old)) = (
                self.agent(agent),
                live.subs.iter().find(|s| s.step == failed_step),
            ) else {
                continue;
            };
            let description = planner::describe(&handle.spec, &live.brief.task);
            records.push(new_subtask(
                task,
                step,
                iteration,
                Some(failed_step),
                &handle.spec,
                description,
                at,
            ));
            notes.push(TaskNote {
                at,
                code: "subtask_redelegated".into(),
                message: format!(
                    "step {failed_step} ({}) failed: {}; iteration {iteration} gives it to {} as step {step}",
                    old.agent_name,
                    old.error.as_deref().unwrap_or("failed"),
                    handle.spec.name
                ),
                agent_id: Some(old.agent),
            });
            step += 1;
        }
        let Some(live) = self.live.get_mut(&task) else {
            return Ok(());
        };
        live.iteration = iteration;
        live.subs.extend(records.iter().map(Sub::from_record));
        for note in notes {
            self.journal(task, TaskEvent::Noted(note)).await?;
        }
        self.journal(
            task,
            TaskEvent::Planned {
                iteration,
                subtasks: records.clone(),
            },
        )
        .await?;
        for r in &records {
            self.send(task, r.step).await?;
        }
        Ok(())
    }

    /// Starts the synthesis call as an owned task; its answer comes back as `Synthesized`.
    fn synthesize(&mut self, task: TaskId, myself: &Me) -> Result<(), StoreError> {
        let spec = self.args.spec.clone();
        let network = self.args.network;
        let timeout = self.args.model_timeout;
        let gateway = self.args.names.gateway();
        let store = self.args.store.clone();
        let Some(live) = self.live.get_mut(&task) else {
            return Ok(());
        };
        live.phase = Phase::Synthesizing;
        let outputs: Vec<Output> = live
            .current()
            .filter_map(|s| {
                Some(Output {
                    agent: s.agent_name.clone(),
                    agent_type: s.agent_type.clone(),
                    text: s.output.clone()?,
                })
            })
            .collect();
        let brief = live.brief.clone();
        let priority = live.priority;
        let me = myself.clone();
        // The prompt is built in the owned task too: the coordinator only hands over the parts.
        live.synthesis = Some(OwnedTask::spawn(async move {
            let request = ModelRequest {
                model: spec.model.clone(),
                messages: prompt::synthesis(&spec, &brief, &outputs),
                max_tokens: spec.parameters.max_tokens,
                temperature: spec.parameters.temperature,
                top_p: spec.parameters.top_p,
                priority,
                network_id: Some(network),
                task_id: Some(task),
                agent_kind: Some(spec.kind.clone()),
                stop: Vec::new(),
                timeout,
                cache: true,
                idempotency_key: Some(format!("{task}.synthesis")),
                traceparent: None,
            };
            let result = crate::gateway::call(&store, &gateway, request, timeout * 2, None).await;
            let _ = me.cast(CoordinatorMsg::Synthesized(task, result));
        }));
        Ok(())
    }

    pub(super) async fn synthesized(
        &mut self,
        task: TaskId,
        result: Result<ModelResponse, ModelError>,
    ) -> Result<(), StoreError> {
        let Some(live) = self
            .live
            .get(&task)
            .filter(|l| l.phase == Phase::Synthesizing)
        else {
            return Ok(());
        };
        match result {
            Ok(response) => {
                let contributors: Vec<String> = live
                    .current()
                    .filter(|s| s.status == SubtaskStatus::Completed)
                    .map(|s| s.agent_name.clone())
                    .collect();
                self.note(
                    task,
                    format!(
                        "Completed task {task}: synthesized the work of {} with {}",
                        if contributors.is_empty() {
                            "no specialists".to_owned()
                        } else {
                            contributors.join(", ")
                        },
                        response.model
                    ),
                );
                let result = TaskResult {
                    summary: summary_of(&response.text, 280),
                    output: response.text,
                    model: response.model,
                    contributors,
                    usage: response.usage,
                    route: Some(response.route),
                };
                self.finish(task, TaskStatus::Completed, Some(result), None)
                    .await
            }
            Err(e) => {
                let error = TaskError {
                    code: FailureCode::SynthesisFailed,
                    message: format!("synthesis by {} failed: {e}", self.args.spec.name),
                    agent_id: Some(self.args.spec.agent_id),
                    agent_name: Some(self.args.spec.name.clone()),
                };
                self.finish(task, TaskStatus::Failed, None, Some(error))
                    .await
            }
        }
    }

    /// Ends a task: cancels what is still out, journals the terminal state, frees its place.
    async fn finish(
        &mut self,
        task: TaskId,
        status: TaskStatus,
        result: Option<TaskResult>,
        error: Option<TaskError>,
    ) -> Result<(), StoreError> {
        let Some(live) = self.live.remove(&task) else {
            return Ok(());
        };
        metrics::counter!(metrics_names::TASKS_FINISHED, "status" => status.as_str(), "priority" => metrics_names::priority_label(live.priority)).increment(1);
        crate::trace::finish_root(&crate::trace::Root {
            task,
            network: self.args.network,
            priority: live.priority,
            created_at: live.created_at,
            status: status.as_str(),
            error: error.as_ref().map(|e| e.message.as_str()),
            subtasks: live.subs.len(),
            client: live.client_traceparent.as_deref(),
        });
        metrics::histogram!(metrics_names::TASK_DURATION, "status" => status.as_str())
            .record(live.since.elapsed().as_secs_f64());
        if live.phase == Phase::Waiting {
            self.waiting.remove_where(|t| *t == task);
        } else {
            self.active = self.active.saturating_sub(1);
        }
        let open: HashSet<AgentId> = live
            .current()
            .filter(|s| !s.status.is_terminal() && s.node.is_none())
            .map(|s| s.agent)
            .collect();
        for agent in open {
            if let Some(a) = self.agent(agent) {
                let _ = a.actor.cast(AgentMsg::CancelTask(task));
            }
        }
        let remote: HashSet<&String> = live
            .current()
            .filter(|s| !s.status.is_terminal())
            .filter_map(|s| s.node.as_ref())
            .collect();
        for node in remote {
            let cancel = Cast::Cancel {
                network: self.args.network,
                task,
            };
            self.args.cluster.cast(node, &cancel);
        }
        let durable = self.args.store.append(
            self.args.network,
            task,
            TaskEvent::Finished {
                status,
                at: now(),
                result,
                error,
            },
        );
        self.args.admission.release(self.args.network);
        // Whoever waits for the task hears of its end once the end is durable.
        let watch = self.args.watch.clone();
        self.finalizers.spawn(async move {
            match durable.await {
                Ok(_) => watch.finished(task, status),
                Err(e) => tracing::error!(%task, error = %e, "the task's end was not journaled"),
            }
        });
        while self.finalizers.try_join_next().is_some() {}
        if status == TaskStatus::Completed {
            self.args.stats.handled();
        } else {
            self.args.stats.failed();
        }
        Ok(())
        // `live` drops here: its deadline timer and synthesis call are aborted.
    }

    pub(super) async fn deadline(&mut self, task: TaskId) -> Result<(), StoreError> {
        let Some(live) = self.live.get(&task) else {
            return Ok(());
        };
        let error = TaskError {
            code: FailureCode::Timeout,
            message: format!(
                "task did not finish within timeout_seconds = {}",
                live.timeout_seconds
            ),
            agent_id: None,
            agent_name: None,
        };
        self.finish(task, TaskStatus::Failed, None, Some(error))
            .await
    }

    pub(super) async fn cancel(&mut self, task: TaskId) -> Result<TaskStatus, CoordinatorError> {
        if self.live.contains_key(&task) {
            self.finish(task, TaskStatus::Cancelled, None, None).await?;
            return Ok(TaskStatus::Cancelled);
        }
        let record = self
            .args
            .store
            .task(self.args.network, task)
            .await?
            .ok_or(CoordinatorError::UnknownTask(task))?;
        match record.status {
            TaskStatus::Cancelled => Ok(TaskStatus::Cancelled),
            TaskStatus::Queued | TaskStatus::Processing => {
                self.journal_durable(
                    task,
                    TaskEvent::Finished {
                        status: TaskStatus::Cancelled,
                        at: now(),
                        result: None,
                        error: None,
                    },
                )
                .await?;
                self.args.admission.release(self.args.network);
                metrics::counter!(metrics_names::TASKS_FINISHED, "status" => "cancelled", "priority" => metrics_names::priority_label(record.priority)).increment(1);
                self.args.watch.finished(task, TaskStatus::Cancelled);
                Ok(TaskStatus::Cancelled)
            }
            status => Err(CoordinatorError::AlreadyFinished { task, status }),
        }
    }

    pub(super) async fn agent_up(
        &mut self,
        handle: AgentHandle,
        crash: Option<String>,
    ) -> Result<(), StoreError> {
        let id = handle.spec.agent_id;
        let name = handle.spec.name.clone();
        match self.agents.iter_mut().find(|a| a.spec.agent_id == id) {
            Some(slot) => *slot = handle,
            None => self.agents.push(handle),
        }
        let Some(crash) = crash else {
            return Ok(());
        };
        let mut redeliver = Vec::new();
        for (task, live) in &mut self.live {
            for step in live.open_here(id) {
                if let Some(sub) = live.sub_mut(step) {
                    sub.attempts += 1;
                    sub.status = SubtaskStatus::Pending;
                    redeliver.push((*task, step, sub.attempts));
                }
            }
        }
        for (task, step, attempt) in redeliver {
            self.journal(task, TaskEvent::SubtaskRedelivered { step, attempt })
                .await?;
            self.journal(
                task,
                TaskEvent::Noted(TaskNote {
                    at: now(),
                    code: "agent_restarted".into(),
                    message: format!(
                        "{name} crashed ({crash}); its supervisor restarted it and step {step} \
                         was redelivered (attempt {attempt})"
                    ),
                    agent_id: Some(id),
                }),
            )
            .await?;
            self.send(task, step).await?;
        }
        Ok(())
    }

    pub(super) async fn agent_down(
        &mut self,
        agent: AgentId,
        myself: &Me,
    ) -> Result<(), StoreError> {
        self.agents.retain(|a| a.spec.agent_id != agent);
        let open: Vec<(TaskId, u32)> = self
            .live
            .iter()
            .flat_map(|(t, l)| l.open_on(agent).into_iter().map(|s| (*t, s)))
            .collect();
        for (task, step) in open {
            self.finished(
                SubtaskId { task, step },
                agent,
                SubtaskOutcome::Failed {
                    error: "the agent was removed from the network".into(),
                },
                myself,
            )
            .await?;
        }
        Ok(())
    }

    pub(super) async fn escalated(
        &mut self,
        agent: AgentId,
        reason: &str,
    ) -> Result<(), StoreError> {
        let name = self
            .agent(agent)
            .map(|a| a.spec.name.clone())
            .unwrap_or_else(|| agent.to_string());
        let tasks: Vec<TaskId> = self
            .live
            .iter()
            .filter(|(_, l)| !l.open_on(agent).is_empty())
            .map(|(t, _)| *t)
            .collect();
        for task in tasks {
            let error = TaskError {
                code: FailureCode::AgentFailed,
                message: format!("agent {name} ({agent}) failed: {reason}"),
                agent_id: Some(agent),
                agent_name: Some(name.clone()),
            };
            self.finish(task, TaskStatus::Failed, None, Some(error))
                .await?;
        }
        Ok(())
    }
}

/// The network's shared memory most relevant to the task, as prompt lines: user knowledge
/// (facts, context, feedback) and earlier decisions, by semantic search on the task text.
async fn read_memory(memory: &MemoryClient, network: NetworkId, task: &str) -> Vec<String> {
    let query = MemoryQuery {
        kinds: vec![
            MemoryKind::Fact,
            MemoryKind::Context,
            MemoryKind::Feedback,
            MemoryKind::Decision,
        ],
        limit: 6,
        ..MemoryQuery::default()
    };
    match memory.relevant(network, task, &query).await {
        Ok(hits) => hits
            .iter()
            .filter(|(_, score)| *score > 0.05)
            .map(|(i, _)| {
                let text: String = i.content_text().chars().take(300).collect();
                format!("[{}] {text}", i.kind.as_str())
            })
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "planning without shared memory");
            Vec::new()
        }
    }
}

fn new_subtask(
    task: TaskId,
    step: u32,
    iteration: u32,
    replaces: Option<u32>,
    spec: &AgentSpec,
    description: String,
    at: crate::types::Timestamp,
) -> SubtaskRecord {
    SubtaskRecord {
        subtask_id: SubtaskId { task, step },
        step,
        iteration,
        replaces,
        agent_id: spec.agent_id,
        agent: spec.name.clone(),
        agent_type: spec.kind.clone(),
        description,
        status: SubtaskStatus::Pending,
        attempts: 1,
        output: None,
        model: None,
        provider: None,
        usage: None,
        route: None,
        error: None,
        queued_at: at,
        started_at: None,
        finished_at: None,
        duration_ms: None,
        node: None,
    }
}
