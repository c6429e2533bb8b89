//! The one canonical row digest. A row is encoded as it must look in any
//! target, typed and length-prefixed, and hashed with blake3; the same
//! function runs on rows read from Postgres, Parquet, and (later) D1 and
//! Vectorize, because all of them are first brought back to the Arrow types
//! of the type table. Encoding `pgflare-row-v1` (README, "Row digest"):
//!
//! - u32 LE column count, then per column: `0x00` for NULL, or `0x01` and
//!   the value;
//! - booleans one byte; all integers as i64 LE; float32 / float64 as their
//!   IEEE bits LE (so -0.0, NaN payloads and subnormals count); decimals as
//!   i128 LE; dates as i64 LE days since 1970; times and timestamps as
//!   i64 LE microseconds;
//! - text, binary, uuid, json: u64 LE byte length, then the bytes;
//! - lists (vectors and arrays): u64 LE element count, then the elements,
//!   each with its NULL marker, except that a float32 list with no NULL
//!   element (every vector) is just its elements' bits, 4 bytes each.
//!
//! Row digests of a set of rows are combined by adding them as four u64 LE
//! lanes (wrapping), so order does not matter and buckets can be merged.

pub mod buckets;
pub mod keep;
pub mod pass;
pub mod shown;
pub mod vector;

#[cfg(test)]
mod test_vectors;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Time64MicrosecondType, TimestampMicrosecondType,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const ROW_ENCODING: &str = "pgflare-row-v1";

/// blake3 of one row's canonical encoding.
pub type RowDigest = [u8; 32];

/// An order-independent sum of row digests, with the row count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DigestSum {
    lanes: [u64; 4],
    pub rows: u64,
}

impl DigestSum {
    pub fn add(&mut self, d: &RowDigest) {
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[i * 8..i * 8 + 8]);
            *lane = lane.wrapping_add(u64::from_le_bytes(b));
        }
        self.rows += 1;
    }

    pub fn merge(&mut self, other: &DigestSum) {
        for (a, b) in self.lanes.iter_mut().zip(other.lanes) {
            *a = a.wrapping_add(b);
        }
        self.rows += other.rows;
    }

    /// The 32 bytes as hex (lanes LE), the form manifests store.
    pub fn hex(&self) -> String {
        let mut bytes = Vec::with_capacity(32);
        for lane in self.lanes {
            bytes.extend_from_slice(&lane.to_le_bytes());
        }
        hex::encode(bytes)
    }
}

impl DigestSum {
    /// Parses the hex form written by [`DigestSum::hex`] (row count 0).
    pub fn from_hex(s: &str) -> Option<DigestSum> {
        let bytes = hex::decode(s).ok()?;
        if bytes.len() != 32 {
            return None;
        }
        let mut lanes = [0u64; 4];
        for (i, lane) in lanes.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            *lane = u64::from_le_bytes(b);
        }
        Some(DigestSum { lanes, rows: 0 })
    }
}

impl Serialize for DigestSum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for DigestSum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DigestSum::from_hex(&s).ok_or_else(|| serde::de::Error::custom("a digest is 64 hex digits"))
    }
}

/// Digests of every row of a batch.
pub fn row_digests(batch: &RecordBatch) -> Result<Vec<RowDigest>> {
    let columns = batch.columns();
    let mut out = Vec::with_capacity(batch.num_rows());
    let mut hasher = blake3::Hasher::new();
    for row in 0..batch.num_rows() {
        hasher.reset();
        hasher.update(&(columns.len() as u32).to_le_bytes());
        for col in columns {
            encode(&mut hasher, col, row)?;
        }
        out.push(*hasher.finalize().as_bytes());
    }
    Ok(out)
}

/// Canonical bytes of the key columns of one row (for bucketing and lookups).
pub fn key_bytes(batch: &RecordBatch, key: &[usize], row: usize) -> Result<Vec<u8>> {
    let mut enc = KeyEncoder(Vec::new());
    for &k in key {
        encode(&mut enc, batch.column(k), row)?;
    }
    Ok(enc.0)
}

/// The digest of one field (for locating which columns of a changed row
/// differ): the same encoding as in the row digest.
pub fn field_digest(col: &ArrayRef, row: usize) -> Result<RowDigest> {
    let mut h = blake3::Hasher::new();
    encode(&mut h, col, row)?;
    Ok(*h.finalize().as_bytes())
}

