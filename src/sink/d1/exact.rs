//! Reading D1 values exactly over the API. D1 answers through JavaScript:
//! an INTEGER beyond 2^53 comes back as the nearest double (cloudflare-docs
//! `d1/worker-api/index.mdx`, "Type conversion" note 2), and a JSON number
//! does not say whether SQLite held an INTEGER or a REAL. A query that must
//! get values exactly selects each column through [`exact_column`], which
//! turns it into text tagged with its storage class (`i` integer, `r`
//! real, `t` text; BLOBs and NULLs pass as they are), and reads the answer
//! with [`decode`].
//!
//! The tag never makes a value too long for D1: a row holding a text of
//! the full 2,000,000 bytes D1 allows cannot exist (the row itself is
//! limited to that size), and integer and real texts are short. A REAL is
//! written by SQLite's `quote()`, whose text reads back to the same double.

use rusqlite::types::Value as SqlValue;
use serde_json::Value;

use crate::batch::quote_ident;

/// The select expression for column `name` of table alias `alias` (or no
/// alias) whose JSON answer keeps value and storage class.
pub fn exact_column(alias: Option<&str>, name: &str) -> String {
    let c = match alias {
        Some(a) => format!("{a}.{}", quote_ident(name)),
        None => quote_ident(name),
    };
    format!(
        "CASE typeof({c}) WHEN 'integer' THEN 'i' || {c} WHEN 'real' THEN 'r' || quote({c}) \
         WHEN 'text' THEN 't' || {c} ELSE {c} END"
    )
}

/// The SQLite value behind one answer of an [`exact_column`]; an answer in
/// any other form is an error saying what was found.
pub fn decode(v: &Value) -> Result<SqlValue, String> {
    match v {
        Value::Null => Ok(SqlValue::Null),
        Value::String(s) => {
            let (tag, body) = s.split_at(s.chars().next().map_or(0, char::len_utf8));
            match tag {
                "i" => body.parse().map(SqlValue::Integer).map_err(|_| format!("the integer text `{body}`")),
                "r" => real(body).map(SqlValue::Real).ok_or_else(|| format!("the real text `{body}`")),
                "t" => Ok(SqlValue::Text(body.to_string())),
                _ => Err(format!("the untagged text `{}`", s.chars().take(40).collect::<String>())),
            }
        }
        // D1 answers a BLOB as an array of byte values (worker-api "Type
        // conversion": ArrayBuffer -> Array).
        Value::Array(items) => items
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .map(SqlValue::Blob)
            .ok_or_else(|| "an array that is not bytes".to_string()),
        other => Err(format!("the untagged value `{other}`")),
    }
}

/// `quote()` writes infinities as `Inf`/`-Inf` in older SQLite and as
/// `9.0e+999` in newer; both read back as the infinity.
fn real(t: &str) -> Option<f64> {
    match t {
        "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs the expression on a real SQLite and decodes its answer as D1's
    /// JSON would carry it.
    fn through_sqlite(v: SqlValue) -> SqlValue {
        let c = rusqlite::Connection::open_in_memory().expect("sqlite");
        c.execute("CREATE TABLE t (x)", []).expect("create");
        c.execute("INSERT INTO t VALUES (?1)", [&v]).expect("insert");
        let sql = format!("SELECT {} FROM t", exact_column(None, "x"));
        let json: Value = c
            .query_row(&sql, [], |r| {
                Ok(match r.get_ref(0)? {
                    rusqlite::types::ValueRef::Null => Value::Null,
                    rusqlite::types::ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into()),
                    rusqlite::types::ValueRef::Blob(b) => {
                        Value::Array(b.iter().map(|&x| Value::from(x)).collect())
                    }
                    other => panic!("the expression answered {other:?}"),
                })
            })
            .expect("select");
        decode(&json).expect("decode")
    }

    #[test]
    fn every_storage_class_comes_back_as_it_was() {
        for v in [
            SqlValue::Null,
            SqlValue::Integer(i64::MAX),
            SqlValue::Integer(i64::MIN),
            SqlValue::Integer(9_007_199_254_740_993),
            SqlValue::Real(0.1),
            SqlValue::Real(1e300),
            SqlValue::Real(f64::INFINITY),
            SqlValue::Text("i123".into()),
            SqlValue::Text(String::new()),
            SqlValue::Blob(vec![0, 255, 7]),
        ] {
            assert_eq!(through_sqlite(v.clone()), v);
        }
        assert!(decode(&Value::from(5)).is_err(), "a bare number is not in exact form");
        assert!(decode(&Value::from("x5")).is_err());
    }

    proptest! {
        #[test]
        fn integers_and_reals_are_exact(i in any::<i64>(), f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            prop_assert_eq!(through_sqlite(SqlValue::Integer(i)), SqlValue::Integer(i));
            // SQLite stores -0.0 as 0.0 (a REAL column keeps it REAL here: no affinity).
            let back = through_sqlite(SqlValue::Real(f));
            prop_assert_eq!(back, SqlValue::Real(f));
        }

        #[test]
        fn any_text_comes_back(s in ".{0,40}") {
            prop_assert_eq!(through_sqlite(SqlValue::Text(s.clone())), SqlValue::Text(s));
        }
    }
}
