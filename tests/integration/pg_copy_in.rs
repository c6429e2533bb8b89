//! The COPY BINARY encoder against the real Postgres: rows read by pgflare
//! (COPY TO + the source's decoder) go back with COPY FROM STDIN (FORMAT
//! binary) and read back the same, as Arrow and as Postgres's own text
//! output; values no SQL literal can make (NaN payloads, the ends of the
//! timestamp range) go in bit for bit; Postgres checks an array's element
//! type oid; and random numerics come back as the text they were, in the
//! bytes numeric_send sends.

use std::cell::RefCell;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float32Array, Float64Array, Int64Array, ListArray, StringArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field};
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use pgflare::batch::TableSpec;
use pgflare::sink::postgres::encode::{CopyEncoder, HEADER, TRAILER};
use pgflare::source::copy::CopyFramer;
use pgflare::source::decode::BatchBuilder;
use pgflare::source::{introspect, numeric, Selection, Source};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sqlx::{Connection, PgConnection};

use crate::common::*;

/// Every supported type; `restored` is its empty twin.
const SCHEMA: &str = "
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN label AS text CHECK (VALUE <> '');
CREATE TABLE every (
  id int8 PRIMARY KEY,
  b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
  dec numeric(10,2), num numeric,
  t text, vc varchar(20), bp char(5), nm name, lbl label, e mood,
  j json, jb jsonb, u uuid, d date, tm time, ts timestamp, tz timestamptz, by bytea,
  v vector(3), hv halfvec(3), vl vector,
  ab bool[], ai2 int2[], ai4 int4[], ai8 int8[], af4 float4[], af8 float8[], at text[], avc varchar(5)[]
);";

