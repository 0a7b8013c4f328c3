//! The embedded SQLite backend (WAL). One writer connection, used only by the pipeline's single
//! writer task; a small pool of read connections that never block it. Blocking calls run on
//! tokio's blocking pool.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};

use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rustc_hash::FxHashMap;

use super::sqlite_quality::{self, Fresh, QualityState, Touched};
use super::{
    DriftScope, Escalation, GoldenExample, GroupTotals, MetricBatch, MetricWriteSummary,
    QualityData, QualityQuery, QualityScope, RequestSearch, Store, StoreError, StoredBaseline,
    StoredRequest, TRACED_SERVICE_MS, TotalsQuery, TraceBatch, TraceWriteSummary, WriteSummary,
};
use crate::config::Durability;
use crate::core::feedback::{Feedback, FeedbackCounts, FeedbackKind};
use crate::core::heuristics::HeuristicSet;
use crate::core::metric::{StreamState, contribution, delta as metric_delta};
use crate::core::pricing::PriceTable;
use crate::core::quality::{QualityRules, Score, ScoreSource, effective_scores, heuristic_scores};
use crate::core::record::{Record, Status, Usage};
use crate::core::rollup::{
    DRIFT_ATTRIBUTE_PREFIX, DRIFT_OTHER, Dimension, MAX_DRIFT_ATTRIBUTE_KEYS, MAX_DRIFT_VALUES,
    PricedRecord, RollupDelta, SERIES_TIERS, SeriesKey, Totals, add_latencies, add_numeric,
    numeric_values,
};
use crate::core::sketch::{Sketch, SketchSet, merge_encoded, merge_named_encoded};
use crate::core::span::{SpanSummary, hex};
use crate::core::time::{DAY_MS, HOUR_MS, MINUTE_MS, Range, Source, bucket_start, plan};
use crate::core::trace::{Assembly, assemble, merge_spans};

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

/// Schema migrations, applied in order; the database's `user_version` is the count applied.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_otlp.sql"),
    include_str!("migrations/0003_drift.sql"),
    include_str!("migrations/0004_quality.sql"),
    include_str!("migrations/0005_alerts.sql"),
];

/// The additive columns of every rollup table, in `Totals` field order.
const METRIC_COLUMNS: [&str; 12] = [
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nanos",
    "unpriced_requests",
    "unpriced_tokens",
    "duration_ms_sum",
    "unaccounted_ms_sum",
];

/// The same metrics computed from one raw `requests` row.
const RAW_METRIC_EXPRS: [&str; 12] = [
    "1",
    "status = 'error'",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "COALESCE(cost_nanos, 0)",
    "cost_nanos IS NULL",
    "CASE WHEN cost_nanos IS NULL THEN input_tokens + output_tokens ELSE 0 END",
    "duration_ms",
    "unaccounted_ms",
];

const REQUEST_COLUMNS: &str = "request_id, ts_ms, model, provider, input_tokens, output_tokens, \
     cached_input_tokens, cache_write_tokens, reasoning_tokens, cost_nanos, user_id, feature, \
     session_id, release, status, error_type, duration_ms, ttft_ms, stages, attributes, input, output, \
     unaccounted_ms, input_chars, output_chars";

/// A rollup tier: its table, bucket width, the label columns it keeps, and whether its rows
/// carry latency sketches.
struct Tier {
    table: &'static str,
    width_ms: i64,
    dims: &'static [Dimension],
    sketches: bool,
}

const SERIES_DIMS: &[Dimension] = &[Dimension::Model, Dimension::Feature, Dimension::Release];
const ERROR_DIMS: &[Dimension] = &[
    Dimension::Model,
    Dimension::Feature,
    Dimension::Release,
    Dimension::ErrorType,
];
const USER_DIMS: &[Dimension] = &[Dimension::User];

const fn tier(table: &'static str, width_ms: i64, dims: &'static [Dimension]) -> Tier {
    Tier {
        table,
        width_ms,
        dims,
        sketches: false,
    }
}

/// The per-series tables, in `SERIES_TIERS` order.
const SERIES_TABLES: [&str; 3] = ["rollup_series_1d", "rollup_series_1h", "rollup_series_1m"];
/// The per-error-type tables, in `ERROR_TIERS` order.
const ERROR_TABLES: [&str; 2] = ["rollup_errors_1h", "rollup_errors_1m"];

/// Tier families, each widest first. A query reads from the first family whose labels cover
/// its grouping and filters (and which has sketches, if asked); otherwise from raw rows.
const TIER_FAMILIES: &[&[Tier]] = &[
    &[
        Tier {
            sketches: true,
            ..tier("rollup_series_1d", DAY_MS, SERIES_DIMS)
        },
        Tier {
            sketches: true,
            ..tier("rollup_series_1h", HOUR_MS, SERIES_DIMS)
        },
        Tier {
            sketches: true,
            ..tier("rollup_series_1m", MINUTE_MS, SERIES_DIMS)
        },
    ],
    // Failed requests only: a query reaches it only when grouping by error type.
    &[
        tier("rollup_errors_1h", HOUR_MS, ERROR_DIMS),
        tier("rollup_errors_1m", MINUTE_MS, ERROR_DIMS),
    ],
    &[tier("rollup_user_1h", HOUR_MS, USER_DIMS)],
];

fn column_of(dim: Dimension) -> &'static str {
    match dim {
        Dimension::Model => "model",
        Dimension::Feature => "feature",
        Dimension::User => "user_id",
        Dimension::Release => "release",
        Dimension::ErrorType => "error_type",
    }
}

pub struct SqliteStore {
    path: PathBuf,
    /// `durability = full`: `sync` fsyncs the WAL.
    durable_commits: bool,
    /// The WAL file, opened on the first `sync`.
    wal: Arc<Mutex<Option<std::fs::File>>>,
    writer: Arc<Mutex<WriterState>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// Stops the checkpointer (on drop of the store).
    _checkpointer: Checkpointer,
}

/// Copies the WAL into the database from its own thread and connection, so the single writer
/// never pays for checkpoints inside a commit. Dropping it stops the thread after a last
/// checkpoint.
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    const INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

    fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("llmwatch-checkpoint".into())
            .spawn(move || {
                loop {
                    let last = !matches!(
                        stopped.recv_timeout(Self::INTERVAL),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    );
                    // PASSIVE never blocks the writer or readers; what it cannot copy now it
                    // copies next time.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                    if last {
                        return;
                    }
                }
            })
            .map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer connection and what the writer remembers between transactions.
struct WriterState {
    conn: Connection,
    caps: DriftCaps,
    quality: QualityState,
}

impl WriterState {
    /// Runs one write. A failed write forgets the drift caps (they may list values of a
    /// transaction that rolled back); they reload from the table.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Connection, &mut DriftCaps, &mut QualityState) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let out = f(&mut self.conn, &mut self.caps, &mut self.quality);
        if out.is_err() {
            self.caps = DriftCaps::default();
            self.quality.forget();
        }
        out
    }
}

/// Hours of drift caps kept per project (the most recent ones; older hours reload on use).
const CACHED_CAP_HOURS: usize = 72;

/// The cardinality cap of the drift value counts (`rollup_values_1h`), enforced by the writer
/// without scanning the table.
///
/// Rule, per (project, UTC hour): a categorical dimension gets its own row for at most
/// `MAX_DRIFT_VALUES` distinct values: the first ones written in that hour (within one commit,
/// the most frequent first); any other value is counted as `(other)`. At most
/// `MAX_DRIFT_ATTRIBUTE_KEYS` attribute dimensions (`attributes.KEY`) are counted, again the
/// first ones; the values of other keys are not counted at all. A value or key once admitted
/// stays admitted, and one once turned away stays turned away, so a replaced record subtracts
/// exactly where it was added. Rows are never deleted (they may reach 0), so after a restart the
/// admitted values and keys are exactly the distinct ones in the table: an hour's entry is
/// loaded from it on first use (`SELECT DISTINCT ... WHERE project = ? AND bucket_ms = ?`).
#[derive(Default)]
struct DriftCaps {
    /// Project -> hour -> what is admitted.
    projects: HashMap<String, BTreeMap<i64, HourCaps>>,
}

#[derive(Default)]
struct HourCaps {
    /// Admitted dimension -> its admitted values (`(other)` is never listed).
    values: HashMap<String, HashSet<String>>,
    /// How many admitted dimensions are attribute dimensions.
    attribute_dims: usize,
}

impl HourCaps {
    /// What `value` of `dimension` is counted as: itself, `(other)`, or nothing (an attribute
    /// dimension beyond the cap).
    fn admit<'a>(&mut self, dimension: &str, value: &'a str) -> Option<&'a str> {
        let values = match self.values.get_mut(dimension) {
            Some(v) => v,
            None => {
                if dimension.starts_with(DRIFT_ATTRIBUTE_PREFIX) {
                    if self.attribute_dims >= MAX_DRIFT_ATTRIBUTE_KEYS {
                        return None;
                    }
                    self.attribute_dims += 1;
                }
                self.values.entry(dimension.to_owned()).or_default()
            }
        };
        if value == DRIFT_OTHER || values.contains(value) {
            return Some(value);
        }
        if values.len() < MAX_DRIFT_VALUES {
            values.insert(value.to_owned());
            return Some(value);
        }
        Some(DRIFT_OTHER)
    }
}

