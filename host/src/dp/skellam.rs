//! Skellam noise, Poisson(λ) − Poisson(λ), drawn by inverse transform from an integer table.
//!
//! # The table
//!
//! λ is a fixed-point number, `L / 2^32` with `L` a `u64` (so every party computes the same
//! table from the same configuration). Around the mode `m = ⌊λ⌋` the Poisson weights are
//! written as integers `q̂(j)`: `q̂(m) = A`, then outward, each step rounding down,
//!
//! * right: `q̂(j + 1) = ⌊q̂(j) · L / ((j + 1) · 2^32)⌋`, the exact ratio `λ / (j + 1) ≤ 1`,
//! * left: `q̂(j − 1) = ⌊q̂(j) · j · 2^32 / L⌋`, the exact ratio `j / λ ≤ 1`,
//!
//! until a weight rounds to zero. `A` is picked (from a floating-point estimate of the sum)
//! so that the total `Q̂ = Σ q̂(j)` lies just below 2^121. A draw takes a uniform 121-bit
//! integer `u`, rejects it when `u ≥ Q̂` (probability below 2^-19), and returns the
//! smallest `j` whose running sum exceeds `u`: so the draw follows `q̂ / Q̂` **exactly**, with
//! no floating point in the sampling path. The top 64 bits of `u` decide almost every draw
//! (through a guide table, Chen and Asau's indexed search, whose buckets mostly lie inside one
//! entry and answer without touching the table); the low 57 bits are drawn only when the top
//! bits tie with a boundary.
//!
//! # How far from Poisson(λ) it is, and why that bound holds
//!
//! Write `q(j) = A · P[X = j] / P[X = m]` for the exact weights. Each step multiplies by an
//! exact ratio `r ≤ 1` and rounds down once, so the shortfall `e(j) = q(j) − q̂(j) ≥ 0` obeys
//! `e(j ± 1) ≤ r · e(j) + 1 ≤ e(j) + 1`: at distance `k` from the mode it is at most `k`.
//! Past the last nonzero weight on the right (index `j_R`) the true weight is at most
//! `K_R + 1` and every later ratio is at most `λ / (j_R + 2) < 1`, so the right tail weighs at
//! most `(K_R + 1) / (1 − λ / (j_R + 2))`; the left tail likewise, with `(j_L − 1) / λ`. For
//! nonnegative vectors `‖a/|a| − b/|b|‖₁ ≤ 2‖a − b‖₁ / |a|`, so the total-variation distance
//! between the table and Poisson(λ) is at most
//!
//! ```text
//! TV ≤ (K_L (K_L + 1) / 2 + K_R (K_R + 1) / 2 + tail_L + tail_R) / Q̂
//! ```
//!
//! which [`PoissonTable::tv_bound`] computes for the table at hand: about 2^-100 for small λ
//! and below 2^-76 at the largest λ one table holds (2^31; a test checks both). A Skellam draw uses two
//! independent Poisson draws, so its distance is at most twice that, and a vector of `d`
//! draws at most `d` times the per-draw bound ([`Skellam::tv_bound`]). A mechanism within
//! total variation η of an (ε, δ)-DP one is (ε, δ + (1 + e^ε) η)-DP; the planner adds that
//! term to δ.
//!
//! λ above 2^31 (a per-client variance above 2^32: no room for it in a sum mod 2^32, but a
//! wider modulus can hold it, up to [`MAX_VARIANCE`]) is split into `p` equal parts, each
//! rounded up to the fixed-point grid, and `p` draws are summed: a sum of independent Poisson variables is Poisson, so this adds at
//! least the noise asked for, at `p` times the cost.
//!
//! Timing: a draw reads table entries at an index that depends on the noise, so it is not
//! constant time; an attacker who can watch this process's cache could learn about the
//! noise. The noise is otherwise treated as secret (see [`super`]).

use rand_core::Rng;
use secagg_engine::Lane;

/// Fractional bits of λ in its fixed-point form.
pub const LAMBDA_FRAC_BITS: u32 = 32;
/// The largest λ one table holds: 2^31 (larger means are split, see the module docs).
pub const MAX_TABLE_LAMBDA: f64 = 2_147_483_648.0;
/// The largest per-client noise variance μ = 2λ a configuration may ask for: 2^40.
pub const MAX_VARIANCE: f64 = 1_099_511_627_776.0;

