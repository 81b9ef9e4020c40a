//! The client side of a round, sans IO.
//!
//! [`Client::new`] checks the round against the client's own [`ClientPolicy`], draws the
//! round's secrets and queues its first message; feed each server message to
//! [`Client::handle_message`] and send what [`Client::poll_transmit`] returns.
//!
//! ## Call order
//!
//! 1. [`Client::new`] with the identity, the configuration the server announced, the
//!    client's own [`ClientPolicy`] (the round is refused here if it falls below it), an
//!    engine and a fresh [`round_rng`].
//! 2. [`Client::set_input`] (or [`Client::set_quantized_input`], or
//!    [`Client::set_input_source`] for a model too large to hold) any time before the
//!    masked-input stage.
//! 3. Drain [`Client::poll_transmit`] and send each message; then hand each message from the
//!    server to [`Client::handle_message`] and drain again.
//! 4. [`Client::status`] says where it stands: `Running(stage)` until the server reports the
//!    result (`Completed`) or the round ends for it (`Aborted`, with the typed reason).
//!
//! A transport that cannot keep the client object between messages uses a
//! [`JournaledClient`] ([`journal`]): the same client, snapshotted to bytes and rebuilt from
//! them, with a step counter that refuses an older snapshot.
//!
//! Each state waits for one server message and lives in the file of the round it performs:
//!
//! | file | waits for | checks, then sends |
//! |---|---|---|
//! | `r0_join` | — | its round keys and a commitment to a fresh graph nonce, signed |
//! | `r1_advertise_keys` | the cohort's commitment | its own entry in it (proof), its size ≥ T, (n, k, t) and the committee quorum against the policy; its nonce, and the cohort leaves it audits |
//! | `r2_share_keys` | the key list | every proof; the committee's nonces against their commitments; each neighbour's certificate, signature, ticket and mask key, each committee member's and audited entry's certificate and ticket; commitments and sealed shares, and the present-set leaves it audits |
//! | `r3_share_check` | its bundles | each share against its public point, the audited leaves; reports cheaters with proof |
//! | `r4_masked_input` | the mask request | at least t neighbours to mask with; the masked input |
//! | `r5_consistency` | the survivor set | its neighbourhood in it (proofs) against what it saw; its signature on the set's commitment, and the leaves it audits |
//! | `r6_unmasking` | the signatures | the audited leaves; enough valid signatures from each owner's holders; one share per owner |
//!
//! Nothing a client receives grows with n: the cohort, the present set and the survivor set
//! are Merkle commitments ([`crate::view`]), each opened around the client with proofs of
//! O(log n) digests per entry; the graph is derived from a seed and n.
//!
//! A server that misbehaves — a key list with substituted keys, parameters below the policy,
//! too few neighbours to mask with, survivor lists that could differ between holders, a second
//! unmask request — moves the client to [`ClientStatus::Aborted`] with a typed reason, before it
//! reveals anything that could expose its input; the client never reveals both shares of one
//! peer.

mod audit;
pub mod journal;
mod membership;
mod r0_join;
mod r1_advertise_keys;
mod r2_share_keys;
mod r3_share_check;
mod r4_masked_input;
mod r5_consistency;
mod r6_unmasking;
mod stream;

use std::collections::VecDeque;

use rand_core::CryptoRng;
use secagg_engine::Backend;
use zeroize::Zeroize;

use crate::config::RoundConfig;
use crate::crypto::RoundDigest;
use crate::error::ProtocolError;
use crate::identity::{Certificate, IdentityKey};
use crate::messages::{ClientMessage, Credential, Envelope, ServerMessage};
use crate::policy::{ClientPolicy, PolicyError};
use crate::quantize::{self, InputError, InputSource};
use crate::{ClientId, Stage};

pub use journal::{Frame, Journal, JournalError, JournaledClient, StaleJournal};
use r1_advertise_keys::ExpectCohort;
use r2_share_keys::ExpectKeyList;
use r3_share_check::ExpectShareBundles;
use r4_masked_input::ExpectMaskRequest;
use r5_consistency::ExpectSurvivorList;
use r6_unmasking::{ExpectResult, ExpectUnmaskRequest};

