//! Command-line definitions (clap). Only argument shapes and help text live
//! here; validation into a plan happens in `config`, work in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod archive;
mod doctor;
mod emulate;
mod groups;
#[cfg(test)]
mod help_tests;
mod reconcile;
mod restore;
mod shell;
mod sync;
mod verify;
pub use archive::{ArchiveArgs, ArchiveCommand, ArchiveFrom, ArchiveSub};
pub use doctor::DoctorArgs;
pub use emulate::EmulateArgs;
pub use groups::{
    CloudflareArgs, D1PlaceArgs, D1TargetArgs, ProjectArgs, SourceArgs, TargetKind, TuningArgs, VectorArgs,
    VectorizeMode,
};
pub use reconcile::{ReconcileArgs, ReconcileInto};
pub use restore::{PostgresTargetArgs, RestoreArgs, RestoreTarget};
pub use shell::{CompletionsArgs, ManArgs};
pub use sync::SyncArgs;
use verify::parse_top_k;
pub use verify::VerifyArgs;

/// `pgflare -V`: the version and the commit it was built from (build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PGFLARE_COMMIT"), ")");

/// `pgflare --version`: also the profile, target and compiler.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("PGFLARE_COMMIT"),
    "\nbuild: ",
    env!("PGFLARE_BUILD"),
);

