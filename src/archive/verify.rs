//! `pgflare archive verify`: proves an archive (of Postgres or of
//! Cloudflare) against its manifest and, when a source is given, against
//! the source row by row. Offline, every
//! file's size, blake3, schema, row count and row digest are checked (files
//! in parallel). Against the source, the table is read at a fresh snapshot
//! and compared by primary-key buckets; only differing buckets are read
//! again (split into finer parts first when they hold many rows, see
//! [`crate::digest::buckets::Refinement`]), and each difference is named
//! by file, row and key.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::Serialize;

use crate::batch::collect::take;
use crate::batch::TableSpec;
use crate::digest::buckets::{differing_parts, refinement, rows_in, Buckets, DEFAULT_BUCKETS};
use crate::digest::pass::{absorb_at, table_sinks, Pass, Rows, Side};
use crate::digest::{row_digests, DigestSum};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::source::archive::manifest::{Manifest, ManifestTable};
use crate::source::archive::read_parquet;
use crate::source::{self, introspect, ReadOptions, Selection, Snapshot, Source, SplitOptions, TableJob};

/// Differences listed per table before the rest are only counted.
const LIST_LIMIT: usize = 100;

#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub table: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 0-based row index within `file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub kind: &'static str,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub archive: String,
    pub source_checked: bool,
    pub tables_checked: usize,
    pub files_checked: usize,
    pub rows_checked: u64,
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    pub unlisted_problems: u64,
    /// How the comparison with the source went where it was not plain
    /// (differing buckets split into finer parts, say).
    pub notes: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.unlisted_problems == 0
    }
}

/// What reading one file gave.
struct FileCheck {
    problems: Vec<Problem>,
    rows: u64,
    digest: DigestSum,
    buckets: Buckets,
}

fn problem(table: &str, file: Option<&str>, kind: &'static str, message: String) -> Problem {
    Problem { table: table.into(), file: file.map(str::to_string), row: None, key: None, kind, message }
}

fn check_file(
    dir: &Path,
    table: &ManifestTable,
    f: &crate::batch::sink::FileReport,
    buckets: usize,
) -> FileCheck {
    let name = table.spec.qualified();
    let path = dir.join(&f.path);
    let mut out = FileCheck {
        problems: Vec::new(),
        rows: 0,
        digest: DigestSum::default(),
        buckets: Buckets::new(buckets),
    };
    let mut fail = |kind, msg: String| out.problems.push(problem(&name, Some(&f.path), kind, msg));
    let bytes = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) => {
            fail("missing_file", format!("cannot read {}: {e}", path.display()));
            return out;
        }
    };
    if bytes != f.bytes {
        fail("size_mismatch", format!("file has {bytes} bytes, the manifest says {}", f.bytes));
    }
    match File::open(&path)
        .and_then(|mut file| blake3::Hasher::new().update_reader(&mut file).map(|h| h.finalize()))
    {
        Ok(h) if h.to_hex().as_str() == f.blake3 => {}
        Ok(h) => fail(
            "hash_mismatch",
            format!("blake3 is {}, the manifest says {}: the file was altered", h.to_hex(), f.blake3),
        ),
        Err(e) => fail("unreadable", e.to_string()),
    }
    // Archives written before the files declared nullable vector elements
    // (see writer::file_schema) carry the table's own schema: both verify.
    let expected = [crate::source::archive::file_schema(&table.spec), table.spec.arrow_schema()];
    let key = table.spec.key_indices();
    let mut rows = 0u64;
    let mut digest = DigestSum::default();
    let mut sums = Buckets::new(buckets);
    let read = read_parquet(&path, |batch, _| {
        let got = batch.schema();
        let same = expected.iter().any(|want| {
            got.fields().len() == want.fields().len()
                && got
                    .fields()
                    .iter()
                    .zip(want.fields())
                    .all(|(a, b)| a.name() == b.name() && a.data_type().equals_datatype(b.data_type()))
        });
        if !same {
            return Err(Error::Internal(format!("schema differs from the manifest's: {got}")));
        }
        for d in row_digests(batch)? {
            digest.add(&d);
        }
        sums.add_batch(batch, &key)?;
        rows += batch.num_rows() as u64;
        Ok(())
    });
    if let Err(e) = read {
        fail("unreadable", format!("cannot read the rows: {e}"));
        return out;
    }
    if rows != f.rows {
        fail("row_count", format!("file has {rows} rows, the manifest says {}", f.rows));
    }
    if digest.hex() != f.row_digest {
        fail(
            "content_mismatch",
            "the rows' combined digest differs from the manifest's: row contents were altered".into(),
        );
    }
    out.rows = rows;
    out.digest = digest;
    out.buckets = sums;
    out
}

