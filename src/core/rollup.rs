//! Rollups: additive totals per time bucket and series, folded from priced records.
//!
//! Money is counted in integer nano-USD so that totals add up exactly across any grouping and a
//! replaced record subtracts exactly what it added. Pure: storage applies the deltas built here.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;
use serde::Serialize;

use super::pricing::PriceTable;
use super::record::{Record, Status};
use super::sketch::{Sketch, SketchSet};
use super::time::{DAY_MS, HOUR_MS, MINUTE_MS, bucket_start};

/// Nano-USD per USD.
pub const NANOS_PER_USD: f64 = 1e9;

/// Converts a USD amount to whole nano-USD (rounded to nearest).
pub fn usd_to_nanos(usd: f64) -> i64 {
    (usd * NANOS_PER_USD).round() as i64
}

/// Converts nano-USD to USD.
pub fn nanos_to_usd(nanos: i64) -> f64 {
    nanos as f64 / NANOS_PER_USD
}

/// A record after enrichment: its cost, or `None` when its model has no price.
#[derive(Debug, Clone, PartialEq)]
pub struct PricedRecord {
    pub record: Record,
    pub cost_nanos: Option<i64>,
}

impl PricedRecord {
    /// Prices `record` by its model and timestamp; unknown models stay unpriced.
    pub fn new(record: Record, prices: &PriceTable) -> Self {
        let cost_nanos = prices
            .cost(&record.model, record.timestamp_ms, &record.usage)
            .map(usd_to_nanos);
        Self { record, cost_nanos }
    }
}

/// Additive totals of a set of requests. Signed so a replaced record can be subtracted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Totals {
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_nanos: i64,
    pub unpriced_requests: i64,
    pub unpriced_tokens: i64,
    pub duration_ms_sum: f64,
    /// Sum over requests of wall time not covered by any stage.
    pub unaccounted_ms_sum: f64,
}

impl Totals {
    /// The contribution of one record.
    pub fn of(record: &Record, cost_nanos: Option<i64>) -> Self {
        let u = &record.usage;
        let tokens = (u.input_tokens + u.output_tokens) as i64;
        Self {
            requests: 1,
            errors: i64::from(record.status == Status::Error),
            input_tokens: u.input_tokens as i64,
            output_tokens: u.output_tokens as i64,
            cached_input_tokens: u.cached_input_tokens as i64,
            cache_write_tokens: u.cache_write_tokens as i64,
            reasoning_tokens: u.reasoning_tokens as i64,
            cost_nanos: cost_nanos.unwrap_or(0),
            unpriced_requests: i64::from(cost_nanos.is_none()),
            unpriced_tokens: if cost_nanos.is_none() { tokens } else { 0 },
            duration_ms_sum: record.duration_ms,
            unaccounted_ms_sum: record.unaccounted_ms(),
        }
    }

    pub fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cached_input_tokens += o.cached_input_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.cost_nanos += o.cost_nanos;
        self.unpriced_requests += o.unpriced_requests;
        self.unpriced_tokens += o.unpriced_tokens;
        self.duration_ms_sum += o.duration_ms_sum;
        self.unaccounted_ms_sum += o.unaccounted_ms_sum;
    }

    pub fn negated(&self) -> Totals {
        Totals {
            requests: -self.requests,
            errors: -self.errors,
            input_tokens: -self.input_tokens,
            output_tokens: -self.output_tokens,
            cached_input_tokens: -self.cached_input_tokens,
            cache_write_tokens: -self.cache_write_tokens,
            reasoning_tokens: -self.reasoning_tokens,
            cost_nanos: -self.cost_nanos,
            unpriced_requests: -self.unpriced_requests,
            unpriced_tokens: -self.unpriced_tokens,
            duration_ms_sum: -self.duration_ms_sum,
            unaccounted_ms_sum: -self.unaccounted_ms_sum,
        }
    }

    /// Input plus output tokens.
    pub fn tokens(&self) -> i64 {
        self.input_tokens + self.output_tokens
    }

    pub fn cost_usd(&self) -> f64 {
        nanos_to_usd(self.cost_nanos)
    }

    /// True when nothing is counted (a bucket whose only record was replaced away).
    pub fn is_zero(&self) -> bool {
        self.requests == 0 && self.tokens() == 0 && self.cost_nanos == 0
    }
}

