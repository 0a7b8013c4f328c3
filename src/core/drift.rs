//! Drift statistics: how far a current sample has moved from a baseline. Pure numerics, no I/O.
//!
//! Categorical samples are [`Counts`] (category -> count); numeric samples are [`Weighted`]
//! `(value, weight)` pairs. The definitions follow SciPy (named per function) and the fixtures in
//! `tests/fixtures/drift/` hold SciPy's outputs for them; the tests check every value to 1e-9
//! relative. The special functions behind the p-values (the regularized upper incomplete gamma
//! function for chi-square, the Kolmogorov distribution for KS) are implemented here.
//!
//! Precision, measured against exact references (60-digit decimals, mpmath) over the fixtures:
//! distances, PSI and statistics within 3e-15 relative, including divergences near 0 (where
//! SciPy's and the seed's formulas keep only ~1e-16 absolute); chi-square p-values within
//! ~2e-16 |ln p| relative (at most 3e-13, at p near 1e-300), Kolmogorov p-values within 5e-15,
//! until they underflow to subnormals and 0 below ~1e-308.
//!
//! Conventions shared by every function:
//! - a category with a count of 0 is absent: the categories compared are those counted at least
//!   once on either side (the union);
//! - a numeric pair is ignored unless its value is finite (an infinite value has no distance)
//!   and its weight finite and positive;
//! - a side with no data (no categories, or no weight) is no evidence of drift: the distances are
//!   0 and the tests answer statistic 0, p-value 1 (SciPy raises on such input). The exception
//!   is [`kl_add_one`], which keeps the seed's formula, defined as soon as one side has data.

use std::collections::BTreeMap;
use std::f64::consts::{LN_2, PI};

use serde::Serialize;

/// Category -> count.
pub type Counts = BTreeMap<String, u64>;

/// A numeric sample as (value, weight) pairs, any order; weights are counts (fractional only in
/// tests), read as f64. Empty means no data.
pub type Weighted = [(f64, f64)];

/// The share that stands in for a zero share in the PSI, whose log ratio is infinite otherwise:
/// 1e-4, so a category (or bin) absent on one side and holding a share `s` on the other adds
/// `(s - 1e-4) ln(s / 1e-4)`, about 2.3 for `s = 0.1`.
pub const PSI_EPSILON: f64 = 1e-4;

/// A statistical test's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub p_value: f64,
}

/// What a test answers when a side has no data, or when there is nothing to compare.
const NO_EVIDENCE: TestResult = TestResult {
    statistic: 0.0,
    p_value: 1.0,
};

// ------------------------------------------------------------------------------ categorical

/// The categories counted on either side, in order, with both counts.
fn union<'a>(baseline: &'a Counts, current: &'a Counts) -> Vec<(&'a str, u64, u64)> {
    let mut out: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (k, &n) in baseline.iter().filter(|(_, n)| **n > 0) {
        out.entry(k.as_str()).or_default().0 = n;
    }
    for (k, &n) in current.iter().filter(|(_, n)| **n > 0) {
        out.entry(k.as_str()).or_default().1 = n;
    }
    out.into_iter().map(|(k, (b, c))| (k, b, c)).collect()
}

/// Total count, summed in u128 so that no realistic input overflows.
fn total_u(counts: &Counts) -> u128 {
    counts.values().map(|&n| u128::from(n)).sum()
}

/// Total count as f64.
fn total(counts: &Counts) -> f64 {
    total_u(counts) as f64
}

/// `x - y` as f64 with one rounding (its sign exact).
fn diff(x: u128, y: u128) -> f64 {
    if x >= y {
        (x - y) as f64
    } else {
        -((y - x) as f64)
    }
}

// Why the cross products below: the difference of two shares computed in f64 carries the
// rounding of both (~1e-16 of the share), which is all of it when the shares agree to 1e-16 and
// 1e-10 of it when they agree to 1e-6; `(x/X - y/Y)` as `(x Y - y X) / (X Y)` in exact integers
// is rounded once. The f64 formula remains the fallback for products beyond u128 (counts near
// 2^64), which no real input reaches.

/// The seed's KL divergence KL(baseline || current) with add-one smoothing over the union of
/// categories: `p_i = (b_i + 1) / (B + K)`, `q_i = (c_i + 1) / (C + K)`, `K = |union|`,
/// `sum p_i ln(p_i / q_i)`. Returns 0.0 when both are empty.
///
/// Each term is computed as `p ln(p/q) - p + q = q h((p - q)/q)` (the added terms sum to 0),
/// which is never negative and has no cancellation, with `p - q` from exact integers, so a
/// divergence near 0 keeps its relative precision where the seed's plain sum keeps only about
/// 1e-16 absolute.
pub fn kl_add_one(baseline: &Counts, current: &Counts) -> f64 {
    let cats = union(baseline, current);
    if cats.is_empty() {
        return 0.0;
    }
    let k = cats.len() as u128;
    let (bt, ct) = (total_u(baseline) + k, total_u(current) + k);
    cats.iter()
        .map(|&(_, b, c)| {
            let (pn, qn) = (u128::from(b) + 1, u128::from(c) + 1);
            let q = qn as f64 / ct as f64;
            // (p - q) / q = (pn ct - qn bt) / (qn bt).
            let u = match (pn.checked_mul(ct), qn.checked_mul(bt)) {
                (Some(x), Some(y)) => diff(x, y) / y as f64,
                _ => (pn as f64 / bt as f64 - q) / q,
            };
            q * xlnx_excess(u)
        })
        .sum()
}

