//! What the encoder's tests feed it: generated values of every kind (and
//! arrays) as Arrow arrays built the way the source's decoder builds them,
//! the tables and element oids they belong to, and the source's own framer
//! and decoder to read a COPY stream back.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray,
    FixedSizeListArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, ListArray,
    StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use super::super::*;
use crate::batch::ColumnSpec;
use crate::source::copy::CopyFramer;
use crate::source::decode::BatchBuilder;

/// One generated value.
#[derive(Clone, Debug)]
pub(super) enum V {
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Str(String),
    Dec(i128),
    Uuid([u8; 16]),
    Date(i32),
    Time(i64),
    Ts(i64),
    Bytes(Vec<u8>),
    Floats(Vec<f32>),
    List(Vec<Option<V>>),
}

pub(super) fn ty(kind: Kind) -> ColumnType {
    ColumnType::scalar(kind)
}

pub(super) fn spec(name: &str, columns: Vec<(&str, ColumnType)>, key: &[&str]) -> Arc<TableSpec> {
    Arc::new(TableSpec {
        schema: "public".into(),
        name: name.into(),
        columns: columns
            .into_iter()
            .map(|(n, t)| ColumnSpec {
                name: n.into(),
                pg_type: t.describe(),
                ty: t,
                nullable: true,
                cast: None,
            })
            .collect(),
        primary_key: key.iter().map(|k| k.to_string()).collect(),
    })
}

/// A table with every kind, every array element kind, numeric both ways
/// and vectors with and without a declared dimension.
pub(super) fn every_kind() -> Arc<TableSpec> {
    use Kind::*;
    let dims = |kind, d| ColumnType { dims: d, ..ty(kind) };
    let dec = |p, s| ColumnType { decimal: Some((p, s)), ..ty(Numeric) };
    let arr = |kind| ColumnType { array: true, ..ty(kind) };
    spec(
        "every",
        vec![
            ("id", ty(Int8)),
            ("b", ty(Bool)),
            ("i2", ty(Int2)),
            ("i4", ty(Int4)),
            ("f4", ty(Float4)),
            ("f8", ty(Float8)),
            ("dec", dec(10, 2)),
            ("dec38", dec(38, 6)),
            ("num", ty(Numeric)),
            ("t", ty(Text)),
            ("e", ty(Enum)),
            ("j", ty(Json)),
            ("jb", ty(Jsonb)),
            ("u", ty(Uuid)),
            ("d", ty(Date)),
            ("tm", ty(Time)),
            ("ts", ty(Timestamp)),
            ("tz", ty(Timestamptz)),
            ("by", ty(Bytea)),
            ("v", dims(Vector, Some(3))),
            ("hv", dims(Halfvec, Some(3))),
            ("vl", dims(Vector, None)),
            ("hvl", dims(Halfvec, None)),
            ("ab", arr(Bool)),
            ("ai2", arr(Int2)),
            ("ai4", arr(Int4)),
            ("ai8", arr(Int8)),
            ("af4", arr(Float4)),
            ("af8", arr(Float8)),
            ("at", arr(Text)),
        ],
        &["id"],
    )
}

/// Element type oids as pg_type (src/include/catalog/pg_type.dat) has them.
pub(super) fn oids(table: &TableSpec) -> Vec<Option<u32>> {
    table
        .columns
        .iter()
        .map(|c| {
            c.ty.array.then_some(match c.ty.kind {
                Kind::Bool => 16,
                Kind::Int2 => 21,
                Kind::Int4 => 23,
                Kind::Int8 => 20,
                Kind::Float4 => 700,
                Kind::Float8 => 701,
                _ => 25,
            })
        })
        .collect()
}

pub(super) fn f32s() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => any::<u32>().prop_map(f32::from_bits),
        1 => prop_oneof![
            Just(-0.0f32),
            Just(f32::from_bits(0x7fc0_0001)), // quiet NaN with a payload
            Just(f32::from_bits(0xff80_0001)), // negative signalling NaN
            Just(f32::INFINITY),
            Just(f32::NEG_INFINITY),
            Just(f32::from_bits(1)), // smallest subnormal
        ],
    ]
}

pub(super) fn f64s() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<u64>().prop_map(f64::from_bits),
        1 => prop_oneof![
            Just(-0.0f64),
            Just(f64::from_bits(0x7ff8_0000_0000_0001)),
            Just(f64::from_bits(0xfff0_0000_0000_0001)),
            Just(f64::NEG_INFINITY),
            Just(f64::from_bits(1)),
        ],
    ]
}

pub(super) fn finite_f32s() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => any::<u32>().prop_map(f32::from_bits).prop_filter("finite", |x| x.is_finite()),
        1 => prop_oneof![Just(-0.0f32), Just(f32::from_bits(1)), Just(f32::MAX), Just(f32::MIN)],
    ]
}

