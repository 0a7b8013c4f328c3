//! The quality axis and the feedback loop, from the store's answers: quality reports, feedback
//! summaries, complaint clusters, the golden dataset, and side-by-side comparisons of two
//! releases or models.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::cluster::{Complaint, ComplaintCluster, MAX_COMPLAINTS, cluster_complaints};
use crate::core::feedback::FeedbackCounts;
use crate::core::quality::{COMPOSITE, QualityRules, SCORED, Streak, two_proportion_z};
use crate::core::rollup::{SKETCH_DURATION, Scope};
use crate::core::time::{DAY_MS, Range};
use crate::store::{GoldenExample, QualityData, QualityQuery, Store, StoreError, TotalsQuery};

pub use crate::store::QualityScope;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreSummary {
    pub count: i64,
    pub mean: Option<f64>,
    /// 10th percentile (nearest rank; exact for scores with two decimals, else within 0.01).
    pub p10: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompositeSummary {
    /// Requests with every composite score.
    pub count: i64,
    pub mean: Option<f64>,
    pub p10: Option<f64>,
    pub below_threshold_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreakSummary {
    /// The current run of bad answers (the longest current run over features, unless the
    /// report is about one feature).
    pub current: u32,
    pub longest: u32,
    /// The current run has reached the escalation length.
    pub escalated: bool,
    /// The escalation length.
    pub length: u32,
    /// Each feature's own streak ("" = requests without a feature).
    pub by_feature: BTreeMap<String, Streak>,
}

/// `GET /api/v1/quality`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityReport {
    /// Requests in the range with at least one score.
    pub count: i64,
    pub scores: BTreeMap<String, ScoreSummary>,
    pub composite: CompositeSummary,
    pub composite_names: Vec<String>,
    pub threshold: f64,
    pub streak: StreakSummary,
}

pub fn summarize(data: &QualityData, rules: &QualityRules, feature: Option<&str>) -> QualityReport {
    let scores = data
        .hists
        .iter()
        .filter(|(name, h)| *name != COMPOSITE && *name != SCORED && h.count() > 0)
        .map(|(name, h)| {
            (
                name.clone(),
                ScoreSummary {
                    count: h.count(),
                    mean: h.mean(),
                    p10: h.quantile(0.10),
                },
            )
        })
        .collect();
    let composite = data.hists.get(COMPOSITE);
    let streak = match feature {
        Some(f) => data.streaks.get(f).copied().unwrap_or_default(),
        None => {
            let mut s = Streak::default();
            for f in data.streaks.values() {
                s.current = s.current.max(f.current);
                s.longest = s.longest.max(f.longest);
                s.escalated |= f.escalated;
            }
            s
        }
    };
    QualityReport {
        count: data.hists.get(SCORED).map_or(0, |h| h.count()),
        scores,
        composite: CompositeSummary {
            count: composite.map_or(0, |h| h.count()),
            mean: composite.and_then(|h| h.mean()),
            p10: composite.and_then(|h| h.quantile(0.10)),
            below_threshold_share: composite.and_then(|h| h.share_below(rules.threshold)),
        },
        composite_names: rules.composite.clone(),
        threshold: rules.threshold,
        streak: StreakSummary {
            current: streak.current,
            longest: streak.longest,
            escalated: streak.escalated,
            length: rules.streak,
            by_feature: data.streaks.clone(),
        },
    }
}

fn quality_query(
    project: &str,
    range: Range,
    scope: &QualityScope,
    rules: &QualityRules,
) -> QualityQuery {
    QualityQuery {
        project: project.to_owned(),
        range,
        model: scope.model.clone(),
        feature: scope.feature.clone(),
        release: scope.release.clone(),
        threshold: rules.threshold,
        streak: rules.streak,
    }
}

pub async fn quality_report(
    store: &dyn Store,
    project: &str,
    range: Range,
    scope: &QualityScope,
    rules: &QualityRules,
) -> Result<QualityReport, StoreError> {
    let data = store
        .quality(quality_query(project, range, scope, rules))
        .await?;
    Ok(summarize(&data, rules, scope.feature.as_deref()))
}

/// A quality or feedback time series of `GET /api/v1/timeseries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QualityMetric {
    /// Mean of each score (and the composite) per bucket: one series per name.
    Score,
    /// thumbs up / (up + down) of the feedback given in the bucket.
    Satisfaction,
    ThumbsUp,
    ThumbsDown,
    Reports,
    Corrections,
}

