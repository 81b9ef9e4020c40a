//! Stage 5 on the client: check the survivor list against what this client saw, then sign it.
//!
//! The checks: the list is sorted and within the key list, names this client (which sent its
//! input), holds at least max(T, the round's minimum) clients, names no neighbour this client
//! did not mask with (U3 ⊆ U2), and keeps at least t − 1 of its partners — so that, with fewer
//! than t − 1 corrupted neighbours, an honest partner survives and its pairwise mask, which the
//! server can only remove by rebuilding that partner's mask key, stays on this input.

use std::collections::BTreeMap;

use rand_core::CryptoRng;
use secagg_engine::Backend;

use super::membership::Held;
use super::membership::Membership;
use super::r6_unmasking::ExpectUnmaskRequest;
use super::{Ctx, OwnShare, State};
use crate::crypto::SURVIVORS_DOMAIN;
use crate::crypto::survivors_digest;
use crate::error::{PeerMisbehaved, ProtocolError};
use crate::messages::ClientMessage;
use crate::{ClientId, Stage};

/// Waiting for the list of clients whose masked input arrived.
pub(super) struct ExpectSurvivorList {
    membership: Membership,
    held: BTreeMap<ClientId, Held>,
    partners: Vec<ClientId>,
    own_self_share: OwnShare,
}

impl ExpectSurvivorList {
    pub(super) fn new(
        membership: Membership,
        held: BTreeMap<ClientId, Held>,
        partners: Vec<ClientId>,
        own_self_share: OwnShare,
    ) -> Self {
        Self {
            membership,
            held,
            partners,
            own_self_share,
        }
    }

    pub(super) fn handle<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        u3: &[ClientId],
    ) -> State {
        if let Err(e) = self.check(ctx, u3) {
            return State::Aborted(e);
        }
        let digest = survivors_digest(&self.membership.session, u3);
        let signature = ctx.identity.key.sign(SURVIVORS_DOMAIN, &digest);
        ctx.send(ClientMessage::Consistency { signature });
        State::Unmask(Box::new(ExpectUnmaskRequest::new(
            self.membership,
            self.held,
            self.own_self_share,
            u3.to_vec(),
        )))
    }

    fn check<E, R>(&self, ctx: &Ctx<'_, E, R>, u3: &[ClientId]) -> Result<(), ProtocolError> {
        let me = ctx.id;
        if u3.windows(2).any(|w| w[0] >= w[1]) {
            return Err(PeerMisbehaved::SurvivorListNotSorted.into());
        }
        if let Some(v) = u3.iter().find(|v| self.membership.entry(**v).is_none()) {
            return Err(PeerMisbehaved::SurvivorNotMember { id: *v }.into());
        }
        if u3.binary_search(&me).is_err() {
            return Err(PeerMisbehaved::SurvivorListOmitsSelf.into());
        }
        let need = ctx.config.min_survivors();
        if u3.len() < need {
            return Err(ProtocolError::TooFewClients {
                stage: Stage::MaskedInput,
                have: u3.len(),
                need,
            });
        }
        ctx.policy
            .check_size(u3.len(), ctx.colluders, "the survivor list")?;
        // U3 within U2: a neighbour this client did not mask with cannot have survived.
        if let Some(v) = self
            .membership
            .neighbors
            .iter()
            .find(|v| u3.binary_search(v).is_ok() && self.partners.binary_search(v).is_err())
        {
            return Err(PeerMisbehaved::SurvivorNotPartner { id: *v }.into());
        }
        let surviving = self
            .partners
            .iter()
            .filter(|v| u3.binary_search(v).is_ok())
            .count();
        let t = ctx.config.threshold();
        if surviving + 1 < t {
            return Err(ProtocolError::TooFewPartners {
                have: surviving,
                need: t.saturating_sub(1),
            });
        }
        Ok(())
    }
}
