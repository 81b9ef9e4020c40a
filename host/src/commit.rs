//! What the server commits to and opens: the cohort tree, the present and survivor sets on the
//! ring, and the per-client messages that open them.
//!
//! The honest [`crate::Server`] builds every commitment and every opening here; so does an
//! attacker in the laboratory (`sim::lab`, feature `testing`) that wants to show a client
//! another view, which is why these builders check nothing (the server checks what it is
//! sent before it commits to it; a client checks everything it is shown).
//!
//! The server keeps each tree whole — O(n) digests, shared by all clients — and each message it
//! builds for one client opens O(k + committee + audit) leaves, with a proof of O(log n)
//! digests per leaf.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::ClientId;
use crate::crypto::{ListCommitment, RoundDigest};
use crate::graph::{Ring, harary};
use crate::merkle::{MerkleError, Proof, SetOpening, SortedSet, Tree};
use crate::messages::{IdentityOpening, KeyList, OpenedEntry, Opening, ServerMessage, SignedKeys};
use crate::view::{RoundView, committee, keys_digest, signed_leaf};

/// The cohort: every member's advertisement, sorted by id, and its Merkle tree.
#[derive(Clone, Debug)]
pub struct Cohort {
    entries: Vec<(ClientId, SignedKeys)>,
    tree: Tree,
    /// Whether the ids strictly increase (every honest cohort), so that a member's index
    /// is a binary search away; an attacker's cohort out of order is searched in full.
    sorted: bool,
}

impl Cohort {
    /// The cohort of `entries` (sorted here by id; of two entries with one id, the first
    /// stays).
    pub fn new(
        entries: impl IntoIterator<Item = (ClientId, SignedKeys)>,
    ) -> Result<Self, MerkleError> {
        let mut entries: Vec<(ClientId, SignedKeys)> = entries.into_iter().collect();
        entries.sort_by_key(|(id, _)| *id);
        entries.dedup_by_key(|(id, _)| *id);
        Self::in_order(entries)
    }

    /// A cohort of `entries` in the order given, repeats and all (an attacker's: nothing is
    /// sorted or checked).
    pub fn in_order(entries: Vec<(ClientId, SignedKeys)>) -> Result<Self, MerkleError> {
        let leaves = entries
            .iter()
            .map(|(id, s)| (id.0, signed_leaf(*id, s)))
            .collect();
        let sorted = entries.windows(2).all(|w| w[0].0 < w[1].0);
        Ok(Self {
            tree: Tree::new(leaves)?,
            entries,
            sorted,
        })
    }

    /// The commitment: root and size.
    pub fn commitment(&self) -> ListCommitment {
        ListCommitment {
            root: self.tree.root(),
            len: self.entries.len() as u32,
        }
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The members' advertisements, by index.
    pub fn entries(&self) -> &[(ClientId, SignedKeys)] {
        &self.entries
    }

    /// The index of member `id` (its first seat, in an attacker's cohort out of order).
    pub fn index_of(&self, id: ClientId) -> Option<u32> {
        // O(log n) for a sorted cohort: the server and the simulator look members up n·k
        // times a round, and a scan per lookup made a round of 10^5 quadratic.
        let i = if self.sorted {
            self.entries.binary_search_by_key(&id, |(i, _)| *i).ok()?
        } else {
            self.entries.iter().position(|(i, _)| *i == id)?
        };
        Some(i as u32)
    }

    /// The member at `index`.
    pub fn id_at(&self, index: u32) -> Option<ClientId> {
        self.entries.get(index as usize).map(|(id, _)| *id)
    }

    /// The message that tells member `index` the cohort and proves its entry in it.
    pub fn welcome(&self, index: u32) -> Option<ServerMessage> {
        let proof = self.tree.prove(&[index as usize]).ok()?;
        Some(ServerMessage::Cohort {
            cohort: self.commitment(),
            position: index,
            proof,
        })
    }

    /// Opens the entries at `full` in full and those at `identity` (not also in `full`) by
    /// identity, with one proof for all. Indices outside the cohort are left out.
    pub fn open(
        &self,
        full: &BTreeSet<u32>,
        identity: &BTreeSet<u32>,
    ) -> (Vec<OpenedEntry>, Proof) {
        let all: BTreeSet<u32> = full
            .iter()
            .chain(identity)
            .copied()
            .filter(|i| (*i as usize) < self.entries.len())
            .collect();
        let opened: Vec<OpenedEntry> = all
            .iter()
            .map(|&index| {
                let (id, s) = &self.entries[index as usize];
                let opening = if full.contains(&index) {
                    Opening::Full(s.clone())
                } else {
                    Opening::Identity(IdentityOpening {
                        commitment: s.commitment,
                        credential: s.credential.clone(),
                        ticket: s.ticket,
                        keys_digest: keys_digest(&s.keys, &s.signature),
                    })
                };
                OpenedEntry {
                    index,
                    id: *id,
                    opening,
                }
            })
            .collect();
        let indices: Vec<usize> = all.iter().map(|i| *i as usize).collect();
        let proof = self.tree.prove(&indices).unwrap_or_default();
        (opened, proof)
    }
}

/// A set of members committed by ring position (who is present; who survived).
#[derive(Clone, Debug)]
pub struct RingSet {
    label: &'static [u8],
    set: SortedSet,
}

impl RingSet {
    /// The members at cohort `indices`, placed on `ring`, under `label`.
    pub fn new(
        label: &'static [u8],
        ring: &Ring,
        indices: impl IntoIterator<Item = u32>,
    ) -> Result<Self, MerkleError> {
        let positions = indices
            .into_iter()
            .filter_map(|i| ring.position(i))
            .map(|p| p as u32)
            .collect();
        Ok(Self {
            label,
            set: SortedSet::new(label, positions)?,
        })
    }

