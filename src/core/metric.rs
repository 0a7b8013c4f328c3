//! OpenTelemetry GenAI client metrics -> rollup contributions, for applications that send
//! metrics but no traces: `gen_ai.client.operation.duration` (requests, errors, duration) and
//! `gen_ai.client.token.usage` (input and output tokens, priced by model).
//!
//! Cumulative streams are turned into deltas against the last point seen of the same stream
//! (the caller stores that state), so a re-sent or stale point adds nothing and a restarted
//! process (a new start time) starts a new series. No I/O.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

use super::pricing::PriceTable;
use super::record::{MAX_LABEL_BYTES, MAX_TOKENS, Usage};
use super::rollup::{Totals, usd_to_nanos};

pub const DURATION_METRIC: &str = "gen_ai.client.operation.duration";
pub const TOKEN_USAGE_METRIC: &str = "gen_ai.client.token.usage";

/// What a data point measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Operation durations: count = requests, sum = seconds.
    Duration,
    InputTokens,
    OutputTokens,
}

/// One usable data point, with the labels of its rollup row.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// Identity of the time series (resource, metric, attributes), for cumulative deltas.
    pub stream: String,
    pub measure: Measure,
    pub cumulative: bool,
    pub start_ns: u64,
    pub time_ns: u64,
    pub count: u64,
    /// Seconds for durations (converted from the metric's unit), tokens otherwise.
    pub sum: f64,
    pub model: String,
    pub feature: Option<String>,
    pub release: Option<String>,
    pub error_type: Option<String>,
    /// The resource's `service.name`: metrics of a service that also sends traces are ignored
    /// (its requests are already counted from the traces).
    pub service: Option<String>,
}

/// A data point that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointError {
    pub metric: String,
    pub message: String,
}

impl std::fmt::Display for PointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.metric, self.message)
    }
}

/// The last point stored for a stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamState {
    pub start_ns: u64,
    pub time_ns: u64,
    pub count: u64,
    pub sum: f64,
}

fn text(kv: &KeyValue) -> Option<String> {
    match kv.value.as_ref()?.value.as_ref()? {
        AnyValueKind::StringValue(s) if !s.is_empty() => {
            let mut end = s.len().min(MAX_LABEL_BYTES);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Some(s[..end].to_owned())
        }
        AnyValueKind::IntValue(i) => Some(i.to_string()),
        AnyValueKind::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn get(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(text)
}

/// The identity of a stream: its resource, metric name and point attributes, keys sorted.
fn stream_key(resource: &[KeyValue], metric: &str, attrs: &[KeyValue]) -> String {
    let sorted = |kvs: &[KeyValue]| {
        let mut v: Vec<(String, String)> = kvs
            .iter()
            .map(|kv| (kv.key.clone(), text(kv).unwrap_or_default()))
            .collect();
        v.sort();
        v
    };
    serde_json::json!([sorted(resource), metric, sorted(attrs)]).to_string()
}

/// Reads the GenAI client metrics of an export; other metrics are skipped (not errors).
pub fn read_points(req: &ExportMetricsServiceRequest) -> (Vec<MetricPoint>, Vec<PointError>) {
    let mut points = Vec::new();
    let mut errors = Vec::new();
    for rm in &req.resource_metrics {
        let resource: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
        let service = get(resource, "service.name");
        let version = get(resource, "service.version");
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let seconds_per_unit = match (m.name.as_str(), m.unit.as_str()) {
                    (DURATION_METRIC, "ms") => 1e-3,
                    (DURATION_METRIC, _) => 1.0,
                    (TOKEN_USAGE_METRIC, _) => 1.0,
                    _ => continue,
                };
                let fail = |message: String| PointError {
                    metric: m.name.clone(),
                    message,
                };
                // (attributes, start, time, count, sum) of each point, whatever the histogram kind.
                type Raw<'a> = (&'a [KeyValue], u64, u64, u64, Option<f64>);
                let (temporality, raw): (i32, Vec<Raw<'_>>) = match &m.data {
                    Some(Data::Histogram(h)) => (
                        h.aggregation_temporality,
                        h.data_points
                            .iter()
                            .map(|p| {
                                let a: &[KeyValue] = &p.attributes;
                                (a, p.start_time_unix_nano, p.time_unix_nano, p.count, p.sum)
                            })
                            .collect(),
                    ),
                    Some(Data::ExponentialHistogram(h)) => (
                        h.aggregation_temporality,
                        h.data_points
                            .iter()
                            .map(|p| {
                                let a: &[KeyValue] = &p.attributes;
                                (a, p.start_time_unix_nano, p.time_unix_nano, p.count, p.sum)
                            })
                            .collect(),
                    ),
                    _ => {
                        errors.push(fail("expected a histogram".into()));
                        continue;
                    }
                };
                let cumulative = temporality == AggregationTemporality::Cumulative as i32;
                for (attrs, start_ns, time_ns, count, sum) in raw {
                    let measure = if m.name == DURATION_METRIC {
                        Measure::Duration
                    } else {
                        match get(attrs, "gen_ai.token.type").as_deref() {
                            Some("input") => Measure::InputTokens,
                            Some("output") => Measure::OutputTokens,
                            other => {
                                errors.push(fail(format!(
                                    "gen_ai.token.type must be input or output, got {other:?}"
                                )));
                                continue;
                            }
                        }
                    };
                    let Some(sum) = sum.filter(|s| s.is_finite() && *s >= 0.0) else {
                        errors.push(fail("sum must be a finite number >= 0".into()));
                        continue;
                    };
                    if time_ns == 0 {
                        errors.push(fail("time_unix_nano is required".into()));
                        continue;
                    }
                    if measure != Measure::Duration && sum > MAX_TOKENS as f64 {
                        errors.push(fail(format!("token sum {sum} is absurd")));
                        continue;
                    }
                    let model = get(attrs, "gen_ai.response.model")
                        .or_else(|| get(attrs, "gen_ai.request.model"))
                        .unwrap_or_else(|| super::trace::UNKNOWN_MODEL.to_owned());
                    points.push(MetricPoint {
                        stream: stream_key(resource, &m.name, attrs),
                        measure,
                        cumulative,
                        start_ns,
                        time_ns,
                        count,
                        sum: sum * seconds_per_unit,
                        model,
                        feature: get(attrs, "llmwatch.feature").or_else(|| service.clone()),
                        release: get(attrs, "llmwatch.release").or_else(|| version.clone()),
                        error_type: get(attrs, "error.type"),
                        service: service.clone(),
                    });
                }
            }
        }
    }
    (points, errors)
}

