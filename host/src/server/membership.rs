//! What the server carries from stage to stage: the session fixed by the key list (keys,
//! identities, graph), each dealer's public points (from share keys on), and who is in the
//! round after the share check. The stage files hand it along; none of them defines state a
//! later one reads.

use std::collections::{BTreeSet, HashMap};

use curve25519_dalek::edwards::EdwardsPoint;

use crate::ClientId;
use crate::crypto::{PublicKeys, SessionId};
use crate::graph::NeighborGraph;
use crate::identity::IdentityPublicKey;

/// What every later stage needs from the first two.
pub(super) struct Session {
    pub(super) id: SessionId,
    pub(super) keys: HashMap<ClientId, PublicKeys>,
    pub(super) identities: HashMap<ClientId, IdentityPublicKey>,
    pub(super) graph: NeighborGraph,
}

/// A dealer's public points: σ·B and β·B decompressed (every rebuilt secret is checked
/// against them), and each holder's share points compressed (a revealed share is checked
/// against its point only when a rebuild fails, or a report names it).
pub(super) struct Dealer {
    pub(super) mask_key: EdwardsPoint,
    pub(super) self_key: EdwardsPoint,
    pub(super) self_key_bytes: [u8; 32],
    /// (σ share·B, β share·B) by holder; the dealer's own entry has no σ point.
    pub(super) points: HashMap<ClientId, ([u8; 32], [u8; 32])>,
}

impl Dealer {
    /// The published point of `holder`'s share of σ (`mask`) or β (checked at this stage).
    pub(super) fn point(&self, holder: ClientId, mask: bool) -> Option<&[u8; 32]> {
        let (m, s) = self.points.get(&holder)?;
        Some(if mask { m } else { s })
    }

    /// What the bundle to `holder` is bound to.
    pub(super) fn binding(&self, holder: ClientId) -> Option<[u8; 32]> {
        let (m, s) = self.points.get(&holder)?;
        Some(crate::crypto::share_points_digest(
            m,
            s,
            &self.self_key_bytes,
        ))
    }
}

/// Who is in the round after the share check.
pub(super) struct Membership {
    pub(super) session: Session,
    /// Every dealer's committed secrets and share points (certified or not).
    pub(super) dealers: HashMap<ClientId, Dealer>,
    /// Dealers whose pairwise masks exist: U2 minus those excluded at the share check.
    pub(super) certified: BTreeSet<ClientId>,
    /// For each holder, the certified neighbours whose checked shares it holds.
    pub(super) holds: HashMap<ClientId, BTreeSet<ClientId>>,
}
