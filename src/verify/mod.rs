//! Proving two copies of a table hold the same rows: the canonical row
//! digest ([`digest`]), the bucketed comparison that finds every
//! difference while reading only what differs ([`buckets`]), and D1 rows
//! read back into the source's types so the digest applies to them
//! ([`d1_read`]); the report `pgflare verify` writes ([`report`]), and
//! its Markdown and self-contained HTML forms ([`render`]).

pub mod buckets;
pub mod compare;
pub mod d1_export;
mod d1_floats;
pub mod d1_read;
pub mod digest;
pub mod parity;
pub mod pending;
pub mod render;
pub mod report;
pub mod run;
pub mod vectors;

#[cfg(test)]
mod digest_vectors;
