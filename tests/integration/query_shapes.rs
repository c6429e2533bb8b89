//! "Results match Supabase": `[[queries]]` shapes replayed by `verify` on
//! the seeded tables loaded through the emulator's API. A tags-overlap
//! query with tags as flags matches (recall, equal context texts), the
//! same query on the tags array (the naive layout) does not, with its
//! reason; planted divergences (a chunk's text changed in D1, a flag
//! missing from a vector's metadata) show with their causes; a query file
//! of 100 vectors reports the requests it used.

use std::path::Path;

use crate::common::*;

/// The flagged tags: Vectorize allows 10 metadata indexes (document_id takes one).
const FLAGGED: [&str; 9] =
    ["api", "auth", "billing", "guide", "faq", "reference", "tutorial", "security", "beta"];

fn config(dir: &Path) -> String {
    let flags: Vec<String> = FLAGGED.iter().map(|t| format!("\"{t}\"")).collect();
    let text = format!(
        "[[tables]]\nname = \"documents\"\n\n[[tables]]\nname = \"chunks\"\nvector = \"embedding\"\n\
         vector_metadata = [\"document_id\", \"tags\"]\nvector_metadata_indexes = [\"document_id\"]\n\
         vector_metadata_flags = {{ tags = [{}] }}\n\n\
         [[queries]]\nname = \"tagged\"\ntable = \"chunks\"\nk = 5\ncontext = [\"content\"]\n\
         filters = [{{ column = \"tags\", op = \"overlap\", vectorize = \"flags\" }}]\n\n\
         [[queries]]\nname = \"tagged-naive\"\ntable = \"chunks\"\nk = 5\ncontext = [\"content\"]\n\
         filters = [{{ column = \"tags\", op = \"overlap\", vectorize = \"property\" }}]\n",
        flags.join(", ")
    );
    let path = dir.join("pgflare.toml");
    std::fs::write(&path, text).expect("config");
    path.to_str().expect("p").to_string()
}

/// Query lines from source rows: (id, embedding as JSON text, first tag).
fn source_queries(db: &TestDb, n: usize) -> Vec<(String, String, String)> {
    let flagged: Vec<String> = FLAGGED.iter().map(|t| format!("'{t}'")).collect();
    let rows = db.query_one(&format!(
        "SELECT string_agg(id::text || '|' || embedding::text || '|' || tags[1], E'\\n' ORDER BY id) FROM \
         (SELECT * FROM chunks WHERE tags[1] IN ({}) AND embedding IS NOT NULL ORDER BY id LIMIT {n}) c",
        flagged.join(", ")
    ));
    rows.lines()
        .map(|l| {
            let mut p = l.splitn(3, '|');
            let id = p.next().expect("id").to_string();
            let v = p.next().expect("vector").to_string();
            (id, v, p.next().expect("tag").to_string())
        })
        .collect()
}

fn verify(
    emu: &Emulator,
    db: &TestDb,
    config: &str,
    dir: &Path,
    queries: &Path,
) -> (Option<i32>, serde_json::Value, String) {
    let report = dir.join("report");
    let o = emu
        .command(db)
        .args([
            "--json",
            "verify",
            "--config",
            config,
            "--d1-database-id",
            "db1",
            "--vectorize-index",
            "chunks-index",
            "--report-dir",
            report.to_str().expect("p"),
            "--queries",
            "0",
            "--query-file",
            queries.to_str().expect("p"),
        ])
        .output()
        .expect("verify");
    outcome(o)
}

fn shape<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["query_shapes"]["shapes"].as_array().expect("shapes").iter().find(|s| s["name"] == name).expect(name)
}

