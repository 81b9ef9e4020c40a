//! Stage 6 on the server: collect the revealed shares, rebuild the secrets, and remove every
//! mask in one engine pass.
//!
//! For each client in U3 the server rebuilds its self-mask secret β; for each certified dealer
//! that sent no masked input (certified \ U3) and has a neighbour in U3, its mask key σ. Each
//! rebuilt secret is checked against its commitment (σ·B, the mask key; β·B); when the first t
//! shares do not open it, every share of that owner is checked alone against its public point
//! (one fixed-base multiplication each, compared byte for byte: the holders' own rule), the bad
//! ones are left out and their holders named — no search over subsets. Lagrange coefficients
//! are computed once per set of share holders. The mask job then subtracts every survivor's
//! self mask and cancels every pairwise mask between a dropped client and its surviving
//! neighbours, over the whole vector at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::EdwardsPoint;
use rayon::prelude::*;
use secagg_engine::{Accumulate, MaskTerm};
use zeroize::Zeroize;

use super::collect::{Collect, Taken, settle};
use super::membership::Membership;
use super::{Ctx, Roll, RoundOutput, ServerEvent, State};
use crate::crypto::feldman::{matches_points, opens_to};
use crate::crypto::{Lagrange, masking_point, pairwise_seeds, scalar_from_bytes, self_mask_seed};
use crate::error::{AbortReason, CryptoError, PeerMisbehaved, ProtocolError};
use crate::messages::{ClientMessage, RevealedShare, ServerMessage, ShareKind};
use crate::{ClientId, Stage};

/// Shares received for one owner's secret, by holder.
type Received = BTreeMap<ClientId, Scalar>;

/// Waiting for revealed shares.
pub(super) struct ExpectUnmaskShares<A> {
    pub(super) deadline: Duration,
    membership: Membership,
    u3: BTreeSet<ClientId>,
    roll: Roll,
    /// Taken when the masks come off.
    acc: Option<A>,
    shares: HashMap<ClientId, Received>,
}

impl<A> Drop for ExpectUnmaskShares<A> {
    fn drop(&mut self) {
        for received in self.shares.values_mut() {
            received.values_mut().for_each(Zeroize::zeroize);
        }
    }
}

impl<A: Send + Sync> ExpectUnmaskShares<A> {
    pub(super) fn start<E: Accumulate<Accumulator = A>>(
        ctx: &mut Ctx<'_, E>,
        membership: Membership,
        u3: &[ClientId],
        roll: Roll,
        acc: A,
    ) -> State<E::Accumulator> {
        let s = Self {
            deadline: ctx.deadline(),
            membership,
            u3: u3.iter().copied().collect(),
            roll,
            acc: Some(acc),
            shares: HashMap::new(),
        };
        settle(s, ctx)
    }

    /// Checks one client's shares — exactly one per owner it holds checked shares of, of the
    /// kind U3 calls for — and stores them. Nothing is stored unless all of them pass.
    fn accept(&mut self, from: ClientId, shares: &[RevealedShare]) -> Result<(), ProtocolError> {
        let mut owners: BTreeSet<ClientId> = self
            .membership
            .holds
            .get(&from)
            .cloned()
            .unwrap_or_default();
        owners.insert(from);
        let mut parsed = Vec::with_capacity(shares.len());
        let mut seen = BTreeSet::new();
        let result = (|| {
            for s in shares {
                if !owners.contains(&s.owner) {
                    return Err(PeerMisbehaved::ShareNotHeld { owner: s.owner }.into());
                }
                if !seen.insert(s.owner) {
                    return Err(ProtocolError::Duplicate("revealed share"));
                }
                let want = if self.u3.contains(&s.owner) {
                    ShareKind::SelfMask
                } else {
                    ShareKind::MaskKey
                };
                if s.kind != want {
                    return Err(PeerMisbehaved::WrongShareKind {
                        owner: s.owner,
                        sent: s.kind.name(),
                        wanted: want.name(),
                    }
                    .into());
                }
                parsed.push((s.owner, scalar_from_bytes(&s.value)?));
            }
            if seen.len() != owners.len() {
                return Err(ProtocolError::WrongLength {
                    got: seen.len(),
                    want: owners.len(),
                });
            }
            Ok(())
        })();
        if let Err(e) = result {
            parsed.iter_mut().for_each(|(_, v)| v.zeroize());
            return Err(e);
        }
        for (owner, value) in parsed {
            self.shares.entry(owner).or_default().insert(from, value);
        }
        Ok(())
    }

