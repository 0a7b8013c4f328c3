//! Prometheus exporter: counters and histograms of what llmwatch ingested, plus budget gauges.
//!
//! [`Metrics::observe`] is called by the single writer for every committed record (records that
//! replaced an earlier one are skipped by the caller, so counters never count a request twice).
//! [`Metrics::render`] produces the text exposition format 0.0.4 for `GET /metrics`.
//!
//! Names follow the Prometheus conventions checked by `promtool check metrics`: counters end in
//! `_total`, base units only (seconds, USD), snake_case labels, HELP on every metric. Duration
//! histograms use the OpenTelemetry GenAI `gen_ai.client.operation.duration` bucket advice.
//!
//! Label cardinality is capped per label name (`model`, `feature`, `error_type`, `stage`): the
//! first `max_label_values` distinct values get their own series, later values are folded into
//! `"other"` and counted in `llmwatch_label_values_folded_total{label}`. The placeholders
//! `"(none)"` (no feature) and `"unknown"` (no error type) are always admitted and do not use up
//! the cap.
//!
//! Money is accumulated in integer nano-USD, like the rollups, and converted to USD when rendered,
//! so `llmwatch_cost_usd_total` is exactly the sum the API reports for the same records.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use prometheus::{
    Counter, CounterVec, Encoder as _, GaugeVec, Histogram, HistogramOpts, HistogramVec,
    IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::core::record::Status;
use crate::core::rollup::{PricedRecord, nanos_to_usd};

/// Bucket upper bounds (seconds) of every duration histogram: the OpenTelemetry GenAI semantic
/// conventions' advice for `gen_ai.client.operation.duration`.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// Label value of a request without a feature.
pub const NO_FEATURE: &str = "(none)";
/// Label value of an error without an error type.
pub const UNKNOWN_ERROR_TYPE: &str = "unknown";
/// Label value that values beyond the cardinality cap are folded into.
pub const OTHER: &str = "other";

/// One budget's state for the budget gauges (see `report::BudgetStatus`).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetGauge {
    pub name: String,
    /// `"day"`, `"week"` or `"month"`.
    pub period: &'static str,
    pub spent_usd: f64,
    pub limit_usd: f64,
}

/// The label names whose values are capped.
#[derive(Debug, Clone, Copy)]
enum Capped {
    Model = 0,
    Feature = 1,
    ErrorType = 2,
    Stage = 3,
}

const CAPPED_NAMES: [&str; 4] = ["model", "feature", "error_type", "stage"];

/// The Prometheus exporter. Cheap to share: `Send + Sync`, all methods take `&self`.
pub struct Metrics {
    registry: Registry,
    vecs: Vecs,
    state: Mutex<State>,
    /// Serializes renders: the cost counters and budget gauges are rewritten before each gather.
    render_lock: Mutex<()>,
}

/// The registered metric families.
struct Vecs {
    requests: IntCounterVec,
    errors: IntCounterVec,
    tokens: IntCounterVec,
    cost: CounterVec,
    unpriced_requests: IntCounterVec,
    unpriced_tokens: IntCounterVec,
    request_duration: HistogramVec,
    stage_duration: HistogramVec,
    ttft: HistogramVec,
    budget_spent: GaugeVec,
    budget_limit: GaugeVec,
}

/// Cached series handles by capped label values, so that the common case of `observe` is a few
/// hash lookups by `&str` (no allocation) and atomic increments.
struct State {
    admission: Admission,
    /// Series by (capped) model.
    models: FastMap<ModelSeries>,
}

/// The cardinality cap: admitted values per capped label name.
struct Admission {
    max_label_values: usize,
    admitted: [FastSet; 4],
    folded: [IntCounter; 4],
}

struct ModelSeries {
    /// `(requests, tokens)`, created on the model's first unpriced request.
    unpriced: Option<(IntCounter, IntCounter)>,
    /// Created on the model's first request with a time to first token.
    ttft: Option<Histogram>,
    /// By (capped) stage name.
    stages: FastMap<Histogram>,
    /// By (capped) feature.
    features: FastMap<FeatureSeries>,
}

