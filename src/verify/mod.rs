//! The `verify` job: proving D1 and Vectorize hold the source's data. It
//! runs the bucket engine of [`crate::digest`] over both sides (D1 read
//! back by [`crate::d1::read`]), classifies the rows of differing buckets
//! ([`compare`]), compares vectors ([`vectors`]) and query results
//! ([`parity`]; the service's own query shapes in [`queries`]), and writes the report ([`report`]) in its Markdown and
//! self-contained HTML forms ([`render`]).

pub mod compare;
pub mod parity;
pub mod pending;
pub mod queries;
pub mod render;
pub mod report;
pub mod run;
pub mod run_vectors;
pub mod since;
pub mod value_check;
pub mod vectors;
