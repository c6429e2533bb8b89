//! Cloudflare's side of the migration: the documented D1 and Vectorize
//! limits ([`limits`]), and the REST client every request goes through
//! ([`client`]) with its one retry policy ([`retry`]) and request budget
//! ([`ratelimit`]); [`d1`] speaks the D1 database API and [`vectorize`] the
//! Vectorize index API.

pub mod client;
pub mod d1;
mod d1_transfer;
pub mod limits;
pub mod ratelimit;
pub mod retry;
pub mod vectorize;

pub use client::{Api, ApiSettings};
pub use d1::D1;
pub use vectorize::Vectorize;
