//! Request bodies of seed 001's API, and their validation into the node's types. Unknown fields
//! are refused, so a typo (`priorty`) is an error, not a silently ignored field.

use serde::Deserialize;
use serde_json::{Map, Value};

use aimesh_actors::ids::{AgentId, MemoryId, NetworkId, TaskId};
use aimesh_actors::node::{NewNetwork, NewTask};
use aimesh_actors::priority::Priority;
use aimesh_actors::types::{
    AgentParameters, AgentSpec, DEFAULT_MODEL, MemoryItem, MemoryKind, Retention, Session, Usd,
    builtin_capabilities, now,
};

use super::error::ApiError;
use crate::config::Limits;

/// `POST /networks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNetwork {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    max_iterations: Option<i64>,
    #[serde(default)]
    timeout_seconds: Option<i64>,
    #[serde(default)]
    agents: Option<Vec<AgentConfig>>,
    #[serde(default)]
    budget_usd: Option<f64>,
    #[serde(default)]
    retention: Option<RetentionBody>,
}

/// A network's memory retention.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    #[serde(default)]
    max_age_seconds: Option<i64>,
    #[serde(default)]
    max_items: Option<i64>,
}

/// `POST /networks/{id}/sessions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    ttl_seconds: Option<i64>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// One agent's configuration (seed 001's `agent_config`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(default)]
    capabilities: Option<Vec<String>>,
}

/// Model parameters of an agent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    concurrency: Option<i64>,
}

/// `POST /networks/{id}/agents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddAgent {
    agent_config: AgentConfig,
}

/// `POST /networks/{id}/tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitTask {
    task: String,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    max_iterations: Option<i64>,
    #[serde(default)]
    timeout_seconds: Option<i64>,
}

/// `POST /networks/{id}/memory`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMemory {
    #[serde(rename = "type")]
    kind: MemoryKind,
    content: Value,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

fn text(field: &str, value: String, max: usize, required: bool) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if required && trimmed.is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if trimmed.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("{field} is longer than {max} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

fn int(field: &str, value: Option<i64>, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
    match value {
        None => Ok(default),
        Some(v) if v >= 0 && (min..=max).contains(&(v as u64)) => Ok(v as u64),
        Some(v) => Err(ApiError::invalid(
            field,
            format!("{field} must be an integer from {min} to {max}, got {v}"),
        )),
    }
}

fn float(field: &str, value: Option<f64>, min: f64, max: f64) -> Result<Option<f32>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && v >= min && v <= max => Ok(Some(v as f32)),
        Some(v) => Err(ApiError::invalid(
            field,
            format!("{field} must be a number from {min} to {max}, got {v}"),
        )),
    }
}

/// The longest TTL or retention age: ten years.
const MAX_TTL_SECONDS: u64 = 10 * 365 * 86_400;

/// Iterations and timeouts: the same bounds everywhere.
const MAX_ITERATIONS: u64 = 100;
const MAX_TIMEOUT_SECONDS: u64 = 86_400;

