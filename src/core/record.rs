//! The request record: one LLM-application request, the unit everything downstream reads.
//!
//! Owns the JSON contract of `POST /api/v1/events` items and their validation. Parsing is
//! field by field from a `serde_json::Value`, so every error names the field at fault; unknown
//! fields are ignored. No I/O and no clock reads: "now" is an argument.

use std::collections::BTreeMap;

use crate::core::quality::{Score, ScoreSource, check_score};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Number, Value};

/// Longest accepted `request_id`, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 256;
/// Longest accepted short string (model, user id, feature, attribute values...), in bytes.
pub const MAX_LABEL_BYTES: usize = 1024;
/// Most entries accepted in `stages` or `attributes`.
pub const MAX_MAP_ENTRIES: usize = 64;
/// Longest accepted `input`/`output` text, in bytes.
pub const MAX_CONTENT_BYTES: usize = 1 << 20;
/// Largest accepted duration: one day, in milliseconds. Anything longer is a unit mistake.
pub const MAX_DURATION_MS: f64 = 86_400_000.0;
/// Token counts above this are rejected as absurd (a request of 10^12 tokens is a bug).
pub const MAX_TOKENS: u64 = 1_000_000_000_000;

/// The seed's five pipeline stages. Other stage names are allowed too.
pub const STANDARD_STAGES: [&str; 5] = [
    "preprocessing",
    "guardrail",
    "model_inference",
    "tool_execution",
    "postprocessing",
];

/// Outcome of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Ok,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }
}

/// Token counts of one request, in the OpenAI/OpenTelemetry convention: cached and cache-write
/// tokens are *included in* `input_tokens`, reasoning tokens in `output_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Input plus output tokens (cached, cache-write and reasoning are already inside them).
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// One validated request record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub request_id: String,
    /// Unix milliseconds.
    pub timestamp_ms: i64,
    pub model: String,
    pub provider: Option<String>,
    #[serde(flatten)]
    pub usage: Usage,
    pub user_id: Option<String>,
    pub feature: Option<String>,
    pub session_id: Option<String>,
    pub release: Option<String>,
    pub status: Status,
    pub error_type: Option<String>,
    /// Stage name -> milliseconds.
    pub stages: BTreeMap<String, f64>,
    /// Wall time of the whole request, in milliseconds.
    pub duration_ms: f64,
    pub ttft_ms: Option<f64>,
    pub attributes: BTreeMap<String, String>,
    pub input: Option<String>,
    pub output: Option<String>,
    /// Length of `input` in Unicode scalar values: sent as `input_chars`, or counted from the
    /// text at parse time. Kept when the text itself is not (`capture_content = false`).
    #[serde(default)]
    pub input_chars: Option<u64>,
    /// Length of `output`, as `input_chars`.
    #[serde(default)]
    pub output_chars: Option<u64>,
    /// Scores that came with the request (an event's `scores`, a trace's evaluations, the
    /// heuristic evaluators); stored in the scores table, not in the request row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<Score>,
}

/// Length of a text in Unicode scalar values (what `input_chars`/`output_chars` count).
pub fn char_count(text: &str) -> u64 {
    text.chars().count() as u64
}

impl Record {
    /// Sum of the measured stages, in milliseconds.
    pub fn stages_sum_ms(&self) -> f64 {
        self.stages.values().sum()
    }

    /// Wall time not covered by any measured stage (never negative: overlapping stages may sum
    /// to more than the wall time).
    pub fn unaccounted_ms(&self) -> f64 {
        (self.duration_ms - self.stages_sum_ms()).max(0.0)
    }

    /// `input_chars`, or the length of `input` when only the text is known.
    pub fn input_chars_or_count(&self) -> Option<u64> {
        self.input_chars
            .or_else(|| self.input.as_deref().map(char_count))
    }

    /// `output_chars`, or the length of `output` when only the text is known.
    pub fn output_chars_or_count(&self) -> Option<u64> {
        self.output_chars
            .or_else(|| self.output.as_deref().map(char_count))
    }

