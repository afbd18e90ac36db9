//! Text helpers shared by the offline composers: clipping, slugs, titles, keywords and hashing.
//! Everything here is allocation-light, bounded in the work it does, and panic-free on any input.

use std::fmt::Write as _;

use super::lexicon::{fold_latin, is_stop_word};

/// Longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub(super) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// A one-line copy of `s`: whitespace and control runs collapsed to one space, trimmed, at most
/// `max` chars (and `2 * max` bytes). When cut, it is cut on a word boundary if one is near and
/// ends with "…".
pub(super) fn clean(s: &str, max: usize) -> String {
    if is_clean_ascii(s, max) {
        return s.to_owned();
    }
    let byte_cap = max.saturating_mul(2);
    let mut out = String::with_capacity(s.len().min(byte_cap) + 3);
    let mut chars = 0usize;
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        let extra = usize::from(pending_space);
        if chars + extra + 1 > max || out.len() + extra + c.len_utf8() > byte_cap {
            if !pending_space {
                cut_on_word(&mut out);
            }
            let trimmed = out.trim_end_matches([' ', ',', ';', ':', '-', '—']).len();
            out.truncate(trimmed);
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
        }
        out.push(c);
        chars += 1;
    }
    out
}

/// Whether `s` is already a clean line of at most `max` ASCII chars (the common case).
fn is_clean_ascii(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    b.len() <= max
        && b.first().is_none_or(|&c| c != b' ')
        && b.last().is_none_or(|&c| c != b' ')
        && b.iter().all(|&c| (b' '..=b'~').contains(&c))
        && !b.windows(2).any(|w| w == b"  ")
}

/// Drops a trailing partial word, if a space is within the last 24 bytes.
fn cut_on_word(out: &mut String) {
    if let Some(space) = out.rfind(' ')
        && out.len() - space <= 24
        && space > 0
    {
        out.truncate(space);
    }
}

/// `s` with its first char upper-cased.
pub(super) fn cap_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) if first.is_ascii() => {
            let mut out = s.to_owned();
            if let Some(head) = out.get_mut(..1) {
                head.make_ascii_uppercase();
            }
            out
        }
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `s` with its first char lower-cased, unless the word looks like an acronym or a name
/// ("AI-powered", "TechPro" stay as they are).
pub(super) fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    let (Some(first), second) = (chars.next(), chars.next()) else {
        return String::new();
    };
    let inner_upper = s
        .split(|c: char| c.is_whitespace() || c == '-')
        .next()
        .is_some_and(|w| w.chars().skip(1).any(char::is_uppercase));
    if first.is_uppercase() && !inner_upper && second.is_none_or(|c| !c.is_uppercase()) {
        if first.is_ascii() {
            let mut out = s.to_owned();
            if let Some(head) = out.get_mut(..1) {
                head.make_ascii_lowercase();
            }
            return out;
        }
        first.to_lowercase().chain(s.chars().skip(1)).collect()
    } else {
        s.to_owned()
    }
}

/// `s` with every word lower-cased except acronyms and names with inner capitals
/// ("IT professionals" stays, "Software Developers" → "software developers").
pub(super) fn soft_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, word) in s.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if word.chars().filter(|c| c.is_uppercase()).count() >= 2 {
            out.push_str(word);
        } else if word.is_ascii() {
            let start = out.len();
            out.push_str(word);
            if let Some(added) = out.get_mut(start..) {
                added.make_ascii_lowercase();
            }
        } else {
            out.extend(word.chars().flat_map(char::to_lowercase));
        }
    }
    out
}

/// "a" or "an" for the word that starts `s`, by sound for common cases and acronyms.
pub(super) fn a_an(s: &str) -> &'static str {
    let word = s
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default();
    let mut chars = word.chars();
    let Some(first) = chars.next() else {
        return "a";
    };
    let acronym = word.len() > 1 && word.chars().all(|c| c.is_ascii_uppercase());
    if acronym
        || (first.is_ascii_uppercase() && chars.next().is_some_and(|c| c.is_ascii_uppercase()))
    {
        return if "AEFHILMNORSX".contains(first) {
            "an"
        } else {
            "a"
        };
    }
    let lower = word.to_ascii_lowercase();
    if ["uni", "use", "usu", "eu", "one", "once"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        "a"
    } else if lower.starts_with("hour")
        || lower.starts_with("honest")
        || matches!(first.to_ascii_lowercase(), 'a' | 'e' | 'i' | 'o' | 'u')
    {
        "an"
    } else {
        "a"
    }
}

