//! Round 2 on the client: open the bundles from its neighbours, then mask the input with its
//! self mask and one pairwise mask per neighbour that completed share keys — in one engine
//! pass — and send it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
        let (held, unreadable) = match self.open_all(ctx.id, &bundles) {
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
        // Every neighbour that completed share keys, whether or not its bundle could be read:
        // the pairwise mask needs only its public key, and the server counts it in U2.
        let peers: Vec<(ClientId, &PublicKeys)> = held
            .keys()
            .chain(&unreadable)
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
            unreadable,
            self.own_self_share,
            self.neighbors.clone(),
        )))
    }

    /// Opens every bundle, each from a distinct neighbour. A bundle that fails
    /// authentication (a forging sender, or a tampering server) costs this client that
    /// sender's shares, not the round: it is listed as unreadable and answered for at
    /// unmasking. A bundle from a non-neighbour or a repeated sender is the server's doing
    /// and aborts.
    fn open_all(
        &self,
        me: ClientId,
        bundles: &[SealedBundle],
    ) -> Result<(BTreeMap<ClientId, Held>, BTreeSet<ClientId>), ProtocolError> {
        let mut held = BTreeMap::new();
        let mut unreadable = BTreeSet::new();
        for b in bundles {
            let Some(key) = self.bundle_keys.get(&b.peer) else {
                return Err(ProtocolError::UnsafeRequest(format!(
                    "bundle from {}, who is not a neighbour",
                    b.peer
                )));
            };
            if held.contains_key(&b.peer) || unreadable.contains(&b.peer) {
                return Err(ProtocolError::Duplicate("share bundle"));
            }
            match key.open(&self.session, b.peer, me, &b.ciphertext) {
                Ok(opened) => {
                    held.insert(b.peer, Held::from(&opened));
                }
                Err(e) => {
                    log::warn!("client {me}: {e}; continuing without its shares");
                    unreadable.insert(b.peer);
                }
            }
        }
        Ok((held, unreadable))
    }
}
