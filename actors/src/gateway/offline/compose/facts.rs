//! What the composers know about a brief: the product, audience and features read from the
//! task's JSON context (any shape), with fall-backs derived from the task text, plus the shared
//! wording (calls to action, subject lines, preheader) that keeps the roles consistent.

use serde_json::{Map, Value};

use super::Brief;
use super::lexicon::{
    EVENT_STEMS, KNOWN_KEYS, LAUNCH_STEMS, PREORDER_STEMS, SALE_STEMS, SOFTWARE_STEMS,
};
use super::phrases::{audience_kind, derive_audience, derive_subject, segments};
use super::text::{
    a_an, cap_first, clean, has_stem, join_and, lower_first, prefix, slug, soft_lower,
};

/// Most key features used.
const MAX_FEATURES: usize = 12;
/// Most "other context" entries listed.
const MAX_OTHER: usize = 20;

/// The facts a composer writes from, all cleaned, clipped and single-line.
#[derive(Debug, Clone, Default)]
pub(super) struct Facts {
    /// `product_name` from the context, if it was a non-empty string.
    pub product: Option<String>,
    /// The product, or a short noun phrase derived from the task ("the new product").
    pub subject: String,
    pub description: Option<String>,
    /// `target_audience`, or the phrase after "targeting" in the task.
    pub audience: Option<String>,
    pub features: Vec<String>,
    /// Other scalar context entries: (human key, value).
    pub other: Vec<(String, String)>,
    /// The task, clipped to 300 chars.
    pub task: String,
    /// The assignment, clipped to 300 chars (empty when it only repeats the task).
    pub assignment: String,
    /// URL slug of the subject ("techpro-x1").
    pub slug: String,
    /// Broad kind of audience, for tone and timing choices.
    pub kind: AudienceKind,
    /// A shared-memory line about voice, tone or style, if one was given.
    pub voice: Option<String>,
    segments: Vec<String>,
    launch: bool,
    software: bool,
    cta: String,
    event: &'static str,
}

/// Broad kind of audience.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum AudienceKind {
    Technical,
    Business,
    Creative,
    #[default]
    General,
}

impl Facts {
    /// Reads the facts of `brief`.
    pub fn read(brief: &Brief) -> Self {
        let mut facts = Facts {
            task: clean(&brief.task, 300),
            ..Facts::default()
        };
        let assignment = clean(&brief.assignment, 300);
        if assignment != facts.task {
            facts.assignment = assignment;
        }
        match &brief.context {
            Value::Object(map) => facts.read_map(map),
            Value::String(s) => push_other(&mut facts.other, "Context", &clean(s, 300)),
            Value::Array(items) => {
                let joined = scalars(items);
                push_other(&mut facts.other, "Context", &joined);
            }
            _ => {}
        }
        facts.subject = match &facts.product {
            Some(p) => p.clone(),
            None => derive_subject(&brief.task),
        };
        if facts.audience.is_none() {
            facts.audience = derive_audience(&brief.task);
        }
        facts.slug = slug(facts.subject.trim_start_matches("the "), 40, "campaign");
        facts.kind = audience_kind(facts.audience.as_deref().unwrap_or(&facts.task));
        facts.segments = facts.split_segments();
        facts.launch = facts.detect_launch();
        facts.software = facts.detect_software();
        (facts.cta, facts.event) = facts.choose_cta();
        facts.voice = brief.memory.iter().take(50).find_map(|m| {
            let text = m.trim_start();
            let text = match text.strip_prefix('[').and_then(|r| r.split_once(']')) {
                Some((_, rest)) => rest,
                None => text,
            };
            // The cheap test first: most memory lines are not about voice.
            if !has_stem(text, &["voice", "tone", "style"]) {
                return None;
            }
            let text = clean(text, 160);
            (!text.is_empty() && has_stem(&text, &["voice", "tone", "style"])).then_some(text)
        });
        facts
    }

    fn read_map(&mut self, map: &Map<String, Value>) {
        let text = |keys: &[&str], max: usize| {
            keys.iter()
                .find_map(|k| map.get(*k).and_then(Value::as_str).map(|s| clean(s, max)))
                .filter(|s| !s.is_empty())
        };
        self.product = text(&["product_name", "product", "name"], 80);
        self.description = text(&["product_description", "description"], 300);
        self.audience = text(&["target_audience", "audience"], 200);
        let features = map.get("key_features").or_else(|| map.get("features"));
        match features {
            Some(Value::Array(items)) => {
                for item in items.iter().take(64) {
                    let f = match item {
                        Value::String(s) => clean(s, 80),
                        Value::Number(n) => n.to_string(),
                        _ => continue,
                    };
                    push_feature(&mut self.features, f);
                }
            }
            Some(Value::String(s)) => {
                for part in prefix(s, 4096).split([',', ';', '\n']) {
                    push_feature(&mut self.features, clean(part, 80));
                }
            }
            _ => {}
        }
        for (key, value) in map.iter().take(200) {
            if KNOWN_KEYS.contains(&key.as_str()) || key == "features" {
                continue;
            }
            let v = match value {
                Value::String(s) => clean(s, 120),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => (if *b { "yes" } else { "no" }).to_owned(),
                Value::Array(items) => scalars(items),
                _ => continue,
            };
            push_other(&mut self.other, &human_key(key), &v);
        }
    }