/// A lower-case ASCII URL slug of `s` (at most `max` bytes), or `fallback` when nothing is left.
pub(super) fn slug(s: &str, max: usize, fallback: &str) -> String {
    let mut out = String::with_capacity(max.min(s.len()) + 1);
    for c in s.chars() {
        if out.len() >= max {
            break;
        }
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if let Some(folded) = fold_latin(c) {
            out.push_str(folded);
        } else if (c.is_whitespace() || c.is_ascii_punctuation())
            && !out.is_empty()
            && !out.ends_with('-')
        {
            out.push('-');
        }
    }
    let trimmed = out.trim_end_matches('-').len();
    out.truncate(trimmed);
    if out.is_empty() {
        fallback.to_owned()
    } else {
        out
    }
}

/// A heading from an identifier: `keyword_analysis` → "Keyword Analysis", `seo` → "SEO".
pub(super) fn title_case(s: &str) -> String {
    const ACRONYMS: [&str; 14] = [
        "ab", "ai", "api", "b2b", "b2c", "crm", "cta", "kpi", "roi", "seo", "sms", "sql", "ui",
        "ux",
    ];
    let mut out = String::new();
    for word in
        prefix(s, 120).split(|c: char| c == '_' || c == '-' || c == '.' || c.is_whitespace())
    {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        let lower = word.to_lowercase();
        if ACRONYMS.contains(&lower.as_str()) {
            out.push_str(&lower.to_ascii_uppercase());
        } else {
            out.push_str(&cap_first(&lower));
        }
    }
    clean(&out, 60)
}

/// `s` made safe for a Markdown table cell.
pub(super) fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// `n` with thousands separators: 3306 → "3,306".
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// FNV-1a, 64-bit: a stable hash for deterministic choices.
pub(super) fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Joins items as "a, b and c".
pub(super) fn join_and<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(if i + 1 == items.len() { " and " } else { ", " });
        }
        out.push_str(item.as_ref());
    }
    out
}

/// Whether any whole word of `s` (ASCII-case-insensitively) starts with one of `stems`.
pub(super) fn has_stem(s: &str, stems: &[&str]) -> bool {
    // Non-ASCII bytes count as word bytes, so words never split inside a char.
    s.as_bytes()
        .split(|b| b.is_ascii() && !b.is_ascii_alphanumeric())
        .any(|w| {
            let Some(first) = w.first().map(u8::to_ascii_lowercase) else {
                return false;
            };
            stems.iter().any(|stem| {
                let stem = stem.as_bytes();
                stem.first() == Some(&first)
                    && w.len() >= stem.len()
                    && w.get(..stem.len())
                        .is_some_and(|p| p.eq_ignore_ascii_case(stem))
            })
        })
}

/// One keyword and how often it occurred.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Keyword {
    pub word: String,
    pub count: u32,
}

/// Keywords of `sources`: lower-case words of 2+ chars that are not stop words or numbers,
/// ranked by frequency, then first appearance. Reads at most 4 KB of each source and 24 sources.
pub(super) fn keywords<'a>(
    sources: impl IntoIterator<Item = &'a str>,
    limit: usize,
) -> Vec<Keyword> {
    const MAX_DISTINCT: usize = 160;
    // (hash, index into `found`): compared before the words themselves.
    let mut hashes: Vec<u64> = Vec::new();
    let mut found: Vec<Keyword> = Vec::new();
    let mut word = String::with_capacity(48);
    for source in sources.into_iter().take(24) {
        let mut chars = prefix(source, 4096).chars();
        loop {
            let c = chars.next();
            match c {
                Some(c) if c.is_alphanumeric() || (c == '-' && !word.is_empty()) => {
                    if word.len() < 48 {
                        if c.is_ascii() {
                            word.push(c.to_ascii_lowercase());
                        } else {
                            word.extend(c.to_lowercase());
                        }
                    }
                }
                _ => {
                    let w = word.trim_end_matches('-');
                    if w.len() >= 2 && w.len() <= 128 && !is_stop_word(w) {
                        let chars_in = w.chars().count();
                        if chars_in <= 32 && !w.chars().all(char::is_numeric) {
                            let h = fnv1a(w);
                            let at = hashes
                                .iter()
                                .zip(&found)
                                .position(|(&hk, k)| hk == h && k.word == w);
                            if let Some(k) = at.and_then(|i| found.get_mut(i)) {
                                k.count += 1;
                            } else if found.len() < MAX_DISTINCT {
                                hashes.push(h);
                                found.push(Keyword {
                                    word: w.to_owned(),
                                    count: 1,
                                });
                            }
                        }
                    }
                    word.clear();
                    if c.is_none() {
                        break;
                    }
                }
            }
        }
    }
    // A stable sort keeps first appearance as the tie-break.
    found.sort_by_key(|k| std::cmp::Reverse(k.count));
    found.truncate(limit);
    found
}

