//! What a client carries from stage to stage once the round's membership is known: the
//! checked key list and graph (from the key list on), and the shares it holds (from the share
//! check on). The stage files hand it along; none of them defines state a later one reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::EdwardsPoint;
use zeroize::Zeroize;

use crate::ClientId;
use crate::crypto::SessionId;
use crate::graph::NeighborGraph;
use crate::messages::SignedKeys;

/// Everything the later stages need about the round's membership.
pub(super) struct Membership {
    pub(super) session: SessionId,
    pub(super) graph: NeighborGraph,
    pub(super) neighbors: Vec<ClientId>,
    /// The key list as received (every member's keys and credential).
    pub(super) list: Arc<[(ClientId, SignedKeys)]>,
    /// Members whose credential this client has checked, with the identity key it proves.
    pub(super) identities: HashMap<ClientId, crate::identity::IdentityPublicKey>,
    /// Each neighbour's mask-agreement key, checked under the one rule for points and ready
    /// for agreement (8·S, [`crate::crypto::masking_point`]).
    pub(super) mask_keys: HashMap<ClientId, EdwardsPoint>,
}

impl Membership {
    /// The keys of `id`, if it is a member.
    pub(super) fn entry(&self, id: ClientId) -> Option<&SignedKeys> {
        self.list
            .binary_search_by_key(&id, |(i, _)| *i)
            .ok()
            .map(|i| &self.list[i].1)
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
