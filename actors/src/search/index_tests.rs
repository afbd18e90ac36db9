//! Tests of [`super::VectorIndex`] in both modes: exact answers, HNSW recall, removal, filters,
//! replacement and mode changes, plus a property test against a plain model.

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use proptest::prelude::*;

use super::{VectorIndex, dot};

/// A small deterministic generator (SplitMix64) so the tests need no `rand`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// A standard normal sample (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    /// A uniformly random unit vector.
    pub fn unit_vector(&mut self, dims: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dims).map(|_| self.normal()).collect();
        super::normalize(&mut v);
        v
    }
}

fn random_index(
    n: usize,
    dims: usize,
    threshold: usize,
    seed: u64,
) -> (VectorIndex, Vec<Vec<f32>>) {
    let mut rng = Rng::new(seed);
    let mut index = VectorIndex::new(dims, threshold);
    let mut vectors = Vec::with_capacity(n);
    for id in 0..n {
        let v = rng.unit_vector(dims);
        index.insert(id as u128, v.clone());
        vectors.push(v);
    }
    (index, vectors)
}

/// The true top `k` by brute force.
fn brute(
    vectors: &[Vec<f32>],
    q: &[f32],
    k: usize,
    keep: impl Fn(u128) -> bool,
) -> Vec<(u128, f32)> {
    let mut all: Vec<(u128, f32)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u128, dot(v, q)))
        .filter(|(id, _)| keep(*id))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn ids(results: &[(u128, f32)]) -> Vec<u128> {
    results.iter().map(|r| r.0).collect()
}

#[test]
fn exact_scan_returns_the_true_top_k() {
    let (index, vectors) = random_index(1000, 32, usize::MAX, 1);
    assert!(!index.is_approximate());
    assert_eq!(index.len(), 1000);
    let mut rng = Rng::new(2);
    for _ in 0..20 {
        let q = rng.unit_vector(32);
        let got = index.search(&q, 10, &|_| true);
        let want = brute(&vectors, &q, 10, |_| true);
        assert_eq!(ids(&got), ids(&want));
        for (g, w) in got.iter().zip(&want) {
            assert!((g.1 - w.1).abs() < 1e-5);
        }
        assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
    }
    assert!(index.search(&[1.0; 32], 0, &|_| true).is_empty());
    assert_eq!(index.search(&[1.0; 32], 5000, &|_| true).len(), 1000);
}

/// recall@10 of the approximate index against brute force, over `queries` random queries.
fn recall(index: &VectorIndex, vectors: &[Vec<f32>], dims: usize, queries: usize) -> f64 {
    let mut rng = Rng::new(99);
    let mut hits = 0;
    for _ in 0..queries {
        let q = rng.unit_vector(dims);
        let want: HashSet<u128> = ids(&brute(vectors, &q, 10, |_| true)).into_iter().collect();
        let got = index.search(&q, 10, &|_| true);
        assert_eq!(got.len(), 10);
        hits += got.iter().filter(|r| want.contains(&r.0)).count();
    }
    hits as f64 / (queries * 10) as f64
}

/// 5,000 random unit vectors of 64 dimensions in an index with the ANN threshold at 200, built
/// once for the tests that share it.
fn ann_5000() -> &'static (VectorIndex, Vec<Vec<f32>>) {
    static INDEX: LazyLock<(VectorIndex, Vec<Vec<f32>>)> =
        LazyLock::new(|| random_index(5000, 64, 200, 7));
    &INDEX
}

#[test]
fn hnsw_recall_at_10_on_5000_random_unit_vectors() {
    let (index, vectors) = ann_5000();
    assert!(index.is_approximate());
    let r = recall(index, vectors, 64, 200);
    assert!(r >= 0.9, "recall@10 = {r}");
}

