//! Typed errors: one enum per concern, one variant per check.
//!
//! * [`ConfigError`]: a round configuration that is unsafe or overflows, with what would work.
//! * [`ProtocolError`]: what a peer did wrong. The server drops that client and carries on;
//!   a client aborts its round. Its precise sub-enums, one variant per check, after rustls's
//!   `PeerMisbehaved`: [`PeerMisbehaved`] (a message the protocol forbids), [`BundleMismatch`]
//!   (share bundles for the wrong recipients), [`IdentityRefusal`] (a certificate or signature
//!   that fails), [`LocalFailure`] (this side's own trouble).
//! * [`AbortReason`]: why a server ended a round without a result.
//! * [`CodecError`]: bytes that do not decode to a message.
//! * [`CryptoError`]: a key agreement, share or ciphertext that fails its check.

use crate::identity::{IdentityError, KeyProblem};
use crate::selection::SelectionError;
use crate::{ClientId, Stage};

/// A list of client ids for a message: `0, 3, 7`.
fn list(ids: &[ClientId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A round configuration that cannot run safely.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Too few or too many clients.
    #[error("clients n = {n} is out of range: a round needs 3..={max} clients")]
    Clients {
        /// Requested n.
        n: usize,
        /// Upper bound.
        max: usize,
    },
    /// The vector length is out of range.
    #[error("params m = {m} is out of range: 1..={max}")]
    Params {
        /// Requested m.
        m: usize,
        /// Upper bound.
        max: usize,
    },
    /// The neighbour count is out of range.
    #[error(
        "neighbors k = {k} is out of range for n = {n}: use 2..={max} ({max} is SecAgg's complete graph)",
        max = n.saturating_sub(1)
    )]
    Neighbors {
        /// Requested k.
        k: usize,
        /// n.
        n: usize,
    },
    /// The Shamir threshold is out of range.
    #[error(
        "threshold t = {t} is out of range: a client masks its input only when t of its k = {k} neighbours can help rebuild its secrets, so 2 <= t <= {k}"
    )]
    Threshold {
        /// Requested t.
        t: usize,
        /// k.
        k: usize,
    },
    /// The survivor minimum is out of range.
    #[error(
        "minimum survivors {min} is out of range: it must be at least the threshold t = {t} and at most n = {n}"
    )]
    MinSurvivors {
        /// Requested minimum.
        min: usize,
        /// t.
        t: usize,
        /// n.
        n: usize,
    },
    /// The modulus exponent is out of range.
    #[error("bits b = {b} is out of range: 1..=64 (1..=32 with DP)")]
    Bits {
        /// Requested b.
        b: u32,
    },
    /// The sum could wrap around 2^b.
    #[error(
        "overflow: n (q - 1) w = {n} x ({levels} - 1) x {max_weight} does not fit below 2^{bits}; {hint}"
    )]
    Overflow {
        /// n.
        n: usize,
        /// q.
        levels: u32,
        /// w.
        max_weight: u32,
        /// b.
        bits: u32,
        /// What would work.
        hint: String,
    },
    /// The clip range is not a positive finite number.
    #[error("clip range {clip} must be a positive finite number")]
    Clip {
        /// Requested clip.
        clip: f32,
    },
    /// Fewer than two quantization levels.
    #[error("quantization levels q = {levels} must be at least 2")]
    Levels {
        /// Requested q.
        levels: u32,
    },
    /// A zero maximum weight.
    #[error("maximum weight must be at least 1")]
    Weight,
    /// A zero stage deadline.
    #[error("the per-stage deadline must be positive")]
    Timeout,
    /// The planner found no safe parameters.
    #[error("planner: {0}")]
    Plan(String),
    /// A differential-privacy setting that cannot work (see [`crate::dp::DpConfig::check`]).
    #[error("DP {field}: {why}")]
    Dp {
        /// The setting at fault.
        field: &'static str,
        /// Why.
        why: String,
    },
}

