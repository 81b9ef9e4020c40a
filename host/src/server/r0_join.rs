//! Stage 0 on the server: collect each client's advertisement — its round keys and its
//! commitment to a graph nonce, signed — and check it on arrival: the encryption key is not of
//! small order, the mask-agreement key σ·B passes the one rule for points (canonical, in the
//! prime-order subgroup, not the identity; see [`crate::crypto::feldman::decode_points`]), the
//! credential is a certificate from the deployment CA for the sender's id (when the round is
//! enrolled), its selection ticket verifies and admits it (in a self-selected round), and the
//! signature covers the round, the id, the keys and the commitment — so that one client's bad
//! advertisement costs that client alone: a client aborts on any bad entry it is shown,
//! because only the server could have let it through. These checks (a certificate, a
//! signature, a ticket, a point decompression and subgroup check each) run when the stage
//! ends, all advertisements at once on every core; a client whose advertisement fails is
//! dropped at the join.
//!
//! The stage ends when n clients have joined, or at the deadline with at least the minimum, or
//! as soon as every admitted client has joined when n were admitted and some of them were lost
//! (dropped or gone before joining): a client that fails at the door costs the others nothing
//! but its place, not a whole stage deadline.
//! The server then fixes the cohort — every member's advertisement, sorted by id, under one
//! Merkle root — and sends each member the root and the proof of its own entry. From here on
//! the cohort only shrinks: a client outside it cannot reveal a nonce.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use secagg_engine::Accumulate;

use super::r1_advertise_keys::ExpectKeys;
use super::{Ctx, DropReason, Input, Roll, State};
use crate::RoundConfig;
use crate::commit::Cohort;
use crate::credentials::identity_key;
use crate::crypto::RoundDigest;
use crate::crypto::{ADVERTISE_DOMAIN, advertisement_message, is_low_order, masking_point};
use crate::error::{AbortReason, CryptoError, PeerMisbehaved, ProtocolError};
use crate::identity::CaPublicKey;
use crate::identity::IdentityPublicKey;
use crate::messages::{ClientMessage, SignedKeys};
use crate::selection::SelectionError;
use crate::{ClientId, Stage};

/// Waiting for advertisements.
pub(super) struct ExpectJoins {
    pub(super) deadline: Duration,
    /// Advertisements as they arrived, checked when the stage ends.
    commitments: BTreeMap<ClientId, SignedKeys>,
    /// Clients the transport admitted that have not joined yet.
    admitted: BTreeSet<ClientId>,
    /// Admitted clients lost before the cohort was fixed.
    lost: usize,
}