impl DriftCaps {
    /// The caps of one hour, loaded from the table on first use.
    fn hour(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        project: &str,
        bucket_ms: i64,
    ) -> Result<&mut HourCaps, StoreError> {
        if !self.projects.contains_key(project) {
            self.projects.insert(project.to_owned(), BTreeMap::new());
        }
        let Some(hours) = self.projects.get_mut(project) else {
            return Err(StoreError::Task("drift caps of a project vanished".into()));
        };
        if hours.len() >= CACHED_CAP_HOURS && !hours.contains_key(&bucket_ms) {
            hours.pop_first();
        }
        Ok(match hours.entry(bucket_ms) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(HourCaps::load(tx, project, bucket_ms)?)
            }
        })
    }
}

impl HourCaps {
    /// What is admitted in an hour: the distinct dimensions and values of its rows.
    fn load(
        tx: &rusqlite::Transaction<'_>,
        project: &str,
        bucket_ms: i64,
    ) -> Result<HourCaps, StoreError> {
        let mut caps = HourCaps::default();
        let mut stmt = tx.prepare_cached(
            "SELECT DISTINCT dimension, value FROM rollup_values_1h \
             WHERE project = ?1 AND bucket_ms = ?2",
        )?;
        let mut rows = stmt.query(params![project, bucket_ms])?;
        while let Some(row) = rows.next()? {
            let (dimension, value): (String, String) = (row.get(0)?, row.get(1)?);
            if !caps.values.contains_key(&dimension)
                && dimension.starts_with(DRIFT_ATTRIBUTE_PREFIX)
            {
                caps.attribute_dims += 1;
            }
            let values = caps.values.entry(dimension).or_default();
            if value != DRIFT_OTHER {
                values.insert(value);
            }
        }
        Ok(caps)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a connection half-used: every statement is
    // inside a transaction that rolls back on drop. Recover the guard.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`, with the default
    /// quality rules.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        Self::open_with(path, durability, QualityRules::default(), None)
    }

    /// Opens and migrates the database at `path`; `quality` says how composites and
    /// escalations are computed from now on; `heuristics` (when content is captured) score
    /// the records assembled from traces.
    pub fn open_with(
        path: &Path,
        durability: Durability,
        quality: QualityRules,
        heuristics: Option<HeuristicSet>,
    ) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path: path.display().to_string(),
                message: format!("could not enable WAL journaling (got {mode})"),
            });
        }
        // Commits do not fsync: `sync` makes them durable, on its own thread, so the writer
        // builds the next transaction while the previous one reaches the disk (`full`), or
        // never before a checkpoint (`normal`: survives a process crash, not a power loss).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "cache_size", -32_000)?; // 32 MB
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // The writer cycles through ~25 statements (records, traces, metrics, rollups); with
        // rusqlite's default cache of 16 they were re-prepared on every batch.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        register_functions(&conn)?;
        migrate(&mut conn, path, &quality)?;
        sqlite_quality::ensure_run_threshold(&mut conn, quality.threshold)?;
        // Checkpoints run on their own thread (see `Checkpointer`). Under sustained writes a
        // passive checkpoint never reaches the end of the WAL, so the WAL could not restart; the
        // writer's own checkpoint at 64 MB bounds it (cheap: most frames are already copied).
        conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
        Ok(Self {
            path: path.to_owned(),
            durable_commits: durability == Durability::Full,
            wal: Arc::new(Mutex::new(None)),
            writer: Arc::new(Mutex::new(WriterState {
                conn,
                caps: DriftCaps::default(),
                quality: QualityState::new(quality, heuristics),
            })),
            readers: Arc::new(Mutex::new(Vec::new())),
            _checkpointer: Checkpointer::start(path)?,
        })
    }

    fn open_reader(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "cache_size", -16_000)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        register_functions(&conn)?;
        Ok(conn)
    }

    /// Runs `f` on a pooled read connection on the blocking pool.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        let pooled = lock(&readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.open_reader()?,
        };
        tokio::task::spawn_blocking(move || {
            let out = f(&conn);
            let mut pool = lock(&readers);
            if pool.len() < 8 {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` on the writer connection on the blocking pool.
    /// Runs `f` on the writer connection (writes outside the ingest caches: alerts).
    pub(super) async fn write_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_with(move |conn, _, _| f(conn)).await
    }

    async fn write_with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &mut DriftCaps, &mut QualityState) -> Result<T, StoreError>
            + Send
            + 'static,
    {
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || lock(&writer).run(f))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn migrate(conn: &mut Connection, path: &Path, rules: &QualityRules) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            path: path.display().to_string(),
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        if i + 1 == DRIFT_MIGRATION {
            backfill_drift(&tx)?;
        }
        if i + 1 == QUALITY_MIGRATION {
            backfill_quality(&tx, rules)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}

/// The schema version that adds the drift rollups (0003), backfilled from stored requests.
const DRIFT_MIGRATION: usize = 3;

/// The schema version that adds the quality state (0004), backfilled from stored scores.
const QUALITY_MIGRATION: usize = 4;

/// Gives every request scored before migration 0004 (trace evaluations) its quality state
/// and rollup contribution, as a score written now would.
fn backfill_quality(
    tx: &rusqlite::Transaction<'_>,
    rules: &QualityRules,
) -> Result<(), StoreError> {
    let mut touched = Touched::default();
    let mut stmt = tx.prepare("SELECT DISTINCT project, request_id FROM scores")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        touched.add(row.get_ref(0)?.as_str()?, row.get_ref(1)?.as_str()?);
    }
    drop(rows);
    drop(stmt);
    let mut state = QualityState::new(rules.clone(), None);
    sqlite_quality::settle(
        tx,
        touched,
        &mut state,
        chrono::Utc::now().timestamp_millis(),
    )
}

/// Records folded per backfill flush.
const BACKFILL_CHUNK: usize = 20_000;

/// Folds every stored request into the drift rollups, in time order per project, exactly as
/// ingest would have (same fold, same cardinality cap): part of migration 0003. Reads only the
/// columns drift uses (the texts' lengths, not the texts).
fn backfill_drift(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let projects: Vec<String> = tx
        .prepare("SELECT DISTINCT project FROM requests")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut caps = DriftCaps::default();
    let mut total = 0usize;
    for project in projects {
        let mut stmt = tx.prepare(
            "SELECT ts_ms, model, feature, release, status, error_type, attributes, \
             input_tokens, output_tokens, duration_ms, ttft_ms, cost_nanos, \
             COALESCE(input_chars, length(input)), COALESCE(output_chars, length(output)) \
             FROM requests WHERE project = ?1 ORDER BY ts_ms",
        )?;
        let mut rows = stmt.query(params![project])?;
        let mut delta = RollupDelta::default();
        let mut folded = 0usize;
        while let Some(row) = rows.next()? {
            let count =
                |i: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, i64>(i)?.max(0) as u64) };
            let chars = |i: usize| -> rusqlite::Result<Option<u64>> {
                Ok(row.get::<_, Option<i64>>(i)?.map(|c| c.max(0) as u64))
            };
            let attributes: Option<String> = row.get(6)?;
            let attributes = match attributes.as_deref().map(serde_json::from_str).transpose() {
                Ok(a) => a.unwrap_or_default(),
                Err(e) => return Err(StoreError::Corrupt(format!("attributes: {e}"))),
            };
            let status: String = row.get(4)?;
            let record = Record {
                request_id: String::new(),
                timestamp_ms: row.get(0)?,
                model: row.get(1)?,
                provider: None,
                usage: Usage {
                    input_tokens: count(7)?,
                    output_tokens: count(8)?,
                    ..Usage::default()
                },
                user_id: None,
                feature: row.get(2)?,
                session_id: None,
                release: row.get(3)?,
                status: if status == "error" {
                    Status::Error
                } else {
                    Status::Ok
                },
                error_type: row.get(5)?,
                stages: BTreeMap::new(),
                duration_ms: row.get(9)?,
                ttft_ms: row.get(10)?,
                attributes,
                input: None,
                output: None,
                input_chars: chars(12)?,
                output_chars: chars(13)?,
                scores: Vec::new(),
            };
            delta.add_drift(&PricedRecord {
                record,
                cost_nanos: row.get(11)?,
            });
            folded += 1;
            if folded % BACKFILL_CHUNK == 0 {
                apply_drift(tx, &project, &std::mem::take(&mut delta), &mut caps)?;
            }
        }
        apply_drift(tx, &project, &delta, &mut caps)?;
        total += folded;
    }
    if total > 0 {
        tracing::info!(requests = total, "drift rollups backfilled");
    }
    Ok(())
}

fn opt_json<T: serde::Serialize>(map: &BTreeMap<String, T>) -> Option<String> {
    if map.is_empty() {
        None
    } else {
        serde_json::to_string(map).ok()
    }
}

fn user_error(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(Box::new(e))
}

/// Merges encoded sketch sets inside SQLite: `llmwatch_sketch_agg(blob)`.
struct SketchAgg;

impl Aggregate<SketchSet, Option<Vec<u8>>> for SketchAgg {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<SketchSet> {
        Ok(SketchSet::new())
    }
    fn step(&self, ctx: &mut Context<'_>, acc: &mut SketchSet) -> rusqlite::Result<()> {
        if let Some(bytes) = ctx.get_raw(0).as_blob_or_null()? {
            acc.merge(&SketchSet::from_bytes(bytes).map_err(user_error)?);
        }
        Ok(())
    }
    fn finalize(
        &self,
        _: &mut Context<'_>,
        acc: Option<SketchSet>,
    ) -> rusqlite::Result<Option<Vec<u8>>> {
        Ok(acc.filter(|s| !s.is_empty()).map(|s| s.to_bytes()))
    }
}

/// Builds the drift sketches of raw rows inside SQLite:
/// `llmwatch_drift_sketch_agg(input_tokens, output_tokens, duration_ms, ttft_ms, cost_nanos,
/// input_chars, output_chars)`, values inserted directly (no per-row encoding).
struct DriftSketchAgg;

impl Aggregate<SketchSet, Option<Vec<u8>>> for DriftSketchAgg {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<SketchSet> {
        Ok(SketchSet::new())
    }
    fn step(&self, ctx: &mut Context<'_>, acc: &mut SketchSet) -> rusqlite::Result<()> {
        add_numeric(acc, &drift_values_of(ctx)?);
        Ok(())
    }
    fn finalize(
        &self,
        _: &mut Context<'_>,
        acc: Option<SketchSet>,
    ) -> rusqlite::Result<Option<Vec<u8>>> {
        Ok(acc.filter(|s| !s.is_empty()).map(|s| s.to_bytes()))
    }
}

/// The numeric drift values of a raw row given as the 7 arguments of a drift function.
fn drift_values_of(ctx: &Context<'_>) -> rusqlite::Result<[Option<f64>; 7]> {
    let count = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(ctx.get::<Option<i64>>(i)?.map(|n| n.max(0) as u64))
    };
    Ok(numeric_values(
        count(0)?.unwrap_or(0),
        count(1)?.unwrap_or(0),
        ctx.get(2)?,
        ctx.get(3)?,
        ctx.get(4)?,
        count(5)?,
        count(6)?,
    ))
}

/// Registers the sketch functions on a connection:
/// `llmwatch_sketch_merge(a, b)` (upserts), `llmwatch_sketch_agg(s)` (queries),
/// `llmwatch_sketch_of(duration_ms, ttft_ms, stages_json)` (sketches of one raw row) and
/// `llmwatch_drift_sketch_agg(...)` (drift sketches of raw rows, see `DriftSketchAgg`).
fn register_functions(conn: &Connection) -> Result<(), StoreError> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("llmwatch_sketch_merge", 2, flags, |ctx| {
        let a = ctx.get_raw(0).as_blob_or_null()?;
        let b = ctx.get_raw(1).as_blob_or_null()?;
        Ok(match (a, b) {
            (None, None) => None,
            (Some(x), None) | (None, Some(x)) => Some(x.to_vec()),
            (Some(a), Some(b)) => Some(merge_encoded(a, b).map_err(user_error)?),
        })
    })?;
    conn.create_aggregate_function("llmwatch_sketch_agg", 1, flags, SketchAgg)?;
    conn.create_scalar_function("llmwatch_sketch_of", 3, flags, |ctx| {
        let stages: BTreeMap<String, f64> = match ctx.get::<Option<String>>(2)? {
            Some(json) => serde_json::from_str(&json).map_err(user_error)?,
            None => BTreeMap::new(),
        };
        let mut set = SketchSet::new();
        add_latencies(&mut set, ctx.get(0)?, ctx.get(1)?, &stages);
        Ok(set.to_bytes())
    })?;
    conn.create_aggregate_function("llmwatch_drift_sketch_agg", 7, flags, DriftSketchAgg)?;
    Ok(())
}

static INSERT_REQUEST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO requests (project, {REQUEST_COLUMNS}, spans) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27) \
         ON CONFLICT (project, request_id) DO NOTHING"
    )
});
static SELECT_REQUEST: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE project = ?1 AND request_id = ?2")
});
const DELETE_REQUEST: &str = "DELETE FROM requests WHERE project = ?1 AND request_id = ?2";