struct FeatureSeries {
    /// Indexed by `status_index`. Both exist from the first request so error ratios are 0, not
    /// missing, while there are no errors.
    requests: [IntCounter; 2],
    /// In the order of `TOKEN_KINDS`.
    tokens: [IntCounter; 5],
    duration: Histogram,
    /// Created on the first priced request.
    cost: Option<CostSeries>,
    /// By (capped) error type.
    errors: FastMap<IntCounter>,
}

struct CostSeries {
    counter: Counter,
    /// Exact total; the counter is set from it at render time.
    nanos: i64,
}

const TOKEN_KINDS: [&str; 5] = [
    "input",
    "output",
    "cached_input",
    "cache_write",
    "reasoning",
];

/// FNV-1a: much cheaper than SipHash for the short label values hashed on every `observe`.
/// Hash flooding is not a concern: every map is bounded by the cardinality cap.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<V> = HashMap<String, V, BuildHasherDefault<Fnv>>;
type FastSet = HashSet<String, BuildHasherDefault<Fnv>>;

fn status_index(status: Status) -> usize {
    match status {
        Status::Ok => 0,
        Status::Error => 1,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters stay usable after a panic elsewhere; a torn update is at worst one lost count.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `map[key]`, inserting `make()` first if absent. Allocates the key only on insertion.
fn get_or_insert<'m, V>(map: &'m mut FastMap<V>, key: &str, make: impl FnOnce() -> V) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), make());
    }
    map.get_mut(key).expect("inserted above")
}

impl Admission {
    /// The label value to use for `value`: itself if admitted (or still room to admit it),
    /// otherwise `"other"`, counting the fold.
    fn admit<'v>(&mut self, label: Capped, value: &'v str) -> &'v str {
        let set = &mut self.admitted[label as usize];
        if set.contains(value) {
            return value;
        }
        if set.len() < self.max_label_values {
            set.insert(value.to_owned());
            return value;
        }
        self.folded[label as usize].inc();
        OTHER
    }
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(v.clone()))
        .expect("metric names are unique");
    v
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec());
    let v = HistogramVec::new(opts, labels).expect("valid metric definition");
    registry
        .register(Box::new(v.clone()))
        .expect("metric names are unique");
    v
}

fn gauge_vec(registry: &Registry, name: &str, help: &str) -> GaugeVec {
    let v = GaugeVec::new(Opts::new(name, help), &["budget", "period"]).expect("valid definition");
    registry
        .register(Box::new(v.clone()))
        .expect("metric names are unique");
    v
}

impl Metrics {
    /// `max_label_values`: label cardinality cap per label name (e.g. 50): the first N distinct
    /// values of a label (model, feature, error_type, stage) get their own series; later values
    /// are folded into "other".
    pub fn new(max_label_values: usize) -> Self {
        let registry = Registry::new();
        let r = &registry;
        let cost = CounterVec::new(
            Opts::new(
                "llmwatch_cost_usd_total",
                "Cost in USD of priced requests (unpriced requests are counted in \
                 llmwatch_unpriced_requests_total instead).",
            ),
            &["model", "feature"],
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(cost.clone()))
            .expect("metric names are unique");
        let vecs = Vecs {
            requests: counter_vec(
                r,
                "llmwatch_requests_total",
                "Requests ingested, by outcome.",
                &["model", "feature", "status"],
            ),
            errors: counter_vec(
                r,
                "llmwatch_errors_total",
                "Failed requests, by error type (\"unknown\" when none was reported).",
                &["model", "feature", "error_type"],
            ),
            tokens: counter_vec(
                r,
                "llmwatch_tokens_total",
                "Tokens by kind. cached_input and cache_write tokens are included in input, \
                 reasoning tokens in output: do not add the kinds up.",
                &["model", "feature", "kind"],
            ),
            cost,
            unpriced_requests: counter_vec(
                r,
                "llmwatch_unpriced_requests_total",
                "Requests whose model has no price: their cost is missing from \
                 llmwatch_cost_usd_total.",
                &["model"],
            ),
            unpriced_tokens: counter_vec(
                r,
                "llmwatch_unpriced_tokens_total",
                "Input plus output tokens of requests whose model has no price.",
                &["model"],
            ),
            request_duration: histogram_vec(
                r,
                "llmwatch_request_duration_seconds",
                "Wall time of whole requests.",
                &["model", "feature"],
            ),
            stage_duration: histogram_vec(
                r,
                "llmwatch_stage_duration_seconds",
                "Time spent in each measured pipeline stage of a request.",
                &["stage", "model"],
            ),
            ttft: histogram_vec(
                r,
                "llmwatch_time_to_first_token_seconds",
                "Time to first token of requests that reported it.",
                &["model"],
            ),
            budget_spent: gauge_vec(
                r,
                "llmwatch_budget_spent_usd",
                "Spend in USD so far in the budget's current period.",
            ),
            budget_limit: gauge_vec(
                r,
                "llmwatch_budget_limit_usd",
                "Spending limit in USD of the budget per period.",
            ),
        };
        let folded_vec = counter_vec(
            r,
            "llmwatch_label_values_folded_total",
            "Observations whose label value was replaced by \"other\" because the label \
             already had the maximum number of distinct values.",
            &["label"],
        );
        let folded = CAPPED_NAMES.map(|name| folded_vec.with_label_values(&[name]));
        Self {
            registry,
            vecs,
            state: Mutex::new(State {
                admission: Admission {
                    max_label_values,
                    admitted: Default::default(),
                    folded,
                },
                models: FastMap::default(),
            }),
            render_lock: Mutex::new(()),
        }
    }

