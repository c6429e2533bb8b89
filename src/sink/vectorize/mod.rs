//! The Vectorize sink: a table's vector column, id and metadata columns as
//! Vectorize NDJSON lines ([`ndjson`]), written as files that `wrangler
//! vectorize upsert --file` takes unchanged ([`files`]) or upserted through
//! the REST API ([`api`]). Rows Vectorize would refuse are caught here,
//! before any request, and either stop the load or are skipped and named
//! in the summary, as the configuration says.

pub mod api;
pub mod files;
pub mod flatten;
pub mod metadata;
pub mod ndjson;
pub mod tails;

#[cfg(test)]
mod tests;
