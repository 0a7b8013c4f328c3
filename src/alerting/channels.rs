//! Alert notification channels: what a `[channels.NAME]` table says, how a notification looks
//! on each channel, and its delivery with retries.
//!
//! - **Slack**: an incoming webhook, Block Kit message ([`slack_payload`]).
//! - **PagerDuty**: Events API v2, trigger/resolve by the alert's dedup key
//!   ([`pagerduty_payload`]).
//! - **Webhook**: the Alertmanager webhook format (v4), so receivers written for Prometheus
//!   Alertmanager work unchanged ([`alertmanager_payload`]).
//! - **Email**: SMTP with STARTTLS or implicit TLS and AUTH, a text and an HTML part
//!   ([`email_message`]).
//! - **Dashboard**: nothing to send; the alert shows in the UI.
//!
//! The renderings are pure functions of a [`Notification`]. [`send`] makes one attempt;
//! [`deliver`] retries with exponential backoff and full jitter, reporting every attempt.
//! Secrets (webhook URLs, routing keys, SMTP passwords) never appear in `Debug` output,
//! validation errors or delivery errors: every error text is scrubbed of them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::Url;
use serde_json::{Map, Value, json};

pub use crate::core::alert::Attempt;
use crate::core::alert::{Notice, Notification, Severity};

/// PagerDuty's Events API v2 endpoint, used when a pagerduty channel sets no `url`.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// One HTTP attempt (connect, request, response) may take this long.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// One SMTP attempt (connect, TLS, AUTH, message) may take this long.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(15);
/// Alertmanager's zero time, its `endsAt` while an alert fires.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// PagerDuty rejects a longer `payload.summary`.
const PAGERDUTY_SUMMARY_MAX: usize = 1024;
/// Slack rejects longer header texts, section texts and field texts.
const SLACK_HEADER_MAX: usize = 150;
const SLACK_TEXT_MAX: usize = 3000;
const SLACK_FIELD_MAX: usize = 2000;
/// Kept short so mail clients show the whole subject.
const SUBJECT_SUMMARY_MAX: usize = 160;
/// How much of an error response body goes into the error message.
const ERROR_BODY_MAX: usize = 300;
const REDACTED: &str = "[redacted]";
const USER_AGENT: &str = concat!("llmwatch/", env!("CARGO_PKG_VERSION"));

/// One `[channels.NAME]` table; `type` says what it is. Secrets (webhook URLs, routing keys,
/// SMTP passwords) are never logged or shown (`Debug` redacts them).
#[derive(Clone, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChannelConfig {
    /// A Slack incoming webhook (the URL is the secret).
    Slack { webhook_url: String },
    /// PagerDuty Events API v2 with an integration's routing key.
    Pagerduty {
        routing_key: String,
        /// Defaults to [`PAGERDUTY_EVENTS_URL`] (EU accounts use events.eu.pagerduty.com).
        #[serde(default)]
        url: Option<String>,
    },
    /// Any HTTP endpoint that takes Alertmanager's webhook JSON.
    Webhook { url: String },
    /// SMTP: `smtp://user:pass@host:587` (STARTTLS required; `?tls=opportunistic` or
    /// `?tls=none` relax it), `smtps://user:pass@host:465` (implicit TLS).
    Email {
        smtp_url: String,
        from: String,
        to: Vec<String>,
        /// An extra PEM root certificate, for a private mail relay.
        #[serde(default)]
        ca_file: Option<PathBuf>,
    },
    /// Shown in the dashboard only.
    Dashboard,
}

impl fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelConfig::Slack { webhook_url } => f
                .debug_struct("Slack")
                .field("webhook_url", &redacted_url(webhook_url))
                .finish(),
            ChannelConfig::Pagerduty { url, .. } => f
                .debug_struct("Pagerduty")
                .field("routing_key", &REDACTED)
                .field("url", url)
                .finish(),
            ChannelConfig::Webhook { url } => f
                .debug_struct("Webhook")
                .field("url", &redacted_url(url))
                .finish(),
            ChannelConfig::Email {
                smtp_url,
                from,
                to,
                ca_file,
            } => f
                .debug_struct("Email")
                .field("smtp_url", &redacted_smtp_url(smtp_url))
                .field("from", from)
                .field("to", to)
                .field("ca_file", ca_file)
                .finish(),
            ChannelConfig::Dashboard => f.write_str("Dashboard"),
        }
    }
}

/// A URL shown without its path and query, where webhook tokens live.
fn redacted_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) if u.has_host() => format!("{}/{REDACTED}", u.origin().ascii_serialization()),
        _ => REDACTED.to_owned(),
    }
}

/// An SMTP URL shown without its password.
fn redacted_smtp_url(url: &str) -> String {
    match Url::parse(url.trim()) {
        Ok(u) => match u.password() {
            // The serialized URL holds the password as written (percent-encoded), once.
            Some(password) => {
                u.as_str()
                    .replacen(&format!(":{password}@"), &format!(":{REDACTED}@"), 1)
            }
            None => u.to_string(),
        },
        Err(_) => REDACTED.to_owned(),
    }
}

