//! The one Python runner of the tests: the independent checkers in
//! tests/py and inline Python code, run by the venv's interpreter
//! (PGFLARE_PYTHON, else .venv/bin/python), with the JSON Schema check
//! (validate_json.py) that many tests apply to pgflare's documents.

use std::path::Path;
use std::process::{Command, Output};

use super::{root, text};

/// The venv's Python interpreter.
fn interpreter() -> Command {
    let py = std::env::var("PGFLARE_PYTHON")
        .unwrap_or_else(|_| root().join(".venv/bin/python").display().to_string());
    Command::new(py)
}

/// Runs one of the independent Python checkers (tests/py) in the venv.
pub fn python(script: &str, args: &[&str], env_url: Option<&str>) -> Output {
    match env_url {
        Some(u) => python_env(script, args, &[("DATABASE_URL", u)]),
        None => python_env(script, args, &[]),
    }
}

/// [`python`] with extra environment variables (e.g. an API token).
pub fn python_env(script: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = interpreter();
    cmd.arg(root().join("tests/py").join(script)).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run python (is the venv there? run scripts/test.sh)")
}

/// Runs Python `code` (`python -c`) with `args`; it must succeed. Returns
/// its stdout, trimmed.
pub fn python_code(code: &str, args: &[&str]) -> String {
    let o = interpreter().arg("-c").arg(code).args(args).output().expect("run python");
    assert!(o.status.success(), "python failed\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Every row of a table of a SQLite file, read by Python's sqlite3, as
/// JSON text (BLOBs as hex).
pub fn py_rows(path: &Path, table: &str) -> String {
    python_code(
        "import sqlite3,sys,json\nc=sqlite3.connect(sys.argv[1])\n\
         rows=c.execute('SELECT * FROM \"%s\" ORDER BY 1' % sys.argv[2]).fetchall()\n\
         print(json.dumps([[v.hex() if isinstance(v,bytes) else v for v in r] for r in rows]))",
        &[&path.display().to_string(), table],
    )
}

/// validate_json.py (jsonschema) on `files` against the schema file
/// `schema`; its output, pass or fail.
pub fn validate_json(schema: &Path, files: &[&Path]) -> Output {
    let mut args = vec![schema.display().to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    python("validate_json.py", &refs, None)
}

/// Asserts that every file of `files` matches `schemas/<name>.schema.json`.
pub fn assert_schema(name: &str, files: &[&Path]) {
    let schema = root().join(format!("schemas/{name}.schema.json"));
    let o = validate_json(&schema, files);
    assert!(o.status.success(), "{files:?} do not match {}\n{}", schema.display(), text(&o));
}

/// Writes `doc` to `<dir>/<name>.json` and asserts that it matches
/// `schemas/<name>.schema.json`.
pub fn assert_doc_schema(name: &str, doc: &str, dir: &Path) {
    let f = dir.join(format!("{name}.json"));
    std::fs::write(&f, doc).expect("write the document");
    assert_schema(name, &[&f]);
}

/// apply_d1_sql.py: applies the D1 SQL files of `folder` (a files-target
/// output or a sync run) to the SQLite file `sqlite`, in their order; it
/// must succeed. Returns its stdout (a JSON report).
pub fn apply_d1_sql(sqlite: impl AsRef<Path>, folder: impl AsRef<Path>) -> String {
    let (s, f) = (sqlite.as_ref().display().to_string(), folder.as_ref().display().to_string());
    let o = python("apply_d1_sql.py", &[&s, "-", &f], None);
    assert!(o.status.success(), "apply_d1_sql.py (the files in apply order)\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}
