//! JSON metadata in the shapes RAG libraries store it, end to end:
//! LangChain's `SupabaseVectorStore` (`documents.metadata` nested three
//! levels) and LlamaIndex's vecs tables (`_node_content`, a JSON string of
//! several KB). Without a mapping the refusal names the column and JSON
//! path; with one, `load` (files and API) writes top-level properties,
//! metadata indexes are created on mapped properties, a filtered query
//! returns the right ids, verify is clean, a changed JSON value is sent
//! again by `sync` (exactly that vector), and a changed mapping is noticed;
//! an existing metadata index of another type is refused naming both places
//! a property's type comes from (a column, a typed JSON path).
//! The expected metadata is written out here by hand, not taken from pgflare.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::common::*;

/// Six LangChain rows: pages 3, 3, 7, 1, 3 and none; source a.pdf or b.pdf.
fn langchain(db: &TestDb) {
    db.exec(
        r#"CREATE EXTENSION IF NOT EXISTS vector;
         CREATE TABLE documents (id bigserial PRIMARY KEY, content text, metadata jsonb, embedding vector(3));
         INSERT INTO documents (content, metadata, embedding) VALUES
           ('one',   '{"source": "docs/a.pdf", "pdf": {"version": "1.10.100", "info": {"Title": "A"}, "totalPages": 12}, "loc": {"pageNumber": 3, "lines": {"from": 1, "to": 40}}}', '[1,0,0]'),
           ('two',   '{"source": "docs/a.pdf", "pdf": {"version": "1.10.100", "info": {"Title": "A"}, "totalPages": 12}, "loc": {"pageNumber": 3, "lines": {"from": 41, "to": 80}}}', '[0.9,0.1,0]'),
           ('three', '{"source": "docs/a.pdf", "pdf": {"version": "1.10.100", "info": {"Title": "A"}, "totalPages": 12}, "loc": {"pageNumber": 7, "lines": {"from": 1, "to": 22}}}', '[0,1,0]'),
           ('four',  '{"source": "docs/b.pdf", "pdf": {"version": "1.9", "info": {"Title": "B"}, "totalPages": 2}, "loc": {"pageNumber": 1, "lines": {"from": 1, "to": 9}}}', '[0,0,1]'),
           ('five',  '{"source": "docs/b.pdf", "pdf": {"version": "1.9", "info": {"Title": "B"}, "totalPages": 2}, "loc": {"pageNumber": 3, "lines": {"from": 10, "to": 19}}}', '[0.5,0.5,0.5]'),
           ('six',   '{"source": "notes.txt"}', '[0.2,0.3,0.9]');"#,
    );
}

const MAPPED: &str = r#"vector_metadata_paths = { source = { path = "metadata.source", type = "string" }, page = { path = "metadata.loc.pageNumber", type = "number" } }
vector_metadata_flatten = ["metadata"]
vector_metadata_omit = ["metadata.pdf.info"]
vector_metadata_indexes = ["source", "page"]
"#;

fn config(dir: &Path, table_keys: &str) -> PathBuf {
    let config = dir.join("pgflare.toml");
    std::fs::write(
        &config,
        format!("[[tables]]\nname = \"documents\"\nvector = \"embedding\"\n{table_keys}"),
    )
    .expect("config");
    config
}

/// What the mapping above must make of each row, by hand.
fn expected(id: u64) -> Value {
    let pdf = |v: &str, pages: u64| json!({"pdf_version": v, "pdf_totalPages": pages});
    let (source, page, lines, p) = match id {
        1 => ("docs/a.pdf", 3, (1, 40), pdf("1.10.100", 12)),
        2 => ("docs/a.pdf", 3, (41, 80), pdf("1.10.100", 12)),
        3 => ("docs/a.pdf", 7, (1, 22), pdf("1.10.100", 12)),
        4 => ("docs/b.pdf", 1, (1, 9), pdf("1.9", 2)),
        5 => ("docs/b.pdf", 3, (10, 19), pdf("1.9", 2)),
        _ => return json!({"source": "notes.txt"}),
    };
    let mut m = json!({"source": source, "page": page, "loc_lines_from": lines.0, "loc_lines_to": lines.1});
    m.as_object_mut().expect("o").extend(p.as_object().expect("o").clone());
    m
}

/// `pgflare --json load --target files` (extra: e.g. `--table T`).
fn load_files(db: &TestDb, config: &Path, out: &Path, state: &Path, extra: &[&str]) -> std::process::Output {
    let paths = [config, out, state].map(|p| p.to_str().expect("p").to_string());
    let mut args = vec!["--json", "load", "--config", &paths[0], "--target", "files", "--out", &paths[1]];
    args.extend(["--state-dir", &paths[2]]);
    args.extend_from_slice(extra);
    pgflare(db, &args)
}

