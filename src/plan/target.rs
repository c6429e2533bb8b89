//! Where a load writes D1 rows: SQL files, a local SQLite file, or the
//! Cloudflare API. The same rendered statements go to each; this module
//! only opens the chosen target, applies the schema to it, and names it
//! (without secrets) for the state file and the summary.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::sink::SinkFactory;
use crate::cloudflare::{Api, ApiSettings, D1};
use crate::error::{Error, Result};
use crate::sink::d1::api::D1ApiConfig;
use crate::sink::d1::linker::LinkTarget;
use crate::sink::d1::render::D1Mappings;
use crate::sink::d1::sqlite::D1SqliteConfig;
use crate::sink::d1::D1FilesConfig;

/// The target chosen for a run.
// One value per run: boxing the API settings would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Target {
    Files { dir: PathBuf, file_bytes: u64 },
    Sqlite { path: PathBuf },
    Api { settings: ApiSettings, database_id: String, import_bytes: usize, query_bytes: usize },
}

impl Target {
    /// Names the target; never holds the token.
    pub fn describe(&self) -> String {
        match self {
            Target::Files { dir, .. } => format!("files:{}", absolute(dir).display()),
            Target::Sqlite { path } => format!("sqlite:{}", absolute(path).display()),
            Target::Api { settings, database_id, .. } => {
                format!(
                    "api:{}/accounts/{}/d1/database/{database_id}",
                    settings.base_url, settings.account_id
                )
            }
        }
    }

    /// The state file of this target (and of the Vectorize target, when
    /// vectors go along) under `state_dir`.
    pub fn state_path(&self, state_dir: &Path, vectors: Option<&str>) -> PathBuf {
        let kind = match self {
            Target::Files { .. } => "files",
            Target::Sqlite { .. } => "sqlite",
            Target::Api { .. } => "api",
        };
        let described = match vectors {
            Some(v) => format!("{} + {v}", self.describe()),
            None => self.describe(),
        };
        let hash = blake3::hash(described.as_bytes()).to_hex();
        state_dir.join(format!("load-{kind}-{}.json", &hash[..16]))
    }

    /// The API settings, when this target talks to Cloudflare.
    pub fn api_settings(&self) -> Option<&ApiSettings> {
        match self {
            Target::Api { settings, .. } => Some(settings),
            _ => None,
        }
    }

    /// Opens the target; `api` is the one client (one request budget) the
    /// load shares between D1 and Vectorize.
    pub fn open(&self, mappings: D1Mappings, api: Option<Arc<Api>>) -> Result<OpenTarget> {
        Ok(match self {
            Target::Files { dir, file_bytes } => {
                std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
                let mut c = D1FilesConfig::new(dir.clone());
                c.file_bytes = *file_bytes;
                c.mappings = mappings;
                OpenTarget::Files(c)
            }
            Target::Sqlite { path } => OpenTarget::Sqlite(D1SqliteConfig::open(path, mappings)?),
            Target::Api { settings, database_id, import_bytes, query_bytes } => {
                let api = match api {
                    Some(a) => a,
                    None => Arc::new(Api::new(settings.clone())?),
                };
                let d1 = Arc::new(D1::new(api, database_id));
                let mut c = D1ApiConfig::new(d1, mappings, tokio::runtime::Handle::current());
                c.import_bytes = *import_bytes;
                c.query_bytes = *query_bytes;
                OpenTarget::Api(c)
            }
        })
    }
}

/// Removes `<dir>/<table>/part-*<ext>` files of an earlier load.
pub fn clear_parts(dir: &Path, ext: &str) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir))? {
        let sub = entry.map_err(Error::io(dir))?.path();
        if !sub.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&sub).map_err(Error::io(&sub))? {
            let f = f.map_err(Error::io(&sub))?.path();
            let name = f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            if name.starts_with("part-") && name.ends_with(ext) {
                std::fs::remove_file(&f).map_err(Error::io(&f))?;
            }
        }
    }
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// An opened target.
pub enum OpenTarget {
    Files(D1FilesConfig),
    Sqlite(D1SqliteConfig),
    Api(D1ApiConfig),
}

impl OpenTarget {
    pub fn sinks(&self) -> Arc<dyn SinkFactory> {
        match self {
            OpenTarget::Files(c) => Arc::new(c.clone()),
            OpenTarget::Sqlite(c) => Arc::new(c.clone()),
            OpenTarget::Api(c) => Arc::new(c.clone()),
        }
    }

    /// SQL access to the D1 database (not for files).
    pub fn d1_access(&self) -> Option<super::access::D1Access> {
        match self {
            OpenTarget::Files(_) => None,
            OpenTarget::Sqlite(c) => Some(super::access::D1Access::Sqlite(c.clone())),
            OpenTarget::Api(c) => Some(super::access::D1Access::Api(c.d1.clone())),
        }
    }

    /// Where the link step sends its statements.
    pub fn link_target(&self) -> LinkTarget {
        match self {
            OpenTarget::Files(c) => LinkTarget::Files { dir: c.dir.clone(), file_bytes: c.file_bytes },
            OpenTarget::Sqlite(c) => LinkTarget::Sqlite(c.clone()),
            OpenTarget::Api(c) => LinkTarget::Api { d1: c.d1.clone(), query_bytes: c.query_bytes },
        }
    }

    /// A fresh (not resumed) load into files starts from an empty set: SQL
    /// files and the manifest of an earlier load in the folder are removed,
    /// so no stale file can be applied by a glob.
    pub fn clear_previous_output(&self) -> Result<()> {
        let OpenTarget::Files(c) = self else { return Ok(()) };
        for name in ["manifest.json", "schema.sql"] {
            let f = c.dir.join(name);
            if f.exists() {
                std::fs::remove_file(&f).map_err(Error::io(&f))?;
            }
        }
        clear_parts(&c.dir, ".sql")?;
        for entry in std::fs::read_dir(&c.dir).map_err(Error::io(&c.dir))? {
            let sub = entry.map_err(Error::io(&c.dir))?.path();
            if sub.is_dir() {
                crate::sink::d1::linker::remove_link_files(&sub, None)?;
            }
        }
        Ok(())
    }

    /// Creates the D1 tables (idempotent DDL). The files target writes it
    /// as `schema.sql`, to run before the data files.
    pub async fn apply_schema(&self, ddl: &str) -> Result<()> {
        match self {
            OpenTarget::Files(c) => {
                let path = c.dir.join("schema.sql");
                std::fs::write(&path, ddl).map_err(Error::io(&path))
            }
            OpenTarget::Sqlite(c) => c.execute("creating the D1 tables", ddl),
            OpenTarget::Api(c) => c.d1.query("creating the D1 tables", ddl).await.map(|_| ()),
        }
    }
}