/// Stores one record (with the encoded spans of its trace, if it came from one): a record whose
/// request_id is already stored replaces it, in raw rows and in every rollup (through `delta`),
/// so a retried request is never counted twice. Returns whether it replaced one.
fn put_record(
    tx: &rusqlite::Transaction<'_>,
    project: &str,
    pr: &PricedRecord,
    spans: Option<&[u8]>,
    delta: &mut RollupDelta,
) -> Result<bool, StoreError> {
    let r = &pr.record;
    let stages = opt_json(&r.stages);
    let attributes = opt_json(&r.attributes);
    let params = params![
        project,
        r.request_id,
        r.timestamp_ms,
        r.model,
        r.provider,
        r.usage.input_tokens as i64,
        r.usage.output_tokens as i64,
        r.usage.cached_input_tokens as i64,
        r.usage.cache_write_tokens as i64,
        r.usage.reasoning_tokens as i64,
        pr.cost_nanos,
        r.user_id,
        r.feature,
        r.session_id,
        r.release,
        r.status.as_str(),
        r.error_type,
        r.duration_ms,
        r.ttft_ms,
        stages,
        attributes,
        r.input,
        r.output,
        r.unaccounted_ms(),
        r.input_chars.map(|c| c as i64),
        r.output_chars.map(|c| c as i64),
        spans,
    ];
    let mut insert = tx.prepare_cached(&INSERT_REQUEST)?;
    if insert.execute(params)? > 0 {
        delta.add(pr);
        return Ok(false);
    }
    let old = take_record(tx, project, &r.request_id)?
        .ok_or_else(|| StoreError::Corrupt("request vanished during its replacement".into()))?;
    insert.execute(params)?;
    delta.replace(&old, pr);
    Ok(true)
}

/// Deletes a stored record and returns it (its rollup contribution is the caller's to remove).
fn take_record(
    tx: &rusqlite::Transaction<'_>,
    project: &str,
    request_id: &str,
) -> Result<Option<PricedRecord>, StoreError> {
    let old = tx
        .prepare_cached(&SELECT_REQUEST)?
        .query_row(params![project, request_id], row_to_priced)
        .optional()?;
    let Some(old) = old else { return Ok(None) };
    let old = old.map_err(StoreError::Corrupt)?;
    tx.prepare_cached(DELETE_REQUEST)?
        .execute(params![project, request_id])?;
    Ok(Some(old))
}

fn write_batch(
    conn: &mut Connection,
    caps: &mut DriftCaps,
    quality: &mut QualityState,
    project: &str,
    batch: &[PricedRecord],
) -> Result<WriteSummary, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut summary = WriteSummary::default();
    let mut delta = RollupDelta::default();
    let mut touched = Touched::default();
    for (index, pr) in batch.iter().enumerate() {
        let replaced = put_record(&tx, project, pr, None, &mut delta)?;
        if replaced {
            summary.replaced.push(index);
        } else {
            summary.inserted += 1;
        }
        note_quality(&tx, quality, project, pr, replaced, &mut touched)?;
    }
    delta.finish();
    apply_delta(&tx, project, &delta, caps)?;
    sqlite_quality::settle(&tx, touched, quality, now_ms())?;
    tx.commit()?;
    Ok(summary)
}

/// Wall-clock time at the storage edge (when an escalation was detected).
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Stores the scores a record came with, and lists the record for quality settling when
/// its quality may have changed: it has scores, replaced a record (its labels may differ),
/// or scores were waiting for it.
fn note_quality(
    tx: &rusqlite::Transaction<'_>,
    quality: &mut QualityState,
    project: &str,
    pr: &PricedRecord,
    replaced: bool,
    touched: &mut Touched,
) -> Result<(), StoreError> {
    let id = &pr.record.request_id;
    let awaited = quality.is_awaited(tx, project, id)?;
    if !pr.record.scores.is_empty() {
        if replaced || awaited {
            sqlite_quality::put_scores(tx, project, &pr.record.scores, touched)?;
        } else {
            // Nothing stored before: settle from what is in hand, without reading it back.
            sqlite_quality::put_score_rows(tx, project, &pr.record.scores)?;
            touched.add_fresh(project, id, Fresh::of(&pr.record));
        }
    } else if replaced || awaited {
        touched.add(project, id);
    }
    Ok(())
}

/// First byte of an encoded span list: bump when `SpanSummary` changes shape.
const SPANS_FORMAT: u8 = 1;

fn encode_spans(spans: &[SpanSummary]) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(spans, vec![SPANS_FORMAT])
        .map_err(|e| StoreError::Corrupt(format!("cannot encode spans: {e}")))
}

fn decode_spans(bytes: &[u8]) -> Result<Vec<SpanSummary>, StoreError> {
    match bytes.split_first() {
        Some((&SPANS_FORMAT, rest)) => postcard::from_bytes(rest)
            .map_err(|e| StoreError::Corrupt(format!("stored spans: {e}"))),
        _ => Err(StoreError::Corrupt("stored spans: unknown format".into())),
    }
}

/// What is stored of a trace.
struct TraceRow {
    spans: Vec<SpanSummary>,
    /// The record the trace became, if any.
    request_id: Option<String>,
    /// The trace has a row in `otlp_traces` (pending, or recorded under another id).
    listed: bool,
    pending_since_ms: Option<i64>,
}

