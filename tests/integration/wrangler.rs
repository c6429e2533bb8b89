//! The real wrangler (installed by scripts/test.sh from npm, path in
//! PGFLARE_WRANGLER) runs the D1 files `pgflare load` writes, unchanged,
//! through its local D1 (workerd's SQLite with D1's rules), link files
//! included; and a
//! `--target sqlite` load into wrangler's own local file is what a
//! `wrangler d1 execute --local` query then sees.

use std::path::Path;
use std::process::Command;

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
    let bin = std::env::var("PGFLARE_WRANGLER")
        .expect("PGFLARE_WRANGLER is not set: run the tests with scripts/test.sh, which installs wrangler");
    Command::new(bin)
        .args(args)
        .current_dir(project)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true")
        .output()
        .expect("run wrangler")
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
    let o =
        python("compare_d1.py", &[&db.url, local.to_str().expect("p"), "documents", "chunks", "pages"], None);
    assert!(o.status.success(), "{}", text(&o));

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
