//! Foreign keys and unique constraints back from the text Postgres gives
//! for them (`pg_get_constraintdef`), which is all an archive's manifest
//! keeps: a restore without the source needs them structured, as
//! [`super::constraints`] reads them from the catalog, to create them in D1,
//! write parents first and set the links of cyclic keys afterwards.
//!
//! The grammar is Postgres's output, not user SQL: `FOREIGN KEY (cols)
//! REFERENCES [schema.]table(cols)` then optional `MATCH FULL`, `ON UPDATE
//! action`, `ON DELETE action [(cols)]`, `DEFERRABLE ...`, `NOT VALID`;
//! names are bare or double-quoted with `""` for a quote. Source: Postgres
//! `src/backend/utils/adt/ruleutils.c`, `pg_get_constraintdef_worker`
//! (the `CONSTRAINT_FOREIGN` and `CONSTRAINT_UNIQUE` cases); the output of
//! a real Postgres 18 is read back in `tests/integration/restore.rs`
//! (fk_cycles' schemas: self-references, a two-table cycle, `ON DELETE
//! CASCADE`, `DEFERRABLE INITIALLY DEFERRED`).

use super::constraints::ForeignKey;

/// A FOREIGN KEY constraint's definition, the referenced table resolved in
/// `schema` when unqualified; `None` when it is not one this grammar reads.
pub fn foreign_key(name: &str, definition: &str, schema: &str) -> Option<ForeignKey> {
    let rest = definition.trim().strip_prefix("FOREIGN KEY ")?;
    let (columns, rest) = name_list(rest)?;
    let rest = rest.trim_start().strip_prefix("REFERENCES ")?;
    let (first, rest) = ident(rest)?;
    let (ref_schema, ref_table, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let (table, r) = ident(r)?;
            (first, table, r)
        }
        None => (schema.to_string(), first, rest),
    };
    let (ref_columns, rest) = name_list(rest)?;
    if ref_columns.len() != columns.len() {
        return None;
    }
    let (on_update, _) = action(rest, "ON UPDATE ")?;
    let (on_delete, on_delete_columns) = action(rest, "ON DELETE ")?;
    Some(ForeignKey {
        name: name.to_string(),
        columns,
        ref_schema,
        ref_table,
        ref_columns,
        on_delete,
        on_update,
        on_delete_columns,
    })
}

/// A UNIQUE constraint's columns (`UNIQUE (a, b)`; `UNIQUE NULLS NOT
/// DISTINCT (a)` too).
pub fn unique_columns(definition: &str) -> Option<Vec<String>> {
    let rest = definition.trim().strip_prefix("UNIQUE ")?;
    let rest = rest.strip_prefix("NULLS NOT DISTINCT ").unwrap_or(rest);
    let (columns, rest) = name_list(rest)?;
    // `INCLUDE (...)` columns are not part of the key.
    (rest.trim().is_empty() || rest.trim_start().starts_with("INCLUDE")).then_some(columns)
}

/// The action after `prefix` (`NO ACTION` when absent) and, for `SET NULL`
/// and `SET DEFAULT`, the columns it names (Postgres 15+).
fn action(text: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let Some(at) = text.find(prefix) else { return Some(("NO ACTION".into(), Vec::new())) };
    let rest = &text[at + prefix.len()..];
    for a in ["NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"] {
        if let Some(after) = rest.strip_prefix(a) {
            let columns = match after.strip_prefix(' ').filter(|r| r.starts_with('(')) {
                Some(r) => name_list(r)?.0,
                None => Vec::new(),
            };
            return Some((a.to_string(), columns));
        }
    }
    None
}

/// `(a, "B c", d)`: the names and what follows the `)`.
fn name_list(text: &str) -> Option<(Vec<String>, &str)> {
    let mut rest = text.trim_start().strip_prefix('(')?;
    let mut names = Vec::new();
    loop {
        let (name, r) = ident(rest.trim_start())?;
        names.push(name);
        let r = r.trim_start();
        if let Some(r) = r.strip_prefix(',') {
            rest = r;
        } else {
            return Some((names, r.strip_prefix(')')?));
        }
    }
}

