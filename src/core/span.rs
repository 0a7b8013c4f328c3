//! OpenTelemetry spans -> compact span summaries: everything llmwatch needs of a span to build
//! request records, read once from its attributes (GenAI semantic conventions, their older
//! names, OpenInference and llmwatch's own `llmwatch.*` keys).
//!
//! A summary is what is stored per span (see `core::trace` for how the spans of a trace become
//! one record), so it keeps only the facts assembly needs. No I/O.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde::{Deserialize, Serialize};

use super::record::{MAX_CONTENT_BYTES, MAX_DURATION_MS, MAX_LABEL_BYTES, MAX_TOKENS};

/// `gen_ai.operation.name` values that are a model call.
pub const INFERENCE_OPERATIONS: [&str; 5] = [
    "chat",
    "text_completion",
    "generate_content",
    "embeddings",
    "create_embeddings",
];

/// Stage names a span name (or `llmwatch.stage`) maps to when it equals or starts with one.
const NAMED_STAGES: [&str; 5] = [
    "preprocessing",
    "guardrail",
    "postprocessing",
    "model_inference",
    "tool_execution",
];

/// A span that cannot become part of a record: the attribute (or span field) at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("span {span}: {field}: {message}")]
pub struct SpanError {
    /// Hex span id (or "?" when the id itself is invalid).
    pub span: String,
    pub field: String,
    pub message: String,
}

/// Token counts a span reports, already normalised to the record's convention (cached and
/// cache-write inside input, reasoning inside output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SpanUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
}

/// One evaluation result carried by a span (`gen_ai.evaluation.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub name: String,
    pub score: f64,
}

/// What llmwatch keeps of one span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SpanSummary {
    pub span_id: u64,
    /// `None` for a root span (no parent, or a parent in another process marked remote).
    pub parent_id: Option<u64>,
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Span status is ERROR.
    pub error: bool,
    /// The stage a rule recognised (`None`: the span name is the stage, unless the span is
    /// nested in a recognised stage).
    pub stage: Option<String>,
    /// Set when the span is a model call (it names a model or reports tokens).
    pub generation: Option<Generation>,
    pub request_id: Option<String>,
    pub error_type: Option<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub feature: Option<String>,
    /// The configured feature attribute (`[otlp] feature_attribute`), a fallback for `feature`.
    pub feature_fallback: Option<String>,
    pub release: Option<String>,
    /// Resource `service.name` / `service.version`, kept on roots and model calls only.
    pub service_name: Option<String>,
    pub service_version: Option<String>,
    /// `llmwatch.attr.KEY` attributes, by KEY.
    pub attributes: BTreeMap<String, String>,
    pub evaluations: Vec<Evaluation>,
}

/// The model-call facts of a generation span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Generation {
    /// `None` when the span reports tokens but names no model (priced as unknown).
    pub model: Option<String>,
    pub provider: Option<String>,
    pub operation: Option<String>,
    pub usage: SpanUsage,
    /// The span carried usage attributes (a failed call usually has none).
    pub has_usage: bool,
    pub finish_reasons: Vec<String>,
    pub ttft_ms: Option<f64>,
    pub input: Option<String>,
    pub output: Option<String>,
}

/// One stage rule of the `[otlp]` config: spans matching it belong to `stage`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRule {
    pub stage: String,
    /// Span name, exact, or a prefix when it ends with `*`. Case-insensitive.
    pub span_name: Option<String>,
    /// `gen_ai.operation.name` value.
    pub operation: Option<String>,
    /// An attribute key that must be present...
    pub attribute: Option<String>,
    /// ...with this value (any value when absent).
    pub value: Option<String>,
}

impl StageRule {
    /// A rule with nothing to match is a config mistake.
    pub fn validate(&self) -> Result<(), String> {
        if self.stage.is_empty() || self.stage.len() > MAX_LABEL_BYTES {
            return Err("stage must be 1..1024 bytes".into());
        }
        if self.span_name.is_none() && self.operation.is_none() && self.attribute.is_none() {
            return Err("give span_name, operation or attribute to match".into());
        }
        if self.value.is_some() && self.attribute.is_none() {
            return Err("value needs attribute".into());
        }
        Ok(())
    }

