//! `manifest.json`: what an archive holds and the proof that it matches the
//! source. Per table: columns with source and Arrow types, primary key,
//! DDL, row count, combined row digest; per file: size, blake3, rows and
//! row digest; and the snapshot the data was read at. Its JSON Schema is
//! `schemas/archive-manifest.schema.json`. Written last, atomically, so a
//! folder without a manifest is an archive that did not finish.
//!
//! An archive of Cloudflare's side (`archive --from cloudflare`) has the
//! same form: its tables are the source's, restricted to the columns D1
//! holds (the others named in `omitted_columns`) plus the vector column
//! rebuilt from Vectorize; [`CloudflareRead`] says which D1 database and
//! Vectorize index were read, at which bookmark and mutation; `snapshot`
//! holds what a Postgres read point and a D1 one share (`id` is the D1
//! bookmark, `taken_at` when D1 was read; the Postgres-only fields are
//! empty); and the vectors no row can hold are a side table.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::batch::sink::FileReport;
use crate::batch::TableSpec;
use crate::error::{Error, Result};
use crate::source::table::Constraint;
use crate::source::SnapshotInfo;

pub const FORMAT: &str = "pgflare-archive";
pub const FORMAT_VERSION: u32 = 1;
pub const FILE_NAME: &str = "manifest.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub pgflare_version: String,
    /// When the archive finished, UTC, RFC 3339.
    pub created_at: String,
    pub source: SourceInfo,
    pub snapshot: SnapshotInfo,
    pub digest: DigestInfo,
    pub tables: Vec<ManifestTable>,
    /// Tables that are not the source's: in an archive of Cloudflare, the
    /// vectors no archived row holds as they are (`_vectorize`). `archive
    /// verify` checks their files like the others; they are never
    /// restored nor compared with the source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub side_tables: Vec<ManifestTable>,
    /// Set when the archive was read from Cloudflare, not Postgres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare: Option<CloudflareRead>,
}

/// Where and when an archive of Cloudflare's side was read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudflareRead {
    pub d1: D1Read,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vectorize: Option<VectorizeRead>,
    /// Where the tables' definitions (names, types, keys, DDL) came from:
    /// the source Postgres (URL, password masked) or a Postgres archive.
    pub definitions: String,
    /// What a reader should know (writes during the read, NULLs where the
    /// source allows none, vectors set aside).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The D1 side of [`CloudflareRead`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct D1Read {
    /// The database over the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_name: Option<String>,
    /// A local D1 file instead (wrangler's local state, the `sqlite` target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite_file: Option<String>,
    /// How the rows were read: `export` (D1's export API), `queries`
    /// (paged queries, when the export was refused) or `file`.
    pub read_by: String,
    /// The Time Travel bookmark before and after the read, and the
    /// export's own (`at_bookmark`, the state its dump holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bookmark_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bookmark_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_bookmark: Option<String>,
    /// When the read began, UTC (this machine's clock).
    pub read_at: String,
    pub sqlite_version: String,
}

/// The Vectorize side of [`CloudflareRead`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VectorizeRead {
    pub index: String,
    pub dimensions: u32,
    pub metric: String,
    /// The index's `info` before and after the read: when
    /// `processedUpToMutation` moved, writes were applied during it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutation_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutation_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_up_to: Option<String>,
    /// Ids listed, vectors fetched, and listed ids gone before their fetch.
    pub listed: u64,
    pub fetched: u64,
    pub vanished: u64,
    /// Vectors whose values went into their row's vector column.
    pub in_rows: u64,
    /// Vectors kept in the side table, by reason (`no_row`,
    /// `namespace_differs`, `metadata_differs`, `values_differ`).
    #[serde(default)]
    pub set_aside: std::collections::BTreeMap<String, u64>,
    /// Archived rows of the vector table without a vector in the index.
    pub rows_without_vector: u64,
    /// When the listing began, UTC.
    pub read_at: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The connection URL with the password masked.
    pub url: String,
    pub server_version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DigestInfo {
    pub hash: String,
    pub row_encoding: String,
    pub combine: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestTable {
    #[serde(flatten)]
    pub spec: TableSpec,
    /// Arrow type of each column in the files, in column order, as Arrow
    /// prints it.
    pub arrow_types: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
    /// Combined digest of all rows (hex).
    pub row_digest: String,
    pub files: Vec<FileReport>,
    pub constraints: Vec<Constraint>,
    pub indexes: Vec<String>,
    pub ddl: String,
    /// Source columns the archive does not hold (an archive of Cloudflare:
    /// the columns D1 does not have); `ddl` still defines them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omitted_columns: Vec<String>,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Manifest {
            path: path.clone(),
            message: format!("cannot read it ({e}); an archive without a manifest did not finish: run `pgflare archive` again"),
        })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| Error::Manifest {
            path: path.clone(),
            message: format!("not a pgflare manifest: {e}"),
        })?;
        if m.format != FORMAT || m.format_version > FORMAT_VERSION {
            return Err(Error::Manifest {
                path,
                message: format!(
                    "format {} v{} is not one this pgflare reads ({FORMAT} v{FORMAT_VERSION}); use a newer pgflare",
                    m.format, m.format_version
                ),
            });
        }
        Ok(m)
    }

    /// Writes the manifest through a temporary file and a rename.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE_NAME);
        let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(&tmp, text + "\n").map_err(Error::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(Error::io(&path))?;
        Ok(())
    }
}
