//! The verification report for people: [`markdown`] (for a ticket or a pull
//! request) and [`html`], one self-contained page (inline CSS and an inline
//! SVG chart of recall per query; no script, font, stylesheet or URL to
//! fetch, so it opens offline from `file://` and prints). Keys, values,
//! names and the source all come from user data and may hold markup, so
//! every one of them goes through [`escape_html`] or [`escape_markdown`].

use std::fmt::Write as _;

use crate::digest::shown::thousands;

use super::report::{
    kind_name, DiffKind, Difference, QueryParity, Status, TableReport, TargetKind, TargetReport, VerifyReport,
};

/// `write!` into a `String`. Writing to a `String` cannot fail, so the
/// always-`Ok` result is dropped here once rather than at every call.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

const KINDS: [DiffKind; 6] = [
    DiffKind::Missing,
    DiffKind::Extra,
    DiffKind::Changed,
    DiffKind::VectorValues,
    DiffKind::Metadata,
    DiffKind::Skipped,
];

/// The kind's name in the JSON form (serde `snake_case`); a unit test keeps
/// the two in step.
pub fn kind_slug(k: DiffKind) -> &'static str {
    match k {
        DiffKind::Missing => "missing",
        DiffKind::Extra => "extra",
        DiffKind::Changed => "changed",
        DiffKind::VectorValues => "vector_values",
        DiffKind::Metadata => "metadata",
        DiffKind::Skipped => "skipped",
    }
}

fn status_slug(s: Status) -> &'static str {
    match s {
        Status::Consistent => "consistent",
        Status::ConsistentExceptSkipped => "consistent_except_skipped",
        Status::Differences => "differences",
        Status::Error => "error",
    }
}

/// The status as the banner and the Markdown heading show it.
fn status_word(s: Status) -> String {
    status_slug(s).replace('_', " ").to_uppercase()
}

/// `&`, `<`, `>`, `"` and `'` as entities: safe in element text and in
/// quoted attribute values alike, so one function serves both.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text that Markdown shows as written, also inside a table cell: the
/// characters that start inline markup, raw HTML, an entity or a cell
/// boundary (`|`) are backslash-escaped, and a line break becomes `<br>`
/// (a raw newline would end the table row). Block markup (`#`, `-`) only
/// acts at a line start, which escaped text never is. A `_` between two
/// letters or digits stays as is: it can neither open nor close emphasis
/// there (CommonMark's flanking rules), and `chunk_index` reads better
/// than `chunk\_index` in the raw Markdown.
pub fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut prev = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        match c {
            '_' if prev.is_some_and(char::is_alphanumeric) && next.is_some_and(char::is_alphanumeric) => {
                out.push(c)
            }
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '~' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("<br>");
            }
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
        prev = Some(c);
    }
    out
}

/// A float with `decimals` places; NaN or infinity (which JSON cannot carry
/// and a bug could produce) as `n/a` instead of a misleading number.
fn fixed(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "n/a".to_string()
    }
}

fn sampled(f: f64) -> String {
    if f >= 1.0 {
        "all buckets".to_string()
    } else {
        format!("{}% of buckets", fixed(f * 100.0, 1))
    }
}

fn total(t: &TargetReport) -> u64 {
    t.counts.values().fold(0u64, |a, b| a.saturating_add(*b))
}

/// The kinds worth a column for this target: those it can have, plus any
/// other kind that was counted anyway.
fn kinds_for(t: &TargetReport) -> Vec<DiffKind> {
    let applies = |k: DiffKind| match t.kind {
        TargetKind::D1 => matches!(k, DiffKind::Missing | DiffKind::Extra | DiffKind::Changed),
        TargetKind::Vectorize => k != DiffKind::Changed,
    };
    KINDS.into_iter().filter(|k| applies(*k) || t.counts.get(k).is_some_and(|n| *n > 0)).collect()
}

/// The counts of one target as (label, value), shared by both forms so
/// they say the same thing.
fn measures(t: &TargetReport) -> Vec<(String, String)> {
    let mut m = vec![
        ("Source rows".to_string(), thousands(t.source_rows)),
        ("Target rows".to_string(), thousands(t.target_rows)),
    ];
    match (t.kind, &t.values) {
        // Vectors are not compared by key buckets: by every id from
        // `list` and the values of what can differ plus a sample.
        (TargetKind::Vectorize, Some(v)) => {
            m.push(("Ids compared".to_string(), thousands(v.ids_compared)));
            m.push(("Values compared".to_string(), thousands(v.values_compared)));
            m.push(("Pending sync".to_string(), thousands(t.pending_sync)));
        }
        (TargetKind::Vectorize, None) => m.push(("Pending sync".to_string(), thousands(t.pending_sync))),
        (TargetKind::D1, _) => m.extend([
            ("Buckets compared".to_string(), thousands(t.buckets)),
            ("Buckets differing".to_string(), thousands(t.buckets_differing)),
            ("Pending sync".to_string(), thousands(t.pending_sync)),
            ("Sampled".to_string(), sampled(t.sampled)),
        ]),
    }
    for k in kinds_for(t) {
        m.push((kind_slug(k).replace('_', " "), thousands(t.counts.get(&k).copied().unwrap_or(0))));
    }
    m
}

