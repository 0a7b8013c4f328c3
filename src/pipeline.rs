//! The single writer: ingest handlers submit batches to a bounded queue; one task drains it,
//! commits everything waiting in one transaction (group commit), and a second task
//! acknowledges each batch once an fsync has made it durable (the writer meanwhile commits the
//! next group).
//! A full queue is reported at once (the caller answers 503), never buffered without bound.
//!
//! The same task settles OTLP traces whose root span never came: every tick it turns traces
//! pending for longer than the grace period into records.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::api::Clock;
use crate::core::feedback::Feedback;
use crate::core::metric::MetricPoint;
use crate::core::pricing::PriceTable;
use crate::core::quality::Score;
use crate::core::rollup::PricedRecord;
use crate::metrics::Metrics;
use crate::store::{MetricBatch, Store, TraceBatch, TraceFragment, TraceWriteSummary};

/// Most records (or spans) committed in one transaction: bounds the writer's memory and
/// commit latency.
const MAX_ITEMS_PER_COMMIT: usize = 20_000;
/// Most queued batches taken at once.
const MAX_JOBS_PER_COMMIT: usize = 64;

enum Payload {
    Records(Vec<PricedRecord>),
    Traces {
        fragments: Vec<TraceFragment>,
        received_ms: i64,
    },
    Metrics {
        points: Vec<MetricPoint>,
        received_ms: i64,
    },
    Scores(Vec<Score>),
    Feedback {
        items: Vec<Feedback>,
        received_ms: i64,
    },
}

impl Payload {
    fn size(&self) -> usize {
        match self {
            Payload::Records(r) => r.len(),
            Payload::Traces { fragments, .. } => fragments.iter().map(|f| f.spans.len()).sum(),
            Payload::Metrics { points, .. } => points.len(),
            Payload::Scores(s) => s.len(),
            Payload::Feedback { items, .. } => items.len(),
        }
    }

    fn same_kind(&self, other: &Payload) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

struct WriteJob {
    project: String,
    payload: Payload,
    ack: oneshot::Sender<Result<(), String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the writer queue is full; retry shortly")]
    Busy,
    #[error("the writer has stopped")]
    Closed,
    #[error("storage failed: {0}")]
    Store(String),
}

/// What the writer needs besides the store.
#[derive(Clone)]
pub struct WriterOptions {
    /// Batches allowed to wait; beyond that `submit` answers `Busy`.
    pub queue: usize,
    /// Prices of the records assembled from traces.
    pub prices: Arc<PriceTable>,
    /// How long a trace may wait for its root span before it becomes a record without it.
    pub trace_grace_ms: i64,
    pub clock: Clock,
    /// Told of every record new to the store once committed (the LLM judge samples them).
    /// Must not block: it runs on the writer task.
    pub on_new_record: Option<RecordHook>,
}

/// See [`WriterOptions::on_new_record`]: (project, record).
pub type RecordHook = Arc<dyn Fn(&str, &PricedRecord) + Send + Sync>;

/// Handle to the writer task. Cloning is cheap; the task stops once every handle is dropped
/// and the queue is drained.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<WriteJob>,
}

impl Writer {
    /// Starts the writer task. Committed records (except replacements of earlier ones) are
    /// counted in `metrics`.
    pub fn spawn(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        options: WriterOptions,
    ) -> (Writer, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let handle = tokio::spawn(run(store, metrics, options, rx));
        (Writer { tx }, handle)
    }

    /// Queues a batch of records and waits until it is durably committed.
    pub async fn submit(
        &self,
        project: &str,
        records: Vec<PricedRecord>,
    ) -> Result<(), SubmitError> {
        if records.is_empty() {
            return Ok(());
        }
        self.send(project, Payload::Records(records)).await
    }

    /// Like `submit`, but waits for room in the queue instead of answering `Busy` (for
    /// producers that buffer on their own, like the proxy's recorder).
    pub async fn submit_waiting(
        &self,
        project: &str,
        records: Vec<PricedRecord>,
    ) -> Result<(), SubmitError> {
        if records.is_empty() {
            return Ok(());
        }
        let (job, done) = WriteJob::new(project, Payload::Records(records));
        self.tx.send(job).await.map_err(|_| SubmitError::Closed)?;
        acknowledged(done).await
    }