/// Hard values as SQL literals: extremes of each type, NULL everywhere,
/// empty arrays and strings, text that needs quoting.
const ROWS: &str = r#"
INSERT INTO every VALUES
 (1, true, 7, 42, 9000000000, 1.5, 2.25, 12345678.90, 3.14159,
  'plain', 'short', 'ab', 'a_name', 'a label', 'ok',
  '{"a" : [1, 2]}', '{"b": 1, "a": [1, 2.50]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '2024-02-29', '13:45:07.123456', '2024-02-29 13:45:07.123456', '2024-02-29 13:45:07.123456+02', '\x00ff10',
  '[1.5,-0,1e-45]', '[1,0.5,-2]', '[1,2,3,4,5]',
  '{t,f,NULL}', '{-32768,32767}', '{1,NULL,3}', '{-9223372036854775808}', '{-0,NaN,Infinity}',
  '{NaN,-Infinity,-0,4.9e-324}', '{"a,b",NULL,"","NULL","q\"uote","back\\slash"}', '{x,yz}'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, false, -32768, -2147483648, -9223372036854775808, '-0', 'NaN', -99999999.99, 'NaN',
  E'üñí©ødé 𝄞 \t tab \n newline '' quote \\ backslash', '', 'abcde', repeat('n', 63), 'x', 'sad',
  '[]', '{}', '00000000-0000-0000-0000-000000000000',
  '4714-11-24 BC', '24:00:00', '4714-11-24 00:00:00 BC', '294246-12-31 23:59:59.999999+00', '',
  '[-3.4028235e+38,3.4028235e+38,-1e-45]', '[65504,-6e-08,-0]', '[0.1]',
  '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}'),
 (4, true, 32767, 2147483647, 9223372036854775807, 'Infinity', '-Infinity', 0, '-Infinity',
  'x', 'y', '', 'z', 'w', 'happy',
  '"just a string"', 'null', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '5874897-12-31', '00:00:00', '294246-12-31 23:59:59.999999', '4714-11-24 00:00:00+00 BC', '\x',
  '[1,2,3]', '[1,2,3]', '[1]',
  '{NULL}', '{NULL,NULL}', '{0}', '{NULL}', '{NULL}', '{NULL}', '{NULL}', '{NULL}'),
 (5, true, 0, 0, 0, 0, 0, 0.10, '1.500',
  'a', 'b', 'c', 'd', 'e', 'ok', '1', '1.0', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '2000-01-01', '00:00:00.000001', '2000-01-01 00:00:00', '1970-01-01 00:00:00+00', '\x00',
  '[0,0,0]', '[0,0,0]', '[0,0]',
  '{f}', '{1}', '{1}', '{1}', '{1}', '{1}', '{a}', '{a}'),
 (6, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '-123456789012345678901234567890123456789012345678901234567890.000000000000000000000000000000000000000100',
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"#;

async fn connect(url: &str) -> PgConnection {
    let mut c = PgConnection::connect(url).await.expect("connect");
    // Text output of timestamptz in the checks below is in UTC.
    sqlx::raw_sql("SET TimeZone = 'UTC'").execute(&mut c).await.expect("timezone");
    c
}

/// The table as pgflare's introspection resolves it.
async fn spec_of(url: &str, table: &str) -> Arc<TableSpec> {
    let mut conn = Source::parse(url).expect("url").connect().await.expect("connect");
    let sel = Selection { schema: "public".into(), tables: vec![table.into()], ..Selection::default() };
    let mut infos = introspect(&mut conn, &sel).await.expect("introspect");
    Arc::new(infos.remove(0).spec)
}

/// For each array column, the element type oid the target column has, as
/// a restore reads it from the target's catalog.
async fn element_oids(c: &mut PgConnection, table: &str, spec: &TableSpec) -> Vec<Option<u32>> {
    let mut oids = Vec::new();
    for col in &spec.columns {
        if !col.ty.array {
            oids.push(None);
            continue;
        }
        let oid: i64 = sqlx::query_scalar(
            "SELECT t.typelem::int8 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
              WHERE a.attrelid = $1::regclass AND a.attname = $2",
        )
        .bind(table)
        .bind(&col.name)
        .fetch_one(&mut *c)
        .await
        .expect("element oid");
        oids.push(Some(oid as u32));
    }
    oids
}

/// `COPY (sql) TO STDOUT (FORMAT binary)`, decoded as the source does.
async fn read(c: &mut PgConnection, spec: &Arc<TableSpec>, sql: &str) -> RecordBatch {
    let mut framer = CopyFramer::new(spec.qualified(), spec.columns.len());
    let mut builder = BatchBuilder::new(spec.clone(), 64);
    let mut stream =
        c.copy_out_raw(&format!("COPY ({sql}) TO STDOUT (FORMAT binary)")).await.expect("copy out");
    while let Some(chunk) = stream.next().await {
        framer.feed(&chunk.expect("copy data"), |row| builder.push(row)).expect("decode");
    }
    framer.finish().expect("whole stream");
    builder.finish().expect("batch")
}

/// The raw field bytes of a one-column COPY TO.
async fn raw_fields(c: &mut PgConnection, sql: &str) -> Vec<Option<Vec<u8>>> {
    let mut framer = CopyFramer::new("raw", 1);
    let mut fields = Vec::new();
    let mut stream =
        c.copy_out_raw(&format!("COPY ({sql}) TO STDOUT (FORMAT binary)")).await.expect("copy out");
    while let Some(chunk) = stream.next().await {
        framer
            .feed(&chunk.expect("copy data"), |row| {
                fields.extend(row.fields().map(|f| f.map(<[u8]>::to_vec)));
                Ok(())
            })
            .expect("frame");
    }
    framer.finish().expect("whole stream");
    fields
}

/// Encodes `batch` and sends it with COPY FROM STDIN (FORMAT binary).
async fn copy_in(
    c: &mut PgConnection,
    table: &str,
    spec: &Arc<TableSpec>,
    oids: Vec<Option<u32>>,
    batch: &RecordBatch,
) -> Result<u64, String> {
    let mut bytes = HEADER.to_vec();
    CopyEncoder::new(spec.clone(), oids)
        .expect("encoder")
        .encode(batch, &mut bytes)
        .map_err(|e| e.to_string())?;
    bytes.extend_from_slice(TRAILER);
    let mut copy = c
        .copy_in_raw(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
        .await
        .map_err(|e| e.to_string())?;
    copy.send(bytes).await.map_err(|e| e.to_string())?;
    copy.finish().await.map_err(|e| e.to_string())
}

async fn texts(c: &mut PgConnection, sql: &str) -> Vec<Option<String>> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(c).await.expect("query")
}

#[test]
fn archived_rows_go_back_bit_for_bit() {
    let db = TestDb::new("pgcopyin");
    db.exec(SCHEMA);
    db.exec(ROWS);
    db.exec("CREATE TABLE restored (LIKE every INCLUDING ALL)");
    let url = db.url.clone();
    block_on(async move {
        let spec = spec_of(&url, "every").await;
        let types: Vec<String> = spec.columns.iter().map(|c| c.ty.describe()).collect();
        assert_eq!(
            types.join(" "),
            "int8 bool int2 int4 int8 float4 float8 numeric(10,2) numeric text text text text text enum json jsonb \
             uuid date time timestamp timestamptz bytea vector(3) halfvec(3) vector \
             bool[] int2[] int4[] int8[] float4[] float8[] text[] text[]"
        );
        let mut c = connect(&url).await;
        let archived = read(&mut c, &spec, "SELECT * FROM every ORDER BY id").await;
        assert_eq!(archived.num_rows(), 6);
        let oids = element_oids(&mut c, "restored", &spec).await;
        assert_eq!(oids[33], Some(1043), "varchar[] has varchar elements");
        let copied = copy_in(&mut c, "restored", &spec, oids, &archived).await.expect("copy in");
        assert_eq!(copied, 6);

        // The same Arrow batch, bit for bit...
        let back = read(&mut c, &spec, "SELECT * FROM restored ORDER BY id").await;
        assert_eq!(back, archived);
        // ...and the same rows as Postgres prints them.
        let source = texts(&mut c, "SELECT r::text FROM every r ORDER BY id").await;
        let restored = texts(&mut c, "SELECT r::text FROM restored r ORDER BY id").await;
        assert_eq!(restored, source);

        // A few hard values, as a person reads them in psql.
        let one = |col: &str, id: i32| format!("SELECT {col}::text FROM restored WHERE id = {id}");
        let expect = [
            (one("f4", 3), "-0"),
            (one("f8", 3), "NaN"),
            (one("f4", 4), "Infinity"),
            (one("i8", 3), "-9223372036854775808"),
            (one("dec", 3), "-99999999.99"),
            (one("dec", 4), "0.00"),
            (one("num", 3), "NaN"),
            (one("num", 4), "-Infinity"),
            (one("num", 5), "1.500"),
            (
                one("num", 6),
                "-123456789012345678901234567890123456789012345678901234567890.000000000000000000000000000000000000000100",
            ),
            (one("t", 3), "üñí©ødé 𝄞 \t tab \n newline ' quote \\ backslash"),
            // bpchar's cast to text trims the padding; its output function keeps it.
            ("SELECT concat('[', bp, ']') FROM restored WHERE id = 1".into(), "[ab   ]"),
            (one("vc", 3), ""),
            (one("e", 3), "sad"),
            (one("j", 1), r#"{"a" : [1, 2]}"#),
            (one("jb", 1), r#"{"a": [1, 2.50], "b": 1}"#),
            (one("jb", 4), "null"),
            (one("d", 3), "4714-11-24 BC"),
            (one("d", 4), "5874897-12-31"),
            (one("tm", 3), "24:00:00"),
            (one("ts", 3), "4714-11-24 00:00:00 BC"),
            (one("ts", 4), "294246-12-31 23:59:59.999999"),
            (one("tz", 1), "2024-02-29 11:45:07.123456+00"),
            (one("tz", 4), "4714-11-24 00:00:00+00 BC"),
            (one("by", 1), "\\x00ff10"),
            (one("by", 3), "\\x"),
            (one("v", 1), "[1.5,-0,1e-45]"),
            (one("v", 3), "[-3.4028235e+38,3.4028235e+38,-1e-45]"),
            (one("hv", 3), "[65504,-5.9604645e-08,-0]"),
            (one("vl", 1), "[1,2,3,4,5]"),
            (one("ai4", 1), "{1,NULL,3}"),
            (one("ai4", 3), "{}"),
            (one("ai2", 4), "{NULL,NULL}"),
            (one("af4", 1), "{-0,NaN,Infinity}"),
            (one("af8", 1), "{NaN,-Infinity,-0,5e-324}"),
            (one("at", 1), r#"{"a,b",NULL,"","NULL","q\"uote","back\\slash"}"#),
            (one("ab", 1), "{t,f,NULL}"),
            (one("avc", 1), "{x,yz}"),
        ];
        for (sql, want) in expect {
            let got = texts(&mut c, &sql).await;
            assert_eq!(got, vec![Some(want.to_string())], "{sql}");
        }
    });
}

/// Values an archive can hold that no SQL literal makes: NaN payloads and
/// signalling NaNs, the first and last instants Arrow and Postgres share,
/// float16 subnormals widened to float32.
#[test]
fn values_without_sql_literals_go_in_bit_for_bit() {
    let db = TestDb::new("pgcopyin_bits");
    db.exec(
        "CREATE EXTENSION IF NOT EXISTS vector;
         CREATE TABLE bits (id int8 PRIMARY KEY, f4 float4, f8 float8, ts timestamp, tz timestamptz,
                            d date, num numeric, hv halfvec, af4 float4[]);",
    );
    let url = db.url.clone();
    block_on(async move {
        let spec = spec_of(&url, "bits").await;
        let schema = spec.arrow_schema();
        let f4 = |b: u32| Some(f32::from_bits(b));
        let f8 = |b: u64| Some(f64::from_bits(b));
        // µs since 1970 of 4714-11-24 00:00:00 BC, Postgres's first instant.
        let first = -211_813_488_000_000_000 + 946_684_800_000_000;
        let half_item = Arc::new(Field::new("item", DataType::Float32, false));
        let halfs = ListArray::new(
            half_item,
            OffsetBuffer::new(ScalarBuffer::from(vec![0, 2, 3, 3])),
            Arc::new(Float32Array::from(vec![
                half::f16::from_bits(1).to_f32(),
                -half::f16::from_bits(0x3ff).to_f32(),
                half::f16::MAX.to_f32(),
            ])),
            Some(vec![true, true, false].into()),
        );
        let af4_item = Arc::new(Field::new("item", DataType::Float32, true));
        let af4 = ListArray::new(
            af4_item,
            OffsetBuffer::new(ScalarBuffer::from(vec![0, 2, 3, 3])),
            Arc::new(Float32Array::from(vec![f4(0x7fa0_0001), None, f4(0xffc1_2345)])),
            None,
        );
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(Float32Array::from(vec![f4(0x7fc0_0001), f4(0xff80_0001), f4(0x8000_0001)])),
            Arc::new(Float64Array::from(vec![f8(0x7ff8_0000_dead_beef), f8(0xfff0_0000_0000_0001), f8(1)])),
            Arc::new(TimestampMicrosecondArray::from(vec![first, i64::MAX, 0])),
            Arc::new(TimestampMicrosecondArray::from(vec![i64::MAX, first, -1]).with_timezone("UTC")),
            Arc::new(Date32Array::from(vec![-2_440_588, 2_145_042_905, -1])),
            Arc::new(StringArray::from(vec![
                format!("{}.{}", "9".repeat(1000), "0".repeat(500)),
                format!("-0.{}1", "0".repeat(16381)),
                "Infinity".to_string(),
            ])),
            Arc::new(halfs),
            Arc::new(af4),
        ];
        let batch = RecordBatch::try_new(schema, columns).expect("batch");
        let mut c = connect(&url).await;
        let oids = element_oids(&mut c, "bits", &spec).await;
        assert_eq!(copy_in(&mut c, "bits", &spec, oids, &batch).await.expect("copy in"), 3);
        let back = read(&mut c, &spec, "SELECT * FROM bits ORDER BY id").await;
        assert_eq!(back, batch);
        let col = |name: &str| format!("SELECT {name}::text FROM bits ORDER BY id");
        let s = |v: &str| Some(v.to_string());
        assert_eq!(texts(&mut c, &col("f4")).await, vec![s("NaN"), s("NaN"), s("-1e-45")]);
        assert_eq!(
            texts(&mut c, &col("ts")).await,
            vec![s("4714-11-24 00:00:00 BC"), s("294247-01-10 04:00:54.775807"), s("1970-01-01 00:00:00")]
        );
        assert_eq!(
            texts(&mut c, &col("tz")).await,
            vec![
                s("294247-01-10 04:00:54.775807+00"),
                s("4714-11-24 00:00:00+00 BC"),
                s("1969-12-31 23:59:59.999999+00")
            ]
        );
        assert_eq!(
            texts(&mut c, &col("d")).await,
            vec![s("4714-11-24 BC"), s("5874897-12-31"), s("1969-12-31")]
        );
        assert_eq!(
            texts(&mut c, &col("hv")).await,
            vec![s("[5.9604645e-08,-6.097555e-05]"), s("[65504]"), None]
        );
        assert_eq!(texts(&mut c, &col("af4")).await, vec![s("{NaN,NULL}"), s("{NaN}"), s("{}")]);
        let fractions = texts(&mut c, "SELECT scale(num)::text FROM bits ORDER BY id").await;
        assert_eq!(fractions, vec![s("500"), s("16382"), None]);
    });
}

/// array_recv checks the element type oid of built-in types, which is why
/// the encoder takes the target's.
#[test]
fn postgres_refuses_the_wrong_element_type() {
    let db = TestDb::new("pgcopyin_oid");
    db.exec("CREATE TABLE arr (id int8 PRIMARY KEY, a int4[]); INSERT INTO arr VALUES (1, '{1,2}');");
    let url = db.url.clone();
    block_on(async move {
        let spec = spec_of(&url, "arr").await;
        let mut c = connect(&url).await;
        let batch = read(&mut c, &spec, "SELECT 2::int8, a FROM arr").await;
        let err = copy_in(&mut c, "arr", &spec, vec![None, Some(20)], &batch).await.unwrap_err();
        assert!(
            err.contains("binary data has array element type 20 (bigint) instead of expected 23"),
            "{err}"
        );
        assert_eq!(copy_in(&mut c, "arr", &spec, vec![None, Some(23)], &batch).await, Ok(1));
    });
}

/// Random numerics (any precision and scale, NaN and the infinities) read
/// back from Postgres as the same text, and Postgres sends back the bytes
/// the encoder wrote, except the display scale of ±Infinity, which
/// numeric_send reports as 32 (it reads NUMERIC_DSCALE's short-header bits
/// of the sign word 0xD000/0xF000).
#[test]
fn random_numerics_come_back_as_written() {
    let db = TestDb::new("pgcopyin_num");
    db.exec("CREATE TABLE nums (id int8 PRIMARY KEY, n numeric)");
    let url = db.url.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let spec = rt.block_on(spec_of(&url, "nums"));
    let conn = RefCell::new(rt.block_on(connect(&url)));
    // The widest numeric: 131072 digits before the point, 16383 after, in
    // 36864 base-10000 digits, which numeric_send counts in an int16 (0x9000).
    let mut c = conn.borrow_mut();
    rt.block_on(async {
        let widest = format!("1{}.{}1", "0".repeat(131071), "0".repeat(16382));
        let nums = StringArray::from(vec![widest.clone()]);
        let batch = RecordBatch::try_new(
            spec.arrow_schema(),
            vec![Arc::new(Int64Array::from(vec![1])), Arc::new(nums)],
        )
        .expect("batch");
        copy_in(&mut c, "nums", &spec, vec![None, None], &batch).await.expect("copy in");
        let sent = raw_fields(&mut c, "SELECT n FROM nums").await.remove(0).expect("not null");
        assert_eq!(&sent[..2], &[0x90, 0x00]);
        let mut ours = Vec::new();
        numeric::from_text(&widest, &mut ours).expect("encode");
        assert!(sent == ours, "Postgres sent other bytes for the widest numeric");
        assert!(numeric::to_text(&sent).expect("decode") == widest);
    });
    drop(c);
    let values = proptest::collection::vec(numeric_texts(), 1..40);
    let mut runner = TestRunner::new(Config { cases: 48, ..Config::default() });
    runner
        .run(&values, |values| {
            let mut c = conn.borrow_mut();
            rt.block_on(async {
                sqlx::raw_sql("TRUNCATE nums").execute(&mut *c).await.expect("truncate");
                let ids = Int64Array::from_iter_values(0..values.len() as i64);
                let nums = StringArray::from(values.clone());
                let batch = RecordBatch::try_new(spec.arrow_schema(), vec![Arc::new(ids), Arc::new(nums)])
                    .expect("batch");
                copy_in(&mut c, "nums", &spec, vec![None, None], &batch).await.expect("copy in");
                let back = texts(&mut c, "SELECT n::text FROM nums ORDER BY id").await;
                let want: Vec<Option<String>> = values.iter().cloned().map(Some).collect();
                prop_assert_eq!(back, want);
                let sent = raw_fields(&mut c, "SELECT n FROM nums ORDER BY id").await;
                for (text, field) in values.iter().zip(sent) {
                    let mut ours = Vec::new();
                    numeric::from_text(text, &mut ours).expect("encode");
                    let mut theirs = field.expect("not null");
                    if text.ends_with("Infinity") {
                        prop_assert_eq!(&theirs[6..8], &[0, 32]);
                        theirs[6..8].copy_from_slice(&[0, 0]);
                    }
                    prop_assert_eq!(theirs, ours, "{}", text);
                }
                Ok(())
            })
        })
        .expect("numerics round-trip");
}

/// Numeric text as numeric_out prints it, including large weights.
fn numeric_texts() -> impl Strategy<Value = String> {
    let finite = (any::<bool>(), "[1-9][0-9]{0,80}|0", proptest::option::of("[0-9]{1,60}"), 0usize..3)
        .prop_map(|(negative, int, frac, zeros)| {
            // Some values with long runs of zeros (whole zero base-10000 digits).
            let int = if int == "0" { int } else { format!("{int}{}", "0".repeat(zeros * 9)) };
            let zero = int == "0" && frac.as_deref().is_none_or(|f| f.bytes().all(|b| b == b'0'));
            let sign = if negative && !zero { "-" } else { "" };
            match frac {
                Some(f) => format!("{sign}{int}.{}{f}", "0".repeat(zeros * 5)),
                None => format!("{sign}{int}"),
            }
        });
    prop_oneof![
        10 => finite,
        1 => prop_oneof![Just("NaN".to_string()), Just("Infinity".to_string()), Just("-Infinity".to_string())],
    ]
}