    fn matches(&self, name: &str, operation: Option<&str>, attrs: &[KeyValue]) -> bool {
        if let Some(pattern) = &self.span_name {
            let hit = match pattern.strip_suffix('*') {
                Some(prefix) => name
                    .get(..prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
                None => name.eq_ignore_ascii_case(pattern),
            };
            if !hit {
                return false;
            }
        }
        if let Some(op) = &self.operation
            && operation != Some(op.as_str())
        {
            return false;
        }
        if let Some(key) = &self.attribute {
            let found = attrs.iter().find(|kv| &kv.key == key);
            match (found, &self.value) {
                (None, _) => return false,
                (Some(kv), Some(want)) => {
                    if any_to_string(kv.value.as_ref()).as_deref() != Some(want.as_str()) {
                        return false;
                    }
                }
                (Some(_), None) => {}
            }
        }
        true
    }
}

/// How spans are read: the parts of the `[otlp]` config that extraction needs.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Keep prompt and completion texts (`capture_content`).
    pub capture_content: bool,
    /// An attribute naming the feature when `llmwatch.feature` is absent.
    pub feature_attribute: Option<String>,
    /// User rules, tried before the built-in ones.
    pub stage_rules: Vec<StageRule>,
}

/// The resource facts every span of a resource shares.
#[derive(Debug, Clone, Default)]
pub struct ResourceFacts {
    pub service_name: Option<String>,
    pub service_version: Option<String>,
}

impl ResourceFacts {
    pub fn from_attributes(attrs: &[KeyValue]) -> Self {
        let mut facts = ResourceFacts::default();
        for kv in attrs {
            match kv.key.as_str() {
                "service.name" => facts.service_name = label(kv.value.as_ref()),
                "service.version" => facts.service_version = label(kv.value.as_ref()),
                _ => {}
            }
        }
        facts
    }
}

/// The 16-byte trace id of a span, if well formed (16 bytes, not all zero).
pub fn trace_id_of(span: &Span) -> Option<[u8; 16]> {
    let id: [u8; 16] = span.trace_id.as_slice().try_into().ok()?;
    (id != [0; 16]).then_some(id)
}

