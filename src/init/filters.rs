//! What `init` proposes for filtering: tags arrays as flags and one
//! `[[queries]]` shape per vector table. A `text[]` copied into metadata
//! as it is cannot be filtered by Vectorize (no array indexes), so init
//! keeps a few metadata indexes for scalar columns and gives the rest to
//! one boolean flag per frequent value ([`flags`]), then describes the
//! service's query with the tags filter on those flags ([`queries_toml`])
//! so that `verify` replays it from the first run.

use std::fmt::Write as _;

use crate::batch::ColumnSpec;
use crate::cloudflare::limits::{check_metadata_key, VECTORIZE_MAX_METADATA_INDEXES};
use crate::config::project::TableMapping;
use crate::config::toml_text::{quote, toml_key};
use crate::config::vector_metadata::FlagColumn;
use crate::error::Result;
use crate::source::filter_fit::{self, ColumnSurvey, Shape};
use crate::source::{SourceConn, TableInfo};
use crate::typemap::Kind;

/// Scalar metadata indexes init keeps when an array column wants flags;
/// the other seven go to flags.
pub const SCALAR_INDEXES_WITH_FLAGS: usize = 3;

/// Surveys the text-array columns of a table with a vector column (their
/// most frequent values among rows with a vector), for [`flags`].
pub async fn survey_arrays(conn: &mut SourceConn, info: &TableInfo) -> Result<Vec<ColumnSurvey>> {
    let spec = &info.spec;
    let Some(vector) = super::vector_column(spec) else { return Ok(Vec::new()) };
    let arrays: Vec<String> = spec
        .columns
        .iter()
        .filter(|c| Shape::of(c) == Some(Shape::Array) && super::small_metadata(c))
        .map(|c| c.name.clone())
        .collect();
    filter_fit::survey(conn, spec, &vector, &arrays).await
}

/// Flags for the array columns of `metadata` that `arrays` surveyed: their
/// most frequent values that make valid property names, within the
/// metadata indexes `indexes` leaves free, shared in column order.
pub fn flags(
    metadata: &[String],
    arrays: &[ColumnSurvey],
    indexes: usize,
    separator: &str,
) -> Vec<FlagColumn> {
    let mut free = VECTORIZE_MAX_METADATA_INDEXES.saturating_sub(indexes);
    let mut out = Vec::new();
    for s in arrays.iter().filter(|s| metadata.contains(&s.column)) {
        let f = FlagColumn { column: s.column.clone(), values: Vec::new(), separator: separator.to_string() };
        let values: Vec<String> = s
            .top
            .iter()
            .filter(|v| !v.value.is_empty() && check_metadata_key(&f.property(&v.value)).is_ok())
            .take(free)
            .map(|v| v.value.clone())
            .collect();
        free -= values.len();
        if !values.is_empty() {
            out.push(FlagColumn { values, ..f });
        }
    }
    out
}

/// The `vector_metadata_flags` line, with what it means.
pub fn flags_toml(flags: &[FlagColumn]) -> String {
    if flags.is_empty() {
        return String::new();
    }
    let items: Vec<String> = flags
        .iter()
        .map(|f| {
            let values: Vec<String> = f.values.iter().map(|v| quote(v)).collect();
            format!("{} = [{}]", toml_key(&f.column), values.join(", "))
        })
        .collect();
    format!(
        "# Vectorize cannot filter an array: one boolean property (tags_VALUE = true) per\n\
         # frequent value, each with a metadata index, makes a tags filter work:\n\
         vector_metadata_flags = {{ {} }}\n",
        items.join(", ")
    )
}

/// Columns whose text a RAG query returns as context, by their usual names.
const CONTEXT_NAMES: [&str; 7] =
    ["content", "page_content", "text", "chunk", "body", "document", "chunk_text"];

/// The `[[queries]]` proposals: per vector table (`name` as `[[tables]]`
/// names it), k = 5, the context column, and a filter on each flagged
/// array column.
pub fn queries_toml(tables: &[(String, &TableInfo, &TableMapping)]) -> String {
    let mut out = String::new();
    for (name, info, m) in tables.iter().filter(|(_, _, m)| m.vector.is_some()) {
        let context = context_column(&info.spec.columns, m);
        let filters: Vec<String> = m
            .vector_flags
            .iter()
            .map(|f| format!("{{ column = {}, op = \"overlap\", vectorize = \"flags\" }}", quote(&f.column)))
            .collect();
        let _ = write!(
            out,
            "\n# The service's retrieval, as `pgflare verify` replays it on both stacks\n\
             # (README, \"Results match Supabase\"): k results, their D1 context, the filters.\n\
             [[queries]]\nname = {}\ntable = {}\nk = 5\n",
            quote(name),
            quote(name)
        );
        match context {
            Some(c) => {
                let _ = writeln!(out, "context = [{}]   # D1 columns compared with the source", quote(&c));
            }
            None => out.push_str("# context = [\"content\"]   # D1 columns compared with the source\n"),
        }
        if filters.is_empty() {
            out.push_str("# filters = [{ column = \"tenant_id\", op = \"eq\", vectorize = \"property\" }]\n");
        } else {
            let _ = writeln!(out, "filters = [{}]", filters.join(", "));
        }
    }
    out
}

/// The text column sent to D1 that holds the chunk's text: one named like
/// it, else the first unbounded text column outside the key.
fn context_column(columns: &[ColumnSpec], m: &TableMapping) -> Option<String> {
    let text: Vec<&ColumnSpec> = columns
        .iter()
        .filter(|c| c.ty.kind == Kind::Text && !c.ty.array && m.reads(&c.name))
        .filter(|c| !m.primary_key.iter().flatten().any(|k| *k == c.name))
        .collect();
    text.iter()
        .find(|c| CONTEXT_NAMES.contains(&c.name.to_ascii_lowercase().as_str()))
        .or_else(|| text.iter().find(|c| !c.pg_type.contains('(')))
        .map(|c| c.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::filter_fit::ValueCount;

    fn tags(column: &str, values: &[&str]) -> ColumnSurvey {
        ColumnSurvey {
            column: column.into(),
            pg_type: "text[]".into(),
            shape: Shape::Array,
            vectors: 10,
            rows: 10,
            distinct: values.len() as u64,
            elements: 10,
            max_bytes: 8,
            prefix_shared: 0,
            top: values.iter().map(|v| ValueCount { value: v.to_string(), rows: 1 }).collect(),
        }
    }

    #[test]
    fn flags_take_the_free_indexes_in_column_order_and_skip_bad_names() {
        let meta = ["tags".to_string(), "labels".to_string()];
        let arrays = [
            tags("tags", &["api", "", "a.b", "faq", "x", "y", "z", "w", "v", "u"]),
            tags("labels", &["red", "blue"]),
        ];
        let f = flags(&meta, &arrays, 3, "_");
        assert_eq!(f.len(), 1, "seven free indexes, all taken by tags: {f:?}");
        assert_eq!(f[0].values, ["api", "faq", "x", "y", "z", "w", "v"], "`` and `a.b` make no property");
        let f = flags(&meta, &arrays, 1, "_");
        assert_eq!((f[0].values.len(), f[1].values.as_slice()), (8, &["red".to_string()][..]));
        assert!(flags(&meta, &arrays, 10, "_").is_empty());
        assert!(flags(&["other".to_string()], &arrays, 0, "_").is_empty(), "only metadata columns get flags");
        assert_eq!(
            flags_toml(&flags(&meta[..1], &arrays[..1], 8, "_")).lines().last(),
            Some("vector_metadata_flags = { tags = [\"api\", \"faq\"] }")
        );
    }
}
