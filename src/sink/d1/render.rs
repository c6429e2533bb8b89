//! Rows of a batch rendered as D1 statements: the columns that go to D1,
//! in D1's order and under D1's names, packed into idempotent upserts
//! under the statement limit. Every D1 output (files, local SQLite, the
//! API) receives exactly these statements, so what the files say is what
//! the other targets run.

use std::collections::HashMap;

use arrow::record_batch::RecordBatch;

use super::links::{Link, Placeholder};
use super::sql::{PackedBytes, StatementPacker, TableSql};
use super::value::{d1_value, write_literal, D1Value};
use crate::batch::{BatchShape, TableSpec};
use crate::digest::key_display;
use crate::error::{Error, Result};

/// How one source table lands in D1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct D1Mapping {
    /// The D1 table name.
    pub table: String,
    /// Per D1 column, in order: (source column, D1 column).
    pub columns: Vec<(String, String)>,
    /// Key columns, by D1 name.
    pub key: Vec<String>,
    /// Foreign keys on a cycle (see `links`): their columns are written as
    /// a placeholder, left alone by the upsert of an existing row, and set
    /// by the link step.
    pub links: Vec<Link>,
}

impl D1Mapping {
    /// Every column under its own name, the table's own key.
    pub fn identity(spec: &TableSpec) -> Self {
        D1Mapping {
            table: spec.name.clone(),
            columns: spec.columns.iter().map(|c| (c.name.clone(), c.name.clone())).collect(),
            key: spec.primary_key.clone(),
            links: Vec::new(),
        }
    }
}

/// Mappings by qualified source table name; tables without one map as-is.
#[derive(Clone, Debug, Default)]
pub struct D1Mappings(pub HashMap<String, D1Mapping>);

impl D1Mappings {
    pub fn get(&self, spec: &TableSpec) -> D1Mapping {
        self.0.get(&spec.qualified()).cloned().unwrap_or_else(|| D1Mapping::identity(spec))
    }
}

/// Renders batches of one table.
pub struct Renderer {
    sql: TableSql,
    /// Batch column feeding each D1 column.
    source_index: Vec<usize>,
    /// Batch columns of the key, to name a row in errors.
    key_index: Vec<usize>,
    /// Per D1 column written as a placeholder: (its position, the position
    /// of the column whose value it takes, or `None` for NULL).
    placeholders: Vec<(usize, Option<usize>)>,
    max_statement_bytes: usize,
    shape: BatchShape,
}

impl Renderer {
    pub fn new(spec: &TableSpec, mapping: &D1Mapping, max_statement_bytes: usize) -> Result<Self> {
        crate::d1::check_name("table", &mapping.table)?;
        let mut source_index = Vec::new();
        let mut names = Vec::new();
        for (source, d1) in &mapping.columns {
            crate::d1::check_name("column", d1)?;
            let i = spec.columns.iter().position(|c| &c.name == source).ok_or_else(|| Error::Config {
                setting: format!("D1 columns of {}", spec.qualified()),
                message: format!("column `{source}` is not among the columns read"),
            })?;
            source_index.push(i);
            names.push(d1.clone());
        }
        let key: Vec<usize> = mapping.key.iter().filter_map(|k| names.iter().position(|n| n == k)).collect();
        if key.len() != mapping.key.len() {
            return Err(Error::Config {
                setting: format!("D1 columns of {}", spec.qualified()),
                message: format!("every key column ({}) must go to D1", mapping.key.join(", ")),
            });
        }
        let key_index = key.iter().map(|&k| source_index[k]).collect();
        let placeholders = placeholders(mapping, &names)?;
        let linked: Vec<usize> = placeholders.iter().map(|(i, _)| *i).collect();
        Ok(Renderer {
            sql: TableSql::new(&mapping.table, &names, &key, &linked),
            source_index,
            key_index,
            placeholders,
            max_statement_bytes,
            shape: BatchShape::of(spec),
        })
    }

