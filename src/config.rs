//! The configuration file (TOML): `RawConfig` is the public contract, parsed strictly
//! (unknown keys are errors), then validated once into a `Config` with no open questions left.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono_tz::Tz;
use serde::Deserialize;

use crate::alerting::channels::ChannelConfig;
use crate::alerting::rules::{BudgetRef, DASHBOARD, RawAlert, RawRouting, builtin_rules};
use crate::alerting::{AlertingConfig, DEFAULT_EVAL_INTERVAL_MS};
use crate::core::heuristics::HeuristicSet;
use crate::core::pricing::{PriceEntry, PriceTable};
use crate::core::quality::{QualityRules, check_score};
use crate::core::rollup::Scope;
use crate::core::span::{ExtractOptions, StageRule};
use crate::core::time::parse_duration;
use crate::core::time::{Period, parse_tz};
use crate::drift::{Method, Monitor, kind_of};
use crate::judge::{JudgeConfig, RawJudgeConfig};
use crate::operations::parse_step;
use std::collections::BTreeMap;

/// Default listen address: the OTLP/HTTP port, so OpenTelemetry exporters find llmwatch with no setting.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4318";
/// Default database file.
pub const DEFAULT_DB: &str = "llmwatch.db";
/// Default largest accepted request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Default largest OTLP body, after decompression.
pub const DEFAULT_OTLP_MAX_BODY_BYTES: usize = 20 * 1024 * 1024;
/// Default wait for a trace's root span before the trace becomes a record without it.
pub const DEFAULT_OTLP_GRACE_S: f64 = 30.0;
/// Default number of ingest batches waiting for the writer before ingest answers 503.
pub const DEFAULT_WRITER_QUEUE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The config file as written by the user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to listen on (default 127.0.0.1:4318).
    pub listen: Option<String>,
    /// SQLite database file (default ./llmwatch.db).
    pub db: Option<PathBuf>,
    /// IANA time zone for calendar days, weeks and months in reports and budgets (default UTC).
    pub timezone: Option<String>,
    /// Store the `input`/`output` texts of requests (default false: texts are dropped).
    pub capture_content: Option<bool>,
    /// Largest accepted request body in bytes (default 16 MiB); larger bodies get 413.
    pub max_body_bytes: Option<usize>,
    /// `full` (default): every acknowledged batch is fsynced; `normal`: survives a process crash
    /// but not a power loss, faster on slow disks.
    pub durability: Option<Durability>,
    /// Ingest batches allowed to wait for the writer; beyond that ingest answers 503 + Retry-After.
    pub writer_queue: Option<usize>,
    /// Prometheus label cardinality cap: the first N distinct values of a label (model,
    /// feature, error type, stage) get their own series, later ones are exported as `other`
    /// (default 50).
    pub max_label_values: Option<usize>,
    /// Price entries that add models or override built-in ones (USD per 1M tokens).
    #[serde(default)]
    pub pricing: Vec<PriceEntry>,
    /// Spending budgets.
    #[serde(default)]
    pub budgets: Vec<RawBudget>,
    /// OpenTelemetry ingest (`POST /v1/traces`).
    #[serde(default)]
    pub otlp: RawOtlp,
    /// Drift monitors, evaluated by `GET /api/v1/drift/status`.
    #[serde(default)]
    pub drift: Vec<RawDriftMonitor>,
    /// Fewest observations on each side for a drift verdict (default 30).
    pub drift_min_samples: Option<u64>,
    /// How answers are judged: the composite, its threshold, escalation, heuristics.
    #[serde(default)]
    pub quality: RawQuality,
    /// The optional LLM-as-judge evaluator (`crate::judge`).
    pub judge: Option<RawJudgeConfig>,
    /// The recording proxy (`crate::proxy`); on when the table is present.
    pub proxy: Option<RawProxy>,
    /// Time between two alert evaluations (default `30s`).
    pub eval_interval: Option<String>,
    /// The dashboard's address, linked from notifications.
    pub dashboard_url: Option<String>,
    /// Notification channels by name; `type` says what each is.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Channels per severity.
    #[serde(default)]
    pub routing: RawRouting,
    /// Alert rules.
    #[serde(default)]
    pub alerts: Vec<RawAlert>,
}

/// The `[quality]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuality {
    /// Score names whose mean is a request's composite (default relevance, completeness,
    /// safety); a request has a composite once it has every one of them.
    pub composite: Option<Vec<String>>,
    /// A composite below this is a bad answer (default 0.7; a multiple of 0.01).
    pub threshold: Option<f64>,
    /// Bad answers in a row, per feature, that raise an escalation (default 5).
    pub escalation_streak: Option<u32>,
    /// The built-in heuristic evaluators (all on by default; they run when content is
    /// captured).
    #[serde(default)]
    pub heuristics: HeuristicSet,
}

