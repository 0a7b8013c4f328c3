//! Synthetic LLM-application traffic for `llmwatch demo` and the benchmarks: a seeded,
//! deterministic generator of realistic [`Record`]s (daily cycle, model and feature mixes, errors,
//! a release regression, a cost spike, a drifting attribute). Pure: every time is an argument.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Asia::Seoul;
use rand::Rng;

use crate::core::dice::Dice;
use crate::core::record::{Record, Status, Usage, char_count};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The arrival rate is piecewise constant over segments of this length, aligned on the window
/// start (so the spike, whose edges are multiples of it, covers whole segments).
const SEGMENT_MS: i64 = 5 * MINUTE_MS;

// ---------------------------------------------------------------------------------------------
// Scripted events, all positioned relative to the start of the history window.
// ---------------------------------------------------------------------------------------------

/// The release switches from `RELEASE_OLD` to `RELEASE_NEW` at this fraction of the window.
const RELEASE_SWITCH_FRACTION: f64 = 0.6;
const RELEASE_OLD: &str = "v1.4.0";
/// `RELEASE_NEW` makes the guardrail stage slower: the regression the demo can reveal.
const RELEASE_NEW: &str = "v1.5.0";

/// Error burst: one hour on day 9 (the 9th day, index 8) of windows of at least 10 days.
const BURST_MIN_WINDOW_MS: i64 = 10 * DAY_MS;
const BURST_START_MS: i64 = 8 * DAY_MS + 15 * HOUR_MS;
const BURST_LEN_MS: i64 = HOUR_MS;
const BURST_ERROR_RATE: f64 = 0.20;
const BASE_ERROR_RATE: f64 = 0.015;

/// Cost spike: on the 11th day (index 10) of windows of at least 12 days, the support agent
/// loops for three hours: 4x its usual requests, each with 3x the input tokens.
const SPIKE_MIN_WINDOW_MS: i64 = 12 * DAY_MS;
const SPIKE_START_MS: i64 = 10 * DAY_MS + 14 * HOUR_MS;
const SPIKE_LEN_MS: i64 = 3 * HOUR_MS;
const SPIKE_REQUEST_FACTOR: f64 = 4.0;
const SPIKE_INPUT_FACTOR: f64 = 3.0;

/// The "complaint" question category appears in the last days of the window, with a simulated
/// model update that makes answers longer: the drift the demo shows.
const COMPLAINT_WINDOW_MS: i64 = 3 * DAY_MS;
/// Output tokens after the simulated model update, relative to before.
const MODEL_UPDATE_OUTPUT_FACTOR: f64 = 1.6;

// ---------------------------------------------------------------------------------------------
// Daily and weekly shape (Asia/Seoul local time).
// ---------------------------------------------------------------------------------------------

/// Relative request rate at each local hour (interpolated linearly in between): an office-hours
/// product with its peak at 14:00 and its trough at 04:00, 6x lower.
const HOURLY_SHAPE: [f64; 24] = [
    0.60, 0.45, 0.36, 0.32, 0.30, 0.33, 0.45, 0.65, // 00-07
    0.95, 1.25, 1.45, 1.60, 1.65, 1.75, 1.80, 1.72, // 08-15
    1.60, 1.45, 1.30, 1.20, 1.15, 1.05, 0.90, 0.75, // 16-23
];
/// Weekends are quieter.
const SATURDAY_FACTOR: f64 = 0.65;
const SUNDAY_FACTOR: f64 = 0.55;

/// Relative request rate at `ms` (unix ms): daily cycle times weekday factor, Seoul local time.
fn base_shape(ms: i64) -> f64 {
    let Some(utc) = DateTime::<Utc>::from_timestamp_millis(ms) else {
        return 1.0;
    };
    let local = utc.with_timezone(&Seoul);
    let hour = local.hour() as usize;
    let frac = (local.minute() as f64 * 60.0 + local.second() as f64) / 3600.0;
    let daily = HOURLY_SHAPE[hour] * (1.0 - frac) + HOURLY_SHAPE[(hour + 1) % 24] * frac;
    let weekly = match local.weekday() {
        Weekday::Sat => SATURDAY_FACTOR,
        Weekday::Sun => SUNDAY_FACTOR,
        _ => 1.0,
    };
    daily * weekly
}

// ---------------------------------------------------------------------------------------------
// Models, features, users, attributes, texts.
// ---------------------------------------------------------------------------------------------

struct ModelSpec {
    name: &'static str,
    provider: &'static str,
    /// Median time to first token for a short prompt, in ms.
    ttft_ms: f64,
    /// Prefill cost per uncached input token, in ms.
    prefill_ms_per_token: f64,
    /// Decode speed, output tokens per second.
    tokens_per_s: f64,
    /// Some requests carry a share of extended-thinking tokens.
    reasons: bool,
}

const GPT_4O: usize = 0;
const GPT_4O_MINI: usize = 1;
const SONNET: usize = 2;
const HAIKU: usize = 3;
const FINE_TUNE: usize = 4;

const MODELS: [ModelSpec; 5] = [
    ModelSpec {
        name: "gpt-4o",
        provider: "openai",
        ttft_ms: 450.0,
        prefill_ms_per_token: 0.08,
        tokens_per_s: 100.0,
        reasons: false,
    },
    ModelSpec {
        name: "gpt-4o-mini",
        provider: "openai",
        ttft_ms: 300.0,
        prefill_ms_per_token: 0.04,
        tokens_per_s: 140.0,
        reasons: false,
    },
    ModelSpec {
        name: "claude-sonnet-4-20250514",
        provider: "anthropic",
        ttft_ms: 650.0,
        prefill_ms_per_token: 0.08,
        tokens_per_s: 80.0,
        reasons: true,
    },
    ModelSpec {
        name: "claude-haiku-3-20250414",
        provider: "anthropic",
        ttft_ms: 350.0,
        prefill_ms_per_token: 0.04,
        tokens_per_s: 150.0,
        reasons: false,
    },
    // The internal fine-tune has no list price: the demo shows it as unpriced usage.
    ModelSpec {
        name: "acme-ft-llama-70b",
        provider: "self-hosted",
        ttft_ms: 250.0,
        prefill_ms_per_token: 0.12,
        tokens_per_s: 60.0,
        reasons: false,
    },
];

