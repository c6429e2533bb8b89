//! The D1 sink: rows rendered as D1 stores them ([`value`]), packed into
//! idempotent upsert statements under D1's limits ([`sql`]), other
//! statements over lists of keys under the same limits ([`list`]), the D1
//! table definitions ([`schema`]), the targets ([`files`], [`sqlite`],
//! [`api`]), foreign keys on a cycle, written after the rows ([`links`]),
//! and values read back from the API exactly ([`exact`]).

pub mod api;
pub mod copy;
pub mod exact;
pub mod files;
pub mod link_spool;
pub mod link_sql;
pub mod linker;
pub mod links;
pub mod list;
pub mod migration;
pub mod render;
pub mod schema;
pub mod sql;
pub mod sqlite;
pub mod value;

pub use files::D1FilesConfig;