/// "showing N of M" when the list was cut at `MAX_LISTED`.
fn cut_note(t: &TargetReport) -> Option<String> {
    let counted = total(t);
    let listed = t.differences.len() as u64;
    (listed < counted)
        .then(|| format!("showing {} of {}; all are counted above", thousands(listed), thousands(counted)))
}

fn max_abs_diff(d: &Difference) -> String {
    match (d.kind, d.max_abs_diff) {
        (_, Some(v)) => fixed(v, 6),
        (DiffKind::VectorValues, None) => "lengths differ".to_string(),
        _ => String::new(),
    }
}

fn meta(r: &VerifyReport) -> [(&'static str, String); 5] {
    [
        ("Source", r.source.clone()),
        ("Snapshot", r.snapshot.clone()),
        ("Started", r.started_at.clone()),
        ("Took", format!("{} s", fixed(r.seconds, 1))),
        ("Created by", r.created_by.clone()),
    ]
}

/// The report as GitHub-flavoured Markdown.
pub fn markdown(r: &VerifyReport) -> String {
    let mut s = String::new();
    let status = r.verdict.status;
    w!(s, "# pgflare verify report\n\n");
    w!(s, "**{}**: {}\n\n", status_word(status), escape_markdown(&r.verdict.summary));
    w!(s, "Exit code {}.\n\n", status.exit_code());
    for (label, value) in meta(r) {
        w!(s, "- {label}: {}\n", escape_markdown(&value));
    }
    if r.tables.is_empty() {
        w!(s, "\nNo table was compared.\n");
    }
    for t in &r.tables {
        markdown_table(&mut s, t);
    }
    if let Some(q) = &r.queries {
        markdown_queries(&mut s, q);
    }
    if let Some(q) = &r.query_shapes {
        shapes::markdown(&mut s, q);
    }
    s
}

fn markdown_table(s: &mut String, t: &TableReport) {
    w!(s, "\n## {}\n", escape_markdown(&t.table));
    for g in &t.targets {
        w!(s, "\n### {}: {}\n\n", kind_name(g.kind), escape_markdown(&g.name));
        w!(s, "Location: {}\n\n", escape_markdown(&g.location));
        for n in &g.notes {
            w!(s, "> Note: {}\n\n", escape_markdown(n));
        }
        w!(s, "| Count | Value |\n|---|---:|\n");
        for (label, value) in measures(g) {
            w!(s, "| {label} | {value} |\n");
        }
        if g.differences.is_empty() {
            w!(s, "\nNo differences listed.\n");
            continue;
        }
        match cut_note(g) {
            Some(note) => w!(s, "\nDifferences ({note}):\n\n"),
            None => w!(s, "\nDifferences:\n\n"),
        }
        w!(s, "| Kind | Key | Fields (column: source → target) or reason | Max abs diff |\n|---|---|---|---:|\n");
        for d in &g.differences {
            let mut fields: Vec<String> = d
                .fields
                .iter()
                .map(|f| {
                    let (a, b, c) = (&f.field, &f.source, &f.target);
                    format!("{}: {} → {}", escape_markdown(a), escape_markdown(b), escape_markdown(c))
                })
                .collect();
            fields.extend(d.reason.as_deref().map(escape_markdown));
            w!(
                s,
                "| {} | {} | {} | {} |\n",
                kind_slug(d.kind),
                escape_markdown(&d.key),
                fields.join("<br>"),
                max_abs_diff(d)
            );
        }
    }
}

fn markdown_queries(s: &mut String, q: &QueryParity) {
    w!(s, "\n## Query parity\n\n");
    w!(
        s,
        "**{}**: mean recall@{} {} against a threshold of {}; minimum {}; {} queries.\n\n",
        if q.passed { "passed" } else { "failed" },
        q.k,
        fixed(q.mean_recall, 3),
        fixed(q.threshold, 2),
        fixed(q.min_recall, 3),
        q.queries.len()
    );
    if q.queries.is_empty() {
        return;
    }
    w!(s, "| Query (source id) | Recall | Rank agreement | Max score diff | Not in D1 | |\n");
    w!(s, "|---|---:|---:|---:|---|---|\n");
    for x in &q.queries {
        let missing: Vec<String> = x.missing_in_d1.iter().map(|m| escape_markdown(m)).collect();
        w!(
            s,
            "| {} | {} | {} | {} | {} | {} |\n",
            escape_markdown(&x.id),
            fixed(x.recall, 3),
            fixed(x.rank_agreement, 3),
            fixed(x.max_score_diff, 6),
            missing.join(", "),
            if x.recall < q.threshold { "below threshold" } else { "" }
        );
    }
}

mod page;
mod shapes;
pub use page::html;

#[cfg(test)]
mod tests;