#[test]
fn tagged_queries_match_with_flags_and_not_with_the_tags_array() {
    let db = TestDb::new("qshapes");
    db.seed(600, 16);
    let emu = Emulator::start(&[]);
    let dir = temp_dir("qshapes");
    let config = config(dir.path());

    // Before anything is loaded, inspect flags the naive layout: tags is an
    // array, which no metadata index filters, and the query that filters it
    // as a property cannot be answered; flags can.
    let ins = ok_json(pgflare(&db, &["inspect", "--json", "--config", &config, "--table", "chunks"]));
    let filtering = &ins["tables"][0]["filtering"];
    let tags = filtering["columns"].as_array().expect("columns").iter().find(|c| c["column"] == "tags");
    let tags = tags.expect("tags is judged");
    assert_eq!(
        (tags["filterable"].as_bool(), tags["carried"].as_str()),
        (Some(false), Some("flags")),
        "{tags:#}"
    );
    assert!(tags["problem"].as_str().expect("problem").contains("not arrays"), "{tags:#}");
    let fit = |name: &str| {
        let q = filtering["queries"].as_array().expect("queries").iter().find(|q| q["query"] == name);
        q.expect(name)["answerable"].as_bool()
    };
    assert_eq!((fit("tagged"), fit("tagged-naive")), (Some(true), Some(false)), "{filtering:#}");
    let human = ok(pgflare(&db, &["inspect", "--config", &config, "--table", "chunks"]));
    assert!(
        human.contains("flags; NOT filterable as it is")
            && human.contains("query `tagged-naive`: tags as property: NOT answerable"),
        "{human}"
    );

    let state = dir.path().join("state");
    let o = emu
        .command(&db)
        .args([
            "--json",
            "load",
            "--config",
            &config,
            "--target",
            "api",
            "--d1-database-id",
            "db1",
            "--vectorize-index",
            "chunks-index",
            "--create-index",
            "--state-dir",
            state.to_str().expect("p"),
        ])
        .output()
        .expect("load");
    ok_json(o);

    // 100 queries of the flagged shape (a third with two tags: one request
    // per tag, merged) and 10 of the naive one, from real rows' vectors.
    let rows = source_queries(&db, 100);
    assert_eq!(rows.len(), 100, "the seed has rows with flagged tags");
    let mut lines = Vec::new();
    for (i, (id, v, tag)) in rows.iter().enumerate() {
        let tags = if i % 3 == 0 {
            format!("[\"{tag}\", \"{}\"]", FLAGGED[i % FLAGGED.len()])
        } else {
            format!("[\"{tag}\"]")
        };
        lines.push(format!(
            "{{\"query\": \"tagged\", \"id\": \"{id}\", \"vector\": {v}, \"filter\": {{\"tags\": {tags}}}}}"
        ));
        if i < 10 {
            lines.push(format!("{{\"query\": \"tagged-naive\", \"id\": \"{id}\", \"vector\": {v}, \"filter\": {{\"tags\": [\"{tag}\"]}}}}"));
        }
    }
    let qfile = dir.path().join("queries.ndjson");
    std::fs::write(&qfile, lines.join("\n")).expect("queries");

    let (code, r, out) = verify(&emu, &db, &config, dir.path(), &qfile);
    let tagged = shape(&r, "tagged");
    assert_eq!(tagged["passed"], true, "{tagged:#}\n{out}");
    assert_eq!(tagged["queries"], 100);
    assert!(tagged["mean_recall"].as_f64().expect("recall") >= 0.95, "{tagged:#}");
    assert_eq!(tagged["context_equal"], 100, "{tagged:#}");
    let per_query = tagged["requests_per_query"].as_f64().expect("rpq");
    assert!(per_query > 1.2 && per_query < 1.5, "one request per tag asked: {per_query}");
    let naive = shape(&r, "tagged-naive");
    assert_eq!(naive["passed"], false, "{naive:#}");
    assert!(naive["mean_recall"].as_f64().expect("recall") < 0.1, "{naive:#}");
    assert!(naive["reasons"]["filter_refused"].as_u64().unwrap_or(0) > 0, "{naive:#}");
    // The run tells how many requests it used, within Cloudflare's 1200 per 5 minutes.
    let requests = r["query_shapes"]["requests"].as_u64().expect("requests");
    assert!((110..=400).contains(&requests), "{requests}");
    assert_eq!(code, Some(1), "the naive shape does not match: {out}");
    assert!(
        r["verdict"]["summary"].as_str().expect("s").contains("query `tagged-naive` does not match Supabase"),
        "{r:#}"
    );
    let schema = root().join("schemas/verify-report.schema.json");
    let v = validate_json(&schema, &[&dir.path().join("report/report.json")]);
    assert!(v.status.success(), "the report follows its schema: {}", text(&v));
    let md = std::fs::read_to_string(dir.path().join("report/report.md")).expect("md");
    assert!(md.contains("Vectorize filters no arrays"), "the naive layout's cause is named: {md}");
    assert!(
        md.contains("### tagged: matches Supabase")
            && md.contains("### tagged-naive: does not match Supabase"),
        "{md}"
    );

    // sync writes flags too: a chunk's tags replaced by ['beta'] in Postgres;
    // after `sync --once`, the flag query for beta finds it and the one for
    // its old tag no longer does, on both sides.
    let (moved, v5, old_tag) = &rows[5];
    assert_ne!(old_tag, "beta");
    db.exec(&format!("UPDATE chunks SET tags = ARRAY['beta'], updated_at = now() WHERE id = '{moved}'"));
    let work = dir.path().join("sync-work");
    let o = emu
        .command(&db)
        .args(["--json", "sync", "--config", &config, "--target", "api", "--d1-database-id", "db1"])
        .args(["--vectorize-index", "chunks-index", "--once", "--work-dir", work.to_str().expect("p")])
        .output()
        .expect("sync");
    ok_json(o);
    let moved_lines = [
        format!("{{\"query\": \"tagged\", \"id\": \"new-tag\", \"vector\": {v5}, \"filter\": {{\"tags\": [\"beta\"]}}}}"),
        format!("{{\"query\": \"tagged\", \"id\": \"old-tag\", \"vector\": {v5}, \"filter\": {{\"tags\": [\"{old_tag}\"]}}}}"),
    ];
    std::fs::write(&qfile, moved_lines.join("\n")).expect("queries");
    let (code, r, out) = verify(&emu, &db, &config, dir.path(), &qfile);
    assert_eq!(code, Some(0), "consistent after sync, flags included: {out}");
    let tagged = shape(&r, "tagged");
    assert_eq!(
        (tagged["passed"].as_bool(), tagged["mean_recall"].as_f64()),
        (Some(true), Some(1.0)),
        "{tagged:#}"
    );

    // Plant: one chunk's text changed in D1; a vector upserted again without its flag.
    let (changed, _, _) = &rows[1];
    let (unflagged, v2, tag2) = &rows[2];
    let d1 = rusqlite::Connection::open(emu.d1_file("db1")).expect("d1");
    d1.execute("UPDATE chunks SET content = content || ' (edited in D1)' WHERE id = ?1", [changed])
        .expect("edit");
    drop(d1);
    let line =
        format!("{{\"id\": \"{unflagged}\", \"values\": {v2}, \"metadata\": {{\"document_id\": \"x\"}}}}\n");
    let url = format!("{}/accounts/{}/vectorize/v2/indexes/chunks-index/upsert", emu.base_url, emu.account);
    block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let r = reqwest::Client::new()
            .post(&url)
            .bearer_auth(&emu.token)
            .header("content-type", "application/x-ndjson")
            .body(line)
            .send()
            .await
            .expect("upsert");
        assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let few: Vec<&str> =
        lines.iter().filter(|l| l.contains("\"tagged\"")).take(3).map(String::as_str).collect();
    std::fs::write(&qfile, few.join("\n")).expect("queries");
    let (code, r, out) = verify(&emu, &db, &config, dir.path(), &qfile);
    assert_eq!(code, Some(1), "{out}");
    let tagged = shape(&r, "tagged");
    assert_eq!(tagged["passed"], false, "{tagged:#}");
    let misses: Vec<&serde_json::Value> = tagged["results"]
        .as_array()
        .expect("results")
        .iter()
        .flat_map(|q| q["misses"].as_array().into_iter().flatten())
        .collect();
    let find =
        |id: &str, reason: &str| misses.iter().find(|m| m["id"] == id && m["reason"] == reason).copied();
    let ctx = find(changed, "context_differs").unwrap_or_else(|| panic!("{tagged:#}"));
    assert!(ctx["detail"].as_str().expect("d").contains("(edited in D1)"), "{ctx:#}");
    let flag = find(unflagged, "property_missing").unwrap_or_else(|| panic!("{tagged:#}"));
    assert!(flag["detail"].as_str().expect("d").contains(&format!("tags_{tag2}")), "{flag:#}");
}

