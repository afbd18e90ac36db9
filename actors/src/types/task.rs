//! Tasks, their subtasks, and the journal events that move them.
//!
//! A task record changes only by [`TaskRecord::apply`]ing a [`TaskEvent`]; stores keep the
//! events (the journal) or the record they produce, and both give the same record. A terminal
//! status is final: events after it change nothing, so a task has exactly one terminal state.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Timestamp;
use crate::gateway::Route;
use crate::ids::{AgentId, NetworkId, SubtaskId, TaskId};
use crate::priority::Priority;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Accepted, not yet asked to process.
    Queued,
    /// Being planned, delegated or synthesized.
    Processing,
    /// Finished with a result.
    Completed,
    /// Finished without one; `error` says why.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl TaskStatus {
    /// Completed, failed or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Every status, for parsing and listing.
    pub const ALL: [TaskStatus; 5] = [
        Self::Queued,
        Self::Processing,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Where a subtask is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubtaskStatus {
    /// Delegated, waiting in the agent's mailbox.
    Pending,
    /// The agent is working on it.
    Running,
    /// Done, with output.
    Completed,
    /// Done, without output.
    Failed,
    /// Stopped because its task ended.
    Cancelled,
}

impl SubtaskStatus {
    /// Completed, failed or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// An amount of US dollars, kept exactly as a whole number of pico-dollars (1e-12 USD), so
/// roll-ups and budgets add up without rounding. Serialized as a JSON number of dollars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(pub u64);

impl Usd {
    /// Pico-dollars per dollar.
    pub const SCALE: f64 = 1e12;

    /// The amount nearest to `dollars` (negative and non-finite amounts are zero).
    pub fn from_dollars(dollars: f64) -> Self {
        if dollars.is_finite() && dollars > 0.0 {
            Self((dollars * Self::SCALE).round().min(u64::MAX as f64) as u64)
        } else {
            Self(0)
        }
    }

    /// The amount in dollars.
    pub fn dollars(self) -> f64 {
        self.0 as f64 / Self::SCALE
    }

    /// Adds, saturating.
    pub fn saturating_add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }

    /// Subtracts, saturating at zero.
    pub fn saturating_sub(self, other: Usd) -> Usd {
        Usd(self.0.saturating_sub(other.0))
    }
}

impl std::fmt::Display for Usd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${:.6}", self.dollars())
    }
}

/// Dollars in human-readable formats (JSON); the exact pico-dollar count in binary ones (the
/// stores), so nothing is rounded on the way to disk.
impl Serialize for Usd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_f64(self.dollars())
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            f64::deserialize(d).map(Usd::from_dollars)
        } else {
            u64::deserialize(d).map(Usd)
        }
    }
}

/// Tokens and cost of model calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens (cached ones included).
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's prompt cache (billed at the cached price).
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// What the calls cost.
    #[serde(default)]
    pub cost_usd: Usd,
}

impl Usage {
    /// Adds another usage to this one.
    pub fn add(&mut self, other: Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(other.cached_input_tokens);
        self.cost_usd = self.cost_usd.saturating_add(other.cost_usd);
    }
}

/// Why a task failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// It ran past its `timeout_seconds`.
    Timeout,
    /// An agent it depended on crashed past its restart intensity.
    AgentFailed,
    /// A subtask failed and no iterations were left to re-delegate it.
    SubtaskFailed,
    /// The coordinator could not synthesize the result.
    SynthesisFailed,
    /// No agent could take the work.
    NoCapableAgent,
    /// The network was restarted past its own restart intensity.
    NetworkFailed,
    /// The node could not keep the task.
    Internal,
}

/// The reason a task ended `failed` (or `cancelled`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    /// Machine-readable reason.
    pub code: FailureCode,
    /// What happened, for people.
    pub message: String,
    /// The agent at fault, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
}

/// Something that went wrong during a task and was recovered from (or led to its failure).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskNote {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    /// Short machine-readable kind, e.g. `agent_restarted`, `subtask_failed`.
    pub code: String,
    /// What happened.
    pub message: String,
    /// The agent involved, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
}

/// The final, synthesized result of a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// A short summary.
    pub summary: String,
    /// The full synthesized deliverable (Markdown).
    pub output: String,
    /// The model that synthesized it.
    pub model: String,
    /// The agents whose outputs went into it.
    pub contributors: Vec<String>,
    /// Tokens used by the synthesis call, and its cost.
    pub usage: Usage,
    /// How the gateway served the synthesis call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

