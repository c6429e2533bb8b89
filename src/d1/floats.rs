//! The hot path of reading D1 back: a vector stored as a JSON array of
//! float32 numbers (~15 KB of text per 1536-dim row) scanned in one pass
//! into the Arrow builder, each element exactly what `str::parse::<f32>`
//! gives. Hand-written because it is most of verify's time against a D1
//! file: the generic JSON path built a value per element.

use arrow::array::{ArrayBuilder, FixedSizeListBuilder, Float32Builder, ListBuilder};

/// Reused per reader: one vector's elements before they go to the builder
/// (a row is checked whole before anything is appended).
#[derive(Default)]
pub(super) struct FloatScratch {
    values: Vec<f32>,
    /// Positions of `null` elements (rare: non-finite floats as written).
    nulls: Vec<usize>,
}

/// The hot path for vectors: a JSON array of float32 numbers as pgflare
/// writes it (no spaces, shortest round-trip digits), scanned in one pass
/// without building JSON values (~15 KB per row). Each element is exactly
/// what `str::parse::<f32>` gives ([`scan_f32`]). `None` (nothing
/// appended) when the text is not that simple form; the general JSON path
/// then decides.
pub(super) fn append_floats(b: &mut dyn ArrayBuilder, t: &str, scratch: &mut FloatScratch) -> Option<()> {
    let inner = t.trim().strip_prefix('[')?.strip_suffix(']')?;
    scratch.values.clear();
    scratch.nulls.clear();
    if !inner.trim().is_empty() {
        let mut pos = 0;
        loop {
            let (v, end) = scan_f32(inner, pos)?;
            match v {
                Some(f) => scratch.values.push(f),
                None => {
                    scratch.nulls.push(scratch.values.len());
                    scratch.values.push(0.0);
                }
            }
            if end >= inner.len() {
                break;
            }
            pos = end + 1;
        }
    }
    let push = |fb: &mut Float32Builder, s: &FloatScratch| {
        if s.nulls.is_empty() {
            fb.append_slice(&s.values);
        } else {
            let mut next = s.nulls.iter().peekable();
            for (i, v) in s.values.iter().enumerate() {
                if next.next_if(|&&n| n == i).is_some() {
                    fb.append_null();
                } else {
                    fb.append_value(*v);
                }
            }
        }
    };
    if let Some(l) = b.as_any_mut().downcast_mut::<FixedSizeListBuilder<Box<dyn ArrayBuilder>>>() {
        if scratch.values.len() as i32 != l.value_length() {
            return None;
        }
        push(l.values().as_any_mut().downcast_mut::<Float32Builder>()?, scratch);
        l.append(true);
        return Some(());
    }
    let l = b.as_any_mut().downcast_mut::<ListBuilder<Box<dyn ArrayBuilder>>>()?;
    push(l.values().as_any_mut().downcast_mut::<Float32Builder>()?, scratch);
    l.append(true);
    Some(())
}

/// Powers of ten that f64 holds exactly (10^22 < 2^53 · 2^22).
const EXACT_POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22,
];

/// The value of the eight ASCII digits at `bytes[i..i + 8]`, if they are
/// all digits (the SWAR test and conversion of fast_float).
#[inline]
fn eight_digits(bytes: &[u8], i: usize) -> Option<u64> {
    let chunk: [u8; 8] = bytes.get(i..i + 8)?.try_into().ok()?;
    let v = u64::from_le_bytes(chunk);
    if (v.wrapping_add(0x4646_4646_4646_4646) | v.wrapping_sub(0x3030_3030_3030_3030)) & 0x8080_8080_8080_8080
        != 0
    {
        return None;
    }
    let v = v - 0x3030_3030_3030_3030;
    let v = v * 10 + (v >> 8);
    let (mask, mul1, mul2) =
        (0x0000_00FF_0000_00FF_u64, 0x000F_4240_0000_0064_u64, 0x0000_2710_0000_0001_u64);
    let v1 = (v & mask).wrapping_mul(mul1);
    let v2 = ((v >> 16) & mask).wrapping_mul(mul2);
    Some(((v1.wrapping_add(v2) >> 32) as u32) as u64)
}

