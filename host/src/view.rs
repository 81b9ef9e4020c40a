//! What every party derives alike from the round's committed lists: the leaf of a cohort entry,
//! the committee, the graph seed, the ring and the session id.
//!
//! No party holds the round's lists whole but the server. The server commits to each with a
//! Merkle root ([`crate::merkle`]) and shows each client only what concerns it, with proof:
//!
//! * the **cohort**: every member's advertisement (keys, nonce commitment, credential,
//!   signature, ticket), sorted by id, one leaf each ([`entry_leaf`]);
//! * the **present** set: the members that revealed their nonce, by ring position;
//! * the **survivor** set: the members whose masked input arrived, by ring position.
//!
//! The graph is a Harary graph over a ring of the cohort's indices ([`crate::graph`]). Its seed
//! is the round digest, the cohort's commitment, and the nonces of the *committee*: [`COMMITTEE`]
//! cohort indices drawn from the cohort's root ([`committee`]). Every client checks every
//! revealed committee nonce against its commitment, and requires at least a quorum of them
//! ([`crate::plan::committee_quorum`]), so that, except with probability 2^-(σ + 1 +
//! [`GRIND_BITS`]), an honest member's nonce — unknown to the server when it fixed the cohort —
//! is in the seed. Everything the server could grind on (keys, signatures, tickets) was fixed in
//! the cohort before any nonce was revealed.
//!
//! The client (when the key list arrives), the server (when it fixes who is present), the
//! attack laboratory and the tests all derive the round's view through [`RoundView::derive`].

use std::collections::BTreeSet;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest as _, Sha256};

use crate::ClientId;
use crate::crypto::{GraphSeed, ListCommitment, PublicKeys, RoundDigest, SessionId};
use crate::error::PeerMisbehaved;
use crate::graph::{Ring, uniform_below};
use crate::merkle::{self, Digest};
use crate::messages::{Credential, OpenedEntry, Opening, SignedKeys};

/// How many cohort members the committee has (all of them, in a smaller cohort).
pub const COMMITTEE: usize = 64;

/// The grinding budget the committee quorum is sized for: a server may try 2^40 cohorts
/// before it fixes one, and still fills a quorum of the committee with its colluders only with
/// probability 2^-(σ + 1) over all its tries.
pub const GRIND_BITS: u32 = 40;

/// The most leaves a client may ask to audit in one list.
pub const MAX_AUDIT: usize = 64;

/// The labels of the committed lists' leaves.
pub mod label {
    /// A cohort entry.
    pub const COHORT: &[u8] = b"secagg/v3/cohort-entry";
    /// A present member's ring position.
    pub const PRESENT: &[u8] = b"secagg/v3/present";
    /// A survivor's ring position.
    pub const SURVIVORS: &[u8] = b"secagg/v3/survivors";
    pub(super) const IDENTITY: &[u8] = b"secagg/v3/entry-identity";
    pub(super) const KEYS: &[u8] = b"secagg/v3/entry-keys";
    pub(super) const BODY: &[u8] = b"secagg/v3/entry-body";
    pub(super) const COMMITTEE: &[u8] = b"secagg/v3/committee";
}

/// The digest of who a member is: its credential and its selection ticket.
pub fn identity_digest(
    credential: &Credential,
    ticket: Option<&crate::selection::Ticket>,
) -> Digest {
    let mut h = Sha256::new();
    h.update(label::IDENTITY);
    match credential {
        Credential::SelfAsserted(k) => {
            h.update([0]);
            h.update(k);
        }
        Credential::Certificate(c) => {
            h.update([1]);
            h.update(c);
        }
    }
    match ticket {
        None => h.update([0]),
        Some(t) => {
            h.update([1]);
            h.update(t);
        }
    }
    h.finalize().into()
}

/// The digest of a member's round keys and its signature over them.
pub fn keys_digest(keys: &PublicKeys, signature: &[u8; 64]) -> Digest {
    let mut h = Sha256::new();
    h.update(label::KEYS);
    h.update(keys.encryption);
    h.update(keys.masking);
    h.update(signature);
    h.finalize().into()
}

/// The digest of an entry's body: its nonce commitment, and the digests of who it is and of
/// its keys.
pub fn body_digest(commitment: &[u8; 32], identity: &Digest, keys: &Digest) -> Digest {
    let mut h = Sha256::new();
    h.update(label::BODY);
    h.update(commitment);
    h.update(identity);
    h.update(keys);
    h.finalize().into()
}

/// The leaf of a cohort entry: its id and the digest of its body — so that a leaf can be
/// opened in full, or as far as who it is (without its keys). The cohort's tree is keyed by
/// id ([`crate::merkle`]), so a second seat for one id breaks a split on one of the two seats'
/// paths.
pub fn entry_leaf(id: ClientId, body: &Digest) -> Digest {
    merkle::leaf_hash(label::COHORT, &[&id.0.to_le_bytes(), body])
}

/// The body digest of an advertisement.
pub fn signed_body(s: &SignedKeys) -> Digest {
    body_digest(
        &s.commitment,
        &identity_digest(&s.credential, s.ticket.as_ref()),
        &keys_digest(&s.keys, &s.signature),
    )
}

/// The cohort leaf of `id`'s advertisement.
pub fn signed_leaf(id: ClientId, s: &SignedKeys) -> Digest {
    entry_leaf(id, &signed_body(s))
}

