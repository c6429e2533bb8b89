//! The one type-mapping table: for every Postgres type pgflare moves, the
//! Arrow type it travels as (and is archived as in Parquet), the D1/SQLite
//! column type it lands in, and its JSON form (Vectorize metadata, reports).
//! Introspection resolves columns through [`resolve`]; the decoder, the
//! sinks, the digest and the README's supported-types table all read from
//! here, so adding a type means adding one row and one decoder arm.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};
use serde::{Deserialize, Serialize};

/// A Postgres type family pgflare knows how to move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Enum,
    Uuid,
    Json,
    Jsonb,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Bytea,
    Vector,
    Halfvec,
}

/// One row of the table.
#[derive(Debug)]
pub struct Mapping {
    pub kind: Kind,
    /// `pg_type.typname` values that resolve to this row (after domains are
    /// unwrapped to their base type).
    pub pg_names: &'static [&'static str],
    /// The Arrow / Parquet type, as the README shows it.
    pub arrow: &'static str,
    /// Column type in the D1 (SQLite) schema that `pgflare init` writes.
    pub d1: &'static str,
    /// How a value is written as JSON (Vectorize metadata, reports).
    pub json: &'static str,
    /// May appear as the element of a one-dimensional array column.
    pub array_element: bool,
    /// What is not kept, if anything.
    pub lossy: &'static str,
}

/// The table itself. Order is the README's order.
pub const TYPE_TABLE: &[Mapping] = &[
    Mapping {
        kind: Kind::Bool,
        pg_names: &["bool"],
        arrow: "Boolean",
        d1: "INTEGER (0/1)",
        json: "true/false",
        array_element: true,
        lossy: "",
    },
    Mapping {
        kind: Kind::Int2,
        pg_names: &["int2"],
        arrow: "Int16",
        d1: "INTEGER",
        json: "number",
        array_element: true,
        lossy: "",
    },
    Mapping {
        kind: Kind::Int4,
        pg_names: &["int4"],
        arrow: "Int32",
        d1: "INTEGER",
        json: "number",
        array_element: true,
        lossy: "",
    },
    Mapping {
        kind: Kind::Int8,
        pg_names: &["int8"],
        arrow: "Int64",
        d1: "INTEGER",
        json: "number (string beyond ±2^53)",
        array_element: true,
        lossy: "",
    },
    Mapping {
        kind: Kind::Float4,
        pg_names: &["float4"],
        arrow: "Float32",
        d1: "REAL",
        json: "number (shortest round-trip)",
        array_element: true,
        lossy: "D1 REAL: NaN as NULL, -0 as 0 (SQLite keeps neither); JSON: NaN/±Infinity as null",
    },
    Mapping {
        kind: Kind::Float8,
        pg_names: &["float8"],
        arrow: "Float64",
        d1: "REAL",
        json: "number (shortest round-trip)",
        array_element: true,
        lossy: "D1 REAL: NaN as NULL, -0 as 0 (SQLite keeps neither); JSON: NaN/±Infinity as null",
    },
    Mapping {
        kind: Kind::Numeric,
        pg_names: &["numeric"],
        arrow: "Decimal128(p,s) for numeric(p,s) with p <= 38; Utf8 otherwise",
        d1: "TEXT",
        json: "string",
        array_element: false,
        lossy: "NaN/±Infinity are refused in Decimal128 columns",
    },
    Mapping {
        kind: Kind::Text,
        pg_names: &["text", "varchar", "bpchar", "name", "citext"],
        arrow: "Utf8",
        d1: "TEXT",
        json: "string",
        array_element: true,
        lossy: "",
    },
    Mapping {
        kind: Kind::Enum,
        pg_names: &[],
        arrow: "Utf8 (the label)",
        d1: "TEXT",
        json: "string",
        array_element: false,
        lossy: "the enum's ordering is kept only in the DDL",
    },
    Mapping {
        kind: Kind::Uuid,
        pg_names: &["uuid"],
        arrow: "FixedSizeBinary(16) + arrow.uuid (Parquet UUID)",
        d1: "TEXT (lower-case hyphenated)",
        json: "string",
        array_element: false,
        lossy: "",
    },
    Mapping {
        kind: Kind::Json,
        pg_names: &["json"],
        arrow: "Utf8 + arrow.json (Parquet JSON)",
        d1: "TEXT (JSON)",
        json: "the JSON value",
        array_element: false,
        lossy: "",
    },
    Mapping {
        kind: Kind::Jsonb,
        pg_names: &["jsonb"],
        arrow: "Utf8 + arrow.json (Parquet JSON)",
        d1: "TEXT (JSON)",
        json: "the JSON value",
        array_element: false,
        lossy: "",
    },
    Mapping {
        kind: Kind::Date,
        pg_names: &["date"],
        arrow: "Date32",
        d1: "TEXT (YYYY-MM-DD)",
        json: "string",
        array_element: false,
        lossy: "±infinity is refused",
    },
    Mapping {
        kind: Kind::Time,
        pg_names: &["time"],
        arrow: "Time64(µs)",
        d1: "TEXT (HH:MM:SS.ffffff)",
        json: "string",
        array_element: false,
        lossy: "",
    },
    Mapping {
        kind: Kind::Timestamp,
        pg_names: &["timestamp"],
        arrow: "Timestamp(µs)",
        d1: "TEXT (ISO 8601, µs)",
        json: "string",
        array_element: false,
        lossy: "±infinity is refused",
    },
    Mapping {
        kind: Kind::Timestamptz,
        pg_names: &["timestamptz"],
        arrow: "Timestamp(µs, UTC)",
        d1: "TEXT (ISO 8601 UTC, µs, Z)",
        json: "string",
        array_element: false,
        lossy: "the session time zone is not kept (values are instants in UTC); ±infinity is refused",
    },
    Mapping {
        kind: Kind::Bytea,
        pg_names: &["bytea"],
        arrow: "Binary",
        d1: "BLOB",
        json: "base64 string",
        array_element: false,
        lossy: "",
    },
    Mapping {
        kind: Kind::Vector,
        pg_names: &["vector"],
        arrow: "FixedSizeList(Float32, dims); List(Float32) without a declared dimension",
        d1: "TEXT (JSON array) if mapped",
        json: "array of numbers (Vectorize values)",
        array_element: false,
        lossy: "",
    },
    Mapping {
        kind: Kind::Halfvec,
        pg_names: &["halfvec"],
        arrow: "FixedSizeList(Float32, dims), widened exactly from float16",
        d1: "TEXT (JSON array) if mapped",
        json: "array of numbers (Vectorize values)",
        array_element: false,
        lossy: "stored as float32 (every float16 is exactly representable)",
    },
];

