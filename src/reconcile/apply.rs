//! Writing the changes into the live Postgres, all in one transaction: a
//! kill at any moment leaves Postgres as it was or fully reconciled, and
//! a rerun finds what is left. Per table, the archive's rows go into a
//! temporary table by `COPY ... FROM STDIN (FORMAT binary)` (the restore's
//! encoder, so values are bit-exact), then one `UPDATE ... FROM` and one
//! `INSERT ... SELECT ... WHERE NOT EXISTS` write them, parents first; the
//! keys to delete go the same way into a `DELETE ... USING`, children
//! first. One statement per table and kind: Postgres checks foreign keys
//! at the end of each statement, so a tree of self-referencing rows goes
//! in (or out) whole. Before anything is written, [`check`] refuses what
//! would fail halfway (a column gone or of another type, a NOT NULL column
//! Cloudflare does not hold and that has no default).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use tokio::sync::mpsc;

use super::compare::{Changes, Compared};
use crate::batch::{quote_ident, TableSpec};
use crate::d1::read::target_form;
use crate::digest::key_bytes;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sink::postgres::copy::element_oids_of;
use crate::sink::postgres::encode::{CopyEncoder, HEADER, TRAILER};
use crate::source::archive::file_batches;
use crate::source::conn::CopyChunk;
use crate::source::{Source, SourceConn};

/// Bytes per COPY message.
const CHUNK: usize = 1 << 20;

/// A column of the live table, as the catalog describes it.
#[derive(Clone, Debug)]
pub struct LiveColumn {
    pub name: String,
    pub ty: String,
    not_null: bool,
    has_default: bool,
    /// `GENERATED ALWAYS AS (...) STORED`: computed, never written.
    generated: bool,
    identity: bool,
}

/// The live columns of every table, by qualified name.
pub type LiveColumns = HashMap<String, Vec<LiveColumn>>;

pub async fn live_columns(conn: &mut SourceConn, spec: &TableSpec) -> Result<Vec<LiveColumn>> {
    let rows: Vec<(String, String, bool, bool, String, String)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef,
                a.attgenerated::text, a.attidentity::text
           FROM pg_attribute a
          WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum",
    )
    .bind(spec.sql_name())
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::db(format!("reading the columns of {}", spec.qualified())))?;
    Ok(rows
        .into_iter()
        .map(|(name, ty, not_null, has_default, generated, identity)| LiveColumn {
            name,
            ty,
            not_null,
            has_default,
            generated: !generated.is_empty(),
            identity: !identity.is_empty(),
        })
        .collect())
}

/// Refuses, before anything is written, what would fail halfway.
pub fn check(t: &Compared, live: &[LiveColumn], changes: &Changes) -> Result<()> {
    let table = t.spec.qualified();
    for c in &t.spec.columns {
        let Some(l) = live.iter().find(|l| l.name == c.name) else {
            return Err(Error::Config {
                setting: format!("table {table}, column {}", c.name),
                message: "Cloudflare holds this column but the Postgres table no longer has it: restore the \
                          column (ALTER TABLE ... ADD COLUMN) or reconcile into a copy of the old schema"
                    .into(),
            });
        };
        if c.cast.is_none() && l.ty != c.pg_type {
            return Err(Error::Config {
                setting: format!("table {table}, column {}", c.name),
                message: format!(
                    "is {} in Postgres but {} in the archive of Cloudflare (the type load mapped): change \
                     the column back, or reconcile into a copy of the old schema",
                    l.ty, c.pg_type
                ),
            });
        }
    }
    if changes.inserts > 0 {
        let held = |n: &str| t.spec.columns.iter().any(|c| c.name == n);
        if let Some(l) = live
            .iter()
            .find(|l| l.not_null && !l.has_default && !l.generated && !l.identity && !held(&l.name))
        {
            let key = changes.first.get("insert").and_then(|k| k.first()).cloned().unwrap_or_default();
            return Err(Error::Value {
                table: table.clone(),
                column: l.name.clone(),
                key,
                message: format!(
                    "is NOT NULL without a default, and Cloudflare does not hold it: the {} rows Cloudflare \
                     added cannot be inserted",
                    changes.inserts
                ),
                hint: format!(
                    "give it a default (ALTER TABLE {} ALTER COLUMN {} SET DEFAULT ...), or map it to D1 \
                     (pgflare.toml d1_columns) before the next load",
                    t.spec.sql_name(),
                    quote_ident(&l.name)
                ),
            });
        }
    }
    Ok(())
}

