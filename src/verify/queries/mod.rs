//! "Results match Supabase": each `[[queries]]` shape replayed on both
//! stacks. The Supabase side is exact (Postgres evaluates the filter, the
//! top k is computed from the source's vectors, [`exact`]); the Cloudflare
//! side asks Vectorize as the layout says and reads the context from D1
//! ([`cloud`]); [`explain`] compares them and names the reason of every
//! miss. This file resolves the shapes against the catalog and chooses the
//! queries; [`shapes_run`] replays each shape as those steps.

pub mod cloud;
pub mod exact;
pub mod explain;
pub mod input;
pub mod report;
mod resolved;
mod shapes_run;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use self::input::QueryVec;
use self::report::ShapesReport;
use self::resolved::{rows_by_id, Resolved};
use self::shapes_run::ShapesRun;
use super::parity::{Chooser, Collecting, Metric};
use super::run::{open_d1, Verification};
use crate::cloudflare::vectorize_filter::{IndexType, Indexed};
use crate::config::queries::QueryShape;
use crate::error::{Error, Result};

impl Verification<'_> {
    /// The query-shapes section, when pgflare.toml has `[[queries]]` (and
    /// `--queries` is not 0, or a query file is given).
    pub(in crate::verify) async fn query_shapes(&self, d1_path: &Path) -> Result<Option<ShapesReport>> {
        let shapes = &self.opts.project.queries;
        let Some(index) = &self.opts.vectorize else { return Ok(None) };
        if shapes.is_empty() {
            return match &self.opts.query_file {
                Some(_) => Err(no_shapes()),
                None => Ok(None),
            };
        }
        if self.opts.queries == 0 && self.opts.query_file.is_none() {
            return Ok(None);
        }
        let before = self.opts.api.as_ref().map_or(0, |a| a.requests_sent());
        let resolved = shapes.iter().map(|s| self.resolve(s)).collect::<Result<Vec<_>>>()?;
        let metric = index.config().await?.map(|c| Metric::parse(&c.metric)).unwrap_or(Metric::Cosine);
        let indexes: BTreeMap<String, Indexed> = index
            .metadata_indexes()
            .await?
            .into_iter()
            .filter_map(|(p, t)| Some((p, Indexed { index_type: IndexType::parse(&t)?, created_seq: -1 })))
            .collect();
        let (queries, from) = match &self.opts.query_file {
            Some(p) => (input::read_query_file(p, shapes)?, format!("query file {}", p.display())),
            None => (self.sample_queries(&resolved).await?, "sampled from the source".to_string()),
        };
        let run = ShapesRun { v: self, index, metric, indexes, d1: open_d1(d1_path)? };
        let mut reports = Vec::new();
        for (n, r) in resolved.iter().enumerate() {
            let mine: Vec<&QueryVec> = queries.iter().filter(|q| q.shape == n).collect();
            reports.push(run.shape(r, &mine).await?);
        }
        let requests = self.opts.api.as_ref().map_or(0, |a| a.requests_sent()) - before;
        Ok(Some(ShapesReport { queries_from: from, requests, shapes: reports }))
    }

    /// Checks every shape against the catalog before any table is read, so
    /// a mistake in `[[queries]]` costs nothing.
    pub(in crate::verify) fn check_query_shapes(&self) -> Result<()> {
        let shapes = &self.opts.project.queries;
        if self.opts.vectorize.is_none() || (shapes.is_empty() && self.opts.query_file.is_none()) {
            return Ok(());
        }
        if shapes.is_empty() {
            return Err(no_shapes());
        }
        let resolved = shapes.iter().map(|s| self.resolve(s)).collect::<Result<Vec<_>>>()?;
        if let Some(p) = &self.opts.query_file {
            for (n, q) in input::read_query_file(p, shapes)?.iter().enumerate() {
                let dims = resolved[q.shape].vm.dims.map(|d| d as usize);
                if dims.is_some_and(|d| d != q.vector.len()) {
                    return Err(Error::Config {
                        setting: format!("{}: query {}", p.display(), n + 1),
                        message: format!(
                            "the vector has {} values; the index holds vectors of {}",
                            q.vector.len(),
                            dims.unwrap_or_default()
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn resolve<'s>(&'s self, shape: &'s QueryShape) -> Result<Resolved<'s>> {
        let q = shape.qualified();
        let not_read = || Error::Config {
            setting: format!("{}.table", shape.setting),
            message: format!("{q} is not among the tables this verify reads (--table?)"),
        };
        let info = self.prepared.infos.iter().find(|i| i.spec.qualified() == q).ok_or_else(not_read)?;
        let vm = self.prepared.vectors.mappings.0.get(&q).ok_or_else(not_read)?;
        let mapping = self
            .opts
            .project
            .tables
            .iter()
            .find(|t| t.schema == shape.schema && t.table == shape.table)
            .ok_or_else(not_read)?;
        crate::config::queries_check::check(shape, &info.spec, mapping)?;
        let d1 = &self.shapes.get(&q).ok_or_else(not_read)?.table;
        let name = |c: &str| {
            d1.d1_name(c).map(str::to_string).ok_or_else(|| Error::Config {
                setting: shape.setting.clone(),
                message: format!("`{c}` of {q} is not a D1 column"),
            })
        };
        Ok(Resolved {
            shape,
            info,
            vm,
            d1_table: d1.name.clone(),
            d1_id: name(&vm.id)?,
            d1_context: shape.context.iter().map(|c| name(c)).collect::<Result<_>>()?,
            d1_post: shape
                .filters
                .iter()
                .filter(|f| f.vectorize == crate::config::queries::FilterForm::Post)
                .map(|f| Ok((f.column.clone(), name(&f.column)?)))
                .collect::<Result<_>>()?,
        })
    }

    /// `--queries` vectors per shape, chosen like the parity queries, each
    /// with the filter values of its own row (rows without are passed over).
    async fn sample_queries(&self, resolved: &[Resolved<'_>]) -> Result<Vec<QueryVec>> {
        let n = self.opts.queries;
        let mut out = Vec::new();
        let mut conn = crate::source::snapshot::join(self.src, &self.snapshot_id).await?;
        for (shape_at, r) in resolved.iter().enumerate() {
            let table = r.info.spec.qualified();
            let want = n * 4;
            let chosen = self
                .parity_pass(
                    &table,
                    "query vectors",
                    Arc::new(move || Collecting::Choose(Chooser::new(want))),
                )
                .await?;
            let mut chooser = Chooser::new(want);
            chosen.into_iter().for_each(|c| {
                if let Collecting::Choose(c) = c {
                    chooser.merge(c)
                }
            });
            let chosen = chooser.chosen();
            let ids: Vec<String> = chosen.iter().map(|(id, _)| id.clone()).collect();
            let cols: Vec<String> = r.shape.filters.iter().map(|f| f.column.clone()).collect();
            let rows =
                rows_by_id(&mut conn, &r.info.spec, &r.vm.id, &ids, &cols, "to_jsonb({})::text").await?;
            for (id, vector) in chosen {
                if out.iter().filter(|q: &&QueryVec| q.shape == shape_at).count() >= n {
                    break;
                }
                let Some(row) = rows.get(&id) else { continue };
                let row: Map<String, Value> = cols
                    .iter()
                    .zip(row)
                    .map(|(c, v)| {
                        (
                            c.clone(),
                            v.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null),
                        )
                    })
                    .collect();
                if let Some(filter) = input::sampled_filter(r.shape, &row, &r.vm.flags) {
                    out.push(QueryVec { shape: shape_at, id, vector, filter });
                }
            }
        }
        Ok(out)
    }
}

fn no_shapes() -> Error {
    Error::Config {
        setting: "--query-file".into(),
        message: "pgflare.toml has no [[queries]]: describe the service's query first (README, \"Results match Supabase\")".into(),
    }
}
