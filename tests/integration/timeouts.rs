//! No network wait is unbounded: servers that accept a connection and never
//! answer, or answer the first bytes and then stall, end every command with
//! exit code 2 within the bound, and the error names the server, the bound
//! and the flag. Real TCP servers in the test: a silent listener, a proxy
//! in front of the test Postgres that stalls once a COPY starts, and an
//! HTTP server that stalls inside its answer.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::common::*;

/// Runs the background threads of a test server until dropped.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Holds `stream` open, saying nothing, until the server stops.
fn hold(stream: TcpStream, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(50));
    }
    drop(stream);
}

/// Accepts connections and serves each with `serve` on its own thread.
fn serve(serve: impl Fn(TcpStream, Arc<AtomicBool>) + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let serve = Arc::new(serve);
    let s = stop.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            if s.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let (serve, s) = (serve.clone(), s.clone());
            thread::spawn(move || serve(conn, s));
        }
    });
    Server { port, stop }
}

/// Accepts every connection and never sends a byte.
fn silent() -> Server {
    serve(|c, stop| hold(c, &stop))
}

/// Forwards to the test Postgres, and stops forwarding the server's bytes
/// (keeping both connections open) right after a COPY BINARY stream has
/// begun: the signature is sent, the rows never are.
fn stalls_in_copy(db: &TestDb) -> Server {
    let (host, port) = pg_address(&db.url);
    serve(move |client, stop| {
        let Ok(server) = TcpStream::connect((host.as_str(), port)) else { return };
        let (mut c_in, mut s_out) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
        thread::spawn(move || {
            let _ = std::io::copy(&mut c_in, &mut s_out);
        });
        let (mut from, mut to) = (server, client);
        let mut buf = vec![0u8; 64 * 1024];
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let Ok(n) = from.read(&mut buf) else { return };
            if n == 0 {
                return;
            }
            tail.extend_from_slice(&buf[..n]);
            if let Some(at) = tail.windows(11).position(|w| w == b"PGCOPY\n\xff\r\n\0") {
                let sent_before = tail.len() - n;
                let upto = (at + 11).saturating_sub(sent_before);
                let _ = to.write_all(&buf[..upto]);
                return hold(to, &stop);
            }
            if to.write_all(&buf[..n]).is_err() {
                return;
            }
            let keep = tail.len().saturating_sub(10);
            tail.drain(..keep);
        }
    })
}

/// Reads an HTTP request, answers its head and the start of a body, then
/// says nothing more.
fn stalls_in_answer() -> Server {
    serve(|mut c, stop| {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\r\n";
        let _ = c.write_all(head.as_bytes());
        let _ = c.write_all(b"{\"success\": true, \"result\": [");
        hold(c, &stop);
    })
}

fn pg_address(url: &str) -> (String, u16) {
    let u = url::Url::parse(url).expect("url");
    (u.host_str().expect("host").to_string(), u.port().unwrap_or(5432))
}

/// `url` with its host and port replaced by 127.0.0.1:`port`.
fn via(url: &str, port: u16) -> String {
    let mut u = url::Url::parse(url).expect("url");
    u.set_host(Some("127.0.0.1")).expect("host");
    u.set_port(Some(port)).expect("port");
    u.to_string()
}

/// Runs pgflare with every bound at 1 s and checks that it failed (exit
/// code 2) within `within`, saying `want`; returns stderr.
fn fails_within(
    db_url: &str,
    api_base: Option<&str>,
    dir: &std::path::Path,
    args: &[&str],
    within: u64,
    want: &str,
) -> String {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pgflare"));
    c.current_dir(dir)
        .env("DATABASE_URL", db_url)
        .env_remove("SUPABASE_DB_URL")
        .env("CLOUDFLARE_ACCOUNT_ID", "acct")
        .env("CLOUDFLARE_API_TOKEN", "token-never-shown")
        .args(["--quiet", "--connect-timeout", "1s", "--statement-timeout", "1s", "--http-timeout", "1s"])
        .args(args);
    if let Some(b) = api_base {
        c.env("CLOUDFLARE_API_BASE_URL", b);
    }
    // Killed a little after the bound: a regression fails here instead of
    // hanging the suite.
    let (o, took) = run_for(c, Duration::from_secs(within + 5));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(took < Duration::from_secs(within), "{args:?} took {took:?}");
    assert!(err.contains(want), "{args:?}: `{want}` missing: {err}");
    assert!(!err.contains("token-never-shown"), "{err}");
    err
}

