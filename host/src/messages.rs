//! The messages of a round, as typed values. [`crate::codec`] turns them into bytes and back.

use std::sync::Arc;

use secagg_engine::packed::{self, PackedError};

use crate::crypto::PublicKeys;
use crate::error::CodecError;
use crate::identity::{CERT_LEN, Certificate, IdentityError, IdentityPublicKey};
use crate::{ClientId, Stage};

/// How a client proves which id its keys belong to. Kept as the bytes that travel, and parsed
/// only where used (a client checks its neighbours' credentials, not all n).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A certificate from the deployment CA binding the id to a long-term identity key.
    Certificate([u8; CERT_LEN]),
    /// An identity key the client asserts itself: no protection against a server that
    /// substitutes keys, so clients whose policy needs enrolled identities refuse it.
    SelfAsserted([u8; 32]),
}

impl Credential {
    /// A certificate credential.
    pub fn certificate(cert: &Certificate) -> Self {
        Credential::Certificate(cert.to_bytes())
    }

    /// A self-asserted credential.
    pub fn self_asserted(key: &IdentityPublicKey) -> Self {
        Credential::SelfAsserted(key.to_bytes())
    }

    /// The identity key's bytes (unchecked).
    pub fn key_bytes(&self) -> [u8; 32] {
        match self {
            Credential::Certificate(c) => {
                let mut k = [0u8; 32];
                k.copy_from_slice(&c[4..36]);
                k
            }
            Credential::SelfAsserted(k) => *k,
        }
    }

    /// The identity key, parsed (a valid point of large order).
    pub fn key(&self) -> Result<IdentityPublicKey, IdentityError> {
        IdentityPublicKey::from_bytes(&self.key_bytes())
    }

    /// The certificate, parsed, if this is one.
    pub fn parse_certificate(&self) -> Option<Result<Certificate, IdentityError>> {
        match self {
            Credential::Certificate(c) => Some(Certificate::from_bytes(c)),
            Credential::SelfAsserted(_) => None,
        }
    }
}

/// A client's advertisement: its round keys and graph nonce, signed with its identity key
/// over the round digest, the cohort digest and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedKeys {
    /// The two round keys.
    pub keys: PublicKeys,
    /// The graph nonce, committed in the cohort.
    pub nonce: [u8; 32],
    /// Who it is.
    pub credential: Credential,
    /// Ed25519 signature by the identity key.
    pub signature: [u8; 64],
    /// The proof that this member is eligible, in a round with verifiable self-selection
    /// (see [`crate::selection`]); `None` otherwise. Self-authenticating: it verifies under
    /// the identity key the credential names.
    pub ticket: Option<crate::selection::Ticket>,
}

/// What a client found wrong with one dealer's bundle.
#[derive(Clone, PartialEq, Eq)]
pub enum ReportKind {
    /// The bundle failed authentication (the dealer or the server broke it; nobody can tell
    /// which, so nothing is proved).
    Unreadable,
    /// The bundle opened but its shares are off the dealer's committed polynomial. The key
    /// that opens it is the proof: the server opens the bundle it routed and checks.
    BadShares {
        /// The pair's bundle key.
        bundle_key: [u8; 32],
    },
}

impl std::fmt::Debug for ReportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportKind::Unreadable => f.write_str("Unreadable"),
            ReportKind::BadShares { .. } => f.write_str("BadShares { .. }"),
        }
    }
}

/// A report on one dealer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DealerReport {
    /// The dealer.
    pub dealer: ClientId,
    /// What was wrong.
    pub kind: ReportKind,
}

/// A sealed bundle as the server forwards it: the dealer, its self-mask key β·B, the public
/// points of the two shares inside, and the ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedBundle {
    /// The dealer.
    pub sender: ClientId,
    /// The dealer's self-mask key β·B (the commitment to its self-mask secret).
    pub self_key: [u8; 32],
    /// The σ share times B.
    pub mask_point: [u8; 32],
    /// The β share times B.
    pub self_point: [u8; 32],
    /// ChaCha20-Poly1305 ciphertext of the two shares.
    pub ciphertext: Vec<u8>,
}

impl ForwardedBundle {
    /// What the ciphertext is bound to ([`crate::crypto::share_points_digest`]).
    pub fn binding(&self) -> [u8; 32] {
        crate::crypto::share_points_digest(&self.mask_point, &self.self_point, &self.self_key)
    }
}