/// Float32 values a halfvec element widens to: every finite float16.
pub(super) fn half_f32s() -> impl Strategy<Value = f32> {
    any::<u16>().prop_filter_map("finite float16", |b| {
        let h = half::f16::from_bits(b);
        h.is_finite().then(|| h.to_f32())
    })
}

/// Any Unicode text Postgres can hold (no U+0000).
pub(super) fn texts() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.replace('\0', "\u{2400}"))
}

pub(super) fn value(ty: &ColumnType) -> BoxedStrategy<V> {
    use proptest::collection::vec;
    if ty.array {
        let element = ColumnType { array: false, ..ty.clone() };
        return vec(proptest::option::of(value(&element)), 0..5).prop_map(V::List).boxed();
    }
    match ty.kind {
        Kind::Bool => any::<bool>().prop_map(V::Bool).boxed(),
        Kind::Int2 => any::<i16>().prop_map(V::I16).boxed(),
        Kind::Int4 => any::<i32>().prop_map(V::I32).boxed(),
        Kind::Int8 => any::<i64>().prop_map(V::I64).boxed(),
        Kind::Float4 => f32s().prop_map(V::F32).boxed(),
        Kind::Float8 => f64s().prop_map(V::F64).boxed(),
        Kind::Numeric => match ty.decimal {
            Some((p, _)) => {
                let max = 10i128.pow(p as u32) - 1;
                prop_oneof![3 => -max..=max, 1 => prop_oneof![Just(max), Just(-max), Just(0)]]
                    .prop_map(V::Dec)
                    .boxed()
            }
            None => numeric::text_strategy().prop_map(V::Str).boxed(),
        },
        Kind::Text | Kind::Enum | Kind::Json | Kind::Jsonb => texts().prop_map(V::Str).boxed(),
        Kind::Uuid => any::<[u8; 16]>().prop_map(V::Uuid).boxed(),
        Kind::Date => {
            let (lo, hi) = (MIN_DATE + PG_EPOCH_DAYS, END_DATE - 1 + PG_EPOCH_DAYS);
            prop_oneof![3 => lo..=hi, 1 => prop_oneof![Just(lo), Just(hi), Just(0)]].prop_map(V::Date).boxed()
        }
        Kind::Time => prop_oneof![3 => 0..=USECS_PER_DAY, 1 => prop_oneof![Just(0), Just(USECS_PER_DAY)]]
            .prop_map(V::Time)
            .boxed(),
        Kind::Timestamp | Kind::Timestamptz => {
            // Arrow's µs since 1970 end at i64::MAX, before Postgres's END_TIMESTAMP.
            let lo = MIN_TIMESTAMP + PG_EPOCH_US;
            prop_oneof![3 => lo..=i64::MAX, 1 => prop_oneof![Just(lo), Just(i64::MAX), Just(0), Just(PG_EPOCH_US)]]
                .prop_map(V::Ts)
                .boxed()
        }
        Kind::Bytea => vec(any::<u8>(), 0..24).prop_map(V::Bytes).boxed(),
        Kind::Vector | Kind::Halfvec => {
            let len = match ty.dims {
                Some(d) => d as usize..=d as usize,
                None => 1..=6,
            };
            if ty.kind == Kind::Halfvec {
                vec(half_f32s(), len).prop_map(V::Floats).boxed()
            } else {
                vec(finite_f32s(), len).prop_map(V::Floats).boxed()
            }
        }
    }
}

pub(super) fn rows(table: &TableSpec) -> impl Strategy<Value = Vec<Vec<Option<V>>>> {
    let row: Vec<BoxedStrategy<Option<V>>> =
        table.columns.iter().map(|c| proptest::option::of(value(&c.ty)).boxed()).collect();
    proptest::collection::vec(row, 0..7)
}

pub(super) fn null_buffer(values: &[Option<V>]) -> Option<NullBuffer> {
    Some(NullBuffer::from(values.iter().map(Option::is_some).collect::<Vec<_>>()))
        .filter(|n| n.null_count() > 0)
}

