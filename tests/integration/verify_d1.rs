//! D1 rows read back into the source's types digest equal to the source
//! rows (after the documented D1 forms: NaN as NULL, non-finite array
//! elements as null), for every supported type and the hard fixture rows;
//! a changed value changes exactly its row's digest, and a value that is
//! not in pgflare's form is named, not guessed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use pgflare::batch::sink::{BatchSink, SinkFactory, SinkReport};
use pgflare::batch::{TableBatch, TableSpec};
use pgflare::d1::read::{read_table, target_form};
use pgflare::digest::{key_display, row_digests};
use pgflare::progress::Progress;
use pgflare::source::job::read_selection;
use pgflare::source::{ReadOptions, Selection, Snapshot, Source, SplitOptions};

use crate::common::*;

type Digests = Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>>;

/// Records each row's digest (of its D1 form) by table and key.
struct Collect(Digests);

struct CollectSink(Digests, String);

impl SinkFactory for Collect {
    fn open(&self, table: &Arc<TableSpec>, _: usize) -> pgflare::error::Result<Box<dyn BatchSink>> {
        Ok(Box::new(CollectSink(self.0.clone(), table.name.clone())))
    }
}

impl BatchSink for CollectSink {
    fn write(&mut self, batch: &TableBatch) -> pgflare::error::Result<()> {
        record(&self.0, &self.1, &batch.table, &target_form(&batch.batch)?)
    }
    fn finish(self: Box<Self>) -> pgflare::error::Result<SinkReport> {
        Ok(SinkReport::default())
    }
}

fn record(
    into: &Digests,
    table: &str,
    spec: &TableSpec,
    batch: &arrow::record_batch::RecordBatch,
) -> pgflare::error::Result<()> {
    let digests = row_digests(batch)?;
    let mut all = into.lock().expect("lock");
    let t = all.entry(table.to_string()).or_default();
    for (row, d) in digests.iter().enumerate() {
        t.insert(key_display(batch, &spec.key_indices(), row), hex::encode(d));
    }
    Ok(())
}

fn d1_digests(sqlite: &std::path::Path, specs: &[TableSpec]) -> pgflare::error::Result<Digests> {
    let out: Digests = Arc::default();
    let conn = rusqlite::Connection::open(sqlite).expect("open");
    for spec in specs {
        read_table(&conn, &spec.name, spec, 100, &mut |b| record(&out, &spec.name, spec, &b))?;
    }
    Ok(out)
}

/// Keys whose digests differ, or that one side lacks.
fn differing(a: &Digests, b: &Digests) -> Vec<String> {
    let (a, b) = (a.lock().expect("a"), b.lock().expect("b"));
    let mut out = Vec::new();
    for (t, rows) in a.iter() {
        let other = b.get(t).cloned().unwrap_or_default();
        for (k, d) in rows {
            if other.get(k) != Some(d) {
                out.push(format!("{t} {k}"));
            }
        }
        out.extend(other.keys().filter(|k| !rows.contains_key(*k)).map(|k| format!("{t} {k} (extra)")));
    }
    out
}

#[test]
fn d1_rows_read_back_digest_equal_to_the_source() {
    let db = TestDb::new("verifyd1");
    db.exec_file("fixtures/types.sql");
    db.seed(300, 8);
    let dir = temp_dir("verifyd1");
    let sqlite = dir.path().join("d1.sqlite");
    let state = dir.path().join("state");
    ok(pgflare(
        &db,
        &[
            "load",
            "--target",
            "sqlite",
            "--sqlite",
            sqlite.to_str().expect("p"),
            "--state-dir",
            state.to_str().expect("p"),
        ],
    ));

    let source: Digests = Arc::default();
    let (url, sink) = (db.url.clone(), Arc::new(Collect(source.clone())));
    let reading = block_on(async move {
        let src = Source::parse(&url).expect("url");
        let snapshot = Snapshot::export(&src).await.expect("snapshot");
        let selection = Selection { schema: "public".into(), ..Selection::default() };
        let split = SplitOptions { target_bytes: 256 << 10, max_partitions: 8 };
        let read = ReadOptions { jobs: 2, batch_rows: 64, batch_bytes: 1 << 20 };
        read_selection(&src, snapshot, &selection, split, read, sink, &Progress::hidden())
            .await
            .expect("read")
    });
    let specs: Vec<TableSpec> = reading.tables.iter().map(|t| t.info.spec.clone()).collect();
    assert_eq!(specs.len(), 3, "documents, chunks, type_zoo");
    let d1 = d1_digests(&sqlite, &specs).expect("read D1 back");
    let rows: usize = d1.lock().expect("d1").values().map(|t| t.len()).sum();
    assert!(rows > 300, "{rows} rows read back");
    assert_eq!(differing(&source, &d1), Vec::<String>::new());

    // One character of one chunk, and one float of the type zoo: exactly those two rows.
    let c = rusqlite::Connection::open(&sqlite).expect("open");
    c.execute(
        "UPDATE chunks SET content = content || 'x' WHERE id = '00000000-0000-4000-8000-000000000005'",
        [],
    )
    .expect("tamper content");
    c.execute("UPDATE type_zoo SET f4 = 1.5000001 WHERE id = 1", []).expect("tamper float");
    let d1 = d1_digests(&sqlite, &specs).expect("read D1 back");
    assert_eq!(differing(&source, &d1), ["chunks id=00000000-0000-4000-8000-000000000005", "type_zoo id=1"]);

    // A value pgflare would never write is named with its table, column and key.
    c.execute("UPDATE type_zoo SET u = 'not-a-uuid' WHERE id = 1", []).expect("tamper uuid");
    let e = d1_digests(&sqlite, &specs).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("table D1 type_zoo, column u, row id=1: holds the text `not-a-uuid` where a uuid belongs"),
        "{e}"
    );
}

#[test]
fn an_independent_implementation_agrees_with_the_digest_test_vectors() {
    let file = root().join("fixtures/digest-vectors.json");
    let o = python("row_digest.py", &["--vectors", file.to_str().expect("p")], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("11 row and 3 vector test vectors, 0 disagreements"));
    // It can disagree: one digit of one digest changed.
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    let d = doc["vectors"][1]["digest"].as_str().expect("d").to_string();
    let flipped = format!("{}{}", if d.starts_with('0') { "1" } else { "0" }, &d[1..]);
    doc["vectors"][1]["digest"] = serde_json::Value::String(flipped);
    let dir = temp_dir("digestvectors");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, doc.to_string()).expect("write");
    let o = python("row_digest.py", &["--vectors", bad.to_str().expect("p")], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}