/// Which of a peer's two secrets a revealed share belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShareKind {
    /// A share of the self-mask secret: revealed for peers that sent their masked input.
    SelfMask,
    /// A share of the mask-agreement key: revealed for peers that dropped before it.
    MaskKey,
}

impl ShareKind {
    /// Its name in messages: `self-mask` or `mask-key`.
    pub fn name(self) -> &'static str {
        match self {
            ShareKind::SelfMask => "self-mask",
            ShareKind::MaskKey => "mask-key",
        }
    }
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

/// A sealed share bundle, as the dealer sends it: the recipient, the public points of the two
/// shares inside, and the ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedBundle {
    /// The recipient.
    pub peer: ClientId,
    /// The σ share times B.
    pub mask_point: [u8; 32],
    /// The β share times B.
    pub self_point: [u8; 32],
    /// ChaCha20-Poly1305 ciphertext of the two shares.
    pub ciphertext: Vec<u8>,
}

/// What a client sends.
// An advertisement (a few hundred bytes, one per client per round) is the largest variant;
// boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// Stage 0: a commitment to a fresh graph nonce.
    Join {
        /// SHA-256 commitment to the nonce ([`crate::crypto::nonce_commitment`]).
        nonce_commitment: [u8; 32],
    },
    /// Stage 1: the signed round keys.
    AdvertiseKeys(SignedKeys),
    /// Stage 2: the dealing of both secrets: the self-mask key β·B, the point of the dealer's
    /// own β share, and one sealed bundle (with its share points) per neighbour. σ·B is the
    /// advertised mask key.
    ShareKeys {
        /// β·B.
        self_key: [u8; 32],
        /// The dealer's own β share times B.
        own_point: [u8; 32],
        /// One bundle per neighbour (`peer` = recipient).
        bundles: Vec<SealedBundle>,
    },
    /// Stage 3: the dealers whose bundles failed this client's checks (empty when all passed).
    ShareCheck(Vec<DealerReport>),
    /// Stage 4: the masked vector (m parameters and the weight element), mod 2^b.
    MaskedInput(Vec<u32>),
    /// Stage 4, as the wire carries it: the masked vector still packed at b bits (what the
    /// codec and the transport hand the server, which adds it without unpacking first).
    PackedInput(PackedVector),
    /// Stage 4, streamed: one piece of the masked vector, packed at b bits. The pieces of
    /// one client come in order from element 0; the piece that reaches the vector's end
    /// completes the input. A client given an [`crate::InputSource`] sends its input this
    /// way, holding one piece at a time. A server adds each piece as it comes, so a client
    /// that stops half-way leaves a partial input in the sum and the round must abort: only
    /// transports that cannot lose a client mid-upload (an in-process round) should hand
    /// pieces to the server; a network server assembles the upload first (as
    /// `transport::serve` does).
    MaskedChunk(PackedRun),
    /// Stage 5: the signature on the survivor list.
    Consistency {
        /// Ed25519 signature by the identity key over [`crate::crypto::survivors_digest`].
        signature: [u8; 64],
    },
    /// Stage 6: one share per owner whose good shares this client holds.
    UnmaskShares(Vec<RevealedShare>),
}

/// A masked vector packed at `bits` per element, in runs (the chunks it arrived in). Built
/// only by the codec, which checks every run: contiguous from element 0 to `len`, each
/// exactly `ceil(count · bits / 8)` bytes, padding bits zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedVector {
    bits: u32,
    len: usize,
    runs: Vec<PackedRun>,
}

/// One run of a [`PackedVector`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedRun {
    /// The first element.
    pub offset: usize,
    /// Elements.
    pub count: usize,
    /// The elements packed at the vector's bits, from bit 0 of the first byte.
    pub bytes: Vec<u8>,
}

impl PackedVector {
    /// A vector from runs that the caller has checked (see the type's docs).
    pub(crate) fn from_checked_runs(bits: u32, len: usize, runs: Vec<PackedRun>) -> Self {
        Self { bits, len, runs }
    }

    /// Bits per element.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The runs, in order.
    pub fn runs(&self) -> &[PackedRun] {
        &self.runs
    }

    /// The elements, unpacked (b ≤ 32).
    pub fn unpack(&self) -> Result<Vec<u32>, CodecError> {
        self.unpack_lanes()
    }

