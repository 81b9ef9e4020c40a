//! What the server carries from stage to stage: the session fixed by the key list (the
//! cohort, the ring, who is present, their keys and identities), each dealer's public points
//! (from share keys on), and who is in the round after the share check. The stage files hand
//! it along; none of them defines state a later one reads.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use curve25519_dalek::edwards::EdwardsPoint;

use crate::ClientId;
use crate::commit::Roster;
use crate::crypto::{PublicKeys, SessionId};
use crate::graph::Ring;
use crate::identity::IdentityPublicKey;

/// What every later stage needs from the first two.
pub(super) struct Session {
    pub(super) id: SessionId,
    /// The cohort, the committee's reveals, the ring and the present set.
    pub(super) roster: Arc<Roster>,
    /// The present members' round keys.
    pub(super) keys: HashMap<ClientId, PublicKeys>,
    /// The present members' identity keys.
    pub(super) identities: HashMap<ClientId, IdentityPublicKey>,
}

impl Session {
    /// The ring.
    pub(super) fn ring(&self) -> &Ring {
        &self.roster.view().ring
    }

    /// The cohort index of `id`.
    pub(super) fn index_of(&self, id: ClientId) -> Option<u32> {
        self.roster.cohort().index_of(id)
    }

    /// The member at cohort index `index`.
    pub(super) fn id_at(&self, index: u32) -> Option<ClientId> {
        self.roster.cohort().id_at(index)
    }

    /// The present neighbours of `id`, sorted by id.
    pub(super) fn neighbors(&self, id: ClientId) -> Vec<ClientId> {
        let Some(index) = self.index_of(id) else {
            return Vec::new();
        };
        let mut out: Vec<ClientId> = self
            .ring()
            .neighbors(index)
            .into_iter()
            .filter(|v| self.roster.is_present(*v))
            .filter_map(|v| self.id_at(v))
            .collect();
        out.sort_unstable();
        out
    }
}

/// A dealer's public points: σ·B and β·B decompressed (every rebuilt secret is checked
/// against them), and each holder's share points compressed (a revealed share is checked
/// against its point only when a rebuild fails, or a report names it).
pub(super) struct Dealer {
    pub(super) mask_key: EdwardsPoint,
    pub(super) self_key: EdwardsPoint,
    pub(super) self_key_bytes: [u8; 32],
    /// (holder, σ share·B, β share·B), sorted by holder; the dealer's own entry has no σ
    /// point. A sorted list, not a map: the server keeps one per dealer for the whole round.
    pub(super) points: Vec<(ClientId, [u8; 32], [u8; 32])>,
}

impl Dealer {
    /// Both share points of `holder`.
    fn points_of(&self, holder: ClientId) -> Option<(&[u8; 32], &[u8; 32])> {
        let i = self.points.binary_search_by_key(&holder, |p| p.0).ok()?;
        self.points.get(i).map(|(_, m, s)| (m, s))
    }

    /// The published point of `holder`'s share of σ (`mask`) or β (checked at this stage).
    pub(super) fn point(&self, holder: ClientId, mask: bool) -> Option<&[u8; 32]> {
        let (m, s) = self.points_of(holder)?;
        Some(if mask { m } else { s })
    }

    /// What the bundle to `holder` is bound to.
    pub(super) fn binding(&self, holder: ClientId) -> Option<[u8; 32]> {
        let (m, s) = self.points_of(holder)?;
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