/// Restricts a query to matching requests; `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub model: Option<String>,
    pub feature: Option<String>,
    pub user: Option<String>,
    pub release: Option<String>,
}

/// A label requests can be grouped or filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Model,
    Feature,
    User,
    Release,
    /// `error_type` of failed requests.
    ErrorType,
}

impl Dimension {
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Model => "model",
            Dimension::Feature => "feature",
            Dimension::User => "user",
            Dimension::Release => "release",
            Dimension::ErrorType => "error_type",
        }
    }
}

impl Scope {
    /// The dimensions this scope filters on.
    pub fn dimensions(&self) -> Vec<Dimension> {
        [
            (Dimension::Model, &self.model),
            (Dimension::Feature, &self.feature),
            (Dimension::User, &self.user),
            (Dimension::Release, &self.release),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(d, _)| d)
        .collect()
    }

    /// The value this scope requires for `dim`, if any.
    pub fn get(&self, dim: Dimension) -> Option<&str> {
        match dim {
            Dimension::Model => self.model.as_deref(),
            Dimension::Feature => self.feature.as_deref(),
            Dimension::User => self.user.as_deref(),
            Dimension::Release => self.release.as_deref(),
            Dimension::ErrorType => None,
        }
    }
}

/// Bucket widths of the per-series rollup tiers, widest first (UTC-aligned days, hours, minutes).
pub const SERIES_TIERS: [i64; 3] = [DAY_MS, HOUR_MS, MINUTE_MS];
/// Index of the hour tier in `SERIES_TIERS`: its rows also carry the drift deltas.
pub const HOUR_TIER: usize = 1;
const _: () = assert!(SERIES_TIERS[HOUR_TIER] == HOUR_MS);
/// Bucket widths of the per-error-type rollup tiers, widest first.
pub const ERROR_TIERS: [i64; 2] = [HOUR_MS, MINUTE_MS];

/// Sketch names in a rollup row's `SketchSet`.
pub const SKETCH_DURATION: &str = "duration";
pub const SKETCH_TTFT: &str = "ttft";
/// Prefix of a stage's sketch name: `stage:model_inference`.
pub const SKETCH_STAGE_PREFIX: &str = "stage:";

/// Adds one request's latencies (duration, TTFT, each stage, in ms) to `set`.
pub fn add_latencies(
    set: &mut SketchSet,
    duration_ms: f64,
    ttft_ms: Option<f64>,
    stages: &BTreeMap<String, f64>,
) {
    set.insert(SKETCH_DURATION, duration_ms);
    if let Some(t) = ttft_ms {
        set.insert(SKETCH_TTFT, t);
    }
    let mut name = String::new();
    for (stage, ms) in stages {
        name.clear();
        name.push_str(SKETCH_STAGE_PREFIX);
        name.push_str(stage);
        set.insert(&name, *ms);
    }
}

/// Categorical drift dimensions of every record (besides `attributes.KEY`); a record counts one
/// value in each dimension it has a label for (`error_type`: failed requests only).
pub const DRIFT_MODEL: &str = "model";
pub const DRIFT_FEATURE: &str = "feature";
pub const DRIFT_RELEASE: &str = "release";
pub const DRIFT_STATUS: &str = "status";
pub const DRIFT_ERROR_TYPE: &str = "error_type";
/// Prefix of an attribute's categorical dimension: `attributes.finish_reason`.
pub const DRIFT_ATTRIBUTE_PREFIX: &str = "attributes.";
/// Most values of one categorical dimension with their own count per (project, hour); values
/// beyond are counted as [`DRIFT_OTHER`]. Storage enforces it (the first values seen in an
/// hour keep their own rows).
pub const MAX_DRIFT_VALUES: usize = 100;
/// Most `attributes.KEY` dimensions counted per (project, hour); later keys are not counted.
pub const MAX_DRIFT_ATTRIBUTE_KEYS: usize = 32;
/// The value that counts the values beyond [`MAX_DRIFT_VALUES`].
pub const DRIFT_OTHER: &str = "(other)";

