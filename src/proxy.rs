//! The recording proxy: `/proxy/openai/v1/...` and `/proxy/anthropic/v1/...` forward calls to
//! the configured upstreams unchanged (streams chunk by chunk) and record one request per call
//! (`core::proxy_usage` reads the usage). Recording never delays the call: the record goes to a
//! queue once the response has been forwarded, and a recorder task writes the queue in batches.
//! Budgets with `enforce = true` refuse calls in their scope (429) once exceeded.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_core::Stream;
use serde_json::json;
use tokio::sync::mpsc;

use crate::api::AppState;
use crate::config::{Budget, ProxyConfig};
use crate::core::proxy_usage::{
    Api, CallObserver, CallOutcome, EventKind, Provider, SseEvent, SseSplitter, parse_call_request,
    with_include_usage,
};
use crate::core::quality::heuristic_scores;
use crate::core::record::{
    MAX_LABEL_BYTES, MAX_REQUEST_ID_BYTES, Record, Status, Usage, char_count,
};
use crate::core::rollup::PricedRecord;
use crate::core::time::period_range;
use crate::pipeline::Writer;
use crate::report::{BudgetState, budget_statuses};
use crate::store::DEFAULT_PROJECT;

/// Records waiting for the recorder; beyond that new records are dropped (and counted) rather
/// than slowing calls down.
const RECORD_QUEUE: usize = 65_536;
/// Largest batch the recorder hands the writer at once.
const RECORD_BATCH: usize = 4_096;
/// How stale the enforced budgets' states may be.
const BUDGET_REFRESH: Duration = Duration::from_secs(1);
/// The attribute holding the upstream's response id (`chatcmpl-...`, `msg_...`).
pub const RESPONSE_ID_ATTRIBUTE: &str = "llmwatch.response_id";
/// The attribute marking a call whose usage the upstream did not report.
pub const USAGE_ATTRIBUTE: &str = "llmwatch.usage";

/// The proxy's shared state.
pub struct Proxy {
    config: ProxyConfig,
    client: reqwest::Client,
    records: mpsc::Sender<PricedRecord>,
    gate: BudgetGate,
    counter: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped: AtomicU64,
}

impl Proxy {
    /// The proxy and its recorder task, which ends once the proxy is dropped and the queue is
    /// written.
    pub fn spawn(
        config: ProxyConfig,
        budgets: &[Budget],
        writer: Writer,
    ) -> Result<(Arc<Proxy>, tokio::task::JoinHandle<()>), reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms as u64))
            .timeout(Duration::from_millis(config.timeout_ms as u64))
            // Redirects are the client's business: passed through, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .build()?;
        let (records, rx) = mpsc::channel(RECORD_QUEUE);
        let task = tokio::spawn(record(rx, writer));
        let proxy = Proxy {
            config,
            client,
            records,
            gate: BudgetGate::new(budgets.iter().filter(|b| b.enforce).cloned().collect()),
            counter: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        };
        Ok((Arc::new(proxy), task))
    }
}

/// Writes queued records in batches: whatever arrived while the previous batch was being made
/// durable goes in the next.
async fn record(mut rx: mpsc::Receiver<PricedRecord>, writer: Writer) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let records = std::mem::take(&mut batch);
        let n = records.len();
        // Waits for room in the writer's queue: back-pressure lands here, not on the calls.
        if let Err(e) = writer.submit_waiting(DEFAULT_PROJECT, records).await {
            tracing::error!(error = %e, records = n, "proxy records lost");
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/proxy/openai/v1/{*path}", any(openai))
        .route("/proxy/anthropic/v1/{*path}", any(anthropic))
}

