//! `pgflare verify` against a D1 SQLite file: a clean load (hard rows and
//! every type included) is consistent with exit 0; planted divergences are
//! each found, classified and located (key, columns, both values) with
//! exit 1, a value pgflare never writes and a D1 table that does not
//! exist included; a missing D1 file is exit 2.

use std::path::Path;

use crate::common::*;

fn verify(
    db: &TestDb,
    sqlite: &Path,
    report: &Path,
    extra: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let mut args = vec![
        "--json",
        "verify",
        "--sqlite",
        sqlite.to_str().expect("p"),
        "--report-dir",
        report.to_str().expect("p"),
        "--partition-mib",
        "1",
    ];
    args.extend_from_slice(extra);
    let o = pgflare(db, &args);
    outcome(o)
}

fn target<'a>(r: &'a serde_json::Value, table: &str) -> &'a serde_json::Value {
    &r["tables"].as_array().expect("tables").iter().find(|t| t["table"] == table).expect("table")["targets"]
        [0]
}

#[test]
fn verify_finds_exactly_the_planted_d1_divergences() {
    let db = TestDb::new("verifycmd");
    db.exec_file("fixtures/types.sql");
    db.seed(600, 8);
    let dir = temp_dir("verifycmd");
    let (sqlite, report) = (dir.path().join("d1.sqlite"), dir.path().join("report"));
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

    let (code, r, out) = verify(&db, &sqlite, &report, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(r["verdict"]["status"], "consistent", "{r:#}");
    assert_eq!(
        target(&r, "public.chunks")["source_rows"].as_u64(),
        Some(db.query_one("SELECT count(*)::text FROM chunks").parse().expect("n"))
    );
    assert!(report.join("report.json").is_file());

    // Plant: a deleted row, an extra row, one character of content, one float.
    let c = rusqlite::Connection::open(&sqlite).expect("open");
    let victim: String =
        c.query_row("SELECT id FROM chunks ORDER BY id LIMIT 1 OFFSET 100", [], |r| r.get(0)).expect("id");
    let changed: String = c
        .query_row(
            "SELECT id FROM chunks WHERE length(content) > 300 ORDER BY id LIMIT 1 OFFSET 20",
            [],
            |r| r.get(0),
        )
        .expect("a long content");
    c.execute("PRAGMA foreign_keys = OFF", []).expect("fk");
    c.execute("DELETE FROM chunks WHERE id = ?1", [&victim]).expect("delete");
    c.execute(
        "INSERT INTO chunks SELECT 'ffffffff-0000-4000-8000-000000000000', document_id, chunk_index + 1000, content, \
         token_count, tags, metadata, embedding, created_at, updated_at FROM chunks WHERE id = ?1",
        [&changed],
    )
    .expect("extra");
    // One character in the middle of a long text: its first 120 are the same on both sides.
    c.execute(
        "UPDATE chunks SET content = substr(content, 1, 200) || 'Z' || substr(content, 202) WHERE id = ?1",
        [&changed],
    )
    .expect("content");
    c.execute("UPDATE type_zoo SET f8 = 2.2500000000000004 WHERE id = 1", []).expect("float");
    drop(c);

    let (code, r, out) = verify(&db, &sqlite, &report, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(r["verdict"]["status"], "differences");
    let chunks = target(&r, "public.chunks");
    assert_eq!(chunks["counts"], serde_json::json!({"missing": 1, "extra": 1, "changed": 1}), "{chunks:#}");
    let diffs = chunks["differences"].as_array().expect("list");
    let find =
        |kind: &str| diffs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("{kind}: {chunks:#}"));
    assert_eq!(find("missing")["key"], format!("id={victim}"));
    assert_eq!(find("extra")["key"], "id=ffffffff-0000-4000-8000-000000000000");
    let ch = find("changed");
    assert_eq!(ch["key"], format!("id={changed}"));
    assert_eq!(ch["fields"].as_array().expect("fields").len(), 1, "only content differs: {ch:#}");
    assert_eq!(ch["fields"][0]["field"], "content");
    // The report shows both sides from just before the first difference (issue 19).
    let (src, tgt) =
        (ch["fields"][0]["source"].as_str().expect("s"), ch["fields"][0]["target"].as_str().expect("t"));
    assert!(tgt.starts_with('…') && tgt.contains("differs from char 201 of"), "{ch:#}");
    assert_eq!(tgt.chars().nth(31), Some('Z'), "30 characters before the difference: {tgt}");
    assert!(src.contains("differs from char 201 of") && src.chars().nth(31) != Some('Z'), "{ch:#}");
    let zoo = target(&r, "public.type_zoo");
    assert_eq!(zoo["counts"], serde_json::json!({"changed": 1}));
    assert_eq!(zoo["differences"][0]["fields"][0]["field"], "f8");
    assert_eq!(zoo["differences"][0]["fields"][0]["source"], "2.25");
    assert_eq!(target(&r, "public.documents")["counts"], serde_json::json!({}));

    // A sample compares fewer buckets, deterministically.
    let (_, r, out) = verify(&db, &sqlite, &report, &["--sample", "0.25"]);
    assert_eq!(target(&r, "public.chunks")["buckets"], 1024, "{out}");
    assert_eq!(target(&r, "public.chunks")["sampled"], 0.25);

    // A value pgflare never writes is one changed field that shows what D1
    // holds, not the end of the run.
    let c = rusqlite::Connection::open(&sqlite).expect("open");
    c.execute("UPDATE type_zoo SET u = 'not-a-uuid' WHERE id = 3", []).expect("uuid");
    // A D1 table that does not exist: every source row is missing.
    c.execute("PRAGMA foreign_keys = OFF", []).expect("fk");
    c.execute("DROP TABLE documents", []).expect("drop");
    drop(c);
    let (code, r, out) = verify(&db, &sqlite, &report, &[]);
    assert_eq!(code, Some(1), "{out}");
    let zoo = target(&r, "public.type_zoo");
    assert_eq!(zoo["counts"], serde_json::json!({"changed": 2}), "{zoo:#}");
    let odd = zoo["differences"].as_array().expect("list").iter().find(|d| d["key"] == "id=3").expect("id=3");
    assert_eq!(odd["fields"].as_array().map(|f| f.len()), Some(1), "{odd:#}");
    assert_eq!(odd["fields"][0]["field"], "u");
    assert_eq!(odd["fields"][0]["source"], "00000000-0000-0000-0000-000000000000");
    assert!(odd["fields"][0]["target"].as_str().expect("t").contains("`not-a-uuid`"), "{odd:#}");
    let docs = target(&r, "public.documents");
    let n: u64 = db.query_one("SELECT count(*)::text FROM documents").parse().expect("n");
    assert!(n > 0);
    assert_eq!(docs["counts"], serde_json::json!({"missing": n}), "{docs:#}");
    assert_eq!((docs["source_rows"].as_u64(), docs["target_rows"].as_u64()), (Some(n), Some(0)));
    let listed = docs["differences"].as_array().expect("list");
    assert_eq!(listed.len() as u64, n.min(200));
    assert!(listed.iter().all(|d| d["kind"] == "missing"), "{docs:#}");
    assert!(docs["notes"][0].as_str().expect("note").contains("D1 has no table documents"), "{docs:#}");
    assert_eq!(
        target(&r, "public.chunks")["counts"],
        serde_json::json!({"missing": 1, "extra": 1, "changed": 1})
    );

    // No D1 file: could not verify.
    let (code, _, out) = verify(&db, &dir.path().join("nope.sqlite"), &report, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("nope.sqlite does not exist"), "{out}");
}

#[test]
fn verify_finds_exactly_the_planted_vectorize_divergences() {
    let db = TestDb::new("verifyvec");
    // A transaction of another database runs across the seed and the load
    // (as when tests run in parallel): the planted divergences below must
    // still be differences, not rows "pending sync".
    let other = OpenTransaction::begin();
    db.seed(400, 8);
    let emu = Emulator::start(&[]);
    let dir = temp_dir("verifyvec");
    let config = dir.path().join("pgflare.toml");
    init_config(&db, dir.path());
    let c = config.to_str().expect("p");
    let state = dir.path().join("state");
    let load = emu
        .command(&db)
        .args([
            "load",
            "--config",
            c,
            "--target",
            "api",
            "--d1-database-id",
            "db1",
            "--vectorize-index",
            "vi",
        ])
        .args(["--create-index", "--state-dir", state.to_str().expect("p")])
        .output()
        .expect("load");
    ok(load);
    drop(other);
    let report = dir.path().join("report");
    let sqlite = emu.d1_file("db1");
    let run = || {
        let o = emu
            .command(&db)
            .args([
                "--json",
                "verify",
                "--config",
                c,
                "--sqlite",
                sqlite.to_str().expect("p"),
                "--vectorize-index",
                "vi",
                // Every vector's values: the planted ones are among 400.
                "--vector-values",
                "all",
            ])
            .args(["--report-dir", report.to_str().expect("p")])
            .output()
            .expect("verify");
        outcome(o)
    };
    let (code, r, out) = run();
    assert_eq!(code, Some(0), "{out}");
    let vt = &target_of(&r, "public.chunks", "vectorize");
    assert_eq!(vt["values"]["not_compared"].as_u64(), Some(0), "{vt:#}");
    let expected: u64 =
        db.query_one("SELECT count(*)::text FROM chunks WHERE embedding IS NOT NULL").parse().expect("n");
    assert_eq!(
        (vt["source_rows"].as_u64(), vt["target_rows"].as_u64()),
        (Some(expected), Some(expected)),
        "{vt:#}"
    );
    assert_eq!(vt["values"]["values_compared"].as_u64(), Some(expected), "{vt:#}");
    // Query parity: 10 source vectors, exact cosine top-10 vs the index.
    let q = &r["queries"];
    assert_eq!((q["k"].as_u64(), q["queries"].as_array().map(|a| a.len())), (Some(10), Some(10)), "{q:#}");
    assert_eq!((q["mean_recall"].as_f64(), q["passed"].as_bool()), (Some(1.0), Some(true)), "{q:#}");
    assert!(
        q["queries"]
            .as_array()
            .expect("q")
            .iter()
            .all(|x| x["rank_agreement"] == 1.0 && x["max_score_diff"].as_f64().expect("d") < 1e-9),
        "{q:#}"
    );
    // The same D1 over the API: exported, streamed, replayed into a local file.
    let o = emu
        .command(&db)
        .args(["--json", "verify", "--config", c, "--d1-database-id", "db1", "--no-vectorize"])
        .args(["--report-dir", report.to_str().expect("p")])
        .output()
        .expect("verify over the API");
    let api: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let d1 = target_of(&api, "public.chunks", "d1");
    assert!(d1["location"].as_str().expect("loc").starts_with("api:http"), "{d1:#}");
    assert_eq!(d1["target_rows"], d1["source_rows"]);
    for f in ["report.json", "report.md", "report.html"] {
        assert!(report.join(f).is_file(), "{f}");
    }

    // Plant: one float one bit off, a metadata value, a dropped vector, an extra one.
    let _planted = block_on(async {
        let v = emu.vectorize("vi");
        let ids = v.list_ids().await.expect("list");
        let got = v.get_by_ids(&ids[10..12]).await.expect("get");
        let mut bit =
            serde_json::json!({"id": got[0].id, "values": got[0].values, "metadata": got[0].metadata});
        let x = got[0].values[3];
        bit["values"][3] = serde_json::json!(f32::from_bits(x.to_bits() ^ 1) as f64);
        let mut meta =
            serde_json::json!({"id": got[1].id, "values": got[1].values, "metadata": got[1].metadata});
        meta["metadata"]["chunk_index"] = serde_json::json!(987654);
        let extra = serde_json::json!({"id": "extra-vector", "values": got[1].values});
        let body = format!("{bit}\n{meta}\n{extra}\n");
        let t = v.upsert("plant", body.into()).await.expect("upsert");
        let quiet = |_: &str| {};
        v.wait_applied(t, std::time::Duration::from_secs(30), &quiet).await.expect("applied");
        let t = v.delete_by_ids("plant", &[ids[20].clone()]).await.expect("delete").expect("t");
        v.wait_applied(t, std::time::Duration::from_secs(30), &quiet).await.expect("applied");
        (got[0].id.clone(), got[1].id.clone(), ids[20].clone())
    });
    let (code, r, out) = run();
    assert_eq!(code, Some(1), "{out}");
    let vt = target_of(&r, "public.chunks", "vectorize");
    assert_eq!(
        vt["counts"],
        serde_json::json!({"missing": 1, "extra": 1, "vector_values": 1, "metadata": 1}),
        "{vt:#}"
    );
    let diffs = vt["differences"].as_array().expect("list");
    let find = |k: &str| diffs.iter().find(|d| d["kind"] == k).unwrap_or_else(|| panic!("{k}: {vt:#}"));
    assert_eq!(find("extra")["key"], "id=extra-vector");
    let values = find("vector_values");
    let max = values["max_abs_diff"].as_f64().expect("max_abs_diff");
    assert!(max > 0.0 && max < 1e-6, "one bit of one float: {max}");
    let meta = find("metadata");
    assert_eq!(meta["fields"][0]["field"], "metadata.chunk_index");
    assert_eq!(meta["fields"][0]["target"], "987654.0");
    assert_eq!(target_of(&r, "public.chunks", "d1")["counts"], serde_json::json!({}), "D1 untouched");
}

fn target_of<'a>(r: &'a serde_json::Value, table: &str, kind: &str) -> &'a serde_json::Value {
    let t = r["tables"].as_array().expect("tables").iter().find(|t| t["table"] == table).expect("table");
    t["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|g| g["kind"] == kind)
        .unwrap_or_else(|| panic!("{kind}: {t:#}"))
}

