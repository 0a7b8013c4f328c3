//! Alert persistence in SQLite: states, history, deliveries, silences, the evaluator lease and
//! anomaly baselines. Every write is committed and fsynced before it returns, so a restart
//! neither re-pages a firing alert nor loses a pending one.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rusqlite::{TransactionBehavior, params};

use super::sqlite::SqliteStore;
use super::{
    AlertStore, AnomalyBaseline, DeliveryRecord, HistoryEntry, Silence, Store, StoreError,
    StoredAlert,
};
use crate::core::alert::{AlertState, Attempt, Notice, Notification, Phase, Severity};
use crate::core::time::Range;

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn phase_str(p: Phase) -> &'static str {
    match p {
        Phase::Inactive => "inactive",
        Phase::Pending => "pending",
        Phase::Firing => "firing",
    }
}

fn parse_phase(s: &str) -> Phase {
    match s {
        "pending" => Phase::Pending,
        "firing" => Phase::Firing,
        _ => Phase::Inactive,
    }
}

pub(crate) fn notice_str(n: Notice) -> &'static str {
    match n {
        Notice::Firing => "firing",
        Notice::Reminder => "reminder",
        Notice::Resolved => "resolved",
    }
}

fn parse_notice(s: &str) -> Notice {
    match s {
        "reminder" => Notice::Reminder,
        "resolved" => Notice::Resolved,
        _ => Notice::Firing,
    }
}