/// Writes `changes` (one per table of `tables`, which come parents first)
/// in one transaction.
pub async fn apply(
    src: &Source,
    archive: &Path,
    tables: &[Compared<'_>],
    changes: &[Changes],
    live: &LiveColumns,
    disable_triggers: bool,
    progress: &Progress,
) -> Result<()> {
    let bar = progress.spinner("reconcile");
    let mut conn = src.connect().await?;
    exec(&mut conn, "BEGIN ISOLATION LEVEL READ COMMITTED", "starting the transaction").await?;
    if disable_triggers {
        // pg_restore --disable-triggers' way: user triggers (and foreign
        // key checks) do not fire; the values written are the archive's.
        exec(&mut conn, "SET LOCAL session_replication_role = replica", "--disable-triggers").await?;
    }
    for (i, (t, c)) in tables.iter().zip(changes).enumerate() {
        if c.upserts.is_empty() {
            continue;
        }
        bar.set_message(format!("{}: {} inserts, {} updates", t.spec.qualified(), c.inserts, c.updates));
        let cols = &live[&t.spec.qualified()];
        upsert(&mut conn, archive, t, c.upserts.clone(), cols, i).await?;
    }
    // Rows Cloudflare deleted: staged, then soft-deleted where the table
    // has a soft-delete column (parents first), then deleted where it has
    // none (children first), unless a parent's soft delete just hid them.
    let mut staged = Vec::new();
    for (i, (t, c)) in tables.iter().zip(changes).enumerate() {
        if !c.deletes.is_empty() {
            bar.set_message(format!("{}: {} deletes", t.spec.qualified(), c.deleted));
            staged.push((t, stage_keys(&mut conn, t, &c.deletes, i).await?));
        }
    }
    for (t, stage) in &staged {
        if let Some(soft) = &t.soft {
            soft_delete(&mut conn, t, stage, soft).await?;
        }
    }
    for (t, stage) in staged.iter().rev() {
        if t.soft.is_none() {
            delete(&mut conn, t, stage).await?;
        }
    }
    bar.set_message("committing");
    exec(&mut conn, "COMMIT", "committing the reconciliation").await?;
    bar.finish_and_clear();
    Ok(())
}

async fn upsert(
    conn: &mut SourceConn,
    archive: &Path,
    t: &Compared<'_>,
    ids: Arc<HashSet<Vec<u8>>>,
    live: &[LiveColumn],
    i: usize,
) -> Result<()> {
    let (spec, target) = (&t.spec, t.spec.sql_name());
    let stage = format!("pgflare_reconcile_{i}");
    let select: Vec<String> = spec
        .columns
        .iter()
        .map(|c| match &c.cast {
            Some(cast) => format!("{0}::{cast} AS {0}", quote_ident(&c.name)),
            None => quote_ident(&c.name),
        })
        .collect();
    let sql = format!(
        "CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {} FROM {target} WITH NO DATA",
        select.join(", ")
    );
    exec(conn, &sql, &format!("staging the rows of {}", spec.qualified())).await?;
    let (dir, table, key) = (archive.to_path_buf(), t.table.clone(), spec.key_indices());
    copy(conn, &stage, spec.clone(), move |each| {
        // The archive's rows of `ids`, read again (identities as compared).
        for f in 0..table.files.len() {
            file_batches(&dir, &table, f, |batch| {
                let compared = target_form(&batch)?;
                let mut mask = Vec::with_capacity(batch.num_rows());
                for row in 0..batch.num_rows() {
                    mask.push(ids.contains(&key_bytes(&compared, &key, row)?));
                }
                match mask.iter().any(|m| *m) {
                    true => each(&filter_record_batch(&batch, &BooleanArray::from(mask))?),
                    false => Ok(()),
                }
            })?;
        }
        Ok(())
    })
    .await?;

    let (update, insert, written) = statements(t, live, &stage);
    if let Some(sql) = update {
        exec(conn, &sql, &format!("updating {}", spec.qualified())).await?;
    }
    exec(conn, &insert, &format!("inserting into {}", spec.qualified())).await?;
    advance_sequences(conn, spec, &written).await
}

/// The `UPDATE ... FROM stage` (none when only key columns are written)
/// and the `INSERT ... SELECT ... WHERE NOT EXISTS` of the staged rows,
/// and the columns they write (generated columns are computed, not written).
fn statements<'s>(
    t: &'s Compared<'_>,
    live: &[LiveColumn],
    stage: &str,
) -> (Option<String>, String, Vec<&'s str>) {
    let (spec, target) = (&t.spec, t.spec.sql_name());
    // The value of a column from the stage, in the live column's type.
    let ty = |n: &str| live.iter().find(|l| l.name == n).map(|l| l.ty.clone()).unwrap_or_default();
    let value = |n: &str| match spec.column(n).and_then(|c| c.cast.as_ref()) {
        Some(_) => format!("s.{}::{}", quote_ident(n), ty(n)),
        None => format!("s.{}", quote_ident(n)),
    };
    let generated = |n: &str| live.iter().any(|l| l.name == n && l.generated);
    let written: Vec<&str> = spec.columns.iter().map(|c| c.name.as_str()).filter(|n| !generated(n)).collect();
    let key: Vec<&str> = spec.primary_key.iter().map(String::as_str).collect();
    let matches = |alias: &str| {
        key.iter()
            .map(|k| format!("{alias}.{0} = {1}", quote_ident(k), value(k)))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let mut set: Vec<String> = written
        .iter()
        .filter(|n| !key.contains(n))
        .map(|n| format!("{} = {}", quote_ident(n), value(n)))
        .collect();
    // A row Postgres marked deleted that Cloudflare holds is live again.
    if let Some((soft, boolean)) = t.soft.as_ref().filter(|(s, _)| spec.column(s).is_none()) {
        set.push(format!("{} = {}", quote_ident(soft), if *boolean { "false" } else { "NULL" }));
    }
    let update = (!set.is_empty()).then(|| {
        format!("UPDATE {target} AS t SET {} FROM {stage} AS s WHERE {}", set.join(", "), matches("t"))
    });
    let names: Vec<String> = written.iter().map(|n| quote_ident(n)).collect();
    let values: Vec<String> = written.iter().map(|n| value(n)).collect();
    let insert = format!(
        "INSERT INTO {target} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {stage} AS s \
         WHERE NOT EXISTS (SELECT 1 FROM {target} AS x WHERE {})",
        names.join(", "),
        values.join(", "),
        matches("x")
    );
    (update, insert, written)
}

/// A serial or identity column given values by hand: its sequence moves
/// past the largest, so the service's next insert in Postgres does not
/// collide with a row Cloudflare added.
async fn advance_sequences(conn: &mut SourceConn, spec: &TableSpec, written: &[&str]) -> Result<()> {
    for col in written {
        let seq: Option<String> = sqlx::query_scalar("SELECT pg_get_serial_sequence($1, $2)")
            .bind(spec.sql_name())
            .bind(col)
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db(format!("looking up the sequence of {}.{col}", spec.qualified())))?;
        let Some(seq) = seq else { continue };
        // pg_get_serial_sequence returns the name quoted as SQL needs it.
        let sql = format!(
            "SELECT setval($1::regclass, x.m) FROM (SELECT max({})::int8 AS m FROM {}) x, {seq} q \
             WHERE x.m IS NOT NULL AND (x.m > q.last_value OR NOT q.is_called)",
            quote_ident(col),
            spec.sql_name()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&seq)
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::db(format!("advancing the sequence {seq}")))?;
    }
    Ok(())
}