    /// The subject capitalized, for the start of a sentence or a heading.
    pub fn subject_cap(&self) -> String {
        cap_first(&self.subject)
    }

    /// The audience as a phrase for the middle of a sentence.
    pub fn audience_phrase(&self) -> String {
        match &self.audience {
            Some(a) => lower_first(a),
            None => "your audience".to_owned(),
        }
    }

    /// Audience segments: `target_audience` split on commas, semicolons, "/", "&" and " and ".
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether the task is about a launch.
    pub fn is_launch(&self) -> bool {
        self.launch
    }

    /// Whether the product looks like software.
    pub fn is_software(&self) -> bool {
        self.software
    }

    /// The primary call to action and the conversion event it leads to.
    pub fn cta(&self) -> (&str, &'static str) {
        (&self.cta, self.event)
    }

    fn split_segments(&self) -> Vec<String> {
        self.audience.as_deref().map_or_else(Vec::new, segments)
    }

    /// The description as a sentence about the subject ("TechPro X1 is an advanced … tool.").
    pub fn description_sentence(&self) -> Option<String> {
        let d = self.description.as_deref()?;
        Some(match self.description_phrase() {
            Some(phrase) => format!("{} is {phrase}.", self.subject_cap()),
            None => {
                let mut s = cap_first(d);
                if !s.ends_with(['.', '!', '?', '…']) {
                    s.push('.');
                }
                s
            }
        })
    }

    /// The description as a noun phrase with its article ("an advanced … tool"), when it reads
    /// as one: a single short clause, not starting with "the", "our", "we" or the like.
    pub fn description_phrase(&self) -> Option<String> {
        let d = self.description.as_deref()?;
        let d = d.strip_suffix('.').unwrap_or(d);
        let words = d.split_whitespace().count();
        let first = d
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if words > 12 || d.contains(['.', '!', '?', ';']) {
            return None;
        }
        match first.as_str() {
            "a" | "an" => Some(lower_first(d)),
            "the" | "our" | "this" | "it" | "its" | "we" | "you" | "your" | "my" => None,
            _ => {
                let d = lower_first(d);
                Some(format!("{} {d}", a_an(&d)))
            }
        }
    }

    /// The sign-off team name: "The TechPro X1 team", or "The team" without a product.
    pub fn team(&self) -> String {
        match &self.product {
            Some(p) => format!("The {p} team"),
            None => "The team".to_owned(),
        }
    }

    fn detect_launch(&self) -> bool {
        has_stem(&self.task, LAUNCH_STEMS)
    }

    /// The campaign name used for UTM tags: "techpro-x1-launch".
    pub fn campaign(&self) -> String {
        let suffix = if self.is_launch() {
            "launch"
        } else if has_stem(&self.task, &["newsletter"]) {
            "newsletter"
        } else {
            "campaign"
        };
        if self.slug.ends_with(suffix) {
            self.slug.clone()
        } else {
            format!("{}-{suffix}", self.slug)
        }
    }

    fn choose_cta(&self) -> (String, &'static str) {
        let t = &self.task;
        if has_stem(t, EVENT_STEMS) {
            ("Save your seat".to_owned(), "registration")
        } else if has_stem(t, PREORDER_STEMS) {
            (format!("Pre-order {}", self.subject), "pre_order")
        } else if has_stem(t, SALE_STEMS) {
            ("Claim your offer".to_owned(), "purchase")
        } else if self.software {
            ("Start your free trial".to_owned(), "trial_started")
        } else if self.launch {
            ("Get early access".to_owned(), "signup")
        } else {
            (format!("Explore {}", self.subject), "landing_visit")
        }
    }

    fn detect_software(&self) -> bool {
        has_stem(&self.task, SOFTWARE_STEMS)
            || self
                .description
                .as_deref()
                .is_some_and(|d| has_stem(d, SOFTWARE_STEMS))
            || self.features.iter().any(|f| has_stem(f, SOFTWARE_STEMS))
    }

    /// Three subject-line options, shared by the content, analytics and personalization roles.
    pub fn subject_lines(&self) -> [String; 3] {
        let s = &self.subject;
        let verb = if self.is_launch() {
            "Introducing"
        } else {
            "Meet"
        };
        let from_description = self.description_phrase().map(|d| {
            let d = d
                .strip_prefix("a ")
                .or_else(|| d.strip_prefix("an "))
                .unwrap_or(&d);
            format!("{verb} {s}: {d}")
        });
        let first = match from_description.filter(|line| line.chars().count() <= 60) {
            Some(line) => line,
            None => match self.features.last() {
                Some(f) => format!("{verb} {s}: {} and more", lower_first(f)),
                None => format!("{verb} {s}"),
            },
        };
        let second = match self.features.as_slice() {
            [a, b, ..] => format!("{} + {}, now in {s}", cap_first(a), lower_first(b)),
            [a] => format!("{}, now in {s}", cap_first(a)),
            [] => format!("Your first look at {s}"),
        };
        let third = match self.segments().first() {
            Some(seg) => format!("Built for {}: {s} is here", soft_lower(seg)),
            None => format!("{} is here — take a look", self.subject_cap()),
        };
        [clean(&first, 90), clean(&second, 90), clean(&third, 90)]
    }

