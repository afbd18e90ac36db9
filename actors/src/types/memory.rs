//! Shared-memory items (seed 001's memory types).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Timestamp;
use crate::ids::{AgentId, MemoryId, NetworkId, TaskId};

/// The kind of a memory item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    /// Factual information that is objectively true.
    Fact,
    /// Contextual information about the task or domain.
    Context,
    /// A decision made during task processing.
    Decision,
    /// Feedback on previous actions or results.
    Feedback,
}

impl MemoryKind {
    /// Every kind.
    pub const ALL: [MemoryKind; 4] = [Self::Fact, Self::Context, Self::Decision, Self::Feedback];

    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fact => "fact",
            Self::Context => "context",
            Self::Decision => "decision",
            Self::Feedback => "feedback",
        }
    }
}

/// One item of a network's shared memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryItem {
    /// Its id.
    pub memory_id: MemoryId,
    /// Its network.
    pub network_id: NetworkId,
    /// fact, context, decision or feedback.
    #[serde(rename = "type")]
    pub kind: MemoryKind,
    /// The content: usually a string, any JSON value is kept.
    pub content: Value,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
    /// The agent that wrote it, if an agent did.
    pub agent_id: Option<AgentId>,
    /// The task it came from, if any.
    pub task_id: Option<TaskId>,
    /// The session it belongs to, if any.
    pub session_id: Option<String>,
    /// When it was written.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    /// When it expires (its own TTL or its session's), if ever.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<Timestamp>,
}

impl MemoryItem {
    /// True if it has expired at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    /// The content as one line of text, for prompts.
    pub fn content_text(&self) -> String {
        match &self.content {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// A group of memory items with a shared lifetime.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Its id (chosen by the client or generated).
    pub session_id: String,
    /// Its network.
    pub network_id: NetworkId,
    /// Free-form metadata.
    pub metadata: Map<String, Value>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    /// When it and its items expire, if ever.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<Timestamp>,
}

/// A network's memory retention: items past either bound are removed by the sweep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Items older than this are removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
    /// Only this many of the newest items are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<u64>,
}

/// A memory listing query; items come newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryQuery {
    /// Only items of these kinds (any kind when empty).
    pub kinds: Vec<MemoryKind>,
    /// Only items written by this agent.
    pub agent_id: Option<AgentId>,
    /// Only items of this task.
    pub task_id: Option<TaskId>,
    /// Only items of this session.
    pub session_id: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Matching items to skip.
    pub offset: usize,
}

impl MemoryQuery {
    /// True when every item passes the filters (no filter, or every kind listed).
    pub fn takes_everything(&self) -> bool {
        self.agent_id.is_none()
            && self.task_id.is_none()
            && self.session_id.is_none()
            && MemoryKind::ALL
                .iter()
                .all(|k| self.kinds.is_empty() || self.kinds.contains(k))
    }

    /// True if `item` passes the filters.
    pub fn matches(&self, item: &MemoryItem) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&item.kind))
            && self.agent_id.is_none_or(|a| item.agent_id == Some(a))
            && self.task_id.is_none_or(|t| item.task_id == Some(t))
            && self
                .session_id
                .as_ref()
                .is_none_or(|s| item.session_id.as_ref() == Some(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_takes_everything_only_without_a_narrowing_filter() {
        let all = MemoryQuery::default();
        assert!(all.takes_everything());
        let every_kind = MemoryQuery {
            kinds: MemoryKind::ALL.to_vec(),
            ..MemoryQuery::default()
        };
        assert!(every_kind.takes_everything());
        let some_kinds = MemoryQuery {
            kinds: vec![MemoryKind::Fact, MemoryKind::Decision],
            ..MemoryQuery::default()
        };
        assert!(!some_kinds.takes_everything());
        let one_session = MemoryQuery {
            session_id: Some("s".into()),
            ..every_kind.clone()
        };
        assert!(!one_session.takes_everything());
        let one_agent = MemoryQuery {
            agent_id: Some(AgentId::new()),
            ..every_kind.clone()
        };
        assert!(!one_agent.takes_everything());
        let one_task = MemoryQuery {
            task_id: Some(TaskId::new()),
            ..every_kind
        };
        assert!(!one_task.takes_everything());
    }
}
