//! Recording-proxy benchmark (issue 9): the latency the proxy adds to an OpenAI chat call, under
//! an open-loop load at a fixed rate, against the same upstream called directly in the same run.
//!
//! - Upstream stand-in, in this process (axum on 127.0.0.1): `POST /v1/chat/completions` answers
//!   a fixed chat completion with usage, or for `"stream": true` an SSE stream of 8 content chunks
//!   (+ the usage chunk when `stream_options.include_usage`) + `data: [DONE]`, written at once.
//! - The proxy: the llmwatch release binary (`LLMWATCH_BIN`, default `target/release/llmwatch`;
//!   not built by the bench) as a child process, `serve` with a `[proxy]` table pointing at the
//!   stand-in and otherwise the defaults (`durability = "full"`).
//! - Load: requests scheduled at a fixed rate by a timer thread whatever the completions (open
//!   loop), sent by a keep-alive pool in this process; each latency is measured from the request's
//!   scheduled send time (no coordinated omission) to the last byte of the answer.
//! - For each rate and mode (non-streaming, streaming), ROUNDS rounds alternating the targets
//!   (direct, proxy[, litellm]; the order flips every round), each run a 1 s warm-up then the
//!   measured seconds of the same schedule.
//!
//! `cargo bench --bench proxy`. Env: BENCH_SECONDS (5), BENCH_WARMUP (1), BENCH_ROUNDS (3),
//! BENCH_RATES ("1000,5000"), BENCH_MODES ("plain,stream"), BENCH_MAX_INFLIGHT (4096: beyond it a scheduled request waits,
//! its wait counted in its latency), LLMWATCH_BIN. BENCH_LITELLM=1 adds LiteLLM's proxy as a
//! third target (`LITELLM_BIN`, default `target/litellm-venv/bin/litellm`, see
//! `benches/litellm_proxy.sh`; BENCH_LITELLM_WORKERS). BENCH_DURABILITY=normal sets llmwatch's
//! durability (default: not set, i.e. "full"). BENCH_STANDIN_ONLY=PORT serves only the
//! stand-in on that port until killed.
//!
//! Everything shares the machine's cores: the load generator, the stand-in, the proxy (and
//! LiteLLM). The "direct" figures include the generator's and the stand-in's share.

mod common;

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use common::{env_u64, median};
use serde_json::{Value, json};

const MODEL: &str = "gpt-4o";
/// The API key clients send (the stand-in does not check it).
const UPSTREAM_KEY: &str = "sk-bench-not-a-real-key";
const PROMPT_TOKENS: u64 = 96;
const COMPLETION_TOKENS: u64 = 41;
/// A request that has not finished this long after its scheduled time counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The upstream stand-in.

/// Where each answer's id goes (every response gets its own, as OpenAI's do: the proxy keys its
/// records by the upstream id).
const ID_SLOT: &str = "@@ID@@";

/// A canned text cut at its id slots: filled per response.
struct Template(Vec<Bytes>);

impl Template {
    fn new(text: &str) -> Template {
        Template(
            text.split(&format!("\"{ID_SLOT}\""))
                .map(|p| Bytes::copy_from_slice(p.as_bytes()))
                .collect(),
        )
    }

    fn fill(&self, id: &str) -> Bytes {
        let mut out = Vec::with_capacity(self.0.iter().map(|p| p.len()).sum::<usize>() + 64);
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(format!("\"{id}\"").as_bytes());
            }
            out.extend_from_slice(part);
        }
        Bytes::from(out)
    }
}

fn completion_body() -> String {
    let v = json!({
        "id": ID_SLOT,
        "object": "chat.completion",
        "created": 1_764_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Your order #48213 shipped on Monday and should arrive by Thursday. \
                            You can follow it from the Orders page; the tracking link is in \
                            the confirmation e-mail.",
                "refusal": null,
                "annotations": []
            },
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}
        },
        "service_tier": "default",
        "system_fingerprint": "fp_bench01"
    });
    v.to_string()
}

