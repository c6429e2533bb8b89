//! The errors pgflare.toml can cause that must not show what the file
//! holds: a key that looks like a secret (whatever it is called) is
//! refused with where that secret belongs, and TOML and serde errors are
//! reduced to line, column, key and message, without the excerpt of the
//! file toml prints and the value serde quotes.

use crate::error::{Error, Result};

/// Whether a key names a secret (`token`, `apiToken`, `api-key`, `auth`,
/// `password`, ...): such a key is refused with where the secret belongs
/// instead of a bare "unknown field", whatever it is called.
fn looks_secret(key: &str) -> bool {
    let k: String = key.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
    ["token", "secret", "password", "passwd", "apikey", "credential", "privatekey", "bearer"]
        .iter()
        .any(|w| k.contains(w))
        || ["auth", "authorization", "key", "pass", "pwd"].contains(&k.as_str())
}

/// A TOML error as line, column, the key on that line and the message,
/// with no excerpt of the file and no value: the line may hold a secret,
/// and serde quotes the value of a wrong type (`invalid type: string
/// "..."`).
pub(super) fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> Error {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        // The key the line sets, when it sets one (never what follows `=`).
        let key = text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && !k.contains(['"', '\'']))
            .map(|k| format!(" ({k})"))
            .unwrap_or_default();
        format!("line {line}, column {column}{key}: ")
    });
    Error::Config {
        setting: file.to_string(),
        message: format!("{}{}", at.unwrap_or_default(), without_values(e.message())),
    }
}

/// serde's `invalid type: string "secret", expected ...` without the value:
/// `invalid type: string, expected ...`.
fn without_values(message: &str) -> String {
    let message = message.trim();
    for head in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(head) {
            let (found, expected) = rest.rsplit_once(", expected").unwrap_or((rest, ""));
            let kind = found.split(['"', '`', '\'']).next().unwrap_or("").trim();
            let expected = match expected {
                "" => String::new(),
                e => format!(", expected{e}"),
            };
            return format!("{head}{kind}{expected}");
        }
    }
    message.to_string()
}

/// Refuses any key that looks like a secret, anywhere in the file.
pub(super) fn refuse_secrets(file: &str, at: &str, v: &toml::Value) -> Result<()> {
    let child = |k: &str| if at.is_empty() { k.to_string() } else { format!("{at}.{k}") };
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                if looks_secret(k) {
                    let message = if at == "source" {
                        "pgflare.toml has no password key: the database password is part of the \
                         connection URL (DATABASE_URL, or [source] url, percent-encoded)"
                    } else {
                        "secrets are never read from a file (files get committed): remove it; the API \
                         token comes from CLOUDFLARE_API_TOKEN in the environment"
                    };
                    return Err(Error::Config {
                        setting: format!("{file}: {}", child(k)),
                        message: message.into(),
                    });
                }
                // Their keys are column names (a `password_hash` column may
                // be renamed or cast), not settings.
                if !matches!(k.as_str(), "d1_names" | "casts") {
                    refuse_secrets(file, &child(k), v)?;
                }
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                refuse_secrets(file, &format!("{at}[{i}]"), v)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_error(text: &str) -> String {
        let e = crate::config::file::parse_project(text, std::path::Path::new("pgflare.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!e.is_empty(), "{text} parsed");
        e
    }

    #[test]
    fn secret_names_are_recognised_however_spelt() {
        for k in [
            "token",
            "apiToken",
            "API_TOKEN",
            "api-key",
            "auth",
            "Authorization",
            "password",
            "db_passwd",
            "client_secret",
        ] {
            assert!(looks_secret(k), "{k}");
        }
        for k in ["primary_key", "d1_columns", "vector_metadata_indexes", "account_id", "author", "keys"] {
            assert!(!looks_secret(k), "{k}");
        }
    }

    #[test]
    fn a_value_holding_the_word_expected_stays_out_of_the_message() {
        let m = without_values("invalid type: string \"pw, expected hunter2\", expected a boolean");
        assert!(!m.contains("hunter2") && m.contains("a boolean"), "{m}");
    }

    #[test]
    fn column_names_under_d1_names_and_casts_are_not_settings() {
        let text = "[[tables]]\nname = \"users\"\nd1_names = { password_hash = \"pw\" }\ncasts = { api_token = \"text\" }\n";
        assert!(crate::config::file::parse_project(text, std::path::Path::new("p.toml")).is_ok());
    }

    proptest! {
        /// Whatever the value and wherever a wrong type or an unknown key
        /// puts it, the error names the place and never the value.
        #[test]
        fn no_config_error_shows_a_value(
            value in "[A-Za-z0-9 /@#:%?!$&*+=.~\\-]{6,24}",
            key in "[a-z][a-z_]{0,12}",
            place in 0usize..6,
        ) {
            let quoted = toml::Value::String(value.clone()).to_string();
            let text = match place {
                0 => format!("[cloudflare]\nrate_limit = {quoted}\n"),
                1 => format!("[vectorize]\ncreate_index = {quoted}\n"),
                2 => format!("[cloudflare]\nx{key} = {quoted}\n"),
                3 => format!("[[tables]]\nname = \"t\"\nx{key} = {quoted}\n"),
                4 => format!("[source]\nschema = [{quoted}]\n"),
                _ => format!("[vectorize]\nvectors_per_request = {quoted}\n"),
            };
            let e = parse_error(&text);
            prop_assert!(!e.contains(&value), "{text} -> {e}");
            prop_assert!(e.contains("line ") || e.contains(&format!("x{key}")), "{e}");
        }
    }
}
