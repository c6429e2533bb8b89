//! The follower's loop: receive, merge whole transactions, apply, record,
//! acknowledge. The position moves only at a commit whose changes every
//! target confirmed: D1 committed them, Vectorize applied them (the sinks
//! wait for the mutation to be processed); it is written to the D1
//! checkpoint first and reported to Postgres after, so the slot never
//! lets go of WAL the targets do not hold.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use sqlx::Row as _;

use super::apply::{Applied, Applier};
use super::changes::{stop, Expected, Pending, Relations};
use super::lag::{Delays, FollowStatus, FollowSummary};
use super::{handover, seconds_since_pg, FollowOptions};
use crate::error::{Error, Result};
use crate::plan::VectorTarget;
use crate::progress::Progress;
use crate::source::wal::pgoutput::{decode, Change};
use crate::source::wal::slot::{self, bounded, replication_config, replication_error};
use crate::source::{Snapshot, Source};
use crate::state::checkpoint::{now, FollowPosition};
use crate::sync::run::{Held, SyncOptions};
use crate::sync::steps::Run;

/// With nothing received for this long, what is pending is applied.
const QUIET: Duration = Duration::from_millis(100);
/// Apply once this many changes are pending (at a commit).
const MAX_CHANGES: usize = 20_000;
/// ... or this many bytes of values.
const MAX_BYTES: usize = 64 << 20;
/// A transaction larger than this is applied in parts (the position
/// moves only at its commit).
const BIG_TRANSACTION: usize = 100_000;
/// How often an idle follower moves the slot to the server's WAL end.
const IDLE_ACK: Duration = Duration::from_secs(10);
/// How often the slot's retained WAL is checked.
const RETAINED_CHECK: Duration = Duration::from_secs(60);
/// The share of the Cloudflare request budget (`--rate-limit`) a
/// follower spends on average: the rest is left to verify, wrangler and
/// the dashboard, which count against the same per-user limit.
const BUDGET_SHARE: f64 = 0.5;

pub(super) async fn run(
    src: &Source,
    opts: &SyncOptions,
    fo: &FollowOptions,
    progress: &Progress,
    held: &Held,
    status: &mut (dyn FnMut(&FollowStatus) + Send),
) -> Result<FollowSummary> {
    let started = Instant::now();
    let started_at = now();
    let mut snapshot = Snapshot::export(src).await?;
    let vectors_on = !matches!(opts.vectorize, VectorTarget::Off);
    let prepared = crate::plan::prepare(&mut snapshot, &opts.project, &[], vectors_on).await?;
    let expected = expected(&mut snapshot, &prepared).await?;
    snapshot.release().await?;
    let specs: Vec<&crate::batch::TableSpec> = prepared.infos.iter().map(|i| &i.spec).collect();
    let start = handover::start(src, opts, fo, progress, held, &specs).await?;
    let mut checkpoint = held.store.read().await?.ok_or_else(|| Error::Internal("no checkpoint".into()))?;
    // The polling checks (fingerprint, vectors) ran in the hand-over, or
    // run here for a follower that resumes.
    if start.handover.is_none() {
        super::super::run::accept_run(opts, &held.store, &prepared, &mut checkpoint, held.api.clone())
            .await?;
    }
    let run = Run {
        src,
        opts,
        progress,
        store: &held.store,
        d1: &held.d1,
        snapshot_id: String::new(),
        from: checkpoint.position.clone(),
        to: checkpoint.position.clone(),
        xmax: 0,
        check_stored: 0,
        prepared,
    };
    let targets = run.open_targets(checkpoint.runs, held.api.clone()).await?;
    if targets.has_links() {
        return Err(Error::Config {
            setting: "--follow".into(),
            message: "a table has foreign keys on a cycle (a self-referencing tree or tables that point at each \
                      other), whose links sync sets after each run; --follow does not set them yet. Sync these \
                      tables with --once / --every"
                .into(),
        });
    }
    let mut applier = Applier {
        run: &run,
        targets: &targets,
        conn: src.connect().await?,
        sinks: run.upsert_sinks(&targets),
    };
    let mut f = Follower {
        fo,
        relations: Relations::new(expected),
        committed: Pending::default(),
        open: None,
        applied_lsn: start.lsn,
        from_lsn: start.lsn,
        server_lsn: start.lsn,
        delays: Delays::default(),
        applied: Applied::default(),
        transactions: 0,
        flushes: 0,
        last_commit_time: None,
        api: held.api.clone(),
        not_before: None,
        requests: 0,
    };
    let stopped_by = if opts.stop.load(Ordering::Relaxed) {
        Ok(())
    } else {
        f.stream(src, held, &mut checkpoint, &mut applier, progress, status).await
    };
    let retained =
        slot::slot_state(&mut applier.conn, &fo.slot).await.ok().flatten().and_then(|s| s.retained_bytes);
    stopped_by?;
    Ok(FollowSummary {
        format: "pgflare-follow-summary-v1",
        slot: fo.slot.clone(),
        publication: fo.slot.clone(),
        target: opts.target.describe(),
        started_at,
        from_lsn: f.from_lsn.to_string(),
        to_lsn: f.applied_lsn.to_string(),
        handover: start.handover,
        transactions: f.transactions,
        flushes: f.flushes,
        requests: f.requests,
        applied: f.applied,
        lag: f.delays.stats(),
        retained_wal_bytes: retained,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Each followed table's columns as the catalog has them now.
async fn expected(snapshot: &mut Snapshot, prepared: &crate::plan::Prepared) -> Result<Vec<Expected>> {
    let mut out = Vec::new();
    for info in &prepared.infos {
        let rows = sqlx::query(
            "SELECT a.attname::text, a.atttypid::oid::bigint FROM pg_attribute a \
             WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(info.spec.sql_name())
        .fetch_all(snapshot.conn())
        .await
        .map_err(Error::db(format!("reading the columns of {}", info.spec.qualified())))?;
        out.push(Expected {
            spec: info.spec.clone(),
            columns: rows.iter().map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1) as u32)).collect(),
            soft: prepared.live.soft_column(&info.spec).map(|(c, _)| c),
        });
    }
    Ok(out)
}

struct Follower<'a> {
    fo: &'a FollowOptions,
    relations: Relations,
    /// Whole transactions received and not applied.
    committed: Pending,
    /// The transaction being received: its xid and changes.
    open: Option<Pending>,
    applied_lsn: Lsn,
    from_lsn: Lsn,
    server_lsn: Lsn,
    delays: Delays,
    applied: Applied,
    transactions: u64,
    flushes: u64,
    last_commit_time: Option<i64>,
    /// Cloudflare requests sent by the flushes.
    requests: u64,
    /// The API client (to pace flushes to its request budget), if any.
    api: Option<std::sync::Arc<crate::cloudflare::Api>>,
    /// No flush before this (the request budget's pace); stopping flushes anyway.
    not_before: Option<Instant>,
}

