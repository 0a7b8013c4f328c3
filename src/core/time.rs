//! Bucket and window math: calendar days, ISO weeks and months in the configured time zone, and
//! the decomposition of a time range into rollup buckets plus raw-row edges.
//!
//! Pure: every function takes its instants as arguments.

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// A half-open time range `[from_ms, to_ms)` in unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Range {
    pub fn new(from_ms: i64, to_ms: i64) -> Self {
        Self { from_ms, to_ms }
    }
    pub fn len_ms(&self) -> i64 {
        (self.to_ms - self.from_ms).max(0)
    }
    pub fn is_empty(&self) -> bool {
        self.to_ms <= self.from_ms
    }
    pub fn contains(&self, t_ms: i64) -> bool {
        self.from_ms <= t_ms && t_ms < self.to_ms
    }
}

/// Start of the bucket of width `width_ms` holding `t_ms` (buckets aligned to the unix epoch).
pub fn bucket_start(t_ms: i64, width_ms: i64) -> i64 {
    t_ms.div_euclid(width_ms) * width_ms
}

/// One piece of a decomposed range: read from the rollup tier of that width, or from raw rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A rollup tier, identified by its bucket width in milliseconds.
    Tier(i64),
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub source: Source,
    pub range: Range,
}

/// Splits `range` into the fewest rollup reads: whole buckets of the widest tier first, then the
/// leftover edges from narrower tiers, and what no tier covers (sub-minute edges) from raw rows.
/// `tiers` are bucket widths, widest first, each a multiple of the next.
pub fn plan(range: Range, tiers: &[i64]) -> Vec<Segment> {
    let mut out = Vec::new();
    plan_into(range, tiers, &mut out);
    out
}

fn plan_into(range: Range, tiers: &[i64], out: &mut Vec<Segment>) {
    if range.is_empty() {
        return;
    }
    let Some((&width, narrower)) = tiers.split_first() else {
        out.push(Segment {
            source: Source::Raw,
            range,
        });
        return;
    };
    let first_full = bucket_start(range.from_ms + width - 1, width);
    let end_full = bucket_start(range.to_ms, width);
    if first_full >= end_full {
        plan_into(range, narrower, out);
        return;
    }
    plan_into(Range::new(range.from_ms, first_full), narrower, out);
    out.push(Segment {
        source: Source::Tier(width),
        range: Range::new(first_full, end_full),
    });
    plan_into(Range::new(end_full, range.to_ms), narrower, out);
}

/// Parses a duration: a positive whole number with a unit, `500ms`, `30s`, `15m`, `1h`, `7d`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let err = || format!("expected a duration like 30s, 15m, 1h or 1d, got {s:?}");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().map_err(|_| err())?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        _ => return Err(err()),
    };
    match n.checked_mul(unit_ms) {
        Some(ms) if ms > 0 => Ok(ms),
        _ => Err(err()),
    }
}

/// Parses an IANA time zone name ("Asia/Seoul", "UTC").
pub fn parse_tz(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown IANA time zone {name:?} (e.g. \"UTC\", \"Asia/Seoul\")"))
}

/// The first instant of local `date` in `tz`, in unix ms. A day that starts in a DST gap starts
/// at the first valid local time.
pub fn local_midnight_ms(date: NaiveDate, tz: Tz) -> i64 {
    let mut t = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Walk forward through a DST gap (at most a few hours), a minute at a time.
    for _ in 0..(24 * 60) {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.timestamp_millis();
        }
        t += Duration::minutes(1);
    }
    tz.from_utc_datetime(&t).timestamp_millis()
}

/// The calendar day `date` in `tz` as a range (23, 24 or 25 hours long).
pub fn day_range(date: NaiveDate, tz: Tz) -> Range {
    let next = date.succ_opt().unwrap_or(date);
    Range::new(local_midnight_ms(date, tz), local_midnight_ms(next, tz))
}

/// One calendar day of a range: its date, the whole day, and the part inside the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalendarDay {
    pub date: NaiveDate,
    pub day: Range,
    pub clipped: Range,
}

