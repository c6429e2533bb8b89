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

/// A float as D1 stores it, the one place of the rule: NaN has no SQLite
/// form (SQLite stores NULL) and -0.0 becomes 0.0 (SQLite stores a whole
/// REAL as an integer, which has no sign); every other value D1 keeps
/// exactly. The writers send this form and verify expects it
/// ([`read::target_form`]); the type table names the loss (`typemap`).
pub fn real(f: f64) -> Option<f64> {
    // `+ 0.0` turns -0.0 into 0.0 and leaves every other value as it is.
    (!f.is_nan()).then_some(f + 0.0)
}

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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// NaN has no D1 form, -0.0 becomes 0.0, every other float (and
        /// every float32 through float64) is kept bit for bit.
        #[test]
        fn d1_keeps_every_float_but_nan_and_negative_zero(bits in any::<u64>(), bits32 in any::<u32>()) {
            let f = f64::from_bits(bits);
            match super::real(f) {
                None => prop_assert!(f.is_nan()),
                Some(g) if f == 0.0 => prop_assert_eq!(g.to_bits(), 0),
                Some(g) => prop_assert_eq!(g.to_bits(), bits),
            }
            let h = f32::from_bits(bits32);
            if !h.is_nan() && h != 0.0 {
                let back = super::real(f64::from(h)).map(|g| g as f32);
                prop_assert_eq!(back.map(f32::to_bits), Some(bits32));
            }
        }
    }
}