/// Bytes that do not decode to a valid message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The message ended before a field did.
    #[error("truncated message: {field} needs {need} more bytes, {have} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// Bytes remained after the message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// An unknown protocol version.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// An unknown message tag.
    #[error("unknown message tag {0:#04x}")]
    UnknownTag(u8),
    /// A length field above its bound.
    #[error("{field} length {len} exceeds the bound {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Claimed length.
        len: u64,
        /// Bound.
        max: u64,
    },
    /// A field with an invalid value.
    #[error("invalid {field}: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// A packed run off the format ([`secagg_engine::packed`]) is an invalid packed vector on the
/// wire: what the codec's checks and
/// [`PackedVector::unpack`](crate::messages::PackedVector::unpack) report.
impl From<secagg_engine::packed::PackedError> for CodecError {
    fn from(e: secagg_engine::packed::PackedError) -> Self {
        CodecError::Invalid {
            field: "packed vector",
            why: e.to_string(),
        }
    }
}

/// A cryptographic check that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A public key of small order: the shared secret would be predictable.
    #[error("key agreement with {peer} is not contributory (low-order public key)")]
    NonContributory {
        /// The peer whose key was rejected.
        peer: ClientId,
    },
    /// A share bundle failed authentication (opaque on purpose).
    #[error("share bundle from {from} failed authentication")]
    Decrypt {
        /// The claimed sender.
        from: ClientId,
    },
    /// Splitting a secret failed.
    #[error("secret sharing failed: {0}")]
    Split(String),
    /// Too few shares to rebuild a secret.
    #[error("only {have} shares of {owner}'s secret, {need} needed")]
    TooFewShares {
        /// Whose secret.
        owner: ClientId,
        /// Shares available.
        have: usize,
        /// Threshold.
        need: usize,
    },
    /// A rebuilt secret does not match what its owner committed to.
    #[error("rebuilt {what} of {owner} does not match its commitment")]
    Mismatch {
        /// Whose secret.
        owner: ClientId,
        /// Which secret.
        what: &'static str,
    },
    /// Bytes that are not a canonical scalar.
    #[error("share value is not a canonical scalar")]
    NonCanonical,
    /// A dealing's commitments or share points are malformed or inconsistent.
    #[error("bad share commitments: {0}")]
    Commitment(String),
    /// Bytes that are not a point this protocol accepts: `what` names the point (a
    /// mask-agreement key, a commitment, a share point), `why` the rule it breaks.
    #[error("the {what} is not an acceptable point: {why}")]
    BadPoint {
        /// Which point.
        what: &'static str,
        /// The rule it breaks.
        why: PointError,
    },
}

/// Why 32 bytes are not a point the protocol accepts. Every point that enters — a
/// mask-agreement key σ·B, a self-mask commitment β·B, a share point — must be the canonical
/// encoding of a point of the prime-order subgroup other than the identity, on the client and
/// on the server alike, so that a point and its encoding are one and the same and every
/// comparison can be exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PointError {
    /// Not the y-coordinate of a point of the curve.
    #[error("not on the curve")]
    NotOnCurve,
    /// A point, but not in its one canonical encoding (y ≥ p, or x = 0 with the sign bit set):
    /// its bytes do not survive decompression and compression.
    #[error("not canonically encoded")]
    NonCanonical,
    /// The identity (the commitment to zero).
    #[error("the identity")]
    Identity,
    /// A point with a component in the small-order (torsion) subgroup of order 8.
    #[error("it has a small-order (torsion) component")]
    Torsion,
}

impl From<IdentityError> for ProtocolError {
    fn from(e: IdentityError) -> Self {
        ProtocolError::Identity(IdentityRefusal::from(e))
    }
}

