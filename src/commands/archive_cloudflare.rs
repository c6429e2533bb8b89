//! `pgflare archive --from cloudflare`: flags into the options of the
//! archive of Cloudflare (where D1 and Vectorize are, where the table
//! definitions come from), the archive, and what it says.

use crate::output::outln;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::{human_bytes, print_json};
use crate::archive::cloudflare::d1_side::D1At;
use crate::archive::cloudflare::tables::Definitions;
use crate::archive::cloudflare::{self, CloudflareOptions, CloudflareSummary};
use crate::archive::ParquetConfig;
use crate::cli::ArchiveArgs;
use crate::cloudflare::{Api, Vectorize, D1};
use crate::plan::targets;
use crate::progress::Progress;

/// The first flag given that only `--from cloudflare` reads.
pub fn cloudflare_only(args: &ArchiveArgs) -> Option<&'static str> {
    let cf = &args.cloudflare;
    [
        (args.sqlite.is_some(), "--sqlite"),
        (args.like.is_some(), "--like"),
        (args.no_vectorize, "--no-vectorize"),
        (args.rate_limit.is_some(), "--rate-limit"),
        (args.work_dir.is_some(), "--work-dir"),
        (cf.wrangler.is_some(), "--wrangler"),
        (cf.wrangler_env.is_some(), "--env"),
        (cf.d1_binding.is_some(), "--d1-binding"),
        (cf.d1_database_id.is_some(), "--d1-database-id"),
        (cf.vectorize_binding.is_some(), "--vectorize-binding"),
        (cf.vectorize_index.is_some(), "--vectorize-index"),
        (cf.account_id.is_some(), "--account-id"),
    ]
    .into_iter()
    .find_map(|(given, flag)| given.then_some(flag))
}

