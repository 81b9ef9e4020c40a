//! Stage 6 on the client: check the signatures on the survivor list, then reveal, for each
//! partner whose shares it holds, exactly one share — of the self mask if the partner survived,
//! of the mask key if it dropped — and never both for one partner in a round.
//!
//! The consistency rule for sparse graphs: before revealing a share of owner v's secrets, the
//! client needs valid signatures on this very survivor list from at least t distinct holders of
//! v's shares (v's neighbours and v itself). Honest clients sign one list per round, so two
//! different lists can both gather t such signatures only if at least 2t − (k + 1) of v's
//! holders signed both — corrupted ones. The planner's semi-malicious bound keeps the corrupted
//! neighbours of every honest client below that, so no second list exists that could make
//! other holders reveal the other secret of v.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand_core::CryptoRng;
use secagg_engine::Backend;

use super::membership::Held;
use super::membership::Membership;
use super::{Ctx, OwnShare, State};
use crate::ClientId;
use crate::credentials::{claimed_key, names, verify_all};
use crate::crypto::SURVIVORS_DOMAIN;
use crate::crypto::survivors_digest;
use crate::error::{PeerMisbehaved, ProtocolError};
use crate::identity::{IdentityPublicKey, SignedItem};
use crate::messages::{ClientMessage, RevealedShare, ShareKind};
use crate::policy::Trust;

/// Waiting for the signatures on the survivor list.
pub(super) struct ExpectUnmaskRequest {
    membership: Membership,
    held: BTreeMap<ClientId, Held>,
    own_self_share: OwnShare,
    survivors: Vec<ClientId>,
}

impl ExpectUnmaskRequest {
    pub(super) fn new(
        membership: Membership,
        held: BTreeMap<ClientId, Held>,
        own_self_share: OwnShare,
        survivors: Vec<ClientId>,
    ) -> Self {
        Self {
            membership,
            held,
            own_self_share,
            survivors,
        }
    }

    pub(super) fn handle<E: Backend, R: CryptoRng>(
        mut self,
        ctx: &mut Ctx<'_, E, R>,
        survivors: &[ClientId],
        signatures: &[(ClientId, [u8; 64])],
    ) -> State {
        match self.reveal(ctx, survivors, signatures) {
            Ok(revealed) => State::Result(ExpectResult { revealed }),
            Err(e) => State::Aborted(e),
        }
    }

    fn reveal<E: Backend, R: CryptoRng>(
        &mut self,
        ctx: &mut Ctx<'_, E, R>,
        survivors: &[ClientId],
        signatures: &[(ClientId, [u8; 64])],
    ) -> Result<usize, ProtocolError> {
        if survivors != self.survivors.as_slice() {
            return Err(PeerMisbehaved::UnmaskListChanged.into());
        }
        let signers = self.check_signatures(ctx, signatures)?;
        // Enough signatures from the holders of every owner whose share would be revealed.
        let t = ctx.config.threshold();
        let owners = std::iter::once(ctx.id).chain(self.held.keys().copied());
        for owner in owners {
            let have = std::iter::once(owner)
                .chain(self.membership.graph.neighbors(owner))
                .filter(|h| signers.contains(h))
                .count();
            if have < t {
                return Err(ProtocolError::Consistency {
                    owner,
                    have,
                    need: t,
                });
            }
        }
        let survivors: BTreeSet<ClientId> = self.survivors.iter().copied().collect();
        let mut shares = Vec::with_capacity(self.held.len() + 1);
        shares.push(RevealedShare {
            owner: ctx.id,
            kind: ShareKind::SelfMask,
            value: self.own_self_share.0.to_bytes(),
        });
        for (&v, h) in &self.held {
            let (kind, value) = if survivors.contains(&v) {
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

    /// Every signature is from a distinct survivor, under the identity key its credential
    /// proves, over this session's survivor list. A bad one is the server's doing (it must
    /// have checked them) and aborts.
    fn check_signatures<E, R>(
        &mut self,
        ctx: &Ctx<'_, E, R>,
        signatures: &[(ClientId, [u8; 64])],
    ) -> Result<BTreeSet<ClientId>, ProtocolError> {
        if signatures.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(PeerMisbehaved::SignaturesNotSorted.into());
        }
        let ca = match &ctx.policy.trust {
            Trust::Enrolled(ca) => Some(ca),
            Trust::Unauthenticated => None,
        };
        let mut keys: HashMap<ClientId, IdentityPublicKey> = HashMap::new();
        let mut items: Vec<(ClientId, SignedItem<'_>)> = Vec::with_capacity(signatures.len() * 2);
        for (signer, _) in signatures {
            if self.survivors.binary_search(signer).is_err() {
                return Err(PeerMisbehaved::SignerNotSurvivor { signer: *signer }.into());
            }
            let key = match self.membership.identities.get(signer) {
                Some(k) => *k,
                None => {
                    // Not a neighbour: its certificate has not been checked yet.
                    let entry = self
                        .membership
                        .entry(*signer)
                        .ok_or(ProtocolError::UnknownClient(*signer))?;
                    let (key, cert) = claimed_key(ca, *signer, &entry.credential)?;
                    if let Some(c) = cert {
                        items.push((*signer, c));
                    }
                    key
                }
            };
            keys.insert(*signer, key);
        }
        let digest = survivors_digest(&self.membership.session, &self.survivors);
        for (signer, sig) in signatures {
            if let Some(key) = keys.get(signer) {
                items.push((
                    *signer,
                    SignedItem::new(key, SURVIVORS_DOMAIN, &digest, sig),
                ));
            }
        }
        if let Err(bad) = verify_all(&items) {
            return Err(PeerMisbehaved::BadSurvivorSignatures {
                ids: names(&items, &bad),
            }
            .into());
        }
        drop(items);
        self.membership.identities.extend(keys);
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
