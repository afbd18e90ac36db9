//! The offline model's vocabulary: stop words, the word lists that steer phrase extraction and
//! tone, and the feature lexicon (benefit and icon per kind of feature). Data only, plus lookups.

use super::text::has_stem;

/// Words that never count as keywords. Sorted, for binary search.
#[rustfmt::skip]
pub(super) const STOP_WORDS: &[&str] = &[
    "about", "above", "across", "after", "again", "against", "aimed", "all", "also", "am", "an",
    "and", "any", "anything", "are", "around", "as", "at", "based", "be", "because", "been",
    "before", "being", "below", "best", "better", "between", "both", "build", "but", "by", "can",
    "could", "create", "did", "do", "does", "draft", "during", "each", "etc", "every", "explain",
    "few", "for", "from", "further", "generate", "get", "give", "good", "great", "had", "has",
    "have", "he", "hello", "help", "her", "here", "hi", "him", "his", "how", "i'm", "if", "in",
    "into", "is", "it", "its", "just", "kind", "know", "let", "like", "lot", "lots", "make", "may",
    "me", "might", "more", "most", "much", "must", "my", "need", "new", "no", "nor", "not", "now",
    "of", "off", "ok", "okay", "on", "once", "only", "or", "other", "our", "out", "over", "own",
    "plan", "please", "produce", "really", "same", "she", "should", "show", "so", "some",
    "something", "such", "sure", "targeting", "tell", "than", "thank", "thanks", "that", "the",
    "their", "them", "then", "there", "these", "they", "thing", "things", "this", "those",
    "through", "to", "too", "under", "until", "up", "us", "use", "using", "very", "via", "want",
    "was", "way", "we", "were", "what", "when", "where", "which", "while", "who", "why", "will",
    "with", "would", "write", "yes",
];

/// Whether `word` (lower-case) is a stop word.
pub(super) fn is_stop_word(word: &str) -> bool {
    // No stop word is longer than 10 bytes; each is looked up among those of its first letter.
    let Some(&first) = word.as_bytes().first() else {
        return false;
    };
    if word.len() > 10 || !first.is_ascii_lowercase() {
        return false;
    }
    let letter = usize::from(first - b'a');
    match (STOP_STARTS.get(letter), STOP_STARTS.get(letter + 1)) {
        (Some(&start), Some(&end)) => STOP_WORDS
            .get(start..end)
            .is_some_and(|b| b.contains(&word)),
        _ => false,
    }
}

/// Where each first letter's stop words start in `STOP_WORDS` (and where the last ends).
const STOP_STARTS: [usize; 27] = letter_starts(STOP_WORDS);

const fn letter_starts(words: &[&str]) -> [usize; 27] {
    let mut starts = [0; 27];
    let mut letter = 0;
    let mut i = 0;
    while letter < 26 {
        while i < words.len() {
            let bytes = words[i].as_bytes();
            if !bytes.is_empty() && (bytes[0] as usize) >= b'a' as usize + letter {
                break;
            }
            i += 1;
        }
        starts[letter] = i;
        letter += 1;
    }
    starts[26] = words.len();
    starts
}

/// Words that end a noun phrase taken from the task.
#[rustfmt::skip]
pub(super) const PHRASE_ENDS: &[&str] = &[
    "about", "aimed", "and", "as", "at", "because", "by", "for", "from", "in", "including", "into",
    "on", "so", "targeting", "that", "to", "using", "via", "which", "while", "who", "with",
    "within",
];

/// Nouns that name the deliverable rather than the subject; dropped from the end of a phrase.
#[rustfmt::skip]
pub(super) const DELIVERABLES: &[&str] = &[
    "announcement", "blast", "campaign", "campaigns", "email", "emails", "launch", "newsletter",
    "promotion", "release", "rollout", "series", "update",
];

/// Words that mark a phrase as naming people (an audience), not a subject.
#[rustfmt::skip]
pub(super) const PEOPLE: &[&str] = &[
    "audience", "buyers", "clients", "companies", "customers", "developers", "engineers",
    "everyone", "founders", "leaders", "managers", "marketers", "people", "professionals",
    "readers", "shoppers", "students", "subscribers", "teams", "users",
];

