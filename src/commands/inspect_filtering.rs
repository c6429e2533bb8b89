//! `inspect`'s "Filtering in Vectorize" section: the columns a query
//! could filter a table's vectors on (what pgflare.toml sends as metadata,
//! flags or namespace, and what its `[[queries]]` filter on; without a
//! `[[tables]]` entry, what `init` would propose), judged by
//! [`crate::source::filter_fit`], with the metadata indexes they take, the
//! largest metadata a vector gets, and for each configured query filter
//! whether Vectorize can answer it as configured. The test that matters:
//! a `text[]` of tags stored as a metadata array is flagged here, before
//! the first load.

use serde::Serialize;
use sqlx::AssertSqlSafe;

use crate::batch::{quote_ident, TableSpec};
use crate::cloudflare::limits::{VECTORIZE_MAX_METADATA_BYTES, VECTORIZE_MAX_METADATA_INDEXES};
use crate::config::project::TableMapping;
use crate::config::queries::{FilterForm, QueryShape};
use crate::config::toml_text::{quote, toml_key};
use crate::error::{Error, Result};
use crate::output::outln;
use crate::source::filter_fit::{self, Carried, ColumnFit, ColumnSurvey, Context, Layout, Shape};
use crate::source::SourceConn;

/// The section for one table with a vector column.
#[derive(Serialize)]
pub struct Filtering {
    pub vector: String,
    /// k of the table's first `[[queries]]` shape, else 5.
    pub k: usize,
    /// Whether the layout judged is pgflare.toml's (else `init`'s proposal).
    pub configured: bool,
    /// Metadata indexes the layout takes (indexes and flags), of `indexes_max`.
    pub indexes_used: usize,
    pub indexes_max: usize,
    /// The largest metadata one vector gets from the metadata columns, as
    /// JSON text (JSON paths not counted), of 10 KiB.
    pub metadata_bytes_max: u64,
    pub columns: Vec<ColumnFit>,
    pub queries: Vec<QueryFit>,
    /// What the whole layout does not fit.
    pub problems: Vec<String>,
}

/// The pgflare.toml text that chooses `layout` for `c`.
pub fn config_text(c: &ColumnFit, layout: &Layout) -> String {
    let col = quote(&c.column);
    match layout.form {
        "flags" => {
            let values: Vec<String> = layout.values.iter().map(|v| quote(v)).collect();
            format!("vector_metadata_flags = {{ {} = [{}] }}", toml_key(&c.column), values.join(", "))
        }
        "namespace" => format!("vector_namespace = {col}"),
        "post" => format!(
            "[[queries]] top_k = {}, filters = [{{ column = {col}, op = \"{}\", vectorize = \"post\" }}]",
            layout.top_k,
            if c.shape == Shape::Array { "overlap" } else { "eq" }
        ),
        _ => format!("vector_metadata = [{col}]\nvector_metadata_indexes = [{col}]"),
    }
}

/// One `[[queries]]` filter as configured.
#[derive(Serialize)]
pub struct QueryFit {
    pub query: String,
    pub column: String,
    pub vectorize: FilterForm,
    pub answerable: bool,
    pub why: String,
}