    fn notify_all(&self) -> Vec<ClientId> {
        self.membership.session.keys.keys().copied().collect()
    }

    fn close<E: Accumulate<Accumulator = A>>(
        mut self,
        ctx: &mut Ctx<'_, E>,
    ) -> State<E::Accumulator> {
        ctx.events.push_back(ServerEvent::StageCompleted {
            stage: Stage::Unmasking,
            clients: self.roll.answered.len(),
        });
        let mut culprits = Vec::new();
        let terms = self.mask_terms(ctx.config.threshold(), &mut culprits);
        for (holder, owner) in culprits {
            let reason = ProtocolError::Crypto(CryptoError::Mismatch {
                owner,
                what: "share (it does not match its point; left out of the reconstruction)",
            });
            ctx.reject(holder, reason);
        }
        let terms = match terms {
            Ok(terms) => terms,
            Err(e) => return ctx.abort(AbortReason::CannotUnmask(e), self.notify_all()),
        };
        let len = ctx.config.vector_len();
        log::debug!(
            "unmasking with {} mask terms over {len} elements",
            terms.len()
        );
        // One fused pass in place, then the result crosses to the host once (the CPU
        // engine's memory becomes the result without a copy).
        let notify = self.notify_all();
        let Some(mut acc) = self.acc.take() else {
            return ctx.abort(AbortReason::StateLost("the accumulator is gone"), notify);
        };
        let wide = ctx.config.modulus().lane_kind() != secagg_engine::LaneKind::U32;
        let read = ctx
            .engine
            .mask_range(&mut acc, 0, len, 0, &terms, ctx.config.prg())
            .and_then(|()| {
                // The sum in the modulus's lanes: 64-bit elements above 2^32.
                if wide {
                    ctx.engine
                        .read_out_owned_lanes::<u64>(acc)
                        .map(|v| (Vec::new(), v))
                } else {
                    ctx.engine.read_out_owned(acc).map(|v| (v, Vec::new()))
                }
            });
        let (mut acc, mut acc_wide) = match read {
            Ok(read) => read,
            Err(e) => return ctx.abort(AbortReason::Engine(e.to_string()), notify),
        };
        let mask_terms = terms.len();
        drop(terms);
        let m = ctx.config.params();
        let total_weight = match (acc.get(m), acc_wide.get(m)) {
            (Some(&w), _) => u64::from(w),
            (None, Some(&w)) => w,
            (None, None) => {
                return ctx.abort(AbortReason::StateLost("the sum is short"), notify);
            }
        };
        acc.truncate(m);
        acc_wide.truncate(m);
        let included: Vec<ClientId> = self.u3.iter().copied().collect();
        let mut dropped = ctx.dropped.clone();
        dropped.sort_by_key(|d| d.client);
        let output = RoundOutput {
            sum: acc,
            sum_wide: acc_wide,
            total_weight,
            included,
            dropped,
            modulus: ctx.config.modulus(),
            mask_terms,
        };
        for c in notify {
            if !ctx.gone.contains_key(&c) {
                ctx.send(
                    c,
                    ServerMessage::Completed {
                        included: output.included.len() as u32,
                    },
                );
            }
        }
        ctx.events.push_back(ServerEvent::Completed);
        State::Completed(Some(Box::new(output)))
    }

