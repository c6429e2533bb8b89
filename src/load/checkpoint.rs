//! Wraps a target's sinks so that a key range is recorded as done in the
//! load state only after every sink finished it, and so that the progress
//! bar shows bytes written next to rows. A range whose vectors went to the
//! Vectorize API is recorded only once Vectorize has *applied* its last
//! write: that wait runs in the background (the worker moves on to the
//! next range) and the load awaits all of them before it reports done. A
//! range whose last vectors wait in the load's shared upserts is recorded
//! once those were sent and applied.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;

use super::state::StateFile;
use crate::batch::sink::SinkReport;
use crate::cloudflare::vectorize::WriteTicket;
use crate::cloudflare::Vectorize;
use crate::error::{Error, Result};
use crate::sink::recorded::{Recorded, Recorder};
use crate::sink::vectorize::tails::TailPool;

/// Records a finished range in the load state (after Vectorize applied
/// its writes, when there is a `confirm`), and shows the bytes written.
pub struct LoadRecorder {
    pub state: Arc<StateFile>,
    /// Bars by qualified table name.
    pub bars: Vec<(String, ProgressBar)>,
    pub bytes: Arc<std::sync::atomic::AtomicU64>,
    pub confirm: Option<Confirm>,
}

/// The load's sinks: every target behind the one recording wrapper.
pub type Checkpointing = Recorded<LoadRecorder>;

/// Waits for Vectorize to apply a range's writes before recording it.
#[derive(Clone)]
pub struct Confirm {
    pub index: Arc<Vectorize>,
    pub timeout: Duration,
    pub runtime: tokio::runtime::Handle,
    pub waiting: Arc<Mutex<Vec<tokio::task::JoinHandle<Result<()>>>>>,
    pub status: ProgressBar,
    /// The shared upserts that ranges leave their last vectors to.
    pub tails: Option<Arc<TailPool>>,
}

impl Confirm {
    /// Sends the ranges' pooled last vectors, then awaits every range
    /// still waiting; the pool's error, else the first range's, wins.
    pub async fn drain(&self) -> Result<()> {
        let flushed = match &self.tails {
            Some(pool) => pool.flush(&self.index).await,
            None => Ok(()),
        };
        let handles: Vec<_> = match self.waiting.lock() {
            Ok(mut w) => w.drain(..).collect(),
            Err(_) => return Err(Error::Internal("confirmation list poisoned".into())),
        };
        let mut first = Ok(());
        for h in handles {
            let r =
                h.await.map_err(|e| Error::Internal(format!("a Vectorize wait died: {e}"))).and_then(|r| r);
            if first.is_ok() {
                first = r;
            }
        }
        flushed.and(first)
    }
}

impl Recorder for LoadRecorder {
    fn record(&self, table: &str, partition: usize, report: &SinkReport) -> Result<()> {
        let total = self.bytes.fetch_add(report.bytes, std::sync::atomic::Ordering::Relaxed) + report.bytes;
        if let Some((_, bar)) = self.bars.iter().find(|(n, _)| n == table) {
            bar.set_message(format!("{} of SQL written", indicatif::HumanBytes(total)));
        }
        let v = &report.vectors;
        match &self.confirm {
            Some(c) if v.pending_write.is_some() || !v.pending_tails.is_empty() => {
                let (state, table, r) = (self.state.clone(), table.to_string(), report.clone());
                let (index, timeout, status) = (c.index.clone(), c.timeout, c.status.clone());
                let task = c.runtime.spawn(async move {
                    // The range's last vectors may wait in the shared
                    // upserts (`sink::vectorize::tails`): the latest of
                    // its writes, once sent, covers the earlier ones.
                    let mut last = r.vectors.pending_write;
                    for tail in r.vectors.pending_tails.iter().cloned() {
                        last = last.max(Some(tail.sent().await?));
                    }
                    let show = move |m: &str| status.set_message(m.to_string());
                    if let Some(t) = last {
                        index.wait_applied(WriteTicket(t), timeout, &show).await?;
                    }
                    state.partition_done(&table, partition, &r)
                });
                c.waiting
                    .lock()
                    .map_err(|_| Error::Internal("confirmation list poisoned".into()))?
                    .push(task);
                Ok(())
            }
            _ => self.state.partition_done(table, partition, report),
        }
    }
}