/// Finds a trace: pending or recorded under another id (`otlp_traces`), else recorded under its
/// hex id with its spans in the request row.
fn load_trace(
    tx: &rusqlite::Transaction<'_>,
    project: &str,
    trace_id: &[u8; 16],
) -> Result<Option<TraceRow>, StoreError> {
    let listed = tx
        .prepare_cached(
            "SELECT spans, request_id, pending_since_ms FROM otlp_traces \
             WHERE project = ?1 AND trace_id = ?2",
        )?
        .query_row(params![project, &trace_id[..]], |r| {
            Ok((
                r.get::<_, Option<Vec<u8>>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })
        .optional()?;
    let (pending_spans, request_id, pending_since_ms) = match listed {
        Some(row) => (row.0, row.1, row.2),
        None => (None, None, None),
    };
    if let Some(blob) = pending_spans {
        return Ok(Some(TraceRow {
            spans: decode_spans(&blob)?,
            request_id,
            listed: true,
            pending_since_ms,
        }));
    }
    let id = request_id.clone().unwrap_or_else(|| hex(trace_id));
    let recorded: Option<Option<Vec<u8>>> = tx
        .prepare_cached("SELECT spans FROM requests WHERE project = ?1 AND request_id = ?2")?
        .query_row(params![project, id], |r| r.get(0))
        .optional()?;
    Ok(match recorded {
        // A record of this id from a trace: its spans.
        Some(Some(blob)) => Some(TraceRow {
            spans: decode_spans(&blob)?,
            request_id: Some(id),
            listed: request_id.is_some(),
            pending_since_ms: None,
        }),
        // Nothing, or a record of this id sent as an event: the trace starts afresh (and
        // replaces that record once complete).
        _ if request_id.is_some() => Some(TraceRow {
            spans: Vec::new(),
            request_id,
            listed: true,
            pending_since_ms: None,
        }),
        _ => None,
    })
}

const DELETE_TRACE: &str = "DELETE FROM otlp_traces WHERE project = ?1 AND trace_id = ?2";
const UPSERT_TRACE: &str = "INSERT INTO otlp_traces (project, trace_id, spans, span_count, \
     request_id, pending_since_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (project, trace_id) DO UPDATE SET spans = excluded.spans, \
     span_count = excluded.span_count, request_id = excluded.request_id, \
     pending_since_ms = excluded.pending_since_ms, updated_ms = excluded.updated_ms";

/// Re-assembles one trace after its spans changed (or its grace period ended) and stores the
/// outcome: the record with its spans (replacing the trace's earlier record), the trace's
/// listing, and its scores.
#[allow(clippy::too_many_arguments)]
fn settle_trace(
    tx: &rusqlite::Transaction<'_>,
    project: &str,
    trace_id: &[u8; 16],
    row: TraceRow,
    force: bool,
    now_ms: i64,
    prices: &PriceTable,
    delta: &mut RollupDelta,
    summary: &mut TraceWriteSummary,
    quality: &mut QualityState,
    touched: &mut Touched,
) -> Result<(), StoreError> {
    let blob = encode_spans(&row.spans)?;
    match assemble(trace_id, &row.spans, force, prices) {
        Assembly::Record {
            priced,
            evaluations,
        } => {
            let id = priced.record.request_id.clone();
            let id = id.as_str();
            // The trace's record may be stored under another id (an id attribute that arrived
            // later): remove that one first.
            if let Some(old_id) = row.request_id.as_deref()
                && old_id != id
                && let Some(old) = take_record(tx, project, old_id)?
            {
                delta.remove(&old);
                touched.add(project, old_id);
            }
            let replaced = put_record(tx, project, &priced, Some(&blob), delta)?;
            if replaced {
                summary.updated_records += 1;
            } else {
                summary.new_records.push((*priced).clone());
            }
            let mut with_scores = priced;
            let heuristic = quality.heuristics.as_ref().map(|set| {
                heuristic_scores(&with_scores.record, set, with_scores.record.timestamp_ms)
            });
            with_scores.record.scores = evaluations
                .iter()
                .filter(|e| crate::core::quality::check_score(&e.name, e.score).is_ok())
                .map(|e| Score {
                    request_id: id.to_owned(),
                    name: e.name.clone(),
                    value: e.score,
                    source: ScoreSource::Api,
                    comment: None,
                    ts_ms: with_scores.record.timestamp_ms,
                })
                .collect();
            with_scores
                .record
                .scores
                .extend(heuristic.into_iter().flatten());
            note_quality(tx, quality, project, &with_scores, replaced, touched)?;
            // Found again by its hex id, or listed with the id it has.
            if id == hex(trace_id) {
                if row.listed {
                    tx.prepare_cached(DELETE_TRACE)?
                        .execute(params![project, &trace_id[..]])?;
                }
            } else {
                tx.prepare_cached(UPSERT_TRACE)?.execute(params![
                    project,
                    &trace_id[..],
                    None::<Vec<u8>>,
                    row.spans.len() as i64,
                    id,
                    None::<i64>,
                    now_ms
                ])?;
            }
        }
        Assembly::NotLlm => {
            tx.prepare_cached(DELETE_TRACE)?
                .execute(params![project, &trace_id[..]])?;
            summary.dropped_traces += 1;
        }
        Assembly::Pending => {
            summary.pending_traces += 1;
            tx.prepare_cached(UPSERT_TRACE)?.execute(params![
                project,
                &trace_id[..],
                blob,
                row.spans.len() as i64,
                row.request_id,
                row.pending_since_ms.unwrap_or(now_ms),
                now_ms
            ])?;
        }
    }
    Ok(())
}

fn write_trace_batch(
    conn: &mut Connection,
    caps: &mut DriftCaps,
    quality: &mut QualityState,
    project: &str,
    batch: TraceBatch,
) -> Result<TraceWriteSummary, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut summary = TraceWriteSummary::default();
    let mut delta = RollupDelta::default();
    let mut touched = Touched::default();
    // Fragments of one trace in this batch are merged first: one assembly per trace.
    let mut by_trace: Vec<([u8; 16], Vec<SpanSummary>)> = Vec::new();
    let mut index: HashMap<[u8; 16], usize> = HashMap::new();
    for f in batch.fragments {
        match index.get(&f.trace_id) {
            Some(&i) => {
                merge_spans(&mut by_trace[i].1, f.spans);
            }
            None => {
                index.insert(f.trace_id, by_trace.len());
                let mut spans = Vec::with_capacity(f.spans.len());
                merge_spans(&mut spans, f.spans);
                by_trace.push((f.trace_id, spans));
            }
        }
    }
    // Services sending traces: their GenAI metrics would count the same requests twice.
    let mut services: Vec<&str> = Vec::new();
    for (_, spans) in &by_trace {
        for name in spans.iter().filter_map(|s| s.service_name.as_deref()) {
            if !services.contains(&name) {
                services.push(name);
            }
        }
    }
    let mut seen = tx.prepare_cached(
        "INSERT INTO otlp_services (project, service, last_trace_ms) VALUES (?1, ?2, ?3) \
         ON CONFLICT (project, service) DO UPDATE SET last_trace_ms = \
         MAX(last_trace_ms, excluded.last_trace_ms)",
    )?;
    for name in services {
        seen.execute(params![project, name, batch.received_ms])?;
    }
    drop(seen);
    for (trace_id, spans) in by_trace {
        let trace_id = &trace_id;
        let row = match load_trace(&tx, project, trace_id)? {
            Some(mut row) => {
                if !merge_spans(&mut row.spans, spans) {
                    continue; // every span already stored as is: nothing changes
                }
                row
            }
            None => TraceRow {
                spans,
                request_id: None,
                listed: false,
                pending_since_ms: None,
            },
        };
        settle_trace(
            &tx,
            project,
            trace_id,
            row,
            false,
            batch.received_ms,
            &batch.prices,
            &mut delta,
            &mut summary,
            quality,
            &mut touched,
        )?;
    }
    delta.finish();
    apply_delta(&tx, project, &delta, caps)?;
    sqlite_quality::settle(&tx, touched, quality, now_ms())?;
    tx.commit()?;
    Ok(summary)
}

fn write_metric_batch(
    conn: &mut Connection,
    caps: &mut DriftCaps,
    project: &str,
    batch: &MetricBatch,
) -> Result<MetricWriteSummary, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut summary = MetricWriteSummary::default();
    let mut delta = RollupDelta::default();
    {
        let mut traced = tx.prepare_cached(
            "SELECT 1 FROM otlp_services WHERE project = ?1 AND service = ?2 AND last_trace_ms >= ?3",
        )?;
        let mut load = tx.prepare_cached(
            "SELECT start_ns, time_ns, count, sum FROM otlp_metric_streams \
             WHERE project = ?1 AND stream = ?2",
        )?;
        let mut save = tx.prepare_cached(
            "INSERT INTO otlp_metric_streams (project, stream, start_ns, time_ns, count, sum) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (project, stream) DO UPDATE SET \
             start_ns = excluded.start_ns, time_ns = excluded.time_ns, count = excluded.count, \
             sum = excluded.sum",
        )?;
        for p in &batch.points {
            if let Some(service) = &p.service
                && traced.exists(params![
                    project,
                    service,
                    batch.received_ms - TRACED_SERVICE_MS
                ])?
            {
                summary.traced += 1;
                continue;
            }
            let prev = load
                .query_row(params![project, p.stream], |r| {
                    Ok(StreamState {
                        start_ns: r.get::<_, i64>(0)? as u64,
                        time_ns: r.get::<_, i64>(1)? as u64,
                        count: r.get::<_, i64>(2)? as u64,
                        sum: r.get(3)?,
                    })
                })
                .optional()?;
            let Some((count, sum)) = metric_delta(prev.as_ref(), p) else {
                summary.stale += 1;
                continue;
            };
            save.execute(params![
                project,
                p.stream,
                p.start_ns as i64,
                p.time_ns as i64,
                p.count as i64,
                p.sum
            ])?;
            let t = contribution(p, count, sum, &batch.prices);
            delta.add_aggregate(
                (p.time_ns / 1_000_000) as i64,
                &p.model,
                p.feature.as_deref(),
                p.release.as_deref(),
                p.error_type.as_deref(),
                &t,
            );
            summary.applied += 1;
        }
    }
    apply_delta(&tx, project, &delta, caps)?;
    tx.commit()?;
    Ok(summary)
}

