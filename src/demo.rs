//! `llmwatch demo`: a fresh database filled with two weeks of realistic traffic (through the
//! same writer as ingest), served with the example configuration, plus a live trickle of new
//! requests while it runs. Every request also gets the quality axis: an LLM judge's scores on a
//! sample, the heuristics' scores, and its users' feedback (thumbs, reports, corrections).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::alerting::engine::Engine;
use crate::api::system_clock;
use crate::app::{App, shutdown_signal};
use crate::cli::DemoArgs;
use crate::config::{EXAMPLE_CONFIG, RawConfig};
use crate::core::demo_quality::QualitySimulator;
use crate::core::feedback::Feedback;
use crate::core::heuristics::HeuristicSet;
use crate::core::quality::heuristic_scores;
use crate::core::record::Record;
use crate::core::rollup::PricedRecord;
use crate::core::time::{DAY_MS, local_date};
use crate::core::traffic::TrafficGenerator;
use crate::report;
use crate::store::DEFAULT_PROJECT;

/// Records submitted to the writer per batch while generating history.
const HISTORY_BATCH: usize = 5_000;
/// Baselines the demo pins (name, dimension); the example config's monitors use them.
const DEMO_BASELINES: [(&str, &str); 2] = [
    ("before-update-categories", "attributes.question_category"),
    ("before-update-output-tokens", "output_tokens"),
];

pub async fn run(args: DemoArgs) -> Result<()> {
    let db = match args.db {
        Some(db) => {
            if db.exists() {
                bail!(
                    "{} already exists; the demo writes a fresh database",
                    db.display()
                );
            }
            db
        }
        None => fresh_temp_db(),
    };
    let mut config = RawConfig::parse(EXAMPLE_CONFIG)
        .map_err(anyhow::Error::msg)?
        .validate()?;
    config.db = db.clone();
    config.listen = args.listen;
    let listener = if args.no_serve {
        None
    } else {
        Some(
            tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?,
        )
    };
    let tz = config.timezone;
    let prices = config.pricing.clone();
    let heuristics = config.heuristics;
    let app = App::build(config, system_clock())?;
    let writer = app.state.writer.clone();

    let now = chrono::Utc::now().timestamp_millis();
    let start = now - i64::from(args.days) * DAY_MS;
    let mut generator = TrafficGenerator::new(args.seed);
    let mut simulator = QualitySimulator::new(args.seed);
    eprintln!(
        "generating {} days of traffic (~{} requests/day) into {} ...",
        args.days,
        args.per_day,
        db.display()
    );
    let mut total = 0usize;
    let mut feedback_total = 0usize;
    let mut batch = Vec::with_capacity(HISTORY_BATCH);
    let mut feedback = Vec::new();
    // Feedback users give after `now` has not happened yet: the live trickle delivers it when
    // it is due (without serving, it never happens).
    let mut pending = Vec::new();
    for mut record in generator.history_iter(start, now, args.per_day) {
        for f in add_quality(&mut simulator, &heuristics, &mut record) {
            if f.ts_ms <= now {
                feedback.push(f);
            } else {
                pending.push(f);
            }
        }
        batch.push(PricedRecord::new(record, &prices));
        if batch.len() == HISTORY_BATCH {
            total += batch.len();
            feedback_total += feedback.len();
            // Records first: feedback refers to stored requests.
            writer
                .submit(DEFAULT_PROJECT, std::mem::take(&mut batch))
                .await?;
            writer
                .submit_feedback(DEFAULT_PROJECT, std::mem::take(&mut feedback), now)
                .await?;
        }
    }
    total += batch.len();
    feedback_total += feedback.len();
    writer.submit(DEFAULT_PROJECT, batch).await?;
    writer
        .submit_feedback(DEFAULT_PROJECT, feedback, now)
        .await?;
    eprintln!("stored {total} requests and {feedback_total} pieces of feedback");
    // Baselines from before the simulated model update (the generator's last three days bring
    // complaints and longer answers), used by the example config's [[drift]] monitors.
    let update = now - 3 * DAY_MS;
    for (name, dimension) in DEMO_BASELINES {
        let spec = crate::drift::BaselineSpec::Range {
            from_ms: (update - 7 * DAY_MS).max(start),
            to_ms: update,
        };
        app.state
            .store
            .put_baseline(
                DEFAULT_PROJECT,
                crate::store::StoredBaseline {
                    name: name.to_owned(),
                    dimension: dimension.to_owned(),
                    spec: serde_json::to_value(spec)?,
                    created_ms: now,
                },
            )
            .await?;
    }

    // The alert rules, replayed over the last days of the history, so the dashboard shows
    // the alerts the synthetic incidents raise (notifications to the dashboard channel).
    let replayed = replay_alerts(&app, now - ALERT_REPLAY_MS.min(now - start), now).await?;
    eprintln!("replayed the alert rules over the last days: {replayed} notifications");

    let Some(listener) = listener else {
        let yesterday = local_date(now - DAY_MS, tz);
        let r =
            report::daily_report(app.state.store.as_ref(), DEFAULT_PROJECT, yesterday, tz).await?;
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    };

    // A live trickle at the average daily rate, so the newest minutes keep moving.
    let per_second = (args.per_day as f64 / 86_400.0).max(0.2);
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let mut carry = 0.0;
        loop {
            tick.tick().await;
            carry += per_second * 5.0;
            let n = carry.floor() as usize;
            carry -= n as f64;
            let now = chrono::Utc::now().timestamp_millis();
            let mut records = Vec::with_capacity(n);
            for mut record in generator.live(now, 5_000, n) {
                pending.extend(add_quality(&mut simulator, &heuristics, &mut record));
                records.push(PricedRecord::new(record, &prices));
            }
            if let Err(e) = writer.submit(DEFAULT_PROJECT, records).await {
                tracing::warn!(error = %e, "demo trickle write failed");
            }
            let due: Vec<Feedback>;
            (due, pending) = pending.into_iter().partition(|f| f.ts_ms <= now);
            if let Err(e) = writer.submit_feedback(DEFAULT_PROJECT, due, now).await {
                tracing::warn!(error = %e, "demo trickle feedback write failed");
            }
        }
    });
    let url = format!("http://{}", args.listen);
    println!(
        "llmwatch demo serving on {url}  (database {})",
        db.display()
    );
    println!("  curl {url}/api/v1/reports/daily");
    println!("  curl '{url}/api/v1/reports/cost?group_by=day'");
    println!("  curl {url}/api/v1/budgets");
    println!("  curl {url}/api/v1/drift/status");
    println!("  curl {url}/api/v1/quality   (and /api/v1/quality/escalations)");
    println!("  curl {url}/api/v1/feedback/summary");
    println!("  curl '{url}/api/v1/feedback/complaints?days=30&top=10'");
    println!("  curl '{url}/api/v1/compare?by=release&a=v1.4.0&b=v1.5.0'");
    println!("  curl {url}/api/v1/alerts   (and /api/v1/alerts/history)");
    println!("  llmwatch drift --server {url}");
    println!("  llmwatch report daily --server {url}");
    println!("  llmwatch export golden --server {url}");
    println!("Ctrl-C to stop.");
    app.serve(listener, async move {
        shutdown_signal().await;
        trickle.abort();
    })
    .await?;
    Ok(())
}

