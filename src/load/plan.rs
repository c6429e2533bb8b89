//! What a load will do, decided before any row moves: the D1 mapping of
//! every table, the order tables load in (parents before children, since
//! D1 checks foreign keys at the end of every request and a child row
//! cannot arrive before its parent), and the estimates `--dry-run` prints.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::mapping::{default_mapping, D1Table};
use crate::config::project::TableMapping;
use crate::error::Result;
use crate::sink::d1::render::D1Mapping;
use crate::source::TableInfo;

/// The D1 side of one introspected table: the configured mapping (or the
/// default: every column but a vector column), checked against the catalog.
pub fn d1_table(configured: Option<&TableMapping>, info: &TableInfo) -> Result<(D1Table, D1Mapping)> {
    let default;
    let m = match configured {
        Some(m) => m,
        None => {
            default = default_mapping(info);
            &default
        }
    };
    let t = crate::config::mapping::d1_table(m, info)?;
    if t.primary_key.is_empty() {
        // Without a key a replayed range would insert its rows twice.
        return Err(crate::error::Error::Config {
            setting: format!("{} (table {})", m.setting, info.spec.qualified()),
            message: "has no primary key, so its rows cannot be upserted and a resumed load could \
                      duplicate them; add a primary key in Postgres, set `primary_key = [\"col\", ...]` \
                      (a unique, non-null column set) in pgflare.toml, or leave the table out with --table"
                .into(),
        });
    }
    let mapping = D1Mapping {
        table: t.name.clone(),
        columns: t
            .source_columns
            .iter()
            .cloned()
            .zip(t.spec.columns.iter().map(|c| c.name.clone()))
            .collect(),
        key: t.primary_key.clone(),
    };
    Ok((t, mapping))
}

/// Tables in load order, grouped in waves (see `migration::fk_waves`).
pub fn waves(tables: &[TableInfo]) -> Vec<Vec<usize>> {
    crate::sink::d1::migration::fk_waves(&tables.iter().collect::<Vec<_>>())
}

/// What `--dry-run` prints for one table.
#[derive(Clone, Debug, Serialize)]
pub struct TablePlan {
    pub table: String,
    pub d1_table: String,
    pub wave: usize,
    pub columns: Vec<String>,
    pub rows_estimate: Option<u64>,
    pub partitions: usize,
    pub partitions_done: usize,
    /// Rough D1 size: rows x average stored width of the D1 columns.
    pub estimated_d1_bytes: u64,
}

/// Average stored width per column from `pg_stats` (after ANALYZE).
pub fn estimated_d1_bytes(info: &TableInfo, mapping: &D1Mapping, widths: &BTreeMap<String, i64>) -> u64 {
    let rows = info.row_estimate.unwrap_or(0);
    let per_row: i64 = mapping
        .columns
        .iter()
        .map(|(s, _)| {
            let w = widths.get(s).copied().unwrap_or(16);
            // Vectors and arrays become JSON text in D1: about 2.5x their binary width.
            match info.spec.column(s).map(|c| c.ty.array || c.pg_type.starts_with("vector")) {
                Some(true) => w * 5 / 2,
                _ => w,
            }
        })
        .sum::<i64>()
        + 16;
    rows.saturating_mul(per_row.max(1) as u64)
}
