//! Opening connections to the source. The URL comes from `--database-url`,
//! `DATABASE_URL` or `SUPABASE_DB_URL`; statement caching is off so the
//! same code runs through poolers, and every connection says it is pgflare
//! (`application_name`) so a DBA can see who is reading.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use crate::error::{Error, Result};
use crate::redact::redact_url;

/// How to reach the source; the URL stays private.
#[derive(Clone)]
pub struct Source {
    options: PgConnectOptions,
    shown: String,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Source {
    pub fn parse(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Config {
                setting: "--database-url".into(),
                message: format!(
                    "cannot parse {}: {}; expected postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                    redact_url(url),
                    crate::redact::redact_text(&e.to_string())
                ),
            })?
            .application_name("pgflare")
            .statement_cache_capacity(0)
            .disable_statement_logging();
        Ok(Source { options, shown: redact_url(url) })
    }

    /// The URL with its password masked, for messages and manifests.
    pub fn display(&self) -> &str {
        &self.shown
    }

    pub async fn connect(&self) -> Result<PgConnection> {
        PgConnection::connect_with(&self.options).await.map_err(|e| Error::Source {
            message: format!("cannot connect to {}: {}", self.shown, crate::error::pg_message(&e)),
            hint: "check --database-url / DATABASE_URL (on Supabase use the direct connection on port 5432, not the pooler on 6543)".into(),
        })
    }
}
