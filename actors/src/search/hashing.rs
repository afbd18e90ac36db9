//! The default embedder: signed feature hashing of analysed words, word bigrams and phrasal
//! compounds.
//!
//! No model files and no state: a text's vector depends only on the text and `dims`, and is the
//! same on every run and machine (FNV-1a with a fixed finaliser, features summed in a fixed
//! order, a logarithm built from exactly-rounded operations). Relevance comes from shared terms
//! after stemming, so paraphrases that keep a topic word in any inflection (`invoices` /
//! `invoicing`) or spell a compound apart (`roll back` / `rollbacks`) match; pure synonyms do
//! not. The analysis rules and the hash are part of the vector space named by
//! [`Embedder::name`]: changing them means a new name and re-embedding stored items.

use super::text;
use super::{Embedder, ln, normalize};

/// The default number of dimensions.
pub const DEFAULT_DIMS: usize = 512;

/// Weight of a word bigram relative to a single word.
const BIGRAM_WEIGHT: f32 = 0.5;

/// Weight of two neighbouring words read as one compound word.
const COMPOUND_WEIGHT: f32 = 1.0;

/// Buckets each feature is spread over. A real shared feature adds up in all of them, while a
/// chance collision between two different features usually hits one, so with four probes a
/// collision is worth a quarter of a shared word instead of a whole one.
const PROBES: u64 = 4;
/// `1 / sqrt(PROBES)`: keeps a feature's total weight independent of the probe count.
const PROBE_SCALE: f32 = 0.5;

/// Tag of the hash space of single words (stems and compounds).
const TAG_WORD: u8 = 1;
/// Tag of the hash space of bigrams.
const TAG_BIGRAM: u8 = 2;

/// The default embedder: deterministic feature hashing, no model files.
///
/// Words are lower-cased (Unicode-aware), stop-words dropped and stems taken. The features are
/// each stem, each pair of neighbouring stems (half weight) and each word written together with
/// the particle after it (`back up` → `backup`, in the space of single words). A feature with
/// term frequency `tf` weighs `1 + ln(tf)` and is added, with hash-derived signs, to four
/// hash-chosen buckets of `dims`; the vector is then L2-normalised.
#[derive(Clone, Debug)]
pub struct HashingEmbedder {
    dims: usize,
    name: String,
}

impl HashingEmbedder {
    /// An embedder with `dims` buckets (at least 1; [`DEFAULT_DIMS`] is a good default).
    pub fn new(dims: usize) -> Self {
        let dims = dims.max(1);
        Self {
            dims,
            name: format!("hashing-{dims}"),
        }
    }
}

impl Default for HashingEmbedder {
    fn default() -> Self {
        Self::new(DEFAULT_DIMS)
    }
}

impl Embedder for HashingEmbedder {
    fn dims(&self) -> usize {
        self.dims
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn embed(&self, text: &str) -> Vec<f32> {
        let words = text::words(text);
        let terms = text::terms(&words);
        let compounds = text::compounds(&words);
        let mut features: Vec<(u64, f32)> = Vec::with_capacity(terms.len() * 2 + compounds.len());
        for term in &terms {
            features.push((hash(TAG_WORD, &[term]), 1.0));
        }
        for pair in terms.windows(2) {
            if let [a, b] = pair {
                features.push((hash(TAG_BIGRAM, &[a, b]), BIGRAM_WEIGHT));
            }
        }
        for compound in &compounds {
            // In the words' space: `roll back` meets the word `rollback`.
            features.push((hash(TAG_WORD, &[compound]), COMPOUND_WEIGHT));
        }
        // Sorting makes both the counting and the order of the float sums deterministic.
        features.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut vector = vec![0f32; self.dims];
        let dims = self.dims as u64;
        let mut rest = features.as_slice();
        while let Some(&(h, weight)) = rest.first() {
            let tf = rest.iter().take_while(|f| f.0 == h).count();
            rest = &rest[tf..];
            let value = weight * (1.0 + ln(tf as f64) as f32) * PROBE_SCALE;
            for probe in 0..PROBES {
                let p = mix(h.wrapping_add(probe.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
                let bucket = usize::try_from(p % dims).unwrap_or(0);
                if let Some(slot) = vector.get_mut(bucket) {
                    *slot += if p >> 63 == 0 { value } else { -value };
                }
            }
        }
        normalize(&mut vector);
        vector
    }
}

/// FNV-1a (64-bit) over a tag byte and the parts separated by 0x1F, then the MurmurHash3 64-bit
/// finaliser so that every bit (the bucket's low bits, the sign's top bit) is well mixed.
fn hash(tag: u8, parts: &[&String]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = (OFFSET ^ u64::from(tag)).wrapping_mul(PRIME);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h = (h ^ 0x1f).wrapping_mul(PRIME);
        }
        for b in part.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(PRIME);
        }
    }
    mix(h)
}

