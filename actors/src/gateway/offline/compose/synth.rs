//! The coordinator's synthesis: one final deliverable built from the specialists' outputs, with
//! an executive summary first (what `summary_of` reads) and next steps last.

use std::fmt::Write as _;

use super::facts::Facts;
use super::text::{clean, has_stem, join_and, lower_first, prefix, title_case};
use super::{Contribution, default_agent_name};

/// Target size of the whole synthesis, in bytes.
const BUDGET: usize = 11_500;
/// Most contributions given their own section.
const MAX_SECTIONS: usize = 8;
/// Longest line copied from a contribution, in bytes.
const MAX_LINE: usize = 400;

/// What kind of deliverable the task asks for.
fn deliverable(task: &str) -> &'static str {
    let lower = prefix(task, 2000).to_ascii_lowercase();
    let kinds = [
        ("email campaign", "Email campaign"),
        ("newsletter", "Newsletter"),
        ("landing page", "Landing page"),
        ("blog post", "Blog post"),
        ("social media", "Social media plan"),
        ("campaign", "Campaign plan"),
        ("email", "Email"),
        ("report", "Report"),
        ("strategy", "Strategy"),
        ("plan", "Plan"),
    ];
    kinds
        .iter()
        .find(|(k, _)| lower.contains(k))
        .map_or("Final result", |(_, v)| v)
}

/// What a role contributes, as a phrase.
fn role_phrase(role: &str) -> String {
    match role.trim().to_ascii_lowercase().as_str() {
        "content" => "the email copy".to_owned(),
        "design" => "the layout and visual spec".to_owned(),
        "analytics" => "the measurement plan".to_owned(),
        "personalization" => "the segmentation plan".to_owned(),
        "coordinator" => "coordination notes".to_owned(),
        "" => "its findings".to_owned(),
        other => format!("{} recommendations", title_case(other)),
    }
}

/// The next step that follows from a role's contribution.
fn next_step(role: &str, agent: &str) -> String {
    match role.trim().to_ascii_lowercase().as_str() {
        "content" => "Pick a subject line (the A/B candidates are in the analytics plan) and approve the copy.".to_owned(),
        "design" => "Build the template from the design spec; test it in Gmail, Apple Mail, Outlook and dark mode.".to_owned(),
        "analytics" => "Create the UTM-tagged links and conversion tracking, then set up the A/B tests.".to_owned(),
        "personalization" => "Create the segments and dynamic-content rules in the email platform.".to_owned(),
        _ => format!("Review and apply the {agent}'s recommendations."),
    }
}

/// The synthesized final result.
pub(super) fn synthesize(
    f: &Facts,
    agent: &str,
    contributions: &[Contribution],
    memory: &[String],
    out: &mut String,
) {
    let kind = deliverable(&f.task);
    let shown: Vec<(String, &Contribution)> = contributions
        .iter()
        .take(MAX_SECTIONS)
        .map(|c| {
            let name = clean(&c.agent_name, 80);
            (
                if name.is_empty() {
                    default_agent_name(&c.role)
                } else {
                    name
                },
                c,
            )
        })
        .collect();
    let _ = writeln!(out, "# {kind} — {}\n", f.subject_cap());
    // The executive summary: the first paragraph, read by `summary_of`; its first sentence
    // stands on its own.
    let _ = write!(out, "This {} for {}", lower_first(kind), f.subject);
    if let Some(d) = f.description_phrase().filter(|d| d.chars().count() <= 80)
        && f.product.is_some()
    {
        let _ = write!(out, ", {d},");
    }
    if f.audience.is_some() {
        let _ = write!(out, " is aimed at {}", f.audience_phrase());
    } else {
        let _ = write!(out, " is ready for review");
    }
    match shown.as_slice() {
        [(name, _)] => {
            let _ = write!(out, " and builds on the work of {name}.");
        }
        many => {
            let _ = write!(out, " and combines the work of {} specialists.", many.len());
        }
    }
    let parts: Vec<String> = shown
        .iter()
        .map(|(name, c)| format!("{} from {name}", role_phrase(&c.role)))
        .collect();
    if f.task.is_empty() {
        let _ = write!(out, " It brings together");
    } else {
        let _ = write!(
            out,
            " It answers the request \"{}\" with",
            clean(&f.task, 160)
        );
    }
    let _ = writeln!(out, " {}, compiled by {agent}.\n", join_and(&parts));
    if contributions.len() > shown.len() {
        let rest: Vec<String> = contributions
            .iter()
            .skip(MAX_SECTIONS)
            .take(20)
            .map(|c| clean(&c.agent_name, 60))
            .filter(|n| !n.is_empty())
            .collect();
        let _ = writeln!(
            out,
            "_{} more contribution(s) are in the subtask results{}._\n",
            contributions.len() - shown.len(),
            if rest.is_empty() {
                String::new()
            } else {
                format!(": {}", join_and(&rest))
            }
        );
    }
    super::text::memory_line(out, memory);
    let reserve = 900;
    let per = BUDGET.saturating_sub(out.len() + reserve) / shown.len().max(1);
    for (name, c) in &shown {
        let _ = writeln!(out, "## {name}\n");
        section(c, per.max(300), out);
        out.push('\n');
    }
    let _ = writeln!(out, "## Next steps");
    let mut steps: Vec<String> = Vec::new();
    for (name, c) in &shown {
        let step = next_step(&c.role, name);
        if !steps.contains(&step) {
            steps.push(step);
        }
    }
    let email = has_stem(&f.task, &["email", "campaign", "newsletter"]);
    steps.push(if email {
        "Send a test to internal seed accounts, then schedule the send.".to_owned()
    } else {
        "Share the combined draft with stakeholders and agree on a go/no-go date.".to_owned()
    });
    steps.push("Review results against the targets after the first week and record what was learned in shared memory.".to_owned());
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(out, "{}. {step}", i + 1);
    }
}

