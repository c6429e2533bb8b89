//! `[[queries]]` in pgflare.toml: the service's retrieval as `verify`
//! replays it on both stacks. A query shape names the vector table, k, the
//! columns returned as context, and each filter twice: on the source side
//! (a column, an operator Postgres evaluates) and on the Vectorize side
//! (which layout carries it: a metadata property, flags, the namespace, or
//! a post-filter over a larger topK). Checked like the rest of the file:
//! [`super::queries_check`] reads and checks them; this file holds the types.
//!
//! ```toml
//! [[queries]]
//! name = "tagged"
//! table = "chunks"
//! k = 5
//! context = ["content"]
//! filters = [{ column = "tags", op = "overlap", vectorize = "flags" }]
//! ```

use serde::{Deserialize, Serialize};

/// The source side of a filter: what Postgres evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterOp {
    Eq,
    Ne,
    In,
    Lt,
    Lte,
    Gt,
    Gte,
    /// `column && values` (arrays share a value).
    Overlap,
    /// `column @> values` (the array holds every value).
    Contains,
}

impl FilterOp {
    /// Whether the operator applies to an array column (and its value is a list).
    pub fn on_arrays(self) -> bool {
        matches!(self, FilterOp::Overlap | FilterOp::Contains)
    }

    /// Whether the filter value is a list of values.
    pub fn takes_list(self) -> bool {
        self.on_arrays() || self == FilterOp::In
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FilterOp::Eq => "eq",
            FilterOp::Ne => "ne",
            FilterOp::In => "in",
            FilterOp::Lt => "lt",
            FilterOp::Lte => "lte",
            FilterOp::Gt => "gt",
            FilterOp::Gte => "gte",
            FilterOp::Overlap => "overlap",
            FilterOp::Contains => "contains",
        }
    }
}

/// The Vectorize side of a filter: the layout that carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterForm {
    /// A metadata property with a metadata index (`$eq`, `$in`, ...).
    Property,
    /// `vector_metadata_flags`: one boolean property per value.
    Flags,
    /// The vector's namespace is the column's value.
    Namespace,
    /// No Vectorize filter: the answer's D1 rows are filtered afterwards.
    Post,
}

impl FilterForm {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterForm::Property => "property",
            FilterForm::Flags => "flags",
            FilterForm::Namespace => "namespace",
            FilterForm::Post => "post",
        }
    }
}

/// A checked query shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueryShape {
    /// Where it is in the file, for messages (`pgflare.toml: queries[0]`).
    #[serde(skip)]
    pub setting: String,
    pub name: String,
    pub schema: String,
    pub table: String,
    pub k: usize,
    /// The topK Vectorize is asked for (>= k; larger for post-filters).
    pub top_k: usize,
    pub context: Vec<String>,
    pub filters: Vec<QueryFilter>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueryFilter {
    pub column: String,
    pub op: FilterOp,
    pub vectorize: FilterForm,
    /// The metadata property a `property` filter uses (default: the column).
    pub property: String,
}

impl QueryShape {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}