/// Lowercase hex of bytes (trace and span ids).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// OTLP span flag bits: the parent's is-remote bit is known / set.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// Candidate attributes, most preferred first, by the slot they fill.
#[derive(Default)]
struct Slots<'a> {
    response_model: Option<&'a AnyValue>,
    request_model: Option<(u8, &'a AnyValue)>,
    provider: Option<(u8, &'a AnyValue)>,
    operation: Option<&'a AnyValue>,
    oi_kind: Option<&'a AnyValue>,
    input: Option<(u8, &'a str, &'a AnyValue)>,
    output: Option<(u8, &'a str, &'a AnyValue)>,
    cached: Option<(u8, &'a str, &'a AnyValue)>,
    cache_write: Option<(u8, &'a str, &'a AnyValue)>,
    reasoning: Option<(u8, &'a str, &'a AnyValue)>,
    finish_reasons: Option<&'a AnyValue>,
    ttft: Option<&'a AnyValue>,
    error_type: Option<&'a AnyValue>,
    user: Option<(u8, &'a AnyValue)>,
    session: Option<(u8, &'a AnyValue)>,
    feature: Option<&'a AnyValue>,
    feature_fallback: Option<&'a AnyValue>,
    release: Option<&'a AnyValue>,
    request_id: Option<&'a AnyValue>,
    stage: Option<&'a AnyValue>,
    content_in: Option<(u8, &'a AnyValue)>,
    content_out: Option<(u8, &'a AnyValue)>,
    eval_name: Option<&'a AnyValue>,
    eval_score: Option<&'a AnyValue>,
}

/// Keeps the candidate of lower rank (lower = preferred).
fn prefer<T: Copy>(slot: &mut Option<(u8, T)>, rank: u8, value: T) {
    if slot.is_none_or(|(r, _)| rank < r) {
        *slot = Some((rank, value));
    }
}

fn prefer_key<'a>(
    slot: &mut Option<(u8, &'a str, &'a AnyValue)>,
    rank: u8,
    key: &'a str,
    value: &'a AnyValue,
) {
    if slot.is_none_or(|(r, _, _)| rank < r) {
        *slot = Some((rank, key, value));
    }
}

/// Reads one span into a summary. `Err` names the attribute at fault.
pub fn extract_span(
    span: &Span,
    resource: &ResourceFacts,
    options: &ExtractOptions,
) -> Result<SpanSummary, SpanError> {
    let span_hex = if span.span_id.len() == 8 {
        hex(&span.span_id)
    } else {
        "?".to_owned()
    };
    let fail = |field: &str, message: String| SpanError {
        span: span_hex.clone(),
        field: field.to_owned(),
        message,
    };
    let span_id = id64(&span.span_id)
        .ok_or_else(|| fail("span_id", "must be 8 bytes, not all zero".into()))?;
    let parent_id = match span.parent_span_id.len() {
        0 => None,
        8 => id64(&span.parent_span_id),
        n => {
            return Err(fail(
                "parent_span_id",
                format!("must be empty or 8 bytes, got {n}"),
            ));
        }
    };
    // A parent in another process (an upstream service we never see) makes this span the
    // root of what llmwatch receives.
    let remote_parent = span.flags & FLAG_HAS_IS_REMOTE != 0 && span.flags & FLAG_IS_REMOTE != 0;
    let parent_id = parent_id.filter(|_| !remote_parent);
    if span.start_time_unix_nano == 0 {
        return Err(fail("start_time_unix_nano", "is required".into()));
    }
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err(fail(
            "end_time_unix_nano",
            "is before start_time_unix_nano".into(),
        ));
    }
    let duration_ms = (span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e6;
    if duration_ms > MAX_DURATION_MS {
        return Err(fail(
            "end_time_unix_nano",
            format!("span lasts {duration_ms} ms, more than a day"),
        ));
    }

    let mut s = Slots::default();
    let mut attributes = BTreeMap::new();
    for kv in &span.attributes {
        let Some(v) = kv.value.as_ref() else { continue };
        let key = kv.key.as_str();
        match key {
            "gen_ai.response.model" => s.response_model = Some(v),
            "gen_ai.request.model" => prefer(&mut s.request_model, 0, v),
            "llm.response.model_name" => prefer(&mut s.request_model, 1, v),
            "llm.model_name" => prefer(&mut s.request_model, 2, v),
            "llm.request.model_name" => prefer(&mut s.request_model, 3, v),
            "gen_ai.provider.name" => prefer(&mut s.provider, 0, v),
            "gen_ai.system" => prefer(&mut s.provider, 1, v),
            "llm.provider" => prefer(&mut s.provider, 2, v),
            "llm.system" => prefer(&mut s.provider, 3, v),
            "gen_ai.operation.name" => s.operation = Some(v),
            "openinference.span.kind" => s.oi_kind = Some(v),
            "gen_ai.usage.input_tokens" => prefer_key(&mut s.input, 0, key, v),
            "gen_ai.usage.prompt_tokens" => prefer_key(&mut s.input, 1, key, v),
            "llm.token_count.prompt" => prefer_key(&mut s.input, 2, key, v),
            "gen_ai.usage.output_tokens" => prefer_key(&mut s.output, 0, key, v),
            "gen_ai.usage.completion_tokens" => prefer_key(&mut s.output, 1, key, v),
            "llm.token_count.completion" => prefer_key(&mut s.output, 2, key, v),
            "gen_ai.usage.cache_read.input_tokens" => prefer_key(&mut s.cached, 0, key, v),
            "gen_ai.usage.cache_read_input_tokens" => prefer_key(&mut s.cached, 1, key, v),
            "llm.token_count.prompt_details.cache_read" => prefer_key(&mut s.cached, 2, key, v),
            "gen_ai.usage.cache_creation.input_tokens" => prefer_key(&mut s.cache_write, 0, key, v),
            "gen_ai.usage.cache_write.input_tokens" => prefer_key(&mut s.cache_write, 1, key, v),
            "gen_ai.usage.cache_creation_input_tokens" => prefer_key(&mut s.cache_write, 2, key, v),
            "llm.token_count.prompt_details.cache_write" => {
                prefer_key(&mut s.cache_write, 3, key, v)
            }
            "gen_ai.usage.reasoning.output_tokens" => prefer_key(&mut s.reasoning, 0, key, v),
            "gen_ai.usage.reasoning_tokens" => prefer_key(&mut s.reasoning, 1, key, v),
            "llm.token_count.completion_details.reasoning" => {
                prefer_key(&mut s.reasoning, 2, key, v)
            }
            "gen_ai.response.finish_reasons" => s.finish_reasons = Some(v),
            "gen_ai.response.time_to_first_chunk" => s.ttft = Some(v),
            "error.type" => s.error_type = Some(v),
            "user.id" => prefer(&mut s.user, 0, v),
            "enduser.id" => prefer(&mut s.user, 1, v),
            "session.id" => prefer(&mut s.session, 0, v),
            "gen_ai.conversation.id" => prefer(&mut s.session, 1, v),
            "llmwatch.feature" => s.feature = Some(v),
            "llmwatch.release" => s.release = Some(v),
            "llmwatch.request_id" => s.request_id = Some(v),
            "llmwatch.stage" => s.stage = Some(v),
            "gen_ai.input.messages" => prefer(&mut s.content_in, 0, v),
            "gen_ai.prompt" => prefer(&mut s.content_in, 1, v),
            "input.value" => prefer(&mut s.content_in, 2, v),
            "gen_ai.output.messages" => prefer(&mut s.content_out, 0, v),
            "gen_ai.completion" => prefer(&mut s.content_out, 1, v),
            "output.value" => prefer(&mut s.content_out, 2, v),
            "gen_ai.evaluation.name" => s.eval_name = Some(v),
            "gen_ai.evaluation.score.value" => s.eval_score = Some(v),
            _ => {
                if let Some(name) = key.strip_prefix("llmwatch.attr.") {
                    if !name.is_empty()
                        && let Some(value) = label(Some(v))
                    {
                        attributes.insert(truncate(name, MAX_LABEL_BYTES), value);
                    }
                } else if options.feature_attribute.as_deref() == Some(key) {
                    s.feature_fallback = Some(v);
                }
            }
        }
    }

    // Older instrumentations put prompt/completion (and newer ones evaluations) in events.
    let mut evaluations = Vec::new();
    let mut event_in = None;
    let mut event_out = None;
    for event in &span.events {
        let get = |k: &str| {
            event
                .attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.as_ref())
        };
        match event.name.as_str() {
            "gen_ai.content.prompt" => event_in = event_in.or(get("gen_ai.prompt")),
            "gen_ai.content.completion" => event_out = event_out.or(get("gen_ai.completion")),
            _ => {
                if let (Some(name), Some(score)) = (
                    get("gen_ai.evaluation.name"),
                    get("gen_ai.evaluation.score.value"),
                ) && let Some(e) = evaluation(name, score)
                {
                    evaluations.push(e);
                }
            }
        }
    }
    if let (Some(name), Some(score)) = (s.eval_name, s.eval_score)
        && let Some(e) = evaluation(name, score)
    {
        evaluations.push(e);
    }

    let operation = label(s.operation);
    let model = label(s.response_model).or_else(|| label(s.request_model.map(|(_, v)| v)));
    let tokens = |slot: Option<(u8, &str, &AnyValue)>| -> Result<Option<u64>, SpanError> {
        match slot {
            None => Ok(None),
            Some((_, key, v)) => token_count(v).map(Some).map_err(|m| fail(key, m)),
        }
    };
    let input = tokens(s.input)?;
    let output = tokens(s.output)?;
    let cached = tokens(s.cached)?;
    let cache_write = tokens(s.cache_write)?;
    let reasoning = tokens(s.reasoning)?;
    let has_usage = input.is_some() || output.is_some();
    let usage = SpanUsage {
        input_tokens: input.unwrap_or(0),
        output_tokens: output.unwrap_or(0),
        cached_input_tokens: cached.unwrap_or(0),
        cache_write_tokens: cache_write.unwrap_or(0),
        reasoning_tokens: reasoning.unwrap_or(0),
    };
    let usage = normalise(usage);
    let oi_kind = label(s.oi_kind);
    let is_inference_op = operation
        .as_deref()
        .is_some_and(|op| INFERENCE_OPERATIONS.contains(&op));
    let is_oi_llm = matches!(oi_kind.as_deref(), Some("LLM" | "EMBEDDING"));
    let generation = (model.is_some() || has_usage || is_inference_op || is_oi_llm).then(|| {
        let content = |slot: Option<(u8, &AnyValue)>, event: Option<&AnyValue>| {
            if !options.capture_content {
                return None;
            }
            slot.map(|(_, v)| v)
                .or(event)
                .and_then(|v| any_to_string(Some(v)))
                .map(|t| truncate(&t, MAX_CONTENT_BYTES))
        };
        Generation {
            model: model.clone(),
            provider: label(s.provider.map(|(_, v)| v)),
            operation: operation.clone(),
            usage,
            has_usage,
            finish_reasons: string_list(s.finish_reasons),
            ttft_ms: s
                .ttft
                .and_then(number)
                .filter(|t| t.is_finite() && *t >= 0.0 && *t * 1e3 <= MAX_DURATION_MS)
                .map(|t| t * 1e3),
            input: content(s.content_in, event_in),
            output: content(s.content_out, event_out),
        }
    });

    let stage = classify(span, &s, options, operation.as_deref(), oi_kind.as_deref())
        .or_else(|| generation.is_some().then(|| "model_inference".to_owned()));

    // Roots and model calls: the spans a record's feature and release fall back to.
    let keeps_resource = parent_id.is_none() || generation.is_some();
    let error = span
        .status
        .as_ref()
        .is_some_and(|st| st.code == StatusCode::Error as i32);
    Ok(SpanSummary {
        span_id,
        parent_id,
        // Stored per span: keep only what assembly reads. The name matters only as the stage of
        // a span no rule recognised; the resource only where labels are looked for first.
        name: if stage.is_none() {
            truncate(&span.name, MAX_LABEL_BYTES)
        } else {
            String::new()
        },
        start_ns: span.start_time_unix_nano,
        end_ns: span.end_time_unix_nano,
        error,
        stage,
        generation,
        request_id: label(s.request_id).map(|id| truncate(&id, 256)),
        error_type: label(s.error_type),
        user_id: label(s.user.map(|(_, v)| v)),
        session_id: label(s.session.map(|(_, v)| v)),
        feature: label(s.feature),
        feature_fallback: label(s.feature_fallback),
        release: label(s.release),
        service_name: keeps_resource
            .then(|| resource.service_name.clone())
            .flatten(),
        service_version: keeps_resource
            .then(|| resource.service_version.clone())
            .flatten(),
        attributes,
        evaluations,
    })
}

/// The stage a rule recognises for a span: `llmwatch.stage`, then the user's rules, then the
/// built-in ones (GenAI operations, OpenInference span kinds, the standard stage names).
fn classify(
    span: &Span,
    s: &Slots<'_>,
    options: &ExtractOptions,
    operation: Option<&str>,
    oi_kind: Option<&str>,
) -> Option<String> {
    if let Some(stage) = label(s.stage) {
        return Some(stage);
    }
    if let Some(rule) = options
        .stage_rules
        .iter()
        .find(|r| r.matches(&span.name, operation, &span.attributes))
    {
        return Some(rule.stage.clone());
    }
    match operation {
        Some(op) if INFERENCE_OPERATIONS.contains(&op) => {
            return Some("model_inference".into());
        }
        Some("execute_tool") => return Some("tool_execution".into()),
        _ => {}
    }
    match oi_kind {
        Some("LLM" | "EMBEDDING") => return Some("model_inference".into()),
        Some("TOOL") => return Some("tool_execution".into()),
        Some("GUARDRAIL") => return Some("guardrail".into()),
        _ => {}
    }
    NAMED_STAGES
        .iter()
        .find(|stage| {
            span.name
                .get(..stage.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(stage))
        })
        .map(|stage| (*stage).to_owned())
}

/// Brings usage to the record's convention. The GenAI conventions and OpenInference count cache
/// reads and writes inside the input tokens and reasoning inside the output tokens; some
/// instrumentations copy a provider's raw numbers instead (Anthropic reports input *without*
/// cache tokens, Gemini output without thinking tokens). When the parts exceed the whole, the
/// whole was reported without them: add them.
pub fn normalise(mut u: SpanUsage) -> SpanUsage {
    if u.cached_input_tokens + u.cache_write_tokens > u.input_tokens {
        u.input_tokens += u.cached_input_tokens + u.cache_write_tokens;
    }
    if u.reasoning_tokens > u.output_tokens {
        u.output_tokens += u.reasoning_tokens;
    }
    u
}

fn id64(bytes: &[u8]) -> Option<u64> {
    let arr: [u8; 8] = bytes.try_into().ok()?;
    let id = u64::from_be_bytes(arr);
    (id != 0).then_some(id)
}

/// Cuts text to at most `max` bytes at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// A non-empty label (strings; numbers and booleans as text), truncated to the label limit.
fn label(v: Option<&AnyValue>) -> Option<String> {
    match v?.value.as_ref()? {
        AnyValueKind::StringValue(s) if s.is_empty() => None,
        AnyValueKind::StringValue(s) => Some(truncate(s, MAX_LABEL_BYTES)),
        AnyValueKind::IntValue(i) => Some(i.to_string()),
        AnyValueKind::BoolValue(b) => Some(b.to_string()),
        AnyValueKind::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

/// Any attribute value as text: strings as they are, anything else as JSON.
fn any_to_string(v: Option<&AnyValue>) -> Option<String> {
    match v?.value.as_ref()? {
        AnyValueKind::StringValue(s) => Some(s.clone()),
        _ => Some(any_to_json(v?).to_string()),
    }
}

fn any_to_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v.value.as_ref() {
        None => J::Null,
        Some(AnyValueKind::StringValue(s)) => J::from(s.as_str()),
        Some(AnyValueKind::BoolValue(b)) => J::from(*b),
        Some(AnyValueKind::IntValue(i)) => J::from(*i),
        Some(AnyValueKind::DoubleValue(d)) => J::from(*d),
        Some(AnyValueKind::BytesValue(b)) => J::from(hex(b)),
        // A string-table index (profiles signal only): meaningless without the table.
        Some(AnyValueKind::StringValueStrindex(_)) => J::Null,
        Some(AnyValueKind::ArrayValue(a)) => J::Array(a.values.iter().map(any_to_json).collect()),
        Some(AnyValueKind::KvlistValue(l)) => J::Object(
            l.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(J::Null, any_to_json),
                    )
                })
                .collect(),
        ),
    }
}

fn number(v: &AnyValue) -> Option<f64> {
    match v.value.as_ref()? {
        AnyValueKind::IntValue(i) => Some(*i as f64),
        AnyValueKind::DoubleValue(d) => Some(*d),
        AnyValueKind::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A token count: a non-negative integer (integral doubles and digit strings are accepted, as
/// some SDKs send them).
fn token_count(v: &AnyValue) -> Result<u64, String> {
    let n: i128 = match v.value.as_ref() {
        Some(AnyValueKind::IntValue(i)) => *i as i128,
        Some(AnyValueKind::DoubleValue(d)) if d.fract() == 0.0 && d.is_finite() => *d as i128,
        Some(AnyValueKind::StringValue(s)) => s
            .trim()
            .parse::<i128>()
            .map_err(|_| format!("expected an integer token count, got {s:?}"))?,
        _ => return Err("expected an integer token count".into()),
    };
    if n < 0 {
        return Err(format!("token count must be >= 0, got {n}"));
    }
    if n > MAX_TOKENS as i128 {
        return Err(format!("token count {n} is absurd (> {MAX_TOKENS})"));
    }
    Ok(n as u64)
}

fn string_list(v: Option<&AnyValue>) -> Vec<String> {
    match v.and_then(|v| v.value.as_ref()) {
        Some(AnyValueKind::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|x| label(Some(x)))
            .take(16)
            .collect(),
        Some(_) => label(v).into_iter().collect(),
        None => Vec::new(),
    }
}

fn evaluation(name: &AnyValue, score: &AnyValue) -> Option<Evaluation> {
    let score = number(score).filter(|s| s.is_finite())?;
    Some(Evaluation {
        name: label(Some(name))?,
        score,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    use opentelemetry_proto::tonic::trace::v1::Status;

    pub fn kv(key: &str, value: AnyValueKind) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }
    fn s(v: &str) -> AnyValueKind {
        AnyValueKind::StringValue(v.into())
    }
    fn i(v: i64) -> AnyValueKind {
        AnyValueKind::IntValue(v)
    }

    fn span(name: &str, attrs: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![0, 0, 0, 0, 0, 0, 0, 2],
            parent_span_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
            name: name.into(),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_250_000_000,
            attributes: attrs,
            ..Default::default()
        }
    }

    fn extract(sp: &Span) -> Result<SpanSummary, SpanError> {
        extract_span(sp, &ResourceFacts::default(), &ExtractOptions::default())
    }

    #[test]
    fn current_genai_conventions() {
        let sp = span(
            "chat gpt-4o",
            vec![
                kv("gen_ai.operation.name", s("chat")),
                kv("gen_ai.provider.name", s("openai")),
                kv("gen_ai.system", s("ignored-older-name")),
                kv("gen_ai.request.model", s("gpt-4o")),
                kv("gen_ai.response.model", s("gpt-4o-2024-08-06")),
                kv("gen_ai.usage.input_tokens", i(1000)),
                kv("gen_ai.usage.output_tokens", i(200)),
                kv("gen_ai.usage.cache_read.input_tokens", i(300)),
                kv("gen_ai.usage.cache_creation.input_tokens", i(100)),
                kv("gen_ai.usage.reasoning.output_tokens", i(50)),
                kv(
                    "gen_ai.response.finish_reasons",
                    AnyValueKind::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(s("stop")),
                        }],
                    }),
                ),
                kv(
                    "gen_ai.response.time_to_first_chunk",
                    AnyValueKind::DoubleValue(0.35),
                ),
            ],
        );
        let sum = extract(&sp).unwrap();
        let g = sum.generation.unwrap();
        assert_eq!(g.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(g.provider.as_deref(), Some("openai"));
        assert_eq!(
            g.usage,
            SpanUsage {
                input_tokens: 1000,
                output_tokens: 200,
                cached_input_tokens: 300,
                cache_write_tokens: 100,
                reasoning_tokens: 50
            }
        );
        assert_eq!(g.finish_reasons, vec!["stop"]);
        assert!((g.ttft_ms.unwrap() - 350.0).abs() < 1e-9);
        assert_eq!(sum.stage.as_deref(), Some("model_inference"));
        assert_eq!(sum.parent_id, Some(1));
        assert_eq!(sum.span_id, 2);
    }

    #[test]
    fn legacy_and_openinference_names() {
        let legacy = span(
            "openai.chat",
            vec![
                kv("gen_ai.system", s("openai")),
                kv("gen_ai.request.model", s("gpt-4o-mini")),
                kv("gen_ai.usage.prompt_tokens", i(40)),
                kv("gen_ai.usage.completion_tokens", i(7)),
                kv("gen_ai.usage.cache_read_input_tokens", i(10)),
                kv("gen_ai.usage.reasoning_tokens", i(3)),
            ],
        );
        let g = extract(&legacy).unwrap().generation.unwrap();
        assert_eq!(g.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(g.provider.as_deref(), Some("openai"));
        assert_eq!(
            (
                g.usage.input_tokens,
                g.usage.output_tokens,
                g.usage.cached_input_tokens,
                g.usage.reasoning_tokens
            ),
            (40, 7, 10, 3)
        );

        let oi = span(
            "ChatOpenAI",
            vec![
                kv("openinference.span.kind", s("LLM")),
                kv("llm.model_name", s("claude-sonnet-4-20250514")),
                kv("llm.provider", s("anthropic")),
                kv("llm.token_count.prompt", i(900)),
                kv("llm.token_count.completion", i(100)),
                kv("llm.token_count.prompt_details.cache_read", i(500)),
                kv("llm.token_count.prompt_details.cache_write", i(200)),
                kv("llm.token_count.completion_details.reasoning", i(20)),
                kv("input.value", s("hello")),
            ],
        );
        let sum = extract(&oi).unwrap();
        let g = sum.generation.unwrap();
        assert_eq!(g.model.as_deref(), Some("claude-sonnet-4-20250514"));
        assert_eq!(g.provider.as_deref(), Some("anthropic"));
        assert_eq!(g.usage.cache_write_tokens, 200);
        assert_eq!(g.usage.cached_input_tokens, 500);
        assert_eq!(g.input, None, "content is dropped unless captured");
        assert_eq!(sum.stage.as_deref(), Some("model_inference"));
    }

    #[test]
    fn content_only_when_captured() {
        let sp = span(
            "chat",
            vec![
                kv("gen_ai.request.model", s("gpt-4o")),
                kv("gen_ai.prompt", s("What is 2+2?")),
            ],
        );
        let mut sp = sp;
        sp.events
            .push(opentelemetry_proto::tonic::trace::v1::span::Event {
                name: "gen_ai.content.completion".into(),
                attributes: vec![kv("gen_ai.completion", s("4"))],
                ..Default::default()
            });
        let opts = ExtractOptions {
            capture_content: true,
            ..Default::default()
        };
        let g = extract_span(&sp, &ResourceFacts::default(), &opts)
            .unwrap()
            .generation
            .unwrap();
        assert_eq!(g.input.as_deref(), Some("What is 2+2?"));
        assert_eq!(g.output.as_deref(), Some("4"));
    }

    #[test]
    fn bad_tokens_name_the_attribute() {
        let sp = span(
            "chat",
            vec![
                kv("gen_ai.request.model", s("gpt-4o")),
                kv("gen_ai.usage.input_tokens", i(-5)),
            ],
        );
        let e = extract(&sp).unwrap_err();
        assert_eq!(e.field, "gen_ai.usage.input_tokens");
        assert!(e.message.contains(">= 0"), "{e}");
        assert_eq!(e.span, "0000000000000002");

        let sp = span("chat", vec![kv("gen_ai.usage.output_tokens", s("lots"))]);
        assert_eq!(
            extract(&sp).unwrap_err().field,
            "gen_ai.usage.output_tokens"
        );
    }

    #[test]
    fn usage_reported_without_its_parts_is_normalised() {
        // Anthropic's raw counts: input 10 excludes 300 cache reads and 50 cache writes.
        let sp = span(
            "chat",
            vec![
                kv("gen_ai.usage.input_tokens", i(10)),
                kv("gen_ai.usage.cache_read.input_tokens", i(300)),
                kv("gen_ai.usage.cache_creation.input_tokens", i(50)),
                kv("gen_ai.usage.output_tokens", i(20)),
                kv("gen_ai.usage.reasoning.output_tokens", i(100)),
            ],
        );
        let u = extract(&sp).unwrap().generation.unwrap().usage;
        assert_eq!(
            (u.input_tokens, u.cached_input_tokens, u.cache_write_tokens),
            (360, 300, 50)
        );
        assert_eq!((u.output_tokens, u.reasoning_tokens), (120, 100));
        // The conventional form (parts inside the whole) is kept as sent.
        let sp = span(
            "chat",
            vec![
                kv("gen_ai.usage.input_tokens", i(400)),
                kv("gen_ai.usage.cache_read.input_tokens", i(300)),
            ],
        );
        assert_eq!(
            extract(&sp).unwrap().generation.unwrap().usage.input_tokens,
            400
        );
    }

    #[test]
    fn bad_span_fields() {
        let mut sp = span("x", vec![]);
        sp.end_time_unix_nano = sp.start_time_unix_nano - 1;
        assert_eq!(extract(&sp).unwrap_err().field, "end_time_unix_nano");
        let mut sp = span("x", vec![]);
        sp.span_id = vec![1, 2, 3];
        assert_eq!(extract(&sp).unwrap_err().field, "span_id");
        let mut sp = span("x", vec![]);
        sp.start_time_unix_nano = 0;
        assert_eq!(extract(&sp).unwrap_err().field, "start_time_unix_nano");
    }

    #[test]
    fn stages_and_labels() {
        let opts = ExtractOptions {
            feature_attribute: Some("app.feature".into()),
            stage_rules: vec![StageRule {
                stage: "retrieval".into(),
                span_name: Some("vector_search*".into()),
                operation: None,
                attribute: None,
                value: None,
            }],
            ..Default::default()
        };
        let res = ResourceFacts::from_attributes(&[
            kv("service.name", s("support-api")),
            kv("service.version", s("2.1.0")),
        ]);
        let get = |name: &str, attrs: Vec<KeyValue>| {
            extract_span(&span(name, attrs), &res, &opts).unwrap()
        };
        assert_eq!(
            get("Guardrail check", vec![]).stage.as_deref(),
            Some("guardrail")
        );
        assert_eq!(
            get("vector_search docs", vec![]).stage.as_deref(),
            Some("retrieval")
        );
        assert_eq!(
            get(
                "execute_tool get_weather",
                vec![kv("gen_ai.operation.name", s("execute_tool"))]
            )
            .stage
            .as_deref(),
            Some("tool_execution")
        );
        assert_eq!(
            get("anything", vec![kv("llmwatch.stage", s("rerank"))])
                .stage
                .as_deref(),
            Some("rerank")
        );
        assert_eq!(get("db.query", vec![]).stage, None);
        let mut root_span = span(
            "handle",
            vec![
                kv("enduser.id", s("u-2")),
                kv("gen_ai.conversation.id", s("c-9")),
                kv("app.feature", s("search")),
                kv("llmwatch.attr.tenant", s("acme")),
                kv("llmwatch.request_id", s("req-1")),
            ],
        );
        root_span.parent_span_id.clear();
        let root = extract_span(&root_span, &res, &opts).unwrap();
        assert_eq!(root.user_id.as_deref(), Some("u-2"));
        assert_eq!(root.session_id.as_deref(), Some("c-9"));
        assert_eq!(root.feature_fallback.as_deref(), Some("search"));
        assert_eq!(
            root.attributes.get("tenant").map(String::as_str),
            Some("acme")
        );
        assert_eq!(root.request_id.as_deref(), Some("req-1"));
        assert_eq!(root.service_name.as_deref(), Some("support-api"));
        assert_eq!(root.service_version.as_deref(), Some("2.1.0"));
        assert!(root.generation.is_none());
        // Only roots and model calls keep the resource; a recognised stage drops the name.
        let child = get("guardrail", vec![]);
        assert_eq!((child.service_name, child.name.as_str()), (None, ""));
    }

    #[test]
    fn remote_parent_makes_a_root_and_status_error_is_read() {
        let mut sp = span("handle", vec![kv("error.type", s("timeout"))]);
        sp.flags = FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE;
        sp.status = Some(Status {
            code: StatusCode::Error as i32,
            message: "boom".into(),
        });
        let sum = extract(&sp).unwrap();
        assert_eq!(sum.parent_id, None);
        assert!(sum.error);
        assert_eq!(sum.error_type.as_deref(), Some("timeout"));
    }

    #[test]
    fn evaluations_from_attributes_and_events() {
        let mut sp = span(
            "eval",
            vec![
                kv("gen_ai.evaluation.name", s("relevance")),
                kv(
                    "gen_ai.evaluation.score.value",
                    AnyValueKind::DoubleValue(0.8),
                ),
            ],
        );
        sp.events
            .push(opentelemetry_proto::tonic::trace::v1::span::Event {
                name: "gen_ai.evaluation.result".into(),
                attributes: vec![
                    kv("gen_ai.evaluation.name", s("safety")),
                    kv("gen_ai.evaluation.score.value", i(1)),
                ],
                ..Default::default()
            });
        let ev = extract(&sp).unwrap().evaluations;
        assert_eq!(
            ev,
            vec![
                Evaluation {
                    name: "safety".into(),
                    score: 1.0
                },
                Evaluation {
                    name: "relevance".into(),
                    score: 0.8
                }
            ]
        );
    }
}
