//! The round's cryptography: key pairs, key agreement, key derivation, the share-bundle AEAD,
//! and verifiable Shamir sharing.
//!
//! * X25519 (x25519-dalek) for the share-bundle keys; a non-contributory result (a low-order
//!   public key) is an error, never a weak key.
//! * The mask-agreement key is a curve25519 scalar σ whose public key is σ·B on Ed25519 (its
//!   Feldman commitment C_0, so the key and the shares dealt of σ are bound together). A key
//!   is accepted only under the protocol's one rule for points ([`feldman::decode_points`]:
//!   canonical, in the prime-order subgroup, not the identity), by the server when it is
//!   advertised and by each client when its neighbours' keys arrive. Pairwise seeds come from
//!   the u-coordinate of σ_u·8·S_v, which both ends compute (the factor 8 is part of the
//!   derivation; it no longer has a small-order part to remove).
//! * HKDF-SHA256 with a distinct label per use and the session id as salt.
//! * ChaCha20-Poly1305 for share bundles, with associated data binding session, sender,
//!   recipient and the public points of the shares inside (so the server cannot show a
//!   recipient other points than the ones the sender sealed its shares under).
//! * Shamir over the curve25519 scalar field with Feldman-style commitments in evaluation form
//!   ([`feldman`]); reconstruction uses Lagrange coefficients computed once per set of share
//!   holders.
//!
//! Secrets are zeroized on drop and have no `Debug`, `Clone` or serialization.

pub mod feldman;
mod secrets;
mod session;
mod shamir;
pub mod vrf;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use secagg_engine::Seed;

use crate::ClientId;
use crate::error::CryptoError;

pub use feldman::{Dealt, deal};
#[cfg(not(feature = "testing"))]
pub(crate) use secrets::ClientSecrets;
#[cfg(feature = "testing")]
pub use secrets::ClientSecrets;
pub use session::{
    ADVERTISE_DOMAIN, GraphSeed, ListCommitment, RoundDigest, SURVIVORS_DOMAIN, SessionId,
    advertisement_message, nonce_commitment, survivors_digest,
};
pub use shamir::{Lagrange, ShamirShare, evaluation_point};

/// Domain-separation labels, one per derivation.
mod label {
    pub const SELF_MASK: &[u8] = b"secagg/v2/self-mask-seed";
    pub const PAIRWISE: &[u8] = b"secagg/v2/pairwise-mask-seed";
    pub const SHARE_KEY: &[u8] = b"secagg/v2/share-bundle-key";
    pub const SHARE_AAD: &[u8] = b"secagg/v2/share-bundle";
    pub const SHARE_POINTS: &[u8] = b"secagg/v2/share-points";
}

/// A client's two public keys: `c` encrypts share bundles, `s` agrees mask seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PublicKeys {
    /// X25519 public key for share-bundle encryption (c_pk).
    pub encryption: [u8; 32],
    /// Mask-agreement public key σ·B, a compressed Ed25519 point (s_pk).
    pub masking: [u8; 32],
}

/// A fixed clamped scalar used only to test X25519 public keys for small order: a clamped
/// scalar is a multiple of 8, so the product is the identity exactly when the point has small
/// order.
const ORDER_PROBE: [u8; 32] = [0x5a; 32];

/// Whether an X25519 public key is one of the small-order points, which would make any
/// agreement with it predictable.
pub fn is_low_order(pk: &[u8; 32]) -> bool {
    !StaticSecret::from(ORDER_PROBE)
        .diffie_hellman(&PublicKey::from(*pk))
        .was_contributory()
}

/// A peer's mask-agreement key ready for agreement: 8·S. Refuses a key that breaks the one
/// rule for points ([`feldman::decode_point`]): not on the curve, not canonically encoded,
/// the identity, or with a small-order component.
pub fn masking_point(public: &[u8; 32]) -> Result<EdwardsPoint, CryptoError> {
    feldman::decode_point(public)
        .map(|p| p.mul_by_cofactor())
        .map_err(|why| CryptoError::BadPoint {
            what: "mask-agreement key",
            why,
        })
}

