//! Opening connections to the source. The URL comes from `--database-url`,
//! pgflare.toml, `DATABASE_URL` or `SUPABASE_DB_URL`; statement caching is
//! off so the same code runs through poolers, and every connection says it
//! is pgflare (`application_name`) so a DBA can see who is reading.
//! Connecting is bounded by the run's `connect` bound, and the connection
//! bounds every later wait ([`super::conn`]).

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use super::conn::{Bound, SourceConn};
use crate::error::{Error, Result};
use crate::redact::redact_url;
use crate::timeouts::{human, Timeouts};

/// Supabase's transaction-mode pooler port (Supavisor), and the host
/// suffix of its pooler (session and transaction mode): neither passes the
/// replication protocol through (`doctor`, `sync --follow`).
pub const SUPABASE_TRANSACTION_PORT: u16 = 6543;
pub const SUPABASE_POOLER_HOST: &str = ".pooler.supabase.com";

/// How to reach the source; the URL stays private.
#[derive(Clone)]
pub struct Source {
    options: PgConnectOptions,
    shown: String,
    timeouts: Timeouts,
    /// The flag the URL came from, for hints (`--database-url`, or the
    /// target of a restore).
    setting: String,
    /// The URL as given, for the replication connection (a protocol sqlx
    /// does not speak); never shown.
    raw: std::sync::Arc<str>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Source {
    pub fn parse(url: &str) -> Result<Self> {
        Self::parse_from(url, "--database-url")
    }

    /// Parses the URL given by `setting` (for messages). No message shows
    /// the URL's credentials, however they are written.
    pub fn parse_from(url: &str, setting: &str) -> Result<Self> {
        let bad = |problem: String| Error::Config {
            setting: setting.into(),
            message: format!(
                "{problem} (the URL without its credentials: {}); expected `postgres://` followed by \
                 USER:PASSWORD@HOST:PORT/DATABASE",
                crate::redact::without_credentials(url)
            ),
        };
        if let Some(c) = unencoded_credentials(url) {
            return Err(bad(format!(
                "the user name or password holds `{c}`, which ends that part of a URL: percent-encode \
                 it ({PERCENT_ENCODINGS}; e.g. python3 -c 'import urllib.parse,sys; \
                 print(urllib.parse.quote(sys.argv[1], safe=\"\"))' 'PASSWORD')"
            )));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| bad(format!("cannot read the URL: {}", crate::redact::redact_text(&e.to_string()))))?
            .application_name("pgflare")
            .statement_cache_capacity(0)
            .disable_statement_logging();
        Ok(Source {
            options,
            shown: redact_url(url),
            timeouts: Timeouts::default(),
            setting: setting.into(),
            raw: url.into(),
        })
    }

    /// The same source, waited for within `timeouts`.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// `host:port` (or the socket path), for messages.
    pub fn server(&self) -> String {
        match self.options.get_socket() {
            Some(p) => p.display().to_string(),
            None => format!("{}:{}", self.options.get_host(), self.options.get_port()),
        }
    }

    /// Host (or socket folder), port and user the URL names, for
    /// `doctor`'s check that the connection is direct.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            host: self.options.get_host().to_string(),
            port: self.options.get_port(),
            user: self.options.get_username().to_string(),
            socket: self.options.get_socket().is_some(),
        }
    }

    /// The URL as given, credentials included: only for opening the
    /// replication connection ([`super::wal::slot::replication_config`]).
    pub(crate) fn raw_url(&self) -> &str {
        &self.raw
    }

    /// The bounds every wait on this source keeps.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The URL with its password masked, for messages and manifests.
    pub fn display(&self) -> &str {
        &self.shown
    }

    /// Connects (TCP, TLS, login) within the `connect` bound.
    pub async fn connect(&self) -> Result<SourceConn> {
        let wait = self.timeouts.connect;
        let conn = match tokio::time::timeout(wait, PgConnection::connect_with(&self.options)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(Error::Source {
                    message: format!("cannot connect to {}: {}", self.shown, crate::error::pg_message(&e)),
                    hint: format!(
                        "check {} (on Supabase use the direct connection on port 5432, not the pooler \
                         on 6543)",
                        self.setting
                    ),
                })
            }
            Err(_) => {
                return Err(Error::Source {
                    message: format!(
                        "no answer from Postgres at {} within {} while connecting (TCP, TLS and login; \
                         --connect-timeout)",
                        self.server(),
                        human(wait)
                    ),
                    hint: "check the host and port of the URL: a server that accepts the connection and \
                           never answers, or a firewall that drops packets, looks like this; raise \
                           --connect-timeout for a slow network"
                        .into(),
                })
            }
        };
        Ok(SourceConn::new(conn, Bound { wait: self.timeouts.statement, server: self.server() }))
    }
}

