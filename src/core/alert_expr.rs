//! The alert rule expression language: parses rules such as `error_rate > 5%`,
//! `daily_cost > budget("daily") * 0.9` or `avg_quality < 0.7 for 1h` into a [`Rule`], prints
//! them back in a canonical, fully explicit form, lists the metrics they read and evaluates
//! them against metric values the caller supplies. Pure: no I/O, no clock.
//!
//! # Grammar (EBNF)
//!
//! ```text
//! rule        = condition [ "for" duration ] ;
//! condition   = conjunction { "or" conjunction } ;
//! conjunction = clause { "and" clause } ;
//! clause      = value cmp_op value
//!             | "(" condition ")"
//!             | anomaly ;                          (* bare: means anomaly(...) > 4 *)
//! cmp_op      = ">" | ">=" | "<" | "<=" | "==" | "!=" ;
//! value       = term { ( "+" | "-" ) term } ;
//! term        = factor { ( "*" | "/" ) factor } ;
//! factor      = "-" factor | primary ;
//! primary     = number | metric | anomaly | "(" value ")" ;
//! anomaly     = "anomaly" "(" metric ")" ;         (* metric must be windowed *)
//! metric      = name [ "(" string ")" ] [ "[" duration "]" ] ;
//! number      = digits [ "." digits ] [ unit ]     (* no space before the unit *)
//!             | "$" digits [ "." digits ] ;
//! unit        = "%" | "ms" | "s" | "m" | "h" | "d" ;
//! duration    = digits [ "." digits ] ( "ms" | "s" | "m" | "h" | "d" ) ;
//! string      = '"' { any char but '"' and '\' | '\"' | '\\' } '"' ;
//! name        = ( letter | "_" ) { letter | digit | "_" } ;
//! ```
//!
//! Precedence, loosest first: `or`, `and`, comparisons (not chainable), `+ -`, `* /`, unary
//! `-`. Binary operators group to the left. `and`, `or`, `for` and `anomaly` are reserved.
//!
//! # Units
//!
//! - Numbers are normalised when read: `5%` is `0.05`, durations become milliseconds (`10s` is
//!   `10000`, `1.5m` is `90000`), and `$50` is `50` (USD).
//! - Windows (`error_rate[15m]`) and `for` need a duration unit and a positive, whole number of
//!   milliseconds. A windowed metric written without a window gets its
//!   [default](Metric::default_window_ms); the resolved window is stored and printed.
//! - A literal compared *directly* with a metric (`p99_latency > 10s`; the literal or the
//!   metric may be negated or in parentheses, and a sum or difference of like metrics counts
//!   as one: `p99_latency - p50_latency > 1s`) must carry a unit that fits the metric's
//!   [`Kind`]: `%` for fractions, `ms`/`s`/`m`/`h`/`d` for durations, `$` for USD; counts,
//!   rates per second, scores and anomaly z-scores take none. A plain number always fits and
//!   is read in the metric's own unit (`p99_latency > 10000` is 10000 ms). Inside arithmetic
//!   (`error_rate > 2 * 1%`) units only scale the number: their meaning through `*` and `/` is
//!   not tracked, so they are not checked.
//!
//! [`Rule`]'s `Display` prints the rule as understood: windows resolved, numbers normalised,
//! windows and `for` in their largest exact unit, a number compared directly with a duration
//! (as above) in `ms`, a bare `anomaly(...)` with its `> 4`. It parses back to an equal rule.

use std::collections::BTreeSet;
use std::fmt;

/// Default z-score threshold of a bare `anomaly(...)`.
pub const DEFAULT_ANOMALY_Z: f64 = 4.0;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Longest window or `for` duration: up to 2^53 ms every whole number is exact in an `f64`.
const MAX_DURATION_MS: f64 = 9_007_199_254_740_992.0;
/// Deepest nesting of parentheses and unary minus: bounds the parser's recursion.
const MAX_NESTING: usize = 32;
/// Most operators in one rule: bounds the tree's depth, hence the recursion of printing,
/// evaluating and dropping it.
const MAX_OPERATORS: usize = 256;

const EXPECTED_VALUE: &str = "a value (a number or a metric)";
const EXPECTED_CMP: &str = "a comparison operator (>, >=, <, <=, ==, !=)";

/// A metric an alert rule can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    ErrorRate,
    RequestRate,
    P50Latency,
    P95Latency,
    P99Latency,
    StageP95,
    TtftP95,
    Cost,
    DailyCost,
    WeeklyCost,
    MonthlyCost,
    Budget,
    BudgetRatio,
    ProjectedCost,
    AvgQuality,
    ScoreAvg,
    SatisfactionRate,
    UnpricedRequests,
    QualityEscalations,
    KlDivergence,
    JsDistance,
    Psi,
    Drift,
}

/// What a metric measures, for unit checks and display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fraction,
    DurationMs,
    Usd,
    Count,
    PerSecond,
    Score,
}

impl Metric {
    /// Every metric, in declaration order.
    pub const ALL: [Metric; 23] = [
        Metric::ErrorRate,
        Metric::RequestRate,
        Metric::P50Latency,
        Metric::P95Latency,
        Metric::P99Latency,
        Metric::StageP95,
        Metric::TtftP95,
        Metric::Cost,
        Metric::DailyCost,
        Metric::WeeklyCost,
        Metric::MonthlyCost,
        Metric::Budget,
        Metric::BudgetRatio,
        Metric::ProjectedCost,
        Metric::AvgQuality,
        Metric::ScoreAvg,
        Metric::SatisfactionRate,
        Metric::UnpricedRequests,
        Metric::QualityEscalations,
        Metric::KlDivergence,
        Metric::JsDistance,
        Metric::Psi,
        Metric::Drift,
    ];

    /// The name as written in expressions.
    pub fn name(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::RequestRate => "request_rate",
            Metric::P50Latency => "p50_latency",
            Metric::P95Latency => "p95_latency",
            Metric::P99Latency => "p99_latency",
            Metric::StageP95 => "stage_p95",
            Metric::TtftP95 => "ttft_p95",
            Metric::Cost => "cost",
            Metric::DailyCost => "daily_cost",
            Metric::WeeklyCost => "weekly_cost",
            Metric::MonthlyCost => "monthly_cost",
            Metric::Budget => "budget",
            Metric::BudgetRatio => "budget_ratio",
            Metric::ProjectedCost => "projected_cost",
            Metric::AvgQuality => "avg_quality",
            Metric::ScoreAvg => "score_avg",
            Metric::SatisfactionRate => "satisfaction_rate",
            Metric::UnpricedRequests => "unpriced_requests",
            Metric::QualityEscalations => "quality_escalations",
            Metric::KlDivergence => "kl_divergence",
            Metric::JsDistance => "js_distance",
            Metric::Psi => "psi",
            Metric::Drift => "drift",
        }
    }

    /// The metric of that exact name.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|metric| metric.name() == name)
    }

    pub fn kind(self) -> Kind {
        match self {
            Metric::ErrorRate | Metric::BudgetRatio | Metric::SatisfactionRate => Kind::Fraction,
            Metric::RequestRate => Kind::PerSecond,
            Metric::P50Latency
            | Metric::P95Latency
            | Metric::P99Latency
            | Metric::StageP95
            | Metric::TtftP95 => Kind::DurationMs,
            Metric::Cost
            | Metric::DailyCost
            | Metric::WeeklyCost
            | Metric::MonthlyCost
            | Metric::Budget
            | Metric::ProjectedCost => Kind::Usd,
            Metric::UnpricedRequests | Metric::QualityEscalations => Kind::Count,
            Metric::AvgQuality
            | Metric::ScoreAvg
            | Metric::KlDivergence
            | Metric::JsDistance
            | Metric::Psi
            | Metric::Drift => Kind::Score,
        }
    }

    /// Whether the metric names something (a stage, budget, score, dimension or monitor).
    pub fn takes_arg(self) -> bool {
        matches!(
            self,
            Metric::StageP95
                | Metric::Budget
                | Metric::BudgetRatio
                | Metric::ProjectedCost
                | Metric::ScoreAvg
                | Metric::KlDivergence
                | Metric::JsDistance
                | Metric::Psi
                | Metric::Drift
        )
    }

    /// Whether the metric is computed over a trailing window (`[5m]`).
    pub fn windowed(self) -> bool {
        self.default_window_ms().is_some()
    }

    /// The window used when none is written; `None` for metrics without a window.
    pub fn default_window_ms(self) -> Option<i64> {
        match self {
            Metric::ErrorRate
            | Metric::RequestRate
            | Metric::P50Latency
            | Metric::P95Latency
            | Metric::P99Latency
            | Metric::StageP95
            | Metric::TtftP95 => Some(5 * MINUTE_MS),
            Metric::Cost
            | Metric::AvgQuality
            | Metric::ScoreAvg
            | Metric::UnpricedRequests
            | Metric::QualityEscalations => Some(HOUR_MS),
            Metric::SatisfactionRate => Some(DAY_MS),
            Metric::DailyCost
            | Metric::WeeklyCost
            | Metric::MonthlyCost
            | Metric::Budget
            | Metric::BudgetRatio
            | Metric::ProjectedCost
            | Metric::KlDivergence
            | Metric::JsDistance
            | Metric::Psi
            | Metric::Drift => None,
        }
    }

    /// An argument to show in "needs a name" messages.
    fn example_arg(self) -> &'static str {
        match self {
            Metric::StageP95 => "tool_execution",
            Metric::ScoreAvg => "relevance",
            Metric::Drift => "monitor-name",
            Metric::KlDivergence | Metric::JsDistance | Metric::Psi => "question_category",
            _ => "daily",
        }
    }
}

/// One metric as a rule reads it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct MetricRef {
    pub metric: Metric,
    /// The stage, budget, score, dimension or monitor name, for metrics that take one.
    pub arg: Option<String>,
    /// Resolved: the explicit window or the metric's default; `None` for unwindowed metrics.
    pub window_ms: Option<i64>,
}

/// A numeric expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A literal, normalised (fractions, milliseconds, USD).
    Number(f64),
    Metric(MetricRef),
    /// The z-score of the metric against its own EWMA baseline.
    Anomaly(MetricRef),
    Neg(Box<Value>),
    Arith {
        op: ArithOp,
        left: Box<Value>,
        right: Box<Value>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Cmp {
        left: Value,
        op: CmpOp,
        right: Value,
    },
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
}

