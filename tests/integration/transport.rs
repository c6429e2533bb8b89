//! The transport against `pgflare emulate` behaving as Cloudflare does:
//! transfers at a throttled bandwidth that outlast `--http-timeout` finish
//! (load with D1 imports and Vectorize upserts, verify with the export
//! download) while a stalled upload ends within the bound; the rate
//! limit's whole-window block is waited out with a visible countdown, or,
//! when it is longer than pgflare waits, stops the run saying what to do;
//! D1's internal errors (HTTP 500, code 7500) are retried; tokens the API
//! cannot read stop at once with how to fix them.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

fn api_load(emu: &Emulator, db: &TestDb, config: &str, state: &Path, extra: &[&str]) -> Command {
    let mut c = emu.command(db);
    c.args(["--json"])
        .args(extra)
        .args(["load", "--config", config, "--target", "api", "--d1-database-id", "db1"])
        .args(["--vectorize-index", "chunks-index", "--create-index", "--state-dir"])
        .arg(state);
    c
}

/// Issue 13: reqwest's read timeout ran from sending a request to the
/// answer's head, the upload included, so any transfer longer than
/// `--http-timeout` failed however steadily it moved.
#[test]
fn slow_transfers_that_outlast_the_http_timeout_finish() {
    let db = TestDb::new("slowlink");
    db.seed(3000, 384);
    let dir = temp_dir("slowlink");
    let config = init_config(&db, dir.path());
    // 2 MiB/s: a Vectorize upsert of 3000 vectors of 384 dimensions (about
    // 11.5 MB of NDJSON) takes about 5.5 s, over the 4 s bound.
    let emu = Emulator::start(&["--bandwidth", "2MiB"]);
    let state = dir.path().join("state");
    let timeouts = ["--http-timeout", "4s", "--connect-timeout", "4s"];
    let mut c = api_load(&emu, &db, &config, &state, &timeouts);
    c.args(["--import-mib", "8", "--partition-mib", "16"]);
    let started = Instant::now();
    let (o, took) = run_for(c, Duration::from_secs(240));
    let all = text(&o);
    assert!(o.status.success(), "the slow load failed after {took:?}: {all}");
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(s["complete"], true, "{all}");
    assert!(started.elapsed() > Duration::from_secs(5), "the link was not slow: {took:?}");
    eprintln!("slow load: {took:?}: {}", String::from_utf8_lossy(&o.stderr));

    let mut v = emu.command(&db);
    v.args(timeouts).args(["--json", "verify", "--config", &config, "--d1-database-id", "db1"]);
    v.args(["--vectorize-index", "chunks-index", "--report-dir"]).arg(dir.path().join("report"));
    let (o, took) = run_for(v, Duration::from_secs(240));
    assert!(o.status.success(), "verify over the slow link failed after {took:?}: {}", text(&o));
    eprintln!("slow verify: {took:?}");
}

/// Accepts connections, reads the request head, then reads nothing more.
fn stops_reading() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let l2 = l.try_clone().expect("clone");
    std::thread::spawn(move || {
        for conn in l2.incoming() {
            let Ok(mut c) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                std::thread::sleep(Duration::from_secs(60));
                drop(c);
            });
        }
    });
    (l, port)
}

#[test]
fn an_upload_that_stalls_ends_within_the_bound_naming_the_server() {
    let (_listener, port) = stops_reading();
    let api = pgflare::cloudflare::Api::new(pgflare::cloudflare::ApiSettings {
        base_url: format!("http://127.0.0.1:{port}/client/v4"),
        account_id: "acct".into(),
        token: "token".into(),
        rate_limit_requests: 100,
        rate_limit_window: Duration::from_secs(1),
        retry: pgflare::cloudflare::retry::RetryPolicy {
            attempts: 2,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            max_retry_after: Duration::from_secs(1),
            timeout_attempts: 2,
        },
        timeouts: pgflare::timeouts::Timeouts {
            connect: Duration::from_secs(1),
            statement: Duration::from_secs(1),
            http: Duration::from_secs(1),
            d1_wait: Duration::from_secs(60),
        },
    })
    .expect("client");
    // Far more than the socket buffers hold: the upload must block.
    let body = bytes::Bytes::from(vec![b'x'; 64 * 1024 * 1024]);
    let url = format!("http://127.0.0.1:{port}/__upload/file.sql");
    let started = Instant::now();
    let out = block_on(api.fetch("import upload", reqwest::Method::PUT, &url, Some(body)));
    let took = started.elapsed();
    let err = out.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(took < Duration::from_secs(8), "{took:?}: {err}");
    assert!(
        err.contains(&format!(
            "the upload to 127.0.0.1:{port} stalled: nothing was sent for 1 s (--http-timeout)"
        )),
        "{err}"
    );
}

/// Cloudflare blocks every call for 5 minutes once over its limit; a run
/// that sat through that with one line said minutes before looked hung.
#[test]
fn a_rate_limit_block_is_waited_out_with_a_countdown() {
    let db = TestDb::new("ratewait");
    db.seed(300, 8);
    // Over 5 requests in 6 s: every call is refused for the next 6 s.
    let emu = Emulator::start(&["--rate-limit", "5/6"]);
    let dir = temp_dir("ratewait");
    let state = dir.path().join("state");
    let o = emu.d1_load(&db, &state, &["--import-mib", "1", "--rate-limit", "1000/1"]).output().expect("run");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let s: serde_json::Value = ok_json(o);
    assert_eq!(s["complete"], true);
    assert!(err.contains("[971]"), "the limit was hit: {err}");
    assert!(err.contains("before the next attempt"), "the wait is announced with its end: {err}");
    assert!(err.contains("still waiting for Cloudflare: 0:0"), "a countdown: {err}");
}