fn field_error(name: &str, field: &str, message: impl fmt::Display) -> String {
    format!("channels.{name}.{field}: {message}")
}

/// An http(s) URL with a host. Errors never quote the URL: it may be the secret.
fn check_http_url(url: &str) -> Result<Url, &'static str> {
    match Url::parse(url.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(u),
        Ok(_) => Err("must be an http:// or https:// URL"),
        Err(_) => Err("is not a valid URL"),
    }
}

impl ChannelConfig {
    /// The `type` of the table.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelConfig::Slack { .. } => "slack",
            ChannelConfig::Pagerduty { .. } => "pagerduty",
            ChannelConfig::Webhook { .. } => "webhook",
            ChannelConfig::Email { .. } => "email",
            ChannelConfig::Dashboard => "dashboard",
        }
    }

    /// Checks every field; errors read `channels.NAME.field: message` and never contain a
    /// secret.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        match self {
            ChannelConfig::Slack { webhook_url } => {
                check_http_url(webhook_url).map_err(|m| field_error(name, "webhook_url", m))?;
            }
            ChannelConfig::Pagerduty { routing_key, url } => {
                let key = routing_key.trim();
                if key.is_empty() {
                    return Err(field_error(name, "routing_key", "must not be empty"));
                }
                if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(field_error(name, "routing_key", "must not contain spaces"));
                }
                if let Some(url) = url {
                    check_http_url(url).map_err(|m| field_error(name, "url", m))?;
                }
            }
            ChannelConfig::Webhook { url } => {
                check_http_url(url).map_err(|m| field_error(name, "url", m))?;
            }
            ChannelConfig::Email {
                smtp_url,
                from,
                to,
                ca_file,
            } => {
                let smtp =
                    SmtpTarget::parse(smtp_url).map_err(|m| field_error(name, "smtp_url", m))?;
                from.parse::<Mailbox>().map_err(|e| {
                    field_error(
                        name,
                        "from",
                        format!("not an e-mail address ({e}): {from:?}"),
                    )
                })?;
                if to.is_empty() {
                    return Err(field_error(name, "to", "must list at least one address"));
                }
                for address in to {
                    address.parse::<Mailbox>().map_err(|e| {
                        field_error(
                            name,
                            "to",
                            format!("not an e-mail address ({e}): {address:?}"),
                        )
                    })?;
                }
                if let Some(path) = ca_file {
                    if smtp.security == SmtpSecurity::None {
                        return Err(field_error(
                            name,
                            "ca_file",
                            "is set but smtp_url has tls=none",
                        ));
                    }
                    read_root_certificate(path).map_err(|m| field_error(name, "ca_file", m))?;
                }
            }
            ChannelConfig::Dashboard => {}
        }
        Ok(())
    }

    /// The strings an error message must not show.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        match self {
            ChannelConfig::Slack { webhook_url: url } | ChannelConfig::Webhook { url } => {
                url_secrets(url, &mut secrets)
            }
            ChannelConfig::Pagerduty { routing_key, .. } => {
                secrets.push(routing_key.trim().to_owned())
            }
            ChannelConfig::Email { smtp_url, .. } => {
                secrets.push(smtp_url.trim().to_owned());
                if let Ok(u) = Url::parse(smtp_url.trim())
                    && let Some(password) = u.password()
                {
                    secrets.push(percent_decode(password));
                    secrets.push(password.to_owned());
                }
            }
            ChannelConfig::Dashboard => {}
        }
        // A very short "secret" would blot out ordinary words; such keys are not real ones.
        secrets.retain(|s| s.len() >= 4);
        // Longest first, so a URL goes before a password inside it.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
    }
}

/// A webhook URL is a secret as a whole, and so is any token-like part of it that a server
/// might echo alone: its path, a path segment or a query value with letters and digits.
fn url_secrets(url: &str, secrets: &mut Vec<String>) {
    let url = url.trim();
    secrets.push(url.to_owned());
    let Ok(u) = Url::parse(url) else { return };
    let token_like = |s: &str| s.len() >= 8 && s.bytes().any(|b| b.is_ascii_digit());
    if u.path().len() > 1 {
        secrets.push(u.path().to_owned());
    }
    if let Some(query) = u.query() {
        secrets.push(query.to_owned());
    }
    secrets.extend(
        u.path_segments()
            .into_iter()
            .flatten()
            .filter(|s| token_like(s))
            .map(str::to_owned),
    );
    secrets.extend(
        u.query_pairs()
            .map(|(_, v)| v.into_owned())
            .filter(|v| token_like(v)),
    );
}

fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |acc, secret| {
        acc.replace(secret.as_str(), REDACTED)
    })
}

/// Reads a PEM file that holds at least one certificate.
fn read_root_certificate(path: &std::path::Path) -> Result<Certificate, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Renderings

fn status_word(notice: Notice) -> &'static str {
    match notice {
        Notice::Firing => "FIRING",
        Notice::Reminder => "REMINDER",
        Notice::Resolved => "RESOLVED",
    }
}

