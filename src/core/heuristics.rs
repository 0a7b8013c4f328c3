//! Built-in heuristic evaluators: cheap checks on a captured answer, each a named score in
//! 0..1 (1 = pass, 0 = fail), recorded with source "heuristic".
//!
//! Scores exist only for a request that succeeded and whose answer was captured
//! ([`evaluate`] returns nothing otherwise). Each rule can be switched off in the config table
//! `[quality.heuristics]` ([`HeuristicSet`]); a disabled rule emits nothing.
//!
//! - [`NON_EMPTY`]: 0 when the answer is empty or only whitespace, counting Unicode
//!   whitespace (U+3000 included) and invisible characters (zero-width space U+200B, joiners,
//!   word joiner, BOM U+FEFF, soft hyphen).
//! - [`NO_REFUSAL`]: 0 when the answer is a refusal. Not emitted for an empty answer (that is
//!   [`NON_EMPTY`]'s failure, not a refusal). Only the first [`REFUSAL_WINDOW_CHARS`]
//!   characters are read: a refusal leads with it, while a long helpful answer may mention
//!   some inability further on ("I can't guarantee...") without refusing. English phrases are
//!   matched case-insensitively at a word start, with curly apostrophes read as straight ones
//!   and "cannot"/"can not", "I am", "will not" folded into one spelling. Korean phrases are
//!   matched with spaces removed (so "도와 드릴 수 없" = "도와드릴 수 없"); "죄송하지만"
//!   counts when "수 없" follows in the same sentence, and "할 수 없습니다" when it is within
//!   the first [`KOREAN_OPENING_CHARS`] characters of the first sentence.
//! - [`NOT_TRUNCATED`]: emitted only when a finish reason is known, from the attributes
//!   `finish_reason`, `gen_ai.response.finish_reasons` or `stop_reason` (one value or a list
//!   such as `stop,length` or `["length"]`; `null` entries are ignored). 0 when any reason is
//!   `length` or `max_tokens` (any case).
//! - [`VALID_JSON`]: emitted only when the request declared JSON output: attribute
//!   `response_format` or `gen_ai.openai.request.response_format` equal (any case) to `json`,
//!   `json_object` or `json_schema`, or `gen_ai.output.type` = `json`. 1 when the answer parses
//!   as JSON, either bare or as the whole body of one markdown code fence (```` ```json ````
//!   or a bare ```` ``` ````).
//! - [`NO_PII`]: 0 when the answer contains
//!   - an e-mail address: a local part of 1-64 of `A-Za-z0-9._%+-` (not starting or ending
//!     with a dot, no "..") `@` a domain of at least two labels whose last is 2-24 letters and
//!     not an image extension (`icon@2x.png` is a file name);
//!   - a phone number: `+` then 8-15 digits (first not 0) grouped by spaces, dashes, dots or
//!     parentheses; a Korean number: mobile `01[016789]` or area code (`02`, `0[3-6][1-5]`,
//!     `070`) then groups of 3-4 and 4 digits (`010-1234-5678`, `02-123-4567`), or a mobile
//!     number written as 10-11 plain digits (`01012345678`); a North American number
//!     `NXX-NXX-XXXX` / `(NXX) NXX-XXXX` / `1-NXX-NXX-XXXX` with dashes, dots or parentheses
//!     (not spaces alone, which lists of numbers also use);
//!   - a payment card number: 13-19 digits, plain or in groups (three or more groups of 4
//!     then one of 1-4, as 4-4-4-4; or 4-6-5, 4-6-4) joined by one kind of separator (space
//!     or dash), starting with a payment-network digit (2-6, or 9 for domestic cards; rules
//!     out unix-millisecond timestamps), not all one digit, and passing the Luhn check.
//!
//!   Digits glued to a word, a decimal point, a dash or a slash are not a number of their own
//!   (`v1.2.3`, `ID-4111...`); a run of digit groups may be split only at a space, so a
//!   phone number followed by another number is still found. Dates (`2024-01-15`), versions
//!   (`1.2.3`), IP addresses and other plain numbers match none of the shapes.
//!
//! Hand-written scanners rather than regular expressions: the shapes are few and small, and
//! every scan is linear in the answer's length (answers may be up to 1 MiB).

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::core::record::{Record, Status};

/// Score name: the answer is not empty.
pub const NON_EMPTY: &str = "non_empty";
/// Score name: the answer is not a refusal.
pub const NO_REFUSAL: &str = "no_refusal";
/// Score name: generation did not stop at the token limit.
pub const NOT_TRUNCATED: &str = "not_truncated";
/// Score name: a declared JSON answer parses as JSON.
pub const VALID_JSON: &str = "valid_json";
/// Score name: the answer contains no e-mail address, phone number or payment card number.
pub const NO_PII: &str = "no_pii";

/// How many leading characters of an answer the refusal rule reads.
pub const REFUSAL_WINDOW_CHARS: usize = 300;
/// How far into the first sentence a Korean "할 수 없습니다" still counts as a refusal.
pub const KOREAN_OPENING_CHARS: usize = 60;

/// Which built-in evaluators run; config table `[quality.heuristics]`, every key optional, all
/// on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeuristicSet {
    pub empty: bool,
    pub refusal: bool,
    pub truncated: bool,
    pub json: bool,
    pub pii: bool,
}

