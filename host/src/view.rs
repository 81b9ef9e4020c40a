//! What every party derives alike from the key list: the session id and the neighbour graph.
//!
//! The client (before it deals), the server (when it fixes U1), the attack laboratory and the
//! tests all derive the round's view through [`RoundView::derive`], so that no two of them
//! can drift apart: the session id binds the round digest, the cohort digest and every
//! advertised entry (keys, nonce, identity); the graph is a Harary graph over a permutation
//! seeded by the round, the cohort and the revealed nonces — never by the keys, so that no one
//! can steer it by choosing keys after seeing others.

use crate::ClientId;
use crate::crypto::{GraphSeed, RoundDigest, SessionEntry, SessionId};
use crate::graph::NeighborGraph;
use crate::messages::SignedKeys;

/// The session and the graph of one key list.
pub struct RoundView {
    /// The session id every key and signature of the rest of the round is bound to.
    pub session: SessionId,
    /// The neighbour graph over the key list's members.
    pub graph: NeighborGraph,
}

impl RoundView {
    /// The view of `keys` (sorted by id, as the key list carries them) in the round `round`
    /// with cohort digest `cohort`, for `neighbors` neighbours per client (capped at the
    /// members less one by the graph).
    pub fn derive(
        round: &RoundDigest,
        cohort: &[u8; 32],
        keys: &[(ClientId, SignedKeys)],
        neighbors: usize,
    ) -> Self {
        let session = SessionId::derive(
            round,
            cohort,
            keys.iter().map(|(id, k)| SessionEntry {
                id: *id,
                keys: &k.keys,
                nonce: &k.nonce,
                identity: k.credential.key_bytes(),
            }),
        );
        let nonces: Vec<(ClientId, &[u8; 32])> =
            keys.iter().map(|(id, k)| (*id, &k.nonce)).collect();
        let seed = GraphSeed::derive(round, cohort, &nonces);
        let members: Vec<ClientId> = keys.iter().map(|(id, _)| *id).collect();
        let graph = NeighborGraph::new(&seed, &members, neighbors);
        Self { session, graph }
    }
}
