//! Shamir secret sharing over the curve25519 scalar field.
//!
//! Splitting (with Feldman-style share points) is in [`super::feldman`]; the tests check both against
//! vsss-rs. Reconstruction is done here: the server rebuilds many
//! secrets whose shares come from the same holders (in SecAgg's complete graph, every
//! secret), so it computes the Lagrange coefficients at zero once per holder set — with one
//! field inversion for the whole set — and each secret is then a t-term inner product.

use curve25519_dalek::Scalar;
use zeroize::Zeroize;

use crate::ClientId;
use crate::error::CryptoError;

/// The field element at which client `id` holds its shares: `id + 1`, never zero.
pub fn evaluation_point(id: ClientId) -> Scalar {
    Scalar::from(u64::from(id.0) + 1)
}

/// One share: the holder and the polynomial's value at the holder's evaluation point.
pub struct ShamirShare {
    /// Who holds the share.
    pub holder: ClientId,
    /// The value f(holder + 1).
    pub value: Scalar,
}

impl Drop for ShamirShare {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

/// Lagrange coefficients at zero for one set of holders.
#[derive(Clone, Debug)]
pub struct Lagrange {
    holders: Vec<ClientId>,
    coefficients: Vec<Scalar>,
}

impl Lagrange {
    /// Coefficients for `holders` (distinct ids).
    pub fn at_zero(holders: &[ClientId]) -> Result<Self, CryptoError> {
        let mut one = Self::at_zero_many(std::slice::from_ref(&holders.to_vec()))?;
        one.pop()
            .ok_or_else(|| CryptoError::Split("no coefficients computed".into()))
    }

    /// Coefficients for many holder sets at once. λ_i = Π_{j≠i} x_j / (x_j − x_i) is computed
    /// as (Π_j x_j) · (x_i · Π_{j≠i} (x_j − x_i))⁻¹. The evaluation points are small integers,
    /// so products of differences are taken three at a time in 128-bit integers before each
    /// field multiplication, and every inverse of every set comes from one field inversion
    /// (Montgomery's trick): about t²/3 field multiplications per set, one inversion in all.
    pub fn at_zero_many(sets: &[Vec<ClientId>]) -> Result<Vec<Self>, CryptoError> {
        // Per set: its product, then t values to invert.
        let mut products = Vec::with_capacity(sets.len());
        let mut to_invert = Vec::with_capacity(sets.iter().map(Vec::len).sum());
        for holders in sets {
            let xs: Vec<i64> = holders.iter().map(|h| i64::from(h.0) + 1).collect();
            let mut sorted = xs.clone();
            sorted.sort_unstable();
            if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(CryptoError::Split(format!(
                    "duplicate holder {} in reconstruction set",
                    w[0] - 1
                )));
            }
            products.push(product_of(&xs));
            // Π_{j≠i} (x_j − x_i) = (−1)^{t−1} Π_{j≠i} (x_i − x_j).
            let flip = xs.len() % 2 == 0;
            for (xi, d) in xs.iter().zip(differences_products(&xs)) {
                let den = Scalar::from(xi.unsigned_abs()) * d;
                to_invert.push(if flip { -den } else { den });
            }
        }
        let inverted = batch_invert(&to_invert);
        let mut out = Vec::with_capacity(sets.len());
        let mut at = 0;
        for (holders, product) in sets.iter().zip(products) {
            let t = holders.len();
            let coefficients = inverted[at..at + t]
                .iter()
                .map(|inv| product * inv)
                .collect();
            at += t;
            out.push(Self {
                holders: holders.clone(),
                coefficients,
            });
        }
        Ok(out)
    }

    /// The holders, in the order [`combine`](Lagrange::combine) expects their shares.
    pub fn holders(&self) -> &[ClientId] {
        &self.holders
    }

    /// The secret from `values[i]`, the share of `holders()[i]`.
    pub fn combine<'a>(&self, values: impl IntoIterator<Item = &'a Scalar>) -> Scalar {
        self.coefficients
            .iter()
            .zip(values)
            .fold(Scalar::ZERO, |acc, (c, v)| acc + c * v)
    }
}

/// A small signed integer as a field element.
pub(crate) fn signed_scalar(v: i128) -> Scalar {
    let s = Scalar::from(v.unsigned_abs());
    if v < 0 { -s } else { s }
}

/// Π_j x_j for small positive integers, three at a time in 128-bit integers.
fn product_of(xs: &[i64]) -> Scalar {
    xs.chunks(3).fold(Scalar::ONE, |acc, c| {
        acc * signed_scalar(c.iter().fold(1i128, |p, x| p * i128::from(*x)))
    })
}

