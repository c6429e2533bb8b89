//! The starting `pgflare.toml` that `pgflare init` writes from the source
//! catalog: one `[[tables]]` per table, parents first, with guesses a user
//! would otherwise type by hand (the sync cursor, the vector column, small
//! columns worth copying into Vectorize metadata) and a comment on every
//! key. The text is built by hand rather than serialized so it can carry
//! those comments; `pgflare init` parses it back before writing it.

pub mod filters;
pub mod json;
pub mod run;
pub mod survey;

use std::fmt::Write as _;

use crate::batch::ColumnSpec;
use crate::config::project::{ColumnMapping, TableMapping};
use crate::config::toml_text::{quote, toml_key};
use crate::config::vector_metadata::{JsonMetadata, PathProperty};
use crate::source::TableInfo;
use crate::typemap::Kind;
use survey::JsonSurvey;

/// The mapping `init` suggests for one table (`surveys`: its json/jsonb
/// columns' keys, for the JSON metadata proposal; `arrays`: its text-array
/// columns' frequent values, from [`filters::survey_arrays`], for flags).
pub fn suggest(
    info: &TableInfo,
    setting: String,
    surveys: &[JsonSurvey],
    arrays: &[crate::source::filter_fit::ColumnSurvey],
) -> TableMapping {
    let spec = &info.spec;
    let vector = vector_column(spec);
    let vector_metadata = match &vector {
        Some(_) => spec
            .columns
            .iter()
            .filter(|c| !spec.primary_key.contains(&c.name) && small_metadata(c))
            .map(|c| c.name.clone())
            .collect(),
        None => Vec::new(),
    };
    let d1_columns = spec
        .columns
        .iter()
        .filter(|c| Some(&c.name) != vector.as_ref())
        .map(|c| ColumnMapping { source: c.name.clone(), d1: c.name.clone() })
        .collect();
    let choices = match &vector {
        Some(_) => json::propose(surveys, &vector_metadata),
        None => Vec::new(),
    };
    let paths = json::properties(&choices);
    let separator = JsonMetadata::default().separator;
    // Flags need free metadata indexes: with a tags array to flag, the
    // scalar columns keep three.
    let mut indexes = metadata_indexes(spec, &vector_metadata, &json::common(&choices));
    if !filters::flags(&vector_metadata, arrays, 0, &separator).is_empty() {
        indexes.truncate(filters::SCALAR_INDEXES_WITH_FLAGS);
    }
    let vector_flags = filters::flags(&vector_metadata, arrays, indexes.len(), &separator);
    TableMapping {
        setting,
        schema: spec.schema.clone(),
        table: spec.name.clone(),
        primary_key: (!spec.primary_key.is_empty()).then(|| spec.primary_key.clone()),
        cursor: guess_cursor(&spec.columns),
        soft_delete: None,
        d1_table: spec.name.clone(),
        d1_columns: Some(d1_columns),
        renames: Vec::new(),
        vector_metadata_indexes: indexes,
        vector,
        vector_metadata,
        vector_id: None,
        vector_namespace: None,
        vector_json: JsonMetadata { paths, separator, ..JsonMetadata::default() },
        vector_flags,
        casts: spec.columns.iter().filter_map(|c| c.cast.clone().map(|t| (c.name.clone(), t))).collect(),
    }
}

/// The vector/halfvec column that feeds Vectorize: the first one.
pub(crate) fn vector_column(spec: &crate::batch::TableSpec) -> Option<String> {
    spec.columns
        .iter()
        .find(|c| matches!(c.ty.kind, Kind::Vector | Kind::Halfvec) && !c.ty.array)
        .map(|c| c.name.clone())
}

/// Metadata properties worth a Vectorize metadata index (filterable):
/// short scalar columns, then typed JSON path properties, up to
/// Vectorize's 10. Ids (`*_id`) first: a RAG query usually filters by
/// document (or tenant).
fn metadata_indexes(
    spec: &crate::batch::TableSpec,
    metadata: &[String],
    paths: &[PathProperty],
) -> Vec<String> {
    let mut names: Vec<&String> = metadata
        .iter()
        .filter_map(|m| spec.column(m))
        .filter(|c| c.ty.metadata_form().and_then(|f| f.index_type()).is_some())
        .map(|c| &c.name)
        .chain(paths.iter().filter(|p| p.ty.is_some()).map(|p| &p.name))
        .collect();
    names.sort_by_key(|n| !(n.ends_with("_id") || n.as_str() == "id"));
    names.into_iter().take(crate::cloudflare::limits::VECTORIZE_MAX_METADATA_INDEXES).cloned().collect()
}

