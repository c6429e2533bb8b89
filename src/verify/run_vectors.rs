//! verify's Vectorize steps: the index's ids compared with the source's by
//! key bucket (`list` read a page at a time into per-bucket sums, so no
//! side's ids are held; the ids of differing buckets alone are listed and
//! read again to name the missing and extra ones), the values of the
//! vectors sync recorded and of a sample drawn from the source fetched and
//! digested (differing ones drilled down to the field), and
//! similarity-query parity (the index's top k against the exact top k
//! computed from the source).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::parity::{compare_query, parity_sinks, summarize, Chooser, Collecting, Metric, TopK};
use super::pending::Pending;
use super::report::DiffKind;
use super::report::{Difference, QueryParity, TargetReport};
use super::run::{open_d1, Verification};
use super::since::Since;
use super::value_check::{differing_below, Sampler, ValueCheck};
use super::vectors::{self, difference, expect_sinks, id_digest, in_sample, Expected, Gather};
use crate::batch::collect::take;
use crate::batch::sink::SinkFactory;
use crate::cloudflare::vectorize::IndexInfo;
use crate::cloudflare::Vectorize;
use crate::digest::buckets::{bucket_of, Buckets};
use crate::digest::vector::{vector_digest, Vector};
use crate::digest::RowDigest;
use crate::error::Result;