/// A certificate, key or signature a peer sent that fails its check (the identity module's
/// reasons, kept comparable).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityRefusal {
    /// The certificate's signature does not verify under the deployment CA.
    #[error("the certificate for client {id} is not signed by this deployment's CA")]
    BadCertificate {
        /// The id the certificate claims.
        id: ClientId,
    },
    /// The certificate names another client.
    #[error("the certificate is for client {found}, expected client {expected}")]
    WrongId {
        /// The id expected.
        expected: ClientId,
        /// The id in the certificate.
        found: ClientId,
    },
    /// Certificate bytes of the wrong length.
    #[error("a certificate of {found} bytes")]
    CertificateLength {
        /// The length received.
        found: usize,
    },
    /// Bytes that are not an acceptable public key.
    #[error("invalid public key: {0}")]
    InvalidPublicKey(KeyProblem),
    /// A signature whose scalar is not canonical.
    #[error("malformed signature: its scalar is not canonical")]
    MalformedSignature,
    /// A signature that does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Items of a batch whose signatures do not verify.
    #[error("bad signature at batch items {indices:?}")]
    BadSignatures {
        /// Indices into the batch.
        indices: Vec<usize>,
    },
    /// Any other identity failure (files, never a peer's bytes).
    #[error("{0}")]
    Other(String),
}

impl From<IdentityError> for IdentityRefusal {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::BadCertificate { id } => Self::BadCertificate { id },
            IdentityError::WrongId { expected, found } => Self::WrongId { expected, found },
            IdentityError::CertificateLength { found } => Self::CertificateLength { found },
            IdentityError::InvalidPublicKey(p) => Self::InvalidPublicKey(p),
            IdentityError::MalformedSignature => Self::MalformedSignature,
            IdentityError::BadSignature => Self::BadSignature,
            IdentityError::BadSignatures { indices } => Self::BadSignatures { indices },
            other => Self::Other(other.to_string()),
        }
    }
}