async fn openai(
    State(s): State<AppState>,
    Path(path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    forward(s, Provider::OpenAi, path, method, uri, headers, body).await
}

async fn anthropic(
    State(s): State<AppState>,
    Path(path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    forward(s, Provider::Anthropic, path, method, uri, headers, body).await
}

/// Headers that describe one connection, not the message (RFC 9110 7.6.1), plus those
/// recomputed for the new request.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

const LLMWATCH_HEADER: &str = "x-llmwatch-";

/// What the `x-llmwatch-*` headers say about a call.
#[derive(Debug, Default)]
struct CallLabels {
    request_id: Option<String>,
    user: Option<String>,
    feature: Option<String>,
    release: Option<String>,
    session: Option<String>,
    attributes: BTreeMap<String, String>,
}

fn labels_of(headers: &HeaderMap) -> CallLabels {
    let mut labels = CallLabels::default();
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(LLMWATCH_HEADER) else {
            continue;
        };
        let Ok(value) = value.to_str() else { continue };
        let value = value.trim();
        if value.is_empty() || value.len() > MAX_LABEL_BYTES {
            continue;
        }
        let value = value.to_owned();
        match key {
            "request-id" if value.len() <= MAX_REQUEST_ID_BYTES => labels.request_id = Some(value),
            "user" => labels.user = Some(value),
            "feature" => labels.feature = Some(value),
            "release" => labels.release = Some(value),
            "session" => labels.session = Some(value),
            other => {
                if let Some(attr) = other.strip_prefix("attr-").filter(|a| !a.is_empty()) {
                    labels.attributes.insert(attr.to_owned(), value);
                }
            }
        }
    }
    labels
}

/// The upstream request's headers: the client's, minus hop-by-hop and llmwatch's own.
fn forwarded_headers(headers: &HeaderMap, recorded: bool) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if is_hop_by_hop(name)
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name.as_str().starts_with(LLMWATCH_HEADER)
            || (recorded && name == header::ACCEPT_ENCODING)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if recorded {
        // The usage is read from the body: it must arrive uncompressed.
        out.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    out
}

/// An error answered by the proxy itself, in the provider's error shape.
fn proxy_error(
    provider: Provider,
    status: StatusCode,
    kind: &str,
    message: &str,
    extra: Option<(HeaderName, HeaderValue)>,
) -> Response {
    let body = match provider {
        Provider::OpenAi => json!({"error": {"message": message, "type": kind, "code": kind,
                                              "param": null}}),
        Provider::Anthropic => json!({"type": "error", "error": {"type": match status {
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::GATEWAY_TIMEOUT => "timeout_error",
            _ => "api_error",
        }, "message": message}}),
    };
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some((name, value)) = extra {
        resp.headers_mut().insert(name, value);
    }
    resp
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    s: AppState,
    provider: Provider,
    path: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(proxy) = s.proxy.clone() else {
        return (StatusCode::NOT_FOUND, "the proxy is off").into_response();
    };
    let started = Instant::now();
    let received_ms = (s.clock)();
    let api = Api::of(provider, method == Method::POST, &path);
    let base = match provider {
        Provider::OpenAi => proxy.config.openai_base_url.as_str(),
        Provider::Anthropic => proxy.config.anthropic_base_url.as_str(),
    };
    let mut url = match provider {
        Provider::OpenAi => format!("{base}/{path}"),
        Provider::Anthropic => format!("{base}/v1/{path}"),
    };
    if let Some(q) = uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let upstream_headers = forwarded_headers(&headers, api.is_some());
    let Some(api) = api else {
        // Not a recorded call: passed through as it comes, body streamed.
        let request = proxy
            .client
            .request(method, &url)
            .headers(upstream_headers)
            .body(reqwest::Body::wrap_stream(body.into_data_stream()));
        return match request.send().await {
            Ok(resp) => pass_back(resp, None),
            Err(e) => upstream_failure(provider, &e).0,
        };
    };

    let labels = labels_of(&headers);
    let mut bytes = match axum::body::to_bytes(body, s.config.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return proxy_error(
                provider,
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                &format!(
                    "llmwatch proxy: body exceeds max_body_bytes ({})",
                    s.config.max_body_bytes
                ),
                None,
            );
        }
    };
    // A body that is not the API's JSON still goes upstream, which answers it.
    let call = parse_call_request(api, &bytes).ok();
    let model = call.as_ref().and_then(|c| c.model.clone());
    let mut call_record = CallRecord {
        proxy: Arc::clone(&proxy),
        state: s.clone(),
        provider,
        labels,
        received_ms,
        started,
        request_model: model.clone(),
        input_text: call.as_ref().and_then(|c| c.input_text.clone()),
        upstream_started: None,
        ttft: None,
    };

    if let Some(refusal) = proxy.gate.refusal(&s, &call_record, model.as_deref()) {
        call_record.finish_with(
            Status::Error,
            Some("budget_exceeded".into()),
            Some(Usage::default()),
            None,
            None,
        );
        return proxy_error(
            provider,
            StatusCode::TOO_MANY_REQUESTS,
            "budget_exceeded",
            &refusal.message,
            refusal.retry_after_s.and_then(|s| {
                HeaderValue::from_str(&s.to_string())
                    .ok()
                    .map(|v| (header::RETRY_AFTER, v))
            }),
        );
    }

    let stream = call.as_ref().is_some_and(|c| c.stream);
    let mut strip_usage = false;
    if api == Api::ChatCompletions
        && stream
        && proxy.config.add_stream_usage
        && call.as_ref().is_some_and(|c| !c.include_usage)
    {
        if let Ok(b) = with_include_usage(&bytes) {
            bytes = Bytes::from(b);
            strip_usage = true;
        }
    }

    call_record.upstream_started = Some(Instant::now());
    let request = proxy
        .client
        .request(method, &url)
        .headers(upstream_headers)
        .body(bytes);
    match request.send().await {
        Ok(resp) => {
            let sse = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            let tap = Tap {
                observer: Some(CallObserver::new(api, sse)),
                splitter: sse.then(SseSplitter::new),
                strip_usage: strip_usage && sse,
                status: resp.status().as_u16(),
                record: Some(call_record),
                expected_len: resp.content_length(),
                received_len: 0,
                terminal_seen: false,
            };
            pass_back(resp, Some(tap))
        }
        Err(e) => {
            let (response, error_type) = upstream_failure(provider, &e);
            // Never reached: nothing billed. Timed out: the upstream may have worked (unknown).
            let usage = (!e.is_timeout()).then(Usage::default);
            call_record.finish_with(Status::Error, Some(error_type.into()), usage, None, None);
            response
        }
    }
}