/// Surveys and judges the filter columns of `spec` under `mapping`.
pub async fn filtering(
    conn: &mut SourceConn,
    spec: &TableSpec,
    mapping: &TableMapping,
    configured: bool,
    queries: &[&QueryShape],
) -> Result<Option<Filtering>> {
    let Some(vector) = mapping.vector.clone() else { return Ok(None) };
    let k = queries.first().map(|q| q.k).unwrap_or(5);
    let mut wanted: Vec<String> = Vec::new();
    for c in &spec.columns {
        let named = mapping.vector_metadata.contains(&c.name)
            || mapping.vector_flags.iter().any(|f| f.column == c.name)
            || mapping.vector_namespace.as_deref() == Some(&c.name)
            || queries.iter().any(|q| q.filters.iter().any(|f| f.column == c.name));
        if named && c.name != vector {
            wanted.push(c.name.clone());
        }
    }
    let surveys = filter_fit::survey(conn, spec, &vector, &wanted).await?;
    let flag_indexes: usize = mapping.vector_flags.iter().map(|f| f.values.len()).sum();
    let indexes_used = mapping.vector_metadata_indexes.len() + flag_indexes;
    let columns: Vec<ColumnFit> = surveys
        .iter()
        .map(|s| {
            let carried = carried(mapping, &s.column);
            let own = match carried {
                Carried::Indexed => 1,
                Carried::Flags => mapping
                    .vector_flags
                    .iter()
                    .find(|f| f.column == s.column)
                    .map(|f| f.values.len())
                    .unwrap_or(0),
                _ => 0,
            };
            let cx = Context {
                k,
                carried,
                free_indexes: VECTORIZE_MAX_METADATA_INDEXES
                    .saturating_sub(indexes_used - own.min(indexes_used)),
                separator: &mapping.vector_json.separator,
            };
            filter_fit::judge(s, &cx)
        })
        .collect();
    let metadata_bytes_max = metadata_bytes(conn, spec, &vector, &mapping.vector_metadata).await?;
    let mut problems = Vec::new();
    if metadata_bytes_max > VECTORIZE_MAX_METADATA_BYTES as u64 {
        problems.push(format!(
            "the largest metadata is {metadata_bytes_max} bytes of columns alone; Vectorize allows \
             {VECTORIZE_MAX_METADATA_BYTES} per vector: leave columns out of vector_metadata"
        ));
    }
    let filterable = columns.iter().filter(|c| c.filterable).count();
    if filterable > VECTORIZE_MAX_METADATA_INDEXES {
        problems.push(format!(
            "{filterable} metadata columns could be filtered; an index has {VECTORIZE_MAX_METADATA_INDEXES} \
             metadata indexes: index those the service's queries filter on"
        ));
    }
    let queries = queries.iter().flat_map(|q| query_fits(q, &columns, &surveys, mapping)).collect();
    Ok(Some(Filtering {
        vector,
        k,
        configured,
        indexes_used,
        indexes_max: VECTORIZE_MAX_METADATA_INDEXES,
        metadata_bytes_max,
        columns,
        queries,
        problems,
    }))
}

fn carried(m: &TableMapping, column: &str) -> Carried {
    if m.vector_flags.iter().any(|f| f.column == column) {
        Carried::Flags
    } else if m.vector_namespace.as_deref() == Some(column) {
        Carried::Namespace
    } else if m.vector_metadata_indexes.iter().any(|i| i == column) {
        Carried::Indexed
    } else if m.vector_metadata.iter().any(|c| c == column) {
        Carried::Stored
    } else {
        Carried::NotSent
    }
}

/// The largest JSON object of the metadata columns among rows with a vector.
async fn metadata_bytes(
    conn: &mut SourceConn,
    spec: &TableSpec,
    vector: &str,
    cols: &[String],
) -> Result<u64> {
    if cols.is_empty() {
        return Ok(0);
    }
    let list: Vec<String> = cols.iter().map(|c| format!("s.{}", quote_ident(c))).collect();
    let sql = format!(
        "SELECT coalesce(max(octet_length((SELECT row_to_json(x) FROM (SELECT {}) x)::text)), 0)::int8 \
         FROM {} AS s WHERE s.{} IS NOT NULL",
        list.join(", "),
        spec.sql_name(),
        quote_ident(vector)
    );
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(conn)
        .await
        .map_err(Error::db(format!("measuring the vector metadata of {}", spec.qualified())))?;
    Ok(n.max(0) as u64)
}

/// Whether Vectorize answers each filter of `q` as pgflare.toml lays it out.
fn query_fits(
    q: &QueryShape,
    columns: &[ColumnFit],
    surveys: &[ColumnSurvey],
    m: &TableMapping,
) -> Vec<QueryFit> {
    q.filters
        .iter()
        .map(|f| {
            let fit = columns.iter().find(|c| c.column == f.column);
            let better = fit
                .and_then(|c| {
                    let l = c.layouts.iter().find(|l| l.fits || l.form == "flags")?;
                    Some(format!("; lay it out as {} instead: {}", l.form, config_text(c, l)))
                })
                .unwrap_or_default();
            let (answerable, why) = match (f.vectorize, fit) {
                (FilterForm::Property, Some(c)) if !c.filterable => {
                    (false, format!("{}{better}", c.problem.clone().unwrap_or_default()))
                }
                (FilterForm::Property, _) if !m.vector_metadata_indexes.contains(&f.property) => (
                    false,
                    format!(
                        "`{}` has no metadata index, so Vectorize's filter matches nothing: add it to \
                         vector_metadata_indexes",
                        f.property
                    ),
                ),
                (FilterForm::Property, _) => (true, format!("metadata index on `{}`", f.property)),
                (FilterForm::Flags, Some(_)) => {
                    let flagged = m.vector_flags.iter().find(|g| g.column == f.column);
                    let values = flagged.map(|g| g.values.as_slice()).unwrap_or_default();
                    let s = surveys.iter().find(|s| s.column == f.column);
                    let held: u64 = s
                        .map(|s| s.top.iter().filter(|v| values.contains(&v.value)).map(|v| v.rows).sum())
                        .unwrap_or(0);
                    let all = s.map(|s| s.elements).unwrap_or(0).max(1);
                    (
                        true,
                        format!(
                            "{} values flagged, at least {:.0}% of the values held; a query on another value \
                             cannot be asked of Vectorize",
                            values.len(),
                            100.0 * held as f64 / all as f64
                        ),
                    )
                }
                (FilterForm::Namespace, _) => (true, "one namespace per query".into()),
                (FilterForm::Post, _) => {
                    let reach = 2.0 * q.k as f64 / q.top_k as f64 * 100.0;
                    (
                        true,
                        format!(
                            "topK {} filtered on the D1 rows: k = {} for values held by {reach:.0}% of the \
                             vectors or more",
                            q.top_k, q.k
                        ),
                    )
                }
                (_, None) => (true, String::new()),
            };
            QueryFit {
                query: q.name.clone(),
                column: f.column.clone(),
                vectorize: f.vectorize,
                answerable,
                why,
            }
        })
        .collect()
}

