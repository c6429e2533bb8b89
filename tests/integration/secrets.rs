//! Secrets never reach output: a database password written the way people
//! write it (not percent-encoded: `/`, `@`, `#`, `?`, `:`, `%`, unicode),
//! given by flag, environment or pgflare.toml, through every command that
//! reads the source; and pgflare.toml values, whatever key they sit under.

use std::process::Command;

use crate::common::*;

/// Passwords that break a URL unless percent-encoded, and some that do not.
const PASSWORDS: [&str; 6] =
    ["se/cr#et-7Q", "p@ss/w0rd-7Q", "a?b:c%d-7Q", "h#sh@tag-7Q", "pl@in-at-7Q", "ünï/cödé-7Q"];

/// Every form in which a password could leak: as written, percent-encoded
/// (as the url crate prints it) and each run of 5 characters of it.
fn leaks(all: &str, password: &str) -> Option<String> {
    let encoded: String = url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
    let chars: Vec<char> = password.chars().collect();
    let pieces = chars.windows(5).map(|w| w.iter().collect::<String>()).filter(|p| p != "-7Q");
    [password.to_string(), encoded].into_iter().chain(pieces).find(|p| all.contains(p.as_str()))
}

#[test]
fn an_unencoded_password_never_reaches_output_and_the_error_says_how_to_encode_it() {
    let db = TestDb::new("pwleak");
    let dir = temp_dir("pwleak");
    let rest = db.url.split_once('@').map(|(_, r)| r.to_string()).expect("url with credentials");
    for pw in PASSWORDS {
        let url = format!("postgres://postgres:{pw}@{rest}");
        let run = |args: &[&str], how: &str| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_pgflare"));
            c.current_dir(dir.path()).env_remove("DATABASE_URL").env_remove("SUPABASE_DB_URL").args(args);
            match how {
                "flag" => {
                    c.args(["--database-url", &url]);
                }
                "env" => {
                    c.env("DATABASE_URL", &url);
                }
                _ => {
                    c.args(["--config", "pw.toml"]);
                }
            }
            c.output().expect("run")
        };
        std::fs::write(dir.path().join("pw.toml"), format!("[source]\nurl = '{url}'\n")).expect("toml");
        let commands: [&[&str]; 6] = [
            &["inspect"],
            &["archive", "--out", "a"],
            &["init", "--out-config", "x.toml"],
            &["load", "--target", "sqlite", "--sqlite", "d1.sqlite"],
            &["verify", "--sqlite", "d1.sqlite"],
            &["sync", "--target", "sqlite", "--sqlite", "d1.sqlite", "--once"],
        ];
        for args in commands {
            for how in ["flag", "env", "file"] {
                let o = run(args, how);
                let all = text(&o);
                assert_eq!(o.status.code(), Some(2), "{pw} {args:?} {how}: {all}");
                if let Some(piece) = leaks(&all, pw) {
                    panic!("{pw} {args:?} {how}: `{piece}` is in the output:\n{all}");
                }
                // Those that break the URL say so, and how to write them.
                if pw.contains(['/', '#', '?']) {
                    assert!(all.contains("percent-encode"), "{pw} {args:?} {how}: {all}");
                }
            }
        }
        assert!(!dir.path().join("d1.sqlite").exists(), "nothing is written for a source never reached");
        // A URL where a flag was meant: clap quotes the argument it refuses.
        let o = Command::new(env!("CARGO_BIN_EXE_pgflare")).args(["inspect", &url]).output().expect("run");
        assert_eq!(o.status.code(), Some(2));
        if let Some(piece) = leaks(&text(&o), pw) {
            panic!("{pw} as an argument: `{piece}` is in the output:\n{}", text(&o));
        }
    }
}

#[test]
fn config_values_never_appear_in_config_errors() {
    let dir = temp_dir("cfgleak");
    let cases = [
        // A secret under a name pgflare does not know.
        ("[cloudflare]\napiToken = \"sekrit-value-1\"\n", "apiToken", "CLOUDFLARE_API_TOKEN"),
        ("[cloudflare]\nauth = \"sekrit-value-1\"\n", "auth", "CLOUDFLARE_API_TOKEN"),
        ("[source]\npassword = \"sekrit-value-1\"\n", "password", "DATABASE_URL"),
        ("[[tables]]\nname = \"docs\"\napi_secret = \"sekrit-value-1\"\n", "api_secret", "environment"),
        // Any unknown key: its name and the known keys, never its value.
        ("[cloudflare]\naccount = \"sekrit-value-1\"\n", "account", "account_id"),
        // A value of the wrong type.
        ("[cloudflare]\nrate_limit = \"sekrit-value-1\"\n", "rate_limit", "line 2"),
        ("[vectorize]\ncreate_index = \"sekrit-value-1\"\n", "create_index", "boolean"),
        // A syntax error on the line that holds it.
        ("[cloudflare]\ntoken = sekrit-value-1\n", "line 2", "line 2"),
    ];
    for (toml, key, says) in cases {
        std::fs::write(dir.path().join("pgflare.toml"), toml).expect("write");
        let o = Command::new(env!("CARGO_BIN_EXE_pgflare"))
            .current_dir(dir.path())
            .args(["load", "--target", "files", "--out", "out"])
            .env("DATABASE_URL", "postgres://u@127.0.0.1:1/db")
            .output()
            .expect("run");
        let all = text(&o);
        assert_eq!(o.status.code(), Some(2), "{toml}: {all}");
        assert!(!all.contains("sekrit"), "{toml}: the value is shown:\n{all}");
        assert!(all.contains(key), "{toml}: the key is not named:\n{all}");
        assert!(all.contains(says), "{toml}: `{says}` missing:\n{all}");
    }
}