#[test]
fn the_ann_index_starts_at_the_threshold() {
    let mut rng = Rng::new(3);
    let mut index = VectorIndex::new(8, 50);
    for id in 0..49u128 {
        index.insert(id, rng.unit_vector(8));
    }
    assert!(!index.is_approximate());
    index.insert(49, rng.unit_vector(8));
    assert!(index.is_approximate());
    // Back below the threshold: exact again (the graph is kept until a compaction).
    assert!(index.remove(0));
    assert!(!index.is_approximate());
    index.insert(0, rng.unit_vector(8));
    assert!(index.is_approximate());
    // Far below the threshold, the compaction that removals trigger drops the graph; crossing
    // the threshold again builds a new one.
    for id in 0..40u128 {
        assert!(index.remove(id));
    }
    assert!(!index.is_approximate());
    let q = rng.unit_vector(8);
    let exact = index.search(&q, 10, &|_| true);
    assert_eq!(exact.len(), 10);
    for id in 100..140u128 {
        index.insert(id, rng.unit_vector(8));
    }
    assert!(index.is_approximate());
    assert_eq!(index.len(), 50);
    assert_eq!(index.search(&q, 50, &|_| true).len(), 50);
    // Threshold 0: approximate from the first entry.
    let mut index = VectorIndex::new(8, 0);
    index.insert(1, rng.unit_vector(8));
    assert!(index.is_approximate());
    assert_eq!(ids(&index.search(&[1.0; 8], 3, &|_| true)), [1]);
}

#[test]
fn removed_ids_are_never_returned() {
    for threshold in [usize::MAX, 100] {
        let (mut index, vectors) = random_index(2000, 16, threshold, 11);
        // A few removals (tombstones only) and then many (compactions and rebuilds).
        for step in [10u128, 3] {
            for id in (0..2000u128).filter(|id| id % step == 1) {
                index.remove(id);
            }
            let gone = |id: u128| id % 10 == 1 || (step == 3 && id % 3 == 1);
            assert!(!index.remove(1));
            let live = (0..2000u128).filter(|id| !gone(*id)).count();
            assert_eq!(index.len(), live);
            for (id, v) in vectors.iter().enumerate().take(60) {
                let got = index.search(v, 10, &|_| true);
                assert_eq!(got.len(), 10);
                assert!(got.iter().all(|r| !gone(r.0)), "threshold {threshold}");
                if !gone(id as u128) {
                    assert_eq!(got[0].0, id as u128, "an entry finds itself");
                }
            }
            let all = index.search(&vectors[0], 5000, &|_| true);
            assert_eq!(all.len(), live);
            assert!(all.iter().all(|r| !gone(r.0)));
        }
        assert_eq!(index.is_approximate(), threshold == 100);
    }
}

/// Checks `keep` filters of several selectivities on `index`: only kept ids, `min(k, kept)` of
/// them, mostly the true top ones.
fn check_filters(index: &VectorIndex, vectors: &[Vec<f32>], dims: usize) {
    let mut rng = Rng::new(22);
    let n = vectors.len() as u128;
    for _ in 0..10 {
        let q = rng.unit_vector(dims);
        // Nearly all (the graph), half, rare and very rare (exact scans), and none.
        let filters: [(&str, &dyn Fn(u128) -> bool); 6] = [
            ("9/10", &|id| id % 10 != 0),
            ("1/2", &|id| id % 2 == 0),
            ("1/10", &|id| id % 10 == 3),
            ("1/100", &|id| id % 100 == 7),
            ("two", &move |id| id == 0 || id == n / 2),
            ("none", &|_| false),
        ];
        for (name, keep) in filters {
            let got = index.search(&q, 10, keep);
            let want = brute(vectors, &q, 10, keep);
            assert_eq!(got.len(), want.len(), "{name}");
            assert!(got.iter().all(|r| keep(r.0)), "{name}");
            let unique: HashSet<u128> = ids(&got).into_iter().collect();
            assert_eq!(unique.len(), got.len(), "{name}");
            let found = got
                .iter()
                .filter(|g| want.iter().any(|w| w.0 == g.0))
                .count();
            assert!(
                found * 10 >= want.len() * 8,
                "{name}: {found} of {}",
                want.len()
            );
        }
    }
}

#[test]
fn keep_filters_exact() {
    let (index, vectors) = random_index(3000, 32, usize::MAX, 21);
    check_filters(&index, &vectors, 32);
}

#[test]
fn keep_filters_ann() {
    let (index, vectors) = ann_5000();
    check_filters(index, vectors, 64);
    // Keeping exactly the slots the selectivity sample looks at (every 19th of 5,000) makes a
    // 1-in-19 filter look like no filter: the graph is tried, and its visit budget or its
    // shortfall hands the search to an exact scan.
    let keep = |id: u128| id.is_multiple_of(19);
    let mut rng = Rng::new(23);
    for _ in 0..10 {
        let q = rng.unit_vector(64);
        let got = index.search(&q, 10, &keep);
        let want = brute(vectors, &q, 10, keep);
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|r| keep(r.0)));
        let found = got
            .iter()
            .filter(|g| want.iter().any(|w| w.0 == g.0))
            .count();
        assert!(found >= 8, "{found}");
    }
}