impl RawQuality {
    fn validate(self) -> Result<QualityRules, ConfigError> {
        let defaults = QualityRules::default();
        let composite = self.composite.unwrap_or(defaults.composite);
        if composite.is_empty() {
            return Err(invalid("quality.composite", "must name at least one score"));
        }
        for (i, name) in composite.iter().enumerate() {
            check_score(name, 0.0)
                .map_err(|(_, m)| invalid(format!("quality.composite[{i}]"), m))?;
        }
        let threshold = self.threshold.unwrap_or(defaults.threshold);
        // Histograms keep 0.01 buckets: a threshold on a bucket edge keeps the share exact.
        if !(0.0..=1.0).contains(&threshold)
            || ((threshold * 100.0).round() - threshold * 100.0).abs() > 1e-6
        {
            return Err(invalid(
                "quality.threshold",
                "must be in 0..1 with at most two decimals (e.g. 0.7)",
            ));
        }
        let streak = self.escalation_streak.unwrap_or(defaults.streak);
        if streak == 0 {
            return Err(invalid("quality.escalation_streak", "must be at least 1"));
        }
        Ok(QualityRules {
            composite,
            threshold,
            streak,
        })
    }
}

/// One `[[drift]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDriftMonitor {
    pub name: String,
    /// A categorical (`model`, `attributes.KEY`...) or numeric (`output_tokens`...) dimension.
    pub dimension: String,
    /// A baseline created through the API (default: the 7 days before the window).
    pub baseline: Option<String>,
    /// The current window, ending now (default `1d`).
    pub window: Option<String>,
    /// `auto` (default), `kl`, `js`, `psi`, `chi_square`, `ks`, `wasserstein`.
    pub method: Option<String>,
    /// Score above which (or p-value below which) drift is detected (default per method).
    pub threshold: Option<f64>,
}

/// The `[proxy]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// OpenAI-compatible upstream (default `https://api.openai.com/v1`): Azure OpenAI, vLLM,
    /// Ollama, OpenRouter...
    pub openai_base_url: Option<String>,
    /// Anthropic upstream (default `https://api.anthropic.com`).
    pub anthropic_base_url: Option<String>,
    /// The whole upstream call, streams included (default `600s`).
    pub timeout: Option<String>,
    /// Connecting to the upstream (default `10s`).
    pub connect_timeout: Option<String>,
    /// Ask for usage in OpenAI chat streams that do not (`stream_options.include_usage`), and
    /// strip the extra usage chunk from what the client receives (default false).
    pub add_stream_usage: Option<bool>,
}

/// The validated `[proxy]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    pub openai_base_url: String,
    pub anthropic_base_url: String,
    pub timeout_ms: i64,
    pub connect_timeout_ms: i64,
    pub add_stream_usage: bool,
}

impl RawProxy {
    pub fn validate(self) -> Result<ProxyConfig, ConfigError> {
        let base =
            |key: &str, value: Option<String>, default: &str| -> Result<String, ConfigError> {
                let url = value.unwrap_or_else(|| default.to_owned());
                match reqwest::Url::parse(&url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => {
                        Ok(url.trim_end_matches('/').to_owned())
                    }
                    _ => Err(invalid(
                        format!("proxy.{key}"),
                        format!("{url:?} is not an http(s) URL"),
                    )),
                }
            };
        let duration = |key: &str, value: Option<String>, default: &str| {
            parse_duration(value.as_deref().unwrap_or(default))
                .map_err(|m| invalid(format!("proxy.{key}"), m))
        };
        Ok(ProxyConfig {
            openai_base_url: base(
                "openai_base_url",
                self.openai_base_url,
                "https://api.openai.com/v1",
            )?,
            anthropic_base_url: base(
                "anthropic_base_url",
                self.anthropic_base_url,
                "https://api.anthropic.com",
            )?,
            timeout_ms: duration("timeout", self.timeout, "600s")?,
            connect_timeout_ms: duration("connect_timeout", self.connect_timeout, "10s")?,
            add_stream_usage: self.add_stream_usage.unwrap_or(false),
        })
    }
}

/// The `[otlp]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    /// Largest accepted body after decompression, in bytes (default 20 MiB); larger -> 413.
    pub max_body_bytes: Option<usize>,
    /// Seconds a trace waits for its root span before it becomes a record without it
    /// (default 30).
    pub grace_period_s: Option<f64>,
    /// Span attribute naming the feature when `llmwatch.feature` is absent (before the
    /// resource's `service.name`).
    pub feature_attribute: Option<String>,
    /// Stage rules tried before the built-in ones.
    #[serde(default)]
    pub stage_rules: Vec<StageRule>,
}

