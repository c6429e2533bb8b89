//! Arrow values as D1 (SQLite) stores them, following the D1 column of the
//! type table: integers and booleans as INTEGER, floats as REAL, bytea as
//! BLOB, and everything else as TEXT in one documented form (uuid
//! lower-case hyphenated, timestamps ISO 8601 with microseconds, arrays and
//! vectors as JSON arrays). Also renders them as SQL literals that both
//! SQLite and D1 parse back to the same value.

use std::borrow::Cow;
use std::fmt::Write as _;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Time64MicrosecondType, TimestampMicrosecondType,
};

use crate::batch::quote_literal;

/// One value as D1 stores it.
#[derive(Clone, Debug, PartialEq)]
pub enum D1Value<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(Cow<'a, str>),
    Blob(&'a [u8]),
}

impl D1Value<'_> {
    /// The SQL literal. Reals use the shortest form that reads back to the
    /// same f64; infinities are `9e999`, which SQLite reads as infinity.
    pub fn literal(&self) -> String {
        match self {
            D1Value::Null => "NULL".into(),
            D1Value::Integer(i) => i.to_string(),
            D1Value::Real(f) if f.is_infinite() => {
                if *f > 0.0 {
                    "9e999".into()
                } else {
                    "-9e999".into()
                }
            }
            D1Value::Real(f) => format!("{f:?}"),
            D1Value::Text(s) => quote_literal(s),
            D1Value::Blob(b) => format!("X'{}'", hex::encode_upper(b)),
        }
    }
}

impl D1Value<'_> {
    /// The length of [`D1Value::literal`], without writing it (reals
    /// excepted: their shortest form is written to be measured).
    pub fn literal_len(&self) -> usize {
        match self {
            D1Value::Null => 4,
            D1Value::Integer(i) => {
                let digits = i.unsigned_abs().checked_ilog10().map_or(1, |d| d as usize + 1);
                digits + usize::from(*i < 0)
            }
            D1Value::Real(_) => self.literal().len(),
            D1Value::Text(s) => s.len() + 2 + s.bytes().filter(|b| *b == b'\'').count(),
            D1Value::Blob(b) => 2 * b.len() + 3,
        }
    }
}

/// The value of `col` at `row` in its D1 form.
pub fn d1_value(col: &dyn Array, row: usize) -> D1Value<'_> {
    if col.is_null(row) {
        return D1Value::Null;
    }
    match col.data_type() {
        DataType::Boolean => D1Value::Integer(col.as_boolean().value(row) as i64),
        DataType::Int16 => D1Value::Integer(col.as_primitive::<Int16Type>().value(row) as i64),
        DataType::Int32 => D1Value::Integer(col.as_primitive::<Int32Type>().value(row) as i64),
        DataType::Int64 => D1Value::Integer(col.as_primitive::<Int64Type>().value(row)),
        // As D1 stores them (crate::d1::real): NaN as NULL, -0 as 0.
        DataType::Float32 => real(col.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => real(col.as_primitive::<Float64Type>().value(row)),
        DataType::Binary => D1Value::Blob(col.as_binary::<i32>().value(row)),
        DataType::Utf8 => D1Value::Text(Cow::Borrowed(col.as_string::<i32>().value(row))),
        _ => D1Value::Text(Cow::Owned(text_form(col, row))),
    }
}

fn real(f: f64) -> D1Value<'static> {
    crate::d1::real(f).map_or(D1Value::Null, D1Value::Real)
}

/// The TEXT form of values that are not stored natively.
fn text_form(col: &dyn Array, row: usize) -> String {
    match col.data_type() {
        DataType::FixedSizeBinary(16) => {
            match uuid::Uuid::from_slice(col.as_fixed_size_binary().value(row)) {
                Ok(u) => u.hyphenated().to_string(),
                Err(_) => hex::encode(col.as_fixed_size_binary().value(row)),
            }
        }
        DataType::Decimal128(_, scale) => {
            decimal_text(col.as_primitive::<Decimal128Type>().value(row), *scale)
        }
        DataType::Date32 => date_text(col.as_primitive::<Date32Type>().value(row)),
        DataType::Time64(_) => time_text(col.as_primitive::<Time64MicrosecondType>().value(row)),
        DataType::Timestamp(_, tz) => {
            let us = col.as_primitive::<TimestampMicrosecondType>().value(row);
            let mut s = timestamp_text(us);
            if tz.is_some() {
                s.push('Z');
            }
            s
        }
        DataType::List(_) => json_array(col.as_list::<i32>().value(row).as_ref()),
        DataType::FixedSizeList(_, _) => json_array(col.as_fixed_size_list().value(row).as_ref()),
        _ => arrow::util::display::array_value_to_string(col, row).unwrap_or_default(),
    }
}

