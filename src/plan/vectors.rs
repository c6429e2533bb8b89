//! The Vectorize side of a load: where vectors go ([`VectorTarget`]),
//! whether they fit one index ([`check_room`], before anything is
//! written), getting the index ready before the first vector (it exists
//! with the right dimensions and metric, its metadata indexes are created
//! and applied, so every vector is filterable), and the sink that writes
//! them.

use std::path::PathBuf;
use std::sync::Arc;

use crate::batch::sink::SinkFactory;
use crate::cloudflare::vectorize::IndexConfig;
use crate::cloudflare::{Api, Vectorize};
use crate::config::mapping::VectorMappings;
use crate::config::project::VectorizeSettings;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sink::vectorize::api::VectorizeApiConfig;
use crate::sink::vectorize::files::VectorizeFilesConfig;
use crate::sink::vectorize::tails::TailPool;
use crate::source::fit::Finding;
use crate::source::vector_fit;

/// Where a load sends vectors.
// One value per run: boxing the API settings would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum VectorTarget {
    Off,
    Files {
        dir: PathBuf,
    },
    /// Through the same API client as D1 (`--target api`) or one of its own.
    Api {
        settings: crate::cloudflare::ApiSettings,
        index: String,
    },
}

impl VectorTarget {
    /// Names the target (no secrets), or `None` when vectors are not loaded.
    pub fn describe(&self) -> Option<String> {
        match self {
            VectorTarget::Off => None,
            VectorTarget::Files { dir } => {
                Some(format!("vectorize-files:{}", std::path::absolute(dir).unwrap_or(dir.clone()).display()))
            }
            VectorTarget::Api { settings, index } => Some(format!(
                "vectorize-api:{}/accounts/{}/vectorize/v2/indexes/{index}",
                settings.base_url, settings.account_id
            )),
        }
    }
}

/// What the tables ask of Vectorize.
#[derive(Clone, Debug, Default)]
pub struct VectorPlan {
    pub mappings: VectorMappings,
    /// Metadata indexes to create: (property, type).
    pub metadata_indexes: Vec<(String, String)>,
}

/// The opened Vectorize side.
pub struct OpenVectors {
    pub sinks: Arc<dyn SinkFactory>,
    /// The index, for waiting on writes (`api` only).
    pub index: Option<Arc<Vectorize>>,
    pub files_dir: Option<PathBuf>,
    /// The ranges' shared last upserts (`api`, when asked for): flushed by
    /// the caller once the ranges finished.
    pub tails: Option<Arc<TailPool>>,
}

/// Opens the Vectorize side: for the API, makes the index ready first.
/// With `pool_tails`, the ranges' last, partial upserts are packed into
/// shared ones (the load's choice; sync and restore send their own).
pub async fn open(
    target: &VectorTarget,
    plan: &mut VectorPlan,
    settings: &VectorizeSettings,
    api: Option<Arc<Api>>,
    progress: &Progress,
    pool_tails: bool,
) -> Result<Option<OpenVectors>> {
    if plan.mappings.0.is_empty() {
        return Ok(None);
    }
    match target {
        VectorTarget::Off => Ok(None),
        VectorTarget::Files { dir } => {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
            let mut c = VectorizeFilesConfig::new(dir.clone(), plan.mappings.clone());
            c.vectors_per_file = settings.vectors_per_request;
            Ok(Some(OpenVectors {
                sinks: Arc::new(c),
                index: None,
                files_dir: Some(dir.clone()),
                tails: None,
            }))
        }
        VectorTarget::Api { settings: api_settings, index } => {
            let api = match api {
                Some(a) => a,
                None => Arc::new(Api::new(api_settings.clone())?),
            };
            let v = Arc::new(Vectorize::new(api, index));
            prepare_index(&v, plan, settings, progress).await?;
            let c = VectorizeApiConfig::new(v.clone(), plan.mappings.clone(), settings.vectors_per_request);
            let (c, tails) = match pool_tails {
                true => {
                    let (c, pool) = c.with_tail_pool();
                    (c, Some(pool))
                }
                false => (c, None),
            };
            Ok(Some(OpenVectors { sinks: Arc::new(c), index: Some(v), files_dir: None, tails }))
        }
    }
}

