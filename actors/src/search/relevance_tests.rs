//! Relevance of the hashing embedder on a small labelled set: 30 memory items across topics
//! and 10 queries, each worded differently from the item it should find.

use super::{Embedder, HashingEmbedder, VectorIndex};

/// Memory items: facts, context, decisions and feedback across a dozen topics, with overlapping
/// vocabulary between topics (customers, plans, users, approval, new, ...).
const ITEMS: [&str; 30] = [
    // billing
    "Invoices are emailed to customers on the first business day of each month.",
    "Failed card payments are retried three times before the account is suspended.",
    "Refunds over $500 need approval from the finance lead.",
    // deployment
    "Production deploys happen only on Tuesdays and Thursdays after 10am UTC.",
    "Every release must pass the staging smoke tests before it is promoted.",
    "Rollbacks are done with the previous container image tag, never by hotfixing in place.",
    // brand voice
    "Our brand voice is friendly and plain-spoken; avoid jargon and exclamation marks.",
    "Always write the product name as 'Acme Cloud', never 'ACME' or 'AcmeCloud'.",
    "Social media posts use first person plural and a light, optimistic tone.",
    // pricing
    "The Pro plan costs $49 per seat per month, billed annually.",
    "Enterprise pricing is negotiated case by case with a minimum of 50 seats.",
    "Discounts above 20 percent require sign-off from the VP of sales.",
    // onboarding
    "New customers get a 30-minute kickoff call within their first week.",
    "The onboarding checklist covers SSO setup, data import and inviting teammates.",
    "New hires receive a laptop and their accounts on the first day from IT.",
    // security
    "Passwords must be at least 14 characters long and are rotated yearly.",
    "All customer data is encrypted at rest with AES-256.",
    "Security incidents must be reported to the on-call engineer within one hour.",
    // support
    "Support tickets from enterprise customers are answered within four hours.",
    "Escalate bugs that block many users to the engineering triage channel.",
    // analytics
    "Weekly active users is the north-star metric for the growth team.",
    "Dashboards in Looker refresh every night at 2am.",
    // infrastructure
    "The primary Postgres database is backed up every six hours to S3.",
    "Redis is used as a cache for session tokens, not as durable storage.",
    // legal
    "Customer contracts renew automatically unless cancelled 60 days before the end of the term.",
    "We do not sell personal data; the privacy policy was last updated in March.",
    // marketing
    "The spring campaign targets mid-size agencies through LinkedIn ads.",
    // feedback
    "Users complained that the mobile app logs them out too often.",
    "Customers love the CSV export but want scheduled exports.",
    // decision
    "We decided to sunset the legacy v1 API at the end of the year.",
];

/// Queries and the index of the item each should find first. Each paraphrases its target: other
/// inflections (`invoice`/`Invoices`, `deploy`/`deploys`, `signed`/`sign-off`), other words
/// around the topic, and distractors that share words with other items.
const QUERIES: [(&str, usize); 10] = [
    ("When do customers get their monthly invoice?", 0),
    ("What happens after a credit card charge fails?", 1),
    ("Which weekdays can we deploy to production?", 3),
    ("How should we roll back a broken deployment?", 5),
    ("What tone should our social posts have?", 8),
    ("How much is the Pro plan for each seat?", 9),
    ("Who has to sign off on a big discount?", 11),
    ("What are the rules for password length?", 15),
    ("How often do we back up the database?", 22),
    ("Why are people signed out of the phone app so often?", 27),
];

/// More queries, written after the embedder was tuned on [`QUERIES`] and not used to tune it.
const MORE_QUERIES: [(&str, usize); 20] = [
    ("How long until a refund gets approved by finance?", 2),
    ("What checks must a release pass before going live?", 4),
    ("What should I avoid in our writing style?", 6),
    ("How do we spell the product's name?", 7),
    ("Are enterprise prices negotiable?", 10),
    ("What is the first call with a new customer?", 12),
    ("What does the onboarding checklist include?", 13),
    ("What does a new employee get on day one?", 14),
    ("Is customer data encrypted?", 16),
    ("Who do I tell about a security incident?", 17),
    ("How fast do we reply to enterprise support tickets?", 18),
    ("Which channel gets bug escalations?", 19),
    ("Which metric does the growth team care about most?", 20),
    ("When do the Looker dashboards update?", 21),
    ("Is Redis durable storage?", 23),
    ("Do contracts renew on their own?", 24),
    ("Do we sell customer data?", 25),
    ("Who is the spring campaign aimed at?", 26),
    ("Can users schedule CSV exports?", 28),
    ("When is the old API being retired?", 29),
];

/// The 1-based rank of each query's target among all items.
fn ranks(embedder: &dyn Embedder, queries: &[(&str, usize)]) -> Vec<usize> {
    let mut index = VectorIndex::new(embedder.dims(), usize::MAX);
    for (id, text) in ITEMS.iter().enumerate() {
        index.insert(id as u128, embedder.embed(text));
    }
    queries
        .iter()
        .map(|(query, target)| {
            let results = index.search(&embedder.embed(query), ITEMS.len(), &|_| true);
            results
                .iter()
                .position(|r| r.0 == *target as u128)
                .map_or(usize::MAX, |p| p + 1)
        })
        .collect()
}

fn first_and_worst(ranks: &[usize]) -> (usize, usize) {
    let first = ranks.iter().filter(|r| **r == 1).count();
    (first, ranks.iter().copied().max().unwrap_or(0))
}

#[test]
fn related_items_rank_first() {
    let ranks = ranks(&HashingEmbedder::default(), &QUERIES);
    let (first, worst) = first_and_worst(&ranks);
    assert!(first >= 9 && worst <= 3, "ranks {ranks:?}");
}

#[test]
fn more_queries_rank_high() {
    let ranks = ranks(&HashingEmbedder::default(), &MORE_QUERIES);
    let (first, worst) = first_and_worst(&ranks);
    assert!(first >= 18 && worst <= 3, "ranks {ranks:?}");
}

/// Lower-cased words hashed as they are: no stop-words, stems, bigrams or compounds.
struct RawWords;

impl Embedder for RawWords {
    fn dims(&self) -> usize {
        512
    }
    fn name(&self) -> &str {
        "raw-words"
    }
    fn embed(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; 512];
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in word.to_lowercase().bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
            v[(h % 512) as usize] += 1.0;
        }
        super::normalize(&mut v);
        v
    }
}

/// Constant: every text to one vector.
struct Constant;

impl Embedder for Constant {
    fn dims(&self) -> usize {
        4
    }
    fn name(&self) -> &str {
        "constant"
    }
    fn embed(&self, _: &str) -> Vec<f32> {
        vec![0.5; 4]
    }
}

/// The bar is not met by chance: an embedder that ignores the text, one that maps every text
/// to one bucket, and plain word hashing without text analysis all fall short of it.
#[test]
fn the_bar_rejects_weak_embedders() {
    let passes = |ranks: &[usize]| {
        let (first, worst) = first_and_worst(ranks);
        first >= 9 && worst <= 3
    };
    assert!(!passes(&ranks(&Constant, &QUERIES)));
    assert!(!passes(&ranks(&HashingEmbedder::new(1), &QUERIES)));
    let raw = ranks(&RawWords, &QUERIES);
    assert!(!passes(&raw), "raw words: {raw:?}");
}
