//! The round's cryptography: key pairs, key agreement, key derivation, the share-bundle AEAD
//! and Shamir sharing.
//!
//! * X25519 (x25519-dalek) for both key agreements; a non-contributory result (a low-order
//!   public key) is an error, never a weak key.
//! * HKDF-SHA256 with a distinct label per use and the session id as salt.
//! * ChaCha20-Poly1305 for share bundles, with associated data binding session, sender and
//!   recipient.
//! * Shamir over the curve25519 scalar field (vsss-rs splits; reconstruction uses Lagrange
//!   coefficients computed here once per set of share holders).
//!
//! Secrets are zeroized on drop and have no `Debug`, `Clone` or serialization.

mod shamir;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use secagg_engine::Seed;

use crate::ClientId;
use crate::config::RoundConfig;
use crate::error::CryptoError;

pub use shamir::{Lagrange, ShamirShare, evaluation_point, split};

/// Domain-separation labels, one per derivation.
mod label {
    pub const SESSION: &[u8] = b"secagg/v1/session-id";
    pub const MASK_KEY: &[u8] = b"secagg/v1/x25519-mask-key";
    pub const SELF_MASK: &[u8] = b"secagg/v1/self-mask-seed";
    pub const SELF_COMMIT: &[u8] = b"secagg/v1/self-mask-commitment";
    pub const PAIRWISE: &[u8] = b"secagg/v1/pairwise-mask-seed";
    pub const SHARE_KEY: &[u8] = b"secagg/v1/share-bundle-key";
    pub const SHARE_AAD: &[u8] = b"secagg/v1/share-bundle";
    pub const GRAPH: &[u8] = b"secagg/v1/neighbour-graph";
}

/// A client's two public keys: `c` encrypts share bundles, `s` agrees mask seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PublicKeys {
    /// X25519 public key for share-bundle encryption (c_pk).
    pub encryption: [u8; 32],
    /// X25519 public key for pairwise mask agreement (s_pk).
    pub masking: [u8; 32],
}

/// SHA-256 over the round id, the round's parameters and every advertised key: both sides of
/// every derivation bind to it, so messages from another round or another key set never fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    /// The session id of a round whose advertised keys are `keys`, sorted by client id.
    pub fn derive(config: &RoundConfig, keys: &[(ClientId, PublicKeys)]) -> Self {
        let mut h = Sha256::new();
        h.update(label::SESSION);
        h.update(config.round_id().to_le_bytes());
        for v in [
            config.clients() as u64,
            config.neighbors() as u64,
            config.threshold() as u64,
            config.min_survivors() as u64,
            u64::from(config.modulus().bits()),
            u64::from(config.prg().rounds()),
            config.params() as u64,
        ] {
            h.update(v.to_le_bytes());
        }
        h.update((keys.len() as u64).to_le_bytes());
        for (id, k) in keys {
            h.update(id.0.to_le_bytes());
            h.update(k.encryption);
            h.update(k.masking);
        }
        SessionId(h.finalize().into())
    }

    /// 32 bytes derived from the session for seeding the neighbour-graph permutation.
    pub fn graph_seed(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(label::GRAPH);
        h.update(self.0);
        h.finalize().into()
    }
}

/// A fixed clamped scalar used only to test public keys for small order: a clamped scalar is
/// a multiple of 8, so the product is the identity exactly when the point has small order.
const ORDER_PROBE: [u8; 32] = [0x5a; 32];

/// Whether `pk` is one of the small-order points, which would make any agreement with it
/// predictable.
pub fn is_low_order(pk: &[u8; 32]) -> bool {
    !StaticSecret::from(ORDER_PROBE)
        .diffie_hellman(&PublicKey::from(*pk))
        .was_contributory()
}

/// The two secrets a client shares with its neighbours, drawn as curve25519 scalars so that
/// Shamir over the scalar field reproduces them exactly; the X25519 mask key and the
/// self-mask seed are derived from their bytes.
pub struct ClientSecrets {
    encryption: StaticSecret,
    mask_scalar: Scalar,
    self_scalar: Scalar,
}

impl Drop for ClientSecrets {
    fn drop(&mut self) {
        self.mask_scalar.zeroize();
        self.self_scalar.zeroize();
    }
}