    /// The longest stage, if any stage was measured.
    pub fn bottleneck_stage(&self) -> Option<&str> {
        self.stages
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(name, _)| name.as_str())
    }
}

/// Why one item of a batch was rejected: the field at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RecordError {
    pub field: String,
    pub message: String,
}

impl RecordError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The known fields of an event, each kept as unparsed JSON text (no allocation) until
/// validation reads it with the type it must have; unknown fields are skipped. JSON `null`
/// counts as absent.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow, default)]
    request_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    provider: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    cached_input_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    cache_write_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reasoning_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    feature: Option<&'a RawValue>,
    #[serde(borrow, default)]
    session_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    release: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    duration_ms: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ttft_ms: Option<&'a RawValue>,
    #[serde(borrow, default)]
    attributes: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input_chars: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output_chars: Option<&'a RawValue>,
    #[serde(borrow, default)]
    scores: Option<&'a RawValue>,
}

/// Parses and validates one event given as JSON text (one NDJSON line or one array item).
/// `now_ms` is the default timestamp.
pub fn parse_event(text: &str, now_ms: i64) -> Result<Record, RecordError> {
    // Checked first: serde would also read a JSON array positionally into the struct.
    if !text.trim_start().starts_with('{') {
        return Err(RecordError::new("(item)", "expected a JSON object"));
    }
    let e: RawEvent<'_> = serde_json::from_str(text)
        .map_err(|err| RecordError::new("(item)", format!("invalid JSON: {err}")))?;

    let request_id = required_string(e.request_id, "request_id", MAX_REQUEST_ID_BYTES)?;
    let timestamp_ms = match e.timestamp {
        None => now_ms,
        Some(raw) => {
            let v: Value = serde_json::from_str(raw.get())
                .map_err(|err| RecordError::new("timestamp", err.to_string()))?;
            parse_timestamp(&v).map_err(|m| RecordError::new("timestamp", m))?
        }
    };
    let model = required_string(e.model, "model", MAX_LABEL_BYTES)?;
    let provider = optional_string(e.provider, "provider", MAX_LABEL_BYTES)?;

    let usage = Usage {
        input_tokens: required_tokens(e.input_tokens, "input_tokens")?,
        output_tokens: required_tokens(e.output_tokens, "output_tokens")?,
        cached_input_tokens: optional_tokens(e.cached_input_tokens, "cached_input_tokens")?
            .unwrap_or(0),
        cache_write_tokens: optional_tokens(e.cache_write_tokens, "cache_write_tokens")?
            .unwrap_or(0),
        reasoning_tokens: optional_tokens(e.reasoning_tokens, "reasoning_tokens")?.unwrap_or(0),
    };
    if usage.cached_input_tokens + usage.cache_write_tokens > usage.input_tokens {
        return Err(RecordError::new(
            "cached_input_tokens",
            format!(
                "cached_input_tokens ({}) + cache_write_tokens ({}) exceed input_tokens ({}); \
                 they are counted inside input_tokens",
                usage.cached_input_tokens, usage.cache_write_tokens, usage.input_tokens
            ),
        ));
    }
    if usage.reasoning_tokens > usage.output_tokens {
        return Err(RecordError::new(
            "reasoning_tokens",
            format!(
                "reasoning_tokens ({}) exceed output_tokens ({}); they are counted inside output_tokens",
                usage.reasoning_tokens, usage.output_tokens
            ),
        ));
    }

    let user_id = optional_string(e.user_id, "user_id", MAX_LABEL_BYTES)?;
    let feature = optional_string(e.feature, "feature", MAX_LABEL_BYTES)?;
    let session_id = optional_string(e.session_id, "session_id", MAX_LABEL_BYTES)?;
    let release = optional_string(e.release, "release", MAX_LABEL_BYTES)?;

    let status = match e.status {
        None => Status::Ok,
        Some(raw) => match serde_json::from_str::<&str>(raw.get()) {
            Ok("ok") => Status::Ok,
            Ok("error") => Status::Error,
            _ => {
                return Err(RecordError::new(
                    "status",
                    format!("expected \"ok\" or \"error\", got {}", brief(raw)),
                ));
            }
        },
    };
    let error_type = optional_string(e.error_type, "error_type", MAX_LABEL_BYTES)?;

    let mut stages = BTreeMap::new();
    for (name, raw) in object(e.stages, "stages", "stage name -> milliseconds")? {
        let field = format!("stages.{name}");
        check_label(&field, &name, MAX_LABEL_BYTES)?;
        stages.insert(name, duration(raw, &field)?);
    }
    let duration_ms = match e.duration_ms {
        None => stages.values().sum(),
        Some(raw) => duration(raw, "duration_ms")?,
    };
    let ttft_ms = e.ttft_ms.map(|raw| duration(raw, "ttft_ms")).transpose()?;

    let mut attributes = BTreeMap::new();
    for (key, raw) in object(e.attributes, "attributes", "string -> string")? {
        let field = format!("attributes.{key}");
        check_label(&field, &key, MAX_LABEL_BYTES)?;
        let value = required_string(Some(raw), &field, MAX_LABEL_BYTES)?;
        attributes.insert(key, value);
    }

    let input = optional_string(e.input, "input", MAX_CONTENT_BYTES)?;
    let output = optional_string(e.output, "output", MAX_CONTENT_BYTES)?;
    // Sent counts win (the client may not send the text at all); else counted from the text.
    let input_chars =
        optional_tokens(e.input_chars, "input_chars")?.or_else(|| input.as_deref().map(char_count));
    let output_chars = optional_tokens(e.output_chars, "output_chars")?
        .or_else(|| output.as_deref().map(char_count));

    let mut scores = Vec::new();
    for (name, raw) in object(e.scores, "scores", "score name -> number in 0..1")? {
        let field = format!("scores.{name}");
        let value = serde_json::from_str::<f64>(raw.get()).map_err(|_| {
            RecordError::new(
                &field,
                format!("expected a number in 0..1, got {}", brief(raw)),
            )
        })?;
        check_score(&name, value).map_err(|(_, m)| RecordError::new(&field, m))?;
        scores.push(Score {
            request_id: request_id.clone(),
            name,
            value,
            source: ScoreSource::Api,
            comment: None,
            ts_ms: now_ms,
        });
    }

    Ok(Record {
        request_id,
        timestamp_ms,
        model,
        provider,
        usage,
        user_id,
        feature,
        session_id,
        release,
        status,
        error_type,
        stages,
        duration_ms,
        ttft_ms,
        attributes,
        input,
        output,
        input_chars,
        output_chars,
        scores,
    })
}

