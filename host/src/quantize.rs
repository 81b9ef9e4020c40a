//! `f32` updates to integers mod 2^b and back: clipping, unbiased stochastic rounding onto q
//! levels, an integer weight, and the dequantized sum and weighted mean.

use rand_core::Rng;
use zeroize::Zeroize;

use secagg_engine::Lane;

use crate::config::{Quantization, RoundConfig};

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
    /// A streamed input's source failed or did not give the values the round needs.
    #[error("reading the input failed: {0}")]
    Source(String),
    /// A DP round's noise could not be drawn for the configured variance.
    #[error("noise: {0}")]
    Noise(crate::dp::skellam::NoiseError),
    /// A DP round's conditional rounding exceeded its norm bound on every try.
    #[error("conditional rounding exceeded its norm bound {tries} times in a row")]
    Rounding {
        /// Draws made.
        tries: u32,
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

/// Quantizes an update a piece at a time: clipping to [−c, c], unbiased stochastic rounding
/// onto `0..=q−1` and the weight, drawing 32 random bits per value in order, so that any
/// split of the update into pieces gives the same levels as one call on the whole of it.
pub struct Quantizer {
    clip: f64,
    top: f64,
    scale: f64,
    levels: u32,
    weight: u32,
    random: [u8; 1024],
    used: usize,
}

impl Quantizer {
    /// A quantizer for `q` and `weight` (refused when 0 or above `q.max_weight`).
    pub fn new(q: &Quantization, weight: u32) -> Result<Self, InputError> {
        if weight == 0 || weight > q.max_weight {
            return Err(InputError::Weight {
                weight,
                max: q.max_weight,
            });
        }
        let clip = f64::from(q.clip);
        let top = f64::from(q.levels - 1);
        Ok(Self {
            clip,
            top,
            scale: top / (2.0 * clip),
            levels: q.levels,
            weight,
            random: [0; 1024],
            used: 1024,
        })
    }

    /// The weight every level is multiplied by.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Writes the levels (times the weight) of `x` into `out` (the same length), in the
    /// round's lanes (`u64` for b > 32). `first` is the position of `x[0]` in the whole
    /// update, for the error a NaN gets.
    pub fn quantize<R: Rng + ?Sized, L: Lane>(
        &mut self,
        x: &[f32],
        first: usize,
        rng: &mut R,
        out: &mut [L],
    ) -> Result<(), InputError> {
        if let Some(i) = x.iter().position(|v| v.is_nan()) {
            return Err(InputError::NaN { index: first + i });
        }
        let (c, top, scale) = (self.clip, self.top, self.scale);
        for (&v, o) in x.iter().zip(out.iter_mut()) {
            if self.used == self.random.len() {
                rng.fill_bytes(&mut self.random);
                self.used = 0;
            }
            let r = &self.random[self.used..self.used + 4];
            self.used += 4;
            // 32 random bits per value decide the rounding: the probability of rounding up
            // is the fractional part to within 2^-32, far below the quantization step.
            let r = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
            let u = ((f64::from(v).clamp(-c, c) + c) * scale).clamp(0.0, top);
            let floor = u as u32;
            let frac = u - f64::from(floor);
            let level = floor + u32::from(f64::from(r) < frac * 4_294_967_296.0);
            *o = L::from_u64(u64::from(level.min(self.levels - 1)) * u64::from(self.weight));
        }
        Ok(())
    }
}

impl Drop for Quantizer {
    fn drop(&mut self) {
        self.random.zeroize();
    }
}

/// The levels of `x`: `x` clipped to [−c, c], mapped onto `0..=q−1` and rounded up with
/// probability equal to its fractional part, so the expectation is exact; then the weight
/// as the last element. `u32` elements for b ≤ 32, `u64` above.
pub fn quantize_into<R: Rng + ?Sized, L: Lane>(
    x: &[f32],
    q: &Quantization,
    weight: u32,
    rng: &mut R,
    out: &mut Vec<L>,
) -> Result<(), InputError> {
    let mut quantizer = Quantizer::new(q, weight)?;
    out.clear();
    out.resize(x.len(), L::default());
    quantizer.quantize(x, 0, rng, out)?;
    out.push(L::from_u64(u64::from(weight)));
    Ok(())
}

/// A client's quantized input, read a piece at a time while it is masked and sent, for
/// inputs too large to hold in memory (see [`crate::Client::set_input_source`]).
pub trait InputSource: Send + Sync {
    /// Fills `out` with the input's next `out.len()` values. The input is m levels (each
    /// times the weight, below 2^b) followed by the weight: m + 1 values, read in order
    /// from the first, in pieces of any size.
    fn fill(&mut self, out: &mut [u32]) -> Result<(), InputError>;
}

/// An [`InputSource`] that reads the `f32` update in order through `read` (which fills
/// its slice with the next values) and quantizes it as [`quantize_into`] would.
pub struct QuantizingSource<F, R> {
    read: F,
    rng: R,
    quantizer: Quantizer,
    params: usize,
    at: usize,
    buf: Vec<f32>,
}

impl<F, R> QuantizingSource<F, R>
where
    F: FnMut(&mut [f32]) -> Result<(), InputError> + Send + Sync,
    R: Rng + Send + Sync,
{
    /// A source of `params` values read by `read`, quantized for `q` with `weight`, rounding
    /// with `rng`.
    pub fn new(
        read: F,
        params: usize,
        q: &Quantization,
        weight: u32,
        rng: R,
    ) -> Result<Self, InputError> {
        Ok(Self {
            read,
            rng,
            quantizer: Quantizer::new(q, weight)?,
            params,
            at: 0,
            buf: Vec::new(),
        })
    }
}

impl<F, R> InputSource for QuantizingSource<F, R>
where
    F: FnMut(&mut [f32]) -> Result<(), InputError> + Send + Sync,
    R: Rng + Send + Sync,
{
    fn fill(&mut self, out: &mut [u32]) -> Result<(), InputError> {
        let left = (self.params + 1).saturating_sub(self.at);
        if out.len() > left {
            return Err(InputError::Source(format!(
                "asked for {} values at {}, past the input's {} + 1",
                out.len(),
                self.at,
                self.params
            )));
        }
        let levels = out.len().min(self.params.saturating_sub(self.at));
        self.buf.resize(levels, 0.0);
        let filled = (self.read)(&mut self.buf).and_then(|()| {
            self.quantizer
                .quantize(&self.buf, self.at, &mut self.rng, &mut out[..levels])
        });
        self.buf.zeroize();
        filled?;
        self.at += levels;
        if out.len() > levels {
            out[levels] = self.quantizer.weight();
            self.at += 1;
        }
        Ok(())
    }
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
    let one = dequantizer(total_weight, q);
    sum.iter().map(|&s| one(f64::from(s))).collect()
}

/// [`dequantize_sum`] for a sum at b > 32 (64-bit elements).
pub fn dequantize_sum_wide(sum: &[u64], total_weight: u64, q: &Quantization) -> Vec<f32> {
    let one = dequantizer(total_weight, q);
    sum.iter().map(|&s| one(s as f64)).collect()
}

/// [`dequantize_sum`] in place: the `u32` sum's memory becomes the `f32` result (a large
/// model's sum is gigabytes; this needs no second copy).
pub fn dequantize_sum_owned(sum: Vec<u32>, total_weight: u64, q: &Quantization) -> Vec<f32> {
    let one = dequantizer(total_weight, q);
    // Same size and alignment: the standard library collects this into the same allocation.
    sum.into_iter().map(|s| one(f64::from(s))).collect()
}

/// A round's integer sum (m elements) as the `f32` weighted sum Σ w_u x_u, in place:
/// [`dequantize_sum_owned`], or in a DP round the DP decoding (centred, descaled, rotated
/// back: the sum plus the noise, see [`crate::dp`]).
pub fn decode_sum_owned(sum: Vec<u32>, total_weight: u64, config: &RoundConfig) -> Vec<f32> {
    match crate::dp::DpRound::of(config) {
        Some(dp) => dp.decode_sum(sum),
        None => dequantize_sum_owned(sum, total_weight, &config.quantization()),
    }
}

/// [`decode_sum_owned`] for a sum at b > 32 (64-bit elements,
/// [`RoundOutput::sum_wide`](crate::server::RoundOutput::sum_wide)).
pub fn decode_sum_wide(sum: Vec<u64>, total_weight: u64, config: &RoundConfig) -> Vec<f32> {
    match crate::dp::DpRound::of(config) {
        Some(dp) => dp.decode_sum(sum),
        None => dequantize_sum_wide(&sum, total_weight, &config.quantization()),
    }
}

/// One element of the sum, dequantized.
fn dequantizer(total_weight: u64, q: &Quantization) -> impl Fn(f64) -> f32 {
    let c = f64::from(q.clip);
    let step = 2.0 * c / f64::from(q.levels - 1);
    let offset = c * total_weight as f64;
    move |s| (s * step - offset) as f32
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
    fn a_source_read_in_pieces_quantizes_as_the_whole() {
        let seed = secagg_engine::testing::test_seed("quantize::pieces");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let m = 1000 + (rng.next_u32() % 3000) as usize;
        let x: Vec<f32> = (0..m)
            .map(|_| (rng.next_u32() as f32 / u32::MAX as f32) * 5.0 - 2.5)
            .collect();
        let whole = quantize(&x, &q(), 3, &mut ChaCha8Rng::seed_from_u64(seed ^ 1)).unwrap();
        for sizes in [vec![1usize], vec![7, 256, 1], vec![4096], vec![255, 257]] {
            let mut at = 0;
            let data = x.clone();
            let read = move |out: &mut [f32]| {
                out.copy_from_slice(&data[at..at + out.len()]);
                at += out.len();
                Ok(())
            };
            let mut source =
                QuantizingSource::new(read, m, &q(), 3, ChaCha8Rng::seed_from_u64(seed ^ 1))
                    .unwrap();
            let mut got = Vec::new();
            let mut i = 0;
            while got.len() < m + 1 {
                let n = sizes[i % sizes.len()].min(m + 1 - got.len());
                let mut piece = vec![0u32; n];
                source.fill(&mut piece).unwrap();
                got.extend_from_slice(&piece);
                i += 1;
            }
            assert_eq!(got, whole, "pieces of {sizes:?} (seed {seed})");
            // Past the end is an error, not a panic.
            assert!(matches!(
                source.fill(&mut [0u32; 1]),
                Err(InputError::Source(_))
            ));
        }
    }

    #[test]
    fn dequantizing_in_place_matches_and_reuses_the_memory() {
        let sum: Vec<u32> = (0..1000u32).map(|i| i * 37 % 301).collect();
        let want = dequantize_sum(&sum, 3, &q());
        let ptr = sum.as_ptr() as usize;
        let got = dequantize_sum_owned(sum, 3, &q());
        assert_eq!(got, want);
        assert_eq!(got.as_ptr() as usize, ptr, "a second allocation was made");
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
