//! Alerts, pure: severities, the per-(rule, group) state machine with `for` and cooldowns, the
//! notification it asks for, and the stable dedup key of an alert.
//!
//! ```text
//! inactive --holds--> pending --held for `for`--> firing --no longer holds--> inactive
//!     \------------------ holds, no `for` --------/   (resolved: notified)
//! ```
//! One notification when an alert fires, one when it resolves; while firing, a reminder once
//! per `cooldown` (none when the cooldown is 0). No more than one notification per cooldown
//! per alert: an alert that resolves and fires again within the cooldown of its last
//! notification fires silently, and is announced when the cooldown has passed if still firing.
//! No data (the condition cannot be evaluated) changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Act now.
    Critical,
    /// Watch.
    Warning,
    /// For reference.
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "critical" => Some(Severity::Critical),
            "warning" => Some(Severity::Warning),
            "info" => Some(Severity::Info),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Inactive,
    Pending,
    Firing,
}

/// The persisted state of one alert (a rule and one group of its `group_by`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub phase: Phase,
    /// When the current phase began (unix ms); for inactive, when it last resolved (or 0).
    pub since_ms: i64,
    /// The last notification sent for this alert (firing, reminder or resolved).
    pub last_notified_ms: Option<i64>,
    /// The current firing has been announced (so its resolution is announced too).
    pub announced: bool,
}

impl Default for AlertState {
    fn default() -> Self {
        AlertState {
            phase: Phase::Inactive,
            since_ms: 0,
            last_notified_ms: None,
            announced: false,
        }
    }
}

/// What a step asks to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Notice {
    /// The alert fired (or, after a silent re-fire, is announced now).
    Firing,
    /// Still firing, a cooldown after the last notification.
    Reminder,
    Resolved,
}

/// Timing of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The condition must hold this long before firing.
    pub for_ms: i64,
    /// Least time between two notifications of one alert (0: no reminders).
    pub cooldown_ms: i64,
}

impl AlertState {
    fn cooled(&self, now_ms: i64, cooldown_ms: i64) -> bool {
        self.last_notified_ms
            .is_none_or(|t| now_ms - t >= cooldown_ms)
    }

    /// The next state after evaluating the condition at `now_ms` (`holds`: None = no data),
    /// and the notification to send, if any.
    pub fn step(
        self,
        holds: Option<bool>,
        now_ms: i64,
        timing: Timing,
    ) -> (AlertState, Option<Notice>) {
        let Some(holds) = holds else {
            return (self, None);
        };
        let mut next = self;
        match (self.phase, holds) {
            (Phase::Inactive, true) => {
                next.phase = Phase::Pending;
                next.since_ms = now_ms;
                next.announced = false;
                if timing.for_ms <= 0 {
                    return next.fire(now_ms, timing);
                }
                (next, None)
            }
            (Phase::Pending, true) => {
                if now_ms - self.since_ms >= timing.for_ms {
                    return next.fire(now_ms, timing);
                }
                (next, None)
            }
            (Phase::Firing, true) => {
                if !self.announced {
                    if self.cooled(now_ms, timing.cooldown_ms) {
                        next.announced = true;
                        next.last_notified_ms = Some(now_ms);
                        return (next, Some(Notice::Firing));
                    }
                    return (next, None);
                }
                if timing.cooldown_ms > 0 && self.cooled(now_ms, timing.cooldown_ms) {
                    next.last_notified_ms = Some(now_ms);
                    return (next, Some(Notice::Reminder));
                }
                (next, None)
            }
            (Phase::Pending, false) => {
                next.phase = Phase::Inactive;
                (next, None)
            }
            (Phase::Firing, false) => {
                next.phase = Phase::Inactive;
                next.since_ms = now_ms;
                if self.announced {
                    next.announced = false;
                    next.last_notified_ms = Some(now_ms);
                    return (next, Some(Notice::Resolved));
                }
                (next, None)
            }
            (Phase::Inactive, false) => (next, None),
        }
    }

    /// Pending -> firing: announced unless the last notification is within the cooldown.
    fn fire(mut self, now_ms: i64, timing: Timing) -> (AlertState, Option<Notice>) {
        self.phase = Phase::Firing;
        self.since_ms = now_ms;
        if self.cooled(now_ms, timing.cooldown_ms) {
            self.announced = true;
            self.last_notified_ms = Some(now_ms);
            return (self, Some(Notice::Firing));
        }
        self.announced = false;
        (self, None)
    }
}

/// One notification about one alert, as every channel renders it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// `dedup_key(rule, group)`.
    pub dedup_key: String,
    pub rule: String,
    pub severity: Severity,
    pub notice: Notice,
    /// The alert's `group_by` labels (empty for an ungrouped rule).
    pub group: BTreeMap<String, String>,
    /// One line for people (the rule's `summary` template, filled in).
    pub summary: String,
    /// The rule's expression as understood (canonical form).
    pub expr: String,
    /// The value of the rule's first comparison's left side, and its threshold.
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// When the alert started firing (unix ms).
    pub starts_ms: i64,
    /// When it resolved (resolved notices only).
    pub ends_ms: Option<i64>,
    /// When this notification was made.
    pub at_ms: i64,
    /// Link to the dashboard, when `dashboard_url` is configured.
    pub dashboard_url: Option<String>,
}