/// Parses and validates one event given as a JSON value (convenience for callers that
/// already hold one; ingest uses [`parse_event`] on the text).
pub fn parse_record(value: &Value, now_ms: i64) -> Result<Record, RecordError> {
    parse_event(&value.to_string(), now_ms)
}

/// Parses a timestamp given as RFC 3339 text or integer unix milliseconds.
pub fn parse_timestamp(v: &Value) -> Result<i64, String> {
    match v {
        Value::String(s) => parse_timestamp_str(s),
        Value::Number(n) => n
            .as_i64()
            .filter(|ms| (0..=253_402_300_799_999).contains(ms))
            .ok_or_else(|| {
                format!("expected integer unix milliseconds (0 ..= year 9999), got {n}")
            }),
        Value::Null => Err("expected RFC 3339 text or unix milliseconds, got null".into()),
        Value::Bool(_) => Err("expected RFC 3339 text or unix milliseconds, got a boolean".into()),
        Value::Array(_) => Err("expected RFC 3339 text or unix milliseconds, got an array".into()),
        Value::Object(_) => {
            Err("expected RFC 3339 text or unix milliseconds, got an object".into())
        }
    }
}

/// Parses RFC 3339 text or a decimal string of unix milliseconds (as in query strings).
pub fn parse_timestamp_str(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return parse_timestamp(&Value::from(ms));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            format!(
                "expected RFC 3339 (e.g. 2026-01-31T12:00:00Z) or unix milliseconds, got {s:?}: {e}"
            )
        })
}

