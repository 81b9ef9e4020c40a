//! The DP plan: the noise, scale and modulus of a distributed-DP round (see [`crate::dp`]).
//!
//! Given a privacy target (ε at δ over R rounds, or a noise multiplier z), the L2 clip c,
//! the parameters d, the clients n and the honest inputs h the noise must rest on (T − c:
//! the survivors a released sum needs, less the colluders; against a semi-malicious server
//! at most k − t + 2, see [`crate::ClientPolicy::honest_survivors`]), the plan picks
//!
//! * for a modulus 2^b, the largest scale s at which the sum still rarely wraps: every one
//!   of the d coordinates of the sum stays inside (−2^(b−1), 2^(b−1)) except with the
//!   requested probability, estimated with a normal tail over the variance
//!   `(n w c s)² / B + n μ_c + n w² / 4` (the signal when every client points the same way,
//!   spread over the rotation's window B; the noise of all n clients; their rounding);
//! * at that scale, the central variance μ the accountant needs (rounding inflates the
//!   sensitivity, so a larger s needs relatively less), and each client's share μ_c = μ / h;
//! * b itself, unless given: the smallest b ≤ [`MAX_DP_BITS`] at which rounding costs at
//!   most the requested slack (10%) against the continuous Gaussian mechanism with the
//!   same target: for an ε target, the central error (noise and rounding) within 1 + slack
//!   of the Gaussian's noise; for a noise multiplier, ε within 1 + slack of the Gaussian's
//!   ε. Each client's variance stays below [`FAST_VARIANCE`] (the sampler's fast range)
//!   when the slack can be met there, and below the sampler's limit otherwise. Above 32
//!   bits the elements are 64 bits (twice the upload), so b > 32 comes only when no b ≤ 32
//!   meets the slack: a plan that met it within 32 bits before b could reach 64 still
//!   gets the same b (the noise cap, not b, limits the scale once the fast range binds, so
//!   a wider b in that range changes nothing). When no b meets the slack, the plan is the
//!   one with the least error (ε for a noise multiplier): a wider b, or the slower sampler
//!   range, must lower it by more than 0.1% to be chosen.
//!
//! It reports what that costs: the ε actually spent over the rounds (the accountant's bound
//! with the configured noise), what the sampler's distance from exact adds to δ, the
//! central noise, and the expected error of the mean at the expected survivors.

use crate::dp::accountant::{
    Rdp, gaussian_variance_for, normal_quantile_upper, normal_tail, sampler_delta,
    skellam_variance_for,
};
use crate::dp::skellam::{MAX_VARIANCE, Skellam};
use crate::dp::{DpConfig, Sensitivity};

/// The largest b the plan considers (above 32 the elements are 64 bits: twice the upload).
pub const MAX_DP_BITS: u32 = 64;
/// The per-client variance the plan stays below when it can meet its slack there: 2^27,
/// where the sampler's tables stay small enough for the cache (at least 10^7 draws a second
/// on one core of the development machine; larger variances are slower, see
/// BENCHMARKS.md).
pub const FAST_VARIANCE: f64 = 134_217_728.0;

/// What the privacy must meet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DpTarget {
    /// ε at the request's δ over all its rounds.
    Epsilon(f64),
    /// The noise multiplier z: the central noise's standard deviation over the weighted
    /// clip, σ = z c w (value units).
    Noise(f64),
}

/// A request for a DP plan.
#[derive(Clone, Debug, PartialEq)]
pub struct DpRequest {
    /// The privacy target.
    pub target: DpTarget,
    /// δ.
    pub delta: f64,
    /// R: rounds the privacy is accounted over.
    pub rounds: u32,
    /// c: the L2 clip.
    pub clip: f32,
    /// d: parameters.
    pub params: usize,
    /// n: the most clients a sum can hold.
    pub clients: usize,
    /// h: the honest survivors the noise must rest on alone.
    pub honest: usize,
    /// The expected survivors, for the error of the mean.
    pub survivors: usize,
    /// w: the largest weight.
    pub max_weight: u32,
    /// β: conditional rounding (0 for plain stochastic rounding).
    pub beta: f64,
    /// b, or `None` to choose it.
    pub bits: Option<u32>,
    /// The probability, per round, that any coordinate of the sum wraps.
    pub wrap_probability: f64,
    /// The cost of rounding accepted against the continuous Gaussian (0.1: 10%).
    pub slack: f64,
}

