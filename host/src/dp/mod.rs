//! Distributed differential privacy under the masks.
//!
//! In a DP round ([`crate::RoundConfig::dp`]) each client turns its `f32` update `x` (d
//! parameters) and integer weight `w` into its masked input in five steps, all before any
//! mask is added, so the server only ever sees the noisy sum:
//!
//! 1. **Rotate** `x` with the round's randomized Hadamard transform ([`hadamard`]); its signs
//!    come from the round digest, so every client uses the same one.
//! 2. **Clip** the rotated vector to L2 norm `c` (the rotation is orthogonal, so this is the
//!    clip of `x` up to floating-point error; clipping after it makes the bound hold for
//!    the vector actually rounded).
//! 3. **Scale** by `s` and **round** each coordinate stochastically to an integer (up with
//!    probability equal to its fractional part). With conditional rounding (β > 0, Kairouz,
//!    Liu and Steinke, ICML 2021) the rounding is redrawn until the rounded vector's norm is
//!    within [`DpConfig::rounded_norm`]; with β = 0 that bound, `c s + √d`, always holds. The
//!    client checks it either way, so the sensitivity the accountant uses is enforced, not
//!    assumed.
//! 4. **Weight**: multiply by `w` (at most the round's `max_weight`).
//! 5. **Noise**: add Skellam noise of variance μ_c (the configuration's
//!    [`DpConfig::noise`]) to every coordinate, drawn from the client's round RNG
//!    ([`skellam`]), and reduce mod 2^b.
//!
//! The weight element stays last and carries no noise. The server sums as in any round,
//! then [`DpRound::decode_sum`] maps each element to [−2^(b−1), 2^(b−1)), divides by `s` and undoes
//! the rotation: the result is Σ w_u clip(x_u) plus the noise of every client whose input is
//! in the sum, divided by `s`. The rounded vector and the noise are secret: the buffers that
//! hold them are zeroized. Any b in 2..=64 works: up to 32 the values are `u32`, above it
//! `u64` (the same draws; the server's sum is then
//! [`RoundOutput::sum_wide`](crate::server::RoundOutput::sum_wide)). What bounds the scale
//! at large b is the rounding, which works on integers below 2^52, and the f32 update: a
//! scale finer than the update's own precision adds nothing.
//!
//! # Threat model: what the noise assumes
//!
//! The server chooses the configuration, and it may collude with up to `c` clients (the
//! client's [`crate::ClientPolicy::colluders`]) whose noise it knows or who add none. The
//! noise is therefore sized so that the **honest survivors alone** meet the target: the
//! configuration says how many honest survivors `h` its per-client variance μ_c was sized
//! for (the central variance the accountant uses is `h μ_c`), and a client refuses the
//! round when its own policy guarantees fewer honest inputs in any sum holding its input:
//! `max(T − c, T_policy)`, with T the survivors a released sum needs (the round's
//! `min_survivors`, which every client checks on the survivor list) and `T_policy` its own
//! minimum cohort, and against a semi-malicious server at most `k − t + 2` (it can isolate
//! an input with k − t + 1 other honest ones; see
//! [`crate::ClientPolicy::honest_survivors`]). Dropouts cannot lower it below that: a sum
//! with fewer survivors is never unmasked. More honest survivors only add noise.
//!
//! Adjacency is per client with the client still taking part: the privacy bound covers
//! replacing one client's update by zero (its noise is drawn regardless of its data). The
//! total weight Σ w is released exactly: treat the weights as public, or use weight 1.
//! With weights, each client's contribution is `w z̃`, so the sensitivity is `max_weight`
//! times the rounded norm: the noise must be sized for the largest weight, and the noise of
//! the weighted mean is the sum's noise divided by Σ w.

pub mod accountant;
pub mod hadamard;
pub mod skellam;
#[cfg(test)]
mod tests;

use rand_core::Rng;
use secagg_engine::Lane;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::config::RoundConfig;
use crate::crypto::RoundDigest;
use crate::error::ConfigError;
use crate::quantize::{InputError, InputSource};
use hadamard::Rotation;
use skellam::Skellam;

