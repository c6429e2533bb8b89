//! `pgflare inspect` and the errors users meet first.

use crate::common::*;

#[test]
fn inspect_reports_mapping_and_cloudflare_misfits_with_example_keys() {
    let db = TestDb::new("inspect");
    db.seed(200, 8);
    // Vectors are built from their text form: the bundled pgvector's
    // array_to_vector uses AVX-512, which this CPU may lack (see README).
    db.exec(
        "CREATE TABLE wide_vectors (id text PRIMARY KEY, meta jsonb, embedding vector(2000));
         INSERT INTO wide_vectors VALUES
           (repeat('k', 70), jsonb_build_object('blob', repeat('x', 11000)), NULL),
           ('short', '{}', ('[' || array_to_string(array_fill(0.5::real, ARRAY[2000]), ',') || ']')::vector);",
    );
    let json = ok(pgflare(&db, &["inspect", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let table = |name: &str| {
        v["tables"].as_array().expect("tables").iter().find(|t| t["name"] == name).cloned().expect(name)
    };
    let chunks = table("chunks");
    let emb = chunks["columns_mapped"]
        .as_array()
        .expect("cols")
        .iter()
        .find(|c| c["column"] == "embedding")
        .cloned()
        .expect("emb");
    assert_eq!(emb["arrow"], "FixedSizeList(8 x non-null Float32)");
    // The 160 KB hard row is over D1's statement size, and is named by key.
    let note = chunks["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["check"] == "d1_statement_size")
        .cloned()
        .expect("note");
    assert_eq!(note["rows"], 1);
    assert!(note["examples"][0].as_str().expect("key").starts_with("00000000-0000-4000-8000-"), "{note}");

    let wide = table("wide_vectors");
    let find =
        |check: &str| wide["findings"].as_array().expect("f").iter().find(|f| f["check"] == check).cloned();
    assert_eq!(find("vector_dims").expect("dims")["rows"], 1);
    assert_eq!(find("vector_dims").expect("dims")["examples"][0], "short");
    assert_eq!(find("vector_id_size").expect("id")["examples"][0], "k".repeat(70));
    assert_eq!(find("metadata_size").expect("meta")["rows"], 1);

    let human = ok(pgflare(&db, &["inspect", "--table", "wide_vectors"]));
    assert!(human.contains("[BLOCKER] vector_dims embedding: 1 rows over 1536 dimensions"), "{human}");
}

#[test]
fn an_unsupported_type_names_table_column_type_and_the_way_out() {
    let db = TestDb::new("unsupported");
    db.exec(
        "CREATE TABLE spans (id int PRIMARY KEY, took interval); INSERT INTO spans VALUES (1, '5 minutes');",
    );
    let out = temp_dir("unsupported");
    let o = pgflare(&db, &["archive", "--out", out.path().to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("table public.spans, column took: type `interval` is not supported"), "{err}");
    assert!(err.contains("--cast spans.took=text"), "{err}");
    // The advice works.
    ok(pgflare(
        &db,
        &[
            "archive",
            "--quiet",
            "--overwrite",
            "--out",
            out.path().to_str().expect("p"),
            "--cast",
            "spans.took=text",
        ],
    ));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("manifest.json")).expect("m"))
            .expect("json");
    assert_eq!(m["tables"][0]["columns"][1]["cast"], "text");
    assert_eq!(m["tables"][0]["rows"], 1);
    crate::archive::readers_match_the_source(&db, out.path());
}

#[test]
fn passwords_never_reach_output() {
    let db = TestDb::new("secrets");
    let (base, rest) = db.url.split_once('@').expect("url with credentials");
    let user = base.rsplit_once(':').map(|(u, _)| u).expect("user:password");
    let wrong = format!("{user}:Sup3r-Secret-Pw@{rest}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pgflare"))
        .args(["inspect", "--database-url", &wrong])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    let all = text(&o);
    assert!(!all.contains("Sup3r-Secret-Pw"), "{all}");
    assert!(all.contains(":***@"), "the message should still say which server: {all}");

    db.exec_file("fixtures/types.sql");
    let out = temp_dir("secrets");
    ok(pgflare(&db, &["archive", "--quiet", "--out", out.path().to_str().expect("p")]));
    let manifest = std::fs::read_to_string(out.path().join("manifest.json")).expect("manifest");
    let password =
        db.url.split_once('@').and_then(|(b, _)| b.rsplit_once(':')).map(|(_, p)| p.to_string()).expect("pw");
    assert!(!manifest.contains(&password), "the manifest leaks the password");
    assert!(manifest.contains(":***@"), "{manifest}");
}

#[test]
fn an_infinite_timestamp_names_the_row_and_the_exact_cast() {
    let db = TestDb::new("infinity");
    db.exec("CREATE TABLE events (id int PRIMARY KEY, at timestamptz); INSERT INTO events VALUES (1, now()), (7, 'infinity');");
    let out = temp_dir("infinity");
    let o = pgflare(&db, &["archive", "--quiet", "--out", out.path().to_str().expect("p")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("table public.events, column at, row id=7"), "{err}");
    assert!(err.contains("--cast events.at=text"), "{err}");
}

#[test]
fn inspect_counts_vector_dimensions_and_namespaces_against_one_index() {
    let db = TestDb::new("inspectdims");
    // Text-form vectors (see above). LangChain's PGVector declares
    // `vector` without a dimension: two embedding models end up side by side.
    let v =
        |d: usize| format!("('[' || array_to_string(array_fill(0.5::real, ARRAY[{d}]), ',') || ']')::vector");
    db.exec(&format!(
        "CREATE EXTENSION IF NOT EXISTS vector;
         CREATE TABLE langchain_pg_embedding (id text PRIMARY KEY, tenant text NOT NULL, embedding vector);
         INSERT INTO langchain_pg_embedding VALUES
           ('a', 't1', {v1536}), ('b', 't2', {v1536}), ('c', 't1', {v768}), ('d', 't3', NULL);
         CREATE TABLE many_tenants (id int PRIMARY KEY, tenant text NOT NULL, embedding vector(3));
         INSERT INTO many_tenants SELECT g, 'tenant-' || g, '[1,2,3]' FROM generate_series(1, 50001) g;",
        v1536 = v(1536),
        v768 = v(768)
    ));
    let dir = temp_dir("inspectdims");
    let config = dir.path().join("pgflare.toml");
    let tables =
        "[[tables]]\nname = \"many_tenants\"\nvector = \"embedding\"\nvector_namespace = \"tenant\"\n\n\
                  [[tables]]\nname = \"langchain_pg_embedding\"\nvector = \"embedding\"\n";
    std::fs::write(&config, tables).expect("config");
    let c = config.to_str().expect("p");
    let v: serde_json::Value = ok_json(pgflare(&db, &["inspect", "--json", "--config", c]));
    let table = |name: &str| {
        v["tables"].as_array().expect("tables").iter().find(|t| t["name"] == name).cloned().expect(name)
    };
    let finding = |t: &serde_json::Value, check: &str| {
        t["findings"].as_array().expect("f").iter().find(|f| f["check"] == check).cloned()
    };
    let lc = table("langchain_pg_embedding");
    assert_eq!(
        lc["vectors"][0]["dimensions"],
        serde_json::json!([{"dims": 1536, "rows": 2}, {"dims": 768, "rows": 1}]),
        "{lc:#}"
    );
    let mixed = finding(&lc, "vector_dims_mixed").unwrap_or_else(|| panic!("mixed dimensions found: {lc:#}"));
    assert_eq!(
        (&mixed["severity"], &mixed["rows"], &mixed["examples"]),
        (&serde_json::json!("blocker"), &serde_json::json!(1), &serde_json::json!(["c"]))
    );
    assert!(mixed["advice"].as_str().expect("advice").contains("[vectorize] dimensions"), "{mixed:#}");
    let many = table("many_tenants");
    assert_eq!(many["vectors"][0]["namespaces"], 50001, "{many:#}");
    let ns = finding(&many, "vectorize_namespaces")
        .unwrap_or_else(|| panic!("namespaces over the limit: {many:#}"));
    assert_eq!(
        (&ns["severity"], &ns["rows"], &ns["column"]),
        (&serde_json::json!("blocker"), &serde_json::json!(50001), &serde_json::json!("tenant"))
    );
    assert!(ns["limit"].as_str().expect("limit").starts_with("50000 namespaces"), "{ns:#}");

    let human = ok(pgflare(&db, &["inspect", "--config", c, "--table", "langchain_pg_embedding"]));
    assert!(human.contains("vectors in embedding: 2 x 1536 dims, 1 x 768 dims"), "{human}");
    assert!(
        human
            .contains("[BLOCKER] vector_dims_mixed embedding: 1 rows over one dimension per Vectorize index"),
        "{human}"
    );

    // The dimension chosen, the others skipped by the load: a note.
    std::fs::write(&config, format!("{tables}\n[vectorize]\ndimensions = 768\non_invalid = \"skip\"\n"))
        .expect("config");
    let v: serde_json::Value =
        ok_json(pgflare(&db, &["inspect", "--json", "--config", c, "--table", "langchain_pg_embedding"]));
    let mixed = v["tables"][0]["findings"]
        .as_array()
        .expect("f")
        .iter()
        .find(|f| f["check"] == "vector_dims_mixed")
        .cloned();
    let mixed = mixed.expect("still reported");
    assert_eq!((&mixed["severity"], &mixed["rows"]), (&serde_json::json!("note"), &serde_json::json!(2)));
}
