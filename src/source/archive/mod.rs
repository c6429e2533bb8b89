//! A pgflare archive as a source: its manifest ([`manifest`]), the file
//! layout every reader and the writer share ([`file_schema`], [`relabel`]),
//! and its Parquet files read back as batches of the table they came from
//! ([`table_batches`]), after their bytes are checked against the manifest
//! ([`check_files`]), and its tables described as introspection would
//! describe them ([`table_info`]). `archive verify`, `restore` and the
//! archive of Cloudflare (which takes its table definitions from a
//! Postgres archive once Postgres is gone) read archives here; the archive
//! job writes them.

pub mod manifest;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, ListArray, RecordBatch};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::batch::TableSpec;
use crate::error::{Error, Result};
use manifest::{Manifest, ManifestTable};

/// The Arrow schema of the archive's Parquet files: the table's, except
/// that the elements of fixed-size lists (`vector(n)`, `halfvec(n)`) are
/// declared nullable. They never hold a NULL (the source decoder makes them
/// and the tests check); the declaration works around a polars bug:
///
/// polars 2.1 panics ("validity mask length must match the number of
/// values") on a FixedSizeList column whose Parquet leaf is `required` and
/// BYTE_STREAM_SPLIT-encoded when the column chunk has several data pages
/// and only some of them hold NULL rows. Our files follow the format
/// (parquet-format LogicalTypes.md, Lists: the element may be `required`;
/// Encodings.md, BYTE_STREAM_SPLIT: one stream of the page's non-null
/// values), pyarrow, DuckDB and arrow-rs read them, and a file pyarrow
/// writes from the same data (fixed-size list, non-null items, NULL rows,
/// BYTE_STREAM_SPLIT, several pages) makes polars panic the same way; with
/// PLAIN, a single page, NULLs in every page, or an `optional` leaf it
/// reads. The panic is polars' float decoder finalising a validity mask
/// shorter than its values: a NULL fixed-size row still fills `n` child
/// slots, so a page with NULL rows hands the required leaf a validity mask,
/// which polars' BYTE_STREAM_SPLIT path appends, while a page without NULLs
/// appends none because the leaf is not optional. An optional leaf always
/// gets its bits. Declaring it optional costs no byte: the definition
/// levels keep their 2-bit width (maximum 3 instead of 2) and their runs
/// (measured identical on 3,022 1536-dim embeddings), where dropping
/// BYTE_STREAM_SPLIT would have cost 9.5% of the vector bytes.
pub fn file_schema(table: &TableSpec) -> SchemaRef {
    let schema = table.arrow_schema();
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::FixedSizeList(item, n) if !item.is_nullable() => {
                let item = Arc::new(Field::clone(item).with_nullable(true));
                Arc::new(Field::clone(f).with_data_type(DataType::FixedSizeList(item, *n)))
            }
            _ => f.clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` under `schema` (the table's or the file's, see [`file_schema`]):
/// the same buffers, fixed-size lists relabelled with the element field
/// `schema` declares. The writer uses it one way, readers the other.
pub fn relabel(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(col, field)| match field.data_type() {
            DataType::FixedSizeList(item, n) if col.data_type() != field.data_type() => {
                let list = col.as_fixed_size_list_opt().ok_or_else(|| {
                    Error::Internal(format!(
                        "column {} is {}, not a fixed-size list",
                        field.name(),
                        col.data_type()
                    ))
                })?;
                let relabelled = FixedSizeListArray::try_new(
                    item.clone(),
                    *n,
                    list.values().clone(),
                    list.nulls().cloned(),
                )?;
                Ok(Arc::new(relabelled) as ArrayRef)
            }
            // Parquet readers name a list's element `element`; the table's
            // schema may name it otherwise (arrow's `item`).
            DataType::List(item) if col.data_type() != field.data_type() => {
                let list = col.as_list_opt::<i32>().ok_or_else(|| {
                    Error::Internal(format!("column {} is {}, not a list", field.name(), col.data_type()))
                })?;
                let relabelled = ListArray::try_new(
                    item.clone(),
                    list.offsets().clone(),
                    list.values().clone(),
                    list.nulls().cloned(),
                )?;
                Ok(Arc::new(relabelled) as ArrayRef)
            }
            _ => Ok(col.clone()),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Reads a Parquet file batch by batch; `each(batch, first_row)`.
pub fn read_parquet(path: &Path, mut each: impl FnMut(&RecordBatch, u64) -> Result<()>) -> Result<()> {
    let file = File::open(path).map_err(Error::io(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(Error::parquet(path))?
        .with_batch_size(4096)
        .build()
        .map_err(Error::parquet(path))?;
    let mut first = 0u64;
    for batch in reader {
        let batch = batch?;
        each(&batch, first)?;
        first += batch.num_rows() as u64;
    }
    Ok(())
}

/// Each file of `table` read back as batches in the table's own schema,
/// handed to `each` with the file's index (a partition of the table).
pub fn table_batches(
    dir: &Path,
    table: &ManifestTable,
    mut each: impl FnMut(usize, RecordBatch) -> Result<()>,
) -> Result<()> {
    for i in 0..table.files.len() {
        file_batches(dir, table, i, |batch| each(i, batch))?;
    }
    Ok(())
}

/// The file `index` of `table` read back as batches in the table's schema.
pub fn file_batches(
    dir: &Path,
    table: &ManifestTable,
    index: usize,
    mut each: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let schema = table.spec.arrow_schema();
    let file = table.files.get(index).ok_or_else(|| {
        Error::Internal(format!("{} has no file {index} in the manifest", table.spec.qualified()))
    })?;
    read_parquet(&dir.join(&file.path), |batch, _| each(relabel(batch, &schema)?))
}

/// Refuses an archive whose files are not the ones its manifest lists:
/// missing, of another size, or other bytes (blake3). Cheap next to
/// reading them (blake3 runs at GB/s), and done before anything is
/// written anywhere.
pub fn check_files(dir: &Path, manifest: &Manifest) -> Result<()> {
    for t in &manifest.tables {
        for f in &t.files {
            let path = dir.join(&f.path);
            let bad = |message: String| Error::Manifest {
                path: path.clone(),
                message: format!(
                    "{message}; the archive of {} is not the one its manifest describes: run \
                     `pgflare archive verify` on it, and restore from an intact copy",
                    t.spec.qualified()
                ),
            };
            let mut file = File::open(&path).map_err(|e| bad(format!("cannot be read ({e})")))?;
            let mut h = blake3::Hasher::new();
            let size = std::io::copy(&mut file, &mut h).map_err(|e| bad(format!("cannot be read ({e})")))?;
            if size != f.bytes {
                return Err(bad(format!("holds {size} bytes, the manifest says {}", f.bytes)));
            }
            if h.finalize().to_hex().as_str() != f.blake3 {
                return Err(bad("its bytes differ from the manifest's blake3".into()));
            }
        }
    }
    Ok(())
}

/// The table as the archive describes it, as introspection would (for a
/// D1 mapping and schema): its foreign keys and unique constraints read
/// back from the manifest's definitions; one this pgflare cannot read is
/// refused by name. `manifest` is the manifest's path, for the message.
pub fn table_info(t: &ManifestTable, manifest: &Path) -> Result<crate::source::TableInfo> {
    use crate::source::constraint_text;
    let mut foreign_keys = Vec::new();
    let mut unique_keys = Vec::new();
    for c in &t.constraints {
        match c.kind.as_str() {
            "f" => {
                let fk = constraint_text::foreign_key(&c.name, &c.definition, &t.spec.schema);
                foreign_keys.push(fk.ok_or_else(|| Error::Manifest {
                    path: manifest.to_path_buf(),
                    message: format!(
                        "table {}: cannot read the foreign key {} ({}); leave the table out with --table",
                        t.spec.qualified(),
                        c.name,
                        c.definition
                    ),
                })?)
            }
            "u" => unique_keys.extend(constraint_text::unique_columns(&c.definition)),
            _ => {}
        }
    }
    Ok(crate::source::TableInfo {
        spec: t.spec.clone(),
        row_estimate: Some(t.rows),
        total_bytes: i64::try_from(t.bytes).unwrap_or(i64::MAX),
        constraints: t.constraints.clone(),
        indexes: t.indexes.clone(),
        ddl: t.ddl.clone(),
        foreign_keys,
        unique_keys,
        btree_indexes: Vec::new(),
        skipped_indexes: Vec::new(),
        unsupported: Vec::new(),
    })
}
