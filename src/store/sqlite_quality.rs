//! The quality axis in SQLite: scores, feedback, the per-request quality state, the per-hour
//! score histograms, escalation streaks, and the queries over them.
//!
//! Every write that can change a request's quality (a score, a thumb, the request itself
//! arriving after its scores, a replaced request) lists the request as touched; before the
//! transaction commits, [`settle`] recomputes each touched request's effective scores and
//! composite, moves its contribution in the hourly and daily score histograms (subtracting what its stored state
//! added, adding the new one: histograms subtract exactly), and feeds a newly known composite
//! into its feature's streak, in the order the requests were touched.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::core::feedback::{Feedback, FeedbackCounts, FeedbackKind, USER_RATING};
use crate::core::heuristics::HeuristicSet;
use crate::core::quality::{
    COMPOSITE, QualityRules, RunSummary, SCORED, Score, ScoreHist, ScoreSource, Streak, composite,
    effective_scores,
};
use crate::core::time::{DAY_MS, HOUR_MS, Range, Source, bucket_start, plan};

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
                set.insert(awaiting_key(
                    row.get_ref(0)?.as_str()?,
                    row.get_ref(1)?.as_str()?,
                ));
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
    /// Position in `order` of each request.
    seen: HashMap<(String, String), usize>,
    /// What is known without reading, for requests first stored in this transaction with
    /// their scores (the ingest fast path: no stored state, no other scores).
    fresh: HashMap<usize, Fresh>,
}

/// A request first stored in this transaction, with its only scores.
pub(super) struct Fresh {
    labels: Labels,
    scores: BTreeMap<String, f64>,
}

impl Fresh {
    pub fn of(record: &crate::core::record::Record) -> Fresh {
        Fresh {
            labels: Labels {
                ts_ms: record.timestamp_ms,
                model: record.model.clone(),
                feature: record.feature.clone().unwrap_or_default(),
                release: record.release.clone().unwrap_or_default(),
            },
            scores: effective_scores(
                record
                    .scores
                    .iter()
                    .map(|s| (s.name.as_str(), s.source, s.value)),
            ),
        }
    }
}

impl Touched {
    pub fn add(&mut self, project: &str, request_id: &str) {
        let key = (project.to_owned(), request_id.to_owned());
        match self.seen.get(&key) {
            // Touched again: whatever was known without reading may be stale now.
            Some(i) => {
                self.fresh.remove(i);
            }
            None => {
                self.seen.insert(key.clone(), self.order.len());
                self.order.push(key);
            }
        }
    }

