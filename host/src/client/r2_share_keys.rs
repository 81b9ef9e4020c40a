//! Stage 2 on the client: check the key list, derive the session and the neighbour graph,
//! check every member's credential (and, in a self-selected round, its ticket) and every
//! neighbour's signature and mask-agreement key (under the one rule for points: canonical, in
//! the prime-order subgroup, not the identity), then deal both
//! secrets among the neighbours (and itself) with Feldman-style share points and send one
//! sealed bundle to each neighbour through the server.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rand_core::CryptoRng;
use secagg_engine::Backend;

use super::membership::Membership;
use super::r3_share_check::ExpectShareBundles;
use super::{Ctx, OwnShare, State};
use crate::credentials::{claimed_key, names, verify_all};
use crate::crypto::{ADVERTISE_DOMAIN, advertisement_message};
use crate::crypto::{
    BundleKey, BundlePlaintext, ClientSecrets, Dealt, PublicKeys, deal, masking_point,
    nonce_commitment, share_points_digest,
};
use crate::error::{LocalFailure, PeerMisbehaved, ProtocolError};
use crate::identity::SignedItem;
use crate::messages::{ClientMessage, SealedBundle, SignedKeys};
use crate::policy::Trust;
use crate::selection::SelectionError;
use crate::view::RoundView;
use crate::{ClientId, Stage};

/// Waiting for the list of clients that advertised keys.
pub(super) struct ExpectKeyList {
    secrets: ClientSecrets,
    mine: SignedKeys,
    cohort: Vec<(ClientId, [u8; 32])>,
    cohort_digest: [u8; 32],
}

impl ExpectKeyList {
    pub(super) fn new(
        secrets: ClientSecrets,
        mine: SignedKeys,
        cohort: Vec<(ClientId, [u8; 32])>,
        cohort_digest: [u8; 32],
    ) -> Self {
        Self {
            secrets,
            mine,
            cohort,
            cohort_digest,
        }
    }

