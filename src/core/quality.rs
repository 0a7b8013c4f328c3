//! The quality axis, pure: scores and their sources, the effective score of a request per
//! name, the composite, the per-hour score histograms the rollups keep, the escalation streak,
//! and the two-proportion z-test used to compare releases.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::record::{MAX_REQUEST_ID_BYTES, RecordError, parse_timestamp};

/// Longest score name, in bytes.
pub const MAX_SCORE_NAME_BYTES: usize = 128;
/// Longest score comment, in bytes.
pub const MAX_COMMENT_BYTES: usize = 16 * 1024;
/// The name under which the composite is kept in the rollups next to the score names.
pub const COMPOSITE: &str = "(composite)";

/// The name under which the rollups count the requests that have any score.
pub const SCORED: &str = "(scored)";

/// How quality is judged: `[quality]` in the config.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityRules {
    /// The score names whose mean is a request's composite.
    pub composite: Vec<String>,
    /// A composite below this is a bad answer.
    pub threshold: f64,
    /// This many bad answers in a row (per feature) escalate.
    pub streak: u32,
}

impl Default for QualityRules {
    /// The seed's: relevance, completeness and safety; 0.7; five in a row.
    fn default() -> Self {
        QualityRules {
            composite: ["relevance", "completeness", "safety"]
                .map(str::to_owned)
                .to_vec(),
            threshold: 0.7,
            streak: 5,
        }
    }
}

/// Who produced a score. When several sources score the same name of a request, the one
/// ranked first here is the request's score: a person beats the application's own
/// evaluators, which beat an LLM judge, which beats llmwatch's heuristics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreSource {
    Human,
    Api,
    Model,
    Heuristic,
}

impl ScoreSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreSource::Human => "human",
            ScoreSource::Api => "api",
            ScoreSource::Model => "model",
            ScoreSource::Heuristic => "heuristic",
        }
    }

    pub fn parse(s: &str) -> Option<ScoreSource> {
        match s {
            "human" => Some(ScoreSource::Human),
            "api" => Some(ScoreSource::Api),
            "model" => Some(ScoreSource::Model),
            "heuristic" => Some(ScoreSource::Heuristic),
            _ => None,
        }
    }
}

/// One score of one request. The same (request, name, source) sent again replaces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub request_id: String,
    pub name: String,
    /// In 0..=1, higher is better.
    pub value: f64,
    pub source: ScoreSource,
    pub comment: Option<String>,
    /// When it was given (unix ms).
    pub ts_ms: i64,
}

/// Checks a score's name and value; the error names the field.
pub fn check_score(name: &str, value: f64) -> Result<(), (&'static str, String)> {
    if name.is_empty() || name.len() > MAX_SCORE_NAME_BYTES {
        return Err(("name", format!("must be 1..={MAX_SCORE_NAME_BYTES} bytes")));
    }
    if name == COMPOSITE || name == SCORED {
        return Err(("name", format!("{name} is reserved")));
    }
    if !(0.0..=1.0).contains(&value) {
        return Err(("value", format!("must be a number in 0..1, got {value}")));
    }
    Ok(())
}

/// A request's score per name: of several sources, the first by [`ScoreSource`] order.
pub fn effective_scores<'a>(
    scores: impl IntoIterator<Item = (&'a str, ScoreSource, f64)>,
) -> BTreeMap<String, f64> {
    let mut best: BTreeMap<&str, (ScoreSource, f64)> = BTreeMap::new();
    for (name, source, value) in scores {
        match best.get(name) {
            Some((s, _)) if *s <= source => {}
            _ => {
                best.insert(name, (source, value));
            }
        }
    }
    best.into_iter()
        .map(|(n, (_, v))| (n.to_owned(), v))
        .collect()
}

/// The composite quality of a request: the mean of the configured names, only when the
/// request has every one of them (a partly scored request would swing the streak on
/// whichever evaluator answered first).
pub fn composite(scores: &BTreeMap<String, f64>, names: &[String]) -> Option<f64> {
    if names.is_empty() {
        return None;
    }
    let mut sum = 0.0;
    for name in names {
        sum += scores.get(name)?;
    }
    Some(sum / names.len() as f64)
}

/// Buckets of a score histogram: 0.01 wide, the last one holds exactly 1.0.
pub const HIST_BUCKETS: usize = 101;