/// The Alertmanager / PagerDuty view: a reminder is an alert still firing.
fn is_firing(notice: Notice) -> bool {
    !matches!(notice, Notice::Resolved)
}

fn slack_emoji(n: &Notification) -> &'static str {
    if n.notice == Notice::Resolved {
        return ":white_check_mark:";
    }
    match n.severity {
        Severity::Critical => ":red_circle:",
        Severity::Warning => ":warning:",
        Severity::Info => ":information_source:",
    }
}

/// A number for people: at most 4 decimals (4 significant digits below 1), no trailing zeros.
fn format_number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let decimals = if x == 0.0 || x.abs() >= 1.0 {
        4
    } else {
        // 0.001234 -> 6 decimals; capped so denormals do not print hundreds of zeros.
        (3 - x.abs().log10().floor() as i64).clamp(4, 12) as usize
    };
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    if s == "-0" { "0".to_owned() } else { s }
}

fn format_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), format_number)
}

/// "0.0712 (threshold 0.05)", "0.0712", or "n/a".
fn value_text(n: &Notification) -> String {
    match n.threshold {
        Some(t) => format!("{} (threshold {})", format_opt(n.value), format_number(t)),
        None => format_opt(n.value),
    }
}

/// "model=gpt-4o, feature=chat", or "" for an ungrouped rule.
fn group_text(group: &BTreeMap<String, String>, separator: &str) -> String {
    group
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(separator)
}

/// RFC 3339 in UTC, with as many fraction digits as needed (none for whole seconds).
fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// At most `max` characters, ending with "…" when cut.
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack's mrkdwn treats these three as control characters.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// "rule: summary (model=gpt-4o)"; the summary alone names no group.
fn title_line(n: &Notification) -> String {
    let mut line = if n.summary.is_empty() {
        n.rule.clone()
    } else {
        format!("{}: {}", n.rule, n.summary)
    };
    if !n.group.is_empty() {
        line.push_str(&format!(" ({})", group_text(&n.group, ", ")));
    }
    line
}

/// A Slack incoming-webhook message: a fallback `text` (shown in notifications) and Block Kit
/// `blocks`: header, summary, fields (severity, status, value, group, expression), context
/// (times) and, with a dashboard URL, a button to it.
pub fn slack_payload(n: &Notification) -> Value {
    let status = status_word(n.notice);
    let emoji = slack_emoji(n);
    let text = format!(
        "{emoji} [{}] {status}: {}",
        n.severity.as_str().to_uppercase(),
        slack_escape(&title_line(n))
    );
    let header = truncate_chars(&format!("{emoji} {status}: {}", n.rule), SLACK_HEADER_MAX);
    let group = if n.group.is_empty() {
        "(none)".to_owned()
    } else {
        slack_escape(&group_text(&n.group, "\n"))
    };
    let field = |title: &str, body: String| json!({"type": "mrkdwn", "text": truncate_chars(&format!("*{title}*\n{body}"), SLACK_FIELD_MAX)});
    let fields = vec![
        field("Severity", n.severity.as_str().to_owned()),
        field("Status", status.to_lowercase()),
        field("Value", slack_escape(&value_text(n))),
        field("Group", group),
        // Backticks would end the code span early; a lookalike keeps the expression readable.
        field(
            "Expression",
            format!("`{}`", slack_escape(&n.expr.replace('`', "ˋ"))),
        ),
    ];
    let mut times = format!("started {}", slack_date(n.starts_ms));
    if n.notice == Notice::Resolved {
        times.push_str(&format!(
            " · resolved {}",
            slack_date(n.ends_ms.unwrap_or(n.at_ms))
        ));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}}),
    ];
    if !n.summary.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": truncate_chars(&slack_escape(&n.summary), SLACK_TEXT_MAX)}}));
    }
    blocks.push(json!({"type": "section", "fields": fields}));
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!("llmwatch · {times}")}
    ]}));
    if let Some(url) = &n.dashboard_url {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": "Open in llmwatch"},
            "url": url,
        }]}));
    }
    json!({"text": text, "blocks": blocks})
}

/// Slack renders this in the reader's time zone; the fallback is UTC.
fn slack_date(ms: i64) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        ms.div_euclid(1000),
        rfc3339(ms)
    )
}

/// Group labels PagerDuty shows as the alert's component and group, first match wins.
const PAGERDUTY_COMPONENT_LABELS: [&str; 3] = ["component", "model", "provider"];
const PAGERDUTY_GROUP_LABELS: [&str; 4] = ["group", "project", "feature", "release"];

fn first_label<'a>(group: &'a BTreeMap<String, String>, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|k| group.get(*k).map(String::as_str))
}

