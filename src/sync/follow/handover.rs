//! Where a follower starts. When the checkpoint names this slot and the
//! slot has not moved past the checkpoint's position, the stream goes on
//! from there. Otherwise (the first `--follow`, a load since, a slot that
//! was dropped, or advanced by another consumer) a new slot is made and
//! one polling run follows it: the run's snapshot is taken after the
//! slot's consistent point, so every transaction is either in the run's
//! snapshot, in the stream from that point, or in both (applied twice,
//! to the same effect); none falls between.

use pgwire_replication::Lsn;

use super::FollowOptions;
use crate::batch::TableSpec;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::source::wal::slot::{self, replication_config};
use crate::source::Source;
use crate::state::checkpoint::FollowPosition;
use crate::sync::run::{run_locked, Held, SyncOptions};
use crate::sync::SyncSummary;

pub(super) struct Start {
    pub lsn: Lsn,
    pub handover: Option<SyncSummary>,
}

pub(super) async fn start(
    src: &Source,
    opts: &SyncOptions,
    fo: &FollowOptions,
    progress: &Progress,
    held: &Held,
    tables: &[&TableSpec],
) -> Result<Start> {
    let mut conn = src.connect().await?;
    slot::check_ready(src, &mut conn, tables).await?;
    let checkpoint = held.store.read().await?.ok_or_else(|| Error::Config {
        setting: held.store.describe(),
        message: "holds no sync checkpoint: run `pgflare load` into this target first".into(),
    })?;
    let mut state = slot::slot_state(&mut conn, &fo.slot).await?;
    // A follower that was killed leaves its session for Postgres to notice:
    // give it a few seconds before calling the slot busy.
    for _ in 0..40 {
        if state.as_ref().is_none_or(|s| s.active_pid.is_none()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        state = slot::slot_state(&mut conn, &fo.slot).await?;
    }
    let db: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut conn)
        .await
        .map_err(Error::db("reading the database name"))?;
    if let Some(s) = &state {
        if s.plugin.as_deref() != Some("pgoutput") || s.database.as_deref() != Some(db.as_str()) {
            return Err(Error::Config {
                setting: "--slot".into(),
                message: format!(
                    "replication slot {} exists for another use (plugin {}, database {}); pick another --slot",
                    fo.slot,
                    s.plugin.as_deref().unwrap_or("none: a physical slot"),
                    s.database.as_deref().unwrap_or("none")
                ),
            });
        }
    }
    let published = slot::publication_exists(&mut conn, &fo.slot).await?;
    let resume = match (&checkpoint.follow, &state) {
        (Some(f), Some(s)) if f.slot == fo.slot && published => {
            let at = slot::parse_lsn(&f.lsn)?;
            s.confirmed_flush.is_some_and(|c| c <= at).then_some(at)
        }
        _ => None,
    };
    if let Some(pid) = state.as_ref().and_then(|s| s.active_pid) {
        return Err(Error::Busy(format!(
            "replication slot {} is in use by backend pid {pid} (another follower, or another consumer)",
            fo.slot
        )));
    }
    if let Some(lsn) = resume {
        return Ok(Start { lsn, handover: None });
    }
    if state.is_some() {
        // Behind or ahead of the targets in a way the stream cannot mend:
        // start over from a new slot and a polling run.
        slot::drop_slot(&mut conn, &fo.slot).await?;
    }
    // The publication first: a slot decodes with the catalog as of each
    // change, and a publication made after the slot would not exist there.
    slot::ensure_publication(&mut conn, &fo.slot, tables).await?;
    let cfg = replication_config(src, &fo.slot, &fo.slot)?;
    let (created, session) = slot::create_slot(cfg, src.timeouts().connect, false).await?;
    drop(session);
    progress.println(&format!(
        "pgflare sync --follow: created replication slot and publication {} at {}; one polling run covers \
         what came before",
        fo.slot, created.consistent_point
    ));
    let summary = run_locked(src, opts, progress, &held.store, &held.d1, held.api.clone()).await?;
    if !summary.complete {
        // Stopped by a signal: the next start makes the hand-over again.
        return Ok(Start { lsn: created.consistent_point, handover: Some(summary) });
    }
    let mut checkpoint =
        held.store.read().await?.ok_or_else(|| Error::Internal("the checkpoint vanished".into()))?;
    checkpoint.follow = Some(FollowPosition {
        slot: fo.slot.clone(),
        lsn: created.consistent_point.to_string(),
        committed_at: None,
    });
    checkpoint.written_by = "sync --follow".into();
    checkpoint.written_at = crate::state::checkpoint::now();
    held.store.write(&checkpoint).await?;
    Ok(Start { lsn: created.consistent_point, handover: Some(summary) })
}
