//! The filtering side of `inspect`'s scan: for each column a query could
//! filter its vectors on, whether a Vectorize metadata index filters it as
//! it is, and the layouts that can, each with its cost. Vectorize indexes
//! strings (on their first 64 bytes), numbers and booleans, at most 10 per
//! index, has no array containment and no `$or` (cloudflare-docs
//! `vectorize/reference/metadata-filtering.mdx`, `platform/limits.mdx`);
//! a `text[]` of tags, the usual RAG filter, is the column that breaks.
//! [`survey`] reads the numbers in a few grouped scans; [`judge`] turns
//! them into layouts, so the judgments are tested without a database.

use serde::Serialize;
use sqlx::AssertSqlSafe;
use sqlx::Row as _;

use super::conn::SourceConn;
use crate::batch::{quote_ident, ColumnSpec, TableSpec};
use crate::cloudflare::limits::*;
use crate::error::{Error, Result};
use crate::typemap::MetadataForm;

/// How many of a column's most frequent values the survey keeps.
const TOP_VALUES: usize = 20;

/// Vectorize indexes a string on its first 64 bytes (cloudflare-docs
/// `vectorize/reference/metadata-filtering.mdx`, "String values are
/// indexed on their first 64 bytes").
pub const STRING_INDEX_BYTES: u64 = 64;

/// The matches a post-filter wants in the answer, per asked match: the
/// topK is chosen so that on average twice k rows hold the value (the
/// filter assumed independent of similarity, which nothing guarantees).
const POST_MARGIN: f64 = 2.0;

/// What a metadata value is, for filtering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Array,
    String,
    Number,
    Boolean,
}

impl Shape {
    /// The shape a column's values take in metadata; `None` for what is not
    /// a filter candidate (JSON, vectors, binary).
    pub fn of(c: &ColumnSpec) -> Option<Shape> {
        match c.ty.metadata_form()? {
            MetadataForm::StringArray => Some(Shape::Array),
            MetadataForm::String => Some(Shape::String),
            MetadataForm::Number => Some(Shape::Number),
            MetadataForm::Boolean => Some(Shape::Boolean),
            MetadataForm::Json => None,
        }
    }
}

/// How many rows hold one value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValueCount {
    pub value: String,
    pub rows: u64,
}

/// What one candidate filter column holds, among the rows with a vector.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnSurvey {
    pub column: String,
    pub pg_type: String,
    pub shape: Shape,
    /// Rows with a vector.
    pub vectors: u64,
    /// Of them, rows with a value (arrays: a non-empty one).
    pub rows: u64,
    /// Distinct values (arrays: distinct elements).
    pub distinct: u64,
    /// Array elements over all rows (0 for scalars).
    pub elements: u64,
    /// The longest value in bytes (arrays: the longest element).
    pub max_bytes: u64,
    /// Distinct values that share their first 64 bytes with another one.
    pub prefix_shared: u64,
    /// The most frequent values (strings and arrays), most frequent first.
    pub top: Vec<ValueCount>,
}

