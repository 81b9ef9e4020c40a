//! Stage 1 on the server: collect each cohort member's signed round keys.
//!
//! Each advertisement is checked on arrival — the nonce opens the member's commitment in the
//! cohort, the encryption key is not of small order, the mask-agreement key σ·B passes the one
//! rule for points (canonical, in the prime-order subgroup, not the identity; see
//! [`crate::crypto::feldman::decode_points`]), the credential is a certificate from the
//! deployment CA for the sender's id (when the round is enrolled), its selection ticket verifies
//! and admits it (in a self-selected round), and the signature covers the
//! round, the cohort, the id, the keys and the nonce — so that one client's bad advertisement
//! costs that client alone: honest clients abort on any bad entry in the key list, because only
//! the server could have let it through. At the end the server fixes U1, derives the session id
//! and the neighbour graph, and sends every client in U1 the full key list.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use secagg_engine::Accumulate;

use super::collect::{Collect, Taken, settle};
use super::membership::Session;
use super::r2_share_keys::ExpectShares;
use super::{Ctx, Roll, State};
use crate::credentials::identity_key;
use crate::crypto::{ADVERTISE_DOMAIN, advertisement_message};
use crate::crypto::{cohort_digest, is_low_order, masking_point, nonce_commitment};
use crate::error::{CryptoError, PeerMisbehaved, ProtocolError};
use crate::identity::IdentityPublicKey;
use crate::messages::{ClientMessage, ServerMessage, SignedKeys};
use crate::selection::SelectionError;
use crate::view::RoundView;
use crate::{ClientId, Stage};

/// Waiting for signed keys from the cohort.
pub(super) struct ExpectKeys {
    pub(super) deadline: Duration,
    cohort: Arc<[(ClientId, [u8; 32])]>,
    cohort_digest: [u8; 32],
    roll: Roll,
    advertised: BTreeMap<ClientId, (SignedKeys, IdentityPublicKey)>,
}

impl ExpectKeys {
    pub(super) fn start<E: Accumulate>(
        ctx: &mut Ctx<'_, E>,
        cohort: Arc<[(ClientId, [u8; 32])]>,
        roll: Roll,
    ) -> State<E::Accumulator> {
        let s = Self {
            deadline: ctx.deadline(),
            cohort_digest: cohort_digest(ctx.round, &cohort),
            cohort,
            roll,
            advertised: BTreeMap::new(),
        };
        settle(s, ctx)
    }

    /// The nonce opens the cohort commitment, the encryption key is not of small order, the
    /// mask-agreement key passes the one rule for points, the credential and the signature
    /// verify.
    fn check<E>(
        &self,
        ctx: &Ctx<'_, E>,
        from: ClientId,
        signed: &SignedKeys,
    ) -> Result<IdentityPublicKey, ProtocolError> {
        let committed = self
            .cohort
            .binary_search_by_key(&from, |(id, _)| *id)
            .map(|i| self.cohort[i].1)
            .map_err(|_| ProtocolError::UnknownClient(from))?;
        if nonce_commitment(ctx.round, from, &signed.nonce) != committed {
            return Err(PeerMisbehaved::NonceMismatch { id: from }.into());
        }
        if is_low_order(&signed.keys.encryption) {
            return Err(CryptoError::NonContributory { peer: from }.into());
        }
        masking_point(&signed.keys.masking)?;
        let key = identity_key(ctx.ca, from, &signed.credential)?;
        match (ctx.config.selection(), ctx.ca, &signed.ticket) {
            (None, _, None) => {}
            (Some(selection), Some(ca), Some(ticket)) => selection
                .check(ca, &key, ticket)
                .map_err(PeerMisbehaved::Ticket)?,
            (None, _, Some(_)) => {
                return Err(PeerMisbehaved::Ticket(SelectionError::Unexpected).into());
            }
            (Some(_), _, None) | (Some(_), None, Some(_)) => {
                return Err(PeerMisbehaved::Ticket(SelectionError::Missing).into());
            }
        }
        let message = advertisement_message(
            ctx.round,
            &self.cohort_digest,
            from,
            &signed.keys,
            &signed.nonce,
        );
        key.verify(ADVERTISE_DOMAIN, &message, &signed.signature)?;
        Ok(key)
    }

    fn close<E: Accumulate>(self, ctx: &mut Ctx<'_, E>) -> State<E::Accumulator> {
        let notify: Vec<ClientId> = self.cohort.iter().map(|(id, _)| *id).collect();
        if let Err(reason) = ctx.close_stage(Stage::AdvertiseKeys, self.advertised.len(), notify) {
            return State::Aborted(reason);
        }
        let identities: HashMap<ClientId, IdentityPublicKey> = self
            .advertised
            .iter()
            .map(|(id, (_, key))| (*id, *key))
            .collect();
        let list: Arc<[(ClientId, SignedKeys)]> = self
            .advertised
            .into_iter()
            .map(|(id, (signed, _))| (id, signed))
            .collect();
        let RoundView { session: id, graph } = RoundView::derive(
            ctx.round,
            &self.cohort_digest,
            &list,
            ctx.config.neighbors(),
        );
        let members: Vec<ClientId> = list.iter().map(|(id, _)| *id).collect();
        for id in &members {
            ctx.send(*id, ServerMessage::KeyList(list.clone()));
        }
        let session = Session {
            id,
            keys: list.iter().map(|(id, k)| (*id, k.keys)).collect(),
            identities,
            graph,
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
        let ClientMessage::AdvertiseKeys(signed) = msg else {
            return Err(msg);
        };
        Ok(match self.check(ctx, from, &signed) {
            Ok(key) => {
                self.advertised.insert(from, (signed, key));
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
