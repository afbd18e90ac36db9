//! Custom specialists such as "seo": one section per capability, with keyword analysis, on-page
//! SEO, content ideas and other recommendations drawn from the task and its context.

use std::fmt::Write as _;

use super::facts::Facts;
use super::general;
use super::lexicon::benefit;
use super::text::{
    Keyword, cap_first, clean, has_stem, join_and, keywords, soft_lower, title_case,
};

/// Most capabilities given a section.
const MAX_CAPABILITIES: usize = 12;

/// The task's keywords: the task, the assignment and every context string.
pub(super) fn brief_keywords(f: &Facts, limit: usize) -> Vec<Keyword> {
    let mut sources: Vec<&str> = vec![&f.task, &f.assignment];
    sources.extend(f.product.as_deref());
    sources.extend(f.description.as_deref());
    sources.extend(f.audience.as_deref());
    sources.extend(f.features.iter().map(String::as_str));
    sources.extend(f.other.iter().map(|(_, v)| v.as_str()));
    keywords(sources, limit)
}

/// "a, b and c" of the first `n` keywords, back-quoted.
pub(super) fn top(kws: &[Keyword], n: usize) -> String {
    let words: Vec<String> = kws
        .iter()
        .take(n)
        .map(|k| format!("`{}`", k.word))
        .collect();
    if words.is_empty() {
        "the core topic".to_owned()
    } else {
        join_and(&words)
    }
}

/// What a capability is about, which picks the section written for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Keywords,
    Seo,
    Content,
    Analytics,
    Social,
    Audience,
    Research,
    Other,
}

fn kind(capability: &str) -> Kind {
    let table: [(&[&str], Kind); 7] = [
        (&["keyword"], Kind::Keywords),
        (&["seo", "search", "ranking", "serp"], Kind::Seo),
        (
            &["content", "copy", "writ", "recommend", "editorial", "blog"],
            Kind::Content,
        ),
        (
            &[
                "analy", "metric", "report", "track", "data", "insight", "measure",
            ],
            Kind::Analytics,
        ),
        (
            &[
                "social",
                "community",
                "twitter",
                "linkedin",
                "instagram",
                "post",
            ],
            Kind::Social,
        ),
        (
            &["segment", "personal", "audience", "target"],
            Kind::Audience,
        ),
        (&["research", "competit", "market", "trend"], Kind::Research),
    ];
    table
        .iter()
        .find(|(stems, _)| has_stem(capability, stems))
        .map_or(Kind::Other, |(_, k)| *k)
}

/// One section per capability (at most 12); a kind of section is written once, later
/// capabilities of the same kind get a capability-specific checklist instead.
pub(super) fn specialist(f: &Facts, capabilities: &[String], out: &mut String) {
    let kws = brief_keywords(f, 12);
    let mut seen: Vec<String> = Vec::new();
    let mut kinds: Vec<Kind> = Vec::new();
    for capability in capabilities.iter().take(MAX_CAPABILITIES * 2) {
        let title = title_case(capability);
        if title.is_empty() || seen.contains(&title) || seen.len() >= MAX_CAPABILITIES {
            continue;
        }
        let _ = writeln!(out, "### {title}");
        let mut k = kind(capability);
        if kinds.contains(&k) {
            k = Kind::Other;
        }
        kinds.push(k);
        match k {
            Kind::Keywords => keyword_section(f, &kws, out),
            Kind::Seo => seo_section(f, &kws, out),
            Kind::Content => content_section(f, &kws, out),
            Kind::Analytics => general::analytics_section(f, &kws, out),
            Kind::Social => general::social_section(f, &kws, out),
            Kind::Audience => general::audience_section(f, out),
            Kind::Research => general::research_section(f, &kws, out),
            Kind::Other => generic_capability(f, &title, &kws, out),
        }
        out.push('\n');
        seen.push(title);
    }
}

fn generic_capability(f: &Facts, title: &str, kws: &[Keyword], out: &mut String) {
    let what = soft_lower(title);
    let _ = writeln!(
        out,
        "- Scope: apply {what} to {}, starting from the brief \"{}\".",
        f.subject,
        clean(&f.task, 120)
    );
    let _ = writeln!(
        out,
        "- Focus on {}: these come up most often in the task and its context.",
        top(kws, 3)
    );
    let _ = writeln!(
        out,
        "- Deliver a checklist of 3–5 concrete changes, each with an owner and a measurable success signal."
    );
    let _ = writeln!(
        out,
        "- Validate with {} before rollout, then review results after two weeks.",
        f.audience_phrase()
    );
}