    /// The preheader line.
    pub fn preheader(&self) -> String {
        let s = &self.subject;
        let line = match self.features.len() {
            0 => match &self.description {
                Some(d) => format!("{} — see what's new.", cap_first(d)),
                None => format!("Everything you need to know about {s}, in two minutes."),
            },
            n => {
                let lowered: Vec<String> = self
                    .features
                    .iter()
                    .take(3)
                    .map(|f| lower_first(f))
                    .collect();
                let list = if n > 3 {
                    format!("{} and more", lowered.join(", "))
                } else {
                    join_and(&lowered)
                };
                format!("{} — all in {s}.", cap_first(&list))
            }
        };
        clean(&line, 140)
    }
}

fn push_feature(features: &mut Vec<String>, f: String) {
    if !f.is_empty() && features.len() < MAX_FEATURES && !features.contains(&f) {
        features.push(f);
    }
}

fn push_other(other: &mut Vec<(String, String)>, key: &str, value: &str) {
    if !value.is_empty() && !key.is_empty() && other.len() < MAX_OTHER {
        other.push((key.to_owned(), value.to_owned()));
    }
}

/// Scalars of a JSON array as "a, b, c" (at most 10 items, 200 chars).
fn scalars(items: &[Value]) -> String {
    let parts: Vec<String> = items
        .iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(clean(s, 60)),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
        .filter(|s| !s.is_empty())
        .take(10)
        .collect();
    clean(&parts.join(", "), 200)
}

/// `launch_date` → "Launch date".
fn human_key(key: &str) -> String {
    const ACRONYMS: [&str; 12] = [
        "ai", "api", "cta", "eur", "gbp", "id", "kpi", "roi", "seo", "url", "usd", "utm",
    ];
    let mut out = String::new();
    for word in prefix(key, 160)
        .split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        if ACRONYMS.contains(&word.to_ascii_lowercase().as_str()) {
            out.push_str(&word.to_ascii_uppercase());
        } else {
            out.push_str(word);
        }
    }
    cap_first(&clean(&out, 40))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brief(task: &str, context: Value) -> Brief {
        Brief {
            task: task.to_owned(),
            context,
            ..Brief::default()
        }
    }

    #[test]
    fn subject_is_derived_from_the_task_without_a_product_name() {
        let t = "Create an email campaign for a new product launch targeting tech professionals";
        let f = Facts::read(&brief(t, Value::Null));
        assert_eq!(f.subject, "the new product");
        assert_eq!(f.audience.as_deref(), Some("tech professionals"));
        assert_eq!(f.campaign(), "new-product-launch");
        let f = Facts::read(&brief("Summarize quarterly sales numbers", Value::Null));
        assert_eq!(f.subject, "quarterly sales numbers");
        let f = Facts::read(&brief("Write a newsletter for developers", Value::Null));
        assert_eq!(f.subject, "the product");
        assert_eq!(f.audience.as_deref(), Some("developers"));
    }

    #[test]
    fn context_of_any_shape_is_read() {
        let ctx = serde_json::json!({
            "product_name": "Zed", "key_features": "Fast, Collaborative; Native",
            "launch_date": "2025-06-01", "budget": 5000, "paid": true, "nested": {"a": 1}, "none": null
        });
        let f = Facts::read(&brief("x", ctx));
        assert_eq!(f.features, ["Fast", "Collaborative", "Native"]);
        // serde_json's map order (sorted, or insertion order with `preserve_order`) is kept.
        let mut keys: Vec<&str> = f.other.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["Budget", "Launch date", "Paid"]);
        let f = Facts::read(&brief(
            "x",
            serde_json::json!({"product_name": 7, "key_features": [1, null, "A"]}),
        ));
        assert_eq!(f.product, None);
        assert_eq!(f.features, ["1", "A"]);
    }

    #[test]
    fn segments_split_on_commas_and_and() {
        let f = Facts {
            audience: Some("Software developers and IT professionals".into()),
            ..Facts::default()
        };
        assert_eq!(
            f.split_segments(),
            ["Software developers", "IT professionals"]
        );
        let f = Facts {
            audience: Some("designers, marketers, and founders".into()),
            ..Facts::default()
        };
        assert_eq!(f.split_segments(), ["Designers", "Marketers", "Founders"]);
    }

    #[test]
    fn description_becomes_a_sentence() {
        let f = Facts {
            subject: "TechPro X1".into(),
            description: Some("Advanced AI-powered development tool".into()),
            ..Facts::default()
        };
        assert_eq!(
            f.description_sentence().as_deref(),
            Some("TechPro X1 is an advanced AI-powered development tool.")
        );
    }
}
