//! A small HNSW graph (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor
//! search using Hierarchical Navigable Small World graphs") over vectors stored by the caller.
//!
//! Nodes are dense `u32` numbers, appended in order; the vectors live in one flat slice owned by
//! [`super::VectorIndex`] (node `n` is `vectors[n * dims..][..dims]`) and are passed to every
//! call. Similarity is the dot product (vectors are unit length). Nodes are never removed: the
//! index tombstones them (they stay navigable but are filtered out of results) and rebuilds the
//! graph when tombstones pile up.
//!
//! Deterministic: a node's level comes from a fixed hash of its number, not from a random source,
//! so the same inserts always build the same graph.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::{dot, ln};

/// Neighbours kept per node on the upper layers (and chosen for a new node on every layer).
const M: usize = 16;
/// Neighbours kept per node on layer 0.
const M0: usize = 2 * M;
/// Width of the candidate list while inserting.
const EF_CONSTRUCTION: usize = 100;
/// Highest layer a node can be given.
const MAX_LEVEL: usize = 16;
/// Seed of the level hash.
const LEVEL_SEED: u64 = 0x5eed_a1e5_4e5a_2c4d;

/// A node and its similarity to the query, ordered by similarity (then by node, so that ties
/// break the same way every time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    /// Similarity to the query.
    pub sim: f32,
    /// The node.
    pub node: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sim
            .total_cmp(&other.sim)
            .then_with(|| other.node.cmp(&self.node))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The answer of a layer-0 search: accepted nodes, best first, and how the search ended.
#[derive(Debug, Default)]
pub struct Found {
    /// Accepted nodes, most similar first.
    pub best: Vec<Scored>,
    /// Nodes whose similarity was computed.
    pub visited: usize,
    /// False when the search stopped at its visit budget rather than by itself.
    pub complete: bool,
}

/// The graph: for each node, its neighbour lists from layer 0 up to its level.
#[derive(Clone, Debug, Default)]
pub struct Hnsw {
    links: Vec<Vec<Vec<u32>>>,
    entry: Option<u32>,
    top: usize,
}

/// The vector of `node`, or an empty slice if the storage does not have it.
fn vector(vectors: &[f32], dims: usize, node: u32) -> &[f32] {
    let start = (node as usize).saturating_mul(dims);
    vectors
        .get(start..start.saturating_add(dims))
        .unwrap_or(&[])
}

/// The layer of a new node: `floor(ln(1 / u) / ln(M))` for a hash-derived uniform `u` in (0, 1].
fn level_of(node: u32) -> usize {
    let mut z = u64::from(node) ^ LEVEL_SEED;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let level = (ln(1.0 / u) / ln(M as f64)).floor();
    if level.is_finite() && level > 0.0 {
        (level as usize).min(MAX_LEVEL)
    } else {
        0
    }
}

/// A set of node numbers as a bit set.
struct Visited(Vec<u64>);

impl Visited {
    fn new(nodes: usize) -> Self {
        Self(vec![0; nodes / 64 + 1])
    }

    /// Adds `node`; true if it was not there.
    fn insert(&mut self, node: u32) -> bool {
        let (word, bit) = ((node / 64) as usize, node % 64);
        match self.0.get_mut(word) {
            Some(w) if *w & (1 << bit) == 0 => {
                *w |= 1 << bit;
                true
            }
            _ => false,
        }
    }
}

impl Hnsw {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    fn neighbours(&self, node: u32, layer: usize) -> &[u32] {
        self.links
            .get(node as usize)
            .and_then(|l| l.get(layer))
            .map_or(&[], Vec::as_slice)
    }