/// The calendar days in `tz` that `range` touches, oldest first, at most `max` of them.
pub fn calendar_days(range: Range, tz: Tz, max: usize) -> Vec<CalendarDay> {
    let mut out = Vec::new();
    let mut date = local_date(range.from_ms, tz);
    while out.len() < max {
        let day = day_range(date, tz);
        if day.from_ms >= range.to_ms {
            break;
        }
        out.push(CalendarDay {
            date,
            day,
            clipped: Range::new(day.from_ms.max(range.from_ms), day.to_ms.min(range.to_ms)),
        });
        match date.succ_opt() {
            Some(next) => date = next,
            None => break,
        }
    }
    out
}

/// The local calendar date of `t_ms` in `tz`.
pub fn local_date(t_ms: i64, tz: Tz) -> NaiveDate {
    match chrono::DateTime::from_timestamp_millis(t_ms) {
        Some(utc) => utc.with_timezone(&tz).date_naive(),
        None => NaiveDate::default(),
    }
}

/// A budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    /// ISO week, Monday to Sunday.
    Week,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }
}

/// The period of kind `period` that holds `t_ms`, as local calendar bounds in `tz`.
pub fn period_range(period: Period, t_ms: i64, tz: Tz) -> Range {
    let date = local_date(t_ms, tz);
    let (start, end) = match period {
        Period::Day => (date, date.succ_opt().unwrap_or(date)),
        Period::Week => {
            let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
            (monday, monday + Duration::days(7))
        }
        Period::Month => {
            let first = date.with_day(1).unwrap_or(date);
            let next = if first.month() == 12 {
                NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
            }
            .unwrap_or(first);
            (first, next)
        }
    };
    Range::new(local_midnight_ms(start, tz), local_midnight_ms(end, tz))
}

