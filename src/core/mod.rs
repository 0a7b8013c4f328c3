//! The pure domain: no I/O, no clock reads, no logging. Time is always an argument.

pub mod alert;
pub mod alert_expr;
pub mod cluster;
pub mod demo_quality;
pub(crate) mod dice;
pub mod drift;
pub mod feedback;
pub mod heuristics;
pub mod metric;
pub mod pricing;
pub mod proxy_usage;
pub mod quality;
pub mod record;
pub mod rollup;
pub mod sketch;
pub mod span;
pub mod time;
pub mod trace;
pub mod traffic;
