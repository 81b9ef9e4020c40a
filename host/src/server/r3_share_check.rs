//! Stage 3 on the server: collect each holder's report on the bundles it received, judge the
//! reports, and tell every holder which neighbours to mask with.
//!
//! A report that a bundle's shares are bad carries the pair's bundle key. The server opens the
//! ciphertext it routed with that key and checks the shares against their public points
//! itself: if they are bad the dealer is excluded (it can neither mask nor be unmasked, so it
//! cannot sink the round later); if the key does not open the bundle, or the shares are good,
//! the report is false and the reporter is dropped. A dealer too few of whose holders could
//! read their shares to ever rebuild its secrets is excluded too. Everyone else in U2 is
//! certified: each holder masks with its certified neighbours.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use secagg_engine::Accumulate;

use super::collect::{Collect, Taken, settle};
use super::membership::Dealer;
use super::membership::Membership;
use super::membership::Session;
use super::r4_masked_input::ExpectMaskedInputs;
use super::{Ctx, DropReason, Roll, State};
use crate::crypto::feldman::share_matches;
use crate::crypto::{BUNDLE_LEN, BundleKey};
use crate::error::{PeerMisbehaved, ProtocolError};
use crate::messages::{ClientMessage, DealerReport, ReportKind, SealedBundle, ServerMessage};
use crate::{ClientId, Stage};

/// A copy of every bundle the server routed, to check reports against: per dealer, its
/// sealed bundles sorted by recipient (checked to be [`BUNDLE_LEN`] bytes on arrival, so
/// kept inline, without an allocation or a map entry per bundle).
pub(super) struct Routed(HashMap<ClientId, Vec<(ClientId, [u8; BUNDLE_LEN])>>);

impl Routed {
    /// Room for `dealers` dealers.
    pub(super) fn with_capacity(dealers: usize) -> Self {
        Self(HashMap::with_capacity(dealers))
    }

    /// Keeps a copy of `dealer`'s bundles.
    pub(super) fn keep(&mut self, dealer: ClientId, bundles: &[SealedBundle]) {
        let mut kept: Vec<(ClientId, [u8; BUNDLE_LEN])> = bundles
            .iter()
            .filter_map(|b| Some((b.peer, b.ciphertext.as_slice().try_into().ok()?)))
            .collect();
        kept.sort_unstable_by_key(|b| b.0);
        self.0.insert(dealer, kept);
    }

    /// The bundle `dealer` sealed for `holder`, if the server routed one.
    fn get(&self, dealer: ClientId, holder: ClientId) -> Option<&[u8; BUNDLE_LEN]> {
        let kept = self.0.get(&dealer)?;
        let i = kept.binary_search_by_key(&holder, |b| b.0).ok()?;
        kept.get(i).map(|b| &b.1)
    }
}

/// Waiting for share-check reports.
pub(super) struct ExpectShareChecks {
    pub(super) deadline: Duration,
    session: Session,
    dealers: HashMap<ClientId, Dealer>,
    routed: Routed,
    roll: Roll,
    /// Dealers each responder reported (it holds no checked shares of them).
    reported: HashMap<ClientId, BTreeSet<ClientId>>,
    /// Dealers proved to cheat, with the holder whose report proved it.
    cheaters: BTreeMap<ClientId, ClientId>,
}

impl ExpectShareChecks {
    pub(super) fn start<E: Accumulate>(
        ctx: &mut Ctx<'_, E>,
        session: Session,
        dealers: HashMap<ClientId, Dealer>,
        routed: Routed,
        roll: Roll,
    ) -> State<E::Accumulator> {
        let s = Self {
            deadline: ctx.deadline(),
            session,
            dealers,
            routed,
            roll,
            reported: HashMap::new(),
            cheaters: BTreeMap::new(),
        };
        settle(s, ctx)
    }

    /// Checks one holder's reports: each names a distinct neighbour that dealt to it; each
    /// claim of bad shares is proved. Returns the reported dealers and those proved to cheat.
    fn judge(
        &self,
        from: ClientId,
        reports: &[DealerReport],
    ) -> Result<(BTreeSet<ClientId>, Vec<ClientId>), ProtocolError> {
        let mut seen = BTreeSet::new();
        let mut proved = Vec::new();
        for r in reports {
            let d = r.dealer;
            let Some(ciphertext) = self.routed.get(d, from) else {
                return Err(PeerMisbehaved::ReportOnStranger { dealer: d }.into());
            };
            if !seen.insert(d) {
                return Err(ProtocolError::Duplicate("dealer report"));
            }
            if let ReportKind::BadShares { bundle_key } = &r.kind {
                let Some(dealer) = self.dealers.get(&d) else {
                    return Err(ProtocolError::UnknownClient(d));
                };
                let key = BundleKey::from_bytes(*bundle_key);
                let binding = dealer
                    .binding(from)
                    .ok_or(ProtocolError::UnknownClient(from))?;
                let opened = key
                    .open(&self.session.id, d, from, &binding, ciphertext)
                    .map_err(|_| ProtocolError::FalseReport {
                        dealer: d,
                        why: "the revealed key does not open the bundle",
                    })?;
                // The holder's own rule, byte for byte.
                let matches = |mask: bool, share| {
                    dealer
                        .point(from, mask)
                        .is_some_and(|p| share_matches(share, p))
                };
                if matches(true, &opened.mask_share) && matches(false, &opened.self_share) {
                    return Err(ProtocolError::FalseReport {
                        dealer: d,
                        why: "the shares in the bundle match their points",
                    });
                }
                proved.push(d);
            }
        }
        Ok((seen, proved))
    }