/// Leading verbs of an imperative task.
#[rustfmt::skip]
pub(super) const VERBS: &[&str] = &[
    "analyse", "analyze", "build", "compose", "create", "design", "develop", "draft", "generate",
    "improve", "make", "optimize", "outline", "plan", "prepare", "produce", "propose", "research",
    "review", "suggest", "summarize", "write",
];

/// Context keys read into dedicated fields (never listed as "other context").
#[rustfmt::skip]
pub(super) const KNOWN_KEYS: &[&str] = &[
    "product_name", "product", "name", "product_description", "description", "target_audience",
    "audience", "key_features", "features",
];

/// Stems that mark a launch.
#[rustfmt::skip]
pub(super) const LAUNCH_STEMS: &[&str] = &[
    "launch", "introduc", "announc", "unveil",
];

/// Stems that mark an event invitation.
#[rustfmt::skip]
pub(super) const EVENT_STEMS: &[&str] = &[
    "webinar", "event", "conference", "register", "meetup", "workshop",
];

/// Stems that mark a pre-order.
#[rustfmt::skip]
pub(super) const PREORDER_STEMS: &[&str] = &[
    "preorder", "pre-order",
];

/// Stems that mark a sale or offer.
#[rustfmt::skip]
pub(super) const SALE_STEMS: &[&str] = &[
    "sale", "discount", "offer", "promo", "deal", "coupon",
];

/// Stems that mark a software product.
#[rustfmt::skip]
pub(super) const SOFTWARE_STEMS: &[&str] = &[
    "software", "app", "tool", "platform", "saas", "code", "api", "cloud", "develop", "ai",
    "trial", "plugin", "dashboard", "automat",
];

/// Stems of a technical audience.
#[rustfmt::skip]
pub(super) const TECHNICAL_STEMS: &[&str] = &[
    "develop", "engineer", "tech", "it", "devops", "programm", "admin", "sre", "data", "security",
];

/// Stems of a business audience.
#[rustfmt::skip]
pub(super) const BUSINESS_STEMS: &[&str] = &[
    "manag", "execut", "founder", "leader", "cto", "ceo", "cfo", "director", "marketer", "b2b",
    "business", "owner", "sales",
];

/// Stems of a creative audience.
#[rustfmt::skip]
pub(super) const CREATIVE_STEMS: &[&str] = &[
    "design", "creat", "artist", "photograph", "writer", "maker",
];

/// The ASCII letters for a common accented Latin letter ("é" → "e", "ß" → "ss").
pub(super) fn fold_latin(c: char) -> Option<&'static str> {
    let folded = match c.to_lowercase().next().unwrap_or(c) {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'ī' => "i",
        'ł' => "l",
        'ñ' | 'ń' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'œ' => "oe",
        'ř' => "r",
        'ś' | 'š' | 'ş' => "s",
        'ß' => "ss",
        'ť' | 'ţ' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    };
    Some(folded)
}

/// One kind of feature: the stems that select it, a one-line benefit and an icon idea.
struct Lexeme {
    stems: &'static [&'static str],
    benefit: &'static str,
    icon: &'static str,
}

