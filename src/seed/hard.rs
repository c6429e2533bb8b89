//! "Hard rows": one extra document whose chunks each exercise one edge case
//! of text encoding, arrays, JSON or vectors. Ids, content, tags, metadata
//! and timestamps are fixed (independent of the seed); only the ordinary
//! embeddings of these chunks follow the seed's topic centroids.

use super::format::{Json, Micros, BASE_MICROS};
use super::rng::{Rng, STREAM_HARD_EMB};
use super::rows::{Centroids, ChunkRow, DocumentRow, TOPIC_COUNT};
use super::text;

/// Id of the document that owns every hard row.
pub const HARD_DOCUMENT_ID: &str = "00000000-0000-4000-8000-000000000000";

/// `(chunk id, what it tests)` for every hard row, in `chunk_index` order
/// (`chunk_index` = position in this list). The last id group is the row
/// number written in decimal digits (…0001 to …0022).
pub const HARD_ROW_IDS: &[(&str, &str)] = &[
    ("00000000-0000-4000-8000-000000000001", "content is the empty string"),
    ("00000000-0000-4000-8000-000000000002", "content is a single quote '"),
    ("00000000-0000-4000-8000-000000000003", "content is ''; DROP TABLE chunks; -- (SQL injection)"),
    ("00000000-0000-4000-8000-000000000004", "content is C:\\path\\to\\file (backslashes)"),
    ("00000000-0000-4000-8000-000000000005", "content is a lone backslash \\"),
    ("00000000-0000-4000-8000-000000000006", "content is a\\r\\nb\\tc\\nd (CR, LF, tab)"),
    ("00000000-0000-4000-8000-000000000007", "emoji: ZWJ sequences, skin tone, flags"),
    ("00000000-0000-4000-8000-000000000008", "Arabic and Hebrew (RTL) mixed with LTR text and digits"),
    ("00000000-0000-4000-8000-000000000009", "U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR"),
    ("00000000-0000-4000-8000-000000000010", "content of exactly 160,000 bytes, multi-line, non-ASCII"),
    ("00000000-0000-4000-8000-000000000011", "embedding is NULL"),
    ("00000000-0000-4000-8000-000000000012", "tags is NULL"),
    ("00000000-0000-4000-8000-000000000013", "tags is the empty array '{}'"),
    ("00000000-0000-4000-8000-000000000014", "tags elements with quote, comma, braces, backslash, space, \"NULL\" text, empty string"),
    ("00000000-0000-4000-8000-000000000015", "metadata is NULL"),
    ("00000000-0000-4000-8000-000000000016", "metadata is the empty object '{}'"),
    ("00000000-0000-4000-8000-000000000017", "metadata: unicode keys/values, escaped quotes, arrays, 3-level nesting, 0.0000001 and 12345678901234567"),
    ("00000000-0000-4000-8000-000000000018", "embedding with 1e-38, -3.4e38, 0, -0, f32::MAX, f32::MIN_POSITIVE, smallest subnormal"),
    ("00000000-0000-4000-8000-000000000019", "content is \\N (the COPY NULL marker as text)"),
    ("00000000-0000-4000-8000-000000000020", "content has a line that is \\. (the COPY end-of-data marker)"),
    ("00000000-0000-4000-8000-000000000021", "control characters BEL, BS, VT, FF, ESC, DEL, U+0085, U+FEFF"),
    ("00000000-0000-4000-8000-000000000022", "NFC vs NFD (é vs e+U+0301), astral CJK, mathematical letters"),
];

/// Byte length of the large content of hard row 10.
pub const LARGE_CONTENT_BYTES: usize = 160_000;

const DOC_ID: [u8; 16] = [0, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0];

/// Id of hard row `n` (1-based): 00000000-0000-4000-8000-0000000000NN.
fn chunk_id(n: usize) -> [u8; 16] {
    let mut id = DOC_ID;
    // The decimal digits of n become the trailing hex digits.
    let bcd = (n / 10 % 10) << 4 | (n % 10);
    id[15] = bcd as u8;
    id[14] = (n / 100 % 10) as u8;
    id
}

/// The document that owns the hard rows.
pub(crate) fn document() -> DocumentRow {
    DocumentRow {
        id: DOC_ID,
        source_url: "https://docs.example.com/en/hard-rows-0".to_owned(),
        title: "Hard rows: edge cases for migration tests".to_owned(),
        language: "en".to_owned(),
        tags: vec!["internal".to_owned(), "reference".to_owned()],
        metadata: Json::obj([
            ("source", Json::str("pgflare-seed")),
            ("page", Json::int(0)),
            ("section", Json::str("Hard rows")),
            ("lang", Json::str("en")),
            ("author", Json::obj([("name", Json::str("Seed Generator")), ("org", Json::str("pgflare"))])),
        ])
        .to_jsonb_text(),
        created_at: BASE_MICROS,
        updated_at: BASE_MICROS,
    }
}

/// Exactly [`LARGE_CONTENT_BYTES`] bytes: numbered lines mixing ASCII, tabs,
/// Latin diacritics and Japanese, padded with ASCII dots.
pub fn large_content() -> String {
    let mut s = String::with_capacity(LARGE_CONTENT_BYTES + 128);
    let mut n = 0u32;
    while s.len() < LARGE_CONTENT_BYTES {
        n += 1;
        s.push_str(&format!(
            "{n:05}\tZeile über Größe — 日本語のテキスト — line {n} of the large chunk, \\ backslash\n"
        ));
    }
    let mut cut = LARGE_CONTENT_BYTES;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    while s.len() < LARGE_CONTENT_BYTES {
        s.push('.');
    }
    s
}