/// Jensen-Shannon *distance* (square root of the JS divergence, natural log) between the
/// normalised counts, without smoothing: `scipy.spatial.distance.jensenshannon(p, q)`. Between 0
/// and `sqrt(ln 2)`. 0 when a side is empty.
///
/// With `m = (p + q)/2` and `u = (p - q)/(p + q)`, `p ln(p/m) + q ln(q/m) = m g(u)` with
/// `g(u) = (1+u) ln(1+u) + (1-u) ln(1-u) >= 0`; summing these terms avoids SciPy's cancellation
/// between terms of both signs (SciPy's divergence carries ~1e-16 absolute error, so ~1e-8 on a
/// distance near 0; here the relative precision holds).
pub fn js_distance(baseline: &Counts, current: &Counts) -> f64 {
    let (bt, ct) = (total_u(baseline), total_u(current));
    if bt == 0 || ct == 0 {
        return 0.0;
    }
    let divergence: f64 = union(baseline, current)
        .iter()
        .map(|&(_, b, c)| {
            let (b, c) = (u128::from(b), u128::from(c));
            let (p, q) = (b as f64 / bt as f64, c as f64 / ct as f64);
            let m = 0.5 * (p + q);
            // (p - q) / (p + q) = (b C - c B) / (b C + c B).
            let u = match (b.checked_mul(ct), c.checked_mul(bt)) {
                (Some(x), Some(y)) if x.checked_add(y).is_some() => diff(x, y) / (x + y) as f64,
                _ => (p - q) / (p + q),
            };
            m * js_term(u)
        })
        .sum();
    (0.5 * divergence).sqrt()
}

/// Population stability index over the union of categories:
/// `sum (c_i - b_i) ln(c_i / b_i)` on the shares, a zero share replaced by [`PSI_EPSILON`].
/// 0 when a side is empty.
pub fn psi_categorical(baseline: &Counts, current: &Counts) -> f64 {
    let (bt, ct) = (total_u(baseline), total_u(current));
    if bt == 0 || ct == 0 {
        return 0.0;
    }
    union(baseline, current)
        .iter()
        .map(|&(_, b, c)| {
            let (b, c) = (u128::from(b), u128::from(c));
            // c/C - b/B = (c B - b C) / (B C); (c/C) / (b/B) = c B / (b C).
            match (c.checked_mul(bt), b.checked_mul(ct), bt.checked_mul(ct)) {
                (Some(x), Some(y), Some(z)) if b > 0 && c > 0 => {
                    let d = diff(x, y);
                    let ratio = x as f64 / y as f64;
                    d / z as f64 * ln_ratio(ratio, d / y as f64)
                }
                _ => psi_term(b as f64 / bt as f64, c as f64 / ct as f64),
            }
        })
        .sum()
}

/// One PSI term `(c - b) ln(c / b)` on two shares; both factors have the same sign, so every
/// term is >= 0.
fn psi_term(b: f64, c: f64) -> f64 {
    let b = if b > 0.0 { b } else { PSI_EPSILON };
    let c = if c > 0.0 { c } else { PSI_EPSILON };
    let d = c - b; // exact when b/2 <= c <= 2b
    d * ln_ratio(c / b, d / b)
}

/// `ln(ratio)` given `ratio` and `ratio - 1`: for a ratio near 1, `ln_1p` of the relative
/// difference keeps the precision that `ln` of the rounded ratio would lose; away from 1, `ln`
/// is the accurate one.
fn ln_ratio(ratio: f64, ratio_minus_one: f64) -> f64 {
    if (0.5..=2.0).contains(&ratio) {
        ratio_minus_one.ln_1p()
    } else {
        ratio.ln()
    }
}

/// Chi-square test of homogeneity on the 2 x K contingency table (baseline row, current row) over
/// the union of categories, no continuity correction:
/// `scipy.stats.chi2_contingency([b, c], correction=False)` (statistic, p-value), with
/// `K - 1` degrees of freedom. K <= 1, or an empty side: statistic 0, p-value 1.
pub fn chi_square(baseline: &Counts, current: &Counts) -> TestResult {
    let cats = union(baseline, current);
    let (bt, ct) = (total(baseline), total(current));
    if cats.len() < 2 || bt == 0.0 || ct == 0.0 {
        return NO_EVIDENCE;
    }
    let n = bt + ct;
    let mut statistic = 0.0;
    for &(_, b, c) in &cats {
        let column = (u128::from(b) + u128::from(c)) as f64;
        // Expected counts as SciPy computes them: row total * column total / grand total.
        for (observed, row) in [(b as f64, bt), (c as f64, ct)] {
            let expected = row * column / n;
            statistic += (observed - expected) * (observed - expected) / expected;
        }
    }
    let dof = (cats.len() - 1) as f64;
    TestResult {
        statistic,
        p_value: chi2_sf(statistic, dof),
    }
}

/// A category's share on each side and its change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub value: String,
    pub baseline_share: f64,
    pub current_share: f64,
    /// `current_share - baseline_share`.
    pub delta: f64,
}

/// Per category of the union: its share on each side (count / total; 0 when a side is empty) and
/// `delta = current - baseline`, sorted by `|delta|` descending, ties by value. Also the
/// categories only in current (new) and only in baseline (missing), each sorted by value.
pub fn categorical_changes(
    baseline: &Counts,
    current: &Counts,
) -> (Vec<Change>, Vec<String>, Vec<String>) {
    let (bt, ct) = (total(baseline), total(current));
    let share = |n: u64, t: f64| if t > 0.0 { n as f64 / t } else { 0.0 };
    let cats = union(baseline, current);
    let mut changes: Vec<Change> = cats
        .iter()
        .map(|&(value, b, c)| {
            let (baseline_share, current_share) = (share(b, bt), share(c, ct));
            Change {
                value: value.to_owned(),
                baseline_share,
                current_share,
                delta: current_share - baseline_share,
            }
        })
        .collect();
    changes.sort_by(|x, y| {
        y.delta
            .abs()
            .total_cmp(&x.delta.abs())
            .then_with(|| x.value.cmp(&y.value))
    });
    let new = cats
        .iter()
        .filter(|c| c.1 == 0)
        .map(|c| c.0.to_owned())
        .collect();
    let missing = cats
        .iter()
        .filter(|c| c.2 == 0)
        .map(|c| c.0.to_owned())
        .collect();
    (changes, new, missing)
}

// ------------------------------------------------------------------------------ numeric

/// The valid pairs (see the module's conventions), sorted by value (stable, so pairs with equal
/// values keep their order), with -0.0 read as 0.0.
fn sorted_clean(sample: &Weighted) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = sample
        .iter()
        .filter(|(v, w)| v.is_finite() && w.is_finite() && *w > 0.0)
        .map(|&(v, w)| (v + 0.0, w))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Total weight, summed in order.
fn weight(sample: &[(f64, f64)]) -> f64 {
    sample.iter().map(|p| p.1).sum()
}