/// Reads [`ColumnSurvey`] for `columns` of `t` (names of columns that have
/// a [`Shape`]), among rows whose `vector` is not NULL.
pub async fn survey(
    conn: &mut SourceConn,
    t: &TableSpec,
    vector: &str,
    columns: &[String],
) -> Result<Vec<ColumnSurvey>> {
    let ctx = || format!("surveying the filter columns of {}", t.qualified());
    let has_vector = format!("s.{} IS NOT NULL", quote_ident(vector));
    let mut out = Vec::new();
    for name in columns {
        let Some((c, shape)) = t.column(name).and_then(|c| Shape::of(c).map(|s| (c, s))) else { continue };
        let col = format!("s.{}", quote_ident(&c.name));
        // Arrays are surveyed by element; a scalar is its own element.
        let (from, value, present) = match shape {
            Shape::Array => (
                format!("{} AS s CROSS JOIN LATERAL unnest({col}::text[]) AS u(e)", t.sql_name()),
                "u.e".to_string(),
                format!("cardinality({col}) > 0"),
            ),
            _ => (format!("{} AS s", t.sql_name()), format!("{col}::text"), format!("{col} IS NOT NULL")),
        };
        let counts = sqlx::query(AssertSqlSafe(format!(
            "SELECT count(*), count(*) FILTER (WHERE {present}) FROM {} AS s WHERE {has_vector}",
            t.sql_name()
        )))
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::db(ctx()))?;
        let values = sqlx::query(AssertSqlSafe(format!(
            "SELECT count({value}), count(DISTINCT {value}), coalesce(max(octet_length({value})), 0)::int8, \
             count(DISTINCT substring(convert_to({value}, 'UTF8') FROM 1 FOR {STRING_INDEX_BYTES})) \
             FROM {from} WHERE {has_vector}"
        )))
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::db(ctx()))?;
        let top = if matches!(shape, Shape::Array | Shape::String) {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT {value}, count(*) FROM {from} WHERE {has_vector} AND {value} IS NOT NULL \
                 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {TOP_VALUES}"
            )))
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::db(ctx()))?
            .iter()
            .map(|r| ValueCount { value: r.get(0), rows: r.get::<i64, _>(1).max(0) as u64 })
            .collect()
        } else {
            Vec::new()
        };
        let n = |r: &sqlx::postgres::PgRow, i: usize| r.get::<i64, _>(i).max(0) as u64;
        let (distinct, prefixes) = (n(&values, 1), n(&values, 3));
        out.push(ColumnSurvey {
            column: c.name.clone(),
            pg_type: c.pg_type.clone(),
            shape,
            vectors: n(&counts, 0),
            rows: n(&counts, 1),
            distinct,
            elements: if shape == Shape::Array { n(&values, 0) } else { 0 },
            max_bytes: n(&values, 2),
            prefix_shared: distinct - prefixes.min(distinct),
            top,
        });
    }
    Ok(out)
}

/// How pgflare.toml carries a column into Vectorize today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Carried {
    /// A metadata property with a metadata index.
    Indexed,
    /// A metadata property without an index: stored, not filterable.
    Stored,
    /// `vector_metadata_flags`: one boolean property per listed value.
    Flags,
    /// `vector_namespace`.
    Namespace,
    /// Not sent to Vectorize at all.
    NotSent,
}

/// One way of making a column filterable, and what it costs.
#[derive(Clone, Debug, Serialize)]
pub struct Layout {
    /// `property`, `flags`, `namespace` or `post` (the `vectorize` of a
    /// `[[queries]]` filter).
    pub form: &'static str,
    /// Whether it answers the filter for (nearly) every value.
    pub fits: bool,
    /// Metadata indexes it takes (of 10).
    pub indexes: usize,
    /// Bytes it adds to one vector's metadata at most (of 10 KiB).
    pub metadata_bytes: u64,
    /// The topK a query with k results asks Vectorize for.
    pub top_k: usize,
    /// What it covers and where it falls short.
    pub note: String,
    /// The values it flags (`flags` only), most frequent first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// One column's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnFit {
    pub column: String,
    pub pg_type: String,
    pub shape: Shape,
    pub carried: Carried,
    /// Whether a metadata index on the column as it is answers its filters.
    pub filterable: bool,
    /// Why not, or what to know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub layouts: Vec<Layout>,
}

/// What the judgment needs besides the survey.
pub struct Context<'a> {
    /// k of the service's query (from `[[queries]]`, else 5).
    pub k: usize,
    pub carried: Carried,
    /// Metadata indexes free for this column: 10 minus those the other
    /// columns take (its own, if any, count as free).
    pub free_indexes: usize,
    /// `vector_metadata_separator` (flag property = column + it + value).
    pub separator: &'a str,
}

