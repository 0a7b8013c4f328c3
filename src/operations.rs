//! The operations axis: latency percentiles by stage, error rate, throughput and time series,
//! computed from rollup totals and merged latency sketches. Shared by the HTTP API and the CLI.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use serde::Serialize;

use crate::core::rollup::{
    Dimension, SKETCH_DURATION, SKETCH_STAGE_PREFIX, SKETCH_TTFT, Scope, Totals,
};
use crate::core::sketch::{RELATIVE_ACCURACY, Sketch, SketchSet};
use crate::core::time::{DAY_MS, Range, calendar_days};
use crate::report::NONE_GROUP;
use crate::store::{GroupTotals, Store, StoreError, TotalsQuery};

/// Percentiles of one latency distribution, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Percentiles {
    fn of(s: Option<&Sketch>) -> Self {
        Percentiles {
            count: s.map_or(0, Sketch::count),
            mean: s.and_then(Sketch::mean),
            p50: s.and_then(|s| s.quantile(0.50)),
            p95: s.and_then(|s| s.quantile(0.95)),
            p99: s.and_then(|s| s.quantile(0.99)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageLatency {
    #[serde(flatten)]
    pub percentiles: Percentiles,
    /// This stage's part of the total request time.
    pub share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unaccounted {
    /// Mean wall time per request not covered by any stage.
    pub mean: Option<f64>,
    pub share: Option<f64>,
}

/// `GET /api/v1/latency`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyReport {
    pub count: u64,
    pub mean: Option<f64>,
    /// Exact.
    pub min: Option<f64>,
    /// Exact.
    pub max: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub ttft: Percentiles,
    pub stages: BTreeMap<String, StageLatency>,
    pub unaccounted: Unaccounted,
    /// The stage with the largest share of total time.
    pub bottleneck: Option<String>,
    /// Quantiles are within this relative error of the exact rank-based quantile.
    pub relative_accuracy: f64,
}

/// Pure: the latency report of requests with these totals and merged sketches.
pub fn summarize_latency(totals: &Totals, sketches: &SketchSet) -> LatencyReport {
    let duration = sketches.get(SKETCH_DURATION);
    let total_ms = totals.duration_ms_sum;
    let share = |part: f64| (total_ms > 0.0).then(|| part / total_ms);
    let stages: BTreeMap<String, StageLatency> = sketches
        .iter()
        .filter_map(|(name, s)| {
            let stage = name.strip_prefix(SKETCH_STAGE_PREFIX)?;
            Some((
                stage.to_owned(),
                StageLatency {
                    percentiles: Percentiles::of(Some(s)),
                    share: share(s.sum()),
                },
            ))
        })
        .collect();
    let bottleneck = stages
        .iter()
        .filter_map(|(name, s)| s.share.map(|share| (name, share)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(name, _)| name.clone());
    let whole = Percentiles::of(duration);
    LatencyReport {
        count: whole.count,
        mean: whole.mean,
        min: duration.and_then(Sketch::min),
        max: duration.and_then(Sketch::max),
        p50: whole.p50,
        p95: whole.p95,
        p99: whole.p99,
        ttft: Percentiles::of(sketches.get(SKETCH_TTFT)),
        stages,
        unaccounted: Unaccounted {
            mean: (totals.requests > 0).then(|| totals.unaccounted_ms_sum / totals.requests as f64),
            share: share(totals.unaccounted_ms_sum),
        },
        bottleneck,
        relative_accuracy: RELATIVE_ACCURACY,
    }
}

fn merged(groups: &[GroupTotals]) -> (Totals, SketchSet) {
    let mut sketches = SketchSet::new();
    for s in groups.iter().filter_map(|g| g.sketches.as_ref()) {
        sketches.merge(s);
    }
    (groups.iter().map(|g| &g.totals).sum(), sketches)
}

pub async fn latency(
    store: &dyn Store,
    project: &str,
    range: Range,
    scope: &Scope,
) -> Result<LatencyReport, StoreError> {
    let groups = store
        .totals(TotalsQuery {
            scope: scope.clone(),
            with_sketches: true,
            ..TotalsQuery::new(project, range)
        })
        .await?;
    let (totals, sketches) = merged(&groups);
    Ok(summarize_latency(&totals, &sketches))
}

/// `GET /api/v1/operations`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperationsReport {
    pub requests: i64,
    pub errors: i64,
    pub error_rate: Option<f64>,
    pub throughput_rps: f64,
    pub tokens_per_s: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: f64,
    /// Requests whose model has no price (their cost is missing from `cost`), and their tokens.
    pub unpriced_requests: i64,
    pub unpriced_tokens: i64,
    /// Failed requests by `error_type` (`"(none)"` when the type was not given).
    pub errors_by_type: BTreeMap<String, i64>,
}

pub async fn operations(
    store: &dyn Store,
    project: &str,
    range: Range,
    scope: &Scope,
) -> Result<OperationsReport, StoreError> {
    let base = TotalsQuery {
        scope: scope.clone(),
        ..TotalsQuery::new(project, range)
    };
    let (all, by_type) = tokio::try_join!(
        store.totals(base.clone()),
        store.totals(TotalsQuery {
            group_by: Some(Dimension::ErrorType),
            ..base.clone()
        }),
    )?;
    let (t, _) = merged(&all);
    let seconds = range.len_ms() as f64 / 1000.0;
    Ok(OperationsReport {
        requests: t.requests,
        errors: t.errors,
        error_rate: (t.requests > 0).then(|| t.errors as f64 / t.requests as f64),
        throughput_rps: t.requests as f64 / seconds,
        tokens_per_s: t.tokens() as f64 / seconds,
        input_tokens: t.input_tokens,
        output_tokens: t.output_tokens,
        cost: t.cost_usd(),
        unpriced_requests: t.unpriced_requests,
        unpriced_tokens: t.unpriced_tokens,
        errors_by_type: by_type
            .into_iter()
            .map(|g| {
                (
                    g.key.unwrap_or_else(|| NONE_GROUP.to_owned()),
                    g.totals.requests,
                )
            })
            .collect(),
    })
}

/// A time-series metric computed from the rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Requests,
    Errors,
    ErrorRate,
    Cost,
    Tokens,
    /// Mean request duration, ms.
    Mean,
    P50,
    P95,
    P99,
    TtftP50,
    TtftP95,
    TtftP99,
    /// Milliseconds per request spent in each stage: one series per stage (and the
    /// unaccounted time), so the series stack to the mean request duration.
    StageMean,
}

impl Metric {
    pub const NAMES: &'static str = "requests, errors, error_rate, cost, tokens, mean, p50, p95, \
         p99, ttft_p50, ttft_p95, ttft_p99, stage_mean";

    pub fn parse(s: &str) -> Option<Metric> {
        Some(match s {
            "requests" => Metric::Requests,
            "errors" => Metric::Errors,
            "error_rate" => Metric::ErrorRate,
            "cost" => Metric::Cost,
            "tokens" => Metric::Tokens,
            "mean" => Metric::Mean,
            "p50" => Metric::P50,
            "p95" => Metric::P95,
            "p99" => Metric::P99,
            "ttft_p50" => Metric::TtftP50,
            "ttft_p95" => Metric::TtftP95,
            "ttft_p99" => Metric::TtftP99,
            "stage_mean" => Metric::StageMean,
            _ => return None,
        })
    }

    fn needs_sketches(self) -> bool {
        matches!(
            self,
            Metric::P50
                | Metric::P95
                | Metric::P99
                | Metric::TtftP50
                | Metric::TtftP95
                | Metric::TtftP99
                | Metric::StageMean
        )
    }

    /// Counts are zero in an empty bucket; ratios and percentiles have no value there.
    /// Additive metrics are also the ones whose series may be folded into `(other)`.
    pub fn is_additive(self) -> bool {
        matches!(
            self,
            Metric::Requests | Metric::Errors | Metric::Cost | Metric::Tokens
        )
    }

    /// Pure: the metric's value for one bucket (`StageMean`: see `stage_means`).
    pub fn value(self, t: &Totals, s: Option<&SketchSet>) -> Option<f64> {
        let q = |name: &str, q: f64| s.and_then(|s| s.get(name)).and_then(|k| k.quantile(q));
        match self {
            Metric::Requests => Some(t.requests as f64),
            Metric::Errors => Some(t.errors as f64),
            Metric::ErrorRate => (t.requests > 0).then(|| t.errors as f64 / t.requests as f64),
            Metric::Cost => Some(t.cost_usd()),
            Metric::Tokens => Some(t.tokens() as f64),
            Metric::Mean => (t.requests > 0).then(|| t.duration_ms_sum / t.requests as f64),
            Metric::P50 => q(SKETCH_DURATION, 0.50),
            Metric::P95 => q(SKETCH_DURATION, 0.95),
            Metric::P99 => q(SKETCH_DURATION, 0.99),
            Metric::TtftP50 => q(SKETCH_TTFT, 0.50),
            Metric::TtftP95 => q(SKETCH_TTFT, 0.95),
            Metric::TtftP99 => q(SKETCH_TTFT, 0.99),
            Metric::StageMean => None,
        }
    }
}

/// The label of the wall time no stage measured, among the stage series.
pub const UNACCOUNTED_STAGE: &str = "(unaccounted)";

/// Pure: milliseconds per request of each stage in one bucket, plus the unaccounted time.
/// A stage's total is its sketch's exact sum; dividing by every request of the bucket (not only
/// those that ran the stage) makes the values add up to the mean request duration.
pub fn stage_means(t: &Totals, s: Option<&SketchSet>) -> Vec<(String, f64)> {
    if t.requests <= 0 {
        return Vec::new();
    }
    let n = t.requests as f64;
    let mut out: Vec<(String, f64)> = s
        .into_iter()
        .flat_map(SketchSet::iter)
        .filter_map(|(name, k)| {
            let stage = name.strip_prefix(SKETCH_STAGE_PREFIX)?;
            Some((stage.to_owned(), k.sum() / n))
        })
        .collect();
    out.push((UNACCOUNTED_STAGE.to_owned(), t.unaccounted_ms_sum / n));
    out
}

/// Parses a step like `60s`, `5m`, `1h`, `1d` into milliseconds (a whole number of minutes).
pub fn parse_step(s: &str) -> Result<i64, String> {
    let err = || format!("expected a step like 60s, 5m, 1h or 1d, got {s:?}");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| err())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        _ => return Err(err()),
    };
    let ms = n.checked_mul(unit_ms).ok_or_else(err)?;
    if ms <= 0 || ms % 60_000 != 0 {
        return Err(format!(
            "the step must be a positive whole number of minutes, got {s:?}"
        ));
    }
    Ok(ms)
}

