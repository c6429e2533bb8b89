//! Integers as D1 hands them out: D1 answers through JavaScript, whose
//! numbers are IEEE doubles, so an INTEGER beyond 2^53 in a query result or
//! in an export comes back as the nearest double, printed the way
//! JavaScript prints it (`Number.prototype.toString`: the shortest digits
//! that read back to the same double, padded with zeros up to the decimal
//! point, so 2^63 prints as `9223372036854776000`).
//!
//! Sources: cloudflare-docs `src/content/docs/d1/worker-api/index.mdx`
//! ("Type conversion", note 2: "D1 supports 64-bit signed INTEGER values
//! internally, however BigInts are not currently supported in the API
//! yet. JavaScript integers are safe up to Number.MAX_SAFE_INTEGER") and
//! `src/content/docs/d1/best-practices/import-export-data.mdx` ("Known
//! limitations": "Any numeric value in a column is affected by
//! JavaScript's 52-bit precision for numbers ... the returned value may be
//! less precise than your original number"); ECMA-262 Number::toString.

use serde_json::{Number, Value};

/// The text JavaScript prints for the integer `i` once it is a number
/// (a double). Every i64 is below 1e21 in magnitude, so the text never
/// has an exponent.
pub fn js_integer_text(i: i64) -> String {
    let f = i as f64;
    // `{:e}` is Rust's shortest round-trip form: `d.ddddde<exp>`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: usize = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if digits == "0" {
        return "0".into();
    }
    let mut out = String::with_capacity(exp + 2);
    if f < 0.0 {
        out.push('-');
    }
    // An integral double has at most exp + 1 significant digits.
    out.push_str(&digits);
    for _ in digits.len()..exp + 1 {
        out.push('0');
    }
    out
}

/// The JSON number D1 answers for the integer `i`: exact within 2^53,
/// the nearest double beyond. A text outside i64 (2^63, or -2^63 printed
/// as `-9223372036854776000`) becomes a u64 or a float, the value a JSON
/// reader of D1's answer gets.
pub fn js_integer(i: i64) -> Value {
    const SAFE: i64 = 1 << 53;
    if (-SAFE..=SAFE).contains(&i) {
        return Value::from(i);
    }
    let text = js_integer_text(i);
    match serde_json::from_str::<Number>(&text) {
        Ok(n) => Value::Number(n),
        Err(_) => Number::from_f64(i as f64).map(Value::Number).unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn integers_beyond_2_53_read_as_javascript_prints_them() {
        // Values checked in node: `String(Number(9007199254740993n))` etc.
        assert_eq!(js_integer_text(9_007_199_254_740_993), "9007199254740992");
        assert_eq!(js_integer_text(9_007_199_254_740_995), "9007199254740996");
        assert_eq!(js_integer_text(i64::MAX), "9223372036854776000");
        assert_eq!(js_integer_text(i64::MIN), "-9223372036854776000");
        assert_eq!(js_integer_text(1_234_567_890_123_456_789), "1234567890123456800");
        assert_eq!(js_integer_text(0), "0");
        assert_eq!(js_integer_text(-42), "-42");
        assert_eq!(js_integer(9_007_199_254_740_991), Value::from(9_007_199_254_740_991i64));
        assert_eq!(js_integer(9_007_199_254_740_993), Value::from(9_007_199_254_740_992i64));
        assert_eq!(js_integer(i64::MAX).as_i64(), None, "2^63 is past i64");
        assert_eq!(js_integer(i64::MAX).as_u64(), Some(9_223_372_036_854_776_000));
        assert_eq!(js_integer(i64::MIN).as_f64(), Some(-9.223372036854776e18));
    }

    proptest! {
        /// The text reads back to the double nearest `i`, and is `i` itself
        /// whenever `i` is a safe integer.
        #[test]
        fn the_text_is_the_nearest_double(i in any::<i64>()) {
            let text = js_integer_text(i);
            let back: f64 = text.parse().expect("a number");
            prop_assert_eq!(back, i as f64);
            if i.unsigned_abs() <= 1 << 53 {
                prop_assert_eq!(text, i.to_string());
            }
        }
    }
}
