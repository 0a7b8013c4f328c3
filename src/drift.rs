//! Drift checks: a baseline and a current window become two distributions (from the per-hour
//! drift rollups, or from values uploaded with the baseline), a test compares them, and the
//! answer says which values moved.
//!
//! Windows are whole UTC hours (the rollups' resolution): a window is widened to the hours it
//! touches.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::drift::{
    Change, Counts, categorical_changes, chi_square, js_distance, kl_add_one, ks_2samp,
    psi_categorical, psi_deciles, wasserstein, weighted_std,
};
use crate::core::sketch::Sketch;
use crate::core::time::{HOUR_MS, Range};
use crate::store::{DriftScope, Store, StoreError, StoredBaseline};

/// Numeric dimensions (per-hour sketches).
pub use crate::core::rollup::NUMERIC_DIMENSIONS;
/// Categorical dimensions besides `attributes.KEY`.
pub const CATEGORICAL_DIMENSIONS: [&str; 5] =
    ["model", "feature", "release", "status", "error_type"];
/// Below this many observations on either side there is no verdict.
pub const DEFAULT_MIN_SAMPLES: u64 = 30;
/// `auto` uses a test with a p-value up to this baseline size, a distance above it.
pub const AUTO_SMALL_SAMPLE: u64 = 1_000;
/// Default current window and rolling baseline.
pub const DEFAULT_WINDOW_MS: i64 = 24 * HOUR_MS;
pub const DEFAULT_BASELINE_MS: i64 = 7 * 24 * HOUR_MS;

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    /// A bad argument: the parameter at fault and why.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("no baseline named {0:?}")]
    UnknownBaseline(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, message: impl Into<String>) -> DriftError {
    DriftError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Categorical,
    Numeric,
}

/// What kind of dimension a name is, or why it is not one.
pub fn kind_of(dimension: &str) -> Result<Kind, String> {
    if NUMERIC_DIMENSIONS.contains(&dimension) {
        return Ok(Kind::Numeric);
    }
    if CATEGORICAL_DIMENSIONS.contains(&dimension) {
        return Ok(Kind::Categorical);
    }
    match dimension.strip_prefix("attributes.") {
        Some(key) if !key.is_empty() => Ok(Kind::Categorical),
        _ => Err(format!(
            "unknown dimension {dimension:?}: expected one of {}, attributes.KEY, or one of {}",
            CATEGORICAL_DIMENSIONS.join(", "),
            NUMERIC_DIMENSIONS.join(", ")
        )),
    }
}

/// How two distributions are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A test with a p-value for small baselines, a distance above (`AUTO_SMALL_SAMPLE`).
    Auto,
    /// The seed's add-one-smoothed KL divergence (categorical).
    Kl,
    /// Jensen-Shannon distance, natural log (categorical).
    Js,
    /// Population stability index: over categories, or over the baseline's deciles.
    Psi,
    /// Chi-square test of homogeneity (categorical; p-value).
    ChiSquare,
    /// Two-sample Kolmogorov-Smirnov (numeric; p-value).
    Ks,
    /// 1-Wasserstein distance over the baseline's standard deviation (numeric).
    Wasserstein,
}

impl Method {
    pub const NAMES: &'static str = "auto, kl, js, psi, chi_square, ks, wasserstein";

    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "auto" => Method::Auto,
            "kl" => Method::Kl,
            "js" => Method::Js,
            "psi" => Method::Psi,
            "chi_square" | "chi2" => Method::ChiSquare,
            "ks" => Method::Ks,
            "wasserstein" => Method::Wasserstein,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Kl => "kl",
            Method::Js => "js",
            Method::Psi => "psi",
            Method::ChiSquare => "chi_square",
            Method::Ks => "ks",
            Method::Wasserstein => "wasserstein",
        }
    }

    /// Tests whose verdict is a p-value below the threshold (alpha), not a score above it.
    pub fn has_p_value(self) -> bool {
        matches!(self, Method::ChiSquare | Method::Ks)
    }

    /// The default threshold: alpha 0.05 for tests; 0.1 for KL (the seed's), JS and the
    /// normalised Wasserstein distance; 0.2 for PSI (the usual "significant shift").
    pub fn default_threshold(self) -> f64 {
        match self {
            Method::ChiSquare | Method::Ks => 0.05,
            Method::Psi => 0.2,
            _ => 0.1,
        }
    }

    pub fn fits(self, kind: Kind) -> bool {
        match self {
            Method::Auto | Method::Psi => true,
            Method::Kl | Method::Js | Method::ChiSquare => kind == Kind::Categorical,
            Method::Ks | Method::Wasserstein => kind == Kind::Numeric,
        }
    }
}

