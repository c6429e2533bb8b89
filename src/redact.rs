//! Keeps secrets out of everything a person or a log can see. Connection
//! strings are shown as `scheme://user:***@host:port/db`, `password=...`
//! pairs and bearer tokens are masked. `main` also passes every error message
//! through [`redact_text`] as a last line of defence.

/// Returns `url` with its password (if any) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // set_password only fails for URLs that cannot have one, which
            // parse() would not have given a password.
            let _ = parsed.set_password(Some("***"));
            redact_text(parsed.as_str())
        }
        Ok(parsed) => redact_text(parsed.as_str()),
        Err(_) => redact_text(url),
    }
}

/// Masks anything that looks like a secret inside free text: URL passwords
/// (`scheme://user:secret@`), `password=secret` pairs and `Bearer secret`.
/// A password people did not percent-encode may hold `/`, `#`, `?`, `@`
/// or quotes, so the credentials of a URL run to its *last* `@` before
/// whitespace (more is masked rather than less).
pub fn redact_text(text: &str) -> String {
    // `password=` values first: one may hold an `@`, which would otherwise
    // look like the end of a URL's credentials.
    let text = &mask_after(&password_params_masked(text), "Bearer ");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let segment = &tail[..end];
        match segment.rfind('@') {
            Some(at) => {
                let userinfo = &segment[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&segment[at..]);
            }
            None => out.push_str(segment),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A URL that could not be read, shown without anything before its last
/// `@` (where user and password are, however they are written), e.g.
/// `postgres://***@db.example.com:5432/postgres`.
pub fn without_credentials(url: &str) -> String {
    let url = &password_params_masked(url);
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_string(),
    }
}

/// `password=...` values masked (whatever they hold, `@` included).
pub fn password_params_masked(text: &str) -> String {
    mask_after(text, "password=")
}

fn mask_after(text: &str, marker: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let lower_marker = marker.to_ascii_lowercase();
    loop {
        let lower = rest.to_ascii_lowercase();
        let Some(pos) = lower.find(&lower_marker) else {
            break;
        };
        let start = pos + marker.len();
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        // Only whitespace ends it: a password as people write it may hold
        // `&`, `;` or quotes (more is masked rather than less).
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        if end > 0 {
            out.push_str("***");
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn url_password_is_masked() {
        assert_eq!(
            redact_url("postgres://postgres:s3cr%40t@127.0.0.1:5432/postgres"),
            "postgres://postgres:***@127.0.0.1:5432/postgres"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=hunter2"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
    }

    #[test]
    fn text_secrets_are_masked() {
        let t = redact_text("failed to reach postgresql://a:b@h:1/d and password=xyz; Bearer tok123");
        assert_eq!(t, "failed to reach postgresql://a:***@h:1/d and password=*** Bearer ***");
    }

    proptest! {
        #[test]
        fn secret_never_survives(user in "[a-z]{1,8}", secret in "[0-9][A-Za-z0-9!$%*+,;=~]{5,19}", host in "[a-z]{1,10}") {
            let url = format!("postgres://{user}:{secret}@{host}:5432/db");
            let text = format!("error connecting to {url}: timeout");
            prop_assert!(!redact_text(&text).contains(&secret));
            prop_assert!(!redact_url(&url).contains(&secret));
        }
    }
}