/// Types we know and refuse, with the type to read them through instead
/// (every type converts to text; these have a closer supported form).
const REFUSED: &[(&str, &str)] = &[("sparsevec", "vector"), ("interval", "text"), ("timetz", "text")];

/// A Vectorize metadata value's form (see [`ColumnType::metadata_form`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetadataForm {
    String,
    Number,
    Boolean,
    StringArray,
    /// The JSON value itself (an object becomes nested metadata).
    Json,
}

impl MetadataForm {
    /// The Vectorize metadata index type, for forms that can be indexed.
    pub fn index_type(self) -> Option<&'static str> {
        match self {
            MetadataForm::String => Some("string"),
            MetadataForm::Number => Some("number"),
            MetadataForm::Boolean => Some("boolean"),
            MetadataForm::StringArray | MetadataForm::Json => None,
        }
    }

    /// The form an index type names (`string`, `number`, `boolean`).
    pub fn of_index_type(t: &str) -> Option<MetadataForm> {
        match t {
            "string" => Some(MetadataForm::String),
            "number" => Some(MetadataForm::Number),
            "boolean" => Some(MetadataForm::Boolean),
            _ => None,
        }
    }
}

/// A resolved column type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnType {
    pub kind: Kind,
    /// One-dimensional array of `kind`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub array: bool,
    /// Declared dimension of a `vector`/`halfvec` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dims: Option<u32>,
    /// Declared precision and scale of a `numeric(p,s)` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimal: Option<(u8, i8)>,
}

/// What introspection knows about a column's type.
#[derive(Clone, Debug)]
pub struct PgTypeInfo<'a> {
    /// `pg_type.typname` after unwrapping domains (for arrays: the element's).
    pub typname: &'a str,
    /// `pg_type.typtype` of that type (`e` for enums).
    pub typtype: char,
    pub is_array: bool,
    /// `pg_attribute.atttypmod`.
    pub typmod: i32,
}

/// Why a type could not be resolved, and the type a cast should read the
/// column as; the caller adds table and column and words the fix.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub reason: String,
    pub cast_to: &'static str,
}

