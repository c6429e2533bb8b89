//! Encodes Arrow record batches as `COPY ... FROM STDIN (FORMAT binary)`
//! rows: the inverse of [`crate::source::decode`], type for type, so that
//! a table archived by pgflare goes back into Postgres bit for bit. Each
//! value is written as its type's send function writes it (the binary COPY
//! format is "the same format used by the send and receive functions",
//! Postgres docs, sql-copy.html "Binary Format"); the functions are cited
//! at each format below. Values the receive function would refuse (dates
//! out of range, NaN in a vector, ...) are refused here first, with the
//! row's key, instead of as a COPY line number.
//!
//! Fast path: columns are downcast once per batch, fields are written
//! straight into the caller's buffer, and nothing is allocated per field
//! (errors excepted).

use std::sync::Arc;

use arrow::array::{
    Array, BinaryArray, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray, FixedSizeListArray,
    Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, ListArray, StringArray,
    Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow::buffer::NullBuffer;
use arrow::record_batch::RecordBatch;

use crate::batch::TableSpec;
use crate::error::{Error, Result};
use crate::source::decode::{PG_EPOCH_DAYS, PG_EPOCH_US};
use crate::source::numeric;
use crate::typemap::{ColumnType, Kind};

/// The file header: the 11-byte signature, int32 flags (no OIDs), int32
/// header-extension length 0 (sql-copy.html "File Header"; CopyFrom's
/// ReceiveCopyBinaryHeader in src/backend/commands/copyfromparse.c).
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The file trailer: an int16 field count of -1.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// MIN_TIMESTAMP and END_TIMESTAMP (src/include/datatype/timestamp.h): the
/// range timestamp_recv / timestamptz_recv accept (4714-11-24 BC up to, not
/// including, 294277-01-01), in µs since 2000-01-01. i64::MIN and i64::MAX
/// are -infinity and infinity, which this range leaves out.
const MIN_TIMESTAMP: i64 = -211_813_488_000_000_000;
const END_TIMESTAMP: i64 = 9_223_371_331_200_000_000;
/// IS_VALID_DATE (timestamp.h), checked by date_recv: from Julian day 0
/// (DATETIME_MIN_JULIAN) up to DATE_END_JULIAN 2147483494, in days since
/// 2000-01-01 (POSTGRES_EPOCH_JDATE 2451545).
const MIN_DATE: i32 = -2_451_545;
const END_DATE: i32 = 2_147_483_494 - 2_451_545;
/// time_recv accepts 0 to USECS_PER_DAY inclusive (24:00:00 is a time).
const USECS_PER_DAY: i64 = 86_400_000_000;

/// Why a value cannot be written, and what to do.
struct FieldError {
    message: String,
    hint: &'static str,
}

const ALTERED: &str = "Postgres cannot hold this value, so it was not read from Postgres by pgflare: \
     was the archive written or changed by another tool?";

fn refuse(message: String) -> FieldError {
    FieldError { message, hint: ALTERED }
}

/// Writes rows of one table.
pub struct CopyEncoder {
    table: Arc<TableSpec>,
    /// The element type oid of each array column, 0 for other columns.
    element_oids: Vec<u32>,
    key: Vec<usize>,
    /// The field count every row starts with.
    field_count: [u8; 2],
    /// Rows encoded so far, for errors of keyless tables.
    rows: u64,
}

impl CopyEncoder {
    /// `element_oids[i]`: for an array column, the element type oid the
    /// target column has (array_recv in src/backend/utils/adt/arrayfuncs.c
    /// refuses a built-in element type other than its own: "binary data has
    /// array element type ... instead of expected ..."), read from the
    /// target's catalog; None for other columns.
    pub fn new(table: Arc<TableSpec>, element_oids: Vec<Option<u32>>) -> Result<CopyEncoder> {
        let internal = |m: String| Error::Internal(format!("table {}: {m}", table.qualified()));
        if element_oids.len() != table.columns.len() {
            return Err(internal(format!(
                "{} element type oids for {} columns",
                element_oids.len(),
                table.columns.len()
            )));
        }
        // A row's field count is an int16; Postgres tables have at most 1600 columns.
        let count = i16::try_from(table.columns.len())
            .map_err(|_| internal(format!("{} columns do not fit a COPY row", table.columns.len())))?;
        let mut oids = Vec::with_capacity(element_oids.len());
        for (col, oid) in table.columns.iter().zip(&element_oids) {
            oids.push(match (col.ty.array, oid) {
                (true, Some(oid)) => *oid,
                (false, None) => 0,
                (true, None) => {
                    return Err(internal(format!("array column {} has no element type oid", col.name)))
                }
                (false, Some(_)) => {
                    return Err(internal(format!(
                        "column {} is not an array but has an element type oid",
                        col.name
                    )))
                }
            });
        }
        Ok(CopyEncoder {
            key: table.key_indices(),
            table,
            element_oids: oids,
            field_count: count.to_be_bytes(),
            rows: 0,
        })
    }

    /// Rows encoded so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends every row of `batch` (whose schema is the table's
    /// `arrow_schema()`) to `out`. On error `out` is as it was before the
    /// call: no partial row is left behind.
    pub fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
        let specs = &self.table.columns;
        if batch.num_columns() != specs.len() {
            return Err(Error::Internal(format!(
                "table {}: a batch of {} columns for a table of {}",
                self.table.qualified(),
                batch.num_columns(),
                specs.len()
            )));
        }
        let mut columns = Vec::with_capacity(specs.len());
        for ((array, spec), oid) in batch.columns().iter().zip(specs).zip(&self.element_oids) {
            columns.push(Column::of(array.as_ref(), &spec.ty, *oid).map_err(|m| {
                Error::Internal(format!("table {}, column {}: {m}", self.table.qualified(), spec.name))
            })?);
        }
        let start = out.len();
        for row in 0..batch.num_rows() {
            out.extend_from_slice(&self.field_count);
            for (c, column) in columns.iter().enumerate() {
                if let Err(e) = column.write(row, out) {
                    out.truncate(start);
                    return Err(Error::Value {
                        table: self.table.qualified(),
                        column: specs[c].name.clone(),
                        key: key_text(&self.table, &self.key, batch, row, self.rows + row as u64),
                        message: e.message,
                        hint: e.hint.to_string(),
                    });
                }
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }
}

/// One column of a batch, downcast once.
struct Column<'a> {
    nulls: Option<&'a NullBuffer>,
    values: Values<'a>,
}

enum Values<'a> {
    Bool(&'a BooleanArray),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    /// text, varchar, bpchar, name, citext, enum labels, json
    Text(&'a StringArray),
    Jsonb(&'a StringArray),
    NumericText(&'a StringArray),
    /// Values, precision, scale.
    Decimal(&'a [i128], u8, i8),
    Uuid(&'a FixedSizeBinaryArray),
    Date(&'a [i32]),
    Time(&'a [i64]),
    Timestamp(&'a [i64]),
    Bytes(&'a BinaryArray),
    Vector(Vectors<'a>),
    Array(Box<Arrays<'a>>),
}

/// A vector or halfvec column: each row's elements in `values`.
struct Vectors<'a> {
    bounds: Bounds<'a>,
    values: &'a [f32],
    value_nulls: Option<&'a NullBuffer>,
    half: bool,
}

/// Where row i's elements are: FixedSizeList rows of `n`, or List offsets.
enum Bounds<'a> {
    Fixed(usize),
    Offsets(&'a [i32]),
}

impl Bounds<'_> {
    fn of(&self, i: usize) -> Result<(usize, usize), FieldError> {
        let (start, end) = match self {
            Bounds::Fixed(n) => (i * n, (i + 1) * n),
            Bounds::Offsets(o) => match (o.get(i), o.get(i + 1)) {
                (Some(&s), Some(&e)) if 0 <= s && s <= e => (s as usize, e as usize),
                _ => return Err(refuse(format!("list offsets of row {i} are invalid"))),
            },
        };
        Ok((start, end))
    }
}

/// A one-dimensional array column.
struct Arrays<'a> {
    offsets: &'a [i32],
    items: Column<'a>,
    element_oid: u32,
}

fn cast<'a, T: 'static>(array: &'a dyn Array, ty: &ColumnType) -> Result<&'a T, String> {
    array.as_any().downcast_ref::<T>().ok_or_else(|| {
        format!(
            "the batch holds Arrow {} where a {} column is {}",
            array.data_type(),
            ty.describe(),
            ty.arrow_type()
        )
    })
}

impl<'a> Column<'a> {
    fn of(array: &'a dyn Array, ty: &ColumnType, element_oid: u32) -> Result<Column<'a>, String> {
        let values = if ty.array {
            let list = cast::<ListArray>(array, ty)?;
            let element = ColumnType { array: false, ..ty.clone() };
            Values::Array(Box::new(Arrays {
                offsets: list.value_offsets(),
                items: Column::of(list.values().as_ref(), &element, 0)?,
                element_oid,
            }))
        } else {
            match ty.kind {
                Kind::Bool => Values::Bool(cast::<BooleanArray>(array, ty)?),
                Kind::Int2 => Values::I16(cast::<Int16Array>(array, ty)?.values()),
                Kind::Int4 => Values::I32(cast::<Int32Array>(array, ty)?.values()),
                Kind::Int8 => Values::I64(cast::<Int64Array>(array, ty)?.values()),
                Kind::Float4 => Values::F32(cast::<Float32Array>(array, ty)?.values()),
                Kind::Float8 => Values::F64(cast::<Float64Array>(array, ty)?.values()),
                Kind::Text | Kind::Enum | Kind::Json => Values::Text(cast::<StringArray>(array, ty)?),
                Kind::Jsonb => Values::Jsonb(cast::<StringArray>(array, ty)?),
                // The decoder's choice: Decimal128 for numeric(p <= 38, s),
                // text otherwise; follow what the batch holds.
                Kind::Numeric => match array.as_any().downcast_ref::<Decimal128Array>() {
                    Some(d) => Values::Decimal(d.values(), d.precision(), d.scale()),
                    None => Values::NumericText(cast::<StringArray>(array, ty)?),
                },
                Kind::Uuid => {
                    let a = cast::<FixedSizeBinaryArray>(array, ty)?;
                    if a.value_length() != 16 {
                        return Err(format!("uuid column holds {}-byte values", a.value_length()));
                    }
                    Values::Uuid(a)
                }
                Kind::Date => Values::Date(cast::<Date32Array>(array, ty)?.values()),
                Kind::Time => Values::Time(cast::<Time64MicrosecondArray>(array, ty)?.values()),
                Kind::Timestamp | Kind::Timestamptz => {
                    Values::Timestamp(cast::<TimestampMicrosecondArray>(array, ty)?.values())
                }
                Kind::Bytea => Values::Bytes(cast::<BinaryArray>(array, ty)?),
                Kind::Vector | Kind::Halfvec => {
                    let (bounds, items) = match array.as_any().downcast_ref::<FixedSizeListArray>() {
                        Some(f) => (Bounds::Fixed(f.value_length().max(0) as usize), f.values()),
                        None => {
                            let l = cast::<ListArray>(array, ty)?;
                            (Bounds::Offsets(l.value_offsets()), l.values())
                        }
                    };
                    let floats = cast::<Float32Array>(items.as_ref(), ty)?;
                    Values::Vector(Vectors {
                        bounds,
                        values: floats.values(),
                        value_nulls: floats.nulls(),
                        half: ty.kind == Kind::Halfvec,
                    })
                }
            }
        };
        Ok(Column { nulls: array.nulls(), values })
    }

    #[inline]
    fn is_null(&self, i: usize) -> bool {
        self.nulls.is_some_and(|n| n.is_null(i))
    }

    /// Writes field `i`: int32 length (-1 for NULL) and the bytes.
    fn write(&self, i: usize, out: &mut Vec<u8>) -> Result<(), FieldError> {
        if self.is_null(i) {
            out.extend_from_slice(&(-1i32).to_be_bytes());
            return Ok(());
        }
        match &self.values {
            // boolsend (bool.c): one byte, 1 or 0.
            Values::Bool(a) => fixed(out, &[a.value(i) as u8]),
            // int2send / int4send (int.c), int8send (int8.c): big-endian.
            Values::I16(v) => fixed(out, &v[i].to_be_bytes()),
            Values::I32(v) => fixed(out, &v[i].to_be_bytes()),
            Values::I64(v) => fixed(out, &v[i].to_be_bytes()),
            // float4send / float8send (float.c) send the IEEE bits as an
            // integer (pq_sendfloat4/8): NaN payloads and -0 are kept.
            Values::F32(v) => fixed(out, &v[i].to_bits().to_be_bytes()),
            Values::F64(v) => fixed(out, &v[i].to_bits().to_be_bytes()),
            // textsend/varcharsend/bpcharsend/namesend/enum_send/json_send:
            // the text's bytes, in the client encoding (UTF8 for pgflare).
            Values::Text(a) => text(out, a.value(i), None)?,
            // jsonb_send (jsonb.c): version byte 1, then the text.
            Values::Jsonb(a) => text(out, a.value(i), Some(1))?,
            // numeric_send (numeric.c): see source::numeric.
            Values::NumericText(a) => {
                variable(out, |out| numeric::from_text(a.value(i), out).map_err(refuse))?
            }
            Values::Decimal(v, precision, scale) => {
                let value = v[i];
                // 10^38 fits an i128; numeric(p, s) keeps at most p digits.
                if value.unsigned_abs() >= 10u128.pow(u32::from((*precision).min(38))) {
                    return Err(refuse(format!(
                        "Decimal128 value {value} has more than the column's {precision} digits"
                    )));
                }
                variable(out, |out| numeric::from_i128(value, *scale, out).map_err(refuse))?
            }
            // uuid_send (uuid.c): the 16 bytes.
            Values::Uuid(a) => fixed(out, a.value(i)),
            // date_send (date.c): int32 days since 2000-01-01.
            Values::Date(v) => {
                let days = v[i].checked_sub(PG_EPOCH_DAYS).filter(|d| (MIN_DATE..END_DATE).contains(d));
                let Some(days) = days else {
                    return Err(refuse(format!(
                        "date {} days from 1970-01-01 is out of Postgres's range",
                        v[i]
                    )));
                };
                fixed(out, &days.to_be_bytes())
            }
            // time_send (date.c): int64 µs since midnight.
            Values::Time(v) => {
                if !(0..=USECS_PER_DAY).contains(&v[i]) {
                    return Err(refuse(format!("time of {} µs is not within a day", v[i])));
                }
                fixed(out, &v[i].to_be_bytes())
            }
            // timestamp_send / timestamptz_send (timestamp.c): int64 µs since
            // 2000-01-01 (UTC for timestamptz).
            Values::Timestamp(v) => {
                let us = v[i].checked_sub(PG_EPOCH_US).filter(|t| (MIN_TIMESTAMP..END_TIMESTAMP).contains(t));
                let Some(us) = us else {
                    return Err(refuse(format!(
                        "timestamp {} µs from 1970-01-01 is out of Postgres's range (4714 BC to 294276 AD)",
                        v[i]
                    )));
                };
                fixed(out, &us.to_be_bytes())
            }
            // byteasend (varlena.c): the bytes.
            Values::Bytes(a) => {
                let v = a.value(i);
                out.extend_from_slice(&field_len(v.len())?.to_be_bytes());
                out.extend_from_slice(v);
            }
            Values::Vector(v) => v.write(i, out)?,
            Values::Array(a) => a.write(i, out)?,
        }
        Ok(())
    }
}

#[inline]
fn fixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A field length: an int32 in the COPY format.
fn field_len(len: usize) -> Result<i32, FieldError> {
    i32::try_from(len).map_err(|_| FieldError {
        message: format!("value of {len} bytes does not fit a COPY field (at most 2^31-1 bytes)"),
        hint:
            "Postgres cannot store it either (a field is at most 1 GB); leave the column out of the restore",
    })
}

/// Writes a field whose length is known once written.
fn variable(
    out: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), FieldError>,
) -> Result<(), FieldError> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out)?;
    let len = field_len(out.len() - at - 4)?;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// A text field, after an optional version byte. Postgres text cannot hold
/// U+0000 (pq_getmsgtext converts through pg_verify_mbstr, which refuses a
/// zero byte: "invalid byte sequence for encoding "UTF8": 0x00").
fn text(out: &mut Vec<u8>, s: &str, version: Option<u8>) -> Result<(), FieldError> {
    let bytes = s.as_bytes();
    if bytes.contains(&0) {
        return Err(refuse("text contains the character U+0000, which Postgres text cannot hold".into()));
    }
    out.extend_from_slice(&field_len(bytes.len() + version.is_some() as usize)?.to_be_bytes());
    if let Some(v) = version {
        out.push(v);
    }
    out.extend_from_slice(bytes);
    Ok(())
}

impl Vectors<'_> {
    /// pgvector's vector_send (src/vector.c): int16 dim, int16 unused (0),
    /// dim float4s; halfvec_send (src/halfvec.c): the same with IEEE
    /// binary16 elements. vector_recv/halfvec_recv refuse NaN and infinite
    /// elements (CheckElement) and fewer than one dimension (CheckDim).
    fn write(&self, i: usize, out: &mut Vec<u8>) -> Result<(), FieldError> {
        let (start, end) = self.bounds.of(i)?;
        let Some(values) = self.values.get(start..end) else {
            return Err(refuse(format!("vector of row {i} lies outside its values")));
        };
        let dim = i16::try_from(values.len()).ok().filter(|d| *d >= 1).ok_or_else(|| {
            refuse(format!("vector of {} dimensions (pgvector takes 1 to 16000)", values.len()))
        })?;
        if let Some(nulls) = self.value_nulls {
            if (start..end).any(|k| nulls.is_null(k)) {
                return Err(refuse("vector has a NULL element".into()));
            }
        }
        let width = if self.half { 2 } else { 4 };
        out.extend_from_slice(&((4 + width * values.len()) as i32).to_be_bytes());
        out.extend_from_slice(&dim.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        // CheckElement first, in a pass of its own, then the elements are
        // written into place: vectors are most of a RAG table's bytes, and
        // this way the float4 copy is a plain byte swap.
        if let Some(k) = values.iter().position(|x| !x.is_finite()) {
            return Err(refuse(format!(
                "vector element {} is {}; pgvector refuses NaN and infinity",
                k + 1,
                values[k]
            )));
        }
        let body = out.len();
        out.resize(body + width * values.len(), 0);
        let body = &mut out[body..];
        if self.half {
            for (k, (x, slot)) in values.iter().zip(body.chunks_exact_mut(2)).enumerate() {
                // The archive holds halfvec elements widened to float32,
                // which is exact; narrowing must be too.
                let h = half::f16::from_f32(*x);
                if h.to_f32().to_bits() != x.to_bits() {
                    return Err(refuse(format!("halfvec element {} ({x:e}) is not a float16 value", k + 1)));
                }
                slot.copy_from_slice(&h.to_be_bytes());
            }
        } else {
            for (x, slot) in values.iter().zip(body.chunks_exact_mut(4)) {
                slot.copy_from_slice(&x.to_bits().to_be_bytes());
            }
        }
        Ok(())
    }
}

impl Arrays<'_> {
    /// array_send (src/backend/utils/adt/arrayfuncs.c): int32 ndim, int32
    /// has-nulls flag, uint32 element type oid, per dimension int32 size
    /// and int32 lower bound, then each element as an int32 length (-1 for
    /// NULL) and its send function's bytes. An empty array has ndim 0 and
    /// no dimensions. Lower bounds are 1: the archive does not keep others.
    fn write(&self, i: usize, out: &mut Vec<u8>) -> Result<(), FieldError> {
        let (start, end) = Bounds::Offsets(self.offsets).of(i)?;
        let oid = self.element_oid.to_be_bytes();
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        if start == end {
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&oid);
        } else {
            out.extend_from_slice(&1i32.to_be_bytes());
            let flag = out.len();
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(&oid);
            out.extend_from_slice(&((end - start) as i32).to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut has_null = false;
            for k in start..end {
                has_null |= self.items.is_null(k);
                self.items.write(k, out).map_err(|e| FieldError {
                    message: format!("array element {}: {}", k - start + 1, e.message),
                    hint: e.hint,
                })?;
            }
            out[flag + 3] = has_null as u8;
        }
        let len = field_len(out.len() - at - 4)?;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

/// The row's primary key as a person reads it, e.g. `id=42` (as the
/// decoder's key_text shows it), or its place when the table has none.
fn key_text(table: &TableSpec, key: &[usize], batch: &RecordBatch, row: usize, ordinal: u64) -> String {
    if key.is_empty() {
        return format!("#{} written (the table has no primary key)", ordinal + 1);
    }
    key.iter()
        .map(|&i| {
            let col = batch.column(i);
            let text = if col.is_null(row) {
                "NULL".to_string()
            } else if let Some(s) = col.as_any().downcast_ref::<StringArray>() {
                format!("{:?}", s.value(row).chars().take(64).collect::<String>())
            } else if let Some(u) = col.as_any().downcast_ref::<FixedSizeBinaryArray>() {
                match uuid::Uuid::from_slice(u.value(row)) {
                    Ok(u) => u.to_string(),
                    Err(_) => hex::encode(u.value(row)),
                }
            } else {
                arrow::util::display::array_value_to_string(col.as_ref(), row)
                    .unwrap_or_else(|e| format!("(unprintable: {e})"))
            };
            format!("{}={}", table.columns[i].name, text)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "encode_tests/mod.rs"]
mod tests;
