//! The `[[tables]]` keys that shape JSON metadata for Vectorize, checked
//! in two steps like the rest of pgflare.toml: [`parse`] without the
//! database (names, paths, types, separator; errors point at the key),
//! [`check_columns`] against the catalog (each path's column exists and
//! is json or jsonb). The keys:
//!
//! ```toml
//! vector_metadata_paths = { source = "metadata.source", page = { path = "metadata.loc.pageNumber", type = "number" } }
//! vector_metadata_flatten = ["metadata"]          # spread: loc.lines.from -> loc_lines_from
//! vector_metadata_omit = ["metadata._node_content"]
//! vector_metadata_separator = "_"
//! ```

use std::collections::BTreeMap;

use crate::config::json_path::JsonPath;
use crate::error::{Error, Result};
use serde::Serialize;

use crate::source::TableInfo;
use crate::typemap::{Kind, MetadataForm};

/// The separator spread keys are joined with, unless configured.
pub const DEFAULT_SEPARATOR: &str = "_";

/// How json/jsonb columns feed metadata beyond whole columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JsonMetadata {
    /// `vector_metadata_paths`, by property name.
    pub paths: Vec<PathProperty>,
    /// `vector_metadata_flatten`: columns whose object is spread.
    pub flatten: Vec<String>,
    /// `vector_metadata_omit`: paths left out (and what is below them).
    pub omit: Vec<JsonPath>,
    /// `vector_metadata_separator`.
    pub separator: String,
}

impl Default for JsonMetadata {
    fn default() -> Self {
        JsonMetadata {
            paths: Vec::new(),
            flatten: Vec::new(),
            omit: Vec::new(),
            separator: DEFAULT_SEPARATOR.into(),
        }
    }
}

impl JsonMetadata {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.flatten.is_empty() && self.omit.is_empty()
    }

    /// The json columns read for paths and spreading.
    pub fn columns(&self) -> Vec<&String> {
        let mut out: Vec<&String> = self.paths.iter().map(|p| &p.path.column).chain(&self.flatten).collect();
        out.sort();
        out.dedup();
        out
    }
}

/// One JSON path sent as a top-level property.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathProperty {
    pub name: String,
    pub path: JsonPath,
    /// A declared type (string, number, boolean): values of another JSON
    /// type are left out, and the property can have a metadata index.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<MetadataForm>,
}

/// `vector_metadata_flags`: one boolean property per listed value of a
/// text array column (`tags_billing: true` when the row's `tags` holds
/// `"billing"`). Vectorize cannot filter arrays (no containment operator,
/// cloudflare-docs `vectorize/reference/metadata-filtering.mdx`), but it
/// filters booleans; and since its filters are ANDed with no `$or`, a
/// tags-overlap query becomes one query per asked value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlagColumn {
    pub column: String,
    pub values: Vec<String>,
    /// Joins the column and the value (`vector_metadata_separator`).
    pub separator: String,
}

impl FlagColumn {
    /// The metadata property that flags `value`.
    pub fn property(&self, value: &str) -> String {
        format!("{}{}{}", self.column, self.separator, value)
    }

    /// Every flag property, in the order of the values.
    pub fn properties(&self) -> impl Iterator<Item = String> + '_ {
        self.values.iter().map(|v| self.property(v))
    }
}

/// Checks `vector_metadata_flags` of the `[[tables]]` entry at `at`:
/// valid, distinct property names that no other metadata key takes.
pub fn parse_flags(
    at: &str,
    has_vector: bool,
    whole: &[String],
    json: &JsonMetadata,
    raw: BTreeMap<String, Vec<String>>,
) -> Result<Vec<FlagColumn>> {
    let bad = |k: String, m: String| Error::Config { setting: format!("{at}.{k}"), message: m };
    if !has_vector && !raw.is_empty() {
        return Err(bad(
            "vector_metadata_flags".into(),
            "needs `vector`: metadata is attached to each vector".into(),
        ));
    }
    let mut out: Vec<FlagColumn> = Vec::new();
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for (column, values) in raw {
        let k = format!("vector_metadata_flags.{}", crate::config::toml_text::toml_key(&column));
        if values.is_empty() {
            return Err(bad(k, "list the values that get a flag, e.g. [\"billing\", \"security\"]".into()));
        }
        let flags =
            FlagColumn { column: column.clone(), values: Vec::new(), separator: json.separator.clone() };
        let mut seen = Vec::new();
        for (j, v) in values.iter().enumerate() {
            let kj = format!("{k}[{j}]");
            if seen.contains(v) {
                return Err(bad(kj, format!("`{v}` is listed twice")));
            }
            let name = flags.property(v);
            if let Err(e) = crate::cloudflare::limits::check_metadata_key(&name) {
                return Err(bad(kj, format!("`{v}` would make the property `{name}`, and {e}")));
            }
            let clash = whole.contains(&name) || json.paths.iter().any(|p| p.name == name);
            if clash {
                return Err(bad(
                    kj,
                    format!("the flag property `{name}` is also a metadata key of this table"),
                ));
            }
            if let Some(other) = taken.insert(name.clone(), kj.clone()) {
                return Err(bad(kj, format!("the flag property `{name}` is also made by {other}")));
            }
            seen.push(v.clone());
        }
        out.push(FlagColumn { values: seen, ..flags });
    }
    Ok(out)
}