/// Draws a uniform scalar from 64 random bytes.
pub(crate) fn random_scalar<R: CryptoRng + ?Sized>(rng: &mut R) -> Scalar {
    let mut wide = Zeroizing::new([0u8; 64]);
    rng.fill_bytes(&mut wide[..]);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// The public mask-agreement key of σ: σ·B, compressed (also σ's Feldman commitment C_0).
pub fn mask_public_key(scalar: &Scalar) -> [u8; 32] {
    EdwardsPoint::mul_base(scalar).compress().to_bytes()
}

/// The self-mask seed derived from its shared scalar.
pub fn self_mask_seed(scalar: &Scalar, session: &SessionId) -> Seed {
    let bytes = Zeroizing::new(scalar.to_bytes());
    Seed::from_bytes(derive32(&bytes[..], session, label::SELF_MASK, Vec::new()))
}

/// Pairwise seeds between the mask scalar `sigma` of `me` and many peers, each given as its
/// prepared point 8·S ([`masking_point`]). Symmetric: both ends derive the same seed. The
/// products are converted to u-coordinates with one batched inversion.
pub fn pairwise_seeds(
    sigma: &Scalar,
    session: &SessionId,
    me: ClientId,
    peers: &[(ClientId, &EdwardsPoint)],
) -> Result<Vec<Seed>, CryptoError> {
    let mut products: Vec<EdwardsPoint> = peers.iter().map(|(_, p)| sigma * *p).collect();
    let mut shared = EdwardsPoint::to_montgomery_batch(&products);
    products.zeroize();
    let mut out = Vec::with_capacity(peers.len());
    let mut result = Ok(());
    for ((peer, _), u) in peers.iter().zip(&shared) {
        let dh = Zeroizing::new(u.to_bytes());
        // 8·S has prime order (masking_point refused every other key) and σ is non-zero with
        // overwhelming probability; a zero product means a zero scalar: refuse it anyway.
        if bool::from(dh.ct_eq(&[0u8; 32])) {
            result = Err(CryptoError::NonContributory { peer: *peer });
            break;
        }
        out.push(Seed::from_bytes(derive32(
            &dh[..],
            session,
            label::PAIRWISE,
            pair_info(me, *peer),
        )));
    }
    shared.zeroize();
    result.map(|()| out)
}

/// An X25519 public key as an Edwards point, for [`agree_many`]; `None` for a u-coordinate
/// on the twist, which only the Montgomery ladder handles.
pub fn edwards_of(public: &[u8; 32]) -> Option<EdwardsPoint> {
    MontgomeryPoint(*public).to_edwards(0)
}

/// X25519 between one secret and many peers' public keys, byte for byte what the ladder gives:
/// computed as variable-base Edwards multiplications by the clamped secret (the sign lost in a
/// u-coordinate does not change the product's u-coordinate) and one batched inversion to
/// convert every product back — about 1.5× faster per peer than a ladder each. `edwards` is
/// the peer key as an Edwards point (from [`edwards_of`]); keys on the twist (`None`) go
/// through the ladder. A non-contributory result (a small-order key) is an error naming the
/// peer.
pub fn agree_many(
    secret: &StaticSecret,
    peers: &[(ClientId, &[u8; 32], Option<&EdwardsPoint>)],
) -> Result<Vec<Zeroizing<[u8; 32]>>, CryptoError> {
    let key = Zeroizing::new(secret.to_bytes());
    let mut products: Vec<EdwardsPoint> = peers
        .iter()
        .filter_map(|(_, _, e)| e.map(|p| p.mul_clamped(*key)))
        .collect();
    let mut shared = EdwardsPoint::to_montgomery_batch(&products);
    products.zeroize();
    let mut batched = shared.iter();
    let mut out = Vec::with_capacity(peers.len());
    let mut result = Ok(());
    for (peer, public, e) in peers {
        let dh = if e.is_some() {
            batched.next().map(|m| Zeroizing::new(m.to_bytes()))
        } else {
            None
        };
        match dh {
            Some(d) if !bool::from(d.ct_eq(&[0u8; 32])) => out.push(d),
            Some(_) => {
                result = Err(CryptoError::NonContributory { peer: *peer });
                break;
            }
            None => match agree(secret, public, *peer) {
                Ok(d) => out.push(d),
                Err(err) => {
                    result = Err(err);
                    break;
                }
            },
        }
    }
    shared.zeroize();
    result.map(|()| out)
}

fn agree(
    secret: &StaticSecret,
    peer_public: &[u8; 32],
    peer: ClientId,
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*peer_public));
    if !shared.was_contributory() {
        return Err(CryptoError::NonContributory { peer });
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// The unordered pair, so both ends of a pairwise derivation use the same info string.
fn pair_info(a: ClientId, b: ClientId) -> Vec<u8> {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut v = Vec::with_capacity(8);
    v.extend_from_slice(&lo.0.to_le_bytes());
    v.extend_from_slice(&hi.0.to_le_bytes());
    v
}

fn derive32(ikm: &[u8], session: &SessionId, label: &[u8], extra: Vec<u8>) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(&session.0), ikm);
    let mut info = Vec::with_capacity(label.len() + extra.len());
    info.extend_from_slice(label);
    info.extend_from_slice(&extra);
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF's limit of 255 x 32, so expand cannot fail.
    let _ = hk.expand(&info, &mut okm);
    okm
}

