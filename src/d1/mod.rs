//! What every part that speaks D1's SQL shares, whoever runs it: the
//! statement splitter ([`split`]) used by the D1 client (to send a long
//! multi-statement text as a `batch`), the `sqlite` target, verify's export
//! reader and the emulator; and the read-back of D1 rows into the source's
//! types ([`read`], with its float scanner [`floats`]) that verify and
//! sync's delete sweep digest.

mod floats;
pub mod read;
pub mod split;

use crate::error::{Error, Result};

/// Refuses a name D1 reserves.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.to_ascii_lowercase().starts_with("_cf_") {
        return Err(Error::Config {
            setting: format!("D1 {kind} name"),
            message: format!("`{name}` starts with _cf_, which D1 reserves; give it another name in D1"),
        });
    }
    Ok(())
}