fn extreme_embedding(dims: usize) -> Vec<f32> {
    const HEAD: [f32; 8] = [1e-38, -3.4e38, 0.0, -0.0, f32::MAX, f32::MIN_POSITIVE, f32::from_bits(1), -1.0];
    (0..dims)
        .map(|i| match HEAD.get(i) {
            Some(&x) => x,
            // Exact binary fractions: -0.5 ..= 0.5 in steps of 1/16.
            None => ((i % 17) as f32 - 8.0) * 0.0625,
        })
        .collect()
}

fn special_tags() -> Vec<String> {
    ["has \"quotes\"", "comma,inside", "{braces}", "back\\slash", "two words", "NULL", "", "plain"]
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn nested_metadata() -> Json {
    Json::obj([
        ("ключ", Json::str("значение")),
        ("日本語キー", Json::str("値 🎌")),
        ("quote", Json::str("she said \"hi\" and left")),
        ("backslash", Json::str("C:\\temp\\new")),
        ("control", Json::str("tab\there\nnew line\r\u{1}")),
        ("separators", Json::str("a\u{2028}b\u{2029}c")),
        ("tiny", Json::Num("0.0000001".to_owned())),
        ("big", Json::Num("12345678901234567".to_owned())),
        ("negative", Json::Num("-42.5".to_owned())),
        ("yes", Json::Bool(true)),
        ("nothing", Json::Null),
        (
            "list",
            Json::Arr(vec![
                Json::int(1),
                Json::str("two"),
                Json::Null,
                Json::Bool(false),
                Json::obj([("k", Json::Arr(vec![Json::str("v")]))]),
                Json::Arr(vec![]),
            ]),
        ),
        (
            "l1",
            Json::obj([(
                "l2",
                Json::obj([("l3", Json::obj([("deep", Json::str("value")), ("emoji", Json::str("👩‍💻"))]))]),
            )]),
        ),
        ("empty", Json::Obj(vec![])),
        ("rtl", Json::str("مرحبا עולם 123")),
    ])
}

/// Hard row at position `i` (0-based) of [`HARD_ROW_IDS`].
pub(crate) fn chunk(i: usize, seed: u64, centroids: &Centroids) -> ChunkRow {
    let n = i + 1;
    let mut tags = Some(vec!["hard-row".to_owned()]);
    let mut metadata = Some(Json::obj([("case", Json::int(n as i64))]));
    let mut embedding =
        Some(centroids.embed(n % TOPIC_COUNT, &mut Rng::for_stream(seed, STREAM_HARD_EMB, n as u64)));
    let content: String = match n {
        1 => String::new(),
        2 => "'".to_owned(),
        3 => "''; DROP TABLE chunks; --".to_owned(),
        4 => "C:\\path\\to\\file".to_owned(),
        5 => "\\".to_owned(),
        6 => "a\r\nb\tc\nd".to_owned(),
        7 => "Family 👨‍👩‍👧‍👦, technologist 👩🏽‍💻, rainbow flag 🏳️‍🌈, flags 🇯🇵🇩🇪, \
              thumbs 👍🏿, keycap 1️⃣"
            .to_owned(),
        8 => "Start LTR, then Arabic: مرحبا بالعالم (123), then Hebrew: שלום עולם 456, \
              mixed ‏RLM‏ and ‎LRM‎ marks, end LTR."
            .to_owned(),
        9 => "line\u{2028}separator and paragraph\u{2029}separator".to_owned(),
        10 => large_content(),
        19 => "\\N".to_owned(),
        20 => "first line\n\\.\nlast line after the end-of-data marker".to_owned(),
        21 => "bell\u{7} bs\u{8} vt\u{b} ff\u{c} esc\u{1b} del\u{7f} nel\u{85} bom\u{feff}".to_owned(),
        22 => "NFC café / NFD cafe\u{301} / astral 𠜎𠜱𠝹 / math 𝕳𝖆𝖗𝖉".to_owned(),
        _ => format!("Hard row {n}: {}", HARD_ROW_IDS.get(i).map_or("", |r| r.1)),
    };
    match n {
        11 => embedding = None,
        12 => tags = None,
        13 => tags = Some(Vec::new()),
        14 => tags = Some(special_tags()),
        15 => metadata = None,
        16 => metadata = Some(Json::Obj(Vec::new())),
        17 => metadata = Some(nested_metadata()),
        18 => embedding = Some(extreme_embedding(centroids.dims())),
        _ => {}
    }
    let created_at: Micros = BASE_MICROS + n as Micros * 1_000_000;
    ChunkRow {
        id: chunk_id(n),
        document_id: DOC_ID,
        chunk_index: i as i32,
        token_count: text::token_count(&content),
        content,
        tags,
        metadata: metadata.map(|m| m.to_jsonb_text()),
        embedding,
        created_at,
        // Even rows: updated later; odd rows: updated_at == created_at.
        updated_at: if n.is_multiple_of(2) { created_at + 1 } else { created_at },
    }
}
