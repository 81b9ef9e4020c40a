//! The simulator's DP rounds: each client's update drawn whole and encoded through the DP
//! pipeline, and the output checked against the re-encoded inputs (exactly) and against
//! the plaintext (the measured error, next to the noise the survivors added).

use rayon::prelude::*;
use secagg_engine::Lane;

use super::{Check, SimConfig, client_weight, fill_update, rounding_rng, update_rng};
use crate::ClientId;
use crate::dp::skellam::Skellam;
use crate::dp::{DpRound, PreparedSource};
use crate::quantize::{InputError, InputSource};
use crate::server::RoundOutput;

/// What the noise did to a DP round's output.
#[derive(Clone, Debug, PartialEq)]
pub struct DpMeasurement {
    /// Inputs in the sum, each with its noise.
    pub inputs: usize,
    /// The standard deviation per coordinate of the noise in this sum (value units):
    /// √(inputs × μ_c) / s, with μ_c as drawn (the fixed-point λ rounds up).
    pub noise_std: f64,
    /// The most rounding can add to it: √(inputs μ_c + Σ w² / 4) / s.
    pub expected_std_max: f64,
    /// The measured error per coordinate: the RMS of the decoded sum minus Σ w clip(x).
    pub measured_std: f64,
    /// The measured error's mean per coordinate.
    pub measured_mean: f64,
    /// Coordinates measured.
    pub coords: usize,
}

/// Client `id`'s update in a DP round: uniform coordinates whose norm is 0.6, 1.0 or 1.4
/// times the clip (by id), so that some updates are clipped and some are not.
pub(super) fn dp_update(cfg: &SimConfig, id: ClientId) -> Option<Vec<f32>> {
    let dp = cfg.round.dp()?;
    let d = cfg.round.params();
    let spread = [0.6f64, 1.0, 1.4][id.0 as usize % 3];
    // Uniform on ±1.2 a has root-mean-square 1.2 a / √3: norm a √d × 1.2 / √3.
    let a = f64::from(dp.clip) * spread * (3.0 / d as f64).sqrt() / 1.2;
    let mut out = vec![0f32; d];
    fill_update(&mut update_rng(cfg.seed, id, 0), a as f32, &mut out);
    Some(out)
}

/// A client's input, re-made: its encoding, its weighted clipped update, its weight.
type Remade<L> = (Vec<L>, Vec<f64>, u32);

/// Client `id`'s whole DP input, encoded with its rounding RNG (`u32` elements for b ≤ 32,
/// `u64` above; `u64` at b ≤ 32 holds the same values).
fn encode<L: Lane>(cfg: &SimConfig, dp: &DpRound, id: ClientId) -> Result<Vec<L>, InputError> {
    let update = dp_update(cfg, id).unwrap_or_default();
    let mut out = Vec::new();
    dp.encode_into(
        &update,
        client_weight(cfg, id),
        &mut rounding_rng(cfg.seed, id, 0),
        &mut out,
    )?;
    Ok(out)
}

/// Client `id`'s input source in a DP round (`None` for a round without DP).
pub(super) fn dp_source(
    cfg: &SimConfig,
    id: ClientId,
) -> Option<Result<Box<dyn InputSource>, InputError>> {
    let dp = DpRound::of(&cfg.round)?;
    Some(encode(cfg, &dp, id).map(|v| Box::new(PreparedSource::new(v)) as Box<dyn InputSource>))
}

/// Client `id`'s whole DP input at b > 32 (`None` for a round without DP).
pub(super) fn dp_input_wide(cfg: &SimConfig, id: ClientId) -> Option<Result<Vec<u64>, InputError>> {
    let dp = DpRound::of(&cfg.round)?;
    Some(encode(cfg, &dp, id))
}

/// Checks a DP round's output: the integer sum against the included clients' inputs
/// re-encoded from the seed (exact), and the decoded sum against Σ w clip(x) (the
/// measurement). The check's error is the measured RMS and its bound the largest the noise
/// and rounding explain, plus six standard errors of the estimate.
pub(super) fn check(cfg: &SimConfig, out: &RoundOutput) -> Option<(Check, DpMeasurement)> {
    let round = DpRound::of(&cfg.round)?;
    Some(if out.sum_wide.is_empty() {
        measure(cfg, out, &round, out.sum.clone())
    } else {
        measure(cfg, out, &round, out.sum_wide.clone())
    })
}

/// [`check`] with the output's sum `got` in its lanes (`u32` for b ≤ 32, `u64` above).
fn measure<L: Lane>(
    cfg: &SimConfig,
    out: &RoundOutput,
    round: &DpRound,
    got: Vec<L>,
) -> (Check, DpMeasurement) {
    let dp = *round.config();
    let d = cfg.round.params();
    let mask = cfg.round.modulus().mask_u64();
    let expected = super::expected_included(cfg, out);
    let included_ok = out.included == expected;
    // Each included client's input and clipped update, re-made a batch at a time in
    // parallel (a batch per core, so memory stays O(cores × d)).
    let mut sum = vec![L::default(); d + 1];
    let mut clipped = vec![0f64; d];
    let mut squares = 0f64;
    let mut ok = true;
    for batch in expected.chunks(rayon::current_num_threads().max(1)) {
        let made: Vec<Option<Remade<L>>> = batch
            .par_iter()
            .map(|&id| {
                let input = encode(cfg, round, id).ok()?;
                let update = dp_update(cfg, id)?;
                let norm = update
                    .iter()
                    .map(|v| f64::from(*v) * f64::from(*v))
                    .sum::<f64>()
                    .sqrt();
                let c = f64::from(dp.clip);
                let w = client_weight(cfg, id);
                let f = if norm > c { c / norm } else { 1.0 } * f64::from(w);
                Some((input, update.iter().map(|v| f64::from(*v) * f).collect(), w))
            })
            .collect();
        ok &= made.iter().all(Option::is_some);
        for (input, x, w) in made.into_iter().flatten() {
            for (s, v) in sum.iter_mut().zip(&input) {
                *s = L::from_u64(s.to_u64().wrapping_add(v.to_u64()) & mask);
            }
            for (s, v) in clipped.iter_mut().zip(&x) {
                *s += v;
            }
            squares += f64::from(w) * f64::from(w);
        }
    }
    let total_weight = sum.pop().map_or(0, L::to_u64);
    ok &= got == sum && out.total_weight == total_weight;
    let decoded = round.decode_sum(got);
    let residual: Vec<f64> = decoded
        .iter()
        .zip(&clipped)
        .map(|(g, w)| f64::from(*g) - w)
        .collect();
    let coords = residual.len().max(1) as f64;
    let measured_mean = residual.iter().sum::<f64>() / coords;
    let measured_std = (residual.iter().map(|r| r * r).sum::<f64>() / coords).sqrt();
    let actual = Skellam::new(dp.noise).map_or(dp.noise, |s| s.actual_variance());
    let inputs = expected.len();
    let noise_var = inputs as f64 * actual;
    let max_var = noise_var + squares / 4.0;
    let m = DpMeasurement {
        inputs,
        noise_std: noise_var.sqrt() / dp.scale,
        expected_std_max: max_var.sqrt() / dp.scale,
        measured_std,
        measured_mean,
        coords: residual.len(),
    };
    // The RMS of `coords` draws estimates the standard deviation to within about
    // 1/√(2 coords) relative.
    let bound = m.expected_std_max * (1.0 + 6.0 / (2.0 * coords).sqrt());
    let check = Check {
        exact: ok,
        included_ok,
        max_error: measured_std,
        bound,
    };
    (check, m)
}