/// A parsed alert rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub condition: Condition,
    /// How long the condition must hold before the alert fires.
    pub for_ms: Option<i64>,
}

/// Why a rule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    /// 1-based, in characters, of the offending token.
    pub column: usize,
    /// What was expected and what was found.
    pub message: String,
}

/// The outcome of [`Rule::evaluate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// `None`: not enough data to say (neither firing nor resolved).
    pub holds: Option<bool>,
    /// The left side of the first comparison, for display.
    pub value: Option<f64>,
    /// The right side of the first comparison, for display.
    pub threshold: Option<f64>,
}

impl ArithOp {
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }

    fn apply(self, left: f64, right: f64) -> Option<f64> {
        match self {
            ArithOp::Add => Some(left + right),
            ArithOp::Sub => Some(left - right),
            ArithOp::Mul => Some(left * right),
            ArithOp::Div if right == 0.0 => None,
            ArithOp::Div => Some(left / right),
        }
    }

    fn precedence(self) -> u8 {
        match self {
            ArithOp::Add | ArithOp::Sub => 1,
            ArithOp::Mul | ArithOp::Div => 2,
        }
    }
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }

    fn compare(self, left: f64, right: f64) -> bool {
        match self {
            CmpOp::Gt => left > right,
            CmpOp::Ge => left >= right,
            CmpOp::Lt => left < right,
            CmpOp::Le => left <= right,
            CmpOp::Eq => left == right,
            CmpOp::Ne => left != right,
        }
    }
}

/// Parses one rule.
pub fn parse(text: &str) -> Result<Rule, ParseError> {
    let mut parser = Parser {
        tokens: lex(text),
        pos: 0,
        nesting: 0,
        operators: 0,
    };
    if parser.peek().tok == Tok::Eof {
        return Err(ParseError {
            column: 1,
            message: "empty rule: write a condition such as error_rate > 5%".to_owned(),
        });
    }
    let expr = parser.parse_or()?;
    let condition = parser.require_condition(expr)?;
    let for_ms = if parser.at_keyword("for") {
        parser.advance();
        Some(parser.parse_duration(
            "a duration such as 5m or 1h after \"for\"",
            "the for duration",
        )?)
    } else {
        None
    };
    if parser.peek().tok != Tok::Eof {
        return Err(parser.expected(if for_ms.is_some() {
            "the end of the rule"
        } else {
            "\"and\", \"or\", \"for\" or the end of the rule"
        }));
    }
    Ok(Rule { condition, for_ms })
}

impl std::str::FromStr for Rule {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Rule, ParseError> {
        parse(text)
    }
}

impl Rule {
    /// Every metric the rule reads (deduplicated, sorted), with whether it is read through
    /// `anomaly()`.
    pub fn metrics(&self) -> Vec<(MetricRef, bool)> {
        fn visit_value(value: &Value, found: &mut BTreeSet<(MetricRef, bool)>) {
            match value {
                Value::Number(_) => {}
                Value::Metric(metric) => {
                    found.insert((metric.clone(), false));
                }
                Value::Anomaly(metric) => {
                    found.insert((metric.clone(), true));
                }
                Value::Neg(inner) => visit_value(inner, found),
                Value::Arith { left, right, .. } => {
                    visit_value(left, found);
                    visit_value(right, found);
                }
            }
        }
        fn visit_condition(condition: &Condition, found: &mut BTreeSet<(MetricRef, bool)>) {
            match condition {
                Condition::Cmp { left, right, .. } => {
                    visit_value(left, found);
                    visit_value(right, found);
                }
                Condition::And(left, right) | Condition::Or(left, right) => {
                    visit_condition(left, found);
                    visit_condition(right, found);
                }
            }
        }
        let mut found = BTreeSet::new();
        visit_condition(&self.condition, &mut found);
        found.into_iter().collect()
    }

    /// Evaluates with the metric values `lookup` gives (`None` = no data; the flag says the
    /// metric is read through `anomaly()`, so the z-score is wanted). A comparison with a
    /// missing side is `None`; `and`/`or` use three-valued logic (false and None = false,
    /// true or None = true). Division by zero and non-finite results are missing values.
    /// The `for` duration is the caller's business: this is one instant.
    pub fn evaluate(&self, lookup: &dyn Fn(&MetricRef, bool) -> Option<f64>) -> Evaluation {
        let mut first = None;
        let holds = eval_condition(&self.condition, lookup, &mut first);
        let (value, threshold) = first.unwrap_or((None, None));
        Evaluation {
            holds,
            value,
            threshold,
        }
    }
}

type Lookup<'a> = &'a dyn Fn(&MetricRef, bool) -> Option<f64>;

fn eval_value(value: &Value, lookup: Lookup) -> Option<f64> {
    let result = match value {
        Value::Number(number) => Some(*number),
        Value::Metric(metric) => lookup(metric, false),
        Value::Anomaly(metric) => lookup(metric, true),
        Value::Neg(inner) => eval_value(inner, lookup).map(|number| -number),
        Value::Arith { op, left, right } => {
            let left = eval_value(left, lookup);
            let right = eval_value(right, lookup);
            left.zip(right)
                .and_then(|(left, right)| op.apply(left, right))
        }
    };
    // NaN from a lookup or an overflow to infinity is no usable data.
    result.filter(|number| number.is_finite())
}

/// `first` receives both sides of the first (leftmost) comparison.
fn eval_condition(
    condition: &Condition,
    lookup: Lookup,
    first: &mut Option<(Option<f64>, Option<f64>)>,
) -> Option<bool> {
    match condition {
        Condition::Cmp { left, op, right } => {
            let left = eval_value(left, lookup);
            let right = eval_value(right, lookup);
            first.get_or_insert((left, right));
            left.zip(right).map(|(left, right)| op.compare(left, right))
        }
        Condition::And(left, right) => {
            let left = eval_condition(left, lookup, first);
            let right = eval_condition(right, lookup, first);
            match (left, right) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }
        }
        Condition::Or(left, right) => {
            let left = eval_condition(left, lookup, first);
            let right = eval_condition(right, lookup, first);
            match (left, right) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Display

/// `ms` as the largest unit that divides it exactly: `5m`, `1h`, `90s`, `1d`, `1500ms`.
fn format_duration(ms: i64) -> String {
    for (unit_ms, unit) in [
        (DAY_MS, "d"),
        (HOUR_MS, "h"),
        (MINUTE_MS, "m"),
        (SECOND_MS, "s"),
    ] {
        if ms > 0 && ms % unit_ms == 0 {
            return format!("{}{unit}", ms / unit_ms);
        }
    }
    format!("{ms}ms")
}

impl fmt::Display for MetricRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.metric.name())?;
        if let Some(arg) = &self.arg {
            f.write_str("(\"")?;
            for c in arg.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\")")?;
        }
        if let Some(window_ms) = self.window_ms {
            write!(f, "[{}]", format_duration(window_ms))?;
        }
        Ok(())
    }
}

/// Binding strength when printing: arithmetic per operator, then unary minus, then atoms.
fn value_precedence(value: &Value) -> u8 {
    match value {
        Value::Arith { op, .. } => op.precedence(),
        Value::Neg(_) => 3,
        Value::Number(_) | Value::Metric(_) | Value::Anomaly(_) => 4,
    }
}

/// `in_ms`: the value is compared directly with a duration, so a literal is shown in `ms` to
/// read as the duration it is.
fn write_value(f: &mut fmt::Formatter<'_>, value: &Value, in_ms: bool) -> fmt::Result {
    match value {
        Value::Number(number) if in_ms => write!(f, "{number}ms"),
        Value::Number(number) => write!(f, "{number}"),
        Value::Metric(metric) => write!(f, "{metric}"),
        Value::Anomaly(metric) => write!(f, "anomaly({metric})"),
        Value::Neg(inner) => {
            f.write_str("-")?;
            write_operand(f, inner, value_precedence(inner) < 3, in_ms)
        }
        Value::Arith { op, left, right } => {
            let precedence = op.precedence();
            // Operators group to the left, so an equal-precedence right operand needs parentheses.
            write_operand(f, left, value_precedence(left) < precedence, false)?;
            write!(f, " {} ", op.symbol())?;
            write_operand(f, right, value_precedence(right) <= precedence, false)
        }
    }
}

fn write_operand(
    f: &mut fmt::Formatter<'_>,
    value: &Value,
    parens: bool,
    in_ms: bool,
) -> fmt::Result {
    if parens {
        f.write_str("(")?;
        write_value(f, value, false)?;
        f.write_str(")")
    } else {
        write_value(f, value, in_ms)
    }
}

/// What a value measures, for the unit check of a comparison and for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    Metric(Kind),
    /// An `anomaly(...)` score: unitless.
    ZScore,
}

/// What `value` measures and the name of its (first) metric: a metric or anomaly, carried
/// through negation and through sums and differences of like measures (`p99_latency -
/// p50_latency` is a duration). `None` when it is a number, mixes measures or scales them.
fn measure(value: &Value) -> Option<(Measure, &'static str)> {
    match value {
        Value::Metric(metric) => {
            Some((Measure::Metric(metric.metric.kind()), metric.metric.name()))
        }
        Value::Anomaly(_) => Some((Measure::ZScore, "anomaly(...)")),
        Value::Neg(inner) => measure(inner),
        Value::Arith {
            op: ArithOp::Add | ArithOp::Sub,
            left,
            right,
        } => {
            let left = measure(left)?;
            let right = measure(right)?;
            (left.0 == right.0).then_some(left)
        }
        Value::Number(_) | Value::Arith { .. } => None,
    }
}

fn is_duration(value: &Value) -> bool {
    matches!(measure(value), Some((Measure::Metric(Kind::DurationMs), _)))
}

fn write_condition(f: &mut fmt::Formatter<'_>, condition: &Condition) -> fmt::Result {
    match condition {
        Condition::Cmp { left, op, right } => {
            write_value(f, left, is_duration(right))?;
            write!(f, " {} ", op.symbol())?;
            write_value(f, right, is_duration(left))
        }
        Condition::And(left, right) => {
            write_sub_condition(f, left, matches!(**left, Condition::Or(..)))?;
            f.write_str(" and ")?;
            write_sub_condition(f, right, !matches!(**right, Condition::Cmp { .. }))
        }
        Condition::Or(left, right) => {
            write_condition(f, left)?;
            f.write_str(" or ")?;
            write_sub_condition(f, right, matches!(**right, Condition::Or(..)))
        }
    }
}

