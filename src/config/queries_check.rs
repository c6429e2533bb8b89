//! Reading and checking `[[queries]]` (the types are in
//! [`super::queries`]): [`parse`] needs no database and runs with the rest
//! of pgflare.toml; [`check`] runs against the catalog before `verify`
//! reads anything. Kept apart from the types so that `project` can hold
//! the shapes without depending on the code that checks them against
//! `[[tables]]`.

use serde::Deserialize;

use super::project::TableMapping;
use super::queries::{FilterForm, FilterOp, QueryFilter, QueryShape};
use crate::batch::TableSpec;
use crate::cloudflare::limits::VECTORIZE_MAX_TOP_K;
use crate::error::{Error, Result};
use crate::typemap::Kind;

/// One `[[queries]]` entry, as the file has it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    name: String,
    table: String,
    k: Option<usize>,
    top_k: Option<usize>,
    #[serde(default)]
    context: Vec<String>,
    #[serde(default)]
    filters: Vec<RawFilter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    column: String,
    op: FilterOp,
    vectorize: FilterForm,
    property: Option<String>,
}

/// Checks the `[[queries]]` entries that need no database: names, k and
/// topK within Vectorize's limits, operators that fit their layout, and a
/// table that `[[tables]]` sends to Vectorize.
pub fn parse(file: &str, raw: Vec<RawQuery>, tables: &[TableMapping]) -> Result<Vec<QueryShape>> {
    let mut out: Vec<QueryShape> = Vec::new();
    for (i, q) in raw.into_iter().enumerate() {
        let at = format!("{file}: queries[{i}]");
        let bad = |k: &str, m: String| Error::Config { setting: format!("{at}.{k}"), message: m };
        if q.name.trim().is_empty() {
            return Err(bad("name", "must not be empty".into()));
        }
        if let Some(j) = out.iter().position(|o| o.name == q.name) {
            return Err(bad("name", format!("`{}` is also the name of queries[{j}]", q.name)));
        }
        let table = tables
            .iter()
            .find(|t| q.table == t.table || q.table == format!("{}.{}", t.schema, t.table))
            .ok_or_else(|| {
                bad(
                    "table",
                    format!(
                        "`{}` is not a [[tables]] entry; a query shape runs on a configured table",
                        q.table
                    ),
                )
            })?;
        if table.vector.is_none() {
            return Err(bad(
                "table",
                format!("`{}` has no `vector`: it sends nothing to Vectorize", q.table),
            ));
        }
        let max = VECTORIZE_MAX_TOP_K;
        let k = q.k.unwrap_or(5);
        if !(1..=max).contains(&k) {
            return Err(bad("k", format!("must be 1 to {max} (Vectorize answers at most {max} matches)")));
        }
        let top_k = q.top_k.unwrap_or(k);
        if !(k..=max).contains(&top_k) {
            return Err(bad(
                "top_k",
                format!("must be from k ({k}) to {max}: the topK Vectorize is asked for"),
            ));
        }
        let mut filters = Vec::new();
        for (j, f) in q.filters.into_iter().enumerate() {
            let fk = format!("filters[{j}]");
            if f.column.trim().is_empty() {
                return Err(bad(&format!("{fk}.column"), "must not be empty".into()));
            }
            let fit = match (f.vectorize, f.op) {
                (FilterForm::Namespace, FilterOp::Eq) => Ok(()),
                (FilterForm::Namespace, op) => Err(format!(
                    "a namespace holds one value per vector: op must be \"eq\", not \"{}\"",
                    op.as_str()
                )),
                (FilterForm::Flags, FilterOp::Overlap | FilterOp::Contains) => Ok(()),
                (FilterForm::Flags, op) => Err(format!(
                    "flags carry values of an array column: op must be \"overlap\" or \"contains\", not \"{}\"",
                    op.as_str()
                )),
                _ => Ok(()),
            };
            fit.map_err(|m| bad(&format!("{fk}.op"), m))?;
            if f.property.is_some() && f.vectorize != FilterForm::Property {
                return Err(bad(
                    &format!("{fk}.property"),
                    "only a `vectorize = \"property\"` filter names a property".into(),
                ));
            }
            let property = f.property.unwrap_or_else(|| f.column.clone());
            filters.push(QueryFilter { column: f.column, op: f.op, vectorize: f.vectorize, property });
        }
        if filters.iter().filter(|f| f.vectorize == FilterForm::Namespace).count() > 1 {
            return Err(bad("filters", "a vector has one namespace: at most one filter can use it".into()));
        }
        out.push(QueryShape {
            setting: at.clone(),
            name: q.name,
            schema: table.schema.clone(),
            table: table.table.clone(),
            k,
            top_k,
            context: q.context,
            filters,
        });
    }
    Ok(out)
}