/// Bits of the uniform integer a draw compares with the running sums.
const SUM_BITS: u32 = 121;
/// Of those, the bits below the 64 that come from the first word.
const LOW_BITS: u32 = SUM_BITS - 64;
/// A guide entry's flag: every uniform in its bucket falls in the entry it names.
const DECIDED: u32 = 1 << 31;

/// Why a noise distribution cannot be built.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NoiseError {
    /// The variance is not a finite number in (0, [`MAX_VARIANCE`]].
    #[error("noise variance {0} is outside (0, 2^40]")]
    Variance(f64),
    /// λ rounds to zero on the fixed-point grid.
    #[error("Poisson mean {0} is below the fixed-point grid (2^-32)")]
    TooSmall(f64),
    /// The table's total left the range the sampler needs (an internal check).
    #[error("Poisson table for λ = {0} failed its internal check")]
    Internal(f64),
}

/// A Poisson(λ) table for λ = `L / 2^32`, drawn from exactly as the module docs say.
#[derive(Clone, Debug)]
pub struct PoissonTable {
    lambda: u64,
    /// The outcome of entry 0.
    first: u64,
    /// The top 64 of the 121 bits of each running sum (entries in increasing outcome).
    top: Vec<u64>,
    /// The low 57 bits of each running sum.
    low: Vec<u64>,
    /// `guide[i]`: the first entry whose top word is at least `i << shift`, with
    /// [`DECIDED`] set when that entry's interval holds the whole bucket.
    guide: Vec<u32>,
    shift: u32,
    tv: f64,
}

impl PoissonTable {
    /// The table for λ = `lambda / 2^32` (0 < λ ≤ 2^31).
    pub fn new(lambda: u64) -> Result<Self, NoiseError> {
        let real = lambda as f64 / 2f64.powi(LAMBDA_FRAC_BITS as i32);
        if lambda == 0 {
            return Err(NoiseError::TooSmall(real));
        }
        if real > MAX_TABLE_LAMBDA {
            return Err(NoiseError::Variance(2.0 * real));
        }
        let mode = lambda >> LAMBDA_FRAC_BITS;
        let anchor = anchor_weight(real, mode);
        // Right of the mode, then left of it (built outward, reversed afterwards).
        let mut right = vec![anchor];
        let mut j = mode;
        loop {
            let prev = right[right.len() - 1];
            let next = mul_div(prev, lambda, (j + 1) << LAMBDA_FRAC_BITS);
            if next == 0 {
                break;
            }
            right.push(next);
            j += 1;
        }
        let mut left = Vec::new();
        let mut j = mode;
        let mut prev = anchor;
        while j > 0 {
            let next = mul_div(prev, j << LAMBDA_FRAC_BITS, lambda);
            if next == 0 {
                break;
            }
            left.push(next);
            prev = next;
            j -= 1;
        }
        let k_left = left.len() as u64;
        let k_right = right.len() as u64 - 1;
        let first = mode - k_left;
        let last = mode + k_right;
        left.reverse();
        left.extend_from_slice(&right);
        drop(right);
        let weights = left;
        let mut sum = 0u128;
        let mut top = Vec::with_capacity(weights.len());
        let mut low = Vec::with_capacity(weights.len());
        for w in &weights {
            sum = sum.checked_add(*w).ok_or(NoiseError::Internal(real))?;
            top.push((sum >> LOW_BITS) as u64);
            low.push((sum as u64) & ((1u64 << LOW_BITS) - 1));
        }
        // Q̂ in [2^120, 2^121): accepted draws are at least half of all.
        if sum >> SUM_BITS != 0 || sum >> (SUM_BITS - 1) == 0 {
            return Err(NoiseError::Internal(real));
        }
        let tv = tv_bound(real, first, last, k_left, k_right, sum);
        // About two buckets per entry: most buckets lie inside one entry's interval and
        // decide the draw from the guide alone.
        let bits = (usize::BITS - top.len().leading_zeros() + 1).min(25);
        let shift = 64 - bits;
        let mut guide = Vec::with_capacity(1 << bits);
        let mut at = 0usize;
        for i in 0..(1u64 << bits) {
            let floor = i << shift;
            while at < top.len() && top[at] < floor {
                at += 1;
            }
            let next = (u128::from(i) + 1) << shift;
            let decided = at < top.len() && u128::from(top[at]) >= next;
            guide.push(at as u32 | if decided { DECIDED } else { 0 });
        }
        Ok(Self {
            lambda,
            first,
            top,
            low,
            guide,
            shift,
            tv,
        })
    }

