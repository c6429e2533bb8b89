//! Text encodings: Postgres COPY text format, array literals, pgvector
//! literals, timestamps and JSON in the exact form `jsonb` prints it.
//!
//! Array literals and JSON are produced in the canonical form Postgres
//! itself outputs (`array_out`, `jsonb_out`), so `tags::text` and
//! `metadata::text` read back from the database equal the generated strings
//! byte for byte.

use std::fmt::Write as _;

/// Append `s` to a COPY text-format field: backslash, newline, carriage
/// return and tab (the default delimiter) are backslash-escaped, and so are
/// backspace, form feed and vertical tab, exactly as `COPY ... TO` escapes
/// them; every other character (other controls, U+2028/U+2029, ...) is sent
/// as is. NULL is written separately as `\N`.
pub fn push_copy_text(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0b => b"\\v",
            0x0c => b"\\f",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// COPY text form of a whole string (convenience for tests and callers).
pub fn copy_text(s: &str) -> String {
    let mut v = Vec::with_capacity(s.len() + 8);
    push_copy_text(&mut v, s);
    // Only ASCII bytes were inserted between whole UTF-8 sequences.
    String::from_utf8(v).unwrap_or_default()
}

/// Postgres `text[]` literal exactly as `array_out` prints it: elements are
/// double-quoted when empty, equal to `NULL` (any case), or containing `"`,
/// `\`, `{`, `}`, `,` or whitespace; inside quotes `"` and `\` are escaped.
pub fn array_literal(elems: &[String]) -> String {
    let mut out = String::from("{");
    for (i, e) in elems.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let needs_quotes = e.is_empty()
            || e.eq_ignore_ascii_case("NULL")
            || e.bytes().any(|b| {
                matches!(b, b'"' | b'\\' | b'{' | b'}' | b',' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
            });
        if needs_quotes {
            out.push('"');
            for c in e.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(e);
        }
    }
    out.push('}');
    out
}

/// pgvector text literal `[f1,f2,...]`; each value uses Rust's `Display`
/// for `f32`, the shortest string that parses back to the same `f32`.
pub fn push_vector(out: &mut String, v: &[f32]) {
    out.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{x}");
    }
    out.push(']');
}

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

/// 2024-01-01T00:00:00Z, the base of all generated timestamps.
pub const BASE_MICROS: Micros = 1_704_067_200_000_000;

/// `YYYY-MM-DD HH:MM:SS.ffffff+00`, the COPY input form of a UTC
/// `timestamptz` with microsecond precision (years 1..=9999).
pub fn push_timestamp(out: &mut String, t: Micros) {
    let secs = t.div_euclid(1_000_000);
    let micros = t.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}+00",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
}

/// Proleptic Gregorian date of a day number (0 = 1970-01-01), after
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A JSON value for metadata. Numbers are kept as their literal text so
/// that values like `12345678901234567` never pass through `f64`.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// Literal number text, already in `numeric` output form.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }
    pub fn int(n: i64) -> Json {
        Json::Num(n.to_string())
    }
    pub fn obj<const N: usize>(fields: [(&str, Json); N]) -> Json {
        Json::Obj(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// The text `jsonb_out` prints for this value: object keys sorted by
    /// byte length, then bytewise (jsonb's storage order); `", "` between
    /// elements and `": "` after keys. Later duplicate keys win, as in jsonb.
    pub fn to_jsonb_text(&self) -> String {
        let mut out = String::new();
        self.write_jsonb(&mut out);
        out
    }

    fn write_jsonb(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(n),
            Json::Str(s) => push_json_string(out, s),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_jsonb(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                let mut sorted: Vec<&(String, Json)> = Vec::with_capacity(fields.len());
                for f in fields {
                    // Later duplicates replace earlier ones, like jsonb.
                    sorted.retain(|g| g.0 != f.0);
                    sorted.push(f);
                }
                sorted.sort_by(|a, b| (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes())));
                out.push('{');
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    push_json_string(out, k);
                    out.push_str(": ");
                    v.write_jsonb(out);
                }
                out.push('}');
            }
        }
    }
}

/// JSON string escaping exactly as Postgres' `escape_json`.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
