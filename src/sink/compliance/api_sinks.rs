//! The compliance cases of the API sinks, against the crate's emulator of
//! the Cloudflare API started in process (one per run, so each run starts
//! empty). What they wrote is read back around pgflare's client: the D1
//! database file the emulator keeps, opened with rusqlite, and the
//! Vectorize index through plain HTTP (`list`, then `get_by_ids`).
//!
//! Not covered here: the D1 import flow, which starts only past 1 MiB of
//! SQL (`import_min_bytes`); these rows are a few KB and go through
//! `query`. The client's import is tested in `cloudflare::d1_tests`.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::runtime::Runtime;

use super::{batch_of, check, readers, rows, Bytes, Out, Subject};
use crate::batch::sink::SinkFactory;
use crate::cloudflare::client::ApiSettings;
use crate::cloudflare::limits::VECTORIZE_MAX_UPLOAD_BYTES;
use crate::cloudflare::vectorize::IndexConfig;
use crate::cloudflare::{Api, Vectorize, D1};
use crate::config::mapping::VectorMappings;
use crate::emulator::{Emulator, EmulatorConfig};
use crate::sink::d1::api::D1ApiConfig;
use crate::sink::d1::render::D1Mappings;
use crate::sink::test_table::mapping;
use crate::sink::vectorize::api::VectorizeApiConfig;

const TOKEN: &str = "compliance-token";

/// A runtime (the sinks block on it from the test's thread) and the
/// emulator of the current run.
struct Cloud {
    rt: Runtime,
    run: Option<(Emulator, TempDir, Arc<Api>)>,
}

impl Cloud {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
        Cloud { rt: rt.expect("runtime"), run: None }
    }

    /// A fresh emulator with the D1 database `db1`, and a client of it.
    fn fresh(&mut self) -> Arc<Api> {
        self.run = None;
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = EmulatorConfig::for_tests(dir.path(), TOKEN);
        let emu = self.rt.block_on(Emulator::start(cfg)).expect("emulator");
        let settings = ApiSettings::for_tests(&emu.base_url, TOKEN);
        let api = Arc::new(Api::new(settings).expect("api"));
        self.run = Some((emu, dir, api.clone()));
        api
    }

    fn data_dir(&self) -> PathBuf {
        self.run.as_ref().expect("a run").1.path().to_path_buf()
    }

    /// `POST` or `GET` on the emulator, without pgflare's client.
    fn call(&self, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/accounts/acct/{path}", self.run.as_ref().expect("a run").0.base_url);
        let http = reqwest::Client::new();
        let req = match body {
            Some(b) => http.post(url).json(&b),
            None => http.get(url),
        };
        let answer: reqwest::Result<Value> =
            self.rt.block_on(async { req.bearer_auth(TOKEN).send().await?.json().await });
        answer.expect("an answer")["result"].clone()
    }
}

struct D1Api(Cloud, Option<Arc<D1>>);

impl D1Api {
    fn run_sql(&self, sql: &str) {
        let d1 = self.1.as_ref().expect("a run");
        self.0.rt.block_on(d1.query("test", sql)).expect("sql");
    }
}

impl Subject for D1Api {
    fn name(&self) -> String {
        "D1 api".into()
    }
    fn fresh(&mut self, roll: bool) -> Arc<dyn SinkFactory> {
        let d1 = Arc::new(D1::new(self.0.fresh(), "db1"));
        self.1 = Some(d1.clone());
        self.run_sql(readers::D1_TABLE);
        let mut c = D1ApiConfig::new(d1, D1Mappings::default(), self.0.rt.handle().clone());
        if roll {
            // Send after every batch, in requests of a few statements.
            (c.import_bytes, c.query_bytes) = (1, 600);
        }
        Arc::new(c)
    }
    fn rows(&self) -> Option<Vec<Out>> {
        Some(readers::sqlite_file_rows(&self.0.data_dir().join("d1").join("db1.sqlite")))
    }
    fn bytes(&self) -> Bytes {
        Bytes::Sql
    }
    fn sabotage(&mut self) -> Option<RecordBatch> {
        self.run_sql("DROP TABLE t");
        None
    }
    fn repair(&mut self) {
        self.run_sql(readers::D1_TABLE);
    }
}

struct VectorizeApi(Cloud);

impl Subject for VectorizeApi {
    fn name(&self) -> String {
        "Vectorize api".into()
    }
    fn fresh(&mut self, roll: bool) -> Arc<dyn SinkFactory> {
        let index = Arc::new(Vectorize::new(self.0.fresh(), "vi"));
        let want = IndexConfig { dimensions: 3, metric: "cosine".into() };
        self.0.rt.block_on(index.ensure(&want, true)).expect("index");
        // No dimension in the mapping: a wrong one is the index's to refuse.
        let mut mappings = VectorMappings::default();
        mappings.0.insert("public.t".into(), mapping(None));
        Arc::new(VectorizeApiConfig {
            index,
            mappings,
            vectors_per_request: if roll { 4 } else { 5000 },
            max_request_bytes: VECTORIZE_MAX_UPLOAD_BYTES,
            runtime: self.0.rt.handle().clone(),
            tails: None,
        })
    }
    fn rows(&self) -> Option<Vec<Out>> {
        None
    }
    fn vectors(&self) -> Option<Vec<Out>> {
        let listed = self.0.call("vectorize/v2/indexes/vi/list?count=1000", None);
        assert_eq!(listed["isTruncated"], false, "one page");
        let ids: Vec<Value> =
            listed["vectors"].as_array().expect("vectors").iter().map(|v| v["id"].clone()).collect();
        let mut out: Vec<Out> = ids
            .chunks(20)
            .flat_map(|chunk| {
                let got = self.0.call("vectorize/v2/indexes/vi/get_by_ids", Some(json!({"ids": chunk})));
                got.as_array().expect("vectors").iter().map(readers::vector_out).collect::<Vec<_>>()
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Some(out)
    }
    fn bytes(&self) -> Bytes {
        Bytes::Zero
    }
    /// A vector of 4 dimensions for an index of 3: Vectorize refuses it.
    fn sabotage(&mut self) -> Option<RecordBatch> {
        let mut bad = rows()[30..].to_vec();
        bad[0].values = Some(vec![0f32.to_bits(); 4]);
        Some(batch_of(&bad))
    }
}

#[test]
fn the_d1_api_keeps_the_sink_contract() {
    check(&mut D1Api(Cloud::new(), None));
}

#[test]
fn the_vectorize_api_keeps_the_sink_contract() {
    check(&mut VectorizeApi(Cloud::new()));
}
