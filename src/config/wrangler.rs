//! Reads the bindings a user already keeps in `wrangler.jsonc` /
//! `wrangler.json` / `wrangler.toml`, so pgflare finds the D1 database id
//! and the Vectorize index by binding name instead of asking for them again.
//!
//! Wrangler's rule for environments is followed: `d1_databases` and
//! `vectorize` are *not* inherited into `env.<name>` (an environment without
//! them has none), while `account_id` is (an environment may override it).
//! Only the keys pgflare needs are read; everything else in the file is
//! ignored, so any valid wrangler file is accepted.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::project::D1Database;
use crate::error::{Error, Result};

/// File names wrangler looks for, in its order of preference.
pub const FILE_NAMES: [&str; 3] = ["wrangler.jsonc", "wrangler.json", "wrangler.toml"];

/// The bindings of one wrangler environment (or of the top level).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WranglerConfig {
    /// The file, as given (for messages).
    pub path: PathBuf,
    /// The environment the bindings come from (`None` = top level).
    pub env: Option<String>,
    pub account_id: Option<String>,
    pub d1_databases: Vec<D1Database>,
    /// (binding, index_name) pairs.
    pub vectorize: Vec<(String, String)>,
}

/// The wrangler file in `dir`, if there is one.
pub fn find_in(dir: &Path) -> Option<PathBuf> {
    FILE_NAMES.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Reads `path` and returns the bindings of environment `env` (top level
/// when `None`).
pub fn discover(path: &Path, env: Option<&str>) -> Result<WranglerConfig> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    let file = path.display().to_string();
    let root = parse(path, &file, &text)?;
    if !root.is_object() {
        return Err(Error::Config { setting: file, message: "expected an object at the top level".into() });
    }
    let at = |key: &str| format!("{file}: {key}");
    let mut account_id = string_at(&root, "account_id", &at("account_id"))?;
    let (section, prefix) = match env {
        None => (&root, String::new()),
        Some(e) => {
            let envs = root.get("env");
            let Some(section) = envs.and_then(|v| v.get(e)) else {
                let names: Vec<String> =
                    envs.and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default();
                return Err(Error::Config {
                    setting: at(&format!("env.{e}")),
                    message: format!(
                        "no environment `{e}`; the file has {}",
                        if names.is_empty() { "no environments".into() } else { names.join(", ") }
                    ),
                });
            };
            if let Some(own) = string_at(section, "account_id", &at(&format!("env.{e}.account_id")))? {
                account_id = Some(own);
            }
            (section, format!("env.{e}."))
        }
    };
    let mut d1_databases = Vec::new();
    for (i, entry) in
        array_at(section, "d1_databases", &at(&format!("{prefix}d1_databases")))?.iter().enumerate()
    {
        let key = |k: &str| at(&format!("{prefix}d1_databases[{i}].{k}"));
        d1_databases.push(D1Database {
            binding: Some(required(entry, "binding", &key("binding"))?),
            database_name: string_at(entry, "database_name", &key("database_name"))?,
            database_id: required(entry, "database_id", &key("database_id"))?,
        });
    }
    let mut vectorize = Vec::new();
    for (i, entry) in array_at(section, "vectorize", &at(&format!("{prefix}vectorize")))?.iter().enumerate() {
        let key = |k: &str| at(&format!("{prefix}vectorize[{i}].{k}"));
        vectorize.push((
            required(entry, "binding", &key("binding"))?,
            required(entry, "index_name", &key("index_name"))?,
        ));
    }
    Ok(WranglerConfig {
        path: path.to_path_buf(),
        env: env.map(str::to_string),
        account_id,
        d1_databases,
        vectorize,
    })
}

impl WranglerConfig {
    fn section(&self) -> String {
        match &self.env {
            Some(e) => format!("env.{e}."),
            None => String::new(),
        }
    }

    /// The D1 database bound as `binding`.
    pub fn d1(&self, binding: &str) -> Result<&D1Database> {
        self.d1_databases.iter().find(|d| d.binding.as_deref() == Some(binding)).ok_or_else(|| {
            let have: Vec<&str> = self.d1_databases.iter().filter_map(|d| d.binding.as_deref()).collect();
            self.missing("d1_databases", "D1", binding, &have)
        })
    }

    /// The Vectorize index bound as `binding`.
    pub fn vectorize_index(&self, binding: &str) -> Result<&str> {
        self.vectorize.iter().find(|(b, _)| b == binding).map(|(_, i)| i.as_str()).ok_or_else(|| {
            let have: Vec<&str> = self.vectorize.iter().map(|(b, _)| b.as_str()).collect();
            self.missing("vectorize", "Vectorize", binding, &have)
        })
    }

    fn missing(&self, key: &str, what: &str, binding: &str, have: &[&str]) -> Error {
        let list = if have.is_empty() {
            format!("it has no {what} bindings there (environments do not inherit them from the top level)")
        } else {
            format!("its {what} bindings are: {}", have.join(", "))
        };
        Error::Config {
            setting: format!("{}: {}{key}", self.path.display(), self.section()),
            message: format!("no {what} binding `{binding}`; {list}"),
        }
    }
}

/// The file as JSON, whatever its format: JSONC (comments and trailing
/// commas, as wrangler allows) or TOML.
fn parse(path: &Path, file: &str, text: &str) -> Result<Value> {
    let is_toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if is_toml {
        // No excerpt of the file in the error: its [vars] may hold secrets.
        let table: toml::Table =
            toml::from_str(text).map_err(|e| super::file_errors::toml_error(file, text, &e))?;
        return serde_json::to_value(table)
            .map_err(|e| Error::Config { setting: file.to_string(), message: e.to_string() });
    }
    let options = jsonc_parser::ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        ..Default::default()
    };
    jsonc_parser::parse_to_serde_value::<Value>(text, &options).map_err(|e| Error::Config {
        setting: file.to_string(),
        message: format!("line {}, column {}: {}", e.line_display(), e.column_display(), e.kind()),
    })
}