/// Verifies the archive in `dir`; against `source` too when given.
pub async fn verify(
    dir: &Path,
    source: Option<&Source>,
    opts: ReadOptions,
    progress: &Progress,
) -> Result<VerifyReport> {
    let manifest = Manifest::read(dir)?;
    let mut report = VerifyReport { archive: dir.display().to_string(), ..VerifyReport::default() };
    let mut archive_buckets: HashMap<String, Buckets> = HashMap::new();
    // Side tables (an archive of Cloudflare's `_vectorize`) are checked
    // like the others; only the source's tables are compared with it.
    for table in manifest.tables.iter().chain(&manifest.side_tables) {
        let name = table.spec.qualified();
        let bar = progress.rows(&format!("{name} (archive)"), Some(table.rows));
        let checks: Vec<FileCheck> = table
            .files
            .par_iter()
            .map(|f| {
                let c = check_file(dir, table, f, DEFAULT_BUCKETS);
                bar.inc(c.rows);
                c
            })
            .collect();
        bar.finish();
        let mut total = DigestSum::default();
        let mut buckets = Buckets::new(DEFAULT_BUCKETS);
        for c in checks {
            report.rows_checked += c.rows;
            total.merge(&c.digest);
            buckets.merge(&c.buckets);
            report.problems.extend(c.problems);
        }
        report.files_checked += table.files.len();
        report.tables_checked += 1;
        if total.rows != table.rows {
            report.problems.push(problem(
                &name,
                None,
                "row_count",
                format!("{} rows in the files, the manifest says {}", total.rows, table.rows),
            ));
        }
        if total.hex() != table.row_digest {
            report.problems.push(problem(
                &name,
                None,
                "content_mismatch",
                "the table's combined row digest differs from the manifest's".into(),
            ));
        }
        archive_buckets.insert(name, buckets);
    }
    if let Some(src) = source {
        report.source_checked = true;
        against_source(dir, &manifest, src, &archive_buckets, opts, progress, &mut report).await?;
    }
    Ok(report)
}

/// The source columns of `spec`'s table that the archive does not hold
/// (left out with `--exclude`, or added since), as `schema.table.column`:
/// they are not read again, so a type pgflare cannot read there (the reason
/// to exclude it) is no problem. Empty when the table is gone (introspection
/// then reports it).
async fn not_archived(conn: &mut crate::source::SourceConn, spec: &TableSpec) -> Result<Vec<String>> {
    let table =
        format!("{}.{}", crate::batch::quote_ident(&spec.schema), crate::batch::quote_ident(&spec.name));
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_attribute a
          WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(&table)
    .fetch_all(conn)
    .await
    .map_err(Error::db(format!("reading the columns of {table}")))?;
    Ok(names
        .into_iter()
        .filter(|n| spec.column(n).is_none())
        .map(|n| format!("{}.{}.{n}", spec.schema, spec.name))
        .collect())
}

/// A manifest table resolved against the source: its spec, the
/// partitions to read it by, and its manifest entry.
type Planned<'m> = (Arc<TableSpec>, Vec<source::Partition>, &'m ManifestTable);

