//! The verification report's three forms, from one report built by hand
//! with every kind of difference, a hostile value (markup, a `|`, a
//! newline), a list cut at `MAX_LISTED` and query parity with one query
//! below the threshold: the Markdown says it all with its table cells
//! intact, the JSON validates against schemas/verify-report.schema.json
//! (and a wrong status does not), and the HTML, loaded from `file://` by a
//! real headless Chromium, shows the verdict, every key and the hostile
//! value as text without running it, and renders to a screenshot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use pgflare::verify::render::{escape_markdown, html, markdown};
use pgflare::verify::report::*;

use crate::common::*;

/// Runs script in the page if escaping ever fails: it would retitle the page.
const IMG: &str = "<img src=x onerror=\"document.title='pwned'\">";
const SCRIPT: &str = "<script>alert(1)</script> a|b\nsecond line";

/// Keys that must appear in every form (none holds a Markdown special).
const KEYS: [&str; 7] = ["id=101", "id=102", "id=1000", "chunk-7", "chunk-8", "chunk-9", "chunk-10"];

fn diff(kind: DiffKind, key: &str) -> Difference {
    Difference::bare(kind, key.to_string())
}

fn field(name: &str, source: &str, target: &str) -> FieldDiff {
    FieldDiff { field: name.into(), source: source.into(), target: target.into() }
}

fn target(
    kind: TargetKind,
    name: &str,
    rows: u64,
    counts: &[(DiffKind, u64)],
    diffs: Vec<Difference>,
) -> TargetReport {
    TargetReport {
        kind,
        location: format!("sqlite:/tmp/pgflare/{name}.sqlite"),
        name: name.into(),
        source_rows: rows,
        target_rows: rows - count(counts, DiffKind::Missing) + count(counts, DiffKind::Extra),
        buckets: 4096,
        buckets_differing: counts.len() as u64,
        counts: counts.iter().copied().collect::<BTreeMap<_, _>>(),
        differences: diffs,
        pending_sync: 2,
        sampled: 1.0,
        notes: vec![],
        values: None,
    }
}

fn count(counts: &[(DiffKind, u64)], kind: DiffKind) -> u64 {
    counts.iter().filter(|(k, _)| *k == kind).map(|(_, n)| n).sum()
}

fn query(id: &str, recall: f64) -> QueryResult {
    QueryResult {
        id: id.into(),
        recall,
        rank_agreement: 0.9,
        max_score_diff: 0.0004,
        missing_in_d1: Vec::new(),
    }
}

/// public.chunks differs in D1 (the list cut at MAX_LISTED) and in
/// Vectorize (every Vectorize kind); public.documents matches.
fn report() -> VerifyReport {
    let mut changed = diff(DiffKind::Changed, "id=101");
    changed.fields = vec![field("body", SCRIPT, IMG), field("title", "NULL", "old | title")];
    let mut d1 = vec![changed, diff(DiffKind::Extra, "id=102")];
    d1.extend((0..MAX_LISTED - 2).map(|i| diff(DiffKind::Missing, &format!("id={}", 1000 + i))));
    let d1 = target(
        TargetKind::D1,
        "chunks",
        20_000,
        &[(DiffKind::Missing, 400), (DiffKind::Extra, 1), (DiffKind::Changed, 1)],
        d1,
    );
    let mut values = diff(DiffKind::VectorValues, "chunk-8");
    values.max_abs_diff = Some(0.0125);
    let mut meta = diff(DiffKind::Metadata, "chunk-10");
    meta.fields = vec![field("namespace", "tenant-a", "(absent)"), field("lang", "en", IMG)];
    let vz = target(
        TargetKind::Vectorize,
        "chunks-index",
        20_000,
        &[(DiffKind::Missing, 1), (DiffKind::Extra, 0), (DiffKind::VectorValues, 2), (DiffKind::Metadata, 1)],
        vec![
            diff(DiffKind::Missing, "chunk-7"),
            values,
            // Lengths differ: no max_abs_diff.
            diff(DiffKind::VectorValues, "chunk-9"),
            meta,
        ],
    );
    let docs = target(TargetKind::D1, "documents", 500, &[], Vec::new());
    let mut q9 = query("chunk-42", 0.6);
    q9.missing_in_d1 = vec!["chunk-999".into()];
    let queries =
        vec![query("chunk-1", 1.0), query("chunk-2", 1.0), query("chunk-3", 1.0), query("chunk-4", 1.0), q9];
    let mut r = VerifyReport {
        format: FORMAT.into(),
        created_by: format!("pgflare {}", env!("CARGO_PKG_VERSION")),
        started_at: "2025-06-01T12:00:00Z".into(),
        seconds: 12.5,
        source: "postgres://postgres:***@127.0.0.1:5432/app".into(),
        snapshot: "1200:1204:1201 at 2025-06-01T12:00:00Z".into(),
        verdict: Verdict { status: Status::Consistent, summary: String::new() },
        tables: vec![
            TableReport { table: "public.chunks".into(), targets: vec![d1, vz] },
            TableReport { table: "public.documents".into(), targets: vec![docs] },
        ],
        queries: Some(QueryParity {
            k: 10,
            threshold: 0.95,
            mean_recall: 0.92,
            min_recall: 0.6,
            passed: false,
            queries,
        }),
        query_shapes: None,
    };
    r.decide(false);
    assert_eq!(r.verdict.status, Status::Differences);
    r
}

