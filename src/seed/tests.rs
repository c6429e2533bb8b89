//! Unit tests of the seed generator: determinism, escaping of the hard
//! strings, unit-norm embeddings with cluster structure, hard rows present.

use super::*;

/// FNV-1a 64: a fixed hash (unlike `DefaultHasher`, whose algorithm is not
/// guaranteed), so golden values stay valid across Rust versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn small(seed: u64) -> SeedParams {
    SeedParams { seed, documents: 12, chunks: 150, dims: 24, hard_rows: true }
}

fn copy_bytes(p: &SeedParams, table: Table) -> Vec<u8> {
    let mut out = Vec::new();
    let rows = write_copy(p, table, &mut out).expect("write_copy");
    let lines = out.iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(rows, lines, "one line per row");
    out
}

fn hard_chunk(n: usize) -> ChunkRow {
    let id = HARD_ROW_IDS[n - 1].0;
    chunks(&small(1)).expect("params").find(|c| uuid_string(&c.id) == id).expect("hard row present")
}

#[test]
fn same_params_give_identical_bytes() {
    for table in [Table::Documents, Table::Chunks] {
        let a = copy_bytes(&small(7), table);
        let b = copy_bytes(&small(7), table);
        assert_eq!(fnv1a(&a), fnv1a(&b));
        assert_eq!(a, b);
    }
}

#[test]
fn different_seed_gives_different_data() {
    for table in [Table::Documents, Table::Chunks] {
        assert_ne!(copy_bytes(&small(1), table), copy_bytes(&small(2), table));
    }
}

#[test]
fn text_does_not_depend_on_dims() {
    let a: Vec<String> = chunks(&small(3)).expect("params").map(|c| c.content).collect();
    let mut p = small(3);
    p.dims = 7;
    let b: Vec<String> = chunks(&p).expect("params").map(|c| c.content).collect();
    assert_eq!(a, b);
}

#[test]
fn counts_indexes_and_references_are_consistent() {
    let p = small(5);
    let docs: Vec<DocumentRow> = documents(&p).expect("params").collect();
    assert_eq!(docs.len() as u64, p.total_documents());
    let mut seen_urls = std::collections::HashSet::new();
    for d in &docs {
        assert!(seen_urls.insert(d.source_url.clone()), "duplicate url {}", d.source_url);
        assert!(d.updated_at >= d.created_at);
        assert!(d.tags.len() <= 4);
        assert_eq!(d.id[6] >> 4, 4, "version 4");
        assert_eq!(d.id[8] >> 6, 2, "RFC 4122 variant");
    }
    let all: Vec<ChunkRow> = chunks(&p).expect("params").collect();
    assert_eq!(all.len() as u64, p.total_chunks());
    let mut next_index = std::collections::HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for c in &all {
        assert!(ids.insert(c.id), "duplicate chunk id");
        let expected = next_index.entry(c.document_id).or_insert(0);
        assert_eq!(c.chunk_index, *expected, "chunk_index is 0.. per document");
        *expected += 1;
        assert!(docs.iter().any(|d| d.id == c.document_id), "chunk references a document");
        assert!(c.updated_at >= c.created_at);
    }
    // One chunk per document at least when there are enough chunks.
    assert_eq!(next_index.len(), docs.len());
}

#[test]
fn params_are_validated() {
    let bad = [
        SeedParams { dims: 0, ..small(1) },
        SeedParams { dims: MAX_DIMS + 1, ..small(1) },
        SeedParams { documents: 0, ..small(1) },
        SeedParams { chunks: MAX_ROWS + 1, ..small(1) },
    ];
    for p in bad {
        assert!(matches!(write_copy(&p, Table::Chunks, std::io::sink()), Err(SeedError::InvalidParams(_))));
    }
    let empty = SeedParams { documents: 0, chunks: 0, hard_rows: false, ..small(1) };
    assert_eq!(write_copy(&empty, Table::Chunks, std::io::sink()).expect("empty is fine"), 0);
}

#[test]
fn ordinary_embeddings_are_unit_norm_and_clustered() {
    let p = SeedParams { seed: 9, documents: 40, chunks: 800, dims: 256, hard_rows: false };
    let centroids = super::rows::Centroids::new(p.seed, p.dims);
    let mut nulls = 0;
    let mut own = 0.0f64;
    let mut other = 0.0f64;
    let mut n = 0.0f64;
    let topic_of: std::collections::HashMap<[u8; 16], usize> =
        (0..p.documents as u64).map(|d| gen::doc_core(p.seed, d)).map(|c| (c.id, c.topic)).collect();
    for c in chunks(&p).expect("params") {
        let Some(v) = c.embedding else {
            nulls += 1;
            continue;
        };
        assert_eq!(v.len(), p.dims);
        let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        let topic = topic_of[&c.document_id];
        let dot = |k: usize| centroids.embed_dot(k, &v);
        own += dot(topic);
        other += dot((topic + 1) % TOPIC_COUNT);
        n += 1.0;
    }
    // About 2% NULL: 16 expected of 800.
    assert!((4..=35).contains(&nulls), "{nulls} NULL embeddings");
    // Noise of relative length 0.35: cos(own centroid) ≈ 1/sqrt(1 + 0.35²) ≈ 0.94;
    // other centroids are nearly orthogonal (random unit vectors, 256 dims).
    assert!(own / n > 0.9 && (other / n).abs() < 0.15, "own {} other {}", own / n, other / n);
}

