//! Feldman-style verifiable secret sharing over the Ed25519 group, where the secrets live, in
//! evaluation form.
//!
//! A dealer shares a scalar a_0 with a random polynomial f of degree < t over the curve25519
//! scalar field; the share of holder `id` is f(x) at x = id + 1. It publishes the commitment
//! to the secret, f(0)·B, and every share "in the exponent", f(x)·B (B the Ed25519 base point).
//! Then:
//!
//! * a holder checks its share alone: one fixed-base multiplication, f(x)·B compressed
//!   against the published bytes (see [`matches_points`], which checks many at once with one
//!   batched inversion);
//! * the server checks a revealed share alone by the same function, and a rebuilt secret
//!   against f(0)·B;
//! * the server checks that the published points lie on one polynomial of degree < t
//!   ([`on_polynomial`]): a random codeword of the dual Reed–Solomon code (the test of SCRAPE,
//!   Cascudo and David 2017) must annihilate them, which takes one multiscalar multiplication
//!   of the points. The code depends on the evaluation points, so each point set — σ's and
//!   β's, which has one point more (the dealer's own share) — gets a codeword of its own: a
//!   codeword of n − 1 points' code, padded, would only prove degree ≤ t on n points. A dealer
//!   whose points pass cannot make different sets of t holders rebuild different secrets.
//!
//! This is Feldman's scheme with the commitments to the coefficients replaced by commitments to
//! the evaluations: the same information in the exponent, but every check a holder or the
//! server makes on one share costs O(1) instead of O(t). For the mask-agreement secret σ the
//! commitment σ·B is the advertised mask key itself, so the key and the shares are bound
//! together.
//!
//! One rule for every point, on both sides ([`decode_points`]): it must be the canonical
//! encoding of a point of the prime-order subgroup other than the identity. A point with a
//! small-order (torsion) component, or a second encoding of a point, is refused where it
//! enters. So a point and its bytes are one and the same, every equation is checked exactly,
//! and a holder comparing bytes and the server comparing points cannot disagree: a dealer that
//! adds a torsion point to a published point is dropped at once, instead of getting the
//! holders that report the mismatch dropped as false reporters.
//!
//! The subgroup check is one variable-time multiplication by the group order ℓ per point
//! ([`is_torsion_free_vartime`]); it cannot be batched by a random linear combination, in
//! which a torsion part (in a group of order 8) goes unseen with probability at least 1/8.

use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, SeedableRng};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::shamir::{ShamirShare, evaluation_point};
use crate::ClientId;
use crate::error::{CryptoError, PointError};

/// Whether `p` lies in the prime-order subgroup: ℓ·P = O. Variable time (the points checked
/// are public): ℓ is not a canonical scalar, so ℓ·P is computed as (ℓ − 1)·P + P, with one
/// variable-time (Straus, width-5 NAF) multiplication — on machine A about 1.3× faster than
/// the constant-time `is_torsion_free` (best of 15: 26–29 µs against 35–36 µs a point).
/// E(F_p) is Z/8 × Z/ℓ, so ℓ·P = O exactly when the Z/8 part of P is zero.
pub fn is_torsion_free_vartime(p: &EdwardsPoint) -> bool {
    (EdwardsPoint::vartime_multiscalar_mul([-Scalar::ONE], [p]) + p).is_identity()
}

/// The points encoded by `encodings`, each checked against the protocol's one rule for points:
/// on the curve, canonically encoded (the bytes survive decompression and compression), not
/// the identity, no torsion component. On failure, the index of the first bad point and why.
/// The canonical check costs one batched inversion for all; the subgroup check one
/// multiplication by ℓ per point.
pub fn decode_points(encodings: &[&[u8; 32]]) -> Result<Vec<EdwardsPoint>, (usize, PointError)> {
    let points = encodings
        .iter()
        .enumerate()
        .map(|(i, b)| {
            CompressedEdwardsY(**b)
                .decompress()
                .ok_or((i, PointError::NotOnCurve))
        })
        .collect::<Result<Vec<EdwardsPoint>, _>>()?;
    let compressed = EdwardsPoint::compress_batch_alloc(&points);
    for (i, ((p, c), b)) in points.iter().zip(&compressed).zip(encodings).enumerate() {
        let why = if c.as_bytes() != *b {
            PointError::NonCanonical
        } else if p.is_identity() {
            PointError::Identity
        } else if !is_torsion_free_vartime(p) {
            PointError::Torsion
        } else {
            continue;
        };
        return Err((i, why));
    }
    Ok(points)
}

