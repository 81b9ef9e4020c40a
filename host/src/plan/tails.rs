//! Log-space arithmetic and the exact tails the bounds are made of: hypergeometric (a
//! client's corrupted or surviving neighbours) and binomial (the colluders self-selection can
//! admit).

use std::f64::consts::LN_2;

/// `ln(m!)`: exact product for small `m`, Stirling's series otherwise (error < 1e-14).
pub(super) fn ln_factorial(m: u64) -> f64 {
    if m < 18 {
        // 17! < 2^53, so the product is exact.
        let product: f64 = (2..=m).map(|i| i as f64).product();
        return product.ln();
    }
    let x = m as f64;
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    // 1/(12x) - 1/(360x^3) + 1/(1260x^5) - 1/(1680x^7)
    let series = inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 / 1680.0)));
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + series
}

/// `ln C(a, b)`, `-inf` when `b > a`.
pub(super) fn ln_choose(a: u64, b: u64) -> f64 {
    if b > a {
        return f64::NEG_INFINITY;
    }
    ln_factorial(a) - ln_factorial(b) - ln_factorial(a - b)
}

/// `ln (a)_j = ln(a (a-1) ... (a-j+1))`, `-inf` when `j > a`.
pub(super) fn ln_falling(a: u64, j: u64) -> f64 {
    if j > a {
        return f64::NEG_INFINITY;
    }
    ln_factorial(a) - ln_factorial(a - j)
}

/// `ln(e^a + e^b)` without overflow.
pub(super) fn ln_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if hi == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// Relative size below which the rest of a tail is dropped.
pub(super) const TAIL_REL_TOL: f64 = 1e-16;

/// Number of marked items among `draws` taken without replacement from `population`
/// items of which `marked` are marked.
#[derive(Clone, Copy, Debug)]
pub(super) struct Hypergeometric {
    population: u64,
    marked: u64,
    draws: u64,
}

impl Hypergeometric {
    /// Clamps `marked` and `draws` to the population.
    pub(super) fn new(population: u64, marked: u64, draws: u64) -> Self {
        Self {
            population,
            marked: marked.min(population),
            draws: draws.min(population),
        }
    }

    pub(super) fn min_value(&self) -> u64 {
        (self.draws + self.marked).saturating_sub(self.population)
    }

    pub(super) fn max_value(&self) -> u64 {
        self.draws.min(self.marked)
    }

    /// A most likely value, clamped to the support.
    pub(super) fn mode(&self) -> u64 {
        let num = u128::from(self.draws + 1) * u128::from(self.marked + 1);
        let m = (num / u128::from(self.population + 2)) as u64;
        m.clamp(self.min_value(), self.max_value())
    }

    pub(super) fn ln_pmf(&self, x: u64) -> f64 {
        if x < self.min_value() || x > self.max_value() {
            return f64::NEG_INFINITY;
        }
        ln_choose(self.marked, x) + ln_choose(self.population - self.marked, self.draws - x)
            - ln_choose(self.population, self.draws)
    }

    /// `pmf(x + 1) / pmf(x)` for `x` in `[min, max)`; decreasing in `x`.
    pub(super) fn ratio_up(&self, x: u64) -> f64 {
        let (big_n, big_k, k, x) = (
            self.population as f64,
            self.marked as f64,
            self.draws as f64,
            x as f64,
        );
        ((big_k - x) * (k - x)) / ((x + 1.0) * (big_n - big_k - k + x + 1.0))
    }

    /// `pmf(x - 1) / pmf(x)` for `x` in `(min, max]`; decreasing as `x` decreases.
    pub(super) fn ratio_down(&self, x: u64) -> f64 {
        let (big_n, big_k, k, x) = (
            self.population as f64,
            self.marked as f64,
            self.draws as f64,
            x as f64,
        );
        (x * (big_n - big_k - k + x)) / ((big_k - x + 1.0) * (k - x + 1.0))
    }

    /// `ln P[X >= from]` for `from >= mode`: terms only shrink going right.
    pub(super) fn ln_sum_rightward(&self, from: u64) -> f64 {
        let end = self.max_value();
        let (mut x, mut term, mut sum) = (from, 1.0_f64, 1.0_f64);
        while x < end {
            let r = self.ratio_up(x);
            // Later ratios are at most r, so the rest is at most term * r / (1 - r).
            if r < 1.0 && term * r <= (1.0 - r) * sum * TAIL_REL_TOL {
                break;
            }
            term *= r;
            sum += term;
            x += 1;
        }
        self.ln_pmf(from) + sum.ln()
    }