/// API misuse by the caller, or a round this client refuses to join.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The input was refused.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The round's parameters fail this client's policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The identity given does not match the client id or the policy's trust.
    #[error("identity: {0}")]
    Identity(String),
    /// The masked-input stage came before any input was set.
    #[error("no input was set before the masked-input stage")]
    MissingInput,
    /// The input can no longer change: it has been masked and sent.
    #[error("the input was already sent")]
    InputAlreadySent,
}

/// Who a client is: its id, its long-term identity key and how it proves the binding.
pub struct ClientIdentity {
    id: ClientId,
    key: IdentityKey,
    credential: Credential,
}

impl ClientIdentity {
    /// An enrolled identity: the key and the CA's certificate for it (the id is the
    /// certificate's).
    pub fn enrolled(key: IdentityKey, certificate: Certificate) -> Result<Self, ClientError> {
        if key.public() != certificate.key {
            return Err(ClientError::Identity(
                "the identity key does not match the certificate".into(),
            ));
        }
        Ok(Self {
            id: certificate.id,
            key,
            credential: Credential::certificate(&certificate),
        })
    }

    /// An identity the client asserts itself (honest-but-curious deployments, no CA).
    pub fn self_asserted(id: ClientId, key: IdentityKey) -> Self {
        let credential = Credential::self_asserted(&key.public());
        Self {
            id,
            key,
            credential,
        }
    }

    /// The client id.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// Its credential, as it travels.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// Signs `message` under `domain` with the identity key (the transport's hello).
    pub fn sign(&self, domain: &[u8], message: &[u8]) -> [u8; 64] {
        self.key.sign(domain, message)
    }
}

/// The random generator a round's [`Client`] should own: ChaCha20, its state zeroized when
/// dropped.
pub type RoundRng = chacha20::ChaCha20Rng;

/// A fresh [`RoundRng`] seeded from the operating system. Make one per round and move it
/// into that round's [`Client`]: it then lives exactly as long as the round's secrets and is
/// scrubbed with them, and no two rounds share a stream.
pub fn round_rng() -> Result<RoundRng, getrandom::Error> {
    use rand_core::SeedableRng;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut seed[..])?;
    Ok(RoundRng::from_seed(*seed))
}

/// Where a client's round stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientStatus {
    /// Waiting for the server's message that starts this stage's work.
    Running(Stage),
    /// The server reported the round complete with this many inputs in the sum.
    Completed {
        /// Inputs in the sum.
        included: u32,
    },
    /// The round ended for this client without completing.
    Aborted(ProtocolError),
}

/// The client's quantized input: m levels times the weight, then the weight, in the lanes of
/// the round's modulus (`u32` up to 2^32, `u64` above). Secret: zeroized when dropped.
enum Input {
    Narrow(Vec<u32>),
    Wide(Vec<u64>),
}

impl Drop for Input {
    fn drop(&mut self) {
        match self {
            Input::Narrow(v) => v.zeroize(),
            Input::Wide(v) => v.zeroize(),
        }
    }
}

/// A client's own share of its self-mask secret. Zeroized on drop.
struct OwnShare(curve25519_dalek::Scalar);

impl Drop for OwnShare {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Everything a state may touch besides itself.
struct Ctx<'a, E, R> {
    id: ClientId,
    config: &'a RoundConfig,
    round: &'a RoundDigest,
    policy: &'a ClientPolicy,
    identity: &'a ClientIdentity,
    /// The most colluders any size this round shows may hold (see
    /// [`ClientPolicy::check_config`]).
    colluders: usize,
    engine: &'a E,
    rng: &'a mut R,
    input: &'a mut Option<Input>,
    source: &'a mut Option<Box<dyn InputSource>>,
    stream: &'a mut Option<stream::MaskStream>,
    outbox: &'a mut VecDeque<Envelope<ClientMessage>>,
}

impl<E, R> Ctx<'_, E, R> {
    fn send(&mut self, message: ClientMessage) {
        self.outbox.push_back(Envelope {
            round: self.config.round_id(),
            message,
        });
    }
}

