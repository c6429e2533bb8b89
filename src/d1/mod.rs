//! What every part that speaks D1's SQL shares, whoever runs it: the
//! statement splitter used by the D1 client (to send a long multi-statement
//! text as a `batch`), the `sqlite` target, verify's export reader and the
//! emulator. The first piece of the middle layer that `d1/` is meant to hold
//! (codec, SQL writer, access; see the design notes in the README).

pub mod split;
