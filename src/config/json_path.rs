//! A path into a json/jsonb column, as pgflare.toml writes it and as
//! errors and reports show it: the column, then object keys, joined by
//! `.` (`metadata.loc.pageNumber`). A key that holds a `.`, a `"`, a
//! backslash, whitespace or nothing is written as a JSON string
//! (`metadata."a.b"`), so every key can be reached and every path reads
//! back to the same keys. Paths address object keys only: arrays are
//! values (Vectorize keeps arrays of strings), not containers to walk.

use std::fmt;

use serde_json::Value;

/// A column and the object keys below it (none: the column's whole value).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JsonPath {
    pub column: String,
    pub keys: Vec<String>,
}

impl JsonPath {
    /// The column's whole value.
    pub fn column(column: &str) -> JsonPath {
        JsonPath { column: column.to_string(), keys: Vec::new() }
    }

    /// Parses `column.key.key`; segments may be JSON strings (`"a.b"`).
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let mut segments = Vec::new();
        let mut rest = text;
        loop {
            let (segment, after) = if rest.starts_with('"') {
                let end = closing_quote(rest)
                    .ok_or_else(|| format!("`{text}`: a quoted key is not closed with `\"`"))?;
                let key: String = serde_json::from_str(&rest[..=end])
                    .map_err(|e| format!("`{text}`: the quoted key is not a JSON string ({e})"))?;
                (key, &rest[end + 1..])
            } else {
                let end = rest.find('.').unwrap_or(rest.len());
                let bare = &rest[..end];
                if bare.is_empty() {
                    return Err(format!(
                        "`{text}`: an empty key; write keys as column.key.key (quote a key that holds \
                         `.` as \"a.b\")"
                    ));
                }
                if bare.contains('"') {
                    return Err(format!("`{text}`: `\"` may only open a quoted key, e.g. metadata.\"a.b\""));
                }
                (bare.to_string(), &rest[end..])
            };
            segments.push(segment);
            match after.strip_prefix('.') {
                Some(r) => rest = r,
                None if after.is_empty() => break,
                None => return Err(format!("`{text}`: a quoted key must be followed by `.` or the end")),
            }
        }
        let column = segments.remove(0);
        Ok(JsonPath { column, keys: segments })
    }

    /// The path one key further down.
    pub fn child(&self, key: &str) -> JsonPath {
        let mut keys = self.keys.clone();
        keys.push(key.to_string());
        JsonPath { column: self.column.clone(), keys }
    }

    /// Whether `self` is `other` or lies below it.
    pub fn is_within(&self, other: &JsonPath) -> bool {
        self.column == other.column && self.keys.starts_with(&other.keys)
    }

    /// The value at this path inside the column's value `root`, if any.
    pub fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.keys.iter().try_fold(root, |v, k| v.as_object()?.get(k))
    }

    /// Depth below the column (`metadata.loc.pageNumber`: 2).
    pub fn depth(&self) -> usize {
        self.keys.len()
    }
}

/// The index of the `"` closing the JSON string that opens `s`.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// A key that reads back unquoted.
fn bare(key: &str) -> bool {
    !key.is_empty() && !key.chars().any(|c| c == '.' || c == '"' || c == '\\' || c.is_whitespace())
}

fn write_segment(f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
    if bare(key) {
        f.write_str(key)
    } else {
        f.write_str(&Value::String(key.to_string()).to_string())
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_segment(f, &self.column)?;
        for k in &self.keys {
            f.write_str(".")?;
            write_segment(f, k)?;
        }
        Ok(())
    }
}

impl serde::Serialize for JsonPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_parse_and_print() {
        let p = JsonPath::parse("metadata.loc.pageNumber").expect("path");
        assert_eq!(
            (p.column.as_str(), p.keys.clone()),
            ("metadata", vec!["loc".into(), "pageNumber".into()])
        );
        assert_eq!(p.to_string(), "metadata.loc.pageNumber");
        let q = JsonPath::parse(r#"metadata."a.b"."say \"hi\"".c"#).expect("quoted");
        assert_eq!(q.keys, ["a.b", "say \"hi\"", "c"]);
        assert_eq!(JsonPath::parse("metadata").expect("column").keys.len(), 0);
        for bad in ["", "metadata.", ".x", "metadata..x", "metadata.\"open", "metadata.\"a\"b", "a\"b"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad:?} parses");
        }
        let v = serde_json::json!({"loc": {"pageNumber": 3}});
        assert_eq!(p.get(&v), Some(&serde_json::json!(3)));
        assert!(p.child("x").is_within(&p) && !JsonPath::column("other").is_within(&JsonPath::column("o")));
    }

    proptest! {
        // Any keys print to a path that parses back to the same keys.
        #[test]
        fn any_path_reads_back(column in "\\PC{1,8}", keys in proptest::collection::vec("\\PC{0,8}", 0..4)) {
            let p = JsonPath { column, keys };
            prop_assert_eq!(JsonPath::parse(&p.to_string()).expect("reads back"), p);
        }
    }
}
