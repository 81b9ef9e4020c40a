//! The server side of a round, sans IO.
//!
//! Feed it what happens — [`Server::handle_message`], [`Server::handle_disconnect`],
//! [`Server::handle_timeout`] — with the current time, then drain what it wants done:
//! [`Server::poll_transmit`] (messages to send), [`Server::poll_event`] (what happened) and
//! [`Server::poll_timeout`] (when to call back). It reads no clock and opens no socket.
//!
//! ## Call order
//!
//! 1. [`Server::new`] (or [`Server::enrolled`], which admits only certified clients) with the
//!    round's configuration, an engine and the current time.
//! 2. [`Server::handle_join`] for each client whose connection is up (a transport admits it
//!    first: TLS, hello, certificate).
//! 3. Then, in any order, as things happen: [`Server::handle_message`] for each decoded
//!    client message, [`Server::misbehaved`] for a frame that failed to decode,
//!    [`Server::handle_disconnect`] when a connection closes, and [`Server::handle_timeout`]
//!    once the time [`Server::poll_timeout`] named has come.
//! 4. After each of those calls, drain [`Server::poll_transmit`] (send each message to its
//!    client) and [`Server::poll_event`] (clients dropped with their reason, stages
//!    finished, the round completed or aborted), and ask [`Server::poll_timeout`] again.
//! 5. Once [`Server::status`] is [`ServerStatus::Completed`], [`Server::output`] (or
//!    [`Server::take_output`]) holds the sum; on [`ServerStatus::Aborted`] nothing was
//!    revealed.
//!
//! The crate docs show the whole loop; `examples/sans_io.rs` adds a codec, a fake clock and a
//! client that goes silent.
//!
//! Each stage is one state, in its own file, named for what it waits for; handling consumes
//! the state and returns the next one. A client that misbehaves is dropped with a typed
//! reason and the round goes on; the round aborts, revealing nothing, only when fewer than
//! the configured minimum of clients remain.
//!
//! The server's arithmetic goes through the engine: each masked input is added into one
//! accumulator as it arrives (memory O(m), never O(n·m)), and unmasking is one fused mask job
//! for the whole vector.

mod collect;
mod membership;
mod r0_join;
mod r1_advertise_keys;
mod r2_share_keys;
mod r3_share_check;
mod r4_masked_input;
mod r5_consistency;
mod r6_unmasking;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use secagg_engine::{Accumulate, Modulus};

use crate::config::RoundConfig;
use crate::crypto::RoundDigest;
use crate::error::{AbortReason, ProtocolError};
use crate::identity::CaPublicKey;
use crate::messages::{ClientMessage, Envelope, ServerMessage};
use crate::quantize;
use crate::{ClientId, Stage};

use r0_join::ExpectJoins;
use r1_advertise_keys::ExpectKeys;
use r2_share_keys::ExpectShares;
use r3_share_check::ExpectShareChecks;
use r4_masked_input::ExpectMaskedInputs;
use r5_consistency::ExpectSignatures;
use r6_unmasking::ExpectUnmaskShares;

/// Why a client left the round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// It missed the stage deadline.
    Timeout,
    /// Its connection closed.
    Disconnected,
    /// It sent something the protocol does not allow.
    Misbehaved(ProtocolError),
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropReason::Timeout => f.write_str("missed the deadline"),
            DropReason::Disconnected => f.write_str("disconnected"),
            DropReason::Misbehaved(e) => write!(f, "{e}"),
        }
    }
}

/// A client that did not finish, and the stage it missed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedClient {
    /// The client.
    pub client: ClientId,
    /// The first stage it did not complete.
    pub stage: Stage,
    /// Why.
    pub reason: DropReason,
}

/// What happened, for logs and summaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A stage ended with `clients` clients having completed it.
    StageCompleted {
        /// The stage.
        stage: Stage,
        /// Clients that completed it.
        clients: usize,
    },
    /// A client left the round.
    ClientDropped(DroppedClient),
    /// A message was refused but its sender stays in the round (a replay, a late message).
    MessageRejected {
        /// The sender.
        client: ClientId,
        /// What was wrong.
        reason: ProtocolError,
    },
    /// The round completed; [`Server::output`] has the result.
    Completed,
    /// The round aborted and revealed nothing.
    Aborted {
        /// Why.
        reason: AbortReason,
    },
}

