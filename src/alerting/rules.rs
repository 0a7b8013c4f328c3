//! Alert rules as configured (`[[alerts]]`, `[routing]`), validated into [`AlertRule`]s, plus
//! the built-in rules every budget, quality escalations and unpriced usage get.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::core::alert::{Severity, Timing};
use crate::core::alert_expr::{self, Rule};
use crate::core::rollup::{Dimension, Scope};
use crate::core::time::{DAY_MS, Period, parse_duration};
use crate::report::NONE_GROUP;

/// One `[[alerts]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    pub name: String,
    pub expr: String,
    /// `critical`, `warning` (default) or `info`.
    pub severity: Option<String>,
    /// Least time between two notifications of one alert (default `1h`; `0` = no reminders).
    pub cooldown: Option<String>,
    /// The condition must hold this long before firing (also writable as `... for 1h`).
    #[serde(rename = "for")]
    pub for_: Option<String>,
    /// One alert per value of this label: `model`, `feature`, `release` or `user` (at most
    /// one label).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Only requests with these labels (`model`, `feature`, `release`, `user`).
    #[serde(default)]
    pub filter: BTreeMap<String, String>,
    /// Channel names; default: the routing of the severity.
    pub channels: Option<Vec<String>>,
    /// One line for people; `{{rule}}`, `{{value}}`, `{{threshold}}`, `{{severity}}` and
    /// `{{LABEL}}` (a group label) are filled in.
    pub summary: Option<String>,
}

/// `[routing]`: channels per severity. Default (the seed's): critical -> pager + slack,
/// warning -> slack, info -> dashboard; names that are not configured channels are skipped
/// (the dashboard always exists).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub critical: Option<Vec<String>>,
    pub warning: Option<Vec<String>>,
    pub info: Option<Vec<String>>,
}

/// The built-in dashboard channel: notifications kept in the store and listed by the API.
pub const DASHBOARD: &str = "dashboard";

/// Validated routing.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub critical: Vec<String>,
    pub warning: Vec<String>,
    pub info: Vec<String>,
}

impl Routing {
    pub fn of(&self, severity: Severity) -> &[String] {
        match severity {
            Severity::Critical => &self.critical,
            Severity::Warning => &self.warning,
            Severity::Info => &self.info,
        }
    }
}

impl RawRouting {
    /// `known`: the configured channel names (besides the dashboard).
    pub fn validate(self, known: &[String]) -> Result<Routing, (String, String)> {
        let exists = |c: &String| c == DASHBOARD || known.contains(c);
        let pick = |key: &str,
                    given: Option<Vec<String>>,
                    default: &[&str]|
         -> Result<Vec<String>, (String, String)> {
            match given {
                Some(list) => {
                    for c in &list {
                        if !exists(c) {
                            return Err((
                                format!("routing.{key}"),
                                format!("no channel named {c:?} (configure [channels.{c}])"),
                            ));
                        }
                    }
                    Ok(list)
                }
                // The seed's routing, for the channels that exist.
                None => Ok(default
                    .iter()
                    .map(|s| s.to_string())
                    .filter(exists)
                    .collect()),
            }
        };
        Ok(Routing {
            critical: pick("critical", self.critical, &["pager", "slack", DASHBOARD])?,
            warning: pick("warning", self.warning, &["slack", DASHBOARD])?,
            info: pick("info", self.info, &[DASHBOARD])?,
        })
    }
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    pub rule: Rule,
    /// The expression as understood (canonical form).
    pub expr: String,
    pub severity: Severity,
    pub timing: Timing,
    pub group_by: Option<Dimension>,
    pub filter: Scope,
    /// Explicit channels; `None`: the routing of the severity.
    pub channels: Option<Vec<String>>,
    pub summary: Option<String>,
    /// Built in (budgets, escalations, unpriced usage), not from `[[alerts]]`.
    pub builtin: bool,
}

