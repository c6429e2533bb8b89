//! The sinks: where batches go. [`d1`] writes rows as D1 SQL, SQLite or
//! API imports, [`vectorize`] writes vectors as NDJSON or API upserts,
//! [`file`] the rolled output files both use, and [`tee`] feeds several
//! sinks from one read; [`postgres`] encodes batches for Postgres's COPY
//! FROM, for a restore into Postgres. Every sink implements the contract in
//! [`crate::batch::sink`]; [`compliance`] checks that each one keeps it.

pub mod d1;
pub mod file;
pub mod postgres;
pub mod recorded;
pub mod tee;
pub mod vectorize;

#[cfg(test)]
mod compliance;
#[cfg(test)]
pub(crate) mod test_table;
