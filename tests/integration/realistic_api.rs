//! Issue 13's whole-run check: 20,000 chunks go through `load --target api`
//! into `pgflare emulate` behaving as the real service does at once (D1
//! imports and exports that stay `active` for several polls, strict request
//! bodies, a 2 MiB/s link, 20 ms per request, Cloudflare's per-user rate
//! limit), and `verify` over the API finds them all equal. The HTTP bounds
//! are short (12 s) so that single transfers outlast them, as large uploads
//! and the export download outlast any whole-request timeout on a real
//! link (a 5,000-vector upload is about 25 MB: 12 s at 2 MiB/s, and the
//! whole request, with the emulator's parse, over 12 s).
//! (12 s, not less: the emulator parses that upload before it answers; in
//! a debug build that took over 3 s with the other tests running on 2
//! CPUs, and over 6 s alone on a 2-CPU machine without AVX-512, silence
//! the client rightly counts.) the rate-limit window is Cloudflare's 1200 requests compressed
//! from 300 s to 30 s, so that verify's 1,000 `get_by_ids` calls press on
//! the budget without making the test 5 minutes long.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

const TIMEOUTS: [&str; 4] = ["--http-timeout", "12s", "--connect-timeout", "6s"];
/// The client's budget: pgflare's default share (1000 of Cloudflare's
/// 1200), over the compressed window.
const BUDGET: [&str; 2] = ["--rate-limit", "1000/30"];

fn count(d1: &Path, table: &str) -> i64 {
    let c = rusqlite::Connection::open(d1).expect("open the emulator's D1 file");
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).expect("count")
}

#[test]
fn twenty_thousand_chunks_load_and_verify_over_a_slow_strict_api() {
    let db = TestDb::new("realapi");
    db.seed(20_000, 384);
    let dir = temp_dir("realapi");
    let config = init_config(&db, dir.path());
    let log = dir.path().join("requests.jsonl");
    let emu = Emulator::start(&[
        "--transfer-polls",
        "3",
        "--bandwidth",
        "2MiB",
        "--latency-ms",
        "20",
        "--rate-limit",
        "1200/30",
        "--request-log",
        log.to_str().expect("p"),
    ]);

    let mut load = emu.command(&db);
    load.args(TIMEOUTS).args(["--json", "load", "--config", &config, "--target", "api"]);
    load.args(["--d1-database-id", "db1", "--vectorize-index", "chunks-index", "--create-index"]);
    load.args(BUDGET).arg("--state-dir").arg(dir.path().join("state"));
    let (o, took) = run_for(load, Duration::from_secs(600));
    assert!(o.status.success(), "the load failed after {took:?}: {}", text(&o));
    let s: Value = serde_json::from_slice(&o.stdout).expect("load summary");
    assert_eq!(s["complete"], true, "{s:#}");
    eprintln!("load of 20,000 chunks over the slow API: {took:?}");

    // What the link and the jobs did, from the server's side.
    let lines = request_log(&log);
    let (bytes, ms) =
        (|l: &Value| l["bytes"].as_u64().unwrap_or(0), |l: &Value| l["ms"].as_u64().unwrap_or(0));
    let slowest = lines.iter().max_by_key(|l| ms(l)).expect("requests");
    assert!(
        ms(slowest) > 12_000 && bytes(slowest) > 12 * 1024 * 1024,
        "a single transfer outlasted --http-timeout (12 s): slowest {slowest}"
    );
    let polls = lines
        .iter()
        .filter(|l| l["path"].as_str().is_some_and(|p| p.ends_with("/import")))
        .filter(|l| l["body"].to_string().contains("current_bookmark"))
        .count();
    assert!(polls >= 3, "the import was polled while it stayed active ({polls} polls)");
    let refused: Vec<&Value> =
        lines.iter().filter(|l| l["status"].as_u64().is_some_and(|s| s >= 400)).collect();
    // The one refusal expected: the index lookup before --create-index
    // creates it (400/3000, as Vectorize answers an unknown index).
    assert!(
        refused
            .iter()
            .all(|l| l["method"] == "GET"
                && l["path"].as_str().is_some_and(|p| p.ends_with("/indexes/{name}"))),
        "no request was refused but the missing index's lookup: {refused:?}"
    );

    let mut verify = emu.command(&db);
    verify.args(TIMEOUTS).args(["--json", "verify", "--config", &config, "--d1-database-id", "db1"]);
    verify.args(["--vectorize-index", "chunks-index"]).args(BUDGET);
    verify.arg("--report-dir").arg(dir.path().join("report"));
    let (o, took) = run_for(verify, Duration::from_secs(600));
    assert_eq!(o.status.code(), Some(0), "verify over the API after {took:?}: {}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).expect("verify report");
    assert_eq!(r["verdict"]["status"], "consistent", "{:#}", r["verdict"]);
    eprintln!("verify over the slow API: {took:?}");
    // 19,626 vectors are 982 get_by_ids calls, more than the budget
    // allows in one window: the client paces them (a spent budget's wait is
    // shown: transport.rs), Cloudflare never has to refuse one.
    assert!(
        !request_log(&log).iter().any(|l| l["status"] == 429),
        "the client's budget kept every request under Cloudflare's limit"
    );

    // An independent reader of the D1 file: every row arrived.
    let d1 = emu.d1_file("db1");
    let source =
        |t: &str| db.query_one(&format!("SELECT count(*)::text FROM {t}")).parse::<i64>().expect("count");
    assert_eq!(count(&d1, "chunks"), source("chunks"));
    assert_eq!(count(&d1, "documents"), source("documents"));
}