/// One delivery attempt's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based.
    pub attempt: u32,
    pub ok: bool,
    /// The HTTP status, or the SMTP reply code.
    pub status: Option<u16>,
    /// Why it failed (never holds a secret).
    pub error: Option<String>,
    pub duration_ms: f64,
    /// When the attempt began (unix ms).
    pub at_ms: i64,
}

/// The stable identity of an alert across evaluations, restarts and instances: the rule name
/// and its group labels, hashed (FNV-1a 64, hex) so it fits every channel's dedup field.
pub fn dedup_key(rule: &str, group: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator no label can contain keeps ("ab", "c") apart from ("a", "bc").
        h = (h ^ 0xff).wrapping_mul(0x0000_0100_0000_01b3);
    };
    eat(rule.as_bytes());
    for (k, v) in group {
        eat(k.as_bytes());
        eat(v.as_bytes());
    }
    format!("llmwatch-{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn run(steps: &[(i64, Option<bool>)], timing: Timing) -> Vec<(i64, Notice)> {
        let mut s = AlertState::default();
        let mut out = Vec::new();
        for (t, holds) in steps {
            let (next, notice) = s.step(*holds, *t, timing);
            s = next;
            if let Some(n) = notice {
                out.push((*t, n));
            }
        }
        out
    }

    #[test]
    fn fires_once_reminds_per_cooldown_and_resolves_once() {
        let timing = Timing {
            for_ms: 0,
            cooldown_ms: 15 * MIN,
        };
        let steps: Vec<(i64, Option<bool>)> = (0..40).map(|i| (i * MIN, Some(i < 35))).collect();
        assert_eq!(
            run(&steps, timing),
            [
                (0, Notice::Firing),
                (15 * MIN, Notice::Reminder),
                (30 * MIN, Notice::Reminder),
                (35 * MIN, Notice::Resolved)
            ]
        );
        // No cooldown: no reminders.
        let timing = Timing {
            for_ms: 0,
            cooldown_ms: 0,
        };
        assert_eq!(
            run(&steps, timing),
            [(0, Notice::Firing), (35 * MIN, Notice::Resolved)]
        );
    }

    #[test]
    fn for_delays_firing_and_a_short_blip_never_fires() {
        let timing = Timing {
            for_ms: 60 * MIN,
            cooldown_ms: 30 * MIN,
        };
        // Holds 0..50 min (blip), breaks, then holds from 55 min on.
        let steps: Vec<(i64, Option<bool>)> = (0..130)
            .map(|i| (i * MIN, Some(!(50..55).contains(&i))))
            .collect();
        assert_eq!(
            run(&steps, timing),
            [(115 * MIN, Notice::Firing)],
            "pending from 55 min, fires an hour later"
        );
    }

    #[test]
    fn no_data_changes_nothing() {
        let timing = Timing {
            for_ms: 0,
            cooldown_ms: 0,
        };
        let steps = [
            (0, Some(true)),
            (MIN, None),
            (2 * MIN, None),
            (3 * MIN, Some(false)),
        ];
        assert_eq!(
            run(&steps, timing),
            [(0, Notice::Firing), (3 * MIN, Notice::Resolved)]
        );
    }

    #[test]
    fn flapping_within_the_cooldown_sends_one_notification_per_cooldown() {
        let timing = Timing {
            for_ms: 0,
            cooldown_ms: 10 * MIN,
        };
        // Fires at 0, resolves at 1, fires again at 2 (within 10 min of the last notification:
        // silent), still firing at 11: announced then; resolves at 12.
        let steps = [
            (0, Some(true)),
            (MIN, Some(false)),
            (2 * MIN, Some(true)),
            (5 * MIN, Some(true)),
            (11 * MIN, Some(true)),
            (12 * MIN, Some(false)),
        ];
        assert_eq!(
            run(&steps, timing),
            [
                (0, Notice::Firing),
                (MIN, Notice::Resolved),
                (11 * MIN, Notice::Firing),
                (12 * MIN, Notice::Resolved)
            ]
        );
        // A silent re-fire that resolves before it was announced is never announced.
        let steps = [
            (0, Some(true)),
            (MIN, Some(false)),
            (2 * MIN, Some(true)),
            (3 * MIN, Some(false)),
        ];
        assert_eq!(
            run(&steps, timing),
            [(0, Notice::Firing), (MIN, Notice::Resolved)]
        );
    }

    #[test]
    fn dedup_keys_are_stable_and_tell_groups_apart() {
        let g = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let a = dedup_key("error rate", &g(&[("model", "gpt-4o")]));
        assert_eq!(a, dedup_key("error rate", &g(&[("model", "gpt-4o")])));
        assert_ne!(a, dedup_key("error rate", &g(&[("model", "gpt-4o-mini")])));
        assert_ne!(
            dedup_key("r", &g(&[("ab", "c")])),
            dedup_key("r", &g(&[("a", "bc")]))
        );
        assert!(a.starts_with("llmwatch-") && a.len() == 25);
    }
}
