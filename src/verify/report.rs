//! The verification report `pgflare verify` writes: one model, rendered as
//! JSON (for pipelines; `schemas/verify-report.schema.json`), Markdown and
//! a self-contained HTML page (for people). The verdict decides the exit
//! code: 0 consistent, 1 differences found, 2 could not verify. Vectors
//! the load's rules leave out (`skipped`) are differences too, unless the
//! user accepts them (`--accept-skipped`): then the verdict is
//! `consistent_except_skipped`, exit 0, never plain `consistent`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "pgflare-verify-v1";

/// The most differences listed per table and target (all are counted).
pub const MAX_LISTED: usize = 200;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VerifyReport {
    /// Always [`FORMAT`].
    pub format: String,
    /// `pgflare <version>`.
    pub created_by: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub seconds: f64,
    /// The source database, password masked.
    pub source: String,
    /// The source snapshot the comparison read (`txid_snapshot`, time).
    pub snapshot: String,
    pub verdict: Verdict,
    pub tables: Vec<TableReport>,
    /// Similarity-query parity, when `--queries N` asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<QueryParity>,
    /// "Results match Supabase": the `[[queries]]` shapes on both stacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_shapes: Option<super::queries::report::ShapesReport>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every compared row and vector matches (and query parity passed).
    Consistent,
    /// Everything matches except vectors the load's rules leave out, which
    /// `--accept-skipped` accepted (they are counted and listed).
    ConsistentExceptSkipped,
    /// At least one difference (or query parity below the threshold).
    Differences,
    /// The comparison could not be made; `Verdict::summary` says why.
    Error,
}

impl Status {
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Consistent | Status::ConsistentExceptSkipped => 0,
            Status::Differences => 1,
            Status::Error => 2,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    pub status: Status,
    /// One line a person reads first, e.g. "2 tables, 20,022 rows: 3
    /// differences in public.chunks (D1)".
    pub summary: String,
}

/// One source table against its targets.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TableReport {
    /// Source table, `schema.name`.
    pub table: String,
    pub targets: Vec<TargetReport>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    D1,
    Vectorize,
}

