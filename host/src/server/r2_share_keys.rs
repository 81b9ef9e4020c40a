//! Stage 2 on the server: check each dealer's commitments and route its sealed bundles to its
//! neighbours.
//!
//! The server checks what it can see: one bundle per neighbour, of the sealed size, and t
//! well-formed commitments to each secret whose first mask commitment is the dealer's
//! advertised mask key. It cannot open the bundles; it keeps a copy of each, so that a holder's
//! report that a bundle's shares are bad can be checked later. U2 is the set of dealers whose
//! share keys arrived.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use secagg_engine::Backend;

use super::r1_advertise_keys::Session;
use super::r3_share_check::ExpectShareChecks;
use super::{Ctx, DropReason, Input, Roll, State, late_or_unknown, out_of_turn};
use crate::crypto::{BUNDLE_LEN, Commitments};
use crate::error::ProtocolError;
use crate::messages::{
    ClientMessage, ForwardedBundle, SealedBundle, ServerMessage, ShareCommitments,
};
use crate::{ClientId, Stage};

/// A dealer's commitments, in wire form (forwarded) and parsed (for checking shares).
pub(super) struct Dealer {
    pub(super) wire: Arc<ShareCommitments>,
    pub(super) mask: Commitments,
    pub(super) self_mask: Commitments,
}

/// Waiting for share bundles.
pub(super) struct ExpectShares {
    pub(super) deadline: Duration,
    session: Session,
    roll: Roll,
    dealers: HashMap<ClientId, Dealer>,
    /// Bundles by recipient.
    inbox: HashMap<ClientId, Vec<ForwardedBundle>>,
}

impl ExpectShares {
    pub(super) fn start<E: Backend>(ctx: &mut Ctx<'_, E>, session: Session, roll: Roll) -> State {
        let s = Self {
            deadline: ctx.deadline(),
            session,
            roll,
            dealers: HashMap::new(),
            inbox: HashMap::new(),
        };
        s.check_done(ctx)
    }

    pub(super) fn handle<E: Backend>(mut self, ctx: &mut Ctx<'_, E>, input: Input) -> State {
        match input {
            Input::Message(from, msg) if self.roll.is_pending(from) => match msg {
                ClientMessage::ShareKeys {
                    commitments,
                    bundles,
                } => match self.check(ctx, from, &commitments, &bundles) {
                    Ok(dealer) => {
                        self.roll.answered.insert(from);
                        let wire = dealer.wire.clone();
                        self.dealers.insert(from, dealer);
                        for b in bundles {
                            self.inbox.entry(b.peer).or_default().push(ForwardedBundle {
                                sender: from,
                                commitments: wire.clone(),
                                ciphertext: b.ciphertext,
                            });
                        }
                    }
                    Err(e) => {
                        self.roll
                            .leave(ctx, from, Stage::ShareKeys, DropReason::Misbehaved(e))
                    }
                },
                other => out_of_turn(ctx, &mut self.roll, from, &other, Stage::ShareKeys),
            },
            Input::Message(from, msg) => ctx.reject(from, late_or_unknown(&self.roll, from, &msg)),
            Input::Gone(c, reason) => self.roll.leave(ctx, c, Stage::ShareKeys, reason),
            Input::Joined(_) => {}
            Input::Deadline => {
                self.roll.expire(ctx, Stage::ShareKeys);
                return self.finish(ctx);
            }
        }
        self.check_done(ctx)
    }

    /// One bundle for each neighbour, each of the sealed size; t commitments to each secret,
    /// every one a point of large order, the first mask commitment the advertised mask key.
    fn check<E>(
        &self,
        ctx: &Ctx<'_, E>,
        from: ClientId,
        commitments: &ShareCommitments,
        bundles: &[SealedBundle],
    ) -> Result<Dealer, ProtocolError> {
        let neighbors = self.session.graph.neighbors(from);
        let mut recipients: Vec<ClientId> = bundles.iter().map(|b| b.peer).collect();
        recipients.sort_unstable();
        if recipients != neighbors {
            let extra: Vec<String> = recipients
                .iter()
                .filter(|r| neighbors.binary_search(r).is_err())
                .map(|r| r.to_string())
                .collect();
            let dup = recipients.windows(2).any(|w| w[0] == w[1]);
            return Err(ProtocolError::Recipients(format!(
                "{} bundles for {} neighbours{}{}",
                bundles.len(),
                neighbors.len(),
                if extra.is_empty() {
                    String::new()
                } else {
                    format!(", non-neighbours {}", extra.join(","))
                },
                if dup { ", duplicates" } else { "" }
            )));
        }
        if let Some(b) = bundles.iter().find(|b| b.ciphertext.len() != BUNDLE_LEN) {
            return Err(ProtocolError::Recipients(format!(
                "bundle for {} has {} bytes, expected {BUNDLE_LEN}",
                b.peer,
                b.ciphertext.len()
            )));
        }
        let t = ctx.config.threshold();
        if commitments.mask.len() != t || commitments.self_mask.len() != t {
            return Err(crate::error::CryptoError::Commitment(format!(
                "{} and {} commitments, the threshold is {t}",
                commitments.mask.len(),
                commitments.self_mask.len()
            ))
            .into());
        }
        let advertised = self.session.keys.get(&from).map(|k| k.masking);
        if advertised != commitments.mask.first().copied() {
            return Err(crate::error::CryptoError::Commitment(
                "the first mask commitment is not the advertised mask key".into(),
            )
            .into());
        }
        Ok(Dealer {
            mask: Commitments::from_compressed(&commitments.mask)?,
            self_mask: Commitments::from_compressed(&commitments.self_mask)?,
            wire: Arc::new(commitments.clone()),
        })
    }

    fn check_done<E: Backend>(self, ctx: &mut Ctx<'_, E>) -> State {
        if self.roll.is_done() {
            self.finish(ctx)
        } else {
            State::Shares(Box::new(self))
        }
    }

    fn finish<E: Backend>(mut self, ctx: &mut Ctx<'_, E>) -> State {
        let u2: Vec<ClientId> = self.roll.answered.iter().copied().collect();
        let notify: Vec<ClientId> = self.session.keys.keys().copied().collect();
        if let Err(reason) = ctx.close_stage(Stage::ShareKeys, u2.len(), notify) {
            return State::Aborted(reason);
        }
        // A copy of every routed ciphertext, to check reports against.
        let mut routed: HashMap<(ClientId, ClientId), Vec<u8>> = HashMap::new();
        for &u in &u2 {
            // Every stored bundle came from a dealer that answered, so all senders are in U2.
            let mut bundles = self.inbox.remove(&u).unwrap_or_default();
            bundles.sort_by_key(|b| b.sender);
            for b in &bundles {
                routed.insert((b.sender, u), b.ciphertext.clone());
            }
            ctx.send(u, ServerMessage::ShareBundles(bundles));
        }
        let roll = Roll::start(ctx, Stage::ShareCheck, u2.iter().copied());
        ExpectShareChecks::start(ctx, self.session, self.dealers, routed, roll)
    }
}
