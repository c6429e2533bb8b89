//! Columns pgflare cannot read as they are (a type outside the type table,
//! or a cast Postgres refuses): each with the two ways out, worded as flags
//! for `inspect`/`archive`/`init` or as pgflare.toml keys for the commands
//! that read through a mapping, and refused all at once.

use super::table::TableInfo;
use crate::error::{Error, Result};
pub use crate::error::{FixStyle, UnsupportedColumn};

/// Refuses, at once, every column of `tables` that `used` says is read.
pub fn refuse_unsupported(
    tables: &[TableInfo],
    style: FixStyle,
    used: impl Fn(&TableInfo, &UnsupportedColumn) -> bool,
) -> Result<()> {
    let columns: Vec<UnsupportedColumn> =
        tables.iter().flat_map(|t| t.unsupported.iter().filter(|u| used(t, u)).cloned()).collect();
    if columns.is_empty() {
        return Ok(());
    }
    Err(Error::UnsupportedTypes { columns, style })
}