/// Checks a shape against its table: columns exist, operators fit their
/// column (arrays for overlap/contains), each layout exists in the
/// mapping (the flags, the namespace column, a metadata property).
pub fn check(shape: &QueryShape, spec: &TableSpec, mapping: &TableMapping) -> Result<()> {
    let bad = |k: String, m: String| Error::Config { setting: format!("{}.{k}", shape.setting), message: m };
    let no_column = |k: String, c: &str| {
        bad(
            k,
            format!(
                "{} has no column `{c}`; columns are: {}",
                spec.qualified(),
                spec.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )
    };
    for (j, c) in shape.context.iter().enumerate() {
        let Some(col) = spec.column(c) else {
            return Err(no_column(format!("context[{j}]"), c));
        };
        // Compared as text: these types have the same text in Postgres and D1.
        let textual = !col.ty.array
            && matches!(
                col.ty.kind,
                Kind::Text | Kind::Enum | Kind::Uuid | Kind::Int2 | Kind::Int4 | Kind::Int8
            );
        if !textual {
            return Err(bad(
                format!("context[{j}]"),
                format!(
                    "`{c}` is {}: context columns are compared as text (text, varchar, enum, uuid, integers)",
                    col.pg_type
                ),
            ));
        }
        if !mapping.reads(c) {
            return Err(bad(
                format!("context[{j}]"),
                format!("`{c}` is not among the columns sent to D1 (d1_columns)"),
            ));
        }
    }
    for (j, f) in shape.filters.iter().enumerate() {
        let fk = format!("filters[{j}]");
        let col = spec.column(&f.column).ok_or_else(|| no_column(format!("{fk}.column"), &f.column))?;
        if f.op.on_arrays() != col.ty.array {
            let want = if f.op.on_arrays() { "an array column" } else { "a column that is not an array" };
            return Err(bad(
                format!("{fk}.op"),
                format!("\"{}\" needs {want}; `{}` is {}", f.op.as_str(), f.column, col.pg_type),
            ));
        }
        match f.vectorize {
            FilterForm::Flags if !mapping.vector_flags.iter().any(|g| g.column == f.column) => {
                return Err(bad(
                    format!("{fk}.vectorize"),
                    format!(
                        "`{}` has no flags: add vector_metadata_flags = {{ {} = [\"value\", ...] }} to the table",
                        f.column, f.column
                    ),
                ))
            }
            FilterForm::Namespace if mapping.vector_namespace.as_deref() != Some(&f.column) => {
                return Err(bad(
                    format!("{fk}.vectorize"),
                    format!("`{}` is not the table's vector_namespace", f.column),
                ))
            }
            FilterForm::Property => {
                let sent = mapping.vector_metadata.contains(&f.property)
                    || mapping.vector_json.paths.iter().any(|p| p.name == f.property);
                if !sent {
                    return Err(bad(
                        format!("{fk}.property"),
                        format!(
                            "`{}` is not a metadata property of the table's vectors (vector_metadata or \
                             vector_metadata_paths)",
                            f.property
                        ),
                    ));
                }
            }
            _ => {}
        }
        if f.op.on_arrays() && f.vectorize == FilterForm::Namespace {
            return Err(bad(format!("{fk}.vectorize"), "a namespace holds one value, not an array".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::file::parse_project;

    const TABLE: &str =
        "[[tables]]\nname = \"chunks\"\nvector = \"embedding\"\nvector_metadata = [\"tags\"]\n\
                         vector_metadata_flags = { tags = [\"billing\", \"api\"] }\n";

    fn error(queries: &str) -> String {
        match parse_project(&format!("{TABLE}{queries}"), Path::new("pgflare.toml")) {
            Ok(_) => panic!("accepted: {queries}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_query_shape_parses_with_its_defaults() {
        let p = parse_project(
            &format!(
                "{TABLE}[[queries]]\nname = \"tagged\"\ntable = \"chunks\"\ncontext = [\"content\"]\n\
                 filters = [{{ column = \"tags\", op = \"overlap\", vectorize = \"flags\" }}, \
                 {{ column = \"tags\", op = \"overlap\", vectorize = \"property\" }}]\n"
            ),
            Path::new("pgflare.toml"),
        )
        .expect("parses");
        let q = &p.queries[0];
        assert_eq!((q.k, q.top_k, q.schema.as_str(), q.table.as_str()), (5, 5, "public", "chunks"));
        assert_eq!(q.filters[1].property, "tags");
        assert_eq!(
            p.tables[0].vector_flags[0].properties().collect::<Vec<_>>(),
            ["tags_billing", "tags_api"]
        );
    }

    #[test]
    fn query_shape_errors_point_at_the_key() {
        let q = |body: &str| format!("[[queries]]\nname = \"q\"\ntable = \"chunks\"\n{body}\n");
        let cases = [
            (q("k = 0"), "queries[0].k: must be 1 to 100"),
            (q("k = 10\ntop_k = 5"), "queries[0].top_k: must be from k (10) to 100"),
            (
                q("filters = [{ column = \"tags\", op = \"eq\", vectorize = \"flags\" }]"),
                "queries[0].filters[0].op: flags carry",
            ),
            (
                q("filters = [{ column = \"org\", op = \"in\", vectorize = \"namespace\" }]"),
                "op must be \"eq\"",
            ),
            (
                q("filters = [{ column = \"tags\", op = \"like\", vectorize = \"flags\" }]"),
                "unknown variant `like`",
            ),
            (
                q("filters = [{ column = \"t\", op = \"eq\", vectorize = \"post\", property = \"x\" }]"),
                "filters[0].property: only a",
            ),
            (
                "[[queries]]\nname = \"q\"\ntable = \"docs\"\n".to_string(),
                "queries[0].table: `docs` is not a [[tables]] entry",
            ),
            (format!("{}{}", q(""), q("")), "queries[1].name: `q` is also the name of queries[0]"),
        ];
        for (body, want) in cases {
            let e = error(&body);
            assert!(e.contains(want), "{body}\n  gave: {e}\n  want: {want}");
        }
    }

    #[test]
    fn flags_are_checked_and_count_as_indexes() {
        let t = |flags: &str| {
            format!("[[tables]]\nname = \"c\"\nvector = \"e\"\nvector_metadata_flags = {flags}\n")
        };
        let e = |text: String| match parse_project(&text, Path::new("pgflare.toml")) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        };
        assert!(e(t("{ tags = [\"a.b\"] }"))
            .contains("vector_metadata_flags.tags[0]: `a.b` would make the property `tags_a.b`"));
        assert!(e(t("{ tags = [\"a\", \"a\"] }")).contains("tags[1]: `a` is listed twice"));
        assert!(e(t("{ tags = [] }")).contains("list the values"));
        let eleven: Vec<String> = (0..11).map(|i| format!("\"v{i}\"")).collect();
        assert!(e(t(&format!("{{ tags = [{}] }}", eleven.join(", ")))).contains("11 metadata indexes"));
        assert!(e("[[tables]]\nname = \"c\"\nvector_metadata_flags = { tags = [\"a\"] }\n".into())
            .contains("vector_metadata_flags: needs `vector`"));
    }
}