impl CreateNetwork {
    /// Validates into a new network.
    pub fn validate(self) -> Result<NewNetwork, ApiError> {
        let agents = match self.agents {
            None => None,
            Some(list) => {
                if list.is_empty() {
                    return Err(ApiError::invalid(
                        "agents",
                        "agents must not be empty; omit it for the five default agents",
                    ));
                }
                if list.len() > 1000 {
                    return Err(ApiError::invalid("agents", "at most 1000 agents"));
                }
                let mut specs = Vec::with_capacity(list.len());
                for (i, a) in list.into_iter().enumerate() {
                    specs.push(a.validate(&format!("agents[{i}]"))?);
                }
                Some(specs)
            }
        };
        Ok(NewNetwork {
            name: text("name", self.name, 200, true)?,
            description: text(
                "description",
                self.description.unwrap_or_default(),
                2000,
                false,
            )?,
            max_iterations: int("max_iterations", self.max_iterations, 10, 1, MAX_ITERATIONS)?
                as u32,
            timeout_seconds: int(
                "timeout_seconds",
                self.timeout_seconds,
                300,
                1,
                MAX_TIMEOUT_SECONDS,
            )?,
            agents,
            retention: self
                .retention
                .map(|r| {
                    Ok::<_, ApiError>(Retention {
                        max_age_seconds: r
                            .max_age_seconds
                            .map(|v| {
                                int("retention.max_age_seconds", Some(v), 0, 1, MAX_TTL_SECONDS)
                            })
                            .transpose()?,
                        max_items: r
                            .max_items
                            .map(|v| int("retention.max_items", Some(v), 0, 1, 1_000_000_000))
                            .transpose()?,
                    })
                })
                .transpose()?,
            budget_usd: match self.budget_usd {
                None => None,
                Some(d) if d.is_finite() && d >= 0.0 => Some(Usd::from_dollars(d)),
                Some(d) => {
                    return Err(ApiError::invalid(
                        "budget_usd",
                        format!("budget_usd must be a non-negative number of dollars, got {d}"),
                    ));
                }
            },
            network_id: None,
        })
    }
}

impl AgentConfig {
    /// Validates into an agent spec; `at` prefixes field names (`agent_config`, `agents[2]`).
    pub fn validate(self, at: &str) -> Result<AgentSpec, ApiError> {
        let f = |name: &str| format!("{at}.{name}");
        let kind = text(&f("type"), self.kind, 64, true)?.to_lowercase();
        if !kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ApiError::invalid(
                f("type"),
                "type may contain only letters, digits, '_' and '-'",
            ));
        }
        let mut parameters = AgentParameters::for_kind(&kind);
        if let Some(p) = self.parameters {
            let pf = |name: &str| format!("{at}.parameters.{name}");
            if let Some(t) = float(&pf("temperature"), p.temperature, 0.0, 2.0)? {
                parameters.temperature = t;
            }
            parameters.max_tokens = int(
                &pf("max_tokens"),
                p.max_tokens,
                parameters.max_tokens.into(),
                1,
                1_000_000,
            )? as u32;
            parameters.top_p = float(&pf("top_p"), p.top_p, 0.0, 1.0)?;
            parameters.concurrency = int(
                &pf("concurrency"),
                p.concurrency,
                parameters.concurrency.into(),
                1,
                1024,
            )? as u32;
        }
        let capabilities = match self.capabilities {
            Some(caps) => {
                if caps.len() > 64 {
                    return Err(ApiError::invalid(
                        f("capabilities"),
                        "at most 64 capabilities",
                    ));
                }
                caps.into_iter()
                    .enumerate()
                    .map(|(i, c)| text(&format!("{at}.capabilities[{i}]"), c, 100, true))
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => builtin_capabilities(&kind)
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
        };
        Ok(AgentSpec {
            agent_id: AgentId::new(),
            name: text(&f("name"), self.name, 200, true)?,
            model: match self.model {
                Some(m) => text(&f("model"), m, 200, true)?,
                None => DEFAULT_MODEL.to_owned(),
            },
            description: text(
                &f("description"),
                self.description.unwrap_or_default(),
                2000,
                false,
            )?,
            kind,
            parameters,
            capabilities,
        })
    }
}

impl AddAgent {
    /// Validates into an agent spec.
    pub fn validate(self) -> Result<AgentSpec, ApiError> {
        self.agent_config.validate("agent_config")
    }
}

