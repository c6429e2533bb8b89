//! The D1 sink: rows rendered as D1 stores them ([`value`]), packed into
//! idempotent upsert statements under D1's limits ([`sql`]), the D1 table
//! definitions ([`schema`]), the targets ([`files`], [`sqlite`], [`api`]),
//! and foreign keys on a cycle, written after the rows ([`links`]).

pub mod api;
pub mod files;
pub mod link_spool;
pub mod link_sql;
pub mod linker;
pub mod links;
pub mod migration;
pub mod render;
pub mod schema;
pub mod sql;
pub mod sqlite;
pub mod value;

pub use files::D1FilesConfig;