enum State {
    Cohort(Box<ExpectCohort>),
    KeyList(Box<ExpectKeyList>),
    ShareBundles(Box<ExpectShareBundles>),
    MaskRequest(Box<ExpectMaskRequest>),
    Survivors(Box<ExpectSurvivorList>),
    Unmask(Box<ExpectUnmaskRequest>),
    Result(ExpectResult),
    Completed(u32),
    Aborted(ProtocolError),
}

/// A state transition that may also be API misuse.
type Next = Result<State, (ClientError, ProtocolError)>;

impl State {
    fn stage(&self) -> Stage {
        match self {
            State::Cohort(_) => Stage::AdvertiseKeys,
            State::KeyList(_) => Stage::ShareKeys,
            State::ShareBundles(_) => Stage::ShareCheck,
            State::MaskRequest(_) => Stage::MaskedInput,
            State::Survivors(_) => Stage::Consistency,
            State::Unmask(_) | State::Result(_) | State::Completed(_) | State::Aborted(_) => {
                Stage::Unmasking
            }
        }
    }

    fn expects(&self) -> &'static str {
        match self {
            State::Cohort(_) => "cohort",
            State::KeyList(_) => "key-list",
            State::ShareBundles(_) => "share-bundles",
            State::MaskRequest(_) => "mask-request",
            State::Survivors(_) => "survivor-list",
            State::Unmask(_) => "unmask-request",
            State::Result(_) => "completed",
            State::Completed(_) | State::Aborted(_) => "nothing (the round is over)",
        }
    }
}

/// One client of one round.
pub struct Client<E, R> {
    identity: ClientIdentity,
    config: RoundConfig,
    round: RoundDigest,
    policy: ClientPolicy,
    colluders: usize,
    engine: E,
    rng: R,
    input: Option<Input>,
    /// A streamed input, read while it is masked and sent.
    source: Option<Box<dyn InputSource>>,
    /// The streamed masked input still to send.
    stream: Option<stream::MaskStream>,
    sent_input: bool,
    /// Rebuilt from a journal after its masked input went out: not sent again.
    resumed_after_input: bool,
    state: Option<State>,
    outbox: VecDeque<Envelope<ClientMessage>>,
}

