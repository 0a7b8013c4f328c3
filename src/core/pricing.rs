//! Model prices and the cost of a request.
//!
//! Owns the built-in price table (`data/prices.toml`), the `[[pricing]]` entry format shared with
//! the config file, the matching of reported model names to price entries, and the cost formula.
//! Pure code: no I/O, no clock reads (the request's timestamp is an argument).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::core::record::Usage;

/// The built-in price table, compiled into the binary.
const BUILTIN_TOML: &str = include_str!("../../data/prices.toml");

const MS_PER_DAY: i64 = 86_400_000;
/// Prices are per this many tokens.
const TOKENS_PER_PRICE_UNIT: f64 = 1_000_000.0;
/// `NaiveDate::num_days_from_ce` of 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;
/// Effective-from day of an entry without `effective_from`: before every request.
const ALWAYS: i64 = i64::MIN;

/// One price entry; the same shape is used by data/prices.toml and by the user's config file
/// `[[pricing]]` tables.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// Canonical model id, e.g. "gpt-4o".
    pub model: String,
    /// "openai", "anthropic", ...
    #[serde(default)]
    pub provider: Option<String>,
    /// USD per 1M input tokens.
    pub input: f64,
    /// USD per 1M output tokens.
    pub output: f64,
    /// USD per 1M cached input tokens (None -> input price).
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// USD per 1M cache-write tokens (None -> input price).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// In force from 00:00 UTC of that day; None = always. Accepts a TOML date
    /// (`effective_from = 2025-06-10`) or a string (`"2025-06-10"`); serializes as a string.
    #[serde(default, deserialize_with = "deserialize_optional_date")]
    pub effective_from: Option<NaiveDate>,
}

/// Why a price table or price entry was rejected. Messages name the entry (by model, or by
/// 1-based position when the model itself is missing) and the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    /// Not valid TOML, or not the `[[pricing]]` shape (an unknown key, a missing field...).
    #[error("pricing: {0}")]
    Toml(#[from] toml::de::Error),
    /// One entry is invalid, e.g. `pricing[acme-ft].input: must be a finite number >= 0`.
    #[error("pricing[{model}].{field}: {message}")]
    Invalid {
        /// The entry's model, or `#N` (1-based position) when the model is empty.
        model: String,
        field: &'static str,
        message: String,
    },
}

impl PricingError {
    fn invalid(model: impl Into<String>, field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            model: model.into(),
            field,
            message: message.into(),
        }
    }
}

/// The `[[pricing]]` file format.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    #[serde(default)]
    pricing: Vec<PriceEntry>,
}

/// A validated set of price entries with a lookup index; cheap to query (see
/// [`PriceTable::resolve`]).
#[derive(Debug, Clone)]
pub struct PriceTable {
    /// Sorted by provider, model, effective_from.
    entries: Vec<PriceEntry>,
    /// ASCII-lower-cased model id -> (first day in force as days since 1970-01-01, or [`ALWAYS`];
    /// index into `entries`), sorted by day.
    index: HashMap<String, Vec<(i64, usize)>>,
}

impl PriceTable {
    /// The built-in table embedded from `data/prices.toml`.
    pub fn builtin() -> Self {
        Self::from_toml(BUILTIN_TOML)
            .expect("the built-in data/prices.toml is valid (checked by a unit test)")
    }

    /// Parses a price file: a top-level `[[pricing]]` array of [`PriceEntry`]. Unknown keys are
    /// rejected.
    pub fn from_toml(text: &str) -> Result<Self, PricingError> {
        let file: PriceFile = toml::from_str(text)?;
        Self::from_entries(file.pricing)
    }

