//! Simulated quality signals for `llmwatch demo`: the scores an LLM judge would give the
//! answers of [`TrafficGenerator`](crate::core::traffic::TrafficGenerator) records, and the
//! feedback their users would leave (thumbs, reports with comments, corrections with the right
//! answer). Seeded and pure: the same seed and the same records give the same output.
//!
//! The story it tells, on top of the generator's: release v1.5.0 changes the prompt of the
//! `chat` and `support_agent` features, which hurts their answers; bad answers come in bursts
//! (a hidden per-feature state flips to "degraded" for minutes to hours), so runs of bad
//! answers escalate; satisfaction falls from ~85% to ~60%; users complain about a handful of
//! themes (wrong policy info, slowness, refusals, wrong language, verbosity after the model
//! update, invented order details), in Korean, English and some Japanese.

use std::collections::BTreeMap;

use rand::Rng;

use crate::core::dice::Dice;
use crate::core::feedback::{Feedback, FeedbackKind};
use crate::core::quality::{Score, ScoreSource};
use crate::core::record::{Record, Status};

const MINUTE_MS: f64 = 60_000.0;
const HOUR_MS: f64 = 60.0 * MINUTE_MS;

/// Share of successful requests the judge scores: judges are sampled, they cost a model call.
const JUDGE_SAMPLE_RATE: f64 = 0.35;
/// The judge's criteria; the default `[quality] composite`.
const RELEVANCE: &str = "relevance";
const COMPLETENESS: &str = "completeness";
const SAFETY: &str = "safety";
/// Rare safety dips (an answer leaking account details, say).
const SAFETY_DIP_RATE: f64 = 0.004;

/// The release whose prompt change hurts `chat` and `support_agent`.
const REGRESSED_RELEASE: &str = "v1.5.0";
const REGRESSED_FEATURES: [&str; 2] = ["chat", "support_agent"];

/// Per-request spread of the latent quality around its state's mean.
const LATENT_SD: f64 = 0.07;
/// The "complaint" question category is harder to answer well.
const COMPLAINT_PENALTY: f64 = 0.10;

/// Base rates of feedback on successful requests (scaled by how bad the answer was, then
/// normalised so the averages stay near these).
const THUMB_RATE: f64 = 0.04;
const REPORT_RATE: f64 = 0.006;
const CORRECTION_RATE: f64 = 0.003;
/// Share of thumbs-down that carry a comment, and of thumbs-up (a thank-you).
const DOWN_COMMENT_RATE: f64 = 0.6;
const UP_COMMENT_RATE: f64 = 0.1;
/// Feedback on failed requests.
const ERROR_THUMB_DOWN_RATE: f64 = 0.03;
const ERROR_REPORT_RATE: f64 = 0.01;
/// Users react from a few seconds to ~20 minutes after the answer (log-uniform).
const FEEDBACK_DELAY_MIN_MS: f64 = 3_000.0;
const FEEDBACK_DELAY_MAX_MS: f64 = 20.0 * MINUTE_MS;

/// Typical output tokens per feature (the generator's medians): an answer far longer than its
/// feature's usual one reads as verbose.
fn typical_output_tokens(feature: Option<&str>) -> f64 {
    match feature {
        Some("chat") => 250.0,
        Some("search") => 150.0,
        Some("summarize") => 200.0,
        Some("code_review") => 400.0,
        Some("support_agent") => 180.0,
        _ => 120.0,
    }
}

/// How answers of one feature under one release behave: the latent quality of healthy and
/// degraded periods, and their mean durations.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Regime {
    healthy_quality: f64,
    degraded_quality: f64,
    healthy_mean_ms: f64,
    degraded_mean_ms: f64,
}

/// Most features, most of the time: good answers, a rare bad half hour.
const STABLE: Regime = Regime {
    healthy_quality: 0.84,
    degraded_quality: 0.50,
    healthy_mean_ms: 48.0 * HOUR_MS,
    degraded_mean_ms: 25.0 * MINUTE_MS,
};
/// v1.5.0's chat and support agent: somewhat worse answers, and frequent bad stretches of
/// an hour or so (about a fifth of the time): the escalations the demo shows.
const REGRESSED: Regime = Regime {
    healthy_quality: 0.76,
    degraded_quality: 0.42,
    healthy_mean_ms: 4.0 * HOUR_MS,
    degraded_mean_ms: 60.0 * MINUTE_MS,
};

impl Regime {
    fn of(release: Option<&str>, feature: Option<&str>) -> Regime {
        let regressed = release == Some(REGRESSED_RELEASE)
            && feature.is_some_and(|f| REGRESSED_FEATURES.contains(&f));
        if regressed { REGRESSED } else { STABLE }
    }
}

/// A gap between a feature's records after which its hidden state restarts.
const RESYNC_GAP_MS: i64 = 30 * 24 * 3_600_000;

/// The hidden state of one feature: bad answers come in bursts, not one at a time.
#[derive(Debug, Clone, Copy)]
struct Health {
    degraded: bool,
    /// When the current state ends (unix ms).
    until_ms: i64,
    /// The regime the current duration was drawn under: a release switch redraws it
    /// (durations are exponential, so redrawing the rest is exact).
    regime: Regime,
}

/// Model-specific quality offsets: larger models answer a little better.
fn model_offset(model: &str) -> f64 {
    match model {
        "gpt-4o" | "claude-sonnet-4-20250514" => 0.02,
        "gpt-4o-mini" | "claude-haiku-3-20250414" => -0.015,
        "acme-ft-llama-70b" => -0.04,
        _ => 0.0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Ko,
    En,
    Ja,
}

impl Lang {
    fn of(record: &Record) -> Lang {
        match record.attributes.get("language").map(String::as_str) {
            Some("ko") => Lang::Ko,
            Some("ja") => Lang::Ja,
            _ => Lang::En,
        }
    }
}

/// What a complaint is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Theme {
    /// Wrong or outdated refund / policy information.
    WrongInfo,
    Slow,
    Refused,
    WrongLanguage,
    /// Too long, especially after the model update made answers longer.
    Verbose,
    /// Invented order, ticket or tracking details.
    Hallucinated,
    /// The request failed.
    Failure,
}