/// Most pending traces settled in one flush transaction (the rest wait for the next flush).
const FLUSH_LIMIT: i64 = 10_000;

fn flush_pending(
    conn: &mut Connection,
    caps: &mut DriftCaps,
    quality: &mut QualityState,
    cutoff_ms: i64,
    prices: &PriceTable,
) -> Result<TraceWriteSummary, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut summary = TraceWriteSummary::default();
    let due: Vec<(String, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT project, trace_id FROM otlp_traces \
             WHERE pending_since_ms IS NOT NULL AND pending_since_ms < ?1 \
             ORDER BY project LIMIT ?2",
        )?
        .query_map(params![cutoff_ms, FLUSH_LIMIT], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut deltas: Vec<(String, RollupDelta)> = Vec::new();
    let mut touched = Touched::default();
    for (project, trace_id) in due {
        let trace_id: [u8; 16] = trace_id
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("trace id is not 16 bytes".into()))?;
        let Some(row) = load_trace(&tx, &project, &trace_id)? else {
            continue;
        };
        if deltas.last().is_none_or(|(p, _)| *p != project) {
            deltas.push((project.clone(), RollupDelta::default()));
        }
        let delta = &mut deltas.last_mut().expect("pushed above").1;
        settle_trace(
            &tx,
            &project,
            &trace_id,
            row,
            true,
            cutoff_ms,
            prices,
            delta,
            &mut summary,
            quality,
            &mut touched,
        )?;
    }
    for (project, mut delta) in deltas {
        delta.finish();
        apply_delta(&tx, &project, &delta, caps)?;
    }
    sqlite_quality::settle(&tx, touched, quality, now_ms())?;
    tx.commit()?;
    Ok(summary)
}

fn upsert_sql(table: &str, key_columns: &[&str], sketches: bool) -> String {
    let mut cols: Vec<&str> = key_columns
        .iter()
        .chain(METRIC_COLUMNS.iter())
        .copied()
        .collect();
    let mut updates: Vec<String> = METRIC_COLUMNS
        .iter()
        .map(|c| format!("{c} = {c} + excluded.{c}"))
        .collect();
    if sketches {
        cols.push("sketches");
        updates.push("sketches = llmwatch_sketch_merge(sketches, excluded.sketches)".into());
    }
    let placeholders: Vec<String> = (1..=cols.len() + 1).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {table} (project, {}) VALUES ({}) ON CONFLICT (project, {}) DO UPDATE SET {}",
        cols.join(", "),
        placeholders.join(", "),
        key_columns.join(", "),
        updates.join(", ")
    )
}

fn metric_values(t: &Totals) -> [SqlValue; 12] {
    [
        SqlValue::Integer(t.requests),
        SqlValue::Integer(t.errors),
        SqlValue::Integer(t.input_tokens),
        SqlValue::Integer(t.output_tokens),
        SqlValue::Integer(t.cached_input_tokens),
        SqlValue::Integer(t.cache_write_tokens),
        SqlValue::Integer(t.reasoning_tokens),
        SqlValue::Integer(t.cost_nanos),
        SqlValue::Integer(t.unpriced_requests),
        SqlValue::Integer(t.unpriced_tokens),
        SqlValue::Real(t.duration_ms_sum),
        SqlValue::Real(t.unaccounted_ms_sum),
    ]
}

fn series_key_values(project: &str, k: &SeriesKey) -> Vec<SqlValue> {
    vec![
        SqlValue::Text(project.to_owned()),
        SqlValue::Integer(k.bucket_ms),
        SqlValue::Text(k.model.clone()),
        SqlValue::Text(k.feature.clone()),
        SqlValue::Text(k.release.clone()),
    ]
}

fn apply_delta(
    tx: &rusqlite::Transaction<'_>,
    project: &str,
    delta: &RollupDelta,
    caps: &mut DriftCaps,
) -> Result<(), StoreError> {
    apply_drift(tx, project, delta, caps)?;
    let series_keys = ["bucket_ms", "model", "feature", "release"];
    let mut rebuild: Vec<(usize, &SeriesKey)> = Vec::new();
    for (tier, map) in delta.series.iter().enumerate() {
        let mut stmt = tx.prepare_cached(&upsert_sql(SERIES_TABLES[tier], &series_keys, true))?;
        for (k, row) in map {
            let mut values = series_key_values(project, k);
            values.extend(metric_values(&row.totals));
            values.push(if row.rebuild || row.sketches.is_empty() {
                SqlValue::Null
            } else {
                SqlValue::Blob(row.sketches.to_bytes())
            });
            stmt.execute(rusqlite::params_from_iter(values))?;
            if row.rebuild {
                rebuild.push((tier, k));
            }
        }
    }
    for (tier, k) in rebuild {
        rebuild_sketches(tx, project, tier, k)?;
    }
    let error_keys = ["bucket_ms", "model", "feature", "release", "error_type"];
    for (tier, map) in delta.errors.iter().enumerate() {
        let mut stmt = tx.prepare_cached(&upsert_sql(ERROR_TABLES[tier], &error_keys, false))?;
        for (k, t) in map {
            let mut values = series_key_values(project, &k.series);
            values.push(SqlValue::Text(k.error_type.clone()));
            values.extend(metric_values(t));
            stmt.execute(rusqlite::params_from_iter(values))?;
        }
    }
    let mut stmt = tx.prepare_cached(&upsert_sql(
        "rollup_user_1h",
        &["bucket_ms", "user_id"],
        false,
    ))?;
    for (k, t) in &delta.user_hour {
        let mut values = vec![
            SqlValue::Text(project.to_owned()),
            SqlValue::Integer(k.bucket_ms),
            SqlValue::Text(k.user_id.clone()),
        ];
        values.extend(metric_values(t));
        stmt.execute(rusqlite::params_from_iter(values))?;
    }
    Ok(())
}

/// Writes the drift rollups of a delta: value counts through the cardinality cap, one upsert
/// per distinct row, and numeric sketches merged per (hour, model, feature) (or rebuilt from
/// raw rows).
fn apply_drift(
    tx: &rusqlite::Transaction<'_>,
    project: &str,
    delta: &RollupDelta,
    caps: &mut DriftCaps,
) -> Result<(), StoreError> {
    type Counts<'a> = Vec<(i64, Cow<'a, str>, &'a str, &'a str, &'a str, i64)>;
    let mut counts: Counts<'_> = Vec::new();
    let mut numeric: FxHashMap<(i64, &str, &str), (SketchSet, bool)> = FxHashMap::default();
    for (k, row) in delta.hour_rows() {
        let d = &row.drift;
        for (dimension, value, n) in d.counts(k) {
            counts.push((k.bucket_ms, dimension, value, &k.model, &k.feature, n));
        }
        if d.rebuild || d.has_sketches() {
            let entry = numeric
                .entry((k.bucket_ms, &k.model, &k.feature))
                .or_default();
            entry.1 |= d.rebuild;
            d.merge_sketches_into(&mut entry.0);
        }
    }
    if !counts.is_empty() {
        // Under the cap, the most frequent values of a commit are admitted first.
        counts.sort_by_key(|c| std::cmp::Reverse(c.5.abs()));
        let mut rows: FxHashMap<(i64, &str, &str, &str, &str), i64> = FxHashMap::default();
        for (bucket_ms, dimension, value, model, feature, n) in &counts {
            if let Some(value) = caps.hour(tx, project, *bucket_ms)?.admit(dimension, value) {
                *rows
                    .entry((*bucket_ms, dimension, value, model, feature))
                    .or_insert(0) += n;
            }
        }
        upsert_values(tx, project, rows.into_iter().filter(|(_, n)| *n != 0))?;
    }
    if !numeric.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO rollup_numeric_1h (project, bucket_ms, model, feature, sketches) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (project, bucket_ms, model, feature) \
             DO UPDATE SET sketches = llmwatch_sketch_merge(sketches, excluded.sketches)",
        )?;
        let mut rebuild = Vec::new();
        for ((bucket_ms, model, feature), (sketches, rebuild_row)) in numeric {
            let blob = (!rebuild_row && !sketches.is_empty()).then(|| sketches.to_bytes());
            stmt.execute(params![project, bucket_ms, model, feature, blob])?;
            if rebuild_row {
                rebuild.push((bucket_ms, model, feature));
            }
        }
        let mut stmt = tx.prepare_cached(
            "UPDATE rollup_numeric_1h SET sketches = (
                 SELECT llmwatch_drift_sketch_agg(input_tokens, output_tokens, duration_ms,
                     ttft_ms, cost_nanos, COALESCE(input_chars, length(input)),
                     COALESCE(output_chars, length(output)))
                 FROM requests
                 WHERE project = ?1 AND ts_ms >= ?2 AND ts_ms < ?2 + ?5 AND model = ?3
                   AND COALESCE(feature, '') = ?4)
             WHERE project = ?1 AND bucket_ms = ?2 AND model = ?3 AND feature = ?4",
        )?;
        for (bucket_ms, model, feature) in rebuild {
            stmt.execute(params![project, bucket_ms, model, feature, HOUR_MS])?;
        }
    }
    Ok(())
}