/// What a JSON value is, for error messages ("a string", "the number -5"...).
fn brief(raw: &RawValue) -> String {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'n') => "null".into(),
        Some(b't' | b'f') => "a boolean".into(),
        Some(b'"') => "a string".into(),
        Some(b'[') => "an array".into(),
        Some(b'{') => "an object".into(),
        _ => format!("the number {text}"),
    }
}

fn is_json_null(raw: &RawValue) -> bool {
    raw.get().trim() == "null"
}

fn check_label(field: &str, s: &str, max: usize) -> Result<(), RecordError> {
    if s.is_empty() {
        return Err(RecordError::new(field, "must not be empty"));
    }
    if s.len() > max {
        return Err(RecordError::new(
            field,
            format!("at most {max} bytes, got {}", s.len()),
        ));
    }
    Ok(())
}

fn required_string(raw: Option<&RawValue>, field: &str, max: usize) -> Result<String, RecordError> {
    optional_string(raw, field, max)?.ok_or_else(|| RecordError::new(field, "is required"))
}

fn optional_string(
    raw: Option<&RawValue>,
    field: &str,
    max: usize,
) -> Result<Option<String>, RecordError> {
    let Some(raw) = raw.filter(|r| !is_json_null(r)) else {
        return Ok(None);
    };
    let s: String = serde_json::from_str(raw.get())
        .map_err(|_| RecordError::new(field, format!("expected a string, got {}", brief(raw))))?;
    check_label(field, &s, max)?;
    Ok(Some(s))
}

/// The entries of an optional JSON object field (in key order; a repeated key keeps its last
/// value).
fn object<'a>(
    raw: Option<&'a RawValue>,
    field: &str,
    what: &str,
) -> Result<BTreeMap<String, &'a RawValue>, RecordError> {
    let Some(raw) = raw.filter(|r| !is_json_null(r)) else {
        return Ok(BTreeMap::new());
    };
    let map: BTreeMap<String, &'a RawValue> = serde_json::from_str(raw.get()).map_err(|_| {
        RecordError::new(
            field,
            format!("expected an object of {what}, got {}", brief(raw)),
        )
    })?;
    if map.len() > MAX_MAP_ENTRIES {
        return Err(RecordError::new(
            field,
            format!("at most {MAX_MAP_ENTRIES} entries, got {}", map.len()),
        ));
    }
    Ok(map)
}

fn number(raw: &RawValue) -> Option<Number> {
    serde_json::from_str(raw.get()).ok()
}

fn required_tokens(raw: Option<&RawValue>, field: &str) -> Result<u64, RecordError> {
    optional_tokens(raw, field)?.ok_or_else(|| RecordError::new(field, "is required"))
}

fn optional_tokens(raw: Option<&RawValue>, field: &str) -> Result<Option<u64>, RecordError> {
    let Some(raw) = raw.filter(|r| !is_json_null(r)) else {
        return Ok(None);
    };
    let n = number(raw).ok_or_else(|| {
        RecordError::new(
            field,
            format!("expected an integer >= 0, got {}", brief(raw)),
        )
    })?;
    match n.as_u64() {
        Some(t) if t <= MAX_TOKENS => Ok(Some(t)),
        Some(t) => Err(RecordError::new(
            field,
            format!("{t} is larger than the limit of {MAX_TOKENS}"),
        )),
        // A float with no fractional part (e.g. 12.0) is still a count.
        None => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && (0.0..=MAX_TOKENS as f64).contains(&f) => {
                Ok(Some(f as u64))
            }
            _ => Err(RecordError::new(
                field,
                format!("must be an integer >= 0, got {n}"),
            )),
        },
    }
}

