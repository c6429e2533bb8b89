//! Postgres `numeric` binary format: int16 ndigits, int16 weight, uint16
//! sign, uint16 dscale, then ndigits base-10000 digits (`numeric_send` /
//! `numeric_recv` in Postgres's src/backend/utils/adt/numeric.c). Decoded
//! exactly, either to its canonical text (what `numeric_out` prints) or to
//! an i128 scaled for an Arrow Decimal128 column; never through a float.
//! [`from_text`] and [`from_i128`] are the inverses, for writing back with
//! COPY FROM: they produce what `numeric_send` sends for the same value.

const POS: u16 = 0x0000;
const NEG: u16 = 0x4000;
const NAN: u16 = 0xC000;
const PINF: u16 = 0xD000;
const NINF: u16 = 0xF000;
/// NUMERIC_DSCALE_MAX (numeric.c): the largest display scale; numeric_recv
/// refuses a larger one ("invalid scale in external numeric value").
const DSCALE_MAX: usize = 0x3FFF;
/// NUMERIC_WEIGHT_MAX (numeric.c): the weight is an int16 when stored.
const WEIGHT_MAX: i64 = i16::MAX as i64;

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
    // numeric_send writes ndigits with pq_sendint16, numeric_recv reads it
    // as a uint16: values of more than 32767 base-10000 digits exist.
    let ndigits = u16::from_be_bytes([v[0], v[1]]);
    let weight = i16::from_be_bytes([v[2], v[3]]) as i32;
    let sign = u16::from_be_bytes([v[4], v[5]]);
    let dscale = u16::from_be_bytes([v[6], v[7]]) as u32;
    if v.len() != 8 + 2 * ndigits as usize {
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

/// Appends the binary form of `text`, a numeric as [`to_text`] prints it
/// (`NaN`, `Infinity`, `-Infinity`, or `-`? digits, optionally `.` digits):
/// the digits after the point set the display scale, so trailing zeros are
/// kept as Postgres keeps them.
pub fn from_text(text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    match text {
        "NaN" => return special(NAN, out),
        "Infinity" => return special(PINF, out),
        "-Infinity" => return special(NINF, out),
        _ => {}
    }
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = match body.split_once('.') {
        Some((int, frac)) if !frac.is_empty() => (int.as_bytes(), frac.as_bytes()),
        Some(_) => (&[][..], &[][..]),
        None => (body.as_bytes(), &[][..]),
    };
    if int.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        let shown: String = text.chars().take(40).collect();
        return Err(format!("{shown:?} is not a numeric value (digits with an optional '-' and '.')"));
    }
    if frac.len() > DSCALE_MAX {
        return Err(format!(
            "numeric value has {} digits after the point; Postgres keeps at most {DSCALE_MAX}",
            frac.len()
        ));
    }
    let nonzero = |b: &u8| *b != b'0';
    // A digit's decimal exponent: int[k] is 10^(int.len()-1-k), frac[k] is 10^-(k+1).
    let int_exp = |k: usize| int.len() as i64 - 1 - k as i64;
    let frac_exp = |k: usize| -(k as i64) - 1;
    let highest =
        int.iter().position(nonzero).map(int_exp).or_else(|| frac.iter().position(nonzero).map(frac_exp));
    let lowest =
        frac.iter().rposition(nonzero).map(frac_exp).or_else(|| int.iter().rposition(nonzero).map(int_exp));
    let digit = |e: i64| -> u16 {
        let b = if e >= 0 {
            usize::try_from(int.len() as i64 - 1 - e).ok().and_then(|k| int.get(k))
        } else {
            frac.get((-e - 1) as usize)
        };
        b.map_or(0, |b| (b - b'0') as u16)
    };
    write(out, negative, highest.zip(lowest), digit, frac.len())
}

/// Appends the binary form of `value` x 10^-`scale` (an Arrow Decimal128
/// value), with display scale `scale` (as a `numeric(p, scale)` column
/// holds every value), or 0 for a negative scale.
pub fn from_i128(value: i128, scale: i8, out: &mut Vec<u8>) -> Result<(), String> {
    // Decimal digits of |value|, least significant first (2^127 has 39).
    let mut digits = [0u8; 39];
    let (mut n, mut rest) = (0usize, value.unsigned_abs());
    while rest > 0 {
        digits[n] = (rest % 10) as u8;
        rest /= 10;
        n += 1;
    }
    let scale = scale as i64;
    let range =
        digits[..n].iter().position(|d| *d != 0).map(|first| (n as i64 - 1 - scale, first as i64 - scale));
    let digit = |e: i64| -> u16 {
        let k = e + scale;
        if (0..n as i64).contains(&k) {
            digits[k as usize] as u16
        } else {
            0
        }
    };
    write(out, value < 0, range, digit, scale.max(0) as usize)
}

