//! `f32` updates to integers mod 2^b and back: clipping, unbiased stochastic rounding onto q
//! levels, an integer weight, and the dequantized sum and weighted mean.

use rand_core::Rng;
use zeroize::Zeroize;

use crate::config::Quantization;

/// Why an input vector was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The vector has the wrong number of parameters.
    #[error("input has {got} parameters, the round expects {want}")]
    Length {
        /// Parameters given.
        got: usize,
        /// Parameters expected.
        want: usize,
    },
    /// A NaN in the input (infinities are clipped; NaN has no meaning to clip).
    #[error("input element {index} is NaN")]
    NaN {
        /// Position.
        index: usize,
    },
    /// A weight of zero or above the round's maximum.
    #[error("weight {weight} is out of range 1..={max}")]
    Weight {
        /// Weight given.
        weight: u32,
        /// The round's maximum.
        max: u32,
    },
}

/// The levels of `x`: `x` clipped to [−c, c], mapped onto `0..=q−1` and rounded up with
/// probability equal to its fractional part, so the expectation is exact.
pub fn quantize_into<R: Rng + ?Sized>(
    x: &[f32],
    q: &Quantization,
    weight: u32,
    rng: &mut R,
    out: &mut Vec<u32>,
) -> Result<(), InputError> {
    if weight == 0 || weight > q.max_weight {
        return Err(InputError::Weight {
            weight,
            max: q.max_weight,
        });
    }
    if let Some(index) = x.iter().position(|v| v.is_nan()) {
        return Err(InputError::NaN { index });
    }
    let c = f64::from(q.clip);
    let top = f64::from(q.levels - 1);
    let scale = top / (2.0 * c);
    out.clear();
    out.reserve(x.len() + 1);
    // 32 random bits per value decide the rounding: the probability of rounding up is the
    // fractional part to within 2^-32, far below the quantization step itself.
    let mut random = [0u8; 1024];
    for block in x.chunks(random.len() / 4) {
        rng.fill_bytes(&mut random);
        for (&v, r) in block.iter().zip(random.chunks_exact(4)) {
            let r = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
            let u = ((f64::from(v).clamp(-c, c) + c) * scale).clamp(0.0, top);
            let floor = u as u32;
            let frac = u - f64::from(floor);
            let level = floor + u32::from(f64::from(r) < frac * 4_294_967_296.0);
            out.push(level.min(q.levels - 1) * weight);
        }
    }
    random.zeroize();
    out.push(weight);
    Ok(())
}

/// [`quantize_into`] into a fresh vector: m levels followed by the weight element.
pub fn quantize<R: Rng + ?Sized>(
    x: &[f32],
    q: &Quantization,
    weight: u32,
    rng: &mut R,
) -> Result<Vec<u32>, InputError> {
    let mut out = Vec::new();
    quantize_into(x, q, weight, rng, &mut out)?;
    Ok(out)
}

/// The weighted sum Σ w_u x_u from the integer sum of levels and the total weight W:
/// Σ w_u (2c·ℓ_u/(q−1) − c) = 2c·S/(q−1) − c·W.
pub fn dequantize_sum(sum: &[u32], total_weight: u64, q: &Quantization) -> Vec<f32> {
    let c = f64::from(q.clip);
    let step = 2.0 * c / f64::from(q.levels - 1);
    let offset = c * total_weight as f64;
    sum.iter()
        .map(|&s| (f64::from(s) * step - offset) as f32)
        .collect()
}

/// The largest error quantization can add to one element of a sum over clients of total
/// weight W: each client's rounding moves its value by less than one level step, times its
/// weight.
pub fn error_bound(total_weight: u64, q: &Quantization) -> f64 {
    2.0 * f64::from(q.clip) / f64::from(q.levels - 1) * total_weight as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    fn q() -> Quantization {
        Quantization {
            clip: 2.0,
            levels: 101,
            max_weight: 5,
        }
    }

    #[test]
    fn clipping_and_exact_levels() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // -2 -> level 0, 0 -> level 50, 2 -> level 100, beyond the clip -> the ends.
        let v = quantize(&[-2.0, 0.0, 2.0, 9.0, f32::NEG_INFINITY], &q(), 1, &mut rng).unwrap();
        assert_eq!(v, vec![0, 50, 100, 100, 0, 1]);
        let w = quantize(&[0.0], &q(), 3, &mut rng).unwrap();
        assert_eq!(w, vec![150, 3]);
    }

    #[test]
    fn stochastic_rounding_is_unbiased() {
        let mut rng =
            ChaCha8Rng::seed_from_u64(secagg_engine::testing::test_seed("quantize::unbiased"));
        // 0.01 is a quarter of a level step (0.04) above level 50.
        let n = 40_000;
        let total: u64 = (0..n)
            .map(|_| u64::from(quantize(&[0.01], &q(), 1, &mut rng).unwrap()[0]))
            .sum();
        let mean = total as f64 / n as f64;
        assert!((mean - 50.25).abs() < 0.02, "mean level {mean}");
    }

    #[test]
    fn dequantized_sum_is_within_the_bound() {
        let mut rng =
            ChaCha8Rng::seed_from_u64(secagg_engine::testing::test_seed("quantize::bound"));
        let xs = [[0.3f32, -1.7, 1.99], [-0.05, 0.5, -2.5], [1.0, 1.0, 1.0]];
        let ws = [1u32, 5, 2];
        let mut sum = [0u32; 4];
        for (x, w) in xs.iter().zip(ws) {
            let v = quantize(x, &q(), w, &mut rng).unwrap();
            sum.iter_mut().zip(v).for_each(|(s, v)| *s += v);
        }
        let total_weight = u64::from(sum[3]);
        assert_eq!(total_weight, 8);
        let got = dequantize_sum(&sum[..3], total_weight, &q());
        for j in 0..3 {
            let want: f64 = xs
                .iter()
                .zip(ws)
                .map(|(x, w)| f64::from(x[j].clamp(-2.0, 2.0)) * f64::from(w))
                .sum();
            assert!(
                (f64::from(got[j]) - want).abs() <= error_bound(total_weight, &q()),
                "element {j}: {} vs {want}",
                got[j]
            );
        }
    }

    #[test]
    fn bad_inputs_are_refused() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(
            quantize(&[1.0, f32::NAN], &q(), 1, &mut rng),
            Err(InputError::NaN { index: 1 })
        );
        assert!(quantize(&[1.0], &q(), 0, &mut rng).is_err());
        assert!(quantize(&[1.0], &q(), 6, &mut rng).is_err());
    }
}
