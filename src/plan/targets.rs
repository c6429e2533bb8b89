//! From a command's flags to what a job needs before it starts: the
//! opening every job shares (pgflare.toml with the schema override, the
//! Cloudflare settings, the source, the read settings), where D1 rows go
//! ([`d1_target`], one rule for `load` and `sync`), the API settings, and
//! where vectors go (`load` and `sync` differ there, each rule written
//! once here). Errors name the flag and say what to pass.

use std::path::{Path, PathBuf};

use crate::cli::{
    CloudflareArgs, D1PlaceArgs, ProjectArgs, TargetKind, TuningArgs, VectorArgs, VectorizeMode,
};
use crate::cloudflare::ApiSettings;
use crate::config::project::Project;
use crate::error::{Error, Result};
use crate::plan::{Target, VectorTarget};
use crate::source::{ReadOptions, Source, SplitOptions};
use crate::timeouts::Timeouts;

/// What every job starts from.
pub struct Opening {
    pub project: Project,
    pub source: Source,
    pub read: ReadOptions,
    pub split: SplitOptions,
}

/// The flags every job's opening comes from.
pub struct OpeningFlags<'a> {
    pub config: Option<&'a Path>,
    pub schema: Option<&'a str>,
    pub database_url: Option<&'a str>,
    pub cloudflare: &'a CloudflareArgs,
    pub tuning: &'a TuningArgs,
}

impl<'a> OpeningFlags<'a> {
    /// The flags of a command with the project arguments (`load`, `verify`).
    pub fn of(project: &'a ProjectArgs, cloudflare: &'a CloudflareArgs, tuning: &'a TuningArgs) -> Self {
        OpeningFlags {
            config: project.config.as_deref(),
            schema: project.schema.as_deref(),
            database_url: project.database_url.as_deref(),
            cloudflare,
            tuning,
        }
    }
}

/// pgflare.toml (`--config`, else ./pgflare.toml) with `--schema` over it
/// and the Cloudflare settings resolved, the source and the read settings.
pub fn open(flags: OpeningFlags<'_>, timeouts: Timeouts) -> Result<Opening> {
    let mut project = crate::config::file::load_project(flags.config)?;
    if let Some(s) = flags.schema {
        project.schema = s.to_string();
    }
    super::cloudflare::resolve_cloudflare(&mut project, flags.cloudflare)?;
    let source = super::resolve::source(flags.database_url, &project, timeouts)?;
    let (read, split) = super::resolve::tuning(flags.tuning)?;
    Ok(Opening { project, source, read, split })
}

fn missing(setting: &str, message: &str) -> Error {
    Error::Config { setting: setting.into(), message: message.into() }
}

/// The API settings: account and token from the environment or the
/// wrangler file, the request budget from `--rate-limit` or pgflare.toml.
pub fn api_settings(project: &Project, rate_limit: Option<&str>, timeouts: Timeouts) -> Result<ApiSettings> {
    let cf = &project.cloudflare;
    let (requests, window) = match rate_limit {
        Some(r) => super::resolve::rate_limit("--rate-limit", r)?,
        None => (cf.rate_limit_requests, cf.rate_limit_window),
    };
    Ok(ApiSettings {
        base_url: cf.api_base_url.clone(),
        account_id: cf.account_id.clone().ok_or_else(|| {
            missing(
                "--account-id",
                "no Cloudflare account id: set CLOUDFLARE_ACCOUNT_ID, pass --account-id, or put account_id \
                 in wrangler.jsonc",
            )
        })?,
        token: cf.api_token.clone().ok_or_else(|| {
            missing(
                "CLOUDFLARE_API_TOKEN",
                "no API token: set CLOUDFLARE_API_TOKEN (a token with D1 and Vectorize edit permission); \
                 pgflare never reads it from a file",
            )
        })?,
        rate_limit_requests: requests,
        rate_limit_window: window,
        retry: crate::cloudflare::retry::RetryPolicy::default(),
        timeouts,
    })
}