    pub(super) fn handle<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        keys: &Arc<[(ClientId, SignedKeys)]>,
    ) -> State {
        match self.share_keys(ctx, keys) {
            Ok(next) => State::ShareBundles(Box::new(next)),
            Err(e) => State::Aborted(e),
        }
    }

    fn share_keys<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        keys: &Arc<[(ClientId, SignedKeys)]>,
    ) -> Result<ExpectShareBundles, ProtocolError> {
        let me = ctx.id;
        // Strictly increasing ids, all in the cohort; our own entry unaltered.
        if keys.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(PeerMisbehaved::KeyListNotSorted.into());
        }
        let commitments: BTreeMap<ClientId, [u8; 32]> = self.cohort.iter().copied().collect();
        for (id, k) in keys.iter() {
            let Some(c) = commitments.get(id) else {
                return Err(PeerMisbehaved::ListedOutsideCohort { id: *id }.into());
            };
            // A nonce that does not open its commitment would let the server choose the
            // graph after seeing keys.
            if nonce_commitment(ctx.round, *id, &k.nonce) != *c {
                return Err(PeerMisbehaved::NonceMismatch { id: *id }.into());
            }
        }
        if keys.len() < ctx.config.min_survivors() {
            return Err(ProtocolError::TooFewClients {
                stage: Stage::AdvertiseKeys,
                have: keys.len(),
                need: ctx.config.min_survivors(),
            });
        }
        ctx.policy
            .check_size(keys.len(), ctx.colluders, "the key list")?;
        match keys.binary_search_by_key(&me, |(id, _)| *id) {
            Ok(i) if keys[i].1 == self.mine => {}
            Ok(_) => return Err(PeerMisbehaved::OwnKeysAltered.into()),
            Err(_) => return Err(PeerMisbehaved::NotInKeyList.into()),
        }
        // The round as it really is: |U1| members, the graph capped at |U1| − 1.
        let t = ctx.config.threshold();
        ctx.policy
            .check_shape(keys.len(), ctx.config.neighbors(), t, ctx.colluders)?;
        let RoundView { session, graph } =
            RoundView::derive(ctx.round, &self.cohort_digest, keys, ctx.config.neighbors());
        let neighbors = graph.neighbors(me);
        if neighbors.len() + 1 < t {
            return Err(ProtocolError::TooFewClients {
                stage: Stage::ShareKeys,
                have: neighbors.len() + 1,
                need: t,
            });
        }
        // Every member's credential (and, in a self-selected round, its ticket), every
        // neighbour's signature, before any of its keys is used: the round's size counts only
        // enrolled (and eligible) identities, or the server could pad it with identities of
        // its own; a server that substituted keys is caught here, and we abort (it forwarded
        // them).
        let ca = match &ctx.policy.trust {
            Trust::Enrolled(ca) => Some(ca),
            Trust::Unauthenticated => None,
        };
        let mut identities = HashMap::with_capacity(keys.len());
        let mut certificates = Vec::with_capacity(keys.len());
        for (v, entry) in keys.iter() {
            if *v == me {
                continue;
            }
            let (key, cert) = claimed_key(ca, *v, &entry.credential)?;
            identities.insert(*v, key);
            if let Some(c) = cert {
                certificates.push((*v, c));
            }
        }
        identities.insert(me, ctx.identity.key.public());
        check_tickets(ctx.config, ca, keys, &identities)?;
        let mut messages = Vec::with_capacity(neighbors.len());
        let mut peers: Vec<(ClientId, &SignedKeys)> = Vec::with_capacity(neighbors.len());
        for v in &neighbors {
            let i = keys
                .binary_search_by_key(v, |(id, _)| *id)
                .map_err(|_| ProtocolError::UnknownClient(*v))?;
            let entry = &keys[i].1;
            messages.push(advertisement_message(
                ctx.round,
                &self.cohort_digest,
                *v,
                &entry.keys,
                &entry.nonce,
            ));
            peers.push((*v, entry));
        }
        // Every certificate and every neighbour's advertisement signature, in one batch
        // (certificates first, so a failure says which it was).
        let n_certs = certificates.len();
        let mut items: Vec<(ClientId, SignedItem<'_>)> = certificates;
        for ((v, entry), m) in peers.iter().zip(&messages) {
            if let Some(key) = identities.get(v) {
                items.push((
                    *v,
                    SignedItem::new(key, ADVERTISE_DOMAIN, m, &entry.signature),
                ));
            }
        }
        if let Err(bad) = verify_all(&items) {
            let (certs, sigs): (Vec<usize>, Vec<usize>) =
                bad.into_iter().partition(|i| *i < n_certs);
            return Err(if certs.is_empty() {
                PeerMisbehaved::ForwardedBadSignatures {
                    ids: names(&items, &sigs),
                }
            } else {
                PeerMisbehaved::ForwardedBadCertificates {
                    ids: names(&items, &certs),
                }
            }
            .into());
        }
        drop(items);
        // Every neighbour's mask-agreement key under the one rule for points, before any share
        // leaves: the server must have refused a key that breaks it.
        let mut mask_keys = HashMap::with_capacity(peers.len());
        for (v, entry) in &peers {
            let point = masking_point(&entry.keys.masking)
                .map_err(|e| PeerMisbehaved::ForwardedBadMaskKey { peer: *v, why: e })?;
            mask_keys.insert(*v, point);
        }
        // Holders: every neighbour, and ourselves (our own share of the self mask lets a
        // surviving client help rebuild it).
        let mut holders = neighbors.clone();
        holders.push(me);
        let Dealt {
            shares: mask_shares,
            secret_point: mask_key,
            points: mask_points,
        } = deal(self.secrets.mask_scalar(), t, &holders, ctx.rng)?;
        let Dealt {
            shares: self_shares,
            secret_point: self_key,
            points: self_points,
        } = deal(self.secrets.self_scalar(), t, &holders, ctx.rng)?;
        // σ·B is the advertised mask key: the dealing is bound to it.
        debug_assert_eq!(mask_key, self.mine.keys.masking);
        let peer_keys: Vec<(ClientId, &PublicKeys)> =
            peers.iter().map(|(v, e)| (*v, &e.keys)).collect();
        // One batched agreement for every neighbour's bundle key; the keys are kept to open
        // the bundles that come back.
        let bundle_keys = self.secrets.bundle_keys(&session, me, &peer_keys)?;
        let bundle_keys: HashMap<ClientId, BundleKey> =
            peer_keys.iter().map(|(v, _)| *v).zip(bundle_keys).collect();
        let mut bundles = Vec::with_capacity(neighbors.len());
        let mut own_self_share = None;
        let mut own_point = [0u8; 32];
        for (i, (m, s)) in mask_shares.iter().zip(&self_shares).enumerate() {
            if m.holder == me {
                own_self_share = Some(s.value);
                own_point = self_points[i];
                continue;
            }
            let Some(key) = bundle_keys.get(&m.holder) else {
                continue;
            };
            let plaintext = BundlePlaintext {
                mask_share: m.value,
                self_share: s.value,
            };
            let binding = share_points_digest(&mask_points[i], &self_points[i], &self_key);
            bundles.push(SealedBundle {
                peer: m.holder,
                mask_point: mask_points[i],
                self_point: self_points[i],
                ciphertext: key.seal(&session, me, m.holder, &binding, &plaintext)?,
            });
        }
        let own_self_share =
            OwnShare(own_self_share.ok_or(ProtocolError::Local(LocalFailure::OwnShareMissing))?);
        ctx.send(ClientMessage::ShareKeys {
            self_key,
            own_point,
            bundles,
        });
        let membership = Membership {
            session,
            graph,
            neighbors,
            list: keys.clone(),
            identities,
            mask_keys,
        };
        Ok(ExpectShareBundles::new(
            self.secrets,
            membership,
            bundle_keys,
            own_self_share,
        ))
    }
}

/// In a self-selected round, every member's ticket against the identity key its credential
/// names (checked on every core); in any other round, no member may carry one. A member the
/// server should not have seated aborts the round for this client.
fn check_tickets(
    config: &crate::RoundConfig,
    ca: Option<&crate::identity::CaPublicKey>,
    keys: &[(ClientId, SignedKeys)],
    identities: &HashMap<ClientId, crate::identity::IdentityPublicKey>,
) -> Result<(), ProtocolError> {
    use rayon::prelude::*;
    let verdict = |id: ClientId, entry: &SignedKeys| -> Result<(), SelectionError> {
        match (config.selection(), ca, &entry.ticket) {
            (None, _, None) => Ok(()),
            (None, _, Some(_)) => Err(SelectionError::Unexpected),
            (Some(_), _, None) => Err(SelectionError::Missing),
            // The policy refuses self-selected rounds without a CA, before any of this.
            (Some(_), None, Some(_)) => Err(SelectionError::Missing),
            (Some(selection), Some(ca), Some(ticket)) => match identities.get(&id) {
                Some(key) => selection.check(ca, key, ticket),
                None => Err(SelectionError::Missing),
            },
        }
    };
    let bad: Vec<(ClientId, SelectionError)> = keys
        .par_iter()
        .filter_map(|(id, entry)| verdict(*id, entry).err().map(|e| (*id, e)))
        .collect();
    match bad.into_iter().next() {
        None => Ok(()),
        Some((id, why)) => Err(PeerMisbehaved::IneligibleMember { id, why }.into()),
    }
}
