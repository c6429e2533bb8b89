//! The Vectorize `files` target: NDJSON files, one or more per table
//! partition (`<table>/part-<partition>-<seq>.ndjson`), each cut at 5000
//! vectors and under 100 MB so that every file is one valid upsert request
//! and runs unchanged under `wrangler vectorize upsert --file`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use super::ndjson::LineWriter;
use crate::batch::sink::VectorReport;
use crate::batch::sink::{BatchSink, SinkFactory, SinkReport};
use crate::batch::{TableBatch, TableSpec};
use crate::cloudflare::limits::{VECTORIZE_MAX_UPLOAD_BYTES, VECTORIZE_MAX_VECTORS_PER_REQUEST};
use crate::config::mapping::VectorMappings;
use crate::digest::DigestSum;
use crate::error::{Error, Result};
use crate::sink::file::HashingFile;

/// Settings of the Vectorize `files` target.
#[derive(Clone, Debug)]
pub struct VectorizeFilesConfig {
    pub dir: PathBuf,
    pub mappings: VectorMappings,
    /// Lines per file (at most 5000: one upsert request).
    pub vectors_per_file: usize,
    /// A file stays under this many bytes.
    pub max_file_bytes: usize,
}

impl VectorizeFilesConfig {
    pub fn new(dir: PathBuf, mappings: VectorMappings) -> Self {
        VectorizeFilesConfig {
            dir,
            mappings,
            vectors_per_file: VECTORIZE_MAX_VECTORS_PER_REQUEST,
            max_file_bytes: VECTORIZE_MAX_UPLOAD_BYTES,
        }
    }
}

impl SinkFactory for VectorizeFilesConfig {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>> {
        let Some(m) = self.mappings.get(table) else { return Ok(Box::new(Nothing)) };
        let writer = LineWriter::new(table, m)?;
        let dir = self.dir.join(table.file_stem());
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        crate::sink::file::remove_partition_files(&dir, partition, ".ndjson")?;
        Ok(Box::new(FilesSink {
            writer,
            report: VectorReport::default(),
            out: Out { partition, dir, config: self.clone(), current: None, files: Vec::new() },
        }))
    }
}

/// A table without a vector mapping.
pub struct Nothing;

impl BatchSink for Nothing {
    fn write(&mut self, _: &TableBatch) -> Result<()> {
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<SinkReport> {
        Ok(SinkReport::default())
    }
}

struct FilesSink {
    writer: LineWriter,
    report: VectorReport,
    out: Out,
}

/// The files of one partition (apart from the writer, so a batch's lines
/// can stream into it without a copy).
struct Out {
    partition: usize,
    dir: PathBuf,
    config: VectorizeFilesConfig,
    current: Option<(HashingFile, u64)>,
    files: Vec<crate::batch::sink::FileReport>,
}

impl Out {
    fn close(&mut self) -> Result<()> {
        let Some((f, lines)) = self.current.take() else { return Ok(()) };
        let mut report = f.finish(&self.config.dir, lines, &DigestSum::default())?;
        // Vectors get their own digest with the verify command (issue 5); none is better than a wrong one.
        report.row_digest.clear();
        self.files.push(report);
        Ok(())
    }

    fn emit(&mut self, line: &str) -> Result<()> {
        let full = self.current.as_ref().is_some_and(|(f, lines)| {
            *lines as usize >= self.config.vectors_per_file
                || f.bytes() as usize + line.len() >= self.config.max_file_bytes
        });
        if full {
            self.close()?;
        }
        if self.current.is_none() {
            let name = format!("part-{:05}-{:03}.ndjson", self.partition, self.files.len());
            self.current = Some((HashingFile::create(self.dir.join(name))?, 0));
        }
        let (f, lines) = self.current.as_mut().ok_or_else(|| Error::Internal("no open file".into()))?;
        f.write_all(line.as_bytes()).map_err(Error::io(f.path()))?;
        *lines += 1;
        Ok(())
    }
}

impl BatchSink for FilesSink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        let out = &mut self.out;
        self.writer.write_batch(&batch.batch, &mut self.report, &mut |l| out.emit(l))
    }

    fn finish(mut self: Box<Self>) -> Result<SinkReport> {
        self.out.close()?;
        self.report.files = std::mem::take(&mut self.out.files);
        Ok(SinkReport { vectors: std::mem::take(&mut self.report), ..SinkReport::default() })
    }
}
