//! The GitHub Actions examples (examples/github-actions) run as written:
//! the `run:` scripts of their sync and verify steps, read from the YAML by
//! an independent reader (tests/py/workflow_step.py), run with bash against
//! the local stack (Postgres, the emulator as Cloudflare, a wrangler.jsonc
//! with the bindings the examples name) and `GITHUB_STEP_SUMMARY` set to a
//! file, as the runner would. The step's exit code is what sets the job's
//! status: 0 when consistent, 1 on a difference (the job fails), 2 when
//! verify could not run; the summary is written in every case.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

fn step(workflow: &str, name: &str) -> String {
    let file = root().join("examples/github-actions").join(workflow);
    let o = python("workflow_step.py", &[file.to_str().expect("path"), name], None);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).expect("utf-8")
}

/// Runs `script` with bash in `dir` as a runner would: pgflare on PATH,
/// the secrets in the environment, the step summary file given.
fn run_step(emu: &Emulator, db: &TestDb, dir: &Path, script: &str, summary: &Path) -> Output {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_pgflare"));
    let path =
        format!("{}:{}", bin.parent().expect("bin dir").display(), std::env::var("PATH").unwrap_or_default());
    // As GitHub runs a `run:` step under `shell: bash` (the examples' default):
    // `bash --noprofile --norc -eo pipefail {0}` (workflow syntax docs,
    // jobs.<job_id>.steps[*].shell).
    let mut c = Command::new("bash");
    c.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script]);
    emu.env_for(db, &mut c);
    c.env("PATH", path).env("GITHUB_STEP_SUMMARY", summary).current_dir(dir).output().expect("bash")
}

#[test]
fn the_verify_gate_and_the_sync_steps_run_as_written() {
    let db = TestDb::new("ciexamples");
    db.seed(300, 8);
    let emu = Emulator::start(&["--rate-limit", "1000000/1"]);
    let dir = temp_dir("ciexamples");
    let config = init_config(&db, dir.path());
    std::fs::write(
        dir.path().join("wrangler.jsonc"),
        r#"{
  // The bindings the workflow examples name.
  "name": "rag-service",
  "d1_databases": [{ "binding": "DB", "database_name": "rag", "database_id": "db1" }],
  "vectorize": [{ "binding": "VECTORIZE", "index_name": "vi" }]
}
"#,
    )
    .expect("wrangler.jsonc");
    ok(emu
        .command(&db)
        .args(["load", "--config", &config, "--target", "api", "--wrangler", "wrangler.jsonc"])
        .args(["--d1-binding", "DB", "--vectorize-binding", "VECTORIZE", "--create-index"])
        .args(["--rate-limit", "1000000/1", "--state-dir"])
        .arg(dir.path().join("state"))
        .current_dir(dir.path())
        .output()
        .expect("load"));

    // The gate on a consistent pair: exit 0, the report is the summary.
    let gate = step("pgflare-verify-gate.yml", "Verify Supabase against D1 and Vectorize");
    let summary = dir.path().join("summary.md");
    let o = run_step(&emu, &db, dir.path(), &gate, &summary);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report = std::fs::read_to_string(dir.path().join("verify-report/report.md")).expect("report.md");
    let written = std::fs::read_to_string(&summary).expect("the step summary");
    assert_eq!(written, report, "the summary is the Markdown report");
    assert!(dir.path().join("verify-report/report.html").is_file(), "the artifact exists");

    // A row changed in D1 behind the source's back: exit 1 fails the job,
    // and the summary says where.
    let d1 = rusqlite::Connection::open(emu.d1_file("db1")).expect("d1 file");
    let changed = d1
        .execute("UPDATE chunks SET content = 'changed in D1' WHERE id = (SELECT min(id) FROM chunks)", [])
        .expect("plant");
    assert_eq!(changed, 1);
    drop(d1);
    let summary = dir.path().join("summary-differs.md");
    let o = run_step(&emu, &db, dir.path(), &gate, &summary);
    assert_eq!(o.status.code(), Some(1), "differences fail the step: {}", text(&o));
    let written = std::fs::read_to_string(&summary).expect("the step summary");
    assert!(written.contains("changed in D1"), "{written}");

    // Verify cannot run (a token Cloudflare refuses): exit 2, and the
    // summary says so instead of staying empty.
    let summary = dir.path().join("summary-error.md");
    std::fs::remove_dir_all(dir.path().join("verify-report")).expect("clean");
    let refused = format!("export CLOUDFLARE_API_TOKEN=not-the-token\n{gate}");
    let o = run_step(&emu, &db, dir.path(), &refused, &summary);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let written = std::fs::read_to_string(&summary).expect("the step summary");
    assert!(written.contains("could not run (exit code 2)"), "{written}");
    assert!(!written.contains("not-the-token") && !text(&o).contains("not-the-token"), "no secret shown");

    // The scheduled sync: the change goes out, the summary is the artifact.
    db.exec("UPDATE chunks SET content = content || ' (edited)', updated_at = now() WHERE chunk_index = 0");
    let sync = step("pgflare-sync.yml", "Sync once");
    let o = run_step(&emu, &db, dir.path(), &sync, &dir.path().join("unused.md"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("sync-summary.json")).expect("sync-summary.json"),
    )
    .expect("JSON");
    assert!(s.to_string().contains("upserted"), "{s:#}");
}