/// One element of a float array starting at byte `pos` of `s`, up to the
/// next `,` or the end: `Some(None)` for `null`, with the position of the
/// `,` (or `s.len()`). `None` when the element is not a number std parses.
///
/// The value is bit for bit `str::parse::<f32>`: elements of the form
/// `-?digits[.digits][e±digits]` whose digits fit 2^53 and whose decimal
/// exponent is within ±22 are computed as one f64 multiplication or
/// division of two exact f64 values (Clinger's fast path, correctly
/// rounded), then rounded to f32. Rounding twice is only wrong when the f64
/// lands exactly on the midpoint between two f32 values (every f32 midpoint
/// is an f64, and rounding is monotonic, so the f64 never crosses one);
/// that case, like every other form, goes to `str::parse`.
pub(super) fn scan_f32(s: &str, pos: usize) -> Option<(Option<f32>, usize)> {
    let bytes = s.as_bytes();
    let n = bytes.len();
    let mut i = pos;
    let neg = bytes.get(i) == Some(&b'-');
    i += neg as usize;
    let (mut m, mut big, mut digits, mut exp) = (0u64, false, 0usize, 0i64);
    while i < n && bytes[i].is_ascii_digit() {
        big |= m >= (1 << 53) / 10;
        m = m.wrapping_mul(10).wrapping_add((bytes[i] - b'0') as u64);
        (i, digits) = (i + 1, digits + 1);
    }
    if i < n && bytes[i] == b'.' {
        i += 1;
        // Eight digits at a time while they fit: most of a vector's bytes.
        while m < (1 << 53) / 100_000_000 - 1 {
            let Some(eight) = eight_digits(bytes, i) else { break };
            m = m * 100_000_000 + eight;
            (i, digits, exp) = (i + 8, digits + 8, exp - 8);
        }
        while i < n && bytes[i].is_ascii_digit() {
            big |= m >= (1 << 53) / 10;
            m = m.wrapping_mul(10).wrapping_add((bytes[i] - b'0') as u64);
            (i, digits, exp) = (i + 1, digits + 1, exp - 1);
        }
    }
    if i < n && (bytes[i] | 0x20) == b'e' && digits > 0 {
        i += 1;
        let eneg = bytes.get(i) == Some(&b'-');
        i += (eneg || bytes.get(i) == Some(&b'+')) as usize;
        let (mut e, start) = (0i64, i);
        while i < n && bytes[i].is_ascii_digit() {
            e = (e * 10 + (bytes[i] - b'0') as i64).min(1 << 20);
            i += 1;
        }
        if i == start {
            digits = 0; // `1e` is not a number: let std say so
        }
        exp += if eneg { -e } else { e };
    }
    if digits > 0 && !big && (i == n || bytes[i] == b',') && (-22..=22).contains(&exp) {
        if m == 0 {
            return Some((Some(if neg { -0.0 } else { 0.0 }), i));
        }
        // `m < 2^53` converts exactly (as i64: one instruction on x86-64).
        let x = m as i64 as f64;
        let d = if exp >= 0 { x * EXACT_POW10[exp as usize] } else { x / EXACT_POW10[(-exp) as usize] };
        // d >= 1e-22 and < 2^53 · 1e22: always a normal f32 magnitude, where
        // an f32 midpoint has exactly bit 28 set below f32 precision.
        if d.to_bits() & ((1 << 29) - 1) != 1 << 28 {
            let f = d as f32;
            return Some((Some(if neg { -f } else { f }), i));
        }
    }
    // Every other form: find the end and ask std.
    let end = bytes[i.min(n)..].iter().position(|&c| c == b',').map_or(n, |p| i + p);
    let item = s.get(pos..end)?;
    if item == "null" {
        return Some((None, end));
    }
    Some((Some(item.parse::<f32>().ok()?), end))
}
