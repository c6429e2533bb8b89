//! What a load leaves for `pgflare sync`: the checkpoint sync starts from
//! (in D1, or for the `files` target in a local state file), with the
//! tables, what the vectors look like and the index they are in; and,
//! whenever the load writes vectors, no records of earlier syncs about
//! the index (digests of vectors sent, ids holding none: see
//! `sync::held`), which the load's writes make stale.

use super::{LoadOptions, Prepared, VectorTarget};
use crate::cloudflare::Vectorize;
use crate::error::Result;
use crate::plan::access::D1Access;
use crate::plan::target::OpenTarget;
use crate::state::checkpoint::{Checkpoint, IndexRef, Position};
use crate::state::store::{files_state_path, Store};

/// Where sync keeps its state for this load's target.
fn sync_d1(target: &OpenTarget, opts: &LoadOptions) -> Result<Option<D1Access>> {
    Ok(match (target.d1_access(), target) {
        (Some(d1), _) => Some(d1),
        // Files: the sync state is a local file next to the load's state.
        (None, OpenTarget::Files(c)) => {
            Some(D1Access::Sqlite(crate::sink::d1::sqlite::D1SqliteConfig::open(
                &files_state_path(&opts.state_dir, &c.dir),
                Default::default(),
            )?))
        }
        (None, _) => None,
    })
}

/// Before a load writes vectors (and again once it wrote them, in
/// [`hand_over`], for a sync that ran meanwhile): a sync trusting its
/// records would take a vector the load rewrote as unchanged, or one the
/// load wrote as absent, and leave the index stale.
pub(super) async fn forget_sync_records(target: &OpenTarget, opts: &LoadOptions) -> Result<()> {
    let Some(d1) = sync_d1(target, opts)? else { return Ok(()) };
    Store::D1(d1.clone()).prepare().await?;
    crate::state::held::forget_all(&d1).await
}

/// A finished load of every configured table into D1 (`sqlite` or `api`)
/// leaves the sync checkpoint in D1: sync continues from the load's first
/// snapshot, on any machine. A fresh load replaces an earlier checkpoint;
/// a resumed one keeps it (it may be a sync's, which is newer).
pub(super) async fn hand_over(
    target: &OpenTarget,
    prepared: &Prepared,
    opts: &LoadOptions,
    done: &super::state::LoadState,
    resumed: bool,
    index: Option<&Vectorize>,
) -> Result<Option<String>> {
    let sends = !matches!(opts.vectorize, VectorTarget::Off) && !prepared.vectors.mappings.0.is_empty();
    if sends {
        forget_sync_records(target, opts).await?;
    }
    let Some(d1) = sync_d1(target, opts)? else { return Ok(None) };
    if !opts.only_tables.is_empty() && opts.only_tables.len() < opts.project.tables.len() {
        return Ok(None);
    }
    let store = Store::D1(d1.clone());
    store.prepare().await?;
    if resumed && store.read().await?.is_some() {
        return Ok(Some(store.describe()));
    }
    // D1's rows were (re)written: key buckets saved by earlier syncs no longer hold.
    crate::state::ranges::forget(&d1).await?;
    let fp = crate::state::fingerprint::fingerprint(prepared, &opts.project);
    let mut checkpoint = Checkpoint::new(&fp.current, Position::of(&done.first_snapshot)?, "load");
    // `load --slot`: the follower starts at the slot's consistent point,
    // which is the first run's snapshot.
    checkpoint.follow = done.follow.clone();
    checkpoint.vectorize =
        Some(crate::state::fingerprint::vectorize_fingerprint(prepared, &opts.project, sends).current);
    checkpoint.vectorize_index = IndexRef::of(&opts.vectorize).filter(|_| sends);
    if let (Some(i), Some(v)) = (checkpoint.vectorize_index.as_mut(), index) {
        i.created_on = v.created_on().await?;
    }
    store.write(&checkpoint).await?;
    Ok(Some(store.describe()))
}