/// The result of a completed round.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundOutput {
    /// Σ x_u mod 2^b over the included clients: m elements, for b ≤ 32 (empty above: see
    /// `sum_wide`).
    pub sum: Vec<u32>,
    /// The same for b > 32, whose elements are 64 bits: m elements (empty for b ≤ 32).
    pub sum_wide: Vec<u64>,
    /// Σ w_u over the included clients (the aggregated weight element).
    pub total_weight: u64,
    /// The clients whose inputs are in the sum, sorted.
    pub included: Vec<ClientId>,
    /// Every client that did not finish, sorted by id.
    pub dropped: Vec<DroppedClient>,
    /// The modulus of the sum.
    pub modulus: Modulus,
    /// Masks the server removed in its one unmasking pass (self masks of the included
    /// clients plus pairwise masks between dropped clients and their surviving neighbours).
    pub mask_terms: usize,
}

impl RoundOutput {
    /// Keystream bytes the unmasking pass expanded: terms × (m + 1) × 4.
    pub fn keystream_bytes(&self) -> u64 {
        let m = self.sum.len().max(self.sum_wide.len()) as u64;
        self.mask_terms as u64 * (m + 1) * 4 * self.modulus.words_per_element() as u64
    }
}

impl RoundOutput {
    /// The `f32` weighted sum Σ w_u x_u, dequantized (in a DP round: decoded, with the
    /// clients' noise in it; see [`crate::dp`]).
    pub fn dequantized_sum(&self, config: &RoundConfig) -> Vec<f32> {
        if self.modulus.lane_kind() != secagg_engine::LaneKind::U32 {
            return quantize::decode_sum_wide(self.sum_wide.clone(), self.total_weight, config);
        }
        quantize::decode_sum_owned(self.sum.clone(), self.total_weight, config)
    }

    /// The weighted mean Σ w_u x_u / Σ w_u (the plain mean when every weight is 1).
    pub fn weighted_mean(&self, config: &RoundConfig) -> Vec<f32> {
        let w = self.total_weight.max(1) as f64;
        self.dequantized_sum(config)
            .into_iter()
            .map(|s| (f64::from(s) / w) as f32)
            .collect()
    }
}

/// The stage a round is in, as the outside sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerStatus {
    /// Waiting for the messages of this stage.
    Running(Stage),
    /// Done; the output is ready.
    Completed,
    /// Aborted.
    Aborted(AbortReason),
}

/// Builds one recipient's message of a stage whose messages differ per client (each opens the
/// round's lists around its recipient); `None` sends nothing to that recipient.
type Build = dyn Fn(ClientId) -> Option<ServerMessage> + Send + Sync;

/// What is waiting to be sent: a message, or a stage's per-client messages, built one at a
/// time as they are polled, so that the server never holds all n of them at once.
enum Queued {
    One(ClientId, Envelope<ServerMessage>),
    Each {
        round: u64,
        to: VecDeque<ClientId>,
        build: Arc<Build>,
    },
}

/// Everything a state may touch besides itself.
struct Ctx<'a, E> {
    config: &'a RoundConfig,
    round: &'a RoundDigest,
    /// The deployment CA, when clients must be enrolled.
    ca: Option<&'a CaPublicKey>,
    engine: &'a E,
    now: Duration,
    outbox: &'a mut VecDeque<Queued>,
    events: &'a mut VecDeque<ServerEvent>,
    dropped: &'a mut Vec<DroppedClient>,
    /// Clients that left (and why); later stages drop them at once with that reason.
    gone: &'a mut HashMap<ClientId, DropReason>,
}

