//! Stage 4 on the server: add each masked input into the accumulator as it arrives.
//!
//! One accumulator of m + 1 elements, whatever n is: a masked vector is checked (length,
//! every element below 2^b), added mod 2^b by the engine, and forgotten. U3 is the set of
//! clients whose masked input arrived; their inputs are in the sum. The server commits to U3
//! by ring position ([`RingSet`]) and opens it to each survivor around its neighbourhood.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use secagg_engine::Accumulate;

use super::collect::{Collect, Taken, settle};
use super::membership::Membership;
use super::r5_consistency::ExpectSignatures;
use super::{Ctx, Roll, State, check_vector};
use crate::commit::RingSet;
use crate::error::AbortReason;
use crate::messages::{ClientMessage, ServerMessage};
use crate::view::label;
use crate::{ClientId, Stage};

/// A packed masked vector has the round's width and length (the codec built its runs
/// contiguous, each of the right byte length, with zero padding).
fn check_packed(
    packed: &crate::messages::PackedVector,
    config: &crate::RoundConfig,
) -> Result<(), crate::error::ProtocolError> {
    let want = config.vector_len();
    let bits = config.modulus().bits();
    if packed.len() != want || packed.bits() != bits {
        return Err(crate::error::ProtocolError::Codec(
            crate::error::CodecError::Invalid {
                field: "masked input",
                why: format!(
                    "{} elements at {} bits, the round uses {want} at {bits}",
                    packed.len(),
                    packed.bits()
                ),
            },
        ));
    }
    Ok(())
}

/// A piece of a streamed masked input continues its sender's upload at `at`, stays inside
/// the vector, and is packed at the round's width with zero padding.
fn check_piece(
    run: &crate::messages::PackedRun,
    at: usize,
    config: &crate::RoundConfig,
) -> Result<(), crate::error::ProtocolError> {
    let bits = config.modulus().bits();
    let len = config.vector_len();
    let invalid = |why: String| {
        crate::error::ProtocolError::Codec(crate::error::CodecError::Invalid {
            field: "masked-input piece",
            why,
        })
    };
    if run.offset != at || run.count == 0 || run.count > len - at {
        return Err(invalid(format!(
            "{} elements at {}, the upload continues at {at} of {len}",
            run.count, run.offset
        )));
    }
    if run.bytes.len() != crate::codec::packed_len(run.count, bits) {
        return Err(invalid(format!(
            "{} bytes for {} elements at {bits} bits",
            run.bytes.len(),
            run.count
        )));
    }
    crate::codec::check_padding(&run.bytes, run.count, bits)?;
    Ok(())
}

/// Waiting for masked inputs.
pub(super) struct ExpectMaskedInputs<A> {
    pub(super) deadline: Duration,
    membership: Membership,
    roll: Roll,
    acc: A,
    /// Elements in the vector.
    len: usize,
    /// Clients part-way through a streamed input, and the element each continues at.
    streaming: HashMap<ClientId, usize>,
}

impl<A: Send + Sync> ExpectMaskedInputs<A> {
    pub(super) fn start<E: Accumulate<Accumulator = A>>(
        ctx: &mut Ctx<'_, E>,
        membership: Membership,
        roll: Roll,
    ) -> State<E::Accumulator> {
        // One accumulator for the round, where the engine computes (device memory on a GPU).
        let acc = match ctx
            .engine
            .accumulator(ctx.config.vector_len(), ctx.config.modulus())
        {
            Ok(acc) => acc,
            Err(e) => {
                let notify: Vec<ClientId> = membership.session.keys.keys().copied().collect();
                return ctx.abort(AbortReason::Engine(e.to_string()), notify);
            }
        };
        let s = Self {
            deadline: ctx.deadline(),
            membership,
            roll,
            acc,
            len: ctx.config.vector_len(),
            streaming: HashMap::new(),
        };
        settle(s, ctx)
    }

    /// Whether `client`'s masked input is still expected.
    pub(super) fn awaits(&self, client: ClientId) -> bool {
        self.roll.is_pending(client)
    }

    /// Masked inputs still to come.
    pub(super) fn awaited(&self) -> usize {
        self.roll.pending()
    }

    /// Why the round cannot go on, when a client left part-way through a streamed input:
    /// its pieces are in the sum, and nothing can take them out again.
    fn partial_input(&self) -> Option<AbortReason> {
        let (c, at) = self
            .streaming
            .iter()
            .find(|(c, _)| !self.roll.is_pending(**c))?;
        Some(AbortReason::PartialInput {
            client: *c,
            added: *at,
            len: self.len,
        })
    }

