//! Round 3 on the server: collect the revealed shares, rebuild the secrets, and remove every
//! mask in one engine pass.
//!
//! For each client in U3 the server rebuilds its self-mask secret; for each client that sent
//! share keys but no masked input (U2 \ U3) and has a neighbour in U3, its mask-agreement key.
//! Each rebuilt secret is checked — the self-mask against the owner's commitment, the mask key
//! against the advertised public key — so a wrong share cannot silently corrupt the sum.
//! Lagrange coefficients are computed once per set of share holders. The mask job then
//! subtracts every survivor's self mask and cancels every pairwise mask between a dropped
//! client and its surviving neighbours, over the whole vector at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use curve25519_dalek::Scalar;
use curve25519_dalek::edwards::EdwardsPoint;
use rayon::prelude::*;
use secagg_engine::{Backend, MaskTerm};
use zeroize::Zeroize;

use super::r1_share_keys::{Session, late_or_unknown};
use super::{Ctx, DropReason, Input, Roll, RoundOutput, ServerEvent, State, out_of_turn};
use crate::crypto::{
    Lagrange, PublicKeys, edwards_of, mask_public_key, mask_secret_key, pairwise_seeds,
    scalar_from_bytes, self_mask_commitment, self_mask_seed,
};
use crate::error::{CryptoError, ProtocolError};
use crate::messages::{ClientMessage, RevealedShare, ServerMessage, ShareKind};
use crate::{ClientId, Stage};

/// Shares received for one owner's secret, by holder.
type Received = BTreeMap<ClientId, Scalar>;

/// Waiting for revealed shares.
pub(super) struct ExpectUnmaskShares {
    pub(super) deadline: Duration,
    session: Session,
    commitments: HashMap<ClientId, [u8; 32]>,
    u2: BTreeSet<ClientId>,
    u3: BTreeSet<ClientId>,
    roll: Roll,
    acc: Vec<u32>,
    shares: HashMap<ClientId, Received>,
    /// (reporter, owner): bundles the reporter could not authenticate.
    unreadable: Vec<(ClientId, ClientId)>,
}

impl Drop for ExpectUnmaskShares {
    fn drop(&mut self) {
        for received in self.shares.values_mut() {
            received.values_mut().for_each(Zeroize::zeroize);
        }
    }
}

impl ExpectUnmaskShares {
    pub(super) fn start<E: Backend>(
        ctx: &mut Ctx<'_, E>,
        session: Session,
        commitments: HashMap<ClientId, [u8; 32]>,
        u2: Vec<ClientId>,
        u3: Vec<ClientId>,
        roll: Roll,
        acc: Vec<u32>,
    ) -> State {
        let s = Self {
            deadline: ctx.deadline(),
            session,
            commitments,
            u2: u2.into_iter().collect(),
            u3: u3.into_iter().collect(),
            roll,
            acc,
            shares: HashMap::new(),
            unreadable: Vec::new(),
        };
        s.check_done(ctx)
    }

    pub(super) fn handle<E: Backend>(mut self, ctx: &mut Ctx<'_, E>, input: Input) -> State {
        match input {
            Input::Message(from, msg) if self.roll.is_pending(from) => match msg {
                ClientMessage::UnmaskShares(shares) => match self.accept(from, &shares) {
                    Ok(()) => {
                        self.roll.answered.insert(from);
                    }
                    Err(e) => {
                        self.roll
                            .leave(ctx, from, Stage::Unmasking, DropReason::Misbehaved(e))
                    }
                },
                other => out_of_turn(ctx, &mut self.roll, from, &other, Stage::Unmasking),
            },
            Input::Message(from, msg) => ctx.reject(from, late_or_unknown(&self.roll, from, &msg)),
            Input::Gone(c, reason) => self.roll.leave(ctx, c, Stage::Unmasking, reason),
            Input::Joined(_) => {}
            Input::Deadline => {
                self.roll.expire(ctx, Stage::Unmasking);
                return self.finish(ctx);
            }
        }
        self.check_done(ctx)
    }