/// The kind of text a feature sends and receives.
#[derive(Clone, Copy)]
enum TextKind {
    /// A user question with a `question_category`.
    Question,
    Summary,
    CodeReview,
    Generic,
}

struct FeatureSpec {
    name: Option<&'static str>,
    /// Model index -> share of this feature's requests.
    models: &'static [(usize, f64)],
    /// Log-normal token counts: median and sigma of the log.
    input_median: f64,
    input_sigma: f64,
    output_median: f64,
    output_sigma: f64,
    /// Probability of a prompt-cache hit (when the prompt is long enough to be cached).
    cache_prob: f64,
    /// Probability of a tool call (tool_execution stage).
    tool_prob: f64,
    /// Agent loop: the context grows by `input_median` tokens per turn.
    agent: bool,
    text: TextKind,
}

const SUPPORT_AGENT: usize = 4;

/// Feature mix. The fine-tune's shares give it ~3% of all traffic:
/// 0.35*4% + 0.20*5% + 0.15*3% + 0.05*6% = 3.15%.
const FEATURES: [FeatureSpec; 6] = [
    FeatureSpec {
        name: Some("chat"),
        models: &[
            (GPT_4O_MINI, 0.45),
            (GPT_4O, 0.20),
            (SONNET, 0.15),
            (HAIKU, 0.16),
            (FINE_TUNE, 0.04),
        ],
        input_median: 800.0,
        input_sigma: 0.7,
        output_median: 250.0,
        output_sigma: 0.5,
        cache_prob: 0.4,
        tool_prob: 0.0,
        agent: false,
        text: TextKind::Question,
    },
    FeatureSpec {
        name: Some("search"),
        models: &[
            (GPT_4O_MINI, 0.55),
            (HAIKU, 0.30),
            (GPT_4O, 0.10),
            (FINE_TUNE, 0.05),
        ],
        input_median: 1500.0,
        input_sigma: 0.5,
        output_median: 150.0,
        output_sigma: 0.5,
        cache_prob: 0.0,
        tool_prob: 0.0,
        agent: false,
        text: TextKind::Question,
    },
    // Long documents in, a short summary out.
    FeatureSpec {
        name: Some("summarize"),
        models: &[
            (HAIKU, 0.40),
            (GPT_4O_MINI, 0.37),
            (SONNET, 0.20),
            (FINE_TUNE, 0.03),
        ],
        input_median: 6000.0,
        input_sigma: 0.8,
        output_median: 200.0,
        output_sigma: 0.4,
        cache_prob: 0.1,
        tool_prob: 0.0,
        agent: false,
        text: TextKind::Summary,
    },
    // Long diffs in, long reviews out, sometimes a linter/test tool call.
    FeatureSpec {
        name: Some("code_review"),
        models: &[(SONNET, 0.60), (GPT_4O, 0.40)],
        input_median: 5000.0,
        input_sigma: 0.7,
        output_median: 400.0,
        output_sigma: 0.4,
        cache_prob: 0.3,
        tool_prob: 0.6,
        agent: false,
        text: TextKind::CodeReview,
    },
    // An agent loop: each turn resends the growing conversation (mostly cached) and often
    // calls a tool.
    FeatureSpec {
        name: Some("support_agent"),
        models: &[(SONNET, 0.50), (GPT_4O, 0.30), (GPT_4O_MINI, 0.20)],
        input_median: 900.0,
        input_sigma: 0.3,
        output_median: 180.0,
        output_sigma: 0.6,
        cache_prob: 0.7,
        tool_prob: 0.8,
        agent: true,
        text: TextKind::Question,
    },
    // Untagged calls.
    FeatureSpec {
        name: None,
        models: &[
            (GPT_4O_MINI, 0.50),
            (GPT_4O, 0.24),
            (HAIKU, 0.20),
            (FINE_TUNE, 0.06),
        ],
        input_median: 400.0,
        input_sigma: 0.9,
        output_median: 120.0,
        output_sigma: 0.8,
        cache_prob: 0.0,
        tool_prob: 0.0,
        agent: false,
        text: TextKind::Generic,
    },
];

/// Share of the traffic of each feature, in the order of `FEATURES`.
const FEATURE_WEIGHTS: [f64; 6] = [0.35, 0.20, 0.15, 0.10, 0.15, 0.05];

const USER_COUNT: usize = 300;
/// Zipf-Mandelbrot weights `1 / (rank + q)^s`: a few heavy users, a long tail.
const ZIPF_S: f64 = 1.1;
const ZIPF_Q: f64 = 2.0;
const USER_GUIDE: usize = 1024;
const ANONYMOUS_RATE: f64 = 0.03;
/// Requests of one user within this time share a session.
const SESSION_MS: i64 = 30 * MINUTE_MS;

const LANGUAGES: [&str; 3] = ["ko", "en", "ja"];
const LANGUAGE_WEIGHTS: [f64; 3] = [0.6, 0.3, 0.1];

const CATEGORIES: [&str; 6] = [
    "billing",
    "technical",
    "account",
    "shipping",
    "other",
    "complaint",
];
const CATEGORY_WEIGHTS: [f64; 6] = [0.25, 0.30, 0.20, 0.15, 0.10, 0.0];
/// In the last days of the window complaints make up 15% and the rest shrink proportionally.
const CATEGORY_WEIGHTS_LATE: [f64; 6] = [0.2125, 0.255, 0.17, 0.1275, 0.085, 0.15];

const ERROR_TYPES: [&str; 4] = ["rate_limit", "timeout", "provider_error", "content_filter"];
const ERROR_WEIGHTS: [f64; 4] = [0.35, 0.25, 0.30, 0.10];
const BURST_ERROR_WEIGHTS: [f64; 4] = [0.85, 0.05, 0.10, 0.0];

const STREAMING_RATE: f64 = 0.9;
const OUTLIER_RATE: f64 = 0.003;
const REASONING_RATE: f64 = 0.02;
const CACHE_WRITE_RATE: f64 = 0.08;
/// Providers only cache prompts of at least this many tokens.
const MIN_CACHEABLE_TOKENS: u64 = 1024;