/// The raw keys, as the TOML file has them.
#[derive(Default)]
pub struct RawJsonKeys {
    pub paths: BTreeMap<String, toml::Value>,
    pub flatten: Vec<String>,
    pub omit: Vec<String>,
    pub separator: Option<String>,
}

impl RawJsonKeys {
    fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.flatten.is_empty() && self.omit.is_empty() && self.separator.is_none()
    }
}

/// Checks the keys of the `[[tables]]` entry at `at` (`whole` are its
/// `vector_metadata` columns).
pub fn parse(at: &str, has_vector: bool, whole: &[String], raw: RawJsonKeys) -> Result<JsonMetadata> {
    let bad = |k: &str, m: String| Error::Config { setting: format!("{at}.{k}"), message: m };
    if !has_vector && !raw.is_empty() {
        let k = if !raw.paths.is_empty() {
            "vector_metadata_paths"
        } else if !raw.flatten.is_empty() {
            "vector_metadata_flatten"
        } else if !raw.omit.is_empty() {
            "vector_metadata_omit"
        } else {
            "vector_metadata_separator"
        };
        return Err(bad(k, "needs `vector`: metadata is attached to each vector".into()));
    }
    let separator = raw.separator.unwrap_or_else(|| DEFAULT_SEPARATOR.to_string());
    if separator.is_empty() || separator.contains('.') || separator.contains('"') {
        return Err(bad(
            "vector_metadata_separator",
            format!("`{separator}` cannot join metadata keys: use a non-empty text without `.` or `\"`, e.g. \"_\""),
        ));
    }
    let mut paths = Vec::new();
    for (name, v) in raw.paths {
        let k = format!("vector_metadata_paths.{}", crate::config::toml_text::toml_key(&name));
        if let Err(e) = crate::cloudflare::limits::check_metadata_key(&name) {
            return Err(bad(&k, format!("`{name}` cannot be a metadata property: {e}")));
        }
        if whole.contains(&name) {
            return Err(bad(
                &k,
                format!("`{name}` is also in vector_metadata, whose keys are the column names"),
            ));
        }
        let (text, ty) = match &v {
            toml::Value::String(s) => (s.clone(), None),
            toml::Value::Table(t) => path_table(t).map_err(|m| bad(&k, m))?,
            _ => return Err(bad(&k, "give a JSON path, e.g. \"metadata.loc.pageNumber\", or { path = \"...\", type = \"number\" }".into())),
        };
        let path = JsonPath::parse(&text).map_err(|m| bad(&k, m))?;
        paths.push(PathProperty { name, path, ty });
    }
    let mut flatten: Vec<String> = Vec::new();
    for (j, c) in raw.flatten.iter().enumerate() {
        let k = format!("vector_metadata_flatten[{j}]");
        if c.trim().is_empty() {
            return Err(bad(&k, "must not be empty".into()));
        }
        if flatten.contains(c) {
            return Err(bad(&k, format!("`{c}` is listed twice")));
        }
        if whole.contains(c) {
            return Err(bad(
                &k,
                format!("`{c}` is also in vector_metadata: send the column whole (one nested object) or spread it, not both"),
            ));
        }
        flatten.push(c.clone());
    }
    let mut omit = Vec::new();
    for (j, text) in raw.omit.iter().enumerate() {
        let k = format!("vector_metadata_omit[{j}]");
        let p = JsonPath::parse(text).map_err(|m| bad(&k, m))?;
        if p.keys.is_empty() {
            return Err(bad(&k, format!("`{text}` is a whole column: to leave it out, do not list it")));
        }
        let used = whole.contains(&p.column)
            || flatten.contains(&p.column)
            || paths.iter().any(|q: &PathProperty| q.path.column == p.column);
        if !used {
            return Err(bad(
                &k,
                format!("`{}` is not sent as metadata (vector_metadata, vector_metadata_flatten or a path), so there is nothing to leave out", p.column),
            ));
        }
        omit.push(p);
    }
    Ok(JsonMetadata { paths, flatten, omit, separator })
}