/// Copies a contribution within `budget` bytes: its first heading becomes an italic subtitle,
/// its headings are shifted to sit under this section, and a cut closes any open code fence.
fn section(c: &Contribution, budget: usize, out: &mut String) {
    let body = prefix(&c.output, 64 * 1024);
    let mut lines = body
        .lines()
        .map(str::trim_end)
        .skip_while(|l| l.trim().is_empty())
        .peekable();
    if let Some(first) = lines.peek()
        && first.starts_with('#')
    {
        let title = clean(first.trim_start_matches('#'), 120);
        if !title.is_empty() {
            let _ = writeln!(out, "_{title}_\n");
        }
        lines.next();
    }
    let rest: Vec<&str> = lines
        .skip_while(|l| l.trim().is_empty() || is_byline(l))
        .take(2000)
        .collect();
    if rest.is_empty() {
        let _ = writeln!(out, "_No output was returned._");
        return;
    }
    let shift = heading_shift(&rest);
    let start = out.len();
    let mut fence = false;
    let mut blank = false;
    for (i, line) in rest.iter().enumerate() {
        let line = prefix(line, MAX_LINE);
        if out.len() - start + line.len() + 8 > budget {
            if fence {
                out.push_str("```\n");
            }
            let _ = writeln!(
                out,
                "\n_… {} more line(s) in the full {} output._",
                rest.len() - i,
                lower_first(&role_phrase(&c.role))
            );
            return;
        }
        if line.trim().is_empty() {
            if !blank {
                out.push('\n');
            }
            blank = true;
            continue;
        }
        blank = false;
        if line.trim_start().starts_with("```") {
            fence = !fence;
        }
        if !fence && line.starts_with('#') {
            let level = line.chars().take_while(|&ch| ch == '#').count();
            let text = line.trim_start_matches('#').trim();
            let _ = writeln!(out, "{} {text}", "#".repeat((level + shift).clamp(3, 6)));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if fence {
        out.push_str("```\n");
    }
}

/// An italic attribution line such as "_By Content Specialist._".
fn is_byline(line: &str) -> bool {
    let l = line.trim();
    l.starts_with("_By ") && l.ends_with('_')
}

/// How many levels to add so the shallowest heading becomes level 3.
fn heading_shift(lines: &[&str]) -> usize {
    let mut fence = false;
    let mut min = 6;
    for line in lines {
        if line.trim_start().starts_with("```") {
            fence = !fence;
        } else if !fence && line.starts_with('#') {
            min = min.min(line.chars().take_while(|&ch| ch == '#').count());
        }
    }
    3usize.saturating_sub(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_section_closes_its_code_fence() {
        let c = Contribution {
            agent_name: "X".into(),
            role: "x".into(),
            output: format!("## Title\n\n```\n{}", "line\n".repeat(500)),
        };
        let mut out = String::new();
        section(&c, 400, &mut out);
        assert!(out.starts_with("_Title_"));
        assert_eq!(out.matches("```").count(), 2);
        assert!(out.contains("more line(s)"));
    }

    #[test]
    fn headings_are_shifted_under_the_section() {
        let c = Contribution {
            output: "# Top\n# A\ntext\n## B".into(),
            ..Contribution::default()
        };
        let mut out = String::new();
        section(&c, 4000, &mut out);
        assert!(out.contains("\n### A\n") && out.contains("\n#### B\n"));
    }
}
