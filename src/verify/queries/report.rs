//! The report's "results match Supabase" section: per `[[queries]]` shape,
//! how the service's real query (vector top-k with its filter, context
//! from D1) answers on Cloudflare against the exact answer from the
//! source, and for each miss the reason. Part of the one report model
//! (`schemas/verify-report.schema.json`, key `query_shapes`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most query results listed per shape (worst first; all are counted).
pub const MAX_QUERIES_LISTED: usize = 50;

/// The most misses listed per query.
pub const MAX_MISSES_LISTED: usize = 20;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ShapesReport {
    /// Where the query vectors came from: `query file PATH` or `sampled from the source`.
    pub queries_from: String,
    /// Cloudflare API requests this section used (queries, and the
    /// `get_by_ids` that explain misses).
    pub requests: u64,
    pub shapes: Vec<ShapeReport>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ShapeReport {
    pub name: String,
    /// Source table, `schema.name`.
    pub table: String,
    pub k: usize,
    /// The topK asked of Vectorize.
    pub top_k: usize,
    /// Each filter as both sides run it, e.g. `tags overlap -> flags (one query per value)`.
    pub filters: Vec<String>,
    pub queries: usize,
    /// Mean recall@k that passes (`--min-recall`).
    pub threshold: f64,
    pub mean_recall: f64,
    pub min_recall: f64,
    pub mean_rank_agreement: f64,
    /// Queries whose every returned context equals the source's.
    pub context_equal: usize,
    /// Vectorize requests per query (mean).
    pub requests_per_query: f64,
    pub passed: bool,
    /// Misses counted by reason.
    pub reasons: BTreeMap<MissReason, u64>,
    /// The first [`MAX_QUERIES_LISTED`] queries, worst recall first.
    pub results: Vec<ShapeQuery>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ShapeQuery {
    /// The query's id (the query file's `id`, or the sampled row's vector id).
    pub id: String,
    /// The filter values, by column.
    pub filter: serde_json::Value,
    /// |exact top-k ∩ Cloudflare's top-k| / min(k, exact matches).
    pub recall: f64,
    /// Fraction of the common ids at the same rank on both sides.
    pub rank_agreement: f64,
    /// Rows the source filter admits (the exact answer has min(k, this)).
    pub source_matches: usize,
    /// Every context Cloudflare returned equals the source's.
    pub context_equal: bool,
    /// Vectorize refused the query (its message), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub misses: Vec<Miss>,
}

/// One id where the two answers part, and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Miss {
    /// The vector id.
    pub id: String,
    /// `missed` (in the exact answer, not Cloudflare's), `extra` (the
    /// other way) or `context` (in both, other text in D1).
    pub side: MissSide,
    pub reason: MissReason,
    /// What was seen, e.g. the property and both values.
    pub detail: String,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum MissSide {
    Missed,
    Extra,
    Context,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum MissReason {
    /// The id is not in the index.
    NotInIndex,
    /// The vector lacks the metadata property the filter needs.
    PropertyMissing,
    /// The property holds another value than the source row gives it.
    PropertyDiffers,
    /// The property holds an array: Vectorize filters no arrays.
    ArrayProperty,
    /// The property has no metadata index (or not of the value's type).
    UnindexedProperty,
    /// A string compared on its first 64 bytes matched (or not) another value.
    TruncatedProperty,
    /// Another namespace than the filter's value.
    OtherNamespace,
    /// Vectorize refused the query (its filter).
    FilterRefused,
    /// A post-filtered query: the row was not within the topK asked.
    BeyondTopK,
    /// Scores within float tolerance of the k-th: either order is right.
    TieAtK,
    /// The vector passes the filter and scores inside the top k: the
    /// index's approximate search (or a write not yet applied) left it out.
    Approximate,
    /// Cloudflare returned an id that D1 does not hold.
    NotInD1,
    /// D1's context differs from the source's.
    ContextDiffers,
    /// Cloudflare returned a row the source filter does not admit.
    FilterAdmitsOther,
}

impl MissReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MissReason::NotInIndex => "not in the index",
            MissReason::PropertyMissing => "metadata property missing",
            MissReason::PropertyDiffers => "metadata property differs from the source",
            MissReason::ArrayProperty => "array property (Vectorize filters no arrays)",
            MissReason::UnindexedProperty => "property without a metadata index",
            MissReason::TruncatedProperty => "string indexed on its first 64 bytes",
            MissReason::OtherNamespace => "other namespace",
            MissReason::FilterRefused => "Vectorize refused the filter",
            MissReason::BeyondTopK => "beyond the topK asked (post-filter)",
            MissReason::TieAtK => "score tie at the k-th",
            MissReason::Approximate => "approximate search",
            MissReason::NotInD1 => "id missing in D1",
            MissReason::ContextDiffers => "context text differs",
            MissReason::FilterAdmitsOther => "filter admits a row the source does not",
        }
    }
}
