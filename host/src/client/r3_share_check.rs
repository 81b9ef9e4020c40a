//! Stage 3 on the client: open the bundles from its neighbours and check every share against
//! its public point (share·B, which the server checked lies on the dealer's polynomial), then
//! report the dealers whose bundles failed. First, the present-set leaves it audited must be
//! open and keep to their splits: a present set padded with a repeated or out-of-range position
//! is caught by whoever opens the bad leaf, before it masks anything.
//!
//! A bundle that does not authenticate is reported as unreadable (nobody can tell whether the
//! dealer or the server broke it). A bundle that opens but holds a share off the dealer's
//! committed polynomial is reported with the pair's bundle key: the server opens the bundle it
//! routed with that key and sees the bad share itself, so the dealer is excluded before anyone
//! masks with it, and a false report costs only the reporter.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use curve25519_dalek::Scalar;
use rand_core::CryptoRng;
use secagg_engine::Backend;

use super::audit::check_audit;
use super::membership::{Checked, Held, Membership};
use super::r4_masked_input::ExpectMaskRequest;
use super::{Ctx, OwnShare, State};
use crate::ClientId;
use crate::crypto::feldman::matches_points;
use crate::crypto::{BundleKey, ClientSecrets};
use crate::error::{PeerMisbehaved, ProtocolError};
use crate::messages::{ClientMessage, DealerReport, ForwardedBundle, ReportKind, SetOpening};
use crate::view::label;

/// Waiting for the bundles the neighbours sealed for this client.
pub(super) struct ExpectShareBundles {
    secrets: ClientSecrets,
    membership: Membership,
    bundle_keys: HashMap<ClientId, BundleKey>,
    own_self_share: OwnShare,
    /// The present set's leaves this client audits.
    audit: Vec<u32>,
}

impl ExpectShareBundles {
    pub(super) fn new(
        secrets: ClientSecrets,
        membership: Membership,
        bundle_keys: HashMap<ClientId, BundleKey>,
        own_self_share: OwnShare,
        audit: Vec<u32>,
    ) -> Self {
        Self {
            secrets,
            membership,
            bundle_keys,
            own_self_share,
            audit,
        }
    }

    pub(super) fn handle<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        bundles: Vec<ForwardedBundle>,
        audit: &SetOpening,
    ) -> State {
        let present = self.membership.present;
        if let Err(e) = check_audit(
            audit,
            label::PRESENT,
            &present,
            &self.audit,
            self.membership.cohort.len,
            "present set",
        ) {
            return State::Aborted(e);
        }
        let (checked, reports) = match self.check_all(ctx, &bundles) {
            Ok(r) => r,
            Err(e) => return State::Aborted(e),
        };
        ctx.send(ClientMessage::ShareCheck(reports));
        State::MaskRequest(Box::new(ExpectMaskRequest::new(
            self.secrets,
            self.membership,
            checked,
            self.own_self_share,
        )))
    }

    /// Opens and checks every bundle, each from a distinct neighbour. A bundle from a
    /// non-neighbour or a repeated sender is the server's doing and aborts.
    fn check_all<E: Backend, R: CryptoRng>(
        &self,
        ctx: &mut Ctx<'_, E, R>,
        bundles: &[ForwardedBundle],
    ) -> Result<(Checked, Vec<DealerReport>), ProtocolError> {
        let me = ctx.id;
        let session = &self.membership.session;
        let mut dealt = BTreeSet::new();
        let mut reports = Vec::new();
        // (dealer, its bundle, the opened shares)
        let mut opened: Vec<(ClientId, &ForwardedBundle, Held)> = Vec::new();
        for b in bundles {
            let Some(key) = self.bundle_keys.get(&b.sender) else {
                return Err(PeerMisbehaved::BundleFromStranger { sender: b.sender }.into());
            };
            if !dealt.insert(b.sender) {
                return Err(ProtocolError::Duplicate("share bundle"));
            }
            match key.open(session, b.sender, me, &b.binding(), &b.ciphertext) {
                Ok(p) => opened.push((
                    b.sender,
                    b,
                    Held {
                        mask: p.mask_share,
                        self_mask: p.self_share,
                    },
                )),
                Err(e) => {
                    log::warn!("client {me}: {e}; reporting it and continuing without its shares");
                    reports.push(DealerReport {
                        dealer: b.sender,
                        kind: ReportKind::Unreadable,
                    });
                }
            }
        }
        // Both shares of every opened bundle against their points, with one batched inversion.
        let pairs: Vec<(&Scalar, &[u8; 32])> = opened
            .iter()
            .flat_map(|(_, b, h)| [(&h.mask, &b.mask_point), (&h.self_mask, &b.self_point)])
            .collect();
        let ok = matches_points(&pairs);
        let bad: BTreeSet<usize> = ok
            .iter()
            .enumerate()
            .filter(|(_, ok)| !**ok)
            .map(|(j, _)| j / 2)
            .collect();
        drop(pairs);
        let mut held = BTreeMap::new();
        let mut cheaters = BTreeSet::new();
        for (i, (dealer, _, h)) in opened.into_iter().enumerate() {
            if bad.contains(&i) {
                log::warn!(
                    "client {me}: dealer {dealer} sent shares that do not match their points"
                );
                let bundle_key = self
                    .bundle_keys
                    .get(&dealer)
                    .map(BundleKey::reveal)
                    .unwrap_or_default();
                reports.push(DealerReport {
                    dealer,
                    kind: ReportKind::BadShares { bundle_key },
                });
                cheaters.insert(dealer);
            } else {
                held.insert(dealer, h);
            }
        }
        reports.sort_by_key(|r| r.dealer);
        Ok((
            Checked {
                held,
                dealt,
                cheaters,
            },
            reports,
        ))
    }
}
