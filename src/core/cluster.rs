//! Complaint clustering: groups free-text feedback comments (Korean and English, often mixed)
//! into themes, offline and deterministically, with no learned model.
//!
//! The method, step by step:
//!
//! 1. **Selection.** Blank comments are ignored; of the rest, the newest [`MAX_COMPLAINTS`] are
//!    kept (ties by request id, then comment), and each comment is read up to
//!    [`MAX_COMMENT_CHARS`] characters. Both bound time and memory.
//! 2. **Normalisation.** Unicode lowercase; apostrophes are dropped (`don't` -> `dont`); words
//!    are runs of alphanumeric characters, also split where the script changes between
//!    Hangul/CJK and the rest (`GPT가` -> `gpt`, `가`). Pure numbers and jamo-only runs (`ㅋㅋ`,
//!    `ㅠㅠ`) are dropped. English words lose a built-in stopword list, and contractions of
//!    negation become `not`. Hangul words lose common particles and verb endings (`환불이` ->
//!    `환불`, `틀렸어요` -> `틀렸`, longest suffix first, at most twice, only while a stem of at
//!    least 2 characters remains) and a Korean stopword list (`너무`, `정말`, `좀`, ...);
//!    regular English plurals fold to the singular (`policies` -> `policy`).
//!    Negations and words present in nearly every complaint about an assistant (`answer`,
//!    `question`, `bot`, `답변`, `질문`, `안`, `못`, ...) are kept as *weak* words: they only
//!    take part in bigrams, so they cannot link unrelated complaints on their own but still make
//!    phrases such as `not answer` or `wrong answer`. A comment left without any feature (only
//!    punctuation, emoji or stopwords) is ignored like a blank one.
//! 3. **Features**, in three blocks:
//!    - *words*: unigrams of the non-weak words and bigrams of consecutive kept words;
//!    - *characters*: 3-grams of each non-weak Latin word with `<`/`>` boundary markers, 2-grams
//!      of each non-weak Hangul/CJK stem with the same markers (`<느`, `느려`, `려>`), so
//!      inflections and typos still overlap;
//!    - *concepts*: a small hand-written bilingual lexicon of complaint concepts ([`CONCEPTS`]:
//!      slow, wrong, refusal, language, rude, cut off, ...) maps cue words of both languages to
//!      one shared feature. Without it a Korean and an English comment on the same problem share
//!      nothing, and every theme would split by language.
//!
//!    Each block is weighted TF-IDF (sublinear tf `1 + ln tf`, smoothed idf
//!    `ln((1 + n) / (1 + df)) + 1`, documents = complaints), L2-normalised on its own, scaled so
//!    its squared norm is its share ([`WORD_SHARE`], [`CHAR_SHARE`], [`CONCEPT_SHARE`]); the
//!    whole vector is then L2-normalised again (a comment without concepts keeps its full
//!    weight on words and characters). The cosine of two comments is thus a weighted mix of
//!    their word, character and concept cosines. A vector keeps its [`MAX_FEATURES`] heaviest
//!    features: only comments of more than about 10 words lose any, mostly common character
//!    n-grams, and it bounds the cost of a similarity.
//! 4. **Collapse.** Comments with the same normalised word sequence have the same vector: they
//!    become one point weighted by their number of complaints, so identical comments always
//!    land together and duplicates cost nothing. Points are sorted by that sequence; every later
//!    tie is broken by this canonical order or by text, so the output does not depend on the
//!    input order.
//! 5. **Clustering.** Exact agglomerative clustering with average linkage (UPGMA, weighted by
//!    complaints) on cosine similarity, cut at [`MERGE_THRESHOLD`]: two groups merge only while
//!    the mean similarity over all their complaint pairs is at least the threshold. It is
//!    computed with the nearest-neighbour-chain algorithm over the full similarity matrix (the
//!    upper triangle in `f32`), which gives the same groups as greedily merging the most similar
//!    pair; a group whose best partner is below the threshold is final at once (average
//!    linkage is reducible, so merges elsewhere can never bring a partner above it). For `n`
//!    distinct normalised comments, time is `O(n^2)`: the similarities through an inverted
//!    index (at most [`MAX_FEATURES`] multiply-adds per pair, far fewer on real text), then
//!    `O(n)` work per merge or chain step. Memory is `2 n^2` bytes, 50 MB at the 5,000 cap,
//!    freed before the clusters are described. Measured in release on a shared 2-core VM: 5,000
//!    distinct generated comments in about 0.4 s, 5,000 short ones with many duplicates in
//!    0.03 s, and an adversarial 5,000 long comments over 30 words (every pair similar) in
//!    about 1.1 s.
//! 6. **Description.** Groups are ranked by number of complaints, then newest complaint, then
//!    label. A label is up to 3 word features (unigram or bigram, never a character n-gram or a
//!    concept) of highest weight in the group centroid, dropping a unigram already inside a
//!    chosen bigram. The examples are the group's distinct comments closest to the centroid (one
//!    per normalised form first, the most frequent spelling of it).

use rustc_hash::FxHashMap;
use serde::Serialize;

/// One complaint to cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Complaint {
    pub request_id: String,
    pub comment: String,
    pub ts_ms: i64,
}

/// A group of similar complaints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComplaintCluster {
    /// Up to 3 terms characterising the cluster (highest TF-IDF weight in the cluster's centroid,
    /// real words, not char n-grams), most characteristic first.
    pub label: Vec<String>,
    /// Number of complaints (entries, not distinct request ids).
    pub count: usize,
    /// Request ids of the cluster's complaints (deduplicated, newest first by ts_ms, ties by
    /// request_id).
    pub request_ids: Vec<String>,
    /// Two example comments (fewer if the cluster is smaller): the ones closest to the centroid,
    /// distinct texts, ties broken deterministically.
    pub examples: Vec<String>,
}

/// Most complaints clustered at once (the newest are kept); bounds time and memory.
pub const MAX_COMPLAINTS: usize = 5_000;

/// Characters of a comment read for its features: complaints are short, and this bounds the
/// cost of a pasted wall of text.
pub const MAX_COMMENT_CHARS: usize = 500;

/// Most features kept in a comment's vector, the heaviest: only long comments lose any (a
/// 10-word English comment has about 70), and it bounds the similarity matrix's cost to
/// `MAX_FEATURES` multiply-adds per pair.
pub const MAX_FEATURES: usize = 64;

/// Mean cosine similarity (average linkage) at or above which two groups merge. Two short
/// comments sharing only a concept score about [`CONCEPT_SHARE`] (0.4), sharing two words about
/// 0.4 too, sharing a single word 0.1 to 0.2 (measured on short Korean and English comments).
/// On the planted corpus of the tests every threshold from 0.1 to 0.35 gives the same themes;
/// 0.25 keeps comments that share one word apart and lets a shared concept or phrase merge.
pub const MERGE_THRESHOLD: f32 = 0.25;

/// Share of the squared norm of a comment's vector held by word unigrams and bigrams.
pub const WORD_SHARE: f32 = 0.35;
/// Share held by character n-grams.
pub const CHAR_SHARE: f32 = 0.25;
/// Share held by the concept lexicon.
pub const CONCEPT_SHARE: f32 = 0.40;

const LABEL_TERMS: usize = 3;
const EXAMPLES: usize = 2;

