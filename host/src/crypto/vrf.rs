//! ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381, suite `0x03`) on a client's Ed25519 identity key.
//!
//! A verifiable random function: only the holder of an identity key can compute its output on
//! an input, and anyone with the public key can check a proof that the output is the right
//! one. Rounds with verifiable self-selection use it so that the server cannot choose who is
//! eligible (see [`crate::selection`]).
//!
//! The VRF key pair is the Ed25519 identity key pair itself (RFC 9381 section 5.1 derives the
//! secret scalar and the nonce key from the 32-byte secret exactly as RFC 8032 does), so the
//! CA's certificate for the identity key certifies the VRF key too. Sharing the key between
//! the two schemes is safe here because their nonces can never coincide: a signature's nonce
//! hashes the key's prefix with the signed bytes, which always start with an 8-byte domain
//! length and a domain (longer than 32 bytes in all), while the VRF's hashes the same prefix
//! with exactly the 32-byte encoding of a curve point.
//!
//! Why not a crate: the RFC 9381 crates on crates.io (`vrf-rfc9381` 0.0.x, which needs a fork
//! of curve25519-dalek or pre-release primitives; `ecvrf-rs`, on a fork of dalek; `ark-vrf`,
//! whose Ed25519 suite is "inspired by" the RFC with another transcript and brings the
//! arkworks stack; `solana-ecvrf`, verification through Solana syscalls) are either
//! unmaintained, unaudited pre-releases, or not the RFC's construction. The TAI suite needs
//! nothing but point decoding, scalar arithmetic and SHA-512, all from the audited
//! curve25519-dalek and sha2 this crate already builds on; this module is checked against
//! every example of RFC 9381 Appendix B.3.
//!
//! Point decoding is strict (RFC 8032 section 5.1.3): an encoding must decode and re-encode to
//! the same bytes, so y ≥ p and a negative zero are refused.

use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

/// The length of a proof: Γ (32), c (16), s (32).
pub const PROOF_LEN: usize = 80;
/// The length of an output β.
pub const OUTPUT_LEN: usize = 64;

const SUITE: u8 = 0x03;
const CHALLENGE_LEN: usize = 16;

/// Why a proof does not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VrfError {
    /// The public key is not a canonical encoding of a point of large order.
    #[error("the VRF public key is not a canonical point of large order")]
    PublicKey,
    /// The proof's Γ is not a canonical point, or its s is not a canonical scalar.
    #[error("the VRF proof is malformed")]
    Malformed,
    /// The proof does not verify for this key and input.
    #[error("the VRF proof does not verify")]
    Invalid,
}

/// RFC 8032 decoding: `None` unless `bytes` is the canonical encoding of a curve point.
fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    if !is_canonical_encoding(bytes) {
        return None;
    }
    CompressedEdwardsY(*bytes).decompress()
}

/// Whether `bytes` is an encoding RFC 8032 can produce: y < p = 2^255 − 19, and no sign bit
/// on x = 0 (which only y = ±1 have). Byte checks, so that decoding costs one square root.
pub fn is_canonical_encoding(bytes: &[u8; 32]) -> bool {
    let sign = bytes[31] >> 7;
    let mut y = *bytes;
    y[31] &= 0x7f;
    // y ≥ p: the top 250 bits all set and the low byte at least 0xed.
    let high_all_set = y[1..31].iter().all(|b| *b == 0xff) && y[31] == 0x7f;
    if high_all_set && y[0] >= 0xed {
        return false;
    }
    // x = 0 exactly when y = 1 or y = p − 1 (= 2^255 − 20); its sign bit must be clear.
    let is_one = y[0] == 1 && y[1..].iter().all(|b| *b == 0);
    let is_minus_one = high_all_set && y[0] == 0xec;
    !(sign == 1 && (is_one || is_minus_one))
}