#[test]
fn a_postgres_that_accepts_and_never_answers_ends_every_command_within_the_bound() {
    let server = silent();
    let dir = temp_dir("pgsilent");
    let url = format!("postgres://u:p@127.0.0.1:{}/db", server.port);
    let commands: [&[&str]; 6] = [
        &["sync", "--target", "sqlite", "--sqlite", "d1.sqlite", "--once"],
        &["load", "--target", "sqlite", "--sqlite", "d1.sqlite"],
        &["verify", "--sqlite", "d1.sqlite"],
        &["inspect"],
        &["archive", "--out", "archive"],
        &["init"],
    ];
    let want = format!("no answer from Postgres at 127.0.0.1:{} within 1 s while connecting", server.port);
    for args in commands {
        let err = fails_within(&url, None, dir.path(), args, 10, &want);
        assert!(err.contains("--connect-timeout"), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "nothing was written");
}

/// A server that logs in, then never answers a statement.
fn answers_login_only() -> Server {
    serve(|mut c, stop| {
        let mut buf = [0u8; 1024];
        // SSLRequest (8 bytes): not offered. Then the startup message.
        let Ok(n) = c.read(&mut buf) else { return };
        if n == 8 && buf[4..8] == [0x04, 0xd2, 0x16, 0x2f] {
            let _ = c.write_all(b"N");
            let _ = c.read(&mut buf);
        }
        let mut out = Vec::new();
        out.extend_from_slice(b"R\0\0\0\x08\0\0\0\0"); // AuthenticationOk
        for (k, v) in [("server_version", "18.0"), ("client_encoding", "UTF8"), ("integer_datetimes", "on")] {
            let body = format!("{k}\0{v}\0");
            out.push(b'S');
            out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            out.extend_from_slice(body.as_bytes());
        }
        out.extend_from_slice(b"K\0\0\0\x0c\0\0\0\x01\0\0\0\x02"); // BackendKeyData
        out.extend_from_slice(b"Z\0\0\0\x05I"); // ReadyForQuery
        let _ = c.write_all(&out);
        hold(c, &stop);
    })
}

#[test]
fn a_postgres_that_stops_answering_after_login_ends_every_command_within_the_bound() {
    let server = answers_login_only();
    let dir = temp_dir("pglogin");
    // A D1 file for sync to continue: it must stay as it is.
    std::fs::write(dir.path().join("d1.sqlite"), b"").expect("touch");
    let url = format!("postgres://u:p@127.0.0.1:{}/db", server.port);
    let commands: [&[&str]; 4] = [
        &["sync", "--target", "sqlite", "--sqlite", "d1.sqlite", "--once"],
        &["load", "--target", "sqlite", "--sqlite", "d1.sqlite"],
        &["verify", "--sqlite", "d1.sqlite"],
        &["inspect"],
    ];
    let want =
        format!("no answer from Postgres at 127.0.0.1:{} within 1 s (--statement-timeout", server.port);
    for args in commands {
        fails_within(&url, None, dir.path(), args, 10, &want);
    }
    let d1 = std::fs::metadata(dir.path().join("d1.sqlite")).expect("d1");
    assert_eq!(d1.len(), 0, "sync wrote to D1 before the source answered a statement");
}

#[test]
fn a_copy_stream_that_stalls_midway_ends_the_read_within_the_bound() {
    let db = TestDb::new("copystall");
    db.seed(50, 4);
    let dir = temp_dir("copystall");
    // A good load first, for sync to continue (straight to Postgres).
    ok(pgflare(
        &db,
        &[
            "--quiet",
            "load",
            "--target",
            "sqlite",
            "--sqlite",
            dir.path().join("d1.sqlite").to_str().expect("p"),
        ],
    ));
    db.exec("UPDATE documents SET title = title || ' (edited)'");
    let proxy = stalls_in_copy(&db);
    let url = via(&db.url, proxy.port);
    let commands: [&[&str]; 4] = [
        &["archive", "--out", "archive"],
        &["load", "--target", "files", "--out", "files", "--state-dir", "state"],
        &["verify", "--sqlite", "d1.sqlite"],
        &["sync", "--target", "sqlite", "--sqlite", "d1.sqlite", "--once"],
    ];
    let want = format!("no answer from Postgres at 127.0.0.1:{} within 1 s (--statement-timeout", proxy.port);
    for args in commands {
        let err = fails_within(&url, None, dir.path(), args, 15, &want);
        assert!(err.contains("reading public."), "the read is named: {args:?}: {err}");
    }
}

#[test]
fn an_api_that_accepts_and_never_answers_ends_every_command_within_the_bound() {
    let db = TestDb::new("apisilent");
    db.seed(20, 4);
    let server = silent();
    let dir = temp_dir("apisilent");
    let base = format!("http://127.0.0.1:{}/client/v4", server.port);
    let commands: [&[&str]; 3] = [
        &["load", "--target", "api", "--d1-database-id", "db1"],
        &["verify", "--d1-database-id", "db1"],
        &["sync", "--target", "api", "--d1-database-id", "db1", "--once"],
    ];
    let want = format!("no answer from 127.0.0.1:{} within 1 s (--http-timeout)", server.port);
    for args in commands {
        // Three attempts of 1 s, and the backoff between them.
        let err = fails_within(&db.url, Some(&base), dir.path(), args, 15, &want);
        assert!(err.contains("gave up after 3 attempts"), "{args:?}: {err}");
    }
}

#[test]
fn an_api_answer_that_stalls_midway_ends_the_command_within_the_bound() {
    let db = TestDb::new("apistall");
    db.seed(20, 4);
    let server = stalls_in_answer();
    let dir = temp_dir("apistall");
    let base = format!("http://127.0.0.1:{}/client/v4", server.port);
    let want = format!("no answer from 127.0.0.1:{} within 1 s (--http-timeout)", server.port);
    fails_within(
        &db.url,
        Some(&base),
        dir.path(),
        &["load", "--target", "api", "--d1-database-id", "db1"],
        15,
        &want,
    );
}