/// Walks the distinct values of two sorted samples in increasing order, calling `f(value,
/// weight of b at or below it, weight of c at or below it)` once per distinct value.
fn walk(b: &[(f64, f64)], c: &[(f64, f64)], mut f: impl FnMut(f64, f64, f64)) {
    let (mut i, mut j, mut cb, mut cc) = (0, 0, 0.0, 0.0);
    loop {
        let v = match (b.get(i), c.get(j)) {
            (Some(x), Some(y)) => x.0.min(y.0),
            (Some(x), None) => x.0,
            (None, Some(y)) => y.0,
            (None, None) => return,
        };
        while let Some(&(_, w)) = b.get(i).filter(|p| p.0 <= v) {
            cb += w;
            i += 1;
        }
        while let Some(&(_, w)) = c.get(j).filter(|p| p.0 <= v) {
            cc += w;
            j += 1;
        }
        f(v, cb, cc);
    }
}

/// Two-sample Kolmogorov-Smirnov test on weighted samples. The statistic is
/// `sup |F_b - F_c|` of the weighted empirical CDFs, both evaluated at every distinct value (so
/// ties count as in SciPy); with integer weights it equals `scipy.stats.ks_2samp` on the expanded
/// samples (to the last bit or so: SciPy's exact mode rounds it to a multiple of 1/lcm(n, m)).
/// The p-value is the asymptotic Kolmogorov distribution's:
/// [`kolmogorov_sf`]`(sqrt(n m / (n + m)) D)` with `n`, `m` the total weights, i.e.
/// `scipy.special.kolmogorov` (= `scipy.stats.kstwobign.sf`); SciPy's own `ks_2samp` uses an exact
/// or finite-n distribution instead. An empty side: statistic 0, p-value 1.
pub fn ks_2samp(baseline: &Weighted, current: &Weighted) -> TestResult {
    let (b, c) = (sorted_clean(baseline), sorted_clean(current));
    let (n, m) = (weight(&b), weight(&c));
    if b.is_empty() || c.is_empty() {
        return NO_EVIDENCE;
    }
    let mut statistic: f64 = 0.0;
    walk(&b, &c, |_, cb, cc| {
        statistic = statistic.max((cb / n - cc / m).abs());
    });
    let en = n * m / (n + m);
    TestResult {
        statistic,
        p_value: kolmogorov_sf(en.sqrt() * statistic),
    }
}

/// 1-Wasserstein distance (earth mover's distance) between the weighted samples, the integral of
/// `|F_b - F_c|`: `scipy.stats.wasserstein_distance(u_values, v_values, u_weights, v_weights)`.
/// In the samples' unit. 0 when a side is empty.
pub fn wasserstein(baseline: &Weighted, current: &Weighted) -> f64 {
    let (b, c) = (sorted_clean(baseline), sorted_clean(current));
    let (n, m) = (weight(&b), weight(&c));
    if b.is_empty() || c.is_empty() {
        return 0.0;
    }
    let mut distance = 0.0;
    let mut previous: Option<(f64, f64)> = None; // (value, |F_b - F_c| from it to the next)
    walk(&b, &c, |v, cb, cc| {
        if let Some((u, gap)) = previous {
            distance += gap * (v - u);
        }
        previous = Some((v, (cb / n - cc / m).abs()));
    });
    distance
}

/// Weighted population standard deviation (ddof = 0):
/// `numpy.sqrt(numpy.cov(v, aweights=w, ddof=0))`, the standard deviation of the expanded sample
/// for integer weights. Two passes (mean, then squared deviations). 0 when empty.
pub fn weighted_std(sample: &Weighted) -> f64 {
    let s = sorted_clean(sample);
    let n = weight(&s);
    if s.is_empty() {
        return 0.0;
    }
    let mean = s.iter().map(|&(v, w)| v * w).sum::<f64>() / n;
    let variance = s
        .iter()
        .map(|&(v, w)| w * (v - mean) * (v - mean))
        .sum::<f64>()
        / n;
    variance.sqrt()
}

/// A numeric bin `[lower, upper)` between two of the baseline's deciles (the first bin starts at
/// -inf, the last ends at +inf), with each side's share of its total weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    pub lower: f64,
    pub upper: f64,
    pub baseline_share: f64,
    pub current_share: f64,
}

/// PSI over the baseline's deciles. The edge for `q = k/10` (k = 1..9) is the smallest baseline
/// value whose cumulative weight share (of the values at or below it) exceeds `q`, computed as
/// `cumulative / total > k / 10` in f64; equal edges are merged, so ties collapse bins. The bins
/// are `(-inf, e_1), [e_1, e_2), ..., [e_last, +inf)`: with 10 equally weighted distinct
/// values, one per bin, and in general each bin but those cut by ties holds about a tenth of the
/// baseline. Each side's share per bin, then PSI as in [`psi_categorical`] (same
/// [`PSI_EPSILON`]). Returns the PSI (0 when a side is empty) and the bins (one bin over the whole
/// line when the baseline is empty).
pub fn psi_deciles(baseline: &Weighted, current: &Weighted) -> (f64, Vec<Bin>) {
    let (b, c) = (sorted_clean(baseline), sorted_clean(current));
    let (n, m) = (weight(&b), weight(&c));
    let edges = decile_edges(&b, n);
    let shares = |sample: &[(f64, f64)], total: f64| {
        let mut sums = vec![0.0; edges.len() + 1];
        for &(v, w) in sample {
            sums[edges.partition_point(|e| *e <= v)] += w;
        }
        if total > 0.0 {
            sums.iter_mut().for_each(|s| *s /= total);
        }
        sums
    };
    let (bs, cs) = (shares(&b, n), shares(&c, m));
    let bins: Vec<Bin> = (0..=edges.len())
        .map(|i| Bin {
            lower: if i == 0 {
                f64::NEG_INFINITY
            } else {
                edges[i - 1]
            },
            upper: edges.get(i).copied().unwrap_or(f64::INFINITY),
            baseline_share: bs[i],
            current_share: cs[i],
        })
        .collect();
    let psi = if b.is_empty() || c.is_empty() {
        0.0
    } else {
        bins.iter()
            .map(|bin| psi_term(bin.baseline_share, bin.current_share))
            .sum()
    };
    (psi, bins)
}

