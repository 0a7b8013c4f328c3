//! Alert channels against local stand-ins: axum servers on 127.0.0.1 receive Slack, PagerDuty
//! and webhook deliveries (their JSON checked field by field against expectations written out
//! here), scripted failures exercise the retries, and a scripted SMTP server the e-mail path.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use llmwatch::alerting::channels::{
    Attempt, ChannelConfig, RetryPolicy, SendError, alertmanager_payload, deliver, email_message,
    pagerduty_payload, send, slack_payload, test_notification,
};
use llmwatch::api::Clock;
use llmwatch::core::alert::{Notice, Notification, Severity};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SLACK_TOKEN: &str = "XyZsecretT0ken42";
const ROUTING_KEY: &str = "R0uTiNgKeY0123456789abcdefABCDEF";
const T0: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

// ---------------------------------------------------------------------------------------------
// A scripted HTTP receiver

/// What one request looked like when it arrived.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    path: String,
    content_type: String,
    body: Value,
}

/// A response to give: status, extra headers, body. Once the script runs out: 200 "ok".
type Scripted = (u16, Vec<(&'static str, String)>, String);

#[derive(Default)]
struct Receiver {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Scripted>>,
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    r.received.lock().unwrap().push(Received {
        at: Instant::now(),
        path: uri.path().to_owned(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let (status, extra, text) =
        r.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((200, vec![], "ok".into()));
    let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
    for (name, value) in extra {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// Starts a receiver answering every path; returns it and its base URL.
async fn receiver(script: Vec<Scripted>) -> (Arc<Receiver>, String) {
    let state = Arc::new(Receiver {
        received: Mutex::default(),
        script: Mutex::new(script.into()),
    });
    let app = Router::new().fallback(receive).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, url)
}

fn received(r: &Receiver) -> Vec<Received> {
    r.received.lock().unwrap().clone()
}

fn clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

fn fast(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_ms: 5,
        max_ms: 50,
    }
}

/// Delivers and collects the attempts reported along the way.
async fn deliver_logged(
    channel: &ChannelConfig,
    n: &Notification,
    policy: RetryPolicy,
) -> (Attempt, Vec<Attempt>) {
    let client = reqwest::Client::new();
    let mut log = Vec::new();
    let last = deliver(&client, channel, n, policy, &clock(), |a| {
        log.push(a.clone())
    })
    .await;
    (last, log)
}

fn alert(notice: Notice) -> Notification {
    Notification {
        dedup_key: "llmwatch-00000000deadbeef".into(),
        rule: "high_error_rate".into(),
        severity: Severity::Critical,
        notice,
        group: BTreeMap::from([
            ("feature".to_owned(), "chat<&>".to_owned()),
            ("model".to_owned(), "gpt-4o".to_owned()),
        ]),
        summary: "Error rate 7.12% over 5 min".into(),
        expr: "error_rate > 0.05".into(),
        value: Some(0.0712),
        threshold: Some(0.05),
        starts_ms: T0,
        ends_ms: (notice == Notice::Resolved).then_some(T0 + 600_000),
        at_ms: T0
            + if notice == Notice::Resolved {
                600_000
            } else {
                0
            },
        dashboard_url: Some("https://llmwatch.example.com/alerts/high_error_rate".into()),
    }
}

fn ms_of(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?} is not RFC 3339: {e}"))
        .timestamp_millis()
}

// ---------------------------------------------------------------------------------------------
// Slack

#[tokio::test]
async fn slack_firing_message_field_by_field() {
    let (rx, base) = receiver(vec![]).await;
    let channel = ChannelConfig::Slack {
        webhook_url: format!("{base}/services/T000/B000/{SLACK_TOKEN}"),
    };
    channel.validate("ops").unwrap();
    let n = alert(Notice::Firing);
    let status = send(&reqwest::Client::new(), &channel, &n).await.unwrap();
    assert_eq!(status, Some(200));

    let got = received(&rx);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, format!("/services/T000/B000/{SLACK_TOKEN}"));
    assert!(got[0].content_type.starts_with("application/json"));
    let body = &got[0].body;
    assert_eq!(body, &slack_payload(&n), "what is sent is the rendering");

    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(":red_circle: [CRITICAL] FIRING: high_error_rate"),
        "{text}"
    );
    assert!(text.contains("Error rate 7.12% over 5 min"), "{text}");
    // Slack's mrkdwn control characters are escaped.
    assert!(text.contains("feature=chat&lt;&amp;&gt;"), "{text}");

    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(
        blocks[0]["text"]["text"],
        ":red_circle: FIRING: high_error_rate"
    );
    let fields: Vec<&str> = blocks
        .iter()
        .find_map(|b| b["fields"].as_array())
        .expect("a section with fields")
        .iter()
        .map(|f| {
            assert_eq!(f["type"], "mrkdwn");
            f["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        fields,
        [
            "*Severity*\ncritical",
            "*Status*\nfiring",
            "*Value*\n0.0712 (threshold 0.05)",
            "*Group*\nfeature=chat&lt;&amp;&gt;\nmodel=gpt-4o",
            "*Expression*\n`error_rate &gt; 0.05`",
        ]
    );
    let summary = blocks
        .iter()
        .find(|b| b["type"] == "section" && b["text"].is_object())
        .unwrap();
    assert_eq!(summary["text"]["text"], "Error rate 7.12% over 5 min");
    let context = blocks.iter().find(|b| b["type"] == "context").unwrap();
    let context_text = context["elements"][0]["text"].as_str().unwrap();
    assert!(
        context_text.contains("<!date^1700000000^{date_short_pretty} {time}|2023-11-14T22:13:20Z>"),
        "{context_text}"
    );
    let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
    assert_eq!(actions["elements"][0]["type"], "button");
    assert_eq!(
        actions["elements"][0]["url"],
        "https://llmwatch.example.com/alerts/high_error_rate"
    );
}

#[tokio::test]
async fn slack_resolved_and_reminder_without_dashboard() {
    let mut n = alert(Notice::Resolved);
    n.dashboard_url = None;
    let body = slack_payload(&n);
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(":white_check_mark: [CRITICAL] RESOLVED: high_error_rate"),
        "{text}"
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert!(
        blocks.iter().all(|b| b["type"] != "actions"),
        "no link without a dashboard URL"
    );
    let context = blocks.iter().find(|b| b["type"] == "context").unwrap();
    assert!(
        context["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("resolved <!date^1700000600^"),
    );

    let mut n = alert(Notice::Reminder);
    n.severity = Severity::Warning;
    let text = slack_payload(&n)["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with(":warning: [WARNING] REMINDER: high_error_rate"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// PagerDuty

#[tokio::test]
async fn pagerduty_trigger_then_resolve_share_the_dedup_key() {
    let (rx, base) = receiver(vec![]).await;
    let channel = ChannelConfig::Pagerduty {
        routing_key: ROUTING_KEY.into(),
        url: Some(format!("{base}/v2/enqueue")),
    };
    channel.validate("pd").unwrap();
    let client = reqwest::Client::new();
    send(&client, &channel, &alert(Notice::Firing))
        .await
        .unwrap();
    send(&client, &channel, &alert(Notice::Resolved))
        .await
        .unwrap();

    let got = received(&rx);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.path == "/v2/enqueue"));
    let trigger = &got[0].body;
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "llmwatch-00000000deadbeef");
    assert_eq!(trigger["client"], "llmwatch");
    assert_eq!(
        trigger["client_url"],
        "https://llmwatch.example.com/alerts/high_error_rate"
    );
    assert_eq!(
        trigger["links"],
        json!([{"href": "https://llmwatch.example.com/alerts/high_error_rate", "text": "Open in llmwatch"}])
    );
    let payload = &trigger["payload"];
    assert_eq!(
        payload["summary"],
        "high_error_rate: Error rate 7.12% over 5 min (feature=chat<&>, model=gpt-4o)"
    );
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["source"], "llmwatch");
    assert_eq!(ms_of(payload["timestamp"].as_str().unwrap()), T0);
    assert_eq!(payload["component"], "gpt-4o");
    assert_eq!(payload["group"], "chat<&>");
    assert_eq!(payload["class"], "high_error_rate");
    let details = &payload["custom_details"];
    assert_eq!(details["rule"], "high_error_rate");
    assert_eq!(details["expr"], "error_rate > 0.05");
    assert_eq!(details["value"], 0.0712);
    assert_eq!(details["threshold"], 0.05);
    assert_eq!(
        details["group"],
        json!({"feature": "chat<&>", "model": "gpt-4o"})
    );

    let resolve = &got[1].body;
    assert_eq!(
        resolve,
        &json!({
            "routing_key": ROUTING_KEY,
            "event_action": "resolve",
            "dedup_key": "llmwatch-00000000deadbeef",
        })
    );

    // A reminder re-triggers the same incident.
    let reminder = pagerduty_payload(&alert(Notice::Reminder), ROUTING_KEY);
    assert_eq!(reminder["event_action"], "trigger");
    assert_eq!(reminder["dedup_key"], "llmwatch-00000000deadbeef");
}

#[test]
fn pagerduty_summary_is_cut_at_1024_characters_and_severities_map() {
    let mut n = alert(Notice::Firing);
    n.group.clear();
    n.summary = "é".repeat(3000);
    let summary = pagerduty_payload(&n, ROUTING_KEY)["payload"]["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.starts_with("high_error_rate: ééé"));
    assert!(summary.ends_with('…'));

    for (severity, expected) in [
        (Severity::Critical, "critical"),
        (Severity::Warning, "warning"),
        (Severity::Info, "info"),
    ] {
        n.severity = severity;
        assert_eq!(
            pagerduty_payload(&n, ROUTING_KEY)["payload"]["severity"],
            expected
        );
    }
    // No labels to draw on: no component or group, and no links without a dashboard.
    n.dashboard_url = None;
    let event = pagerduty_payload(&n, ROUTING_KEY);
    assert!(event["payload"].get("component").is_none());
    assert!(event["payload"].get("group").is_none());
    assert!(event.get("links").is_none());
    assert!(event.get("client_url").is_none());
}

// ---------------------------------------------------------------------------------------------
// Webhook (Alertmanager v4)

fn is_fingerprint(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[tokio::test]
async fn webhook_sends_alertmanager_v4() {
    let (rx, base) = receiver(vec![]).await;
    let channel = ChannelConfig::Webhook {
        url: format!("{base}/hook?token=s3cr3t"),
    };
    channel.validate("hook").unwrap();
    let client = reqwest::Client::new();
    send(&client, &channel, &alert(Notice::Firing))
        .await
        .unwrap();
    send(&client, &channel, &alert(Notice::Resolved))
        .await
        .unwrap();
    let got = received(&rx);
    assert_eq!(got.len(), 2);

    let firing = &got[0].body;
    assert_eq!(firing["version"], "4");
    assert_eq!(firing["status"], "firing");
    assert_eq!(firing["truncatedAlerts"], 0);
    assert_eq!(firing["receiver"], "llmwatch");
    assert_eq!(firing["groupKey"], "{}:{alertname=\"high_error_rate\"}");
    assert_eq!(
        firing["groupLabels"],
        json!({"alertname": "high_error_rate"})
    );
    assert_eq!(firing["externalURL"], "https://llmwatch.example.com");
    let labels = json!({
        "alertname": "high_error_rate",
        "severity": "critical",
        "feature": "chat<&>",
        "model": "gpt-4o",
    });
    assert_eq!(firing["commonLabels"], labels);
    assert_eq!(firing["alerts"].as_array().unwrap().len(), 1);
    let a = &firing["alerts"][0];
    assert_eq!(a["status"], "firing");
    assert_eq!(a["labels"], labels);
    assert_eq!(a["annotations"]["summary"], "Error rate 7.12% over 5 min");
    assert_eq!(a["annotations"]["expr"], "error_rate > 0.05");
    assert_eq!(a["annotations"]["value"], "0.0712");
    assert_eq!(a["annotations"]["threshold"], "0.05");
    assert_eq!(a["startsAt"], "2023-11-14T22:13:20Z");
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        a["generatorURL"],
        "https://llmwatch.example.com/alerts/high_error_rate"
    );
    let fp = a["fingerprint"].as_str().unwrap();
    assert!(is_fingerprint(fp), "{fp}");

    let resolved = &got[1].body;
    assert_eq!(resolved["status"], "resolved");
    let r = &resolved["alerts"][0];
    assert_eq!(r["status"], "resolved");
    assert_eq!(r["startsAt"], "2023-11-14T22:13:20Z");
    assert_eq!(r["endsAt"], "2023-11-14T22:23:20Z");
    assert_eq!(r["fingerprint"], fp, "the same alert keeps its fingerprint");
}

#[test]
fn alertmanager_groups_fingerprints_and_times() {
    let firing = alert(Notice::Firing);
    let mut other = alert(Notice::Resolved);
    other.dedup_key = "llmwatch-0000000000c0ffee".into();
    other.group.insert("model".into(), "claude-sonnet".into());
    other.starts_ms = T0 + 1234;
    let body = alertmanager_payload(&[firing.clone(), other.clone()], None);
    assert_eq!(body["status"], "firing", "firing while any alert fires");
    assert_eq!(body["externalURL"], "");
    assert_eq!(
        body["commonLabels"],
        json!({"alertname": "high_error_rate", "severity": "critical", "feature": "chat<&>"})
    );
    assert_eq!(
        body["commonAnnotations"],
        json!({
            "summary": "Error rate 7.12% over 5 min",
            "expr": "error_rate > 0.05",
            "value": "0.0712",
            "threshold": "0.05",
        })
    );
    let alerts = body["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[1]["labels"]["model"], "claude-sonnet");
    assert_eq!(alerts[1]["startsAt"], "2023-11-14T22:13:21.234Z");
    let (fp0, fp1) = (
        alerts[0]["fingerprint"].as_str().unwrap(),
        alerts[1]["fingerprint"].as_str().unwrap(),
    );
    assert!(is_fingerprint(fp0) && is_fingerprint(fp1));
    assert_ne!(fp0, fp1, "another dedup key, another fingerprint");
    // Stable: the same dedup key gives the same fingerprint whatever else changes.
    let mut same_key = other.clone();
    same_key.notice = Notice::Firing;
    same_key.summary = "something else".into();
    assert_eq!(
        alertmanager_payload(&[same_key], None)["alerts"][0]["fingerprint"],
        fp1
    );

    let body = alertmanager_payload(&[other], Some("http://llmwatch:8080"));
    assert_eq!(body["status"], "resolved");
    assert_eq!(body["externalURL"], "http://llmwatch:8080");

    // No value or threshold: no such annotations; a group label cannot hide the rule's name.
    let mut bare = firing;
    bare.value = None;
    bare.threshold = None;
    bare.group.insert("alertname".into(), "spoof".into());
    let a = &alertmanager_payload(&[bare], None)["alerts"][0];
    assert_eq!(a["labels"]["alertname"], "high_error_rate");
    assert!(a["annotations"].get("value").is_none());
    assert!(a["annotations"].get("threshold").is_none());
}

// ---------------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn a_500_is_retried_until_success() {
    let (rx, base) = receiver(vec![
        (500, vec![], "boom".into()),
        (503, vec![], "busy".into()),
    ])
    .await;
    let channel = ChannelConfig::Webhook {
        url: format!("{base}/hook"),
    };
    let (last, log) = deliver_logged(&channel, &alert(Notice::Firing), fast(5)).await;
    let summary: Vec<(u32, bool, Option<u16>)> =
        log.iter().map(|a| (a.attempt, a.ok, a.status)).collect();
    assert_eq!(
        summary,
        [
            (1, false, Some(500)),
            (2, false, Some(503)),
            (3, true, Some(200))
        ]
    );
    assert_eq!(log[0].error.as_deref(), Some("HTTP 500: boom"));
    assert_eq!(last, log[2]);
    assert_eq!(last.error, None);
    assert!(log.iter().all(|a| a.duration_ms >= 0.0 && a.at_ms > T0));
    assert_eq!(received(&rx).len(), 3);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let (rx, base) = receiver(vec![(
        429,
        vec![("retry-after", "1".into())],
        "slow down".into(),
    )])
    .await;
    let channel = ChannelConfig::Slack {
        webhook_url: format!("{base}/services/T/B/{SLACK_TOKEN}"),
    };
    let policy = RetryPolicy {
        max_attempts: 3,
        base_ms: 5,
        max_ms: 5_000,
    };
    let (last, log) = deliver_logged(&channel, &alert(Notice::Firing), policy).await;
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].ok, log[0].status), (false, Some(429)));
    assert!(last.ok);
    let got = received(&rx);
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(990), "retried after {gap:?}");
    assert!(
        gap < Duration::from_millis(3000),
        "waited too long: {gap:?}"
    );
}