/// One piece of delegated work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubtaskRecord {
    /// Its stable id.
    pub subtask_id: SubtaskId,
    /// Step number within the task.
    pub step: u32,
    /// Delegation round it belongs to, from 1.
    pub iteration: u32,
    /// The failed step whose work this one re-delegates, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<u32>,
    /// The agent doing it.
    pub agent_id: AgentId,
    /// The agent's name.
    pub agent: String,
    /// The agent's type.
    pub agent_type: String,
    /// What the agent was asked to do.
    pub description: String,
    /// Where it is.
    pub status: SubtaskStatus,
    /// Deliveries so far (more than 1 after an agent restart).
    pub attempts: u32,
    /// The agent's output.
    pub output: Option<String>,
    /// The model that answered.
    pub model: Option<String>,
    /// The provider that answered.
    pub provider: Option<String>,
    /// Tokens used and their cost.
    pub usage: Option<Usage>,
    /// How the gateway served it: the chain, the links tried, the tier and temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was delegated.
    #[serde(with = "time::serde::rfc3339")]
    pub queued_at: Timestamp,
    /// When the agent started on it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<Timestamp>,
    /// When it finished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
    /// Milliseconds from start to finish.
    pub duration_ms: Option<u64>,
    /// The node its agent ran on (the last delivery's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// How a subtask ended. (Externally tagged: a journal format, and internally tagged enums
/// would lose the binary encoding of [`Usd`].)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubtaskOutcome {
    /// With output.
    Completed {
        /// The output.
        output: String,
        /// Model that answered.
        model: String,
        /// Provider that answered.
        provider: String,
        /// Tokens used.
        usage: Usage,
        /// How the gateway served it.
        #[serde(default)]
        route: Option<Route>,
    },
    /// Without output.
    Failed {
        /// Why.
        error: String,
    },
    /// Stopped because its task ended or its agent left.
    Cancelled {
        /// Why.
        reason: String,
    },
}

/// A journal entry: one change to a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEvent {
    /// `process` was asked for.
    Processing {
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: Timestamp,
    },
    /// A delegation round was planned.
    Planned {
        /// The round, from 1.
        iteration: u32,
        /// The new subtasks.
        subtasks: Vec<SubtaskRecord>,
    },
    /// An agent started a subtask.
    SubtaskStarted {
        /// Which.
        step: u32,
        /// Delivery number.
        attempt: u32,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: Timestamp,
        /// The node it runs on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// A subtask was redelivered after its agent restarted.
    SubtaskRedelivered {
        /// Which.
        step: u32,
        /// Delivery number.
        attempt: u32,
    },
    /// A subtask ended.
    SubtaskFinished {
        /// Which.
        step: u32,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: Timestamp,
        /// How.
        outcome: SubtaskOutcome,
    },
    /// Something went wrong and was noted.
    Noted(TaskNote),
    /// The task ended.
    Finished {
        /// Completed, failed or cancelled.
        status: TaskStatus,
        /// When.
        #[serde(with = "time::serde::rfc3339")]
        at: Timestamp,
        /// The result, when completed.
        result: Option<TaskResult>,
        /// The reason, when failed or cancelled.
        error: Option<TaskError>,
    },
}

/// A task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Its id.
    pub task_id: TaskId,
    /// Its network.
    pub network_id: NetworkId,
    /// What to do.
    pub task: String,
    /// Facts to do it with (a JSON object).
    pub context: Value,
    /// 1 (highest) to 5 (lowest).
    pub priority: Priority,
    /// Bound on delegation rounds.
    pub max_iterations: u32,
    /// Time limit from `process`.
    pub timeout_seconds: u64,
    /// Where it is.
    pub status: TaskStatus,
    /// Delegation rounds so far.
    pub iterations: u32,
    /// Delegated work.
    pub subtasks: Vec<SubtaskRecord>,
    /// The synthesized result, once completed.
    pub result: Option<TaskResult>,
    /// Why it ended without a result.
    pub error: Option<TaskError>,
    /// Problems met along the way (recovered or not).
    pub errors: Vec<TaskNote>,
    /// Tokens used by all its model calls.
    pub usage: Usage,
    /// When it was accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    /// When processing was asked for.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
    /// Milliseconds from `started_at` to `finished_at`.
    pub duration_ms: Option<u64>,
    /// The W3C `traceparent` the client submitted it with: the task's trace (whose id is the
    /// task id) links to that span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_traceparent: Option<String>,
}

fn millis_between(from: Timestamp, to: Timestamp) -> u64 {
    u64::try_from((to - from).whole_milliseconds().max(0)).unwrap_or(u64::MAX)
}

