//! Reads `pgflare.toml` into a [`Project`]: strict parsing (an unknown or
//! misspelt key is an error that names it, with toml's line and column),
//! then every check that needs no database, each error naming the key path
//! (`pgflare.toml: tables[1].d1_columns[2]`). Checks against the source's
//! columns happen later, in [`super::mapping`]. The schema of the file is
//! published as `schemas/pgflare-config.schema.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::file_errors::{refuse_secrets, toml_error};
use super::project::{
    ColumnMapping, D1Database, OnInvalid, Project, TableMapping, VectorizeSettings, DEFAULT_API_BASE_URL,
};
use crate::d1::check_name;
use crate::error::{Error, Result};

/// The file `load_project(None)` looks for in the current folder.
pub const DEFAULT_FILE: &str = "pgflare.toml";

/// Looks up an environment variable (injectable so tests need not touch
/// the process environment, which other test threads share).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, empty values counting as unset.
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    source: Option<RawSource>,
    cloudflare: Option<RawCloudflare>,
    vectorize: Option<RawVectorize>,
    #[serde(default)]
    tables: Vec<RawTable>,
    #[serde(default)]
    queries: Vec<super::queries_check::RawQuery>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVectorize {
    create_index: Option<bool>,
    metric: Option<String>,
    dimensions: Option<u32>,
    on_invalid: Option<OnInvalid>,
    vectors_per_request: Option<usize>,
    wait_timeout_seconds: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: Option<String>,
    schema: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCloudflare {
    account_id: Option<String>,
    api_base_url: Option<String>,
    wrangler: Option<PathBuf>,
    env: Option<String>,
    d1_binding: Option<String>,
    d1_database_id: Option<String>,
    vectorize_binding: Option<String>,
    vectorize_index: Option<String>,
    rate_limit: Option<RawRate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    requests: u32,
    window_seconds: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    name: String,
    primary_key: Option<Vec<String>>,
    cursor: Option<String>,
    soft_delete: Option<String>,
    d1_table: Option<String>,
    d1_columns: Option<Vec<String>>,
    #[serde(default)]
    d1_names: BTreeMap<String, String>,
    vector: Option<String>,
    #[serde(default)]
    vector_metadata: Vec<String>,
    vector_id: Option<String>,
    vector_namespace: Option<String>,
    #[serde(default)]
    vector_metadata_indexes: Vec<String>,
    #[serde(default)]
    vector_metadata_paths: BTreeMap<String, toml::Value>,
    #[serde(default)]
    vector_metadata_flatten: Vec<String>,
    #[serde(default)]
    vector_metadata_omit: Vec<String>,
    vector_metadata_separator: Option<String>,
    #[serde(default)]
    vector_metadata_flags: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    casts: BTreeMap<String, String>,
}

/// `path`, or `./pgflare.toml` when it exists, or the defaults; then the
/// environment (`CLOUDFLARE_ACCOUNT_ID`, `CLOUDFLARE_API_BASE_URL`,
/// `CLOUDFLARE_API_TOKEN`) over the file.
pub fn load_project(path: Option<&Path>) -> Result<Project> {
    load_project_with(path, &process_env)
}

/// [`load_project`] with an explicit environment.
pub fn load_project_with(path: Option<&Path>, env: EnvLookup) -> Result<Project> {
    let path = match path {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
    };
    let mut project = match &path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(Error::io(p))?;
            parse_project(&text, p)?
        }
        None => Project { schema: "public".into(), ..Project::default() },
    };
    apply_env(&mut project, env)?;
    Ok(project)
}

