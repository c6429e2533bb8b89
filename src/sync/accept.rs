//! Whether the checkpoint a run found can go on with this run, and what
//! the run records in it. Changes since the checkpoint's position are
//! only enough when everything else is as it was: the tables and their D1
//! mapping ([`crate::state::fingerprint::fingerprint`]), what the vectors look like
//! ([`crate::state::fingerprint::vectorize_fingerprint`]) and the index that holds them. A
//! run that differs is refused before it writes anything, naming what
//! differs and the fix; running anyway would leave D1 or Vectorize
//! silently behind the source.

use crate::error::{Error, Result};
use crate::state::checkpoint::{Checkpoint, IndexRef};
use crate::state::fingerprint::{Fingerprint, VECTORS_OFF};

/// What a run does with vectors, for [`accept`].
pub struct RunVectors {
    /// [`crate::state::fingerprint::vectorize_fingerprint`] of the run: [`VECTORS_OFF`] when it
    /// sends none.
    pub fingerprint: Fingerprint,
    /// The index they go to (`None` for NDJSON files, or when off).
    pub index: Option<IndexRef>,
    /// Vectors are off only because no index was named (`--vectorize
    /// auto` without `--vectorize-index`, a binding or `vectorize_index`).
    pub unnamed: bool,
}

/// Checks `checkpoint` against the run (`fingerprint`: [`crate::state::fingerprint::fingerprint`]
/// of its configuration) and records the run's vectors in it.
pub fn accept(
    checkpoint: &mut Checkpoint,
    fingerprint: &Fingerprint,
    run: RunVectors,
    setting: &str,
) -> Result<()> {
    let refused = |message: String| Error::Config { setting: setting.into(), message };
    if !fingerprint.matches(&checkpoint.fingerprint) {
        return Err(refused(
            "the checkpoint was written for other tables, D1 columns, soft-delete columns or JSON metadata \
             mapping (vector_metadata_paths/_flatten/_omit) than pgflare.toml now has; changes since it \
             would not be enough: run `pgflare load --restart` with the new configuration (it resets the \
             checkpoint)"
                .into(),
        ));
    }
    // A checkpoint written before the stable form holds it from now on.
    checkpoint.fingerprint.clone_from(&fingerprint.current);
    let sends = run.fingerprint.current != VECTORS_OFF;
    if run.unnamed && !sends {
        check_named(checkpoint).map_err(refused)?;
    }
    check_vectorize(checkpoint.vectorize.as_deref(), &run.fingerprint).map_err(refused)?;
    if sends {
        check_index(checkpoint.vectorize_index.as_ref(), run.index.as_ref()).map_err(refused)?;
    }
    let mut index = run.index.filter(|_| sends);
    // An answer without a creation time keeps the one recorded.
    if let (Some(i), Some(h)) = (index.as_mut(), &checkpoint.vectorize_index) {
        if i.created_on.as_deref().is_none_or(str::is_empty) && i.same_name(h) {
            i.created_on.clone_from(&h.created_on);
        }
    }
    checkpoint.vectorize_index = index;
    checkpoint.vectorize = Some(run.fingerprint.current);
    Ok(())
}

/// A run that would leave Vectorize out only because it names no index,
/// while the checkpoint says vectors follow the source: it would record
/// Vectorize as left out, and every later run with vectors would need a
/// full reload.
fn check_named(checkpoint: &Checkpoint) -> std::result::Result<(), String> {
    if checkpoint.vectorize.as_deref().is_none_or(|v| v == VECTORS_OFF) {
        return Ok(());
    }
    let (which, flag) = match &checkpoint.vectorize_index {
        Some(i) => (format!("Vectorize index {}", i.describe()), format!("--vectorize-index {}", i.name)),
        None => (
            "a Vectorize index (the checkpoint predates recording which)".into(),
            "--vectorize-index NAME".into(),
        ),
    };
    Err(format!(
        "the checkpoint says {which} follows the source, but this run names no index (--vectorize auto \
         without --vectorize-index, --vectorize-binding or vectorize_index in pgflare.toml), so it would \
         send no vectors and the index would miss this run's changes for good. Name the index ({flag}), \
         or pass --vectorize off to leave Vectorize behind on purpose (a later run with vectors then needs \
         `pgflare load --restart`)"
    ))
}

