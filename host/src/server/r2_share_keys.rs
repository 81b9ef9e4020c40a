//! Stage 2 on the server: check each dealing and route its sealed bundles to the neighbours.
//!
//! The server checks what it can see: one bundle per neighbour, of the sealed size (on arrival),
//! and the public points of the dealing — σ·B (the advertised mask key) with every σ share·B,
//! β·B with the dealer's own and every other β share·B — each under the one rule for points
//! (canonical, in the prime-order subgroup, not the identity), each set on one polynomial of
//! degree < t (a random codeword of that set's dual code annihilates it; all dealings at the
//! end of the stage, on every core, with one field inversion for all). A dealer whose points
//! fail is dropped here, before anyone relies on its shares. The server cannot open the
//! bundles; it keeps a copy of each, so that a holder's report that a bundle's shares do not
//! match their points can be checked later, by the holder's own byte-exact rule. U2 is the set
//! of dealers whose share keys arrived and passed.

use std::collections::HashMap;
use std::time::Duration;

use secagg_engine::Accumulate;

use super::collect::{Collect, Taken, settle};
use super::membership::{Dealer, Session};
use super::r3_share_check::{ExpectShareChecks, Routed};
use super::{Ctx, DropReason, Roll, State};

use sha2::{Digest, Sha256};

use crate::crypto::BUNDLE_LEN;
use crate::crypto::feldman::{Dealing, verify_dealings};
use crate::error::{BundleMismatch, ProtocolError};
use crate::messages::{ClientMessage, ForwardedBundle, SealedBundle, ServerMessage};
use crate::{ClientId, Stage};

/// Dealings checked at once at the end of the stage (see [`ExpectShares::verify`]).
const VERIFY_CHUNK: usize = 1024;

/// A dealing as it arrived: β·B, the dealer's own β share point, its bundles, and the leaves of
/// the present set its dealer audits.
struct Received {
    self_key: [u8; 32],
    own_point: [u8; 32],
    bundles: Vec<SealedBundle>,
    audit: Vec<u32>,
}

/// Waiting for share bundles.
pub(super) struct ExpectShares {
    pub(super) deadline: Duration,
    session: Session,
    roll: Roll,
    received: HashMap<ClientId, Received>,
}

impl ExpectShares {
    pub(super) fn start<E: Accumulate>(
        ctx: &mut Ctx<'_, E>,
        session: Session,
        roll: Roll,
    ) -> State<E::Accumulator> {
        let s = Self {
            deadline: ctx.deadline(),
            session,
            roll,
            received: HashMap::new(),
        };
        settle(s, ctx)
    }

    /// One bundle for each present neighbour, each of the sealed size; the audited leaves lie
    /// in the present set.
    fn check(
        &self,
        from: ClientId,
        bundles: &[SealedBundle],
        audit: &[u32],
    ) -> Result<(), ProtocolError> {
        let present = self.session.roster.present().commitment().len;
        if let Some(a) = audit.iter().find(|a| **a >= present) {
            return Err(crate::error::CodecError::Invalid {
                field: "audit",
                why: format!("leaf {a} of a present set of {present}"),
            }
            .into());
        }
        let neighbors = self.session.neighbors(from);
        let mut recipients: Vec<ClientId> = bundles.iter().map(|b| b.peer).collect();
        recipients.sort_unstable();
        if recipients != neighbors {
            let strangers: Vec<ClientId> = recipients
                .iter()
                .filter(|r| neighbors.binary_search(r).is_err())
                .copied()
                .collect();
            return Err(ProtocolError::Recipients(BundleMismatch::Recipients {
                bundles: bundles.len(),
                neighbors: neighbors.len(),
                strangers,
                duplicates: recipients.windows(2).any(|w| w[0] == w[1]),
            }));
        }
        if let Some(b) = bundles.iter().find(|b| b.ciphertext.len() != BUNDLE_LEN) {
            return Err(ProtocolError::Recipients(BundleMismatch::Length {
                peer: b.peer,
                len: b.ciphertext.len(),
                want: BUNDLE_LEN,
            }));
        }
        Ok(())
    }

