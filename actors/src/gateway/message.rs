//! What goes into and comes out of a model call, and how a call can fail.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{NetworkId, TaskId};
use crate::priority::Priority;
use crate::types::{Usage, Usd};

/// Who said a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// A model call as agents and the OpenAI-compatible API make it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRequest {
    /// The model or chain asked for, e.g. `claude-3-7-sonnet`.
    pub model: String,
    /// The conversation, system message first.
    pub messages: Vec<ChatMessage>,
    /// Most tokens in the answer.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Admission priority.
    pub priority: Priority,
    /// The network paying for it.
    pub network_id: Option<NetworkId>,
    /// The task it serves.
    pub task_id: Option<TaskId>,
    /// The type of agent asking (for the selection policy), if an agent is.
    pub agent_kind: Option<String>,
    /// Time limit for the whole call, fallbacks included.
    pub timeout: Duration,
    /// Whether the response cache may answer.
    pub cache: bool,
    /// The call's idempotency key (a subtask's id): its answer is kept under it, so a
    /// redelivered call is answered from the journal instead of being paid again.
    pub idempotency_key: Option<String>,
    /// The W3C `traceparent` sent to the provider (the call's span in its task's trace; set
    /// by [`crate::gateway::call`]), so a traced proxy or provider joins the task's trace.
    pub traceparent: Option<String>,
}

impl ModelResponse {
    /// A kept answer replayed for a redelivered call: what it said, at no new cost.
    pub fn replayed(kept: crate::store::StoredResponse, requested: &str) -> Self {
        Self {
            text: kept.text,
            model: kept.model,
            provider: kept.provider,
            usage: Usage {
                cost_usd: Default::default(),
                ..kept.usage
            },
            finish_reason: kept.finish_reason,
            route: Route {
                requested: requested.to_owned(),
                chain: requested.to_owned(),
                replayed: true,
                ..Route::default()
            },
        }
    }
}

impl ModelRequest {
    /// A request for `model` with `messages` and defaults for everything else.
    pub fn new(model: &str, messages: Vec<ChatMessage>) -> Self {
        Self {
            model: model.to_owned(),
            messages,
            max_tokens: 4000,
            temperature: 0.7,
            top_p: None,
            stop: Vec::new(),
            priority: Priority::DEFAULT,
            network_id: None,
            task_id: None,
            agent_kind: None,
            timeout: Duration::from_secs(120),
            cache: true,
            idempotency_key: None,
            traceparent: None,
        }
    }
}

/// One link tried while serving a call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The provider.
    pub provider: String,
    /// The model at that provider.
    pub model: String,
    /// Why it did not answer (`None` for the one that did).
    pub error: Option<String>,
}

/// How the gateway served a call: what was asked, what answered, and why.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// The model or chain asked for.
    pub requested: String,
    /// The chain it resolved to.
    pub chain: String,
    /// The tier the selection policy chose (`standard` or `simple`), if one applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The temperature used.
    pub temperature: f32,
    /// Every link tried, in order.
    pub attempts: Vec<Attempt>,
    /// Answered from the response cache.
    pub cached: bool,
    /// Answered from the journal of kept answers (a redelivered call; not paid again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
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
    /// Tokens used and what they cost.
    pub usage: Usage,
    /// Why the model stopped (`stop`, `length`, ...), when the provider says.
    pub finish_reason: Option<String>,
    /// How the gateway served it.
    pub route: Route,
}

