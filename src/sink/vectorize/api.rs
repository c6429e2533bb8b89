//! The Vectorize `api` target: NDJSON lines gathered into upsert requests
//! of at most `vectors_per_request` vectors (5000) and under 100 MB, sent
//! through the Vectorize client (one retry policy and request budget with
//! D1). A partition's sink finishes when its last upsert was accepted, or
//! (with a [`TailPool`], as the load runs it) when its last, partial
//! upsert was handed to the pool shared by every range; the load waits for
//! Vectorize to *apply* it (see `cloudflare::vectorize`) before it records
//! the partition as done.

use std::sync::Arc;

use super::files::Nothing;
use super::ndjson::LineWriter;
use super::tails::TailPool;
use crate::batch::sink::VectorReport;
use crate::batch::sink::{BatchSink, SinkFactory, SinkReport};
use crate::batch::{TableBatch, TableSpec};
use crate::cloudflare::limits::VECTORIZE_MAX_UPLOAD_BYTES;
use crate::cloudflare::Vectorize;
use crate::config::mapping::VectorMappings;
use crate::error::Result;

/// Settings of the Vectorize `api` target.
#[derive(Clone)]
pub struct VectorizeApiConfig {
    pub index: Arc<Vectorize>,
    pub mappings: VectorMappings,
    pub vectors_per_request: usize,
    pub max_request_bytes: usize,
    pub runtime: tokio::runtime::Handle,
    /// Where finished ranges leave their last, partial upsert (the load
    /// packs them together; see [`super::tails`]); `None`: each range
    /// sends its own.
    pub tails: Option<Arc<TailPool>>,
}

impl VectorizeApiConfig {
    pub fn new(index: Arc<Vectorize>, mappings: VectorMappings, vectors_per_request: usize) -> Self {
        VectorizeApiConfig {
            index,
            mappings,
            vectors_per_request,
            max_request_bytes: VECTORIZE_MAX_UPLOAD_BYTES,
            runtime: tokio::runtime::Handle::current(),
            tails: None,
        }
    }

    /// The same, with the ranges' last upserts packed into shared ones;
    /// the caller flushes the pool once the ranges finished.
    pub fn with_tail_pool(mut self) -> (Self, Arc<TailPool>) {
        let pool = Arc::new(TailPool::new(self.vectors_per_request, self.max_request_bytes));
        self.tails = Some(pool.clone());
        (self, pool)
    }
}

impl SinkFactory for VectorizeApiConfig {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>> {
        let Some(m) = self.mappings.get(table) else { return Ok(Box::new(Nothing)) };
        Ok(Box::new(ApiSink {
            writer: LineWriter::new(table, m)?,
            report: VectorReport::default(),
            out: Out {
                config: self.clone(),
                what: format!(
                    "Vectorize {}, {} partition {partition}",
                    self.index.index(),
                    table.qualified()
                ),
                body: Vec::new(),
                lines: 0,
                sent: 0,
                last_write: None,
            },
        }))
    }
}

struct ApiSink {
    writer: LineWriter,
    report: VectorReport,
    out: Out,
}

/// The request being gathered (apart from the writer, so a batch's lines
/// stream into it without a copy).
struct Out {
    config: VectorizeApiConfig,
    what: String,
    body: Vec<u8>,
    lines: usize,
    /// Vectors of this partition already sent (names a failing request).
    sent: usize,
    last_write: Option<u64>,
}

impl Out {
    fn send(&mut self) -> Result<()> {
        if self.lines == 0 {
            return Ok(());
        }
        let what = format!("{}, vectors {}-{}", self.what, self.sent + 1, self.sent + self.lines);
        let body = bytes::Bytes::from(std::mem::take(&mut self.body));
        let index = self.config.index.clone();
        let ticket = self.config.runtime.block_on(index.upsert(&what, body))?;
        self.last_write = Some(ticket.0);
        self.sent += self.lines;
        self.lines = 0;
        Ok(())
    }

    fn emit(&mut self, line: &str) -> Result<()> {
        if self.lines >= self.config.vectors_per_request
            || self.body.len() + line.len() >= self.config.max_request_bytes
        {
            self.send()?;
        }
        self.body.extend_from_slice(line.as_bytes());
        self.lines += 1;
        Ok(())
    }
}

impl BatchSink for ApiSink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        let out = &mut self.out;
        self.writer.write_batch(&batch.batch, &mut self.report, &mut |l| out.emit(l))
    }

    fn finish(mut self: Box<Self>) -> Result<SinkReport> {
        match self.out.config.tails.clone() {
            Some(pool) => {
                let out = &mut self.out;
                let tail =
                    pool.add(&out.config.index, &out.config.runtime, &out.what, &out.body, out.lines)?;
                self.report.pending_tails.extend(tail);
            }
            None => self.out.send()?,
        }
        self.report.pending_write = self.out.last_write;
        Ok(SinkReport { vectors: std::mem::take(&mut self.report), ..SinkReport::default() })
    }
}
