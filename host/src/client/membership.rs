//! What a client carries from stage to stage once the round's membership is known: the
//! checked view of the round (session, its window of the ring, its neighbours and the keys it
//! checked), and the shares it holds (from the share check on). The stage files hand it along;
//! none of them defines state a later one reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::EdwardsPoint;
use zeroize::Zeroize;

use crate::ClientId;
use crate::crypto::{ListCommitment, SessionId};
use crate::graph::Window;
use crate::identity::IdentityPublicKey;

/// Everything the later stages need about the round's membership.
pub(super) struct Membership {
    pub(super) session: SessionId,
    /// The cohort's commitment (signers are proved against it).
    pub(super) cohort: ListCommitment,
    /// The present set's commitment (audited at the share check).
    pub(super) present: ListCommitment,
    /// This client's index in the cohort.
    pub(super) position: u32,
    /// Its part of the ring: itself, its neighbours, theirs.
    pub(super) window: Window,
    /// Who sits at each cohort index this client has seen (itself, every neighbour, signers
    /// as they are shown).
    pub(super) ids: BTreeMap<u32, ClientId>,
    /// The identity key each checked member proved, by cohort index, compressed (parsed again
    /// when a later stage checks a signature under it).
    pub(super) identities: HashMap<u32, [u8; 32]>,
    /// Each neighbour's mask-agreement key, checked under the one rule for points and ready
    /// for agreement (8·S, [`crate::crypto::masking_point`]), sorted by neighbour.
    pub(super) mask_keys: Vec<(ClientId, EdwardsPoint)>,
}

impl Membership {
    /// The mask-agreement key of neighbour `id`.
    pub(super) fn mask_key(&self, id: ClientId) -> Option<&EdwardsPoint> {
        let i = self.mask_keys.binary_search_by_key(&id, |k| k.0).ok()?;
        self.mask_keys.get(i).map(|k| &k.1)
    }

    /// The identity key member `index` proved, if this client checked one.
    pub(super) fn identity(&self, index: u32) -> Option<IdentityPublicKey> {
        // It parsed when it was checked; it parses the same way again.
        IdentityPublicKey::from_bytes(self.identities.get(&index)?).ok()
    }

    /// The cohort index of `id`, if this client has seen it.
    pub(super) fn index_of(&self, id: ClientId) -> Option<u32> {
        self.ids.iter().find_map(|(i, v)| (*v == id).then_some(*i))
    }
}

/// The two shares held for one neighbour. Zeroized on drop.
pub(super) struct Held {
    pub(super) mask: Scalar,
    pub(super) self_mask: Scalar,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.mask.zeroize();
        self.self_mask.zeroize();
    }
}

/// What the check of the bundles left.
pub(super) struct Checked {
    /// Good shares, by dealer.
    pub(super) held: BTreeMap<ClientId, Held>,
    /// Dealers whose bundles arrived (good or not).
    pub(super) dealt: BTreeSet<ClientId>,
    /// Dealers proved to have dealt bad shares.
    pub(super) cheaters: BTreeSet<ClientId>,
}
