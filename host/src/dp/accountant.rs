//! Privacy accounting for the Skellam mechanism: Rényi DP per round, composition over rounds,
//! and conversion to (ε, δ).
//!
//! **One round.** The released sum, seen by a server that knows every colluder's input and
//! noise, is the honest clients' rounded vectors plus their Skellam noise: the Skellam
//! mechanism with central variance μ = h μ_c (a sum of independent Skellam variables is
//! Skellam, so this is exact whichever h honest clients survive; more only adds noise). For
//! an integer vector of L1 and L2 sensitivity Δ1, Δ2 and integer order α > 1, Agarwal,
//! Kairouz and Liu (NeurIPS 2021, Theorem 3.5 / Corollary 3.6) bound its Rényi divergence:
//!
//! ```text
//! ε(α) ≤ α Δ2² / (2μ) + min( ((2α − 1) Δ2² + 6 Δ1) / (4μ²),  3 Δ1 / (2μ) )
//! ```
//!
//! The first term is the Gaussian mechanism's; the second is the price of being discrete and
//! vanishes as μ grows. Δ1 and Δ2 are those of the rounded vector, inflated by rounding
//! ([`super::DpConfig::sensitivity`]).
//!
//! **Rounds** compose by adding RDP at each order. **(ε, δ)** from RDP:
//! `ε = min_α ε(α) + ln((α − 1)/α) − (ln δ + ln α)/(α − 1)` (Balle et al. 2020, Theorem 21;
//! Canonne, Kamath and Steinke 2020), never larger than the classic `ε(α) + ln(1/δ)/(α − 1)`.
//!
//! **The sampler's distance from exact** (see [`super::skellam`]) adds to δ: a mechanism within
//! total variation η of an (ε, δ)-DP one is (ε, δ + (1 + e^ε) η)-DP
//! ([`sampler_delta`]).

use super::Sensitivity;

/// The Rényi orders the accountant evaluates: every integer from 2 to 256, then about 10%
/// apart up to 10^5 (the Skellam bound holds at integer orders).
pub fn orders() -> Vec<u32> {
    let mut out: Vec<u32> = (2..=256).collect();
    let mut a = 256.0f64;
    while a < 1e5 {
        a *= 1.1;
        out.push(a.round() as u32);
    }
    out
}

/// The Skellam mechanism's RDP at integer order `alpha` > 1 for sensitivities `s` and central
/// variance `mu`, all in integer units.
pub fn skellam_rdp(alpha: u32, s: Sensitivity, mu: f64) -> f64 {
    let a = f64::from(alpha);
    let gaussian = a * s.l2 * s.l2 / (2.0 * mu);
    let discrete = ((2.0 * a - 1.0) * s.l2 * s.l2 + 6.0 * s.l1) / (4.0 * mu * mu);
    gaussian + discrete.min(3.0 * s.l1 / (2.0 * mu))
}

/// The Gaussian mechanism's RDP at order `alpha`: α Δ2² / (2σ²).
pub fn gaussian_rdp(alpha: f64, l2: f64, variance: f64) -> f64 {
    alpha * l2 * l2 / (2.0 * variance)
}

/// An RDP curve: ε(α) at each of [`orders`].
#[derive(Clone, Debug, PartialEq)]
pub struct Rdp {
    orders: Vec<u32>,
    eps: Vec<f64>,
}

impl Rdp {
    /// One round of the Skellam mechanism.
    pub fn skellam(s: Sensitivity, mu: f64) -> Self {
        let orders = orders();
        let eps = orders.iter().map(|&a| skellam_rdp(a, s, mu)).collect();
        Self { orders, eps }
    }

    /// One round of the Gaussian mechanism (L2 sensitivity `l2`, variance `variance`).
    pub fn gaussian(l2: f64, variance: f64) -> Self {
        let orders = orders();
        let eps = orders
            .iter()
            .map(|&a| gaussian_rdp(f64::from(a), l2, variance))
            .collect();
        Self { orders, eps }
    }

    /// `rounds` independent rounds of this mechanism (RDP adds).
    pub fn compose(&self, rounds: u32) -> Self {
        Self {
            orders: self.orders.clone(),
            eps: self.eps.iter().map(|e| e * f64::from(rounds)).collect(),
        }
    }

    /// This curve followed by `other` (both on [`orders`]).
    pub fn then(&self, other: &Rdp) -> Self {
        Self {
            orders: self.orders.clone(),
            eps: self
                .eps
                .iter()
                .zip(&other.eps)
                .map(|(a, b)| a + b)
                .collect(),
        }
    }

    /// The orders and ε(α) at each.
    pub fn curve(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.orders.iter().copied().zip(self.eps.iter().copied())
    }