/// Where a URL points (no password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// A Unix socket rather than TCP.
    pub socket: bool,
}

/// How the characters a URL reserves are written inside a password.
const PERCENT_ENCODINGS: &str = "/ as %2F, ? as %3F, # as %23, @ as %40, : as %3A, % as %25";

/// The character that cut the credentials short, when the user name or
/// password holds `/`, `?` or `#` as written: an `@` after one of them
/// means the URL's authority (`user:password@host`) ended early and the
/// rest of the password would be read as host, path or fragment.
fn unencoded_credentials(url: &str) -> Option<char> {
    // A `password=` parameter may hold an `@` of its own.
    let url = crate::redact::password_params_masked(url);
    let (_, rest) = url.split_once("://")?;
    let at = rest.rfind('@')?;
    let (cut, c) = rest.char_indices().find(|(_, c)| matches!(c, '/' | '?' | '#'))?;
    (cut < at).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every form a password could be shown in: as written, and
    /// percent-encoded as the url crate writes it.
    fn forms(password: &str) -> Vec<String> {
        let encoded: String = url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
        let userinfo = url::Url::parse("postgres://u@h")
            .ok()
            .and_then(|mut u| u.set_password(Some(password)).ok().map(|()| u))
            .and_then(|u| u.password().map(str::to_string))
            .unwrap_or_default();
        vec![password.to_string(), encoded, userinfo]
    }

    #[test]
    fn an_unencoded_slash_or_hash_is_refused_with_how_to_encode_it() {
        for (url, c) in [
            ("postgres://postgres:se/cr#et@db.example.com:5432/postgres", '/'),
            ("postgres://postgres:h#sh@tag@db.example.com/postgres", '#'),
            ("postgresql://me:a?b@db.example.com/postgres?sslmode=require", '?'),
        ] {
            let e = Source::parse(url).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(&format!("holds `{c}`")) && e.contains("%2F"), "{e}");
            assert!(e.contains("://***@db.example.com"), "{e}");
        }
        // `@` alone is readable: the last one ends the credentials.
        let s = Source::parse("postgres://me:p@ss@db.example.com/postgres").expect("parses");
        assert_eq!(s.display(), "postgres://me:***@db.example.com/postgres");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        /// A password of any characters people type (URL delimiters and
        /// unicode included) in any of the URL forms people write: the
        /// parse error, the shown URL, the connection error and any text
        /// that quotes the URL never hold it.
        #[test]
        fn a_password_never_reaches_a_message(
            password in "[A-Za-z0-9/@#:%?!$&*+,;=~'ü€😀-]{6,20}",
            form in 0usize..5,
        ) {
            let url = match form {
                0 => format!("postgres://postgres:{password}@127.0.0.1:1/postgres"),
                1 => format!("postgresql://postgres:{password}@127.0.0.1:1/db?sslmode=disable"),
                2 => format!("postgres://postgres:{password}@127.0.0.1:1/db?application_name=x&connect_timeout=2"),
                3 => format!("postgres://postgres:{password}@127.0.0.1:1"),
                _ => format!("postgres://postgres@127.0.0.1:1/db?password={password}"),
            };
            let mut shown = vec![crate::redact::redact_text(&format!("failed: {url}: refused"))];
            match Source::parse(&url) {
                Err(e) => shown.push(e.to_string()),
                Ok(s) => {
                    shown.push(s.display().to_string());
                    shown.push(format!("{s:?}"));
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
                    if let Err(e) = rt.block_on(s.connect()) {
                        shown.push(e.to_string());
                    }
                }
            }
            for text in &shown {
                for f in forms(&password) {
                    prop_assert!(!text.contains(&f), "`{f}` in: {text}");
                }
            }
        }
    }
}
