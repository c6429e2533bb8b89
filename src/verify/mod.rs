//! Proving two copies of a table hold the same rows: the canonical row
//! digest ([`digest`]) and the bucketed comparison that finds every
//! difference while reading only what differs ([`buckets`]).

pub mod buckets;
pub mod digest;
