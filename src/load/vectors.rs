//! The Vectorize side of a load: where vectors go ([`VectorTarget`]),
//! getting the index ready before the first vector (it exists with the
//! right dimensions and metric, its metadata indexes are created and
//! applied, so every vector is filterable), and the sink that writes them.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cloudflare::vectorize::IndexConfig;
use crate::cloudflare::{Api, Vectorize};
use crate::config::project::VectorizeSettings;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sink::vectorize::api::VectorizeApiConfig;
use crate::sink::vectorize::files::VectorizeFilesConfig;
use crate::sink::vectorize::VectorMappings;
use crate::sink::SinkFactory;

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
}

/// Opens the Vectorize side: for the API, makes the index ready first.
pub async fn open(
    target: &VectorTarget,
    plan: &mut VectorPlan,
    settings: &VectorizeSettings,
    api: Option<Arc<Api>>,
    progress: &Progress,
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
            Ok(Some(OpenVectors { sinks: Arc::new(c), index: None, files_dir: Some(dir.clone()) }))
        }
        VectorTarget::Api { settings: api_settings, index } => {
            let api = match api {
                Some(a) => a,
                None => Arc::new(Api::new(api_settings.clone())?),
            };
            let v = Arc::new(Vectorize::new(api, index));
            prepare_index(&v, plan, settings, progress).await?;
            let c = VectorizeApiConfig::new(v.clone(), plan.mappings.clone(), settings.vectors_per_request);
            Ok(Some(OpenVectors { sinks: Arc::new(c), index: Some(v), files_dir: None }))
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
