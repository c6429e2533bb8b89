//! The HTML form of the verification report: one page with its CSS inline
//! and the recall chart as inline SVG, and no script at all, so it works
//! offline from `file://`, in a mail attachment and on paper. The verdict
//! banner (`#verdict`, `data-status`) and the difference rows (`tr.diff`,
//! `data-kind`) carry stable hooks for tests and for people who scrape it.

use std::fmt::Write as _;

use super::super::report::{kind_name, QueryParity, Status, TableReport, TargetReport, VerifyReport};
use super::{cut_note, escape_html as e, fixed, kind_slug, max_abs_diff, measures, meta, status_slug, total};

/// Light colours only (`color-scheme: light`) so a dark-mode browser does
/// not invert the banner; print keeps the banner's colour and avoids
/// splitting a row across pages.
const CSS: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; color: #1f2328; background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
.wrap { max-width: 1120px; margin: 0 auto; padding: 0 24px; }
#verdict { color: #fff; padding: 28px 0 24px; }
#verdict.consistent { background: #1a7f37; }
#verdict.differences { background: #cf222e; }
#verdict.error { background: #b35900; }
#verdict.consistent_except_skipped { background: #0a5cad; }
#verdict .status { font-size: 2.4rem; font-weight: 700; letter-spacing: .03em; line-height: 1.1; }
#verdict .summary { font-size: 1.3rem; margin: .4em 0 .2em; overflow-wrap: anywhere; }
#verdict .exit { margin: 0; opacity: .9; }
h1 { font-size: 1rem; font-weight: 600; margin: 0 0 .4em; opacity: .9; }
h2 { font-size: 1.4rem; margin: 1.6em 0 .4em; padding-bottom: .2em; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.1rem; margin: 1.2em 0 .3em; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 1.2em 0; }
dl.meta dt { font-weight: 600; color: #59636e; }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
nav ul { margin: .3em 0; padding-left: 1.2em; }
table { border-collapse: collapse; width: 100%; margin: .4em 0 1em; }
th, td { border-bottom: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th.n { white-space: normal; }
code { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  background: #f6f8fa; border-radius: 4px; padding: 1px 4px; white-space: pre-wrap; overflow-wrap: anywhere; }
.loc { color: #59636e; margin: 0; overflow-wrap: anywhere; }
.kind { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: .85em; font-weight: 600;
  background: #eaeef2; white-space: nowrap; }
.kind.missing, .kind.extra { background: #ffebe9; color: #a40e26; }
.kind.changed, .kind.metadata { background: #fff8c5; color: #7d4e00; }
.kind.vector_values { background: #ddf4ff; color: #0a3069; }
.kind.skipped { background: #fbefff; color: #6e2a8c; }
.reason { overflow-wrap: anywhere; }
ul.fields { list-style: none; margin: 0; padding: 0; }
.arrow { color: #59636e; padding: 0 4px; }
.note { color: #59636e; font-style: italic; }
.ok { color: #1a7f37; font-weight: 600; }
.bad { color: #cf222e; font-weight: 600; }
#recall-chart { width: 100%; max-width: 860px; height: auto; display: block; margin: .5em 0 1em; }
footer { color: #59636e; font-size: .85rem; margin: 2em 0; }
@media print {
  body { font-size: 11pt; }
  #verdict { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  tr, #recall-chart { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
}
"#;

/// The report as one self-contained HTML page.
pub fn html(r: &VerifyReport) -> String {
    let mut s = String::with_capacity(16 * 1024);
    let status = r.verdict.status;
    let slug = status_slug(status);
    w!(s, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    w!(s, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    w!(s, "<title>pgflare verify: {slug}</title>\n<style>{CSS}</style>\n</head>\n<body>\n");
    w!(s, "<header id=\"verdict\" class=\"{slug}\" data-status=\"{slug}\">\n<div class=\"wrap\">\n");
    w!(s, "<h1>pgflare verify report</h1>\n<div class=\"status\">{}</div>\n", super::status_word(status));
    w!(s, "<p class=\"summary\">{}</p>\n", e(&r.verdict.summary));
    w!(
        s,
        "<p class=\"exit\">exit code {}</p>\n</div>\n</header>\n<main class=\"wrap\">\n",
        status.exit_code()
    );
    w!(s, "<dl class=\"meta\">\n");
    for (label, value) in meta(r) {
        w!(s, "<dt>{label}</dt><dd>{}</dd>\n", e(&value));
    }
    w!(s, "</dl>\n");
    contents(&mut s, r);
    if r.tables.is_empty() && status != Status::Error {
        w!(s, "<p class=\"note\">No table was compared.</p>\n");
    }
    for (i, t) in r.tables.iter().enumerate() {
        table_section(&mut s, i, t);
    }
    if let Some(q) = &r.queries {
        queries_section(&mut s, q);
    }
    if let Some(q) = &r.query_shapes {
        super::shapes::html(&mut s, q);
    }
    w!(s, "</main>\n<footer class=\"wrap\">Written by {}. ", e(&r.created_by));
    w!(s, "The JSON form (schema pgflare-verify-v1) holds the same data.</footer>\n</body>\n</html>\n");
    s
}

/// Links to each table with its difference count: a long report is read
/// by jumping to the table that differs.
fn contents(s: &mut String, r: &VerifyReport) {
    if r.tables.len() < 2 {
        return;
    }
    w!(s, "<nav><strong>Tables</strong><ul>\n");
    for (i, t) in r.tables.iter().enumerate() {
        let n = t.targets.iter().map(total).fold(0u64, u64::saturating_add);
        let class = if n > 0 { "bad" } else { "ok" };
        let word =
            if n > 0 { format!("{} differences", super::thousands(n)) } else { "no differences".into() };
        w!(s, "<li><a href=\"#table-{i}\">{}</a>: <span class=\"{class}\">{word}</span></li>\n", e(&t.table));
    }
    w!(s, "</ul></nav>\n");
}

fn table_section(s: &mut String, i: usize, t: &TableReport) {
    w!(s, "<section class=\"table\" id=\"table-{i}\" data-table=\"{}\">\n", e(&t.table));
    w!(s, "<h2>{}</h2>\n", e(&t.table));
    for g in &t.targets {
        target_block(s, g);
    }
    w!(s, "</section>\n");
}

fn target_block(s: &mut String, g: &TargetReport) {
    w!(s, "<div class=\"target\" data-target=\"{}\">\n", kind_name(g.kind));
    w!(s, "<h3>{} <code>{}</code></h3>\n", kind_name(g.kind), e(&g.name));
    w!(s, "<p class=\"loc\">{}</p>\n", e(&g.location));
    for n in &g.notes {
        w!(s, "<p class=\"note\">Note: {}</p>\n", e(n));
    }
    let m = measures(g);
    w!(s, "<table class=\"counts\">\n<thead><tr>");
    for (label, _) in &m {
        w!(s, "<th class=\"n\">{}</th>", e(label));
    }
    w!(s, "</tr></thead>\n<tbody><tr>");
    for (_, value) in &m {
        w!(s, "<td class=\"n\">{}</td>", e(value));
    }
    w!(s, "</tr></tbody>\n</table>\n");
    if g.differences.is_empty() {
        let word = if total(g) == 0 { "No differences." } else { "No differences listed." };
        w!(s, "<p class=\"note\">{word}</p>\n</div>\n");
        return;
    }
    if let Some(note) = cut_note(g) {
        w!(s, "<p class=\"note cut\">{}</p>\n", e(&note));
    }
    w!(s, "<table class=\"diffs\">\n<thead><tr><th>Kind</th><th>Key</th>");
    w!(s, "<th>Fields (source → target) or reason</th><th class=\"n\">Max abs diff</th></tr></thead>\n<tbody>\n");
    for d in &g.differences {
        let k = kind_slug(d.kind);
        w!(s, "<tr class=\"diff\" data-kind=\"{k}\"><td><span class=\"kind {k}\">{k}</span></td>");
        w!(s, "<td><code>{}</code></td><td>", e(&d.key));
        if !d.fields.is_empty() {
            w!(s, "<ul class=\"fields\">");
            for f in &d.fields {
                w!(s, "<li><code>{}</code>: <code class=\"src\">{}</code>", e(&f.field), e(&f.source));
                w!(s, "<span class=\"arrow\">→</span><code class=\"dst\">{}</code></li>", e(&f.target));
            }
            w!(s, "</ul>");
        }
        if let Some(r) = &d.reason {
            w!(s, "<span class=\"reason\">{}</span>", e(r));
        }
        w!(s, "</td><td class=\"n\">{}</td></tr>\n", e(&max_abs_diff(d)));
    }
    w!(s, "</tbody>\n</table>\n</div>\n");
}

fn queries_section(s: &mut String, q: &QueryParity) {
    let (class, word) = if q.passed { ("ok", "passed") } else { ("bad", "failed") };
    w!(s, "<section id=\"queries\">\n<h2>Query parity</h2>\n");
    w!(
        s,
        "<p><span class=\"{class}\">{word}</span>: mean recall@{} <strong>{}</strong> ",
        q.k,
        fixed(q.mean_recall, 3)
    );
    w!(s, "against a threshold of {}; minimum {}; ", fixed(q.threshold, 2), fixed(q.min_recall, 3));
    w!(s, "{} queries answered exactly from the source and by Vectorize.</p>\n", q.queries.len());
    if q.queries.is_empty() {
        w!(s, "</section>\n");
        return;
    }
    recall_chart(s, q);
    w!(s, "<table class=\"queries\">\n<thead><tr><th>Query (source id)</th><th class=\"n\">Recall</th>");
    w!(s, "<th class=\"n\">Rank agreement</th><th class=\"n\">Max score diff</th><th>Not in D1</th></tr></thead>\n");
    w!(s, "<tbody>\n");
    for x in &q.queries {
        let below = x.recall < q.threshold;
        w!(s, "<tr class=\"query{}\"><td><code>{}</code></td>", if below { " below" } else { "" }, e(&x.id));
        w!(s, "<td class=\"n {}\">{}</td>", if below { "bad" } else { "ok" }, fixed(x.recall, 3));
        w!(
            s,
            "<td class=\"n\">{}</td><td class=\"n\">{}</td><td>",
            fixed(x.rank_agreement, 3),
            fixed(x.max_score_diff, 6)
        );
        for (j, m) in x.missing_in_d1.iter().enumerate() {
            w!(s, "{}<code>{}</code>", if j > 0 { " " } else { "" }, e(m));
        }
        w!(s, "</td></tr>\n");
    }
    w!(s, "</tbody>\n</table>\n</section>\n");
}

/// Recall in [0, 1] for drawing; NaN (a bug upstream) draws as 0.
fn unit(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The first `max` characters (not bytes: ids may be any UTF-8) and `…`.
pub(super) fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// One bar per query (red below the threshold), a dashed line at the
/// threshold, y ticks every 0.25, the query ids under the bars (thinned
/// out when there are many) and a `<title>` tooltip per bar. Presentation
/// attributes rather than CSS classes, so the SVG stays right if copied out.
fn recall_chart(s: &mut String, q: &QueryParity) {
    const W: f64 = 860.0;
    const H: f64 = 320.0;
    let (left, right, top, bottom) = (64.0, 96.0, 16.0, 92.0);
    let (pw, ph) = (W - left - right, H - top - bottom);
    let n = q.queries.len().max(1);
    let slot = pw / n as f64;
    // Few queries would make slabs; many make slivers, still one per query.
    let bar = (slot * 0.7).clamp(0.5, 56.0);
    let y = |v: f64| top + ph * (1.0 - unit(v));
    let label_every = n.div_ceil(40);
    w!(s, "<svg id=\"recall-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" ");
    w!(s, "role=\"img\" aria-labelledby=\"recall-chart-title\" font-family=\"system-ui, sans-serif\" font-size=\"12\">\n");
    w!(
        s,
        "<title id=\"recall-chart-title\">Recall@{} per query; threshold {}</title>\n",
        q.k,
        fixed(q.threshold, 2)
    );
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let ty = y(tick);
        w!(s, "<line x1=\"{left}\" x2=\"{}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" stroke=\"#d0d7de\"/>", left + pw);
        w!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#59636e\">{tick:.2}</text>\n",
            left - 6.0,
            ty + 4.0
        );
    }
    for (i, x) in q.queries.iter().enumerate() {
        let below = x.recall < q.threshold;
        let (bx, by) = (left + slot * i as f64 + (slot - bar) / 2.0, y(x.recall));
        // A recall of 0 still gets a sliver, so its tooltip can be found.
        let height = (top + ph - by).max(1.5);
        let fill = if below { "#cf222e" } else { "#2da44e" };
        w!(
            s,
            "<rect class=\"bar\" x=\"{bx:.2}\" y=\"{:.2}\" width=\"{bar:.2}\" height=\"{height:.2}\" ",
            top + ph - height
        );
        w!(
            s,
            "fill=\"{fill}\"><title>{}: recall {}, rank agreement {}, max score diff {}{}</title></rect>\n",
            e(&x.id),
            fixed(x.recall, 3),
            fixed(x.rank_agreement, 3),
            fixed(x.max_score_diff, 6),
            if below { " (below threshold)" } else { "" }
        );
        if i % label_every == 0 {
            let (lx, ly) = (bx + bar / 2.0, top + ph + 14.0);
            w!(s, "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"end\" fill=\"#1f2328\" ");
            w!(s, "transform=\"rotate(-35 {lx:.1} {ly:.1})\">{}</text>\n", e(&shorten(&x.id, 14)));
        }
    }
    let ty = y(q.threshold);
    w!(s, "<line x1=\"{left}\" x2=\"{}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" stroke=\"#1f2328\" ", left + pw);
    w!(
        s,
        "stroke-width=\"1.5\" stroke-dasharray=\"6 4\"><title>threshold {}</title></line>\n",
        fixed(q.threshold, 2)
    );
    w!(
        s,
        "<text x=\"{}\" y=\"{:.1}\" fill=\"#1f2328\">threshold {}</text>\n",
        left + pw + 6.0,
        ty + 4.0,
        fixed(q.threshold, 2)
    );
    w!(s, "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{}\" stroke=\"#59636e\"/>", top + ph);
    w!(
        s,
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#59636e\"/>\n",
        left + pw,
        top + ph,
        top + ph
    );
    w!(
        s,
        "<text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\" ",
        top + ph / 2.0,
        top + ph / 2.0
    );
    w!(s, "fill=\"#1f2328\">recall@{}</text>\n", q.k);
    w!(
        s,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#1f2328\">query (source id)</text>\n",
        left + pw / 2.0,
        H - 6.0
    );
    w!(s, "</svg>\n");
}