impl DpRequest {
    /// A request with the defaults for the rest: one round, c = 1, δ = 10^-6, weight 1,
    /// β = e^-0.5, b chosen, wraps below 10^-6 per round, 10% slack; every client honest
    /// and surviving until the caller says otherwise.
    pub fn new(target: DpTarget, params: usize, clients: usize) -> Self {
        Self {
            target,
            delta: 1e-6,
            rounds: 1,
            clip: 1.0,
            params,
            clients,
            honest: clients,
            survivors: clients,
            max_weight: 1,
            beta: (-0.5f64).exp(),
            bits: None,
            wrap_probability: 1e-6,
            slack: 0.1,
        }
    }
}

/// A DP plan.
#[derive(Clone, Debug, PartialEq)]
pub struct DpPlan {
    /// b.
    pub bits: u32,
    /// The round's DP setting.
    pub dp: DpConfig,
    /// The sensitivities at that scale (integer units).
    pub sensitivity: Sensitivity,
    /// ε spent over the request's rounds at δ, with the configured noise.
    pub epsilon: f64,
    /// The Rényi order that gave it.
    pub order: u32,
    /// δ.
    pub delta: f64,
    /// The sampler's total-variation distance from exact over all the draws of all rounds
    /// (n clients, d coordinates each).
    pub sampler_tv: f64,
    /// What that adds to δ: (1 + e^ε) × [`sampler_tv`](Self::sampler_tv).
    pub sampler_delta: f64,
    /// The central noise's standard deviation, value units: √(h μ_c) / s.
    pub noise_std: f64,
    /// The continuous Gaussian's for the same target (value units).
    pub ideal_std: f64,
    /// ε of the continuous Gaussian with this plan's central noise (value units, sensitivity
    /// c w), over the rounds: what an ideal mechanism would spend.
    pub ideal_epsilon: f64,
    /// The central error with rounding, value units: √(h (μ_c + w²/4)) / s.
    pub central_error: f64,
    /// The expected error of one coordinate of the mean at the expected survivors S with
    /// unit weights: √(S (μ_c + 1/4)) / (s S) (every survivor's noise, and its rounding at
    /// most 1/4; for weights, divide the sum's error by Σ w instead).
    pub mean_error: f64,
    /// The estimated probability that some coordinate wraps in a round.
    pub wrap_probability: f64,
    /// Whether b meets the request's slack (when b was chosen).
    pub within_slack: bool,
}

/// Why no plan.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DpPlanError {
    /// A request field out of range.
    #[error("invalid DP request: {0}")]
    Invalid(String),
    /// No scale fits the modulus with the noise the target needs.
    #[error(
        "no scale fits 2^{bits}: the noise the target needs over {clients} clients wraps the sum (raise b, lower ε's demands or the clients)"
    )]
    NoFit {
        /// b.
        bits: u32,
        /// n.
        clients: usize,
    },
}

