//! What the jobs remember between runs, kept with the target so that a
//! runner on a fresh machine continues where the last one stopped: the
//! sync checkpoint ([`checkpoint`]) and what it is valid for
//! ([`fingerprint`]), where it is stored and the runner's lease
//! ([`store`]), the key-bucket sums of the last run ([`ranges`]), which
//! ids hold a vector ([`held`]), and which source rows changed since a
//! checkpoint ([`changes`]). A load leaves the first checkpoint; sync
//! moves it; verify reads it to tell pending changes from differences.

pub mod changes;
pub mod checkpoint;
pub mod fingerprint;
pub mod held;
pub mod ranges;
pub mod store;
