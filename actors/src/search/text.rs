//! Text analysis for the hashing embedder: a Unicode-aware tokenizer that lower-cases, joins
//! apostrophes (`customer's` → `customers`) and splits CJK ideographs and kana into
//! single-character words; the terms, which drop English stop-words and lone ASCII characters
//! and take a light, deterministic English stem (plurals, `-ing`, `-ed`, `-ment`, final `e`,
//! doubled final consonants); and the compounds of a word with the particle after it
//! (`roll back` → `rollback`).
//!
//! The rules are part of the embedder's vector space: changing them changes every vector.

/// English function words (and contractions with the apostrophe removed) that carry no topic.
/// Sorted, so that [`is_stop_word`] can binary-search it.
#[rustfmt::skip]
const STOP_WORDS: &[&str] = &[
    "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are",
    "arent", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both",
    "but", "by", "can", "cannot", "cant", "could", "couldnt", "did", "didnt", "do", "does",
    "doesnt", "doing", "dont", "down", "during", "each", "etc", "even", "ever", "every", "few",
    "for", "from", "further", "get", "gets", "getting", "got", "had", "hadnt", "has", "hasnt",
    "have", "havent", "having", "he", "hed", "her", "here", "heres", "hers", "herself", "hes",
    "him", "himself", "his", "how", "however", "hows", "if", "im", "in", "into", "is", "isnt", "it",
    "its", "itself", "ive", "just", "let", "lets", "may", "me", "might", "more", "most", "much",
    "must", "mustnt", "my", "myself", "no", "nor", "not", "now", "of", "off", "often", "on", "once",
    "only", "or", "other", "ought", "our", "ours", "ourselves", "out", "over", "own", "please",
    "same", "shall", "shant", "she", "shes", "should", "shouldnt", "so", "some", "such", "than",
    "that", "thats", "the", "their", "theirs", "them", "themselves", "then", "there", "theres",
    "these", "they", "theyd", "theyll", "theyre", "theyve", "this", "those", "through", "to", "too",
    "under", "until", "up", "us", "use", "used", "uses", "using", "very", "via", "was", "wasnt",
    "we", "well", "were", "werent", "weve", "what", "whats", "when", "whens", "where", "wheres",
    "which", "while", "who", "whom", "whos", "why", "whys", "will", "with", "within", "without",
    "wont", "would", "wouldnt", "yet", "you", "youd", "youll", "your", "youre", "yours", "yourself",
    "yourselves", "youve",
];

/// True when `word` (lower case, apostrophes removed) is a stop-word.
pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// Characters removed inside a word rather than splitting it: ASCII and typographic apostrophes.
fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{02BC}')
}

/// CJK ideographs, hiragana and katakana: scripts written without spaces, indexed one character
/// at a time (the bigram features then pair neighbouring characters).
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}' | '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}' | '\u{20000}'..='\u{2FA1F}')
}

