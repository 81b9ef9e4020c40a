//! The message-collection skeleton every stage from advertise-keys to unmasking shares: wait
//! for one message from each client on the stage's roll; a client's own message is the
//! stage's to judge ([`Collect::take`]); anything else out of turn, late, from a stranger, a
//! client gone or the deadline is handled the same way at every stage; the stage ends when
//! every client on the roll answered or the deadline passed.

use secagg_engine::Accumulate;

use super::{Ctx, DropReason, Input, Roll, State, late_or_unknown, out_of_turn};
use crate::error::{AbortReason, ProtocolError};
use crate::messages::ClientMessage;
use crate::{ClientId, Stage};

/// What a stage made of one client's message.
pub(super) enum Taken {
    /// The client answered the stage.
    Answered,
    /// A piece of its answer arrived; the rest is still owed.
    Partial,
    /// It broke the protocol: it leaves the round.
    Misbehaved(ProtocolError),
    /// The round cannot go on; tell these clients.
    Abort(AbortReason, Vec<ClientId>),
}

/// A stage that collects one message from each client on its roll.
pub(super) trait Collect<A>: Sized {
    /// The stage.
    const STAGE: Stage;

    /// Who it waits for, and who answered.
    fn roll(&mut self) -> &mut Roll;

    /// A message from `from`, a client the roll waits for; `Err` gives it back when it is
    /// not this stage's kind of message (it is then out of turn). The message goes back by
    /// value on that rare path only; boxing it would cost an allocation on every message.
    #[allow(clippy::result_large_err)]
    fn take<E: Accumulate<Accumulator = A>>(
        &mut self,
        ctx: &mut Ctx<'_, E>,
        from: ClientId,
        msg: ClientMessage,
    ) -> Result<Taken, ClientMessage>;

    /// A reason to end the round whatever else happens, looked at after every input (a
    /// streamed input left half-way through).
    fn must_abort(&self) -> Option<(AbortReason, Vec<ClientId>)> {
        None
    }

    /// The stage is over: fix its outcome and start the next.
    fn finish<E: Accumulate<Accumulator = A>>(self, ctx: &mut Ctx<'_, E>) -> State<A>;

    /// The stage goes on.
    fn wait(self) -> State<A>;
}

/// One input to a collecting stage.
pub(super) fn collect<A, E, S>(mut stage: S, ctx: &mut Ctx<'_, E>, input: Input) -> State<A>
where
    E: Accumulate<Accumulator = A>,
    S: Collect<A>,
{
    match input {
        Input::Message(from, msg) if stage.roll().is_pending(from) => {
            match stage.take(ctx, from, msg) {
                Ok(Taken::Answered) => {
                    stage.roll().answered.insert(from);
                }
                Ok(Taken::Partial) => {}
                Ok(Taken::Misbehaved(e)) => {
                    stage
                        .roll()
                        .leave(ctx, from, S::STAGE, DropReason::Misbehaved(e));
                }
                Ok(Taken::Abort(reason, notify)) => return ctx.abort(reason, notify),
                Err(other) => out_of_turn(ctx, stage.roll(), from, &other, S::STAGE),
            }
        }
        Input::Message(from, msg) => {
            let reason = late_or_unknown(stage.roll(), from, &msg);
            ctx.reject(from, reason);
        }
        Input::Gone(c, reason) => stage.roll().leave(ctx, c, S::STAGE, reason),
        Input::Joined(_) => {}
        Input::Deadline => {
            stage.roll().expire(ctx, S::STAGE);
            if let Some((reason, notify)) = stage.must_abort() {
                return ctx.abort(reason, notify);
            }
            return stage.finish(ctx);
        }
    }
    if let Some((reason, notify)) = stage.must_abort() {
        return ctx.abort(reason, notify);
    }
    settle(stage, ctx)
}

/// Finishes the stage if every client on its roll answered, else waits.
pub(super) fn settle<A, E, S>(mut stage: S, ctx: &mut Ctx<'_, E>) -> State<A>
where
    E: Accumulate<Accumulator = A>,
    S: Collect<A>,
{
    if stage.roll().is_done() {
        stage.finish(ctx)
    } else {
        stage.wait()
    }
}
