//! The index side of [`Vectorize`]: whether the index exists (and if not,
//! why), creating it, and its metadata indexes.
//!
//! Vectorize says an index is missing with its error code, not with the
//! HTTP status: HTTP 400, code 3000 `vectorize.index.not_found` for an
//! unknown name, HTTP 410, code 3005 `vectorize.index.deleted` for a while
//! after a delete (both observed; see the README's emulator section); a
//! name taken is code 3002 `vectorize.index.duplicate_name`, whose status is
//! not known. So the codes decide here, and a 404 / 409 still counts for
//! any proxy or older API that answers with those.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::{parse, Body, IndexConfig, Vectorize, WriteTicket};
use crate::cloudflare::client::error_codes;
use crate::cloudflare::wait::Pacer;
use crate::error::{Error, Result};

const CODE_NOT_FOUND: u32 = 3000;
const CODE_DUPLICATE_NAME: u32 = 3002;
const CODE_DELETED: u32 = 3005;

/// How long a metadata index said to exist may take to be listed (a guess:
/// Vectorize documents no bound; its writes usually apply within minutes).
const LISTED_WITHIN: Duration = Duration::from_secs(300);

/// Why `GET indexes/{name}` found no index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Absent {
    /// Code 3000 (or HTTP 404): no index has this name.
    Missing,
    /// Code 3005 (or HTTP 410): the index of this name was deleted lately.
    Deleted,
}

impl Absent {
    /// Whether an API error says the index is not there, and how.
    pub fn of(e: &Error) -> Option<Absent> {
        let Error::Api { status, .. } = e else { return None };
        let codes = error_codes(e);
        if codes.contains(&CODE_DELETED) || *status == Some(410) {
            Some(Absent::Deleted)
        } else if codes.contains(&CODE_NOT_FOUND) || *status == Some(404) {
            Some(Absent::Missing)
        } else {
            None
        }
    }
}

/// Whether an API error says the name is taken (a retried create met the
/// index its first attempt made).
fn name_taken(e: &Error) -> bool {
    matches!(e, Error::Api { status, .. } if *status == Some(409) || error_codes(e).contains(&CODE_DUPLICATE_NAME))
}

impl Vectorize {
    /// The index's configuration, or `None` when it does not exist (never
    /// created, or deleted).
    pub async fn config(&self) -> Result<Option<IndexConfig>> {
        Ok(self.lookup().await?.ok())
    }

    /// The index's configuration, or why there is none.
    pub async fn lookup(&self) -> Result<std::result::Result<IndexConfig, Absent>> {
        let what = format!("Vectorize index {}", self.index);
        match self.get_index(&what).await? {
            Ok(v) => Ok(Ok(parse(&what, v.get("config").cloned().unwrap_or(Value::Null))?)),
            Err(absent) => Ok(Err(absent)),
        }
    }

    /// When the index was created (`created_on`, empty when the answer has
    /// none), or `None` when it does not exist: an index deleted and
    /// created again under its name is another index, without its vectors.
    pub async fn created_on(&self) -> Result<Option<String>> {
        let what = format!("Vectorize index {}", self.index);
        let index = self.get_index(&what).await?.ok();
        Ok(index.map(|v| v.get("created_on").and_then(Value::as_str).unwrap_or_default().to_string()))
    }

    /// `GET indexes/{name}`, or why there is no such index.
    async fn get_index(&self, what: &str) -> Result<std::result::Result<Value, Absent>> {
        match self.api.get(what, &self.url("")).await {
            Ok(v) => Ok(Ok(v)),
            Err(e) => Absent::of(&e).map(Err).ok_or(e),
        }
    }

    /// Makes sure the index exists with `want`: creates it when missing and
    /// `create` is set; an existing index with other dimensions or metric
    /// is refused (its vectors could not be compared with the source's).
    pub async fn ensure(&self, want: &IndexConfig, create: bool) -> Result<IndexConfig> {
        let setting = format!("Vectorize index `{}`", self.index);
        match self.lookup().await? {
            Ok(have) if have == *want => Ok(have),
            Ok(have) => Err(Error::Config {
                setting,
                // Load and sync both get here: name the settings, not the job.
                message: format!(
                    "exists with {} dimensions and metric {}, but pgflare.toml asks for {} dimensions (the \
                     vector column's, or [vectorize] dimensions) and metric {}; use another index \
                     (--vectorize-index), or make [vectorize] metric and the dimensions match",
                    have.dimensions, have.metric, want.dimensions, want.metric
                ),
            }),
            Err(_) if create => {
                let what = format!("creating Vectorize index {}", self.index);
                let body = json!({
                    "name": self.index,
                    "description": "created by pgflare load",
                    "config": {"dimensions": want.dimensions, "metric": want.metric},
                });
                let url = self.api.account_url("vectorize/v2/indexes");
                match self.api.call(&what, Method::POST, &url, &body).await {
                    Ok(v) => parse(&what, v.get("config").cloned().unwrap_or(Value::Null)),
                    // A create whose answer was lost is retried and meets
                    // its own index: check that one instead.
                    Err(e) if name_taken(&e) => Box::pin(self.ensure(want, false)).await,
                    Err(e) => Err(e),
                }
            }
            Err(absent) => Err(Error::Config {
                setting,
                message: format!(
                    "{}; create it (`wrangler vectorize create {} --dimensions {} --metric {}`) or let \
                     pgflare create it: --create-index or [vectorize] create_index = true",
                    match absent {
                        Absent::Missing => "does not exist",
                        Absent::Deleted =>
                            "was deleted (Vectorize answers `vectorize.index.deleted` for a while)",
                    },
                    self.index,
                    want.dimensions,
                    want.metric
                ),
            }),
        }
    }