/// What a point adds beyond the last point of its stream: `(count, sum)`, or `None` when it
/// adds nothing (a re-sent or older point).
pub fn delta(prev: Option<&StreamState>, p: &MetricPoint) -> Option<(u64, f64)> {
    let Some(s) = prev else {
        return Some((p.count, p.sum));
    };
    if p.time_ns <= s.time_ns {
        return None; // seen already, or out of order
    }
    if !p.cumulative || p.start_ns != s.start_ns || p.count < s.count {
        // A delta point, or a cumulative series that restarted.
        return Some((p.count, p.sum));
    }
    Some((p.count - s.count, (p.sum - s.sum).max(0.0)))
}

/// The rollup contribution of a point's delta.
pub fn contribution(p: &MetricPoint, count: u64, sum: f64, prices: &PriceTable) -> Totals {
    let ts_ms = (p.time_ns / 1_000_000) as i64;
    let mut t = Totals::default();
    match p.measure {
        Measure::Duration => {
            let known = prices.resolve(&p.model, ts_ms).is_some();
            t.requests = count as i64;
            t.errors = if p.error_type.is_some() {
                count as i64
            } else {
                0
            };
            t.unpriced_requests = if known { 0 } else { count as i64 };
            t.duration_ms_sum = sum * 1e3;
            // No stage is measured by a metric: all of it is unaccounted.
            t.unaccounted_ms_sum = sum * 1e3;
        }
        Measure::InputTokens | Measure::OutputTokens => {
            let tokens = sum.round() as u64;
            let usage = if p.measure == Measure::InputTokens {
                Usage {
                    input_tokens: tokens,
                    ..Usage::default()
                }
            } else {
                Usage {
                    output_tokens: tokens,
                    ..Usage::default()
                }
            };
            t.input_tokens = usage.input_tokens as i64;
            t.output_tokens = usage.output_tokens as i64;
            match prices.cost(&p.model, ts_ms, &usage) {
                Some(usd) => t.cost_nanos = usd_to_nanos(usd),
                None => t.unpriced_tokens = tokens as i64,
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::metrics::v1::{
        Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(AnyValueKind::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn hist(name: &str, unit: &str, points: Vec<HistogramDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            data: Some(Data::Histogram(Histogram {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        }
    }

    fn point(attrs: Vec<KeyValue>, count: u64, sum: f64, time_s: u64) -> HistogramDataPoint {
        HistogramDataPoint {
            attributes: attrs,
            start_time_unix_nano: 1_000_000_000,
            time_unix_nano: time_s * 1_000_000_000,
            count,
            sum: Some(sum),
            ..Default::default()
        }
    }

    fn export(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "faq-bot"), kv("service.version", "3")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn reads_genai_histograms_and_skips_the_rest() {
        let model = kv("gen_ai.request.model", "gpt-4o");
        let req = export(vec![
            hist(
                DURATION_METRIC,
                "s",
                vec![point(
                    vec![model.clone(), kv("error.type", "timeout")],
                    3,
                    1.5,
                    60,
                )],
            ),
            hist(
                TOKEN_USAGE_METRIC,
                "{token}",
                vec![
                    point(
                        vec![model.clone(), kv("gen_ai.token.type", "input")],
                        3,
                        900.0,
                        60,
                    ),
                    point(
                        vec![model.clone(), kv("gen_ai.token.type", "output")],
                        3,
                        120.0,
                        60,
                    ),
                    point(vec![model, kv("gen_ai.token.type", "cached")], 3, 1.0, 60),
                ],
            ),
            hist(
                "http.server.duration",
                "ms",
                vec![point(vec![], 1, 1.0, 60)],
            ),
        ]);
        let (points, errors) = read_points(&req);
        assert_eq!(points.len(), 3);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("gen_ai.token.type"));
        let d = &points[0];
        assert_eq!(d.measure, Measure::Duration);
        assert_eq!((d.count, d.sum), (3, 1.5));
        assert_eq!(d.feature.as_deref(), Some("faq-bot"));
        assert_eq!(d.release.as_deref(), Some("3"));
        assert_eq!(d.error_type.as_deref(), Some("timeout"));
        assert!(d.cumulative);
        assert_ne!(points[1].stream, points[2].stream);

        let prices = PriceTable::builtin();
        let t = contribution(d, 3, 1.5, &prices);
        assert_eq!((t.requests, t.errors, t.duration_ms_sum), (3, 3, 1500.0));
        // gpt-4o: $2.50 / 1M input, $10 / 1M output (hand-computed: 900 in = $0.00225).
        let t = contribution(&points[1], 3, 900.0, &prices);
        assert_eq!((t.input_tokens, t.cost_nanos), (900, 2_250_000));
        let t = contribution(&points[2], 3, 120.0, &prices);
        assert_eq!((t.output_tokens, t.cost_nanos), (120, 1_200_000));
    }

    #[test]
    fn exponential_histograms_milliseconds_and_delta_temporality() {
        use opentelemetry_proto::tonic::metrics::v1::{
            ExponentialHistogram, ExponentialHistogramDataPoint,
        };
        let req = export(vec![Metric {
            name: DURATION_METRIC.into(),
            unit: "ms".into(),
            data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: vec![kv("gen_ai.response.model", "gpt-4o-mini")],
                    start_time_unix_nano: 1_000_000_000,
                    time_unix_nano: 61_000_000_000,
                    count: 4,
                    sum: Some(2_500.0),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            })),
            ..Default::default()
        }]);
        let (points, errors) = read_points(&req);
        assert!(errors.is_empty(), "{errors:?}");
        let p = &points[0];
        assert_eq!(p.model, "gpt-4o-mini");
        assert!(!p.cumulative);
        assert_eq!((p.count, p.sum), (4, 2.5), "2,500 ms read as 2.5 s");
        let t = contribution(p, p.count, p.sum, &PriceTable::builtin());
        assert_eq!(
            (t.requests, t.duration_ms_sum, t.unpriced_requests),
            (4, 2500.0, 0)
        );
    }

    #[test]
    fn cumulative_points_become_deltas() {
        let base = MetricPoint {
            stream: "s".into(),
            measure: Measure::Duration,
            cumulative: true,
            start_ns: 10,
            time_ns: 100,
            count: 5,
            sum: 2.0,
            model: "gpt-4o".into(),
            feature: None,
            release: None,
            error_type: None,
            service: None,
        };
        assert_eq!(
            delta(None, &base),
            Some((5, 2.0)),
            "first sight: all since start"
        );
        let seen = StreamState {
            start_ns: 10,
            time_ns: 100,
            count: 5,
            sum: 2.0,
        };
        assert_eq!(delta(Some(&seen), &base), None, "re-sent");
        let next = MetricPoint {
            time_ns: 160,
            count: 8,
            sum: 3.5,
            ..base.clone()
        };
        assert_eq!(delta(Some(&seen), &next), Some((3, 1.5)));
        let restarted = MetricPoint {
            start_ns: 150,
            time_ns: 170,
            count: 2,
            sum: 0.5,
            ..base.clone()
        };
        assert_eq!(delta(Some(&seen), &restarted), Some((2, 0.5)));
        let delta_point = MetricPoint {
            cumulative: false,
            time_ns: 200,
            count: 4,
            sum: 1.0,
            ..base
        };
        assert_eq!(delta(Some(&seen), &delta_point), Some((4, 1.0)));
    }
}
