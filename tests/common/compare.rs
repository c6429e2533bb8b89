//! The one way the tests compare pgflare's outputs with the source:
//! compare_d1.py (psycopg + Python's sqlite3, row by row and value by
//! value), and the small readers of counts and summaries the assertions
//! are written with.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use super::{ok, python, text, TestDb};

/// compare_d1.py between the source and the D1 SQLite file `sqlite` on
/// `tables` (`name[:d1_name][:col=d1col,...][:-excluded,...]`): whether
/// they are equal, and its JSON report.
pub fn compare_d1(db: &TestDb, sqlite: &Path, tables: &[&str]) -> (bool, Value) {
    let o = run_compare_d1(db, sqlite, tables);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("compare_d1.py: {}", text(&o)));
    (o.status.success(), v)
}

/// Asserts that D1 (`sqlite`) equals the source on `tables` (see
/// [`compare_d1`]); returns the report.
pub fn assert_d1_matches(db: &TestDb, sqlite: &Path, tables: &[&str]) -> Value {
    let o = run_compare_d1(db, sqlite, tables);
    assert!(o.status.success(), "D1 differs from the source: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("compare_d1.py: {}", text(&o)))
}

fn run_compare_d1(db: &TestDb, sqlite: &Path, tables: &[&str]) -> Output {
    let mut args = vec![db.url.as_str(), sqlite.to_str().expect("path")];
    args.extend_from_slice(tables);
    python("compare_d1.py", &args, None)
}

/// The entry of table `name` in a summary (`tables[]` of load, sync).
pub fn table<'a>(s: &'a Value, name: &str) -> &'a Value {
    let tables = s["tables"].as_array().unwrap_or_else(|| panic!("tables in {s:#}"));
    tables.iter().find(|t| t["table"] == name).unwrap_or_else(|| panic!("{name} in {s:#}"))
}

/// Asserts success and returns the JSON pgflare printed (`--json`).
pub fn ok_json(o: Output) -> Value {
    let out = ok(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("pgflare printed no JSON ({e}):\n{out}"))
}

/// A `--json` run whatever its outcome: exit code, the JSON it printed
/// (null when none) and its whole output for messages.
pub fn outcome(o: Output) -> (Option<i32>, Value, String) {
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code(), v, text(&o))
}

/// One integer value of `sql` on the SQLite file `path` (a D1 file).
pub fn sqlite_count(path: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(path).expect("open D1 file");
    c.query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}