/// The layouts that can filter `s`, and whether it filters as it is.
pub fn judge(s: &ColumnSurvey, cx: &Context) -> ColumnFit {
    let mut layouts = Vec::new();
    let (filterable, problem) = match s.shape {
        Shape::Array => (
            false,
            Some(format!(
                "an array: Vectorize indexes strings, numbers and booleans, not arrays, and has no `$or`, \
                 so a filter on `{}` as a property matches nothing",
                s.column
            )),
        ),
        Shape::String if s.max_bytes > STRING_INDEX_BYTES && s.prefix_shared > 0 => (
            false,
            Some(format!(
                "{} distinct values share their first {STRING_INDEX_BYTES} bytes with another (values up to \
                 {} bytes; Vectorize indexes strings on their first {STRING_INDEX_BYTES}): `$eq` on one \
                 also matches the others",
                s.prefix_shared, s.max_bytes
            )),
        ),
        Shape::String if s.max_bytes > STRING_INDEX_BYTES => (
            true,
            Some(format!(
                "values up to {} bytes are indexed on their first {STRING_INDEX_BYTES}, which differ here; \
                 range filters compare those prefixes",
                s.max_bytes
            )),
        ),
        _ => (true, None),
    };
    if s.shape == Shape::Array {
        layouts.push(flags_layout(s, cx));
    } else {
        let bytes = s.column.len() as u64 + s.max_bytes + 6;
        let room = cx.carried == Carried::Indexed || cx.free_indexes > 0;
        layouts.push(Layout {
            form: "property",
            fits: filterable && room,
            indexes: 1,
            metadata_bytes: bytes,
            top_k: cx.k,
            note: if filterable && !room {
                format!(
                    "the {VECTORIZE_MAX_METADATA_INDEXES} metadata indexes are taken: index this column \
                     instead of another"
                )
            } else if filterable {
                "a metadata index on the column: $eq $ne $in $nin, and $lt..$gte on numbers".into()
            } else {
                "the index cannot tell these values apart".into()
            },
            values: Vec::new(),
        });
        if let Some(l) = namespace_layout(s, cx.k) {
            layouts.push(l);
        }
    }
    // A post-filter is the way out for what no index filters, not an
    // alternative to an index that works.
    if !filterable {
        layouts.push(post_layout(s, cx.k));
    }
    ColumnFit {
        column: s.column.clone(),
        pg_type: s.pg_type.clone(),
        shape: s.shape,
        carried: cx.carried,
        filterable,
        problem,
        layouts,
    }
}

/// One boolean property per frequent value, as many as free indexes allow.
fn flags_layout(s: &ColumnSurvey, cx: &Context) -> Layout {
    let usable = |v: &&ValueCount| {
        !v.value.is_empty() && check_metadata_key(&format!("{}{}{}", s.column, cx.separator, v.value)).is_ok()
    };
    let chosen: Vec<&ValueCount> = s.top.iter().filter(usable).take(cx.free_indexes).collect();
    let covered: u64 = chosen.iter().map(|v| v.rows).sum();
    let share = pct(covered, s.elements);
    let bytes: u64 =
        chosen.iter().map(|v| (s.column.len() + cx.separator.len() + v.value.len()) as u64 + 8).sum();
    let rest = s.distinct.saturating_sub(chosen.len() as u64);
    Layout {
        form: "flags",
        fits: !chosen.is_empty() && rest == 0,
        indexes: chosen.len(),
        metadata_bytes: bytes,
        top_k: cx.k,
        note: if chosen.is_empty() {
            format!(
                "the {VECTORIZE_MAX_METADATA_INDEXES} metadata indexes are taken: leave some out of \
                 vector_metadata_indexes to flag the most frequent values"
            )
        } else {
            format!(
                "{} of {} values flagged, {share} of the values held; a query on an unflagged value \
                 needs a post-filter; one request per asked value",
                chosen.len(),
                s.distinct
            )
        },
        values: chosen.iter().map(|v| v.value.clone()).collect(),
    }
}

