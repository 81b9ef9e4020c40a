//! The messages of a round, as typed values. [`crate::codec`] turns them into bytes and back.

use secagg_engine::packed;

pub use crate::crypto::ListCommitment;
use crate::crypto::PublicKeys;
use crate::error::CodecError;
use crate::identity::{CERT_LEN, Certificate, IdentityError, IdentityPublicKey};
pub use crate::merkle::{Proof, SetOpening};
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

/// A client's advertisement, sent when it joins: its round keys and its commitment to a graph
/// nonce, signed with its identity key over the round digest and its id. It becomes the
/// client's leaf of the cohort commitment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedKeys {
    /// The two round keys.
    pub keys: PublicKeys,
    /// The commitment to its graph nonce ([`crate::crypto::nonce_commitment`]).
    pub commitment: [u8; 32],
    /// Who it is.
    pub credential: Credential,
    /// Ed25519 signature by the identity key over [`crate::crypto::advertisement_message`].
    pub signature: [u8; 64],
    /// The proof that this member is eligible, in a round with verifiable self-selection
    /// (see [`crate::selection`]); `None` otherwise. Self-authenticating: it verifies under
    /// the identity key the credential names.
    pub ticket: Option<crate::selection::Ticket>,
}

/// A cohort entry as the server opens it: in full (a neighbour's, whose keys a client uses), or
/// only as far as who it is (a committee member's, an audited one's, a signer's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opening {
    /// Everything: keys, commitment, credential, signature, ticket.
    Full(SignedKeys),
    /// The commitment, the credential and the ticket; the keys and the signature only as
    /// their digest ([`crate::view::keys_digest`]).
    Identity(IdentityOpening),
}

/// The part of a cohort entry that says who the member is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityOpening {
    /// The nonce commitment.
    pub commitment: [u8; 32],
    /// Who it is.
    pub credential: Credential,
    /// Its selection ticket, in a self-selected round.
    pub ticket: Option<crate::selection::Ticket>,
    /// The digest of its round keys and its signature.
    pub keys_digest: [u8; 32],
}

impl Opening {
    /// The nonce commitment.
    pub fn commitment(&self) -> Option<&[u8; 32]> {
        match self {
            Opening::Full(s) => Some(&s.commitment),
            Opening::Identity(i) => Some(&i.commitment),
        }
    }

    /// The credential.
    pub fn credential(&self) -> Option<&Credential> {
        match self {
            Opening::Full(s) => Some(&s.credential),
            Opening::Identity(i) => Some(&i.credential),
        }
    }

    /// The selection ticket, if the entry carries one.
    pub fn ticket(&self) -> Option<&crate::selection::Ticket> {
        match self {
            Opening::Full(s) => s.ticket.as_ref(),
            Opening::Identity(i) => i.ticket.as_ref(),
        }
    }

    /// The entry in full, if it was opened in full.
    pub fn full(&self) -> Option<&SignedKeys> {
        match self {
            Opening::Full(s) => Some(s),
            Opening::Identity(_) => None,
        }
    }
}

/// One opened leaf of the cohort: where it sits, whose it is, what of it is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedEntry {
    /// Its index in the cohort (the leaf index).
    pub index: u32,
    /// The member.
    pub id: ClientId,
    /// The entry.
    pub opening: Opening,
}

/// After the nonces are revealed: what one client needs of the round's membership, with proof.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyList {
    /// The committee's revealed nonces, (cohort index, nonce), increasing by index.
    pub reveals: Vec<(u32, [u8; 32])>,
    /// The set of members present (who revealed their nonce), as ring positions.
    pub present: ListCommitment,
    /// Its leaves around this client's neighbourhood on the ring.
    pub presence: SetOpening,
    /// The opened cohort entries, increasing by index: each present neighbour in full, each
    /// absent neighbour, committee member and audited entry at least by identity.
    pub entries: Vec<OpenedEntry>,
    /// The proof that opens them under the cohort root.
    pub proof: Proof,
}

