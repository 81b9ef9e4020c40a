//! Stage 3 on the client: open the bundles from its neighbours and check every share against
//! its dealer's Feldman commitments, then report the dealers whose bundles failed.
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
use zeroize::Zeroize;

use super::r2_share_keys::Membership;
use super::r4_masked_input::ExpectMaskRequest;
use super::{Ctx, OwnShare, State};
use crate::ClientId;
use crate::crypto::feldman::{ShareCheck, verify_many};
use crate::crypto::{BundleKey, ClientSecrets, Commitments};
use crate::error::ProtocolError;
use crate::messages::{ClientMessage, DealerReport, ForwardedBundle, ReportKind};

/// The two shares held for one neighbour. Zeroized on drop.
pub(super) struct Held {
    pub(super) mask: Scalar,
    pub(super) self_mask: Scalar,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.mask.zeroize();
        self.self_mask.zeroize();
    }
}

/// Waiting for the bundles the neighbours sealed for this client.
pub(super) struct ExpectShareBundles {
    secrets: ClientSecrets,
    membership: Membership,
    bundle_keys: HashMap<ClientId, BundleKey>,
    own_self_share: OwnShare,
}

/// What the check of the bundles left.
pub(super) struct Checked {
    /// Good shares, by dealer.
    pub(super) held: BTreeMap<ClientId, Held>,
    /// Dealers whose bundles arrived (good or not).
    pub(super) dealt: BTreeSet<ClientId>,
    /// Dealers proved to have dealt bad shares.
    pub(super) cheaters: BTreeSet<ClientId>,
}

impl ExpectShareBundles {
    pub(super) fn new(
        secrets: ClientSecrets,
        membership: Membership,
        bundle_keys: HashMap<ClientId, BundleKey>,
        own_self_share: OwnShare,
    ) -> Self {
        Self {
            secrets,
            membership,
            bundle_keys,
            own_self_share,
        }
    }

    pub(super) fn handle<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        bundles: Vec<ForwardedBundle>,
    ) -> State {
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
    /// non-neighbour, a repeated sender or commitments of the wrong shape are the server's
    /// doing (it must have checked them) and abort.
    fn check_all<E: Backend, R: CryptoRng>(
        &self,
        ctx: &mut Ctx<'_, E, R>,
        bundles: &[ForwardedBundle],
    ) -> Result<(Checked, Vec<DealerReport>), ProtocolError> {
        let me = ctx.id;
        let t = ctx.config.threshold();
        let session = &self.membership.session;
        let mut dealt = BTreeSet::new();
        let mut reports = Vec::new();
        // (dealer, mask commitments, self commitments, opened shares)
        let mut opened: Vec<(ClientId, Commitments, Commitments, Held)> = Vec::new();
        for b in bundles {
            let Some(key) = self.bundle_keys.get(&b.sender) else {
                return Err(ProtocolError::UnsafeRequest(format!(
                    "bundle from {}, who is not a neighbour",
                    b.sender
                )));
            };
            if !dealt.insert(b.sender) {
                return Err(ProtocolError::Duplicate("share bundle"));
            }
            let c = &b.commitments;
            let advertised = self.membership.entry(b.sender).map(|e| e.keys.masking);
            if c.mask.len() != t || c.self_mask.len() != t || advertised != c.mask.first().copied()
            {
                return Err(ProtocolError::UnsafeRequest(format!(
                    "the commitments forwarded for {} do not fit the round or its key",
                    b.sender
                )));
            }
            let mask = Commitments::from_compressed(&c.mask)?;
            let self_mask = Commitments::from_compressed(&c.self_mask)?;
            match key.open(session, b.sender, me, &c.digest(), &b.ciphertext) {
                Ok(p) => opened.push((
                    b.sender,
                    mask,
                    self_mask,
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
        // Both shares of every opened bundle in one batch: check j is dealer j / 2.
        let checks: Vec<ShareCheck<'_>> = opened
            .iter()
            .flat_map(|(_, mc, sc, h)| {
                [
                    ShareCheck {
                        commitments: mc,
                        holder: me,
                        share: &h.mask,
                    },
                    ShareCheck {
                        commitments: sc,
                        holder: me,
                        share: &h.self_mask,
                    },
                ]
            })
            .collect();
        let bad: BTreeSet<usize> = match verify_many(&checks, ctx.rng) {
            Ok(()) => BTreeSet::new(),
            Err(bad) => bad.into_iter().map(|j| j / 2).collect(),
        };
        drop(checks);
        let mut held = BTreeMap::new();
        let mut cheaters = BTreeSet::new();
        for (i, (dealer, _, _, h)) in opened.into_iter().enumerate() {
            if bad.contains(&i) {
                log::warn!("client {me}: dealer {dealer} sent shares off its commitments");
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
