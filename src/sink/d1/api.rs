//! The D1 `api` target: the same statements the files hold, sent through
//! the Cloudflare REST API. A partition's statements are gathered; large
//! amounts go through the import flow (one file per `import_bytes`, one
//! request sequence instead of hundreds), small remainders through
//! `query` requests of several statements each. Every request is one D1
//! transaction and every statement an idempotent upsert, so a request that
//! is retried, or a partition that is sent again after a kill, ends in the
//! same rows.

use std::sync::Arc;

use super::render::{D1Mappings, Renderer};
use crate::batch::sink::{BatchSink, SinkFactory, SinkReport};
use crate::batch::{TableBatch, TableSpec};
use crate::cloudflare::limits::D1_MAX_STATEMENT_BYTES;
use crate::cloudflare::D1;
use crate::error::{Error, Result};

const FILE_HEADER: &str = "PRAGMA defer_foreign_keys = on;\n";

/// Settings of the `api` target.
#[derive(Clone)]
pub struct D1ApiConfig {
    pub d1: Arc<D1>,
    pub mappings: D1Mappings,
    pub max_statement_bytes: usize,
    /// Gathered SQL past this size is sent as one import; a remainder
    /// under [`import_min_bytes`] of it goes through `query` instead.
    pub import_bytes: usize,
    /// Most SQL in one `query` request.
    pub query_bytes: usize,
    /// The async runtime the requests run on (sinks run on decoder threads).
    pub runtime: tokio::runtime::Handle,
}

impl D1ApiConfig {
    pub fn new(d1: Arc<D1>, mappings: D1Mappings, runtime: tokio::runtime::Handle) -> Self {
        D1ApiConfig {
            d1,
            mappings,
            max_statement_bytes: D1_MAX_STATEMENT_BYTES,
            import_bytes: 32 << 20,
            query_bytes: 1 << 20,
            runtime,
        }
    }
}

impl SinkFactory for D1ApiConfig {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>> {
        let renderer = Renderer::new(table, &self.mappings.get(table), self.max_statement_bytes)?;
        Ok(Box::new(ApiSink {
            renderer,
            config: self.clone(),
            what: format!("D1 {}, {} partition {partition}", self.d1.database_id(), table.qualified()),
            pending: Vec::new(),
            pending_bytes: 0,
            pending_rows: 0,
            sent: 0,
            report: SinkReport::default(),
        }))
    }
}

struct ApiSink {
    renderer: Renderer,
    config: D1ApiConfig,
    what: String,
    pending: Vec<String>,
    pending_bytes: usize,
    pending_rows: u64,
    /// Statements of this partition already sent (names a failing batch).
    sent: usize,
    report: SinkReport,
}

impl ApiSink {
    fn send(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let statements = std::mem::take(&mut self.pending);
        let (first, last) = (self.sent + 1, self.sent + statements.len());
        let what = format!("{}, statements {first}-{last}", self.what);
        let d1 = self.config.d1.clone();
        if self.pending_bytes >= import_min_bytes(self.config.import_bytes) {
            let mut file = String::with_capacity(self.pending_bytes + FILE_HEADER.len());
            file.push_str(FILE_HEADER);
            statements.iter().for_each(|s| file.push_str(s));
            let body = bytes::Bytes::from(file);
            self.config.runtime.block_on(d1.import(&what, body))?;
        } else {
            for group in groups(&statements, self.config.query_bytes) {
                let mut sql = String::from(FILE_HEADER);
                group.iter().for_each(|s| sql.push_str(s));
                self.config.runtime.block_on(d1.query(&what, &sql))?;
            }
        }
        self.sent = last;
        self.report.bytes += self.pending_bytes as u64;
        self.report.rows += self.pending_rows;
        self.pending_bytes = 0;
        self.pending_rows = 0;
        Ok(())
    }
}

/// Below this much SQL an import (init, upload, ingest, polls) costs more
/// requests than `query` batches of 1 MiB would.
pub fn import_min_bytes(import_bytes: usize) -> usize {
    (import_bytes / 16).max(1 << 20)
}

/// Consecutive statements grouped into requests of at most `max` bytes.
fn groups(statements: &[String], max: usize) -> Vec<&[String]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, s) in statements.iter().enumerate() {
        if i > start && bytes + s.len() > max {
            out.push(&statements[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += s.len();
    }
    if start < statements.len() {
        out.push(&statements[start..]);
    }
    out
}

impl BatchSink for ApiSink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        let b = &batch.batch;
        let (pending, bytes) = (&mut self.pending, &mut self.pending_bytes);
        self.renderer.render(b, &mut |s| {
            *bytes += s.len();
            pending.push(s)
        })?;
        self.pending_rows += b.num_rows() as u64;
        if self.pending_bytes >= self.config.import_bytes {
            self.send()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<SinkReport> {
        self.send()?;
        if !self.pending.is_empty() {
            return Err(Error::Internal(format!("{}: statements left unsent", self.what)));
        }
        Ok(std::mem::take(&mut self.report))
    }
}

#[cfg(test)]
mod tests {
    use super::groups;

    #[test]
    fn groups_keep_order_and_size() {
        let s: Vec<String> =
            ["aaaa", "bb", "cccccc", "d", "eeeeeeeeee"].iter().map(|x| x.to_string()).collect();
        let g = groups(&s, 6);
        let flat: Vec<&String> = g.iter().flat_map(|x| x.iter()).collect();
        assert_eq!(flat, s.iter().collect::<Vec<_>>());
        assert_eq!(g.len(), 4); // [aaaa bb] [cccccc] [d] [eeeeeeeeee] (a lone statement may exceed)
        assert!(g.iter().all(|x| x.len() == 1 || x.iter().map(|y| y.len()).sum::<usize>() <= 6));
    }
}
