//! Stage 2 on the client: check the key list — every proof against the cohort's commitment,
//! the committee's nonces against their commitments and the quorum, the present set around
//! this client — derive the session and the ring, check every neighbour's credential,
//! signature, ticket and mask-agreement key (under the one rule for points: canonical, in the
//! prime-order subgroup, not the identity) and every committee member's and audited entry's
//! credential and ticket; then deal both secrets among the neighbours (and itself) with
//! Feldman-style share points and send one sealed bundle to each neighbour through the server,
//! with the present-set leaves it will audit.

use std::collections::{BTreeMap, HashMap};

use rand_core::CryptoRng;
use secagg_engine::Backend;

use super::audit::draw_leaves;
use super::membership::Membership;
use super::r3_share_check::ExpectShareBundles;
use super::{Ctx, OwnShare, State};
use crate::credentials::{claimed_key, names, verify_all};
use crate::crypto::{ADVERTISE_DOMAIN, advertisement_message};
use crate::crypto::{
    BundleKey, BundlePlaintext, ClientSecrets, Dealt, ListCommitment, PublicKeys, deal,
    masking_point, nonce_commitment, share_points_digest,
};
use crate::error::{LocalFailure, PeerMisbehaved, ProtocolError};
use crate::identity::{IdentityPublicKey, SignedItem};
use crate::messages::{ClientMessage, KeyList, OpenedEntry, SealedBundle, SignedKeys};
use crate::policy::Trust;
use crate::selection::SelectionError;
use crate::view::{RoundView, check_entries, committee, label};
use crate::{ClientId, Stage};

/// Waiting for the key list.
pub(super) struct ExpectKeyList {
    secrets: ClientSecrets,
    mine: SignedKeys,
    nonce: [u8; 32],
    position: u32,
    cohort: ListCommitment,
    audit: Vec<u32>,
    quorum: usize,
}

impl ExpectKeyList {
    pub(super) fn new(
        secrets: ClientSecrets,
        mine: SignedKeys,
        nonce: [u8; 32],
        position: u32,
        cohort: ListCommitment,
        audit: Vec<u32>,
        quorum: usize,
    ) -> Self {
        Self {
            secrets,
            mine,
            nonce,
            position,
            cohort,
            audit,
            quorum,
        }
    }