/// Whether a checkpoint whose Vectorize side is `have` can go on with a
/// run whose vectors are `want` (both from [`crate::state::fingerprint::vectorize_fingerprint`]);
/// a checkpoint without one predates it and is taken as it is.
fn check_vectorize(have: Option<&str>, want: &Fingerprint) -> std::result::Result<(), String> {
    let message = match have {
        None => return Ok(()),
        Some(h) if want.matches(h) || want.current == VECTORS_OFF => return Ok(()),
        Some(VECTORS_OFF) => {
            "the last load or sync run left Vectorize out (--vectorize off, or no index named), so the index \
             misses the changes that run carried, which changes since the checkpoint would not cover: run \
             `pgflare load --restart` with vectors on (it sends every vector again and resets the \
             checkpoint), or keep syncing with --vectorize off"
        }
        Some(_) => {
            "the checkpoint was written for another Vectorize mapping (vector, vector_id, vector_namespace, \
             vector_metadata, JSON metadata mapping, vector_metadata_indexes, [vectorize] dimensions or \
             metric) than pgflare.toml now has: vectors already in the index would keep their old id, \
             namespace, metadata or filterability, and changes since the checkpoint would not cover them. \
             Run `pgflare load --restart` with the new configuration (it sends every vector again and resets \
             the checkpoint; after new dimensions or metric, into a new index), or put the old mapping back"
        }
    };
    Err(message.into())
}