/// The stream's events: a role chunk, 8 content chunks, the finish chunk, then (when asked) the
/// usage chunk, then `[DONE]`.
fn stream_events(include_usage: bool) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": ID_SLOT, "object": "chat.completion.chunk",
               "created": 1_764_000_000, "model": "gpt-4o-2024-08-06",
               "system_fingerprint": "fp_bench01",
               "choices": [{"index": 0, "delta": delta, "logprobs": null,
                            "finish_reason": finish}]})
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    )];
    for piece in [
        "Your order",
        " #48213",
        " shipped on",
        " Monday and",
        " should arrive",
        " by",
        " Thursday",
        ".",
    ] {
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        events.push(json!({"id": ID_SLOT, "object": "chat.completion.chunk",
            "created": 1_764_000_000, "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_bench01", "choices": [],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                      "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                      "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}}}));
    }
    let mut out: Vec<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    out.push("data: [DONE]\n\n".into());
    out
}

/// The events handed to hyper one by one, all ready at once (no delays).
struct Events(VecDeque<Bytes>);

impl futures_core::Stream for Events {
    type Item = Result<Bytes, std::convert::Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

#[derive(serde::Deserialize)]
struct ChatRequest {
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
}

#[derive(serde::Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

struct Canned {
    completion: Template,
    with_usage: Vec<Template>,
    without_usage: Vec<Template>,
    counter: AtomicU64,
}

async fn chat(canned: axum::extract::State<Arc<Canned>>, body: Bytes) -> Response {
    let req: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return Response::builder()
                .status(400)
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"error": {"type": "invalid_request_error", "message": e.to_string()}})
                        .to_string(),
                ))
                .unwrap();
        }
    };
    let n = canned.counter.fetch_add(1, Ordering::Relaxed);
    let id = format!("chatcmpl-bench{n:016x}");
    let builder = Response::builder().header("x-request-id", format!("req_bench{n:016x}"));
    if req.stream {
        let events = if req.stream_options.is_some_and(|o| o.include_usage) {
            &canned.with_usage
        } else {
            &canned.without_usage
        };
        builder
            .header("content-type", "text/event-stream; charset=utf-8")
            .body(Body::from_stream(Events(
                events.iter().map(|t| t.fill(&id)).collect(),
            )))
            .unwrap()
    } else {
        builder
            .header("content-type", "application/json")
            .body(Body::from(canned.completion.fill(&id)))
            .unwrap()
    }
}

fn standin() -> Router {
    let canned = Arc::new(Canned {
        completion: Template::new(&completion_body()),
        with_usage: stream_events(true)
            .iter()
            .map(|e| Template::new(e))
            .collect(),
        without_usage: stream_events(false)
            .iter()
            .map(|e| Template::new(e))
            .collect(),
        counter: AtomicU64::new(0),
    });
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(canned)
}

// ---------------------------------------------------------------------------------------------
// Child processes.

