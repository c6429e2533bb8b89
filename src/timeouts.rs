//! Bounds on every network wait, so that a server that accepts a
//! connection and then says nothing (a black-holing firewall, a stuck
//! proxy, a server that stalls mid-answer) ends a run with an error that
//! names the server, the bound and the flag, instead of hanging it. A
//! scheduled `pgflare sync --once` therefore always ends.
//!
//! - `connect`: reaching a server: TCP, TLS and, for Postgres, the startup
//!   and authentication exchange.
//! - `statement`: the longest silence accepted from Postgres once
//!   connected: until a statement's first answer, and between two
//!   messages of a result or a COPY stream (an idle bound, not a cap on a
//!   long COPY that keeps sending).
//! - `http`: the longest a Cloudflare API request may stand still: no
//!   piece of its body leaving, no byte of its answer arriving (not a cap
//!   on a large transfer that keeps moving; a JSON call's answer also has
//!   a cap of 4 of these, see `cloudflare::transfer`).
//!
//! Asynchronous work Cloudflare does after answering (a D1 import or
//! export, Vectorize applying writes) is waited for by polling, each
//! bounded on its own ([`D1_WAIT`], `[vectorize] wait_timeout_seconds`).

use std::time::Duration;

/// The bounds of one run (flags `--connect-timeout`, `--statement-timeout`,
/// `--http-timeout`, `--d1-wait`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub statement: Duration,
    pub http: Duration,
    /// How long one D1 import or export may take, waiting for the database
    /// to be free included ([`D1_WAIT`] by default).
    pub d1_wait: Duration,
}

impl Default for Timeouts {
    /// 30 s to connect (a handshake takes well under a second even across
    /// continents); 15 minutes of Postgres silence (a full scan for
    /// `inspect`'s checks or a planning quantile of a large table says
    /// nothing until it is done; a key range's COPY starts streaming within
    /// seconds); 120 s of API silence (D1 stops a query after 30 s; a
    /// silence of 2 minutes is a dead connection, not a slow one).
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            statement: Duration::from_secs(15 * 60),
            http: Duration::from_secs(120),
            d1_wait: D1_WAIT,
        }
    }
}

/// How long pgflare waits for a D1 import or export to finish (polling
/// its status) before it stops with an error; the rerun redoes the range.
pub const D1_WAIT: Duration = Duration::from_secs(15 * 60);

/// `30s`, `5m`, `1h`, `90` (seconds), `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len()));
    let n: f64 = num.parse().map_err(|_| format!("`{text}`: expected a duration such as 30s, 5m or 1h"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{text}`: the unit must be ms, s, m or h (e.g. 5m)")),
    };
    if !(secs > 0.0 && secs < 1e9) {
        return Err(format!("`{text}`: must be above zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A bound as people read it: `800 ms`, `30 s`, `15 min`, `1.5 h`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{} ms", d.as_millis())
    } else if s < 120.0 {
        format!("{} s", trim(s))
    } else if s < 7200.0 {
        format!("{} min", trim(s / 60.0))
    } else {
        format!("{} h", trim(s / 3600.0))
    }
}

fn trim(x: f64) -> String {
    let t = format!("{x:.1}");
    t.strip_suffix(".0").map(str::to_string).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print_like_people_write_them() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(human(Duration::from_secs(30)), "30 s");
        assert_eq!(human(Duration::from_secs(900)), "15 min");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human(Duration::from_millis(300)), "300 ms");
    }
}