    /// Rebuilds the secrets and lists the masks to remove, one owner per task on every core
    /// (the rebuilds and key agreements are independent). Holders whose shares are off the
    /// points are reported in `culprits` as (holder, owner).
    fn mask_terms(
        &self,
        t: usize,
        culprits: &mut Vec<(ClientId, ClientId)>,
    ) -> Result<Vec<MaskTerm>, ProtocolError> {
        let m = &self.membership;
        let session = &m.session;
        let mut jobs: Vec<(ClientId, Vec<ClientId>)> =
            self.u3.iter().map(|&u| (u, Vec::new())).collect();
        for &v in m.certified.difference(&self.u3) {
            let survivors: Vec<ClientId> = session
                .neighbors(v)
                .into_iter()
                .filter(|u| self.u3.contains(u))
                .collect();
            // A dropped client with no surviving neighbour left no mask in the sum.
            if !survivors.is_empty() {
                jobs.push((v, survivors));
            }
        }
        // Each surviving neighbour of a dropped client, as its prepared point 8·S, once.
        let mut peers: Vec<ClientId> = jobs.iter().flat_map(|(_, s)| s.iter().copied()).collect();
        peers.sort_unstable();
        peers.dedup();
        let points: HashMap<ClientId, EdwardsPoint> = peers
            .par_iter()
            .filter_map(|u| {
                let k = session.keys.get(u)?;
                masking_point(&k.masking).ok().map(|p| (*u, p))
            })
            .collect();
        // The Lagrange coefficients of every owner's first t holders, one inversion per batch.
        let mut sets: Vec<Vec<ClientId>> = jobs
            .iter()
            .filter_map(|(owner, _)| self.shares.get(owner))
            .filter(|r| r.len() >= t)
            .map(|r| r.keys().take(t).copied().collect())
            .collect();
        sets.sort_unstable();
        sets.dedup();
        let computed: Vec<Result<Vec<Lagrange>, CryptoError>> =
            sets.par_chunks(256).map(Lagrange::at_zero_many).collect();
        let mut lagrange: HashMap<Vec<ClientId>, Lagrange> = HashMap::with_capacity(sets.len());
        for chunk in computed {
            for l in chunk? {
                lagrange.insert(l.holders().to_vec(), l);
            }
        }
        type Done = (Vec<MaskTerm>, Vec<(ClientId, ClientId)>);
        let results: Vec<Result<Done, ProtocolError>> = jobs
            .par_iter()
            .map(|(owner, survivors)| {
                let owner = *owner;
                let received = self.shares.get(&owner);
                let dealer = m
                    .dealers
                    .get(&owner)
                    .ok_or(ProtocolError::UnknownClient(owner))?;
                if self.u3.contains(&owner) {
                    let (mut beta, bad) = rebuild(
                        received,
                        owner,
                        t,
                        &dealer.self_key,
                        &|h| dealer.point(h, false).copied(),
                        "self-mask secret",
                        &lagrange,
                    )?;
                    let term = MaskTerm::minus(self_mask_seed(&beta, &session.id));
                    beta.zeroize();
                    return Ok((vec![term], bad));
                }
                let (mut sigma, bad) = rebuild(
                    received,
                    owner,
                    t,
                    &dealer.mask_key,
                    &|h| dealer.point(h, true).copied(),
                    "mask-agreement key",
                    &lagrange,
                )?;
                let list: Vec<(ClientId, &EdwardsPoint)> = survivors
                    .iter()
                    .filter_map(|u| points.get(u).map(|p| (*u, p)))
                    .collect();
                let seeds = pairwise_seeds(&sigma, &session.id, owner, &list);
                sigma.zeroize();
                let terms = list
                    .iter()
                    .zip(seeds?)
                    .map(|((u, _), seed)| {
                        // u added +PRG(s_uv) when u < v and subtracted it otherwise; undo that.
                        if *u < owner {
                            MaskTerm::minus(seed)
                        } else {
                            MaskTerm::plus(seed)
                        }
                    })
                    .collect();
                Ok((terms, bad))
            })
            .collect();
        let mut terms = Vec::with_capacity(results.len());
        for r in results {
            let (t, bad) = r?;
            terms.extend(t);
            culprits.extend(bad);
        }
        Ok(terms)
    }
}

