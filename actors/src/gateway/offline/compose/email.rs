//! The content and design specialists: an email draft, and the layout spec that frames it.

use std::fmt::Write as _;

use super::facts::{AudienceKind, Facts};
use super::lexicon::{benefit, icon};
use super::text::{cap_first, cell, fnv1a, join_and, lower_first};

/// The content specialist's email draft.
pub(super) fn content(f: &Facts, out: &mut String) {
    let s = &f.subject;
    let _ = writeln!(out, "### Subject line options");
    for (i, line) in f.subject_lines().iter().enumerate() {
        let _ = writeln!(out, "{}. {line} _({} chars)_", i + 1, line.chars().count());
    }
    let _ = writeln!(out, "\n**Preheader:** {}\n", f.preheader());
    let _ = writeln!(out, "### Email body\n\nHi {{{{first_name}}}},\n");
    let outcome = match f.kind {
        AudienceKind::Technical => "to spend less time on busywork and more time shipping",
        AudienceKind::Business => {
            "to spend less time chasing status and more time growing the business"
        }
        AudienceKind::Creative => "to spend less time on busywork and more time creating",
        AudienceKind::General => "to spend less time on chores and more time on what matters",
    };
    let audience = f.audience_phrase();
    let _ = writeln!(out, "We built {s} for {audience} who want {outcome}.\n");
    let lowered: Vec<String> = f.features.iter().take(3).map(|x| lower_first(x)).collect();
    match (f.description_sentence(), lowered.is_empty()) {
        (Some(d), false) => {
            let _ = writeln!(
                out,
                "{d} It brings {} together in one place.\n",
                join_and(&lowered)
            );
        }
        (Some(d), true) => {
            let _ = writeln!(out, "{d}\n");
        }
        (None, false) => {
            let _ = writeln!(
                out,
                "{} brings {} together in one place.\n",
                f.subject_cap(),
                join_and(&lowered)
            );
        }
        (None, true) => {
            let _ = writeln!(
                out,
                "Here is a first look at {s} and what it can do for you.\n"
            );
        }
    }
    if !f.features.is_empty() {
        let _ = writeln!(out, "**What you get:**");
        for (i, feature) in f.features.iter().enumerate() {
            let _ = writeln!(out, "- **{feature}** — {}.", benefit(feature, i));
        }
        out.push('\n');
    }
    let (cta, _) = f.cta();
    let _ = writeln!(out, "**[{cta} →]({{{{cta_url}}}})**\n");
    let _ = writeln!(out, "Cheers,  \n{}\n", f.team());
    let _ = writeln!(out, "### Notes on tone");
    if let Some(voice) = &f.voice {
        let _ = writeln!(
            out,
            "- Shared memory sets the voice (\"{voice}\"); this draft follows it."
        );
    }
    let tone = match f.kind {
        AudienceKind::Technical => {
            "Direct and peer-to-peer: concrete outcomes over hype, no buzzword stacking, short sentences."
        }
        AudienceKind::Business => {
            "Confident and outcome-led: lead with time and money saved, keep claims specific."
        }
        AudienceKind::Creative => {
            "Warm and visual: show, don't tell, and let the product's craft speak."
        }
        AudienceKind::General => {
            "Friendly and clear: plain words, one idea per sentence, a single obvious next step."
        }
    };
    let _ = writeln!(out, "- {tone}");
    let _ = writeln!(
        out,
        "- Keep the body under ~150 words; one primary CTA (\"{cta}\"), repeated once as a text link for image-blocking clients."
    );
    let _ = writeln!(
        out,
        "- Subject lines stay under 60 chars where possible so they are not truncated on mobile."
    );
    if !f.other.is_empty() {
        let details: Vec<String> = f
            .other
            .iter()
            .take(6)
            .map(|(key, value)| format!("{key}: {value}"))
            .collect();
        let _ = writeln!(
            out,
            "- Reflect the other details in the brief: {}.",
            details.join("; ")
        );
    }
}

/// A colour palette: a name and (role, hex, use) rows.
struct Palette {
    name: &'static str,
    primary: &'static str,
    secondary: &'static str,
    accent: &'static str,
    background: &'static str,
    text: &'static str,
}

