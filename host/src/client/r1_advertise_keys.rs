//! Stage 1 on the client: check the cohort, then advertise the round keys and reveal the
//! nonce, signed with the identity key over the round and the cohort.

use rand_core::CryptoRng;
use secagg_engine::Backend;

use super::r2_share_keys::ExpectKeyList;
use super::{Ctx, State};
use crate::ClientId;
use crate::crypto::{ADVERTISE_DOMAIN, advertisement_message};
use crate::crypto::{ClientSecrets, cohort_digest};
use crate::error::{PeerMisbehaved, ProtocolError};
use crate::messages::{ClientMessage, SignedKeys};

/// Waiting for the cohort.
pub(super) struct ExpectCohort {
    nonce: [u8; 32],
    commitment: [u8; 32],
    ticket: Option<crate::selection::Ticket>,
}

impl ExpectCohort {
    pub(super) fn new(
        nonce: [u8; 32],
        commitment: [u8; 32],
        ticket: Option<crate::selection::Ticket>,
    ) -> Self {
        Self {
            nonce,
            commitment,
            ticket,
        }
    }

    pub(super) fn handle<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        cohort: &[(ClientId, [u8; 32])],
    ) -> State {
        match self.advertise(ctx, cohort) {
            Ok(next) => State::KeyList(Box::new(next)),
            Err(e) => State::Aborted(e),
        }
    }

    fn advertise<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        cohort: &[(ClientId, [u8; 32])],
    ) -> Result<ExpectKeyList, ProtocolError> {
        if cohort.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(PeerMisbehaved::CohortNotSorted.into());
        }
        if cohort.len() > ctx.config.clients() {
            return Err(PeerMisbehaved::CohortTooLarge {
                named: cohort.len(),
                round: ctx.config.clients(),
            }
            .into());
        }
        ctx.policy
            .check_size(cohort.len(), ctx.colluders, "the cohort")?;
        match cohort.binary_search_by_key(&ctx.id, |(id, _)| *id) {
            Ok(i) if cohort[i].1 == self.commitment => {}
            Ok(_) => {
                return Err(PeerMisbehaved::OwnCommitmentAltered.into());
            }
            Err(_) => {
                return Err(PeerMisbehaved::NotInCohort.into());
            }
        }
        let cohort_digest = cohort_digest(ctx.round, cohort);
        let secrets = ClientSecrets::generate(ctx.rng);
        let keys = secrets.public_keys();
        let message = advertisement_message(ctx.round, &cohort_digest, ctx.id, &keys, &self.nonce);
        let signature = ctx.identity.key.sign(ADVERTISE_DOMAIN, &message);
        let signed = SignedKeys {
            keys,
            nonce: self.nonce,
            credential: ctx.identity.credential.clone(),
            signature,
            ticket: self.ticket,
        };
        ctx.send(ClientMessage::AdvertiseKeys(signed.clone()));
        Ok(ExpectKeyList::new(
            secrets,
            signed,
            cohort.to_vec(),
            cohort_digest,
        ))
    }
}