    /// Counts one committed record (called after commit; the caller skips records that replaced
    /// an earlier one).
    pub fn observe(&self, record: &PricedRecord) {
        let PricedRecord {
            record: r,
            cost_nanos,
        } = record;
        let vecs = &self.vecs;
        let mut guard = lock(&self.state);
        let st = &mut *guard;

        let adm = &mut st.admission;
        let model = adm.admit(Capped::Model, &r.model);
        let feature = match r.feature.as_deref() {
            Some(f) => adm.admit(Capped::Feature, f),
            None => NO_FEATURE,
        };
        let error_type = match (r.status, r.error_type.as_deref()) {
            (Status::Ok, _) => None,
            (Status::Error, Some(e)) => Some(adm.admit(Capped::ErrorType, e)),
            (Status::Error, None) => Some(UNKNOWN_ERROR_TYPE),
        };

        let ms = get_or_insert(&mut st.models, model, || ModelSeries {
            unpriced: None,
            ttft: None,
            stages: FastMap::default(),
            features: FastMap::default(),
        });
        let fs = get_or_insert(&mut ms.features, feature, || FeatureSeries {
            requests: [Status::Ok, Status::Error].map(|s| {
                vecs.requests
                    .with_label_values(&[model, feature, s.as_str()])
            }),
            tokens: TOKEN_KINDS.map(|k| vecs.tokens.with_label_values(&[model, feature, k])),
            duration: vecs.request_duration.with_label_values(&[model, feature]),
            cost: None,
            errors: FastMap::default(),
        });

        let u = &r.usage;
        fs.requests[status_index(r.status)].inc();
        for (counter, n) in fs.tokens.iter().zip([
            u.input_tokens,
            u.output_tokens,
            u.cached_input_tokens,
            u.cache_write_tokens,
            u.reasoning_tokens,
        ]) {
            counter.inc_by(n);
        }
        fs.duration.observe(r.duration_ms / 1000.0);
        if let Some(e) = error_type {
            get_or_insert(&mut fs.errors, e, || {
                vecs.errors.with_label_values(&[model, feature, e])
            })
            .inc();
        }
        match cost_nanos {
            Some(nanos) => {
                let cost = fs.cost.get_or_insert_with(|| CostSeries {
                    counter: vecs.cost.with_label_values(&[model, feature]),
                    nanos: 0,
                });
                // A counter never decreases; prices are never negative anyway.
                cost.nanos = cost.nanos.saturating_add((*nanos).max(0));
            }
            None => {
                let (requests, tokens) = ms.unpriced.get_or_insert_with(|| {
                    (
                        vecs.unpriced_requests.with_label_values(&[model]),
                        vecs.unpriced_tokens.with_label_values(&[model]),
                    )
                });
                requests.inc();
                tokens.inc_by(u.total());
            }
        }
        if let Some(ttft_ms) = r.ttft_ms {
            ms.ttft
                .get_or_insert_with(|| vecs.ttft.with_label_values(&[model]))
                .observe(ttft_ms / 1000.0);
        }
        for (name, stage_ms) in &r.stages {
            let stage = adm.admit(Capped::Stage, name);
            get_or_insert(&mut ms.stages, stage, || {
                vecs.stage_duration.with_label_values(&[stage, model])
            })
            .observe(stage_ms / 1000.0);
        }
    }