/// Mistakes in `[[queries]]` or the query file stop verify before any
/// table is read, naming the key (or line) and what to do.
#[test]
fn bad_query_shapes_are_refused_before_reading() {
    let db = TestDb::new("qshapebad");
    db.seed(50, 4);
    let emu = Emulator::start(&[]);
    let dir = temp_dir("qshapebad");
    let good = config(dir.path());
    let sqlite = dir.path().join("d1.sqlite");
    let state = dir.path().join("state");
    let o = emu
        .command(&db)
        .args(["load", "--config", &good, "--target", "sqlite", "--sqlite", sqlite.to_str().expect("p")])
        .args([
            "--vectorize-index",
            "chunks-index",
            "--create-index",
            "--state-dir",
            state.to_str().expect("p"),
        ])
        .output()
        .expect("load");
    ok(o);
    let run = |config: &str, extra: &[&str]| {
        let mut args = vec!["verify", "--config", config, "--sqlite", sqlite.to_str().expect("p")];
        args.extend(["--vectorize-index", "chunks-index", "--report-dir", dir.path().to_str().expect("p")]);
        args.extend(extra);
        let o = emu.command(&db).args(&args).output().expect("verify");
        (o.status.code(), text(&o))
    };
    let text_of = std::fs::read_to_string(&good).expect("config");
    let cases = [
        (
            "context = [\"content\"]",
            "context = [\"metadata\"]",
            "queries[0].context[0]: `metadata` is jsonb: context columns are compared as text",
        ),
        (
            "filters = [{ column = \"tags\", op = \"overlap\", vectorize = \"flags\" }]",
            "filters = [{ column = \"document_id\", op = \"overlap\", vectorize = \"post\" }]",
            "queries[0].filters[0].op: \"overlap\" needs an array column; `document_id` is uuid",
        ),
        ("vector_metadata_flags = { tags", "vector_metadata_flags = { title", "has no column `title`"),
    ];
    for (from, to, want) in cases {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text_of.replacen(from, to, 1)).expect("write");
        let (code, out) = run(bad.to_str().expect("p"), &[]);
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains(want), "want {want}\n{out}");
        assert!(!out.contains("source chunks"), "refused before reading: {out}");
    }
    let q = dir.path().join("q.ndjson");
    std::fs::write(&q, "{\"query\": \"tagged\", \"vector\": [1, 2], \"filter\": {\"tags\": [\"api\"]}}\n")
        .expect("q");
    let (code, out) = run(&good, &["--query-file", q.to_str().expect("p")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("q.ndjson: query 1: the vector has 2 values; the index holds vectors of 4"),
        "{out}"
    );
}

