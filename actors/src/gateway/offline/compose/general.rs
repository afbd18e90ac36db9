//! Answers without a deep specialty: the generic answer of an agent without capabilities, the
//! coordinator's plan for a task when no specialist has contributed yet, and the short
//! checklists custom agents write for analytics, social, audience and research capabilities.

use std::fmt::Write as _;

use super::custom::{brief_keywords, top};
use super::facts::Facts;
use super::lexicon::benefit;
use super::text::{Keyword, cap_first, has_stem, join_and};

/// The answer of an agent without capabilities.
pub(super) fn generic(f: &Facts, out: &mut String) {
    let kws = brief_keywords(f, 6);
    let ask = if f.assignment.is_empty() {
        &f.task
    } else {
        &f.assignment
    };
    let _ = writeln!(out, "### The ask");
    if ask.is_empty() {
        let _ = writeln!(
            out,
            "No task text was given; this note sets out a starting point for {}.\n",
            f.subject
        );
    } else {
        let _ = writeln!(out, "> {ask}\n");
    }
    let _ = writeln!(out, "### Key points");
    if kws.is_empty() {
        let _ = writeln!(
            out,
            "- Clarify the goal, the audience and the deadline before starting."
        );
    }
    let angles = [
        "the centre of the request: define what success looks like for it",
        "settle the scope early: what is in, what is out",
        "name who owns it and what they need to decide",
        "note the main risk and how you will check for it",
    ];
    for (k, angle) in kws.iter().zip(angles) {
        let times = if k.count == 1 {
            "once".to_owned()
        } else {
            format!("{} times", k.count)
        };
        let _ = writeln!(
            out,
            "- **{}** (mentioned {times}) — {angle}.",
            cap_first(&k.word)
        );
    }
    let _ = writeln!(out, "\n### Recommendations");
    let _ = writeln!(
        out,
        "1. Confirm scope and success criteria for {} with the requester.",
        f.subject
    );
    let _ = writeln!(
        out,
        "2. Draft a first version focused on {}, and keep it short.",
        top(&kws, 2)
    );
    let _ = writeln!(
        out,
        "3. Review it against the needs of {}; cut anything that does not serve them.",
        f.audience_phrase()
    );
    let _ = writeln!(
        out,
        "4. Ship, measure one clear outcome, and record what was learned in shared memory."
    );
    other_context(f, out);
}

/// The coordinator's plan for a task when no specialist has contributed yet.
pub(super) fn plan(f: &Facts, out: &mut String) {
    let t = &f.task;
    let mut team: Vec<(&str, &str)> = Vec::new();
    if has_stem(
        t,
        &[
            "email",
            "campaign",
            "copy",
            "content",
            "write",
            "blog",
            "post",
            "newsletter",
            "message",
        ],
    ) {
        team.push((
            "Content Specialist",
            "write the copy: subject lines, body, call to action",
        ));
    }
    if has_stem(
        t,
        &[
            "design", "layout", "visual", "landing", "email", "campaign", "page", "brand",
        ],
    ) {
        team.push((
            "Design Specialist",
            "specify layout, palette, typography and accessibility",
        ));
    }
    if has_stem(
        t,
        &[
            "metric",
            "analy",
            "track",
            "campaign",
            "email",
            "report",
            "measure",
            "kpi",
            "performance",
        ],
    ) {
        team.push((
            "Analytics Specialist",
            "set targets, tracking (UTM) and the A/B test plan",
        ));
    }
    if has_stem(
        t,
        &[
            "audience", "target", "segment", "personal", "campaign", "customer", "user",
        ],
    ) {
        team.push((
            "Personalization Specialist",
            "define segments, messaging angles and send times",
        ));
    }
    if team.is_empty() {
        team.push(("Content Specialist", "draft the core material"));
        team.push((
            "Analytics Specialist",
            "define how success will be measured",
        ));
    }
    let _ = writeln!(out, "### Goal");
    if f.product.is_some() {
        let _ = writeln!(
            out,
            "Deliver this for {}, aimed at {}:\n",
            f.subject,
            f.audience_phrase()
        );
    }
    if t.is_empty() {
        let _ = writeln!(
            out,
            "No task text was given; the plan below is a default starting point for {}.\n",
            f.subject
        );
    } else {
        let _ = writeln!(out, "> {t}\n");
    }
    let _ = writeln!(out, "### Who does what");
    for (i, (who, what)) in team.iter().enumerate() {
        let _ = writeln!(out, "{}. **{who}** — {what}.", i + 1);
    }
    let _ = writeln!(out, "\n### Deliverables");
    let _ = writeln!(
        out,
        "- One combined document: a section per specialist, an executive summary and next steps."
    );
    if !f.features.is_empty() {
        let _ = writeln!(
            out,
            "- Every key feature covered: {}.",
            join_and(&f.features)
        );
    }
    let _ = writeln!(out, "\n### Checks");
    let _ = writeln!(
        out,
        "- Consistent message across sections (same product facts, same call to action)."
    );
    let _ = writeln!(
        out,
        "- Aimed at {}; nothing promised that the context does not support.",
        f.audience_phrase()
    );
    other_context(f, out);
}