#[tokio::test]
async fn a_400_is_final() {
    let (rx, base) = receiver(vec![(400, vec![], "invalid_payload".into())]).await;
    let channel = ChannelConfig::Slack {
        webhook_url: format!("{base}/services/T/B/{SLACK_TOKEN}"),
    };
    let (last, log) = deliver_logged(&channel, &alert(Notice::Firing), fast(5)).await;
    assert_eq!(log.len(), 1);
    assert_eq!(last.attempt, 1);
    assert!(!last.ok);
    assert_eq!(last.status, Some(400));
    assert_eq!(last.error.as_deref(), Some("HTTP 400: invalid_payload"));
    assert_eq!(received(&rx).len(), 1);
}

#[tokio::test]
async fn connection_refused_is_retried_up_to_max_attempts() {
    // A port nothing listens on: bind, note it, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let channel = ChannelConfig::Slack {
        webhook_url: format!("http://127.0.0.1:{port}/services/T/B/{SLACK_TOKEN}"),
    };
    let (last, log) = deliver_logged(&channel, &alert(Notice::Firing), fast(3)).await;
    assert_eq!(log.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(log.iter().all(|a| !a.ok && a.status.is_none()));
    let error = last.error.unwrap();
    assert!(!error.contains(SLACK_TOKEN), "{error}");
    assert!(!error.contains("/services/"), "{error}");
    assert!(error.to_lowercase().contains("connect"), "{error}");
}

