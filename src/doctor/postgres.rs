//! The Postgres side of `pgflare doctor`: read-only catalog queries on one
//! connection opened the way every command opens it (URL precedence,
//! `--connect-timeout`, `--statement-timeout`). Nothing is written: no
//! snapshot is exported, no table row is read.

use sqlx::Row as _;

use super::pooler::{self, Observed};
use super::{Area, Check};
use crate::config::project::Project;
use crate::error::Error;
use crate::source::introspect::introspect_lenient;
use crate::source::unsupported::FixStyle;
use crate::source::{Source, SourceConn, TableInfo};

/// The oldest server pgflare reads: the catalog queries use
/// `pg_partition_tree` (Postgres 12).
pub const MIN_SERVER_VERSION: i32 = 120_000;

/// What the Vectorize checks need from the source: the vector column's
/// table, its declared dimension and the metadata indexes pgflare.toml asks
/// for, typed from the columns.
#[derive(Clone, Debug, Default)]
pub struct VectorWant {
    pub table: String,
    pub dims: Option<u32>,
    pub metadata_indexes: Vec<(String, String)>,
}

/// The checks, and what the Cloudflare side needs from the source
/// (`None` when the source could not be read).
pub struct Outcome {
    pub checks: Vec<Check>,
    pub vectors: Option<Vec<VectorWant>>,
}

pub async fn run(source: &Source, project: &Project, only: &[String]) -> Outcome {
    let mut checks = Vec::new();
    let c = Check::named("postgres.connect", Area::Postgres, "connect to the source");
    let mut conn = match source.connect().await {
        Ok(conn) => conn,
        Err(e) => {
            checks.push(c.problem(first_line(&e), hint(&e)));
            return Outcome { checks, vectors: None };
        }
    };
    match server(&mut conn, source).await {
        Ok((who, found)) => {
            checks.push(c.ok(format!("{} ({who})", source.display())));
            checks.extend(found);
        }
        Err(e) => {
            checks.push(c.problem(first_line(&e), hint(&e)));
            return Outcome { checks, vectors: None };
        }
    }
    match super::replication::checks(&mut conn).await {
        Ok(found) => checks.extend(found),
        Err(e) => {
            let c = Check::named("postgres.replication_slots", Area::Postgres, "read the replication slots");
            checks.push(c.problem(first_line(&e), hint(&e)));
        }
    }
    let selected = crate::plan::selection(project, only);
    let infos = match async { introspect_lenient(&mut conn, &selected?).await }.await {
        Ok(infos) => infos,
        Err(e) => {
            let c = Check::named("postgres.tables", Area::Postgres, "the configured tables exist");
            checks.push(c.problem(first_line(&e), hint(&e)));
            return Outcome { checks, vectors: None };
        }
    };
    match tables(&mut conn, project, &infos).await {
        Ok(found) => checks.extend(found),
        Err(e) => {
            let c = Check::named("postgres.tables", Area::Postgres, "read the configured tables' catalog");
            checks.push(c.problem(first_line(&e), hint(&e)));
        }
    }
    let (found, vectors) = vector_wants(project, &infos);
    checks.extend(found);
    Outcome { checks, vectors: Some(vectors) }
}

