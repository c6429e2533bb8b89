//! `pgflare doctor` against a real Postgres and `pgflare emulate`: it
//! passes on the demo stack after a load (exit 0), and finds each problem
//! planted in turn (exit 1, the check named, what to do said), without
//! writing anything; its JSON matches schemas/doctor.schema.json and never
//! holds the token.

use std::process::Output;

use serde_json::Value;

use crate::common::*;

/// A seeded source, its pgflare.toml, and an emulator with database db1.
struct Stack {
    db: TestDb,
    emu: Emulator,
    dir: tempfile::TempDir,
}

const TOML: &str = r#"
[[tables]]
name = "documents"

[[tables]]
name = "chunks"
vector = "embedding"
vector_metadata = ["document_id", "chunk_index"]
vector_metadata_indexes = ["chunk_index"]

[vectorize]
metric = "cosine"
"#;

impl Stack {
    fn new(tag: &str) -> Stack {
        let db = TestDb::new(tag);
        db.seed(40, 8);
        let dir = temp_dir(tag);
        std::fs::write(dir.path().join("pgflare.toml"), TOML).expect("write pgflare.toml");
        Stack { db, emu: Emulator::start(&[]), dir }
    }

    fn config(&self) -> String {
        self.dir.path().join("pgflare.toml").display().to_string()
    }

    /// `pgflare --json doctor` with the emulator's environment, `env` on top.
    fn doctor(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Value, String) {
        let mut cmd = self.emu.command(&self.db);
        cmd.args(["--json", "doctor", "--config", &self.config()]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o: Output = cmd.output().expect("run pgflare doctor");
        let out = text(&o);
        assert!(!out.contains(&self.emu.token), "the token is in the output:\n{out}");
        let report: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("not JSON:\n{out}"));
        (o.status.code(), report, out)
    }

    fn load(&self) {
        let state = self.dir.path().join("state");
        let o = self
            .emu
            .command(&self.db)
            .args(["load", "--config", &self.config(), "--target", "api", "--d1-database-id", "db1"])
            .args(["--vectorize-index", "chunks", "--create-index", "--state-dir"])
            .arg(&state)
            .output()
            .expect("run pgflare load");
        ok(o);
    }

    fn post(&self, path: &str, body: Value) {
        let (status, v) = self.emu.request(reqwest::Method::POST, path, Some(&body));
        assert!((200..300).contains(&status), "{path}: {status} {v}");
    }
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

fn status<'a>(report: &'a Value, id: &str) -> &'a str {
    check(report, id)["status"].as_str().unwrap_or_default()
}

/// Asserts `id` is a problem whose text holds every part, and the exit code is 1.
fn assert_problem(run: &(Option<i32>, Value, String), id: &str, parts: &[&str]) {
    let (code, report, out) = run;
    assert_eq!(*code, Some(1), "{out}");
    assert_eq!(report["verdict"], "problem", "{out}");
    let c = check(report, id);
    assert_eq!(c["status"], "problem", "{id}: {c:#}");
    let text = format!("{} {}", c["found"], c["fix"]);
    for p in parts {
        assert!(text.contains(p), "{id} should say `{p}`: {c:#}");
    }
}

fn validate(dir: &std::path::Path, report: &Value) {
    assert_doc_schema("doctor", &report.to_string(), dir);
}