impl SubmitTask {
    /// Validates into a new task.
    pub fn validate(self, limits: &Limits) -> Result<NewTask, ApiError> {
        let task = text("task", self.task, limits.max_task_chars, true)?;
        let context = match self.context {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::Object(m)) => Value::Object(m),
            Some(_) => {
                return Err(ApiError::invalid(
                    "context",
                    "context must be a JSON object",
                ));
            }
        };
        let priority = match self.priority {
            None => Priority::DEFAULT,
            Some(p) => u8::try_from(p)
                .ok()
                .and_then(Priority::new)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "priority",
                        format!("priority must be 1 (highest) to 5 (lowest), got {p}"),
                    )
                })?,
        };
        Ok(NewTask {
            task,
            context,
            priority,
            max_iterations: self
                .max_iterations
                .map(|v| int("max_iterations", Some(v), 0, 1, MAX_ITERATIONS))
                .transpose()?
                .map(|v| v as u32),
            timeout_seconds: self
                .timeout_seconds
                .map(|v| int("timeout_seconds", Some(v), 0, 1, MAX_TIMEOUT_SECONDS))
                .transpose()?,
            client_traceparent: None,
        })
    }
}

impl CreateSession {
    /// Validates into a session of `network`.
    pub fn validate(self, network: NetworkId) -> Result<Session, ApiError> {
        let session_id = match self.session_id {
            Some(id) => {
                let id = text("session_id", id, 200, true)?;
                if !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
                {
                    return Err(ApiError::invalid(
                        "session_id",
                        "session_id may contain only letters, digits and - _ . :",
                    ));
                }
                id
            }
            None => uuid::Uuid::now_v7().to_string(),
        };
        let created_at = now();
        let expires_at = self
            .ttl_seconds
            .map(|t| int("ttl_seconds", Some(t), 0, 1, MAX_TTL_SECONDS))
            .transpose()?
            .map(|t| created_at + time::Duration::seconds(t as i64));
        Ok(Session {
            session_id,
            network_id: network,
            metadata: self.metadata.unwrap_or_default(),
            created_at,
            expires_at,
        })
    }
}

impl AddMemory {
    /// The session the item names, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Validates into a memory item of `network`; the item expires with `session` if it
    /// expires sooner than its own TTL.
    pub fn validate(
        self,
        network: NetworkId,
        limits: &Limits,
        session: Option<&Session>,
    ) -> Result<MemoryItem, ApiError> {
        match &self.content {
            Value::Null => return Err(ApiError::invalid("content", "content must not be null")),
            Value::String(s) if s.trim().is_empty() => {
                return Err(ApiError::invalid("content", "content must not be empty"));
            }
            _ => {}
        }
        let metadata = self.metadata.unwrap_or_default();
        let size = serde_json::to_vec(&self.content)
            .map(|v| v.len())
            .unwrap_or(0)
            + serde_json::to_vec(&metadata).map(|v| v.len()).unwrap_or(0);
        if size > limits.max_memory_item_bytes {
            return Err(ApiError::invalid(
                "content",
                format!(
                    "the item is {size} bytes; the limit is {} (limits.max_memory_item_bytes)",
                    limits.max_memory_item_bytes
                ),
            ));
        }
        let agent_id = self
            .agent_id
            .map(|a| {
                a.parse::<AgentId>()
                    .map_err(|_| ApiError::invalid("agent_id", format!("{a:?} is not an agent id")))
            })
            .transpose()?;
        let task_id = self
            .task_id
            .map(|t| {
                t.parse::<TaskId>()
                    .map_err(|_| ApiError::invalid("task_id", format!("{t:?} is not a task id")))
            })
            .transpose()?;
        let session_id = self
            .session_id
            .map(|s| text("session_id", s, 200, true))
            .transpose()?;
        let at = now();
        let ttl = self
            .ttl_seconds
            .map(|t| int("ttl_seconds", Some(t), 0, 1, MAX_TTL_SECONDS))
            .transpose()?
            .map(|t| at + time::Duration::seconds(t as i64));
        let expires_at = match (ttl, session.and_then(|s| s.expires_at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(MemoryItem {
            memory_id: MemoryId::new(),
            network_id: network,
            kind: self.kind,
            content: self.content,
            metadata,
            agent_id,
            task_id,
            session_id,
            created_at: at,
            updated_at: at,
            expires_at,
        })
    }
}
