//! From the command line, the environment and `pgflare.toml` to the
//! source connection and the read settings, with errors that name the
//! setting and say what is expected (the Cloudflare side is
//! [`super::cloudflare`]).

use crate::batch::BATCH_BYTES;
use crate::cli::{SourceArgs, TuningArgs};
use crate::error::{Error, Result};
use crate::source::{ReadOptions, Selection, Source, SplitOptions};
use crate::timeouts::Timeouts;

/// The source: `--database-url`, else pgflare.toml's `[source] url`, else
/// `DATABASE_URL`, else `SUPABASE_DB_URL` (one order for every command).
pub fn source(
    flag: Option<&str>,
    project: &crate::config::project::Project,
    timeouts: Timeouts,
) -> Result<Source> {
    let (url, setting) = source_url(flag, project)?;
    Ok(Source::parse_from(&url, &setting)?.with_timeouts(timeouts))
}

/// The source URL of [`source`] and the setting that gave it (for
/// messages, and for `doctor` to say where it came from).
pub fn source_url(flag: Option<&str>, project: &crate::config::project::Project) -> Result<(String, String)> {
    let env = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty()).map(|v| (v, k.to_string()));
    let file = || project.path.as_ref().map_or("pgflare.toml".into(), |p| p.display().to_string());
    flag.map(|f| (f.to_string(), "--database-url".to_string()))
        .or_else(|| project.source_url.clone().map(|u| (u, format!("{}: source.url", file()))))
        .or_else(|| env("DATABASE_URL"))
        .or_else(|| env("SUPABASE_DB_URL"))
        .ok_or_else(|| Error::Config {
            setting: "--database-url".into(),
            message: "no source given: pass --database-url, set url under [source] in pgflare.toml, \
                      or set DATABASE_URL (or SUPABASE_DB_URL)"
                .into(),
        })
}

/// The settings of a command that reads the source without a mapping
/// (`inspect`, `archive`, `init`): `[source] url` and `schema` of
/// pgflare.toml (`--config`, else ./pgflare.toml when there is one) under
/// the flags, and the project itself (inspect reads its vector settings).
/// Cloudflare's environment plays no part here.
pub fn source_and_selection(
    args: &SourceArgs,
    timeouts: Timeouts,
) -> Result<(Source, Selection, crate::config::project::Project)> {
    let project = crate::config::file::load_project_with(args.config.as_deref(), &|_| None)?;
    let source = source(args.database_url.as_deref(), &project, timeouts)?;
    let schema = args.schema.clone().unwrap_or_else(|| project.schema.clone());
    Ok((source, selection(args, &schema)?, project))
}

/// Which tables and columns, from the source arguments.
fn selection(args: &SourceArgs, schema: &str) -> Result<Selection> {
    let mut casts = std::collections::BTreeMap::new();
    for c in &args.casts {
        let Some((col, ty)) = c.split_once('=') else {
            return Err(Error::Config {
                setting: "--cast".into(),
                message: format!("`{c}` should be TABLE.COLUMN=TYPE, e.g. events.span=text"),
            });
        };
        check_column_ref("--cast", col)?;
        if ty.trim().is_empty() {
            return Err(Error::Config { setting: "--cast".into(), message: format!("`{c}` names no type") });
        }
        casts.insert(col.to_string(), ty.trim().to_string());
    }
    for e in &args.excludes {
        check_column_ref("--exclude", e)?;
    }
    Ok(Selection {
        schema: schema.to_string(),
        tables: args.tables.clone(),
        casts,
        excludes: args.excludes.clone(),
    })
}

fn check_column_ref(setting: &str, s: &str) -> Result<()> {
    match s.rsplit_once('.') {
        Some((t, c)) if !t.is_empty() && !c.is_empty() => Ok(()),
        _ => Err(Error::Config {
            setting: setting.into(),
            message: format!("`{s}` should name a column as TABLE.COLUMN (or SCHEMA.TABLE.COLUMN)"),
        }),
    }
}

/// Parallelism and batching.
pub fn tuning(args: &TuningArgs) -> Result<(ReadOptions, SplitOptions)> {
    // One worker more than CPUs: a worker waits on the network part of the
    // time; on the benchmark (server on the same 2-CPU host) 3 workers were
    // about 7% faster than 2.
    let jobs =
        args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) + 1);
    if jobs == 0 || jobs > 64 {
        return Err(Error::Config {
            setting: "--jobs".into(),
            message: format!("{jobs} workers: use 1 to 64"),
        });
    }
    if args.batch_rows == 0 {
        return Err(Error::Config { setting: "--batch-rows".into(), message: "must be at least 1".into() });
    }
    if args.partition_mib == 0 {
        return Err(Error::Config {
            setting: "--partition-mib".into(),
            message: "must be at least 1".into(),
        });
    }
    Ok((
        ReadOptions { jobs, batch_rows: args.batch_rows, batch_bytes: BATCH_BYTES },
        SplitOptions { target_bytes: args.partition_mib << 20, max_partitions: 256 },
    ))
}

/// `N/SECONDS` (e.g. `1200/300`) as a request budget.
pub fn rate_limit(setting: &str, text: &str) -> Result<(u32, std::time::Duration)> {
    let bad = || Error::Config {
        setting: setting.into(),
        message: format!("`{text}` should be REQUESTS/SECONDS with both above 0, e.g. 1200/300"),
    };
    let (n, secs) = text.split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    let secs: f64 = secs.trim().parse().map_err(|_| bad())?;
    if n == 0 || !(secs > 0.0 && secs.is_finite()) {
        return Err(bad());
    }
    Ok((n, std::time::Duration::from_secs_f64(secs)))
}
