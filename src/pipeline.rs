//! The single writer: ingest handlers submit batches to a bounded queue; one task drains it,
//! commits everything waiting in one transaction (group commit), then acknowledges each batch.
//! A full queue is reported at once (the caller answers 503), never buffered without bound.
//!
//! The same task settles OTLP traces whose root span never came: every tick it turns traces
//! pending for longer than the grace period into records.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::api::Clock;
use crate::core::metric::MetricPoint;
use crate::core::pricing::PriceTable;
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
}

impl Payload {
    fn size(&self) -> usize {
        match self {
            Payload::Records(r) => r.len(),
            Payload::Traces { fragments, .. } => fragments.iter().map(|f| f.spans.len()).sum(),
            Payload::Metrics { points, .. } => points.len(),
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
}

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

    async fn send(&self, project: &str, payload: Payload) -> Result<(), SubmitError> {
        let (ack, done) = oneshot::channel();
        let job = WriteJob {
            project: project.to_owned(),
            payload,
            ack,
        };
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SubmitError::Busy,
            mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
        })?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(SubmitError::Store(message)),
            Err(_) => Err(SubmitError::Closed),
        }
    }
}

/// How often pending traces are checked: often enough that a trace is settled soon after its
/// grace period, rarely enough to cost nothing.
fn flush_interval(grace_ms: i64) -> Duration {
    Duration::from_millis((grace_ms / 10).clamp(100, 1000) as u64)
}

async fn run(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    options: WriterOptions,
    mut rx: mpsc::Receiver<WriteJob>,
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
            if let Err(e) = &result {
                tracing::error!(error = %e, items = n, "write failed; batches rejected");
            }
            for job in group {
                let _ = job.ack.send(result.clone());
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
    }
    Ok(())
}

fn observe_traces(metrics: &Metrics, summary: &TraceWriteSummary) {
    for pr in &summary.new_records {
        metrics.observe(pr);
    }
}