impl Kind {
    pub fn mapping(self) -> &'static Mapping {
        TYPE_TABLE
            .iter()
            .find(|m| m.kind == self)
            .expect("every Kind has a row in TYPE_TABLE (checked by a test)")
    }

    /// Arrow type of one (non-array) value of this kind.
    fn arrow_scalar(self, ty: &ColumnType) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int2 => DataType::Int16,
            Kind::Int4 => DataType::Int32,
            Kind::Int8 => DataType::Int64,
            Kind::Float4 => DataType::Float32,
            Kind::Float8 => DataType::Float64,
            Kind::Numeric => match ty.decimal {
                Some((p, s)) if p <= 38 => DataType::Decimal128(p, s),
                _ => DataType::Utf8,
            },
            Kind::Text | Kind::Enum | Kind::Json | Kind::Jsonb => DataType::Utf8,
            Kind::Uuid => DataType::FixedSizeBinary(16),
            Kind::Date => DataType::Date32,
            Kind::Time => DataType::Time64(TimeUnit::Microsecond),
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Bytea => DataType::Binary,
            Kind::Vector | Kind::Halfvec => {
                let item = Arc::new(Field::new("item", DataType::Float32, false));
                match ty.dims {
                    Some(d) => DataType::FixedSizeList(item, d as i32),
                    None => DataType::List(item),
                }
            }
        }
    }
}

impl ColumnType {
    pub fn scalar(kind: Kind) -> Self {
        ColumnType { kind, array: false, dims: None, decimal: None }
    }

    /// The Arrow type a column of this type travels as.
    pub fn arrow_type(&self) -> DataType {
        let scalar = self.kind.arrow_scalar(self);
        if self.array {
            DataType::List(Arc::new(Field::new("item", scalar, true)))
        } else {
            scalar
        }
    }

    /// The Arrow field for a column, with the canonical extension type that
    /// makes Parquet write the UUID / JSON logical types.
    pub fn arrow_field(&self, name: &str, nullable: bool) -> Field {
        let field = Field::new(name, self.arrow_type(), nullable);
        match (self.kind, self.array) {
            (Kind::Uuid, false) => field.with_extension_type(arrow_schema::extension::Uuid),
            (Kind::Json | Kind::Jsonb, false) => {
                field.with_extension_type(arrow_schema::extension::Json::default())
            }
            _ => field,
        }
    }

    /// How a value of this type goes into Vectorize metadata, or `None`
    /// when it cannot (Vectorize takes strings, numbers, booleans, string
    /// arrays and objects). Strings use the D1 text form, so a filter
    /// value reads the same as the D1 column.
    pub fn metadata_form(&self) -> Option<MetadataForm> {
        use Kind::*;
        match (self.kind, self.array) {
            (Bool, false) => Some(MetadataForm::Boolean),
            (Int2 | Int4 | Int8 | Float4 | Float8 | Numeric, false) => Some(MetadataForm::Number),
            (Text | Enum | Uuid | Date | Time | Timestamp | Timestamptz, false) => Some(MetadataForm::String),
            (Text | Enum | Uuid, true) => Some(MetadataForm::StringArray),
            (Json | Jsonb, false) => Some(MetadataForm::Json),
            _ => None,
        }
    }

    /// The D1 (SQLite) column type.
    pub fn d1_type(&self) -> &'static str {
        if self.array {
            return "TEXT";
        }
        match self.kind {
            Kind::Bool | Kind::Int2 | Kind::Int4 | Kind::Int8 => "INTEGER",
            Kind::Float4 | Kind::Float8 => "REAL",
            Kind::Bytea => "BLOB",
            _ => "TEXT",
        }
    }

    /// The Postgres spelling, for messages and manifests.
    pub fn describe(&self) -> String {
        let base = match (self.kind, self.dims, self.decimal) {
            (Kind::Vector, Some(d), _) => format!("vector({d})"),
            (Kind::Halfvec, Some(d), _) => format!("halfvec({d})"),
            (Kind::Numeric, _, Some((p, s))) => format!("numeric({p},{s})"),
            (kind, _, _) => kind.mapping().pg_names.first().copied().unwrap_or("enum").to_string(),
        };
        if self.array {
            format!("{base}[]")
        } else {
            base
        }
    }
}

