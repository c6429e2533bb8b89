//! What travels from the source to the sinks: a [`TableSpec`] describing a
//! table as pgflare will move it (columns already resolved through the type
//! table), and [`TableBatch`], an Arrow record batch of that table's rows.

/// Bytes of row data at which a batch is cut, read from Postgres or from a
/// D1 file. Measured on 20,000 x 1536 vectors: 2 MiB batches ran 20%
/// faster and in half the memory of 16 MiB ones (fewer page faults: the
/// allocator reuses small buffers).
pub const BATCH_BYTES: usize = 2 << 20;

pub mod collect;
pub mod sink;

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::typemap::ColumnType;

/// One column as pgflare moves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    /// The source type as Postgres spells it (`format_type`), e.g. `vector(1536)`.
    pub pg_type: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    pub nullable: bool,
    /// Set when the user asked to read the column through a cast
    /// (`--cast TABLE.COLUMN=TYPE`): the SQL type it is cast to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cast: Option<String>,
}

/// A source table as pgflare moves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnSpec>,
    /// Primary-key column names in key order; empty when the table has none.
    pub primary_key: Vec<String>,
}

impl TableSpec {
    /// `schema.name`, as users write it.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `"schema"."name"`, safe to splice into SQL.
    pub fn sql_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// The folder/file stem used for this table in outputs: the bare name
    /// for `public`, `schema.name` otherwise.
    /// Characters a file name cannot hold (`/`, `\\`, control characters)
    /// become `_`, so no table name can point outside the output folder.
    pub fn file_stem(&self) -> String {
        let raw = if self.schema == "public" { self.name.clone() } else { self.qualified() };
        let safe: String =
            raw.chars().map(|c| if c == '/' || c == '\\' || c.is_control() { '_' } else { c }).collect();
        if safe.is_empty() || safe.chars().all(|c| c == '.') {
            format!("_{safe}")
        } else {
            safe
        }
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns.iter().map(|c| c.ty.arrow_field(&c.name, c.nullable)).collect::<Vec<_>>(),
        ))
    }

    /// Positions of the primary-key columns in `columns`.
    pub fn key_indices(&self) -> Vec<usize> {
        self.primary_key.iter().filter_map(|k| self.columns.iter().position(|c| &c.name == k)).collect()
    }

    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// A batch of rows of one table, from one partition of the source.
#[derive(Clone, Debug)]
pub struct TableBatch {
    pub table: Arc<TableSpec>,
    pub partition: usize,
    pub batch: RecordBatch,
}

/// What a sink takes its batches to be: the table's columns, in order, of
/// their types. Sinks find a value by its column's position in the spec,
/// so a batch of another shape would land in the wrong columns or panic;
/// [`BatchShape::check`] refuses it first. Only a pgflare bug can make
/// one (the reader builds batches from the spec).
#[derive(Clone, Debug)]
pub struct BatchShape {
    table: String,
    schema: SchemaRef,
}

impl BatchShape {
    pub fn of(spec: &TableSpec) -> Self {
        BatchShape { table: spec.qualified(), schema: spec.arrow_schema() }
    }

    pub fn check(&self, batch: &RecordBatch) -> Result<()> {
        let want = self.schema.fields();
        let got = batch.schema_ref().fields();
        let same = want.len() == got.len()
            && want
                .iter()
                .zip(got)
                .all(|(w, g)| w.name() == g.name() && w.data_type().equals_datatype(g.data_type()));
        if same {
            return Ok(());
        }
        let list = |f: &arrow::datatypes::Fields| {
            f.iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ")
        };
        Err(Error::Internal(format!(
            "table {}: a batch of ({}) reached a sink of ({})",
            self.table,
            list(got),
            list(want)
        )))
    }
}

/// Quotes an SQL identifier the way Postgres and SQLite both accept:
/// double quotes, embedded double quotes doubled.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Quotes an SQL string literal (standard_conforming_strings, which both
/// Postgres and SQLite use): single quotes, embedded single quotes doubled.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn file_stems_stay_inside_the_output_folder() {
        let t = |schema: &str, name: &str| TableSpec {
            schema: schema.into(),
            name: name.into(),
            columns: vec![],
            primary_key: vec![],
        };
        assert_eq!(t("public", "chunks").file_stem(), "chunks");
        assert_eq!(t("rag", "chunks").file_stem(), "rag.chunks");
        assert_eq!(t("public", "../../etc").file_stem(), ".._.._etc");
        assert_eq!(t("public", "..").file_stem(), "_..");
        assert_eq!(t("public", "a\\b\n").file_stem(), "a_b_");
    }

    proptest! {
        // Unquoting what we quoted gives the input back, and the quoted form
        // has no lone quote a parser could end the token at.
        #[test]
        fn literal_quoting_round_trips(s in any::<String>()) {
            let q = quote_literal(&s);
            prop_assert!(q.starts_with('\'') && q.ends_with('\''));
            let inner = &q[1..q.len() - 1];
            prop_assert_eq!(inner.replace("''", "'"), s);
            prop_assert!(!inner.replace("''", "").contains('\''));
        }

        #[test]
        fn ident_quoting_round_trips(s in any::<String>()) {
            let q = quote_ident(&s);
            let inner = &q[1..q.len() - 1];
            prop_assert_eq!(inner.replace("\"\"", "\""), s);
            prop_assert!(!inner.replace("\"\"", "").contains('"'));
        }
    }
}