/// A PagerDuty Events API v2 event. Firing and reminders trigger (PagerDuty folds a trigger
/// with an open incident's dedup key into it), a resolution resolves; the dedup key is the
/// alert's, so both reach the same incident.
pub fn pagerduty_payload(n: &Notification, routing_key: &str) -> Value {
    if !is_firing(n.notice) {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": n.dedup_key,
        });
    }
    let mut payload = Map::new();
    payload.insert(
        "summary".into(),
        truncate_chars(&title_line(n), PAGERDUTY_SUMMARY_MAX).into(),
    );
    payload.insert("severity".into(), n.severity.as_str().into());
    payload.insert("source".into(), "llmwatch".into());
    payload.insert("timestamp".into(), rfc3339(n.at_ms).into());
    if let Some(component) = first_label(&n.group, &PAGERDUTY_COMPONENT_LABELS) {
        payload.insert("component".into(), component.into());
    }
    if let Some(group) = first_label(&n.group, &PAGERDUTY_GROUP_LABELS) {
        payload.insert("group".into(), group.into());
    }
    payload.insert("class".into(), n.rule.clone().into());
    payload.insert(
        "custom_details".into(),
        json!({
            "rule": n.rule,
            "expr": n.expr,
            "value": n.value,
            "threshold": n.threshold,
            "group": n.group,
            "started_at": rfc3339(n.starts_ms),
            "notice": status_word(n.notice).to_lowercase(),
        }),
    );
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": n.dedup_key,
        "payload": payload,
        "client": "llmwatch",
    });
    if let Some(url) = &n.dashboard_url {
        event["client_url"] = url.clone().into();
        event["links"] = json!([{"href": url, "text": "Open in llmwatch"}]);
    }
    event
}

/// Alertmanager's label fingerprint is a 64-bit hash shown as 16 hex digits; here FNV-1a of
/// the dedup key, so it is stable across restarts and versions.
fn fingerprint(dedup_key: &str) -> String {
    let hash = dedup_key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

fn alert_labels(n: &Notification) -> BTreeMap<String, String> {
    let mut labels = n.group.clone();
    // The rule and severity win over group labels of the same name.
    labels.insert("alertname".into(), n.rule.clone());
    labels.insert("severity".into(), n.severity.as_str().into());
    labels
}

fn alert_annotations(n: &Notification) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".into(), n.summary.clone());
    annotations.insert("expr".into(), n.expr.clone());
    if let Some(v) = n.value {
        annotations.insert("value".into(), format_number(v));
    }
    if let Some(t) = n.threshold {
        annotations.insert("threshold".into(), format_number(t));
    }
    annotations
}

