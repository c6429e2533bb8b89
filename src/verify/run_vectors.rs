//! verify's Vectorize steps: every vector the source expects compared
//! with the index (listed, the sampled ids fetched and digested, differing
//! ones drilled down to the field), and similarity-query parity (the
//! index's top k against the exact top k computed from the source).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::parity::{compare_query, parity_sinks, summarize, Chooser, Collecting, Metric, TopK};
use super::pending::Pending;
use super::report::{Difference, QueryParity, TargetReport};
use super::run::{open_d1, Verification};
use super::value_check::{choose, differing_below, recorded_ids, ValueCheck, ValueMode};
use super::vectors::{self, difference, expect_sinks, in_sample, Expected};
use crate::batch::collect::take;
use crate::batch::sink::SinkFactory;
use crate::digest::vector::{vector_digest, Vector};
use crate::error::Result;

impl Verification<'_> {
    /// Per vector table, its Vectorize report; rows written after D1's
    /// checkpoint are pending, not differences.
    pub(super) async fn vector_reports(
        &self,
        expected: &Arc<Mutex<HashMap<String, Expected>>>,
        pending: &HashMap<String, Pending>,
        d1_path: &Path,
    ) -> Result<HashMap<String, TargetReport>> {
        let vmaps = &self.prepared.vectors.mappings;
        let mut reports = HashMap::new();
        let Some(index) = self.opts.vectorize.as_ref().filter(|_| !vmaps.0.is_empty()) else {
            return Ok(reports);
        };
        let (n, sample) = (self.n, &self.sample);
        let mut expected = take(expected)?;
        let recorded = recorded_ids(d1_path)?;
        let values = Values { recorded: &recorded, mode: self.opts.vector_values, seed: &self.snapshot_id };
        for (table, exp) in expected.iter_mut().filter(|(t, _)| vmaps.0.contains_key(*t)) {
            let (mut diffs, drill, listed, mut notes, check) =
                compare_vectors(index, exp, n, sample, &values).await?;
            notes.insert(0, check.sentence());
            if !drill.is_empty() {
                diffs.extend(self.drill_vectors(table, &drill).await?);
            }
            // Vectorize differences name the row by key (`id=…`) or by vector id.
            let p = pending.get(table);
            let before = diffs.len();
            diffs.retain(|d| !p.is_some_and(|p| p.d1_keys.contains(&d.key) || p.vector_ids.contains(&d.key)));
            let pending_sync = (before - diffs.len()) as u64;
            let location = format!("vectorize index {}", index.index());
            let r = vectors::report(
                index.index(),
                &location,
                exp.digests.len() as u64 + exp.skipped.count,
                listed,
                diffs,
                &exp.skipped,
                sample.len() as f64 / n as f64,
            );
            reports.insert(table.clone(), TargetReport { notes, pending_sync, values: Some(check), ..r });
        }
        Ok(reports)
    }

    /// The source's vectors of the ids whose digests differ, compared
    /// field by field with what the index holds.
    async fn drill_vectors(&self, table: &str, drill: &HashMap<String, Vector>) -> Result<Vec<Difference>> {
        let wanted = Arc::new(drill.keys().cloned().collect::<HashSet<_>>());
        let got = Arc::new(Mutex::new(HashMap::new()));
        let mappings = self.prepared.vectors.mappings.clone();
        let sinks: Arc<dyn SinkFactory> =
            Arc::new(expect_sinks(mappings, Some(wanted), self.vector_sample.clone(), got.clone()));
        self.read(Some(table), "vectors", sinks).await?;
        let got = take(&got)?;
        let source = got.get(table).map(|e| &e.vectors);
        Ok(drill
            .iter()
            .filter_map(|(id, stored)| {
                source.and_then(|s| s.get(id)).and_then(|s| difference(s, stored, self.opts.float_tolerance))
            })
            .collect())
    }

    /// Similarity-query parity on the first vector table: `queries` source
    /// vectors, the exact top k from the source, the index's answers.
    pub(super) async fn parity(&self, d1_path: &Path) -> Result<Option<QueryParity>> {
        let (Some(index), Some((table, vm)), true) =
            (&self.opts.vectorize, self.prepared.vectors.mappings.0.iter().next(), self.opts.queries > 0)
        else {
            return Ok(None);
        };
        let metric = index.config().await?.map(|c| Metric::parse(&c.metric)).unwrap_or(Metric::Cosine);
        let q = self.opts.queries;
        let chosen =
            self.parity_pass(table, "queries", Arc::new(move || Collecting::Choose(Chooser::new(q)))).await?;
        let mut chooser = Chooser::new(q);
        for c in chosen {
            if let Collecting::Choose(c) = c {
                chooser.merge(c);
            }
        }
        let queries = Arc::new(chooser.chosen());
        let (k, qs) = (self.opts.k.max(1), queries.clone());
        let make = Arc::new(move || Collecting::Rank(TopK::new(metric, k, qs.clone())));
        let ranked = self.parity_pass(table, "exact top-k", make).await?;
        let mut top = TopK::new(metric, k, queries.clone());
        for c in ranked {
            if let Collecting::Rank(t) = c {
                top.merge(t);
            }
        }
        let exact = top.results();
        let conn = open_d1(d1_path)?;
        let id_column = self
            .shapes
            .get(table)
            .and_then(|s| s.table.d1_name(&vm.id).map(|c| (s.table.name.clone(), c.to_string())));
        let in_d1 = |id: &str| match &id_column {
            Some((t, c)) => {
                let sql = format!(
                    "SELECT 1 FROM {} WHERE CAST({} AS TEXT) = ?1 LIMIT 1",
                    crate::batch::quote_ident(t),
                    crate::batch::quote_ident(c)
                );
                conn.query_row(&sql, [id], |_| Ok(())).is_ok()
            }
            None => true,
        };
        let mut results = Vec::new();
        for ((id, vector), exact) in queries.iter().zip(&exact) {
            let got: Vec<(String, f64)> =
                index.query(vector, k, None).await?.into_iter().map(|m| (m.id, m.score)).collect();
            results.push(compare_query(id, exact, &got, k, &in_d1));
        }
        Ok(Some(summarize(k, self.opts.min_recall, results)))
    }

    /// One read of `table` through the parity collectors `make` opens.
    pub(super) async fn parity_pass(
        &self,
        table: &str,
        label: &str,
        make: Arc<dyn Fn() -> Collecting + Send + Sync>,
    ) -> Result<Vec<Collecting>> {
        let result = Arc::new(Mutex::new(Vec::new()));
        let mappings = self.prepared.vectors.mappings.clone();
        let sinks: Arc<dyn SinkFactory> = Arc::new(parity_sinks(mappings, make, result.clone()));
        self.read(Some(table), label, sinks).await?;
        take(&result)
    }
}

