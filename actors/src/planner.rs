//! How the coordinator decides who does what: capability matching.
//!
//! The task text and its context are reduced to word stems and matched against each specialist's
//! vocabulary: the words of its capabilities, type, name and description, plus a lexicon for the
//! built-in types. Every specialist that matches gets a subtask; agents of the same type form a
//! pool and the least-loaded one is picked. When nothing matches, the best generalist (a content
//! agent, else the first specialist) takes the task whole. Deterministic: same inputs, same plan.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use crate::ids::AgentId;
use crate::types::AgentSpec;

/// One planned delegation.
#[derive(Debug, Clone, PartialEq)]
pub struct Delegation {
    /// Who.
    pub agent_id: AgentId,
    /// What they are asked to do.
    pub description: String,
    /// The stems that matched, for the decision record.
    pub matched: Vec<String>,
}

const STOP: &[&str] = &[
    "a",
    "an",
    "and",
    "are",
    "as",
    "at",
    "be",
    "by",
    "for",
    "from",
    "in",
    "into",
    "is",
    "it",
    "of",
    "on",
    "or",
    "our",
    "that",
    "the",
    "their",
    "this",
    "to",
    "we",
    "with",
    "you",
    "your",
    "new",
    "create",
    "make",
    "specialize",
    "specializes",
    "agent",
    "specialist",
    "help",
    "need",
    "some",
];

fn lexicon(kind: &str) -> &'static [&'static str] {
    match kind {
        "content" => &[
            "write",
            "draft",
            "copy",
            "copywriting",
            "content",
            "email",
            "newsletter",
            "blog",
            "post",
            "article",
            "message",
            "subject",
            "headline",
            "text",
            "story",
            "campaign",
            "announcement",
            "announce",
            "launch",
            "tagline",
            "script",
            "description",
            "product",
            "feature",
            "refine",
            "rewrite",
            "edit",
        ],
        "design" => &[
            "design",
            "layout",
            "template",
            "visual",
            "brand",
            "branding",
            "color",
            "colour",
            "image",
            "style",
            "typography",
            "responsive",
            "mobile",
            "ui",
            "ux",
            "page",
            "landing",
            "banner",
            "creative",
            "look",
            "campaign",
            "email",
            "newsletter",
            "mockup",
        ],
        "analytics" => &[
            "analytics",
            "analyze",
            "analyse",
            "analysis",
            "metric",
            "measure",
            "kpi",
            "track",
            "tracking",
            "performance",
            "report",
            "data",
            "conversion",
            "roi",
            "test",
            "ab",
            "experiment",
            "insight",
            "forecast",
            "campaign",
            "launch",
            "optimize",
            "optimization",
            "rate",
            "result",
        ],
        "personalization" => &[
            "personalize",
            "personalise",
            "personalization",
            "personalized",
            "target",
            "audience",
            "segment",
            "segmentation",
            "persona",
            "customer",
            "user",
            "recommend",
            "recommendation",
            "professional",
            "profile",
            "individual",
            "tailor",
            "tailored",
            "subscriber",
            "developer",
        ],
        _ => &[],
    }
}

/// Lower-case word stems of `text`, without stop-words.
pub fn stems(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| stem(&w.to_lowercase()))
        .filter(|w| !STOP.contains(&w.as_str()) && w.len() > 1)
        .collect()
}

fn stem(w: &str) -> String {
    let n = w.chars().count();
    let cut = |suffix: &str, min: usize| n > min && w.ends_with(suffix);
    if cut("ies", 4) {
        return format!("{}y", &w[..w.len() - 3]);
    }
    if cut("ing", 5) {
        return w[..w.len() - 3].to_owned();
    }
    if cut("ed", 4) && !w.ends_with("eed") {
        return w[..w.len() - 2].to_owned();
    }
    if cut("s", 3) && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        return w[..w.len() - 1].to_owned();
    }
    w.to_owned()
}

/// The word stems an agent answers to; computed once per agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vocabulary(HashSet<String>);

impl Vocabulary {
    /// The vocabulary of `spec`: its type's lexicon, capabilities, type, name and description.
    pub fn of(spec: &AgentSpec) -> Self {
        let mut v: HashSet<String> = lexicon(&spec.kind).iter().map(|w| stem(w)).collect();
        for cap in &spec.capabilities {
            v.extend(stems(cap));
        }
        v.extend(stems(&spec.kind));
        v.extend(stems(&spec.name));
        v.extend(stems(&spec.description));
        Self(v)
    }

    fn contains(&self, stem: &str) -> bool {
        self.0.contains(stem)
    }
}

/// A specialist the planner may choose, with its vocabulary.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Its configuration.
    pub spec: &'a AgentSpec,
    /// Its vocabulary.
    pub vocabulary: &'a Vocabulary,
}

