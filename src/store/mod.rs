//! Storage: the `Store` trait every backend implements and the query types it answers.
//!
//! Callers never see SQL. A backend writes priced records and their rollups in one durable
//! step, and answers totals over any range from rollups (raw rows only for sub-minute edges or
//! label combinations no rollup carries).

pub mod sqlite;
mod sqlite_alerts;
mod sqlite_quality;

pub use sqlite_quality::{Escalation, GoldenExample, QualityData, QualityQuery, QualityScope};

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::core::feedback::{Feedback, FeedbackCounts};
use crate::core::metric::MetricPoint;
use crate::core::pricing::PriceTable;
use crate::core::quality::Score;
use crate::core::rollup::{Dimension, PricedRecord, Scope, Totals};
use crate::core::sketch::{Sketch, SketchSet};
use crate::core::span::SpanSummary;
use crate::core::time::Range;

/// The project every row belongs to until authentication maps keys to projects.
pub const DEFAULT_PROJECT: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "database {path} was written by a newer llmwatch (schema version {found}, this build knows up to {known})"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("cannot open database {path}: {message}")]
    Open { path: String, message: String },
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    #[error("storage task failed: {0}")]
    Task(String),
}

impl From<rusqlite::types::FromSqlError> for StoreError {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Records new to the store.
    pub inserted: usize,
    /// Positions in the batch of records whose request_id was already stored and which
    /// replaced the earlier record.
    pub replaced: Vec<usize>,
}

/// Spans of one trace received in one export.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFragment {
    pub trace_id: [u8; 16],
    pub spans: Vec<SpanSummary>,
}

/// Trace fragments to merge into the stored traces, and how to price the records they become.
#[derive(Debug, Clone)]
pub struct TraceBatch {
    pub fragments: Vec<TraceFragment>,
    pub prices: Arc<PriceTable>,
    /// Receive time (unix ms): starts the grace period of a trace still waiting for its root.
    pub received_ms: i64,
}

/// What merging traces did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceWriteSummary {
    /// Records new to the store (assembled from traces).
    pub new_records: Vec<PricedRecord>,
    /// Records re-assembled because more spans of their trace arrived.
    pub updated_records: usize,
    /// Traces still waiting (for their root span or a model call).
    pub pending_traces: usize,
    /// Traces dropped at the end of their grace period: no span was a model call.
    pub dropped_traces: usize,
}

/// GenAI metric data points to fold into the rollups.
#[derive(Debug, Clone)]
pub struct MetricBatch {
    pub points: Vec<MetricPoint>,
    pub prices: Arc<PriceTable>,
    pub received_ms: i64,
}

/// What folding metric points did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricWriteSummary {
    /// Points that added to the rollups.
    pub applied: usize,
    /// Points re-sent or older than their stream's last point: nothing added.
    pub stale: usize,
    /// Points of services that also send traces (their requests are counted from the traces).
    pub traced: usize,
}

/// How long a service counts as sending traces after its last trace.
pub const TRACED_SERVICE_MS: i64 = 24 * 3_600_000;

/// Totals over a range, optionally restricted, grouped by a label and bucketed in time.
#[derive(Debug, Clone)]
pub struct TotalsQuery {
    pub project: String,
    pub range: Range,
    pub scope: Scope,
    pub group_by: Option<Dimension>,
    /// Bucket the answer into UTC-aligned buckets of this width (a multiple of 60 s).
    pub step_ms: Option<i64>,
    /// Also merge the latency sketches of each group.
    pub with_sketches: bool,
}

impl TotalsQuery {
    /// Ungrouped totals of a project over a range.
    pub fn new(project: &str, range: Range) -> Self {
        TotalsQuery {
            project: project.to_owned(),
            range,
            scope: Scope::default(),
            group_by: None,
            step_ms: None,
            with_sketches: false,
        }
    }
}

/// One group of a totals answer; `key` is `None` for requests without that label (and for the
/// groups of an ungrouped query); `bucket_ms` is set when the query has a step.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupTotals {
    pub bucket_ms: Option<i64>,
    pub key: Option<String>,
    pub totals: Totals,
    pub sketches: Option<SketchSet>,
}

/// A stored request with what enrichment added.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRequest {
    pub priced: PricedRecord,
    /// Scores of the request, by name: of several sources, the first in
    /// `core::quality::ScoreSource` order (human, api, model, heuristic).
    pub scores: BTreeMap<String, f64>,
    /// Feedback given on the request, oldest first.
    pub feedback: Vec<Feedback>,
}