/// What a bundle is bound to besides its ends: the public points of the two shares inside
/// (σ share·B, β share·B) and the dealer's self-mask key β·B.
pub fn share_points_digest(
    mask_point: &[u8; 32],
    self_point: &[u8; 32],
    self_key: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label::SHARE_POINTS);
    h.update(mask_point);
    h.update(self_point);
    h.update(self_key);
    h.finalize().into()
}

/// The symmetric key of one pair's share bundles. Zeroized on drop. Revealing it (to prove a
/// dealer cheated) opens that one bundle and nothing else.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct BundleKey([u8; 32]);

/// The plaintext of a share bundle: the sender's two shares for one recipient.
pub struct BundlePlaintext {
    /// Share of the sender's mask-key scalar σ.
    pub mask_share: Scalar,
    /// Share of the sender's self-mask scalar β.
    pub self_share: Scalar,
}

impl Drop for BundlePlaintext {
    fn drop(&mut self) {
        self.mask_share.zeroize();
        self.self_share.zeroize();
    }
}

/// Bytes of a bundle's plaintext: sender, recipient, two scalars.
const BUNDLE_PLAINTEXT_LEN: usize = 4 + 4 + 32 + 32;
/// Bytes of a sealed bundle on the wire (plaintext plus the Poly1305 tag).
pub const BUNDLE_LEN: usize = BUNDLE_PLAINTEXT_LEN + 16;

fn bundle_nonce(from: ClientId, to: ClientId) -> Nonce {
    // Each key serves one pair and each direction seals exactly one bundle per session, so
    // (sender, recipient) is a unique nonce under that key.
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&from.0.to_le_bytes());
    n[4..8].copy_from_slice(&to.0.to_le_bytes());
    Nonce::from(n)
}

fn bundle_aad(session: &SessionId, from: ClientId, to: ClientId, binding: &[u8; 32]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(label::SHARE_AAD.len() + 72);
    aad.extend_from_slice(label::SHARE_AAD);
    aad.extend_from_slice(&session.0);
    aad.extend_from_slice(&from.0.to_le_bytes());
    aad.extend_from_slice(&to.0.to_le_bytes());
    aad.extend_from_slice(binding);
    aad
}

impl BundleKey {
    /// A key from its revealed bytes (a complaint's proof).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        BundleKey(bytes)
    }

    /// The key's bytes, to reveal in a complaint about the bundle it opened.
    pub fn reveal(&self) -> [u8; 32] {
        self.0
    }

    /// Seals `shares` from `from` to `to`, bound to `binding` ([`share_points_digest`]).
    pub fn seal(
        &self,
        session: &SessionId,
        from: ClientId,
        to: ClientId,
        binding: &[u8; 32],
        shares: &BundlePlaintext,
    ) -> Result<Vec<u8>, CryptoError> {
        let mut pt = Zeroizing::new([0u8; BUNDLE_PLAINTEXT_LEN]);
        pt[..4].copy_from_slice(&from.0.to_le_bytes());
        pt[4..8].copy_from_slice(&to.0.to_le_bytes());
        pt[8..40].copy_from_slice(&shares.mask_share.to_bytes());
        pt[40..72].copy_from_slice(&shares.self_share.to_bytes());
        let cipher = ChaCha20Poly1305::new(&Key::from(self.0));
        let aad = bundle_aad(session, from, to, binding);
        cipher
            .encrypt(
                &bundle_nonce(from, to),
                Payload {
                    msg: &pt[..],
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Split("share bundle encryption failed".into()))
    }

    /// Opens a bundle `from` sent to `to`, checking its tag (which covers `binding`) and the
    /// ids inside.
    pub fn open(
        &self,
        session: &SessionId,
        from: ClientId,
        to: ClientId,
        binding: &[u8; 32],
        sealed: &[u8],
    ) -> Result<BundlePlaintext, CryptoError> {
        if sealed.len() != BUNDLE_LEN {
            return Err(CryptoError::Decrypt { from });
        }
        let cipher = ChaCha20Poly1305::new(&Key::from(self.0));
        let aad = bundle_aad(session, from, to, binding);
        let pt = Zeroizing::new(
            cipher
                .decrypt(
                    &bundle_nonce(from, to),
                    Payload {
                        msg: sealed,
                        aad: &aad,
                    },
                )
                .map_err(|_| CryptoError::Decrypt { from })?,
        );
        if pt.len() != BUNDLE_PLAINTEXT_LEN
            || pt[..4] != from.0.to_le_bytes()
            || pt[4..8] != to.0.to_le_bytes()
        {
            return Err(CryptoError::Decrypt { from });
        }
        Ok(BundlePlaintext {
            mask_share: scalar_from_bytes(&pt[8..40])?,
            self_share: scalar_from_bytes(&pt[40..72])?,
        })
    }
}