fn context_words(context: &Value, out: &mut Vec<String>) {
    if let Value::Object(map) = context {
        for (k, v) in map {
            out.extend(stems(k));
            if let Value::String(s) = v
                && s.len() <= 200
            {
                out.extend(stems(s));
            }
        }
    }
}

/// What a specialist of `spec` is asked to do for `task`.
pub fn describe(spec: &AgentSpec, task: &str) -> String {
    let task: String = task.chars().take(500).collect();
    match spec.kind.as_str() {
        "content" => format!("Draft the content and copy for: {task}"),
        "design" => format!("Specify the layout and visual design for: {task}"),
        "analytics" => format!("Define the metrics, targets and tracking plan for: {task}"),
        "personalization" => {
            format!("Define the audience segments and personalization rules for: {task}")
        }
        _ if !spec.capabilities.is_empty() => format!(
            "As {}, apply {} to: {task}",
            spec.name,
            spec.capabilities.join(", ")
        ),
        _ => format!("As {}, work on: {task}", spec.name),
    }
}

/// Plans the first round: one delegation per matching specialist type, to its least-loaded
/// agent (`load` gives an agent's queued plus running work).
pub fn plan(
    task: &str,
    context: &Value,
    candidates: &[Candidate<'_>],
    load: impl Fn(AgentId) -> usize,
) -> Vec<Delegation> {
    let task_words: BTreeSet<String> = stems(task).into_iter().collect();
    let mut ctx = Vec::new();
    context_words(context, &mut ctx);
    let ctx_words: BTreeSet<String> = ctx.into_iter().collect();

    // Score each specialist; agents of one type share a pool.
    struct Scored<'a> {
        spec: &'a AgentSpec,
        score: u32,
        matched: Vec<String>,
    }
    let mut pools: Vec<(String, Vec<Scored>)> = Vec::new();
    for &Candidate {
        spec,
        vocabulary: vocab,
    } in candidates
    {
        let mut matched: Vec<String> = task_words
            .iter()
            .filter(|w| vocab.contains(w))
            .cloned()
            .collect();
        let text_hits = matched.len() as u32;
        let ctx_hits: Vec<String> = ctx_words
            .iter()
            .filter(|w| vocab.contains(w) && !task_words.contains(*w))
            .cloned()
            .collect();
        let score = text_hits * 2 + ctx_hits.len() as u32;
        matched.extend(ctx_hits);
        let scored = Scored {
            spec,
            score,
            matched,
        };
        match pools.iter_mut().find(|(k, _)| *k == spec.kind) {
            Some((_, members)) => members.push(scored),
            None => pools.push((spec.kind.clone(), vec![scored])),
        }
    }

    let mut out = Vec::new();
    for (_, members) in &pools {
        let best = members.iter().map(|m| m.score).max().unwrap_or(0);
        if best == 0 {
            continue;
        }
        let chosen = members
            .iter()
            .filter(|m| m.score == best)
            .min_by_key(|m| load(m.spec.agent_id));
        if let Some(m) = chosen {
            out.push(Delegation {
                agent_id: m.spec.agent_id,
                description: describe(m.spec, task),
                matched: m.matched.clone(),
            });
        }
    }
    if out.is_empty() {
        let generalist = candidates
            .iter()
            .map(|c| c.spec)
            .filter(|s| s.kind == "content")
            .min_by_key(|s| load(s.agent_id))
            .or_else(|| candidates.first().map(|c| c.spec));
        if let Some(spec) = generalist {
            out.push(Delegation {
                agent_id: spec.agent_id,
                description: describe(spec, task),
                matched: vec![],
            });
        }
    }
    out
}

