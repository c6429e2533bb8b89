//! The Parquet sink: one or more files per table partition
//! (`<table>/part-<partition>-<seq>.parquet`), zstd-compressed, row groups
//! cut by size, files rolled by size, none created for empty input. Vector
//! columns are written without dictionaries or statistics (useless for
//! random floats) and with BYTE_STREAM_SPLIT, which lets zstd find the
//! shared exponent bytes. Each file's blake3 is computed while it is
//! written, and its rows' combined digest from the same batches.

use std::path::PathBuf;
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::batch::{TableBatch, TableSpec};
use crate::error::{Error, Result};
use crate::sink::file::HashingFile;
use crate::sink::{BatchSink, SinkFactory, SinkReport};
use crate::typemap::Kind;
use crate::verify::digest::{row_digests, DigestSum};

/// Settings of the Parquet archive sink.
#[derive(Clone, Debug)]
pub struct ParquetConfig {
    pub dir: PathBuf,
    /// Roll to a new file past this many bytes.
    pub file_bytes: u64,
    /// Cut a row group past this many (estimated, encoded) bytes.
    pub row_group_bytes: usize,
    pub zstd_level: i32,
}

impl ParquetConfig {
    fn properties(&self, table: &TableSpec) -> Result<WriterProperties> {
        let level = ZstdLevel::try_new(self.zstd_level).map_err(|e| Error::Config {
            setting: "--zstd-level".into(),
            message: format!("{e}; use 1 (fast) to 22 (small)"),
        })?;
        let mut b = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_bytes(Some(self.row_group_bytes.max(1)))
            .set_max_row_group_row_count(None)
            .set_created_by(format!("pgflare {}", env!("CARGO_PKG_VERSION")));
        for c in &table.columns {
            if matches!(c.ty.kind, Kind::Vector | Kind::Halfvec) && !c.ty.array {
                let path = ColumnPath::new(vec![c.name.clone(), "list".into(), "item".into()]);
                b = b
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_statistics_enabled(path.clone(), EnabledStatistics::None)
                    .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
            }
        }
        Ok(b.build())
    }
}

impl SinkFactory for ParquetConfig {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>> {
        let dir = self.dir.join(table.file_stem());
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        Ok(Box::new(ParquetSink {
            root: self.dir.clone(),
            dir,
            table: table.clone(),
            partition,
            props: self.properties(table)?,
            config: self.clone(),
            current: None,
            report: SinkReport::default(),
        }))
    }
}

struct OpenFile {
    path: PathBuf,
    writer: ArrowWriter<HashingFile>,
    rows: u64,
    digest: DigestSum,
}

struct ParquetSink {
    root: PathBuf,
    dir: PathBuf,
    table: Arc<TableSpec>,
    partition: usize,
    props: WriterProperties,
    config: ParquetConfig,
    current: Option<OpenFile>,
    report: SinkReport,
}

impl ParquetSink {
    fn open_file(&mut self) -> Result<OpenFile> {
        let name = format!("part-{:05}-{:03}.parquet", self.partition, self.report.files.len());
        let path = self.dir.join(name);
        let sink = HashingFile::create(path.clone())?;
        let writer = ArrowWriter::try_new(sink, self.table.arrow_schema(), Some(self.props.clone()))
            .map_err(Error::parquet(&path))?;
        Ok(OpenFile { path, writer, rows: 0, digest: DigestSum::default() })
    }

    fn close_file(&mut self, f: OpenFile) -> Result<()> {
        let sink = f.writer.into_inner().map_err(Error::parquet(&f.path))?;
        let report = sink.finish(&self.root, f.rows, &f.digest)?;
        self.report.rows += report.rows;
        self.report.bytes += report.bytes;
        self.report.files.push(report);
        Ok(())
    }
}

impl BatchSink for ParquetSink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        if batch.batch.num_rows() == 0 {
            return Ok(());
        }
        let mut f = match self.current.take() {
            Some(f) => f,
            None => self.open_file()?,
        };
        for d in row_digests(&batch.batch)? {
            f.digest.add(&d);
        }
        f.writer.write(&batch.batch).map_err(Error::parquet(&f.path))?;
        f.rows += batch.batch.num_rows() as u64;
        let size = f.writer.bytes_written() as u64 + f.writer.in_progress_size() as u64;
        if size >= self.config.file_bytes {
            self.close_file(f)?;
        } else {
            self.current = Some(f);
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<SinkReport> {
        if let Some(f) = self.current.take() {
            self.close_file(f)?;
        }
        Ok(std::mem::take(&mut self.report))
    }
}