    /// The text exposition, with the budget gauges set from `budgets` first.
    pub fn render(&self, budgets: &[BudgetGauge]) -> String {
        let _render = lock(&self.render_lock);
        {
            let st = lock(&self.state);
            for cost in st
                .models
                .values()
                .flat_map(|m| m.features.values())
                .filter_map(|f| f.cost.as_ref())
            {
                cost.counter.reset();
                cost.counter.inc_by(nanos_to_usd(cost.nanos));
            }
        }
        let v = &self.vecs;
        v.budget_spent.reset();
        v.budget_limit.reset();
        for b in budgets {
            let labels = [b.name.as_str(), b.period];
            v.budget_spent.with_label_values(&labels).set(b.spent_usd);
            v.budget_limit.with_label_values(&labels).set(b.limit_usd);
        }
        let mut buf = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            // Only reachable through an invalid metric family, which the definitions rule out;
            // a comment keeps the exposition parseable.
            buf.extend_from_slice(format!("# encoding error: {e}\n").as_bytes());
        }
        String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::core::record::{Record, Usage};

    fn record(model: &str, feature: Option<&str>) -> Record {
        Record {
            request_id: "r".into(),
            timestamp_ms: 1_767_225_600_000,
            model: model.into(),
            provider: None,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                ..Usage::default()
            },
            user_id: None,
            feature: feature.map(Into::into),
            session_id: None,
            release: None,
            status: Status::Ok,
            error_type: None,
            stages: BTreeMap::new(),
            duration_ms: 100.0,
            ttft_ms: None,
            attributes: BTreeMap::new(),
            input: None,
            output: None,
            input_chars: None,
            output_chars: None,
            scores: Vec::new(),
        }
    }

    fn priced(record: Record, cost_nanos: Option<i64>) -> PricedRecord {
        PricedRecord { record, cost_nanos }
    }

    fn stages(list: &[(&str, f64)]) -> BTreeMap<String, f64> {
        list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    /// Asserts that every expected line is a whole line of `text`.
    #[track_caller]
    fn assert_lines(text: &str, expected: &[&str]) {
        for line in expected {
            assert!(
                text.lines().any(|l| l == *line),
                "missing line {line:?} in:\n{text}"
            );
        }
    }

    #[track_caller]
    fn assert_no_line_starting(text: &str, prefix: &str) {
        assert!(
            !text.lines().any(|l| l.starts_with(prefix)),
            "unexpected line starting {prefix:?} in:\n{text}"
        );
    }

    /// Three records: an ok chat request with ttft and stages, a failed chat request, and an
    /// unpriced request without a feature.
    fn three_records() -> Vec<PricedRecord> {
        let mut ok = record("gpt-4o", Some("chat"));
        ok.usage = Usage {
            input_tokens: 1000,
            output_tokens: 500,
            cached_input_tokens: 200,
            cache_write_tokens: 50,
            reasoning_tokens: 100,
        };
        ok.duration_ms = 500.0;
        ok.ttft_ms = Some(120.0);
        ok.stages = stages(&[("guardrail", 50.0), ("model_inference", 400.0)]);

        let mut err = record("gpt-4o", Some("chat"));
        err.usage = Usage {
            input_tokens: 100,
            output_tokens: 0,
            ..Usage::default()
        };
        err.status = Status::Error;
        err.error_type = Some("rate_limit".into());
        err.duration_ms = 30.0;
        err.stages = stages(&[("guardrail", 20.0)]);

        let mut unpriced = record("my-local-model", None);
        unpriced.duration_ms = 1500.0;

        vec![
            priced(ok, Some(2_500_000)),
            priced(err, Some(1_000_000)),
            priced(unpriced, None),
        ]
    }

    #[test]
    fn counts_requests_errors_tokens_and_cost() {
        let m = Metrics::new(50);
        for r in three_records() {
            m.observe(&r);
        }
        let text = m.render(&[]);
        assert_lines(
            &text,
            &[
                "# TYPE llmwatch_requests_total counter",
                r#"llmwatch_requests_total{feature="chat",model="gpt-4o",status="ok"} 1"#,
                r#"llmwatch_requests_total{feature="chat",model="gpt-4o",status="error"} 1"#,
                r#"llmwatch_requests_total{feature="(none)",model="my-local-model",status="ok"} 1"#,
                r#"llmwatch_requests_total{feature="(none)",model="my-local-model",status="error"} 0"#,
                r#"llmwatch_errors_total{error_type="rate_limit",feature="chat",model="gpt-4o"} 1"#,
                r#"llmwatch_tokens_total{feature="chat",kind="input",model="gpt-4o"} 1100"#,
                r#"llmwatch_tokens_total{feature="chat",kind="output",model="gpt-4o"} 500"#,
                r#"llmwatch_tokens_total{feature="chat",kind="cached_input",model="gpt-4o"} 200"#,
                r#"llmwatch_tokens_total{feature="chat",kind="cache_write",model="gpt-4o"} 50"#,
                r#"llmwatch_tokens_total{feature="chat",kind="reasoning",model="gpt-4o"} 100"#,
                r#"llmwatch_tokens_total{feature="(none)",kind="input",model="my-local-model"} 10"#,
                "# TYPE llmwatch_cost_usd_total counter",
                r#"llmwatch_cost_usd_total{feature="chat",model="gpt-4o"} 0.0035"#,
                r#"llmwatch_unpriced_requests_total{model="my-local-model"} 1"#,
                r#"llmwatch_unpriced_tokens_total{model="my-local-model"} 15"#,
                r#"llmwatch_label_values_folded_total{label="model"} 0"#,
            ],
        );
        // Only the error counter of the failed request; no cost for the unpriced model, no
        // unpriced series for the priced one.
        assert_eq!(text.matches("llmwatch_errors_total{").count(), 1);
        assert_no_line_starting(&text, r#"llmwatch_cost_usd_total{feature="(none)""#);
        assert_no_line_starting(&text, r#"llmwatch_unpriced_requests_total{model="gpt-4o"}"#);
    }

    #[test]
    fn histograms_have_cumulative_buckets_sum_and_count() {
        let m = Metrics::new(50);
        for r in three_records() {
            m.observe(&r);
        }
        let text = m.render(&[]);
        let d = r#"llmwatch_request_duration_seconds_bucket{feature="chat",model="gpt-4o",le="#;
        let expected_chat: Vec<String> = [
            ("0.01", 0),
            ("0.02", 0),
            ("0.04", 1), // 0.03 s
            ("0.08", 1),
            ("0.16", 1),
            ("0.32", 1),
            ("0.64", 2), // 0.5 s
            ("1.28", 2),
            ("81.92", 2),
            ("+Inf", 2),
        ]
        .iter()
        .map(|(le, n)| format!(r#"{d}"{le}"}} {n}"#))
        .collect();
        let expected_chat: Vec<&str> = expected_chat.iter().map(String::as_str).collect();
        assert_lines(&text, &expected_chat);
        assert_lines(
            &text,
            &[
                "# TYPE llmwatch_request_duration_seconds histogram",
                r#"llmwatch_request_duration_seconds_sum{feature="chat",model="gpt-4o"} 0.53"#,
                r#"llmwatch_request_duration_seconds_count{feature="chat",model="gpt-4o"} 2"#,
                r#"llmwatch_request_duration_seconds_bucket{feature="(none)",model="my-local-model",le="1.28"} 0"#,
                r#"llmwatch_request_duration_seconds_bucket{feature="(none)",model="my-local-model",le="2.56"} 1"#,
                r#"llmwatch_request_duration_seconds_sum{feature="(none)",model="my-local-model"} 1.5"#,
                // Stages: guardrail 0.05 s and 0.02 s, model_inference 0.4 s.
                r#"llmwatch_stage_duration_seconds_bucket{model="gpt-4o",stage="guardrail",le="0.02"} 1"#,
                r#"llmwatch_stage_duration_seconds_bucket{model="gpt-4o",stage="guardrail",le="0.04"} 1"#,
                r#"llmwatch_stage_duration_seconds_bucket{model="gpt-4o",stage="guardrail",le="0.08"} 2"#,
                r#"llmwatch_stage_duration_seconds_sum{model="gpt-4o",stage="guardrail"} 0.07"#,
                r#"llmwatch_stage_duration_seconds_count{model="gpt-4o",stage="guardrail"} 2"#,
                r#"llmwatch_stage_duration_seconds_bucket{model="gpt-4o",stage="model_inference",le="0.32"} 0"#,
                r#"llmwatch_stage_duration_seconds_bucket{model="gpt-4o",stage="model_inference",le="0.64"} 1"#,
                // TTFT 0.12 s, only the one request that reported it.
                r#"llmwatch_time_to_first_token_seconds_bucket{model="gpt-4o",le="0.08"} 0"#,
                r#"llmwatch_time_to_first_token_seconds_bucket{model="gpt-4o",le="0.16"} 1"#,
                r#"llmwatch_time_to_first_token_seconds_sum{model="gpt-4o"} 0.12"#,
                r#"llmwatch_time_to_first_token_seconds_count{model="gpt-4o"} 1"#,
            ],
        );
        assert_no_line_starting(
            &text,
            r#"llmwatch_time_to_first_token_seconds_count{model="my"#,
        );
        assert_no_line_starting(&text, r#"llmwatch_stage_duration_seconds_count{model="my"#);
        // Exactly the advised buckets plus +Inf.
        assert_eq!(text.matches(d).count(), DURATION_BUCKETS.len() + 1);
    }

    #[test]
    fn cost_accumulates_exactly_across_renders() {
        let m = Metrics::new(50);
        let r = priced(record("gpt-4o", Some("chat")), Some(100_000)); // 0.0001 USD
        for _ in 0..3 {
            m.observe(&r);
        }
        assert_lines(
            &m.render(&[]),
            &[r#"llmwatch_cost_usd_total{feature="chat",model="gpt-4o"} 0.0003"#],
        );
        for _ in 0..7 {
            m.observe(&r);
        }
        // Ten additions of 0.0001 in floating point would give 0.0010000000000000002.
        assert_lines(
            &m.render(&[]),
            &[r#"llmwatch_cost_usd_total{feature="chat",model="gpt-4o"} 0.001"#],
        );
    }

    #[test]
    fn label_values_beyond_the_cap_fold_into_other() {
        let m = Metrics::new(2);
        for model in ["m1", "m2", "m3", "m1"] {
            m.observe(&priced(record(model, None), Some(0)));
        }
        let mut r = record("m1", Some("f1"));
        r.stages = stages(&[("s1", 1.0), ("s2", 1.0), ("s3", 1.0)]);
        r.status = Status::Error;
        r.error_type = Some("e1".into());
        m.observe(&priced(r.clone(), Some(0)));
        r.feature = Some("f2".into());
        r.error_type = Some("e2".into());
        m.observe(&priced(r.clone(), Some(0)));
        r.feature = Some("f3".into());
        r.error_type = Some("e3".into());
        m.observe(&priced(r, Some(0)));
        let text = m.render(&[]);
        assert_lines(
            &text,
            &[
                // "(none)" does not use up the feature cap.
                r#"llmwatch_requests_total{feature="(none)",model="m1",status="ok"} 2"#,
                r#"llmwatch_requests_total{feature="(none)",model="m2",status="ok"} 1"#,
                r#"llmwatch_requests_total{feature="(none)",model="other",status="ok"} 1"#,
                r#"llmwatch_requests_total{feature="f1",model="m1",status="error"} 1"#,
                r#"llmwatch_requests_total{feature="f2",model="m1",status="error"} 1"#,
                r#"llmwatch_requests_total{feature="other",model="m1",status="error"} 1"#,
                r#"llmwatch_errors_total{error_type="other",feature="other",model="m1"} 1"#,
                r#"llmwatch_stage_duration_seconds_count{model="m1",stage="s1"} 3"#,
                r#"llmwatch_stage_duration_seconds_count{model="m1",stage="s2"} 3"#,
                r#"llmwatch_stage_duration_seconds_count{model="m1",stage="other"} 3"#,
                r#"llmwatch_label_values_folded_total{label="model"} 1"#,
                r#"llmwatch_label_values_folded_total{label="feature"} 1"#,
                r#"llmwatch_label_values_folded_total{label="error_type"} 1"#,
                r#"llmwatch_label_values_folded_total{label="stage"} 3"#,
            ],
        );
        assert!(!text.contains("m3"), "{text}");
        assert!(!text.contains("\"f3\""), "{text}");
    }

    #[test]
    fn budget_gauges_follow_the_latest_render() {
        let m = Metrics::new(50);
        let budget = |name: &str, period, spent_usd, limit_usd| BudgetGauge {
            name: name.into(),
            period,
            spent_usd,
            limit_usd,
        };
        let text = m.render(&[
            budget("team-a", "month", 12.5, 100.0),
            budget("chat-daily", "day", 0.25, 5.0),
        ]);
        assert_lines(
            &text,
            &[
                "# TYPE llmwatch_budget_spent_usd gauge",
                r#"llmwatch_budget_spent_usd{budget="team-a",period="month"} 12.5"#,
                r#"llmwatch_budget_limit_usd{budget="team-a",period="month"} 100"#,
                r#"llmwatch_budget_spent_usd{budget="chat-daily",period="day"} 0.25"#,
                r#"llmwatch_budget_limit_usd{budget="chat-daily",period="day"} 5"#,
            ],
        );
        let text = m.render(&[budget("team-a", "month", 13.0, 100.0)]);
        assert_lines(
            &text,
            &[r#"llmwatch_budget_spent_usd{budget="team-a",period="month"} 13"#],
        );
        assert!(!text.contains("chat-daily"), "{text}");
        let text = m.render(&[]);
        assert!(!text.contains("llmwatch_budget"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new(50);
        m.observe(&priced(record("a\"b\\c\nd", Some("line1\nline2")), None));
        let text = m.render(&[]);
        assert_lines(
            &text,
            &[
                r#"llmwatch_requests_total{feature="line1\nline2",model="a\"b\\c\nd",status="ok"} 1"#,
                r#"llmwatch_unpriced_requests_total{model="a\"b\\c\nd"} 1"#,
            ],
        );
    }

    #[test]
    fn every_metric_has_help_and_type() {
        let m = Metrics::new(50);
        for r in three_records() {
            m.observe(&r);
        }
        let text = m.render(&[BudgetGauge {
            name: "b".into(),
            period: "week",
            spent_usd: 1.0,
            limit_usd: 2.0,
        }]);
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(helps, 12, "{text}");
        assert_eq!(types, 12, "{text}");
    }

    #[test]
    fn metrics_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Metrics>();
    }

    /// Writes a sample with every metric populated for `promtool check metrics`:
    /// `cargo test -- --ignored write_sample && promtool check metrics < /tmp/metrics_sample.txt`
    #[test]
    #[ignore]
    fn write_sample() {
        let m = Metrics::new(2);
        for r in three_records() {
            m.observe(&r);
        }
        let mut r = record("third-model", Some("search"));
        r.status = Status::Error;
        r.stages = stages(&[("tool_execution", 70.0), ("postprocessing", 3.0)]);
        m.observe(&priced(r, Some(42)));
        let text = m.render(&[
            BudgetGauge {
                name: "team-a".into(),
                period: "month",
                spent_usd: 12.5,
                limit_usd: 100.0,
            },
            BudgetGauge {
                name: "chat \"daily\"".into(),
                period: "day",
                spent_usd: 0.25,
                limit_usd: 5.0,
            },
        ]);
        std::fs::write("/tmp/metrics_sample.txt", &text).unwrap();
        println!("{text}");
    }

    /// `cargo test --release -- --ignored observe_timing --nocapture`
    #[test]
    #[ignore]
    fn observe_timing() {
        let m = Metrics::new(50);
        let records = three_records();
        let n = 1_000_000;
        for r in &records {
            m.observe(r);
        }
        // Best of five rounds: the least disturbed by other load on the machine.
        let best = (0..5)
            .map(|_| {
                let start = std::time::Instant::now();
                for i in 0..n {
                    m.observe(&records[i % records.len()]);
                }
                start.elapsed()
            })
            .min()
            .unwrap();
        println!(
            "observe: {:.0} ns per record (best of 5 x {n} records, 1-2 stages each)",
            best.as_nanos() as f64 / n as f64
        );
        let start = std::time::Instant::now();
        let text = m.render(&[]);
        println!("render: {:?} for {} bytes", start.elapsed(), text.len());
    }
}