/// What a baseline is, as stored (`StoredBaseline::spec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BaselineSpec {
    /// A pinned time range.
    Range { from_ms: i64, to_ms: i64 },
    /// The `window_ms` right before the current window.
    Rolling { window_ms: i64 },
    /// Uploaded category counts.
    Counts { counts: Counts },
    /// Uploaded numeric values.
    Values { values: Vec<f64> },
}

/// Parses the body of `POST /api/v1/drift/baselines` into a baseline for `now_ms`:
/// `{"name", "dimension", "values": [...]}` (strings for a categorical dimension, numbers for a
/// numeric one), `{"counts": {...}}`, `{"from", "to"}` or `{"window": "7d"}` (rolling).
pub fn parse_baseline(body: &Value, now_ms: i64) -> Result<StoredBaseline, DriftError> {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body", "expected a JSON object"))?;
    let text = |k: &str| -> Result<Option<&str>, DriftError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Ok(Some(s)),
            Some(_) => Err(invalid(
                k,
                "expected a non-empty string of at most 256 bytes",
            )),
        }
    };
    let name = text("name")?.ok_or_else(|| invalid("name", "is required"))?;
    let dimension = text("dimension")?.ok_or_else(|| invalid("dimension", "is required"))?;
    let kind = kind_of(dimension).map_err(|m| invalid("dimension", m))?;
    let given: Vec<&str> = ["values", "counts", "from", "window"]
        .into_iter()
        .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if given.len() > 1 {
        return Err(invalid(
            given[1],
            "give exactly one of values, counts, from/to, window",
        ));
    }
    let spec = match given.first().copied() {
        Some("values") => {
            let items = obj["values"]
                .as_array()
                .ok_or_else(|| invalid("values", "expected an array"))?;
            if items.is_empty() {
                return Err(invalid("values", "must not be empty"));
            }
            match kind {
                Kind::Categorical => {
                    let mut counts = Counts::new();
                    for (i, v) in items.iter().enumerate() {
                        let s = v.as_str().ok_or_else(|| {
                            invalid(
                                &format!("values[{i}]"),
                                "expected a string (categorical dimension)",
                            )
                        })?;
                        *counts.entry(s.to_owned()).or_default() += 1;
                    }
                    BaselineSpec::Counts { counts }
                }
                Kind::Numeric => {
                    let mut values = Vec::with_capacity(items.len());
                    for (i, v) in items.iter().enumerate() {
                        let x = v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                            invalid(
                                &format!("values[{i}]"),
                                "expected a finite number (numeric dimension)",
                            )
                        })?;
                        values.push(x);
                    }
                    BaselineSpec::Values { values }
                }
            }
        }
        Some("counts") => {
            if kind == Kind::Numeric {
                return Err(invalid(
                    "counts",
                    "counts are for categorical dimensions; send values",
                ));
            }
            let map = obj["counts"]
                .as_object()
                .ok_or_else(|| invalid("counts", "expected an object of category -> count"))?;
            let mut counts = Counts::new();
            for (k, v) in map {
                let n = v
                    .as_u64()
                    .ok_or_else(|| invalid(&format!("counts.{k}"), "expected an integer >= 0"))?;
                counts.insert(k.clone(), n);
            }
            if counts.values().sum::<u64>() == 0 {
                return Err(invalid("counts", "must hold at least one observation"));
            }
            BaselineSpec::Counts { counts }
        }
        Some("from") => {
            let ts = |k: &str| -> Result<i64, DriftError> {
                let v = obj
                    .get(k)
                    .ok_or_else(|| invalid(k, "is required with from"))?;
                crate::core::record::parse_timestamp(v).map_err(|m| invalid(k, m))
            };
            let (from_ms, to_ms) = (ts("from")?, ts("to")?);
            if from_ms >= to_ms {
                return Err(invalid("from", "`from` must be before `to`"));
            }
            BaselineSpec::Range { from_ms, to_ms }
        }
        Some("window") => {
            let w = text("window")?.ok_or_else(|| invalid("window", "expected e.g. \"7d\""))?;
            let window_ms = crate::operations::parse_step(w).map_err(|m| invalid("window", m))?;
            BaselineSpec::Rolling { window_ms }
        }
        _ => {
            return Err(invalid(
                "values",
                "give one of values, counts, from/to, window",
            ));
        }
    };
    Ok(StoredBaseline {
        name: name.to_owned(),
        dimension: dimension.to_owned(),
        spec: serde_json::to_value(&spec).unwrap_or(Value::Null),
        created_ms: now_ms,
    })
}

