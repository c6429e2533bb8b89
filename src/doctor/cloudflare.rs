//! The Cloudflare side of `pgflare doctor`, through pgflare's own client
//! (token, client-side budget, envelope) and only with reads: token
//! verification, the account's D1 database list, the database's details,
//! and the Vectorize index with its metadata indexes ([`super::index`]).
//!
//! The calls, each Cloudflare's documented read:
//! - `GET /user/tokens/verify`, then for account-owned tokens
//!   `GET /accounts/{id}/tokens/verify` (cloudflare-python
//!   `resources/user/tokens/tokens.py` and `resources/accounts/tokens/tokens.py`;
//!   cloudflare-docs `fundamentals/api/troubleshooting.mdx`);
//! - `GET /accounts/{id}/d1/database?per_page=10` (the account exists and
//!   the token may use D1; cloudflare-go `d1/database.go` `List`);
//! - `GET /accounts/{id}/d1/database/{uuid}` (`file_size`, `num_tables`;
//!   cloudflare-go `d1/database.go` `Get`), `file_size` against D1's
//!   10 GB per database (cloudflare-docs `d1/platform/limits.mdx`).
//!
//! The request budget comes from the headers of the first answer: the
//! `x-ratelimit-limit` / `x-ratelimit-remaining` pair cloudflare-docs
//! `fundamentals/api/reference/limits.mdx` lists, or the IETF `ratelimit`
//! / `ratelimit-policy` pair (`"default";r=REMAINING;t=RESET` and
//! `"default";q=LIMIT;w=WINDOW`).

use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::postgres::{first_line, VectorWant};
use super::{Area, Check};
use crate::cloudflare::client::probe::ProbeFailure;
use crate::cloudflare::limits::D1_MAX_DATABASE_BYTES;
use crate::cloudflare::{Api, ApiSettings};
use crate::config::project::Project;
use crate::error::Error;

/// What the Cloudflare checks are given.
pub struct Inputs<'a> {
    pub project: &'a Project,
    /// `None` with the error when the settings are incomplete (no token, no account).
    pub settings: std::result::Result<ApiSettings, String>,
    /// What the source asks of Vectorize; `None` when the source could not be read.
    pub vectors: Option<Vec<VectorWant>>,
    /// The load will create a missing index (`--create-index`).
    pub create_index: bool,
}

pub async fn run(inputs: Inputs<'_>) -> Vec<Check> {
    let mut checks = Vec::new();
    let settings = match inputs.settings {
        Ok(s) => s,
        Err(e) => {
            let c =
                Check::named("cloudflare.credentials", Area::Cloudflare, "API token and account id are set");
            checks.push(c.problem(e, "set what the message names, then run pgflare doctor again"));
            return checks;
        }
    };
    let (base, account) = (settings.base_url.clone(), settings.account_id.clone());
    let api = match Api::new(settings.clone()) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            let c = Check::named("cloudflare.credentials", Area::Cloudflare, "API client");
            checks.push(c.problem(first_line(&e), "report this as a bug"));
            return checks;
        }
    };
    let (token, headers) = token(&api, &base, &account).await;
    let token_ok = token.status == super::Status::Ok;
    checks.push(token);
    checks.push(budget(headers.as_ref(), &settings));
    if !token_ok {
        for (id, title) in [
            ("cloudflare.account", "the account is reachable"),
            ("cloudflare.d1_database", "the D1 database exists"),
            ("cloudflare.vectorize_index", "the Vectorize index matches pgflare.toml"),
        ] {
            checks.push(Check::named(id, Area::Cloudflare, title).skipped("the token was not accepted"));
        }
        return checks;
    }
    let account_check = account_reachable(&api, &account).await;
    let reachable = account_check.status == super::Status::Ok;
    checks.push(account_check);
    if !reachable {
        for (id, title) in [
            ("cloudflare.d1_database", "the D1 database exists"),
            ("cloudflare.vectorize_index", "the Vectorize index matches pgflare.toml"),
        ] {
            checks.push(Check::named(id, Area::Cloudflare, title).skipped("the account was not reachable"));
        }
        return checks;
    }
    checks.extend(d1(&api, inputs.project).await);
    checks.extend(
        super::index::checks(&api, inputs.project, inputs.vectors.as_deref(), inputs.create_index).await,
    );
    checks
}