/// Most points a time-series answer may hold per series.
pub const MAX_POINTS: i64 = 11_000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    /// `[unix_ms, value]` pairs, oldest first.
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeSeries {
    pub metric: String,
    pub step_s: i64,
    pub series: Vec<Series>,
}

/// What a time-series request asks for.
#[derive(Debug, Clone)]
pub struct SeriesRequest {
    pub range: Range,
    pub scope: Scope,
    /// The metric's name as requested (echoed in the answer).
    pub metric_name: String,
    pub metric: Metric,
    pub step_ms: i64,
    pub group_by: Option<Dimension>,
    /// With `group_by` and an additive metric: keep the `top` series with the largest sums and
    /// fold the rest into one series labelled `(other)`.
    pub top: Option<usize>,
}

/// The label of the series that folds the groups beyond `top`.
pub const OTHER_GROUP: &str = "(other)";

/// The buckets of a series over `range`, oldest first, each with the part of `range` it covers:
/// UTC-aligned multiples of the step, except `1d`, whose buckets are calendar days in `tz`.
pub fn buckets(range: Range, step_ms: i64, tz: Tz) -> Vec<(i64, Range)> {
    if step_ms == DAY_MS {
        return calendar_days(range, tz, MAX_POINTS as usize)
            .into_iter()
            .map(|d| (d.day.from_ms, d.clipped))
            .collect();
    }
    let first = range.from_ms.div_euclid(step_ms) * step_ms;
    (first..range.to_ms)
        .step_by(step_ms as usize)
        .map(|b| {
            (
                b,
                Range::new(b.max(range.from_ms), (b + step_ms).min(range.to_ms)),
            )
        })
        .collect()
}

