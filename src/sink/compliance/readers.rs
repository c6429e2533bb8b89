//! Readers that do not share code with the sinks they check: SQL files run
//! by rusqlite on a fresh database with a hand-written table, Parquet read
//! by the parquet crate's Arrow reader, NDJSON parsed by serde_json. Each
//! gives [`Out`] rows sorted by id.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Float32Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use rusqlite::Connection;
use serde_json::Value;

use super::Out;

/// The test table as D1 holds it, written by hand rather than by pgflare.
pub const D1_TABLE: &str = "CREATE TABLE t (id TEXT PRIMARY KEY, embedding TEXT, meta TEXT, ns TEXT);";

/// Every regular file under `dir`, recursively (none when it is missing).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries {
        let path = e.expect("dir entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    files_under(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == ext)).collect()
}

/// The rows in the table `t` of `conn`.
pub fn sqlite_rows(conn: &Connection) -> Vec<Out> {
    let mut st = conn.prepare("SELECT id, embedding, meta, ns FROM t ORDER BY id").expect("select");
    let rows = st
        .query_map([], |r| {
            let values: Option<String> = r.get(1)?;
            let meta: Option<String> = r.get(2)?;
            Ok(Out {
                id: r.get(0)?,
                values: values.map(|v| bits(&serde_json::from_str(&v).expect("a JSON array"))),
                meta: meta.map(|m| serde_json::from_str(&m).expect("JSON metadata")),
                ns: r.get(3)?,
            })
        })
        .expect("query");
    rows.collect::<Result<_, _>>().expect("rows")
}

/// A database file's table `t`, or no rows when it has none.
pub fn sqlite_file_rows(path: &Path) -> Vec<Out> {
    let conn = Connection::open(path).expect("open");
    let has: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE name = 't'", [], |r| r.get(0))
        .expect("sqlite_master");
    if has == 0 {
        return Vec::new();
    }
    sqlite_rows(&conn)
}

/// The `.sql` files under `dir`, run in name order on a fresh database.
pub fn sql_files(dir: &Path) -> Vec<Out> {
    let conn = Connection::open_in_memory().expect("sqlite");
    conn.execute_batch(D1_TABLE).expect("table");
    for f in with_ext(dir, "sql") {
        conn.execute_batch(&std::fs::read_to_string(&f).expect("read")).expect("run a SQL file");
    }
    sqlite_rows(&conn)
}

/// The lines of the `.ndjson` files under `dir`.
pub fn ndjson_files(dir: &Path) -> Vec<Out> {
    let mut out = Vec::new();
    for f in with_ext(dir, "ndjson") {
        for line in std::fs::read_to_string(&f).expect("read").lines() {
            out.push(vector_out(&serde_json::from_str(line).expect("a JSON line")));
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// A Vectorize vector (an NDJSON line or a `get_by_ids` answer) as a row.
pub fn vector_out(v: &Value) -> Out {
    Out {
        id: v["id"].as_str().expect("id").to_string(),
        values: Some(bits(&v["values"])),
        meta: v.get("metadata").and_then(|m| m.get("meta")).cloned(),
        ns: v.get("namespace").and_then(Value::as_str).map(str::to_string),
    }
}

/// Float32 bits of a JSON array of numbers.
fn bits(v: &Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| (x.as_f64().expect("number") as f32).to_bits()).collect()
}

/// The rows of the `.parquet` files under `dir`.
pub fn parquet_files(dir: &Path) -> Vec<Out> {
    let mut out = Vec::new();
    for f in with_ext(dir, "parquet") {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&f).expect("open"))
            .expect("parquet")
            .build()
            .expect("reader");
        for b in reader {
            let b = b.expect("batch");
            let text = |name: &str, row: usize| {
                let c = b.column_by_name(name).expect("column").as_string::<i32>();
                (!c.is_null(row)).then(|| c.value(row).to_string())
            };
            let vectors = b.column_by_name("embedding").expect("embedding").as_list::<i32>();
            for row in 0..b.num_rows() {
                out.push(Out {
                    id: text("id", row).expect("id"),
                    values: (!vectors.is_null(row)).then(|| {
                        let v = vectors.value(row);
                        v.as_primitive::<Float32Type>().values().iter().map(|x| x.to_bits()).collect()
                    }),
                    meta: text("meta", row).map(|m| serde_json::from_str(&m).expect("JSON")),
                    ns: text("ns", row),
                });
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// The rows one output file holds, by its kind.
pub fn file_rows(path: &Path) -> u64 {
    match path.extension().and_then(|e| e.to_str()) {
        Some("sql") => {
            let conn = Connection::open_in_memory().expect("sqlite");
            conn.execute_batch(D1_TABLE).expect("table");
            conn.execute_batch(&std::fs::read_to_string(path).expect("read")).expect("run the file");
            conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).expect("count") as u64
        }
        Some("ndjson") => std::fs::read_to_string(path).expect("read").lines().count() as u64,
        Some("parquet") => {
            let r = SerializedFileReader::new(File::open(path).expect("open")).expect("parquet");
            r.metadata().file_metadata().num_rows() as u64
        }
        other => panic!("{}: no reader for {other:?}", path.display()),
    }
}
