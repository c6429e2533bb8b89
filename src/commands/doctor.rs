//! `pgflare doctor`: opens the project the way `load` and `verify` do
//! (pgflare.toml, the environment, the flags, the wrangler file), runs the
//! read-only checks of [`crate::doctor`], and prints the checklist (or the
//! report as JSON). A setting that cannot be read is itself a problem on
//! the list, not an error: doctor is what a user runs when things fail.

use std::process::ExitCode;

use super::print_json;
use crate::cli::DoctorArgs;
use crate::config;
use crate::doctor::settings::{self, Resolved};
use crate::doctor::{cloudflare, postgres, Area, Check, Report, Status};
use crate::output::outln;

pub async fn run(
    args: DoctorArgs,
    json: bool,
    timeouts: crate::timeouts::Timeouts,
) -> anyhow::Result<ExitCode> {
    let report = diagnose(&args, timeouts).await;
    if json {
        print_json(&report)?;
    } else {
        print_human(&report);
    }
    Ok(ExitCode::from(report.exit_code()))
}

async fn diagnose(args: &DoctorArgs, timeouts: crate::timeouts::Timeouts) -> Report {
    let mut resolved = Resolved::default();
    let mut checks = Vec::new();
    let problem = |id: &str, title: &str, e: &crate::Error| {
        Check::named(id, Area::Settings, title).problem(postgres::first_line(e), postgres::hint(e))
    };
    let mut before = match config::file::load_project(args.project.config.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            checks.push(problem("settings.config", "pgflare.toml", &e));
            return Report::new(resolved, checks);
        }
    };
    if let Some(s) = &args.project.schema {
        before.schema = s.clone();
    }
    let mut project = before.clone();
    match crate::plan::cloudflare::resolve_cloudflare(&mut project, &args.cloudflare) {
        Ok(w) => {
            settings::describe(&mut resolved, &before, &project, &args.cloudflare, w.as_ref());
            checks.extend(settings::checks(&resolved, &project));
        }
        Err(e) => {
            settings::describe(&mut resolved, &before, &project, &args.cloudflare, None);
            checks.extend(
                settings::checks(&resolved, &project).into_iter().filter(|c| c.id != "settings.wrangler"),
            );
            checks.push(problem("settings.wrangler", "wrangler file", &e));
        }
    }
    let source = crate::plan::resolve::source_url(args.project.database_url.as_deref(), &project).and_then(
        |(url, from)| Ok((crate::source::Source::parse_from(&url, &from)?.with_timeouts(timeouts), from)),
    );
    let vectors = match source {
        Ok((source, from)) => {
            resolved.source = Some(source.display().to_string());
            resolved.source_from = Some(from);
            let outcome = postgres::run(&source, &project, &args.project.tables).await;
            checks.extend(outcome.checks);
            outcome.vectors
        }
        Err(e) => {
            checks.push(
                Check::named("postgres.connect", Area::Postgres, "connect to the source")
                    .problem(postgres::first_line(&e), postgres::hint(&e)),
            );
            None
        }
    };
    if args.no_cloudflare {
        let c = Check::named("cloudflare.token", Area::Cloudflare, "the Cloudflare side");
        checks.push(c.skipped("--no-cloudflare"));
    } else {
        let settings =
            crate::plan::targets::api_settings(&project, None, timeouts).map_err(|e| e.to_string());
        let inputs =
            cloudflare::Inputs { project: &project, settings, vectors, create_index: args.create_index };
        checks.extend(cloudflare::run(inputs).await);
    }
    Report::new(resolved, checks)
}

fn mark(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok     ",
        Status::Info => "info   ",
        Status::Warning => "WARNING",
        Status::Skipped => "skipped",
        Status::Problem => "PROBLEM",
    }
}

fn print_human(r: &Report) {
    let mut area = None;
    for c in &r.checks {
        if area != Some(c.area) {
            area = Some(c.area);
            let name = match c.area {
                Area::Settings => "Settings",
                Area::Postgres => "Postgres",
                Area::Cloudflare => "Cloudflare",
            };
            outln!("{name}");
        }
        outln!("  [{}] {}: {}", mark(c.status), c.title, c.found);
        if let Some(fix) = &c.fix {
            outln!("            what to do: {fix}");
        }
    }
    let n = &r.counts;
    let verdict = match r.verdict {
        Status::Problem => "PROBLEMS FOUND",
        Status::Warning => "OK WITH WARNINGS",
        _ => "OK",
    };
    outln!();
    outln!(
        "{verdict}: {} ok, {} info, {} warnings, {} problems, {} skipped",
        n.ok,
        n.info,
        n.warning,
        n.problem,
        n.skipped
    );
}
