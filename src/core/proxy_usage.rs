//! What the recording proxy reads from a call: the request's model and stream flags, and the
//! response's model, id, usage, error type and output text, for OpenAI Chat Completions,
//! Responses, Embeddings and Anthropic Messages, plain JSON or SSE streams. Pure: no I/O.
//!
//! This runs on the proxy's hot path, so bodies and events are read into small borrowed structs
//! (serde skips the rest) rather than `Value` trees, and odd field types from OpenAI-compatible
//! servers read as absent instead of failing the whole event.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::core::record::{
    MAX_CONTENT_BYTES, MAX_LABEL_BYTES, MAX_REQUEST_ID_BYTES, MAX_TOKENS, Usage,
};

/// Longest non-streaming response body kept for reading; a longer one is not read (usage
/// unknown) rather than held in memory.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// A recorded API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    ChatCompletions,
    Responses,
    Embeddings,
    AnthropicMessages,
}

/// The upstream family of a proxy route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    OpenAi,
    Anthropic,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
        }
    }
}

impl Api {
    /// The recorded API of a route: provider "openai" with path "chat/completions" ...;
    /// provider "anthropic" with "messages". Paths are relative to the route prefix.
    pub fn of(provider: Provider, method_is_post: bool, path: &str) -> Option<Api> {
        if !method_is_post {
            return None;
        }
        let path = path.trim_matches('/');
        match provider {
            Provider::OpenAi => {
                // A suffix after `/` too: Azure-style bases leave `deployments/{name}/` in the
                // path. `chat/completions/{id}` (stored-completion updates) stays unrecorded.
                let is = |name: &str| {
                    path == name
                        || path
                            .strip_suffix(name)
                            .is_some_and(|head| head.ends_with('/'))
                };
                if is("chat/completions") {
                    Some(Api::ChatCompletions)
                } else if is("responses") {
                    Some(Api::Responses)
                } else if is("embeddings") {
                    Some(Api::Embeddings)
                } else {
                    None
                }
            }
            Provider::Anthropic => (path == "messages").then_some(Api::AnthropicMessages),
        }
    }
}

/// What the proxy needs from a recorded request body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallRequest {
    pub model: Option<String>,
    pub stream: bool,
    /// OpenAI chat: stream_options.include_usage == true.
    pub include_usage: bool,
    /// The prompt as text (messages' text contents joined by "\n", `input` for Responses and
    /// Embeddings, Anthropic `system` + messages); None when there is none.
    pub input_text: Option<String>,
}

/// Reads a recorded call's request body. Errors name the problem: not JSON, not an object, or
/// the field with the wrong type (`model`, `stream`, `stream_options`,
/// `stream_options.include_usage`). Prompt shapes it does not know are skipped, not errors.
pub fn parse_call_request(api: Api, body: &[u8]) -> Result<CallRequest, String> {
    let r: RequestFields = from_object(body)?;
    let input_text = match api {
        Api::ChatCompletions => r.messages,
        // Responses' `instructions` is its system prompt, so it leads like Anthropic's `system`.
        Api::Responses => joined(r.instructions, &r.input),
        Api::Embeddings => r.input,
        Api::AnthropicMessages => joined(r.system, &r.messages),
    };
    Ok(CallRequest {
        model: r.model.and_then(|m| label(m.into(), MAX_LABEL_BYTES)),
        stream: r.stream.unwrap_or(false),
        include_usage: api == Api::ChatCompletions
            && r.stream_options.and_then(|o| o.include_usage) == Some(true),
        input_text: (!input_text.is_empty()).then_some(input_text),
    })
}