/// Complaint concepts and their cue words, matched against normalised words (stems for
/// Hangul): a cue ending in `*` matches as a prefix, any other exactly. Deliberately generic
/// (the usual complaints about an assistant), not tuned to any data set.
#[rustfmt::skip]
pub const CONCEPTS: &[(&str, &[&str])] = &[
    ("slow", &[
        "slow*", "forever", "lag*", "latency", "delay*", "sluggish", "wait*", "timeout*", "speed",
        "느리*", "느려*", "느립*", "느린*", "느림*", "늦*", "오래", "오래걸*", "지연*", "기다리*",
        "기다려*", "기다렸*", "로딩*", "렉*", "버벅*", "속도*",
    ]),
    ("wrong", &[
        "wrong*", "incorrect*", "inaccura*", "outdated", "false*", "mistake*", "mistaken",
        "untrue", "nonsense", "misinform*", "틀리*", "틀렸*", "틀린*", "틀립*",
        "틀려*", "잘못*", "부정확*", "엉터리*", "거짓*", "오래된*", "오답*", "헛소리*", "예전*",
        "옛날*",
    ]),
    ("fabricated", &[
        "invent*", "fabricat*", "fake*", "hallucinat*", "nonexist*", "지어내*",
        "지어낸*", "지어냈*", "만들어낸*", "만들어냈*", "가짜*", "존재하지*", "없는번호*",
    ]),
    ("refusal", &[
        "refus*", "declin*", "reject*", "거부*", "거절*", "회피*",
    ]),
    ("language", &[
        "english", "korean", "language*", "translat*", "한국어*", "영어*", "언어*", "번역*",
        "한글*", "영문*",
    ]),
    ("rude", &[
        "rude*", "impolite", "disrespect*", "condescend*", "tone", "attitude", "arrogant", "무례*",
        "불친절*", "말투*", "반말*", "태도*", "건방*",
    ]),
    ("cut_off", &[
        "truncat*", "incomplete", "unfinished", "cutoff", "cut", "끊기*", "끊겨*", "끊긴*", "끊김*",
        "잘려*", "잘리*", "잘린*", "미완성*",
    ]),
    ("repetition", &[
        "repeat*", "repetit*", "loop*", "반복*", "되풀이*",
    ]),
    ("irrelevant", &[
        "irrelevant", "unrelated", "offtopic", "엉뚱*", "상관없*", "관련없*", "동문서답*",
    ]),
    ("failure", &[
        "error*", "crash*", "fail*", "broken", "bug*", "에러*", "오류*", "실패*", "먹통*", "버그*",
    ]),
    ("verbose", &[
        "verbose", "lengthy", "wordy", "rambl*", "장황*", "길어*", "길다*", "길게*", "긴답*",
    ]),
    ("unhelpful", &[
        "useless", "unhelpful", "vague", "generic", "pointless", "쓸모없*", "쓸데없*", "애매*",
        "모호*", "성의없*",
    ]),
];

/// Clusters complaint comments; returns the `top` biggest clusters, biggest first (ties: the
/// cluster with the newest complaint first, then by label). Blank comments are ignored.
/// Deterministic whatever the input order.
pub fn cluster_complaints(complaints: &[Complaint], top: usize) -> Vec<ComplaintCluster> {
    cluster_with_threshold(complaints, top, MERGE_THRESHOLD)
}

/// [`cluster_complaints`] with another merge threshold (the tests probe its neighbourhood).
fn cluster_with_threshold(
    complaints: &[Complaint],
    top: usize,
    threshold: f32,
) -> Vec<ComplaintCluster> {
    if top == 0 {
        return Vec::new();
    }
    let points = collapse(&newest_non_blank(complaints));
    if points.is_empty() {
        return Vec::new();
    }
    let space = FeatureSpace::build(&points);
    let weights: Vec<f64> = points.iter().map(|p| p.members.len() as f64).collect();
    let mut similarity = cosine_triangle(&space.vectors, space.kinds.len());
    let roots = average_linkage(&mut similarity, &weights, threshold);
    drop(similarity);

    let mut groups: FxHashMap<usize, Vec<usize>> = FxHashMap::default();
    for (point, &root) in roots.iter().enumerate() {
        groups.entry(root).or_default().push(point);
    }
    let mut clusters: Vec<(ComplaintCluster, i64)> = groups
        .into_values()
        .map(|members| describe(&members, &points, &space))
        .collect();
    clusters.sort_by(|(a, a_newest), (b, b_newest)| {
        b.count
            .cmp(&a.count)
            .then_with(|| b_newest.cmp(a_newest))
            .then_with(|| a.label.cmp(&b.label))
            .then_with(|| a.request_ids.cmp(&b.request_ids))
            .then_with(|| a.examples.cmp(&b.examples))
    });
    clusters.truncate(top);
    clusters.into_iter().map(|(cluster, _)| cluster).collect()
}

// ------------------------------------------------------------------------------ selection

/// The non-blank complaints, at most [`MAX_COMPLAINTS`], the newest kept.
fn newest_non_blank(complaints: &[Complaint]) -> Vec<&Complaint> {
    let mut kept: Vec<&Complaint> = complaints
        .iter()
        .filter(|c| !c.comment.trim().is_empty())
        .collect();
    if kept.len() > MAX_COMPLAINTS {
        // A total order on content, so which complaints are kept never depends on input order.
        kept.sort_by(|a, b| {
            b.ts_ms
                .cmp(&a.ts_ms)
                .then_with(|| a.request_id.cmp(&b.request_id))
                .then_with(|| a.comment.cmp(&b.comment))
        });
        kept.truncate(MAX_COMPLAINTS);
    }
    kept
}

/// Comments with the same normalised form: one point of the clustering.
struct Point {
    /// The normalised words, joined by spaces: the canonical sort key.
    key: String,
    tokens: Vec<Token>,
    /// `(ts_ms, request_id)` of each complaint.
    members: Vec<(i64, String)>,
    /// Distinct trimmed comment texts with their number of complaints, most frequent first
    /// (ties by text).
    spellings: Vec<(String, usize)>,
}

impl Point {
    /// The most frequent spelling.
    fn text(&self) -> &str {
        self.spellings.first().map_or("", |(text, _)| text)
    }
}

/// Groups complaints by normalised form, dropping those without features; sorted by form.
fn collapse(complaints: &[&Complaint]) -> Vec<Point> {
    let mut index: FxHashMap<String, usize> = FxHashMap::default();
    let mut points: Vec<Point> = Vec::new();
    let mut spellings: Vec<FxHashMap<String, usize>> = Vec::new();
    for complaint in complaints {
        let tokens = tokenize(&complaint.comment);
        if !has_features(&tokens) {
            continue;
        }
        let key = tokens
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let at = *index.entry(key.clone()).or_insert_with(|| {
            points.push(Point {
                key,
                tokens,
                members: Vec::new(),
                spellings: Vec::new(),
            });
            spellings.push(FxHashMap::default());
            points.len() - 1
        });
        points[at]
            .members
            .push((complaint.ts_ms, complaint.request_id.clone()));
        *spellings[at]
            .entry(complaint.comment.trim().to_string())
            .or_default() += 1;
    }
    for (point, texts) in points.iter_mut().zip(spellings) {
        point.spellings = texts.into_iter().collect();
        point
            .spellings
            .sort_by(|(a, a_n), (b, b_n)| b_n.cmp(a_n).then_with(|| a.cmp(b)));
    }
    points.sort_by(|a, b| a.key.cmp(&b.key));
    points
}

// -------------------------------------------------------------------------- normalisation

/// Whether a kept word stands on its own or only inside bigrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Content,
    /// Negations and words present in nearly every complaint: bigrams only.
    Weak,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    role: Role,
}

