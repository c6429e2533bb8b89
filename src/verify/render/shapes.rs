//! The "Results match Supabase" section of the Markdown and HTML reports:
//! per query shape its verdict, recall, context equality and misses by
//! reason, then the worst queries with each miss's reason and detail.

use std::fmt::Write as _;

use super::{escape_html as e, escape_markdown as m, fixed};
use crate::verify::queries::report::{ShapeReport, ShapesReport};

fn verdict(x: &ShapeReport) -> &'static str {
    if x.queries == 0 {
        "not run (no query for it)"
    } else if x.passed {
        "matches Supabase"
    } else {
        "does not match Supabase"
    }
}

fn reasons(x: &ShapeReport) -> String {
    let r: Vec<String> = x.reasons.iter().map(|(k, n)| format!("{} {n}", k.as_str())).collect();
    if r.is_empty() {
        "none".into()
    } else {
        r.join(", ")
    }
}

pub fn markdown(s: &mut String, r: &ShapesReport) {
    w!(s, "\n## Results match Supabase (query shapes)\n\n");
    w!(s, "Queries {}; {} Cloudflare API requests.\n", m(&r.queries_from), r.requests);
    for x in &r.shapes {
        w!(s, "\n### {}: {}\n\n", m(&x.name), verdict(x));
        w!(s, "- table {}, k {}, Vectorize topK {}\n", m(&x.table), x.k, x.top_k);
        for f in &x.filters {
            w!(s, "- filter: {}\n", m(f));
        }
        w!(
            s,
            "- {} queries: mean recall@{} {} (threshold {}, minimum {}), rank agreement {}, context equal in {}, {} requests per query\n",
            x.queries,
            x.k,
            fixed(x.mean_recall, 3),
            fixed(x.threshold, 2),
            fixed(x.min_recall, 3),
            fixed(x.mean_rank_agreement, 3),
            x.context_equal,
            fixed(x.requests_per_query, 1)
        );
        w!(s, "- misses by reason: {}\n", m(&reasons(x)));
        let listed: Vec<_> = x.results.iter().filter(|q| !q.misses.is_empty() || q.error.is_some()).collect();
        if listed.is_empty() {
            continue;
        }
        w!(s, "\n| Query | Filter | Recall | Context | Id | Side | Reason | Detail |\n|---|---|---:|---|---|---|---|---|\n");
        for q in listed {
            let ctx = if q.context_equal { "equal" } else { "differs" };
            if let Some(err) = &q.error {
                w!(
                    s,
                    "| {} | {} | {} | {ctx} | | | Vectorize refused | {} |\n",
                    m(&q.id),
                    m(&q.filter.to_string()),
                    fixed(q.recall, 3),
                    m(err)
                );
            }
            // A refused query's misses all share its one reason, listed above.
            for x in q.misses.iter().filter(|_| q.error.is_none()) {
                w!(
                    s,
                    "| {} | {} | {} | {ctx} | {} | {:?} | {} | {} |\n",
                    m(&q.id),
                    m(&q.filter.to_string()),
                    fixed(q.recall, 3),
                    m(&x.id),
                    x.side,
                    x.reason.as_str(),
                    m(&x.detail)
                );
            }
        }
    }
}

pub fn html(s: &mut String, r: &ShapesReport) {
    w!(s, "<section id=\"query-shapes\">\n<h2>Results match Supabase (query shapes)</h2>\n");
    w!(s, "<p>Queries {}; {} Cloudflare API requests.</p>\n", e(&r.queries_from), r.requests);
    for x in &r.shapes {
        let class = if x.passed { "ok" } else { "bad" };
        w!(
            s,
            "<h3 data-shape=\"{}\">{}: <span class=\"{class}\">{}</span></h3>\n",
            e(&x.name),
            e(&x.name),
            verdict(x)
        );
        w!(s, "<ul><li>table <code>{}</code>, k {}, Vectorize topK {}</li>\n", e(&x.table), x.k, x.top_k);
        for f in &x.filters {
            w!(s, "<li>filter: {}</li>\n", e(f));
        }
        w!(
            s,
            "<li>{} queries: mean recall@{} <strong>{}</strong> (threshold {}, minimum {}), rank agreement {}, context equal in {}, {} requests per query</li>\n",
            x.queries,
            x.k,
            fixed(x.mean_recall, 3),
            fixed(x.threshold, 2),
            fixed(x.min_recall, 3),
            fixed(x.mean_rank_agreement, 3),
            x.context_equal,
            fixed(x.requests_per_query, 1)
        );
        w!(s, "<li>misses by reason: {}</li></ul>\n", e(&reasons(x)));
        let listed: Vec<_> = x.results.iter().filter(|q| !q.misses.is_empty() || q.error.is_some()).collect();
        if listed.is_empty() {
            continue;
        }
        w!(s, "<table class=\"queries\">\n<thead><tr><th>Query</th><th>Filter</th><th class=\"n\">Recall</th><th>Id</th><th>Side</th><th>Reason</th><th>Detail</th></tr></thead>\n<tbody>\n");
        for q in listed {
            if let Some(err) = &q.error {
                w!(s, "<tr><td><code>{}</code></td><td><code>{}</code></td><td class=\"n bad\">{}</td><td></td><td></td><td>Vectorize refused</td><td>{}</td></tr>\n", e(&q.id), e(&q.filter.to_string()), fixed(q.recall, 3), e(err));
            }
            for x in q.misses.iter().filter(|_| q.error.is_none()) {
                w!(
                    s,
                    "<tr><td><code>{}</code></td><td><code>{}</code></td><td class=\"n\">{}</td><td><code>{}</code></td><td>{:?}</td><td>{}</td><td>{}</td></tr>\n",
                    e(&q.id),
                    e(&q.filter.to_string()),
                    fixed(q.recall, 3),
                    e(&x.id),
                    x.side,
                    x.reason.as_str(),
                    e(&x.detail)
                );
            }
        }
        w!(s, "</tbody>\n</table>\n");
    }
    w!(s, "</section>\n");
}