impl QualityMetric {
    pub const NAMES: &'static str =
        "score, satisfaction, thumbs_up, thumbs_down, reports, corrections";

    pub fn parse(s: &str) -> Option<QualityMetric> {
        Some(match s {
            "score" => QualityMetric::Score,
            "satisfaction" => QualityMetric::Satisfaction,
            "thumbs_up" => QualityMetric::ThumbsUp,
            "thumbs_down" => QualityMetric::ThumbsDown,
            "reports" => QualityMetric::Reports,
            "corrections" => QualityMetric::Corrections,
            _ => return None,
        })
    }

    /// Pure: a feedback metric's value for one bucket; counts are 0 in an empty bucket.
    fn of_feedback(self, c: &FeedbackCounts) -> Option<f64> {
        match self {
            QualityMetric::Score => None,
            QualityMetric::Satisfaction => c.satisfaction_rate(),
            QualityMetric::ThumbsUp => Some(c.thumbs_up as f64),
            QualityMetric::ThumbsDown => Some(c.thumbs_down as f64),
            QualityMetric::Reports => Some(c.reports as f64),
            QualityMetric::Corrections => Some(c.corrections as f64),
        }
    }
}

/// The label under which the composite appears among the score series.
pub const COMPOSITE_SERIES: &str = "composite";

/// A quality time series: each bucket is one exact range query (rollup hours inside, request
/// rows at the ragged edges), so any step works. `name` restricts scores to one name.
pub async fn quality_series(
    store: &dyn Store,
    project: &str,
    buckets: &[(i64, Range)],
    scope: &QualityScope,
    rules: &QualityRules,
    metric: QualityMetric,
    name: Option<&str>,
) -> Result<Vec<(BTreeMap<String, String>, Vec<(i64, f64)>)>, StoreError> {
    if metric != QualityMetric::Score {
        let mut points = Vec::with_capacity(buckets.len());
        for (start, range) in buckets {
            let counts = store
                .feedback_counts(project, *range, scope.clone())
                .await?;
            if let Some(v) = metric.of_feedback(&counts) {
                points.push((*start, v));
            }
        }
        return Ok(vec![(BTreeMap::new(), points)]);
    }
    let mut by_name: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for (start, range) in buckets {
        let data = store
            .quality(quality_query(project, *range, scope, rules))
            .await?;
        for (hist_name, hist) in &data.hists {
            let series_name = match hist_name.as_str() {
                SCORED => continue,
                COMPOSITE => COMPOSITE_SERIES,
                other => other,
            };
            if name.is_some_and(|n| n != series_name) {
                continue;
            }
            if let Some(mean) = hist.mean() {
                by_name
                    .entry(series_name.to_owned())
                    .or_default()
                    .push((*start, mean));
            }
        }
    }
    Ok(by_name
        .into_iter()
        .map(|(n, points)| (BTreeMap::from([("score".to_owned(), n)]), points))
        .collect())
}

/// `GET /api/v1/feedback/summary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackSummary {
    pub days: u32,
    pub thumbs_up: u64,
    pub thumbs_down: u64,
    pub reports: u64,
    pub corrections: u64,
    /// thumbs_up / (thumbs_up + thumbs_down); null without votes.
    pub satisfaction_rate: Option<f64>,
}

impl FeedbackSummary {
    fn of(days: u32, c: FeedbackCounts) -> Self {
        FeedbackSummary {
            days,
            thumbs_up: c.thumbs_up,
            thumbs_down: c.thumbs_down,
            reports: c.reports,
            corrections: c.corrections,
            satisfaction_rate: c.satisfaction_rate(),
        }
    }
}

/// The last `days` days up to and including `now_ms` (feedback stamped "now" counts).
pub fn last_days(now_ms: i64, days: u32) -> Range {
    Range::new(now_ms - i64::from(days) * DAY_MS, now_ms + 1)
}

