//! A source table as introspection describes it ([`TableInfo`]): the spec
//! pgflare moves, its size, constraints in text and structured form, and
//! the columns it cannot read. Its own file so that the parts that explain
//! a table (unsupported columns, the D1 migration) need not reach into the
//! catalog queries.

use serde::{Deserialize, Serialize};

use super::constraints::{ForeignKey, Index, SkippedIndex};
use crate::batch::TableSpec;
use crate::error::UnsupportedColumn;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub name: String,
    /// `p` primary key, `u` unique, `f` foreign key, `c` check, `x` exclusion.
    pub kind: String,
    pub definition: String,
}

/// A table with everything `inspect` and `archive` report about it.
#[derive(Clone, Debug, Serialize)]
pub struct TableInfo {
    #[serde(flatten)]
    pub spec: TableSpec,
    /// `pg_class.reltuples`; None when the table was never analyzed.
    pub row_estimate: Option<u64>,
    pub total_bytes: i64,
    pub constraints: Vec<Constraint>,
    pub indexes: Vec<String>,
    pub ddl: String,
    /// Structured forms of the above, for the D1 migration.
    pub foreign_keys: Vec<ForeignKey>,
    /// Column lists of UNIQUE constraints.
    pub unique_keys: Vec<Vec<String>>,
    /// Plain b-tree indexes (not backing a constraint).
    pub btree_indexes: Vec<Index>,
    /// Indexes that have no SQLite form (HNSW, GIN, expression, partial).
    pub skipped_indexes: Vec<SkippedIndex>,
    /// Columns that cannot be read as they are (left out of `spec`); a
    /// command that reads them refuses with all of them at once.
    pub unsupported: Vec<UnsupportedColumn>,
}