/// The secret of `owner` from `t` of the shares `received`, checked against its commitment
/// `secret_point`. When the first t do not open it, every share is checked alone against its
/// public point (`point_of` the holder) and the secret is rebuilt from t good ones; the holders
/// of bad shares come back as (holder, owner). Lagrange coefficients for the first t holders
/// come precomputed in `shared`.
fn rebuild(
    received: Option<&Received>,
    owner: ClientId,
    t: usize,
    secret_point: &EdwardsPoint,
    point_of: &dyn Fn(ClientId) -> Option<[u8; 32]>,
    what: &'static str,
    shared: &HashMap<Vec<ClientId>, Lagrange>,
) -> Result<(Scalar, Vec<(ClientId, ClientId)>), ProtocolError> {
    let have = received.map_or(0, BTreeMap::len);
    let Some(received) = received.filter(|_| have >= t) else {
        return Err(CryptoError::TooFewShares {
            owner,
            have,
            need: t,
        }
        .into());
    };
    let first: Vec<ClientId> = received.keys().take(t).copied().collect();
    if let Some(l) = shared.get(&first) {
        let mut secret = l.combine(received.values().take(t));
        if opens_to(secret_point, &secret) {
            return Ok((secret, Vec::new()));
        }
        secret.zeroize();
    }
    // Each share against its published point by the holders' own rule, all at once.
    let published: Vec<Option<[u8; 32]>> = received.keys().map(|h| point_of(*h)).collect();
    let checkable: Vec<(&Scalar, &[u8; 32])> = received
        .values()
        .zip(&published)
        .filter_map(|(v, p)| p.as_ref().map(|p| (v, p)))
        .collect();
    let mut verdicts = matches_points(&checkable).into_iter();
    let mut good: Vec<(&ClientId, &Scalar)> = Vec::with_capacity(received.len());
    let mut culprits: Vec<(ClientId, ClientId)> = Vec::new();
    for ((h, v), p) in received.iter().zip(&published) {
        if p.is_some() && verdicts.next().unwrap_or(false) {
            good.push((h, v));
        } else {
            culprits.push((*h, owner));
        }
    }
    if good.len() < t {
        return Err(CryptoError::TooFewShares {
            owner,
            have: good.len(),
            need: t,
        }
        .into());
    }
    let holders: Vec<ClientId> = good.iter().take(t).map(|(h, _)| **h).collect();
    let l = Lagrange::at_zero(&holders)?;
    let mut secret = l.combine(good.iter().take(t).map(|(_, v)| *v));
    if opens_to(secret_point, &secret) {
        Ok((secret, culprits))
    } else {
        secret.zeroize();
        Err(CryptoError::Mismatch { owner, what }.into())
    }
}

impl<A: Send + Sync> Collect<A> for ExpectUnmaskShares<A> {
    const STAGE: Stage = Stage::Unmasking;

    fn roll(&mut self) -> &mut Roll {
        &mut self.roll
    }

    fn take<E: Accumulate<Accumulator = A>>(
        &mut self,
        _ctx: &mut Ctx<'_, E>,
        from: ClientId,
        msg: ClientMessage,
    ) -> Result<Taken, ClientMessage> {
        let ClientMessage::UnmaskShares(shares) = msg else {
            return Err(msg);
        };
        Ok(match self.accept(from, &shares) {
            Ok(()) => Taken::Answered,
            Err(e) => Taken::Misbehaved(e),
        })
    }

    fn finish<E: Accumulate<Accumulator = A>>(self, ctx: &mut Ctx<'_, E>) -> State<A> {
        self.close(ctx)
    }

    fn wait(self) -> State<A> {
        State::Unmask(Box::new(self))
    }
}
