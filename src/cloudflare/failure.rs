//! How a failed request is read: whether another attempt can help (429,
//! 5xx, a dropped or stalled connection) or not (a refused token, a SQL
//! error), and what the error tells the user to do. Also the check that
//! refuses a token that could never be read before anything is sent.

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

use super::retry::{parse_retry_after, Failure};
use super::transfer::{Stall, JSON_ANSWER_FACTOR};
use crate::error::{Error, Result};
use crate::timeouts::human;

/// The token goes into a header as it is: one with a line break, a space
/// or a quote in it (copied with its surroundings) would be refused by
/// Cloudflare (400, code 6003/6111) or could not be sent at all. API tokens
/// are letters, digits, `-` and `_`; RFC 6750's other bearer characters
/// are let through.
pub(crate) fn check_token(token: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    let what = match token.chars().find(|c| !allowed(*c)) {
        None if !token.is_empty() => return Ok(()),
        None => "nothing".to_string(),
        Some(c) if c.is_whitespace() => "a space or line break".into(),
        Some('"' | '\'') => "quotes".into(),
        Some(c) if c.is_control() => "a control character".into(),
        Some(_) => "a character API tokens never hold".into(),
    };
    Err(Error::Config {
        setting: "CLOUDFLARE_API_TOKEN".into(),
        message: format!(
            "the token holds {what} ({} characters in all): an API token is one word of letters, \
             digits, `-` and `_`. Copy it again from the dashboard (My Profile > API Tokens) without \
             quotes, spaces, line breaks or a `Bearer ` prefix",
            token.chars().count()
        ),
    })
}

/// A request given up because nothing moved for `--http-timeout` (or its
/// answer outlasted its cap): retried, but only a few times, as a silent
/// server usually stays silent.
pub(crate) fn stalled(t: &crate::timeouts::Timeouts, what: &str, url: &str, stall: Stall) -> Failure {
    let server = reqwest::Url::parse(url).ok().and_then(|u| {
        u.host_str().map(|h| match u.port_or_known_default() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        })
    });
    let server = server.unwrap_or_else(|| "the Cloudflare API".into());
    let message = match stall {
        Stall::Upload => {
            format!("the upload to {server} stalled: nothing was sent for {} (--http-timeout)", human(t.http))
        }
        Stall::Answer => format!("no answer from {server} within {} (--http-timeout)", human(t.http)),
        Stall::TooSlow => format!(
            "the answer from {server} took longer than {} ({JSON_ANSWER_FACTOR} x --http-timeout)",
            human(t.http * JSON_ANSWER_FACTOR)
        ),
    };
    Failure::Transient {
        error: Error::Api {
            what: what.to_string(),
            status: None,
            message,
            hint: "the connection stalled; pgflare retries such failures a few times (a transfer that \
                   keeps moving is never cut short: raise --http-timeout only for a server that thinks \
                   long before it answers)"
                .into(),
        },
        retry_after: None,
        timed_out: true,
    }
}

/// A request that got no answer: a failed or refused connection, or one of
/// the run's bounds ran out (then the error says which, and the retry
/// policy gives up sooner: a server that stays silent once usually does
/// again).
pub(crate) fn transport(t: &crate::timeouts::Timeouts, what: &str, e: reqwest::Error) -> Failure {
    let server = e.url().map(|u| match (u.host_str(), u.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => u.to_string(),
    });
    let server = server.unwrap_or_else(|| "the Cloudflare API".into());
    let (message, timed_out) = if e.is_timeout() && e.is_connect() {
        (format!("could not connect to {server} within {} (--connect-timeout)", human(t.connect)), true)
    } else if e.is_timeout() {
        (format!("no answer from {server} within {} (--http-timeout)", human(t.http)), true)
    } else {
        // reqwest errors show the URL; ours hold account and database
        // ids, never the token, so they may be shown. The causes say
        // what happened (`Connection refused`).
        let mut text = format!("request failed: {e}");
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        (text, false)
    };
    Failure::Transient {
        error: Error::Api {
            what: what.to_string(),
            status: None,
            message,
            hint: "the connection failed or the server did not answer in time; pgflare retries such \
                   failures with backoff (a silent server a few times only)"
                .into(),
        },
        retry_after: None,
        timed_out,
    }
}

/// Decides whether a failed answer is worth another attempt, and what to tell the user.
pub(crate) fn classify(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    message: String,
    fallback: &str,
) -> Failure {
    let retry_after = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let transient = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
    let hint = match status.as_u16() {
        429 => "over Cloudflare's rate limit (1200 requests per 5 minutes per user, shared with wrangler, the \
                dashboard and other tools; once over it every call is refused for 5 minutes); pgflare waits \
                as Retry-After says and shows the time left"
            .into(),
        400 if message.contains("[9106]") => {
            "no credentials reached Cloudflare: set CLOUDFLARE_API_TOKEN (a proxy in between may drop the \
             Authorization header)"
                .into()
        }
        400 if message.contains("[6003]") || message.contains("[6111]") => {
            "Cloudflare could not read the Authorization header: CLOUDFLARE_API_TOKEN must be an API token \
             (40 letters, digits, `-`, `_`; not the Global API Key, not with quotes or a `Bearer ` prefix). \
             Create one under My Profile > API Tokens"
                .into()
        }
        401 | 403 => "Cloudflare refused the API token (code 10000 means it is unknown, expired, or lacks a \
                     permission for this request): check CLOUDFLARE_API_TOKEN; the token needs Account > D1 > \
                     Edit (and Account > Vectorize > Edit for vectors) with this account under Account \
                     Resources, and CLOUDFLARE_ACCOUNT_ID must be that account (an IP filter on the token \
                     must allow this machine)"
            .into(),
        409 => "it conflicts with what exists (an index or metadata index of that name, perhaps created by an earlier attempt)".into(),
        404 => "not found: check CLOUDFLARE_ACCOUNT_ID and the D1 database id / Vectorize index name (or the wrangler binding)".into(),
        400 if !fallback.is_empty() => fallback.into(),
        s if s >= 500 => "Cloudflare failed; pgflare retries with backoff".into(),
        _ => if fallback.is_empty() { "unexpected answer".into() } else { fallback.into() },
    };
    let error = Error::Api { what: what.to_string(), status: Some(status.as_u16()), message, hint };
    if transient {
        Failure::Transient { error, retry_after, timed_out: false }
    } else {
        Failure::Fatal(error)
    }
}

pub(crate) fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_string(),
    }
}
