//! The steps of the zoo's flow (see flow.rs), each with what it asserts.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::flow::{counts, Flow, INDEX};
use crate::common::*;

/// One `[[tables]]` entry of the configuration in use.
struct Table<'t> {
    qualified: String,
    entry: &'t toml::Table,
}

impl Table<'_> {
    fn str(&self, key: &str) -> Option<&str> {
        self.entry.get(key).and_then(|v| v.as_str())
    }

    fn list(&self, key: &str) -> Vec<String> {
        let items = self.entry.get(key).and_then(|v| v.as_array()).cloned().unwrap_or_default();
        items.iter().map(|v| v.as_str().expect("a string").to_string()).collect()
    }
}

impl Flow<'_> {
    fn tables(&self) -> Vec<Table<'_>> {
        let schema = self.toml["source"]["schema"].as_str().unwrap_or("public");
        let tables = self.toml["tables"].as_array().expect("[[tables]]");
        tables
            .iter()
            .map(|t| {
                let entry = t.as_table().expect("a table");
                let name = entry["name"].as_str().expect("name");
                let qualified =
                    if name.contains('.') { name.to_string() } else { format!("{schema}.{name}") };
                Table { qualified, entry }
            })
            .collect()
    }

    fn vector_table(&self) -> Table<'_> {
        let mut with = self.tables().into_iter().filter(|t| t.entry.contains_key("vector"));
        let t = with.next().expect("a table with a vector column");
        assert!(with.next().is_none(), "one vector table per schema in the zoo");
        t
    }

    /// The condition a live row of `t` meets (soft-deleted rows, and rows
    /// below a soft-deleted parent, stay out of D1).
    fn live(&self, t: &Table) -> &str {
        self.live.get(&t.qualified).map(String::as_str).unwrap_or("true")
    }

    /// Live rows of `t` in the source.
    fn live_rows(&self, t: &Table) -> u64 {
        self.db.count(&format!("SELECT count(*) FROM {} WHERE {}", t.qualified, self.live(t)))
    }

    pub(super) fn inspect(&self, seeded: &BTreeMap<String, u64>) {
        let mut args = vec!["inspect", "--schema", self.spec.schema];
        if !self.spec.exclude.is_empty() {
            // Inspect lists the columns it cannot read, each with its ways out.
            let (code, v, o) = self.pgflare(&args);
            assert_eq!(code, Some(0), "inspect informs\n{}", text(&o));
            let fixes: Vec<&str> = v["tables"]
                .as_array()
                .expect("tables")
                .iter()
                .flat_map(|t| t["unsupported"].as_array().expect("unsupported"))
                .map(|u| u["exclude"].as_str().expect("exclude"))
                .collect();
            for tc in self.spec.exclude {
                assert!(fixes.contains(&format!("--exclude {tc}").as_str()), "{fixes:?}\n{v:#}");
            }
        }
        args.extend(self.excludes());
        let (code, v, o) = self.pgflare(&args);
        assert_eq!(code, Some(0), "inspect\n{}", text(&o));
        let tables = v["tables"].as_array().expect("tables");
        let names: BTreeSet<String> = tables
            .iter()
            .map(|t| format!("{}.{}", t["schema"].as_str().expect("s"), t["name"].as_str().expect("n")))
            .collect();
        assert_eq!(names, seeded.keys().cloned().collect(), "inspect lists the schema's tables\n{v:#}");
        let findings: Vec<&Value> =
            tables.iter().flat_map(|t| t["findings"].as_array().expect("f")).collect();
        let blockers: Vec<&&Value> = findings.iter().filter(|f| f["severity"] == "blocker").collect();
        assert!(blockers.is_empty(), "nothing in the zoo should block: {blockers:#?}");
        let long: u64 = findings
            .iter()
            .filter(|f| f["check"] == "d1_statement_size")
            .map(|f| f["rows"].as_u64().expect("n"))
            .sum();
        assert_eq!(
            long, self.spec.long_rows,
            "rows over D1's statement limit, noted by inspect\n{findings:#?}"
        );
        let vector_columns = tables
            .iter()
            .flat_map(|t| t["columns"].as_array().expect("c"))
            .filter(|c| matches!(c["type"]["kind"].as_str(), Some("vector" | "halfvec")))
            .count();
        assert_eq!(vector_columns, 1, "one embedding column per zoo schema");
        self.log("inspect");
    }

    /// `init`, then the schema's documented edits (pgflare.edits.toml).
    pub(super) fn init(&mut self) {
        let (mig, config) = (self.path("migrations"), self.config.display().to_string());
        let mut args =
            vec!["init", "--schema", self.spec.schema, "--out-config", &config, "--migrations-dir", &mig];
        args.extend(self.excludes());
        let (code, _, o) = self.pgflare(&args);
        assert_eq!(code, Some(0), "init\n{}", text(&o));
        let proposed = std::fs::read_to_string(&self.config).expect("pgflare.toml");
        let mut cfg: toml::Table = toml::from_str(&proposed).expect("init's pgflare.toml parses");
        let edits = root().join("fixtures/zoo").join(self.spec.name).join("pgflare.edits.toml");
        if edits.exists() {
            let edits: toml::Table =
                toml::from_str(&std::fs::read_to_string(&edits).expect("edits")).expect("toml");
            apply_edits(&mut cfg, edits);
            std::fs::write(&self.config, toml::to_string(&cfg).expect("toml")).expect("write pgflare.toml");
        }
        self.toml = cfg;
        self.vector_table();
        self.log("init");
    }

    /// Init's migration through the D1 API, as `wrangler d1 migrations apply` sends it.
    pub(super) fn apply_migration(&self) {
        let sql = std::fs::read_to_string(self.dir.path().join("migrations/0001_pgflare_initial.sql"))
            .expect("init wrote the migration");
        let url = format!("{}/accounts/{}/d1/database/db1/query", self.emu.base_url, self.emu.account);
        let (status, body) = block_on(async {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let r = reqwest::Client::new()
                .post(&url)
                .bearer_auth(&self.emu.token)
                .json(&json!({ "sql": sql }))
                .send()
                .await
                .expect("D1 query");
            (r.status().as_u16(), r.json::<Value>().await.expect("JSON answer"))
        });
        assert!(status == 200 && body["success"] == true, "init's migration on D1: {status} {body:#}\n{sql}");
        self.log("migration applied");
    }

    /// `load --target api`.
    pub(super) fn load(&self, seeded: &BTreeMap<String, u64>) {
        let state = self.path("load-state");
        let (code, v, o) = self.pgflare(&[
            "load",
            "--config",
            &self.config.display().to_string(),
            "--target",
            "api",
            "--d1-database-id",
            "db1",
            "--vectorize-index",
            INDEX,
            "--create-index",
            "--no-create-tables",
            "--partition-mib",
            "1",
            "--state-dir",
            &state,
        ]);
        assert_eq!(code, Some(0), "load\n{}", text(&o));
        assert_eq!(v["complete"], true, "{v:#}");
        let loaded: BTreeMap<String, u64> = v["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .map(|t| (t["table"].as_str().expect("t").to_string(), t["rows"].as_u64().expect("rows")))
            .collect();
        assert_eq!(loaded.keys().collect::<Vec<_>>(), seeded.keys().collect::<Vec<_>>(), "{v:#}");
        for t in self.tables() {
            assert_eq!(
                loaded[&t.qualified],
                self.live_rows(&t),
                "every live row of {} loaded\n{v:#}",
                t.qualified
            );
        }
        let vt = self.vector_table();
        let (vector, live) = (vt.str("vector").expect("vector"), self.live_rows(&vt));
        let nulls = self.db.count(&format!(
            "SELECT count(*) FROM {} WHERE \"{vector}\" IS NULL AND ({})",
            vt.qualified,
            self.live(&vt)
        ));
        let t = v["tables"]
            .as_array()
            .expect("t")
            .iter()
            .find(|t| t["table"] == vt.qualified.as_str())
            .expect("vt");
        let vectors = &t["vectors"];
        assert_eq!(
            (vectors["written"].as_u64(), vectors["null"].as_u64(), vectors["skipped"].as_u64()),
            (Some(live - nulls), Some(nulls), Some(0)),
            "every non-NULL embedding went to Vectorize\n{v:#}"
        );
        self.log("load");
    }

    /// `verify` of the emulator's D1 (through its API) and Vectorize.
    pub(super) fn verify(&self, when: &str) {
        self.verify_target(when, &["--d1-database-id", "db1", "--vectorize-index", INDEX, "--queries", "5"]);
    }

    fn verify_target(&self, when: &str, target: &[&str]) {
        let report = self.path(&format!("verify-{}", when.replace(' ', "-")));
        let config = self.config.display().to_string();
        let mut args = vec!["verify", "--config", &config, "--partition-mib", "1", "--report-dir", &report];
        args.extend(target);
        let (code, v, o) = self.pgflare(&args);
        assert_eq!(code, Some(0), "verify {when}: {:#}\n{}", v["verdict"], text(&o));
        assert_eq!(v["verdict"]["status"], "consistent", "{v:#}");
        if target.contains(&"--vectorize-index") {
            assert_eq!(v["queries"]["passed"], true, "{:#}", v["queries"]);
            // The schema's own query shapes (pgflare.edits.toml), with sampled queries.
            let shapes = self.toml.get("queries").and_then(|q| q.as_array()).map_or(0, Vec::len);
            assert_eq!(
                v["query_shapes"]["shapes"].as_array().map_or(0, Vec::len),
                shapes,
                "{:#}",
                v["query_shapes"]
            );
            for s in v["query_shapes"]["shapes"].as_array().into_iter().flatten() {
                assert_eq!(s["passed"], true, "verify {when}: query shape {}: {s:#}", s["name"]);
                assert_eq!(s["queries"], 5, "{s:#}");
            }
        }
        for t in self.tables() {
            let report =
                v["tables"].as_array().expect("t").iter().find(|r| r["table"] == t.qualified.as_str());
            let report = report.unwrap_or_else(|| panic!("verify {when} reports {}: {v:#}", t.qualified));
            let live = self.live_rows(&t);
            for target in report["targets"].as_array().expect("targets") {
                let n = (target["source_rows"].as_u64(), target["target_rows"].as_u64());
                assert_eq!(n.0, n.1, "verify {when}: {} {}: {target:#}", t.qualified, target["kind"]);
                assert_eq!(target["differences"], json!([]), "{target:#}");
                assert_eq!(target["pending_sync"], 0, "{target:#}");
                if target["kind"] == "d1" {
                    assert_eq!(n.0, Some(live), "verify {when} compares every live row of {}", t.qualified);
                }
            }
        }
        self.log(&format!("verify {when}"));
    }

    /// The day of changes; returns zoo_data.py's summary: how many live
    /// keys each table lost (`deleted`) and soft-deleted (`soft_deleted`).
    pub(super) fn day(&self) -> Value {
        let o = python("zoo_data.py", &["day", self.spec.name], Some(&self.db.url));
        assert!(o.status.success(), "zoo_data.py day\n{}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
        let deleted = counts(&v["deleted"]);
        assert!(deleted.values().sum::<u64>() >= 100, "a day with 100+ deletes: {v}");
        self.log(&format!("day of changes: {v}"));
        v
    }

    /// `sync --once`.
    pub(super) fn sync(&self, day: &Value) {
        let (deleted, soft) = (counts(&day["deleted"]), counts(&day["soft_deleted"]));
        let work = self.path("sync-work");
        let (code, v, o) = self.pgflare(&[
            "sync",
            "--once",
            "--config",
            &self.config.display().to_string(),
            "--target",
            "api",
            "--d1-database-id",
            "db1",
            "--vectorize-index",
            INDEX,
            "--partition-mib",
            "1",
            "--work-dir",
            &work,
        ]);
        assert_eq!(code, Some(0), "sync\n{}", text(&o));
        assert_eq!(v["complete"], true, "{v:#}");
        for t in self.tables() {
            let r = v["tables"].as_array().expect("t").iter().find(|r| r["table"] == t.qualified.as_str());
            let r = r.unwrap_or_else(|| panic!("sync reports {}: {v:#}", t.qualified));
            assert_eq!(r["rows_hard_deleted"].as_u64(), deleted.get(&t.qualified).copied(), "{r:#}");
            // Exactly the live rows the day soft-deleted, or archived the
            // document of: a soft-deleted row that merely changed (an
            // archived document whose author left: SET NULL touched it) was
            // never in D1, nothing to count.
            let want_soft = soft.get(&t.qualified).copied().unwrap_or(0);
            let removed = |k: &str| r[k].as_u64().expect("a count");
            assert_eq!(
                removed("rows_soft_deleted") + removed("rows_hidden_by_deleted_parent"),
                want_soft,
                "{r:#}"
            );
        }
        assert!(v["rows_deleted"].as_u64().expect("n") >= 100, "{v:#}");
        assert!(v["vectors_deleted"].as_u64().expect("n") > 0, "{v:#}");
        self.log("sync");
    }

    /// `load --target files`: the SQL files applied in the manifest's
    /// order by an independent reader (Python's sqlite3, foreign keys on),
    /// that database verified, the NDJSON vectors compared with the source.
    pub(super) fn files(&self) {
        let out = self.path("files");
        let (code, v, o) = self.pgflare(&[
            "load",
            "--config",
            &self.config.display().to_string(),
            "--target",
            "files",
            "--out",
            &out,
            "--partition-mib",
            "1",
            "--state-dir",
            &self.path("files-state"),
        ]);
        assert_eq!(code, Some(0), "load --target files\n{}", text(&o));
        assert_eq!(v["complete"], true, "{v:#}");
        let sqlite = self.path("files.sqlite");
        apply_d1_sql(&sqlite, &out);
        self.verify_target("of the files", &["--sqlite", &sqlite, "--no-vectorize"]);
        self.compare_vectorize(&["--ndjson", &format!("{out}/vectorize")]);
        self.log("files");
    }

    /// Vectorize (the index, or NDJSON files) against the source with an
    /// independent reader; `target` is compare_vectorize.py's `--api ...`
    /// or `--ndjson DIR`.
    pub(super) fn compare_vectorize(&self, target: &[&str]) {
        let t = self.vector_table();
        let id = t.list("primary_key").join(",");
        // Rows that are not live have no vector.
        let skip = self.db.query_one(&format!(
            "SELECT coalesce(string_agg(\"{id}\"::text, ','), '') FROM {} WHERE NOT ({})",
            t.qualified,
            self.live(&t)
        ));
        let (vector, metadata) =
            (t.str("vector").expect("v").to_string(), t.list("vector_metadata").join(","));
        let mut args = vec![self.db.url.as_str(), &t.qualified, "--vector", &vector, "--id", &id];
        args.extend(["--metadata", &metadata, "--skip", &skip]);
        if let Some(ns) = t.str("vector_namespace") {
            args.extend(["--namespace", ns]);
        }
        // The checker reads the JSON metadata paths init proposed from the
        // configuration itself.
        let config = self.config.display().to_string();
        args.extend(["--config", &config]);
        args.extend(target);
        let o = python_env("compare_vectorize.py", &args, &[("CLOUDFLARE_API_TOKEN", &self.emu.token)]);
        assert!(o.status.success(), "compare_vectorize.py\n{}", text(&o));
        self.log("compare_vectorize");
    }

    /// `archive`, `archive verify --against-source`, compare_archive.py.
    pub(super) fn archive(&self) {
        let out = self.path("archive");
        let mut args = vec!["archive", "--schema", self.spec.schema, "--out", &out, "--partition-mib", "1"];
        args.extend(self.excludes());
        let (code, v, o) = self.pgflare(&args);
        assert_eq!(code, Some(0), "archive\n{}", text(&o));
        for t in v["tables"].as_array().expect("tables") {
            let name = t["table"].as_str().expect("t");
            let rows = self.db.count(&format!("SELECT count(*) FROM {name}"));
            assert_eq!(t["rows"].as_u64(), Some(rows), "archive of {name}: {t:#}");
        }
        let (code, v, o) = self.pgflare(&["archive", "verify", &out, "--against-source"]);
        assert_eq!(code, Some(0), "archive verify\n{}", text(&o));
        assert_eq!((&v["problems"], &v["source_checked"]), (&json!([]), &json!(true)), "{v:#}");
        let o = python("compare_archive.py", &["--database-url", &self.db.url, "--archive", &out], None);
        assert!(o.status.success(), "compare_archive.py\n{}", text(&o));
        self.log("archive");
    }
}

/// Applies `edits` to init's configuration: top-level tables merge key by
/// key, `[[tables]]` entries are matched by name.
fn apply_edits(cfg: &mut toml::Table, edits: toml::Table) {
    for (key, value) in edits {
        match (key.as_str(), value) {
            ("tables", toml::Value::Array(entries)) => {
                let tables = cfg.get_mut("tables").and_then(|t| t.as_array_mut()).expect("[[tables]]");
                for e in entries {
                    let e = e.as_table().expect("a [[tables]] entry").clone();
                    let name = e["name"].as_str().expect("an edit names its table");
                    let t = tables
                        .iter_mut()
                        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(name))
                        .unwrap_or_else(|| panic!("edits name table {name}, which init did not propose"));
                    t.as_table_mut().expect("table").extend(e);
                }
            }
            (_, toml::Value::Table(section)) => {
                let target = cfg.entry(key).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                target.as_table_mut().expect("a section").extend(section);
            }
            (_, v) => {
                cfg.insert(key, v);
            }
        }
    }
}
