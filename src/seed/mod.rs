//! Deterministic fixture/seed data for the source side of a migration: a
//! typical RAG schema (`documents` and `chunks` with tags, `jsonb` metadata
//! and pgvector embeddings, see `fixtures/schema.sql`) filled with
//! multilingual documentation text, clustered embeddings and a set of
//! "hard rows" that exercise encoding edge cases.
//!
//! Determinism: the same [`SeedParams`] give byte-identical output on every
//! machine. All randomness comes from a hand-written xoshiro256** generator;
//! no transcendental float function is used (Gaussian noise is Irwin–Hall),
//! JSON and array literals are written by hand in a fixed order, and vectors
//! use Rust's shortest round-trip `f32` formatting.
//!
//! Shape of the data (`p` = [`SeedParams`]):
//! * `p.documents` ordinary documents, each with one of [`TOPIC_COUNT`]
//!   topics and one of eight languages (en, de, fr, es, ja, ar, ru, zh);
//! * `p.chunks` ordinary chunks spread over them (one per document while
//!   there are enough, the rest at random), `chunk_index` 0.. per document;
//!   embedding = normalize(centroid[topic] + 0.35/sqrt(dims)·N(0,1)) (noise
//!   of length 0.35 relative to the unit centroid, see [`NOISE_SCALE`]),
//!   NULL for about one chunk in fifty;
//! * with `p.hard_rows`, one more document ([`HARD_DOCUMENT_ID`]) holding
//!   the chunks listed in [`HARD_ROW_IDS`].
//!
//! Outputs: [`write_copy`] (COPY text to any writer), [`load`] (schema plus
//! `COPY ... FROM STDIN` into Postgres), and the row iterators
//! [`documents`] and [`chunks`] for tests that compare against the source.

mod encode;
mod format;
mod gen;
mod hard;
mod lang;
mod load;
mod rng;
mod rows;
#[cfg(test)]
mod tests;
mod text;

pub use encode::{encode_chunk, encode_document, CopyEncoder, CHUNK_COLUMNS, DOCUMENT_COLUMNS, PIECE_BYTES};
pub use format::{array_literal, copy_text, push_copy_text, Json, Micros, BASE_MICROS};
pub use gen::{chunks, documents, ChunkIter, DocumentIter, NULL_EMBEDDING_ONE_IN};
pub use hard::{large_content, HARD_DOCUMENT_ID, HARD_ROW_IDS, LARGE_CONTENT_BYTES};
pub use load::{load, SeedReport};
pub use rng::{uuid_string, Rng};
pub use rows::{ChunkRow, DocumentRow, NOISE_SCALE, TOPIC_COUNT};

/// The schema template; `{{DIMS}}` stands for the embedding dimension.
pub const SCHEMA_TEMPLATE: &str = include_str!("../../fixtures/schema.sql");

/// Statement run by [`load`] when asked to drop existing tables.
pub const DROP_SQL: &str = "DROP TABLE IF EXISTS chunks, documents CASCADE";

/// Largest dimension of pgvector's `vector` type.
pub const MAX_DIMS: usize = 16_000;
/// Upper bound on `documents` and on `chunks` (keeps every count and
/// `chunk_index` inside `i32`).
pub const MAX_ROWS: usize = i32::MAX as usize - 1_000;

/// Errors of the seed generator and loader.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("invalid seed parameters: {0}")]
    InvalidParams(String),
    #[error("writing seed data failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("database error while {stage}: {source}")]
    Database {
        stage: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("seed generator task failed: {0}")]
    Task(String),
}

/// What to generate. The same parameters always give the same bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedParams {
    pub seed: u64,
    /// Ordinary documents (the hard-rows document comes on top).
    pub documents: usize,
    /// Ordinary chunks (the hard rows come on top).
    pub chunks: usize,
    /// Embedding dimension, 1..=[`MAX_DIMS`].
    pub dims: usize,
    /// Add the hard-rows document and its chunks ([`HARD_ROW_IDS`]).
    pub hard_rows: bool,
}

impl Default for SeedParams {
    fn default() -> Self {
        SeedParams { seed: 42, documents: 100, chunks: 2000, dims: 1536, hard_rows: true }
    }
}

impl SeedParams {
    /// Check the parameters; every generator entry point calls this.
    pub fn validate(&self) -> Result<(), SeedError> {
        if self.dims == 0 || self.dims > MAX_DIMS {
            return Err(SeedError::InvalidParams(format!(
                "dims must be between 1 and {MAX_DIMS} (pgvector's limit), got {}",
                self.dims
            )));
        }
        if self.documents > MAX_ROWS || self.chunks > MAX_ROWS {
            return Err(SeedError::InvalidParams(format!(
                "documents and chunks must be at most {MAX_ROWS}, got {} and {}",
                self.documents, self.chunks
            )));
        }
        if self.documents == 0 && self.chunks > 0 {
            return Err(SeedError::InvalidParams(format!(
                "{} chunks need at least one document",
                self.chunks
            )));
        }
        Ok(())
    }

    /// Rows in `documents`, hard-rows document included.
    pub fn total_documents(&self) -> u64 {
        self.documents as u64 + u64::from(self.hard_rows)
    }

    /// Rows in `chunks`, hard rows included.
    pub fn total_chunks(&self) -> u64 {
        self.chunks as u64 + if self.hard_rows { HARD_ROW_IDS.len() as u64 } else { 0 }
    }
}

/// The two tables the seed data fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    Documents,
    Chunks,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Documents => "documents",
            Table::Chunks => "chunks",
        }
    }

    /// The `COPY <table> (<columns>) FROM STDIN` statement matching
    /// [`write_copy`]'s output (text format, tab delimiter, `\N` NULL).
    pub fn copy_statement(self) -> &'static str {
        match self {
            Table::Documents => concat!(
                "COPY documents (id, source_url, title, language, tags, metadata, ",
                "created_at, updated_at) FROM STDIN"
            ),
            Table::Chunks => concat!(
                "COPY chunks (id, document_id, chunk_index, content, token_count, tags, ",
                "metadata, embedding, created_at, updated_at) FROM STDIN"
            ),
        }
    }
}

/// `fixtures/schema.sql` with `{{DIMS}}` replaced by `dims`.
pub fn schema_sql(dims: usize) -> String {
    SCHEMA_TEMPLATE.replace("{{DIMS}}", &dims.to_string())
}

/// Stream the COPY text of `table` to `out` without holding more than one
/// piece (about [`PIECE_BYTES`]) in memory. Returns the rows written.
/// The output is what `COPY <table> (...) FROM STDIN` expects, see
/// [`Table::copy_statement`]; it has no `\.` terminator.
pub fn write_copy<W: std::io::Write>(p: &SeedParams, table: Table, mut out: W) -> Result<u64, SeedError> {
    let mut enc = CopyEncoder::new(p, table)?;
    while let Some(piece) = enc.next_piece() {
        out.write_all(&piece)?;
    }
    out.flush()?;
    Ok(enc.rows())
}