fn load(emu: &Emulator, db: &TestDb, config: &Path, state: &Path, extra: &[&str]) -> std::process::Output {
    emu.command(db)
        .args(["--json", "load", "--config"])
        .arg(config)
        .args(["--d1-database-id", "db1", "--vectorize-index", "vi", "--create-index", "--state-dir"])
        .arg(state)
        .args(extra)
        .output()
        .expect("load")
}

fn http(emu: &Emulator, method: &str, path: &str, body: Option<Value>) -> Value {
    let m = if method == "POST" { reqwest::Method::POST } else { reqwest::Method::GET };
    let (_, v) = emu.request(m, &format!("vectorize/v2/indexes/vi{path}"), body.as_ref());
    assert_eq!(v["success"], true, "{path}: {v:#}");
    v["result"].clone()
}

/// The ids a filtered query returns, sorted.
fn filtered(emu: &Emulator, filter: Value) -> Vec<String> {
    let q = json!({"vector": [1, 1, 1], "topK": 100, "filter": filter, "returnMetadata": "none"});
    let mut ids: Vec<String> = http(emu, "POST", "/query", Some(q))["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn langchain_metadata_maps_to_filterable_properties_and_stays_in_step() {
    let db = TestDb::new("jsonmeta");
    langchain(&db);
    let dir = temp_dir("jsonmeta");
    let emu = Emulator::start(&["--vectorize-delay-ms", "100"]);

    // Without a mapping: the whole column is refused, naming column and path.
    let whole = config(dir.path(), "vector_metadata = [\"metadata\"]\n");
    let o = load(&emu, &db, &whole, &dir.path().join("state-whole"), &["--target", "api"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("table public.documents, column metadata, path metadata.loc, row id=1:"), "{err}");
    assert!(err.contains("nests one level only"), "{err}");

    // With one: NDJSON files hold exactly the hand-made metadata.
    let config = config(dir.path(), MAPPED);
    let out = dir.path().join("files");
    let s: Value = ok_json(load_files(&db, &config, &out, &dir.path().join("state-files"), &[]));
    let v = &s["tables"][0]["vectors"];
    assert_eq!((v["written"].as_u64(), v["skipped"].as_u64()), (Some(6), Some(0)), "{s:#}");
    // pdf.info is left out of the five rows that have it, and said so.
    assert_eq!(v["metadata_omitted"].as_u64(), Some(5), "{s:#}");
    assert_eq!(v["omissions"][0]["path"], "metadata.pdf.info");
    assert_eq!(v["omissions"][0]["count"], 5);
    let ndjson =
        std::fs::read_to_string(out.join("vectorize/documents/part-00000-000.ndjson")).expect("ndjson");
    let lines: Vec<Value> = ndjson.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(lines.len(), 6);
    for l in &lines {
        let id: u64 = l["id"].as_str().expect("id").parse().expect("n");
        assert_eq!(l["metadata"], expected(id), "vector {id}");
    }
    assert_schema("vectorize-ndjson", &[&out.join("vectorize/documents/part-00000-000.ndjson")]);

    // Another mapping does not resume this load's state.
    let remapped = config_in(dir.path(), &MAPPED.replace("metadata.pdf.info", "metadata.pdf"));
    let o = load_files(&db, &remapped, &out, &dir.path().join("state-files"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("other tables, column mappings"), "{}", text(&o));

    // The API: indexes on the mapped properties, then filters work.
    let state = dir.path().join("state-api");
    ok(load(&emu, &db, &config, &state, &["--target", "api"]));
    let mut indexes: Vec<(String, String)> = http(&emu, "GET", "/metadata_index/list", None)
        ["metadataIndexes"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| (m["propertyName"].as_str().expect("n").into(), m["indexType"].as_str().expect("t").into()))
        .collect();
    indexes.sort();
    assert_eq!(indexes, [("page".to_string(), "number".to_string()), ("source".into(), "string".into())]);
    assert_eq!(filtered(&emu, json!({"page": 3})), ["1", "2", "5"]);
    assert_eq!(filtered(&emu, json!({"source": "docs/b.pdf", "page": {"$gte": 2}})), ["5"]);
    let got = http(&emu, "POST", "/get_by_ids", Some(json!({"ids": ["3"]})));
    assert_eq!(got[0]["metadata"], expected(3));

    let verify = || {
        let o = emu
            .command(&db)
            .args(["--json", "verify", "--config"])
            .arg(&config)
            .args(["--sqlite"])
            .arg(emu.d1_file("db1"))
            .args(["--vectorize-index", "vi", "--queries", "3", "--report-dir"])
            .arg(dir.path().join("report"))
            .output()
            .expect("verify");
        let r: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        (o.status.code(), r, crate::common::text(&o))
    };
    let (code, r, out) = verify();
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(r["verdict"]["status"], "consistent");

    // One JSON value changes in the source: sync sends exactly that vector.
    db.exec("UPDATE documents SET metadata = jsonb_set(metadata, '{loc,pageNumber}', '7') WHERE id = 2");
    let sync = |config: &Path| {
        emu.command(&db)
            .args(["--json", "sync", "--config"])
            .arg(config)
            .args(["--target", "api", "--d1-database-id", "db1", "--vectorize-index", "vi", "--once"])
            .args(["--work-dir"])
            .arg(dir.path())
            .output()
            .expect("sync")
    };
    let s: Value = ok_json(sync(&config));
    let t =
        s["tables"].as_array().expect("tables").iter().find(|t| t["table"] == "public.documents").expect("t");
    assert_eq!(t["vectors"]["sent"].as_u64(), Some(1), "{s:#}");
    assert_eq!(filtered(&emu, json!({"page": 7})), ["2", "3"]);
    let (code, _, out) = verify();
    assert_eq!(code, Some(0), "{out}");

    // Another mapping is another set of vectors: sync says so.
    let o = sync(&remapped);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("JSON metadata mapping"), "{}", text(&o));
}

fn config_in(dir: &Path, keys: &str) -> PathBuf {
    let sub = dir.join("remapped");
    std::fs::create_dir_all(&sub).expect("dir");
    config(&sub, keys)
}

/// LlamaIndex's vecs layout: `_node_content` holds the node as JSON text.
fn llamaindex(db: &TestDb) {
    db.exec(
        r#"CREATE EXTENSION IF NOT EXISTS vector;
         CREATE TABLE docs (id varchar PRIMARY KEY, vec vector(3), metadata jsonb);
         INSERT INTO docs SELECT 'node-' || n, ('[' || n || ',1,0]')::vector,
           jsonb_build_object('_node_content', json_build_object('id_', 'node-' || n, 'text', repeat('lorem ', n * 600))::text,
                              '_node_type', 'TextNode', 'document_id', 'doc-' || (n % 2), 'doc_id', 'doc-' || (n % 2),
                              'ref_doc_id', 'doc-' || (n % 2), 'file_name', 'f' || (n % 2) || '.pdf', 'page_label', n::text)
         FROM generate_series(1, 4) n;"#,
    );
}

#[test]
fn llamaindex_node_content_is_named_when_too_big_and_mapped_out_otherwise() {
    let db = TestDb::new("llama");
    llamaindex(&db);
    let dir = temp_dir("llama");
    let write = |keys: &str| {
        let c = dir.path().join("pgflare.toml");
        std::fs::write(&c, format!("[[tables]]\nname = \"docs\"\nvector = \"vec\"\n{keys}")).expect("config");
        c
    };
    let run = |config: &Path, out: &str| {
        load_files(&db, config, &dir.path().join(out), &dir.path().join(format!("state-{out}")), &[])
    };
    // node-3 holds ~11 KB of text: the whole column is over 10 KiB.
    let o = run(&write("vector_metadata = [\"metadata\"]\n"), "whole");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("column metadata, path metadata._node_content, row id=node-3: makes the metadata"),
        "{err}"
    );
    assert!(err.contains("Vectorize allows 10240 per vector"), "{err}");

    let s: Value = ok_json(run(
        &write(
            "vector_metadata_flatten = [\"metadata\"]\nvector_metadata_omit = [\"metadata._node_content\"]\n",
        ),
        "mapped",
    ));
    assert_eq!(s["tables"][0]["vectors"]["metadata_omitted"].as_u64(), Some(4), "{s:#}");
    let ndjson =
        std::fs::read_to_string(dir.path().join("mapped/vectorize/docs/part-00000-000.ndjson")).expect("f");
    let first: Value = serde_json::from_str(ndjson.lines().next().expect("line")).expect("json");
    assert_eq!(
        first["metadata"],
        json!({"_node_type": "TextNode", "document_id": "doc-1", "doc_id": "doc-1", "ref_doc_id": "doc-1",
               "file_name": "f1.pdf", "page_label": "1"})
    );
}

#[test]
fn inspect_surveys_json_keys_and_init_proposes_a_mapping_that_loads() {
    let db = TestDb::new("jsonsurvey");
    langchain(&db);
    llamaindex(&db);
    let v: Value = ok_json(pgflare(&db, &["inspect", "--json"]));
    let table = |name: &str| -> Value {
        v["tables"].as_array().expect("tables").iter().find(|t| t["name"] == name).cloned().expect(name)
    };
    let docs = table("documents");
    let survey = &docs["json_keys"][0];
    assert_eq!(survey["column"], "metadata");
    assert_eq!(
        (survey["sampled_rows"].as_u64(), survey["max_depth"].as_u64()),
        (Some(6), Some(3)),
        "{survey:#}"
    );
    assert_eq!(survey["fits_whole"], false);
    assert!(survey["sample"].as_str().expect("sample").contains("6 non-NULL values"), "{survey:#}");
    let path = |s: &Value, p: &str| -> Value {
        s["paths"]
            .as_array()
            .expect("paths")
            .iter()
            .find(|x| x["path"] == p)
            .cloned()
            .unwrap_or_else(|| panic!("{p}: {s:#}"))
    };
    let from = path(survey, "metadata.loc.lines.from");
    assert_eq!((from["depth"].as_u64(), from["rows"].as_u64()), (Some(3), Some(5)));
    assert_eq!(from["types"], json!({"number": 5}));
    assert!((from["share"].as_f64().expect("share") - 0.833).abs() < 1e-9, "{from:#}");
    assert_eq!(path(survey, "metadata.source")["share"], 1.0);
    assert!(path(survey, "metadata.loc")["problems"][0]
        .as_str()
        .expect("p")
        .contains("deeper than Vectorize's one level"));
    let llama = &table("docs")["json_keys"][0];
    let node = path(llama, "metadata._node_content");
    assert!(node["problems"][0].as_str().expect("p").contains("over Vectorize's 10240 bytes"), "{node:#}");
    assert_eq!(llama["over_metadata_limit"].as_u64(), Some(2), "node-3 and node-4: {llama:#}");
    let human = ok(pgflare(&db, &["inspect", "--table", "documents"]));
    assert!(human.contains("JSON keys of metadata"), "{human}");
    assert!(human.contains("metadata.loc.lines.from"), "{human}");

    // init: typed properties for the short scalar keys, the big text left out.
    let dir = temp_dir("jsonsurvey");
    let config = dir.path().join("pgflare.toml");
    let args = ["--json", "init", "--out-config", config.to_str().expect("p"), "--migrations-dir"];
    let migrations = dir.path().join("migrations");
    let i: Value = ok_json(pgflare(&db, &[&args[..], &[migrations.to_str().expect("p")]].concat()));
    let proposed = |name: &str| -> Vec<Value> {
        let t = i["tables"].as_array().expect("tables").iter().find(|t| t["table"] == name).expect(name);
        t["vector_metadata_paths"].as_array().expect("paths").clone()
    };
    let langchain_paths = proposed("public.documents");
    assert!(
        langchain_paths.contains(
            &json!({"name": "loc_pageNumber", "path": "metadata.loc.pageNumber", "type": "number"})
        ),
        "{langchain_paths:#?}"
    );
    assert!(
        langchain_paths.contains(&json!({"name": "source", "path": "metadata.source", "type": "string"})),
        "{langchain_paths:#?}"
    );
    let llama_paths = proposed("public.docs");
    assert!(llama_paths.iter().all(|p| p["path"] != "metadata._node_content"), "{llama_paths:#?}");
    assert!(
        llama_paths.contains(&json!({"name": "file_name", "path": "metadata.file_name", "type": "string"}))
    );
    let toml = std::fs::read_to_string(&config).expect("config");
    assert!(toml.contains("#   metadata._node_content: values up to"), "{toml}");
    // What init wrote loads, with those properties on each vector.
    let out = dir.path().join("out");
    ok(load_files(&db, &config, &out, &dir.path().join("state"), &["--table", "documents"]));
    let ndjson =
        std::fs::read_to_string(out.join("vectorize/documents/part-00000-000.ndjson")).expect("ndjson");
    let first: Value = serde_json::from_str(ndjson.lines().next().expect("line")).expect("json");
    assert_eq!(first["metadata"]["loc_pageNumber"], 3, "{first:#}");
    assert_eq!(first["metadata"]["source"], "docs/a.pdf", "{first:#}");
}

#[test]
fn a_metadata_index_of_another_type_is_refused_naming_the_json_path_setting() {
    let db = TestDb::new("jsonidx");
    langchain(&db);
    let dir = temp_dir("jsonidx");
    let emu = Emulator::start(&[]);
    let typed = |ty: &str| {
        config(
            dir.path(),
            &format!(
                "vector_metadata_paths = {{ page = {{ path = \"metadata.loc.pageNumber\", type = \"{ty}\" }} }}\n\
                 vector_metadata_indexes = [\"page\"]\n"
            ),
        )
    };
    let state = dir.path().join("state");
    ok(load(&emu, &db, &typed("string"), &state, &["--target", "api"]));
    // The property comes from a JSON path, not a column: the refusal says
    // where its type is set, and how to get out.
    let o = load(&emu, &db, &typed("number"), &state, &["--target", "api", "--restart"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("metadata index `page`") && err.contains("exists as type string"), "{err}");
    assert!(err.contains("vector_metadata_paths") && err.contains("vector_metadata column"), "{err}");
    assert!(!err.contains("the column needs"), "{err}");
    assert!(err.contains("delete-metadata-index vi --propertyName page"), "{err}");
}
