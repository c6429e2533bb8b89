//! The library's error type. Every variant carries what a user needs to act:
//! the table, column and row key involved, the limit that was crossed, and a
//! hint saying what to do. Connection strings are redacted before they can
//! reach a message (see [`crate::redact`]).

use serde::Serialize;
use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Columns whose Postgres type has no mapping in [`crate::typemap`] (or
    /// whose cast Postgres refused): all of them, each with its fix.
    #[error("{}", unsupported_text(columns, *style))]
    UnsupportedTypes { columns: Vec<UnsupportedColumn>, style: FixStyle },

    /// A value that could not be decoded or does not fit its target type.
    #[error("table {table}, column {column}, row {key}: {message}\n  hint: {hint}")]
    Value { table: String, column: String, key: String, message: String, hint: String },

    /// The COPY BINARY stream itself is malformed (a bug or a protocol surprise).
    #[error("table {table}: malformed COPY BINARY stream: {message}")]
    CopyFormat { table: String, message: String },

    /// Something about the source database prevents the job.
    #[error("{message}\n  hint: {hint}")]
    Source { message: String, hint: String },

    /// A database error, with what we were doing when it happened. Shown
    /// through [`pg_message`] (Postgres's message, SQLSTATE, detail and
    /// hint); the sqlx error is not a `#[source]`, so that its own text
    /// (which adds the line of Postgres's C source) is not printed again.
    #[error("{context}: {}", pg_message(error))]
    Db { context: String, error: sqlx::Error },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },

    /// A local SQLite file (the `sqlite` target or the emulator's store).
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },

    /// The Cloudflare API (or the emulator) refused or failed a request.
    /// `what` names the request (e.g. `D1 query, chunks partition 3`), the
    /// message is Cloudflare's (for SQL errors: SQLite's), the hint says
    /// what to do. Never holds the token.
    #[error("{what}: {message}{}\n  hint: {hint}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Api { what: String, status: Option<u16>, message: String, hint: String },

    /// Invalid arguments or settings, pointing at the setting.
    #[error("{setting}: {message}")]
    Config { setting: String, message: String },

    /// Another pgflare holds what this one needs (a load's state folder):
    /// the message names the holder; the process exits with code 3.
    #[error("{0}")]
    Busy(String),

    /// A worker thread or task died; the message says which.
    #[error("internal: {0}")]
    Internal(String),
}

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
    pub(crate) fn new(table: &str, column: &str, pg_type: &str, reason: String, cast_to: &str) -> Self {
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

fn unsupported_text(columns: &[UnsupportedColumn], style: FixStyle) -> String {
    let mut out = match columns.len() {
        1 => "a column cannot be read as it is:".to_string(),
        n => format!("{n} columns cannot be read as they are:"),
    };
    for c in columns {
        out.push_str(&format!(
            "\n  table {}, column {}: {}\n    fix: {}",
            c.table,
            c.column,
            c.reason,
            c.fix(style)
        ));
    }
    out.push_str(
        "\n  hint: the README's supported-types table lists what pgflare reads; a cast reads the column \
         through Postgres's own conversion (text always works), an exclusion leaves it out",
    );
    out
}

/// What Postgres said, for people: the message and SQLSTATE, then the
/// detail and hint when there are any. Never the `at line N` sqlx adds
/// (a line of Postgres's C source) nor the statement position. Anything
/// that is not an answer from the server is sqlx's text, redacted.
pub fn pg_message(e: &sqlx::Error) -> String {
    if let sqlx::Error::Io(io) = e {
        if io.kind() == std::io::ErrorKind::TimedOut {
            // Our own bound (see source::conn): its text says it all.
            return io.to_string();
        }
    }
    let Some(db) =
        e.as_database_error().and_then(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
    else {
        return crate::redact::redact_text(&e.to_string());
    };
    let mut out = format!("{} (SQLSTATE {})", db.message(), db.code());
    if let Some(d) = db.detail() {
        out.push_str(&format!("\n  detail: {d}"));
    }
    if let Some(h) = db.hint() {
        out.push_str(&format!("\n  postgres hint: {h}"));
    }
    crate::redact::redact_text(&out)
}

impl Error {
    /// Wraps a database error with what we were doing.
    pub fn db(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
        let context = context.into();
        move |error| Error::Db { context: crate::redact::redact_text(&context), error }
    }

    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub fn sqlite(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
        let context = context.into();
        move |source| Error::Sqlite { context, source }
    }

    pub fn parquet(path: impl Into<PathBuf>) -> impl FnOnce(parquet::errors::ParquetError) -> Error {
        let path = path.into();
        move |source| Error::Parquet { path, source }
    }
}