/// What a peer did that the protocol forbids, one variant per check. Most are a client's
/// checks of what the server sent (only a lying server trips them: the client aborts before
/// revealing anything); the rest are the server's checks of what a client sent (it drops
/// that client).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// The cohort is not sorted by unique client id.
    #[error("the cohort is not sorted by unique client id")]
    CohortNotSorted,
    /// The cohort names more clients than the round has.
    #[error("the cohort names {named} clients, the round has {round}")]
    CohortTooLarge {
        /// Clients named.
        named: usize,
        /// n.
        round: usize,
    },
    /// This client's entry is not in the cohort the server committed to.
    #[error("our entry is not in the cohort")]
    NotInCohort,
    /// A proof the server sent does not verify, or does not settle what it must.
    #[error("the proof of the {what} fails: {why}")]
    BadProof {
        /// Which list.
        what: &'static str,
        /// Why.
        why: crate::merkle::SetError,
    },
    /// A revealed nonce of a member that is not on the committee.
    #[error("a nonce revealed for cohort index {index}, which is not on the committee")]
    RevealOutsideCommittee {
        /// The member's cohort index.
        index: u32,
    },
    /// A revealed nonce does not open its commitment in the cohort (which would let the server
    /// choose the graph after seeing the nonces).
    #[error("the nonce of {id} does not open its commitment in the cohort")]
    NonceMismatch {
        /// Whose nonce.
        id: ClientId,
    },
    /// A present neighbour on the committee whose nonce was not revealed (the server left it
    /// out of the graph's seed but kept it in the round).
    #[error("{id} is on the committee and present, but its nonce was not revealed")]
    UnrevealedCommitteeMember {
        /// The member.
        id: ClientId,
    },
    /// The server did not open a cohort entry or a list leaf this client needs or asked for.
    #[error("the server did not open the {what} at index {index}")]
    EntryMissing {
        /// Which list.
        what: &'static str,
        /// The index.
        index: u32,
    },
    /// A committed set of ring positions names a position outside the ring.
    #[error("the {what} names ring position {value}, outside the cohort")]
    SetOutOfRange {
        /// Which set.
        what: &'static str,
        /// The value.
        value: u32,
    },
    /// This client is not in the present set.
    #[error("we are not in the key list")]
    NotInKeyList,
    /// Advertisements whose signatures do not verify, which the server forwarded.
    #[error(
        "the advertised keys of {} carry no valid signature (the server forwarded them)",
        list(ids)
    )]
    ForwardedBadSignatures {
        /// The members.
        ids: Vec<ClientId>,
    },
    /// Certificates not signed by the deployment CA, which the server forwarded.
    #[error(
        "the certificate of {} is not signed by this deployment's CA (the server forwarded it)",
        list(ids)
    )]
    ForwardedBadCertificates {
        /// The members.
        ids: Vec<ClientId>,
    },
    /// A neighbour's mask-agreement key breaks the rule for points, and the server forwarded
    /// it.
    #[error("{why}, the key of {peer} (the server forwarded it)")]
    ForwardedBadMaskKey {
        /// The neighbour.
        peer: ClientId,
        /// The rule it breaks.
        why: CryptoError,
    },
    /// A member with a self-asserted identity where the deployment enrolls identities.
    #[error("{id} has no certificate from the deployment CA")]
    NoCertificate {
        /// The member.
        id: ClientId,
    },
    /// The server seated a member the round's self-selection does not admit.
    #[error("the server seated {id}, but {why}")]
    IneligibleMember {
        /// The member.
        id: ClientId,
        /// Why its ticket fails.
        why: SelectionError,
    },
    /// A client's own selection ticket fails (the server's check).
    #[error("its selection ticket was refused: {0}")]
    Ticket(SelectionError),
    /// A share bundle from a client that is not a neighbour.
    #[error("a bundle from {sender}, who is not a neighbour")]
    BundleFromStranger {
        /// The claimed dealer.
        sender: ClientId,
    },
    /// The mask request is not sorted by unique client id.
    #[error("the mask request is not sorted by unique client id")]
    MaskRequestNotSorted,
    /// The mask request names a neighbour whose bundle never arrived.
    #[error("the mask request names {id}, whose share bundle never reached this client")]
    MaskRequestUndelivered {
        /// The neighbour.
        id: ClientId,
    },
    /// The mask request names a neighbour proved to have dealt bad shares.
    #[error("the mask request names {id}, proved to have dealt bad shares")]
    MaskRequestCheater {
        /// The neighbour.
        id: ClientId,
    },
    /// The survivor list leaves out this client, which sent its masked input.
    #[error("the survivor list leaves out this client, which sent its masked input")]
    SurvivorListOmitsSelf,
    /// The survivor list names a neighbour this client did not mask with.
    #[error("{id} is named a survivor but this client did not mask with it")]
    SurvivorNotPartner {
        /// The neighbour.
        id: ClientId,
    },
    /// The unmask request carries another survivor list than the one this client signed.
    #[error("the unmask request carries another survivor list than the one this client signed")]
    UnmaskListChanged,
    /// The survivor-list signatures are not sorted by unique signer.
    #[error("the signatures are not sorted by unique signer")]
    SignaturesNotSorted,
    /// Survivor-list signatures or certificates that do not verify.
    #[error("invalid survivor-list signatures or certificates from {}", list(ids))]
    BadSurvivorSignatures {
        /// The signers.
        ids: Vec<ClientId>,
    },
    /// A second unmask request, after shares were revealed.
    #[error("second unmask request refused: {revealed} shares were already revealed")]
    SecondUnmaskRequest {
        /// Shares revealed before.
        revealed: usize,
    },
    /// A client reported a dealer that dealt it nothing (the server's check).
    #[error("a report on {dealer}, who dealt nothing to its sender")]
    ReportOnStranger {
        /// The dealer named.
        dealer: ClientId,
    },
    /// A client revealed a share of an owner it does not hold shares of (the server's check).
    #[error("a share of {owner}, of whose secrets its sender holds no share")]
    ShareNotHeld {
        /// The owner.
        owner: ClientId,
    },
    /// A client revealed the other kind of share than the one asked for (the server's check).
    #[error("a {sent} share of {owner} where its {wanted} share was asked for")]
    WrongShareKind {
        /// The owner.
        owner: ClientId,
        /// The kind sent.
        sent: &'static str,
        /// The kind asked for.
        wanted: &'static str,
    },
}

