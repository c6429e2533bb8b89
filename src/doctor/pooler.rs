//! Is the connection direct, or through a pooler? A pooler in transaction
//! mode hands each transaction to whichever server connection is free and
//! keeps no session state: Supabase's documentation ("Accessing
//! Postgres", supabase.com/docs/guides/self-hosting/accessing-postgres,
//! and guides/database/connecting-to-postgres) says transaction mode
//! (Supavisor or PgBouncer, port 6543) "does not support session-level
//! features (SET, LISTEN/NOTIFY, temporary tables that span transactions,
//! or advisory locks)" and that Supavisor does not support prepared
//! statements; session mode is Supavisor on port 5432 of the pooler host
//! (`*.pooler.supabase.com`, user `postgres.<project-ref>`), the direct
//! connection `db.<project-ref>.supabase.co:5432`.
//!
//! No single query tells a pooler from a server (`SHOW pool_mode` exists
//! only on PgBouncer's admin console, and Supavisor has none), so the
//! evidence is weighed, strongest first:
//! 1. consecutive transactions answered by different backends
//!    (`pg_backend_pid()`): proof of a transaction pooler;
//! 2. the URL's port is 6543, Supabase's transaction-pooler port;
//! 3. the host is Supabase's pooler host (session mode: works for a load,
//!    not for logical replication);
//! 4. the port Postgres itself listens on (`inet_server_port()`) is not
//!    the URL's: something (a pooler, a proxy, a port forward) relays;
//! 5. the server sees another `application_name` than the `pgflare`
//!    every connection sets: something rewrote the session.

use super::{Area, Check};
use crate::source::connect::Endpoint;

/// What the connection showed.
#[derive(Clone, Debug)]
pub struct Observed {
    pub url: Endpoint,
    /// `inet_server_port()`: `None` over a Unix socket.
    pub server_port: Option<i32>,
    /// `current_setting('application_name')` as the server sees it.
    pub application_name: String,
    /// `pg_backend_pid()` of consecutive transactions.
    pub pids: Vec<i32>,
}

/// Supabase's transaction-pooler port (Supavisor or PgBouncer).
use crate::source::connect::{SUPABASE_POOLER_HOST, SUPABASE_TRANSACTION_PORT};

const DIRECT_FIX: &str = "use the direct connection (on Supabase: Connect > Direct connection, \
    db.<project-ref>.supabase.co port 5432, user postgres; over IPv4 only, the session pooler on port 5432)";

pub fn judge(o: &Observed) -> Check {
    let c = Check::named(
        "postgres.direct_connection",
        Area::Postgres,
        "direct connection, not a transaction pooler",
    );
    let mut pids = o.pids.clone();
    pids.dedup();
    if pids.len() > 1 {
        let list: Vec<String> = o.pids.iter().map(|p| p.to_string()).collect();
        return c.problem(
            format!(
                "consecutive transactions ran on different server connections (backend pids {}): a pooler \
                 in transaction mode is in between, which keeps no session state",
                list.join(", ")
            ),
            DIRECT_FIX,
        );
    }
    let url = &o.url;
    if !url.socket && url.port == SUPABASE_TRANSACTION_PORT {
        return c.problem(
            format!(
                "{}:{} is Supabase's transaction pooler port (Supavisor/PgBouncer in transaction mode: no \
                 session state, no prepared statements)",
                url.host, url.port
            ),
            DIRECT_FIX,
        );
    }
    if url.host.to_ascii_lowercase().ends_with(SUPABASE_POOLER_HOST) {
        return c.warning(
            format!("{}:{} is Supabase's pooler in session mode (user {})", url.host, url.port, url.user),
            format!(
                "load, verify and archive work through it; `sync --follow` (logical replication) needs the \
                 direct connection: {DIRECT_FIX}"
            ),
        );
    }
    match o.server_port {
        Some(p) if !url.socket && i64::from(p) != i64::from(url.port) => {
            return c.warning(
                format!(
                    "Postgres listens on port {p} but the URL connects to {}:{}: a pooler, proxy or port \
                     forward relays the connection",
                    url.host, url.port
                ),
                format!(
                    "if it is a pooler in transaction mode, {DIRECT_FIX}; a proxy or port forward is fine"
                ),
            );
        }
        _ => {}
    }
    if o.application_name != "pgflare" {
        return c.warning(
            format!(
                "the server sees application_name `{}`, not the `pgflare` this connection set: something \
                 between rewrote the session",
                o.application_name
            ),
            format!("if it is a pooler in transaction mode, {DIRECT_FIX}"),
        );
    }
    let how = if url.socket { "a Unix socket".to_string() } else { format!("{}:{}", url.host, url.port) };
    c.ok(format!(
        "{how} reaches Postgres itself: one server connection across transactions (backend pid {})",
        o.pids.first().map_or("?".into(), |p| p.to_string())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    fn seen(host: &str, port: u16, server_port: Option<i32>, app: &str, pids: &[i32]) -> Observed {
        Observed {
            url: Endpoint { host: host.into(), port, user: "postgres".into(), socket: false },
            server_port,
            application_name: app.into(),
            pids: pids.to_vec(),
        }
    }

    #[test]
    fn a_transaction_pooler_is_a_problem_and_a_direct_connection_is_ok() {
        let direct = judge(&seen("db.abcd.supabase.co", 5432, Some(5432), "pgflare", &[7, 7, 7]));
        assert_eq!(direct.status, Status::Ok, "{direct:?}");
        // Backends that change between transactions prove a transaction pooler.
        let switched = judge(&seen("10.0.0.5", 5432, Some(5432), "pgflare", &[7, 9, 7]));
        assert_eq!(switched.status, Status::Problem, "{switched:?}");
        assert!(switched.found.contains("7, 9, 7"), "{}", switched.found);
        let supavisor = judge(&seen("aws-0-eu-west-1.pooler.supabase.com", 6543, Some(5432), "x", &[7, 7]));
        assert_eq!(supavisor.status, Status::Problem, "{supavisor:?}");
        assert!(supavisor.fix.as_deref().is_some_and(|f| f.contains("5432")), "{supavisor:?}");
        let session =
            judge(&seen("aws-0-eu-west-1.pooler.supabase.com", 5432, Some(5432), "pgflare", &[7, 7]));
        assert_eq!(session.status, Status::Warning, "{session:?}");
    }

    #[test]
    fn a_relay_or_a_rewritten_session_is_a_warning() {
        let relayed = judge(&seen("127.0.0.1", 15432, Some(5432), "pgflare", &[7, 7]));
        assert_eq!(relayed.status, Status::Warning, "{relayed:?}");
        assert!(relayed.found.contains("5432") && relayed.found.contains("15432"), "{}", relayed.found);
        let renamed = judge(&seen("db", 5432, Some(5432), "Supavisor", &[7, 7]));
        assert_eq!(renamed.status, Status::Warning, "{renamed:?}");
        let mut socket = seen("/var/run/postgresql", 5432, None, "pgflare", &[7, 7]);
        socket.url.socket = true;
        assert_eq!(judge(&socket).status, Status::Ok);
    }
}