/// The token is valid and active; returns the headers of the answer (for the budget).
async fn token(api: &Api, base: &str, account: &str) -> (Check, Option<HeaderMap>) {
    let c = Check::named("cloudflare.token", Area::Cloudflare, "the API token is valid and active");
    let user = api.probe("verifying the API token", &format!("{base}/user/tokens/verify")).await;
    let (answer, refusal) = match user {
        Ok(p) => (Ok(p), None),
        Err(f) if refused(&f) => {
            // An account-owned token verifies under its account only.
            let url = api.account_url("tokens/verify");
            match api.probe("verifying the API token (account-owned)", &url).await {
                Ok(p) => (Ok(p), None),
                Err(g) => (Err(g), Some(f)),
            }
        }
        Err(f) => (Err(f), None),
    };
    let p = match answer {
        Ok(p) => p,
        Err(f) => {
            let headers = Some(f.headers.clone());
            return (failed(c, &f, refusal.as_ref(), account), headers);
        }
    };
    let status = p.result.get("status").and_then(Value::as_str).unwrap_or("unknown").to_string();
    let mut found = format!("status {status}");
    if let Some(exp) = p.result.get("expires_on").and_then(Value::as_str) {
        found.push_str(&format!(", expires on {exp}"));
    }
    let check = if status == "active" {
        c.ok(found)
    } else {
        c.problem(
            found,
            "the token is disabled or expired: roll it or create a new one (dashboard: My Profile > API \
             Tokens, with Account > D1 > Edit and Account > Vectorize > Edit) and set CLOUDFLARE_API_TOKEN",
        )
    };
    (check, Some(p.headers))
}

/// An answer that says the Authorization header was not accepted.
fn refused(f: &ProbeFailure) -> bool {
    matches!(f.error, Error::Api { status: Some(400 | 401 | 403), .. })
}

fn failed(
    c: super::CheckBuilder,
    f: &ProbeFailure,
    user_refusal: Option<&ProbeFailure>,
    account: &str,
) -> Check {
    let message = first_line(&f.error);
    match &f.error {
        Error::Api { status: Some(429), .. } => c.problem(
            format!("rate-limited now: {message}"),
            format!(
                "the account's budget (1200 requests per 5 minutes per user, all tools together) is spent; \
                 wait {} and run pgflare doctor again",
                f.retry_after.map_or("a few minutes".into(), |d| format!("{} s", d.as_secs()))
            ),
        ),
        Error::Api { status: Some(_), .. } if refused(f) || user_refusal.is_some() => {
            let user = user_refusal.map(|u| format!("; as a user token: {}", first_line(&u.error))).unwrap_or_default();
            c.problem(
                format!("the token was refused: {message}{user}"),
                format!(
                    "set CLOUDFLARE_API_TOKEN to an API token (not a Global API Key) of account {account}, \
                     with Account > D1 > Edit and Account > Vectorize > Edit (dashboard: My Profile > API \
                     Tokens); check it with `curl -H \"Authorization: Bearer $CLOUDFLARE_API_TOKEN\" \
                     https://api.cloudflare.com/client/v4/user/tokens/verify`"
                ),
            )
        }
        _ => c.problem(
            format!("the API did not answer: {message}"),
            "check the network and CLOUDFLARE_API_BASE_URL (it must end in /client/v4); then run pgflare doctor again",
        ),
    }
}

/// The account exists and the token may list its D1 databases.
async fn account_reachable(api: &Api, account: &str) -> Check {
    let c = Check::named("cloudflare.account", Area::Cloudflare, "the account is reachable");
    let url = api.account_url("d1/database?per_page=10");
    match api.probe("listing the account's D1 databases", &url).await {
        Ok(_) => c.ok(format!("account {account}: the token may list its D1 databases")),
        Err(f) => {
            let message = first_line(&f.error);
            let fix = format!(
                "check the account id (the dashboard URL dash.cloudflare.com/<account-id>, or `wrangler \
                 whoami`) given as CLOUDFLARE_ACCOUNT_ID, --account-id or account_id in the wrangler file, and \
                 that the token was made for account {account} with Account > D1 > Edit"
            );
            c.problem(format!("account {account}: {message}"), fix)
        }
    }
}

/// The D1 database exists, and its size against D1's limit.
async fn d1(api: &Api, project: &Project) -> Vec<Check> {
    let c = Check::named("cloudflare.d1_database", Area::Cloudflare, "the D1 database exists");
    let Some(db) = &project.cloudflare.d1 else {
        return vec![c.problem(
            "no D1 database named",
            "pass --d1-database-id ID, or --wrangler FILE --d1-binding NAME (or put d1_database_id / \
             d1_binding in pgflare.toml's [cloudflare]); `wrangler d1 list` shows the ids",
        )];
    };
    let id = &db.database_id;
    let url = api.account_url(&format!("d1/database/{id}"));
    let info = match api.probe(&format!("D1 database {id}"), &url).await {
        Ok(p) => p.result,
        Err(f) => {
            // Code 7404 (HTTP 404): workers-sdk `packages/miniflare/src/workers/local-explorer/
            // resources/d1.ts` `D1_ERROR_DATABASE_NOT_FOUND`.
            let missing = matches!(&f.error, Error::Api { status: Some(404), .. })
                || crate::cloudflare::client::error_codes(&f.error).contains(&7404);
            let fix = if missing {
                format!(
                    "create it (`wrangler d1 create <name>`) and put its id in the wrangler binding, or fix \
                     the id: `wrangler d1 list` shows the databases of the account ({id} is not one)"
                )
            } else {
                "run pgflare doctor again; if it persists, the message above says what Cloudflare refused"
                    .into()
            };
            return vec![c.problem(format!("D1 database {id}: {}", first_line(&f.error)), fix)];
        }
    };
    let name = info.get("name").and_then(Value::as_str).unwrap_or("?");
    let tables = info.get("num_tables").and_then(Value::as_u64);
    let size = info.get("file_size").and_then(Value::as_u64);
    let mut out =
        vec![c.ok(format!("{id} (name {name}, {} tables)", tables.map_or("?".into(), |n| n.to_string())))];
    out.push(d1_size(size));
    out
}

