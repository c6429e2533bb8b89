//! Postgres as a sink, for `restore --target postgres`: Arrow batches
//! encoded as `COPY ... FROM STDIN (FORMAT binary)` rows ([`encode`], the
//! inverse of the source's decoder [`crate::source::decode`], so a restore
//! puts back the same bits the archive read), one COPY per partition in a
//! transaction that also records it ([`copy`], [`ledger`]), and the
//! tables, keys and indexes rebuilt from an archive's manifest
//! ([`schema`]).

pub mod copy;
pub mod encode;
pub mod ledger;
pub mod schema;