/// Parses and checks the text of a pgflare.toml found at `path` (relative
/// wrangler paths are resolved against its folder).
pub fn parse_project(text: &str, path: &Path) -> Result<Project> {
    let file = path.display().to_string();
    let generic: toml::Table = toml::from_str(text).map_err(|e| toml_error(&file, text, &e))?;
    refuse_secrets(&file, "", &toml::Value::Table(generic))?;
    let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(&file, text, &e))?;
    let key = |k: &str| format!("{file}: {k}");
    let bad = |k: &str, m: String| Error::Config { setting: key(k), message: m };

    let mut p = Project { path: Some(path.to_path_buf()), schema: "public".into(), ..Project::default() };
    if let Some(s) = raw.source {
        p.source_url = s.url.filter(|u| !u.is_empty());
        if let Some(schema) = s.schema {
            non_empty(&key("source.schema"), &schema)?;
            p.schema = schema;
        }
    }
    if let Some(c) = raw.cloudflare {
        let cf = &mut p.cloudflare;
        cf.account_id = opt_non_empty(&key("cloudflare.account_id"), c.account_id)?;
        if let Some(u) = c.api_base_url {
            cf.api_base_url = api_base_url(&key("cloudflare.api_base_url"), &u)?;
        }
        cf.wrangler = c.wrangler.map(|w| match path.parent() {
            Some(dir) if w.is_relative() => dir.join(w),
            _ => w,
        });
        cf.wrangler_env = opt_non_empty(&key("cloudflare.env"), c.env)?;
        cf.d1_binding = opt_non_empty(&key("cloudflare.d1_binding"), c.d1_binding)?;
        cf.vectorize_binding = opt_non_empty(&key("cloudflare.vectorize_binding"), c.vectorize_binding)?;
        let id = opt_non_empty(&key("cloudflare.d1_database_id"), c.d1_database_id)?;
        if id.is_some() && cf.d1_binding.is_some() {
            return Err(bad(
                "cloudflare.d1_database_id",
                "give d1_database_id or d1_binding, not both".into(),
            ));
        }
        cf.d1 = id.map(|database_id| D1Database { binding: None, database_name: None, database_id });
        cf.vectorize_index = opt_non_empty(&key("cloudflare.vectorize_index"), c.vectorize_index)?;
        if cf.vectorize_index.is_some() && cf.vectorize_binding.is_some() {
            return Err(bad(
                "cloudflare.vectorize_index",
                "give vectorize_index or vectorize_binding, not both".into(),
            ));
        }
        if let Some(r) = c.rate_limit {
            if r.requests == 0 {
                return Err(bad(
                    "cloudflare.rate_limit.requests",
                    "must be at least 1 (Cloudflare allows 1200 per 300 s)".into(),
                ));
            }
            if !(r.window_seconds > 0.0 && r.window_seconds.is_finite() && r.window_seconds < 1e9) {
                return Err(bad(
                    "cloudflare.rate_limit.window_seconds",
                    "must be a number of seconds above 0, e.g. 300".into(),
                ));
            }
            cf.rate_limit_requests = r.requests;
            cf.rate_limit_window = Duration::from_secs_f64(r.window_seconds);
        }
    }
    if let Some(v) = raw.vectorize {
        p.vectorize = vectorize(&file, v)?;
    }
    let mut seen = BTreeMap::new();
    let mut d1_seen = BTreeMap::new();
    for (i, t) in raw.tables.into_iter().enumerate() {
        let m = table(&format!("{file}: tables[{i}]"), &p.schema, t)?;
        let qualified = format!("{}.{}", m.schema, m.table);
        if let Some(j) = seen.insert(qualified.clone(), i) {
            return Err(bad(
                &format!("tables[{i}].name"),
                format!("{qualified} is already configured in tables[{j}]"),
            ));
        }
        if let Some(j) = d1_seen.insert(m.d1_table.to_ascii_lowercase(), i) {
            return Err(bad(
                &format!("tables[{i}].d1_table"),
                format!(
                    "D1 table `{}` is already the target of tables[{j}]; give one a d1_table name",
                    m.d1_table
                ),
            ));
        }
        p.tables.push(m);
    }
    p.queries = super::queries_check::parse(&file, raw.queries, &p.tables)?;
    Ok(p)
}

