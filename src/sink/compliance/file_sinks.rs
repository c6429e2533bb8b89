//! The compliance cases of the sinks that write local files or a local
//! database: D1 SQL files, the local SQLite target, Vectorize NDJSON files,
//! the Parquet archive, and a [`Tee`] of D1 and Vectorize files as a load
//! runs them. Their failure is the output taken away mid-way (the table's
//! folder removed, the D1 table dropped): the next write or the finish
//! must fail rather than report files or rows that are not there.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use tempfile::TempDir;

use super::{check, readers, Bytes, Out, Subject};
use crate::archive::writer::ParquetConfig;
use crate::batch::sink::SinkFactory;
use crate::config::mapping::VectorMappings;
use crate::sink::d1::files::D1FilesConfig;
use crate::sink::d1::render::D1Mappings;
use crate::sink::d1::sqlite::D1SqliteConfig;
use crate::sink::tee::Tee;
use crate::sink::test_table::mapping;
use crate::sink::vectorize::files::VectorizeFilesConfig;

/// A fresh temporary folder per run, kept until the next.
#[derive(Default)]
struct Dir(Option<TempDir>);

impl Dir {
    fn fresh(&mut self) -> PathBuf {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().to_path_buf();
        self.0 = Some(d);
        p
    }

    fn path(&self) -> PathBuf {
        self.0.as_ref().expect("a run").path().to_path_buf()
    }

    /// Removes the table's output folder under `sub`.
    fn remove_table(&self, sub: &str) {
        std::fs::remove_dir_all(self.path().join(sub).join("t")).expect("remove the table's folder");
    }
}

fn d1_files(dir: PathBuf, roll: bool) -> D1FilesConfig {
    let mut c = D1FilesConfig::new(dir);
    if roll {
        c.file_bytes = 1; // every batch closes its file
    }
    c
}

fn vector_files(dir: PathBuf, roll: bool) -> VectorizeFilesConfig {
    let mut m = VectorMappings::default();
    m.0.insert("public.t".into(), mapping(Some(3)));
    let mut c = VectorizeFilesConfig::new(dir, m);
    if roll {
        c.vectors_per_file = 4;
    }
    c
}

#[derive(Default)]
struct D1Files(Dir);

impl Subject for D1Files {
    fn name(&self) -> String {
        "D1 files".into()
    }
    fn fresh(&mut self, roll: bool) -> Arc<dyn SinkFactory> {
        Arc::new(d1_files(self.0.fresh(), roll))
    }
    fn rows(&self) -> Option<Vec<Out>> {
        Some(readers::sql_files(&self.0.path()))
    }
    fn roots(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        (Some(self.0.path()), None)
    }
    fn bytes(&self) -> Bytes {
        Bytes::Files
    }
    fn sabotage(&mut self) -> Option<RecordBatch> {
        self.0.remove_table("");
        None
    }
}

#[derive(Default)]
struct VectorFiles(Dir);

impl Subject for VectorFiles {
    fn name(&self) -> String {
        "Vectorize files".into()
    }
    fn fresh(&mut self, roll: bool) -> Arc<dyn SinkFactory> {
        Arc::new(vector_files(self.0.fresh(), roll))
    }
    // Vectorize rows are vectors: SinkReport::rows stays 0 (a Tee adds it
    // to the D1 rows) and vectors.written counts them.
    fn rows(&self) -> Option<Vec<Out>> {
        None
    }
    fn vectors(&self) -> Option<Vec<Out>> {
        Some(readers::ndjson_files(&self.0.path()))
    }
    fn roots(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        (None, Some(self.0.path()))
    }
    fn bytes(&self) -> Bytes {
        Bytes::Zero
    }
    fn sabotage(&mut self) -> Option<RecordBatch> {
        self.0.remove_table("");
        None
    }
}

#[derive(Default)]
struct Parquet(Dir);

impl Subject for Parquet {
    fn name(&self) -> String {
        "Parquet archive".into()
    }
    fn fresh(&mut self, roll: bool) -> Arc<dyn SinkFactory> {
        Arc::new(ParquetConfig {
            dir: self.0.fresh(),
            file_bytes: if roll { 1 } else { 64 << 20 },
            row_group_bytes: 1 << 20,
            zstd_level: 3,
        })
    }
    fn rows(&self) -> Option<Vec<Out>> {
        Some(readers::parquet_files(&self.0.path()))
    }
    fn roots(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        (Some(self.0.path()), None)
    }
    fn bytes(&self) -> Bytes {
        Bytes::Files
    }
    fn sabotage(&mut self) -> Option<RecordBatch> {
        self.0.remove_table("");
        None
    }
}

/// The load's `sqlite` target on a table created by hand.
#[derive(Default)]
struct Sqlite(Dir, Option<D1SqliteConfig>);

impl Sqlite {
    fn db(&self) -> &D1SqliteConfig {
        self.1.as_ref().expect("a run")
    }
}