pub async fn feedback_summary(
    store: &dyn Store,
    project: &str,
    range: Range,
    scope: &QualityScope,
) -> Result<FeedbackSummary, StoreError> {
    let counts = store.feedback_counts(project, range, scope.clone()).await?;
    Ok(FeedbackSummary::of(range_days(range), counts))
}

/// A range's length in whole days (at least 1), for answers that report `days`.
pub fn range_days(range: Range) -> u32 {
    (range.len_ms() as f64 / DAY_MS as f64).round().max(1.0) as u32
}

/// The biggest clusters of complaint comments of the last `days` days.
pub async fn complaints(
    store: &dyn Store,
    project: &str,
    range: Range,
    top: usize,
) -> Result<(usize, Vec<ComplaintCluster>), StoreError> {
    let rows = store.complaints(project, range, MAX_COMPLAINTS).await?;
    let complaints: Vec<Complaint> = rows
        .into_iter()
        .map(|(request_id, comment, ts_ms)| Complaint {
            request_id,
            comment,
            ts_ms,
        })
        .collect();
    let n = complaints.len();
    // Clustering is CPU work: off the async workers.
    let clusters = tokio::task::spawn_blocking(move || cluster_complaints(&complaints, top))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
    Ok((n, clusters))
}

/// One line per corrected input: of several corrections of the same input the newest wins
/// (a later correction is a better answer). Corrections whose request (or its captured input)
/// is unknown cannot be replayed and are left out; their count is the second value.
/// `rows` come oldest first; the answer is oldest first too.
pub fn dedup_golden(rows: Vec<GoldenExample>) -> (Vec<GoldenExample>, usize) {
    let mut skipped = 0;
    let mut newest: BTreeMap<String, usize> = BTreeMap::new();
    let mut kept: Vec<Option<GoldenExample>> = Vec::new();
    for row in rows {
        let Some(input) = row.input.clone() else {
            skipped += 1;
            continue;
        };
        if let Some(&i) = newest.get(&input) {
            kept[i] = None;
        }
        newest.insert(input, kept.len());
        kept.push(Some(row));
    }
    (kept.into_iter().flatten().collect(), skipped)
}

pub async fn golden(
    store: &dyn Store,
    project: &str,
    since_ms: i64,
    feature: Option<String>,
) -> Result<(Vec<GoldenExample>, usize), StoreError> {
    let rows = store.corrections(project, since_ms, feature).await?;
    Ok(dedup_golden(rows))
}

/// What a comparison sets side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompareBy {
    Release,
    Model,
}

impl CompareBy {
    pub fn parse(s: &str) -> Option<CompareBy> {
        match s {
            "release" => Some(CompareBy::Release),
            "model" => Some(CompareBy::Model),
            _ => None,
        }
    }
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub value: String,
    pub requests: i64,
    pub errors: i64,
    pub error_rate: Option<f64>,
    /// Mean cost of the priced requests, USD.
    pub cost_per_request_usd: Option<f64>,
    pub unpriced_requests: i64,
    pub p95_latency_ms: Option<f64>,
    pub quality: CompositeSummary,
    pub thumbs_up: u64,
    pub thumbs_down: u64,
    pub satisfaction_rate: Option<f64>,
}

/// A two-proportion z-test of a rate between the sides.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateTest {
    /// b's rate minus a's.
    pub difference: f64,
    pub z: f64,
    pub p_value: f64,
}

/// `GET /api/v1/compare`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub by: CompareBy,
    pub a: Side,
    pub b: Side,
    /// Tests of error rate, satisfaction rate and the share of answers below the quality
    /// threshold; null where a side has no data or neither side varies.
    pub tests: BTreeMap<&'static str, Option<RateTest>>,
}

fn rate(x: i64, n: i64) -> Option<f64> {
    (n > 0).then(|| x as f64 / n as f64)
}