/// `[vectorize]`, checked.
fn vectorize(file: &str, v: RawVectorize) -> Result<VectorizeSettings> {
    let bad =
        |k: &str, m: &str| Error::Config { setting: format!("{file}: vectorize.{k}"), message: m.into() };
    let mut s = VectorizeSettings::default();
    if let Some(c) = v.create_index {
        s.create_index = c;
    }
    if let Some(m) = v.metric {
        s.metric = metric(&m).map_err(|e| bad("metric", &e))?;
    }
    if let Some(d) = v.dimensions {
        if !(1..=crate::cloudflare::limits::VECTORIZE_MAX_DIMS).contains(&d) {
            return Err(bad("dimensions", "must be 1 to 1536 (Vectorize's limit)"));
        }
        s.dimensions = Some(d);
    }
    if let Some(o) = v.on_invalid {
        s.on_invalid = o;
    }
    if let Some(n) = v.vectors_per_request {
        if !(1..=crate::cloudflare::limits::VECTORIZE_MAX_VECTORS_PER_REQUEST).contains(&n) {
            return Err(bad("vectors_per_request", "must be 1 to 5000 (Cloudflare's limit per upsert)"));
        }
        s.vectors_per_request = n;
    }
    if let Some(w) = v.wait_timeout_seconds {
        if !(w > 0.0 && w.is_finite() && w < 1e7) {
            return Err(bad("wait_timeout_seconds", "must be a number of seconds above 0, e.g. 900"));
        }
        s.wait_timeout = Duration::from_secs_f64(w);
    }
    Ok(s)
}

/// A Vectorize distance metric as Cloudflare spells it.
pub fn metric(m: &str) -> std::result::Result<String, String> {
    match m {
        "cosine" | "euclidean" | "dot-product" => Ok(m.to_string()),
        other => Err(format!("`{other}` is not a Vectorize metric: use cosine, euclidean or dot-product")),
    }
}

