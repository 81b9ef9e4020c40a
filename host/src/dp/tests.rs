//! The client pipeline and the server's decoding, against plaintext references.

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg_engine::Lane;

use super::*;

fn setting(noise: f64, scale: f64, beta: f64) -> DpConfig {
    DpConfig {
        clip: 1.0,
        scale,
        noise,
        honest: 1,
        beta,
    }
}

fn uniform(rng: &mut ChaCha20Rng, d: usize, amplitude: f32) -> Vec<f32> {
    (0..d)
        .map(|_| (rng.next_u32() as f32 / u32::MAX as f32 * 2.0 - 1.0) * amplitude)
        .collect()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt()
}

/// The plaintext the decoded sum estimates: Σ w clip_c(x).
fn clipped_sum(updates: &[(Vec<f32>, u32)], clip: f64, d: usize) -> Vec<f64> {
    let mut want = vec![0f64; d];
    for (x, w) in updates {
        let n = norm(x);
        let f = if n > clip { clip / n } else { 1.0 } * f64::from(*w);
        for (s, v) in want.iter_mut().zip(x) {
            *s += f * f64::from(*v);
        }
    }
    want
}

/// Σ encoded mod 2^b, in u128 (independent of the lanes' own wrapping).
fn sum_mod<L: Lane>(encoded: &[Vec<L>], bits: u32) -> Vec<L> {
    let mut sum = vec![0u128; encoded[0].len()];
    for e in encoded {
        for (s, v) in sum.iter_mut().zip(e) {
            *s = (*s + u128::from(v.to_u64())) % (1u128 << bits);
        }
    }
    sum.into_iter().map(|s| L::from_u64(s as u64)).collect()
}

/// Six clients (one far over the clip), weights 1..=3: the decoded sum minus Σ w clip(x)
/// has mean ≈ 0 and the variance of six clients' noise plus their rounding.
#[test]
fn the_decoded_sum_is_the_clipped_sum_plus_the_noise() {
    decoded_sum_is_clipped_sum_plus_noise::<u32>("dp::end_to_end_pipeline", 400.0, 2000.0, 32);
}

/// The same mod 2^40 in 64-bit lanes, at a scale whose c s w (1.2e10) needs more than 32
/// bits.
#[test]
fn the_decoded_sum_at_40_bits_is_the_clipped_sum_plus_the_noise() {
    decoded_sum_is_clipped_sum_plus_noise::<u64>("dp::end_to_end_40", 1e6, 4e9, 40);
}

/// The same mod 2^64: negative noise wraps to just below 2^64 and is centred back. The
/// scale 2^40 keeps the f32 pipeline's own error (a few units) far below the noise, whose
/// variance 10^10 takes the sampler's split-λ path.
#[test]
fn the_decoded_sum_at_64_bits_is_the_clipped_sum_plus_the_noise() {
    decoded_sum_is_clipped_sum_plus_noise::<u64>("dp::end_to_end_64", 1e10, 2f64.powi(40), 64);
}