/// `|` that end table cells (not escaped by a backslash).
fn cell_bars(line: &str) -> usize {
    let b = line.as_bytes();
    (0..b.len()).filter(|&i| b[i] == b'|' && (i == 0 || b[i - 1] != b'\\')).count()
}

#[test]
fn markdown_says_it_all_with_cells_intact() {
    let r = report();
    let md = markdown(&r);
    let verdict = format!("**DIFFERENCES**: {}", escape_markdown(&r.verdict.summary));
    assert!(md.contains(&verdict), "no verdict line `{verdict}` in\n{md}");
    assert!(md.find(&verdict) < md.find("## public.chunks"), "the verdict comes first");
    for key in KEYS {
        assert!(md.contains(&format!("| {key} |")), "key {key} not listed");
    }
    assert!(md.contains("showing 200 of 402; all are counted above"), "the cut is not said");
    assert!(!md.contains("showing 4 of"), "an uncut list said to be cut");
    assert!(md.contains("**failed**: mean recall@10 0.920"));
    assert!(md.lines().any(|l| l.starts_with("| chunk-42 | 0.600 |") && l.ends_with("| below threshold |")));
    // The hostile row: one line, `|` escaped, markup escaped, newline as <br>.
    let row = md.lines().find(|l| l.starts_with("| changed | id=101 |")).expect("the changed row");
    let header = md.lines().find(|l| l.starts_with("| Kind | Key |")).expect("the differences header");
    assert_eq!(cell_bars(row), cell_bars(header), "a cell boundary leaked: {row}");
    assert!(row.contains(r"\<script\>alert(1)\</script\> a\|b<br>second line"), "{row}");
    assert!(row.contains(r"old \| title"), "{row}");
    assert!(!md.replace(r"\<", "").contains("<script") && !md.replace(r"\<", "").contains("<img"));
}

#[test]
fn json_matches_the_schema() {
    let dir = temp_dir("verify-report");
    let schema = root().join("schemas/verify-report.schema.json");
    let good = dir.path().join("report.json");
    let r = report();
    let json = serde_json::to_string_pretty(&r).expect("serialize");
    std::fs::write(&good, &json).expect("write report.json");
    let out = validate_json(&schema, &[&good]);
    assert!(out.status.success(), "valid report rejected\n{}", text(&out));
    let back: VerifyReport = serde_json::from_str(&json).expect("read back");
    assert_eq!(back, r);

    let mut v: serde_json::Value = serde_json::from_str(&json).expect("json value");
    v["verdict"]["status"] = "maybe".into();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_string_pretty(&v).expect("serialize")).expect("write bad.json");
    let out = validate_json(&schema, &[&bad]);
    assert_eq!(out.status.code(), Some(1), "a status `maybe` passed\n{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("$.verdict.status"), "{}", text(&out));
}

/// `$PGFLARE_CHROMIUM` (scripts/test.sh sets it), else `chromium` or
/// `chromium-browser` on PATH. Missing is a failure, not a skip: the
/// browser test is the only proof the page renders.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("PGFLARE_CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "chromium not found (neither $PGFLARE_CHROMIUM nor chromium / chromium-browser on PATH): \
         scripts/test.sh installs it (apt-get install chromium), or set PGFLARE_CHROMIUM"
    )
}