impl Subject for Sqlite {
    fn name(&self) -> String {
        "D1 sqlite".into()
    }
    fn fresh(&mut self, _roll: bool) -> Arc<dyn SinkFactory> {
        // One database, nothing to roll.
        let c = D1SqliteConfig::open(&self.0.fresh().join("d1.sqlite"), D1Mappings::default()).expect("open");
        c.execute("test table", readers::D1_TABLE).expect("table");
        self.1 = Some(c.clone());
        Arc::new(c)
    }
    fn rows(&self) -> Option<Vec<Out>> {
        Some(readers::sqlite_file_rows(&self.0.path().join("d1.sqlite")))
    }
    fn bytes(&self) -> Bytes {
        Bytes::Sql
    }
    fn sabotage(&mut self) -> Option<RecordBatch> {
        self.db().execute("sabotage", "DROP TABLE t;").expect("drop");
        None
    }
    fn repair(&mut self) {
        self.db().execute("repair", readers::D1_TABLE).expect("table");
    }
}

/// D1 and Vectorize files fed from one read, as `load --target files` runs.
#[derive(Default)]
struct TeeOfFiles(Dir);

impl Subject for TeeOfFiles {
    fn name(&self) -> String {
        "Tee of D1 and Vectorize files".into()
    }
    fn fresh(&mut self, roll: bool) -> Arc<dyn SinkFactory> {
        let dir = self.0.fresh();
        let d1: Arc<dyn SinkFactory> = Arc::new(d1_files(dir.join("d1"), roll));
        Arc::new(Tee(vec![d1, Arc::new(vector_files(dir.join("v"), roll))]))
    }
    fn rows(&self) -> Option<Vec<Out>> {
        Some(readers::sql_files(&self.0.path().join("d1")))
    }
    fn vectors(&self) -> Option<Vec<Out>> {
        Some(readers::ndjson_files(&self.0.path().join("v")))
    }
    fn roots(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        (Some(self.0.path().join("d1")), Some(self.0.path().join("v")))
    }
    fn bytes(&self) -> Bytes {
        Bytes::Files
    }
    fn sabotage(&mut self) -> Option<RecordBatch> {
        self.0.remove_table("v"); // one of the two: the other must not be claimed either
        None
    }
}

#[test]
fn d1_files_keep_the_sink_contract() {
    check(&mut D1Files::default());
}

#[test]
fn the_sqlite_target_keeps_the_sink_contract() {
    check(&mut Sqlite::default());
}

#[test]
fn vectorize_files_keep_the_sink_contract() {
    check(&mut VectorFiles::default());
}

#[test]
fn the_parquet_archive_keeps_the_sink_contract() {
    check(&mut Parquet::default());
}

#[test]
fn a_tee_of_files_keeps_the_sink_contract() {
    check(&mut TeeOfFiles::default());
}

/// Partitions share the sqlite target's transaction: when one partition's
/// batch fails, the rows another partition wrote into that transaction are
/// rolled back with it, so that partition must not finish as if they were
/// written; a partition opened afterwards (the next sync run) writes.
#[test]
fn a_partition_whose_rows_were_rolled_back_with_another_failed_batch_cannot_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("d1.sqlite");
    let c = D1SqliteConfig::open(&path, D1Mappings::default()).expect("open");
    // A value the table refuses: ns must not be 'bad'.
    c.execute(
        "table",
        "CREATE TABLE t (id TEXT PRIMARY KEY, embedding TEXT, meta TEXT, ns TEXT CHECK (ns IS NOT 'bad'));",
    )
    .expect("table");
    let all = super::rows();
    let table = super::table();
    let tb =
        |p: usize, b: RecordBatch| crate::batch::TableBatch { table: table.clone(), partition: p, batch: b };
    let mut a = c.open(&table, 0).expect("a");
    let mut b = c.open(&table, 1).expect("b");
    a.write(&tb(0, super::batch_of(&all[..10]))).expect("a's rows, not committed yet");
    let mut bad = all[10..20].to_vec();
    bad[3].ns = Some("bad".into());
    let e = b.write(&tb(1, super::batch_of(&bad))).expect_err("the refused row");
    assert!(e.to_string().contains("CHECK constraint failed"), "{e}");
    let e = a.finish().expect_err("a's rows were rolled back");
    assert!(e.to_string().contains("rolled back with a failed batch"), "{e}");
    let count = |c: &D1SqliteConfig| {
        c.with_conn(|conn| {
            conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                .map_err(crate::error::Error::sqlite("count"))
        })
        .expect("count")
    };
    assert_eq!(count(&c), 0, "nothing of either partition is in the file");
    let mut again = c.open(&table, 0).expect("again");
    again.write(&tb(0, super::batch_of(&all[..10]))).expect("a later partition writes");
    again.finish().expect("and finishes");
    assert_eq!(count(&c), 10);
}
