//! The quality axis in SQLite: scores, feedback, the per-request quality state, the per-hour
//! score histograms, escalation streaks, and the queries over them.
//!
//! Every write that can change a request's quality (a score, a thumb, the request itself
//! arriving after its scores, a replaced request) lists the request as touched; before the
//! transaction commits, [`settle`] recomputes each touched request's effective scores and
//! composite, moves its contribution in `rollup_quality_1h` (subtracting what its stored state
//! added, adding the new one: histograms subtract exactly), and feeds a newly known composite
//! into its feature's streak, in the order the requests were touched.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::core::heuristics::HeuristicSet;
use crate::core::feedback::{Feedback, FeedbackCounts, FeedbackKind, USER_RATING};
use crate::core::quality::{
    COMPOSITE, QualityRules, SCORED, Score, ScoreHist, ScoreSource, Streak, composite,
    effective_scores,
};
use crate::core::time::{HOUR_MS, Range, Source, bucket_start, plan};

/// What the writer remembers of quality between transactions.
pub(super) struct QualityState {
    pub rules: QualityRules,
    /// Evaluators run on records assembled from traces (events arrive already scored).
    pub heuristics: Option<HeuristicSet>,
    /// `project \0 request_id` of scored requests that have not arrived yet, so a new record
    /// costs a hash lookup, not a query; `None` until loaded (and after a failed write).
    awaiting: Option<HashSet<String>>,
}

fn awaiting_key(project: &str, request_id: &str) -> String {
    let mut k = String::with_capacity(project.len() + request_id.len() + 1);
    k.push_str(project);
    k.push('\0');
    k.push_str(request_id);
    k
}

impl QualityState {
    pub fn new(rules: QualityRules, heuristics: Option<HeuristicSet>) -> Self {
        QualityState {
            rules,
            heuristics,
            awaiting: None,
        }
    }

    /// Forgets the cache (it may hold changes of a transaction that rolled back).
    pub fn forget(&mut self) {
        self.awaiting = None;
    }

    fn awaiting(&mut self, conn: &Connection) -> Result<&mut HashSet<String>, StoreError> {
        if self.awaiting.is_none() {
            let mut set = HashSet::new();
            let mut stmt = conn.prepare_cached(
                "SELECT project, request_id FROM request_quality WHERE ts_ms IS NULL",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                set.insert(awaiting_key(row.get_ref(0)?.as_str()?, row.get_ref(1)?.as_str()?));
            }
            self.awaiting = Some(set);
        }
        Ok(self.awaiting.get_or_insert_with(HashSet::new))
    }

    /// Whether scores are waiting for this (newly stored) request.
    pub fn is_awaited(
        &mut self,
        conn: &Connection,
        project: &str,
        request_id: &str,
    ) -> Result<bool, StoreError> {
        let set = self.awaiting(conn)?;
        Ok(!set.is_empty() && set.contains(&awaiting_key(project, request_id)))
    }
}

/// Requests whose quality may have changed in this transaction, in the order touched.
#[derive(Default)]
pub(super) struct Touched {
    order: Vec<(String, String)>,
    seen: HashSet<(String, String)>,
}

