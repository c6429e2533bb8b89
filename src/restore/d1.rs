//! `restore` into D1 and Vectorize: rows through the same D1 writers as
//! `load` ([`crate::plan::Target`]) and vectors through its Vectorize
//! sinks, mapped as `load` maps them ([`crate::plan::map_tables`]): by the
//! pgflare.toml when there is one, else every column but a vector column
//! under its own name. Tables are written parents first; keys on a cycle
//! are set after every table is in, as `load` does. A run ends once
//! Vectorize applied its writes.
//!
//! Upserts make a rerun after a failure safe (it writes every row again).
//! With pgflare.toml's soft deletes, the rows `load` would leave out
//! (marked deleted, or below a deleted parent) are found in the archive
//! itself ([`crate::plan::live_archive`]) and left out too.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;

use super::{RestoreOptions, RestoreSummary, TableRestored};
use crate::batch::sink::{BatchSink, SinkFactory, SinkReport};
use crate::batch::TableBatch;
use crate::cloudflare::limits::D1_MAX_STATEMENT_BYTES;
use crate::cloudflare::vectorize::WriteTicket;
use crate::digest::buckets::identity;
use crate::digest::row_digests;
use crate::error::{Error, Result};
use crate::plan::live::LiveRows;
use crate::plan::live_archive::Hidden;
use crate::plan::target::OpenTarget;
use crate::plan::vectors::{OpenVectors, VectorPlan};
use crate::plan::{Target, VectorTarget};
use crate::progress::Progress;
use crate::sink::d1::link_spool::LinkSpool;
use crate::sink::d1::linker::{self, LinkTarget};
use crate::sink::d1::render::D1Mappings;
use crate::source::archive::manifest::{Manifest, ManifestTable};
use crate::source::archive::{table_batches, table_info};
use crate::source::TableInfo;

/// What `restore` writes into, for D1.
pub struct D1To<'a> {
    pub target: &'a Target,
    pub vectorize: &'a VectorTarget,
    pub create_tables: bool,
}