/// One point, checked as [`decode_points`] checks each.
pub fn decode_point(encoding: &[u8; 32]) -> Result<EdwardsPoint, PointError> {
    decode_points(&[encoding])
        .map_err(|(_, why)| why)?
        .pop()
        .ok_or(PointError::NotOnCurve)
}

/// Whether `secret` is the secret committed by `point`: point = secret·B exactly (the point
/// came through [`decode_points`], so it has no torsion part to hide).
pub fn opens_to(point: &EdwardsPoint, secret: &Scalar) -> bool {
    EdwardsPoint::mul_base(secret) == *point
}

/// Whether `share` is the share committed by the published `point`: [`matches_points`] for
/// one share, the rule holders apply.
pub fn share_matches(share: &Scalar, point: &[u8; 32]) -> bool {
    matches_points(&[(share, point)])
        .first()
        .copied()
        .unwrap_or(false)
}

/// A dealing: the shares, and their public commitments.
pub struct Dealt {
    /// The shares, in the order of the holders.
    pub shares: Vec<ShamirShare>,
    /// secret·B, compressed.
    pub secret_point: [u8; 32],
    /// Each share·B, compressed, in the order of the holders.
    pub points: Vec<[u8; 32]>,
}

/// Shares `secret` among `holders` (distinct ids) with threshold `t`, with the commitments:
/// secret·B and each share·B.
pub fn deal<R: CryptoRng + ?Sized>(
    secret: &Scalar,
    threshold: usize,
    holders: &[ClientId],
    rng: &mut R,
) -> Result<Dealt, CryptoError> {
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
    let shares: Vec<ShamirShare> = holders
        .iter()
        .map(|h| {
            let x = evaluation_point(*h);
            // Horner, from the top coefficient down.
            let value = coeffs.iter().rev().fold(Scalar::ZERO, |acc, a| acc * x + a);
            ShamirShare { holder: *h, value }
        })
        .collect();
    coeffs.zeroize();
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(holders.len() + 1);
    points.push(EdwardsPoint::mul_base(secret));
    points.extend(shares.iter().map(|s| EdwardsPoint::mul_base(&s.value)));
    let mut compressed: Vec<[u8; 32]> = EdwardsPoint::compress_batch_alloc(&points)
        .into_iter()
        .map(|c| c.to_bytes())
        .collect();
    let secret_point = compressed.remove(0);
    Ok(Dealt {
        shares,
        secret_point,
        points: compressed,
    })
}

/// Which of `shares` (share, published point) match: share·B compressed equals the point's
/// bytes, exactly — the one rule by which holders and the server judge a share. One
/// fixed-base multiplication per share and one batched inversion for all.
pub fn matches_points(shares: &[(&Scalar, &[u8; 32])]) -> Vec<bool> {
    let points: Vec<EdwardsPoint> = shares
        .iter()
        .map(|(s, _)| EdwardsPoint::mul_base(s))
        .collect();
    EdwardsPoint::compress_batch_alloc(&points)
        .iter()
        .zip(shares)
        .map(|(c, (_, want))| c.as_bytes() == *want)
        .collect()
}

