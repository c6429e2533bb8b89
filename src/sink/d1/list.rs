//! Statements made of a fixed head, a comma-separated list of items and a
//! fixed tail (`DELETE FROM t WHERE k IN (` keys `);`, `INSERT ... VALUES`
//! tuples `ON CONFLICT ...;`), cut so that each stays within D1's statement
//! length and within pgflare's bound on SQL values per statement, which
//! keeps the statement's VDBE program under D1's limit (see
//! [`D1_MAX_VALUES_PER_STATEMENT`]). However many items there are, each
//! statement has the same shape: a flat list, whose expression depth does
//! not grow with its length.

use crate::cloudflare::limits::{D1_MAX_STATEMENT_BYTES, D1_MAX_VALUES_PER_STATEMENT};

/// Packs items into `head item, item, ... tail` statements.
pub struct ListPacker {
    head: String,
    tail: String,
    max_bytes: usize,
    max_values: usize,
    current: String,
    values: usize,
    out: Vec<String>,
}

impl ListPacker {
    /// A packer under D1's limits.
    pub fn new(head: &str, tail: &str) -> Self {
        Self::with_limits(head, tail, D1_MAX_STATEMENT_BYTES, D1_MAX_VALUES_PER_STATEMENT)
    }

    pub fn with_limits(head: &str, tail: &str, max_bytes: usize, max_values: usize) -> Self {
        ListPacker {
            head: head.to_string(),
            tail: tail.to_string(),
            max_bytes,
            max_values,
            current: String::new(),
            values: 0,
            out: Vec::new(),
        }
    }

    /// Adds an item holding `values` SQL values. Returns false, adding
    /// nothing, when the item alone does not fit in a statement.
    pub fn push(&mut self, item: &str, values: usize) -> bool {
        if self.head.len() + item.len() + self.tail.len() > self.max_bytes || values > self.max_values {
            return false;
        }
        let fits = self.current.len() + 2 + item.len() + self.tail.len() <= self.max_bytes
            && self.values + values <= self.max_values;
        if !self.current.is_empty() && !fits {
            self.flush();
        }
        if self.current.is_empty() {
            self.current.push_str(&self.head);
        } else {
            self.current.push_str(", ");
        }
        self.current.push_str(item);
        self.values += values;
        true
    }

    fn flush(&mut self) {
        if !self.current.is_empty() {
            self.current.push_str(&self.tail);
            self.out.push(std::mem::take(&mut self.current));
            self.values = 0;
        }
    }

    /// The statements, in the order of their items.
    pub fn finish(mut self) -> Vec<String> {
        self.flush();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Whatever the items, every statement is within both limits, and
        // the items come out whole and in order; an item that cannot fit
        // alone is refused.
        #[test]
        fn statements_stay_within_both_limits(
            items in proptest::collection::vec(("[a-z']{0,60}", 1usize..6), 0..400),
            max_bytes in 40usize..400,
            max_values in 1usize..20,
        ) {
            const HEAD: &str = "DELETE FROM t WHERE k IN (";
            // Unique item texts (`<n>:...`), so each is found again by its text.
            let items: Vec<(String, usize)> =
                items.into_iter().enumerate().map(|(n, (t, v))| (format!("{n}:{t}"), v)).collect();
            let mut p = ListPacker::with_limits(HEAD, ");", max_bytes, max_values);
            let mut kept = Vec::new();
            for (item, values) in &items {
                let fits = HEAD.len() + item.len() + 2 <= max_bytes && *values <= max_values;
                prop_assert_eq!(p.push(item, *values), fits);
                if fits {
                    kept.push(item.clone());
                }
            }
            let mut listed = Vec::new();
            for s in &p.finish() {
                prop_assert!(s.len() <= max_bytes, "{} > {max_bytes}: {s}", s.len());
                let body = s.strip_prefix(HEAD).and_then(|b| b.strip_suffix(");")).expect("head and tail");
                let parts: Vec<String> = body.split(", ").map(str::to_string).collect();
                let values: usize =
                    parts.iter().filter_map(|x| items.iter().find(|(i, _)| i == x)).map(|(_, v)| v).sum();
                prop_assert!(values <= max_values, "{values} values > {max_values}: {s}");
                listed.extend(parts);
            }
            prop_assert_eq!(listed, kept);
        }
    }
}