/// Numeric drift dimensions: the names of the sketches of a per-hour drift row.
pub const NUMERIC_INPUT_TOKENS: &str = "input_tokens";
pub const NUMERIC_OUTPUT_TOKENS: &str = "output_tokens";
pub const NUMERIC_DURATION: &str = "duration_ms";
pub const NUMERIC_TTFT: &str = "ttft_ms";
/// Cost in USD (priced requests only). Costs below `sketch::MIN_INDEXABLE` (1e-6 USD) are in
/// the sketch's exact zero bucket.
pub const NUMERIC_COST: &str = "cost";
pub const NUMERIC_INPUT_CHARS: &str = "input_chars";
pub const NUMERIC_OUTPUT_CHARS: &str = "output_chars";
pub const NUMERIC_DIMENSIONS: [&str; 7] = [
    NUMERIC_INPUT_TOKENS,
    NUMERIC_OUTPUT_TOKENS,
    NUMERIC_DURATION,
    NUMERIC_TTFT,
    NUMERIC_COST,
    NUMERIC_INPUT_CHARS,
    NUMERIC_OUTPUT_CHARS,
];

/// The numeric drift values of one request, in [`NUMERIC_DIMENSIONS`] order (`None`: not
/// known, not counted).
#[allow(clippy::too_many_arguments)]
pub fn numeric_values(
    input_tokens: u64,
    output_tokens: u64,
    duration_ms: f64,
    ttft_ms: Option<f64>,
    cost_nanos: Option<i64>,
    input_chars: Option<u64>,
    output_chars: Option<u64>,
) -> [Option<f64>; 7] {
    [
        Some(input_tokens as f64),
        Some(output_tokens as f64),
        Some(duration_ms),
        ttft_ms,
        cost_nanos.map(nanos_to_usd),
        input_chars.map(|c| c as f64),
        output_chars.map(|c| c as f64),
    ]
}

/// The numeric drift values of a record.
pub fn record_numeric_values(pr: &PricedRecord) -> [Option<f64>; 7] {
    let r = &pr.record;
    numeric_values(
        r.usage.input_tokens,
        r.usage.output_tokens,
        r.duration_ms,
        r.ttft_ms,
        pr.cost_nanos,
        r.input_chars_or_count(),
        r.output_chars_or_count(),
    )
}

/// Adds numeric drift values (from [`numeric_values`]) to `set`.
pub fn add_numeric(set: &mut SketchSet, values: &[Option<f64>; 7]) {
    for (name, v) in NUMERIC_DIMENSIONS.iter().zip(values) {
        if let Some(v) = v {
            set.insert(name, *v);
        }
    }
}

/// Drift changes of one hour-tier series row: signed value counts of the categorical
/// dimensions, and sketches of the numeric ones (or, when `rebuild` is set, a request to
/// recompute the sketches of its (hour, model, feature) from raw rows). Storage keys drift rows
/// by (hour, model, feature): the rows of several releases add up.
///
/// The row's key holds its model, feature and release, so those are one counter; the other
/// dimensions are small maps, and the numeric sketches a fixed array (no lookups by name).
#[derive(Debug, Default)]
pub struct DriftDelta {
    /// Records (signed): the count of the row's model, feature and release.
    records: i64,
    /// Records by status: ok, error.
    status: [i64; 2],
    error_types: HashMap<String, i64>,
    /// Attribute key -> value -> signed count.
    attributes: HashMap<String, HashMap<String, i64>>,
    /// In [`NUMERIC_DIMENSIONS`] order.
    numeric: [Sketch; 7],
    pub rebuild: bool,
}

