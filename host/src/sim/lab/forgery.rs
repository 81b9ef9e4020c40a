//! The attacker's own copy of the round ([`Lab::replica`]) and the lists it forges on it:
//! cohorts of the advertisements it chooses, their key lists, survivor sets and unmask
//! requests, all built with the honest server's own builders.

use std::collections::{BTreeMap, BTreeSet};

use super::Lab;
use crate::ClientId;
use crate::crypto::{ListCommitment, RoundDigest};
use crate::messages::{ServerMessage, SignedKeys};

impl Lab {
    /// The round as the honest server fixed it, rebuilt from what the clients sent (the
    /// advertisements of the members it was shown a cohort by, and their nonces): the
    /// attacker's own copy, to forge survivor sets and unmask requests on. Call it once the
    /// key lists are out.
    pub fn replica(&self) -> Replica {
        let in_cohort = |id: &ClientId| {
            self.received(*id)
                .iter()
                .any(|e| matches!(e.message, ServerMessage::Cohort { .. }))
        };
        let forgery = Forgery::new(
            &self.cfg.round,
            self.advertisements()
                .into_iter()
                .filter(|(id, _)| in_cohort(id)),
        );
        let reveals: BTreeMap<ClientId, Reveal> = self
            .reveals()
            .into_iter()
            .filter(|(id, _)| in_cohort(id))
            .collect();
        let roster = forgery.roster(&reveals);
        Replica { forgery, roster }
    }
}

/// The attacker's copy of the round (see [`Lab::replica`]).
pub struct Replica {
    forgery: Forgery,
    roster: crate::commit::Roster,
}

impl Replica {
    /// The cohort and its key lists.
    pub fn forgery(&self) -> &Forgery {
        &self.forgery
    }

    /// Who is present, the reveals, the session and the ring.
    pub fn roster(&self) -> &crate::commit::Roster {
        &self.roster
    }

    /// A survivor set of `members`, committed by ring position as the server does.
    pub fn survivors(&self, members: &[ClientId]) -> Survivors<'_> {
        let cohort = self.forgery.cohort();
        let indices = members.iter().filter_map(|id| cohort.index_of(*id));
        let set = crate::commit::RingSet::new(
            crate::view::label::SURVIVORS,
            &self.roster.view().ring,
            indices,
        )
        .unwrap_or_else(|_| unreachable!("a lab's survivor set fits a tree"));
        Survivors { replica: self, set }
    }

    /// A survivor list of ring positions committed in the order given, repeats and all.
    pub fn survivors_in_order(&self, positions: Vec<u32>) -> Survivors<'_> {
        let set = crate::commit::RingSet::in_order(crate::view::label::SURVIVORS, positions)
            .unwrap_or_else(|_| unreachable!("a lab's survivor list fits a tree"));
        Survivors { replica: self, set }
    }

    /// A survivor set of ring positions as given (out of range ones too).
    pub fn survivors_at(&self, positions: Vec<u32>) -> Survivors<'_> {
        let set = crate::commit::RingSet::of_positions(crate::view::label::SURVIVORS, positions)
            .unwrap_or_else(|_| unreachable!("a lab's survivor set fits a tree"));
        Survivors { replica: self, set }
    }
}

/// A survivor set the attacker committed to, and the messages that open it.
pub struct Survivors<'a> {
    replica: &'a Replica,
    set: crate::commit::RingSet,
}

