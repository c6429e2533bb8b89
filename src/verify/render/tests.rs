//! Unit tests of the renderers: the escaping functions over arbitrary
//! strings (proptest), the kind names against the serde form, and number
//! formatting. The whole report in a real browser is tested in
//! tests/integration/verify_report.rs.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::verify::report::{FieldDiff, Verdict, FORMAT};

const ENTITIES: [&str; 5] = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"];

fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

proptest! {
    #[test]
    fn html_escaping_leaves_no_markup(s in any::<String>()) {
        let out = escape_html(&s);
        prop_assert!(!out.contains(['<', '>', '"', '\'']), "{out:?}");
        for (at, _) in out.match_indices('&') {
            prop_assert!(ENTITIES.iter().any(|ent| out[at..].starts_with(ent)), "raw & in {out:?}");
        }
        prop_assert_eq!(unescape_html(&out), s);
    }

    #[test]
    fn markdown_escaping_leaves_no_markup(s in any::<String>()) {
        let out = escape_markdown(&s);
        let rest: Vec<char> = out.replace("<br>", "").chars().collect();
        prop_assert!(!rest.contains(&'\n') && !rest.contains(&'\r'), "{out:?}");
        let mut i = 0;
        while i < rest.len() {
            let c = rest[i];
            if c == '\\' {
                let next = rest.get(i + 1).copied();
                prop_assert!(next.is_some_and(|n| "\\`*_[]<>|&~$".contains(n)), "lone backslash in {out:?}");
                i += 1;
            } else if c == '_' {
                // Only intraword, where it cannot be emphasis.
                let alnum = |j: Option<usize>| j.and_then(|j| rest.get(j)).is_some_and(|c| c.is_alphanumeric());
                prop_assert!(alnum(i.checked_sub(1)) && alnum(Some(i + 1)), "raw _ in {out:?}");
            } else {
                prop_assert!(!"`*[]<>|&~$".contains(c), "raw {c:?} in {out:?}");
            }
            i += 1;
        }
    }
}

#[test]
fn kind_slugs_are_the_serde_names() {
    for k in KINDS {
        let json = serde_json::to_string(&k).expect("a kind serializes");
        assert_eq!(json, format!("\"{}\"", kind_slug(k)));
    }
}

#[test]
fn markdown_keeps_snake_case() {
    assert_eq!(escape_markdown("chunk_index"), "chunk_index");
    assert_eq!(escape_markdown("_x_ a__b b_ *y*"), r"\_x\_ a\_\_b b\_ \*y\*");
    assert_eq!(escape_markdown("a\r\nb\rc"), "a<br>b<br>c");
}

#[test]
fn numbers_read_well() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(20_022), "20,022");
    assert_eq!(thousands(1_234_567), "1,234,567");
    assert_eq!(fixed(f64::NAN, 3), "n/a");
    assert_eq!(sampled(1.0), "all buckets");
    assert_eq!(sampled(0.25), "25.0% of buckets");
}

fn hostile() -> VerifyReport {
    let evil = "<img src=x onerror=\"alert('x')\"> a|b\nc & d".to_string();
    VerifyReport {
        format: FORMAT.into(),
        created_by: "pgflare 0.1.0".into(),
        started_at: "2025-01-01T00:00:00Z".into(),
        seconds: 1.5,
        source: evil.clone(),
        snapshot: "1:2:".into(),
        verdict: Verdict { status: Status::Differences, summary: evil.clone() },
        tables: vec![TableReport {
            table: evil.clone(),
            targets: vec![TargetReport {
                kind: TargetKind::D1,
                location: evil.clone(),
                name: evil.clone(),
                source_rows: 3,
                target_rows: 2,
                buckets: 4,
                buckets_differing: 1,
                counts: BTreeMap::from([(DiffKind::Changed, 5)]),
                differences: vec![Difference {
                    kind: DiffKind::Changed,
                    key: evil.clone(),
                    fields: vec![FieldDiff {
                        field: evil.clone(),
                        source: evil.clone(),
                        target: evil.clone(),
                    }],
                    max_abs_diff: None,
                    reason: None,
                }],
                pending_sync: 0,
                sampled: 1.0,
                notes: vec!["the index applied writes <b>while</b> it was read".into()],
                values: None,
            }],
        }],
        queries: None,
        query_shapes: None,
    }
}

#[test]
fn user_data_never_becomes_markup() {
    let page = html(&hostile());
    assert!(!page.contains("<img"), "raw tag in the page");
    assert!(page.contains("&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;"));
    assert!(page.contains("showing 1 of 5; all are counted above"));
    assert!(page.contains("Note: the index applied writes &lt;b&gt;while&lt;/b&gt; it was read"));
    let md = markdown(&hostile());
    assert!(md.contains("> Note: the index applied writes \\<b\\>while\\</b\\> it was read"), "{md}");
    // `\<` is shown as `<`, not read as the start of a tag.
    assert!(!md.replace("\\<", "").contains("<img"), "raw tag in the Markdown");
    let row = md.lines().find(|l| l.starts_with("| changed | \\<img")).expect("the difference row");
    assert!(row.contains(r"a\|b<br>c \& d"), "{row}");
    assert!(md.contains("showing 1 of 5; all are counted above"));
}

#[test]
fn shorten_counts_characters() {
    assert_eq!(page::shorten("ééééé", 3), "ééé…");
    assert_eq!(page::shorten("abc", 3), "abc");
}

/// A Vectorize target is compared by ids and values, not key buckets: its
/// table says what was compared instead of "Buckets compared 0" next to
/// "all buckets" (issue 19).
#[test]
fn a_vectorize_target_shows_ids_and_values_compared_not_buckets() {
    let mut r = hostile();
    let t = &mut r.tables[0].targets[0];
    t.kind = TargetKind::Vectorize;
    t.buckets = 0;
    t.values = Some(crate::verify::value_check::ValueCheck {
        ids_compared: 19_626,
        values_compared: 350,
        ..Default::default()
    });
    let shown = measures(t);
    let labels: Vec<&str> = shown.iter().map(|(l, _)| l.as_str()).collect();
    assert!(!labels.iter().any(|l| l.starts_with("Buckets") || *l == "Sampled"), "{labels:?}");
    assert!(shown.contains(&("Ids compared".to_string(), "19,626".to_string())), "{shown:?}");
    assert!(shown.contains(&("Values compared".to_string(), "350".to_string())), "{shown:?}");
    let md = markdown(&r);
    assert!(!md.contains("Buckets compared") && md.contains("Ids compared"), "{md}");
    // D1 keeps its bucket figures.
    let d1 = measures(&hostile().tables[0].targets[0]);
    assert!(d1.contains(&("Buckets compared".to_string(), "4".to_string())), "{d1:?}");
}