/// Whether the points (secret·B at x = 0, and each holder's share·B at its evaluation point)
/// lie on one polynomial of degree < `t`. `transcript` (the dealer's message, for instance)
/// seeds the random dual codeword, so a dealer cannot aim at it. With at most t points there
/// is nothing to check (any t points lie on such a polynomial). The equation is checked
/// exactly, so the points must have come through [`decode_points`] (a torsion part would pass
/// or fail it by chance).
pub fn on_polynomial(
    secret: &EdwardsPoint,
    shares: &[(ClientId, EdwardsPoint)],
    t: usize,
    transcript: &[u8],
) -> bool {
    let xs: Vec<Scalar> = std::iter::once(Scalar::ZERO)
        .chain(shares.iter().map(|(h, _)| evaluation_point(*h)))
        .collect();
    // v_i = Π_{j≠i} 1 / (x_i − x_j), all inverted at once.
    let mut dens = Vec::with_capacity(xs.len());
    for (i, xi) in xs.iter().enumerate() {
        let mut d = Scalar::ONE;
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                d *= xi - xj;
            }
        }
        if d == Scalar::ZERO {
            return false; // two holders at one point: not a dealing
        }
        dens.push(d);
    }
    let v = super::shamir::batch_invert(&dens);
    let mut h = Sha256::new();
    h.update(b"secagg/v2/dual-codeword");
    h.update((t as u64).to_le_bytes());
    h.update(transcript);
    let mut rng = ChaCha20Rng::from_seed(h.finalize().into());
    let points: Vec<EdwardsPoint> = std::iter::once(*secret)
        .chain(shares.iter().map(|(_, p)| *p))
        .collect();
    annihilated(&xs, &v, &points, t, &mut rng)
}

/// Whether a random codeword of the dual of the Reed–Solomon code of dimension `t` on the
/// evaluation points `xs` annihilates `points` (P_i at x_i): Σ c_i·P_i = O with
/// c_i = v_i·q(x_i), q a random polynomial of degree < n − t drawn from `rng`, and
/// v_i = Π_{j≠i} 1 / (x_i − x_j) given. Those c are exactly the dual codewords, so points
/// that do not lie on one polynomial of degree < t pass with probability 1/ℓ; with n ≤ t
/// points the dual code is empty and every set passes. Each point set needs its own codeword:
/// a codeword of a set with fewer points, padded with zeros, only bounds the degree by
/// t + (the points missing).
fn annihilated<R: CryptoRng + ?Sized>(
    xs: &[Scalar],
    v: &[Scalar],
    points: &[EdwardsPoint],
    t: usize,
    rng: &mut R,
) -> bool {
    let n = xs.len();
    if n <= t {
        return true;
    }
    let q: Vec<Scalar> = (0..n - t).map(|_| super::random_scalar(rng)).collect();
    let scalars: Vec<Scalar> = xs
        .iter()
        .zip(v)
        .map(|(x, vi)| vi * q.iter().rev().fold(Scalar::ZERO, |acc, c| acc * x + c))
        .collect();
    EdwardsPoint::vartime_multiscalar_mul(&scalars, points).is_identity()
}

/// One dealing as the server receives it: the two committed secrets (σ·B, the dealer's mask
/// key; β·B) and the point of every share (σ and β shares of each neighbour, and the dealer's
/// own β share).
pub struct Dealing<'a> {
    /// The dealer.
    pub dealer: ClientId,
    /// σ·B, compressed.
    pub mask_key: &'a [u8; 32],
    /// β·B, compressed.
    pub self_key: &'a [u8; 32],
    /// The dealer's own β share·B, compressed.
    pub own_point: &'a [u8; 32],
    /// (neighbour, σ share·B, β share·B), compressed.
    pub points: Vec<(ClientId, &'a [u8; 32], &'a [u8; 32])>,
    /// Seeds the random dual codeword: everything the dealer committed to (hashed by the
    /// caller), so that the dealer cannot aim at it.
    pub transcript: [u8; 32],
}

/// A dealing that passed: its two committed secrets, decompressed.
#[derive(Clone, Copy, Debug)]
pub struct CheckedDealing {
    /// σ·B.
    pub mask_key: EdwardsPoint,
    /// β·B.
    pub self_key: EdwardsPoint,
}