/// `{ path = "...", type = "number" }`.
fn path_table(t: &toml::Table) -> std::result::Result<(String, Option<MetadataForm>), String> {
    if let Some(k) = t.keys().find(|k| *k != "path" && *k != "type") {
        return Err(format!("unknown key `{k}`: give `path` and, to index the property, `type`"));
    }
    let path = t
        .get("path")
        .and_then(toml::Value::as_str)
        .ok_or("needs `path`, e.g. path = \"metadata.loc.pageNumber\"")?;
    let ty = match t.get("type") {
        None => None,
        Some(v) => Some(v.as_str().and_then(MetadataForm::of_index_type).ok_or_else(|| {
            format!("type {v} is not a metadata index type: use \"string\", \"number\" or \"boolean\"")
        })?),
    };
    Ok((path.to_string(), ty))
}

/// The type a metadata index on `property` gets, from its column (whole
/// columns) or its declared type (paths); `Err` says what is missing.
pub fn index_type(
    property: &str,
    whole: &[String],
    json: &JsonMetadata,
    flags: &[FlagColumn],
) -> std::result::Result<Option<String>, String> {
    if whole.iter().any(|c| c == property) {
        return Ok(None);
    }
    if flags.iter().any(|f| f.properties().any(|p| p == property)) {
        return Ok(Some("boolean".into()));
    }
    match json.paths.iter().find(|p| p.name == property) {
        Some(PathProperty { ty: Some(t), .. }) => Ok(t.index_type().map(str::to_string)),
        Some(p) => Err(format!(
            "`{property}` comes from a JSON path without a type; a metadata index needs one: \
             {property} = {{ path = \"{}\", type = \"string\" }} (or number, boolean)",
            p.path
        )),
        None => Err(format!(
            "`{property}` is not in vector_metadata or vector_metadata_paths: only metadata properties \
             pgflare names can be indexed (spread keys depend on the data: map the key with a path)"
        )),
    }
}