fn dimension_of(label: &str) -> Option<Dimension> {
    match label {
        "model" => Some(Dimension::Model),
        "feature" => Some(Dimension::Feature),
        "release" => Some(Dimension::Release),
        "user" | "user_id" => Some(Dimension::User),
        _ => None,
    }
}

impl RawAlert {
    /// Validates rule `i`; errors are (config key, message).
    pub fn validate(self, i: usize, known: &[String]) -> Result<AlertRule, (String, String)> {
        let key = |field: &str| format!("alerts[{i}].{field}");
        if self.name.trim().is_empty() {
            return Err((key("name"), "must not be empty".into()));
        }
        let mut rule = alert_expr::parse(&self.expr).map_err(|e| (key("expr"), e.to_string()))?;
        if let Some(f) = &self.for_ {
            if rule.for_ms.is_some() {
                return Err((
                    key("for"),
                    "given twice: in the expression and as a key".into(),
                ));
            }
            rule.for_ms = Some(parse_duration(f).map_err(|m| (key("for"), m))?);
        }
        let severity = match self.severity.as_deref() {
            None => Severity::Warning,
            Some(s) => Severity::parse(s).ok_or_else(|| {
                (
                    key("severity"),
                    format!("expected \"critical\", \"warning\" or \"info\", got {s:?}"),
                )
            })?,
        };
        let cooldown_ms = match self.cooldown.as_deref() {
            None => 3_600_000,
            Some("0") => 0,
            Some(c) => parse_duration(c).map_err(|m| (key("cooldown"), m))?,
        };
        if self.group_by.len() > 1 {
            return Err((key("group_by"), "at most one label for now".into()));
        }
        let group_by = match self.group_by.first() {
            None => None,
            Some(label) => Some(dimension_of(label).ok_or_else(|| {
                (
                    key("group_by"),
                    format!("expected model, feature, release or user, got {label:?}"),
                )
            })?),
        };
        let mut filter = Scope::default();
        for (label, value) in self.filter {
            match dimension_of(&label) {
                Some(Dimension::Model) => filter.model = Some(value),
                Some(Dimension::Feature) => filter.feature = Some(value),
                Some(Dimension::Release) => filter.release = Some(value),
                Some(Dimension::User) => filter.user = Some(value),
                _ => {
                    return Err((
                        key(&format!("filter.{label}")),
                        "expected model, feature, release or user".into(),
                    ));
                }
            }
        }
        if let Some(list) = &self.channels {
            for c in list {
                if c != DASHBOARD && !known.contains(c) {
                    return Err((
                        key("channels"),
                        format!("no channel named {c:?} (configure [channels.{c}])"),
                    ));
                }
            }
        }
        Ok(AlertRule {
            name: self.name,
            expr: rule.to_string(),
            timing: Timing {
                for_ms: rule.for_ms.unwrap_or(0),
                cooldown_ms,
            },
            rule,
            severity,
            group_by,
            filter,
            channels: self.channels,
            summary: self.summary,
            builtin: false,
        })
    }
}

/// A configured budget, as the built-in rules need it.
pub struct BudgetRef<'a> {
    pub name: &'a str,
    pub period: Period,
    pub warn_at: f64,
}

fn builtin(
    name: String,
    expr: &str,
    severity: Severity,
    cooldown_ms: i64,
    summary: &str,
) -> Result<AlertRule, String> {
    let rule = alert_expr::parse(expr)
        .map_err(|e| format!("built-in rule {name:?} ({expr}) does not parse: {e}"))?;
    Ok(AlertRule {
        name,
        expr: rule.to_string(),
        timing: Timing {
            for_ms: rule.for_ms.unwrap_or(0),
            cooldown_ms,
        },
        rule,
        severity,
        group_by: None,
        filter: Scope::default(),
        channels: None,
        summary: Some(summary.to_owned()),
        builtin: true,
    })
}

