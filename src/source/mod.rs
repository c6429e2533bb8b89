//! The Postgres side: connecting, reading the catalog, one exported snapshot
//! shared by parallel workers, key-range partitions, and the COPY BINARY
//! decoder that turns rows (pgvector included) into Arrow record batches.

pub mod archive;
pub mod conn;
pub mod connect;
pub mod constraint_text;
pub mod constraints;
pub mod copy;
pub mod decode;
pub mod filter_fit;
pub mod fit;
pub mod in_progress;
pub mod introspect;
pub mod job;
pub mod numeric;
pub mod partition;
pub mod pgvector;
pub mod reader;
pub mod snapshot;
pub mod table;
pub mod unsupported;
pub mod vector_fit;
pub mod wal;

pub use conn::SourceConn;
pub use connect::Source;
pub use introspect::{introspect, Selection};
pub use partition::{Partition, SplitOptions};
pub use reader::{read_all, read_until, ReadOptions, TableJob};
pub use snapshot::{Snapshot, SnapshotInfo};
pub use table::TableInfo;
