//! Cost reports and budget states, computed from store totals. Shared by the HTTP API and the
//! CLI; knows nothing of HTTP. Every grouping of a report adds up to its total: requests
//! without the label are grouped under `"(none)"`.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Serialize;

use crate::config::Budget;
use crate::core::rollup::{Dimension, Scope, Totals, nanos_to_usd};
use crate::core::time::{Period, Range, calendar_days, day_range, format_rfc3339, period_range};
use crate::store::{GroupTotals, Store, StoreError, TotalsQuery};

/// The group name of requests that lack the grouped label.
pub const NONE_GROUP: &str = "(none)";

/// Totals of one group, as reports show them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub tokens: i64,
    /// USD of the priced requests; `null` when every request of the group is unpriced.
    pub cost: Option<f64>,
    pub unpriced_requests: i64,
    pub unpriced_tokens: i64,
    pub mean_duration_ms: Option<f64>,
}

impl From<&Totals> for GroupStats {
    fn from(t: &Totals) -> Self {
        GroupStats {
            requests: t.requests,
            errors: t.errors,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cached_input_tokens: t.cached_input_tokens,
            cache_write_tokens: t.cache_write_tokens,
            reasoning_tokens: t.reasoning_tokens,
            tokens: t.tokens(),
            cost: (t.unpriced_requests < t.requests || t.requests == 0)
                .then(|| nanos_to_usd(t.cost_nanos)),
            unpriced_requests: t.unpriced_requests,
            unpriced_tokens: t.unpriced_tokens,
            mean_duration_ms: (t.requests > 0).then(|| t.duration_ms_sum / t.requests as f64),
        }
    }
}

/// What the report could not price.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unpriced {
    pub requests: i64,
    pub tokens: i64,
    /// Models without a price, most requests first.
    pub models: Vec<String>,
}

fn unpriced_of(by_model: &[GroupTotals]) -> Unpriced {
    let mut models: Vec<&GroupTotals> = by_model
        .iter()
        .filter(|g| g.totals.unpriced_requests > 0)
        .collect();
    models.sort_by(|a, b| {
        b.totals
            .unpriced_requests
            .cmp(&a.totals.unpriced_requests)
            .then_with(|| a.key.cmp(&b.key))
    });
    Unpriced {
        requests: models.iter().map(|g| g.totals.unpriced_requests).sum(),
        tokens: models.iter().map(|g| g.totals.unpriced_tokens).sum(),
        models: models.iter().filter_map(|g| g.key.clone()).collect(),
    }
}

fn sum(groups: &[GroupTotals]) -> Totals {
    groups.iter().map(|g| &g.totals).sum()
}

fn by_key(groups: &[GroupTotals]) -> BTreeMap<String, GroupStats> {
    groups
        .iter()
        .map(|g| {
            (
                g.key.clone().unwrap_or_else(|| NONE_GROUP.to_owned()),
                GroupStats::from(&g.totals),
            )
        })
        .collect()
}

/// The seed's daily report, and more.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyReport {
    pub date: String,
    pub timezone: String,
    pub from: String,
    pub to: String,
    pub total_requests: i64,
    pub total_errors: i64,
    pub total_cost: f64,
    pub total_tokens: i64,
    pub total_input_tokens: i64,
    pub total_output_tokens: i64,
    pub by_model: BTreeMap<String, GroupStats>,
    pub by_feature: BTreeMap<String, GroupStats>,
    pub by_user: BTreeMap<String, GroupStats>,
    pub unpriced: Unpriced,
}

async fn grouped(
    store: &dyn Store,
    project: &str,
    range: Range,
    scope: &Scope,
    dim: Dimension,
) -> Result<Vec<GroupTotals>, StoreError> {
    store
        .totals(TotalsQuery {
            scope: scope.clone(),
            group_by: Some(dim),
            ..TotalsQuery::new(project, range)
        })
        .await
}

async fn total(
    store: &dyn Store,
    project: &str,
    range: Range,
    scope: &Scope,
) -> Result<Totals, StoreError> {
    let groups = store
        .totals(TotalsQuery {
            scope: scope.clone(),
            ..TotalsQuery::new(project, range)
        })
        .await?;
    Ok(sum(&groups))
}

