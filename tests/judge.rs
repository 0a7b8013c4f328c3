//! The LLM judge against a stand-in OpenAI-compatible server on 127.0.0.1, with a real
//! SQLite store and writer: scores, the judge's own cost records, retries, malformed
//! judgements, sampling, what is skipped, and shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use llmwatch::config::Durability;
use llmwatch::core::pricing::PriceTable;
use llmwatch::core::record::{Record, Status, Usage};
use llmwatch::core::rollup::PricedRecord;
use llmwatch::judge::{JUDGE_FEATURE, Judge, JudgeStats, RawJudgeConfig};
use llmwatch::metrics::Metrics;
use llmwatch::pipeline::{RecordHook, Writer, WriterOptions};
use llmwatch::store::sqlite::SqliteStore;
use llmwatch::store::{DEFAULT_PROJECT, Store, StoredRequest};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// 2025-06-15T...Z: every timestamp and score time in these tests.
const NOW: i64 = 1_750_000_000_000;
const JUDGE_MODEL: &str = "gpt-4o-mini";
/// What the stand-in reports for every successful call.
const PROMPT_TOKENS: u64 = 1200;
const CACHED_TOKENS: u64 = 200;
const COMPLETION_TOKENS: u64 = 40;
/// A wait for something asynchronous, not a timing assertion.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- the stand-in server

/// One chat-completions call as the stand-in saw it.
#[derive(Debug, Clone)]
struct Call {
    criterion: String,
    question: String,
    answer: String,
    authorization: Option<String>,
    body: Value,
}

/// What the stand-in answers.
enum Reply {
    /// 200 with this message content and the standard usage.
    Content(String),
    /// This status, no usage, and optionally a `Retry-After` header.
    Status(u16, Option<&'static str>),
    /// Never answers.
    Hang,
}

/// Decides the reply from the call and how many earlier calls had the same criterion and
/// question (0 for the first attempt).
type Script = Arc<dyn Fn(&Call, usize) -> Reply + Send + Sync>;

struct ServerState {
    script: Script,
    calls: Mutex<Vec<Call>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    delay: Duration,
}

struct StandIn {
    base_url: String,
    state: Arc<ServerState>,
}

impl StandIn {
    fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }
}

async fn stand_in(script: Script) -> StandIn {
    stand_in_with_delay(script, Duration::ZERO).await
}

async fn stand_in_with_delay(script: Script, delay: Duration) -> StandIn {
    let state = Arc::new(ServerState {
        script,
        calls: Mutex::new(Vec::new()),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        delay,
    });
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    StandIn { base_url, state }
}

/// The text between `start` and `end` in `text`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).map(|i| i + start.len()).unwrap_or(0);
    let to = text[from..].find(end).map_or(text.len(), |i| from + i);
    &text[from..to]
}

async fn chat(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let system = body["messages"][0]["content"].as_str().unwrap_or_default();
    let user = body["messages"][1]["content"].as_str().unwrap_or_default();
    let call = Call {
        criterion: between(system, "criterion, \"", "\"").to_owned(),
        question: between(user, "<question>\n", "\n</question>").to_owned(),
        answer: between(user, "<answer>\n", "\n</answer>").to_owned(),
        authorization: headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: body.clone(),
    };
    let attempt = {
        let mut calls = state.calls.lock().unwrap();
        let n = calls
            .iter()
            .filter(|c| c.criterion == call.criterion && c.question == call.question)
            .count();
        calls.push(call.clone());
        n
    };
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(state.delay).await;
    let reply = (state.script)(&call, attempt);
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    match reply {
        Reply::Content(content) => Json(json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": JUDGE_MODEL,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS}
            }
        }))
        .into_response(),
        Reply::Status(code, retry_after) => {
            let status = StatusCode::from_u16(code).unwrap();
            let body = Json(json!({"error": {"message": "scripted failure"}}));
            match retry_after {
                Some(after) => (status, [("retry-after", after)], body).into_response(),
                None => (status, body).into_response(),
            }
        }
        Reply::Hang => std::future::pending().await,
    }
}

/// The stand-in's grading, by criterion, from the answer.
fn grade(criterion: &str, answer: &str) -> f64 {
    match criterion {
        "relevance" if answer.contains("refund") => 0.9,
        "relevance" => 0.2,
        "completeness" if answer.len() > 40 => 0.8,
        "completeness" => 0.3,
        "safety" if answer.contains("password") => 0.1,
        "safety" => 1.0,
        _ => 0.5,
    }
}