impl Default for HeuristicSet {
    fn default() -> Self {
        Self {
            empty: true,
            refusal: true,
            truncated: true,
            json: true,
            pii: true,
        }
    }
}

/// The heuristic scores of a record, in the order [`NON_EMPTY`], [`NO_REFUSAL`],
/// [`NOT_TRUNCATED`], [`VALID_JSON`], [`NO_PII`]. Empty when the answer was not captured
/// (`output` is None) or the request failed (status Error).
pub fn evaluate(record: &Record, set: &HeuristicSet) -> Vec<(&'static str, f64)> {
    let Some(output) = record.output.as_deref() else {
        return Vec::new();
    };
    if record.status == Status::Error {
        return Vec::new();
    }
    let blank = is_blank(output);
    let mut scores = Vec::with_capacity(5);
    if set.empty {
        scores.push((NON_EMPTY, pass(!blank)));
    }
    if set.refusal && !blank {
        scores.push((NO_REFUSAL, pass(!is_refusal(output))));
    }
    if set.truncated
        && let Some(truncated) = stopped_at_token_limit(&record.attributes)
    {
        scores.push((NOT_TRUNCATED, pass(!truncated)));
    }
    if set.json && declares_json(&record.attributes) {
        scores.push((VALID_JSON, pass(is_valid_json(output))));
    }
    if set.pii {
        scores.push((NO_PII, pass(!contains_pii(output))));
    }
    scores
}

fn pass(ok: bool) -> f64 {
    if ok { 1.0 } else { 0.0 }
}

// ---------------------------------------------------------------------------------------------
// Empty answers

/// Whitespace, or a character that renders as nothing (`char::is_whitespace` leaves these out).
fn is_blank_char(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}'
                | '\u{200C}'
                | '\u{200D}'
                | '\u{2060}'
                | '\u{FEFF}'
                | '\u{180E}'
                | '\u{00AD}'
        )
}

fn is_blank(text: &str) -> bool {
    text.chars().all(is_blank_char)
}

// ---------------------------------------------------------------------------------------------
// Refusals

/// English refusal phrases, in the folded spelling of [`fold_english`].
const ENGLISH_REFUSALS: &[&str] = &[
    "i can't help",
    "i can't assist",
    "i can't provide",
    "i can't comply",
    "i can't fulfill",
    "i can't fulfil",
    "i can't do that",
    "i'm unable to",
    "i'm not able to",
    "i won't be able to help",
    "i won't be able to assist",
    "i won't help",
    "i won't assist",
    "i won't provide",
    "sorry, but i can't",
    "sorry, i can't",
    "i apologize, but i can't",
    "as an ai language model, i can't",
    "as an ai, i can't",
    "i must decline",
    "i must respectfully decline",
    "i respectfully decline",
    "i have to decline",
    "i'll have to decline",
];

/// Idioms that contain a refusal phrase without refusing ("I can't help but notice...").
const ENGLISH_IDIOMS: &[&str] = &[
    "can't help but",
    "can't help feeling",
    "can't help thinking",
    "can't help wondering",
    "can't help noticing",
];

/// Korean refusal phrases, with spaces removed.
const KOREAN_REFUSALS: &[&str] = &[
    "도와드릴수없",
    "도움을드릴수없",
    "도움드릴수없",
    "답변드릴수없",
    "답변해드릴수없",
    "제공할수없",
    "제공해드릴수없",
    "응답할수없",
];

/// Korean apologies that make a following "수 없" in the same sentence a refusal.
const KOREAN_APOLOGIES: &[&str] = &["죄송하지만", "죄송합니다만"];

fn is_refusal(text: &str) -> bool {
    let head: String = text
        .trim_start_matches(is_blank_char)
        .chars()
        .take(REFUSAL_WINDOW_CHARS)
        .collect();
    is_english_refusal(&head) || is_korean_refusal(&head)
}

fn is_english_refusal(head: &str) -> bool {
    let folded = fold_english(head);
    ENGLISH_REFUSALS
        .iter()
        .any(|phrase| contains_at_word_start(&folded, phrase))
}

/// Lowercase, straight apostrophes, single spaces, one spelling per variant, idioms removed:
/// so that a short phrase list covers the usual ways of writing each refusal.
fn fold_english(text: &str) -> String {
    let mut folded = String::with_capacity(text.len());
    let mut after_space = false;
    for c in text.chars() {
        let c = match c {
            '\u{2019}' | '\u{2018}' | '\u{02BC}' | '\u{2032}' | '\u{00B4}' | '`' => '\'',
            c if c.is_whitespace() => ' ',
            c => c,
        };
        if c == ' ' && after_space {
            continue;
        }
        after_space = c == ' ';
        folded.extend(c.to_lowercase());
    }
    let mut folded = folded
        .replace("cannot", "can't")
        .replace("can not", "can't")
        .replace("will not", "won't")
        .replace("i am ", "i'm ")
        .replace("i will ", "i'll ");
    for idiom in ENGLISH_IDIOMS {
        folded = folded.replace(idiom, " ");
    }
    folded
}