/// After the consistency round: the survivor set this client signed, the leaves of it this
/// client asked to audit, and the signatures it must check, with the signers it does not know
/// yet.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UnmaskRequest {
    /// The survivor set's commitment (the one this client signed).
    pub survivors: ListCommitment,
    /// The leaves of the survivor set this client asked to audit.
    pub audit: SetOpening,
    /// (signer's cohort index, signature), increasing by index.
    pub signatures: Vec<(u32, [u8; 64])>,
    /// The signers this client does not know yet, opened by identity, increasing by index.
    pub identities: Vec<OpenedEntry>,
    /// The proof that opens them under the cohort root.
    pub proof: Proof,
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
    /// Stage 0: the signed round keys and a commitment to a fresh graph nonce.
    Join(SignedKeys),
    /// Stage 1: the graph nonce, revealed now that the cohort is fixed, and the cohort entries
    /// this client audits (leaf indices).
    Reveal {
        /// The nonce its join committed to.
        nonce: [u8; 32],
        /// Leaf indices of the cohort to open, drawn by this client after the cohort's root.
        audit: Vec<u32>,
    },
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
        /// Leaf indices of the present set to open, drawn after its root.
        audit: Vec<u32>,
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
    /// Stage 5: the signature on the survivor set's commitment.
    Consistency {
        /// Ed25519 signature by the identity key over [`crate::crypto::survivors_digest`].
        signature: [u8; 64],
        /// Leaf indices of the survivor set to open, drawn after its root.
        audit: Vec<u32>,
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

impl ClientMessage {
    /// The stage this message completes.
    pub fn stage(&self) -> Stage {
        match self {
            ClientMessage::Join(_) => Stage::Join,
            ClientMessage::Reveal { .. } => Stage::AdvertiseKeys,
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
            ClientMessage::Join(_) => "join",
            ClientMessage::Reveal { .. } => "reveal",
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
    /// After stage 0: the cohort's commitment and the proof of this client's own entry in it.
    Cohort {
        /// The cohort: every member's advertisement, sorted by id.
        cohort: ListCommitment,
        /// This client's index in it.
        position: u32,
        /// The proof of its entry.
        proof: Proof,
    },
    /// After stage 1: the committee's nonces, who is present, and the entries this client
    /// needs, with proof.
    KeyList(KeyList),
    /// After stage 2: the bundles addressed to this client, one per neighbour that dealt, and
    /// the present set's leaves it audits.
    ShareBundles {
        /// The bundles.
        bundles: Vec<ForwardedBundle>,
        /// The audited leaves of the present set.
        audit: SetOpening,
    },
    /// After stage 3: the neighbours this client is to mask with (those that dealt and were
    /// not caught cheating), sorted.
    MaskRequest(Vec<ClientId>),
    /// After stage 4: the commitment to the survivor set (ring positions of the clients whose
    /// masked input arrived) and its leaves around this client; survivors sign it.
    SurvivorList {
        /// The survivor set.
        survivors: ListCommitment,
        /// Its leaves around this client's neighbourhood.
        opening: SetOpening,
    },
    /// After stage 5: the signatures this client needs to check.
    UnmaskRequest(UnmaskRequest),
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
            ServerMessage::Cohort { .. } => "cohort",
            ServerMessage::KeyList(_) => "key-list",
            ServerMessage::ShareBundles { .. } => "share-bundles",
            ServerMessage::MaskRequest(_) => "mask-request",
            ServerMessage::SurvivorList { .. } => "survivor-list",
            ServerMessage::UnmaskRequest(_) => "unmask-request",
            ServerMessage::Completed { .. } => "completed",
            ServerMessage::Aborted(_) => "aborted",
        }
    }

    /// The stage whose work this message starts on a client.
    pub fn starts(&self) -> Option<Stage> {
        match self {
            ServerMessage::Cohort { .. } => Some(Stage::AdvertiseKeys),
            ServerMessage::KeyList(_) => Some(Stage::ShareKeys),
            ServerMessage::ShareBundles { .. } => Some(Stage::ShareCheck),
            ServerMessage::MaskRequest(_) => Some(Stage::MaskedInput),
            ServerMessage::SurvivorList { .. } => Some(Stage::Consistency),
            ServerMessage::UnmaskRequest(_) => Some(Stage::Unmasking),
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
