//! The randomized Hadamard rotation every client of a DP round applies, and its inverse.
//!
//! A client's update is rotated before it is rounded so that its energy spreads evenly over
//! the coordinates: after the rotation no coordinate is much larger than `c / √d`, which
//! is what lets the modulus be sized for the typical coordinate instead of the worst.
//!
//! For `d` a power of two the rotation is `H D / √d`, `H` the Walsh–Hadamard matrix and `D` a
//! diagonal of random signs. Any other `d` is not padded (which would make the masked
//! vector up to twice as long): with `B` the largest power of two below `d`, the rotation is
//! the same transform on the window `[0, B)` followed by another, with fresh signs, on the
//! window `[d − B, d)`. Each step is orthogonal on its window and the identity elsewhere, so
//! the whole is orthogonal on `R^d`; every coordinate ends up spread over a window of at
//! least `d / 2` coordinates. The inverse applies the two steps' inverses (`D H / √B`) in
//! the reverse order.
//!
//! The signs come from the round's shared randomness (a seed derived from the round digest,
//! [`super::rotation_seed`]), so every client and the server use the same rotation. The
//! server could choose a configuration whose signs suit it; that only affects how well the
//! rotation flattens (the utility), never the privacy, which holds for any rotation.

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// Elements transformed in cache before the strided stages.
const BLOCK: usize = 1 << 13;

/// The rotation of a `d`-parameter round.
#[derive(Clone, Debug)]
pub struct Rotation {
    dim: usize,
    /// `B`: the window length.
    window: usize,
    /// Per window: its first element and its signs, one bit each.
    steps: Vec<(usize, Vec<u64>)>,
}

impl Rotation {
    /// The rotation of `dim` parameters (≥ 1) with signs from `seed`.
    pub fn new(dim: usize, seed: [u8; 32]) -> Self {
        let dim = dim.max(1);
        let window = 1usize << (usize::BITS - 1 - dim.leading_zeros());
        let mut rng = ChaCha20Rng::from_seed(seed);
        let starts: Vec<usize> = if window == dim {
            vec![0]
        } else {
            vec![0, dim - window]
        };
        let steps = starts
            .into_iter()
            .map(|start| {
                let signs = (0..window.div_ceil(64)).map(|_| rng.next_u64()).collect();
                (start, signs)
            })
            .collect();
        Self { dim, window, steps }
    }

    /// The parameters it rotates.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `B`, the length of each window.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Rotates `x` (of [`dim`](Self::dim) elements) in place.
    pub fn forward(&self, x: &mut [f32]) {
        assert_eq!(x.len(), self.dim, "rotation length");
        let norm = (1.0 / (self.window as f64).sqrt()) as f32;
        for (start, signs) in &self.steps {
            let w = &mut x[*start..*start + self.window];
            apply_signs(w, signs, norm);
            walsh_hadamard(w);
        }
    }

    /// Undoes [`forward`](Self::forward) on `x` in place.
    pub fn inverse(&self, x: &mut [f32]) {
        assert_eq!(x.len(), self.dim, "rotation length");
        let norm = (1.0 / (self.window as f64).sqrt()) as f32;
        for (start, signs) in self.steps.iter().rev() {
            let w = &mut x[*start..*start + self.window];
            walsh_hadamard(w);
            apply_signs(w, signs, norm);
        }
    }
}

/// `x[i] *= ±scale`, the sign from bit `i` of `signs` (set: negative).
fn apply_signs(x: &mut [f32], signs: &[u64], scale: f32) {
    for (chunk, word) in x.chunks_mut(64).zip(signs) {
        for (i, v) in chunk.iter_mut().enumerate() {
            let negative = (word >> i) & 1 == 1;
            *v *= if negative { -scale } else { scale };
        }
    }
}

/// The unnormalized fast Walsh–Hadamard transform of `x` (a power-of-two length) in place:
/// the stages within blocks of [`BLOCK`] elements first, while a block is in cache, then
/// the wider stages two at a time (radix 4), each pair one pass over memory.
fn walsh_hadamard(x: &mut [f32]) {
    let n = x.len();
    debug_assert!(n.is_power_of_two());
    let block = BLOCK.min(n);
    for b in x.chunks_mut(block) {
        let mut h = 1;
        while h < block {
            butterflies(b, h);
            h *= 2;
        }
    }
    let mut h = block;
    while h < n {
        if 4 * h <= n {
            radix4(x, h);
            h *= 4;
        } else {
            butterflies(x, h);
            h *= 2;
        }
    }
}

/// One stage: pairs `h` apart.
fn butterflies(x: &mut [f32], h: usize) {
    for group in x.chunks_mut(2 * h) {
        let (a, b) = group.split_at_mut(h);
        for (u, v) in a.iter_mut().zip(b.iter_mut()) {
            let (p, q) = (*u, *v);
            *u = p + q;
            *v = p - q;
        }
    }
}