/// The pairs every map has.
fn common(maps: &[BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let Some((first, rest)) = maps.split_first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter(|(k, v)| rest.iter().all(|m| m.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Alertmanager's webhook body (version 4), so any receiver for Alertmanager takes it. The
/// group is by rule (`alertname`), as a route with `group_by: [alertname]`.
pub fn alertmanager_payload(notifications: &[Notification], external_url: Option<&str>) -> Value {
    let labels: Vec<_> = notifications.iter().map(alert_labels).collect();
    let annotations: Vec<_> = notifications.iter().map(alert_annotations).collect();
    let common_labels = common(&labels);
    let group_labels: BTreeMap<String, String> = common_labels
        .get("alertname")
        .map(|rule| ("alertname".to_owned(), rule.clone()))
        .into_iter()
        .collect();
    let group_key = format!(
        "{{}}:{{{}}}",
        group_labels
            .iter()
            .map(|(k, v)| format!("{k}={}", Value::from(v.as_str())))
            .collect::<Vec<_>>()
            .join(",")
    );
    let alerts: Vec<Value> = notifications
        .iter()
        .zip(labels)
        .zip(annotations.iter())
        .map(|((n, labels), annotations)| {
            let firing = is_firing(n.notice);
            let ends_at = if firing {
                ZERO_TIME.to_owned()
            } else {
                rfc3339(n.ends_ms.unwrap_or(n.at_ms))
            };
            json!({
                "status": if firing { "firing" } else { "resolved" },
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(n.starts_ms),
                "endsAt": ends_at,
                "generatorURL": n.dashboard_url.as_deref().unwrap_or(""),
                "fingerprint": fingerprint(&n.dedup_key),
            })
        })
        .collect();
    let any_firing = notifications.iter().any(|n| is_firing(n.notice));
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": if any_firing { "firing" } else { "resolved" },
        "receiver": "llmwatch",
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": common(&annotations),
        "externalURL": external_url.unwrap_or(""),
        "alerts": alerts,
    })
}

/// Subject, plain text and HTML of an alert e-mail. The subject reads
/// "[llmwatch CRITICAL] FIRING: rule — summary"; the HTML escapes every value.
pub fn email_message(n: &Notification) -> (String, String, String) {
    let status = status_word(n.notice);
    let severity = n.severity.as_str().to_uppercase();
    // Header lines are single lines; line breaks in a summary would end up folded oddly.
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut subject = format!("[llmwatch {severity}] {status}: {}", one_line(&n.rule));
    if !n.summary.is_empty() {
        subject.push_str(" — ");
        subject.push_str(&truncate_chars(&one_line(&n.summary), SUBJECT_SUMMARY_MAX));
    }

    let mut rows: Vec<(&str, String)> = vec![
        ("Rule", n.rule.clone()),
        ("Severity", n.severity.as_str().to_owned()),
        ("Status", status.to_lowercase()),
        ("Value", value_text(n)),
        ("Expression", n.expr.clone()),
    ];
    if !n.group.is_empty() {
        rows.push(("Group", group_text(&n.group, ", ")));
    }
    rows.push(("Started", rfc3339(n.starts_ms)));
    if n.notice == Notice::Resolved {
        rows.push(("Resolved", rfc3339(n.ends_ms.unwrap_or(n.at_ms))));
    }
    if let Some(url) = &n.dashboard_url {
        rows.push(("Dashboard", url.clone()));
    }

    let mut text = format!("{status}: {} ({})\n\n", n.rule, n.severity.as_str());
    if !n.summary.is_empty() {
        text.push_str(&n.summary);
        text.push_str("\n\n");
    }
    for (label, value) in &rows {
        text.push_str(&format!("{:<11} {value}\n", format!("{label}:")));
    }
    text.push_str("\n-- \nllmwatch\n");

    let color = match (n.notice, n.severity) {
        (Notice::Resolved, _) => "#2e7d32",
        (_, Severity::Critical) => "#c62828",
        (_, Severity::Warning) => "#ef6c00",
        (_, Severity::Info) => "#1565c0",
    };
    let mut html = format!(
        "<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif\">\n\
         <h2 style=\"color: {color}\">{status}: {}</h2>\n",
        html_escape(&n.rule)
    );
    if !n.summary.is_empty() {
        html.push_str(&format!("<p>{}</p>\n", html_escape(&n.summary)));
    }
    html.push_str("<table cellpadding=\"4\">\n");
    for (label, value) in &rows {
        let cell = match *label {
            "Expression" => format!("<code>{}</code>", html_escape(value)),
            "Dashboard" => format!("<a href=\"{0}\">{0}</a>", html_escape(value)),
            _ => html_escape(value),
        };
        html.push_str(&format!(
            "<tr><th align=\"left\">{label}</th><td>{cell}</td></tr>\n"
        ));
    }
    html.push_str("</table>\n<p style=\"color: #777\">llmwatch</p>\n</body></html>\n");
    (subject, text, html)
}

/// A sample notification for `llmwatch alerts test CHANNEL`.
pub fn test_notification(
    channel_name: &str,
    now_ms: i64,
    dashboard_url: Option<&str>,
) -> Notification {
    let group = BTreeMap::from([("channel".to_owned(), channel_name.to_owned())]);
    Notification {
        // Unique per test, so a test never updates (or resolves) a real alert's incident.
        dedup_key: format!("llmwatch-test-{channel_name}-{now_ms}"),
        rule: "llmwatch test".to_owned(),
        severity: Severity::Info,
        notice: Notice::Firing,
        group,
        summary: format!("Test notification: channel \"{channel_name}\" reaches you."),
        expr: "test_value > 0".to_owned(),
        value: Some(1.0),
        threshold: Some(0.0),
        starts_ms: now_ms,
        ends_ms: None,
        at_ms: now_ms,
        dashboard_url: dashboard_url.map(str::to_owned),
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery

/// How [`deliver`] retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (0 counts as 1).
    pub max_attempts: u32,
    /// The backoff before retry n is drawn from 0..=min(max_ms, base_ms * 2^(n-1)).
    pub base_ms: u64,
    /// Longest wait between two attempts, a server's Retry-After included.
    pub max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_ms: 500,
            max_ms: 60_000,
        }
    }
}

/// Why one attempt failed. Messages never contain the channel's secrets.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server answered with a non-2xx status.
    #[error("HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        status: u16,
        /// The Retry-After header of a 429 (or 503), honoured by [`deliver`].
        retry_after: Option<Duration>,
        /// The start of the response body (scrubbed).
        body: String,
    },
    /// No response: connection refused or reset, DNS, TLS, a timeout.
    #[error("{message}")]
    Http { message: String, retryable: bool },
    /// The SMTP dialogue failed; `code` is the server's reply code when it gave one.
    #[error("SMTP: {message}")]
    Smtp {
        code: Option<u16>,
        message: String,
        retryable: bool,
    },
    /// The attempt took longer than its time limit.
    #[error("timed out after {} s", .0.as_secs())]
    Timeout(Duration),
    /// The channel cannot be sent to as configured (retrying will not help).
    #[error("invalid channel configuration: {0}")]
    Config(String),
}

impl SendError {
    /// Whether another attempt may succeed: HTTP 429 and 5xx, connection errors, timeouts,
    /// SMTP transient (4xx) replies. Other 4xx, SMTP permanent (5xx) replies, TLS and
    /// configuration errors are final.
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Status { status, .. } => *status == 429 || (500..600).contains(status),
            SendError::Http { retryable, .. } | SendError::Smtp { retryable, .. } => *retryable,
            SendError::Timeout(_) => true,
            SendError::Config(_) => false,
        }
    }

    /// The HTTP status or SMTP reply code, when the server gave one.
    pub fn status(&self) -> Option<u16> {
        match self {
            SendError::Status { status, .. } => Some(*status),
            SendError::Smtp { code, .. } => *code,
            _ => None,
        }
    }

    /// How long the server asked to wait (429 with Retry-After).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Sends one notification to one channel: `Ok` carries the HTTP status (or the SMTP reply