async fn side(
    store: &dyn Store,
    project: &str,
    range: Range,
    by: CompareBy,
    value: &str,
    rules: &QualityRules,
) -> Result<(Side, i64), StoreError> {
    let mut scope = Scope::default();
    let mut qscope = QualityScope::default();
    let mut fscope = QualityScope::default();
    match by {
        CompareBy::Release => {
            scope.release = Some(value.to_owned());
            qscope.release = Some(value.to_owned());
            fscope.release = Some(value.to_owned());
        }
        CompareBy::Model => {
            scope.model = Some(value.to_owned());
            qscope.model = Some(value.to_owned());
            fscope.model = Some(value.to_owned());
        }
    }
    let mut q = TotalsQuery::new(project, range);
    q.scope = scope;
    q.with_sketches = true;
    let groups = store.totals(q).await?;
    let mut totals = crate::core::rollup::Totals::default();
    let mut sketches = crate::core::sketch::SketchSet::new();
    for g in &groups {
        totals.add(&g.totals);
        if let Some(s) = &g.sketches {
            sketches.merge(s);
        }
    }
    let data = store
        .quality(quality_query(project, range, &qscope, rules))
        .await?;
    let report = summarize(&data, rules, None);
    let below = data
        .hists
        .get(COMPOSITE)
        .and_then(|h| h.share_below(rules.threshold))
        .map_or(0, |s| (s * report.composite.count as f64).round() as i64);
    let feedback = store.feedback_counts(project, range, fscope).await?;
    let priced = totals.requests - totals.unpriced_requests;
    Ok((
        Side {
            value: value.to_owned(),
            requests: totals.requests,
            errors: totals.errors,
            error_rate: rate(totals.errors, totals.requests),
            cost_per_request_usd: (priced > 0)
                .then(|| totals.cost_nanos as f64 / 1e9 / priced as f64),
            unpriced_requests: totals.unpriced_requests,
            p95_latency_ms: sketches.get(SKETCH_DURATION).and_then(|s| s.quantile(0.95)),
            quality: report.composite,
            thumbs_up: feedback.thumbs_up,
            thumbs_down: feedback.thumbs_down,
            satisfaction_rate: feedback.satisfaction_rate(),
        },
        below,
    ))
}

fn test(xa: u64, na: u64, xb: u64, nb: u64) -> Option<RateTest> {
    let (z, p_value) = two_proportion_z(xb, nb, xa, na)?;
    Some(RateTest {
        difference: xb as f64 / nb as f64 - xa as f64 / na as f64,
        z,
        p_value,
    })
}

pub async fn compare(
    store: &dyn Store,
    project: &str,
    range: Range,
    by: CompareBy,
    a: &str,
    b: &str,
    rules: &QualityRules,
) -> Result<Comparison, StoreError> {
    let (a, below_a) = side(store, project, range, by, a, rules).await?;
    let (b, below_b) = side(store, project, range, by, b, rules).await?;
    let n = |x: i64| x.max(0) as u64;
    let mut tests = BTreeMap::new();
    tests.insert(
        "error_rate",
        test(n(a.errors), n(a.requests), n(b.errors), n(b.requests)),
    );
    tests.insert(
        "satisfaction_rate",
        test(
            a.thumbs_up,
            a.thumbs_up + a.thumbs_down,
            b.thumbs_up,
            b.thumbs_up + b.thumbs_down,
        ),
    );
    tests.insert(
        "below_threshold_share",
        test(
            n(below_a),
            n(a.quality.count),
            n(below_b),
            n(b.quality.count),
        ),
    );
    Ok(Comparison { by, a, b, tests })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(id: &str, input: Option<&str>, correction: &str, ts: i64) -> GoldenExample {
        GoldenExample {
            input: input.map(str::to_owned),
            expected_output: correction.to_owned(),
            original_output: Some("wrong".into()),
            request_id: id.to_owned(),
            model: Some("m".into()),
            feature: None,
            release: None,
            comment: None,
            ts_ms: ts,
        }
    }

    #[test]
    fn golden_keeps_the_newest_correction_per_input_and_skips_unknown_inputs() {
        let (rows, skipped) = dedup_golden(vec![
            example("r1", Some("What is 2+2?"), "4", 1),
            example("r2", Some("Capital of France?"), "Paris", 2),
            example("r3", None, "lost", 3),
            example("r4", Some("What is 2+2?"), "Four (4).", 4),
        ]);
        assert_eq!(skipped, 1);
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.request_id.as_str(), r.expected_output.as_str()))
            .collect();
        assert_eq!(got, [("r2", "Paris"), ("r4", "Four (4).")]);
    }
}
