//! What `pgflare init` proposes for json/jsonb columns of a table that
//! feeds Vectorize, from the key survey of a sample
//! ([`super::survey`]): each key path holding short scalars
//! of one type (or string arrays) in enough rows becomes a top-level
//! property (`vector_metadata_paths`, typed, so it can be indexed), named
//! by its keys joined with `_`; everything else is left out, and the TOML
//! says why, with the spread-and-omit alternative written out commented.

use std::fmt::Write as _;

use super::survey::{JsonSurvey, PathStats, LARGE_VALUE_BYTES};
use crate::cloudflare::limits::check_metadata_key;
use crate::config::toml_text::{quote, toml_key};
use crate::config::vector_metadata::PathProperty;
use crate::typemap::MetadataForm;

/// Properties proposed per table, at most.
pub const MAX_PROPOSED: usize = 20;

/// A string longer than this is text to read, not a value to filter on.
const SHORT_STRING_BYTES: u64 = 256;

/// Paths present in fewer sampled rows than this share are not proposed.
const MIN_SHARE: f64 = 0.01;

/// A proposed property, or a path left out and why.
#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    Property { property: PathProperty, share: f64 },
    LeftOut { path: String, why: String },
}

/// The choices for the json columns of one table; `taken` are metadata
/// keys already used (the `vector_metadata` columns).
pub fn propose(surveys: &[JsonSurvey], taken: &[String]) -> Vec<Choice> {
    let mut names: Vec<String> = taken.to_vec();
    let mut out = Vec::new();
    for s in surveys {
        for p in &s.paths {
            // Objects are walked: their leaves are proposed one by one.
            if p.types.keys().all(|t| *t == "object" || *t == "null") {
                continue;
            }
            let choice = match why_not(p) {
                Some(why) => Choice::LeftOut { path: p.path.clone(), why },
                None if out.iter().filter(|c| matches!(c, Choice::Property { .. })).count()
                    >= MAX_PROPOSED =>
                {
                    let why =
                        format!("more than {MAX_PROPOSED} properties proposed: add it by hand if needed");
                    Choice::LeftOut { path: p.path.clone(), why }
                }
                None => match name_for(p, &s.column, &names) {
                    Some(name) => {
                        names.push(name.clone());
                        let ty = p.scalar_type().and_then(MetadataForm::of_index_type);
                        let property = PathProperty { name, path: p.json_path.clone(), ty };
                        Choice::Property { property, share: p.share }
                    }
                    None => Choice::LeftOut { path: p.path.clone(), why: "its name is taken".into() },
                },
            };
            out.push(choice);
        }
    }
    out
}

/// Why a path is not proposed, if it is not.
fn why_not(p: &PathStats) -> Option<String> {
    if let Some(k) = p.json_path.keys.iter().find(|k| check_metadata_key(k).is_err()) {
        return Some(format!("its key `{k}` cannot be a metadata key"));
    }
    let string_array = p.types.keys().all(|t| *t == "array<string>" || *t == "null");
    if p.scalar_type().is_none() && !string_array {
        let types: Vec<&str> = p.types.keys().copied().collect();
        return Some(format!("mixed or unfit types ({})", types.join(", ")));
    }
    if p.max_bytes > SHORT_STRING_BYTES && p.scalar_type() == Some("string")
        || string_array && p.max_bytes > LARGE_VALUE_BYTES
    {
        return Some(format!(
            "values up to {} bytes (text to read, not to filter on; it stays in D1)",
            p.max_bytes
        ));
    }
    if p.share < MIN_SHARE {
        return Some(format!("in only {:.1}% of sampled rows", p.share * 100.0));
    }
    None
}

/// The keys joined by `_`; prefixed by the column when that name is taken.
fn name_for(p: &PathStats, column: &str, taken: &[String]) -> Option<String> {
    let base = p.json_path.keys.join("_");
    [base.clone(), format!("{column}_{base}")]
        .into_iter()
        .find(|n| check_metadata_key(n).is_ok() && !taken.contains(n))
}

/// The proposed properties.
pub fn properties(choices: &[Choice]) -> Vec<PathProperty> {
    choices
        .iter()
        .filter_map(|c| match c {
            Choice::Property { property, .. } => Some(property.clone()),
            Choice::LeftOut { .. } => None,
        })
        .collect()
}

/// The typed properties found in at least half the sampled rows: the
/// ones worth a metadata index.
pub fn common(choices: &[Choice]) -> Vec<PathProperty> {
    choices
        .iter()
        .filter_map(|c| match c {
            Choice::Property { property, share } if *share >= 0.5 && property.ty.is_some() => {
                Some(property.clone())
            }
            _ => None,
        })
        .collect()
}

