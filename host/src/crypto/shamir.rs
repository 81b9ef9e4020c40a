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
    /// as (Π_j x_j) · x_i⁻¹ · (Π_{j≠i} (x_j − x_i))⁻¹, and every inverse of every set comes from
    /// one field inversion (Montgomery's trick): O(t²) multiplications per set, one inversion
    /// in all.
    pub fn at_zero_many(sets: &[Vec<ClientId>]) -> Result<Vec<Self>, CryptoError> {
        // Per set: its product, then 2t values to invert (the x_i, then the denominators).
        let mut products = Vec::with_capacity(sets.len());
        let mut to_invert = Vec::with_capacity(sets.iter().map(|s| 2 * s.len()).sum());
        for holders in sets {
            let xs: Vec<Scalar> = holders.iter().map(|h| evaluation_point(*h)).collect();
            products.push(xs.iter().fold(Scalar::ONE, |acc, x| acc * x));
            to_invert.extend_from_slice(&xs);
            for (i, xi) in xs.iter().enumerate() {
                let mut den = Scalar::ONE;
                for (j, xj) in xs.iter().enumerate() {
                    if i != j {
                        den *= xj - xi;
                    }
                }
                if den == Scalar::ZERO {
                    return Err(CryptoError::Split(format!(
                        "duplicate holder {} in reconstruction set",
                        holders[i]
                    )));
                }
                to_invert.push(den);
            }
        }
        let inverted = batch_invert(&to_invert);
        let mut out = Vec::with_capacity(sets.len());
        let mut at = 0;
        for (holders, product) in sets.iter().zip(products) {
            let t = holders.len();
            let (inv_x, inv_den) = inverted[at..at + 2 * t].split_at(t);
            at += 2 * t;
            let coefficients = inv_x
                .iter()
                .zip(inv_den)
                .map(|(ix, id)| product * ix * id)
                .collect();
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