/// One table compared with one target.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TargetReport {
    pub kind: TargetKind,
    /// Where the target is: `sqlite:/path`, `api:.../d1/database/ID`, the
    /// index URL; never a token.
    pub location: String,
    /// The table or index name on the target.
    pub name: String,
    /// Rows (D1) or vectors (Vectorize) the source has for this target.
    pub source_rows: u64,
    pub target_rows: u64,
    /// Key buckets compared, and how many differed (drilled into).
    pub buckets: u64,
    pub buckets_differing: u64,
    /// Every difference counted by kind.
    pub counts: BTreeMap<DiffKind, u64>,
    /// The first [`MAX_LISTED`] differences, by key.
    pub differences: Vec<Difference>,
    /// Source rows changed after the last sync checkpoint: expected to
    /// differ until the next sync, not counted as failures.
    pub pending_sync: u64,
    /// `--sample`: the fraction of key buckets compared (1 = all).
    pub sampled: f64,
    /// What a reader should know about this comparison (e.g. the index was
    /// still applying writes while it was read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Vectorize: which vectors' values were compared and what that
    /// proves ([`crate::verify::value_check`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<crate::verify::value_check::ValueCheck>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// In the source, not in the target.
    Missing,
    /// In the target, not in the source.
    Extra,
    /// Same key, other values (D1); `fields` says which.
    Changed,
    /// Same id, other vector values (Vectorize); `max_abs_diff` says how far.
    VectorValues,
    /// Same id and values, other metadata or namespace (Vectorize).
    Metadata,
    /// In the source, but the load's rules leave its vector out (a row
    /// Vectorize would refuse); `reason` says which rule (Vectorize).
    Skipped,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Difference {
    pub kind: DiffKind,
    /// The row key as a person reads it: `id=…` (the vector id for Vectorize).
    pub key: String,
    /// For `changed` and `metadata`: each differing field with both values, shortened.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldDiff>,
    /// For `vector_values`: the largest absolute difference of one element
    /// (or null when the lengths differ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_abs_diff: Option<f64>,
    /// For `skipped`: the column (and JSON path) and the rule it breaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Difference {
    /// A difference that is just a kind and a key.
    pub fn bare(kind: DiffKind, key: String) -> Difference {
        Difference { kind, key, fields: Vec::new(), max_abs_diff: None, reason: None }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FieldDiff {
    /// The source column (or metadata key / `namespace`).
    pub field: String,
    /// Both values as text, at most ~120 characters each (`NULL` for null,
    /// `(absent)` for a missing metadata key).
    pub source: String,
    pub target: String,
}

/// Similarity-query parity: the same queries answered exactly from the
/// source vectors and by Vectorize.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QueryParity {
    pub k: usize,
    /// Mean recall@k that passes (default 0.95).
    pub threshold: f64,
    pub mean_recall: f64,
    pub min_recall: f64,
    pub passed: bool,
    pub queries: Vec<QueryResult>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QueryResult {
    /// The source row whose vector was the query.
    pub id: String,
    /// |exact top-k ∩ Vectorize top-k| / k.
    pub recall: f64,
    /// Fraction of the common ids that sit at the same rank on both sides.
    pub rank_agreement: f64,
    /// Largest |exact score − Vectorize score| over the common ids.
    pub max_score_diff: f64,
    /// Ids Vectorize returned that D1 does not hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_in_d1: Vec<String>,
}

impl VerifyReport {
    /// The status the contents call for: an error verdict stays; otherwise
    /// any counted difference or failed parity is `differences`, and
    /// skipped vectors are too unless `accept_skipped`.
    pub fn decide(&mut self, accept_skipped: bool) {
        if self.verdict.status == Status::Error {
            return;
        }
        let targets = || self.tables.iter().flat_map(|t| &t.targets);
        let count = |g: &TargetReport, skipped: bool| -> u64 {
            g.counts.iter().filter(|(k, _)| (**k == DiffKind::Skipped) == skipped).map(|(_, n)| n).sum()
        };
        let diffs: u64 = targets().map(|g| count(g, false)).sum();
        let skipped: u64 = targets().map(|g| count(g, true)).sum();
        let shapes_failed: Vec<&super::queries::report::ShapeReport> =
            self.query_shapes.iter().flat_map(|s| &s.shapes).filter(|s| !s.passed).collect();
        let parity_failed = self.queries.as_ref().is_some_and(|q| !q.passed) || !shapes_failed.is_empty();
        let rows: u64 = targets().map(|t| t.source_rows).sum();
        let mut parts = Vec::new();
        for t in &self.tables {
            for g in &t.targets {
                let (n, s) = (count(g, false), count(g, true));
                let what = match (n, s) {
                    (0, 0) => continue,
                    (n, 0) => format!("{n}"),
                    (0, s) => format!("{s} skipped"),
                    (n, s) => format!("{n} + {s} skipped"),
                };
                parts.push(format!("{what} in {} ({})", t.table, kind_name(g.kind)));
            }
        }
        if let Some(q) = self.queries.as_ref().filter(|q| !q.passed) {
            parts.push(format!("query recall@{} {:.3} below {:.2}", q.k, q.mean_recall, q.threshold));
        }
        for s in shapes_failed {
            let ctx = s.queries - s.context_equal;
            let mut why = vec![format!("recall@{} {:.3}", s.k, s.mean_recall)];
            if ctx > 0 {
                why.push(format!("{ctx} with other context"));
            }
            parts.push(format!("query `{}` does not match Supabase ({})", s.name, why.join(", ")));
        }
        self.verdict = if diffs == 0 && skipped == 0 && !parity_failed {
            Verdict {
                status: Status::Consistent,
                summary: format!(
                    "{} tables, {rows} source rows and vectors compared: all equal",
                    self.tables.len()
                ),
            }
        } else if diffs == 0 && !parity_failed && accept_skipped {
            Verdict {
                status: Status::ConsistentExceptSkipped,
                summary: format!(
                    "all equal except vectors left out by Vectorize's rules, accepted with --accept-skipped: {}",
                    parts.join("; ")
                ),
            }
        } else {
            Verdict { status: Status::Differences, summary: parts.join("; ") }
        };
    }
}

pub fn kind_name(k: TargetKind) -> &'static str {
    match k {
        TargetKind::D1 => "D1",
        TargetKind::Vectorize => "Vectorize",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(counts: &[(DiffKind, u64)]) -> VerifyReport {
        let target = TargetReport {
            kind: TargetKind::Vectorize,
            location: "vectorize index vi".into(),
            name: "vi".into(),
            source_rows: 10,
            target_rows: 5,
            buckets: 0,
            buckets_differing: 0,
            counts: counts.iter().copied().collect(),
            differences: Vec::new(),
            pending_sync: 0,
            sampled: 1.0,
            notes: Vec::new(),
            values: None,
        };
        VerifyReport {
            format: FORMAT.into(),
            created_by: "pgflare 0.1.0".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            seconds: 0.0,
            source: "postgres://x".into(),
            snapshot: "1:1:".into(),
            verdict: Verdict { status: Status::Consistent, summary: String::new() },
            tables: vec![TableReport { table: "public.items".into(), targets: vec![target] }],
            queries: None,
            query_shapes: None,
        }
    }

    #[test]
    fn skipped_vectors_are_never_plainly_consistent() {
        let mut r = report(&[(DiffKind::Skipped, 5)]);
        r.decide(false);
        assert_eq!(r.verdict.status, Status::Differences);
        assert_eq!(r.verdict.summary, "5 skipped in public.items (Vectorize)");
        r.decide(true);
        assert_eq!((r.verdict.status, r.verdict.status.exit_code()), (Status::ConsistentExceptSkipped, 0));
        assert!(r.verdict.summary.contains("5 skipped in public.items (Vectorize)"), "{}", r.verdict.summary);
        let mut r = report(&[(DiffKind::Skipped, 5), (DiffKind::Missing, 1)]);
        r.decide(true);
        assert_eq!(r.verdict.status, Status::Differences);
        assert_eq!(r.verdict.summary, "1 + 5 skipped in public.items (Vectorize)");
        let mut r = report(&[]);
        r.decide(true);
        assert_eq!(r.verdict.status, Status::Consistent);
    }
}
