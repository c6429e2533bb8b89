//! Wraps a target's sinks so that a key range is recorded as done in the
//! load state only after every sink finished it, and so that the progress
//! bar shows bytes written next to rows. A range whose vectors went to the
//! Vectorize API is recorded only once Vectorize has *applied* its last
//! write: that wait runs in the background (the worker moves on to the
//! next range) and the load awaits all of them before it reports done.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;

use super::state::StateFile;
use crate::batch::sink::SinkReport;
use crate::cloudflare::vectorize::WriteTicket;
use crate::cloudflare::Vectorize;
use crate::error::{Error, Result};
use crate::sink::recorded::{Recorded, Recorder};

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
}

impl Confirm {
    /// Awaits every range still waiting; the first error wins.
    pub async fn drain(&self) -> Result<()> {
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
        first
    }
}

impl Recorder for LoadRecorder {
    fn record(&self, table: &str, partition: usize, report: &SinkReport) -> Result<()> {
        let total = self.bytes.fetch_add(report.bytes, std::sync::atomic::Ordering::Relaxed) + report.bytes;
        if let Some((_, bar)) = self.bars.iter().find(|(n, _)| n == table) {
            bar.set_message(format!("{} of SQL written", indicatif::HumanBytes(total)));
        }
        match (&self.confirm, report.vectors.pending_write) {
            (Some(c), Some(t)) => {
                let (state, table, r) = (self.state.clone(), table.to_string(), report.clone());
                let (index, timeout, status) = (c.index.clone(), c.timeout, c.status.clone());
                let task = c.runtime.spawn(async move {
                    let show = move |m: &str| status.set_message(m.to_string());
                    index.wait_applied(WriteTicket(t), timeout, &show).await?;
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
