//! The analytics and personalization specialists: what to measure and how, and who gets which
//! message when.

use std::fmt::Write as _;

use super::facts::{AudienceKind, Facts};
use super::lexicon::benefit;
use super::text::{cell, has_stem, lower_first, slug, thousands};

/// Recipients per variant to detect a lift from `p1` to `p2` (two-sided 95%, power 80%),
/// rounded up to the next 10.
fn sample_size(p1: f64, p2: f64) -> u64 {
    let z = 1.96 + 0.84;
    let n = z * z * (p1 * (1.0 - p1) + p2 * (1.0 - p2)) / ((p2 - p1) * (p2 - p1));
    let n = n.ceil().clamp(0.0, 1e9) as u64;
    n.div_ceil(10) * 10
}

/// The analytics specialist's measurement plan.
pub(super) fn analytics(f: &Facts, out: &mut String) {
    let (cta, event) = f.cta();
    let (open, ctr, conv) = match f.kind {
        AudienceKind::Technical => (24.0, 3.5, 8.0),
        AudienceKind::Business => (26.0, 3.0, 6.0),
        AudienceKind::Creative | AudienceKind::General => (22.0, 2.8, 5.0),
    };
    let _ = writeln!(out, "### Metrics and targets");
    let _ = writeln!(out, "| Metric | Definition | Target |\n|---|---|---|");
    let rows = [
        (
            "Open rate",
            "unique opens ÷ delivered".to_owned(),
            format!("≥ {open:.0}%"),
        ),
        (
            "Click-through rate (CTR)",
            "unique clicks ÷ delivered".to_owned(),
            format!("≥ {ctr:.1}%"),
        ),
        (
            "Click-to-open rate",
            "unique clicks ÷ unique opens".to_owned(),
            format!("≥ {:.0}%", ctr / open * 100.0),
        ),
        (
            "Conversion rate",
            format!("`{event}` events ÷ unique clicks"),
            format!("≥ {conv:.0}%"),
        ),
        (
            "Unsubscribe rate",
            "unsubscribes ÷ delivered".to_owned(),
            "≤ 0.3%".to_owned(),
        ),
        (
            "Bounce rate",
            "hard + soft bounces ÷ sent".to_owned(),
            "≤ 2%".to_owned(),
        ),
        (
            "Spam complaint rate",
            "complaints ÷ delivered".to_owned(),
            "≤ 0.08%".to_owned(),
        ),
        (
            "Revenue per email",
            "attributed revenue ÷ delivered".to_owned(),
            "≥ $0.15".to_owned(),
        ),
    ];
    for (metric, definition, target) in rows {
        let _ = writeln!(out, "| {metric} | {definition} | {target} |");
    }
    let _ = writeln!(
        out,
        "\nApple Mail Privacy Protection inflates opens, so clicks and `{event}` conversions are the primary success measures; open rate is a deliverability signal.\n"
    );
    let campaign = f.campaign();
    let _ = writeln!(out, "### Tracking plan");
    let _ = writeln!(
        out,
        "Every link carries `utm_source=newsletter&utm_medium=email&utm_campaign={campaign}` plus a `utm_content` per placement:\n"
    );
    let _ = writeln!(out, "| Placement | utm_content |\n|---|---|");
    let _ = writeln!(out, "| Hero button \"{cta}\" | `hero-cta` |");
    for feature in &f.features {
        let _ = writeln!(
            out,
            "| Feature: {} | `feature-{}` |",
            cell(feature),
            slug(feature, 40, "item")
        );
    }
    let _ = writeln!(
        out,
        "| CTA band button | `band-cta` |\n| Footer text link | `footer-link` |\n"
    );
    let _ = writeln!(
        out,
        "Example: `https://example.com/{}?utm_source=newsletter&utm_medium=email&utm_campaign={campaign}&utm_content=hero-cta`. \
         Fire `{event}` on the landing page with the same UTM values so conversions join back to the send.\n",
        f.slug
    );
    let lines = f.subject_lines();
    let n = sample_size(open / 100.0, (open + 3.0) / 100.0);
    let _ = writeln!(out, "### A/B test plan");
    let _ = writeln!(
        out,
        "1. **Subject line** — A: \"{}\" vs B: \"{}\".",
        lines[0], lines[1]
    );
    let _ = writeln!(
        out,
        "   Needs ≈{} recipients per variant to detect a 3-point open-rate lift ({open:.0}% → {:.0}%, 95% confidence, 80% power); send to 2 × that, then the winner to the rest after 4 hours.",
        thousands(n),
        open + 3.0
    );
    let _ = writeln!(
        out,
        "2. **CTA** — A: \"{cta}\" vs B: \"See {} in action\"; judged on click-to-open rate after 48 hours.",
        f.subject
    );
    let _ = writeln!(
        out,
        "3. One variable per test; hold out 5% of the list (no email) to measure incremental `{event}` conversions.\n"
    );
    let _ = writeln!(out, "### Reporting cadence");
    let _ = writeln!(
        out,
        "- **T+2 h:** deliverability check (bounces, complaints, inbox placement); pause if complaints exceed 0.1%."
    );
    let _ = writeln!(
        out,
        "- **T+24 h:** first read of opens, clicks and the subject-line winner."
    );
    let _ = writeln!(
        out,
        "- **T+7 days:** full report: metrics vs targets, clicks by `utm_content`, conversions by segment."
    );
    let _ = writeln!(
        out,
        "- **T+30 days:** revenue attribution and recommendations for the next send."
    );
}