/// First match wins, so more specific kinds come first.
#[rustfmt::skip]
const LEXICON: [Lexeme; 16] = [
    Lexeme { stems: &["test", "qa", "quality"], benefit: "catch regressions before they reach production", icon: "check mark in a shield" },
    Lexeme { stems: &["complet", "autocomplet", "suggest", "copilot"], benefit: "write code faster with suggestions that understand your codebase", icon: "code brackets with a spark" },
    Lexeme { stems: &["perform", "optimi", "speed", "fast", "latency"], benefit: "find and fix bottlenecks before your users notice them", icon: "speedometer" },
    Lexeme { stems: &["secur", "privacy", "encrypt", "complian", "safe"], benefit: "keep data protected by default, with nothing extra to configure", icon: "padlock" },
    Lexeme { stems: &["analytic", "report", "insight", "dashboard", "metric"], benefit: "see what is working at a glance and act on it", icon: "bar chart" },
    Lexeme { stems: &["integrat", "plugin", "connect", "api"], benefit: "plug into the tools you already use in minutes", icon: "puzzle piece" },
    Lexeme { stems: &["collab", "team", "shar"], benefit: "keep everyone on the same page without extra meetings", icon: "two overlapping avatars" },
    Lexeme { stems: &["automat", "workflow", "schedul"], benefit: "hand repetitive work to the machine and get hours back each week", icon: "looping arrows" },
    Lexeme { stems: &["cloud", "sync", "backup"], benefit: "pick up where you left off, on any device", icon: "cloud with a check" },
    Lexeme { stems: &["energy", "eco", "efficien", "green", "sustainab"], benefit: "cut energy use and running costs", icon: "leaf" },
    Lexeme { stems: &["quiet", "noise", "silent"], benefit: "do the job without the noise", icon: "muted speaker" },
    Lexeme { stems: &["battery", "power"], benefit: "go all day without hunting for a charger", icon: "battery bolt" },
    Lexeme { stems: &["design", "interface", "ui", "ux", "custom"], benefit: "make it yours with a clean interface that stays out of the way", icon: "paint brush" },
    Lexeme { stems: &["ai", "smart", "intelligen", "learn", "predict"], benefit: "get smart help that adapts to how you work", icon: "sparkles" },
    Lexeme { stems: &["price", "free", "cost", "saving", "afford"], benefit: "get more value without growing your budget", icon: "price tag" },
    Lexeme { stems: &["support", "help", "onboard"], benefit: "get answers fast from people who know the product", icon: "chat bubble" },
];

/// Benefits for features the lexicon does not know, varied by position.
const GENERIC_BENEFITS: [&str; 4] = [
    "save time on everyday work",
    "get results you can see from day one",
    "do more with less effort",
    "stay a step ahead with less hassle",
];

/// A one-line benefit for a feature (`index` varies the generic fall-back).
pub(super) fn benefit(feature: &str, index: usize) -> &'static str {
    LEXICON
        .iter()
        .find(|l| has_stem(feature, l.stems))
        .map_or(GENERIC_BENEFITS[index % GENERIC_BENEFITS.len()], |l| {
            l.benefit
        })
}

/// An icon idea for a feature.
pub(super) fn icon(feature: &str) -> &'static str {
    LEXICON
        .iter()
        .find(|l| has_stem(feature, l.stems))
        .map_or("simple line icon", |l| l.icon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted_for_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(STOP_WORDS.iter().all(|w| w.len() <= 10));
        for word in STOP_WORDS {
            assert!(is_stop_word(word), "{word}");
        }
        for word in ["", "zzz", "Email", "aboutt", "émail", "campaign"] {
            assert!(!is_stop_word(word), "{word}");
        }
        assert!(is_stop_word("the") && is_stop_word("write") && !is_stop_word("email"));
    }

    #[test]
    fn stems_are_lower_case_for_has_stem() {
        let tables = [
            LAUNCH_STEMS,
            EVENT_STEMS,
            PREORDER_STEMS,
            SALE_STEMS,
            SOFTWARE_STEMS,
            TECHNICAL_STEMS,
            BUSINESS_STEMS,
            CREATIVE_STEMS,
        ];
        let lexicon = LEXICON.iter().map(|l| l.stems);
        for stem in tables.into_iter().chain(lexicon).flatten() {
            assert_eq!(*stem, stem.to_ascii_lowercase());
        }
    }

    #[test]
    fn features_get_matching_benefits_and_icons() {
        assert_eq!(
            benefit("Automated testing", 0),
            "catch regressions before they reach production"
        );
        assert_eq!(icon("Performance optimization"), "speedometer");
        assert_ne!(benefit("Widgets", 0), benefit("Widgets", 1));
        assert_eq!(icon("Widgets"), "simple line icon");
    }
}