/// A search over stored requests, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestSearch {
    pub project: String,
    /// `None` = all time.
    pub range: Option<Range>,
    /// Requests whose id starts with this.
    pub request_id_prefix: Option<String>,
    pub scope: Scope,
    pub status: Option<crate::core::record::Status>,
    /// Only requests older than this `(ts_ms, request_id)`: the last row of the previous page.
    pub before: Option<(i64, String)>,
    pub limit: usize,
}

/// Restricts drift queries; `None` = all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftScope {
    pub model: Option<String>,
    pub feature: Option<String>,
}

/// A named baseline: what it compares against. Stored as given.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredBaseline {
    pub name: String,
    pub dimension: String,
    pub spec: serde_json::Value,
    pub created_ms: i64,
}

/// Writes return once committed (visible to queries); `sync` then makes every committed write
/// durable. Acknowledging a client only after `sync` is the caller's duty (the pipeline does).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a batch: a record whose `request_id` is already stored replaces it (and its
    /// rollup contribution). Returns once the batch is committed.
    async fn write(
        &self,
        project: &str,
        batch: Arc<Vec<PricedRecord>>,
    ) -> Result<WriteSummary, StoreError>;

    /// Merges trace fragments into the stored traces and writes the records of every trace
    /// that is complete (its root span arrived); an earlier record of the trace is replaced.
    /// Returns once committed.
    async fn write_traces(
        &self,
        project: &str,
        batch: Arc<TraceBatch>,
    ) -> Result<TraceWriteSummary, StoreError>;

    /// Turns traces pending since before `cutoff_ms` (all projects) into records even without
    /// their root span, or drops them when no span was a model call.
    async fn flush_pending_traces(
        &self,
        cutoff_ms: i64,
        prices: Arc<PriceTable>,
    ) -> Result<TraceWriteSummary, StoreError>;

    /// Folds GenAI metric points into the rollups (cumulative streams as deltas against their
    /// stored last point). Returns once committed.
    async fn write_metrics(
        &self,
        project: &str,
        batch: Arc<MetricBatch>,
    ) -> Result<MetricWriteSummary, StoreError>;

    /// Makes every write committed so far durable (as `durability` configures).
    async fn sync(&self) -> Result<(), StoreError>;

    /// Totals per group (and bucket) over a range. Groups with no requests are omitted.
    async fn totals(&self, query: TotalsQuery) -> Result<Vec<GroupTotals>, StoreError>;

    /// One stored request by id.
    async fn request(
        &self,
        project: &str,
        request_id: &str,
    ) -> Result<Option<StoredRequest>, StoreError>;

    /// Requests matching a search, newest first (ties by request id, descending).
    async fn search_requests(&self, search: RequestSearch)
    -> Result<Vec<PricedRecord>, StoreError>;

    /// Number of stored requests (all projects); for health and tests.
    async fn count_requests(&self) -> Result<u64, StoreError>;

    /// Value -> count of a categorical drift dimension (`model`, `feature`, `release`,
    /// `status`, `error_type`, `attributes.KEY`) over `range`, from the per-hour drift rollups.
    /// The range is widened to the whole UTC hours it touches (`from` down, `to` up to an
    /// hour boundary). Values with a zero count are omitted; values beyond the per-hour
    /// cardinality cap are counted as `(other)` (`core::rollup::MAX_DRIFT_VALUES`).
    async fn drift_counts(
        &self,
        project: &str,
        range: Range,
        scope: DriftScope,
        dimension: &str,
    ) -> Result<BTreeMap<String, u64>, StoreError>;

    /// The merged sketch of a numeric drift dimension (`core::rollup::NUMERIC_DIMENSIONS`)
    /// over `range` (widened to whole UTC hours as for `drift_counts`), or an empty sketch.
    async fn drift_sketch(
        &self,
        project: &str,
        range: Range,
        scope: DriftScope,
        dimension: &str,
    ) -> Result<Sketch, StoreError>;

    /// The categorical drift dimensions with a non-zero count in `range` (widened to whole UTC
    /// hours as for `drift_counts`), sorted.
    async fn drift_dimensions(
        &self,
        project: &str,
        range: Range,
    ) -> Result<Vec<String>, StoreError>;

    /// Stores a named baseline, replacing one of the same name. Durable on return.
    async fn put_baseline(&self, project: &str, baseline: StoredBaseline)
    -> Result<(), StoreError>;

    /// The project's baselines, by name.
    async fn baselines(&self, project: &str) -> Result<Vec<StoredBaseline>, StoreError>;

    /// Deletes a baseline; returns whether it existed. Durable on return.
    async fn delete_baseline(&self, project: &str, name: &str) -> Result<bool, StoreError>;

    /// Stores scores (the same request, name and source replaces the earlier one) and
    /// settles the quality of their requests. Returns once committed.
    async fn write_scores(&self, project: &str, batch: Arc<Vec<Score>>) -> Result<(), StoreError>;

    /// Stores feedback (thumbs also become `user_rating` scores). Returns once committed.
    async fn write_feedback(
        &self,
        project: &str,
        batch: Arc<Vec<Feedback>>,
        received_ms: i64,
    ) -> Result<(), StoreError>;

    /// Score histograms and streaks over a range.
    async fn quality(&self, query: QualityQuery) -> Result<QualityData, StoreError>;

    /// Quality escalations detected in a range, newest first.
    async fn escalations(
        &self,
        project: &str,
        range: Range,
        feature: Option<String>,
        limit: usize,
    ) -> Result<Vec<Escalation>, StoreError>;

    /// Feedback counts of a range (by feedback time), of the requests in scope.
    async fn feedback_counts(
        &self,
        project: &str,
        range: Range,
        scope: QualityScope,
    ) -> Result<FeedbackCounts, StoreError>;

    /// Comments of thumbs-down and reports of a range, newest first (request id, comment,
    /// unix ms), at most `limit`.
    async fn complaints(
        &self,
        project: &str,
        range: Range,
        limit: usize,
    ) -> Result<Vec<(String, String, i64)>, StoreError>;

    /// Corrections given since `since_ms` with their requests, oldest first.
    async fn corrections(
        &self,
        project: &str,
        since_ms: i64,
        feature: Option<String>,
    ) -> Result<Vec<GoldenExample>, StoreError>;
}

