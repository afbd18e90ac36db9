//! What goes into and comes out of a model call.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{NetworkId, TaskId};
use crate::priority::Priority;
use crate::types::Usage;

/// Who said a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The request.
    User,
    /// A model's earlier answer.
    Assistant,
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: Role, content: String) -> Self {
        Self { role, content }
    }
}

/// A model call.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRequest {
    /// The model asked for, e.g. `claude-3-7-sonnet`.
    pub model: String,
    /// The conversation, system message first.
    pub messages: Vec<ChatMessage>,
    /// Most tokens in the answer.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Admission priority.
    pub priority: Priority,
    /// The network paying for it.
    pub network_id: Option<NetworkId>,
    /// The task it serves.
    pub task_id: Option<TaskId>,
    /// Time limit for the call.
    pub timeout: Duration,
}

/// A model's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelResponse {
    /// The text.
    pub text: String,
    /// The model that answered.
    pub model: String,
    /// The provider that answered.
    pub provider: String,
    /// Tokens used.
    pub usage: Usage,
}

/// Why a model call failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The provider took longer than the call's limit.
    #[error("{provider} did not answer within {after:?}")]
    Timeout {
        /// Which provider.
        provider: String,
        /// The limit.
        after: Duration,
    },
    /// The provider refused the request as malformed.
    #[error("{provider} rejected the request: {message}")]
    BadRequest {
        /// Which provider.
        provider: String,
        /// What it said.
        message: String,
    },
    /// The provider failed.
    #[error("{provider} failed: {message}")]
    Provider {
        /// Which provider.
        provider: String,
        /// What went wrong.
        message: String,
    },
    /// The gateway could not be reached.
    #[error("model gateway unavailable: {0}")]
    GatewayUnavailable(String),
}

impl ModelError {
    /// A short machine-readable kind.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "model_timeout",
            Self::BadRequest { .. } => "model_bad_request",
            Self::Provider { .. } => "model_error",
            Self::GatewayUnavailable(_) => "gateway_unavailable",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        })
    }
}
