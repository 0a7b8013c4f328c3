//! The alert engine with a clock the test moves: rules over real rollups in a real store,
//! notifications to a local webhook receiver, the state machine through pending, firing,
//! cooldown reminders and resolve, a restart in the middle, two engines on one store, silences,
//! built-in budget alerts, and the HTTP API.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::{Json, Router, routing::post};
use llmwatch::alerting::engine::Engine;
use llmwatch::config::{Config, Durability, RawConfig};
use llmwatch::core::pricing::PriceTable;
use llmwatch::core::record::parse_record;
use llmwatch::core::rollup::PricedRecord;
use llmwatch::store::sqlite::SqliteStore;
use llmwatch::store::{AlertStore, DEFAULT_PROJECT, Silence, Store};
use serde_json::{Value, json};

const MIN: i64 = 60_000;
const T0: i64 = 1_778_400_000_000; // 2026-05-10T08:00:00Z

/// A webhook receiver that keeps every body it gets.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&got);
    let app = Router::new().route(
        "/alerts",
        post(move |Json(body): Json<Value>| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

fn config(hook: &str, rules: &str) -> Arc<Config> {
    let text = format!(
        "dashboard_url = \"http://dash.example\"\n[channels.hook]\ntype = \"webhook\"\nurl = \"{hook}\"\n\
         [routing]\ncritical = [\"hook\", \"dashboard\"]\nwarning = [\"hook\"]\ninfo = [\"dashboard\"]\n{rules}"
    );
    Arc::new(RawConfig::parse(&text).unwrap().validate().unwrap())
}

struct Rig {
    store: Arc<SqliteStore>,
    now: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(SqliteStore::open(&dir.path().join("db"), Durability::Normal).unwrap());
        Rig {
            store,
            now: Arc::new(AtomicI64::new(T0)),
            _dir: dir,
        }
    }

    fn engine(&self, config: &Arc<Config>, holder: &str) -> Engine {
        let now = Arc::clone(&self.now);
        Engine::new(
            Arc::clone(config),
            self.store.clone(),
            self.store.clone(),
            Arc::new(move || now.load(Ordering::SeqCst)),
            holder.into(),
        )
    }

    fn set(&self, t: i64) {
        self.now.store(t, Ordering::SeqCst);
    }

    /// `n` requests in the minute before `t`, `errors` of them failed.
    async fn traffic(&self, t: i64, n: usize, errors: usize, model: &str) {
        let prices = PriceTable::builtin();
        let batch: Vec<PricedRecord> = (0..n)
            .map(|i| {
                let v = json!({"request_id": format!("{model}-{t}-{i}"), "timestamp": t - 1 - i as i64,
                    "model": model, "input_tokens": 1000, "output_tokens": 100, "duration_ms": 500,
                    "status": if i < errors { "error" } else { "ok" }});
                PricedRecord::new(parse_record(&v, t).unwrap(), &prices)
            })
            .collect();
        self.store
            .write(DEFAULT_PROJECT, Arc::new(batch))
            .await
            .unwrap();
    }
}

async fn step(engine: &mut Engine) -> Vec<(String, String)> {
    let summary = engine.evaluate_once().await.unwrap();
    for d in summary.deliveries {
        d.await.unwrap();
    }
    summary
        .notifications
        .iter()
        .map(|n| (n.rule.clone(), format!("{:?}", n.notice).to_lowercase()))
        .collect()
}

const ERROR_RULE: &str = "[[alerts]]\nname = \"errors\"\nexpr = \"error_rate > 5%\"\nseverity = \"critical\"\ncooldown = \"15m\"\n";

#[tokio::test]
async fn fires_once_reminds_after_the_cooldown_resolves_once_and_survives_a_restart() {
    let (hook, got) = receiver().await;
    let config = config(&hook, ERROR_RULE);
    let rig = Rig::new();
    let mut engine = rig.engine(&config, "a");
    rig.traffic(T0, 100, 10, "gpt-4o").await; // 10% errors in the last 5 minutes
    rig.set(T0);
    assert_eq!(
        step(&mut engine).await,
        [("errors".into(), "firing".into())]
    );
    {
        let bodies = got.lock().unwrap();
        assert_eq!(bodies.len(), 1);
        let alert = &bodies[0]["alerts"][0];
        assert_eq!(bodies[0]["version"], "4");
        assert_eq!(bodies[0]["status"], "firing");
        assert_eq!(alert["labels"]["alertname"], "errors");
        assert_eq!(alert["labels"]["severity"], "critical");
        assert!(
            (alert["annotations"]["value"]
                .as_str()
                .unwrap_or("")
                .starts_with("0.1")
                || alert["annotations"]["value"] == json!(0.1)),
            "{alert}"
        );
    }
    // Still failing a minute later: no new notification (cooldown 15m).
    rig.traffic(T0 + MIN, 100, 10, "gpt-4o").await;
    rig.set(T0 + MIN);
    assert_eq!(step(&mut engine).await, []);

    // Restart in the middle: a new engine on the same store does not re-page.
    drop(engine);
    let mut engine = rig.engine(&config, "a-restarted");
    rig.traffic(T0 + 2 * MIN, 100, 10, "gpt-4o").await;
    rig.set(T0 + 2 * MIN);
    // The old instance's lease (ttl 3 x 30 s) has expired by now? Not yet: wait it out.
    rig.set(T0 + 2 * MIN + 91_000);
    rig.traffic(T0 + 2 * MIN + 91_000, 100, 10, "gpt-4o").await;
    assert_eq!(step(&mut engine).await, []);

    // 15 minutes after the first notification, still firing: one reminder.
    rig.set(T0 + 15 * MIN);
    rig.traffic(T0 + 15 * MIN, 100, 10, "gpt-4o").await;
    assert_eq!(
        step(&mut engine).await,
        [("errors".into(), "reminder".into())]
    );

    // Healthy traffic only in the window: resolved, once.
    rig.set(T0 + 25 * MIN);
    rig.traffic(T0 + 25 * MIN, 100, 0, "gpt-4o").await;
    assert_eq!(
        step(&mut engine).await,
        [("errors".into(), "resolved".into())]
    );
    rig.set(T0 + 26 * MIN);
    rig.traffic(T0 + 26 * MIN, 100, 0, "gpt-4o").await;
    assert_eq!(step(&mut engine).await, []);

    let bodies = got.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3, "firing, reminder, resolved: {bodies:?}");
    assert_eq!(bodies[2]["status"], "resolved");
    assert_ne!(bodies[2]["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    // Every attempt is logged; the dashboard copy too.
    let deliveries = rig
        .store
        .deliveries(
            DEFAULT_PROJECT,
            llmwatch::core::time::Range::new(0, i64::MAX),
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        deliveries
            .iter()
            .filter(|d| d.channel == "hook" && d.attempt.ok)
            .count(),
        3
    );
    assert_eq!(
        deliveries
            .iter()
            .filter(|d| d.channel == "dashboard")
            .count(),
        3
    );
}

#[tokio::test]
async fn two_engines_on_one_store_notify_once() {
    let (hook, got) = receiver().await;
    let config = config(&hook, ERROR_RULE);
    let rig = Rig::new();
    let mut a = rig.engine(&config, "a");
    let mut b = rig.engine(&config, "b");
    rig.traffic(T0, 100, 50, "gpt-4o").await;
    rig.set(T0);
    let (na, nb) = (step(&mut a).await, step(&mut b).await);
    assert_eq!(na.len() + nb.len(), 1, "{na:?} {nb:?}");
    rig.set(T0 + 30_000);
    let (na, nb) = (step(&mut b).await, step(&mut a).await);
    assert_eq!(na.len() + nb.len(), 0);
    assert_eq!(got.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn grouped_rules_alert_per_group_and_silences_mute_without_losing_history() {
    let (hook, got) = receiver().await;
    let rules = "[[alerts]]\nname = \"errors by model\"\nexpr = \"error_rate[5m] > 0.05\"\n\
                 severity = \"warning\"\ngroup_by = [\"model\"]\n";
    let config = config(&hook, rules);
    let rig = Rig::new();
    let mut engine = rig.engine(&config, "a");
    rig.traffic(T0, 100, 20, "gpt-4o").await;
    rig.traffic(T0, 100, 0, "gpt-4o-mini").await;
    rig.traffic(T0, 100, 30, "claude-3-5-haiku").await;
    rig.store
        .add_silence(
            DEFAULT_PROJECT,
            Silence {
                id: 0,
                matchers: [("model".to_string(), "claude-3-5-haiku".to_string())].into(),
                until_ms: T0 + 3_600_000,
                comment: Some("known incident".into()),
                created_ms: T0,
            },
        )
        .await
        .unwrap();
    rig.set(T0);
    let fired = step(&mut engine).await;
    assert_eq!(fired.len(), 2, "{fired:?}");
    let bodies = got.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "the silenced one is not sent");
    assert_eq!(bodies[0]["alerts"][0]["labels"]["model"], "gpt-4o");
    let history = rig
        .store
        .alert_history(
            DEFAULT_PROJECT,
            llmwatch::core::time::Range::new(0, i64::MAX),
            10,
        )
        .await
        .unwrap();
    let silenced: Vec<_> = history.iter().filter(|h| h.silenced_by.is_some()).collect();
    assert_eq!(silenced.len(), 1);
    assert_eq!(silenced[0].notification.group["model"], "claude-3-5-haiku");
}

#[tokio::test]
async fn for_keeps_an_alert_pending_and_budgets_alert_by_themselves() {
    let (hook, got) = receiver().await;
    // 100 requests of gpt-4o at 1000 in / 100 out: $0.0035 each, $0.35 in all.
    let rules = "[[budgets]]\nname = \"daily\"\nperiod = \"day\"\nlimit_usd = 0.3\n\
                 [[alerts]]\nname = \"slow\"\nexpr = \"p99_latency > 100ms for 10m\"\nseverity = \"warning\"\n";
    let config = config(&hook, rules);
    let rig = Rig::new();
    let mut engine = rig.engine(&config, "a");
    rig.traffic(T0, 100, 0, "gpt-4o").await;
    rig.set(T0);
    let mut fired = step(&mut engine).await;
    fired.sort();
    // Exceeded ($0.35 > $0.3): critical; 80%: warning; projected: warning. Latency: pending.
    assert_eq!(
        fired,
        [
            ("budget daily exceeded".into(), "firing".into()),
            ("budget daily projected".into(), "firing".into()),
            ("budget daily warning".into(), "firing".into()),
        ]
    );
    rig.set(T0 + 5 * MIN);
    rig.traffic(T0 + 5 * MIN, 10, 0, "gpt-4o").await;
    assert_eq!(step(&mut engine).await, []);
    rig.set(T0 + 10 * MIN);
    rig.traffic(T0 + 10 * MIN, 10, 0, "gpt-4o").await;
    assert_eq!(step(&mut engine).await, [("slow".into(), "firing".into())]);
    let states = rig.store.alert_states(DEFAULT_PROJECT).await.unwrap();
    let slow = states.iter().find(|s| s.rule == "slow").unwrap();
    // Every request took 500 ms: the sketch's p99 is within 1% of it.
    let v = slow.value.unwrap();
    assert!((v - 500.0).abs() <= 5.0, "{v}");
    assert!(got.lock().unwrap().len() >= 3);
}

mod common;

#[tokio::test]
async fn the_api_lists_active_alerts_history_rules_and_manages_silences() {
    let (hook, _got) = receiver().await;
    let toml = format!(
        "eval_interval = \"1s\"\n[channels.hook]\ntype = \"webhook\"\nurl = \"{hook}\"\n{ERROR_RULE}"
    );
    let server = common::TestServer::start(&toml, T0).await;
    let events: Vec<String> = (0..50)
        .map(|i| {
            json!({"request_id": format!("e{i}"), "timestamp": T0 - 1000 - i, "model": "gpt-4o",
                   "input_tokens": 10, "output_tokens": 5, "status": if i < 10 { "error" } else { "ok" }})
            .to_string()
        })
        .collect();
    let (status, _) = server.post_events(events.join("\n")).await;
    assert_eq!(status, 200);
    // The engine evaluates every second: wait (not a timing assertion) for the alert.
    let mut alerts = Value::Null;
    for _ in 0..100 {
        let (_, a) = server.get("/api/v1/alerts").await;
        if a["alerts"].as_array().is_some_and(|l| !l.is_empty()) {
            alerts = a;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let first = &alerts["alerts"][0];
    assert_eq!(first["rule"], "errors", "{alerts}");
    assert_eq!(first["state"], "firing");
    assert_eq!(first["severity"], "critical");
    assert!((first["value"].as_f64().unwrap() - 0.2).abs() < 1e-9);
    assert_eq!(first["threshold"], 0.05);

    let (_, h) = server.get("/api/v1/alerts/history").await;
    assert_eq!(h["history"][0]["notice"], "firing", "{h}");
    assert_eq!(h["history"][0]["rule"], "errors");
    let (_, r) = server.get("/api/v1/alerts/rules").await;
    let names: Vec<&str> = r["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"errors") && names.contains(&"quality escalation"),
        "{r}"
    );
    assert_eq!(r["rules"][0]["expr"], "error_rate[5m] > 0.05");

    let client = reqwest::Client::new();
    let post = |body: Value| {
        let client = client.clone();
        let url = format!("{}/api/v1/silences", server.url);
        async move {
            let resp = client.post(url).json(&body).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = post(
        json!({"matchers": {"alertname": "errors"}, "until": T0 + 3_600_000, "comment": "deploy"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_i64().unwrap();
    let (status, body) = post(json!({"matchers": {}, "until": T0 + 3_600_000})).await;
    assert_eq!((status, &body["error"]["field"]), (400, &json!("matchers")));
    let (status, body) = post(json!({"matchers": {"alertname": "x"}, "until": T0 - 1})).await;
    assert_eq!((status, &body["error"]["field"]), (400, &json!("until")));
    let (_, list) = server.get("/api/v1/silences").await;
    assert_eq!(list["silences"][0]["active"], true);
    let resp = client
        .delete(format!("{}/api/v1/silences/{id}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let resp = client
        .delete(format!("{}/api/v1/silences/{id}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    server.stop().await;
}

#[tokio::test]
async fn anomaly_rules_fire_on_a_jump_against_their_own_baseline_after_warm_up() {
    let (hook, _got) = receiver().await;
    let rules = "[[alerts]]\nname = \"cost anomaly\"\nexpr = \"anomaly(cost[1h])\"\nseverity = \"warning\"\n";
    let config = config(&hook, rules);
    let rig = Rig::new();
    let mut engine = rig.engine(&config, "a");
    let hour = 3_600_000;
    // Twelve quiet hours of 10 to 14 requests (warm-up is 10 evaluations): nothing fires.
    for h in 0..12 {
        let t = T0 + h * hour;
        rig.traffic(t, 10 + (h as usize % 5), 0, "gpt-4o").await;
        rig.set(t);
        assert_eq!(step(&mut engine).await, [], "hour {h}");
    }
    // The bill triples: 40 requests in the hour.
    let t = T0 + 12 * hour;
    rig.traffic(t, 40, 0, "gpt-4o").await;
    rig.set(t);
    assert_eq!(
        step(&mut engine).await,
        [("cost anomaly".into(), "firing".into())]
    );
    let states = rig.store.alert_states(DEFAULT_PROJECT).await.unwrap();
    let z = states[0].value.unwrap();
    assert!(z > 4.0, "z-score {z}");
}

#[tokio::test]
async fn a_notification_recorded_but_never_delivered_goes_out_when_an_engine_takes_over() {
    use llmwatch::core::alert::{Notice, Notification, Severity};
    use llmwatch::store::HistoryEntry;
    let (hook, got) = receiver().await;
    let config = config(&hook, ERROR_RULE);
    let rig = Rig::new();
    // What a crash between the durable record and the delivery leaves behind.
    let n = Notification {
        dedup_key: "llmwatch-0000000000000001".into(),
        rule: "errors".into(),
        severity: Severity::Critical,
        notice: Notice::Firing,
        group: Default::default(),
        summary: "errors: 0.2 > 0.05".into(),
        expr: "error_rate[5m] > 0.05".into(),
        value: Some(0.2),
        threshold: Some(0.05),
        starts_ms: T0 - MIN,
        ends_ms: None,
        at_ms: T0 - MIN,
        dashboard_url: None,
    };
    let entry = HistoryEntry {
        id: 0,
        notification: n,
        channels: vec!["hook".into()],
        silenced_by: None,
    };
    rig.store
        .record_evaluation(DEFAULT_PROJECT, vec![], vec![entry.clone()], vec![])
        .await
        .unwrap();
    // A silenced one stays unsent.
    let mut muted = entry.clone();
    muted.silenced_by = Some(1);
    rig.store
        .record_evaluation(DEFAULT_PROJECT, vec![], vec![muted], vec![])
        .await
        .unwrap();
    rig.set(T0);
    let mut engine = rig.engine(&config, "restarted");
    assert_eq!(step(&mut engine).await, []);
    assert_eq!(got.lock().unwrap().len(), 1, "redelivered once");
    // Logged now: the next takeover does not send it again.
    let mut other = rig.engine(&config, "other");
    rig.set(T0 + 200_000);
    assert_eq!(step(&mut other).await, []);
    assert_eq!(got.lock().unwrap().len(), 1);
}