    /// Checks every dealing's points, [`VERIFY_CHUNK`] dealings at a time (each chunk on
    /// every core, with one field inversion for the chunk); the dealers that fail are
    /// dropped, the others become [`Dealer`]s.
    fn verify<E>(&mut self, ctx: &mut Ctx<'_, E>) -> HashMap<ClientId, Dealer> {
        let mut order: Vec<ClientId> = self.received.keys().copied().collect();
        order.sort_unstable();
        let mut verdicts = Vec::with_capacity(order.len());
        // In chunks: the decompressed points of every dealing at once would cost about
        // 2·k·160 bytes per dealer, all held together at the stage's end.
        for chunk in order.chunks(VERIFY_CHUNK) {
            let dealings: Vec<Dealing<'_>> = chunk
                .iter()
                .filter_map(|d| self.received.get(d).map(|r| (*d, r)))
                .map(|(d, r)| self.dealing(d, r))
                .collect();
            verdicts.extend(verify_dealings(&dealings, ctx.config.threshold()));
        }
        let mut dealers = HashMap::with_capacity(order.len());
        for (d, verdict) in order.into_iter().zip(verdicts) {
            match verdict {
                Ok(checked) => {
                    if let Some(r) = self.received.get(&d) {
                        let mut points: Vec<(ClientId, [u8; 32], [u8; 32])> = r
                            .bundles
                            .iter()
                            .map(|b| (b.peer, b.mask_point, b.self_point))
                            .chain(std::iter::once((d, [0; 32], r.own_point)))
                            .collect();
                        points.sort_unstable_by_key(|p| p.0);
                        dealers.insert(
                            d,
                            Dealer {
                                mask_key: checked.mask_key,
                                self_key: checked.self_key,
                                self_key_bytes: r.self_key,
                                points,
                            },
                        );
                    }
                }
                Err(e) => {
                    self.received.remove(&d);
                    self.roll.answered.remove(&d);
                    self.roll.expected.remove(&d);
                    ctx.drop_client(d, Stage::ShareKeys, DropReason::Misbehaved(e.into()));
                }
            }
        }
        dealers
    }

    /// Dealer `d`'s dealing as it arrived, with its transcript.
    fn dealing<'a>(&'a self, d: ClientId, r: &'a Received) -> Dealing<'a> {
        const ZERO: [u8; 32] = [0u8; 32];
        // The random dual codeword is seeded by everything the dealer committed to.
        let mut h = Sha256::new();
        h.update(b"secagg/v2/dealing-transcript");
        h.update(self.session.id.0);
        h.update(d.0.to_le_bytes());
        h.update(r.self_key);
        h.update(r.own_point);
        for b in &r.bundles {
            h.update(b.peer.0.to_le_bytes());
            h.update(b.mask_point);
            h.update(b.self_point);
        }
        Dealing {
            dealer: d,
            mask_key: self.session.keys.get(&d).map_or(&ZERO, |k| &k.masking),
            self_key: &r.self_key,
            own_point: &r.own_point,
            points: r
                .bundles
                .iter()
                .map(|b| (b.peer, &b.mask_point, &b.self_point))
                .collect(),
            transcript: h.finalize().into(),
        }
    }

    fn close<E: Accumulate>(mut self, ctx: &mut Ctx<'_, E>) -> State<E::Accumulator> {
        let dealers = self.verify(ctx);
        let u2: Vec<ClientId> = self.roll.answered.iter().copied().collect();
        let notify: Vec<ClientId> = self.session.keys.keys().copied().collect();
        if let Err(reason) = ctx.close_stage(Stage::ShareKeys, u2.len(), notify) {
            return State::Aborted(reason);
        }
        // Bundles by recipient, and a copy of every routed ciphertext to check reports against.
        let mut inbox: HashMap<ClientId, Vec<ForwardedBundle>> = HashMap::new();
        let mut routed = Routed::with_capacity(self.received.len());
        let mut audits: HashMap<ClientId, Vec<u32>> = HashMap::new();
        for (from, r) in self.received.drain() {
            audits.insert(from, r.audit);
            routed.keep(from, &r.bundles);
            for b in r.bundles {
                inbox.entry(b.peer).or_default().push(ForwardedBundle {
                    sender: from,
                    self_key: r.self_key,
                    mask_point: b.mask_point,
                    self_point: b.self_point,
                    ciphertext: b.ciphertext,
                });
            }
        }
        let present = self.session.roster.present();
        for &u in &u2 {
            // Only dealers in U2 left bundles, so every sender is in U2.
            let mut bundles = inbox.remove(&u).unwrap_or_default();
            bundles.sort_by_key(|b| b.sender);
            let audit = present.audited(audits.get(&u).map(Vec::as_slice).unwrap_or_default());
            ctx.send(u, ServerMessage::ShareBundles { bundles, audit });
        }
        let roll = Roll::start(ctx, Stage::ShareCheck, u2.iter().copied());
        ExpectShareChecks::start(ctx, self.session, dealers, routed, roll)
    }
}

impl<A: Send + Sync> Collect<A> for ExpectShares {
    const STAGE: Stage = Stage::ShareKeys;

    fn roll(&mut self) -> &mut Roll {
        &mut self.roll
    }

    fn take<E: Accumulate<Accumulator = A>>(
        &mut self,
        _ctx: &mut Ctx<'_, E>,
        from: ClientId,
        msg: ClientMessage,
    ) -> Result<Taken, ClientMessage> {
        let ClientMessage::ShareKeys {
            self_key,
            own_point,
            bundles,
            audit,
        } = msg
        else {
            return Err(msg);
        };
        Ok(match self.check(from, &bundles, &audit) {
            Ok(()) => {
                let received = Received {
                    self_key,
                    own_point,
                    bundles,
                    audit,
                };
                self.received.insert(from, received);
                Taken::Answered
            }
            Err(e) => Taken::Misbehaved(e),
        })
    }

    fn finish<E: Accumulate<Accumulator = A>>(self, ctx: &mut Ctx<'_, E>) -> State<A> {
        self.close(ctx)
    }

    fn wait(self) -> State<A> {
        State::Shares(Box::new(self))
    }
}
