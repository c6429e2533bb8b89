//! The rows the generator makes and the embedding space they live in: one
//! `documents` row, one `chunks` row, and the topic centroids chunks are
//! scattered around. Its own file so that the ordinary generator
//! ([`super::gen`]) and the hand-made hard rows ([`super::hard`]) share them
//! without needing each other's code.

use super::format::Micros;
use super::rng::{Rng, STREAM_CENTROIDS};

/// Number of topic centroids (clusters) in embedding space.
pub const TOPIC_COUNT: usize = 16;
/// Length of the Gaussian noise added to a (unit) centroid before
/// normalising, relative to the centroid: each component gets
/// `NOISE_SCALE / sqrt(dims) * N(0, 1)`, so the noise vector's expected
/// length is `NOISE_SCALE` whatever the dimension. A chunk's cosine to its
/// own centroid is then about 1/sqrt(1 + 0.35²) ≈ 0.94, two chunks of one
/// topic about 0.89, chunks of different topics about 0. (Unscaled N(0, 1)
/// noise would drown the clusters: at 1536 dims the same-topic cosine
/// would be about 0.005, below the ±0.025 spread of random pairs.)
pub const NOISE_SCALE: f64 = 0.35;
/// One `documents` row.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentRow {
    pub id: [u8; 16],
    pub source_url: String,
    pub title: String,
    /// ISO 639-1 code.
    pub language: String,
    pub tags: Vec<String>,
    /// JSON text in `jsonb` output form.
    pub metadata: String,
    /// Microseconds since the Unix epoch (UTC).
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// One `chunks` row.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkRow {
    pub id: [u8; 16],
    pub document_id: [u8; 16],
    pub chunk_index: i32,
    pub content: String,
    pub token_count: i32,
    pub tags: Option<Vec<String>>,
    /// JSON text in `jsonb` output form.
    pub metadata: Option<String>,
    pub embedding: Option<Vec<f32>>,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// The K normalised topic centroids, `TOPIC_COUNT * dims` values.
#[derive(Debug)]
pub(crate) struct Centroids {
    dims: usize,
    values: Vec<f64>,
}

impl Centroids {
    pub(crate) fn new(seed: u64, dims: usize) -> Self {
        let mut values = Vec::with_capacity(TOPIC_COUNT * dims);
        for k in 0..TOPIC_COUNT {
            let mut rng = Rng::for_stream(seed, STREAM_CENTROIDS, k as u64);
            let start = values.len();
            values.extend((0..dims).map(|_| rng.gaussian()));
            normalize(&mut values[start..]);
        }
        Centroids { dims, values }
    }

    pub(crate) fn dims(&self) -> usize {
        self.dims
    }

    /// Dot product of centroid `topic` with `v` (tests: cluster structure).
    #[cfg(test)]
    pub(crate) fn embed_dot(&self, topic: usize, v: &[f32]) -> f64 {
        let c = &self.values[topic * self.dims..(topic + 1) * self.dims];
        c.iter().zip(v).map(|(a, &b)| a * f64::from(b)).sum()
    }

    /// `normalize(centroid[topic] + NOISE_SCALE / sqrt(dims) * gaussian)`
    /// as `f32`.
    pub(crate) fn embed(&self, topic: usize, rng: &mut Rng) -> Vec<f32> {
        let c = &self.values[topic * self.dims..(topic + 1) * self.dims];
        let scale = NOISE_SCALE / (self.dims as f64).sqrt();
        let mut v: Vec<f64> = c.iter().map(|&x| x + scale * rng.gaussian()).collect();
        normalize(&mut v);
        v.into_iter().map(|x| x as f32).collect()
    }
}

/// Scale to unit Euclidean length (sqrt is correctly rounded in IEEE-754,
/// so this is deterministic). A zero vector is left as is.
fn normalize(v: &mut [f64]) {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x /= norm;
        }
    }
}
