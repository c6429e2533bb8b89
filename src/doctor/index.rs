//! The Vectorize index against pgflare.toml, through pgflare's own
//! Vectorize client (`GET indexes/{name}`, `info`, `metadata_index/list`):
//! it exists (or the load will create it), its dimensions and metric are
//! the load's, and the metadata indexes pgflare.toml asks for exist with
//! their types. A metadata index only covers vectors written after it was
//! created (cloudflare-docs `vectorize/reference/metadata-filtering.mdx`),
//! so one missing from an index that already holds vectors is a problem,
//! while on an empty index the load creates it before the first vector.
//!
//! A missing index is recognised by Cloudflare's codes, as the load
//! recognises it ([`Absent`]): 3000 `vectorize.index.not_found` (observed
//! with HTTP 400 as well as 404) and 3005 for a deleted one (HTTP 410); see
//! the README's table of behaviours reproduced.

use std::sync::Arc;

use super::postgres::{first_line, VectorWant};
use super::{Area, Check};
use crate::cloudflare::vectorize::Absent;
use crate::cloudflare::vectorize::IndexConfig;
use crate::cloudflare::{Api, Vectorize};
use crate::config::project::Project;

const TITLE: &str = "the Vectorize index matches pgflare.toml";

pub async fn checks(
    api: &Arc<Api>,
    project: &Project,
    wants: Option<&[VectorWant]>,
    create: bool,
) -> Vec<Check> {
    let c = Check::named("cloudflare.vectorize_index", Area::Cloudflare, TITLE);
    let configured = project.tables.iter().any(|t| t.vector.is_some());
    let wants = wants.unwrap_or_default();
    if !configured {
        return vec![c.info("no table of pgflare.toml has a `vector` column: Vectorize is not used")];
    }
    let Some(name) = &project.cloudflare.vectorize_index else {
        return vec![c.problem(
            "pgflare.toml sends vectors but no Vectorize index is named",
            "pass --vectorize-index NAME, or --wrangler FILE --vectorize-binding NAME (or vectorize_index / \
             vectorize_binding in pgflare.toml's [cloudflare])",
        )];
    };
    let v = Vectorize::new(api.clone(), name);
    // The source's declared dimension, else [vectorize] dimensions; the load
    // takes an existing index's when neither says.
    let dims = wants.iter().find_map(|w| w.dims).or(project.vectorize.dimensions);
    let metric = &project.vectorize.metric;
    let have = match v.lookup().await {
        Ok(h) => h,
        Err(e) => {
            return vec![c.problem(format!("index {name}: {}", first_line(&e)), "run pgflare doctor again")]
        }
    };
    let have = match have {
        Ok(have) => have,
        Err(absent) => {
            return vec![absent_index(
                c,
                name,
                absent,
                dims,
                metric,
                create || project.vectorize.create_index,
            )]
        }
    };
    let mut out = vec![compare(c, name, &have, dims, metric)];
    out.push(metadata(&v, name, wants).await);
    out
}

/// The check of an index that is not there: a warning when the load will
/// create it, else a problem with the command that creates it.
fn absent_index(
    c: super::CheckBuilder,
    name: &str,
    absent: Absent,
    dims: Option<u32>,
    metric: &str,
    creates: bool,
) -> Check {
    // A deleted index answers 3005 for a while (see `cloudflare::vectorize::Absent`):
    // its vectors are gone, whatever a sync checkpoint says.
    let gone = match absent {
        Absent::Missing => format!("index {name} does not exist"),
        Absent::Deleted => format!("index {name} was deleted (code 3005), with its vectors"),
    };
    {
        let dims_flag = dims.map_or("<dims>".to_string(), |d| d.to_string());
        let create_cmd =
            format!("wrangler vectorize create {name} --dimensions {dims_flag} --metric {metric}");
        if creates {
            c.warning(gone, format!("pgflare load will create it ({dims_flag} dimensions, metric {metric})"))
        } else {
            c.problem(
                gone,
                format!(
                    "create it (`{create_cmd}`), or let pgflare load create it: --create-index or \
                     [vectorize] create_index = true (and run doctor with --create-index)"
                ),
            )
        }
    }
}

fn compare(c: super::CheckBuilder, name: &str, have: &IndexConfig, dims: Option<u32>, metric: &str) -> Check {
    let found = format!("index {name}: {} dimensions, metric {}", have.dimensions, have.metric);
    let mut wrong = Vec::new();
    if let Some(d) = dims.filter(|d| *d != have.dimensions) {
        wrong.push(format!("{d} dimensions (the vector column's, or [vectorize] dimensions)"));
    }
    if have.metric != metric {
        wrong.push(format!("metric {metric} ([vectorize] metric)"));
    }
    if wrong.is_empty() {
        return c.ok(found);
    }
    c.problem(
        format!("{found}, but pgflare.toml asks for {}", wrong.join(" and ")),
        format!(
            "an index cannot change its dimensions or metric: use another index (--vectorize-index), make \
             pgflare.toml match, or delete and create it again (`wrangler vectorize delete {name}`, then \
             `wrangler vectorize create {name} --dimensions {} --metric {metric}`; its vectors are lost)",
            dims.unwrap_or(have.dimensions)
        ),
    )
}

/// The metadata indexes pgflare.toml asks for, against the index's.
async fn metadata(v: &Vectorize, name: &str, wants: &[VectorWant]) -> Check {
    let c = Check::named(
        "cloudflare.metadata_indexes",
        Area::Cloudflare,
        "the metadata indexes pgflare.toml asks for exist",
    );
    let want: Vec<&(String, String)> = wants.iter().flat_map(|w| &w.metadata_indexes).collect();
    let have = match v.metadata_indexes().await {
        Ok(h) => h,
        Err(e) => return c.problem(format!("index {name}: {}", first_line(&e)), "run pgflare doctor again"),
    };
    let mut absent = Vec::new();
    let mut mistyped = Vec::new();
    for (p, t) in &want {
        match have.iter().find(|(n, _)| n == p) {
            None => absent.push(format!("{p} ({t})")),
            Some((_, ht)) if ht != t => mistyped.push(format!("{p} is {ht}, pgflare.toml makes it {t}")),
            Some(_) => {}
        }
    }
    let listed: Vec<String> = have.iter().map(|(n, t)| format!("{n} ({t})")).collect();
    let listed = if listed.is_empty() { "none".to_string() } else { listed.join(", ") };
    if !mistyped.is_empty() {
        return c.problem(
            format!("index {name}: {}", mistyped.join("; ")),
            format!(
                "delete it (`wrangler vectorize delete-metadata-index {name} --propertyName <name>`) and load \
                 the vectors again, or change the property's type in pgflare.toml"
            ),
        );
    }
    if absent.is_empty() {
        return c.ok(format!("index {name} has {listed}"));
    }
    let vectors = match v.info().await {
        Ok(i) => i.vector_count.unwrap_or(0),
        Err(e) => return c.problem(format!("index {name}: {}", first_line(&e)), "run pgflare doctor again"),
    };
    if vectors == 0 {
        return c.ok(format!(
            "index {name} is empty and lacks {}: pgflare load creates them before the first vector",
            absent.join(", ")
        ));
    }
    c.problem(
        format!(
            "index {name} holds {vectors} vectors but lacks the metadata index(es) {}: those vectors cannot \
             be filtered on them (a metadata index covers only vectors written after it)",
            absent.join(", ")
        ),
        format!(
            "create them (`wrangler vectorize create-metadata-index {name} --propertyName <name> --type \
             <type>`), then load the vectors again: pgflare load --restart"
        ),
    )
}
