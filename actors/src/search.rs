//! TEMPORARY stand-in until the search module lands: exact scan only.
#![allow(missing_docs)]
pub trait Embedder: Send + Sync + 'static {
    fn dims(&self) -> usize;
    fn name(&self) -> &str;
    fn embed(&self, text: &str) -> Vec<f32>;
}
pub struct HashingEmbedder(usize);
impl HashingEmbedder {
    pub fn new(dims: usize) -> Self {
        Self(dims.max(1))
    }
}
impl Embedder for HashingEmbedder {
    fn dims(&self) -> usize {
        self.0
    }
    fn name(&self) -> &str {
        "hashing"
    }
    fn embed(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.0];
        for w in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let mut h: u64 = 0xcbf29ce484222325;
            for b in w.to_lowercase().bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
            }
            v[(h % self.0 as u64) as usize] += 1.0;
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n > 0.0 {
            v.iter_mut().for_each(|x| *x /= n);
        }
        v
    }
}
pub struct VectorIndex(std::collections::HashMap<u128, Vec<f32>>);
impl VectorIndex {
    pub fn new(_dims: usize, _ann_threshold: usize) -> Self {
        Self(Default::default())
    }
    pub fn insert(&mut self, id: u128, vector: Vec<f32>) {
        self.0.insert(id, vector);
    }
    pub fn remove(&mut self, id: u128) -> bool {
        self.0.remove(&id).is_some()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(u128) -> bool) -> Vec<(u128, f32)> {
        let mut all: Vec<(u128, f32)> = self
            .0
            .iter()
            .filter(|(id, _)| keep(**id))
            .map(|(id, v)| (*id, v.iter().zip(query).map(|(a, b)| a * b).sum()))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        all.truncate(k);
        all
    }
    pub fn is_approximate(&self) -> bool {
        false
    }
}
