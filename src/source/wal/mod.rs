//! The source's write-ahead log as a stream of changes, for `sync
//! --follow`: the slot and publication it is read through ([`slot`]), the
//! `pgoutput` messages decoded ([`pgoutput`]), and the SQL that turns a
//! change's text values back into rows of the COPY BINARY form every
//! other reader produces ([`rows`]).

pub mod pgoutput;
pub mod rows;
pub mod slot;