/// Plans the DP setting for `req` (see the module docs).
pub fn plan_dp(req: &DpRequest) -> Result<DpPlan, DpPlanError> {
    validate(req)?;
    let bits: Vec<u32> = match req.bits {
        Some(b) => vec![b],
        None => (2..=MAX_DP_BITS).collect(),
    };
    // The fast sampler's range first; beyond it only when that is what meets the slack.
    let mut best: Option<DpPlan> = None;
    for cap in [FAST_VARIANCE, MAX_VARIANCE] {
        for &b in &bits {
            if let Some(mut p) = fit(req, b, cap) {
                p.within_slack = meets_slack(req, &p);
                if p.within_slack {
                    return Ok(p);
                }
                // Otherwise the least cost, kept unless another is clearly (0.1%) better:
                // more bits than that buys nothing but upload.
                if best
                    .as_ref()
                    .is_none_or(|q| cost(req, &p) < 0.999 * cost(req, q))
                {
                    best = Some(p);
                }
            }
        }
    }
    best.ok_or(DpPlanError::NoFit {
        bits: *bits.last().unwrap_or(&MAX_DP_BITS),
        clients: req.clients,
    })
}

fn validate(req: &DpRequest) -> Result<(), DpPlanError> {
    let bad = |why: String| Err(DpPlanError::Invalid(why));
    match req.target {
        DpTarget::Epsilon(e) if !(e.is_finite() && e > 0.0) => {
            return bad(format!("ε must be positive, got {e}"));
        }
        DpTarget::Noise(z) if !(z.is_finite() && z > 0.0) => {
            return bad(format!("the noise multiplier must be positive, got {z}"));
        }
        _ => {}
    }
    if !(req.delta > 0.0 && req.delta < 1.0) {
        return bad(format!("δ must lie in (0, 1), got {}", req.delta));
    }
    if req.rounds == 0 || req.params == 0 || req.clients == 0 || req.max_weight == 0 {
        return bad("rounds, parameters, clients and the weight bound must be positive".into());
    }
    if req.honest == 0 || req.honest > req.clients {
        return bad(format!(
            "the honest survivors h = {} must lie in 1..={} (T - c: raise the threshold or lower the colluders)",
            req.honest, req.clients
        ));
    }
    if !(req.clip.is_finite() && req.clip > 0.0) {
        return bad(format!("the clip must be positive, got {}", req.clip));
    }
    if !(req.beta.is_finite() && (0.0..1.0).contains(&req.beta)) {
        return bad(format!("β must lie in [0, 1), got {}", req.beta));
    }
    if !(req.wrap_probability > 0.0 && req.wrap_probability < 1.0) {
        return bad(format!(
            "the wrap probability must lie in (0, 1), got {}",
            req.wrap_probability
        ));
    }
    if let Some(b) = req.bits
        && !(2..=MAX_DP_BITS).contains(&b)
    {
        return bad(format!("b must lie in 2..={MAX_DP_BITS}, got {b}"));
    }
    Ok(())
}

/// The setting at scale `s` and its sum's per-coordinate variance, or `None` when the
/// target cannot be met or the noise is above `cap`.
fn at_scale(req: &DpRequest, scale: f64, cap: f64) -> Option<(DpConfig, f64)> {
    let mut dp = DpConfig {
        clip: req.clip,
        scale,
        noise: 1.0,
        honest: u32::try_from(req.honest).ok()?,
        beta: req.beta,
    };
    let sens = dp.sensitivity(req.params, req.max_weight);
    let central = match req.target {
        DpTarget::Epsilon(e) => skellam_variance_for(sens, e, req.rounds, req.delta)?,
        DpTarget::Noise(z) => {
            let sd = z * f64::from(req.clip) * f64::from(req.max_weight) * scale;
            sd * sd
        }
    };
    // Each client's share, rounded up so that h of them carry at least the central variance.
    dp.noise = central / req.honest as f64 * (1.0 + 1e-12);
    if !(dp.noise > 0.0 && dp.noise <= cap) {
        return None;
    }
    let n = req.clients as f64;
    let w = f64::from(req.max_weight);
    let window = (1u64 << (63 - (req.params as u64).leading_zeros())) as f64;
    let signal = n * w * f64::from(req.clip) * scale;
    let variance = signal * signal / window + n * dp.noise + n * w * w / 4.0;
    Some((dp, variance))
}