/// A comment's kept words, in order.
fn tokenize(comment: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut word_syllabic = false;
    let chars = comment
        .chars()
        .take(MAX_COMMENT_CHARS)
        .flat_map(char::to_lowercase);
    for ch in chars {
        if matches!(ch, '\'' | '\u{2018}' | '\u{2019}' | '`') {
            continue;
        }
        if ch.is_alphanumeric() {
            let syllabic = is_syllabic(ch);
            if !word.is_empty() && syllabic != word_syllabic {
                push_word(&mut tokens, &word);
                word.clear();
            }
            word_syllabic = syllabic;
            word.push(ch);
        } else if !word.is_empty() {
            push_word(&mut tokens, &word);
            word.clear();
        }
    }
    if !word.is_empty() {
        push_word(&mut tokens, &word);
    }
    tokens
}

/// Whether the tokens yield at least one feature (a unigram needs a content word, a bigram two
/// words).
fn has_features(tokens: &[Token]) -> bool {
    tokens.len() >= 2 || tokens.iter().any(|t| t.role == Role::Content)
}

/// Normalises one word and keeps it unless it is noise.
fn push_word(tokens: &mut Vec<Token>, word: &str) {
    if word.chars().all(char::is_numeric) {
        return; // amounts, dates, ids: too specific to characterise a complaint
    }
    let first = word.chars().next().unwrap_or(' ');
    let token = if is_syllabic(first) {
        if word.chars().all(is_compatibility_jamo) {
            return; // ㅋㅋ, ㅠㅠ: laughter and tears, not content
        }
        let stem = strip_korean_suffixes(word);
        if is_korean_stopword(word) || is_korean_stopword(stem) {
            return;
        }
        let role = if is_korean_weak(stem) {
            Role::Weak
        } else {
            Role::Content
        };
        Token {
            text: stem.to_string(),
            role,
        }
    } else {
        let word = if is_negation(word) { "not" } else { word };
        if is_english_stopword(word) {
            return;
        }
        let word = singular(word);
        let role = if word == "not" || is_english_weak(&word) {
            Role::Weak
        } else {
            Role::Content
        };
        Token { text: word, role }
    };
    tokens.push(token);
}

/// Folds a regular English plural (`policies` -> `policy`, `fees` -> `fee`) so both forms are
/// one word feature and one label; `-ss`, `-us`, `-is` endings and short words are left alone.
fn singular(word: &str) -> String {
    let chars = word.chars().count();
    if chars > 4
        && let Some(stem) = word.strip_suffix("ies")
    {
        return format!("{stem}y");
    }
    let keep = chars <= 3 || ["ss", "us", "is"].iter().any(|end| word.ends_with(end));
    match word.strip_suffix('s') {
        Some(stem) if !keep => stem.to_string(),
        _ => word.to_string(),
    }
}

/// Hangul, CJK and kana: scripts written without spaces between morphemes, compared with
/// character 2-grams.
fn is_syllabic(ch: char) -> bool {
    matches!(ch,
        '\u{AC00}'..='\u{D7A3}'     // Hangul syllables
        | '\u{1100}'..='\u{11FF}'   // Hangul jamo
        | '\u{3130}'..='\u{318F}'   // Hangul compatibility jamo
        | '\u{3040}'..='\u{30FF}'   // Hiragana, Katakana
        | '\u{3400}'..='\u{4DBF}'   // CJK extension A
        | '\u{4E00}'..='\u{9FFF}') // CJK unified ideographs
}

fn is_compatibility_jamo(ch: char) -> bool {
    matches!(ch, '\u{3130}'..='\u{318F}')
}

/// Korean particles and verb endings stripped from the end of Hangul words.
#[rustfmt::skip]
const KOREAN_SUFFIXES: &[&str] = &[
    // particles
    "이", "가", "을", "를", "은", "는", "에", "의", "도", "로", "으로", "와", "과", "만", "랑",
    "이랑", "에서", "에게", "한테", "까지", "부터", "처럼", "보다", "라고", "이라고", "로는",
    "으로는", "에서는", "에는", "에도", "에서도", "이나", "이라",
    // endings
    "요", "고", "서", "다", "지", "게", "죠", "음", "함", "해", "했", "어요", "아요", "여요",
    "해요", "네요", "에요", "예요", "이에요", "군요", "어서", "아서", "해서", "는데", "은데",
    "인데", "지만", "니다", "습니다", "합니다", "입니다", "됩니다", "했어요", "었어요", "았어요",
    "였어요", "했습니다", "었습니다", "았습니다", "였습니다", "했는데", "었는데", "았는데", "하고",
    "하는", "했다", "한다", "하다", "되었어요", "되었습니다", "됐어요", "됐습니다", "돼요", "되요",
    "되는", "되고", "하네요", "나요", "던데",
];

/// Strips the longest known suffix leaving a stem of at least 2 characters, twice at most
/// (`한국어로는` -> `한국어`; `정도` stays).
fn strip_korean_suffixes(word: &str) -> &str {
    let mut stem = word;
    for _ in 0..2 {
        let longest = KOREAN_SUFFIXES
            .iter()
            .filter(|suffix| {
                stem.strip_suffix(**suffix)
                    .is_some_and(|rest| rest.chars().count() >= 2)
            })
            .max_by_key(|suffix| suffix.len());
        match longest {
            Some(suffix) => stem = &stem[..stem.len() - suffix.len()],
            None => break,
        }
    }
    stem
}

#[rustfmt::skip]
fn is_korean_stopword(word: &str) -> bool {
    matches!(word,
        "너무" | "정말" | "진짜" | "그냥" | "좀" | "많이" | "아주" | "매우" | "완전" | "완전히" |
        "계속" | "자꾸" | "또" | "왜" | "제가" | "저는" | "나는" | "내가" | "저" | "나" | "이거" |
        "그거" | "저거" | "이건" | "그건" | "이게" | "그게" | "것" | "거" | "수" | "때" | "등" |
        "및" | "그리고" | "근데" | "그런데" | "하지만" | "그래서" | "이" | "그" | "가" | "을" |
        "를" | "은" | "는" | "에" | "의" | "도" | "로" | "와" | "과" | "만" | "이런" | "그런" |
        "한" | "할" | "하는" | "해요" | "했어요" | "합니다" | "했습니다" | "하고" | "있어요" |
        "있습니다" | "있는" | "됩니다" | "돼요" | "되요" | "되는" | "같아요" | "같습니다" | "같은" |
        "어떻게" | "무슨" | "다시" | "항상" | "가끔" | "지금" | "오늘" | "요즘" | "주세요" |
        "해주세요" | "때문에"
    )
}

/// Korean words in nearly every complaint about an assistant, and negations.
#[rustfmt::skip]
fn is_korean_weak(stem: &str) -> bool {
    matches!(stem,
        "안" | "못" | "답변" | "응답" | "대답" | "질문" | "챗봇" | "봇" | "답" | "결과"
    )
}

#[rustfmt::skip]
fn is_negation(word: &str) -> bool {
    matches!(word,
        "not" | "no" | "never" | "dont" | "doesnt" | "didnt" | "cant" | "cannot" | "couldnt" |
        "wont" | "wouldnt" | "isnt" | "wasnt" | "arent" | "werent" | "havent" | "hasnt" | "shouldnt"
    )
}