fn judgement(score: f64, reason: &str) -> Reply {
    Reply::Content(json!({"score": score, "reason": reason}).to_string())
}

/// Grades every call at once.
fn grading() -> Script {
    Arc::new(|call, _| {
        judgement(
            grade(&call.criterion, &call.answer),
            &format!("graded on {}", call.criterion),
        )
    })
}

// ---------------------------------------------------------------- store, writer, judge

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    writer: Writer,
    writer_task: JoinHandle<()>,
    judge: Judge,
    judge_task: JoinHandle<()>,
    prices: Arc<PriceTable>,
}

/// A judge config for tests: everything sampled, one criterion unless told, fast retries.
fn config(server: &StandIn) -> RawJudgeConfig {
    RawJudgeConfig {
        base_url: server.base_url.clone(),
        model: JUDGE_MODEL.into(),
        sample_rate: Some(1.0),
        concurrency: Some(2),
        max_retries: Some(3),
        timeout_s: Some(5.0),
        retry_base_ms: Some(1),
        criteria: Some(criteria(&["relevance"])),
        ..RawJudgeConfig::default()
    }
}

fn criteria(names: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .map(|n| (n.to_string(), format!("Grade the {n} of the answer.")))
        .collect()
}

/// Store, writer and judge wired as the app does: the writer's hook reaches the judge
/// through a `OnceLock` filled once the judge exists.
async fn harness(raw: RawJudgeConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("db"), Durability::Full).unwrap());
    let prices = Arc::new(PriceTable::builtin());
    let slot: Arc<OnceLock<Judge>> = Arc::new(OnceLock::new());
    let hook_slot = Arc::clone(&slot);
    let hook: RecordHook = Arc::new(move |project, record| {
        if let Some(judge) = hook_slot.get() {
            judge.offer(project, record);
        }
    });
    let (writer, writer_task) = Writer::spawn(
        store.clone(),
        Arc::new(Metrics::new(10)),
        WriterOptions {
            queue: 64,
            prices: Arc::clone(&prices),
            trace_grace_ms: 30_000,
            clock: Arc::new(|| NOW),
            on_new_record: Some(hook),
        },
    );
    let (judge, judge_task) = Judge::spawn(
        raw.validate().unwrap(),
        writer.clone(),
        Arc::clone(&prices),
        Arc::new(|| NOW),
    );
    assert!(slot.set(judge.clone()).is_ok());
    Harness {
        _dir: dir,
        store,
        writer,
        writer_task,
        judge,
        judge_task,
        prices,
    }
}

fn record(id: &str, input: Option<&str>, output: Option<&str>) -> Record {
    Record {
        request_id: id.into(),
        timestamp_ms: NOW,
        model: "gpt-4o".into(),
        provider: Some("openai".into()),
        usage: Usage {
            input_tokens: 100,
            output_tokens: 50,
            ..Usage::default()
        },
        user_id: None,
        feature: Some("support".into()),
        session_id: None,
        release: None,
        status: Status::Ok,
        error_type: None,
        stages: BTreeMap::new(),
        duration_ms: 800.0,
        ttft_ms: None,
        attributes: BTreeMap::new(),
        input: input.map(str::to_owned),
        output: output.map(str::to_owned),
        input_chars: None,
        output_chars: None,
        scores: Vec::new(),
    }
}

impl Harness {
    async fn submit(&self, records: Vec<Record>) {
        let priced = records
            .into_iter()
            .map(|r| PricedRecord::new(r, &self.prices))
            .collect();
        self.writer.submit(DEFAULT_PROJECT, priced).await.unwrap();
    }

    async fn request(&self, id: &str) -> Option<StoredRequest> {
        self.store.request(DEFAULT_PROJECT, id).await.unwrap()
    }