/// The comment that opens the JSON part of a `[[tables]]` entry: what the
/// sample held, what was left out and why, and the spread alternative.
pub fn comment(surveys: &[JsonSurvey], choices: &[Choice]) -> String {
    let mut out = String::new();
    for s in surveys {
        let _ = writeln!(
            out,
            "# JSON column `{}`: {}; keys up to {} deep, values up to {} bytes.",
            s.column, s.sample, s.max_depth, s.max_bytes
        );
    }
    let left: Vec<(&String, &String)> = choices
        .iter()
        .filter_map(|c| match c {
            Choice::LeftOut { path, why } => Some((path, why)),
            Choice::Property { .. } => None,
        })
        .collect();
    if !left.is_empty() {
        out.push_str("# Left out of the metadata (the whole JSON stays in D1):\n");
        for (path, why) in left.iter().take(20) {
            let _ = writeln!(out, "#   {path}: {why}");
        }
        if left.len() > 20 {
            let _ = writeln!(out, "#   ... and {} more", left.len() - 20);
        }
    }
    let columns: Vec<String> =
        surveys.iter().filter(|s| s.sampled_rows > 0).map(|s| quote(&s.column)).collect();
    if !columns.is_empty() {
        out.push_str(
            "# Or spread whole objects into top-level properties (loc.lines.from -> loc_lines_from),\n\
             # leaving out what does not fit (counted in the load summary):\n",
        );
        let _ = writeln!(out, "# vector_metadata_flatten = [{}]", columns.join(", "));
        let big: Vec<String> = surveys
            .iter()
            .flat_map(|s| &s.paths)
            .filter(|p| p.max_bytes > LARGE_VALUE_BYTES && !p.types.contains_key("object"))
            .map(|p| quote(&p.path))
            .collect();
        if !big.is_empty() {
            let _ = writeln!(out, "# vector_metadata_omit = [{}]", big.join(", "));
        }
    }
    out
}

/// The `[tables.vector_metadata_paths]` block (it ends the entry: TOML
/// puts every later key of the entry into it).
pub fn paths_table(choices: &[Choice]) -> String {
    let mut out = String::new();
    let props: Vec<(&PathProperty, f64)> = choices
        .iter()
        .filter_map(|c| match c {
            Choice::Property { property, share } => Some((property, *share)),
            Choice::LeftOut { .. } => None,
        })
        .collect();
    if props.is_empty() {
        return out;
    }
    out.push_str(
        "# JSON paths sent as top-level metadata properties (a `type` lets a metadata index use it;\n\
         # a value of another type, or a missing path, leaves the property out):\n\
         [tables.vector_metadata_paths]\n",
    );
    for (p, share) in props {
        let value = match p.ty.and_then(|t| t.index_type()) {
            Some(t) => format!("{{ path = {}, type = {} }}", quote(&p.path.to_string()), quote(t)),
            None => quote(&p.path.to_string()),
        };
        let _ = writeln!(out, "{} = {value}   # in {:.0}% of sampled rows", toml_key(&p.name), share * 100.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::survey::Surveyor;
    use super::*;

    #[test]
    fn langchain_keys_become_typed_properties_and_the_rest_is_explained() {
        let mut s = Surveyor::new("metadata");
        for page in 1..=5 {
            s.add(&format!(
                r#"{{"source": "docs/a.pdf", "pdf": {{"version": "1.10", "info": {{"Title": "T"}}, "totalPages": 12}},
                    "loc": {{"pageNumber": {page}, "lines": {{"from": 1, "to": 40}}}}, "body": "{}", "n": [1]}}"#,
                "x".repeat(2000)
            ));
        }
        let surveys = vec![s.finish()];
        let choices = propose(&surveys, &["source".to_string()]);
        let props: Vec<(String, String, Option<&str>)> = properties(&choices)
            .iter()
            .map(|p| (p.name.clone(), p.path.to_string(), p.ty.and_then(|t| t.index_type())))
            .collect();
        assert_eq!(
            props,
            [
                ("loc_lines_from".to_string(), "metadata.loc.lines.from".to_string(), Some("number")),
                ("loc_lines_to".into(), "metadata.loc.lines.to".into(), Some("number")),
                ("loc_pageNumber".into(), "metadata.loc.pageNumber".into(), Some("number")),
                ("pdf_info_Title".into(), "metadata.pdf.info.Title".into(), Some("string")),
                ("pdf_totalPages".into(), "metadata.pdf.totalPages".into(), Some("number")),
                ("pdf_version".into(), "metadata.pdf.version".into(), Some("string")),
                // `source` is a vector_metadata column already.
                ("metadata_source".into(), "metadata.source".into(), Some("string")),
            ]
        );
        let text = comment(&surveys, &choices);
        assert!(text.contains("#   metadata.body: values up to 2002 bytes"), "{text}");
        assert!(text.contains("#   metadata.n: mixed or unfit types (array)"), "{text}");
        assert!(text.contains("# vector_metadata_omit = [\"metadata.body\"]"), "{text}");
        let table = paths_table(&choices);
        assert!(
            table.contains(
                "loc_pageNumber = { path = \"metadata.loc.pageNumber\", type = \"number\" }   # in 100%"
            ),
            "{table}"
        );
    }
}