/// The index exists with the load's dimensions and metric (created if
/// asked), and its metadata indexes exist and are applied. A vector column
/// without a declared dimension takes the existing index's.
async fn prepare_index(
    v: &Vectorize,
    plan: &mut VectorPlan,
    settings: &VectorizeSettings,
    progress: &Progress,
) -> Result<()> {
    let dims: Vec<Option<u32>> = plan.mappings.0.values().map(|m| m.dims).collect();
    let declared = dims.iter().flatten().copied().next();
    let want_dims = match declared {
        Some(d) => d,
        None => match v.config().await? {
            Some(have) => have.dimensions,
            None => {
                return Err(Error::Config {
                    setting: format!("Vectorize index `{}`", v.index()),
                    message: "does not exist and the vector column declares no dimension (vector, not \
                              vector(N)): set [vectorize] dimensions, create the index with \
                              `wrangler vectorize create` first, or declare the column's dimension in Postgres"
                        .into(),
                })
            }
        },
    };
    for m in plan.mappings.0.values_mut() {
        m.dims = Some(want_dims);
    }
    let want = IndexConfig { dimensions: want_dims, metric: settings.metric.clone() };
    v.ensure(&want, settings.create_index).await?;
    let tickets = v.ensure_metadata_indexes(&plan.metadata_indexes).await?;
    if let Some(last) = tickets.into_iter().max() {
        let bar = progress.spinner("vectorize");
        let b = bar.clone();
        v.wait_applied(last, settings.wait_timeout, &move |m: &str| {
            b.set_message(format!("metadata indexes: {m}"))
        })
        .await?;
        bar.finish_and_clear();
    }
    Ok(())
}

/// Before anything is written: each table's vectors, and their
/// namespaces, fit one index (counted at the load's snapshot, over the rows
/// the load writes). Vectorize refuses writes past its limits, so a load
/// that does not fit would fail partway, with part of the data written.
/// Vectors already in the index are not counted (the load may replace
/// them), nor rows `on_invalid = "skip"` will leave out.
pub async fn check_room(
    conn: &mut crate::source::conn::SourceConn,
    prepared: &super::Prepared,
) -> Result<()> {
    for info in &prepared.infos {
        let Some(m) = prepared.vectors.mappings.get(&info.spec) else { continue };
        let filter = prepared.live.live(&info.spec);
        let room =
            vector_fit::index_room(conn, &info.spec, &m.vector, m.namespace.as_deref(), filter.as_deref())
                .await?;
        if let Some(f) =
            vector_fit::index_findings(&m.vector, m.namespace.as_deref(), &room).into_iter().next()
        {
            return Err(room_refusal(&info.spec.qualified(), f));
        }
    }
    Ok(())
}

fn room_refusal(table: &str, f: Finding) -> Error {
    let what = match f.check {
        "vectorize_namespaces" => "namespaces (distinct values among the rows with a vector)",
        _ => "vectors",
    };
    Error::Config {
        setting: format!("table {table}, column {}", f.column.unwrap_or_default()),
        message: format!(
            "{} {what}, more than Vectorize's limit of {}: the load would fail partway, so nothing was \
             written. What to do: {}",
            f.rows, f.limit, f.advice
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudflare::limits::VECTORIZE_MAX_VECTORS_PER_INDEX;

    #[test]
    fn a_column_over_an_index_limit_is_refused_naming_table_column_count_and_limit() {
        let over =
            vector_fit::IndexRoom { vectors: VECTORIZE_MAX_VECTORS_PER_INDEX + 1, namespaces: Some(3) };
        let f = vector_fit::index_findings("embedding", Some("tenant"), &over);
        let e = room_refusal("public.chunks", f.into_iter().next().expect("over the limit")).to_string();
        let count = (VECTORIZE_MAX_VECTORS_PER_INDEX + 1).to_string();
        for part in
            ["table public.chunks, column embedding", count.as_str(), "vectors per Vectorize index", "split"]
        {
            assert!(e.contains(part), "{part}: {e}");
        }
        let at = vector_fit::IndexRoom { vectors: VECTORIZE_MAX_VECTORS_PER_INDEX, namespaces: Some(3) };
        assert!(vector_fit::index_findings("embedding", Some("tenant"), &at).is_empty());
    }
}