/// A child process killed (by its id) when dropped.
struct ChildGuard(Child, &'static str);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `url` until it answers 2xx (or panics with the child's log after `limit`).
async fn wait_ready(
    client: &reqwest::Client,
    url: &str,
    child: &mut ChildGuard,
    log: &PathBuf,
    limit: Duration,
) {
    let t = Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "{} exited ({status}) before answering {url}; its log:\n{}",
                child.1,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if t.elapsed() > limit {
            panic!(
                "{} did not answer {url} within {limit:?}; its log:\n{}",
                child.1,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `/proc/PID/status` field in KiB (VmRSS, VmHWM).
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets VmHWM to the current RSS (Linux: `echo 5 > /proc/PID/clear_refs`).
fn reset_hwm(pid: u32) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/clear_refs"))
        .and_then(|mut f| f.write_all(b"5"))
        .is_ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

// ---------------------------------------------------------------------------------------------
// The open-loop load generator.

struct Target {
    name: &'static str,
    url: String,
    /// The `authorization` header sent.
    auth: String,
    client: reqwest::Client,
    /// Requests sent to it in all runs (warm-ups included) and the 200s among them.
    sent: AtomicU64,
    ok: AtomicU64,
}

impl Target {
    fn new(name: &'static str, url: String, key: &str) -> Target {
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(60))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap();
        Target {
            name,
            url,
            auth: format!("Bearer {key}"),
            client,
            sent: AtomicU64::new(0),
            ok: AtomicU64::new(0),
        }
    }
}

/// The runs of one rate and mode, per target name.
type PerTarget = Vec<(&'static str, Vec<RunResult>)>;

struct RunResult {
    scheduled: usize,
    ok: usize,
    errors: usize,
    first_error: Option<String>,
    achieved_rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Scheduled time -> the task's start (timer thread + runtime queueing), P99.
    lag_p99_ms: f64,
    /// Requests of the whole run (warm-up included) and its wall time until the last answer.
    requests: u64,
    wall_s: f64,
    /// CPU time (user + system) during the run of each watched process (llmwatch[, litellm])
    /// and of this process (load generator + stand-in), ms.
    cpu_ms: Vec<f64>,
    self_cpu_ms: f64,
    /// Time after the run until the watched processes went idle (< 3% of a core), s.
    settle_s: f64,
}

/// One request's outcome: latency (us) from its scheduled time, lag (us), completion offset
/// from the run's start (us), error.
type Outcome = (u64, u64, u64, Option<String>);

async fn one(
    target: Arc<Target>,
    body: Bytes,
    stream: bool,
    at: Instant,
    start: Instant,
    inflight: Arc<tokio::sync::Semaphore>,
) -> Outcome {
    let _permit = inflight.acquire_owned().await.unwrap();
    let lag = at.elapsed().as_micros() as u64;
    target.sent.fetch_add(1, Ordering::Relaxed);
    let result = async {
        let resp = target
            .client
            .post(&target.url)
            .header("content-type", "application/json")
            .header("authorization", &target.auth)
            .header("x-llmwatch-feature", "bench")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "http {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ));
        }
        if stream && !bytes.ends_with(b"data: [DONE]\n\n") {
            return Err(format!("stream without [DONE] ({} bytes)", bytes.len()));
        }
        if !stream && !bytes.starts_with(b"{") {
            return Err("body is not JSON".into());
        }
        Ok(())
    }
    .await;
    if result.is_ok() {
        target.ok.fetch_add(1, Ordering::Relaxed);
    }
    let done = Instant::now();
    (
        (done - at).as_micros() as u64,
        lag,
        (done - start).as_micros() as u64,
        result.err(),
    )
}

fn request_body(stream: bool) -> Bytes {
    let mut v = json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are the support assistant of an online shop. \
                Answer in two sentences at most, and never invent order data."},
            {"role": "user", "content": "Hi! Where is my order #48213? I ordered it last \
                Friday and the page still says 'processing'."}
        ],
        "temperature": 0.2,
        "max_tokens": 256,
        "user": "user-1042"
    });
    if stream {
        v["stream"] = json!(true);
        v["stream_options"] = json!({"include_usage": true});
    }
    Bytes::from(v.to_string())
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

