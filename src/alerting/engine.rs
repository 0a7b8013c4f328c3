//! The rule engine: every `eval_interval` the lease holder evaluates each rule from rollups
//! (never raw scans), steps each alert's state machine, persists states and notifications in
//! one durable transaction, then hands notifications to delivery tasks (one per channel, so a
//! failing channel never delays another).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::alerting::channels::{self, ChannelConfig, RetryPolicy};
use crate::alerting::rules::{AlertRule, DASHBOARD, render_summary};
use crate::api::Clock;
use crate::config::Config;
use crate::core::alert::{Notice, Notification, Phase, dedup_key};
use crate::core::alert_expr::{Metric, MetricRef};
use crate::core::rollup::{
    Dimension, SKETCH_DURATION, SKETCH_STAGE_PREFIX, SKETCH_TTFT, Scope, Totals,
};
use crate::core::sketch::SketchSet;
use crate::core::time::{DAY_MS, Period, Range, period_range};
use crate::drift::{DriftRequest, Method, kind_of};
use crate::report::budget_statuses;
use crate::store::{
    AlertStore, AnomalyBaseline, DEFAULT_PROJECT, DeliveryRecord, DriftScope, HistoryEntry,
    QualityQuery, QualityScope, Store, StoreError, StoredAlert, TotalsQuery,
};

/// The lease every evaluator competes for.
const LEASE: &str = "alert-evaluator";
/// Anomaly baselines: EWMA weight of the newest value, and evaluations before a z-score counts.
const EWMA_ALPHA: f64 = 0.1;
const ANOMALY_WARMUP: u32 = 10;
/// How far back a new evaluator looks for notifications recorded but never delivered.
const REDELIVER_WITHIN_MS: i64 = DAY_MS;
/// Most groups one rule evaluates (labels beyond are ignored), bounding a runaway `group_by`.
const MAX_GROUPS: usize = 100;

/// A metric's values: per group value, and the value for all (ungroupable metrics).
#[derive(Debug, Default, Clone)]
struct Values {
    by_group: BTreeMap<String, f64>,
    all: Option<f64>,
}

/// What one evaluation did (for tests and logs).
#[derive(Debug, Default)]
pub struct EvalSummary {
    /// False when another instance holds the lease: nothing was evaluated.
    pub leader: bool,
    pub notifications: Vec<Notification>,
    /// Deliveries started, to await in tests.
    pub deliveries: Vec<tokio::task::JoinHandle<()>>,
}

pub struct Engine {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    alerts: Arc<dyn AlertStore>,
    clock: Clock,
    /// This instance's lease identity.
    holder: String,
    client: reqwest::Client,
    /// The alert states, loaded when this instance becomes the evaluator.
    states: Option<HashMap<String, StoredAlert>>,
    baselines: BTreeMap<String, AnomalyBaseline>,
}