/// Every palette passes WCAG AA for white on primary and text on background (tested).
const PALETTES: [Palette; 6] = [
    Palette {
        name: "Indigo Night",
        primary: "#4338CA",
        secondary: "#1E1B4B",
        accent: "#F59E0B",
        background: "#F8FAFC",
        text: "#0F172A",
    },
    Palette {
        name: "Deep Teal",
        primary: "#0F766E",
        secondary: "#134E4A",
        accent: "#F97316",
        background: "#F0FDFA",
        text: "#042F2E",
    },
    Palette {
        name: "Ocean Blue",
        primary: "#1D4ED8",
        secondary: "#0B1B3F",
        accent: "#22D3EE",
        background: "#F1F5F9",
        text: "#0F172A",
    },
    Palette {
        name: "Crimson",
        primary: "#B91C1C",
        secondary: "#450A0A",
        accent: "#FACC15",
        background: "#FFF7ED",
        text: "#1C1917",
    },
    Palette {
        name: "Forest",
        primary: "#15803D",
        secondary: "#052E16",
        accent: "#EAB308",
        background: "#F7FEE7",
        text: "#1A2E05",
    },
    Palette {
        name: "Violet",
        primary: "#7E22CE",
        secondary: "#3B0764",
        accent: "#F472B6",
        background: "#FAF5FF",
        text: "#1E1B4B",
    },
];

const FONTS: [&str; 4] = ["Inter", "IBM Plex Sans", "Source Sans 3", "Poppins"];

/// The palette for a subject, chosen by hash.
fn palette(subject: &str) -> &'static Palette {
    let h = fnv1a(subject);
    &PALETTES[(h % PALETTES.len() as u64) as usize]
}

/// WCAG relative luminance of "#RRGGBB" (0 for malformed input).
fn luminance(hex: &str) -> f64 {
    let channel = |i: usize| {
        let v = hex
            .get(i..i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        let c = f64::from(v) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
}

/// WCAG contrast ratio of two "#RRGGBB" colours.
fn contrast(a: &str, b: &str) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    let (hi, lo) = if la > lb { (la, lb) } else { (lb, la) };
    (hi + 0.05) / (lo + 0.05)
}

fn grade(ratio: f64) -> &'static str {
    if ratio >= 7.0 {
        "passes WCAG AAA"
    } else if ratio >= 4.5 {
        "passes WCAG AA"
    } else {
        "large text only"
    }
}

