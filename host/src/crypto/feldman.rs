//! Feldman's verifiable secret sharing over the Ed25519 group, where the secrets live.
//!
//! A dealer shares a scalar `a_0` with a random polynomial f(x) = a_0 + a_1 x + … +
//! a_{t−1} x^{t−1} over the curve25519 scalar field and publishes the commitments
//! C_j = a_j · B (B the Ed25519 base point). The share of holder `id` is f(id + 1), and it is
//! correct exactly when
//!
//! ```text
//! f(x) · B = Σ_j x^j · C_j        (x = id + 1)
//! ```
//!
//! so a holder checks its share alone, and the server checks a revealed share alone, without
//! trying subsets. C_0 = a_0 · B is a commitment to the secret itself: for the mask-agreement
//! secret it *is* the advertised public mask key, so the key and the shares are bound together.
//!
//! Every equation is checked after multiplying by the cofactor 8, so a dealer that adds a
//! small-order component to a commitment gains nothing: the check is exactly "the scalars lie on
//! one polynomial of degree < t". Many checks are merged into one multiscalar multiplication with
//! random 128-bit weights (a false batch passes with probability below 2^-120); when a batch
//! fails, each check is redone alone to name the bad ones.

use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use rand_core::CryptoRng;
use zeroize::Zeroize;

use super::shamir::{ShamirShare, evaluation_point};
use crate::ClientId;
use crate::error::CryptoError;

/// The public commitments to one shared secret: `t` points, C_0 first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commitments {
    points: Vec<EdwardsPoint>,
}

impl Commitments {
    /// Commitments from their wire form; every point must decompress and none may be of small
    /// order (a commitment with no prime-order part commits to nothing).
    pub fn from_compressed(bytes: &[[u8; 32]]) -> Result<Self, CryptoError> {
        let points = bytes
            .iter()
            .map(decompress_point)
            .collect::<Result<Vec<_>, _>>()?;
        if points.is_empty() {
            return Err(CryptoError::Commitment("no commitments".into()));
        }
        Ok(Self { points })
    }

    /// The wire form.
    pub fn to_compressed(&self) -> Vec<[u8; 32]> {
        EdwardsPoint::compress_batch_alloc(&self.points)
            .into_iter()
            .map(|c| c.to_bytes())
            .collect()
    }

    /// The threshold they were made for (the polynomial's degree + 1).
    pub fn threshold(&self) -> usize {
        self.points.len()
    }

    /// C_0 = secret · B.
    pub fn secret_commitment(&self) -> &EdwardsPoint {
        &self.points[0]
    }

    /// The points, C_0 first.
    pub fn points(&self) -> &[EdwardsPoint] {
        &self.points
    }

    /// Whether `secret` is the committed secret (C_0 = secret · B, up to the cofactor).
    pub fn opens_to(&self, secret: &Scalar) -> bool {
        same_prime_part(&EdwardsPoint::mul_base(secret), &self.points[0])
    }

    /// Whether `share` is the share of `holder` (checked alone: one multiscalar
    /// multiplication of t + 1 points).
    pub fn verify(&self, holder: ClientId, share: &Scalar) -> bool {
        let x = evaluation_point(holder);
        let powers = powers_of(&x, self.points.len());
        let rhs = EdwardsPoint::vartime_multiscalar_mul(&powers, &self.points);
        same_prime_part(&EdwardsPoint::mul_base(share), &rhs)
    }
}

/// A decompressed point that is not of small order, or an error.
pub fn decompress_point(bytes: &[u8; 32]) -> Result<EdwardsPoint, CryptoError> {
    let p = CompressedEdwardsY(*bytes)
        .decompress()
        .ok_or_else(|| CryptoError::Commitment("a point does not decompress".into()))?;
    if p.is_small_order() {
        return Err(CryptoError::Commitment("a point has small order".into()));
    }
    Ok(p)
}

fn same_prime_part(a: &EdwardsPoint, b: &EdwardsPoint) -> bool {
    (a - b).mul_by_cofactor().is_identity()
}

