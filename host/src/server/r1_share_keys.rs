//! Round 1 on the server: route each client's sealed share bundles to its neighbours.
//!
//! The server only checks the envelope — one bundle per neighbour, of the right size — and
//! keeps the self-mask commitments for checking what it rebuilds later. It cannot open the
//! bundles. U2 is the set of clients whose bundles arrived.

use std::collections::HashMap;
use std::time::Duration;

use secagg_engine::Backend;

use super::r2_masked_input::ExpectMaskedInputs;
use super::{Ctx, DropReason, Input, Roll, State, out_of_turn};
use crate::crypto::{BUNDLE_LEN, PublicKeys, SessionId};
use crate::error::ProtocolError;
use crate::graph::NeighborGraph;
use crate::messages::{ClientMessage, SealedBundle, ServerMessage};
use crate::{ClientId, Stage};

/// What every later stage needs from the first two.
pub(super) struct Session {
    pub(super) id: SessionId,
    pub(super) keys: HashMap<ClientId, PublicKeys>,
    pub(super) graph: NeighborGraph,
}

/// Waiting for share bundles.
pub(super) struct ExpectShares {
    pub(super) deadline: Duration,
    session: Session,
    roll: Roll,
    commitments: HashMap<ClientId, [u8; 32]>,
    /// Bundles by recipient; each bundle's `peer` is its sender.
    inbox: HashMap<ClientId, Vec<SealedBundle>>,
}

impl ExpectShares {
    pub(super) fn start<E: Backend>(
        ctx: &mut Ctx<'_, E>,
        id: SessionId,
        keys: HashMap<ClientId, PublicKeys>,
        graph: NeighborGraph,
        roll: Roll,
    ) -> State {
        let s = Self {
            deadline: ctx.deadline(),
            session: Session { id, keys, graph },
            roll,
            commitments: HashMap::new(),
            inbox: HashMap::new(),
        };
        s.check_done(ctx)
    }

    pub(super) fn handle<E: Backend>(mut self, ctx: &mut Ctx<'_, E>, input: Input) -> State {
        match input {
            Input::Message(from, msg) if self.roll.is_pending(from) => match msg {
                ClientMessage::ShareKeys {
                    self_mask_commitment,
                    bundles,
                } => match self.check_bundles(from, &bundles) {
                    Ok(()) => {
                        self.roll.answered.insert(from);
                        self.commitments.insert(from, self_mask_commitment);
                        for b in bundles {
                            self.inbox.entry(b.peer).or_default().push(SealedBundle {
                                peer: from,
                                ciphertext: b.ciphertext,
                            });
                        }
                    }
                    Err(e) => {
                        self.roll
                            .leave(ctx, from, Stage::ShareKeys, DropReason::Misbehaved(e))
                    }
                },
                other => out_of_turn(ctx, &mut self.roll, from, &other, Stage::ShareKeys),
            },
            Input::Message(from, msg) => ctx.reject(from, late_or_unknown(&self.roll, from, &msg)),
            Input::Gone(c, reason) => self.roll.leave(ctx, c, Stage::ShareKeys, reason),
            Input::Joined(_) => {}
            Input::Deadline => {
                self.roll.expire(ctx, Stage::ShareKeys);
                return self.finish(ctx);
            }
        }
        self.check_done(ctx)
    }

    /// One bundle for each neighbour, each of the sealed size.
    fn check_bundles(&self, from: ClientId, bundles: &[SealedBundle]) -> Result<(), ProtocolError> {
        let neighbors = self.session.graph.neighbors(from);
        let mut recipients: Vec<ClientId> = bundles.iter().map(|b| b.peer).collect();
        recipients.sort_unstable();
        if recipients != neighbors {
            let extra: Vec<String> = recipients
                .iter()
                .filter(|r| neighbors.binary_search(r).is_err())
                .map(|r| r.to_string())
                .collect();
            let dup = recipients.windows(2).any(|w| w[0] == w[1]);
            return Err(ProtocolError::Recipients(format!(
                "{} bundles for {} neighbours{}{}",
                bundles.len(),
                neighbors.len(),
                if extra.is_empty() {
                    String::new()
                } else {
                    format!(", non-neighbours {}", extra.join(","))
                },
                if dup { ", duplicates" } else { "" }
            )));
        }
        if let Some(b) = bundles.iter().find(|b| b.ciphertext.len() != BUNDLE_LEN) {
            return Err(ProtocolError::Recipients(format!(
                "bundle for {} has {} bytes, expected {BUNDLE_LEN}",
                b.peer,
                b.ciphertext.len()
            )));
        }
        Ok(())
    }

    fn check_done<E: Backend>(self, ctx: &mut Ctx<'_, E>) -> State {
        if self.roll.is_done() {
            self.finish(ctx)
        } else {
            State::Shares(self)
        }
    }

    fn finish<E: Backend>(mut self, ctx: &mut Ctx<'_, E>) -> State {
        let u2: Vec<ClientId> = self.roll.answered.iter().copied().collect();
        let notify = self.session.keys.keys().copied();
        if let Err(reason) = ctx.close_stage(Stage::ShareKeys, u2.len(), notify) {
            return State::Aborted(reason);
        }
        for &u in &u2 {
            // Every stored bundle came from a client that answered, so all senders are in U2.
            let mut bundles = self.inbox.remove(&u).unwrap_or_default();
            bundles.sort_by_key(|b| b.peer);
            ctx.send(u, ServerMessage::ShareBundles(bundles));
        }
        let roll = Roll::start(ctx, Stage::MaskedInput, u2.iter().copied());
        ExpectMaskedInputs::start(ctx, self.session, self.commitments, u2, roll)
    }
}

/// Why a message from a client that is not expected now is refused.
pub(super) fn late_or_unknown(roll: &Roll, from: ClientId, msg: &ClientMessage) -> ProtocolError {
    if roll.answered.contains(&from) {
        ProtocolError::Duplicate(msg.name())
    } else {
        ProtocolError::UnknownClient(from)
    }
}