pub async fn run(
    args: ArchiveArgs,
    json: bool,
    progress: &Progress,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    if let Some(flag) =
        [(!args.source.casts.is_empty(), "--cast"), (!args.source.excludes.is_empty(), "--exclude")]
            .into_iter()
            .find_map(|(given, flag)| given.then_some(flag))
    {
        anyhow::bail!(
            "{flag} does not apply with --from cloudflare: the columns and their types are the ones `load` \
             mapped (pgflare.toml's d1_columns and casts)"
        );
    }
    let mut project = crate::config::file::load_project(args.source.config.as_deref())?;
    if let Some(s) = &args.source.schema {
        project.schema = s.clone();
    }
    crate::plan::cloudflare::resolve_cloudflare(&mut project, &args.cloudflare)?;
    let definitions = match &args.like {
        Some(dir) => Definitions::Like(dir.clone()),
        None => Definitions::Live(
            crate::plan::resolve::source(args.source.database_url.as_deref(), &project, timeouts).context(
                "the tables' definitions come from the source Postgres; once it is gone, pass --like \
                 ARCHIVE_DIR (an archive of it) instead",
            )?,
        ),
    };
    let at = CloudflareAt {
        sqlite: args.sqlite.as_deref(),
        no_vectorize: args.no_vectorize,
        rate_limit: args.rate_limit.as_deref(),
    };
    let (d1, vectorize) = where_cloudflare_is(&at, &project, progress, timeouts)?;
    let (read, _) = crate::plan::resolve::tuning(&args.tuning)?;
    // The default work folder goes when this ends, whatever happens.
    let temp = match &args.work_dir {
        Some(_) => None,
        None => {
            Some(TempDir(std::env::temp_dir().join(format!("pgflare-cf-archive-{}", std::process::id()))))
        }
    };
    let work_dir = args.work_dir.clone().or(temp.as_ref().map(|t| t.0.clone())).unwrap_or_default();
    let opts = CloudflareOptions {
        project,
        only_tables: args.source.tables.clone(),
        definitions,
        d1,
        vectorize,
        work_dir,
        parquet: ParquetConfig {
            dir: args.out.clone().context("--out is required: the folder to write the archive to")?,
            file_bytes: args.file_size_mib.max(1) << 20,
            row_group_bytes: args.row_group_mib.max(1) << 20,
            zstd_level: args.zstd_level,
        },
        overwrite: args.overwrite,
        batch_rows: read.batch_rows,
    };
    let (_, summary) = cloudflare::run(&opts, progress).await?;
    if json {
        print_json(&summary)?;
    } else {
        print_human(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

/// The flags that say where Cloudflare's side is read from.
pub(super) struct CloudflareAt<'a> {
    pub sqlite: Option<&'a std::path::Path>,
    pub no_vectorize: bool,
    pub rate_limit: Option<&'a str>,
}

/// D1 (a local file, or the database over the API) and the Vectorize
/// index (when pgflare.toml sends vectors and --no-vectorize is not
/// given), on one API client: they share the user's request budget.
pub(super) fn where_cloudflare_is(
    at: &CloudflareAt,
    project: &crate::config::project::Project,
    progress: &Progress,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<(D1At, Option<Arc<Vectorize>>)> {
    let wants_vectors = project.tables.iter().any(|t| t.vector.is_some()) && !at.no_vectorize;
    let api = match wants_vectors || at.sqlite.is_none() {
        true => {
            let settings = targets::api_settings(project, at.rate_limit, timeouts)?;
            Some(Arc::new(Api::new(settings)?.with_progress(progress.clone())))
        }
        false => None,
    };
    let vectorize = match (&project.cloudflare.vectorize_index, wants_vectors, &api) {
        (Some(index), true, Some(api)) => Some(Arc::new(Vectorize::new(api.clone(), index))),
        (None, true, _) => anyhow::bail!(
            "pgflare.toml sends vectors but names no Vectorize index: pass --vectorize-index NAME (or \
             --wrangler FILE --vectorize-binding NAME), or --no-vectorize to archive D1 only"
        ),
        _ => None,
    };
    let d1 = match (at.sqlite, &project.cloudflare.d1, &api) {
        (Some(p), _, _) => D1At::File(p.to_path_buf()),
        (None, Some(db), Some(api)) => D1At::Api(Arc::new(D1::new(api.clone(), &db.database_id))),
        _ => anyhow::bail!(
            "name the D1 database: --sqlite FILE for a local file, or --d1-database-id ID (or --wrangler FILE \
             --d1-binding NAME) to export it through the API"
        ),
    };
    Ok((d1, vectorize))
}

/// A folder of this run's own, removed when dropped.
pub(super) struct TempDir(pub(super) std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn print_human(s: &CloudflareSummary) {
    for t in &s.tables {
        outln!("{:24} {:>10} rows  {:>4} files  {:>10}", t.table, t.rows, t.files, human_bytes(t.bytes));
    }
    let d1 = &s.d1;
    let at = cloudflare::read_point(d1).map(|b| format!(" at bookmark {b}"));
    let what = match (&d1.database_id, &d1.sqlite_file) {
        (Some(id), _) => format!(
            "D1 database {} ({id}){}",
            d1.database_name.as_deref().unwrap_or("?"),
            at.unwrap_or_default()
        ),
        (_, Some(f)) => format!("D1 file {f}"),
        _ => "D1".into(),
    };
    outln!(
        "archived {} rows ({}) from {what} to {} in {:.1}s",
        s.rows,
        human_bytes(s.bytes),
        s.out,
        s.seconds
    );
    if let Some(v) = &s.vectorize {
        outln!(
            "Vectorize index {}: {} vectors listed, {} in their rows, {} kept as they are in _vectorize \
             (processedUpToMutation {})",
            v.index,
            v.listed,
            v.in_rows,
            s.side_rows,
            v.mutation_after.as_deref().unwrap_or("none")
        );
    }
    for n in &s.notes {
        outln!("note: {n}");
    }
    outln!("check it any time with: pgflare archive verify {}", s.out);
}