/// The plan at b: the largest scale whose sum wraps rarely enough and whose per-client
/// variance is at most `cap`.
fn fit(req: &DpRequest, bits: u32, cap: f64) -> Option<DpPlan> {
    let half = 2f64.powi(bits as i32 - 1);
    let k = normal_quantile_upper(req.wrap_probability / (2.0 * req.params as f64));
    let fits = |log_s: f64| at_scale(req, log_s.exp2(), cap).filter(|(_, v)| k * v.sqrt() <= half);
    // The setting's own check: c s w < 2^(b−1).
    let top = (half / (f64::from(req.clip) * f64::from(req.max_weight))).log2() - 1e-9;
    let (mut lo, mut hi) = (-40.0f64, top);
    fits(lo)?;
    if fits(hi).is_some() {
        lo = hi;
    }
    while hi - lo > 1e-6 {
        let mid = (lo + hi) / 2.0;
        if fits(mid).is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (dp, variance) = fits(lo)?;
    dp.check(req.params, bits, req.max_weight).ok()?;
    Some(describe(req, bits, dp, variance))
}

/// The figures of a setting.
fn describe(req: &DpRequest, bits: u32, dp: DpConfig, variance: f64) -> DpPlan {
    let sensitivity = dp.sensitivity(req.params, req.max_weight);
    let rdp = Rdp::skellam(sensitivity, dp.central_variance()).compose(req.rounds);
    let (epsilon, order) = rdp.epsilon(req.delta);
    let tv = Skellam::new(dp.noise).map_or(f64::INFINITY, |s| s.tv_bound());
    let draws = f64::from(req.rounds) * req.clients as f64 * req.params as f64;
    let h = req.honest as f64;
    let w = f64::from(req.max_weight);
    let weighted_clip = f64::from(req.clip) * w;
    let noise_std = dp.central_variance().sqrt() / dp.scale;
    let ideal_std = match req.target {
        DpTarget::Epsilon(e) => gaussian_variance_for(weighted_clip, e, req.rounds, req.delta)
            .map_or(f64::NAN, f64::sqrt),
        DpTarget::Noise(z) => z * weighted_clip,
    };
    let ideal_epsilon = Rdp::gaussian(weighted_clip, noise_std * noise_std)
        .compose(req.rounds)
        .epsilon(req.delta)
        .0;
    let s = req.survivors.max(1) as f64;
    let half = 2f64.powi(bits as i32 - 1);
    DpPlan {
        bits,
        dp,
        sensitivity,
        epsilon,
        order,
        delta: req.delta,
        sampler_tv: tv * draws,
        sampler_delta: sampler_delta(epsilon, tv, draws),
        noise_std,
        ideal_std,
        ideal_epsilon,
        central_error: (h * (dp.noise + w * w / 4.0)).sqrt() / dp.scale,
        mean_error: (s * (dp.noise + 0.25)).sqrt() / (dp.scale * s),
        wrap_probability: (2.0 * req.params as f64 * normal_tail(half / variance.sqrt())).min(1.0),
        within_slack: false,
    }
}

/// What a plan that misses the slack costs: the central error for an ε target, ε for a
/// noise multiplier.
fn cost(req: &DpRequest, p: &DpPlan) -> f64 {
    match req.target {
        DpTarget::Epsilon(_) => p.central_error,
        DpTarget::Noise(_) => p.epsilon,
    }
}

/// Whether rounding costs at most the slack (module docs).
fn meets_slack(req: &DpRequest, p: &DpPlan) -> bool {
    match req.target {
        DpTarget::Epsilon(_) => p.central_error <= (1.0 + req.slack) * p.ideal_std,
        DpTarget::Noise(_) => p.epsilon <= (1.0 + req.slack) * p.ideal_epsilon,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::accountant::skellam_epsilon;

    fn request() -> DpRequest {
        DpRequest {
            honest: 40,
            survivors: 90,
            ..DpRequest::new(DpTarget::Epsilon(1.0), 1_000_000, 100)
        }
    }

    #[test]
    fn an_epsilon_plan_spends_at_most_its_target_and_fits_its_modulus() {
        let req = request();
        let p = plan_dp(&req).unwrap();
        assert!(p.within_slack, "{p:?}");
        assert!(p.epsilon <= 1.0 && p.epsilon > 0.98, "ε {}", p.epsilon);
        assert!(p.wrap_probability <= 1e-6, "{}", p.wrap_probability);
        assert!(p.central_error <= 1.1 * p.ideal_std);
        // Its own figures, recomputed: ε from the configured per-client noise times h.
        let again = skellam_epsilon(p.sensitivity, 40.0 * p.dp.noise, 1, 1e-6);
        assert!((again - p.epsilon).abs() < 1e-12);
        // One bit fewer misses the slack.
        let fewer = plan_dp(&DpRequest {
            bits: Some(p.bits - 1),
            ..req.clone()
        })
        .unwrap();
        assert!(!fewer.within_slack);
        // A given b is used as is, and more bits bring the error closer to the ideal.
        let wide = plan_dp(&DpRequest {
            bits: Some(32),
            ..req.clone()
        })
        .unwrap();
        assert_eq!(wide.bits, 32);
        assert!(wide.central_error < p.central_error && wide.central_error >= wide.ideal_std);
        // Met within the sampler's fast range: 32 bits do not push the variance past it.
        assert!(wide.dp.noise <= FAST_VARIANCE && p.dp.noise <= FAST_VARIANCE);
        eprintln!("{p:#?}");
    }

    #[test]
    fn fewer_honest_survivors_mean_more_noise_per_client() {
        let a = plan_dp(&DpRequest {
            bits: Some(24),
            ..request()
        })
        .unwrap();
        let b = plan_dp(&DpRequest {
            honest: 10,
            bits: Some(24),
            ..request()
        })
        .unwrap();
        // The same central noise (relative to the scale), split among fewer clients.
        let ratio = (b.dp.noise / b.dp.scale.powi(2)) / (a.dp.noise / a.dp.scale.powi(2));
        assert!(ratio > 3.5, "ratio {ratio}");
        assert!((b.noise_std / a.noise_std - 1.0).abs() < 0.05);
    }

    #[test]
    fn a_noise_multiplier_reports_its_epsilon() {
        let req = DpRequest {
            rounds: 50,
            ..DpRequest::new(DpTarget::Noise(1.0), 100_000, 50)
        };
        let p = plan_dp(&req).unwrap();
        assert!(
            (p.noise_std - 1.0).abs() < 1e-6,
            "σ = z c w = 1: {}",
            p.noise_std
        );
        assert!(p.epsilon >= p.ideal_epsilon && p.epsilon <= 1.1 * p.ideal_epsilon);
        // 50 rounds of z = 1 is one round of z = 1/√50.
        let one = Rdp::gaussian(1.0, 1.0 / 50.0).epsilon(1e-6).0;
        assert!((p.ideal_epsilon - one).abs() < 1e-6 * one);
    }

    #[test]
    fn the_fast_range_gives_way_when_the_slack_needs_it() {
        // 10^8 parameters, one honest survivor, z = 8: the rounding's √d needs a scale whose
        // variance is far past the fast range.
        let req = DpRequest {
            honest: 1,
            ..DpRequest::new(DpTarget::Noise(8.0), 100_000_000, 20)
        };
        let p = plan_dp(&req).unwrap();
        assert!(p.within_slack, "{p:?}");
        assert!(p.dp.noise > FAST_VARIANCE, "{}", p.dp.noise);
    }

    /// A million clients weighted up to 1000: at a scale whose rounding is within the slack
    /// the signal alone needs more than 32 bits; at 32 the error is over ten times the
    /// Gaussian's.
    #[test]
    fn more_than_32_bits_when_32_cannot_meet_the_slack() {
        let req = DpRequest {
            max_weight: 1000,
            ..DpRequest::new(DpTarget::Epsilon(1.0), 1000, 1_000_000)
        };
        let p = plan_dp(&req).unwrap();
        assert!(p.bits > 32 && p.within_slack, "{p:?}");
        assert!(p.epsilon <= 1.0 && p.wrap_probability <= 1e-6, "{p:?}");
        p.dp.check(1000, p.bits, 1000).unwrap();
        let at = |bits| {
            plan_dp(&DpRequest {
                bits: Some(bits),
                ..req.clone()
            })
            .unwrap()
        };
        let narrow = at(32);
        assert!(!narrow.within_slack && narrow.central_error > 10.0 * p.central_error);
        assert!(!at(p.bits - 1).within_slack);
        // b = 64, given: the rounding's 2^52, not the modulus, bounds the scale.
        let top = at(64);
        assert_eq!(top.bits, 64);
        assert!(top.central_error <= p.central_error && top.epsilon <= 1.0);
        eprintln!("{p:#?}");
    }

    /// The b ≤ 32 choice the plan made before b could exceed 32: the fast range first, then
    /// the sampler's whole range, the smallest b within the slack in each.
    fn within_32_bits(req: &DpRequest) -> Option<DpPlan> {
        for cap in [FAST_VARIANCE, MAX_VARIANCE] {
            for b in 2..=32 {
                if let Some(mut p) = fit(req, b, cap) {
                    p.within_slack = meets_slack(req, &p);
                    if p.within_slack {
                        return Some(p);
                    }
                }
            }
        }
        None
    }

    /// Whenever some b ≤ 32 meets the slack, the plan is the one it was when b stopped at
    /// 32; and when nothing meets it, a wider b is taken only for a lower error.
    #[test]
    fn requests_that_fit_32_bits_plan_as_before() {
        let mut compared = 0;
        for target in [
            DpTarget::Epsilon(0.5),
            DpTarget::Epsilon(4.0),
            DpTarget::Noise(1.0),
        ] {
            for (d, n, w) in [
                (100, 10, 1),
                (10_000, 1000, 1),
                (1_000_000, 100, 1),
                (10_000, 100_000, 1),
                (1000, 1000, 100),
                (100_000, 100, 10_000),
            ] {
                let req = DpRequest {
                    max_weight: w,
                    ..DpRequest::new(target, d, n)
                };
                let Ok(p) = plan_dp(&req) else { continue };
                match within_32_bits(&req) {
                    Some(old) => {
                        assert_eq!(p, old, "{req:?}");
                        compared += 1;
                    }
                    None if !p.within_slack => {
                        for b in 2..=MAX_DP_BITS {
                            if let Ok(q) = plan_dp(&DpRequest {
                                bits: Some(b),
                                ..req.clone()
                            }) {
                                let better = cost(&req, &q) < 0.999 * cost(&req, &p);
                                assert!(!better, "{req:?}: b = {b} beats {}", p.bits);
                            }
                        }
                    }
                    None => assert!(p.bits > 32, "{req:?}"),
                }
            }
        }
        assert!(compared >= 10, "{compared} requests compared");
    }

    #[test]
    fn impossible_and_invalid_requests_say_so() {
        assert!(matches!(
            plan_dp(&DpRequest {
                bits: Some(4),
                ..request()
            }),
            Err(DpPlanError::NoFit { bits: 4, .. })
        ));
        for bad in [
            DpRequest {
                honest: 0,
                ..request()
            },
            DpRequest {
                delta: 0.0,
                ..request()
            },
            DpRequest {
                target: DpTarget::Epsilon(-1.0),
                ..request()
            },
            DpRequest {
                bits: Some(65),
                ..request()
            },
            DpRequest {
                bits: Some(1),
                ..request()
            },
        ] {
            assert!(matches!(plan_dp(&bad), Err(DpPlanError::Invalid(_))));
        }
    }
}