/// pgflare's own budget (`--rate-limit`) made a verify of 20,000 vectors
/// over the API (1,000 `get_by_ids` calls) sit silent for 5 minutes once
/// it was spent: found by the 20,000-chunk run below.
#[test]
fn a_spent_request_budget_is_waited_out_with_a_countdown() {
    let db = TestDb::new("budgetwait");
    db.seed(300, 8);
    let emu = Emulator::start(&[]);
    let dir = temp_dir("budgetwait");
    let state = dir.path().join("state");
    let o = emu.d1_load(&db, &state, &["--import-mib", "1", "--rate-limit", "4/6"]).output().expect("run");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let s: serde_json::Value = ok_json(o);
    assert_eq!(s["complete"], true);
    assert!(!err.contains("[971]"), "the budget kept the run under the server's limit: {err}");
    assert!(err.contains("the request budget is spent: 4 requests per 6 s (--rate-limit"), "{err}");
    assert!(err.contains("still waiting for the request budget: 0:0"), "a countdown: {err}");
    assert!(err.contains("before the next request") && !err.contains("retrying"), "nothing failed: {err}");
}

#[test]
fn a_rate_limit_block_longer_than_pgflare_waits_stops_with_what_to_do() {
    let db = TestDb::new("ratelong");
    db.seed(300, 8);
    let emu = Emulator::start(&["--rate-limit", "5/400"]);
    let dir = temp_dir("ratelong");
    let state = dir.path().join("state");
    let c = emu.d1_load(&db, &state, &["--rate-limit", "1000/1"]);
    let (o, took) = run_for(c, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{took:?}: {err}");
    assert!(err.contains("Retry-After asks for 6.7 min, longer than pgflare waits: 5.5 min"), "{err}");
    assert!(err.contains("Run the command again after 6.7 min"), "{err}");
}

/// D1 reports internal failures as HTTP 500 with code 7500 (the request
/// did not run): retried like any 5xx. The client coped before issue 13;
/// this guards it.
#[test]
fn d1_internal_errors_are_retried_and_the_load_completes() {
    let db = TestDb::new("d1internal");
    db.seed(400, 8);
    let emu = Emulator::start(&["--internal-error-rate", "0.3", "--seed", "11"]);
    let dir = temp_dir("d1internal");
    let state = dir.path().join("state");
    let o = emu.d1_load(&db, &state, &["--import-mib", "1"]).output().expect("run");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let s: serde_json::Value = ok_json(o);
    assert_eq!(s["complete"], true);
    assert!(err.contains("[7500] D1_ERROR: Internal error") && err.contains("retrying"), "{err}");
    assert_d1_matches(&db, &emu.d1_file("db1"), &["documents", "chunks"]);
}

/// A token pasted with its quotes or a line break: Cloudflare cannot read
/// the header (400, 6003/6111) or it cannot be sent at all. Before issue
/// 13 the line break made every request fail to build, which was retried
/// as a network error for minutes.
#[test]
fn a_token_cloudflare_cannot_read_stops_at_once_saying_how_to_fix_it() {
    let db = TestDb::new("badtoken");
    db.seed(20, 4);
    let emu = Emulator::start(&[]);
    let dir = temp_dir("badtoken");
    for (token, want) in [
        (format!("{}\n", emu.token), "a space or line break"),
        (format!("\"{}\"", emu.token), "without quotes"),
    ] {
        let mut c = emu.command(&db);
        c.env("CLOUDFLARE_API_TOKEN", &token)
            .args(["load", "--target", "api", "--d1-database-id", "db1", "--state-dir"])
            .arg(dir.path().join("state"));
        let (o, took) = run_for(c, Duration::from_secs(20));
        let all = text(&o);
        assert_eq!(o.status.code(), Some(2), "{took:?}: {all}");
        assert!(took < Duration::from_secs(10), "no retries: {took:?}: {all}");
        assert!(all.contains("CLOUDFLARE_API_TOKEN") && all.contains(want), "{token:?}: {all}");
        assert!(!all.contains(&emu.token), "the token leaked: {all}");
    }
}

/// 403 code 10000 is a token Cloudflare knows but that may not do this:
/// the message says which permissions a token needs.
#[test]
fn a_refused_token_names_the_permissions_it_needs() {
    let db = TestDb::new("scopes");
    db.seed(20, 4);
    let emu = Emulator::start(&[]);
    let dir = temp_dir("scopes");
    let o = emu
        .command(&db)
        .env("CLOUDFLARE_API_TOKEN", "a-well-formed-but-unknown-token")
        .args(["load", "--target", "api", "--d1-database-id", "db1", "--state-dir"])
        .arg(dir.path().join("state"))
        .output()
        .expect("run");
    let all = text(&o);
    assert_eq!(o.status.code(), Some(2), "{all}");
    assert!(all.contains("[10000] Authentication error"), "{all}");
    assert!(all.contains("Account > D1 > Edit") && all.contains("Account > Vectorize > Edit"), "{all}");
}

/// The dry run's estimate of the time the requests need is paced by the
/// budget the run would use (`--rate-limit`), not by Cloudflare's 1200.
#[test]
fn the_dry_run_estimates_time_from_the_request_budget() {
    let db = TestDb::new("dryrunbudget");
    db.seed(300, 8);
    let emu = Emulator::start(&[]);
    let dir = temp_dir("dryrunbudget");
    let mut c = emu.command(&db);
    c.args(["load", "--target", "api", "--d1-database-id", "db1", "--dry-run", "--rate-limit", "10/60"])
        .arg("--state-dir")
        .arg(dir.path().join("state"));
    let out = ok(c.output().expect("run"));
    assert!(out.contains("at the request budget of 10 per 60 s (--rate-limit), at least"), "{out}");
}
