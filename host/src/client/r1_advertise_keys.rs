//! Stage 1 on the client: check the cohort's commitment — its own entry in it, its size against
//! the policy — then reveal the graph nonce its join committed to, with the cohort leaves it
//! will audit.
//!
//! The stage keeps its name, advertise-keys, from when the keys were sent here; they now go out
//! with the join, so that the cohort fixes them before any nonce is revealed.

use rand_core::CryptoRng;
use secagg_engine::Backend;

use super::audit::draw_leaves;
use super::r2_share_keys::ExpectKeyList;
use super::{Ctx, State};
use crate::crypto::{ClientSecrets, ListCommitment};
use crate::error::{PeerMisbehaved, ProtocolError};
use crate::messages::{ClientMessage, SignedKeys};
use crate::view::signed_leaf;

/// Waiting for the cohort.
pub(super) struct ExpectCohort {
    secrets: ClientSecrets,
    nonce: [u8; 32],
    mine: SignedKeys,
}

impl ExpectCohort {
    pub(super) fn new(secrets: ClientSecrets, nonce: [u8; 32], mine: SignedKeys) -> Self {
        Self {
            secrets,
            nonce,
            mine,
        }
    }

    pub(super) fn handle<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        cohort: ListCommitment,
        position: u32,
        proof: &crate::merkle::Proof,
    ) -> State {
        match self.reveal(ctx, cohort, position, proof) {
            Ok(next) => State::KeyList(Box::new(next)),
            Err(e) => State::Aborted(e),
        }
    }

    fn reveal<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        cohort: ListCommitment,
        position: u32,
        proof: &crate::merkle::Proof,
    ) -> Result<ExpectKeyList, ProtocolError> {
        let n = cohort.len as usize;
        if n > ctx.config.clients() {
            return Err(PeerMisbehaved::CohortTooLarge {
                named: n,
                round: ctx.config.clients(),
            }
            .into());
        }
        ctx.policy.check_size(n, ctx.colluders, "the cohort")?;
        // The round as it really is: n members, the graph capped at n − 1.
        ctx.policy.check_shape(
            n,
            ctx.config.neighbors(),
            ctx.config.threshold(),
            ctx.colluders,
        )?;
        let quorum = ctx.policy.committee_quorum(n, ctx.colluders)?;
        let leaf = signed_leaf(ctx.id, &self.mine);
        crate::merkle::verify(
            &cohort.root,
            u64::from(cohort.len),
            &[(u64::from(position), ctx.id.0, leaf)],
            proof,
        )
        .map_err(|_| PeerMisbehaved::NotInCohort)?;
        let audit = draw_leaves(ctx.rng, cohort.len, ctx.policy.audit);
        ctx.send(ClientMessage::Reveal {
            nonce: self.nonce,
            audit: audit.clone(),
        });
        Ok(ExpectKeyList::new(
            self.secrets,
            self.mine,
            self.nonce,
            position,
            cohort,
            audit,
            quorum,
        ))
    }
}
