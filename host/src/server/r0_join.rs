//! Stage 0 on the server: collect each client's commitment to its graph nonce.
//!
//! The stage ends when n clients have joined, or at the deadline with at least the minimum, or
//! as soon as every admitted client has joined when n were admitted and some of them were lost
//! (dropped or gone before joining): a client that fails at the door costs the others nothing
//! but its place, not a whole stage deadline.
//! The server then fixes the cohort — every member's id and commitment — and sends it to every
//! member. From here on the cohort only shrinks: a client outside it cannot advertise keys.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use secagg_engine::Accumulate;

use super::r1_advertise_keys::ExpectKeys;
use super::{Ctx, DropReason, Input, Roll, State};
use crate::error::ProtocolError;
use crate::messages::{ClientMessage, ServerMessage};
use crate::{ClientId, Stage};

/// Waiting for nonce commitments.
pub(super) struct ExpectJoins {
    pub(super) deadline: Duration,
    commitments: BTreeMap<ClientId, [u8; 32]>,
    /// Clients the transport admitted that have not joined yet.
    admitted: BTreeSet<ClientId>,
    /// Admitted clients lost before the cohort was fixed.
    lost: usize,
}

impl ExpectJoins {
    pub(super) fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            commitments: BTreeMap::new(),
            admitted: BTreeSet::new(),
            lost: 0,
        }
    }

    pub(super) fn handle<E: Accumulate>(
        mut self,
        ctx: &mut Ctx<'_, E>,
        input: Input,
    ) -> State<E::Accumulator> {
        match input {
            Input::Message(from, ClientMessage::Join { nonce_commitment }) => {
                if self.commitments.contains_key(&from) {
                    ctx.reject(from, ProtocolError::Duplicate("join"));
                } else if ctx.gone.contains_key(&from)
                    || self.commitments.len() >= ctx.config.clients()
                {
                    // Gone already, or the round is full: this client is not part of it.
                    ctx.reject(from, ProtocolError::UnknownClient(from));
                } else {
                    self.admitted.remove(&from);
                    self.commitments.insert(from, nonce_commitment);
                }
            }
            Input::Message(from, other) => {
                let reason = ProtocolError::UnexpectedMessage {
                    got: other.name(),
                    want: "join",
                };
                self.admitted.remove(&from);
                if self.commitments.remove(&from).is_some() || !ctx.gone.contains_key(&from) {
                    self.lost += 1;
                    ctx.drop_client(from, Stage::Join, DropReason::Misbehaved(reason));
                } else {
                    ctx.reject(from, reason);
                }
            }
            Input::Gone(c, reason) => {
                let was_admitted = self.admitted.remove(&c);
                if self.commitments.contains_key(&c) {
                    // It joined and then left: it is in the cohort and misses advertise keys,
                    // where the next stage's roll drops it at once, with this reason.
                    ctx.gone.insert(c, reason);
                } else if !ctx.gone.contains_key(&c) {
                    if was_admitted {
                        self.lost += 1;
                    }
                    ctx.drop_client(c, Stage::Join, reason);
                }
            }
            Input::Joined(c) => {
                if !self.commitments.contains_key(&c) && !ctx.gone.contains_key(&c) {
                    self.admitted.insert(c);
                }
            }
            Input::Deadline => {
                for c in std::mem::take(&mut self.admitted) {
                    ctx.drop_client(c, Stage::Join, DropReason::Timeout);
                }
                return self.finish(ctx);
            }
        }
        let n = ctx.config.clients();
        if self.commitments.len() == n
            || (self.lost > 0
                && self.admitted.is_empty()
                && self.commitments.len() + self.lost >= n)
        {
            return self.finish(ctx);
        }
        State::Joins(self)
    }

    fn finish<E: Accumulate>(self, ctx: &mut Ctx<'_, E>) -> State<E::Accumulator> {
        let members: Vec<ClientId> = self.commitments.keys().copied().collect();
        if let Err(reason) = ctx.close_stage(Stage::Join, members.len(), members.iter().copied()) {
            return State::Aborted(reason);
        }
        let cohort: Arc<[(ClientId, [u8; 32])]> = self.commitments.into_iter().collect();
        for id in &members {
            ctx.send(*id, ServerMessage::Cohort(cohort.clone()));
        }
        let roll = Roll::start(ctx, Stage::AdvertiseKeys, members);
        ExpectKeys::start(ctx, cohort, roll)
    }
}