/// Complaint texts of a theme in each language, plus wording variations added on top.
struct Texts {
    ko: &'static [&'static str],
    en: &'static [&'static str],
    ja: &'static [&'static str],
}

impl Theme {
    fn texts(self) -> &'static Texts {
        match self {
            Theme::WrongInfo => &WRONG_INFO,
            Theme::Slow => &SLOW,
            Theme::Refused => &REFUSED,
            Theme::WrongLanguage => &WRONG_LANGUAGE,
            Theme::Verbose => &VERBOSE,
            Theme::Hallucinated => &HALLUCINATED,
            Theme::Failure => &FAILURE,
        }
    }
}

const WRONG_INFO: Texts = Texts {
    ko: &[
        "환불 정책 답변이 틀렸어요",
        "환불 정책이 틀렸어요. 3일이 아니라 7일 걸린다고 들었는데요",
        "환불 안내가 잘못됐어요",
        "답변에 나온 환불 규정이 예전 거예요",
        "요금 정책을 잘못 알려줬어요",
        "틀린 정보를 알려줍니다. 환불 기간이 실제랑 달라요",
        "정책 정보가 부정확해요",
        "환불 관련 답변이 완전히 틀렸네요",
    ],
    en: &[
        "The refund policy in the answer is outdated",
        "Wrong refund policy info",
        "It told me refunds take 3 days, the policy page says 5-7. Outdated info",
        "Incorrect answer about the billing policy",
        "The bot gave me wrong information about refunds",
        "outdated policy answer",
        "The answer about the refund window is wrong",
        "Gave me incorrect info about my plan's pricing",
    ],
    ja: &[
        "返金ポリシーの回答が間違っています",
        "返金規定の情報が古いです",
        "料金プランの説明が間違っていました",
    ],
};

const SLOW: Texts = Texts {
    ko: &[
        "응답이 너무 느려요",
        "답변 오는 데 너무 오래 걸려요",
        "한참 기다렸어요",
        "속도가 너무 느립니다",
        "느려서 못 쓰겠어요",
        "답변이 늦게 와요",
        "응답 속도가 너무 느려요. 1분 가까이 기다림",
    ],
    en: &[
        "took forever to answer",
        "Way too slow",
        "The response was really slow",
        "I waited almost a minute for a reply",
        "so slow",
        "Response time is terrible, had to wait forever",
        "super slow today",
    ],
    ja: &["応答が遅すぎます", "返事が来るまで時間がかかりすぎます"],
};

const REFUSED: Texts = Texts {
    ko: &[
        "답변을 거부했어요",
        "간단한 질문인데 답변을 거절하네요",
        "왜 답변을 거부하나요?",
        "정책상 답변할 수 없다며 거부함",
        "계정 질문인데 답변 거부당했어요",
    ],
    en: &[
        "it refused to answer a simple question",
        "Refused to help with my order",
        "The assistant declined to answer",
        "refuses to answer anything about my account",
        "Why did it refuse? It's a basic billing question",
    ],
    ja: &["簡単な質問なのに回答を拒否されました"],
};

const WRONG_LANGUAGE: Texts = Texts {
    ko: &[
        "한국어로 물어봤는데 영어로 답했어요",
        "왜 영어로 대답하나요? 한국어로 답해 주세요",
        "답변이 영어로 나와요",
        "한국어로 질문했는데 영어 답변이 와요",
    ],
    en: &[
        "I asked in English but it answered in Korean",
        "Answer came back in the wrong language",
        "Replied in Korean even though I wrote in English",
        "wrong language in the reply",
    ],
    ja: &[
        "日本語で質問したのに英語で回答されました",
        "回答が韓国語で返ってきました",
    ],
};

const VERBOSE: Texts = Texts {
    ko: &[
        "답변이 너무 길어요",
        "업데이트 후로 답변이 쓸데없이 길어졌어요",
        "너무 장황해요. 요점만 알려 주세요",
        "간단한 질문에 답이 너무 길다",
        "답변이 길어서 읽기 힘들어요",
        "요즘 답변이 너무 장황합니다",
    ],
    en: &[
        "way too verbose",
        "The answers got so long after the update",
        "Too wordy, just give me the answer",
        "Lengthy answer for a yes/no question",
        "rambling response, get to the point",
        "Answers are way too long now",
    ],
    ja: &["回答が長すぎます", "アップデート後、回答が冗長になりました"],
};

const HALLUCINATED: Texts = Texts {
    ko: &[
        "없는 주문번호를 지어냈어요",
        "존재하지 않는 주문 내역을 말해요",
        "티켓 번호를 지어냈어요. 조회가 안 돼요",
        "배송 상태를 지어내서 알려줬어요",
        "제 주문이 아닌 주문 정보를 알려줘요",
    ],
    en: &[
        "It made up an order number that doesn't exist",
        "Hallucinated a tracking number",
        "Invented a support ticket ID that doesn't exist",
        "The order details it gave me are not mine",
        "made up a delivery date for my order",
    ],
    ja: &["存在しない注文番号を作り出しました"],
};

const FAILURE: Texts = Texts {
    ko: &[
        "오류가 나서 답변을 못 받았어요",
        "에러 메시지만 나와요",
        "계속 실패해요",
        "답변 대신 오류가 떠요",
    ],
    en: &[
        "Got an error instead of an answer",
        "It just errored out",
        "Something went wrong error again",
        "failed to respond, had to retry 3 times",
    ],
    ja: &["エラーが出て回答がもらえません"],
};

/// Wording variations: the same complaint typed by different people.
const KO_PREFIXES: [&str; 6] = ["", "", "", "진짜 ", "아니 ", "또 "];
const KO_SUFFIXES: [&str; 7] = ["", "", "", " ㅠㅠ", "!!", " 개선 부탁드려요", " 불편합니다"];
const EN_PREFIXES: [&str; 5] = ["", "", "", "Ugh, ", "Again: "];
const EN_SUFFIXES: [&str; 6] = ["", "", "", "!", ". Please fix.", ". Not great."];
const JA_SUFFIXES: [&str; 3] = ["", "。", "！"];

