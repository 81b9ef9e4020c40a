//! Stage 5 on the server: collect each survivor's signature on the survivor set's commitment
//! (and the leaves of it the survivor audits), and send every signer the signatures it needs
//! to check.
//!
//! The signatures are verified when the stage ends, all at once on every core. One that does
//! not verify under its sender's identity key drops the sender (it can no longer reveal
//! shares; its own input stays in the sum and its self mask is rebuilt from its holders). Each
//! signer then receives, for every secret it will reveal a share of, the signatures of at
//! least t of that secret's holders (nearest to it on the ring first, so that few of them are
//! strangers), the signers it does not know yet opened by identity with one proof, and the
//! audited leaves of the survivor set.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use secagg_engine::Accumulate;

use super::collect::{Collect, Taken, settle};
use super::membership::Membership;
use super::r6_unmasking::ExpectUnmaskShares;
use super::{Ctx, DropReason, Roll, State};
use crate::commit::RingSet;
use crate::crypto::{SURVIVORS_DOMAIN, survivors_digest};
use crate::error::{CodecError, ProtocolError};
use crate::graph::Ring;
use crate::messages::{ClientMessage, ServerMessage, UnmaskRequest};
use crate::{ClientId, Stage};

/// Waiting for signatures on the survivor set.
pub(super) struct ExpectSignatures<A> {
    pub(super) deadline: Duration,
    membership: Membership,
    u3: Vec<ClientId>,
    survivors: Arc<RingSet>,
    digest: [u8; 32],
    roll: Roll,
    acc: A,
    /// Signatures by signer's cohort index, and the leaves each signer audits.
    signatures: BTreeMap<u32, [u8; 64]>,
    audits: HashMap<ClientId, Vec<u32>>,
}

impl<A: Send + Sync> ExpectSignatures<A> {
    pub(super) fn start<E: Accumulate<Accumulator = A>>(
        ctx: &mut Ctx<'_, E>,
        membership: Membership,
        u3: &[ClientId],
        survivors: Arc<RingSet>,
        roll: Roll,
        acc: A,
    ) -> State<E::Accumulator> {
        let s = Self {
            deadline: ctx.deadline(),
            digest: survivors_digest(&membership.session.id, &survivors.commitment()),
            membership,
            u3: u3.to_vec(),
            survivors,
            roll,
            acc,
            signatures: BTreeMap::new(),
            audits: HashMap::new(),
        };
        settle(s, ctx)
    }

    /// The signer is a member with a known identity, its audit lies in the survivor set (the
    /// signature itself is verified when the stage ends).
    fn check(&self, from: ClientId, audit: &[u32]) -> Result<u32, ProtocolError> {
        let session = &self.membership.session;
        if !session.identities.contains_key(&from) {
            return Err(ProtocolError::UnknownClient(from));
        }
        let index = session
            .index_of(from)
            .ok_or(ProtocolError::UnknownClient(from))?;
        let len = self.survivors.commitment().len;
        if let Some(a) = audit.iter().find(|a| **a >= len) {
            return Err(CodecError::Invalid {
                field: "audit",
                why: format!("leaf {a} of a survivor set of {len}"),
            }
            .into());
        }
        Ok(index)
    }

    /// Verifies every signature, on every core, and drops the signers whose fail.
    fn verify_signatures<E>(&mut self, ctx: &mut Ctx<'_, E>) {
        use rayon::prelude::*;
        let session = &self.membership.session;
        let digest = self.digest;
        let bad: Vec<(u32, ProtocolError)> = self
            .signatures
            .par_iter()
            .filter_map(|(index, signature)| {
                let id = session.id_at(*index)?;
                let key = session.identities.get(&id)?;
                key.verify(SURVIVORS_DOMAIN, &digest, signature)
                    .err()
                    .map(|e| (*index, e.into()))
            })
            .collect();
        for (index, e) in bad {
            self.signatures.remove(&index);
            if let Some(id) = self.membership.session.id_at(index) {
                self.roll.answered.remove(&id);
                self.roll.expected.remove(&id);
                ctx.drop_client(id, Stage::Consistency, DropReason::Misbehaved(e));
            }
        }
    }