    /// `ln P[X <= from]` for `from <= mode`: terms only shrink going left.
    pub(super) fn ln_sum_leftward(&self, from: u64) -> f64 {
        let end = self.min_value();
        let (mut x, mut term, mut sum) = (from, 1.0_f64, 1.0_f64);
        while x > end {
            let r = self.ratio_down(x);
            if r < 1.0 && term * r <= (1.0 - r) * sum * TAIL_REL_TOL {
                break;
            }
            term *= r;
            sum += term;
            x -= 1;
        }
        self.ln_pmf(from) + sum.ln()
    }

    /// `ln P[X >= t]`.
    pub(super) fn ln_at_least(&self, t: u64) -> f64 {
        if t <= self.min_value() {
            return 0.0;
        }
        if t > self.max_value() {
            return f64::NEG_INFINITY;
        }
        if t >= self.mode() {
            self.ln_sum_rightward(t)
        } else {
            ln_one_minus(self.ln_sum_leftward(t - 1))
        }
    }

    /// `ln P[X <= x]`.
    pub(super) fn ln_at_most(&self, x: u64) -> f64 {
        if x >= self.max_value() {
            return 0.0;
        }
        if x < self.min_value() {
            return f64::NEG_INFINITY;
        }
        if x <= self.mode() {
            self.ln_sum_leftward(x)
        } else {
            ln_one_minus(self.ln_sum_rightward(x + 1))
        }
    }
}

/// `ln(1 - e^a)` for the complement of a tail that does not contain the mode (so the
/// complement holds at least the mode's mass); rounding to 1 is read as probability 1.
pub(super) fn ln_one_minus(ln_p: f64) -> f64 {
    let p = ln_p.exp();
    if p < 1.0 { (-p).ln_1p() } else { 0.0 }
}

/// The most of `colluders` enrolled identities that can be in a cohort whose members each
/// became eligible independently with probability `rate` (verifiable self-selection; see
/// `crate::selection`), except with probability at most `2^-security_bits`: the smallest `a`
/// with `P[X > a] <= 2^-σ` for `X ~ Binomial(colluders, rate)`, summed exactly in log space.
/// A rate of 1 (no selection) gives `colluders`.
///
/// ```
/// use secagg_host::plan::colluders_in_cohort;
/// assert_eq!(colluders_in_cohort(50, 1.0, 40), 50);
/// assert_eq!(colluders_in_cohort(50_000, 0.0, 40), 0);
/// // 5% of a million enrolled devices, one in a thousand eligible: about 50 expected,
/// // and well under 150 except with probability 2^-40.
/// let a = colluders_in_cohort(50_000, 0.001, 40);
/// assert!((90..150).contains(&a), "{a}");
/// ```
pub fn colluders_in_cohort(colluders: u64, rate: f64, security_bits: u32) -> u64 {
    if rate.is_nan() || rate <= 0.0 || colluders == 0 {
        return 0;
    }
    if rate >= 1.0 {
        return colluders;
    }
    let target = -f64::from(security_bits) * LN_2;
    let (ln_p, ln_q) = (rate.ln(), (-rate).ln_1p());
    let c = colluders;
    // Walk down from X = c, adding pmf(j) to the upper tail while it stays within budget;
    // pmf(j - 1) / pmf(j) = j / (c - j + 1) * q / p.
    let mut ln_pmf = c as f64 * ln_p;
    let mut ln_tail = f64::NEG_INFINITY;
    let mut j = c;
    while j > 0 {
        let with = ln_add_exp(ln_tail, ln_pmf);
        if with > target {
            return j; // P[X > j] fits the budget, P[X >= j] does not
        }
        ln_tail = with;
        ln_pmf += (j as f64).ln() - ((c - j + 1) as f64).ln() + ln_q - ln_p;
        j -= 1;
    }
    0
}

/// The fewest committee members whose nonces a graph seed must hold so that at least one of
/// them is not a colluder, except with probability at most `2^-security_bits`: the smallest
/// `q >= 1` with `P[X >= q] <= 2^-σ` for `X ~ Hypergeometric(cohort, colluders, committee)`
/// (a committee of `committee` members drawn from a cohort of `cohort` holding `colluders`).
/// At most `min(committee, colluders) + 1`: a quorum of one more than there are colluders
/// always holds an honest member. A result above `committee` cannot be met.
///
/// ```
/// use secagg_host::plan::committee_quorum;
/// // A committee that is the whole cohort needs one more than the colluders.
/// assert_eq!(committee_quorum(12, 2, 12, 81), 3);
/// // 64 of a thousand with 50 colluders: far fewer than 64 are needed.
/// let q = committee_quorum(1000, 50, 64, 81);
/// assert!((20..40).contains(&q), "{q}");
/// ```
pub fn committee_quorum(cohort: u64, colluders: u64, committee: u64, security_bits: u32) -> u64 {
    let h = Hypergeometric::new(cohort, colluders, committee);
    let target = -f64::from(security_bits) * LN_2;
    let mut q = 1;
    while q <= h.max_value() && h.ln_at_least(q) > target {
        q += 1;
    }
    q
}
