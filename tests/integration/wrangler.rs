//! The real wrangler (installed by scripts/test.sh from npm, path in
//! PGFLARE_WRANGLER) runs the D1 files `pgflare load` writes, unchanged,
//! through its local D1 (workerd's SQLite with D1's rules), link files
//! included; and a
//! `--target sqlite` load into wrangler's own local file is what a
//! `wrangler d1 execute --local` query then sees.
//!
//! Contract with a client we did not write: wrangler's remote commands
//! (`d1 execute --remote --file`, `d1 export --remote`, the `vectorize`
//! commands) run against `pgflare emulate` through `CLOUDFLARE_API_BASE_URL`,
//! and what they print is checked, not only their exit status.

use std::path::Path;

use crate::common::*;

const WRANGLER_JSONC: &str = r#"{
  // A rehearsal project: comments and trailing commas, as wrangler allows.
  "name": "pgflare-rehearsal",
  "compatibility_date": "2025-01-01",
  "d1_databases": [
    { "binding": "DB", "database_name": "rehearsal", "database_id": "00000000-0000-4000-8000-00000000d1d1", },
    { "binding": "DB2", "database_name": "rehearsal2", "database_id": "00000000-0000-4000-8000-00000000d1d2", },
  ],
}
"#;

fn wrangler(project: &Path, args: &[&str]) -> std::process::Output {
    wrangler_command(project).args(args).output().expect("run wrangler")
}

/// wrangler with its remote commands pointed at the emulator; asserts
/// success and returns stdout.
pub(crate) fn wrangler_remote(project: &Path, emu: &Emulator, args: &[&str]) -> String {
    let o = emu.wrangler(project).args(args).output().expect("run wrangler");
    assert!(o.status.success(), "wrangler {args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A project whose `wrangler.jsonc` binds the emulator's database `db1`.
pub(crate) fn remote_project(dir: &Path) -> std::path::PathBuf {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).expect("mkdir");
    let config = r#"{ "name": "pgflare-contract", "compatibility_date": "2025-01-01",
  "d1_databases": [ { "binding": "DB", "database_name": "db1", "database_id": "db1" } ] }"#;
    std::fs::write(project.join("wrangler.jsonc"), config).expect("write");
    project
}

/// The JSON wrangler prints after its banner (the first line opening an
/// object or array, to the end).
fn printed_json(out: &str) -> serde_json::Value {
    let start = out
        .lines()
        .scan(0, |at, l| {
            let here = *at;
            *at += l.len() + 1;
            Some((here, l))
        })
        .find(|(_, l)| l.starts_with('{') || l.starts_with('['))
        .map(|(at, _)| at)
        .unwrap_or_else(|| panic!("no JSON in wrangler's output:\n{out}"));
    serde_json::from_str(&out[start..]).unwrap_or_else(|e| panic!("wrangler's JSON: {e}\n{out}"))
}