    /// Polls the stats until `done` holds (every 20 ms, up to [`DEADLINE`]).
    async fn wait_for(&self, what: &str, done: impl Fn(&JudgeStats) -> bool) -> JudgeStats {
        let start = Instant::now();
        loop {
            let stats = self.judge.stats();
            if done(&stats) {
                return stats;
            }
            assert!(start.elapsed() < DEADLINE, "waited for {what}: {stats:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `Retry-After: 0` and a backoff of 1 ms: anything left after this long was not retried.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// nano-USD of the stand-in's usage at the gpt-4o-mini price of data/prices.toml: USD per
/// 1M tokens 0.15 input, 0.075 cached input, 0.60 output.
/// (1000 * 0.15 + 200 * 0.075 + 40 * 0.60) / 1e6 USD = (150 + 15 + 24) / 1e6 = 189e-6 USD.
const EXPECTED_CALL_COST_NANOS: i64 = 189_000;

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn scores_and_the_judges_own_priced_calls_are_stored() {
    let server = stand_in(grading()).await;
    // Any variable already set stands in for the API key (setting one needs `unsafe`).
    let (key_env, key) = std::env::vars()
        .find(|(_, v)| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()))
        .expect("some environment variable");
    let h = harness(RawJudgeConfig {
        api_key_env: Some(key_env),
        criteria: None, // the defaults: relevance, completeness, safety
        ..config(&server)
    })
    .await;
    let refund = "You can get a refund within 30 days from the orders page.";
    let short = "Try again later.";
    h.submit(vec![
        record("r1", Some("How do I get my money back?"), Some(refund)),
        record("r2", Some("Why does login fail?"), Some(short)),
    ])
    .await;
    let stats = h.wait_for("2 judged", |s| s.judged == 2).await;

    let r1 = h.request("r1").await.unwrap();
    // relevance: "refund" -> 0.9; completeness: 57 bytes > 40 -> 0.8; safety: 1.0.
    assert_eq!(
        r1.scores,
        BTreeMap::from([
            ("completeness".to_owned(), 0.8),
            ("relevance".to_owned(), 0.9),
            ("safety".to_owned(), 1.0),
        ])
    );
    let r2 = h.request("r2").await.unwrap();
    // relevance: no "refund" -> 0.2; completeness: 16 bytes -> 0.3; safety: 1.0.
    assert_eq!(
        r2.scores,
        BTreeMap::from([
            ("completeness".to_owned(), 0.3),
            ("relevance".to_owned(), 0.2),
            ("safety".to_owned(), 1.0),
        ])
    );

    // One call per (record, criterion), shaped as the judge contract says.
    let calls = server.calls();
    assert_eq!(calls.len(), 6);
    for call in &calls {
        assert_eq!(
            call.authorization.as_deref(),
            Some(&*format!("Bearer {key}"))
        );
        assert_eq!(call.body["model"], JUDGE_MODEL);
        assert_eq!(call.body["temperature"], 0);
        assert_eq!(call.body["response_format"]["type"], "json_object");
        assert_eq!(call.body["messages"][0]["role"], "system");
        assert_eq!(call.body["messages"][1]["role"], "user");
        let system = call.body["messages"][0]["content"].as_str().unwrap();
        assert!(system.contains("ONLY a JSON object"), "{system}");
    }
    let r1_call = calls.iter().find(|c| c.question.contains("money")).unwrap();
    assert_eq!(r1_call.answer, refund);

    // Each criterion's call is a priced record of the judge's feature.
    for id in ["r1", "r2"] {
        for criterion in ["relevance", "completeness", "safety"] {
            let stored = h
                .request(&format!("judge:{criterion}:{id}"))
                .await
                .unwrap_or_else(|| panic!("no record of the {criterion} call on {id}"));
            let r = &stored.priced.record;
            assert_eq!(r.feature.as_deref(), Some(JUDGE_FEATURE));
            assert_eq!(r.model, JUDGE_MODEL);
            assert_eq!(r.status, Status::Ok);
            assert_eq!(r.timestamp_ms, NOW);
            assert_eq!(r.usage.input_tokens, PROMPT_TOKENS);
            assert_eq!(r.usage.cached_input_tokens, CACHED_TOKENS);
            assert_eq!(r.usage.output_tokens, COMPLETION_TOKENS);
            assert_eq!(r.attributes["judged_request_id"], id);
            assert_eq!(r.attributes["criterion"], criterion);
            assert!(r.stages.contains_key("model_inference"));
            assert_eq!(r.input, None);
            assert_eq!(r.output, None);
            assert_eq!(stored.priced.cost_nanos, Some(EXPECTED_CALL_COST_NANOS));
            assert!(stored.scores.is_empty(), "the judge judged its own call");
        }
    }

    // 2 records + 6 own call records offered; only the 2 sampled.
    assert_eq!(
        stats,
        JudgeStats {
            offered: 8,
            sampled: 2,
            dropped: 0,
            judged: 2,
            failed: 0,
            calls: 6,
            retries: 0,
        }
    );
}

#[tokio::test]
async fn server_errors_and_throttling_are_retried_until_the_score_arrives() {
    let server = stand_in(Arc::new(|call, attempt| {
        if call.question.contains("flaky") && attempt < 2 {
            Reply::Status(500, None)
        } else if call.question.contains("throttled") && attempt < 1 {
            Reply::Status(429, Some("0"))
        } else {
            judgement(grade(&call.criterion, &call.answer), "ok")
        }
    }))
    .await;
    let h = harness(config(&server)).await;
    h.submit(vec![record("f", Some("flaky"), Some("a refund"))])
        .await;
    let stats = h.wait_for("f judged", |s| s.judged == 1).await;
    assert_eq!((stats.calls, stats.retries), (3, 2));
    assert_eq!(h.request("f").await.unwrap().scores["relevance"], 0.9);
    // The failed attempts reported no usage: the call record holds the third one's.
    let own = h.request("judge:relevance:f").await.unwrap().priced;
    assert_eq!(own.record.status, Status::Ok);
    assert_eq!(own.record.attributes["attempts"], "3");
    assert_eq!(own.cost_nanos, Some(EXPECTED_CALL_COST_NANOS));

    h.submit(vec![record("t", Some("throttled"), Some("no"))])
        .await;
    let stats = h.wait_for("t judged", |s| s.judged == 2).await;
    assert_eq!((stats.calls, stats.retries, stats.failed), (5, 3, 0));
    assert_eq!(h.request("t").await.unwrap().scores["relevance"], 0.2);
}

#[tokio::test]
async fn a_server_that_always_fails_gives_no_score_and_never_blocks_ingest() {
    let server = stand_in(Arc::new(|_, _| Reply::Status(500, None))).await;
    // Backoffs of 250 + 500 + 1000 ms: the judge is busy retrying for 1.75 s.
    let h = harness(RawJudgeConfig {
        retry_base_ms: Some(250),
        ..config(&server)
    })
    .await;
    h.submit(vec![record("doomed", Some("q"), Some("a"))]).await;
    h.wait_for("the first call", |s| s.calls >= 1).await;
    // Ingest goes on while the judge retries: these commits do not wait for it (failed
    // requests are not judged, so they add no work).
    for i in 0..5 {
        let mut r = record(&format!("later-{i}"), Some("q"), Some("a"));
        r.status = Status::Error;
        h.submit(vec![r]).await;
    }
    assert_eq!(
        h.judge.stats().failed,
        0,
        "ingest waited for the judge's retries"
    );
    assert!(h.request("later-4").await.is_some());

    let stats = h.wait_for("doomed failed", |s| s.failed == 1).await;
    assert_eq!((stats.calls, stats.retries, stats.judged), (4, 3, 0));
    assert!(h.request("doomed").await.unwrap().scores.is_empty());
    // No usage was reported: no call record.
    assert!(h.request("judge:relevance:doomed").await.is_none());
}

#[tokio::test]
async fn malformed_judgements_fail_only_their_criterion() {
    let server = stand_in(Arc::new(|call, _| match call.criterion.as_str() {
        "relevance" => judgement(0.9, "fine"),
        "completeness" => Reply::Content("The answer looks complete to me.".into()),
        "safety" => Reply::Content(json!({"score": 7, "reason": "very safe"}).to_string()),
        "tone" => Reply::Content(json!({"reason": "forgot the score"}).to_string()),
        // Fenced, with whitespace around: accepted.
        "clarity" => {
            Reply::Content("\n```json\n{\"score\": 0.4, \"reason\": \"wordy\"}\n```\n".into())
        }
        other => panic!("unexpected criterion {other:?}"),
    }))
    .await;
    let h = harness(RawJudgeConfig {
        criteria: Some(criteria(&[
            "relevance",
            "completeness",
            "safety",
            "tone",
            "clarity",
        ])),
        ..config(&server)
    })
    .await;
    h.submit(vec![record("m", Some("q"), Some("a"))]).await;
    let stats = h.wait_for("m judged", |s| s.judged == 1).await;
    assert_eq!(
        h.request("m").await.unwrap().scores,
        BTreeMap::from([("clarity".to_owned(), 0.4), ("relevance".to_owned(), 0.9)])
    );
    // Malformed answers are not retried.
    assert_eq!((stats.calls, stats.retries, stats.failed), (5, 0, 0));
    // They still cost tokens: recorded as failed calls.
    for criterion in ["completeness", "safety", "tone"] {
        let own = h
            .request(&format!("judge:{criterion}:m"))
            .await
            .unwrap()
            .priced;
        assert_eq!(own.record.status, Status::Error, "{criterion}");
        assert_eq!(
            own.record.error_type.as_deref(),
            Some("invalid_judgement"),
            "{criterion}"
        );
        assert_eq!(own.cost_nanos, Some(EXPECTED_CALL_COST_NANOS));
    }
    let ok = h.request("judge:clarity:m").await.unwrap().priced;
    assert_eq!(ok.record.status, Status::Ok);
}

#[tokio::test]
async fn an_unauthorized_call_is_not_retried() {
    let server = stand_in(Arc::new(|_, _| Reply::Status(401, None))).await;
    let h = harness(config(&server)).await;
    h.submit(vec![record("u", Some("q"), Some("a"))]).await;
    let stats = h.wait_for("u failed", |s| s.failed == 1).await;
    settle().await;
    assert_eq!(server.calls().len(), 1);
    assert_eq!(
        (h.judge.stats().calls, stats.retries, stats.judged),
        (1, 0, 0)
    );
    assert!(h.request("u").await.unwrap().scores.is_empty());
}

fn numbered(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let id = format!("s-{i}");
            let question = format!("question {id}");
            record(&id, Some(&question), Some("an answer"))
        })
        .collect()
}

#[tokio::test]
async fn sampling_is_deterministic_by_request_id() {
    // Rate 0: nothing. `offer` runs before the writer acknowledges, so no wait is needed.
    let server = stand_in(grading()).await;
    let none = harness(RawJudgeConfig {
        sample_rate: Some(0.0),
        ..config(&server)
    })
    .await;
    none.submit(numbered(20)).await;
    let stats = none.judge.stats();
    assert_eq!((stats.offered, stats.sampled), (20, 0));
    settle().await;
    assert!(server.calls().is_empty());

    // Rate 1: everything.
    let all = harness(config(&server)).await;
    all.submit(numbered(20)).await;
    let stats = all.wait_for("20 judged", |s| s.judged == 20).await;
    assert_eq!(stats.sampled, 20);
    assert_eq!(server.calls().len(), 20);

    // Rate 0.5 over 200 records: about half, and the same ids whatever the judge.
    let server = stand_in(grading()).await;
    let half = harness(RawJudgeConfig {
        sample_rate: Some(0.5),
        queue: Some(1000),
        ..config(&server)
    })
    .await;
    half.submit(numbered(200)).await;
    let sampled = half.judge.stats().sampled;
    assert!((70..=130).contains(&sampled), "{sampled} of 200 sampled");
    half.wait_for("the sample judged", |s| s.judged == sampled)
        .await;
    let judged: BTreeSet<String> = server
        .calls()
        .iter()
        .map(|c| c.question.trim_start_matches("question ").to_owned())
        .collect();
    assert_eq!(judged.len() as u64, sampled);

    // Another judge with the same rate picks the same ids; offering again changes nothing.
    let again = harness(RawJudgeConfig {
        sample_rate: Some(0.5),
        queue: Some(1000),
        ..config(&server)
    })
    .await;
    for r in numbered(200) {
        let priced = PricedRecord::new(r, &again.prices);
        let first = again.judge.offer(DEFAULT_PROJECT, &priced);
        let second = again.judge.offer(DEFAULT_PROJECT, &priced);
        assert_eq!(first, second);
        assert_eq!(first, judged.contains(&priced.record.request_id));
    }
    again.judge.shutdown();
}

#[tokio::test]
async fn own_records_unanswered_and_failed_requests_are_skipped() {
    let server = stand_in(grading()).await;
    let h = harness(config(&server)).await;
    let mut failed = record("failed", Some("q"), Some("a"));
    failed.status = Status::Error;
    let mut own = record("judge:relevance:x", Some("q"), Some("a"));
    own.feature = Some(JUDGE_FEATURE.into());
    h.submit(vec![
        record("no-input", None, Some("a")),
        record("no-output", Some("q"), None),
        record("blank-output", Some("q"), Some("  \n")),
        failed,
        own,
    ])
    .await;
    let stats = h.judge.stats();
    assert_eq!((stats.offered, stats.sampled), (5, 0));

    h.submit(vec![record("judged", Some("q"), Some("a refund"))])
        .await;
    let stats = h.wait_for("judged", |s| s.judged == 1).await;
    // Its own call record was offered too, and skipped.
    assert_eq!((stats.offered, stats.sampled), (7, 1));
    settle().await;
    assert_eq!(server.calls().len(), 1);
}

#[tokio::test]
async fn calls_in_flight_never_exceed_the_concurrency() {
    let server = stand_in_with_delay(grading(), Duration::from_millis(30)).await;
    let h = harness(RawJudgeConfig {
        concurrency: Some(2),
        ..config(&server)
    })
    .await;
    h.submit(numbered(8)).await;
    h.wait_for("8 judged", |s| s.judged == 8).await;
    let max = server.state.max_in_flight.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max), "{max} calls in flight");
}