impl Follower<'_> {
    async fn stream(
        &mut self,
        src: &Source,
        held: &Held,
        checkpoint: &mut crate::state::checkpoint::Checkpoint,
        applier: &mut Applier<'_>,
        progress: &Progress,
        status: &mut (dyn FnMut(&FollowStatus) + Send),
    ) -> Result<()> {
        let opts = applier.run.opts;
        let cfg = replication_config(src, &self.fo.slot, &self.fo.slot)?
            .with_start_lsn(self.applied_lsn)
            .with_options(
                "-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=3 -c bytea_output=hex",
            );
        let mut client = ReplicationClient::connect(cfg)
            .await
            .map_err(|e| replication_error("opening the replication stream", e))?;
        bounded(src.timeouts().connect, "starting the replication stream", client.wait_started())
            .await?
            .map_err(|e| replication_error(&format!("starting replication from slot {}", self.fo.slot), e))?;
        let bar = progress.spinner("follow");
        let (mut last_status, mut last_idle_ack, mut last_retained) =
            (Instant::now(), Instant::now(), None::<Instant>);
        let end_at = self.fo.stop_after.map(|d| Instant::now() + d);
        let outcome = loop {
            if opts.stop.load(Ordering::Relaxed) || end_at.is_some_and(|e| Instant::now() >= e) {
                break Ok(());
            }
            if last_retained.is_none_or(|t| t.elapsed() >= RETAINED_CHECK) {
                last_retained = Some(Instant::now());
                self.check_retained(applier, progress).await;
            }
            let event = match tokio::time::timeout(QUIET, client.recv()).await {
                Err(_) => None,
                Ok(Ok(Some(e))) => Some(e),
                Ok(Ok(None)) => {
                    break Err(stop("the replication stream ended".into(), "start the follower again"))
                }
                Ok(Err(e)) => break Err(replication_error("reading the replication stream", e)),
            };
            let r = match event {
                None => self.quiet(held, checkpoint, applier, &client, &mut last_idle_ack).await,
                Some(e) => self.event(e, held, checkpoint, applier, &client).await,
            };
            if let Err(e) = r {
                break Err(e);
            }
            if last_status.elapsed() >= self.fo.status_every {
                last_status = Instant::now();
                let s = self.status();
                bar.set_message(format!(
                    "{} transactions, {} rows upserted, {} deleted; {:.1}s and {} behind",
                    s.transactions,
                    s.rows_upserted,
                    s.rows_deleted,
                    s.seconds_behind,
                    indicatif::HumanBytes(s.bytes_behind)
                ));
                status(&s);
            }
        };
        // Whatever whole transactions arrived are applied before leaving
        // (also when a TRUNCATE or a changed table stops the stream).
        let flushed = self.flush(held, checkpoint, applier, &client).await;
        bar.finish_and_clear();
        client.stop();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.shutdown()).await;
        flushed?;
        outcome
    }

    fn status(&self) -> FollowStatus {
        FollowStatus {
            format: "pgflare-follow-status-v1",
            slot: self.fo.slot.clone(),
            applied_lsn: self.applied_lsn.to_string(),
            server_lsn: self.server_lsn.to_string(),
            bytes_behind: self.server_lsn.as_u64().saturating_sub(self.applied_lsn.as_u64()),
            seconds_behind: match self.committed.is_empty() {
                true => 0.0,
                false => self.committed.commit_times.first().map(|&t| seconds_since_pg(t)).unwrap_or(0.0),
            },
            transactions: self.transactions,
            rows_upserted: self.applied.rows_upserted,
            rows_deleted: self.applied.rows_deleted,
        }
    }

    async fn event(
        &mut self,
        e: ReplicationEvent,
        held: &Held,
        checkpoint: &mut crate::state::checkpoint::Checkpoint,
        applier: &mut Applier<'_>,
        client: &ReplicationClient,
    ) -> Result<()> {
        match e {
            ReplicationEvent::Begin { xid, .. } => {
                self.open = Some(Pending { xids: vec![xid], ..Pending::default() });
            }
            ReplicationEvent::XLogData { data, wal_end, .. } => {
                self.server_lsn = self.server_lsn.max(wal_end);
                let change = decode(data)
                    .map_err(|m| stop(m.to_string(), "this looks like a pgflare bug; please report it"))?;
                match &change {
                    Change::Relation(r) => self.relations.relation(r)?,
                    Change::Truncate { rels, .. } => {
                        let ours: Vec<String> = rels
                            .iter()
                            .filter_map(|o| self.relations.layout(*o).map(|l| self.relations.name(l.table)))
                            .collect();
                        if !ours.is_empty() {
                            return Err(stop(
                                format!("TRUNCATE of {} while following", ours.join(", ")),
                                "the follower does not empty D1 tables or Vectorize indexes on its own; nothing from \
                                 that transaction on was applied. Reload the tables (`pgflare load`, which starts a \
                                 new history; the next --follow makes a new slot), then start --follow again",
                            ));
                        }
                    }
                    _ => {}
                }
                let open = self.open.get_or_insert_with(Pending::default);
                open.take(&self.relations, &change)?;
                if open.changes >= BIG_TRANSACTION {
                    // The whole transactions before it are applied and
                    // recorded as usual; then the part of this one received
                    // so far, without moving the position (it moves at the
                    // commit: a restart applies the part again).
                    let part = std::mem::take(open);
                    self.flush(held, checkpoint, applier, client).await?;
                    self.applied.add(applier.apply(&part).await?);
                    self.open = Some(Pending { xids: part.xids, ..Pending::default() });
                }
            }
            ReplicationEvent::Commit { end_lsn, commit_time_micros, .. } => {
                let mut txn = self.open.take().unwrap_or_default();
                if end_lsn <= self.applied_lsn {
                    return Ok(()); // applied before a restart: the slot had not heard yet
                }
                txn.transactions = 1;
                txn.last_commit = Some((end_lsn.as_u64(), commit_time_micros));
                txn.commit_times = vec![commit_time_micros];
                txn.since.get_or_insert_with(Instant::now);
                self.committed.merge(txn);
                self.server_lsn = self.server_lsn.max(end_lsn);
                let due = self.committed.changes >= MAX_CHANGES
                    || self.committed.bytes >= MAX_BYTES
                    || self.committed.since.is_some_and(|s| s.elapsed() >= self.fo.max_delay);
                if due && self.paced() {
                    self.flush(held, checkpoint, applier, client).await?;
                }
            }
            // A keepalive's WAL end is past every change sent before it, so
            // an idle follower may confirm up to it (`quiet`), as
            // pg_recvlogical does (src/bin/pg_basebackup/pg_recvlogical.c,
            // keepalive handling: output_written_lsn = Max(walEnd, ...)).
            ReplicationEvent::KeepAlive { wal_end, .. } => self.server_lsn = self.server_lsn.max(wal_end),
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    /// Nothing arrived for a moment: apply what is pending; an idle
    /// follower with nothing open moves the slot to the server's WAL end
    /// now and then, so WAL written for other tables is not kept for it.
    async fn quiet(
        &mut self,
        held: &Held,
        checkpoint: &mut crate::state::checkpoint::Checkpoint,
        applier: &mut Applier<'_>,
        client: &ReplicationClient,
        last_idle_ack: &mut Instant,
    ) -> Result<()> {
        if !self.committed.is_empty() {
            if !self.paced() {
                return Ok(());
            }
            return self.flush(held, checkpoint, applier, client).await;
        }
        if self.open.is_none() && self.server_lsn > self.applied_lsn && last_idle_ack.elapsed() >= IDLE_ACK {
            *last_idle_ack = Instant::now();
            self.record(held, checkpoint, self.server_lsn, None).await?;
            client.update_applied_lsn(self.applied_lsn);
        }
        Ok(())
    }

    /// Applies the pending transactions, records their position in D1,
    /// then reports it to Postgres.
    async fn flush(
        &mut self,
        held: &Held,
        checkpoint: &mut crate::state::checkpoint::Checkpoint,
        applier: &mut Applier<'_>,
        client: &ReplicationClient,
    ) -> Result<()> {
        if self.committed.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.committed);
        let (sent_before, started) = (self.api.as_ref().map(|a| a.requests_sent()), Instant::now());
        self.applied.add(applier.apply(&pending).await?);
        self.flushes += 1;
        self.transactions += pending.transactions;
        for &t in &pending.commit_times {
            self.delays.add(seconds_since_pg(t));
        }
        if let Some((lsn, at)) = pending.last_commit {
            self.last_commit_time = Some(at);
            self.record(held, checkpoint, Lsn::from_u64(lsn), Some(at)).await?;
            client.update_applied_lsn(self.applied_lsn);
        }
        // The next flush waits as long as this one's requests take to
        // come back into the budget's share.
        if let (Some(api), Some(before)) = (&self.api, sent_before) {
            let used = api.requests_sent().saturating_sub(before);
            self.requests += used;
            let used = used as f64;
            let (_, requests, window) = api.budget();
            let pace = window.mul_f64(used / (f64::from(requests.max(1)) * BUDGET_SHARE));
            self.not_before = Some(started + pace);
        }
        Ok(())
    }

    /// Whether the request budget's pace lets a flush go now.
    fn paced(&self) -> bool {
        self.not_before.is_none_or(|t| Instant::now() >= t)
    }

    async fn record(
        &mut self,
        held: &Held,
        checkpoint: &mut crate::state::checkpoint::Checkpoint,
        lsn: Lsn,
        commit_micros: Option<i64>,
    ) -> Result<()> {
        let committed_at = commit_micros
            .and_then(|us| {
                chrono::DateTime::from_timestamp_micros(us + crate::source::decode::PG_EPOCH_US)
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
            })
            .or_else(|| checkpoint.follow.as_ref().and_then(|f| f.committed_at.clone()));
        checkpoint.follow =
            Some(FollowPosition { slot: self.fo.slot.clone(), lsn: lsn.to_string(), committed_at });
        checkpoint.written_by = "sync --follow".into();
        checkpoint.written_at = now();
        held.store.write(checkpoint).await?;
        self.applied_lsn = lsn;
        Ok(())
    }

    async fn check_retained(&self, applier: &mut Applier<'_>, progress: &Progress) {
        let Ok(Some(s)) = slot::slot_state(&mut applier.conn, &self.fo.slot).await else { return };
        if let Some(b) = s.retained_bytes.filter(|&b| b as u64 > self.fo.max_retained_wal) {
            progress.println(&format!(
                "pgflare sync --follow: warning: replication slot {} keeps {} of WAL on the source (over \
                 --max-retained-wal {}): the follower is behind; if it stays so, the source's disk fills",
                self.fo.slot,
                indicatif::HumanBytes(b as u64),
                indicatif::HumanBytes(self.fo.max_retained_wal)
            ));
        }
    }
}