/// One drift check to run.
#[derive(Debug, Clone)]
pub struct DriftRequest {
    pub dimension: String,
    /// A stored baseline's name; `None` = the 7 days before the window.
    pub baseline: Option<String>,
    pub window: Range,
    pub method: Method,
    pub threshold: Option<f64>,
    pub scope: DriftScope,
    pub min_samples: u64,
}

/// The verdict, as `GET /api/v1/drift` answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    pub dimension: String,
    /// The method that ran (`auto` resolved).
    pub method: &'static str,
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    pub threshold: f64,
    pub drift_detected: bool,
    pub baseline_size: u64,
    pub current_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub changes: Vec<Change>,
    pub new_values: Vec<String>,
    pub missing_values: Vec<String>,
    pub baseline: BaselineInfo,
    pub window: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineInfo {
    pub name: Option<String>,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Span {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Widens a range to the whole UTC hours it touches.
pub fn hour_range(r: Range) -> Range {
    let from = r.from_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let to = (r.to_ms + HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS;
    Range::new(from, to.max(from + HOUR_MS))
}

/// A distribution of either kind.
enum Distribution {
    Counts(Counts),
    /// (value, weight) pairs.
    Sample(Vec<(f64, f64)>),
}

impl Distribution {
    fn size(&self) -> u64 {
        match self {
            Distribution::Counts(c) => c.values().sum(),
            Distribution::Sample(s) => s.iter().map(|(_, w)| w).sum::<f64>().round() as u64,
        }
    }
}

fn sample_of(sketch: &Sketch) -> Vec<(f64, f64)> {
    sketch
        .bins()
        .into_iter()
        .map(|(v, n)| (v, n as f64))
        .collect()
}

async fn from_rollups(
    store: &dyn Store,
    project: &str,
    range: Range,
    req: &DriftRequest,
    kind: Kind,
) -> Result<Distribution, StoreError> {
    Ok(match kind {
        Kind::Categorical => Distribution::Counts(
            store
                .drift_counts(project, range, req.scope.clone(), &req.dimension)
                .await?,
        ),
        Kind::Numeric => Distribution::Sample(sample_of(
            &store
                .drift_sketch(project, range, req.scope.clone(), &req.dimension)
                .await?,
        )),
    })
}

/// Runs one drift check.
pub async fn check(
    store: &dyn Store,
    project: &str,
    req: &DriftRequest,
) -> Result<DriftReport, DriftError> {
    let kind = kind_of(&req.dimension).map_err(|m| invalid("dimension", m))?;
    if !req.method.fits(kind) {
        return Err(invalid(
            "method",
            format!(
                "{} does not apply to a {} dimension",
                req.method.name(),
                if kind == Kind::Numeric {
                    "numeric"
                } else {
                    "categorical"
                }
            ),
        ));
    }
    let window = hour_range(req.window);
    let stored = match &req.baseline {
        None => None,
        Some(name) => Some(
            store
                .baselines(project)
                .await?
                .into_iter()
                .find(|b| &b.name == name)
                .ok_or_else(|| DriftError::UnknownBaseline(name.clone()))?,
        ),
    };
    if let Some(b) = &stored
        && b.dimension != req.dimension
    {
        return Err(invalid(
            "baseline",
            format!(
                "baseline {:?} is for dimension {:?}, not {:?}",
                b.name, b.dimension, req.dimension
            ),
        ));
    }
    let spec = match &stored {
        None => BaselineSpec::Rolling {
            window_ms: DEFAULT_BASELINE_MS,
        },
        Some(b) => serde_json::from_value(b.spec.clone())
            .map_err(|e| StoreError::Corrupt(format!("baseline {:?}: {e}", b.name)))?,
    };
    let (baseline, info) = match &spec {
        BaselineSpec::Range { from_ms, to_ms } => {
            let r = hour_range(Range::new(*from_ms, *to_ms));
            (
                from_rollups(store, project, r, req, kind).await?,
                ("range", Some(r)),
            )
        }
        BaselineSpec::Rolling { window_ms } => {
            let r = Range::new(window.from_ms - window_ms, window.from_ms);
            (
                from_rollups(store, project, r, req, kind).await?,
                ("rolling", Some(r)),
            )
        }
        BaselineSpec::Counts { counts } => (Distribution::Counts(counts.clone()), ("counts", None)),
        BaselineSpec::Values { values } => (
            Distribution::Sample(values.iter().map(|v| (*v, 1.0)).collect()),
            ("values", None),
        ),
    };
    let current = from_rollups(store, project, window, req, kind).await?;
    let about = About {
        dimension: &req.dimension,
        baseline: BaselineInfo {
            name: stored.map(|b| b.name),
            kind: info.0,
            from_ms: info.1.map(|r| r.from_ms),
            to_ms: info.1.map(|r| r.to_ms),
        },
        window: Span {
            from_ms: window.from_ms,
            to_ms: window.to_ms,
        },
    };
    Ok(compare(
        about,
        &baseline,
        &current,
        req.method,
        req.threshold,
        req.min_samples,
    ))
}

/// What a report is about: echoed in it as given.
struct About<'a> {
    dimension: &'a str,
    baseline: BaselineInfo,
    window: Span,
}

/// The pure part of a check: the verdict on two distributions.
fn compare(
    about: About<'_>,
    baseline: &Distribution,
    current: &Distribution,
    method: Method,
    threshold: Option<f64>,
    min_samples: u64,
) -> DriftReport {
    let (b_size, c_size) = (baseline.size(), current.size());
    let method = match method {
        Method::Auto => match (baseline, b_size <= AUTO_SMALL_SAMPLE) {
            (Distribution::Counts(_), true) => Method::ChiSquare,
            (Distribution::Counts(_), false) => Method::Js,
            (Distribution::Sample(_), true) => Method::Ks,
            (Distribution::Sample(_), false) => Method::Wasserstein,
        },
        m => m,
    };
    let threshold = threshold.unwrap_or(method.default_threshold());
    let mut report = DriftReport {
        dimension: about.dimension.to_owned(),
        method: method.name(),
        score: None,
        p_value: None,
        threshold,
        drift_detected: false,
        baseline_size: b_size,
        current_size: c_size,
        reason: None,
        changes: Vec::new(),
        new_values: Vec::new(),
        missing_values: Vec::new(),
        baseline: about.baseline,
        window: about.window,
    };
    if b_size < min_samples || c_size < min_samples {
        report.reason = Some(format!(
            "insufficient data: {b_size} baseline and {c_size} current observations, \
             at least {min_samples} needed on each side"
        ));
        return report;
    }
    match (baseline, current) {
        (Distribution::Counts(b), Distribution::Counts(c)) => {
            let (changes, new_values, missing_values) = categorical_changes(b, c);
            report.changes = changes;
            report.new_values = new_values;
            report.missing_values = missing_values;
            match method {
                Method::Kl => report.score = Some(kl_add_one(b, c)),
                Method::Js => report.score = Some(js_distance(b, c)),
                Method::Psi => report.score = Some(psi_categorical(b, c)),
                _ => {
                    let t = chi_square(b, c);
                    report.score = Some(t.statistic);
                    report.p_value = Some(t.p_value);
                }
            }
        }
        (Distribution::Sample(b), Distribution::Sample(c)) => {
            let (psi, bins) = psi_deciles(b, c);
            let mut changes: Vec<Change> = bins
                .iter()
                .map(|bin| Change {
                    value: format!("[{}, {})", fmt_edge(bin.lower), fmt_edge(bin.upper)),
                    baseline_share: bin.baseline_share,
                    current_share: bin.current_share,
                    delta: bin.current_share - bin.baseline_share,
                })
                .collect();
            changes.sort_by(|x, y| y.delta.abs().total_cmp(&x.delta.abs()));
            report.changes = changes;
            match method {
                Method::Psi => report.score = Some(psi),
                Method::Ks => {
                    let t = ks_2samp(b, c);
                    report.score = Some(t.statistic);
                    report.p_value = Some(t.p_value);
                }
                _ => {
                    let sd = weighted_std(b);
                    let w = wasserstein(b, c);
                    // A constant baseline has no spread: any move is infinite drift, none is 0.
                    report.score = Some(if sd > 0.0 {
                        w / sd
                    } else if w > 0.0 {
                        f64::INFINITY
                    } else {
                        0.0
                    });
                }
            }
        }
        _ => {
            report.reason = Some("baseline and window are of different kinds".into());
            return report;
        }
    }
    report.drift_detected = match (report.p_value, report.score) {
        (Some(p), _) => p < threshold,
        (None, Some(s)) => s > threshold,
        _ => false,
    };
    report
}

fn fmt_edge(x: f64) -> String {
    if x.is_infinite() {
        if x > 0.0 { "inf".into() } else { "-inf".into() }
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

/// A `[[drift]]` monitor of the config, evaluated by `GET /api/v1/drift/status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub name: String,
    pub dimension: String,
    pub baseline: Option<String>,
    pub window_ms: i64,
    pub method: Method,
    pub threshold: Option<f64>,
}

impl Monitor {
    /// The check of this monitor over its window ending at `now_ms`.
    pub fn request(&self, now_ms: i64, min_samples: u64) -> DriftRequest {
        DriftRequest {
            dimension: self.dimension.clone(),
            baseline: self.baseline.clone(),
            window: Range::new(now_ms - self.window_ms, now_ms),
            method: self.method,
            threshold: self.threshold,
            scope: DriftScope::default(),
            min_samples,
        }
    }
}

/// Evaluates every monitor over the window ending at `now_ms`.
pub async fn status(
    store: &dyn Store,
    project: &str,
    monitors: &[Monitor],
    now_ms: i64,
    min_samples: u64,
) -> Vec<(String, Result<DriftReport, DriftError>)> {
    let mut out = Vec::with_capacity(monitors.len());
    for m in monitors {
        let req = m.request(now_ms, min_samples);
        out.push((m.name.clone(), check(store, project, &req).await));
    }
    out
}

/// Text histogram of baseline vs current shares (the largest moves first), two lines per value.
pub fn histogram_rows(changes: &[Change], rows: usize) -> Vec<String> {
    const WIDTH: f64 = 30.0;
    let bar = |share: f64| "#".repeat((share.clamp(0.0, 1.0) * WIDTH).round() as usize);
    let mut out = Vec::new();
    for c in changes.iter().take(rows) {
        out.push(format!(
            "{:<24} base {:>6.1}% {}",
            truncate(&c.value, 24),
            c.baseline_share * 100.0,
            bar(c.baseline_share)
        ));
        out.push(format!(
            "{:<24} now  {:>6.1}% {}  ({:+.1} pts)",
            "",
            c.current_share * 100.0,
            bar(c.current_share),
            c.delta * 100.0
        ));
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('~')).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about(dimension: &str) -> About<'_> {
        About {
            dimension,
            baseline: BaselineInfo {
                name: None,
                kind: "counts",
                from_ms: None,
                to_ms: None,
            },
            window: Span {
                from_ms: 0,
                to_ms: HOUR_MS,
            },
        }
    }

    fn counts(pairs: &[(&str, u64)]) -> Distribution {
        Distribution::Counts(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect())
    }

    #[test]
    fn dimensions_and_methods() {
        assert_eq!(kind_of("model"), Ok(Kind::Categorical));
        assert_eq!(
            kind_of("attributes.question_category"),
            Ok(Kind::Categorical)
        );
        assert_eq!(kind_of("output_tokens"), Ok(Kind::Numeric));
        assert!(kind_of("attributes.").is_err());
        assert!(kind_of("colour").unwrap_err().contains("unknown dimension"));
        assert!(!Method::Ks.fits(Kind::Categorical));
        assert!(Method::Psi.fits(Kind::Numeric));
        assert_eq!(Method::parse("chi2"), Some(Method::ChiSquare));
    }

    #[test]
    fn auto_picks_a_test_for_small_samples_and_a_distance_above() {
        let small = compare(
            about("m"),
            &counts(&[("a", 50), ("b", 50)]),
            &counts(&[("a", 60), ("b", 40)]),
            Method::Auto,
            None,
            30,
        );
        assert_eq!(small.method, "chi_square");
        assert!(small.p_value.is_some());
        assert_eq!(small.threshold, 0.05);
        let big = compare(
            about("m"),
            &counts(&[("a", 5000), ("b", 5000)]),
            &counts(&[("a", 60), ("b", 40)]),
            Method::Auto,
            None,
            30,
        );
        assert_eq!(big.method, "js");
        assert_eq!(big.p_value, None);
        assert_eq!(big.threshold, 0.1);
    }

    #[test]
    fn too_few_observations_give_no_verdict() {
        let r = compare(
            about("m"),
            &counts(&[("a", 29)]),
            &counts(&[("b", 500)]),
            Method::Kl,
            None,
            30,
        );
        assert_eq!(r.score, None);
        assert!(!r.drift_detected);
        assert!(
            r.reason.as_deref().unwrap().contains("insufficient data"),
            "{r:?}"
        );
    }

    #[test]
    fn a_new_category_is_drift_and_is_named() {
        // The seed's example: "complaint" appears.
        let b = counts(&[("product", 40), ("billing", 30), ("support", 30)]);
        let c = counts(&[
            ("product", 30),
            ("billing", 20),
            ("support", 20),
            ("complaint", 30),
        ]);
        let r = compare(
            about("attributes.question_category"),
            &b,
            &c,
            Method::Kl,
            None,
            30,
        );
        assert!(r.drift_detected, "{r:?}");
        assert_eq!(r.new_values, vec!["complaint"]);
        assert_eq!(r.changes[0].value, "complaint");
        assert!((r.changes[0].current_share - 0.3).abs() < 1e-12);
        let same = compare(about("x"), &b, &b, Method::Kl, None, 30);
        assert_eq!(same.score, Some(0.0));
        assert!(!same.drift_detected);
    }

    #[test]
    fn numeric_shift_is_found_with_the_bins_that_moved() {
        let b: Vec<(f64, f64)> = (0..2000).map(|i| (100.0 + (i % 100) as f64, 1.0)).collect();
        let c: Vec<(f64, f64)> = (0..2000).map(|i| (150.0 + (i % 100) as f64, 1.0)).collect();
        let r = compare(
            about("output_tokens"),
            &Distribution::Sample(b.clone()),
            &Distribution::Sample(c),
            Method::Auto,
            None,
            30,
        );
        assert_eq!(r.method, "wasserstein");
        // Shift 50 over a uniform spread of sd ~28.9: about 1.73.
        assert!((r.score.unwrap() - 50.0 / 28.866).abs() < 0.01, "{r:?}");
        assert!(r.drift_detected);
        assert!(!r.changes.is_empty());
        let same = compare(
            about("output_tokens"),
            &Distribution::Sample(b.clone()),
            &Distribution::Sample(b),
            Method::Ks,
            None,
            30,
        );
        assert_eq!(same.score, Some(0.0));
        assert_eq!(same.p_value, Some(1.0));
    }

    #[test]
    fn parse_baselines() {
        let b = parse_baseline(&serde_json::json!({"name": "last-week", "dimension": "attributes.question_category", "values": ["a", "b", "a"]}), 5).unwrap();
        assert_eq!(
            serde_json::from_value::<BaselineSpec>(b.spec).unwrap(),
            BaselineSpec::Counts {
                counts: [("a".to_string(), 2), ("b".to_string(), 1)].into()
            }
        );
        let b = parse_baseline(
            &serde_json::json!({"name": "n", "dimension": "output_tokens", "values": [1, 2.5]}),
            5,
        )
        .unwrap();
        assert_eq!(
            serde_json::from_value::<BaselineSpec>(b.spec).unwrap(),
            BaselineSpec::Values {
                values: vec![1.0, 2.5]
            }
        );
        let b = parse_baseline(&serde_json::json!({"name": "n", "dimension": "model", "from": "2026-01-01T00:00:00Z", "to": 1767312000000_i64}), 5).unwrap();
        assert_eq!(
            serde_json::from_value::<BaselineSpec>(b.spec).unwrap(),
            BaselineSpec::Range {
                from_ms: 1767225600000,
                to_ms: 1767312000000
            }
        );
        let b = parse_baseline(
            &serde_json::json!({"name": "n", "dimension": "model", "window": "7d"}),
            5,
        )
        .unwrap();
        assert_eq!(
            serde_json::from_value::<BaselineSpec>(b.spec).unwrap(),
            BaselineSpec::Rolling {
                window_ms: 7 * 24 * HOUR_MS
            }
        );
        let e = parse_baseline(
            &serde_json::json!({"name": "n", "dimension": "output_tokens", "values": ["x"]}),
            5,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("values[0]"), "{e}");
        let e = parse_baseline(
            &serde_json::json!({"name": "n", "dimension": "nope", "counts": {}}),
            5,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("dimension"), "{e}");
        let e = parse_baseline(
            &serde_json::json!({"dimension": "model", "counts": {"a": 1}}),
            5,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("name"), "{e}");
        let e = parse_baseline(
            &serde_json::json!({"name": "n", "dimension": "model", "counts": {"a": -1}}),
            5,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("counts.a"), "{e}");
    }

    #[test]
    fn windows_are_whole_hours() {
        let r = hour_range(Range::new(HOUR_MS + 5, 3 * HOUR_MS - 5));
        assert_eq!((r.from_ms, r.to_ms), (HOUR_MS, 3 * HOUR_MS));
        let r = hour_range(Range::new(2 * HOUR_MS, 2 * HOUR_MS));
        assert_eq!((r.from_ms, r.to_ms), (2 * HOUR_MS, 3 * HOUR_MS));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The README's bounds for numeric checks read from sketches instead of raw values:
        /// KS within the largest share one bucket holds on either side, Wasserstein within 1% of
        /// the sum of the two means.
        #[test]
        fn checks_from_sketches_stay_within_the_documented_bounds(
            b in proptest::collection::vec(0.5f64..5_000.0, 30..400),
            c in proptest::collection::vec(0.5f64..5_000.0, 30..400),
            scale in 0.5f64..2.0,
        ) {
            let c: Vec<f64> = c.into_iter().map(|x| x * scale).collect();
            let raw = |v: &[f64]| -> Vec<(f64, f64)> { v.iter().map(|x| (*x, 1.0)).collect() };
            let sketch = |v: &[f64]| {
                let mut s = Sketch::new();
                for x in v {
                    s.insert(*x);
                }
                s
            };
            let (sb, sc) = (sketch(&b), sketch(&c));
            let largest_bucket = |s: &Sketch, n: usize| {
                s.bins().iter().map(|(_, k)| *k as f64 / n as f64).fold(0.0, f64::max)
            };
            let bound = largest_bucket(&sb, b.len()).max(largest_bucket(&sc, c.len()));
            let ks_raw = ks_2samp(&raw(&b), &raw(&c)).statistic;
            let ks_sketch = ks_2samp(&sample_of(&sb), &sample_of(&sc)).statistic;
            proptest::prop_assert!((ks_raw - ks_sketch).abs() <= bound + 1e-12,
                "KS raw {ks_raw} sketch {ks_sketch} bound {bound}");
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let w_raw = wasserstein(&raw(&b), &raw(&c));
            let w_sketch = wasserstein(&sample_of(&sb), &sample_of(&sc));
            proptest::prop_assert!((w_raw - w_sketch).abs() <= 0.01 * (mean(&b) + mean(&c)) + 1e-9,
                "W raw {w_raw} sketch {w_sketch}");
        }
    }
}