#[test]
fn chunks_of_one_topic_are_neighbours_at_full_dimension() {
    let p = SeedParams { seed: 3, documents: 6, chunks: 60, dims: 1536, hard_rows: false };
    let topic_of: std::collections::HashMap<[u8; 16], usize> =
        (0..p.documents as u64).map(|d| gen::doc_core(p.seed, d)).map(|c| (c.id, c.topic)).collect();
    let rows: Vec<(usize, Vec<f32>)> =
        chunks(&p).expect("params").filter_map(|c| Some((topic_of[&c.document_id], c.embedding?))).collect();
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum::<f64>();
    let (mut same, mut ns, mut cross, mut nc) = (0.0, 0.0, 0.0, 0.0);
    for (i, (ta, a)) in rows.iter().enumerate() {
        for (tb, b) in &rows[i + 1..] {
            if ta == tb {
                same += cos(a, b);
                ns += 1.0;
            } else {
                cross += cos(a, b);
                nc += 1.0;
            }
        }
    }
    assert!(ns > 0.0 && nc > 0.0);
    assert!(same / ns > 0.85 && (cross / nc).abs() < 0.1, "same {} cross {}", same / ns, cross / nc);
}

#[test]
fn hard_rows_are_present_with_exact_values() {
    let p = small(1);
    let docs: Vec<DocumentRow> = documents(&p).expect("params").collect();
    assert!(docs.iter().any(|d| uuid_string(&d.id) == HARD_DOCUMENT_ID));
    let hard: Vec<ChunkRow> =
        chunks(&p).expect("params").filter(|c| uuid_string(&c.document_id) == HARD_DOCUMENT_ID).collect();
    assert_eq!(hard.len(), HARD_ROW_IDS.len());
    for (i, (c, (id, _))) in hard.iter().zip(HARD_ROW_IDS).enumerate() {
        assert_eq!(uuid_string(&c.id), *id);
        assert_eq!(c.chunk_index, i as i32);
    }
    assert_eq!(hard_chunk(1).content, "");
    assert_eq!(hard_chunk(2).content, "'");
    assert_eq!(hard_chunk(3).content, "''; DROP TABLE chunks; --");
    assert_eq!(hard_chunk(4).content, "C:\\path\\to\\file");
    assert_eq!(hard_chunk(5).content, "\\");
    assert_eq!(hard_chunk(6).content, "a\r\nb\tc\nd");
    assert!(hard_chunk(7).content.contains('\u{200d}'));
    assert!(hard_chunk(9).content.contains('\u{2028}') && hard_chunk(9).content.contains('\u{2029}'));
    let large = hard_chunk(10).content;
    assert_eq!(large.len(), LARGE_CONTENT_BYTES);
    assert_eq!(large, large_content());
    assert!(large.lines().count() > 1000);
    assert_eq!(hard_chunk(11).embedding, None);
    assert_eq!(hard_chunk(12).tags, None);
    assert_eq!(hard_chunk(13).tags, Some(vec![]));
    assert_eq!(hard_chunk(15).metadata, None);
    assert_eq!(hard_chunk(16).metadata.as_deref(), Some("{}"));
    let extreme = hard_chunk(18).embedding.expect("extreme embedding");
    assert_eq!(extreme.len(), 24);
    assert_eq!(extreme[0], 1e-38);
    assert_eq!(extreme[1], -3.4e38);
    assert_eq!(extreme[2].to_bits(), 0.0f32.to_bits());
    assert_eq!(extreme[3].to_bits(), (-0.0f32).to_bits());
    assert_eq!(hard_chunk(19).content, "\\N");
}