/// An OpenAI chat body with stream_options.include_usage = true set (other fields untouched).
///
/// Spliced from the raw text of each value, so the other fields keep their exact text (numbers,
/// escapes, key order); only whitespace between top-level tokens is dropped.
pub fn with_include_usage(body: &[u8]) -> Result<Vec<u8>, String> {
    let Entries(top) = from_object(body)?;
    let mut out = Vec::with_capacity(body.len() + 40);
    out.push(b'{');
    let mut wrote_options = false;
    for (key, value) in &top {
        if key.as_ref() == "stream_options" {
            // A repeated key: JSON parsers keep one, so writing one is equivalent.
            if wrote_options {
                continue;
            }
            wrote_options = true;
            push_key(&mut out, key)?;
            write_stream_options(&mut out, value)?;
        } else {
            push_key(&mut out, key)?;
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    if !wrote_options {
        push_key(&mut out, "stream_options")?;
        out.extend_from_slice(br#"{"include_usage":true}"#);
    }
    out.push(b'}');
    Ok(out)
}

/// `value` (the old stream_options) with include_usage = true.
fn write_stream_options(out: &mut Vec<u8>, value: &RawValue) -> Result<(), String> {
    if value.get() == "null" {
        out.extend_from_slice(br#"{"include_usage":true}"#);
        return Ok(());
    }
    let Entries(fields) = serde_json::from_str(value.get())
        .map_err(|e| format!("stream_options: {}", strip_position(&e)))?;
    out.push(b'{');
    for (key, value) in &fields {
        if key.as_ref() != "include_usage" {
            push_key(out, key)?;
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    push_key(out, "include_usage")?;
    out.extend_from_slice(b"true}");
    Ok(())
}

/// Writes `"key":`, with a comma before it unless it opens the object.
fn push_key(out: &mut Vec<u8>, key: &str) -> Result<(), String> {
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    serde_json::to_writer(&mut *out, key).map_err(|e| format!("writing key {key:?}: {e}"))?;
    out.push(b':');
    Ok(())
}

/// Reads a request body that must be a JSON object.
fn from_object<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    // serde reads a struct from an array too; a prompt-less `[...]` body must not pass.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let result = match first {
        Some(b'{') => serde_json::from_slice(body),
        _ => Err(de::Error::custom("expected a JSON object")),
    };
    result.map_err(|e| {
        // Field errors wrap syntax errors inside them, so the syntax is checked apart (only on
        // this error path) to tell "not JSON" from "a field of the wrong type".
        match serde_json::from_slice::<IgnoredAny>(body) {
            Err(syntax) => format!("request body is not valid JSON: {syntax}"),
            Ok(_) => format!("request body: {e}"),
        }
    })
}

/// A serde_json message without its " at line L column C" (positions of a nested parse mislead).
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// One SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; None when absent or empty.
    pub event: Option<String>,
    /// The `data:` lines joined by "\n".
    pub data: String,
    /// The exact bytes of the event, its terminating blank line included. Every byte pushed
    /// into a splitter lands in exactly one event's `raw` (blank lines and comment-only blocks
    /// are events with empty data), so forwarding the raws forwards the stream unchanged.
    pub raw: Vec<u8>,
}

/// Splits a byte stream into SSE events (blank-line separated, \n or \r\n), keeping a partial
/// event across pushes. Each event keeps its raw bytes so a forwarder can pass or drop it.
#[derive(Debug, Default)]
pub struct SseSplitter {
    /// The bytes of the unfinished event, from its first byte.
    buf: Vec<u8>,
    /// Where in `buf` the unfinished line starts (earlier lines are already read into the
    /// fields below, so no byte is scanned twice).
    line_start: usize,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseSplitter {
    pub fn new() -> Self {
        SseSplitter::default()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        // Only the new bytes can hold the unfinished line's end.
        let mut from = self.buf.len();
        self.buf.extend_from_slice(chunk);
        let mut event_start = 0;
        while let Some(i) = self.buf[from..].iter().position(|&b| b == b'\n') {
            let end = from + i;
            let line = strip_cr(&self.buf[self.line_start..end]);
            if line.is_empty() {
                events.push(self.take_event(self.buf[event_start..=end].to_vec()));
                event_start = end + 1;
            } else {
                read_line(line, &mut self.event, &mut self.data, &mut self.has_data);
            }
            self.line_start = end + 1;
            from = end + 1;
        }
        if event_start > 0 {
            self.buf.drain(..event_start);
            self.line_start -= event_start;
        }
        events
    }

    /// Bytes of an unterminated last event (at end of stream).
    pub fn finish(mut self) -> Option<SseEvent> {
        if self.buf.is_empty() {
            return None;
        }
        let line = strip_cr(&self.buf[self.line_start..]);
        if !line.is_empty() {
            read_line(line, &mut self.event, &mut self.data, &mut self.has_data);
        }
        let raw = std::mem::take(&mut self.buf);
        Some(self.take_event(raw))
    }

    fn take_event(&mut self, raw: Vec<u8>) -> SseEvent {
        self.has_data = false;
        SseEvent {
            event: self.event.take().filter(|e| !e.is_empty()),
            data: std::mem::take(&mut self.data),
            raw,
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// One non-blank SSE line into the event's fields (`id`, `retry` and unknown fields are not
/// needed; a line starting with ':' is a comment).
fn read_line(line: &[u8], event: &mut Option<String>, data: &mut String, has_data: &mut bool) {
    if line.first() == Some(&b':') {
        return;
    }
    let (name, value) = match line.iter().position(|&b| b == b':') {
        Some(p) => {
            let v = &line[p + 1..];
            (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
        }
        None => (line, &[][..]),
    };
    match name {
        b"event" => *event = Some(String::from_utf8_lossy(value).into_owned()),
        b"data" => {
            if *has_data {
                data.push('\n');
            }
            data.push_str(&String::from_utf8_lossy(value));
            *has_data = true;
        }
        _ => {}
    }
}

/// How a forwarder should treat a streamed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Generated content (text, refusal, reasoning, tool-call or argument deltas): TTFT.
    Content,
    /// OpenAI chat's final `choices: []` + usage chunk (strippable when the proxy asked for it).
    UsageOnly,
    Other,
}

/// Watches one call's response (streaming: SSE events; otherwise the body bytes).
#[derive(Debug)]
pub struct CallObserver {
    api: Api,
    model: Option<String>,
    response_id: Option<String>,
    usage: Option<Usage>,
    /// Anthropic stream usage, field by field: message_start's, overridden by message_delta's.
    anthropic: AnthropicTally,
    error_type: Option<String>,
    output: String,
    /// Non-streaming body bytes.
    body: Vec<u8>,
    body_overflow: bool,
}

#[derive(Debug, Default)]
struct AnthropicTally {
    input: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    output: Option<u64>,
    /// A message_delta with usage was seen: the output count is final. Without it the stream
    /// was cut and usage is unknown (message_start's output count is a placeholder).
    complete: bool,
}

impl AnthropicTally {
    fn take(&mut self, u: &UsageFields) {
        let fields = [
            (&mut self.input, u.input_tokens),
            (&mut self.cache_read, u.cache_read_input_tokens),
            (&mut self.cache_write, u.cache_creation_input_tokens),
            (&mut self.output, u.output_tokens),
        ];
        for (slot, v) in fields {
            if v.0.is_some() {
                *slot = v.0;
            }
        }
    }

    fn usage(&self) -> Option<Usage> {
        anthropic_usage(self.input, self.cache_read, self.cache_write, self.output)
    }
}

impl CallObserver {
    /// `stream` is only a hint: both kinds of input are read whatever it says (a streaming
    /// request can be answered with a JSON error body, fed to `on_body`).
    pub fn new(api: Api, stream: bool) -> Self {
        let _ = stream;
        CallObserver {
            api,
            model: None,
            response_id: None,
            usage: None,
            anthropic: AnthropicTally::default(),
            error_type: None,
            output: String::new(),
            body: Vec::new(),
            body_overflow: false,
        }
    }

    /// A streamed event: Content when it carries generated content (text/tool-call deltas),
    /// UsageOnly for OpenAI chat's final `choices: []` + usage chunk, Other otherwise.
    pub fn on_event(&mut self, ev: &SseEvent) -> EventKind {
        // `[DONE]`, pings without data, comments: nothing to read.
        if !ev.data.trim_start().starts_with('{') {
            return EventKind::Other;
        }
        match self.api {
            Api::ChatCompletions | Api::Embeddings => self.on_chat_chunk(&ev.data),
            Api::Responses => self.on_responses_event(&ev.data),
            Api::AnthropicMessages => self.on_anthropic_event(ev.event.as_deref(), &ev.data),
        }
    }

    /// Non-streaming body bytes (kept up to 16 MiB; beyond that usage is unknown).
    pub fn on_body(&mut self, chunk: &[u8]) {
        if self.body_overflow {
            return;
        }
        if self.body.len() + chunk.len() > MAX_BODY_BYTES {
            self.body_overflow = true;
            self.body = Vec::new();
            return;
        }
        self.body.extend_from_slice(chunk);
    }

    pub fn finish(mut self, http_status: u16) -> CallOutcome {
        if !self.body.is_empty() && !self.body_overflow {
            let body = std::mem::take(&mut self.body);
            self.read_body(&body);
        }
        let ok = (200..300).contains(&http_status);
        let usage = match self.usage {
            Some(u) => Some(u),
            None if self.anthropic.complete => self.anthropic.usage(),
            None => None,
        };
        CallOutcome {
            model: self.model,
            response_id: self.response_id,
            // An error answer bills nothing we can read, and a cut body's usage is unknown.
            usage: usage.filter(|_| ok && !self.body_overflow),
            error_type: self.error_type,
            output_text: (ok && !self.output.is_empty()).then_some(self.output),
        }
    }

    fn note_ids(&mut self, id: Str<'_>, model: Str<'_>) {
        if self.response_id.is_none() {
            self.response_id = id.0.and_then(|s| label(s, MAX_REQUEST_ID_BYTES));
        }
        if self.model.is_none() {
            self.model = model.0.and_then(|s| label(s, MAX_LABEL_BYTES));
        }
    }

    /// The first error reported wins: later ones are usually its consequences.
    fn note_error(&mut self, error: Option<&RawValue>) {
        if self.error_type.is_none() {
            self.error_type = error.and_then(error_type_of);
        }
    }

    fn on_chat_chunk(&mut self, data: &str) -> EventKind {
        let Ok(c) = serde_json::from_str::<ChatChunk<'_>>(data) else {
            return EventKind::Other;
        };
        self.note_ids(c.id, c.model);
        self.note_error(c.error);
        let mut content = false;
        let choices = c.choices.unwrap_or_default();
        for choice in &choices {
            let Some(d) = &choice.delta else { continue };
            let first = choice.index.0.unwrap_or(0) == 0;
            for text in [&d.content, &d.refusal] {
                if let Some(t) = text.0.as_deref().filter(|t| !t.is_empty()) {
                    content = true;
                    // One answer is recorded: with n > 1 the others interleave.
                    if first {
                        push_capped(&mut self.output, t);
                    }
                }
            }
            // Reasoning deltas of OpenAI-compatible servers (DeepSeek, vLLM) are generated
            // tokens too, like Anthropic's thinking deltas.
            content |= [&d.reasoning_content, &d.reasoning]
                .iter()
                .any(|t| t.0.as_deref().is_some_and(|t| !t.is_empty()));
            content |= [d.tool_calls, d.function_call]
                .iter()
                .any(|r| r.is_some_and(non_empty_json));
        }
        if let Some(u) = &c.usage {
            self.usage = if self.api == Api::Embeddings {
                embeddings_usage(u)
            } else {
                chat_usage(u)
            };
        }
        if content {
            EventKind::Content
        } else if c.usage.is_some() && choices.is_empty() {
            EventKind::UsageOnly
        } else {
            EventKind::Other
        }
    }

    fn on_responses_event(&mut self, data: &str) -> EventKind {
        let Ok(e) = serde_json::from_str::<ResponsesEvent<'_>>(data) else {
            return EventKind::Other;
        };
        let kind = e.kind.0.as_deref().unwrap_or("");
        if let Some(r) = e.response {
            self.note_ids(r.id, r.model);
            self.note_error(r.error);
            // response.completed, and response.failed / response.incomplete, carry it.
            if let Some(u) = &r.usage {
                self.usage = responses_usage(u);
            }
        }
        self.note_error(e.error);
        if kind == "error" && self.error_type.is_none() {
            self.error_type = e.code.0.and_then(|c| label(c, MAX_LABEL_BYTES));
        }
        if kind.ends_with(".delta") {
            if matches!(
                kind,
                "response.output_text.delta" | "response.refusal.delta"
            ) {
                if let Some(t) = e.delta.0.as_deref() {
                    push_capped(&mut self.output, t);
                }
            }
            EventKind::Content
        } else {
            EventKind::Other
        }
    }

    fn on_anthropic_event(&mut self, event: Option<&str>, data: &str) -> EventKind {
        let Ok(e) = serde_json::from_str::<AnthropicEvent<'_>>(data) else {
            return EventKind::Other;
        };
        // The data's `type` repeats the SSE event name; either will do.
        let kind = e.kind.0.as_deref().or(event).unwrap_or("");
        self.note_error(e.error);
        match kind {
            "message_start" => {
                if let Some(m) = e.message {
                    self.note_ids(m.id, m.model);
                    if let Some(u) = &m.usage {
                        self.anthropic.take(u);
                    }
                }
                EventKind::Other
            }
            "message_delta" => {
                // output_tokens is cumulative, and input fields, when present, are final.
                if let Some(u) = &e.usage {
                    self.anthropic.take(u);
                    self.anthropic.complete = true;
                }
                EventKind::Other
            }
            "content_block_delta" => {
                if let Some(d) = &e.delta {
                    if d.kind.0.as_deref() == Some("text_delta") {
                        if let Some(t) = d.text.0.as_deref() {
                            push_capped(&mut self.output, t);
                        }
                    }
                }
                EventKind::Content
            }
            _ => EventKind::Other,
        }
    }

    fn read_body(&mut self, body: &[u8]) {
        let Ok(b) = serde_json::from_slice::<Body<'_>>(body) else {
            return;
        };
        self.note_ids(b.id, b.model);
        self.note_error(b.error);
        if let Some(u) = &b.usage {
            self.usage = match self.api {
                Api::ChatCompletions => chat_usage(u),
                Api::Responses => responses_usage(u),
                Api::Embeddings => embeddings_usage(u),
                Api::AnthropicMessages => anthropic_usage(
                    u.input_tokens.0,
                    u.cache_read_input_tokens.0,
                    u.cache_creation_input_tokens.0,
                    u.output_tokens.0,
                ),
            };
        }
        // The texts are read apart from the rest, so an unexpected shape there loses only the
        // text, never the usage.
        match self.api {
            Api::ChatCompletions => {
                let choices: Vec<ChatChoice<'_>> = parse_raw(b.choices);
                let first = choices.iter().find(|c| c.index.0.unwrap_or(0) == 0);
                if let Some(m) = first.and_then(|c| c.message.as_ref()) {
                    for t in [&m.content, &m.refusal] {
                        if let Some(t) = t.0.as_deref() {
                            push_capped(&mut self.output, t);
                        }
                    }
                }
            }
            Api::Responses => {
                let items: Vec<OutputItem<'_>> = parse_raw(b.output);
                for part in items.iter().flat_map(|i| i.content.iter().flatten()) {
                    let text = match part.kind.0.as_deref() {
                        Some("output_text") => &part.text,
                        Some("refusal") => &part.refusal,
                        _ => continue,
                    };
                    if let Some(t) = text.0.as_deref() {
                        push_capped(&mut self.output, t);
                    }
                }
            }
            Api::AnthropicMessages => {
                let blocks: Vec<Block<'_>> = parse_raw(b.content);
                for block in &blocks {
                    if block.kind.0.as_deref() == Some("text") {
                        if let Some(t) = block.text.0.as_deref() {
                            push_capped(&mut self.output, t);
                        }
                    }
                }
            }
            Api::Embeddings => {}
        }
    }
}

/// What one call's response said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallOutcome {
    pub model: Option<String>,
    pub response_id: Option<String>,
    /// None when the response did not say (stream without usage, truncated, not JSON).
    pub usage: Option<Usage>,
    /// The body's `error.code`, else `error.type` (also from an error event of a 2xx stream);
    /// None when the response names no error.
    pub error_type: Option<String>,
    /// The generated text (not reasoning or tool arguments), up to 1 MiB; None when empty or
    /// the status is not 2xx.
    pub output_text: Option<String>,
}

// ---- usage mapping ----

fn chat_usage(u: &UsageFields) -> Option<Usage> {
    checked(Usage {
        input_tokens: u.prompt_tokens.0?,
        output_tokens: u.completion_tokens.0.unwrap_or(0),
        cached_input_tokens: detail(&u.prompt_tokens_details, |d| d.cached_tokens),
        cache_write_tokens: 0,
        reasoning_tokens: detail(&u.completion_tokens_details, |d| d.reasoning_tokens),
    })
}

fn responses_usage(u: &UsageFields) -> Option<Usage> {
    checked(Usage {
        input_tokens: u.input_tokens.0?,
        output_tokens: u.output_tokens.0.unwrap_or(0),
        cached_input_tokens: detail(&u.input_tokens_details, |d| d.cached_tokens),
        cache_write_tokens: 0,
        reasoning_tokens: detail(&u.output_tokens_details, |d| d.reasoning_tokens),
    })
}

fn embeddings_usage(u: &UsageFields) -> Option<Usage> {
    checked(Usage {
        input_tokens: u.prompt_tokens.0?,
        ..Usage::default()
    })
}

/// Anthropic's input_tokens excludes the cache reads and writes; the record's input includes
/// them.
fn anthropic_usage(
    input: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    output: Option<u64>,
) -> Option<Usage> {
    if input.is_none() && output.is_none() {
        return None;
    }
    let (read, write) = (cache_read.unwrap_or(0), cache_write.unwrap_or(0));
    checked(Usage {
        input_tokens: input
            .unwrap_or(0)
            .saturating_add(read)
            .saturating_add(write),
        output_tokens: output.unwrap_or(0),
        cached_input_tokens: read,
        cache_write_tokens: write,
        reasoning_tokens: 0,
    })
}

fn detail(d: &Option<Details>, f: impl Fn(&Details) -> Tokens) -> u64 {
    d.as_ref().and_then(|d| f(d).0).unwrap_or(0)
}

/// Usage the record accepts: counts beyond MAX_TOKENS are not believable (unknown), and the
/// parts are clamped into their totals (the record counts them inside).
fn checked(mut u: Usage) -> Option<Usage> {
    if u.input_tokens > MAX_TOKENS || u.output_tokens > MAX_TOKENS {
        return None;
    }
    u.cached_input_tokens = u.cached_input_tokens.min(u.input_tokens);
    u.cache_write_tokens = u
        .cache_write_tokens
        .min(u.input_tokens - u.cached_input_tokens);
    u.reasoning_tokens = u.reasoning_tokens.min(u.output_tokens);
    Some(u)
}

/// `error.code`, else `error.type`: OpenAI's code is the specific one (`rate_limit_exceeded`
/// where the type is `tokens`; `invalid_api_key` where it is `invalid_request_error`);
/// Anthropic has only the type.
fn error_type_of(raw: &RawValue) -> Option<String> {
    let e: ErrorFields<'_> = serde_json::from_str(raw.get()).ok()?;
    let code = e.code.0.and_then(|c| label(c, MAX_LABEL_BYTES));
    code.or_else(|| e.kind.0.and_then(|t| label(t, MAX_LABEL_BYTES)))
}

// ---- small helpers ----

/// A label the record accepts (non-empty, at most `max` bytes), else None.
fn label(s: Cow<'_, str>, max: usize) -> Option<String> {
    (!s.is_empty() && s.len() <= max).then(|| s.into_owned())
}

/// Appends up to the 1 MiB content limit, cut at a character boundary.
fn push_capped(out: &mut String, s: &str) {
    let room = MAX_CONTENT_BYTES.saturating_sub(out.len());
    if s.len() <= room {
        out.push_str(s);
    } else {
        let mut n = room;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        out.push_str(&s[..n]);
    }
}

/// Appends a non-empty piece of prompt text, "\n"-separated, within the content limit.
fn push_line(out: &mut String, s: &str) {
    if s.is_empty() || out.len() >= MAX_CONTENT_BYTES {
        return;
    }
    if !out.is_empty() {
        out.push('\n');
    }
    push_capped(out, s);
}

fn joined(mut head: String, tail: &str) -> String {
    push_line(&mut head, tail);
    head
}

/// Anything but null, `[]` and `{}`.
fn non_empty_json(raw: &RawValue) -> bool {
    let s = raw.get();
    let inner = |open: char, close: char| {
        s.strip_prefix(open)
            .and_then(|s| s.strip_suffix(close))
            .is_some_and(|s| s.trim().is_empty())
    };
    !(s == "null" || inner('[', ']') || inner('{', '}'))
}

/// A sub-tree read apart; a shape it does not fit reads as empty.
fn parse_raw<'a, T: Deserialize<'a> + Default>(raw: Option<&'a RawValue>) -> T {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or_default()
}

// ---- request shapes ----

#[derive(Deserialize)]
#[serde(expecting = "a JSON object")]
struct RequestFields {
    #[serde(default, deserialize_with = "de_model")]
    model: Option<String>,
    #[serde(default, deserialize_with = "de_stream")]
    stream: Option<bool>,
    #[serde(default, deserialize_with = "de_stream_options")]
    stream_options: Option<StreamOptions>,
    #[serde(default, deserialize_with = "de_text")]
    messages: String,
    #[serde(default, deserialize_with = "de_text")]
    input: String,
    #[serde(default, deserialize_with = "de_text")]
    system: String,
    #[serde(default, deserialize_with = "de_text")]
    instructions: String,
}

#[derive(Deserialize)]
#[serde(expecting = "a JSON object")]
struct StreamOptions {
    #[serde(default, deserialize_with = "de_include_usage")]
    include_usage: Option<bool>,
}

/// Reads an optional field, naming it in the error.
fn named<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    field: &str,
) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d).map_err(|e| de::Error::custom(format_args!("{field}: {e}")))
}

