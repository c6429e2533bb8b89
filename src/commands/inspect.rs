//! `pgflare inspect`: what a user runs first. Per table: rows, size, the
//! type mapping of every column, the Cloudflare-fit findings, and how
//! its vectors can be filtered in Vectorize ([`super::inspect_filtering`]).

use crate::output::outln;
use std::process::ExitCode;

use serde::Serialize;

use super::inspect_filtering::{filtering, Filtering};
use super::{human_bytes, print_json};
use crate::cli::InspectArgs;
use crate::config::project::OnInvalid;
use crate::init::survey::{survey_table, JsonSurvey};
use crate::source::fit::{check_table, Finding, Severity};
use crate::source::introspect::introspect_lenient;
use crate::source::unsupported::FixStyle;
use crate::source::vector_fit::{self, VectorColumns, VectorSurvey};
use crate::source::TableInfo;

#[derive(Serialize)]
struct TableReport {
    #[serde(flatten)]
    info: TableInfo,
    columns_mapped: Vec<ColumnMapping>,
    /// None when --no-scan was given.
    findings: Option<Vec<Finding>>,
    /// The dimensions (and namespaces) of each vector column; None with --no-scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    vectors: Option<Vec<VectorSurvey>>,
    /// The key paths of each json/jsonb column, from a sample; None with --no-scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    json_keys: Option<Vec<JsonSurvey>>,
    /// How its vectors can be filtered in Vectorize; None with --no-scan
    /// or without a vector column.
    #[serde(skip_serializing_if = "Option::is_none")]
    filtering: Option<Filtering>,
}

#[derive(Serialize)]
struct ColumnMapping {
    column: String,
    postgres: String,
    arrow: String,
    d1: &'static str,
    nullable: bool,
}

pub async fn run(
    args: InspectArgs,
    json: bool,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    let (source, selection, project) = crate::plan::resolve::source_and_selection(&args.source, timeouts)?;
    let mut conn = source.connect().await?;
    // Inspect informs: columns that cannot be read are listed with their fix,
    // not refused one at a time.
    let tables = introspect_lenient(&mut conn, &selection).await?;
    let mut reports = Vec::new();
    for info in tables {
        let (findings, vectors) = if args.no_scan {
            (None, None)
        } else {
            let (mut f, v) =
                (check_table(&mut conn, &info.spec).await?, scan_vectors(&mut conn, &info, &project).await?);
            f.extend(v.iter().flat_map(vector_fit::findings));
            (Some(f), Some(v))
        };
        let columns_mapped = info
            .spec
            .columns
            .iter()
            .map(|c| ColumnMapping {
                column: c.name.clone(),
                postgres: match &c.cast {
                    Some(t) => format!("{} (read as {t})", c.pg_type),
                    None => c.pg_type.clone(),
                },
                arrow: c.ty.arrow_type().to_string(),
                d1: c.ty.d1_type(),
                nullable: c.nullable,
            })
            .collect();
        let json_keys = if args.no_scan { None } else { Some(survey_table(&mut conn, &info).await?) };
        let filtering = match &json_keys {
            Some(keys) => scan_filtering(&mut conn, &info, &project, keys).await?,
            None => None,
        };
        reports.push(TableReport { info, columns_mapped, findings, vectors, json_keys, filtering });
    }
    if json {
        print_json(&serde_json::json!({ "source": source.display(), "tables": reports }))?;
    } else {
        print_human(&reports);
    }
    Ok(ExitCode::SUCCESS)
}

/// The vector columns of one table against one Vectorize index, with the
/// namespace column and dimension pgflare.toml gives.
async fn scan_vectors(
    conn: &mut crate::source::SourceConn,
    info: &TableInfo,
    project: &crate::config::project::Project,
) -> anyhow::Result<Vec<VectorSurvey>> {
    let m = project.tables.iter().find(|m| m.schema == info.spec.schema && m.table == info.spec.name);
    let cfg = VectorColumns {
        vector: m.and_then(|m| m.vector.as_deref()),
        namespace: m.and_then(|m| m.vector_namespace.as_deref()),
        dimensions: project.vectorize.dimensions,
        skip_invalid: project.vectorize.on_invalid == OnInvalid::Skip,
    };
    Ok(vector_fit::survey(conn, &info.spec, &cfg).await?)
}

/// The filtering section under pgflare.toml's `[[tables]]` entry, else
/// under the mapping `init` would propose.
async fn scan_filtering(
    conn: &mut crate::source::SourceConn,
    info: &TableInfo,
    project: &crate::config::project::Project,
    keys: &[JsonSurvey],
) -> anyhow::Result<Option<Filtering>> {
    let spec = &info.spec;
    let configured = project.tables.iter().find(|m| m.schema == spec.schema && m.table == spec.name);
    let proposed;
    let mapping = match configured {
        Some(m) => m,
        None => {
            let arrays = crate::init::filters::survey_arrays(conn, info).await?;
            proposed = crate::init::suggest(info, String::new(), keys, &arrays);
            &proposed
        }
    };
    let queries: Vec<&crate::config::queries::QueryShape> =
        project.queries.iter().filter(|q| q.schema == spec.schema && q.table == spec.name).collect();
    Ok(filtering(conn, spec, mapping, configured.is_some(), &queries).await?)
}