/// A time series over `range` (see `buckets`).
pub async fn timeseries(
    store: &dyn Store,
    project: &str,
    request: SeriesRequest,
    tz: Tz,
) -> Result<TimeSeries, StoreError> {
    let SeriesRequest {
        range,
        scope,
        metric_name,
        metric,
        step_ms,
        group_by,
        top,
    } = request;
    let base = TotalsQuery {
        scope,
        group_by,
        with_sketches: metric.needs_sketches(),
        ..TotalsQuery::new(project, range)
    };
    let buckets = buckets(range, step_ms, tz);
    let mut groups: Vec<GroupTotals> = Vec::new();
    if step_ms == DAY_MS {
        for (start, clipped) in &buckets {
            for mut g in store
                .totals(TotalsQuery {
                    range: *clipped,
                    ..base.clone()
                })
                .await?
            {
                g.bucket_ms = Some(*start);
                groups.push(g);
            }
        }
    } else {
        groups = store
            .totals(TotalsQuery {
                step_ms: Some(step_ms),
                ..base
            })
            .await?;
    }
    let mut by_label: BTreeMap<Option<String>, BTreeMap<i64, GroupTotals>> = BTreeMap::new();
    for g in groups {
        by_label
            .entry(g.key.clone())
            .or_default()
            .insert(g.bucket_ms.unwrap_or_default(), g);
    }
    if by_label.is_empty() && group_by.is_none() {
        by_label.insert(None, BTreeMap::new());
    }
    let group_labels = |key: Option<String>| match group_by {
        None => BTreeMap::new(),
        Some(d) => BTreeMap::from([(
            d.as_str().to_owned(),
            key.unwrap_or_else(|| NONE_GROUP.to_owned()),
        )]),
    };
    let mut series = Vec::new();
    for (key, points) in by_label {
        if metric == Metric::StageMean {
            let mut stages: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
            for (b, g) in &points {
                for (stage, v) in stage_means(&g.totals, g.sketches.as_ref()) {
                    stages.entry(stage).or_default().push((*b, v));
                }
            }
            for (stage, points) in stages {
                let mut labels = group_labels(key.clone());
                labels.insert("stage".to_owned(), stage);
                series.push(Series { labels, points });
            }
            continue;
        }
        let points = buckets
            .iter()
            .filter_map(|(b, _)| {
                let v = match points.get(b) {
                    Some(g) => metric.value(&g.totals, g.sketches.as_ref()),
                    None if metric.is_additive() => Some(0.0),
                    None => None,
                };
                v.map(|v| (*b, v))
            })
            .collect();
        series.push(Series {
            labels: group_labels(key),
            points,
        });
    }
    if let (Some(n), Some(d)) = (top, group_by) {
        if metric.is_additive() {
            series = fold_beyond_top(series, n, d.as_str());
        }
    }
    Ok(TimeSeries {
        metric: metric_name,
        step_s: step_ms / 1000,
        series,
    })
}