impl<E> Ctx<'_, E> {
    fn send(&mut self, to: ClientId, message: ServerMessage) {
        self.outbox.push_back(Queued::One(
            to,
            Envelope {
                round: self.config.round_id(),
                message,
            },
        ));
    }

    /// Sends each of `to` (but those gone) the message `build` makes for it, built when it is
    /// polled.
    fn send_each(
        &mut self,
        to: impl IntoIterator<Item = ClientId>,
        build: impl Fn(ClientId) -> Option<ServerMessage> + Send + Sync + 'static,
    ) {
        let to: VecDeque<ClientId> = to
            .into_iter()
            .filter(|c| !self.gone.contains_key(c))
            .collect();
        self.outbox.push_back(Queued::Each {
            round: self.config.round_id(),
            to,
            build: Arc::new(build),
        });
    }

    fn drop_client(&mut self, client: ClientId, stage: Stage, reason: DropReason) {
        log::info!("dropping client {client} at {stage}: {reason}");
        let d = DroppedClient {
            client,
            stage,
            reason,
        };
        self.events.push_back(ServerEvent::ClientDropped(d.clone()));
        self.gone.insert(client, d.reason.clone());
        self.dropped.push(d);
    }

    fn reject(&mut self, client: ClientId, reason: ProtocolError) {
        log::debug!("rejected a message from {client}: {reason}");
        self.events
            .push_back(ServerEvent::MessageRejected { client, reason });
    }

    fn deadline(&self) -> Duration {
        self.now + self.config.stage_timeout()
    }

    /// Ends `stage` with `have` clients: below the configured minimum the round aborts
    /// (telling `notify`) and its reason comes back as `Err`; otherwise the stage is reported
    /// complete.
    fn close_stage(
        &mut self,
        stage: Stage,
        have: usize,
        notify: impl IntoIterator<Item = ClientId>,
    ) -> Result<(), AbortReason> {
        let need = self.config.min_survivors();
        if have < need {
            let reason = AbortReason::TooFewClients { stage, have, need };
            self.abort::<()>(reason.clone(), notify);
            return Err(reason);
        }
        self.events.push_back(ServerEvent::StageCompleted {
            stage,
            clients: have,
        });
        Ok(())
    }

    /// Ends the round without revealing anything.
    fn abort<A>(
        &mut self,
        reason: AbortReason,
        notify: impl IntoIterator<Item = ClientId>,
    ) -> State<A> {
        log::warn!("round {} aborted: {reason}", self.config.round_id());
        let told = reason.to_string();
        for c in notify {
            if !self.gone.contains_key(&c) {
                self.send(c, ServerMessage::Aborted(told.clone()));
            }
        }
        self.events.push_back(ServerEvent::Aborted {
            reason: reason.clone(),
        });
        State::Aborted(reason)
    }
}

/// Who is expected to answer in the current stage, and who has.
#[derive(Clone, Debug, Default)]
struct Roll {
    expected: BTreeSet<ClientId>,
    answered: BTreeSet<ClientId>,
}

impl Roll {
    /// A roll of `clients`, minus those already gone (dropped at `stage` at once).
    fn start<E>(
        ctx: &mut Ctx<'_, E>,
        stage: Stage,
        clients: impl IntoIterator<Item = ClientId>,
    ) -> Self {
        let mut expected = BTreeSet::new();
        for c in clients {
            if let Some(reason) = ctx.gone.get(&c).cloned() {
                ctx.drop_client(c, stage, reason);
            } else {
                expected.insert(c);
            }
        }
        Self {
            expected,
            answered: BTreeSet::new(),
        }
    }

    fn is_pending(&self, c: ClientId) -> bool {
        self.expected.contains(&c) && !self.answered.contains(&c)
    }

    fn pending(&self) -> usize {
        self.expected.difference(&self.answered).count()
    }

    fn is_done(&self) -> bool {
        self.answered.len() == self.expected.len()
    }

    /// Removes a pending client; true if it was pending.
    fn remove(&mut self, c: ClientId) -> bool {
        self.is_pending(c) && self.expected.remove(&c)
    }

    /// `c` left with `reason`: dropped at `stage` if it had not answered yet; otherwise it
    /// completed this stage and the next stage's roll drops it, with this reason.
    fn leave<E>(&mut self, ctx: &mut Ctx<'_, E>, c: ClientId, stage: Stage, reason: DropReason) {
        if self.remove(c) {
            ctx.drop_client(c, stage, reason);
        } else {
            ctx.gone.entry(c).or_insert(reason);
        }
    }

