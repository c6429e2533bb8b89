//! Which settings doctor (and so every command given the same flags) ends
//! up with, and where each came from. The precedence is the one of
//! [`crate::plan::cloudflare`]: flags, then the environment, then
//! pgflare.toml, then the wrangler file; this module only names the level
//! that gave each value, by comparing the project before and after the
//! wrangler file was read.

use serde::Serialize;

use super::{Area, Check};
use crate::cli::CloudflareArgs;
use crate::config::project::Project;
use crate::config::wrangler::WranglerConfig;

/// The resolved settings, without secrets (the token is only said to be
/// set or not; the source URL has its password masked).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Resolved {
    /// pgflare.toml, when one was read.
    pub config: Option<String>,
    pub source: Option<String>,
    pub source_from: Option<String>,
    pub api_base_url: Option<String>,
    /// Whether CLOUDFLARE_API_TOKEN is set (its value is never shown).
    pub api_token_set: bool,
    pub account_id: Option<String>,
    pub account_id_from: Option<String>,
    pub wrangler_file: Option<String>,
    /// The wrangler environment whose bindings were read (`None` = top level).
    pub wrangler_env: Option<String>,
    pub d1_database_id: Option<String>,
    pub d1_database_from: Option<String>,
    pub vectorize_index: Option<String>,
    pub vectorize_index_from: Option<String>,
}

/// Fills the Cloudflare part of `r` from the project as loaded (`before`,
/// environment applied) and as resolved (`after`).
pub fn describe(
    r: &mut Resolved,
    before: &Project,
    after: &Project,
    flags: &CloudflareArgs,
    wrangler: Option<&WranglerConfig>,
) {
    let toml = || before.path.as_ref().map_or("pgflare.toml".into(), |p| p.display().to_string());
    let wfile = |key: &str| match wrangler {
        Some(w) => {
            let env = w.env.as_ref().map(|e| format!("env.{e}.")).unwrap_or_default();
            format!("{}: {env}{key}", w.path.display())
        }
        None => key.to_string(),
    };
    let cf = &after.cloudflare;
    r.config = before.path.as_ref().map(|p| p.display().to_string());
    r.api_base_url = Some(cf.api_base_url.clone());
    r.api_token_set = cf.api_token.is_some();
    r.wrangler_file = wrangler.map(|w| w.path.display().to_string());
    r.wrangler_env = wrangler.and_then(|w| w.env.clone());
    r.account_id = cf.account_id.clone();
    r.account_id_from = cf.account_id.as_ref().map(|_| {
        if flags.account_id.is_some() {
            "--account-id".to_string()
        } else if crate::config::file::process_env("CLOUDFLARE_ACCOUNT_ID").is_some() {
            "CLOUDFLARE_ACCOUNT_ID".to_string()
        } else if before.cloudflare.account_id.is_some() {
            format!("{}: cloudflare.account_id", toml())
        } else {
            match wrangler {
                // Environments inherit the top-level account id unless they set their own.
                Some(w) => match &w.env {
                    Some(e) => {
                        format!("{}: env.{e}.account_id or the top-level account_id", w.path.display())
                    }
                    None => format!("{}: account_id", w.path.display()),
                },
                None => "account_id".to_string(),
            }
        }
    });
    r.d1_database_id = cf.d1.as_ref().map(|d| d.database_id.clone());
    r.d1_database_from = cf.d1.as_ref().map(|d| match &d.binding {
        Some(b) => {
            let named = named_by(
                &flags.d1_binding,
                &before.cloudflare.d1_binding,
                "--d1-binding",
                "d1_binding",
                &toml(),
            );
            format!("binding `{b}` in {}{named}", wfile("d1_databases"))
        }
        None if flags.d1_database_id.is_some() => "--d1-database-id".to_string(),
        None => format!("{}: cloudflare.d1_database_id", toml()),
    });
    r.vectorize_index = cf.vectorize_index.clone();
    r.vectorize_index_from = cf.vectorize_index.as_ref().map(|index| {
        if flags.vectorize_index.is_some() {
            return "--vectorize-index".to_string();
        }
        if flags.vectorize_binding.is_none() && before.cloudflare.vectorize_index.is_some() {
            return format!("{}: cloudflare.vectorize_index", toml());
        }
        let binding = wrangler.and_then(|w| w.vectorize.iter().find(|(_, i)| i == index)).map(|(b, _)| b);
        let named = named_by(
            &flags.vectorize_binding,
            &before.cloudflare.vectorize_binding,
            "--vectorize-binding",
            "vectorize_binding",
            &toml(),
        );
        format!("binding `{}` in {}{named}", binding.map_or("?", |b| b.as_str()), wfile("vectorize"))
    });
}

/// " (named by --d1-binding)", " (named by pgflare.toml: cloudflare.d1_binding)",
/// or " (the only one there)".
fn named_by(flag: &Option<String>, file: &Option<String>, flag_name: &str, key: &str, toml: &str) -> String {
    if flag.is_some() {
        format!(" (named by {flag_name})")
    } else if file.is_some() {
        format!(" (named by {toml}: cloudflare.{key})")
    } else {
        " (the only one there)".to_string()
    }
}

/// The settings checks: which files were read.
pub fn checks(r: &Resolved, project: &Project) -> Vec<Check> {
    let mut out = Vec::new();
    let c = Check::named("settings.config", Area::Settings, "pgflare.toml");
    out.push(match &r.config {
        Some(p) => c.ok(format!("{p}: {} table(s) configured", project.tables.len())),
        None => c.info(format!(
            "no pgflare.toml: every table of schema `{}` moves with all its columns under their own names \
             (`pgflare init` writes one to review)",
            project.schema
        )),
    });
    let c = Check::named("settings.wrangler", Area::Settings, "wrangler file");
    out.push(match &r.wrangler_file {
        Some(f) => {
            let env =
                r.wrangler_env.as_ref().map_or("top level".to_string(), |e| format!("environment `{e}`"));
            let mut found = format!("{f}, {env}");
            for (what, from) in [
                ("account id", &r.account_id_from),
                ("D1 database", &r.d1_database_from),
                ("Vectorize index", &r.vectorize_index_from),
            ] {
                if let Some(from) = from {
                    found.push_str(&format!("; {what} from {from}"));
                }
            }
            c.ok(found)
        }
        None => c.info("none used (ids and names come from flags, the environment or pgflare.toml)"),
    });
    out
}