#[test]
fn doctor_passes_on_the_demo_stack_and_finds_each_planted_cloudflare_problem() {
    let s = Stack::new("doctorcf");
    let target = ["--d1-database-id", "db1", "--vectorize-index", "chunks"];

    // Before the load: the index is missing, which the load would create.
    let before = s.doctor(&target, &[]);
    assert_problem(&before, "cloudflare.vectorize_index", &["chunks", "does not exist", "--create-index"]);
    let (code, r, out) = s.doctor(&[&target[..], &["--create-index"]].concat(), &[]);
    assert_eq!((code, status(&r, "cloudflare.vectorize_index")), (Some(0), "warning"), "{out}");

    s.load();
    let (code, r, out) = s.doctor(&target, &[]);
    assert_eq!(code, Some(0), "doctor passes after the load:\n{out}");
    for id in [
        "postgres.connect",
        "postgres.version",
        "postgres.pgvector",
        "postgres.direct_connection",
        "postgres.privileges",
        "postgres.row_security",
        "postgres.primary_keys",
        "cloudflare.token",
        "cloudflare.account",
        "cloudflare.d1_database",
        "cloudflare.d1_size",
        "cloudflare.vectorize_index",
        "cloudflare.metadata_indexes",
        "cloudflare.request_budget",
    ] {
        assert_eq!(status(&r, id), "ok", "{id}: {:#}", check(&r, id));
    }
    assert_eq!(status(&r, "postgres.wal_level"), "info");
    assert!(
        check(&r, "cloudflare.request_budget")["found"].as_str().is_some_and(|f| f.contains("of 1200")),
        "{r:#}"
    );
    assert!(
        check(&r, "cloudflare.d1_database")["found"].as_str().is_some_and(|f| f.contains("db1")),
        "{r:#}"
    );
    assert_eq!(r["resolved"]["d1_database_from"], "--d1-database-id", "{r:#}");
    assert_eq!(r["resolved"]["account_id_from"], "CLOUDFLARE_ACCOUNT_ID", "{r:#}");
    assert_eq!(r["resolved"]["api_token_set"], true);
    validate(s.dir.path(), &r);

    assert_wrangler_provenance(&s);

    // A wrong token: refused, and nothing behind it is asked.
    let run = s.doctor(&target, &[("CLOUDFLARE_API_TOKEN", "not-the-token")]);
    assert_problem(&run, "cloudflare.token", &["refused", "CLOUDFLARE_API_TOKEN", "[10000]"]);
    assert_eq!(status(&run.1, "cloudflare.d1_database"), "skipped", "{}", run.2);
    validate(s.dir.path(), &run.1);
    // A wrong account id.
    let run = s.doctor(&target, &[("CLOUDFLARE_ACCOUNT_ID", "someone-else")]);
    assert_problem(&run, "cloudflare.account", &["someone-else", "[7003]", "account id"]);
    // A D1 database that does not exist.
    let run = s.doctor(&["--d1-database-id", "nope", "--vectorize-index", "chunks"], &[]);
    assert_problem(&run, "cloudflare.d1_database", &["nope", "wrangler d1 list"]);
    // An index that does not exist.
    let run = s.doctor(&["--d1-database-id", "db1", "--vectorize-index", "absent"], &[]);
    assert_problem(
        &run,
        "cloudflare.vectorize_index",
        &["absent", "does not exist", "wrangler vectorize create absent --dimensions 8 --metric cosine"],
    );
    // Other dimensions, another metric.
    for (name, dims, metric, says) in
        [("fewer", 4, "cosine", "8 dimensions"), ("eucl", 8, "euclidean", "metric cosine")]
    {
        block_on(async {
            let want =
                pgflare::cloudflare::vectorize::IndexConfig { dimensions: dims, metric: metric.into() };
            s.emu.vectorize(name).ensure(&want, true).await.expect("create the index")
        });
        let run = s.doctor(&["--d1-database-id", "db1", "--vectorize-index", name], &[]);
        assert_problem(&run, "cloudflare.vectorize_index", &[name, says, "cannot change"]);
    }
    // An index deleted a moment ago answers 3005, not 3000: doctor says so.
    block_on(async {
        let url = format!("{}/accounts/{}/vectorize/v2/indexes/fewer", s.emu.base_url, s.emu.account);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let r = reqwest::Client::new().delete(&url).bearer_auth(&s.emu.token).send().await.expect("delete");
        assert!(r.status().is_success(), "delete: {}", r.status());
    });
    let run = s.doctor(&["--d1-database-id", "db1", "--vectorize-index", "fewer"], &[]);
    assert_problem(
        &run,
        "cloudflare.vectorize_index",
        &["fewer", "was deleted (code 3005)", "wrangler vectorize create"],
    );
    // The loaded index loses its metadata index: its vectors are no longer filterable.
    s.post(
        "vectorize/v2/indexes/chunks/metadata_index/delete",
        serde_json::json!({"propertyName": "chunk_index"}),
    );
    let run = s.doctor(&target, &[]);
    assert_problem(
        &run,
        "cloudflare.metadata_indexes",
        &["chunk_index (number)", "create-metadata-index", "--restart"],
    );
}