#[tokio::test]
async fn send_errors_classify_and_never_show_secrets() {
    // The server echoes what it got (as some do in error bodies): the secret comes back.
    let echo = format!("no_service for /services/T/B/{SLACK_TOKEN} key {ROUTING_KEY}");
    let (_rx, base) = receiver(vec![
        (404, vec![], echo.clone()),
        (404, vec![], echo.clone()),
    ])
    .await;
    let client = reqwest::Client::new();
    let slack = ChannelConfig::Slack {
        webhook_url: format!("{base}/services/T/B/{SLACK_TOKEN}"),
    };
    let err = send(&client, &slack, &alert(Notice::Firing))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Status { status: 404, .. }));
    assert!(!err.retryable());
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(SLACK_TOKEN), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
    let pd = ChannelConfig::Pagerduty {
        routing_key: ROUTING_KEY.into(),
        url: Some(format!("{base}/v2/enqueue")),
    };
    let err = send(&client, &pd, &alert(Notice::Firing))
        .await
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains(ROUTING_KEY));

    for status in [429, 500, 502, 503] {
        let e = SendError::Status {
            status,
            retry_after: None,
            body: String::new(),
        };
        assert!(e.retryable(), "{status}");
    }
    for status in [400, 401, 403, 404, 410, 413] {
        let e = SendError::Status {
            status,
            retry_after: None,
            body: String::new(),
        };
        assert!(!e.retryable(), "{status}");
    }
}

