//! Stage 5 on the client: check the survivor set against what this client saw, then sign its
//! commitment.
//!
//! The server commits to the survivor set (the ring positions of the clients whose masked input
//! arrived: a root and a count) and opens it around this client: itself and each of its
//! neighbours, each shown in the set or shown absent by the two adjacent leaves around it. The
//! checks: the set names this client (which sent its input), holds at least max(T, the
//! round's minimum) clients, names no neighbour this client did not mask with (U3 ⊆ U2), and
//! keeps at least t − 1 of its partners — so that, with fewer than t − 1 corrupted neighbours,
//! an honest partner survives and its pairwise mask, which the server can only remove by
//! rebuilding that partner's mask key, stays on this input. With its signature it names the
//! survivor-set leaves it will audit.

use std::collections::BTreeMap;

use rand_core::CryptoRng;
use secagg_engine::Backend;

use super::audit::draw_leaves;
use super::membership::Held;
use super::membership::Membership;
use super::r6_unmasking::ExpectUnmaskRequest;
use super::{Ctx, OwnShare, State};
use crate::crypto::{ListCommitment, SURVIVORS_DOMAIN, survivors_digest};
use crate::error::{PeerMisbehaved, ProtocolError};
use crate::messages::{ClientMessage, SetOpening};
use crate::view::label;
use crate::{ClientId, Stage};

/// Waiting for the survivor set.
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
        survivors: ListCommitment,
        opening: &SetOpening,
    ) -> State {
        let surviving = match self.check(ctx, &survivors, opening) {
            Ok(s) => s,
            Err(e) => return State::Aborted(e),
        };
        let digest = survivors_digest(&self.membership.session, &survivors);
        let signature = ctx.identity.key.sign(SURVIVORS_DOMAIN, &digest);
        let audit = draw_leaves(ctx.rng, survivors.len, ctx.policy.audit);
        ctx.send(ClientMessage::Consistency {
            signature,
            audit: audit.clone(),
        });
        State::Unmask(Box::new(ExpectUnmaskRequest::new(
            self.membership,
            self.held,
            self.own_self_share,
            survivors,
            surviving,
            audit,
        )))
    }

    /// Checks the set around this client; returns the partners that survived.
    fn check<E, R>(
        &self,
        ctx: &Ctx<'_, E, R>,
        survivors: &ListCommitment,
        opening: &SetOpening,
    ) -> Result<Vec<ClientId>, ProtocolError> {
        let m = &self.membership;
        let what = "survivor set";
        let shown = opening
            .check(label::SURVIVORS, &survivors.root, survivors.len)
            .map_err(|why| PeerMisbehaved::BadProof { what, why })?;
        if let Some((_, v)) = shown.leaves().iter().find(|(_, v)| *v >= m.cohort.len) {
            return Err(PeerMisbehaved::SetOutOfRange { what, value: *v }.into());
        }
        // U3 within U1: no more survivors than members present.
        if survivors.len > m.present.len {
            return Err(PeerMisbehaved::SetOutOfRange {
                what,
                value: survivors.len,
            }
            .into());
        }
        let survived = |index: u32| -> Result<bool, ProtocolError> {
            let p = m
                .window
                .position(index)
                .ok_or(ProtocolError::UnknownClient(ctx.id))?;
            shown
                .contains(p as u32)
                .map_err(|why| PeerMisbehaved::BadProof { what, why }.into())
        };
        if !survived(m.position)? {
            return Err(PeerMisbehaved::SurvivorListOmitsSelf.into());
        }
        let n3 = survivors.len as usize;
        let need = ctx.config.min_survivors();
        if n3 < need {
            return Err(ProtocolError::TooFewClients {
                stage: Stage::MaskedInput,
                have: n3,
                need,
            });
        }
        ctx.policy
            .check_size(n3, ctx.colluders, "the survivor list")?;
        // U3 within U2: a neighbour this client did not mask with cannot have survived.
        let mut surviving = Vec::new();
        for v in m.window.neighbors(m.position).unwrap_or_default() {
            if !survived(v)? {
                continue;
            }
            let id = m.ids.get(&v).copied().ok_or(PeerMisbehaved::EntryMissing {
                what: "neighbour entry",
                index: v,
            })?;
            if self.partners.binary_search(&id).is_err() {
                return Err(PeerMisbehaved::SurvivorNotPartner { id }.into());
            }
            surviving.push(id);
        }
        surviving.sort_unstable();
        let t = ctx.config.threshold();
        if surviving.len() + 1 < t {
            return Err(ProtocolError::TooFewPartners {
                have: surviving.len(),
                need: t.saturating_sub(1),
            });
        }
        Ok(surviving)
    }
}
