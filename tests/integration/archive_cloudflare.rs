//! `pgflare archive --from cloudflare`: what D1 and Vectorize hold,
//! archived in the layout and with the manifest of a Postgres archive.
//! Each test loads a real Postgres into the emulator (or a local D1 file),
//! archives Cloudflare's side, and proves the archive: `archive verify`
//! (offline and against the source), independent readers (pyarrow, DuckDB,
//! polars through compare_archive.py; pyarrow reads of single values), a
//! restore whose D1 verifies against the source, and changes planted on
//! the Cloudflare side that the archive must hold instead of Postgres's.

use std::path::Path;

use serde_json::Value;

use crate::common::*;

const INDEX: &str = "cf-index";

/// Seeds `db`, writes init's pgflare.toml in `dir`, loads it into the
/// emulator's D1 and Vectorize; returns the config's path.
pub(crate) fn loaded(db: &TestDb, emu: &Emulator, dir: &Path, chunks: usize, dims: usize) -> String {
    db.seed(chunks, dims);
    let config = init_config(db, dir);
    let state = dir.join("state");
    let o = emu
        .d1_load(db, &state, &["--config", &config, "--vectorize-index", INDEX, "--create-index"])
        .output()
        .expect("load");
    ok_json(o);
    config
}

/// `pgflare archive --from cloudflare` of the emulator's D1 and index.
pub(crate) fn archive_cf(
    db: &TestDb,
    emu: &Emulator,
    config: &str,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    emu.command(db)
        .args(["--json", "archive", "--from", "cloudflare", "--config", config, "--out"])
        .arg(out)
        .args(["--d1-database-id", DB, "--vectorize-index", INDEX])
        .args(extra)
        .output()
        .expect("archive --from cloudflare")
}

fn manifest(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).expect("manifest"))
        .expect("json")
}

fn verify_archive(db: &TestDb, out: &Path, against: bool) -> std::process::Output {
    let mut args = vec!["archive", "verify", out.to_str().expect("p")];
    if against {
        args.push("--against-source");
    }
    pgflare(db, &args)
}

/// pyarrow's rows of one table of an archive, as JSON (vectors as lists of
/// float32 bit patterns, uuids as text), keyed by `key`.
fn py_table(out: &Path, folder: &str, key: &str) -> Value {
    let code = "import sys, json, glob, uuid, struct\nimport pyarrow.parquet as pq, pyarrow as pa\n\
        files = sorted(glob.glob(sys.argv[1] + '/' + sys.argv[2] + '/*.parquet'))\n\
        t = pa.concat_tables([pq.read_table(f) for f in files]) if files else None\n\
        def norm(v):\n    if isinstance(v, bytes) and len(v) == 16: return str(uuid.UUID(bytes=v))\n    \
        if isinstance(v, list) and v and isinstance(v[0], float): return [struct.unpack('<I', struct.pack('<f', x))[0] for x in v]\n    \
        return v if not hasattr(v, 'isoformat') else v.isoformat()\n\
        rows = t.to_pylist() if t is not None else []\n\
        print(json.dumps({str(norm(r[sys.argv[3]])): {k: norm(v) for k, v in r.items()} for r in rows}, default=str))";
    serde_json::from_str(&python_code(code, &[out.to_str().expect("p"), folder, key])).expect("json")
}