    /// Adds the next node (its number is [`Hnsw::len`]), whose vector is already in `vectors`.
    pub fn push(&mut self, vectors: &[f32], dims: usize) {
        let Ok(node) = u32::try_from(self.links.len()) else {
            return;
        };
        let level = level_of(node);
        self.links.push(vec![Vec::new(); level + 1]);
        let Some(mut ep) = self.entry else {
            self.entry = Some(node);
            self.top = level;
            return;
        };
        let q = vector(vectors, dims, node);
        for layer in (level + 1..=self.top).rev() {
            ep = self.greedy(q, ep, layer, vectors, dims);
        }
        for layer in (0..=level.min(self.top)).rev() {
            let found = self.search_layer(q, ep, EF_CONSTRUCTION, layer, (vectors, dims), None);
            let chosen = select(&found.best, M, vectors, dims);
            let cap = if layer == 0 { M0 } else { M };
            for &nb in &chosen {
                self.link(nb, node, layer, cap, vectors, dims);
            }
            if let Some(slot) = self
                .links
                .get_mut(node as usize)
                .and_then(|l| l.get_mut(layer))
            {
                *slot = chosen;
            }
            if let Some(best) = found.best.first() {
                ep = best.node;
            }
        }
        if level > self.top {
            self.entry = Some(node);
            self.top = level;
        }
    }

    /// Adds `to` to the neighbours of `from` on `layer`, pruning the list back to `cap` with the
    /// selection heuristic when it overflows.
    fn link(&mut self, from: u32, to: u32, layer: usize, cap: usize, vectors: &[f32], dims: usize) {
        let Some(list) = self
            .links
            .get_mut(from as usize)
            .and_then(|l| l.get_mut(layer))
        else {
            return;
        };
        list.push(to);
        if list.len() <= cap {
            return;
        }
        let base = vector(vectors, dims, from);
        let mut scored: Vec<Scored> = list
            .iter()
            .map(|&n| Scored {
                sim: dot(base, vector(vectors, dims, n)),
                node: n,
            })
            .collect();
        scored.sort_unstable_by(|a, b| b.cmp(a));
        *list = select(&scored, cap, vectors, dims);
    }

    /// Greedy descent on one layer: the neighbour of `ep` most similar to `q`, repeatedly.
    fn greedy(&self, q: &[f32], mut ep: u32, layer: usize, vectors: &[f32], dims: usize) -> u32 {
        let mut best = dot(q, vector(vectors, dims, ep));
        loop {
            let mut moved = false;
            for &nb in self.neighbours(ep, layer) {
                let sim = dot(q, vector(vectors, dims, nb));
                if sim > best {
                    best = sim;
                    ep = nb;
                    moved = true;
                }
            }
            if !moved {
                return ep;
            }
        }
    }

    /// Best-first search of one layer from `ep`, keeping the `ef` best nodes that the filter
    /// takes (all nodes when it is `None`), and giving up after computing the filter's visit
    /// budget of similarities. Rejected nodes are still traversed, and while fewer than `ef`
    /// nodes are accepted the search keeps widening, so a selective filter explores further
    /// instead of returning short.
    fn search_layer(
        &self,
        q: &[f32],
        ep: u32,
        ef: usize,
        layer: usize,
        (vectors, dims): (&[f32], usize),
        filter: Option<(&dyn Fn(u32) -> bool, usize)>,
    ) -> Found {
        let ef = ef.max(1);
        let takes = |n: u32| filter.is_none_or(|(f, _)| f(n));
        let budget = filter.map_or(usize::MAX, |(_, budget)| budget);
        let mut complete = true;
        let mut visited = Visited::new(self.links.len());
        visited.insert(ep);
        let first = Scored {
            sim: dot(q, vector(vectors, dims, ep)),
            node: ep,
        };
        let mut count = 1;
        let mut candidates = BinaryHeap::from([first]);
        let mut best: BinaryHeap<Reverse<Scored>> = BinaryHeap::new();
        if takes(ep) {
            best.push(Reverse(first));
        }
        let mut bound = best.peek().map_or(f32::NEG_INFINITY, |w| w.0.sim);
        'search: while let Some(c) = candidates.pop() {
            if best.len() >= ef && c.sim < bound {
                break;
            }
            for &nb in self.neighbours(c.node, layer) {
                if !visited.insert(nb) {
                    continue;
                }
                if count >= budget {
                    complete = false;
                    break 'search;
                }
                count += 1;
                let sim = dot(q, vector(vectors, dims, nb));
                if best.len() < ef || sim > bound {
                    let s = Scored { sim, node: nb };
                    candidates.push(s);
                    if takes(nb) {
                        best.push(Reverse(s));
                        if best.len() > ef {
                            best.pop();
                        }
                        bound = best.peek().map_or(f32::NEG_INFINITY, |w| w.0.sim);
                    }
                }
            }
        }
        let mut best: Vec<Scored> = best.into_iter().map(|r| r.0).collect();
        best.sort_unstable_by(|a, b| b.cmp(a));
        Found {
            best,
            visited: count,
            complete,
        }
    }

    /// The (up to) `ef` nodes most similar to `q` that `accept` takes, best first, computing at
    /// most `max_visits` similarities on layer 0.
    pub fn search(
        &self,
        q: &[f32],
        ef: usize,
        (vectors, dims): (&[f32], usize),
        accept: &dyn Fn(u32) -> bool,
        max_visits: usize,
    ) -> Found {
        let Some(mut ep) = self.entry else {
            return Found {
                complete: true,
                ..Found::default()
            };
        };
        for layer in (1..=self.top).rev() {
            ep = self.greedy(q, ep, layer, vectors, dims);
        }
        let filter = Some((accept, max_visits));
        self.search_layer(q, ep, ef, 0, (vectors, dims), filter)
    }
}