/// The secret scalar x and the nonce key (the second half of SHA-512 of the secret), as in
/// RFC 8032 section 5.1.5.
fn expand(secret: &[u8; 32]) -> (Zeroizing<Scalar>, Zeroizing<[u8; 32]>) {
    let h = Zeroizing::new(<[u8; 64]>::from(Sha512::digest(secret)));
    let mut lower = Zeroizing::new([0u8; 32]);
    lower.copy_from_slice(&h[..32]);
    lower[0] &= 248;
    lower[31] &= 127;
    lower[31] |= 64;
    let mut prefix = Zeroizing::new([0u8; 32]);
    prefix.copy_from_slice(&h[32..]);
    (Zeroizing::new(Scalar::from_bytes_mod_order(*lower)), prefix)
}

/// ECVRF_encode_to_curve_try_and_increment, with the public key as the salt.
fn encode_to_curve(public: &[u8; 32], alpha: &[u8]) -> Option<EdwardsPoint> {
    for ctr in 0..=u8::MAX {
        let digest = Sha512::new()
            .chain_update([SUITE, 0x01])
            .chain_update(public)
            .chain_update(alpha)
            .chain_update([ctr, 0x00])
            .finalize();
        let mut candidate = [0u8; 32];
        candidate.copy_from_slice(&digest[..32]);
        if let Some(p) = decode_point(&candidate) {
            let h = p.mul_by_cofactor();
            if !h.is_identity() {
                return Some(h);
            }
        }
    }
    None // about 2^-256: every one of 256 candidates failed
}

/// ECVRF_challenge_generation over the encodings of Y, H, Γ, U, V: the first 16 bytes of
/// the hash, as a scalar.
fn challenge(encodings: [&[u8; 32]; 5]) -> Scalar {
    let mut h = Sha512::new().chain_update([SUITE, 0x02]);
    for p in encodings {
        h.update(p);
    }
    let digest = h.chain_update([0x00]).finalize();
    let mut c = [0u8; 32];
    c[..CHALLENGE_LEN].copy_from_slice(&digest[..CHALLENGE_LEN]);
    Scalar::from_bytes_mod_order(c)
}

/// ECVRF_proof_to_hash from the encoding of 8·Γ.
fn proof_output(cleared_gamma: &[u8; 32]) -> [u8; OUTPUT_LEN] {
    Sha512::new()
        .chain_update([SUITE, 0x03])
        .chain_update(cleared_gamma)
        .chain_update([0x00])
        .finalize()
        .into()
}

/// Compresses points with one field inversion for all of them.
fn compress<const N: usize>(points: [EdwardsPoint; N]) -> [[u8; 32]; N] {
    let compressed = EdwardsPoint::compress_batch_alloc(&points);
    let mut out = [[0u8; 32]; N];
    for (o, c) in out.iter_mut().zip(&compressed) {
        *o = c.to_bytes();
    }
    out
}

/// The public key of an Ed25519 secret key (the identity's public key).
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    let (x, _) = expand(secret);
    EdwardsPoint::mul_base(&x).compress().to_bytes()
}

/// ECVRF_prove: the proof π for `alpha` under the Ed25519 secret key `secret`, and its output
/// β. Deterministic. `None` only if hashing to the curve failed 256 times (about 2^-256).
pub fn prove(secret: &[u8; 32], alpha: &[u8]) -> Option<([u8; PROOF_LEN], [u8; OUTPUT_LEN])> {
    let (x, prefix) = expand(secret);
    let y = EdwardsPoint::mul_base(&x).compress().to_bytes();
    let h = encode_to_curve(&y, alpha)?;
    let gamma = h * *x;
    let h_bytes = h.compress().to_bytes();
    let nonce = Zeroizing::new(<[u8; 64]>::from(
        Sha512::new()
            .chain_update(*prefix)
            .chain_update(h_bytes)
            .finalize(),
    ));
    let k = Zeroizing::new(Scalar::from_bytes_mod_order_wide(&nonce));
    let [gamma_bytes, u, v, cleared] = compress([
        gamma,
        EdwardsPoint::mul_base(&k),
        h * *k,
        gamma.mul_by_cofactor(),
    ]);
    let c = challenge([&y, &h_bytes, &gamma_bytes, &u, &v]);
    let s = *k + c * *x;
    let mut pi = [0u8; PROOF_LEN];
    pi[..32].copy_from_slice(&gamma_bytes);
    pi[32..48].copy_from_slice(&c.as_bytes()[..CHALLENGE_LEN]);
    pi[48..].copy_from_slice(s.as_bytes());
    Some((pi, proof_output(&cleared)))
}