fn duration(raw: &RawValue, field: &str) -> Result<f64, RecordError> {
    let ms = number(raw).and_then(|n| n.as_f64()).ok_or_else(|| {
        RecordError::new(
            field,
            format!("expected milliseconds as a number, got {}", brief(raw)),
        )
    })?;
    // JSON text cannot say NaN or infinity, but a huge literal can overflow to infinity.
    if !ms.is_finite() || !(0.0..=MAX_DURATION_MS).contains(&ms) {
        return Err(RecordError::new(
            field,
            format!("must be a finite number of milliseconds in 0 ..= {MAX_DURATION_MS}, got {ms}"),
        ));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn minimal() -> Value {
        json!({"request_id": "r1", "model": "gpt-4o", "input_tokens": 100, "output_tokens": 20})
    }

    fn err_field(v: Value) -> String {
        parse_record(&v, NOW).unwrap_err().field
    }

    #[test]
    fn minimal_record_gets_defaults() {
        let r = parse_record(&minimal(), NOW).unwrap();
        assert_eq!(r.timestamp_ms, NOW);
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.usage.cached_input_tokens, 0);
        assert_eq!(r.duration_ms, 0.0);
        assert!(r.stages.is_empty());
    }

    #[test]
    fn duration_defaults_to_sum_of_stages() {
        let mut v = minimal();
        v["stages"] = json!({"preprocessing": 12.5, "model_inference": 800, "custom_step": 7.5});
        let r = parse_record(&v, NOW).unwrap();
        assert_eq!(r.duration_ms, 820.0);
        assert_eq!(r.bottleneck_stage(), Some("model_inference"));
        assert_eq!(r.unaccounted_ms(), 0.0);
    }

    #[test]
    fn unaccounted_time_is_wall_time_minus_stages() {
        let mut v = minimal();
        v["stages"] = json!({"guardrail": 100, "model_inference": 700});
        v["duration_ms"] = json!(1000);
        let r = parse_record(&v, NOW).unwrap();
        assert_eq!(r.unaccounted_ms(), 200.0);
    }

    #[test]
    fn timestamps_accept_rfc3339_and_unix_ms() {
        let mut v = minimal();
        v["timestamp"] = json!("2026-01-01T09:00:00+09:00");
        assert_eq!(parse_record(&v, 0).unwrap().timestamp_ms, NOW);
        v["timestamp"] = json!(NOW + 5);
        assert_eq!(parse_record(&v, 0).unwrap().timestamp_ms, NOW + 5);
        v["timestamp"] = json!("yesterday");
        assert_eq!(err_field(v), "timestamp");
    }

    #[test]
    fn missing_required_fields_are_named() {
        for field in ["request_id", "model", "input_tokens", "output_tokens"] {
            let mut v = minimal();
            v.as_object_mut().unwrap().remove(field);
            assert_eq!(err_field(v), field);
        }
    }

    #[test]
    fn bad_token_counts_are_rejected() {
        for bad in [json!(-1), json!(1.5), json!("10"), json!(true)] {
            let mut v = minimal();
            v["input_tokens"] = bad;
            assert_eq!(err_field(v), "input_tokens");
        }
        let mut v = minimal();
        v["output_tokens"] = json!(20.0);
        assert_eq!(parse_record(&v, NOW).unwrap().usage.output_tokens, 20);
    }

    #[test]
    fn cached_tokens_cannot_exceed_input() {
        let mut v = minimal();
        v["cached_input_tokens"] = json!(80);
        v["cache_write_tokens"] = json!(30);
        assert_eq!(err_field(v), "cached_input_tokens");
        let mut v = minimal();
        v["reasoning_tokens"] = json!(21);
        assert_eq!(err_field(v), "reasoning_tokens");
    }

    #[test]
    fn bad_durations_name_the_stage() {
        let mut v = minimal();
        v["stages"] = json!({"guardrail": -3});
        assert_eq!(err_field(v), "stages.guardrail");
        let mut v = minimal();
        v["duration_ms"] = json!(1e300);
        assert_eq!(err_field(v), "duration_ms");
        let mut v = minimal();
        v["ttft_ms"] = json!("fast");
        assert_eq!(err_field(v), "ttft_ms");
    }

    #[test]
    fn oversize_and_empty_strings_are_rejected() {
        let mut v = minimal();
        v["request_id"] = json!("x".repeat(257));
        assert_eq!(err_field(v), "request_id");
        let mut v = minimal();
        v["request_id"] = json!("x".repeat(256));
        assert!(parse_record(&v, NOW).is_ok());
        let mut v = minimal();
        v["feature"] = json!("");
        assert_eq!(err_field(v), "feature");
    }

    #[test]
    fn unknown_fields_are_ignored_and_status_is_checked() {
        let mut v = minimal();
        v["some_future_field"] = json!({"a": 1});
        assert!(parse_record(&v, NOW).is_ok());
        v["status"] = json!("failed");
        assert_eq!(err_field(v), "status");
    }

    #[test]
    fn text_items_parse_escapes_and_reject_non_objects() {
        let r = parse_event(
            r#"{"request_id":"a\"b","model":"gpt-4o","input_tokens":1,"output_tokens":2,"feature":"caf\u00e9","extra":[1,{"x":null}]}"#,
            NOW,
        )
        .unwrap();
        assert_eq!(r.request_id, "a\"b");
        assert_eq!(r.feature.as_deref(), Some("café"));
        for bad in ["5", "[1]", "\"x\"", "null"] {
            let e = parse_event(bad, NOW).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.message.as_str()),
                ("(item)", "expected a JSON object")
            );
        }
        let e = parse_event(r#"{"request_id": "a", "model": }"#, NOW).unwrap_err();
        assert_eq!(e.field, "(item)");
        assert!(e.message.starts_with("invalid JSON"), "{}", e.message);
        // Explicit nulls are absent values.
        let r = parse_event(
            r#"{"request_id":"a","model":"m","input_tokens":1,"output_tokens":0,"feature":null,"stages":null,"ttft_ms":null}"#,
            NOW,
        )
        .unwrap();
        assert_eq!((r.feature, r.stages.len(), r.ttft_ms), (None, 0, None));
    }

    #[test]
    fn too_many_stages_or_attributes_are_rejected() {
        let many: serde_json::Map<String, Value> = (0..=MAX_MAP_ENTRIES)
            .map(|i| (format!("k{i}"), json!("v")))
            .collect();
        let mut v = minimal();
        v["attributes"] = Value::Object(many.clone());
        assert_eq!(err_field(v), "attributes");
        let mut v = minimal();
        v["stages"] = Value::Object(many.into_iter().map(|(k, _)| (k, json!(1))).collect());
        assert_eq!(err_field(v), "stages");
        let mut v = minimal();
        v["stages"] = json!({"guardrail": 1, "model_inference": 2});
        assert!(parse_record(&v, NOW).is_ok());
    }

    #[test]
    fn character_counts_are_sent_or_counted_from_the_texts() {
        let mut v = minimal();
        v["input"] = json!("héllo 🌍");
        v["output"] = json!("");
        let e = parse_record(&v, NOW);
        // An empty text is rejected like every empty string.
        assert_eq!(e.unwrap_err().field, "output");
        v["output"] = json!("ok");
        let r = parse_record(&v, NOW).unwrap();
        assert_eq!((r.input_chars, r.output_chars), (Some(7), Some(2)));
        v["input_chars"] = json!(1234);
        v["output_chars"] = json!(0);
        let r = parse_record(&v, NOW).unwrap();
        assert_eq!((r.input_chars, r.output_chars), (Some(1234), Some(0)));
        let r = parse_record(&minimal(), NOW).unwrap();
        assert_eq!((r.input_chars, r.output_chars), (None, None));
        for (field, bad) in [
            ("input_chars", json!(-1)),
            ("output_chars", json!(2.5)),
            ("input_chars", json!("12")),
        ] {
            let mut v = minimal();
            v[field] = bad;
            assert_eq!(err_field(v), field);
        }
    }

    #[test]
    fn attributes_must_be_strings() {
        let mut v = minimal();
        v["attributes"] = json!({"question_category": "billing", "n": 3});
        assert_eq!(err_field(v), "attributes.n");
    }
}
