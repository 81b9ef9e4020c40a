//! The client side of a round, sans IO.
//!
//! [`Client::new`] draws the round's secrets and queues the advertised keys; feed each server
//! message to [`Client::handle_message`] and send what [`Client::poll_transmit`] returns.
//! Each state waits for one server message and lives in the file of the round it performs.
//! A server that misbehaves — a malformed list, an unsafe unmask request — moves the client to
//! [`ClientStatus::Aborted`]; the client never reveals both shares of one peer.

mod r0_advertise_keys;
mod r1_share_keys;
mod r2_masked_input;
mod r3_unmasking;

use std::collections::VecDeque;

use rand_core::CryptoRng;
use secagg_engine::Backend;
use zeroize::Zeroize;

use crate::config::RoundConfig;
use crate::error::ProtocolError;
use crate::messages::{ClientMessage, Envelope, ServerMessage};
use crate::quantize::{self, InputError};
use crate::{ClientId, Stage};

use r1_share_keys::ExpectKeyList;
use r2_masked_input::ExpectShareBundles;
use r3_unmasking::{ExpectResult, ExpectUnmaskRequest};

/// API misuse by the caller (as opposed to a misbehaving server, which aborts the round).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The input was refused.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The masked-input stage came before any input was set.
    #[error("no input was set before the masked-input stage")]
    MissingInput,
    /// The input can no longer change: it has been masked and sent.
    #[error("the input was already sent")]
    InputAlreadySent,
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

/// The client's quantized input: m levels times the weight, then the weight. Secret: zeroized
/// when dropped.
struct Input(Vec<u32>);

impl Drop for Input {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Everything a state may touch besides itself.
struct Ctx<'a, E, R> {
    id: ClientId,
    config: &'a RoundConfig,
    engine: &'a E,
    rng: &'a mut R,
    input: &'a mut Option<Input>,
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
    KeyList(ExpectKeyList),
    ShareBundles(ExpectShareBundles),
    UnmaskRequest(ExpectUnmaskRequest),
    Result(ExpectResult),
    Completed(u32),
    Aborted(ProtocolError),
}

/// A state transition that may also be API misuse.
type Next = Result<State, (ClientError, ProtocolError)>;

impl State {
    fn stage(&self) -> Stage {
        match self {
            State::KeyList(_) => Stage::ShareKeys,
            State::ShareBundles(_) => Stage::MaskedInput,
            State::UnmaskRequest(_) | State::Result(_) => Stage::Unmasking,
            _ => Stage::Unmasking,
        }
    }

    fn expects(&self) -> &'static str {
        match self {
            State::KeyList(_) => "key-list",
            State::ShareBundles(_) => "share-bundles",
            State::UnmaskRequest(_) => "unmask-request",
            State::Result(_) => "completed",
            State::Completed(_) | State::Aborted(_) => "nothing (the round is over)",
        }
    }
}

/// One client of one round.
pub struct Client<E, R> {
    id: ClientId,
    config: RoundConfig,
    engine: E,
    rng: R,
    input: Option<Input>,
    sent_input: bool,
    state: Option<State>,
    outbox: VecDeque<Envelope<ClientMessage>>,
}

impl<E: Backend, R: CryptoRng> Client<E, R> {
    /// A client that has drawn its secrets and queued its public keys. The input can be set
    /// now or at any time before the masked-input stage.
    pub fn new(id: ClientId, config: RoundConfig, engine: E, mut rng: R) -> Self {
        let mut outbox = VecDeque::new();
        let state = r0_advertise_keys::advertise(id, &config, &mut rng, &mut outbox);
        Self {
            id,
            config,
            engine,
            rng,
            input: None,
            sent_input: false,
            state: Some(State::KeyList(state)),
            outbox,
        }
    }

    /// This client's id.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// Sets the `f32` update and its integer weight (1 for a plain sum): clipped, quantized
    /// with stochastic rounding from this client's RNG, and multiplied by the weight.
    pub fn set_input(&mut self, update: &[f32], weight: u32) -> Result<(), ClientError> {
        if update.len() != self.config.params() {
            return Err(InputError::Length {
                got: update.len(),
                want: self.config.params(),
            }
            .into());
        }
        let mut levels = Vec::new();
        quantize::quantize_into(
            update,
            &self.config.quantization(),
            weight,
            &mut self.rng,
            &mut levels,
        )?;
        self.set_levels(levels)
    }

    /// Sets an already-quantized input: m values (each level × weight) followed by the weight.
    /// Values must be below 2^b; they are added mod 2^b.
    pub fn set_quantized_input(&mut self, values: Vec<u32>) -> Result<(), ClientError> {
        if values.len() != self.config.vector_len() {
            return Err(InputError::Length {
                got: values.len().saturating_sub(1),
                want: self.config.params(),
            }
            .into());
        }
        self.set_levels(values)
    }

    fn set_levels(&mut self, values: Vec<u32>) -> Result<(), ClientError> {
        if self.sent_input {
            return Err(ClientError::InputAlreadySent);
        }
        self.input = Some(Input(values));
        Ok(())
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
            id: self.id,
            config: &self.config,
            engine: &self.engine,
            rng: &mut self.rng,
            input: &mut self.input,
            outbox: &mut self.outbox,
        };
        let next = match (state, envelope.message) {
            (state, ServerMessage::Aborted(reason)) => Ok(abort_unless_over(
                state,
                ProtocolError::ServerAborted(reason),
            )),
            (State::KeyList(s), ServerMessage::KeyList(keys)) => Ok(s.handle(&mut ctx, &keys)),
            (State::ShareBundles(s), ServerMessage::ShareBundles(b)) => s.handle(&mut ctx, b),
            (State::UnmaskRequest(s), ServerMessage::UnmaskRequest(u3)) => {
                Ok(s.handle(&mut ctx, &u3))
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
                if matches!(s, State::UnmaskRequest(_)) {
                    self.sent_input = true;
                }
                self.state = Some(s);
                Ok(())
            }
            Err((misuse, reason)) => {
                self.state = Some(State::Aborted(reason));
                Err(misuse)
            }
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Envelope<ClientMessage>> {
        self.outbox.pop_front()
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

/// A finished round stays finished; anything else aborts with `reason`.
fn abort_unless_over(state: State, reason: ProtocolError) -> State {
    match state {
        done @ (State::Completed(_) | State::Aborted(_)) => done,
        _ => State::Aborted(reason),
    }
}