#[tokio::test]
async fn dashboard_has_nothing_to_send() {
    let (last, log) =
        deliver_logged(&ChannelConfig::Dashboard, &alert(Notice::Firing), fast(3)).await;
    assert_eq!(log.len(), 1);
    assert!(last.ok);
    assert_eq!(last.status, None);
}

// ---------------------------------------------------------------------------------------------
// Configuration

fn parse(toml_text: &str) -> Result<BTreeMap<String, ChannelConfig>, toml::de::Error> {
    #[derive(serde::Deserialize)]
    struct Doc {
        channels: BTreeMap<String, ChannelConfig>,
    }
    toml::from_str::<Doc>(toml_text).map(|d| d.channels)
}

#[test]
fn channel_tables_parse_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    // Any certificate-shaped PEM will do for validation: it is read, not verified here.
    std::fs::write(&ca, TEST_CERT_PEM).unwrap();
    let channels = parse(&format!(
        r#"
[channels.ops]
type = "slack"
webhook_url = "https://hooks.slack.com/services/T0/B0/{SLACK_TOKEN}"
[channels.oncall]
type = "pagerduty"
routing_key = "{ROUTING_KEY}"
[channels.eu]
type = "pagerduty"
routing_key = "{ROUTING_KEY}"
url = "https://events.eu.pagerduty.com/v2/enqueue"
[channels.hook]
type = "webhook"
url = "http://127.0.0.1:9093/hook"
[channels.mail]
type = "email"
smtp_url = "smtps://alerts:hunter2hunter2@mail.example.com"
from = "llmwatch <alerts@example.com>"
to = ["oncall@example.com", "Team <team@example.com>"]
ca_file = "{}"
[channels.ui]
type = "dashboard"
"#,
        ca.display()
    ))
    .unwrap();
    let kinds: Vec<(&str, &str)> = channels
        .iter()
        .map(|(name, c)| (name.as_str(), c.kind()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("eu", "pagerduty"),
            ("hook", "webhook"),
            ("mail", "email"),
            ("oncall", "pagerduty"),
            ("ops", "slack"),
            ("ui", "dashboard"),
        ]
    );
    for (name, channel) in &channels {
        channel
            .validate(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let debug = format!("{channel:?}");
        for secret in [SLACK_TOKEN, ROUTING_KEY, "hunter2hunter2"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }
    let mail = format!("{:?}", channels["mail"]);
    assert!(
        mail.contains("alerts:[redacted]@mail.example.com"),
        "{mail}"
    );

    assert!(parse("[channels.x]\ntype = \"sms\"\nnumber = \"1\"").is_err());
    assert!(
        parse("[channels.x]\ntype = \"slack\"\nwebhook_url = \"https://a\"\nchannel = \"#ops\"")
            .is_err()
    );
    assert!(parse("[channels.x]\ntype = \"webhook\"").is_err());
}

#[test]
fn validation_names_the_field_and_hides_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let cases: Vec<(ChannelConfig, &str)> = vec![
        (
            ChannelConfig::Slack {
                webhook_url: format!("hooks.slack.com/{SLACK_TOKEN}"),
            },
            "channels.c.webhook_url: ",
        ),
        (
            ChannelConfig::Slack {
                webhook_url: format!("ftp://hooks.slack.com/{SLACK_TOKEN}"),
            },
            "channels.c.webhook_url: ",
        ),
        (
            ChannelConfig::Pagerduty {
                routing_key: " ".into(),
                url: None,
            },
            "channels.c.routing_key: ",
        ),
        (
            ChannelConfig::Pagerduty {
                routing_key: ROUTING_KEY.into(),
                url: Some("events.pagerduty.com".into()),
            },
            "channels.c.url: ",
        ),
        (
            ChannelConfig::Webhook {
                url: format!("//{SLACK_TOKEN}"),
            },
            "channels.c.url: ",
        ),
        (
            ChannelConfig::Email {
                smtp_url: "imap://u:hunter2hunter2@mail.example.com".into(),
                from: "a@example.com".into(),
                to: vec!["b@example.com".into()],
                ca_file: None,
            },
            "channels.c.smtp_url: ",
        ),
        (
            ChannelConfig::Email {
                smtp_url: "smtp://u:hunter2hunter2@mail.example.com?tls=none".into(),
                from: "a@example.com".into(),
                to: vec!["b@example.com".into()],
                ca_file: None,
            },
            "channels.c.smtp_url: ",
        ),
        (
            ChannelConfig::Email {
                smtp_url: "smtp://mail.example.com".into(),
                from: "not an address".into(),
                to: vec!["b@example.com".into()],
                ca_file: None,
            },
            "channels.c.from: ",
        ),
        (
            ChannelConfig::Email {
                smtp_url: "smtp://mail.example.com".into(),
                from: "a@example.com".into(),
                to: vec![],
                ca_file: None,
            },
            "channels.c.to: ",
        ),
        (
            ChannelConfig::Email {
                smtp_url: "smtp://mail.example.com".into(),
                from: "a@example.com".into(),
                to: vec!["b@example.com".into(), "@@".into()],
                ca_file: None,
            },
            "channels.c.to: ",
        ),
        (
            ChannelConfig::Email {
                smtp_url: "smtp://mail.example.com".into(),
                from: "a@example.com".into(),
                to: vec!["b@example.com".into()],
                ca_file: Some("/nonexistent/ca.pem".into()),
            },
            "channels.c.ca_file: ",
        ),
        (
            ChannelConfig::Email {
                smtp_url: "smtp://mail.example.com".into(),
                from: "a@example.com".into(),
                to: vec!["b@example.com".into()],
                ca_file: Some(not_pem.clone()),
            },
            "channels.c.ca_file: ",
        ),
    ];
    for (channel, prefix) in cases {
        let err = channel
            .validate("c")
            .err()
            .unwrap_or_else(|| panic!("{channel:?} accepted"));
        assert!(err.starts_with(prefix), "{err}");
        for secret in [SLACK_TOKEN, "hunter2hunter2"] {
            assert!(!err.contains(secret), "{err}");
        }
    }
    ChannelConfig::Dashboard.validate("c").unwrap();
}