/// Share bundles for other recipients than the dealer's neighbours (the server's check).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleMismatch {
    /// Not one bundle for each neighbour.
    #[error(
        "{bundles} bundles for {neighbors} neighbours{}{}",
        if strangers.is_empty() { String::new() } else { format!(", non-neighbours {}", list(strangers)) },
        if *duplicates { ", duplicates" } else { "" }
    )]
    Recipients {
        /// Bundles sent.
        bundles: usize,
        /// Neighbours.
        neighbors: usize,
        /// Recipients that are not neighbours.
        strangers: Vec<ClientId>,
        /// Whether a recipient appears twice.
        duplicates: bool,
    },
    /// A bundle of the wrong size.
    #[error("the bundle for {peer} has {len} bytes, expected {want}")]
    Length {
        /// Its recipient.
        peer: ClientId,
        /// Its length.
        len: usize,
        /// The sealed size.
        want: usize,
    },
}

/// This side's own trouble: not the peer's fault, but the round cannot go on for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocalFailure {
    /// The input source failed.
    #[error("the input could not be read: {0}")]
    Input(String),
    /// The input source gave a value not below 2^b.
    #[error("input element {index} is {value}, not below 2^{bits}")]
    InputOutOfRange {
        /// Position.
        index: usize,
        /// Value.
        value: u32,
        /// b.
        bits: u32,
    },
    /// The engine failed to mask.
    #[error("masking failed: {0}")]
    Masking(String),
    /// This client's own share of its self mask is missing from its dealing.
    #[error("this client's own share is missing from its dealing")]
    OwnShareMissing,
}

/// Why a server ended a round without a result; nothing was revealed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AbortReason {
    /// Fewer clients than the configured minimum completed a stage.
    #[error("only {have} clients remain at {stage}, {need} needed")]
    TooFewClients {
        /// The stage.
        stage: Stage,
        /// Clients left.
        have: usize,
        /// The minimum.
        need: usize,
    },
    /// A client left part-way through a streamed masked input: its pieces are in the sum, and
    /// nothing can take them out again.
    #[error(
        "{client} left after {added} of the {len} elements of its streamed masked input were added: a partial input cannot be taken out of the sum"
    )]
    PartialInput {
        /// The client.
        client: ClientId,
        /// Elements added.
        added: usize,
        /// The vector length.
        len: usize,
    },
    /// The aggregation engine failed.
    #[error("aggregation engine failed: {0}")]
    Engine(String),
    /// The secrets needed to remove the masks could not be rebuilt.
    #[error("cannot unmask: {0}")]
    CannotUnmask(ProtocolError),
    /// The server lost its state (a bug, never a peer's doing).
    #[error("server state lost: {0}")]
    StateLost(&'static str),
}