/// Index of the 0.01-wide bucket of a score in 0..=1. Scores are rounded to 1e-9 first so
/// that 0.7 (0.69999999999999996 in binary) lands in bucket 70, as a person expects.
pub fn bucket_of(value: f64) -> usize {
    let v = (value.clamp(0.0, 1.0) * 1e9).round() / 1e9;
    ((v * 100.0 + 1e-9).floor() as usize).min(HIST_BUCKETS - 1)
}

/// Counts of scores per 0.01 bucket plus their exact sum (in millionths, so adding and
/// removing a contribution leaves no floating-point residue). What the per-hour quality
/// rollups keep per (model, feature, release, name): counts merge and subtract exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreHist {
    pub counts: [i64; HIST_BUCKETS],
    pub sum_micros: i64,
}

impl Default for ScoreHist {
    fn default() -> Self {
        ScoreHist {
            counts: [0; HIST_BUCKETS],
            sum_micros: 0,
        }
    }
}

/// A score in millionths.
pub fn micros(value: f64) -> i64 {
    (value * 1e6).round() as i64
}

impl ScoreHist {
    /// Adds (`sign` = 1) or removes (`sign` = -1) one score.
    pub fn add(&mut self, value: f64, sign: i64) {
        self.counts[bucket_of(value)] += sign;
        self.sum_micros += sign * micros(value);
    }

    pub fn merge(&mut self, other: &ScoreHist) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum_micros += other.sum_micros;
    }

    pub fn count(&self) -> i64 {
        self.counts.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|c| *c == 0)
    }

    pub fn mean(&self) -> Option<f64> {
        let n = self.count();
        (n > 0).then(|| self.sum_micros as f64 / 1e6 / n as f64)
    }

    /// The `q` quantile (0..=1) by the nearest-rank rule, as the lower edge of its bucket:
    /// exact for scores with at most two decimals (what evaluators and judges give), else
    /// at most 0.01 below the exact value.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n <= 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as i64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(i as f64 / 100.0);
            }
        }
        None
    }

    /// Share of scores strictly below `threshold`; exact when the threshold is a multiple of
    /// 0.01 (the config only accepts those).
    pub fn share_below(&self, threshold: f64) -> Option<f64> {
        let n = self.count();
        if n <= 0 {
            return None;
        }
        let below: i64 = self.counts[..bucket_of(threshold)].iter().sum();
        Some(below as f64 / n as f64)
    }

    /// Compact encoding: the sum, then (bucket, count) pairs of the non-empty buckets, as
    /// signed varints (postcard).
    pub fn encode(&self) -> Vec<u8> {
        let pairs: Vec<(u8, i64)> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != 0)
            .map(|(i, c)| (i as u8, *c))
            .collect();
        postcard::to_allocvec(&(self.sum_micros, pairs)).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<ScoreHist, String> {
        let (sum_micros, pairs): (i64, Vec<(u8, i64)>) =
            postcard::from_bytes(bytes).map_err(|e| format!("score histogram: {e}"))?;
        let mut h = ScoreHist {
            sum_micros,
            ..ScoreHist::default()
        };
        for (i, c) in pairs {
            let slot = h
                .counts
                .get_mut(usize::from(i))
                .ok_or_else(|| format!("score histogram: bucket {i} out of range"))?;
            *slot += c;
        }
        Ok(h)
    }
}

/// The escalation state of one feature: how many consecutive requests scored below the
/// threshold, and whether this run has already escalated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    pub current: u32,
    pub longest: u32,
    pub escalated: bool,
}

impl Streak {
    /// Takes the next request's composite. Returns true when this request makes the run
    /// reach `length`: the one escalation of this run (the run continues without another
    /// until a good answer resets it).
    pub fn observe(&mut self, composite: f64, threshold: f64, length: u32) -> bool {
        if composite >= threshold {
            self.current = 0;
            self.escalated = false;
            return false;
        }
        self.current += 1;
        self.longest = self.longest.max(self.current);
        if !self.escalated && self.current >= length {
            self.escalated = true;
            return true;
        }
        false
    }
}

/// The runs of bad answers in an ordered stretch of composites: its length, the bad run it
/// starts with, the one it ends with, and the longest inside. Summaries compose (`then`), so
/// per-hour summaries add up to the streak of any range without reading each request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    pub n: u32,
    pub prefix: u32,
    pub suffix: u32,
    pub longest: u32,
}