    /// Queues spans (grouped by trace) and waits until they are durably committed and every
    /// complete trace among them is a stored record.
    pub async fn submit_traces(
        &self,
        project: &str,
        fragments: Vec<TraceFragment>,
        received_ms: i64,
    ) -> Result<(), SubmitError> {
        if fragments.is_empty() {
            return Ok(());
        }
        self.send(
            project,
            Payload::Traces {
                fragments,
                received_ms,
            },
        )
        .await
    }

    /// Queues GenAI metric points and waits until they are folded into the rollups.
    pub async fn submit_metrics(
        &self,
        project: &str,
        points: Vec<MetricPoint>,
        received_ms: i64,
    ) -> Result<(), SubmitError> {
        if points.is_empty() {
            return Ok(());
        }
        self.send(
            project,
            Payload::Metrics {
                points,
                received_ms,
            },
        )
        .await
    }

    /// Queues scores and waits until they are durably committed (and their requests'
    /// quality settled).
    pub async fn submit_scores(
        &self,
        project: &str,
        scores: Vec<Score>,
    ) -> Result<(), SubmitError> {
        if scores.is_empty() {
            return Ok(());
        }
        self.send(project, Payload::Scores(scores)).await
    }

    /// Queues feedback and waits until it is durably committed.
    pub async fn submit_feedback(
        &self,
        project: &str,
        items: Vec<Feedback>,
        received_ms: i64,
    ) -> Result<(), SubmitError> {
        if items.is_empty() {
            return Ok(());
        }
        self.send(project, Payload::Feedback { items, received_ms })
            .await
    }

    async fn send(&self, project: &str, payload: Payload) -> Result<(), SubmitError> {
        let (job, done) = WriteJob::new(project, payload);
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SubmitError::Busy,
            mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
        })?;
        acknowledged(done).await
    }
}

impl WriteJob {
    fn new(project: &str, payload: Payload) -> (WriteJob, oneshot::Receiver<Result<(), String>>) {
        let (ack, done) = oneshot::channel();
        let job = WriteJob {
            project: project.to_owned(),
            payload,
            ack,
        };
        (job, done)
    }
}

/// Waits for a job's acknowledgement (its batch durably committed).
async fn acknowledged(done: oneshot::Receiver<Result<(), String>>) -> Result<(), SubmitError> {
    match done.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(SubmitError::Store(message)),
        Err(_) => Err(SubmitError::Closed),
    }
}

/// How often pending traces are checked: often enough that a trace is settled soon after its
/// grace period, rarely enough to cost nothing.
fn flush_interval(grace_ms: i64) -> Duration {
    Duration::from_millis((grace_ms / 10).clamp(100, 1000) as u64)
}

/// Acknowledgements of committed batches, waiting for the fsync that makes them durable.
type Acks = Vec<oneshot::Sender<Result<(), String>>>;