fn print_human(reports: &[TableReport]) {
    for r in reports {
        let t = &r.info;
        let rows = t
            .row_estimate
            .map(|n| format!("~{n} rows"))
            .unwrap_or_else(|| "rows unknown (never analyzed)".into());
        let pk = if t.spec.primary_key.is_empty() {
            "NO primary key".to_string()
        } else {
            format!("primary key ({})", t.spec.primary_key.join(", "))
        };
        outln!("{}  {rows}  {}  {pk}", t.spec.qualified(), human_bytes(t.total_bytes.max(0) as u64));
        for line in column_table(&r.columns_mapped) {
            outln!("{line}");
        }
        if !t.unsupported.is_empty() {
            outln!("  cannot be read as they are (every command that reads them refuses):");
            for u in &t.unsupported {
                outln!("    {}  {}: {}; fix: {}", u.column, u.pg_type, u.reason, u.fix(FixStyle::Flags));
            }
        }
        for v in r.vectors.iter().flatten() {
            let dims: Vec<String> =
                v.dimensions.iter().map(|d| format!("{} x {} dims", d.rows, d.dims)).collect();
            let ns = match (&v.namespace, v.namespaces) {
                (Some(c), Some(n)) => format!("; {n} namespaces ({c})"),
                _ => String::new(),
            };
            let dims = if dims.is_empty() { "no vectors".to_string() } else { dims.join(", ") };
            outln!("  vectors in {}: {dims}{ns}", v.column);
        }
        match &r.findings {
            None => outln!("  Cloudflare fit: not checked (--no-scan)"),
            Some(f) if f.is_empty() => outln!("  Cloudflare fit: everything fits"),
            Some(f) => {
                outln!("  Cloudflare fit:");
                for x in f {
                    let tag = if x.severity == Severity::Blocker { "BLOCKER" } else { "note" };
                    let col = x.column.as_deref().map(|c| format!(" {c}:")).unwrap_or_default();
                    outln!("    [{tag}] {}{col} {} rows over {}", x.check, x.rows, x.limit);
                    if !x.examples.is_empty() {
                        outln!("        e.g. {}", x.examples.join("; "));
                    }
                    outln!("        {}", x.advice);
                }
            }
        }
        print_json_keys(r.json_keys.as_deref().unwrap_or_default());
        if let Some(f) = &r.filtering {
            super::inspect_filtering::print(f);
        }
        outln!();
    }
}

/// The column mapping as aligned lines: each column as wide as its widest
/// cell in characters (`{:w$}` pads by characters, so widths are counted
/// the same way; a long arrow type or a non-ASCII name keeps the D1 column
/// straight).
fn column_table(cols: &[ColumnMapping]) -> Vec<String> {
    let width = |f: fn(&ColumnMapping) -> &str, head: &str| {
        cols.iter().map(|c| f(c).chars().count()).chain([head.chars().count()]).max().unwrap_or(0)
    };
    let w = width(|c| &c.column, "column");
    let pw = width(|c| &c.postgres, "postgres");
    let aw = width(|c| &c.arrow, "arrow / parquet");
    let mut out = vec![format!("  {:w$}  {:pw$}  {:aw$}  D1", "column", "postgres", "arrow / parquet")];
    for c in cols {
        let null = if c.nullable { "" } else { " NOT NULL" };
        out.push(format!("  {:w$}  {:pw$}  {:aw$}  {}{null}", c.column, c.postgres, c.arrow, c.d1));
    }
    out
}

/// The key paths of each json/jsonb column and what would not fit
/// Vectorize metadata.
fn print_json_keys(surveys: &[JsonSurvey]) {
    for j in surveys {
        outln!(
            "  JSON keys of {} ({}; depth up to {}, values up to {} bytes{}):",
            j.column,
            j.sample,
            j.max_depth,
            j.max_bytes,
            if j.fits_whole { "; fits Vectorize metadata whole" } else { "" }
        );
        let w = j.paths.iter().map(|p| p.path.len()).max().unwrap_or(4).clamp(4, 60);
        for p in &j.paths {
            let types: Vec<String> = p.types.keys().map(|t| t.to_string()).collect();
            outln!("    {:w$}  {:>5.1}%  {}", p.path, p.share * 100.0, types.join("|"));
            for problem in &p.problems {
                outln!("    {:w$}         ! {problem}", "");
            }
        }
        if j.paths_not_listed > 0 {
            outln!("    ... and {} more paths", j.paths_not_listed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{column_table, ColumnMapping};

    fn col(column: &str, postgres: &str, arrow: &str) -> ColumnMapping {
        ColumnMapping {
            column: column.into(),
            postgres: postgres.into(),
            arrow: arrow.into(),
            d1: "TEXT",
            nullable: true,
        }
    }

    /// The D1 column starts at the same character on every line, however
    /// long a type or name (issue 19: a long arrow type pushed it right).
    #[test]
    fn the_d1_column_stays_aligned_with_long_types_and_non_ascii_names() {
        let cols = [
            col("id", "uuid", "FixedSizeBinary(16)"),
            col("embedding", "vector(1536)", "FixedSizeList(1536 x Float32, extension pgvector.vector)"),
            col("größe", "timestamp with time zone", "Timestamp(Microsecond, Some(\"UTC\"))"),
        ];
        let lines = column_table(&cols);
        let at: Vec<usize> = lines
            .iter()
            .map(|l| {
                let chars: Vec<char> = l.chars().collect();
                chars.windows(2).rposition(|w| w == [' ', ' ']).expect("a gap") + 2
            })
            .collect();
        assert!(at.iter().all(|a| *a == at[0]), "{lines:#?}");
        assert!(lines[0].ends_with("D1") && lines[1].ends_with("TEXT"), "{lines:#?}");
    }
}
