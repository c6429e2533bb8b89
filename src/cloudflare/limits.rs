//! Cloudflare's documented limits, in one place (see
//! `../shared/reference/cloudflare.md`). Values marked unconfirmed there
//! are taken at their strictest reading.

/// D1: bytes in one SQL statement.
pub const D1_MAX_STATEMENT_BYTES: usize = 100_000;
/// D1: bytes in one string, BLOB or row.
pub const D1_MAX_VALUE_BYTES: usize = 2_000_000;
/// D1: columns per table.
pub const D1_MAX_COLUMNS: usize = 100;
/// D1: bound parameters per query.
pub const D1_MAX_BOUND_PARAMS: usize = 100;
/// D1: database size on the paid plan.
pub const D1_MAX_DATABASE_BYTES: u64 = 10_000_000_000;
/// Vectorize: dimensions of a vector.
pub const VECTORIZE_MAX_DIMS: u32 = 1536;
/// Vectorize: bytes of a vector id.
pub const VECTORIZE_MAX_ID_BYTES: usize = 64;
/// Vectorize: bytes of one vector's metadata.
pub const VECTORIZE_MAX_METADATA_BYTES: usize = 10 * 1024;
/// Vectorize: vectors in one upsert/insert request over HTTP.
pub const VECTORIZE_MAX_VECTORS_PER_REQUEST: usize = 5000;
/// Vectorize: bytes of one upload (100 MB, read as decimal: the stricter).
pub const VECTORIZE_MAX_UPLOAD_BYTES: usize = 100_000_000;
/// Vectorize: bytes of a namespace name.
pub const VECTORIZE_MAX_NAMESPACE_BYTES: usize = 64;
/// Vectorize: metadata indexes per index.
pub const VECTORIZE_MAX_METADATA_INDEXES: usize = 10;
/// Vectorize: ids per `delete_by_ids` call (unconfirmed: strictest reading).
pub const VECTORIZE_MAX_IDS_PER_CALL: usize = 100;
/// Vectorize: ids per `get_by_ids` call.
pub const VECTORIZE_MAX_GET_IDS: usize = 20;
