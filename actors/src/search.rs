//! Semantic search over shared memory items: embedders that turn text into unit-length vectors,
//! a vector index that returns the most similar items, and the request builders and response
//! parsers of provider embedding APIs.
//!
//! Everything here is pure and synchronous; the memory-shard actors own the state and do the I/O.
//!
//! - [`Embedder`] and its default, [`HashingEmbedder`] (feature hashing, no model files).
//! - [`VectorIndex`]: cosine similarity, exact scan for small indexes and an HNSW graph above a
//!   threshold, with removal and caller-side filtering.
//! - [`embeddings`]: OpenAI-compatible, Ollama and Gemini embedding wire formats.

mod embed_error;
pub mod embeddings;
mod hashing;
mod hnsw;
mod index;
mod text;

#[cfg(test)]
mod embeddings_tests;
#[cfg(test)]
mod index_tests;
#[cfg(test)]
mod relevance_tests;

pub use hashing::{DEFAULT_DIMS, HashingEmbedder};
pub use index::VectorIndex;

/// Turns text into a unit-length vector.
pub trait Embedder: Send + Sync + 'static {
    /// Length of the vectors.
    fn dims(&self) -> usize;
    /// A short name for logs and the API (e.g. "hashing-512").
    fn name(&self) -> &str;
    /// The vector of `text` (L2-normalized; the zero vector for text with no tokens).
    fn embed(&self, text: &str) -> Vec<f32>;
}

/// Scales `v` to unit L2 length in place; a zero or non-finite vector becomes all zeros. Vectors
/// from providers go through this before they are indexed.
pub fn normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 && norm.is_finite() {
        let inv = (1.0 / norm) as f32;
        v.iter_mut().for_each(|x| *x *= inv);
    } else {
        v.iter_mut().for_each(|x| *x = 0.0);
    }
}

/// The dot product of `a` and `b` over their common length (the cosine similarity of unit
/// vectors). Written with eight independent accumulators so that it vectorises.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0f32; 8];
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The natural logarithm from IEEE-exact operations only (`+ - * /`), so that its value, unlike
/// the platform `ln`, is bit-identical on every machine. For `x >= 1`; 0 below.
fn ln(x: f64) -> f64 {
    if x.is_nan() || x <= 1.0 || x.is_infinite() {
        return 0.0;
    }
    // x = m * 2^e with m in [1, 2); ln x = e ln 2 + 2 atanh((m - 1) / (m + 1)).
    let (mut m, mut e) = (x, 0i32);
    while m >= 2.0 {
        m /= 2.0;
        e += 1;
    }
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let (mut term, mut sum) = (z, 0.0);
    for k in 0..30 {
        sum += term / f64::from(2 * k + 1);
        term *= z2;
    }
    f64::from(e) * std::f64::consts::LN_2 + 2.0 * sum
}