    /// Checks a masked input or a piece of one (`Err`: its sender broke the protocol) and
    /// adds it into the accumulator (the inner `Err`: the engine failed; `Ok(true)`: the
    /// input is complete).
    fn add<E: Accumulate<Accumulator = A>>(
        &mut self,
        ctx: &Ctx<'_, E>,
        from: ClientId,
        msg: &ClientMessage,
    ) -> Result<Result<bool, secagg_engine::EngineError>, crate::error::ProtocolError> {
        let next = self.streaming.get(&from).copied();
        match msg {
            ClientMessage::MaskedChunk(run) => {
                let at = next.unwrap_or(0);
                check_piece(run, at, ctx.config)?;
                if let Err(e) =
                    ctx.engine
                        .add_packed(&mut self.acc, run.offset, &run.bytes, run.count)
                {
                    return Ok(Err(e));
                }
                let end = run.offset + run.count;
                if end == ctx.config.vector_len() {
                    self.streaming.remove(&from);
                    Ok(Ok(true))
                } else {
                    self.streaming.insert(from, end);
                    Ok(Ok(false))
                }
            }
            _ if next.is_some() => Err(crate::error::ProtocolError::UnexpectedMessage {
                got: msg.name(),
                want: "masked-input piece",
            }),
            ClientMessage::PackedInput(packed) => {
                check_packed(packed, ctx.config)?;
                // All runs at once: an engine may batch them (a GPU stages several chunks per
                // dispatch).
                let runs: Vec<(usize, &[u8], usize)> = packed
                    .runs()
                    .iter()
                    .map(|r| (r.offset, r.bytes.as_slice(), r.count))
                    .collect();
                Ok(ctx
                    .engine
                    .add_packed_runs(&mut self.acc, &runs)
                    .map(|()| true))
            }
            ClientMessage::MaskedInput(values) => {
                check_vector(values, ctx.config)?;
                Ok(ctx
                    .engine
                    .add_words(&mut self.acc, 0, values)
                    .map(|()| true))
            }
            other => Err(crate::error::ProtocolError::UnexpectedMessage {
                got: other.name(),
                want: "masked-input",
            }),
        }
    }

    /// Every member of the round (whom an abort notifies).
    fn members(&self) -> Vec<ClientId> {
        self.membership.session.keys.keys().copied().collect()
    }

    fn close<E: Accumulate<Accumulator = A>>(self, ctx: &mut Ctx<'_, E>) -> State<E::Accumulator> {
        let u3: Vec<ClientId> = self.roll.answered.iter().copied().collect();
        if let Err(reason) = ctx.close_stage(Stage::MaskedInput, u3.len(), self.members()) {
            return State::Aborted(reason);
        }
        let session = &self.membership.session;
        let indices: Vec<u32> = u3.iter().filter_map(|u| session.index_of(*u)).collect();
        let set = match RingSet::new(label::SURVIVORS, session.ring(), indices) {
            Ok(s) => Arc::new(s),
            Err(_) => {
                let reason = AbortReason::StateLost("the survivor set does not fit a Merkle tree");
                return ctx.abort(reason, self.members());
            }
        };
        let (shared, roster) = (set.clone(), session.roster.clone());
        ctx.send_each(u3.iter().copied(), move |u| {
            let index = roster.cohort().index_of(u)?;
            Some(ServerMessage::SurvivorList {
                survivors: shared.commitment(),
                opening: shared.around(&roster.view().ring, index, &[]),
            })
        });
        let roll = Roll::start(ctx, Stage::Consistency, u3.iter().copied());
        ExpectSignatures::start(ctx, self.membership, &u3, set, roll, self.acc)
    }
}

impl<A: Send + Sync> Collect<A> for ExpectMaskedInputs<A> {
    const STAGE: Stage = Stage::MaskedInput;

    fn roll(&mut self) -> &mut Roll {
        &mut self.roll
    }

    fn take<E: Accumulate<Accumulator = A>>(
        &mut self,
        ctx: &mut Ctx<'_, E>,
        from: ClientId,
        msg: ClientMessage,
    ) -> Result<Taken, ClientMessage> {
        if !matches!(
            msg,
            ClientMessage::PackedInput(_)
                | ClientMessage::MaskedInput(_)
                | ClientMessage::MaskedChunk(_)
        ) {
            return Err(msg);
        }
        Ok(match self.add(ctx, from, &msg) {
            Err(e) => Taken::Misbehaved(e),
            // The engine failing is our problem, not the client's: nothing can be summed any
            // more, so the round ends here.
            Ok(Err(e)) => Taken::Abort(AbortReason::Engine(e.to_string()), self.members()),
            Ok(Ok(false)) => Taken::Partial,
            Ok(Ok(true)) => Taken::Answered,
        })
    }

    fn must_abort(&self) -> Option<(AbortReason, Vec<ClientId>)> {
        self.partial_input().map(|reason| (reason, self.members()))
    }

    fn finish<E: Accumulate<Accumulator = A>>(self, ctx: &mut Ctx<'_, E>) -> State<A> {
        self.close(ctx)
    }

    fn wait(self) -> State<A> {
        State::Masked(Box::new(self))
    }
}
