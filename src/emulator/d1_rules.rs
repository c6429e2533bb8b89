//! Which SQL D1 refuses although SQLite accepts it, decided per action by
//! SQLite's authorizer while a client statement is prepared, and the names
//! of SQLite result codes as D1 prints them after its messages.

use rusqlite::ffi;
use rusqlite::hooks::AuthAction;

/// D1's documented PRAGMA allowlist (developers.cloudflare.com/d1/sql-api/sql-statements).
pub const PRAGMA_ALLOWLIST: &[&str] = &[
    "table_list",
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "index_xinfo",
    "quick_check",
    "foreign_key_check",
    "foreign_key_list",
    "case_sensitive_like",
    "ignore_check_constraints",
    "legacy_alter_table",
    "recursive_triggers",
    "reverse_unordered_selects",
    "foreign_keys",
    "defer_foreign_keys",
    "optimize",
];

const TRANSACTION_REFUSED: &str = "BEGIN, COMMIT, ROLLBACK, SAVEPOINT and RELEASE are refused: every D1 \
    request already runs in one transaction (D1: \"To execute a transaction, please use the \
    state.storage.transaction() or state.storage.transactionSync() APIs instead of the SQL BEGIN \
    TRANSACTION or SAVEPOINT statements\")";

/// Pragmas workerd allows to be read (never set) besides the documented list.
const READ_ONLY_PRAGMAS: &[&str] = &["page_size", "data_version"];

/// The virtual table modules D1 allows (workerd `isAuthorized`).
const VTABLE_MODULES: &[&str] = &["fts5", "fts5vocab", "rtree", "rtree_i32"];

const TEMP_REFUSED: &str = "temporary tables, indexes, triggers and views are refused: D1's storage \
    engine has no support for them";

/// Why D1 refuses this action of client SQL, or None to allow it.
pub fn judge(action: &AuthAction<'_>) -> Option<String> {
    // Source: cloudflare/workerd `src/workerd/api/sql.c++` `SqlStorageRegulator::isAllowedName`
    // (a name starting `_cf_`, any case, is refused); cloudflare-docs
    // `src/content/docs/d1/best-practices/import-export-data.mdx` (`_cf_KV` is reserved).
    let reserved = |kind: &str, name: &str| {
        name.get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("_cf_"))
            .then(|| format!("{kind} name {name} is reserved: D1 refuses names starting with _cf_"))
    };
    match *action {
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Some(TRANSACTION_REFUSED.into()),
        AuthAction::Pragma { pragma_name, pragma_value } => {
            let name = pragma_name.to_ascii_lowercase();
            // Source: cloudflare/workerd `src/workerd/util/sqlite.c++` `ALLOWED_PRAGMAS`: reading
            // `page_size` and `data_version` (no argument) is allowed; the R*Tree module reads
            // `page_size` when a table is created.
            if pragma_value.is_none() && READ_ONLY_PRAGMAS.contains(&name.as_str()) {
                return None;
            }
            (!PRAGMA_ALLOWLIST.contains(&name.as_str())).then(|| {
                format!("PRAGMA {name} is not allowed: D1 only allows {}", PRAGMA_ALLOWLIST.join(", "))
            })
        }
        // Source: cloudflare/workerd `src/workerd/util/sqlite.c++` `isAuthorized` (SQLITE_ATTACH and
        // SQLITE_DETACH denied: "We do not support attached databases").
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Some("D1 refuses ATTACH and DETACH".into()),
        // Source: cloudflare/workerd `src/workerd/util/sqlite.c++` `isAuthorized`: every
        // SQLITE_{CREATE,DROP}_TEMP_{TABLE,INDEX,TRIGGER,VIEW} is denied ("TODO(someday): Allow
        // temporary tables ... our storage engine has no support for this").
        AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::CreateTempView { .. }
        | AuthAction::DropTempTable { .. }
        | AuthAction::DropTempIndex { .. }
        | AuthAction::DropTempTrigger { .. }
        | AuthAction::DropTempView { .. } => Some(TEMP_REFUSED.into()),
        AuthAction::CreateTable { table_name } => reserved("table", table_name),
        AuthAction::CreateIndex { index_name, .. } => reserved("index", index_name),
        AuthAction::CreateTrigger { trigger_name, .. } => reserved("trigger", trigger_name),
        AuthAction::CreateView { view_name } => reserved("view", view_name),
        // Source: cloudflare/workerd `src/workerd/util/sqlite.c++` `isAuthorized` SQLITE_CREATE_VTABLE
        // (fts5, fts5vocab, rtree, rtree_i32 only, any case); cloudflare-docs
        // `src/content/partials/d1/d1-do-supported-sqlite-extensions.mdx`.
        AuthAction::CreateVtable { table_name, module_name } => reserved("table", table_name).or_else(|| {
            let m = module_name.to_ascii_lowercase();
            (!VTABLE_MODULES.contains(&m.as_str())).then(|| {
                format!(
                    "virtual table module {module_name} is not allowed: D1 allows {}",
                    VTABLE_MODULES.join(", ")
                )
            })
        }),
        _ => None,
    }
}

pub fn code_name(primary: i32) -> &'static str {
    match primary {
        ffi::SQLITE_CONSTRAINT => "SQLITE_CONSTRAINT",
        ffi::SQLITE_TOOBIG => "SQLITE_TOOBIG",
        ffi::SQLITE_AUTH => "SQLITE_AUTH",
        ffi::SQLITE_RANGE => "SQLITE_RANGE",
        ffi::SQLITE_MISMATCH => "SQLITE_MISMATCH",
        ffi::SQLITE_BUSY => "SQLITE_BUSY",
        ffi::SQLITE_LOCKED => "SQLITE_LOCKED",
        ffi::SQLITE_FULL => "SQLITE_FULL",
        ffi::SQLITE_IOERR => "SQLITE_IOERR",
        ffi::SQLITE_CORRUPT => "SQLITE_CORRUPT",
        ffi::SQLITE_NOMEM => "SQLITE_NOMEM",
        ffi::SQLITE_READONLY => "SQLITE_READONLY",
        ffi::SQLITE_INTERRUPT => "SQLITE_INTERRUPT",
        _ => "SQLITE_ERROR",
    }
}