/// A messaging angle, a tone and a default send slot for a segment.
fn angle(segment: &str) -> (&'static str, &'static str) {
    if has_stem(
        segment,
        &["develop", "engineer", "programm", "coder", "tech"],
    ) {
        (
            "hands-on productivity: less boilerplate, faster feedback loops",
            "Tue–Thu, 10:00 local",
        )
    } else if has_stem(
        segment,
        &[
            "it",
            "ops",
            "devops",
            "admin",
            "sre",
            "security",
            "infrastructure",
        ],
    ) {
        (
            "reliability and control: fewer incidents, easy rollout across teams",
            "Tue, 08:00 local",
        )
    } else if has_stem(
        segment,
        &[
            "manag", "lead", "director", "execut", "cto", "ceo", "founder", "owner", "vp",
        ],
    ) {
        (
            "team outcomes and ROI: faster delivery without more headcount",
            "Wed, 07:30 local",
        )
    } else if has_stem(segment, &["design", "creat", "artist", "writer", "maker"]) {
        (
            "creative freedom: less busywork, more time on the craft",
            "Thu, 11:00 local",
        )
    } else if has_stem(segment, &["market", "sales", "growth"]) {
        (
            "measurable growth: results you can report on next week",
            "Tue, 09:00 local",
        )
    } else if has_stem(segment, &["student", "learner", "beginner", "graduate"]) {
        (
            "getting started fast: learn by doing, free to try",
            "Sun, 18:00 local",
        )
    } else {
        (
            "everyday value: simple, useful, ready in minutes",
            "Thu, 12:00 local",
        )
    }
}

/// The personalization specialist's segment and dynamic-content plan.
pub(super) fn personalization(f: &Facts, out: &mut String) {
    let mut segments = f.segments().to_vec();
    let derived = segments.is_empty();
    if derived {
        segments = vec![
            "New subscribers".into(),
            "Engaged customers".into(),
            "Lapsed customers".into(),
        ];
    }
    let lines = f.subject_lines();
    let _ = writeln!(out, "### Audience segments");
    if derived {
        let _ = writeln!(
            out,
            "No target audience was given, so segments follow engagement history:\n"
        );
    } else {
        let _ = writeln!(
            out,
            "Derived from the target audience \"{}\":\n",
            f.audience.as_deref().unwrap_or_default()
        );
    }
    for (i, segment) in segments.iter().enumerate() {
        let (angle, slot) = angle(segment);
        let _ = writeln!(out, "**{}. {segment}**", i + 1);
        let _ = writeln!(out, "- Angle: {angle}.");
        match f.features.len() {
            0 => {}
            n => {
                let lead = &f.features[i % n];
                let _ = writeln!(out, "- Lead feature: **{lead}** — {}.", benefit(lead, i));
                if n > 1 {
                    let second = &f.features[(i + 1) % n];
                    let _ = writeln!(out, "- Supporting feature: {}.", lower_first(second));
                }
            }
        }
        let _ = writeln!(out, "- Subject line: \"{}\".", lines[i % lines.len()]);
        let _ = writeln!(out, "- Default send slot: {slot}.\n");
    }
    let _ = writeln!(out, "### Merge fields");
    let _ = writeln!(
        out,
        "- `{{{{first_name | default: \"there\"}}}}` in the greeting."
    );
    let _ = writeln!(
        out,
        "- `{{{{company}}}}` in the second paragraph when known; sentence reads naturally without it."
    );
    let _ = writeln!(
        out,
        "- `{{{{segment}}}}` drives the hero subhead and lead feature; `{{{{cta_url}}}}` carries the UTM tags.\n"
    );
    let _ = writeln!(out, "### Dynamic content rules");
    for (i, segment) in segments.iter().enumerate() {
        let shown = match f.features.len() {
            0 => format!(
                "the {} angle",
                lower_first(angle(segment).0.split(':').next().unwrap_or_default())
            ),
            n => format!("the **{}** cell first", f.features[i % n]),
        };
        let _ = writeln!(
            out,
            "- If segment = {segment} → hero subhead and grid show {shown}."
        );
    }
    let _ = writeln!(
        out,
        "- Unknown segment → default copy with the features in their listed order."
    );
    let _ = writeln!(
        out,
        "- Clicked a feature link in the last 30 days → lead with that feature; already a customer → replace the CTA with \"What's new in {}\".\n",
        f.subject
    );
    let _ = writeln!(out, "### Send-time optimization");
    let _ = writeln!(
        out,
        "- Per recipient: send in the hour they most often opened over the last 90 days (needs ≥ 3 opens)."
    );
    let _ = writeln!(
        out,
        "- Otherwise the segment's default slot above, in the recipient's time zone; never between 21:00 and 07:00."
    );
    let _ = writeln!(
        out,
        "- Spread the send over 2 hours to protect sender reputation; one follow-up to non-openers after 72 hours with subject \"{}\".",
        lines[2]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_size_matches_the_textbook_formula() {
        // 24% → 27%: 7.84 × (0.1824 + 0.1971) / 0.0009 ≈ 3,305.
        assert_eq!(sample_size(0.24, 0.27), 3310);
    }

    #[test]
    fn segments_get_distinct_angles() {
        assert_ne!(angle("Software developers").0, angle("IT professionals").0);
    }
}