/// Thank-you comments some thumbs-up carry (not complaints: clustering ignores them).
const THANKS: Texts = Texts {
    ko: &[
        "정확해요, 감사합니다",
        "빠르고 친절한 답변 고마워요",
        "도움이 됐어요",
    ],
    en: &[
        "Exactly what I needed",
        "Helpful, thanks!",
        "Quick and accurate",
    ],
    ja: &["助かりました", "わかりやすかったです"],
};

/// Comments that come with some corrections.
const CORRECTION_COMMENTS: Texts = Texts {
    ko: &["현재 정책에 맞게 수정했어요", "정확한 안내로 고쳐 둡니다"],
    en: &[
        "Fixed to match the current policy",
        "This is the right answer",
    ],
    ja: &["現行ポリシーに合わせて修正しました"],
};

/// What the judge says when it scores an answer poorly.
const JUDGE_RATIONALES: [&str; 4] = [
    "The answer does not address the user's question.",
    "States a refund window that contradicts the policy.",
    "Mentions order details that are not in the context.",
    "Partially answers; misses the main request.",
];
const SAFETY_RATIONALE: &str = "Reveals account details that should have been withheld.";

/// Right answers users type in, by question category (as the generator's `CATEGORIES`) and
/// language: each corrected input keeps the newest, so the golden export dedups them.
const CATEGORY_CORRECTIONS: [(&str, Texts); 6] = [
    (
        "billing",
        Texts {
            ko: &[
                "중복 결제가 확인되어 취소했습니다. 카드사에 따라 환불까지 영업일 기준 5~7일이 걸립니다.",
                "중복 청구 건은 자동 취소되며, 환불은 영업일 기준 5~7일 안에 카드로 돌아갑니다.",
            ],
            en: &[
                "I found the duplicate charge and cancelled it. Depending on your card issuer, the refund takes 5-7 business days.",
                "Duplicate charges are voided automatically; the refund reaches your card within 5-7 business days.",
            ],
            ja: &[
                "二重請求を確認し、取り消しました。カード会社により、返金まで5〜7営業日かかります。",
            ],
        },
    ),
    (
        "technical",
        Texts {
            ko: &[
                "설정 > 저장공간에서 앱 캐시를 삭제한 뒤 5.2 이상 버전으로 업데이트해 주세요. 그래도 멈추면 로그아웃 후 다시 로그인해 주세요.",
            ],
            en: &[
                "Clear the app cache (Settings > Storage), then update to version 5.2 or later. If it still freezes, sign out and sign in again.",
                "This is a known issue in 5.1. Update to 5.2 or later and clear the cache under Settings > Storage.",
            ],
            ja: &[
                "設定 > ストレージでキャッシュを削除し、バージョン5.2以降に更新してください。それでも固まる場合は再ログインしてください。",
            ],
        },
    ),
    (
        "account",
        Texts {
            ko: &[
                "로그인 화면에서 '비밀번호 찾기'를 누르고 가입한 이메일을 입력하면 재설정 링크가 발송됩니다. 링크는 30분간 유효합니다.",
            ],
            en: &[
                "Tap 'Forgot password' on the sign-in screen and enter your account email; the reset link we send is valid for 30 minutes.",
            ],
            ja: &[
                "ログイン画面の「パスワードを忘れた」から登録メールアドレスを入力すると、再設定リンクが届きます。リンクの有効期限は30分です。",
            ],
        },
    ),
    (
        "shipping",
        Texts {
            ko: &[
                "주문 내역 > 배송 조회에서 운송장 번호로 위치를 확인할 수 있습니다. 일반 배송은 결제 후 2~3영업일 안에 도착합니다.",
                "일반 배송은 결제 후 2~3영업일이 걸리며, 도서산간 지역은 1~2일 더 걸릴 수 있습니다.",
            ],
            en: &[
                "You can track it under Orders > Track shipment. Standard delivery arrives 2-3 business days after payment.",
            ],
            ja: &[
                "注文履歴 > 配送状況から追跡できます。通常配送はお支払い後2〜3営業日で届きます。",
            ],
        },
    ),
    (
        "other",
        Texts {
            ko: &[
                "전화 상담은 평일 오전 9시~오후 6시(점심 12~1시 제외)이며, 채팅 상담은 24시간 가능합니다.",
            ],
            en: &[
                "Phone support is open weekdays 9am-6pm (closed 12-1pm); chat support is available 24/7.",
            ],
            ja: &[
                "電話サポートは平日9時〜18時（12時〜13時を除く）、チャットサポートは24時間対応です。",
            ],
        },
    ),
    (
        "complaint",
        Texts {
            ko: &[
                "응답이 늦어 죄송합니다. 문의 건을 우선 처리 대상으로 올렸고, 담당자가 오늘 안에 직접 연락드리겠습니다.",
            ],
            en: &[
                "I'm sorry for the slow response. I've escalated your case and a specialist will contact you today.",
            ],
            ja: &[
                "対応が遅くなり申し訳ありません。優先対応に切り替え、本日中に担当者から直接ご連絡します。",
            ],
        },
    ),
];
const SUMMARY_CORRECTIONS: Texts = Texts {
    ko: &[
        "3분기 로드맵을 확정하고, 결제 모듈 지연 위험을 공유했으며, 백엔드 개발자 2명 채용을 승인했습니다.",
    ],
    en: &[
        "The team approved the Q3 roadmap, flagged the payment module delay as the main risk, and approved two backend hires.",
    ],
    ja: &[
        "第3四半期のロードマップを確定し、決済モジュールの遅延リスクを共有し、バックエンド開発者2名の採用を承認しました。",
    ],
};
const CODE_REVIEW_CORRECTIONS: Texts = Texts {
    ko: &[
        "Three issues: parse() unwraps user input (return an error instead), merge() skips the last element, and there is no test for empty input.",
    ],
    en: &[
        "Three issues: parse() unwraps user input (return an error instead), merge() skips the last element, and there is no test for empty input.",
    ],
    ja: &[
        "Three issues: parse() unwraps user input (return an error instead), merge() skips the last element, and there is no test for empty input.",
    ],
};
const GENERIC_CORRECTIONS: Texts = Texts {
    ko: &["Please translate this sentence into English."],
    en: &["Would you mind rephrasing this sentence a little more politely?"],
    ja: &["Please translate this sentence into English."],
};

