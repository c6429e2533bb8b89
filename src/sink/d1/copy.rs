//! A D1 table copied over the API into a local SQLite file, exactly and in
//! pages: what sync's key sweep reads D1's keys from, and what verify reads
//! D1 from when D1's export refuses the database (virtual tables,
//! reserved-word column names) or rounds its numbers.
//!
//! Pages follow the rowid (keyset: `rowid > last ORDER BY rowid LIMIT n`,
//! an index walk D1 answers in one step however deep the page), and every
//! value, the rowid included, goes through [`super::exact`], because D1's
//! JSON rounds integers beyond 2^53 and the rowid of a table keyed by a
//! `bigint` is that key. The last rowid is sent back as text: D1 parses a
//! request's JSON in JavaScript too, so a number parameter beyond 2^53
//! would arrive rounded.
//!
//! Each answer is kept near [`PAGE_BYTES`] (the rows per page follow the
//! size of the rows read so far) and every page is at most
//! [`MAX_PAGE_ROWS`] rows. Neither is a documented D1 limit (D1 documents
//! none for an answer's size): they are pgflare's choice, small enough
//! that one answer is quick to move and to hold in memory.

use serde_json::{json, Value};

use super::exact::{decode, exact_column};
use crate::batch::quote_ident;
use crate::cloudflare::D1;
use crate::error::{Error, Result};

/// About this many bytes of JSON per answer.
pub const PAGE_BYTES: usize = 4 << 20;
/// Rows per page at most (narrow rows, such as keys).
pub const MAX_PAGE_ROWS: usize = 10_000;
/// The first page's rows, before any row size is known.
const FIRST_PAGE_ROWS: usize = 500;

/// Copies `columns` of D1 table `table` into the same-named table of
/// `conn` (which must exist with these columns, in this order); returns
/// the rows copied. (`&mut`: the future stays `Send`, a shared
/// connection would not.)
pub async fn copy_table(
    d1: &D1,
    table: &str,
    columns: &[String],
    conn: &mut rusqlite::Connection,
) -> Result<u64> {
    let what = || format!("reading D1 table {table} through queries");
    let exact: Vec<String> =
        columns.iter().enumerate().map(|(i, c)| format!("{} AS c{i}", exact_column(None, c))).collect();
    // The first page starts at the smallest rowid there is (`>=`: a table
    // keyed by bigint may hold i64::MIN).
    let select = |first: bool, rows: usize| {
        format!(
            "SELECT CAST(rowid AS TEXT) AS pgflare_rowid{}{} FROM {} WHERE rowid {} CAST(?1 AS INTEGER) \
             ORDER BY rowid LIMIT {rows}",
            if exact.is_empty() { "" } else { ", " },
            exact.join(", "),
            quote_ident(table),
            if first { ">=" } else { ">" }
        )
    };
    let insert = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quote_ident(table),
        columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", "),
        (1..=columns.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
    );
    let names: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
    let (mut last, mut rows, mut copied): (Option<i64>, _, _) = (None, FIRST_PAGE_ROWS, 0u64);
    loop {
        let from = last.unwrap_or(i64::MIN).to_string();
        let page = d1.select(&what(), &select(last.is_none(), rows), &[json!(from)]).await?;
        let tx = conn.unchecked_transaction().map_err(Error::sqlite(what()))?;
        let mut bytes = 0usize;
        {
            let mut st = tx.prepare(&insert).map_err(Error::sqlite(what()))?;
            for row in &page {
                // Every value is typed text: its length (plus a little for
                // the JSON around it) is the row's size, without writing the
                // row out again.
                bytes += row
                    .as_object()
                    .map_or(0, |r| r.values().map(|v| v.as_str().map_or(8, |t| t.len() + 8)).sum());
                let rowid =
                    row.get("pgflare_rowid").and_then(Value::as_str).and_then(|r| r.parse::<i64>().ok());
                let rowid = rowid.ok_or_else(|| odd(table, "rowid", row.get("pgflare_rowid")))?;
                // A page whose rowids do not advance would be read forever.
                if let Some(l) = last.filter(|l| rowid <= *l) {
                    return Err(Error::Internal(format!(
                        "{}: D1 answered rowid {rowid} after {l}, out of order",
                        what()
                    )));
                }
                last = Some(rowid);
                let values = names
                    .iter()
                    .zip(columns)
                    .map(|(n, c)| {
                        let v = row.get(n).unwrap_or(&Value::Null);
                        decode(v).map_err(|found| odd(table, c, Some(&Value::String(found))))
                    })
                    .collect::<Result<Vec<_>>>()?;
                st.execute(rusqlite::params_from_iter(values)).map_err(|e| Error::sqlite(what())(e))?;
            }
        }
        tx.commit().map_err(Error::sqlite(what()))?;
        copied += page.len() as u64;
        if page.len() < rows {
            return Ok(copied);
        }
        let per_row = (bytes / page.len().max(1)).max(1);
        rows = (PAGE_BYTES / per_row).clamp(1, MAX_PAGE_ROWS);
    }
}

fn odd(table: &str, column: &str, found: Option<&Value>) -> Error {
    Error::Api {
        what: format!("reading D1 table {table} through queries"),
        status: None,
        message: format!(
            "column {column}: D1 answered {}, not a value of the form pgflare asked for",
            found.map(|v| v.to_string()).unwrap_or_else(|| "nothing".into())
        ),
        hint: "check CLOUDFLARE_API_BASE_URL points at the Cloudflare API".into(),
    }
}