/// A failed upstream call: 504 for a timeout, 502 otherwise, with the type to record.
fn upstream_failure(provider: Provider, e: &reqwest::Error) -> (Response, &'static str) {
    if e.is_timeout() {
        (
            proxy_error(
                provider,
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "llmwatch proxy: the upstream did not answer in time",
                None,
            ),
            "timeout",
        )
    } else {
        tracing::warn!(error = %e, "proxy: upstream unreachable");
        (
            proxy_error(
                provider,
                StatusCode::BAD_GATEWAY,
                "connection_error",
                "llmwatch proxy: could not reach the upstream",
                None,
            ),
            "connection_error",
        )
    }
}

/// The upstream's answer, streamed back as it arrives (through the tap when recorded).
fn pass_back(resp: reqwest::Response, tap: Option<Tap>) -> Response {
    let status = resp.status();
    // A body the tap edits has a new length.
    let edited = tap.as_ref().is_some_and(|t| t.strip_usage);
    let mut headers = HeaderMap::with_capacity(resp.headers().len());
    for (name, value) in resp.headers() {
        let dropped = is_hop_by_hop(name) || (edited && name == header::CONTENT_LENGTH);
        if !dropped {
            headers.append(name.clone(), value.clone());
        }
    }
    let body = match tap {
        Some(mut tap) => {
            tap.status = status.as_u16();
            Body::from_stream(TapStream {
                inner: Box::pin(resp.bytes_stream()),
                tap,
                pending: std::collections::VecDeque::new(),
            })
        }
        None => Body::from_stream(resp.bytes_stream()),
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

type ChunkPoll = Poll<Option<Result<Bytes, reqwest::Error>>>;

/// Watches the response on its way to the client.
struct Tap {
    observer: Option<CallObserver>,
    /// Set for SSE responses.
    splitter: Option<SseSplitter>,
    /// Drop OpenAI's usage-only chunk (the proxy asked for it on the client's behalf).
    strip_usage: bool,
    status: u16,
    record: Option<CallRecord>,
    /// The upstream's `content-length`: the server stops reading a body once that much was
    /// sent, so reaching it completes the call.
    expected_len: Option<u64>,
    received_len: u64,
    /// The stream's last event went by (`[DONE]`, `message_stop`, `response.completed`...).
    terminal_seen: bool,
}

/// Whether an event ends its stream.
fn is_terminal(ev: &SseEvent) -> bool {
    ev.data.trim() == "[DONE]"
        || matches!(
            ev.event.as_deref(),
            Some(
                "message_stop"
                    | "error"
                    | "response.completed"
                    | "response.failed"
                    | "response.incomplete"
            )
        )
}

impl Tap {
    /// Looks at one chunk; returns what to forward of it.
    fn observe(&mut self, chunk: Bytes) -> Vec<Bytes> {
        let Some(observer) = self.observer.as_mut() else {
            return vec![chunk];
        };
        let Some(splitter) = self.splitter.as_mut() else {
            observer.on_body(&chunk);
            return vec![chunk];
        };
        let events = splitter.push(&chunk);
        let mut kept = Vec::new();
        for ev in events {
            self.terminal_seen |= is_terminal(&ev);
            let kind = observer.on_event(&ev);
            if kind == EventKind::Content {
                if let Some(r) = self.record.as_mut() {
                    r.ttft.get_or_insert_with(|| r.started.elapsed());
                }
            }
            if self.strip_usage && kind != EventKind::UsageOnly {
                kept.push(Bytes::from(ev.raw));
            }
        }
        if self.strip_usage {
            // Forward whole events only: an event split across chunks waits for its end.
            kept
        } else {
            vec![chunk]
        }
    }

    /// The response ended (or the client went away: `complete` false).
    fn finish(&mut self, complete: bool, failure: Option<&reqwest::Error>) -> Option<Bytes> {
        let mut rest = None;
        if let Some(splitter) = self.splitter.take() {
            if let (Some(ev), Some(observer)) = (splitter.finish(), self.observer.as_mut()) {
                let kind = observer.on_event(&ev);
                if self.strip_usage && kind != EventKind::UsageOnly {
                    rest = Some(Bytes::from(ev.raw));
                }
            }
        }
        let (Some(observer), Some(mut record)) = (self.observer.take(), self.record.take()) else {
            return rest;
        };
        let mut outcome = observer.finish(self.status);
        // A client may hang up right after the stream's last event (the OpenAI SDK stops
        // reading at `[DONE]`): the call was complete.
        let complete = complete || self.terminal_seen;
        let answered_ok = (200..300).contains(&self.status);
        let (status, error_type) = match (failure, complete, outcome.error_type.clone()) {
            (Some(e), _, _) if e.is_timeout() => (Status::Error, Some("timeout".to_owned())),
            (Some(_), _, _) => (Status::Error, Some("upstream_disconnected".to_owned())),
            // An error the response reported (also inside a stream that began with 200).
            (None, _, Some(t)) => (Status::Error, Some(t)),
            (None, false, None) => (Status::Error, Some("client_disconnected".to_owned())),
            (None, true, None) if answered_ok => (Status::Ok, None),
            (None, true, None) => (Status::Error, Some(format!("http_{}", self.status))),
        };
        // An error answer bills nothing: its usage is known to be zero.
        if !answered_ok && outcome.usage.is_none() {
            outcome.usage = Some(Usage::default());
        }
        record.finish_outcome(status, error_type, outcome);
        rest
    }
}

struct TapStream {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>,
    tap: Tap,
    pending: std::collections::VecDeque<Bytes>,
}

impl Stream for TapStream {
    type Item = Result<Bytes, reqwest::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> ChunkPoll {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(b)));
            }
            match self.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    self.tap.received_len += chunk.len() as u64;
                    let out = self.tap.observe(chunk);
                    self.pending
                        .extend(out.into_iter().filter(|b| !b.is_empty()));
                    if self
                        .tap
                        .expected_len
                        .is_some_and(|n| self.tap.received_len >= n)
                    {
                        if let Some(rest) = self.tap.finish(true, None) {
                            self.pending.push_back(rest);
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    self.tap.finish(true, Some(&e));
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    if let Some(rest) = self.tap.finish(true, None) {
                        self.pending.push_back(rest);
                        continue;
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl Drop for TapStream {
    fn drop(&mut self) {
        // Dropped before the end: the client went away mid-response.
        self.tap.finish(false, None);
    }
}

/// What the proxy knows of a call until its record is made.
struct CallRecord {
    proxy: Arc<Proxy>,
    state: AppState,
    provider: Provider,
    labels: CallLabels,
    received_ms: i64,
    started: Instant,
    request_model: Option<String>,
    input_text: Option<String>,
    upstream_started: Option<Instant>,
    ttft: Option<Duration>,
}

impl CallRecord {
    fn finish_outcome(&mut self, status: Status, error_type: Option<String>, o: CallOutcome) {
        let CallOutcome {
            model,
            response_id,
            usage,
            output_text,
            ..
        } = o;
        if let Some(model) = model {
            self.request_model = Some(model);
        }
        self.finish_with(status, error_type, usage, response_id, output_text);
    }

    /// Queues the record (never waits).
    fn finish_with(
        &mut self,
        status: Status,
        error_type: Option<String>,
        usage: Option<Usage>,
        response_id: Option<String>,
        output_text: Option<String>,
    ) {
        let proxy = &self.proxy;
        let labels = std::mem::take(&mut self.labels);
        // Not the upstream's id: some servers repeat theirs (Ollama draws `chatcmpl-<0..999>`),
        // and a repeated request id replaces the earlier record.
        let request_id = labels.request_id.unwrap_or_else(|| {
            format!(
                "proxy-{}-{}",
                self.received_ms,
                proxy.counter.fetch_add(1, Ordering::Relaxed)
            )
        });
        let mut attributes = labels.attributes;
        if let Some(id) = response_id.filter(|id| !id.is_empty() && id.len() <= MAX_LABEL_BYTES) {
            attributes.insert(RESPONSE_ID_ATTRIBUTE.to_owned(), id);
        }
        if usage.is_none() {
            attributes.insert(USAGE_ATTRIBUTE.to_owned(), "unknown".to_owned());
        }
        let mut stages = BTreeMap::new();
        if let Some(up) = self.upstream_started {
            stages.insert(
                "model_inference".to_owned(),
                up.elapsed().as_secs_f64() * 1000.0,
            );
        }
        let input = self.input_text.take();
        let config = &self.state.config;
        let mut record = Record {
            request_id,
            timestamp_ms: self.received_ms,
            model: self
                .request_model
                .take()
                .filter(|m| !m.is_empty() && m.len() <= MAX_LABEL_BYTES)
                .unwrap_or_else(|| "unknown".to_owned()),
            provider: Some(self.provider.as_str().to_owned()),
            usage: usage.unwrap_or_default(),
            user_id: labels.user,
            feature: labels.feature,
            session_id: labels.session,
            release: labels.release,
            status,
            error_type,
            stages,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            ttft_ms: self.ttft.map(|t| t.as_secs_f64() * 1000.0),
            attributes,
            input_chars: input.as_deref().map(char_count),
            output_chars: output_text.as_deref().map(char_count),
            input,
            output: output_text,
            scores: Vec::new(),
        };
        if config.capture_content {
            let verdicts = heuristic_scores(&record, &config.heuristics, self.received_ms);
            record.scores.extend(verdicts);
        } else {
            record.input = None;
            record.output = None;
        }
        let priced = if usage.is_some() {
            PricedRecord::new(record, &config.pricing)
        } else {
            // Usage unknown: unpriced (reported as such), never $0.
            PricedRecord {
                record,
                cost_nanos: None,
            }
        };
        if proxy.records.try_send(priced).is_err() {
            proxy.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A refusal by an enforced budget.
struct Refusal {
    message: String,
    retry_after_s: Option<i64>,
}

/// Exceeded budgets (index into `budgets`) with their period ends, and when that was checked.
type Exceeded = (Option<Instant>, Vec<(usize, i64)>);

/// The enforced budgets' states, refreshed in the background at most every second: the hot
/// path only reads them.
struct BudgetGate {
    budgets: Vec<Budget>,
    exceeded: RwLock<Exceeded>,
    refreshing: Arc<AtomicBool>,
}

impl BudgetGate {
    fn new(budgets: Vec<Budget>) -> Self {
        BudgetGate {
            budgets,
            exceeded: RwLock::new((None, Vec::new())),
            refreshing: Arc::new(AtomicBool::new(false)),
        }
    }

    fn refusal(&self, s: &AppState, call: &CallRecord, model: Option<&str>) -> Option<Refusal> {
        if self.budgets.is_empty() {
            return None;
        }
        let stale = self
            .exceeded
            .read()
            .map(|g| g.0.is_none_or(|t| t.elapsed() >= BUDGET_REFRESH))
            .unwrap_or(true);
        if stale && !self.refreshing.swap(true, Ordering::AcqRel) {
            let (state, proxy) = (s.clone(), Arc::clone(&call.proxy));
            tokio::spawn(async move { proxy.gate.refresh(&state).await });
        }
        let guard = self.exceeded.read().ok()?;
        let now_ms = (s.clock)();
        let matches = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == got)
        };
        guard.1.iter().find_map(|&(i, end_ms)| {
            let b = &self.budgets[i];
            let in_scope = matches(&b.scope.model, model)
                && matches(&b.scope.feature, call.labels.feature.as_deref())
                && matches(&b.scope.user, call.labels.user.as_deref());
            in_scope.then(|| Refusal {
                message: format!(
                    "llmwatch: budget {:?} (${} per {}) is exceeded; calls in its scope are \
                     refused until the period ends",
                    b.name,
                    b.limit_usd,
                    b.period.as_str()
                ),
                retry_after_s: Some(((end_ms - now_ms) / 1000).max(1)),
            })
        })
    }

    async fn refresh(&self, s: &AppState) {
        let now = (s.clock)();
        let tz = s.config.timezone;
        let result =
            budget_statuses(s.store.as_ref(), DEFAULT_PROJECT, &self.budgets, tz, now).await;
        match result {
            Ok(statuses) => {
                let exceeded = statuses
                    .iter()
                    .enumerate()
                    .filter(|(_, st)| st.state == BudgetState::Exceeded)
                    .map(|(i, _)| (i, period_range(self.budgets[i].period, now, tz).to_ms))
                    .collect();
                if let Ok(mut g) = self.exceeded.write() {
                    *g = (Some(Instant::now()), exceeded);
                }
            }
            Err(e) => tracing::warn!(error = %e, "proxy: budget states unavailable"),
        }
        self.refreshing.store(false, Ordering::Release);
    }
}
