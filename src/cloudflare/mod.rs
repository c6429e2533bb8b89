//! Cloudflare's side of the migration: the documented D1 and Vectorize
//! limits ([`limits`]), and the REST client every request goes through
//! ([`client`]) with its one retry policy ([`retry`]), request budget
//! ([`ratelimit`]), what a failure means ([`failure`]), bounds on silence rather than on size ([`transfer`])
//! and visible waits ([`wait`]); [`d1`] speaks the D1 database API and [`vectorize`] the
//! Vectorize index API.

pub mod client;
pub mod d1;
mod d1_transfer;
mod failure;
pub mod limits;
pub mod ratelimit;
pub mod retry;
mod transfer;
pub mod vectorize;
pub mod vectorize_filter;
mod wait;

pub use client::{Api, ApiSettings};
pub use d1::D1;
pub use vectorize::Vectorize;