#[test]
fn the_test_notification() {
    let n = test_notification("ops", T0, Some("http://localhost:8080/alerts"));
    assert_eq!(n.rule, "llmwatch test");
    assert_eq!(n.severity, Severity::Info);
    assert_eq!(n.notice, Notice::Firing);
    assert_eq!(
        n.group,
        BTreeMap::from([("channel".to_owned(), "ops".to_owned())])
    );
    assert_eq!((n.starts_ms, n.at_ms, n.ends_ms), (T0, T0, None));
    assert_eq!(
        n.dashboard_url.as_deref(),
        Some("http://localhost:8080/alerts")
    );
    assert_ne!(
        n.dedup_key,
        test_notification("ops", T0 + 1, None).dedup_key
    );
}

// ---------------------------------------------------------------------------------------------
// E-mail: the rendering, and the SMTP dialogue against a scripted server (plain text; TLS and
// AUTH against a real server are in interop/email.sh).

#[test]
fn email_subject_text_and_escaped_html() {
    let mut n = alert(Notice::Firing);
    n.summary = "Error rate <b>7%</b> & rising".into();
    let (subject, text, html) = email_message(&n);
    assert_eq!(
        subject,
        "[llmwatch CRITICAL] FIRING: high_error_rate — Error rate <b>7%</b> & rising"
    );
    assert!(
        text.starts_with("FIRING: high_error_rate (critical)\n\nError rate <b>7%</b> & rising\n")
    );
    assert!(
        text.contains("Value:      0.0712 (threshold 0.05)\n"),
        "{text}"
    );
    assert!(text.contains("Expression: error_rate > 0.05\n"), "{text}");
    assert!(
        text.contains("Group:      feature=chat<&>, model=gpt-4o\n"),
        "{text}"
    );
    assert!(
        text.contains("Started:    2023-11-14T22:13:20Z\n"),
        "{text}"
    );
    assert!(
        html.contains("<p>Error rate &lt;b&gt;7%&lt;/b&gt; &amp; rising</p>"),
        "{html}"
    );
    assert!(html.contains("<code>error_rate &gt; 0.05</code>"), "{html}");
    assert!(
        html.contains("feature=chat&lt;&amp;&gt;, model=gpt-4o"),
        "{html}"
    );
    assert!(!html.contains("<b>"), "{html}");

    let (subject, text, _) = email_message(&alert(Notice::Resolved));
    assert_eq!(
        subject,
        "[llmwatch CRITICAL] RESOLVED: high_error_rate — Error rate 7.12% over 5 min"
    );
    assert!(
        text.contains("Resolved:   2023-11-14T22:23:20Z\n"),
        "{text}"
    );
    // Line breaks never reach the subject header.
    let mut n = alert(Notice::Reminder);
    n.summary = "two\r\nlines".into();
    assert_eq!(
        email_message(&n).0,
        "[llmwatch CRITICAL] REMINDER: high_error_rate — two lines"
    );
}

