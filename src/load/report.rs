//! What a load reports and leaves behind besides the rows: the column
//! widths its dry run samples, the per-table summary (rows, bytes, vectors
//! and the rows Vectorize would refuse), and the `manifest.json` of the
//! files target.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row as _;

use super::state::LoadState;
use crate::batch::sink::VectorReport;
use crate::error::{Error, Result};
use crate::plan::{self, TablePlan};
use crate::source::{Snapshot, TableInfo};

/// One table's line of the load summary.
#[derive(Clone, Debug, Serialize)]
pub struct TableSummary {
    pub table: String,
    pub d1_table: String,
    /// Rows in the target from this load, all runs together.
    pub rows: u64,
    /// Rows written by this run.
    pub rows_this_run: u64,
    pub bytes: u64,
    pub partitions: usize,
    /// Ranges a previous run had finished, skipped now.
    pub partitions_skipped: usize,
    /// Rows left out because they are soft-deleted, and because a parent
    /// (along the foreign keys, transitively) is: D1 would refuse them.
    pub rows_soft_deleted: u64,
    pub rows_hidden_by_deleted_parent: u64,
    /// What went to Vectorize, all runs together (tables with a vector).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vectors: Option<VectorReport>,
    /// Foreign keys on a cycle set after the rows (tables with links):
    /// rows whose links were set, and those left unset because the row
    /// they point at is not in D1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<crate::sink::d1::linker::LinkReport>,
}