fn decoded_sum_is_clipped_sum_plus_noise<L: Lane>(name: &str, noise: f64, scale: f64, bits: u32) {
    let seed = secagg_engine::testing::test_seed(name);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let d = (1 << 15) + 3;
    let dp = setting(noise, scale, 0.0);
    dp.check(d, bits, 3).unwrap();
    let round = DpRound::new(dp, d, bits, 3, [9; 32]);
    let mut updates: Vec<(Vec<f32>, u32)> = (0..5)
        .map(|_| (uniform(&mut rng, d, 0.005), 1 + rng.next_u32() % 3))
        .collect();
    updates.push((uniform(&mut rng, d, 1.0), 2)); // norm ≈ 104: clipped to 1
    let mut encoded: Vec<Vec<L>> = Vec::new();
    for (x, w) in &updates {
        let mut out: Vec<L> = Vec::new();
        round.encode_into(x, *w, &mut rng, &mut out).unwrap();
        assert_eq!(out.len(), d + 1);
        assert_eq!(out[d].to_u64(), u64::from(*w));
        assert!(out.iter().all(|v| v.to_u64() >> 1 >> (bits - 1) == 0));
        encoded.push(out);
    }
    let mut sum = sum_mod(&encoded, bits);
    let total_weight = sum.pop().unwrap();
    assert_eq!(
        total_weight.to_u64(),
        updates.iter().map(|u| u64::from(u.1)).sum::<u64>()
    );
    let got = round.decode_sum(sum);
    let want = clipped_sum(&updates, 1.0, d);
    let residual: Vec<f64> = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (f64::from(*g) - w) * scale)
        .collect();
    let mean = residual.iter().sum::<f64>() / d as f64;
    let var = residual.iter().map(|r| r * r).sum::<f64>() / d as f64;
    // Noise: 6 μ. Rounding: each coordinate's variance is frac (1 − frac) ≤ 1/4, times w².
    let floor = 6.0 * noise;
    let ceiling = 6.0 * noise + updates.iter().map(|u| f64::from(u.1 * u.1)).sum::<f64>() / 4.0;
    let se = (2.0 / d as f64).sqrt() * ceiling;
    eprintln!("residual mean {mean:.3}, variance {var:.1} in [{floor}, {ceiling}] (seed {seed})");
    assert!(
        mean.abs() < 6.0 * (ceiling / d as f64).sqrt(),
        "mean {mean} (seed {seed})"
    );
    assert!(
        var > floor - 6.0 * se && var < ceiling + 6.0 * se,
        "variance {var} outside [{floor}, {ceiling}] ± 6 × {se} (seed {seed})"
    );
}

#[test]
fn clipping_and_weight_without_noise_to_speak_of() {
    let seed = secagg_engine::testing::test_seed("dp::clip_weight");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let d = 777;
    // Variance 2^-30: a draw is nonzero with probability about 2^-30.
    let dp = setting(2f64.powi(-30), 1e6, 0.0);
    let round = DpRound::new(dp, d, 32, 4, [1; 32]);
    for (amplitude, w) in [(0.01f32, 1u32), (0.02, 4), (3.0, 1), (3.0, 3)] {
        let x = uniform(&mut rng, d, amplitude);
        let mut out: Vec<u32> = Vec::new();
        round.encode_into(&x, w, &mut rng, &mut out).unwrap();
        out.pop();
        let got = round.decode_sum(out);
        let want = clipped_sum(&[(x.clone(), w)], 1.0, d);
        // Rounding moves each rotated coordinate by under 1/s (times w), so the error's norm
        // is below w √d / s; f32 keeps about 7 digits.
        let err: f64 = got
            .iter()
            .zip(&want)
            .map(|(g, v)| (f64::from(*g) - v).powi(2))
            .sum::<f64>()
            .sqrt();
        let want_norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
        let tol = f64::from(w) * (d as f64).sqrt() / 1e6 + 1e-5 * want_norm;
        assert!(
            err < tol,
            "amp {amplitude} w {w}: error {err} > {tol} (seed {seed})"
        );
        let n = norm(&got);
        if amplitude > 1.0 {
            assert!(
                (n - f64::from(w)).abs() < 1e-3 * f64::from(w),
                "clipped norm {n}"
            );
        }
    }
}

#[test]
fn the_rounded_norm_bound_is_enforced() {
    let seed = secagg_engine::testing::test_seed("dp::rounded_norm");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    // The worst case of the conditional bound: every coordinate halfway between two
    // integers, at norm c s exactly (400 × 1.5² = 30²). Plain rounding's squared norm is then
    // 1000 ± 30 and exceeds the β = 0.5 bound² (1047) about 6% of the time.
    let d = 400;
    let dp = setting(1.0, 30.0, 0.5);
    let round = DpRound::new(dp, d, 32, 1, [5; 32]);
    let bound = dp.rounded_norm(d);
    assert!(
        bound < 30.0 + (d as f64).sqrt(),
        "the conditional bound is the smaller"
    );
    let rotated = vec![1.5f32; d];
    let mut out: Vec<u32> = Vec::new();
    let mut seen_above = 0;
    for _ in 0..400 {
        let norm_sq = round
            .round_into(&rotated, 1.0, 1, &mut rng, &mut out)
            .unwrap();
        let direct: u128 = out
            .iter()
            .map(|v| {
                let r = i128::from(*v as i32);
                (r * r) as u128
            })
            .sum();
        assert_eq!(norm_sq, direct);
        assert!((norm_sq as f64).sqrt() <= bound, "seed {seed}");
        // Plain rounding (no redraw) exceeds the bound often enough to show the check works.
        let plain: u32 = (0..d)
            .map(|_| if rng.next_u32() >> 31 == 1 { 4 } else { 1 })
            .sum();
        seen_above += usize::from(f64::from(plain).sqrt() > bound);
    }
    assert!(
        seen_above > 0,
        "no plain rounding exceeded the bound (seed {seed})"
    );
}