pub async fn run(
    opts: &RestoreOptions,
    manifest: &Manifest,
    tables: &[&ManifestTable],
    to: &D1To<'_>,
    progress: &Progress,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let mut infos: Vec<TableInfo> = tables
        .iter()
        .map(|t| table_info(t, &opts.dir.join(crate::source::archive::manifest::FILE_NAME)))
        .collect::<Result<_>>()?;
    let hidden = Arc::new(hidden_rows(opts, manifest)?);
    let vectors_on = !matches!(to.vectorize, VectorTarget::Off);
    let mapped = crate::plan::map_tables(&opts.project, &mut infos, vectors_on)?;
    let targets = open_targets(opts, to, &infos, &mapped, progress).await?;
    let mut restored = Vec::new();
    let mut last_write = None;
    // Parents first, so that D1's foreign keys never refuse a row.
    for &i in mapped.fks.waves.iter().flatten() {
        let t = tables[i];
        let (report, not_live) =
            write_table(&opts.dir, t, targets.sinks.clone(), hidden.clone(), progress).await?;
        last_write = last_write.max(report.vectors.pending_write);
        let has_vectors = targets.plan.mappings.0.contains_key(&t.spec.qualified());
        restored.push(TableRestored {
            table: t.spec.qualified(),
            target_table: mapped.mappings[i].table.clone(),
            rows: report.rows,
            files: t.files.len(),
            not_live,
            vectors: has_vectors.then_some(report.vectors),
        });
    }
    if let Some(spool) = &targets.spool {
        set_links(&targets.d1.link_target(), spool, &infos, &mapped.mappings, tables, progress).await?;
        LinkSpool::clear(&spool.dir)?;
    }
    // Done once Vectorize applied the last write (it applies them in order).
    if let (Some(index), Some(t)) = (targets.vectors.as_ref().and_then(|v| v.index.as_ref()), last_write) {
        let status = progress.spinner("vectorize");
        let show = move |m: &str| status.set_message(m.to_string());
        index.wait_applied(WriteTicket(t), opts.project.vectorize.wait_timeout, &show).await?;
    }
    Ok(RestoreSummary {
        archive: opts.dir.display().to_string(),
        target: to.target.describe(),
        vectorize: targets.vector_target.describe(),
        snapshot_taken_at: manifest.snapshot.taken_at.clone(),
        rows: restored.iter().map(|t| t.rows).sum(),
        tables: restored,
        files_already_copied: 0,
        left_out: Vec::new(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The opened targets of a restore and the sinks every file goes through.
struct Targets {
    d1: OpenTarget,
    vector_target: VectorTarget,
    plan: VectorPlan,
    vectors: Option<OpenVectors>,
    /// Foreign keys on a cycle: rows are written with a placeholder and
    /// their links kept here, set once every table is in (as load).
    spool: Option<LinkSpool>,
    sinks: Arc<dyn SinkFactory>,
}

/// Opens D1 and Vectorize (one API client: they share the request
/// budget), clears what an earlier restore left in files, applies the
/// schema, and tees the writers.
async fn open_targets(
    opts: &RestoreOptions,
    to: &D1To<'_>,
    infos: &[TableInfo],
    mapped: &crate::plan::Mapped,
    progress: &Progress,
) -> Result<Targets> {
    let vector_target =
        if mapped.vectors.mappings.0.is_empty() { VectorTarget::Off } else { to.vectorize.clone() };
    let api = match (to.target, &vector_target) {
        (Target::Api { settings, .. }, _) | (_, VectorTarget::Api { settings, .. }) => {
            Some(Arc::new(crate::cloudflare::Api::new(settings.clone())?.with_progress(progress.clone())))
        }
        _ => None,
    };
    let d1 = to.target.open(d1_mappings_of(infos, &mapped.mappings), api.clone())?;
    let mut plan = mapped.vectors.clone();
    let vectors =
        crate::plan::vectors::open(&vector_target, &mut plan, &opts.project.vectorize, api, progress, false)
            .await?;
    d1.clear_previous_output()?;
    if to.create_tables {
        d1.apply_schema(&crate::sink::d1::migration::migration_sql(&mapped.d1)?).await?;
    }
    let spool = mapped.fks.any_links().then(|| LinkSpool {
        dir: std::env::temp_dir().join(format!("pgflare-restore-links-{}", std::process::id())),
        mappings: d1_mappings_of(infos, &mapped.mappings),
        keep_nulls: false,
    });
    if let Some(s) = &spool {
        LinkSpool::clear(&s.dir)?;
    }
    let mut sinks_of: Vec<Arc<dyn SinkFactory>> = vec![d1.sinks()];
    sinks_of.extend(spool.clone().map(|s| Arc::new(s) as Arc<dyn SinkFactory>));
    sinks_of.extend(vectors.as_ref().map(|v| v.sinks.clone()));
    let sinks: Arc<dyn SinkFactory> = Arc::new(crate::sink::tee::Tee(sinks_of));
    Ok(Targets { d1, vector_target, plan, vectors, spool, sinks })
}

fn d1_mappings_of(infos: &[TableInfo], mappings: &[crate::sink::d1::render::D1Mapping]) -> D1Mappings {
    D1Mappings(infos.iter().zip(mappings).map(|(i, m)| (i.spec.qualified(), m.clone())).collect())
}

/// Sets the links the spool kept, table by table and file by file.
async fn set_links(
    target: &LinkTarget,
    spool: &LinkSpool,
    infos: &[TableInfo],
    mappings: &[crate::sink::d1::render::D1Mapping],
    tables: &[&ManifestTable],
    progress: &Progress,
) -> Result<()> {
    for ((info, mapping), t) in infos.iter().zip(mappings).zip(tables) {
        if mapping.links.is_empty() {
            continue;
        }
        let bar = progress.rows(&format!("links {}", info.spec.name), None);
        for p in 0..t.files.len() {
            let path = LinkSpool::path(&spool.dir, &info.spec, p);
            let r = linker::apply(target, &path, &info.spec, mapping, p, D1_MAX_STATEMENT_BYTES).await?;
            bar.inc(r.rows);
        }
        bar.finish();
    }
    Ok(())
}

/// Sends every file of `t` through `sinks`, a file per partition, on a
/// blocking thread (the writers block on the API client's runtime).
/// Which archived rows are not live under pgflare.toml's soft deletes,
/// read from the archive (every table of it: a parent outside `--table`
/// still hides its children).
fn hidden_rows(opts: &RestoreOptions, manifest: &Manifest) -> Result<Hidden> {
    let path = opts.dir.join(crate::source::archive::manifest::FILE_NAME);
    let all: Vec<TableInfo> = manifest.tables.iter().map(|t| table_info(t, &path)).collect::<Result<_>>()?;
    let live = LiveRows::new(&opts.project, &all.iter().collect::<Vec<_>>());
    crate::plan::live_archive::hidden_rows(&live, &mut |spec, each| match manifest
        .tables
        .iter()
        .find(|t| t.spec.qualified() == spec.qualified())
    {
        Some(t) => table_batches(&opts.dir, t, |_, batch| each(&batch)),
        None => Ok(()),
    })
}

/// Writes the archived rows of `t` but the `hidden` ones; returns what the
/// sinks wrote and how many rows were left out.
async fn write_table(
    dir: &std::path::Path,
    t: &ManifestTable,
    sinks: Arc<dyn SinkFactory>,
    hidden: Arc<Hidden>,
    progress: &Progress,
) -> Result<(SinkReport, u64)> {
    let (dir, t) = (dir.to_path_buf(), t.clone());
    let bar = progress.rows(&t.spec.qualified(), Some(t.rows));
    let task = tokio::task::spawn_blocking(move || -> Result<(SinkReport, u64)> {
        let spec = Arc::new(t.spec.clone());
        let (hidden, key) = (hidden.of(&spec.qualified()), spec.key_indices());
        let mut not_live = 0u64;
        // Files come in order: a new partition finishes the one before.
        let mut open: Option<(usize, Box<dyn BatchSink>)> = None;
        let mut report = SinkReport::default();
        table_batches(&dir, &t, |partition, batch| {
            if open.as_ref().is_some_and(|(p, _)| *p != partition) {
                if let Some((_, done)) = open.take() {
                    report.merge(done.finish()?);
                }
            }
            if open.is_none() {
                open = Some((partition, sinks.open(&spec, partition)?));
            }
            bar.inc(batch.num_rows() as u64);
            let batch = match hidden {
                Some(h) => {
                    let (kept, left) = leave_out(batch, &key, h)?;
                    not_live += left;
                    kept
                }
                None => batch,
            };
            match open.as_mut() {
                Some((_, sink)) => sink.write(&TableBatch { table: spec.clone(), partition, batch }),
                None => Err(Error::Internal("a restore partition without a sink".into())),
            }
        })?;
        if let Some((_, done)) = open.take() {
            report.merge(done.finish()?);
        }
        bar.finish();
        Ok((report, not_live))
    });
    task.await.map_err(|e| Error::Internal(format!("a restore worker died: {e}")))?
}

/// `batch` without the rows whose identity is in `hidden`, and how many.
fn leave_out(batch: RecordBatch, key: &[usize], hidden: &HashSet<Vec<u8>>) -> Result<(RecordBatch, u64)> {
    let digests = row_digests(&batch)?;
    let mut mask = Vec::with_capacity(batch.num_rows());
    for (row, d) in digests.iter().enumerate() {
        mask.push(!hidden.contains(&identity(&batch, key, row, d)?));
    }
    let left = mask.iter().filter(|m| !**m).count() as u64;
    match left {
        0 => Ok((batch, 0)),
        _ => Ok((filter_record_batch(&batch, &BooleanArray::from(mask))?, left)),
    }
}