/// 1, x, x², …, x^{len−1}.
fn powers_of(x: &Scalar, len: usize) -> Vec<Scalar> {
    let mut out = Vec::with_capacity(len);
    let mut p = Scalar::ONE;
    for _ in 0..len {
        out.push(p);
        p *= x;
    }
    out
}

/// A random weight below 2^128 for batching checks.
fn weight<R: CryptoRng + ?Sized>(rng: &mut R) -> Scalar {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b[..16]);
    Scalar::from_bytes_mod_order(b)
}

/// Shares `secret` among `holders` (distinct ids) with threshold `t`, and commits to the
/// polynomial. Shares come back in the order of `holders`.
pub fn deal<R: CryptoRng + ?Sized>(
    secret: &Scalar,
    threshold: usize,
    holders: &[ClientId],
    rng: &mut R,
) -> Result<(Vec<ShamirShare>, Commitments), CryptoError> {
    if threshold < 1 || threshold > holders.len() {
        return Err(CryptoError::Split(format!(
            "threshold {threshold} for {} holders",
            holders.len()
        )));
    }
    let mut seen = holders.to_vec();
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(CryptoError::Split("duplicate holder".into()));
    }
    let mut coeffs = Vec::with_capacity(threshold);
    coeffs.push(*secret);
    for _ in 1..threshold {
        let mut wide = [0u8; 64];
        rng.fill_bytes(&mut wide);
        coeffs.push(Scalar::from_bytes_mod_order_wide(&wide));
        wide.zeroize();
    }
    let points = coeffs.iter().map(EdwardsPoint::mul_base).collect();
    let shares = holders
        .iter()
        .map(|h| {
            let x = evaluation_point(*h);
            // Horner, from the top coefficient down.
            let value = coeffs.iter().rev().fold(Scalar::ZERO, |acc, a| acc * x + a);
            ShamirShare { holder: *h, value }
        })
        .collect();
    coeffs.zeroize();
    Ok((shares, Commitments { points }))
}

/// One share to check against its dealer's commitments.
pub struct ShareCheck<'a> {
    /// The dealer's commitments.
    pub commitments: &'a Commitments,
    /// The holder (its evaluation point).
    pub holder: ClientId,
    /// The share.
    pub share: &'a Scalar,
}

/// Checks many shares in one multiscalar multiplication; `Ok(())` when all are correct,
/// otherwise the indices of the bad ones (each redone alone).
pub fn verify_many<R: CryptoRng + ?Sized>(
    checks: &[ShareCheck<'_>],
    rng: &mut R,
) -> Result<(), Vec<usize>> {
    if checks.is_empty() {
        return Ok(());
    }
    let terms: usize = checks.iter().map(|c| c.commitments.points.len()).sum();
    let mut scalars = Vec::with_capacity(terms + 1);
    let mut points = Vec::with_capacity(terms + 1);
    let mut lhs = Scalar::ZERO;
    for c in checks {
        let rho = weight(rng);
        lhs += rho * c.share;
        let x = evaluation_point(c.holder);
        let mut p = rho;
        for point in &c.commitments.points {
            scalars.push(p);
            points.push(*point);
            p *= x;
        }
    }
    scalars.push(-lhs);
    points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    let sum = EdwardsPoint::vartime_multiscalar_mul(&scalars, &points);
    if sum.mul_by_cofactor().is_identity() {
        return Ok(());
    }
    let bad: Vec<usize> = checks
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.commitments.verify(c.holder, c.share))
        .map(|(i, _)| i)
        .collect();
    if bad.is_empty() {
        // Unreachable unless the weights collided; report every check to stay safe.
        return Err((0..checks.len()).collect());
    }
    Err(bad)
}

