//! [`ClientSecrets`]: one client's secrets for one round. Public only with the `testing`
//! feature (tests that play a malicious client make their own); σ and β themselves never
//! leave the crate.

use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::EdwardsPoint;
use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{
    BundleKey, PublicKeys, SessionId, agree_many, derive32, edwards_of, label, mask_public_key,
    pair_info, random_scalar,
};
use crate::ClientId;
use crate::error::CryptoError;

/// The two secrets a client shares with its neighbours, drawn as curve25519 scalars so that
/// Shamir over the scalar field reproduces them exactly: σ (the mask-agreement key) and β
/// (whose bytes derive the self-mask seed). Plus the X25519 key that opens share bundles.
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
            masking: mask_public_key(&self.mask_scalar),
        }
    }

    /// σ, the scalar of the mask-agreement key (Shamir-shared).
    pub(crate) fn mask_scalar(&self) -> &Scalar {
        &self.mask_scalar
    }

    /// β, the scalar behind the self-mask seed (Shamir-shared).
    pub(crate) fn self_scalar(&self) -> &Scalar {
        &self.self_scalar
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
}

/// The one-peer forms, for the attack laboratory and tests (the client uses the batched
/// [`ClientSecrets::bundle_keys`] and derives its seeds from prepared points).
#[cfg(any(test, feature = "testing"))]
impl ClientSecrets {
    /// The key that encrypts bundles between this client and `peer` (the client itself uses
    /// the batched [`bundle_keys`](Self::bundle_keys)).
    pub fn bundle_key(
        &self,
        session: &SessionId,
        me: ClientId,
        peer: ClientId,
        peer_keys: &PublicKeys,
    ) -> Result<BundleKey, CryptoError> {
        let shared = super::agree(&self.encryption, &peer_keys.encryption, peer)?;
        Ok(BundleKey(derive32(
            &shared[..],
            session,
            label::SHARE_KEY,
            pair_info(me, peer),
        )))
    }

    /// The pairwise-mask seeds with every peer in `peers`, in order (the client itself
    /// derives them from the peers' prepared points, [`super::pairwise_seeds`]).
    pub fn pairwise_seeds(
        &self,
        session: &SessionId,
        me: ClientId,
        peers: &[(ClientId, &PublicKeys)],
    ) -> Result<Vec<secagg_engine::Seed>, CryptoError> {
        let points = peers
            .iter()
            .map(|(id, k)| {
                super::masking_point(&k.masking)
                    .map_err(|_| CryptoError::NonContributory { peer: *id })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let list: Vec<(ClientId, &EdwardsPoint)> = peers
            .iter()
            .zip(&points)
            .map(|((id, _), p)| (*id, p))
            .collect();
        super::pairwise_seeds(&self.mask_scalar, session, me, &list)
    }
}
