//! The D1 `files` target: SQL batch files that `wrangler d1 execute --file`
//! (or the D1 import API) runs unchanged. One or more files per table
//! partition (`<table>/part-<partition>-<seq>.sql`), rolled by size, each
//! starting with `PRAGMA defer_foreign_keys = on` so parents and children
//! may load in any order, every statement under D1's size limit, no
//! transaction statements, and the same bytes for the same snapshot.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use super::render::{D1Mappings, Renderer};
use crate::batch::sink::{BatchSink, SinkFactory, SinkReport};
use crate::batch::{TableBatch, TableSpec};
use crate::cloudflare::limits::D1_MAX_STATEMENT_BYTES;
use crate::digest::{row_digests, DigestSum};
use crate::error::{Error, Result};
use crate::sink::file::HashingFile;

const FILE_HEADER: &str = "PRAGMA defer_foreign_keys = on;\n";

/// Settings of the `files` target.
#[derive(Clone, Debug)]
pub struct D1FilesConfig {
    pub dir: PathBuf,
    /// Start a new file past this many bytes.
    pub file_bytes: u64,
    /// Largest statement (D1 refuses more than 100,000 bytes).
    pub max_statement_bytes: usize,
    /// D1 names and columns per table (as-is when absent).
    pub mappings: D1Mappings,
}

impl D1FilesConfig {
    pub fn new(dir: PathBuf) -> Self {
        D1FilesConfig {
            dir,
            file_bytes: 64 << 20,
            max_statement_bytes: D1_MAX_STATEMENT_BYTES,
            mappings: D1Mappings::default(),
        }
    }
}

impl SinkFactory for D1FilesConfig {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>> {
        let renderer = Renderer::new(table, &self.mappings.get(table), self.max_statement_bytes)?;
        let dir = self.dir.join(table.file_stem());
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        crate::sink::file::remove_partition_files(&dir, partition, ".sql")?;
        Ok(Box::new(D1FilesSink {
            renderer,
            partition,
            dir,
            config: self.clone(),
            current: None,
            report: SinkReport::default(),
        }))
    }
}

struct OpenFile {
    out: HashingFile,
    rows: u64,
    digest: DigestSum,
}

struct D1FilesSink {
    renderer: Renderer,
    partition: usize,
    dir: PathBuf,
    config: D1FilesConfig,
    current: Option<OpenFile>,
    report: SinkReport,
}

impl D1FilesSink {
    fn file(&mut self) -> Result<&mut OpenFile> {
        if self.current.is_none() {
            let name = format!("part-{:05}-{:03}.sql", self.partition, self.report.files.len());
            let path = self.dir.join(name);
            let mut f = OpenFile { out: HashingFile::create(path)?, rows: 0, digest: DigestSum::default() };
            write(&mut f, FILE_HEADER)?;
            self.current = Some(f);
        }
        self.current.as_mut().ok_or_else(|| Error::Internal("no open file".into()))
    }

    fn close(&mut self) -> Result<()> {
        let Some(f) = self.current.take() else { return Ok(()) };
        let report = f.out.finish(&self.config.dir, f.rows, &f.digest)?;
        self.report.rows += report.rows;
        self.report.bytes += report.bytes;
        self.report.files.push(report);
        Ok(())
    }
}

fn write(f: &mut OpenFile, s: &str) -> Result<()> {
    f.out.write_all(s.as_bytes()).map_err(Error::io(f.out.path()))
}

impl BatchSink for D1FilesSink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        let b = &batch.batch;
        if b.num_rows() == 0 {
            return Ok(());
        }
        let mut statements = Vec::new();
        self.renderer.render(b, &mut |s| statements.push(s))?;
        // The manifest records each file's rows by digest (see digest).
        let mut sum = DigestSum::default();
        row_digests(b)?.iter().for_each(|d| sum.add(d));
        let f = self.file()?;
        f.digest.merge(&sum);
        for s in &statements {
            write(f, s)?;
        }
        f.rows += b.num_rows() as u64;
        if f.out.bytes() >= self.config.file_bytes {
            self.close()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<SinkReport> {
        self.close()?;
        Ok(std::mem::take(&mut self.report))
    }
}