fn d1_size(size: Option<u64>) -> Check {
    let c =
        Check::named("cloudflare.d1_size", Area::Cloudflare, "the D1 database has room (10 GB per database)");
    let human = |n: u64| indicatif::DecimalBytes(n).to_string();
    let Some(size) = size else {
        return c.info("the answer has no file_size");
    };
    let share = size as f64 / D1_MAX_DATABASE_BYTES as f64;
    let found = format!(
        "{} used of {} ({:.1}%); `pgflare load --dry-run` estimates what a load adds",
        human(size),
        human(D1_MAX_DATABASE_BYTES),
        share * 100.0
    );
    if share >= 1.0 {
        c.problem(found, "the database is full: delete data, or split the tables over several D1 databases")
    } else if share >= 0.8 {
        c.warning(found, "little room is left: check the load's estimate against it before loading")
    } else {
        c.ok(format!("{found} (the free plan allows 500 MB)"))
    }
}

/// What the rate-limit headers say is left, against pgflare's own budget.
fn budget(headers: Option<&HeaderMap>, settings: &ApiSettings) -> Check {
    let c = Check::named("cloudflare.request_budget", Area::Cloudflare, "requests left in the API's budget");
    let ours = format!(
        "pgflare spends at most {} requests per {} s",
        settings.rate_limit_requests,
        settings.rate_limit_window.as_secs()
    );
    let Some((remaining, limit)) = headers.and_then(read_budget) else {
        return c.info(format!(
            "the answer did not say what is left; {ours} (Cloudflare allows 1200 per 300 s per user)"
        ));
    };
    let of = limit.map(|l| format!(" of {l}")).unwrap_or_default();
    let found = format!("{remaining}{of} requests left in the current window; {ours}");
    let low = limit.map_or(remaining < 100, |l| remaining * 10 < l);
    if low {
        c.warning(
            found,
            "other tools (dashboard, wrangler, CI) share the budget: wait for the window to pass, or lower \
             pgflare's with --rate-limit N/SECONDS",
        )
    } else {
        c.ok(found)
    }
}

/// (remaining, limit) from either header form.
pub fn read_budget(h: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let param = |text: &str, key: &str| {
        text.split(';')
            .find_map(|p| p.trim().strip_prefix(key)?.strip_prefix('=')?.trim().parse::<u64>().ok())
    };
    if let Some(r) = get("x-ratelimit-remaining").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some((r, get("x-ratelimit-limit").and_then(|v| v.trim().parse().ok())));
    }
    let remaining = get("ratelimit").and_then(|v| param(&v, "r"))?;
    Some((remaining, get("ratelimit-policy").and_then(|v| param(&v, "q"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_read_from_either_header_form() {
        let mut h = HeaderMap::new();
        assert_eq!(read_budget(&h), None);
        h.insert("ratelimit", "\"default\";r=1187;t=290".parse().expect("header"));
        h.insert("ratelimit-policy", "\"default\";q=1200;w=300".parse().expect("header"));
        assert_eq!(read_budget(&h), Some((1187, Some(1200))));
        h.insert("x-ratelimit-remaining", "40".parse().expect("header"));
        h.insert("x-ratelimit-limit", "1200".parse().expect("header"));
        assert_eq!(read_budget(&h), Some((40, Some(1200))));
    }

    #[test]
    fn a_full_database_is_a_problem_and_a_nearly_full_one_a_warning() {
        assert_eq!(d1_size(Some(1 << 20)).status, super::super::Status::Ok);
        assert_eq!(d1_size(Some(D1_MAX_DATABASE_BYTES / 10 * 9)).status, super::super::Status::Warning);
        assert_eq!(d1_size(Some(D1_MAX_DATABASE_BYTES)).status, super::super::Status::Problem);
    }
}