/// One headless Chromium run on `page` with its own profile, time-boxed.
fn run_chromium(page: &Path, profile: &Path, extra: &[&str]) -> Output {
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg("60")
        .arg(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .args(["--disable-extensions", "--mute-audio"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run timeout + chromium");
    eprintln!("chromium {extra:?}: {:.2} s", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "chromium failed (124 = timed out)\n{}", text(&out));
    out
}

fn dump_dom(page: &Path, profile: &Path) -> String {
    String::from_utf8_lossy(&run_chromium(page, profile, &["--dump-dom"]).stdout).into_owned()
}

/// The opening tag of the element with `id`.
fn tag_with_id<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let start = dom[..at].rfind('<').expect("tag start");
    let end = at + dom[at..].find('>').expect("tag end");
    &dom[start..=end]
}

#[test]
fn html_in_chromium_shows_everything_as_text() {
    let dir = temp_dir("verify-html");
    let r = report();
    let page = dir.path().join("report.html");
    std::fs::write(&page, html(&r)).expect("write report.html");

    // The detector works: the same markup, unescaped, does retitle a page.
    let control = dir.path().join("control.html");
    std::fs::write(&control, format!("<!DOCTYPE html><title>safe</title><body>{IMG}</body>")).expect("write");
    let dom = dump_dom(&control, &dir.path().join("profile-control"));
    assert!(dom.contains("<title>pwned</title>"), "the control page did not run its onerror\n{dom}");

    let dom = dump_dom(&page, &dir.path().join("profile"));
    let banner = tag_with_id(&dom, "verdict");
    assert!(banner.contains("data-status=\"differences\""), "banner: {banner}");
    assert!(dom.contains(&r.verdict.summary), "summary `{}` not in the DOM", r.verdict.summary);
    for key in KEYS {
        assert!(dom.contains(&format!("<code>{key}</code>")), "key {key} not in the DOM");
    }
    assert_eq!(dom.matches("<tr class=\"diff\"").count(), MAX_LISTED + 4);
    for kind in ["missing", "extra", "changed", "vector_values", "metadata"] {
        assert!(dom.contains(&format!("class=\"diff\" data-kind=\"{kind}\"")), "no {kind} row");
    }
    assert!(dom.contains("showing 200 of 402; all are counted above"));
    // The hostile values are text (the serializer escapes < > & in text).
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt; a|b\nsecond line"),
        "script not shown as text"
    );
    assert!(dom.contains("&lt;img src=x onerror=\"document.title='pwned'\"&gt;"), "img not shown as text");
    assert!(!dom.contains("<img") && !dom.contains("<script"), "hostile markup became elements");
    assert!(dom.contains("<title>pgflare verify: differences</title>"), "the title changed");
    assert!(!dom.contains("pwned</title>"));
    // The chart: one bar per query, the threshold line.
    let chart = tag_with_id(&dom, "recall-chart");
    assert!(chart.starts_with("<svg"), "{chart}");
    assert_eq!(dom.matches("<rect class=\"bar\"").count(), 5);
    assert!(dom.contains("<title>threshold 0.95</title>"));
    assert!(dom.contains("chunk-42: recall 0.600"), "no tooltip for the failing query");
}

#[test]
fn html_renders_in_chromium() {
    let dir = temp_dir("verify-shot");
    let page = dir.path().join("report.html");
    std::fs::write(&page, html(&report())).expect("write report.html");
    let shot = dir.path().join("shot.png");
    let arg = format!("--screenshot={}", shot.display());
    run_chromium(&page, &dir.path().join("profile"), &[&arg, "--window-size=1280,2000", "--hide-scrollbars"]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10 * 1024, "screenshot only {} bytes: nothing rendered?", png.len());
    // To look at the page and its picture: PGFLARE_KEEP_REPORT=/some/dir.
    if let Some(keep) = std::env::var_os("PGFLARE_KEEP_REPORT").map(PathBuf::from) {
        std::fs::create_dir_all(&keep).expect("create PGFLARE_KEEP_REPORT");
        std::fs::copy(&page, keep.join("report.html")).expect("keep report.html");
        std::fs::copy(&shot, keep.join("shot.png")).expect("keep shot.png");
    }
}