/// One run: `warmup + seconds` of requests at `rate`, scheduled by this (blocking) thread and
/// executed on the runtime; the first `warmup` seconds are not counted.
#[allow(clippy::too_many_arguments)]
fn run(
    rt: &tokio::runtime::Runtime,
    target: &Arc<Target>,
    rate: u64,
    stream: bool,
    warmup: f64,
    seconds: f64,
    max_inflight: usize,
    watch: &[u32],
) -> RunResult {
    let body = request_body(stream);
    let cpu0: Vec<f64> = watch.iter().map(|&p| cpu_ms(&p.to_string())).collect();
    let self0 = cpu_ms("self");
    let wall0 = Instant::now();
    let inflight = Arc::new(tokio::sync::Semaphore::new(max_inflight));
    let total = ((warmup + seconds) * rate as f64).round() as u64;
    let skip = (warmup * rate as f64).round() as u64;
    let start = Instant::now() + Duration::from_millis(5);
    let mut handles = Vec::with_capacity(total as usize);
    for i in 0..total {
        let at = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        handles.push(rt.spawn(one(
            Arc::clone(target),
            body.clone(),
            stream,
            at,
            start,
            Arc::clone(&inflight),
        )));
    }
    // Every request has its own timeout; the extra second covers the last ones' queueing.
    let outcomes: Vec<Option<Outcome>> = rt.block_on(async {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(5);
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            let abort = h.abort_handle();
            match tokio::time::timeout_at(deadline, h).await {
                Ok(Ok(o)) => out.push(Some(o)),
                Ok(Err(_)) => out.push(None),
                Err(_) => {
                    // Not left to run into the next run.
                    abort.abort();
                    out.push(None)
                }
            }
        }
        out
    });
    let wall_s = wall0.elapsed().as_secs_f64();
    let cpu: Vec<f64> = watch
        .iter()
        .zip(&cpu0)
        .map(|(&p, c0)| cpu_ms(&p.to_string()) - c0)
        .collect();
    let self_cpu_ms = cpu_ms("self") - self0;
    let settle_s = settle(watch);
    let measured = &outcomes[skip as usize..];
    let mut lat = Vec::with_capacity(measured.len());
    let mut lags = Vec::with_capacity(measured.len());
    let mut errors = 0;
    let mut first_error = None;
    let mut last_done = 0u64;
    for o in measured {
        match o {
            Some((l, lag, done, None)) => {
                lat.push(*l);
                lags.push(*lag);
                last_done = last_done.max(*done);
            }
            Some((_, lag, _, Some(e))) => {
                errors += 1;
                lags.push(*lag);
                first_error.get_or_insert_with(|| e.clone());
            }
            None => {
                errors += 1;
                first_error.get_or_insert_with(|| "unfinished after the deadline".into());
            }
        }
    }
    lat.sort_unstable();
    lags.sort_unstable();
    let window = (last_done as f64 / 1e6 - warmup).max(1e-9);
    RunResult {
        scheduled: measured.len(),
        ok: lat.len(),
        errors,
        first_error,
        achieved_rps: lat.len() as f64 / window,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().map_or(f64::NAN, |&m| m as f64 / 1000.0),
        lag_p99_ms: percentile(&lags, 0.99),
        requests: total,
        wall_s,
        cpu_ms: cpu,
        self_cpu_ms,
        settle_s,
    }
}

/// CPU time (user + system, all threads) of a process so far, ms (`/proc/PID/stat`, 100 Hz).
fn cpu_ms(pid: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name: state is the 3rd field, utime the 14th, stime the 15th.
    let rest = &s[s.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) * 10.0
}