/// The distinct decile edges of a sorted, clean sample of total weight `total`.
fn decile_edges(sorted: &[(f64, f64)], total: f64) -> Vec<f64> {
    let mut edges: Vec<f64> = Vec::with_capacity(9);
    let (mut k, mut cumulative) = (1u32, 0.0);
    for (i, &(v, w)) in sorted.iter().enumerate() {
        cumulative += w;
        if sorted.get(i + 1).is_some_and(|next| next.0 == v) {
            continue; // the share at v counts all of v's pairs
        }
        while k <= 9 && cumulative / total > f64::from(k) / 10.0 {
            if edges.last() != Some(&v) {
                edges.push(v);
            }
            k += 1;
        }
    }
    edges
}

// ------------------------------------------------------------------------------ special functions

/// Survival function of the chi-square distribution with `dof` degrees of freedom,
/// `Q(dof/2, x/2)` (the regularized upper incomplete gamma function): `scipy.stats.chi2.sf(x,
/// dof)`. 1 for `x <= 0`; NaN for a NaN
/// argument or `dof <= 0`.
pub fn chi2_sf(x: f64, dof: f64) -> f64 {
    gamma_q(0.5 * dof, 0.5 * x)
}

/// Survival function of the Kolmogorov distribution (the limit law of `sqrt(n) D_n`),
/// `P(K > x) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2)`: `scipy.special.kolmogorov(x)`. 1 for
/// `x <= 0`, NaN for NaN.
///
/// As in SciPy, for `x <= 0.82` the alternating series converges slowly and the CDF comes from
/// the Jacobi theta form `sqrt(2 pi)/x sum_{k>=1} exp(-(2k-1)^2 pi^2 / (8 x^2))` (the survival
/// function is then at least 0.51, so `1 - cdf` loses nothing); above, the alternating series
/// gives the survival function directly, with full relative precision down to underflow.
/// Both series are summed until the next term is below 1e-17 of the sum (a handful of terms).
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x <= 0.82 {
        // exp(-(2k-1)^2 a) = exp(-a) * exp(-8a)^(k(k-1)/2), a = pi^2 / (8 x^2).
        let a = PI * PI / (8.0 * x * x);
        let u = (-a).exp();
        if u == 0.0 {
            return 1.0; // cdf < 1e-300
        }
        let u8 = (-8.0 * a).exp();
        let (mut sum, mut k) = (1.0, 2u32);
        loop {
            let term = u8.powi((k * (k - 1) / 2) as i32);
            sum += term;
            if term < 1e-17 * sum || k > 20 {
                break;
            }
            k += 1;
        }
        let cdf = (2.0 * PI).sqrt() / x * u * sum;
        1.0 - cdf
    } else {
        let (mut sum, mut sign, mut k) = (0.0, 1.0, 1u32);
        loop {
            let kf = f64::from(k);
            let term = (-2.0 * kf * kf * x * x).exp();
            sum += sign * term;
            if term < 1e-17 * sum || k > 40 {
                break;
            }
            sign = -sign;
            k += 1;
        }
        2.0 * sum
    }
}

/// Series and continued fractions stop when a step changes the result by less than this.
const EPS: f64 = 1e-17;
/// A bound on series and continued-fraction steps; both need O(sqrt(a)) steps, so this is only
/// reached for `a` beyond ~1e10 (a chi-square with billions of categories), where the result
/// keeps the last estimate.
const MAX_STEPS: usize = 1_000_000;