/// A timestamp column named like a last-change time.
fn guess_cursor(columns: &[ColumnSpec]) -> Option<String> {
    const NAMES: [&str; 6] =
        ["updated_at", "modified_at", "last_modified", "updated", "modified", "changed_at"];
    let is_ts = |c: &&ColumnSpec| matches!(c.ty.kind, Kind::Timestamp | Kind::Timestamptz) && !c.ty.array;
    let by_rank = |c: &ColumnSpec| NAMES.iter().position(|n| c.name.eq_ignore_ascii_case(n));
    columns
        .iter()
        .filter(is_ts)
        .filter_map(|c| by_rank(c).map(|r| (r, c)))
        .min_by_key(|(r, _)| *r)
        .or_else(|| {
            columns
                .iter()
                .filter(is_ts)
                .find(|c| {
                    let n = c.name.to_ascii_lowercase();
                    n.contains("updated") || n.contains("modified")
                })
                .map(|c| (0, c))
        })
        .map(|(_, c)| c.name.clone())
}

/// Columns small enough for Vectorize metadata (10 KiB per vector): numbers,
/// booleans, ids, timestamps, short strings and text arrays (tags); not
/// free text, JSON or binary, whose size nothing bounds.
pub(crate) fn small_metadata(c: &ColumnSpec) -> bool {
    if c.ty.array {
        return c.ty.kind == Kind::Text;
    }
    match c.ty.kind {
        Kind::Bool | Kind::Int2 | Kind::Int4 | Kind::Int8 | Kind::Float4 | Kind::Float8 | Kind::Numeric => {
            true
        }
        Kind::Uuid | Kind::Enum | Kind::Date | Kind::Timestamp | Kind::Timestamptz => true,
        // varchar(n) / char(n) with a small n.
        Kind::Text => short_varchar(&c.pg_type),
        _ => false,
    }
}

fn short_varchar(pg_type: &str) -> bool {
    let n =
        pg_type.split_once('(').and_then(|(_, r)| r.strip_suffix(')')).and_then(|n| n.parse::<u32>().ok());
    n.is_some_and(|n| n <= 256)
}

fn array(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", "))
}

const HEAD: &str = "\
# pgflare.toml: which tables `pgflare load` moves from Postgres to Cloudflare D1
# (rows) and Vectorize (embeddings), and how. Written by `pgflare init` from the
# source catalog: review it, then apply the D1 migration it wrote alongside.
# Schema of this file: schemas/pgflare-config.schema.json (in the pgflare repo).
# No secrets here: the API token is read from CLOUDFLARE_API_TOKEN only.

[source]
# The connection URL is best left to DATABASE_URL (or SUPABASE_DB_URL): it
# holds a password. On Supabase use the direct connection (port 5432).
# url = \"postgres://postgres:PASSWORD@db.PROJECT.supabase.co:5432/postgres\"
# Schema of table names written without one.
";

const CLOUDFLARE: &str = "
[cloudflare]
# Where the D1 database and the Vectorize index are. Command-line flags win,
# then CLOUDFLARE_ACCOUNT_ID / CLOUDFLARE_API_BASE_URL, then this section,
# then the wrangler file.
# wrangler = \"wrangler.jsonc\"       # your Worker's wrangler file (relative to this file)
# env = \"staging\"                   # wrangler environment whose bindings apply
# d1_binding = \"DB\"                 # find database_id in the wrangler file by binding...
# d1_database_id = \"00000000-0000-0000-0000-000000000000\"   # ...or give it directly
# vectorize_binding = \"VECTORIZE\"   # find index_name by binding...
# vectorize_index = \"chunks\"        # ...or give it directly
# account_id = \"...\"                # else CLOUDFLARE_ACCOUNT_ID or the wrangler file
# rate_limit = { requests = 1000, window_seconds = 300 }   # the default: Cloudflare allows 1200 per user, shared with wrangler and the dashboard