#[test]
fn bad_inputs_and_settings_are_refused() {
    let round = DpRound::new(setting(10.0, 100.0, 0.0), 4, 24, 2, [0; 32]);
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    let mut out: Vec<u32> = Vec::new();
    assert_eq!(
        round.encode_into(&[1.0, f32::NAN, 0.0, 0.0], 1, &mut rng, &mut out),
        Err(InputError::NaN { index: 1 })
    );
    assert!(matches!(
        round.encode_into(&[1.0; 3], 1, &mut rng, &mut out),
        Err(InputError::Length { got: 3, want: 4 })
    ));
    assert!(round.encode_into(&[1.0; 4], 0, &mut rng, &mut out).is_err());
    assert!(round.encode_into(&[1.0; 4], 3, &mut rng, &mut out).is_err());
    // Infinities are clipped like any large value.
    round
        .encode_into(&[f32::INFINITY, 0.0, 0.0, 0.0], 1, &mut rng, &mut out)
        .unwrap();

    let ok = setting(10.0, 100.0, 0.0);
    ok.check(4, 24, 2).unwrap();
    let refused = [
        DpConfig { clip: 0.0, ..ok },
        DpConfig {
            clip: f32::NAN,
            ..ok
        },
        DpConfig { scale: -1.0, ..ok },
        DpConfig { noise: 0.0, ..ok },
        DpConfig { noise: 1e13, ..ok },
        DpConfig { honest: 0, ..ok },
        DpConfig { beta: 1.0, ..ok },
        DpConfig { beta: -0.1, ..ok },
        // c s w = 2^23 does not fit below 2^23.
        DpConfig {
            scale: 4_194_304.0,
            ..ok
        },
    ];
    for dp in refused {
        assert!(
            matches!(dp.check(4, 24, 2), Err(ConfigError::Dp { .. })),
            "{dp:?}"
        );
    }
}

#[test]
fn sensitivity_follows_the_bounds() {
    let dp = setting(1.0, 1000.0, 0.0);
    let s = dp.sensitivity(10_000, 1);
    assert_eq!(s.l2, 1100.0); // c s + √d
    assert_eq!(s.l1, 1100.0 * 100.0); // × min(√d, Δ2)
    let w = dp.sensitivity(10_000, 3);
    assert_eq!((w.l2, w.l1), (3.0 * s.l2, 3.0 * s.l1));
    // Conditional rounding at β = e^-0.5: √(c²s² + d/4 + (cs + √d/2)).
    let b = DpConfig {
        beta: (-0.5f64).exp(),
        ..dp
    };
    let want = (1e6f64 + 2500.0 + 1050.0).sqrt();
    assert!((b.rounded_norm(10_000) - want).abs() < 1e-9);
    // A small vector: L1 ≤ L2².
    let tiny = setting(1.0, 1.0, 0.0).sensitivity(1, 1);
    assert_eq!((tiny.l2, tiny.l1), (2.0, 2.0));
}

#[test]
fn a_prepared_source_hands_out_its_values() {
    let mut s = PreparedSource::new(vec![1, 2, 3, 4, 5]);
    let mut a = [0u32; 2];
    s.fill(&mut a).unwrap();
    let mut b = [0u32; 3];
    s.fill(&mut b).unwrap();
    assert_eq!((a, b), ([1, 2], [3, 4, 5]));
    assert!(s.fill(&mut [0u32; 1]).is_err());
}