/// A namespace per value: no index, one value per vector and per query.
/// Offered for columns that group the vectors (a value held by ten or
/// more on average: a tenant, a document, a source), not for near-unique
/// ones such as timestamps.
fn namespace_layout(s: &ColumnSurvey, k: usize) -> Option<Layout> {
    if s.shape == Shape::Boolean || s.distinct == 0 || s.distinct.saturating_mul(10) > s.rows {
        return None;
    }
    let long = s.max_bytes > VECTORIZE_MAX_NAMESPACE_BYTES as u64;
    let many = s.distinct > VECTORIZE_MAX_NAMESPACES_PER_INDEX;
    let note = if long {
        format!(
            "values up to {} bytes; a namespace name is at most {VECTORIZE_MAX_NAMESPACE_BYTES}",
            s.max_bytes
        )
    } else if many {
        format!("{} values; an index holds {VECTORIZE_MAX_NAMESPACES_PER_INDEX} namespaces", s.distinct)
    } else {
        format!(
            "{} namespaces (limit {VECTORIZE_MAX_NAMESPACES_PER_INDEX}; {VECTORIZE_MAX_NAMESPACES_PER_INDEX_FREE} \
             on Free); equality on one value per query, no index; a vector lives in one namespace",
            s.distinct
        )
    };
    Some(Layout {
        form: "namespace",
        fits: !long && !many,
        indexes: 0,
        metadata_bytes: 0,
        top_k: k,
        note,
        values: Vec::new(),
    })
}

/// No Vectorize filter: a larger topK, the answer filtered on its D1 rows.
/// Enough for values held by at least `POST_MARGIN * k / 100` of the
/// vectors; rarer ones come back short.
fn post_layout(s: &ColumnSurvey, k: usize) -> Layout {
    let max = VECTORIZE_MAX_TOP_K;
    let needed = |rows: u64| post_top_k(k, rows, s.vectors);
    let reach = s.top.iter().filter(|v| needed(v.rows) <= max).count();
    let first = s.top.first().map(|v| needed(v.rows).max(k));
    let floor = POST_MARGIN * k as f64 / max as f64;
    let scalar = s.shape != Shape::Array;
    Layout {
        form: "post",
        fits: scalar && s.distinct > 0 && reach as u64 == s.distinct,
        indexes: 0,
        metadata_bytes: 0,
        top_k: max,
        note: format!(
            "topK {max} finds k = {k} for values held by {:.0}% of the vectors or more ({reach} of the {} \
             most frequent{}); rarer values come back short",
            floor * 100.0,
            s.top.len(),
            first.map(|n| format!("; the most frequent needs topK {n}")).unwrap_or_default()
        ),
        values: Vec::new(),
    }
}

