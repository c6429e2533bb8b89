//! Reading D1's answers to import and export polls, in every form the
//! real service may send them (workers-sdk `packages/wrangler/src/d1/
//! execute.ts` `pollUntilComplete`, `export.ts` `pollExport`, `types.ts`;
//! cloudflare-python `types/d1/database_import_response.py`):
//!
//! - `{success: false, error}` (wrangler's `PollingFailure`): a refusal.
//!   Its text says whether another job holds the database ("Currently
//!   processing a long-running import.", observed), whether D1 no longer
//!   knows the job ("Not currently importing anything.", observed after an
//!   import ended), or what failed;
//! - `status: "error"` with `errors: [string]` (what wrangler reads for an
//!   import) or `error: string` (what it reads for an export, and what the
//!   schema has for both);
//! - `status: "complete"` with `result`;
//! - anything else with an `at_bookmark` is still running (wrangler polls
//!   again on every other status); without a bookmark it cannot be polled.

use serde_json::Value;

use crate::error::{Error, Result};

/// What one answer of an import or export says.
#[derive(Debug)]
pub enum Answer {
    /// Still running: poll again with this bookmark.
    Active(String),
    /// Done; the whole answer (its `result` holds the outcome).
    Complete(Value),
    /// It failed; Cloudflare's text.
    Failed(String),
    /// Another import or export holds the database; Cloudflare's text.
    Busy(String),
    /// D1 no longer knows the job (it ended and its end was not seen).
    Gone(String),
    /// An answer that is none of the above.
    Malformed(String),
}

/// Whether an error text is D1 refusing a request because an import or
/// export holds the database.
pub fn is_busy(text: &str) -> bool {
    text.contains("Currently processing a long-running")
}

fn is_gone(text: &str) -> bool {
    text.contains("Not currently importing anything") || text.contains("Not currently exporting anything")
}

/// The error text of an answer: `errors` (strings or `{message}` objects)
/// or `error`, whichever says something.
fn error_text(v: &Value) -> Option<String> {
    let from_errors = v.get("errors").and_then(Value::as_array).map(|errors| {
        errors
            .iter()
            .filter_map(|e| match e {
                Value::String(s) => Some(s.clone()),
                other => other.get("message").and_then(Value::as_str).map(str::to_string),
            })
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    });
    let from_error = match v.get("error") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    from_errors.filter(|s| !s.is_empty()).or(from_error.filter(|s| !s.is_empty()))
}

pub fn read(v: &Value) -> Answer {
    if v.get("success").and_then(Value::as_bool) == Some(false) {
        let text = error_text(v).unwrap_or_else(|| format!("D1 refused it without a message: {v}"));
        return if is_busy(&text) {
            Answer::Busy(text)
        } else if is_gone(&text) {
            Answer::Gone(text)
        } else {
            Answer::Failed(text)
        };
    }
    match v.get("status").and_then(Value::as_str) {
        Some("complete") => Answer::Complete(v.clone()),
        Some("error") => Answer::Failed(
            error_text(v).unwrap_or_else(|| format!("D1 reported an error without a message: {v}")),
        ),
        _ => match v.get("at_bookmark").and_then(Value::as_str).filter(|b| !b.is_empty()) {
            Some(b) => Answer::Active(b.to_string()),
            None => Answer::Malformed(format!("an unfinished answer without a bookmark to poll: {v}")),
        },
    }
}

pub use super::wait::Pacer;

/// The next pause of a D1 wait, or the error that says D1 has not
/// finished `waiting_for` within `--d1-wait`.
pub async fn pause(pacer: &mut Pacer, what: &str, waiting_for: &str) -> Result<()> {
    pacer.pause().await.map_err(|limit| Error::Api {
        what: what.to_string(),
        status: None,
        message: format!("{waiting_for}: D1 has not finished after {}", crate::timeouts::human(limit)),
        hint: "D1 may be overloaded, or another import or export (perhaps of a run that was \
               stopped) holds the database; run the command again later (finished ranges are \
               not redone), or give it longer with --d1-wait"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_failure_form_gives_cloudflares_text() {
        let forms = [
            json!({"success": true, "status": "error", "errors": ["UNIQUE constraint failed: t.id"], "at_bookmark": "b"}),
            json!({"success": true, "status": "error", "error": "UNIQUE constraint failed: t.id", "errors": []}),
            json!({"success": false, "error": "UNIQUE constraint failed: t.id"}),
        ];
        for f in forms {
            match read(&f) {
                Answer::Failed(t) => assert_eq!(t, "UNIQUE constraint failed: t.id", "{f}"),
                other => panic!("{f}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unfinished_answer_without_a_bookmark_is_not_polled() {
        assert!(matches!(read(&json!({"success": true, "status": "active"})), Answer::Malformed(_)));
        assert!(matches!(read(&json!({"success": true, "at_bookmark": null})), Answer::Malformed(_)));
        assert!(
            matches!(read(&json!({"success": true, "status": "active", "at_bookmark": "b1"})), Answer::Active(b) if b == "b1")
        );
    }

    #[test]
    fn refusals_say_busy_or_gone() {
        let busy = json!({"success": false, "error": "Currently processing a long-running export. Cannot start a new export until that completes or times out."});
        assert!(matches!(read(&busy), Answer::Busy(_)));
        assert!(matches!(
            read(&json!({"success": false, "error": "Not currently importing anything."})),
            Answer::Gone(_)
        ));
    }
}