/// One `[[tables]]` entry, checked on its own.
fn table(at: &str, default_schema: &str, t: RawTable) -> Result<TableMapping> {
    let key = |k: &str| format!("{at}.{k}");
    let bad = |k: &str, m: String| Error::Config { setting: key(k), message: m };
    let (schema, name) = match t.name.split_once('.') {
        Some((s, n)) => (s.to_string(), n.to_string()),
        None => (default_schema.to_string(), t.name.clone()),
    };
    if schema.is_empty() || name.is_empty() || name.contains('.') {
        return Err(bad("name", format!("`{}` should be TABLE or SCHEMA.TABLE", t.name)));
    }
    let d1_table = t.d1_table.unwrap_or_else(|| name.clone());
    non_empty(&key("d1_table"), &d1_table)?;
    check_name("table", &d1_table).map_err(|e| reword(e, key("d1_table")))?;
    let list = |k: &str, names: &[String]| -> Result<()> {
        let mut seen = BTreeSet::new();
        for (j, n) in names.iter().enumerate() {
            non_empty(&key(&format!("{k}[{j}]")), n)?;
            if !seen.insert(n) {
                return Err(bad(&format!("{k}[{j}]"), format!("`{n}` is listed twice")));
            }
        }
        Ok(())
    };
    if let Some(pk) = &t.primary_key {
        if pk.is_empty() {
            return Err(bad(
                "primary_key",
                "list at least one column, or leave the key out to use the source's".into(),
            ));
        }
        list("primary_key", pk)?;
    }
    if let Some(c) = &t.cursor {
        non_empty(&key("cursor"), c)?;
    }
    if let Some(c) = &t.soft_delete {
        non_empty(&key("soft_delete"), c)?;
    }
    if let Some(v) = &t.vector {
        non_empty(&key("vector"), v)?;
    }
    list("vector_metadata", &t.vector_metadata)?;
    if !t.vector_metadata.is_empty() && t.vector.is_none() {
        return Err(bad("vector_metadata", "needs `vector`: metadata is attached to each vector".into()));
    }
    if let Some(j) = t.vector_metadata.iter().position(|m| Some(m) == t.vector.as_ref()) {
        return Err(bad(
            &format!("vector_metadata[{j}]"),
            "the vector column cannot be its own metadata".into(),
        ));
    }
    let vector_json = super::vector_metadata::parse(
        at,
        t.vector.is_some(),
        &t.vector_metadata,
        super::vector_metadata::RawJsonKeys {
            paths: t.vector_metadata_paths,
            flatten: t.vector_metadata_flatten,
            omit: t.vector_metadata_omit,
            separator: t.vector_metadata_separator,
        },
    )?;
    let vector_flags = super::vector_metadata::parse_flags(
        at,
        t.vector.is_some(),
        &t.vector_metadata,
        &vector_json,
        t.vector_metadata_flags,
    )?;
    list("vector_metadata_indexes", &t.vector_metadata_indexes)?;
    for (j, m) in t.vector_metadata_indexes.iter().enumerate() {
        super::vector_metadata::index_type(m, &t.vector_metadata, &vector_json, &vector_flags)
            .map_err(|e| bad(&format!("vector_metadata_indexes[{j}]"), e))?;
    }
    // Flags are indexed without being listed (they exist to be filtered on).
    let mut indexed: BTreeSet<String> = t.vector_metadata_indexes.iter().cloned().collect();
    indexed.extend(vector_flags.iter().flat_map(|f| f.properties()));
    if indexed.len() > crate::cloudflare::limits::VECTORIZE_MAX_METADATA_INDEXES {
        let flagged: usize = vector_flags.iter().map(|f| f.values.len()).sum();
        return Err(bad(
            if flagged > 0 { "vector_metadata_flags" } else { "vector_metadata_indexes" },
            format!(
                "{} metadata indexes ({} listed in vector_metadata_indexes, {flagged} flags, each flag is \
                 indexed): Vectorize allows at most 10 per index; flag fewer values (the most asked ones) \
                 and post-filter the rest",
                indexed.len(),
                t.vector_metadata_indexes.len()
            ),
        ));
    }
    for (k, v) in [("vector_id", &t.vector_id), ("vector_namespace", &t.vector_namespace)] {
        if let Some(c) = v {
            non_empty(&key(k), c)?;
            if t.vector.is_none() {
                return Err(bad(k, "needs `vector`".into()));
            }
        }
    }
    for (j, m) in t.vector_metadata.iter().enumerate() {
        if let Err(e) = crate::cloudflare::limits::check_metadata_key(m) {
            return Err(bad(
                &format!("vector_metadata[{j}]"),
                format!("`{m}` cannot be a metadata key: {e}"),
            ));
        }
    }
    for (col, ty) in &t.casts {
        non_empty(&key("casts"), col)?;
        non_empty(&key(&format!("casts.{col}")), ty)?;
    }
    // Renames: keys are source columns, values D1 names.
    for (src, d1) in &t.d1_names {
        non_empty(&key("d1_names"), src)?;
        non_empty(&key(&format!("d1_names.{src}")), d1)?;
        check_name("column", d1).map_err(|e| reword(e, key(&format!("d1_names.{src}"))))?;
        if let Some(cols) = &t.d1_columns {
            if !cols.contains(src) {
                return Err(bad(
                    &format!("d1_names.{src}"),
                    format!(
                        "`{src}` is not in d1_columns ({}); rename only columns that go to D1",
                        cols.join(", ")
                    ),
                ));
            }
        }
    }
    let d1_name = |c: &String| t.d1_names.get(c).cloned().unwrap_or_else(|| c.clone());
    let d1_columns = match &t.d1_columns {
        None => None,
        Some(cols) => {
            if cols.is_empty() {
                return Err(bad(
                    "d1_columns",
                    "list at least the key columns, or leave it out for all".into(),
                ));
            }
            list("d1_columns", cols)?;
            let mut d1_seen = BTreeMap::new();
            for (j, c) in cols.iter().enumerate() {
                let d1 = d1_name(c);
                check_name("column", &d1).map_err(|e| reword(e, key(&format!("d1_columns[{j}]"))))?;
                if let Some(prev) = d1_seen.insert(d1.to_ascii_lowercase(), c) {
                    return Err(bad(
                        &format!("d1_columns[{j}]"),
                        format!("`{c}` and `{prev}` would both be `{d1}` in D1"),
                    ));
                }
            }
            if cols.len() > 100 {
                return Err(bad(
                    "d1_columns",
                    format!("{} columns: a D1 table holds at most 100", cols.len()),
                ));
            }
            for (j, k) in t.primary_key.iter().flatten().enumerate() {
                if !cols.contains(k) {
                    return Err(bad(
                        &format!("primary_key[{j}]"),
                        format!(
                            "key column `{k}` must be in d1_columns: upserts and resumable loads need it"
                        ),
                    ));
                }
            }
            Some(cols.iter().map(|c| ColumnMapping { source: c.clone(), d1: d1_name(c) }).collect())
        }
    };
    let renames = match d1_columns {
        Some(_) => Vec::new(),
        None => t.d1_names.iter().map(|(s, d)| ColumnMapping { source: s.clone(), d1: d.clone() }).collect(),
    };
    Ok(TableMapping {
        setting: at.to_string(),
        schema,
        table: name,
        primary_key: t.primary_key,
        cursor: t.cursor,
        soft_delete: t.soft_delete,
        d1_table,
        d1_columns,
        renames,
        vector: t.vector,
        vector_metadata: t.vector_metadata,
        vector_id: t.vector_id,
        vector_namespace: t.vector_namespace,
        vector_metadata_indexes: t.vector_metadata_indexes,
        vector_json,
        vector_flags,
        casts: t.casts.into_iter().collect(),
    })
}

