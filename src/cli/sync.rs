//! Arguments of `pgflare sync` (its help text is the user's manual for
//! scheduling it).

use std::path::PathBuf;

use clap::Args;

use super::{CloudflareArgs, D1TargetArgs, TuningArgs, VectorizeMode};

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// pgflare.toml to use (every table in it is synced).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Postgres connection URL. Default: pgflare.toml's [source] url,
    /// then $DATABASE_URL, then $SUPABASE_DB_URL.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// Schema of the tables when there is no pgflare.toml (default public).
    #[arg(long, value_name = "SCHEMA")]
    pub schema: Option<String>,

    /// The D1 the load filled.
    #[command(flatten)]
    pub d1: D1TargetArgs,

    /// Where vectors go: `auto` = NDJSON files with --target files, else
    /// the Vectorize API when an index is configured (--vectorize-index,
    /// wrangler binding or pgflare.toml), else nowhere (refused while the
    /// checkpoint says an index follows the source); `api` requires an
    /// index; `files` is `auto` with --target files (NDJSON in each run's
    /// folder) and refused with the others; `off` syncs D1 only.
    #[arg(long, value_enum, default_value_t = VectorizeMode::Auto)]
    pub vectorize: VectorizeMode,

    /// Run once and exit (for cron, CI schedules, Kubernetes CronJobs).
    /// The default when --every is not given.
    #[arg(long, conflicts_with = "every")]
    pub once: bool,

    /// Run as a service: a run every DURATION (e.g. 30s, 5m, 1h), each
    /// start moved by up to ±--jitter so that many runners do not
    /// fire together. A run that fails is reported and the next one runs
    /// on schedule.
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,

    /// Follow the source continuously through logical replication: a
    /// replication slot and a publication (both named --slot, created on
    /// the first start) stream every committed change, applied seconds
    /// later in commit order. The first start (and the first after a
    /// load) makes one polling run so nothing before the slot is missed.
    /// Needs the direct connection (not a pooler), wal_level=logical and a
    /// role with REPLICATION; runs until SIGTERM/SIGINT. See the README:
    /// "Following the source".
    #[arg(long, conflicts_with_all = ["once", "every"])]
    pub follow: bool,

    /// The replication slot and publication --follow reads through (and
    /// --drop-slot removes): lower-case letters, digits, underscores.
    #[arg(long, default_value = "pgflare", value_name = "NAME")]
    pub slot: String,

    /// Drop the replication slot and publication named by --slot and exit
    /// (at decommission, or to stop keeping WAL for a follower that will
    /// not return). The follower must be stopped.
    #[arg(long, conflicts_with_all = ["once", "every", "follow"])]
    pub drop_slot: bool,

    /// --follow: warn when the slot keeps more WAL than this on the
    /// source (a follower that is stopped or behind makes Postgres keep
    /// WAL, which can fill its disk). Bytes, or with KB/MB/GB (x1000) or
    /// KiB/MiB/GiB (x1024).
    #[arg(long, default_value = "1GiB", value_name = "SIZE")]
    pub max_retained_wal: String,

    /// --follow: how often the status is printed (--json: one JSON line
    /// `pgflare-follow-status-v1`; otherwise the progress line).
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub status_every: String,

    /// --follow: stop after this long (for tests and measurements).
    #[arg(long, value_name = "DURATION", hide = true)]
    pub follow_for: Option<String>,

    /// Random share of --every by which each start moves, in percent.
    #[arg(long, default_value_t = 10, value_name = "PERCENT")]
    pub jitter: u8,

    /// Do not look for rows deleted in the source (hard deletes). Finding
    /// them reads every primary key of each table on both sides (no row
    /// bodies); soft deletes (`soft_delete` in pgflare.toml) are synced
    /// either way.
    #[arg(long)]
    pub no_hard_deletes: bool,

    /// How long the runner's lease in D1 lasts without renewal; a runner
    /// that died leaves it to expire. Renewed every third of it.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub lease_seconds: u64,

    /// Also write each run's JSON summary to FILE (replaced every run).
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,

    /// Scratch folder (D1 keys copied for finding deletes over the API,
    /// the link values of tables with foreign keys on a cycle); for
    /// --target files also where the sync state is kept (the load's
    /// --state-dir, which holds the first checkpoint).
    #[arg(long, default_value = ".pgflare", value_name = "DIR")]
    pub work_dir: PathBuf,

    /// --target api: client-side request budget, REQUESTS/SECONDS.
    #[arg(long, value_name = "N/SECONDS")]
    pub rate_limit: Option<String>,

    #[command(flatten)]
    pub cloudflare: CloudflareArgs,

    #[command(flatten)]
    pub tuning: TuningArgs,
}