/// code); the dashboard has nothing to send.
pub async fn send(
    client: &reqwest::Client,
    channel: &ChannelConfig,
    n: &Notification,
) -> Result<Option<u16>, SendError> {
    let secrets = channel.secrets();
    let result = match channel {
        ChannelConfig::Slack { webhook_url } => {
            post_json(client, webhook_url, &slack_payload(n), &secrets).await
        }
        ChannelConfig::Pagerduty { routing_key, url } => {
            let url = url.as_deref().unwrap_or(PAGERDUTY_EVENTS_URL);
            let body = pagerduty_payload(n, routing_key.trim());
            post_json(client, url, &body, &secrets).await
        }
        ChannelConfig::Webhook { url } => {
            // Alertmanager's externalURL points at the UI that sent the alert.
            let external = n
                .dashboard_url
                .as_deref()
                .and_then(|u| Url::parse(u).ok())
                .map(|u| u.origin().ascii_serialization());
            let body = alertmanager_payload(std::slice::from_ref(n), external.as_deref());
            post_json(client, url, &body, &secrets).await
        }
        ChannelConfig::Email {
            smtp_url,
            from,
            to,
            ca_file,
        } => send_email(smtp_url, from, to, ca_file.as_deref(), n, &secrets).await,
        ChannelConfig::Dashboard => Ok(None),
    };
    // Belt and braces: whatever a library put in a message, the secrets come out.
    result.map_err(|e| match e {
        SendError::Status {
            status,
            retry_after,
            body,
        } => SendError::Status {
            status,
            retry_after,
            body: scrub(&body, &secrets),
        },
        SendError::Http { message, retryable } => SendError::Http {
            message: scrub(&message, &secrets),
            retryable,
        },
        SendError::Smtp {
            code,
            message,
            retryable,
        } => SendError::Smtp {
            code,
            message: scrub(&message, &secrets),
            retryable,
        },
        SendError::Config(message) => SendError::Config(scrub(&message, &secrets)),
        other @ SendError::Timeout(_) => other,
    })
}

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    secrets: &[String],
) -> Result<Option<u16>, SendError> {
    let url = check_http_url(url).map_err(|m| SendError::Config(format!("the URL {m}")))?;
    let response = client
        .post(url)
        .header(reqwest::header::USER_AGENT, USER_AGENT)
        .timeout(HTTP_TIMEOUT)
        .json(body)
        .send()
        .await
        .map_err(http_error)?;
    let status = response.status();
    if status.is_success() {
        return Ok(Some(status.as_u16()));
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()));
    let body = read_excerpt(response).await;
    Err(SendError::Status {
        status: status.as_u16(),
        retry_after,
        body: scrub(&body, secrets),
    })
}

/// The first bytes of an error body, on one line (a body that will not come is no excuse to
/// wait: the request's timeout bounds it).
async fn read_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ERROR_BODY_MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    truncate_chars(
        &text.split_whitespace().collect::<Vec<_>>().join(" "),
        ERROR_BODY_MAX,
    )
}

/// reqwest's messages name the URL, which is the secret for webhooks: drop it, keep the causes.
fn http_error(e: reqwest::Error) -> SendError {
    if e.is_timeout() {
        return SendError::Timeout(HTTP_TIMEOUT);
    }
    let retryable = !(e.is_builder() || e.is_redirect());
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source's text in their own.
        if !message.contains(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    SendError::Http { message, retryable }
}

/// Retry-After as delta-seconds or an HTTP date.
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let ms = (at.with_timezone(&Utc) - now).num_milliseconds().max(0);
    Some(Duration::from_millis(ms.unsigned_abs()))
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SmtpSecurity {
    /// smtps://: TLS from the first byte.
    Implicit,
    /// smtp:// (default): STARTTLS, or fail before any credential is sent.
    StartTlsRequired,
    /// smtp://...?tls=opportunistic: STARTTLS when the server offers it.
    StartTlsOpportunistic,
    /// smtp://...?tls=none: plain text (a local relay).
    None,
}

/// A parsed `smtp_url`.
struct SmtpTarget {
    host: String,
    port: u16,
    security: SmtpSecurity,
    credentials: Option<(String, String)>,
}

impl SmtpTarget {
    /// Errors never quote the URL (it holds the password).
    fn parse(smtp_url: &str) -> Result<SmtpTarget, String> {
        let url = Url::parse(smtp_url.trim()).map_err(|e| format!("is not a valid URL ({e})"))?;
        // An IPv6 host comes bracketed ("[::1]"); connecting and TLS want the bare address.
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            _ => return Err("names no host".to_owned()),
        };
        let mut tls = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "tls" if tls.is_none() => tls = Some(value.into_owned()),
                _ => {
                    return Err(format!(
                        "unknown or repeated query parameter {key:?} (only tls=...)"
                    ));
                }
            }
        }
        let (security, default_port) = match (url.scheme(), tls.as_deref()) {
            ("smtps", None) => (SmtpSecurity::Implicit, 465),
            ("smtp", None | Some("required")) => (SmtpSecurity::StartTlsRequired, 587),
            ("smtp", Some("opportunistic")) => (SmtpSecurity::StartTlsOpportunistic, 587),
            ("smtp", Some("none")) => (SmtpSecurity::None, 25),
            ("smtp", Some(other)) => {
                return Err(format!(
                    "tls={other:?}: must be required (the default), opportunistic or none"
                ));
            }
            ("smtps", Some(_)) => return Err("smtps:// takes no tls parameter".to_owned()),
            (scheme, _) => {
                return Err(format!("scheme {scheme:?}: must be smtp:// or smtps://"));
            }
        };
        if !matches!(url.path(), "" | "/") {
            return Err("must have no path".to_owned());
        }
        let credentials = match url.password() {
            Some(password) => {
                if url.username().is_empty() {
                    return Err("has a password but no user".to_owned());
                }
                Some((percent_decode(url.username()), percent_decode(password)))
            }
            None if !url.username().is_empty() => {
                return Err("has a user but no password (smtp://user:password@host)".to_owned());
            }
            None => None,
        };
        if credentials.is_some() && security == SmtpSecurity::None {
            return Err(
                "tls=none would send the password in clear text; use STARTTLS or smtps://"
                    .to_owned(),
            );
        }
        Ok(SmtpTarget {
            host,
            port: url.port().unwrap_or(default_port),
            security,
            credentials,
        })
    }
}