    /// The elements, unpacked into the modulus's lanes (`u64` for b > 32).
    pub fn unpack_lanes<L: secagg_engine::Lane>(&self) -> Result<Vec<L>, CodecError> {
        let mut out = vec![L::default(); self.len];
        for r in &self.runs {
            packed::unpack(&r.bytes, self.bits, &mut out[r.offset..r.offset + r.count])?;
        }
        Ok(out)
    }
}

/// A packed run off the format ([`secagg_engine::packed`]) is an invalid packed vector on the
/// wire: what the codec's checks and [`PackedVector::unpack`] report.
impl From<PackedError> for CodecError {
    fn from(e: PackedError) -> Self {
        CodecError::Invalid {
            field: "packed vector",
            why: e.to_string(),
        }
    }
}

impl ClientMessage {
    /// The stage this message completes.
    pub fn stage(&self) -> Stage {
        match self {
            ClientMessage::Join { .. } => Stage::Join,
            ClientMessage::AdvertiseKeys(_) => Stage::AdvertiseKeys,
            ClientMessage::ShareKeys { .. } => Stage::ShareKeys,
            ClientMessage::ShareCheck(_) => Stage::ShareCheck,
            ClientMessage::MaskedInput(_)
            | ClientMessage::PackedInput(_)
            | ClientMessage::MaskedChunk(_) => Stage::MaskedInput,
            ClientMessage::Consistency { .. } => Stage::Consistency,
            ClientMessage::UnmaskShares(_) => Stage::Unmasking,
        }
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            ClientMessage::Join { .. } => "join",
            ClientMessage::AdvertiseKeys(_) => "advertise-keys",
            ClientMessage::ShareKeys { .. } => "share-keys",
            ClientMessage::ShareCheck(_) => "share-check",
            ClientMessage::MaskedInput(_) | ClientMessage::PackedInput(_) => "masked-input",
            ClientMessage::MaskedChunk(_) => "masked-input piece",
            ClientMessage::Consistency { .. } => "consistency",
            ClientMessage::UnmaskShares(_) => "unmask-shares",
        }
    }
}

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMessage {
    /// After stage 0: the cohort, every member's id and nonce commitment, sorted by id.
    Cohort(Arc<[(ClientId, [u8; 32])]>),
    /// After stage 1: every client that advertised keys, sorted by id.
    KeyList(Arc<[(ClientId, SignedKeys)]>),
    /// After stage 2: the bundles addressed to this client, one per neighbour that dealt.
    ShareBundles(Vec<ForwardedBundle>),
    /// After stage 3: the neighbours this client is to mask with (those that dealt and were
    /// not caught cheating), sorted.
    MaskRequest(Vec<ClientId>),
    /// After stage 4: the clients whose masked input arrived, sorted; survivors sign it.
    SurvivorList(Arc<[ClientId]>),
    /// After stage 5: the same list and the signatures on it this client needs to check.
    UnmaskRequest {
        /// The survivor list.
        survivors: Arc<[ClientId]>,
        /// (signer, signature) pairs, sorted by signer.
        signatures: Vec<(ClientId, [u8; 64])>,
    },
    /// The round completed; `included` clients are in the sum.
    Completed {
        /// How many inputs the sum holds.
        included: u32,
    },
    /// The round aborted (or this client was excluded); nothing more will be asked of it.
    Aborted(String),
}

impl ServerMessage {
    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            ServerMessage::Cohort(_) => "cohort",
            ServerMessage::KeyList(_) => "key-list",
            ServerMessage::ShareBundles(_) => "share-bundles",
            ServerMessage::MaskRequest(_) => "mask-request",
            ServerMessage::SurvivorList(_) => "survivor-list",
            ServerMessage::UnmaskRequest { .. } => "unmask-request",
            ServerMessage::Completed { .. } => "completed",
            ServerMessage::Aborted(_) => "aborted",
        }
    }

    /// The stage whose work this message starts on a client.
    pub fn starts(&self) -> Option<Stage> {
        match self {
            ServerMessage::Cohort(_) => Some(Stage::AdvertiseKeys),
            ServerMessage::KeyList(_) => Some(Stage::ShareKeys),
            ServerMessage::ShareBundles(_) => Some(Stage::ShareCheck),
            ServerMessage::MaskRequest(_) => Some(Stage::MaskedInput),
            ServerMessage::SurvivorList(_) => Some(Stage::Consistency),
            ServerMessage::UnmaskRequest { .. } => Some(Stage::Unmasking),
            ServerMessage::Completed { .. } | ServerMessage::Aborted(_) => None,
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