/// The cohort leaf an opened entry stands for.
pub fn opened_leaf(e: &OpenedEntry) -> Digest {
    match &e.opening {
        Opening::Full(s) => signed_leaf(e.id, s),
        Opening::Identity(i) => entry_leaf(
            e.id,
            &body_digest(
                &i.commitment,
                &identity_digest(&i.credential, i.ticket.as_ref()),
                &i.keys_digest,
            ),
        ),
    }
}

/// Checks opened cohort entries against the cohort's commitment: the proof verifies, and every
/// entry's id keeps to the splits above it (the cohort's tree is keyed by id, so two seats of
/// one id, or seats out of order, cannot both be opened — and one of them not even alone).
pub fn check_entries(
    cohort: &ListCommitment,
    entries: &[OpenedEntry],
    proof: &merkle::Proof,
) -> Result<(), PeerMisbehaved> {
    let leaves: Vec<(u64, u32, Digest)> = entries
        .iter()
        .map(|e| (u64::from(e.index), e.id.0, opened_leaf(e)))
        .collect();
    merkle::verify(&cohort.root, u64::from(cohort.len), &leaves, proof).map_err(|why| {
        PeerMisbehaved::BadProof {
            what: "cohort entries",
            why: why.into(),
        }
    })?;
    if entries.windows(2).any(|w| w[0].id >= w[1].id) {
        return Err(PeerMisbehaved::CohortNotSorted);
    }
    Ok(())
}

/// The committee of a cohort: min(n, [`COMMITTEE`]) distinct cohort indices drawn from the
/// round digest and the cohort's commitment, increasing.
pub fn committee(round: &RoundDigest, cohort: &ListCommitment) -> Vec<u32> {
    let n = u64::from(cohort.len);
    if n as usize <= COMMITTEE {
        return (0..cohort.len).collect();
    }
    let mut h = Sha256::new();
    h.update(label::COMMITTEE);
    h.update(round.0);
    h.update(cohort.root);
    h.update(cohort.len.to_le_bytes());
    let mut rng = ChaCha20Rng::from_seed(h.finalize().into());
    let mut picked = BTreeSet::new();
    while picked.len() < COMMITTEE {
        picked.insert(uniform_below(&mut rng, n) as u32);
    }
    picked.into_iter().collect()
}

/// The session and the graph of one view of the round.
#[derive(Clone, Debug)]
pub struct RoundView {
    /// The session id every key and signature of the rest of the round is bound to.
    pub session: SessionId,
    /// The seed of the ring.
    pub seed: GraphSeed,
    /// The ring of the cohort's members.
    pub ring: Ring,
}

impl RoundView {
    /// The view of the round `round` whose cohort is `cohort`, whose committee revealed
    /// `reveals` — (cohort index, nonce), increasing — and whose present set is `present`, for
    /// `neighbors` neighbours per member (capped at the cohort less one by the graph).
    pub fn derive(
        round: &RoundDigest,
        cohort: &ListCommitment,
        reveals: &[(u32, [u8; 32])],
        present: &ListCommitment,
        neighbors: usize,
    ) -> Self {
        let seed = GraphSeed::derive(round, cohort, reveals);
        let ring = Ring::new(&seed, cohort.len as usize, neighbors);
        let session = SessionId::derive(round, cohort, &seed, present);
        Self {
            session,
            seed,
            ring,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committee_is_all_of_a_small_cohort_and_a_spread_of_a_large_one() {
        let round = RoundDigest([1; 32]);
        let small = ListCommitment {
            root: [2; 32],
            len: 40,
        };
        assert_eq!(committee(&round, &small), (0..40).collect::<Vec<u32>>());
        let large = ListCommitment {
            root: [2; 32],
            len: 10_000,
        };
        let c = committee(&round, &large);
        assert_eq!(c.len(), COMMITTEE);
        assert!(c.windows(2).all(|w| w[0] < w[1]) && c[COMMITTEE - 1] < 10_000);
        // Another root, another committee; the same root, the same one.
        let other = ListCommitment {
            root: [3; 32],
            ..large
        };
        assert_ne!(c, committee(&round, &other));
        assert_eq!(c, committee(&round, &large));
    }

    #[test]
    fn the_seed_moves_with_every_revealed_nonce_and_the_session_with_presence() {
        let round = RoundDigest([1; 32]);
        let cohort = ListCommitment {
            root: [2; 32],
            len: 30,
        };
        let present = ListCommitment {
            root: [4; 32],
            len: 29,
        };
        let a = RoundView::derive(&round, &cohort, &[(0, [5; 32]), (3, [6; 32])], &present, 4);
        let b = RoundView::derive(&round, &cohort, &[(0, [5; 32]), (3, [7; 32])], &present, 4);
        let c = RoundView::derive(&round, &cohort, &[(0, [5; 32])], &present, 4);
        assert_ne!(a.seed, b.seed);
        assert_ne!(a.seed, c.seed);
        let other_present = ListCommitment { len: 28, ..present };
        let d = RoundView::derive(
            &round,
            &cohort,
            &[(0, [5; 32]), (3, [6; 32])],
            &other_present,
            4,
        );
        assert_eq!(a.seed, d.seed);
        assert_ne!(a.session, d.session);
    }
}