/// Acknowledges committed batches once they are durable. One fsync covers every batch
/// committed before it, so while one runs the writer commits the next group, and the groups
/// committed meanwhile share the next fsync.
async fn sync_and_ack(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Acks>) {
    let mut waiting: Vec<Acks> = Vec::new();
    while rx.recv_many(&mut waiting, usize::MAX).await > 0 {
        let result = store.sync().await.map_err(|e| {
            tracing::error!(error = %e, "fsync failed; committed batches reported as failed");
            e.to_string()
        });
        for ack in waiting.drain(..).flatten() {
            let _ = ack.send(result.clone());
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    options: WriterOptions,
    rx: mpsc::Receiver<WriteJob>,
) {
    let (sync_tx, sync_rx) = mpsc::unbounded_channel();
    let syncer = tokio::spawn(sync_and_ack(Arc::clone(&store), sync_rx));
    write_loop(store, metrics, options, rx, sync_tx).await;
    // The loop dropped its sender: the syncer acknowledges what is left, then stops.
    if let Err(e) = syncer.await {
        tracing::error!(error = %e, "sync task failed");
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    options: WriterOptions,
    mut rx: mpsc::Receiver<WriteJob>,
    sync_tx: mpsc::UnboundedSender<Acks>,
) {
    let mut jobs: Vec<WriteJob> = Vec::with_capacity(MAX_JOBS_PER_COMMIT);
    let mut ticker = tokio::time::interval(flush_interval(options.trace_grace_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut jobs, MAX_JOBS_PER_COMMIT) => {
                if n == 0 {
                    return; // every sender dropped and the queue is empty
                }
            }
            _ = ticker.tick() => {
                let cutoff = (options.clock)() - options.trace_grace_ms;
                match store.flush_pending_traces(cutoff, Arc::clone(&options.prices)).await {
                    Ok(summary) => observe_traces(&metrics, &summary),
                    Err(e) => tracing::error!(error = %e, "settling pending traces failed"),
                }
                continue;
            }
        }
        // Commit in groups of one project and one kind, bounded in size, keeping arrival order.
        while !jobs.is_empty() {
            let mut end = 0;
            let mut n = 0;
            while end < jobs.len()
                && jobs[end].project == jobs[0].project
                && jobs[end].payload.same_kind(&jobs[0].payload)
                && (end == 0 || n + jobs[end].payload.size() <= MAX_ITEMS_PER_COMMIT)
            {
                n += jobs[end].payload.size();
                end += 1;
            }
            let mut group: Vec<WriteJob> = jobs.drain(..end).collect();
            let result = commit(&*store, &metrics, &options, &mut group).await;
            let acks: Acks = group.into_iter().map(|job| job.ack).collect();
            match result {
                // Committed: acknowledged once durable.
                Ok(()) => {
                    if let Err(mpsc::error::SendError(acks)) = sync_tx.send(acks) {
                        for ack in acks {
                            let _ = ack.send(Err("the sync task has stopped".into()));
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, items = n, "write failed; batches rejected");
                    for ack in acks {
                        let _ = ack.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

async fn commit(
    store: &dyn Store,
    metrics: &Metrics,
    options: &WriterOptions,
    group: &mut [WriteJob],
) -> Result<(), String> {
    let project = group[0].project.clone();
    let project = &project;
    match &group[0].payload {
        Payload::Records(_) => {
            let batch: Vec<PricedRecord> = group
                .iter_mut()
                .flat_map(|job| match &mut job.payload {
                    Payload::Records(r) => std::mem::take(r),
                    _ => Vec::new(),
                })
                .collect();
            let batch = Arc::new(batch);
            let summary = store
                .write(project, Arc::clone(&batch))
                .await
                .map_err(|e| e.to_string())?;
            // A replacement was counted when first seen: counters only go up.
            let mut replaced = summary.replaced.iter().peekable();
            for (i, pr) in batch.iter().enumerate() {
                if replaced.next_if_eq(&&i).is_none() {
                    metrics.observe(pr);
                    if let Some(hook) = &options.on_new_record {
                        hook(project, pr);
                    }
                }
            }
        }
        Payload::Traces { received_ms, .. } => {
            let received_ms = *received_ms;
            let fragments = group
                .iter_mut()
                .flat_map(|job| match &mut job.payload {
                    Payload::Traces { fragments, .. } => std::mem::take(fragments),
                    _ => Vec::new(),
                })
                .collect();
            let batch = Arc::new(TraceBatch {
                fragments,
                prices: Arc::clone(&options.prices),
                received_ms,
            });
            let summary = store
                .write_traces(project, batch)
                .await
                .map_err(|e| e.to_string())?;
            observe_traces(metrics, &summary);
            if let Some(hook) = &options.on_new_record {
                for pr in &summary.new_records {
                    hook(project, pr);
                }
            }
        }
        Payload::Metrics { received_ms, .. } => {
            let received_ms = *received_ms;
            let points = group
                .iter_mut()
                .flat_map(|job| match &mut job.payload {
                    Payload::Metrics { points, .. } => std::mem::take(points),
                    _ => Vec::new(),
                })
                .collect();
            let batch = Arc::new(MetricBatch {
                points,
                prices: Arc::clone(&options.prices),
                received_ms,
            });
            let summary = store
                .write_metrics(project, batch)
                .await
                .map_err(|e| e.to_string())?;
            if summary.traced > 0 {
                tracing::debug!(
                    points = summary.traced,
                    "metrics of services that send traces ignored"
                );
            }
        }
        Payload::Scores(_) => {
            let scores: Vec<Score> = group
                .iter_mut()
                .flat_map(|job| match &mut job.payload {
                    Payload::Scores(s) => std::mem::take(s),
                    _ => Vec::new(),
                })
                .collect();
            store
                .write_scores(project, Arc::new(scores))
                .await
                .map_err(|e| e.to_string())?;
        }
        Payload::Feedback { received_ms, .. } => {
            let received_ms = *received_ms;
            let items: Vec<Feedback> = group
                .iter_mut()
                .flat_map(|job| match &mut job.payload {
                    Payload::Feedback { items, .. } => std::mem::take(items),
                    _ => Vec::new(),
                })
                .collect();
            store
                .write_feedback(project, Arc::new(items), received_ms)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn observe_traces(metrics: &Metrics, summary: &TraceWriteSummary) {
    for pr in &summary.new_records {
        metrics.observe(pr);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::config::Durability;
    use crate::core::traffic::TrafficGenerator;
    use crate::store::sqlite::SqliteStore;
    use std::collections::BTreeMap;

    use crate::core::feedback::{Feedback, FeedbackCounts};
    use crate::core::quality::Score;
    use crate::core::sketch::Sketch;
    use crate::core::time::Range;
    use crate::store::{
        DriftScope, Escalation, GoldenExample, GroupTotals, MetricWriteSummary, QualityData,
        QualityQuery, QualityScope, StoreError, StoredBaseline, StoredRequest, TotalsQuery,
        WriteSummary,
    };

    /// The real SQLite store, with the order of writes and syncs logged and syncs that can
    /// be made to fail.
    struct Logged {
        inner: SqliteStore,
        log: Mutex<Vec<&'static str>>,
        fail_sync: bool,
    }

    #[async_trait]
    impl Store for Logged {
        async fn write(
            &self,
            project: &str,
            batch: Arc<Vec<PricedRecord>>,
        ) -> Result<WriteSummary, StoreError> {
            let out = self.inner.write(project, batch).await;
            self.log.lock().unwrap().push("write");
            out
        }
        async fn write_traces(
            &self,
            project: &str,
            batch: Arc<TraceBatch>,
        ) -> Result<TraceWriteSummary, StoreError> {
            self.inner.write_traces(project, batch).await
        }
        async fn write_metrics(
            &self,
            project: &str,
            batch: Arc<MetricBatch>,
        ) -> Result<MetricWriteSummary, StoreError> {
            self.inner.write_metrics(project, batch).await
        }
        async fn flush_pending_traces(
            &self,
            cutoff_ms: i64,
            prices: Arc<PriceTable>,
        ) -> Result<TraceWriteSummary, StoreError> {
            self.inner.flush_pending_traces(cutoff_ms, prices).await
        }
        async fn sync(&self) -> Result<(), StoreError> {
            self.log.lock().unwrap().push("sync");
            if self.fail_sync {
                return Err(StoreError::Task("fsync of the WAL failed: EIO".into()));
            }
            self.inner.sync().await
        }
        async fn totals(&self, query: TotalsQuery) -> Result<Vec<GroupTotals>, StoreError> {
            self.inner.totals(query).await
        }
        async fn request(
            &self,
            project: &str,
            request_id: &str,
        ) -> Result<Option<StoredRequest>, StoreError> {
            self.inner.request(project, request_id).await
        }
        async fn search_requests(
            &self,
            search: crate::store::RequestSearch,
        ) -> Result<Vec<PricedRecord>, StoreError> {
            self.inner.search_requests(search).await
        }
        async fn count_requests(&self) -> Result<u64, StoreError> {
            self.inner.count_requests().await
        }
        async fn drift_counts(
            &self,
            project: &str,
            range: Range,
            scope: DriftScope,
            dimension: &str,
        ) -> Result<BTreeMap<String, u64>, StoreError> {
            self.inner
                .drift_counts(project, range, scope, dimension)
                .await
        }
        async fn drift_sketch(
            &self,
            project: &str,
            range: Range,
            scope: DriftScope,
            dimension: &str,
        ) -> Result<Sketch, StoreError> {
            self.inner
                .drift_sketch(project, range, scope, dimension)
                .await
        }
        async fn drift_dimensions(
            &self,
            project: &str,
            range: Range,
        ) -> Result<Vec<String>, StoreError> {
            self.inner.drift_dimensions(project, range).await
        }
        async fn put_baseline(
            &self,
            project: &str,
            baseline: StoredBaseline,
        ) -> Result<(), StoreError> {
            self.inner.put_baseline(project, baseline).await
        }
        async fn baselines(&self, project: &str) -> Result<Vec<StoredBaseline>, StoreError> {
            self.inner.baselines(project).await
        }
        async fn delete_baseline(&self, project: &str, name: &str) -> Result<bool, StoreError> {
            self.inner.delete_baseline(project, name).await
        }
        async fn write_scores(
            &self,
            project: &str,
            batch: Arc<Vec<Score>>,
        ) -> Result<(), StoreError> {
            self.inner.write_scores(project, batch).await
        }
        async fn write_feedback(
            &self,
            project: &str,
            batch: Arc<Vec<Feedback>>,
            received_ms: i64,
        ) -> Result<(), StoreError> {
            self.inner.write_feedback(project, batch, received_ms).await
        }
        async fn quality(&self, query: QualityQuery) -> Result<QualityData, StoreError> {
            self.inner.quality(query).await
        }
        async fn escalations(
            &self,
            project: &str,
            range: Range,
            feature: Option<String>,
            limit: usize,
        ) -> Result<Vec<Escalation>, StoreError> {
            self.inner.escalations(project, range, feature, limit).await
        }
        async fn feedback_counts(
            &self,
            project: &str,
            range: Range,
            scope: QualityScope,
        ) -> Result<FeedbackCounts, StoreError> {
            self.inner.feedback_counts(project, range, scope).await
        }
        async fn complaints(
            &self,
            project: &str,
            range: Range,
            limit: usize,
        ) -> Result<Vec<(String, String, i64)>, StoreError> {
            self.inner.complaints(project, range, limit).await
        }
        async fn corrections(
            &self,
            project: &str,
            since_ms: i64,
            feature: Option<String>,
        ) -> Result<Vec<GoldenExample>, StoreError> {
            self.inner.corrections(project, since_ms, feature).await
        }
    }

    async fn submit_one(fail_sync: bool) -> (Result<(), SubmitError>, Vec<&'static str>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Logged {
            inner: SqliteStore::open(&dir.path().join("db"), Durability::Full).unwrap(),
            log: Mutex::new(Vec::new()),
            fail_sync,
        });
        let prices = Arc::new(PriceTable::builtin());
        let (writer, task) = Writer::spawn(
            store.clone(),
            Arc::new(Metrics::new(10)),
            WriterOptions {
                queue: 4,
                prices: Arc::clone(&prices),
                trace_grace_ms: 30_000,
                clock: Arc::new(|| 0),
                on_new_record: None,
            },
        );
        let records: Vec<PricedRecord> = TrafficGenerator::new(1)
            .history(0, 3_600_000, 2_000)
            .into_iter()
            .take(10)
            .map(|r| PricedRecord::new(r, &prices))
            .collect();
        let result = writer.submit("default", records).await;
        let log = store.log.lock().unwrap().clone();
        drop(writer);
        task.await.unwrap();
        (result, log)
    }

    #[tokio::test]
    async fn a_batch_is_acknowledged_only_after_an_fsync_following_its_commit() {
        let (result, log) = submit_one(false).await;
        assert_eq!(result, Ok(()));
        let write = log.iter().position(|e| *e == "write").unwrap();
        assert!(
            log[write..].contains(&"sync"),
            "acked before any sync: {log:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_fsync_fails_the_batch() {
        let (result, _) = submit_one(true).await;
        assert!(
            matches!(&result, Err(SubmitError::Store(m)) if m.contains("fsync")),
            "{result:?}"
        );
    }
}
