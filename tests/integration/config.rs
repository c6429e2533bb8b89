//! `pgflare init` and pgflare.toml / wrangler file handling: the files init
//! writes are checked with independent readers (Python's sqlite3 applies the
//! migration with foreign keys on; tomllib + jsonschema check the config),
//! and every configuration error must name the key that is wrong.

use std::path::Path;
use std::process::Command;

use pgflare::cli::CloudflareArgs;
use pgflare::config::file::{load_project_with, parse_project};
use pgflare::config::wrangler::discover;
use pgflare::plan::cloudflare::resolve_cloudflare;

use crate::common::*;

/// Applies a migration to an empty SQLite database with foreign keys on and
/// returns what SQLite says the schema is.
const SQLITE_SCHEMA: &str = r#"
import json, sqlite3, sys
c = sqlite3.connect(":memory:")
c.execute("PRAGMA foreign_keys=ON")
c.executescript(open(sys.argv[1]).read())
out = {}
for (t,) in c.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY rowid"):
    out[t] = {
        "columns": [[r[1], r[2], r[3], r[5]] for r in c.execute(f'PRAGMA table_info("{t}")')],
        "fks": [[r[2], r[3], r[4], r[5], r[6]] for r in c.execute(f'PRAGMA foreign_key_list("{t}")')],
        "indexes": sorted([r[1], r[2], r[3]] for r in c.execute(f'PRAGMA index_list("{t}")')),
    }
print(json.dumps({"order": list(out), "tables": out}))
"#;

