//! [`VectorIndex`]: the most similar `(id, vector)` pairs to a query, by cosine similarity.
//!
//! Entries live in slots: ids, a live flag and one flat `f32` array of vectors. Removing or
//! replacing an id tombstones its slot; when tombstones exceed a quarter of the slots the index
//! is compacted (and its graph, if any, rebuilt), so the work is amortised over the removals.
//!
//! Below `ann_threshold` live entries a search is an exact scan. When an insert takes the index
//! to the threshold an HNSW graph ([`super::hnsw`]) is built over the live entries and kept up to
//! date by every later insert. If removals take the index back below the threshold, searches scan
//! exactly again; the graph is kept until the next compaction drops it, so an index that hovers
//! around the threshold does not rebuild on every insert.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::hnsw::{Hnsw, Scored};
use super::{dot, normalize};

/// Candidate-list width of an approximate search (at least `k`).
const EF_SEARCH: usize = 128;
/// Similarities an unfiltered graph search computes per unit of `ef` (measured: about 18).
const VISITS_PER_EF: usize = 16;
/// Live entries sampled to estimate how many entries a `keep` filter takes.
const KEEP_SAMPLE: usize = 256;
/// Tombstones allowed, as a fraction `1 / COMPACT_DIVISOR` of the slots, before compaction.
const COMPACT_DIVISOR: usize = 4;
/// Fewer tombstones than this never trigger a compaction.
const COMPACT_MIN: usize = 32;

/// A vector index over (id, vector) pairs with cosine similarity.
///
/// Vectors are resized to `dims` (cut or zero-padded), non-finite components are zeroed, and
/// they are L2-normalised on insert, so scores are cosine similarities in `[-1, 1]` whatever the
/// caller passes. Exact scan below `ann_threshold` live entries, HNSW at or above it.
#[derive(Clone, Debug)]
pub struct VectorIndex {
    dims: usize,
    ann_threshold: usize,
    /// The id of each slot.
    ids: Vec<u128>,
    /// Whether each slot is live (not tombstoned).
    live: Vec<bool>,
    /// The vectors of all slots, `dims` floats each.
    vectors: Vec<f32>,
    /// The slot of each live id.
    slots: HashMap<u128, u32>,
    /// The graph over every slot, once the index has reached `ann_threshold`.
    graph: Option<Hnsw>,
}

impl VectorIndex {
    /// An empty index of `dims`-long vectors (at least 1) that switches to the approximate index
    /// at `ann_threshold` live entries (0: always approximate).
    pub fn new(dims: usize, ann_threshold: usize) -> Self {
        Self {
            dims: dims.max(1),
            ann_threshold,
            ids: Vec::new(),
            live: Vec::new(),
            vectors: Vec::new(),
            slots: HashMap::new(),
            graph: None,
        }
    }

    /// The length of the vectors.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Adds `id` with `vector`, replacing the vector of an existing `id` (re-inserting the same
    /// vector is free).
    pub fn insert(&mut self, id: u128, vector: Vec<f32>) {
        let mut vector = vector;
        vector.resize(self.dims, 0.0);
        for x in &mut vector {
            if !x.is_finite() {
                *x = 0.0;
            }
        }
        normalize(&mut vector);
        if let Some(&slot) = self.slots.get(&id) {
            let start = slot as usize * self.dims;
            if let Some(old) = self.vectors.get_mut(start..start + self.dims) {
                if *old == *vector {
                    return;
                }
                if self.graph.is_none() {
                    // No graph refers to the old vector: overwrite it in place.
                    old.copy_from_slice(&vector);
                    return;
                }
            }
            self.tombstone(slot);
        }
        let Ok(slot) = u32::try_from(self.ids.len()) else {
            return;
        };
        self.ids.push(id);
        self.live.push(true);
        self.vectors.extend_from_slice(&vector);
        self.slots.insert(id, slot);
        match &mut self.graph {
            Some(graph) => graph.push(&self.vectors, self.dims),
            None if self.slots.len() >= self.ann_threshold => self.compact(true),
            None => {}
        }
        self.maybe_compact();
    }