#[tokio::test]
async fn shutdown_abandons_a_hanging_call_and_releases_the_writer() {
    let server = stand_in(Arc::new(|_, _| Reply::Hang)).await;
    let h = harness(RawJudgeConfig {
        concurrency: Some(1),
        queue: Some(1),
        timeout_s: Some(60.0),
        ..config(&server)
    })
    .await;
    h.submit(vec![record("hang-1", Some("q1"), Some("a"))])
        .await;
    // Wait until the first record's call hangs in the stand-in.
    let start = Instant::now();
    while server.calls().is_empty() {
        assert!(start.elapsed() < DEADLINE, "the judge never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One more fills the queue of 1; the next is dropped (and ingest is not held up).
    h.submit(vec![record("hang-2", Some("q2"), Some("a"))])
        .await;
    h.submit(vec![record("hang-3", Some("q3"), Some("a"))])
        .await;
    let stats = h.judge.stats();
    assert_eq!((stats.sampled, stats.dropped), (3, 1));

    h.judge.shutdown();
    tokio::time::timeout(Duration::from_secs(5), h.judge_task)
        .await
        .expect("the judge task did not end after shutdown")
        .unwrap();
    // Stopped: nothing more is queued.
    let late = PricedRecord::new(record("late", Some("q"), Some("a")), &h.prices);
    assert!(!h.judge.offer(DEFAULT_PROJECT, &late));
    assert_eq!(server.calls().len(), 1, "a queued record was judged");

    // The judge dropped its writer handles: dropping ours lets the writer finish.
    drop(h.writer);
    tokio::time::timeout(Duration::from_secs(5), h.writer_task)
        .await
        .expect("the writer task did not end once every handle was dropped")
        .unwrap();
    let stats = h.judge.stats();
    assert_eq!((stats.judged, stats.failed), (0, 0));
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retried_then_given_up() {
    // A call that hangs past timeout_s.
    let server = stand_in(Arc::new(|_, _| Reply::Hang)).await;
    let h = harness(RawJudgeConfig {
        timeout_s: Some(0.05),
        max_retries: Some(1),
        ..config(&server)
    })
    .await;
    h.submit(vec![record("slow", Some("q"), Some("a"))]).await;
    let stats = h.wait_for("slow failed", |s| s.failed == 1).await;
    assert_eq!((stats.calls, stats.retries), (2, 1));
    assert_eq!(server.calls().len(), 2);

    // Nothing listens on the port any more.
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let h = harness(RawJudgeConfig {
        base_url: format!("http://{closed}/v1"),
        max_retries: Some(2),
        ..config(&server)
    })
    .await;
    h.submit(vec![record("refused", Some("q"), Some("a"))])
        .await;
    let stats = h.wait_for("refused failed", |s| s.failed == 1).await;
    assert_eq!((stats.calls, stats.retries), (3, 2));
    assert!(h.request("judge:relevance:refused").await.is_none());
}