    /// Checks one client's shares — exactly one per owner it holds a share of, of the kind
    /// U3 calls for — and stores them. Nothing is stored unless all of them pass.
    fn accept(&mut self, from: ClientId, shares: &[RevealedShare]) -> Result<(), ProtocolError> {
        let mut owners: BTreeSet<ClientId> = self
            .session
            .graph
            .neighbors(from)
            .into_iter()
            .filter(|v| self.u2.contains(v))
            .collect();
        owners.insert(from);
        let mut parsed = Vec::with_capacity(shares.len());
        let mut seen = BTreeSet::new();
        let mut reported = Vec::new();
        let result = (|| {
            for s in shares {
                if !owners.contains(&s.owner) {
                    return Err(ProtocolError::UnsafeRequest(format!(
                        "share of {} which {from} does not hold",
                        s.owner
                    )));
                }
                if !seen.insert(s.owner) {
                    return Err(ProtocolError::Duplicate("revealed share"));
                }
                if s.kind == ShareKind::Unreadable && s.owner != from {
                    // The owner's bundle to `from` failed authentication: no share here.
                    reported.push(s.owner);
                    continue;
                }
                let want = if self.u3.contains(&s.owner) {
                    ShareKind::SelfMask
                } else {
                    ShareKind::MaskKey
                };
                if s.kind != want {
                    return Err(ProtocolError::UnsafeRequest(format!(
                        "{:?} share of {} where {:?} was asked for",
                        s.kind, s.owner, want
                    )));
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
        self.unreadable
            .extend(reported.into_iter().map(|owner| (from, owner)));
        Ok(())
    }

    fn check_done<E: Backend>(self, ctx: &mut Ctx<'_, E>) -> State {
        if self.roll.is_done() {
            self.finish(ctx)
        } else {
            State::Unmask(self)
        }
    }

    fn notify_all(&self) -> Vec<ClientId> {
        self.session.keys.keys().copied().collect()
    }

    fn finish<E: Backend>(mut self, ctx: &mut Ctx<'_, E>) -> State {
        ctx.events.push_back(ServerEvent::StageCompleted {
            stage: Stage::Unmasking,
            clients: self.roll.answered.len(),
        });
        for &(reporter, owner) in &self.unreadable {
            log::warn!("client {reporter} could not authenticate the share bundle of {owner}");
            ctx.reject(
                owner,
                ProtocolError::Crypto(CryptoError::Decrypt { from: owner }),
            );
        }
        let mut culprits = Vec::new();
        let terms = self.mask_terms(ctx.config.threshold(), &mut culprits);
        for (holder, owner) in culprits {
            let reason = ProtocolError::Crypto(CryptoError::Mismatch {
                owner,
                what: "share (left out of the reconstruction)",
            });
            ctx.reject(holder, reason);
        }
        let terms = match terms {
            Ok(terms) => terms,
            Err(e) => return ctx.abort(format!("cannot unmask: {e}"), self.notify_all()),
        };
        log::debug!(
            "unmasking with {} mask terms over {} elements",
            terms.len(),
            self.acc.len()
        );
        if let Err(e) = ctx.engine.apply_masks(
            &mut self.acc,
            0,
            &terms,
            ctx.config.prg(),
            ctx.config.modulus(),
        ) {
            return ctx.abort(format!("aggregation engine failed: {e}"), self.notify_all());
        }
        let mask_terms = terms.len();
        drop(terms);
        let m = ctx.config.params();
        let total_weight = u64::from(self.acc[m]);
        let mut acc = std::mem::take(&mut self.acc);
        acc.truncate(m);
        let included: Vec<ClientId> = self.u3.iter().copied().collect();
        let mut dropped = ctx.dropped.clone();
        dropped.sort_by_key(|d| d.client);
        let output = RoundOutput {
            sum: acc,
            total_weight,
            included,
            dropped,
            modulus: ctx.config.modulus(),
            mask_terms,
        };
        for c in self.notify_all() {
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
        State::Completed(Box::new(output))
    }

    /// Rebuilds the secrets and lists the masks to remove, one owner per task on every core
    /// (the rebuilds and key agreements are independent). Holders whose shares fail the
    /// check are reported in `culprits` as (holder, owner).
    fn mask_terms(
        &self,
        t: usize,
        culprits: &mut Vec<(ClientId, ClientId)>,
    ) -> Result<Vec<MaskTerm>, ProtocolError> {
        let session = &self.session;
        let mut jobs: Vec<(ClientId, Vec<ClientId>)> =
            self.u3.iter().map(|&u| (u, Vec::new())).collect();
        for &v in self.u2.difference(&self.u3) {
            let survivors: Vec<ClientId> = session
                .graph
                .neighbors(v)
                .into_iter()
                .filter(|u| self.u3.contains(u))
                .collect();
            // A dropped client with no surviving neighbour left no mask in the sum.
            if !survivors.is_empty() {
                jobs.push((v, survivors));
            }
        }
        // Each surviving neighbour of a dropped client, as an Edwards point, once.
        let mut peers: Vec<ClientId> = jobs.iter().flat_map(|(_, s)| s.iter().copied()).collect();
        peers.sort_unstable();
        peers.dedup();
        let points: HashMap<ClientId, Option<EdwardsPoint>> = peers
            .par_iter()
            .map(|u| (*u, session.keys.get(u).and_then(|k| edwards_of(&k.masking))))
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
        type Done = (Vec<MaskTerm>, Option<(ClientId, ClientId)>);
        let results: Vec<Result<Done, ProtocolError>> = jobs
            .par_iter()
            .map_init(HashMap::new, |local, (owner, survivors)| {
                let owner = *owner;
                let received = self.shares.get(&owner);
                if self.u3.contains(&owner) {
                    let committed = self.commitments.get(&owner).copied();
                    let valid =
                        |b: &Scalar| committed == Some(self_mask_commitment(b, &session.id, owner));
                    let (mut beta, culprit) = rebuild(
                        received,
                        owner,
                        t,
                        "self-mask secret",
                        &valid,
                        &lagrange,
                        local,
                    )?;
                    let term = MaskTerm::minus(self_mask_seed(&beta, &session.id));
                    beta.zeroize();
                    return Ok((vec![term], culprit));
                }
                let advertised = session.keys.get(&owner).map(|k| k.masking);
                let valid = |s: &Scalar| advertised == Some(mask_public_key(s));
                let (mut sigma, culprit) = rebuild(
                    received,
                    owner,
                    t,
                    "mask-agreement key",
                    &valid,
                    &lagrange,
                    local,
                )?;
                let secret = mask_secret_key(&sigma);
                sigma.zeroize();
                let list: Vec<(ClientId, &PublicKeys, Option<&EdwardsPoint>)> = survivors
                    .iter()
                    .filter_map(|u| {
                        let keys = session.keys.get(u)?;
                        Some((*u, keys, points.get(u).and_then(Option::as_ref)))
                    })
                    .collect();
                let seeds = pairwise_seeds(&secret, &session.id, owner, &list)?;
                let terms = list
                    .iter()
                    .zip(seeds)
                    .map(|((u, _, _), seed)| {
                        // u added +PRG(s_uv) when u < v and subtracted it otherwise; undo that.
                        if *u < owner {
                            MaskTerm::minus(seed)
                        } else {
                            MaskTerm::plus(seed)
                        }
                    })
                    .collect();
                Ok((terms, culprit))
            })
            .collect();
        let mut terms = Vec::with_capacity(results.len());
        for r in results {
            let (t, culprit) = r?;
            terms.extend(t);
            culprits.extend(culprit);
        }
        Ok(terms)
    }
}

/// The secret of `owner` from `t` of the shares `received`, checked by `valid`. When the first
/// t fail and spare shares exist, each holder in turn is left out, so one bad share cannot sink
/// the round; the holder whose exclusion fixes it is returned as (holder, owner). Lagrange
/// coefficients come from `shared` (precomputed for the first t holders) or, for the retries,
/// from `local`, keyed by the set of holders.
fn rebuild(
    received: Option<&Received>,
    owner: ClientId,
    t: usize,
    what: &'static str,
    valid: &dyn Fn(&Scalar) -> bool,
    shared: &HashMap<Vec<ClientId>, Lagrange>,
    local: &mut HashMap<Vec<ClientId>, Lagrange>,
) -> Result<(Scalar, Option<(ClientId, ClientId)>), ProtocolError> {
    let have = received.map_or(0, BTreeMap::len);
    let Some(received) = received.filter(|_| have >= t) else {
        return Err(CryptoError::TooFewShares {
            owner,
            have,
            need: t,
        }
        .into());
    };
    let all: Vec<(ClientId, &Scalar)> = received.iter().map(|(h, v)| (*h, v)).collect();
    let mut attempt = |skip: Option<usize>| -> Result<Option<Scalar>, ProtocolError> {
        let chosen: Vec<(ClientId, &Scalar)> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, s)| *s)
            .take(t)
            .collect();
        let holders: Vec<ClientId> = chosen.iter().map(|(h, _)| *h).collect();
        let lagrange = match shared.get(&holders) {
            Some(l) => l,
            None => match local.entry(holders) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let l = Lagrange::at_zero(e.key())?;
                    e.insert(l)
                }
            },
        };
        let mut secret = lagrange.combine(chosen.iter().map(|(_, v)| *v));
        if valid(&secret) {
            Ok(Some(secret))
        } else {
            secret.zeroize();
            Ok(None)
        }
    };
    if let Some(secret) = attempt(None)? {
        return Ok((secret, None));
    }
    if have > t {
        for (j, (holder, _)) in all.iter().enumerate() {
            if let Some(secret) = attempt(Some(j))? {
                return Ok((secret, Some((*holder, owner))));
            }
        }
    }
    Err(CryptoError::Mismatch { owner, what }.into())
}