/// The regularized upper incomplete gamma function `Q(a, x) = Gamma(a, x) / Gamma(a)` for
/// `a > 0`, `x >= 0` (Numerical Recipes' method): below `x = a + 1` the series for `P = 1 - Q`
/// (where `Q > 0.08`, so `1 - P` keeps its relative precision), above it the continued fraction
/// for `Q` by the modified Lentz method, which keeps full relative precision down to underflow.
/// Both are scaled by `x^a e^-x / Gamma(a)` from [`ln_gamma_prefix`].
fn gamma_q(a: f64, x: f64) -> f64 {
    if x.is_nan() || a.is_nan() || a <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    let ln_prefix = ln_gamma_prefix(a, x);
    if x < a + 1.0 {
        let (mut ap, mut term) = (a, 1.0 / a);
        let mut sum = term;
        for _ in 0..MAX_STEPS {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term < sum * EPS {
                break;
            }
        }
        (1.0 - sum * ln_prefix.exp()).clamp(0.0, 1.0)
    } else {
        if ln_prefix < -800.0 {
            return 0.0; // the fraction is below 1, so Q underflows
        }
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a; // >= 2 here
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..MAX_STEPS {
            let i = i as f64;
            let an = -i * (i - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < EPS {
                break;
            }
        }
        (ln_prefix.exp() * h).clamp(0.0, 1.0)
    }
}

/// `ln(x^a e^-x / Gamma(a))` for `a > 0`, `x > 0`. For `a >= 10` it is written as
/// `-a (u - ln(1+u)) + ln(a / 2 pi)/2 - S(a)` with `u = (x - a)/a` and `S` the Stirling series
/// remainder, which avoids subtracting the large, nearly equal `a ln x - x` and `ln Gamma(a)`
/// (their rounding would cost ~1e-13 relative at a p-value of 1e-300 with hundreds of
/// degrees of freedom).
fn ln_gamma_prefix(a: f64, x: f64) -> f64 {
    if a < 10.0 {
        a * x.ln() - x - ln_gamma(a)
    } else {
        let u = (x - a) / a;
        -a * log1pmx(u) + 0.5 * (a / (2.0 * PI)).ln() - stirling_remainder(a)
    }
}

/// `u - ln(1 + u)` for `u > -1`, >= 0, accurate near 0: for `-0.5 <= u <= 1` through
/// `ln(1+u) = 2 atanh(s)`, `s = u / (2 + u)`, `|s| <= 1/3`, which gives
/// `u - ln(1+u) = s u - 2 (s^3/3 + s^5/5 + ...)`.
fn log1pmx(u: f64) -> f64 {
    if !(-0.5..=1.0).contains(&u) {
        return u - u.ln_1p();
    }
    let s = u / (2.0 + u);
    let s2 = s * s;
    let (mut power, mut tail, mut k) = (s * s2, 0.0, 3.0);
    loop {
        let term = power / k;
        tail += term;
        if term.abs() <= EPS * tail.abs() {
            break;
        }
        power *= s2;
        k += 2.0;
    }
    s * u - 2.0 * tail
}

/// `ln Gamma(a) - ((a - 1/2) ln a - a + ln(2 pi)/2)` for `a >= 10`: the Stirling series to the
/// `a^-15` term, whose first omitted term is below 2e-18.
fn stirling_remainder(a: f64) -> f64 {
    // B_2k / (2k (2k - 1)), k = 1..8.
    const C: [f64; 8] = [
        1.0 / 12.0,
        -1.0 / 360.0,
        1.0 / 1260.0,
        -1.0 / 1680.0,
        1.0 / 1188.0,
        -691.0 / 360_360.0,
        1.0 / 156.0,
        -3617.0 / 122_400.0,
    ];
    let r = 1.0 / (a * a);
    // Horner in 1/a^2, smallest terms first.
    C.iter().rev().fold(0.0, |acc, &c| acc * r + c) / a
}

/// `ln Gamma(a)` for `a > 0`: the Stirling series for `a >= 10`; below, shifted up by the
/// recurrence `Gamma(a) = Gamma(a + n) / (a (a+1) ... (a+n-1))`. Within about 2e-15 absolute
/// (the rounding of the Stirling terms near 20), i.e. 2e-15 relative on the p-values.
fn ln_gamma(a: f64) -> f64 {
    if a >= 10.0 {
        return (a - 0.5) * a.ln() - a + 0.5 * (2.0 * PI).ln() + stirling_remainder(a);
    }
    let (mut shifted, mut product) = (a, 1.0);
    while shifted < 10.0 {
        product *= shifted;
        shifted += 1.0;
    }
    ln_gamma(shifted) - product.ln()
}

/// `h(u) = (1+u) ln(1+u) - u` for `u >= -1`, >= 0 (`q h((p-q)/q) = p ln(p/q) - p + q`): the
/// series `sum_{n>=2} (-1)^n u^n / (n (n-1))` for `|u| < 0.25`, which avoids the cancellation of
/// the closed form near 0.
fn xlnx_excess(u: f64) -> f64 {
    if u <= -1.0 {
        return 1.0;
    }
    if u.abs() >= 0.25 {
        return (1.0 + u) * u.ln_1p() - u;
    }
    let (mut power, mut sum, mut n) = (u * u, 0.0, 2.0);
    loop {
        let term = power / (n * (n - 1.0));
        sum += term;
        if term.abs() <= EPS * sum {
            break;
        }
        power *= -u;
        n += 1.0;
    }
    sum
}

/// `g(u) = (1+u) ln(1+u) + (1-u) ln(1-u)` for `|u| <= 1`, >= 0, `g(±1) = 2 ln 2`: the series
/// `sum_{k>=1} u^2k / (k (2k - 1))` for `|u| < 0.5`, where the closed form cancels.
fn js_term(u: f64) -> f64 {
    if u.abs() >= 1.0 {
        return 2.0 * LN_2;
    }
    if u.abs() >= 0.5 {
        return (1.0 + u) * u.ln_1p() + (1.0 - u) * (-u).ln_1p();
    }
    let u2 = u * u;
    let (mut power, mut sum, mut k) = (u2, 0.0, 1.0);
    loop {
        let term = power / (k * (2.0 * k - 1.0));
        sum += term;
        if term <= EPS * sum {
            break;
        }
        power *= u2;
        k += 1.0;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const CATEGORICAL: &str = include_str!("../../tests/fixtures/drift/categorical.json");
    const NUMERIC: &str = include_str!("../../tests/fixtures/drift/numeric.json");
    const SPECIAL: &str = include_str!("../../tests/fixtures/drift/special.json");

    /// `|actual - expected| <= max(rel |expected|, abs)`.
    #[track_caller]
    fn assert_close(what: &str, actual: f64, expected: f64, rel: f64, abs: f64) {
        let err = (actual - expected).abs();
        assert!(
            err <= abs.max(rel * expected.abs()) || actual == expected,
            "{what}: got {actual:e}, expected {expected:e} (error {err:e}, relative {:e})",
            err / expected.abs()
        );
    }

    /// A probability: relative 1e-9 above 1e-300, absolute 1e-300 below (down there SciPy and
    /// this module are both in or near the subnormal range).
    #[track_caller]
    fn assert_p(what: &str, actual: f64, expected: f64) {
        assert_close(what, actual, expected, 1e-9, 1e-300);
    }

    fn counts(v: &Value) -> Counts {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
            .collect()
    }

    fn f(v: &Value) -> f64 {
        match v {
            Value::String(s) if s == "NaN" => f64::NAN,
            _ => v.as_f64().unwrap(),
        }
    }

    fn pairs(v: &Value) -> Vec<(f64, f64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| (f(&p[0]), f(&p[1])))
            .collect()
    }

    fn cases(json: &str) -> Vec<Value> {
        let v: Value = serde_json::from_str(json).unwrap();
        v["cases"].as_array().unwrap().clone()
    }

    fn map(pairs: &[(&str, u64)]) -> Counts {
        pairs.iter().map(|&(k, n)| (k.to_owned(), n)).collect()
    }

    #[test]
    fn categorical_fixtures() {
        let cases = cases(CATEGORICAL);
        assert!(cases.len() >= 20);
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let (b, c) = (counts(&case["baseline"]), counts(&case["current"]));
            let e = &case["expected"];
            let at = |what: &str| format!("{name}: {what}");

            // KL: against the seed's float sum (which keeps ~1e-16 absolute per term) and against
            // the exact value.
            let kl = kl_add_one(&b, &c);
            assert_close(&at("kl vs seed"), kl, f(&e["kl_add_one"]), 1e-9, 1e-15);
            assert_close(&at("kl vs exact"), kl, f(&e["kl_add_one_hp"]), 1e-12, 0.0);

            // JS: SciPy's divergence carries ~1e-16 absolute error, ~1e-8 on its square root.
            let js = js_distance(&b, &c);
            if let Some(scipy) = e["js_distance"].as_f64() {
                assert_close(&at("js vs scipy"), js, scipy, 1e-9, 1e-8);
            }
            assert_close(&at("js vs exact"), js, f(&e["js_distance_hp"]), 1e-12, 0.0);

            let psi = psi_categorical(&b, &c);
            assert_close(&at("psi vs exact"), psi, f(&e["psi_hp"]), 1e-12, 0.0);

            let chi = chi_square(&b, &c);
            assert_close(
                &at("chi2 statistic"),
                chi.statistic,
                f(&e["chi2_statistic"]),
                1e-9,
                1e-12,
            );
            assert_p(&at("chi2 p"), chi.p_value, f(&e["chi2_p_value"]));

            let (changes, new, missing) = categorical_changes(&b, &c);
            let expected: Vec<Change> = e["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| Change {
                    value: x["value"].as_str().unwrap().to_owned(),
                    baseline_share: f(&x["baseline_share"]),
                    current_share: f(&x["current_share"]),
                    delta: f(&x["delta"]),
                })
                .collect();
            // The same float operations as the script, but serde_json's default parser may be
            // an ulp off (it is not correctly rounded): 1e-15 relative.
            assert_eq!(changes.len(), expected.len(), "{name}: changes");
            for (got, want) in changes.iter().zip(&expected) {
                assert_eq!(got.value, want.value, "{name}: change order");
                for (g, w) in [
                    (got.baseline_share, want.baseline_share),
                    (got.current_share, want.current_share),
                    (got.delta, want.delta),
                ] {
                    assert_close(&at("change"), g, w, 1e-15, 0.0);
                }
            }
            let strings = |v: &Value| -> Vec<String> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect()
            };
            assert_eq!(new, strings(&e["new"]), "{name}: new");
            assert_eq!(missing, strings(&e["missing"]), "{name}: missing");
        }
    }

    #[test]
    fn numeric_fixtures() {
        let cases = cases(NUMERIC);
        assert!(cases.len() >= 15);
        for case in &cases {
            let name = case["name"].as_str().unwrap();
            let (b, c) = (pairs(&case["baseline"]), pairs(&case["current"]));
            let e = &case["expected"];
            let at = |what: &str| format!("{name}: {what}");

            let ks = ks_2samp(&b, &c);
            assert_close(
                &at("ks statistic"),
                ks.statistic,
                f(&e["ks_statistic"]),
                1e-12,
                0.0,
            );
            if let Some(expanded) = e["ks_statistic_expanded"].as_f64() {
                assert_close(&at("ks vs ks_2samp"), ks.statistic, expanded, 1e-12, 0.0);
            }
            assert_p(&at("ks p"), ks.p_value, f(&e["ks_p_value"]));

            let w = wasserstein(&b, &c);
            assert_close(&at("wasserstein"), w, f(&e["wasserstein"]), 1e-9, 1e-12);

            // numpy's mean of a constant sample may be off by an ulp: std ~1e-16 of the values.
            let scale = |s: &[(f64, f64)]| s.iter().fold(0.0f64, |m, p| m.max(p.0.abs()));
            let std_b = weighted_std(&b);
            let std_c = weighted_std(&c);
            assert_close(
                &at("std b"),
                std_b,
                f(&e["baseline_std"]),
                1e-9,
                1e-14 * scale(&b),
            );
            assert_close(
                &at("std c"),
                std_c,
                f(&e["current_std"]),
                1e-9,
                1e-14 * scale(&c),
            );

            let (psi, bins) = psi_deciles(&b, &c);
            assert_close(
                &at("psi deciles"),
                psi,
                f(&e["psi_deciles_hp"]),
                1e-12,
                1e-15,
            );
            let expected = e["bins"].as_array().unwrap();
            assert_eq!(bins.len(), expected.len(), "{name}: bins");
            for (bin, x) in bins.iter().zip(expected) {
                let lower = x["lower"].as_f64().unwrap_or(f64::NEG_INFINITY);
                let upper = x["upper"].as_f64().unwrap_or(f64::INFINITY);
                assert_eq!((bin.lower, bin.upper), (lower, upper), "{name}: bin edges");
                let bs = f(&x["baseline_share"]);
                let cs = f(&x["current_share"]);
                assert_close(&at("bin b share"), bin.baseline_share, bs, 1e-12, 1e-16);
                assert_close(&at("bin c share"), bin.current_share, cs, 1e-12, 1e-16);
            }
        }
    }

    #[test]
    fn kolmogorov_matches_scipy() {
        let v: Value = serde_json::from_str(SPECIAL).unwrap();
        let table = v["kolmogorov"].as_array().unwrap();
        assert!(table.len() > 100);
        for row in table {
            let (x, scipy, exact) = (f(&row[0]), f(&row[1]), f(&row[2]));
            let at = format!("kolmogorov({x})");
            assert_p(&at, kolmogorov_sf(x), scipy);
            assert_close(&at, kolmogorov_sf(x), exact, 1e-13, 1e-300);
        }
    }

    #[test]
    fn chi2_sf_matches_scipy() {
        let v: Value = serde_json::from_str(SPECIAL).unwrap();
        let table = v["chi2_sf"].as_array().unwrap();
        assert!(table.len() > 200);
        for row in table {
            let (x, dof, scipy, exact) = (f(&row[0]), f(&row[1]), f(&row[2]), f(&row[3]));
            let at = format!("chi2.sf({x}, {dof})");
            assert_p(&at, chi2_sf(x, dof), scipy);
            // Against mpmath: the rounding of ln(prefix) costs ~2e-16 |ln p| relative (SciPy
            // itself is up to 6e-13 off at 999 dof).
            assert_close(&at, chi2_sf(x, dof), exact, 3e-13, 1e-300);
        }
    }

    #[test]
    fn kl_two_categories_by_hand() {
        // b = {a: 3, b: 1}, c = {a: 1, b: 3}, K = 2: p = (4/6, 2/6), q = (2/6, 4/6).
        // KL = 2/3 ln 2 + 1/3 ln(1/2) = ln(2)/3.
        let kl = kl_add_one(&map(&[("a", 3), ("b", 1)]), &map(&[("a", 1), ("b", 3)]));
        assert_close("kl", kl, LN_2 / 3.0, 1e-15, 0.0);
        // One side empty: b = {}, c = {a: 2}, K = 1: p = 1/1, q = 3/3: KL 0.
        assert_eq!(kl_add_one(&Counts::new(), &map(&[("a", 2)])), 0.0);
        assert_eq!(kl_add_one(&Counts::new(), &Counts::new()), 0.0);
        // Unseen category: b = {a: 2}, c = {a: 1, b: 1}, K = 2: p = (3/4, 1/4), q = (2/4, 2/4).
        // KL = 3/4 ln(3/2) + 1/4 ln(1/2).
        let kl = kl_add_one(&map(&[("a", 2)]), &map(&[("a", 1), ("b", 1)]));
        let expected = 0.75 * 1.5f64.ln() + 0.25 * 0.5f64.ln();
        assert_close("kl unseen", kl, expected, 1e-14, 0.0);
    }

    #[test]
    fn js_psi_chi_square_by_hand() {
        let (a, b) = (map(&[("a", 1)]), map(&[("b", 1)]));
        // Disjoint supports: the maximum, sqrt(ln 2).
        assert_close("js disjoint", js_distance(&a, &b), LN_2.sqrt(), 1e-15, 0.0);
        assert_eq!(js_distance(&a, &a), 0.0);
        assert_eq!(js_distance(&a, &Counts::new()), 0.0);
        // Table [[1, 0], [0, 1]]: every expected count 1/2, statistic 4 (1/2)^2 / (1/2) = 2;
        // 1 dof: p = erfc(1).
        let chi = chi_square(&a, &b);
        assert_close("chi2 statistic", chi.statistic, 2.0, 1e-15, 0.0);
        assert_close("chi2 p", chi.p_value, 0.157_299_207_050_285_13, 1e-14, 0.0);
        let single = chi_square(&map(&[("a", 10)]), &map(&[("a", 25)]));
        assert_eq!(
            single,
            TestResult {
                statistic: 0.0,
                p_value: 1.0
            }
        );
        assert_eq!(chi_square(&a, &Counts::new()), NO_EVIDENCE);
        // Shares (1/2, 1/2) -> (3/4, 1/4): (1/4) ln(3/2) + (-1/4) ln(1/2) = ln(3)/4.
        let psi = psi_categorical(&map(&[("a", 1), ("b", 1)]), &map(&[("a", 3), ("b", 1)]));
        assert_close("psi", psi, 3f64.ln() / 4.0, 1e-15, 0.0);
        // A vanished category: shares (1/2, 1/2) -> (1, eps):
        // (1/2) ln 2 + (eps - 1/2) ln(2 eps).
        let psi = psi_categorical(&map(&[("a", 1), ("b", 1)]), &map(&[("a", 5)]));
        let expected = 0.5 * LN_2 + (PSI_EPSILON - 0.5) * (2.0 * PSI_EPSILON).ln();
        assert_close("psi vanished", psi, expected, 1e-14, 0.0);
    }

    #[test]
    fn changes_by_hand() {
        let (changes, new, missing) = categorical_changes(
            &map(&[("a", 2), ("b", 2), ("gone", 0)]),
            &map(&[("a", 1), ("c", 3), ("zero", 0)]),
        );
        let got: Vec<(&str, f64)> = changes
            .iter()
            .map(|c| (c.value.as_str(), c.delta))
            .collect();
        assert_eq!(got, [("c", 0.75), ("b", -0.5), ("a", -0.25)]);
        assert_eq!(new, ["c"]);
        assert_eq!(missing, ["b"]);
        let (changes, new, missing) = categorical_changes(&Counts::new(), &map(&[("x", 4)]));
        assert_eq!(changes[0].baseline_share, 0.0);
        assert_eq!(changes[0].current_share, 1.0);
        assert_eq!((new, missing), (vec!["x".to_owned()], vec![]));
    }

    #[test]
    fn numeric_by_hand() {
        // One value each: D = 1, n_eff = 1/2, p = K(sqrt(1/2)).
        let ks = ks_2samp(&[(1.0, 1.0)], &[(2.0, 1.0)]);
        assert_eq!(ks.statistic, 1.0);
        assert_close("ks p", ks.p_value, kolmogorov_sf(0.5f64.sqrt()), 1e-15, 0.0);
        assert_eq!(ks_2samp(&[], &[(2.0, 1.0)]), NO_EVIDENCE);
        // Weights are counts: (1, w=2) is (1, 1) twice.
        let twice = ks_2samp(&[(1.0, 2.0), (3.0, 1.0)], &[(2.0, 1.0)]);
        let expanded = ks_2samp(&[(1.0, 1.0), (3.0, 1.0), (1.0, 1.0)], &[(2.0, 1.0)]);
        assert_eq!(twice, expanded);
        assert_close("ks ties", twice.statistic, 2.0 / 3.0, 1e-15, 0.0);

        assert_eq!(wasserstein(&[(0.0, 1.0)], &[(5.0, 1.0)]), 5.0);
        // SciPy's docstring: wasserstein_distance([0, 1], [0, 1], [3, 1], [2, 2]) = 0.25.
        let w = wasserstein(&[(0.0, 3.0), (1.0, 1.0)], &[(0.0, 2.0), (1.0, 2.0)]);
        assert_close("wasserstein", w, 0.25, 1e-15, 0.0);
        assert_eq!(wasserstein(&[(1.0, 1.0)], &[]), 0.0);

        assert_eq!(weighted_std(&[(1.0, 1.0), (3.0, 1.0)]), 1.0);
        assert_eq!(weighted_std(&[(1.0, 3.0), (5.0, 1.0)]), 3f64.sqrt());
        assert_eq!(weighted_std(&[]), 0.0);
    }

    #[test]
    fn deciles_by_hand() {
        let ten: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 1.0)).collect();
        let (psi, bins) = psi_deciles(&ten, &ten);
        assert_eq!(psi, 0.0);
        assert_eq!(bins.len(), 10);
        assert_eq!(bins[0].lower, f64::NEG_INFINITY);
        assert_eq!((bins[0].upper, bins[1].lower), (1.0, 1.0));
        assert_eq!((bins[9].lower, bins[9].upper), (9.0, f64::INFINITY));
        for bin in &bins {
            assert_close("share", bin.baseline_share, 0.1, 1e-15, 0.0);
        }
        // A constant baseline: one edge, bins (-inf, 7) and [7, inf).
        let (_, bins) = psi_deciles(&[(7.0, 5.0)], &[(6.0, 1.0), (8.0, 1.0)]);
        let shape: Vec<_> = bins
            .iter()
            .map(|b| (b.lower, b.upper, b.baseline_share, b.current_share))
            .collect();
        assert_eq!(
            shape,
            [
                (f64::NEG_INFINITY, 7.0, 0.0, 0.5),
                (7.0, f64::INFINITY, 1.0, 0.5)
            ]
        );
        // Empty baseline: one bin over the line, PSI 0.
        let (psi, bins) = psi_deciles(&[], &[(1.0, 1.0)]);
        assert_eq!(psi, 0.0);
        assert_eq!(bins.len(), 1);
        assert_eq!((bins[0].baseline_share, bins[0].current_share), (0.0, 1.0));
    }

    #[test]
    fn special_functions_by_hand() {
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert_eq!(kolmogorov_sf(-1.0), 1.0);
        assert!(kolmogorov_sf(f64::NAN).is_nan());
        // Large x: 2 exp(-2 x^2) (the next term is exp(-6 x^2) smaller).
        assert_close(
            "K(6)",
            kolmogorov_sf(6.0),
            2.0 * (-72.0f64).exp(),
            1e-14,
            0.0,
        );
        // Both forms agree at the cutover.
        let (lo, hi) = (kolmogorov_sf(0.82), kolmogorov_sf(0.820_000_000_001));
        assert_close("cutover", lo, hi, 1e-11, 0.0);
        // 2 dof: Q(1, x/2) = exp(-x/2), on both sides of x = a + 1.
        // The relative error grows as ~1e-16 x/2 (the rounding of ln(prefix)).
        for x in [0.0, 1e-9, 0.5, 3.0, 4.0, 10.0, 100.0, 1000.0, 1400.0] {
            assert_close("chi2 2 dof", chi2_sf(x, 2.0), (-x / 2.0).exp(), 1e-13, 0.0);
        }
        // 1 dof: erfc(sqrt(x/2)); erfc(1) and erfc(2).
        assert_close(
            "chi2 1 dof",
            chi2_sf(2.0, 1.0),
            0.157_299_207_050_285_13,
            1e-14,
            0.0,
        );
        assert_close(
            "chi2 1 dof",
            chi2_sf(8.0, 1.0),
            0.004_677_734_981_047_266,
            1e-14,
            0.0,
        );
        assert!(chi2_sf(1.0, 0.0).is_nan());
        assert_eq!(chi2_sf(1e7, 3.0), 0.0);
        // ln Gamma: sqrt(pi), 9!, 99!.
        assert_close("lgamma(1/2)", ln_gamma(0.5), 0.5 * PI.ln(), 0.0, 3e-15);
        assert_close("lgamma(10)", ln_gamma(10.0), 362_880f64.ln(), 1e-15, 0.0);
        assert_close("lgamma(1)", ln_gamma(1.0), 0.0, 0.0, 3e-15);
        assert_close(
            "lgamma(100)",
            ln_gamma(100.0),
            359.134_205_369_575_4,
            1e-15,
            0.0,
        );
        // u - ln(1+u) on both sides of the series' range.
        for u in [-0.9, -0.5, -1e-8, 1e-8, 0.3, 1.0, 5.0] {
            let direct = u - f64::ln_1p(u);
            let tol = if u.abs() < 1e-3 { 1e-7 } else { 1e-14 };
            assert_close("log1pmx", log1pmx(u), direct, tol, 0.0);
        }
        assert_close("log1pmx small", log1pmx(1e-8), 0.5e-16, 1e-7, 0.0);
    }

    #[test]
    fn bad_input_does_not_panic() {
        let bad = [
            (f64::NAN, 1.0),
            (1.0, f64::NAN),
            (f64::INFINITY, 1.0),
            (2.0, -1.0),
            (3.0, 0.0),
            (-0.0, 1.0),
            (0.0, 1.0),
        ];
        let ks = ks_2samp(&bad, &[(0.0, 1.0)]);
        assert_eq!(
            ks,
            TestResult {
                statistic: 0.0,
                p_value: 1.0
            }
        );
        assert_eq!(wasserstein(&bad, &[(0.0, 2.0)]), 0.0);
        assert_eq!(weighted_std(&bad), 0.0);
        let (psi, bins) = psi_deciles(&bad, &bad);
        assert_eq!((psi, bins.len()), (0.0, 2));
        let nothing = [(f64::NAN, 1.0)];
        assert_eq!(ks_2samp(&nothing, &nothing), NO_EVIDENCE);
        assert_eq!(psi_deciles(&nothing, &nothing).0, 0.0);
        // Counts near u64::MAX neither overflow nor produce NaN.
        let huge = map(&[("a", u64::MAX), ("b", u64::MAX)]);
        let small = map(&[("a", 1), ("b", 3)]);
        assert!(kl_add_one(&huge, &small).is_finite());
        assert!(js_distance(&huge, &small).is_finite());
        assert!(chi_square(&huge, &small).p_value.is_finite());
        assert!(psi_categorical(&huge, &small).is_finite());
    }

    #[test]
    fn symmetric_where_defined() {
        let (b, c) = (
            map(&[("a", 5), ("b", 9), ("c", 1)]),
            map(&[("a", 7), ("c", 4), ("d", 2)]),
        );
        assert_eq!(js_distance(&b, &c), js_distance(&c, &b));
        let psi = psi_categorical(&b, &c);
        assert_close("psi", psi, psi_categorical(&c, &b), 1e-15, 0.0);
        assert_close(
            "chi2",
            chi_square(&b, &c).statistic,
            chi_square(&c, &b).statistic,
            1e-15,
            0.0,
        );
        let (x, y) = ([(1.0, 2.0), (4.0, 1.0)], [(2.0, 1.0), (3.0, 3.0)]);
        assert_eq!(ks_2samp(&x, &y), ks_2samp(&y, &x));
        assert_close("w", wasserstein(&x, &y), wasserstein(&y, &x), 1e-15, 0.0);
    }
}
