//! The Vectorize sink: a table's vector column, id and metadata columns as
//! Vectorize NDJSON lines ([`ndjson`]), written as files that `wrangler
//! vectorize upsert --file` takes unchanged ([`files`]) or upserted through
//! the REST API ([`api`]). Rows Vectorize would refuse are caught here,
//! before any request, and either stop the load or are skipped and named
//! in the summary, as the configuration says.

pub mod api;
pub mod files;
pub mod flatten;
pub mod json_path;
pub mod metadata;
pub mod ndjson;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::batch::TableSpec;
use crate::config::project::OnInvalid;
use crate::sink::FileReport;

/// How one source table feeds Vectorize (source column names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VectorMapping {
    pub vector: String,
    pub id: String,
    pub namespace: Option<String>,
    /// Whole columns; metadata keys are the column names.
    pub metadata: Vec<String>,
    /// JSON paths and spread json columns (top-level properties).
    pub json: metadata::JsonMetadata,
    /// The dimension every vector must have (the index's or the column's).
    pub dims: Option<u32>,
    pub on_invalid: OnInvalid,
}

/// Mappings by qualified source table name; tables without one send nothing.
#[derive(Clone, Debug, Default)]
pub struct VectorMappings(pub HashMap<String, VectorMapping>);

impl VectorMappings {
    pub fn get(&self, spec: &TableSpec) -> Option<&VectorMapping> {
        self.0.get(&spec.qualified())
    }
}

impl VectorMapping {
    /// Every source column the vectors are made from.
    pub fn columns(&self) -> Vec<&String> {
        let mut out: Vec<&String> =
            [&self.vector, &self.id].into_iter().chain(self.namespace.iter()).collect();
        out.extend(&self.metadata);
        out.extend(self.json.columns());
        out
    }
}

/// A row whose vector was left out (policy `skip`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The row's key, `col=value`.
    pub key: String,
    pub column: String,
    /// The JSON path inside `column` at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub reason: String,
}

impl Rejected {
    /// `column meta, path meta.loc: reason`.
    pub fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("column {}, path {p}: {}", self.column, self.reason),
            None => format!("column {}: {}", self.column, self.reason),
        }
    }
}

/// Metadata values left out from one JSON path for one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Omitted {
    pub path: String,
    pub reason: String,
    /// Values left out (one per vector).
    pub count: u64,
    /// The key of one row it happened to.
    pub example: String,
}

/// Rejected rows named per partition; the count has them all.
pub const MAX_NAMED_REJECTS: usize = 20;

/// Distinct (path, reason) pairs of omitted metadata listed; the total
/// counts them all.
pub const MAX_NAMED_OMISSIONS: usize = 20;

/// What a Vectorize sink did for one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorReport {
    /// Vectors written (lines in files, or vectors upserted).
    pub written: u64,
    /// Rows whose vector is NULL: no line, counted.
    pub null: u64,
    /// Rows refused by a Vectorize rule and skipped.
    pub skipped: u64,
    /// NDJSON bytes written or sent.
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileReport>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
    /// Metadata values left out of written vectors (JSON that does not
    /// fit Vectorize, or left out by the mapping).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub metadata_omitted: u64,
    /// Where and why, per (path, reason), the first [`MAX_NAMED_OMISSIONS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omissions: Vec<Omitted>,
    /// The last write to wait for before the partition counts as done
    /// (see `cloudflare::vectorize`); never stored.
    #[serde(skip)]
    pub pending_write: Option<u64>,
}

impl VectorReport {
    pub fn is_empty(&self) -> bool {
        *self == VectorReport::default()
    }

    pub fn merge(&mut self, other: VectorReport) {
        self.written += other.written;
        self.null += other.null;
        self.skipped += other.skipped;
        self.bytes += other.bytes;
        self.files.extend(other.files);
        for r in other.rejected {
            if self.rejected.len() < MAX_NAMED_REJECTS {
                self.rejected.push(r);
            }
        }
        self.metadata_omitted += other.metadata_omitted;
        for o in other.omissions {
            self.count_omission(o);
        }
        self.pending_write = self.pending_write.max(other.pending_write);
    }

    /// Adds `o` to its (path, reason) entry, or a new one while there is room.
    pub fn count_omission(&mut self, o: Omitted) {
        match self.omissions.iter().position(|x| x.path == o.path && x.reason == o.reason) {
            Some(i) => self.omissions[i].count += o.count,
            None if self.omissions.len() < MAX_NAMED_OMISSIONS => self.omissions.push(o),
            None => {}
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why `key` cannot be a Vectorize metadata key, if it cannot.
pub fn check_metadata_key(key: &str) -> std::result::Result<(), &'static str> {
    if key.is_empty() {
        Err("metadata keys may not be empty")
    } else if key.contains('.') {
        Err("metadata keys may not contain `.`")
    } else if key.contains('"') {
        Err("metadata keys may not contain `\"`")
    } else if key.starts_with('$') {
        Err("metadata keys may not start with `$`")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