/// Checks many holders' shares of one secret against its commitments, and returns the
/// indices of the bad ones. All shares are checked in one multiscalar multiplication of t + 1
/// points (Σ ρ_i s_i · B = Σ_j (Σ_i ρ_i x_i^j) · C_j), with weights ρ_i derived by hashing the
/// shares themselves, so whoever chose the shares cannot adapt to the weights; a failing set
/// is split in halves until the bad shares are isolated: about 2·b·log2(n) checks for b bad
/// shares among n.
pub fn find_bad_shares(commitments: &Commitments, shares: &[(ClientId, Scalar)]) -> Vec<usize> {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"secagg/v2/share-batch-weights");
    for p in commitments.to_compressed() {
        h.update(p);
    }
    for (holder, share) in shares {
        h.update(holder.0.to_le_bytes());
        h.update(share.to_bytes());
    }
    let mut rng = ChaCha20Rng::from_seed(h.finalize().into());
    let weights: Vec<Scalar> = shares.iter().map(|_| weight(&mut rng)).collect();
    let t = commitments.points.len();
    // x_i^j for every share, computed once.
    let powers: Vec<Vec<Scalar>> = shares
        .iter()
        .map(|(holder, _)| powers_of(&evaluation_point(*holder), t))
        .collect();
    let batch_ok = |idx: &[usize]| -> bool {
        let mut scalars = vec![Scalar::ZERO; t + 1];
        for &i in idx {
            let rho = weights[i];
            scalars[t] -= rho * shares[i].1;
            for (j, p) in powers[i].iter().enumerate() {
                scalars[j] += rho * p;
            }
        }
        let mut points = commitments.points.clone();
        points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
        EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
            .mul_by_cofactor()
            .is_identity()
    };
    let mut bad = Vec::new();
    let mut stack: Vec<Vec<usize>> = vec![(0..shares.len()).collect()];
    while let Some(set) = stack.pop() {
        if set.is_empty() || batch_ok(&set) {
            continue;
        }
        if set.len() == 1 {
            bad.push(set[0]);
            continue;
        }
        let (a, b) = set.split_at(set.len() / 2);
        stack.push(a.to_vec());
        stack.push(b.to_vec());
    }
    bad.sort_unstable();
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Lagrange;
    use curve25519_dalek::traits::Identity;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};
    use vsss_rs::{DefaultShare, IdentifierPrimeField, ReadableShareSet};

    fn ids(v: &[u32]) -> Vec<ClientId> {
        v.iter().map(|&i| ClientId(i)).collect()
    }

    fn random_scalar(rng: &mut ChaCha20Rng) -> Scalar {
        let mut wide = [0u8; 64];
        rng.fill_bytes(&mut wide);
        Scalar::from_bytes_mod_order_wide(&wide)
    }

    #[test]
    fn dealt_shares_verify_and_rebuild_the_secret() {
        let seed = secagg_engine::testing::test_seed("feldman::dealt_shares_verify");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let secret = random_scalar(&mut rng);
        let holders = ids(&[0, 3, 4, 9, 17, 100, 4_000_000]);
        let (shares, commitments) = deal(&secret, 4, &holders, &mut rng).unwrap();
        assert_eq!(commitments.threshold(), 4);
        assert!(commitments.opens_to(&secret));
        assert!(!commitments.opens_to(&(secret + Scalar::ONE)));
        for s in &shares {
            assert!(
                commitments.verify(s.holder, &s.value),
                "holder {}",
                s.holder
            );
            assert!(!commitments.verify(s.holder, &(s.value + Scalar::ONE)));
        }
        // Any four rebuild it, here and through vsss-rs (an independent combine).
        let four = &shares[2..6];
        let who: Vec<ClientId> = four.iter().map(|s| s.holder).collect();
        let l = Lagrange::at_zero(&who).unwrap();
        assert_eq!(l.combine(four.iter().map(|s| &s.value)), secret);
        let theirs: Vec<DefaultShare<IdentifierPrimeField<Scalar>, IdentifierPrimeField<Scalar>>> =
            four.iter()
                .map(|s| DefaultShare {
                    identifier: IdentifierPrimeField(evaluation_point(s.holder)),
                    value: IdentifierPrimeField(s.value),
                })
                .collect();
        assert_eq!(theirs.combine().unwrap().0, secret);
        // The wire form round trips.
        let back = Commitments::from_compressed(&commitments.to_compressed()).unwrap();
        assert_eq!(back, commitments);
    }

    #[test]
    fn a_share_of_another_polynomial_is_caught_alone_and_in_a_batch() {
        let seed = secagg_engine::testing::test_seed("feldman::another_polynomial");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let holder = ClientId(5);
        let mut dealt = Vec::new();
        for _ in 0..12 {
            let secret = random_scalar(&mut rng);
            let (shares, c) = deal(&secret, 3, &ids(&[1, 5, 7, 9]), &mut rng).unwrap();
            let mine = shares
                .iter()
                .find(|s| s.holder == holder)
                .map(|s| s.value)
                .unwrap();
            dealt.push((c, mine));
        }
        // A cheating dealer hands holder 5 a share of a different polynomial with the same
        // secret: the value still looks random, but it is off the committed polynomial.
        let bad_at = (rng.next_u32() % 12) as usize;
        let (other, _) = deal(&Scalar::from(7u64), 3, &ids(&[5, 6, 8]), &mut rng)
            .map(|(s, c)| (s[0].value, c))
            .unwrap();
        dealt[bad_at].1 = other;
        let checks: Vec<ShareCheck<'_>> = dealt
            .iter()
            .map(|(c, s)| ShareCheck {
                commitments: c,
                holder,
                share: s,
            })
            .collect();
        assert_eq!(verify_many(&checks, &mut rng), Err(vec![bad_at]));
        assert!(verify_many(&checks[..bad_at], &mut rng).is_ok());
        assert!(!dealt[bad_at].0.verify(holder, &dealt[bad_at].1));
    }

    #[test]
    fn torsion_in_a_commitment_does_not_change_what_verifies() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let secret = random_scalar(&mut rng);
        let (shares, mut c) = deal(&secret, 2, &ids(&[1, 2, 3]), &mut rng).unwrap();
        let torsion = curve25519_dalek::constants::EIGHT_TORSION[1];
        c.points[1] += torsion;
        for s in &shares {
            assert!(c.verify(s.holder, &s.value));
        }
        assert!(c.opens_to(&secret));
    }

    #[test]
    fn malformed_commitments_are_refused() {
        assert!(Commitments::from_compressed(&[]).is_err());
        // The identity (small order) and a y with no point on the curve.
        let identity = EdwardsPoint::identity().compress().to_bytes();
        assert!(Commitments::from_compressed(&[identity]).is_err());
        let mut not_on_curve = [0u8; 32];
        not_on_curve[0] = 2;
        let ok = (0..50u8).any(|i| {
            not_on_curve[1] = i;
            CompressedEdwardsY(not_on_curve).decompress().is_none()
        });
        assert!(ok);
        assert!(Commitments::from_compressed(&[not_on_curve]).is_err());
        assert!(
            deal(
                &Scalar::ONE,
                3,
                &ids(&[1, 2]),
                &mut ChaCha20Rng::seed_from_u64(1)
            )
            .is_err()
        );
        assert!(
            deal(
                &Scalar::ONE,
                2,
                &ids(&[1, 1]),
                &mut ChaCha20Rng::seed_from_u64(1)
            )
            .is_err()
        );
    }

    #[test]
    fn bad_holders_are_isolated_without_trying_subsets() {
        let seed = secagg_engine::testing::test_seed("feldman::bad_holders_isolated");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let secret = random_scalar(&mut rng);
        let holders: Vec<ClientId> = (0..40).map(ClientId).collect();
        let (shares, c) = deal(&secret, 9, &holders, &mut rng).unwrap();
        let mut revealed: Vec<(ClientId, Scalar)> =
            shares.iter().map(|s| (s.holder, s.value)).collect();
        assert!(find_bad_shares(&c, &revealed).is_empty());
        let mut want: Vec<usize> = (0..3).map(|_| (rng.next_u32() % 40) as usize).collect();
        want.sort_unstable();
        want.dedup();
        for &i in &want {
            revealed[i].1 += Scalar::from(1 + rng.next_u64());
        }
        assert_eq!(find_bad_shares(&c, &revealed), want, "seed {seed}");
    }
}