#[test]
fn init_proposes_tag_flags_and_a_query_that_verify_replays_and_passes() {
    let db = TestDb::new("qinit");
    db.seed(400, 16);
    let dir = temp_dir("qinit");
    let config = dir.path().join("pgflare.toml");
    let migrations = dir.path().join("migrations");
    let init = ["--json", "init", "--out-config", config.to_str().expect("p"), "--migrations-dir"];
    let i = ok_json(pgflare(&db, &[&init[..], &[migrations.to_str().expect("p")]].concat()));
    let chunks = i["tables"].as_array().expect("tables").iter().find(|t| t["table"] == "public.chunks");
    let chunks = chunks.expect("chunks");
    // Three scalar indexes, the seven others for the most frequent tags.
    assert_eq!(chunks["vector_metadata_indexes"].as_array().map(Vec::len), Some(3), "{chunks:#}");
    let flags = &chunks["vector_metadata_flags"][0];
    assert_eq!((flags["column"].as_str(), flags["values"].as_array().map(Vec::len)), (Some("tags"), Some(7)));
    let q = &i["queries"][0];
    assert_eq!((q["name"].as_str(), q["context"][0].as_str()), (Some("chunks"), Some("content")), "{q:#}");
    assert_eq!(
        q["filters"][0],
        serde_json::json!({"column": "tags", "op": "overlap", "vectorize": "flags", "property": "tags"})
    );

    // What init wrote loads through the API, and verify replays its query
    // with sampled vectors, each asking for a flagged tag the row holds.
    let emu = Emulator::start(&[]);
    let c = config.to_str().expect("p");
    let api = ["--d1-database-id", "db1", "--vectorize-index", "chunks-index"];
    let state = dir.path().join("state");
    let load = ["--json", "load", "--config", c, "--target", "api", "--create-index", "--state-dir"];
    ok_json(emu.command(&db).args(load).arg(&state).args(api).output().expect("load"));
    let report = dir.path().join("report");
    let o = emu
        .command(&db)
        .args(["--json", "verify", "--config", c, "--queries", "20", "--report-dir"])
        .arg(&report)
        .args(api)
        .output()
        .expect("verify");
    let (code, r, out) = outcome(o);
    let s = shape(&r, "chunks");
    assert_eq!(
        (code, s["passed"].as_bool(), s["queries"].as_u64()),
        (Some(0), Some(true), Some(20)),
        "{s:#}\n{out}"
    );
    assert!(s["mean_recall"].as_f64().expect("recall") >= 0.95, "{s:#}");
    assert_eq!(s["context_equal"], 20, "{s:#}");
}