/// Whether `phrase` occurs in `text` not preceded by a letter or digit ("hi'm" is not "i'm").
fn contains_at_word_start(text: &str, phrase: &str) -> bool {
    text.match_indices(phrase).any(|(at, _)| {
        text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric())
    })
}

fn is_sentence_end(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '\n' | '。' | '！' | '？')
}

fn is_korean_refusal(head: &str) -> bool {
    let sentences = head
        .split(is_sentence_end)
        .map(|sentence| {
            sentence
                .chars()
                .filter(|c| !is_blank_char(*c))
                .collect::<String>()
        })
        .filter(|sentence| !sentence.is_empty());
    for (index, sentence) in sentences.enumerate() {
        if KOREAN_REFUSALS
            .iter()
            .any(|phrase| sentence.contains(phrase))
        {
            return true;
        }
        let apologizes_then_cannot = KOREAN_APOLOGIES.iter().any(|apology| {
            sentence
                .find(apology)
                .is_some_and(|at| sentence[at + apology.len()..].contains("수없"))
        });
        if apologizes_then_cannot {
            return true;
        }
        if index == 0 {
            let opening: String = sentence.chars().take(KOREAN_OPENING_CHARS).collect();
            if opening.contains("할수없습니다") {
                return true;
            }
        }
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Truncation

/// Attributes that carry the finish reason: OpenAI-style, OpenTelemetry GenAI, Anthropic.
const FINISH_REASON_KEYS: [&str; 3] = [
    "finish_reason",
    "gen_ai.response.finish_reasons",
    "stop_reason",
];

/// Whether generation stopped at the token limit; None when no finish reason is known.
fn stopped_at_token_limit(attributes: &BTreeMap<String, String>) -> Option<bool> {
    let mut known = false;
    let mut truncated = false;
    let reasons = FINISH_REASON_KEYS
        .iter()
        .filter_map(|key| attributes.get(*key))
        // One value, or a list in any notation: split at everything that is not a name.
        .flat_map(|value| value.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-')));
    for reason in reasons {
        // A streamed chunk's JSON null is no reason at all.
        if reason.is_empty() || reason.eq_ignore_ascii_case("null") {
            continue;
        }
        known = true;
        truncated |=
            reason.eq_ignore_ascii_case("length") || reason.eq_ignore_ascii_case("max_tokens");
    }
    known.then_some(truncated)
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Attributes that declare the requested output format.
const JSON_FORMAT_KEYS: [&str; 3] = [
    "response_format",
    "gen_ai.openai.request.response_format",
    "gen_ai.output.type",
];
const JSON_FORMATS: [&str; 3] = ["json", "json_object", "json_schema"];

fn declares_json(attributes: &BTreeMap<String, String>) -> bool {
    JSON_FORMAT_KEYS
        .iter()
        .filter_map(|key| attributes.get(*key))
        .any(|value| {
            let value = value.trim();
            JSON_FORMATS
                .iter()
                .any(|format| value.eq_ignore_ascii_case(format))
        })
}

fn is_valid_json(text: &str) -> bool {
    let text = text.trim_matches(is_blank_char);
    let body = code_fence_body(text).unwrap_or(text);
    // IgnoredAny validates the whole text without building a value (and without recursion,
    // so deep nesting cannot overflow the stack).
    serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok()
}

/// The body of a text that is exactly one markdown code fence tagged `json` or untagged.
fn code_fence_body(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("```")?;
    let (info, body) = rest.split_once('\n')?;
    let info = info.trim();
    if !(info.is_empty() || info.eq_ignore_ascii_case("json")) {
        return None;
    }
    body.trim_end().strip_suffix("```")
}

// ---------------------------------------------------------------------------------------------
// Personal data

fn contains_pii(text: &str) -> bool {
    contains_email(text) || contains_phone_or_card(text)
}

const MAX_EMAIL_LOCAL_BYTES: usize = 64;
const MAX_EMAIL_DOMAIN_BYTES: usize = 253;
/// Top-level "domains" that are really file extensions (`icon@2x.png`).
const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "gif", "svg", "webp"];

fn contains_email(text: &str) -> bool {
    let bytes = text.as_bytes();
    // Every byte an address is made of is ASCII, so the scan works on bytes.
    bytes
        .iter()
        .enumerate()
        .any(|(at, &byte)| byte == b'@' && is_email_at(bytes, at))
}

fn is_email_local_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_email_domain_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-')
}

/// Whether the `@` at byte `at` joins a plausible local part and domain.
fn is_email_at(bytes: &[u8], at: usize) -> bool {
    // Scans are capped one past the longest valid part, so each `@` costs O(1).
    let mut start = at;
    while start > 0 && at - start <= MAX_EMAIL_LOCAL_BYTES && is_email_local_byte(bytes[start - 1])
    {
        start -= 1;
    }
    let local = &bytes[start..at];
    let local_ok = !local.is_empty()
        && local.len() <= MAX_EMAIL_LOCAL_BYTES
        && local.first() != Some(&b'.')
        && local.last() != Some(&b'.')
        && !local.windows(2).any(|pair| pair == b"..")
        && local.iter().any(u8::is_ascii_alphanumeric);
    if !local_ok {
        return false;
    }

    let mut end = at + 1;
    while end < bytes.len()
        && end - at <= MAX_EMAIL_DOMAIN_BYTES + 1
        && is_email_domain_byte(bytes[end])
    {
        end += 1;
    }
    let mut domain = &bytes[at + 1..end];
    // A trailing dot ends the sentence, not the domain.
    while let Some(rest) = domain.strip_suffix(b".") {
        domain = rest;
    }
    if domain.len() > MAX_EMAIL_DOMAIN_BYTES {
        return false;
    }
    let labels: Vec<&[u8]> = domain.split(|&byte| byte == b'.').collect();
    let labels_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label.first() != Some(&b'-')
                && label.last() != Some(&b'-')
        });
    let Some(tld) = labels.last() else {
        return false;
    };
    labels_ok
        && (2..=24).contains(&tld.len())
        && tld.iter().all(u8::is_ascii_alphabetic)
        && !IMAGE_EXTENSIONS
            .iter()
            .any(|ext| tld.eq_ignore_ascii_case(ext.as_bytes()))
}