/// One identifier: double-quoted (`""` is a quote) or bare (up to a
/// character that cannot be in one); the rest of the text.
fn ident(text: &str) -> Option<(String, &str)> {
    if let Some(mut rest) = text.strip_prefix('"') {
        let mut name = String::new();
        loop {
            let end = rest.find('"')?;
            name.push_str(&rest[..end]);
            rest = &rest[end + 1..];
            match rest.strip_prefix('"') {
                Some(r) => {
                    name.push('"');
                    rest = r;
                }
                None => return Some((name, rest)),
            }
        }
    }
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')).unwrap_or(text.len());
    (end > 0).then(|| (text[..end].to_string(), &text[end..]))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn postgres_forms_are_read() {
        let fk =
            foreign_key("f", "FOREIGN KEY (page_id) REFERENCES nods_page(id) ON DELETE CASCADE", "public")
                .expect("fk");
        assert_eq!((fk.ref_schema.as_str(), fk.ref_table.as_str()), ("public", "nods_page"));
        assert_eq!((fk.columns, fk.ref_columns), (vec!["page_id".to_string()], vec!["id".to_string()]));
        assert_eq!((fk.on_delete.as_str(), fk.on_update.as_str()), ("CASCADE", "NO ACTION"));

        let def = r#"FOREIGN KEY ("Doc Id", b) REFERENCES other."Docs ""x"""(id, "B") MATCH FULL ON UPDATE CASCADE ON DELETE SET NULL ("Doc Id") DEFERRABLE INITIALLY DEFERRED"#;
        let fk = foreign_key("g", def, "public").expect("quoted");
        assert_eq!(fk.columns, ["Doc Id", "b"]);
        assert_eq!((fk.ref_schema.as_str(), fk.ref_table.as_str()), ("other", "Docs \"x\""));
        assert_eq!(fk.ref_columns, ["id", "B"]);
        assert_eq!((fk.on_update.as_str(), fk.on_delete.as_str()), ("CASCADE", "SET NULL"));
        assert_eq!(fk.on_delete_columns, ["Doc Id"]);

        assert!(foreign_key("h", "CHECK (x > 0)", "public").is_none());
        assert!(foreign_key("h", "FOREIGN KEY (a, b) REFERENCES t(x)", "public").is_none(), "arity");
        assert_eq!(unique_columns("UNIQUE (path)"), Some(vec!["path".to_string()]));
        assert_eq!(
            unique_columns(r#"UNIQUE NULLS NOT DISTINCT (a, "B")"#),
            Some(vec!["a".into(), "B".into()])
        );
        assert_eq!(unique_columns("PRIMARY KEY (id)"), None);
    }

    fn quoted(s: &str) -> String {
        format!("\"{}\"", s.replace('"', "\"\""))
    }

    proptest! {
        /// Any names, quoted as Postgres quotes them, come back as they were.
        #[test]
        fn quoted_names_come_back(
            cols in prop::collection::vec("\\PC{1,12}", 1..4),
            table in "\\PC{1,12}",
            schema in "\\PC{1,12}",
        ) {
            let list = |c: &[String]| c.iter().map(|n| quoted(n)).collect::<Vec<_>>().join(", ");
            let def = format!(
                "FOREIGN KEY ({}) REFERENCES {}.{}({}) ON DELETE RESTRICT",
                list(&cols), quoted(&schema), quoted(&table), list(&cols)
            );
            let fk = foreign_key("n", &def, "public").expect("parsed");
            prop_assert_eq!(&fk.columns, &cols);
            prop_assert_eq!(&fk.ref_columns, &cols);
            prop_assert_eq!((fk.ref_schema, fk.ref_table), (schema, table));
            prop_assert_eq!(fk.on_delete, "RESTRICT");
        }
    }
}