#[test]
fn replacing_an_id_keeps_one_entry() {
    for threshold in [usize::MAX, 0] {
        let (mut index, _) = random_index(300, 8, threshold, 31);
        let target = vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        for _ in 0..3 {
            index.insert(5, vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
            index.insert(5, target.clone());
        }
        assert_eq!(index.len(), 300);
        let got = index.search(&target, 300, &|_| true);
        assert_eq!(got.len(), 300);
        assert_eq!(got.iter().filter(|r| r.0 == 5).count(), 1);
        assert_eq!(got[0].0, 5);
        assert!((got[0].1 - 1.0).abs() < 1e-5);
        // Re-inserting an unchanged vector leaves the index as it was.
        let before = index.clone();
        index.insert(5, target.clone());
        assert_eq!(format!("{before:?}"), format!("{index:?}"));
    }
}

#[test]
fn odd_vectors_are_sanitised() {
    let mut index = VectorIndex::new(4, usize::MAX);
    assert!(index.is_empty());
    assert!(index.search(&[1.0, 0.0, 0.0, 0.0], 3, &|_| true).is_empty());
    index.insert(1, vec![2.0, 0.0]); // short: padded, then normalised
    index.insert(2, vec![0.0, 3.0, 0.0, 0.0, 9.0]); // long: cut
    index.insert(3, vec![f32::NAN, f32::INFINITY, 0.0, 1.0]); // non-finite: zeroed
    index.insert(4, vec![]); // zero vector: scores 0
    let got = index.search(&[10.0, 0.0, 0.0, 0.0], 4, &|_| true);
    assert_eq!(got[0], (1, 1.0));
    assert!(got.iter().all(|r| r.1.is_finite()));
    assert_eq!(index.search(&[0.0, 1.0], 1, &|_| true), [(2, 1.0)]);
    assert_eq!(
        index.search(&[0.0, 0.0, 0.0, 1.0], 1, &|_| true),
        [(3, 1.0)]
    );
    assert_eq!(VectorIndex::new(0, 0).dims(), 1);
    // A zero query (text with no tokens) matches nothing.
    assert!(index.search(&[0.0; 4], 4, &|_| true).is_empty());
    assert!(index.search(&[], 4, &|_| true).is_empty());
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u8, u8),
    Remove(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<u8>(), any::<u8>()).prop_map(|(id, seed)| Op::Insert(id, seed)),
        2 => any::<u8>().prop_map(Op::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn behaves_like_a_map(
        ops in proptest::collection::vec(op(), 0..400),
        threshold in prop_oneof![Just(0usize), Just(20), Just(usize::MAX)],
        k in 1usize..12,
        modulus in 1u128..4,
    ) {
        let mut index = VectorIndex::new(6, threshold);
        let mut model: BTreeMap<u128, Vec<f32>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(id, seed) => {
                    let v = Rng::new(u64::from(seed)).unit_vector(6);
                    index.insert(u128::from(id), v.clone());
                    model.insert(u128::from(id), v);
                }
                Op::Remove(id) => {
                    prop_assert_eq!(index.remove(u128::from(id)), model.remove(&u128::from(id)).is_some());
                }
            }
            prop_assert_eq!(index.len(), model.len());
        }
        let keep = move |id: u128| id.is_multiple_of(modulus);
        let q = Rng::new(5).unit_vector(6);
        let got = index.search(&q, k, &keep);
        let kept = model.keys().filter(|id| keep(**id)).count();
        prop_assert_eq!(got.len(), k.min(kept));
        let unique: HashSet<u128> = ids(&got).into_iter().collect();
        prop_assert_eq!(unique.len(), got.len());
        for (id, score) in &got {
            let v = model.get(id);
            prop_assert!(v.is_some() && keep(*id));
            prop_assert!((dot(v.map_or(&[][..], |v| v), &q) - score).abs() < 1e-5);
        }
        prop_assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
    }
}
