//! Cloudflare's side of the migration. For now: the documented D1 and
//! Vectorize limits that every check and every writer respects.

pub mod limits;