    fn close<E: Accumulate<Accumulator = A>>(
        mut self,
        ctx: &mut Ctx<'_, E>,
    ) -> State<E::Accumulator> {
        self.verify_signatures(ctx);
        let signers: Vec<ClientId> = self.roll.answered.iter().copied().collect();
        let live = signers.iter().filter(|c| !ctx.gone.contains_key(c)).count();
        let notify: Vec<ClientId> = self.membership.session.keys.keys().copied().collect();
        if let Err(reason) = ctx.close_stage(Stage::Consistency, live, notify) {
            return State::Aborted(reason);
        }
        let session = &self.membership.session;
        // Whose shares each signer reveals: its own, and the owners it holds checked shares of.
        let owners: HashMap<ClientId, Vec<u32>> = signers
            .iter()
            .map(|u| {
                let held = self.membership.holds.get(u);
                let owners = std::iter::once(*u)
                    .chain(held.into_iter().flatten().copied())
                    .filter_map(|v| session.index_of(v))
                    .collect();
                (*u, owners)
            })
            .collect();
        let request = Arc::new(Requests {
            roster: session.roster.clone(),
            survivors: self.survivors.clone(),
            signatures: self.signatures,
            audits: self.audits,
            owners,
            threshold: ctx.config.threshold(),
        });
        ctx.send_each(signers.iter().copied(), move |u| {
            request.for_signer(u).map(ServerMessage::UnmaskRequest)
        });
        let roll = Roll::start(ctx, Stage::Unmasking, signers);
        ExpectUnmaskShares::start(ctx, self.membership, &self.u3, roll, self.acc)
    }
}

/// What the unmask requests are built from, one per signer as they are polled.
struct Requests {
    roster: Arc<crate::commit::Roster>,
    survivors: Arc<RingSet>,
    signatures: BTreeMap<u32, [u8; 64]>,
    audits: HashMap<ClientId, Vec<u32>>,
    owners: HashMap<ClientId, Vec<u32>>,
    threshold: usize,
}

impl Requests {
    fn for_signer(&self, u: ClientId) -> Option<UnmaskRequest> {
        let cohort = self.roster.cohort();
        let ring = &self.roster.view().ring;
        let me = cohort.index_of(u)?;
        let chosen = choose_signers(
            ring,
            me,
            self.owners.get(&u)?,
            &self.signatures,
            self.threshold,
        );
        // The signers it has not seen yet: all but itself and its neighbours.
        let known: BTreeSet<u32> = std::iter::once(me).chain(ring.neighbors(me)).collect();
        let strangers: BTreeSet<u32> = chosen.difference(&known).copied().collect();
        let (identities, proof) = cohort.open(&BTreeSet::new(), &strangers);
        let audit = self
            .survivors
            .audited(self.audits.get(&u).map(Vec::as_slice).unwrap_or_default());
        Some(UnmaskRequest {
            survivors: self.survivors.commitment(),
            audit,
            signatures: chosen
                .iter()
                .filter_map(|i| self.signatures.get(i).map(|s| (*i, *s)))
                .collect(),
            identities,
            proof,
        })
    }
}

/// The signers whose signatures the member at cohort index `me` needs: for each owner, the
/// signing holders of the owner's secrets (the owner and its neighbours) nearest to `me` on the
/// ring, until `t` of them are chosen (all of them, when there are fewer).
fn choose_signers(
    ring: &Ring,
    me: u32,
    owners: &[u32],
    signatures: &BTreeMap<u32, [u8; 64]>,
    t: usize,
) -> BTreeSet<u32> {
    let n = ring.len();
    let here = ring.position(me).unwrap_or(0);
    let distance = |i: u32| {
        let p = ring.position(i).unwrap_or(0);
        let d = p.abs_diff(here);
        d.min(n - d)
    };
    let mut chosen = BTreeSet::new();
    for &owner in owners {
        let mut holders: Vec<u32> = std::iter::once(owner)
            .chain(ring.neighbors(owner))
            .filter(|h| signatures.contains_key(h))
            .collect();
        holders.sort_by_key(|h| (!chosen.contains(h), distance(*h), *h));
        chosen.extend(holders.into_iter().take(t));
    }
    chosen
}

impl<A: Send + Sync> Collect<A> for ExpectSignatures<A> {
    const STAGE: Stage = Stage::Consistency;

    fn roll(&mut self) -> &mut Roll {
        &mut self.roll
    }

    fn take<E: Accumulate<Accumulator = A>>(
        &mut self,
        _ctx: &mut Ctx<'_, E>,
        from: ClientId,
        msg: ClientMessage,
    ) -> Result<Taken, ClientMessage> {
        let ClientMessage::Consistency { signature, audit } = msg else {
            return Err(msg);
        };
        Ok(match self.check(from, &audit) {
            Ok(index) => {
                self.signatures.insert(index, signature);
                self.audits.insert(from, audit);
                Taken::Answered
            }
            Err(e) => Taken::Misbehaved(e),
        })
    }

    fn finish<E: Accumulate<Accumulator = A>>(self, ctx: &mut Ctx<'_, E>) -> State<A> {
        self.close(ctx)
    }

    fn wait(self) -> State<A> {
        State::Signatures(Box::new(self))
    }
}
