//! Tests of the COPY BINARY encoder: a property test that batches of every
//! kind (and arrays) come back equal through the source's own framer and
//! decoder, the exact bytes of each format written out by hand, and the
//! values it refuses. The live round trip through Postgres is in
//! tests/integration/pg_copy_in.rs.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, FixedSizeListArray, Float32Array, Float64Array,
    Int16Array, Int32Array, ListArray, StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use super::*;

mod values;
use values::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Encoding then decoding gives the batch back, bit for bit (Arrow
    /// compares primitive values as bytes: see the test below), also when
    /// the batch arrives in slices (offsets into shared buffers).
    #[test]
    fn every_kind_round_trips((rows, split) in rows(&every_kind()).prop_flat_map(|r| {
        let n = r.len();
        (Just(r), 0..=n)
    })) {
        let table = every_kind();
        let batch = batch_of(&table, &rows);
        let parts = [batch.slice(0, split), batch.slice(split, batch.num_rows() - split)];
        let bytes = stream(&table, &parts).unwrap();
        let back = decode(&table, &bytes).unwrap();
        prop_assert_eq!(back, batch);
    }
}

#[test]
fn batch_equality_compares_float_bits() {
    let nan = |bits| Float32Array::from(vec![f32::from_bits(bits)]);
    assert_ne!(nan(0x7fc0_0001), nan(0x7fc0_0002));
    assert_eq!(nan(0x7fc0_0001), nan(0x7fc0_0001));
    assert_ne!(Float64Array::from(vec![-0.0]), Float64Array::from(vec![0.0]));
}

/// Encodes one row of a one-column table and returns the field's bytes
/// (length included).
fn field(ty: ColumnType, array: ArrayRef, oid: Option<u32>) -> Result<Vec<u8>> {
    let table = spec("one", vec![("c", ty)], &[]);
    let batch = RecordBatch::try_new(table.arrow_schema(), vec![array]).expect("batch");
    let mut out = Vec::new();
    CopyEncoder::new(table, vec![oid])?.encode(&batch, &mut out)?;
    assert_eq!(&out[..2], &[0, 1], "field count");
    Ok(out[2..].to_vec())
}