/// Waits until every watched process uses less than 3% of a core over 200 ms (the proxy's
/// recorder has caught up), at most 30 s; returns the seconds waited.
fn settle(watch: &[u32]) -> f64 {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        let before: Vec<f64> = watch.iter().map(|&p| cpu_ms(&p.to_string())).collect();
        std::thread::sleep(Duration::from_millis(200));
        let busy = watch
            .iter()
            .zip(&before)
            .any(|(&p, b)| cpu_ms(&p.to_string()) - b > 6.0);
        if !busy {
            break;
        }
    }
    t.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn serve_standin(rt: &tokio::runtime::Runtime, port: u16) -> std::net::SocketAddr {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("stand-in: cannot bind 127.0.0.1:{port}: {e}"));
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, standin()).await.unwrap() });
        addr
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    if let Ok(port) = std::env::var("BENCH_STANDIN_ONLY") {
        let port: u16 = port.parse().expect("BENCH_STANDIN_ONLY=PORT");
        let addr = serve_standin(&rt, port);
        println!("stand-in listening on http://{addr}/v1/chat/completions (Ctrl-C to stop)");
        rt.block_on(std::future::pending::<()>());
    }

    let seconds = env_f64("BENCH_SECONDS", 5.0);
    let warmup = env_f64("BENCH_WARMUP", 1.0);
    let rounds = env_u64("BENCH_ROUNDS", 3) as usize;
    let max_inflight = env_u64("BENCH_MAX_INFLIGHT", 4096) as usize;
    let rates: Vec<u64> = std::env::var("BENCH_RATES")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .map(|r| {
            r.trim()
                .parse()
                .expect("BENCH_RATES: comma-separated integers")
        })
        .collect();
    let litellm = std::env::var("BENCH_LITELLM").is_ok_and(|v| v == "1");
    let modes: Vec<bool> = std::env::var("BENCH_MODES")
        .unwrap_or_else(|_| "plain,stream".into())
        .split(',')
        .map(|m| match m.trim() {
            "plain" => false,
            "stream" => true,
            other => panic!("BENCH_MODES: plain and/or stream, not {other:?}"),
        })
        .collect();

    let bin = PathBuf::from(
        std::env::var("LLMWATCH_BIN").unwrap_or_else(|_| "target/release/llmwatch".into()),
    );
    if !bin.is_file() {
        eprintln!(
            "llmwatch binary not found at {} (build it with `cargo build --release`, or set \
             LLMWATCH_BIN)",
            bin.display()
        );
        std::process::exit(2);
    }

    let standin_addr = serve_standin(&rt, 0);
    let standin_url = format!("http://{standin_addr}");
    let tmp = tempfile::tempdir().unwrap();

    // llmwatch with the proxy on, defaults otherwise.
    let port = free_port();
    let config_path = tmp.path().join("llmwatch.toml");
    // The defaults (durability "full") unless BENCH_DURABILITY says otherwise.
    let durability = std::env::var("BENCH_DURABILITY").ok();
    let mut config = String::new();
    if let Some(d) = &durability {
        config.push_str(&format!("durability = \"{d}\"\n"));
    }
    config.push_str(&format!(
        "[proxy]\nopenai_base_url = \"{standin_url}/v1\"\n"
    ));
    std::fs::write(&config_path, config).unwrap();
    let log_path = tmp.path().join("llmwatch.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut llmwatch = ChildGuard(
        Command::new(&bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--db")
            .arg(tmp.path().join("llmwatch.db"))
            .arg("--config")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display())),
        "llmwatch",
    );
    let llmwatch_pid = llmwatch.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let api = reqwest::Client::builder().no_proxy().build().unwrap();
    rt.block_on(wait_ready(
        &api,
        &format!("{base}/healthz"),
        &mut llmwatch,
        &log_path,
        Duration::from_secs(30),
    ));
    let health: Value = rt.block_on(async {
        api.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert!(
        health.get("proxy").is_some(),
        "llmwatch at {} has no proxy in /healthz: {health}",
        bin.display()
    );

    let mut targets = vec![
        Arc::new(Target::new(
            "direct",
            format!("{standin_url}/v1/chat/completions"),
            UPSTREAM_KEY,
        )),
        Arc::new(Target::new(
            "llmwatch",
            format!("{base}/proxy/openai/v1/chat/completions"),
            UPSTREAM_KEY,
        )),
    ];

    // LiteLLM's proxy, same stand-in.
    let mut litellm_child = None;
    let mut litellm_version = String::new();
    if litellm {
        let bin = std::env::var("LITELLM_BIN")
            .unwrap_or_else(|_| "target/litellm-venv/bin/litellm".into());
        if !std::path::Path::new(&bin).is_file() {
            eprintln!(
                "LiteLLM not found at {bin} (run benches/litellm_proxy.sh, or set LITELLM_BIN)"
            );
            std::process::exit(2);
        }
        let python = std::path::Path::new(&bin).with_file_name("python");
        litellm_version = Command::new(&python)
            .args([
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let lport = free_port();
        let lconfig = tmp.path().join("litellm.yaml");
        std::fs::write(
            &lconfig,
            format!(
                "model_list:\n  - model_name: {MODEL}\n    litellm_params:\n      model: openai/{MODEL}\n      api_base: {standin_url}/v1\n      api_key: {UPSTREAM_KEY}\n"
            ),
        )
        .unwrap();
        let workers = env_u64("BENCH_LITELLM_WORKERS", 1);
        // LiteLLM refuses to start without a master key; clients then present it.
        let master_key = std::env::var("LITELLM_MASTER_KEY").unwrap_or_else(|_| {
            let mut b = [0u8; 24];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
                .unwrap();
            format!(
                "sk-{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            )
        });
        let llog_path = tmp.path().join("litellm.log");
        let llog = std::fs::File::create(&llog_path).unwrap();
        let mut child = ChildGuard(
            Command::new(&bin)
                .arg("--config")
                .arg(&lconfig)
                .args(["--host", "127.0.0.1", "--port", &lport.to_string()])
                .args(["--num_workers", &workers.to_string()])
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env("LITELLM_MASTER_KEY", &master_key)
                .stdout(llog.try_clone().unwrap())
                .stderr(llog)
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {bin}: {e}")),
            "litellm",
        );
        rt.block_on(wait_ready(
            &api,
            &format!("http://127.0.0.1:{lport}/health/liveliness"),
            &mut child,
            &llog_path,
            Duration::from_secs(120),
        ));
        eprintln!("litellm {litellm_version} ready on port {lport} ({workers} worker(s))");
        targets.push(Arc::new(Target::new(
            "litellm",
            format!("http://127.0.0.1:{lport}/v1/chat/completions"),
            &master_key,
        )));
        litellm_child = Some(child);
    }

    // Samples the proxies' RSS while the runs go (max per rate).
    let sampling = Arc::new(AtomicBool::new(true));
    let rss_max = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (sampling, rss_max) = (Arc::clone(&sampling), Arc::clone(&rss_max));
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some(k) = proc_kib(llmwatch_pid, "VmRSS") {
                    rss_max.fetch_max(k, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let litellm_pid = litellm_child.as_ref().map(|c: &ChildGuard| c.0.id());
    let watch: Vec<u32> = std::iter::once(llmwatch_pid).chain(litellm_pid).collect();
    let rss_start = proc_kib(llmwatch_pid, "VmRSS");
    eprintln!(
        "stand-in {standin_url}, llmwatch {} (pid {llmwatch_pid}, durability {}), \
         {rounds} rounds x {warmup}+{seconds} s per run, rates {rates:?}, max in flight \
         {max_inflight}",
        bin.display(),
        durability.as_deref().unwrap_or("full: the default"),
    );

    // (rate, stream) -> per target name -> runs
    let mut results: Vec<(u64, bool, PerTarget)> = Vec::new();
    let mut memory = Vec::new(); // (rate, idle rss before, hwm after, sampled max)
    for &rate in &rates {
        for &stream in &modes {
            // Memory per rate and mode: RSS at rest before, peak (VmHWM reset here) during.
            std::thread::sleep(Duration::from_secs(1));
            let idle = proc_kib(llmwatch_pid, "VmRSS");
            let lidle = litellm_pid.and_then(|p| proc_kib(p, "VmRSS"));
            let reset = reset_hwm(llmwatch_pid);
            if let Some(p) = litellm_pid {
                reset_hwm(p);
            }
            rss_max.store(0, Ordering::Relaxed);
            let mut per: PerTarget = targets.iter().map(|t| (t.name, Vec::new())).collect();
            for round in 0..rounds {
                let order: Vec<usize> = if round % 2 == 0 {
                    (0..targets.len()).collect()
                } else {
                    (0..targets.len()).rev().collect()
                };
                for i in order {
                    let r = run(
                        &rt,
                        &targets[i],
                        rate,
                        stream,
                        warmup,
                        seconds,
                        max_inflight,
                        &watch,
                    );
                    eprintln!(
                        "{rate:>5}/s {:<13} round {} {:<8}: p50 {:7.3} ms  p99 {:8.3} ms  max \
                         {:8.3} ms  ok {} err {} ({:.0}/s, lag p99 {:.3} ms, cpu {}, bench {:.0}%, \
                         settle {:.1} s){}",
                        if stream { "streaming" } else { "non-streaming" },
                        round + 1,
                        targets[i].name,
                        r.p50_ms,
                        r.p99_ms,
                        r.max_ms,
                        r.ok,
                        r.errors,
                        r.achieved_rps,
                        r.lag_p99_ms,
                        r.cpu_ms
                            .iter()
                            .map(|c| format!("{:.0}%", c / 10.0 / r.wall_s))
                            .collect::<Vec<_>>()
                            .join("/"),
                        r.self_cpu_ms / 10.0 / r.wall_s,
                        r.settle_s,
                        r.first_error
                            .as_deref()
                            .map(|e| format!("  first error: {e}"))
                            .unwrap_or_default()
                    );
                    per[i].1.push(r);
                }
            }
            results.push((rate, stream, per));
            let hwm = proc_kib(llmwatch_pid, "VmHWM");
            let lhwm = litellm_pid.and_then(|p| proc_kib(p, "VmHWM"));
            memory.push((
                rate,
                stream,
                idle,
                hwm,
                rss_max.load(Ordering::Relaxed),
                reset,
                lidle,
                lhwm,
            ));
        }
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();

    // The records: every call that reached the proxy, once the recorder has caught up.
    let proxy = &targets[1];
    let sent = proxy.sent.load(Ordering::Relaxed);
    let answered = proxy.ok.load(Ordering::Relaxed);
    let t = Instant::now();
    let (ops, health) = rt.block_on(async {
        let mut last = (-1i64, Instant::now());
        loop {
            let ops: Value = api
                .get(format!(
                    "{base}/api/v1/operations?from=0&to=4102444800000&feature=bench"
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let n = ops["requests"].as_i64().unwrap_or(-1);
            if n >= sent as i64 || (n == last.0 && last.1.elapsed() > Duration::from_secs(3)) {
                let health: Value = api
                    .get(format!("{base}/healthz"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                return (ops, health);
            }
            if n != last.0 {
                last = (n, Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let recorded = ops["requests"].as_i64().unwrap_or(-1);
    let dropped = health["proxy"]["records_dropped"]
        .as_u64()
        .unwrap_or(u64::MAX);
    let final_rss = proc_kib(llmwatch_pid, "VmRSS");

    // ---- Tables.
    let mode = |s: bool| if s { "streaming" } else { "non-streaming" };
    let med = |runs: &[RunResult], f: fn(&RunResult) -> f64| median(runs.iter().map(f).collect());
    println!();
    println!(
        "Median over {rounds} alternating rounds of {seconds} s (after {warmup} s warm-up) per \
         target; latency from the scheduled send time to the last byte, ms. Added = proxy minus \
         direct."
    );
    println!();
    let others: Vec<&str> = targets.iter().skip(1).map(|t| t.name).collect();
    for (k, other) in others.iter().enumerate() {
        println!(
            "| rate | mode | direct P50 | {other} P50 | added P50 | direct P99 | {other} P99 | added P99 | errors (direct / {other}) | {other} CPU per request |"
        );
        println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (rate, stream, per) in &results {
            let direct = &per[0].1;
            let proxied = &per.iter().find(|(n, _)| n == other).unwrap().1;
            let (d50, p50) = (med(direct, |r| r.p50_ms), med(proxied, |r| r.p50_ms));
            let (d99, p99) = (med(direct, |r| r.p99_ms), med(proxied, |r| r.p99_ms));
            let derr: usize = direct.iter().map(|r| r.errors).sum();
            let perr: usize = proxied.iter().map(|r| r.errors).sum();
            let n: usize = direct.iter().map(|r| r.scheduled).sum();
            let cpu_us = median(
                proxied
                    .iter()
                    .map(|r| r.cpu_ms[k] * 1000.0 / r.requests as f64)
                    .collect(),
            );
            println!(
                "| {rate} req/s | {} | {d50:.3} | {p50:.3} | **{:+.3}** | {d99:.3} | {p99:.3} | **{:+.3}** | {derr} / {perr} of {n} | {cpu_us:.0} us |",
                mode(*stream),
                p50 - d50,
                p99 - d99
            );
        }
        println!();
    }

    println!(
        "Every run (ms; lag = scheduled time to the request's start in the generator, P99; CPU \
         in % of one core over the run, warm-up and drain included; settle = time after the run \
         until the proxies were idle):"
    );
    println!();
    println!(
        "| rate | mode | round | target | scheduled | ok | errors | achieved req/s | P50 | P99 | max | lag P99 | CPU {} | CPU bench | settle |",
        others.join(" / ")
    );
    println!("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (rate, stream, per) in &results {
        for round in 0..rounds {
            for (name, runs) in per {
                let r = &runs[round];
                println!(
                    "| {rate} | {} | {} | {name} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.0}% | {:.1} s |",
                    mode(*stream),
                    round + 1,
                    r.scheduled,
                    r.ok,
                    r.errors,
                    r.achieved_rps,
                    r.p50_ms,
                    r.p99_ms,
                    r.max_ms,
                    r.lag_p99_ms,
                    r.cpu_ms
                        .iter()
                        .map(|c| format!("{:.0}%", c / 10.0 / r.wall_s))
                        .collect::<Vec<_>>()
                        .join(" / "),
                    r.self_cpu_ms / 10.0 / r.wall_s,
                    r.settle_s
                );
            }
        }
    }
    for (_, _, per) in &results {
        for (name, runs) in per {
            if let Some(e) = runs.iter().find_map(|r| r.first_error.as_deref()) {
                println!("\nfirst error of a {name} run: {e}");
            }
        }
    }

    println!();
    println!(
        "Memory (VmHWM reset before each rate and mode; \"sampled\" = VmRSS polled every 100 ms). \
         llmwatch VmRSS after start: {}; at the end: {}.",
        mib(rss_start),
        mib(final_rss)
    );
    println!();
    if litellm {
        println!(
            "| rate | mode | llmwatch VmRSS before | llmwatch peak (VmHWM) | sampled max | litellm VmRSS before | litellm peak (VmHWM) |"
        );
        println!("|---:|---|---:|---:|---:|---:|---:|");
    } else {
        println!("| rate | mode | llmwatch VmRSS before | llmwatch peak (VmHWM) | sampled max |");
        println!("|---:|---|---:|---:|---:|");
    }
    for (rate, stream, idle, hwm, sampled, reset, lidle, lhwm) in &memory {
        let peak = if *reset {
            mib(*hwm)
        } else {
            format!("{} (since start)", mib(*hwm))
        };
        let mut row = format!(
            "| {rate} req/s | {} | {} | {peak} | {} |",
            mode(*stream),
            mib(*idle),
            mib(Some(*sampled))
        );
        if litellm {
            row.push_str(&format!(" {} | {} |", mib(*lidle), mib(*lhwm)));
        }
        println!("{row}");
    }

    println!();
    println!("| records (llmwatch proxy) | |");
    println!("|---|---:|");
    println!("| requests sent to the proxy (warm-ups included) | {sent} |");
    println!("| answered 200 with a complete body | {answered} |");
    println!(
        "| recorded (`/api/v1/operations?feature=bench`, after {:.1} s) | {recorded} |",
        t.elapsed().as_secs_f64()
    );
    println!("| recorded as errors | {} |", ops["errors"]);
    println!("| errors by type | {} |", ops["errors_by_type"]);
    println!(
        "| input tokens recorded (expected {} x {PROMPT_TOKENS} = {}) | {} |",
        answered,
        answered * PROMPT_TOKENS,
        ops["input_tokens"]
    );
    println!("| unpriced requests | {} |", ops["unpriced_requests"]);
    println!("| records_dropped (/healthz) | {dropped} |");
    if litellm {
        println!(
            "\nLiteLLM: {litellm_version} (`litellm --config ... --num_workers {}`)",
            env_u64("BENCH_LITELLM_WORKERS", 1)
        );
    }
    drop(litellm_child);
    drop(llmwatch);
}
