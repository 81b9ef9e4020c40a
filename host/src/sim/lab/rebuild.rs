//! The attacker's last move: rebuilding a target's input from everything the clients sent
//! (its masked vector, the revealed shares it can check against the dealings, twins'
//! answers), and how far that got.

use std::collections::BTreeMap;

use curve25519_dalek::Scalar;
use secagg_engine::{Backend, CpuEngine, MaskTerm};

use super::Lab;
use crate::ClientId;
use crate::crypto::feldman::{decode_point, opens_to, share_matches};
use crate::crypto::{
    Lagrange, RoundDigest, SessionId, masking_point, pairwise_seeds, self_mask_seed,
};
use crate::messages::{ClientMessage, ServerMessage, ShareKind};
use crate::view::RoundView;

/// How far the attacker's rebuild of a target's input got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rebuild {
    /// The target never sent its masked input.
    NoMaskedInput,
    /// Too few checked shares of the target's self-mask secret were revealed.
    SelfMaskHidden {
        /// Checked shares revealed.
        shares: usize,
        /// t.
        need: usize,
    },
    /// The pairwise mask with this partner could not be removed: neither end's mask key was
    /// rebuilt.
    PairwiseHidden {
        /// The partner.
        partner: ClientId,
    },
    /// Every mask was removed; whether the result equals the target's true input.
    Rebuilt {
        /// It equals the input.
        exact: bool,
    },
}

impl Rebuild {
    /// Whether the attacker recovered the input.
    pub fn exposed(&self) -> bool {
        matches!(self, Rebuild::Rebuilt { exact: true })
    }
}
impl Lab {
    /// The attacker's last move: rebuild `target`'s input from everything clients sent (its
    /// masked vector, revealed shares, twins' answers). The session is taken from what the
    /// target received, as the server knows it.
    pub fn attempt_rebuild(&self, target: ClientId) -> Rebuild {
        let t = self.cfg.round.threshold();
        let Some(y) = self.records.sent.iter().find_map(|(from, m)| match m {
            ClientMessage::MaskedInput(v) if *from == target => Some(v.clone()),
            ClientMessage::PackedInput(p) if *from == target => p.unpack().ok(),
            _ => None,
        }) else {
            return Rebuild::NoMaskedInput;
        };
        let Some(view) = self.view_of(target) else {
            return Rebuild::NoMaskedInput;
        };
        // Each dealer's commitments and share points, from its share keys (σ·B is its mask
        // key in the key list).
        let mut dealings: BTreeMap<ClientId, Dealing> = BTreeMap::new();
        for (from, m) in &self.records.sent {
            if let ClientMessage::ShareKeys {
                self_key,
                own_point,
                bundles,
                ..
            } = m
            {
                let mut points: BTreeMap<ClientId, ([u8; 32], [u8; 32])> = bundles
                    .iter()
                    .map(|b| (b.peer, (b.mask_point, b.self_point)))
                    .collect();
                points.insert(*from, ([0; 32], *own_point));
                dealings.insert(
                    *from,
                    Dealing {
                        mask_key: view.keys.get(from).copied().unwrap_or([0; 32]),
                        self_key: *self_key,
                        points,
                    },
                );
            }
        }
        let rebuild = |owner: ClientId, kind: ShareKind| -> (Option<Scalar>, usize) {
            let Some(d) = dealings.get(&owner) else {
                return (None, 0);
            };
            let mask = kind == ShareKind::MaskKey;
            let mut shares: BTreeMap<ClientId, Scalar> = BTreeMap::new();
            for (holder, m) in &self.records.sent {
                if let ClientMessage::UnmaskShares(list) = m {
                    for s in list {
                        let point = d.points.get(holder).map(|(m, s)| if mask { m } else { s });
                        if s.owner == owner
                            && s.kind == kind
                            && let Ok(v) = crate::crypto::scalar_from_bytes(&s.value)
                            && point.is_some_and(|p| share_matches(&v, p))
                        {
                            shares.insert(*holder, v);
                        }
                    }
                }
            }
            let have = shares.len();
            if have < t {
                return (None, have);
            }
            let key = decode_point(if mask { &d.mask_key } else { &d.self_key }).ok();
            let holders: Vec<ClientId> = shares.keys().take(t).copied().collect();
            let secret = Lagrange::at_zero(&holders)
                .ok()
                .map(|l| l.combine(shares.values().take(t)))
                .filter(|s| key.is_some_and(|k| opens_to(&k, s)));
            (secret, have)
        };
        let (beta, have) = rebuild(target, ShareKind::SelfMask);
        let Some(beta) = beta else {
            return Rebuild::SelfMaskHidden {
                shares: have,
                need: t,
            };
        };
        let mut terms = vec![MaskTerm::minus(self_mask_seed(&beta, &view.session))];
        let (sigma_target, _) = rebuild(target, ShareKind::MaskKey);
        for v in &view.partners {
            let seed = match (rebuild(*v, ShareKind::MaskKey).0, &sigma_target) {
                (Some(sigma_v), _) => view.point(target).and_then(|p| {
                    pairwise_seeds(&sigma_v, &view.session, *v, &[(target, &p)]).ok()
                }),
                (None, Some(sigma_u)) => view
                    .point(*v)
                    .and_then(|p| pairwise_seeds(sigma_u, &view.session, target, &[(*v, &p)]).ok()),
                (None, None) => None,
            };
            let Some(seed) = seed.and_then(|mut s| s.pop()) else {
                return Rebuild::PairwiseHidden { partner: *v };
            };
            // The target added +PRG(s) when target < v and subtracted it otherwise.
            terms.push(if target < *v {
                MaskTerm::minus(seed)
            } else {
                MaskTerm::plus(seed)
            });
        }
        let mut x = y;
        if CpuEngine::new()
            .apply_masks(
                &mut x,
                0,
                &terms,
                self.cfg.round.prg(),
                self.cfg.round.modulus(),
            )
            .is_err()
        {
            return Rebuild::Rebuilt { exact: false };
        }
        Rebuild::Rebuilt {
            exact: x == self.input(target),
        }
    }