    /// Drops every client that has not answered (the deadline passed).
    fn expire<E>(&mut self, ctx: &mut Ctx<'_, E>, stage: Stage) {
        let late: Vec<ClientId> = self.expected.difference(&self.answered).copied().collect();
        for c in late {
            self.expected.remove(&c);
            ctx.drop_client(c, stage, DropReason::Timeout);
        }
    }
}

/// The server's states: each waits for one kind of message.
enum State<A> {
    Joins(ExpectJoins),
    Keys(ExpectKeys),
    Shares(Box<ExpectShares>),
    Checks(Box<ExpectShareChecks>),
    Masked(Box<ExpectMaskedInputs<A>>),
    Signatures(Box<ExpectSignatures<A>>),
    Unmask(Box<ExpectUnmaskShares<A>>),
    /// The output, until [`Server::take_output`] takes it.
    Completed(Option<Box<RoundOutput>>),
    Aborted(AbortReason),
}

/// What can happen to a state.
#[allow(clippy::large_enum_variant)] // as ClientMessage: boxing would only add an allocation
enum Input {
    Message(ClientId, ClientMessage),
    Gone(ClientId, DropReason),
    /// The transport admitted a client (it will be expected to advertise keys).
    Joined(ClientId),
    Deadline,
}

impl<A: Send + Sync> State<A> {
    fn stage(&self) -> Option<Stage> {
        match self {
            State::Joins(_) => Some(Stage::Join),
            State::Keys(_) => Some(Stage::AdvertiseKeys),
            State::Shares(_) => Some(Stage::ShareKeys),
            State::Checks(_) => Some(Stage::ShareCheck),
            State::Masked(_) => Some(Stage::MaskedInput),
            State::Signatures(_) => Some(Stage::Consistency),
            State::Unmask(_) => Some(Stage::Unmasking),
            _ => None,
        }
    }

    fn deadline(&self) -> Option<Duration> {
        match self {
            State::Joins(s) => Some(s.deadline),
            State::Keys(s) => Some(s.deadline),
            State::Shares(s) => Some(s.deadline),
            State::Checks(s) => Some(s.deadline),
            State::Masked(s) => Some(s.deadline),
            State::Signatures(s) => Some(s.deadline),
            State::Unmask(s) => Some(s.deadline),
            _ => None,
        }
    }

    fn handle<E: Accumulate<Accumulator = A>>(
        self,
        ctx: &mut Ctx<'_, E>,
        input: Input,
    ) -> State<A> {
        match self {
            State::Joins(s) => s.handle(ctx, input),
            State::Keys(s) => collect::collect(s, ctx, input),
            State::Shares(s) => collect::collect(*s, ctx, input),
            State::Checks(s) => collect::collect(*s, ctx, input),
            State::Masked(s) => collect::collect(*s, ctx, input),
            State::Signatures(s) => collect::collect(*s, ctx, input),
            State::Unmask(s) => collect::collect(*s, ctx, input),
            done @ (State::Completed(_) | State::Aborted(_)) => {
                if let Input::Message(from, m) = input {
                    ctx.reject(
                        from,
                        ProtocolError::UnexpectedMessage {
                            got: m.name(),
                            want: "nothing (the round is over)",
                        },
                    );
                }
                done
            }
        }
    }
}

/// The server of one round.
pub struct Server<E: Accumulate> {
    config: RoundConfig,
    round: RoundDigest,
    ca: Option<CaPublicKey>,
    engine: E,
    state: Option<State<E::Accumulator>>,
    outbox: VecDeque<Queued>,
    events: VecDeque<ServerEvent>,
    dropped: Vec<DroppedClient>,
    gone: HashMap<ClientId, DropReason>,
}