#[test]
fn hard_strings_are_escaped_for_copy() {
    assert_eq!(copy_text(""), "");
    assert_eq!(copy_text("'"), "'");
    assert_eq!(copy_text("''; DROP TABLE chunks; --"), "''; DROP TABLE chunks; --");
    assert_eq!(copy_text("C:\\path\\to\\file"), "C:\\\\path\\\\to\\\\file");
    assert_eq!(copy_text("\\"), "\\\\");
    assert_eq!(copy_text("a\r\nb\tc\nd"), "a\\r\\nb\\tc\\nd");
    assert_eq!(copy_text("\\N"), "\\\\N");
    assert_eq!(copy_text("x\n\\.\ny"), "x\\n\\\\.\\ny");
    assert_eq!(copy_text("\u{8}\u{b}\u{c}\u{7}\u{1b}"), "\\b\\v\\f\u{7}\u{1b}");
    let seps = "a\u{2028}b\u{2029}c 👨‍👩‍👧‍👦 مرحبا";
    assert_eq!(copy_text(seps), seps, "non-ASCII passes through untouched");

    let mut line = Vec::new();
    encode_chunk(&hard_chunk(6), &mut line, &mut String::new());
    let line = String::from_utf8(line).expect("utf-8");
    assert!(line.contains("\ta\\r\\nb\\tc\\nd\t"), "{line}");
    assert_eq!(line.matches('\n').count(), 1, "only the row terminator is a raw newline");
    assert_eq!(line.split('\t').count(), 10, "ten columns");

    let mut line = Vec::new();
    encode_chunk(&hard_chunk(12), &mut line, &mut String::new());
    assert_eq!(String::from_utf8(line).expect("utf-8").split('\t').nth(5), Some("\\N"));
}

#[test]
fn arrays_and_json_use_postgres_output_form() {
    let tags = hard_chunk(14).tags.expect("tags");
    assert_eq!(
        array_literal(&tags),
        r#"{"has \"quotes\"","comma,inside","{braces}","back\\slash","two words","NULL","",plain}"#
    );
    assert_eq!(array_literal(&[]), "{}");
    // In COPY text the array's backslashes are doubled once more.
    assert_eq!(copy_text(&array_literal(&["a\\b".to_owned()])), r#"{"a\\\\b"}"#);

    let meta = hard_chunk(17).metadata.expect("metadata");
    let parsed: serde_json::Value = serde_json::from_str(&meta).expect("valid JSON");
    assert_eq!(parsed["l1"]["l2"]["l3"]["deep"], "value");
    assert_eq!(parsed["big"].as_u64(), Some(12_345_678_901_234_567));
    assert_eq!(parsed["quote"], "she said \"hi\" and left");
    // jsonb order: shorter keys first, then bytewise.
    assert!(meta.starts_with(r#"{"l1": {"l2": {"l3": {"deep": "value", "emoji": "#), "{meta}");
    assert!(
        meta.contains(r#""tiny": 0.0000001"#) && meta.contains(r#""control": "tab\there\nnew line\r\u0001""#)
    );
    for d in documents(&small(4)).expect("params") {
        let v: serde_json::Value = serde_json::from_str(&d.metadata).expect("valid JSON");
        assert_eq!(v["lang"], d.language.as_str());
        assert!(v["author"]["name"].is_string());
    }
}

#[test]
fn timestamps_use_copy_input_form() {
    let fmt = |t| {
        let mut s = String::new();
        format::push_timestamp(&mut s, t);
        s
    };
    assert_eq!(fmt(BASE_MICROS), "2024-01-01 00:00:00.000000+00");
    assert_eq!(fmt(BASE_MICROS + 59 * 86_400_000_000 + 3_723_000_042), "2024-02-29 01:02:03.000042+00");
    assert_eq!(fmt(0), "1970-01-01 00:00:00.000000+00");
    assert_eq!(fmt(-1), "1969-12-31 23:59:59.999999+00");
}

#[test]
fn content_is_multilingual_and_multi_paragraph() {
    let p = SeedParams { seed: 11, documents: 80, chunks: 400, dims: 4, hard_rows: false };
    let langs: std::collections::BTreeSet<String> =
        documents(&p).expect("params").map(|d| d.language).collect();
    for code in ["en", "de", "fr", "es", "ja", "ar", "ru", "zh"] {
        assert!(langs.contains(code), "missing {code}: {langs:?}");
    }
    let multi = chunks(&p).expect("params").filter(|c| c.content.contains("\n\n")).count();
    assert!(multi > 100, "{multi} multi-paragraph chunks");
    for d in documents(&p).expect("params") {
        assert!(d.source_url.starts_with(&format!("https://docs.example.com/{}/", d.language)));
    }
}

#[test]
fn schema_has_the_dimension() {
    let sql = schema_sql(1536);
    assert!(sql.contains("vector(1536)") && !sql.contains("{{DIMS}}"));
    assert!(Table::Documents.copy_statement().contains(DOCUMENT_COLUMNS));
    assert!(Table::Chunks.copy_statement().contains(CHUNK_COLUMNS));
}