    /// Removes `id`; false if it was not there.
    pub fn remove(&mut self, id: u128) -> bool {
        let Some(slot) = self.slots.remove(&id) else {
            return false;
        };
        if let Some(live) = self.live.get_mut(slot as usize) {
            *live = false;
        }
        self.maybe_compact();
        true
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when the index has no entries.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// True when the ANN index is in use.
    pub fn is_approximate(&self) -> bool {
        self.graph.is_some() && self.slots.len() >= self.ann_threshold
    }

    /// The `k` most similar ids with their scores, best first (ties by id), keeping only ids for
    /// which `keep` is true. Both modes return `min(k, kept entries)` results, except for a zero
    /// query (text with no tokens), which is similar to nothing and gets no results.
    ///
    /// With the ANN index the layer-0 search traverses rejected and removed entries but only
    /// counts kept ones, widening until it holds `max(k, 128)` kept results or has explored all
    /// it can reach. A filter that takes a fraction `r` of the entries makes the graph compute
    /// about `1/r` times more similarities, while an exact scan computes `r * len` of them, so
    /// `keep` is first tried on a sample of entries and selective filters (`r² * len` below
    /// `16 * ef`) go straight to an exact scan. The graph search also gives up after `len / 2`
    /// similarities, and an exact scan answers whenever the graph could not find `k`.
    pub fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(u128) -> bool) -> Vec<(u128, f32)> {
        if k == 0 || self.slots.is_empty() {
            return Vec::new();
        }
        let mut q = query.to_vec();
        q.resize(self.dims, 0.0);
        normalize(&mut q);
        if q.iter().all(|x| *x == 0.0) {
            return Vec::new();
        }
        let graph = match &self.graph {
            Some(graph) if self.is_approximate() => graph,
            _ => return self.exact(&q, k, keep),
        };
        let live = self.slots.len();
        let ef = EF_SEARCH.max(k);
        let rate = self.keep_rate(keep);
        if rate < 1.0 && rate * rate * (live as f64) < (ef * VISITS_PER_EF) as f64 {
            return self.exact(&q, k, keep);
        }
        let accept = |slot: u32| {
            let i = slot as usize;
            self.live.get(i).copied().unwrap_or(false)
                && self.ids.get(i).is_some_and(|id| keep(*id))
        };
        let found = graph.search(&q, ef, (&self.vectors, self.dims), &accept, live / 2);
        let exhausted = found.complete && found.visited >= graph.len();
        if found.best.len() < k && !exhausted {
            return self.exact(&q, k, keep);
        }
        let mut out: Vec<(u128, f32)> = found
            .best
            .iter()
            .take(k)
            .filter_map(|s| self.ids.get(s.node as usize).map(|id| (*id, s.sim)))
            .collect();
        sort_results(&mut out);
        out
    }

    /// The fraction of live entries that `keep` takes, from up to [`KEEP_SAMPLE`] evenly spaced
    /// slots (1 when it takes them all, as for an unfiltered search).
    fn keep_rate(&self, keep: &dyn Fn(u128) -> bool) -> f64 {
        let step = (self.ids.len() / KEEP_SAMPLE).max(1);
        let (mut seen, mut kept) = (0usize, 0usize);
        for (id, live) in self.ids.iter().zip(&self.live).step_by(step) {
            if *live {
                seen += 1;
                kept += usize::from(keep(*id));
            }
        }
        if seen == 0 {
            1.0
        } else {
            kept as f64 / seen as f64
        }
    }

    /// The true top `k` among the kept live entries.
    fn exact(&self, q: &[f32], k: usize, keep: &dyn Fn(u128) -> bool) -> Vec<(u128, f32)> {
        let mut top: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(k + 1);
        let chunks = self.vectors.chunks_exact(self.dims);
        for (slot, ((id, live), v)) in self.ids.iter().zip(&self.live).zip(chunks).enumerate() {
            if !*live || !keep(*id) {
                continue;
            }
            let sim = dot(q, v);
            if top.len() < k || top.peek().is_some_and(|w| sim > w.0.sim) {
                let node = u32::try_from(slot).unwrap_or(u32::MAX);
                top.push(Reverse(Scored { sim, node }));
                if top.len() > k {
                    top.pop();
                }
            }
        }
        let mut out: Vec<(u128, f32)> = top
            .into_iter()
            .filter_map(|r| self.ids.get(r.0.node as usize).map(|id| (*id, r.0.sim)))
            .collect();
        sort_results(&mut out);
        out
    }

    /// Tombstones `slot` (its id is already out of `slots` or about to be replaced).
    fn tombstone(&mut self, slot: u32) {
        if let Some(live) = self.live.get_mut(slot as usize) {
            *live = false;
        }
    }

    /// Compacts when tombstones exceed a quarter of the slots.
    fn maybe_compact(&mut self) {
        let dead = self.ids.len() - self.slots.len();
        if dead >= COMPACT_MIN && dead * COMPACT_DIVISOR > self.ids.len() {
            let keep_graph = self.slots.len() >= self.ann_threshold;
            self.compact(keep_graph);
        }
    }

    /// Drops tombstoned slots, and builds a fresh graph over the rest when `graph` is true (no
    /// graph otherwise).
    fn compact(&mut self, graph: bool) {
        let dims = self.dims;
        let mut ids = Vec::with_capacity(self.slots.len());
        let mut vectors = Vec::with_capacity(self.slots.len() * dims);
        for ((id, live), v) in self
            .ids
            .iter()
            .zip(&self.live)
            .zip(self.vectors.chunks_exact(dims))
        {
            if *live {
                ids.push(*id);
                vectors.extend_from_slice(v);
            }
        }
        self.slots = ids
            .iter()
            .enumerate()
            .filter_map(|(slot, id)| u32::try_from(slot).ok().map(|s| (*id, s)))
            .collect();
        self.live = vec![true; ids.len()];
        self.ids = ids;
        self.vectors = vectors;
        self.graph = graph.then(|| {
            let mut g = Hnsw::new();
            for _ in 0..self.ids.len() {
                g.push(&self.vectors, dims);
            }
            g
        });
    }
}

/// Best first; equal scores by id, so that answers are deterministic.
fn sort_results(out: &mut [(u128, f32)]) {
    out.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}
