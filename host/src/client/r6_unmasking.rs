//! Stage 6 on the client: check the audited leaves of the survivor set and the signatures on
//! its commitment, then reveal, for each
//! partner whose shares it holds, exactly one share — of the self mask if the partner survived,
//! of the mask key if it dropped — and never both for one partner in a round.
//!
//! The consistency rule for sparse graphs: before revealing a share of owner v's secrets, the
//! client needs valid signatures on this very survivor set's commitment from at least t distinct
//! holders of v's shares (v's neighbours and v itself). Honest clients sign one commitment per
//! round, and a commitment binds one set (a Merkle root and a count: two sets under one root
//! would be a SHA-256 collision), so two different sets can both gather t such signatures only
//! if at least 2t − (k + 1) of v's
//! holders signed both — corrupted ones. The planner's semi-malicious bound keeps the corrupted
//! neighbours of every honest client below that, so no second list exists that could make
//! other holders reveal the other secret of v.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand_core::CryptoRng;
use secagg_engine::Backend;

use super::audit::check_audit;
use super::membership::Held;
use super::membership::Membership;
use super::{Ctx, OwnShare, State};
use crate::ClientId;
use crate::credentials::{claimed_key, names, verify_all};
use crate::crypto::{ListCommitment, SURVIVORS_DOMAIN, survivors_digest};
use crate::error::{PeerMisbehaved, ProtocolError};
use crate::identity::{IdentityPublicKey, SignedItem};
use crate::messages::{ClientMessage, RevealedShare, ShareKind, UnmaskRequest};
use crate::policy::Trust;
use crate::view::{check_entries, label};

/// Waiting for the signatures on the survivor set.
pub(super) struct ExpectUnmaskRequest {
    membership: Membership,
    held: BTreeMap<ClientId, Held>,
    own_self_share: OwnShare,
    survivors: ListCommitment,
    /// The partners the survivor set names.
    surviving: Vec<ClientId>,
    /// The survivor set's leaves this client audits.
    audit: Vec<u32>,
}

impl ExpectUnmaskRequest {
    pub(super) fn new(
        membership: Membership,
        held: BTreeMap<ClientId, Held>,
        own_self_share: OwnShare,
        survivors: ListCommitment,
        surviving: Vec<ClientId>,
        audit: Vec<u32>,
    ) -> Self {
        Self {
            membership,
            held,
            own_self_share,
            survivors,
            surviving,
            audit,
        }
    }

    pub(super) fn handle<E: Backend, R: CryptoRng>(
        mut self,
        ctx: &mut Ctx<'_, E, R>,
        request: &UnmaskRequest,
    ) -> State {
        match self.reveal(ctx, request) {
            Ok(revealed) => State::Result(ExpectResult { revealed }),
            Err(e) => State::Aborted(e),
        }
    }

    fn reveal<E: Backend, R: CryptoRng>(
        &mut self,
        ctx: &mut Ctx<'_, E, R>,
        request: &UnmaskRequest,
    ) -> Result<usize, ProtocolError> {
        if request.survivors != self.survivors {
            return Err(PeerMisbehaved::UnmaskListChanged.into());
        }
        check_audit(
            &request.audit,
            label::SURVIVORS,
            &self.survivors,
            &self.audit,
            self.membership.cohort.len,
            "survivor set",
        )?;
        let signers = self.check_signatures(ctx, request)?;
        // Enough signatures from the holders of every owner whose share would be revealed.
        let t = ctx.config.threshold();
        let owners = std::iter::once(ctx.id).chain(self.held.keys().copied());
        for owner in owners {
            let holders = self
                .membership
                .index_of(owner)
                .and_then(|i| {
                    let mut h = self.membership.window.neighbors(i)?;
                    h.push(i);
                    Some(h)
                })
                .ok_or(ProtocolError::UnknownClient(owner))?;
            let have = holders.iter().filter(|h| signers.contains(h)).count();
            if have < t {
                return Err(ProtocolError::Consistency {
                    owner,
                    have,
                    need: t,
                });
            }
        }
        let mut shares = Vec::with_capacity(self.held.len() + 1);
        shares.push(RevealedShare {
            owner: ctx.id,
            kind: ShareKind::SelfMask,
            value: self.own_self_share.0.to_bytes(),
        });
        for (&v, h) in &self.held {
            let (kind, value) = if self.surviving.binary_search(&v).is_ok() {
                (ShareKind::SelfMask, h.self_mask)
            } else {
                (ShareKind::MaskKey, h.mask)
            };
            shares.push(RevealedShare {
                owner: v,
                kind,
                value: value.to_bytes(),
            });
        }
        let revealed = shares.len();
        ctx.send(ClientMessage::UnmaskShares(shares));
        // Nothing is held any more: a second request finds nothing to reveal.
        self.held.clear();
        Ok(revealed)
    }