/// Two stages, `h` and `2h`, in one pass: quadruples `h` apart.
fn radix4(x: &mut [f32], h: usize) {
    for group in x.chunks_mut(4 * h) {
        let (ab, cd) = group.split_at_mut(2 * h);
        let (a, b) = ab.split_at_mut(h);
        let (c, d) = cd.split_at_mut(h);
        for (((p, q), r), s) in a.iter_mut().zip(b.iter_mut()).zip(c.iter_mut()).zip(d) {
            let (e, f) = (*p + *q, *p - *q);
            let (g, k) = (*r + *s, *r - *s);
            *p = e + g;
            *q = f + k;
            *r = e - g;
            *s = f - k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// H_n x by its definition: entry (i, j) is (−1)^popcount(i & j).
    fn hadamard_by_definition(x: &[f64]) -> Vec<f64> {
        (0..x.len())
            .map(|i| {
                x.iter()
                    .enumerate()
                    .map(|(j, v)| {
                        if (i & j).count_ones() % 2 == 0 {
                            *v
                        } else {
                            -*v
                        }
                    })
                    .sum()
            })
            .collect()
    }

    fn random_vector(rng: &mut ChaCha20Rng, d: usize) -> Vec<f32> {
        (0..d)
            .map(|_| (rng.next_u32() as f32 / u32::MAX as f32) * 2.0 - 1.0)
            .collect()
    }

    #[test]
    fn the_fast_transform_is_the_matrix() {
        let seed = secagg_engine::testing::test_seed("hadamard::matrix");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        // Sizes below, at and above the in-cache block, and one with a radix-2 stage left.
        for n in [1usize, 2, 8, 64, BLOCK, 4 * BLOCK, 8 * BLOCK] {
            let x = random_vector(&mut rng, n);
            let mut fast = x.clone();
            walsh_hadamard(&mut fast);
            if n <= 4 * BLOCK {
                let want =
                    hadamard_by_definition(&x.iter().map(|v| f64::from(*v)).collect::<Vec<_>>());
                for (i, (g, w)) in fast.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * (n as f64).sqrt() * 4.0;
                    assert!(
                        (f64::from(*g) - w).abs() < tol,
                        "n {n}, i {i}: {g} vs {w} (seed {seed})"
                    );
                }
            }
            // H H = n I.
            walsh_hadamard(&mut fast);
            for (g, w) in fast.iter().zip(&x) {
                assert!((g / n as f32 - w).abs() < 1e-4, "n {n} (seed {seed})");
            }
        }
    }

    #[test]
    fn rotation_is_orthogonal_and_inverts() {
        let seed = secagg_engine::testing::test_seed("hadamard::orthogonal");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for d in [1usize, 2, 3, 5, 100, 1024, 1025, 3000, 70_001] {
            let rot = Rotation::new(d, [d as u8; 32]);
            let x = random_vector(&mut rng, d);
            let norm = |v: &[f32]| v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
            let mut y = x.clone();
            rot.forward(&mut y);
            assert!(
                (norm(&y) - norm(&x)).abs() < 1e-5 * norm(&x),
                "d {d}: norm {} -> {} (seed {seed})",
                norm(&x),
                norm(&y)
            );
            rot.inverse(&mut y);
            for (i, (a, b)) in y.iter().zip(&x).enumerate() {
                assert!(
                    (a - b).abs() < 1e-5,
                    "d {d}, element {i}: {a} vs {b} (seed {seed})"
                );
            }
        }
    }

    #[test]
    fn rotation_flattens_a_spike() {
        // All the energy in one coordinate: after one window every coordinate holds exactly
        // 1/√B of it; after a second window, sums of random signs, within a few times that
        // (a coordinate is Σ ±1/B over the overlap: about √(2 ln d)/√B at the most).
        for d in [4096usize, 5000, 8191] {
            let rot = Rotation::new(d, [3; 32]);
            for spike in [0, d / 2, d - 1] {
                let mut x = vec![0f32; d];
                x[spike] = 1.0;
                rot.forward(&mut x);
                let top = x.iter().fold(0f32, |a, v| a.max(v.abs()));
                let spread = if d.is_power_of_two() { 1.0 } else { 6.0 };
                let bound = spread / (rot.window() as f32).sqrt() + 1e-6;
                assert!(
                    top <= bound,
                    "d {d}, spike at {spike}: largest {top} > {bound}"
                );
            }
        }
    }

    #[test]
    fn signs_depend_on_the_seed() {
        let mut a = vec![1f32; 300];
        let mut b = a.clone();
        Rotation::new(300, [1; 32]).forward(&mut a);
        Rotation::new(300, [2; 32]).forward(&mut b);
        assert_ne!(a, b);
    }
}