    /// λ · 2^32.
    pub fn lambda(&self) -> u64 {
        self.lambda
    }

    /// The outcomes the table can give: `first..=last`.
    pub fn support(&self) -> (u64, u64) {
        (self.first, self.first + self.top.len() as u64 - 1)
    }

    /// The probability the table gives outcome `j` (for tests and diagnostics; f64).
    pub fn probability(&self, j: u64) -> f64 {
        let (first, last) = self.support();
        if j < first || j > last {
            return 0.0;
        }
        let i = (j - first) as usize;
        let at = |i: usize| (u128::from(self.top[i]) << LOW_BITS) | u128::from(self.low[i]);
        let below = if i == 0 { 0 } else { at(i - 1) };
        let total = at(self.top.len() - 1);
        (at(i) - below) as f64 / total as f64
    }

    /// An upper bound on the total-variation distance between this table and Poisson(λ)
    /// (see the module docs).
    pub fn tv_bound(&self) -> f64 {
        self.tv
    }

    /// One draw.
    #[inline]
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        loop {
            let t = rng.next_u64();
            if let Some(k) = self.lookup(t, || rng.next_u64() >> (64 - LOW_BITS)) {
                return self.first + k as u64;
            }
        }
    }

    /// The entry a uniform `u = t · 2^57 + l` falls in (the smallest whose running sum
    /// exceeds it), or `None` when `u ≥ Q̂` (rejected). `low` gives `l`, drawn only when `t`
    /// ties with a running sum's top word.
    #[inline]
    fn lookup(&self, t: u64, mut low: impl FnMut() -> u64) -> Option<usize> {
        let g = self.guide[(t >> self.shift) as usize];
        if g & DECIDED != 0 {
            return Some((g & !DECIDED) as usize);
        }
        let n = self.top.len();
        let mut k = g as usize;
        while k < n && self.top[k] < t {
            k += 1;
        }
        if k == n {
            return None;
        }
        if self.top[k] > t {
            return Some(k);
        }
        let l = low();
        while k < n && self.top[k] == t && self.low[k] <= l {
            k += 1;
        }
        (k < n).then_some(k)
    }
}

/// `A`, the mode's weight: chosen so that the table's total lands just under 2^121, from a
/// floating-point estimate of Σ P[X = j] / P[X = m] (its error, about 10^-10 relative, is far
/// inside the 2^-20 margin; [`PoissonTable::new`] checks the result).
fn anchor_weight(lambda: f64, mode: u64) -> u128 {
    let mut ratio_sum = 1.0f64;
    let mut v = 1.0f64;
    let mut j = mode as f64;
    while v > 1e-45 {
        v *= lambda / (j + 1.0);
        ratio_sum += v;
        j += 1.0;
    }
    let mut v = 1.0f64;
    let mut j = mode as f64;
    while j > 0.0 && v > 1e-45 {
        v *= j / lambda;
        ratio_sum += v;
        j -= 1.0;
    }
    let target = 2f64.powi(SUM_BITS as i32) * (1.0 - 2f64.powi(-20)) / ratio_sum;
    (target as u128).max(1)
}

/// ⌊a · b / c⌋ for a result that fits 128 bits (the callers' ratios b / c are at most 1).
fn mul_div(a: u128, b: u64, c: u64) -> u128 {
    let (a1, a0) = ((a >> 64) as u64, a as u64);
    let lo = u128::from(a0) * u128::from(b);
    let hi = u128::from(a1) * u128::from(b) + (lo >> 64);
    // a · b = hi · 2^64 + (lo mod 2^64), hi < 2^128: three 64-bit limbs.
    let limbs = [(hi >> 64) as u64, hi as u64, lo as u64];
    let c = u128::from(c);
    let mut rem = 0u128;
    let mut quotient = 0u128;
    for limb in limbs {
        let cur = (rem << 64) | u128::from(limb);
        quotient = (quotient << 64) | (cur / c);
        rem = cur % c;
    }
    quotient
}