fn string_at(obj: &Value, key: &str, setting: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::Config {
            setting: setting.to_string(),
            message: format!("expected a string, found {other}"),
        }),
    }
}

fn required(obj: &Value, key: &str, setting: &str) -> Result<String> {
    match string_at(obj, key, setting)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Error::Config { setting: setting.to_string(), message: "missing".into() }),
    }
}

fn array_at<'a>(obj: &'a Value, key: &str, setting: &str) -> Result<&'a [Value]> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(Error::Config { setting: setting.to_string(), message: "expected an array".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        (dir, p)
    }

    #[test]
    fn environments_do_not_inherit_bindings_but_inherit_the_account() {
        let (_d, p) = write(
            "wrangler.jsonc",
            r#"{ // comment
              "account_id": "acct",
              "d1_databases": [{ "binding": "DB", "database_id": "top" },],
              "env": { "staging": { "vectorize": [{"binding": "V", "index_name": "idx"}] } },
            }"#,
        );
        let top = discover(&p, None).expect("top");
        assert_eq!(top.d1("DB").expect("db").database_id, "top");
        let st = discover(&p, Some("staging")).expect("staging");
        assert_eq!(st.account_id.as_deref(), Some("acct"));
        assert_eq!(st.vectorize_index("V").expect("v"), "idx");
        let e = st.d1("DB").expect_err("not inherited").to_string();
        assert!(e.contains("env.staging.d1_databases") && e.contains("no D1 bindings"), "{e}");
        let e = discover(&p, Some("prod")).expect_err("missing env").to_string();
        assert!(e.contains("no environment `prod`; the file has staging"), "{e}");
    }

    #[test]
    fn a_missing_database_id_names_the_key() {
        let (_d, p) = write("wrangler.toml", "[[env.staging.d1_databases]]\nbinding = \"DB\"\n");
        let e = discover(&p, Some("staging")).expect_err("missing").to_string();
        assert!(e.ends_with("wrangler.toml: env.staging.d1_databases[0].database_id: missing"), "{e}");
    }
}
