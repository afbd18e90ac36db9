//! Networks and their agents.

use serde::{Deserialize, Serialize};

use super::{Timestamp, Usd};
use crate::ids::{AgentId, NetworkId};

/// The model agents ask for when none is given (the head of seed 001's fallback chain).
pub const DEFAULT_MODEL: &str = "claude-3-7-sonnet";

/// One agent's configuration (seed 001's `agent_config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    /// Its id.
    pub agent_id: AgentId,
    /// Display name, e.g. "Content Specialist".
    pub name: String,
    /// Agent type: coordinator, content, design, analytics, personalization, or a custom one.
    #[serde(rename = "type")]
    pub kind: String,
    /// The model it asks the gateway for.
    pub model: String,
    /// What it specializes in.
    pub description: String,
    /// Model parameters and its concurrency.
    pub parameters: AgentParameters,
    /// What it can do; the coordinator delegates by these.
    pub capabilities: Vec<String>,
}

impl AgentSpec {
    /// True for the network's coordinator.
    pub fn is_coordinator(&self) -> bool {
        self.kind == "coordinator"
    }
}

/// Model parameters of an agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentParameters {
    /// Sampling temperature.
    pub temperature: f32,
    /// The most tokens one answer may have.
    pub max_tokens: u32,
    /// Nucleus sampling, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// How many subtasks the agent runs at once (its model calls in flight).
    pub concurrency: u32,
}

impl AgentParameters {
    /// Defaults for an agent of `kind`.
    pub fn for_kind(kind: &str) -> Self {
        Self {
            temperature: default_temperature(kind),
            max_tokens: 4000,
            top_p: None,
            concurrency: 8,
        }
    }
}

/// A network of agents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// Its id.
    pub network_id: NetworkId,
    /// Display name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Default bound on delegation rounds per task.
    pub max_iterations: u32,
    /// Default time limit per task, from `process`.
    pub timeout_seconds: u64,
    /// Its agents, the coordinator first.
    pub agents: Vec<AgentSpec>,
    /// What its model calls may cost in all (none: the node's default).
    #[serde(default)]
    pub budget_usd: Option<Usd>,
    /// How long its memory items are kept (none: the node's default).
    #[serde(default)]
    pub retention: Option<super::Retention>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

impl NetworkRecord {
    /// The coordinator's spec.
    pub fn coordinator(&self) -> Option<&AgentSpec> {
        self.agents.iter().find(|a| a.is_coordinator())
    }

    /// The specialists: every agent but the coordinator.
    pub fn specialists(&self) -> impl Iterator<Item = &AgentSpec> {
        self.agents.iter().filter(|a| !a.is_coordinator())
    }
}

/// Sampling temperature by agent type: creative work runs warmer than analytical work.
pub fn default_temperature(kind: &str) -> f32 {
    match kind {
        "content" => 0.7,
        "design" => 0.6,
        "personalization" => 0.4,
        "coordinator" => 0.3,
        "analytics" => 0.2,
        _ => 0.5,
    }
}

/// The capabilities of a built-in agent type (empty for custom types).
pub fn builtin_capabilities(kind: &str) -> &'static [&'static str] {
    match kind {
        "coordinator" => &["task_planning", "delegation", "synthesis"],
        "content" => &[
            "content_generation",
            "copywriting",
            "email_drafting",
            "content_refinement",
        ],
        "design" => &[
            "layout_design",
            "visual_hierarchy",
            "branding",
            "responsive_design",
        ],
        "analytics" => &[
            "data_analysis",
            "performance_metrics",
            "kpi_tracking",
            "ab_testing",
        ],
        "personalization" => &[
            "audience_segmentation",
            "personalization",
            "audience_targeting",
            "recommendations",
        ],
        _ => &[],
    }
}

/// The five agents a network gets when it is created without any (seed 001).
pub fn default_agents() -> Vec<AgentSpec> {
    [
        (
            "Coordinator Agent",
            "coordinator",
            "Coordinates tasks and delegates to specialized agents",
        ),
        (
            "Content Specialist",
            "content",
            "Specializes in generating and refining content",
        ),
        (
            "Design Specialist",
            "design",
            "Specializes in design and layout considerations",
        ),
        (
            "Analytics Specialist",
            "analytics",
            "Specializes in data analysis and performance insights",
        ),
        (
            "Personalization Specialist",
            "personalization",
            "Specializes in audience targeting and personalization",
        ),
    ]
    .into_iter()
    .map(|(name, kind, description)| AgentSpec {
        agent_id: AgentId::new(),
        name: name.to_owned(),
        kind: kind.to_owned(),
        model: DEFAULT_MODEL.to_owned(),
        description: description.to_owned(),
        parameters: AgentParameters::for_kind(kind),
        capabilities: builtin_capabilities(kind)
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_network_has_the_seeds_five_agents_with_one_coordinator() {
        let agents = default_agents();
        let names: Vec<_> = agents.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Coordinator Agent",
                "Content Specialist",
                "Design Specialist",
                "Analytics Specialist",
                "Personalization Specialist"
            ]
        );
        assert_eq!(agents.iter().filter(|a| a.is_coordinator()).count(), 1);
        assert!(agents.iter().all(|a| !a.capabilities.is_empty()));
        assert!(default_temperature("analytics") < default_temperature("content"));
    }
}