/// Reads of the source at the verify's snapshot.
struct SourceReads<'a> {
    src: &'a Source,
    snapshot: String,
    opts: ReadOptions,
    progress: &'a Progress,
}

impl SourceReads<'_> {
    /// The tables' rows folded by `pass` over `n` buckets, per table.
    async fn read(
        &self,
        specs: &[Planned<'_>],
        label: &str,
        n: usize,
        pass: Pass,
    ) -> Result<HashMap<String, Side>> {
        let jobs = specs
            .iter()
            .map(|(s, p, t)| TableJob {
                table: s.clone(),
                partitions: p.clone(),
                progress: self.progress.rows(&format!("{} ({label})", s.qualified()), Some(t.rows)),
            })
            .collect();
        let out = Arc::new(Mutex::new(HashMap::new()));
        let sinks = Arc::new(table_sinks(n, pass, out.clone()));
        source::read_all(self.src, &self.snapshot, jobs, sinks, self.opts).await?;
        take(&out)
    }
}

async fn against_source(
    dir: &Path,
    manifest: &Manifest,
    src: &Source,
    archive: &HashMap<String, Buckets>,
    opts: ReadOptions,
    progress: &Progress,
    report: &mut VerifyReport,
) -> Result<()> {
    let mut snapshot = Snapshot::export(src).await?;
    let specs = plan_tables(&mut snapshot, manifest, report).await?;
    let reads = SourceReads { src, snapshot: snapshot.info.id.clone(), opts, progress };
    let sums = reads.read(&specs, "source", DEFAULT_BUCKETS, Pass::Sum).await?;

    // Differing buckets per table, with the rows they hold on either side.
    let mut wanted: HashMap<String, (BTreeSet<usize>, u64)> = HashMap::new();
    for (spec, _, _) in &specs {
        let name = spec.qualified();
        let empty = Buckets::new(DEFAULT_BUCKETS);
        let src_b = sums.get(&name).and_then(|s| s.buckets.as_ref()).unwrap_or(&empty);
        let arc_b = archive.get(&name).unwrap_or(&empty);
        let diff = src_b.differing(arc_b);
        let rows = rows_in(&diff, &[src_b, arc_b]);
        if !diff.is_empty() {
            wanted.insert(name, (diff, rows));
        }
    }
    // Drill down a table at a time.
    for planned in specs {
        if let Some((diff, rows)) = wanted.get(&planned.0.qualified()) {
            drill(&reads, dir, planned, diff, *rows, report).await?;
        }
    }
    snapshot.release().await?;
    Ok(())
}

/// Resolves each manifest table against the source (a table gone or
/// whose columns changed type is a problem, and is not compared).
async fn plan_tables<'m>(
    snapshot: &mut Snapshot,
    manifest: &'m Manifest,
    report: &mut VerifyReport,
) -> Result<Vec<Planned<'m>>> {
    let mut specs = Vec::new();
    for t in &manifest.tables {
        let sel = Selection {
            schema: t.spec.schema.clone(),
            tables: vec![t.spec.qualified()],
            casts: t
                .spec
                .columns
                .iter()
                .filter_map(|c| Some((format!("{}.{}", t.spec.name, c.name), c.cast.clone()?)))
                .collect(),
            excludes: not_archived(snapshot.conn(), &t.spec).await?,
        };
        let found = match introspect(snapshot.conn(), &sel).await {
            Ok(mut v) => v.remove(0),
            Err(e) => {
                report.problems.push(problem(&t.spec.qualified(), None, "source_table", e.to_string()));
                continue;
            }
        };
        let changed: Vec<String> = t
            .spec
            .columns
            .iter()
            .filter(|c| found.spec.column(&c.name).is_none_or(|s| s.ty != c.ty))
            .map(|c| c.name.clone())
            .collect();
        if !changed.is_empty() {
            report.problems.push(problem(
                &t.spec.qualified(),
                None,
                "schema_changed",
                format!(
                    "columns {} are gone or changed type in the source since the archive",
                    changed.join(", ")
                ),
            ));
            continue;
        }
        let parts = source::partition::plan(
            snapshot.conn(),
            &t.spec,
            found.total_bytes,
            SplitOptions { target_bytes: 32 << 20, max_partitions: 256 },
        )
        .await?;
        specs.push((Arc::new(t.spec.clone()), parts, t));
    }
    Ok(specs)
}

