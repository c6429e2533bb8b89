//! `restore --target postgres`: the archive back into a Postgres database,
//! the way back to Supabase after the old database is gone. The steps:
//!
//! 1. refuse a target that already holds any of the archive's tables
//!    (unless `--into-existing`), or an unfinished restore of another
//!    archive;
//! 2. create the types and tables in one transaction, with the ledger
//!    that records finished files ([`crate::sink::postgres::schema`],
//!    [`crate::sink::postgres::ledger`]);
//! 3. copy the files not yet recorded, several at once, each by one
//!    `COPY ... FROM STDIN (FORMAT binary)` in a transaction with its
//!    record ([`crate::sink::postgres::copy`]);
//! 4. add the keys, foreign keys and indexes, each unless it is there;
//! 5. ANALYZE the tables and drop the ledger.
//!
//! A kill at any moment leaves a state the same command finishes: every
//! step either happened whole or is done again, and no file is copied
//! twice. `pgflare archive verify ARCHIVE --database-url TARGET` then
//! proves the restored rows equal the archive's, row digest by row digest.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt as _;

use super::{PgRestore, RestoreOptions, RestoreSummary, TableRestored};
use crate::batch::sink::SinkFactory;
use crate::batch::TableBatch;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sink::postgres::copy::PgCopy;
use crate::sink::postgres::ledger;
use crate::sink::postgres::schema::{self, Exists, LeftOut, Step};
use crate::source::archive::file_batches;
use crate::source::archive::manifest::{self, Manifest, ManifestTable};
use crate::source::SourceConn;

pub async fn run(
    opts: &RestoreOptions,
    manifest: &Manifest,
    tables: &[&ManifestTable],
    pg: &PgRestore,
    progress: &Progress,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let archive = archive_id(&opts.dir)?;
    let schema = schema::plan(tables, pg.vector_indexes);
    let mut conn = pg.target.connect().await?;
    let resuming = check_target(&mut conn, tables, &archive, pg.into_existing).await?;
    // Also when resuming: a rerun may name tables the first run did not.
    create_tables(&mut conn, &schema.tables, (!resuming).then_some(archive.as_str())).await?;
    let done = ledger::done(&mut conn).await?;
    copy_files(opts, tables, &done, pg, &mut conn, progress).await?;
    let mut left_out = apply(&mut conn, &schema.constraints, progress).await?;
    left_out.extend(apply(&mut conn, &schema.indexes, progress).await?);
    left_out.extend(schema.skipped_indexes.iter().map(|sql| {
        LeftOut {
            statement: sql.clone(),
            reason:
                "--no-vector-indexes: build it when convenient (CREATE INDEX CONCURRENTLY does not block \
                 writes)"
                    .into(),
        }
    }));
    for t in tables {
        let sql = format!("ANALYZE {}", t.spec.sql_name());
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.map_err(Error::db("analyzing"))?;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(ledger::drop_sql()))
        .execute(&mut conn)
        .await
        .map_err(Error::db("dropping the finished restore's ledger (schema pgflare_restore)"))?;
    let restored = tables
        .iter()
        .map(|t| TableRestored {
            table: t.spec.qualified(),
            target_table: t.spec.qualified(),
            rows: t.rows,
            files: t.files.len(),
            not_live: 0,
            vectors: None,
        })
        .collect::<Vec<_>>();
    Ok(RestoreSummary {
        archive: opts.dir.display().to_string(),
        target: format!("postgres {}", pg.target.display()),
        vectorize: None,
        snapshot_taken_at: manifest.snapshot.taken_at.clone(),
        rows: restored.iter().map(|t| t.rows).sum(),
        tables: restored,
        files_already_copied: done.len(),
        left_out,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The archive's identity: the blake3 of its manifest (which holds the
/// blake3 of every file).
fn archive_id(dir: &std::path::Path) -> Result<String> {
    let path = dir.join(manifest::FILE_NAME);
    let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// Whether this run finishes an earlier one of the same archive; refuses
/// a target with another archive's unfinished restore, or (without
/// `--into-existing`) one that already has a table of the archive.
async fn check_target(
    conn: &mut SourceConn,
    tables: &[&ManifestTable],
    archive: &str,
    into_existing: bool,
) -> Result<bool> {
    match ledger::unfinished(conn).await? {
        Some(a) if a == archive => return Ok(true),
        Some(a) => {
            return Err(Error::Source {
                message: format!(
                    "the target holds an unfinished restore of another archive (manifest blake3 {}…, in \
                     schema {})",
                    &a[..a.len().min(12)],
                    ledger::SCHEMA
                ),
                hint: format!(
                    "finish it with that archive, or start over: drop the tables it created and `DROP SCHEMA \
                     {} CASCADE`",
                    ledger::SCHEMA
                ),
            })
        }
        None => {}
    }
    if into_existing {
        return Ok(false);
    }
    let mut present = Vec::new();
    for t in tables {
        let rows: Option<i64> = sqlx::query_scalar(
            "SELECT greatest(c.reltuples, 0)::int8 FROM pg_class c WHERE c.oid = to_regclass($1)",
        )
        .bind(t.spec.sql_name())
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::db("looking for the archive's tables in the target"))?;
        if let Some(n) = rows {
            present.push(format!("{} (about {n} rows)", t.spec.qualified()));
        }
    }
    if present.is_empty() {
        return Ok(false);
    }
    Err(Error::Source {
        message: format!("the target already has {}", present.join(", ")),
        hint: "restore into an empty database (createdb), or pass --into-existing to add the rows to the \
               tables there (a row whose key is taken fails the run)"
            .into(),
    })
}

/// Types and tables, and the ledger of a new restore, in one transaction.
async fn create_tables(conn: &mut SourceConn, steps: &[Step], new_ledger: Option<&str>) -> Result<()> {
    sqlx::raw_sql("BEGIN").execute(&mut *conn).await.map_err(Error::db("creating the tables"))?;
    for step in steps {
        if !exists(conn, &step.exists).await? {
            run_step(conn, step).await?;
        }
    }
    if let Some(archive) = new_ledger {
        sqlx::raw_sql(sqlx::AssertSqlSafe(ledger::create_sql(archive)))
            .execute(&mut *conn)
            .await
            .map_err(Error::db("creating the restore's ledger (schema pgflare_restore)"))?;
    }
    sqlx::raw_sql("COMMIT").execute(&mut *conn).await.map_err(Error::db("creating the tables"))?;
    Ok(())
}

async fn run_step(conn: &mut SourceConn, step: &Step) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(step.sql.clone()))
        .execute(&mut *conn)
        .await
        .map_err(Error::db(format!("creating {} in the target", step.what)))?;
    Ok(())
}

/// Runs each step not already done, each in its own transaction; a step
/// whose referenced table is in neither the restore nor the target is
/// left out (a foreign key of a table restored alone, with --table), and
/// so is one over a column the archive does not hold.
async fn apply(conn: &mut SourceConn, steps: &[Step], progress: &Progress) -> Result<Vec<LeftOut>> {
    let status = progress.spinner("schema");
    let mut left_out = Vec::new();
    for step in steps {
        status.set_message(step.what.clone());
        if let Some(parent) = &step.needs {
            if !exists(conn, &Exists::Index(parent.clone())).await? {
                left_out.push(LeftOut {
                    statement: format!("{};", step.sql),
                    reason: format!("{parent} is not in the target; restore it too, then run this"),
                });
                continue;
            }
        }
        if exists(conn, &step.exists).await? {
            continue;
        }
        let run = sqlx::raw_sql(sqlx::AssertSqlSafe(step.sql.clone())).execute(&mut *conn).await;
        match run {
            Ok(_) => {}
            // An archive of Cloudflare holds the columns D1 held: a key or
            // index over a column it lacks cannot be made (42703,
            // undefined_column), and is said instead.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42703") => {
                left_out.push(LeftOut {
                    statement: format!("{};", step.sql),
                    reason: format!("it uses a column the archive does not hold ({})", e.message()),
                });
            }
            Err(e) => return Err(Error::db(format!("creating {} in the target", step.what))(e)),
        }
    }
    status.finish_and_clear();
    Ok(left_out)
}

