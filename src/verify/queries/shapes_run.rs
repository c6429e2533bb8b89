//! One `[[queries]]` shape replayed: the filter conditions, the exact
//! top k on the Supabase side, each query asked of Vectorize and D1 as the
//! layout says, and the comparison that names every miss's reason
//! ([`ShapesRun::shape`]); `mod.rs` resolves the shapes and chooses the
//! queries.

use super::cloud::{Cell, Plan};
use super::input::QueryVec;
use super::report::{Miss, MissReason, MissSide, ShapeQuery, ShapeReport};
use super::resolved::{rows_by_id, Resolved};
use super::{cloud, exact, explain, report};
use crate::batch::collect::{take, Collectors};
use crate::batch::quote_ident;
use crate::batch::sink::SinkFactory;
use crate::cloudflare::vectorize_filter::Indexed;
use crate::cloudflare::Vectorize;
use crate::config::queries::QueryShape;
use crate::error::{Error, Result};
use crate::verify::parity::{Metric, TopK};
use crate::verify::run::Verification;
use serde_json::Value;
use sqlx::AssertSqlSafe;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// What every shape's run shares.
pub(super) struct ShapesRun<'a, 'b> {
    pub(super) v: &'a Verification<'b>,
    pub(super) index: &'a Vectorize,
    pub(super) metric: Metric,
    pub(super) indexes: BTreeMap<String, Indexed>,
    pub(super) d1: rusqlite::Connection,
}

/// One query's Cloudflare side.
struct Answer {
    plan: Plan,
    candidates: Vec<(String, f64)>,
    got: Vec<(String, f64)>,
    error: Option<String>,
    requests: usize,
    d1_rows: HashMap<String, Vec<Cell>>,
}

impl ShapesRun<'_, '_> {
    /// One shape: its conditions, the exact pass, each query on Cloudflare, the comparison.
    pub(super) async fn shape(&self, r: &Resolved<'_>, queries: &[&QueryVec]) -> Result<ShapeReport> {
        let (conditions, value_errors) = self.conditions(r, queries).await?;
        let (exact, admitted) = self.exact(r, queries, &conditions).await?;
        let mut conn = crate::source::snapshot::join(self.v.src, &self.v.snapshot_id).await?;
        let mut results = Vec::new();
        let mut requests = 0usize;
        for (i, q) in queries.iter().enumerate() {
            let mut a = self.ask(r, q).await?;
            if let Some(e) = &value_errors[i] {
                a.error = Some(e.clone());
            }
            requests += a.requests;
            results.push(
                self.compare(&mut conn, r, q, &exact[i], admitted[i], conditions[i].as_deref(), a).await?,
            );
        }
        Ok(summarize(r.shape, self.v.opts.min_recall, requests, results))
    }

    /// Each query's SQL condition (`None`: no filter), and the errors of
    /// values the column's type refuses.
    async fn conditions(
        &self,
        r: &Resolved<'_>,
        queries: &[&QueryVec],
    ) -> Result<(Vec<Option<String>>, Vec<Option<String>>)> {
        let mut conn = self.v.src.connect().await?;
        let (mut conds, mut errors) = (Vec::new(), Vec::new());
        for q in queries {
            match exact::condition(&mut conn, &r.info.spec, r.shape, &q.filter).await? {
                Ok(c) => {
                    conds.push(c);
                    errors.push(None);
                }
                Err(e) => {
                    conds.push(Some("false".into()));
                    errors.push(Some(e));
                }
            }
        }
        Ok((conds, errors))
    }

