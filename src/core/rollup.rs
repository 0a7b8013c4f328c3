//! Rollups: additive totals per time bucket and series, folded from priced records.
//!
//! Money is counted in integer nano-USD so that totals add up exactly across any grouping and a
//! replaced record subtracts exactly what it added. Pure: storage applies the deltas built here.

use std::collections::HashMap;

use serde::Serialize;

use super::pricing::PriceTable;
use super::record::{Record, Status};
use super::time::{HOUR_MS, MINUTE_MS, bucket_start};

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
}

impl Dimension {
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Model => "model",
            Dimension::Feature => "feature",
            Dimension::User => "user",
            Dimension::Release => "release",
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
        }
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

/// Key of a per-user rollup row; absent user is the empty string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserKey {
    pub bucket_ms: i64,
    pub user_id: String,
}

/// Rollup changes from one write batch, ready for storage to add to its tables.
#[derive(Debug, Default)]
pub struct RollupDelta {
    pub series_minute: HashMap<SeriesKey, Totals>,
    pub series_hour: HashMap<SeriesKey, Totals>,
    pub user_hour: HashMap<UserKey, Totals>,
}

impl RollupDelta {
    /// Adds (or with `negate`, subtracts) one record's contribution to every tier.
    pub fn fold(&mut self, record: &Record, cost_nanos: Option<i64>, negate: bool) {
        let mut t = Totals::of(record, cost_nanos);
        if negate {
            t = t.negated();
        }
        let feature = record.feature.clone().unwrap_or_default();
        let release = record.release.clone().unwrap_or_default();
        for (width, map) in [
            (MINUTE_MS, &mut self.series_minute),
            (HOUR_MS, &mut self.series_hour),
        ] {
            let key = SeriesKey {
                bucket_ms: bucket_start(record.timestamp_ms, width),
                model: record.model.clone(),
                feature: feature.clone(),
                release: release.clone(),
            };
            map.entry(key).or_default().add(&t);
        }
        let key = UserKey {
            bucket_ms: bucket_start(record.timestamp_ms, HOUR_MS),
            user_id: record.user_id.clone().unwrap_or_default(),
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

    #[test]
    fn replacing_a_record_cancels_exactly() {
        let mut d = RollupDelta::default();
        let a = rec("a", 90_000, "gpt-4o", 100, 10);
        d.fold(&a, Some(1_234), false);
        d.fold(&a, Some(1_234), true);
        for t in d.series_minute.values().chain(d.series_hour.values()) {
            assert!(t.is_zero());
            assert_eq!(t.duration_ms_sum, 0.0);
        }
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
    fn records_fold_into_minute_and_hour_buckets() {
        let mut d = RollupDelta::default();
        d.fold(&rec("a", 61_000, "m", 1, 1), Some(5), false);
        d.fold(&rec("b", 119_999, "m", 1, 1), Some(7), false);
        d.fold(&rec("c", 120_000, "m", 1, 1), Some(11), false);
        assert_eq!(d.series_minute.len(), 2);
        assert_eq!(d.series_hour.len(), 1);
        let hour = d.series_hour.values().next().unwrap();
        assert_eq!((hour.requests, hour.cost_nanos), (3, 23));
        assert_eq!(d.user_hour.values().next().unwrap().requests, 3);
    }

    #[test]
    fn nanos_round_trip() {
        assert_eq!(usd_to_nanos(0.000_001_5), 1_500);
        assert_eq!(nanos_to_usd(2_500_000_000), 2.5);
    }
}