/// Checks the columns the JSON keys name against the table.
pub fn check_columns(setting: &str, json: &JsonMetadata, info: &TableInfo) -> Result<()> {
    let spec = &info.spec;
    let check = |k: String, c: &str| -> Result<()> {
        let col = spec.column(c).ok_or_else(|| Error::Config {
            setting: k.clone(),
            message: format!(
                "{} has no column `{c}`; columns are: {}",
                spec.qualified(),
                spec.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })?;
        if !matches!(col.ty.kind, Kind::Json | Kind::Jsonb) || col.ty.array {
            return Err(Error::Config {
                setting: k,
                message: format!(
                    "`{c}` is {}: JSON paths and spreading need a json or jsonb column",
                    col.pg_type
                ),
            });
        }
        Ok(())
    };
    for p in &json.paths {
        check(
            format!("{setting}.vector_metadata_paths.{}", crate::config::toml_text::toml_key(&p.name)),
            &p.path.column,
        )?;
    }
    for (j, c) in json.flatten.iter().enumerate() {
        check(format!("{setting}.vector_metadata_flatten[{j}]"), c)?;
    }
    for (j, p) in json.omit.iter().enumerate() {
        check(format!("{setting}.vector_metadata_omit[{j}]"), &p.column)?;
    }
    Ok(())
}

/// Checks that each flagged column is a text array of the table.
pub fn check_flag_columns(setting: &str, flags: &[FlagColumn], info: &TableInfo) -> Result<()> {
    let spec = &info.spec;
    for f in flags {
        let setting =
            format!("{setting}.vector_metadata_flags.{}", crate::config::toml_text::toml_key(&f.column));
        let col = spec.column(&f.column).ok_or_else(|| Error::Config {
            setting: setting.clone(),
            message: format!(
                "{} has no column `{}`; columns are: {}",
                spec.qualified(),
                f.column,
                spec.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })?;
        if col.ty.metadata_form() != Some(MetadataForm::StringArray) {
            return Err(Error::Config {
                setting,
                message: format!(
                    "`{}` is {}: flags are made from a text array column (text[], varchar[], an enum array)",
                    f.column, col.pg_type
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::file::parse_project;
    use crate::typemap::MetadataForm;

    fn table(keys: &str) -> String {
        format!("[[tables]]\nname = \"documents\"\nvector = \"embedding\"\n{keys}\n")
    }

    fn error(keys: &str) -> String {
        match parse_project(&table(keys), Path::new("pgflare.toml")) {
            Ok(_) => panic!("accepted: {keys}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn json_metadata_keys_parse() {
        let p = parse_project(
            &table(
                "vector_metadata = [\"document_id\"]\n\
                 vector_metadata_paths = { source = \"metadata.source\", page = { path = \"metadata.loc.pageNumber\", type = \"number\" } }\n\
                 vector_metadata_flatten = [\"extra\"]\n\
                 vector_metadata_omit = [\"extra._node_content\", 'metadata.\"a.b\"']\n\
                 vector_metadata_separator = \"__\"\n\
                 vector_metadata_indexes = [\"page\", \"document_id\"]",
            ),
            Path::new("pgflare.toml"),
        )
        .expect("parses");
        let j = &p.tables[0].vector_json;
        let names: Vec<(&str, String, Option<MetadataForm>)> =
            j.paths.iter().map(|p| (p.name.as_str(), p.path.to_string(), p.ty)).collect();
        assert_eq!(
            names,
            [
                ("page", "metadata.loc.pageNumber".to_string(), Some(MetadataForm::Number)),
                ("source", "metadata.source".to_string(), None)
            ]
        );
        assert_eq!(j.flatten, ["extra"]);
        assert_eq!(j.omit[1].keys, ["a.b"]);
        assert_eq!(j.separator, "__");
    }

    #[test]
    fn json_metadata_errors_point_at_the_key() {
        let cases = [
            (
                "vector_metadata_paths = { \"a.b\" = \"metadata.x\" }",
                "pgflare.toml: tables[0].vector_metadata_paths.\"a.b\": `a.b` cannot be a metadata property",
            ),
            ("vector_metadata_paths = { p = \"metadata..x\" }", "tables[0].vector_metadata_paths.p: `metadata..x`: an empty key"),
            ("vector_metadata_paths = { p = { path = \"m.x\", type = \"date\" } }", "type \"date\" is not a metadata index type"),
            ("vector_metadata_paths = { p = { path = \"m.x\", kind = \"number\" } }", "unknown key `kind`"),
            ("vector_metadata_paths = { p = 3 }", "give a JSON path"),
            (
                "vector_metadata = [\"m\"]\nvector_metadata_paths = { m = \"m.x\" }",
                "vector_metadata_paths.m: `m` is also in vector_metadata",
            ),
            ("vector_metadata = [\"m\"]\nvector_metadata_flatten = [\"m\"]", "vector_metadata_flatten[0]: `m` is also in vector_metadata"),
            ("vector_metadata_flatten = [\"m\", \"m\"]", "vector_metadata_flatten[1]: `m` is listed twice"),
            ("vector_metadata_flatten = [\"m\"]\nvector_metadata_omit = [\"m\"]", "vector_metadata_omit[0]: `m` is a whole column"),
            ("vector_metadata_omit = [\"other.x\"]", "vector_metadata_omit[0]: `other` is not sent as metadata"),
            ("vector_metadata_flatten = [\"m\"]\nvector_metadata_separator = \".\"", "vector_metadata_separator: `.` cannot join"),
            (
                "vector_metadata_paths = { page = \"m.page\" }\nvector_metadata_indexes = [\"page\"]",
                "vector_metadata_indexes[0]: `page` comes from a JSON path without a type; a metadata index needs one: \
                 page = { path = \"m.page\", type = \"string\" }",
            ),
            ("vector_metadata_flatten = [\"m\"]\nvector_metadata_indexes = [\"tenant\"]", "`tenant` is not in vector_metadata or vector_metadata_paths"),
        ];
        for (keys, want) in cases {
            let e = error(keys);
            assert!(e.contains(want), "{keys}\n  gave: {e}\n  want: {want}");
        }
        let e = match parse_project(
            "[[tables]]\nname = \"t\"\nvector_metadata_flatten = [\"m\"]\n",
            Path::new("pgflare.toml"),
        ) {
            Ok(_) => panic!("accepted without vector"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("tables[0].vector_metadata_flatten: needs `vector`"), "{e}");
    }
}