/// The key of one row as a person reads it: `id=…, n=…`.
pub fn key_display(batch: &RecordBatch, key: &[usize], row: usize) -> String {
    key.iter()
        .map(|&k| {
            let name = batch.schema().field(k).name().clone();
            let col = batch.column(k);
            let value = if col.is_null(row) {
                "NULL".to_string()
            } else if let DataType::FixedSizeBinary(16) = col.data_type() {
                uuid::Uuid::from_slice(col.as_fixed_size_binary().value(row))
                    .map(|u| u.to_string())
                    .unwrap_or_default()
            } else {
                arrow::util::display::array_value_to_string(col, row).unwrap_or_else(|_| "?".into())
            };
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the encoding goes: a hasher, or a plain buffer for keys.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for blake3::Hasher {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

struct KeyEncoder(Vec<u8>);

impl Sink for KeyEncoder {
    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

fn encode(out: &mut impl Sink, col: &ArrayRef, row: usize) -> Result<()> {
    encode_dyn(out, col.as_ref(), row)
}

fn encode_dyn(out: &mut impl Sink, col: &dyn Array, row: usize) -> Result<()> {
    if col.is_null(row) {
        out.put(&[0]);
        return Ok(());
    }
    out.put(&[1]);
    match col.data_type() {
        DataType::Boolean => out.put(&[col.as_boolean().value(row) as u8]),
        DataType::Int16 => out.put(&(col.as_primitive::<Int16Type>().value(row) as i64).to_le_bytes()),
        DataType::Int32 => out.put(&(col.as_primitive::<Int32Type>().value(row) as i64).to_le_bytes()),
        DataType::Int64 => out.put(&col.as_primitive::<Int64Type>().value(row).to_le_bytes()),
        DataType::Float32 => out.put(&col.as_primitive::<Float32Type>().value(row).to_bits().to_le_bytes()),
        DataType::Float64 => out.put(&col.as_primitive::<Float64Type>().value(row).to_bits().to_le_bytes()),
        DataType::Decimal128(_, _) => out.put(&col.as_primitive::<Decimal128Type>().value(row).to_le_bytes()),
        DataType::Date32 => out.put(&(col.as_primitive::<Date32Type>().value(row) as i64).to_le_bytes()),
        DataType::Time64(_) => out.put(&col.as_primitive::<Time64MicrosecondType>().value(row).to_le_bytes()),
        DataType::Timestamp(_, _) => {
            out.put(&col.as_primitive::<TimestampMicrosecondType>().value(row).to_le_bytes())
        }
        DataType::Utf8 => put_bytes(out, col.as_string::<i32>().value(row).as_bytes()),
        DataType::LargeUtf8 => put_bytes(out, col.as_string::<i64>().value(row).as_bytes()),
        DataType::Binary => put_bytes(out, col.as_binary::<i32>().value(row)),
        DataType::FixedSizeBinary(_) => put_bytes(out, col.as_fixed_size_binary().value(row)),
        DataType::FixedSizeList(_, _) => encode_list(out, &col.as_fixed_size_list().value(row))?,
        DataType::List(_) => encode_list(out, &col.as_list::<i32>().value(row))?,
        other => {
            return Err(Error::Internal(format!("the row digest has no encoding for Arrow type {other}")));
        }
    }
    Ok(())
}

fn put_bytes(out: &mut impl Sink, b: &[u8]) {
    out.put(&(b.len() as u64).to_le_bytes());
    out.put(b);
}

fn encode_list(out: &mut impl Sink, items: &ArrayRef) -> Result<()> {
    out.put(&(items.len() as u64).to_le_bytes());
    if items.data_type() == &DataType::Float32 && items.null_count() == 0 {
        // Float32 lists without NULL elements (vectors): the values'
        // little-endian bits with no markers, hashed straight from the buffer.
        let values = items.as_primitive::<Float32Type>().values();
        if cfg!(target_endian = "little") {
            let raw = values.inner().as_slice();
            let start = values.as_ptr() as usize - raw.as_ptr() as usize;
            out.put(&raw[start..start + values.len() * 4]);
        } else {
            for v in values.iter() {
                out.put(&v.to_bits().to_le_bytes());
            }
        }
        return Ok(());
    }
    for i in 0..items.len() {
        encode_dyn(out, items.as_ref(), i)?;
    }
    Ok(())
}
