//! The D1 sink: rows rendered as D1 stores them ([`value`]) and packed into
//! idempotent upsert statements under D1's limits ([`sql`]).

pub mod sql;
pub mod value;
