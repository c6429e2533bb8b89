//! Integers beyond 2^53 over the D1 API. D1 answers through JavaScript, so
//! its query results and its export round them as a JavaScript number
//! would (the emulator does the same); pgflare must keep every `bigint`
//! exact anyway: a table keyed by such ids loads, verifies clean and syncs,
//! hard deletes included, without touching a neighbour that the rounded
//! value would name. And verify must still work when D1's export refuses
//! the database (a virtual table, a column named `index`): it reads D1
//! through paged queries instead and says so.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::common::*;

/// 2^53 and its neighbours collide once rounded: 2^53 + 1 reads back as
/// 2^53, 2^53 + 3 as 2^53 + 4; i64::MAX reads back as 2^63 (no i64),
/// i64::MIN prints as `-9223372036854776000` (no i64 either).
const IDS: [i64; 10] = [
    1,
    42,
    9_007_199_254_740_991,
    9_007_199_254_740_992,
    9_007_199_254_740_993,
    9_007_199_254_740_995,
    1_234_567_890_123_456_789,
    i64::MAX,
    i64::MIN,
    -9_007_199_254_740_993,
];

struct Big {
    db: TestDb,
    emu: Emulator,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Big {
    fn new(tag: &str, extra_sql: &str, emu_flags: &[&str]) -> Big {
        let db = TestDb::new(tag);
        let values = IDS
            .iter()
            .map(|i| format!("({i}, {}, 'row {i}')", i.wrapping_sub(7)))
            .collect::<Vec<_>>()
            .join(", ");
        db.exec(&format!(
            "CREATE TABLE big (id bigint PRIMARY KEY, n bigint NOT NULL, note text);
             INSERT INTO big VALUES {values};
             {extra_sql}"
        ));
        let emu = Emulator::start(emu_flags);
        let dir = temp_dir(tag);
        let config = dir.path().join("pgflare.toml");
        let mut toml = "[[tables]]\nname = \"big\"\n".to_string();
        if extra_sql.contains("CREATE TABLE odd") {
            toml.push_str("\n[[tables]]\nname = \"odd\"\n");
        }
        std::fs::write(&config, toml).expect("config");
        Big { db, emu, dir, config }
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
        let o = self
            .emu
            .command(&self.db)
            .arg("--json")
            .args(args)
            .args(["--config", self.config.to_str().expect("p")])
            .output()
            .expect("pgflare");
        outcome(o)
    }

    fn load(&self) {
        let state = self.dir.path().join("state");
        let (code, _, out) = self.run(&[
            "load",
            "--target",
            "api",
            "--d1-database-id",
            "db1",
            "--state-dir",
            state.to_str().expect("p"),
        ]);
        assert_eq!(code, Some(0), "load: {out}");
    }

    fn verify(&self) -> (Option<i32>, serde_json::Value, String) {
        let report = self.dir.path().join("report");
        self.run(&[
            "verify",
            "--d1-database-id",
            "db1",
            "--no-vectorize",
            "--report-dir",
            report.to_str().expect("p"),
        ])
    }

    fn sync(&self) -> (Option<i32>, serde_json::Value, String) {
        let work = tempfile::tempdir_in(self.dir.path()).expect("work dir");
        self.run(&[
            "sync",
            "--once",
            "--target",
            "api",
            "--d1-database-id",
            "db1",
            "--work-dir",
            work.path().to_str().expect("p"),
        ])
    }

    /// D1's rows read from the emulator's own SQLite file (not through
    /// the API, so nothing on the way rounds them).
    fn d1_rows(&self) -> BTreeMap<i64, i64> {
        let c = rusqlite::Connection::open(self.emu.d1_file("db1")).expect("open D1 file");
        let mut st = c.prepare("SELECT id, n, typeof(id), typeof(n) FROM big").expect("prepare");
        let rows = st
            .query_map([], |r| {
                let (t1, t2): (String, String) = (r.get(2)?, r.get(3)?);
                assert_eq!((t1.as_str(), t2.as_str()), ("integer", "integer"), "D1 holds integers");
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    fn source_rows(&self) -> BTreeMap<i64, i64> {
        let text = self.db.query_one("SELECT string_agg(id || ':' || n, ',' ORDER BY id) FROM big");
        text.split(',')
            .map(|p| {
                let (a, b) = p.split_once(':').expect("pair");
                (a.parse().expect("id"), b.parse().expect("n"))
            })
            .collect()
    }
}

fn assert_clean(b: &Big, when: &str) -> serde_json::Value {
    let (code, r, out) = b.verify();
    assert_eq!(
        code,
        Some(0),
        "verify {when}: {}\n{out}",
        serde_json::to_string_pretty(&r["verdict"]).unwrap_or_default()
    );
    r
}

#[test]
fn bigint_ids_beyond_2_53_load_verify_and_sync_with_every_id_exact() {
    let b = Big::new("bigids", "", &[]);
    b.load();
    assert_eq!(b.d1_rows(), b.source_rows(), "the load wrote every id and value exactly");
    assert_clean(&b, "after the load");

    // A hard delete of 2^53 + 1 (whose rounded value 2^53 is another row),
    // an insert next to it, and an update of a value only 2 apart.
    b.db.exec(
        "DELETE FROM big WHERE id = 9007199254740993;
         INSERT INTO big VALUES (9007199254740997, 9007199254740999, 'new');
         UPDATE big SET n = 1234567890123456791 WHERE id = 1234567890123456789;",
    );
    let (code, r, out) = b.sync();
    assert_eq!(code, Some(0), "first sync: {out}");
    assert_eq!(r["tables"][0]["rows_hard_deleted"].as_u64(), Some(1), "{r:#}");
    assert_eq!(b.d1_rows(), b.source_rows(), "after the first sync");
    assert_clean(&b, "after the first sync");

    // The second sync compares with the sums the first one saved and reads
    // only the changed buckets from D1: the extremes of i64.
    b.db.exec(&format!("DELETE FROM big WHERE id IN ({}, {})", i64::MAX, i64::MIN));
    let (code, r, out) = b.sync();
    assert_eq!(code, Some(0), "second sync: {out}");
    assert_eq!(r["tables"][0]["rows_hard_deleted"].as_u64(), Some(2), "{r:#}");
    assert_eq!(b.d1_rows(), b.source_rows(), "after the second sync");
    assert_clean(&b, "after the second sync");
}

#[test]
fn inspect_names_bigint_columns_whose_values_d1_json_would_round() {
    let b = Big::new(
        "bigspect",
        "CREATE TABLE small (id bigint PRIMARY KEY); INSERT INTO small VALUES (9007199254740991);",
        &[],
    );
    let v: serde_json::Value = ok_json(pgflare(&b.db, &["inspect", "--json"]));
    let table = |name: &str| {
        v["tables"].as_array().expect("tables").iter().find(|t| t["name"] == name).cloned().expect(name)
    };
    let findings = |name: &str| -> Vec<serde_json::Value> {
        table(name)["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["check"] == "d1_integer_precision")
            .cloned()
            .collect()
    };
    let big = findings("big");
    let column =
        |c: &str| big.iter().find(|f| f["column"] == c).cloned().unwrap_or_else(|| panic!("{c}: {big:?}"));
    // Beyond ±(2^53 - 1): ids 2^53, 2^53 + 1, 2^53 + 3, 1234567890123456789,
    // i64::MAX, i64::MIN, -(2^53 + 1); of n = id - 7 only the last four.
    assert_eq!(column("id")["rows"], 7, "{big:?}");
    assert_eq!(column("n")["rows"], 4, "{big:?}");
    assert_eq!(column("id")["severity"], "note");
    assert!(findings("small").is_empty(), "2^53 - 1 is exact in JavaScript");
    let human = ok(pgflare(&b.db, &["inspect", "--table", "big"]));
    assert!(human.contains("d1_integer_precision"), "{human}");
}

fn d1_notes(r: &serde_json::Value, table: &str) -> String {
    let t = r["tables"].as_array().expect("tables").iter().find(|t| t["table"] == table).expect("table");
    t["targets"][0]["notes"].to_string()
}

#[test]
fn verify_reads_d1_through_queries_when_the_export_refuses() {
    // A column named `index` (and `group`): D1's export cannot select it
    // (workers-sdk issue 6675).
    let b = Big::new(
        "bigrefused",
        r#"CREATE TABLE odd (id int PRIMARY KEY, "index" int NOT NULL, "group" text);
           INSERT INTO odd SELECT g, g * 10, 'g' || g FROM generate_series(1, 1200) g;"#,
        &[],
    );
    b.load();
    let r = assert_clean(&b, "with a column named index");
    let notes = d1_notes(&r, "public.odd");
    assert!(notes.contains("D1's export failed") && notes.contains("near \\\"index\\\""), "{notes}");
    assert!(notes.contains("paged queries"), "{notes}");
    assert!(d1_notes(&r, "public.big").contains("paged queries"), "every table says how D1 was read");

    // The fallback reads the data, not just the keys: a changed value is found.
    let d1 = b.emu.d1("db1");
    block_on(d1.query("plant", "UPDATE odd SET \"index\" = 7 WHERE id = 1000")).expect("plant");
    let (code, r, out) = b.verify();
    assert_eq!(code, Some(1), "{out}");
    let odd = r["tables"].as_array().expect("t").iter().find(|t| t["table"] == "public.odd").expect("odd");
    assert_eq!(odd["targets"][0]["counts"], serde_json::json!({"changed": 1}), "{odd:#}");
    block_on(d1.query("unplant", "UPDATE odd SET \"index\" = 10000 WHERE id = 1000")).expect("unplant");

    // A virtual table (full-text search beside the data) makes D1 refuse
    // any whole-database export (cloudflare-docs import-export-data.mdx).
    block_on(d1.query("fts", "CREATE VIRTUAL TABLE notes_fts USING fts5(body)")).expect("fts");
    let r = assert_clean(&b, "with a virtual table");
    let notes = d1_notes(&r, "public.big");
    assert!(notes.contains("cannot export databases with Virtual Tables (fts5)"), "{notes}");
}
