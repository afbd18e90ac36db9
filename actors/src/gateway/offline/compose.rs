//! The text generator of aimesh's built-in offline model: a deterministic stand-in for an LLM,
//! used when no API keys are configured.
//!
//! [`compose`] writes believable, task-specific Markdown for each agent type (content, design,
//! analytics, personalization, the coordinator's synthesis, and custom agents section by
//! capability) from the task text and its JSON context. [`freeform`] answers prompts that are not
//! in aimesh's structured format, and [`summary_of`] cuts a synthesized result down to its
//! summary.
//!
//! Same input, same bytes: no randomness, clocks or hash-map order reach the output. Every input
//! is clipped before use, so output stays under 16 KB whatever comes in, and nothing panics.
//!
//! # Layout
//! - `text`: clipping, slugs, titles, keywords, hashing.
//! - `lexicon`: word lists and the feature lexicon (benefits, icons).
//! - `phrases`: reading the task text (subject, audience, segments).
//! - `facts`: what a brief says (product, audience, features, other context) and shared wording.
//! - `email`: the content and design specialists.
//! - `audience`: the analytics and personalization specialists.
//! - `custom`: custom agents, one section per capability.
//! - `general`: the generic answer, the coordinator's plan, short capability checklists.
//! - `synth`: the coordinator's synthesis of contributions.

mod audience;
mod custom;
mod email;
mod facts;
mod general;
mod lexicon;
mod phrases;
mod synth;
mod text;

use std::fmt::Write as _;

use self::facts::Facts;
use self::text::{cap_first, clean, keywords, memory_line, prefix, title_case};

/// What the offline model understood from a prompt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Brief {
    /// The agent type: "content", "design", "analytics", "personalization", "coordinator",
    /// or any custom type such as "seo" (lower-case, free text).
    pub role: String,
    /// The agent's display name, e.g. "Content Specialist".
    pub agent_name: String,
    /// The agent's capabilities, e.g. ["keyword_analysis", "seo_optimization"].
    pub capabilities: Vec<String>,
    /// The task text as the user submitted it.
    pub task: String,
    /// The task's context: usually a JSON object, may be Null or any JSON value.
    pub context: serde_json::Value,
    /// What this agent was asked to do (the subtask description written by the coordinator).
    pub assignment: String,
    /// Relevant shared-memory lines, e.g. "[fact] Brand voice is friendly and direct".
    pub memory: Vec<String>,
    /// Only for synthesis (role "coordinator"): the specialists' outputs to combine.
    pub contributions: Vec<Contribution>,
}

/// One specialist's output, given to the coordinator for synthesis.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contribution {
    /// The specialist's display name, e.g. "Design Specialist".
    pub agent_name: String,
    /// The specialist's agent type, e.g. "design".
    pub role: String,
    /// What the specialist wrote.
    pub output: String,
}

/// Hard ceiling on any output, in bytes (outputs are designed to stay well below it).
const MAX_OUTPUT: usize = 15 * 1024;