    /// One read of the table at the snapshot: every query's exact top k.
    async fn exact(
        &self,
        r: &Resolved<'_>,
        queries: &[&QueryVec],
        conditions: &[Option<String>],
    ) -> Result<(Vec<Vec<(String, f64)>>, Vec<usize>)> {
        let (list, at) = exact::distinct(conditions);
        let extra = [exact::admitted_sql(&list)];
        let spec = Arc::new(exact::read_spec(&r.info.spec));
        let qs = exact::query_list(queries);
        let template = TopK::new(self.metric, r.shape.k, qs.clone());
        let (at, metric, k, vm) = (Arc::new(at), self.metric, r.shape.k, r.vm.clone());
        let result = Arc::new(Mutex::new(Vec::new()));
        let sinks: Arc<dyn SinkFactory> = Arc::new(Collectors::new(result.clone(), move |t, _| {
            exact::ExactSink::new(t, &vm, at.clone(), TopK::new(metric, k, qs.clone()))
        }));
        let at = self.v.prepared.infos.iter().position(|i| i.spec.qualified() == r.info.spec.qualified());
        let parts = at.map(|i| self.v.parts[i].clone()).unwrap_or_default();
        let bar = self.v.progress.rows(&format!("query shape {}", r.shape.name), r.info.row_estimate);
        let mut conn = crate::source::snapshot::join(self.v.src, &self.v.snapshot_id).await?;
        for p in &parts {
            let sql = crate::source::reader::select_sql_with(&r.info.spec, p, &extra);
            crate::source::reader::read_sql(
                &mut conn,
                spec.clone(),
                &sql,
                p.index,
                sinks.clone(),
                &bar,
                self.v.opts.read,
            )
            .await?;
        }
        bar.finish_and_clear();
        Ok(exact::merge(take(&result)?, template))
    }