/// Question per category (index as `CATEGORIES`) and language (index as `LANGUAGES`).
const QUESTIONS: [[&str; 3]; 6] = [
    [
        "이번 달 요금이 왜 두 번 청구됐나요?",
        "Why was I charged twice this month?",
        "今月の料金が二重に請求されたのはなぜですか？",
    ],
    [
        "앱이 로그인 후에 계속 멈춰요.",
        "The app keeps freezing after I log in.",
        "ログイン後にアプリが固まります。",
    ],
    [
        "비밀번호를 어떻게 재설정하나요?",
        "How do I reset my password?",
        "パスワードをリセットするには？",
    ],
    [
        "주문한 상품이 언제 도착하나요?",
        "When will my order arrive?",
        "注文した商品はいつ届きますか？",
    ],
    [
        "영업 시간이 어떻게 되나요?",
        "What are your opening hours?",
        "営業時間を教えてください。",
    ],
    [
        "상담 응답이 너무 느려서 불만입니다.",
        "I'm unhappy: support has been far too slow.",
        "サポートの対応が遅すぎて不満です。",
    ],
];
const ANSWERS: [[&str; 3]; 6] = [
    [
        "중복 결제를 확인했으며 3영업일 내에 환불됩니다.",
        "I found the duplicate charge; the refund arrives within 3 business days.",
        "二重請求を確認しました。3営業日以内に返金されます。",
    ],
    [
        "앱을 최신 버전으로 업데이트한 뒤 다시 시도해 주세요.",
        "Please update the app to the latest version and try again.",
        "アプリを最新版に更新してから再度お試しください。",
    ],
    [
        "로그인 화면의 '비밀번호 찾기'를 눌러 주세요.",
        "Tap 'Forgot password' on the sign-in screen.",
        "ログイン画面の「パスワードを忘れた」を押してください。",
    ],
    [
        "주문하신 상품은 내일 도착할 예정입니다.",
        "Your order is scheduled to arrive tomorrow.",
        "ご注文の商品は明日到着予定です。",
    ],
    [
        "평일 오전 9시부터 오후 6시까지 운영합니다.",
        "We are open on weekdays from 9am to 6pm.",
        "平日の午前9時から午後6時まで営業しています。",
    ],
    [
        "불편을 드려 죄송합니다. 담당자가 곧 연락드리겠습니다.",
        "Sorry for the trouble; a specialist will contact you shortly.",
        "ご不便をおかけして申し訳ありません。担当者からすぐにご連絡します。",
    ],
];
const SUMMARY_IN: [&str; 3] = [
    "다음 회의록을 세 문장으로 요약해 주세요.",
    "Summarize these meeting notes in three sentences.",
    "次の議事録を3文で要約してください。",
];
const SUMMARY_OUT: [&str; 3] = [
    "3분기 로드맵, 주요 위험, 채용 계획을 논의했습니다.",
    "The team discussed the Q3 roadmap, its main risks and the hiring plan.",
    "第3四半期のロードマップ、主なリスク、採用計画を議論しました。",
];
const CODE_REVIEW_IN: &str = "Review this pull request diff for bugs and missing tests.";
const CODE_REVIEW_OUT: &str =
    "Two issues: an unchecked unwrap in parse() and no test for empty input.";
const GENERIC_IN: [&str; 3] = [
    "이 문장을 영어로 번역해 주세요.",
    "Rewrite this sentence to sound more polite.",
    "この文を英語に翻訳してください。",
];
const GENERIC_OUT: [&str; 3] = [
    "Please translate this sentence.",
    "Could you kindly rewrite this sentence?",
    "Please translate this sentence into English.",
];

// ---------------------------------------------------------------------------------------------
// The generator.
// ---------------------------------------------------------------------------------------------

/// Conditions that hold at one instant of a window.
#[derive(Clone, Copy)]
struct Moment {
    release: &'static str,
    burst: bool,
    spike: bool,
    complaints: bool,
}

/// Where the scripted events of one history window fall, in ms relative to its start.
#[derive(Clone, Copy)]
struct Plan {
    start_ms: i64,
    len_ms: i64,
    release_switch: i64,
    burst: Option<(i64, i64)>,
    spike: Option<(i64, i64)>,
    complaints_from: i64,
}

impl Plan {
    fn new(start_ms: i64, end_ms: i64) -> Self {
        let len_ms = end_ms.saturating_sub(start_ms).max(0);
        Self {
            start_ms,
            len_ms,
            release_switch: (len_ms as f64 * RELEASE_SWITCH_FRACTION) as i64,
            burst: (len_ms >= BURST_MIN_WINDOW_MS)
                .then_some((BURST_START_MS, BURST_START_MS + BURST_LEN_MS)),
            spike: (len_ms >= SPIKE_MIN_WINDOW_MS)
                .then_some((SPIKE_START_MS, SPIKE_START_MS + SPIKE_LEN_MS)),
            complaints_from: len_ms - COMPLAINT_WINDOW_MS,
        }
    }

    fn in_spike(&self, rel: i64) -> bool {
        self.spike.is_some_and(|(a, b)| (a..b).contains(&rel))
    }

    fn moment(&self, rel: i64) -> Moment {
        Moment {
            release: if rel < self.release_switch {
                RELEASE_OLD
            } else {
                RELEASE_NEW
            },
            burst: self.burst.is_some_and(|(a, b)| (a..b).contains(&rel)),
            spike: self.in_spike(rel),
            complaints: rel >= self.complaints_from,
        }
    }
}

/// The live trickle continues the end of a history window: new release, complaints present,
/// no scripted burst or spike.
const LIVE_MOMENT: Moment = Moment {
    release: RELEASE_NEW,
    burst: false,
    spike: false,
    complaints: true,
};

/// Seeded generator of synthetic traffic. The same seed and the same calls give the same
/// records (for a given `rand` version: `SmallRng` is fast, not a stable stream across versions).
pub struct TrafficGenerator {
    /// `demo-{seed}-`: request ids are this plus the counter.
    id_prefix: String,
    dice: Dice,
    /// Requests generated so far: the next request id is `demo-{seed}-{counter + 1}`.
    counter: u64,
    /// Cumulative Zipf weights of the users, by popularity rank.
    user_cdf: Vec<f64>,
    /// `user_guide[k]` is the first rank whose cumulative weight exceeds `k / USER_GUIDE`:
    /// where to start the search for a uniform sample in that slice.
    user_guide: Vec<usize>,
    /// User ids by popularity rank (a fixed shuffle, so user-0001 is not the heaviest).
    user_ids: Vec<String>,
    /// Language index of each user by rank: users keep their language.
    user_langs: Vec<usize>,
}

