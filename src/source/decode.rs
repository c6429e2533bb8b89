//! Decodes COPY BINARY fields straight into Arrow builders, one
//! [`ColumnBuilder`] per column as the type table says, and cuts the rows
//! into record batches bounded by rows and bytes. Errors name the table,
//! column and the row's primary key.

use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListArray, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{Field, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::copy::Row;
use super::numeric;
use super::pgvector::VectorBuilder;
use crate::batch::TableSpec;
use crate::error::{Error, Result};
use crate::typemap::{ColumnType, Kind};

/// Microseconds between 1970-01-01 and Postgres's epoch 2000-01-01.
pub(crate) const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
pub(crate) const PG_EPOCH_DAYS: i32 = 10_957;

/// A value that did not decode: what went wrong and what to do.
struct FieldError {
    message: String,
    hint: &'static str,
}

impl From<String> for FieldError {
    fn from(message: String) -> Self {
        FieldError { message, hint: "this looks like a pgflare bug; please report it with the column's type" }
    }
}

fn fixed<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N], FieldError> {
    v.try_into().map_err(|_| FieldError::from(format!("{what} value has {} bytes, expected {N}", v.len())))
}

fn utf8(v: &[u8]) -> Result<&str, FieldError> {
    std::str::from_utf8(v).map_err(|e| FieldError {
        message: format!("text is not valid UTF-8 ({e})"),
        hint: "the database encoding must be UTF8 (SHOW server_encoding)",
    })
}

/// One column's Arrow builder.
enum ColumnBuilder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    /// text, varchar, enum labels, json
    Text(StringBuilder),
    /// jsonb: a version byte, then the text
    Jsonb(StringBuilder),
    NumericText(StringBuilder),
    Decimal(Decimal128Builder, i8),
    Uuid(FixedSizeBinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Bytes(BinaryBuilder),
    Vector(VectorBuilder),
    List(Box<ListColumn>),
}

/// A one-dimensional array column: offsets and nulls over an element builder.
struct ListColumn {
    field: Arc<Field>,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
    len: i32,
    items: ColumnBuilder,
}