fn bump(map: &mut HashMap<String, i64>, value: &str, n: i64) {
    match map.get_mut(value) {
        Some(c) => *c += n,
        None => {
            map.insert(value.to_owned(), n);
        }
    }
}

impl DriftDelta {
    /// Folds one record's categorical values with sign `n` (+1 or -1).
    fn fold_values(&mut self, r: &Record, n: i64) {
        self.records += n;
        self.status[usize::from(r.status == Status::Error)] += n;
        if r.status == Status::Error
            && let Some(e) = &r.error_type
        {
            bump(&mut self.error_types, e, n);
        }
        for (k, v) in &r.attributes {
            match self.attributes.get_mut(k.as_str()) {
                Some(values) => bump(values, v, n),
                None => {
                    let mut values = HashMap::default();
                    values.insert(v.clone(), n);
                    self.attributes.insert(k.clone(), values);
                }
            }
        }
    }

    fn add_numeric(&mut self, values: &[Option<f64>; 7]) {
        for (s, v) in self.numeric.iter_mut().zip(values) {
            if let Some(v) = v {
                s.insert(*v);
            }
        }
    }

    /// The non-zero (dimension, value, signed count) changes of the row with key `key`.
    pub fn counts<'a>(&'a self, key: &'a SeriesKey) -> Vec<(Cow<'a, str>, &'a str, i64)> {
        let mut out = Vec::new();
        if self.records != 0 {
            out.push((Cow::Borrowed(DRIFT_MODEL), key.model.as_str(), self.records));
            if !key.feature.is_empty() {
                out.push((Cow::Borrowed(DRIFT_FEATURE), &key.feature, self.records));
            }
            if !key.release.is_empty() {
                out.push((Cow::Borrowed(DRIFT_RELEASE), &key.release, self.records));
            }
        }
        for (status, n) in [Status::Ok, Status::Error].into_iter().zip(self.status) {
            if n != 0 {
                out.push((Cow::Borrowed(DRIFT_STATUS), status.as_str(), n));
            }
        }
        for (e, &n) in &self.error_types {
            if n != 0 {
                out.push((Cow::Borrowed(DRIFT_ERROR_TYPE), e.as_str(), n));
            }
        }
        for (k, values) in &self.attributes {
            let dimension = format!("{DRIFT_ATTRIBUTE_PREFIX}{k}");
            for (v, &n) in values {
                if n != 0 {
                    out.push((Cow::Owned(dimension.clone()), v.as_str(), n));
                }
            }
        }
        out
    }

    /// Whether the row adds numeric values.
    pub fn has_sketches(&self) -> bool {
        self.numeric.iter().any(|s| !s.is_empty())
    }

    /// Merges the row's numeric sketches into `set` (named by [`NUMERIC_DIMENSIONS`]).
    pub fn merge_sketches_into(&self, set: &mut SketchSet) {
        for (name, s) in NUMERIC_DIMENSIONS.iter().zip(&self.numeric) {
            if !s.is_empty() {
                set.merge_sketch(name, s);
            }
        }
    }
}

impl<'a> std::iter::Sum<&'a Totals> for Totals {
    fn sum<I: Iterator<Item = &'a Totals>>(iter: I) -> Totals {
        let mut t = Totals::default();
        for x in iter {
            t.add(x);
        }
        t
    }
}

/// Key of a per-series rollup row. Absent feature/release are the empty string, which
/// validation never lets a record use as a real value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub bucket_ms: i64,
    pub model: String,
    pub feature: String,
    pub release: String,
}

impl SeriesKey {
    pub fn of(r: &Record, width_ms: i64) -> Self {
        SeriesKey {
            bucket_ms: bucket_start(r.timestamp_ms, width_ms),
            model: r.model.clone(),
            feature: r.feature.clone().unwrap_or_default(),
            release: r.release.clone().unwrap_or_default(),
        }
    }
}

