//! Builds llmwatch from a `Config`, serves HTTP, and shuts down in order:
//! (1) stop accepting, (2) let in-flight requests finish (they wait for their commits),
//! (3) close the writer queue, (4) wait for the writer to drain.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::alerting::engine::Engine;
use crate::api::{self, AppState, Clock};
use crate::config::Config;
use crate::core::rollup::PricedRecord;
use crate::judge::Judge;
use crate::metrics::Metrics;
use crate::pipeline::{RecordHook, Writer, WriterOptions};
use crate::proxy::Proxy;
use crate::store::StoreError;
use crate::store::sqlite::SqliteStore;

pub struct App {
    pub state: AppState,
    writer_task: JoinHandle<()>,
    /// The LLM judge, when configured: stopped before the writer drains (it holds a writer
    /// handle).
    judge: Option<(Judge, JoinHandle<()>)>,
    /// The alert engine: started by `serve`, stopped with the server.
    engine: Engine,
    /// The proxy's recorder: ends once the proxy is dropped with the router.
    proxy_recorder: Option<JoinHandle<()>>,
}

impl App {
    /// Opens the store and starts the writer. Must run inside a tokio runtime.
    pub fn build(config: Config, clock: Clock) -> Result<App, StoreError> {
        let store = Arc::new(SqliteStore::open_with(
            &config.db,
            config.durability,
            config.quality.clone(),
            config.capture_content.then_some(config.heuristics),
        )?);
        let metrics = Arc::new(Metrics::new(config.max_label_values));
        // The writer tells the judge of new records, and the judge writes through the writer:
        // the hook finds the judge through a slot filled once both exist.
        let judge_slot: Arc<OnceLock<Judge>> = Arc::new(OnceLock::new());
        let on_new_record: Option<RecordHook> = config.judge.as_ref().map(|_| {
            let slot = Arc::clone(&judge_slot);
            Arc::new(move |project: &str, pr: &PricedRecord| {
                if let Some(judge) = slot.get() {
                    judge.offer(project, pr);
                }
            }) as RecordHook
        });
        let (writer, writer_task) = Writer::spawn(
            store.clone(),
            Arc::clone(&metrics),
            WriterOptions {
                queue: config.writer_queue,
                prices: Arc::clone(&config.pricing),
                trace_grace_ms: config.otlp.grace_ms,
                on_new_record,
                clock: Arc::clone(&clock),
            },
        );
        let judge = config.judge.clone().map(|judge_config| {
            let (judge, task) = Judge::spawn(
                judge_config,
                writer.clone(),
                Arc::clone(&config.pricing),
                Arc::clone(&clock),
            );
            let _ = judge_slot.set(judge.clone());
            (judge, task)
        });
        let proxy = match config.proxy.clone() {
            None => None,
            Some(proxy_config) => Some(
                Proxy::spawn(proxy_config, &config.budgets, writer.clone())
                    .map_err(|e| StoreError::Task(format!("proxy client: {e}")))?,
            ),
        };
        let config = Arc::new(config);
        let engine = Engine::new(
            Arc::clone(&config),
            store.clone(),
            store.clone(),
            Arc::clone(&clock),
            instance_id(),
        );
        Ok(App {
            engine,
            state: AppState {
                alerts: store.clone(),
                judge: judge.as_ref().map(|(j, _)| j.clone()),
                config,
                store,
                writer,
                metrics,
                clock,
                proxy: proxy.as_ref().map(|(p, _)| Arc::clone(p)),
            },
            writer_task,
            judge,
            proxy_recorder: proxy.map(|(_, task)| task),
        })
    }

    /// Serves on `listener` until `shutdown` resolves, then drains the writer.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let App {
            state,
            writer_task,
            judge,
            engine,
            proxy_recorder,
        } = self;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let alerting = tokio::spawn(engine.run(stopped));
        let router = api::router(state.clone());
        drop(state);
        // Streamed chunks are small writes: without TCP_NODELAY each waits for the client's
        // delayed ACK of the previous one (~40 ms a chunk through the proxy).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop.send(true);
        if let Err(e) = alerting.await {
            tracing::error!(error = %e, "alert engine failed");
        }
        // The judge goes first: it holds a writer handle. Judgements in flight are abandoned.
        if let Some((judge, task)) = judge {
            judge.shutdown();
            drop(judge);
            if let Err(e) = task.await {
                tracing::error!(error = %e, "judge task failed");
            }
        }
        // The proxy's last records (their responses have ended with the server) go first.
        if let Some(task) = proxy_recorder {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "proxy recorder failed");
            }
        }
        // The router (and its writer handles) is gone: the writer drains and stops.
        if let Err(e) = writer_task.await {
            tracing::error!(error = %e, "writer task failed");
        }
        tracing::info!("stopped");
        served
    }
}

/// This process's identity for the evaluator lease: host, process id and start time.
fn instance_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!(
        "{host}/{}/{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    )
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; draining");
}
