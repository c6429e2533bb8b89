//! D1 rows read back into the Arrow types of the source table, so that the
//! one row digest (`verify::digest`) runs on both sides of a comparison.
//! This is the inverse of `sink::d1::value`: INTEGER back to booleans and
//! integers, REAL to floats, TEXT parsed by the column's type (uuid,
//! numeric, dates, times, timestamps, JSON arrays and vectors), BLOB to
//! bytes. A value that does not parse as its column's type is never
//! guessed: [`read_table`] stops with table, column, key and what was
//! found; [`read_rows`] (what verify uses) reads on and hands the value
//! over as [`Unreadable`], so that it becomes one difference, not the end
//! of the run; [`read_ordered`] does the same in key order (what the
//! archive of Cloudflare reads, so the same D1 gives the same files).
//!
//! The source side goes through [`target_form`] first: what the D1 mapping
//! cannot keep (NaN, which SQLite stores as NULL; -0.0 in a REAL column,
//! which SQLite stores as the integer 0; non-finite floats inside arrays,
//! which JSON writes as null) is brought to the form D1 holds, so a
//! faithful load digests equal and only real differences remain.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    FixedSizeBinaryBuilder, FixedSizeListBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, ListBuilder, RecordBatch, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use rusqlite::types::ValueRef;
use serde_json::Value;

#[cfg(test)]
use super::floats::scan_f32;
use super::floats::{append_floats, FloatScratch};
use crate::batch::{quote_ident, TableSpec, BATCH_BYTES};
use crate::error::{Error, Result};

/// One value on its way into a builder, from SQLite or from a JSON array.
enum Scalar<'a> {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A D1 value that is not in any form pgflare writes for its column. The
/// batch holds NULL in its place (the column is then nullable in that
/// batch's schema); the reader decides what the row means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// Row within the batch, and column index in the spec.
    pub row: usize,
    pub column: usize,
    /// What was found, e.g. "the text `x` where a uuid belongs".
    pub found: String,
    /// The stored value itself (text, number, or blob bytes): it tells
    /// unreadable values apart, so that two of them never digest equal.
    pub raw: Vec<u8>,
}

/// Does D1 (the SQLite file) hold a table or view called `name`?
pub fn table_exists(conn: &rusqlite::Connection, name: &str) -> Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(Error::sqlite(format!("looking up D1 table {name}")))
}

/// The rowid span of D1 table `name` (`None` when it is empty or has no
/// rowid, i.e. a `WITHOUT ROWID` table or a view), for reading it in
/// ranges on several connections at once.
pub fn rowid_span(conn: &rusqlite::Connection, name: &str) -> Option<(i64, i64)> {
    let sql = format!("SELECT min(rowid), max(rowid) FROM {}", quote_ident(name));
    conn.query_row(&sql, [], |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?)))
        .ok()
        .and_then(|(a, b)| Some((a?, b?)))
}

/// Reads every row of D1 table `name` (columns of `spec`, under their D1
/// names, in `spec` order) in batches of `batch_rows`, as Arrow batches of
/// `spec`'s types, in no particular order. A value not in pgflare's form
/// is an error naming table, column, key and value.
pub fn read_table(
    conn: &rusqlite::Connection,
    name: &str,
    spec: &TableSpec,
    batch_rows: usize,
    each: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    read_rows(conn, name, spec, batch_rows, None, &mut |batch, odd| match odd.first() {
        None => each(batch),
        Some(u) => {
            let key = spec
                .key_indices()
                .iter()
                .map(|&k| format!("{}={}", spec.columns[k].name, shown(batch.column(k), u.row, &odd, k)))
                .collect::<Vec<_>>()
                .join(", ");
            Err(Error::Value {
                table: format!("D1 {name}"),
                column: spec.columns[u.column].name.clone(),
                key,
                message: format!(
                    "holds {}, which is not a {} as pgflare writes it",
                    u.found, spec.columns[u.column].pg_type
                ),
                hint: "the D1 row was written or changed by something other than pgflare load; verify reports it \
                       as changed"
                    .into(),
            })
        }
    })
}