/// Most separator bytes between two digit groups (e.g. `") "`).
const MAX_GAP_BYTES: usize = 3;
/// Most digit groups one number spans (`+33 1 23 45 67 89` has 6).
const MAX_NUMBER_GROUPS: usize = 7;
/// Most digits one number has (a 19-digit card).
const MAX_NUMBER_DIGITS: usize = 19;
/// Fewest digits one number has (`+` and 8 digits); shorter windows are skipped unexamined.
const MIN_NUMBER_DIGITS: usize = 8;

/// A maximal run of digit groups joined by the separators phone and card numbers use, e.g.
/// `+82 (10) 1234-5678` or `4111 1111 1111 1111`, as byte ranges of the text.
struct DigitRun {
    /// The run starts with `+` (an international number).
    plus: bool,
    groups: Vec<Range<usize>>,
    /// `gaps[k]` lies between `groups[k]` and `groups[k + 1]`.
    gaps: Vec<Range<usize>>,
    /// The run is not glued to a preceding word, decimal point, dash...
    free_start: bool,
    /// The run is not glued to a following word.
    free_end: bool,
    /// Byte just past the last digit.
    end: usize,
}

fn contains_phone_or_card(text: &str) -> bool {
    // Every byte a number is made of is ASCII, so the scan works on bytes.
    let bytes = text.as_bytes();
    let mut pos = 0;
    while pos < bytes.len() {
        match scan_digit_run(bytes, pos) {
            Some(run) => {
                if run_has_number(bytes, &run) {
                    return true;
                }
                pos = run.end;
            }
            None => pos += 1,
        }
    }
    false
}

fn is_separator(byte: u8) -> bool {
    matches!(byte, b' ' | b'-' | b'.' | b'(' | b')')
}

/// A gap has at most one space, one dash or dot, one `(` and one `)`.
fn is_valid_gap(gap: &[u8]) -> bool {
    let count = |wanted: &[u8]| gap.iter().filter(|b| wanted.contains(b)).count();
    count(b" ") <= 1 && count(b"-.") <= 1 && count(b"(") <= 1 && count(b")") <= 1
}

/// Bytes that make following digits part of something else: a word, a decimal, a path, an id.
fn glues_before(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-' | b'/' | b'\\' | b'+')
}

/// Bytes that make preceding digits part of something else.
fn glues_after(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'/' | b'\\')
}

/// The digit run starting at `start` (at `+`, `(` or a digit), if one does.
fn scan_digit_run(bytes: &[u8], start: usize) -> Option<DigitRun> {
    let mut pos = start;
    let plus = bytes.get(pos) == Some(&b'+');
    if plus {
        pos += 1;
    }
    if bytes.get(pos) == Some(&b'(') {
        pos += 1;
    }
    if !bytes.get(pos).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let mut groups = Vec::new();
    let mut gaps = Vec::new();
    loop {
        let group_start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        groups.push(group_start..pos);
        let mut gap_end = pos;
        while gap_end - pos < MAX_GAP_BYTES && bytes.get(gap_end).is_some_and(|&b| is_separator(b))
        {
            gap_end += 1;
        }
        let joins_next = gap_end > pos
            && bytes.get(gap_end).is_some_and(u8::is_ascii_digit)
            && is_valid_gap(&bytes[pos..gap_end]);
        if !joins_next {
            break;
        }
        gaps.push(pos..gap_end);
        pos = gap_end;
    }
    Some(DigitRun {
        plus,
        groups,
        gaps,
        free_start: start == 0 || !glues_before(bytes[start - 1]),
        free_end: bytes.get(pos).is_none_or(|&b| !glues_after(b)),
        end: pos,
    })
}

/// Whether some window of consecutive groups of the run is a phone or card number. A window
/// may begin or end inside the run only at a gap with a space: "1.2.3" is one thing, while
/// "1. 010-1234-5678" is a list number and a phone number.
fn run_has_number(bytes: &[u8], run: &DigitRun) -> bool {
    let count = run.groups.len();
    let splits_at = |gap: usize| bytes[run.gaps[gap].clone()].contains(&b' ');
    for first in 0..count {
        let opens = if first == 0 {
            run.free_start
        } else {
            splits_at(first - 1)
        };
        if !opens {
            continue;
        }
        let mut digits = 0;
        for last in first..count.min(first + MAX_NUMBER_GROUPS) {
            digits += run.groups[last].len();
            if digits > MAX_NUMBER_DIGITS {
                break;
            }
            let closes = if last + 1 == count {
                run.free_end
            } else {
                splits_at(last)
            };
            if closes
                && digits >= MIN_NUMBER_DIGITS
                && window_is_number(bytes, run, first..last + 1)
            {
                return true;
            }
        }
    }
    false
}