[vectorize]
# create_index = true          # create the index when missing (dimensions from the column)
# metric = \"cosine\"           # cosine, euclidean or dot-product (when creating)
# on_invalid = \"fail\"         # a row Vectorize would refuse: fail, or skip and list it
# vectors_per_request = 5000   # per upsert request (Cloudflare's maximum)
# wait_timeout_seconds = 900   # how long to wait for Vectorize to apply writes

# One [[tables]] per table, parents before children (D1 checks foreign keys).
";

/// The whole file for `tables` (already in load order), each with the
/// key survey of its json columns.
pub fn config_toml(schema: &str, tables: &[(&TableInfo, &TableMapping, &[JsonSurvey])]) -> String {
    let mut out = String::from(HEAD);
    let _ = writeln!(out, "schema = {}", quote(schema));
    out.push_str(CLOUDFLARE);
    let mut named = Vec::new();
    for (info, m, surveys) in tables {
        let name = if m.schema == schema { m.table.clone() } else { format!("{}.{}", m.schema, m.table) };
        named.push((name.clone(), *info, *m));
        let _ = write!(out, "\n[[tables]]\n# {}", info.spec.qualified());
        if let Some(n) = info.row_estimate {
            let _ = write!(out, ", ~{n} rows");
        }
        out.push('\n');
        let _ =
            writeln!(out, "name = {}   # source table (SCHEMA.TABLE outside [source] schema)", quote(&name));
        match &m.primary_key {
            Some(k) => {
                let _ = writeln!(out, "primary_key = {}   # identifies a row: upserts, resumable loads", array(k));
            }
            None => out.push_str(
                "# primary_key = [\"id\"]   # REQUIRED: the source table has no primary key; name unique columns\n",
            ),
        }
        match &m.cursor {
            Some(c) => {
                let _ = writeln!(out, "cursor = {}   # last-change column a later sync follows", quote(c));
            }
            None => out.push_str(
                "# cursor = \"updated_at\"   # last-change column a later sync follows (none found)\n",
            ),
        }
        let _ = writeln!(out, "d1_table = {}   # table name in D1", quote(&m.d1_table));
        let cols: Vec<String> = m.d1_columns.iter().flatten().map(|c| c.source.clone()).collect();
        let _ = writeln!(out, "# Columns that go to D1, in this order (leave one out to keep it out of D1):");
        let _ = writeln!(out, "d1_columns = {}", array(&cols));
        out.push_str(
            "# d1_names = { column = \"name_in_d1\" }   # rename columns in D1 (source = D1 name)\n",
        );
        match &m.vector {
            Some(v) => {
                let _ = writeln!(
                    out,
                    "vector = {}   # column whose values go to Vectorize (id = the key)",
                    quote(v)
                );
                let _ = writeln!(
                    out,
                    "# Copied into each vector's metadata (Vectorize allows 10 KiB per vector):"
                );
                let _ = writeln!(out, "vector_metadata = {}", array(&m.vector_metadata));
                let _ = writeln!(
                    out,
                    "# Metadata a query can filter on (at most 10; strings indexed to 64 bytes):"
                );
                let _ = writeln!(out, "vector_metadata_indexes = {}", array(&m.vector_metadata_indexes));
                out.push_str(&filters::flags_toml(&m.vector_flags));
                out.push_str(
                    "# vector_id = \"chunk_key\"   # a column to use as vector id instead of the key\n",
                );
                out.push_str(
                    "# vector_namespace = \"tenant\"   # a column whose value is the Vectorize namespace\n",
                );
            }
            None => {
                out.push_str("# vector = \"embedding\"   # a vector/halfvec column to send to Vectorize\n")
            }
        }
        if m.casts.is_empty() {
            out.push_str(
                "# casts = { column = \"text\" }   # read a column through a cast (unsupported types)\n",
            );
        } else {
            let items: Vec<String> =
                m.casts.iter().map(|(c, t)| format!("{} = {}", toml_key(c), quote(t))).collect();
            let _ = writeln!(out, "casts = {{ {} }}   # columns read through a cast", items.join(", "));
        }
        // Last: `[tables.vector_metadata_paths]` takes every key after it.
        if m.vector.is_some() && !surveys.is_empty() {
            let choices = json::propose(surveys, &m.vector_metadata);
            out.push_str(&json::comment(surveys, &choices));
            out.push_str(&json::paths_table(&choices));
        }
    }
    out.push_str(&filters::queries_toml(&named));
    out
}