/// The keys of the rows to delete from `t`, copied into a temporary table
/// (its name returned).
async fn stage_keys(
    conn: &mut SourceConn,
    t: &Compared<'_>,
    keys: &[RecordBatch],
    i: usize,
) -> Result<String> {
    let (spec, target) = (&t.spec, t.spec.sql_name());
    let mut key_spec = (**spec).clone();
    key_spec.columns = spec.primary_key.iter().filter_map(|k| spec.column(k).cloned()).collect();
    let stage = format!("pgflare_reconcile_delete_{i}");
    let cols: Vec<String> = key_spec.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let sql = format!(
        "CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {} FROM {target} WITH NO DATA",
        cols.join(", ")
    );
    exec(conn, &sql, &format!("staging the keys to delete from {}", spec.qualified())).await?;
    let keys = keys.to_vec();
    copy(conn, &stage, Arc::new(key_spec), move |each| keys.iter().try_for_each(each)).await?;
    Ok(stage)
}

/// `target.k = d.k AND ...` over the key columns.
fn key_match(t: &Compared<'_>, target: &str) -> String {
    let on: Vec<String> =
        t.spec.primary_key.iter().map(|k| format!("{target}.{0} = d.{0}", quote_ident(k))).collect();
    on.join(" AND ")
}

/// Marks the staged rows deleted, as the service on Postgres did: `now()`
/// in a timestamp column, `true` in a boolean one.
async fn soft_delete(
    conn: &mut SourceConn,
    t: &Compared<'_>,
    stage: &str,
    soft: &(String, bool),
) -> Result<()> {
    let target = t.spec.sql_name();
    let mark = if soft.1 { "true" } else { "now()" };
    let sql = format!(
        "UPDATE {target} SET {} = {mark} FROM {stage} AS d WHERE {}",
        quote_ident(&soft.0),
        key_match(t, &target)
    );
    exec(conn, &sql, &format!("soft-deleting rows of {}", t.spec.qualified())).await
}

