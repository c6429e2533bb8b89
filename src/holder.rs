//! Who a running pgflare is (host, pid, since when), for the messages that
//! refuse a second runner: the sync lease in D1 and the load's lock on its
//! state folder both name the one holding them.

use serde::{Deserialize, Serialize};

/// This machine's name: `$HOSTNAME`, else /etc/hostname.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// A process holding something, as written into a lock file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// UTC, RFC 3339.
    pub since: String,
    /// What it is doing, e.g. the load's target.
    pub doing: String,
}

impl Holder {
    /// This process, doing `doing`.
    pub fn me(doing: &str) -> Holder {
        Holder {
            host: host_name(),
            pid: std::process::id(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            doing: doing.to_string(),
        }
    }

    pub fn describe(&self) -> String {
        format!("{} on host {} (pid {}), running since {}", self.doing, self.host, self.pid, self.since)
    }
}