/// Validated `[otlp]` settings.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    pub max_body_bytes: usize,
    pub grace_ms: i64,
    pub extract: ExtractOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    #[default]
    Full,
    Normal,
}

/// One `[[budgets]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    /// Unique name, shown in reports and alerts.
    pub name: String,
    /// `day`, `week` (ISO, Monday start) or `month`, in the configured time zone.
    pub period: Period,
    /// Spending limit for one period, in USD.
    pub limit_usd: f64,
    /// Count only requests of this feature.
    pub feature: Option<String>,
    /// Count only requests of this user.
    pub user: Option<String>,
    /// Count only requests of this model.
    pub model: Option<String>,
    /// Fraction of the limit at which the state becomes `warning` (default 0.8).
    pub warn_at: Option<f64>,
    /// The proxy refuses calls in scope (429) once the budget is exceeded (default false).
    pub enforce: Option<bool>,
}

/// A validated budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub name: String,
    pub period: Period,
    pub limit_usd: f64,
    pub scope: Scope,
    pub warn_at: f64,
    pub enforce: bool,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub db: PathBuf,
    pub timezone: Tz,
    pub capture_content: bool,
    pub max_body_bytes: usize,
    pub durability: Durability,
    pub writer_queue: usize,
    pub max_label_values: usize,
    pub pricing: Arc<PriceTable>,
    pub budgets: Vec<Budget>,
    pub otlp: OtlpConfig,
    pub drift: Vec<Monitor>,
    pub drift_min_samples: u64,
    pub quality: QualityRules,
    pub heuristics: HeuristicSet,
    pub judge: Option<JudgeConfig>,
    pub alerting: AlertingConfig,
    pub proxy: Option<ProxyConfig>,
}

impl Config {
    /// Reads and validates a config file; `None` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let raw = match path {
            None => RawConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                RawConfig::parse(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
        };
        raw.validate()
    }
}

impl RawConfig {
    pub fn parse(text: &str) -> Result<RawConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn validate(self) -> Result<Config, ConfigError> {
        let listen_text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text.parse().map_err(|e| {
            invalid(
                "listen",
                format!("{listen_text:?} is not an address like 127.0.0.1:4318: {e}"),
            )
        })?;
        let timezone = parse_tz(self.timezone.as_deref().unwrap_or("UTC"))
            .map_err(|m| invalid("timezone", m))?;
        let max_body_bytes = self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            return Err(invalid("max_body_bytes", "must be at least 1024"));
        }
        let writer_queue = self.writer_queue.unwrap_or(DEFAULT_WRITER_QUEUE);
        if writer_queue == 0 {
            return Err(invalid("writer_queue", "must be at least 1"));
        }
        let pricing = PriceTable::builtin()
            .with_overrides(self.pricing)
            .map_err(|e| invalid("pricing", e.to_string()))?;

        let mut budgets: Vec<Budget> = Vec::with_capacity(self.budgets.len());
        for (i, b) in self.budgets.into_iter().enumerate() {
            let key = |field: &str| format!("budgets[{i}].{field}");
            if b.name.trim().is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            if budgets.iter().any(|other| other.name == b.name) {
                return Err(invalid(
                    key("name"),
                    format!("duplicate budget name {:?}", b.name),
                ));
            }
            if !(b.limit_usd.is_finite() && b.limit_usd > 0.0) {
                return Err(invalid(key("limit_usd"), "must be a number > 0"));
            }
            let warn_at = b.warn_at.unwrap_or(0.8);
            if !(warn_at.is_finite() && warn_at > 0.0 && warn_at <= 1.0) {
                return Err(invalid(key("warn_at"), "must be in (0, 1]"));
            }
            budgets.push(Budget {
                name: b.name,
                period: b.period,
                limit_usd: b.limit_usd,
                scope: Scope {
                    model: b.model,
                    feature: b.feature,
                    user: b.user,
                    release: None,
                },
                warn_at,
                enforce: b.enforce.unwrap_or(false),
            });
        }