    /// A set of ring positions as given, sorted (an attacker's: nothing is checked).
    pub fn of_positions(label: &'static [u8], positions: Vec<u32>) -> Result<Self, MerkleError> {
        Ok(Self {
            label,
            set: SortedSet::new(label, positions)?,
        })
    }

    /// A list of ring positions committed in the order given, repeats and all (an
    /// attacker's).
    pub fn in_order(label: &'static [u8], positions: Vec<u32>) -> Result<Self, MerkleError> {
        Ok(Self {
            label,
            set: SortedSet::in_order(label, positions)?,
        })
    }

    /// The commitment: root and size.
    pub fn commitment(&self) -> ListCommitment {
        ListCommitment {
            root: self.set.root(),
            len: self.set.len() as u32,
        }
    }

    /// The label its leaves are hashed under.
    pub fn label(&self) -> &'static [u8] {
        self.label
    }

    /// Whether the member at ring position `position` is in it.
    pub fn contains_position(&self, position: usize) -> bool {
        u32::try_from(position).is_ok_and(|p| self.set.contains(p))
    }

    /// The leaves that settle, for member `index` and each of its neighbours on `ring`,
    /// whether it is in the set; and the audited leaves at indices `audit`.
    pub fn around(&self, ring: &Ring, index: u32, audit: &[u32]) -> SetOpening {
        let queries: Vec<u32> = ring
            .position(index)
            .map(|p| {
                std::iter::once(p)
                    .chain(harary(ring.len(), ring.degree(), p))
                    .map(|q| q as u32)
                    .collect()
            })
            .unwrap_or_default();
        self.set.open(&queries, audit).unwrap_or_default()
    }

    /// The audited leaves at indices `audit` alone.
    pub fn audited(&self, audit: &[u32]) -> SetOpening {
        self.set.open(&[], audit).unwrap_or_default()
    }
}

/// Everything the server fixes when the nonces are in: the committee's reveals, the view
/// (session and ring), and who is present. It builds each present member's key list.
#[derive(Clone, Debug)]
pub struct Roster {
    cohort: Arc<Cohort>,
    committee: Vec<u32>,
    reveals: Vec<(u32, [u8; 32])>,
    view: RoundView,
    present: RingSet,
    is_present: Vec<bool>,
}

impl Roster {
    /// The membership of `cohort` once the members at the keys of `nonces` revealed those
    /// nonces (the honest server has checked each against its commitment; an attacker need
    /// not have), for `neighbors` neighbours each. Every present committee member's nonce is
    /// revealed.
    pub fn new(
        round: &RoundDigest,
        cohort: Arc<Cohort>,
        nonces: &BTreeMap<u32, [u8; 32]>,
        neighbors: usize,
    ) -> Result<Self, MerkleError> {
        let commitment = cohort.commitment();
        let committee = committee(round, &commitment);
        let reveals: Vec<(u32, [u8; 32])> = committee
            .iter()
            .filter_map(|i| nonces.get(i).map(|n| (*i, *n)))
            .collect();
        Self::with_reveals(round, cohort, reveals, nonces.keys().copied(), neighbors)
    }