/// The lower-cased words of `text`, stop-words included: runs of letters and digits (apostrophes
/// removed, not split on), each CJK character on its own.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if is_apostrophe(c) {
            continue;
        }
        if c.is_alphanumeric() && !is_cjk(c) {
            word.extend(c.to_lowercase());
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if is_cjk(c) {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// True for words that carry meaning: not stop-words, not lone ASCII characters.
fn is_content(word: &str) -> bool {
    !(word.len() == 1 || is_stop_word(word))
}

/// The analysed terms of `words`, in order: stop-words and lone ASCII characters dropped, stems
/// taken.
pub fn terms(words: &[String]) -> Vec<String> {
    words
        .iter()
        .filter(|w| is_content(w))
        .map(|w| stem(w))
        .collect()
}

/// Adverb particles of English phrasal verbs, written solid in their nouns (`backup`, `login`,
/// `signoff`, `rollback`, `checkout`, `takeover`). Sorted for binary search.
#[rustfmt::skip]
const PARTICLES: &[&str] = &[
    "about", "ahead", "along", "apart", "around", "away", "back", "by", "down", "in", "off", "on",
    "out", "over", "through", "up",
];

/// A word and the particle after it written as one, stemmed: `roll back` → `rollback`, `backed
/// up` → `backup`, `sign-off` → `signoff`, `logging in` → `login`, so that a phrasal verb meets
/// its closed compound (`rollbacks`, `backups`, `signoff`, `logins`).
pub fn compounds(words: &[String]) -> Vec<String> {
    let ascii = |w: &String| w.bytes().all(|b| b.is_ascii_lowercase());
    words
        .windows(2)
        .filter_map(|pair| match pair {
            [a, b] if ascii(a) && is_content(a) && PARTICLES.binary_search(&b.as_str()).is_ok() => {
                Some(stem(&format!("{}{b}", stem(a))))
            }
            _ => None,
        })
        .collect()
}

fn has_vowel(s: &str) -> bool {
    s.bytes()
        .any(|b| matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'y'))
}

/// A light English stemmer for lower-case ASCII words of four letters or more; other words are
/// returned unchanged. Inflected forms and their base map to one stem:
/// `invoice`/`invoices`/`invoiced`/`invoicing` → `invoic`, `deploy`/`deployed`/`deployment` →
/// `deploy`, `policy`/`policies` → `policy`, `ship`/`shipping`/`shipped` → `ship`.
pub fn stem(word: &str) -> String {
    if word.len() < 4 || !word.bytes().all(|b| b.is_ascii_lowercase()) {
        return word.to_owned();
    }
    let mut s = word.to_owned();
    // Plurals and third person.
    if s.ends_with("ies") && s.len() > 4 {
        s.truncate(s.len() - 3);
        s.push('y');
    } else if s.ends_with('s') && !(s.ends_with("ss") || s.ends_with("us") || s.ends_with("is")) {
        s.pop();
    }
    // Verb and noun suffixes; the stem left must keep a vowel and three letters.
    if s.len() > 4 && s.ends_with("eed") {
        // `agreed` → `agree`, like `agree`; `need` and `feed` are left alone.
        s.pop();
    } else if let Some(base) = s.strip_suffix("ied").filter(|b| b.len() >= 3) {
        s = format!("{base}y");
    } else if let Some(base) = s
        .strip_suffix("ing")
        .filter(|b| b.len() >= 3 && has_vowel(b))
    {
        s = base.to_owned();
    } else if let Some(base) = s
        .strip_suffix("ed")
        .filter(|b| b.len() >= 3 && has_vowel(b))
    {
        s = base.to_owned();
    } else if let Some(base) = s
        .strip_suffix("ment")
        .filter(|b| b.len() >= 4 && has_vowel(b))
    {
        s = base.to_owned();
    }
    // Normalise the end so that every form agrees: no final `e`, no doubled final consonant
    // (except l, s and z: `bill`, `access`, `buzz`).
    if s.len() >= 4 && s.ends_with('e') {
        s.pop();
    }
    let doubled = match *s.as_bytes() {
        [.., a, b] => a == b && !matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'l' | b's' | b'z'),
        _ => false,
    };
    if doubled && s.len() >= 4 {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted_for_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_stop_word("the") && is_stop_word("dont") && !is_stop_word("invoice"));
    }

    #[test]
    fn inflections_share_a_stem() {
        let groups: &[&[&str]] = &[
            &["invoice", "invoices", "invoiced", "invoicing"],
            &[
                "deploy",
                "deploys",
                "deployed",
                "deploying",
                "deployment",
                "deployments",
            ],
            &["policy", "policies"],
            &["ship", "ships", "shipped", "shipping"],
            &["bill", "bills", "billed", "billing"],
            &["charge", "charges", "charged", "charging"],
            &["price", "prices", "priced", "pricing"],
            &["access", "accessed", "accessing"],
            &["apply", "applies", "applied"],
            &["box", "boxes"],
            &["cache", "caches", "cached", "caching"],
            &["setting", "settings", "set"],
            &["onboard", "onboarded", "onboarding"],
            &["agree", "agreed", "agreement"],
        ];
        for group in groups {
            let first = stem(group[0]);
            for w in *group {
                assert_eq!(stem(w), first, "{w} vs {}", group[0]);
            }
        }
    }

    #[test]
    fn short_and_protected_words_are_kept() {
        for w in [
            "need", "status", "analysis", "class", "bus", "add", "set", "café", "naïve",
        ] {
            assert_eq!(stem(w), w, "{w}");
        }
        assert_eq!(stem("v2"), "v2");
        assert_eq!(stem("2fa"), "2fa");
    }

    #[test]
    fn tokenizer_is_unicode_aware() {
        let terms = |text: &str| terms(&words(text));
        assert_eq!(
            terms("The customer's INVOICES weren\u{2019}t sent; Größe ÜBER-Straße!"),
            ["customer", "invoic", "sent", "größe", "über", "straße"]
        );
        assert_eq!(terms("数据库 backup"), ["数", "据", "库", "backup"]);
        assert_eq!(terms("  a I x  ... 42 7"), ["42"]);
        assert!(terms("").is_empty());
        assert!(terms("the and of, to!").is_empty());
    }

    #[test]
    fn phrasal_verbs_meet_their_compounds() {
        let compounds = |text: &str| compounds(&words(text));
        assert!(compounds("We rolled back the release").contains(&stem("rollbacks")));
        assert!(compounds("backed up nightly").contains(&stem("backups")));
        assert!(compounds("a sign-off from the VP").contains(&stem("signoff")));
        assert!(compounds("logging in fails").contains(&stem("logins")));
        assert!(
            compounds("of the").is_empty(),
            "two stop-words make no compound"
        );
        assert!(
            compounds("password length rules for teams").is_empty(),
            "particles only"
        );
        assert!(PARTICLES.windows(2).all(|w| w[0] < w[1]));
        assert!(compounds("数据 x").is_empty());
    }
}