/// The design specialist's layout spec.
pub(super) fn design(f: &Facts, out: &mut String) {
    let p = palette(&f.subject);
    let font = FONTS[(fnv1a(&f.subject) >> 8) as usize % FONTS.len()];
    let s = f.subject_cap();
    let (cta, _) = f.cta();
    let _ = writeln!(
        out,
        "Single-column email, 600 px max width, built from stackable table rows; palette **{}** (picked for {}).\n",
        p.name, f.subject
    );
    let _ = writeln!(out, "### Sections");
    let _ = writeln!(
        out,
        "1. **Top bar** — hidden preheader, \"View in browser\" link, logo left-aligned at 32 px high."
    );
    let subhead = f
        .description
        .as_deref()
        .map_or_else(|| f.preheader(), cap_first);
    let _ = writeln!(
        out,
        "2. **Hero** — headline \"{s}\", subhead \"{subhead}\", primary button \"{cta}\" (`#FFFFFF` on `{}`, 48 px tall, 6 px radius) over a `{}` background.",
        p.primary, p.secondary
    );
    let n = f.features.len();
    if n == 0 {
        let _ = writeln!(
            out,
            "3. **Features grid** — three benefit cells (icon, 3-word title, one-line caption); add one per key feature once they are confirmed."
        );
    } else {
        let cols = match n {
            1 => 1,
            2 | 4 => 2,
            _ => 3,
        };
        let _ = writeln!(
            out,
            "3. **Features grid** — {n} {}, {cols} per row on desktop, stacked on mobile:\n",
            if n == 1 { "cell" } else { "cells" }
        );
        let _ = writeln!(
            out,
            "   | Cell | Feature | Icon | Caption |\n   |---|---|---|---|"
        );
        for (i, feature) in f.features.iter().enumerate() {
            let _ = writeln!(
                out,
                "   | {} | {} | {} | {} |",
                i + 1,
                cell(feature),
                icon(feature),
                cap_first(benefit(feature, i))
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "4. **CTA band** — full-width `{}` strip, one-line restatement of the offer, button \"{cta}\" repeated.",
        p.accent
    );
    let _ = writeln!(
        out,
        "5. **Footer** — company address, unsubscribe and preference-centre links, monochrome social icons, 12 px text.\n"
    );
    let _ = writeln!(out, "### Color palette — {}", p.name);
    let _ = writeln!(out, "| Role | Hex | Use |\n|---|---|---|");
    for (role, hex, usage) in [
        ("Primary", p.primary, "buttons, links, key highlights"),
        ("Secondary", p.secondary, "hero background, headings"),
        ("Accent", p.accent, "CTA band, badges (never for body text)"),
        ("Background", p.background, "email canvas"),
        ("Text", p.text, "body copy"),
    ] {
        let _ = writeln!(out, "| {role} | `{hex}` | {usage} |");
    }
    let button = contrast("#FFFFFF", p.primary);
    let body = contrast(p.text, p.background);
    let _ = writeln!(out, "\n### Typography");
    let _ = writeln!(
        out,
        "- {font}, falling back to Helvetica, Arial, sans-serif (web font loads only where supported)."
    );
    let _ = writeln!(
        out,
        "- Headline 32/40 px bold; section titles 22/28 px semibold; body 16/24 px regular; footer 12/18 px."
    );
    let imagery = match f.kind {
        AudienceKind::Technical => {
            "real product UI on a dark device frame, close-ups of the workflow; no stock photos of people pointing at screens"
        }
        AudienceKind::Business => {
            "clean product shots with one outcome stat overlaid; people in real work settings"
        }
        AudienceKind::Creative => {
            "bold, full-bleed visuals of work made with the product; generous white space"
        }
        AudienceKind::General => {
            "bright lifestyle shots of the product in use; one hero image, simple icons below"
        }
    };
    let _ = writeln!(out, "\n### Imagery direction\n- {}.", cap_first(imagery));
    let _ = writeln!(
        out,
        "- Hero image ≤ 200 KB, 1200 px wide for retina, with the headline as live text, not baked into the image."
    );
    let _ = writeln!(out, "\n### Mobile and responsive");
    let _ = writeln!(
        out,
        "- Below 480 px: single column, grid cells stack, images scale to 100% width."
    );
    let _ = writeln!(
        out,
        "- Tap targets at least 44×44 px; body text never below 14 px; button full-width on mobile."
    );
    let _ = writeln!(
        out,
        "- Test in Gmail (web/app), Apple Mail, Outlook desktop and dark mode."
    );
    let _ = writeln!(out, "\n### Accessibility");
    let _ = writeln!(
        out,
        "- Contrast: white on primary {button:.1}:1 ({}), text on background {body:.1}:1 ({}).",
        grade(button),
        grade(body)
    );
    let _ = writeln!(
        out,
        "- Alt text on every image, e.g. hero `alt=\"Screenshot of {}\"`; decorative icons get `alt=\"\"`.",
        f.subject
    );
    let _ = writeln!(
        out,
        "- Layout tables carry `role=\"presentation\"`; set `lang` on the `<html>` element; no information conveyed by colour alone."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_palette_meets_wcag_aa() {
        for p in &PALETTES {
            assert!(contrast("#FFFFFF", p.primary) >= 4.5, "{} primary", p.name);
            assert!(contrast(p.text, p.background) >= 7.0, "{} text", p.name);
        }
        assert!((contrast("#000000", "#FFFFFF") - 21.0).abs() < 0.01);
    }

    #[test]
    fn palette_choice_is_stable_and_varies() {
        assert_eq!(palette("TechPro X1").name, palette("TechPro X1").name);
        let names: std::collections::BTreeSet<&str> = ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .map(|s| palette(s).name)
            .collect();
        assert!(names.len() > 2);
    }
}