fn be(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn header_and_trailer_are_the_documented_bytes() {
    assert_eq!(HEADER, b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0");
    assert_eq!(HEADER.len(), 19);
    assert_eq!(TRAILER, (-1i16).to_be_bytes());
}

/// Each format, written out by hand from the send functions.
#[test]
fn fields_are_written_as_the_send_functions_write_them() {
    use Kind::*;
    let f = |t, a: ArrayRef| field(ty(t), a, None).unwrap();
    assert_eq!(f(Bool, Arc::new(BooleanArray::from(vec![true]))), [0, 0, 0, 1, 1]);
    assert_eq!(f(Int2, Arc::new(Int16Array::from(vec![-2]))), [0, 0, 0, 2, 0xff, 0xfe]);
    assert_eq!(f(Float4, Arc::new(Float32Array::from(vec![-0.0]))), [0, 0, 0, 4, 0x80, 0, 0, 0]);
    assert_eq!(f(Int4, Arc::new(Int32Array::from(vec![None]))), [0xff, 0xff, 0xff, 0xff]);
    assert_eq!(f(Jsonb, Arc::new(StringArray::from(vec!["{}"]))), [0, 0, 0, 3, 1, b'{', b'}']);
    assert_eq!(f(Text, Arc::new(StringArray::from(vec!["é"]))), [0, 0, 0, 2, 0xc3, 0xa9]);
    // 1970-01-01 is day -10957 of Postgres's 2000-01-01 epoch.
    assert_eq!(
        f(Date, Arc::new(Date32Array::from(vec![0]))),
        be(&[&[0, 0, 0, 4], &(-10957i32).to_be_bytes()])
    );
    assert_eq!(
        f(Timestamp, Arc::new(TimestampMicrosecondArray::from(vec![0]))),
        be(&[&[0, 0, 0, 8], &(-946_684_800_000_000i64).to_be_bytes()])
    );
    // numeric 12345.678: ndigits 3, weight 1, sign +, dscale 3, digits 1 2345 6780.
    let dec = ColumnType { decimal: Some((10, 3)), ..ty(Numeric) };
    let d = Decimal128Array::from(vec![12_345_678i128]).with_precision_and_scale(10, 3).unwrap();
    let want = [0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c];
    assert_eq!(field(dec, Arc::new(d), None).unwrap(), want);
    assert_eq!(f(Numeric, Arc::new(StringArray::from(vec!["12345.678"]))), want);
    // vector [1.5, -0]: dim 2, unused 0, float4s.
    let vector = ColumnType { dims: Some(2), ..ty(Vector) };
    let item = Arc::new(arrow::datatypes::Field::new("item", DataType::Float32, false));
    let v = FixedSizeListArray::new(item.clone(), 2, Arc::new(Float32Array::from(vec![1.5, -0.0])), None);
    assert_eq!(
        field(vector, Arc::new(v), None).unwrap(),
        [0, 0, 0, 12, 0, 2, 0, 0, 0x3f, 0xc0, 0, 0, 0x80, 0, 0, 0]
    );
    // halfvec [1, -2]: binary16 0x3c00, 0xc000.
    let halfvec = ColumnType { dims: Some(2), ..ty(Halfvec) };
    let h = FixedSizeListArray::new(item, 2, Arc::new(Float32Array::from(vec![1.0, -2.0])), None);
    assert_eq!(field(halfvec, Arc::new(h), None).unwrap(), [0, 0, 0, 8, 0, 2, 0, 0, 0x3c, 0, 0xc0, 0]);
}

#[test]
fn arrays_are_written_as_array_send_writes_them() {
    let int4s = ColumnType { array: true, ..ty(Kind::Int4) };
    let item = Arc::new(arrow::datatypes::Field::new("item", DataType::Int32, true));
    let list = |offsets: Vec<i32>, values: Vec<Option<i32>>| -> ArrayRef {
        Arc::new(ListArray::new(
            item.clone(),
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Arc::new(Int32Array::from(values)),
            None,
        ))
    };
    // {7,NULL}: ndim 1, has-null 1, oid 23, size 2, lower bound 1, elements.
    let got = field(int4s.clone(), list(vec![0, 2], vec![Some(7), None]), Some(23)).unwrap();
    let want = be(&[
        &32i32.to_be_bytes(), // 20 header bytes, 8 for 7, 4 for NULL
        &[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 23, 0, 0, 0, 2, 0, 0, 0, 1],
        &[0, 0, 0, 4, 0, 0, 0, 7],
        &[0xff, 0xff, 0xff, 0xff],
    ]);
    assert_eq!(got, want);
    // {}: ndim 0, no null flag, the oid, no dimensions.
    let got = field(int4s.clone(), list(vec![0, 0], vec![]), Some(23)).unwrap();
    assert_eq!(got, [0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23]);
    // {5}: has-null 0.
    let got = field(int4s, list(vec![0, 1], vec![Some(5)]), Some(23)).unwrap();
    assert_eq!(&got[8..12], &[0, 0, 0, 0]);
}

fn refusal(ty: ColumnType, array: ArrayRef) -> String {
    let table = spec("one", vec![("id", self::ty(Kind::Int4)), ("c", ty)], &["id"]);
    let ids = Arc::new(Int32Array::from(vec![41, 42]));
    let batch = RecordBatch::try_new(table.arrow_schema(), vec![ids, array]).expect("batch");
    let oid = table.columns[1].ty.array.then_some(23);
    let mut out = b"before".to_vec();
    let err = CopyEncoder::new(table, vec![None, oid]).unwrap().encode(&batch, &mut out).unwrap_err();
    assert_eq!(out, b"before", "a failed batch leaves the buffer as it was");
    let text = err.to_string();
    assert!(text.contains("table public.one, column c, row id=42"), "{text}");
    text
}

/// Values the receive functions would refuse are refused here, naming the
/// row; the first row of each pair is fine.
#[test]
fn values_postgres_cannot_hold_are_refused() {
    use Kind::*;
    let ts = |v: i64| -> ArrayRef { Arc::new(TimestampMicrosecondArray::from(vec![0, v])) };
    assert!(refusal(ty(Timestamp), ts(MIN_TIMESTAMP + PG_EPOCH_US - 1)).contains("out of Postgres's range"));
    assert!(refusal(ty(Timestamp), ts(i64::MIN)).contains("out of Postgres's range"));
    let date = |v: i32| -> ArrayRef { Arc::new(Date32Array::from(vec![0, v])) };
    assert!(refusal(ty(Date), date(MIN_DATE + PG_EPOCH_DAYS - 1)).contains("out of Postgres's range"));
    assert!(refusal(ty(Date), date(i32::MAX)).contains("out of Postgres's range"));
    let time = |v: i64| -> ArrayRef { Arc::new(Time64MicrosecondArray::from(vec![0, v])) };
    assert!(refusal(ty(Time), time(USECS_PER_DAY + 1)).contains("not within a day"));
    assert!(refusal(ty(Time), time(-1)).contains("not within a day"));
    let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec!["ok", v])) };
    assert!(refusal(ty(Text), text("a\0b")).contains("U+0000"));
    assert!(refusal(ty(Jsonb), text("\"\0\"")).contains("U+0000"));
    let nums: ArrayRef = Arc::new(StringArray::from(vec!["1.50", "1e5"]));
    assert!(refusal(ty(Numeric), nums).contains("\"1e5\" is not a numeric value"));
    let dec = ColumnType { decimal: Some((4, 2)), ..ty(Numeric) };
    let d = Decimal128Array::from(vec![9999, 10000]).with_precision_and_scale(4, 2).unwrap();
    assert!(refusal(dec, Arc::new(d)).contains("more than the column's 4 digits"));
    let item = Arc::new(arrow::datatypes::Field::new("item", DataType::Float32, false));
    let vecs = |vals: Vec<f32>| -> ArrayRef {
        Arc::new(FixedSizeListArray::new(item.clone(), 1, Arc::new(Float32Array::from(vals)), None))
    };
    let (vector, halfvec) =
        (ColumnType { dims: Some(1), ..ty(Vector) }, ColumnType { dims: Some(1), ..ty(Halfvec) });
    assert!(refusal(vector.clone(), vecs(vec![1.0, f32::NAN])).contains("refuses NaN"));
    assert!(refusal(vector, vecs(vec![1.0, f32::NEG_INFINITY])).contains("refuses NaN and infinity"));
    assert!(refusal(halfvec.clone(), vecs(vec![1.0, 0.1])).contains("is not a float16 value"));
    assert!(refusal(halfvec, vecs(vec![1.0, 65520.0])).contains("is not a float16 value"));
    let undeclared = ColumnType { dims: None, ..ty(Vector) };
    let empty = ListArray::new(
        item,
        OffsetBuffer::new(ScalarBuffer::from(vec![0, 1, 1])),
        Arc::new(Float32Array::from(vec![1.0])),
        None,
    );
    assert!(refusal(undeclared, Arc::new(empty)).contains("vector of 0 dimensions"));
    // An element's refusal names the element.
    let texts = ColumnType { array: true, ..ty(Text) };
    let tlist = ListArray::new(
        Arc::new(arrow::datatypes::Field::new("item", DataType::Utf8, true)),
        OffsetBuffer::new(ScalarBuffer::from(vec![0, 1, 3])),
        Arc::new(StringArray::from(vec!["a", "b", "c\0"])),
        None,
    );
    assert!(refusal(texts, Arc::new(tlist)).contains("array element 2: text contains"));
}