impl TrafficGenerator {
    pub fn new(seed: u64) -> Self {
        let mut user_cdf = Vec::with_capacity(USER_COUNT);
        let mut total = 0.0;
        for rank in 0..USER_COUNT {
            total += 1.0 / (rank as f64 + 1.0 + ZIPF_Q).powf(ZIPF_S);
            user_cdf.push(total);
        }
        for c in &mut user_cdf {
            *c /= total;
        }
        let user_guide = (0..USER_GUIDE)
            .map(|k| user_cdf.partition_point(|&c| c <= k as f64 / USER_GUIDE as f64))
            .collect();
        // 131 is coprime with 300, so this is a permutation of 1..=300.
        let user_ids = (0..USER_COUNT)
            .map(|rank| format!("user-{:04}", rank * 131 % USER_COUNT + 1))
            .collect();
        let user_langs = (0..USER_COUNT)
            .map(|rank| {
                let h = (rank as u64 + 1).wrapping_mul(2_654_435_761) % 1000;
                let u = h as f64 / 1000.0;
                if u < LANGUAGE_WEIGHTS[0] {
                    0
                } else if u < LANGUAGE_WEIGHTS[0] + LANGUAGE_WEIGHTS[1] {
                    1
                } else {
                    2
                }
            })
            .collect();
        Self {
            id_prefix: format!("demo-{seed}-"),
            dice: Dice::new(seed),
            counter: 0,
            user_cdf,
            user_guide,
            user_ids,
            user_langs,
        }
    }

    /// Records with timestamps in [start_ms, end_ms), in increasing timestamp order, about
    /// `per_day` requests per day on average, shaped by the profile of this module. request_id
    /// unique: format "demo-{seed}-{counter}".
    pub fn history(&mut self, start_ms: i64, end_ms: i64, per_day: u64) -> Vec<Record> {
        let expected =
            per_day as f64 * end_ms.saturating_sub(start_ms).max(0) as f64 / DAY_MS as f64;
        let mut out = Vec::with_capacity((expected * 1.05).min((1 << 22) as f64) as usize);
        out.extend(self.history_iter(start_ms, end_ms, per_day));
        out
    }