/// Average text width of each D1 column over a sample of about 2,000 rows
/// (`octet_length(col::text)`: close to what D1 stores, since D1 keeps
/// timestamps, JSON and vectors as text; `pg_stats` would count a TOASTed
/// vector as its 18-byte pointer).
pub async fn column_widths(
    snapshot: &mut Snapshot,
    infos: &[TableInfo],
) -> Result<BTreeMap<String, BTreeMap<String, i64>>> {
    let mut out = BTreeMap::new();
    for i in infos {
        let cols: Vec<&str> = i.spec.columns.iter().map(|c| c.name.as_str()).collect();
        if cols.is_empty() {
            continue;
        }
        let rows = i.row_estimate.unwrap_or(0).max(1) as f64;
        let pct = (2000.0 / rows * 100.0).clamp(0.01, 100.0);
        let avgs = cols
            .iter()
            .map(|c| {
                format!("coalesce(avg(octet_length({}::text)), 0)::float8", crate::batch::quote_ident(c))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sample = if pct >= 100.0 { String::new() } else { format!(" TABLESAMPLE SYSTEM ({pct:.4})") };
        let sql = format!("SELECT {avgs} FROM (SELECT * FROM {}{sample} LIMIT 5000) s", i.spec.sql_name());
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *snapshot.conn())
            .await
            .map_err(Error::db(format!("sampling column widths of {}", i.spec.qualified())))?;
        let widths =
            cols.iter().enumerate().map(|(k, c)| (c.to_string(), row.get::<f64, _>(k).round() as i64));
        out.insert(i.spec.qualified(), widths.collect());
    }
    Ok(out)
}

pub fn table_summaries(
    state: &LoadState,
    this_run: &BTreeMap<String, u64>,
    done_before: &BTreeMap<String, usize>,
) -> Vec<TableSummary> {
    state
        .tables
        .iter()
        .map(|t| TableSummary {
            table: t.table.clone(),
            d1_table: t.d1_table.clone(),
            rows: t.partitions.iter().map(|p| p.rows).sum(),
            rows_this_run: this_run.get(&t.table).copied().unwrap_or(0),
            bytes: t.partitions.iter().map(|p| p.bytes).sum(),
            partitions: t.partitions.len(),
            partitions_skipped: done_before.get(&t.table).copied().unwrap_or(0),
            links: {
                let mut l = crate::sink::d1::linker::LinkReport::default();
                t.partitions.iter().for_each(|p| l.merge(p.links.clone()));
                l.files.clear();
                (!l.is_empty()).then_some(l)
            },
            rows_soft_deleted: t.rows_soft_deleted,
            rows_hidden_by_deleted_parent: t.rows_hidden_by_deleted_parent,
            vectors: {
                let mut v = crate::batch::sink::VectorReport::default();
                t.partitions.iter().for_each(|p| v.merge(p.vectors.clone()));
                v.files.clear();
                (!v.is_empty()).then_some(v)
            },
        })
        .collect()
}

/// `manifest.json` of the files target: every file with its hash and rows,
/// and the order to apply them in (schema, then parents before children,
/// then the link files that set foreign keys on a cycle).
/// NDJSON files (`vectors_dir`, when vectors went to files) are listed per
/// table with their paths relative to `dir`.
pub fn write_files_manifest(
    dir: &std::path::Path,
    state: &LoadState,
    waves: &[Vec<usize>],
    vectors_dir: Option<&std::path::Path>,
) -> Result<()> {
    // schema.sql exists unless --no-create-tables.
    let mut order: Vec<String> =
        if dir.join("schema.sql").exists() { vec!["schema.sql".to_string()] } else { Vec::new() };
    let mut tables = Vec::new();
    let mut links = Vec::new();
    for &i in waves.iter().flatten() {
        let t = &state.tables[i];
        let files: Vec<_> = t.partitions.iter().flat_map(|p| p.files.clone()).collect();
        order.extend(files.iter().map(|f| f.path.clone()));
        let link_files: Vec<_> = t.partitions.iter().flat_map(|p| p.links.files.clone()).collect();
        links.extend(link_files.iter().map(|f| f.path.clone()));
        let mut entry = serde_json::json!({
            "table": t.table, "d1_table": t.d1_table,
            "rows": t.partitions.iter().map(|p| p.rows).sum::<u64>(), "files": files,
        });
        if !link_files.is_empty() {
            entry["link_files"] = serde_json::json!(link_files);
        }
        tables.push(entry);
    }
    // Links last: every row they may point at is in by then.
    order.extend(links);
    let mut manifest = serde_json::json!({
        "format": "pgflare-d1-files-v1",
        "created_by": concat!("pgflare ", env!("CARGO_PKG_VERSION")),
        "first_snapshot": state.first_snapshot,
        "tables": tables,
        "apply_order": order,
    });
    if let Some(vdir) = vectors_dir {
        // Paths in the manifest are relative to its folder.
        let prefix = match vdir.strip_prefix(dir) {
            Ok(rel) => {
                rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
            }
            Err(_) => vdir.display().to_string(),
        };
        let vtables: Vec<_> = state
            .tables
            .iter()
            .filter(|t| t.partitions.iter().any(|p| !p.vectors.is_empty()))
            .map(|t| {
                let mut files: Vec<_> = t.partitions.iter().flat_map(|p| p.vectors.files.clone()).collect();
                files.iter_mut().for_each(|f| f.path = format!("{prefix}/{}", f.path));
                let sum = |f: fn(&crate::batch::sink::VectorReport) -> u64| {
                    t.partitions.iter().map(|p| f(&p.vectors)).sum::<u64>()
                };
                serde_json::json!({
                    "table": t.table,
                    "vectors": sum(|v| v.written),
                    "null_vectors": sum(|v| v.null),
                    "skipped": sum(|v| v.skipped),
                    "files": files,
                })
            })
            .collect();
        manifest["vectorize"] = serde_json::json!({ "tables": vtables });
    }
    let path = dir.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(&path, text).map_err(Error::io(&path))
}

/// What `--dry-run` prints per table, in load order: rows, key ranges
/// (done and to do), the estimated D1 size, and the files or requests the
/// rest will take (D1 and Vectorize).
/// Column widths are sampled for a dry run only (`sample_widths`).
pub async fn table_plans(
    snapshot: &mut Snapshot,
    sample_widths: bool,
    targets: (&crate::plan::Target, &crate::plan::VectorTarget),
    vectors_per_request: usize,
    prepared: &crate::plan::Prepared,
    state: &LoadState,
) -> Result<Vec<TablePlan>> {
    let (infos, mappings) = (&prepared.infos, &prepared.mappings);
    let (target, vector_target) = targets;
    let widths = if sample_widths { column_widths(snapshot, infos).await? } else { BTreeMap::new() };
    let mut plans = Vec::new();
    for (w, wave) in prepared.fks.waves.iter().enumerate() {
        for &i in wave {
            let t = &state.tables[i];
            let d1_bytes = plan::estimated_d1_bytes(
                &infos[i],
                &mappings[i],
                widths.get(&t.table).unwrap_or(&BTreeMap::new()),
            );
            let todo = t.partitions.iter().filter(|p| !p.done).count();
            let done_share = 1.0 - todo as f64 / t.partitions.len().max(1) as f64;
            // SQL text is a little more than the stored text (quotes, separators, statement heads).
            let sql_todo = (d1_bytes as f64 * 1.05 * (1.0 - done_share)) as u64;
            let (files, requests) = plan::estimate_output(target, sql_todo, todo);
            let vector_rows = match prepared.vectors.mappings.get(&infos[i].spec) {
                Some(_) => (infos[i].row_estimate.unwrap_or(0) as f64 * (1.0 - done_share)) as u64,
                None => 0,
            };
            let (vector_files, vector_requests) = match vector_rows {
                0 => (0, 0),
                n => plan::estimate_vectors(vector_target, n, todo, vectors_per_request),
            };
            plans.push(TablePlan {
                table: t.table.clone(),
                d1_table: t.d1_table.clone(),
                wave: w,
                columns: mappings[i].columns.iter().map(|(_, d)| d.clone()).collect(),
                rows_estimate: infos[i].row_estimate,
                partitions: t.partitions.len(),
                partitions_done: t.partitions.iter().filter(|p| p.done).count(),
                estimated_d1_bytes: d1_bytes,
                estimated_files: files,
                estimated_requests: requests,
                estimated_vector_files: vector_files,
                estimated_vector_requests: vector_requests,
            });
        }
    }
    Ok(plans)
}