#[test]
fn keyless_rows_are_named_by_their_place() {
    let table = spec("nokey", vec![("t", ty(Kind::Text))], &[]);
    let batch = |v: Vec<&str>| {
        RecordBatch::try_new(table.arrow_schema(), vec![Arc::new(StringArray::from(v)) as ArrayRef]).unwrap()
    };
    let mut enc = CopyEncoder::new(table.clone(), vec![None]).unwrap();
    let mut out = Vec::new();
    enc.encode(&batch(vec!["a", "b"]), &mut out).unwrap();
    let err = enc.encode(&batch(vec!["c", "\0"]), &mut out).unwrap_err().to_string();
    assert!(err.contains("row #4 written (the table has no primary key)"), "{err}");
    assert_eq!(enc.rows(), 2);
}

#[test]
fn wrong_arrow_types_and_missing_oids_are_errors_not_panics() {
    let table = spec("one", vec![("c", ty(Kind::Int8))], &[]);
    let batch = RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "c",
            DataType::Int32,
            true,
        )])),
        vec![Arc::new(Int32Array::from(vec![1])) as ArrayRef],
    )
    .unwrap();
    let err = CopyEncoder::new(table, vec![None]).unwrap().encode(&batch, &mut Vec::new()).unwrap_err();
    assert!(
        err.to_string().contains("column c: the batch holds Arrow Int32 where a int8 column is Int64"),
        "{err}"
    );
    let arrays = spec("arr", vec![("a", ColumnType { array: true, ..ty(Kind::Int4) })], &[]);
    assert!(CopyEncoder::new(arrays.clone(), vec![None]).is_err());
    assert!(CopyEncoder::new(arrays, vec![]).is_err());
    let scalar = spec("one", vec![("c", ty(Kind::Int8))], &[]);
    assert!(CopyEncoder::new(scalar, vec![Some(20)]).is_err());
}