    /// An iterator form of [`history`](Self::history): the same records, for millions of
    /// records without holding them all.
    pub fn history_iter(
        &mut self,
        start_ms: i64,
        end_ms: i64,
        per_day: u64,
    ) -> impl Iterator<Item = Record> + '_ {
        HistoryIter::new(self, start_ms, end_ms, per_day)
    }

    /// `n` records spread uniformly over [now_ms - window_ms, now_ms) for the live trickle, in
    /// increasing timestamp order, with the profile of the end of a history window (release
    /// v1.5.0, complaints present). A `window_ms` below 1 counts as 1.
    pub fn live(&mut self, now_ms: i64, window_ms: i64, n: usize) -> Vec<Record> {
        let window_ms = window_ms.max(1);
        let from = now_ms.saturating_sub(window_ms);
        let mut times: Vec<i64> = (0..n)
            .map(|_| from + self.dice.rng.random_range(0..window_ms))
            .collect();
        times.sort_unstable();
        times
            .into_iter()
            .map(|ts| self.record(ts, LIVE_MOMENT))
            .collect()
    }

    // --- sampling helpers ----------------------------------------------------------------------

    /// Exponential with mean 1.
    fn exp1(&mut self) -> f64 {
        -(1.0 - self.dice.unit()).ln()
    }

    /// Index drawn from weights summing to 1 (the last index absorbs rounding).
    fn pick(&mut self, weights: &[f64]) -> usize {
        let mut u = self.dice.unit();
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                return i;
            }
            u -= w;
        }
        weights.len() - 1
    }

    fn pick_model(&mut self, mix: &[(usize, f64)]) -> usize {
        let mut u = self.dice.unit();
        for &(model, w) in mix {
            if u < w {
                return model;
            }
            u -= w;
        }
        mix[mix.len() - 1].0
    }

    fn tokens(&mut self, median: f64, sigma: f64, max: f64) -> u64 {
        (self.dice.log_normal(median, sigma).clamp(1.0, max) + 0.5) as u64
    }

    // --- one record ------------------------------------------------------------------------

    fn record(&mut self, timestamp_ms: i64, moment: Moment) -> Record {
        self.counter += 1;
        let mut request_id = String::with_capacity(self.id_prefix.len() + 20);
        request_id.push_str(&self.id_prefix);
        push_decimal(&mut request_id, self.counter);

        // Feature: during the spike, the extra 3x support-agent requests come on top of the
        // usual mix (so support_agent gets 4p / (1 + 3p) of the traffic).
        let support_share = FEATURE_WEIGHTS[SUPPORT_AGENT];
        let extra = (SPIKE_REQUEST_FACTOR - 1.0) * support_share;
        let feature_idx = if moment.spike && self.dice.chance(extra / (1.0 + extra)) {
            SUPPORT_AGENT
        } else {
            self.pick(&FEATURE_WEIGHTS)
        };
        let feature = &FEATURES[feature_idx];
        let model_idx = self.pick_model(feature.models);
        let model = &MODELS[model_idx];

        // User, session, language.
        let (user_id, session_id, lang) = if self.dice.chance(ANONYMOUS_RATE) {
            let lang = self.pick(&LANGUAGE_WEIGHTS);
            let mut sid = String::with_capacity(18);
            sid.push_str("sess-anon-");
            let x = self.dice.rng.random::<u32>();
            for shift in (0..8).rev() {
                sid.push(char::from(
                    b"0123456789abcdef"[(x >> (shift * 4)) as usize & 15],
                ));
            }
            (None, sid, lang)
        } else {
            let u = self.dice.unit();
            let mut rank = self.user_guide[(u * USER_GUIDE as f64) as usize];
            while rank < USER_COUNT - 1 && self.user_cdf[rank] <= u {
                rank += 1;
            }
            // Session buckets are offset per user so that sessions do not all cut at once.
            let bucket = (timestamp_ms + rank as i64 * 7 * MINUTE_MS).div_euclid(SESSION_MS);
            let mut sid = String::with_capacity(32);
            sid.push_str("sess-");
            sid.push_str(&self.user_ids[rank][5..]);
            sid.push('-');
            push_decimal(&mut sid, bucket.max(0) as u64);
            (
                Some(self.user_ids[rank].clone()),
                sid,
                self.user_langs[rank],
            )
        };

        let category = match feature.text {
            TextKind::Question => Some(self.pick(if moment.complaints {
                &CATEGORY_WEIGHTS_LATE
            } else {
                &CATEGORY_WEIGHTS
            })),
            _ => None,
        };

        // Tokens.
        let mut input_tokens = if feature.agent {
            // Turn 1, 2, ... (geometric, mean ~3.3): the context grows with every turn.
            let mut turn = 1.0;
            while turn < 12.0 && self.dice.chance(0.7) {
                turn += 1.0;
            }
            self.dice
                .log_normal(feature.input_median * (0.5 + turn), feature.input_sigma)
        } else {
            self.dice
                .log_normal(feature.input_median, feature.input_sigma)
        };
        if moment.spike && feature_idx == SUPPORT_AGENT {
            input_tokens *= SPIKE_INPUT_FACTOR;
        }
        let input_tokens = (input_tokens.clamp(1.0, 200_000.0) + 0.5) as u64;
        let mut output_tokens = self.tokens(feature.output_median, feature.output_sigma, 4096.0);
        if moment.complaints {
            output_tokens = ((output_tokens as f64 * MODEL_UPDATE_OUTPUT_FACTOR) as u64).min(4096);
        }
        let priced = model.provider != "self-hosted";
        let mut cached_input_tokens = 0;
        if priced && input_tokens >= MIN_CACHEABLE_TOKENS && self.dice.chance(feature.cache_prob) {
            cached_input_tokens = (input_tokens as f64 * self.dice.uniform(0.2, 0.6)) as u64;
        }
        let mut cache_write_tokens = 0;
        if model.provider == "anthropic"
            && feature.cache_prob > 0.0
            && input_tokens >= MIN_CACHEABLE_TOKENS
            && self.dice.chance(CACHE_WRITE_RATE)
        {
            let want = (input_tokens as f64 * self.dice.uniform(0.1, 0.3)) as u64;
            cache_write_tokens = want.min(input_tokens - cached_input_tokens);
        }
        let mut reasoning_tokens = 0;
        if model.reasons && self.dice.chance(REASONING_RATE) {
            reasoning_tokens = self.tokens(500.0, 0.6, 4000.0);
            output_tokens += reasoning_tokens;
        }

        // Outcome.
        let (error_rate, error_weights) = if moment.burst {
            (BURST_ERROR_RATE, &BURST_ERROR_WEIGHTS)
        } else {
            (BASE_ERROR_RATE, &ERROR_WEIGHTS)
        };
        let error = self
            .dice
            .chance(error_rate)
            .then(|| self.pick(error_weights));

        // Stages.
        let preprocessing = self.dice.uniform(5.0, 30.0);
        let guardrail = if moment.release == RELEASE_OLD {
            self.dice.uniform(20.0, 80.0)
        } else {
            // v1.5.0 runs an extra guardrail model: +40..100 ms.
            self.dice.uniform(60.0, 180.0)
        };
        let mut stages = BTreeMap::new();
        stages.insert("preprocessing".to_owned(), round2(preprocessing));
        stages.insert("guardrail".to_owned(), round2(guardrail));

        let mut ttft_ms = None;
        let mut output = None;
        let status;
        let mut error_type = None;
        match error {
            None => {
                status = Status::Ok;
                let uncached = (input_tokens - cached_input_tokens) as f64;
                let ttft = self.dice.log_normal(model.ttft_ms, 0.3)
                    + uncached * model.prefill_ms_per_token;
                let decode = output_tokens as f64 * 1000.0 / model.tokens_per_s
                    * self.dice.log_normal(1.0, 0.25);
                let mut inference = ttft + decode;
                if self.dice.chance(OUTLIER_RATE) {
                    // A stalled stream or an overloaded provider: 10-30 s.
                    inference = inference.max(self.dice.uniform(10_000.0, 30_000.0));
                }
                stages.insert("model_inference".to_owned(), round2(inference));
                if self.dice.chance(STREAMING_RATE) {
                    ttft_ms = Some(round2(ttft.min(inference)));
                }
                if self.dice.chance(feature.tool_prob) {
                    let tool = (self.dice.uniform(50f64.ln(), 2000f64.ln())).exp();
                    stages.insert("tool_execution".to_owned(), round2(tool));
                }
                let post = self.dice.uniform(5.0, 40.0);
                stages.insert("postprocessing".to_owned(), round2(post));
                output = Some(output_text(feature.text, category, lang).to_owned());
            }
            Some(e) => {
                status = Status::Error;
                error_type = Some(ERROR_TYPES[e].to_owned());
                // The pipeline stops at the model call; only a content-filtered prompt is billed.
                let inference = match ERROR_TYPES[e] {
                    "rate_limit" => self.dice.uniform(20.0, 200.0),
                    "timeout" => 30_000.0 + self.dice.uniform(0.0, 500.0),
                    "provider_error" => self.dice.uniform(100.0, 3000.0),
                    _ => self.dice.uniform(200.0, 1500.0),
                };
                stages.insert("model_inference".to_owned(), round2(inference));
                output_tokens = 0;
                reasoning_tokens = 0;
                if ERROR_TYPES[e] != "content_filter" {
                    cached_input_tokens = 0;
                    cache_write_tokens = 0;
                }
            }
        }
        let input_tokens =
            if status == Status::Error && error_type.as_deref() != Some("content_filter") {
                0
            } else {
                input_tokens
            };

        let stages_sum: f64 = stages.values().sum();
        let duration_ms = round2(stages_sum + self.dice.uniform(5.0, 40.0));

        let mut attributes = BTreeMap::new();
        if let Some(c) = category {
            attributes.insert("question_category".to_owned(), CATEGORIES[c].to_owned());
        }
        attributes.insert("language".to_owned(), LANGUAGES[lang].to_owned());

        Record {
            request_id,
            timestamp_ms,
            model: model.name.to_owned(),
            provider: Some(model.provider.to_owned()),
            usage: Usage {
                input_tokens,
                output_tokens,
                cached_input_tokens,
                cache_write_tokens,
                reasoning_tokens,
            },
            user_id,
            feature: feature.name.map(str::to_owned),
            session_id: Some(session_id),
            release: Some(moment.release.to_owned()),
            status,
            error_type,
            stages,
            duration_ms,
            ttft_ms,
            attributes,
            input_chars: Some(char_count(input_text(feature.text, category, lang))),
            output_chars: output.as_deref().map(char_count),
            scores: Vec::new(),
            input: Some(input_text(feature.text, category, lang).to_owned()),
            output,
        }
    }
}