        let mut drift: Vec<Monitor> = Vec::with_capacity(self.drift.len());
        for (i, m) in self.drift.into_iter().enumerate() {
            let key = |field: &str| format!("drift[{i}].{field}");
            if m.name.trim().is_empty() {
                return Err(invalid(key("name"), "must not be empty"));
            }
            if drift.iter().any(|other| other.name == m.name) {
                return Err(invalid(
                    key("name"),
                    format!("duplicate monitor name {:?}", m.name),
                ));
            }
            let kind = kind_of(&m.dimension).map_err(|e| invalid(key("dimension"), e))?;
            let window_ms = match &m.window {
                None => crate::drift::DEFAULT_WINDOW_MS,
                Some(w) => parse_step(w).map_err(|e| invalid(key("window"), e))?,
            };
            let method = match &m.method {
                None => Method::Auto,
                Some(name) => Method::parse(name).ok_or_else(|| {
                    invalid(key("method"), format!("expected one of {}", Method::NAMES))
                })?,
            };
            if !method.fits(kind) {
                return Err(invalid(
                    key("method"),
                    format!("{} does not apply to {}", method.name(), m.dimension),
                ));
            }
            if let Some(t) = m.threshold
                && !(t.is_finite() && t > 0.0)
            {
                return Err(invalid(key("threshold"), "must be a number > 0"));
            }
            drift.push(Monitor {
                name: m.name,
                dimension: m.dimension,
                baseline: m.baseline,
                window_ms,
                method,
                threshold: m.threshold,
            });
        }
        let drift_min_samples = self
            .drift_min_samples
            .unwrap_or(crate::drift::DEFAULT_MIN_SAMPLES);
        if drift_min_samples == 0 {
            return Err(invalid("drift_min_samples", "must be at least 1"));
        }
        let capture_content = self.capture_content.unwrap_or(false);
        let otlp = self.otlp.validate(capture_content)?;
        let heuristics = self.quality.heuristics;
        let quality = self.quality.validate()?;
        let judge = match self.judge {
            None => None,
            Some(_) if !capture_content => {
                return Err(invalid(
                    "judge",
                    "needs capture_content = true: the judge reads the captured input and output",
                ));
            }
            Some(raw) => Some(raw.validate().map_err(|m| match m.split_once(": ") {
                Some((key, message)) => invalid(key, message),
                None => invalid("judge", m),
            })?),
        };
        let proxy = self.proxy.map(RawProxy::validate).transpose()?;
        let alerting = validate_alerting(
            self.eval_interval,
            self.dashboard_url,
            self.channels,
            self.routing,
            self.alerts,
            &budgets,
        )?;
        Ok(Config {
            alerting,
            listen,
            db: self.db.unwrap_or_else(|| PathBuf::from(DEFAULT_DB)),
            timezone,
            capture_content,
            max_body_bytes,
            durability: self.durability.unwrap_or_default(),
            writer_queue,
            max_label_values: self.max_label_values.unwrap_or(50),
            pricing: Arc::new(pricing),
            budgets,
            otlp,
            drift,
            drift_min_samples,
            quality,
            heuristics,
            judge,
            proxy,
        })
    }
}

fn validate_alerting(
    eval_interval: Option<String>,
    dashboard_url: Option<String>,
    channels: BTreeMap<String, ChannelConfig>,
    routing: RawRouting,
    alerts: Vec<RawAlert>,
    budgets: &[Budget],
) -> Result<AlertingConfig, ConfigError> {
    let eval_interval_ms = match eval_interval {
        None => DEFAULT_EVAL_INTERVAL_MS,
        Some(t) => parse_duration(&t).map_err(|m| invalid("eval_interval", m))?,
    };
    if eval_interval_ms < 1_000 {
        return Err(invalid("eval_interval", "must be at least 1s"));
    }
    for (name, channel) in &channels {
        if name == DASHBOARD && !matches!(channel, ChannelConfig::Dashboard) {
            return Err(invalid(
                format!("channels.{name}"),
                "the name \"dashboard\" is the built-in dashboard channel",
            ));
        }
        channel
            .validate(name)
            .map_err(|m| match m.split_once(": ") {
                Some((key, message)) => invalid(key, message),
                None => invalid(format!("channels.{name}"), m),
            })?;
    }
    let known: Vec<String> = channels.keys().cloned().collect();
    let routing = routing.validate(&known).map_err(|(k, m)| invalid(k, m))?;
    let mut rules = Vec::with_capacity(alerts.len());
    for (i, a) in alerts.into_iter().enumerate() {
        let rule = a.validate(i, &known).map_err(|(k, m)| invalid(k, m))?;
        if rules
            .iter()
            .any(|r: &crate::alerting::rules::AlertRule| r.name == rule.name)
        {
            return Err(invalid(
                format!("alerts[{i}].name"),
                format!("{:?} is used twice", rule.name),
            ));
        }
        rules.push(rule);
    }
    let refs: Vec<BudgetRef<'_>> = budgets
        .iter()
        .map(|b| BudgetRef {
            name: &b.name,
            period: b.period,
            warn_at: b.warn_at,
        })
        .collect();
    rules.extend(builtin_rules(&refs).map_err(|m| invalid("budgets", m))?);
    Ok(AlertingConfig {
        eval_interval_ms,
        dashboard_url,
        channels,
        routing,
        rules,
    })
}