/// Key of a per-error-type rollup row (failed requests only; absent type is "").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorKey {
    pub series: SeriesKey,
    pub error_type: String,
}

/// Key of a per-user rollup row; absent user is the empty string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserKey {
    pub bucket_ms: i64,
    pub user_id: String,
}

/// A series rollup change: totals to add and sketches to merge, or, when `rebuild` is set, a
/// request to recompute the row's sketches from raw rows (a replaced record's latencies cannot
/// be taken out of a sketch while keeping min and max exact).
#[derive(Debug, Default)]
pub struct SeriesDelta {
    pub totals: Totals,
    pub sketches: SketchSet,
    pub rebuild: bool,
    /// Drift changes (rows of the hour tier only; empty elsewhere).
    pub drift: DriftDelta,
}

/// Rollup changes from one write batch, ready for storage to apply.
#[derive(Debug, Default)]
pub struct RollupDelta {
    /// One map per width of `SERIES_TIERS`.
    pub series: [HashMap<SeriesKey, SeriesDelta>; 3],
    /// One map per width of `ERROR_TIERS`.
    pub errors: [HashMap<ErrorKey, Totals>; 2],
    pub user_hour: HashMap<UserKey, Totals>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Latencies {
    Add,
    Unchanged,
    Rebuild,
}

/// Index of the minute tier in `SERIES_TIERS`.
const FINEST: usize = SERIES_TIERS.len() - 1;

impl RollupDelta {
    /// Completes the delta once every record is folded: the coarser tiers' sketches are the
    /// merge of the minute rows they contain (cheaper than inserting every value three times).
    pub fn finish(&mut self) {
        let (coarse, finest) = self.series.split_at_mut(FINEST);
        for (key, row) in &finest[0] {
            if row.sketches.is_empty() {
                continue;
            }
            for (width, map) in SERIES_TIERS.iter().zip(coarse.iter_mut()) {
                let coarse_key = SeriesKey {
                    bucket_ms: bucket_start(key.bucket_ms, *width),
                    ..key.clone()
                };
                if let Some(target) = map.get_mut(&coarse_key) {
                    target.sketches.merge(&row.sketches);
                }
            }
        }
    }

    /// Adds a record new to the store.
    pub fn add(&mut self, r: &PricedRecord) {
        self.fold(r, false, Latencies::Add, Latencies::Add);
    }

    /// Folds only the drift part of a record already stored (a backfill of the drift rollups):
    /// hour-tier rows with no totals.
    pub fn add_drift(&mut self, pr: &PricedRecord) {
        let r = &pr.record;
        let row = self.series[HOUR_TIER]
            .entry(SeriesKey::of(r, HOUR_MS))
            .or_default();
        row.drift.fold_values(r, 1);
        row.drift.add_numeric(&record_numeric_values(pr));
    }

    /// The hour-tier rows (their `drift` fields carry the drift changes).
    pub fn hour_rows(&self) -> &HashMap<SeriesKey, SeriesDelta> {
        &self.series[HOUR_TIER]
    }

    /// Replaces `old` by `new` (the same request id sent again).
    pub fn replace(&mut self, old: &PricedRecord, new: &PricedRecord) {
        let (o, n) = (&old.record, &new.record);
        // A plain retry carries the same latencies in the same series minute: sketches stay.
        let same = SeriesKey::of(o, MINUTE_MS) == SeriesKey::of(n, MINUTE_MS)
            && o.duration_ms == n.duration_ms
            && o.ttft_ms == n.ttft_ms
            && o.stages == n.stages;
        let mode = if same {
            Latencies::Unchanged
        } else {
            Latencies::Rebuild
        };
        // Likewise for the drift sketches of its (hour, model, feature).
        let same_numeric = bucket_start(o.timestamp_ms, HOUR_MS)
            == bucket_start(n.timestamp_ms, HOUR_MS)
            && o.model == n.model
            && o.feature == n.feature
            && record_numeric_values(old) == record_numeric_values(new);
        let numeric = if same_numeric {
            Latencies::Unchanged
        } else {
            Latencies::Rebuild
        };
        self.fold(old, true, mode, numeric);
        self.fold(new, false, mode, numeric);
    }