/// A minimal SMTP server: answers MAIL FROM with `mail_reply` and records each message.
async fn smtp_server(mail_replies: Vec<&'static str>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let messages = Arc::new(Mutex::new(Vec::new()));
    let replies = Arc::new(Mutex::new(VecDeque::from(mail_replies)));
    let sink = messages.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let sink = sink.clone();
            let replies = replies.clone();
            tokio::spawn(async move {
                write.write_all(b"220 test ESMTP\r\n").await?;
                while let Some(line) = lines.next_line().await? {
                    let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                    let reply = match verb.as_str() {
                        "EHLO" | "HELO" => "250 test".to_owned(),
                        "MAIL" => replies
                            .lock()
                            .unwrap()
                            .pop_front()
                            .unwrap_or("250 ok")
                            .to_owned(),
                        "RCPT" => "250 ok".to_owned(),
                        "DATA" => {
                            write.write_all(b"354 go ahead\r\n").await?;
                            let mut data = String::new();
                            while let Some(l) = lines.next_line().await? {
                                if l == "." {
                                    break;
                                }
                                data.push_str(&l);
                                data.push('\n');
                            }
                            sink.lock().unwrap().push(data);
                            "250 queued".to_owned()
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await?;
                            break;
                        }
                        _ => "250 ok".to_owned(),
                    };
                    write.write_all(format!("{reply}\r\n").as_bytes()).await?;
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    (port, messages)
}

fn mail_channel(port: u16) -> ChannelConfig {
    ChannelConfig::Email {
        smtp_url: format!("smtp://127.0.0.1:{port}?tls=none"),
        from: "llmwatch <alerts@example.com>".into(),
        to: vec!["oncall@example.com".into()],
        ca_file: None,
    }
}

#[tokio::test]
async fn smtp_transient_replies_are_retried_permanent_are_final() {
    let (port, messages) = smtp_server(vec!["451 4.3.0 try later"]).await;
    let channel = mail_channel(port);
    channel.validate("mail").unwrap();
    let (last, log) = deliver_logged(&channel, &alert(Notice::Firing), fast(3)).await;
    assert_eq!(
        log.iter().map(|a| (a.ok, a.status)).collect::<Vec<_>>(),
        [(false, Some(451)), (true, Some(250))]
    );
    assert!(last.ok);
    let sent = messages.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let message = &sent[0];
    assert!(message.contains("Subject: "), "{message}");
    assert!(message.contains("multipart/alternative"), "{message}");
    assert!(message.contains("text/plain"), "{message}");
    assert!(message.contains("text/html"), "{message}");
    assert!(message.contains("To: oncall@example.com"), "{message}");
    assert!(message.contains("Message-ID: <"), "{message}");
    assert!(message.contains("Date: "), "{message}");
    assert!(
        message.contains("References: <llmwatch-00000000deadbeef@llmwatch>"),
        "{message}"
    );

    let (port, messages) = smtp_server(vec!["550 5.7.1 relaying denied"]).await;
    let (last, log) = deliver_logged(&mail_channel(port), &alert(Notice::Firing), fast(3)).await;
    assert_eq!(log.len(), 1);
    assert_eq!((last.ok, last.status), (false, Some(550)));
    assert!(last.error.unwrap().contains("relaying denied"));
    assert!(messages.lock().unwrap().is_empty());
}

#[tokio::test]
async fn starttls_required_fails_against_a_server_without_it() {
    // The scripted server offers no STARTTLS: a required upgrade must fail before AUTH, and a
    // configuration like that does not fix itself (final).
    let (port, messages) = smtp_server(vec![]).await;
    let channel = ChannelConfig::Email {
        smtp_url: format!("smtp://alerts:hunter2hunter2@127.0.0.1:{port}"),
        from: "alerts@example.com".into(),
        to: vec!["oncall@example.com".into()],
        ca_file: None,
    };
    channel.validate("mail").unwrap();
    let (last, log) = deliver_logged(&channel, &alert(Notice::Firing), fast(3)).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(!last.ok);
    assert!(!last.error.unwrap().contains("hunter2hunter2"));
    assert!(messages.lock().unwrap().is_empty());
}

/// A self-signed certificate for CN=localhost (only parsed here, never used for a connection).
const TEST_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBfjCCASOgAwIBAgIUOqMoa03hqix/TewPaTQFB3amAuowCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MB4XDTI2MTEyNTAxMDQ1MVoXDTM2MTEyMjAx
MDQ1MVowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEcbFCSYxQfCUsHfLYOLckmf/Aw2c4a53nZkAVldWXfWbhqdHEjOoHVetv
hwlp95KdObjmk2NcoqkUkh/Hzyep96NTMFEwHQYDVR0OBBYEFAOlX/V2ydBoVrVd
NCjBg8lcCnU4MB8GA1UdIwQYMBaAFAOlX/V2ydBoVrVdNCjBg8lcCnU4MA8GA1Ud
EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAMaNwdTi0l48I7QvE6HdkPLj
uI8ZO4S2uZ6uQVxVStu4AiEAxYVCCe/0Fuchi5bmFB3BM+2DBxkaPB1M0DV6ZhzB
jPU=
-----END CERTIFICATE-----
";