/// The same through a wrangler file's environment: doctor says which
/// file, environment and binding gave each setting.
fn assert_wrangler_provenance(s: &Stack) {
    let w = s.dir.path().join("wrangler.jsonc");
    let acct = &s.emu.account;
    std::fs::write(
        &w,
        format!(
            r#"{{ "account_id": "{acct}", // comment
              "d1_databases": [{{ "binding": "DB", "database_id": "elsewhere" }}],
              "env": {{ "staging": {{
                "d1_databases": [{{ "binding": "DB", "database_id": "db1" }}],
                "vectorize": [{{ "binding": "VEC", "index_name": "chunks" }}] }} }} }}"#
        ),
    )
    .expect("write wrangler.jsonc");
    let wf = w.display().to_string();
    let via = ["--wrangler", &wf, "--env", "staging", "--d1-binding", "DB", "--vectorize-binding", "VEC"];
    let (code, r, out) = s.doctor(&via, &[("CLOUDFLARE_ACCOUNT_ID", "")]);
    assert_eq!(code, Some(0), "{out}");
    let res = &r["resolved"];
    assert_eq!(
        (res["wrangler_file"].as_str(), res["wrangler_env"].as_str()),
        (Some(wf.as_str()), Some("staging"))
    );
    assert_eq!(res["d1_database_id"], "db1", "{res:#}");
    assert_eq!(
        res["d1_database_from"],
        format!("binding `DB` in {wf}: env.staging.d1_databases (named by --d1-binding)").as_str()
    );
    assert_eq!(
        res["vectorize_index_from"],
        format!("binding `VEC` in {wf}: env.staging.vectorize (named by --vectorize-binding)").as_str()
    );
    assert!(res["account_id_from"].as_str().is_some_and(|a| a.starts_with(&wf)), "{res:#}");
    assert!(check(&r, "settings.wrangler")["found"]
        .as_str()
        .is_some_and(|f| f.contains("environment `staging`")));
}

#[test]
fn doctor_finds_each_planted_postgres_problem() {
    let s = Stack::new("doctorpg");
    let role = format!("doctor_reader_{}", std::process::id());
    s.db.exec(&format!(
        "CREATE SCHEMA planted;
         CREATE TABLE planted.nopk (a int, b text);
         CREATE TABLE planted.secret (id int PRIMARY KEY, v text);
         CREATE TABLE planted.guarded (id int PRIMARY KEY, owner text);
         ALTER TABLE planted.guarded ENABLE ROW LEVEL SECURITY;
         CREATE POLICY mine ON planted.guarded USING (owner = current_user);
         DROP ROLE IF EXISTS {role};
         CREATE ROLE {role} LOGIN PASSWORD 'doctor-pw';
         GRANT USAGE ON SCHEMA planted TO {role};
         GRANT SELECT ON planted.nopk, planted.guarded TO {role};"
    ));
    let no_config = s.dir.path().join("none.toml");
    std::fs::write(&no_config, "[source]\nschema = \"planted\"\n").expect("write");
    let cfg = no_config.display().to_string();
    let run = |url: &str| {
        let mut cmd = s.emu.command(&s.db);
        cmd.args(["--json", "doctor", "--config", &cfg, "--no-cloudflare", "--database-url", url]);
        let o = cmd.output().expect("run pgflare doctor");
        let out = text(&o);
        let report: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("not JSON:\n{out}"));
        (o.status.code(), report, out)
    };
    // As the owner: only the table without a primary key is a problem.
    let r = run(&s.db.url);
    assert_problem(&r, "postgres.primary_keys", &["planted.nopk", "primary_key = ["]);
    assert_eq!(status(&r.1, "postgres.privileges"), "ok", "{}", r.2);
    assert_eq!(status(&r.1, "postgres.row_security"), "ok", "the owner bypasses it: {}", r.2);
    assert!(
        check(&r.1, "postgres.replica_identity")["found"]
            .as_str()
            .is_some_and(|f| f.contains("planted.nopk default, but no primary key")),
        "{}",
        r.2
    );
    assert_eq!(status(&r.1, "cloudflare.token"), "skipped");
    validate(s.dir.path(), &r.1);

    // As a role that may not read one table and is subject to row security on another.
    let (base, _) = s.db.url.split_once("://").expect("url");
    let host_db = s.db.url.rsplit_once('@').expect("url").1;
    let url = format!("{base}://{role}:doctor-pw@{host_db}");
    let r = run(&url);
    assert_problem(&r, "postgres.privileges", &["planted.secret", "GRANT SELECT"]);
    assert_problem(&r, "postgres.row_security", &["planted.guarded", "BYPASSRLS"]);
    assert!(!r.2.contains("doctor-pw"), "the password is shown:\n{}", r.2);
    s.db.exec(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
}

#[test]
fn doctor_warns_when_something_relays_the_postgres_connection() {
    let s = Stack::new("doctorrelay");
    let (host_port, _) = s.db.url.rsplit_once('@').expect("url").1.split_once('/').expect("db");
    let relay = relay_to(host_port);
    let url = s.db.url.replacen(host_port, &format!("127.0.0.1:{relay}"), 1);
    let mut cmd = s.emu.command(&s.db);
    cmd.args(["--json", "doctor", "--config", &s.config(), "--no-cloudflare", "--database-url", &url]);
    let o = cmd.output().expect("run pgflare doctor");
    let out = text(&o);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("not JSON:\n{out}"));
    let c = check(&report, "postgres.direct_connection");
    assert_eq!(c["status"], "warning", "{out}");
    let port = host_port.rsplit_once(':').expect("port").1;
    assert!(c["found"].as_str().is_some_and(|f| f.contains(port) && f.contains(&relay.to_string())), "{c:#}");
    assert_eq!(o.status.code(), Some(0), "a relay is a warning, not a problem: {out}");
}

