//! Alerting at the edges: the rule engine's evaluation loop and persistence, and delivery to
//! channels. The pure parts (expressions, the state machine) live in `core::alert_expr` and
//! `core::alert`.

pub mod channels;
pub mod engine;
pub mod rules;

use std::collections::BTreeMap;

use channels::ChannelConfig;
use rules::{AlertRule, Routing};

/// Default time between two evaluations.
pub const DEFAULT_EVAL_INTERVAL_MS: i64 = 30_000;

/// Validated alerting settings.
#[derive(Clone)]
pub struct AlertingConfig {
    pub eval_interval_ms: i64,
    /// Linked from notifications.
    pub dashboard_url: Option<String>,
    pub channels: BTreeMap<String, ChannelConfig>,
    pub routing: Routing,
    /// `[[alerts]]` then the built-in rules.
    pub rules: Vec<AlertRule>,
}

impl std::fmt::Debug for AlertingConfig {
    // Channels hold secrets (webhook URLs, keys): list their names and kinds only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertingConfig")
            .field("eval_interval_ms", &self.eval_interval_ms)
            .field("dashboard_url", &self.dashboard_url)
            .field(
                "channels",
                &self
                    .channels
                    .iter()
                    .map(|(n, c)| (n.as_str(), c.kind()))
                    .collect::<Vec<_>>(),
            )
            .field("routing", &self.routing)
            .field("rules", &self.rules.len())
            .finish()
    }
}
