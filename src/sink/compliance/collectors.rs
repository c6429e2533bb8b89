//! The collectors that verify, sync and archive run over a read (digest
//! buckets, the rows of chosen buckets: the pass engine, here as read)
//! are `SinkFactory`s too, but they write
//! nothing: they accumulate into shared memory and their report only
//! counts rows. So the file and failure checks do not apply; what does is
//! that no input adds nothing, and that the result is the same whether
//! the rows come as one batch or as many batches over two partitions,
//! with `rows` reporting every row fed. A comparison that depended on the
//! batch size would report differences that are not there.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use super::{batch_of, rows, run, split_plan, Plan};
use crate::batch::sink::SinkFactory;
use crate::digest::pass::{table_sinks, Pass};

/// A fresh collector, and how to read its result once the run is over.
type Fresh<R> = dyn Fn() -> (Arc<dyn SinkFactory>, Box<dyn Fn() -> R>);

/// Runs `plan` into a fresh collector; its rows and its result.
fn collect<R>(plan: &Plan, fresh: &Fresh<R>) -> (u64, R) {
    let (factory, result) = fresh();
    let reports = run(factory.as_ref(), plan).expect("collect");
    (reports.iter().map(|r| r.rows).sum(), result())
}

/// The checks every collector passes; `empty` is its result for no rows.
fn check<R: PartialEq + std::fmt::Debug>(name: &str, empty: R, fresh: &Fresh<R>) {
    let all = rows();
    let nothing = collect(&vec![(0, vec![])], fresh);
    assert_eq!(nothing, (0, empty), "{name}: no input");
    let one = collect(&vec![(0, vec![batch_of(&all)])], fresh);
    assert_eq!(one.0, all.len() as u64, "{name}: rows of one batch");
    assert_ne!(one.1, nothing.1, "{name}: the rows left a result");
    let many = collect(&split_plan(&all), fresh);
    assert_eq!(many, one, "{name}: many batches over 2 partitions against one batch");
}

#[test]
fn digest_buckets_do_not_depend_on_the_batches() {
    check("bucket sums", Vec::new(), &|| {
        let result = Arc::new(Mutex::new(HashMap::new()));
        let factory = Arc::new(table_sinks(16, Pass::Sum, result.clone()));
        let read = move || {
            let all = result.lock().expect("lock");
            // Per table: the rows of each bucket, and the sums compared.
            let mut out: Vec<_> =
                all.iter().filter_map(|(t, s)| Some((t.clone(), s.buckets.clone()?))).collect();
            out.retain(|(_, b)| b.total().rows > 0);
            out.into_iter()
                .map(|(t, b)| (t, (0..b.len()).map(|i| b.rows(i)).collect::<Vec<_>>(), b))
                .collect()
        };
        (factory, Box::new(read))
    });
}

#[test]
fn collected_rows_do_not_depend_on_the_batches() {
    check("rows of chosen buckets", BTreeMap::new(), &|| {
        let result = Arc::new(Mutex::new(HashMap::new()));
        let wanted = Pass::Collect(Arc::new(BTreeSet::from([1, 5, 9])));
        let factory = Arc::new(table_sinks(16, wanted, result.clone()));
        // Where a row was read (`partition 1 row 3`) depends on the split
        // by design; what it is does not.
        let read = move || {
            let all = result.lock().expect("lock");
            all.values()
                .flat_map(|s| s.rows.iter().map(|(id, r)| (id.clone(), (r.digest, r.key.clone()))))
                .collect::<BTreeMap<_, _>>()
        };
        (factory, Box::new(read))
    });
}
