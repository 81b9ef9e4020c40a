//! Stage 5 on the server: collect each survivor's signature on the survivor list and relay to
//! every signer the signatures it needs to check.
//!
//! A signature that does not verify under its sender's identity key drops the sender (it can
//! no longer reveal shares; its own input stays in the sum and its self mask is rebuilt from
//! its holders). Each signer then receives the signatures of the holders of every secret it
//! will reveal a share of: the signers among its neighbours' neighbourhoods (everyone, on the
//! complete graph).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use secagg_engine::Accumulate;

use super::collect::{Collect, Taken, settle};
use super::membership::Membership;
use super::r6_unmasking::ExpectUnmaskShares;
use super::{Ctx, Roll, State};
use crate::crypto::SURVIVORS_DOMAIN;
use crate::crypto::survivors_digest;
use crate::error::ProtocolError;
use crate::messages::{ClientMessage, ServerMessage};
use crate::{ClientId, Stage};

/// Waiting for signatures on the survivor list.
pub(super) struct ExpectSignatures<A> {
    pub(super) deadline: Duration,
    membership: Membership,
    u3: Arc<[ClientId]>,
    digest: [u8; 32],
    roll: Roll,
    acc: A,
    signatures: BTreeMap<ClientId, [u8; 64]>,
}

impl<A: Send + Sync> ExpectSignatures<A> {
    pub(super) fn start<E: Accumulate<Accumulator = A>>(
        ctx: &mut Ctx<'_, E>,
        membership: Membership,
        u3: Arc<[ClientId]>,
        roll: Roll,
        acc: A,
    ) -> State<E::Accumulator> {
        let s = Self {
            deadline: ctx.deadline(),
            digest: survivors_digest(&membership.session.id, &u3),
            membership,
            u3,
            roll,
            acc,
            signatures: BTreeMap::new(),
        };
        settle(s, ctx)
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

    /// For every signer, the signatures it needs: those of the holders of every secret it
    /// reveals a share of — the signers within two hops of it (everyone, on the complete
    /// graph). Neighbour lists are computed once, and each signer's two-hop set is marked in a
    /// bitmap over the members rather than collected in a set.
    fn relevant(&self, signers: &[ClientId]) -> Vec<Vec<(ClientId, [u8; 64])>> {
        let graph = &self.membership.session.graph;
        let all: Vec<(ClientId, [u8; 64])> =
            self.signatures.iter().map(|(k, v)| (*k, *v)).collect();
        if graph.degree() + 1 >= graph.len() {
            return signers.iter().map(|_| all.clone()).collect();
        }
        let members: Vec<ClientId> = {
            let mut m: Vec<ClientId> = self.membership.session.keys.keys().copied().collect();
            m.sort_unstable();
            m
        };
        let index = |c: &ClientId| members.binary_search(c).ok();
        let neighbours: Vec<Vec<usize>> = members
            .iter()
            .map(|c| graph.neighbors(*c).iter().filter_map(index).collect())
            .collect();
        let signed: Vec<Option<[u8; 64]>> = members
            .iter()
            .map(|c| self.signatures.get(c).copied())
            .collect();
        let mut marked = vec![false; members.len()];
        signers
            .iter()
            .map(|u| {
                let Some(ui) = index(u) else {
                    return Vec::new();
                };
                let mut touched = Vec::new();
                for &v in std::iter::once(&ui).chain(&neighbours[ui]) {
                    for &w in std::iter::once(&v).chain(&neighbours[v]) {
                        if !marked[w] {
                            marked[w] = true;
                            touched.push(w);
                        }
                    }
                }
                touched.sort_unstable();
                let out = touched
                    .iter()
                    .filter_map(|&w| signed[w].map(|sig| (members[w], sig)))
                    .collect();
                for w in touched {
                    marked[w] = false;
                }
                out
            })
            .collect()
    }

    fn close<E: Accumulate<Accumulator = A>>(self, ctx: &mut Ctx<'_, E>) -> State<E::Accumulator> {
        let signers: Vec<ClientId> = self.roll.answered.iter().copied().collect();
        let live = signers.iter().filter(|c| !ctx.gone.contains_key(c)).count();
        let notify: Vec<ClientId> = self.membership.session.keys.keys().copied().collect();
        if let Err(reason) = ctx.close_stage(Stage::Consistency, live, notify) {
            return State::Aborted(reason);
        }
        let relevant = self.relevant(&signers);
        for (&u, signatures) in signers.iter().zip(relevant) {
            if !ctx.gone.contains_key(&u) {
                ctx.send(
                    u,
                    ServerMessage::UnmaskRequest {
                        survivors: self.u3.clone(),
                        signatures,
                    },
                );
            }
        }
        let roll = Roll::start(ctx, Stage::Unmasking, signers);
        ExpectUnmaskShares::start(ctx, self.membership, &self.u3, roll, self.acc)
    }
}

impl<A: Send + Sync> Collect<A> for ExpectSignatures<A> {
    const STAGE: Stage = Stage::Consistency;

    fn roll(&mut self) -> &mut Roll {
        &mut self.roll
    }

    fn take<E: Accumulate<Accumulator = A>>(
        &mut self,
        _ctx: &mut Ctx<'_, E>,
        from: ClientId,
        msg: ClientMessage,
    ) -> Result<Taken, ClientMessage> {
        let ClientMessage::Consistency { signature } = msg else {
            return Err(msg);
        };
        Ok(match self.check(from, &signature) {
            Ok(()) => {
                self.signatures.insert(from, signature);
                Taken::Answered
            }
            Err(e) => Taken::Misbehaved(e),
        })
    }

    fn finish<E: Accumulate<Accumulator = A>>(self, ctx: &mut Ctx<'_, E>) -> State<A> {
        self.close(ctx)
    }

    fn wait(self) -> State<A> {
        State::Signatures(Box::new(self))
    }
}