/// The neighbour-selection heuristic: walking the candidates from most to least similar, keep
/// one only if it is more similar to the base than to every neighbour already kept, which spreads
/// the links in different directions. Lists shorter than `m` are kept whole.
fn select(candidates: &[Scored], m: usize, vectors: &[f32], dims: usize) -> Vec<u32> {
    if candidates.len() <= m {
        return candidates.iter().map(|c| c.node).collect();
    }
    let mut kept: Vec<u32> = Vec::with_capacity(m);
    for c in candidates {
        if kept.len() >= m {
            break;
        }
        let v = vector(vectors, dims, c.node);
        if kept
            .iter()
            .all(|&r| dot(v, vector(vectors, dims, r)) < c.sim)
        {
            kept.push(c.node);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_deterministic_and_geometric() {
        let levels: Vec<usize> = (0..100_000).map(level_of).collect();
        assert_eq!(levels, (0..100_000).map(level_of).collect::<Vec<_>>());
        let above0 = levels.iter().filter(|l| **l >= 1).count() as f64 / 1e5;
        assert!((above0 - 1.0 / M as f64).abs() < 0.01, "{above0}");
        assert!(levels.iter().all(|l| *l <= MAX_LEVEL));
    }

    #[test]
    fn visited_set() {
        let mut v = Visited::new(130);
        assert!(v.insert(0) && v.insert(129) && !v.insert(129) && !v.insert(0));
        assert!(!v.insert(10_000), "out of range is never inserted");
    }

    #[test]
    fn tiny_graphs_find_everything() {
        let dims = 2;
        let vectors: Vec<f32> = (0..40)
            .flat_map(|i| {
                let a = i as f32 * 0.15;
                [a.cos(), a.sin()]
            })
            .collect();
        let mut g = Hnsw::new();
        let all = &|_| true;
        assert!(
            g.search(&[1.0, 0.0], 5, (&vectors, dims), all, 100)
                .best
                .is_empty()
        );
        for _ in 0..40 {
            g.push(&vectors, dims);
        }
        assert_eq!(g.len(), 40);
        let found = g.search(&[1.0, 0.0], 40, (&vectors, dims), all, 100);
        assert_eq!(found.best.len(), 40);
        assert!(found.complete && found.visited == 40);
        let cut = g.search(&[1.0, 0.0], 40, (&vectors, dims), all, 10);
        assert!(!cut.complete && cut.visited == 10);
        assert_eq!(found.best[0].node, 0);
        let odd = g.search(&[1.0, 0.0], 3, (&vectors, dims), &|n| n % 2 == 1, 100);
        let nodes: Vec<u32> = odd.best.iter().map(|s| s.node).collect();
        // cos 0.15 > cos(-0.43) (node 39, around the circle) > cos 0.45.
        assert_eq!(nodes, [1, 39, 3]);
        for layer in 0..=g.top {
            for n in 0..40 {
                assert!(g.neighbours(n, layer).len() <= if layer == 0 { M0 } else { M });
            }
        }
    }
}
