//! Rows to COPY text format, in pieces of bounded size.

use super::format::{array_literal, push_copy_text, push_timestamp, push_vector, Micros};
use super::gen::{self, ChunkIter, DocumentIter};
use super::rng::push_uuid;
use super::rows::{ChunkRow, DocumentRow};
use super::{SeedError, SeedParams, Table};

/// Target size of one piece handed to the database or a writer.
pub const PIECE_BYTES: usize = 1 << 20;

/// Appends one COPY text-format line (tab-separated, `\N` for NULL,
/// terminated by `\n`) per row.
struct LineWriter<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut String,
    first: bool,
}

impl<'a> LineWriter<'a> {
    fn new(out: &'a mut Vec<u8>, scratch: &'a mut String) -> Self {
        LineWriter { out, scratch, first: true }
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(b'\t');
        }
        self.first = false;
    }

    fn text(&mut self, s: &str) {
        self.sep();
        push_copy_text(self.out, s);
    }

    fn null(&mut self) {
        self.sep();
        self.out.extend_from_slice(b"\\N");
    }

    /// Values whose text never needs COPY escaping (uuid, numbers, vectors,
    /// timestamps), formatted through the scratch buffer.
    fn raw(&mut self, f: impl FnOnce(&mut String)) {
        self.sep();
        self.scratch.clear();
        f(self.scratch);
        self.out.extend_from_slice(self.scratch.as_bytes());
    }

    fn uuid(&mut self, id: &[u8; 16]) {
        self.raw(|s| push_uuid(s, id));
    }

    fn int(&mut self, n: i32) {
        self.raw(|s| s.push_str(&n.to_string()));
    }

    fn timestamp(&mut self, t: Micros) {
        self.raw(|s| push_timestamp(s, t));
    }

    fn tags(&mut self, tags: Option<&[String]>) {
        match tags {
            Some(t) => self.text(&array_literal(t)),
            None => self.null(),
        }
    }

    fn end(self) {
        self.out.push(b'\n');
    }
}

/// Column list matching [`encode_document`], for `COPY documents (...)`.
pub const DOCUMENT_COLUMNS: &str = "id, source_url, title, language, tags, metadata, created_at, updated_at";
/// Column list matching [`encode_chunk`], for `COPY chunks (...)`.
pub const CHUNK_COLUMNS: &str = "id, document_id, chunk_index, content, token_count, tags, \
                                 metadata, embedding, created_at, updated_at";

/// Append `row` as one COPY text line in [`DOCUMENT_COLUMNS`] order.
pub fn encode_document(row: &DocumentRow, out: &mut Vec<u8>, scratch: &mut String) {
    let mut w = LineWriter::new(out, scratch);
    w.uuid(&row.id);
    w.text(&row.source_url);
    w.text(&row.title);
    w.text(&row.language);
    w.tags(Some(&row.tags));
    w.text(&row.metadata);
    w.timestamp(row.created_at);
    w.timestamp(row.updated_at);
    w.end();
}

/// Append `row` as one COPY text line in [`CHUNK_COLUMNS`] order.
pub fn encode_chunk(row: &ChunkRow, out: &mut Vec<u8>, scratch: &mut String) {
    let mut w = LineWriter::new(out, scratch);
    w.uuid(&row.id);
    w.uuid(&row.document_id);
    w.int(row.chunk_index);
    w.text(&row.content);
    w.int(row.token_count);
    w.tags(row.tags.as_deref());
    match &row.metadata {
        Some(m) => w.text(m),
        None => w.null(),
    }
    match &row.embedding {
        Some(v) => w.raw(|s| push_vector(s, v)),
        None => w.null(),
    }
    w.timestamp(row.created_at);
    w.timestamp(row.updated_at);
    w.end();
}

enum Rows {
    Documents(DocumentIter),
    Chunks(ChunkIter),
}

/// Produces the COPY text of one table as a sequence of pieces of about
/// [`PIECE_BYTES`] (always whole lines), generating rows on demand.
pub struct CopyEncoder {
    rows: Rows,
    rows_done: u64,
    bytes_done: u64,
    null_embeddings: u64,
    scratch: String,
    done: bool,
}

impl CopyEncoder {
    pub fn new(p: &SeedParams, table: Table) -> Result<Self, SeedError> {
        let rows = match table {
            Table::Documents => Rows::Documents(gen::documents(p)?),
            Table::Chunks => Rows::Chunks(gen::chunks(p)?),
        };
        Ok(CopyEncoder {
            rows,
            rows_done: 0,
            bytes_done: 0,
            null_embeddings: 0,
            scratch: String::new(),
            done: false,
        })
    }

    /// The next piece; `None` when every row has been produced.
    pub fn next_piece(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        let mut out = Vec::with_capacity(PIECE_BYTES + 64 * 1024);
        while out.len() < PIECE_BYTES {
            let more = match &mut self.rows {
                Rows::Documents(it) => {
                    it.next().map(|row| encode_document(&row, &mut out, &mut self.scratch))
                }
                Rows::Chunks(it) => it.next().map(|row| {
                    if row.embedding.is_none() {
                        self.null_embeddings += 1;
                    }
                    encode_chunk(&row, &mut out, &mut self.scratch)
                }),
            };
            if more.is_none() {
                self.done = true;
                break;
            }
            self.rows_done += 1;
        }
        if out.is_empty() {
            return None;
        }
        self.bytes_done += out.len() as u64;
        Some(out)
    }

    /// Rows encoded so far.
    pub fn rows(&self) -> u64 {
        self.rows_done
    }

    /// Bytes of COPY text produced so far.
    pub fn bytes(&self) -> u64 {
        self.bytes_done
    }

    /// Chunks with a NULL embedding encoded so far (0 for documents).
    pub fn null_embeddings(&self) -> u64 {
        self.null_embeddings
    }
}
