//! The single writer: ingest handlers submit priced batches to a bounded queue; one task drains
//! it, commits everything waiting in one transaction (group commit), then acknowledges each
//! batch. A full queue is reported at once (the caller answers 503), never buffered without bound.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::core::rollup::PricedRecord;
use crate::metrics::Metrics;
use crate::store::Store;

/// Most records committed in one transaction: bounds the writer's memory and commit latency.
const MAX_RECORDS_PER_COMMIT: usize = 20_000;
/// Most queued batches taken at once.
const MAX_JOBS_PER_COMMIT: usize = 64;

struct WriteJob {
    project: String,
    records: Vec<PricedRecord>,
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

/// Handle to the writer task. Cloning is cheap; the task stops once every handle is dropped
/// and the queue is drained.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<WriteJob>,
}

impl Writer {
    /// Starts the writer task. `queue` is the number of batches that may wait.
    /// Committed records (except replacements of earlier ones) are counted in `metrics`.
    pub fn spawn(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        queue: usize,
    ) -> (Writer, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue);
        let handle = tokio::spawn(run(store, metrics, rx));
        (Writer { tx }, handle)
    }

    /// Queues a batch and waits until it is durably committed.
    pub async fn submit(
        &self,
        project: &str,
        records: Vec<PricedRecord>,
    ) -> Result<(), SubmitError> {
        if records.is_empty() {
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        let job = WriteJob {
            project: project.to_owned(),
            records,
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

async fn run(store: Arc<dyn Store>, metrics: Arc<Metrics>, mut rx: mpsc::Receiver<WriteJob>) {
    let mut jobs: Vec<WriteJob> = Vec::with_capacity(MAX_JOBS_PER_COMMIT);
    loop {
        if rx.recv_many(&mut jobs, MAX_JOBS_PER_COMMIT).await == 0 {
            return; // every sender dropped and the queue is empty
        }
        // Commit in groups of one project, bounded in size, keeping arrival order.
        while !jobs.is_empty() {
            let project = jobs[0].project.clone();
            let mut end = 0;
            let mut n = 0;
            while end < jobs.len()
                && jobs[end].project == project
                && (end == 0 || n + jobs[end].records.len() <= MAX_RECORDS_PER_COMMIT)
            {
                n += jobs[end].records.len();
                end += 1;
            }
            let mut batch = Vec::with_capacity(n);
            for job in &mut jobs[..end] {
                batch.append(&mut job.records);
            }
            let batch = Arc::new(batch);
            let result = store.write(&project, Arc::clone(&batch)).await;
            match &result {
                Ok(summary) => {
                    // A replacement was counted when first seen: counters only go up.
                    let mut replaced = summary.replaced.iter().peekable();
                    for (i, pr) in batch.iter().enumerate() {
                        if replaced.next_if_eq(&&i).is_none() {
                            metrics.observe(pr);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, records = n, "write failed; batches rejected")
                }
            }
            for job in jobs.drain(..end) {
                let _ = job
                    .ack
                    .send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            }
        }
    }
}