/// Rows per multi-row upsert of value counts (fewer statements per commit).
const VALUES_PER_UPSERT: usize = 32;

static UPSERT_VALUES: LazyLock<[String; 2]> = LazyLock::new(|| {
    let sql = |rows: usize| {
        let tuples: Vec<String> = (0..rows)
            .map(|i| {
                let p: Vec<String> = (1..=7).map(|j| format!("?{}", i * 7 + j)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        format!(
            "INSERT INTO rollup_values_1h (project, bucket_ms, dimension, value, model, feature, \
             count) VALUES {} ON CONFLICT (project, bucket_ms, dimension, value, model, feature) \
             DO UPDATE SET count = count + excluded.count",
            tuples.join(", ")
        )
    };
    [sql(1), sql(VALUES_PER_UPSERT)]
});

/// Adds value counts to `rollup_values_1h`: full groups of `VALUES_PER_UPSERT` rows in one
/// statement each, the rest one by one.
fn upsert_values<'a>(
    tx: &rusqlite::Transaction<'_>,
    project: &str,
    rows: impl Iterator<Item = ((i64, &'a str, &'a str, &'a str, &'a str), i64)>,
) -> Result<(), StoreError> {
    let rows: Vec<_> = rows.collect();
    let mut chunks = rows.chunks_exact(VALUES_PER_UPSERT);
    if chunks.len() > 0 {
        let mut stmt = tx.prepare_cached(&UPSERT_VALUES[1])?;
        for chunk in chunks.by_ref() {
            let mut i = 1;
            for ((bucket_ms, dimension, value, model, feature), n) in chunk {
                stmt.raw_bind_parameter(i, project)?;
                stmt.raw_bind_parameter(i + 1, bucket_ms)?;
                stmt.raw_bind_parameter(i + 2, dimension)?;
                stmt.raw_bind_parameter(i + 3, value)?;
                stmt.raw_bind_parameter(i + 4, model)?;
                stmt.raw_bind_parameter(i + 5, feature)?;
                stmt.raw_bind_parameter(i + 6, n)?;
                i += 7;
            }
            stmt.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut stmt = tx.prepare_cached(&UPSERT_VALUES[0])?;
        for ((bucket_ms, dimension, value, model, feature), n) in rest {
            stmt.execute(params![
                project, bucket_ms, dimension, value, model, feature, n
            ])?;
        }
    }
    Ok(())
}

/// Recomputes one series row's sketches from the raw rows of its bucket (after a replaced
/// record changed latencies: exact, including min and max).
fn rebuild_sketches(
    tx: &rusqlite::Transaction<'_>,
    project: &str,
    tier: usize,
    k: &SeriesKey,
) -> Result<(), StoreError> {
    let table = SERIES_TABLES[tier];
    let mut stmt = tx.prepare_cached(&format!(
        "UPDATE {table} SET sketches = (
             SELECT llmwatch_sketch_agg(llmwatch_sketch_of(duration_ms, ttft_ms, stages))
             FROM requests
             WHERE project = ?1 AND ts_ms >= ?2 AND ts_ms < ?2 + ?6 AND model = ?3
               AND COALESCE(feature, '') = ?4 AND COALESCE(release, '') = ?5)
         WHERE project = ?1 AND bucket_ms = ?2 AND model = ?3 AND feature = ?4 AND release = ?5"
    ))?;
    stmt.execute(params![
        project,
        k.bucket_ms,
        k.model,
        k.feature,
        k.release,
        SERIES_TIERS[tier]
    ])?;
    Ok(())
}

/// Reads a `REQUEST_COLUMNS` row. The inner error is a corrupt-row description.
fn row_to_priced(row: &Row<'_>) -> rusqlite::Result<Result<PricedRecord, String>> {
    let tokens = |i: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, i64>(i)?.max(0) as u64) };
    let status: String = row.get(14)?;
    let stages: Option<String> = row.get(18)?;
    let attributes: Option<String> = row.get(19)?;
    let stages = match stages.as_deref().map(serde_json::from_str).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return Ok(Err(format!("stages: {e}"))),
    };
    let attributes = match attributes.as_deref().map(serde_json::from_str).transpose() {
        Ok(a) => a.unwrap_or_default(),
        Err(e) => return Ok(Err(format!("attributes: {e}"))),
    };
    let record = Record {
        request_id: row.get(0)?,
        timestamp_ms: row.get(1)?,
        model: row.get(2)?,
        provider: row.get(3)?,
        usage: Usage {
            input_tokens: tokens(4)?,
            output_tokens: tokens(5)?,
            cached_input_tokens: tokens(6)?,
            cache_write_tokens: tokens(7)?,
            reasoning_tokens: tokens(8)?,
        },
        user_id: row.get(10)?,
        feature: row.get(11)?,
        session_id: row.get(12)?,
        release: row.get(13)?,
        status: if status == "error" {
            Status::Error
        } else {
            Status::Ok
        },
        error_type: row.get(15)?,
        duration_ms: row.get(16)?,
        ttft_ms: row.get(17)?,
        stages,
        attributes,
        input: row.get(20)?,
        output: row.get(21)?,
        input_chars: row.get::<_, Option<i64>>(23)?.map(|c| c.max(0) as u64),
        output_chars: row.get::<_, Option<i64>>(24)?.map(|c| c.max(0) as u64),
        scores: Vec::new(),
    };
    Ok(Ok(PricedRecord {
        record,
        cost_nanos: row.get(9)?,
    }))
}

/// Builds the SQL and parameters of a totals query: a UNION ALL of the planned segments,
/// grouped once (by bucket and label), with sketches merged by `llmwatch_sketch_agg`.
fn totals_sql(q: &TotalsQuery) -> (String, Vec<SqlValue>) {
    let mut needed: Vec<Dimension> = q.scope.dimensions();
    if let Some(g) = q.group_by {
        needed.push(g);
    }
    let usable = |t: &Tier| q.step_ms.is_none_or(|step| step % t.width_ms == 0);
    let family: Vec<&Tier> = TIER_FAMILIES
        .iter()
        .find(|fam| {
            needed.iter().all(|d| fam[0].dims.contains(d)) && (!q.with_sketches || fam[0].sketches)
        })
        .map(|fam| fam.iter().filter(|t| usable(t)).collect())
        .unwrap_or_default();
    let widths: Vec<i64> = family.iter().map(|t| t.width_ms).collect();

    let mut parts = Vec::new();
    let mut values = Vec::new();
    for seg in plan(q.range, &widths) {
        let tier = match seg.source {
            Source::Tier(w) => family.iter().find(|t| t.width_ms == w).copied(),
            Source::Raw => None,
        };
        let (table, time_col, metrics) = match tier {
            Some(t) => (t.table, "bucket_ms", METRIC_COLUMNS),
            None => ("requests", "ts_ms", RAW_METRIC_EXPRS),
        };
        let key = match q.group_by {
            None => "''".to_owned(),
            Some(d) if tier.is_none() => format!("COALESCE({}, '')", column_of(d)),
            Some(d) => column_of(d).to_owned(),
        };
        let bucket = match q.step_ms {
            None => "0".to_owned(),
            Some(step) => format!("({time_col} / {step}) * {step}"),
        };
        let sketches = match (q.with_sketches, tier) {
            (false, _) => "NULL",
            (true, Some(_)) => "sketches",
            (true, None) => "llmwatch_sketch_of(duration_ms, ttft_ms, stages)",
        };
        let mut sql = format!(
            "SELECT {bucket}, {key}, {}, {sketches} FROM {table} \
             WHERE project = ? AND {time_col} >= ? AND {time_col} < ?",
            metrics.join(", ")
        );
        values.push(SqlValue::Text(q.project.clone()));
        values.push(SqlValue::Integer(seg.range.from_ms));
        values.push(SqlValue::Integer(seg.range.to_ms));
        for d in q.scope.dimensions() {
            sql.push_str(&format!(" AND {} = ?", column_of(d)));
            values.push(SqlValue::Text(
                q.scope.get(d).unwrap_or_default().to_owned(),
            ));
        }
        // Grouping by error type counts failed requests only, as the error tiers do.
        if tier.is_none() && needed.contains(&Dimension::ErrorType) {
            sql.push_str(" AND status = 'error'");
        }
        parts.push(sql);
    }
    if parts.is_empty() {
        // An empty range: a query that returns no rows, keeping one code path.
        parts.push(format!(
            "SELECT 0, '', {}, NULL FROM rollup_series_1h WHERE 0",
            METRIC_COLUMNS.join(", ")
        ));
    }
    // Integer columns sum exactly; the millisecond sums are floating point.
    let sums: Vec<String> = METRIC_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if name.ends_with("_ms_sum") {
                format!("TOTAL(c{i})")
            } else {
                format!("SUM(c{i})")
            }
        })
        .collect();
    let aliases: Vec<String> = (0..METRIC_COLUMNS.len()).map(|i| format!("c{i}")).collect();
    let sql = format!(
        "WITH u(b, k, {}, s) AS ({}) \
         SELECT b, k, {}, llmwatch_sketch_agg(s) FROM u GROUP BY b, k HAVING SUM(c0) <> 0 ORDER BY b, k",
        aliases.join(", "),
        parts.join(" UNION ALL "),
        sums.join(", ")
    );
    (sql, values)
}