/// Writes the output for a brief: a specialist's subtask output, or, for role "coordinator"
/// with contributions, the synthesized final result.
#[must_use]
pub fn compose(brief: &Brief) -> String {
    let facts = Facts::read(brief);
    let role = clean(&brief.role, 60).to_lowercase();
    let agent = match clean(&brief.agent_name, 80) {
        name if name.is_empty() => default_agent_name(&role),
        name => name,
    };
    let mut out = String::with_capacity(4096);
    if role == "coordinator" && !brief.contributions.is_empty() {
        synth::synthesize(
            &facts,
            &agent,
            &brief.contributions,
            &brief.memory,
            &mut out,
        );
        return bounded(out);
    }
    let s = facts.subject_cap();
    let title = match role.as_str() {
        "content" => format!("Email draft — {s}"),
        "design" => format!("Email design spec — {s}"),
        "analytics" => format!("Measurement plan — {s}"),
        "personalization" | "personalisation" => format!("Personalization plan — {s}"),
        "coordinator" => format!("Plan — {s}"),
        _ if !brief.capabilities.is_empty() => {
            let what = if role.is_empty() {
                agent.clone()
            } else {
                title_case(&role)
            };
            format!("{what} recommendations — {s}")
        }
        _ => format!("Response — {s}"),
    };
    let _ = writeln!(out, "## {title}\n");
    match facts.assignment.as_str() {
        "" => {
            let _ = writeln!(out, "_By {agent}._\n");
        }
        a => {
            let _ = writeln!(out, "_By {agent}. Assignment: {a}_\n");
        }
    }
    memory_line(&mut out, &brief.memory);
    match role.as_str() {
        "content" => email::content(&facts, &mut out),
        "design" => email::design(&facts, &mut out),
        "analytics" => audience::analytics(&facts, &mut out),
        "personalization" | "personalisation" => audience::personalization(&facts, &mut out),
        "coordinator" => general::plan(&facts, &mut out),
        _ if !brief.capabilities.is_empty() => {
            custom::specialist(&facts, &brief.capabilities, &mut out);
            general::other_context(&facts, &mut out);
        }
        _ => general::generic(&facts, &mut out),
    }
    bounded(out)
}

/// The display name for an agent type without one: "content" → "Content Specialist".
fn default_agent_name(role: &str) -> String {
    match clean(role, 60).to_lowercase().as_str() {
        "" => "Assistant".to_owned(),
        "coordinator" => "Coordinator".to_owned(),
        r => format!("{} Specialist", title_case(r)),
    }
}

/// `out` ending in one newline, and cut to [`MAX_OUTPUT`] at a line boundary should any input
/// slip past its clipping.
fn bounded(mut out: String) -> String {
    if out.len() > MAX_OUTPUT {
        let head = prefix(&out, MAX_OUTPUT - 64);
        let end = head.rfind('\n').unwrap_or(head.len());
        out.truncate(end);
        out.push_str("\n\n_… output shortened._");
    }
    let end = out.trim_end().len();
    out.truncate(end);
    out.push('\n');
    out
}

/// A reply to a free-form chat prompt that is not in aimesh's structured format (someone pointed
/// an OpenAI client at the offline model). `system` may be empty.
#[must_use]
pub fn freeform(system: &str, user: &str) -> String {
    let quote = clean(user, 120);
    let mut kws = keywords([user], 3);
    if kws.len() < 3 {
        for k in keywords([system], 6) {
            if kws.len() < 3 && !kws.iter().any(|x| x.word == k.word) {
                kws.push(k);
            }
        }
    }
    let mut words: Vec<String> = kws.into_iter().map(|k| k.word).collect();
    for fallback in ["goal", "steps", "constraints"] {
        if words.len() < 3 && !words.iter().any(|w| w == fallback) {
            words.push(fallback.to_owned());
        }
    }
    let mut out = String::with_capacity(1024);
    if quote.is_empty() {
        out.push_str("Your message was empty, so here is a structured way to start:\n\n");
    } else if quote.ends_with('?') {
        let _ = writeln!(
            out,
            "Good question. Here is a structured way to approach it:\n\n> {quote}\n"
        );
    } else {
        let _ = writeln!(
            out,
            "Here is a structured take on your request:\n\n> {quote}\n"
        );
    }
    let templates = [
        "Start from what `{}` has to achieve: the goal, who it is for, and how you will know it worked.",
        "Break the work on `{}` into two or three concrete steps; do first the one that unblocks the others.",
        "Check the plan for `{}` against your constraints (time, budget, quality) before committing.",
    ];
    for (i, (word, template)) in words.iter().zip(templates).enumerate() {
        let _ = writeln!(
            out,
            "{}. **{}** — {}",
            i + 1,
            cap_first(word),
            template.replace("{}", word)
        );
    }
    let role = clean(system, 80);
    let role = role.trim_end_matches(['.', '!']);
    if !role.is_empty() {
        let _ = writeln!(out, "\nFollowing your system instructions (\"{role}\").");
    }
    out.push_str(
        "\n_This reply was produced by aimesh's offline model (no API keys configured). \
         Configure a provider key for model-written answers._\n",
    );
    out
}