impl TaskRecord {
    /// Applies one journal event. Nothing changes a terminal task.
    pub fn apply(&mut self, event: TaskEvent) {
        if self.status.is_terminal() {
            return;
        }
        match event {
            TaskEvent::Processing { at } => {
                self.status = TaskStatus::Processing;
                self.started_at.get_or_insert(at);
            }
            TaskEvent::Planned {
                iteration,
                subtasks,
            } => {
                self.iterations = self.iterations.max(iteration);
                for s in subtasks {
                    if self.subtask(s.step).is_none() {
                        self.subtasks.push(s);
                    }
                }
            }
            TaskEvent::SubtaskStarted {
                step,
                attempt,
                at,
                node,
            } => {
                if let Some(s) = self.subtask_mut(step).filter(|s| !s.status.is_terminal()) {
                    s.status = SubtaskStatus::Running;
                    s.attempts = s.attempts.max(attempt);
                    s.started_at = Some(at);
                    if node.is_some() {
                        s.node = node;
                    }
                }
            }
            TaskEvent::SubtaskRedelivered { step, attempt } => {
                if let Some(s) = self.subtask_mut(step).filter(|s| !s.status.is_terminal()) {
                    s.status = SubtaskStatus::Pending;
                    s.attempts = s.attempts.max(attempt);
                    // Not running anywhere until the next delivery starts.
                    s.node = None;
                }
            }
            TaskEvent::SubtaskFinished { step, at, outcome } => {
                let mut used = None;
                if let Some(s) = self.subtask_mut(step).filter(|s| !s.status.is_terminal()) {
                    s.finished_at = Some(at);
                    s.duration_ms = s.started_at.map(|from| millis_between(from, at));
                    match outcome {
                        SubtaskOutcome::Completed {
                            output,
                            model,
                            provider,
                            usage,
                            route,
                        } => {
                            s.status = SubtaskStatus::Completed;
                            s.output = Some(output);
                            s.model = Some(model);
                            s.provider = Some(provider);
                            s.usage = Some(usage);
                            s.route = route;
                            used = Some(usage);
                        }
                        SubtaskOutcome::Failed { error } => {
                            s.status = SubtaskStatus::Failed;
                            s.error = Some(error);
                        }
                        SubtaskOutcome::Cancelled { reason } => {
                            s.status = SubtaskStatus::Cancelled;
                            s.error = Some(reason);
                        }
                    }
                }
                if let Some(u) = used {
                    self.usage.add(u);
                }
            }
            TaskEvent::Noted(note) => self.errors.push(note),
            TaskEvent::Finished {
                status,
                at,
                result,
                error,
            } => {
                self.status = status;
                self.finished_at = Some(at);
                self.duration_ms = self.started_at.map(|from| millis_between(from, at));
                if let Some(r) = &result {
                    self.usage.add(r.usage);
                }
                self.result = result;
                self.error = error;
                for s in &mut self.subtasks {
                    if !s.status.is_terminal() {
                        s.status = SubtaskStatus::Cancelled;
                        s.finished_at = Some(at);
                        s.error = Some(format!("task {}", status.as_str()));
                    }
                }
            }
        }
    }

    /// The subtask at `step`.
    pub fn subtask(&self, step: u32) -> Option<&SubtaskRecord> {
        self.subtasks.iter().find(|s| s.step == step)
    }

    fn subtask_mut(&mut self, step: u32) -> Option<&mut SubtaskRecord> {
        self.subtasks.iter_mut().find(|s| s.step == step)
    }

    /// The listing view of this task.
    pub fn summary(&self) -> TaskSummary {
        TaskSummary {
            task_id: self.task_id,
            network_id: self.network_id,
            task: self.task.chars().take(200).collect(),
            priority: self.priority,
            status: self.status,
            iterations: self.iterations,
            subtasks: self.subtasks.len(),
            subtasks_completed: self
                .subtasks
                .iter()
                .filter(|s| s.status == SubtaskStatus::Completed)
                .count(),
            error: self.error.clone(),
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            duration_ms: self.duration_ms,
            cost_usd: self.usage.cost_usd,
        }
    }
}