/// Rounds a non-negative duration to 0.01 ms: realistic precision, and short JSON. (A cast
/// rather than `f64::round`, which is a libm call on baseline x86-64.)
fn round2(ms: f64) -> f64 {
    ((ms * 100.0 + 0.5) as u64) as f64 / 100.0
}

/// Appends `n` in decimal without going through `fmt`.
fn push_decimal(s: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    s.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

fn input_text(kind: TextKind, category: Option<usize>, lang: usize) -> &'static str {
    match (kind, category) {
        (TextKind::Question, Some(c)) => QUESTIONS[c][lang],
        (TextKind::Summary, _) => SUMMARY_IN[lang],
        (TextKind::CodeReview, _) => CODE_REVIEW_IN,
        _ => GENERIC_IN[lang],
    }
}

fn output_text(kind: TextKind, category: Option<usize>, lang: usize) -> &'static str {
    match (kind, category) {
        (TextKind::Question, Some(c)) => ANSWERS[c][lang],
        (TextKind::Summary, _) => SUMMARY_OUT[lang],
        (TextKind::CodeReview, _) => CODE_REVIEW_OUT,
        _ => GENERIC_OUT[lang],
    }
}

/// Arrivals of a non-homogeneous Poisson process whose rate is constant over each segment:
/// exponential gaps in "expected arrivals" units, carried across segment edges.
struct HistoryIter<'a> {
    generator: &'a mut TrafficGenerator,
    plan: Plan,
    /// Requests per ms per unit of `base_shape`.
    scale: f64,
    /// Current segment, relative to the window start, and its rate in requests per ms.
    seg_start: i64,
    seg_end: i64,
    seg_rate: f64,
    /// Time of the last arrival, relative to the window start.
    t: f64,
    done: bool,
}

impl<'a> HistoryIter<'a> {
    fn new(generator: &'a mut TrafficGenerator, start_ms: i64, end_ms: i64, per_day: u64) -> Self {
        let plan = Plan::new(start_ms, end_ms);
        let mut it = Self {
            generator,
            plan,
            scale: 0.0,
            seg_start: 0,
            seg_end: 0,
            seg_rate: 0.0,
            t: 0.0,
            done: plan.len_ms == 0 || per_day == 0,
        };
        if it.done {
            return it;
        }
        // Normalise so that the window gets `per_day` requests per day on average, whatever
        // its weekday and hour mix (the spike's extra requests come on top).
        let mut integral = 0.0;
        let mut s = 0;
        while s < plan.len_ms {
            let e = (s + SEGMENT_MS).min(plan.len_ms);
            integral += it.segment_shape(s, e) * (e - s) as f64;
            s = e;
        }
        let expected = per_day as f64 * plan.len_ms as f64 / DAY_MS as f64;
        it.scale = expected / integral;
        it.enter_segment(0);
        it
    }

    fn segment_shape(&self, s: i64, e: i64) -> f64 {
        base_shape(self.plan.start_ms + s + (e - s) / 2)
    }

    fn enter_segment(&mut self, s: i64) {
        let e = (s + SEGMENT_MS).min(self.plan.len_ms);
        let mut rate = self.scale * self.segment_shape(s, e);
        if self.plan.in_spike(s) {
            rate *= 1.0 + (SPIKE_REQUEST_FACTOR - 1.0) * FEATURE_WEIGHTS[SUPPORT_AGENT];
        }
        self.seg_start = s;
        self.seg_end = e;
        self.seg_rate = rate;
        self.t = self.t.max(s as f64);
    }
}