fn write_sub_condition(
    f: &mut fmt::Formatter<'_>,
    condition: &Condition,
    parens: bool,
) -> fmt::Result {
    if parens {
        f.write_str("(")?;
        write_condition(f, condition)?;
        f.write_str(")")
    } else {
        write_condition(f, condition)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_value(f, self, false)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_condition(f, self)
    }
}

impl fmt::Display for Rule {
    /// The canonical form "as understood"; parses back to an equal rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_condition(f, &self.condition)?;
        if let Some(for_ms) = self.for_ms {
            write!(f, " for {}", format_duration(for_ms))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Lexer

/// The unit written on a number literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Plain,
    Percent,
    Dollar,
    Duration,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// Already normalised (fraction, ms, USD).
    Number {
        value: f64,
        unit: Unit,
    },
    Ident(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Cmp(CmpOp),
    Arith(ArithOp),
    Eof,
    /// A lexical error, reported when the parser reaches it so the leftmost error wins.
    Invalid {
        message: String,
        at: usize,
    },
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based, in characters.
    column: usize,
    /// As written, for messages.
    text: String,
}

/// Tokens up to the first invalid one, always ending with `Eof`.
fn lex(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        while chars.get(pos).is_some_and(|c| c.is_whitespace()) {
            pos += 1;
        }
        if pos >= chars.len() {
            break;
        }
        let (tok, end) = lex_token(&chars, pos);
        // An error points at its own spot, which may be inside the token (a bad escape).
        let (column, invalid) = match tok {
            Tok::Invalid { at, .. } => (at + 1, true),
            _ => (pos + 1, false),
        };
        tokens.push(Token {
            tok,
            column,
            text: chars[pos..end].iter().collect(),
        });
        if invalid {
            break;
        }
        pos = end;
    }
    tokens.push(Token {
        tok: Tok::Eof,
        column: pos.min(chars.len()) + 1,
        text: String::new(),
    });
    tokens
}

/// A lexical error at character index `at`.
fn invalid(message: impl Into<String>, at: usize) -> (Tok, usize) {
    let message = message.into();
    (Tok::Invalid { message, at }, at + 1)
}

/// The token starting at `start` (not whitespace) and the position after it.
fn lex_token(chars: &[char], start: usize) -> (Tok, usize) {
    let c = chars[start];
    let next = chars.get(start + 1).copied();
    let one = |tok| (tok, start + 1);
    let two = |tok| (tok, start + 2);
    match c {
        '(' => one(Tok::LParen),
        ')' => one(Tok::RParen),
        '[' => one(Tok::LBracket),
        ']' => one(Tok::RBracket),
        '+' => one(Tok::Arith(ArithOp::Add)),
        '-' => one(Tok::Arith(ArithOp::Sub)),
        '*' => one(Tok::Arith(ArithOp::Mul)),
        '/' => one(Tok::Arith(ArithOp::Div)),
        '>' if next == Some('=') => two(Tok::Cmp(CmpOp::Ge)),
        '>' => one(Tok::Cmp(CmpOp::Gt)),
        '<' if next == Some('=') => two(Tok::Cmp(CmpOp::Le)),
        '<' => one(Tok::Cmp(CmpOp::Lt)),
        '=' if next == Some('=') => two(Tok::Cmp(CmpOp::Eq)),
        '=' => invalid("unexpected \"=\"; did you mean \"==\"?", start),
        '!' if next == Some('=') => two(Tok::Cmp(CmpOp::Ne)),
        '!' => invalid("unexpected \"!\"; did you mean \"!=\"?", start),
        '&' if next == Some('&') => invalid("unexpected \"&&\"; write \"and\"", start),
        '|' if next == Some('|') => invalid("unexpected \"||\"; write \"or\"", start),
        '%' => invalid(
            "unexpected \"%\": write units right after the number, as in 5%",
            start,
        ),
        '"' => lex_string(chars, start),
        '$' if next.is_some_and(|c| c.is_ascii_digit()) => {
            lex_number(chars, start, start + 1, true)
        }
        '$' => invalid("expected an amount after \"$\", as in $50", start),
        c if c.is_ascii_digit() => lex_number(chars, start, start, false),
        c if c.is_ascii_alphabetic() || c == '_' => {
            let mut end = start;
            while chars
                .get(end)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                end += 1;
            }
            (Tok::Ident(chars[start..end].iter().collect()), end)
        }
        '.' if next.is_some_and(|c| c.is_ascii_digit()) => {
            invalid("a number must start with a digit: write 0.5, not .5", start)
        }
        '\'' => invalid(
            "unexpected \"'\": names are written in double quotes",
            start,
        ),
        other => invalid(format!("unexpected character {other:?}"), start),
    }
}

fn lex_string(chars: &[char], start: usize) -> (Tok, usize) {
    let mut value = String::new();
    let mut pos = start + 1;
    loop {
        match chars.get(pos) {
            None => return invalid("unterminated string: missing closing \"", start),
            Some('"') => return (Tok::Str(value), pos + 1),
            Some('\\') => match chars.get(pos + 1) {
                Some(c @ ('"' | '\\')) => {
                    value.push(*c);
                    pos += 2;
                }
                _ => {
                    return invalid(
                        "unknown escape in string: only \\\" and \\\\ are allowed",
                        pos,
                    );
                }
            },
            Some(c) => {
                value.push(*c);
                pos += 1;
            }
        }
    }
}

/// A number whose digits begin at `start` (after the `$` at `token_start`, if any), with its
/// unit suffix.
fn lex_number(chars: &[char], token_start: usize, start: usize, dollar: bool) -> (Tok, usize) {
    let is_digit = |pos: usize| chars.get(pos).is_some_and(char::is_ascii_digit);
    let mut pos = start;
    while is_digit(pos) {
        pos += 1;
    }
    let mut digits: String = chars[start..pos].iter().collect();
    let mut fraction_digits = 0_i64;
    if chars.get(pos) == Some(&'.') {
        if !is_digit(pos + 1) {
            return invalid("expected digits after the decimal point", token_start);
        }
        pos += 1;
        while is_digit(pos) {
            digits.push(chars[pos]);
            fraction_digits += 1;
            pos += 1;
        }
    }
    let suffix_start = pos;
    if chars.get(pos) == Some(&'%') {
        pos += 1;
    } else {
        while chars
            .get(pos)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            pos += 1;
        }
    }
    let suffix: String = chars[suffix_start..pos].iter().collect();
    // Scale by a power of ten in the decimal text, so `5%` is exactly the double nearest 0.05
    // rather than 5.0 / 100.0; then by a small integer factor for minutes, hours and days.
    let (unit, exponent, factor) = match suffix.as_str() {
        "" => (Unit::Plain, 0, 1.0),
        "%" => (Unit::Percent, -2, 1.0),
        "ms" => (Unit::Duration, 0, 1.0),
        "s" => (Unit::Duration, 3, 1.0),
        "m" => (Unit::Duration, 4, 6.0),
        "h" => (Unit::Duration, 5, 36.0),
        "d" => (Unit::Duration, 5, 864.0),
        other => {
            return invalid(
                format!(
                    "unknown unit \"{other}\" (use %, ms, s, m, h or d right after the number)"
                ),
                token_start,
            );
        }
    };
    if dollar && unit != Unit::Plain {
        return invalid("a dollar amount takes no unit", token_start);
    }
    let unit = if dollar { Unit::Dollar } else { unit };
    let decimal = format!("{digits}e{}", exponent - fraction_digits);
    match decimal.parse::<f64>().map(|value| value * factor) {
        Ok(value) if value.is_finite() => (Tok::Number { value, unit }, pos),
        _ => invalid("number too large", token_start),
    }
}

// ---------------------------------------------------------------------------------------
// Parser

/// A literal as written, for the unit check of a comparison.
#[derive(Debug, Clone, Copy)]
struct Literal {
    unit: Unit,
    column: usize,
}

/// A parsed value, with the literal it directly is (possibly negated or parenthesised).
#[derive(Debug)]
struct Operand {
    value: Value,
    literal: Option<Literal>,
}

/// What a sub-expression parsed to: a parenthesised expression can be either, which is only
/// known after its closing parenthesis, so one parser handles both without backtracking.
#[derive(Debug)]
enum Expr {
    Cond(Condition),
    Val(Operand),
}