#[rustfmt::skip]
fn is_english_stopword(word: &str) -> bool {
    matches!(word,
        "a" | "about" | "above" | "actually" | "after" | "again" | "all" | "almost" | "also" |
        "always" | "am" | "an" | "and" | "any" | "are" | "as" | "at" | "basically" | "be" |
        "because" | "been" | "before" | "being" | "below" | "between" | "both" | "but" | "by" |
        "can" | "completely" | "could" | "did" | "do" | "does" | "doing" | "down" | "during" |
        "each" | "even" | "ever" | "every" | "few" | "for" | "from" | "further" | "get" | "gets" |
        "got" | "had" | "has" | "have" | "having" | "he" | "her" | "here" | "hers" | "him" |
        "his" | "how" | "i" | "if" | "im" | "in" | "into" | "is" | "it" | "its" | "itself" |
        "ive" | "just" | "let" | "lets" | "literally" | "me" | "more" | "most" | "much" | "my" |
        "myself" | "now" | "of" | "off" | "on" | "once" | "only" | "or" | "other" | "our" |
        "ours" | "out" | "over" | "own" | "please" | "pls" | "pretty" | "quite" | "really" |
        "she" | "should" | "so" | "some" | "still" | "such" | "super" | "than" | "that" | "thats" |
        "the" | "their" | "them" | "then" | "there" | "these" | "they" | "this" | "those" |
        "through" | "to" | "today" | "too" | "totally" | "under" | "until" | "up" | "us" | "very" |
        "was" | "way" | "we" | "were" | "what" | "when" | "where" | "which" | "while" | "who" |
        "whom" | "why" | "will" | "with" | "would" | "you" | "youre" | "your" | "yours" | "yourself"
    )
}

/// English words in nearly every complaint about an assistant.
#[rustfmt::skip]
fn is_english_weak(word: &str) -> bool {
    matches!(word,
        "answer" | "answers" | "answered" | "answering" | "response" | "responses" | "respond" |
        "responded" | "responding" | "reply" | "replies" | "replied" | "question" | "questions" |
        "bot" | "chatbot" | "ai" | "assistant" | "model" | "gpt" | "chat"
    )
}

/// The concepts a normalised word is a cue for.
fn concepts_of(word: &str) -> impl Iterator<Item = &'static str> + '_ {
    CONCEPTS.iter().filter_map(move |(concept, cues)| {
        let hit = cues.iter().any(|cue| match cue.strip_suffix('*') {
            Some(prefix) => word.starts_with(prefix),
            None => word == *cue,
        });
        hit.then_some(*concept)
    })
}

// ------------------------------------------------------------------------------- features

/// What a feature is; the first byte of its vocabulary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unigram,
    Bigram,
    CharGram,
    Concept,
}

impl Kind {
    fn tag(self) -> char {
        match self {
            Kind::Unigram => 'u',
            Kind::Bigram => 'b',
            Kind::CharGram => 'c',
            Kind::Concept => 'k',
        }
    }

    /// Index of the block the feature is normalised in.
    fn block(self) -> usize {
        match self {
            Kind::Unigram | Kind::Bigram => 0,
            Kind::CharGram => 1,
            Kind::Concept => 2,
        }
    }
}

/// A sparse vector sorted by feature id.
type SparseVec = Vec<(u32, f32)>;

/// The vocabulary and the L2-normalised TF-IDF vector of each point.
struct FeatureSpace {
    /// Per feature id: its key, the kind's tag followed by the text.
    keys: Vec<String>,
    kinds: Vec<Kind>,
    vectors: Vec<SparseVec>,
}

impl FeatureSpace {
    fn build(points: &[Point]) -> FeatureSpace {
        let mut vocab = Vocab::default();
        // A word's own features (unigram, concepts, character n-grams) never change: computed
        // once per distinct word, ids assigned in the same order as without the cache.
        let mut word_features: FxHashMap<&str, Vec<u32>> = FxHashMap::default();
        let mut key = String::new();
        // Feature counts per point, then document frequencies counted in complaints.
        let mut counts: Vec<Vec<(u32, u32)>> = Vec::with_capacity(points.len());
        let mut occurrences: Vec<u32> = Vec::new();
        for point in points {
            occurrences.clear();
            for (i, token) in point.tokens.iter().enumerate() {
                if let Some(next) = point.tokens.get(i + 1) {
                    key.clear();
                    key.push(Kind::Bigram.tag());
                    key.push_str(&token.text);
                    key.push(' ');
                    key.push_str(&next.text);
                    occurrences.push(vocab.id(Kind::Bigram, &key));
                }
                if token.role == Role::Content {
                    let ids = word_features
                        .entry(token.text.as_str())
                        .or_insert_with(|| own_features(&token.text, &mut vocab));
                    occurrences.extend_from_slice(ids);
                }
            }
            occurrences.sort_unstable();
            let mut tf: Vec<(u32, u32)> = Vec::new();
            for &id in &occurrences {
                match tf.last_mut() {
                    Some((last, n)) if *last == id => *n += 1,
                    _ => tf.push((id, 1)),
                }
            }
            counts.push(tf);
        }
        let Vocab { keys, kinds, .. } = vocab;
        let mut df = vec![0.0f64; kinds.len()];
        for (point, tf) in points.iter().zip(&counts) {
            for &(id, _) in tf {
                df[id as usize] += point.members.len() as f64;
            }
        }

        let n: f64 = points.iter().map(|p| p.members.len() as f64).sum();
        let idf: Vec<f64> = df
            .iter()
            .map(|d| ((1.0 + n) / (1.0 + d)).ln() + 1.0)
            .collect();
        let shares = [WORD_SHARE, CHAR_SHARE, CONCEPT_SHARE].map(f64::from);
        let vectors = counts
            .into_iter()
            .map(|tf| {
                let raw: Vec<(u32, f64)> = tf
                    .into_iter()
                    .map(|(id, n)| (id, (1.0 + f64::from(n).ln()) * idf[id as usize]))
                    .collect();
                let mut block_norm = [0.0f64; 3];
                for &(id, w) in &raw {
                    block_norm[kinds[id as usize].block()] += w * w;
                }
                let scale = block_norm.map(|sq| if sq > 0.0 { 1.0 / sq.sqrt() } else { 0.0 });
                let mut scaled: Vec<(u32, f64)> = raw
                    .into_iter()
                    .map(|(id, w)| {
                        let block = kinds[id as usize].block();
                        (id, w * scale[block] * shares[block].sqrt())
                    })
                    .collect();
                if scaled.len() > MAX_FEATURES {
                    // Ids follow the canonical order, so ties break the same way every run.
                    scaled.sort_by(|(a, a_w), (b, b_w)| b_w.total_cmp(a_w).then(a.cmp(b)));
                    scaled.truncate(MAX_FEATURES);
                    scaled.sort_by_key(|&(id, _)| id);
                }
                let norm = scaled.iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
                scaled
                    .into_iter()
                    .map(|(id, w)| (id, (w / norm) as f32))
                    .collect()
            })
            .collect();
        FeatureSpace {
            keys,
            kinds,
            vectors,
        }
    }

    /// The feature's text without its kind tag.
    fn name(&self, id: u32) -> &str {
        let key = &self.keys[id as usize];
        // The tag is one ASCII byte.
        &key[1..]
    }
}

/// Feature ids by key (the kind's tag followed by the text), assigned in order of first sight.
#[derive(Default)]
struct Vocab {
    ids: FxHashMap<String, u32>,
    keys: Vec<String>,
    kinds: Vec<Kind>,
}

