//! The command line (clap). Each command is a thin shell over the library; reports are computed
//! by the same code whether read from a local database (`--db`) or a server (`--server`).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

use crate::api::system_clock;
use crate::app::{App, shutdown_signal};
use crate::config::{Config, DEFAULT_DB};
use crate::core::record::Usage;
use crate::core::record::parse_timestamp_str;
use crate::core::rollup::Scope;
use crate::core::time::{HOUR_MS, Range, local_date};
use crate::report;
use crate::store::DEFAULT_PROJECT;
use crate::store::sqlite::SqliteStore;

#[derive(Debug, Parser)]
#[command(
    name = "llmwatch",
    version,
    about = "Monitoring for LLM applications in production"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Generate two weeks of realistic traffic into a fresh database, serve it, keep a live trickle.
    Demo(DemoArgs),
    /// Bulk-import an NDJSON file of events into a server.
    Ingest(IngestArgs),
    /// Cost reports.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Budget states.
    Budgets(SourceArgs),
    /// Latency percentiles and the stage breakdown, with the bottleneck marked.
    Latency(LatencyArgs),
    /// Drift of a dimension against a baseline (or, without --dimension, every `[[drift]]`
    /// monitor of the config), with a text histogram of what moved.
    Drift(DriftArgs),
    /// The price table.
    #[command(subcommand)]
    Pricing(PricingCommand),
    /// Export data for other tools.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Alert rules and channels.
    #[command(subcommand)]
    Alerts(AlertsCommand),
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Validate a config and print each alert rule as understood (with the built-in ones).
    Check {
        #[arg(long, env = "LLMWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Send a test notification to one configured channel.
    Test {
        /// A `[channels.NAME]` of the config.
        channel: String,
        #[arg(long, env = "LLMWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// The golden regression dataset: one JSON line per corrected input (the newest
    /// correction wins), to stdout.
    Golden(GoldenArgs),
}

#[derive(Debug, Args)]
pub struct GoldenArgs {
    /// Only corrections given since: YYYY-MM-DD (UTC), RFC 3339 or unix ms.
    #[arg(long)]
    pub since: Option<String>,
    /// Only corrections of requests of this feature.
    #[arg(long)]
    pub feature: Option<String>,
    /// SQLite database file to read [default: config `db`, else ./llmwatch.db].
    #[arg(long, conflicts_with = "server")]
    pub db: Option<PathBuf>,
    /// TOML config file.
    #[arg(long, env = "LLMWATCH_CONFIG", conflicts_with = "server")]
    pub config: Option<PathBuf>,
    /// Ask a running server instead, e.g. http://127.0.0.1:4318.
    #[arg(long)]
    pub server: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: config `listen`, else 127.0.0.1:4318].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// SQLite database file [default: config `db`, else ./llmwatch.db].
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// TOML config file.
    #[arg(long, env = "LLMWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Turn the recording proxy on (`/proxy/openai/v1/...`, `/proxy/anthropic/v1/...`) with the
    /// defaults when the config has no `[proxy]` table.
    #[arg(long)]
    pub proxy: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4318")]
    pub listen: SocketAddr,
    /// Database file to create (must not exist) [default: a fresh file in the temp directory].
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Days of history to generate.
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    /// Average requests per day.
    #[arg(long, default_value_t = 6000)]
    pub per_day: u64,
    /// Random seed (the same seed gives the same history).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Generate the history, print the daily report and exit instead of serving.
    #[arg(long)]
    pub no_serve: bool,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// NDJSON file, one event per line (`-` for standard input).
    pub file: PathBuf,
    /// Server URL, e.g. http://127.0.0.1:4318.
    #[arg(long)]
    pub server: String,
    /// Events per request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
}

