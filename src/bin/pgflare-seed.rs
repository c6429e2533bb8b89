//! `pgflare-seed`: fill a Postgres + pgvector database (or a directory of
//! COPY files) with deterministic RAG fixture data. See `pgflare::seed`.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use pgflare::seed::{self, SeedParams, Table, HARD_ROW_IDS};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// Load deterministic RAG fixture data into Postgres + pgvector.
#[derive(Debug, Parser)]
#[command(
    name = "pgflare-seed",
    version,
    about = "Load deterministic RAG fixture data (documents, chunks, pgvector embeddings) into Postgres",
    long_about = "Load deterministic RAG fixture data into Postgres + pgvector, or write it as COPY files.\n\n\
        Creates the tables `documents` and `chunks` from fixtures/schema.sql (embedding column \
        vector(DIMS)) and fills them with multilingual documentation text (en, de, fr, es, ja, ar, \
        ru, zh), tags, jsonb metadata and embeddings clustered around 16 topic centroids \
        (about 2% NULL). Unless --no-hard-rows is given, one extra document \
        (00000000-0000-4000-8000-000000000000) holds edge-case chunks with fixed ids \
        00000000-0000-4000-8000-0000000000NN: empty, quotes, backslashes, CR/LF/tab, emoji, \
        right-to-left text, U+2028/U+2029, a 160,000-byte value, NULL and empty arrays and JSON, \
        and extreme float values.\n\n\
        The same --seed, --documents, --chunks, --dims and hard-rows setting always produce \
        byte-identical data on every machine.",
    after_help = "Examples:\n  \
        pgflare-seed --database-url postgres://postgres@localhost/rag --drop\n  \
        pgflare-seed --chunks 20000 --dims 768 --drop          # URL from DATABASE_URL\n  \
        pgflare-seed --chunks 500 --dims 8 --out fixtures/small  # schema.sql + *.copy files"
)]
struct Args {
    /// Postgres connection URL to load into. Required unless --out is given.
    /// The password is never printed.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    database_url: Option<String>,

    /// PRNG seed; the data is a pure function of the seed and the sizes.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Ordinary documents to create [default: chunks / 20, at least 1].
    #[arg(long, value_name = "N")]
    documents: Option<usize>,

    /// Ordinary chunks to create, spread over the documents.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    chunks: usize,

    /// Embedding dimension (vector(DIMS) column), 1 to 16000.
    #[arg(long, value_name = "DIMS", default_value_t = 1536)]
    dims: usize,

    /// Leave out the hard-rows document and its edge-case chunks.
    #[arg(long)]
    no_hard_rows: bool,

    /// Drop existing `chunks` and `documents` tables (CASCADE) first.
    #[arg(long, conflicts_with = "out")]
    drop: bool,

    /// Write schema.sql, documents.copy and chunks.copy into DIR instead of
    /// loading a database (created if missing; files are overwritten).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn write_dir(dir: &Path, p: &SeedParams) -> Result<(u64, u64, u64)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let schema = dir.join("schema.sql");
    std::fs::write(&schema, seed::schema_sql(p.dims))
        .with_context(|| format!("writing {}", schema.display()))?;
    let mut rows = [0u64; 2];
    let mut bytes = 0u64;
    for (i, (table, name)) in
        [(Table::Documents, "documents.copy"), (Table::Chunks, "chunks.copy")].into_iter().enumerate()
    {
        let path = dir.join(name);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        rows[i] = seed::write_copy(p, table, BufWriter::with_capacity(1 << 20, file))
            .with_context(|| format!("writing {}", path.display()))?;
        bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    }
    Ok((rows[0], rows[1], bytes))
}

async fn load_db(url: &str, p: &SeedParams, drop: bool) -> Result<String> {
    // Parse once so the summary can name host and database without the URL
    // (and so without its password).
    let opts: PgConnectOptions = url.parse().context("invalid --database-url / DATABASE_URL")?;
    let target = format!(
        "database \"{}\" on {}:{}",
        opts.get_database().unwrap_or("(default)"),
        opts.get_host(),
        opts.get_port()
    );
    let mut conn =
        PgConnection::connect_with(&opts).await.with_context(|| format!("connecting to {target}"))?;
    let report = seed::load(&mut conn, p, drop).await.with_context(|| {
        if drop {
            format!("loading {target}")
        } else {
            format!("loading {target} (pass --drop to replace existing tables)")
        }
    })?;
    conn.close().await.ok();
    Ok(format!(
        "loaded {} documents and {} chunks ({} NULL embeddings, {:.1} MiB COPY text) into {target}",
        report.documents,
        report.chunks,
        report.null_embeddings,
        mib(report.bytes)
    ))
}

/// The error and its causes on one line, skipping a cause whose text the
/// message before it already includes.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgflare-seed: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgflare-seed: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let p = SeedParams {
        seed: args.seed,
        documents: args.documents.unwrap_or((args.chunks / 20).max(1)),
        chunks: args.chunks,
        dims: args.dims,
        hard_rows: !args.no_hard_rows,
    };
    p.validate()?;
    let started = Instant::now();
    let what = if let Some(dir) = &args.out {
        let (docs, chunks, bytes) = write_dir(dir, &p)?;
        format!("wrote {docs} documents and {chunks} chunks ({:.1} MiB) to {}", mib(bytes), dir.display())
    } else {
        let url = args
            .database_url
            .as_deref()
            .context("no database: pass --database-url, set DATABASE_URL, or use --out DIR")?;
        load_db(url, &p, args.drop).await?
    };
    eprintln!(
        "pgflare-seed: {what}; seed {}, dims {}, {} hard rows; {:.2}s",
        p.seed,
        p.dims,
        if p.hard_rows { HARD_ROW_IDS.len() } else { 0 },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
