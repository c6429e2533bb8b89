//! Loading the seed data into Postgres with `COPY ... FROM STDIN`.

use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::encode::CopyEncoder;
use super::{schema_sql, SeedError, SeedParams, Table, DROP_SQL};

/// What [`load`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedReport {
    /// Rows in `documents` (hard-rows document included).
    pub documents: u64,
    /// Rows in `chunks` (hard rows included).
    pub chunks: u64,
    /// Chunks whose embedding is NULL.
    pub null_embeddings: u64,
    /// Bytes of COPY text sent.
    pub bytes: u64,
    pub elapsed: Duration,
}

fn db(stage: &'static str) -> impl FnOnce(sqlx::Error) -> SeedError {
    move |source| SeedError::Database { stage, source }
}

/// Create the schema and fill it: optionally `DROP TABLE IF EXISTS chunks,
/// documents CASCADE`, apply [`schema_sql`], `COPY` both tables in one
/// transaction (pieces of about 1 MiB; the next piece is generated on a
/// blocking thread while the current one is sent), then `ANALYZE` both.
///
/// Without `drop_existing`, existing tables make the schema step fail.
pub async fn load(
    conn: &mut PgConnection,
    p: &SeedParams,
    drop_existing: bool,
) -> Result<SeedReport, SeedError> {
    p.validate()?;
    let started = Instant::now();
    let mut tx = conn.begin().await.map_err(db("starting the transaction"))?;
    if drop_existing {
        sqlx::raw_sql(DROP_SQL).execute(&mut *tx).await.map_err(db("dropping existing tables"))?;
    }
    sqlx::raw_sql(AssertSqlSafe(schema_sql(p.dims)))
        .execute(&mut *tx)
        .await
        .map_err(db("creating the schema"))?;

    let docs = copy_table(&mut tx, p, Table::Documents).await?;
    let chunks = copy_table(&mut tx, p, Table::Chunks).await?;
    tx.commit().await.map_err(db("committing"))?;

    sqlx::raw_sql("ANALYZE documents; ANALYZE chunks")
        .execute(&mut *conn)
        .await
        .map_err(db("analyzing the tables"))?;

    Ok(SeedReport {
        documents: docs.rows,
        chunks: chunks.rows,
        null_embeddings: chunks.null_embeddings,
        bytes: docs.bytes + chunks.bytes,
        elapsed: started.elapsed(),
    })
}

struct Copied {
    rows: u64,
    bytes: u64,
    null_embeddings: u64,
}

async fn copy_table(conn: &mut PgConnection, p: &SeedParams, table: Table) -> Result<Copied, SeedError> {
    let stage = match table {
        Table::Documents => "copying documents",
        Table::Chunks => "copying chunks",
    };
    let mut encoder = CopyEncoder::new(p, table)?;
    let mut copy = conn.copy_in_raw(table.copy_statement()).await.map_err(db(stage))?;
    let mut piece = encoder.next_piece();
    while let Some(current) = piece {
        // Generate the next piece on a blocking thread while this one is sent.
        let next = tokio::task::spawn_blocking(move || {
            let next = encoder.next_piece();
            (encoder, next)
        });
        if let Err(e) = copy.send(current).await {
            // Let the generator finish so its thread is not left detached
            // mid-piece, then report the send error.
            let _ = next.await;
            return Err(SeedError::Database { stage, source: e });
        }
        let (enc, next_piece) = match next.await {
            Ok(v) => v,
            Err(e) => {
                let _ = copy.abort("seed generator failed").await;
                return Err(SeedError::Task(e.to_string()));
            }
        };
        encoder = enc;
        piece = next_piece;
    }
    let rows = copy.finish().await.map_err(db(stage))?;
    if rows != encoder.rows() {
        return Err(SeedError::Task(format!(
            "{}: Postgres reported {rows} rows copied, {} were sent",
            table.name(),
            encoder.rows()
        )));
    }
    Ok(Copied { rows, bytes: encoder.bytes(), null_embeddings: encoder.null_embeddings() })
}