impl ExpectJoins {
    pub(super) fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            commitments: BTreeMap::new(),
            admitted: BTreeSet::new(),
            lost: 0,
        }
    }

    pub(super) fn handle<E: Accumulate>(
        mut self,
        ctx: &mut Ctx<'_, E>,
        input: Input,
    ) -> State<E::Accumulator> {
        match input {
            Input::Message(from, ClientMessage::Join(signed)) => {
                if self.commitments.contains_key(&from) {
                    ctx.reject(from, ProtocolError::Duplicate("join"));
                } else if ctx.gone.contains_key(&from)
                    || self.commitments.len() >= ctx.config.clients()
                {
                    // Gone already, or the round is full: this client is not part of it.
                    ctx.reject(from, ProtocolError::UnknownClient(from));
                } else {
                    self.admitted.remove(&from);
                    self.commitments.insert(from, signed);
                }
            }
            Input::Message(from, other) => {
                let reason = ProtocolError::UnexpectedMessage {
                    got: other.name(),
                    want: "join",
                };
                self.admitted.remove(&from);
                if self.commitments.remove(&from).is_some() || !ctx.gone.contains_key(&from) {
                    self.lost += 1;
                    ctx.drop_client(from, Stage::Join, DropReason::Misbehaved(reason));
                } else {
                    ctx.reject(from, reason);
                }
            }
            Input::Gone(c, reason) => {
                let was_admitted = self.admitted.remove(&c);
                if self.commitments.contains_key(&c) {
                    // It joined and then left: it is in the cohort and misses advertise keys,
                    // where the next stage's roll drops it at once, with this reason.
                    ctx.gone.insert(c, reason);
                } else if !ctx.gone.contains_key(&c) {
                    if was_admitted {
                        self.lost += 1;
                    }
                    ctx.drop_client(c, Stage::Join, reason);
                }
            }
            Input::Joined(c) => {
                if !self.commitments.contains_key(&c) && !ctx.gone.contains_key(&c) {
                    self.admitted.insert(c);
                }
            }
            Input::Deadline => {
                for c in std::mem::take(&mut self.admitted) {
                    ctx.drop_client(c, Stage::Join, DropReason::Timeout);
                }
                return self.finish(ctx);
            }
        }
        let n = ctx.config.clients();
        if self.commitments.len() == n
            || (self.lost > 0
                && self.admitted.is_empty()
                && self.commitments.len() + self.lost >= n)
        {
            return self.finish(ctx);
        }
        State::Joins(self)
    }

    fn finish<E: Accumulate>(self, ctx: &mut Ctx<'_, E>) -> State<E::Accumulator> {
        use rayon::prelude::*;
        let (round, config, ca) = (ctx.round, ctx.config, ctx.ca);
        let verdicts: Vec<(ClientId, Result<IdentityPublicKey, ProtocolError>)> = self
            .commitments
            .par_iter()
            .map(|(id, signed)| (*id, check(round, config, ca, *id, signed)))
            .collect();
        let mut identities: HashMap<ClientId, IdentityPublicKey> = HashMap::new();
        for (id, verdict) in verdicts {
            match verdict {
                Ok(key) => {
                    identities.insert(id, key);
                }
                Err(e) => ctx.drop_client(id, Stage::Join, DropReason::Misbehaved(e)),
            }
        }
        let mut commitments = self.commitments;
        commitments.retain(|id, _| identities.contains_key(id));
        let members: Vec<ClientId> = commitments.keys().copied().collect();
        if let Err(reason) = ctx.close_stage(Stage::Join, members.len(), members.iter().copied()) {
            return State::Aborted(reason);
        }
        let cohort = match Cohort::new(commitments) {
            Ok(c) => Arc::new(c),
            Err(e) => return ctx.abort(AbortReason::StateLost(leak(e)), members),
        };
        let shared = cohort.clone();
        ctx.send_each(members.iter().copied(), move |id| {
            shared.index_of(id).and_then(|i| shared.welcome(i))
        });
        let roll = Roll::start(ctx, Stage::AdvertiseKeys, members);
        ExpectKeys::start(ctx, cohort, identities, roll)
    }
}

/// A tree too wide for the protocol (more than 2^32 members) cannot happen: the round's
/// configuration bounds n far below.
fn leak(_: crate::merkle::MerkleError) -> &'static str {
    "the cohort does not fit a Merkle tree"
}

/// The encryption key is not of small order, the mask-agreement key passes the one rule for
/// points, the credential, the ticket and the signature verify.
fn check(
    round: &RoundDigest,
    config: &RoundConfig,
    ca: Option<&CaPublicKey>,
    from: ClientId,
    signed: &SignedKeys,
) -> Result<IdentityPublicKey, ProtocolError> {
    if is_low_order(&signed.keys.encryption) {
        return Err(CryptoError::NonContributory { peer: from }.into());
    }
    masking_point(&signed.keys.masking)?;
    let key = identity_key(ca, from, &signed.credential)?;
    match (config.selection(), ca, &signed.ticket) {
        (None, _, None) => {}
        (Some(selection), Some(ca), Some(ticket)) => selection
            .check(ca, &key, ticket)
            .map_err(PeerMisbehaved::Ticket)?,
        (None, _, Some(_)) => {
            return Err(PeerMisbehaved::Ticket(SelectionError::Unexpected).into());
        }
        (Some(_), _, None) | (Some(_), None, Some(_)) => {
            return Err(PeerMisbehaved::Ticket(SelectionError::Missing).into());
        }
    }
    let message = advertisement_message(round, from, &signed.keys, &signed.commitment);
    key.verify(ADVERTISE_DOMAIN, &message, &signed.signature)?;
    Ok(key)
}