/// The environment over the file: account id, API base URL, token.
fn apply_env(p: &mut Project, env: EnvLookup) -> Result<()> {
    if let Some(a) = env("CLOUDFLARE_ACCOUNT_ID") {
        p.cloudflare.account_id = Some(a);
    }
    if let Some(u) = env("CLOUDFLARE_API_BASE_URL") {
        p.cloudflare.api_base_url = api_base_url("CLOUDFLARE_API_BASE_URL", &u)?;
    }
    p.cloudflare.api_token = env("CLOUDFLARE_API_TOKEN");
    Ok(())
}

/// Checks an API base URL: http(s), including `/client/v4`; one trailing
/// slash is dropped because every request path is appended to it.
pub fn api_base_url(setting: &str, text: &str) -> Result<String> {
    let trimmed = text.strip_suffix('/').unwrap_or(text);
    let ok = url::Url::parse(trimmed)
        .map(|u| {
            matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.path().ends_with("/client/v4")
        })
        .unwrap_or(false);
    if !ok {
        return Err(Error::Config {
            setting: setting.into(),
            message: format!(
                "`{text}` should be an http(s) URL ending in /client/v4, e.g. {DEFAULT_API_BASE_URL}"
            ),
        });
    }
    Ok(trimmed.to_string())
}

fn non_empty(setting: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::Config { setting: setting.into(), message: "must not be empty".into() });
    }
    Ok(())
}

fn opt_non_empty(setting: &str, value: Option<String>) -> Result<Option<String>> {
    if let Some(v) = &value {
        non_empty(setting, v)?;
    }
    Ok(value)
}

/// Re-points an error at the key it came from.
fn reword(e: Error, setting: String) -> Error {
    match e {
        Error::Config { message, .. } => Error::Config { setting, message },
        other => other,
    }
}
