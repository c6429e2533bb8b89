//! The digest test vectors in `fixtures/digest-vectors.json`, checked
//! against this implementation (an independent Python one checks the same
//! file: `tests/py/row_digest.py --vectors`). With
//! `PGFLARE_WRITE_DIGEST_VECTORS=1` the test fills in the digests instead,
//! for new cases; the Python check is what vouches for them.

use std::sync::Arc;

use arrow::array::Array;
use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray,
    FixedSizeListArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, ListArray,
    RecordBatch, StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use serde_json::Value;

use super::row_digests;
use super::vector::{vector_digest, Vector};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/digest-vectors.json");

fn bits32(v: &Value) -> Option<f32> {
    v.as_str().map(|s| f32::from_bits(u32::from_str_radix(s, 16).expect("hex bits")))
}

fn bits64(v: &Value) -> Option<f64> {
    v.as_str().map(|s| f64::from_bits(u64::from_str_radix(s, 16).expect("hex bits")))
}

fn column(c: &Value) -> ArrayRef {
    let ty = c["type"].as_str().expect("type");
    let v = &c["value"];
    let item = |dt: DataType| Arc::new(Field::new("item", dt, true));
    match ty {
        "bool" => Arc::new(BooleanArray::from(vec![v.as_bool()])),
        "int16" => Arc::new(Int16Array::from(vec![v.as_i64().map(|x| x as i16)])),
        "int32" => Arc::new(Int32Array::from(vec![v.as_i64().map(|x| x as i32)])),
        "int64" => Arc::new(Int64Array::from(vec![v.as_i64()])),
        "float32" => Arc::new(Float32Array::from(vec![bits32(&c["bits"])])),
        "float64" => Arc::new(Float64Array::from(vec![bits64(&c["bits"])])),
        "decimal128(12,3)" => Arc::new(
            Decimal128Array::from(vec![v.as_str().map(|s| s.parse::<i128>().expect("int"))])
                .with_precision_and_scale(12, 3)
                .expect("decimal"),
        ),
        "utf8" => Arc::new(StringArray::from(vec![v.as_str()])),
        "binary" => {
            let b = hex::decode(c["hex"].as_str().expect("hex")).expect("hex");
            Arc::new(BinaryArray::from(vec![Some(b.as_slice())]))
        }
        "uuid" => {
            let b = hex::decode(c["hex"].as_str().expect("hex")).expect("hex");
            Arc::new(FixedSizeBinaryArray::try_from_iter(std::iter::once(b)).expect("uuid"))
        }
        "date32" => Arc::new(Date32Array::from(vec![v.as_i64().map(|x| x as i32)])),
        "time64us" => Arc::new(Time64MicrosecondArray::from(vec![v.as_i64()])),
        "timestamp_us" => Arc::new(TimestampMicrosecondArray::from(vec![v.as_i64()])),
        "timestamp_us_utc" => {
            Arc::new(TimestampMicrosecondArray::from(vec![v.as_i64()]).with_timezone("UTC"))
        }
        "fixed_size_list<float32,3>" => {
            let values: Vec<f32> =
                c["bits"].as_array().expect("bits").iter().map(|b| bits32(b).expect("f")).collect();
            let field = Arc::new(Field::new("item", DataType::Float32, false));
            Arc::new(FixedSizeListArray::new(field, 3, Arc::new(Float32Array::from(values)), None))
        }
        "list<int64>" => {
            let values: Vec<Option<i64>> =
                c["values"].as_array().expect("values").iter().map(Value::as_i64).collect();
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(values)]))
        }
        "list<float64>" => {
            let values: Vec<Option<f64>> = c["bits"].as_array().expect("bits").iter().map(bits64).collect();
            Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(vec![Some(values)]))
        }
        "list<utf8>" => {
            let items: Vec<Option<&str>> =
                c["values"].as_array().expect("values").iter().map(Value::as_str).collect();
            let values = Arc::new(StringArray::from(items));
            let offsets = arrow::buffer::OffsetBuffer::from_lengths([values.len()]);
            Arc::new(ListArray::new(item(DataType::Utf8), offsets, values, None))
        }
        other => panic!("no test-vector type {other}"),
    }
}

fn row_digest(columns: &[Value]) -> String {
    let arrays: Vec<ArrayRef> = columns.iter().map(column).collect();
    let fields: Vec<Field> = arrays
        .iter()
        .enumerate()
        .map(|(i, a)| Field::new(format!("c{i}"), a.data_type().clone(), true))
        .collect();
    let batch = if arrays.is_empty() {
        RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
        )
        .expect("batch")
    } else {
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("batch")
    };
    hex::encode(row_digests(&batch).expect("digest")[0])
}

fn vector(case: &Value) -> String {
    let v = Vector {
        id: case["id"].as_str().expect("id").to_string(),
        values: case["bits"].as_array().expect("bits").iter().map(|b| bits32(b).expect("f")).collect(),
        namespace: case["namespace"].as_str().map(str::to_string),
        metadata: case["metadata"].clone(),
    };
    hex::encode(vector_digest(&v))
}

#[test]
fn digest_test_vectors_hold() {
    let text = std::fs::read_to_string(FILE).expect("fixtures/digest-vectors.json");
    let mut doc: Value = serde_json::from_str(&text).expect("JSON");
    let write = std::env::var("PGFLARE_WRITE_DIGEST_VECTORS").is_ok();
    let mut wrong = Vec::new();
    for (list, f) in [("rows", 0), ("vectors", 1)] {
        for case in doc[list].as_array_mut().expect("cases") {
            let got =
                if f == 0 { row_digest(case["columns"].as_array().expect("columns")) } else { vector(case) };
            if write {
                case["digest"] = Value::String(got);
            } else if case["digest"] != got.as_str() {
                wrong.push(format!("{}: {} != {}", case["name"], got, case["digest"]));
            }
        }
    }
    if write {
        std::fs::write(FILE, serde_json::to_string_pretty(&doc).expect("json") + "\n").expect("write");
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    let v = doc["vectors"].as_array().expect("vectors");
    assert_eq!(v[0]["digest"], v[2]["digest"], "empty metadata equals none");
}