/// Who is connected where, and the checks of server version, pgvector,
/// the connection and wal_level.
async fn server(conn: &mut SourceConn, source: &Source) -> crate::Result<(String, Vec<Check>)> {
    let row = sqlx::query(
        "SELECT current_setting('server_version_num')::int4, current_setting('server_version'),
                current_user::text, current_database()::text, inet_server_port(),
                current_setting('application_name'), pg_backend_pid(),
                (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
                current_setting('wal_level')",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::db("reading the server's settings"))?;
    let (num, version): (i32, String) = (row.get(0), row.get(1));
    let (user, database): (String, String) = (row.get(2), row.get(3));
    let mut pids = vec![row.get::<i32, _>(6)];
    // Each statement outside a transaction is a transaction of its own: a
    // transaction pooler may give each to another server connection.
    for _ in 0..3 {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .map_err(Error::db("reading the backend pid"))?;
        pids.push(pid);
    }
    let observed =
        Observed { url: source.endpoint(), server_port: row.get(4), application_name: row.get(5), pids };
    let mut out = Vec::new();
    let c = Check::named("postgres.version", Area::Postgres, "Postgres server version");
    out.push(if num >= MIN_SERVER_VERSION {
        c.ok(format!("Postgres {version}"))
    } else {
        c.problem(
            format!("Postgres {version}: pgflare reads the catalog with functions of Postgres 12 and later"),
            "upgrade the server to Postgres 12 or later (Supabase projects run 15 or later)",
        )
    });
    let c = Check::named("postgres.pgvector", Area::Postgres, "pgvector extension");
    out.push(match row.get::<Option<String>, _>(7) {
        Some(v) => c.ok(format!("pgvector {v}")),
        None => c.info("not installed in this database (needed only for vector columns)"),
    });
    out.push(pooler::judge(&observed));
    let wal: String = row.get(8);
    let c =
        Check::named("postgres.wal_level", Area::Postgres, "wal_level (for syncs by logical replication)");
    out.push(if wal == "logical" {
        c.info("logical: `pgflare sync --follow` can stream changes")
    } else {
        c.info(format!(
            "{wal}: `pgflare sync --once/--every` finds changes by transaction id and does not need it; \
             `sync --follow` needs wal_level = logical (Supabase has it)"
        ))
    });
    Ok((format!("user {user}, database {database}"), out))
}

/// Per table: readable by this role, row security, primary key, replica
/// identity, column types pgflare can read.
async fn tables(conn: &mut SourceConn, project: &Project, infos: &[TableInfo]) -> crate::Result<Vec<Check>> {
    let bypass: bool =
        sqlx::query_scalar("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_optional(&mut *conn)
            .await
            .map_err(Error::db("reading the role's attributes"))?
            .unwrap_or(false);
    let (mut unreadable, mut rls, mut no_pk, mut identity, mut types) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for info in infos {
        let spec = &info.spec;
        let m = project.tables.iter().find(|m| m.schema == spec.schema && m.table == spec.name);
        let reads = |col: &str| m.is_none_or(|m| m.reads(col));
        let t = table_facts(conn, info).await?;
        let denied: Vec<&String> = t.denied_columns.iter().filter(|c| reads(c)).collect();
        if !denied.is_empty() {
            unreadable.push(format!(
                "{} (columns {})",
                spec.qualified(),
                denied.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        if t.row_security && !bypass && (!t.owner || t.force_row_security) {
            rls.push(spec.qualified());
        }
        let keyed = !spec.primary_key.is_empty() || m.is_some_and(|m| m.primary_key.is_some());
        if !keyed {
            no_pk.push(spec.qualified());
        }
        identity.push(format!("{} {}", spec.qualified(), replica_identity(&t.replica_identity, keyed)));
        for u in info.unsupported.iter().filter(|u| reads(&u.column)) {
            types.push(format!(
                "{}.{} ({}): {}",
                spec.qualified(),
                u.column,
                u.pg_type,
                u.fix(FixStyle::Config)
            ));
        }
    }
    Ok(table_checks(infos.len(), unreadable, rls, no_pk, identity, types))
}

fn table_checks(
    n: usize,
    unreadable: Vec<String>,
    rls: Vec<String>,
    no_pk: Vec<String>,
    identity: Vec<String>,
    types: Vec<String>,
) -> Vec<Check> {
    let mut out = Vec::new();
    let c = Check::named("postgres.privileges", Area::Postgres, "this role can read the tables");
    out.push(if unreadable.is_empty() {
        c.ok(format!("SELECT on every column read, {n} table(s)"))
    } else {
        c.problem(
            format!("no SELECT privilege on {}", unreadable.join("; ")),
            "GRANT SELECT ON <table> TO <this role> (or connect as the owner; on Supabase the postgres role)",
        )
    });
    let c = Check::named("postgres.row_security", Area::Postgres, "row-level security does not hide rows");
    out.push(if rls.is_empty() {
        c.ok("no row-level security applies to this role on these tables")
    } else {
        c.problem(
            format!(
                "row-level security is on for {} and this role does not bypass it: a load would read only \
                 the rows its policies show, without an error",
                rls.join(", ")
            ),
            "connect as the tables' owner or a role with BYPASSRLS (on Supabase: the postgres role), or \
             ALTER TABLE ... DISABLE ROW LEVEL SECURITY for the migration",
        )
    });
    let c = Check::named("postgres.primary_keys", Area::Postgres, "every table has a primary key");
    out.push(if no_pk.is_empty() {
        c.ok("every table has one (in Postgres or primary_key in pgflare.toml)")
    } else {
        c.problem(
            format!("no primary key: {}", no_pk.join(", ")),
            "add one in Postgres (ALTER TABLE ... ADD PRIMARY KEY), or name the columns that identify a row \
             in the table's [[tables]] entry: primary_key = [\"col\", ...]",
        )
    });
    let c = Check::named("postgres.column_types", Area::Postgres, "every column read has a known type");
    out.push(if types.is_empty() {
        c.ok("pgflare reads every column the load reads")
    } else {
        c.problem(
            format!("cannot be read as they are: {}", types.join("; ")),
            "apply the fix given per column",
        )
    });
    let c = Check::named("postgres.replica_identity", Area::Postgres, "replica identity (for sync --follow)");
    let unfit: Vec<&String> = identity.iter().filter(|i| i.contains("could not be replicated")).collect();
    out.push(if unfit.is_empty() {
        c.info(identity.join("; "))
    } else {
        c.warning(
            format!(
                "{}: `sync --follow` refuses these tables (polling with --once/--every works)",
                unfit.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ")
            ),
            "add a primary key, or ALTER TABLE <table> REPLICA IDENTITY FULL",
        )
    });
    out
}

fn replica_identity(code: &str, keyed: bool) -> &'static str {
    match (code, keyed) {
        ("d", true) => "default (its primary key)",
        ("d", false) => "default, but no primary key: updates and deletes could not be replicated",
        ("f", _) => "full",
        ("i", _) => "an index",
        _ => "nothing: updates and deletes could not be replicated",
    }
}

/// What the catalog says of one table for this role.
struct TableFacts {
    row_security: bool,
    force_row_security: bool,
    owner: bool,
    replica_identity: String,
    /// Columns this role may not SELECT (none when it may read the table).
    denied_columns: Vec<String>,
}

async fn table_facts(conn: &mut SourceConn, info: &TableInfo) -> crate::Result<TableFacts> {
    let name = info.spec.sql_name();
    let what = format!("reading the catalog of {}", info.spec.qualified());
    let row = sqlx::query(
        "SELECT c.relrowsecurity, c.relforcerowsecurity, pg_has_role(c.relowner, 'USAGE'),
                c.relreplident::text,
                coalesce(array_agg(a.attname::text ORDER BY a.attnum)
                           FILTER (WHERE NOT has_column_privilege(c.oid, a.attnum, 'SELECT')), '{}')
           FROM pg_class c
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          WHERE c.oid = $1::regclass
          GROUP BY c.oid",
    )
    .bind(&name)
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::db(what))?;
    Ok(TableFacts {
        row_security: row.get(0),
        force_row_security: row.get(1),
        owner: row.get(2),
        replica_identity: row.get(3),
        denied_columns: row.get(4),
    })
}

/// The index each vector table asks for: its dimension and metadata
/// indexes, by the load's own rules.
fn vector_wants(project: &Project, infos: &[TableInfo]) -> (Vec<Check>, Vec<VectorWant>) {
    let (mut checks, mut wants) = (Vec::new(), Vec::new());
    for info in infos {
        let spec = &info.spec;
        let Some(m) = project.tables.iter().find(|m| m.schema == spec.schema && m.table == spec.name) else {
            continue;
        };
        match crate::config::mapping::vector_mapping(m, info, &project.vectorize) {
            Ok(Some(vm)) => wants.push(VectorWant {
                table: spec.qualified(),
                dims: vm.dims,
                metadata_indexes: crate::config::mapping::metadata_index_types(m, info),
            }),
            Ok(None) => {}
            Err(e) => {
                let c = Check::named(
                    "postgres.vector_mapping",
                    Area::Postgres,
                    "the vector mapping fits the columns",
                );
                checks.push(c.problem(first_line(&e), "fix the setting named above in pgflare.toml"));
            }
        }
    }
    (checks, wants)
}

/// An error's message without its `hint:` line.
pub fn first_line(e: &Error) -> String {
    let text = e.to_string();
    text.split("\n  hint: ").next().unwrap_or(&text).trim().to_string()
}

/// An error's hint, or a generic one.
pub fn hint(e: &Error) -> String {
    let text = e.to_string();
    match text.split_once("\n  hint: ") {
        Some((_, h)) => h.trim().to_string(),
        None => "fix what the message names and run pgflare doctor again".into(),
    }
}