/// NaN and the infinities: only the sign word matters to numeric_recv
/// ("make_result will ignore all but the sign field"). numeric_send sends
/// dscale 32 for both infinities (NUMERIC_DSCALE reads the short-header bits
/// of the sign word 0xD000/0xF000); 0 is what the special constants in
/// numeric.c (const_pinf, const_ninf) carry, and reads back the same.
fn special(sign: u16, out: &mut Vec<u8>) -> Result<(), String> {
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    Ok(())
}

/// Writes a finite value: `range` is the decimal exponents of its highest
/// and lowest nonzero digits (None for zero), `digit(e)` its digit at 10^e.
/// Base-10000 digits are aligned on the decimal point, and there are no
/// leading or trailing zero ones: what make_result (numeric.c) stores and
/// numeric_send therefore sends, zero included (weight 0, positive sign).
fn write(
    out: &mut Vec<u8>,
    negative: bool,
    range: Option<(i64, i64)>,
    digit: impl Fn(i64) -> u16,
    dscale: usize,
) -> Result<(), String> {
    let dscale = (dscale as u16).to_be_bytes();
    let Some((highest, lowest)) = range else {
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&dscale);
        return Ok(());
    };
    let weight = highest.div_euclid(4);
    let last = lowest.div_euclid(4);
    if weight > WEIGHT_MAX {
        return Err(format!(
            "numeric value has {} digits before the point; Postgres keeps at most {}",
            highest + 1,
            4 * (WEIGHT_MAX + 1)
        ));
    }
    // weight <= 32767 and last >= -(DSCALE_MAX / 4 + 1), so this fits the
    // uint16 numeric_recv reads (numeric_send writes it as an int16, which
    // past 32767 reads back negative: see parse()).
    let ndigits = (weight - last + 1) as u16;
    out.reserve(8 + 2 * ndigits as usize);
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(&(if negative { NEG } else { POS }).to_be_bytes());
    out.extend_from_slice(&dscale);
    for group in (last..=weight).rev() {
        let e = 4 * group;
        let d = digit(e + 3) * 1000 + digit(e + 2) * 100 + digit(e + 1) * 10 + digit(e);
        out.extend_from_slice(&d.to_be_bytes());
    }
    Ok(())
}

