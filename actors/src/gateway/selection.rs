//! Model selection by task complexity and adaptive temperature (seed 000): a configured policy
//! sends simple calls to a cheaper tier and sets the temperature by agent type (creative work
//! warmer, analytical work cooler). The choice is recorded in the call's route.

use std::collections::BTreeMap;

use super::ModelRequest;
use super::offline::estimate_tokens;

/// The policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelectionPolicy {
    /// The cheaper tier, if configured.
    pub simple: Option<SimpleTier>,
    /// Temperature by agent type; types not listed keep their own.
    pub temperature: BTreeMap<String, f32>,
}

/// Where simple calls go.
#[derive(Clone, Debug, PartialEq)]
pub struct SimpleTier {
    /// The model or chain for simple calls.
    pub model: String,
    /// Prompts up to this many (estimated) tokens may count as simple.
    pub max_prompt_tokens: u64,
}

/// What the policy chose for one call.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// The model or chain to use.
    pub model: String,
    /// `simple` or `standard` when the policy applies, else `None`.
    pub tier: Option<&'static str>,
    /// The temperature to use.
    pub temperature: f32,
}

/// Words that mark a request as needing the standard tier whatever its length.
const COMPLEX: &[&str] = &[
    "analy",
    "strateg",
    "compare",
    "evaluat",
    "reason",
    "plan",
    "design",
    "architect",
    "why",
    "trade-off",
    "tradeoff",
    "optimi",
    "synthes",
    "prove",
    "debug",
];

impl SelectionPolicy {
    /// The choice for `request`.
    pub fn choose(&self, request: &ModelRequest) -> Choice {
        let temperature = request
            .agent_kind
            .as_ref()
            .and_then(|k| self.temperature.get(k))
            .copied()
            .unwrap_or(request.temperature);
        let Some(simple) = &self.simple else {
            return Choice {
                model: request.model.clone(),
                tier: None,
                temperature,
            };
        };
        let prompt: u64 = request
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content))
            .sum();
        let ask = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == super::Role::User)
            .map(|m| m.content.to_lowercase())
            .unwrap_or_default();
        let is_simple = prompt <= simple.max_prompt_tokens
            && request.agent_kind.as_deref() != Some("coordinator")
            && !COMPLEX.iter().any(|w| ask.contains(w));
        Choice {
            model: if is_simple {
                simple.model.clone()
            } else {
                request.model.clone()
            },
            tier: Some(if is_simple { "simple" } else { "standard" }),
            temperature,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{ChatMessage, Role};

    fn req(kind: &str, text: &str) -> ModelRequest {
        let mut r = ModelRequest::new(
            "claude-3-7-sonnet",
            vec![ChatMessage::new(Role::User, text.into())],
        );
        r.agent_kind = Some(kind.into());
        r
    }

    #[test]
    fn short_plain_requests_go_to_the_cheap_tier_and_temperature_follows_the_agent_type() {
        let policy = SelectionPolicy {
            simple: Some(SimpleTier {
                model: "gpt-4o-mini".into(),
                max_prompt_tokens: 50,
            }),
            temperature: BTreeMap::from([("analytics".into(), 0.1), ("content".into(), 0.9)]),
        };
        let c = policy.choose(&req("content", "Write a subject line for our sale."));
        assert_eq!(
            (c.model.as_str(), c.tier, c.temperature),
            ("gpt-4o-mini", Some("simple"), 0.9)
        );
        let c = policy.choose(&req("analytics", "Analyze last week's open rates."));
        assert_eq!(
            (c.model.as_str(), c.tier, c.temperature),
            ("claude-3-7-sonnet", Some("standard"), 0.1)
        );
        let c = policy.choose(&req("content", &"long ".repeat(100)));
        assert_eq!(c.tier, Some("standard"));
        let c = policy.choose(&req("coordinator", "Combine."));
        assert_eq!(c.tier, Some("standard"));
        // No policy: nothing changes.
        let c = SelectionPolicy::default().choose(&req("content", "x"));
        assert_eq!(
            (c.model.as_str(), c.tier, c.temperature),
            ("claude-3-7-sonnet", None, 0.7)
        );
    }
}