    /// Emits the statements for every row of `batch`. Row digests are not
    /// computed here: only the files target records them (its manifest),
    /// and the other targets should not pay for them.
    pub fn render(&self, batch: &RecordBatch, emit: &mut impl FnMut(String)) -> Result<()> {
        self.shape.check(batch)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let mut packer = StatementPacker::new(&self.sql, self.max_statement_bytes);
        // One buffer holds a row's literals, reused from row to row (the
        // slices into it are a few pointers per row).
        let mut text = String::new();
        let mut bounds = Vec::with_capacity(self.source_index.len());
        for row in 0..batch.num_rows() {
            text.clear();
            bounds.clear();
            for &i in &self.source_index {
                let start = text.len();
                write_literal(batch.column(i).as_ref(), row, &mut text);
                bounds.push(start..text.len());
            }
            let mut literals: Vec<&str> = bounds.iter().map(|r| &text[r.clone()]).collect();
            for &(i, own) in &self.placeholders {
                literals[i] = match own {
                    Some(j) => &text[bounds[j].clone()],
                    None => "NULL",
                };
            }
            packer.push(&literals, &|| key_display(batch, &self.key_index, row), emit)?;
        }
        packer.flush(emit);
        Ok(())
    }
}

impl Renderer {
    /// The one-row upsert [`Renderer::bind`] binds values to.
    pub fn bound_statement(&self) -> String {
        self.sql.bound_statement()
    }

    /// Hands every row of `batch` to `run` as the values the statements of
    /// [`Renderer::render`] hold (placeholders included), in D1 column
    /// order, with a way to name the row. No SQL text is written or parsed:
    /// the `sqlite` target binds them to [`Renderer::bound_statement`]. A
    /// row too long for one statement, which the files write in pieces,
    /// goes through the packer first so that it is refused exactly where
    /// the files refuse it. Returns the bytes the files' statements for the
    /// batch would take (what the sink reports).
    pub fn bind(&self, batch: &RecordBatch, run: &mut RunRow<'_>) -> Result<u64> {
        self.shape.check(batch)?;
        let mut bytes = PackedBytes::new(&self.sql, self.max_statement_bytes);
        let mut values: Vec<D1Value<'_>> = Vec::with_capacity(self.source_index.len());
        for row in 0..batch.num_rows() {
            values.clear();
            values.extend(self.source_index.iter().map(|&i| d1_value(batch.column(i).as_ref(), row)));
            for &(i, own) in &self.placeholders {
                values[i] = match own {
                    Some(j) => values[j].clone(),
                    None => D1Value::Null,
                };
            }
            let key = || key_display(batch, &self.key_index, row);
            let tuple_len = 2 + values.iter().map(|v| v.literal_len() + 2).sum::<usize>();
            if !bytes.push(tuple_len, values.len()) {
                let literals: Vec<String> = values.iter().map(D1Value::literal).collect();
                let mut packer = StatementPacker::new(&self.sql, self.max_statement_bytes);
                let mut pieces = 0;
                packer.push(&literals, &key, &mut |s| pieces += s.len())?;
                packer.flush(&mut |s| pieces += s.len());
                bytes.pieces(pieces);
            }
            run(&values, &key)?;
        }
        Ok(bytes.finish())
    }
}

/// What [`Renderer::bind`] hands each row to: its values and a way to
/// name it (for errors).
pub type RunRow<'r> = dyn FnMut(&[D1Value<'_>], &dyn Fn() -> String) -> Result<()> + 'r;

/// The D1 columns of `mapping`'s links and what each is first written as.
fn placeholders(mapping: &D1Mapping, names: &[String]) -> Result<Vec<(usize, Option<usize>)>> {
    let position = |c: &String| {
        names.iter().position(|n| n == c).ok_or_else(|| {
            Error::Internal(format!("D1 table {}: link column {c} is not among its columns", mapping.table))
        })
    };
    let mut out: Vec<(usize, Option<usize>)> = Vec::new();
    for link in &mapping.links {
        for &i in &link.set {
            let at = position(&link.columns[i])?;
            let own = match link.placeholder {
                Placeholder::Own => Some(position(&link.ref_columns[i])?),
                Placeholder::Null => None,
            };
            match out.iter_mut().find(|(p, _)| *p == at) {
                // A column in two links: NULL satisfies both.
                Some(existing) if existing.1 != own => existing.1 = None,
                Some(_) => {}
                None => out.push((at, own)),
            }
        }
    }
    Ok(out)
}
