//! Realistic-looking documentation text, titles, tags and metadata.

use super::format::Json;
use super::lang::{Lang, ORGS, SOURCES, TAGS, TECH_TERMS};
use super::rng::Rng;

/// A uniformly chosen entry of a non-empty word list.
fn pick(rng: &mut Rng, list: &[&'static str]) -> &'static str {
    list[rng.index(list.len())]
}

/// One sentence: a capitalised opener, 5..=14 words (now and then a
/// technical term), and the language's full stop.
fn sentence(rng: &mut Rng, lang: &Lang, out: &mut String) {
    out.push_str(pick(rng, lang.openers));
    let n = rng.range(5, 14);
    for _ in 0..n {
        out.push_str(lang.word_sep);
        if rng.chance(1, 12) {
            out.push_str(pick(rng, TECH_TERMS));
        } else {
            out.push_str(pick(rng, lang.words));
        }
    }
    out.push_str(lang.sentence_end);
}

/// A paragraph: usually prose, sometimes a bullet list or a heading line.
fn paragraph(rng: &mut Rng, lang: &Lang, out: &mut String) {
    match rng.below(10) {
        0 => {
            out.push_str("## ");
            out.push_str(pick(rng, lang.sections));
        }
        1 => {
            let items = rng.range(2, 5);
            for i in 0..items {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str("- ");
                sentence(rng, lang, out);
                truncate_trailing_space(out);
            }
        }
        _ => {
            for _ in 0..rng.range(2, 5) {
                sentence(rng, lang, out);
            }
            truncate_trailing_space(out);
        }
    }
}

fn truncate_trailing_space(s: &mut String) {
    while s.ends_with(' ') {
        s.pop();
    }
}

/// Chunk text: 1..=4 paragraphs separated by blank lines.
pub(crate) fn chunk_content(rng: &mut Rng, lang: &Lang) -> String {
    let mut out = String::with_capacity(1024);
    let paragraphs = rng.range(1, 4);
    for p in 0..paragraphs {
        if p > 0 {
            out.push_str("\n\n");
        }
        paragraph(rng, lang, &mut out);
    }
    out
}

/// Document title: a head phrase and two to four words.
pub(crate) fn title(rng: &mut Rng, lang: &Lang) -> String {
    let mut out = String::from(pick(rng, lang.title_heads));
    for _ in 0..rng.range(2, 4) {
        out.push_str(lang.word_sep);
        out.push_str(pick(rng, lang.words));
    }
    out
}

/// `0..=max` distinct tags from the shared vocabulary, in draw order.
pub(crate) fn tags(rng: &mut Rng, max: u64) -> Vec<String> {
    let n = rng.below(max + 1) as usize;
    let mut picked: Vec<&str> = Vec::with_capacity(n);
    while picked.len() < n {
        let t = pick(rng, TAGS);
        if !picked.contains(&t) {
            picked.push(t);
        }
    }
    picked.into_iter().map(str::to_owned).collect()
}

/// Document metadata:
/// `{"lang", "page", "topic", "author": {"name", "org"}, "source", "section"}`.
pub(crate) fn document_metadata(rng: &mut Rng, lang: &Lang, topic: &str) -> Json {
    Json::obj([
        ("source", Json::str(pick(rng, SOURCES))),
        ("page", Json::int(rng.range(1, 400) as i64)),
        ("section", Json::str(pick(rng, lang.sections))),
        ("lang", Json::str(lang.code)),
        ("topic", Json::str(topic)),
        (
            "author",
            Json::obj([("name", Json::str(pick(rng, lang.authors))), ("org", Json::str(pick(rng, ORGS)))]),
        ),
    ])
}

/// Chunk metadata: page, section, heading level and character count.
pub(crate) fn chunk_metadata(rng: &mut Rng, lang: &Lang, index: u32, content: &str) -> Json {
    Json::obj([
        ("page", Json::int(i64::from(index / 3 + 1))),
        ("section", Json::str(pick(rng, lang.sections))),
        ("heading_level", Json::int(rng.range(1, 3) as i64)),
        ("chars", Json::int(content.chars().count() as i64)),
        ("lang", Json::str(lang.code)),
    ])
}

/// A rough token estimate (about four UTF-8 bytes per token).
pub(crate) fn token_count(content: &str) -> i32 {
    i32::try_from(content.len().div_ceil(4)).unwrap_or(i32::MAX)
}

/// ASCII slug for URLs: the topic name and a page-kind suffix.
pub(crate) fn slug(topic: &str, rng: &mut Rng) -> String {
    const SUFFIXES: &[&str] = &["guide", "overview", "reference", "faq", "howto", "limits", "setup"];
    format!("{topic}-{}", pick(rng, SUFFIXES))
}