/// Like [`read_table`], but only rows with a rowid in `rowids` (inclusive)
/// when given, and values not in pgflare's form come with their batch as
/// [`Unreadable`] (NULL in the batch) instead of stopping the read.
pub fn read_rows(
    conn: &rusqlite::Connection,
    name: &str,
    spec: &TableSpec,
    batch_rows: usize,
    rowids: Option<(i64, i64)>,
    each: &mut dyn FnMut(RecordBatch, Vec<Unreadable>) -> Result<()>,
) -> Result<()> {
    // No ORDER BY: every reader of these batches is order-independent
    // (digest sums, maps by key), and ordering by a TEXT primary key walks
    // its index and fetches each row by rowid, which is slower than the
    // table scan for wide rows.
    let scan = match rowids {
        Some((a, b)) => Scan { tail: " WHERE rowid BETWEEN ?1 AND ?2".into(), params: vec![a, b] },
        None => Scan { tail: String::new(), params: Vec::new() },
    };
    read_scan(conn, name, spec, batch_rows, &scan, each)
}

/// [`read_rows`] of the whole table in the order of the columns `order`
/// (D1 names, e.g. the key): what an archive of D1 reads, so that the same
/// D1 gives the same files.
pub fn read_ordered(
    conn: &rusqlite::Connection,
    name: &str,
    spec: &TableSpec,
    batch_rows: usize,
    order: &[String],
    each: &mut dyn FnMut(RecordBatch, Vec<Unreadable>) -> Result<()>,
) -> Result<()> {
    let tail = match order.is_empty() {
        true => String::new(),
        false => format!(" ORDER BY {}", order.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ")),
    };
    read_scan(conn, name, spec, batch_rows, &Scan { tail, params: Vec::new() }, each)
}

/// What follows `SELECT cols FROM table` and its parameters.
struct Scan {
    tail: String,
    params: Vec<i64>,
}

fn read_scan(
    conn: &rusqlite::Connection,
    name: &str,
    spec: &TableSpec,
    batch_rows: usize,
    scan: &Scan,
    each: &mut dyn FnMut(RecordBatch, Vec<Unreadable>) -> Result<()>,
) -> Result<()> {
    let cols = spec.columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ");
    let sql = format!("SELECT {cols} FROM {}{}", quote_ident(name), scan.tail);
    let context = || format!("reading D1 table {name}");
    let mut stmt = conn.prepare(&sql).map_err(Error::sqlite(context()))?;
    let mut rows =
        stmt.query(rusqlite::params_from_iter(scan.params.iter())).map_err(Error::sqlite(context()))?;
    let schema = spec.arrow_schema();
    let new_builders =
        || schema.fields().iter().map(|f| arrow::array::make_builder(f.data_type(), batch_rows));
    let mut builders: Vec<Box<dyn ArrayBuilder>> = new_builders().collect();
    let mut scratch = FloatScratch::default();
    let mut odd = Vec::new();
    let (mut n, mut bytes) = (0, 0);
    // Contexts are built only on failure (per row and per cell otherwise).
    while let Some(row) = rows.next().map_err(|e| Error::sqlite(context())(e))? {
        for (i, b) in builders.iter_mut().enumerate() {
            let v = row.get_ref(i).map_err(|e| Error::sqlite(context())(e))?;
            bytes += match v {
                ValueRef::Text(x) | ValueRef::Blob(x) => x.len(),
                _ => 8,
            };
            let dt = schema.field(i).data_type();
            if let Err(found) = append_sql(b.as_mut(), dt, v, &mut scratch) {
                // Nothing of the value was appended: NULL holds its place.
                append_null(b.as_mut(), dt).map_err(|e| Error::Internal(format!("D1 {name}: {e}")))?;
                odd.push(Unreadable { row: n, column: i, found, raw: raw_bytes(v) });
            }
        }
        n += 1;
        // Rows or bytes, whichever comes first (as the source's batches):
        // wide rows (an embedding as JSON text is ~20 KB) would otherwise
        // make a batch of tens of MB, and its peak the largest batch's.
        if n == batch_rows || bytes >= BATCH_BYTES {
            each(finish(&schema, &mut builders, &odd)?, std::mem::take(&mut odd))?;
            (n, bytes) = (0, 0);
        }
    }
    if n > 0 {
        each(finish(&schema, &mut builders, &odd)?, odd)?;
    }
    Ok(())
}

fn finish(
    schema: &SchemaRef,
    builders: &mut [Box<dyn ArrayBuilder>],
    odd: &[Unreadable],
) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = builders.iter_mut().map(|b| b.finish()).collect();
    // A NOT NULL column holding the NULL of an unreadable value, or a NULL
    // D1 holds (a link column whose row D1 lacks allows NULL in D1), is
    // declared nullable in this batch, or Arrow would refuse the batch.
    let has_null = |i: usize| odd.iter().any(|u| u.column == i) || columns[i].null_count() > 0;
    let schema = if (0..columns.len()).any(|i| has_null(i) && !schema.field(i).is_nullable()) {
        let fields = schema.fields().iter().enumerate().map(|(i, f)| {
            let relax = has_null(i);
            f.as_ref().clone().with_nullable(f.is_nullable() || relax)
        });
        Arc::new(Schema::new(fields.collect::<Vec<_>>()))
    } else {
        schema.clone()
    };
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// A value of row `row` of `col` as a person reads it; the raw value when
/// it is one of `odd`.
fn shown(col: &ArrayRef, row: usize, odd: &[Unreadable], column: usize) -> String {
    if let Some(u) = odd.iter().find(|u| u.row == row && u.column == column) {
        return String::from_utf8_lossy(&u.raw).chars().take(60).collect();
    }
    if col.is_null(row) {
        return "NULL".into();
    }
    if let DataType::FixedSizeBinary(16) = col.data_type() {
        return uuid::Uuid::from_slice(col.as_fixed_size_binary().value(row))
            .map(|u| u.to_string())
            .unwrap_or_default();
    }
    arrow::util::display::array_value_to_string(col, row).unwrap_or_else(|_| "?".into())
}

/// The stored value's bytes: text and blobs as they are, numbers as text.
fn raw_bytes(v: ValueRef<'_>) -> Vec<u8> {
    match v {
        ValueRef::Integer(i) => i.to_string().into_bytes(),
        ValueRef::Real(f) => format!("{f:?}").into_bytes(),
        ValueRef::Text(t) | ValueRef::Blob(t) => t.to_vec(),
        ValueRef::Null => b"NULL".to_vec(),
    }
}

/// Appends a SQLite value; on failure says what was found and has
/// appended nothing.
fn append_sql(
    b: &mut dyn ArrayBuilder,
    dt: &DataType,
    v: ValueRef<'_>,
    scratch: &mut FloatScratch,
) -> std::result::Result<(), String> {
    match (dt, v) {
        (DataType::List(f) | DataType::FixedSizeList(f, _), ValueRef::Text(t))
            if f.data_type() == &DataType::Float32 && append_floats(b, text(t)?, scratch).is_some() =>
        {
            Ok(())
        }
        (DataType::List(_) | DataType::FixedSizeList(_, _), ValueRef::Text(t)) => {
            let items: Vec<Value> =
                serde_json::from_str(text(t)?).map_err(|_| format!("`{}`, not a JSON array", short(t)))?;
            append_list(b, dt, &items)
        }
        (DataType::List(_) | DataType::FixedSizeList(_, _), ValueRef::Null) => append_list_null(b, dt),
        (_, ValueRef::Null) => append(b, dt, Scalar::Null),
        (_, ValueRef::Integer(i)) => append(b, dt, Scalar::Int(i)),
        (_, ValueRef::Real(f)) => append(b, dt, Scalar::Real(f)),
        (_, ValueRef::Text(t)) => append(b, dt, Scalar::Text(text(t)?)),
        (_, ValueRef::Blob(x)) => append(b, dt, Scalar::Blob(x)),
    }
}

/// The NULL that stands in for an unreadable value.
fn append_null(b: &mut dyn ArrayBuilder, dt: &DataType) -> std::result::Result<(), String> {
    match dt {
        DataType::List(_) | DataType::FixedSizeList(_, _) => append_list_null(b, dt),
        _ => append(b, dt, Scalar::Null),
    }
}
fn text(t: &[u8]) -> std::result::Result<&str, String> {
    std::str::from_utf8(t).map_err(|_| "text that is not UTF-8".to_string())
}

fn short(t: &[u8]) -> String {
    String::from_utf8_lossy(&t[..t.len().min(60)]).into_owned()
}

fn append_list(b: &mut dyn ArrayBuilder, dt: &DataType, items: &[Value]) -> std::result::Result<(), String> {
    let item_type = match dt {
        DataType::List(f) | DataType::FixedSizeList(f, _) => f.data_type().clone(),
        _ => return Err("a list".into()),
    };
    let push = |values: &mut Box<dyn ArrayBuilder>| -> std::result::Result<(), String> {
        for v in items {
            let s = match v {
                Value::Null => Scalar::Null,
                Value::Bool(x) => Scalar::Bool(*x),
                Value::Number(n) => match n.as_i64() {
                    Some(i) if !matches!(item_type, DataType::Float32 | DataType::Float64) => Scalar::Int(i),
                    _ => Scalar::Real(n.as_f64().ok_or("a number out of range")?),
                },
                Value::String(s) => Scalar::Text(s),
                other => return Err(format!("an array element `{other}`")),
            };
            append(values.as_mut(), &item_type, s)?;
        }
        Ok(())
    };
    // Elements are tried on a throwaway builder first: a bad element must
    // not leave the ones before it in the column's builder.
    push(&mut arrow::array::make_builder(&item_type, items.len()))?;
    if let Some(l) = b.as_any_mut().downcast_mut::<ListBuilder<Box<dyn ArrayBuilder>>>() {
        push(l.values())?;
        l.append(true);
        return Ok(());
    }
    if let Some(l) = b.as_any_mut().downcast_mut::<FixedSizeListBuilder<Box<dyn ArrayBuilder>>>() {
        if items.len() as i32 != l.value_length() {
            return Err(format!("{} elements where the column has {}", items.len(), l.value_length()));
        }
        push(l.values())?;
        l.append(true);
        return Ok(());
    }
    Err("a list column without a list builder".into())
}

fn append_list_null(b: &mut dyn ArrayBuilder, dt: &DataType) -> std::result::Result<(), String> {
    if let Some(l) = b.as_any_mut().downcast_mut::<ListBuilder<Box<dyn ArrayBuilder>>>() {
        l.append(false);
        return Ok(());
    }
    if let (Some(l), DataType::FixedSizeList(f, n)) =
        (b.as_any_mut().downcast_mut::<FixedSizeListBuilder<Box<dyn ArrayBuilder>>>(), dt)
    {
        // A null slot still holds `n` (null) children.
        for _ in 0..*n {
            append(l.values().as_mut(), f.data_type(), Scalar::Null)?;
        }
        l.append(false);
        return Ok(());
    }
    Err("a list column without a list builder".into())
}

macro_rules! builder {
    ($b:expr, $t:ty) => {
        $b.as_any_mut().downcast_mut::<$t>().ok_or_else(|| "a builder of another type".to_string())?
    };
}

/// Appends one scalar to a builder of type `dt`, parsing text forms.
fn append(b: &mut dyn ArrayBuilder, dt: &DataType, v: Scalar<'_>) -> std::result::Result<(), String> {
    let wrong = |what: &str| match &v {
        Scalar::Int(i) => format!("the integer {i} where {what} belongs"),
        Scalar::Real(f) => format!("the real {f} where {what} belongs"),
        Scalar::Bool(x) => format!("{x} where {what} belongs"),
        Scalar::Text(t) => {
            format!("the text `{}` where {what} belongs", t.chars().take(60).collect::<String>())
        }
        Scalar::Blob(x) => format!("a {}-byte blob where {what} belongs", x.len()),
        Scalar::Null => "NULL".into(),
    };
    macro_rules! put {
        ($t:ty, $val:expr) => {{
            let bb = builder!(b, $t);
            match &v {
                Scalar::Null => bb.append_null(),
                _ => bb.append_value($val),
            }
        }};
    }
    match dt {
        DataType::Boolean => put!(
            BooleanBuilder,
            match v {
                Scalar::Int(i) => i != 0,
                Scalar::Bool(x) => x,
                _ => return Err(wrong("a boolean (0/1)")),
            }
        ),
        DataType::Int16 => put!(
            Int16Builder,
            int(&v).and_then(|i| i16::try_from(i).ok()).ok_or_else(|| wrong("a smallint"))?
        ),
        DataType::Int32 => put!(
            Int32Builder,
            int(&v).and_then(|i| i32::try_from(i).ok()).ok_or_else(|| wrong("an integer"))?
        ),
        DataType::Int64 => put!(Int64Builder, int(&v).ok_or_else(|| wrong("a bigint"))?),
        DataType::Float32 => put!(Float32Builder, real(&v).ok_or_else(|| wrong("a real"))? as f32),
        DataType::Float64 => put!(Float64Builder, real(&v).ok_or_else(|| wrong("a double"))?),
        DataType::Decimal128(_, scale) => {
            put!(Decimal128Builder, decimal(txt(&v), *scale).ok_or_else(|| wrong("a decimal"))?)
        }
        DataType::Utf8 => put!(StringBuilder, txt(&v).ok_or_else(|| wrong("text"))?),
        DataType::FixedSizeBinary(16) => {
            let u = txt(&v).and_then(|t| uuid::Uuid::parse_str(t).ok()).ok_or_else(|| wrong("a uuid"));
            let bb = builder!(b, FixedSizeBinaryBuilder);
            match v {
                Scalar::Null => bb.append_null(),
                _ => bb.append_value(u?.as_bytes()).map_err(|e| e.to_string())?,
            }
        }
        DataType::Binary => put!(
            BinaryBuilder,
            match v {
                Scalar::Blob(x) => x,
                _ => return Err(wrong("a blob")),
            }
        ),
        DataType::Date32 => put!(Date32Builder, date(txt(&v)).ok_or_else(|| wrong("a date YYYY-MM-DD"))?),
        DataType::Time64(_) => {
            put!(Time64MicrosecondBuilder, time(txt(&v)).ok_or_else(|| wrong("a time HH:MM:SS.ffffff"))?)
        }
        DataType::Timestamp(_, tz) => put!(
            TimestampMicrosecondBuilder,
            timestamp(txt(&v), tz.is_some())
                .ok_or_else(|| wrong("a timestamp YYYY-MM-DDTHH:MM:SS.ffffff"))?
        ),
        other => return Err(format!("a value of the unsupported type {other}")),
    }
    Ok(())
}

fn int(v: &Scalar<'_>) -> Option<i64> {
    match v {
        Scalar::Int(i) => Some(*i),
        _ => None,
    }
}

fn real(v: &Scalar<'_>) -> Option<f64> {
    match v {
        Scalar::Real(f) => Some(*f),
        // SQLite keeps a REAL that is a whole number as written; accept it.
        Scalar::Int(i) => Some(*i as f64),
        _ => None,
    }
}

fn txt<'a>(v: &Scalar<'a>) -> Option<&'a str> {
    match v {
        Scalar::Text(t) => Some(t),
        _ => None,
    }
}

#[path = "read/form.rs"]
mod form;
pub use form::target_form;
#[path = "read/parse.rs"]
mod parse;
use parse::{date, decimal, time, timestamp};

#[cfg(test)]
mod tests;