/// Conditional rounding redraws at most this many times (each redraw fails with
/// probability at most β; 64 failures in a row are practically impossible, and refused).
const MAX_ROUNDING_TRIES: u32 = 64;

/// The DP setting of a round. It enters the round digest, so every client signs the same
/// clip, scale, noise and rotation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpConfig {
    /// c: each client's update is clipped to this L2 norm.
    pub clip: f32,
    /// s: integer units per unit of value (the grid step is 1/s).
    pub scale: f64,
    /// μ_c: the variance of the Skellam noise each client adds to each coordinate, in
    /// integer units.
    pub noise: f64,
    /// h: the honest survivors the noise is sized for; `h μ_c` is the central variance the
    /// privacy accounting assumes.
    pub honest: u32,
    /// β: conditional rounding's failure probability (0: plain stochastic rounding).
    pub beta: f64,
}

/// The L1 and L2 sensitivity of one client's contribution, in integer units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sensitivity {
    /// Δ2: bound on the L2 norm of a client's weighted, rounded vector.
    pub l2: f64,
    /// Δ1: bound on its L1 norm.
    pub l1: f64,
}

impl DpConfig {
    /// Checks the setting for a round of `params` parameters, modulus 2^`bits` and weights up
    /// to `max_weight`.
    pub fn check(&self, params: usize, bits: u32, max_weight: u32) -> Result<(), ConfigError> {
        let bad = |field: &'static str, why: String| Err(ConfigError::Dp { field, why });
        // The pipeline encodes, wraps and decodes at any b the engines take (32-bit lanes up
        // to 32 bits, 64-bit lanes above).
        if !(2..=64).contains(&bits) {
            return Err(ConfigError::Bits { b: bits });
        }
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return bad("clip", format!("{} is not a positive number", self.clip));
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return bad("scale", format!("{} is not a positive number", self.scale));
        }
        if !(self.noise.is_finite() && self.noise > 0.0 && self.noise <= skellam::MAX_VARIANCE) {
            return bad(
                "noise",
                format!("variance {} is outside (0, 2^40]", self.noise),
            );
        }
        if self.honest == 0 {
            return bad(
                "honest",
                "the noise must be sized for at least one client".into(),
            );
        }
        if !(self.beta.is_finite() && (0.0..1.0).contains(&self.beta)) {
            return bad("beta", format!("{} is outside [0, 1)", self.beta));
        }
        // One client's largest coordinate must fit in half the modulus (else the sum means
        // nothing), and the rounding works on integers below 2^52.
        let top = f64::from(self.clip) * self.scale * f64::from(max_weight);
        let half = 2f64.powi(bits as i32 - 1);
        if top >= half.min(2f64.powi(52)) {
            return bad(
                "scale",
                format!(
                    "clip x scale x max weight = {top} does not fit below 2^{}",
                    bits - 1
                ),
            );
        }
        if params == 0 {
            return bad("params", "no parameters".into());
        }
        Ok(())
    }

    /// A bound on the L2 norm of a client's rounded vector (before its weight), which the
    /// client enforces: `c s + √d` (always true of stochastic rounding), or with β > 0 the
    /// smaller `√(c²s² + d/4 + √(2 ln(1/β)) (c s + √d / 2))` of Kairouz, Liu and Steinke
    /// (ICML 2021), Theorem 1, which holds with probability at least 1 − β per draw.
    pub fn rounded_norm(&self, params: usize) -> f64 {
        let cs = f64::from(self.clip) * self.scale;
        let d = params as f64;
        let always = cs + d.sqrt();
        if self.beta == 0.0 {
            return always;
        }
        let squared =
            cs * cs + d / 4.0 + (2.0 * (1.0 / self.beta).ln()).sqrt() * (cs + d.sqrt() / 2.0);
        always.min(squared.sqrt())
    }

    /// The sensitivities of one client's weighted, rounded vector: Δ2 = `max_weight` ×
    /// [`rounded_norm`](Self::rounded_norm), Δ1 = `max_weight` × ‖z‖₂ min(√d, ‖z‖₂) (an
    /// integer vector's L1 norm is at most its squared L2 norm, and at most √d times it).
    pub fn sensitivity(&self, params: usize, max_weight: u32) -> Sensitivity {
        let l2 = self.rounded_norm(params);
        let w = f64::from(max_weight);
        Sensitivity {
            l2: w * l2,
            l1: w * l2 * l2.min((params as f64).sqrt()),
        }
    }

    /// The central variance the accounting assumes: `h μ_c`, in integer units.
    pub fn central_variance(&self) -> f64 {
        f64::from(self.honest) * self.noise
    }
}