#[test]
fn wrangler_runs_the_load_files_unchanged_and_reads_a_sqlite_load() {
    let db = TestDb::new("wrangler");
    db.seed(400, 8);
    // A self-reference: its links come as link files after the data, and
    // wrangler must run their `UPDATE ... FROM (VALUES ...)` as they are.
    db.exec(
        "CREATE TABLE pages (id int PRIMARY KEY, parent_id int REFERENCES pages, title text);
         INSERT INTO pages SELECT i, CASE WHEN i < 50 THEN i + 1 END, 'page ' || i FROM generate_series(1, 50) i;",
    );
    let dir = temp_dir("wrangler");
    let project = dir.path().join("project");
    std::fs::create_dir_all(&project).expect("mkdir");
    std::fs::write(project.join("wrangler.jsonc"), WRANGLER_JSONC).expect("write");
    let (files, state) = (dir.path().join("files"), dir.path().join("state"));
    let st = state.to_str().expect("p");
    ok(pgflare(
        &db,
        &["load", "--quiet", "--state-dir", st, "--target", "files", "--out", files.to_str().expect("p")],
    ));

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(files.join("manifest.json")).expect("manifest")).expect("json");
    let order = manifest["apply_order"].as_array().expect("order");
    assert!(order.last().and_then(|f| f.as_str()).is_some_and(|f| f.starts_with("pages/link-")), "{order:?}");
    for f in manifest["apply_order"].as_array().expect("order") {
        let path = files.join(f.as_str().expect("path"));
        let o = wrangler(
            &project,
            &["d1", "execute", "rehearsal", "--local", "--file", path.to_str().expect("p")],
        );
        assert!(o.status.success(), "wrangler refused {}: {}", path.display(), text(&o));
    }
    let local =
        pgflare::config::wrangler_local::local_d1_file(&project, "00000000-0000-4000-8000-00000000d1d1");
    assert!(local.exists(), "wrangler's local D1 file is where pgflare computes it: {}", local.display());
    assert_d1_matches(&db, &local, &["documents", "chunks", "pages"]);

    // Straight into wrangler's local file of the second database.
    let wrangler_file = project.join("wrangler.jsonc");
    let d1 = "00000000-0000-4000-8000-00000000d1d2";
    let args =
        ["load", "--quiet", "--state-dir", st, "--target", "sqlite", "--d1-database-id", d1, "--wrangler"];
    let mut all = args.to_vec();
    all.push(wrangler_file.to_str().expect("p"));
    ok(pgflare(&db, &all));
    let o = wrangler(
        &project,
        &[
            "d1",
            "execute",
            "rehearsal2",
            "--local",
            "--json",
            "--command",
            "SELECT count(*) AS n FROM chunks",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("wrangler JSON");
    assert_eq!(
        v[0]["results"][0]["n"].as_u64().map(|n| n.to_string()),
        Some(db.query_one("SELECT count(*)::text FROM chunks"))
    );
}

#[test]
fn wrangler_d1_remote_execute_file_and_export_run_against_the_emulator() {
    let emu = Emulator::start(&[]);
    let dir = temp_dir("wrangler-d1");
    let project = remote_project(dir.path());
    let mut sql = String::from("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\n");
    for i in 0..300 {
        sql.push_str(&format!("INSERT INTO notes VALUES ({i}, 'note {i}: it''s here');\n"));
    }
    let file = dir.path().join("notes.sql");
    std::fs::write(&file, &sql).expect("write");
    let f = file.to_str().expect("p");

    // The import flow: init, upload to upload_url, ingest, poll.
    let v = printed_json(&wrangler_remote(
        &project,
        &emu,
        &["d1", "execute", "db1", "--remote", "--file", f, "-y", "--json"],
    ));
    let r = &v[0]["results"][0];
    assert_eq!(
        (r["Total queries executed"].as_u64(), r["Rows written"].as_u64()),
        (Some(301), Some(300)),
        "{v:#}"
    );
    let v = printed_json(&wrangler_remote(
        &project,
        &emu,
        &[
            "d1",
            "execute",
            "db1",
            "--remote",
            "--json",
            "--command",
            "SELECT count(*) AS n, max(body) AS m FROM notes",
        ],
    ));
    assert_eq!(v[0]["results"][0]["n"], 300, "{v:#}");
    // Text order: "note 9:" sorts after "note 99" (':' > '9').
    assert_eq!(v[0]["results"][0]["m"], "note 9: it's here", "{v:#}");

    let out = dir.path().join("export.sql");
    let printed = wrangler_remote(
        &project,
        &emu,
        &["d1", "export", "db1", "--remote", "--table", "notes", "--output", out.to_str().expect("p")],
    );
    assert!(printed.contains("Downloaded to"), "{printed}");
    let dump = std::fs::read_to_string(&out).expect("export file");
    assert!(dump.contains("CREATE TABLE notes"), "{dump:.300}");
    assert_eq!(dump.lines().filter(|l| l.starts_with("INSERT INTO")).count(), 300, "{dump:.600}");
    assert!(dump.contains("'note 7: it''s here'"), "quotes survive the round trip");
}

#[test]
fn wrangler_vectorize_commands_run_against_the_emulator() {
    let emu = Emulator::start(&[]);
    let dir = temp_dir("wrangler-vz");
    let project = remote_project(dir.path());
    let w = |args: &[&str]| wrangler_remote(&project, &emu, args);
    let file = dir.path().join("v.ndjson");
    let write = |lines: &[serde_json::Value]| {
        let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        std::fs::write(&file, text.join("\n") + "\n").expect("write");
    };
    let f = file.to_str().expect("p");

    let made = printed_json(&w(&[
        "vectorize",
        "create",
        "wix",
        "--dimensions",
        "3",
        "--metric",
        "cosine",
        "--json",
    ]));
    assert_eq!(
        (made["name"].as_str(), made["config"]["dimensions"].as_u64()),
        (Some("wix"), Some(3)),
        "{made:#}"
    );
    let printed =
        w(&["vectorize", "create-metadata-index", "wix", "--propertyName", "kind", "--type", "string"]);
    assert!(printed.contains("Mutation changeset identifier"), "{printed}");

    write(&[
        serde_json::json!({"id": "a", "values": [1, 0, 0], "metadata": {"kind": "x"}}),
        serde_json::json!({"id": "b", "values": [0, 1, 0], "metadata": {"kind": "y"}}),
        serde_json::json!({"id": "c", "values": [0, 0, 1], "metadata": {"kind": "x"}}),
    ]);
    let printed = w(&["vectorize", "insert", "wix", "--file", f]);
    assert!(printed.contains("Successfully enqueued 3 vectors"), "{printed}");
    // Upsert replaces b (values and metadata).
    write(&[serde_json::json!({"id": "b", "values": [0.9, 0.1, 0], "metadata": {"kind": "x"}})]);
    let v = printed_json(&w(&["vectorize", "upsert", "wix", "--file", f, "--json"]));
    assert_eq!(v["count"], 1, "{v:#}");

    // Vectorize applies writes later: wait (bounded) until info shows them.
    let started = std::time::Instant::now();
    let info = loop {
        let info = printed_json(&w(&["vectorize", "info", "wix", "--json"]));
        if info["vectorCount"] == 3 && info["processedUpToMutation"].is_string() {
            break info;
        }
        assert!(started.elapsed().as_secs() < 60, "writes not applied: {info:#}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(info["dimensions"], 3, "{info:#}");

    let q = printed_json(&w(&[
        "vectorize",
        "query",
        "wix",
        "--vector",
        "1",
        "0",
        "0",
        "--top-k",
        "2",
        "--return-metadata",
        "all",
    ]));
    let ids: Vec<&str> =
        q["matches"].as_array().expect("matches").iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["a", "b"], "b's upserted values rank it second: {q:#}");
    assert_eq!(q["matches"][1]["metadata"]["kind"], "x", "{q:#}");

    let got = printed_json(&w(&["vectorize", "get-vectors", "wix", "--ids", "b", "zz"]));
    assert_eq!(got.as_array().map(Vec::len), Some(1), "{got:#}");
    let values: Vec<f64> =
        got[0]["values"].as_array().expect("values").iter().filter_map(|x| x.as_f64()).collect();
    let close = values.len() == 3 && values.iter().zip([0.9, 0.1, 0.0]).all(|(a, b)| (a - b).abs() < 1e-6);
    assert!(close, "the upserted values: {got:#}");

    let listed = printed_json(&w(&["vectorize", "list-vectors", "wix", "--json"]));
    let mut ids: Vec<&str> =
        listed["vectors"].as_array().expect("vectors").iter().filter_map(|v| v["id"].as_str()).collect();
    ids.sort_unstable();
    assert_eq!((ids, listed["totalCount"].as_u64()), (vec!["a", "b", "c"], Some(3)), "{listed:#}");

    let printed = w(&["vectorize", "delete-vectors", "wix", "--ids", "a", "c"]);
    assert!(
        printed.contains("Successfully enqueued 2 vectors") && printed.contains("for deletion"),
        "{printed}"
    );
    let started = std::time::Instant::now();
    while printed_json(&w(&["vectorize", "info", "wix", "--json"]))["vectorCount"] != 1 {
        assert!(started.elapsed().as_secs() < 60, "the deletion was not applied");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