impl ZeroizeOnDrop for ClientSecrets {}

/// Draws a uniform scalar from 64 random bytes.
fn random_scalar<R: CryptoRng + ?Sized>(rng: &mut R) -> Scalar {
    let mut wide = Zeroizing::new([0u8; 64]);
    rng.fill_bytes(&mut wide[..]);
    Scalar::from_bytes_mod_order_wide(&wide)
}

impl ClientSecrets {
    /// Fresh secrets for one round.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            encryption: StaticSecret::random_from_rng(rng),
            mask_scalar: random_scalar(rng),
            self_scalar: random_scalar(rng),
        }
    }

    /// The public keys to advertise.
    pub fn public_keys(&self) -> PublicKeys {
        PublicKeys {
            encryption: PublicKey::from(&self.encryption).to_bytes(),
            masking: PublicKey::from(&mask_secret_key(&self.mask_scalar)).to_bytes(),
        }
    }

    /// The scalar behind the mask key (Shamir-shared).
    pub fn mask_scalar(&self) -> &Scalar {
        &self.mask_scalar
    }

    /// The scalar behind the self-mask seed (Shamir-shared).
    pub fn self_scalar(&self) -> &Scalar {
        &self.self_scalar
    }

    /// The key that encrypts bundles between this client and `peer`.
    pub fn bundle_key(
        &self,
        session: &SessionId,
        me: ClientId,
        peer: ClientId,
        peer_keys: &PublicKeys,
    ) -> Result<BundleKey, CryptoError> {
        let shared = agree(&self.encryption, &peer_keys.encryption, peer)?;
        Ok(BundleKey(derive32(
            &shared[..],
            session,
            label::SHARE_KEY,
            pair_info(me, peer),
        )))
    }

    /// The bundle keys with every peer in `peers`, in order (batched agreement).
    pub fn bundle_keys(
        &self,
        session: &SessionId,
        me: ClientId,
        peers: &[(ClientId, &PublicKeys)],
    ) -> Result<Vec<BundleKey>, CryptoError> {
        let points: Vec<Option<EdwardsPoint>> = peers
            .iter()
            .map(|(_, k)| edwards_of(&k.encryption))
            .collect();
        let list: Vec<(ClientId, &[u8; 32], Option<&EdwardsPoint>)> = peers
            .iter()
            .zip(&points)
            .map(|((id, k), e)| (*id, &k.encryption, e.as_ref()))
            .collect();
        Ok(agree_many(&self.encryption, &list)?
            .iter()
            .zip(peers)
            .map(|(dh, (peer, _))| {
                BundleKey(derive32(
                    &dh[..],
                    session,
                    label::SHARE_KEY,
                    pair_info(me, *peer),
                ))
            })
            .collect())
    }

    /// The pairwise-mask seeds with every peer in `peers`, in order (batched agreement).
    pub fn pairwise_seeds(
        &self,
        session: &SessionId,
        me: ClientId,
        peers: &[(ClientId, &PublicKeys)],
    ) -> Result<Vec<Seed>, CryptoError> {
        let points: Vec<Option<EdwardsPoint>> =
            peers.iter().map(|(_, k)| edwards_of(&k.masking)).collect();
        let list: Vec<(ClientId, &PublicKeys, Option<&EdwardsPoint>)> = peers
            .iter()
            .zip(&points)
            .map(|((id, k), e)| (*id, *k, e.as_ref()))
            .collect();
        pairwise_seeds(&mask_secret_key(&self.mask_scalar), session, me, &list)
    }

    /// The seed of the pairwise mask between this client and `peer`.
    pub fn pairwise_seed(
        &self,
        session: &SessionId,
        me: ClientId,
        peer: ClientId,
        peer_keys: &PublicKeys,
    ) -> Result<Seed, CryptoError> {
        pairwise_seed(
            &mask_secret_key(&self.mask_scalar),
            session,
            me,
            peer,
            peer_keys,
        )
    }
}

