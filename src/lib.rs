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
//! The tree shows who may use whom (`scripts/deps.py` checks it): jobs
//! are leaves over a shared middle and never import one another, and no
//! two folders or files (outside the emulator) need each other.
//!
//! - jobs: [`load`], [`sync`], [`verify`], [`archive`], [`init`],
//!   [`doctor`]; each one's `run` reads as its steps;
//! - the middle they share: [`plan`] (command line + environment +
//!   pgflare.toml -> the opening every job shares, the D1 and vector
//!   targets, prepared tables, which rows are live, D1 access), [`state`]
//!   (checkpoint, fingerprints, store and lease, bucket sums, vector
//!   records, changes since), [`digest`] (the canonical row and vector
//!   digests, the bucket engine and its passes), [`d1`] (D1's float rule,
//!   reserved names, statement splitter, read-back of D1 rows), [`config`]
//!   (the configuration files and the mappings they define);
//! - the data path: [`source`] (catalog, snapshot, partitions, COPY BINARY
//!   decoding, pgvector) -> [`batch`] (`TableSpec`, `TableBatch`, and the
//!   sink contract in [`batch::sink`]) -> [`sink`] (D1, Vectorize, the
//!   rolled files, the one recording wrapper);
//! - [`typemap`]: the one type table (Postgres -> Arrow -> D1 -> JSON);
//! - [`cloudflare`]: the D1 and Vectorize clients, their limits, retries;
//! - [`cli`], [`commands`]: the command line on top (parse, call a job,
//!   print); [`emulator`]: the local Cloudflare API.

// Output goes through `output` (`outln!`, `errln!`), which ends
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
pub mod init;
pub mod load;
pub(crate) mod output;
pub mod plan;
pub mod progress;
pub mod reconcile;
pub mod redact;
pub mod restore;
pub mod seed;
pub mod sink;
pub mod source;
pub mod state;
pub mod sync;
pub mod timeouts;
pub mod typemap;
pub mod verify;

pub use error::{Error, Result};
