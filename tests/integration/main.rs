//! The one integration-test binary: every test runs the real binaries
//! against a real Postgres with pgvector (started by `scripts/test.sh`) and
//! checks outputs with independent readers (pyarrow, psycopg, jsonschema).

#[path = "../common/mod.rs"]
mod common;

mod archive;
mod archive_cloudflare;
mod archive_exclusions;
mod ci_examples;
mod config;
mod consistency;
mod contract;
mod d1_files;
mod doctor;
mod emulator;
mod emulator_vectorize;
mod exact_ints;
mod fk_cycles;
mod follow;
mod guards;
mod inspect;
mod load;
mod load_api;
mod load_guards;
mod load_vectorize;
mod messages;
mod migration_actions;
mod partitioned;
mod pg_copy_in;
mod query_shapes;
mod realistic_api;
mod reconcile;
mod restore;
mod restore_postgres;
mod same_bytes;
mod secrets;
mod shipping;
mod soft_delete;
mod sync;
mod sync_changes;
mod sync_index;
mod sync_limits;
mod sync_vectors;
mod timeouts;
mod transport;
mod upgrade;
mod vector_metadata;
mod vectorize_client;
mod verify_budget;
mod verify_cmd;
mod verify_d1;
mod verify_report;
mod verify_skipped;
mod wrangler;
mod zoo;