/// The Arrow array of one column's values, as the decoder would build it.
pub(super) fn build(ty: &ColumnType, data_type: &DataType, values: &[Option<V>]) -> ArrayRef {
    macro_rules! pick {
        ($variant:ident) => {
            values
                .iter()
                .map(|v| {
                    v.as_ref().map(|v| match v {
                        V::$variant(x) => x.clone(),
                        other => panic!("{other:?} generated for {ty:?}"),
                    })
                })
                .collect::<Vec<_>>()
        };
    }
    let nulls = null_buffer(values);
    if ty.array {
        let DataType::List(field) = data_type else { panic!("{data_type}") };
        let element = ColumnType { array: false, ..ty.clone() };
        let mut items = Vec::new();
        let mut offsets = vec![0i32];
        for v in values {
            if let Some(V::List(l)) = v {
                items.extend(l.iter().cloned());
            }
            offsets.push(items.len() as i32);
        }
        let child = build(&element, field.data_type(), &items);
        return Arc::new(ListArray::new(
            field.clone(),
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            child,
            nulls,
        ));
    }
    match ty.kind {
        Kind::Bool => Arc::new(BooleanArray::from(pick!(Bool))),
        Kind::Int2 => Arc::new(Int16Array::from(pick!(I16))),
        Kind::Int4 => Arc::new(Int32Array::from(pick!(I32))),
        Kind::Int8 => Arc::new(Int64Array::from(pick!(I64))),
        Kind::Float4 => Arc::new(Float32Array::from(pick!(F32))),
        Kind::Float8 => Arc::new(Float64Array::from(pick!(F64))),
        Kind::Numeric if ty.decimal.is_none() => Arc::new(StringArray::from(pick!(Str))),
        Kind::Numeric => {
            let DataType::Decimal128(p, s) = data_type else { panic!("{data_type}") };
            Arc::new(
                Decimal128Array::from(pick!(Dec)).with_precision_and_scale(*p, *s).expect("decimal type"),
            )
        }
        Kind::Text | Kind::Enum | Kind::Json | Kind::Jsonb => Arc::new(StringArray::from(pick!(Str))),
        Kind::Uuid => Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(pick!(Uuid).into_iter(), 16).expect("uuids"),
        ),
        Kind::Date => Arc::new(Date32Array::from(pick!(Date))),
        Kind::Time => Arc::new(Time64MicrosecondArray::from(pick!(Time))),
        Kind::Timestamp | Kind::Timestamptz => {
            let DataType::Timestamp(_, tz) = data_type else { panic!("{data_type}") };
            Arc::new(TimestampMicrosecondArray::from(pick!(Ts)).with_timezone_opt(tz.clone()))
        }
        Kind::Bytea => {
            let v = pick!(Bytes);
            Arc::new(BinaryArray::from(v.iter().map(|b| b.as_deref()).collect::<Vec<_>>()))
        }
        Kind::Vector | Kind::Halfvec => {
            let rows = pick!(Floats);
            match data_type {
                DataType::FixedSizeList(field, d) => {
                    // NULL rows hold zeros under the null bit, as the decoder writes them.
                    let flat: Vec<f32> = rows
                        .iter()
                        .flat_map(|r| r.clone().unwrap_or_else(|| vec![0.0; *d as usize]))
                        .collect();
                    Arc::new(FixedSizeListArray::new(
                        field.clone(),
                        *d,
                        Arc::new(Float32Array::from(flat)),
                        nulls,
                    ))
                }
                DataType::List(field) => {
                    let mut offsets = vec![0i32];
                    let mut flat: Vec<f32> = Vec::new();
                    for r in &rows {
                        flat.extend(r.iter().flatten());
                        offsets.push(flat.len() as i32);
                    }
                    Arc::new(ListArray::new(
                        field.clone(),
                        OffsetBuffer::new(ScalarBuffer::from(offsets)),
                        Arc::new(Float32Array::from(flat)),
                        nulls,
                    ))
                }
                other => panic!("{other}"),
            }
        }
    }
}

pub(super) fn batch_of(table: &TableSpec, rows: &[Vec<Option<V>>]) -> RecordBatch {
    let schema = table.arrow_schema();
    let arrays = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let values: Vec<Option<V>> = rows.iter().map(|r| r[i].clone()).collect();
            build(&c.ty, schema.field(i).data_type(), &values)
        })
        .collect();
    RecordBatch::try_new(schema, arrays).expect("batch")
}

/// The bytes of a whole COPY stream of `batches`.
pub(super) fn stream(table: &Arc<TableSpec>, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut encoder = CopyEncoder::new(table.clone(), oids(table))?;
    let mut out = HEADER.to_vec();
    for b in batches {
        encoder.encode(b, &mut out)?;
    }
    out.extend_from_slice(TRAILER);
    Ok(out)
}

/// Reads a COPY stream back the way the source does.
pub(super) fn decode(table: &Arc<TableSpec>, bytes: &[u8]) -> Result<RecordBatch> {
    let mut framer = CopyFramer::new(table.qualified(), table.columns.len());
    let mut builder = BatchBuilder::new(table.clone(), 16);
    framer.feed(bytes, |row| builder.push(row))?;
    framer.finish()?;
    builder.finish()
}