    /// Validates every entry (non-empty model without surrounding whitespace, finite prices >= 0,
    /// no two entries with the same model (case-insensitive) and effective_from) and builds the
    /// lookup index.
    pub fn from_entries(mut entries: Vec<PriceEntry>) -> Result<Self, PricingError> {
        validate_all(&entries)?;
        entries.sort_by(|a, b| {
            (a.provider.as_deref(), a.model.as_str(), a.effective_from).cmp(&(
                b.provider.as_deref(),
                b.model.as_str(),
                b.effective_from,
            ))
        });
        let mut index: HashMap<String, Vec<(i64, usize)>> = HashMap::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let from = entry.effective_from.map_or(ALWAYS, epoch_day);
            let versions = index.entry(entry.model.to_ascii_lowercase()).or_default();
            if versions.iter().any(|&(day, _)| day == from) {
                let when = entry
                    .effective_from
                    .map_or_else(|| "(none)".to_owned(), |d| d.to_string());
                return Err(PricingError::invalid(
                    entry.model.as_str(),
                    "effective_from",
                    format!(
                        "duplicate entry: another entry of this model has effective_from {when}"
                    ),
                ));
            }
            versions.push((from, i));
        }
        for versions in index.values_mut() {
            versions.sort_unstable();
        }
        Ok(Self { entries, index })
    }

    /// Config entries add models and override built-in ones: for every model named in `entries`,
    /// the entries given replace ALL built-in entries of that model (so a user can re-date a model
    /// completely). Model names are compared case-insensitively.
    pub fn with_overrides(self, entries: Vec<PriceEntry>) -> Result<Self, PricingError> {
        if entries.is_empty() {
            return Ok(self);
        }
        // Validate the overrides on their own first, so positions in errors are theirs.
        validate_all(&entries)?;
        let replaced: HashSet<String> = entries
            .iter()
            .map(|e| e.model.to_ascii_lowercase())
            .collect();
        let mut merged: Vec<PriceEntry> = self
            .entries
            .into_iter()
            .filter(|e| !replaced.contains(&e.model.to_ascii_lowercase()))
            .collect();
        merged.extend(entries);
        Self::from_entries(merged)
    }

    /// The price in force for `model` at `timestamp_ms` (unix ms, UTC), or None when the model is
    /// unknown (or all its entries start later). Never guesses a wrong model: unknown is better
    /// than mispriced.
    ///
    /// Matching, first rule that finds a model wins:
    /// 1. exact, case-insensitive match of the canonical id (surrounding whitespace ignored);
    /// 2. route prefixes stripped, then exact again: everything up to the last `/`
    ///    (`openai/gpt-4o`, `openrouter/anthropic/claude-sonnet-4`, `models/gemini-2.5-pro`);
    ///    Bedrock ids `[region.]vendor.<id>-vN:M` (`us.anthropic.claude-sonnet-4-20250514-v1:0`)
    ///    lose the dotted alphabetic prefixes and the `-vN:M` suffix; and in `claude-*` names
    ///    dots become hyphens (OpenRouter's `claude-3.5-sonnet` is `claude-3-5-sonnet`);
    /// 3. one snapshot suffix removed from that name, then exact again: `-YYYY-MM-DD`
    ///    (`gpt-4o-2024-08-06`), `-YYYYMMDD` (`claude-sonnet-4-20250514`), `@YYYYMMDD` (Vertex),
    ///    `-MMDD` (`gpt-4-0613`) — dates must be valid (years 2000-2099) — or `-latest`. A
    ///    snapshot with its own entry keeps it (rule 1 wins).
    /// 4. nothing else: no fuzzy or generic prefix matching (`gpt-4o-audio-preview` is unknown,
    ///    not gpt-4o). Mistral's `-YYMM` ids (`mistral-large-2411`) are not stripped.
    ///
    /// Among the matched model's entries, the one with the greatest `effective_from` on or before
    /// the request's UTC date is used (an entry without `effective_from` counts as the earliest).
    /// The first rule that finds the model decides, even if none of its entries is in force yet.
    pub fn resolve(&self, model: &str, timestamp_ms: i64) -> Option<&PriceEntry> {
        let versions = self.lookup(model)?;
        let day = timestamp_ms.div_euclid(MS_PER_DAY);
        versions
            .iter()
            .rev()
            .find(|&&(from, _)| from <= day)
            .map(|&(_, i)| &self.entries[i])
    }

    /// USD cost of a request, or None when the model is unpriced. Never 0 for an unknown model.
    pub fn cost(&self, model: &str, timestamp_ms: i64, usage: &Usage) -> Option<f64> {
        self.resolve(model, timestamp_ms)
            .map(|price| cost_of(price, usage))
    }

    /// All entries, sorted by provider (entries without one first), model, effective_from
    /// (for `llmwatch pricing list`).
    pub fn entries(&self) -> &[PriceEntry] {
        &self.entries
    }

    /// The entries of the model `model` resolves to, by effective_from (matching rules of
    /// [`PriceTable::resolve`]).
    fn lookup(&self, model: &str) -> Option<&[(i64, usize)]> {
        let model = model.trim();
        // Rule 1, without allocating when the name is already lower-case (the common case).
        if let Some(versions) = self.index.get(model) {
            return Some(versions);
        }
        let lower: Cow<'_, str> = if model.bytes().any(|b| b.is_ascii_uppercase()) {
            let lower = model.to_ascii_lowercase();
            if let Some(versions) = self.index.get(&lower) {
                return Some(versions);
            }
            Cow::Owned(lower)
        } else {
            Cow::Borrowed(model)
        };
        // Rule 2.
        let routed = strip_route(&lower);
        if routed != lower {
            if let Some(versions) = self.index.get(routed.as_ref()) {
                return Some(versions);
            }
        }
        // Rule 3.
        let base = strip_snapshot(&routed)?;
        self.index.get(base).map(Vec::as_slice)
    }
}

/// USD cost of `usage` at `price`. Cost formula, token counts times prices per 1M tokens:
///
/// ```text
/// (input - cached - cache_write) * input + cached * cached_input
///     + cache_write * cache_write + output * output
/// ```
///
/// A missing cached_input or cache_write price uses the input price. Reasoning tokens are inside
/// output and priced as output. Inconsistent counts (cached + cache_write > input) are clamped to
/// input, so the result is never negative.
pub fn cost_of(price: &PriceEntry, usage: &Usage) -> f64 {
    let input = usage.input_tokens;
    let cached = usage.cached_input_tokens.min(input);
    let cache_write = usage.cache_write_tokens.min(input - cached);
    let uncached = input - cached - cache_write;
    let cached_price = price.cached_input.unwrap_or(price.input);
    let cache_write_price = price.cache_write.unwrap_or(price.input);
    (uncached as f64 * price.input
        + cached as f64 * cached_price
        + cache_write as f64 * cache_write_price
        + usage.output_tokens as f64 * price.output)
        / TOKENS_PER_PRICE_UNIT
}

