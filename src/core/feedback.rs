//! User feedback on answers: thumbs, reports and corrections, and the satisfaction rate.

use serde::{Deserialize, Serialize};

use crate::core::quality::{json_object, string_field, timestamp_field};
use crate::core::record::{MAX_LABEL_BYTES, MAX_REQUEST_ID_BYTES, RecordError};

/// Longest feedback comment or correction, in bytes.
pub const MAX_FEEDBACK_TEXT_BYTES: usize = 64 * 1024;
/// The score a thumb becomes (1 up, 0 down, source `human`), so quality views show users'
/// ratings beside the evaluators'.
pub const USER_RATING: &str = "user_rating";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    ThumbsUp,
    ThumbsDown,
    Report,
    Correction,
}

impl FeedbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackKind::ThumbsUp => "thumbs_up",
            FeedbackKind::ThumbsDown => "thumbs_down",
            FeedbackKind::Report => "report",
            FeedbackKind::Correction => "correction",
        }
    }

    pub fn parse(s: &str) -> Option<FeedbackKind> {
        match s {
            "thumbs_up" => Some(FeedbackKind::ThumbsUp),
            "thumbs_down" => Some(FeedbackKind::ThumbsDown),
            "report" => Some(FeedbackKind::Report),
            "correction" => Some(FeedbackKind::Correction),
            _ => None,
        }
    }

    /// Complaints are what clustering reads: thumbs-down and reports.
    pub fn is_complaint(self) -> bool {
        matches!(self, FeedbackKind::ThumbsDown | FeedbackKind::Report)
    }
}

/// One piece of feedback on one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// The client's id of this feedback: the same id sent again replaces it (retries).
    pub feedback_id: Option<String>,
    pub request_id: String,
    pub kind: FeedbackKind,
    pub comment: Option<String>,
    /// The right answer, for `correction`.
    pub correction: Option<String>,
    pub user_id: Option<String>,
    pub ts_ms: i64,
}

/// Feedback counts of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FeedbackCounts {
    pub thumbs_up: u64,
    pub thumbs_down: u64,
    pub reports: u64,
    pub corrections: u64,
}

impl FeedbackCounts {
    pub fn add(&mut self, kind: FeedbackKind, n: u64) {
        match kind {
            FeedbackKind::ThumbsUp => self.thumbs_up += n,
            FeedbackKind::ThumbsDown => self.thumbs_down += n,
            FeedbackKind::Report => self.reports += n,
            FeedbackKind::Correction => self.corrections += n,
        }
    }

    /// Up-votes over votes. Reports and corrections are not votes: counting them in the
    /// denominator (as the seed's snippet did) would call a well-reported bug "dissatisfaction"
    /// twice. `None` without votes.
    pub fn satisfaction_rate(&self) -> Option<f64> {
        let votes = self.thumbs_up + self.thumbs_down;
        (votes > 0).then(|| self.thumbs_up as f64 / votes as f64)
    }
}

/// Parses one item of `POST /api/v1/feedback`: `{"request_id", "type", "comment",
/// "correction", "timestamp", "user_id", "feedback_id"}`. A correction needs its
/// `correction` text. `now_ms` is the default timestamp.
pub fn parse_feedback_item(item: &str, now_ms: i64) -> Result<Feedback, RecordError> {
    let v = json_object(item)?;
    let request_id = string_field(&v, "request_id", MAX_REQUEST_ID_BYTES)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| RecordError::new("request_id", "is required"))?;
    let kind = match string_field(&v, "type", 32)? {
        None => return Err(RecordError::new("type", "is required")),
        Some(t) => FeedbackKind::parse(&t).ok_or_else(|| {
            RecordError::new(
                "type",
                format!(
                    "expected \"thumbs_up\", \"thumbs_down\", \"report\" or \"correction\", got {t:?}"
                ),
            )
        })?,
    };
    let comment = string_field(&v, "comment", MAX_FEEDBACK_TEXT_BYTES)?;
    let correction = string_field(&v, "correction", MAX_FEEDBACK_TEXT_BYTES)?;
    if kind == FeedbackKind::Correction && correction.as_deref().is_none_or(|c| c.trim().is_empty())
    {
        return Err(RecordError::new(
            "correction",
            "is required for a correction: the right answer",
        ));
    }
    Ok(Feedback {
        feedback_id: string_field(&v, "feedback_id", MAX_REQUEST_ID_BYTES)?,
        request_id,
        kind,
        comment,
        correction,
        user_id: string_field(&v, "user_id", MAX_LABEL_BYTES)?,
        ts_ms: timestamp_field(&v, now_ms)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfaction_counts_votes_only() {
        let mut c = FeedbackCounts::default();
        assert_eq!(c.satisfaction_rate(), None);
        c.add(FeedbackKind::Report, 5);
        c.add(FeedbackKind::Correction, 3);
        assert_eq!(c.satisfaction_rate(), None);
        c.add(FeedbackKind::ThumbsUp, 3);
        c.add(FeedbackKind::ThumbsDown, 1);
        assert_eq!(c.satisfaction_rate(), Some(0.75));
    }

    #[test]
    fn feedback_items_parse_and_name_bad_fields() {
        let f = parse_feedback_item(
            r#"{"request_id":"r1","type":"correction","correction":"42","comment":"off by one","user_id":"u"}"#,
            9,
        )
        .unwrap();
        assert_eq!(f.kind, FeedbackKind::Correction);
        assert_eq!((f.correction.as_deref(), f.ts_ms), (Some("42"), 9));
        for (item, field) in [
            (r#"{"type":"thumbs_up"}"#, "request_id"),
            (r#"{"request_id":"r"}"#, "type"),
            (r#"{"request_id":"r","type":"love"}"#, "type"),
            (r#"{"request_id":"r","type":"correction"}"#, "correction"),
            (
                r#"{"request_id":"r","type":"report","comment":5}"#,
                "comment",
            ),
            (
                r#"{"request_id":"r","type":"report","timestamp":true}"#,
                "timestamp",
            ),
        ] {
            assert_eq!(
                parse_feedback_item(item, 0).unwrap_err().field,
                field,
                "{item}"
            );
        }
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for k in [
            FeedbackKind::ThumbsUp,
            FeedbackKind::ThumbsDown,
            FeedbackKind::Report,
            FeedbackKind::Correction,
        ] {
            assert_eq!(FeedbackKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(FeedbackKind::parse("thumbs-up"), None);
    }
}
