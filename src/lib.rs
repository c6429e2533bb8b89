//! pgflare moves a retrieval service's data from Postgres + pgvector to
//! Cloudflare D1 and Vectorize, keeps them in step, proves they match, and
//! archives the source to Parquet. The data flows one way:
//!
//! ```text
//! Postgres (one exported snapshot)
//!   └─ partitions (key ranges) ──► COPY BINARY ──► Arrow RecordBatch ──► sinks
//!        N workers                  decoder         (TableBatch)          ├─ Parquet archive + manifest
//!                                                                         ├─ D1 (files, sqlite, api)
//!                                                                         └─ Vectorize (NDJSON, api)
//! verify: rows ─► canonical row digest ─► bucket sums ─► drill down ─► report
//! ```
//!
//! - [`source`]: catalog, snapshot, partitions, COPY BINARY decoding, pgvector;
//! - [`typemap`]: the one type table (Postgres -> Arrow -> D1 -> JSON);
//! - [`batch`]: what travels (`TableSpec`, `TableBatch`);
//! - [`sink`]: the shape every writer shares;
//! - [`archive`]: the Parquet sink, the manifest, archive verification;
//! - [`verify`]: the canonical row digest and bucketed comparison;
//! - [`d1`]: what every speaker of D1's SQL shares (the statement splitter);
//! - [`cloudflare`]: the D1 and Vectorize clients, their limits, retries;
//! - [`doctor`]: read-only checks of a project's settings, source and account;
//! - [`cli`], [`config`], [`commands`]: the command line on top.

// Output goes through `commands::output` (`outln!`, `errln!`), which ends
// quietly on a closed pipe (`pgflare inspect | head`) where `println!`
// panics; the lint keeps every new line of output on that path.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod archive;
pub mod batch;
pub mod cli;
pub mod cloudflare;
pub mod commands;
pub mod config;
pub mod d1;
pub mod digest;
pub mod doctor;
pub mod emulator;
pub mod error;
pub mod holder;
pub mod load;
pub(crate) mod output;
pub mod plan;
pub mod progress;
pub mod redact;
pub mod seed;
pub mod sink;
pub mod source;
pub mod state;
pub mod sync;
pub mod timeouts;
pub mod typemap;
pub mod verify;

pub use error::{Error, Result};
