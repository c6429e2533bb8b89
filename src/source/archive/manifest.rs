//! `manifest.json`: what an archive holds and the proof that it matches the
//! source. Per table: columns with source and Arrow types, primary key,
//! DDL, row count, combined row digest; per file: size, blake3, rows and
//! row digest; and the snapshot the data was read at. Its JSON Schema is
//! `schemas/archive-manifest.schema.json`. Written last, atomically, so a
//! folder without a manifest is an archive that did not finish.

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