    /// The service's side of one query: Vectorize as the layout says,
    /// merged, then D1's rows (post-filters applied) and their context.
    async fn ask(&self, r: &Resolved<'_>, q: &QueryVec) -> Result<Answer> {
        let plan = cloud::plan(r.shape, r.vm, &q.filter);
        let (mut answers, mut error, mut requests) = (Vec::new(), None, 0usize);
        for f in &plan.filters {
            requests += 1;
            match self
                .index
                .query_filtered(&q.vector, r.shape.top_k, plan.namespace.as_deref(), f.as_ref())
                .await
            {
                Ok(m) => answers.push(m.into_iter().map(|m| (m.id, m.score)).collect()),
                // A refused filter is this query's result (the naive layout's), not the run's failure.
                Err(Error::Api { status: Some(s), message, .. }) if (400..500).contains(&s) && s != 429 => {
                    error = Some(refusal(r, &message));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let candidates = cloud::merge(self.metric, answers);
        let post_cols: Vec<String> = plan.post.iter().map(|f| f.column.clone()).collect();
        let ids: Vec<String> = candidates.iter().map(|c| c.0.clone()).collect();
        let d1_rows = self.d1_rows(r, &ids, &post_cols)?;
        let n_ctx = r.d1_context.len();
        let got: Vec<(String, f64)> = candidates
            .iter()
            .filter(|(id, _)| {
                plan.post.iter().enumerate().all(|(j, f)| {
                    let array = r.info.spec.column(&f.column).is_some_and(|c| c.ty.array);
                    let cell =
                        d1_rows.get(id).and_then(|row| row.get(n_ctx + j)).cloned().unwrap_or(Cell::Null);
                    cloud::d1_admits(f, &cell, array, q.filter.get(&f.column).unwrap_or(&Value::Null))
                })
            })
            .take(r.shape.k)
            .cloned()
            .collect();
        Ok(Answer { plan, candidates, got, error, requests, d1_rows })
    }

    /// D1's context (and post-filter) cells of `ids`, by vector id.
    fn d1_rows(
        &self,
        r: &Resolved<'_>,
        ids: &[String],
        post_cols: &[String],
    ) -> Result<HashMap<String, Vec<Cell>>> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut cols: Vec<String> = r.d1_context.clone();
        cols.extend(post_cols.iter().map(|c| r.d1_post.get(c).cloned().unwrap_or_else(|| c.clone())));
        let id = format!("CAST({} AS TEXT)", quote_ident(&r.d1_id));
        let select: String = cols.iter().map(|c| format!(", {}", quote_ident(c))).collect();
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = format!("SELECT {id}{select} FROM {} WHERE {id} IN ({marks})", quote_ident(&r.d1_table));
        let what = || format!("reading D1 rows of {} for a query", r.d1_table);
        let mut stmt = self.d1.prepare(&sql).map_err(Error::sqlite(what()))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(ids), |row| {
                let id: String = row.get(0)?;
                let cells = (1..=cols.len())
                    .map(|i| {
                        Ok(match row.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => Cell::Null,
                            rusqlite::types::ValueRef::Integer(v) => Cell::Int(v),
                            rusqlite::types::ValueRef::Real(v) => Cell::Real(v),
                            rusqlite::types::ValueRef::Text(t) => {
                                Cell::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            rusqlite::types::ValueRef::Blob(b) => Cell::Text(hex(b)),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<Cell>>>()?;
                Ok((id, cells))
            })
            .map_err(Error::sqlite(what()))?;
        for row in rows {
            let (id, cells) = row.map_err(Error::sqlite(what()))?;
            out.insert(id, cells);
        }
        Ok(out)
    }

    /// Compares one query's answers and explains the differences.
    #[allow(clippy::too_many_arguments)]
    async fn compare(
        &self,
        conn: &mut crate::source::conn::SourceConn,
        r: &Resolved<'_>,
        q: &QueryVec,
        exact: &[(String, f64)],
        source_matches: usize,
        condition: Option<&str>,
        a: Answer,
    ) -> Result<ShapeQuery> {
        let got_ids: Vec<String> = a.got.iter().map(|g| g.0.clone()).collect();
        let in_d1: HashSet<String> =
            got_ids.iter().filter(|id| a.d1_rows.contains_key(*id)).cloned().collect();
        let exact_set: HashSet<&String> = exact.iter().map(|e| &e.0).collect();
        let extras: Vec<String> = got_ids.iter().filter(|id| !exact_set.contains(id)).cloned().collect();
        let admitted = self.admitted(conn, r, &extras, condition).await?;
        let mut look: Vec<String> =
            exact.iter().map(|e| e.0.clone()).filter(|id| !got_ids.contains(id)).collect();
        look.extend(extras.iter().filter(|id| !admitted.contains(*id)).cloned());
        let stored = if look.is_empty() || a.error.is_some() {
            HashMap::new()
        } else {
            self.index.get_by_ids(&look).await?.into_iter().map(|v| (v.id.clone(), v)).collect()
        };
        let exact_scores: HashMap<String, f64> = a.got.iter().cloned().collect();
        let tie = (exact.len() >= r.shape.k).then(|| {
            let kth = exact[r.shape.k - 1].1;
            (kth, 1e-5 * kth.abs().max(1.0))
        });
        let seen = explain::Seen {
            k: r.shape.k,
            exact,
            got: &a.got,
            candidates: &a.candidates,
            plan: &a.plan,
            error: a.error.as_deref(),
            stored: &stored,
            indexes: &self.indexes,
            in_d1: &in_d1,
            admitted: &admitted,
            tie,
            exact_scores: &exact_scores,
        };
        let (recall, rank_agreement, mut misses) = explain::compare(&seen);
        let context = self.context_misses(conn, r, &got_ids, &a.d1_rows).await?;
        let context_equal = context.is_empty() && in_d1.len() == got_ids.len();
        misses.extend(context);
        misses.truncate(report::MAX_MISSES_LISTED);
        Ok(ShapeQuery {
            id: q.id.clone(),
            filter: Value::Object(q.filter.clone()),
            recall,
            rank_agreement,
            source_matches,
            context_equal,
            error: a.error,
            misses,
        })
    }

    /// Of `ids`, those the query's source condition admits.
    async fn admitted(
        &self,
        conn: &mut crate::source::conn::SourceConn,
        r: &Resolved<'_>,
        ids: &[String],
        condition: Option<&str>,
    ) -> Result<HashSet<String>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let id = format!("CAST({} AS text)", quote_ident(&r.vm.id));
        let cond = condition.map(|c| format!(" AND ({c})")).unwrap_or_default();
        let sql = format!("SELECT {id} FROM {} WHERE {id} = ANY($1){cond}", r.info.spec.sql_name());
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(ids.to_vec())
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::db(format!("checking a query's filter on {}", r.info.spec.qualified())))?;
        Ok(rows.into_iter().collect())
    }

    /// Returned rows whose D1 context differs from the source's.
    async fn context_misses(
        &self,
        conn: &mut crate::source::conn::SourceConn,
        r: &Resolved<'_>,
        ids: &[String],
        d1: &HashMap<String, Vec<Cell>>,
    ) -> Result<Vec<Miss>> {
        if r.shape.context.is_empty() {
            return Ok(Vec::new());
        }
        let source = rows_by_id(conn, &r.info.spec, &r.vm.id, ids, &r.shape.context, "{}::text").await?;
        let mut out = Vec::new();
        for id in ids {
            let (Some(src), Some(cells)) = (source.get(id), d1.get(id)) else { continue };
            for (j, c) in r.shape.context.iter().enumerate() {
                let d1_text = match cells.get(j) {
                    Some(Cell::Text(t)) => Some(t.clone()),
                    Some(Cell::Int(i)) => Some(i.to_string()),
                    Some(Cell::Real(f)) => Some(f.to_string()),
                    _ => None,
                };
                if src[j] != d1_text {
                    let detail =
                        format!("`{c}`: {}", where_they_differ(src[j].as_deref(), d1_text.as_deref()));
                    out.push(Miss {
                        id: id.clone(),
                        side: MissSide::Context,
                        reason: MissReason::ContextDiffers,
                        detail,
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Vectorize's refusal, with the layout's cause when a `property` filter
/// is on an array column (the naive layout: Vectorize filters no arrays).
fn refusal(r: &Resolved<'_>, message: &str) -> String {
    let arrays: Vec<&str> = r
        .shape
        .filters
        .iter()
        .filter(|f| f.vectorize == crate::config::queries::FilterForm::Property)
        .filter(|f| r.info.spec.column(&f.column).is_some_and(|c| c.ty.array))
        .map(|f| f.column.as_str())
        .collect();
    match arrays.first() {
        None => message.to_string(),
        Some(c) => format!(
            "{message}; `{c}` is an array in the metadata and Vectorize filters no arrays (no metadata \
             index, no containment): use vector_metadata_flags for its frequent values, or a post-filter"
        ),
    }
}

/// A window around the first difference of two texts (a long text's start
/// is often the same on both sides).
pub fn where_they_differ(source: Option<&str>, d1: Option<&str>) -> String {
    let (Some(a), Some(b)) = (source, d1) else {
        return format!(
            "source {}, D1 {}",
            source.map_or("NULL", |_| "a value"),
            d1.map_or("NULL", |_| "a value")
        );
    };
    let at = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let window = |s: &str| -> String {
        let start = at.saturating_sub(20);
        let text: String = s.chars().skip(start).take(60).collect();
        format!(
            "{}{text}{}",
            if start > 0 { "…" } else { "" },
            if s.chars().count() > start + 60 { "…" } else { "" }
        )
    };
    format!("differs at character {at}: source {:?}, D1 {:?}", window(a), window(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One shape's summary over its queries.
fn summarize(
    shape: &QueryShape,
    threshold: f64,
    requests: usize,
    mut results: Vec<ShapeQuery>,
) -> ShapeReport {
    let n = results.len();
    let mean = |f: &dyn Fn(&ShapeQuery) -> f64| {
        if n == 0 {
            1.0
        } else {
            results.iter().map(f).sum::<f64>() / n as f64
        }
    };
    let mean_recall = mean(&|q| q.recall);
    let mean_rank = mean(&|q| q.rank_agreement);
    let min_recall = results.iter().map(|q| q.recall).fold(1.0, f64::min);
    let context_equal = results.iter().filter(|q| q.context_equal).count();
    let mut reasons: BTreeMap<MissReason, u64> = BTreeMap::new();
    for m in results.iter().flat_map(|q| &q.misses) {
        *reasons.entry(m.reason).or_default() += 1;
    }
    // A shape the query file gives no query for proves nothing and fails nothing (the report says so).
    let passed = mean_recall >= threshold && context_equal == n && results.iter().all(|q| q.error.is_none());
    results.sort_by(|a, b| a.recall.total_cmp(&b.recall).then_with(|| a.id.cmp(&b.id)));
    results.truncate(report::MAX_QUERIES_LISTED);
    ShapeReport {
        name: shape.name.clone(),
        table: shape.qualified(),
        k: shape.k,
        top_k: shape.top_k,
        filters: shape.filters.iter().map(cloud::describe).collect(),
        queries: n,
        threshold,
        mean_recall,
        min_recall,
        mean_rank_agreement: mean_rank,
        context_equal,
        requests_per_query: if n == 0 { 0.0 } else { requests as f64 / n as f64 },
        passed,
        reasons,
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::where_they_differ;

    #[test]
    fn a_changed_text_shows_where_it_changes() {
        let a = format!("{}The quick brown fox", "x".repeat(200));
        let b = format!("{}The quick brown cat", "x".repeat(200));
        let d = where_they_differ(Some(&a), Some(&b));
        assert!(d.starts_with("differs at character 216"), "{d}");
        assert!(d.contains("brown fox") && d.contains("brown cat"), "{d}");
        assert_eq!(where_they_differ(None, Some("a")), "source NULL, D1 a value");
    }
}