    /// Adds totals that come from no record (aggregated metrics): counters only, no latency
    /// sketches, no user.
    pub fn add_aggregate(
        &mut self,
        ts_ms: i64,
        model: &str,
        feature: Option<&str>,
        release: Option<&str>,
        error_type: Option<&str>,
        t: &Totals,
    ) {
        let key = |width: i64| SeriesKey {
            bucket_ms: bucket_start(ts_ms, width),
            model: model.to_owned(),
            feature: feature.unwrap_or_default().to_owned(),
            release: release.unwrap_or_default().to_owned(),
        };
        for (width, map) in SERIES_TIERS.iter().zip(self.series.iter_mut()) {
            map.entry(key(*width)).or_default().totals.add(t);
        }
        if t.errors != 0 {
            for (width, map) in ERROR_TIERS.iter().zip(self.errors.iter_mut()) {
                let k = ErrorKey {
                    series: key(*width),
                    error_type: error_type.unwrap_or_default().to_owned(),
                };
                map.entry(k).or_default().add(t);
            }
        }
        let k = UserKey {
            bucket_ms: bucket_start(ts_ms, HOUR_MS),
            user_id: String::new(),
        };
        self.user_hour.entry(k).or_default().add(t);
    }

    /// Removes a deleted record (its bucket's sketches are rebuilt from the remaining rows).
    pub fn remove(&mut self, old: &PricedRecord) {
        self.fold(old, true, Latencies::Rebuild, Latencies::Rebuild);
    }