/// Another agent for work that an agent of type `kind` with `capabilities` could not do: the
/// least-loaded agent of the same type, else the one sharing the most capabilities; never one
/// in `tried`.
pub fn alternative(
    kind: &str,
    capabilities: &[String],
    specialists: &[&AgentSpec],
    tried: &HashSet<AgentId>,
    load: impl Fn(AgentId) -> usize,
) -> Option<AgentId> {
    let fresh = || specialists.iter().filter(|s| !tried.contains(&s.agent_id));
    if let Some(same) = fresh()
        .filter(|s| s.kind == kind)
        .min_by_key(|s| load(s.agent_id))
    {
        return Some(same.agent_id);
    }
    let caps: HashSet<&String> = capabilities.iter().collect();
    fresh()
        .map(|s| {
            let overlap = s.capabilities.iter().filter(|c| caps.contains(c)).count();
            (s, overlap)
        })
        .filter(|(_, overlap)| *overlap > 0)
        .max_by(|a, b| {
            a.1.cmp(&b.1)
                .then(load(b.0.agent_id).cmp(&load(a.0.agent_id)))
        })
        .map(|(s, _)| s.agent_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AgentParameters, default_agents};

    fn plan(
        task: &str,
        context: &Value,
        specialists: &[&AgentSpec],
        load: impl Fn(AgentId) -> usize,
    ) -> Vec<Delegation> {
        let vocabularies: Vec<Vocabulary> = specialists.iter().map(|s| Vocabulary::of(s)).collect();
        let candidates: Vec<Candidate> = specialists
            .iter()
            .zip(&vocabularies)
            .map(|(spec, vocabulary)| Candidate { spec, vocabulary })
            .collect();
        super::plan(task, context, &candidates, load)
    }

    fn kinds(plan: &[Delegation], agents: &[AgentSpec]) -> Vec<String> {
        plan.iter()
            .map(|d| {
                agents
                    .iter()
                    .find(|a| a.agent_id == d.agent_id)
                    .map(|a| a.kind.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    #[test]
    fn the_seed_task_goes_to_all_four_specialists() {
        let agents = default_agents();
        let specialists: Vec<&AgentSpec> = agents.iter().filter(|a| !a.is_coordinator()).collect();
        let context = serde_json::json!({
            "product_name": "TechPro X1",
            "target_audience": "Software developers and IT professionals",
            "key_features": ["AI code completion"]
        });
        let plan = plan(
            "Create an email campaign for a new product launch targeting tech professionals",
            &context,
            &specialists,
            |_| 0,
        );
        assert_eq!(
            kinds(&plan, &agents),
            ["content", "design", "analytics", "personalization"]
        );
        assert!(plan[3].matched.contains(&"target".to_owned()));
    }

    #[test]
    fn a_narrow_task_goes_only_to_the_specialists_that_fit() {
        let agents = default_agents();
        let specialists: Vec<&AgentSpec> = agents.iter().filter(|a| !a.is_coordinator()).collect();
        let plan = plan(
            "Analyze last quarter's open rates and report the KPIs",
            &Value::Null,
            &specialists,
            |_| 0,
        );
        assert_eq!(kinds(&plan, &agents), ["analytics"]);
    }

    #[test]
    fn a_custom_agent_is_matched_by_its_capabilities() {
        let mut agents = default_agents();
        agents.push(AgentSpec {
            agent_id: AgentId::new(),
            name: "SEO Specialist".into(),
            kind: "seo".into(),
            model: "claude-3-7-sonnet".into(),
            description: "Specializes in search engine optimization".into(),
            parameters: AgentParameters::for_kind("seo"),
            capabilities: vec![
                "keyword_analysis".into(),
                "seo_optimization".into(),
                "content_recommendations".into(),
            ],
        });
        let specialists: Vec<&AgentSpec> = agents.iter().filter(|a| !a.is_coordinator()).collect();
        let plan = plan(
            "Improve search keywords for our pricing page",
            &Value::Null,
            &specialists,
            |_| 0,
        );
        let k = kinds(&plan, &agents);
        assert!(k.contains(&"seo".to_owned()), "{k:?}");
        assert!(
            plan.iter()
                .any(|d| d.description.contains("keyword_analysis"))
        );
    }

    #[test]
    fn unmatched_work_goes_to_the_generalist_and_pools_pick_the_least_loaded() {
        let mut agents = default_agents();
        let mut second = agents[1].clone();
        second.agent_id = AgentId::new();
        let busy = agents[1].agent_id;
        agents.push(second.clone());
        let specialists: Vec<&AgentSpec> = agents.iter().filter(|a| !a.is_coordinator()).collect();
        let plan = plan("zzz qqq", &Value::Null, &specialists, |id| {
            if id == busy { 10 } else { 0 }
        });
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].agent_id, second.agent_id);
    }

    #[test]
    fn alternatives_prefer_the_same_type_and_skip_tried_agents() {
        let mut agents = default_agents();
        let mut twin = agents[1].clone();
        twin.agent_id = AgentId::new();
        agents.push(twin.clone());
        let specialists: Vec<&AgentSpec> = agents.iter().filter(|a| !a.is_coordinator()).collect();
        let mut tried = HashSet::from([agents[1].agent_id]);
        let failed = &agents[1];
        assert_eq!(
            alternative(
                &failed.kind,
                &failed.capabilities,
                &specialists,
                &tried,
                |_| 0
            ),
            Some(twin.agent_id)
        );
        tried.insert(twin.agent_id);
        assert_eq!(
            alternative(
                &failed.kind,
                &failed.capabilities,
                &specialists,
                &tried,
                |_| 0
            ),
            None
        );
    }

    #[test]
    fn stemming_folds_plurals_and_gerunds() {
        assert_eq!(
            stems("Targeting professionals' campaigns"),
            ["target", "professional", "campaign"]
        );
        assert_eq!(stem("analyses"), "analyse");
        assert_eq!(stem("categories"), "category");
    }
}
