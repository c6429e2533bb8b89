//! `pgflare load`: settings into a load plan, the load, and its summary
//! for people or for `--json`.

use crate::output::outln;
use std::process::ExitCode;

use super::{human_bytes, print_json};
use crate::cli::{LoadArgs, VectorizeMode};
use crate::load::{self, LoadOptions, LoadSummary};
use crate::plan::targets::{self, D1Flags, LoadVectorFlags, Opening, OpeningFlags};
use crate::plan::VectorTarget;
use crate::progress::Progress;

pub async fn run(
    args: LoadArgs,
    json: bool,
    progress: &Progress,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    let Opening { mut project, source, read, split } =
        targets::open(OpeningFlags::of(&args.project, &args.cloudflare, &args.tuning), timeouts)?;
    if let Some(p) = args.on_invalid_vector {
        project.vectorize.on_invalid = p;
    }
    if args.vectors.create_index {
        project.vectorize.create_index = true;
    }
    let d1 = D1Flags::of(
        args.d1.target,
        &args.d1.place,
        args.rate_limit.as_deref(),
        args.file_size_mib << 20,
        args.import_mib << 20,
    );
    let target = targets::d1_target(&d1, &project, &args.cloudflare, timeouts)?;
    let vectors = LoadVectorFlags::of(
        &args.vectors,
        args.d1.target,
        &args.d1.place,
        args.rate_limit.as_deref(),
        &args.project.tables,
    );
    let vectorize = targets::load_vectors(&vectors, &project, timeouts)?;
    if matches!(vectorize, VectorTarget::Off)
        && args.vectors.vectorize == VectorizeMode::Auto
        && project.tables.iter().any(|t| t.vector.is_some())
    {
        progress.println(
            "note: vectors are not loaded with --target sqlite (Vectorize has no local file); \
             add --vectorize-out DIR for NDJSON files or --vectorize api for the index",
        );
    }
    let opts = LoadOptions {
        project,
        only_tables: args.project.tables.clone(),
        target,
        vectorize,
        read,
        split,
        state_dir: args.state_dir.clone(),
        restart: args.restart,
        dry_run: args.dry_run,
        create_tables: !args.no_create_tables,
        slot: args.slot.clone(),
    };
    let summary = load::run(&source, &opts, progress).await?;
    // The budget the requests are paced by (--rate-limit or its default).
    let budget = opts.target.api_settings().or(match &opts.vectorize {
        VectorTarget::Api { settings, .. } => Some(settings),
        _ => None,
    });
    let budget = budget.map(|s| (s.rate_limit_requests, s.rate_limit_window));
    if json {
        print_json(&summary)?;
    } else {
        print_human(&summary, budget);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_human(s: &LoadSummary, budget: Option<(u32, std::time::Duration)>) {
    if s.dry_run {
        outln!("plan for {} (nothing written):", s.target);
        for p in &s.plan {
            let rows = p.rows_estimate.map(|r| r.to_string()).unwrap_or_else(|| "?".into());
            let mut output = match (p.estimated_files, p.estimated_requests) {
                (0, 0) => String::new(),
                (f, 0) => format!("  ~{f} files"),
                (_, r) => format!("  ~{r} requests"),
            };
            match (p.estimated_vector_files, p.estimated_vector_requests) {
                (0, 0) => {}
                (f, 0) => output.push_str(&format!(" + ~{f} Vectorize NDJSON files")),
                (_, r) => output.push_str(&format!(" + ~{r} Vectorize requests")),
            }
            outln!(
                "  wave {}  {:24} -> D1 {:20} ~{:>10} rows  {:>3} ranges ({} done)  ~{}{output}",
                p.wave + 1,
                p.table,
                p.d1_table,
                rows,
                p.partitions,
                p.partitions_done,
                human_bytes(p.estimated_d1_bytes)
            );
        }
        let requests: u64 = s.plan.iter().map(|p| p.estimated_requests + p.estimated_vector_requests).sum();
        if let Some((per, window)) = budget.filter(|_| requests > 0) {
            outln!(
                "~{requests} API requests (+1 for the schema): at the request budget of {per} per {} \
                 (--rate-limit), at least {}",
                crate::timeouts::human(window),
                crate::timeouts::human(window.mul_f64((requests + 1) as f64 / f64::from(per.max(1))))
            );
        }
        let pct = s.estimated_d1_bytes as f64 * 100.0 / s.d1_limit_bytes as f64;
        outln!(
            "estimated D1 size ~{} = {pct:.1}% of D1's {:.0} GB limit{}",
            human_bytes(s.estimated_d1_bytes),
            s.d1_limit_bytes as f64 / 1e9,
            if pct > 100.0 {
                "  <-- DOES NOT FIT: leave columns out (d1_columns) or split the database"
            } else {
                ""
            }
        );
        return;
    }
    for t in &s.tables {
        outln!(
            "{:24} -> {:20} {:>10} rows ({} this run)  {:>10}  {} ranges, {} skipped as done",
            t.table,
            t.d1_table,
            t.rows,
            t.rows_this_run,
            human_bytes(t.bytes),
            t.partitions,
            t.partitions_skipped
        );
        if t.rows_soft_deleted + t.rows_hidden_by_deleted_parent > 0 {
            outln!(
                "{:26}left out: {} soft-deleted, {} below a soft-deleted parent",
                "",
                t.rows_soft_deleted,
                t.rows_hidden_by_deleted_parent
            );
        }
        if let Some(v) = &t.vectors {
            outln!(
                "{:24} -> Vectorize {:>10} vectors, {} rows with a NULL vector (in D1, no vector), {} skipped",
                "",
                v.written,
                v.null,
                v.skipped
            );
            for r in &v.rejected {
                outln!("{:26}skipped {}: {}", "", r.key, r.describe());
            }
            if v.skipped > v.rejected.len() as u64 {
                outln!("{:26}... and {} more (see the state file)", "", v.skipped - v.rejected.len() as u64);
            }
            if v.metadata_omitted > 0 {
                outln!(
                    "{:26}{} metadata values left out of written vectors (they do not fit Vectorize, or the mapping omits them):",
                    "", v.metadata_omitted
                );
                for o in &v.omissions {
                    outln!("{:28}{} x {}: {} (e.g. {})", "", o.count, o.path, o.reason, o.example);
                }
            }
        }
    }
    print_links(&s.tables);
    if let Some(v) = &s.vectorize {
        outln!("vectors: {v}");
    }
    if s.rows_this_run == 0 && s.complete && !s.resumed {
        outln!("nothing to load");
    } else if s.rows_this_run == 0 && s.complete {
        outln!("the load into {} was already complete; pass --restart to load again", s.target);
    } else {
        let rate = s.rows_this_run as f64 / s.seconds.max(1e-9);
        outln!(
            "loaded {} rows into {} in {:.1}s ({rate:.0} rows/s){}",
            s.rows_this_run,
            s.target,
            s.seconds,
            if s.resumed { ", resuming an earlier run" } else { "" }
        );
    }
    outln!("state: {}  (a later sync starts at snapshot {})", s.state_file, s.first_snapshot.taken_at);
    if let Some(c) = &s.sync_checkpoint {
        outln!("sync checkpoint: {c}  (`pgflare sync` continues from there, on any machine)");
    }
}

/// Links set after the rows, and the rows left with their link unset.
fn print_links(tables: &[load::TableSummary]) {
    for (t, l) in tables.iter().filter_map(|t| t.links.as_ref().map(|l| (t, l))) {
        outln!("{:24} -> foreign keys on a cycle: links of {} rows written after every row", "", l.rows);
        if l.unresolved > 0 {
            outln!(
                "{:26}{} rows of {} point at a row D1 does not have: their link is left unset \
                 (NULL, or the row itself for a NOT NULL key); `pgflare sync` sets it once that row is there",
                "",
                l.unresolved,
                t.table
            );
            for e in &l.examples {
                outln!("{:28}{e}", "");
            }
        }
    }
}