/// The SQL of a request search and its parameters.
fn search_sql(q: &RequestSearch) -> (String, Vec<SqlValue>) {
    let mut sql = format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE project = ?");
    let mut values = vec![SqlValue::Text(q.project.clone())];
    if let Some(r) = q.range {
        sql.push_str(" AND ts_ms >= ? AND ts_ms < ?");
        values.push(SqlValue::Integer(r.from_ms));
        values.push(SqlValue::Integer(r.to_ms));
    }
    if let Some(prefix) = &q.request_id_prefix {
        // The range lets the id index find the prefix; substr makes the match exact.
        sql.push_str(" AND request_id >= ? AND substr(request_id, 1, ?) = ?");
        values.push(SqlValue::Text(prefix.clone()));
        values.push(SqlValue::Integer(prefix.chars().count() as i64));
        values.push(SqlValue::Text(prefix.clone()));
    }
    for d in q.scope.dimensions() {
        sql.push_str(&format!(" AND {} = ?", column_of(d)));
        values.push(SqlValue::Text(
            q.scope.get(d).unwrap_or_default().to_owned(),
        ));
    }
    if let Some(status) = q.status {
        sql.push_str(" AND status = ?");
        values.push(SqlValue::Text(status.as_str().to_owned()));
    }
    if let Some((ts, id)) = &q.before {
        sql.push_str(" AND (ts_ms < ? OR (ts_ms = ? AND request_id < ?))");
        values.push(SqlValue::Integer(*ts));
        values.push(SqlValue::Integer(*ts));
        values.push(SqlValue::Text(id.clone()));
    }
    sql.push_str(" ORDER BY ts_ms DESC, request_id DESC LIMIT ?");
    values.push(SqlValue::Integer(q.limit as i64));
    (sql, values)
}

fn query_totals(conn: &Connection, q: &TotalsQuery) -> Result<Vec<GroupTotals>, StoreError> {
    let (sql, values) = totals_sql(q);
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let bucket: i64 = row.get(0)?;
        let key: String = row.get(1)?;
        let int = |i: usize| -> rusqlite::Result<i64> { row.get::<_, i64>(i) };
        let sketches = match row
            .get_ref(14)?
            .as_blob_or_null()
            .map_err(rusqlite::Error::from)?
        {
            Some(bytes) if q.with_sketches => {
                Some(SketchSet::from_bytes(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            }
            _ if q.with_sketches => Some(SketchSet::new()),
            _ => None,
        };
        out.push(GroupTotals {
            bucket_ms: q.step_ms.map(|_| bucket),
            key: if key.is_empty() { None } else { Some(key) },
            totals: Totals {
                requests: int(2)?,
                errors: int(3)?,
                input_tokens: int(4)?,
                output_tokens: int(5)?,
                cached_input_tokens: int(6)?,
                cache_write_tokens: int(7)?,
                reasoning_tokens: int(8)?,
                cost_nanos: int(9)?,
                unpriced_requests: int(10)?,
                unpriced_tokens: int(11)?,
                duration_ms_sum: row.get(12)?,
                unaccounted_ms_sum: row.get(13)?,
            },
            sketches,
        });
    }
    Ok(out)
}

/// The hour buckets of a drift query: `range` widened to the whole UTC hours it touches, as
/// the recursive CTE `hours(b)` over parameters ?2 (first bucket) and ?3 (end, exclusive).
const DRIFT_HOURS: &str = "WITH RECURSIVE hours(b) AS (SELECT ?2 WHERE ?2 < ?3 \
     UNION ALL SELECT b + 3600000 FROM hours WHERE b + 3600000 < ?3)";

/// `range` widened to whole UTC hours: `[floor(from), ceil(to))`.
fn drift_hours(range: Range) -> (i64, i64) {
    let from = bucket_start(range.from_ms, HOUR_MS);
    let to = if range.to_ms <= from {
        from
    } else {
        bucket_start(range.to_ms - 1, HOUR_MS) + HOUR_MS
    };
    (from, to)
}

/// The scope filters of a drift query, from parameter ?first on.
fn drift_scope_sql(scope: &DriftScope, first: usize, values: &mut Vec<SqlValue>) -> String {
    let mut sql = String::new();
    let mut i = first;
    for (column, v) in [("model", &scope.model), ("feature", &scope.feature)] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {column} = ?{i}"));
            values.push(SqlValue::Text(v.clone()));
            i += 1;
        }
    }
    sql
}

fn query_drift_counts(
    conn: &Connection,
    project: &str,
    range: Range,
    scope: &DriftScope,
    dimension: &str,
) -> Result<BTreeMap<String, u64>, StoreError> {
    let (from, to) = drift_hours(range);
    let mut values = vec![
        SqlValue::Text(project.to_owned()),
        SqlValue::Integer(from),
        SqlValue::Integer(to),
        SqlValue::Text(dimension.to_owned()),
    ];
    let filters = drift_scope_sql(scope, 5, &mut values);
    let mut stmt = conn.prepare_cached(&format!(
        "{DRIFT_HOURS} SELECT value, SUM(count) FROM rollup_values_1h \
         WHERE project = ?1 AND bucket_ms IN hours AND dimension = ?4{filters} \
         GROUP BY value HAVING SUM(count) > 0"
    ))?;
    let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
    let mut out = BTreeMap::new();
    while let Some(row) = rows.next()? {
        out.insert(
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?.max(0) as u64,
        );
    }
    Ok(out)
}

fn query_drift_sketch(
    conn: &Connection,
    project: &str,
    range: Range,
    scope: &DriftScope,
    dimension: &str,
) -> Result<Sketch, StoreError> {
    let (from, to) = drift_hours(range);
    let mut values = vec![
        SqlValue::Text(project.to_owned()),
        SqlValue::Integer(from),
        SqlValue::Integer(to),
    ];
    let filters = drift_scope_sql(scope, 4, &mut values);
    let mut stmt = conn.prepare_cached(&format!(
        "{DRIFT_HOURS} SELECT sketches FROM rollup_numeric_1h \
         WHERE project = ?1 AND bucket_ms IN hours{filters} AND sketches IS NOT NULL"
    ))?;
    let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
    let (mut out, mut scratch) = (Sketch::new(), Sketch::new());
    while let Some(row) = rows.next()? {
        let bytes = row
            .get_ref(0)?
            .as_blob_or_null()
            .map_err(rusqlite::Error::from)?
            .unwrap_or_default();
        merge_named_encoded(&mut out, bytes, dimension, &mut scratch)
            .map_err(|e| StoreError::Corrupt(format!("drift sketches: {e}")))?;
    }
    Ok(out)
}

fn query_drift_dimensions(
    conn: &Connection,
    project: &str,
    range: Range,
) -> Result<Vec<String>, StoreError> {
    let (from, to) = drift_hours(range);
    // Per hour, a walk over its distinct dimensions (an index seek each), not over its rows.
    // Counts are never negative, so a dimension with a positive row has a positive total.
    let mut stmt = conn.prepare_cached(&format!(
        "{DRIFT_HOURS}, dims(b, d) AS (
             SELECT b, (SELECT MIN(dimension) FROM rollup_values_1h
                        WHERE project = ?1 AND bucket_ms = hours.b AND count > 0) FROM hours
             UNION ALL
             SELECT b, (SELECT MIN(dimension) FROM rollup_values_1h
                        WHERE project = ?1 AND bucket_ms = dims.b AND dimension > dims.d
                          AND count > 0)
             FROM dims WHERE d IS NOT NULL)
         SELECT DISTINCT d FROM dims WHERE d IS NOT NULL ORDER BY d"
    ))?;
    let dims = stmt
        .query_map(params![project, from, to], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(dims)
}

#[async_trait]
impl Store for SqliteStore {
    async fn write(
        &self,
        project: &str,
        batch: Arc<Vec<PricedRecord>>,
    ) -> Result<WriteSummary, StoreError> {
        let project = project.to_owned();
        self.write_with(move |conn, caps, quality| {
            write_batch(conn, caps, quality, &project, batch.as_slice())
        })
        .await
    }