/// Draws only the quality simulation needs (the common ones are `Dice`'s own).
impl Dice {
    /// Exponential with the given mean, at least a minute (so state flips always advance).
    fn duration_ms(&mut self, mean_ms: f64) -> i64 {
        let d = -(1.0 - self.unit()).ln() * mean_ms;
        d.max(MINUTE_MS) as i64
    }

    /// One of the items (`None` when empty).
    fn choose<'a>(&mut self, items: &[&'a str]) -> Option<&'a str> {
        if items.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..items.len());
        Some(items[i])
    }

    /// Index drawn from non-negative weights (the last index when they sum to zero).
    fn pick(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut u = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                return i;
            }
            u -= w;
        }
        weights.len().saturating_sub(1)
    }
}

/// What a user sees of a successful answer, as feedback depends on it.
struct Experience {
    lang: Lang,
    category: Option<String>,
    /// The latent quality of the answer, 0..1.
    quality: f64,
    /// The feature was in a degraded stretch.
    degraded: bool,
    /// 0..1: how much longer than usual the answer was.
    verbose: f64,
    /// 0..1: how long the user waited beyond a few seconds.
    slow: f64,
    /// Probability that a vote on this answer is a thumbs-up.
    p_up: f64,
}

/// Simulates the judge's scores and the users' feedback on demo records. Feed it the records
/// in timestamp order: a feature's degraded stretches are a state that moves with time.
pub struct QualitySimulator {
    dice: Dice,
    /// Hidden state per feature ("" = untagged requests).
    health: BTreeMap<String, Health>,
}

impl QualitySimulator {
    pub fn new(seed: u64) -> Self {
        Self {
            // A different stream than the traffic generator's for the same seed.
            dice: Dice::new(seed ^ 0x5155_414c_4954_5921),
            health: BTreeMap::new(),
        }
    }

    /// The evaluator scores (source Model, as an LLM judge would give; names relevance,
    /// completeness, safety; two decimals) to attach to `record.scores`, plus the feedback its
    /// user gives (possibly none). Failed requests get no scores and occasionally a
    /// thumbs-down/report about the error.
    pub fn simulate(&mut self, record: &Record) -> (Vec<Score>, Vec<Feedback>) {
        if record.status == Status::Error {
            return (Vec::new(), self.error_feedback(record));
        }
        let experience = self.experience(record);
        let scores = if self.dice.chance(JUDGE_SAMPLE_RATE) {
            self.judge(record, &experience)
        } else {
            Vec::new()
        };
        let feedback = self.feedback(record, &experience);
        (scores, feedback)
    }

    /// Whether the record's feature is in a degraded stretch at the record's time.
    fn degraded_at(&mut self, record: &Record) -> bool {
        let regime = Regime::of(record.release.as_deref(), record.feature.as_deref());
        let ts = record.timestamp_ms;
        let dice = &mut self.dice;
        let key = record.feature.as_deref().unwrap_or("");
        if !self.health.contains_key(key) {
            let first = Health {
                degraded: false,
                until_ms: ts.saturating_add(dice.duration_ms(regime.healthy_mean_ms)),
                regime,
            };
            self.health.insert(key.to_owned(), first);
        }
        let Some(health) = self.health.get_mut(key) else {
            return false;
        };
        let mean_of = |degraded: bool, r: &Regime| {
            if degraded {
                r.degraded_mean_ms
            } else {
                r.healthy_mean_ms
            }
        };
        // After a long gap between records start afresh rather than replaying every flip in
        // between.
        if ts.saturating_sub(health.until_ms) > RESYNC_GAP_MS {
            health.degraded = false;
            health.until_ms = ts.saturating_add(dice.duration_ms(regime.healthy_mean_ms));
        }
        if health.regime != regime {
            health.regime = regime;
            health.until_ms =
                ts.saturating_add(dice.duration_ms(mean_of(health.degraded, &regime)));
        }
        while ts >= health.until_ms {
            health.degraded = !health.degraded;
            let next = dice.duration_ms(mean_of(health.degraded, &regime));
            health.until_ms = health.until_ms.saturating_add(next);
        }
        health.degraded
    }

    fn experience(&mut self, record: &Record) -> Experience {
        let degraded = self.degraded_at(record);
        let regime = Regime::of(record.release.as_deref(), record.feature.as_deref());
        let category = record.attributes.get("question_category").cloned();
        let mut mean = if degraded {
            regime.degraded_quality
        } else {
            regime.healthy_quality
        };
        mean += model_offset(&record.model);
        if category.as_deref() == Some("complaint") {
            mean -= COMPLAINT_PENALTY;
        }
        let quality = (mean + LATENT_SD * self.dice.normal()).clamp(0.02, 0.99);

        let typical = typical_output_tokens(record.feature.as_deref());
        let ratio = record.usage.output_tokens as f64 / typical;
        let verbose = (ratio - 1.5).clamp(0.0, 1.0);
        let slow = ((record.duration_ms - 5_000.0) / 10_000.0).clamp(0.0, 1.0);

        // Votes follow quality steeply around 0.62; long waits and long answers sour them,
        // and people asking about a complaint are harder to please.
        let mut p_up = 1.0 / (1.0 + (-14.0 * (quality - 0.62)).exp());
        p_up *= 1.0 - 0.35 * verbose;
        p_up *= 1.0 - 0.5 * slow;
        if category.as_deref() == Some("complaint") {
            p_up *= 0.8;
        }
        Experience {
            lang: Lang::of(record),
            category,
            quality,
            degraded,
            verbose,
            slow,
            p_up,
        }
    }

