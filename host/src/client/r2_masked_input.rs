//! Round 2 on the client: open the bundles from its neighbours, then mask the input with its
//! self mask and one pairwise mask per neighbour that completed share keys — in one engine
//! pass — and send it.

use std::collections::{BTreeMap, HashMap};

use curve25519_dalek::Scalar;
use rand_core::CryptoRng;
use secagg_engine::{Backend, MaskTerm};
use zeroize::Zeroize;

use super::r3_unmasking::{ExpectUnmaskRequest, Held};
use super::{ClientError, Ctx, Next, State};
use crate::ClientId;
use crate::crypto::{BundleKey, ClientSecrets, PublicKeys, SessionId, self_mask_seed};
use crate::error::ProtocolError;
use crate::messages::{ClientMessage, SealedBundle};

/// Waiting for the bundles the neighbours sealed for this client.
pub(super) struct ExpectShareBundles {
    secrets: ClientSecrets,
    session: SessionId,
    neighbors: Vec<ClientId>,
    peer_keys: HashMap<ClientId, PublicKeys>,
    bundle_keys: HashMap<ClientId, BundleKey>,
    own_self_share: Scalar,
}

impl Drop for ExpectShareBundles {
    fn drop(&mut self) {
        self.own_self_share.zeroize();
    }
}

impl ExpectShareBundles {
    pub(super) fn new(
        secrets: ClientSecrets,
        session: SessionId,
        neighbors: Vec<ClientId>,
        peer_keys: HashMap<ClientId, PublicKeys>,
        bundle_keys: HashMap<ClientId, BundleKey>,
        own_self_share: Scalar,
    ) -> Self {
        Self {
            secrets,
            session,
            neighbors,
            peer_keys,
            bundle_keys,
            own_self_share,
        }
    }

    pub(super) fn handle<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        bundles: Vec<SealedBundle>,
    ) -> Next {
        let held = match self.open_all(ctx.id, &bundles) {
            Ok(h) => h,
            Err(e) => return Ok(State::Aborted(e)),
        };
        let Some(input) = ctx.input.take() else {
            let e = ProtocolError::ServerAborted("client had no input to send".into());
            return Err((ClientError::MissingInput, e));
        };
        let mut masked = input.0.clone();
        drop(input);
        let me = ctx.id;
        let mut terms = Vec::with_capacity(held.len() + 1);
        terms.push(MaskTerm::plus(self_mask_seed(
            self.secrets.self_scalar(),
            &self.session,
        )));
        let peers: Vec<(ClientId, &PublicKeys)> = held
            .keys()
            .filter_map(|v| self.peer_keys.get(v).map(|k| (*v, k)))
            .collect();
        let seeds = match self.secrets.pairwise_seeds(&self.session, me, &peers) {
            Ok(s) => s,
            Err(e) => return Ok(State::Aborted(e.into())),
        };
        for ((v, _), seed) in peers.iter().zip(seeds) {
            terms.push(if me < *v {
                MaskTerm::plus(seed)
            } else {
                MaskTerm::minus(seed)
            });
        }
        if let Err(e) = ctx.engine.apply_masks(
            &mut masked,
            0,
            &terms,
            ctx.config.prg(),
            ctx.config.modulus(),
        ) {
            masked.zeroize();
            return Ok(State::Aborted(ProtocolError::ServerAborted(format!(
                "masking failed on this client: {e}"
            ))));
        }
        drop(terms);
        ctx.send(ClientMessage::MaskedInput(masked));
        // The secrets themselves are no longer needed: only the shares we hold for others.
        Ok(State::UnmaskRequest(ExpectUnmaskRequest::new(
            held,
            self.own_self_share,
            self.neighbors.clone(),
        )))
    }

    /// Opens every bundle: each from a distinct neighbour, each authentic.
    fn open_all(
        &self,
        me: ClientId,
        bundles: &[SealedBundle],
    ) -> Result<BTreeMap<ClientId, Held>, ProtocolError> {
        let mut held = BTreeMap::new();
        for b in bundles {
            let Some(key) = self.bundle_keys.get(&b.peer) else {
                return Err(ProtocolError::UnsafeRequest(format!(
                    "bundle from {}, who is not a neighbour",
                    b.peer
                )));
            };
            if held.contains_key(&b.peer) {
                return Err(ProtocolError::Duplicate("share bundle"));
            }
            let opened = key.open(&self.session, b.peer, me, &b.ciphertext)?;
            held.insert(b.peer, Held::from(&opened));
        }
        Ok(held)
    }
}