/// The X25519 mask-agreement secret derived from its shared scalar (anyone who rebuilds the
/// scalar from t shares derives the same key).
pub fn mask_secret_key(scalar: &Scalar) -> StaticSecret {
    let bytes = Zeroizing::new(scalar.to_bytes());
    let mut okm = [0u8; 32];
    // The salt is fixed: the key must exist before the session id does (it is advertised).
    let hk = Hkdf::<Sha256>::new(Some(label::MASK_KEY), &bytes[..]);
    // 32 bytes is far below HKDF's limit of 255 x 32, so expand cannot fail.
    let _ = hk.expand(label::MASK_KEY, &mut okm);
    let key = StaticSecret::from(okm);
    okm.zeroize();
    key
}

/// The public mask key of a rebuilt scalar, to compare with what its owner advertised.
pub fn mask_public_key(scalar: &Scalar) -> [u8; 32] {
    PublicKey::from(&mask_secret_key(scalar)).to_bytes()
}

/// The self-mask seed derived from its shared scalar.
pub fn self_mask_seed(scalar: &Scalar, session: &SessionId) -> Seed {
    let bytes = Zeroizing::new(scalar.to_bytes());
    Seed::from_bytes(derive32(&bytes[..], session, label::SELF_MASK, Vec::new()))
}

/// A hiding commitment to a self-mask scalar, so the server can check what it rebuilds.
pub fn self_mask_commitment(scalar: &Scalar, session: &SessionId, owner: ClientId) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label::SELF_COMMIT);
    h.update(session.0);
    h.update(owner.0.to_le_bytes());
    h.update(Zeroizing::new(scalar.to_bytes()).as_ref());
    h.finalize().into()
}

/// The seed of the pairwise mask between `me` (holding `secret`) and `peer`. Symmetric: both
/// ends derive the same seed.
pub fn pairwise_seed(
    secret: &StaticSecret,
    session: &SessionId,
    me: ClientId,
    peer: ClientId,
    peer_keys: &PublicKeys,
) -> Result<Seed, CryptoError> {
    let shared = agree(secret, &peer_keys.masking, peer)?;
    Ok(Seed::from_bytes(derive32(
        &shared[..],
        session,
        label::PAIRWISE,
        pair_info(me, peer),
    )))
}

/// A peer's public key as an Edwards point, for [`pairwise_seeds`]; `None` for a u-coordinate
/// on the twist, which only the Montgomery ladder handles.
pub fn edwards_of(public: &[u8; 32]) -> Option<EdwardsPoint> {
    MontgomeryPoint(*public).to_edwards(0)
}

/// X25519 between one secret and many peers' public keys, byte for byte what the ladder gives:
/// computed as variable-base Edwards multiplications by the clamped secret (the sign lost in a
/// u-coordinate does not change the product's u-coordinate) and one batched inversion to
/// convert every product back — about 1.5× faster per peer than a ladder each. `edwards` is
/// the peer key as an Edwards point (from [`edwards_of`], so callers that meet the same peer
/// many times convert it once); keys on the twist (`None`) go through the ladder. A
/// non-contributory result (a small-order key) is an error naming the peer.
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
            Some(d) if *d != [0u8; 32] => out.push(d),
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

