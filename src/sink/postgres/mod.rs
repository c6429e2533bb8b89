//! Writing archived rows back into Postgres. [`encode`] turns Arrow record
//! batches of a table into `COPY ... FROM STDIN (FORMAT binary)` rows, the
//! inverse of the source's decoder ([`crate::source::decode`]), so that a
//! restore puts back the same bits the archive read.

pub mod encode;