impl RawOtlp {
    fn validate(self, capture_content: bool) -> Result<OtlpConfig, ConfigError> {
        let max_body_bytes = self.max_body_bytes.unwrap_or(DEFAULT_OTLP_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            return Err(invalid("otlp.max_body_bytes", "must be at least 1024"));
        }
        let grace = self.grace_period_s.unwrap_or(DEFAULT_OTLP_GRACE_S);
        if !(grace.is_finite() && (0.0..=86_400.0).contains(&grace)) {
            return Err(invalid(
                "otlp.grace_period_s",
                "must be between 0 and 86400 seconds",
            ));
        }
        if self.feature_attribute.as_deref() == Some("") {
            return Err(invalid("otlp.feature_attribute", "must not be empty"));
        }
        for (i, rule) in self.stage_rules.iter().enumerate() {
            rule.validate()
                .map_err(|m| invalid(format!("otlp.stage_rules[{i}]"), m))?;
        }
        Ok(OtlpConfig {
            max_body_bytes,
            grace_ms: (grace * 1000.0).round() as i64,
            extract: ExtractOptions {
                capture_content,
                feature_attribute: self.feature_attribute,
                stage_rules: self.stage_rules,
            },
        })
    }
}

/// The example configuration shipped in the repo; also the demo's configuration.
pub const EXAMPLE_CONFIG: &str = include_str!("../examples/llmwatch.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> Result<Config, ConfigError> {
        RawConfig::parse(text)
            .map_err(|message| ConfigError::Parse {
                path: "test".into(),
                message,
            })?
            .validate()
    }

    #[test]
    fn example_config_is_valid() {
        let c = validate(EXAMPLE_CONFIG).unwrap();
        assert_eq!(c.timezone.name(), "Asia/Seoul");
        assert!(!c.budgets.is_empty());
        assert!(c.pricing.resolve("acme-ft", 1_800_000_000_000).is_some());
    }

    #[test]
    fn defaults_are_the_laptop_defaults() {
        let c = validate("").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.timezone.name(), "UTC");
        assert!(!c.capture_content);
        assert_eq!(c.durability, Durability::Full);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = validate("listen = \"127.0.0.1:1\"\nlisten_addr = \"x\"").unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
        let e = validate("timezone = \"Mars/Olympus\"").unwrap_err();
        assert!(e.to_string().contains("timezone"), "{e}");
        let e =
            validate("[[budgets]]\nname = \"d\"\nperiod = \"day\"\nlimit_usd = -5.0").unwrap_err();
        assert!(e.to_string().contains("budgets[0].limit_usd"), "{e}");
        let e = validate("[[budgets]]\nname = \"d\"\nperiod = \"fortnight\"\nlimit_usd = 5.0")
            .unwrap_err();
        assert!(e.to_string().contains("fortnight"), "{e}");
    }

    #[test]
    fn otlp_settings() {
        let c = validate("").unwrap();
        assert_eq!(c.otlp.grace_ms, 30_000);
        assert_eq!(c.otlp.max_body_bytes, 20 * 1024 * 1024);
        let c = validate(
            "capture_content = true\n[otlp]\ngrace_period_s = 2.5\nfeature_attribute = \"app.feature\"\n\
             [[otlp.stage_rules]]\nstage = \"retrieval\"\nspan_name = \"search*\"",
        )
        .unwrap();
        assert_eq!(c.otlp.grace_ms, 2_500);
        assert!(c.otlp.extract.capture_content);
        assert_eq!(c.otlp.extract.stage_rules[0].stage, "retrieval");
        let e = validate("[[otlp.stage_rules]]\nstage = \"x\"").unwrap_err();
        assert!(e.to_string().contains("otlp.stage_rules[0]"), "{e}");
        let e = validate("[otlp]\ngrace_period_s = -1").unwrap_err();
        assert!(e.to_string().contains("otlp.grace_period_s"), "{e}");
    }

    #[test]
    fn budget_defaults_warn_at_80_percent() {
        let c = validate(
            "[[budgets]]\nname = \"d\"\nperiod = \"week\"\nlimit_usd = 50.0\nfeature = \"chat\"",
        )
        .unwrap();
        assert_eq!(c.budgets[0].warn_at, 0.8);
        assert_eq!(c.budgets[0].scope.feature.as_deref(), Some("chat"));
    }
}