/// The rules every configuration gets: per budget, a warning at `warn_at`, a critical alert
/// when exceeded and a warning when the projected period-end spend exceeds the limit (each at
/// most once per budget period: the cooldown is the period); quality escalations as critical
/// alerts per feature; unpriced usage as a warning per model.
pub fn builtin_rules(budgets: &[BudgetRef<'_>]) -> Result<Vec<AlertRule>, String> {
    let mut out = Vec::new();
    for b in budgets {
        let period_ms = match b.period {
            Period::Day => DAY_MS,
            Period::Week => 7 * DAY_MS,
            Period::Month => 31 * DAY_MS,
        };
        // Budget names are free text: quote them as the expression language does.
        let quoted = serde_json::to_string(b.name).unwrap_or_default();
        out.push(builtin(
            format!("budget {} warning", b.name),
            &format!("budget_ratio({quoted}) >= {}", b.warn_at),
            Severity::Warning,
            period_ms,
            "{{rule}}: {{value}} of the budget spent",
        )?);
        out.push(builtin(
            format!("budget {} exceeded", b.name),
            &format!("budget_ratio({quoted}) >= 1"),
            Severity::Critical,
            period_ms,
            "{{rule}}: {{value}} of the budget spent",
        )?);
        out.push(builtin(
            format!("budget {} projected", b.name),
            &format!("projected_cost({quoted}) > budget({quoted})"),
            Severity::Warning,
            period_ms,
            "{{rule}}: on track to spend ${{value}} against ${{threshold}} this period",
        )?);
    }
    let mut escalations = builtin(
        "quality escalation".into(),
        "quality_escalations[1h] > 0",
        Severity::Critical,
        3_600_000,
        "{{rule}}: {{value}} run(s) of bad answers in {{feature}} in the last hour",
    )?;
    escalations.group_by = Some(Dimension::Feature);
    out.push(escalations);
    let mut unpriced = builtin(
        "unpriced usage".into(),
        "unpriced_requests[1h] > 0",
        Severity::Warning,
        DAY_MS,
        "{{rule}}: {{value}} requests of {{model}} have no price in the last hour; budgets under-count",
    )?;
    unpriced.group_by = Some(Dimension::Model);
    out.push(unpriced);
    Ok(out)
}

/// Fills a summary template.
pub fn render_summary(
    template: Option<&str>,
    rule: &AlertRule,
    group: &BTreeMap<String, String>,
    value: Option<f64>,
    threshold: Option<f64>,
) -> String {
    let number = |v: Option<f64>| match v {
        None => "n/a".to_owned(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => format!("{x:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned(),
    };
    let Some(t) = template else {
        let labels: Vec<String> = group.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let on = if labels.is_empty() {
            String::new()
        } else {
            format!(" ({})", labels.join(", "))
        };
        return format!(
            "{}{on}: {} is {} (threshold {})",
            rule.name,
            rule.expr,
            number(value),
            number(threshold)
        );
    };
    let mut out = t
        .replace("{{rule}}", &rule.name)
        .replace("{{value}}", &number(value))
        .replace("{{threshold}}", &number(threshold))
        .replace("{{severity}}", rule.severity.as_str());
    for (k, v) in group {
        // Requests without the label form their own group.
        let v = if v.is_empty() { NONE_GROUP } else { v };
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_name_the_group_and_its_absence() {
        let rules = builtin_rules(&[]).unwrap();
        let escalation = rules
            .iter()
            .find(|r| r.name == "quality escalation")
            .unwrap();
        let render = |feature: &str| {
            render_summary(
                escalation.summary.as_deref(),
                escalation,
                &BTreeMap::from([("feature".to_owned(), feature.to_owned())]),
                Some(2.0),
                Some(0.0),
            )
        };
        assert_eq!(
            render("chat"),
            "quality escalation: 2 run(s) of bad answers in chat in the last hour"
        );
        assert_eq!(
            render(""),
            "quality escalation: 2 run(s) of bad answers in (none) in the last hour"
        );
    }
}