fn validate_all(entries: &[PriceEntry]) -> Result<(), PricingError> {
    entries
        .iter()
        .enumerate()
        .try_for_each(|(i, entry)| validate(i, entry))
}

fn validate(position: usize, entry: &PriceEntry) -> Result<(), PricingError> {
    let model = entry.model.as_str();
    if model.trim().is_empty() {
        return Err(PricingError::invalid(
            format!("#{}", position + 1),
            "model",
            "must not be empty",
        ));
    }
    if model.trim() != model {
        return Err(PricingError::invalid(
            model,
            "model",
            "must not have leading or trailing whitespace",
        ));
    }
    let prices = [
        ("input", Some(entry.input)),
        ("output", Some(entry.output)),
        ("cached_input", entry.cached_input),
        ("cache_write", entry.cache_write),
    ];
    for (field, value) in prices {
        if value.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
            return Err(PricingError::invalid(
                model,
                field,
                "must be a finite number >= 0",
            ));
        }
    }
    Ok(())
}

/// Days since 1970-01-01 of `date`.
fn epoch_day(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce()) - UNIX_EPOCH_DAYS_FROM_CE
}

/// Rule 2: the name without route prefixes (`a/b/`), Bedrock decoration, and with dots turned
/// into hyphens in `claude-*` names. `name` is lower-case.
fn strip_route(name: &str) -> Cow<'_, str> {
    let mut name = name.rsplit_once('/').map_or(name, |(_, last)| last);
    if let Some(core) = strip_bedrock(name) {
        name = core;
    }
    if name.starts_with("claude-") && name.contains('.') {
        Cow::Owned(name.replace('.', "-"))
    } else {
        Cow::Borrowed(name)
    }
}

/// `[region.]vendor.<id>-vN:M` -> `<id>`, or None when `name` is not of that form. The prefixes
/// must be purely alphabetic and the suffix present, so ordinary ids with dots (`gpt-4.1`) are
/// never touched.
fn strip_bedrock(name: &str) -> Option<&str> {
    let (head, minor) = name.rsplit_once(':')?;
    let (head, major) = head.rsplit_once("-v")?;
    if !all_digits(minor) || !all_digits(major) {
        return None;
    }
    let mut rest = head;
    let mut stripped = false;
    while let Some((segment, tail)) = rest.split_once('.') {
        if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_lowercase()) {
            break;
        }
        rest = tail;
        stripped = true;
    }
    (stripped && !rest.is_empty()).then_some(rest)
}

/// Rule 3: `name` without one snapshot suffix, or None when it has none.
fn strip_snapshot(name: &str) -> Option<&str> {
    let base = if let Some(base) = name.strip_suffix("-latest") {
        base
    } else if let Some((base, date)) = name.rsplit_once('@') {
        if !is_yyyymmdd(date) {
            return None;
        }
        base
    } else {
        split_tail(name, 11)
            .filter(|&(_, tail)| is_dashed_date(tail))
            .or_else(|| {
                split_tail(name, 9)
                    .filter(|&(_, tail)| tail.strip_prefix('-').is_some_and(is_yyyymmdd))
            })
            .or_else(|| {
                split_tail(name, 5).filter(|&(_, tail)| tail.strip_prefix('-').is_some_and(is_mmdd))
            })?
            .0
    };
    (!base.is_empty() && !base.ends_with('-')).then_some(base)
}

/// `name` split into everything but the last `len` bytes, and those bytes.
fn split_tail(name: &str, len: usize) -> Option<(&str, &str)> {
    let at = name.len().checked_sub(len)?;
    Some((name.get(..at)?, name.get(at..)?))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses an all-digit string (at most 4 digits) as a number.
fn number(s: &str) -> Option<u32> {
    if s.len() > 4 || !all_digits(s) {
        return None;
    }
    s.parse().ok()
}

fn is_date(year: u32, month: u32, day: u32) -> bool {
    (2000..=2099).contains(&year)
        && i32::try_from(year)
            .ok()
            .and_then(|y| NaiveDate::from_ymd_opt(y, month, day))
            .is_some()
}

/// `YYYYMMDD`, a valid date.
fn is_yyyymmdd(s: &str) -> bool {
    if s.len() != 8 || !all_digits(s) {
        return false;
    }
    match (number(&s[..4]), number(&s[4..6]), number(&s[6..])) {
        (Some(y), Some(m), Some(d)) => is_date(y, m, d),
        _ => false,
    }
}

/// `-YYYY-MM-DD`, a valid date.
fn is_dashed_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 11 || b[0] != b'-' || b[5] != b'-' || b[8] != b'-' {
        return false;
    }
    match (number(&s[1..5]), number(&s[6..8]), number(&s[9..])) {
        (Some(y), Some(m), Some(d)) => is_date(y, m, d),
        _ => false,
    }
}

/// `MMDD`, a valid day of some year.
fn is_mmdd(s: &str) -> bool {
    if s.len() != 4 || !all_digits(s) {
        return false;
    }
    match (number(&s[..2]), number(&s[2..])) {
        // 2000 is a leap year, so 0229 is accepted.
        (Some(m), Some(d)) => is_date(2000, m, d),
        _ => false,
    }
}

