//! Tests of the NDJSON line writer: float32 values survive bit for bit,
//! and each Vectorize rule refuses exactly the rows it should, naming them.

use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use super::ndjson::{Line, LineWriter};
use crate::batch::sink::VectorReport;
use crate::config::project::OnInvalid;
use crate::sink::test_table::{batch, mapping, spec};

fn line(b: &RecordBatch, row: usize, dims: Option<u32>) -> (Line, String) {
    let w = LineWriter::new(&spec(), &mapping(dims)).expect("writer");
    let mut out = String::new();
    let l = w.line(b, row, &mut out);
    (l, out)
}

#[test]
fn a_line_has_the_documented_shape() {
    let b =
        batch(&[("a\"b", Some(vec![0.5, -1.0, 3.0e-39]), Some(r#"{"k":"v","n":[ "s" ]}"#), Some("tenant"))]);
    let (l, out) = line(&b, 0, Some(3));
    assert_eq!(l, Line::Written);
    assert_eq!(
        out,
        "{\"id\":\"a\\\"b\",\"values\":[0.5,-1.0,3e-39],\"namespace\":\"tenant\",\"metadata\":{\"meta\":{\"k\":\"v\",\"n\":[\"s\"]}}}\n"
    );
}

#[test]
fn each_rule_refuses_its_row_and_names_it() {
    let long_id = "x".repeat(70);
    let big = format!("{{\"text\":\"{}\"}}", "y".repeat(11 * 1024));
    let long_ns = "n".repeat(65);
    let b = batch(&[
        ("ok", Some(vec![1.0, 2.0, 3.0]), None, None),
        ("dims", Some(vec![1.0, 2.0, 3.0, 4.0]), None, None),
        (&long_id, Some(vec![1.0, 2.0, 3.0]), None, None),
        ("meta", Some(vec![1.0, 2.0, 3.0]), Some(&big), None),
        ("key", Some(vec![1.0, 2.0, 3.0]), Some(r#"{"a.b":1}"#), None),
        ("deep", Some(vec![1.0, 2.0, 3.0]), Some(r#"{"a":{"b":{"c":1}}}"#), None),
        ("ns", Some(vec![1.0, 2.0, 3.0]), None, Some(&long_ns)),
        ("null", None, None, None),
    ]);
    let reason = |row: usize| match line(&b, row, Some(3)) {
        (Line::Invalid(r), out) => {
            assert!(out.is_empty(), "nothing is written for an invalid row");
            format!("{} {}", r.key, r.describe())
        }
        other => panic!("row {row}: {other:?}"),
    };
    assert_eq!(line(&b, 0, Some(3)).0, Line::Written);
    assert_eq!(reason(1), "id=dims column embedding: has 4 dimensions; the index has 3");
    assert!(reason(2).contains("is 70 bytes; Vectorize ids are 1 to 64"), "{}", reason(2));
    // The 10 KiB rule names the column and the JSON path the bytes come from.
    assert!(
        reason(3).starts_with("id=meta column meta, path meta.text: makes the metadata 11"),
        "{}",
        reason(3)
    );
    assert!(reason(3).contains("Vectorize allows 10240 per vector"), "{}", reason(3));
    assert!(
        reason(4).contains("column meta, path meta.\"a.b\": key `a.b`: metadata keys may not contain `.`"),
        "{}",
        reason(4)
    );
    assert!(reason(5).starts_with("id=deep column meta, path meta.a: is an object inside"), "{}", reason(5));
    assert!(reason(5).contains("nests one level only"), "{}", reason(5));
    assert!(reason(6).contains("namespace") && reason(6).contains("65 bytes"), "{}", reason(6));
    assert_eq!(line(&b, 7, Some(3)).0, Line::Null);

    let mut report = VectorReport::default();
    let w = LineWriter::new(&spec(), &mapping(Some(3))).expect("writer");
    let mut lines = 0;
    w.write_batch(&b, &mut report, &mut |_| {
        lines += 1;
        Ok(())
    })
    .expect("skip policy");
    assert_eq!((report.written, report.null, report.skipped, lines), (1, 1, 6, 1));

    let mut failing = mapping(Some(3));
    failing.on_invalid = OnInvalid::Fail;
    let w = LineWriter::new(&spec(), &failing).expect("writer");
    let e = w
        .write_batch(&b, &mut VectorReport::default(), &mut |_| Ok(()))
        .expect_err("fail policy")
        .to_string();
    assert!(e.contains("table public.t, column embedding, row id=dims: has 4 dimensions"), "{e}");
    assert!(e.contains("on_invalid = \"skip\""), "{e}");
}

#[test]
fn over_1536_dimensions_is_refused_without_an_index_dimension() {
    let b = batch(&[("big", Some(vec![0.25; 1537]), None, None)]);
    match line(&b, 0, None).0 {
        Line::Invalid(r) => assert_eq!(r.reason, "has 1537 dimensions; Vectorize takes at most 1536"),
        other => panic!("{other:?}"),
    }
}

proptest! {
    // Any finite float32 vector reads back from the line with the same bits.
    #[test]
    fn values_round_trip_bit_for_bit(bits in proptest::collection::vec(any::<u32>(), 1..64)) {
        let values: Vec<f32> = bits.iter().map(|b| f32::from_bits(*b)).filter(|f| f.is_finite()).collect();
        prop_assume!(!values.is_empty());
        let b = batch(&[("id", Some(values.clone()), None, None)]);
        let (l, out) = line(&b, 0, None);
        prop_assert_eq!(l, Line::Written);
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON line");
        let back: Vec<u32> = v["values"].as_array().expect("values").iter()
            .map(|x| (x.as_f64().expect("number") as f32).to_bits()).collect();
        prop_assert_eq!(back, values.iter().map(|f| f.to_bits()).collect::<Vec<_>>());
    }
}