    pub(super) fn handle<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        list: KeyList,
    ) -> State {
        match self.share_keys(ctx, &list) {
            Ok(next) => State::ShareBundles(Box::new(next)),
            Err(e) => State::Aborted(e),
        }
    }

    /// The committee's nonces: each on the committee, opening its member's commitment, at
    /// least the quorum; this client's own, if it is on the committee, among them.
    fn check_reveals<'a, E, R>(
        &self,
        ctx: &Ctx<'_, E, R>,
        list: &'a KeyList,
        entry: &impl Fn(u32) -> Option<&'a OpenedEntry>,
    ) -> Result<Vec<u32>, ProtocolError> {
        let committee = committee(ctx.round, &self.cohort);
        if list.reveals.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(ProtocolError::Duplicate("committee nonce"));
        }
        for (index, nonce) in &list.reveals {
            if committee.binary_search(index).is_err() {
                return Err(PeerMisbehaved::RevealOutsideCommittee { index: *index }.into());
            }
            let e = entry(*index).ok_or(PeerMisbehaved::EntryMissing {
                what: "committee entry",
                index: *index,
            })?;
            let committed = e.opening.commitment().ok_or(PeerMisbehaved::EntryMissing {
                what: "committee entry",
                index: *index,
            })?;
            // A nonce that does not open its commitment would let the server choose the
            // graph after seeing the others.
            if nonce_commitment(ctx.round, e.id, nonce) != *committed {
                return Err(PeerMisbehaved::NonceMismatch { id: e.id }.into());
            }
        }
        if list.reveals.len() < self.quorum {
            return Err(ProtocolError::TooFewReveals {
                have: list.reveals.len(),
                need: self.quorum,
            });
        }
        // Every committee member and every audited entry is opened at least by identity.
        let identified = committee
            .iter()
            .map(|i| (*i, "committee entry"))
            .chain(self.audit.iter().map(|i| (*i, "audited cohort entry")));
        for (index, what) in identified {
            if index < self.cohort.len
                && entry(index).is_none_or(|e| e.opening.credential().is_none())
            {
                return Err(PeerMisbehaved::EntryMissing { what, index }.into());
            }
        }
        Ok(committee)
    }

    fn share_keys<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        list: &KeyList,
    ) -> Result<ExpectShareBundles, ProtocolError> {
        let me = ctx.id;
        check_entries(&self.cohort, &list.entries, &list.proof)?;
        let entry = |index: u32| {
            list.entries
                .binary_search_by_key(&index, |e| e.index)
                .ok()
                .map(|j| &list.entries[j])
        };
        let committee = self.check_reveals(ctx, list, &entry)?;
        let revealed = |index: u32| list.reveals.iter().any(|(i, _)| *i == index);
        if committee.binary_search(&self.position).is_ok()
            && !list
                .reveals
                .iter()
                .any(|(i, n)| *i == self.position && *n == self.nonce)
        {
            return Err(PeerMisbehaved::UnrevealedCommitteeMember { id: me }.into());
        }
        // The present set around this client, on the ring the committee's nonces seed.
        let present = list.present;
        if present.len > self.cohort.len {
            return Err(PeerMisbehaved::SetOutOfRange {
                what: "present set",
                value: present.len,
            }
            .into());
        }
        let RoundView { session, ring, .. } = RoundView::derive(
            ctx.round,
            &self.cohort,
            &list.reveals,
            &present,
            ctx.config.neighbors(),
        );
        let window = ring
            .window(self.position)
            .ok_or(ProtocolError::UnknownClient(me))?;
        drop(ring);
        let shown = list
            .presence
            .check(label::PRESENT, &present.root, present.len)
            .map_err(|why| PeerMisbehaved::BadProof {
                what: "present set",
                why,
            })?;
        if let Some((_, v)) = shown.leaves().iter().find(|(_, v)| *v >= self.cohort.len) {
            return Err(PeerMisbehaved::SetOutOfRange {
                what: "present set",
                value: *v,
            }
            .into());
        }
        let is_present = |index: u32| -> Result<bool, ProtocolError> {
            let p = window
                .position(index)
                .ok_or(ProtocolError::UnknownClient(me))?;
            shown.contains(p as u32).map_err(|why| {
                PeerMisbehaved::BadProof {
                    what: "present set",
                    why,
                }
                .into()
            })
        };
        if !is_present(self.position)? {
            return Err(PeerMisbehaved::NotInKeyList.into());
        }
        let n1 = present.len as usize;
        if n1 < ctx.config.min_survivors() {
            return Err(ProtocolError::TooFewClients {
                stage: Stage::AdvertiseKeys,
                have: n1,
                need: ctx.config.min_survivors(),
            });
        }
        ctx.policy.check_size(n1, ctx.colluders, "the key list")?;
        // Every neighbour, present or not, is opened; the present ones in full.
        let mut ids = BTreeMap::from([(self.position, me)]);
        let mut peers: Vec<(ClientId, u32, &SignedKeys)> = Vec::new();
        for v in window.neighbors(self.position).unwrap_or_default() {
            let e = entry(v).ok_or(PeerMisbehaved::EntryMissing {
                what: "neighbour entry",
                index: v,
            })?;
            ids.insert(v, e.id);
            if !is_present(v)? {
                continue;
            }
            let full = e.opening.full().ok_or(PeerMisbehaved::EntryMissing {
                what: "neighbour entry",
                index: v,
            })?;
            if committee.binary_search(&v).is_ok() && !revealed(v) {
                return Err(PeerMisbehaved::UnrevealedCommitteeMember { id: e.id }.into());
            }
            peers.push((e.id, v, full));
        }
        peers.sort_by_key(|(id, _, _)| *id);
        let neighbors: Vec<ClientId> = peers.iter().map(|(id, _, _)| *id).collect();
        let t = ctx.config.threshold();
        if neighbors.len() + 1 < t {
            return Err(ProtocolError::TooFewClients {
                stage: Stage::ShareKeys,
                have: neighbors.len() + 1,
                need: t,
            });
        }
        // Every opened entry's credential (and, in a self-selected round, its ticket), every
        // present neighbour's signature, before any of its keys is used: the committee and the
        // audited entries count only as enrolled (and eligible) identities, or the server could
        // pad the round with identities of its own; a server that substituted keys is caught
        // here, and we abort (it forwarded them).
        let ca = match &ctx.policy.trust {
            Trust::Enrolled(ca) => Some(ca),
            Trust::Unauthenticated => None,
        };
        let mut identities: HashMap<u32, IdentityPublicKey> = HashMap::new();
        let mut certificates = Vec::new();
        for e in &list.entries {
            let Some(credential) = e.opening.credential() else {
                continue;
            };
            if e.index == self.position {
                continue;
            }
            let (key, cert) = claimed_key(ca, e.id, credential)?;
            identities.insert(e.index, key);
            if let Some(c) = cert {
                certificates.push((e.id, c));
            }
        }
        identities.insert(self.position, ctx.identity.key.public());
        check_tickets(ctx.config, ca, &list.entries, &identities)?;
        let messages: Vec<Vec<u8>> = peers
            .iter()
            .map(|(v, _, entry)| {
                advertisement_message(ctx.round, *v, &entry.keys, &entry.commitment)
            })
            .collect();
        // Every certificate and every neighbour's advertisement signature, in one batch
        // (certificates first, so a failure says which it was).
        let n_certs = certificates.len();
        let mut items: Vec<(ClientId, SignedItem<'_>)> = certificates;
        for ((v, index, entry), m) in peers.iter().zip(&messages) {
            if let Some(key) = identities.get(index) {
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
        let peers: Vec<(ClientId, &SignedKeys)> = peers.iter().map(|(v, _, e)| (*v, *e)).collect();
        // Every neighbour's mask-agreement key under the one rule for points, before any share
        // leaves: the server must have refused a key that breaks it.
        // (`peers` is sorted by id, and so is `mask_keys`.)
        let mut mask_keys = Vec::with_capacity(peers.len());
        for (v, entry) in &peers {
            let point = masking_point(&entry.keys.masking)
                .map_err(|e| PeerMisbehaved::ForwardedBadMaskKey { peer: *v, why: e })?;
            mask_keys.push((*v, point));
        }
        // Holders: every present neighbour, and ourselves (our own share of the self mask
        // lets a surviving client help rebuild it).
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
        let audit = draw_leaves(ctx.rng, present.len, ctx.policy.audit);
        ctx.send(ClientMessage::ShareKeys {
            self_key,
            own_point,
            bundles,
            audit: audit.clone(),
        });
        // Only its own and its neighbours' keys are kept, compressed: every client keeps
        // them for the whole round.
        let identities: HashMap<u32, [u8; 32]> = identities
            .iter()
            .filter(|(index, _)| ids.contains_key(index))
            .map(|(index, key)| (*index, key.to_bytes()))
            .collect();
        let membership = Membership {
            session,
            cohort: self.cohort,
            present,
            position: self.position,
            window,
            ids,
            identities,
            mask_keys,
        };
        Ok(ExpectShareBundles::new(
            self.secrets,
            membership,
            bundle_keys,
            own_self_share,
            audit,
        ))
    }
}

/// In a self-selected round, every opened entry's ticket against the identity key its
/// credential names (checked on every core); in any other round, no entry may carry one. A
/// member the server should not have seated aborts the round for this client.
fn check_tickets(
    config: &crate::RoundConfig,
    ca: Option<&crate::identity::CaPublicKey>,
    entries: &[OpenedEntry],
    identities: &HashMap<u32, IdentityPublicKey>,
) -> Result<(), ProtocolError> {
    use rayon::prelude::*;
    let verdict = |e: &OpenedEntry| -> Result<(), SelectionError> {
        match (config.selection(), ca, e.opening.ticket()) {
            (None, _, None) => Ok(()),
            (None, _, Some(_)) => Err(SelectionError::Unexpected),
            (Some(_), _, None) => Err(SelectionError::Missing),
            // The policy refuses self-selected rounds without a CA, before any of this.
            (Some(_), None, Some(_)) => Err(SelectionError::Missing),
            (Some(selection), Some(ca), Some(ticket)) => match identities.get(&e.index) {
                Some(key) => selection.check(ca, key, ticket),
                None => Err(SelectionError::Missing),
            },
        }
    };
    let bad: Vec<(ClientId, SelectionError)> = entries
        .par_iter()
        .filter_map(|e| verdict(e).err().map(|why| (e.id, why)))
        .collect();
    match bad.into_iter().next() {
        None => Ok(()),
        Some((id, why)) => Err(PeerMisbehaved::IneligibleMember { id, why }.into()),
    }
}
