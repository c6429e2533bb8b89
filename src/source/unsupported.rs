//! Columns pgflare cannot read as they are (a type outside the type table,
//! or a cast Postgres refuses): each with the two ways out, worded as flags
//! for `inspect`/`archive`/`init` or as pgflare.toml keys for the commands
//! that read through a mapping, and refused all at once.

use serde::Serialize;

use super::introspect::TableInfo;
use crate::error::{Error, Result};

/// A column pgflare cannot read as it is, and the two ways out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnsupportedColumn {
    /// `schema.table`.
    pub table: String,
    pub column: String,
    pub pg_type: String,
    /// e.g. "type `interval` is not supported".
    pub reason: String,
    /// The type to read it as instead (e.g. `text`).
    pub cast_to: String,
    /// The fixes as flags: `--cast spans.took=text`, `--exclude spans.took`.
    pub cast: String,
    pub exclude: String,
}

/// How a refusal words its fixes: as flags (`inspect`, `archive`, `init`)
/// or as pgflare.toml keys (`load`, `verify`, `sync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixStyle {
    Flags,
    Config,
}

impl UnsupportedColumn {
    pub(super) fn new(table: &str, column: &str, pg_type: &str, reason: String, cast_to: &str) -> Self {
        let short = table.rsplit('.').next().unwrap_or(table);
        UnsupportedColumn {
            table: table.into(),
            column: column.into(),
            pg_type: pg_type.into(),
            reason,
            cast_to: cast_to.into(),
            cast: format!("--cast {short}.{column}={cast_to}"),
            exclude: format!("--exclude {short}.{column}"),
        }
    }

    /// The fix in the words of the command that refuses.
    pub fn fix(&self, style: FixStyle) -> String {
        let short = self.table.rsplit('.').next().unwrap_or(&self.table);
        match style {
            FixStyle::Flags => format!("{} or {}", self.cast, self.exclude),
            FixStyle::Config => format!(
                "in pgflare.toml's [[tables]] entry `{short}`, casts = {{ {} = \"{}\" }}, or leave it out of d1_columns",
                self.column, self.cast_to
            ),
        }
    }
}

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