fn decimal_text(v: i128, scale: i8) -> String {
    if scale <= 0 {
        return (v * 10i128.pow((-scale) as u32)).to_string();
    }
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if neg { "-" } else { "" })
}

fn date_text(days: i32) -> String {
    match chrono::DateTime::from_timestamp(days as i64 * 86_400, 0) {
        Some(d) => d.format("%Y-%m-%d").to_string(),
        None => days.to_string(),
    }
}

fn time_text(us: i64) -> String {
    let (s, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    format!("{:02}:{:02}:{:02}.{frac:06}", s / 3600, (s / 60) % 60, s % 60)
}

fn timestamp_text(us: i64) -> String {
    let (secs, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    match chrono::DateTime::from_timestamp(secs, (frac * 1000) as u32) {
        Some(d) => d.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        None => us.to_string(),
    }
}

/// A JSON array of the list's elements: numbers in their shortest
/// round-trip form (float32 elements as float32), strings escaped.
pub fn json_array(items: &dyn Array) -> String {
    let mut out = String::with_capacity(items.len() * 12 + 2);
    push_json_array(&mut out, items);
    out
}

/// Appends the SQL literal of `col[row]` to `out`: the same text as
/// `d1_value(col, row).literal()`, written in place. This is the load's hot
/// path: a 1536-float vector becomes ~15 KB of text per row, and building
/// it here, quoted, saves an allocation and two copies of it.
pub fn write_literal(col: &dyn Array, row: usize, out: &mut String) {
    if col.is_null(row) {
        out.push_str("NULL");
        return;
    }
    match col.data_type() {
        DataType::FixedSizeList(f, _) if floats_type(f.data_type()) => {
            out.push('\'');
            push_json_array(out, col.as_fixed_size_list().value(row).as_ref());
            out.push('\'');
            return;
        }
        DataType::List(f) if floats_type(f.data_type()) => {
            out.push('\'');
            push_json_array(out, col.as_list::<i32>().value(row).as_ref());
            out.push('\'');
            return;
        }
        _ => {}
    }
    match d1_value(col, row) {
        D1Value::Text(s) => push_quoted(out, &s),
        other => out.push_str(&other.literal()),
    }
}

fn floats_type(t: &DataType) -> bool {
    matches!(t, DataType::Float32 | DataType::Float64)
}

/// `'...'` with every `'` doubled, appended to `out`.
pub fn push_quoted(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('\'');
    let mut parts = s.split('\'');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for p in parts {
        out.push_str("''");
        out.push_str(p);
    }
    out.push('\'');
}

/// Appends the JSON array of a list's elements (see [`json_array`]).
pub fn push_json_array(out: &mut String, items: &dyn Array) {
    // Vectors are the bulk of a RAG table's bytes: format them in one
    // pass over the typed values with zmij (shortest round-trip digits, the
    // digits as `{:?}`; zmij formats ~1.5x faster than ryu and ~3x faster
    // than core::fmt on this data).
    match items.data_type() {
        DataType::Float32 => {
            let a = items.as_primitive::<Float32Type>();
            push_floats(out, a.values().iter().map(|v| *v as f64), a.nulls(), true);
            return;
        }
        DataType::Float64 => {
            let a = items.as_primitive::<Float64Type>();
            push_floats(out, a.values().iter().copied(), a.nulls(), false);
            return;
        }
        _ => {}
    }
    out.push('[');
    for i in 0..items.len() {
        if i > 0 {
            out.push(',');
        }
        if items.is_null(i) {
            out.push_str("null");
            continue;
        }
        match items.data_type() {
            DataType::Boolean => out.push_str(if items.as_boolean().value(i) { "true" } else { "false" }),
            DataType::Int16 | DataType::Int32 | DataType::Int64 => match d1_value(items, i) {
                D1Value::Integer(v) => {
                    let _ = write!(out, "{v}");
                }
                _ => out.push_str("null"),
            },
            _ => {
                let s = match d1_value(items, i) {
                    D1Value::Text(s) => s.into_owned(),
                    other => other.literal(),
                };
                out.push_str(&serde_json::Value::String(s).to_string());
            }
        }
    }
    out.push(']');
}

fn push_floats(
    out: &mut String,
    values: impl Iterator<Item = f64>,
    nulls: Option<&arrow::buffer::NullBuffer>,
    single: bool,
) {
    let mut buf = zmij::Buffer::new();
    out.push('[');
    for (i, f) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if nulls.is_some_and(|n| n.is_null(i)) || !f.is_finite() {
            out.push_str("null");
        } else if single {
            out.push_str(buf.format_finite(f as f32));
        } else {
            out.push_str(buf.format_finite(f));
        }
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float32Array, ListArray, StringArray};
    use arrow::datatypes::Field;
    use proptest::prelude::*;

    #[test]
    fn documented_text_forms() {
        assert_eq!(decimal_text(12_345_678, 3), "12345.678");
        assert_eq!(decimal_text(-12, 4), "-0.0012");
        assert_eq!(decimal_text(5, 0), "5");
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(-719_162), "0001-01-01");
        assert_eq!(time_text(86_399_999_999), "23:59:59.999999");
        assert_eq!(timestamp_text(-1), "1969-12-31T23:59:59.999999");
        assert_eq!(D1Value::Real(f64::INFINITY).literal(), "9e999");
        assert_eq!(D1Value::Text("it's".into()).literal(), "'it''s'");
        assert_eq!(D1Value::Blob(&[0, 255]).literal(), "X'00FF'");
    }

    #[test]
    fn lists_become_json() {
        let values = Arc::new(StringArray::from(vec![Some("a\"b"), None, Some("")])) as ArrayRef;
        let list = ListArray::new(
            Arc::new(Field::new("item", DataType::Utf8, true)),
            arrow::buffer::OffsetBuffer::new(vec![0, 3].into()),
            values,
            None,
        );
        assert_eq!(text_form(&list, 0), r#"["a\"b",null,""]"#);
    }

    proptest! {
        // Vectors in JSON read back to the very same float32 bits.
        #[test]
        fn float32_json_round_trips(bits in proptest::collection::vec(any::<u32>(), 1..20)) {
            let vals: Vec<f32> = bits.iter().map(|b| f32::from_bits(*b)).filter(|f| f.is_finite()).collect();
            let arr = Float32Array::from(vals.clone());
            let json = json_array(&arr);
            let back: Vec<f64> = serde_json::from_str(&json).expect("valid JSON");
            for (a, b) in vals.iter().zip(back) {
                prop_assert_eq!(a.to_bits(), (b as f32).to_bits());
            }
        }

        // The sqlite target measures literals without writing them; the
        // packer's decisions depend on that length being exact.
        #[test]
        fn literal_len_is_the_literal_length(
            text in ".*",
            int in any::<i64>(),
            real in any::<f64>(),
            blob in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let values = [
                D1Value::Null,
                D1Value::Integer(int),
                D1Value::Integer(0),
                D1Value::Integer(i64::MIN),
                D1Value::Real(real),
                D1Value::Real(f64::NEG_INFINITY),
                D1Value::Text(text.as_str().into()),
                D1Value::Text("''x'".into()),
                D1Value::Blob(&blob),
            ];
            for v in values {
                prop_assert_eq!(v.literal_len(), v.literal().len(), "{:?}", v);
            }
        }

        // The in-place writer gives exactly the literal `d1_value` gives.
        #[test]
        fn written_literals_equal_value_literals(
            texts in proptest::collection::vec(proptest::option::of(".*"), 1..8),
            floats in proptest::collection::vec(any::<f32>(), 0..8),
        ) {
            let strings = StringArray::from(texts.clone());
            for row in 0..strings.len() {
                let mut out = String::from("x");
                write_literal(&strings, row, &mut out);
                prop_assert_eq!(&out[1..], d1_value(&strings, row).literal());
            }
            let values = Arc::new(Float32Array::from(floats.clone())) as ArrayRef;
            let list = ListArray::new(
                Arc::new(Field::new("item", DataType::Float32, true)),
                arrow::buffer::OffsetBuffer::new(vec![0, floats.len() as i32].into()),
                values,
                None,
            );
            let mut out = String::new();
            write_literal(&list, 0, &mut out);
            prop_assert_eq!(out, d1_value(&list, 0).literal());
        }

        #[test]
        fn real_literals_round_trip(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let lit = D1Value::Real(f).literal();
            prop_assert_eq!(lit.parse::<f64>().expect("parses"), f);
        }
    }
}