/// A TCP relay on a free port to `target`, for the life of the test process.
fn relay_to(target: &str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let target = target.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(&target) else { continue };
            for (mut from, mut to) in
                [(client.try_clone().expect("clone"), server.try_clone().expect("clone")), (server, client)]
            {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    port
}

#[test]
fn the_emulator_verifies_tokens_as_cloudflare_does() {
    let emu = Emulator::start(&[]);
    let get = |path: &str, token: &str| -> (u16, Value) {
        let url = format!("{}/{path}", emu.base_url);
        block_on(async {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let r = reqwest::Client::new().get(&url).bearer_auth(token).send().await.expect("get");
            (r.status().as_u16(), r.json().await.expect("json"))
        })
    };
    let account_path = format!("accounts/{}/tokens/verify", emu.account);
    for path in ["user/tokens/verify", account_path.as_str()] {
        let (code, v) = get(path, &emu.token);
        assert_eq!(code, 200, "{path}: {v:#}");
        assert_eq!(v["success"], true);
        assert_eq!(v["result"]["status"], "active", "{v:#}");
        assert_eq!(v["messages"][0]["code"], 10000, "{v:#}");
        let id = v["result"]["id"].as_str().expect("id");
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert!(!v.to_string().contains(&emu.token), "the token is echoed: {v:#}");
        let (code, v) = get(path, "wrong-token");
        assert_eq!((code, &v["errors"][0]["code"]), (403, &Value::from(10000)), "{v:#}");
    }
    let (code, v) = get("accounts/someone-else/tokens/verify", &emu.token);
    assert_eq!((code, &v["errors"][0]["code"]), (404, &Value::from(7003)), "{v:#}");
}

/// doctor read the configured tables without pgflare.toml's `casts`, so a
/// column the load reads through a cast (an `interval` as text) was a
/// problem for doctor and fine for the load.
#[test]
fn doctor_reads_the_tables_with_the_casts_the_load_uses() {
    let s = Stack::new("doctorcast");
    s.db.exec("CREATE TABLE spans (id int PRIMARY KEY, took interval)");
    let run = |toml: &str| {
        let path = s.dir.path().join("casts.toml");
        std::fs::write(&path, toml).expect("write");
        let mut cmd = s.emu.command(&s.db);
        cmd.args(["--json", "doctor", "--no-cloudflare", "--config", path.to_str().expect("p")]);
        let o = cmd.output().expect("run pgflare doctor");
        let out = text(&o);
        let report: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("not JSON:\n{out}"));
        (o.status.code(), report, out)
    };
    let r = run("[[tables]]\nname = \"spans\"\n");
    assert_problem(&r, "postgres.column_types", &["spans", "took", "interval"]);
    let r = run("[[tables]]\nname = \"spans\"\ncasts = { took = \"text\" }\n");
    assert_eq!(status(&r.1, "postgres.column_types"), "ok", "{}", r.2);
}

/// A logical replication slot in the source's database is listed (name,
/// plugin, whether anyone reads it, the WAL it keeps), and the role's
/// privilege to create one is said; slots of other databases are not this
/// source's.
#[test]
fn doctor_lists_the_replication_slots_of_the_source_and_the_privilege_to_make_one() {
    let s = Stack::new("doctorslot");
    let slot = format!("pgflare_doctor_{}", std::process::id());
    s.db.exec(&format!("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"));
    // The database cannot be dropped while it has a slot: drop it whatever happens.
    struct Dropped<'a>(&'a TestDb, String);
    impl Drop for Dropped<'_> {
        fn drop(&mut self) {
            let (db, sql) = (self.0, format!("SELECT pg_drop_replication_slot('{}')", self.1));
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.exec(&sql)));
        }
    }
    let _dropped = Dropped(&s.db, slot.clone());
    s.db.exec("UPDATE chunks SET content = content || ' again'");
    let (_, r, out) = s.doctor(&["--no-cloudflare"], &[]);
    let found = check(&r, "postgres.replication_slots")["found"].as_str().unwrap_or_default().to_string();
    assert!(found.contains(&format!("{slot} (pgoutput, inactive, keeps ")), "{out}");
    assert_eq!(status(&r, "postgres.replication_slots"), "ok", "well under 1 GiB: {out}");
    assert_eq!(check(&r, "postgres.replication_privilege")["found"], "yes: superuser", "{out}");
    assert_eq!(status(&r, "postgres.replication_slot_room"), "info", "{out}");
    validate(s.dir.path(), &r);
}