fn de_model<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    named(d, "model")
}

fn de_stream<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    named(d, "stream")
}

fn de_stream_options<'de, D: Deserializer<'de>>(d: D) -> Result<Option<StreamOptions>, D::Error> {
    named(d, "stream_options")
}

fn de_include_usage<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    named(d, "include_usage")
}

fn de_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let mut out = String::new();
    TextInto(&mut out).deserialize(d)?;
    Ok(out)
}

/// Collects the prompt text of any message shape into one string: strings are text; in
/// objects only `text`, `content` (chat and Anthropic messages, Responses items, tool results)
/// and `output` (Responses function_call_output) are followed, so images, files, tool-call
/// arguments and ids are skipped; numbers (token-id inputs) are not text.
struct TextInto<'s>(&'s mut String);

impl<'de> DeserializeSeed<'de> for TextInto<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextInto<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        push_line(self.0, v);
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(TextInto(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(TextKey(wanted)) = map.next_key()? {
            if wanted {
                map.next_value_seed(TextInto(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// An object key: whether its value holds prompt text.
struct TextKey(bool);

impl<'de> Deserialize<'de> for TextKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TextKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, v: &str) -> Result<TextKey, E> {
                Ok(TextKey(matches!(v, "text" | "content" | "output")))
            }
        }
        d.deserialize_str(V)
    }
}

/// The entries of a JSON object in order, values as raw text.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Entries<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'a>, A::Error> {
                let mut entries = Vec::new();
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    entries.push((key.unwrap_or_default(), value));
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

// ---- response shapes (only the fields read; serde skips the rest) ----

#[derive(Deserialize, Default)]
#[serde(default)]
struct UsageFields {
    // OpenAI chat and embeddings.
    prompt_tokens: Tokens,
    completion_tokens: Tokens,
    prompt_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
    // OpenAI Responses and Anthropic.
    input_tokens: Tokens,
    output_tokens: Tokens,
    input_tokens_details: Option<Details>,
    output_tokens_details: Option<Details>,
    // Anthropic.
    cache_read_input_tokens: Tokens,
    cache_creation_input_tokens: Tokens,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Details {
    cached_tokens: Tokens,
    reasoning_tokens: Tokens,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorFields<'a> {
    #[serde(borrow, rename = "type")]
    kind: Str<'a>,
    #[serde(borrow)]
    code: Str<'a>,
}

/// A non-streaming body of any recorded API (or an error body).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Body<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    model: Str<'a>,
    usage: Option<UsageFields>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
    /// Chat.
    #[serde(borrow)]
    choices: Option<&'a RawValue>,
    /// Responses.
    #[serde(borrow)]
    output: Option<&'a RawValue>,
    /// Anthropic.
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatChoice<'a> {
    index: Tokens,
    #[serde(borrow)]
    message: Option<ChatMessage<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatMessage<'a> {
    #[serde(borrow)]
    content: Str<'a>,
    #[serde(borrow)]
    refusal: Str<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OutputItem<'a> {
    #[serde(borrow)]
    content: Option<Vec<OutputPart<'a>>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OutputPart<'a> {
    #[serde(borrow, rename = "type")]
    kind: Str<'a>,
    #[serde(borrow)]
    text: Str<'a>,
    #[serde(borrow)]
    refusal: Str<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Block<'a> {
    #[serde(borrow, rename = "type")]
    kind: Str<'a>,
    #[serde(borrow)]
    text: Str<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatChunk<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    model: Str<'a>,
    #[serde(borrow)]
    choices: Option<Vec<ChunkChoice<'a>>>,
    usage: Option<UsageFields>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChunkChoice<'a> {
    index: Tokens,
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Delta<'a> {
    #[serde(borrow)]
    content: Str<'a>,
    #[serde(borrow)]
    refusal: Str<'a>,
    #[serde(borrow)]
    reasoning_content: Str<'a>,
    #[serde(borrow)]
    reasoning: Str<'a>,
    #[serde(borrow)]
    tool_calls: Option<&'a RawValue>,
    #[serde(borrow)]
    function_call: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResponsesEvent<'a> {
    #[serde(borrow, rename = "type")]
    kind: Str<'a>,
    #[serde(borrow)]
    delta: Str<'a>,
    #[serde(borrow)]
    response: Option<ResponseObject<'a>>,
    /// The `error` event's code.
    #[serde(borrow)]
    code: Str<'a>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResponseObject<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    model: Str<'a>,
    usage: Option<UsageFields>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AnthropicEvent<'a> {
    #[serde(borrow, rename = "type")]
    kind: Str<'a>,
    #[serde(borrow)]
    message: Option<AnthropicMessage<'a>>,
    #[serde(borrow)]
    delta: Option<AnthropicDelta<'a>>,
    usage: Option<UsageFields>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AnthropicMessage<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    model: Str<'a>,
    usage: Option<UsageFields>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AnthropicDelta<'a> {
    #[serde(borrow, rename = "type")]
    kind: Str<'a>,
    #[serde(borrow)]
    text: Str<'a>,
}

/// A string field that may hold anything: other types read as None, so one odd field from an
/// OpenAI-compatible server does not lose the whole event. Borrows when the JSON has no escapes.
#[derive(Debug, Default)]
struct Str<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Owned(v))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Str<'a>, E> {
                Ok(Str(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Str<'a>, E> {
                Ok(Str(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Str<'a>, E> {
                Ok(Str(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Str<'a>, E> {
                Ok(Str(None))
            }
            fn visit_unit<E>(self) -> Result<Str<'a>, E> {
                Ok(Str(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Str<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Str(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Str<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Str(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A token count that may hold anything: a non-negative integer (or integral float, as some
/// compatible servers send) is a count; anything else reads as None.
#[derive(Debug, Default, Clone, Copy)]
struct Tokens(Option<u64>);

impl<'de> Deserialize<'de> for Tokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tokens;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Tokens, E> {
                Ok(Tokens(Some(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Tokens, E> {
                Ok(Tokens(u64::try_from(v).ok()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Tokens, E> {
                let integral = v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1.8e19;
                Ok(Tokens(integral.then_some(v as u64)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Tokens, E> {
                Ok(Tokens(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Tokens, E> {
                Ok(Tokens(None))
            }
            fn visit_unit<E>(self) -> Result<Tokens, E> {
                Ok(Tokens(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tokens, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Tokens(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tokens, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Tokens(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn usage(input: u64, output: u64, cached: u64, write: u64, reasoning: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            cache_write_tokens: write,
            reasoning_tokens: reasoning,
        }
    }

    /// A stream as the provider sends it: events separated by blank lines.
    fn sse(events: &[&str]) -> Vec<u8> {
        events
            .iter()
            .map(|e| format!("{e}\n\n"))
            .collect::<String>()
            .into_bytes()
    }

    fn split_all(bytes: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
        let mut s = SseSplitter::new();
        let mut events = Vec::new();
        let mut at = 0;
        for &cut in cuts {
            let cut = cut.clamp(at, bytes.len());
            events.extend(s.push(&bytes[at..cut]));
            at = cut;
        }
        events.extend(s.push(&bytes[at..]));
        events.extend(s.finish());
        events
    }

    /// Splits `stream` and feeds every event to an observer of `api`.
    fn observe(api: Api, stream: &[u8], status: u16) -> (Vec<EventKind>, CallOutcome) {
        let mut o = CallObserver::new(api, true);
        let kinds = split_all(stream, &[])
            .iter()
            .map(|e| o.on_event(e))
            .collect();
        (kinds, o.finish(status))
    }

    fn body(api: Api, body: &str, status: u16) -> CallOutcome {
        let mut o = CallObserver::new(api, false);
        // In two pieces, as bodies arrive.
        let (a, b) = body.as_bytes().split_at(body.len() / 2);
        o.on_body(a);
        o.on_body(b);
        o.finish(status)
    }

    use EventKind::{Content, Other, UsageOnly};

    // ---- routes ----

    #[test]
    fn api_of_routes() {
        use Provider::*;
        assert_eq!(
            Api::of(OpenAi, true, "chat/completions"),
            Some(Api::ChatCompletions)
        );
        assert_eq!(
            Api::of(OpenAi, true, "/chat/completions/"),
            Some(Api::ChatCompletions)
        );
        assert_eq!(Api::of(OpenAi, true, "responses"), Some(Api::Responses));
        assert_eq!(Api::of(OpenAi, true, "embeddings"), Some(Api::Embeddings));
        assert_eq!(
            Api::of(OpenAi, true, "deployments/gpt4o/chat/completions"),
            Some(Api::ChatCompletions)
        );
        assert_eq!(Api::of(OpenAi, false, "chat/completions"), None);
        assert_eq!(Api::of(OpenAi, true, "chat/completions/chatcmpl-1"), None);
        assert_eq!(Api::of(OpenAi, true, "responses/resp_1/cancel"), None);
        assert_eq!(Api::of(OpenAi, true, "models"), None);
        assert_eq!(Api::of(OpenAi, true, "messages"), None);
        assert_eq!(Api::of(OpenAi, true, "xchat/completions"), None);
        assert_eq!(
            Api::of(Anthropic, true, "messages"),
            Some(Api::AnthropicMessages)
        );
        assert_eq!(Api::of(Anthropic, true, "messages/count_tokens"), None);
        assert_eq!(Api::of(Anthropic, true, "messages/batches"), None);
        assert_eq!(Api::of(Anthropic, true, "chat/completions"), None);
        assert_eq!(Api::of(Anthropic, false, "messages"), None);
        assert_eq!(OpenAi.as_str(), "openai");
        assert_eq!(Anthropic.as_str(), "anthropic");
    }

    // ---- requests ----

    #[test]
    fn chat_request() {
        let b = br#"{
          "model": "gpt-4o",
          "messages": [
            {"role": "developer", "content": "You are terse."},
            {"role": "user", "content": [
              {"type": "text", "text": "What is in this image?"},
              {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
              "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "A cat."}
          ],
          "stream": true,
          "stream_options": {"include_usage": true},
          "temperature": 0.2
        }"#;
        let r = parse_call_request(Api::ChatCompletions, b).unwrap();
        assert_eq!(
            r,
            CallRequest {
                model: Some("gpt-4o".into()),
                stream: true,
                include_usage: true,
                input_text: Some("You are terse.\nWhat is in this image?\nA cat.".into()),
            }
        );
        let plain = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}"#;
        let r = parse_call_request(Api::ChatCompletions, plain).unwrap();
        assert!(!r.stream && !r.include_usage);
        assert_eq!(r.input_text.as_deref(), Some("Hi"));
        let no_usage = br#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#;
        let r = parse_call_request(Api::ChatCompletions, no_usage).unwrap();
        assert!(r.stream && !r.include_usage);
        assert_eq!(r.input_text, None);
        let null_options = br#"{"model":"m","stream":true,"stream_options":null}"#;
        assert!(
            !parse_call_request(Api::ChatCompletions, null_options)
                .unwrap()
                .include_usage
        );
    }

    #[test]
    fn responses_request() {
        let b = br#"{
          "model": "gpt-4.1",
          "instructions": "Talk like a pirate.",
          "input": [
            {"role": "user", "content": [
              {"type": "input_text", "text": "Are semicolons optional?"},
              {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
            ]},
            {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{\"q\":1}"},
            {"type": "function_call_output", "call_id": "c1", "output": "{\"ok\":true}"}
          ],
          "stream": true,
          "stream_options": {"include_obfuscation": false}
        }"#;
        let r = parse_call_request(Api::Responses, b).unwrap();
        assert_eq!(r.model.as_deref(), Some("gpt-4.1"));
        assert!(r.stream);
        // include_usage is chat's flag; Responses streams always carry usage.
        assert!(!r.include_usage);
        assert_eq!(
            r.input_text.as_deref(),
            Some("Talk like a pirate.\nAre semicolons optional?\n{\"ok\":true}")
        );
        let s = br#"{"model":"o4-mini","input":"Tell me a joke"}"#;
        let r = parse_call_request(Api::Responses, s).unwrap();
        assert_eq!(r.input_text.as_deref(), Some("Tell me a joke"));
        assert!(!r.stream);
    }

    #[test]
    fn embeddings_request() {
        let b = br#"{"model":"text-embedding-3-small","input":["first","second"],"encoding_format":"float"}"#;
        let r = parse_call_request(Api::Embeddings, b).unwrap();
        assert_eq!(r.model.as_deref(), Some("text-embedding-3-small"));
        assert_eq!(r.input_text.as_deref(), Some("first\nsecond"));
        let one = br#"{"model":"text-embedding-3-small","input":"The food was delicious"}"#;
        let r = parse_call_request(Api::Embeddings, one).unwrap();
        assert_eq!(r.input_text.as_deref(), Some("The food was delicious"));
        // Token ids are not text.
        let tokens = br#"{"model":"text-embedding-3-small","input":[[1820, 25, 1],[7, 8]]}"#;
        assert_eq!(
            parse_call_request(Api::Embeddings, tokens)
                .unwrap()
                .input_text,
            None
        );
    }

    #[test]
    fn anthropic_request() {
        let b = br#"{
          "model": "claude-sonnet-4-20250514",
          "max_tokens": 1024,
          "system": [{"type": "text", "text": "You are a helpful assistant.",
                      "cache_control": {"type": "ephemeral"}}],
          "messages": [
            {"role": "user", "content": "Hello, Claude"},
            {"role": "assistant", "content": [
              {"type": "thinking", "thinking": "Weather needed.", "signature": "EqQB"},
              {"type": "text", "text": "Let me check."},
              {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
               "input": {"location": "Paris"}}
            ]},
            {"role": "user", "content": [
              {"type": "tool_result", "tool_use_id": "toolu_1",
               "content": [{"type": "text", "text": "15 degrees"}]},
              {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                           "data": "iVBORw0KGgo="}}
            ]}
          ],
          "stream": true
        }"#;
        let r = parse_call_request(Api::AnthropicMessages, b).unwrap();
        assert_eq!(
            r,
            CallRequest {
                model: Some("claude-sonnet-4-20250514".into()),
                stream: true,
                include_usage: false,
                input_text: Some(
                    "You are a helpful assistant.\nHello, Claude\nLet me check.\n15 degrees".into()
                ),
            }
        );
        let s = br#"{"model":"claude-3-5-haiku-latest","system":"Be brief.","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}"#;
        let r = parse_call_request(Api::AnthropicMessages, s).unwrap();
        assert_eq!(r.input_text.as_deref(), Some("Be brief.\nHi"));
        assert!(!r.stream);
    }

    #[test]
    fn request_errors_name_the_problem() {
        let err = |b: &[u8]| parse_call_request(Api::ChatCompletions, b).unwrap_err();
        assert!(err(br#"{"model": "gpt-4o","#).contains("not valid JSON"));
        assert!(err(b"").contains("not valid JSON"));
        assert!(err(b"model=gpt-4o").contains("not valid JSON"));
        assert!(err(br#"[1, 2]"#).contains("expected a JSON object"));
        assert!(err(br#""hello""#).contains("expected a JSON object"));
        assert!(err(br#"{"model": 5}"#).contains("model: invalid type"));
        assert!(err(br#"{"model": "m", "stream": "yes"}"#).contains("stream: invalid type"));
        assert!(err(br#"{"stream_options": 3}"#).contains("stream_options: invalid type"));
        let e = err(br#"{"stream_options": {"include_usage": "y"}}"#);
        assert!(
            e.contains("stream_options: include_usage: invalid type"),
            "{e}"
        );
        // Unknown prompt shapes are not errors, and null fields are absent.
        let odd = br#"{"model": null, "stream": null, "messages": [{"role": "user", "content": {"weird": 1}}, 7]}"#;
        let r = parse_call_request(Api::ChatCompletions, odd).unwrap();
        assert_eq!(r, CallRequest::default());
    }

    #[test]
    fn request_text_is_capped() {
        let long = "é".repeat(MAX_CONTENT_BYTES);
        let b = json!({"model": "m", "messages": [{"role": "user", "content": long}]}).to_string();
        let text = parse_call_request(Api::ChatCompletions, b.as_bytes())
            .unwrap()
            .input_text
            .unwrap();
        assert!(text.len() <= MAX_CONTENT_BYTES && text.len() > MAX_CONTENT_BYTES - 2);
    }

    // ---- with_include_usage ----

    fn as_value(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn include_usage_is_added_and_the_rest_kept() {
        let b =
            br#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi \u00e9 \"q\""}],
                     "stream": true, "temperature": 0.70, "metadata": {"k": "v"}}"#;
        let out = with_include_usage(b).unwrap();
        let mut want = as_value(b);
        want["stream_options"] = json!({"include_usage": true});
        assert_eq!(as_value(&out), want);
        let text = String::from_utf8(out).unwrap();
        // Values keep their exact text, and the key order stays.
        assert!(text.contains(r#""content": "Hi \u00e9 \"q\"""#), "{text}");
        assert!(text.contains("0.70"));
        assert!(
            text.starts_with(r#"{"model":"gpt-4o","messages""#),
            "{text}"
        );
        assert!(
            text.ends_with(r#""stream_options":{"include_usage":true}}"#),
            "{text}"
        );
    }

    #[test]
    fn include_usage_keeps_other_stream_options() {
        let b =
            br#"{"model":"m","stream":true,"stream_options":{"include_obfuscation":false},"n":1}"#;
        let out = with_include_usage(b).unwrap();
        assert_eq!(
            as_value(&out),
            json!({"model": "m", "stream": true, "n": 1,
                   "stream_options": {"include_obfuscation": false, "include_usage": true}})
        );
        // A false is turned true, with no second key.
        let b = br#"{"stream_options":{"include_usage":false,"x":[1,2]},"stream":true}"#;
        let text = String::from_utf8(with_include_usage(b).unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"stream_options":{"x":[1,2],"include_usage":true},"stream":true}"#
        );
        let b = br#"{"stream_options":null}"#;
        assert_eq!(
            as_value(&with_include_usage(b).unwrap()),
            json!({"stream_options": {"include_usage": true}})
        );
        assert_eq!(
            with_include_usage(b"{}").unwrap(),
            br#"{"stream_options":{"include_usage":true}}"#
        );
        // The result reads back as a request that asks for usage.
        let b = br#"{"model":"m","stream":true,"messages":[]}"#;
        let r = parse_call_request(Api::ChatCompletions, &with_include_usage(b).unwrap()).unwrap();
        assert!(r.stream && r.include_usage);
    }

    #[test]
    fn include_usage_errors() {
        assert!(
            with_include_usage(b"{\"a\":")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            with_include_usage(b"[]")
                .unwrap_err()
                .contains("JSON object")
        );
        let e = with_include_usage(br#"{"stream_options": 3}"#).unwrap_err();
        assert!(e.starts_with("stream_options:"), "{e}");
    }

    // ---- SSE splitting ----

    #[test]
    fn sse_fields() {
        let input = b"event: message_start\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: a\ndata:b\ndata:  c\nid: 7\nretry: 10\n\ndata\n\n";
        let events = split_all(input, &[]);
        assert_eq!(events.len(), 4);
        assert_eq!(events[0].event.as_deref(), Some("message_start"));
        assert_eq!(events[0].data, "{\"a\":1}");
        assert_eq!(events[0].raw, b"event: message_start\ndata: {\"a\":1}\n\n");
        // A comment-only block is an event with no data, so its bytes are kept.
        assert_eq!(
            (events[1].event.as_ref(), events[1].data.as_str()),
            (None, "")
        );
        assert_eq!(events[1].raw, b": keep-alive\n\n");
        // Data lines join with "\n"; only one space after the colon is stripped.
        assert_eq!(events[2].data, "a\nb\n c");
        assert_eq!(events[3].data, "");
        assert_eq!(
            events
                .iter()
                .flat_map(|e| e.raw.clone())
                .collect::<Vec<_>>(),
            input
        );
    }

    #[test]
    fn sse_crlf_and_unterminated_end() {
        let input = b"event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\ndata: [DONE]\r\n";
        let mut s = SseSplitter::new();
        let events = s.push(input);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event.as_deref(), Some("ping"));
        assert_eq!(events[0].data, "{\"type\": \"ping\"}");
        assert_eq!(
            events[0].raw,
            b"event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n"
        );
        let last = s.finish().unwrap();
        assert_eq!(last.data, "[DONE]");
        assert_eq!(last.raw, b"data: [DONE]\r\n");
        // A last line without its newline still counts.
        let mut s = SseSplitter::new();
        assert!(s.push(b"data: {\"x\":1}").is_empty());
        let last = s.finish().unwrap();
        assert_eq!(
            (last.data.as_str(), last.raw.as_slice()),
            ("{\"x\":1}", &b"data: {\"x\":1}"[..])
        );
        assert_eq!(SseSplitter::new().finish(), None);
        let mut s = SseSplitter::new();
        assert_eq!(s.push(b"data: x\n\n").len(), 1);
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn sse_blank_lines_between_events_keep_their_bytes() {
        let input = b"\ndata: 1\n\n\n\ndata: 2\n\n";
        let events = split_all(input, &[]);
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["", "1", "", "", "2"]);
        assert_eq!(
            events
                .iter()
                .flat_map(|e| e.raw.clone())
                .collect::<Vec<_>>(),
            input
        );
    }

    fn mixed_stream() -> Vec<u8> {
        let mut v = anthropic_stream();
        v.extend_from_slice(
            b": comment\r\nevent: x\r\ndata: caf\xc3\xa9 \xe2\x82\xac\r\ndata: 2\r\n\r\n",
        );
        v.extend(chat_stream_with_usage());
        v.extend_from_slice(b"data: tail");
        v
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let input = mixed_stream();
        let whole = split_all(&input, &[]);
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(split_all(&input, &cuts), whole);
        assert_eq!(
            whole.iter().flat_map(|e| e.raw.clone()).collect::<Vec<_>>(),
            input
        );
        assert!(whole.iter().any(|e| e.data == "café €\n2"));
    }

    proptest! {
        #[test]
        fn random_splits_equal_whole(mut cuts in proptest::collection::vec(0usize..6000, 0..40)) {
            let input = mixed_stream();
            cuts.sort_unstable();
            prop_assert_eq!(split_all(&input, &cuts), split_all(&input, &[]));
        }

        #[test]
        fn raws_always_rebuild_the_input(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(b'd'), any::<u8>()],
                0..300),
            mut cuts in proptest::collection::vec(0usize..300, 0..10),
        ) {
            cuts.sort_unstable();
            let events = split_all(&bytes, &cuts);
            prop_assert_eq!(events.iter().flat_map(|e| e.raw.clone()).collect::<Vec<_>>(), bytes.clone());
            prop_assert_eq!(events, split_all(&bytes, &[]));
        }
    }

    // ---- OpenAI Chat Completions ----

    const CHAT_BODY: &str = r#"{
      "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
      "object": "chat.completion",
      "created": 1741570283,
      "model": "o4-mini-2025-04-16",
      "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "Paris is the capital of France.",
                    "refusal": null, "annotations": []},
        "logprobs": null,
        "finish_reason": "stop"
      }],
      "usage": {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 64, "audio_tokens": 0,
          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
      },
      "service_tier": "default",
      "system_fingerprint": "fp_fc9f1d7035"
    }"#;

    #[test]
    fn chat_body() {
        let o = body(Api::ChatCompletions, CHAT_BODY, 200);
        assert_eq!(
            o,
            CallOutcome {
                model: Some("o4-mini-2025-04-16".into()),
                response_id: Some("chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG".into()),
                // 2006 prompt tokens of which 1024 cached; 300 completion of which 64 reasoning.
                usage: Some(usage(2006, 300, 1024, 0, 64)),
                error_type: None,
                output_text: Some("Paris is the capital of France.".into()),
            }
        );
    }

    #[test]
    fn chat_body_with_tool_calls_has_no_text() {
        let b = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",
          "choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
            {"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},
            "finish_reason":"tool_calls"}],
          "usage":{"prompt_tokens":82,"completion_tokens":17,"total_tokens":99}}"#;
        let o = body(Api::ChatCompletions, b, 200);
        assert_eq!(o.usage, Some(usage(82, 17, 0, 0, 0)));
        assert_eq!(o.output_text, None);
    }

    const CHUNK: &str = r#""id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb""#;

    fn chat_stream(with_usage: bool) -> Vec<u8> {
        let mut events = vec![
            format!(
                r#"data: {{{CHUNK},"choices":[{{"index":0,"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            ),
            format!(
                r#"data: {{{CHUNK},"choices":[{{"index":0,"delta":{{"content":"Hello"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            ),
            format!(
                r#"data: {{{CHUNK},"choices":[{{"index":0,"delta":{{"content":" there\n\"friend\""}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            ),
            format!(
                r#"data: {{{CHUNK},"choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}"#
            ),
        ];
        if with_usage {
            events.push(format!(r#"data: {{{CHUNK},"choices":[],"usage":{{"prompt_tokens":1536,"completion_tokens":120,"total_tokens":1656,"prompt_tokens_details":{{"cached_tokens":1024,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":64,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}}}"#));
        }
        events.push("data: [DONE]".into());
        sse(&events.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn chat_stream_with_usage() -> Vec<u8> {
        chat_stream(true)
    }

    #[test]
    fn chat_stream_with_usage_chunk() {
        let (kinds, o) = observe(Api::ChatCompletions, &chat_stream(true), 200);
        // The role-only first chunk is not content; the usage chunk is UsageOnly.
        assert_eq!(kinds, [Other, Content, Content, Other, UsageOnly, Other]);
        assert_eq!(
            o,
            CallOutcome {
                model: Some("gpt-4o-mini-2024-07-18".into()),
                response_id: Some("chatcmpl-123".into()),
                usage: Some(usage(1536, 120, 1024, 0, 64)),
                error_type: None,
                output_text: Some("Hello there\n\"friend\"".into()),
            }
        );
    }

    #[test]
    fn chat_stream_without_usage_is_unknown() {
        let (kinds, o) = observe(Api::ChatCompletions, &chat_stream(false), 200);
        assert_eq!(kinds, [Other, Content, Content, Other, Other]);
        assert_eq!(o.usage, None);
        assert_eq!(o.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(o.output_text.as_deref(), Some("Hello there\n\"friend\""));
    }

    #[test]
    fn chat_stream_tool_calls_refusals_and_reasoning_are_content() {
        let stream = sse(&[
            // Azure's prompt-filter chunk: no choices, no usage, empty id and model.
            r#"data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#,
            r#"data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}]}"#,
            r#"data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\""}}]},"logprobs":null,"finish_reason":null}]}"#,
            r#"data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}"#,
            r#"data: {"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"refusal":"I can't help with that."},"finish_reason":null}]}"#,
            r#"data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":"Hmm"},"finish_reason":null}]}"#,
            r#"data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[]},"finish_reason":null}]}"#,
            "data: [DONE]",
        ]);
        let (kinds, o) = observe(Api::ChatCompletions, &stream, 200);
        assert_eq!(
            kinds,
            [
                Other, Content, Content, Other, Content, Content, Other, Other
            ]
        );
        // The empty id and model of the filter chunk are skipped.
        assert_eq!(o.response_id.as_deref(), Some("chatcmpl-9"));
        assert_eq!(o.model.as_deref(), Some("gpt-4o"));
        assert_eq!(o.output_text.as_deref(), Some("I can't help with that."));
        assert_eq!(o.usage, None);
    }

    #[test]
    fn chat_stream_with_usage_on_every_chunk_is_not_usage_only() {
        // vLLM's continuous_usage_stats: the last usage wins, content chunks stay Content.
        let stream = sse(&[
            r#"data: {"id":"c","model":"llama","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":{"prompt_tokens":10,"completion_tokens":1,"total_tokens":11}}"#,
            r#"data: {"id":"c","model":"llama","choices":[{"index":0,"delta":{"content":"!"}}],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}}"#,
        ]);
        let (kinds, o) = observe(Api::ChatCompletions, &stream, 200);
        assert_eq!(kinds, [Content, Content]);
        assert_eq!(o.usage, Some(usage(10, 2, 0, 0, 0)));
    }

    #[test]
    fn chat_stream_error_chunk() {
        let stream = sse(&[
            r#"data: {"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            r#"data: {"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#,
        ]);
        let (kinds, o) = observe(Api::ChatCompletions, &stream, 200);
        assert_eq!(kinds, [Content, Other]);
        assert_eq!(o.error_type.as_deref(), Some("server_error"));
        assert_eq!(o.usage, None);
    }

    #[test]
    fn stream_output_is_capped_at_a_char_boundary() {
        let piece = "é".repeat(300_000);
        let mut o = CallObserver::new(Api::ChatCompletions, true);
        for _ in 0..3 {
            let chunk = json!({"id": "c", "model": "m",
                               "choices": [{"index": 0, "delta": {"content": piece}}]});
            let ev = SseEvent {
                data: chunk.to_string(),
                ..SseEvent::default()
            };
            assert_eq!(o.on_event(&ev), Content);
        }
        let text = o.finish(200).output_text.unwrap();
        assert_eq!(text.len(), MAX_CONTENT_BYTES);
        assert!(text.chars().all(|c| c == 'é'));
    }

    // ---- OpenAI errors ----

    #[test]
    fn openai_error_bodies() {
        let rate = r#"{"error": {"message": "Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29500, Requested 1200. Please try again in 1.4s.", "type": "tokens", "param": null, "code": "rate_limit_exceeded"}}"#;
        let o = body(Api::ChatCompletions, rate, 429);
        assert_eq!(o.error_type.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!((o.usage, o.output_text, o.model), (None, None, None));
        let quota = r#"{"error": {"message": "You exceeded your current quota, please check your plan and billing details.", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}"#;
        let o = body(Api::Responses, quota, 429);
        assert_eq!(o.error_type.as_deref(), Some("insufficient_quota"));
        let server = r#"{"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}"#;
        assert_eq!(
            body(Api::Embeddings, server, 500).error_type.as_deref(),
            Some("server_error")
        );
        // An error body to a streaming request arrives as a body too.
        let mut o = CallObserver::new(Api::ChatCompletions, true);
        o.on_body(rate.as_bytes());
        assert_eq!(
            o.finish(429).error_type.as_deref(),
            Some("rate_limit_exceeded")
        );
        // Bodies that name nothing: the caller falls back to http_<status>.
        assert_eq!(
            body(Api::ChatCompletions, "<html>Bad Gateway</html>", 502).error_type,
            None
        );
        assert_eq!(
            body(Api::ChatCompletions, r#"{"error":"model not found"}"#, 404).error_type,
            None
        );
    }

    // ---- OpenAI Responses ----

    const RESPONSES_BODY: &str = r#"{
      "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
      "object": "response",
      "created_at": 1741476542,
      "status": "completed",
      "error": null,
      "incomplete_details": null,
      "instructions": null,
      "max_output_tokens": null,
      "model": "o3-2025-04-16",
      "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Thinking..."}]},
        {"type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e6", "status": "completed",
         "role": "assistant",
         "content": [{"type": "output_text", "text": "In a peaceful grove beneath a silver moon...",
                      "annotations": []}]}
      ],
      "parallel_tool_calls": true,
      "previous_response_id": null,
      "reasoning": {"effort": "medium", "summary": null},
      "store": true,
      "temperature": 1.0,
      "text": {"format": {"type": "text"}},
      "tool_choice": "auto",
      "tools": [],
      "top_p": 1.0,
      "truncation": "disabled",
      "usage": {
        "input_tokens": 1500,
        "input_tokens_details": {"cached_tokens": 1280},
        "output_tokens": 700,
        "output_tokens_details": {"reasoning_tokens": 448},
        "total_tokens": 2200
      },
      "user": null,
      "metadata": {}
    }"#;

    #[test]
    fn responses_body() {
        let o = body(Api::Responses, RESPONSES_BODY, 200);
        assert_eq!(
            o,
            CallOutcome {
                model: Some("o3-2025-04-16".into()),
                response_id: Some("resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b".into()),
                usage: Some(usage(1500, 700, 1280, 0, 448)),
                error_type: None,
                output_text: Some("In a peaceful grove beneath a silver moon...".into()),
            }
        );
    }

    fn responses_stream() -> Vec<u8> {
        let resp = |status: &str, usage: &str| {
            format!(
                r#"{{"id":"resp_67c9fdcecf488190bdd9a0409de3a1ec","object":"response","created_at":1741290958,"status":"{status}","error":null,"incomplete_details":null,"instructions":"You are a helpful assistant.","max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{{"effort":null,"summary":null}},"store":true,"temperature":1.0,"text":{{"format":{{"type":"text"}}}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{usage},"user":null,"metadata":{{}}}}"#
            )
        };
        let events = [
            format!("event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{}}}", resp("in_progress", "null")),
            format!("event: response.in_progress\ndata: {{\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{}}}", resp("in_progress", "null")),
            r#"event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_67c9fdcf37fc8190ba82116e33fb28c5","type":"message","status":"in_progress","role":"assistant","content":[]}}"#.into(),
            r#"event: response.content_part.added
data: {"type":"response.content_part.added","sequence_number":3,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c5","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}"#.into(),
            r#"event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c5","output_index":0,"content_index":0,"delta":"Hi","logprobs":[]}"#.into(),
            r#"event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c5","output_index":0,"content_index":0,"delta":" there!","logprobs":[]}"#.into(),
            r#"event: response.output_text.done
data: {"type":"response.output_text.done","sequence_number":6,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c5","output_index":0,"content_index":0,"text":"Hi there!","logprobs":[]}"#.into(),
            r#"event: response.content_part.done
data: {"type":"response.content_part.done","sequence_number":7,"item_id":"msg_67c9fdcf37fc8190ba82116e33fb28c5","output_index":0,"content_index":0,"part":{"type":"output_text","text":"Hi there!","annotations":[]}}"#.into(),
            format!("event: response.completed\ndata: {{\"type\":\"response.completed\",\"sequence_number\":8,\"response\":{}}}", resp("completed", r#"{"input_tokens":2048,"input_tokens_details":{"cached_tokens":1920},"output_tokens":96,"output_tokens_details":{"reasoning_tokens":32},"total_tokens":2144}"#)),
        ];
        sse(&events.iter().map(String::as_str).collect::<Vec<_>>())
    }

    #[test]
    fn responses_stream_usage_from_completed() {
        let (kinds, o) = observe(Api::Responses, &responses_stream(), 200);
        assert_eq!(
            kinds,
            [
                Other, Other, Other, Other, Content, Content, Other, Other, Other
            ]
        );
        assert_eq!(
            o,
            CallOutcome {
                model: Some("gpt-4.1-2025-04-14".into()),
                response_id: Some("resp_67c9fdcecf488190bdd9a0409de3a1ec".into()),
                usage: Some(usage(2048, 96, 1920, 0, 32)),
                error_type: None,
                output_text: Some("Hi there!".into()),
            }
        );
        // Cut before response.completed: usage unknown.
        let whole = responses_stream();
        let cut = whole.len() - 600;
        let (_, o) = observe(Api::Responses, &whole[..cut], 200);
        assert_eq!(o.usage, None);
        assert_eq!(o.output_text.as_deref(), Some("Hi there!"));
    }

    #[test]
    fn responses_stream_tool_call_deltas_and_failures() {
        let stream = sse(&[
            r#"event: response.function_call_arguments.delta
data: {"type":"response.function_call_arguments.delta","sequence_number":3,"item_id":"fc_1","output_index":0,"delta":"{\"loc"}"#,
            r#"event: response.reasoning_summary_text.delta
data: {"type":"response.reasoning_summary_text.delta","sequence_number":4,"item_id":"rs_1","output_index":0,"summary_index":0,"delta":"Thinking"}"#,
            r#"event: response.failed
data: {"type":"response.failed","sequence_number":5,"response":{"id":"resp_1","object":"response","status":"failed","error":{"code":"server_error","message":"The model failed to generate a response."},"model":"gpt-4.1","output":[],"usage":null}}"#,
        ]);
        let (kinds, o) = observe(Api::Responses, &stream, 200);
        assert_eq!(kinds, [Content, Content, Other]);
        assert_eq!(o.error_type.as_deref(), Some("server_error"));
        assert_eq!((o.usage, o.output_text), (None, None));
        let stream = sse(&[r#"event: error
data: {"type":"error","code":"ERR_SOMETHING","message":"Something went wrong","param":null,"sequence_number":1}"#]);
        let (kinds, o) = observe(Api::Responses, &stream, 200);
        assert_eq!(kinds, [Other]);
        assert_eq!(o.error_type.as_deref(), Some("ERR_SOMETHING"));
    }

    #[test]
    fn responses_incomplete_keeps_usage() {
        let stream = sse(&[r#"event: response.incomplete
data: {"type":"response.incomplete","sequence_number":9,"response":{"id":"resp_2","status":"incomplete","error":null,"incomplete_details":{"reason":"max_output_tokens"},"model":"o4-mini","usage":{"input_tokens":40,"input_tokens_details":{"cached_tokens":0},"output_tokens":16,"output_tokens_details":{"reasoning_tokens":16},"total_tokens":56}}}"#]);
        let (_, o) = observe(Api::Responses, &stream, 200);
        assert_eq!(o.usage, Some(usage(40, 16, 0, 0, 16)));
        assert_eq!(o.error_type, None);
    }

    // ---- Embeddings ----

    #[test]
    fn embeddings_body() {
        let b = r#"{
          "object": "list",
          "data": [{"object": "embedding", "index": 0,
                    "embedding": [-0.006929283495992422, -0.005336422007530928, 0.00047350, -0.024047505110502243]}],
          "model": "text-embedding-3-small",
          "usage": {"prompt_tokens": 8, "total_tokens": 8}
        }"#;
        assert_eq!(
            body(Api::Embeddings, b, 200),
            CallOutcome {
                model: Some("text-embedding-3-small".into()),
                response_id: None,
                usage: Some(usage(8, 0, 0, 0, 0)),
                error_type: None,
                output_text: None,
            }
        );
    }

    // ---- Anthropic Messages ----

    #[test]
    fn anthropic_body() {
        let b = r#"{
          "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
          "type": "message",
          "role": "assistant",
          "model": "claude-sonnet-4-20250514",
          "content": [
            {"type": "thinking", "thinking": "The user greets me.", "signature": "EqQBCgIYAhIM"},
            {"type": "text", "text": "Hello! "},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "text", "text": "Checking the weather."}
          ],
          "stop_reason": "tool_use",
          "stop_sequence": null,
          "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 500,
            "cache_read_input_tokens": 2000,
            "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 58,
            "service_tier": "standard"
          }
        }"#;
        assert_eq!(
            body(Api::AnthropicMessages, b, 200),
            CallOutcome {
                model: Some("claude-sonnet-4-20250514".into()),
                response_id: Some("msg_01XFDUDYJgAACzvnptvVoYEL".into()),
                // 12 uncached + 2000 read from cache + 500 written to it.
                usage: Some(usage(2512, 58, 2000, 500, 0)),
                error_type: None,
                output_text: Some("Hello! Checking the weather.".into()),
            }
        );
    }

    fn anthropic_stream() -> Vec<u8> {
        sse(&[
            r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-20250514","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"output_tokens":2}}}"#,
            r#"event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
            r#"event: ping
data: {"type": "ping"}"#,
            r#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"I need the weather."}}"#,
            r#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}"#,
            r#"event: content_block_stop
data: {"type":"content_block_stop","index":0}"#,
            r#"event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            r#"event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay, let's check "}}"#,
            r#"event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"the weather for San Francisco, CA:"}}"#,
            r#"event: content_block_stop
data: {"type":"content_block_stop","index":1}"#,
            r#"event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#,
            r#"event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"location\": \"San Fra"}}"#,
            r#"event: content_block_stop
data: {"type":"content_block_stop","index":2}"#,
            r#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
            r#"event: message_stop
data: {"type":"message_stop"}"#,
        ])
    }

    #[test]
    fn anthropic_stream_usage_and_content() {
        let (kinds, o) = observe(Api::AnthropicMessages, &anthropic_stream(), 200);
        assert_eq!(
            kinds,
            [
                Other, Other, Other, Content, Content, Other, Other, Content, Content, Other,
                Other, Content, Content, Other, Other, Other
            ]
        );
        assert_eq!(
            o,
            CallOutcome {
                model: Some("claude-sonnet-4-20250514".into()),
                response_id: Some("msg_014p7gG3wDgGV9EUtLvnow3U".into()),
                // 472 + 1800 cache reads in; output is message_delta's cumulative 89.
                usage: Some(usage(2272, 89, 1800, 0, 0)),
                error_type: None,
                output_text: Some("Okay, let's check the weather for San Francisco, CA:".into()),
            }
        );
    }

    #[test]
    fn anthropic_message_delta_input_fields_win() {
        let stream = sse(&[
            r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-opus-4-1-20250805","usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
            r#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            r#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}"#,
            r#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":30,"cache_creation_input_tokens":1000,"cache_read_input_tokens":null,"output_tokens":12,"server_tool_use":{"web_search_requests":1}}}"#,
        ]);
        let (_, o) = observe(Api::AnthropicMessages, &stream, 200);
        // Input 30 + 1000 cache writes (reads null: message_start's 0 stays); output the last, 12.
        assert_eq!(o.usage, Some(usage(1030, 12, 0, 1000, 0)));
    }

    #[test]
    fn anthropic_cut_stream_has_unknown_usage() {
        let whole = anthropic_stream();
        let text = String::from_utf8(whole.clone()).unwrap();
        let cut = text.find("event: message_delta").unwrap();
        let (_, o) = observe(Api::AnthropicMessages, &whole[..cut], 200);
        assert_eq!(o.usage, None);
        assert_eq!(o.model.as_deref(), Some("claude-sonnet-4-20250514"));
    }

    #[test]
    fn anthropic_errors() {
        let b = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#;
        let o = body(Api::AnthropicMessages, b, 529);
        assert_eq!(o.error_type.as_deref(), Some("overloaded_error"));
        assert_eq!((o.usage, o.response_id), (None, None));
        // Mid-stream, with status 200.
        let mut stream = anthropic_stream();
        let cut = String::from_utf8(stream.clone())
            .unwrap()
            .find("event: message_delta")
            .unwrap();
        stream.truncate(cut);
        stream.extend(sse(&[r#"event: error
data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#]));
        let (kinds, o) = observe(Api::AnthropicMessages, &stream, 200);
        assert_eq!(kinds.last(), Some(&Other));
        assert_eq!(o.error_type.as_deref(), Some("overloaded_error"));
        assert_eq!(o.usage, None);
    }

    // ---- limits and odd input ----

    #[test]
    fn oversized_body_has_unknown_usage() {
        let mut o = CallObserver::new(Api::ChatCompletions, false);
        o.on_body(CHAT_BODY.as_bytes());
        o.on_body(&vec![b' '; MAX_BODY_BYTES]);
        o.on_body(b"}");
        assert_eq!(o.finish(200), CallOutcome::default());
    }

    #[test]
    fn odd_bodies_read_as_unknown() {
        for b in [
            "",
            "not json",
            "[]",
            "{\"usage\": 5}",
            "{\"usage\": {\"prompt_tokens\": -3}}",
        ] {
            assert_eq!(body(Api::ChatCompletions, b, 200).usage, None, "{b}");
        }
        // Integral floats pass; counts beyond the record's limit are not believed.
        let b = r#"{"model":"m","usage":{"prompt_tokens":10.0,"completion_tokens":2}}"#;
        assert_eq!(
            body(Api::ChatCompletions, b, 200).usage,
            Some(usage(10, 2, 0, 0, 0))
        );
        let b =
            r#"{"model":"m","usage":{"prompt_tokens":18446744073709551615,"completion_tokens":2}}"#;
        assert_eq!(body(Api::ChatCompletions, b, 200).usage, None);
        // Parts larger than their totals are clamped into them.
        let b = r#"{"usage":{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":50},"completion_tokens_details":{"reasoning_tokens":9}}}"#;
        assert_eq!(
            body(Api::ChatCompletions, b, 200).usage,
            Some(usage(10, 2, 10, 0, 2))
        );
        // A wrong-typed text field loses only the text.
        let b = r#"{"id":"c","model":"m","choices":{"oops":1},"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        let o = body(Api::ChatCompletions, b, 200);
        assert_eq!((o.usage, o.output_text), (Some(usage(3, 4, 0, 0, 0)), None));
        // Labels the record would refuse are dropped.
        let long = "m".repeat(MAX_LABEL_BYTES + 1);
        let b = format!(r#"{{"id":"","model":"{long}","usage":{{"prompt_tokens":1}}}}"#);
        let o = body(Api::ChatCompletions, &b, 200);
        assert_eq!((o.model, o.response_id), (None, None));
        // Events with data that is not JSON are Other.
        let mut o = CallObserver::new(Api::AnthropicMessages, true);
        for data in ["", "[DONE]", "{not json", "{\"type\": 5}"] {
            let ev = SseEvent {
                data: data.into(),
                ..SseEvent::default()
            };
            assert_eq!(o.on_event(&ev), Other, "{data}");
        }
    }
}