/// The D1 flags of `load` and `sync`.
pub struct D1Flags<'a> {
    pub kind: TargetKind,
    pub out: Option<&'a Path>,
    pub sqlite: Option<&'a Path>,
    pub rate_limit: Option<&'a str>,
    /// `--target files`: a new file past this size.
    pub file_bytes: u64,
    /// `--target api`: SQL sent through D1's import flow in files of this size.
    pub import_bytes: usize,
}

impl<'a> D1Flags<'a> {
    /// The flags of `d1` with the command's request budget and sizes.
    pub fn of(
        kind: TargetKind,
        d1: &'a D1PlaceArgs,
        rate_limit: Option<&'a str>,
        file_bytes: u64,
        import_bytes: usize,
    ) -> Self {
        D1Flags {
            kind,
            out: d1.out.as_deref(),
            sqlite: d1.sqlite.as_deref(),
            rate_limit,
            file_bytes,
            import_bytes,
        }
    }
}

/// Where D1 rows go.
pub fn d1_target(
    f: &D1Flags<'_>,
    project: &Project,
    cloudflare: &CloudflareArgs,
    timeouts: Timeouts,
) -> Result<Target> {
    Ok(match f.kind {
        TargetKind::Files => Target::Files {
            dir: f.out.map(Path::to_path_buf).ok_or_else(|| missing("--target files", "needs --out DIR"))?,
            file_bytes: f.file_bytes.max(1 << 20),
        },
        TargetKind::Sqlite => Target::Sqlite { path: sqlite_path(f.sqlite, cloudflare, project)? },
        TargetKind::Api => Target::Api {
            settings: api_settings(project, f.rate_limit, timeouts)?,
            database_id: project.cloudflare.d1.as_ref().map(|d| d.database_id.clone()).ok_or_else(|| {
                missing(
                    "--target api",
                    "no D1 database: pass --d1-database-id, or --wrangler FILE [--env NAME] --d1-binding NAME, \
                     or set d1_database_id in pgflare.toml",
                )
            })?,
            import_bytes: f.import_bytes.max(1 << 20),
            query_bytes: 1 << 20,
        },
    })
}

/// `--sqlite`, else wrangler's local file of the configured D1 database.
pub fn sqlite_path(
    explicit: Option<&Path>,
    cloudflare: &CloudflareArgs,
    project: &Project,
) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let id = project.cloudflare.d1.as_ref().map(|d| d.database_id.clone()).ok_or_else(|| {
        missing(
            "--target sqlite",
            "needs --sqlite FILE, or a D1 database (--d1-database-id, or --wrangler FILE --d1-binding NAME) \
             to find the file wrangler uses locally",
        )
    })?;
    let dir = match project.cloudflare.wrangler.as_ref().or(cloudflare.wrangler.as_ref()) {
        Some(w) => w.parent().map(|p| p.to_path_buf()).unwrap_or_default(),
        None => PathBuf::from("."),
    };
    Ok(crate::config::wrangler_local::local_d1_file(&dir, &id))
}

/// The Vectorize API target, or the error naming what is missing.
fn index_target(
    project: &Project,
    rate_limit: Option<&str>,
    timeouts: Timeouts,
    what: &str,
) -> Result<VectorTarget> {
    let index =
        project.cloudflare.vectorize_index.clone().ok_or_else(|| missing("--vectorize-index", what))?;
    Ok(VectorTarget::Api { settings: api_settings(project, rate_limit, timeouts)?, index })
}

/// The vector flags of `load`.
pub struct LoadVectorFlags<'a> {
    pub mode: VectorizeMode,
    pub kind: TargetKind,
    pub out: Option<&'a Path>,
    pub vectorize_out: Option<&'a Path>,
    pub rate_limit: Option<&'a str>,
    /// `--table` names (empty: every configured table).
    pub tables: &'a [String],
}

impl<'a> LoadVectorFlags<'a> {
    /// The vector flags of `load` and `restore`.
    pub fn of(
        v: &'a VectorArgs,
        kind: TargetKind,
        d1: &'a D1PlaceArgs,
        rate_limit: Option<&'a str>,
        tables: &'a [String],
    ) -> Self {
        LoadVectorFlags {
            mode: v.vectorize,
            kind,
            out: d1.out.as_deref(),
            vectorize_out: v.vectorize_out.as_deref(),
            rate_limit,
            tables,
        }
    }
}