/// Whether the thing a step makes is already in the target.
async fn exists(conn: &mut SourceConn, exists: &Exists) -> Result<bool> {
    let query = match exists {
        Exists::Statement => return Ok(false),
        Exists::Type(name) => sqlx::query_scalar("SELECT to_regtype($1) IS NOT NULL").bind(name.clone()),
        Exists::Index(name) => sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(name.clone()),
        Exists::Constraint { table, name } => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2)",
        )
        .bind(table.clone())
        .bind(name.clone()),
    };
    query.fetch_one(&mut *conn).await.map_err(Error::db("looking at the target's schema"))
}

/// Copies every file the ledger does not hold, `pg.jobs` at once, the
/// largest first (so the last to finish is a small one).
async fn copy_files(
    opts: &RestoreOptions,
    tables: &[&ManifestTable],
    done: &HashSet<(String, String)>,
    pg: &PgRestore,
    conn: &mut SourceConn,
    progress: &Progress,
) -> Result<()> {
    let with_files: Vec<_> = tables.iter().map(|t| (&t.spec, t.files.as_slice())).collect();
    let sinks: Arc<dyn SinkFactory> = Arc::new(PgCopy::new(pg.target.clone(), conn, &with_files).await?);
    let mut todo: Vec<(&ManifestTable, usize)> = tables
        .iter()
        .flat_map(|t| (0..t.files.len()).map(move |i| (*t, i)))
        .filter(|(t, i)| !done.contains(&(t.spec.qualified(), t.files[*i].path.clone())))
        .collect();
    todo.sort_by_key(|(t, i)| std::cmp::Reverse(t.files[*i].bytes));
    let bar = progress.rows("restore", Some(todo.iter().map(|(t, i)| t.files[*i].rows).sum()));
    let jobs = todo.into_iter().map(|(t, i)| {
        let (dir, t, sinks, bar) = (opts.dir.clone(), t.clone(), sinks.clone(), bar.clone());
        async move {
            let task = tokio::task::spawn_blocking(move || -> Result<()> {
                let spec = Arc::new(t.spec.clone());
                let mut sink = sinks.open(&spec, i)?;
                file_batches(&dir, &t, i, |batch| {
                    bar.inc(batch.num_rows() as u64);
                    sink.write(&TableBatch { table: spec.clone(), partition: i, batch })
                })?;
                sink.finish().map(|_| ())
            });
            task.await.map_err(|e| Error::Internal(format!("a restore worker died: {e}")))?
        }
    });
    let mut results = futures::stream::iter(jobs).buffer_unordered(pg.jobs.max(1));
    while let Some(r) = results.next().await {
        r?;
    }
    bar.finish();
    Ok(())
}