impl Survivors<'_> {
    /// Its commitment.
    pub fn commitment(&self) -> ListCommitment {
        self.set.commitment()
    }

    /// Whether leaf `index` can be opened alone (it keeps to the splits above it).
    pub fn opens(&self, index: u32) -> bool {
        let c = self.set.commitment();
        self.set
            .audited(&[index])
            .check(self.set.label(), &c.root, c.len)
            .is_ok()
    }

    /// The survivor-list message for `to`: the set opened around it.
    pub fn list_for(&self, to: ClientId) -> ServerMessage {
        let ring = &self.replica.roster.view().ring;
        let index = self
            .replica
            .forgery
            .cohort()
            .index_of(to)
            .unwrap_or(u32::MAX);
        ServerMessage::SurvivorList {
            survivors: self.set.commitment(),
            opening: self.set.around(ring, index, &[]),
        }
    }

    /// The unmask request for `to`: those of `signatures` (by signer) that are from holders of
    /// a secret `to` holds a share of (within two hops of it), the signers it does not know
    /// opened by identity, the leaves `audit` of the set opened.
    pub fn unmask_for(
        &self,
        to: ClientId,
        signatures: &[(ClientId, [u8; 64])],
        audit: &[u32],
    ) -> ServerMessage {
        let cohort = self.replica.forgery.cohort();
        let ring = &self.replica.roster.view().ring;
        let me = cohort.index_of(to).unwrap_or(u32::MAX);
        let near: BTreeSet<u32> = std::iter::once(me)
            .chain(ring.neighbors(me))
            .flat_map(|v| std::iter::once(v).chain(ring.neighbors(v)))
            .collect();
        let mut by_index: Vec<(u32, [u8; 64])> = signatures
            .iter()
            .filter_map(|(id, s)| Some((cohort.index_of(*id)?, *s)))
            .filter(|(i, _)| near.contains(i))
            .collect();
        by_index.sort_by_key(|(i, _)| *i);
        let known: BTreeSet<u32> = std::iter::once(me).chain(ring.neighbors(me)).collect();
        let strangers: BTreeSet<u32> = by_index
            .iter()
            .map(|(i, _)| *i)
            .filter(|i| !known.contains(i))
            .collect();
        let (identities, proof) = cohort.open(&BTreeSet::new(), &strangers);
        ServerMessage::UnmaskRequest(crate::messages::UnmaskRequest {
            survivors: self.set.commitment(),
            audit: self.set.audited(audit),
            signatures: by_index,
            identities,
            proof,
        })
    }
}

/// A client's revealed nonce and the cohort leaves it audits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reveal {
    /// The nonce.
    pub nonce: [u8; 32],
    /// The leaves it audits.
    pub audit: Vec<u32>,
}

/// A view of the round the attacker builds itself: a cohort of the advertisements it chooses,
/// and the key lists that open it. Built with the honest server's own builders
/// ([`crate::commit`]), so everything in it verifies — unless the attacker put in something a
/// client refuses.
pub struct Forgery {
    round: RoundDigest,
    neighbors: usize,
    cohort: std::sync::Arc<crate::commit::Cohort>,
}

impl Forgery {
    /// The cohort of `advertisements` for the round `config`.
    pub fn new(
        config: &crate::RoundConfig,
        advertisements: impl IntoIterator<Item = (ClientId, SignedKeys)>,
    ) -> Self {
        let cohort = crate::commit::Cohort::new(advertisements)
            .unwrap_or_else(|_| unreachable!("a lab's cohort fits a tree"));
        Self {
            round: RoundDigest::of(config),
            neighbors: config.neighbors(),
            cohort: std::sync::Arc::new(cohort),
        }
    }

    /// The cohort.
    pub fn cohort(&self) -> &crate::commit::Cohort {
        &self.cohort
    }

    /// The cohort message for `to`.
    pub fn welcome(&self, to: ClientId) -> Option<ServerMessage> {
        self.cohort.welcome(self.cohort.index_of(to)?)
    }

    /// Who is present and the committee's reveals, when the members of this cohort revealed
    /// `reveals` (every present committee member's nonce revealed, as an honest server does).
    pub fn roster(&self, reveals: &BTreeMap<ClientId, Reveal>) -> crate::commit::Roster {
        let nonces: BTreeMap<u32, [u8; 32]> = reveals
            .iter()
            .filter_map(|(id, r)| Some((self.cohort.index_of(*id)?, r.nonce)))
            .collect();
        crate::commit::Roster::new(&self.round, self.cohort.clone(), &nonces, self.neighbors)
            .unwrap_or_else(|_| unreachable!("a lab's present set fits a tree"))
    }

    /// The key list for `to` under `roster`, answering the audit in its reveal.
    pub fn key_list(
        &self,
        roster: &crate::commit::Roster,
        reveals: &BTreeMap<ClientId, Reveal>,
        to: ClientId,
    ) -> Option<ServerMessage> {
        let index = self.cohort.index_of(to)?;
        let audit = reveals.get(&to).map(|r| r.audit.as_slice()).unwrap_or(&[]);
        Some(ServerMessage::KeyList(roster.key_list(index, audit)))
    }
}