/// The persisted state of one alert.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredAlert {
    pub dedup_key: String,
    pub rule: String,
    pub group: BTreeMap<String, String>,
    pub severity: crate::core::alert::Severity,
    pub state: crate::core::alert::AlertState,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub summary: String,
    pub expr: String,
    pub updated_ms: i64,
}

/// One notification made (and where it was routed).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryEntry {
    /// Assigned by the store.
    pub id: i64,
    pub notification: crate::core::alert::Notification,
    pub channels: Vec<String>,
    /// The silence that muted it (nothing was delivered).
    pub silenced_by: Option<i64>,
}

/// One delivery attempt of a notification to a channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeliveryRecord {
    pub history_id: i64,
    pub channel: String,
    #[serde(flatten)]
    pub attempt: crate::core::alert::Attempt,
}

/// Mutes the alerts whose labels (`alertname`, `severity`, group labels) match every matcher,
/// until `until_ms`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Silence {
    pub id: i64,
    pub matchers: BTreeMap<String, String>,
    pub until_ms: i64,
    pub comment: Option<String>,
    pub created_ms: i64,
}

/// An anomaly rule's EWMA baseline of one metric and group.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AnomalyBaseline {
    pub mean: f64,
    pub variance: f64,
    pub n: u32,
}

/// Alert persistence. Every write is durable on return.
#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    /// Takes or renews the lease `name` for `holder` until `now + ttl`; false when another
    /// holder's lease is still valid.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError>;
    async fn alert_states(&self, project: &str) -> Result<Vec<StoredAlert>, StoreError>;
    /// One evaluation's outcome in one transaction: changed states, the notifications made
    /// (their ids are returned in order) and anomaly baselines (key, baseline, updated_ms).
    async fn record_evaluation(
        &self,
        project: &str,
        states: Vec<StoredAlert>,
        history: Vec<HistoryEntry>,
        baselines: Vec<(String, AnomalyBaseline, i64)>,
    ) -> Result<Vec<i64>, StoreError>;
    async fn record_deliveries(
        &self,
        project: &str,
        rows: Vec<DeliveryRecord>,
    ) -> Result<(), StoreError>;
    /// Notifications in a range, newest first.
    async fn alert_history(
        &self,
        project: &str,
        range: Range,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError>;
    /// Delivery attempts in a range, newest first.
    async fn deliveries(
        &self,
        project: &str,
        range: Range,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Notifications made since `since_ms`, not silenced, with the routed channels that have
    /// no delivery attempt logged (a crash between recording and delivering), oldest first.
    async fn undelivered(
        &self,
        project: &str,
        since_ms: i64,
    ) -> Result<Vec<(HistoryEntry, Vec<String>)>, StoreError>;
    async fn silences(&self, project: &str) -> Result<Vec<Silence>, StoreError>;
    async fn add_silence(&self, project: &str, silence: Silence) -> Result<i64, StoreError>;
    async fn delete_silence(&self, project: &str, id: i64) -> Result<bool, StoreError>;
    async fn anomaly_baselines(
        &self,
        project: &str,
    ) -> Result<BTreeMap<String, AnomalyBaseline>, StoreError>;
}