    /// The smallest ε for which the mechanism is (ε, δ)-DP by the conversion in the module
    /// docs, and the order that gives it.
    pub fn epsilon(&self, delta: f64) -> (f64, u32) {
        self.curve()
            .map(|(a, e)| {
                let a_f = f64::from(a);
                let eps = e + ((a_f - 1.0) / a_f).ln() - (delta.ln() + a_f.ln()) / (a_f - 1.0);
                (eps.max(0.0), a)
            })
            .fold(
                (f64::INFINITY, 0),
                |best, x| if x.0 < best.0 { x } else { best },
            )
    }

    /// The classic conversion `min_α ε(α) + ln(1/δ)/(α − 1)` (for comparison).
    pub fn epsilon_classic(&self, delta: f64) -> f64 {
        self.curve()
            .map(|(a, e)| e + (1.0 / delta).ln() / (f64::from(a) - 1.0))
            .fold(f64::INFINITY, f64::min)
    }
}

/// ε after `rounds` rounds of the Skellam mechanism at δ.
pub fn skellam_epsilon(s: Sensitivity, mu: f64, rounds: u32, delta: f64) -> f64 {
    Rdp::skellam(s, mu).compose(rounds).epsilon(delta).0
}

/// The smallest central variance μ (integer units) for which `rounds` rounds of the Skellam
/// mechanism with sensitivities `s` are (`epsilon`, `delta`)-DP, to within 10^-9 relative
/// (rounded up), or `None` when none up to 2^80 is.
pub fn skellam_variance_for(s: Sensitivity, epsilon: f64, rounds: u32, delta: f64) -> Option<f64> {
    search_up(|mu| skellam_epsilon(s, mu, rounds, delta) <= epsilon)
}

/// The smallest Gaussian variance for which `rounds` rounds with L2 sensitivity `l2` are
/// (`epsilon`, `delta`)-DP by the same RDP conversion (the continuous ideal the discrete
/// mechanism approaches).
pub fn gaussian_variance_for(l2: f64, epsilon: f64, rounds: u32, delta: f64) -> Option<f64> {
    search_up(|v| Rdp::gaussian(l2, v).compose(rounds).epsilon(delta).0 <= epsilon)
}

/// The smallest x in (0, 2^80] (to 10^-9 relative, rounded up) with `ok(x)`, for a
/// monotone `ok`.
fn search_up(ok: impl Fn(f64) -> bool) -> Option<f64> {
    let (mut lo, mut hi) = (-80.0f64, 80.0f64); // log2 x
    if !ok(hi.exp2()) {
        return None;
    }
    if ok(lo.exp2()) {
        return Some(lo.exp2());
    }
    while hi - lo > 1e-9 {
        let mid = (lo + hi) / 2.0;
        if ok(mid.exp2()) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi.exp2())
}

/// The δ a sampler within total variation `tv` of exact adds to an ε-DP guarantee over
/// `draws` noise draws in all (every coordinate of every client of every round): at most
/// (1 + e^ε) × draws × tv.
pub fn sampler_delta(epsilon: f64, tv: f64, draws: f64) -> f64 {
    (1.0 + epsilon.exp()) * draws * tv
}

/// The standard normal upper tail P(N > x) (for x ≥ 0 to about 10^-7 relative: the Chebyshev
/// fit of erfc from Numerical Recipes, §6.2).
pub fn normal_tail(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 {
        erfc / 2.0
    } else {
        1.0 - erfc / 2.0
    }
}