impl ColumnBuilder {
    fn new(ty: &ColumnType, cap: usize) -> Self {
        if ty.array {
            let element = ColumnType { array: false, ..ty.clone() };
            return ColumnBuilder::List(Box::new(ListColumn {
                field: Arc::new(Field::new("item", element.arrow_type(), true)),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(cap),
                len: 0,
                items: ColumnBuilder::new(&element, cap),
            }));
        }
        match ty.kind {
            Kind::Bool => Self::Bool(BooleanBuilder::with_capacity(cap)),
            Kind::Int2 => Self::I16(Int16Builder::with_capacity(cap)),
            Kind::Int4 => Self::I32(Int32Builder::with_capacity(cap)),
            Kind::Int8 => Self::I64(Int64Builder::with_capacity(cap)),
            Kind::Float4 => Self::F32(Float32Builder::with_capacity(cap)),
            Kind::Float8 => Self::F64(Float64Builder::with_capacity(cap)),
            Kind::Text | Kind::Enum | Kind::Json => Self::Text(StringBuilder::new()),
            Kind::Jsonb => Self::Jsonb(StringBuilder::new()),
            Kind::Numeric => match ty.decimal {
                Some((p, s)) if p <= 38 => {
                    Self::Decimal(Decimal128Builder::with_capacity(cap).with_data_type(ty.arrow_type()), s)
                }
                _ => Self::NumericText(StringBuilder::new()),
            },
            Kind::Uuid => Self::Uuid(FixedSizeBinaryBuilder::with_capacity(cap, 16)),
            Kind::Date => Self::Date(Date32Builder::with_capacity(cap)),
            Kind::Time => Self::Time(Time64MicrosecondBuilder::with_capacity(cap)),
            Kind::Timestamp => Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(cap)),
            Kind::Timestamptz => {
                Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC"))
            }
            Kind::Bytea => Self::Bytes(BinaryBuilder::new()),
            Kind::Vector => Self::Vector(VectorBuilder::new(ty.dims, false, cap)),
            Kind::Halfvec => Self::Vector(VectorBuilder::new(ty.dims, true, cap)),
        }
    }

    fn append(&mut self, value: Option<&[u8]>) -> Result<(), FieldError> {
        let Some(v) = value else {
            self.append_null();
            return Ok(());
        };
        match self {
            Self::Bool(b) => b.append_value(fixed::<1>(v, "bool")?[0] != 0),
            Self::I16(b) => b.append_value(i16::from_be_bytes(fixed(v, "int2")?)),
            Self::I32(b) => b.append_value(i32::from_be_bytes(fixed(v, "int4")?)),
            Self::I64(b) => b.append_value(i64::from_be_bytes(fixed(v, "int8")?)),
            Self::F32(b) => b.append_value(f32::from_be_bytes(fixed(v, "float4")?)),
            Self::F64(b) => b.append_value(f64::from_be_bytes(fixed(v, "float8")?)),
            Self::Text(b) => b.append_value(utf8(v)?),
            Self::Jsonb(b) => match v.split_first() {
                Some((1, text)) => b.append_value(utf8(text)?),
                _ => return Err(format!("jsonb value with unknown format version {:?}", v.first()).into()),
            },
            Self::NumericText(b) => b.append_value(numeric::to_text(v)?),
            Self::Decimal(b, scale) => b.append_value(numeric::to_i128(v, *scale).map_err(|message| {
                FieldError { message, hint: "read the column as text instead: --cast TABLE.COLUMN=text" }
            })?),
            Self::Uuid(b) => b.append_value(fixed::<16>(v, "uuid")?).map_err(|e| e.to_string())?,
            Self::Date(b) => {
                let days = i32::from_be_bytes(fixed(v, "date")?);
                if days == i32::MAX || days == i32::MIN {
                    return Err(infinity("date"));
                }
                b.append_value(days + PG_EPOCH_DAYS)
            }
            Self::Time(b) => b.append_value(i64::from_be_bytes(fixed(v, "time")?)),
            Self::Timestamp(b) => {
                let us = i64::from_be_bytes(fixed(v, "timestamp")?);
                match us.checked_add(PG_EPOCH_US) {
                    Some(unix) if us != i64::MAX && us != i64::MIN => b.append_value(unix),
                    _ => return Err(infinity("timestamp")),
                }
            }
            Self::Bytes(b) => b.append_value(v),
            Self::Vector(b) => b.append(Some(v))?,
            Self::List(list) => list.append(v)?,
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::I16(b) => b.append_null(),
            Self::I32(b) => b.append_null(),
            Self::I64(b) => b.append_null(),
            Self::F32(b) => b.append_null(),
            Self::F64(b) => b.append_null(),
            Self::Text(b) | Self::Jsonb(b) | Self::NumericText(b) => b.append_null(),
            Self::Decimal(b, _) => b.append_null(),
            Self::Uuid(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
            Self::Bytes(b) => b.append_null(),
            Self::Vector(b) => {
                // A NULL never fails to append.
                let _ = b.append(None);
            }
            Self::List(list) => {
                list.offsets.push(list.len);
                list.nulls.append_null();
            }
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::I16(b) => Arc::new(b.finish()),
            Self::I32(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::F32(b) => Arc::new(b.finish()),
            Self::F64(b) => Arc::new(b.finish()),
            Self::Text(b) | Self::Jsonb(b) | Self::NumericText(b) => Arc::new(b.finish()),
            Self::Decimal(b, _) => Arc::new(b.finish()),
            Self::Uuid(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
            Self::Bytes(b) => Arc::new(b.finish()),
            Self::Vector(b) => b.finish(),
            Self::List(list) => {
                let offsets = std::mem::replace(&mut list.offsets, vec![0]);
                list.len = 0;
                Arc::new(ListArray::new(
                    list.field.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    list.items.finish(),
                    list.nulls.finish(),
                ))
            }
        }
    }
}

fn infinity(what: &str) -> FieldError {
    FieldError {
        message: format!("{what} is ±infinity, which has no Arrow/Parquet form"),
        hint:
            "replace it in the source (e.g. with NULL) or read the column as text: --cast TABLE.COLUMN=text",
    }
}

impl ListColumn {
    /// Array binary format: int32 ndim, int32 has-nulls, uint32 element oid,
    /// per dimension int32 size and int32 lower bound, then the elements.
    fn append(&mut self, v: &[u8]) -> Result<(), FieldError> {
        let head = |at: usize| -> Result<i32, FieldError> {
            v.get(at..at + 4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| FieldError::from("array value is truncated".to_string()))
        };
        let ndim = head(0)?;
        let count = match ndim {
            0 => 0,
            1 => head(12)?,
            _ => {
                return Err(FieldError {
                    message: format!(
                        "array has {ndim} dimensions; only one-dimensional arrays are supported"
                    ),
                    hint: "flatten it in the source, or read it as JSON: --cast TABLE.COLUMN=jsonb",
                })
            }
        };
        let mut pos = if ndim == 0 { 12 } else { 20 };
        for _ in 0..count {
            let len = head(pos)?;
            pos += 4;
            if len < 0 {
                self.items.append(None)?;
            } else {
                let end = pos + len as usize;
                let elem = v
                    .get(pos..end)
                    .ok_or_else(|| FieldError::from("array element is truncated".to_string()))?;
                self.items.append(Some(elem))?;
                pos = end;
            }
        }
        self.len += count;
        self.offsets.push(self.len);
        self.nulls.append_non_null();
        Ok(())
    }
}

/// Builds record batches of one table from COPY rows.
pub struct BatchBuilder {
    table: Arc<TableSpec>,
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    key: Vec<usize>,
    rows: usize,
    bytes: usize,
    /// Rows decoded before this batch, for error messages of keyless tables.
    offset: u64,
}

impl BatchBuilder {
    pub fn new(table: Arc<TableSpec>, capacity: usize) -> Self {
        let columns = table.columns.iter().map(|c| ColumnBuilder::new(&c.ty, capacity)).collect();
        BatchBuilder {
            schema: table.arrow_schema(),
            key: table.key_indices(),
            table,
            columns,
            rows: 0,
            bytes: 0,
            offset: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends one row. On error the batch is left inconsistent: the caller
    /// must stop (which it does: an error ends the job).
    pub fn push(&mut self, row: Row<'_>) -> Result<()> {
        for (i, (builder, value)) in self.columns.iter_mut().zip(row.fields()).enumerate() {
            if let Err(e) = builder.append(value) {
                return Err(Error::Value {
                    table: self.table.qualified(),
                    column: self.table.columns[i].name.clone(),
                    key: key_text(&self.table, &self.key, row, self.offset + self.rows as u64),
                    message: e.message,
                    // The hints name TABLE.COLUMN generically; say which.
                    hint: e.hint.replace(
                        "TABLE.COLUMN",
                        &format!("{}.{}", self.table.name, self.table.columns[i].name),
                    ),
                });
            }
        }
        self.rows += 1;
        self.bytes += row.byte_len();
        Ok(())
    }

    /// Cuts the rows so far into a record batch and starts a new one.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        self.offset += self.rows as u64;
        self.rows = 0;
        self.bytes = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

/// The row's primary key as a person reads it, e.g. `id=3f2c...`.
fn key_text(table: &TableSpec, key: &[usize], row: Row<'_>, ordinal: u64) -> String {
    if key.is_empty() {
        return format!("#{} of its partition (the table has no primary key)", ordinal + 1);
    }
    let fields: Vec<Option<&[u8]>> = row.fields().collect();
    key.iter()
        .map(|&i| {
            let col = &table.columns[i];
            let text = match (col.ty.kind, fields[i]) {
                (_, None) => "NULL".to_string(),
                (Kind::Int2, Some(v)) if v.len() == 2 => i16::from_be_bytes([v[0], v[1]]).to_string(),
                (Kind::Int4, Some(v)) if v.len() == 4 => {
                    i32::from_be_bytes([v[0], v[1], v[2], v[3]]).to_string()
                }
                (Kind::Int8, Some(v)) if v.len() == 8 => {
                    i64::from_be_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]).to_string()
                }
                (Kind::Uuid, Some(v)) => match uuid::Uuid::from_slice(v) {
                    Ok(u) => u.to_string(),
                    Err(_) => hex::encode(v),
                },
                (Kind::Text | Kind::Enum, Some(v)) => {
                    let s = String::from_utf8_lossy(v);
                    format!("{:?}", s.chars().take(64).collect::<String>())
                }
                (_, Some(v)) => format!("0x{}", hex::encode(v)),
            };
            format!("{}={}", col.name, text)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