#[derive(Debug)]
struct Parsed {
    expr: Expr,
    /// Where it starts, for "found a condition" errors.
    column: usize,
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Current depth of parentheses and unary minus.
    nesting: usize,
    /// Operators built so far.
    operators: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // `lex` always ends with `Eof` and `advance` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.tok != Tok::Eof {
            self.pos += 1;
        }
        token
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(name) if name == keyword)
    }

    /// "expected X, found Y" at the current token, or the lexical error it carries.
    fn expected(&self, what: &str) -> ParseError {
        let token = self.peek();
        let message = match &token.tok {
            Tok::Invalid { message, .. } => message.clone(),
            Tok::Eof => format!("expected {what}, found end of input"),
            Tok::Str(_) => format!("expected {what}, found the string {}", token.text),
            _ => format!("expected {what}, found \"{}\"", token.text),
        };
        ParseError {
            column: token.column,
            message,
        }
    }

    fn count_operator(&mut self, column: usize) -> Result<(), ParseError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(ParseError {
                column,
                message: format!("rule too complex: more than {MAX_OPERATORS} operators"),
            });
        }
        Ok(())
    }

    fn enter(&mut self, column: usize) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(ParseError {
                column,
                message: format!("rule nested too deeply (more than {MAX_NESTING} levels)"),
            });
        }
        Ok(())
    }

    /// A condition from `parsed`; a bare `anomaly(...)` means `anomaly(...) > 4`. Otherwise a
    /// value here lacks its comparison, which the current token should have been.
    fn require_condition(&mut self, parsed: Parsed) -> Result<Condition, ParseError> {
        match parsed.expr {
            Expr::Cond(condition) => Ok(condition),
            Expr::Val(Operand {
                value: Value::Anomaly(metric),
                ..
            }) => {
                self.count_operator(parsed.column)?;
                Ok(Condition::Cmp {
                    left: Value::Anomaly(metric),
                    op: CmpOp::Gt,
                    right: Value::Number(DEFAULT_ANOMALY_Z),
                })
            }
            Expr::Val(_) => Err(self.expected(EXPECTED_CMP)),
        }
    }

    /// The left operand of the operator `op`, which cannot follow a condition.
    fn left_value(parsed: Parsed, op: &Token) -> Result<Operand, ParseError> {
        match parsed.expr {
            Expr::Val(operand) => Ok(operand),
            Expr::Cond(_) => Err(ParseError {
                column: op.column,
                message: format!(
                    "unexpected \"{}\" after a condition: a condition cannot be compared or used in arithmetic",
                    op.text
                ),
            }),
        }
    }

    /// The right operand of an operator (or of unary minus).
    fn right_value(parsed: Parsed) -> Result<Operand, ParseError> {
        match parsed.expr {
            Expr::Val(operand) => Ok(operand),
            Expr::Cond(_) => Err(ParseError {
                column: parsed.column,
                message: "expected a value, found a condition".to_owned(),
            }),
        }
    }

    fn parse_or(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.parse_and()?;
        while self.at_keyword("or") {
            let column = left.column;
            let left_condition = self.require_condition(left)?;
            let op = self.advance();
            self.count_operator(op.column)?;
            let right = self.parse_and()?;
            let right_condition = self.require_condition(right)?;
            left = Parsed {
                expr: Expr::Cond(Condition::Or(
                    Box::new(left_condition),
                    Box::new(right_condition),
                )),
                column,
            };
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<Parsed, ParseError> {
        let mut left = self.parse_comparison()?;
        while self.at_keyword("and") {
            let column = left.column;
            let left_condition = self.require_condition(left)?;
            let op = self.advance();
            self.count_operator(op.column)?;
            let right = self.parse_comparison()?;
            let right_condition = self.require_condition(right)?;
            left = Parsed {
                expr: Expr::Cond(Condition::And(
                    Box::new(left_condition),
                    Box::new(right_condition),
                )),
                column,
            };
        }
        Ok(left)
    }

    fn parse_comparison(&mut self) -> Result<Parsed, ParseError> {
        let left = self.parse_additive()?;
        let op = match self.peek().tok {
            Tok::Cmp(op) => op,
            _ => return Ok(left),
        };
        let column = left.column;
        let op_token = self.advance();
        let left = Self::left_value(left, &op_token)?;
        self.count_operator(op_token.column)?;
        let right = Self::right_value(self.parse_additive()?)?;
        check_units(&left, &right)?;
        Ok(Parsed {
            expr: Expr::Cond(Condition::Cmp {
                left: left.value,
                op,
                right: right.value,
            }),
            column,
        })
    }

    fn parse_additive(&mut self) -> Result<Parsed, ParseError> {
        self.parse_binary(Self::parse_multiplicative, &[ArithOp::Add, ArithOp::Sub])
    }

    fn parse_multiplicative(&mut self) -> Result<Parsed, ParseError> {
        self.parse_binary(Self::parse_unary, &[ArithOp::Mul, ArithOp::Div])
    }

    /// A left-grouping chain of `ops` between operands parsed by `operand`.
    fn parse_binary(
        &mut self,
        operand: fn(&mut Self) -> Result<Parsed, ParseError>,
        ops: &[ArithOp],
    ) -> Result<Parsed, ParseError> {
        let mut left = operand(self)?;
        loop {
            let op = match self.peek().tok {
                Tok::Arith(op) if ops.contains(&op) => op,
                _ => return Ok(left),
            };
            let column = left.column;
            let op_token = self.advance();
            let left_operand = Self::left_value(left, &op_token)?;
            self.count_operator(op_token.column)?;
            let right_operand = Self::right_value(operand(self)?)?;
            left = Parsed {
                expr: Expr::Val(Operand {
                    value: Value::Arith {
                        op,
                        left: Box::new(left_operand.value),
                        right: Box::new(right_operand.value),
                    },
                    literal: None,
                }),
                column,
            };
        }
    }

    fn parse_unary(&mut self) -> Result<Parsed, ParseError> {
        if self.peek().tok != Tok::Arith(ArithOp::Sub) {
            return self.parse_primary();
        }
        let minus = self.advance();
        self.enter(minus.column)?;
        self.count_operator(minus.column)?;
        let operand = Self::right_value(self.parse_unary()?)?;
        self.nesting -= 1;
        Ok(Parsed {
            expr: Expr::Val(Operand {
                value: Value::Neg(Box::new(operand.value)),
                // `-5%` is still a percentage for the unit check.
                literal: operand.literal,
            }),
            column: minus.column,
        })
    }

    fn parse_primary(&mut self) -> Result<Parsed, ParseError> {
        let token = self.peek().clone();
        let column = token.column;
        let value = |value, literal| Parsed {
            expr: Expr::Val(Operand { value, literal }),
            column,
        };
        match &token.tok {
            Tok::Number {
                value: number,
                unit,
            } => {
                self.advance();
                let literal = Literal {
                    unit: *unit,
                    column,
                };
                Ok(value(Value::Number(*number), Some(literal)))
            }
            Tok::LParen => {
                self.advance();
                self.enter(column)?;
                let inner = self.parse_or()?;
                self.nesting -= 1;
                if self.peek().tok != Tok::RParen {
                    return Err(self.expected(match inner.expr {
                        Expr::Val(_) => "an operator or \")\"",
                        Expr::Cond(_) => "\"and\", \"or\" or \")\"",
                    }));
                }
                self.advance();
                Ok(Parsed {
                    expr: inner.expr,
                    column,
                })
            }
            Tok::Ident(name) if name == "anomaly" => {
                let metric = self.parse_anomaly()?;
                Ok(value(Value::Anomaly(metric), None))
            }
            Tok::Ident(name) if !matches!(name.as_str(), "and" | "or" | "for") => {
                let metric = self.parse_metric_ref()?;
                Ok(value(Value::Metric(metric), None))
            }
            _ => Err(self.expected(EXPECTED_VALUE)),
        }
    }

    /// `anomaly(metric)`, at the `anomaly` keyword.
    fn parse_anomaly(&mut self) -> Result<MetricRef, ParseError> {
        self.advance();
        if self.peek().tok != Tok::LParen {
            return Err(self.expected("\"(\" after anomaly"));
        }
        self.advance();
        let token = self.peek().clone();
        match &token.tok {
            Tok::Ident(name) if name == "anomaly" => {
                return Err(ParseError {
                    column: token.column,
                    message: "anomaly() cannot be nested".to_owned(),
                });
            }
            Tok::Ident(name) if !matches!(name.as_str(), "and" | "or" | "for") => {
                // The baseline is an EWMA over successive windows: a windowless metric has none.
                if let Some(metric) = Metric::parse(name).filter(|metric| !metric.windowed()) {
                    return Err(ParseError {
                        column: token.column,
                        message: format!(
                            "anomaly() needs a windowed metric; {} has no window",
                            metric.name()
                        ),
                    });
                }
            }
            _ => return Err(self.expected("a metric inside anomaly()")),
        }
        let metric = self.parse_metric_ref()?;
        if self.peek().tok != Tok::RParen {
            return Err(self.expected("\")\" to close anomaly("));
        }
        self.advance();
        Ok(metric)
    }

    /// `name [("arg")] [[window]]`, at the name.
    fn parse_metric_ref(&mut self) -> Result<MetricRef, ParseError> {
        let name_token = self.advance();
        let name = name_token.text.as_str();
        let Some(metric) = Metric::parse(name) else {
            return Err(ParseError {
                column: name_token.column,
                message: unknown_metric_message(name),
            });
        };
        let arg = if self.peek().tok == Tok::LParen {
            let open = self.advance();
            if !metric.takes_arg() {
                return Err(ParseError {
                    column: open.column,
                    message: format!("{name} takes no argument"),
                });
            }
            let arg_token = self.peek().clone();
            let Tok::Str(arg) = &arg_token.tok else {
                return Err(self.expected(&format!(
                    "a quoted name in {name}(...), as in {name}(\"{}\")",
                    metric.example_arg()
                )));
            };
            if arg.is_empty() {
                return Err(ParseError {
                    column: arg_token.column,
                    message: format!("the name in {name}(...) must not be empty"),
                });
            }
            self.advance();
            if self.peek().tok != Tok::RParen {
                return Err(self.expected("\")\""));
            }
            self.advance();
            Some(arg.clone())
        } else if metric.takes_arg() {
            return Err(ParseError {
                column: name_token.column,
                message: format!(
                    "{name} needs a name in quotes, as in {name}(\"{}\")",
                    metric.example_arg()
                ),
            });
        } else {
            None
        };
        let window_ms = if self.peek().tok == Tok::LBracket {
            let open = self.advance();
            if !metric.windowed() {
                return Err(ParseError {
                    column: open.column,
                    message: format!("{name} takes no window"),
                });
            }
            let window =
                self.parse_duration("a duration such as 5m or 1h in the window", "the window")?;
            if self.peek().tok != Tok::RBracket {
                return Err(self.expected("\"]\""));
            }
            self.advance();
            Some(window)
        } else {
            metric.default_window_ms()
        };
        Ok(MetricRef {
            metric,
            arg,
            window_ms,
        })
    }

    /// A positive whole number of milliseconds written with a duration unit.
    fn parse_duration(&mut self, expected: &str, what: &str) -> Result<i64, ParseError> {
        let token = self.peek().clone();
        let Tok::Number {
            value,
            unit: Unit::Duration,
        } = token.tok
        else {
            return Err(self.expected(expected));
        };
        let fail = |problem: &str| ParseError {
            column: token.column,
            message: format!("{what} must be {problem}, found \"{}\"", token.text),
        };
        if value <= 0.0 {
            return Err(fail("a positive duration"));
        }
        if value.fract() != 0.0 {
            return Err(fail("a whole number of milliseconds"));
        }
        if value > MAX_DURATION_MS {
            return Err(fail("at most 2^53 ms"));
        }
        self.advance();
        // Exact: a whole number no larger than 2^53.
        Ok(value as i64)
    }
}

/// A literal compared directly with a metric must carry a unit that fits the metric.
fn check_units(left: &Operand, right: &Operand) -> Result<(), ParseError> {
    for (measured, literal) in [(left, right), (right, left)] {
        let mismatch = literal.literal.and_then(|literal| {
            unit_mismatch(&measured.value, literal.unit).map(|message| (literal.column, message))
        });
        if let Some((column, message)) = mismatch {
            return Err(ParseError { column, message });
        }
    }
    Ok(())
}

fn unit_mismatch(measured: &Value, unit: Unit) -> Option<String> {
    if unit == Unit::Plain {
        return None;
    }
    let (measure, name) = measure(measured)?;
    let hint = match measure {
        Measure::Metric(Kind::Fraction) if unit == Unit::Percent => return None,
        Measure::Metric(Kind::DurationMs) if unit == Unit::Duration => return None,
        Measure::Metric(Kind::Usd) if unit == Unit::Dollar => return None,
        Measure::Metric(Kind::Fraction) => {
            "a fraction: write the threshold as a number (0.05) or a percentage (5%)"
        }
        Measure::Metric(Kind::DurationMs) => "a duration: write the threshold in ms, s, m or h",
        Measure::Metric(Kind::Usd) => "in USD: write the threshold as a number or in dollars ($50)",
        Measure::Metric(Kind::Count) => "a count: write the threshold as a plain number",
        Measure::Metric(Kind::PerSecond) => {
            "a rate per second: write the threshold as a plain number"
        }
        Measure::Metric(Kind::Score) => "a score: write the threshold as a plain number",
        Measure::ZScore => "a z-score: write the threshold as a plain number",
    };
    Some(format!("{name} is {hint}"))
}

/// Suggests the nearest known name, or lists them all when nothing is close.
fn unknown_metric_message(name: &str) -> String {
    let candidates = Metric::ALL
        .iter()
        .map(|metric| metric.name())
        .chain(["anomaly"]);
    let lowered = name.to_lowercase();
    let nearest = candidates
        .map(|candidate| (edit_distance(&lowered, candidate), candidate))
        .min_by_key(|(distance, _)| *distance);
    match nearest {
        Some((distance, candidate)) if distance <= (name.chars().count() / 3).max(2) => {
            format!("unknown metric \"{name}\"; did you mean {candidate}?")
        }
        _ => {
            let known: Vec<&str> = Metric::ALL.iter().map(|metric| metric.name()).collect();
            format!(
                "unknown metric \"{name}\"; known metrics: {}",
                known.join(", ")
            )
        }
    }
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn metric_ref(metric: Metric, arg: Option<&str>, window_ms: Option<i64>) -> MetricRef {
        MetricRef {
            metric,
            arg: arg.map(str::to_owned),
            window_ms,
        }
    }

    fn metric(metric: Metric, arg: Option<&str>, window_ms: Option<i64>) -> Value {
        Value::Metric(metric_ref(metric, arg, window_ms))
    }

    /// A metric without argument, at its default window.
    fn plain(metric: Metric) -> Value {
        Value::Metric(metric_ref(metric, None, metric.default_window_ms()))
    }

    fn num(number: f64) -> Value {
        Value::Number(number)
    }

    fn neg(value: Value) -> Value {
        Value::Neg(Box::new(value))
    }

    fn arith(left: Value, op: ArithOp, right: Value) -> Value {
        Value::Arith {
            op,
            left: Box::new(left),
            right: Box::new(right),
        }
    }

    fn cmp(left: Value, op: CmpOp, right: Value) -> Condition {
        Condition::Cmp { left, op, right }
    }

    fn and(left: Condition, right: Condition) -> Condition {
        Condition::And(Box::new(left), Box::new(right))
    }

    fn or(left: Condition, right: Condition) -> Condition {
        Condition::Or(Box::new(left), Box::new(right))
    }

    fn rule(condition: Condition) -> Rule {
        Rule {
            condition,
            for_ms: None,
        }
    }

    fn parsed(text: &str) -> Rule {
        match parse(text) {
            Ok(rule) => rule,
            Err(error) => panic!("{text:?} does not parse: {error}"),
        }
    }

    /// The condition of a rule whose right side is what is being tested.
    fn right_side(text: &str) -> Value {
        match parsed(text).condition {
            Condition::Cmp { right, .. } => right,
            other => panic!("{text:?} is not a comparison: {other:?}"),
        }
    }

    /// Evaluates with values by metric name (the anomaly flag selects `anomaly:NAME`).
    fn evaluate(text: &str, values: &[(&str, f64)]) -> Evaluation {
        let lookup = |metric: &MetricRef, anomaly: bool| {
            let key = if anomaly {
                format!("anomaly:{}", metric.metric.name())
            } else {
                metric.metric.name().to_owned()
            };
            values
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| *value)
        };
        parsed(text).evaluate(&lookup)
    }

    fn assert_round_trip(text: &str) {
        let rule = parsed(text);
        let shown = rule.to_string();
        match parse(&shown) {
            Ok(again) => {
                assert_eq!(
                    again, rule,
                    "{text:?} shows as {shown:?}, which parses differently"
                );
                assert_eq!(
                    again.to_string(),
                    shown,
                    "display of {text:?} is not stable"
                );
            }
            Err(error) => panic!("{text:?} shows as {shown:?}, which does not parse: {error}"),
        }
    }

    const FIVE_MINUTES: Option<i64> = Some(5 * MINUTE_MS);

    #[test]
    fn seed_rules_parse_to_their_asts() {
        assert_eq!(
            parsed("error_rate > 5%"),
            rule(cmp(
                metric(Metric::ErrorRate, None, FIVE_MINUTES),
                CmpOp::Gt,
                num(0.05)
            ))
        );
        assert_eq!(
            parsed("error_rate[15m] > 0.05"),
            rule(cmp(
                metric(Metric::ErrorRate, None, Some(15 * MINUTE_MS)),
                CmpOp::Gt,
                num(0.05)
            ))
        );
        assert_eq!(
            parsed(r#"daily_cost > budget("daily") * 0.9"#),
            rule(cmp(
                metric(Metric::DailyCost, None, None),
                CmpOp::Gt,
                arith(
                    metric(Metric::Budget, Some("daily"), None),
                    ArithOp::Mul,
                    num(0.9)
                )
            ))
        );
        let p99_over_10s = rule(cmp(
            metric(Metric::P99Latency, None, FIVE_MINUTES),
            CmpOp::Gt,
            num(10_000.0),
        ));
        assert_eq!(parsed("p99_latency > 10000ms"), p99_over_10s);
        assert_eq!(parsed("p99_latency > 10s"), p99_over_10s);
        assert_eq!(parsed("p99_latency > 10000"), p99_over_10s);
        assert_eq!(
            parsed("avg_quality < 0.7 for 1h"),
            Rule {
                condition: cmp(
                    metric(Metric::AvgQuality, None, Some(HOUR_MS)),
                    CmpOp::Lt,
                    num(0.7)
                ),
                for_ms: Some(HOUR_MS),
            }
        );
        assert_eq!(
            parsed(r#"kl_divergence("question_category") > 0.15"#),
            rule(cmp(
                metric(Metric::KlDivergence, Some("question_category"), None),
                CmpOp::Gt,
                num(0.15)
            ))
        );
        for (text, drift_metric, arg) in [
            (
                r#"drift("monitor-name") > 0.2"#,
                Metric::Drift,
                "monitor-name",
            ),
            (r#"js_distance("dim") > 0.2"#, Metric::JsDistance, "dim"),
            (r#"psi("dim") > 0.2"#, Metric::Psi, "dim"),
        ] {
            assert_eq!(
                parsed(text),
                rule(cmp(
                    metric(drift_metric, Some(arg), None),
                    CmpOp::Gt,
                    num(0.2)
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn budget_rule_evaluates() {
        let text = r#"daily_cost > budget("daily") * 0.9"#;
        let over = evaluate(text, &[("daily_cost", 95.0), ("budget", 100.0)]);
        assert_eq!(over.holds, Some(true));
        assert_eq!(over.value, Some(95.0));
        assert_eq!(over.threshold, Some(90.0));
        let under = evaluate(text, &[("daily_cost", 85.0), ("budget", 100.0)]);
        assert_eq!(under.holds, Some(false));
        let no_budget = evaluate(text, &[("daily_cost", 85.0)]);
        assert_eq!(
            no_budget,
            Evaluation {
                holds: None,
                value: Some(85.0),
                threshold: None
            }
        );
    }

    #[test]
    fn malformed_rules_report_column_and_message() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "",
                1,
                "empty rule: write a condition such as error_rate > 5%",
            ),
            (
                "   ",
                1,
                "empty rule: write a condition such as error_rate > 5%",
            ),
            (
                "error_rate 5%",
                12,
                r#"expected a comparison operator (>, >=, <, <=, ==, !=), found "5%""#,
            ),
            (
                "eror_rate > 5%",
                1,
                r#"unknown metric "eror_rate"; did you mean error_rate?"#,
            ),
            (
                "anomoly(cost) > 1",
                1,
                r#"unknown metric "anomoly"; did you mean anomaly?"#,
            ),
            (
                "tokens > 1",
                1,
                "unknown metric \"tokens\"; known metrics: error_rate, request_rate, p50_latency, \
                 p95_latency, p99_latency, stage_p95, ttft_p95, cost, daily_cost, weekly_cost, \
                 monthly_cost, budget, budget_ratio, projected_cost, avg_quality, score_avg, \
                 satisfaction_rate, unpriced_requests, quality_escalations, kl_divergence, \
                 js_distance, psi, drift",
            ),
            (
                "budget > 5",
                1,
                r#"budget needs a name in quotes, as in budget("daily")"#,
            ),
            (
                "stage_p95[5m] > 5s",
                1,
                r#"stage_p95 needs a name in quotes, as in stage_p95("tool_execution")"#,
            ),
            (r#"error_rate("x") > 1"#, 11, "error_rate takes no argument"),
            (
                "budget(daily) > 1",
                8,
                r#"expected a quoted name in budget(...), as in budget("daily"), found "daily""#,
            ),
            (
                r#"budget("") > 1"#,
                8,
                "the name in budget(...) must not be empty",
            ),
            ("daily_cost[1h] > 5", 11, "daily_cost takes no window"),
            (
                "error_rate[0m] > 1",
                12,
                r#"the window must be a positive duration, found "0m""#,
            ),
            (
                "error_rate[5] > 1",
                12,
                r#"expected a duration such as 5m or 1h in the window, found "5""#,
            ),
            (
                "error_rate[0.5ms] > 1",
                12,
                r#"the window must be a whole number of milliseconds, found "0.5ms""#,
            ),
            ("error_rate[5m > 1", 15, r#"expected "]", found ">""#),
            (
                r#"drift("abc) > 1"#,
                7,
                r#"unterminated string: missing closing ""#,
            ),
            (
                "error_rate > 1 )",
                16,
                r#"expected "and", "or", "for" or the end of the rule, found ")""#,
            ),
            (
                "error_rate > 1 p99_latency > 2",
                16,
                r#"expected "and", "or", "for" or the end of the rule, found "p99_latency""#,
            ),
            (
                "error_rate >",
                13,
                "expected a value (a number or a metric), found end of input",
            ),
            (
                "error_rate > and p99_latency > 1",
                14,
                r#"expected a value (a number or a metric), found "and""#,
            ),
            (
                "error_rate > 1 for",
                19,
                r#"expected a duration such as 5m or 1h after "for", found end of input"#,
            ),
            (
                "error_rate > 1 for 5",
                20,
                r#"expected a duration such as 5m or 1h after "for", found "5""#,
            ),
            (
                "error_rate > 1 for 5m and p99_latency > 1",
                23,
                r#"expected the end of the rule, found "and""#,
            ),
            (
                "p99_latency > 5%",
                15,
                "p99_latency is a duration: write the threshold in ms, s, m or h",
            ),
            (
                "5% < p99_latency",
                1,
                "p99_latency is a duration: write the threshold in ms, s, m or h",
            ),
            (
                "error_rate > 10ms",
                14,
                "error_rate is a fraction: write the threshold as a number (0.05) or a percentage (5%)",
            ),
            (
                "error_rate > $5",
                14,
                "error_rate is a fraction: write the threshold as a number (0.05) or a percentage (5%)",
            ),
            (
                "daily_cost > 50%",
                14,
                "daily_cost is in USD: write the threshold as a number or in dollars ($50)",
            ),
            (
                "request_rate > -5%",
                17,
                "request_rate is a rate per second: write the threshold as a plain number",
            ),
            (
                "avg_quality < (70%)",
                16,
                "avg_quality is a score: write the threshold as a plain number",
            ),
            (
                "unpriced_requests > 1s",
                21,
                "unpriced_requests is a count: write the threshold as a plain number",
            ),
            (
                "-p99_latency > 5%",
                16,
                "p99_latency is a duration: write the threshold in ms, s, m or h",
            ),
            (
                "p99_latency - p50_latency > 5%",
                29,
                "p99_latency is a duration: write the threshold in ms, s, m or h",
            ),
            (
                "anomaly(cost) > 5%",
                17,
                "anomaly(...) is a z-score: write the threshold as a plain number",
            ),
            ("anomaly(anomaly(cost))", 9, "anomaly() cannot be nested"),
            (
                "anomaly(daily_cost)",
                9,
                "anomaly() needs a windowed metric; daily_cost has no window",
            ),
            (
                "anomaly(5)",
                9,
                r#"expected a metric inside anomaly(), found "5""#,
            ),
            (
                "anomaly(cost",
                13,
                r#"expected ")" to close anomaly(, found end of input"#,
            ),
            ("anomaly > 1", 9, r#"expected "(" after anomaly, found ">""#),
            (
                "anomaly(cost) * 2",
                18,
                "expected a comparison operator (>, >=, <, <=, ==, !=), found end of input",
            ),
            (
                "(error_rate > 1) > 2",
                18,
                r#"unexpected ">" after a condition: a condition cannot be compared or used in arithmetic"#,
            ),
            (
                "1 + (error_rate > 1) > 2",
                5,
                "expected a value, found a condition",
            ),
            (
                "(error_rate 5%)",
                13,
                r#"expected an operator or ")", found "5%""#,
            ),
            (
                "(error_rate > 1 for 5m)",
                17,
                r#"expected "and", "or" or ")", found "for""#,
            ),
            (
                "error_rate and p99_latency > 1",
                12,
                r#"expected a comparison operator (>, >=, <, <=, ==, !=), found "and""#,
            ),
            (
                "error_rate = 5",
                12,
                r#"unexpected "="; did you mean "=="?"#,
            ),
            (
                "error_rate ! 5",
                12,
                r#"unexpected "!"; did you mean "!="?"#,
            ),
            (
                "error_rate > 1 && p99_latency > 2",
                16,
                r#"unexpected "&&"; write "and""#,
            ),
            (
                "error_rate > 5x",
                14,
                r#"unknown unit "x" (use %, ms, s, m, h or d right after the number)"#,
            ),
            (
                "error_rate > 5 %",
                16,
                r#"unexpected "%": write units right after the number, as in 5%"#,
            ),
            ("$5ms > 1", 1, "a dollar amount takes no unit"),
            (
                "daily_cost > $",
                14,
                r#"expected an amount after "$", as in $50"#,
            ),
            (
                "error_rate > 1.",
                14,
                "expected digits after the decimal point",
            ),
            (
                "error_rate > .5",
                14,
                "a number must start with a digit: write 0.5, not .5",
            ),
            (
                "drift('x') > 1",
                7,
                r#"unexpected "'": names are written in double quotes"#,
            ),
            (
                r#"drift("a\n") > 1"#,
                9,
                r#"unknown escape in string: only \" and \\ are allowed"#,
            ),
            // Columns count characters, not bytes.
            (
                r#"drift("품질") > 0.1 and 품질 > 1"#,
                23,
                "unexpected character '품'",
            ),
        ];
        for (text, column, message) in cases {
            let expected = ParseError {
                column: *column,
                message: (*message).to_owned(),
            };
            assert_eq!(parse(text), Err(expected), "{text:?}");
        }
        assert!(cases.len() >= 15);
    }

    #[test]
    fn error_displays_with_column() {
        let error = parse("error_rate 5%").err();
        assert_eq!(
            error.map(|error| error.to_string()),
            Some(
                r#"column 12: expected a comparison operator (>, >=, <, <=, ==, !=), found "5%""#
                    .to_owned()
            )
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let a = || cmp(plain(Metric::ErrorRate), CmpOp::Gt, num(1.0));
        let b = || cmp(plain(Metric::RequestRate), CmpOp::Gt, num(2.0));
        let c = || cmp(plain(Metric::AvgQuality), CmpOp::Gt, num(3.0));
        assert_eq!(
            parsed("error_rate > 1 and request_rate > 2 or avg_quality > 3"),
            rule(or(and(a(), b()), c()))
        );
        assert_eq!(
            parsed("error_rate > 1 or request_rate > 2 and avg_quality > 3"),
            rule(or(a(), and(b(), c())))
        );
        assert_eq!(
            parsed("(error_rate > 1 or request_rate > 2) and avg_quality > 3"),
            rule(and(or(a(), b()), c()))
        );
        assert_eq!(
            parsed("error_rate > 1 and request_rate > 2 and avg_quality > 3"),
            rule(and(and(a(), b()), c()))
        );
        assert_eq!(
            parsed("error_rate > 1 and (request_rate > 2 and avg_quality > 3)"),
            rule(and(a(), and(b(), c())))
        );
        assert_eq!(parsed("((error_rate > 1))"), rule(a()));
    }

    #[test]
    fn arithmetic_precedence_and_grouping() {
        use ArithOp::{Add, Div, Mul, Sub};
        assert_eq!(
            right_side("daily_cost > 1 + 2 * 3"),
            arith(num(1.0), Add, arith(num(2.0), Mul, num(3.0)))
        );
        assert_eq!(
            right_side("daily_cost > (1 + 2) * 3"),
            arith(arith(num(1.0), Add, num(2.0)), Mul, num(3.0))
        );
        assert_eq!(
            right_side("daily_cost > 1 - 2 - 3"),
            arith(arith(num(1.0), Sub, num(2.0)), Sub, num(3.0))
        );
        assert_eq!(
            right_side("daily_cost > 1 - (2 - 3)"),
            arith(num(1.0), Sub, arith(num(2.0), Sub, num(3.0)))
        );
        assert_eq!(
            right_side("daily_cost > 8 / 4 / 2"),
            arith(arith(num(8.0), Div, num(4.0)), Div, num(2.0))
        );
        assert_eq!(
            right_side("daily_cost > 1 * 2 + 3 / 4"),
            arith(
                arith(num(1.0), Mul, num(2.0)),
                Add,
                arith(num(3.0), Div, num(4.0))
            )
        );
        // Unary minus binds tighter than `*`, and stacks.
        assert_eq!(
            right_side("daily_cost > -2 * 3"),
            arith(neg(num(2.0)), Mul, num(3.0))
        );
        assert_eq!(
            right_side("daily_cost > -(2 * 3)"),
            neg(arith(num(2.0), Mul, num(3.0)))
        );
        assert_eq!(right_side("daily_cost > - -1"), neg(neg(num(1.0))));
        assert_eq!(
            right_side("daily_cost > 2 * -budget(\"b\")"),
            arith(num(2.0), Mul, neg(metric(Metric::Budget, Some("b"), None)))
        );
        let difference = parsed("p99_latency - p50_latency > 1s");
        assert_eq!(
            difference.condition,
            cmp(
                arith(plain(Metric::P99Latency), Sub, plain(Metric::P50Latency)),
                CmpOp::Gt,
                num(1000.0)
            )
        );
    }

    #[test]
    fn units_normalise_numbers() {
        assert_eq!(right_side("daily_cost > $50"), num(50.0));
        assert_eq!(right_side("daily_cost > $12.5"), num(12.5));
        assert_eq!(right_side("error_rate > 7%"), num(0.07));
        assert_eq!(right_side("error_rate > 0.5%"), num(0.005));
        assert_eq!(right_side("p99_latency > 1.5m"), num(90_000.0));
        assert_eq!(right_side("p99_latency > 2h"), num(7_200_000.0));
        assert_eq!(right_side("p99_latency > 0.1h"), num(360_000.0));
        assert_eq!(right_side("p99_latency > 1d"), num(86_400_000.0));
        assert_eq!(right_side("p99_latency > 250ms"), num(250.0));
        assert_eq!(
            right_side("error_rate > 2 * 1%"),
            arith(num(2.0), ArithOp::Mul, num(0.01))
        );
        assert_eq!(
            evaluate("error_rate > 2 * 1%", &[("error_rate", 0.03)]).holds,
            Some(true)
        );
        assert_eq!(
            evaluate("error_rate > 2 * 1%", &[("error_rate", 0.01)]).holds,
            Some(false)
        );
        // Windows normalise too, and print in their largest exact unit.
        let windows = parsed(
            "error_rate[90s] > 1% and request_rate[1.5h] > 1 and cost[1d] > 1 and error_rate[1500ms] > 1%",
        );
        let windows: Vec<Option<i64>> = windows
            .metrics()
            .into_iter()
            .map(|(metric, _)| metric.window_ms)
            .collect();
        assert_eq!(
            windows,
            vec![Some(1500), Some(90_000), Some(5_400_000), Some(DAY_MS)]
        );
        assert_eq!(
            parsed("error_rate[90s] > 1% and request_rate[1.5h] > 1 and error_rate[1500ms] > 1%")
                .to_string(),
            "error_rate[90s] > 0.01 and request_rate[90m] > 1 and error_rate[1500ms] > 0.01"
        );
    }

    #[test]
    fn default_windows() {
        let cases = [
            ("error_rate > 1", Some(5 * MINUTE_MS)),
            ("p95_latency > 1", Some(5 * MINUTE_MS)),
            (r#"stage_p95("tool_execution") > 1"#, Some(5 * MINUTE_MS)),
            ("ttft_p95 > 1", Some(5 * MINUTE_MS)),
            ("cost > 1", Some(HOUR_MS)),
            (r#"score_avg("relevance") > 1"#, Some(HOUR_MS)),
            ("quality_escalations > 1", Some(HOUR_MS)),
            ("satisfaction_rate < 80%", Some(DAY_MS)),
            ("weekly_cost > 1", None),
            (r#"projected_cost("monthly") > 1"#, None),
        ];
        for (text, window) in cases {
            let metrics = parsed(text).metrics();
            assert_eq!(metrics.len(), 1, "{text}");
            assert_eq!(metrics[0].0.window_ms, window, "{text}");
        }
    }

    #[test]
    fn three_valued_logic() {
        let both = "error_rate > 1% and p99_latency > 1s";
        let either = "error_rate > 1% or p99_latency > 1s";
        let high_errors = [("error_rate", 0.5)];
        let low_errors = [("error_rate", 0.0)];
        // false and None = false; true and None = None.
        assert_eq!(evaluate(both, &low_errors).holds, Some(false));
        assert_eq!(evaluate(both, &high_errors).holds, None);
        // true or None = true; false or None = None.
        assert_eq!(evaluate(either, &high_errors).holds, Some(true));
        assert_eq!(evaluate(either, &low_errors).holds, None);
        // The missing side may be either one.
        assert_eq!(
            evaluate("p99_latency > 1s and error_rate > 1%", &low_errors).holds,
            Some(false)
        );
        assert_eq!(
            evaluate("p99_latency > 1s or error_rate > 1%", &high_errors).holds,
            Some(true)
        );
        assert_eq!(evaluate(both, &[]).holds, None);
        let all = [("error_rate", 0.5), ("p99_latency", 500.0)];
        assert_eq!(evaluate(both, &all).holds, Some(false));
        assert_eq!(evaluate(either, &all).holds, Some(true));
        // The reported value and threshold are those of the first comparison.
        let first = evaluate(either, &all);
        assert_eq!((first.value, first.threshold), (Some(0.5), Some(0.01)));
        let first = evaluate("p99_latency > 1s or error_rate > 1%", &high_errors);
        assert_eq!((first.value, first.threshold), (None, Some(1000.0)));
    }

    #[test]
    fn arithmetic_without_a_value_is_no_data() {
        let division = "error_rate > 1 / (request_rate - request_rate)";
        assert_eq!(
            evaluate(division, &[("error_rate", 1.0), ("request_rate", 3.0)]),
            Evaluation {
                holds: None,
                value: Some(1.0),
                threshold: None
            }
        );
        // NaN from a lookup is no data too.
        assert_eq!(
            evaluate("error_rate > 1%", &[("error_rate", f64::NAN)]).holds,
            None
        );
        assert_eq!(
            evaluate("-error_rate < -1% ", &[("error_rate", 0.5)]).holds,
            Some(true)
        );
    }

    #[test]
    fn comparison_operators() {
        let cases = [
            ("error_rate > 0.5", [false, false, true]),
            ("error_rate >= 0.5", [false, true, true]),
            ("error_rate < 0.5", [true, false, false]),
            ("error_rate <= 0.5", [true, true, false]),
            ("error_rate == 0.5", [false, true, false]),
            ("error_rate != 0.5", [true, false, true]),
        ];
        for (text, expected) in cases {
            for (value, holds) in [0.25, 0.5, 0.75].into_iter().zip(expected) {
                assert_eq!(
                    evaluate(text, &[("error_rate", value)]).holds,
                    Some(holds),
                    "{text} at {value}"
                );
            }
        }
    }

    #[test]
    fn anomaly_rules() {
        let cost_hour = metric_ref(Metric::Cost, None, Some(HOUR_MS));
        let bare = parsed("anomaly(cost[1h])");
        assert_eq!(
            bare,
            rule(cmp(
                Value::Anomaly(cost_hour.clone()),
                CmpOp::Gt,
                num(DEFAULT_ANOMALY_Z)
            ))
        );
        assert_eq!(bare, parsed("anomaly(cost) > 4"));
        assert_eq!(bare.to_string(), "anomaly(cost[1h]) > 4");
        assert_eq!(bare.metrics(), vec![(cost_hour, true)]);
        assert_eq!(
            evaluate("anomaly(cost[1h])", &[("anomaly:cost", 4.5), ("cost", 1.0)]).holds,
            Some(true)
        );
        assert_eq!(
            evaluate("anomaly(cost[1h])", &[("anomaly:cost", 3.5)]).holds,
            Some(false)
        );
        assert_eq!(
            parsed("anomaly(p95_latency[5m]) and error_rate > 1%").to_string(),
            "anomaly(p95_latency[5m]) > 4 and error_rate[5m] > 0.01"
        );
        assert_eq!(
            parsed("(anomaly(p95_latency))").to_string(),
            "anomaly(p95_latency[5m]) > 4"
        );
        assert_eq!(
            parsed("anomaly(cost) * 2 >= 6").to_string(),
            "anomaly(cost[1h]) * 2 >= 6"
        );
    }

    #[test]
    fn for_clause() {
        let held = parsed("error_rate > 5% for 90s");
        assert_eq!(held.for_ms, Some(90_000));
        assert_eq!(held.to_string(), "error_rate[5m] > 0.05 for 90s");
        assert_eq!(
            parsed("error_rate > 5% or p99_latency > 1s for 2h").for_ms,
            Some(2 * HOUR_MS)
        );
        assert_eq!(parsed("error_rate > 5%").for_ms, None);
        assert_eq!(
            parse("error_rate > 5% for 0s"),
            Err(ParseError {
                column: 21,
                message: r#"the for duration must be a positive duration, found "0s""#.to_owned(),
            })
        );
    }

    #[test]
    fn metrics_are_deduplicated_and_sorted() {
        let rule = parsed(
            r#"daily_cost > budget("daily") * 0.9 or error_rate > 1% and anomaly(error_rate) > 3 or error_rate[5m] > 2% or budget("daily") < 1"#,
        );
        assert_eq!(
            rule.metrics(),
            vec![
                (metric_ref(Metric::ErrorRate, None, FIVE_MINUTES), false),
                (metric_ref(Metric::ErrorRate, None, FIVE_MINUTES), true),
                (metric_ref(Metric::DailyCost, None, None), false),
                (metric_ref(Metric::Budget, Some("daily"), None), false),
            ]
        );
    }

    #[test]
    fn string_arguments_escape_and_round_trip() {
        let rule = parsed(r#"drift("a\"b\\c") > 0.2"#);
        assert_eq!(rule.metrics()[0].0.arg.as_deref(), Some(r#"a"b\c"#));
        assert_eq!(rule.to_string(), r#"drift("a\"b\\c") > 0.2"#);
        assert_round_trip(r#"drift("a\"b\\c") > 0.2"#);
        assert_round_trip(r#"psi("질문 유형") > 0.2"#);
    }

    #[test]
    fn canonical_display() {
        let cases = [
            ("error_rate > 5%", "error_rate[5m] > 0.05"),
            ("p99_latency > 10s", "p99_latency[5m] > 10000ms"),
            ("p99_latency > 10000", "p99_latency[5m] > 10000ms"),
            ("avg_quality < 0.7 for 1h", "avg_quality[1h] < 0.7 for 1h"),
            ("anomaly(cost[1h])", "anomaly(cost[1h]) > 4"),
            (
                r#"daily_cost > budget("daily") * 0.9"#,
                r#"daily_cost > budget("daily") * 0.9"#,
            ),
            ("daily_cost>$50", "daily_cost > 50"),
            ("5s < p95_latency", "5000ms < p95_latency[5m]"),
            ("p95_latency > -5s", "p95_latency[5m] > -5000ms"),
            (
                "p99_latency - p50_latency > 1s",
                "p99_latency[5m] - p50_latency[5m] > 1000ms",
            ),
            ("p99_latency > 2 * 1s", "p99_latency[5m] > 2 * 1000"),
            // Mixed measures are not checked, and print without units.
            (
                "p99_latency + error_rate > 5%",
                "p99_latency[5m] + error_rate[5m] > 0.05",
            ),
            ("-p99_latency < -1s", "-p99_latency[5m] < -1000ms"),
            (
                "error_rate > (1 - 2) - (3 - 4)",
                "error_rate[5m] > 1 - 2 - (3 - 4)",
            ),
            ("error_rate > -(-(1))", "error_rate[5m] > --1"),
            ("error_rate > -(1 * 2) / 3", "error_rate[5m] > -(1 * 2) / 3"),
            (
                "(error_rate > 1 or error_rate > 2) and (error_rate > 3 and error_rate > 4)",
                "(error_rate[5m] > 1 or error_rate[5m] > 2) and (error_rate[5m] > 3 and error_rate[5m] > 4)",
            ),
            (
                "error_rate > 1 or (error_rate > 2 or error_rate > 3)",
                "error_rate[5m] > 1 or (error_rate[5m] > 2 or error_rate[5m] > 3)",
            ),
            (
                "(error_rate > 1 and error_rate > 2) or error_rate > 3",
                "error_rate[5m] > 1 and error_rate[5m] > 2 or error_rate[5m] > 3",
            ),
        ];
        for (text, shown) in cases {
            assert_eq!(parsed(text).to_string(), shown, "{text}");
            assert_round_trip(text);
        }
    }

    /// Every valid rule the tests use.
    const VALID: &[&str] = &[
        "error_rate > 5%",
        "error_rate[15m] > 0.05",
        r#"daily_cost > budget("daily") * 0.9"#,
        "p99_latency > 10000ms",
        "p99_latency > 10s",
        "avg_quality < 0.7 for 1h",
        r#"kl_divergence("question_category") > 0.15"#,
        r#"drift("monitor-name") > 0.3"#,
        r#"js_distance("dim") >= 0.1"#,
        r#"psi("dim") > 0.25"#,
        "anomaly(cost[1h])",
        "anomaly(p95_latency[5m])",
        "request_rate[30s] < 0.1",
        r#"stage_p95("tool_execution") > 2s"#,
        "ttft_p95 > 800ms",
        "cost[1d] > $200",
        "weekly_cost > $1000 or monthly_cost > $4000",
        r#"budget_ratio("monthly") >= 90%"#,
        r#"projected_cost("monthly") > budget("monthly")"#,
        r#"score_avg("relevance")[1h] < 0.6"#,
        "satisfaction_rate < 70% for 1d",
        "unpriced_requests[1h] > 0",
        "quality_escalations > 3",
        "error_rate > 2 * 1%",
        "error_rate > 1 / (request_rate - request_rate)",
        "-error_rate < -1% ",
        "error_rate > 1% and p99_latency > 1s or avg_quality < 0.5",
        "error_rate > 1% and (p99_latency > 1s or avg_quality < 0.5) for 10m",
        "anomaly(cost) * 2 >= 6 and anomaly(error_rate[1m]) != 0",
        "p99_latency - p50_latency > 1s",
        "daily_cost == 0 or daily_cost != 0",
        "p50_latency <= 0.5s",
        "error_rate > 0.1 - -0.05",
    ];

    #[test]
    fn display_round_trips() {
        for text in VALID {
            assert_round_trip(text);
        }
    }

    #[test]
    fn metric_tables_agree() {
        for metric in Metric::ALL {
            assert_eq!(Metric::parse(metric.name()), Some(metric));
            // The serialised name is the one written in rules.
            assert_eq!(
                serde_json::to_value(metric).ok(),
                Some(serde_json::Value::String(metric.name().to_owned()))
            );
            assert_eq!(metric.windowed(), metric.default_window_ms().is_some());
        }
        assert_eq!(Metric::parse("anomaly"), None);
        let windowed: Vec<&str> = Metric::ALL
            .into_iter()
            .filter(|metric| metric.windowed())
            .map(Metric::name)
            .collect();
        assert_eq!(
            windowed,
            [
                "error_rate",
                "request_rate",
                "p50_latency",
                "p95_latency",
                "p99_latency",
                "stage_p95",
                "ttft_p95",
                "cost",
                "avg_quality",
                "score_avg",
                "satisfaction_rate",
                "unpriced_requests",
                "quality_escalations",
            ]
        );
        let with_arg: Vec<&str> = Metric::ALL
            .into_iter()
            .filter(|metric| metric.takes_arg())
            .map(Metric::name)
            .collect();
        assert_eq!(
            with_arg,
            [
                "stage_p95",
                "budget",
                "budget_ratio",
                "projected_cost",
                "score_avg",
                "kl_divergence",
                "js_distance",
                "psi",
                "drift",
            ]
        );
    }

    #[test]
    fn limits_bound_nesting_and_size() {
        let deep = format!("{}error_rate > 1{}", "(".repeat(40), ")".repeat(40));
        assert_eq!(
            parse(&deep).map_err(|error| error.message),
            Err("rule nested too deeply (more than 32 levels)".to_owned())
        );
        let negations = format!("error_rate > {}1", "-".repeat(100));
        assert!(parse(&negations).is_err());
        let long = format!("error_rate > 0{}", " + 1".repeat(1000));
        assert_eq!(
            parse(&long).map_err(|error| error.message),
            Err("rule too complex: more than 256 operators".to_owned())
        );
        let nested_ok = format!("{}error_rate > 1{}", "(".repeat(30), ")".repeat(30));
        assert_round_trip(&nested_ok);
        assert_eq!(
            right_side("error_rate > 1000000000000000000000000000000"),
            num(1e30)
        );
        assert!(parse(&format!("error_rate > 1{}", "0".repeat(400))).is_err());
        assert!(parse("error_rate[9999999999999999999d] > 1").is_err());
    }

    // ---- property tests -------------------------------------------------------------

    fn duration_text() -> impl Strategy<Value = String> {
        prop_oneof![
            (
                1_u32..500,
                prop::sample::select(vec!["ms", "s", "m", "h", "d"])
            )
                .prop_map(|(count, unit)| format!("{count}{unit}")),
            (0_u32..100, 1_u32..10).prop_map(|(whole, tenth)| format!("{whole}.{tenth}s")),
        ]
    }

    fn metric_text() -> impl Strategy<Value = String> {
        (
            prop::sample::select(Metric::ALL.to_vec()),
            "[a-z_ \"\\\\-]{1,8}",
            prop::option::of(duration_text()),
        )
            .prop_map(|(metric, arg, window)| {
                let mut text = metric.name().to_owned();
                if metric.takes_arg() {
                    let escaped = arg.replace('\\', "\\\\").replace('"', "\\\"");
                    text.push_str(&format!("(\"{escaped}\")"));
                }
                if let Some(window) = window.filter(|_| metric.windowed()) {
                    text.push_str(&format!("[{window}]"));
                }
                text
            })
    }

    fn anomaly_text() -> impl Strategy<Value = String> {
        metric_text()
            .prop_filter("windowed", |text| {
                let name: String = text
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                Metric::parse(&name).is_some_and(Metric::windowed)
            })
            .prop_map(|metric| format!("anomaly({metric})"))
    }

    fn plain_number() -> impl Strategy<Value = String> {
        prop_oneof![
            (0_u32..100_000).prop_map(|n| n.to_string()),
            (0_u32..1000, 0_u32..1000).prop_map(|(whole, part)| format!("{whole}.{part}")),
            (0.0..1e12_f64).prop_map(|n| n.to_string()),
        ]
    }

    /// A number with any unit: only used where no metric is compared with it directly.
    fn any_unit_number() -> impl Strategy<Value = String> {
        (
            plain_number(),
            prop::sample::select(vec!["", "%", "ms", "s", "m", "h", "d", "$"]),
        )
            .prop_map(|(number, unit)| match unit {
                "$" => format!("${number}"),
                unit => format!("{number}{unit}"),
            })
    }

    fn value_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![plain_number(), metric_text(), anomaly_text()];
        leaf.prop_recursive(3, 8, 2, |inner| {
            let operand = prop_oneof![inner.clone(), any_unit_number()];
            prop_oneof![
                (
                    operand.clone(),
                    prop::sample::select(vec!["+", "-", "*", "/"]),
                    operand
                )
                    .prop_map(|(left, op, right)| format!("{left} {op} {right}")),
                inner.clone().prop_map(|value| format!("({value})")),
                inner.prop_map(|value| format!("-{value}")),
            ]
        })
    }

    fn cmp_text() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![">", ">=", "<", "<=", "==", "!="])
    }

    /// A metric compared directly with a literal in a unit that fits it.
    fn metric_vs_literal() -> impl Strategy<Value = String> {
        (
            metric_text(),
            cmp_text(),
            plain_number(),
            any::<bool>(),
            0_usize..6,
        )
            .prop_map(|(metric, op, number, swap, unit_pick)| {
                let name: String = metric
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let kind = Metric::parse(&name).map(Metric::kind);
                let literal = match kind {
                    Some(Kind::Fraction) if unit_pick % 2 == 0 => format!("{number}%"),
                    Some(Kind::Usd) if unit_pick % 2 == 0 => format!("${number}"),
                    Some(Kind::DurationMs) => {
                        let unit = ["", "ms", "s", "m", "h", "d"][unit_pick];
                        format!("{number}{unit}")
                    }
                    _ => number,
                };
                if swap {
                    format!("{literal} {op} {metric}")
                } else {
                    format!("{metric} {op} {literal}")
                }
            })
    }

    fn condition_text() -> impl Strategy<Value = String> {
        let comparison = prop_oneof![
            (value_text(), cmp_text(), value_text())
                .prop_map(|(left, op, right)| format!("{left} {op} {right}")),
            metric_vs_literal(),
            anomaly_text(),
        ];
        comparison.prop_recursive(3, 8, 2, |inner| {
            prop_oneof![
                (
                    inner.clone(),
                    prop::sample::select(vec!["and", "or"]),
                    inner.clone()
                )
                    .prop_map(|(left, op, right)| format!("{left} {op} {right}")),
                inner.prop_map(|condition| format!("({condition})")),
            ]
        })
    }

    fn rule_text() -> impl Strategy<Value = String> {
        (condition_text(), prop::option::of(duration_text())).prop_map(|(condition, held)| {
            match held {
                Some(held) => format!("{condition} for {held}"),
                None => condition,
            }
        })
    }

    /// Fragments of the language, so random soups get past the lexer.
    fn token_soup() -> impl Strategy<Value = String> {
        let token = prop::sample::select(vec![
            "error_rate",
            "p99_latency",
            "budget",
            "anomaly",
            "cost",
            "daily_cost",
            "and",
            "or",
            "for",
            "(",
            ")",
            "[",
            "]",
            "\"x\"",
            "\"",
            ">",
            ">=",
            "<",
            "==",
            "!=",
            "+",
            "-",
            "*",
            "/",
            "5",
            "5%",
            "5m",
            "$5",
            "0",
            "1.5",
            "0s",
            "-",
            "foo",
            ",",
        ]);
        (prop::collection::vec(token, 0..16), any::<bool>())
            .prop_map(|(tokens, spaced)| tokens.join(if spaced { " " } else { "" }))
    }

    fn check_round_trip(rule: &Rule) -> Result<(), TestCaseError> {
        let shown = rule.to_string();
        let again = parse(&shown);
        prop_assert_eq!(again.as_ref(), Ok(rule), "display {:?}", shown);
        Ok(())
    }

    proptest! {
        #[test]
        fn generated_rules_parse_and_round_trip(text in rule_text()) {
            let rule = parse(&text);
            prop_assert!(rule.is_ok(), "{:?} fails: {:?}", text, rule);
            if let Ok(rule) = rule {
                check_round_trip(&rule)?;
                // Evaluation with every metric present never panics.
                let _ = rule.evaluate(&|_, _| Some(1.0));
            }
        }

        #[test]
        fn random_strings_never_panic(text in "\\PC{0,60}") {
            if let Ok(rule) = parse(&text) {
                check_round_trip(&rule)?;
            }
        }

        #[test]
        fn token_soups_never_panic(text in token_soup()) {
            match parse(&text) {
                Ok(rule) => check_round_trip(&rule)?,
                Err(error) => prop_assert!(error.column >= 1 && error.column <= text.chars().count() + 1),
            }
        }
    }
}