/// Attaches the judge's sampled scores and the heuristics' scores to a demo record (its answer
/// text is captured, so the heuristics can read it); returns the feedback its user gives.
fn add_quality(
    simulator: &mut QualitySimulator,
    heuristics: &HeuristicSet,
    record: &mut Record,
) -> Vec<Feedback> {
    let (scores, feedback) = simulator.simulate(record);
    record.scores.extend(scores);
    let checked = heuristic_scores(record, heuristics, record.timestamp_ms);
    record.scores.extend(checked);
    feedback
}

/// How far back the demo replays its alert rules, and how often.
const ALERT_REPLAY_MS: i64 = 6 * DAY_MS;
const ALERT_REPLAY_STEP_MS: i64 = 30 * 60_000;

/// Evaluates the alert rules every `ALERT_REPLAY_STEP_MS` of `[from, to)` with a clock set to
/// each step, as if llmwatch had been watching. Ends a step before `to`, so the replay's
/// evaluator lease has expired when the live engine starts. Returns the notifications made.
async fn replay_alerts(app: &App, from: i64, to: i64) -> Result<usize> {
    let sim = Arc::new(AtomicI64::new(from));
    let clock = Arc::clone(&sim);
    let mut engine = Engine::new(
        Arc::clone(&app.state.config),
        Arc::clone(&app.state.store),
        Arc::clone(&app.state.alerts),
        Arc::new(move || clock.load(Ordering::SeqCst)),
        "demo-replay".into(),
    );
    let mut made = 0;
    let mut t = from;
    while t < to - ALERT_REPLAY_STEP_MS {
        sim.store(t, Ordering::SeqCst);
        let summary = engine.evaluate_once().await?;
        made += summary.notifications.len();
        for d in summary.deliveries {
            let _ = d.await;
        }
        t += ALERT_REPLAY_STEP_MS;
    }
    Ok(made)
}

fn fresh_temp_db() -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    std::env::temp_dir().join(format!("llmwatch-demo-{stamp}-{}.db", std::process::id()))
}