    async fn write_traces(
        &self,
        project: &str,
        batch: Arc<TraceBatch>,
    ) -> Result<TraceWriteSummary, StoreError> {
        let project = project.to_owned();
        // The writer hands over its only reference: spans move into the store, uncopied.
        let batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
        self.write_with(move |conn, caps, quality| {
            write_trace_batch(conn, caps, quality, &project, batch)
        })
        .await
    }

    async fn write_metrics(
        &self,
        project: &str,
        batch: Arc<MetricBatch>,
    ) -> Result<MetricWriteSummary, StoreError> {
        let project = project.to_owned();
        self.write_with(move |conn, caps, _| write_metric_batch(conn, caps, &project, &batch))
            .await
    }

    async fn flush_pending_traces(
        &self,
        cutoff_ms: i64,
        prices: Arc<PriceTable>,
    ) -> Result<TraceWriteSummary, StoreError> {
        self.write_with(move |conn, caps, quality| {
            flush_pending(conn, caps, quality, cutoff_ms, &prices)
        })
        .await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        if !self.durable_commits {
            return Ok(());
        }
        let wal = Arc::clone(&self.wal);
        let mut wal_path = self.path.clone().into_os_string();
        wal_path.push("-wal");
        tokio::task::spawn_blocking(move || {
            let mut file = lock(&wal);
            if file.is_none() {
                *file = Some(std::fs::File::open(&wal_path).map_err(|e| {
                    StoreError::Task(format!("cannot open the WAL for fsync: {e}"))
                })?);
            }
            // Everything committed so far is in the WAL file (SQLite never deletes or truncates
            // it while the database is open); one fdatasync makes all of it durable.
            file.as_ref()
                .map(|f| f.sync_data())
                .transpose()
                .map_err(|e| StoreError::Task(format!("fsync of the WAL failed: {e}")))?;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn totals(&self, query: TotalsQuery) -> Result<Vec<GroupTotals>, StoreError> {
        self.read(move |conn| query_totals(conn, &query)).await
    }

    async fn request(
        &self,
        project: &str,
        request_id: &str,
    ) -> Result<Option<StoredRequest>, StoreError> {
        let (project, request_id) = (project.to_owned(), request_id.to_owned());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM requests WHERE project = ?1 AND request_id = ?2"
            ))?;
            let priced = match stmt
                .query_row(params![project, request_id], row_to_priced)
                .optional()?
            {
                None => return Ok(None),
                Some(Ok(priced)) => priced,
                Some(Err(e)) => return Err(StoreError::Corrupt(e)),
            };
            let rows: Vec<(String, String, f64)> = conn
                .prepare_cached(
                    "SELECT name, source, value FROM scores WHERE project = ?1 AND request_id = ?2",
                )?
                .query_map(params![project, request_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<_, _>>()?;
            let scores = effective_scores(rows.iter().map(|(name, source, value)| {
                (
                    name.as_str(),
                    ScoreSource::parse(source).unwrap_or(ScoreSource::Api),
                    *value,
                )
            }));
            let feedback = conn
                .prepare_cached(
                    "SELECT feedback_id, type, comment, correction, user_id, ts_ms FROM feedback \
                     WHERE project = ?1 AND request_id = ?2 ORDER BY ts_ms, id",
                )?
                .query_map(params![project, request_id], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, String>(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?
                .map(|row| {
                    let (feedback_id, kind, comment, correction, user_id, ts_ms) = row?;
                    let kind = FeedbackKind::parse(&kind).ok_or_else(|| {
                        StoreError::Corrupt(format!("feedback.type: unknown {kind:?}"))
                    })?;
                    Ok(Feedback {
                        feedback_id,
                        request_id: request_id.clone(),
                        kind,
                        comment,
                        correction,
                        user_id,
                        ts_ms,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Some(StoredRequest {
                priced,
                scores,
                feedback,
            }))
        })
        .await
    }

    async fn search_requests(
        &self,
        search: RequestSearch,
    ) -> Result<Vec<PricedRecord>, StoreError> {
        self.read(move |conn| {
            let (sql, values) = search_sql(&search);
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(values), row_to_priced)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?.map_err(StoreError::Corrupt)?);
            }
            Ok(out)
        })
        .await
    }

    async fn count_requests(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let n: i64 = conn.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn drift_counts(
        &self,
        project: &str,
        range: Range,
        scope: DriftScope,
        dimension: &str,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        let (project, dimension) = (project.to_owned(), dimension.to_owned());
        self.read(move |conn| query_drift_counts(conn, &project, range, &scope, &dimension))
            .await
    }

    async fn drift_sketch(
        &self,
        project: &str,
        range: Range,
        scope: DriftScope,
        dimension: &str,
    ) -> Result<Sketch, StoreError> {
        let (project, dimension) = (project.to_owned(), dimension.to_owned());
        self.read(move |conn| query_drift_sketch(conn, &project, range, &scope, &dimension))
            .await
    }

    async fn drift_dimensions(
        &self,
        project: &str,
        range: Range,
    ) -> Result<Vec<String>, StoreError> {
        let project = project.to_owned();
        self.read(move |conn| query_drift_dimensions(conn, &project, range))
            .await
    }

    async fn put_baseline(
        &self,
        project: &str,
        baseline: StoredBaseline,
    ) -> Result<(), StoreError> {
        let spec = serde_json::to_string(&baseline.spec)
            .map_err(|e| StoreError::Corrupt(format!("baseline spec: {e}")))?;
        let project = project.to_owned();
        self.write_with(move |conn, _, _| {
            conn.prepare_cached(
                "INSERT INTO drift_baselines (project, name, dimension, spec, created_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (project, name) DO UPDATE SET \
                     dimension = excluded.dimension, spec = excluded.spec, \
                     created_ms = excluded.created_ms",
            )?
            .execute(params![
                project,
                baseline.name,
                baseline.dimension,
                spec,
                baseline.created_ms
            ])?;
            Ok(())
        })
        .await?;
        self.sync().await
    }

    async fn baselines(&self, project: &str) -> Result<Vec<StoredBaseline>, StoreError> {
        let project = project.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, dimension, spec, created_ms FROM drift_baselines \
                 WHERE project = ?1 ORDER BY name",
            )?;
            let rows: Vec<(String, String, String, i64)> = stmt
                .query_map(params![project], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            rows.into_iter()
                .map(|(name, dimension, spec, created_ms)| {
                    let spec = serde_json::from_str(&spec).map_err(|e| {
                        StoreError::Corrupt(format!("spec of baseline {name:?}: {e}"))
                    })?;
                    Ok(StoredBaseline {
                        name,
                        dimension,
                        spec,
                        created_ms,
                    })
                })
                .collect()
        })
        .await
    }

    async fn delete_baseline(&self, project: &str, name: &str) -> Result<bool, StoreError> {
        let (project, name) = (project.to_owned(), name.to_owned());
        let existed = self
            .write_with(move |conn, _, _| {
                let n = conn
                    .prepare_cached("DELETE FROM drift_baselines WHERE project = ?1 AND name = ?2")?
                    .execute(params![project, name])?;
                Ok(n > 0)
            })
            .await?;
        if existed {
            self.sync().await?;
        }
        Ok(existed)
    }

    async fn write_scores(&self, project: &str, batch: Arc<Vec<Score>>) -> Result<(), StoreError> {
        let project = project.to_owned();
        self.write_with(move |conn, _, quality| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut touched = Touched::default();
            sqlite_quality::put_scores(&tx, &project, &batch, &mut touched)?;
            sqlite_quality::settle(&tx, touched, quality, now_ms())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn write_feedback(
        &self,
        project: &str,
        batch: Arc<Vec<Feedback>>,
        received_ms: i64,
    ) -> Result<(), StoreError> {
        let project = project.to_owned();
        self.write_with(move |conn, _, quality| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut touched = Touched::default();
            sqlite_quality::put_feedback(&tx, &project, &batch, received_ms, &mut touched)?;
            sqlite_quality::settle(&tx, touched, quality, now_ms())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn quality(&self, query: QualityQuery) -> Result<QualityData, StoreError> {
        self.read(move |conn| sqlite_quality::query_quality(conn, &query))
            .await
    }

    async fn escalations(
        &self,
        project: &str,
        range: Range,
        feature: Option<String>,
        limit: usize,
    ) -> Result<Vec<Escalation>, StoreError> {
        let project = project.to_owned();
        self.read(move |conn| {
            sqlite_quality::query_escalations(conn, &project, range, feature.as_deref(), limit)
        })
        .await
    }

    async fn feedback_counts(
        &self,
        project: &str,
        range: Range,
        scope: QualityScope,
    ) -> Result<FeedbackCounts, StoreError> {
        let project = project.to_owned();
        self.read(move |conn| sqlite_quality::query_feedback_counts(conn, &project, range, &scope))
            .await
    }

    async fn complaints(
        &self,
        project: &str,
        range: Range,
        limit: usize,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let project = project.to_owned();
        self.read(move |conn| sqlite_quality::query_complaints(conn, &project, range, limit))
            .await
    }

    async fn corrections(
        &self,
        project: &str,
        since_ms: i64,
        feature: Option<String>,
    ) -> Result<Vec<GoldenExample>, StoreError> {
        let project = project.to_owned();
        self.read(move |conn| {
            sqlite_quality::query_corrections(conn, &project, since_ms, feature.as_deref())
        })
        .await
    }
}