impl<E: Accumulate> Server<E> {
    /// A server for a round whose clients need no enrollment (identity keys are taken as the
    /// clients assert them: enough against nothing but an honest-but-curious server). The
    /// first stage's deadline runs from `now`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use secagg_engine::CpuEngine;
    /// use secagg_host::{ClientId, RoundConfig, Server, ServerEvent, ServerStatus, Stage};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = RoundConfig::builder(5, 1000).build()?;
    /// let t0 = Duration::ZERO;
    /// let mut server = Server::new(config, CpuEngine::new(), t0);
    /// assert_eq!(server.status(), ServerStatus::Running(Stage::Join));
    /// // Nobody joins: when the stage's deadline (30 s by default) passes, the round aborts
    /// // with fewer clients than it needs, having revealed nothing.
    /// server.handle_join(ClientId(0), t0);
    /// let deadline = server.poll_timeout().ok_or("no deadline")?;
    /// server.handle_timeout(deadline);
    /// assert!(matches!(server.status(), ServerStatus::Aborted(_)));
    /// assert!(std::iter::from_fn(|| server.poll_event())
    ///     .any(|e| matches!(e, ServerEvent::Aborted { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(config: RoundConfig, engine: E, now: Duration) -> Self {
        Self::build(config, None, engine, now)
    }

    /// A server that admits only clients enrolled by the deployment CA `ca`: every
    /// advertisement must carry a certificate for its sender's id, and every signature must
    /// verify, or its sender is dropped.
    pub fn enrolled(config: RoundConfig, ca: CaPublicKey, engine: E, now: Duration) -> Self {
        Self::build(config, Some(ca), engine, now)
    }

    fn build(config: RoundConfig, ca: Option<CaPublicKey>, engine: E, now: Duration) -> Self {
        let state = State::Joins(ExpectJoins::new(now + config.stage_timeout()));
        Self {
            round: RoundDigest::of(&config),
            ca,
            config,
            engine,
            state: Some(state),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            dropped: Vec::new(),
            gone: HashMap::new(),
        }
    }

    /// The round configuration.
    pub fn config(&self) -> &RoundConfig {
        &self.config
    }

    /// The engine.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    fn step(&mut self, now: Duration, input: Input) {
        let Some(state) = self.state.take() else {
            return;
        };
        let mut ctx = Ctx {
            config: &self.config,
            round: &self.round,
            ca: self.ca.as_ref(),
            engine: &self.engine,
            now,
            outbox: &mut self.outbox,
            events: &mut self.events,
            dropped: &mut self.dropped,
            gone: &mut self.gone,
        };
        self.state = Some(state.handle(&mut ctx, input));
    }

    /// A message from `from`. Messages for another round, or that the current stage does not
    /// expect, drop their sender (or are rejected when the sender already completed the
    /// stage); nothing a client sends can make this panic.
    pub fn handle_message(
        &mut self,
        from: ClientId,
        envelope: Envelope<ClientMessage>,
        now: Duration,
    ) {
        if envelope.round != self.config.round_id() {
            let reason = ProtocolError::WrongRound {
                got: envelope.round,
                want: self.config.round_id(),
            };
            self.misbehaved(from, reason, now);
            return;
        }
        self.step(now, Input::Message(from, envelope.message));
        self.maybe_expire(now);
    }

    /// A client that sent something undecodable or otherwise unacceptable before its message
    /// could be handed over (the transport calls this): it is dropped from the round.
    pub fn misbehaved(&mut self, from: ClientId, reason: ProtocolError, now: Duration) {
        self.step(now, Input::Gone(from, DropReason::Misbehaved(reason)));
    }

    /// The transport admitted `client` to the round: if it never joins, it is listed as having
    /// missed that stage when the deadline passes.
    pub fn handle_join(&mut self, client: ClientId, now: Duration) {
        self.step(now, Input::Joined(client));
    }

    /// A client's connection closed.
    pub fn handle_disconnect(&mut self, client: ClientId, now: Duration) {
        self.step(now, Input::Gone(client, DropReason::Disconnected));
    }

    /// Call when [`poll_timeout`](Server::poll_timeout) passes (calling early does nothing).
    pub fn handle_timeout(&mut self, now: Duration) {
        self.maybe_expire(now);
    }

    fn maybe_expire(&mut self, now: Duration) {
        while let Some(deadline) = self.state.as_ref().and_then(State::deadline) {
            if now < deadline {
                break;
            }
            let before = self.status();
            self.step(now, Input::Deadline);
            if self.status() == before {
                break;
            }
        }
    }

    /// The next message to send, with its recipient.
    pub fn poll_transmit(&mut self) -> Option<(ClientId, Envelope<ServerMessage>)> {
        loop {
            match self.outbox.front_mut()? {
                Queued::One(..) => {
                    if let Some(Queued::One(to, env)) = self.outbox.pop_front() {
                        return Some((to, env));
                    }
                }
                Queued::Each { round, to, build } => {
                    let round = *round;
                    let Some(c) = to.pop_front() else {
                        self.outbox.pop_front();
                        continue;
                    };
                    if let Some(message) = build(c) {
                        return Some((c, Envelope { round, message }));
                    }
                }
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When the current stage's deadline passes, if a stage is running.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.state.as_ref().and_then(State::deadline)
    }

    /// Where the round stands.
    pub fn status(&self) -> ServerStatus {
        match &self.state {
            Some(State::Completed(_)) => ServerStatus::Completed,
            Some(State::Aborted(r)) => ServerStatus::Aborted(r.clone()),
            Some(s) => ServerStatus::Running(s.stage().unwrap_or(Stage::Join)),
            None => ServerStatus::Aborted(AbortReason::StateLost("no state")),
        }
    }

    /// The result, once the round completed.
    pub fn output(&self) -> Option<&RoundOutput> {
        match &self.state {
            Some(State::Completed(out)) => out.as_deref(),
            _ => None,
        }
    }

    /// Takes the result of a completed round without copying it (a large model's sum is
    /// gigabytes); afterwards [`output`](Server::output) is `None` and the status stays
    /// [`ServerStatus::Completed`].
    pub fn take_output(&mut self) -> Option<RoundOutput> {
        match &mut self.state {
            Some(State::Completed(out)) => out.take().map(|b| *b),
            _ => None,
        }
    }

    /// Every client dropped so far.
    pub fn dropped(&self) -> &[DroppedClient] {
        &self.dropped
    }

    /// Whether the round is collecting masked inputs and `client`'s has not arrived yet: the
    /// transport stages an upload only for such a client.
    pub fn awaits_masked_input(&self, client: ClientId) -> bool {
        matches!(&self.state, Some(State::Masked(s)) if s.awaits(client))
    }

    /// How many masked inputs the round still awaits (0 outside the masked-input stage): a
    /// transport shares the stage's remaining time fairly among them.
    pub fn masked_inputs_awaited(&self) -> usize {
        match &self.state {
            Some(State::Masked(s)) => s.awaited(),
            _ => 0,
        }
    }
}

/// A pending client sent some other message than the stage's. A message of an earlier
/// stage is a replay of something it already did: refused, the client stays. Anything else
/// (a later stage's message) breaks the protocol: the client is dropped.
fn out_of_turn<E>(
    ctx: &mut Ctx<'_, E>,
    roll: &mut Roll,
    from: ClientId,
    msg: &ClientMessage,
    stage: Stage,
) {
    if msg.stage() < stage {
        ctx.reject(from, ProtocolError::Duplicate(msg.name()));
    } else if roll.remove(from) {
        let reason = ProtocolError::UnexpectedMessage {
            got: msg.name(),
            want: stage.name(),
        };
        ctx.drop_client(from, stage, DropReason::Misbehaved(reason));
    }
}

/// Why a message from a client that is not expected now is refused.
fn late_or_unknown(roll: &Roll, from: ClientId, msg: &ClientMessage) -> ProtocolError {
    if roll.answered.contains(&from) {
        ProtocolError::Duplicate(msg.name())
    } else {
        ProtocolError::UnknownClient(from)
    }
}

/// Checks a masked vector: m + 1 elements, each below 2^b, at b ≤ 32 (above, a masked input
/// arrives packed, as [`ClientMessage::PackedInput`](crate::messages::ClientMessage)).
fn check_vector(values: &[u32], config: &RoundConfig) -> Result<(), ProtocolError> {
    if config.modulus().lane_kind() != secagg_engine::LaneKind::U32 {
        return Err(ProtocolError::UnexpectedMessage {
            got: "masked input of 32-bit elements",
            want: "a packed masked input (b > 32)",
        });
    }
    if values.len() != config.vector_len() {
        return Err(ProtocolError::WrongLength {
            got: values.len(),
            want: config.vector_len(),
        });
    }
    let mask = config.modulus().mask_u32();
    if let Some(index) = values.iter().position(|v| v & !mask != 0) {
        return Err(ProtocolError::OutOfRange {
            index,
            value: values[index],
            bits: config.modulus().bits(),
        });
    }
    Ok(())
}