#[async_trait]
impl AlertStore for SqliteStore {
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let won = self
            .write_conn(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                // Taken when free, expired, or already ours (a renewal).
                tx.execute(
                    "INSERT INTO alert_lease (name, holder, until_ms) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                     until_ms = excluded.until_ms \
                     WHERE alert_lease.holder = excluded.holder OR alert_lease.until_ms < ?4",
                    params![name, holder, now_ms + ttl_ms, now_ms],
                )?;
                let current: String = tx.query_row(
                    "SELECT holder FROM alert_lease WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )?;
                tx.commit()?;
                Ok(current == holder)
            })
            .await?;
        self.sync().await?;
        Ok(won)
    }

    async fn alert_states(&self, project: &str) -> Result<Vec<StoredAlert>, StoreError> {
        let project = project.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT dedup_key, rule, group_labels, severity, phase, since_ms, \
                 last_notified_ms, announced, value, threshold, summary, expr, updated_ms \
                 FROM alert_state WHERE project = ?1 ORDER BY rule, dedup_key",
            )?;
            let rows = stmt.query_map(params![project], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, bool>(7)?,
                    r.get::<_, Option<f64>>(8)?,
                    r.get::<_, Option<f64>>(9)?,
                    r.get::<_, String>(10)?,
                    r.get::<_, String>(11)?,
                    r.get::<_, i64>(12)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (
                    key,
                    rule,
                    group,
                    sev,
                    phase,
                    since,
                    last,
                    announced,
                    value,
                    thr,
                    summary,
                    expr,
                    upd,
                ) = row?;
                out.push(StoredAlert {
                    dedup_key: key,
                    rule,
                    group: from_json(&group, "alert_state.group_labels")?,
                    severity: Severity::parse(&sev).unwrap_or(Severity::Warning),
                    state: AlertState {
                        phase: parse_phase(&phase),
                        since_ms: since,
                        last_notified_ms: last,
                        announced,
                    },
                    value,
                    threshold: thr,
                    summary,
                    expr,
                    updated_ms: upd,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn record_evaluation(
        &self,
        project: &str,
        states: Vec<StoredAlert>,
        history: Vec<HistoryEntry>,
        baselines: Vec<(String, AnomalyBaseline, i64)>,
    ) -> Result<Vec<i64>, StoreError> {
        let project = project.to_owned();
        let ids = self
            .write_conn(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut put = tx.prepare_cached(
                    "INSERT INTO alert_state (project, dedup_key, rule, group_labels, severity, \
                     phase, since_ms, last_notified_ms, announced, value, threshold, summary, \
                     expr, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
                     ?13, ?14) ON CONFLICT (project, dedup_key) DO UPDATE SET rule = excluded.rule, \
                     group_labels = excluded.group_labels, severity = excluded.severity, \
                     phase = excluded.phase, since_ms = excluded.since_ms, \
                     last_notified_ms = excluded.last_notified_ms, announced = excluded.announced, \
                     value = excluded.value, threshold = excluded.threshold, \
                     summary = excluded.summary, expr = excluded.expr, updated_ms = excluded.updated_ms",
                )?;
                for s in &states {
                    put.execute(params![
                        project,
                        s.dedup_key,
                        s.rule,
                        json(&s.group)?,
                        s.severity.as_str(),
                        phase_str(s.state.phase),
                        s.state.since_ms,
                        s.state.last_notified_ms,
                        s.state.announced,
                        s.value,
                        s.threshold,
                        s.summary,
                        s.expr,
                        s.updated_ms
                    ])?;
                }
                drop(put);
                let mut add = tx.prepare_cached(
                    "INSERT INTO alert_history (project, dedup_key, rule, severity, notice, \
                     group_labels, summary, expr, value, threshold, starts_ms, ends_ms, at_ms, \
                     channels, silenced_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, \
                     ?12, ?13, ?14, ?15)",
                )?;
                let mut ids = Vec::with_capacity(history.len());
                for h in &history {
                    let n = &h.notification;
                    add.execute(params![
                        project,
                        n.dedup_key,
                        n.rule,
                        n.severity.as_str(),
                        notice_str(n.notice),
                        json(&n.group)?,
                        n.summary,
                        n.expr,
                        n.value,
                        n.threshold,
                        n.starts_ms,
                        n.ends_ms,
                        n.at_ms,
                        json(&h.channels)?,
                        h.silenced_by
                    ])?;
                    ids.push(tx.last_insert_rowid());
                }
                drop(add);
                let mut base = tx.prepare_cached(
                    "INSERT INTO anomaly_baselines (project, key, mean, variance, n, updated_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (project, key) DO UPDATE SET \
                     mean = excluded.mean, variance = excluded.variance, n = excluded.n, \
                     updated_ms = excluded.updated_ms",
                )?;
                for (key, b, at) in &baselines {
                    base.execute(params![project, key, b.mean, b.variance, b.n, at])?;
                }
                drop(base);
                tx.commit()?;
                Ok(ids)
            })
            .await?;
        self.sync().await?;
        Ok(ids)
    }

    async fn record_deliveries(
        &self,
        project: &str,
        rows: Vec<DeliveryRecord>,
    ) -> Result<(), StoreError> {
        let project = project.to_owned();
        self.write_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut add = tx.prepare_cached(
                "INSERT INTO alert_deliveries (project, history_id, channel, attempt, ok, status, \
                 error, duration_ms, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for d in &rows {
                let a = &d.attempt;
                add.execute(params![
                    project,
                    d.history_id,
                    d.channel,
                    a.attempt,
                    a.ok,
                    a.status,
                    a.error,
                    a.duration_ms,
                    a.at_ms
                ])?;
            }
            drop(add);
            tx.commit()?;
            Ok(())
        })
        .await?;
        self.sync().await
    }

    async fn alert_history(
        &self,
        project: &str,
        range: Range,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let project = project.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, dedup_key, rule, severity, notice, group_labels, summary, expr, value, \
                 threshold, starts_ms, ends_ms, at_ms, channels, silenced_by FROM alert_history \
                 WHERE project = ?1 AND at_ms >= ?2 AND at_ms < ?3 ORDER BY at_ms DESC, id DESC \
                 LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![project, range.from_ms, range.to_ms, limit as i64],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, Option<f64>>(8)?,
                        r.get::<_, Option<f64>>(9)?,
                        r.get::<_, i64>(10)?,
                        r.get::<_, Option<i64>>(11)?,
                        r.get::<_, i64>(12)?,
                        r.get::<_, String>(13)?,
                        r.get::<_, Option<i64>>(14)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (
                    id,
                    key,
                    rule,
                    sev,
                    notice,
                    group,
                    summary,
                    expr,
                    value,
                    thr,
                    starts,
                    ends,
                    at,
                    channels,
                    silenced,
                ) = row?;
                out.push(HistoryEntry {
                    id,
                    notification: Notification {
                        dedup_key: key,
                        rule,
                        severity: Severity::parse(&sev).unwrap_or(Severity::Warning),
                        notice: parse_notice(&notice),
                        group: from_json(&group, "alert_history.group_labels")?,
                        summary,
                        expr,
                        value,
                        threshold: thr,
                        starts_ms: starts,
                        ends_ms: ends,
                        at_ms: at,
                        dashboard_url: None,
                    },
                    channels: from_json(&channels, "alert_history.channels")?,
                    silenced_by: silenced,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn deliveries(
        &self,
        project: &str,
        range: Range,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let project = project.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT history_id, channel, attempt, ok, status, error, duration_ms, at_ms \
                 FROM alert_deliveries WHERE project = ?1 AND at_ms >= ?2 AND at_ms < ?3 \
                 ORDER BY at_ms DESC, id DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![project, range.from_ms, range.to_ms, limit as i64],
                |r| {
                    Ok(DeliveryRecord {
                        history_id: r.get(0)?,
                        channel: r.get(1)?,
                        attempt: Attempt {
                            attempt: r.get(2)?,
                            ok: r.get(3)?,
                            status: r.get(4)?,
                            error: r.get(5)?,
                            duration_ms: r.get(6)?,
                            at_ms: r.get(7)?,
                        },
                    })
                },
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn undelivered(
        &self,
        project: &str,
        since_ms: i64,
    ) -> Result<Vec<(HistoryEntry, Vec<String>)>, StoreError> {
        let recent = self
            .alert_history(project, Range::new(since_ms, i64::MAX), 10_000)
            .await?;
        let project = project.to_owned();
        self.read(move |conn| {
            let mut tried = conn.prepare_cached(
                "SELECT DISTINCT channel FROM alert_deliveries WHERE project = ?1 AND history_id = ?2",
            )?;
            let mut out = Vec::new();
            // History comes newest first; redeliver oldest first.
            for h in recent.into_iter().rev() {
                if h.silenced_by.is_some() {
                    continue;
                }
                let done: Vec<String> = tried
                    .query_map(params![project, h.id], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let missing: Vec<String> = h
                    .channels
                    .iter()
                    .filter(|c| !done.contains(c))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    out.push((h, missing));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn silences(&self, project: &str) -> Result<Vec<Silence>, StoreError> {
        let project = project.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, matchers, until_ms, comment, created_ms FROM alert_silences \
                 WHERE project = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![project], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, matchers, until_ms, comment, created_ms) = row?;
                out.push(Silence {
                    id,
                    matchers: from_json::<BTreeMap<String, String>>(
                        &matchers,
                        "alert_silences.matchers",
                    )?,
                    until_ms,
                    comment,
                    created_ms,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn add_silence(&self, project: &str, silence: Silence) -> Result<i64, StoreError> {
        let project = project.to_owned();
        let id = self
            .write_conn(move |conn| {
                conn.execute(
                    "INSERT INTO alert_silences (project, matchers, until_ms, comment, created_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        project,
                        json(&silence.matchers)?,
                        silence.until_ms,
                        silence.comment,
                        silence.created_ms
                    ],
                )?;
                Ok(conn.last_insert_rowid())
            })
            .await?;
        self.sync().await?;
        Ok(id)
    }

    async fn delete_silence(&self, project: &str, id: i64) -> Result<bool, StoreError> {
        let project = project.to_owned();
        let n = self
            .write_conn(move |conn| {
                Ok(conn.execute(
                    "DELETE FROM alert_silences WHERE project = ?1 AND id = ?2",
                    params![project, id],
                )?)
            })
            .await?;
        self.sync().await?;
        Ok(n > 0)
    }

    async fn anomaly_baselines(
        &self,
        project: &str,
    ) -> Result<BTreeMap<String, AnomalyBaseline>, StoreError> {
        let project = project.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, mean, variance, n FROM anomaly_baselines WHERE project = ?1",
            )?;
            let rows = stmt.query_map(params![project], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    AnomalyBaseline {
                        mean: r.get(1)?,
                        variance: r.get(2)?,
                        n: r.get(3)?,
                    },
                ))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