    /// Metadata indexes: property name -> type (`string`, `number`, `boolean`).
    pub async fn metadata_indexes(&self) -> Result<Vec<(String, String)>> {
        let what = format!("Vectorize index {}: metadata indexes", self.index);
        let v = self.api.get(&what, &self.url("metadata_index/list")).await?;
        let list = v.get("metadataIndexes").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(list
            .iter()
            .filter_map(|m| {
                let name = m.get("propertyName")?.as_str()?.to_string();
                let ty = m.get("indexType")?.as_str()?.to_string();
                Some((name, ty))
            })
            .collect())
    }

    /// Creates the metadata indexes that are missing; one with the same
    /// name and another type is refused.
    pub async fn ensure_metadata_indexes(&self, want: &[(String, String)]) -> Result<Vec<WriteTicket>> {
        let have = self.metadata_indexes().await?;
        let mut tickets = Vec::new();
        for (name, ty) in want {
            match have.iter().find(|(n, _)| n == name) {
                Some((_, t)) if t == ty => {}
                Some((_, t)) => {
                    return Err(Error::Config {
                        setting: format!("Vectorize index `{}`, metadata index `{name}`", self.index),
                        // The property is a column or a typed JSON path: name both.
                        message: format!(
                            "exists as type {t}, but pgflare.toml makes property `{name}` a {ty} (the type of \
                             the vector_metadata column, or the `type` of the vector_metadata_paths entry, of \
                             that name); delete it (`wrangler vectorize delete-metadata-index {} --propertyName \
                             {name}`) first, then load the vectors again (those written before a metadata index \
                             exists are not filterable on it), or make the property a {t}",
                            self.index
                        ),
                    });
                }
                None => {
                    let what = format!("Vectorize index {}: creating metadata index {name}", self.index);
                    let body = json!({"propertyName": name, "indexType": ty});
                    let url = self.url("metadata_index/create");
                    match self.write(&what, &url, Body::Json(body)).await {
                        Ok(t) => tickets.push(t),
                        Err(e @ Error::Api { status: Some(400 | 409), .. }) => {
                            self.after_refused_create(name, ty, e).await?
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(tickets)
    }

    /// A metadata-index create was refused. When its answer was lost and
    /// the retry met the index the first attempt made, Vectorize's answer
    /// is not documented (a 409, or a 400 saying it exists): so the list
    /// decides. Listed: done; said to exist: wait until it is listed
    /// (listed means applied; its mutation id is unknown); else the refusal
    /// stands.
    async fn after_refused_create(&self, name: &str, ty: &str, refused: Error) -> Result<()> {
        if self.metadata_indexes().await?.iter().any(|(n, t)| n == name && t == ty) {
            return Ok(());
        }
        let exists = match &refused {
            Error::Api { status, message, .. } => *status == Some(409) || message.contains("already exists"),
            _ => false,
        };
        if exists {
            self.await_listed(name, ty).await
        } else {
            Err(refused)
        }
    }

    /// Polls the metadata-index list until `name` shows with type `ty`.
    async fn await_listed(&self, name: &str, ty: &str) -> Result<()> {
        let mut pacer = Pacer::new(self.poll_every, LISTED_WITHIN);
        loop {
            if self.metadata_indexes().await?.iter().any(|(n, t)| n == name && t == ty) {
                return Ok(());
            }
            if let Err(limit) = pacer.pause().await {
                return Err(Error::Api {
                    what: format!("Vectorize index {}: metadata index {name}", self.index),
                    status: Some(409),
                    message: format!(
                        "exists or is being created, but is not listed as {ty} after {}",
                        crate::timeouts::human(limit)
                    ),
                    hint:
                        "check it with `wrangler vectorize list-metadata-index`, then run the command again"
                            .into(),
                });
            }
        }
    }
}
