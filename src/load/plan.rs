//! What a load will do, decided before any row moves: the D1 mapping of
//! every table, the order tables load in (parents before children, since
//! D1 checks foreign keys at the end of every request and a child row
//! cannot arrive before its parent), and the estimates `--dry-run` prints.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::project::TableMapping;
use crate::error::{Error, Result};
use crate::sink::d1::render::D1Mapping;
use crate::source::TableInfo;

/// The D1 mapping of one introspected table: the configured one, or every
/// column under its own name except a configured vector column.
pub fn mapping(configured: Option<&TableMapping>, info: &TableInfo) -> Result<D1Mapping> {
    let spec = &info.spec;
    let Some(m) = configured else { return Ok(D1Mapping::identity(spec)) };
    let setting = |key: &str| format!("pgflare.toml: tables `{}`.{key}", spec.qualified());
    let names: Vec<String> = match &m.d1_columns {
        Some(cols) => cols.iter().map(|c| c.source.clone()).collect(),
        None => {
            spec.columns.iter().map(|c| c.name.clone()).filter(|c| Some(c) != m.vector.as_ref()).collect()
        }
    };
    let mut columns = Vec::new();
    for source in &names {
        if spec.column(source).is_none() {
            return Err(Error::Config {
                setting: setting("d1_columns"),
                message: format!(
                    "{} has no column `{source}`; its columns are: {}",
                    spec.qualified(),
                    spec.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        let d1 = m
            .d1_columns
            .as_ref()
            .and_then(|cols| cols.iter().find(|c| &c.source == source))
            .map(|c| c.d1.clone())
            .unwrap_or_else(|| source.clone());
        columns.push((source.clone(), d1));
    }
    let key_source = m.primary_key.clone().unwrap_or_else(|| spec.primary_key.clone());
    let mut key = Vec::new();
    for k in &key_source {
        match columns.iter().find(|(s, _)| s == k) {
            Some((_, d1)) => key.push(d1.clone()),
            None => {
                return Err(Error::Config {
                    setting: setting("d1_columns"),
                    message: format!("key column `{k}` must go to D1: upserts and resumable loads need it"),
                })
            }
        }
    }
    Ok(D1Mapping { table: m.d1_table.clone(), columns, key })
}

/// Tables grouped into waves: every table's parents (by foreign key, among
/// the selected tables) are in an earlier wave. Tables in a cycle share the
/// last wave. Returns indices into `tables`.
pub fn waves(tables: &[TableInfo]) -> Vec<Vec<usize>> {
    let names: Vec<String> = tables.iter().map(|t| t.spec.qualified()).collect();
    let mut parents: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); tables.len()];
    for (i, t) in tables.iter().enumerate() {
        for c in t.constraints.iter().filter(|c| c.kind == "f") {
            if let Some(target) = referenced_table(&c.definition, &t.spec.schema) {
                if let Some(j) = names.iter().position(|n| *n == target) {
                    if j != i {
                        parents[i].insert(j);
                    }
                }
            }
        }
    }
    let mut placed = vec![false; tables.len()];
    let mut out = Vec::new();
    while placed.iter().any(|p| !p) {
        let wave: Vec<usize> =
            (0..tables.len()).filter(|&i| !placed[i] && parents[i].iter().all(|&p| placed[p])).collect();
        if wave.is_empty() {
            out.push((0..tables.len()).filter(|&i| !placed[i]).collect());
            break;
        }
        wave.iter().for_each(|&i| placed[i] = true);
        out.push(wave);
    }
    out
}

/// `schema.table` referenced by a `pg_get_constraintdef` FOREIGN KEY text.
fn referenced_table(definition: &str, own_schema: &str) -> Option<String> {
    let rest = &definition[definition.find("REFERENCES ")? + "REFERENCES ".len()..];
    let name = rest[..rest.find('(')?].trim();
    let unquote = |s: &str| s.trim_matches('"').replace("\"\"", "\"");
    // Split on the dot outside quotes.
    let mut in_quotes = false;
    let dot = name.char_indices().find(|&(_, c)| {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        c == '.' && !in_quotes
    });
    Some(match dot {
        Some((i, _)) => format!("{}.{}", unquote(&name[..i]), unquote(&name[i + 1..])),
        None => format!("{own_schema}.{}", unquote(name)),
    })
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

#[cfg(test)]
mod tests {
    use super::referenced_table;

    #[test]
    fn referenced_tables_are_read_from_constraint_text() {
        let d = "FOREIGN KEY (document_id) REFERENCES documents(id) ON DELETE CASCADE";
        assert_eq!(referenced_table(d, "public").as_deref(), Some("public.documents"));
        let d = "FOREIGN KEY (a) REFERENCES \"Other\".\"we.ird\"(id)";
        assert_eq!(referenced_table(d, "public").as_deref(), Some("Other.we.ird"));
        assert_eq!(referenced_table("CHECK (a > 0)", "public"), None);
    }
}
