//! # llmwatch: monitoring for LLM applications in production
//!
//! ## Layout
//! - [`core`]: the pure domain: request records and validation, pricing, rollups, time math,
//!   latency sketches, OTLP spans and trace assembly, GenAI metrics, drift statistics,
//!   synthetic traffic. No I/O.
//! - [`config`]: the TOML config contract, validated once into [`config::Config`].
//! - [`store`]: the storage trait and its embedded SQLite backend.
//! - [`pipeline`]: the single writer: queued batches, group commit, acknowledgement after the
//!   fsync that makes a group durable (on its own task).
//! - [`report`]: daily/cost reports and budget states from store totals.
//! - [`operations`]: latency percentiles by stage, error rate, throughput, time series.
//! - [`drift`]: drift checks: baselines, windows, tests, what moved.
//! - [`metrics`]: the Prometheus exposition of what was ingested.
//! - [`api`]: the HTTP API (axum).
//! - [`app`]: builds everything from a config, serves, shuts down in order.
//! - [`demo`]: `llmwatch demo`: two weeks of realistic traffic, then a live trickle.
//! - [`cli`]: the command line.
//!
//! ## Data flow
//! ```text
//! POST /api/v1/events -> parse + validate (core::record) -> price (core::pricing)
//!   -> pipeline::Writer (bounded queue, one task) -> Store::write (raw rows + rollups, one
//!   transaction) -> fsync (own task) -> ack
//! POST /v1/traces -> core::span summaries -> Writer -> Store::write_traces (merge with the
//!   trace's stored spans, core::trace::assemble, price, record) -> fsync -> ack
//! reports / budgets -> Store::totals (rollups; raw rows only for sub-minute edges)
//! ```

pub mod alerting;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod core;
pub mod demo;
pub mod drift;
pub mod judge;
pub mod metrics;
pub mod operations;
pub mod pipeline;
pub mod proxy;
pub mod quality;
pub mod report;
pub mod store;