/// Why a model call failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// 429: the provider asks us to slow down.
    #[error("{provider} rate limited the call{}: {message}", retry_suffix(.retry_after))]
    RateLimited {
        /// Which provider.
        provider: String,
        /// How long it asked us to wait.
        retry_after: Option<Duration>,
        /// What it said.
        message: String,
    },
    /// The provider is overloaded (Anthropic 529, 503).
    #[error("{provider} is overloaded: {message}")]
    Overloaded {
        /// Which provider.
        provider: String,
        /// What it said.
        message: String,
    },
    /// Any other 5xx.
    #[error("{provider} failed with HTTP {status}: {message}")]
    Server {
        /// Which provider.
        provider: String,
        /// The status.
        status: u16,
        /// What it said.
        message: String,
    },
    /// No answer (or no stream progress) in time.
    #[error("{provider} did not answer within {after:?}")]
    Timeout {
        /// Which provider.
        provider: String,
        /// The limit.
        after: Duration,
    },
    /// The connection failed: refused, reset, or a stream cut before its end.
    #[error("{provider} connection failed: {message}")]
    Transport {
        /// Which provider.
        provider: String,
        /// What happened.
        message: String,
    },
    /// The provider refused the request as malformed (400, 404, 422).
    #[error("{provider} rejected the request: {message}")]
    BadRequest {
        /// Which provider.
        provider: String,
        /// What it said.
        message: String,
    },
    /// 401 / 403: the key is missing or wrong.
    #[error("{provider} refused our credentials: {message}")]
    Auth {
        /// Which provider.
        provider: String,
        /// What it said.
        message: String,
    },
    /// The output (or prompt) was blocked by a content filter: the provider's or ours.
    #[error("content filtered by {provider}: {message}")]
    ContentFiltered {
        /// Which provider, or `aimesh` for our own filter.
        provider: String,
        /// The verdict.
        message: String,
    },
    /// The prompt does not fit the model's context window.
    #[error("{provider}: the prompt is too long for the model: {message}")]
    ContextTooLong {
        /// Which provider.
        provider: String,
        /// What it said.
        message: String,
    },
    /// The answer could not be understood.
    #[error("{provider} sent a malformed answer: {message}")]
    Malformed {
        /// Which provider.
        provider: String,
        /// What was wrong.
        message: String,
    },
    /// The call would overshoot a budget.
    #[error(
        "budget exceeded: the {scope} budget of {limit} has {remaining} left, this call may cost {needed}"
    )]
    BudgetExceeded {
        /// `global` or `network <id>`.
        scope: String,
        /// The budget.
        limit: Usd,
        /// What is left of it (spent and reserved taken off).
        remaining: Usd,
        /// The call's estimated cost.
        needed: Usd,
    },
    /// Every link of the chain failed.
    #[error("every model in chain {chain} failed: {}", summarize(.attempts))]
    Exhausted {
        /// The chain.
        chain: String,
        /// What each link said.
        attempts: Vec<Attempt>,
    },
    /// The gateway could not be reached.
    #[error("model gateway unavailable: {0}")]
    GatewayUnavailable(String),
}

fn retry_suffix(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|d| format!(" (retry after {d:?})"))
        .unwrap_or_default()
}

fn summarize(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| {
            format!(
                "{}/{}: {}",
                a.provider,
                a.model,
                a.error.as_deref().unwrap_or("ok")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl ModelError {
    /// A short machine-readable kind.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::Overloaded { .. } => "overloaded",
            Self::Server { .. } => "server_error",
            Self::Timeout { .. } => "timeout",
            Self::Transport { .. } => "transport_error",
            Self::BadRequest { .. } => "bad_request",
            Self::Auth { .. } => "auth_error",
            Self::ContentFiltered { .. } => "content_filtered",
            Self::ContextTooLong { .. } => "context_too_long",
            Self::Malformed { .. } => "malformed_response",
            Self::BudgetExceeded { .. } => "budget_exceeded",
            Self::Exhausted { .. } => "all_models_failed",
            Self::GatewayUnavailable(_) => "gateway_unavailable",
        }
    }

    /// True when the next link of the chain should be tried: the failure is the provider's
    /// (or its model's), not the request's or the caller's.
    pub fn falls_back(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Overloaded { .. }
                | Self::Server { .. }
                | Self::Timeout { .. }
                | Self::Transport { .. }
                | Self::Auth { .. }
                | Self::Malformed { .. }
                | Self::ContextTooLong { .. }
        )
    }

    /// True when the failure counts against the provider's circuit breaker.
    pub fn trips_circuit(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Overloaded { .. }
                | Self::Server { .. }
                | Self::Timeout { .. }
                | Self::Transport { .. }
                | Self::Auth { .. }
                | Self::Malformed { .. }
        )
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
