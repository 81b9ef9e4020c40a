//! Stage 1 on the server: collect each cohort member's revealed nonce (and the cohort leaves it
//! audits), check the nonce against the member's commitment, and fix who is present.
//!
//! The stage keeps its name from when the keys came here; they now come with the join, so that
//! the cohort fixes them before any nonce is revealed. At the end the server fixes the present
//! set U1 (the members whose nonce arrived and opened its commitment), reveals the committee's
//! nonces (every present committee member's), derives the graph seed, the ring and the session
//! ([`crate::commit::Roster`]), and sends each present member its key list: its neighbours in
//! full, the committee and its audited leaves by identity, the present set around it — all with
//! proofs, built as each message is polled.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use secagg_engine::Accumulate;

use super::collect::{Collect, Taken, settle};
use super::membership::Session;
use super::r2_share_keys::ExpectShares;
use super::{Ctx, Roll, State};
use crate::commit::{Cohort, Roster};
use crate::crypto::nonce_commitment;
use crate::error::{AbortReason, CodecError, PeerMisbehaved, ProtocolError};
use crate::identity::IdentityPublicKey;
use crate::messages::{ClientMessage, ServerMessage};
use crate::{ClientId, Stage};

/// Waiting for the cohort's nonces.
pub(super) struct ExpectKeys {
    pub(super) deadline: Duration,
    cohort: Arc<Cohort>,
    identities: HashMap<ClientId, IdentityPublicKey>,
    roll: Roll,
    /// Revealed nonces by cohort index, and the leaves each member audits.
    revealed: BTreeMap<u32, ([u8; 32], Vec<u32>)>,
}

impl ExpectKeys {
    pub(super) fn start<E: Accumulate>(
        ctx: &mut Ctx<'_, E>,
        cohort: Arc<Cohort>,
        identities: HashMap<ClientId, IdentityPublicKey>,
        roll: Roll,
    ) -> State<E::Accumulator> {
        let s = Self {
            deadline: ctx.deadline(),
            cohort,
            identities,
            roll,
            revealed: BTreeMap::new(),
        };
        settle(s, ctx)
    }

    /// The nonce opens the member's commitment; the audited leaves lie in the cohort.
    fn check<E>(
        &self,
        ctx: &Ctx<'_, E>,
        from: ClientId,
        nonce: &[u8; 32],
        audit: &[u32],
    ) -> Result<u32, ProtocolError> {
        let index = self
            .cohort
            .index_of(from)
            .ok_or(ProtocolError::UnknownClient(from))?;
        let (_, signed) = &self.cohort.entries()[index as usize];
        if nonce_commitment(ctx.round, from, nonce) != signed.commitment {
            return Err(PeerMisbehaved::NonceMismatch { id: from }.into());
        }
        if let Some(a) = audit.iter().find(|a| **a as usize >= self.cohort.len()) {
            return Err(CodecError::Invalid {
                field: "audit",
                why: format!("leaf {a} of a cohort of {}", self.cohort.len()),
            }
            .into());
        }
        Ok(index)
    }

    fn close<E: Accumulate>(self, ctx: &mut Ctx<'_, E>) -> State<E::Accumulator> {
        let notify: Vec<ClientId> = self.cohort.entries().iter().map(|(id, _)| *id).collect();
        if let Err(reason) = ctx.close_stage(Stage::AdvertiseKeys, self.revealed.len(), notify) {
            return State::Aborted(reason);
        }
        let nonces: BTreeMap<u32, [u8; 32]> =
            self.revealed.iter().map(|(i, (n, _))| (*i, *n)).collect();
        let roster = match Roster::new(
            ctx.round,
            self.cohort.clone(),
            &nonces,
            ctx.config.neighbors(),
        ) {
            Ok(r) => Arc::new(r),
            Err(_) => {
                let members: Vec<ClientId> = self.identities.keys().copied().collect();
                return ctx.abort(
                    AbortReason::StateLost("the present set does not fit a Merkle tree"),
                    members,
                );
            }
        };
        let members: Vec<ClientId> = self
            .revealed
            .keys()
            .filter_map(|i| self.cohort.id_at(*i))
            .collect();
        let audits: HashMap<ClientId, (u32, Vec<u32>)> = self
            .revealed
            .into_iter()
            .filter_map(|(i, (_, audit))| self.cohort.id_at(i).map(|id| (id, (i, audit))))
            .collect();
        let shared = roster.clone();
        ctx.send_each(members.iter().copied(), move |id| {
            let (index, audit) = audits.get(&id)?;
            Some(ServerMessage::KeyList(shared.key_list(*index, audit)))
        });
        let session = Session {
            id: roster.view().session,
            keys: members
                .iter()
                .filter_map(|id| {
                    let i = self.cohort.index_of(*id)?;
                    Some((*id, self.cohort.entries()[i as usize].1.keys))
                })
                .collect(),
            identities: self
                .identities
                .into_iter()
                .filter(|(id, _)| members.binary_search(id).is_ok())
                .collect(),
            roster,
        };
        let roll = Roll::start(ctx, Stage::ShareKeys, members);
        ExpectShares::start(ctx, session, roll)
    }
}

impl<A: Send + Sync> Collect<A> for ExpectKeys {
    const STAGE: Stage = Stage::AdvertiseKeys;

    fn roll(&mut self) -> &mut Roll {
        &mut self.roll
    }

    fn take<E: Accumulate<Accumulator = A>>(
        &mut self,
        ctx: &mut Ctx<'_, E>,
        from: ClientId,
        msg: ClientMessage,
    ) -> Result<Taken, ClientMessage> {
        let ClientMessage::Reveal { nonce, audit } = msg else {
            return Err(msg);
        };
        Ok(match self.check(ctx, from, &nonce, &audit) {
            Ok(index) => {
                self.revealed.insert(index, (nonce, audit));
                Taken::Answered
            }
            Err(e) => Taken::Misbehaved(e),
        })
    }

    fn finish<E: Accumulate<Accumulator = A>>(self, ctx: &mut Ctx<'_, E>) -> State<A> {
        self.close(ctx)
    }

    fn wait(self) -> State<A> {
        State::Keys(self)
    }
}