/// The MurmurHash3 64-bit finaliser.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::search::dot;

    #[test]
    fn vectors_are_unit_length_or_zero() {
        let e = HashingEmbedder::default();
        assert_eq!(e.dims(), 512);
        assert_eq!(e.name(), "hashing-512");
        let v = e.embed("Deploy the billing service on Friday");
        assert_eq!(v.len(), 512);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-5);
        for empty in ["", "   ", "the of and", "!!! ???", "a b c"] {
            let z = e.embed(empty);
            assert_eq!(z.len(), 512);
            assert!(z.iter().all(|x| *x == 0.0), "{empty:?}");
        }
        assert_eq!(HashingEmbedder::new(0).embed("hello world").len(), 1);
    }

    #[test]
    fn hashing_is_version_stable() {
        // Pinned values: if these change, every stored vector in every deployment changes.
        let s = |s: &str| s.to_owned();
        assert_eq!(hash(TAG_WORD, &[&s("invoic")]), 0xc65d_6e5b_543e_e575);
        assert_ne!(hash(TAG_WORD, &[&s("ab")]), hash(TAG_BIGRAM, &[&s("ab")]));
        assert_ne!(
            hash(TAG_BIGRAM, &[&s("ab"), &s("c")]),
            hash(TAG_BIGRAM, &[&s("a"), &s("bc")])
        );
        let v = HashingEmbedder::new(16).embed("Invoices, invoicing and refunds");
        let pinned: Vec<(usize, f32)> = PINNED.to_vec();
        let got: Vec<(usize, f32)> = v
            .iter()
            .enumerate()
            .filter(|(_, x)| **x != 0.0)
            .map(|(i, x)| (i, *x))
            .collect();
        assert_eq!(got.len(), pinned.len(), "{got:?}");
        for (g, p) in got.iter().zip(&pinned) {
            assert!(g.0 == p.0 && (g.1 - p.1).abs() < 1e-6, "{got:?}");
        }
    }

    /// The non-zero buckets of "Invoices, invoicing and refunds" at 16 dims.
    const PINNED: &[(usize, f32)] = &[
        (0, -0.354_177),
        (2, -0.209_182_66),
        (3, 0.104_591_33),
        (4, -0.104_591_33),
        (7, 0.354_177),
        (9, -0.418_365_33),
        (10, 0.563_359_7),
        (12, -0.354_177),
        (13, -0.209_182_66),
        (14, -0.104_591_33),
        (15, 0.104_591_33),
    ];

    #[test]
    fn ln_matches_the_platform_ln() {
        for x in [1.0, 1.5, 2.0, 3.0, 10.0, 1e3, 123_456.0, 1e12] {
            assert!((ln(x) - x.ln()).abs() < 1e-12, "{x}");
        }
        assert_eq!(ln(0.5), 0.0);
        assert_eq!(ln(f64::NAN), 0.0);
    }

    #[test]
    fn deterministic_and_order_insensitive_for_words() {
        let e = HashingEmbedder::default();
        assert_eq!(e.embed("refund policy"), e.embed("refund policy"));
        assert_eq!(e.embed("Refunds POLICY!"), e.embed("refund policy"));
        // Same words, other order: only the bigram differs.
        let s = dot(&e.embed("refund policy"), &e.embed("policy refund"));
        assert!(s > 0.6 && s < 0.99, "{s}");
    }

    #[test]
    fn term_frequency_is_sublinear() {
        let e = HashingEmbedder::new(4096);
        let once = e.embed("invoice refund");
        let many = e.embed("invoice invoice invoice invoice refund");
        // With raw counts the invoice share would be 4x; with 1 + ln(tf) it is ~2.4x.
        let ratio = |v: &[f32]| {
            let i = e.embed("invoice");
            let r = e.embed("refund");
            dot(v, &i) / dot(v, &r)
        };
        assert!((ratio(&once) - 1.0).abs() < 0.05);
        let r = ratio(&many);
        assert!((r - (1.0 + 4f32.ln())).abs() < 0.05, "{r}");
    }
}