/// Numerics as [`to_text`] prints them: NaN and the infinities, and finite
/// values of up to 60 integer and 40 fraction digits (trailing zeros
/// included), for property tests here and in the encoder.
#[cfg(test)]
pub(crate) fn text_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let finite = (any::<bool>(), "[1-9][0-9]{0,59}|0", proptest::option::of("[0-9]{1,40}")).prop_map(
        |(negative, int, frac)| {
            let zero = int == "0" && frac.as_deref().is_none_or(|f| f.bytes().all(|b| b == b'0'));
            // Postgres has no negative zero: numeric_out prints no sign for it.
            let sign = if negative && !zero { "-" } else { "" };
            match frac {
                Some(f) => format!("{sign}{int}.{f}"),
                None => format!("{sign}{int}"),
            }
        },
    );
    prop_oneof![
        8 => finite,
        1 => prop_oneof![Just("NaN".to_string()), Just("Infinity".to_string()), Just("-Infinity".to_string())],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes_of(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        from_text(text, &mut out).unwrap_or_else(|e| panic!("{text}: {e}"));
        out
    }

    fn enc(ndigits: &[u16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(ndigits.len() as u16).to_be_bytes());
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

    /// numeric_send writes ndigits with pq_sendint16 and numeric_recv reads
    /// it back as uint16: a value of 131072 integer digits and 16383
    /// fraction digits has 32768 + 4096 base-10000 digits, sent as 0x9000
    /// (seen from Postgres 18: `COPY (SELECT ('1' || repeat('0', 131071) ||
    /// '.' || repeat('0', 16382) || '1')::numeric) TO STDOUT (FORMAT binary)`).
    #[test]
    fn more_than_32767_base_10000_digits_decode() {
        let mut digits = vec![0u16; 36864];
        digits[0] = 1000; // 10^131071
        digits[36863] = 10; // 10^-16383
        let text = to_text(&enc(&digits, 32767, POS, 16383)).unwrap();
        assert_eq!(text.len(), 131072 + 1 + 16383);
        assert!(text.starts_with("10000") && text.ends_with("0001"), "{}", &text[text.len() - 8..]);
    }

    #[test]
    fn decimal_scaling_is_exact() {
        assert_eq!(to_i128(&enc(&[1, 2345, 6780], 1, POS, 3), 3).unwrap(), 12_345_678);
        assert_eq!(to_i128(&enc(&[12], -1, NEG, 4), 4).unwrap(), -12);
        assert_eq!(to_i128(&enc(&[100], 1, POS, 0), 2).unwrap(), 100_000_000);
        assert!(to_i128(&enc(&[12], -1, NEG, 4), 2).is_err());
        assert!(to_i128(&enc(&[], 0, NAN, 0), 2).is_err());
    }

    /// Bytes Postgres 18 sent for these values (`COPY (SELECT v::numeric)
    /// TO STDOUT (FORMAT binary)`, read with xxd), by hand.
    #[test]
    fn text_encodes_as_numeric_send_does() {
        assert_eq!(bytes_of("12345.678"), enc(&[1, 2345, 6780], 1, POS, 3));
        assert_eq!(bytes_of("-0.0012"), enc(&[12], -1, NEG, 4));
        assert_eq!(bytes_of("1000000"), enc(&[100], 1, POS, 0));
        assert_eq!(bytes_of("0.00"), enc(&[], 0, POS, 2));
        assert_eq!(bytes_of("0"), enc(&[], 0, POS, 0));
        assert_eq!(bytes_of("-0.00"), enc(&[], 0, POS, 2), "no negative zero");
        assert_eq!(bytes_of("0010.5000"), enc(&[10, 5000], 0, POS, 4));
        assert_eq!(bytes_of("NaN"), enc(&[], 0, NAN, 0));
        assert_eq!(bytes_of("Infinity"), enc(&[], 0, PINF, 0));
        assert_eq!(bytes_of("-Infinity"), enc(&[], 0, NINF, 0));
    }

    #[test]
    fn malformed_text_is_refused() {
        for bad in ["", "-", "1.", ".5", "+1", "1e5", "1,5", " 1", "nan", "inf", "--1", "1.2.3", "١"] {
            let mut out = Vec::new();
            assert!(from_text(bad, &mut out).is_err(), "{bad:?} was accepted");
        }
        let mut out = Vec::new();
        let long_fraction = format!("0.{}", "1".repeat(DSCALE_MAX + 1));
        assert!(from_text(&long_fraction, &mut out).unwrap_err().contains("at most 16383"));
        let long_integer = format!("1{}", "0".repeat(131072));
        assert!(from_text(&long_integer, &mut out).unwrap_err().contains("at most 131072"));
    }

    #[test]
    fn the_widest_numeric_round_trips() {
        // 131072 integer digits and 16383 fraction digits: 36864 base-10000 digits.
        let text = format!("1{}.{}1", "0".repeat(131071), "0".repeat(16382));
        let bytes = bytes_of(&text);
        assert_eq!(&bytes[..8], &[0x90, 0x00, 0x7f, 0xff, 0, 0, 0x3f, 0xff]);
        assert_eq!(to_text(&bytes).unwrap(), text);
    }

    #[test]
    fn decimals_encode_like_their_text() {
        let mut out = Vec::new();
        from_i128(12_345_678, 3, &mut out).unwrap();
        assert_eq!(out, bytes_of("12345.678"));
        out.clear();
        from_i128(-5, -2, &mut out).unwrap();
        assert_eq!(out, bytes_of("-500"));
        out.clear();
        from_i128(i128::MIN, 38, &mut out).unwrap();
        assert_eq!(to_text(&out).unwrap(), "-1.70141183460469231731687303715884105728");
    }

    proptest! {
        #[test]
        fn from_text_inverts_to_text(text in text_strategy()) {
            let bytes = bytes_of(&text);
            prop_assert_eq!(to_text(&bytes).unwrap(), text);
        }

        #[test]
        fn decimal_path_agrees_with_text(value in any::<i128>(), scale in -10i8..=38) {
            let mut out = Vec::new();
            from_i128(value, scale, &mut out).unwrap();
            let digits = value.unsigned_abs().to_string();
            let sign = if value < 0 { "-" } else { "" };
            let text = if scale <= 0 {
                format!("{sign}{digits}{}", "0".repeat(-scale as usize))
            } else {
                let padded = format!("{digits:0>width$}", width = scale as usize + 1);
                let (int, frac) = padded.split_at(padded.len() - scale as usize);
                format!("{sign}{int}.{frac}")
            };
            prop_assert_eq!(&out, &bytes_of(&text));
            // Decimal128 values are within ±(10^38 - 1).
            if scale >= 0 && value.unsigned_abs() < 10u128.pow(38) {
                prop_assert_eq!(to_i128(&out, scale).unwrap(), value);
            }
        }
    }
}
