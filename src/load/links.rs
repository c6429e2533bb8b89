//! The load's link step (see `sink::d1::links`): while ranges load, each
//! row's link values are kept in a spool folder next to the state file
//! (`load-<target>-<hash>.links/`); once every range of every wave is
//! done, each range's links are set, and the range is recorded as linked
//! in the state file. A load killed during the link step resumes with
//! the ranges not yet linked (the updates are idempotent, so a range cut
//! off halfway is simply sent again); the load is complete only after.

use std::path::Path;

use super::state::StateFile;
use super::Prepared;
use crate::cloudflare::limits::D1_MAX_STATEMENT_BYTES;
use crate::error::Result;
use crate::progress::Progress;
use crate::sink::d1::link_spool::LinkSpool;
use crate::sink::d1::linker::{self, LinkTarget};
use crate::sink::d1::render::D1Mappings;

/// The spool of a load whose tables have links (`None` otherwise); a
/// fresh load starts from an empty one.
pub fn spool(state_path: &Path, prepared: &Prepared, resumed: bool) -> Result<Option<LinkSpool>> {
    if !prepared.fks.any_links() {
        return Ok(None);
    }
    let dir = state_path.with_extension("links");
    if !resumed {
        LinkSpool::clear(&dir)?;
    }
    let mappings = D1Mappings(
        prepared.infos.iter().zip(&prepared.mappings).map(|(i, m)| (i.spec.qualified(), m.clone())).collect(),
    );
    Ok(Some(LinkSpool { dir, mappings, keep_nulls: false }))
}

/// Sets the links of every range not linked yet; all ranges must be done.
pub async fn link_all(
    state: &StateFile,
    target: &LinkTarget,
    dir: &Path,
    prepared: &Prepared,
    progress: &Progress,
) -> Result<()> {
    let snap = state.snapshot()?;
    for (i, t) in snap.tables.iter().enumerate() {
        let (spec, mapping) = (&prepared.infos[i].spec, &prepared.mappings[i]);
        let todo: Vec<usize> =
            t.partitions.iter().filter(|p| p.done && !p.linked).map(|p| p.range.index).collect();
        if mapping.links.is_empty() || todo.is_empty() {
            continue;
        }
        // Counts rows whose links are set (rows without one are not sent).
        let bar = progress.rows(&format!("links {}", spec.name), None);
        for p in todo {
            let spool = LinkSpool::path(dir, spec, p);
            let report = linker::apply(target, &spool, spec, mapping, p, D1_MAX_STATEMENT_BYTES).await?;
            bar.inc(report.rows);
            state.partition_linked(&t.table, p, report)?;
        }
        bar.finish();
    }
    Ok(())
}