fn keyword_section(f: &Facts, kws: &[Keyword], out: &mut String) {
    if kws.is_empty() {
        let _ = writeln!(
            out,
            "The brief has no usable keywords yet: add a product name, description and audience to the task context."
        );
        return;
    }
    let _ = writeln!(
        out,
        "Keywords from the task and its context, ranked by frequency, then first appearance:\n"
    );
    let _ = writeln!(
        out,
        "| # | Keyword | Mentions | Use as |\n|---|---|---|---|"
    );
    for (i, k) in kws.iter().take(10).enumerate() {
        let role = match i {
            0..=2 => "primary",
            3..=6 => "secondary",
            _ => "supporting",
        };
        let _ = writeln!(out, "| {} | {} | {} | {role} |", i + 1, k.word, k.count);
    }
    let segments = f.segments();
    let mut phrases: Vec<String> = Vec::new();
    for (i, feature) in f.features.iter().take(4).enumerate() {
        let phrase = match segments.get(i % segments.len().max(1)) {
            Some(seg) => format!("{} for {}", feature.to_lowercase(), seg.to_lowercase()),
            None => format!("best {} tool", feature.to_lowercase()),
        };
        phrases.push(format!("`{}`", clean(&phrase, 80)));
    }
    if phrases.is_empty() {
        for pair in kws.windows(2).take(3) {
            if let [a, b] = pair {
                phrases.push(format!("`{} {}`", a.word, b.word));
            }
        }
    }
    if !phrases.is_empty() {
        let _ = writeln!(out, "\n**Long-tail phrases:** {}.", phrases.join(", "));
    }
    let intent = if has_stem(
        &f.task,
        &["buy", "price", "sale", "discount", "order", "shop"],
    ) {
        "transactional: people ready to buy; lead with price, offer and proof"
    } else if has_stem(&f.task, &["guide", "learn", "how", "tutorial", "explain"]) {
        "informational: people learning the topic; lead with answers, then the product"
    } else {
        "commercial investigation: people comparing options; lead with features, proof and a low-risk next step"
    };
    let _ = writeln!(out, "**Search intent:** {intent}.");
}

fn seo_section(f: &Facts, kws: &[Keyword], out: &mut String) {
    let s = f.subject_cap();
    let tail = match (&f.description, kws.first()) {
        (Some(d), _) => cap_first(d),
        (None, Some(k)) => cap_first(&k.word),
        (None, None) => "Overview".to_owned(),
    };
    let title = clean(&format!("{s} — {tail}"), 60);
    let meta_src = match f.description_sentence() {
        Some(d) if !f.features.is_empty() => {
            let features: Vec<String> = f.features.iter().map(|x| soft_lower(x)).collect();
            format!("{d} With {}.", join_and(&features))
        }
        Some(d) => d,
        None => format!(
            "Everything about {}: {}.",
            f.subject,
            join_and(
                &kws.iter()
                    .take(4)
                    .map(|k| k.word.clone())
                    .collect::<Vec<_>>()
            )
        ),
    };
    let meta = clean(&meta_src, 155);
    let _ = writeln!(
        out,
        "- **Title tag** ({} chars): `{title}`",
        title.chars().count()
    );
    let _ = writeln!(
        out,
        "- **Meta description** ({} chars): `{meta}`",
        meta.chars().count()
    );
    let _ = writeln!(out, "- **URL:** `/{}`; **H1:** \"{s}\".", f.slug);
    if !f.features.is_empty() {
        let h2s: Vec<String> = f
            .features
            .iter()
            .take(6)
            .map(|x| format!("\"{x}\""))
            .collect();
        let _ = writeln!(out, "- **H2s**, one per feature: {}.", join_and(&h2s));
    }
    let schema = if f.is_software() {
        "SoftwareApplication"
    } else {
        "Product"
    };
    let _ = writeln!(
        out,
        "- **Structured data:** `{schema}` JSON-LD with name, description and feature list; `FAQPage` for the FAQ block."
    );
    let primary = primary_phrase(f, kws);
    let _ = writeln!(
        out,
        "- **Primary keyword** {primary} in the title, H1, first 100 words and one image alt text."
    );
    let _ = writeln!(
        out,
        "- **Performance:** LCP < 2.5 s, CLS < 0.1, INP < 200 ms on mobile; compress images to WebP."
    );
    let _ = writeln!(
        out,
        "- **Internal links:** link to the page from the homepage and 2–3 related pages with descriptive anchors, not \"click here\"."
    );
}

/// The phrase a page should rank for: the tail of the description ("ai-powered development
/// tool"), else the top keyword.
fn primary_phrase(f: &Facts, kws: &[Keyword]) -> String {
    match &f.description {
        Some(d) => {
            let words: Vec<&str> = d.split_whitespace().collect();
            let tail = words
                .get(words.len().saturating_sub(3)..)
                .unwrap_or_default();
            format!(
                "`{}`",
                clean(&tail.join(" ").to_lowercase(), 60).trim_end_matches(['.', '!', '?'])
            )
        }
        None => top(kws, 1),
    }
}

fn content_section(f: &Facts, kws: &[Keyword], out: &mut String) {
    let s = &f.subject;
    let segments = f.segments();
    let audience = segments
        .first()
        .map_or_else(|| f.audience_phrase(), |x| soft_lower(x));
    let focus = match f.description {
        Some(_) => format!("{} and {}", primary_phrase(f, kws), top(kws, 1)),
        None => top(kws, 2),
    };
    let _ = writeln!(out, "1. **Landing page** for {s}, built around {focus}.");
    let mut n = 2;
    for (i, feature) in f.features.iter().take(3).enumerate() {
        let reader = segments
            .get(i % segments.len().max(1))
            .map_or_else(|| audience.clone(), |x| soft_lower(x));
        let _ = writeln!(
            out,
            "{n}. **Article:** \"How {} helps {reader}\" — show how to {}, with one worked example.",
            soft_lower(feature),
            benefit(feature, i)
        );
        n += 1;
    }
    let _ = writeln!(
        out,
        "{n}. **FAQ block:** What is {s}? Who is it for? How does it compare with alternatives? What does it cost?"
    );
    let _ = writeln!(
        out,
        "{}. **Comparison page:** {s} vs the two most-searched alternatives, with an honest feature table.",
        n + 1
    );
    let _ = writeln!(
        out,
        "{}. **Refresh** each piece every quarter; retire pages that get no search impressions after 90 days.",
        n + 2
    );
}