impl Vocab {
    fn id(&mut self, kind: Kind, key: &str) -> u32 {
        if let Some(&id) = self.ids.get(key) {
            return id;
        }
        let id = self.keys.len() as u32;
        self.ids.insert(key.to_string(), id);
        self.keys.push(key.to_string());
        self.kinds.push(kind);
        id
    }
}

/// The features of a content word on its own: unigram, concepts, character n-grams.
fn own_features(word: &str, vocab: &mut Vocab) -> Vec<u32> {
    let mut ids = Vec::new();
    let mut key = String::new();
    let mut add = |kind: Kind, text: &mut dyn Iterator<Item = char>| {
        key.clear();
        key.push(kind.tag());
        key.extend(text);
        ids.push(vocab.id(kind, &key));
    };
    add(Kind::Unigram, &mut word.chars());
    for concept in concepts_of(word) {
        add(Kind::Concept, &mut concept.chars());
    }
    let syllabic = word.chars().next().is_some_and(is_syllabic);
    let n = if syllabic { 2 } else { 3 };
    let padded: Vec<char> = std::iter::once('<')
        .chain(word.chars())
        .chain(std::iter::once('>'))
        .collect();
    for gram in padded.windows(n) {
        add(Kind::CharGram, &mut gram.iter().copied());
    }
    ids
}

// ----------------------------------------------------------------------------- clustering

/// The upper triangle of a symmetric matrix without its diagonal, row by row.
struct Triangle {
    /// Where each row starts in `cells`.
    row_start: Vec<usize>,
    cells: Vec<f32>,
}

impl Triangle {
    fn zeros(n: usize) -> Triangle {
        // Row i holds the n - 1 - i cells (i, i + 1..n).
        let row_start = (0..n).map(|i| i * (2 * n - i - 1) / 2).collect();
        Triangle {
            row_start,
            cells: vec![0.0; n * n.saturating_sub(1) / 2],
        }
    }

    fn index(&self, i: usize, j: usize) -> usize {
        let (i, j) = if i < j { (i, j) } else { (j, i) };
        self.row_start[i] + (j - i - 1)
    }

    fn set(&mut self, i: usize, j: usize, value: f32) {
        let at = self.index(i, j);
        self.cells[at] = value;
    }

    /// Row `a` restricted to the sorted indices `others` (which may hold `a`, skipped), into
    /// `out` in the same order. Cells left of the diagonal sit in column `a` of earlier rows;
    /// the rest is one forward walk along row `a`.
    fn gather(&self, a: usize, others: &[usize], out: &mut Vec<(usize, f32)>) {
        out.clear();
        let split = others.partition_point(|&x| x < a);
        out.extend(
            others[..split]
                .iter()
                .map(|&x| (x, self.cells[self.row_start[x] + (a - x - 1)])),
        );
        let row = self
            .row_start
            .get(a)
            .map_or(&[][..], |&start| &self.cells[start..]);
        out.extend(
            others[split..]
                .iter()
                .filter(|&&x| x != a)
                .map(|&x| (x, row[x - a - 1])),
        );
    }
}

/// All pairwise dot products (cosines: the vectors are normalised), through an inverted index so
/// only pairs sharing a feature cost anything.
fn cosine_triangle(vectors: &[SparseVec], features: usize) -> Triangle {
    let n = vectors.len();
    let mut postings: Vec<Vec<(u32, f32)>> = vec![Vec::new(); features];
    for (point, vector) in vectors.iter().enumerate() {
        for &(id, w) in vector {
            postings[id as usize].push((point as u32, w));
        }
    }
    let mut triangle = Triangle::zeros(n);
    // `next[f]`: position in `postings[f]` of the first point after the current one. Points
    // are visited in order and hold each feature once, so it only moves forward.
    let mut next = vec![0usize; features];
    let mut row = vec![0.0f32; n];
    for (i, vector) in vectors.iter().enumerate() {
        for &(id, w) in vector {
            let list = &postings[id as usize];
            let from = &mut next[id as usize];
            *from += 1;
            for &(j, wj) in &list[*from..] {
                row[j as usize] += w * wj;
            }
        }
        if i + 1 < n {
            let start = triangle.row_start[i];
            triangle.cells[start..start + (n - i - 1)].copy_from_slice(&row[i + 1..]);
            row[i + 1..].fill(0.0);
        }
    }
    triangle
}

