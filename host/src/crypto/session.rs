//! What binds a round together: the round digest (its parameters and the caller's context),
//! the cohort commitment, the session id over every advertised key, the neighbour-graph seed
//! and the survivor-list digest that the consistency round signs.
//!
//! The graph seed is derived from the cohort (fixed before any key exists) and the nonces the
//! clients revealed with their keys — each committed in the cohort before any nonce was shown
//! — and from nothing the server can choose after seeing a key: not the keys themselves, not
//! their order.

use sha2::{Digest, Sha256};

use super::PublicKeys;
use crate::ClientId;
use crate::config::RoundConfig;

mod label {
    pub const ROUND: &[u8] = b"secagg/v2/round";
    pub const NONCE: &[u8] = b"secagg/v2/nonce-commitment";
    pub const COHORT: &[u8] = b"secagg/v2/cohort";
    pub const SESSION: &[u8] = b"secagg/v2/session-id";
    pub const GRAPH: &[u8] = b"secagg/v2/neighbour-graph";
    pub const SURVIVORS: &[u8] = b"secagg/v2/survivors";
    pub const DP: &[u8] = b"secagg/v2/dp";
}

/// SHA-256 over the round id, every parameter that shapes the round (the DP setting
/// included), and the caller's round context (for example the hash of the global model the clients trained on). Clients that
/// disagree on any of these derive different digests, and every signature and key derivation
/// of the round is bound to it.
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

/// The digest of a cohort: every member's id and nonce commitment, sorted by id.
pub fn cohort_digest(round: &RoundDigest, cohort: &[(ClientId, [u8; 32])]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label::COHORT);
    h.update(round.0);
    h.update((cohort.len() as u64).to_le_bytes());
    for (id, c) in cohort {
        h.update(id.0.to_le_bytes());
        h.update(c);
    }
    h.finalize().into()
}

/// One advertised entry as the session id hashes it.
pub struct SessionEntry<'a> {
    /// The client.
    pub id: ClientId,
    /// Its round keys.
    pub keys: &'a PublicKeys,
    /// Its revealed graph nonce.
    pub nonce: &'a [u8; 32],
    /// Its long-term identity key.
    pub identity: [u8; 32],
}

/// SHA-256 over the round digest, the cohort and every advertised entry: both sides of every
/// derivation bind to it, so messages from another round or another key set never fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    /// The session of a round whose advertised entries are `entries`, sorted by client id.
    pub fn derive<'a>(
        round: &RoundDigest,
        cohort: &[u8; 32],
        entries: impl ExactSizeIterator<Item = SessionEntry<'a>>,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(label::SESSION);
        h.update(round.0);
        h.update(cohort);
        h.update((entries.len() as u64).to_le_bytes());
        for e in entries {
            h.update(e.id.0.to_le_bytes());
            h.update(e.keys.encryption);
            h.update(e.keys.masking);
            h.update(e.nonce);
            h.update(e.identity);
        }
        SessionId(h.finalize().into())
    }
}

/// The seed of the neighbour-graph permutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GraphSeed(pub [u8; 32]);

impl GraphSeed {
    /// The seed from the cohort digest and the nonces of the clients in the key list (sorted
    /// by id). Nothing else enters: a server that has seen the keys cannot steer it by choosing
    /// keys, and every nonce in it was committed before any nonce was revealed.
    pub fn derive(
        round: &RoundDigest,
        cohort: &[u8; 32],
        nonces: &[(ClientId, &[u8; 32])],
    ) -> Self {
        let mut h = Sha256::new();
        h.update(label::GRAPH);
        h.update(round.0);
        h.update(cohort);
        h.update((nonces.len() as u64).to_le_bytes());
        for (id, n) in nonces {
            h.update(id.0.to_le_bytes());
            h.update(n);
        }
        GraphSeed(h.finalize().into())
    }
}

/// What a survivor signs in the consistency round: the session and the survivor list (sorted).
pub fn survivors_digest(session: &SessionId, survivors: &[ClientId]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label::SURVIVORS);
    h.update(session.0);
    h.update((survivors.len() as u64).to_le_bytes());
    for id in survivors {
        h.update(id.0.to_le_bytes());
    }
    h.finalize().into()
}

/// The domain of the advertisement signature (identity key over [`advertisement_message`]).
pub const ADVERTISE_DOMAIN: &[u8] = b"secagg/v2/advertise";
/// The domain of the survivor-list signature (identity key over [`survivors_digest`]).
pub const SURVIVORS_DOMAIN: &[u8] = b"secagg/v2/survivors";

/// The bytes an advertisement's signature covers: the round digest, the cohort digest, the id,
/// both round keys and the nonce.
pub fn advertisement_message(
    round: &RoundDigest,
    cohort: &[u8; 32],
    id: ClientId,
    keys: &PublicKeys,
    nonce: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 * 5 + 4);
    m.extend_from_slice(&round.0);
    m.extend_from_slice(cohort);
    m.extend_from_slice(&id.0.to_le_bytes());
    m.extend_from_slice(&keys.encryption);
    m.extend_from_slice(&keys.masking);
    m.extend_from_slice(nonce);
    m
}