pub async fn daily_report(
    store: &dyn Store,
    project: &str,
    date: NaiveDate,
    tz: Tz,
) -> Result<DailyReport, StoreError> {
    let range = day_range(date, tz);
    let scope = Scope::default();
    let (models, features, users) = tokio::try_join!(
        grouped(store, project, range, &scope, Dimension::Model),
        grouped(store, project, range, &scope, Dimension::Feature),
        grouped(store, project, range, &scope, Dimension::User),
    )?;
    let t = sum(&models);
    Ok(DailyReport {
        date: date.to_string(),
        timezone: tz.name().to_owned(),
        from: format_rfc3339(range.from_ms, tz),
        to: format_rfc3339(range.to_ms, tz),
        total_requests: t.requests,
        total_errors: t.errors,
        total_cost: t.cost_usd(),
        total_tokens: t.tokens(),
        total_input_tokens: t.input_tokens,
        total_output_tokens: t.output_tokens,
        by_model: by_key(&models),
        by_feature: by_key(&features),
        by_user: by_key(&users),
        unpriced: unpriced_of(&models),
    })
}

/// How a cost report groups its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostGroup {
    Label(Dimension),
    /// Calendar days in the configured time zone.
    Day,
}

impl CostGroup {
    pub fn parse(s: &str) -> Option<CostGroup> {
        Some(match s {
            "model" => CostGroup::Label(Dimension::Model),
            "feature" => CostGroup::Label(Dimension::Feature),
            "user" => CostGroup::Label(Dimension::User),
            "release" => CostGroup::Label(Dimension::Release),
            "day" => CostGroup::Day,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            CostGroup::Label(d) => d.as_str(),
            CostGroup::Day => "day",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostRow {
    pub key: String,
    #[serde(flatten)]
    pub stats: GroupStats,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostReport {
    pub from: String,
    pub to: String,
    pub timezone: String,
    pub group_by: String,
    pub total_requests: i64,
    pub total_cost: f64,
    pub total_tokens: i64,
    /// Label groups by cost, highest first; days in date order.
    pub groups: Vec<CostRow>,
    pub unpriced: Unpriced,
}

/// Longest range a day-grouped report covers (one query per day).
pub const MAX_REPORT_DAYS: i64 = 3660;

pub async fn cost_report(
    store: &dyn Store,
    project: &str,
    range: Range,
    scope: &Scope,
    group: CostGroup,
    tz: Tz,
) -> Result<CostReport, StoreError> {
    let models = grouped(store, project, range, scope, Dimension::Model).await?;
    let t = sum(&models);
    let groups = match group {
        CostGroup::Label(Dimension::Model) => models.clone(),
        CostGroup::Label(d) => grouped(store, project, range, scope, d).await?,
        CostGroup::Day => {
            let mut days = Vec::new();
            for d in calendar_days(range, tz, MAX_REPORT_DAYS as usize) {
                let day_total = total(store, project, d.clipped, scope).await?;
                if day_total.requests != 0 {
                    days.push(GroupTotals {
                        bucket_ms: Some(d.day.from_ms),
                        key: Some(d.date.to_string()),
                        totals: day_total,
                        sketches: None,
                    });
                }
            }
            days
        }
    };
    let mut rows: Vec<CostRow> = groups
        .iter()
        .map(|g| CostRow {
            key: g.key.clone().unwrap_or_else(|| NONE_GROUP.to_owned()),
            stats: GroupStats::from(&g.totals),
        })
        .collect();
    if group != CostGroup::Day {
        rows.sort_by(|a, b| {
            let cost = |r: &CostRow| r.stats.cost.unwrap_or(0.0);
            cost(b)
                .total_cmp(&cost(a))
                .then_with(|| b.stats.requests.cmp(&a.stats.requests))
                .then_with(|| a.key.cmp(&b.key))
        });
    }
    Ok(CostReport {
        from: format_rfc3339(range.from_ms, tz),
        to: format_rfc3339(range.to_ms, tz),
        timezone: tz.name().to_owned(),
        group_by: group.as_str().to_owned(),
        total_requests: t.requests,
        total_cost: t.cost_usd(),
        total_tokens: t.tokens(),
        groups: rows,
        unpriced: unpriced_of(&models),
    })
}

/// A budget's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetState {
    Ok,
    Warning,
    Exceeded,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetScope {
    pub feature: Option<String>,
    pub user: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetStatus {
    pub name: String,
    pub period: Period,
    pub scope: BudgetScope,
    pub limit_usd: f64,
    pub warn_at: f64,
    pub period_start: String,
    pub period_end: String,
    pub spent_usd: f64,
    /// spent / limit.
    pub ratio: f64,
    /// Spend at period end if the burn rate so far continues.
    pub projected_usd: f64,
    pub projected_ratio: f64,
    pub state: BudgetState,
    /// Requests in scope that could not be priced: the real spend is higher than shown.
    pub unpriced_requests: i64,
    pub unpriced_tokens: i64,
    pub unpriced_models: Vec<String>,
}

/// Pure: the state of a budget given its spend.
pub fn budget_state(spent_usd: f64, limit_usd: f64, warn_at: f64) -> BudgetState {
    if spent_usd >= limit_usd {
        BudgetState::Exceeded
    } else if spent_usd >= limit_usd * warn_at {
        BudgetState::Warning
    } else {
        BudgetState::Ok
    }
}

/// Pure: spend at the end of `period` if the rate over `[period.from, now)` continues.
pub fn project_spend(spent_usd: f64, period: Range, now_ms: i64) -> f64 {
    let elapsed = (now_ms - period.from_ms).clamp(1, period.len_ms().max(1));
    spent_usd * period.len_ms() as f64 / elapsed as f64
}

pub async fn budget_statuses(
    store: &dyn Store,
    project: &str,
    budgets: &[Budget],
    tz: Tz,
    now_ms: i64,
) -> Result<Vec<BudgetStatus>, StoreError> {
    let mut out = Vec::with_capacity(budgets.len());
    for b in budgets {
        let period = period_range(b.period, now_ms, tz);
        let so_far = Range::new(period.from_ms, now_ms.clamp(period.from_ms, period.to_ms));
        let models = grouped(store, project, so_far, &b.scope, Dimension::Model).await?;
        let t = sum(&models);
        let unpriced = unpriced_of(&models);
        let spent = t.cost_usd();
        let projected = project_spend(spent, period, now_ms);
        out.push(BudgetStatus {
            name: b.name.clone(),
            period: b.period,
            scope: BudgetScope {
                feature: b.scope.feature.clone(),
                user: b.scope.user.clone(),
                model: b.scope.model.clone(),
            },
            limit_usd: b.limit_usd,
            warn_at: b.warn_at,
            period_start: format_rfc3339(period.from_ms, tz),
            period_end: format_rfc3339(period.to_ms, tz),
            spent_usd: spent,
            ratio: spent / b.limit_usd,
            projected_usd: projected,
            projected_ratio: projected / b.limit_usd,
            state: budget_state(spent, b.limit_usd, b.warn_at),
            unpriced_requests: unpriced.requests,
            unpriced_tokens: unpriced.tokens,
            unpriced_models: unpriced.models,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_states_at_the_thresholds() {
        assert_eq!(budget_state(39.99, 50.0, 0.8), BudgetState::Ok);
        assert_eq!(budget_state(40.0, 50.0, 0.8), BudgetState::Warning);
        assert_eq!(budget_state(50.0, 50.0, 0.8), BudgetState::Exceeded);
    }

    #[test]
    fn projection_extrapolates_the_burn_rate() {
        // $10 spent in the first 6 hours of a 24-hour day -> $40 by the end of the day.
        let day = Range::new(0, 24 * 3_600_000);
        assert_eq!(project_spend(10.0, day, 6 * 3_600_000), 40.0);
        // At or after the end, the projection is the spend.
        assert_eq!(project_spend(10.0, day, 30 * 3_600_000), 10.0);
    }
}