/// A DP round as a client or the server needs it: the setting, the round's shape and the
/// rotation.
pub struct DpRound {
    dp: DpConfig,
    params: usize,
    bits: u32,
    max_weight: u32,
    rotation: Rotation,
}

impl DpRound {
    /// The DP round of `params` parameters mod 2^`bits` with weights up to `max_weight`,
    /// rotating with signs from `seed` (a round's [`rotation_seed`]). `dp` must have passed
    /// [`DpConfig::check`] for this shape.
    pub fn new(dp: DpConfig, params: usize, bits: u32, max_weight: u32, seed: [u8; 32]) -> Self {
        Self {
            dp,
            params,
            bits,
            max_weight,
            rotation: Rotation::new(params, seed),
        }
    }

    /// The DP part of `config`, or `None` for a round without DP.
    pub fn of(config: &RoundConfig) -> Option<Self> {
        let dp = config.dp()?;
        Some(Self::new(
            dp,
            config.params(),
            config.modulus().bits(),
            config.quantization().max_weight,
            rotation_seed(&RoundDigest::of(config)),
        ))
    }

    /// The setting.
    pub fn config(&self) -> &DpConfig {
        &self.dp
    }

    /// The rotation.
    pub fn rotation(&self) -> &Rotation {
        &self.rotation
    }

    /// A client's masked-input values for `update` with `weight`: the d noisy coordinates,
    /// then the weight (see the module docs), in the round's lanes: `u32` for b ≤ 32, `u64`
    /// above (the same draws either way, so `u64` elements at b ≤ 32 hold the `u32` values).
    pub fn encode_into<R: Rng + ?Sized, L: Lane>(
        &self,
        update: &[f32],
        weight: u32,
        rng: &mut R,
        out: &mut Vec<L>,
    ) -> Result<(), InputError> {
        if L::BITS < self.bits {
            return Err(InputError::Source(format!(
                "a round mod 2^{} needs 64-bit elements, not {}-bit",
                self.bits,
                L::BITS
            )));
        }
        if update.len() != self.params {
            return Err(InputError::Length {
                got: update.len(),
                want: self.params,
            });
        }
        if let Some(index) = update.iter().position(|v| v.is_nan()) {
            return Err(InputError::NaN { index });
        }
        if weight == 0 || weight > self.max_weight {
            return Err(InputError::Weight {
                weight,
                max: self.max_weight,
            });
        }
        let noise = Skellam::new(self.dp.noise).map_err(InputError::Noise)?;
        let (rotated, factor) = self.rotate_and_clip(update);
        self.round_into(&rotated.0, factor, weight, rng, out)?;
        drop(rotated);
        noise.add_to_lanes(rng, out, self.mask());
        out.push(L::from_u64(u64::from(weight)));
        Ok(())
    }

    /// 2^b − 1.
    fn mask(&self) -> u64 {
        u64::MAX >> (64 - self.bits)
    }

    /// Steps 1 and 2: the rotated update, and the factor that clips it to c and scales it
    /// by s.
    fn rotate_and_clip(&self, update: &[f32]) -> (Secret, f64) {
        let mut rotated = Secret(
            update
                .iter()
                .map(|v| v.clamp(-f32::MAX, f32::MAX))
                .collect::<Vec<f32>>(),
        );
        self.rotation.forward(&mut rotated.0);
        let norm = rotated
            .0
            .iter()
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            .sqrt();
        // A hair inside c, for the f32 arithmetic.
        let clip = f64::from(self.dp.clip) * (1.0 - 1e-6);
        let factor = self.dp.scale * if norm > clip { clip / norm } else { 1.0 };
        (rotated, factor)
    }