impl RunSummary {
    /// One composite.
    pub fn of(composite: f64, threshold: f64) -> RunSummary {
        let bad = u32::from(composite < threshold);
        RunSummary {
            n: 1,
            prefix: bad,
            suffix: bad,
            longest: bad,
        }
    }

    /// This stretch followed by `next`.
    pub fn then(self, next: RunSummary) -> RunSummary {
        if self.n == 0 {
            return next;
        }
        if next.n == 0 {
            return self;
        }
        RunSummary {
            n: self.n + next.n,
            prefix: if self.prefix == self.n {
                self.n + next.prefix
            } else {
                self.prefix
            },
            suffix: if next.suffix == next.n {
                next.n + self.suffix
            } else {
                next.suffix
            },
            longest: self
                .longest
                .max(next.longest)
                .max(self.suffix + next.prefix),
        }
    }

    /// The streak at the end of the stretch: `escalated` when its final run reached `length`.
    pub fn streak(&self, length: u32) -> Streak {
        Streak {
            current: self.suffix,
            longest: self.longest,
            escalated: self.suffix >= length,
        }
    }
}

/// Runs the streak over composites in order; the state after the last.
pub fn streak_of(composites: impl IntoIterator<Item = f64>, threshold: f64, length: u32) -> Streak {
    let mut s = Streak::default();
    for c in composites {
        s.observe(c, threshold, length);
    }
    s
}

/// A two-proportion z-test (pooled): z and the two-sided p-value for x1/n1 vs x2/n2.
/// `None` when a side is empty or the pooled proportion is 0 or 1 (no variance to test).
pub fn two_proportion_z(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<(f64, f64)> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let p = (x1 + x2) as f64 / (n1f + n2f);
    if p <= 0.0 || p >= 1.0 {
        return None;
    }
    let se = (p * (1.0 - p) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    let z = (x1 as f64 / n1f - x2 as f64 / n2f) / se;
    Some((z, erfc(z.abs() / std::f64::consts::SQRT_2)))
}

/// Complementary error function (Numerical Recipes' erfcc, fractional error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The heuristic evaluators' verdicts on a record, as scores given at `ts_ms`.
pub fn heuristic_scores(
    record: &crate::core::record::Record,
    set: &crate::core::heuristics::HeuristicSet,
    ts_ms: i64,
) -> Vec<Score> {
    crate::core::heuristics::evaluate(record, set)
        .into_iter()
        .map(|(name, value)| Score {
            request_id: record.request_id.clone(),
            name: name.to_owned(),
            value,
            source: ScoreSource::Heuristic,
            comment: None,
            ts_ms,
        })
        .collect()
}

/// Parses one item of `POST /api/v1/scores`: `{"request_id", "name", "value" (0..1),
/// "source" (default "api"), "comment", "timestamp"}`. `now_ms` is the default timestamp.
pub fn parse_score_item(item: &str, now_ms: i64) -> Result<Score, RecordError> {
    let v = json_object(item)?;
    let request_id = string_field(&v, "request_id", MAX_REQUEST_ID_BYTES)?
        .ok_or_else(|| RecordError::new("request_id", "is required"))?;
    let name = string_field(&v, "name", MAX_SCORE_NAME_BYTES)?
        .ok_or_else(|| RecordError::new("name", "is required"))?;
    let value = match v.get("value") {
        None | Some(Value::Null) => return Err(RecordError::new("value", "is required")),
        Some(x) => x.as_f64().ok_or_else(|| {
            RecordError::new("value", format!("expected a number in 0..1, got {x}"))
        })?,
    };
    check_score(&name, value).map_err(|(field, m)| RecordError::new(field, m))?;
    let source = match string_field(&v, "source", 32)? {
        None => ScoreSource::Api,
        Some(s) => ScoreSource::parse(&s).ok_or_else(|| {
            RecordError::new(
                "source",
                format!("expected \"human\", \"model\", \"heuristic\" or \"api\", got {s:?}"),
            )
        })?,
    };
    let comment = string_field(&v, "comment", MAX_COMMENT_BYTES)?;
    let ts_ms = timestamp_field(&v, now_ms)?;
    Ok(Score {
        request_id,
        name,
        value,
        source,
        comment,
        ts_ms,
    })
}

/// An item that must be a JSON object.
pub(crate) fn json_object(item: &str) -> Result<serde_json::Map<String, Value>, RecordError> {
    match serde_json::from_str::<Value>(item) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(RecordError::new("(item)", "expected a JSON object")),
        Err(e) => Err(RecordError::new("(item)", format!("invalid JSON: {e}"))),
    }
}