#[test]
fn an_api_load_archived_from_cloudflare_verifies_and_equals_the_source() {
    let db = TestDb::new("cfarc");
    let emu = Emulator::start(&["--vectorize-delay-ms", "200"]);
    let dir = temp_dir("cfarc");
    // More than one `list` page (1,000 ids).
    let config = loaded(&db, &emu, dir.path(), 1100, 8);
    let out = dir.path().join("cf-archive");
    let o = archive_cf(&db, &emu, &config, &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let s = ok_json(o);
    assert!(stderr.contains("API requests (budget"), "the request estimate is said first: {stderr}");
    assert!(!stderr.contains(&emu.token) && !s.to_string().contains(&emu.token), "no secret in the output");
    let with_vectors = db.count("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL");
    assert_eq!(s["vectorize"]["listed"].as_u64(), Some(with_vectors), "{s:#}");
    assert_eq!(s["vectorize"]["in_rows"].as_u64(), Some(with_vectors), "{s:#}");
    assert_eq!(s["side_rows"], 0, "a faithful load leaves no vector aside: {s:#}");
    assert_eq!(s["d1"]["read_by"], "export");

    // The manifest has the Postgres archive's form, says what was read.
    assert_schema("archive-manifest", &[&out.join("manifest.json")]);
    let m = manifest(&out);
    let cf = &m["cloudflare"];
    assert!(
        m["source"]["url"].as_str().expect("url").contains(&format!("({DB}), Vectorize index {INDEX}")),
        "{m:#}"
    );
    let bm = cf["d1"]["bookmark_after"].as_str().expect("a Time Travel bookmark");
    assert_eq!(cf["d1"]["bookmark_before"].as_str(), Some(bm), "nothing was written during the read");
    assert_eq!(m["snapshot"]["id"].as_str(), Some(bm), "the archive names the D1 state it holds");
    assert!(cf["d1"]["export_bookmark"].is_string(), "{cf:#}");
    assert!(cf["vectorize"]["mutation_after"].is_string(), "{cf:#}");
    assert!(cf["definitions"].as_str().expect("definitions").contains("the source Postgres"), "{cf:#}");

    // archive verify, offline and against the source: the same digests.
    let o = verify_archive(&db, &out, false);
    assert!(o.status.success(), "{}", text(&o));
    let o = verify_archive(&db, &out, true);
    assert!(o.status.success(), "the Cloudflare archive must equal the source\n{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("OK: 3 tables"),
        "2 tables and _vectorize: {}",
        text(&o)
    );

    // Independent readers, value by value, vectors bit for bit.
    crate::archive::readers_match_the_source(&db, &out);
    // The same Cloudflare state gives the same bytes.
    let again = dir.path().join("again");
    ok_json(archive_cf(&db, &emu, &config, &again, &[]));
    let hashes = |m: &Value| -> Vec<Value> {
        m["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .flat_map(|t| t["files"].as_array().expect("f").clone())
            .collect()
    };
    assert_eq!(hashes(&manifest(&again)), hashes(&m), "files, sizes, blake3 and digests");

    // Restored into a fresh D1 file, it verifies against the source.
    let d1 = dir.path().join("restored.sqlite");
    let (d1_arg, out_arg) = (d1.to_str().expect("p"), out.to_str().expect("p"));
    ok(pgflare(&db, &["restore", out_arg, "--config", &config, "--target", "sqlite", "--sqlite", d1_arg]));
    let report = dir.path().join("report");
    let args = ["verify", "--config", &config, "--sqlite", d1_arg, "--no-vectorize", "--report-dir"];
    let o = pgflare(&db, &[&args[..], &[report.to_str().expect("p")]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn changes_made_on_cloudflare_are_what_the_archive_holds() {
    let db = TestDb::new("cfchg");
    let emu = Emulator::start(&[]);
    let dir = temp_dir("cfchg");
    let config = loaded(&db, &emu, dir.path(), 120, 4);
    let ids: Vec<String> = db
        .query_one("SELECT string_agg(id::text, ',' ORDER BY id) FROM (SELECT id FROM chunks WHERE embedding IS NOT NULL ORDER BY id LIMIT 3) x")
        .split(',')
        .map(str::to_string)
        .collect();
    let (edited, unvectored, remeta) = (&ids[0], &ids[1], &ids[2]);
    // On Cloudflare: a row edited in D1, a vector deleted, a vector whose
    // metadata was rewritten, and a vector no row has.
    block_on(emu.ok(&format!("UPDATE chunks SET content = 'edited on cloudflare' WHERE id = '{edited}'")));
    let v = emu.vectorize(INDEX);
    block_on(async {
        let mut stored = v.get_by_ids(std::slice::from_ref(remeta)).await.expect("get").remove(0);
        stored.metadata = Some(serde_json::json!({"planted": "by a worker"}));
        let orphan = serde_json::json!({"id": "orphan-1", "values": [0.5, -0.0, 1.0, 2.0]});
        let line = |id: &str, values: &[f32], meta: &Option<Value>| {
            serde_json::json!({"id": id, "values": values, "metadata": meta}).to_string()
        };
        let body = format!("{}\n{}\n", line(remeta, &stored.values, &stored.metadata), orphan);
        v.upsert("plant", bytes::Bytes::from(body)).await.expect("upsert");
        let t = v
            .delete_by_ids("plant", std::slice::from_ref(unvectored))
            .await
            .expect("delete")
            .expect("ticket");
        v.wait_applied(t, std::time::Duration::from_secs(30), &|_| {}).await.expect("applied");
    });

    // A virtual table makes D1 refuse its export: the tables are read
    // through paged queries instead.
    block_on(emu.ok("CREATE VIRTUAL TABLE notes USING fts5(body)"));

    let out = dir.path().join("cf-archive");
    // A small request budget: the read is bound by it, and says so first.
    let o = archive_cf(&db, &emu, &config, &out, &["--rate-limit", "10/1"]);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let s = ok_json(o);
    assert!(stderr.contains("budget 10 per 1 s: it makes this take at least"), "{stderr}");
    assert_eq!(s["d1"]["read_by"], "queries", "{s:#}");
    let notes = s["notes"].to_string();
    assert!(notes.contains("export failed") && notes.contains("Virtual Tables"), "{notes}");
    let aside = &s["vectorize"]["set_aside"];
    assert_eq!((aside["no_row"].as_u64(), aside["metadata_differs"].as_u64()), (Some(1), Some(1)), "{s:#}");
    assert_schema("archive-manifest", &[&out.join("manifest.json")]);
    let o = verify_archive(&db, &out, false);
    assert!(o.status.success(), "the archive is intact: {}", text(&o));
    // A second implementation of the row digest agrees, side table included.
    let d = python("row_digest.py", &[out.to_str().expect("p")], None);
    assert!(d.status.success(), "{}", text(&d));
    assert!(String::from_utf8_lossy(&d.stdout).contains("public._vectorize: 2 rows checked"), "{}", text(&d));

    // The archive holds Cloudflare's state, not Postgres's.
    let rows = py_table(&out, "chunks", "id");
    assert_eq!(rows[edited]["content"], "edited on cloudflare");
    assert!(rows[unvectored]["embedding"].is_null(), "the deleted vector: {}", rows[unvectored]);
    assert!(rows[remeta]["embedding"].is_array());
    let side = py_table(&out, "_vectorize", "id");
    assert_eq!(side["orphan-1"]["reason"], "no_row");
    let neg_zero = (-0.0f32).to_bits();
    assert_eq!(
        side["orphan-1"]["values"],
        serde_json::json!([0.5f32.to_bits(), neg_zero, 1f32.to_bits(), 2f32.to_bits()])
    );
    assert_eq!(side[remeta.as_str()]["reason"], "metadata_differs");
    assert!(side[remeta.as_str()]["metadata"].as_str().expect("metadata").contains("planted"));

    // Against the source: exactly the two rows Cloudflare changed differ.
    let o = pgflare(&db, &["--json", "archive", "verify", out.to_str().expect("p"), "--against-source"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).expect("report");
    let mut changed: Vec<String> = r["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| format!("{} {}", p["kind"].as_str().unwrap_or(""), p["key"].as_str().unwrap_or("")))
        .collect();
    changed.sort();
    let mut want = vec![format!("changed_row id={edited}"), format!("changed_row id={unvectored}")];
    want.sort();
    assert_eq!(changed, want, "{r:#}");
}

/// A local D1 file (the sqlite load target) archived with the definitions
/// of a Postgres archive, as after the source is decommissioned: every
/// type D1 holds comes back in the source's type; D1's lossy forms (NaN,
/// -0.0, non-finite array elements) are the only differences, and an
/// independent reader that applies D1's rule to the source finds none.
#[test]
fn a_local_d1_file_of_every_type_archives_with_definitions_from_an_archive() {
    let db = TestDb::new("cffile");
    db.exec_file("fixtures/types.sql");
    let dir = temp_dir("cffile");
    let pg_archive = dir.path().join("pg-archive");
    ok(pgflare(&db, &["archive", "--quiet", "--out", pg_archive.to_str().expect("p")]));
    let d1 = dir.path().join("d1.sqlite");
    let state = dir.path().join("state");
    let (d1_arg, st) = (d1.to_str().expect("p"), state.to_str().expect("p"));
    ok(pgflare(&db, &["load", "--target", "sqlite", "--sqlite", d1_arg, "--state-dir", st]));

    let out = dir.path().join("cf-archive");
    // The source is gone: nothing may connect to it.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pgflare"))
        .args(["--json", "archive", "--from", "cloudflare", "--sqlite", d1_arg, "--like"])
        .arg(&pg_archive)
        .arg("--out")
        .arg(&out)
        .env("DATABASE_URL", "postgres://nobody:secret@127.0.0.1:1/gone")
        .env_remove("CLOUDFLARE_API_TOKEN")
        .output()
        .expect("archive");
    let s = ok_json(o);
    assert_eq!(s["d1"]["read_by"], "file");
    assert!(s.get("vectorize").is_none(), "no vector mapping, no Vectorize: {s:#}");
    assert_schema("archive-manifest", &[&out.join("manifest.json")]);
    let m = manifest(&out);
    assert!(m["cloudflare"]["definitions"].as_str().expect("d").contains("pg-archive"), "{m:#}");
    assert_eq!(
        m["tables"][0]["columns"],
        manifest(&pg_archive)["tables"][0]["columns"],
        "the source's columns"
    );

    let o = verify_archive(&db, &out, false);
    assert!(o.status.success(), "{}", text(&o));
    // D1 cannot hold NaN (SQLite stores NULL) nor -0.0 in a REAL (stored as
    // the integer 0), and JSON arrays hold no NaN or Infinity: those rows,
    // and only those, differ from the source.
    let o = pgflare(&db, &["--json", "archive", "verify", out.to_str().expect("p"), "--against-source"]);
    let r: Value = serde_json::from_slice(&o.stdout).expect("report");
    let mut keys: Vec<&str> =
        r["problems"].as_array().expect("problems").iter().filter_map(|p| p["key"].as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["id=1", "id=3", "id=4"], "{r:#}");
    let cmp =
        python("compare_archive.py", &["--archive", out.to_str().expect("p"), "--d1-form"], Some(&db.url));
    assert!(cmp.status.success(), "an independent reader differs\n{}", text(&cmp));
    assert!(String::from_utf8_lossy(&cmp.stdout).contains(" 0 differences"), "{}", text(&cmp));

    // Restored into a new D1 file, it is what the load wrote: verify, which
    // expects D1's forms, finds it consistent with the source.
    let restored = dir.path().join("restored.sqlite");
    let r_arg = restored.to_str().expect("p");
    ok(pgflare(&db, &["restore", out.to_str().expect("p"), "--target", "sqlite", "--sqlite", r_arg]));
    let report = dir.path().join("report");
    let o = pgflare(&db, &["verify", "--sqlite", r_arg, "--report-dir", report.to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// Vectors with an id column that is not the key and a namespace: each
/// goes back to the row with that id, and one moved to another namespace
/// on Cloudflare is kept as it is in the side table.
#[test]
fn namespaced_vectors_with_their_own_ids_find_their_rows() {
    let db = TestDb::new("cfns");
    db.exec(
        "CREATE EXTENSION IF NOT EXISTS vector;
         CREATE TABLE items (id bigint PRIMARY KEY, tenant text NOT NULL, slug text NOT NULL UNIQUE,
                             body text, e vector(3));
         INSERT INTO items SELECT i, 't' || (i % 3), 'item-' || i, 'body ' || i,
                                  ('[' || i || ',-0,' || (i::float4 / 7) || ']')::vector
           FROM generate_series(1, 60) i;
         UPDATE items SET e = NULL WHERE id = 5;",
    );
    let dir = temp_dir("cfns");
    let config = dir.path().join("pgflare.toml");
    let toml = "[[tables]]\nname = \"items\"\nvector = \"e\"\nvector_id = \"slug\"\n\
                vector_namespace = \"tenant\"\nvector_metadata = [\"body\"]\n";
    std::fs::write(&config, toml).expect("config");
    let c = config.to_str().expect("p");
    let emu = Emulator::start(&[]);
    let state = dir.path().join("state");
    let mut load = emu.d1_load(&db, &state, &["--config", c, "--vectorize-index", INDEX, "--create-index"]);
    ok_json(load.output().expect("load"));
    block_on(async {
        let v = emu.vectorize(INDEX);
        let line =
            r#"{"id":"item-7","values":[7,-0.0,2],"namespace":"elsewhere","metadata":{"body":"body 7"}}"#;
        let t = v.upsert("plant", bytes::Bytes::from(format!("{line}\n"))).await.expect("upsert");
        v.wait_applied(t, std::time::Duration::from_secs(30), &|_| {}).await.expect("applied");
    });
    let out = dir.path().join("cf-archive");
    let s = ok_json(archive_cf(&db, &emu, c, &out, &[]));
    assert_eq!(s["vectorize"]["set_aside"]["namespace_differs"], 1, "{s:#}");
    assert_eq!(s["vectorize"]["rows_without_vector"], 1, "{s:#}");
    let rows = py_table(&out, "items", "id");
    assert_eq!(rows["7"]["e"], serde_json::json!([7f32.to_bits(), (-0.0f32).to_bits(), 2f32.to_bits()]));
    assert!(rows["5"]["e"].is_null());
    let side = py_table(&out, "_vectorize", "id");
    let planted = (side["item-7"]["namespace"].as_str(), side["item-7"]["reason"].as_str());
    assert_eq!(planted, (Some("elsewhere"), Some("namespace_differs")));
    // Row 7's values changed on Cloudflare; every other row is the source's.
    let o = pgflare(&db, &["--json", "archive", "verify", out.to_str().expect("p"), "--against-source"]);
    let r: Value = serde_json::from_slice(&o.stdout).expect("report");
    let keys: Vec<&str> =
        r["problems"].as_array().expect("problems").iter().filter_map(|p| p["key"].as_str()).collect();
    assert_eq!(keys, ["id=7"], "{r:#}");
}

#[test]
fn nothing_is_written_before_the_inputs_are_known_good() {
    let db = TestDb::new("cfbad");
    let emu = Emulator::start(&[]);
    let dir = temp_dir("cfbad");
    let config = loaded(&db, &emu, dir.path(), 40, 4);
    let out = dir.path().join("cf-archive");

    // An index that does not exist.
    let o = emu
        .command(&db)
        .args(["archive", "--from", "cloudflare", "--config", &config, "--out"])
        .arg(&out)
        .args(["--d1-database-id", DB, "--vectorize-index", "no-such-index"])
        .output()
        .expect("archive");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`no-such-index` does not exist"), "{}", text(&o));
    assert!(!out.exists(), "nothing written");

    // A D1 value that is not its source type: named by table, column, key.
    let id = db.query_one("SELECT id::text FROM chunks ORDER BY id LIMIT 1");
    block_on(emu.ok(&format!("UPDATE chunks SET created_at = 'yesterday' WHERE id = '{id}'")));
    let o = archive_cf(&db, &emu, &config, &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("D1 chunks") && err.contains("created_at") && err.contains(&id), "{err}");
    assert!(err.contains("`yesterday`"), "{err}");
    assert!(!out.exists(), "nothing written");

    // A flag of the Cloudflare side without --from cloudflare.
    let o = pgflare(&db, &["archive", "--out", out.to_str().expect("p"), "--sqlite", "x.sqlite"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--from cloudflare"), "{}", text(&o));
}