    /// Lists a request first stored in this transaction with its scores (already written).
    pub fn add_fresh(&mut self, project: &str, request_id: &str, fresh: Fresh) {
        let key = (project.to_owned(), request_id.to_owned());
        if self.seen.contains_key(&key) {
            self.add(project, request_id);
            return;
        }
        let i = self.order.len();
        self.seen.insert(key.clone(), i);
        self.order.push(key);
        self.fresh.insert(i, fresh);
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

const UPSERT_SCORE: &str = "INSERT INTO scores (project, request_id, name, source, value, comment, ts_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (project, request_id, name, source) DO UPDATE SET \
     value = excluded.value, comment = excluded.comment, ts_ms = excluded.ts_ms";

/// Stores scores (the same request, name and source replaces the earlier one) and lists
/// their requests for settling.
pub(super) fn put_scores(
    tx: &Connection,
    project: &str,
    scores: &[Score],
    touched: &mut Touched,
) -> Result<(), StoreError> {
    put_score_rows(tx, project, scores)?;
    for s in scores {
        touched.add(project, &s.request_id);
    }
    Ok(())
}

/// Stores scores; settling them is the caller's.
pub(super) fn put_score_rows(
    tx: &Connection,
    project: &str,
    scores: &[Score],
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

/// (project, tier width, bucket, model, feature, release, name).
type HistKey = (String, i64, i64, String, String, String, String);

/// The score histogram tiers: (bucket width, table).
const HIST_TIERS: [(i64, &str); 2] = [
    (DAY_MS, "rollup_quality_1d"),
    (HOUR_MS, "rollup_quality_1h"),
];

fn contribute(
    hists: &mut HashMap<HistKey, ScoreHist>,
    project: &str,
    labels: &Labels,
    scores: &BTreeMap<String, f64>,
    composite: Option<f64>,
    sign: i64,
) {
    let mut add = |name: &str, value: f64| {
        for (width, _) in HIST_TIERS {
            hists
                .entry((
                    project.to_owned(),
                    width,
                    bucket_start(labels.ts_ms, width),
                    labels.model.clone(),
                    labels.feature.clone(),
                    labels.release.clone(),
                    name.to_owned(),
                ))
                .or_default()
                .add(value, sign);
        }
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
    let mut runs: BTreeMap<RunKey, RunChange> = BTreeMap::new();
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

    let Touched {
        order, mut fresh, ..
    } = touched;
    for (i, (project, request_id)) in order.into_iter().enumerate() {
        let (old, scores, labels) = match fresh.remove(&i) {
            Some(f) => (None, f.scores, Some(f.labels)),
            None => {
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
                            scores: serde_json::from_str(&scores).map_err(|e| {
                                StoreError::Corrupt(format!("request_quality.scores: {e}"))
                            })?,
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
                (old, scores, labels)
            }
        };
        let composite = composite(&scores, &rules.composite);

        note_run_change(
            &mut runs,
            &project,
            &request_id,
            old.as_ref(),
            labels.as_ref(),
            composite,
        );
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
    apply_runs(tx, runs, rules.threshold)?;
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

/// (project, feature, UTC hour) of a stretch of composites.
type RunKey = (String, String, i64);

/// How one hour's composites of a feature changed in a transaction.
#[derive(Default)]
struct RunChange {
    /// Composites new to the hour: (ts_ms, request_id, composite).
    added: Vec<(i64, String, f64)>,
    /// A composite left the hour or changed in place: the hour is summarised again from rows.
    rescan: bool,
}

fn run_key(project: &str, labels: &Labels) -> RunKey {
    (
        project.to_owned(),
        labels.feature.clone(),
        bucket_start(labels.ts_ms, HOUR_MS),
    )
}

fn note_run_change(
    runs: &mut BTreeMap<RunKey, RunChange>,
    project: &str,
    request_id: &str,
    old: Option<&Stored>,
    labels: Option<&Labels>,
    composite: Option<f64>,
) {
    let before = old.and_then(|o| Some((o.labels.as_ref()?, o.composite?)));
    let after = labels.zip(composite);
    match (before, after) {
        (Some((l0, c0)), Some((l1, c1))) if l0.ts_ms == l1.ts_ms && l0.feature == l1.feature => {
            if c0 != c1 {
                runs.entry(run_key(project, l1)).or_default().rescan = true;
            }
        }
        (before, after) => {
            if let Some((l0, _)) = before {
                runs.entry(run_key(project, l0)).or_default().rescan = true;
            }
            if let Some((l1, c1)) = after {
                runs.entry(run_key(project, l1)).or_default().added.push((
                    l1.ts_ms,
                    request_id.to_owned(),
                    c1,
                ));
            }
        }
    }
}

/// A stored hour summary and the last composite it covers.
struct StoredRun {
    summary: RunSummary,
    last: (i64, String),
}

/// Brings the hour summaries of changed hours up to date: composites appended after an
/// hour's last one extend its summary; anything else summarises the hour again from its rows.
fn apply_runs(
    tx: &Connection,
    runs: BTreeMap<RunKey, RunChange>,
    threshold: f64,
) -> Result<(), StoreError> {
    let mut get = tx.prepare_cached(
        "SELECT n, prefix, suffix, longest, last_ts, last_id FROM rollup_streak_1h \
         WHERE project = ?1 AND feature = ?2 AND bucket_ms = ?3",
    )?;
    for ((project, feature, hour), mut change) in runs {
        let stored = get
            .query_row(params![project, feature, hour], |r| {
                Ok(StoredRun {
                    summary: RunSummary {
                        n: r.get(0)?,
                        prefix: r.get(1)?,
                        suffix: r.get(2)?,
                        longest: r.get(3)?,
                    },
                    last: (r.get(4)?, r.get(5)?),
                })
            })
            .optional()?;
        change.added.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let appends = !change.rescan
            && change.added.first().is_some_and(|(ts, id, _)| {
                stored
                    .as_ref()
                    .is_none_or(|s| (*ts, id.as_str()) > (s.last.0, s.last.1.as_str()))
            });
        let (summary, last) = if appends {
            let mut summary = stored.map(|s| s.summary).unwrap_or_default();
            for (_, _, c) in &change.added {
                summary = summary.then(RunSummary::of(*c, threshold));
            }
            let last = change
                .added
                .last()
                .map(|(ts, id, _)| (*ts, id.clone()))
                .unwrap_or_default();
            (summary, last)
        } else {
            summarize_hour(tx, &project, &feature, hour, threshold)?
        };
        put_run(tx, &project, &feature, hour, summary, &last, threshold)?;
    }
    Ok(())
}

/// One hour of a feature's composites, summarised from their rows.
fn summarize_hour(
    tx: &Connection,
    project: &str,
    feature: &str,
    hour: i64,
    threshold: f64,
) -> Result<(RunSummary, (i64, String)), StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT composite, ts_ms, request_id FROM request_quality WHERE project = ?1 \
         AND feature = ?2 AND ts_ms >= ?3 AND ts_ms < ?4 AND composite IS NOT NULL \
         ORDER BY ts_ms, request_id",
    )?;
    let mut rows = stmt.query(params![project, feature, hour, hour + HOUR_MS])?;
    let mut summary = RunSummary::default();
    let mut last = (0, String::new());
    while let Some(row) = rows.next()? {
        summary = summary.then(RunSummary::of(row.get(0)?, threshold));
        last = (row.get(1)?, row.get(2)?);
    }
    Ok((summary, last))
}

fn put_run(
    tx: &Connection,
    project: &str,
    feature: &str,
    hour: i64,
    summary: RunSummary,
    last: &(i64, String),
    threshold: f64,
) -> Result<(), StoreError> {
    if summary.n == 0 {
        tx.prepare_cached(
            "DELETE FROM rollup_streak_1h WHERE project = ?1 AND feature = ?2 AND bucket_ms = ?3",
        )?
        .execute(params![project, feature, hour])?;
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO rollup_streak_1h (project, feature, bucket_ms, n, prefix, suffix, longest, \
         threshold, last_ts, last_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (project, feature, bucket_ms) DO UPDATE SET n = excluded.n, \
         prefix = excluded.prefix, suffix = excluded.suffix, longest = excluded.longest, \
         threshold = excluded.threshold, last_ts = excluded.last_ts, last_id = excluded.last_id",
    )?
    .execute(params![
        project,
        feature,
        hour,
        summary.n,
        summary.prefix,
        summary.suffix,
        summary.longest,
        threshold,
        last.0,
        last.1
    ])?;
    Ok(())
}

/// Summarises every hour again when the configured threshold is not the one the hour
/// summaries were computed at (a config change).
pub(super) fn ensure_run_threshold(
    conn: &mut Connection,
    threshold: f64,
) -> Result<(), StoreError> {
    let stale: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM rollup_streak_1h WHERE threshold <> ?1)",
        params![threshold],
        |r| r.get(0),
    )?;
    if !stale {
        return Ok(());
    }
    let tx = conn.transaction()?;
    let hours: Vec<(String, String, i64)> = tx
        .prepare("SELECT project, feature, bucket_ms FROM rollup_streak_1h")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (project, feature, hour) in hours {
        let (summary, last) = summarize_hour(&tx, &project, &feature, hour, threshold)?;
        put_run(&tx, &project, &feature, hour, summary, &last, threshold)?;
    }
    tx.commit()?;
    tracing::info!(
        threshold,
        "quality threshold changed: streak summaries rebuilt"
    );
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
    let raised = row.streak.observe(composite, rules.threshold, rules.streak);
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
        let first = row
            .run
            .iter()
            .map(|(_, ts, _)| *ts)
            .min()
            .unwrap_or(labels.ts_ms);
        let last = row
            .run
            .iter()
            .map(|(_, ts, _)| *ts)
            .max()
            .unwrap_or(labels.ts_ms);
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
    for ((project, width, bucket, model, feature, release, name), delta) in hists {
        if delta.is_empty() && delta.sum_micros == 0 {
            continue;
        }
        let table = HIST_TIERS
            .iter()
            .find(|(w, _)| *w == width)
            .map_or("rollup_quality_1h", |(_, t)| *t);
        let key = params![project, bucket, model, feature, release, name];
        let stored: Option<Vec<u8>> = tx
            .prepare_cached(&format!(
                "SELECT hist FROM {table} WHERE project = ?1 AND bucket_ms = ?2 AND model = ?3 \
                 AND feature = ?4 AND release = ?5 AND name = ?6"
            ))?
            .query_row(key, |r| r.get(0))
            .optional()?;
        let mut hist = match stored {
            Some(bytes) => ScoreHist::decode(&bytes).map_err(StoreError::Corrupt)?,
            None => ScoreHist::default(),
        };
        hist.merge(&delta);
        if hist.is_empty() {
            tx.prepare_cached(&format!(
                "DELETE FROM {table} WHERE project = ?1 AND bucket_ms = ?2 AND model = ?3 \
                 AND feature = ?4 AND release = ?5 AND name = ?6"
            ))?
            .execute(key)?;
        } else {
            tx.prepare_cached(&format!(
                "INSERT INTO {table} (project, bucket_ms, model, feature, release, name, count, \
                 hist) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (project, bucket_ms, model, feature, release, name) DO UPDATE SET \
                 count = excluded.count, hist = excluded.hist"
            ))?
            .execute(params![
                project,
                bucket,
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
pub(super) fn query_quality(
    conn: &Connection,
    q: &QualityQuery,
) -> Result<QualityData, StoreError> {
    let mut data = QualityData::default();
    let mut labels = Vec::new();
    let filters = label_filters(q, 4, &mut labels);
    for segment in plan(q.range, &HIST_TIERS.map(|(w, _)| w)) {
        let (a, b) = (segment.range.from_ms, segment.range.to_ms);
        match segment.source {
            Source::Tier(width) => {
                let table = HIST_TIERS
                    .iter()
                    .find(|(w, _)| *w == width)
                    .map_or("rollup_quality_1h", |(_, t)| *t);
                let sql = format!(
                    "SELECT name, hist FROM {table} WHERE project = ?1 \
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
                        data.hists
                            .entry(COMPOSITE.to_owned())
                            .or_default()
                            .add(c, 1);
                    }
                }
            }
        }
    }
    let runs = if q.model.is_none() && q.release.is_none() {
        runs_from_hours(conn, q)?
    } else {
        // A streak is a feature's; restricted to one model or release it is recounted from
        // the requests' rows.
        runs_from_rows(conn, q, q.range, &filters, &labels)?
    };
    data.streaks = runs
        .into_iter()
        .map(|(feature, run)| (feature, run.streak(q.streak)))
        .collect();
    Ok(data)
}

/// Each feature's runs over a range from rows, in request-time order.
fn runs_from_rows(
    conn: &Connection,
    q: &QualityQuery,
    range: Range,
    filters: &str,
    labels: &[String],
) -> Result<BTreeMap<String, RunSummary>, StoreError> {
    let sql = format!(
        "SELECT feature, composite FROM request_quality WHERE project = ?1 AND ts_ms >= ?2 \
         AND ts_ms < ?3 AND composite IS NOT NULL{filters} ORDER BY ts_ms, request_id"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&q.project, &range.from_ms, &range.to_ms];
    params.extend(labels.iter().map(|l| l as &dyn rusqlite::ToSql));
    let mut rows = stmt.query(params.as_slice())?;
    let mut runs: BTreeMap<String, RunSummary> = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let feature: String = row.get(0)?;
        let c: f64 = row.get(1)?;
        let run = runs.entry(feature).or_default();
        *run = run.then(RunSummary::of(c, q.threshold));
    }
    Ok(runs)
}

/// Each feature's runs over a range: whole hours from their summaries, ragged edges from rows.
fn runs_from_hours(
    conn: &Connection,
    q: &QualityQuery,
) -> Result<BTreeMap<String, RunSummary>, StoreError> {
    let mut labels = Vec::new();
    let filters = label_filters(
        &QualityQuery {
            model: None,
            release: None,
            ..q.clone()
        },
        4,
        &mut labels,
    );
    let mut runs: BTreeMap<String, RunSummary> = BTreeMap::new();
    for segment in plan(q.range, &[HOUR_MS]) {
        let part = match segment.source {
            Source::Raw => runs_from_rows(conn, q, segment.range, &filters, &labels)?,
            Source::Tier(_) => {
                let sql = format!(
                    "SELECT feature, n, prefix, suffix, longest FROM rollup_streak_1h \
                     WHERE project = ?1 AND bucket_ms >= ?2 AND bucket_ms < ?3{filters} \
                     ORDER BY feature, bucket_ms"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let (a, b) = (segment.range.from_ms, segment.range.to_ms);
                let mut params: Vec<&dyn rusqlite::ToSql> = vec![&q.project, &a, &b];
                params.extend(labels.iter().map(|l| l as &dyn rusqlite::ToSql));
                let mut rows = stmt.query(params.as_slice())?;
                let mut part: BTreeMap<String, RunSummary> = BTreeMap::new();
                while let Some(row) = rows.next()? {
                    let hour = RunSummary {
                        n: row.get(1)?,
                        prefix: row.get(2)?,
                        suffix: row.get(3)?,
                        longest: row.get(4)?,
                    };
                    let run = part.entry(row.get(0)?).or_default();
                    *run = run.then(hour);
                }
                part
            }
        };
        for (feature, run) in part {
            let total = runs.entry(feature).or_default();
            *total = total.then(run);
        }
    }
    Ok(runs)
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
        e.request_ids = serde_json::from_str(&ids).map_err(|err| {
            StoreError::Corrupt(format!("quality_escalations.request_ids: {err}"))
        })?;
        out.push(e);
    }
    Ok(out)
}

/// Which requests a quality or feedback question is about: all, or those of a model, feature
/// or release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QualityScope {
    pub model: Option<String>,
    pub feature: Option<String>,
    pub release: Option<String>,
}

impl QualityScope {
    fn is_all(&self) -> bool {
        self.model.is_none() && self.feature.is_none() && self.release.is_none()
    }
}

/// Feedback counts of a range (by feedback time), of the requests in scope.
pub(super) fn query_feedback_counts(
    conn: &Connection,
    project: &str,
    range: Range,
    scope: &QualityScope,
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
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
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