/// A run sending vectors to another index than the one the checkpoint
/// follows, or to an index of its name deleted (and maybe created again)
/// since: that index holds none of the rows that did not change since. A
/// checkpoint that recorded no index, or no creation time, predates
/// recording it: the run records its own.
fn check_index(have: Option<&IndexRef>, want: Option<&IndexRef>) -> std::result::Result<(), String> {
    let (Some(h), Some(w)) = (have, want) else { return Ok(()) };
    if !h.same_name(w) {
        return Err(format!(
            "the checkpoint follows Vectorize index {}, which the load filled; this run would send vectors \
             to {}, and only the rows changed since the checkpoint: the other vectors would be missing \
             there. Point sync at the loaded index (--vectorize-index {}), or fill the other one with \
             `pgflare load --restart --vectorize-index {}` (it sends every vector again and resets the \
             checkpoint to it)",
            h.describe(),
            w.describe(),
            h.name,
            w.name
        ));
    }
    let reload = "run `pgflare load --restart --create-index` (it creates the index if needed, sends every \
                  vector again and resets the checkpoint)";
    match (h.created_on.as_deref().filter(|c| !c.is_empty()), w.created_on.as_deref()) {
        (Some(_), None) => Err(format!(
            "Vectorize index {}, which the checkpoint follows, no longer exists: a new one would get only \
             the rows changed since the checkpoint; {reload}",
            h.describe()
        )),
        (Some(then), Some(now)) if !now.is_empty() && now != then => Err(format!(
            "Vectorize index {} was deleted and created again since the checkpoint (created {then}, now \
             {now}): it holds none of the vectors of rows that did not change since; {reload}",
            h.describe()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::checkpoint::Position;

    fn index(account: &str, name: &str) -> IndexRef {
        IndexRef { account_id: account.into(), name: name.into(), created_on: None }
    }

    fn created(i: &IndexRef, at: Option<&str>) -> IndexRef {
        IndexRef { created_on: at.map(str::to_string), ..i.clone() }
    }

    fn checkpoint(vectorize: Option<&str>, index: Option<IndexRef>) -> Checkpoint {
        let position = Position::Snapshot {
            xmin: 7,
            txid_snapshot: "7:7:".into(),
            taken_at: "t".into(),
            wal_lsn: None,
            finer: None,
        };
        let mut c = Checkpoint::new("f", position, "load");
        c.vectorize = vectorize.map(str::to_string);
        c.vectorize_index = index;
        c
    }

    fn run(fingerprint: &str, index: Option<IndexRef>, unnamed: bool) -> RunVectors {
        RunVectors { fingerprint: fingerprint.into(), index, unnamed }
    }

    fn refusal(c: &Checkpoint, r: RunVectors) -> Option<String> {
        accept(&mut c.clone(), &"f".into(), r, "D1").err().map(|e| e.to_string())
    }

    #[test]
    fn a_checkpoint_goes_on_only_with_the_vectors_it_was_written_for() {
        let ok = |have: Option<&str>, want: &str| check_vectorize(have, &want.into()).is_ok();
        assert!(ok(None, "a"), "written before the mapping was recorded");
        assert!(ok(None, VECTORS_OFF));
        assert!(ok(Some("a"), "a"));
        assert!(ok(Some("a"), VECTORS_OFF), "a run without vectors can follow any");
        assert!(ok(Some(VECTORS_OFF), VECTORS_OFF));
        assert!(!ok(Some("a"), "b"), "another mapping");
        assert!(!ok(Some(VECTORS_OFF), "a"), "vectors after a run without them");
        let e = check_vectorize(Some(VECTORS_OFF), &"a".into()).err().unwrap_or_default();
        assert!(e.contains("--vectorize off") && e.contains("pgflare load --restart"), "{e}");
        let other_tables = accept(&mut checkpoint(None, None), &"g".into(), run("a", None, false), "D1");
        assert!(other_tables.err().is_some_and(|e| e.to_string().contains("other tables")));
    }

    #[test]
    fn a_checkpoint_goes_on_only_with_the_index_it_follows() {
        let (vi, vi2) = (index("acct", "vi"), index("acct", "vi2"));
        let c = checkpoint(Some("a"), Some(vi.clone()));
        assert_eq!(refusal(&c, run("a", Some(vi.clone()), false)), None);
        let e = refusal(&c, run("a", Some(vi2.clone()), false)).unwrap_or_default();
        assert!(e.contains("`vi` (account acct)") && e.contains("`vi2`"), "{e}");
        assert!(
            e.contains("--vectorize-index vi)") && e.contains("pgflare load --restart --vectorize-index vi2")
        );
        assert!(refusal(&c, run("a", Some(index("other", "vi")), false)).is_some(), "another account");
        assert_eq!(refusal(&c, run(VECTORS_OFF, None, false)), None, "--vectorize off stays possible");
        // Recorded: the run's index, or none once Vectorize is left out.
        let mut legacy = checkpoint(Some("a"), None);
        accept(&mut legacy, &"f".into(), run("a", Some(vi2.clone()), false), "D1")
            .expect("a legacy checkpoint");
        assert_eq!(legacy.vectorize_index, Some(vi2));
        accept(&mut legacy, &"f".into(), run(VECTORS_OFF, None, false), "D1").expect("off");
        assert_eq!((legacy.vectorize.as_deref(), legacy.vectorize_index), (Some(VECTORS_OFF), None));
    }

    #[test]
    fn an_index_deleted_since_the_checkpoint_is_refused_even_when_created_again() {
        let vi = index("acct", "vi");
        let c = checkpoint(Some("a"), Some(created(&vi, Some("t1"))));
        assert_eq!(refusal(&c, run("a", Some(created(&vi, Some("t1"))), false)), None);
        let e = refusal(&c, run("a", Some(created(&vi, Some("t2"))), false)).unwrap_or_default();
        assert!(e.contains("deleted and created again") && e.contains("t1") && e.contains("t2"), "{e}");
        let e = refusal(&c, run("a", Some(created(&vi, None)), false)).unwrap_or_default();
        assert!(e.contains("no longer exists") && e.contains("--create-index"), "{e}");
        // Not known on one side: nothing to compare; the known time is kept.
        assert_eq!(refusal(&c, run("a", Some(created(&vi, Some(""))), false)), None);
        let mut c2 = c.clone();
        accept(&mut c2, &"f".into(), run("a", Some(created(&vi, Some(""))), false), "D1").expect("accepted");
        assert_eq!(c2.vectorize_index.and_then(|i| i.created_on).as_deref(), Some("t1"));
        let legacy = checkpoint(Some("a"), Some(vi.clone()));
        assert_eq!(refusal(&legacy, run("a", Some(created(&vi, Some("t2"))), false)), None);
    }

    #[test]
    fn no_index_named_is_refused_while_the_checkpoint_says_vectors_follow() {
        let vi = index("acct", "vi");
        let e = refusal(&checkpoint(Some("a"), Some(vi)), run(VECTORS_OFF, None, true)).unwrap_or_default();
        assert!(
            e.contains("`vi`") && e.contains("--vectorize-index vi") && e.contains("--vectorize off"),
            "{e}"
        );
        let e = refusal(&checkpoint(Some("a"), None), run(VECTORS_OFF, None, true)).unwrap_or_default();
        assert!(e.contains("--vectorize-index NAME"), "{e}");
        // Nothing to keep up: Vectorize was left out, or never recorded.
        assert_eq!(refusal(&checkpoint(Some(VECTORS_OFF), None), run(VECTORS_OFF, None, true)), None);
        assert_eq!(refusal(&checkpoint(None, None), run(VECTORS_OFF, None, true)), None);
    }
}