/// Throughput against the decoder's on the same rows (a RAG table: key,
/// text, 1536-dimension embedding, timestamp, tags). Run by hand:
/// `cargo test --release --lib encode_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
// A measurement run by hand (`--ignored --nocapture`): it prints its numbers.
#[allow(clippy::print_stdout)]
fn encode_throughput() {
    use Kind::*;
    let table = spec(
        "chunks",
        vec![
            ("id", ty(Int8)),
            ("content", ty(Text)),
            ("embedding", ColumnType { dims: Some(1536), ..ty(Vector) }),
            ("created", ty(Timestamptz)),
            ("tags", ColumnType { array: true, ..ty(Text) }),
        ],
        &["id"],
    );
    let n = 20_000usize;
    let rows: Vec<Vec<Option<V>>> = (0..n)
        .map(|i| {
            vec![
                Some(V::I64(i as i64)),
                Some(V::Str(format!("chunk {i} ").repeat(40))),
                Some(V::Floats((0..1536).map(|k| ((i * 1536 + k) as f32).sin()).collect())),
                Some(V::Ts(1_700_000_000_000_000 + i as i64)),
                Some(V::List(vec![Some(V::Str("alpha".into())), None, Some(V::Str("beta".into()))])),
            ]
        })
        .collect();
    let batch = batch_of(&table, &rows);
    let mut encoder = CopyEncoder::new(table.clone(), oids(&table)).unwrap();
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    let rounds = 5;
    for _ in 0..rounds {
        out.clear();
        encoder.encode(&batch, &mut out).unwrap();
    }
    let encode = started.elapsed() / rounds;
    let stream = [HEADER, &out, TRAILER].concat();
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        decode(&table, &stream).unwrap();
    }
    let decode = started.elapsed() / rounds;
    let mib = out.len() as f64 / (1 << 20) as f64;
    println!(
        "{n} rows, {mib:.1} MiB: encode {encode:?} ({:.0} MiB/s), decode {decode:?} ({:.0} MiB/s)",
        mib / encode.as_secs_f64(),
        mib / decode.as_secs_f64()
    );
}