    /// The membership with the given committee `reveals` and `present` members (an
    /// attacker's choice: the honest server reveals every present committee member).
    pub fn with_reveals(
        round: &RoundDigest,
        cohort: Arc<Cohort>,
        reveals: Vec<(u32, [u8; 32])>,
        present: impl IntoIterator<Item = u32>,
        neighbors: usize,
    ) -> Result<Self, MerkleError> {
        let commitment = cohort.commitment();
        let committee = committee(round, &commitment);
        let seed = crate::crypto::GraphSeed::derive(round, &commitment, &reveals);
        let ring = Ring::new(&seed, cohort.len(), neighbors);
        let present: Vec<u32> = present.into_iter().collect();
        let mut is_present = vec![false; cohort.len()];
        for i in &present {
            if let Some(p) = is_present.get_mut(*i as usize) {
                *p = true;
            }
        }
        let present = RingSet::new(crate::view::label::PRESENT, &ring, present)?;
        let view = RoundView::derive(
            round,
            &commitment,
            &reveals,
            &present.commitment(),
            neighbors,
        );
        Ok(Self {
            cohort,
            committee,
            reveals,
            view,
            present,
            is_present,
        })
    }

    /// The cohort.
    pub fn cohort(&self) -> &Arc<Cohort> {
        &self.cohort
    }

    /// The session and the ring.
    pub fn view(&self) -> &RoundView {
        &self.view
    }

    /// The present set.
    pub fn present(&self) -> &RingSet {
        &self.present
    }

    /// Whether member `index` is present.
    pub fn is_present(&self, index: u32) -> bool {
        self.is_present
            .get(index as usize)
            .copied()
            .unwrap_or(false)
    }

    /// The committee's revealed nonces.
    pub fn reveals(&self) -> &[(u32, [u8; 32])] {
        &self.reveals
    }

    /// The key list of member `index`, who asked to audit the cohort's leaves at `audit`:
    /// every present neighbour in full, every absent one, the committee and the audited leaves
    /// by identity.
    pub fn key_list(&self, index: u32, audit: &[u32]) -> KeyList {
        let ring = &self.view.ring;
        let neighbors = ring.neighbors(index);
        let (present, absent): (BTreeSet<u32>, BTreeSet<u32>) =
            neighbors.iter().partition(|v| self.is_present(**v));
        let mut identity: BTreeSet<u32> = self.committee.iter().copied().collect();
        identity.extend(absent);
        identity.extend(audit.iter().copied());
        let (entries, proof) = self.cohort.open(&present, &identity);
        KeyList {
            reveals: self.reveals.clone(),
            present: self.present.commitment(),
            presence: self.present.around(ring, index, &[]),
            entries,
            proof,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::PublicKeys;
    use crate::messages::Credential;

    fn entry(id: u32) -> (ClientId, SignedKeys) {
        let mut tag = [0u8; 32];
        tag[..4].copy_from_slice(&id.to_le_bytes());
        let keys = SignedKeys {
            keys: PublicKeys {
                encryption: tag,
                masking: tag,
            },
            commitment: tag,
            credential: Credential::SelfAsserted(tag),
            signature: [0; 64],
            ticket: None,
        };
        (ClientId(id), keys)
    }

    /// The first seat of `id`, by a plain scan: the reference for `index_of`.
    fn first_seat(ids: &[u32], id: u32) -> Option<u32> {
        ids.iter().position(|i| *i == id).map(|i| i as u32)
    }

    #[test]
    fn index_of_finds_the_first_seat_in_sorted_and_forged_cohorts() {
        // An honest cohort (sorted, repeats dropped), given out of order with a repeat.
        let given = [40u32, 3, 17, 3, 99, 0, 58];
        let honest = Cohort::new(given.iter().map(|i| entry(*i))).unwrap();
        let ids: Vec<u32> = honest.entries().iter().map(|(id, _)| id.0).collect();
        assert_eq!(ids, [0, 3, 17, 40, 58, 99]);
        // An attacker's cohort in the order given, repeats and all.
        let forged = Cohort::in_order(given.iter().map(|i| entry(*i)).collect()).unwrap();
        for id in 0..=100u32 {
            assert_eq!(
                honest.index_of(ClientId(id)),
                first_seat(&ids, id),
                "id {id}"
            );
            assert_eq!(
                forged.index_of(ClientId(id)),
                first_seat(&given, id),
                "id {id}"
            );
        }
        assert_eq!(forged.index_of(ClientId(3)), Some(1));
    }
}