/// `effective_from`: a TOML local date, a `YYYY-MM-DD` string, or absent/null.
fn deserialize_optional_date<'de, D>(deserializer: D) -> Result<Option<NaiveDate>, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_option(OptionalDateVisitor)
}

struct OptionalDateVisitor;

impl<'de> Visitor<'de> for OptionalDateVisitor {
    type Value = Option<NaiveDate>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a date such as 2025-06-10")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| E::custom(format!("invalid date {v:?}: expected YYYY-MM-DD")))
    }

    /// TOML dates (`effective_from = 2025-06-10`) reach serde as toml's private datetime map.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let datetime =
            toml::value::Datetime::deserialize(de::value::MapAccessDeserializer::new(map))?;
        match (datetime.date, datetime.time, datetime.offset) {
            (Some(date), None, None) => NaiveDate::from_ymd_opt(
                i32::from(date.year),
                u32::from(date.month),
                u32::from(date.day),
            )
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("invalid date {datetime}"))),
            _ => Err(de::Error::custom(format!(
                "expected a date without a time, such as 2025-06-10, found {datetime}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= EPS
    }

    /// Unix ms of `y-m-d hh:mm:ss.mmm` UTC.
    fn ts(y: i32, m: u32, d: u32, hh: u32, mm: u32, ss: u32, ms: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|date| date.and_hms_milli_opt(hh, mm, ss, ms))
            .expect("valid test timestamp")
            .and_utc()
            .timestamp_millis()
    }

    /// 2025-07-01 12:00 UTC: a date at which every seed model is in force.
    fn mid_2025() -> i64 {
        ts(2025, 7, 1, 12, 0, 0, 0)
    }

    fn entry(model: &str, input: f64, output: f64) -> PriceEntry {
        PriceEntry {
            model: model.to_owned(),
            provider: Some("acme".to_owned()),
            input,
            output,
            cached_input: None,
            cache_write: None,
            effective_from: None,
        }
    }

    fn usage(input: u64, cached: u64, cache_write: u64, output: u64, reasoning: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
            cache_write_tokens: cache_write,
            reasoning_tokens: reasoning,
        }
    }

    fn error_of(result: Result<PriceTable, PricingError>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn builtin_parses_and_has_the_seed_models_at_the_seed_prices() {
        let table = PriceTable::from_toml(BUILTIN_TOML).expect("built-in table parses");
        assert!(table.entries().len() >= 50);
        // (model, input, output, cached_input, cache_write)
        let seed = [
            ("claude-opus-4-20250514", 15.0, 75.0, Some(1.5), Some(18.75)),
            ("claude-sonnet-4-20250514", 3.0, 15.0, Some(0.3), Some(3.75)),
            (
                "claude-haiku-3-20250414",
                0.25,
                1.25,
                Some(0.025),
                Some(0.3125),
            ),
            ("gpt-4o", 2.5, 10.0, Some(1.25), None),
            ("gpt-4o-mini", 0.15, 0.6, Some(0.075), None),
        ];
        for (model, input, output, cached, write) in seed {
            let p = table.resolve(model, mid_2025()).expect(model);
            assert_eq!(p.model, model);
            assert!(close(p.input, input), "{model} input {}", p.input);
            assert!(close(p.output, output), "{model} output {}", p.output);
            assert_eq!(p.cached_input, cached, "{model} cached_input");
            assert_eq!(p.cache_write, write, "{model} cache_write");
            // These never changed price: one entry each, in force at any time.
            assert_eq!(table.resolve(model, 0), Some(p));
        }
        // Anthropic seed models: cache reads 10% and cache writes 125% of input.
        for model in [
            "claude-opus-4-20250514",
            "claude-sonnet-4-20250514",
            "claude-haiku-3-20250414",
        ] {
            let p = table.resolve(model, mid_2025()).expect(model);
            assert!(
                close(p.cached_input.expect(model), p.input * 0.1),
                "{model}"
            );
            assert!(
                close(p.cache_write.expect(model), p.input * 1.25),
                "{model}"
            );
        }
        // `builtin()` is the same table.
        assert_eq!(PriceTable::builtin().entries(), table.entries());
    }

    #[test]
    fn builtin_entries_are_sorted_have_a_provider_and_resolve_to_themselves() {
        let table = PriceTable::builtin();
        let entries = table.entries();
        for pair in entries.windows(2) {
            let key = |e: &PriceEntry| (e.provider.clone(), e.model.clone(), e.effective_from);
            assert!(
                key(&pair[0]) < key(&pair[1]),
                "{:?} / {:?}",
                pair[0],
                pair[1]
            );
        }
        let far_future = ts(2099, 1, 1, 0, 0, 0, 0);
        for e in entries {
            assert!(e.provider.is_some(), "{} has no provider", e.model);
            let p = table.resolve(&e.model, far_future).expect(&e.model);
            assert_eq!(
                p.model, e.model,
                "{} must resolve to its own entries",
                e.model
            );
        }
    }

    #[test]
    fn cost_with_cached_and_cache_write_tokens() {
        let table = PriceTable::builtin();
        // claude-sonnet-4-20250514: input 3, output 15, cached 0.30, cache write 3.75 per 1M.
        // 10_000 input of which 4_000 cached and 2_000 cache-write -> 4_000 uncached.
        //   4_000 * 3    = 12_000
        //   4_000 * 0.30 =  1_200
        //   2_000 * 3.75 =  7_500
        //   1_000 * 15   = 15_000   (the 200 reasoning tokens are inside the 1_000 output)
        //   total 35_700 / 1e6 = 0.0357 USD
        let u = usage(10_000, 4_000, 2_000, 1_000, 200);
        let cost = table
            .cost("claude-sonnet-4-20250514", mid_2025(), &u)
            .expect("priced");
        assert!(close(cost, 0.0357), "{cost}");

        // gpt-4o: input 2.50, output 10, cached 1.25, no cache-write price (-> input price).
        // 1_000_000 input, 500_000 cached, 100_000 cache-write, 400_000 uncached; 200_000 output.
        //   400_000 * 2.50 = 1_000_000
        //   500_000 * 1.25 =   625_000
        //   100_000 * 2.50 =   250_000
        //   200_000 * 10   = 2_000_000
        //   total 3_875_000 / 1e6 = 3.875 USD
        let u = usage(1_000_000, 500_000, 100_000, 200_000, 0);
        let cost = table.cost("gpt-4o", mid_2025(), &u).expect("priced");
        assert!(close(cost, 3.875), "{cost}");
    }

    #[test]
    fn reasoning_tokens_are_not_charged_twice() {
        let p = entry("acme-ft", 1.0, 4.0);
        // 1_000 output of which 900 reasoning: 1_000 * 4 = 4_000 -> 0.004 USD; no input.
        let cost = cost_of(&p, &usage(0, 0, 0, 1_000, 900));
        assert!(close(cost, 0.004), "{cost}");
    }

    #[test]
    fn model_without_cached_price_uses_the_input_price() {
        let table = PriceTable::from_entries(vec![entry("acme-ft", 2.0, 4.0)]).expect("valid");
        // Every input token at 2, cached or not: 1_000 * 2 = 2_000; output 500 * 4 = 2_000;
        // total 4_000 / 1e6 = 0.004 USD.
        let u = usage(1_000, 300, 200, 500, 0);
        let cost = table.cost("acme-ft", mid_2025(), &u).expect("priced");
        assert!(close(cost, 0.004), "{cost}");
        // Same as if nothing were cached.
        let plain = table
            .cost("acme-ft", mid_2025(), &usage(1_000, 0, 0, 500, 0))
            .expect("priced");
        assert!(close(cost, plain));
    }

    #[test]
    fn inconsistent_cache_counts_are_clamped() {
        let mut p = entry("acme-ft", 2.0, 4.0);
        p.cached_input = Some(1.0);
        p.cache_write = Some(3.0);
        // cached 800 of 1_000 input; cache-write 500 is clamped to the 200 left; 0 uncached.
        //   800 * 1 = 800; 200 * 3 = 600; total 1_400 / 1e6 = 0.0014 USD.
        let cost = cost_of(&p, &usage(1_000, 800, 500, 0, 0));
        assert!(close(cost, 0.0014), "{cost}");
    }

    #[test]
    fn effective_date_change_prices_each_side_of_the_boundary() {
        let table = PriceTable::builtin();
        // o3: 10/40 until 2025-06-09, 2/8 from 2025-06-10 00:00 UTC.
        // 1M input + 1M output: before 10 + 40 = 50 USD, after 2 + 8 = 10 USD.
        let u = usage(1_000_000, 0, 0, 1_000_000, 0);
        let before = ts(2025, 6, 9, 23, 59, 59, 999);
        let after = ts(2025, 6, 10, 0, 0, 0, 0);
        assert_eq!(after - before, 1);
        let cost_before = table.cost("o3", before, &u).expect("priced");
        let cost_after = table.cost("o3", after, &u).expect("priced");
        assert!(close(cost_before, 50.0), "{cost_before}");
        assert!(close(cost_after, 10.0), "{cost_after}");
        // The snapshot id follows the same history.
        let snapshot = table.cost("o3-2025-04-16", before, &u).expect("priced");
        assert!(close(snapshot, 50.0), "{snapshot}");

        // A model whose only entry starts later is unpriced before that date.
        let mut later = entry("acme-ft", 1.0, 1.0);
        later.effective_from = NaiveDate::from_ymd_opt(2025, 1, 1);
        let table = PriceTable::from_entries(vec![later]).expect("valid");
        assert_eq!(
            table.resolve("acme-ft", ts(2024, 12, 31, 23, 59, 59, 999)),
            None
        );
        assert!(
            table
                .resolve("acme-ft", ts(2025, 1, 1, 0, 0, 0, 0))
                .is_some()
        );
        // Timestamps before 1970 use floor division, not truncation.
        let mut epoch = entry("acme-epoch", 1.0, 1.0);
        epoch.effective_from = NaiveDate::from_ymd_opt(1970, 1, 1);
        let table = PriceTable::from_entries(vec![epoch]).expect("valid");
        assert_eq!(table.resolve("acme-epoch", -1), None);
        assert!(table.resolve("acme-epoch", 0).is_some());
    }

    #[test]
    fn route_prefixes_are_stripped() {
        let table = PriceTable::builtin();
        let t = mid_2025();
        let cases = [
            ("openai/gpt-4o", "gpt-4o"),
            ("OpenAI/GPT-4o", "gpt-4o"),
            ("  gpt-4o ", "gpt-4o"),
            ("openrouter/anthropic/claude-sonnet-4", "claude-sonnet-4"),
            ("anthropic/claude-3.5-sonnet", "claude-3-5-sonnet"),
            ("anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),
            ("models/gemini-2.5-pro", "gemini-2.5-pro"),
            (
                "publishers/google/models/gemini-2.5-flash",
                "gemini-2.5-flash",
            ),
            (
                "meta-llama/llama-4-scout-17b-16e-instruct",
                "llama-4-scout-17b-16e-instruct",
            ),
            (
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
                "claude-3-5-sonnet",
            ),
            (
                "us.anthropic.claude-sonnet-4-20250514-v1:0",
                "claude-sonnet-4-20250514",
            ),
            (
                "eu.anthropic.claude-opus-4-1-20250805-v1:0",
                "claude-opus-4-1",
            ),
        ];
        for (name, canonical) in cases {
            let p = table.resolve(name, t);
            assert_eq!(p.map(|p| p.model.as_str()), Some(canonical), "{name}");
        }
    }

    #[test]
    fn dated_snapshots_resolve_to_their_base_unless_they_have_their_own_entry() {
        let table = PriceTable::builtin();
        let t = mid_2025();
        let cases = [
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("gpt-4o-2024-11-20", "gpt-4o"),
            ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
            ("gpt-4.1-2025-04-14", "gpt-4.1"),
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
            ("claude-sonnet-4@20250514", "claude-sonnet-4"),
            ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet-v2"),
            ("gpt-4-0613", "gpt-4"),
            ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
            ("mistral-large-latest", "mistral-large"),
            ("openai/gpt-4o-2024-08-06", "gpt-4o"),
            // Own entries win over the base (rule 1).
            ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4-20250514"),
            ("chatgpt-4o-latest", "chatgpt-4o-latest"),
        ];
        for (name, canonical) in cases {
            let p = table.resolve(name, t);
            assert_eq!(p.map(|p| p.model.as_str()), Some(canonical), "{name}");
        }
        // gpt-4o-2024-05-13 keeps its own (launch) price: 5/15, not gpt-4o's 2.5/10.
        let own = table.resolve("gpt-4o-2024-05-13", t).expect("priced");
        assert!(close(own.input, 5.0) && close(own.output, 15.0));
    }

    #[test]
    fn lookalike_and_unknown_models_stay_unpriced() {
        let table = PriceTable::builtin();
        let t = mid_2025();
        let u = usage(1_000, 0, 0, 1_000, 0);
        for name in [
            "gpt-4o-audio-preview",
            "gpt-4o-audio-preview-2024-12-17",
            "gpt-4o-mini-realtime-preview",
            "gpt-4o-2024-13-45",
            "gpt-4o-20241320",
            "gpt-4o-9999",
            "gpt-4o-latest-preview",
            "gpt-4o@2024",
            "gpt",
            "claude",
            "claude-sonnet",
            "mistral-large-2407",
            "openai.gpt-4o",
            "gpt-4o-v1:0",
            "anthropic.claude-sonnet-4",
            "gemini-2.5-flash-preview-04-17",
            "acme/",
            "-latest",
            "@20250514",
            "",
            "my-company-model",
        ] {
            assert_eq!(table.resolve(name, t), None, "{name} must be unknown");
            assert_eq!(
                table.cost(name, t, &u),
                None,
                "{name} must be unpriced, not 0"
            );
        }
    }

    #[test]
    fn unknown_model_cost_is_none_not_zero() {
        let table = PriceTable::builtin();
        let u = usage(1_000, 0, 0, 1_000, 0);
        assert_eq!(table.cost("acme-unknown-1", mid_2025(), &u), None);
        // An empty table prices nothing.
        let empty = PriceTable::from_entries(Vec::new()).expect("valid");
        assert_eq!(empty.cost("gpt-4o", mid_2025(), &u), None);
        assert!(empty.entries().is_empty());
    }

    #[test]
    fn overrides_replace_a_builtin_model_and_add_new_ones() {
        let builtin = PriceTable::builtin();
        let builtin_len = builtin.entries().len();
        let o3_entries = builtin.entries().iter().filter(|e| e.model == "o3").count();
        assert_eq!(o3_entries, 2);

        let mut o3 = entry("O3", 1.0, 2.0); // case-insensitive: replaces "o3"
        o3.effective_from = NaiveDate::from_ymd_opt(2025, 1, 1);
        let table = builtin
            .with_overrides(vec![
                entry("gpt-4o", 1.0, 2.0),
                o3,
                entry("acme-ft", 0.5, 0.5),
            ])
            .expect("valid overrides");

        // gpt-4o replaced: 1/2 instead of 2.5/10, and no cached price any more.
        let p = table
            .resolve("gpt-4o-2024-08-06", mid_2025())
            .expect("priced");
        assert_eq!((p.input, p.output, p.cached_input), (1.0, 2.0, None));
        assert_eq!(p.provider.as_deref(), Some("acme"));
        // o3 re-dated completely: both built-in entries are gone, so before 2025 it is unpriced.
        assert_eq!(table.resolve("o3", ts(2024, 12, 31, 0, 0, 0, 0)), None);
        let p = table.resolve("o3", mid_2025()).expect("priced");
        assert_eq!((p.input, p.output), (1.0, 2.0));
        // acme-ft added: 1_000 input * 0.5 + 1_000 output * 0.5 = 1_000 -> 0.001 USD.
        let cost = table
            .cost("acme-ft", mid_2025(), &usage(1_000, 0, 0, 1_000, 0))
            .expect("priced");
        assert!(close(cost, 0.001), "{cost}");
        // Other models untouched; entry count: -1 gpt-4o, -2 o3, +3 overrides.
        let p = table.resolve("gpt-4o-mini", mid_2025()).expect("priced");
        assert_eq!((p.input, p.output), (0.15, 0.6));
        assert_eq!(table.entries().len(), builtin_len - 3 + 3);
        // Overrides keep the listing sorted.
        assert!(table.entries().iter().any(|e| e.model == "acme-ft"));
    }

    #[test]
    fn invalid_entries_are_rejected_naming_model_and_field() {
        let with = |f: fn(&mut PriceEntry)| {
            let mut e = entry("acme-ft", 1.0, 1.0);
            f(&mut e);
            e
        };
        let cases = [
            (
                entry("acme-ft", -1.0, 1.0),
                "pricing[acme-ft].input: must be a finite number >= 0",
            ),
            (
                entry("acme-ft", 1.0, f64::NAN),
                "pricing[acme-ft].output: must be a finite number >= 0",
            ),
            (
                with(|e| e.cached_input = Some(f64::INFINITY)),
                "pricing[acme-ft].cached_input: must be a finite number >= 0",
            ),
            (
                with(|e| e.cache_write = Some(-0.5)),
                "pricing[acme-ft].cache_write: must be a finite number >= 0",
            ),
            (entry("", 1.0, 1.0), "pricing[#2].model: must not be empty"),
            (
                entry("  ", 1.0, 1.0),
                "pricing[#2].model: must not be empty",
            ),
            (
                entry(" acme-ft", 1.0, 1.0),
                "pricing[ acme-ft].model: must not have",
            ),
        ];
        for (bad, expected) in cases {
            let entries = vec![entry("fine", 1.0, 1.0), bad];
            let message = error_of(PriceTable::from_entries(entries.clone()));
            assert!(message.starts_with(expected), "{message}");
            // Overrides are validated the same way.
            let message = error_of(PriceTable::builtin().with_overrides(entries));
            assert!(message.starts_with(expected), "{message}");
        }

        // Duplicates: same model (case-insensitive) and same effective_from.
        let message = error_of(PriceTable::from_entries(vec![
            entry("acme-ft", 1.0, 1.0),
            entry("ACME-FT", 2.0, 2.0),
        ]));
        assert!(
            message.contains("].effective_from: duplicate entry"),
            "{message}"
        );
        assert!(
            message.to_lowercase().starts_with("pricing[acme-ft]"),
            "{message}"
        );
        let dated = |day| {
            let mut e = entry("acme-ft", 1.0, 1.0);
            e.effective_from = NaiveDate::from_ymd_opt(2025, 3, day);
            e
        };
        let message = error_of(PriceTable::from_entries(vec![dated(1), dated(1)]));
        assert_eq!(
            message,
            "pricing[acme-ft].effective_from: duplicate entry: another entry of this model has \
             effective_from 2025-03-01"
        );
        // Different dates are fine, and so are 0 prices (free models).
        assert!(
            PriceTable::from_entries(vec![dated(1), dated(2), entry("free", 0.0, 0.0)]).is_ok()
        );
        // A duplicate inside the overrides is rejected too.
        let message = error_of(PriceTable::builtin().with_overrides(vec![dated(1), dated(1)]));
        assert!(
            message.starts_with("pricing[acme-ft].effective_from"),
            "{message}"
        );
    }

    #[test]
    fn toml_format() {
        let text = r#"
            [[pricing]]
            model = "acme-ft"
            provider = "acme"
            input = 1
            output = 2.5
            cached_input = 0.1

            [[pricing]]
            model = "acme-ft"
            input = 0.5
            output = 1.25
            effective_from = 2025-06-10

            [[pricing]]
            model = "acme-other"
            input = 3.0
            output = 4.0
            cache_write = 3.75
            effective_from = "2025-01-31"
        "#;
        let table = PriceTable::from_toml(text).expect("valid");
        assert_eq!(table.entries().len(), 3);
        let june = NaiveDate::from_ymd_opt(2025, 6, 10);
        let p = table
            .resolve("acme-ft", ts(2025, 6, 10, 0, 0, 0, 0))
            .expect("priced");
        assert_eq!(
            (p.effective_from, p.input, p.provider.as_deref()),
            (june, 0.5, None)
        );
        let p = table
            .resolve("acme-ft", ts(2025, 6, 9, 0, 0, 0, 0))
            .expect("priced");
        assert_eq!(
            (p.effective_from, p.input, p.cached_input),
            (None, 1.0, Some(0.1))
        );
        let p = table.resolve("acme-other", mid_2025()).expect("priced");
        assert_eq!(p.effective_from, NaiveDate::from_ymd_opt(2025, 1, 31));

        // Entries round-trip through TOML and JSON.
        #[derive(Serialize)]
        struct Out<'a> {
            pricing: &'a [PriceEntry],
        }
        let toml_text = toml::to_string(&Out {
            pricing: table.entries(),
        })
        .expect("serializes");
        let again = PriceTable::from_toml(&toml_text).expect("round-trips");
        assert_eq!(again.entries(), table.entries());
        let json = serde_json::to_string(table.entries()).expect("serializes");
        let back: Vec<PriceEntry> = serde_json::from_str(&json).expect("round-trips");
        assert_eq!(back, table.entries());

        // An empty file is an empty table.
        assert!(
            PriceTable::from_toml("")
                .expect("valid")
                .entries()
                .is_empty()
        );
    }

    #[test]
    fn toml_with_unknown_or_bad_keys_is_rejected() {
        let unknown_key =
            "[[pricing]]\nmodel = \"acme-ft\"\ninput = 1.0\noutput = 2.0\ncached = 0.5\n";
        let message = error_of(PriceTable::from_toml(unknown_key));
        assert!(message.contains("unknown field `cached`"), "{message}");

        let unknown_table = "[[prices]]\nmodel = \"acme-ft\"\ninput = 1.0\noutput = 2.0\n";
        let message = error_of(PriceTable::from_toml(unknown_table));
        assert!(message.contains("unknown field `prices`"), "{message}");

        let missing = "[[pricing]]\nmodel = \"acme-ft\"\ninput = 1.0\n";
        let message = error_of(PriceTable::from_toml(missing));
        assert!(message.contains("missing field `output`"), "{message}");

        let string_price = "[[pricing]]\nmodel = \"acme-ft\"\ninput = \"1.0\"\noutput = 2.0\n";
        assert!(PriceTable::from_toml(string_price).is_err());

        for bad_date in [
            "effective_from = 2025-06-10T00:00:00Z",
            "effective_from = 12:00:00",
            "effective_from = \"2025-02-30\"",
            "effective_from = \"June 10\"",
            "effective_from = 20250610",
        ] {
            let text = format!(
                "[[pricing]]\nmodel = \"acme-ft\"\ninput = 1.0\noutput = 2.0\n{bad_date}\n"
            );
            let message = error_of(PriceTable::from_toml(&text));
            assert!(message.contains("effective_from"), "{bad_date}: {message}");
        }

        // Validation errors surface from TOML too.
        let negative = "[[pricing]]\nmodel = \"acme-ft\"\ninput = -1.0\noutput = 2.0\n";
        let message = error_of(PriceTable::from_toml(negative));
        assert_eq!(
            message,
            "pricing[acme-ft].input: must be a finite number >= 0"
        );
        let nan = "[[pricing]]\nmodel = \"acme-ft\"\ninput = 1.0\noutput = nan\n";
        let message = error_of(PriceTable::from_toml(nan));
        assert_eq!(
            message,
            "pricing[acme-ft].output: must be a finite number >= 0"
        );
    }

    #[test]
    fn suffix_helpers() {
        assert_eq!(strip_snapshot("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(
            strip_snapshot("claude-sonnet-4-20250514"),
            Some("claude-sonnet-4")
        );
        assert_eq!(
            strip_snapshot("claude-sonnet-4@20250514"),
            Some("claude-sonnet-4")
        );
        assert_eq!(strip_snapshot("gpt-4-0613"), Some("gpt-4"));
        assert_eq!(strip_snapshot("gpt-4-0229"), Some("gpt-4"));
        assert_eq!(strip_snapshot("gpt-4-0230"), None);
        assert_eq!(strip_snapshot("mistral-large-2411"), None);
        assert_eq!(strip_snapshot("foo-19991231"), None);
        assert_eq!(strip_snapshot("gpt-4o"), None);
        assert_eq!(strip_snapshot("gpt-4o--2024-08-06"), None);
        assert_eq!(strip_snapshot("é-2024-08-06"), Some("é"));
        // No panic on multi-byte characters where digits are expected.
        assert_eq!(strip_snapshot("é1234"), None);
        assert_eq!(strip_snapshot("gpt-4o@2025€01"), None);
        assert_eq!(strip_snapshot("gpt-4o-2025€01"), None);
        assert_eq!(strip_snapshot("gpt-4o-€1"), None);
        assert_eq!(
            strip_bedrock("us.anthropic.claude-x-v1:0"),
            Some("claude-x")
        );
        assert_eq!(
            strip_bedrock("meta.llama3-1-70b-instruct-v1:0"),
            Some("llama3-1-70b-instruct")
        );
        assert_eq!(strip_bedrock("claude-x-v1:0"), None);
        assert_eq!(strip_bedrock("gpt-4.1-v1:0"), None);
        assert_eq!(strip_bedrock("anthropic.claude-x-v1"), None);
        assert_eq!(strip_bedrock("anthropic.claude-x-v:0"), None);
        assert_eq!(
            epoch_day(NaiveDate::from_ymd_opt(1970, 1, 1).expect("date")),
            0
        );
        assert_eq!(
            epoch_day(NaiveDate::from_ymd_opt(2025, 6, 10).expect("date")),
            20_249
        );
    }
}
