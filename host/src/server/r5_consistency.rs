//! Stage 5 on the server: collect each survivor's signature on the survivor list and relay to
//! every signer the signatures it needs to check.
//!
//! A signature that does not verify under its sender's identity key drops the sender (it can
//! no longer reveal shares; its own input stays in the sum and its self mask is rebuilt from
//! its holders). Each signer then receives the signatures of the holders of every secret it
//! will reveal a share of: the signers among its neighbours' neighbourhoods (everyone, on the
//! complete graph).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use secagg_engine::Backend;

use super::r4_masked_input::Membership;
use super::r6_unmasking::ExpectUnmaskShares;
use super::{Ctx, DropReason, Input, Roll, State, late_or_unknown, out_of_turn};
use crate::client::SURVIVORS_DOMAIN;
use crate::crypto::survivors_digest;
use crate::error::ProtocolError;
use crate::messages::{ClientMessage, ServerMessage};
use crate::{ClientId, Stage};

/// Waiting for signatures on the survivor list.
pub(super) struct ExpectSignatures {
    pub(super) deadline: Duration,
    membership: Membership,
    u3: Arc<[ClientId]>,
    digest: [u8; 32],
    roll: Roll,
    acc: Vec<u32>,
    signatures: BTreeMap<ClientId, [u8; 64]>,
}

impl ExpectSignatures {
    pub(super) fn start<E: Backend>(
        ctx: &mut Ctx<'_, E>,
        membership: Membership,
        u3: Arc<[ClientId]>,
        roll: Roll,
        acc: Vec<u32>,
    ) -> State {
        let s = Self {
            deadline: ctx.deadline(),
            digest: survivors_digest(&membership.session.id, &u3),
            membership,
            u3,
            roll,
            acc,
            signatures: BTreeMap::new(),
        };
        s.check_done(ctx)
    }

    pub(super) fn handle<E: Backend>(mut self, ctx: &mut Ctx<'_, E>, input: Input) -> State {
        match input {
            Input::Message(from, msg) if self.roll.is_pending(from) => match msg {
                ClientMessage::Consistency { signature } => match self.check(from, &signature) {
                    Ok(()) => {
                        self.roll.answered.insert(from);
                        self.signatures.insert(from, signature);
                    }
                    Err(e) => {
                        self.roll
                            .leave(ctx, from, Stage::Consistency, DropReason::Misbehaved(e))
                    }
                },
                other => out_of_turn(ctx, &mut self.roll, from, &other, Stage::Consistency),
            },
            Input::Message(from, msg) => ctx.reject(from, late_or_unknown(&self.roll, from, &msg)),
            Input::Gone(c, reason) => self.roll.leave(ctx, c, Stage::Consistency, reason),
            Input::Joined(_) => {}
            Input::Deadline => {
                self.roll.expire(ctx, Stage::Consistency);
                return self.finish(ctx);
            }
        }
        self.check_done(ctx)
    }

    fn check(&self, from: ClientId, signature: &[u8; 64]) -> Result<(), ProtocolError> {
        let key = self
            .membership
            .session
            .identities
            .get(&from)
            .ok_or(ProtocolError::UnknownClient(from))?;
        key.verify(SURVIVORS_DOMAIN, &self.digest, signature)?;
        Ok(())
    }

    fn check_done<E: Backend>(self, ctx: &mut Ctx<'_, E>) -> State {
        if self.roll.is_done() {
            self.finish(ctx)
        } else {
            State::Signatures(Box::new(self))
        }
    }

    /// The signers `u` needs: those among the holders of every secret it reveals a share of.
    fn relevant(&self, u: ClientId) -> Vec<(ClientId, [u8; 64])> {
        let graph = &self.membership.session.graph;
        if graph.degree() + 1 >= graph.len() {
            return self.signatures.iter().map(|(k, v)| (*k, *v)).collect();
        }
        let mut wanted = BTreeSet::new();
        for v in std::iter::once(u).chain(graph.neighbors(u)) {
            wanted.insert(v);
            wanted.extend(graph.neighbors(v));
        }
        wanted
            .into_iter()
            .filter_map(|s| self.signatures.get(&s).map(|sig| (s, *sig)))
            .collect()
    }

    fn finish<E: Backend>(self, ctx: &mut Ctx<'_, E>) -> State {
        let signers: Vec<ClientId> = self.roll.answered.iter().copied().collect();
        let live = signers.iter().filter(|c| !ctx.gone.contains_key(c)).count();
        let notify: Vec<ClientId> = self.membership.session.keys.keys().copied().collect();
        if let Err(reason) = ctx.close_stage(Stage::Consistency, live, notify) {
            return State::Aborted(reason);
        }
        for &u in &signers {
            if !ctx.gone.contains_key(&u) {
                ctx.send(
                    u,
                    ServerMessage::UnmaskRequest {
                        survivors: self.u3.clone(),
                        signatures: self.relevant(u),
                    },
                );
            }
        }
        let roll = Roll::start(ctx, Stage::Unmasking, signers);
        ExpectUnmaskShares::start(ctx, self.membership, &self.u3, roll, self.acc)
    }
}