    /// The session as `target` saw it (from its cohort and key list), every member's mask key
    /// (from the advertisements, which the server holds), and its partners (from its mask
    /// request).
    fn view_of(&self, target: ClientId) -> Option<View> {
        let got = self.received(target);
        let cohort = got.iter().rev().find_map(|e| match &e.message {
            ServerMessage::Cohort { cohort, .. } => Some(*cohort),
            _ => None,
        })?;
        let list = got.iter().rev().find_map(|e| match &e.message {
            ServerMessage::KeyList(k) => Some(k),
            _ => None,
        })?;
        let partners = got
            .iter()
            .rev()
            .find_map(|e| match &e.message {
                ServerMessage::MaskRequest(p) => Some(p.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let round = RoundDigest::of(&self.cfg.round);
        let session = RoundView::derive(
            &round,
            &cohort,
            &list.reveals,
            &list.present,
            self.cfg.round.neighbors(),
        )
        .session;
        Some(View {
            session,
            keys: self
                .advertisements()
                .into_iter()
                .map(|(id, k)| (id, k.keys.masking))
                .collect(),
            partners,
        })
    }
}

/// One dealer's public dealing, as the attacker saw it.
struct Dealing {
    mask_key: [u8; 32],
    self_key: [u8; 32],
    points: BTreeMap<ClientId, ([u8; 32], [u8; 32])>,
}

struct View {
    session: SessionId,
    keys: BTreeMap<ClientId, [u8; 32]>,
    partners: Vec<ClientId>,
}

impl View {
    fn point(&self, id: ClientId) -> Option<curve25519_dalek::edwards::EdwardsPoint> {
        self.keys.get(&id).and_then(|k| masking_point(k).ok())
    }
}
