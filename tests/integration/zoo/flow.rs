//! The schema zoo's flow, the same for every schema: seed realistic rows
//! (tests/py/zoo_data.py), `inspect`, `init` (its pgflare.toml as proposed,
//! plus the schema's documented edits), apply init's D1 migration through
//! the D1 API as `wrangler d1 migrations apply` would, `load --target api`
//! into the emulator (D1 + Vectorize), `verify`, `load --target files`
//! applied by an independent reader and verified, a day of changes with 100+
//! deletes, `sync --once`, `verify`, an independent check of Vectorize
//! (compare_vectorize.py), `archive` and `archive verify --against-source`
//! with an independent Parquet reader (compare_archive.py). Every step's
//! exit code and key counts are asserted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;
use std::time::Instant;

use serde_json::Value;

use crate::common::*;

/// One schema of the zoo (fixtures/zoo/NAME).
pub struct Spec {
    pub name: &'static str,
    /// The Postgres schema its tables are in (`--schema`).
    pub schema: &'static str,
    /// Rows over D1's 100,000-byte statement limit that `inspect` must note.
    pub long_rows: u64,
    /// `table.column`s of a type pgflare refuses, which the user leaves out
    /// (`--exclude`) after `inspect` lists them with that way out.
    pub exclude: &'static [&'static str],
}

pub(super) const INDEX: &str = "zoo";

pub(super) struct Flow<'a> {
    pub(super) spec: &'a Spec,
    pub(super) db: TestDb,
    pub(super) emu: Emulator,
    pub(super) dir: tempfile::TempDir,
    pub(super) config: PathBuf,
    /// The parsed configuration the flow uses (init's proposal + edits).
    pub(super) toml: toml::Table,
    /// Per table, the SQL condition a live row meets (zoo_data.py's: not
    /// soft-deleted and no soft-deleted parent), "true" when all are.
    pub(super) live: BTreeMap<String, String>,
    started: Instant,
}

/// Runs the whole flow for `spec`.
pub fn run(spec: &Spec) {
    let mut f = Flow::new(spec);
    let seeded = f.seed();
    f.inspect(&seeded);
    f.init();
    f.apply_migration();
    f.load(&seeded);
    f.verify("after load");
    f.files();
    let day = f.day();
    f.sync(&day);
    f.verify("after sync");
    f.compare_vectorize(&["--api", &f.emu.base_url, &f.emu.account, INDEX]);
    f.archive();
}

impl<'a> Flow<'a> {
    fn new(spec: &'a Spec) -> Flow<'a> {
        let db = TestDb::new(&format!("zoo_{}", spec.name));
        let emu = Emulator::start(&[]);
        let dir = temp_dir(&format!("zoo-{}", spec.name));
        let config = dir.path().join("pgflare.toml");
        let (toml, live) = (toml::Table::new(), BTreeMap::new());
        Flow { spec, db, emu, dir, config, toml, live, started: Instant::now() }
    }

    pub(super) fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    pub(super) fn log(&self, what: &str) {
        eprintln!("zoo {}: {what} ({:.1} s)", self.spec.name, self.started.elapsed().as_secs_f64());
    }

    /// `pgflare --json ARGS` against the source and the emulator.
    pub(super) fn pgflare(&self, args: &[&str]) -> (Option<i32>, Value, Output) {
        let o = self.emu.command(&self.db).arg("--json").args(args).output().expect("run pgflare");
        let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        (o.status.code(), v, o)
    }

    fn zoo_data(&self, step: &str) -> Value {
        let o = python("zoo_data.py", &[step, self.spec.name], Some(&self.db.url));
        assert!(o.status.success(), "zoo_data.py {step} {}\n{}", self.spec.name, text(&o));
        serde_json::from_slice(&o.stdout).expect("zoo_data.py prints JSON")
    }

    fn seed(&mut self) -> BTreeMap<String, u64> {
        let v = self.zoo_data("seed");
        let live = v["live"].as_object().expect("live conditions");
        self.live = live.iter().map(|(t, c)| (t.clone(), c.as_str().expect("SQL").to_string())).collect();
        self.log("seeded");
        counts(&v["rows"])
    }

    /// `--exclude T.C` for each column the schema leaves out.
    pub(super) fn excludes(&self) -> Vec<&'static str> {
        self.spec.exclude.iter().flat_map(|c| ["--exclude", c]).collect()
    }
}

/// A JSON object of counts as a map.
pub(super) fn counts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object().expect("an object").iter().map(|(k, n)| (k.clone(), n.as_u64().expect("a count"))).collect()
}
