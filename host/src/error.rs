//! Typed errors: one enum per concern, one variant per check.
//!
//! * [`ConfigError`]: a round configuration that is unsafe or overflows, with what would work.
//! * [`ProtocolError`]: what a peer did wrong. The server drops that client and carries on;
//!   a client aborts its round.
//! * [`CodecError`]: bytes that do not decode to a message.
//! * [`CryptoError`]: a key agreement, share or ciphertext that fails its check.

use crate::{ClientId, Stage};

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
    #[error("bits b = {b} is out of range: 1..=32")]
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

impl From<crate::identity::IdentityError> for ProtocolError {
    fn from(e: crate::identity::IdentityError) -> Self {
        ProtocolError::Identity(e.to_string())
    }
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
    /// The set of ciphertext recipients is not the sender's neighbourhood.
    #[error("share bundle recipients do not match the neighbourhood: {0}")]
    Recipients(String),
    /// The server asked for something the protocol forbids.
    #[error("refused unmask request: {0}")]
    UnsafeRequest(String),
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
    Local(String),
    /// The round fails this client's own policy.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// A certificate or signature failed its check (the identity module's reason).
    #[error("identity check failed: {0}")]
    Identity(String),
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