/// The x with P(N > x) = `p` (0 < p < 1/2), by bisection on [`normal_tail`].
pub fn normal_quantile_upper(p: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if normal_tail(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// One round's privacy event, as the server's summary and the simulator report it.
#[derive(Clone, Debug, PartialEq)]
pub struct PrivacyEvent {
    /// Sensitivities of one client's contribution (integer units).
    pub sensitivity: Sensitivity,
    /// The central variance the guarantee rests on: h μ_c (integer units).
    pub central_variance: f64,
    /// The honest survivors h the noise was sized for.
    pub honest: u32,
    /// s.
    pub scale: f64,
    /// c.
    pub clip: f32,
    /// The δ the ε is stated at.
    pub delta: f64,
    /// ε of this round alone at δ.
    pub epsilon: f64,
    /// What the sampler's distance from exact adds to δ in this round (all n clients' draws).
    pub sampler_delta: f64,
    /// The RDP curve of this round (compose rounds by adding it).
    pub rdp: Rdp,
}

impl PrivacyEvent {
    /// The event of one round with DP setting `dp`, `params` parameters, weights up to
    /// `max_weight` and `clients` clients whose noise draws count toward the sampler's
    /// distance, stated at `delta`.
    pub fn of(
        dp: &super::DpConfig,
        params: usize,
        max_weight: u32,
        clients: usize,
        delta: f64,
    ) -> Result<Self, super::skellam::NoiseError> {
        let sensitivity = dp.sensitivity(params, max_weight);
        let central_variance = dp.central_variance();
        let rdp = Rdp::skellam(sensitivity, central_variance);
        let epsilon = rdp.epsilon(delta).0;
        let tv = super::skellam::Skellam::new(dp.noise)?.tv_bound();
        Ok(Self {
            sensitivity,
            central_variance,
            honest: dp.honest,
            scale: dp.scale,
            clip: dp.clip,
            delta,
            epsilon,
            sampler_delta: sampler_delta(epsilon, tv, clients as f64 * params as f64),
            rdp,
        })
    }

    /// The central noise's standard deviation in value units: √(h μ_c) / s.
    pub fn noise_std(&self) -> f64 {
        self.central_variance.sqrt() / self.scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ln of the Skellam pmf P[X − Y = k], X, Y ~ Poisson(λ), on −range..=range: the
    /// convolution Σ_j P[X = j + k] P[Y = j] summed in log space, each Poisson term from its
    /// closed form with ln j! summed directly.
    fn skellam_log_pmf(lambda: f64, range: i64) -> Vec<f64> {
        let hi = (lambda + 40.0 * lambda.sqrt() + 400.0) as usize + range as usize;
        let mut ln_fact = vec![0.0f64; hi + 1];
        for j in 1..=hi {
            ln_fact[j] = ln_fact[j - 1] + (j as f64).ln();
        }
        let ln_p = |j: usize| -lambda + j as f64 * lambda.ln() - ln_fact[j];
        (-range..=range)
            .map(|k| {
                let terms: Vec<f64> = (0..=hi)
                    .filter_map(|j| {
                        let i = j as i64 + k;
                        (i >= 0 && (i as usize) <= hi).then(|| ln_p(i as usize) + ln_p(j))
                    })
                    .collect();
                let top = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                top + terms.iter().map(|t| (t - top).exp()).sum::<f64>().ln()
            })
            .collect()
    }

    /// D_α(P ‖ Q) for P = Q shifted by Δ, both given as ln pmf on the same grid.
    fn renyi_shifted(ln_q: &[f64], shift: usize, alpha: f64) -> f64 {
        let terms: Vec<f64> = (shift..ln_q.len())
            .map(|k| alpha * ln_q[k - shift] + (1.0 - alpha) * ln_q[k])
            .collect();
        let top = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (top + terms.iter().map(|t| (t - top).exp()).sum::<f64>().ln()) / (alpha - 1.0)
    }

    #[test]
    fn the_bound_holds_and_is_close_on_the_exact_divergence() {
        // One coordinate, shift Δ: Δ1 = Δ2 = Δ. The divergence from the exact pmf must not
        // exceed the paper's bound, and the bound must be within its discrete surcharge of
        // the Gaussian term, which the exact value approaches from below.
        for (mu, shift) in [(20.0f64, 1usize), (50.0, 2), (200.0, 3), (800.0, 1)] {
            let range = (30.0 * mu.sqrt() + 60.0) as i64;
            let ln_q = skellam_log_pmf(mu / 2.0, range);
            let s = Sensitivity {
                l2: shift as f64,
                l1: shift as f64,
            };
            for alpha in [2u32, 3, 5, 8, 16, 32] {
                let exact = renyi_shifted(&ln_q, shift, f64::from(alpha));
                let exact_rev = {
                    let rev: Vec<f64> = ln_q.iter().rev().cloned().collect();
                    renyi_shifted(&rev, shift, f64::from(alpha))
                };
                let bound = skellam_rdp(alpha, s, mu);
                let gauss = gaussian_rdp(f64::from(alpha), shift as f64, mu);
                eprintln!(
                    "μ {mu} Δ {shift} α {alpha}: exact {exact:.6e} / {exact_rev:.6e}, bound {bound:.6e}, gaussian {gauss:.6e}"
                );
                assert!(
                    exact <= bound * (1.0 + 1e-9) && exact_rev <= bound * (1.0 + 1e-9),
                    "μ {mu} Δ {shift} α {alpha}: divergence {exact} above the bound {bound}"
                );
                // Tight: the bound exceeds the truth by less than 40% here, and the truth is
                // within 40% of the Gaussian term.
                assert!(
                    bound < 1.4 * exact.max(exact_rev),
                    "μ {mu} α {alpha}: loose bound"
                );
                assert!(
                    (exact / gauss - 1.0).abs() < 0.4,
                    "μ {mu} α {alpha}: {exact} vs {gauss}"
                );
            }
        }
    }

    #[test]
    fn large_variance_tends_to_the_gaussian() {
        // Δ2²/μ fixed (noise multiplier z = 1.3), μ → ∞: the Skellam curve and ε converge to
        // the Gaussian's.
        let z = 1.3f64;
        let mut last_gap = f64::INFINITY;
        for l2 in [10.0f64, 100.0, 1e3, 1e4, 1e5] {
            let mu = (z * l2).powi(2);
            let s = Sensitivity { l2, l1: l2 * 30.0 };
            let sk = Rdp::skellam(s, mu).compose(10).epsilon(1e-6).0;
            let ga = Rdp::gaussian(l2, mu).compose(10).epsilon(1e-6).0;
            let gap = sk / ga - 1.0;
            assert!(gap >= 0.0 && gap < last_gap, "Δ {l2}: gap {gap}");
            last_gap = gap;
        }
        assert!(last_gap < 1e-4, "gap {last_gap}");
    }

    /// δ(ε) of the Gaussian mechanism exactly (Balle and Wang, ICML 2018, Theorem 8):
    /// Φ(Δ/2σ − εσ/Δ) − e^ε Φ(−Δ/2σ − εσ/Δ).
    fn gaussian_exact_delta(eps: f64, sigma_over_delta: f64) -> f64 {
        let a = 1.0 / (2.0 * sigma_over_delta);
        let b = eps * sigma_over_delta;
        normal_tail(b - a) - eps.exp() * normal_tail(a + b)
    }

    #[test]
    fn the_conversion_is_sound_against_the_exact_gaussian() {
        // RDP conversion gives an ε at which the exact Gaussian δ is at most the target, not
        // far above the exact ε, and never above the classic conversion.
        for (z, rounds) in [(0.8f64, 1u32), (2.0, 1), (5.0, 20), (20.0, 300)] {
            let delta = 1e-6;
            let rdp = Rdp::gaussian(1.0, z * z).compose(rounds);
            let (eps, _) = rdp.epsilon(delta);
            let classic = rdp.epsilon_classic(delta);
            // R rounds of a Gaussian with σ = z is one Gaussian with σ = z / √R.
            let s = z / f64::from(rounds).sqrt();
            let exact_delta = gaussian_exact_delta(eps, s);
            assert!(
                exact_delta <= delta,
                "z {z} R {rounds}: δ at ε {eps} is {exact_delta}"
            );
            assert!(eps <= classic, "z {z}: {eps} > classic {classic}");
            // The exact ε: bisection on the exact δ.
            let (mut lo, mut hi) = (0.0f64, eps);
            for _ in 0..100 {
                let mid = (lo + hi) / 2.0;
                if gaussian_exact_delta(mid, s) > delta {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            eprintln!("z {z} R {rounds}: RDP ε {eps:.4}, classic {classic:.4}, exact {hi:.4}");
            assert!(eps < 1.35 * hi, "z {z} R {rounds}: {eps} vs exact {hi}");
        }
    }

    #[test]
    fn variance_search_inverts_epsilon() {
        let s = Sensitivity {
            l2: 1100.0,
            l1: 1.1e5,
        };
        for (eps, rounds) in [(0.5f64, 1u32), (1.0, 100), (8.0, 1000)] {
            let mu = skellam_variance_for(s, eps, rounds, 1e-6).unwrap();
            assert!(skellam_epsilon(s, mu, rounds, 1e-6) <= eps);
            assert!(skellam_epsilon(s, mu * 0.999, rounds, 1e-6) > eps);
            let g = gaussian_variance_for(s.l2, eps, rounds, 1e-6).unwrap();
            assert!(
                g <= mu,
                "the discrete mechanism needs at least the Gaussian's noise"
            );
        }
        // More rounds, more ε.
        assert!(skellam_epsilon(s, 1e7, 10, 1e-6) > skellam_epsilon(s, 1e7, 5, 1e-6));
    }

    #[test]
    fn normal_tail_matches_known_points() {
        // Φ(−1.959964) = 0.025, Φ(−3.090232) = 0.001, Φ(−6) = 9.8659e-10.
        for (x, p) in [(1.959_964, 0.025), (3.090_232, 0.001), (6.0, 9.865_876e-10)] {
            assert!(
                (normal_tail(x) / p - 1.0).abs() < 1e-5,
                "{x}: {}",
                normal_tail(x)
            );
            assert!((normal_quantile_upper(p) - x).abs() < 1e-4);
        }
        assert!((normal_tail(-1.0) - 0.841_344_746).abs() < 1e-7);
    }
}
