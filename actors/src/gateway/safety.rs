//! The content-safety filter on model output: blocked terms (whole words, any case) and
//! regular expressions from the configuration. A blocked answer fails the call with
//! `content_filtered`, and the verdict names the rule.

use regex::RegexSet;

/// The output filter.
#[derive(Clone, Debug, Default)]
pub struct SafetyFilter {
    set: Option<RegexSet>,
    rules: Vec<String>,
}

impl SafetyFilter {
    /// A filter blocking `terms` and `patterns`; an invalid pattern is an error naming it.
    pub fn new(terms: &[String], patterns: &[String]) -> Result<Self, String> {
        let mut sources = Vec::new();
        let mut rules = Vec::new();
        for t in terms.iter().filter(|t| !t.trim().is_empty()) {
            sources.push(format!(r"(?i)\b{}\b", regex::escape(t.trim())));
            rules.push(format!("blocked term {:?}", t.trim()));
        }
        for p in patterns {
            regex::Regex::new(p).map_err(|e| format!("pattern {p:?}: {e}"))?;
            sources.push(p.clone());
            rules.push(format!("blocked pattern /{p}/"));
        }
        if sources.is_empty() {
            return Ok(Self::default());
        }
        let set = RegexSet::new(&sources).map_err(|e| e.to_string())?;
        Ok(Self {
            set: Some(set),
            rules,
        })
    }

    /// `Ok` if `text` passes; else the verdict (the first rule it broke).
    pub fn check(&self, text: &str) -> Result<(), String> {
        let Some(set) = &self.set else {
            return Ok(());
        };
        match set.matches(text).iter().next() {
            Some(i) => Err(self
                .rules
                .get(i)
                .cloned()
                .unwrap_or_else(|| "blocked".into())),
            None => Ok(()),
        }
    }

    /// True when there is nothing to check.
    pub fn is_empty(&self) -> bool {
        self.set.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_match_whole_words_in_any_case_and_patterns_match_as_written() {
        let f = SafetyFilter::new(
            &["confidential".into(), "launch code".into()],
            &[r"\b\d{3}-\d{2}-\d{4}\b".into()],
        )
        .unwrap();
        assert!(f.check("All clear.").is_ok());
        assert!(f.check("nonconfidentiality is fine").is_ok());
        assert_eq!(
            f.check("This is CONFIDENTIAL.").unwrap_err(),
            "blocked term \"confidential\""
        );
        assert!(f.check("the Launch Code is").is_err());
        assert!(f.check("ssn 123-45-6789").unwrap_err().contains("pattern"));
        assert!(SafetyFilter::new(&[], &["(".into()]).is_err());
        assert!(SafetyFilter::new(&[], &[]).unwrap().is_empty());
    }
}
