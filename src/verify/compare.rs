//! Classifying what the bucket engine found between the source and D1
//! ([`crate::digest::pass`]): the buckets a `--sample` compares, and the
//! rows of differing buckets sorted into missing, extra, or changed (with
//! the differing columns and both values) in a target report.

use std::collections::{BTreeMap, BTreeSet};

use super::report::{DiffKind, Difference, FieldDiff, TargetKind, TargetReport, MAX_LISTED};
use crate::digest::buckets::Buckets;
use crate::digest::pass::{D1Shape, Rows};
use crate::digest::shown::{window, Seen};

/// The buckets a `--sample` fraction compares: the first `fraction` of them.
pub fn sampled(buckets: usize, fraction: f64) -> BTreeSet<usize> {
    let n = ((buckets as f64 * fraction).ceil() as usize).clamp(1, buckets);
    (0..n).collect()
}

/// Classifies the rows of the differing buckets into a target report.
pub fn classify(
    shape: &D1Shape,
    location: &str,
    counts: (u64, u64, usize, usize),
    source: &Rows,
    target: &Rows,
    sampled: f64,
) -> TargetReport {
    let (source_rows, target_rows, buckets, differing) = counts;
    let columns: Vec<&str> = shape.table.spec.columns.iter().map(|c| c.name.as_str()).collect();
    let mut found: Vec<Difference> = Vec::new();
    for (id, s) in source {
        match target.get(id) {
            None => found.push(Difference {
                kind: DiffKind::Missing,
                key: s.key.clone(),
                fields: vec![],
                max_abs_diff: None,
                reason: None,
            }),
            Some(t) if t.digest != s.digest => {
                let fields = columns
                    .iter()
                    .enumerate()
                    .zip(s.fields.iter().zip(&t.fields))
                    .filter(|(_, (a, b))| a.0 != b.0)
                    .map(|((i, c), (a, b))| {
                        // A long text: where the two part, not their (same) start.
                        let (source, target) = window(
                            Seen { shown: &a.1, kept: s.kept.get(i).and_then(Option::as_ref) },
                            Seen { shown: &b.1, kept: t.kept.get(i).and_then(Option::as_ref) },
                        );
                        FieldDiff { field: c.to_string(), source, target }
                    })
                    .collect();
                found.push(Difference {
                    kind: DiffKind::Changed,
                    key: s.key.clone(),
                    fields,
                    max_abs_diff: None,
                    reason: None,
                });
            }
            Some(_) => {}
        }
    }
    for (id, t) in target {
        if !source.contains_key(id) {
            found.push(Difference {
                kind: DiffKind::Extra,
                key: t.key.clone(),
                fields: vec![],
                max_abs_diff: None,
                reason: None,
            });
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key).then(a.kind.cmp(&b.kind)));
    let mut counts: BTreeMap<DiffKind, u64> = BTreeMap::new();
    found.iter().for_each(|d| *counts.entry(d.kind).or_default() += 1);
    found.truncate(MAX_LISTED);
    TargetReport {
        kind: TargetKind::D1,
        location: location.to_string(),
        name: shape.table.name.clone(),
        source_rows,
        target_rows,
        buckets: buckets as u64,
        buckets_differing: differing as u64,
        counts,
        differences: found,
        pending_sync: 0,
        sampled,
        notes: Vec::new(),
        values: None,
    }
}

/// The first of `buckets` (in order) that together hold at least `rows`
/// rows of `side`: enough to list that many differences without reading
/// every row again.
pub fn first_rows(side: &Buckets, buckets: &BTreeSet<usize>, rows: u64) -> BTreeSet<usize> {
    let mut seen = 0;
    buckets
        .iter()
        .copied()
        .take_while(|&b| {
            let more = seen < rows;
            seen += side.rows(b);
            more
        })
        .collect()
}

/// A D1 table that does not exist: every source row of the compared
/// buckets is missing, counted from the source's bucket sums (the listed
/// differences are the first of them), and a note says why.
pub fn mark_absent(report: &mut TargetReport, source: &Buckets, sample: &BTreeSet<usize>) {
    let rows: u64 = sample.iter().map(|&b| source.rows(b)).sum();
    report.counts.clear();
    if rows > 0 {
        report.counts.insert(DiffKind::Missing, rows);
    }
    report.buckets_differing = sample.iter().filter(|&&b| source.rows(b) > 0).count() as u64;
    report.target_rows = 0;
    report.notes.push(format!(
        "D1 has no table {}: every source row is missing (was the table created and loaded?)",
        report.name
    ));
}