/// Average-linkage clustering cut at `threshold`, by the nearest-neighbour chain; returns each
/// point's cluster as the smallest point index in it. `similarity` is overwritten.
fn average_linkage(similarity: &mut Triangle, weights: &[f64], threshold: f32) -> Vec<usize> {
    let n = weights.len();
    let mut weight = weights.to_vec();
    let mut merged_into: Vec<usize> = (0..n).collect();
    // Clusters that may still merge, in increasing order so that scanning them walks a row of
    // the triangle forward.
    let mut open: Vec<usize> = (0..n).collect();
    let close = |c: usize, open: &mut Vec<usize>| {
        if let Ok(at) = open.binary_search(&c) {
            open.remove(at);
        }
    };
    let mut chain: Vec<usize> = Vec::new();
    let (mut row_a, mut row_b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    while let Some(&first_open) = open.first() {
        let a = match chain.last() {
            Some(&a) => a,
            None => {
                // Any open cluster works; the smallest keeps the run reproducible.
                chain.push(first_open);
                first_open
            }
        };
        let previous = chain.len().checked_sub(2).map(|k| chain[k]);
        // Most similar open cluster; ties go to the previous chain link (which guarantees the
        // chain ends), then to the smallest index.
        similarity.gather(a, &open, &mut row_a);
        let mut best: Option<(usize, f32)> = None;
        for &(x, s) in &row_a {
            let better = match best {
                None => true,
                Some((b, best_s)) => {
                    s > best_s
                        || (s == best_s && (Some(x) == previous || (Some(b) != previous && x < b)))
                }
            };
            if better {
                best = Some((x, s));
            }
        }
        match best {
            Some((b, s)) if s >= threshold => {
                if Some(b) != previous {
                    chain.push(b);
                    continue;
                }
                chain.truncate(chain.len() - 2);
                let (keep, gone) = (a.min(b), a.max(b));
                let (wa, wb) = (weight[a], weight[b]);
                // Lance-Williams update for average linkage; `row_a` still holds a's row.
                similarity.gather(b, &open, &mut row_b);
                for (&(x, sa), &(x_b, sb)) in row_a
                    .iter()
                    .filter(|(x, _)| *x != b)
                    .zip(row_b.iter().filter(|(x, _)| *x != a))
                {
                    debug_assert_eq!(x, x_b);
                    let merged = (wa * f64::from(sa) + wb * f64::from(sb)) / (wa + wb);
                    similarity.set(keep, x, merged as f32);
                }
                weight[keep] = wa + wb;
                merged_into[gone] = keep;
                close(gone, &mut open);
            }
            // Nothing reaches the threshold, and merging other clusters cannot raise an
            // average above its parts: this cluster is final.
            _ => {
                chain.pop();
                close(a, &mut open);
            }
        }
    }
    // A cluster is always merged into a smaller index, so roots resolve in one forward pass.
    let mut root = vec![0usize; n];
    for i in 0..n {
        root[i] = if merged_into[i] == i {
            i
        } else {
            root[merged_into[i]]
        };
    }
    root
}

// ---------------------------------------------------------------------------- description

/// The public description of a group of points, with its newest complaint's time.
fn describe(members: &[usize], points: &[Point], space: &FeatureSpace) -> (ComplaintCluster, i64) {
    let mut centroid: FxHashMap<u32, f64> = FxHashMap::default();
    let mut requests: Vec<(i64, &str)> = Vec::new();
    for &p in members {
        let point = &points[p];
        let weight = point.members.len() as f64;
        for &(id, w) in &space.vectors[p] {
            *centroid.entry(id).or_default() += weight * f64::from(w);
        }
        requests.extend(point.members.iter().map(|(ts, id)| (*ts, id.as_str())));
    }
    let count = requests.len();
    let newest = requests.iter().map(|(ts, _)| *ts).max().unwrap_or(i64::MIN);

    // Each request once, at its newest complaint.
    requests.sort_by(|(a_ts, a), (b_ts, b)| a.cmp(b).then_with(|| b_ts.cmp(a_ts)));
    requests.dedup_by(|later, earlier| later.1 == earlier.1);
    requests.sort_by(|(a_ts, a), (b_ts, b)| b_ts.cmp(a_ts).then_with(|| a.cmp(b)));
    let request_ids = requests.iter().map(|(_, id)| id.to_string()).collect();

    (
        ComplaintCluster {
            label: label(&centroid, space),
            count,
            request_ids,
            examples: examples(members, points, space, &centroid),
        },
        newest,
    )
}

/// Up to [`LABEL_TERMS`] word features of highest centroid weight; a unigram inside a chosen
/// bigram is redundant and left out.
fn label(centroid: &FxHashMap<u32, f64>, space: &FeatureSpace) -> Vec<String> {
    let mut terms: Vec<(Kind, &str, f64)> = centroid
        .iter()
        .map(|(&id, &w)| (space.kinds[id as usize], space.name(id), w))
        .filter(|(kind, _, _)| matches!(kind, Kind::Unigram | Kind::Bigram))
        .collect();
    terms.sort_by(|(_, a, a_w), (_, b, b_w)| b_w.total_cmp(a_w).then_with(|| a.cmp(b)));
    let mut chosen: Vec<(Kind, &str)> = Vec::new();
    for (kind, term, _) in terms {
        if chosen.len() == LABEL_TERMS {
            break;
        }
        match kind {
            Kind::Bigram => {
                let words: Vec<&str> = term.split(' ').collect();
                let mut reversed = words.clone();
                reversed.reverse();
                // "slow response" and "response slow" say the same thing: keep the first.
                if chosen.iter().any(|(_, t)| *t == reversed.join(" ")) {
                    continue;
                }
                chosen.retain(|(k, t)| *k != Kind::Unigram || !words.contains(t));
            }
            _ => {
                let covered = chosen
                    .iter()
                    .any(|(k, t)| *k == Kind::Bigram && t.split(' ').any(|w| w == term));
                if covered {
                    continue;
                }
            }
        }
        chosen.push((kind, term));
    }
    chosen.into_iter().map(|(_, t)| t.to_string()).collect()
}

/// Up to [`EXAMPLES`] distinct comments closest to the centroid: the most frequent spelling of
/// each point by similarity, then other spellings if the points run out.
fn examples(
    members: &[usize],
    points: &[Point],
    space: &FeatureSpace,
    centroid: &FxHashMap<u32, f64>,
) -> Vec<String> {
    let closeness = |p: usize| -> f64 {
        space.vectors[p]
            .iter()
            .map(|&(id, w)| f64::from(w) * centroid.get(&id).copied().unwrap_or(0.0))
            .sum()
    };
    let mut ranked: Vec<(f64, usize)> = members.iter().map(|&p| (closeness(p), p)).collect();
    ranked.sort_by(|(a_s, a), (b_s, b)| {
        b_s.total_cmp(a_s)
            .then_with(|| points[*a].text().cmp(points[*b].text()))
    });
    let firsts = ranked.iter().map(|&(_, p)| points[p].text());
    let others = ranked.iter().flat_map(|&(_, p)| {
        points[p]
            .spellings
            .iter()
            .skip(1)
            .map(|(text, _)| text.as_str())
    });
    firsts
        .chain(others)
        .take(EXAMPLES)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Theme {
        Wrong,
        Slow,
        Refused,
        Language,
        Noise,
    }

    const WRONG: &[&str] = &[
        "The answer about the refund policy is wrong",
        "wrong refund policy info",
        "환불 정책 답변이 틀렸어요",
        "환불 규정이 틀린 답변입니다",
        "The information about shipping fees is incorrect",
        "It gave me outdated pricing information",
        "배송비 정보가 잘못되었어요",
        "완전히 틀린 정보를 알려줬어요",
        "This is factually wrong, the store closes at 9",
        "Incorrect answer about the warranty period",
        "보증 기간 안내가 틀렸습니다",
        "오래된 정보로 답변했어요",
        "It hallucinated a return policy that does not exist",
        "wrong answer again",
        "환불 안내가 사실과 달라요",
    ];
    const SLOW: &[&str] = &[
        "It took forever to respond",
        "응답이 너무 느려요",
        "답변이 느립니다",
        "way too slow response",
        "Way too slow response!!",
        "Responses are really slow today",
        "I waited almost a minute for a reply",
        "답변 나오는데 너무 오래 걸려요",
        "응답 속도가 너무 느림",
        "The response time is terrible, very laggy",
        "느려서 못 쓰겠어요",
        "Too slow to be usable",
        "took ages to get a response",
    ];
    const REFUSED: &[&str] = &[
        "The bot refused to answer my question",
        "답변을 거부했어요",
        "it refuses to help",
        "It declined to answer a simple question",
        "질문에 대한 답변을 거절했습니다",
        "Refused to give me the contact number",
        "계속 답변을 거부합니다",
        "It keeps refusing to answer about pricing",
        "정책상 답변할 수 없다며 거절했어요",
        "declines every request about my account",
        "It said it can't help with that",
    ];
    const LANGUAGE: &[&str] = &[
        "Answered in English although I asked in Korean",
        "한국어로 물어봤는데 영어로 답했어요",
        "Why does it reply in English? I wrote in Korean",
        "영어로 답변해서 불편해요",
        "The reply language is wrong, should be Korean",
        "한국어로 답해 주세요, 자꾸 영어로 나와요",
        "It switched to English in the middle of the conversation",
        "한국어 질문에 영어 답변",
    ];
    const NOISE: &[&str] = &[
        "Love the new dark mode",
        "로그인이 안 돼요",
        "Can you add export to CSV?",
        "결제 화면에서 버튼이 안 눌려요",
        "ok",
        "Refund was processed quickly, thanks",
    ];

    /// The planted corpus (53 comments, 4 themes plus noise): comment, theme; request ids
    /// `r00`.. in order, timestamps scrambled over 13 minutes (so some tie).
    fn corpus() -> Vec<(Complaint, Theme)> {
        let themed = [
            (WRONG, Theme::Wrong),
            (SLOW, Theme::Slow),
            (REFUSED, Theme::Refused),
            (LANGUAGE, Theme::Language),
            (NOISE, Theme::Noise),
        ];
        let mut out = Vec::new();
        for (texts, theme) in themed {
            for text in texts {
                let i = out.len();
                out.push((
                    Complaint {
                        request_id: format!("r{i:02}"),
                        comment: text.to_string(),
                        ts_ms: 1_700_000_000_000 + (i as i64 * 7 % 13) * 60_000,
                    },
                    theme,
                ));
            }
        }
        out
    }

    fn complaints() -> Vec<Complaint> {
        corpus().into_iter().map(|(c, _)| c).collect()
    }

    fn theme_of(request_id: &str) -> Theme {
        corpus()
            .into_iter()
            .find(|(c, _)| c.request_id == request_id)
            .map(|(_, t)| t)
            .unwrap_or(Theme::Noise)
    }

    fn dump(clusters: &[ComplaintCluster]) -> String {
        clusters
            .iter()
            .map(|c| {
                format!(
                    "{} {:?} {:?} {:?}\n",
                    c.count, c.label, c.examples, c.request_ids
                )
            })
            .collect()
    }

    /// Each planted theme has a cluster holding at least 80% of it and nothing else; the
    /// biggest theme comes first; every complaint is counted once.
    #[track_caller]
    fn assert_themes_recovered(clusters: &[ComplaintCluster]) {
        let shown = dump(clusters);
        for (theme, size) in [
            (Theme::Wrong, WRONG.len()),
            (Theme::Slow, SLOW.len()),
            (Theme::Refused, REFUSED.len()),
            (Theme::Language, LANGUAGE.len()),
        ] {
            let of_theme = |c: &ComplaintCluster| {
                c.request_ids
                    .iter()
                    .filter(|r| theme_of(r) == theme)
                    .count()
            };
            let best = clusters
                .iter()
                .max_by_key(|c| of_theme(c))
                .expect("clusters");
            let hits = of_theme(best);
            assert!(
                hits * 10 >= size * 8,
                "{theme:?}: only {hits}/{size} together\n{shown}"
            );
            assert_eq!(hits, best.count, "{theme:?} cluster is impure\n{shown}");
        }
        assert!(
            clusters[0]
                .request_ids
                .iter()
                .all(|r| theme_of(r) == Theme::Wrong),
            "the biggest theme is not first\n{shown}"
        );
        let total: usize = clusters.iter().map(|c| c.count).sum();
        assert_eq!(total, corpus().len(), "{shown}");
        for pair in clusters.windows(2) {
            assert!(pair[0].count >= pair[1].count, "{shown}");
        }
    }

    #[test]
    fn planted_themes_are_recovered() {
        assert_themes_recovered(&cluster_complaints(&complaints(), usize::MAX));
    }

    /// The threshold is not on a knife edge: the themes come out the same well around it.
    #[test]
    fn planted_themes_survive_nearby_thresholds() {
        for threshold in [0.15, 0.2, 0.3, 0.35] {
            assert_themes_recovered(&cluster_with_threshold(
                &complaints(),
                usize::MAX,
                threshold,
            ));
        }
    }

    #[test]
    fn slow_cluster_is_labelled_by_slowness() {
        let clusters = cluster_complaints(&complaints(), usize::MAX);
        let slow = clusters
            .iter()
            .find(|c| c.request_ids.iter().any(|r| theme_of(r) == Theme::Slow))
            .expect("a slow cluster");
        let slow_terms = ["slow", "느려", "느립", "느림", "forever", "오래", "laggy"];
        assert!(
            slow.label
                .iter()
                .any(|term| slow_terms.iter().any(|s| term.contains(s))),
            "{:?}",
            slow.label
        );
        assert!(!slow.label.is_empty() && slow.label.len() <= 3);
    }

    #[test]
    fn examples_are_two_distinct_comments_of_the_cluster() {
        let corpus = corpus();
        for cluster in cluster_complaints(&complaints(), usize::MAX) {
            let texts: Vec<&str> = corpus
                .iter()
                .filter(|(c, _)| cluster.request_ids.contains(&c.request_id))
                .map(|(c, _)| c.comment.as_str())
                .collect();
            assert_eq!(cluster.examples.len(), cluster.count.min(2), "{cluster:?}");
            if cluster.examples.len() == 2 {
                assert_ne!(cluster.examples[0], cluster.examples[1]);
            }
            for example in &cluster.examples {
                assert!(
                    texts.contains(&example.as_str()),
                    "{example} not in {cluster:?}"
                );
            }
        }
    }

    #[test]
    fn top_truncates() {
        let all = cluster_complaints(&complaints(), usize::MAX);
        let three = cluster_complaints(&complaints(), 3);
        assert_eq!(three.len(), 3);
        assert_eq!(three[..], all[..3]);
        assert!(cluster_complaints(&complaints(), 0).is_empty());
    }

    #[test]
    fn input_order_does_not_matter() {
        let reference = cluster_complaints(&complaints(), usize::MAX);
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..5 {
            let mut shuffled = complaints();
            shuffled.shuffle(&mut rng);
            assert_eq!(cluster_complaints(&shuffled, usize::MAX), reference);
        }
        let mut reversed = complaints();
        reversed.reverse();
        assert_eq!(cluster_complaints(&reversed, usize::MAX), reference);
    }

    #[test]
    fn identical_comments_share_a_cluster_and_ids_are_ordered() {
        let mut input = complaints();
        for (i, ts) in [(0, 5), (1, 9), (2, 9)] {
            input.push(Complaint {
                request_id: format!("dup{i}"),
                comment: "Love the new dark mode".into(),
                ts_ms: ts,
            });
        }
        // The same request twice: listed once, at its newest time.
        input.push(Complaint {
            request_id: "dup0".into(),
            comment: "love the new DARK mode!".into(),
            ts_ms: 20,
        });
        let clusters = cluster_complaints(&input, usize::MAX);
        let dark = clusters
            .iter()
            .find(|c| c.request_ids.iter().any(|r| r == "dup1"))
            .expect("dark mode cluster");
        assert_eq!(dark.count, 5, "{dark:?}");
        assert_eq!(
            dark.request_ids,
            ["r47", "dup0", "dup1", "dup2"],
            "{dark:?}"
        );
        assert_eq!(dark.examples.len(), 2, "{dark:?}");
    }

    #[test]
    fn blank_comments_are_ignored() {
        let blank = ["", "   ", "\n\t", "!!!", "👎"];
        let mut input = complaints();
        for (i, text) in blank.iter().enumerate() {
            input.push(Complaint {
                request_id: format!("blank{i}"),
                comment: text.to_string(),
                ts_ms: i64::MAX,
            });
        }
        assert_eq!(
            cluster_complaints(&input, usize::MAX),
            cluster_complaints(&complaints(), usize::MAX)
        );
        let only_blank: Vec<Complaint> = input.split_off(corpus().len());
        assert!(cluster_complaints(&only_blank, 10).is_empty());
    }

    #[test]
    fn empty_input_gives_nothing() {
        assert!(cluster_complaints(&[], 10).is_empty());
    }

    #[test]
    fn korean_suffixes_are_stripped() {
        assert_eq!(strip_korean_suffixes("환불이"), "환불");
        assert_eq!(strip_korean_suffixes("틀렸어요"), "틀렸");
        assert_eq!(strip_korean_suffixes("한국어로는"), "한국어");
        assert_eq!(strip_korean_suffixes("거부했어요"), "거부");
        assert_eq!(strip_korean_suffixes("정도"), "정도");
        let words: Vec<String> = tokenize("GPT가 don't 답변을 너무 ㅋㅋ 늦게 해요 2024")
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(words, ["gpt", "not", "답변", "늦게"]);
    }

    #[test]
    fn only_the_newest_complaints_are_kept() {
        let input: Vec<Complaint> = (0..MAX_COMPLAINTS + 3)
            .map(|i| Complaint {
                request_id: format!("n{i}"),
                comment: if i % 2 == 0 {
                    "slow".into()
                } else {
                    " ".into()
                },
                // Three complaints share the oldest kept time: ids decide which stay.
                ts_ms: (i / 2).max(3) as i64,
            })
            .collect();
        let doubled: Vec<Complaint> = input.iter().chain(&input).cloned().collect();
        let kept = newest_non_blank(&doubled);
        assert_eq!(kept.len(), MAX_COMPLAINTS);
        assert!(kept.iter().all(|c| c.comment == "slow" && c.ts_ms >= 3));
        let mut reversed = doubled.clone();
        reversed.reverse();
        assert_eq!(newest_non_blank(&reversed), kept);
    }

    #[test]
    fn plurals_fold_and_labels_skip_redundant_terms() {
        let words: Vec<String> = tokenize("policies fees status refuses news")
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(words, ["policy", "fee", "status", "refuse", "new"]);
        let input: Vec<Complaint> = ["slow response", "slow responses", "responses slow"]
            .iter()
            .enumerate()
            .map(|(i, text)| Complaint {
                request_id: format!("p{i}"),
                comment: text.to_string(),
                ts_ms: 0,
            })
            .collect();
        let clusters = cluster_complaints(&input, 10);
        assert_eq!(clusters.len(), 1, "{}", dump(&clusters));
        // "slow" is inside the bigram, "response slow" is the bigram reversed.
        assert_eq!(clusters[0].label, ["slow response"]);
        // One example per normalised form first: "slow responses" is a spelling of the first.
        assert_eq!(clusters[0].examples, ["slow response", "responses slow"]);
    }

    /// The nearest-neighbour chain with early finalisation gives the groups of the textbook
    /// greedy algorithm: merge the pair of highest mean pairwise similarity (weighted) while it
    /// reaches the threshold, recomputing the means from the original matrix every time.
    #[test]
    fn linkage_matches_naive_greedy_average_linkage() {
        let mut rng = StdRng::seed_from_u64(11);
        for trial in 0..200 {
            let n = rng.random_range(1..40);
            let threshold = rng.random_range(0.2f32..0.8);
            let weights: Vec<f64> = (0..n)
                .map(|_| f64::from(rng.random_range(1..4u8)))
                .collect();
            let mut triangle = Triangle::zeros(n);
            for i in 0..n {
                for j in i + 1..n {
                    triangle.set(i, j, rng.random_range(0.0..1.0));
                }
            }
            let original = Triangle {
                row_start: triangle.row_start.clone(),
                cells: triangle.cells.clone(),
            };
            let roots = average_linkage(&mut triangle, &weights, threshold);
            let mut fast: Vec<Vec<usize>> = Vec::new();
            for root in 0..n {
                let group: Vec<usize> = (0..n).filter(|&p| roots[p] == root).collect();
                if !group.is_empty() {
                    fast.push(group);
                }
            }

            let mut groups: Vec<Vec<usize>> = (0..n).map(|p| vec![p]).collect();
            loop {
                let mean = |a: &[usize], b: &[usize]| {
                    let mut sum = 0.0;
                    for &i in a {
                        for &j in b {
                            let s = f64::from(original.cells[original.index(i, j)]);
                            sum += weights[i] * weights[j] * s;
                        }
                    }
                    let w = |g: &[usize]| g.iter().map(|&p| weights[p]).sum::<f64>();
                    sum / (w(a) * w(b))
                };
                let mut best: Option<(usize, usize, f64)> = None;
                for x in 0..groups.len() {
                    for y in x + 1..groups.len() {
                        let s = mean(&groups[x], &groups[y]);
                        if best.is_none_or(|(_, _, b)| s > b) {
                            best = Some((x, y, s));
                        }
                    }
                }
                match best {
                    Some((x, y, s)) if s >= f64::from(threshold) => {
                        let moved = groups.swap_remove(y);
                        groups[x].extend(moved);
                    }
                    _ => break,
                }
            }
            for group in &mut groups {
                group.sort_unstable();
            }
            groups.sort();
            assert_eq!(fast, groups, "trial {trial}: n {n}, threshold {threshold}");
        }
    }

    /// Synthetic comments: a theme phrase plus random pseudo-words, nearly all distinct.
    fn generated(n: usize, seed: u64) -> Vec<Complaint> {
        let phrases: Vec<&str> = [WRONG, SLOW, REFUSED, LANGUAGE, NOISE].concat();
        let mut rng = StdRng::seed_from_u64(seed);
        let syllables = ["ka", "lo", "mi", "ru", "te", "po", "sa", "ne", "vi", "zu"];
        (0..n)
            .map(|i| {
                let mut comment = phrases[rng.random_range(0..phrases.len())].to_string();
                for _ in 0..rng.random_range(1..4) {
                    comment.push(' ');
                    if rng.random_bool(0.5) {
                        for _ in 0..3 {
                            comment.push_str(syllables[rng.random_range(0..syllables.len())]);
                        }
                    } else {
                        let code = rng.random_range(0xAC00u32..0xAC00 + 2_000);
                        comment.extend(char::from_u32(code));
                        comment.extend(char::from_u32(code + 28));
                    }
                }
                Complaint {
                    request_id: format!("g{i}"),
                    comment,
                    ts_ms: rng.random_range(0..1_000_000),
                }
            })
            .collect()
    }

    /// Adversarial: long comments over a vocabulary of 30 words, so every feature is in nearly
    /// every comment and every pair is similar.
    fn long_and_alike(n: usize, seed: u64) -> Vec<Complaint> {
        let mut rng = StdRng::seed_from_u64(seed);
        let words: Vec<String> = (0..30)
            .map(|i| format!("w{}x{}", ["ka", "lo", "mi", "ru", "te"][i % 5], i))
            .collect();
        (0..n)
            .map(|i| {
                let mut comment = String::new();
                while comment.len() < MAX_COMMENT_CHARS * 2 {
                    comment.push_str(&words[rng.random_range(0..words.len())]);
                    comment.push(' ');
                }
                Complaint {
                    request_id: format!("l{i}"),
                    comment,
                    ts_ms: i as i64,
                }
            })
            .collect()
    }

    #[test]
    fn a_thousand_generated_comments() {
        let input = generated(1_000, 1);
        let clusters = cluster_complaints(&input, 10);
        assert_eq!(clusters.len(), 10);
        assert!(clusters[0].count >= clusters[9].count);
        let mut shuffled = input.clone();
        shuffled.shuffle(&mut StdRng::seed_from_u64(3));
        assert_eq!(cluster_complaints(&shuffled, 10), clusters);
    }

    /// The full cap (several seconds in a debug build). Timings in release:
    /// `cargo test --release --lib core::cluster -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn the_full_cap_timed() {
        let runs: [(&str, Vec<Complaint>); 3] = [
            ("distinct generated", generated(MAX_COMPLAINTS + 500, 2)),
            (
                "short, many duplicates",
                generated(MAX_COMPLAINTS, 3)
                    .into_iter()
                    .map(|mut c| {
                        c.comment = c.comment.split(' ').take(4).collect::<Vec<_>>().join(" ");
                        c
                    })
                    .collect(),
            ),
            ("long and alike", long_and_alike(MAX_COMPLAINTS, 4)),
        ];
        for (name, input) in runs {
            let started = std::time::Instant::now();
            let clusters = cluster_complaints(&input, 10);
            let elapsed = started.elapsed();
            println!("{name}: {} complaints in {elapsed:?}", input.len());
            for c in clusters.iter().take(3) {
                println!("  {} {:?} {:?}", c.count, c.label, c.examples);
            }
            assert!(!clusters.is_empty());
        }
    }
}
