//! `pgflare verify`: settings into a verification, the comparison, the
//! report files, and the exit code a pipeline gates on.

use crate::output::outln;
use std::process::ExitCode;

use anyhow::Context;

use super::print_json;
use crate::cli::CheckArgs;
use crate::plan::targets::{self, Opening, OpeningFlags};
use crate::plan::Target;
use crate::progress::Progress;
use crate::verify::report::{kind_name, Status, VerifyReport};
use crate::verify::run::{self, VerifyOptions};

pub async fn run(
    args: CheckArgs,
    json: bool,
    progress: &Progress,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    let vector_values: crate::verify::value_check::ValueMode =
        args.vector_values.parse().map_err(|e| anyhow::anyhow!("--vector-values: {e}"))?;
    if !(args.sample > 0.0 && args.sample <= 1.0) {
        anyhow::bail!("--sample: {} is not a fraction in (0, 1]", args.sample);
    }
    let Opening { project, source, read, split } =
        targets::open(OpeningFlags::of(&args.project, &args.cloudflare, &args.tuning), timeouts)?;
    let wants_vectors = project.tables.iter().any(|t| t.vector.is_some()) && !args.no_vectorize;
    // One client for D1 and Vectorize: they share the user's request budget.
    let needs_api = (wants_vectors && project.cloudflare.vectorize_index.is_some())
        || (args.sqlite.is_none() && project.cloudflare.d1.is_some());
    let settings = match needs_api {
        true => Some(targets::api_settings(&project, args.rate_limit.as_deref(), timeouts)?),
        false => None,
    };
    let api = match &settings {
        Some(s) => {
            Some(std::sync::Arc::new(crate::cloudflare::Api::new(s.clone())?.with_progress(progress.clone())))
        }
        None => None,
    };
    let vectorize = match (&project.cloudflare.vectorize_index, wants_vectors, &api) {
        (Some(index), true, Some(api)) => {
            Some(std::sync::Arc::new(crate::cloudflare::Vectorize::new(api.clone(), index)))
        }
        (None, true, _) => anyhow::bail!(
            "pgflare.toml sends vectors but names no Vectorize index: pass --vectorize-index NAME (or \
             --wrangler FILE --vectorize-binding NAME), or --no-vectorize to verify D1 only"
        ),
        _ => None,
    };
    let d1 = match (&args.sqlite, &project.cloudflare.d1, settings) {
        (Some(p), _, _) => Target::Sqlite { path: p.clone() },
        // `needs_api` held: there is a client.
        (None, Some(db), Some(settings)) => Target::Api {
            settings,
            database_id: db.database_id.clone(),
            import_bytes: 0,
            query_bytes: 0,
        },
        (None, Some(_), None) => anyhow::bail!("internal: a D1 database over the API without a client"),
        (None, None, _) => anyhow::bail!(
            "name the D1 database: --sqlite FILE for a local file, or --d1-database-id ID (or --wrangler FILE \
             --d1-binding NAME) to export it through the API"
        ),
    };
    let opts = VerifyOptions {
        project,
        only_tables: args.project.tables.clone(),
        d1,
        api,
        work_dir: args.report_dir.join(".d1-export"),
        read,
        split,
        buckets: args.buckets,
        sample: args.sample,
        vectorize,
        float_tolerance: args.float_tolerance.max(0.0),
        vector_values,
        queries: args.queries,
        k: args.k.clamp(1, 100),
        min_recall: args.min_recall,
        accept_skipped: args.accept_skipped,
        query_file: args.query_file.clone(),
        last_report: Some(args.report_dir.join("report.json")),
    };
    let report = run::run(&source, &opts, progress).await?;
    let written = write_reports(&report, &args.report_dir)?;
    if json {
        print_json(&report)?;
    } else {
        print_human(&report, &written);
    }
    Ok(ExitCode::from(report.verdict.status.exit_code()))
}

/// Writes report.json (and the people's forms) to `dir`; returns the paths.
fn write_reports(report: &VerifyReport, dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, text) in [
        ("report.json", serde_json::to_string_pretty(report)?),
        ("report.md", crate::verify::render::markdown(report)),
        ("report.html", crate::verify::render::html(report)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn print_human(r: &VerifyReport, written: &[std::path::PathBuf]) {
    let word = match r.verdict.status {
        Status::Consistent => "CONSISTENT",
        Status::ConsistentExceptSkipped => "CONSISTENT EXCEPT SKIPPED VECTORS",
        Status::Differences => "DIFFERENCES",
        Status::Error => "COULD NOT VERIFY",
    };
    outln!("{word}: {}", r.verdict.summary);
    for t in &r.tables {
        for g in &t.targets {
            let n: u64 = g.counts.values().sum();
            let how = match g.kind {
                crate::verify::report::TargetKind::D1 => {
                    format!("{} of {} buckets differ", g.buckets_differing, g.buckets)
                }
                crate::verify::report::TargetKind::Vectorize => "compared by id".to_string(),
            };
            outln!(
                "  {:24} {:9} {:>9} source rows, {:>9} in target, {how}, {n} differences",
                t.table,
                kind_name(g.kind),
                g.source_rows,
                g.target_rows,
            );
            for d in g.differences.iter().take(10) {
                let fields: Vec<String> =
                    d.fields.iter().map(|f| format!("{}: {} -> {}", f.field, f.source, f.target)).collect();
                let reason = d.reason.as_deref().unwrap_or_default();
                outln!("    {:?} {} {}{reason}", d.kind, d.key, fields.join("; "));
            }
        }
    }
    if let Some(q) = &r.queries {
        outln!(
            "  query parity: recall@{} mean {:.3} (min {:.3}) over {} queries, threshold {:.2}: {}",
            q.k,
            q.mean_recall,
            q.min_recall,
            q.queries.len(),
            q.threshold,
            if q.passed { "passed" } else { "FAILED" }
        );
    }
    if let Some(s) = &r.query_shapes {
        outln!("  query shapes ({}; {} Cloudflare requests):", s.queries_from, s.requests);
        for x in &s.shapes {
            let reasons: Vec<String> = x.reasons.iter().map(|(k, n)| format!("{} {n}", k.as_str())).collect();
            outln!(
                "    {}: recall@{} mean {:.3} (min {:.3}), context equal in {}/{} queries: {}{}",
                x.name,
                x.k,
                x.mean_recall,
                x.min_recall,
                x.context_equal,
                x.queries,
                if x.passed { "matches Supabase" } else { "DOES NOT MATCH" },
                if reasons.is_empty() { String::new() } else { format!(" (misses: {})", reasons.join(", ")) }
            );
        }
    }
    for p in written {
        outln!("report: {}", p.display());
    }
}
