//! The Parquet sink: one or more files per table partition
//! (`<table>/part-<partition>-<seq>.parquet`), zstd-compressed, row groups
//! cut by size, files rolled by size, none created for empty input. Vector
//! columns are written without dictionaries or statistics (useless for
//! random floats) and with BYTE_STREAM_SPLIT, which lets zstd find the
//! shared exponent bytes; fixed-size vectors declare nullable elements
//! ([`file_schema`] says why). Each file's blake3 is computed while it is
//! written, and its rows' combined digest from the same batches.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::batch::sink::{BatchSink, SinkFactory, SinkReport};
use crate::batch::{TableBatch, TableSpec};
use crate::digest::{row_digests, DigestSum};
use crate::error::{Error, Result};
use crate::sink::file::HashingFile;
use crate::source::archive::{file_schema, relabel};
use crate::typemap::Kind;

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
            // Lists as parquet-format's LogicalTypes.md prescribes them: the
            // repeated group `list` holds one field named `element`. arrow-rs
            // otherwise writes Arrow's `item`, which readers accept only
            // through the spec's backward-compatibility rules. For our types
            // this renames list elements and nothing else (no Date64, no maps).
            .set_coerce_types(true)
            .set_created_by(format!("pgflare {}", env!("CARGO_PKG_VERSION")));
        for c in &table.columns {
            if matches!(c.ty.kind, Kind::Vector | Kind::Halfvec) && !c.ty.array {
                let path = ColumnPath::new(vec![c.name.clone(), "list".into(), "element".into()]);
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
            schema: file_schema(table),
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
    /// [`file_schema`] of the table.
    schema: SchemaRef,
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
        let writer = ArrowWriter::try_new(sink, self.schema.clone(), Some(self.props.clone()))
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
        let file_batch = relabel(&batch.batch, &self.schema)?;
        f.writer.write(&file_batch).map_err(Error::parquet(&f.path))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ColumnSpec;
    use crate::source::pgvector::VectorBuilder;
    use crate::typemap::ColumnType;
    use arrow::array::Int64Array;
    use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
    use arrow::datatypes::DataType;

    fn spec() -> TableSpec {
        let col = |name: &str, kind: Kind, dims: Option<u32>| ColumnSpec {
            name: name.into(),
            pg_type: format!("{kind:?}").to_lowercase(),
            ty: ColumnType { dims, ..ColumnType::scalar(kind) },
            nullable: name != "id",
            cast: None,
        };
        TableSpec {
            schema: "public".into(),
            name: "chunks".into(),
            columns: vec![
                col("id", Kind::Int8, None),
                col("v", Kind::Vector, Some(2)),
                col("hv", Kind::Halfvec, Some(2)),
                col("free", Kind::Vector, None),
                col("u", Kind::Uuid, None),
                col("tags", Kind::Text, None),
            ],
            primary_key: vec!["id".into()],
        }
    }

    /// pgvector's binary form of `vals`.
    fn vector(vals: &[f32]) -> Vec<u8> {
        let mut v = (vals.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 0]);
        vals.iter().for_each(|x| v.extend_from_slice(&x.to_be_bytes()));
        v
    }

    #[test]
    fn only_the_elements_of_fixed_size_vectors_become_nullable() {
        let (table, file) = (spec().arrow_schema(), file_schema(&spec()));
        assert_eq!(table.fields().len(), file.fields().len());
        for (t, f) in table.fields().iter().zip(file.fields()) {
            match (t.data_type(), f.data_type()) {
                (DataType::FixedSizeList(ti, tn), DataType::FixedSizeList(fi, fn_)) => {
                    assert!(!ti.is_nullable() && fi.is_nullable(), "{t} -> {f}");
                    assert_eq!((ti.name(), ti.data_type(), tn), (fi.name(), fi.data_type(), fn_));
                    assert_eq!((t.name(), t.is_nullable()), (f.name(), f.is_nullable()));
                }
                _ => assert_eq!(t, f, "only fixed-size lists change"),
            }
        }
        assert_eq!(file.field_with_name("u").expect("u").extension_type_name(), Some("arrow.uuid"));
    }

    #[test]
    fn relabelled_batches_keep_the_buffers_null_rows_and_row_digests() {
        let mut spec = spec();
        spec.columns.truncate(2); // id, v
        let mut v = VectorBuilder::new(Some(2), false, 3);
        for row in [Some(vector(&[1.5, f32::from_bits(1)])), None, Some(vector(&[-0.0, f32::NAN]))] {
            v.append(row.as_deref()).expect("vector");
        }
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let batch = RecordBatch::try_new(spec.arrow_schema(), vec![ids, v.finish()]).expect("batch");
        let schema = file_schema(&spec);
        let out = relabel(&batch, &schema).expect("relabel");
        assert_eq!(out.schema(), schema);
        let (a, b) = (batch.column(1).as_fixed_size_list(), out.column(1).as_fixed_size_list());
        assert_eq!(a.nulls(), b.nulls());
        assert!(b.is_null(1) && b.values().null_count() == 0);
        assert_eq!(a.values().to_data().buffers()[0].as_ptr(), b.values().to_data().buffers()[0].as_ptr());
        let digests = crate::digest::row_digests;
        assert_eq!(digests(&batch).expect("d"), digests(&out).expect("d"), "the manifest's digests hold");
    }
}