/// The module docs' bound on the table's distance from Poisson(λ), rounded up generously
/// (the terms are exact integers up to f64 rounding; the factor covers that rounding).
fn tv_bound(lambda: f64, first: u64, last: u64, k_left: u64, k_right: u64, total: u128) -> f64 {
    let kl = k_left as f64;
    let kr = k_right as f64;
    let inside = kl * (kl + 1.0) / 2.0 + kr * (kr + 1.0) / 2.0;
    let tail_right = (kr + 1.0) / (1.0 - lambda / (last as f64 + 2.0));
    let tail_left = if first == 0 {
        0.0
    } else {
        (kl + 1.0) / (1.0 - (first as f64 - 1.0) / lambda)
    };
    (inside + tail_right + tail_left) / total as f64 * (1.0 + 1e-9)
}

/// Skellam noise with variance μ per draw: the difference of two Poisson(μ/2) draws, the
/// mean split into equal parts above 2^31 (module docs).
#[derive(Clone, Debug)]
pub struct Skellam {
    table: PoissonTable,
    parts: u32,
    variance: f64,
}

impl Skellam {
    /// Noise of variance at least `variance` (0 < μ ≤ 2^40): λ = μ / 2 rounded up onto the
    /// 2^-32 grid, per part.
    pub fn new(variance: f64) -> Result<Self, NoiseError> {
        if !(variance.is_finite() && variance > 0.0 && variance <= MAX_VARIANCE) {
            return Err(NoiseError::Variance(variance));
        }
        let lambda = variance / 2.0;
        let parts = (lambda / MAX_TABLE_LAMBDA).ceil().max(1.0);
        let per_part = (lambda / parts * 2f64.powi(LAMBDA_FRAC_BITS as i32)).ceil();
        let table = PoissonTable::new(per_part as u64)?;
        Ok(Self {
            table,
            parts: parts as u32,
            variance,
        })
    }

    /// The variance asked for.
    pub fn variance(&self) -> f64 {
        self.variance
    }

    /// The variance each draw really has (at least [`variance`](Self::variance): λ is
    /// rounded up).
    pub fn actual_variance(&self) -> f64 {
        2.0 * f64::from(self.parts) * self.table.lambda() as f64
            / 2f64.powi(LAMBDA_FRAC_BITS as i32)
    }

    /// Poisson draws summed per side.
    pub fn parts(&self) -> u32 {
        self.parts
    }

    /// The Poisson table each part draws from.
    pub fn table(&self) -> &PoissonTable {
        &self.table
    }

    /// An upper bound on the total-variation distance of one draw from the exact Skellam
    /// distribution of [`actual_variance`](Self::actual_variance): `2 · parts` Poisson draws.
    pub fn tv_bound(&self) -> f64 {
        2.0 * f64::from(self.parts) * self.table.tv_bound()
    }

    /// One draw.
    #[inline]
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> i64 {
        let mut x = 0i64;
        for _ in 0..self.parts {
            x += self.table.sample(rng) as i64 - self.table.sample(rng) as i64;
        }
        x
    }