    fn close<E: Accumulate>(self, ctx: &mut Ctx<'_, E>) -> State<E::Accumulator> {
        let t = ctx.config.threshold();
        let responders = &self.roll.answered;
        let mut excluded: BTreeMap<ClientId, ProtocolError> = BTreeMap::new();
        for (&d, &holder) in &self.cheaters {
            excluded.insert(d, ProtocolError::CheatingDealer { dealer: d, holder });
        }
        let mut dealt: Vec<ClientId> = self.dealers.keys().copied().collect();
        dealt.sort_unstable();
        for &d in &dealt {
            if excluded.contains_key(&d) {
                continue;
            }
            // Neighbours holding checked shares: those that answered without reporting d. Its
            // mask key, needed if it drops, has no share of its own, so they must be t.
            let readable = self
                .session
                .neighbors(d)
                .into_iter()
                .filter(|v| {
                    responders.contains(v) && !self.reported.get(v).is_some_and(|r| r.contains(&d))
                })
                .count();
            if readable < t {
                excluded.insert(
                    d,
                    ProtocolError::UnrecoverableDealer {
                        dealer: d,
                        readable,
                        need: t,
                    },
                );
            }
        }
        let certified: BTreeSet<ClientId> = dealt
            .iter()
            .copied()
            .filter(|d| !excluded.contains_key(d))
            .collect();
        let mut roll = self.roll;
        for (d, reason) in excluded {
            log::warn!("excluding dealer {d}: {reason}");
            if roll.is_pending(d) {
                roll.leave(ctx, d, Stage::ShareCheck, DropReason::Misbehaved(reason));
            } else if roll.answered.contains(&d) {
                // It completed this stage but may not take part in the next.
                if !ctx.gone.contains_key(&d) {
                    ctx.send(
                        d,
                        ServerMessage::Aborted(format!("excluded from the round: {reason}")),
                    );
                }
                ctx.drop_client(d, Stage::MaskedInput, DropReason::Misbehaved(reason));
            }
        }
        let maskers: Vec<ClientId> = roll
            .answered
            .iter()
            .copied()
            .filter(|c| certified.contains(c))
            .collect();
        let live = maskers.iter().filter(|c| !ctx.gone.contains_key(c)).count();
        let notify: Vec<ClientId> = self.session.keys.keys().copied().collect();
        if let Err(reason) = ctx.close_stage(Stage::ShareCheck, live, notify) {
            return State::Aborted(reason);
        }
        let mut holds: HashMap<ClientId, BTreeSet<ClientId>> = HashMap::new();
        for &u in &maskers {
            let partners: Vec<ClientId> = self
                .session
                .neighbors(u)
                .into_iter()
                .filter(|v| certified.contains(v))
                .collect();
            let reported = self.reported.get(&u);
            holds.insert(
                u,
                partners
                    .iter()
                    .copied()
                    .filter(|v| !reported.is_some_and(|r| r.contains(v)))
                    .collect(),
            );
            if !ctx.gone.contains_key(&u) {
                ctx.send(u, ServerMessage::MaskRequest(partners));
            }
        }
        let membership = Membership {
            session: self.session,
            dealers: self.dealers,
            certified,
            holds,
        };
        let roll = Roll::start(ctx, Stage::MaskedInput, maskers);
        ExpectMaskedInputs::start(ctx, membership, roll)
    }
}

impl<A: Send + Sync> Collect<A> for ExpectShareChecks {
    const STAGE: Stage = Stage::ShareCheck;

    fn roll(&mut self) -> &mut Roll {
        &mut self.roll
    }

    fn take<E: Accumulate<Accumulator = A>>(
        &mut self,
        _ctx: &mut Ctx<'_, E>,
        from: ClientId,
        msg: ClientMessage,
    ) -> Result<Taken, ClientMessage> {
        let ClientMessage::ShareCheck(reports) = msg else {
            return Err(msg);
        };
        Ok(match self.judge(from, &reports) {
            Ok((dealers, proved)) => {
                self.reported.insert(from, dealers);
                for d in proved {
                    self.cheaters.entry(d).or_insert(from);
                }
                Taken::Answered
            }
            Err(e) => Taken::Misbehaved(e),
        })
    }

    fn finish<E: Accumulate<Accumulator = A>>(self, ctx: &mut Ctx<'_, E>) -> State<A> {
        self.close(ctx)
    }

    fn wait(self) -> State<A> {
        State::Checks(Box::new(self))
    }
}