/// Move a RAG service's data from Postgres + pgvector (e.g. Supabase) to
/// Cloudflare D1 and Vectorize, verify it, and archive the source to Parquet.
///
/// Start with `pgflare inspect`: it shows how every column will be mapped
/// and every place the data will not fit Cloudflare's limits. The source is
/// read at one consistent snapshot by parallel workers; nothing is written
/// to it.
#[derive(Debug, Parser)]
#[command(name = "pgflare", version = VERSION, long_version = LONG_VERSION, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Print machine-readable JSON on stdout instead of tables (progress
    /// bars are turned off).
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Longest wait to reach a server: TCP, TLS and Postgres's login
    /// (e.g. 30s, 2m).
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s",
          value_parser = crate::timeouts::parse_duration)]
    pub connect_timeout: std::time::Duration,

    /// Longest silence accepted from Postgres: until a statement answers,
    /// and between two messages of a result or COPY stream (a bound on
    /// silence, not on a long COPY that keeps sending).
    #[arg(long, global = true, value_name = "DURATION", default_value = "15m",
          value_parser = crate::timeouts::parse_duration)]
    pub statement_timeout: std::time::Duration,

    /// Longest a Cloudflare API request may stand still: nothing of its
    /// body sent, nothing of its answer received (a large transfer that
    /// keeps moving is never cut short).
    #[arg(long, global = true, value_name = "DURATION", default_value = "2m",
          value_parser = crate::timeouts::parse_duration)]
    pub http_timeout: std::time::Duration,

    /// Longest wait for one D1 import or export to finish (D1 runs them in
    /// the background and pgflare polls), the wait for a database another
    /// import or export holds included.
    #[arg(long, global = true, value_name = "DURATION", default_value = "15m",
          value_parser = crate::timeouts::parse_duration)]
    pub d1_wait: std::time::Duration,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a starting pgflare.toml and the D1 migration for the source
    /// tables (read from the catalog; no rows are read).
    ///
    /// pgflare.toml gets one [[tables]] entry per table, parents first (foreign
    /// keys), with the primary key, a guessed sync cursor (an updated_at-like
    /// timestamp), the vector column and suggested Vectorize metadata, the
    /// columns that go to D1, and a commented [cloudflare] section. The
    /// migration (MIGRATIONS_DIR/NNNN_pgflare_initial.sql, wrangler's naming)
    /// creates the D1 tables with keys, UNIQUE and FOREIGN KEY constraints and
    /// b-tree indexes; what D1 cannot have (HNSW/GIN, expression or partial
    /// indexes) is listed in SQL comments.
    ///
    /// Next: review pgflare.toml (a re-run of init does not keep edits), then
    ///   npx wrangler d1 migrations apply <DATABASE> --local   (or --remote)
    ///   pgflare load --target sqlite --no-create-tables \
    ///     --wrangler wrangler.jsonc --d1-binding DB
    ///
    /// Example: pgflare init --table documents --table chunks
    #[command(verbatim_doc_comment)]
    Init(InitArgs),

    /// Describe the source tables: rows, size, the type mapping of every
    /// column, and every place the data will not fit D1 or Vectorize (with
    /// counts and example keys).
    ///
    /// Example: pgflare inspect --table chunks --table documents
    Inspect(InspectArgs),

    /// Export tables to Parquet with a manifest that proves the archive
    /// matches the source (the final archive before decommissioning); with
    /// --from cloudflare, what D1 and Vectorize hold, in the same layout
    /// (the full rollback, after Cloudflare took writes).
    ///
    /// Examples:
    ///   pgflare archive --out ./archive
    ///   pgflare archive verify ./archive --against-source
    ///   pgflare archive --from cloudflare --out ./cf-archive \
    ///     --d1-database-id ID --vectorize-index chunks
    ///   pgflare archive --from cloudflare --out ./cf-archive --like ./archive \
    ///     --sqlite d1.sqlite
    #[command(verbatim_doc_comment, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Archive(ArchiveCommand),

    /// Restore a pgflare archive into D1 and Vectorize (when they must be
    /// cleared and filled again), or into a new Postgres database (the way
    /// back to Supabase once the old database is gone).
    ///
    /// The archive's files are checked against its manifest (size, blake3)
    /// before anything is written.
    ///
    /// Into D1 (--target files|sqlite|api) the rows go through the same
    /// writers as `pgflare load`, mapped as it maps them (pgflare.toml, or
    /// every column but a vector column under its own name), as idempotent
    /// upserts: a rerun after a failure is safe. Vectors count as restored
    /// once Vectorize applied them. Then `pgflare verify` against the
    /// source proves it.
    ///
    /// Into Postgres (--target postgres --target-url URL) the tables come
    /// back as the source had them: types, enums, domains, columns, keys,
    /// constraints and indexes from the manifest, rows by COPY BINARY (every
    /// value bit for bit), several files at once. The target must not hold
    /// the archive's tables (unless --into-existing). A run that was killed
    /// is finished by running it again: each file is copied in one
    /// transaction with its record in the schema pgflare_restore, which the
    /// finished run drops. Then `pgflare archive verify ARCHIVE
    /// --database-url URL` proves every row equal.
    ///
    /// Examples:
    ///   pgflare restore ./archive --target sqlite --sqlite d1.sqlite
    ///   createdb rollback && pgflare restore ./archive --target postgres \
    ///       --target-url postgres://me@localhost/rollback
    #[command(verbatim_doc_comment)]
    Restore(RestoreArgs),

    /// Write what Cloudflare changed back into Postgres: the full
    /// rollback after Cloudflare took writes. D1 and Vectorize are read
    /// into an archive of Cloudflare (as `archive --from cloudflare`; or
    /// --from-archive DIR), compared with the live Postgres by the digests
    /// verify uses, and what differs is written in one transaction: rows
    /// Cloudflare added are inserted, rows it changed updated (text,
    /// metadata, and the vector column from Vectorize's values), rows it
    /// deleted deleted (parents first, children first). Only the columns
    /// Cloudflare holds are written; the others keep their values.
    ///
    /// The run ends by comparing again: exit 0 when Postgres now holds
    /// Cloudflare's rows, 1 when differences remain. A kill at any moment
    /// leaves Postgres as it was or fully written; run it again. Stop the
    /// writers of Postgres first (during the rollout it is read-only).
    ///
    /// Examples:
    ///   CLOUDFLARE_API_TOKEN=... pgflare reconcile --into postgres --dry-run \
    ///       --d1-database-id ID --vectorize-index chunks
    ///   pgflare reconcile --into postgres --from-archive ./cf-archive
    #[command(verbatim_doc_comment)]
    Reconcile(ReconcileArgs),

    /// The initial bulk load into D1 and Vectorize: every configured table
    /// read at one snapshot by parallel workers and written as idempotent
    /// upserts, to SQL files, a local SQLite file, or Cloudflare's D1 API;
    /// in the same pass, vector columns go to Vectorize NDJSON files or the
    /// Vectorize API (a range counts as done once Vectorize applied it).
    ///
    /// Tables load parents first (foreign keys). The load is resumable: a
    /// state file under --state-dir records every finished key range, so a
    /// load that was killed or failed, run again with the same command,
    /// loads only what is missing. --dry-run prints the plan and the
    /// estimated D1 size against the 10 GB limit.
    ///
    /// Examples:
    ///   pgflare load --target files --out ./d1-sql
    ///   pgflare load --target sqlite --sqlite ./rehearsal.sqlite
    ///   pgflare load --target sqlite --wrangler wrangler.jsonc --d1-binding DB
    ///     (into wrangler's local D1)
    ///   CLOUDFLARE_API_TOKEN=... pgflare load --target api \
    ///     --wrangler wrangler.jsonc --env staging --d1-binding DB
    ///   CLOUDFLARE_API_TOKEN=... pgflare load --target api \
    ///     --d1-database-id ID --vectorize-index chunks --create-index
    #[command(verbatim_doc_comment)]
    Load(LoadArgs),

    /// Prove D1 and Vectorize hold the source's data: every configured table
    /// read at one snapshot and compared with D1 by key buckets of row
    /// digests (only differing buckets are read again, down to rows and
    /// fields), and its vectors with the Vectorize index (enumerated with
    /// list, fetched with get_by_ids, compared by float32 bits and
    /// metadata). Writes report.json, report.md and report.html to --report-dir.
    ///
    /// Exit codes: 0 consistent, 1 differences found, 2 could not verify.
    ///
    /// Examples:
    ///   pgflare verify --sqlite ./d1.sqlite
    ///   pgflare verify --config pgflare.toml \
    ///     --sqlite .wrangler/state/v3/d1/.../ID.sqlite --sample 0.1
    ///   CLOUDFLARE_API_TOKEN=... pgflare verify --wrangler wrangler.jsonc \
    ///     --d1-binding DB --vectorize-binding VECTORIZE
    #[command(verbatim_doc_comment)]
    Verify(CheckArgs),

    /// Keep D1 and Vectorize in step with the source after the load: every
    /// row written since the last run is upserted (its vector only when
    /// the embedding or its metadata changed), rows soft-deleted or gone
    /// from the source are deleted, and the checkpoint moves on. The
    /// checkpoint and a runner lease live in D1 (table pgflare_sync_state),
    /// so a scheduled runner on a fresh machine continues where the last
    /// one stopped, and only one runner works at a time.
    ///
    /// Changes are found by transaction id, not by timestamp: a row that a
    /// long transaction wrote with an old updated_at and committed after a
    /// run is picked up by the next run. SIGTERM or Ctrl-C finishes the
    /// key ranges being written, records them, and exits 0; SIGKILL at any
    /// moment loses nothing (the next run redoes unrecorded ranges).
    ///
    /// With --target files (OUT: the load's --out) each run writes
    /// OUT/sync/NNNNNN/ to apply in order: the upserts (<table>/part-*.sql,
    /// parents first), deletes.sql (soft deletes only: hard deletes need a
    /// D1 to compare with) and, for vectors, NDJSON files and
    /// vectorize/deleted-ids.txt; its state is a local file.
    ///
    /// Exit codes: 0 done, 2 error, 3 another runner holds the lease (its
    /// host, pid and start are printed).
    ///
    /// Examples:
    ///   pgflare sync --target sqlite --sqlite d1.sqlite --once
    ///   CLOUDFLARE_API_TOKEN=... pgflare sync --target api --every 5m \
    ///     --wrangler wrangler.jsonc --d1-binding DB --vectorize-binding VECTORIZE
    ///   pgflare sync --target sqlite --sqlite d1.sqlite --once --json \
    ///     --summary last-sync.json
    #[command(verbatim_doc_comment)]
    Sync(SyncArgs),

    /// Check, without writing anything, that a migration can run with these
    /// settings: the first command to run against a real account, and the
    /// one to run when something fails.
    ///
    /// Settings: which pgflare.toml, wrangler file and environment were read,
    /// and where the account id, D1 database id and Vectorize index name
    /// came from (flag, environment, pgflare.toml, or which wrangler binding).
    /// Postgres: server and pgvector versions, a direct connection (not a
    /// transaction pooler such as Supabase's port 6543), SELECT privileges
    /// and row-level security on the tables, primary keys, and (for syncs by
    /// logical replication) wal_level and replica identity.
    /// Cloudflare: the token is valid and active, the account is reachable,
    /// the D1 database exists and has room under 10 GB, the Vectorize index
    /// exists with pgflare.toml's dimensions, metric and metadata indexes,
    /// and the requests left in the API's budget.
    ///
    /// Each check is ok, info, warning, skipped or problem; every problem
    /// says what to do. Exit codes: 0 no problem, 1 a problem found, 2 could
    /// not run.
    ///
    /// Examples:
    ///   CLOUDFLARE_API_TOKEN=... pgflare doctor --wrangler wrangler.jsonc \
    ///     --d1-binding DB --vectorize-binding VECTORIZE
    ///   pgflare doctor --no-cloudflare          (the Postgres side only)
    #[command(verbatim_doc_comment)]
    Doctor(DoctorArgs),

    /// Run a local server that answers like Cloudflare's D1 and Vectorize
    /// REST APIs, to rehearse a migration without an account and to test
    /// against.
    ///
    /// It serves /client/v4 with the bearer token and account id given here:
    ///
    ///   GET|POST  /accounts/{A}/d1/database                 list | create {"name"}
    ///   GET       /accounts/{A}/d1/database/{ID}            show (num_tables, file_size)
    ///   POST      /accounts/{A}/d1/database/{ID}/query      {"sql","params"} or {"batch":[..]}
    ///   POST      /accounts/{A}/d1/database/{ID}/raw        same, rows as arrays
    ///   POST      /accounts/{A}/d1/database/{ID}/import     init, PUT upload_url, ingest, poll
    ///   POST      /accounts/{A}/d1/database/{ID}/export     SQL dump behind a download URL
    ///   GET|POST  /accounts/{A}/vectorize/v2/indexes          list | create
    ///   GET|DELETE /accounts/{A}/vectorize/v2/indexes/{I}     show | delete
    ///   POST      .../indexes/{I}/insert|upsert               NDJSON (as wrangler sends it)
    ///   POST      .../indexes/{I}/get_by_ids|delete_by_ids|query
    ///   GET       .../indexes/{I}/info|list                   mutations applied, ids by page
    ///   POST|GET  .../indexes/{I}/metadata_index/create|list|delete
    ///
    /// Each database is a SQLite file at DATA_DIR/d1/ID.sqlite. D1's rules are
    /// enforced: one transaction per request; no BEGIN/SAVEPOINT; PRAGMAs on
    /// D1's allowlist only; no _cf_ names, ATTACH, or virtual tables other
    /// than fts5/rtree; 100,000-byte statements, 100 columns, 100 bound
    /// parameters, 2,000,000-byte values; foreign keys always on (use PRAGMA
    /// defer_foreign_keys = on). Over the rate limit it answers 429 with
    /// Retry-After. --fail-rate, --drop-rate and --latency-ms inject faults
    /// (seeded by --seed) to test retries.
    ///
    /// Example:
    ///   pgflare emulate --d1-database rehearsal &
    ///   export CLOUDFLARE_API_BASE_URL=http://127.0.0.1:8787/client/v4
    ///   export CLOUDFLARE_ACCOUNT_ID=local-account
    #[command(verbatim_doc_comment)]
    Emulate(EmulateArgs),

    /// Print a completion script for bash, zsh, fish, elvish or powershell.
    ///
    /// Examples:
    ///   pgflare completions bash \
    ///     > ~/.local/share/bash-completion/completions/pgflare
    ///   pgflare completions zsh > ~/.zfunc/_pgflare     (with fpath+=~/.zfunc)
    ///   pgflare completions fish > ~/.config/fish/completions/pgflare.fish
    #[command(verbatim_doc_comment)]
    Completions(CompletionsArgs),

    /// Print the manual page (roff), or write one page per command.
    ///
    /// Examples:
    ///   pgflare man | man -l -
    ///   pgflare man --out ~/.local/share/man/man1 && man pgflare-load
    #[command(verbatim_doc_comment)]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    #[command(flatten)]
    pub d1: D1TargetArgs,

    /// Where the resumable state of each target is kept.
    #[arg(long, default_value = ".pgflare", value_name = "DIR")]
    pub state_dir: PathBuf,

    /// Forget an unfinished (or finished) load of this target and load
    /// everything again (upserts: rows already there are overwritten).
    #[arg(long)]
    pub restart: bool,

    /// Print the plan (tables, rows, key ranges, estimated D1 size) and stop.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not run CREATE TABLE IF NOT EXISTS on the target first (when
    /// the tables come from `wrangler d1 migrations apply`).
    #[arg(long)]
    pub no_create_tables: bool,

    /// Make the replication slot (and publication) `sync --follow --slot
    /// NAME` reads through, and load from the slot's own snapshot: the
    /// follower then starts exactly where the load ends, with no polling
    /// run in between. A slot of that name is dropped and made again (a
    /// resumed load keeps the first run's). Needs what --follow needs:
    /// the direct connection, wal_level=logical, REPLICATION.
    #[arg(long, value_name = "NAME")]
    pub slot: Option<String>,

    /// --target files: start a new file past this size.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub file_size_mib: u64,

    /// --target api: send gathered SQL through D1's import flow in files
    /// of this size; smaller remainders go through `query` requests.
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    pub import_mib: usize,

    /// --target api: client-side request budget, REQUESTS/SECONDS
    /// (default 1000/300: Cloudflare allows 1200 per 300 s per user, shared
    /// with wrangler and the dashboard).
    #[arg(long, value_name = "N/SECONDS")]
    pub rate_limit: Option<String>,

    #[command(flatten)]
    pub vectors: VectorArgs,

    /// A row Vectorize would refuse (wrong dimension, id over 64 bytes,
    /// metadata over 10 KiB, bad metadata key, namespace over 64 bytes):
    /// `fail` stops with an error naming it; `skip` leaves its vector out
    /// and names it in the summary (its D1 row is still written).
    /// Default: [vectorize] on_invalid, else fail.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_invalid_vector: Option<crate::config::project::OnInvalid>,

    #[command(flatten)]
    pub cloudflare: CloudflareArgs,

    #[command(flatten)]
    pub tuning: TuningArgs,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    /// The D1 database as a local SQLite file (the sqlite load target,
    /// wrangler's local D1 file, or the emulator's DATA_DIR/d1/ID.sqlite).
    /// Without it, the D1 database named by --d1-database-id (or the
    /// wrangler binding) is exported through the API and read locally.
    #[arg(long, value_name = "FILE")]
    pub sqlite: Option<PathBuf>,

    /// Compare this fraction of the key buckets (deterministic: the same
    /// buckets every run), for a quick check; 1 = everything.
    #[arg(long, default_value_t = 1.0, value_name = "FRACTION")]
    pub sample: f64,

    /// Key buckets per table: more buckets, fewer rows re-read per difference.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub buckets: usize,

    /// Where report.json (and report.md, report.html) are written.
    #[arg(long, default_value = "pgflare-verify", value_name = "DIR")]
    pub report_dir: PathBuf,

    /// Which vectors' values are fetched from Vectorize (20 per request,
    /// against a budget of 1,200 requests per 5 minutes). Every id is
    /// always listed and compared (1,000 per request). N (default 300):
    /// the values of every vector sync wrote since the last load, of every
    /// row changed since the last verify (its report.json in
    /// --report-dir), and a uniform sample of N of the others, with the
    /// confidence it gives in
    /// the report (300 clean: fewer than 1% differ, at 95%); `all`: every
    /// vector's values (a million vectors: 50,000 requests).
    #[arg(long, default_value = "300", value_name = "N|all")]
    pub vector_values: String,

    /// Vector elements that differ by at most this much count as equal
    /// (for targets that do not keep float32 bits); 0 = bit for bit.
    #[arg(long, default_value_t = 0.0, value_name = "X")]
    pub float_tolerance: f64,

    /// Similarity-query parity: this many source vectors (chosen
    /// deterministically) are queried against Vectorize and compared with
    /// the exact top-k computed from the source; 0 = none. With
    /// `[[queries]]` in pgflare.toml, each of those shapes (the service's
    /// real query: filter, k, context from D1) is also run with N sampled
    /// vectors, unless --query-file gives the service's own.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub queries: usize,

    /// The service's query embeddings for the `[[queries]]` shapes, one
    /// JSON object per line: {"query": "NAME", "id": "q1", "vector":
    /// [...], "filter": {"tags": ["billing"]}} ("query" may be left out
    /// when there is one shape).
    #[arg(long, value_name = "FILE")]
    pub query_file: Option<std::path::PathBuf>,

    /// Top-k of each parity query (Vectorize allows up to 100).
    #[arg(long, default_value_t = 10, value_name = "K", value_parser = parse_top_k)]
    pub k: usize,

    /// Parity passes when the mean recall@k is at least this (and every id
    /// Vectorize returns is in D1).
    #[arg(long, default_value_t = 0.95, value_name = "FRACTION")]
    pub min_recall: f64,

    /// Do not compare Vectorize (only D1), even when pgflare.toml has vector tables.
    #[arg(long)]
    pub no_vectorize: bool,

    /// Vectors the load's rules leave out (a row Vectorize would refuse)
    /// do not fail the verification: with no other difference the verdict
    /// is `consistent_except_skipped` (exit 0) and still lists them.
    /// Without it they are differences (exit 1).
    #[arg(long)]
    pub accept_skipped: bool,

    /// Client-side request budget for the Vectorize API, REQUESTS/SECONDS.
    #[arg(long, value_name = "N/SECONDS")]
    pub rate_limit: Option<String>,

    #[command(flatten)]
    pub cloudflare: CloudflareArgs,

    #[command(flatten)]
    pub tuning: TuningArgs,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Where to write the configuration.
    #[arg(long, default_value = "pgflare.toml", value_name = "FILE")]
    pub out_config: PathBuf,

    /// wrangler's migrations folder (its `migrations_dir`, default
    /// `migrations` next to wrangler.jsonc). The file is numbered after the
    /// migrations already there.
    #[arg(long, default_value = "migrations", value_name = "DIR")]
    pub migrations_dir: PathBuf,

    /// Overwrite an existing pgflare.toml and pgflare migration.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Skip the scan that counts rows over Cloudflare's limits (it reads
    /// every row once).
    #[arg(long)]
    pub no_scan: bool,
}

impl Cli {
    /// The bounds on network waits the flags give.
    pub fn timeouts(&self) -> crate::timeouts::Timeouts {
        crate::timeouts::Timeouts {
            connect: self.connect_timeout,
            statement: self.statement_timeout,
            http: self.http_timeout,
            d1_wait: self.d1_wait,
        }
    }
}
