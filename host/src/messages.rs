//! The messages of a round, as typed values. [`crate::codec`] turns them into bytes and back.

use std::sync::Arc;

use crate::crypto::PublicKeys;
use crate::{ClientId, Stage};

/// Which of a peer's two secrets a revealed share belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShareKind {
    /// A share of the self-mask secret: revealed for peers that sent their masked input.
    SelfMask,
    /// A share of the mask-agreement key: revealed for peers that dropped before it.
    MaskKey,
    /// No share: the owner's bundle to this client failed authentication, so it holds none.
    /// The reveal still answers for that owner, and the server rebuilds from the others.
    Unreadable,
}

/// One share revealed at unmasking: the owner of the secret, which secret, and the share.
/// Its `Debug` leaves the share value out.
#[derive(Clone, PartialEq, Eq)]
pub struct RevealedShare {
    /// Whose secret.
    pub owner: ClientId,
    /// Which secret.
    pub kind: ShareKind,
    /// The share value (a canonical scalar, little-endian).
    pub value: [u8; 32],
}

impl std::fmt::Debug for RevealedShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevealedShare")
            .field("owner", &self.owner)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Drop for RevealedShare {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

/// A sealed share bundle and the client at its other end (recipient when a client sends it,
/// sender when the server forwards it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedBundle {
    /// The other end.
    pub peer: ClientId,
    /// ChaCha20-Poly1305 ciphertext of the two shares.
    pub ciphertext: Vec<u8>,
}

/// What a client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// Round 0: the two public keys.
    AdvertiseKeys(PublicKeys),
    /// Round 1: a commitment to the self-mask secret and one sealed bundle per neighbour.
    ShareKeys {
        /// SHA-256 commitment to the self-mask scalar.
        self_mask_commitment: [u8; 32],
        /// One bundle per neighbour (`peer` = recipient).
        bundles: Vec<SealedBundle>,
    },
    /// Round 2: the masked vector (m parameters and the weight element), mod 2^b.
    MaskedInput(Vec<u32>),
    /// Round 3: one share per neighbour that sent share keys.
    UnmaskShares(Vec<RevealedShare>),
}

impl ClientMessage {
    /// The stage this message completes.
    pub fn stage(&self) -> Stage {
        match self {
            ClientMessage::AdvertiseKeys(_) => Stage::AdvertiseKeys,
            ClientMessage::ShareKeys { .. } => Stage::ShareKeys,
            ClientMessage::MaskedInput(_) => Stage::MaskedInput,
            ClientMessage::UnmaskShares(_) => Stage::Unmasking,
        }
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            ClientMessage::AdvertiseKeys(_) => "advertise-keys",
            ClientMessage::ShareKeys { .. } => "share-keys",
            ClientMessage::MaskedInput(_) => "masked-input",
            ClientMessage::UnmaskShares(_) => "unmask-shares",
        }
    }
}

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMessage {
    /// After round 0: every client that advertised keys, sorted by id. Shared, since every
    /// client gets the same list.
    KeyList(Arc<[(ClientId, PublicKeys)]>),
    /// After round 1: the bundles addressed to this client (`peer` = sender). The senders are
    /// this client's neighbours that completed share keys.
    ShareBundles(Vec<SealedBundle>),
    /// After round 2: the clients whose masked input arrived, sorted by id. Shared, since every
    /// survivor gets the same list.
    UnmaskRequest(Arc<[ClientId]>),
    /// The round completed; `included` clients are in the sum.
    Completed {
        /// How many inputs the sum holds.
        included: u32,
    },
    /// The round aborted; nothing was revealed.
    Aborted(String),
}

impl ServerMessage {
    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            ServerMessage::KeyList(_) => "key-list",
            ServerMessage::ShareBundles(_) => "share-bundles",
            ServerMessage::UnmaskRequest(_) => "unmask-request",
            ServerMessage::Completed { .. } => "completed",
            ServerMessage::Aborted(_) => "aborted",
        }
    }
}

/// A message with the round it belongs to. Every message on the wire carries the round id;
/// a message for another round is rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<M> {
    /// The round id.
    pub round: u64,
    /// The message.
    pub message: M,
}