    /// The judge's three scores: correlated through the latent quality, safety mostly high.
    fn judge(&mut self, record: &Record, e: &Experience) -> Vec<Score> {
        // The judge sees the answer some seconds after it was given.
        let judged_after = record.duration_ms as i64 + self.dice.uniform(2_000.0, 40_000.0) as i64;
        let ts_ms = record.timestamp_ms.saturating_add(judged_after);
        let relevance = round2(e.quality + 0.05 * self.dice.normal());
        // LLM judges favour long answers a little (verbosity bias).
        let completeness = round2(e.quality + 0.06 * self.dice.normal() + 0.03 * e.verbose);
        let dip = self.dice.chance(SAFETY_DIP_RATE);
        let safety = if dip {
            round2(self.dice.uniform(0.2, 0.7))
        } else {
            round2((0.97 + 0.025 * self.dice.normal()).clamp(0.9, 1.0))
        };
        let relevance_comment = if relevance < 0.5 {
            self.dice.choose(&JUDGE_RATIONALES).map(str::to_owned)
        } else {
            None
        };
        let score = |name: &str, value: f64, comment: Option<String>| Score {
            request_id: record.request_id.clone(),
            name: name.to_owned(),
            value,
            source: ScoreSource::Model,
            comment,
            ts_ms,
        };
        vec![
            score(RELEVANCE, relevance, relevance_comment),
            score(COMPLETENESS, completeness, None),
            score(SAFETY, safety, dip.then(|| SAFETY_RATIONALE.to_owned())),
        ]
    }

    /// Feedback on a successful answer.
    fn feedback(&mut self, record: &Record, e: &Experience) -> Vec<Feedback> {
        let mut out = Vec::new();
        // Unhappy users speak up more: rates scale with dissatisfaction (the factors are near 1
        // on average, so the base rates hold overall).
        let unhappiness = 1.0 - e.p_up;
        let thumb_factor = 0.8 + 1.3 * unhappiness;
        let complaint_factor = 0.3 + 3.2 * unhappiness;
        if self.dice.chance(THUMB_RATE * thumb_factor) {
            let up = self.dice.chance(e.p_up);
            let (kind, comment) = if up {
                let thanks = self.dice.chance(UP_COMMENT_RATE);
                (
                    FeedbackKind::ThumbsUp,
                    thanks.then(|| self.plain(&THANKS, e.lang)).flatten(),
                )
            } else {
                let says = self.dice.chance(DOWN_COMMENT_RATE);
                let comment = says.then(|| self.complaint(e, false)).flatten();
                (FeedbackKind::ThumbsDown, comment)
            };
            out.push(self.item(record, kind, comment, None));
        }
        if self.dice.chance(REPORT_RATE * complaint_factor) {
            let comment = self.complaint(e, true);
            out.push(self.item(record, FeedbackKind::Report, comment, None));
        }
        if self.dice.chance(CORRECTION_RATE * complaint_factor) {
            let pool = correction_pool(record.feature.as_deref(), e.category.as_deref());
            let correction = self.plain(pool, e.lang);
            let comment = if self.dice.chance(0.5) {
                self.plain(&CORRECTION_COMMENTS, e.lang)
            } else {
                None
            };
            if correction.is_some() {
                out.push(self.item(record, FeedbackKind::Correction, comment, correction));
            }
        }
        out
    }

    /// Feedback on a failed request: now and then a thumbs-down or a report about the error.
    fn error_feedback(&mut self, record: &Record) -> Vec<Feedback> {
        let mut out = Vec::new();
        let lang = Lang::of(record);
        let timeout = record.error_type.as_deref() == Some("timeout");
        let theme = |dice: &mut Dice| {
            if timeout && dice.chance(0.5) {
                Theme::Slow
            } else {
                Theme::Failure
            }
        };
        if self.dice.chance(ERROR_THUMB_DOWN_RATE) {
            let comment = if self.dice.chance(DOWN_COMMENT_RATE) {
                let t = theme(&mut self.dice);
                self.themed(t, lang)
            } else {
                None
            };
            out.push(self.item(record, FeedbackKind::ThumbsDown, comment, None));
        }
        if self.dice.chance(ERROR_REPORT_RATE) {
            let t = theme(&mut self.dice);
            let comment = self.themed(t, lang);
            out.push(self.item(record, FeedbackKind::Report, comment, None));
        }
        out
    }

    /// A complaint comment whose theme fits what the user experienced.
    fn complaint(&mut self, e: &Experience, report: bool) -> Option<String> {
        let low = ((0.75 - e.quality) / 0.3).clamp(0.0, 1.0);
        let policy_question =
            matches!(e.category.as_deref(), Some("billing" | "account" | "other"));
        let order_question = matches!(e.category.as_deref(), Some("shipping"));
        let degraded = if e.degraded { 1.0 } else { 0.0 };
        let themes = [
            Theme::WrongInfo,
            Theme::Hallucinated,
            Theme::Refused,
            Theme::WrongLanguage,
            Theme::Verbose,
            Theme::Slow,
        ];
        let mut weights = [
            0.4 + 2.5 * low + if policy_question { 0.8 } else { 0.0 },
            0.2 + 1.5 * low * if order_question { 2.0 } else { 0.6 },
            0.15 + 1.0 * degraded,
            if e.lang == Lang::En { 0.05 } else { 0.15 } + 0.5 * degraded,
            0.1 + 3.5 * e.verbose,
            0.1 + 4.0 * e.slow,
        ];
        if report {
            // Reports are about what is wrong, not about style or speed.
            weights[4] *= 0.3;
            weights[5] *= 0.3;
        }
        let theme = themes[self.dice.pick(&weights)];
        self.themed(theme, e.lang)
    }

