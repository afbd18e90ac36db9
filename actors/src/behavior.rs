//! What an agent does with a subtask, as a trait: how it asks the model, and how it turns the
//! answer into its output. The standard behavior serves every agent type; embedders can register
//! their own per agent type.
//!
//! `finish` runs inside the agent actor: a panic or an `Err` that means "my state is broken"
//! belongs to the agent, and its supervisor restarts it and redelivers the subtask.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::gateway::{ModelRequest, ModelResponse};
use crate::ids::{NetworkId, SubtaskId};
use crate::priority::Priority;
use crate::prompt::{self, TaskBrief};
use crate::types::AgentSpec;

/// One subtask as an agent receives it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Assignment {
    /// Its network.
    pub network: NetworkId,
    /// Its id.
    pub subtask: SubtaskId,
    /// The task's priority.
    pub priority: Priority,
    /// Delivery number (more than 1 after a restart).
    pub attempt: u32,
    /// What to do.
    pub description: String,
    /// The task itself.
    pub brief: Arc<TaskBrief>,
}

/// How an agent type works.
pub trait AgentBehavior: Send + Sync + 'static {
    /// The model call for a subtask.
    fn request(&self, spec: &AgentSpec, work: &Assignment, timeout: Duration) -> ModelRequest {
        ModelRequest {
            model: spec.model.clone(),
            messages: prompt::subtask(spec, &work.brief, &work.description),
            max_tokens: spec.parameters.max_tokens,
            temperature: spec.parameters.temperature,
            top_p: spec.parameters.top_p,
            priority: work.priority,
            network_id: Some(work.network),
            task_id: Some(work.subtask.task),
            agent_kind: Some(spec.kind.clone()),
            stop: Vec::new(),
            timeout,
            cache: true,
            idempotency_key: Some(work.subtask.to_string()),
            traceparent: None,
        }
    }

    /// The subtask's output from the model's answer; `Err` fails the subtask (not the agent).
    fn finish(
        &self,
        _spec: &AgentSpec,
        _work: &Assignment,
        response: &ModelResponse,
    ) -> Result<String, String> {
        let text = response.text.trim();
        if text.is_empty() {
            Err(format!("{} returned an empty answer", response.model))
        } else {
            Ok(text.to_owned())
        }
    }
}

/// The behavior of every built-in and configured agent type.
#[derive(Debug, Default, Clone, Copy)]
pub struct StandardBehavior;

impl AgentBehavior for StandardBehavior {}

/// Behaviors by agent type.
#[derive(Clone)]
pub struct Behaviors {
    by_kind: HashMap<String, Arc<dyn AgentBehavior>>,
    standard: Arc<dyn AgentBehavior>,
}

impl Default for Behaviors {
    fn default() -> Self {
        Self {
            by_kind: HashMap::new(),
            standard: Arc::new(StandardBehavior),
        }
    }
}

impl Behaviors {
    /// Uses `behavior` for agents of type `kind`.
    pub fn with(mut self, kind: &str, behavior: Arc<dyn AgentBehavior>) -> Self {
        self.by_kind.insert(kind.to_owned(), behavior);
        self
    }

    /// The behavior for agents of type `kind`.
    pub fn for_kind(&self, kind: &str) -> Arc<dyn AgentBehavior> {
        self.by_kind
            .get(kind)
            .cloned()
            .unwrap_or_else(|| self.standard.clone())
    }
}
