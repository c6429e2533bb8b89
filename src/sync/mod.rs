//! `pgflare sync`: one incremental run that brings D1 and Vectorize up to
//! a new snapshot of the source. In order:
//!
//! 1. take the runner's lease (in the target, [`crate::state::store`]) and the source's
//!    advisory lock: only one runner at a time, a second one is told who
//!    runs ([`Outcome::Busy`]);
//! 2. read the checkpoint the load (or the last run) left in the target,
//!    and refuse it when this run differs from it in what changes since
//!    it would not cover ([`accept`]);
//! 3. export a snapshot and upsert every row written since the
//!    checkpoint's horizon ([`crate::state::changes`]), range by range, each range
//!    recorded once D1 committed and Vectorize applied it ([`sink`]), with
//!    vectors re-sent only when their line changed; foreign keys on a
//!    cycle set once every range is in ([`links`]);
//! 4. delete rows soft-deleted since ([`deletes`]) and rows gone from the
//!    source ([`sweep`]), children before parents;
//! 5. move the checkpoint to the new snapshot.
//!
//! A run stopped at any point (SIGKILL included) leaves the checkpoint at
//! its last recorded range; the next run redoes only what was not recorded.

pub mod accept;
pub mod deletes;
pub mod follow;
pub mod links;
pub mod run;
pub mod run_files;
pub mod schedule;
pub mod sink;
pub mod source_reads;
pub(crate) mod steps;
pub mod summary;
pub mod sweep;

pub use run::{run_once, Outcome, SyncOptions};
pub use summary::SyncSummary;