    /// Adds one draw to every element of `out`, modulo 2^b (`mask` = 2^b − 1), for b ≤ 32.
    pub fn add_to<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [u32], mask: u32) {
        self.add_to_lanes(rng, out, u64::from(mask));
    }

    /// [`add_to`](Self::add_to) for b > 32 (64-bit elements, `mask` = 2^b − 1): the same
    /// draws from the same stream, so `u32` and `u64` elements holding the same values end
    /// up equal mod 2^b.
    pub fn add_to_wide<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [u64], mask: u64) {
        self.add_to_lanes(rng, out, mask);
    }

    /// Adds one draw to every element of `out` mod 2^b (`mask` = 2^b − 1, at most the
    /// lane's): two's complement addition mod 2^64 then the mask, which is the addition mod
    /// 2^b for any b ≤ 64.
    pub fn add_to_lanes<R: Rng + ?Sized, L: Lane>(&self, rng: &mut R, out: &mut [L], mask: u64) {
        for o in out {
            *o = L::from_u64(o.to_u64().wrapping_add(self.sample(rng) as u64) & mask);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// ln Γ(x) for x ≥ 1 by the Stirling series after shifting x above 20 (independent of
    /// the table's integer recurrence).
    fn ln_gamma(mut x: f64) -> f64 {
        let mut shift = 0.0;
        while x < 20.0 {
            shift -= x.ln();
            x += 1.0;
        }
        let inv = 1.0 / x;
        let inv2 = inv * inv;
        let series = inv
            * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 * (1.0 / 1680.0))));
        shift + (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + series
    }

    /// The Poisson(λ) pmf from its closed form, e^-λ λ^j / j!, in log space.
    fn poisson_pmf(lambda: f64, j: u64) -> f64 {
        let j = j as f64;
        (-lambda + j * lambda.ln() - ln_gamma(j + 1.0)).exp()
    }

    /// The Skellam pmf P[X − Y = k] for X, Y ~ Poisson(λ), by summing the convolution over
    /// every j where the terms matter; `range` bounds the support walked.
    fn skellam_pmf(lambda: f64, range: i64) -> Vec<(i64, f64)> {
        let hi = (lambda + 14.0 * lambda.sqrt() + 40.0) as u64;
        let pois: Vec<f64> = (0..=hi).map(|j| poisson_pmf(lambda, j)).collect();
        (-range..=range)
            .map(|k| {
                let s: f64 = (0..=hi as i64)
                    .filter(|&j| j + k >= 0 && j + k <= hi as i64)
                    .map(|j| pois[j as usize] * pois[(j + k) as usize])
                    .sum();
                (k, s)
            })
            .collect()
    }

    /// The upper α-quantile of χ²(df), by Wilson and Hilferty's cube-root approximation.
    fn chi2_critical(df: f64, z: f64) -> f64 {
        let a = 2.0 / (9.0 * df);
        df * (1.0 - a + z * a.sqrt()).powi(3)
    }

    fn lambda_fixed(lambda: f64) -> u64 {
        (lambda * 2f64.powi(32)).round() as u64
    }

    #[test]
    fn mul_div_matches_wide_arithmetic() {
        let seed = secagg_engine::testing::test_seed("skellam::mul_div");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for _ in 0..10_000 {
            let a =
                u128::from(rng.next_u64()) << (rng.next_u32() % 60) | u128::from(rng.next_u64());
            let c = rng.next_u64().max(1);
            let b = rng.next_u64() % c; // b < c: the result fits
            let got = mul_div(a, b, c);
            // Check q·c ≤ a·b < (q + 1)·c with 256-bit products split into halves.
            let wide = |x: u128, y: u128| -> (u128, u128) {
                let (x1, x0) = (x >> 64, x & u128::from(u64::MAX));
                let (y1, y0) = (y >> 64, y & u128::from(u64::MAX));
                let p00 = x0 * y0;
                let mid = x1 * y0 + (p00 >> 64);
                let mid2 = x0 * y1 + (mid & u128::from(u64::MAX));
                let lo = (mid2 << 64) | (p00 & u128::from(u64::MAX));
                let hi = x1 * y1 + (mid >> 64) + (mid2 >> 64);
                (hi, lo)
            };
            let ab = wide(a, u128::from(b));
            let qc = wide(got, u128::from(c));
            assert!(qc <= ab, "seed {seed}: {a} * {b} / {c} = {got} too big");
            let (h, l) = qc;
            let (l2, carry) = l.overflowing_add(u128::from(c));
            let next = (h + u128::from(carry), l2);
            assert!(next > ab, "seed {seed}: {a} * {b} / {c} = {got} too small");
        }
    }

    #[test]
    fn table_pmf_matches_the_closed_form() {
        for lambda in [0.003, 0.5, 3.25, 47.0, 1234.5, 2.0e5] {
            let t = PoissonTable::new(lambda_fixed(lambda)).unwrap();
            // The λ the table holds: on the 2^-32 grid.
            let lambda = t.lambda() as f64 / 2f64.powi(32);
            let (first, last) = t.support();
            let mode = lambda.floor() as u64;
            let sd = lambda.sqrt().max(1.0);
            let mut worst = 0.0f64;
            for j in first..=last {
                let want = poisson_pmf(lambda, j);
                let got = t.probability(j);
                if (j as f64 - lambda).abs() < 8.0 * sd {
                    worst = worst.max((got - want).abs() / want);
                }
            }
            // The reference's own f64 error grows with j ln λ: a few 1e-12 at λ = 2e5.
            assert!(worst < 1e-9, "λ = {lambda}: relative error {worst}");
            // The window reaches ~2^-104 of the mode's mass on both sides.
            assert!(t.probability(last) < 1e-25 && t.probability(mode) > 1e-4);
            let bound = t.tv_bound();
            assert!(bound < 2f64.powi(-75), "λ = {lambda}: TV bound {bound}");
        }
        let big = PoissonTable::new(lambda_fixed(MAX_TABLE_LAMBDA)).unwrap();
        assert!(big.tv_bound() < 2f64.powi(-76), "{}", big.tv_bound());
    }

    /// The guided lookup against a plain search of the 121-bit running sums, at random
    /// points, at every boundary's top word and its neighbours, and at bucket edges.
    #[test]
    fn the_guided_lookup_is_the_plain_search() {
        let seed = secagg_engine::testing::test_seed("skellam::lookup");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for lambda in [0.7, 30.0, 5000.0] {
            let t = PoissonTable::new(lambda_fixed(lambda)).unwrap();
            let sums: Vec<u128> = t
                .top
                .iter()
                .zip(&t.low)
                .map(|(h, l)| (u128::from(*h) << LOW_BITS) | u128::from(*l))
                .collect();
            let plain = |u: u128| sums.iter().position(|s| *s > u);
            let mut points: Vec<(u64, u64)> = (0..20_000)
                .map(|_| (rng.next_u64(), rng.next_u64() >> (64 - LOW_BITS)))
                .collect();
            for s in sums.iter().step_by(1 + sums.len() / 500) {
                let top = (s >> LOW_BITS) as u64;
                let low = (*s as u64) & ((1 << LOW_BITS) - 1);
                for (dt, l) in [
                    (0i64, low),
                    (0, low.saturating_sub(1)),
                    (0, low + 1),
                    (-1, 0),
                    (1, 0),
                ] {
                    points.push((top.wrapping_add_signed(dt), l.min((1 << LOW_BITS) - 1)));
                }
            }
            // Every bucket's edges, and the guide's promise for each bucket.
            for (i, g) in t.guide.iter().enumerate() {
                let edge = (i as u64) << t.shift;
                points.push((edge, 0));
                points.push((edge.wrapping_sub(1), (1 << LOW_BITS) - 1));
                let k = (g & !DECIDED) as usize;
                assert!(
                    k == 0 || t.top[k - 1] < edge,
                    "λ {lambda}: bucket {i} starts late"
                );
                if g & DECIDED != 0 {
                    let next = (i as u128 + 1) << t.shift;
                    assert!(
                        u128::from(t.top[k]) >= next,
                        "λ {lambda}: bucket {i} is not inside entry {k}"
                    );
                }
            }
            for (top, low) in points {
                let u = (u128::from(top) << LOW_BITS) | u128::from(low);
                assert_eq!(
                    t.lookup(top, || low),
                    plain(u),
                    "λ {lambda}: u = {u:#x} (seed {seed})"
                );
            }
        }
    }

    /// The 64-bit adder against the 32-bit one on the same stream at b ≤ 32 (equal values),
    /// and both against i128 arithmetic on the draws themselves at widths up to 64.
    #[test]
    fn the_wide_adder_draws_what_the_narrow_one_does() {
        let seed = secagg_engine::testing::test_seed("skellam::wide_adder");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for (i, variance) in [0.5f64, 900.0, 3.0e9].into_iter().enumerate() {
            let noise = Skellam::new(variance).unwrap();
            for bits in [2u32, 17, 31, 32, 33, 48, 63, 64] {
                let mask = u64::MAX >> (64 - bits);
                let wide: Vec<u64> = (0..2000).map(|_| rng.next_u64() & mask).collect();
                let stream = seed ^ (u64::from(bits) << 8) ^ i as u64;
                let mut got = wide.clone();
                noise.add_to_wide(&mut ChaCha20Rng::seed_from_u64(stream), &mut got, mask);
                // The draws, taken again from the same stream, added in i128.
                let mut again = ChaCha20Rng::seed_from_u64(stream);
                let m = 1i128 << bits;
                let want: Vec<u64> = wide
                    .iter()
                    .map(|&v| {
                        (i128::from(v) + i128::from(noise.sample(&mut again))).rem_euclid(m) as u64
                    })
                    .collect();
                assert_eq!(got, want, "μ = {variance}, b = {bits} (seed {seed})");
                if bits <= 32 {
                    let mut narrow: Vec<u32> = wide.iter().map(|&v| v as u32).collect();
                    noise.add_to(
                        &mut ChaCha20Rng::seed_from_u64(stream),
                        &mut narrow,
                        mask as u32,
                    );
                    let widened: Vec<u64> = narrow.iter().map(|&v| u64::from(v)).collect();
                    assert_eq!(widened, got, "μ = {variance}, b = {bits} (seed {seed})");
                }
            }
        }
    }

    #[test]
    fn bad_variances_are_refused() {
        for v in [0.0, -1.0, f64::NAN, f64::INFINITY, MAX_VARIANCE * 2.0] {
            assert!(Skellam::new(v).is_err(), "{v}");
        }
        assert!(matches!(PoissonTable::new(0), Err(NoiseError::TooSmall(_))));
        // Tiny variances round up onto the grid: never less noise than asked for.
        assert!(Skellam::new(1e-12).unwrap().actual_variance() >= 1e-12);
        let s = Skellam::new(3.0 * MAX_TABLE_LAMBDA).unwrap();
        assert_eq!(s.parts(), 2);
        assert!(s.actual_variance() >= 3.0 * MAX_TABLE_LAMBDA);
    }

    /// 10^6 draws at each of several variances against the exact Skellam pmf: Pearson's χ²
    /// over cells of expected count ≥ 20 (the tails pooled), failing at p < 10^-6.
    #[test]
    fn draws_fit_the_exact_skellam_pmf() {
        let seed = secagg_engine::testing::test_seed("skellam::chi_square");
        let draws = 1_000_000usize;
        for (i, variance) in [0.1f64, 3.0, 40.0, 900.0, 1.0e5].into_iter().enumerate() {
            let noise = Skellam::new(variance).unwrap();
            let lambda = noise.actual_variance() / 2.0;
            let range = (9.0 * variance.sqrt() + 12.0) as i64;
            let pmf = skellam_pmf(lambda, range);
            let mut rng = ChaCha20Rng::seed_from_u64(seed ^ i as u64);
            let mut counts = vec![0u64; pmf.len()];
            let (mut below, mut above) = (0u64, 0u64);
            let mut sum = 0f64;
            let mut sum_sq = 0f64;
            for _ in 0..draws {
                let x = noise.sample(&mut rng);
                sum += x as f64;
                sum_sq += (x * x) as f64;
                if x < -range {
                    below += 1;
                } else if x > range {
                    above += 1;
                } else {
                    counts[(x + range) as usize] += 1;
                }
            }
            assert_eq!(below + above, 0, "μ = {variance}: draws beyond ±{range}");
            // Cells: each k with expected ≥ 20; the rest pooled into the two tails.
            let mut chi = 0.0;
            let mut cells = 0;
            let (mut tail_obs, mut tail_exp) = (0.0, 0.0);
            for ((_, p), &c) in pmf.iter().zip(&counts) {
                let e = p * draws as f64;
                if e >= 20.0 {
                    chi += (c as f64 - e).powi(2) / e;
                    cells += 1;
                } else {
                    tail_obs += c as f64;
                    tail_exp += e;
                }
            }
            let outside = 1.0 - pmf.iter().map(|p| p.1).sum::<f64>();
            tail_exp += outside.max(0.0) * draws as f64;
            if tail_exp >= 5.0 {
                chi += (tail_obs - tail_exp).powi(2) / tail_exp;
                cells += 1;
            }
            let df = (cells - 1) as f64;
            // z = 4.753: the upper 10^-6 point of the standard normal.
            let critical = chi2_critical(df, 4.753);
            let mean = sum / draws as f64;
            let var = sum_sq / draws as f64 - mean * mean;
            eprintln!(
                "μ = {variance}: χ² = {chi:.1} on {df} df (critical {critical:.1}), mean {mean:.4}, variance {var:.4} (seed {seed})"
            );
            assert!(
                chi < critical,
                "μ = {variance}: χ² = {chi} > {critical} on {df} df (seed {seed})"
            );
            // The variance within 6 standard errors (Var(X²) ≈ 2μ² + μ for Skellam).
            let se = ((2.0 * variance * variance + variance) / draws as f64).sqrt();
            assert!(
                (var - noise.actual_variance()).abs() < 6.0 * se,
                "μ = {variance}: sample variance {var} (seed {seed})"
            );
        }
    }
}
