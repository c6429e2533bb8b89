//! Decides where the Cloudflare targets are, one precedence for every
//! setting: command-line flags, then the environment (already applied by
//! [`crate::config::file::load_project`]), then `pgflare.toml`, then the wrangler
//! file. A binding name is looked up in the wrangler file at the level it
//! was given, so `--d1-binding DB` beats a `d1_database_id` in pgflare.toml.

use std::path::PathBuf;

use crate::cli::CloudflareArgs;
use crate::config::project::{D1Database, Project};
use crate::config::wrangler::{self, WranglerConfig};
use crate::error::{Error, Result};

/// Applies `flags` over `project.cloudflare`, then fills what is still
/// missing from the wrangler file (`--wrangler`, pgflare.toml's `wrangler`,
/// or a wrangler file next to pgflare.toml / in the current folder when a
/// binding is named). Returns the bindings of the wrangler file used, if
/// one was (`doctor` says which file, environment and binding gave what).
pub fn resolve_cloudflare(project: &mut Project, flags: &CloudflareArgs) -> Result<Option<WranglerConfig>> {
    let cf = &mut project.cloudflare;
    if flags.d1_database_id.is_some() && flags.d1_binding.is_some() {
        return Err(Error::Config {
            setting: "--d1-database-id".into(),
            message: "give --d1-database-id or --d1-binding, not both".into(),
        });
    }
    if flags.vectorize_index.is_some() && flags.vectorize_binding.is_some() {
        return Err(Error::Config {
            setting: "--vectorize-index".into(),
            message: "give --vectorize-index or --vectorize-binding, not both".into(),
        });
    }
    if let Some(a) = &flags.account_id {
        cf.account_id = Some(a.clone());
    }
    if flags.wrangler.is_some() {
        cf.wrangler = flags.wrangler.clone();
    }
    if flags.wrangler_env.is_some() {
        cf.wrangler_env = flags.wrangler_env.clone();
    }
    // A flag at one level replaces both forms (id, binding) below it.
    if let Some(id) = &flags.d1_database_id {
        cf.d1 = Some(D1Database { binding: None, database_name: None, database_id: id.clone() });
        cf.d1_binding = None;
    } else if let Some(b) = &flags.d1_binding {
        cf.d1 = None;
        cf.d1_binding = Some(b.clone());
    }
    if let Some(i) = &flags.vectorize_index {
        cf.vectorize_index = Some(i.clone());
        cf.vectorize_binding = None;
    } else if let Some(b) = &flags.vectorize_binding {
        cf.vectorize_index = None;
        cf.vectorize_binding = Some(b.clone());
    }

    let wants_binding = cf.d1_binding.is_some() || cf.vectorize_binding.is_some();
    let file = match &cf.wrangler {
        Some(p) => Some(p.clone()),
        None if wants_binding => {
            let dirs: Vec<PathBuf> = project
                .path
                .as_ref()
                .and_then(|p| p.parent())
                .map(|d| d.to_path_buf())
                .into_iter()
                .chain([PathBuf::from(".")])
                .collect();
            let found = dirs.iter().find_map(|d| wrangler::find_in(d));
            if found.is_none() {
                return Err(Error::Config {
                    setting: "--wrangler".into(),
                    message: format!(
                        "a binding is named but there is no wrangler file: pass --wrangler FILE \
                         (looked for {} in {})",
                        wrangler::FILE_NAMES.join(", "),
                        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" and ")
                    ),
                });
            }
            found
        }
        None => None,
    };
    let Some(file) = file else { return Ok(None) };
    let w = wrangler::discover(&file, cf.wrangler_env.as_deref())?;
    fill_from_wrangler(project, &w)?;
    Ok(Some(w))
}

/// The lowest level: the wrangler file fills what nothing else gave.
fn fill_from_wrangler(project: &mut Project, w: &WranglerConfig) -> Result<()> {
    let cf = &mut project.cloudflare;
    if cf.account_id.is_none() {
        cf.account_id = w.account_id.clone();
    }
    if let Some(b) = &cf.d1_binding {
        cf.d1 = Some(w.d1(b)?.clone());
    } else if cf.d1.is_none() && w.d1_databases.len() == 1 {
        // One database and none named: the only sensible choice.
        cf.d1 = w.d1_databases.first().cloned();
    }
    if let Some(b) = &cf.vectorize_binding {
        cf.vectorize_index = Some(w.vectorize_index(b)?.to_string());
    } else if cf.vectorize_index.is_none() && w.vectorize.len() == 1 {
        cf.vectorize_index = w.vectorize.first().map(|(_, i)| i.clone());
    }
    Ok(())
}
