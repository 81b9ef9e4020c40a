//! Round 1 on the client: check the key list, derive the session and the neighbour graph,
//! Shamir-share both secrets among the neighbours (and itself), and send one sealed bundle to
//! each neighbour through the server.

use std::collections::HashMap;

use rand_core::CryptoRng;
use secagg_engine::Backend;

use super::r2_masked_input::ExpectShareBundles;
use super::{Ctx, State};
use crate::crypto::{
    BundleKey, BundlePlaintext, ClientSecrets, PublicKeys, SessionId, self_mask_commitment, split,
};
use crate::error::ProtocolError;
use crate::graph::NeighborGraph;
use crate::messages::{ClientMessage, SealedBundle};
use crate::{ClientId, Stage};

/// Waiting for the list of clients that advertised keys.
pub(super) struct ExpectKeyList {
    secrets: ClientSecrets,
    mine: PublicKeys,
}

impl ExpectKeyList {
    pub(super) fn new(secrets: ClientSecrets, mine: PublicKeys) -> Self {
        Self { secrets, mine }
    }

    pub(super) fn handle<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        keys: &[(ClientId, PublicKeys)],
    ) -> State {
        match self.share_keys(ctx, keys) {
            Ok(next) => State::ShareBundles(next),
            Err(e) => State::Aborted(e),
        }
    }

    fn share_keys<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        keys: &[(ClientId, PublicKeys)],
    ) -> Result<ExpectShareBundles, ProtocolError> {
        let me = ctx.id;
        // Strictly increasing ids: sorted, no duplicates; at most n; our own keys unaltered.
        if keys.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(ProtocolError::UnsafeRequest(
                "key list is not sorted by unique client id".into(),
            ));
        }
        if keys.len() > ctx.config.clients() {
            return Err(ProtocolError::UnsafeRequest(format!(
                "key list names {} clients, the round has {}",
                keys.len(),
                ctx.config.clients()
            )));
        }
        if keys.len() < ctx.config.min_survivors() {
            return Err(ProtocolError::TooFewClients {
                stage: Stage::AdvertiseKeys,
                have: keys.len(),
                need: ctx.config.min_survivors(),
            });
        }
        match keys.binary_search_by_key(&me, |(id, _)| *id) {
            Ok(i) if keys[i].1 == self.mine => {}
            Ok(_) => return Err(ProtocolError::UnsafeRequest("our keys were altered".into())),
            Err(_) => {
                return Err(ProtocolError::UnsafeRequest(
                    "we are not in the key list".into(),
                ));
            }
        }
        // Keys of clients we never agree with cannot hurt us; every agreement we do make
        // (bundle keys below, mask seeds later) rejects a low-order key on its own.
        let session = SessionId::derive(ctx.config, keys);
        let members: Vec<ClientId> = keys.iter().map(|(id, _)| *id).collect();
        let graph = NeighborGraph::new(&session, &members, ctx.config.neighbors());
        let neighbors = graph.neighbors(me);
        let t = ctx.config.threshold();
        if neighbors.len() + 1 < t {
            return Err(ProtocolError::TooFewClients {
                stage: Stage::ShareKeys,
                have: neighbors.len() + 1,
                need: t,
            });
        }
        // Holders: every neighbour, and ourselves (our own share of the self mask lets a
        // surviving client help rebuild it).
        let mut holders = neighbors.clone();
        holders.push(me);
        let mask_shares = split(self.secrets.mask_scalar(), t, &holders, ctx.rng)?;
        let self_shares = split(self.secrets.self_scalar(), t, &holders, ctx.rng)?;
        let peer_keys: HashMap<ClientId, PublicKeys> = keys
            .iter()
            .filter(|(id, _)| neighbors.binary_search(id).is_ok())
            .copied()
            .collect();
        // One batched agreement for every neighbour's bundle key; the keys are kept to open
        // the bundles that come back.
        let peers: Vec<(ClientId, &PublicKeys)> = neighbors
            .iter()
            .filter_map(|v| peer_keys.get(v).map(|k| (*v, k)))
            .collect();
        let keys = self.secrets.bundle_keys(&session, me, &peers)?;
        let mut bundle_keys: HashMap<ClientId, BundleKey> =
            peers.iter().map(|(v, _)| *v).zip(keys).collect();
        let mut bundles = Vec::with_capacity(neighbors.len());
        let mut own_self_share = None;
        for (m, s) in mask_shares.iter().zip(&self_shares) {
            if m.holder == me {
                own_self_share = Some(s.value);
                continue;
            }
            let Some(key) = bundle_keys.get(&m.holder) else {
                continue;
            };
            let plaintext = BundlePlaintext {
                mask_share: m.value,
                self_share: s.value,
            };
            bundles.push(SealedBundle {
                peer: m.holder,
                ciphertext: key.seal(&session, me, m.holder, &plaintext)?,
            });
        }
        bundle_keys.shrink_to_fit();
        let own_self_share = own_self_share
            .ok_or_else(|| ProtocolError::UnsafeRequest("own share missing".into()))?;
        ctx.send(ClientMessage::ShareKeys {
            self_mask_commitment: self_mask_commitment(self.secrets.self_scalar(), &session, me),
            bundles,
        });
        Ok(ExpectShareBundles::new(
            self.secrets,
            session,
            neighbors,
            peer_keys,
            bundle_keys,
            own_self_share,
        ))
    }
}