/// A task as listings show it: no outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    /// Its id.
    pub task_id: TaskId,
    /// Its network.
    pub network_id: NetworkId,
    /// The first 200 characters of the task text.
    pub task: String,
    /// Its priority.
    pub priority: Priority,
    /// Where it is.
    pub status: TaskStatus,
    /// Delegation rounds so far.
    pub iterations: u32,
    /// Subtasks delegated.
    pub subtasks: usize,
    /// Subtasks completed.
    pub subtasks_completed: usize,
    /// Why it failed, if it did.
    pub error: Option<TaskError>,
    /// When it was accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    /// When processing was asked for.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
    /// Milliseconds from start to end.
    pub duration_ms: Option<u64>,
    /// What its model calls cost so far (a network's spend is restored from these when it
    /// starts on a node, so a budget holds across restarts and takeovers).
    #[serde(default)]
    pub cost_usd: Usd,
}

/// A task listing query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskQuery {
    /// Only tasks with this status.
    pub status: Option<TaskStatus>,
    /// Page size.
    pub limit: usize,
    /// Matching tasks to skip (newest first).
    pub offset: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::now;

    fn record() -> TaskRecord {
        TaskRecord {
            task_id: TaskId::new(),
            network_id: NetworkId::new(),
            task: "t".into(),
            context: Value::Null,
            priority: Priority::default(),
            max_iterations: 3,
            timeout_seconds: 10,
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

    fn sub(task: TaskId, step: u32) -> SubtaskRecord {
        SubtaskRecord {
            subtask_id: SubtaskId { task, step },
            step,
            iteration: 1,
            replaces: None,
            agent_id: AgentId::new(),
            agent: "A".into(),
            agent_type: "content".into(),
            description: "d".into(),
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

    #[test]
    fn events_walk_a_task_to_completion_and_terminal_is_final() {
        let mut t = record();
        let at = now();
        t.apply(TaskEvent::Processing { at });
        t.apply(TaskEvent::Planned {
            iteration: 1,
            subtasks: vec![sub(t.task_id, 1), sub(t.task_id, 2)],
        });
        t.apply(TaskEvent::SubtaskStarted {
            step: 1,
            attempt: 1,
            at,
            node: Some("n1".into()),
        });
        let usage = Usage {
            input_tokens: 10,
            output_tokens: 20,
            ..Usage::default()
        };
        let done = TaskEvent::SubtaskFinished {
            step: 1,
            at,
            outcome: SubtaskOutcome::Completed {
                output: "o".into(),
                model: "offline".into(),
                provider: "offline".into(),
                usage,
                route: None,
            },
        };
        t.apply(done.clone());
        // A duplicate result is ignored: usage is counted once.
        t.apply(done);
        assert_eq!(t.usage, usage);
        assert_eq!(t.status, TaskStatus::Processing);
        t.apply(TaskEvent::Finished {
            status: TaskStatus::Failed,
            at,
            result: None,
            error: Some(TaskError {
                code: FailureCode::Timeout,
                message: "late".into(),
                agent_id: None,
                agent_name: None,
            }),
        });
        assert_eq!(t.status, TaskStatus::Failed);
        assert_eq!(t.subtasks[1].status, SubtaskStatus::Cancelled);
        // Nothing moves a terminal task, not even a second terminal event.
        t.apply(TaskEvent::Finished {
            status: TaskStatus::Completed,
            at,
            result: None,
            error: None,
        });
        assert_eq!(t.status, TaskStatus::Failed);
        assert_eq!(t.summary().subtasks_completed, 1);
    }

    #[test]
    fn a_redelivered_subtask_names_no_node_until_it_starts_again() {
        let mut t = record();
        let at = now();
        t.apply(TaskEvent::Processing { at });
        t.apply(TaskEvent::Planned {
            iteration: 1,
            subtasks: vec![sub(t.task_id, 1)],
        });
        let started = |node: &str, attempt| TaskEvent::SubtaskStarted {
            step: 1,
            attempt,
            at,
            node: Some(node.into()),
        };
        t.apply(started("n2", 1));
        assert_eq!(t.subtasks[0].node.as_deref(), Some("n2"));
        t.apply(TaskEvent::SubtaskRedelivered {
            step: 1,
            attempt: 2,
        });
        assert_eq!(t.subtasks[0].status, SubtaskStatus::Pending);
        assert_eq!(t.subtasks[0].node, None);
        assert_eq!(t.subtasks[0].attempts, 2);
        t.apply(started("n3", 2));
        assert_eq!(t.subtasks[0].node.as_deref(), Some("n3"));
    }

    #[test]
    fn journal_events_round_trip_through_json() {
        let t = record();
        let ev = TaskEvent::Planned {
            iteration: 1,
            subtasks: vec![sub(t.task_id, 1)],
        };
        let json = serde_json::to_string(&ev).unwrap();
        let back: TaskEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
    }
}
