//! The Vectorize sink: a table's vector column, id and metadata columns as
//! Vectorize NDJSON lines ([`ndjson`]), written as files that `wrangler
//! vectorize upsert --file` takes unchanged ([`files`]) or upserted through
//! the REST API ([`api`]). Rows Vectorize would refuse are caught here,
//! before any request, and either stop the load or are skipped and named
//! in the summary, as the configuration says.

pub mod api;
pub mod files;
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
    /// Metadata keys are the column names.
    pub metadata: Vec<String>,
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

/// A row whose vector was left out (policy `skip`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The row's key, `col=value`.
    pub key: String,
    pub column: String,
    pub reason: String,
}

/// Rejected rows named per partition; the count has them all.
pub const MAX_NAMED_REJECTS: usize = 20;

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
        self.pending_write = self.pending_write.max(other.pending_write);
    }
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