type Compared = (Vec<Difference>, HashMap<String, Vector>, u64, Vec<String>, ValueCheck);

/// Which values [`compare_vectors`] fetches: see [`super::value_check`].
struct Values<'a> {
    recorded: &'a HashSet<String>,
    mode: ValueMode,
    seed: &'a str,
}

/// Lists the index and compares every id with the source's (missing and
/// extra ones as differences); fetches the values of the ids sync recorded
/// and of a sample of the rest (or all, `--vector-values all`) and compares
/// digests: returns the ids whose digests differ (with the stored vector)
/// for a closer look, how many ids the index has, and what was compared.
async fn compare_vectors(
    index: &crate::cloudflare::Vectorize,
    exp: &Expected,
    n: usize,
    sample: &BTreeSet<usize>,
    values: &Values<'_>,
) -> Result<Compared> {
    use super::report::DiffKind;
    let requests = index.requests_sent();
    let before = index.info().await?;
    let listed = index.list_ids().await?;
    let listed_set: std::collections::HashSet<&String> = listed.iter().collect();
    let mut diffs = Vec::new();
    for id in exp.digests.keys().filter(|id| in_sample(id, n, sample)) {
        if !listed_set.contains(id) {
            diffs.push(Difference::bare(DiffKind::Missing, format!("id={id}")));
        }
    }
    // A skipped row is reported as skipped, whatever the index holds for it.
    let stale = listed.iter().filter(|id| exp.skipped.ids.contains(*id)).count();
    let mut present = Vec::new();
    let mut ids_compared = 0u64;
    for id in listed.iter().filter(|id| in_sample(id, n, sample) && !exp.skipped.ids.contains(*id)) {
        ids_compared += 1;
        match exp.digests.contains_key(id) {
            true => present.push(id.clone()),
            false => diffs.push(Difference::bare(DiffKind::Extra, format!("id={id}"))),
        }
    }
    let chosen = choose(present, values.recorded, values.mode, values.seed);
    let sampled: HashSet<&String> = chosen.sampled.iter().collect();
    let mut drill = HashMap::new();
    let mut sampled_differing = 0u64;
    let fetch: Vec<String> = chosen.recorded.iter().chain(&chosen.sampled).cloned().collect();
    for chunk in fetch.chunks(1000) {
        for stored in index.get_by_ids(chunk).await? {
            let v = Vector::from_stored(&stored);
            if exp.digests.get(&v.id).is_some_and(|d| *d != vector_digest(&v)) {
                sampled_differing += u64::from(sampled.contains(&v.id));
                drill.insert(v.id.clone(), v);
            }
        }
    }
    let check = ValueCheck {
        ids_compared,
        values_compared: fetch.len() as u64,
        written_since_load: chosen.recorded.len() as u64,
        sampled: chosen.sampled.len() as u64,
        not_compared: chosen.not_compared,
        sampled_differing,
        differing_below: (chosen.not_compared > 0 && sampled_differing == 0)
            .then(|| differing_below(chosen.sampled.len() as u64)),
        requests: 0,
    };
    // Vectorize applies writes asynchronously: if it applied any while it
    // was read, some differences may be writes in flight, not losses.
    let after = index.info().await?;
    let mut notes = Vec::new();
    if stale > 0 {
        notes.push(format!(
            "the index still holds a vector for {stale} of the skipped rows (written before the row broke \
             a rule; the next `pgflare sync` deletes it, a load leaves it): queries may return it"
        ));
    }
    if before.processed_up_to_mutation != after.processed_up_to_mutation {
        notes.push(format!(
            "the index applied writes while it was read (processedUpToMutation {} -> {}): differences may be \
             writes in flight; run verify again once the load or sync has finished",
            before.processed_up_to_mutation.as_deref().unwrap_or("none"),
            after.processed_up_to_mutation.as_deref().unwrap_or("none")
        ));
    } else if after.vector_count.is_some_and(|c| c != listed.len() as u64) {
        notes.push(format!(
            "the index reports {} vectors but listed {}: it may still be applying writes",
            after.vector_count.unwrap_or(0),
            listed.len()
        ));
    }
    let check = ValueCheck { requests: index.requests_sent() - requests, ..check };
    Ok((diffs, drill, listed.len() as u64, notes, check))
}