/// Resolves a column's Postgres type to a [`ColumnType`].
pub fn resolve(info: &PgTypeInfo<'_>) -> Result<ColumnType, Unsupported> {
    let kind = if info.typtype == 'e' {
        Some(Kind::Enum)
    } else {
        TYPE_TABLE.iter().find(|m| m.pg_names.contains(&info.typname)).map(|m| m.kind)
    };
    let Some(kind) = kind else {
        let cast_to = REFUSED.iter().find(|(name, _)| *name == info.typname).map_or("text", |(_, to)| to);
        return Err(Unsupported { reason: "is not supported".into(), cast_to });
    };
    if info.is_array && !kind.mapping().array_element {
        // Postgres casts arrays element by element: uuid[]::text[] works
        // where uuid[]::jsonb does not.
        return Err(Unsupported {
            reason: format!("is an array of {}, which is not supported", info.typname),
            cast_to: "text[]",
        });
    }
    let mut ty = ColumnType { kind, array: info.is_array, dims: None, decimal: None };
    match kind {
        Kind::Vector | Kind::Halfvec if info.typmod > 0 => ty.dims = Some(info.typmod as u32),
        Kind::Numeric if info.typmod >= 4 => {
            let packed = info.typmod - 4;
            let precision = (packed >> 16) & 0xffff;
            // The scale is stored as an 11-bit signed value since PG 15.
            let scale = ((packed & 0x7ff) ^ 1024) - 1024;
            if (1..=38).contains(&precision) && (0..=precision).contains(&scale) {
                ty.decimal = Some((precision as u8, scale as i8));
            }
        }
        _ => {}
    }
    Ok(ty)
}

/// The supported-types table as Markdown (the README embeds it; a test keeps
/// them identical).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Postgres | Arrow / Parquet | D1 (SQLite) | JSON | 1-D arrays | Lossy cases |\n|---|---|---|---|---|---|\n",
    );
    for m in TYPE_TABLE {
        let names = if m.kind == Kind::Enum {
            "enum types".to_string()
        } else {
            m.pg_names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        };
        out.push_str(&format!(
            "| {names} | {} | {} | {} | {} | {} |\n",
            m.arrow,
            m.d1,
            m.json,
            if m.array_element { "yes (List)" } else { "no" },
            if m.lossy.is_empty() { "none" } else { m.lossy }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(typname: &str, is_array: bool, typmod: i32) -> PgTypeInfo<'_> {
        PgTypeInfo { typname, typtype: 'b', is_array, typmod }
    }

    #[test]
    fn every_kind_has_exactly_one_row() {
        use Kind::*;
        for k in [
            Bool,
            Int2,
            Int4,
            Int8,
            Float4,
            Float8,
            Numeric,
            Text,
            Enum,
            Uuid,
            Json,
            Jsonb,
            Date,
            Time,
            Timestamp,
            Timestamptz,
            Bytea,
            Vector,
            Halfvec,
        ] {
            assert_eq!(TYPE_TABLE.iter().filter(|m| m.kind == k).count(), 1, "{k:?}");
        }
    }

    #[test]
    fn vector_dims_and_numeric_typmods_resolve() {
        let v = resolve(&info("vector", false, 1536)).unwrap();
        assert_eq!(v.dims, Some(1536));
        assert!(matches!(v.arrow_type(), DataType::FixedSizeList(_, 1536)));
        assert!(matches!(resolve(&info("vector", false, -1)).unwrap().arrow_type(), DataType::List(_)));
        // numeric(12,3): typmod = (12 << 16 | 3) + 4
        let n = resolve(&info("numeric", false, ((12 << 16) | 3) + 4)).unwrap();
        assert_eq!(n.arrow_type(), DataType::Decimal128(12, 3));
        assert_eq!(resolve(&info("numeric", false, -1)).unwrap().arrow_type(), DataType::Utf8);
    }

    #[test]
    fn arrays_and_refusals() {
        let a = resolve(&info("text", true, -1)).unwrap();
        assert!(matches!(a.arrow_type(), DataType::List(_)));
        assert_eq!(a.describe(), "text[]");
        assert_eq!(resolve(&info("interval", false, -1)).unwrap_err().cast_to, "text");
        assert_eq!(resolve(&info("sparsevec", false, -1)).unwrap_err().cast_to, "vector");
        assert_eq!(resolve(&info("uuid", true, -1)).unwrap_err().cast_to, "text[]");
        assert!(resolve(&info("jsonb", true, -1)).is_err());
        let e = PgTypeInfo { typname: "mood", typtype: 'e', is_array: false, typmod: -1 };
        assert_eq!(resolve(&e).unwrap().kind, Kind::Enum);
    }
}

#[cfg(test)]
mod readme {
    /// The README's supported-types table is this module's table, verbatim.
    #[test]
    fn readme_shows_the_type_table() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
        let table = super::markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's supported-types table is out of date; replace it with:\n\n{table}"
        );
    }
}
