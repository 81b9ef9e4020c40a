//! What binds a round together: the round digest (its parameters and the caller's context),
//! the commitments to the round's lists ([`ListCommitment`]: the cohort, the members present,
//! the survivors), the neighbour-graph seed, the session id and the survivor digest that the
//! consistency round signs.
//!
//! The graph seed is derived from the cohort commitment — which fixed every member's keys,
//! identity and nonce commitment before any nonce was revealed — and the nonces of the
//! committee the cohort root designates ([`crate::view`]), each of which opens its commitment:
//! from nothing the server can choose after seeing a nonce, bar which committee members it
//! leaves out.

use sha2::{Digest, Sha256};

use super::PublicKeys;
use crate::ClientId;
use crate::config::RoundConfig;

mod label {
    pub const ROUND: &[u8] = b"secagg/v2/round";
    pub const NONCE: &[u8] = b"secagg/v2/nonce-commitment";
    pub const SESSION: &[u8] = b"secagg/v3/session-id";
    pub const GRAPH: &[u8] = b"secagg/v3/neighbour-graph";
    pub const SURVIVORS: &[u8] = b"secagg/v3/survivors";
    pub const DP: &[u8] = b"secagg/v2/dp";
}

/// SHA-256 over the round id, every parameter that shapes the round (the DP setting
/// included), and the caller's round context (for example the hash of the global model the
/// clients trained on). Clients that disagree on any of these derive different digests, and
/// every signature and key derivation of the round is bound to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RoundDigest(pub [u8; 32]);

impl RoundDigest {
    /// The digest of `config`.
    pub fn of(config: &RoundConfig) -> Self {
        let mut h = Sha256::new();
        h.update(label::ROUND);
        h.update(config.round_id().to_le_bytes());
        let q = config.quantization();
        for v in [
            config.clients() as u64,
            config.neighbors() as u64,
            config.threshold() as u64,
            config.min_survivors() as u64,
            u64::from(config.modulus().bits()),
            u64::from(config.prg().rounds()),
            config.params() as u64,
            u64::from(q.levels),
            u64::from(q.clip.to_bits()),
            u64::from(q.max_weight),
        ] {
            h.update(v.to_le_bytes());
        }
        h.update(config.context());
        crate::selection::digest_into(config.selection(), &mut h);
        // A DP round adds its setting (a round without DP hashes as before).
        if let Some(dp) = config.dp() {
            h.update(label::DP);
            h.update(dp.clip.to_bits().to_le_bytes());
            for v in [dp.scale, dp.noise, dp.beta] {
                h.update(v.to_bits().to_le_bytes());
            }
            h.update(dp.honest.to_le_bytes());
        }
        RoundDigest(h.finalize().into())
    }
}

/// The commitment a client makes to its graph nonce before it sees the cohort.
pub fn nonce_commitment(round: &RoundDigest, id: ClientId, nonce: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label::NONCE);
    h.update(round.0);
    h.update(id.0.to_le_bytes());
    h.update(nonce);
    h.finalize().into()
}

/// A committed list as a party names it: its Merkle root ([`crate::merkle`]) and its length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListCommitment {
    /// The root (which binds the length too).
    pub root: [u8; 32],
    /// How many entries.
    pub len: u32,
}

impl ListCommitment {
    fn hash_into(&self, h: &mut Sha256) {
        h.update(self.root);
        h.update(self.len.to_le_bytes());
    }
}

/// The session: SHA-256 over the round digest, the cohort (which commits to every member's
/// keys and identity), the graph seed (which commits to the committee's nonces) and the set of
/// members present after the nonces were revealed. Both sides of every derivation bind to it,
/// so messages from another round, another cohort or another view never fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    /// The session of a round whose cohort is `cohort`, graph seed `seed` and present set
    /// `present`.
    pub fn derive(
        round: &RoundDigest,
        cohort: &ListCommitment,
        seed: &GraphSeed,
        present: &ListCommitment,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(label::SESSION);
        h.update(round.0);
        cohort.hash_into(&mut h);
        h.update(seed.0);
        present.hash_into(&mut h);
        SessionId(h.finalize().into())
    }
}

/// The seed of the neighbour-graph permutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GraphSeed(pub [u8; 32]);

impl GraphSeed {
    /// The seed from the round, the cohort and the nonces the committee revealed — (cohort
    /// index, nonce), increasing by index. Nothing else enters: every key was fixed in the
    /// cohort before any nonce was revealed, and every nonce here opens a commitment in it.
    pub fn derive(
        round: &RoundDigest,
        cohort: &ListCommitment,
        reveals: &[(u32, [u8; 32])],
    ) -> Self {
        let mut h = Sha256::new();
        h.update(label::GRAPH);
        h.update(round.0);
        cohort.hash_into(&mut h);
        h.update((reveals.len() as u64).to_le_bytes());
        for (index, nonce) in reveals {
            h.update(index.to_le_bytes());
            h.update(nonce);
        }
        GraphSeed(h.finalize().into())
    }
}

/// What a survivor signs in the consistency round: the session and the survivor set's
/// commitment (its root and its size).
pub fn survivors_digest(session: &SessionId, survivors: &ListCommitment) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label::SURVIVORS);
    h.update(session.0);
    survivors.hash_into(&mut h);
    h.finalize().into()
}

/// The domain of the advertisement signature (identity key over [`advertisement_message`]).
pub const ADVERTISE_DOMAIN: &[u8] = b"secagg/v3/advertise";
/// The domain of the survivor-list signature (identity key over [`survivors_digest`]).
pub const SURVIVORS_DOMAIN: &[u8] = b"secagg/v3/survivors";

/// The bytes an advertisement's signature covers: the round digest, the id, both round keys
/// and the nonce commitment. A client advertises when it joins, before any cohort exists, so
/// that its keys are fixed before anyone's nonce is revealed.
pub fn advertisement_message(
    round: &RoundDigest,
    id: ClientId,
    keys: &PublicKeys,
    commitment: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 * 4 + 4);
    m.extend_from_slice(&round.0);
    m.extend_from_slice(&id.0.to_le_bytes());
    m.extend_from_slice(&keys.encryption);
    m.extend_from_slice(&keys.masking);
    m.extend_from_slice(commitment);
    m
}