/// The first sentence/paragraph-level summary of a synthesized result, at most `max_chars`
/// characters (cut on a char boundary, ending with "…" if cut). Used for `result.summary`.
#[must_use]
pub fn summary_of(output: &str, max_chars: usize) -> String {
    let paragraph = first_paragraph(prefix(output, 32 * 1024));
    let text = clean(&strip_markup(&paragraph), 4096);
    if text.chars().count() <= max_chars {
        return text;
    }
    // A whole first sentence that fits is a summary in its own right.
    let sentence = first_sentence(&text);
    if sentence.len() >= 24 && sentence.chars().count() <= max_chars {
        return sentence.to_owned();
    }
    if max_chars == 0 {
        return String::new();
    }
    let mut cut: String = text.chars().take(max_chars - 1).collect();
    if let Some(space) = cut.rfind(' ')
        && cut.len() - space <= 20
        && space >= cut.len() / 2
    {
        cut.truncate(space);
    }
    let trimmed = cut.trim_end_matches([' ', ',', ';', ':', '-', '—']).len();
    cut.truncate(trimmed);
    cut.push('…');
    cut
}

/// The first sentence of `text`: up to a ". ", "! " or "? " followed by a capital or a quote.
fn first_sentence(text: &str) -> &str {
    let bytes = text.as_bytes();
    for (i, pair) in bytes.windows(3).enumerate() {
        if matches!(pair[0], b'.' | b'!' | b'?')
            && pair[1] == b' '
            && (pair[2].is_ascii_uppercase() || pair[2] == b'"')
        {
            return text.get(..=i).unwrap_or(text);
        }
    }
    text
}

/// The first prose paragraph: not a heading, table, list, fence, rule or italic byline. Falls
/// back to the first non-empty line.
fn first_paragraph(output: &str) -> String {
    let mut paragraph = String::new();
    let mut fence = false;
    let mut fallback: Option<&str> = None;
    for line in output.lines() {
        let l = line.trim();
        if l.starts_with("```") {
            fence = !fence;
            continue;
        }
        let prose = !fence && is_prose(l);
        if prose || (l.starts_with("**") && !l.ends_with("**") && !fence) {
            if !paragraph.is_empty() {
                paragraph.push(' ');
            }
            paragraph.push_str(l);
        } else if !paragraph.is_empty() {
            break;
        } else if fallback.is_none() && !l.is_empty() && !fence {
            fallback = Some(l);
        }
        if paragraph.len() > 8192 {
            break;
        }
    }
    if paragraph.is_empty() {
        paragraph = fallback
            .unwrap_or_default()
            .trim_start_matches(['#', '-', '*', '>', '+', '|', ' '])
            .to_owned();
    }
    paragraph
}

/// Whether a trimmed line is prose: not empty, a heading, table, list, quote or italic byline.
fn is_prose(l: &str) -> bool {
    let byline = l.starts_with('_') && l.ends_with('_');
    !(l.is_empty()
        || byline
        || l.starts_with(['#', '|', '-', '*', '>', '+'])
        || l.starts_with(|c: char| c.is_ascii_digit()))
}