impl Iterator for HistoryIter<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.done {
            return None;
        }
        let mut need = self.generator.exp1();
        loop {
            let room = self.seg_rate * (self.seg_end as f64 - self.t);
            if need < room {
                self.t += need / self.seg_rate;
                break;
            }
            need -= room;
            if self.seg_end >= self.plan.len_ms {
                self.done = true;
                return None;
            }
            self.enter_segment(self.seg_end);
        }
        // `t` < seg_end, but guard against rounding up to the edge.
        let rel = (self.t.floor() as i64).clamp(self.seg_start, self.seg_end - 1);
        let moment = self.plan.moment(rel);
        Some(self.generator.record(self.plan.start_ms + rel, moment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::parse_record;
    use serde_json::Value;

    /// 2026-01-05T00:00:00+09:00, a Monday at midnight in Seoul.
    const START: i64 = 1_767_538_800_000;
    const END: i64 = START + 14 * DAY_MS;

    fn two_weeks(seed: u64, per_day: u64) -> Vec<Record> {
        TrafficGenerator::new(seed).history(START, END, per_day)
    }

    fn seoul_hour(ms: i64) -> u32 {
        // Seoul has been UTC+9 without daylight saving since 1988: an independent check.
        ((ms + 9 * HOUR_MS).rem_euclid(DAY_MS) / HOUR_MS) as u32
    }

    fn to_json(r: &Record) -> Value {
        let mut v = serde_json::to_value(r).unwrap();
        let obj = v.as_object_mut().unwrap();
        let ts = obj.remove("timestamp_ms").unwrap();
        obj.insert("timestamp".into(), ts);
        v
    }

    #[test]
    fn same_seed_same_output_different_seed_different() {
        let a = TrafficGenerator::new(7).history(START, START + 2 * DAY_MS, 2000);
        let b = TrafficGenerator::new(7).history(START, START + 2 * DAY_MS, 2000);
        let c = TrafficGenerator::new(8).history(START, START + 2 * DAY_MS, 2000);
        assert!(!a.is_empty());
        assert_eq!(a, b);
        assert_ne!(a.len(), 0);
        let ts_a: Vec<i64> = a.iter().map(|r| r.timestamp_ms).collect();
        let ts_c: Vec<i64> = c.iter().map(|r| r.timestamp_ms).collect();
        assert_ne!(ts_a, ts_c);
        assert!(c[0].request_id.starts_with("demo-8-"));
    }

    #[test]
    fn iterator_matches_vector() {
        let v = TrafficGenerator::new(3).history(START, START + DAY_MS, 1000);
        let mut g = TrafficGenerator::new(3);
        let it: Vec<Record> = g.history_iter(START, START + DAY_MS, 1000).collect();
        assert_eq!(v, it);
    }

    #[test]
    fn every_record_round_trips_through_parse_record() {
        let mut g = TrafficGenerator::new(11);
        let mut all = g.history(START, END, 1500);
        all.extend(g.live(END + 60_000, 60_000, 500));
        for r in &all {
            let parsed = parse_record(&to_json(r), 0)
                .unwrap_or_else(|e| panic!("{} rejected: {e}", r.request_id));
            assert_eq!(&parsed, r);
            let u = &r.usage;
            assert!(u.cached_input_tokens + u.cache_write_tokens <= u.input_tokens);
            assert!(u.reasoning_tokens <= u.output_tokens);
            assert!(r.duration_ms >= r.stages_sum_ms() + 5.0 - 0.02);
            assert!(r.duration_ms <= r.stages_sum_ms() + 40.0 + 0.02);
            if let Some(t) = r.ttft_ms {
                assert!(t <= r.stages["model_inference"]);
            }
            assert_eq!(r.status == Status::Error, r.error_type.is_some());
        }
        let ids: std::collections::HashSet<&str> =
            all.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids.len(), all.len());
    }

    #[test]
    fn sorted_inside_window_and_volume_matches() {
        let per_day = 3000;
        let recs = two_weeks(1, per_day);
        assert!(
            recs.windows(2)
                .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
        );
        assert!(recs.iter().all(|r| (START..END).contains(&r.timestamp_ms)));
        let expected = 14.0 * per_day as f64;
        let got = recs.len() as f64;
        assert!(
            (got - expected).abs() < 0.15 * expected,
            "{got} vs {expected}"
        );
        // An odd, unaligned window too.
        let start = START + 12_345_678;
        let end = start + 3 * DAY_MS + 777;
        let recs = TrafficGenerator::new(2).history(start, end, per_day);
        assert!(recs.iter().all(|r| (start..end).contains(&r.timestamp_ms)));
        let expected = 3.0 * per_day as f64;
        assert!((recs.len() as f64 - expected).abs() < 0.15 * expected);
        assert!(
            TrafficGenerator::new(2)
                .history(end, start, per_day)
                .is_empty()
        );
        assert!(TrafficGenerator::new(2).history(start, end, 0).is_empty());
    }

    #[test]
    fn night_is_quiet_and_weekends_are_quieter() {
        let recs = two_weeks(4, 3000);
        let night = recs
            .iter()
            .filter(|r| (2..5).contains(&seoul_hour(r.timestamp_ms)))
            .count();
        let afternoon = recs
            .iter()
            .filter(|r| (12..15).contains(&seoul_hour(r.timestamp_ms)))
            .count();
        // Same number of hours in each bucket, so counts compare rates.
        assert!(
            (night as f64) < 0.4 * afternoon as f64,
            "{night} vs {afternoon}"
        );
        // START is a Monday in Seoul: days 5, 6 and 12, 13 are weekends.
        let mut per_day = [0usize; 14];
        for r in &recs {
            per_day[((r.timestamp_ms - START) / DAY_MS) as usize] += 1;
        }
        let weekend = per_day[5] + per_day[6] + per_day[12] + per_day[13];
        let weekday = per_day[0] + per_day[1] + per_day[2] + per_day[3];
        assert!(weekend < weekday * 3 / 4, "{weekend} vs {weekday}");
    }

    #[test]
    fn unpriced_model_share_and_mixes() {
        let recs = two_weeks(5, 3000);
        let n = recs.len() as f64;
        let ft = recs
            .iter()
            .filter(|r| r.model == "acme-ft-llama-70b")
            .count() as f64;
        assert!((0.02..0.045).contains(&(ft / n)), "{}", ft / n);
        assert!(
            recs.iter()
                .filter(|r| r.model == "acme-ft-llama-70b")
                .all(|r| r.provider.as_deref() == Some("self-hosted"))
        );
        let no_feature = recs.iter().filter(|r| r.feature.is_none()).count() as f64;
        assert!((0.03..0.07).contains(&(no_feature / n)));
        let anon = recs.iter().filter(|r| r.user_id.is_none()).count() as f64;
        assert!((0.015..0.045).contains(&(anon / n)));
        // Zipf skew: the heaviest user is far above the mean of 1/300.
        let mut by_user = std::collections::HashMap::new();
        for r in &recs {
            if let Some(u) = &r.user_id {
                *by_user.entry(u.as_str()).or_insert(0usize) += 1;
            }
        }
        let max = *by_user.values().max().unwrap() as f64;
        assert!(max / n > 10.0 / 300.0);
        assert!(by_user.len() > 200);
        // Summaries: long input, short output.
        let summ: Vec<&Record> = recs
            .iter()
            .filter(|r| r.feature.as_deref() == Some("summarize") && r.status == Status::Ok)
            .collect();
        let mean_in = summ.iter().map(|r| r.usage.input_tokens).sum::<u64>() / summ.len() as u64;
        let mean_out = summ.iter().map(|r| r.usage.output_tokens).sum::<u64>() / summ.len() as u64;
        assert!(mean_in > 10 * mean_out);
        // Tools only for agents and code review; cached tokens exist.
        assert!(recs.iter().all(|r| !r.stages.contains_key("tool_execution")
            || matches!(r.feature.as_deref(), Some("support_agent" | "code_review"))));
        assert!(recs.iter().any(|r| r.usage.cached_input_tokens > 0));
        assert!(recs.iter().any(|r| r.usage.cache_write_tokens > 0));
        assert!(recs.iter().any(|r| r.usage.reasoning_tokens > 0));
        assert!(
            recs.iter()
                .any(|r| r.stages["model_inference"] > 10_000.0 && r.status == Status::Ok)
        );
    }

    #[test]
    fn errors_and_burst() {
        let recs = two_weeks(6, 5000);
        let errors = recs.iter().filter(|r| r.status == Status::Error).count() as f64;
        let rate = errors / recs.len() as f64;
        assert!((0.01..0.04).contains(&rate), "{rate}");
        let burst_start = START + 8 * DAY_MS + 15 * HOUR_MS;
        let burst: Vec<&Record> = recs
            .iter()
            .filter(|r| (burst_start..burst_start + HOUR_MS).contains(&r.timestamp_ms))
            .collect();
        let burst_errors = burst.iter().filter(|r| r.status == Status::Error).count();
        assert!(burst.len() > 50);
        assert!(burst_errors as f64 > 0.10 * burst.len() as f64);
        let rate_limited = burst
            .iter()
            .filter(|r| r.error_type.as_deref() == Some("rate_limit"))
            .count();
        assert!(rate_limited * 2 > burst_errors);
        // No burst in short windows.
        let short = TrafficGenerator::new(6).history(START, START + 9 * DAY_MS, 5000);
        let hour: Vec<&Record> = short
            .iter()
            .filter(|r| (burst_start..burst_start + HOUR_MS).contains(&r.timestamp_ms))
            .collect();
        let errs = hour.iter().filter(|r| r.status == Status::Error).count();
        assert!(hour.len() > 50);
        assert!(
            (errs as f64) < 0.05 * hour.len() as f64,
            "{errs} of {}",
            hour.len()
        );
    }

    #[test]
    fn cost_spike_on_day_eleven() {
        let recs = two_weeks(9, 5000);
        let spike_start = START + 10 * DAY_MS + 14 * HOUR_MS;
        let agent_in = |from: i64| {
            let v: Vec<&Record> = recs
                .iter()
                .filter(|r| (from..from + 3 * HOUR_MS).contains(&r.timestamp_ms))
                .filter(|r| r.feature.as_deref() == Some("support_agent"))
                .filter(|r| r.status == Status::Ok)
                .collect();
            let tokens: u64 = v.iter().map(|r| r.usage.input_tokens).sum();
            (v.len() as f64, tokens as f64)
        };
        // The same hours of the previous weekday.
        let (n_spike, tok_spike) = agent_in(spike_start);
        let (n_before, tok_before) = agent_in(spike_start - DAY_MS);
        assert!(n_spike > 2.5 * n_before, "{n_spike} vs {n_before}");
        assert!(tok_spike > 8.0 * tok_before, "{tok_spike} vs {tok_before}");
    }

    #[test]
    fn release_switch_and_guardrail_regression() {
        let recs = two_weeks(10, 2000);
        let switch = START + (14 * DAY_MS) * 6 / 10;
        let (mut old_sum, mut old_n, mut new_sum, mut new_n) = (0.0, 0, 0.0, 0);
        for r in &recs {
            let expected = if r.timestamp_ms < switch {
                "v1.4.0"
            } else {
                "v1.5.0"
            };
            assert_eq!(r.release.as_deref(), Some(expected));
            if r.timestamp_ms < switch {
                old_sum += r.stages["guardrail"];
                old_n += 1;
            } else {
                new_sum += r.stages["guardrail"];
                new_n += 1;
            }
        }
        assert!(new_sum / new_n as f64 > 1.5 * (old_sum / old_n as f64));
        let live = TrafficGenerator::new(10).live(END, 60_000, 50);
        assert!(live.iter().all(|r| r.release.as_deref() == Some("v1.5.0")));
    }

    #[test]
    fn complaints_only_in_last_three_days() {
        let recs = two_weeks(12, 2000);
        let from = END - 3 * DAY_MS;
        let mut late = 0;
        let mut late_complaints = 0;
        for r in &recs {
            let complaint =
                r.attributes.get("question_category").map(String::as_str) == Some("complaint");
            if r.timestamp_ms < from {
                assert!(!complaint, "{} at {}", r.request_id, r.timestamp_ms);
            } else if r.attributes.contains_key("question_category") {
                late += 1;
                late_complaints += complaint as usize;
            }
        }
        let share = late_complaints as f64 / late as f64;
        assert!((0.10..0.20).contains(&share), "{share}");
        assert!(recs.iter().all(|r| matches!(
            r.attributes.get("language").map(String::as_str),
            Some("ko" | "en" | "ja")
        )));
    }

    #[test]
    fn live_records_fill_the_window() {
        let mut g = TrafficGenerator::new(13);
        let before = g.history(START, START + HOUR_MS, 2000);
        let now = START + 2 * HOUR_MS;
        let live = g.live(now, 30_000, 200);
        assert_eq!(live.len(), 200);
        assert!(
            live.windows(2)
                .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
        );
        assert!(
            live.iter()
                .all(|r| (now - 30_000..now).contains(&r.timestamp_ms))
        );
        let expected_first = format!("demo-13-{}", before.len() + 1);
        assert_eq!(live[0].request_id, expected_first);
        assert!(g.live(now, 0, 3).iter().all(|r| r.timestamp_ms == now - 1));
    }

    /// Throughput: `cargo test --release -- --ignored --nocapture million`.
    #[test]
    #[ignore]
    fn million_records_throughput() {
        let mut g = TrafficGenerator::new(1);
        let t = std::time::Instant::now();
        let n = g
            .history_iter(START, START + 14 * DAY_MS, 1_000_000 / 14)
            .map(|r| r.usage.input_tokens)
            .fold((0usize, 0u64), |(n, s), x| (n + 1, s.wrapping_add(x)));
        let secs = t.elapsed().as_secs_f64();
        eprintln!("{} records in {secs:.3}s: {:.0}/s", n.0, n.0 as f64 / secs);
    }
}