/// "### Other context" listing the context entries no role-specific field used.
pub(super) fn other_context(f: &Facts, out: &mut String) {
    if f.other.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n### Other context");
    for (key, value) in &f.other {
        let _ = writeln!(out, "- **{key}:** {value}");
    }
}

pub(super) fn analytics_section(f: &Facts, kws: &[Keyword], out: &mut String) {
    let _ = writeln!(
        out,
        "- Baseline first: record current traffic, conversion and engagement for {} before changing anything.",
        f.subject
    );
    let _ = writeln!(
        out,
        "- Track {} as the leading indicators, with one owner per metric.",
        top(kws, 3)
    );
    let _ = writeln!(
        out,
        "- Targets: +15% qualified visits and +10% conversions within 8 weeks; review weekly, report monthly."
    );
}

pub(super) fn social_section(f: &Facts, kws: &[Keyword], out: &mut String) {
    let audience = f.audience_phrase();
    if f.features.is_empty() {
        let channels = [
            "post",
            "instagram",
            "social",
            "tweet",
            "linkedin",
            "tiktok",
            "facebook",
        ];
        let topics = kws
            .iter()
            .filter(|k| !channels.iter().any(|c| k.word.starts_with(c)));
        for (i, k) in topics.take(3).enumerate() {
            let _ = writeln!(
                out,
                "- Post {}: a short, visual take on `{}` for {audience}, ending with one question to invite replies.",
                i + 1,
                k.word
            );
        }
    }
    for (i, feature) in f.features.iter().take(4).enumerate() {
        let _ = writeln!(
            out,
            "- Post {}: short demo of **{feature}** — \"{}\" — with a link to {}.",
            i + 1,
            cap_first(benefit(feature, i)),
            f.subject
        );
    }
    let _ = writeln!(
        out,
        "- Cadence: 3 posts a week for the first two weeks, then 1; reply to every comment within 24 hours."
    );
}

pub(super) fn audience_section(f: &Facts, out: &mut String) {
    let segments = f.segments();
    let list = if segments.is_empty() {
        "new, engaged and lapsed users".to_owned()
    } else {
        join_and(segments)
    };
    let _ = writeln!(out, "- Segments: {list}.");
    let _ = writeln!(
        out,
        "- Tailor the first line and the lead example to each segment; keep the offer the same."
    );
}

pub(super) fn research_section(f: &Facts, kws: &[Keyword], out: &mut String) {
    let _ = writeln!(
        out,
        "- Map 3–5 alternatives people compare with {}; note pricing, positioning and gaps.",
        f.subject
    );
    let _ = writeln!(
        out,
        "- Check demand for {} (search volume, forum threads, reviews) to rank opportunities.",
        top(kws, 3)
    );
    let _ = writeln!(
        out,
        "- Summarize in a one-page brief: where {} wins, where it must catch up.",
        f.subject
    );
}