/// Where a load sends vectors: `--vectorize`, with `auto` following
/// `--target` (files: OUT/vectorize; api: the index; sqlite: NDJSON in
/// `--vectorize-out` when given, else nowhere). Only selected tables with
/// `vector` in pgflare.toml send any.
pub fn load_vectors(f: &LoadVectorFlags<'_>, project: &Project, timeouts: Timeouts) -> Result<VectorTarget> {
    let selected = |t: &&crate::config::project::TableMapping| {
        f.tables.is_empty()
            || f.tables.iter().any(|n| *n == t.table || *n == format!("{}.{}", t.schema, t.table))
    };
    if !project.tables.iter().filter(selected).any(|t| t.vector.is_some()) {
        return Ok(VectorTarget::Off);
    }
    let files_dir = || {
        f.vectorize_out.map(Path::to_path_buf).or_else(|| f.out.map(|o| o.join("vectorize"))).ok_or_else(
            || {
                missing(
                "--vectorize files",
                "needs --vectorize-out DIR (or --target files --out DIR, which puts them in DIR/vectorize)",
            )
            },
        )
    };
    let no_index =
        "pgflare.toml sends vectors but names no Vectorize index: pass --vectorize-index NAME, or \
                    --wrangler FILE --vectorize-binding NAME, or set vectorize_index in pgflare.toml \
                    (or --vectorize off to load D1 only)";
    Ok(match (f.mode, f.kind) {
        (VectorizeMode::Off, _) => VectorTarget::Off,
        (VectorizeMode::Files, _) | (VectorizeMode::Auto, TargetKind::Files) => {
            VectorTarget::Files { dir: files_dir()? }
        }
        (VectorizeMode::Api, _) | (VectorizeMode::Auto, TargetKind::Api) => {
            index_target(project, f.rate_limit, timeouts, no_index)?
        }
        (VectorizeMode::Auto, TargetKind::Sqlite) => match f.vectorize_out {
            Some(d) => VectorTarget::Files { dir: d.to_path_buf() },
            None => VectorTarget::Off,
        },
    })
}

/// Where a sync sends vectors, and whether they are off only because no
/// index is named (`auto` without one: sync refuses that while its
/// checkpoint says an index follows the source; an explicit `off` is a
/// choice). `auto` and `files` with `--target files` write NDJSON into
/// each run's own folder; `files` with another target is refused (a sync
/// run's vectors belong next to the run's SQL).
pub fn sync_vectors(
    mode: VectorizeMode,
    kind: TargetKind,
    out: Option<&Path>,
    rate_limit: Option<&str>,
    project: &Project,
    timeouts: Timeouts,
) -> Result<(VectorTarget, bool)> {
    let wants_vectors = project.tables.iter().any(|t| t.vector.is_some());
    let index = project.cloudflare.vectorize_index.is_some();
    let target = match (mode, kind) {
        (VectorizeMode::Off, _) => VectorTarget::Off,
        _ if !wants_vectors => VectorTarget::Off,
        // The run's own folder is chosen by the run (OUT/sync/NNNNNN/vectorize).
        (VectorizeMode::Auto | VectorizeMode::Files, TargetKind::Files) => {
            VectorTarget::Files { dir: out.map(Path::to_path_buf).unwrap_or_default().join("vectorize") }
        }
        (VectorizeMode::Files, _) => {
            return Err(missing(
                "--vectorize files",
                "a sync writes NDJSON vector files only with --target files (into each run's folder); \
                 with this target use --vectorize api or off",
            ))
        }
        (VectorizeMode::Auto, _) if !index => VectorTarget::Off,
        (VectorizeMode::Auto | VectorizeMode::Api, _) => index_target(
            project,
            rate_limit,
            timeouts,
            "--vectorize api needs an index: pass --vectorize-index NAME or --wrangler FILE --vectorize-binding NAME",
        )?,
    };
    let unnamed = mode == VectorizeMode::Auto && wants_vectors && matches!(target, VectorTarget::Off);
    Ok((target, unnamed))
}
