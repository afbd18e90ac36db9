//! A task the coordinator is working on, rebuilt from its record after a restart.

use std::collections::HashSet;
use std::sync::Arc;

use crate::ids::AgentId;
use crate::owned::OwnedTask;
use crate::priority::Priority;
use crate::prompt::TaskBrief;
use crate::types::{SubtaskRecord, SubtaskStatus, TaskRecord};

/// Where a live task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Asked to process, waiting for a slot.
    Waiting,
    /// Subtasks out at agents.
    Delegating,
    /// The synthesis call is running.
    Synthesizing,
}

/// One subtask as the coordinator tracks it.
#[derive(Debug, Clone)]
pub(super) struct Sub {
    pub step: u32,
    pub agent: AgentId,
    pub agent_name: String,
    pub agent_type: String,
    pub description: String,
    pub status: SubtaskStatus,
    pub attempts: u32,
    pub output: Option<String>,
    pub error: Option<String>,
    pub replaces: Option<u32>,
    /// The node it was sent to (`None`: this one).
    pub node: Option<String>,
    /// Sent to a peer: redelivered unless that peer renews its hold on it before this.
    pub lease: Option<tokio::time::Instant>,
    /// When this coordinator took it (for `aimesh_subtask_duration_seconds`).
    pub since: std::time::Instant,
}

impl Sub {
    pub fn from_record(r: &SubtaskRecord) -> Self {
        Self {
            step: r.step,
            agent: r.agent_id,
            agent_name: r.agent.clone(),
            agent_type: r.agent_type.clone(),
            description: r.description.clone(),
            status: r.status,
            attempts: r.attempts,
            output: r.output.clone(),
            error: r.error.clone(),
            replaces: r.replaces,
            node: None,
            lease: None,
            since: std::time::Instant::now(),
        }
    }
}

/// A task being worked on.
pub(super) struct Live {
    pub brief: Arc<TaskBrief>,
    pub priority: Priority,
    pub max_iterations: u32,
    pub timeout_seconds: u64,
    pub iteration: u32,
    pub phase: Phase,
    pub subs: Vec<Sub>,
    pub deadline: Option<OwnedTask>,
    /// The shared-memory read before planning.
    pub prep: Option<OwnedTask>,
    pub synthesis: Option<OwnedTask>,
    /// When this coordinator took it (for `aimesh_task_duration_seconds`).
    pub since: std::time::Instant,
    /// When it was accepted (its trace's root span starts there).
    pub created_at: crate::types::Timestamp,
    /// The client's span it was submitted from (its root span links to it).
    pub client_traceparent: Option<String>,
}

impl Live {
    pub fn from_record(r: &TaskRecord) -> Self {
        Self {
            brief: Arc::new(TaskBrief {
                task: r.task.clone(),
                context: r.context.clone(),
                memory: Vec::new(),
            }),
            priority: r.priority,
            max_iterations: r.max_iterations.max(1),
            timeout_seconds: r.timeout_seconds,
            iteration: r.iterations,
            phase: Phase::Waiting,
            subs: r.subtasks.iter().map(Sub::from_record).collect(),
            deadline: None,
            prep: None,
            synthesis: None,
            since: std::time::Instant::now(),
            created_at: r.created_at,
            client_traceparent: r.client_traceparent.clone(),
        }
    }

    /// Subtasks whose work has not been handed to a replacement.
    pub fn current(&self) -> impl Iterator<Item = &Sub> {
        self.subs
            .iter()
            .filter(|s| !self.subs.iter().any(|o| o.replaces == Some(s.step)))
    }

    pub fn sub_mut(&mut self, step: u32) -> Option<&mut Sub> {
        self.subs.iter_mut().find(|s| s.step == step)
    }

    pub fn next_step(&self) -> u32 {
        self.subs.iter().map(|s| s.step).max().unwrap_or(0) + 1
    }

    /// Agents that already had a go at the work of `step` (it and those it replaces).
    pub fn tried(&self, step: u32) -> HashSet<AgentId> {
        let mut tried = HashSet::new();
        let mut at = Some(step);
        while let Some(s) = at.and_then(|s| self.subs.iter().find(|x| x.step == s)) {
            tried.insert(s.agent);
            at = s.replaces;
        }
        tried
    }

    /// True when some current subtask is still out.
    pub fn outstanding(&self) -> bool {
        self.current().any(|s| !s.status.is_terminal())
    }

    /// Current, unfinished subtasks on `agent`.
    pub fn open_on(&self, agent: AgentId) -> Vec<u32> {
        self.current()
            .filter(|s| s.agent == agent && !s.status.is_terminal())
            .map(|s| s.step)
            .collect()
    }

    /// Current, unfinished subtasks on `agent` that run on this node.
    pub fn open_here(&self, agent: AgentId) -> Vec<u32> {
        self.current()
            .filter(|s| s.agent == agent && s.node.is_none() && !s.status.is_terminal())
            .map(|s| s.step)
            .collect()
    }

    /// Current, unfinished subtasks sent to one of `nodes`.
    pub fn open_at(&self, nodes: &[String]) -> Vec<u32> {
        self.current()
            .filter(|s| {
                !s.status.is_terminal() && s.node.as_ref().is_some_and(|n| nodes.contains(n))
            })
            .map(|s| s.step)
            .collect()
    }
}