/// ECVRF_verify (with key validation): the output β if `proof` is the proof for `alpha`
/// under `public`.
pub fn verify(
    public: &[u8; 32],
    alpha: &[u8],
    proof: &[u8; PROOF_LEN],
) -> Result<[u8; OUTPUT_LEN], VrfError> {
    let y = decode_point(public).ok_or(VrfError::PublicKey)?;
    if y.is_small_order() {
        return Err(VrfError::PublicKey);
    }
    let mut gamma_bytes = [0u8; 32];
    gamma_bytes.copy_from_slice(&proof[..32]);
    let gamma = decode_point(&gamma_bytes).ok_or(VrfError::Malformed)?;
    let mut c_bytes = [0u8; 32];
    c_bytes[..CHALLENGE_LEN].copy_from_slice(&proof[32..48]);
    let c = Scalar::from_bytes_mod_order(c_bytes);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&proof[48..]);
    let s =
        Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(VrfError::Malformed)?;
    let h = encode_to_curve(public, alpha).ok_or(VrfError::Invalid)?;
    let u = EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-c), &y, &s);
    let v = EdwardsPoint::vartime_multiscalar_mul([s, -c], [h, gamma]);
    let [h_bytes, u, v, cleared] = compress([h, u, v, gamma.mul_by_cofactor()]);
    if challenge([public, &h_bytes, &gamma_bytes, &u, &v]) == c {
        Ok(proof_output(&cleared))
    } else {
        Err(VrfError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let s: String = s.split_whitespace().collect();
        assert_eq!(s.len(), 2 * N, "{s}");
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    struct Example {
        sk: &'static str,
        pk: &'static str,
        alpha: &'static [u8],
        pi: &'static str,
        beta: &'static str,
    }

    /// RFC 9381 Appendix B.3, examples 16, 17 (try-and-increment succeeds at ctr = 1) and 18.
    const EXAMPLES: [Example; 3] = [
        Example {
            sk: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            pk: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            alpha: b"",
            pi: "8657106690b5526245a92b003bb079ccd1a92130477671f6fc01ad16f26f723f
                 26f8a57ccaed74ee1b190bed1f479d9727d2d0f9b005a6e456a35d4fb0daab12
                 68a1b0db10836d9826a528ca76567805",
            beta: "90cf1df3b703cce59e2a35b925d411164068269d7b2d29f3301c03dd757876ff
                   66b71dda49d2de59d03450451af026798e8f81cd2e333de5cdf4f3e140fdd8ae",
        },
        Example {
            sk: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            pk: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            alpha: &[0x72],
            pi: "f3141cd382dc42909d19ec5110469e4feae18300e94f304590abdced48aed593
                 3bf0864a62558b3ed7f2fea45c92a465301b3bbf5e3e54ddf2d935be3b67926d
                 a3ef39226bbc355bdc9850112c8f4b02",
            beta: "eb4440665d3891d668e7e0fcaf587f1b4bd7fbfe99d0eb2211ccec90496310eb
                   5e33821bc613efb94db5e5b54c70a848a0bef4553a41befc57663b56373a5031",
        },
        Example {
            sk: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            pk: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            alpha: &[0xaf, 0x82],
            pi: "9bc0f79119cc5604bf02d23b4caede71393cedfbb191434dd016d30177ccbf80
                 96bb474e53895c362d8628ee9f9ea3c0e52c7a5c691b6c18c9979866568add7a
                 2d41b00b05081ed0f58ee5e31b3a970e",
            beta: "645427e5d00c62a23fb703732fa5d892940935942101e456ecca7bb217c61c45
                   2118fec1219202a0edcf038bb6373241578be7217ba85a2687f7a0310b2df19f",
        },
    ];

    #[test]
    fn rfc9381_examples_prove_and_verify() {
        for (i, e) in EXAMPLES.iter().enumerate() {
            let sk: [u8; 32] = hex(e.sk);
            let pk: [u8; 32] = hex(e.pk);
            let want_pi: [u8; PROOF_LEN] = hex(e.pi);
            let want_beta: [u8; OUTPUT_LEN] = hex(e.beta);
            assert_eq!(public_key(&sk), pk, "example {}", 16 + i);
            // The identity key's public half is the VRF key.
            let identity = ed25519_dalek::SigningKey::from_bytes(&sk);
            assert_eq!(identity.verifying_key().to_bytes(), pk);
            let (pi, beta) = prove(&sk, e.alpha).unwrap();
            assert_eq!(pi, want_pi, "example {}", 16 + i);
            assert_eq!(beta, want_beta, "example {}", 16 + i);
            assert_eq!(verify(&pk, e.alpha, &pi), Ok(want_beta));
        }
    }

    #[test]
    fn wrong_inputs_keys_and_tampered_proofs_are_refused() {
        let e = &EXAMPLES[2];
        let pk: [u8; 32] = hex(e.pk);
        let other: [u8; 32] = hex(EXAMPLES[0].pk);
        let pi: [u8; PROOF_LEN] = hex(e.pi);
        assert_eq!(verify(&pk, b"another input", &pi), Err(VrfError::Invalid));
        assert_eq!(verify(&other, e.alpha, &pi), Err(VrfError::Invalid));
        for byte in [0, 31, 32, 47, 48, 79] {
            let mut bad = pi;
            bad[byte] ^= 0x04;
            assert!(verify(&pk, e.alpha, &bad).is_err(), "byte {byte}");
        }
        // s ≥ q, a Γ that is not a point, the identity as a key, a non-canonical key.
        let mut big_s = pi;
        big_s[48..].fill(0xff);
        assert_eq!(verify(&pk, e.alpha, &big_s), Err(VrfError::Malformed));
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(verify(&identity, e.alpha, &pi), Err(VrfError::PublicKey));
        let mut non_canonical = identity;
        non_canonical[31] |= 0x80; // x = 0 with the sign bit set
        assert_eq!(
            verify(&non_canonical, e.alpha, &pi),
            Err(VrfError::PublicKey)
        );
        let mut gamma_off = pi;
        gamma_off[..32].copy_from_slice(&non_canonical);
        assert_eq!(verify(&pk, e.alpha, &gamma_off), Err(VrfError::Malformed));
    }

    #[test]
    fn canonical_encodings_are_exactly_those_that_round_trip() {
        use curve25519_dalek::edwards::CompressedEdwardsY;
        // Every y ≥ p, and y = ±1 with either sign, against decompress-then-compress.
        let mut cases = Vec::new();
        for low in 0xe0..=0xffu8 {
            let mut b = [0xffu8; 32];
            b[0] = low;
            b[31] = 0x7f;
            cases.push(b);
            b[31] = 0xff;
            cases.push(b);
        }
        let mut one = [0u8; 32];
        one[0] = 1;
        cases.push(one);
        one[31] = 0x80;
        cases.push(one);
        let seed = secagg_engine::testing::test_seed("vrf::canonical");
        let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(seed);
        for _ in 0..2000 {
            let mut b = [0u8; 32];
            rand_core::Rng::fill_bytes(&mut rng, &mut b);
            cases.push(b);
        }
        for b in cases {
            let Some(p) = CompressedEdwardsY(b).decompress() else {
                continue;
            };
            let round_trips = p.compress().to_bytes() == b;
            assert_eq!(
                is_canonical_encoding(&b),
                round_trips,
                "{b:02x?} (seed {seed})"
            );
        }
    }

    #[test]
    fn outputs_of_fresh_keys_verify_and_differ_per_input() {
        let seed = secagg_engine::testing::test_seed("vrf::fresh_keys");
        let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(seed);
        for i in 0..8u8 {
            let mut sk = [0u8; 32];
            rand_core::Rng::fill_bytes(&mut rng, &mut sk);
            let pk = public_key(&sk);
            let (pi, beta) = prove(&sk, &[i]).unwrap();
            assert_eq!(verify(&pk, &[i], &pi), Ok(beta), "seed {seed}");
            let (_, beta2) = prove(&sk, &[i, i]).unwrap();
            assert_ne!(beta, beta2, "seed {seed}");
        }
    }
}