#[test]
fn init_writes_a_config_that_parses_back_and_a_migration_sqlite_applies() {
    let db = TestDb::new("init");
    let schema = std::fs::read_to_string(root().join("fixtures/schema.sql")).expect("fixture");
    db.exec(&schema.replace("{{DIMS}}", "4"));
    db.exec(
        "CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops);
         CREATE INDEX documents_title_lower ON documents (lower(title));",
    );
    let dir = temp_dir("init");
    let (cfg, mig) = (dir.path().join("pgflare.toml"), dir.path().join("migrations"));
    let args = ["--json", "init", "--out-config", cfg.to_str().expect("p"), "--migrations-dir"];
    let out = ok(pgflare(&db, &[&args[..], &[mig.to_str().expect("p")]].concat()));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["tables"][0]["table"], "public.documents", "{v}");
    assert_eq!(v["tables"][1]["vector"], "embedding");
    assert_eq!(v["tables"][1]["cursor"], "updated_at");
    let meta = v["tables"][1]["vector_metadata"].as_array().expect("meta");
    assert!(meta.contains(&"tags".into()) && !meta.contains(&"content".into()), "{v}");

    // The config parses back with the loader `pgflare load` uses.
    let p = load_project_with(Some(&cfg), &|_| None).expect("parses back");
    assert_eq!(p.tables.len(), 2);
    assert_eq!(p.tables[1].table, "chunks");
    assert_eq!(p.tables[1].vector.as_deref(), Some("embedding"));
    let cols = p.tables[1].d1_columns.as_ref().expect("cols");
    assert!(!cols.iter().any(|c| c.source == "embedding"));

    // ... and is valid against the published schema.
    let json_cfg = dir.path().join("cfg.json");
    python_code(
        "import json, sys, tomllib; json.dump(tomllib.load(open(sys.argv[1], 'rb')), open(sys.argv[2], 'w'))",
        &[cfg.to_str().expect("p"), json_cfg.to_str().expect("p")],
    );
    assert_schema("pgflare-config", &[&json_cfg]);

    // The migration: wrangler's naming, nothing D1 refuses.
    let file = mig.join("0001_pgflare_initial.sql");
    let sql = std::fs::read_to_string(&file).expect("migration");
    let upper = sql.to_uppercase();
    for word in ["BEGIN", "COMMIT", "PRAGMA", "_CF_"] {
        assert!(!upper.lines().filter(|l| !l.starts_with("--")).any(|l| l.contains(word)), "{word}\n{sql}");
    }
    assert!(sql.contains("timestamptz             TEXT, ISO 8601 in UTC with microseconds and Z"), "{sql}");
    assert!(sql.contains("-- index chunks_embedding_hnsw skipped: hnsw index"), "{sql}");
    assert!(sql.contains("-- index documents_title_lower skipped: on an expression"), "{sql}");

    let s: serde_json::Value =
        serde_json::from_str(&python_code(SQLITE_SCHEMA, &[file.to_str().expect("p")])).expect("schema json");
    assert_eq!(s["order"], serde_json::json!(["documents", "chunks"]));
    let chunks = &s["tables"]["chunks"];
    let names: Vec<&str> =
        chunks["columns"].as_array().expect("c").iter().map(|c| c[0].as_str().expect("n")).collect();
    assert_eq!(
        names,
        [
            "id",
            "document_id",
            "chunk_index",
            "content",
            "token_count",
            "tags",
            "metadata",
            "created_at",
            "updated_at"
        ]
    );
    // [name, type, notnull, pk]
    assert_eq!(chunks["columns"][0], serde_json::json!(["id", "TEXT", 1, 1]));
    assert_eq!(chunks["columns"][2], serde_json::json!(["chunk_index", "INTEGER", 1, 0]));
    assert_eq!(chunks["columns"][5], serde_json::json!(["tags", "TEXT", 0, 0]));
    // [table, from, to, on_update, on_delete]
    assert_eq!(
        chunks["fks"],
        serde_json::json!([["documents", "document_id", "id", "NO ACTION", "CASCADE"]])
    );
    // [name, unique, origin]
    assert_eq!(
        chunks["indexes"],
        serde_json::json!([
            ["chunks_document_id_idx", 0, "c"],
            ["chunks_updated_at_idx", 0, "c"],
            ["sqlite_autoindex_chunks_1", 1, "pk"],
            ["sqlite_autoindex_chunks_2", 1, "u"]
        ])
    );
    let docs_idx = s["tables"]["documents"]["indexes"].to_string();
    assert!(docs_idx.contains(r#"1,"u""#), "UNIQUE (source_url): {docs_idx}");

    // A second run does not overwrite the user's edits, unless forced.
    let again = pgflare(
        &db,
        &["init", "--out-config", cfg.to_str().expect("p"), "--migrations-dir", mig.to_str().expect("p")],
    );
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"), "{}", text(&again));
    let forced = [&args[..], &[mig.to_str().expect("p"), "--force"]].concat();
    ok(pgflare(&db, &forced));
    assert_eq!(std::fs::read_dir(&mig).expect("dir").count(), 1, "--force replaces the same migration");
}

fn config_error(toml: &str) -> String {
    match parse_project(toml, Path::new("pgflare.toml")) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_errors_name_the_key() {
    let e = config_error("[[tables]]\nname = \"chunks\"\nd1_colums = [\"id\"]\n");
    assert!(e.contains("d1_colums") && e.contains("line 3"), "{e}");
    let e = config_error("[source]\nschema = \"public\"\n\n[cloudflare]\nrate_limit = { requests = \"many\", window_seconds = 300 }\n");
    assert!(e.starts_with("pgflare.toml: line 5, column 27 (rate_limit): invalid type: string"), "{e}");
    assert!(!e.contains("many"), "values are not repeated (they may be secrets): {e}");
    let e = config_error("[cloudflare]\napi_token = \"secret-value\"\n");
    assert!(e.contains("pgflare.toml: cloudflare.api_token: ") && e.contains("CLOUDFLARE_API_TOKEN"), "{e}");
    assert!(!e.contains("secret-value"), "{e}");
    let e = config_error("[[tables]]\nname = \"t\"\nd1_columns = [\"id\", \"body\", \"id\"]\n");
    assert_eq!(e, "pgflare.toml: tables[0].d1_columns[2]: `id` is listed twice");
    let e = config_error("[[tables]]\nname = \"t\"\nd1_columns = [\"id\"]\nd1_names = { body = \"text\" }\n");
    assert!(e.starts_with("pgflare.toml: tables[0].d1_names.body: `body` is not in d1_columns (id)"), "{e}");
    let e = config_error("[[tables]]\nname = \"a\"\n\n[[tables]]\nname = \"t\"\nd1_table = \"_cf_t\"\n");
    assert!(e.starts_with("pgflare.toml: tables[1].d1_table: `_cf_t` starts with _cf_"), "{e}");
    let e = config_error("[[tables]]\nname = \"t\"\nprimary_key = [\"id\"]\nd1_columns = [\"body\"]\n");
    assert!(
        e.starts_with("pgflare.toml: tables[0].primary_key[0]: key column `id` must be in d1_columns"),
        "{e}"
    );
    let e = config_error("[cloudflare]\nrate_limit = { requests = 0, window_seconds = 300 }\n");
    assert!(e.starts_with("pgflare.toml: cloudflare.rate_limit.requests: must be at least 1"), "{e}");
    let e = config_error("[cloudflare]\napi_base_url = \"ftp://example.com/client/v4\"\n");
    assert!(e.starts_with("pgflare.toml: cloudflare.api_base_url: "), "{e}");
    let p = parse_project(
        "[cloudflare]\napi_base_url = \"http://127.0.0.1:1/client/v4/\"\n",
        Path::new("x.toml"),
    )
    .expect("ok");
    assert_eq!(p.cloudflare.api_base_url, "http://127.0.0.1:1/client/v4");
}

#[test]
fn vectorize_settings_are_checked() {
    let t = "[[tables]]\nname = \"chunks\"\nvector = \"embedding\"\n";
    let p = parse_project(
        &format!("[vectorize]\ncreate_index = true\nmetric = \"dot-product\"\non_invalid = \"skip\"\nvectors_per_request = 1000\nwait_timeout_seconds = 60\n\n{t}vector_metadata = [\"document_id\", \"tags\"]\nvector_metadata_indexes = [\"document_id\"]\n"),
        Path::new("pgflare.toml"),
    )
    .expect("valid");
    let v = &p.vectorize;
    assert!(v.create_index);
    assert_eq!((v.metric.as_str(), v.vectors_per_request), ("dot-product", 1000));
    assert_eq!(v.on_invalid, pgflare::config::project::OnInvalid::Skip);
    assert_eq!(p.tables[0].vector_metadata_indexes, ["document_id"]);
    let e = config_error("[vectorize]\nmetric = \"manhattan\"\n");
    assert!(e.starts_with("pgflare.toml: vectorize.metric: `manhattan` is not a Vectorize metric"), "{e}");
    let e = config_error("[vectorize]\nvectors_per_request = 5001\n");
    assert!(e.contains("vectorize.vectors_per_request: must be 1 to 5000"), "{e}");
    let e = config_error("[vectorize]\non_invalid = \"ignore\"\n");
    assert!(e.contains("unknown variant `ignore`"), "{e}");
    let e = config_error(&format!("{t}vector_metadata = [\"a\"]\nvector_metadata_indexes = [\"b\"]\n"));
    assert!(e.contains("tables[0].vector_metadata_indexes[0]: `b` is not in vector_metadata"), "{e}");
    let e = config_error(&format!("{t}vector_metadata = [\"$price\"]\n"));
    assert!(e.contains("tables[0].vector_metadata[0]: `$price` cannot be a metadata key: metadata keys may not start with `$`"), "{e}");
    let e = config_error("[[tables]]\nname = \"chunks\"\nvector_id = \"key\"\n");
    assert!(e.contains("tables[0].vector_id: needs `vector`"), "{e}");
}

const WRANGLER_JSONC: &str = r#"{
  // The Worker's config, as wrangler init writes it.
  "name": "rag",
  "account_id": "acct-top",
  "d1_databases": [
    { "binding": "DB", "database_name": "rag", "database_id": "id-top" },
  ],
  "env": {
    "staging": {
      /* bindings are not inherited */
      "d1_databases": [
        { "binding": "DB", "database_name": "rag-staging", "database_id": "id-staging" },
        { "binding": "LOGS", "database_id": "id-logs" },
      ],
      "vectorize": [{ "binding": "VECTORIZE", "index_name": "chunks-staging" }],
    },
    "prod": {},
  },
}"#;

#[test]
fn wrangler_files_give_ids_by_binding_per_environment() {
    let dir = temp_dir("wrangler");
    let jsonc = dir.path().join("wrangler.jsonc");
    std::fs::write(&jsonc, WRANGLER_JSONC).expect("write");
    let w = discover(&jsonc, Some("staging")).expect("staging");
    assert_eq!(w.account_id.as_deref(), Some("acct-top"));
    assert_eq!(w.d1("DB").expect("DB").database_id, "id-staging");
    assert_eq!(w.vectorize_index("VECTORIZE").expect("v"), "chunks-staging");
    let e = w.d1("D1").expect_err("unknown binding").to_string();
    assert!(
        e.ends_with("env.staging.d1_databases: no D1 binding `D1`; its D1 bindings are: DB, LOGS"),
        "{e}"
    );
    let e = discover(&jsonc, Some("dev")).expect_err("no env").to_string();
    assert!(e.ends_with("wrangler.jsonc: env.dev: no environment `dev`; the file has prod, staging"), "{e}");

    let toml = dir.path().join("wrangler.toml");
    std::fs::write(
        &toml,
        "name = \"rag\"\n[[d1_databases]]\nbinding = \"DB\"\ndatabase_id = \"id-top\"\n\
         [[env.staging.d1_databases]]\nbinding = \"DB\"\ndatabase_id = \"id-staging\"\n",
    )
    .expect("write");
    assert_eq!(discover(&toml, Some("staging")).expect("t").d1("DB").expect("DB").database_id, "id-staging");
    assert_eq!(discover(&toml, None).expect("t").d1("DB").expect("DB").database_id, "id-top");
    let e = discover(&toml, Some("prod")).expect_err("no env").to_string();
    assert!(e.ends_with("env.prod: no environment `prod`; the file has staging"), "{e}");
}

#[test]
fn flags_beat_environment_beat_pgflare_toml_beat_wrangler() {
    let dir = temp_dir("precedence");
    std::fs::write(dir.path().join("wrangler.jsonc"), WRANGLER_JSONC).expect("write");
    let cfg = dir.path().join("pgflare.toml");
    std::fs::write(
        &cfg,
        "[cloudflare]\nwrangler = \"wrangler.jsonc\"\nenv = \"staging\"\nd1_binding = \"DB\"\n\
         account_id = \"acct-file\"\napi_base_url = \"https://file.example/client/v4\"\n",
    )
    .expect("write");
    let env = |k: &str| match k {
        "CLOUDFLARE_ACCOUNT_ID" => Some("acct-env".to_string()),
        "CLOUDFLARE_API_TOKEN" => Some("tok".to_string()),
        _ => None,
    };
    // File over wrangler (binding looked up relative to pgflare.toml), env over file.
    let mut p = load_project_with(Some(&cfg), &env).expect("load");
    resolve_cloudflare(&mut p, &CloudflareArgs::default()).expect("resolve");
    let cf = &p.cloudflare;
    assert_eq!(cf.account_id.as_deref(), Some("acct-env"));
    assert_eq!(cf.api_token.as_deref(), Some("tok"));
    assert_eq!(cf.api_base_url, "https://file.example/client/v4");
    assert_eq!(cf.d1.as_ref().expect("d1").database_id, "id-staging");
    assert_eq!(cf.vectorize_index.as_deref(), Some("chunks-staging"), "the only index of the env");

    // Flags over everything.
    let mut p = load_project_with(Some(&cfg), &env).expect("load");
    let flags = CloudflareArgs {
        account_id: Some("acct-flag".into()),
        d1_binding: Some("LOGS".into()),
        ..CloudflareArgs::default()
    };
    resolve_cloudflare(&mut p, &flags).expect("resolve");
    assert_eq!(p.cloudflare.account_id.as_deref(), Some("acct-flag"));
    assert_eq!(p.cloudflare.d1.as_ref().expect("d1").database_id, "id-logs");

    // Without env or flags the wrangler file supplies the account; the
    // environment variable for the base URL is checked like the file's.
    let mut p = load_project_with(Some(&cfg), &|_| None).expect("load");
    p.cloudflare.account_id = None;
    resolve_cloudflare(&mut p, &CloudflareArgs::default()).expect("resolve");
    assert_eq!(p.cloudflare.account_id.as_deref(), Some("acct-top"));
    let bad = |k: &str| (k == "CLOUDFLARE_API_BASE_URL").then(|| "https://api.example.com".to_string());
    let e = load_project_with(Some(&cfg), &bad).expect_err("no /client/v4").to_string();
    assert!(e.starts_with("CLOUDFLARE_API_BASE_URL: "), "{e}");
}

/// The real wrangler (PGFLARE_WRANGLER, or the copy scripts/test.sh keeps in
/// .tools) applies the migration init writes, under D1's rules.
#[test]
fn wrangler_applies_the_init_migration_locally() {
    let bin = std::env::var("PGFLARE_WRANGLER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root().join(".tools/wrangler/node_modules/.bin/wrangler"));
    if !bin.exists() {
        eprintln!("skipped: no wrangler (run the tests with scripts/test.sh, which installs it)");
        return;
    }
    let db = TestDb::new("initwrangler");
    let schema = std::fs::read_to_string(root().join("fixtures/schema.sql")).expect("fixture");
    db.exec(&schema.replace("{{DIMS}}", "4"));
    let dir = temp_dir("initwrangler");
    std::fs::write(
        dir.path().join("wrangler.jsonc"),
        r#"{ "name": "rehearsal", "compatibility_date": "2025-01-01",
             "d1_databases": [{ "binding": "DB", "database_name": "rehearsal",
                                "database_id": "00000000-0000-4000-8000-00000000d1d1" }] }"#,
    )
    .expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_pgflare"))
        .args(["init"])
        .current_dir(dir.path())
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run pgflare");
    assert!(o.status.success(), "{}", text(&o));
    let wrangler = |args: &[&str]| {
        let o = Command::new(&bin)
            .args(args)
            .current_dir(dir.path())
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .output()
            .expect("run wrangler");
        assert!(o.status.success(), "wrangler {args:?}\n{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    wrangler(&["d1", "migrations", "apply", "rehearsal", "--local"]);
    let sql =
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('documents', 'chunks') ORDER BY 1";
    let out = wrangler(&["d1", "execute", "rehearsal", "--local", "--json", "--command", sql]);
    assert!(out.contains("\"chunks\"") && out.contains("\"documents\""), "{out}");
}