/// URL user info is percent-encoded ("p%40ss" for "p@ss"); invalid escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn smtp_error(e: lettre::transport::smtp::Error) -> SendError {
    let code = e.status().map(u16::from);
    // A transient reply (4xx) or a broken connection may pass; a permanent reply (5xx), a TLS
    // failure (an untrusted certificate, no STARTTLS offered) or a client error will not.
    let tls_failure = is_tls_failure(&e);
    let retryable = if e.is_permanent() || e.is_tls() || e.is_client() || tls_failure {
        false
    } else {
        e.is_transient() || e.is_timeout() || code.is_none()
    };
    let mut message = dedup_causes(&e.to_string());
    if tls_failure && !e.is_tls() {
        message = format!("TLS handshake failed: {message}");
    }
    SendError::Smtp {
        code,
        message,
        retryable,
    }
}

/// lettre reports a failed TLS handshake as a connection error; underneath is an I/O error of
/// kind InvalidData (rustls's certificate or protocol error), which no retry will fix.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// "Connection error: Connection error: refused" -> "Connection error: refused" (errors that
/// wrap one of their own kind repeat its prefix).
fn dedup_causes(message: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in message.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

async fn send_email(
    smtp_url: &str,
    from: &str,
    to: &[String],
    ca_file: Option<&std::path::Path>,
    n: &Notification,
    secrets: &[String],
) -> Result<Option<u16>, SendError> {
    let target = SmtpTarget::parse(smtp_url)
        .map_err(|m| SendError::Config(format!("smtp_url {}", scrub(&m, secrets))))?;
    let from: Mailbox = from
        .parse()
        .map_err(|e| SendError::Config(format!("from: {e}")))?;
    let (subject, text, html) = email_message(n);
    // Every notice of one alert refers to the same id, so mail clients thread firing,
    // reminders and resolution together.
    let thread_id: String = n
        .dedup_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut message = Message::builder()
        .from(from)
        .subject(subject)
        .message_id(None)
        .references(format!("<{thread_id}@llmwatch>"));
    for address in to {
        let mailbox: Mailbox = address
            .parse()
            .map_err(|e| SendError::Config(format!("to {address:?}: {e}")))?;
        message = message.to(mailbox);
    }
    let message = message
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| SendError::Config(format!("message: {e}")))?;

    let tls = |host: &str| -> Result<TlsParameters, SendError> {
        let mut builder = TlsParameters::builder(host.to_owned());
        if let Some(path) = ca_file {
            builder = builder.add_root_certificate(
                read_root_certificate(path)
                    .map_err(|m| SendError::Config(format!("ca_file: {m}")))?,
            );
        }
        builder
            .build()
            .map_err(|e| SendError::Config(format!("TLS setup: {e}")))
    };
    let security = match target.security {
        SmtpSecurity::Implicit => Tls::Wrapper(tls(&target.host)?),
        SmtpSecurity::StartTlsRequired => Tls::Required(tls(&target.host)?),
        SmtpSecurity::StartTlsOpportunistic => Tls::Opportunistic(tls(&target.host)?),
        SmtpSecurity::None => Tls::None,
    };
    let mut transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(target.host.as_str())
            .port(target.port)
            .tls(security)
            .timeout(Some(SMTP_TIMEOUT));
    if let Some((user, password)) = target.credentials {
        transport = transport.credentials(Credentials::new(user, password));
    }
    let transport = transport.build();
    // lettre's timeout is per command; this one bounds the whole dialogue.
    match tokio::time::timeout(SMTP_TIMEOUT, transport.send(message)).await {
        Ok(Ok(response)) => Ok(Some(u16::from(response.code()))),
        Ok(Err(e)) => Err(smtp_error(e)),
        Err(_) => Err(SendError::Timeout(SMTP_TIMEOUT)),
    }
}