/// A window of a digit run: its digits (values 0-9), group lengths and separators.
struct NumberWindow<'a> {
    digits: &'a [u8],
    lengths: &'a [usize],
    gaps: &'a [&'a [u8]],
    international: bool,
}

fn window_is_number(bytes: &[u8], run: &DigitRun, window: Range<usize>) -> bool {
    // Callers keep windows within MAX_NUMBER_GROUPS groups and MAX_NUMBER_DIGITS digits.
    let mut digit_buf = [0u8; MAX_NUMBER_DIGITS];
    let mut length_buf = [0usize; MAX_NUMBER_GROUPS];
    let mut gap_buf: [&[u8]; MAX_NUMBER_GROUPS] = [&[]; MAX_NUMBER_GROUPS];
    let mut digit_count = 0;
    let groups = &run.groups[window.clone()];
    for (slot, group) in length_buf.iter_mut().zip(groups) {
        *slot = group.len();
        for &byte in &bytes[group.clone()] {
            if let Some(cell) = digit_buf.get_mut(digit_count) {
                *cell = byte - b'0';
                digit_count += 1;
            }
        }
    }
    let gaps = &run.gaps[window.start..window.end - 1];
    for (slot, gap) in gap_buf.iter_mut().zip(gaps) {
        *slot = &bytes[gap.clone()];
    }
    let number = NumberWindow {
        digits: &digit_buf[..digit_count],
        lengths: &length_buf[..groups.len().min(MAX_NUMBER_GROUPS)],
        gaps: &gap_buf[..gaps.len().min(MAX_NUMBER_GROUPS)],
        international: run.plus && window.start == 0,
    };
    is_phone(&number) || is_card(&number)
}

fn is_phone(number: &NumberWindow<'_>) -> bool {
    let digits = number.digits;
    if number.international {
        return (8..=15).contains(&digits.len()) && digits.first() != Some(&0);
    }
    let korean_mobile = digits.len() >= 3
        && digits[0] == 0
        && digits[1] == 1
        && matches!(digits[2], 0 | 1 | 6 | 7 | 8 | 9);
    let korean_area = digits.len() >= 3
        && digits[0] == 0
        && (((3..=6).contains(&digits[1]) && (1..=5).contains(&digits[2]))
            || (digits[1] == 7 && digits[2] == 0));
    // Spaces alone also separate plain lists of numbers ("512 256 1024").
    let punctuated = number.gaps.iter().any(|gap| gap != b" ");
    let north_american = |area: usize| {
        (2..=9).contains(&digits[area]) && (2..=9).contains(&digits[area + 3]) && punctuated
    };
    match number.lengths {
        [10 | 11] => korean_mobile,
        [2, 3 | 4, 4] => digits[0] == 0 && digits[1] == 2,
        [3, 3 | 4, 4] => {
            korean_mobile || korean_area || (number.lengths[1] == 3 && north_american(0))
        }
        [1, 3, 3, 4] => digits[0] == 1 && north_american(1),
        _ => false,
    }
}

fn is_card(number: &NumberWindow<'_>) -> bool {
    let digits = number.digits;
    let Some(&first) = digits.first() else {
        return false;
    };
    if !(13..=19).contains(&digits.len()) || !matches!(first, 2..=6 | 9) {
        return false;
    }
    // "0000 0000 0000 0000"-style placeholders pass Luhn but are nobody's card.
    if digits.iter().all(|&d| d == first) {
        return false;
    }
    let grouping_ok = match number.lengths {
        [_] => true,
        lengths => {
            let shape_ok = match lengths {
                [4, 6, 5] | [4, 6, 4] => true,
                [fours @ .., last] => {
                    fours.len() >= 3 && fours.iter().all(|&n| n == 4) && (1..=4).contains(last)
                }
                [] => false,
            };
            let one_separator = number.gaps.first().is_some_and(|&separator| {
                matches!(separator, b" " | b"-") && number.gaps.iter().all(|&gap| gap == separator)
            });
            shape_ok && one_separator
        }
    };
    grouping_ok && luhn_valid(digits)
}

