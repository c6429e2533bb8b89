//! Postgres as a sink, for `restore --target postgres`: Arrow batches
//! encoded as `COPY ... FROM STDIN (FORMAT binary)` rows ([`encode`], the
//! inverse of `source::decode`), one COPY per partition in a transaction
//! that also records it ([`copy`], [`ledger`]), and the tables, keys and
//! indexes rebuilt from an archive's manifest ([`schema`]).

pub mod copy;
pub mod encode;
pub mod ledger;
pub mod schema;