/// Appends "**Building on shared memory:** …" (up to 3 items) when there is memory.
pub(super) fn memory_line(out: &mut String, memory: &[String]) {
    let items: Vec<String> = memory
        .iter()
        .map(|m| memory_item(m))
        .filter(|m| !m.is_empty())
        .take(3)
        .collect();
    if items.is_empty() {
        return;
    }
    out.push_str("**Building on shared memory:**\n");
    for item in &items {
        let _ = writeln!(out, "- {item}");
    }
    out.push('\n');
}

/// "[fact] Brand voice is friendly" → "*fact:* Brand voice is friendly".
fn memory_item(m: &str) -> String {
    let m = m.trim_start();
    if let Some(rest) = m.strip_prefix('[')
        && let Some((kind, text)) = rest.split_once(']')
        && !kind.is_empty()
        && kind.len() <= 24
    {
        let text = clean(text, 160);
        if text.is_empty() {
            return String::new();
        }
        return format!("*{}:* {text}", clean(kind, 24));
    }
    clean(m, 160)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_collapses_whitespace_and_cuts_on_char_boundaries() {
        assert_eq!(clean("  a \n\t b  ", 10), "a b");
        assert_eq!(clean("héllo wörld again and again", 12), "héllo wörld…");
        let cut = clean(&"é".repeat(500), 300);
        assert!(cut.ends_with('…') && cut.chars().count() <= 301 && cut.len() <= 603);
        assert_eq!(clean("", 5), "");
    }

    #[test]
    fn slug_titles_and_articles() {
        assert_eq!(slug("TechPro X1", 40, "x"), "techpro-x1");
        assert_eq!(slug("Café Crème ☕", 40, "x"), "cafe-creme");
        assert_eq!(slug("Straße Ünïcode", 40, "x"), "strasse-unicode");
        assert_eq!(slug("  ¡¡ ", 40, "campaign"), "campaign");
        assert_eq!(title_case("keyword_analysis"), "Keyword Analysis");
        assert_eq!(title_case("seo_optimization"), "SEO Optimization");
        assert_eq!(a_an("advanced tool"), "an");
        assert_eq!(a_an("AI-powered tool"), "an");
        assert_eq!(a_an("user-friendly app"), "a");
        assert_eq!(a_an("SaaS platform"), "a");
        assert_eq!(lower_first("Advanced AI tool"), "advanced AI tool");
        assert_eq!(lower_first("AI code completion"), "AI code completion");
        assert_eq!(lower_first("TechPro suite"), "TechPro suite");
        assert_eq!(thousands(3306), "3,306");
        assert_eq!(thousands(12), "12");
    }

    #[test]
    fn keywords_rank_by_frequency_then_first_appearance() {
        let k = keywords(["Email the email list about launch", "launch EMAIL"], 3);
        let words: Vec<&str> = k.iter().map(|k| k.word.as_str()).collect();
        assert_eq!(words, ["email", "launch", "list"]);
        assert_eq!(k[0].count, 3);
    }

    #[test]
    fn memory_items_are_rendered_and_capped() {
        let mut out = String::new();
        let mem: Vec<String> = (0..5).map(|i| format!("[fact] item {i}")).collect();
        memory_line(&mut out, &mem);
        assert!(
            out.contains("*fact:* item 0") && out.contains("item 2") && !out.contains("item 3")
        );
    }
}
