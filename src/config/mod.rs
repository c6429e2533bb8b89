//! The project's configuration files: `pgflare.toml` ([`file`],
//! [`project`], [`mapping`], [`vector_metadata`]), the wrangler file
//! ([`wrangler`], [`wrangler_local`]), and what `init` writes ([`init`]).
//! Resolving them together with the command line and the environment is
//! [`crate::plan`]'s job.

pub mod file;
mod file_errors;
pub mod json_path;
pub mod mapping;
pub mod project;
pub mod queries;
pub mod queries_check;
pub mod toml_text;
pub mod vector_metadata;
pub mod wrangler;
pub mod wrangler_local;
