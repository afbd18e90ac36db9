//! Reading the task text: the subject and audience it names, audience segments, and the
//! broad kind of an audience. Plain string scanning, bounded, no regex.

use super::facts::AudienceKind;
use super::lexicon::{
    BUSINESS_STEMS, CREATIVE_STEMS, DELIVERABLES, PEOPLE, PHRASE_ENDS, TECHNICAL_STEMS, VERBS,
};
use super::text::{cap_first, clean, has_stem, prefix};

/// Audience segments: `audience` split on commas, semicolons, "/", "&" and " and ".
pub(super) fn segments(audience: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in audience.split([',', ';', '/', '&']) {
        for part in split_and(piece) {
            let part = part.trim();
            let part = strip_word(strip_word(part, "and"), "or").trim();
            let part = clean(part, 80);
            if !part.is_empty()
                && !out.iter().any(|s| s.eq_ignore_ascii_case(&part))
                && out.len() < 8
            {
                out.push(cap_first(&part));
            }
        }
    }
    out
}

/// Splits on " and " (any ASCII case).
fn split_and(s: &str) -> Vec<&str> {
    let lower = s.to_ascii_lowercase();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut search = 0;
    while let Some(pos) = lower.get(search..).and_then(|rest| rest.find(" and ")) {
        let at = search + pos;
        parts.push(s.get(start..at).unwrap_or_default());
        start = at + 5;
        search = start;
    }
    parts.push(s.get(start..).unwrap_or_default());
    parts
}

/// `s` without a leading `word` (ASCII-case-insensitive) followed by a space.
fn strip_word<'a>(s: &'a str, word: &str) -> &'a str {
    match s.get(..word.len() + 1) {
        Some(head)
            if head.ends_with(' ')
                && head
                    .get(..word.len())
                    .is_some_and(|h| h.eq_ignore_ascii_case(word)) =>
        {
            s.get(word.len() + 1..).unwrap_or(s)
        }
        _ => s,
    }
}

/// The up-to-6-word phrase of `s` starting at byte `from`, ending at punctuation or a phrase end.
fn phrase(s: &str, from: usize) -> Vec<String> {
    let mut words = Vec::new();
    for raw in s.get(from..).unwrap_or_default().split_whitespace().take(6) {
        let word = raw.trim_matches(|c: char| !c.is_alphanumeric());
        if word.is_empty() || PHRASE_ENDS.contains(&word.to_ascii_lowercase().as_str()) {
            break;
        }
        words.push(word.to_owned());
        if raw.ends_with(['.', ',', ';', ':', '!', '?', ')']) {
            break;
        }
    }
    words
}

/// A short noun phrase for the task's subject: "for a new product launch …" → "the new product".
pub(super) fn derive_subject(task: &str) -> String {
    let task = prefix(task, 1000);
    let lower = task.to_ascii_lowercase();
    let mut candidates = Vec::new();
    for marker in [" for ", " about ", " of "] {
        let mut at = 0;
        while let Some(pos) = lower.get(at..).and_then(|rest| rest.find(marker)) {
            candidates.push(at + pos + marker.len());
            at += pos + marker.len();
        }
    }
    let verb_start = lower
        .split_whitespace()
        .next()
        .filter(|w| VERBS.contains(w))
        .map_or(0, |w| lower.find(w).unwrap_or(0) + w.len());
    candidates.push(verb_start);
    for start in candidates {
        let mut words = phrase(task, start);
        while words
            .last()
            .is_some_and(|w| DELIVERABLES.contains(&w.to_ascii_lowercase().as_str()))
        {
            words.pop();
        }
        let is_people = words
            .last()
            .is_some_and(|w| PEOPLE.contains(&w.to_ascii_lowercase().as_str()));
        let first = words
            .first()
            .map(|w| w.to_ascii_lowercase())
            .unwrap_or_default();
        if is_people
            || words.is_empty()
            || (words.len() == 1 && matches!(first.as_str(), "a" | "an" | "the"))
        {
            continue;
        }
        if matches!(first.as_str(), "a" | "an" | "this" | "the") {
            words[0] = "the".to_owned();
        } else if first == "our" || first == "my" {
            words[0] = first;
        }
        return clean(&words.join(" "), 60);
    }
    "the product".to_owned()
}

/// The audience named in the task: "… targeting tech professionals" → "tech professionals".
pub(super) fn derive_audience(task: &str) -> Option<String> {
    let task = prefix(task, 1000);
    let lower = task.to_ascii_lowercase();
    for marker in ["targeting ", "aimed at ", "audience of ", " for "] {
        if let Some(pos) = lower.find(marker) {
            let words = phrase(task, pos + marker.len());
            let is_people = words
                .last()
                .is_some_and(|w| PEOPLE.contains(&w.to_ascii_lowercase().as_str()));
            if !words.is_empty() && (is_people || marker != " for ") {
                return Some(clean(&words.join(" "), 120));
            }
        }
    }
    None
}

/// The broad kind of an audience description.
pub(super) fn audience_kind(audience: &str) -> AudienceKind {
    if has_stem(audience, TECHNICAL_STEMS) {
        AudienceKind::Technical
    } else if has_stem(audience, BUSINESS_STEMS) {
        AudienceKind::Business
    } else if has_stem(audience, CREATIVE_STEMS) {
        AudienceKind::Creative
    } else {
        AudienceKind::General
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_skip_deliverables_and_audiences() {
        let t = "Create an email campaign for a new product launch targeting tech professionals";
        assert_eq!(derive_subject(t), "the new product");
        assert_eq!(
            derive_subject("Summarize quarterly sales numbers"),
            "quarterly sales numbers"
        );
        assert_eq!(
            derive_subject("Write a newsletter for developers"),
            "the product"
        );
        assert_eq!(
            derive_subject("Plan the launch of our spring sale."),
            "our spring sale"
        );
        assert_eq!(derive_subject(""), "the product");
    }

    #[test]
    fn audiences_come_from_targeting_phrases() {
        let t = "Create an email campaign for a new product launch targeting tech professionals";
        assert_eq!(derive_audience(t).as_deref(), Some("tech professionals"));
        assert_eq!(
            derive_audience("Write a newsletter for developers").as_deref(),
            Some("developers")
        );
        assert_eq!(derive_audience("Write a newsletter"), None);
    }

    #[test]
    fn segments_split_on_commas_and_and() {
        assert_eq!(
            segments("Software developers and IT professionals"),
            ["Software developers", "IT professionals"]
        );
        assert_eq!(
            segments("designers, marketers, and founders"),
            ["Designers", "Marketers", "Founders"]
        );
        assert_eq!(segments("A & B / a"), ["A", "B"]);
        assert!(segments(" , and ").is_empty());
    }

    #[test]
    fn audience_kinds() {
        assert_eq!(
            audience_kind("Software developers"),
            AudienceKind::Technical
        );
        assert_eq!(audience_kind("Marketing managers"), AudienceKind::Business);
        assert_eq!(
            audience_kind("Illustrators and designers"),
            AudienceKind::Creative
        );
        assert_eq!(audience_kind("Parents"), AudienceKind::General);
    }
}
