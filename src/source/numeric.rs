//! Postgres `numeric` binary format: int16 ndigits, int16 weight, uint16
//! sign, uint16 dscale, then ndigits base-10000 digits. Decoded exactly,
//! either to its canonical text (what `numeric_out` prints) or to an i128
//! scaled for an Arrow Decimal128 column; never through a float.

const POS: u16 = 0x0000;
const NEG: u16 = 0x4000;
const NAN: u16 = 0xC000;
const PINF: u16 = 0xD000;
const NINF: u16 = 0xF000;

struct Parsed {
    weight: i32,
    sign: u16,
    dscale: u32,
    digits: Vec<u16>,
}

fn parse(v: &[u8]) -> Result<Parsed, String> {
    if v.len() < 8 {
        return Err(format!("numeric value of {} bytes is too short", v.len()));
    }
    let ndigits = i16::from_be_bytes([v[0], v[1]]);
    let weight = i16::from_be_bytes([v[2], v[3]]) as i32;
    let sign = u16::from_be_bytes([v[4], v[5]]);
    let dscale = u16::from_be_bytes([v[6], v[7]]) as u32;
    if ndigits < 0 || v.len() != 8 + 2 * ndigits as usize {
        return Err(format!("numeric value has {} bytes for {ndigits} digits", v.len()));
    }
    let digits = v[8..].chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect::<Vec<_>>();
    if digits.iter().any(|d| *d > 9999) {
        return Err("numeric digit out of range".into());
    }
    if ![POS, NEG, NAN, PINF, NINF].contains(&sign) {
        return Err(format!("numeric sign word {sign:#06x} is unknown"));
    }
    Ok(Parsed { weight, sign, dscale, digits })
}

/// The value's canonical text, as Postgres prints it.
pub fn to_text(v: &[u8]) -> Result<String, String> {
    let p = parse(v)?;
    match p.sign {
        NAN => return Ok("NaN".into()),
        PINF => return Ok("Infinity".into()),
        NINF => return Ok("-Infinity".into()),
        _ => {}
    }
    let digit = |i: i32| -> u16 {
        if i >= 0 && (i as usize) < p.digits.len() {
            p.digits[i as usize]
        } else {
            0
        }
    };
    let mut out = String::new();
    if p.sign == NEG && p.digits.iter().any(|d| *d != 0) {
        out.push('-');
    }
    if p.weight < 0 {
        out.push('0');
    } else {
        out.push_str(&digit(0).to_string());
        for i in 1..=p.weight {
            out.push_str(&format!("{:04}", digit(i)));
        }
    }
    if p.dscale > 0 {
        out.push('.');
        let mut frac = String::new();
        let mut i = p.weight + 1;
        while (frac.len() as u32) < p.dscale {
            frac.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        frac.truncate(p.dscale as usize);
        out.push_str(&frac);
    }
    Ok(out)
}

/// The value times 10^scale as an i128, for a Decimal128(_, scale) column.
/// Fails on NaN/infinity, overflow, or digits beyond `scale` (which a
/// `numeric(p,s)` column cannot hold).
pub fn to_i128(v: &[u8], scale: i8) -> Result<i128, String> {
    let p = parse(v)?;
    if matches!(p.sign, NAN | PINF | NINF) {
        return Err(format!("{} does not fit a Decimal128 column", to_text(v)?));
    }
    let overflow = || "numeric value does not fit in 38 digits".to_string();
    let mut acc: i128 = 0;
    for (i, d) in p.digits.iter().enumerate() {
        // Decimal exponent of this base-10000 digit, after scaling.
        let exp = 4 * (p.weight - i as i32) + scale as i32;
        let d = *d as i128;
        let term = if exp >= 0 {
            10i128.checked_pow(exp as u32).and_then(|m| d.checked_mul(m)).ok_or_else(overflow)?
        } else {
            let div = 10i128.pow((-exp).min(4) as u32);
            if (-exp) > 4 || d % div != 0 {
                if d == 0 {
                    0
                } else {
                    return Err(format!("numeric value has more than {scale} decimal places"));
                }
            } else {
                d / div
            }
        };
        acc = acc.checked_add(term).ok_or_else(overflow)?;
    }
    Ok(if p.sign == NEG { -acc } else { acc })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(ndigits: &[u16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(ndigits.len() as i16).to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in ndigits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn text_matches_numeric_out() {
        // 12345.678 = digits [1, 2345, 6780], weight 1, dscale 3
        assert_eq!(to_text(&enc(&[1, 2345, 6780], 1, POS, 3)).unwrap(), "12345.678");
        // -0.0012 = digits [12], weight -1, dscale 4
        assert_eq!(to_text(&enc(&[12], -1, NEG, 4)).unwrap(), "-0.0012");
        // 1000000 = digits [100], weight 1
        assert_eq!(to_text(&enc(&[100], 1, POS, 0)).unwrap(), "1000000");
        assert_eq!(to_text(&enc(&[], 0, POS, 2)).unwrap(), "0.00");
        assert_eq!(to_text(&enc(&[], 0, NAN, 0)).unwrap(), "NaN");
    }

    #[test]
    fn decimal_scaling_is_exact() {
        assert_eq!(to_i128(&enc(&[1, 2345, 6780], 1, POS, 3), 3).unwrap(), 12_345_678);
        assert_eq!(to_i128(&enc(&[12], -1, NEG, 4), 4).unwrap(), -12);
        assert_eq!(to_i128(&enc(&[100], 1, POS, 0), 2).unwrap(), 100_000_000);
        assert!(to_i128(&enc(&[12], -1, NEG, 4), 2).is_err());
        assert!(to_i128(&enc(&[], 0, NAN, 0), 2).is_err());
    }
}