/// The wait before retry `retry` (1-based): full jitter over the exponential backoff, at least
/// the server's Retry-After, at most `max_ms`.
fn backoff(
    policy: &RetryPolicy,
    retry: u32,
    retry_after: Option<Duration>,
    rng: &mut SmallRng,
) -> Duration {
    let exp = policy.base_ms.saturating_mul(
        1_u64
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u64::MAX),
    );
    let cap = exp.min(policy.max_ms);
    let jittered = rng.random_range(0..=cap);
    let wait = retry_after.map_or(jittered, |d| {
        jittered.max(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    });
    Duration::from_millis(wait.min(policy.max_ms))
}

/// Sends with retries: exponential backoff with full jitter, honouring a 429's Retry-After (up
/// to `policy.max_ms`); calls `on_attempt` after every attempt. Returns the final attempt. Holds
/// no lock: the caller runs one of these per delivery, so a slow channel delays only itself.
pub async fn deliver(
    client: &reqwest::Client,
    channel: &ChannelConfig,
    n: &Notification,
    policy: RetryPolicy,
    clock: &crate::api::Clock,
    mut on_attempt: impl FnMut(&Attempt),
) -> Attempt {
    let max_attempts = policy.max_attempts.max(1);
    // Jitter needs no cryptographic randomness; the seed spreads alerts retrying together.
    let seed = fingerprint(&n.dedup_key)
        .bytes()
        .fold(clock().unsigned_abs(), |h, b| {
            h.rotate_left(5) ^ u64::from(b)
        })
        ^ u64::from(std::process::id());
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut attempt_no = 1;
    loop {
        let at_ms = clock();
        let started = Instant::now();
        let result = send(client, channel, n).await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (attempt, retry) = match result {
            Ok(status) => (
                Attempt {
                    attempt: attempt_no,
                    ok: true,
                    status,
                    error: None,
                    duration_ms,
                    at_ms,
                },
                None,
            ),
            Err(e) => {
                let retry = e.retryable().then(|| e.retry_after());
                (
                    Attempt {
                        attempt: attempt_no,
                        ok: false,
                        status: e.status(),
                        error: Some(e.to_string()),
                        duration_ms,
                        at_ms,
                    },
                    retry,
                )
            }
        };
        on_attempt(&attempt);
        match retry {
            Some(retry_after) if attempt_no < max_attempts => {
                tokio::time::sleep(backoff(&policy, attempt_no, retry_after, &mut rng)).await;
                attempt_no += 1;
            }
            _ => return attempt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(format_number(0.05), "0.05");
        assert_eq!(format_number(0.071234), "0.07123");
        assert_eq!(format_number(1500.0), "1500");
        assert_eq!(format_number(2.5), "2.5");
        assert_eq!(format_number(12.345678), "12.3457");
        assert_eq!(format_number(0.0001234), "0.0001234");
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(-0.00001), "-0.00001");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_is_jittered_capped_and_honours_retry_after() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_ms: 100,
            max_ms: 1000,
        };
        let mut rng = SmallRng::seed_from_u64(1);
        for retry in 1..10 {
            let cap = (100_u64 << (retry - 1)).min(1000);
            for _ in 0..50 {
                assert!(backoff(&policy, retry, None, &mut rng) <= Duration::from_millis(cap));
            }
        }
        assert!(
            backoff(&policy, 1, Some(Duration::from_millis(700)), &mut rng)
                >= Duration::from_millis(700)
        );
        assert_eq!(
            backoff(&policy, 1, Some(Duration::from_secs(3600)), &mut rng),
            Duration::from_millis(1000)
        );
        assert!(backoff(&policy, 200, None, &mut rng) <= Duration::from_millis(1000));
    }

    #[test]
    fn smtp_urls() {
        let t = SmtpTarget::parse("smtp://me:p%40ss@mail.example.com").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.security),
            ("mail.example.com", 587, SmtpSecurity::StartTlsRequired)
        );
        assert_eq!(t.credentials, Some(("me".to_owned(), "p@ss".to_owned())));
        let t = SmtpTarget::parse("smtps://me:pw@mail.example.com").unwrap();
        assert_eq!((t.port, t.security), (465, SmtpSecurity::Implicit));
        let t = SmtpTarget::parse("smtp://relay:2525?tls=none").unwrap();
        assert_eq!(
            (t.port, t.security, t.credentials),
            (2525, SmtpSecurity::None, None)
        );
        let t = SmtpTarget::parse("smtp://[::1]:25?tls=opportunistic").unwrap();
        assert_eq!(
            (t.host.as_str(), t.security),
            ("::1", SmtpSecurity::StartTlsOpportunistic)
        );
        for bad in [
            "smtp://me:secret@relay?tls=none",
            "smtp://relay?tls=maybe",
            "smtps://relay?tls=none",
            "http://relay",
            "smtp://me@relay",
            "smtp://relay/path",
            "smtp://relay?foo=1",
            "not a url",
        ] {
            let err = SmtpTarget::parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