/// A D1 behind by a few hundred rows spread over every bucket: the rows of
/// the differing buckets are the whole table, too many to keep with their
/// values (some KiB each: 600 MiB at 200,000 rows, measured). verify
/// splits those buckets into parts first and keeps only the differing
/// parts' rows: every difference is still found and counted exactly.
#[test]
fn differences_in_every_bucket_are_found_keeping_only_their_rows() {
    let db = TestDb::new("verifyrefine");
    db.seed(12_000, 4);
    let dir = temp_dir("verifyrefine");
    let (sqlite, report) = (dir.path().join("d1.sqlite"), dir.path().join("report"));
    let state = dir.path().join("state");
    let (sq, st) = (sqlite.to_str().expect("p"), state.to_str().expect("p"));
    ok(pgflare(&db, &["load", "--target", "sqlite", "--sqlite", sq, "--state-dir", st]));

    let c = rusqlite::Connection::open(&sqlite).expect("open");
    c.execute("PRAGMA foreign_keys = OFF", []).expect("fk");
    let n = |sql: &str| c.execute(sql, []).expect(sql);
    assert_eq!(n("UPDATE chunks SET content = content || '~' WHERE id IN (SELECT id FROM chunks ORDER BY id LIMIT 150 OFFSET 1000)"), 150);
    assert_eq!(
        n("DELETE FROM chunks WHERE id IN (SELECT id FROM chunks ORDER BY id LIMIT 40 OFFSET 6000)"),
        40
    );
    assert_eq!(
        n("INSERT INTO chunks SELECT 'ffffffff-0000-4000-8000-0000000000' || substr(id, 35), document_id, chunk_index + 1000, \
           content, token_count, tags, metadata, embedding, created_at, updated_at FROM chunks ORDER BY id LIMIT 10 OFFSET 9000"),
        10
    );
    drop(c);

    // 64 buckets of ~190 rows: 200 differences leave few of them equal.
    let (code, r, out) = verify(&db, &sqlite, &report, &["--buckets", "64"]);
    assert_eq!(code, Some(1), "{out}");
    let chunks = target(&r, "public.chunks");
    assert_eq!(
        chunks["counts"],
        serde_json::json!({"missing": 40, "extra": 10, "changed": 150}),
        "{chunks:#}"
    );
    assert!(chunks["buckets_differing"].as_u64().expect("n") >= 60, "{chunks:#}");
    let listed = chunks["differences"].as_array().expect("list");
    assert_eq!(listed.len(), 200);
    assert_eq!(
        listed.iter().filter(|d| d["key"].as_str().is_some_and(|k| k.starts_with("id=ffffffff"))).count(),
        10
    );
    // The note says how finely: 1,024 parts a bucket (4 per row), and how
    // many parts differ: one per difference, or fewer when two share one.
    let (note, parts) = split_note(&chunks["notes"]);
    assert!(note.contains("each was split into 1024 parts"), "{note}");
    assert!((190..=200).contains(&parts), "{parts} parts differ for 200 differences: {note}");

    // Few differing rows: no split, the same counts.
    let c = rusqlite::Connection::open(&sqlite).expect("open");
    c.execute("PRAGMA foreign_keys = OFF", []).expect("fk");
    c.execute("DELETE FROM chunks WHERE id LIKE 'ffffffff%'", []).expect("undo extra");
    drop(c);
    let (code, r, out) = verify(&db, &sqlite, &report, &[]);
    assert_eq!(code, Some(1), "{out}");
    let chunks = target(&r, "public.chunks");
    assert_eq!(chunks["counts"], serde_json::json!({"missing": 40, "changed": 150}), "{chunks:#}");
    assert!(
        !chunks.to_string().contains("split into"),
        "4096 buckets: ~560 rows to keep, no split: {chunks:#}"
    );
}