/// An optional string field of at most `max` bytes (null = absent).
pub(crate) fn string_field(
    v: &serde_json::Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<String>, RecordError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(RecordError::new(field, format!("longer than {max} bytes"))),
        Some(other) => Err(RecordError::new(
            field,
            format!("expected a string, got {other}"),
        )),
    }
}

/// The optional `timestamp` (RFC 3339 or unix ms), else `now_ms`.
pub(crate) fn timestamp_field(
    v: &serde_json::Map<String, Value>,
    now_ms: i64,
) -> Result<i64, RecordError> {
    match v.get("timestamp") {
        None | Some(Value::Null) => Ok(now_ms),
        Some(t) => parse_timestamp(t).map_err(|m| RecordError::new("timestamp", m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_person_outranks_the_app_the_judge_and_the_heuristics_whatever_the_order() {
        let s = effective_scores([
            ("relevance", ScoreSource::Heuristic, 0.1),
            ("relevance", ScoreSource::Model, 0.4),
            ("relevance", ScoreSource::Human, 0.9),
            ("relevance", ScoreSource::Api, 0.6),
            ("safety", ScoreSource::Model, 0.8),
            ("safety", ScoreSource::Heuristic, 0.2),
        ]);
        assert_eq!(s["relevance"], 0.9);
        assert_eq!(s["safety"], 0.8);
    }

    #[test]
    fn the_composite_needs_every_configured_name() {
        let three = names(&["relevance", "completeness", "safety"]);
        let mut s = BTreeMap::new();
        s.insert("relevance".to_owned(), 0.9);
        s.insert("safety".to_owned(), 0.6);
        assert_eq!(composite(&s, &three), None);
        s.insert("completeness".to_owned(), 0.3);
        // (0.9 + 0.3 + 0.6) / 3 = 0.6
        assert!((composite(&s, &three).unwrap() - 0.6).abs() < 1e-12);
        s.insert("tone".to_owned(), 0.0); // not configured: ignored
        assert!((composite(&s, &three).unwrap() - 0.6).abs() < 1e-12);
    }

    #[test]
    fn streaks_reset_on_a_good_answer_and_escalate_once_per_run() {
        let mut s = Streak::default();
        let raised: Vec<bool> = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1]
            .iter()
            .map(|c| s.observe(*c, 0.7, 5))
            .collect();
        assert_eq!(
            raised,
            [
                false, false, false, false, true, false, false, false, false, false, false, true
            ]
        );
        assert_eq!(s.current, 5);
        assert_eq!(s.longest, 6);
        assert!(s.escalated);
        // Exactly the threshold is not below it.
        assert!(!s.observe(0.7, 0.7, 5));
        assert_eq!(s.current, 0);
        assert!(!s.escalated);
    }

    #[test]
    fn run_summaries_compose_to_the_streak_of_the_whole_sequence() {
        // Every split of a sequence into up to three parts gives the streak run over it whole.
        let seq = [
            0.9, 0.5, 0.5, 0.9, 0.1, 0.2, 0.3, 0.4, 0.9, 0.6, 0.6, 0.69, 0.7, 0.1,
        ];
        let whole = streak_of(seq, 0.7, 3);
        let sum = |part: &[f64]| {
            part.iter().fold(RunSummary::default(), |acc, c| {
                acc.then(RunSummary::of(*c, 0.7))
            })
        };
        for i in 0..=seq.len() {
            for j in i..=seq.len() {
                let s = sum(&seq[..i]).then(sum(&seq[i..j])).then(sum(&seq[j..]));
                assert_eq!(s.streak(3).current, whole.current, "{i} {j}");
                assert_eq!(s.longest, whole.longest, "{i} {j}");
                assert_eq!(s.n as usize, seq.len());
            }
        }
        assert_eq!((whole.current, whole.longest), (1, 4));
        let all_bad = sum(&[0.1, 0.1, 0.1]);
        assert_eq!((all_bad.prefix, all_bad.suffix, all_bad.longest), (3, 3, 3));
        assert!(all_bad.streak(3).escalated);
    }

    #[test]
    fn histograms_add_remove_and_answer_quantiles_of_two_decimal_scores_exactly() {
        let mut h = ScoreHist::default();
        let values = [0.05, 0.2, 0.69, 0.7, 0.71, 0.9, 1.0, 1.0, 0.33, 0.5];
        for v in values {
            h.add(v, 1);
        }
        assert_eq!(h.count(), 10);
        assert!((h.mean().unwrap() - 6.08 / 10.0).abs() < 1e-9);
        // Sorted: 0.05 0.2 0.33 0.5 0.69 0.7 0.71 0.9 1 1; nearest-rank p10 = 0.05, p50 = 0.69.
        assert_eq!(h.quantile(0.1), Some(0.05));
        assert_eq!(h.quantile(0.5), Some(0.69));
        assert_eq!(h.quantile(0.6), Some(0.7));
        assert_eq!(h.quantile(1.0), Some(1.0));
        // Below 0.7: 0.05 0.2 0.33 0.5 0.69.
        assert_eq!(h.share_below(0.7), Some(0.5));
        h.add(0.2, -1);
        assert_eq!(h.share_below(0.7), Some(4.0 / 9.0));
        let back = ScoreHist::decode(&h.encode()).unwrap();
        assert_eq!(back, h);
        for v in values {
            h.add(v, -1);
        }
        h.add(0.2, 1);
        assert!(h.is_empty());
        assert_eq!(h.sum_micros, 0);
        assert!(ScoreHist::decode(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn z_test_matches_a_hand_computed_value() {
        // 45/100 vs 30/100: p = 0.375, se = sqrt(0.375 * 0.625 * 0.02) = 0.0684653,
        // z = 0.15 / 0.0684653 = 2.19089; two-sided p = 0.028459 (scipy: 2*norm.sf(z)).
        let (z, p) = two_proportion_z(45, 100, 30, 100).unwrap();
        assert!((z - 2.190_890).abs() < 1e-5, "{z}");
        assert!((p - 0.028_459).abs() < 1e-5, "{p}");
        assert_eq!(two_proportion_z(0, 10, 0, 10), None);
        assert_eq!(two_proportion_z(1, 0, 0, 10), None);
    }

    #[test]
    fn score_items_parse_with_defaults_and_name_bad_fields() {
        let s =
            parse_score_item(r#"{"request_id":"r1","name":"relevance","value":0.9}"#, 7).unwrap();
        assert_eq!((s.source, s.ts_ms, s.value), (ScoreSource::Api, 7, 0.9));
        let s = parse_score_item(
            r#"{"request_id":"r1","name":"safety","value":1,"source":"human","comment":"ok","timestamp":"2026-01-01T00:00:00Z"}"#,
            7,
        )
        .unwrap();
        assert_eq!(s.source, ScoreSource::Human);
        assert_eq!(s.ts_ms, 1_767_225_600_000);
        assert_eq!(s.comment.as_deref(), Some("ok"));
        for (item, field) in [
            (r#"{"name":"a","value":0.5}"#, "request_id"),
            (r#"{"request_id":"r","value":0.5}"#, "name"),
            (r#"{"request_id":"r","name":"a"}"#, "value"),
            (r#"{"request_id":"r","name":"a","value":"high"}"#, "value"),
            (r#"{"request_id":"r","name":"a","value":-0.1}"#, "value"),
            (
                r#"{"request_id":"r","name":"a","value":0.5,"source":"robot"}"#,
                "source",
            ),
            (
                r#"{"request_id":"r","name":"a","value":0.5,"timestamp":"yesterday"}"#,
                "timestamp",
            ),
            (r#"[1]"#, "(item)"),
        ] {
            assert_eq!(
                parse_score_item(item, 0).unwrap_err().field,
                field,
                "{item}"
            );
        }
    }

    #[test]
    fn bad_scores_name_their_field() {
        assert_eq!(check_score("relevance", 1.2).unwrap_err().0, "value");
        assert_eq!(check_score("relevance", f64::NAN).unwrap_err().0, "value");
        assert_eq!(check_score("", 0.5).unwrap_err().0, "name");
        assert_eq!(check_score(COMPOSITE, 0.5).unwrap_err().0, "name");
        assert!(check_score("relevance", 0.0).is_ok());
    }
}