    /// Steps 3 and 4: `rotated · factor` rounded stochastically (redrawn until its norm is
    /// within [`DpConfig::rounded_norm`]), times `weight`, mod 2^b, into `out`. Returns the
    /// squared norm of the accepted rounding.
    fn round_into<R: Rng + ?Sized, L: Lane>(
        &self,
        rotated: &[f32],
        factor: f64,
        weight: u32,
        rng: &mut R,
        out: &mut Vec<L>,
    ) -> Result<u128, InputError> {
        let bound = self.dp.rounded_norm(self.params);
        let bound_sq = (bound * bound).floor() as u128;
        let mask = self.mask();
        let w = i64::from(weight);
        out.clear();
        out.resize(rotated.len(), L::default());
        for tries in 1..=MAX_ROUNDING_TRIES {
            let mut norm_sq = 0u128;
            for (o, v) in out.iter_mut().zip(rotated) {
                let z = f64::from(*v) * factor;
                let floor = z.floor();
                // 32 random bits: rounds up with probability frac to within 2^-32.
                let up = f64::from(rng.next_u32()) < (z - floor) * 4_294_967_296.0;
                let r = floor as i64 + i64::from(up);
                norm_sq += u128::from(r.unsigned_abs()) * u128::from(r.unsigned_abs());
                // |w r| < 2^52 (the setting's check): two's complement mod 2^64, masked.
                *o = L::from_u64((w * r) as u64 & mask);
            }
            if norm_sq <= bound_sq {
                return Ok(norm_sq);
            }
            if tries == MAX_ROUNDING_TRIES {
                bytemuck::cast_slice_mut::<L, u8>(out).zeroize();
                return Err(InputError::Rounding { tries });
            }
        }
        Err(InputError::Rounding { tries: 0 })
    }

    /// The weighted sum Σ w_u x_u (plus the noise) from the round's integer sum of d
    /// elements (`u32` for b ≤ 32, in the same memory; `u64` above, from
    /// [`RoundOutput::sum_wide`](crate::server::RoundOutput::sum_wide)): centred to
    /// [−2^(b−1), 2^(b−1)), divided by s, rotated back.
    pub fn decode_sum<L: Lane>(&self, sum: Vec<L>) -> Vec<f32> {
        let inv = 1.0 / self.dp.scale;
        let mut values: Vec<f32> = sum
            .into_iter()
            .map(|s| (centre(s.to_u64(), self.bits) as f64 * inv) as f32)
            .collect();
        if values.len() == self.params {
            self.rotation.inverse(&mut values);
        }
        values
    }
}

/// `v mod 2^bits` (2 ≤ bits ≤ 64) as the integer in [−2^(bits−1), 2^(bits−1)) it stands
/// for: the low `bits` bits, sign-extended.
pub fn centre(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// A secret `f32` buffer, zeroized when dropped.
struct Secret(Vec<f32>);

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The seed of the round's rotation signs: SHA-256 over a label and the round digest, so
/// every party derives it from the configuration they all signed.
pub fn rotation_seed(round: &RoundDigest) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"secagg/v2/dp-rotation");
    h.update(round.0);
    h.finalize().into()
}

/// An input already encoded in full (a DP input needs the whole update for its rotation),
/// handed out in pieces; zeroized when dropped.
pub struct PreparedSource {
    values: Vec<u32>,
    at: usize,
}

impl PreparedSource {
    /// A source over `values` (m noisy values and the weight).
    pub fn new(values: Vec<u32>) -> Self {
        Self { values, at: 0 }
    }
}

impl InputSource for PreparedSource {
    fn fill(&mut self, out: &mut [u32]) -> Result<(), InputError> {
        let end = self.at.saturating_add(out.len());
        let Some(piece) = self.values.get(self.at..end) else {
            return Err(InputError::Source(format!(
                "asked for {} values at {}, past the input's {}",
                out.len(),
                self.at,
                self.values.len()
            )));
        };
        out.copy_from_slice(piece);
        self.at = end;
        Ok(())
    }
}

impl Drop for PreparedSource {
    fn drop(&mut self) {
        self.values.zeroize();
    }
}