/// `s` without Markdown emphasis, code and link markup.
fn strip_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        let width = c.len_utf8();
        if c == '*' || c == '`' {
            rest = rest.get(width..).unwrap_or_default();
            continue;
        }
        if c == ']'
            && let Some(after) = rest.strip_prefix("](")
            && let Some(close) = after.find(')')
        {
            rest = after.get(close + 1..).unwrap_or_default();
            continue;
        }
        if c != '[' {
            out.push(c);
        }
        rest = rest.get(width..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    const SEED_TASK: &str =
        "Create an email campaign for a new product launch targeting tech professionals";
    const FEATURES: [&str; 3] = [
        "AI code completion",
        "Automated testing",
        "Performance optimization",
    ];
    const ROLES: [&str; 7] = [
        "content",
        "design",
        "analytics",
        "personalization",
        "coordinator",
        "seo",
        "legal",
    ];

    fn seed_context() -> Value {
        json!({
            "product_name": "TechPro X1",
            "product_description": "Advanced AI-powered development tool",
            "target_audience": "Software developers and IT professionals",
            "key_features": FEATURES,
        })
    }

    fn seed(role: &str) -> Brief {
        Brief {
            role: role.into(),
            agent_name: default_agent_name(role),
            task: SEED_TASK.into(),
            context: seed_context(),
            ..Brief::default()
        }
    }

    fn seo() -> Brief {
        Brief {
            agent_name: "SEO Specialist".into(),
            capabilities: vec![
                "keyword_analysis".into(),
                "seo_optimization".into(),
                "content_recommendations".into(),
            ],
            ..seed("seo")
        }
    }

    fn synthesis() -> Brief {
        let contributions = ["content", "design", "analytics", "personalization"]
            .iter()
            .map(|role| {
                let brief = seed(role);
                Contribution {
                    output: compose(&brief),
                    agent_name: brief.agent_name,
                    role: brief.role,
                }
            })
            .collect();
        Brief {
            contributions,
            ..seed("coordinator")
        }
    }

    /// Count of "#RRGGBB" colours in `s`.
    fn hex_colours(s: &str) -> usize {
        s.match_indices('#')
            .filter(|(i, _)| {
                let hex = s.get(i + 1..i + 7).unwrap_or_default();
                hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit())
            })
            .count()
    }

    #[test]
    fn content_draft_names_the_product_and_every_key_feature() {
        let out = compose(&seed("content"));
        assert!(out.starts_with("## Email draft — TechPro X1\n"), "{out}");
        for feature in FEATURES {
            assert!(
                out.contains(&format!("**{feature}**")),
                "missing {feature}: {out}"
            );
        }
        assert!(out.contains("### Subject line options") && out.contains("**Preheader:**"));
        assert_eq!(out.matches(" chars)_").count(), 3, "three subject lines");
        assert!(
            out.contains("software developers and IT professionals"),
            "greeting aimed at the audience"
        );
        assert!(out.contains("TechPro X1 is an advanced AI-powered development tool."));
        assert!(out.contains("Start your free trial") && out.contains("### Notes on tone"));
    }

    #[test]
    fn analytics_plan_has_targets_and_utm_tags_from_the_product_slug() {
        let out = compose(&seed("analytics"));
        let lower = out.to_lowercase();
        assert!(lower.contains("open rate") && lower.contains("click-through rate"));
        assert!(lower.contains("conversion rate") && lower.contains("unsubscribe rate"));
        assert!(out.contains("utm_campaign=techpro-x1-launch"), "{out}");
        assert!(out.contains("`feature-automated-testing`"));
        assert!(out.contains("### A/B test plan") && out.contains("### Reporting cadence"));
        assert!(out.contains("≥ 24%"), "a concrete open-rate target");
    }

    #[test]
    fn personalization_has_a_segment_per_audience_part() {
        let out = compose(&seed("personalization"));
        assert!(out.contains("**1. Software developers**"), "{out}");
        assert!(out.contains("**2. IT professionals**"), "{out}");
        assert!(!out.contains("**3."), "exactly two segments");
        assert!(out.contains("Lead feature: **AI code completion**"));
        assert!(out.contains("### Merge fields") && out.contains("### Send-time optimization"));
    }

    #[test]
    fn design_spec_has_a_palette_and_a_cell_per_feature() {
        let out = compose(&seed("design"));
        assert!(hex_colours(&out) >= 5, "{out}");
        for feature in FEATURES {
            assert!(
                out.contains(&format!("| {feature} |")),
                "grid cell for {feature}"
            );
        }
        for section in ["Hero", "Features grid", "CTA band", "Footer"] {
            assert!(out.contains(&format!("**{section}**")), "section {section}");
        }
        assert!(out.contains("### Accessibility") && out.contains("alt="));
    }

    #[test]
    fn synthesis_has_a_summary_a_section_per_contributor_and_next_steps() {
        let brief = synthesis();
        let out = compose(&brief);
        assert!(out.starts_with("# Email campaign — TechPro X1\n"), "{out}");
        for c in &brief.contributions {
            assert!(
                out.contains(&format!("\n## {}\n", c.agent_name)),
                "section for {}",
                c.agent_name
            );
        }
        assert!(out.contains("## Next steps"));
        assert!(
            out.contains("utm_campaign=techpro-x1-launch"),
            "analytics content carried over"
        );
        assert!(
            out.contains("**AI code completion**"),
            "content carried over"
        );
        assert!(out.len() < 12 * 1024, "{} bytes", out.len());
        let summary = summary_of(&out, 200);
        assert!(
            summary.starts_with("This email campaign for TechPro X1"),
            "{summary}"
        );
        assert!(summary.chars().count() <= 200);
    }

    #[test]
    fn synthesis_of_many_huge_contributions_stays_bounded() {
        let big = format!(
            "## Title\n\n{}",
            "A long line of findings. ".repeat(40).repeat(2000)
        );
        let contributions = (0..30)
            .map(|i| Contribution {
                agent_name: format!("Agent {i}"),
                role: "custom".into(),
                output: big.clone(),
            })
            .collect();
        let out = compose(&Brief {
            contributions,
            ..seed("coordinator")
        });
        assert!(out.len() < 12 * 1024, "{} bytes", out.len());
        assert!(
            out.contains("## Agent 0") && out.contains("## Agent 7") && !out.contains("## Agent 8")
        );
        assert!(out.contains("22 more contribution(s)"));
    }

    #[test]
    fn coordinator_without_contributions_writes_a_plan() {
        let out = compose(&seed("coordinator"));
        assert!(out.starts_with("## Plan — TechPro X1"), "{out}");
        assert!(out.contains("**Content Specialist**") && out.contains("**Analytics Specialist**"));
    }

    #[test]
    fn custom_seo_role_writes_a_section_per_capability_with_task_keywords() {
        let out = compose(&seo());
        assert!(
            out.starts_with("## SEO recommendations — TechPro X1"),
            "{out}"
        );
        let sections = [
            "### Keyword Analysis",
            "### SEO Optimization",
            "### Content Recommendations",
        ];
        let positions: Vec<usize> = sections.iter().filter_map(|s| out.find(s)).collect();
        assert_eq!(positions.len(), 3, "{out}");
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "capability order kept"
        );
        let keywords = out.get(positions[0]..positions[1]).unwrap_or_default();
        for word in ["campaign", "email", "launch", "professionals"] {
            assert!(
                keywords.contains(&format!("| {word} |")),
                "keyword {word} from the task: {keywords}"
            );
        }
        assert!(out.contains("`/techpro-x1`"));
    }

    #[test]
    fn capabilities_of_the_same_kind_get_different_sections() {
        let brief = Brief {
            role: "social_media".into(),
            capabilities: vec![
                "post_scheduling".into(),
                "community_management".into(),
                "post_scheduling".into(),
            ],
            task: "Plan Instagram posts for the autumn coffee menu".into(),
            ..Brief::default()
        };
        let out = compose(&brief);
        let (first, second) = out
            .split_once("### Community Management")
            .unwrap_or_default();
        assert!(
            first.contains("### Post Scheduling") && first.contains("`autumn`"),
            "{out}"
        );
        assert!(
            !second.contains("Post 1:") && second.contains("community management"),
            "{out}"
        );
        assert_eq!(
            out.matches("### Post Scheduling").count(),
            1,
            "duplicate capability listed once"
        );
    }

    #[test]
    fn unknown_role_without_capabilities_answers_generically() {
        let out = compose(&Brief {
            agent_name: String::new(),
            ..seed("legal")
        });
        assert!(
            out.starts_with("## Response — TechPro X1") && out.contains("_By Legal Specialist._"),
            "{out}"
        );
        assert!(out.contains("### Key points") && out.contains("### Recommendations"));
    }

    #[test]
    fn every_output_starts_with_a_heading_and_ends_with_one_newline() {
        for role in ROLES {
            let out = compose(&seed(role));
            assert!(out.starts_with("## "), "{role}: {out}");
            assert!(out.ends_with('\n') && !out.ends_with("\n\n"), "{role}");
        }
    }

    #[test]
    fn outputs_are_deterministic() {
        let mut briefs: Vec<Brief> = ROLES.iter().map(|r| seed(r)).collect();
        briefs.push(seo());
        briefs.push(synthesis());
        for brief in &briefs {
            assert_eq!(compose(brief), compose(&brief.clone()));
        }
        assert_eq!(
            freeform("sys", "Plan a launch"),
            freeform("sys", "Plan a launch")
        );
    }

    #[test]
    fn missing_or_wrong_typed_context_never_prints_null_or_braces() {
        let contexts = [
            Value::Null,
            json!({}),
            json!([]),
            json!("launch notes"),
            json!(42),
            json!({"product_name": null, "key_features": {"a": 1}, "target_audience": 5, "product_description": []}),
            json!({"product_name": "", "key_features": [null, {}, []], "extra": {"deep": null}}),
        ];
        for context in contexts {
            for role in ROLES {
                let brief = Brief {
                    context: context.clone(),
                    capabilities: vec!["keyword_analysis".into()],
                    ..seed(role)
                };
                let out = compose(&brief);
                assert!(!out.is_empty());
                for bad in ["null", "{}", "[]", "Object", "Some(", "None", "\"\"."] {
                    assert!(
                        !out.contains(bad),
                        "{role} with {context}: found {bad}\n{out}"
                    );
                }
            }
        }
    }

    #[test]
    fn subject_is_derived_from_the_task_without_a_product_name() {
        let out = compose(&Brief {
            context: Value::Null,
            ..seed("content")
        });
        assert!(out.starts_with("## Email draft — The new product"), "{out}");
        assert!(out.contains("We built the new product for tech professionals"));
        let out = compose(&Brief {
            context: Value::Null,
            ..seed("analytics")
        });
        assert!(out.contains("utm_campaign=new-product-launch"), "{out}");
    }

    #[test]
    fn memory_and_other_context_are_used() {
        let brief = Brief {
            memory: vec![
                "[fact] Brand voice is friendly and direct".into(),
                "[decision] Launch on May 5".into(),
            ],
            context: json!({"product_name": "TechPro X1", "launch_date": "2025-05-05"}),
            ..seed("content")
        };
        let out = compose(&brief);
        assert!(
            out.contains("**Building on shared memory:**")
                && out.contains("*decision:* Launch on May 5")
        );
        assert!(
            out.contains("Shared memory sets the voice (\"Brand voice is friendly and direct\")"),
            "{out}"
        );
        assert!(out.contains("2025-05-05"), "other context used");
        let out = compose(&Brief {
            context: brief.context,
            ..seo()
        });
        assert!(out.contains("### Other context") && out.contains("**Launch date:** 2025-05-05"));
    }

    #[test]
    fn huge_inputs_are_clipped_and_output_stays_bounded() {
        let huge = "x".repeat(100_000);
        let features: Vec<String> = (0..100).map(|i| format!("feature {i} {huge}")).collect();
        let mut context = serde_json::Map::new();
        for key in ["product_name", "product_description", "target_audience"] {
            context.insert(
                key.into(),
                Value::String(format!("{huge}, {huge} and {huge}")),
            );
        }
        context.insert("key_features".into(), json!(features));
        for i in 0..100 {
            context.insert(format!("key_{i}_{huge}"), Value::String(huge.clone()));
        }
        let capabilities: Vec<String> = (0..100).map(|i| format!("cap_{i}_{huge}")).collect();
        let memory = vec![huge.clone(); 100];
        for role in ROLES {
            let brief = Brief {
                role: role.into(),
                agent_name: huge.clone(),
                capabilities: capabilities.clone(),
                task: huge.clone(),
                context: Value::Object(context.clone()),
                assignment: huge.clone(),
                memory: memory.clone(),
                contributions: Vec::new(),
            };
            let out = compose(&brief);
            assert!(out.len() < 16 * 1024, "{role}: {} bytes", out.len());
            assert!(
                !out.contains(&"x".repeat(301)),
                "{role}: echoed more than 300 chars"
            );
        }
    }

    #[test]
    fn freeform_quotes_the_request_and_gives_three_points() {
        let out = freeform(
            "You are a helpful assistant.",
            "How do I announce a product launch to developers?",
        );
        assert!(
            out.contains("> How do I announce a product launch to developers?"),
            "{out}"
        );
        for n in ["1. **", "2. **", "3. **"] {
            assert!(out.contains(n), "{out}");
        }
        assert!(
            out.contains("**Product**") && out.contains("**Launch**"),
            "{out}"
        );
        assert!(out.contains("aimesh's offline model (no API keys configured)"));
        let empty = freeform("", "");
        assert!(empty.contains("3. **") && !empty.contains("> "), "{empty}");
        let long = freeform("", &"word ".repeat(10_000));
        assert!(long.len() < 2048);
    }

    #[test]
    fn summary_of_takes_the_first_paragraph_and_cuts_on_char_boundaries() {
        let doc =
            "# Title\n\n_Byline._\n\nFirst **bold** paragraph `code`\ncontinues here.\n\nSecond.";
        assert_eq!(
            summary_of(doc, 200),
            "First bold paragraph code continues here."
        );
        let cut = summary_of(doc, 12);
        assert!(cut.ends_with('…') && cut.chars().count() <= 12, "{cut}");
        let two = "The first sentence is long enough. Then a much longer second sentence follows.";
        assert_eq!(summary_of(two, 40), "The first sentence is long enough.");
        assert_eq!(summary_of("ééééééééé", 5), "éééé…");
        assert_eq!(summary_of("anything", 0), "");
        assert_eq!(summary_of("", 10), "");
        assert_eq!(summary_of("## Only a heading", 50), "Only a heading");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\PC{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            "\\PC{0,12}",
                            Just("key_features".to_owned()),
                            Just("product_name".to_owned()),
                            Just("target_audience".to_owned())
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn role() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(ROLES.to_vec()).prop_map(str::to_owned),
            "\\PC{0,16}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_brief_composes_without_panicking_within_bounds(
            role in role(),
            agent_name in "\\PC{0,30}",
            capabilities in prop::collection::vec("\\PC{0,20}", 0..5),
            task in "\\PC{0,300}",
            context in json_value(),
            assignment in "\\PC{0,60}",
            memory in prop::collection::vec("\\PC{0,40}", 0..4),
            outputs in prop::collection::vec(("\\PC{0,20}", "\\PC{0,400}"), 0..5),
        ) {
            let contributions = outputs
                .into_iter()
                .map(|(agent_name, output)| Contribution { agent_name, role: "content".into(), output })
                .collect();
            let brief = Brief { role, agent_name, capabilities, task, context, assignment, memory, contributions };
            let out = compose(&brief);
            prop_assert!(!out.trim().is_empty());
            prop_assert!(out.len() < 16 * 1024);
            prop_assert_eq!(&out, &compose(&brief));
        }

        #[test]
        fn freeform_never_panics_and_stays_short(system in "\\PC{0,200}", user in "\\PC{0,2000}") {
            let out = freeform(&system, &user);
            prop_assert!(!out.is_empty() && out.len() < 4096);
        }

        #[test]
        fn summary_of_respects_max_chars(output in "\\PC{0,600}", max in 0usize..120) {
            let summary = summary_of(&output, max);
            prop_assert!(summary.chars().count() <= max);
        }
    }
}