/// At b ≤ 32 the 64-bit lanes hold exactly the values of the 32-bit ones from the same RNG
/// stream (the draws do not depend on the lanes), and both decode alike; 32-bit lanes at
/// b > 32 are refused.
#[test]
fn wide_lanes_hold_the_narrow_values_at_32_bits_and_below() {
    let seed = secagg_engine::testing::test_seed("dp::lanes_agree");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let d = 1000;
    for (bits, noise, scale) in [(12, 3.0, 30.0), (24, 5e3, 2e4), (32, 1e6, 1e8)] {
        let round = DpRound::new(setting(noise, scale, 0.5), d, bits, 5, [bits as u8; 32]);
        let x = uniform(&mut rng, d, 0.1);
        let w = 1 + rng.next_u32() % 5;
        let stream = rng.next_u64();
        let mut narrow: Vec<u32> = Vec::new();
        let mut wide: Vec<u64> = Vec::new();
        round
            .encode_into(&x, w, &mut ChaCha20Rng::seed_from_u64(stream), &mut narrow)
            .unwrap();
        round
            .encode_into(&x, w, &mut ChaCha20Rng::seed_from_u64(stream), &mut wide)
            .unwrap();
        let widened: Vec<u64> = narrow.iter().map(|&v| u64::from(v)).collect();
        assert_eq!(widened, wide, "b = {bits} (seed {seed})");
        narrow.pop();
        wide.pop();
        assert_eq!(
            round.decode_sum(narrow),
            round.decode_sum(wide),
            "b = {bits}"
        );
    }
    let round = DpRound::new(setting(3.0, 30.0, 0.0), 4, 33, 1, [0; 32]);
    let mut narrow: Vec<u32> = Vec::new();
    assert!(matches!(
        round.encode_into(&[0.1; 4], 1, &mut rng, &mut narrow),
        Err(InputError::Source(_))
    ));
}

/// Centring against i128 arithmetic at the edges of every width (±2^(b−1), 0, −1) and at
/// random values; and `decode_sum` at b = 64 against that centring, descaled and rotated
/// back, for sums near ±2^63.
#[test]
fn decoding_centres_at_every_width_up_to_64() {
    let seed = secagg_engine::testing::test_seed("dp::centre");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let reference = |v: u64, bits: u32| -> i64 {
        let m = 1i128 << bits;
        let r = i128::from(v) % m;
        (if r >= m / 2 { r - m } else { r }) as i64
    };
    for bits in 2..=64u32 {
        let m = 1u128 << bits;
        let edges = [0u128, 1, m / 2 - 1, m / 2, m / 2 + 1, m - 1];
        let randoms = (0..200).map(|_| u128::from(rng.next_u64()) % m);
        for v in edges.into_iter().chain(randoms) {
            let v = v as u64;
            assert_eq!(centre(v, bits), reference(v, bits), "{v:#x} at b = {bits}");
        }
    }
    assert_eq!(centre(1 << 63, 64), i64::MIN);
    assert_eq!(centre((1 << 63) - 1, 64), i64::MAX);
    assert_eq!(centre(u64::MAX, 64), -1);

    let d = 256;
    let scale = 2f64.powi(40);
    let round = DpRound::new(setting(1.0, scale, 0.0), d, 64, 1, [3; 32]);
    let near = |rng: &mut ChaCha20Rng| -> u64 {
        let off = rng.next_u64() % 4096;
        match rng.next_u32() % 4 {
            0 => (1 << 63) - 1 - off,
            1 => (1 << 63) + off,
            2 => off,
            _ => u64::MAX - off,
        }
    };
    let sum: Vec<u64> = (0..d).map(|_| near(&mut rng)).collect();
    let mut want: Vec<f32> = sum
        .iter()
        .map(|&v| (reference(v, 64) as f64 / scale) as f32)
        .collect();
    round.rotation().inverse(&mut want);
    assert_eq!(round.decode_sum(sum), want, "seed {seed}");
}