/// Where a read command gets its data: a local database and config, or a running server.
#[derive(Debug, Args, Clone)]
pub struct SourceArgs {
    /// SQLite database file to read [default: config `db`, else ./llmwatch.db].
    #[arg(long, conflicts_with = "server")]
    pub db: Option<PathBuf>,
    /// TOML config file (time zone, prices, budgets).
    #[arg(long, env = "LLMWATCH_CONFIG", conflicts_with = "server")]
    pub config: Option<PathBuf>,
    /// Ask a running server instead, e.g. http://127.0.0.1:4318.
    #[arg(long)]
    pub server: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// Start (RFC 3339 or unix ms) [default: one hour before --to].
    #[arg(long)]
    pub from: Option<String>,
    /// End, exclusive (RFC 3339 or unix ms) [default: now].
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub feature: Option<String>,
    #[arg(long)]
    pub release: Option<String>,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Dimension: model, feature, release, status, error_type, attributes.KEY, or a numeric
    /// one (input_tokens, output_tokens, duration_ms, ttft_ms, cost, input_chars, output_chars).
    #[arg(long)]
    pub dimension: Option<String>,
    /// A baseline created through the API [default: the 7 days before the window].
    #[arg(long)]
    pub baseline: Option<String>,
    /// Window start (RFC 3339 or unix ms) [default: one day before --to].
    #[arg(long)]
    pub from: Option<String>,
    /// Window end, exclusive [default: now].
    #[arg(long)]
    pub to: Option<String>,
    /// auto, kl, js, psi, chi_square, ks, wasserstein.
    #[arg(long, default_value = "auto")]
    pub method: String,
    #[arg(long)]
    pub threshold: Option<f64>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub feature: Option<String>,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// The daily report: totals by model, feature and user for one calendar day.
    Daily {
        /// Day (YYYY-MM-DD) in the configured time zone [default: today].
        #[arg(long)]
        date: Option<NaiveDate>,
        #[command(flatten)]
        source: SourceArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PricingCommand {
    /// List the price table (built-in plus config overrides), USD per 1M tokens.
    List {
        #[arg(long, env = "LLMWATCH_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Price one request.
    Cost {
        /// Model name as your application sends it (prefixes and dated snapshots are matched).
        model: String,
        #[arg(long)]
        input: u64,
        #[arg(long)]
        output: u64,
        /// Cached input tokens (included in --input).
        #[arg(long, default_value_t = 0)]
        cached: u64,
        /// Cache-write tokens (included in --input).
        #[arg(long, default_value_t = 0)]
        cache_write: u64,
        /// Price as of this date (YYYY-MM-DD) [default: today].
        #[arg(long)]
        at: Option<NaiveDate>,
        #[arg(long, env = "LLMWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Runs the command line; errors are printed with their context and exit with status 1.
pub fn main(cli: Cli) -> ExitCode {
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // `llmwatch ... | head`: the reader left; nothing more to say.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LLMWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Ingest(args) => ingest(args).await,
        Command::Report(ReportCommand::Daily { date, source }) => report_daily(date, source).await,
        Command::Budgets(source) => budgets(source).await,
        Command::Latency(args) => latency(args).await,
        Command::Drift(args) => drift(args).await,
        Command::Pricing(cmd) => pricing(cmd),
        Command::Export(ExportCommand::Golden(args)) => export_golden(args).await,
        Command::Alerts(AlertsCommand::Check { config }) => alerts_check(config),
        Command::Alerts(AlertsCommand::Test { channel, config }) => {
            alerts_test(channel, config).await
        }
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(db) = args.db {
        config.db = db;
    }
    if args.proxy && config.proxy.is_none() {
        config.proxy = Some(llmwatch_proxy_defaults()?);
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(
        listen = %config.listen,
        db = %config.db.display(),
        timezone = config.timezone.name(),
        "llmwatch serving"
    );
    let app = App::build(config, system_clock())?;
    app.serve(listener, shutdown_signal()).await?;
    Ok(())
}

/// `[proxy]` with every default.
fn llmwatch_proxy_defaults() -> Result<crate::config::ProxyConfig> {
    Ok(crate::config::RawProxy::default().validate()?)
}

async fn ingest(args: IngestArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let reader: Box<dyn BufRead> = if args.file == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        Box::new(BufReader::new(f))
    };
    let total_bytes = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
    let bar = indicatif::ProgressBar::new(total_bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {msg} ({elapsed}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let url = format!("{}/api/v1/events", args.server.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let (mut accepted, mut rejected) = (0usize, 0usize);
    let mut batch = String::new();
    let mut line_numbers: Vec<usize> = Vec::new();
    let mut lines = reader.lines().enumerate().peekable();
    while lines.peek().is_some() {
        batch.clear();
        line_numbers.clear();
        for (i, line) in lines.by_ref() {
            let line = line.with_context(|| format!("cannot read line {}", i + 1))?;
            bar.inc(line.len() as u64 + 1);
            if line.trim().is_empty() {
                continue;
            }
            batch.push_str(&line);
            batch.push('\n');
            line_numbers.push(i + 1);
            if line_numbers.len() == args.batch {
                break;
            }
        }
        if line_numbers.is_empty() {
            break;
        }
        let answer = post_with_retry(&client, &url, batch.clone()).await?;
        accepted += answer["accepted"].as_u64().unwrap_or(0) as usize;
        for r in answer["rejected"].as_array().into_iter().flatten() {
            rejected += 1;
            let index = r["index"].as_u64().unwrap_or(0) as usize;
            let line = line_numbers.get(index).copied().unwrap_or(0);
            bar.suspend(|| {
                eprintln!("line {line}: {}", r["error"].as_str().unwrap_or("rejected"));
            });
        }
        bar.set_message(format!("{accepted} accepted, {rejected} rejected"));
    }
    bar.finish();
    println!("{accepted} accepted, {rejected} rejected");
    if rejected > 0 {
        bail!("{rejected} events were rejected");
    }
    Ok(())
}

/// POSTs one NDJSON batch, honouring 503 + Retry-After like an exporter would.
async fn post_with_retry(client: &reqwest::Client, url: &str, body: String) -> Result<Value> {
    for attempt in 0..10 {
        let resp = client
            .post(url)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            tracing::warn!(attempt, wait, "server busy; retrying");
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
            continue;
        }
        let value: Value = resp.json().await.context("server answered non-JSON")?;
        if status.is_success() || status == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
            return Ok(value);
        }
        bail!("server answered {status}: {}", value["error"]["message"]);
    }
    bail!("server stayed busy; gave up after 10 attempts")
}

/// Opens the local database named by `--db`/config for reading.
fn open_local(source: &SourceArgs) -> Result<(Config, SqliteStore)> {
    let mut config = Config::load(source.config.as_deref())?;
    if let Some(db) = &source.db {
        config.db = db.clone();
    }
    if !config.db.exists() {
        bail!(
            "no database at {} (give --db PATH, a config with `db`, or --server URL; default {DEFAULT_DB})",
            config.db.display()
        );
    }
    let store =
        SqliteStore::open_with(&config.db, config.durability, config.quality.clone(), None)?;
    Ok((config, store))
}

fn alerts_check(path: Option<PathBuf>) -> Result<()> {
    let config = Config::load(path.as_deref())?;
    let a = &config.alerting;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "config ok: {} rules ({} built in), {} channels, evaluated every {} s",
        a.rules.len(),
        a.rules.iter().filter(|r| r.builtin).count(),
        a.channels.len(),
        a.eval_interval_ms / 1000
    )?;
    for r in &a.rules {
        let channels = r
            .channels
            .clone()
            .unwrap_or_else(|| a.routing.of(r.severity).to_vec());
        let group = r
            .group_by
            .map(|d| format!(" per {}", d.as_str()))
            .unwrap_or_default();
        writeln!(
            out,
            "{:<9} {}{}: {}  (cooldown {} s{}; -> {})",
            r.severity.as_str(),
            r.name,
            if r.builtin { " [built in]" } else { "" },
            r.expr,
            r.timing.cooldown_ms / 1000,
            group,
            if channels.is_empty() {
                "nowhere".to_owned()
            } else {
                channels.join(", ")
            }
        )?;
    }
    Ok(())
}

async fn alerts_test(channel: String, path: Option<PathBuf>) -> Result<()> {
    use crate::alerting::channels::{self, ChannelConfig, RetryPolicy};
    let config = Config::load(path.as_deref())?;
    let target = match config.alerting.channels.get(&channel) {
        Some(c) => c.clone(),
        None if channel == crate::alerting::rules::DASHBOARD => ChannelConfig::Dashboard,
        None => bail!(
            "no channel named {channel:?} (configured: {})",
            config
                .alerting
                .channels
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let clock = crate::api::system_clock();
    let n =
        channels::test_notification(&channel, clock(), config.alerting.dashboard_url.as_deref());
    let client = reqwest::Client::new();
    let last = channels::deliver(&client, &target, &n, RetryPolicy::default(), &clock, |a| {
        eprintln!(
            "attempt {}: {}{}{}",
            a.attempt,
            if a.ok { "ok" } else { "failed" },
            a.status
                .map(|s| format!(" (status {s})"))
                .unwrap_or_default(),
            a.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    })
    .await;
    if !last.ok {
        bail!("the test notification to {channel:?} was not delivered");
    }
    println!(
        "test notification delivered to {channel:?} ({})",
        target.kind()
    );
    Ok(())
}

async fn export_golden(args: GoldenArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match &args.server {
        Some(server) => {
            let mut query = Vec::new();
            if let Some(since) = &args.since {
                query.push(format!("since={}", url_encode(since)));
            }
            if let Some(feature) = &args.feature {
                query.push(format!("feature={}", url_encode(feature)));
            }
            let url = format!(
                "{}/api/v1/export/golden?{}",
                server.trim_end_matches('/'),
                query.join("&")
            );
            let resp = reqwest::get(&url)
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = resp.status();
            let skipped = resp
                .headers()
                .get("x-llmwatch-skipped")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            let text = resp.text().await.context("reading the export")?;
            if !status.is_success() {
                bail!("server answered {status}: {text}");
            }
            out.write_all(text.as_bytes())?;
            report_skipped(skipped);
        }
        None => {
            let source = SourceArgs {
                db: args.db.clone(),
                config: args.config.clone(),
                server: None,
                format: Format::Json,
            };
            let (config, store) = open_local(&source)?;
            let since = crate::api::parse_since(args.since.as_deref())
                .map_err(|m| anyhow::anyhow!("--since: {m}"))?;
            let (rows, skipped) =
                crate::quality::golden(&store, DEFAULT_PROJECT, since, args.feature.clone())
                    .await?;
            for r in &rows {
                writeln!(out, "{}", crate::api::golden_line(r, config.timezone))?;
            }
            report_skipped(skipped);
        }
    }
    Ok(())
}

fn report_skipped(skipped: usize) {
    if skipped > 0 {
        eprintln!(
            "{skipped} correction(s) left out: their request or its captured input is unknown"
        );
    }
}

async fn get_json(server: &str, path_and_query: &str) -> Result<Value> {
    let url = format!("{}{path_and_query}", server.trim_end_matches('/'));
    let resp = reqwest::get(&url)
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let value: Value = resp.json().await.context("server answered non-JSON")?;
    if !status.is_success() {
        bail!("server answered {status}: {}", value["error"]["message"]);
    }
    Ok(value)
}

async fn report_daily(date: Option<NaiveDate>, source: SourceArgs) -> Result<()> {
    let value = match &source.server {
        Some(server) => {
            let q = date.map(|d| format!("?date={d}")).unwrap_or_default();
            get_json(server, &format!("/api/v1/reports/daily{q}")).await?
        }
        None => {
            let (config, store) = open_local(&source)?;
            let tz = config.timezone;
            let date =
                date.unwrap_or_else(|| local_date(chrono::Utc::now().timestamp_millis(), tz));
            serde_json::to_value(report::daily_report(&store, DEFAULT_PROJECT, date, tz).await?)?
        }
    };
    let mut out = std::io::stdout().lock();
    match source.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?,
        Format::Csv => write_daily_csv(&mut out, &value)?,
        Format::Table => write_daily_table(&mut out, &value)?,
    }
    Ok(())
}

const GROUP_COLUMNS: [&str; 6] = [
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "tokens",
    "cost",
];

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or(0.0)),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn write_daily_csv(out: &mut impl Write, v: &Value) -> Result<()> {
    writeln!(out, "date,group_by,key,{}", GROUP_COLUMNS.join(","))?;
    for (group_by, field) in [
        ("model", "by_model"),
        ("feature", "by_feature"),
        ("user", "by_user"),
    ] {
        for (key, stats) in v[field].as_object().into_iter().flatten() {
            let cells: Vec<String> = GROUP_COLUMNS
                .iter()
                .map(|c| match &stats[*c] {
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .collect();
            writeln!(
                out,
                "{},{group_by},{},{}",
                v["date"].as_str().unwrap_or_default(),
                csv_field(key),
                cells.join(",")
            )?;
        }
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Writes rows as CSV with a header line.
fn write_csv(out: &mut impl Write, headers: &[&str], rows: &[Vec<String>]) -> Result<()> {
    writeln!(out, "{}", headers.join(","))?;
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| csv_field(c)).collect();
        writeln!(out, "{}", cells.join(","))?;
    }
    Ok(())
}

/// Writes rows as an aligned text table (first column left-aligned, numbers right-aligned).
pub fn write_table(out: &mut impl Write, headers: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn write_daily_table(out: &mut impl Write, v: &Value) -> Result<()> {
    writeln!(
        out,
        "Daily report {} ({})\n  requests {}  errors {}  tokens {}  cost ${:.4}\n",
        cell(&v["date"]),
        cell(&v["timezone"]),
        cell(&v["total_requests"]),
        cell(&v["total_errors"]),
        cell(&v["total_tokens"]),
        v["total_cost"].as_f64().unwrap_or(0.0)
    )?;
    for (title, field) in [
        ("model", "by_model"),
        ("feature", "by_feature"),
        ("user", "by_user"),
    ] {
        // Most expensive first; unpriced groups (cost null) last.
        let mut groups: Vec<(&String, &Value)> =
            v[field].as_object().into_iter().flatten().collect();
        let cost = |s: &Value| s["cost"].as_f64().unwrap_or(-1.0);
        groups.sort_by(|a, b| cost(b.1).total_cmp(&cost(a.1)));
        let mut rows: Vec<Vec<String>> = groups
            .into_iter()
            .map(|(k, s)| {
                std::iter::once(k.clone())
                    .chain(GROUP_COLUMNS.iter().map(|c| cell(&s[*c])))
                    .collect()
            })
            .collect();
        let limit = if field == "by_user" { 15 } else { rows.len() };
        let hidden = rows.len().saturating_sub(limit);
        rows.truncate(limit);
        let mut headers = vec![title];
        headers.extend(GROUP_COLUMNS);
        write_table(out, &headers, &rows)?;
        if hidden > 0 {
            writeln!(
                out,
                "  ... {hidden} more (use --format json or csv for all)"
            )?;
        }
        writeln!(out)?;
    }
    let unpriced = &v["unpriced"];
    if unpriced["requests"].as_i64().unwrap_or(0) > 0 {
        writeln!(
            out,
            "UNPRICED: {} requests, {} tokens have no price (models: {}); total cost excludes them.\n\
             Add them with [[pricing]] in the config.",
            cell(&unpriced["requests"]),
            cell(&unpriced["tokens"]),
            unpriced["models"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    Ok(())
}

async fn budgets(source: SourceArgs) -> Result<()> {
    let value = match &source.server {
        Some(server) => get_json(server, "/api/v1/budgets").await?,
        None => {
            let (config, store) = open_local(&source)?;
            let now = chrono::Utc::now().timestamp_millis();
            let statuses = report::budget_statuses(
                &store,
                DEFAULT_PROJECT,
                &config.budgets,
                config.timezone,
                now,
            )
            .await?;
            serde_json::json!({ "budgets": statuses })
        }
    };
    let mut out = std::io::stdout().lock();
    if source.format == Format::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    let headers = [
        "budget",
        "period",
        "spent_usd",
        "limit_usd",
        "ratio",
        "projected_usd",
        "state",
        "unpriced",
    ];
    let rows: Vec<Vec<String>> = value["budgets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            vec![
                cell(&b["name"]),
                cell(&b["period"]),
                cell(&b["spent_usd"]),
                cell(&b["limit_usd"]),
                cell(&b["ratio"]),
                cell(&b["projected_usd"]),
                cell(&b["state"]),
                cell(&b["unpriced_requests"]),
            ]
        })
        .collect();
    if source.format == Format::Csv {
        return write_csv(&mut out, &headers, &rows);
    }
    write_table(&mut out, &headers, &rows)
}

async fn latency(args: LatencyArgs) -> Result<()> {
    let source = &args.source;
    let value = match &source.server {
        Some(server) => {
            let mut query: Vec<String> = Vec::new();
            for (k, v) in [
                ("from", &args.from),
                ("to", &args.to),
                ("model", &args.model),
                ("feature", &args.feature),
                ("release", &args.release),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", url_encode(v)));
                }
            }
            get_json(server, &format!("/api/v1/latency?{}", query.join("&"))).await?
        }
        None => {
            let (_, store) = open_local(source)?;
            let parse = |v: &Option<String>, name: &str| -> Result<Option<i64>> {
                v.as_deref()
                    .map(|s| parse_timestamp_str(s).map_err(|m| anyhow::anyhow!("--{name}: {m}")))
                    .transpose()
            };
            let to =
                parse(&args.to, "to")?.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            let from = parse(&args.from, "from")?.unwrap_or(to - HOUR_MS);
            if from >= to {
                bail!("--from must be before --to");
            }
            let scope = Scope {
                model: args.model.clone(),
                feature: args.feature.clone(),
                user: None,
                release: args.release.clone(),
            };
            let r =
                crate::operations::latency(&store, DEFAULT_PROJECT, Range::new(from, to), &scope)
                    .await?;
            serde_json::to_value(r)?
        }
    };
    let mut out = std::io::stdout().lock();
    if source.format == Format::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    write_latency_table(&mut out, &value, source.format == Format::Csv)
}

async fn drift(args: DriftArgs) -> Result<()> {
    let source = &args.source;
    // One check (with --dimension) or every configured monitor, as JSON values.
    let reports: Vec<Value> = match (&source.server, &args.dimension) {
        (Some(server), Some(dimension)) => {
            let mut query = vec![format!("dimension={}", url_encode(dimension))];
            for (k, v) in [
                ("baseline", &args.baseline),
                ("from", &args.from),
                ("to", &args.to),
                ("model", &args.model),
                ("feature", &args.feature),
                ("threshold", &args.threshold.map(|t| t.to_string())),
                ("method", &Some(args.method.clone())),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", url_encode(v)));
                }
            }
            vec![get_json(server, &format!("/api/v1/drift?{}", query.join("&"))).await?]
        }
        (Some(server), None) => {
            let v = get_json(server, "/api/v1/drift/status").await?;
            v["monitors"].as_array().cloned().unwrap_or_default()
        }
        (None, dimension) => {
            let (config, store) = open_local(source)?;
            let now = chrono::Utc::now().timestamp_millis();
            match dimension {
                None => crate::drift::status(
                    &store,
                    DEFAULT_PROJECT,
                    &config.drift,
                    now,
                    config.drift_min_samples,
                )
                .await
                .into_iter()
                .map(|(name, r)| match r {
                    Ok(report) => {
                        let mut v = serde_json::to_value(report).unwrap_or_default();
                        v["name"] = name.into();
                        v
                    }
                    Err(e) => serde_json::json!({"name": name, "error": e.to_string()}),
                })
                .collect(),
                Some(dimension) => {
                    let parse = |v: &Option<String>, name: &str| -> Result<Option<i64>> {
                        v.as_deref()
                            .map(|s| {
                                parse_timestamp_str(s).map_err(|m| anyhow::anyhow!("--{name}: {m}"))
                            })
                            .transpose()
                    };
                    let to = parse(&args.to, "to")?.unwrap_or(now);
                    let from =
                        parse(&args.from, "from")?.unwrap_or(to - crate::drift::DEFAULT_WINDOW_MS);
                    let method = crate::drift::Method::parse(&args.method).ok_or_else(|| {
                        anyhow::anyhow!("--method: expected one of {}", crate::drift::Method::NAMES)
                    })?;
                    let req = crate::drift::DriftRequest {
                        dimension: dimension.clone(),
                        baseline: args.baseline.clone(),
                        window: Range::new(from, to),
                        method,
                        threshold: args.threshold,
                        scope: crate::store::DriftScope {
                            model: args.model.clone(),
                            feature: args.feature.clone(),
                        },
                        min_samples: config.drift_min_samples,
                    };
                    vec![serde_json::to_value(
                        crate::drift::check(&store, DEFAULT_PROJECT, &req).await?,
                    )?]
                }
            }
        }
    };
    let mut out = std::io::stdout().lock();
    if source.format == Format::Json {
        let v = if args.dimension.is_some() {
            reports.into_iter().next().unwrap_or_default()
        } else {
            Value::Array(reports)
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    if reports.is_empty() {
        writeln!(
            out,
            "no drift monitors configured ([[drift]] in the config); give --dimension"
        )?;
    }
    for r in &reports {
        write_drift(&mut out, r)?;
    }
    Ok(())
}

/// The verdict line and the text histogram of one drift report.
fn write_drift(out: &mut impl Write, r: &Value) -> Result<()> {
    let name = r["name"]
        .as_str()
        .map(|n| format!("{n}: "))
        .unwrap_or_default();
    if let Some(e) = r["error"].as_str() {
        writeln!(out, "{name}error: {e}")?;
        return Ok(());
    }
    let dim = r["dimension"].as_str().unwrap_or("?");
    let verdict = match (r["drift_detected"].as_bool(), r["reason"].as_str()) {
        (_, Some(reason)) => format!("NO VERDICT ({reason})"),
        (Some(true), _) => "DRIFT".to_owned(),
        _ => "no drift".to_owned(),
    };
    let score = r["score"]
        .as_f64()
        .map(|s| format!("{s:.4}"))
        .unwrap_or_else(|| "-".into());
    let p = r["p_value"]
        .as_f64()
        .map(|p| format!("  p = {p:.3e}"))
        .unwrap_or_default();
    writeln!(
        out,
        "{name}{dim}: {verdict}  [{} = {score}{p}, threshold {}; baseline {} vs current {} observations]",
        r["method"].as_str().unwrap_or("?"),
        r["threshold"],
        r["baseline_size"],
        r["current_size"]
    )?;
    for (label, key) in [("new", "new_values"), ("missing", "missing_values")] {
        let vals: Vec<&str> = r[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !vals.is_empty() {
            writeln!(out, "  {label} values: {}", vals.join(", "))?;
        }
    }
    let changes: Vec<crate::core::drift::Change> = r["changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| crate::core::drift::Change {
                    value: c["value"].as_str().unwrap_or_default().to_owned(),
                    baseline_share: c["baseline_share"].as_f64().unwrap_or(0.0),
                    current_share: c["current_share"].as_f64().unwrap_or(0.0),
                    delta: c["delta"].as_f64().unwrap_or(0.0),
                })
                .collect()
        })
        .unwrap_or_default();
    for line in crate::drift::histogram_rows(&changes, 8) {
        writeln!(out, "  {line}")?;
    }
    writeln!(out)?;
    Ok(())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ms_cell(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.1}"))
        .unwrap_or_else(|| "-".into())
}

fn share_cell(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{:.1}%", x * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn write_latency_table(out: &mut impl Write, v: &Value, csv: bool) -> Result<()> {
    let headers = [
        "stage", "count", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "share", "",
    ];
    let bottleneck = v["bottleneck"].as_str().unwrap_or_default();
    let mut rows = vec![vec![
        "(request)".to_owned(),
        cell(&v["count"]),
        ms_cell(&v["mean"]),
        ms_cell(&v["p50"]),
        ms_cell(&v["p95"]),
        ms_cell(&v["p99"]),
        "100.0%".to_owned(),
        String::new(),
    ]];
    for (name, s) in v["stages"].as_object().into_iter().flatten() {
        rows.push(vec![
            name.clone(),
            cell(&s["count"]),
            ms_cell(&s["mean"]),
            ms_cell(&s["p50"]),
            ms_cell(&s["p95"]),
            ms_cell(&s["p99"]),
            share_cell(&s["share"]),
            if name == bottleneck {
                "<- bottleneck".into()
            } else {
                String::new()
            },
        ]);
    }
    rows.push(vec![
        "(unaccounted)".to_owned(),
        String::new(),
        ms_cell(&v["unaccounted"]["mean"]),
        String::new(),
        String::new(),
        String::new(),
        share_cell(&v["unaccounted"]["share"]),
        String::new(),
    ]);
    let ttft = &v["ttft"];
    rows.push(vec![
        "(ttft)".to_owned(),
        cell(&ttft["count"]),
        ms_cell(&ttft["mean"]),
        ms_cell(&ttft["p50"]),
        ms_cell(&ttft["p95"]),
        ms_cell(&ttft["p99"]),
        String::new(),
        String::new(),
    ]);
    if csv {
        let rows: Vec<Vec<String>> = rows
            .into_iter()
            .map(|mut r| {
                r.truncate(7);
                r
            })
            .collect();
        return write_csv(out, &headers[..7], &rows);
    }
    writeln!(
        out,
        "Latency (ms): min {}  max {}  (quantiles within {}% relative error)\n",
        ms_cell(&v["min"]),
        ms_cell(&v["max"]),
        v["relative_accuracy"].as_f64().unwrap_or(0.01) * 100.0
    )?;
    write_table(out, &headers, &rows)
}

fn pricing(cmd: PricingCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        PricingCommand::List { config, format } => {
            let config = Config::load(config.as_deref())?;
            let entries = config.pricing.entries();
            if format == Format::Json {
                writeln!(out, "{}", serde_json::to_string_pretty(entries)?)?;
                return Ok(());
            }
            let opt = |p: Option<f64>| p.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            let headers = [
                "model",
                "provider",
                "input",
                "output",
                "cached_input",
                "cache_write",
                "effective_from",
            ];
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        e.model.clone(),
                        e.provider.clone().unwrap_or_default(),
                        e.input.to_string(),
                        e.output.to_string(),
                        opt(e.cached_input),
                        opt(e.cache_write),
                        e.effective_from
                            .map(|d| d.to_string())
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            if format == Format::Csv {
                return write_csv(&mut out, &headers, &rows);
            }
            writeln!(out, "USD per 1M tokens")?;
            write_table(&mut out, &headers, &rows)
        }
        PricingCommand::Cost {
            model,
            input,
            output,
            cached,
            cache_write,
            at,
            config,
        } => {
            if cached + cache_write > input {
                bail!(
                    "--cached + --cache-write ({}) exceed --input ({input}); they are counted inside it",
                    cached + cache_write
                );
            }
            let config = Config::load(config.as_deref())?;
            let at_ms = match at {
                Some(d) => d
                    .and_hms_opt(12, 0, 0)
                    .unwrap_or_default()
                    .and_utc()
                    .timestamp_millis(),
                None => chrono::Utc::now().timestamp_millis(),
            };
            let usage = Usage {
                input_tokens: input,
                output_tokens: output,
                cached_input_tokens: cached,
                cache_write_tokens: cache_write,
                reasoning_tokens: 0,
            };
            match config.pricing.resolve(&model, at_ms) {
                None => bail!(
                    "{model:?} has no price: it would be reported as unpriced. Add it with [[pricing]] in the config"
                ),
                Some(price) => {
                    let cost = crate::core::pricing::cost_of(price, &usage);
                    writeln!(
                        out,
                        "{model} (priced as {}{}): ${cost:.6}",
                        price.model,
                        price
                            .effective_from
                            .map(|d| format!(", prices from {d}"))
                            .unwrap_or_default()
                    )?;
                    Ok(())
                }
            }
        }
    }
}