    /// Every signature is from a distinct cohort member, under the identity key its
    /// credential proves (opened with proof, for a member this client has not checked yet),
    /// over this session's survivor set. A bad one is the server's doing (it must have
    /// checked them) and aborts. Returns the signers' cohort indices.
    fn check_signatures<E, R>(
        &mut self,
        ctx: &Ctx<'_, E, R>,
        request: &UnmaskRequest,
    ) -> Result<BTreeSet<u32>, ProtocolError> {
        let signatures = &request.signatures;
        if signatures.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(PeerMisbehaved::SignaturesNotSorted.into());
        }
        check_entries(&self.membership.cohort, &request.identities, &request.proof)?;
        let ca = match &ctx.policy.trust {
            Trust::Enrolled(ca) => Some(ca),
            Trust::Unauthenticated => None,
        };
        let mut keys: HashMap<u32, (ClientId, IdentityPublicKey)> = HashMap::new();
        let mut items: Vec<(ClientId, SignedItem<'_>)> = Vec::with_capacity(signatures.len() * 2);
        for (signer, _) in signatures {
            let known = self
                .membership
                .identity(*signer)
                .zip(self.membership.ids.get(signer).copied());
            let (key, id) = match known {
                Some((key, id)) => (key, id),
                None => {
                    // Not a neighbour: its certificate has not been checked yet.
                    let e = request
                        .identities
                        .binary_search_by_key(signer, |e| e.index)
                        .ok()
                        .map(|j| &request.identities[j])
                        .ok_or(PeerMisbehaved::EntryMissing {
                            what: "signer entry",
                            index: *signer,
                        })?;
                    let credential =
                        e.opening.credential().ok_or(PeerMisbehaved::EntryMissing {
                            what: "signer entry",
                            index: *signer,
                        })?;
                    let (key, cert) = claimed_key(ca, e.id, credential)?;
                    if let Some(c) = cert {
                        items.push((e.id, c));
                    }
                    (key, e.id)
                }
            };
            keys.insert(*signer, (id, key));
        }
        let digest = survivors_digest(&self.membership.session, &self.survivors);
        for (signer, sig) in signatures {
            if let Some((id, key)) = keys.get(signer) {
                items.push((*id, SignedItem::new(key, SURVIVORS_DOMAIN, &digest, sig)));
            }
        }
        if let Err(bad) = verify_all(&items) {
            return Err(PeerMisbehaved::BadSurvivorSignatures {
                ids: names(&items, &bad),
            }
            .into());
        }
        drop(items);
        for (index, (id, key)) in keys {
            self.membership.ids.insert(index, id);
            self.membership.identities.insert(index, key.to_bytes());
        }
        Ok(signatures.iter().map(|(s, _)| *s).collect())
    }
}

/// Waiting for the server to report the result. The held shares are gone: a second unmask
/// request — for instance one that now names a survivor as dropped — gets nothing.
pub(super) struct ExpectResult {
    revealed: usize,
}

impl ExpectResult {
    /// The server asked twice; answering could reveal both shares of a peer.
    pub(super) fn refuse_second_request(self) -> State {
        State::Aborted(
            PeerMisbehaved::SecondUnmaskRequest {
                revealed: self.revealed,
            }
            .into(),
        )
    }
}
