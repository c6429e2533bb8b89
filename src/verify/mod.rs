//! Proving two copies of a table hold the same rows: the canonical row
//! digest ([`digest`]), the bucketed comparison that finds every
//! difference while reading only what differs ([`buckets`]), and D1 rows
//! read back into the source's types so the digest applies to them
//! ([`d1_read`]); the report `pgflare verify` writes ([`report`]).

pub mod buckets;
pub mod d1_read;
pub mod digest;
pub mod report;