impl Engine {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        alerts: Arc<dyn AlertStore>,
        clock: Clock,
        holder: String,
    ) -> Engine {
        Engine {
            config,
            store,
            alerts,
            clock,
            holder,
            client: reqwest::Client::new(),
            states: None,
            baselines: BTreeMap::new(),
        }
    }

    /// Evaluates every rule once (if this instance holds the lease).
    pub async fn evaluate_once(&mut self) -> Result<EvalSummary, StoreError> {
        let now = (self.clock)();
        let ttl = 3 * self.config.alerting.eval_interval_ms;
        if !self.alerts.try_lease(LEASE, &self.holder, now, ttl).await? {
            // Another instance evaluates; reload its states when this one takes over.
            self.states = None;
            return Ok(EvalSummary::default());
        }
        let mut redeliveries = Vec::new();
        if self.states.is_none() {
            let states = self.alerts.alert_states(DEFAULT_PROJECT).await?;
            self.states = Some(
                states
                    .into_iter()
                    .map(|s| (s.dedup_key.clone(), s))
                    .collect(),
            );
            self.baselines = self.alerts.anomaly_baselines(DEFAULT_PROJECT).await?;
            // Taking over (start, restart, another instance's lease lapsed): notifications the
            // last evaluator recorded but never delivered go out now. At least once: a delivery
            // that succeeded just before a crash, before it was logged, is sent again (PagerDuty
            // and Alertmanager receivers deduplicate by the alert's key).
            for (h, channels) in self
                .alerts
                .undelivered(DEFAULT_PROJECT, now - REDELIVER_WITHIN_MS)
                .await?
            {
                tracing::info!(rule = %h.notification.rule, ?channels, "redelivering a notification");
                for channel in channels {
                    redeliveries.push(self.deliver(h.id, channel, h.notification.clone()));
                }
            }
        }
        let silences = self.alerts.silences(DEFAULT_PROJECT).await?;
        let budgets = budget_statuses(
            self.store.as_ref(),
            DEFAULT_PROJECT,
            &self.config.budgets,
            self.config.timezone,
            now,
        )
        .await?;

        let mut changed: Vec<StoredAlert> = Vec::new();
        let mut made: Vec<(Notification, Vec<String>, Option<i64>)> = Vec::new();
        let mut new_baselines: Vec<(String, AnomalyBaseline, i64)> = Vec::new();
        let rules: Vec<AlertRule> = self.config.alerting.rules.clone();
        for rule in &rules {
            let mut values: BTreeMap<(MetricRef, bool), Values> = BTreeMap::new();
            for (m, anomaly) in rule.rule.metrics() {
                let v = match self.metric(&m, rule, now, &budgets).await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(rule = %rule.name, error = %e, "alert metric failed");
                        Values::default()
                    }
                };
                values.insert((m, anomaly), v);
            }
            let groups: Vec<Option<String>> = match rule.group_by {
                None => vec![None],
                Some(_) => {
                    let mut keys: Vec<String> = values
                        .values()
                        .flat_map(|v| v.by_group.keys().cloned())
                        .collect();
                    keys.sort();
                    keys.dedup();
                    keys.truncate(MAX_GROUPS);
                    keys.into_iter().map(Some).collect()
                }
            };
            for group in groups {
                let value_of = |m: &MetricRef, anomaly: bool| -> Option<f64> {
                    let v = values.get(&(m.clone(), anomaly))?;
                    match &group {
                        Some(g) => v.by_group.get(g).copied().or(v.all),
                        None => v.all,
                    }
                };
                // Anomaly scores against each baseline as it was before this evaluation.
                let mut z_scores: BTreeMap<MetricRef, Option<f64>> = BTreeMap::new();
                for ((m, anomaly), _) in values.iter() {
                    if !anomaly {
                        continue;
                    }
                    let key = anomaly_key(&rule.name, m, group.as_deref());
                    let x = value_of(m, true);
                    let base = self.baselines.get(&key).copied().unwrap_or_default();
                    let z = x.and_then(|x| {
                        (base.n >= ANOMALY_WARMUP && base.variance > 0.0)
                            .then(|| (x - base.mean) / base.variance.sqrt())
                    });
                    z_scores.insert(m.clone(), z);
                    if let Some(x) = x {
                        let next = ewma(base, x);
                        self.baselines.insert(key.clone(), next);
                        new_baselines.push((key, next, now));
                    }
                }
                let evaluation = rule.rule.evaluate(&|m: &MetricRef, anomaly: bool| {
                    if anomaly {
                        z_scores.get(m).copied().flatten()
                    } else {
                        value_of(m, false)
                    }
                });
                let labels: BTreeMap<String, String> = match (&group, rule.group_by) {
                    (Some(g), Some(dim)) => {
                        BTreeMap::from([(label_name(dim).to_owned(), g.clone())])
                    }
                    _ => BTreeMap::new(),
                };
                let key = dedup_key(&rule.name, &labels);
                let states = self.states.get_or_insert_with(HashMap::new);
                let previous = states.get(&key).map(|s| s.state).unwrap_or_default();
                let (next, notice) = previous.step(evaluation.holds, now, rule.timing);
                let summary = render_summary(
                    rule.summary.as_deref(),
                    rule,
                    &labels,
                    evaluation.value,
                    evaluation.threshold,
                );
                let stored = StoredAlert {
                    dedup_key: key.clone(),
                    rule: rule.name.clone(),
                    group: labels.clone(),
                    severity: rule.severity,
                    state: next,
                    value: evaluation.value,
                    threshold: evaluation.threshold,
                    summary: summary.clone(),
                    expr: rule.expr.clone(),
                    updated_ms: now,
                };
                let moved = next != previous
                    || states
                        .get(&key)
                        .is_none_or(|s| s.value != stored.value && next.phase != Phase::Inactive);
                if moved {
                    states.insert(key.clone(), stored.clone());
                    changed.push(stored);
                }
                let Some(notice) = notice else { continue };
                let notification = Notification {
                    dedup_key: key,
                    rule: rule.name.clone(),
                    severity: rule.severity,
                    notice,
                    group: labels.clone(),
                    summary,
                    expr: rule.expr.clone(),
                    value: evaluation.value,
                    threshold: evaluation.threshold,
                    starts_ms: if notice == Notice::Resolved {
                        previous.since_ms
                    } else {
                        next.since_ms
                    },
                    ends_ms: (notice == Notice::Resolved).then_some(now),
                    at_ms: now,
                    dashboard_url: self.config.alerting.dashboard_url.clone(),
                };
                let routed = rule
                    .channels
                    .clone()
                    .unwrap_or_else(|| self.config.alerting.routing.of(rule.severity).to_vec());
                let mut alert_labels = labels.clone();
                alert_labels.insert("alertname".into(), rule.name.clone());
                alert_labels.insert("severity".into(), rule.severity.as_str().into());
                let silenced_by = silences
                    .iter()
                    .find(|s| {
                        s.until_ms > now
                            && s.matchers
                                .iter()
                                .all(|(k, v)| alert_labels.get(k) == Some(v))
                    })
                    .map(|s| s.id);
                made.push((notification, routed, silenced_by));
            }
        }

        let history: Vec<HistoryEntry> = made
            .iter()
            .map(|(n, channels, silenced_by)| HistoryEntry {
                id: 0,
                notification: n.clone(),
                channels: channels.clone(),
                silenced_by: *silenced_by,
            })
            .collect();
        // Durable before anything is sent: a crash after this never re-pages.
        let ids = self
            .alerts
            .record_evaluation(DEFAULT_PROJECT, changed, history, new_baselines)
            .await?;

        let mut summary = EvalSummary {
            leader: true,
            deliveries: redeliveries,
            ..EvalSummary::default()
        };
        for ((n, channels, silenced_by), id) in made.into_iter().zip(ids) {
            if silenced_by.is_none() {
                for name in channels {
                    summary.deliveries.push(self.deliver(id, name, n.clone()));
                }
            }
            summary.notifications.push(n);
        }
        Ok(summary)
    }

    /// Starts one delivery; its attempts are logged when it ends.
    fn deliver(
        &self,
        history_id: i64,
        channel: String,
        n: Notification,
    ) -> tokio::task::JoinHandle<()> {
        let alerts = Arc::clone(&self.alerts);
        let client = self.client.clone();
        let clock = Arc::clone(&self.clock);
        let config = self.config.alerting.channels.get(&channel).cloned();
        tokio::spawn(async move {
            let mut attempts: Vec<DeliveryRecord> = Vec::new();
            let target = match (&config, channel.as_str()) {
                (Some(c), _) => c.clone(),
                (None, DASHBOARD) => ChannelConfig::Dashboard,
                (None, _) => {
                    tracing::warn!(channel = %channel, "no such channel");
                    return;
                }
            };
            channels::deliver(&client, &target, &n, RetryPolicy::default(), &clock, |a| {
                attempts.push(DeliveryRecord {
                    history_id,
                    channel: channel.clone(),
                    attempt: a.clone(),
                })
            })
            .await;
            if let Err(e) = alerts.record_deliveries(DEFAULT_PROJECT, attempts).await {
                tracing::error!(error = %e, "recording deliveries failed");
            }
        })
    }

    /// Evaluates every `eval_interval` until `stop` resolves.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(
            self.config.alerting.eval_interval_ms as u64,
        ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.evaluate_once().await {
                        tracing::error!(error = %e, "alert evaluation failed");
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }

    async fn totals(
        &self,
        range: Range,
        filter: &Scope,
        group_by: Option<Dimension>,
        with_sketches: bool,
    ) -> Result<Vec<(Option<String>, Totals, Option<SketchSet>)>, StoreError> {
        let mut q = TotalsQuery::new(DEFAULT_PROJECT, range);
        q.scope = filter.clone();
        q.group_by = group_by;
        q.with_sketches = with_sketches;
        Ok(self
            .store
            .totals(q)
            .await?
            .into_iter()
            .map(|g| (g.key, g.totals, g.sketches))
            .collect())
    }

    /// A metric's values over its window ending at `now` (grouped by the rule's label when
    /// the metric can be).
    async fn metric(
        &self,
        m: &MetricRef,
        rule: &AlertRule,
        now: i64,
        budgets: &[crate::report::BudgetStatus],
    ) -> Result<Values, StoreError> {
        let window = m.window_ms.unwrap_or(5 * 60_000);
        let range = Range::new(now - window, now);
        let tz = self.config.timezone;
        let from_totals = |rows: Vec<(Option<String>, Totals, Option<SketchSet>)>,
                           f: &dyn Fn(&Totals, Option<&SketchSet>) -> Option<f64>|
         -> Values {
            let mut v = Values::default();
            for (key, t, s) in rows {
                if let Some(x) = f(&t, s.as_ref()) {
                    match (rule.group_by, key) {
                        (Some(_), Some(k)) => {
                            v.by_group.insert(k, x);
                        }
                        (Some(_), None) => {}
                        (None, _) => v.all = Some(x),
                    }
                }
            }
            v
        };
        let quantile = |name: String, q: f64| {
            move |_: &Totals, s: Option<&SketchSet>| s.and_then(|s| s.get(&name)?.quantile(q))
        };
        let arg = m.arg.clone().unwrap_or_default();
        Ok(match m.metric {
            Metric::ErrorRate => from_totals(
                self.totals(range, &rule.filter, rule.group_by, false)
                    .await?,
                &|t, _| (t.requests > 0).then(|| t.errors as f64 / t.requests as f64),
            ),
            Metric::RequestRate => from_totals(
                self.totals(range, &rule.filter, rule.group_by, false)
                    .await?,
                &|t, _| Some(t.requests as f64 * 1000.0 / window as f64),
            ),
            Metric::Cost => from_totals(
                self.totals(range, &rule.filter, rule.group_by, false)
                    .await?,
                &|t, _| Some(t.cost_nanos as f64 / 1e9),
            ),
            Metric::UnpricedRequests => from_totals(
                self.totals(range, &rule.filter, rule.group_by, false)
                    .await?,
                &|t, _| Some(t.unpriced_requests as f64),
            ),
            Metric::P50Latency | Metric::P95Latency | Metric::P99Latency => {
                let q = match m.metric {
                    Metric::P50Latency => 0.5,
                    Metric::P95Latency => 0.95,
                    _ => 0.99,
                };
                from_totals(
                    self.totals(range, &rule.filter, rule.group_by, true)
                        .await?,
                    &quantile(SKETCH_DURATION.to_owned(), q),
                )
            }
            Metric::TtftP95 => from_totals(
                self.totals(range, &rule.filter, rule.group_by, true)
                    .await?,
                &quantile(SKETCH_TTFT.to_owned(), 0.95),
            ),
            Metric::StageP95 => from_totals(
                self.totals(range, &rule.filter, rule.group_by, true)
                    .await?,
                &quantile(format!("{SKETCH_STAGE_PREFIX}{arg}"), 0.95),
            ),
            Metric::DailyCost | Metric::WeeklyCost | Metric::MonthlyCost => {
                let period = match m.metric {
                    Metric::DailyCost => Period::Day,
                    Metric::WeeklyCost => Period::Week,
                    _ => Period::Month,
                };
                let p = period_range(period, now, tz);
                from_totals(
                    self.totals(
                        Range::new(p.from_ms, now.max(p.from_ms + 1)),
                        &rule.filter,
                        rule.group_by,
                        false,
                    )
                    .await?,
                    &|t, _| Some(t.cost_nanos as f64 / 1e9),
                )
            }
            Metric::Budget | Metric::BudgetRatio | Metric::ProjectedCost => {
                let b = budgets.iter().find(|b| b.name == arg);
                Values {
                    by_group: BTreeMap::new(),
                    all: b.map(|b| match m.metric {
                        Metric::Budget => b.limit_usd,
                        Metric::BudgetRatio => b.ratio,
                        _ => b.projected_usd,
                    }),
                }
            }
            Metric::AvgQuality | Metric::ScoreAvg => {
                let name = if m.metric == Metric::AvgQuality {
                    crate::core::quality::COMPOSITE.to_owned()
                } else {
                    arg
                };
                let mean =
                    |data: crate::store::QualityData| data.hists.get(&name).and_then(|h| h.mean());
                self.per_group(rule, range, |scope| {
                    let store = Arc::clone(&self.store);
                    let rules = self.config.quality.clone();
                    async move {
                        let data = store
                            .quality(QualityQuery {
                                project: DEFAULT_PROJECT.to_owned(),
                                range,
                                model: scope.model,
                                feature: scope.feature,
                                release: scope.release,
                                threshold: rules.threshold,
                                streak: rules.streak,
                            })
                            .await?;
                        Ok(mean(data))
                    }
                })
                .await?
            }
            Metric::SatisfactionRate => {
                self.per_group(rule, range, |scope| {
                    let store = Arc::clone(&self.store);
                    async move {
                        let c = store
                            .feedback_counts(
                                DEFAULT_PROJECT,
                                range,
                                QualityScope {
                                    model: scope.model,
                                    feature: scope.feature,
                                    release: scope.release,
                                },
                            )
                            .await?;
                        Ok(c.satisfaction_rate())
                    }
                })
                .await?
            }
            Metric::QualityEscalations => {
                let list = self
                    .store
                    .escalations(DEFAULT_PROJECT, range, rule.filter.feature.clone(), 1_000)
                    .await?;
                let mut v = Values {
                    all: Some(list.len() as f64),
                    ..Values::default()
                };
                if rule.group_by == Some(Dimension::Feature) {
                    v.all = None;
                    for e in list {
                        *v.by_group.entry(e.feature).or_default() += 1.0;
                    }
                }
                v
            }
            Metric::KlDivergence | Metric::JsDistance | Metric::Psi | Metric::Drift => {
                let (dimension, baseline, window_ms, method, threshold) =
                    if m.metric == Metric::Drift {
                        match self.config.drift.iter().find(|d| d.name == arg) {
                            Some(d) => (
                                d.dimension.clone(),
                                d.baseline.clone(),
                                d.window_ms,
                                d.method,
                                d.threshold,
                            ),
                            None => return Ok(Values::default()),
                        }
                    } else {
                        let dimension = if kind_of(&arg).is_ok() {
                            arg
                        } else {
                            format!("attributes.{arg}")
                        };
                        let method = match m.metric {
                            Metric::KlDivergence => Method::Kl,
                            Metric::JsDistance => Method::Js,
                            _ => Method::Psi,
                        };
                        (dimension, None, m.window_ms.unwrap_or(DAY_MS), method, None)
                    };
                let req = DriftRequest {
                    dimension,
                    baseline,
                    window: Range::new(now - window_ms, now),
                    method,
                    threshold,
                    scope: DriftScope::default(),
                    min_samples: self.config.drift_min_samples,
                };
                let score = crate::drift::check(self.store.as_ref(), DEFAULT_PROJECT, &req)
                    .await
                    .ok()
                    .and_then(|r| r.score);
                Values {
                    by_group: BTreeMap::new(),
                    all: score,
                }
            }
        })
    }

    /// A metric computed per group of the rule's label (groups found in the window's
    /// totals), or once for all.
    async fn per_group<F, Fut>(
        &self,
        rule: &AlertRule,
        range: Range,
        f: F,
    ) -> Result<Values, StoreError>
    where
        F: Fn(Scope) -> Fut,
        Fut: std::future::Future<Output = Result<Option<f64>, StoreError>>,
    {
        let mut v = Values::default();
        match rule.group_by {
            None => v.all = f(rule.filter.clone()).await?,
            Some(dim) => {
                let groups = self.totals(range, &rule.filter, Some(dim), false).await?;
                for (key, _, _) in groups.into_iter().take(MAX_GROUPS) {
                    let Some(key) = key else { continue };
                    let mut scope = rule.filter.clone();
                    match dim {
                        Dimension::Model => scope.model = Some(key.clone()),
                        Dimension::Feature => scope.feature = Some(key.clone()),
                        Dimension::Release => scope.release = Some(key.clone()),
                        Dimension::User => scope.user = Some(key.clone()),
                        Dimension::ErrorType => {}
                    }
                    if let Some(x) = f(scope).await? {
                        v.by_group.insert(key, x);
                    }
                }
            }
        }
        Ok(v)
    }
}

fn label_name(dim: Dimension) -> &'static str {
    match dim {
        Dimension::Model => "model",
        Dimension::Feature => "feature",
        Dimension::Release => "release",
        Dimension::User => "user",
        Dimension::ErrorType => "error_type",
    }
}

fn anomaly_key(rule: &str, m: &MetricRef, group: Option<&str>) -> String {
    format!(
        "{rule}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
        m.metric.name(),
        m.arg.as_deref().unwrap_or(""),
        m.window_ms.unwrap_or(0),
        group.unwrap_or("")
    )
}

/// The next EWMA mean and variance after observing `x`.
pub fn ewma(b: AnomalyBaseline, x: f64) -> AnomalyBaseline {
    if b.n == 0 {
        return AnomalyBaseline {
            mean: x,
            variance: 0.0,
            n: 1,
        };
    }
    let diff = x - b.mean;
    let incr = EWMA_ALPHA * diff;
    AnomalyBaseline {
        mean: b.mean + incr,
        variance: (1.0 - EWMA_ALPHA) * (b.variance + diff * incr),
        n: b.n.saturating_add(1),
    }
}