/// The topK at which a value held by `rows` of `vectors` is expected
/// `POST_MARGIN * k` times.
pub fn post_top_k(k: usize, rows: u64, vectors: u64) -> usize {
    if rows == 0 {
        return usize::MAX;
    }
    (POST_MARGIN * k as f64 * vectors as f64 / rows as f64).ceil() as usize
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".into();
    }
    format!("{:.0}%", 100.0 * part as f64 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(top: &[(&str, u64)], distinct: u64) -> ColumnSurvey {
        ColumnSurvey {
            column: "tags".into(),
            pg_type: "text[]".into(),
            shape: Shape::Array,
            vectors: 1000,
            rows: 990,
            distinct,
            elements: top.iter().map(|t| t.1).sum::<u64>() + 10,
            max_bytes: 9,
            prefix_shared: 0,
            top: top.iter().map(|&(v, rows)| ValueCount { value: v.into(), rows }).collect(),
        }
    }

    fn cx(carried: Carried, free: usize) -> Context<'static> {
        Context { k: 5, carried, free_indexes: free, separator: "_" }
    }

    fn layout<'a>(f: &'a ColumnFit, form: &str) -> &'a Layout {
        f.layouts.iter().find(|l| l.form == form).expect(form)
    }

    #[test]
    fn an_array_is_not_filterable_and_gets_flags_within_the_free_indexes() {
        let s = tags(&[("api", 400), ("billing", 300), ("a.b", 200), ("faq", 50)], 5);
        let f = judge(&s, &cx(Carried::Stored, 2));
        assert!(!f.filterable);
        assert!(f.problem.as_deref().unwrap_or("").contains("not arrays"), "{f:?}");
        let flags = layout(&f, "flags");
        // `a.b` cannot be a property name (no dots): skipped.
        assert_eq!(flags.values, ["api", "billing"]);
        assert_eq!((flags.indexes, flags.fits), (2, false));
        assert_eq!(flags.metadata_bytes, ("tags_api".len() + 8 + "tags_billing".len() + 8) as u64);
        assert!(flags.note.contains("2 of 5 values flagged, 73% of the values held"), "{}", flags.note);
        // With no free index there is no flag to offer.
        assert!(layout(&judge(&s, &cx(Carried::Stored, 0)), "flags")
            .note
            .contains("metadata indexes are taken"));
        // An empty value makes no property (`tags_`): skipped too.
        let s = tags(&[("", 500), ("api", 400)], 2);
        assert_eq!(layout(&judge(&s, &cx(Carried::Flags, 9)), "flags").values, ["api"]);
    }

    #[test]
    fn post_filters_reach_values_held_by_a_tenth_of_the_vectors_at_k_5() {
        assert_eq!(post_top_k(5, 100, 1000), 100);
        assert_eq!(post_top_k(5, 99, 1000), 102);
        assert_eq!(post_top_k(5, 0, 1000), usize::MAX);
        // Scalars that filter as they are get no post layout.
        assert!(judge(&string(10, 0, 3), &cx(Carried::Indexed, 9)).layouts.iter().all(|l| l.form != "post"));
        let s = tags(&[("api", 400), ("billing", 100), ("faq", 50)], 3);
        let judged = judge(&s, &cx(Carried::Stored, 9));
        let post = layout(&judged, "post");
        assert_eq!(post.top_k, 100);
        assert!(
            post.note.contains("held by 10% of the vectors or more (2 of the 3 most frequent; the most frequent needs topK 25)"),
            "{}",
            post.note
        );
        assert!(!post.fits, "an array post-filter is offered, never exact for every value");
    }

    fn string(max_bytes: u64, prefix_shared: u64, distinct: u64) -> ColumnSurvey {
        ColumnSurvey {
            column: "source".into(),
            pg_type: "text".into(),
            shape: Shape::String,
            vectors: 1000,
            rows: 1000,
            distinct,
            elements: 0,
            max_bytes,
            prefix_shared,
            top: vec![ValueCount { value: "x".into(), rows: 1000 }],
        }
    }

    #[test]
    fn strings_filter_on_their_first_64_bytes() {
        let short = judge(&string(64, 0, 3), &cx(Carried::Indexed, 0));
        assert!(short.filterable && short.problem.is_none());
        assert!(layout(&short, "property").fits);
        let long_distinct = judge(&string(200, 0, 3), &cx(Carried::Stored, 1));
        assert!(long_distinct.filterable);
        assert!(long_distinct.problem.as_deref().unwrap_or("").contains("indexed on their first 64"));
        let long_shared = judge(&string(200, 2, 3), &cx(Carried::Stored, 1));
        assert!(!long_shared.filterable);
        assert!(long_shared
            .problem
            .as_deref()
            .unwrap_or("")
            .contains("2 distinct values share their first 64"));
        assert!(!layout(&long_shared, "property").fits);
        // No free index and not indexed today: the property layout does not fit.
        assert!(!layout(&judge(&string(10, 0, 3), &cx(Carried::Stored, 0)), "property").fits);
    }

    #[test]
    fn a_namespace_takes_short_values_of_a_bounded_count() {
        let ok = judge(&string(36, 0, 100), &cx(Carried::Stored, 1));
        let ns = layout(&ok, "namespace");
        assert!(ns.fits && ns.note.starts_with("100 namespaces"), "{}", ns.note);
        // Near-unique values (timestamps, ids) group nothing: not offered.
        assert!(judge(&string(36, 0, 101), &cx(Carried::Stored, 1))
            .layouts
            .iter()
            .all(|l| l.form != "namespace"));
        assert!(!layout(&judge(&string(65, 0, 3), &cx(Carried::Stored, 1)), "namespace").fits);

        let n = VECTORIZE_MAX_NAMESPACES_PER_INDEX + 1;
        let many = judge(&ColumnSurvey { rows: n * 10, ..string(10, 0, n) }, &cx(Carried::Stored, 1));
        assert!(!layout(&many, "namespace").fits);
    }
}