/// What a peer did wrong. The server drops the client and carries on; a client aborts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The message could not be decoded.
    #[error("malformed message: {0}")]
    Codec(#[from] CodecError),
    /// A cryptographic check failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The message belongs to another round.
    #[error("message for round {got}, this is round {want}")]
    WrongRound {
        /// Round in the message.
        got: u64,
        /// This round.
        want: u64,
    },
    /// The message is not the one this stage expects.
    #[error("unexpected {got} message while expecting {want}")]
    UnexpectedMessage {
        /// What arrived.
        got: &'static str,
        /// What the state expects.
        want: &'static str,
    },
    /// The same message arrived twice.
    #[error("duplicate {0} message")]
    Duplicate(&'static str),
    /// A client the round does not know.
    #[error("unknown client {0}")]
    UnknownClient(ClientId),
    /// A message addressed to someone else.
    #[error("message for {got} delivered to {me}")]
    WrongRecipient {
        /// The addressee in the message.
        got: ClientId,
        /// Who received it.
        me: ClientId,
    },
    /// A vector of the wrong length.
    #[error("vector has {got} elements, expected {want}")]
    WrongLength {
        /// Elements received.
        got: usize,
        /// Elements expected.
        want: usize,
    },
    /// An element at or above 2^b.
    #[error("element {index} is {value}, not below 2^{bits}")]
    OutOfRange {
        /// Position.
        index: usize,
        /// Value.
        value: u32,
        /// b.
        bits: u32,
    },
    /// The share bundles are not one for each of the sender's neighbours.
    #[error("share bundle recipients do not match the neighbourhood: {0}")]
    Recipients(BundleMismatch),
    /// The peer sent something the protocol forbids.
    #[error(transparent)]
    PeerMisbehaved(#[from] PeerMisbehaved),
    /// Fewer committee members revealed their nonce than this client's quorum.
    #[error("only {have} committee members revealed their nonce, {need} needed")]
    TooFewReveals {
        /// Nonces revealed.
        have: usize,
        /// The quorum.
        need: usize,
    },
    /// Fewer clients than the threshold remain.
    #[error("only {have} clients remain at {stage}, {need} needed")]
    TooFewClients {
        /// The stage.
        stage: Stage,
        /// Clients left.
        have: usize,
        /// Minimum.
        need: usize,
    },
    /// The server reported the round aborted.
    #[error("server aborted the round: {0}")]
    ServerAborted(String),
    /// This side failed on its own (its input could not be read, its engine failed): not
    /// the peer's fault, but the round cannot go on for it.
    #[error("local failure: {0}")]
    Local(LocalFailure),
    /// The round fails this client's own policy.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// A certificate or signature failed its check (the identity module's reason).
    #[error("identity check failed: {0}")]
    Identity(IdentityRefusal),
    /// Too few of this client's neighbours completed share keys for its pairwise masks to
    /// protect its input (the round-2 check).
    #[error(
        "only {have} neighbours are left to mask with, {need} needed: masking now could leave the input exposed"
    )]
    TooFewPartners {
        /// Neighbours to mask with.
        have: usize,
        /// t.
        need: usize,
    },
    /// Too few valid survivor-list signatures from the holders of one owner's secrets: a
    /// second, different list could not be ruled out.
    #[error(
        "consistency check: {have} valid signatures on the survivor list from holders of {owner}'s shares, {need} needed"
    )]
    Consistency {
        /// The owner whose shares would be revealed.
        owner: ClientId,
        /// Valid signatures from its holders.
        have: usize,
        /// t.
        need: usize,
    },
    /// A dealer's shares are off its committed polynomial, proved by a holder's report.
    #[error("dealer {dealer} dealt shares off its committed polynomial (proved by {holder})")]
    CheatingDealer {
        /// The dealer.
        dealer: ClientId,
        /// The holder whose report proved it.
        holder: ClientId,
    },
    /// A report accusing a dealer did not hold up: the revealed key does not open the bundle,
    /// or the shares inside are correct.
    #[error("false report against dealer {dealer}: {why}")]
    FalseReport {
        /// The accused dealer.
        dealer: ClientId,
        /// What failed.
        why: &'static str,
    },
    /// Too few holders could read a dealer's shares for its secrets to be rebuilt.
    #[error("dealer {dealer}: only {readable} holders hold checked shares, {need} needed")]
    UnrecoverableDealer {
        /// The dealer.
        dealer: ClientId,
        /// Holders with checked shares.
        readable: usize,
        /// t.
        need: usize,
    },
}