/// Π_{j≠i} (x_i − x_j) for every i, for integer points below 2^33 in magnitude: differences
/// are multiplied three at a time as 128-bit integers before one field multiplication, a
/// third of the field work of the plain product.
pub(crate) fn differences_products(xs: &[i64]) -> Vec<Scalar> {
    xs.iter()
        .enumerate()
        .map(|(i, xi)| {
            let mut acc = Scalar::ONE;
            let mut chunk: i128 = 1;
            let mut in_chunk = 0;
            for (j, xj) in xs.iter().enumerate() {
                if i == j {
                    continue;
                }
                chunk *= i128::from(xi - xj);
                in_chunk += 1;
                if in_chunk == 3 {
                    acc *= signed_scalar(chunk);
                    chunk = 1;
                    in_chunk = 0;
                }
            }
            acc * signed_scalar(chunk)
        })
        .collect()
}

/// Inverts every (non-zero) element with one field inversion.
pub(crate) fn batch_invert(xs: &[Scalar]) -> Vec<Scalar> {
    let mut prefix = Vec::with_capacity(xs.len());
    let mut acc = Scalar::ONE;
    for x in xs {
        prefix.push(acc);
        acc *= x;
    }
    let mut inv = acc.invert();
    let mut out = vec![Scalar::ZERO; xs.len()];
    for i in (0..xs.len()).rev() {
        out[i] = inv * prefix[i];
        inv *= xs[i];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};
    use vsss_rs::{DefaultShare, IdentifierPrimeField, ReadableShareSet};

    type VsssShare = DefaultShare<IdentifierPrimeField<Scalar>, IdentifierPrimeField<Scalar>>;

    fn ids(v: &[u32]) -> Vec<ClientId> {
        v.iter().map(|&i| ClientId(i)).collect()
    }

    #[test]
    fn any_t_shares_rebuild_and_agree_with_vsss() {
        let seed = secagg_engine::testing::test_seed("shamir::any_t_shares_rebuild");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let secret = Scalar::from(rng.next_u64()) * Scalar::from(rng.next_u64());
        let holders = ids(&[0, 3, 4, 9, 17, 100, 4_000_000]);
        let shares = super::super::feldman::deal(&secret, 4, &holders, &mut rng)
            .unwrap()
            .shares;
        for start in 0..=3 {
            let subset = &shares[start..start + 4];
            let who: Vec<ClientId> = subset.iter().map(|s| s.holder).collect();
            let l = Lagrange::at_zero(&who).unwrap();
            assert_eq!(l.combine(subset.iter().map(|s| &s.value)), secret);
            // vsss-rs's own combine on the same shares: an independent reconstruction.
            let theirs: Vec<VsssShare> = subset
                .iter()
                .map(|s| DefaultShare {
                    identifier: IdentifierPrimeField(evaluation_point(s.holder)),
                    value: IdentifierPrimeField(s.value),
                })
                .collect();
            assert_eq!(theirs.combine().unwrap().0, secret);
        }
        // t − 1 shares give a different value (with overwhelming probability).
        let who: Vec<ClientId> = shares[..3].iter().map(|s| s.holder).collect();
        let l = Lagrange::at_zero(&who).unwrap();
        assert_ne!(l.combine(shares[..3].iter().map(|s| &s.value)), secret);
    }

    #[test]
    fn batch_inversion_matches_single_inversions() {
        let xs: Vec<Scalar> = (1..20u64).map(|i| Scalar::from(i * i + 7)).collect();
        let inv = batch_invert(&xs);
        for (x, i) in xs.iter().zip(inv) {
            assert_eq!(x * i, Scalar::ONE);
        }
    }

    #[test]
    fn many_sets_at_once_match_one_at_a_time() {
        let sets = vec![ids(&[0, 1, 2]), ids(&[5, 9, 11, 40]), ids(&[7, 3])];
        let many = Lagrange::at_zero_many(&sets).unwrap();
        for (set, l) in sets.iter().zip(&many) {
            // Against the textbook formula, computed with one inversion per coefficient.
            let xs: Vec<Scalar> = set.iter().map(|h| evaluation_point(*h)).collect();
            for (i, xi) in xs.iter().enumerate() {
                let mut want = Scalar::ONE;
                for (j, xj) in xs.iter().enumerate() {
                    if i != j {
                        want *= xj * (xj - xi).invert();
                    }
                }
                assert_eq!(l.coefficients[i], want);
            }
            assert_eq!(l.holders(), &set[..]);
        }
    }

    #[test]
    fn duplicate_holders_are_rejected() {
        assert!(Lagrange::at_zero(&ids(&[1, 2, 1])).is_err());
    }
}