/// Pairwise seeds between one mask key and many peers (see [`agree_many`]), byte for byte
/// those of [`pairwise_seed`].
pub fn pairwise_seeds(
    secret: &StaticSecret,
    session: &SessionId,
    me: ClientId,
    peers: &[(ClientId, &PublicKeys, Option<&EdwardsPoint>)],
) -> Result<Vec<Seed>, CryptoError> {
    let list: Vec<(ClientId, &[u8; 32], Option<&EdwardsPoint>)> = peers
        .iter()
        .map(|(id, k, e)| (*id, &k.masking, *e))
        .collect();
    Ok(agree_many(secret, &list)?
        .iter()
        .zip(peers)
        .map(|(dh, (peer, _, _))| {
            Seed::from_bytes(derive32(
                &dh[..],
                session,
                label::PAIRWISE,
                pair_info(me, *peer),
            ))
        })
        .collect())
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

/// The symmetric key of one pair's share bundles. Zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct BundleKey([u8; 32]);

/// The plaintext of a share bundle: the sender's two shares for one recipient.
pub struct BundlePlaintext {
    /// Share of the sender's mask-key scalar.
    pub mask_share: Scalar,
    /// Share of the sender's self-mask scalar.
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

fn bundle_aad(session: &SessionId, from: ClientId, to: ClientId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(label::SHARE_AAD.len() + 40);
    aad.extend_from_slice(label::SHARE_AAD);
    aad.extend_from_slice(&session.0);
    aad.extend_from_slice(&from.0.to_le_bytes());
    aad.extend_from_slice(&to.0.to_le_bytes());
    aad
}

impl BundleKey {
    /// Seals `shares` from `from` to `to`.
    pub fn seal(
        &self,
        session: &SessionId,
        from: ClientId,
        to: ClientId,
        shares: &BundlePlaintext,
    ) -> Result<Vec<u8>, CryptoError> {
        let mut pt = Zeroizing::new([0u8; BUNDLE_PLAINTEXT_LEN]);
        pt[..4].copy_from_slice(&from.0.to_le_bytes());
        pt[4..8].copy_from_slice(&to.0.to_le_bytes());
        pt[8..40].copy_from_slice(&shares.mask_share.to_bytes());
        pt[40..72].copy_from_slice(&shares.self_share.to_bytes());
        let cipher = ChaCha20Poly1305::new(&Key::from(self.0));
        let aad = bundle_aad(session, from, to);
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

    /// Opens a bundle `from` sent to `to`, checking its tag and the ids inside.
    pub fn open(
        &self,
        session: &SessionId,
        from: ClientId,
        to: ClientId,
        sealed: &[u8],
    ) -> Result<BundlePlaintext, CryptoError> {
        if sealed.len() != BUNDLE_LEN {
            return Err(CryptoError::Decrypt { from });
        }
        let cipher = ChaCha20Poly1305::new(&Key::from(self.0));
        let aad = bundle_aad(session, from, to);
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
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    fn config() -> RoundConfig {
        RoundConfig::builder(5, 10).build().unwrap()
    }

    #[test]
    fn pairwise_seeds_agree_and_differ_per_pair() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = ClientSecrets::generate(&mut rng);
        let b = ClientSecrets::generate(&mut rng);
        let c = ClientSecrets::generate(&mut rng);
        let keys = [
            (ClientId(1), a.public_keys()),
            (ClientId(2), b.public_keys()),
            (ClientId(3), c.public_keys()),
        ];
        let session = SessionId::derive(&config(), &keys);
        let ab = a
            .pairwise_seed(&session, ClientId(1), ClientId(2), &keys[1].1)
            .unwrap();
        let ba = b
            .pairwise_seed(&session, ClientId(2), ClientId(1), &keys[0].1)
            .unwrap();
        let ac = a
            .pairwise_seed(&session, ClientId(1), ClientId(3), &keys[2].1)
            .unwrap();
        assert_eq!(ab.expose_secret(), ba.expose_secret());
        assert_ne!(ab.expose_secret(), ac.expose_secret());
        // A rebuilt mask scalar derives the same seed as its owner.
        let rebuilt = mask_secret_key(a.mask_scalar());
        let again =
            pairwise_seed(&rebuilt, &session, ClientId(1), ClientId(2), &keys[1].1).unwrap();
        assert_eq!(again.expose_secret(), ab.expose_secret());
        assert_eq!(mask_public_key(a.mask_scalar()), keys[0].1.masking);
    }

    #[test]
    fn batched_edwards_agreement_equals_the_ladder() {
        let seed = secagg_engine::testing::test_seed("crypto::batched_edwards_agreement");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let me = ClientSecrets::generate(&mut rng);
        let secret = mask_secret_key(me.mask_scalar());
        let session = SessionId([3; 32]);
        // Real keys, and raw random strings: about half of those lie on the twist, and some
        // have the top bit set (a non-canonical encoding the ladder masks off).
        let mut peers: Vec<(ClientId, PublicKeys)> = Vec::new();
        for i in 0..48u32 {
            let masking = if i % 2 == 0 {
                ClientSecrets::generate(&mut rng).public_keys().masking
            } else {
                let mut b = [0u8; 32];
                rng.fill_bytes(&mut b);
                b
            };
            peers.push((
                ClientId(i + 10),
                PublicKeys {
                    encryption: [9; 32],
                    masking,
                },
            ));
        }
        let points: Vec<Option<EdwardsPoint>> =
            peers.iter().map(|(_, k)| edwards_of(&k.masking)).collect();
        assert!(points.iter().any(Option::is_none), "no twist point drawn");
        assert!(points.iter().filter(|p| p.is_some()).count() > 24);
        let list: Vec<(ClientId, &PublicKeys, Option<&EdwardsPoint>)> = peers
            .iter()
            .zip(&points)
            .map(|((id, k), p)| (*id, k, p.as_ref()))
            .collect();
        let fast = pairwise_seeds(&secret, &session, ClientId(1), &list).unwrap();
        for ((id, k), f) in peers.iter().zip(&fast) {
            let slow = pairwise_seed(&secret, &session, ClientId(1), *id, k).unwrap();
            assert_eq!(slow.expose_secret(), f.expose_secret(), "peer {id}");
        }
        // A low-order key in the batch is refused, as the ladder refuses it.
        let bad = PublicKeys {
            encryption: [0; 32],
            masking: [0; 32],
        };
        let low = edwards_of(&bad.masking);
        assert!(matches!(
            pairwise_seeds(
                &secret,
                &session,
                ClientId(1),
                &[(ClientId(5), &bad, low.as_ref())]
            ),
            Err(CryptoError::NonContributory { peer: ClientId(5) })
        ));
    }

    #[test]
    fn bundles_round_trip_and_reject_tampering() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let a = ClientSecrets::generate(&mut rng);
        let b = ClientSecrets::generate(&mut rng);
        let (ka, kb) = (a.public_keys(), b.public_keys());
        let keys = [(ClientId(7), ka), (ClientId(9), kb)];
        let session = SessionId::derive(&config(), &keys);
        let key_ab = a
            .bundle_key(&session, ClientId(7), ClientId(9), &kb)
            .unwrap();
        let key_ba = b
            .bundle_key(&session, ClientId(9), ClientId(7), &ka)
            .unwrap();
        let pt = BundlePlaintext {
            mask_share: Scalar::from(11u64),
            self_share: Scalar::from(13u64),
        };
        let sealed = key_ab
            .seal(&session, ClientId(7), ClientId(9), &pt)
            .unwrap();
        assert_eq!(sealed.len(), BUNDLE_LEN);
        let opened = key_ba
            .open(&session, ClientId(7), ClientId(9), &sealed)
            .unwrap();
        assert_eq!(opened.mask_share, pt.mask_share);
        assert_eq!(opened.self_share, pt.self_share);
        // Wrong direction, wrong session, a flipped bit, a short bundle: all rejected.
        assert!(
            key_ba
                .open(&session, ClientId(9), ClientId(7), &sealed)
                .is_err()
        );
        let other = SessionId([1; 32]);
        assert!(
            key_ba
                .open(&other, ClientId(7), ClientId(9), &sealed)
                .is_err()
        );
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(
            key_ba
                .open(&session, ClientId(7), ClientId(9), &bad)
                .is_err()
        );
        assert!(
            key_ba
                .open(&session, ClientId(7), ClientId(9), &sealed[..40])
                .is_err()
        );
    }

    #[test]
    fn low_order_keys_are_detected() {
        // The identity and the order-2 point (u = 0 and u = 1) are small order.
        assert!(is_low_order(&[0u8; 32]));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(is_low_order(&one));
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let a = ClientSecrets::generate(&mut rng);
        assert!(!is_low_order(&a.public_keys().masking));
        // Agreement with a small-order key is refused.
        let bad = PublicKeys {
            encryption: [0; 32],
            masking: [0; 32],
        };
        let session = SessionId([0; 32]);
        assert!(matches!(
            a.pairwise_seed(&session, ClientId(1), ClientId(2), &bad),
            Err(CryptoError::NonContributory { peer: ClientId(2) })
        ));
    }

    #[test]
    fn session_id_binds_keys_and_parameters() {
        let k = PublicKeys {
            encryption: [1; 32],
            masking: [2; 32],
        };
        let base = SessionId::derive(&config(), &[(ClientId(1), k)]);
        let other_id = SessionId::derive(&config(), &[(ClientId(2), k)]);
        let other_cfg = SessionId::derive(
            &RoundConfig::builder(5, 11).build().unwrap(),
            &[(ClientId(1), k)],
        );
        assert_ne!(base, other_id);
        assert_ne!(base, other_cfg);
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