/// The human form of the section.
pub fn print(f: &Filtering) {
    let whose = if f.configured { "pgflare.toml's layout" } else { "the layout init would propose" };
    outln!(
        "  Filtering in Vectorize ({whose}; k = {}; {} of {} metadata indexes; metadata up to {} bytes of {}):",
        f.k,
        f.indexes_used,
        f.indexes_max,
        f.metadata_bytes_max,
        VECTORIZE_MAX_METADATA_BYTES
    );
    let w = f.columns.iter().map(|c| c.column.len()).max().unwrap_or(6);
    let tw = f.columns.iter().map(|c| c.pg_type.len()).max().unwrap_or(4);
    for c in &f.columns {
        let how = match c.carried {
            Carried::Indexed => "indexed",
            Carried::Stored => "stored, no index",
            Carried::Flags => "flags",
            Carried::Namespace => "namespace",
            Carried::NotSent => "not sent",
        };
        let verdict = if c.filterable { "filterable as it is" } else { "NOT filterable as it is" };
        outln!("    {:w$}  {:tw$}  {how}; {verdict}", c.column, c.pg_type);
        if let Some(p) = &c.problem {
            outln!("    {:w$}  {p}", "");
        }
        // An indexed column that filters needs no advice; the others get
        // their layouts and the text that chooses each.
        if c.filterable && matches!(c.carried, Carried::Indexed | Carried::Namespace) {
            continue;
        }
        for l in &c.layouts {
            let fits = if l.fits { "fits" } else { "partly" };
            outln!(
                "    {:w$}    {:9} {fits:6} {} indexes, +{} B, topK {}: {}",
                "",
                l.form,
                l.indexes,
                l.metadata_bytes,
                l.top_k,
                l.note
            );
            for line in config_text(c, l).lines() {
                outln!("    {:w$}              {line}", "");
            }
        }
    }
    for q in &f.queries {
        let verdict = if q.answerable { "answerable" } else { "NOT answerable" };
        outln!("    query `{}`: {} as {}: {verdict}; {}", q.query, q.column, q.vectorize.as_str(), q.why);
    }
    for p in &f.problems {
        outln!("    ! {p}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(form: &'static str, values: &[&str]) -> Layout {
        Layout {
            form,
            fits: true,
            indexes: 0,
            metadata_bytes: 0,
            top_k: 100,
            note: String::new(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn each_layout_names_the_pgflare_toml_text_that_chooses_it() {
        let c = ColumnFit {
            column: "tags".into(),
            pg_type: "text[]".into(),
            shape: Shape::Array,
            carried: Carried::Stored,
            filterable: false,
            problem: None,
            layouts: Vec::new(),
        };
        assert_eq!(
            config_text(&c, &layout("flags", &["api", "a \"b\""])),
            r#"vector_metadata_flags = { tags = ["api", 'a "b"'] }"#
        );
        assert_eq!(
            config_text(&c, &layout("post", &[])),
            r#"[[queries]] top_k = 100, filters = [{ column = "tags", op = "overlap", vectorize = "post" }]"#
        );
        let org = ColumnFit { column: "org id".into(), shape: Shape::String, ..c };
        assert_eq!(config_text(&org, &layout("namespace", &[])), r#"vector_namespace = "org id""#);
        assert_eq!(
            config_text(&org, &layout("property", &[])),
            "vector_metadata = [\"org id\"]\nvector_metadata_indexes = [\"org id\"]"
        );
    }
}