impl<E: Backend, R: CryptoRng> Client<E, R> {
    /// A client for `config` that has checked the round against `policy`, drawn its secrets
    /// and queued its first message. Refuses (with the failed bound) a round the policy does
    /// not allow, and an identity the policy cannot use (a self-asserted identity under a
    /// policy that trusts a CA). The input can be set now or at any time before the
    /// masked-input stage.
    ///
    /// ```
    /// use secagg_engine::CpuEngine;
    /// use secagg_host::identity::IdentityKey;
    /// use secagg_host::messages::ClientMessage;
    /// use secagg_host::{Client, ClientError, ClientId, ClientIdentity, ClientPolicy, RoundConfig};
    /// use secagg_host::{PolicyError, round_rng};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A deployment of a handful of clients, at most one of which colludes with the server.
    /// let policy = ClientPolicy {
    ///     min_cohort: 3,
    ///     colluders: 1,
    ///     ..ClientPolicy::curious_unauthenticated()
    /// };
    /// let mut rng = round_rng()?;
    /// let me = ClientIdentity::self_asserted(ClientId(0), IdentityKey::generate(&mut rng));
    /// let config = RoundConfig::builder(5, 100).build()?;
    /// let mut client = Client::new(me, config, policy.clone(), CpuEngine::new(), rng)?;
    /// // Its first message is queued: a commitment to its graph nonce.
    /// let first = client.poll_transmit().ok_or("nothing to send")?;
    /// assert!(matches!(first.message, ClientMessage::Join { .. }));
    ///
    /// // A round smaller than the policy's minimum cohort is refused before anything is sent.
    /// let tiny = RoundConfig::builder(3, 100).build()?;
    /// let strict = ClientPolicy { min_cohort: 10, ..policy };
    /// let mut rng = round_rng()?;
    /// let me = ClientIdentity::self_asserted(ClientId(0), IdentityKey::generate(&mut rng));
    /// let refused = Client::new(me, tiny, strict, CpuEngine::new(), rng);
    /// assert!(matches!(refused, Err(ClientError::Policy(PolicyError::Cohort { min: 10, .. }))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(
        identity: ClientIdentity,
        config: RoundConfig,
        policy: ClientPolicy,
        engine: E,
        mut rng: R,
    ) -> Result<Self, ClientError> {
        let colluders = policy.check_config(&config)?;
        if matches!(policy.trust, crate::policy::Trust::Enrolled(_))
            && !matches!(identity.credential, Credential::Certificate(_))
        {
            return Err(ClientError::Identity(
                "the policy trusts a CA, but this client has no certificate".into(),
            ));
        }
        let ticket = own_ticket(&identity, &config, &policy)?;
        let round = RoundDigest::of(&config);
        let mut outbox = VecDeque::new();
        let state = r0_join::join(&identity, &config, &round, ticket, &mut rng, &mut outbox);
        Ok(Self {
            identity,
            config,
            round,
            policy,
            colluders,
            engine,
            rng,
            input: None,
            source: None,
            stream: None,
            sent_input: false,
            resumed_after_input: false,
            state: Some(State::Cohort(Box::new(state))),
            outbox,
        })
    }

    /// This client's id.
    pub fn id(&self) -> ClientId {
        self.identity.id
    }

    /// The round configuration.
    pub fn config(&self) -> &RoundConfig {
        &self.config
    }

    /// Sets the `f32` update and its integer weight (1 for a plain sum): clipped, quantized
    /// with stochastic rounding from this client's RNG, and multiplied by the weight. In a DP
    /// round ([`RoundConfig::dp`]) the update is rotated, clipped to the L2 norm c, scaled,
    /// rounded, weighted and noised with Skellam noise from this client's RNG instead (see
    /// [`crate::dp`]).
    pub fn set_input(&mut self, update: &[f32], weight: u32) -> Result<(), ClientError> {
        let input = quantize_update(&self.config, update, weight, &mut self.rng)?;
        self.set_levels(input)
    }

    /// [`set_input`](Client::set_input), rounding with `rng` instead of the client's own
    /// generator: a journaled client keeps its protocol stream for the frames it replays
    /// (see [`journal`]).
    fn set_input_rounded_by<Q: rand_core::Rng + ?Sized>(
        &mut self,
        update: &[f32],
        weight: u32,
        rng: &mut Q,
    ) -> Result<(), ClientError> {
        let input = quantize_update(&self.config, update, weight, rng)?;
        self.set_levels(input)
    }

    /// Sets an already-quantized input: m values (each level × weight) followed by the weight.
    /// Values must be below 2^b; they are added mod 2^b. In a DP round the values must
    /// already carry the clip, rotation, rounding and noise ([`crate::dp::DpRound`]); nothing
    /// is added here.
    ///
    /// For rounds with b ≤ 32; above, use
    /// [`set_quantized_input_wide`](Client::set_quantized_input_wide).
    pub fn set_quantized_input(&mut self, values: Vec<u32>) -> Result<(), ClientError> {
        self.check_quantized::<u32>(values.len())?;
        self.set_levels(Input::Narrow(values))
    }

    /// [`set_quantized_input`](Client::set_quantized_input) for rounds with b > 32 (whose
    /// elements are 64 bits).
    pub fn set_quantized_input_wide(&mut self, values: Vec<u64>) -> Result<(), ClientError> {
        self.check_quantized::<u64>(values.len())?;
        self.set_levels(Input::Wide(values))
    }

    /// m + 1 values, in the round's lanes.
    fn check_quantized<L: secagg_engine::Lane>(&self, len: usize) -> Result<(), ClientError> {
        if len != self.config.vector_len() {
            return Err(InputError::Length {
                got: len.saturating_sub(1),
                want: self.config.params(),
            }
            .into());
        }
        self.config
            .modulus()
            .check_lane::<L>()
            .map_err(|e| InputError::Source(e.to_string()).into())
    }

    fn set_levels(&mut self, input: Input) -> Result<(), ClientError> {
        if self.sent_input {
            return Err(ClientError::InputAlreadySent);
        }
        self.source = None;
        self.input = Some(input);
        Ok(())
    }

    /// Sets an input too large to hold: `source` is read a piece at a time when the
    /// masked-input stage comes, and each piece is masked and sent as
    /// [`ClientMessage::MaskedChunk`] as [`poll_transmit`](Client::poll_transmit) is called,
    /// so the client holds about 4 MiB of it at once. A source that fails, or gives a value
    /// not below 2^b, aborts this client with [`ProtocolError::Local`] part-way through the
    /// upload. Wrap an `f32` reader in a [`crate::QuantizingSource`] to quantize as
    /// [`set_input`](Client::set_input) does.
    ///
    /// Sources give `u32` values: rounds with b > 32 refuse them.
    pub fn set_input_source(&mut self, source: Box<dyn InputSource>) -> Result<(), ClientError> {
        if self.sent_input {
            return Err(ClientError::InputAlreadySent);
        }
        self.config
            .modulus()
            .check_lane::<u32>()
            .map_err(|e| InputError::Source(format!("streamed inputs take b <= 32: {e}")))?;
        self.input = None;
        self.source = Some(source);
        Ok(())
    }

    /// For a client rebuilt by replaying the server messages an earlier incarnation handled
    /// (same identity, configuration, policy and random seed), where that incarnation already
    /// sent its masked input: the replayed mask request is checked again and moves the client
    /// on, but nothing is masked or sent, and no input is needed. Transports that cannot keep
    /// a client object alive between messages (Flower's client mods) use this; the replay
    /// must feed exactly the messages handled before, in order.
    pub fn resume_after_input(&mut self) {
        self.resumed_after_input = true;
        self.sent_input = true;
    }

    /// A message from the server. A message that breaks the protocol aborts the round for
    /// this client (see [`status`](Client::status)); `Err` is API misuse only (no input set
    /// when it was needed), which also aborts.
    pub fn handle_message(&mut self, envelope: Envelope<ServerMessage>) -> Result<(), ClientError> {
        let Some(state) = self.state.take() else {
            return Ok(());
        };
        if envelope.round != self.config.round_id() {
            self.state = Some(abort_unless_over(
                state,
                ProtocolError::WrongRound {
                    got: envelope.round,
                    want: self.config.round_id(),
                },
            ));
            return Ok(());
        }
        let mut ctx = Ctx {
            id: self.identity.id,
            config: &self.config,
            round: &self.round,
            policy: &self.policy,
            identity: &self.identity,
            colluders: self.colluders,
            engine: &self.engine,
            rng: &mut self.rng,
            input: &mut self.input,
            source: &mut self.source,
            stream: &mut self.stream,
            outbox: &mut self.outbox,
        };
        let next = match (state, envelope.message) {
            (state, ServerMessage::Aborted(reason)) => Ok(abort_unless_over(
                state,
                ProtocolError::ServerAborted(reason),
            )),
            (
                State::Cohort(s),
                ServerMessage::Cohort {
                    cohort,
                    position,
                    proof,
                },
            ) => Ok(s.handle(&mut ctx, cohort, position, &proof)),
            (State::KeyList(s), ServerMessage::KeyList(keys)) => Ok(s.handle(&mut ctx, keys)),
            (State::ShareBundles(s), ServerMessage::ShareBundles { bundles, audit }) => {
                Ok(s.handle(&mut ctx, bundles, &audit))
            }
            (State::MaskRequest(s), ServerMessage::MaskRequest(list)) => {
                if self.resumed_after_input {
                    Ok(s.resume(&mut ctx, list))
                } else {
                    s.handle(&mut ctx, list)
                }
            }
            (State::Survivors(s), ServerMessage::SurvivorList { survivors, opening }) => {
                Ok(s.handle(&mut ctx, survivors, &opening))
            }
            (State::Unmask(s), ServerMessage::UnmaskRequest(request)) => {
                Ok(s.handle(&mut ctx, &request))
            }
            (State::Result(_), ServerMessage::Completed { included }) => {
                Ok(State::Completed(included))
            }
            (State::Result(s), ServerMessage::UnmaskRequest(_)) => Ok(s.refuse_second_request()),
            (state, other) => {
                let e = ProtocolError::UnexpectedMessage {
                    got: other.name(),
                    want: state.expects(),
                };
                Ok(abort_unless_over(state, e))
            }
        };
        match next {
            Ok(s) => {
                if matches!(s, State::Survivors(_)) {
                    self.sent_input = true;
                }
                if matches!(s, State::Completed(_) | State::Aborted(_)) {
                    self.stream = None;
                }
                self.state = Some(s);
                Ok(())
            }
            Err((misuse, reason)) => {
                self.stream = None;
                self.state = Some(State::Aborted(reason));
                Err(misuse)
            }
        }
    }

    /// The next message to send. A streamed masked input is masked here, a batch at a
    /// time, as its pieces are polled.
    pub fn poll_transmit(&mut self) -> Option<Envelope<ClientMessage>> {
        if self.outbox.is_empty() {
            self.continue_stream();
        }
        self.outbox.pop_front()
    }

    fn continue_stream(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        match stream.next(&self.engine, &self.config, &mut self.outbox) {
            Ok(false) => {}
            Ok(true) => self.stream = None,
            Err(e) => {
                self.stream = None;
                if let Some(state) = self.state.take() {
                    self.state = Some(abort_unless_over(state, e));
                }
            }
        }
    }

    /// Where this client's round stands.
    pub fn status(&self) -> ClientStatus {
        match &self.state {
            Some(State::Completed(n)) => ClientStatus::Completed { included: *n },
            Some(State::Aborted(e)) => ClientStatus::Aborted(e.clone()),
            Some(s) => ClientStatus::Running(s.stage()),
            None => ClientStatus::Aborted(ProtocolError::ServerAborted("client state lost".into())),
        }
    }
}