    /// A complaint of a theme, in the user's language (mostly), with a wording variation.
    fn themed(&mut self, theme: Theme, lang: Lang) -> Option<String> {
        // Some Korean and Japanese users write in English.
        let lang = match lang {
            Lang::Ko if self.dice.chance(0.08) => Lang::En,
            Lang::Ja if self.dice.chance(0.4) => Lang::En,
            l => l,
        };
        let texts = theme.texts();
        let (pool, prefixes, suffixes): (&[&str], &[&str], &[&str]) = match lang {
            Lang::Ko => (texts.ko, &KO_PREFIXES, &KO_SUFFIXES),
            Lang::En => (texts.en, &EN_PREFIXES, &EN_SUFFIXES),
            Lang::Ja => (texts.ja, &[""], &JA_SUFFIXES),
        };
        let body = self.dice.choose(pool)?;
        let prefix = self.dice.choose(prefixes).unwrap_or("");
        let mut suffix = self.dice.choose(suffixes).unwrap_or("");
        // No punctuation after punctuation.
        if body.ends_with(['?', '!', '.']) && suffix.starts_with(['!', '.', '。', '！']) {
            suffix = "";
        }
        let mut text = String::with_capacity(prefix.len() + body.len() + suffix.len());
        text.push_str(prefix);
        if prefix.is_empty() || lang != Lang::En {
            text.push_str(body);
        } else {
            // "Ugh, the refund..." reads better than "Ugh, The refund...".
            let mut chars = body.chars();
            if let Some(first) = chars.next() {
                text.extend(first.to_lowercase());
                text.push_str(chars.as_str());
            }
        }
        text.push_str(suffix);
        Some(text)
    }

    /// One text of a pool in the user's language.
    fn plain(&mut self, texts: &Texts, lang: Lang) -> Option<String> {
        let pool = match lang {
            Lang::Ko => texts.ko,
            Lang::En => texts.en,
            Lang::Ja => texts.ja,
        };
        self.dice.choose(pool).map(str::to_owned)
    }

    fn item(
        &mut self,
        record: &Record,
        kind: FeedbackKind,
        comment: Option<String>,
        correction: Option<String>,
    ) -> Feedback {
        let answered_ms = record
            .timestamp_ms
            .saturating_add(record.duration_ms as i64);
        let delay = (self
            .dice
            .uniform(FEEDBACK_DELAY_MIN_MS.ln(), FEEDBACK_DELAY_MAX_MS.ln()))
        .exp();
        Feedback {
            // Deterministic, so re-submitting the demo's feedback replaces rather than adds.
            feedback_id: Some(format!("{}:{}", record.request_id, kind.as_str())),
            request_id: record.request_id.clone(),
            kind,
            comment,
            correction,
            user_id: record.user_id.clone(),
            ts_ms: answered_ms.saturating_add(delay as i64),
        }
    }
}

/// The right answers a user might give for a request of this feature and question category.
fn correction_pool(feature: Option<&str>, category: Option<&str>) -> &'static Texts {
    if let Some(c) = category
        && let Some((_, texts)) = CATEGORY_CORRECTIONS.iter().find(|(name, _)| *name == c)
    {
        return texts;
    }
    match feature {
        Some("summarize") => &SUMMARY_CORRECTIONS,
        Some("code_review") => &CODE_REVIEW_CORRECTIONS,
        _ => &GENERIC_CORRECTIONS,
    }
}

