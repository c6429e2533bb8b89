//! Row generation: documents, chunks and their clustered embeddings.
//!
//! Every row is derived from its own PRNG stream keyed by the seed and the
//! row's ordinal, so rows are produced one at a time (bounded memory) and
//! the text of a chunk does not depend on the embedding dimension.

use super::format::{Micros, BASE_MICROS};
use super::hard;
use super::lang::{LANGS, TOPICS};
use super::rng::{Rng, STREAM_CHUNK, STREAM_CHUNK_EMB, STREAM_DOC_CORE, STREAM_DOC_TEXT, STREAM_LAYOUT};
use super::rows::{Centroids, ChunkRow, DocumentRow, TOPIC_COUNT};
use super::text;
use super::{SeedError, SeedParams};

/// One ordinary chunk in `NULL_EMBEDDING_ONE_IN` has a NULL embedding.
pub const NULL_EMBEDDING_ONE_IN: u64 = 50;

const DAY_US: u64 = 86_400_000_000;

/// The part of a document that its chunks need too.
#[derive(Clone, Debug)]
pub(crate) struct DocCore {
    pub id: [u8; 16],
    pub topic: usize,
    pub lang: usize,
    pub created_at: Micros,
    pub updated_at: Micros,
}

pub(crate) fn doc_core(seed: u64, ordinal: u64) -> DocCore {
    let mut rng = Rng::for_stream(seed, STREAM_DOC_CORE, ordinal);
    let id = rng.uuid_v4();
    let topic = rng.index(TOPIC_COUNT);
    let lang = rng.index(LANGS.len());
    let created_at = BASE_MICROS + rng.below(365 * DAY_US) as Micros;
    let updated_at =
        if rng.chance(1, 2) { created_at } else { created_at + rng.below(120 * DAY_US) as Micros };
    DocCore { id, topic, lang, created_at, updated_at }
}

fn document_row(seed: u64, ordinal: u64) -> DocumentRow {
    let core = doc_core(seed, ordinal);
    let lang = &LANGS[core.lang];
    let topic = TOPICS[core.topic % TOPICS.len()];
    let mut rng = Rng::for_stream(seed, STREAM_DOC_TEXT, ordinal);
    let slug = text::slug(topic, &mut rng);
    DocumentRow {
        id: core.id,
        source_url: format!("https://docs.example.com/{}/{slug}-{}", lang.code, ordinal + 1),
        title: text::title(&mut rng, lang),
        language: lang.code.to_owned(),
        tags: text::tags(&mut rng, 4),
        metadata: text::document_metadata(&mut rng, lang, topic).to_jsonb_text(),
        created_at: core.created_at,
        updated_at: core.updated_at,
    }
}

/// Chunks per ordinary document: one each while there are enough chunks,
/// the rest spread at random.
fn layout(p: &SeedParams) -> Vec<u32> {
    let mut counts = vec![0u32; p.documents];
    if p.documents == 0 {
        return counts;
    }
    let mut rest = p.chunks;
    if p.chunks >= p.documents {
        counts.iter_mut().for_each(|c| *c = 1);
        rest -= p.documents;
    }
    let mut rng = Rng::for_stream(p.seed, STREAM_LAYOUT, 0);
    for _ in 0..rest {
        counts[rng.index(p.documents)] += 1;
    }
    counts
}

/// Streams `documents` rows: the ordinary ones, then the hard-rows document.
pub struct DocumentIter {
    seed: u64,
    next: u64,
    count: u64,
    hard_pending: bool,
}

impl Iterator for DocumentIter {
    type Item = DocumentRow;

    fn next(&mut self) -> Option<DocumentRow> {
        if self.next < self.count {
            let row = document_row(self.seed, self.next);
            self.next += 1;
            Some(row)
        } else if self.hard_pending {
            self.hard_pending = false;
            Some(hard::document())
        } else {
            None
        }
    }
}

/// Streams `chunks` rows grouped by document (`chunk_index` 0.. within
/// each), then the hard rows.
pub struct ChunkIter {
    seed: u64,
    centroids: Centroids,
    counts: Vec<u32>,
    doc: usize,
    core: Option<DocCore>,
    index: u32,
    ordinal: u64,
    hard_next: usize,
    hard_rows: bool,
}

impl ChunkIter {
    fn ordinary(&mut self) -> Option<ChunkRow> {
        loop {
            let count = *self.counts.get(self.doc)?;
            if self.index < count {
                break;
            }
            self.doc += 1;
            self.index = 0;
            self.core = None;
        }
        let core = match &self.core {
            Some(c) => c.clone(),
            None => {
                let c = doc_core(self.seed, self.doc as u64);
                self.core = Some(c.clone());
                c
            }
        };
        let row = self.chunk_row(&core);
        self.index += 1;
        self.ordinal += 1;
        Some(row)
    }

    fn chunk_row(&self, core: &DocCore) -> ChunkRow {
        let lang = &LANGS[core.lang];
        let mut rng = Rng::for_stream(self.seed, STREAM_CHUNK, self.ordinal);
        let id = rng.uuid_v4();
        let content = text::chunk_content(&mut rng, lang);
        let tags = if rng.chance(1, 5) { None } else { Some(text::tags(&mut rng, 3)) };
        let metadata = if rng.chance(1, 10) {
            None
        } else {
            Some(text::chunk_metadata(&mut rng, lang, self.index, &content).to_jsonb_text())
        };
        let created_at = core.created_at + rng.below(3_600_000_000) as Micros;
        let updated_at =
            if rng.chance(7, 10) { created_at } else { created_at + rng.below(200 * DAY_US) as Micros };
        let embedding = if rng.chance(1, NULL_EMBEDDING_ONE_IN) {
            None
        } else {
            let mut erng = Rng::for_stream(self.seed, STREAM_CHUNK_EMB, self.ordinal);
            Some(self.centroids.embed(core.topic, &mut erng))
        };
        ChunkRow {
            id,
            document_id: core.id,
            chunk_index: i32::try_from(self.index).unwrap_or(i32::MAX),
            token_count: text::token_count(&content),
            content,
            tags,
            metadata,
            embedding,
            created_at,
            updated_at,
        }
    }
}

impl Iterator for ChunkIter {
    type Item = ChunkRow;

    fn next(&mut self) -> Option<ChunkRow> {
        if let Some(row) = self.ordinary() {
            return Some(row);
        }
        if self.hard_rows && self.hard_next < hard::HARD_ROW_IDS.len() {
            let row = hard::chunk(self.hard_next, self.seed, &self.centroids);
            self.hard_next += 1;
            return Some(row);
        }
        None
    }
}

/// All `documents` rows for `p`, generated lazily.
pub fn documents(p: &SeedParams) -> Result<DocumentIter, SeedError> {
    p.validate()?;
    Ok(DocumentIter { seed: p.seed, next: 0, count: p.documents as u64, hard_pending: p.hard_rows })
}

/// All `chunks` rows for `p`, generated lazily. Memory: the K centroids
/// plus one `u32` per document.
pub fn chunks(p: &SeedParams) -> Result<ChunkIter, SeedError> {
    p.validate()?;
    Ok(ChunkIter {
        seed: p.seed,
        centroids: Centroids::new(p.seed, p.dims),
        counts: layout(p),
        doc: 0,
        core: None,
        index: 0,
        ordinal: 0,
        hard_next: 0,
        hard_rows: p.hard_rows,
    })
}