/// Checks many dealings (on every core): every point passes [`decode_points`], and
/// each point set — σ's (σ·B and the neighbours' shares) and β's (β·B, the dealer's own share
/// and the neighbours') — lies on a polynomial of degree < `t` through its committed secret:
/// a random codeword of that set's dual Reed–Solomon code, drawn from a generator seeded by
/// the dealing's transcript, annihilates it (see [`on_polynomial`]). β's set has one point
/// more than σ's, so it gets its own codeword. All the field inversions of all the dealings
/// are done at once.
pub fn verify_dealings(
    dealings: &[Dealing<'_>],
    t: usize,
) -> Vec<Result<CheckedDealing, CryptoError>> {
    use rayon::prelude::*;
    // Phase 1: points and the products whose inverses weight the dual codewords. The β set is
    // x = 0, the dealer, then each neighbour; the σ set is the same without the dealer.
    type Prepared = (Vec<EdwardsPoint>, Vec<EdwardsPoint>, Vec<i64>, Vec<Scalar>);
    let prepared: Vec<Result<Prepared, CryptoError>> = dealings
        .par_iter()
        .map(|d| {
            let mut xs: Vec<i64> = Vec::with_capacity(d.points.len() + 2);
            xs.push(0);
            xs.push(i64::from(d.dealer.0) + 1);
            xs.extend(
                d.points
                    .iter()
                    .map(|(holder, _, _)| i64::from(holder.0) + 1),
            );
            // Every point through the one rule: σ·B, β·B, the own share, then each
            // neighbour's σ and β share points.
            let mut encodings: Vec<&[u8; 32]> = Vec::with_capacity(2 * d.points.len() + 3);
            encodings.extend([d.mask_key, d.self_key, d.own_point]);
            for (_, m, s) in &d.points {
                encodings.extend([*m, *s]);
            }
            let points = decode_points(&encodings).map_err(|(i, why)| CryptoError::BadPoint {
                what: match i {
                    0 => "mask-agreement key σ·B",
                    1 => "self-mask commitment β·B",
                    2 => "dealer's own β share point",
                    i if i % 2 == 1 => "σ share point",
                    _ => "β share point",
                },
                why,
            })?;
            let sigma: Vec<EdwardsPoint> = points
                .iter()
                .take(1)
                .chain(points.iter().skip(3).step_by(2))
                .copied()
                .collect();
            let beta: Vec<EdwardsPoint> = points
                .iter()
                .skip(1)
                .take(2)
                .chain(points.iter().skip(4).step_by(2))
                .copied()
                .collect();
            let mut sorted = xs.clone();
            sorted.sort_unstable();
            if sorted.windows(2).any(|w| w[0] == w[1]) {
                return Err(CryptoError::Commitment("two shares at one point".into()));
            }
            let dens = super::shamir::differences_products(&xs);
            Ok((sigma, beta, xs, dens))
        })
        .collect();
    let all_dens: Vec<Scalar> = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .flat_map(|(_, _, _, d)| d.iter().copied())
        .collect();
    let mut inverses = super::shamir::batch_invert(&all_dens).into_iter();
    let weights: Vec<Option<Vec<Scalar>>> = prepared
        .iter()
        .map(|p| {
            p.as_ref()
                .ok()
                .map(|(_, _, _, d)| inverses.by_ref().take(d.len()).collect())
        })
        .collect();
    // Phase 2: per dealing, one random dual codeword for each point set, drawn in turn from
    // the transcript-seeded generator, and one multiscalar multiplication each.
    prepared
        .into_par_iter()
        .zip(weights)
        .zip(dealings)
        .map(|((p, v), d)| {
            let (sigma, beta, xs, _) = p?;
            let v = v.ok_or_else(|| CryptoError::Commitment("no weights".into()))?;
            let x_dealer = xs[1];
            let signed = |x: i64| super::shamir::signed_scalar(i128::from(x));
            let xs_beta: Vec<Scalar> = xs.iter().map(|x| signed(*x)).collect();
            // σ's set is β's without the dealer (index 1): its weights lose the factor
            // 1 / (x_i − x_dealer).
            let (xs_sigma, v_sigma): (Vec<Scalar>, Vec<Scalar>) = xs
                .iter()
                .zip(xs_beta.iter().zip(&v))
                .enumerate()
                .filter(|(i, _)| *i != 1)
                .map(|(_, (x, (x_scalar, vi)))| (*x_scalar, vi * signed(x - x_dealer)))
                .unzip();
            let mut rng = ChaCha20Rng::from_seed(d.transcript);
            for (name, xs, v, points) in [
                ("σ", &xs_sigma, &v_sigma, &sigma),
                ("β", &xs_beta, &v, &beta),
            ] {
                if !annihilated(xs, v, points, t, &mut rng) {
                    return Err(CryptoError::Commitment(format!(
                        "the {name} share points of {} do not lie on one polynomial of degree < {t} through its committed secret",
                        d.dealer
                    )));
                }
            }
            Ok(CheckedDealing {
                mask_key: sigma[0],
                self_key: beta[0],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Lagrange;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use rand_core::Rng;
    use vsss_rs::{DefaultShare, IdentifierPrimeField, ReadableShareSet};

    fn ids(v: &[u32]) -> Vec<ClientId> {
        v.iter().map(|&i| ClientId(i)).collect()
    }

    fn random_scalar(rng: &mut ChaCha20Rng) -> Scalar {
        let mut wide = [0u8; 64];
        rng.fill_bytes(&mut wide);
        Scalar::from_bytes_mod_order_wide(&wide)
    }

    fn decompressed(holders: &[ClientId], points: &[[u8; 32]]) -> Vec<(ClientId, EdwardsPoint)> {
        holders
            .iter()
            .zip(points)
            .map(|(h, p)| (*h, decode_point(p).unwrap()))
            .collect()
    }

    #[test]
    fn dealt_shares_match_their_points_and_rebuild_the_secret() {
        let seed = secagg_engine::testing::test_seed("feldman::dealt_shares_match");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let secret = random_scalar(&mut rng);
        let holders = ids(&[0, 3, 4, 9, 17, 100, 4_000_000]);
        let Dealt {
            shares,
            secret_point,
            points,
        } = deal(&secret, 4, &holders, &mut rng).unwrap();
        let sp = decode_point(&secret_point).unwrap();
        assert!(opens_to(&sp, &secret));
        assert!(!opens_to(&sp, &(secret + Scalar::ONE)));
        let good: Vec<(&Scalar, &[u8; 32])> =
            shares.iter().map(|s| &s.value).zip(&points).collect();
        assert!(matches_points(&good).into_iter().all(|m| m));
        let off = shares[2].value + Scalar::ONE;
        let mut bad = good.clone();
        bad[2].0 = &off;
        assert_eq!(
            matches_points(&bad),
            vec![true, true, false, true, true, true, true]
        );
        let pts = decompressed(&holders, &points);
        assert!(share_matches(&shares[5].value, &points[5]));
        assert!(!share_matches(&shares[4].value, &points[5]));
        assert!(on_polynomial(&sp, &pts, 4, b"t"));
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
    }

    #[test]
    fn points_off_one_polynomial_are_caught() {
        let seed = secagg_engine::testing::test_seed("feldman::points_off_polynomial");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let holders: Vec<ClientId> = (0..20).map(ClientId).collect();
        let t = 9;
        let secret = random_scalar(&mut rng);
        let Dealt {
            secret_point,
            points,
            ..
        } = deal(&secret, t, &holders, &mut rng).unwrap();
        let sp = decode_point(&secret_point).unwrap();
        let pts = decompressed(&holders, &points);
        assert!(on_polynomial(&sp, &pts, t, b"x"));
        // One holder's point from another polynomial with the same secret.
        let other = deal(&secret, t, &holders, &mut rng).unwrap().points;
        let i = (rng.next_u32() % 20) as usize;
        let mut mixed = pts.clone();
        mixed[i].1 = decode_point(&other[i]).unwrap();
        assert!(
            !on_polynomial(&sp, &mixed, t, b"x"),
            "holder {i}, seed {seed}"
        );
        // Another secret's commitment; a polynomial of degree t (one too many).
        let wrong = EdwardsPoint::mul_base(&(secret + Scalar::ONE));
        assert!(!on_polynomial(&wrong, &pts, t, b"x"));
        let Dealt {
            secret_point: sp2,
            points: pts2,
            ..
        } = deal(&secret, t + 1, &holders, &mut rng).unwrap();
        let sp2 = decode_point(&sp2).unwrap();
        assert!(!on_polynomial(
            &sp2,
            &decompressed(&holders, &pts2),
            t,
            b"x"
        ));
        assert!(on_polynomial(
            &sp2,
            &decompressed(&holders, &pts2),
            t + 1,
            b"x"
        ));
        // With no more than t points there is nothing to check.
        assert!(on_polynomial(&wrong, &pts[..t - 1], t, b"x"));
    }

    #[test]
    fn malformed_points_and_dealings_are_refused() {
        let identity = EIGHT_TORSION[0].compress().to_bytes();
        assert_eq!(decode_point(&identity), Err(PointError::Identity));
        let mut not_on_curve = [0u8; 32];
        not_on_curve[0] = 2;
        let found = (0..50u8).any(|i| {
            not_on_curve[1] = i;
            CompressedEdwardsY(not_on_curve).decompress().is_none()
        });
        assert!(found);
        assert_eq!(decode_point(&not_on_curve), Err(PointError::NotOnCurve));
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        assert!(deal(&Scalar::ONE, 3, &ids(&[1, 2]), &mut rng).is_err());
        assert!(deal(&Scalar::ONE, 2, &ids(&[1, 1]), &mut rng).is_err());
    }

    /// Every encoding that decompresses but is not canonical: y = p + a for a < 19 (either
    /// sign), and x = 0 with the sign bit set (y = 1 and y = p − 1).
    fn non_canonical_encodings() -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        for a in 0u8..19 {
            for sign in [0u8, 0x80] {
                let mut b = [0xff; 32];
                b[0] = 0xed + a;
                b[31] = 0x7f | sign;
                out.push(b);
            }
        }
        let mut one = [0u8; 32];
        one[0] = 1;
        let mut minus_one = [0xff; 32];
        minus_one[0] = 0xec;
        for mut b in [one, minus_one] {
            b[31] |= 0x80;
            out.push(b);
        }
        out.retain(|b| CompressedEdwardsY(*b).decompress().is_some());
        out
    }

    #[test]
    fn one_rule_for_every_point() {
        let seed = secagg_engine::testing::test_seed("feldman::one_rule_for_points");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        // Points of the prime-order subgroup pass, as themselves.
        let good: Vec<EdwardsPoint> = (0..16)
            .map(|_| EdwardsPoint::mul_base(&random_scalar(&mut rng)))
            .collect();
        for p in &good {
            assert_eq!(
                decode_point(&p.compress().to_bytes()),
                Ok(*p),
                "seed {seed}"
            );
        }
        // With any non-zero torsion part they are refused, and the variable-time subgroup
        // check agrees with the library's constant-time one (an independent reference).
        for (i, p) in good.iter().enumerate() {
            let torsion = EIGHT_TORSION[1 + i % 7];
            let dirty = p + torsion;
            assert!(!dirty.is_torsion_free());
            assert!(!is_torsion_free_vartime(&dirty));
            assert_eq!(
                decode_point(&dirty.compress().to_bytes()),
                Err(PointError::Torsion),
                "torsion point {}, seed {seed}",
                1 + i % 7
            );
            assert!(is_torsion_free_vartime(p) && p.is_torsion_free());
        }
        for (i, t) in EIGHT_TORSION.iter().enumerate() {
            assert_eq!(is_torsion_free_vartime(t), t.is_torsion_free(), "{i}");
            let want = if i == 0 {
                PointError::Identity
            } else {
                PointError::Torsion
            };
            assert_eq!(decode_point(&t.compress().to_bytes()), Err(want), "{i}");
        }
        // Every non-canonical encoding is refused as such. (Each is also of the identity or
        // of a point with a torsion part — the library's own check says so — so the rule
        // refuses it twice over.)
        let odd = non_canonical_encodings();
        assert!(odd.len() >= 20, "{}", odd.len());
        for b in &odd {
            let p = CompressedEdwardsY(*b).decompress().unwrap();
            assert_ne!(p.compress().to_bytes(), *b);
            assert!(p.is_identity() || !p.is_torsion_free());
            assert_eq!(decode_point(b), Err(PointError::NonCanonical), "{b:02x?}");
        }
        // A batch names its first bad point.
        let encodings: Vec<[u8; 32]> = good.iter().map(|p| p.compress().to_bytes()).collect();
        let mut list: Vec<&[u8; 32]> = encodings.iter().collect();
        let at = (rng.next_u32() % 16) as usize;
        list[at] = &odd[0];
        assert_eq!(
            decode_points(&list).map(|_| ()),
            Err((at, PointError::NonCanonical))
        );
        assert_eq!(decode_points(&list[..at]).map(|v| v.len()), Ok(at));
    }

    type Made = (
        [u8; 32],
        [u8; 32],
        [u8; 32],
        Vec<(ClientId, [u8; 32], [u8; 32])>,
    );

    /// A dealing as a dealer makes it: σ and β dealt among the dealer and `neighbours`.
    fn dealing(rng: &mut ChaCha20Rng, dealer: u32, neighbours: &[u32], t: usize) -> Made {
        let mut holders = ids(neighbours);
        holders.push(ClientId(dealer));
        let m = deal(&random_scalar(rng), t, &holders, rng).unwrap();
        let s = deal(&random_scalar(rng), t, &holders, rng).unwrap();
        let (mk, mp, sk, sp) = (m.secret_point, m.points, s.secret_point, s.points);
        let n = neighbours.len();
        let points = (0..n).map(|i| (holders[i], mp[i], sp[i])).collect();
        (mk, sk, sp[n], points)
    }

    /// A dealing's borrowed form, as the server builds it.
    fn as_dealing(dealer: u32, made: &Made, transcript: [u8; 32]) -> Dealing<'_> {
        let (mk, sk, own, pts) = made;
        Dealing {
            dealer: ClientId(dealer),
            mask_key: mk,
            self_key: sk,
            own_point: own,
            points: pts.iter().map(|(h, m, s)| (*h, m, s)).collect(),
            transcript,
        }
    }

    #[test]
    fn dealings_are_checked_together_and_bad_ones_named() {
        let seed = secagg_engine::testing::test_seed("feldman::dealings_checked_together");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let t = 7;
        let mut made = Vec::new();
        for d in 0..12u32 {
            let neighbours: Vec<u32> = (1..=12).map(|j| (d + j * 5) % 97 + 100).collect();
            made.push((d, dealing(&mut rng, d, &neighbours, t)));
        }
        // Dealer 4 swaps one β point for another polynomial's; dealer 7 commits to another
        // σ; dealer 9 sends [0xff; 32] (y = p + 18 and the sign bit: a non-canonical encoding).
        let (_, _, _, other) = dealing(&mut rng, 4, &[1, 2], 2);
        made[4].1.3[2].2 = other[0].2;
        made[7].1.0 = made[8].1.0;
        made[9].1.3[0].1 = [0xff; 32];
        // Points with a torsion part: dealer 2 in a σ share point, 5 in its own β share
        // point (of order 2), 11 in β·B; dealer 10 encodes a β share point non-canonically.
        let dirty = |b: &mut [u8; 32], torsion: usize| {
            let p = CompressedEdwardsY(*b).decompress().unwrap() + EIGHT_TORSION[torsion];
            *b = p.compress().to_bytes();
        };
        dirty(&mut made[2].1.3[5].1, 1);
        dirty(&mut made[5].1.2, 4);
        dirty(&mut made[11].1.1, 3);
        made[10].1.3[7].2 = non_canonical_encodings()[5];
        let dealings: Vec<Dealing<'_>> = made
            .iter()
            .map(|(d, m)| as_dealing(*d, m, [*d as u8; 32]))
            .collect();
        let verdicts = verify_dealings(&dealings, t);
        for (d, v) in verdicts.iter().enumerate() {
            assert_eq!(
                v.is_err(),
                [2, 4, 5, 7, 9, 10, 11].contains(&d),
                "dealer {d}, seed {seed}"
            );
        }
        let bad_point = |d: usize| match &verdicts[d] {
            Err(CryptoError::BadPoint { what, why }) => Some((*what, *why)),
            _ => None,
        };
        assert_eq!(bad_point(2), Some(("σ share point", PointError::Torsion)));
        assert_eq!(
            bad_point(5),
            Some(("dealer's own β share point", PointError::Torsion))
        );
        assert_eq!(
            bad_point(11),
            Some(("self-mask commitment β·B", PointError::Torsion))
        );
        assert_eq!(
            bad_point(10),
            Some(("β share point", PointError::NonCanonical))
        );
        assert_eq!(
            bad_point(9),
            Some(("σ share point", PointError::NonCanonical))
        );
        // With as many points as the threshold there is nothing to check.
        let few = Dealing {
            points: dealings[4].points[..t - 2].to_vec(),
            ..dealings[7]
        };
        assert!(verify_dealings(&[few], t)[0].is_ok());
    }

    /// A dealing made from explicit polynomials (not through [`deal`]): σ of degree
    /// `sigma_degree` shared among the neighbours, β of degree `beta_degree` among the
    /// neighbours and the dealer; each point is value·B of the polynomial evaluated directly.
    fn polynomial_dealing(
        rng: &mut ChaCha20Rng,
        dealer: u32,
        neighbours: &[u32],
        sigma_degree: usize,
        beta_degree: usize,
    ) -> Made {
        let sigma: Vec<Scalar> = (0..=sigma_degree).map(|_| random_scalar(rng)).collect();
        let beta: Vec<Scalar> = (0..=beta_degree).map(|_| random_scalar(rng)).collect();
        let at = |coeffs: &[Scalar], x: Scalar| {
            let mut value = Scalar::ZERO;
            let mut power = Scalar::ONE;
            for c in coeffs {
                value += c * power;
                power *= x;
            }
            EdwardsPoint::mul_base(&value).compress().to_bytes()
        };
        let own = at(&beta, evaluation_point(ClientId(dealer)));
        let points = ids(neighbours)
            .into_iter()
            .map(|h| {
                let x = evaluation_point(h);
                (h, at(&sigma, x), at(&beta, x))
            })
            .collect();
        (
            at(&sigma, Scalar::ZERO),
            at(&beta, Scalar::ZERO),
            own,
            points,
        )
    }

    #[test]
    fn a_dealing_of_degree_t_is_refused_for_either_secret() {
        let seed = secagg_engine::testing::test_seed("feldman::degree_t_refused");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let t = 6;
        // k neighbours: σ's set has k + 1 points, β's k + 2. k = t − 1 is the edge where σ's
        // set has exactly t points (nothing to check) and β's has t + 1; at k = t − 2 neither
        // set has more than t points.
        for k in [t + 5, t, t - 1, t - 2] {
            for trial in 0..4u32 {
                let dealer = rng.next_u32() % 1000;
                let mut neighbours: Vec<u32> = Vec::new();
                while neighbours.len() < k {
                    let h = rng.next_u32() % 1000;
                    if h != dealer && !neighbours.contains(&h) {
                        neighbours.push(h);
                    }
                }
                let (n_sigma, n_beta) = (k + 1, k + 2);
                let transcript = [trial as u8; 32];
                let verdict = |rng: &mut ChaCha20Rng, sigma_degree, beta_degree| {
                    let made =
                        polynomial_dealing(rng, dealer, &neighbours, sigma_degree, beta_degree);
                    verify_dealings(&[as_dealing(dealer, &made, transcript)], t)
                        .pop()
                        .map(|v| v.map(|_| ()))
                };
                let why = format!("k {k}, trial {trial}, seed {seed}");
                assert!(
                    matches!(verdict(&mut rng, t - 1, t - 1), Some(Ok(()))),
                    "{why}"
                );
                let sigma_t = verdict(&mut rng, t, t - 1);
                assert_eq!(
                    matches!(sigma_t, Some(Err(CryptoError::Commitment(ref w))) if w.contains("σ")),
                    n_sigma > t,
                    "σ of degree t: {sigma_t:?}, {why}"
                );
                let beta_t = verdict(&mut rng, t - 1, t);
                assert_eq!(
                    matches!(beta_t, Some(Err(CryptoError::Commitment(ref w))) if w.contains("β")),
                    n_beta > t,
                    "β of degree t: {beta_t:?}, {why}"
                );
                if n_beta <= t {
                    assert!(matches!(beta_t, Some(Ok(()))), "{why}");
                }
                if n_sigma <= t {
                    assert!(matches!(sigma_t, Some(Ok(()))), "{why}");
                }
            }
        }
    }
}