/// Compares the rows of a table's differing buckets on both sides, each
/// difference named by file, row and key. Buckets that hold many rows are
/// split into finer parts first, and only the differing parts' rows kept.
async fn drill(
    reads: &SourceReads<'_>,
    dir: &Path,
    planned: Planned<'_>,
    diff: &BTreeSet<usize>,
    rows: u64,
    report: &mut VerifyReport,
) -> Result<()> {
    let (spec, table) = (planned.0.clone(), planned.2);
    let name = spec.qualified();
    let one = [planned];
    let (one, name_ref) = (&one, &name);
    let read_source = |n: usize, pass: Pass| async move {
        Ok::<Side, Error>(reads.read(one, "drill-down", n, pass).await?.remove(name_ref).unwrap_or_default())
    };
    let read_archive = |n: usize, pass: &Pass| -> Result<Side> {
        let (key, mut side) = (spec.key_indices(), Side::default());
        for f in &table.files {
            read_parquet(&dir.join(&f.path), |batch, first| {
                let at = |r: usize| format!("{}#{}", f.path, first + r as u64);
                absorb_at(&mut side, batch, &key, n, pass, &[], &at)
            })?;
        }
        Ok(side)
    };
    let (n, buckets) = match refinement(rows, diff, DEFAULT_BUCKETS) {
        None => (DEFAULT_BUCKETS, diff.clone()),
        Some(r) => {
            let (n, pass) = (r.n, Pass::Refine(Arc::new(r.clone())));
            let from_source = read_source(n, pass.clone()).await?;
            let differ = differing_parts(&from_source.parts, &read_archive(n, &pass)?.parts);
            report.notes.push(format!("{name}: {}", r.describe(rows, differ.len())));
            (n, differ)
        }
    };
    let want = Pass::Collect(Arc::new(buckets));
    let from_source = read_source(n, want.clone()).await?.rows;
    diff_rows(&name, &from_source, &read_archive(n, &want)?.rows, report);
    Ok(())
}

fn diff_rows(table: &str, source: &Rows, archived: &Rows, report: &mut VerifyReport) {
    let mut found = Vec::new();
    let split = |loc: &str| -> (Option<String>, Option<u64>) {
        match loc.rsplit_once('#') {
            Some((f, r)) => (Some(f.to_string()), r.parse().ok()),
            None => (None, None),
        }
    };
    for (id, a) in archived {
        let (file, row) = split(&a.location);
        match source.get(id) {
            None => found.push(Problem {
                table: table.into(),
                file,
                row,
                key: Some(a.key.clone()),
                kind: "extra_row",
                message: format!(
                    "row {} ({}) is in the archive but not in the source",
                    row.unwrap_or(0),
                    a.key
                ),
            }),
            Some(s) if s.digest != a.digest => found.push(Problem {
                table: table.into(),
                file,
                row,
                key: Some(a.key.clone()),
                kind: "changed_row",
                message: format!("row {} ({}) differs from the source", row.unwrap_or(0), a.key),
            }),
            Some(_) => {}
        }
    }
    for (id, s) in source {
        if !archived.contains_key(id) {
            found.push(Problem {
                table: table.into(),
                file: None,
                row: None,
                key: Some(s.key.clone()),
                kind: "missing_row",
                message: format!("{} is in the source but not in the archive", s.key),
            });
        }
    }
    found.sort_by(|a, b| (&a.file, a.row, &a.key).cmp(&(&b.file, b.row, &b.key)));
    let listed = found.len().min(LIST_LIMIT);
    report.unlisted_problems += (found.len() - listed) as u64;
    report.problems.extend(found.into_iter().take(listed));
}