/// Formats unix ms as RFC 3339 in `tz` (e.g. "2026-01-01T09:00:00+09:00").
pub fn format_rfc3339(t_ms: i64, tz: Tz) -> String {
    match chrono::DateTime::from_timestamp_millis(t_ms) {
        Some(utc) => utc
            .with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => t_ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn plan_uses_hours_then_minutes_then_raw() {
        // 10:00:30 .. 13:02:10 UTC on some day.
        let from = ms("2026-03-02T10:00:30Z");
        let to = ms("2026-03-02T13:02:10Z");
        let segs = plan(Range::new(from, to), &[HOUR_MS, MINUTE_MS]);
        let expect = vec![
            (Source::Raw, from, ms("2026-03-02T10:01:00Z")),
            (
                Source::Tier(MINUTE_MS),
                ms("2026-03-02T10:01:00Z"),
                ms("2026-03-02T11:00:00Z"),
            ),
            (
                Source::Tier(HOUR_MS),
                ms("2026-03-02T11:00:00Z"),
                ms("2026-03-02T13:00:00Z"),
            ),
            (
                Source::Tier(MINUTE_MS),
                ms("2026-03-02T13:00:00Z"),
                ms("2026-03-02T13:02:00Z"),
            ),
            (Source::Raw, ms("2026-03-02T13:02:00Z"), to),
        ];
        let got: Vec<_> = segs
            .iter()
            .map(|s| (s.source, s.range.from_ms, s.range.to_ms))
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn plan_of_aligned_day_is_one_hour_segment() {
        let r = Range::new(ms("2026-03-02T00:00:00Z"), ms("2026-03-03T00:00:00Z"));
        assert_eq!(
            plan(r, &[HOUR_MS, MINUTE_MS]),
            vec![Segment {
                source: Source::Tier(HOUR_MS),
                range: r
            }]
        );
        // Inside one minute: raw only.
        let r = Range::new(ms("2026-03-02T00:00:10Z"), ms("2026-03-02T00:00:50Z"));
        assert_eq!(plan(r, &[HOUR_MS, MINUTE_MS])[0].source, Source::Raw);
        assert!(plan(Range::new(5, 5), &[HOUR_MS]).is_empty());
    }

    #[test]
    fn seoul_day_starts_at_15h_utc() {
        let tz = parse_tz("Asia/Seoul").unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let r = day_range(d, tz);
        assert_eq!(r.from_ms, ms("2026-03-01T15:00:00Z"));
        assert_eq!(r.to_ms, ms("2026-03-02T15:00:00Z"));
        assert_eq!(local_date(ms("2026-03-01T15:00:00Z"), tz), d);
        assert_eq!(
            local_date(ms("2026-03-01T14:59:59.999Z"), tz),
            d.pred_opt().unwrap()
        );
    }

    #[test]
    fn dst_days_are_23_and_25_hours() {
        let tz = parse_tz("America/New_York").unwrap();
        let spring = day_range(NaiveDate::from_ymd_opt(2026, 3, 8).unwrap(), tz);
        assert_eq!(spring.len_ms(), 23 * HOUR_MS);
        let fall = day_range(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(), tz);
        assert_eq!(fall.len_ms(), 25 * HOUR_MS);
    }

    #[test]
    fn iso_week_starts_monday_and_month_bounds() {
        let utc = parse_tz("UTC").unwrap();
        // 2026-01-01 is a Thursday: its ISO week runs Mon 2025-12-29 .. Mon 2026-01-05.
        let w = period_range(Period::Week, ms("2026-01-01T12:00:00Z"), utc);
        assert_eq!(w.from_ms, ms("2025-12-29T00:00:00Z"));
        assert_eq!(w.to_ms, ms("2026-01-05T00:00:00Z"));
        // A Monday belongs to its own week; a Sunday to the week before.
        let w = period_range(Period::Week, ms("2026-01-05T00:00:00Z"), utc);
        assert_eq!(w.from_ms, ms("2026-01-05T00:00:00Z"));
        let w = period_range(Period::Week, ms("2026-01-04T23:59:59Z"), utc);
        assert_eq!(w.from_ms, ms("2025-12-29T00:00:00Z"));
        // February of a non-leap year; December rolls into the next year.
        let m = period_range(Period::Month, ms("2026-02-14T00:00:00Z"), utc);
        assert_eq!(
            (m.from_ms, m.to_ms),
            (ms("2026-02-01T00:00:00Z"), ms("2026-03-01T00:00:00Z"))
        );
        let m = period_range(Period::Month, ms("2026-12-31T23:00:00Z"), utc);
        assert_eq!(m.to_ms, ms("2027-01-01T00:00:00Z"));
        // In Seoul, 2026-01-31T16:00Z is already February 1st.
        let seoul = parse_tz("Asia/Seoul").unwrap();
        let m = period_range(Period::Month, ms("2026-01-31T16:00:00Z"), seoul);
        assert_eq!(m.from_ms, ms("2026-01-31T15:00:00Z"));
    }

    #[test]
    fn calendar_days_are_clipped_to_the_range() {
        let seoul = parse_tz("Asia/Seoul").unwrap();
        // 2026-03-01T00:00Z is 09:00 on March 1st in Seoul; 2026-03-02T16:00Z is 01:00 on the 3rd.
        let r = Range::new(ms("2026-03-01T00:00:00Z"), ms("2026-03-02T16:00:00Z"));
        let days = calendar_days(r, seoul, 10);
        let dates: Vec<String> = days.iter().map(|d| d.date.to_string()).collect();
        assert_eq!(dates, ["2026-03-01", "2026-03-02", "2026-03-03"]);
        assert_eq!(days[0].day.from_ms, ms("2026-02-28T15:00:00Z"));
        assert_eq!(days[0].clipped.from_ms, r.from_ms);
        assert_eq!(days[1].clipped, days[1].day);
        assert_eq!(days[2].clipped.to_ms, r.to_ms);
        assert_eq!(calendar_days(r, seoul, 2).len(), 2);
        assert!(calendar_days(Range::new(5, 5), seoul, 10).len() <= 1);
    }

    #[test]
    fn bucket_start_floors_negative_times() {
        assert_eq!(bucket_start(-1, MINUTE_MS), -MINUTE_MS);
        assert_eq!(bucket_start(59_999, MINUTE_MS), 0);
    }
}
