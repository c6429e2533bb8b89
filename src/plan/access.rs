//! SQL access to a D1 database, whichever form it has: a local SQLite
//! file (the `sqlite` target, or the `files` target's state file) or the
//! API. The state (checkpoint, lease, bucket sums, vector records) and
//! sync's reads and deletes go through it.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::cloudflare::D1;
use crate::error::Result;
use crate::sink::d1::sqlite::D1SqliteConfig;

/// SQL access to a D1 database: a local SQLite file or the API.
#[derive(Clone)]
pub enum D1Access {
    Sqlite(D1SqliteConfig),
    Api(Arc<D1>),
}

impl D1Access {
    pub fn describe(&self) -> String {
        match self {
            D1Access::Sqlite(c) => format!("sqlite:{}", c.path.display()),
            D1Access::Api(d) => format!("D1 database {}", d.database_id()),
        }
    }

    /// Runs several statements as one transaction.
    pub async fn execute(&self, what: &str, sql: &str) -> Result<()> {
        match self {
            D1Access::Sqlite(c) => c.execute(what, sql),
            D1Access::Api(d) => d.query(what, sql).await.map(|_| ()),
        }
    }

    /// Runs one statement with `?N` parameters; returns its rows.
    pub async fn select(&self, what: &str, sql: &str, params: &[Value]) -> Result<Vec<Map<String, Value>>> {
        match self {
            D1Access::Sqlite(c) => c.with_conn(|conn| sqlite_select(conn, what, sql, params)),
            D1Access::Api(d) => {
                let rows = d.select(what, sql, params).await?;
                Ok(rows.into_iter().filter_map(|r| r.as_object().cloned()).collect())
            }
        }
    }
}

fn sqlite_select(
    conn: &mut rusqlite::Connection,
    what: &str,
    sql: &str,
    params: &[Value],
) -> Result<Vec<Map<String, Value>>> {
    use rusqlite::types::{Value as Sv, ValueRef};
    let err = |e| crate::sink::d1::sqlite::statement_error(what, sql, e);
    let mut st = conn.prepare(sql).map_err(err)?;
    // Bound as text, as D1's API takes them: the SQL behaves the same on
    // both sides (numeric affinity, `CAST` where there is none).
    let bound: Vec<Sv> = params
        .iter()
        .map(|p| crate::cloudflare::d1::text_param(what, p).map(Sv::Text))
        .collect::<Result<_>>()?;
    let names: Vec<String> = st.column_names().iter().map(|s| s.to_string()).collect();
    let mut rows = st.query(rusqlite::params_from_iter(bound)).map_err(err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(err)? {
        let mut m = Map::new();
        for (i, n) in names.iter().enumerate() {
            let v = match r.get_ref(i).map_err(err)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => json!(i),
                ValueRef::Real(f) => json!(f),
                ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::String(hex::encode(b)),
            };
            m.insert(n.clone(), v);
        }
        out.push(m);
    }
    Ok(out)
}