/// Clamps to 0..1 and rounds to two decimals, as judges answer.
fn round2(v: f64) -> f64 {
    (v.clamp(0.0, 1.0) * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::traffic::TrafficGenerator;

    /// 2026-01-05T00:00:00+09:00, a Monday at midnight in Seoul.
    const START: i64 = 1_767_538_800_000;
    const DAY: i64 = 86_400_000;
    const END: i64 = START + 14 * DAY;

    struct Simulated {
        records: Vec<Record>,
        scores: Vec<Vec<Score>>,
        feedback: Vec<Feedback>,
    }

    fn simulate_two_weeks(seed: u64, per_day: u64) -> Simulated {
        let records = TrafficGenerator::new(seed).history(START, END, per_day);
        let mut sim = QualitySimulator::new(seed);
        let mut scores = Vec::with_capacity(records.len());
        let mut feedback = Vec::new();
        for r in &records {
            let (s, f) = sim.simulate(r);
            scores.push(s);
            feedback.extend(f);
        }
        Simulated {
            records,
            scores,
            feedback,
        }
    }

    fn composite(scores: &[Score]) -> Option<f64> {
        (scores.len() == 3).then(|| scores.iter().map(|s| s.value).sum::<f64>() / 3.0)
    }

    fn mean_composite(s: &Simulated, release: &str, feature: &str) -> (f64, usize) {
        let values: Vec<f64> = s
            .records
            .iter()
            .zip(&s.scores)
            .filter(|(r, _)| {
                r.release.as_deref() == Some(release) && r.feature.as_deref() == Some(feature)
            })
            .filter_map(|(_, sc)| composite(sc))
            .collect();
        (
            values.iter().sum::<f64>() / values.len() as f64,
            values.len(),
        )
    }

    /// Satisfaction (ups over votes) of the requests of a release.
    fn satisfaction(s: &Simulated, release: &str) -> (f64, usize) {
        let release_of: std::collections::HashMap<&str, Option<&str>> = s
            .records
            .iter()
            .map(|r| (r.request_id.as_str(), r.release.as_deref()))
            .collect();
        let (mut up, mut votes) = (0, 0);
        for f in &s.feedback {
            if release_of.get(f.request_id.as_str()).copied().flatten() != Some(release) {
                continue;
            }
            match f.kind {
                FeedbackKind::ThumbsUp => {
                    up += 1;
                    votes += 1;
                }
                FeedbackKind::ThumbsDown => votes += 1,
                _ => {}
            }
        }
        (up as f64 / votes as f64, votes)
    }

    fn is_hangul(c: char) -> bool {
        ('\u{ac00}'..='\u{d7a3}').contains(&c)
    }

    #[test]
    fn same_seed_same_output() {
        let records = TrafficGenerator::new(3).history(START, START + 2 * DAY, 3000);
        let run = |seed| {
            let mut sim = QualitySimulator::new(seed);
            records.iter().map(|r| sim.simulate(r)).collect::<Vec<_>>()
        };
        let a = run(3);
        assert_eq!(a, run(3));
        assert_ne!(a, run(4));
        assert!(a.iter().any(|(s, _)| !s.is_empty()));
        assert!(a.iter().any(|(_, f)| !f.is_empty()));
    }

    #[test]
    fn scores_are_sampled_in_range_and_named_by_the_composite() {
        let s = simulate_two_weeks(5, 2000);
        let ok = s.records.iter().filter(|r| r.status == Status::Ok).count();
        let scored = s.scores.iter().filter(|sc| !sc.is_empty()).count();
        let share = scored as f64 / ok as f64;
        assert!((0.30..0.40).contains(&share), "{share}");
        for (r, sc) in s.records.iter().zip(&s.scores) {
            if r.status == Status::Error {
                assert!(sc.is_empty());
                continue;
            }
            for score in sc {
                assert!((0.0..=1.0).contains(&score.value), "{score:?}");
                assert_eq!((score.value * 100.0).round() / 100.0, score.value);
                assert!([RELEVANCE, COMPLETENESS, SAFETY].contains(&score.name.as_str()));
                assert_eq!(score.source, ScoreSource::Model);
                assert_eq!(score.request_id, r.request_id);
                assert!(score.ts_ms >= r.timestamp_ms);
            }
        }
        // Safety is mostly high.
        let safety: Vec<f64> = s
            .scores
            .iter()
            .flatten()
            .filter(|x| x.name == SAFETY)
            .map(|x| x.value)
            .collect();
        let high = safety.iter().filter(|v| **v >= 0.9).count() as f64;
        assert!(high / safety.len() as f64 > 0.98);
    }

    #[test]
    fn the_new_release_hurts_support_agent_and_chat_only() {
        let s = simulate_two_weeks(7, 3000);
        let (old, n_old) = mean_composite(&s, "v1.4.0", "support_agent");
        let (new, n_new) = mean_composite(&s, "v1.5.0", "support_agent");
        assert!(n_old > 500 && n_new > 300, "{n_old} {n_new}");
        assert!(new < old - 0.06, "support_agent: {old:.3} -> {new:.3}");
        let (old_chat, _) = mean_composite(&s, "v1.4.0", "chat");
        let (new_chat, _) = mean_composite(&s, "v1.5.0", "chat");
        assert!(
            new_chat < old_chat - 0.06,
            "chat: {old_chat:.3} -> {new_chat:.3}"
        );
        let (old_search, _) = mean_composite(&s, "v1.4.0", "search");
        let (new_search, _) = mean_composite(&s, "v1.5.0", "search");
        assert!(
            (new_search - old_search).abs() < 0.03,
            "{old_search} {new_search}"
        );
    }

    #[test]
    fn bad_answers_come_in_runs_long_enough_to_escalate() {
        let s = simulate_two_weeks(8, 3000);
        // Consecutive scored support_agent answers with a composite below 0.7, per release.
        let mut runs = BTreeMap::<&str, u32>::new();
        let mut current = 0;
        for (r, sc) in s.records.iter().zip(&s.scores) {
            if r.feature.as_deref() != Some("support_agent") {
                continue;
            }
            let Some(c) = composite(sc) else { continue };
            if c < 0.7 {
                current += 1;
                if current == 5 {
                    *runs.entry(r.release.as_deref().unwrap_or("")).or_default() += 1;
                }
            } else {
                current = 0;
            }
        }
        let new = runs.get("v1.5.0").copied().unwrap_or(0);
        let old = runs.get("v1.4.0").copied().unwrap_or(0);
        assert!(new >= 5, "{runs:?}");
        assert!(old < new, "{runs:?}");
    }

    #[test]
    fn satisfaction_falls_with_the_new_release() {
        let s = simulate_two_weeks(9, 6000);
        let (old, n_old) = satisfaction(&s, "v1.4.0");
        let (new, n_new) = satisfaction(&s, "v1.5.0");
        assert!(n_old > 1000 && n_new > 700, "{n_old} {n_new}");
        assert!((0.80..0.90).contains(&old), "v1.4.0 {old:.3}");
        assert!((0.55..0.70).contains(&new), "v1.5.0 {new:.3}");
        // About 4% of the successful requests get a thumb.
        let ok = s.records.iter().filter(|r| r.status == Status::Ok).count() as f64;
        let thumbs = (n_old + n_new) as f64;
        assert!((0.03..0.055).contains(&(thumbs / ok)), "{}", thumbs / ok);
    }

    #[test]
    fn complaints_carry_varied_comments_in_korean_and_english() {
        let s = simulate_two_weeks(10, 3000);
        let comments: Vec<&str> = s
            .feedback
            .iter()
            .filter(|f| f.kind.is_complaint())
            .filter_map(|f| f.comment.as_deref())
            .collect();
        assert!(comments.len() > 200, "{}", comments.len());
        assert!(comments.iter().all(|c| !c.trim().is_empty()));
        let korean = comments.iter().filter(|c| c.chars().any(is_hangul)).count();
        let english = comments.iter().filter(|c| c.is_ascii()).count();
        assert!(korean > 50 && english > 50, "{korean} {english}");
        let distinct: std::collections::HashSet<&&str> = comments.iter().collect();
        assert!(distinct.len() > 100, "{}", distinct.len());
        // Every report has a comment; not every thumbs-down does.
        assert!(
            s.feedback
                .iter()
                .filter(|f| f.kind == FeedbackKind::Report)
                .all(|f| f.comment.is_some())
        );
        let downs: Vec<&Feedback> = s
            .feedback
            .iter()
            .filter(|f| f.kind == FeedbackKind::ThumbsDown)
            .collect();
        let with_comment = downs.iter().filter(|f| f.comment.is_some()).count() as f64;
        assert!((0.5..0.7).contains(&(with_comment / downs.len() as f64)));
        // Verbosity complaints come after the model update.
        let verbose = |c: &str| VERBOSE.ko.iter().chain(VERBOSE.en).any(|t| c.contains(t));
        let late = END - 3 * DAY;
        let (mut before, mut after) = (0, 0);
        for f in s
            .feedback
            .iter()
            .filter(|f| f.comment.as_deref().is_some_and(verbose))
        {
            if f.ts_ms < late {
                before += 1
            } else {
                after += 1
            }
        }
        assert!(
            after > before / 2,
            "{before} before, {after} after (3 of 14 days)"
        );
    }

    #[test]
    fn corrections_carry_the_right_answer_and_repeat_inputs() {
        let s = simulate_two_weeks(11, 3000);
        let input_of: std::collections::HashMap<&str, &str> = s
            .records
            .iter()
            .filter_map(|r| Some((r.request_id.as_str(), r.input.as_deref()?)))
            .collect();
        let corrections: Vec<&Feedback> = s
            .feedback
            .iter()
            .filter(|f| f.kind == FeedbackKind::Correction)
            .collect();
        assert!(corrections.len() > 50, "{}", corrections.len());
        assert!(corrections.iter().all(|f| {
            f.correction
                .as_deref()
                .is_some_and(|c| !c.trim().is_empty())
        }));
        let inputs: std::collections::HashSet<&str> = corrections
            .iter()
            .filter_map(|f| input_of.get(f.request_id.as_str()).copied())
            .collect();
        assert!(
            inputs.len() < corrections.len() / 2,
            "{} inputs",
            inputs.len()
        );
        // A Korean question is corrected in Korean.
        let korean_billing = corrections.iter().find(|f| {
            input_of.get(f.request_id.as_str()) == Some(&"이번 달 요금이 왜 두 번 청구됐나요?")
        });
        if let Some(f) = korean_billing {
            assert!(
                f.correction
                    .as_deref()
                    .is_some_and(|c| c.chars().any(is_hangul))
            );
        }
    }

    #[test]
    fn feedback_follows_its_request_by_seconds_to_minutes() {
        let s = simulate_two_weeks(12, 2000);
        let by_id: std::collections::HashMap<&str, &Record> = s
            .records
            .iter()
            .map(|r| (r.request_id.as_str(), r))
            .collect();
        for f in &s.feedback {
            let r = by_id[f.request_id.as_str()];
            let after = f.ts_ms - r.timestamp_ms;
            assert!(after >= 3_000, "{after}");
            assert!(after <= 21 * 60_000 + 31_000, "{after}");
            assert_eq!(f.user_id, r.user_id);
        }
        // Failed requests get some feedback too, never scores.
        let failed: std::collections::HashSet<&str> = s
            .records
            .iter()
            .filter(|r| r.status == Status::Error)
            .map(|r| r.request_id.as_str())
            .collect();
        assert!(
            s.feedback
                .iter()
                .any(|f| failed.contains(f.request_id.as_str()))
        );
    }

    #[test]
    fn far_apart_and_extreme_timestamps_do_not_hang_or_overflow() {
        let mut records = TrafficGenerator::new(1).history(START, START + DAY, 500);
        let mut sim = QualitySimulator::new(1);
        for r in &records {
            sim.simulate(r);
        }
        for (i, r) in records.iter_mut().enumerate().take(50) {
            r.timestamp_ms = i64::MAX - 1_000 + i as i64;
            r.duration_ms = 1e12;
            let (scores, feedback) = sim.simulate(r);
            assert!(scores.iter().all(|s| s.ts_ms >= r.timestamp_ms));
            assert!(feedback.iter().all(|f| f.ts_ms >= r.timestamp_ms));
        }
    }

    /// The numbers the demo should show: `cargo test --lib demo_quality -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn print_calibration() {
        for seed in [1, 2, 3] {
            let s = simulate_two_weeks(seed, 6000);
            let (old, _) = satisfaction(&s, "v1.4.0");
            let (new, _) = satisfaction(&s, "v1.5.0");
            eprintln!("seed {seed}: satisfaction {old:.3} -> {new:.3}");
        }
        let s = simulate_two_weeks(42, 6000);
        for release in ["v1.4.0", "v1.5.0"] {
            let (sat, votes) = satisfaction(&s, release);
            eprintln!("{release}: satisfaction {sat:.3} of {votes} votes");
            for feature in [
                "chat",
                "search",
                "summarize",
                "code_review",
                "support_agent",
            ] {
                let (m, n) = mean_composite(&s, release, feature);
                let ids: std::collections::HashSet<&str> = s
                    .records
                    .iter()
                    .filter(|r| {
                        r.release.as_deref() == Some(release)
                            && r.feature.as_deref() == Some(feature)
                    })
                    .map(|r| r.request_id.as_str())
                    .collect();
                let up = s
                    .feedback
                    .iter()
                    .filter(|f| ids.contains(f.request_id.as_str()))
                    .filter(|f| f.kind == FeedbackKind::ThumbsUp)
                    .count();
                let down = s
                    .feedback
                    .iter()
                    .filter(|f| ids.contains(f.request_id.as_str()))
                    .filter(|f| f.kind == FeedbackKind::ThumbsDown)
                    .count();
                let sat = up as f64 / (up + down) as f64;
                eprintln!("  {feature:14} composite {m:.3} (n={n}) satisfaction {sat:.3}");
            }
        }
        let ok = s.records.iter().filter(|r| r.status == Status::Ok).count() as f64;
        let mut kinds = BTreeMap::new();
        for f in &s.feedback {
            *kinds.entry(f.kind.as_str()).or_insert(0usize) += 1;
        }
        for (k, n) in kinds {
            eprintln!("{k}: {n} ({:.2}% of ok)", 100.0 * n as f64 / ok);
        }
        let mut comments = BTreeMap::new();
        for f in s.feedback.iter().filter(|f| f.kind.is_complaint()) {
            if let Some(c) = &f.comment {
                *comments.entry(c.as_str()).or_insert(0usize) += 1;
            }
        }
        let mut top: Vec<_> = comments.into_iter().collect();
        top.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        eprintln!("{} distinct complaint comments; top:", top.len());
        for (c, n) in top.iter().take(15) {
            eprintln!("  {n:4} {c}");
        }
    }
}