/// The Luhn checksum that every payment card number satisfies (and 9 in 10 random numbers
/// do not).
fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(index, &digit)| {
            let digit = u32::from(digit);
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::Usage;
    use proptest::prelude::*;

    fn record(output: Option<&str>, attributes: &[(&str, &str)]) -> Record {
        Record {
            request_id: "r1".into(),
            timestamp_ms: 1_767_225_600_000,
            model: "gpt-4o".into(),
            provider: None,
            usage: Usage::default(),
            user_id: None,
            feature: None,
            session_id: None,
            release: None,
            status: Status::Ok,
            error_type: None,
            stages: BTreeMap::new(),
            duration_ms: 100.0,
            ttft_ms: None,
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            input: Some("question".into()),
            output: output.map(str::to_string),
            input_chars: None,
            output_chars: None,
            scores: Vec::new(),
        }
    }

    fn all() -> HeuristicSet {
        HeuristicSet::default()
    }

    /// The score named `name`, if emitted.
    fn score(output: &str, attributes: &[(&str, &str)], name: &str) -> Option<f64> {
        evaluate(&record(Some(output), attributes), &all())
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s)
    }

    fn refusal(output: &str) -> Option<f64> {
        score(output, &[], NO_REFUSAL)
    }

    fn pii(output: &str) -> f64 {
        score(output, &[], NO_PII).expect("no_pii is always emitted")
    }

    #[test]
    fn all_scores_in_contract_order() {
        let r = record(
            Some("{\"a\": 1}"),
            &[
                ("finish_reason", "stop"),
                ("response_format", "json_object"),
            ],
        );
        assert_eq!(
            evaluate(&r, &all()),
            vec![
                ("non_empty", 1.0),
                ("no_refusal", 1.0),
                ("not_truncated", 1.0),
                ("valid_json", 1.0),
                ("no_pii", 1.0),
            ]
        );
    }

    #[test]
    fn uncaptured_or_failed_requests_get_no_scores() {
        assert!(evaluate(&record(None, &[("finish_reason", "length")]), &all()).is_empty());
        let mut failed = record(Some("I can't help with that."), &[]);
        failed.status = Status::Error;
        assert!(evaluate(&failed, &all()).is_empty());
    }

    #[test]
    fn empty_answers() {
        for blank in [
            "",
            "   ",
            "\n\t ",
            "\u{3000}",
            "\u{200B}\u{FEFF}",
            " \u{200B} \u{3000}",
        ] {
            assert_eq!(score(blank, &[], NON_EMPTY), Some(0.0), "{blank:?}");
            // An empty answer is not a refusal: that score is skipped.
            assert_eq!(refusal(blank), None, "{blank:?}");
            assert_eq!(score(blank, &[], NO_PII), Some(1.0));
        }
        assert_eq!(score("ok", &[], NON_EMPTY), Some(1.0));
        assert_eq!(score("\u{200B}.", &[], NON_EMPTY), Some(1.0));
    }

    #[test]
    fn english_refusals() {
        for text in [
            "I can't help with that.",
            "I cannot help with this request.",
            "Sorry — I can't assist with that.",
            "I'm unable to comply with this request.",
            "I am unable to share that information.",
            "I'm not able to do that.",
            "I won't be able to help with this one.",
            "I'm sorry, but I can't share personal data.",
            "As an AI language model, I cannot browse the internet.",
            "I can't provide medical diagnoses.",
            "I must decline this request.",
            "  \n I CAN'T HELP WITH THAT",
            "I can not assist with that.",
            "I will not be able to help you with that.",
        ] {
            assert_eq!(refusal(text), Some(0.0), "{text:?}");
        }
    }

    #[test]
    fn curly_apostrophes_are_read_as_straight_ones() {
        assert_eq!(refusal("I can\u{2019}t help with that."), Some(0.0));
        assert_eq!(refusal("I\u{2019}m unable to do that."), Some(0.0));
        assert_eq!(
            refusal("I\u{2019}m sorry, but I can\u{2019}t share that."),
            Some(0.0)
        );
    }

    #[test]
    fn korean_refusals() {
        for text in [
            "죄송합니다. 해당 요청은 도와드릴 수 없습니다.",
            "그 부분은 도와 드릴 수 없어요.",
            "이 질문에는 답변드릴 수 없습니다.",
            "개인정보는 답변해 드릴 수 없습니다.",
            "요청하신 정보는 제공할 수 없습니다.",
            "해당 내용은 제공해 드릴 수 없습니다.",
            "이 요청에는 응답할 수 없습니다.",
            "죄송하지만 그 요청은 처리해 드릴 수 없습니다.",
            "죄송하지만, 요청하신 작업은 진행할 수 없어요.",
            "그 작업은 할 수 없습니다. 다른 질문을 해 주세요.",
        ] {
            assert_eq!(refusal(text), Some(0.0), "{text:?}");
        }
    }

    #[test]
    fn helpful_answers_are_not_refusals() {
        for text in [
            "Sure! Here is how to reset your password: open Settings, then Security.",
            "I can't help but notice the loop never ends; move the increment inside it.",
            "네, 비밀번호는 설정 메뉴에서 변경할 수 있습니다.",
            // The apology and the "수 없" are in different sentences.
            "죄송하지만 확인해 보니 오타가 있었네요. 수정본은 다음과 같습니다. 이 값은 바꿀 수 없습니다.",
            "Hi! Amazing question. Hi am I? No.",
        ] {
            assert_eq!(refusal(text), Some(1.0), "{text:?}");
        }
    }

    #[test]
    fn inability_mentioned_late_in_a_long_answer_is_not_a_refusal() {
        let body = "To configure the exporter, set the endpoint and the headers in the \
                    environment, restart the service and check the logs for the first batch. "
            .repeat(3);
        assert!(body.chars().count() > REFUSAL_WINDOW_CHARS);
        let text = format!(
            "{body}Note that I can't guarantee the latency numbers on your hardware, and I \
             can't provide exact figures for every region, but they should be close."
        );
        assert_eq!(refusal(&text), Some(1.0));
        // The same sentence at the start is a refusal.
        assert_eq!(refusal("I can't provide exact figures."), Some(0.0));
        // Korean: a late inability is not a refusal either.
        let korean = format!(
            "{}{}",
            "설정 방법은 다음과 같습니다. ".repeat(30),
            "이 값은 제공할 수 없습니다."
        );
        assert_eq!(refusal(&korean), Some(1.0));
    }

    #[test]
    fn finish_reasons() {
        let truncated = |attrs: &[(&str, &str)]| score("partial answer", attrs, NOT_TRUNCATED);
        assert_eq!(truncated(&[]), None);
        assert_eq!(truncated(&[("finish_reason", "stop")]), Some(1.0));
        assert_eq!(truncated(&[("finish_reason", "length")]), Some(0.0));
        assert_eq!(truncated(&[("finish_reason", "LENGTH")]), Some(0.0));
        assert_eq!(truncated(&[("stop_reason", "max_tokens")]), Some(0.0));
        assert_eq!(truncated(&[("stop_reason", "end_turn")]), Some(1.0));
        assert_eq!(
            truncated(&[("gen_ai.response.finish_reasons", "[\"length\"]")]),
            Some(0.0)
        );
        assert_eq!(
            truncated(&[("gen_ai.response.finish_reasons", "[\"stop\"]")]),
            Some(1.0)
        );
        assert_eq!(
            truncated(&[("gen_ai.response.finish_reasons", "stop, length")]),
            Some(0.0)
        );
        assert_eq!(
            truncated(&[("gen_ai.response.finish_reasons", "MAX_TOKENS")]),
            Some(0.0)
        );
        assert_eq!(
            truncated(&[("gen_ai.response.finish_reasons", "['stop','tool_calls']")]),
            Some(1.0)
        );
        // No reason in the list: not known.
        assert_eq!(truncated(&[("gen_ai.response.finish_reasons", "[]")]), None);
        assert_eq!(truncated(&[("finish_reason", "null")]), None);
        // A reason merely containing the word is not it.
        assert_eq!(
            truncated(&[("finish_reason", "content_length_ok")]),
            Some(1.0)
        );
        // The finish reason is known even for an empty answer.
        assert_eq!(
            score("", &[("finish_reason", "length")], NOT_TRUNCATED),
            Some(0.0)
        );
    }

    #[test]
    fn json_is_checked_only_when_declared() {
        let json = |text: &str, attrs: &[(&str, &str)]| score(text, attrs, VALID_JSON);
        assert_eq!(json("{\"a\": 1}", &[]), None);
        assert_eq!(json("not json", &[("response_format", "text")]), None);
        for attrs in [
            [("response_format", "json")],
            [("response_format", "JSON_OBJECT")],
            [("response_format", "json_schema")],
            [("gen_ai.output.type", "json")],
        ] {
            assert_eq!(json("{\"answer\": [1, 2.5, null]}", &attrs), Some(1.0));
            assert_eq!(json("{\"answer\": [1, 2", &attrs), Some(0.0));
        }
        let declared = [("response_format", "json_object")];
        assert_eq!(json("  [true, \"x\"]\n", &declared), Some(1.0));
        assert_eq!(json("Here you go: {\"a\": 1}", &declared), Some(0.0));
        assert_eq!(json("{'a': 1}", &declared), Some(0.0));
        assert_eq!(json("{\"a\": 1} trailing", &declared), Some(0.0));
        assert_eq!(json("", &declared), Some(0.0));
        assert_eq!(
            json("```json\n{\"a\": {\"b\": \"c\"}}\n```", &declared),
            Some(1.0)
        );
        assert_eq!(json("```JSON\r\n[1,2]\r\n```\n", &declared), Some(1.0));
        assert_eq!(json("```\n{\"a\": 1}\n```", &declared), Some(1.0));
        assert_eq!(json("```json\n{\"a\": 1,}\n```", &declared), Some(0.0));
        assert_eq!(json("```python\n{\"a\": 1}\n```", &declared), Some(0.0));
        assert_eq!(
            json("```json\n{\"a\": 1}\n```\n```json\n{}\n```", &declared),
            Some(0.0)
        );
        // Deep nesting is an answer, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(json(&deep, &declared), Some(1.0));
    }

    #[test]
    fn emails_are_pii() {
        for text in [
            "Contact john.doe@example.com for details.",
            "메일은 kim_minsu+billing@corp.co.kr 로 보내 주세요.",
            "<a href=\"mailto:support@my-shop.io\">write us</a>",
            "Reach me at A.B@Sub.Domain.ORG.",
        ] {
            assert_eq!(pii(text), 0.0, "{text:?}");
        }
        for text in [
            "Use the @Override annotation.",
            "Send it to user@localhost",
            "the retina asset icon@2x.png",
            "john..doe@example.com",
            ".@example.com",
            "ping admin@192.168.0.1",
            "a @ b.com",
            "@scope/package@1.2.3",
        ] {
            assert_eq!(pii(text), 1.0, "{text:?}");
        }
    }

    #[test]
    fn korean_phone_numbers_are_pii() {
        for text in [
            "전화번호는 010-1234-5678입니다.",
            "연락처: 010 1234 5678",
            "010.9876.5432로 문자 주세요",
            "휴대폰 01012345678",
            "고객센터 02-123-4567",
            "본사 02-1234-5678",
            "(02) 123-4567",
            "부산 051-123-4567",
            "인터넷전화 070-1234-5678",
            "1. 010-1234-5678",
            "call 010-1234-5678 2 times",
        ] {
            assert_eq!(pii(text), 0.0, "{text:?}");
        }
    }

    #[test]
    fn international_and_north_american_phone_numbers_are_pii() {
        for text in [
            "Call +82 10-1234-5678.",
            "+1 (415) 555-2671",
            "+44 20 7946 0958",
            "+33 1 23 45 67 89",
            "tel:+821012345678",
            "Office: (415) 555-2671",
            "415-555-2671",
            "1-800-555-0199",
        ] {
            assert_eq!(pii(text), 0.0, "{text:?}");
        }
    }

    #[test]
    fn dates_versions_and_plain_numbers_are_not_pii() {
        for text in [
            "Released on 2024-01-15 at 10:30.",
            "2024. 01. 15. 기준",
            "Upgrade to version 1.2.3 or 10.0.19045.1234.",
            "v2.14.0-rc.1",
            "Server 192.168.100.200 port 8080",
            "Order number 202401151234567 shipped.",
            "Order 98765432101 is on its way.",
            "Totals: 512 256 1024",
            "+5 points, then 12345",
            "+1234567",
            "Price: $1,234,567.89",
            "ISBN 978-3-16-148410-0",
            "Call 123-456-7890",
            "timestamp 1767225600000",
            "uuid 550e8400-e29b-41d4-a716-446655440000",
            "0212345678",
        ] {
            assert_eq!(pii(text), 1.0, "{text:?}");
        }
    }

    #[test]
    fn luhn_valid_card_numbers_are_pii() {
        assert!(luhn_valid(&[
            4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
        ]));
        assert!(!luhn_valid(&[
            4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2
        ]));
        for text in [
            "Card: 4111 1111 1111 1111",
            "MC 5500-0000-0000-0004 exp 12/27",
            "4111111111111111",
            "Amex 3782 822463 10005",
            "카드번호 4111-1111-1111-1111 로 결제",
        ] {
            assert_eq!(pii(text), 0.0, "{text:?}");
        }
        for text in [
            // Luhn-invalid.
            "Card: 4111 1111 1111 1112",
            "4111111111111112",
            "5500-0000-0000-0005",
            // Mixed separators or odd grouping.
            "4111 1111-1111 1111",
            "41 1111 1111 1111 11",
            // Glued to a word.
            "ID4111111111111111",
            // Placeholder.
            "4444 4444 4444 4444",
        ] {
            assert_eq!(pii(text), 1.0, "{text:?}");
        }
    }

    #[test]
    fn disabled_evaluators_emit_nothing() {
        let r = record(
            Some("I can't help with that. Mail me: a@b.com"),
            &[("finish_reason", "length"), ("response_format", "json")],
        );
        let none = HeuristicSet {
            empty: false,
            refusal: false,
            truncated: false,
            json: false,
            pii: false,
        };
        assert!(evaluate(&r, &none).is_empty());
        let names = |set: HeuristicSet| -> Vec<&str> {
            evaluate(&r, &set).into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(
            names(HeuristicSet {
                refusal: true,
                ..none
            }),
            [NO_REFUSAL]
        );
        assert_eq!(
            names(HeuristicSet {
                pii: false,
                ..all()
            })
            .len(),
            4
        );
        assert!(
            !names(HeuristicSet {
                json: false,
                ..all()
            })
            .contains(&VALID_JSON)
        );
        assert_eq!(
            evaluate(&r, &all()),
            vec![
                (NON_EMPTY, 1.0),
                (NO_REFUSAL, 0.0),
                (NOT_TRUNCATED, 0.0),
                (VALID_JSON, 0.0),
                (NO_PII, 0.0),
            ]
        );
    }

    #[test]
    fn config_table_defaults_and_unknown_keys() {
        let set: HeuristicSet = toml::from_str("pii = false").unwrap();
        assert_eq!(
            set,
            HeuristicSet {
                pii: false,
                ..all()
            }
        );
        assert_eq!(toml::from_str::<HeuristicSet>("").unwrap(), all());
        assert!(toml::from_str::<HeuristicSet>("refusals = false").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_text_is_scored_without_panicking(
            text in prop_oneof![
                any::<String>(),
                "[0-9 +().@a-z_-]{0,80}",
                "[ 0-9\u{3000}\u{200B}가-힣’'`.,!?\n-]{0,120}",
            ],
            reason in "[a-z_\\[\\]\",]{0,20}",
        ) {
            let r = record(
                Some(&text),
                &[("finish_reason", &reason), ("response_format", "json")],
            );
            let scores = evaluate(&r, &all());
            prop_assert!(scores.len() >= 3);
            for (_, s) in scores {
                prop_assert!(s == 0.0 || s == 1.0);
            }
        }
    }
}