    fn fold(&mut self, pr: &PricedRecord, negate: bool, latencies: Latencies, numeric: Latencies) {
        let r = &pr.record;
        let mut t = Totals::of(r, pr.cost_nanos);
        if negate {
            t = t.negated();
        }
        for (tier, (width, map)) in SERIES_TIERS.iter().zip(self.series.iter_mut()).enumerate() {
            let row = map.entry(SeriesKey::of(r, *width)).or_default();
            row.totals.add(&t);
            match latencies {
                // Only the finest tier takes each value; `finish` merges its sketches upward.
                Latencies::Add if tier == FINEST => {
                    add_latencies(&mut row.sketches, r.duration_ms, r.ttft_ms, &r.stages)
                }
                Latencies::Add | Latencies::Unchanged => {}
                Latencies::Rebuild => row.rebuild = true,
            }
            if tier == HOUR_TIER {
                let drift = &mut row.drift;
                drift.fold_values(r, if negate { -1 } else { 1 });
                match numeric {
                    Latencies::Add => drift.add_numeric(&record_numeric_values(pr)),
                    Latencies::Unchanged => {}
                    Latencies::Rebuild => drift.rebuild = true,
                }
            }
        }
        if r.status == Status::Error {
            for (width, map) in ERROR_TIERS.iter().zip(self.errors.iter_mut()) {
                let key = ErrorKey {
                    series: SeriesKey::of(r, *width),
                    error_type: r.error_type.clone().unwrap_or_default(),
                };
                map.entry(key).or_default().add(&t);
            }
        }
        let key = UserKey {
            bucket_ms: bucket_start(r.timestamp_ms, HOUR_MS),
            user_id: r.user_id.clone().unwrap_or_default(),
        };
        self.user_hour.entry(key).or_default().add(&t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Usage, parse_record};
    use serde_json::json;

    fn rec(id: &str, ts: i64, model: &str, input: u64, output: u64) -> Record {
        let mut r = parse_record(
            &json!({"request_id": id, "model": model, "input_tokens": input,
                     "output_tokens": output, "timestamp": ts}),
            0,
        )
        .unwrap();
        r.usage = Usage {
            input_tokens: input,
            output_tokens: output,
            ..Usage::default()
        };
        r
    }

    fn priced(r: Record, cost: i64) -> PricedRecord {
        PricedRecord {
            record: r,
            cost_nanos: Some(cost),
        }
    }

    #[test]
    fn a_plain_retry_changes_nothing() {
        let mut d = RollupDelta::default();
        let mut a = rec("a", 90_000, "gpt-4o", 100, 10);
        a.duration_ms = 250.0;
        a.status = Status::Error;
        let a = priced(a, 1_234);
        d.add(&a);
        d.replace(&a, &a);
        d.finish();
        for map in &d.series {
            let row = map.values().next().unwrap();
            assert_eq!(row.totals.requests, 1);
            assert_eq!(row.totals.cost_nanos, 1_234);
            assert!(!row.rebuild);
            assert_eq!(row.sketches.get(SKETCH_DURATION).unwrap().count(), 1);
        }
        assert_eq!(d.errors[0].values().next().unwrap().requests, 1);
    }

    #[test]
    fn a_correction_cancels_totals_and_asks_for_a_sketch_rebuild() {
        let mut d = RollupDelta::default();
        let old = priced(rec("a", 90_000, "gpt-4o", 100, 10), 1_234);
        let mut new = old.clone();
        new.record.duration_ms = 900.0;
        new.cost_nanos = Some(2_000);
        d.replace(&old, &new);
        let row = d.series[2].values().next().unwrap();
        assert_eq!((row.totals.requests, row.totals.cost_nanos), (0, 766));
        assert_eq!(row.totals.duration_ms_sum, 900.0);
        assert!(row.rebuild);
        assert!(row.sketches.is_empty());
    }

    #[test]
    fn unpriced_records_count_tokens_not_cost() {
        let t = Totals::of(&rec("a", 0, "mystery", 70, 30), None);
        assert_eq!(
            (t.cost_nanos, t.unpriced_requests, t.unpriced_tokens),
            (0, 1, 100)
        );
    }

    #[test]
    fn records_fold_into_minute_hour_and_day_buckets() {
        let mut d = RollupDelta::default();
        let mut b = rec("b", 119_999, "m", 1, 1);
        b.stages.insert("guardrail".into(), 30.0);
        b.ttft_ms = Some(12.0);
        d.add(&priced(rec("a", 61_000, "m", 1, 1), 5));
        d.add(&priced(b, 7));
        d.add(&priced(rec("c", 120_000, "m", 1, 1), 11));
        d.finish();
        assert_eq!(
            [d.series[0].len(), d.series[1].len(), d.series[2].len()],
            [1, 1, 2]
        );
        let hour = d.series[1].values().next().unwrap();
        assert_eq!((hour.totals.requests, hour.totals.cost_nanos), (3, 23));
        assert_eq!(hour.sketches.get(SKETCH_DURATION).unwrap().count(), 3);
        assert_eq!(hour.sketches.get(SKETCH_TTFT).unwrap().count(), 1);
        assert_eq!(
            hour.sketches.get("stage:guardrail").unwrap().max(),
            Some(30.0)
        );
        assert_eq!(d.user_hour.values().next().unwrap().requests, 3);
        assert!(d.errors.iter().all(|m| m.is_empty()));
    }

    fn drift_of(d: &RollupDelta) -> (BTreeMap<(String, String), i64>, u64, bool) {
        let mut values = BTreeMap::new();
        let (mut n, mut rebuild) = (0, false);
        for (key, row) in d.hour_rows() {
            for (dim, v, c) in row.drift.counts(key) {
                *values.entry((dim.into_owned(), v.to_owned())).or_insert(0) += c;
            }
            let mut set = SketchSet::new();
            row.drift.merge_sketches_into(&mut set);
            n += set.get(NUMERIC_INPUT_TOKENS).map_or(0, |s| s.count());
            rebuild |= row.drift.rebuild;
        }
        values.retain(|_, c| *c != 0);
        (values, n, rebuild)
    }

    #[test]
    fn drift_folds_labels_and_numbers_into_hour_rows() {
        let mut d = RollupDelta::default();
        let mut a = rec("a", 90_000, "m", 0, 10);
        a.feature = Some("chat".into());
        a.status = Status::Error;
        a.error_type = Some("timeout".into());
        a.attributes.insert("finish_reason".into(), "length".into());
        a.input = Some("héllo".into());
        d.add(&priced(a, 0));
        d.add(&PricedRecord {
            record: rec("b", 100_000, "m", 3, 4),
            cost_nanos: None,
        });
        d.finish();
        let (values, n, rebuild) = drift_of(&d);
        let key = |d: &str, v: &str| (d.to_owned(), v.to_owned());
        assert_eq!(
            values,
            BTreeMap::from([
                (key("model", "m"), 2),
                (key("feature", "chat"), 1),
                (key("status", "error"), 1),
                (key("status", "ok"), 1),
                (key("error_type", "timeout"), 1),
                (key("attributes.finish_reason", "length"), 1),
            ])
        );
        assert_eq!((n, rebuild), (2, false));
        // Drift rows live in the hour tier only; two rows (feature "chat" and none).
        assert_eq!(d.hour_rows().len(), 2);
        assert!(
            d.series[0]
                .iter()
                .all(|(k, r)| r.drift.counts(k).is_empty())
        );
        let mut set = SketchSet::new();
        for row in d.hour_rows().values() {
            row.drift.merge_sketches_into(&mut set);
        }
        assert_eq!(set.get(NUMERIC_COST).map(|s| s.count()), Some(1));
        assert_eq!(set.get(NUMERIC_COST).and_then(|s| s.max()), Some(0.0));
        assert_eq!(
            set.get(NUMERIC_INPUT_CHARS).and_then(|s| s.max()),
            Some(5.0)
        );
        assert_eq!(
            set.get(NUMERIC_INPUT_TOKENS).and_then(|s| s.min()),
            Some(0.0)
        );
        assert!(set.get(NUMERIC_TTFT).is_none());
    }

    #[test]
    fn drift_of_a_retry_cancels_and_a_correction_moves_and_rebuilds() {
        let a = priced(rec("a", 90_000, "m", 1, 1), 7);
        let mut d = RollupDelta::default();
        d.replace(&a, &a);
        assert_eq!(drift_of(&d), (BTreeMap::new(), 0, false));
        let mut b = a.clone();
        b.record.model = "n".into();
        let mut d = RollupDelta::default();
        d.replace(&a, &b);
        let (values, n, rebuild) = drift_of(&d);
        assert_eq!(
            values,
            BTreeMap::from([
                (("model".to_owned(), "m".to_owned()), -1),
                (("model".to_owned(), "n".to_owned()), 1),
            ])
        );
        assert_eq!((n, rebuild), (0, true));
        // Same labels, other tokens: the numeric row is rebuilt, counts are unchanged.
        let mut c = a.clone();
        c.record.usage.output_tokens = 9;
        let mut d = RollupDelta::default();
        d.replace(&a, &c);
        assert_eq!(drift_of(&d), (BTreeMap::new(), 0, true));
        // Metric aggregates add no drift data.
        let mut d = RollupDelta::default();
        d.add_aggregate(0, "m", None, None, None, &Totals::of(&a.record, Some(1)));
        assert_eq!(drift_of(&d), (BTreeMap::new(), 0, false));
    }

    #[test]
    fn nanos_round_trip() {
        assert_eq!(usd_to_nanos(0.000_001_5), 1_500);
        assert_eq!(nanos_to_usd(2_500_000_000), 2.5);
    }
}