/// Pure: keeps the `n` series with the largest sums (largest first) and adds the others point
/// by point into one series labelled `label = (other)`. Every series of an additive metric has
/// a point in every bucket, in the same order.
pub fn fold_beyond_top(mut series: Vec<Series>, n: usize, label: &str) -> Vec<Series> {
    let sum = |s: &Series| s.points.iter().map(|p| p.1).sum::<f64>();
    series.sort_by(|a, b| sum(b).total_cmp(&sum(a)));
    if series.len() <= n {
        return series;
    }
    let rest = series.split_off(n);
    let mut other = Series {
        labels: BTreeMap::from([(label.to_owned(), OTHER_GROUP.to_owned())]),
        points: rest[0].points.iter().map(|(t, _)| (*t, 0.0)).collect(),
    };
    for s in &rest {
        for (acc, (_, v)) in other.points.iter_mut().zip(&s.points) {
            acc.1 += v;
        }
    }
    series.push(other);
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_to_whole_minutes() {
        assert_eq!(parse_step("60s"), Ok(60_000));
        assert_eq!(parse_step("5m"), Ok(300_000));
        assert_eq!(parse_step("1h"), Ok(3_600_000));
        assert_eq!(parse_step("1d"), Ok(DAY_MS));
        for bad in ["90s", "0m", "m", "5", "1w", "-5m", ""] {
            assert!(parse_step(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn latency_summary_shares_and_bottleneck() {
        // Two requests: 1000 ms (guardrail 100, model 700) and 500 ms (guardrail 300, model 100).
        let mut s = SketchSet::new();
        for (d, g, m) in [(1000.0, 100.0, 700.0), (500.0, 300.0, 100.0)] {
            s.insert(SKETCH_DURATION, d);
            s.insert("stage:guardrail", g);
            s.insert("stage:model_inference", m);
        }
        let totals = Totals {
            requests: 2,
            duration_ms_sum: 1500.0,
            unaccounted_ms_sum: 300.0,
            ..Totals::default()
        };
        let r = summarize_latency(&totals, &s);
        assert_eq!((r.count, r.min, r.max), (2, Some(500.0), Some(1000.0)));
        assert_eq!(r.mean, Some(750.0));
        let model = &r.stages["model_inference"];
        assert!((model.share.unwrap() - 800.0 / 1500.0).abs() < 1e-12);
        assert!((r.stages["guardrail"].share.unwrap() - 400.0 / 1500.0).abs() < 1e-12);
        assert_eq!(r.bottleneck.as_deref(), Some("model_inference"));
        assert_eq!(r.unaccounted.mean, Some(150.0));
        assert!((r.unaccounted.share.unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(r.ttft.count, 0);
        assert_eq!(r.ttft.p50, None);
    }

    #[test]
    fn empty_latency_has_no_values() {
        let r = summarize_latency(&Totals::default(), &SketchSet::new());
        assert_eq!((r.count, r.p50, r.bottleneck), (0, None, None));
    }
}