/// Deletes the staged rows that are still live (a row a parent's soft
/// delete now hides stays, hidden, as the service would have left it).
async fn delete(conn: &mut SourceConn, t: &Compared<'_>, stage: &str) -> Result<()> {
    let target = t.spec.sql_name();
    let live = t.live.as_ref().map(|l| format!(" AND ({l})")).unwrap_or_default();
    let sql = format!("DELETE FROM {target} USING {stage} AS d WHERE {}{live}", key_match(t, &target));
    exec(conn, &sql, &format!("deleting from {}", t.spec.qualified())).await
}

/// `COPY stage FROM STDIN (FORMAT binary)` of the batches `produce` hands
/// over (of `spec`'s schema), encoded on a thread of their own while the
/// connection sends: at most a few MiB are in flight.
async fn copy<F>(conn: &mut SourceConn, stage: &str, spec: Arc<TableSpec>, produce: F) -> Result<()>
where
    F: FnOnce(&mut dyn FnMut(&RecordBatch) -> Result<()>) -> Result<()> + Send + 'static,
{
    let mut oid_spec = (*spec).clone();
    oid_spec.schema = "pg_temp".into();
    oid_spec.name = stage.to_string();
    let oids = element_oids_of(conn, &oid_spec).await?;
    let cols: Vec<String> = spec.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let statement = format!("COPY {stage} ({}) FROM STDIN (FORMAT binary)", cols.join(", "));
    let (tx, mut rx) = mpsc::channel(2);
    let what = spec.qualified();
    let encode = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut enc = CopyEncoder::new(spec, oids)?;
        let mut buf = HEADER.to_vec();
        produce(&mut |b| {
            enc.encode(b, &mut buf)?;
            if buf.len() >= CHUNK {
                tx.blocking_send(CopyChunk::Data(std::mem::take(&mut buf))).map_err(|_| gone())?;
            }
            Ok(())
        })?;
        buf.extend_from_slice(TRAILER);
        tx.blocking_send(CopyChunk::Data(buf)).map_err(|_| gone())?;
        tx.blocking_send(CopyChunk::Done).map_err(|_| gone())?;
        Ok(enc.rows())
    });
    let copied = conn.copy_in(&statement, &mut rx).await;
    drop(rx);
    let encoded = encode.await.map_err(|e| Error::Internal(format!("the encoder of {what} died: {e}")))?;
    match (copied, encoded) {
        // The COPY failed first: its error says why (the encoder only saw it stop).
        (Err(e), Ok(_)) | (Err(e), Err(Error::Internal(_))) => {
            Err(Error::db(format!("copying the rows of {what} into Postgres"))(e))
        }
        (_, Err(e)) => Err(e),
        (Ok(copied), Ok(encoded)) if copied != encoded => {
            Err(Error::Internal(format!("{what}: {encoded} rows encoded, Postgres copied {copied}")))
        }
        (Ok(_), Ok(_)) => Ok(()),
    }
}

fn gone() -> Error {
    Error::Internal("the COPY stopped taking rows".into())
}

async fn exec(conn: &mut SourceConn, sql: &str, what: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *conn)
        .await
        .map_err(Error::db(what.to_string()))?;
    Ok(())
}