impl Touched {
    pub fn add(&mut self, project: &str, request_id: &str) {
        let key = (project.to_owned(), request_id.to_owned());
        if self.seen.insert(key.clone()) {
            self.order.push(key);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

const UPSERT_SCORE: &str = "INSERT INTO scores (project, request_id, name, source, value, comment, ts_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (project, request_id, name, source) DO UPDATE SET \
     value = excluded.value, comment = excluded.comment, ts_ms = excluded.ts_ms";

/// Stores scores (the same request, name and source replaces the earlier one).
pub(super) fn put_scores(
    tx: &Connection,
    project: &str,
    scores: &[Score],
    touched: &mut Touched,
) -> Result<(), StoreError> {
    let mut put = tx.prepare_cached(UPSERT_SCORE)?;
    for s in scores {
        put.execute(params![
            project,
            s.request_id,
            s.name,
            s.source.as_str(),
            s.value,
            s.comment,
            s.ts_ms
        ])?;
        touched.add(project, &s.request_id);
    }
    Ok(())
}

/// Stores feedback; a thumb also becomes the request's `user_rating` score (source human).
/// Feedback with a `feedback_id` already stored replaces it.
pub(super) fn put_feedback(
    tx: &Connection,
    project: &str,
    items: &[Feedback],
    received_ms: i64,
    touched: &mut Touched,
) -> Result<(), StoreError> {
    let mut delete = tx.prepare_cached(
        "DELETE FROM feedback WHERE project = ?1 AND feedback_id = ?2 RETURNING request_id, type",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO feedback (project, feedback_id, request_id, type, comment, correction, \
         user_id, ts_ms, received_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut unrate = tx.prepare_cached(
        "DELETE FROM scores WHERE project = ?1 AND request_id = ?2 AND name = ?3 \
         AND source = 'human'",
    )?;
    let mut rate = tx.prepare_cached(UPSERT_SCORE)?;
    for f in items {
        if let Some(id) = &f.feedback_id {
            let replaced: Option<(String, String)> = delete
                .query_row(params![project, id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            // A replaced thumb takes its rating with it (the new one may be a report).
            if let Some((request_id, kind)) = replaced
                && matches!(kind.as_str(), "thumbs_up" | "thumbs_down")
            {
                unrate.execute(params![project, request_id, USER_RATING])?;
                touched.add(project, &request_id);
            }
        }
        insert.execute(params![
            project,
            f.feedback_id,
            f.request_id,
            f.kind.as_str(),
            f.comment,
            f.correction,
            f.user_id,
            f.ts_ms,
            received_ms
        ])?;
        let rating = match f.kind {
            FeedbackKind::ThumbsUp => Some(1.0),
            FeedbackKind::ThumbsDown => Some(0.0),
            _ => None,
        };
        if let Some(value) = rating {
            rate.execute(params![
                project,
                f.request_id,
                USER_RATING,
                ScoreSource::Human.as_str(),
                value,
                f.comment,
                f.ts_ms
            ])?;
            touched.add(project, &f.request_id);
        }
    }
    Ok(())
}

/// The labels of a request that the quality rollups are keyed by.
#[derive(Debug, Clone, PartialEq)]
struct Labels {
    ts_ms: i64,
    model: String,
    feature: String,
    release: String,
}

/// The stored quality state of a request.
struct Stored {
    labels: Option<Labels>,
    scores: BTreeMap<String, f64>,
    composite: Option<f64>,
    streaked: bool,
}

type HistKey = (String, i64, String, String, String, String);

fn contribute(
    hists: &mut HashMap<HistKey, ScoreHist>,
    project: &str,
    labels: &Labels,
    scores: &BTreeMap<String, f64>,
    composite: Option<f64>,
    sign: i64,
) {
    let hour = bucket_start(labels.ts_ms, HOUR_MS);
    let mut add = |name: &str, value: f64| {
        hists
            .entry((
                project.to_owned(),
                hour,
                labels.model.clone(),
                labels.feature.clone(),
                labels.release.clone(),
                name.to_owned(),
            ))
            .or_default()
            .add(value, sign);
    };
    if scores.is_empty() {
        return;
    }
    add(SCORED, 1.0);
    for (name, value) in scores {
        add(name, *value);
    }
    if let Some(c) = composite {
        add(COMPOSITE, c);
    }
}

/// A feature's streak and the requests of its current run (the newest `rules.streak`).
struct StreakRow {
    streak: Streak,
    run: Vec<(String, i64, f64)>,
    changed: bool,
}

/// Recomputes the quality of every touched request (see the module doc).
pub(super) fn settle(
    tx: &Connection,
    touched: Touched,
    state: &mut QualityState,
    detected_ms: i64,
) -> Result<(), StoreError> {
    if touched.is_empty() {
        return Ok(());
    }
    let rules = state.rules.clone();
    let mut hists: HashMap<HistKey, ScoreHist> = HashMap::new();
    let mut streaks: BTreeMap<(String, String), StreakRow> = BTreeMap::new();
    let mut load_state = tx.prepare_cached(
        "SELECT ts_ms, model, feature, release, scores, composite, streaked FROM request_quality \
         WHERE project = ?1 AND request_id = ?2",
    )?;
    let mut load_scores = tx.prepare_cached(
        "SELECT name, source, value FROM scores WHERE project = ?1 AND request_id = ?2",
    )?;
    let mut load_labels = tx.prepare_cached(
        "SELECT ts_ms, model, COALESCE(feature, ''), COALESCE(release, '') FROM requests \
         WHERE project = ?1 AND request_id = ?2",
    )?;
    let mut put_state = tx.prepare_cached(
        "INSERT INTO request_quality (project, request_id, ts_ms, model, feature, release, \
         scores, composite, streaked) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (project, request_id) DO UPDATE SET ts_ms = excluded.ts_ms, \
         model = excluded.model, feature = excluded.feature, release = excluded.release, \
         scores = excluded.scores, composite = excluded.composite, streaked = excluded.streaked",
    )?;
    let mut delete_state =
        tx.prepare_cached("DELETE FROM request_quality WHERE project = ?1 AND request_id = ?2")?;

    for (project, request_id) in touched.order {
        let old = load_state
            .query_row(params![project, request_id], |r| {
                let labels = match r.get::<_, Option<i64>>(0)? {
                    Some(ts_ms) => Some(Labels {
                        ts_ms,
                        model: r.get(1)?,
                        feature: r.get(2)?,
                        release: r.get(3)?,
                    }),
                    None => None,
                };
                Ok((labels, r.get::<_, String>(4)?, r.get(5)?, r.get(6)?))
            })
            .optional()?
            .map(|(labels, scores, composite, streaked)| {
                Ok::<_, StoreError>(Stored {
                    labels,
                    scores: serde_json::from_str(&scores)
                        .map_err(|e| StoreError::Corrupt(format!("request_quality.scores: {e}")))?,
                    composite,
                    streaked,
                })
            })
            .transpose()?;
        let rows: Vec<(String, String, f64)> = load_scores
            .query_map(params![project, request_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        let scores = effective_scores(rows.iter().map(|(name, source, value)| {
            (
                name.as_str(),
                ScoreSource::parse(source).unwrap_or(ScoreSource::Api),
                *value,
            )
        }));
        let labels = load_labels
            .query_row(params![project, request_id], |r| {
                Ok(Labels {
                    ts_ms: r.get(0)?,
                    model: r.get(1)?,
                    feature: r.get(2)?,
                    release: r.get(3)?,
                })
            })
            .optional()?;
        let composite = composite(&scores, &rules.composite);

        let mut streaked = false;
        if let Some(old) = &old {
            streaked = old.streaked;
            if let Some(l) = &old.labels {
                contribute(&mut hists, &project, l, &old.scores, old.composite, -1);
            }
        }
        if let Some(l) = &labels {
            contribute(&mut hists, &project, l, &scores, composite, 1);
            // A composite enters its feature's streak once: when it is first known. Later
            // corrections move the aggregates, not the streak (that order has passed).
            if let Some(c) = composite
                && !streaked
            {
                streaked = true;
                let row = match streaks.entry((project.clone(), l.feature.clone())) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(load_streak(tx, &project, &l.feature)?)
                    }
                };
                observe(tx, row, &project, l, &request_id, c, &rules, detected_ms)?;
            }
        }

        let awaiting = state.awaiting(tx)?;
        let key = awaiting_key(&project, &request_id);
        if scores.is_empty() && !streaked {
            delete_state.execute(params![project, request_id])?;
            awaiting.remove(&key);
            continue;
        }
        let scores_json = serde_json::to_string(&scores)
            .map_err(|e| StoreError::Corrupt(format!("scores: {e}")))?;
        put_state.execute(params![
            project,
            request_id,
            labels.as_ref().map(|l| l.ts_ms),
            labels.as_ref().map(|l| l.model.as_str()),
            labels.as_ref().map(|l| l.feature.as_str()),
            labels.as_ref().map(|l| l.release.as_str()),
            scores_json,
            composite,
            streaked
        ])?;
        if labels.is_some() {
            awaiting.remove(&key);
        } else {
            awaiting.insert(key);
        }
    }

    apply_hists(tx, hists)?;
    let mut put_streak = tx.prepare_cached(
        "INSERT INTO quality_streaks (project, feature, current, longest, escalated, run) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (project, feature) DO UPDATE SET \
         current = excluded.current, longest = excluded.longest, \
         escalated = excluded.escalated, run = excluded.run",
    )?;
    for ((project, feature), row) in streaks {
        if !row.changed {
            continue;
        }
        let run = serde_json::to_string(&row.run)
            .map_err(|e| StoreError::Corrupt(format!("streak run: {e}")))?;
        put_streak.execute(params![
            project,
            feature,
            row.streak.current,
            row.streak.longest,
            row.streak.escalated,
            run
        ])?;
    }
    Ok(())
}

fn load_streak(tx: &Connection, project: &str, feature: &str) -> Result<StreakRow, StoreError> {
    let row = tx
        .prepare_cached(
            "SELECT current, longest, escalated, run FROM quality_streaks \
             WHERE project = ?1 AND feature = ?2",
        )?
        .query_row(params![project, feature], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .optional()?;
    Ok(match row {
        None => StreakRow {
            streak: Streak::default(),
            run: Vec::new(),
            changed: false,
        },
        Some((current, longest, escalated, run)) => StreakRow {
            streak: Streak {
                current,
                longest,
                escalated,
            },
            run: serde_json::from_str(&run)
                .map_err(|e| StoreError::Corrupt(format!("quality_streaks.run: {e}")))?,
            changed: false,
        },
    })
}

/// Feeds one composite into a feature's streak; stores the escalation it raises, if any.
#[allow(clippy::too_many_arguments)]
fn observe(
    tx: &Connection,
    row: &mut StreakRow,
    project: &str,
    labels: &Labels,
    request_id: &str,
    composite: f64,
    rules: &QualityRules,
    detected_ms: i64,
) -> Result<(), StoreError> {
    row.changed = true;
    let raised = row
        .streak
        .observe(composite, rules.threshold, rules.streak);
    if row.streak.current == 0 {
        row.run.clear();
    } else {
        row.run
            .push((request_id.to_owned(), labels.ts_ms, composite));
        let keep = rules.streak.max(1) as usize;
        if row.run.len() > keep {
            row.run.drain(..row.run.len() - keep);
        }
    }
    if raised {
        let ids: Vec<&str> = row.run.iter().map(|(id, _, _)| id.as_str()).collect();
        let mean = row.run.iter().map(|(_, _, c)| c).sum::<f64>() / row.run.len().max(1) as f64;
        let first = row.run.iter().map(|(_, ts, _)| *ts).min().unwrap_or(labels.ts_ms);
        let last = row.run.iter().map(|(_, ts, _)| *ts).max().unwrap_or(labels.ts_ms);
        tx.prepare_cached(
            "INSERT INTO quality_escalations (project, feature, raised_ms, detected_ms, streak, \
             threshold, request_ids, mean_composite, first_ts_ms, last_ts_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            project,
            labels.feature,
            labels.ts_ms,
            detected_ms,
            row.streak.current,
            rules.threshold,
            serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()),
            mean,
            first,
            last
        ])?;
    }
    Ok(())
}

fn apply_hists(tx: &Connection, hists: HashMap<HistKey, ScoreHist>) -> Result<(), StoreError> {
    let mut get = tx.prepare_cached(
        "SELECT hist FROM rollup_quality_1h WHERE project = ?1 AND bucket_ms = ?2 AND model = ?3 \
         AND feature = ?4 AND release = ?5 AND name = ?6",
    )?;
    let mut put = tx.prepare_cached(
        "INSERT INTO rollup_quality_1h (project, bucket_ms, model, feature, release, name, \
         count, hist) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (project, bucket_ms, model, feature, release, name) DO UPDATE SET \
         count = excluded.count, hist = excluded.hist",
    )?;
    let mut delete = tx.prepare_cached(
        "DELETE FROM rollup_quality_1h WHERE project = ?1 AND bucket_ms = ?2 AND model = ?3 \
         AND feature = ?4 AND release = ?5 AND name = ?6",
    )?;
    for ((project, hour, model, feature, release, name), delta) in hists {
        if delta.is_empty() && delta.sum_micros == 0 {
            continue;
        }
        let key = params![project, hour, model, feature, release, name];
        let stored: Option<Vec<u8>> = get.query_row(key, |r| r.get(0)).optional()?;
        let mut hist = match stored {
            Some(bytes) => ScoreHist::decode(&bytes).map_err(StoreError::Corrupt)?,
            None => ScoreHist::default(),
        };
        hist.merge(&delta);
        if hist.is_empty() {
            delete.execute(key)?;
        } else {
            put.execute(params![
                project,
                hour,
                model,
                feature,
                release,
                name,
                hist.count(),
                hist.encode()
            ])?;
        }
    }
    Ok(())
}

/// A quality question: scores over a range, optionally of one model, feature or release.
#[derive(Debug, Clone)]
pub struct QualityQuery {
    pub project: String,
    pub range: Range,
    pub model: Option<String>,
    pub feature: Option<String>,
    pub release: Option<String>,
    pub threshold: f64,
    pub streak: u32,
}

/// Its answer: merged histograms per score name (plus `(composite)` and `(scored)`), and the
/// streak of each feature recounted over the range in request-time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QualityData {
    pub hists: BTreeMap<String, ScoreHist>,
    pub streaks: BTreeMap<String, Streak>,
}

fn label_filters(q: &QualityQuery, first: usize, values: &mut Vec<String>) -> String {
    let mut sql = String::new();
    for (column, value) in [
        ("model", &q.model),
        ("feature", &q.feature),
        ("release", &q.release),
    ] {
        if let Some(v) = value {
            values.push(v.clone());
            sql.push_str(&format!(" AND {column} = ?{}", first + values.len() - 1));
        }
    }
    sql
}

/// Answers a quality query: whole hours from the rollups, the ragged edges from the
/// per-request states (exact to the millisecond).
pub(super) fn query_quality(conn: &Connection, q: &QualityQuery) -> Result<QualityData, StoreError> {
    let mut data = QualityData::default();
    let mut labels = Vec::new();
    let filters = label_filters(q, 4, &mut labels);
    for segment in plan(q.range, &[HOUR_MS]) {
        let (a, b) = (segment.range.from_ms, segment.range.to_ms);
        match segment.source {
            Source::Tier(_) => {
                let sql = format!(
                    "SELECT name, hist FROM rollup_quality_1h WHERE project = ?1 \
                     AND bucket_ms >= ?2 AND bucket_ms < ?3{filters}"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let mut params: Vec<&dyn rusqlite::ToSql> = vec![&q.project, &a, &b];
                params.extend(labels.iter().map(|l| l as &dyn rusqlite::ToSql));
                let mut rows = stmt.query(params.as_slice())?;
                while let Some(row) = rows.next()? {
                    let name: String = row.get(0)?;
                    let hist = ScoreHist::decode(row.get_ref(1)?.as_blob()?)
                        .map_err(StoreError::Corrupt)?;
                    data.hists.entry(name).or_default().merge(&hist);
                }
            }
            Source::Raw => {
                let sql = format!(
                    "SELECT scores, composite FROM request_quality WHERE project = ?1 \
                     AND ts_ms >= ?2 AND ts_ms < ?3{filters}"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let mut params: Vec<&dyn rusqlite::ToSql> = vec![&q.project, &a, &b];
                params.extend(labels.iter().map(|l| l as &dyn rusqlite::ToSql));
                let mut rows = stmt.query(params.as_slice())?;
                while let Some(row) = rows.next()? {
                    let scores: BTreeMap<String, f64> =
                        serde_json::from_str(row.get_ref(0)?.as_str()?).map_err(|e| {
                            StoreError::Corrupt(format!("request_quality.scores: {e}"))
                        })?;
                    if scores.is_empty() {
                        continue;
                    }
                    data.hists.entry(SCORED.to_owned()).or_default().add(1.0, 1);
                    for (name, value) in scores {
                        data.hists.entry(name).or_default().add(value, 1);
                    }
                    if let Some(c) = row.get::<_, Option<f64>>(1)? {
                        data.hists.entry(COMPOSITE.to_owned()).or_default().add(c, 1);
                    }
                }
            }
        }
    }
    let sql = format!(
        "SELECT feature, composite FROM request_quality WHERE project = ?1 AND ts_ms >= ?2 \
         AND ts_ms < ?3 AND composite IS NOT NULL{filters} ORDER BY ts_ms, request_id"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&q.project, &q.range.from_ms, &q.range.to_ms];
    params.extend(labels.iter().map(|l| l as &dyn rusqlite::ToSql));
    let mut rows = stmt.query(params.as_slice())?;
    while let Some(row) = rows.next()? {
        let feature: String = row.get(0)?;
        let c: f64 = row.get(1)?;
        data.streaks
            .entry(feature)
            .or_default()
            .observe(c, q.threshold, q.streak);
    }
    Ok(data)
}

/// A stored quality escalation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Escalation {
    pub id: i64,
    /// The feature ("" for requests without one).
    pub feature: String,
    /// Time of the request that completed the run (unix ms): what ranges select on.
    pub raised_ms: i64,
    /// Wall-clock time llmwatch noticed it (later when scores arrive late).
    pub detected_ms: i64,
    pub streak: u32,
    pub threshold: f64,
    /// The requests of the run, oldest first.
    pub request_ids: Vec<String>,
    pub mean_composite: f64,
    pub first_ts_ms: i64,
    pub last_ts_ms: i64,
}

pub(super) fn query_escalations(
    conn: &Connection,
    project: &str,
    range: Range,
    feature: Option<&str>,
    limit: usize,
) -> Result<Vec<Escalation>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, feature, raised_ms, streak, threshold, request_ids, mean_composite, \
         first_ts_ms, last_ts_ms, detected_ms FROM quality_escalations WHERE project = ?1 \
         AND raised_ms >= ?2 AND raised_ms < ?3 AND (?4 IS NULL OR feature = ?4) \
         ORDER BY raised_ms DESC, id DESC LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![project, range.from_ms, range.to_ms, feature, limit as i64],
        |r| {
            Ok((
                Escalation {
                    id: r.get(0)?,
                    feature: r.get(1)?,
                    raised_ms: r.get(2)?,
                    streak: r.get(3)?,
                    threshold: r.get(4)?,
                    request_ids: Vec::new(),
                    mean_composite: r.get(6)?,
                    first_ts_ms: r.get(7)?,
                    last_ts_ms: r.get(8)?,
                    detected_ms: r.get(9)?,
                },
                r.get::<_, String>(5)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (mut e, ids) = row?;
        e.request_ids = serde_json::from_str(&ids)
            .map_err(|err| StoreError::Corrupt(format!("quality_escalations.request_ids: {err}")))?;
        out.push(e);
    }
    Ok(out)
}

/// Which requests' feedback to count: all, or those of one model or release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedbackScope {
    pub model: Option<String>,
    pub feature: Option<String>,
    pub release: Option<String>,
}

impl FeedbackScope {
    fn is_all(&self) -> bool {
        self.model.is_none() && self.feature.is_none() && self.release.is_none()
    }
}

/// Feedback counts of a range (by feedback time), of the requests in scope.
pub(super) fn query_feedback_counts(
    conn: &Connection,
    project: &str,
    range: Range,
    scope: &FeedbackScope,
) -> Result<FeedbackCounts, StoreError> {
    let sql = if scope.is_all() {
        "SELECT type, COUNT(*) FROM feedback WHERE project = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 \
         GROUP BY type"
    } else {
        "SELECT f.type, COUNT(*) FROM feedback f JOIN requests r \
         ON r.project = f.project AND r.request_id = f.request_id \
         WHERE f.project = ?1 AND f.ts_ms >= ?2 AND f.ts_ms < ?3 \
         AND (?4 IS NULL OR r.model = ?4) AND (?5 IS NULL OR r.feature = ?5) \
         AND (?6 IS NULL OR r.release = ?6) GROUP BY f.type"
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let mut counts = FeedbackCounts::default();
    let mut rows = if scope.is_all() {
        stmt.query(params![project, range.from_ms, range.to_ms])?
    } else {
        stmt.query(params![
            project,
            range.from_ms,
            range.to_ms,
            scope.model,
            scope.feature,
            scope.release
        ])?
    };
    while let Some(row) = rows.next()? {
        let kind: String = row.get(0)?;
        let n: i64 = row.get(1)?;
        if let Some(k) = FeedbackKind::parse(&kind) {
            counts.add(k, n.max(0) as u64);
        }
    }
    Ok(counts)
}

/// The comments of thumbs-down and reports in a range (request id, comment, unix ms), newest
/// first, at most `limit`.
pub(super) fn query_complaints(
    conn: &Connection,
    project: &str,
    range: Range,
    limit: usize,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT request_id, comment, ts_ms FROM feedback WHERE project = ?1 \
         AND ts_ms >= ?2 AND ts_ms < ?3 AND type IN ('thumbs_down', 'report') \
         AND comment IS NOT NULL AND TRIM(comment) <> '' ORDER BY ts_ms DESC, id DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![project, range.from_ms, range.to_ms, limit as i64],
        |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One golden-dataset line: a correction with the request it corrects.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GoldenExample {
    pub input: Option<String>,
    pub expected_output: String,
    pub original_output: Option<String>,
    pub request_id: String,
    pub model: Option<String>,
    pub feature: Option<String>,
    pub release: Option<String>,
    pub comment: Option<String>,
    /// When the correction was given (unix ms).
    pub ts_ms: i64,
}

/// Corrections given at or after `since_ms` (of one feature), with their requests, oldest
/// first. Deduplication is the caller's (`core::quality::dedup_golden`).
pub(super) fn query_corrections(
    conn: &Connection,
    project: &str,
    since_ms: i64,
    feature: Option<&str>,
) -> Result<Vec<GoldenExample>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.request_id, f.correction, f.comment, f.ts_ms, r.input, r.output, r.model, \
         r.feature, r.release FROM feedback f LEFT JOIN requests r \
         ON r.project = f.project AND r.request_id = f.request_id \
         WHERE f.project = ?1 AND f.type = 'correction' AND f.ts_ms >= ?2 \
         AND f.correction IS NOT NULL AND (?3 IS NULL OR r.feature = ?3) \
         ORDER BY f.ts_ms, f.id",
    )?;
    let rows = stmt.query_map(params![project, since_ms, feature], |r| {
        Ok(GoldenExample {
            request_id: r.get(0)?,
            expected_output: r.get(1)?,
            comment: r.get(2)?,
            ts_ms: r.get(3)?,
            input: r.get(4)?,
            original_output: r.get(5)?,
            model: r.get(6)?,
            feature: r.get(7)?,
            release: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