impl Verification<'_> {
    /// Per vector table, its Vectorize report; rows written after D1's
    /// checkpoint are pending, not differences.
    pub(super) async fn vector_reports(
        &self,
        expected: &Arc<Mutex<HashMap<String, Expected>>>,
        pending: &HashMap<String, Pending>,
        since: &Since,
    ) -> Result<HashMap<String, TargetReport>> {
        let vmaps = &self.prepared.vectors.mappings;
        let mut reports = HashMap::new();
        let Some(index) = self.opts.vectorize.as_ref().filter(|_| !vmaps.0.is_empty()) else {
            return Ok(reports);
        };
        let mut expected = take(expected)?;
        for (table, exp) in expected.drain().filter(|(t, _)| vmaps.0.contains_key(t)) {
            let requests = index.requests_sent();
            let before = index.info().await?;
            let listing = list_sums(index, &exp, self.n, &self.sample).await?;
            let differing: BTreeSet<usize> =
                exp.ids.differing(&listing.sums).intersection(&self.sample).copied().collect();
            let listed_ids = list_in(index, &differing, &exp.skipped.ids, self.n).await?;
            // Equal bucket sums mean the same ids: only a differing bucket's
            // ids can be absent from the index.
            let present =
                |id: &str| !differing.contains(&bucket_of(id.as_bytes(), self.n)) || listed_ids.contains(id);
            let p = pending.get(&table);
            let (fetched, check) =
                fetch_values(index, exp.recorded, exp.changed_only, exp.sample, p, &present).await?;
            let after = index.info().await?;
            let source = self.closer_look(&table, fetched.keys().cloned().collect(), &differing).await?;
            let mut diffs = ids_differences(&source.bucket_ids, &listed_ids);
            diffs.extend(fetched.iter().filter_map(|(id, stored)| {
                source.vectors.get(id).and_then(|s| difference(s, stored, self.opts.float_tolerance))
            }));
            let check = ValueCheck {
                ids_compared: listing.compared,
                requests: index.requests_sent() - requests,
                ..check
            };
            let mut notes = vec![check.sentence()];
            if !differing.is_empty() {
                notes.push(format!(
                    "{} of {} key buckets hold other ids in the index than in the source: their ids were listed \
                     again and read again from the source to name the missing and extra ones",
                    differing.len(),
                    self.n
                ));
            }
            notes.extend(listing.notes(&before, &after));
            notes.extend(since.note_for(&table));
            let n_before = diffs.len();
            diffs.retain(|d| !p.is_some_and(|p| p.holds_vector(&d.key)));
            let pending_sync = (n_before - diffs.len()) as u64;
            let location = format!("vectorize index {}", index.index());
            let r = vectors::report(
                index.index(),
                &location,
                exp.count + exp.skipped.count,
                listing.listed,
                diffs,
                &exp.skipped,
                self.sample.len() as f64 / self.n as f64,
            );
            reports.insert(table, TargetReport { notes, pending_sync, values: Some(check), ..r });
        }
        Ok(reports)
    }

    /// One more read of `table`: the source's vectors of the ids whose
    /// digests differed (to compare field by field) and its ids in the
    /// key buckets whose id sums differed (to name the missing and extra
    /// ones). Skipped when neither is wanted.
    async fn closer_look(
        &self,
        table: &str,
        ids: HashSet<String>,
        buckets: &BTreeSet<usize>,
    ) -> Result<Expected> {
        if ids.is_empty() && buckets.is_empty() {
            return Ok(Expected::empty(self.n));
        }
        let got = Arc::new(Mutex::new(HashMap::new()));
        let gather = Gather::Drill { ids: Arc::new(ids), buckets: Arc::new(buckets.clone()) };
        let mappings = self.prepared.vectors.mappings.clone();
        let sinks: Arc<dyn SinkFactory> =
            Arc::new(expect_sinks(mappings, gather, self.vector_sample.clone(), got.clone()));
        self.read(Some(table), "vectors", sinks).await?;
        Ok(take(&got)?.remove(table).unwrap_or_else(|| Expected::empty(self.n)))
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

/// What listing the index found: per key bucket the sum of its ids (as
/// the source's, [`id_digest`]), how many it listed, how many of those
/// were compared (in the compared buckets, not skipped), and how many
/// belong to rows the rules skip.
struct Listing {
    sums: Buckets,
    listed: u64,
    compared: u64,
    stale: u64,
}

/// Lists the index a page at a time into per-bucket id sums: the ids are
/// compared with the source's without holding either side's.
async fn list_sums(index: &Vectorize, exp: &Expected, n: usize, sample: &BTreeSet<usize>) -> Result<Listing> {
    let mut l = Listing { sums: Buckets::new(n), listed: 0, compared: 0, stale: 0 };
    let skipped = &exp.skipped.ids;
    let counted = index
        .list_pages(&mut |page| {
            for id in page {
                // A skipped row is reported as skipped, whatever the index holds for it.
                if skipped.contains(&id) {
                    l.stale += 1;
                } else if in_sample(&id, n, sample) {
                    l.compared += 1;
                    l.sums.add_row(id.as_bytes(), &id_digest(&id));
                }
            }
            Ok(())
        })
        .await?;
    l.listed = counted;
    Ok(l)
}

/// The ids the index holds in `buckets` (none listed when there are none):
/// a second listing, kept to those buckets, so memory follows the
/// differing buckets, not the index.
async fn list_in(
    index: &Vectorize,
    buckets: &BTreeSet<usize>,
    skipped: &HashSet<String>,
    n: usize,
) -> Result<HashSet<String>> {
    let mut ids = HashSet::new();
    if buckets.is_empty() {
        return Ok(ids);
    }
    index
        .list_pages(&mut |page| {
            ids.extend(
                page.into_iter()
                    .filter(|id| !skipped.contains(id) && buckets.contains(&bucket_of(id.as_bytes(), n))),
            );
            Ok(())
        })
        .await?;
    Ok(ids)
}

/// Missing and extra ids of the differing buckets, both sides' ids known.
fn ids_differences(source: &HashSet<String>, listed: &HashSet<String>) -> Vec<Difference> {
    let missing = source.difference(listed).map(|id| Difference::bare(DiffKind::Missing, format!("id={id}")));
    let extra = listed.difference(source).map(|id| Difference::bare(DiffKind::Extra, format!("id={id}")));
    missing.chain(extra).collect()
}

/// Fetches the vectors sync recorded and the sample (20 per `get_by_ids`,
/// 1,000 ids per call to the client) and compares their digests with the
/// source's; returns the stored vectors whose digests differ, by id. Only
/// ids the listing showed `present` are asked for (what `get_by_ids` does
/// with an unknown id is not documented): a sampled id the index lacks
/// differs, and the id comparison names it missing. Sampled rows the next
/// sync sends (`pending`) are compared (their differences count as
/// pending) but are not part of the sample: it speaks of the vectors the
/// load wrote.
async fn fetch_values(
    index: &Vectorize,
    recorded: HashMap<String, RowDigest>,
    changed_since_verify: u64,
    sample: Sampler,
    pending: Option<&Pending>,
    present: &dyn Fn(&str) -> bool,
) -> Result<(HashMap<String, Vector>, ValueCheck)> {
    let (drawn, not_compared) = sample.drawn();
    // Saturating: a vector id the source holds twice is counted twice.
    let written_since_load = (recorded.len() as u64).saturating_sub(changed_since_verify);
    let (drawn_pending, sampled): (HashMap<String, RowDigest>, HashMap<String, RowDigest>) =
        drawn.into_iter().partition(|(id, _)| pending.is_some_and(|p| p.holds_vector(&format!("id={id}"))));
    let fetch: Vec<&String> =
        recorded.keys().chain(drawn_pending.keys()).chain(sampled.keys()).filter(|id| present(id)).collect();
    let mut differing = HashMap::new();
    let mut sampled_returned = 0u64;
    let mut sampled_differing = 0u64;
    for chunk in fetch.chunks(1000) {
        let ids: Vec<String> = chunk.iter().map(|s| s.to_string()).collect();
        for stored in index.get_by_ids(&ids).await? {
            let v = Vector::from_stored(&stored);
            let in_sample = sampled.get(&v.id);
            sampled_returned += u64::from(in_sample.is_some());
            let Some(want) = recorded.get(&v.id).or(drawn_pending.get(&v.id)).or(in_sample) else { continue };
            if *want != vector_digest(&v) {
                sampled_differing += u64::from(in_sample.is_some());
                differing.insert(v.id.clone(), v);
            }
        }
    }
    sampled_differing += (sampled.len() as u64).saturating_sub(sampled_returned);
    let check = ValueCheck {
        ids_compared: 0,
        values_compared: fetch.len() as u64,
        written_since_load,
        changed_since_verify,
        sampled: sampled.len() as u64,
        not_compared,
        sampled_differing,
        differing_below: (not_compared > 0 && sampled_differing == 0)
            .then(|| differing_below(sampled.len() as u64)),
        requests: 0,
    };
    Ok((differing, check))
}

impl Listing {
    /// What the reader should know about the listing: stale vectors of
    /// skipped rows, writes applied while it ran.
    fn notes(&self, before: &IndexInfo, after: &IndexInfo) -> Vec<String> {
        let mut notes = Vec::new();
        if self.stale > 0 {
            notes.push(format!(
                "the index still holds a vector for {} of the skipped rows (written before the row broke \
                 a rule; the next `pgflare sync` deletes it, a load leaves it): queries may return it",
                self.stale
            ));
        }
        // Vectorize applies writes asynchronously: if it applied any while it
        // was read, some differences may be writes in flight, not losses.
        if before.processed_up_to_mutation != after.processed_up_to_mutation {
            notes.push(format!(
                "the index applied writes while it was read (processedUpToMutation {} -> {}): differences may be \
                 writes in flight; run verify again once the load or sync has finished",
                before.processed_up_to_mutation.as_deref().unwrap_or("none"),
                after.processed_up_to_mutation.as_deref().unwrap_or("none")
            ));
        } else if after.vector_count.is_some_and(|c| c != self.listed) {
            notes.push(format!(
                "the index reports {} vectors but listed {}: it may still be applying writes",
                after.vector_count.unwrap_or(0),
                self.listed
            ));
        }
        notes
    }
}