/// A canonical scalar from 32 bytes, or an error (never a silent reduction).
pub fn scalar_from_bytes(bytes: &[u8]) -> Result<Scalar, CryptoError> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::NonCanonical)?;
    Option::<Scalar>::from(Scalar::from_canonical_bytes(arr)).ok_or(CryptoError::NonCanonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoundConfig;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    fn session() -> SessionId {
        SessionId([9; 32])
    }

    #[test]
    fn pairwise_seeds_agree_and_differ_per_pair() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = ClientSecrets::generate(&mut rng);
        let b = ClientSecrets::generate(&mut rng);
        let c = ClientSecrets::generate(&mut rng);
        let (ka, kb, kc) = (a.public_keys(), b.public_keys(), c.public_keys());
        let s = session();
        let ab = a
            .pairwise_seeds(&s, ClientId(1), &[(ClientId(2), &kb), (ClientId(3), &kc)])
            .unwrap();
        let ba = b
            .pairwise_seeds(&s, ClientId(2), &[(ClientId(1), &ka)])
            .unwrap();
        assert_eq!(ab[0].expose_secret(), ba[0].expose_secret());
        assert_ne!(ab[0].expose_secret(), ab[1].expose_secret());
        // Another session, other seeds.
        let other = a
            .pairwise_seeds(&SessionId([1; 32]), ClientId(1), &[(ClientId(2), &kb)])
            .unwrap();
        assert_ne!(other[0].expose_secret(), ab[0].expose_secret());
        // A rebuilt mask scalar derives the same seed as its owner, and its public key.
        let pb = masking_point(&kb.masking).unwrap();
        let again =
            pairwise_seeds(a.mask_scalar(), &s, ClientId(1), &[(ClientId(2), &pb)]).unwrap();
        assert_eq!(again[0].expose_secret(), ab[0].expose_secret());
        assert_eq!(mask_public_key(a.mask_scalar()), ka.masking);
    }

    #[test]
    fn pairwise_agreement_matches_an_independent_computation() {
        // σ_a·(σ_b·B) computed as one scalar product of the base point: the u-coordinate of
        // 8·σ_a·σ_b·B, derived through HKDF exactly as the module documents.
        let seed = secagg_engine::testing::test_seed("crypto::pairwise_independent");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let a = ClientSecrets::generate(&mut rng);
        let b = ClientSecrets::generate(&mut rng);
        let product = Scalar::from(8u64) * a.mask_scalar() * b.mask_scalar();
        let u = EdwardsPoint::mul_base(&product).to_montgomery().to_bytes();
        let want = derive32(
            &u,
            &session(),
            label::PAIRWISE,
            pair_info(ClientId(4), ClientId(2)),
        );
        let got = a
            .pairwise_seeds(&session(), ClientId(4), &[(ClientId(2), &b.public_keys())])
            .unwrap();
        assert_eq!(got[0].expose_secret(), &want);
    }

    #[test]
    fn a_masking_key_with_a_small_order_part_is_refused() {
        let seed = secagg_engine::testing::test_seed("crypto::masking_key_torsion");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let a = ClientSecrets::generate(&mut rng);
        let clean = ClientSecrets::generate(&mut rng).public_keys();
        let p = curve25519_dalek::edwards::CompressedEdwardsY(clean.masking)
            .decompress()
            .unwrap();
        assert!(masking_point(&clean.masking).is_ok());
        for (i, torsion) in curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .enumerate()
            .skip(1)
        {
            let mut dirty = clean;
            dirty.masking = (p + torsion).compress().to_bytes();
            assert!(
                matches!(
                    masking_point(&dirty.masking),
                    Err(CryptoError::BadPoint {
                        why: crate::error::PointError::Torsion,
                        ..
                    })
                ),
                "torsion point {i}"
            );
            assert!(matches!(
                a.pairwise_seeds(&session(), ClientId(1), &[(ClientId(2), &dirty)]),
                Err(CryptoError::NonContributory { peer: ClientId(2) })
            ));
        }
    }

    #[test]
    fn batched_x25519_agreement_equals_the_ladder() {
        let seed = secagg_engine::testing::test_seed("crypto::batched_x25519");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let me = StaticSecret::random_from_rng(&mut rng);
        // Real keys, and raw random strings: about half of those lie on the twist, and some
        // have the top bit set (a non-canonical encoding the ladder masks off).
        let mut keys: Vec<[u8; 32]> = Vec::new();
        for i in 0..48u32 {
            keys.push(if i % 2 == 0 {
                ClientSecrets::generate(&mut rng).public_keys().encryption
            } else {
                let mut b = [0u8; 32];
                rng.fill_bytes(&mut b);
                b
            });
        }
        let points: Vec<Option<EdwardsPoint>> = keys.iter().map(edwards_of).collect();
        assert!(points.iter().any(Option::is_none), "no twist point drawn");
        assert!(points.iter().filter(|p| p.is_some()).count() > 24);
        let list: Vec<(ClientId, &[u8; 32], Option<&EdwardsPoint>)> = keys
            .iter()
            .zip(&points)
            .enumerate()
            .map(|(i, (k, p))| (ClientId(i as u32), k, p.as_ref()))
            .collect();
        let fast = agree_many(&me, &list).unwrap();
        for (i, (k, f)) in keys.iter().zip(&fast).enumerate() {
            let slow = agree(&me, k, ClientId(i as u32)).unwrap();
            assert_eq!(*slow, **f, "peer {i}");
        }
        // A low-order key in the batch is refused, as the ladder refuses it.
        let zero = [0u8; 32];
        let low = edwards_of(&zero);
        assert!(matches!(
            agree_many(&me, &[(ClientId(5), &zero, low.as_ref())]),
            Err(CryptoError::NonContributory { peer: ClientId(5) })
        ));
    }

    #[test]
    fn bundles_round_trip_and_reject_tampering() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let a = ClientSecrets::generate(&mut rng);
        let b = ClientSecrets::generate(&mut rng);
        let (ka, kb) = (a.public_keys(), b.public_keys());
        let s = session();
        let digest = share_points_digest(&[1; 32], &[2; 32], &[3; 32]);
        let key_ab = a.bundle_key(&s, ClientId(7), ClientId(9), &kb).unwrap();
        let key_ba = b.bundle_key(&s, ClientId(9), ClientId(7), &ka).unwrap();
        assert_eq!(key_ab.reveal(), key_ba.reveal());
        let pt = BundlePlaintext {
            mask_share: Scalar::from(11u64),
            self_share: Scalar::from(13u64),
        };
        let sealed = key_ab
            .seal(&s, ClientId(7), ClientId(9), &digest, &pt)
            .unwrap();
        assert_eq!(sealed.len(), BUNDLE_LEN);
        let opened = key_ba
            .open(&s, ClientId(7), ClientId(9), &digest, &sealed)
            .unwrap();
        assert_eq!(opened.mask_share, pt.mask_share);
        assert_eq!(opened.self_share, pt.self_share);
        // A revealed key opens the same bundle (a complaint's proof).
        let revealed = BundleKey::from_bytes(key_ba.reveal());
        assert!(
            revealed
                .open(&s, ClientId(7), ClientId(9), &digest, &sealed)
                .is_ok()
        );
        // Wrong direction, wrong session, other share points, a flipped bit, a short bundle.
        assert!(
            key_ba
                .open(&s, ClientId(9), ClientId(7), &digest, &sealed)
                .is_err()
        );
        assert!(
            key_ba
                .open(
                    &SessionId([1; 32]),
                    ClientId(7),
                    ClientId(9),
                    &digest,
                    &sealed
                )
                .is_err()
        );
        let other = share_points_digest(&[1; 32], &[2; 32], &[4; 32]);
        assert!(
            key_ba
                .open(&s, ClientId(7), ClientId(9), &other, &sealed)
                .is_err()
        );
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(
            key_ba
                .open(&s, ClientId(7), ClientId(9), &digest, &bad)
                .is_err()
        );
        assert!(
            key_ba
                .open(&s, ClientId(7), ClientId(9), &digest, &sealed[..40])
                .is_err()
        );
    }

    #[test]
    fn low_order_keys_are_detected() {
        // X25519: the identity and the order-2 point (u = 0 and u = 1) are small order.
        assert!(is_low_order(&[0u8; 32]));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(is_low_order(&one));
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let a = ClientSecrets::generate(&mut rng);
        assert!(!is_low_order(&a.public_keys().encryption));
        // Ed25519 masking keys: every small-order point is refused, a real key is not.
        for t in curve25519_dalek::constants::EIGHT_TORSION {
            assert!(masking_point(&t.compress().to_bytes()).is_err());
        }
        assert!(masking_point(&a.public_keys().masking).is_ok());
        let bad = PublicKeys {
            encryption: [0; 32],
            masking: curve25519_dalek::constants::EIGHT_TORSION[0]
                .compress()
                .to_bytes(),
        };
        assert!(matches!(
            a.pairwise_seeds(&session(), ClientId(1), &[(ClientId(2), &bad)]),
            Err(CryptoError::NonContributory { peer: ClientId(2) })
        ));
        assert!(matches!(
            a.bundle_key(&session(), ClientId(1), ClientId(2), &bad),
            Err(CryptoError::NonContributory { peer: ClientId(2) })
        ));
    }

    #[test]
    fn round_digest_and_session_bind_what_they_should() {
        let cfg = RoundConfig::builder(5, 10).build().unwrap();
        let base = RoundDigest::of(&cfg);
        let other_ctx = RoundDigest::of(
            &RoundConfig::builder(5, 10)
                .context([1; 32])
                .build()
                .unwrap(),
        );
        let other_t = RoundDigest::of(&RoundConfig::builder(5, 10).threshold(4).build().unwrap());
        assert_ne!(base, other_ctx);
        assert_ne!(base, other_t);
        // Every DP field moves the digest.
        let dp = crate::dp::DpConfig {
            clip: 1.0,
            scale: 100.0,
            noise: 50.0,
            honest: 3,
            beta: 0.0,
        };
        let with = |dp| RoundDigest::of(&RoundConfig::builder(5, 10).dp(Some(dp)).build().unwrap());
        let dp_digests = [
            with(dp),
            with(crate::dp::DpConfig { clip: 2.0, ..dp }),
            with(crate::dp::DpConfig { scale: 101.0, ..dp }),
            with(crate::dp::DpConfig { noise: 51.0, ..dp }),
            with(crate::dp::DpConfig { honest: 4, ..dp }),
            with(crate::dp::DpConfig { beta: 0.5, ..dp }),
        ];
        let distinct: std::collections::BTreeSet<_> = dp_digests.iter().map(|d| d.0).collect();
        assert_eq!(distinct.len(), dp_digests.len());
        assert!(!distinct.contains(&base.0));
        let cohort = ListCommitment {
            root: [3; 32],
            len: 7,
        };
        let present = ListCommitment {
            root: [4; 32],
            len: 6,
        };
        let seed = GraphSeed::derive(&base, &cohort, &[(1, [0; 32])]);
        let s1 = SessionId::derive(&base, &cohort, &seed, &present);
        let s2 = SessionId::derive(&base, &ListCommitment { len: 8, ..cohort }, &seed, &present);
        let s3 = SessionId::derive(&other_ctx, &cohort, &seed, &present);
        assert_ne!(s1, s2);
        assert_ne!(s1, s3);
        // The graph seed moves with a revealed nonce, its index, and the cohort.
        let g2 = GraphSeed::derive(&base, &cohort, &[(1, [1; 32])]);
        let g3 = GraphSeed::derive(&base, &cohort, &[(2, [0; 32])]);
        let g4 = GraphSeed::derive(&base, &present, &[(1, [0; 32])]);
        assert_ne!(seed, g2);
        assert_ne!(seed, g3);
        assert_ne!(seed, g4);
        assert_ne!(
            survivors_digest(&s1, &present),
            survivors_digest(&s1, &ListCommitment { len: 5, ..present })
        );
        assert_ne!(
            nonce_commitment(&base, ClientId(1), &[0; 32]),
            nonce_commitment(&base, ClientId(2), &[0; 32])
        );
    }

    #[test]
    fn non_canonical_scalars_are_rejected() {
        assert!(scalar_from_bytes(&[0xff; 32]).is_err());
        assert!(scalar_from_bytes(&[1; 31]).is_err());
        assert_eq!(
            scalar_from_bytes(&Scalar::from(5u64).to_bytes()).unwrap(),
            Scalar::from(5u64)
        );
    }
}