/// In a self-selected round, this client's ticket, if it is eligible (the policy has
/// already checked the epoch and that a CA is trusted).
fn own_ticket(
    identity: &ClientIdentity,
    config: &RoundConfig,
    policy: &ClientPolicy,
) -> Result<Option<crate::selection::Ticket>, ClientError> {
    let (Some(selection), crate::policy::Trust::Enrolled(ca)) = (config.selection(), &policy.trust)
    else {
        return Ok(None);
    };
    let refused = PolicyError::Selection(crate::policy::SelectionRefusal::NotEligible {
        epoch: selection.epoch(),
        threshold: selection.threshold(),
    });
    match crate::selection::draw(&identity.key, ca, selection.epoch()) {
        Some((ticket, score)) if score < selection.threshold() => Ok(Some(ticket)),
        _ => Err(refused.into()),
    }
}

/// `update` clipped, quantized with stochastic rounding from `rng` and multiplied by the
/// weight: m levels, then the weight, in the round's lanes.
fn quantize_update<Q: rand_core::Rng + ?Sized>(
    config: &RoundConfig,
    update: &[f32],
    weight: u32,
    rng: &mut Q,
) -> Result<Input, ClientError> {
    if update.len() != config.params() {
        return Err(InputError::Length {
            got: update.len(),
            want: config.params(),
        }
        .into());
    }
    if config.modulus().lane_kind() != secagg_engine::LaneKind::U32 {
        return encode_update(config, update, weight, rng).map(Input::Wide);
    }
    encode_update(config, update, weight, rng).map(Input::Narrow)
}

/// `update` through the round's pipeline (DP or plain quantization) into lanes `L`.
fn encode_update<Q: rand_core::Rng + ?Sized, L: secagg_engine::Lane>(
    config: &RoundConfig,
    update: &[f32],
    weight: u32,
    rng: &mut Q,
) -> Result<Vec<L>, ClientError> {
    let mut levels = Vec::new();
    match crate::dp::DpRound::of(config) {
        Some(dp) => dp.encode_into(update, weight, rng, &mut levels)?,
        None => quantize::quantize_into(update, &config.quantization(), weight, rng, &mut levels)?,
    }
    Ok(levels)
}

/// A finished round stays finished; anything else aborts with `reason`.
fn abort_unless_over(state: State, reason: ProtocolError) -> State {
    match state {
        done @ (State::Completed(_) | State::Aborted(_)) => done,
        _ => State::Aborted(reason),
    }
}
