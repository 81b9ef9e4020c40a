//! The client pipeline and the server's decoding, against plaintext references.

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

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

fn sum_mod(encoded: &[Vec<u32>], mask: u32) -> Vec<u32> {
    let mut sum = vec![0u32; encoded[0].len()];
    for e in encoded {
        for (s, v) in sum.iter_mut().zip(e) {
            *s = s.wrapping_add(*v) & mask;
        }
    }
    sum
}

/// Six clients (one far over the clip), weights 1..=3: the decoded sum minus Σ w clip(x)
/// has mean ≈ 0 and the variance of six clients' noise plus their rounding.
#[test]
fn the_decoded_sum_is_the_clipped_sum_plus_the_noise() {
    let seed = secagg_engine::testing::test_seed("dp::end_to_end_pipeline");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let d = (1 << 15) + 3;
    let (noise, scale, bits) = (400.0, 2000.0, 32);
    let dp = setting(noise, scale, 0.0);
    dp.check(d, bits, 3).unwrap();
    let round = DpRound::new(dp, d, bits, 3, [9; 32]);
    let mut updates: Vec<(Vec<f32>, u32)> = (0..5)
        .map(|_| (uniform(&mut rng, d, 0.005), 1 + rng.next_u32() % 3))
        .collect();
    updates.push((uniform(&mut rng, d, 1.0), 2)); // norm ≈ 104: clipped to 1
    let mut encoded = Vec::new();
    for (x, w) in &updates {
        let mut out = Vec::new();
        round.encode_into(x, *w, &mut rng, &mut out).unwrap();
        assert_eq!(out.len(), d + 1);
        assert_eq!(out[d], *w);
        encoded.push(out);
    }
    let mask = u32::MAX;
    let mut sum = sum_mod(&encoded, mask);
    let total_weight = sum.pop().unwrap();
    assert_eq!(total_weight, updates.iter().map(|u| u.1).sum::<u32>());
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
        let mut out = Vec::new();
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
    let mut out = Vec::new();
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
    let mut out = Vec::new();
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
