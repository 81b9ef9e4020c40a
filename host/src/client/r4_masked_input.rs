//! Stage 4 on the client: check the server's list of neighbours to mask with, then mask the
//! input with its self mask and one pairwise mask per such neighbour — in one engine pass —
//! and send it.
//!
//! The round-2 check (Bonawitz et al. 2017, in its SecAgg+ form): the client masks only if at
//! least t of its neighbours are on the list. A server that withholds bundles or declares
//! neighbours excluded would otherwise receive an input protected by the self mask alone (or
//! by masks shared only with colluders), and later ask the neighbours for the self mask. With
//! t partners and fewer than t corrupted neighbours (the planner's bound), at least one
//! partner is honest; the consistency round then keeps that partner's mask key out of the
//! server's reach while the partner survives.

use std::collections::BTreeMap;

use rand_core::CryptoRng;
use secagg_engine::{Backend, MaskTerm};
use zeroize::Zeroize;

use super::membership::Membership;
use super::membership::{Checked, Held};
use super::r5_consistency::ExpectSurvivorList;
use super::stream::MaskStream;
use super::{ClientError, Ctx, Input, Next, OwnShare, State};
use crate::ClientId;
use crate::codec::CHUNK_ELEMS;
use crate::crypto::{ClientSecrets, pairwise_seeds, self_mask_seed};
use crate::error::{LocalFailure, PeerMisbehaved, ProtocolError};
use crate::messages::{ClientMessage, PackedRun, PackedVector};
use curve25519_dalek::edwards::EdwardsPoint;

/// Waiting for the neighbours to mask with.
pub(super) struct ExpectMaskRequest {
    secrets: ClientSecrets,
    membership: Membership,
    checked: Checked,
    own_self_share: OwnShare,
}

impl ExpectMaskRequest {
    pub(super) fn new(
        secrets: ClientSecrets,
        membership: Membership,
        checked: Checked,
        own_self_share: OwnShare,
    ) -> Self {
        Self {
            secrets,
            membership,
            checked,
            own_self_share,
        }
    }

    pub(super) fn handle<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        partners: Vec<ClientId>,
    ) -> Next {
        if let Err(e) = self.check(ctx, &partners) {
            return Ok(State::Aborted(e));
        }
        let input = ctx.input.take();
        let source = if input.is_none() {
            ctx.source.take()
        } else {
            None
        };
        if input.is_none() && source.is_none() {
            let e = ProtocolError::ServerAborted("client had no input to send".into());
            return Err((ClientError::MissingInput, e));
        }
        let terms = match self.terms(ctx, &partners) {
            Ok(t) => t,
            Err(e) => return Ok(State::Aborted(e)),
        };
        let Some(input) = input else {
            // Streamed: masked and sent a piece at a time as the transport polls.
            if let Some(source) = source {
                *ctx.stream = Some(MaskStream::new(terms, source, ctx.config.vector_len()));
            }
            return Ok(self.into_survivors(partners));
        };
        let message = match &input {
            Input::Narrow(values) => mask(ctx, values, &terms).map(ClientMessage::MaskedInput),
            // Above 2^32 the masked vector goes out packed as the wire carries it, in runs of
            // one upload chunk each (a transport sends each as a CHUNK frame; every run but
            // the last ends on a byte), so nothing past the packer handles 64-bit elements.
            Input::Wide(values) => mask(ctx, values, &terms).map(|mut masked| {
                let bits = ctx.config.modulus().bits();
                let runs = masked
                    .chunks(CHUNK_ELEMS)
                    .enumerate()
                    .map(|(i, piece)| {
                        let mut bytes = Vec::new();
                        secagg_engine::packed::pack(piece, bits, &mut bytes);
                        PackedRun {
                            offset: i * CHUNK_ELEMS,
                            count: piece.len(),
                            bytes,
                        }
                    })
                    .collect();
                let len = masked.len();
                masked.zeroize();
                ClientMessage::PackedInput(PackedVector::from_checked_runs(bits, len, runs))
            }),
        };
        drop(input);
        drop(terms);
        match message {
            Ok(m) => ctx.send(m),
            Err(e) => {
                return Ok(State::Aborted(ProtocolError::Local(LocalFailure::Masking(
                    e.to_string(),
                ))));
            }
        }
        Ok(self.into_survivors(partners))
    }

    /// The self mask (added) and one pairwise mask per partner (added towards higher ids,
    /// subtracted towards lower), as engine terms.
    fn terms<E, R>(
        &self,
        ctx: &Ctx<'_, E, R>,
        partners: &[ClientId],
    ) -> Result<Vec<MaskTerm>, ProtocolError> {
        let me = ctx.id;
        let mut terms = Vec::with_capacity(partners.len() + 1);
        terms.push(MaskTerm::plus(self_mask_seed(
            self.secrets.self_scalar(),
            &self.membership.session,
        )));
        // The partners' keys, checked and prepared when they arrived (every partner is a
        // neighbour, so each has one).
        let peers: Vec<(ClientId, &EdwardsPoint)> = partners
            .iter()
            .map(|v| {
                self.membership
                    .mask_key(*v)
                    .map(|p| (*v, p))
                    .ok_or(ProtocolError::UnknownClient(*v))
            })
            .collect::<Result<_, _>>()?;
        let seeds = pairwise_seeds(
            self.secrets.mask_scalar(),
            &self.membership.session,
            me,
            &peers,
        )?;
        for ((v, _), seed) in peers.iter().zip(seeds) {
            terms.push(if me < *v {
                MaskTerm::plus(seed)
            } else {
                MaskTerm::minus(seed)
            });
        }
        Ok(terms)
    }

    /// The same request, for a client rebuilt from its journal that already sent its masked
    /// input: checked as before, then the same next state, with nothing masked or sent.
    pub(super) fn resume<E, R>(self, ctx: &mut Ctx<'_, E, R>, partners: Vec<ClientId>) -> State {
        if let Err(e) = self.check(ctx, &partners) {
            return State::Aborted(e);
        }
        if let Some(input) = ctx.input.take() {
            drop(input);
        }
        self.into_survivors(partners)
    }

    /// The secrets themselves are no longer needed: only the good shares held for the
    /// partners (a dealer that is no partner is never unmasked, so its shares go now).
    fn into_survivors(mut self, partners: Vec<ClientId>) -> State {
        let mut held: BTreeMap<ClientId, Held> = std::mem::take(&mut self.checked.held);
        held.retain(|v, _| partners.binary_search(v).is_ok());
        State::Survivors(Box::new(ExpectSurvivorList::new(
            self.membership,
            held,
            partners,
            self.own_self_share,
        )))
    }

    /// The list is sorted, within the neighbours whose bundles arrived, free of dealers this
    /// client proved to cheat, and long enough (the round-2 check).
    fn check<E, R>(&self, ctx: &Ctx<'_, E, R>, partners: &[ClientId]) -> Result<(), ProtocolError> {
        if partners.windows(2).any(|w| w[0] >= w[1]) {
            return Err(PeerMisbehaved::MaskRequestNotSorted.into());
        }
        if let Some(v) = partners.iter().find(|v| !self.checked.dealt.contains(v)) {
            return Err(PeerMisbehaved::MaskRequestUndelivered { id: *v }.into());
        }
        if let Some(v) = partners.iter().find(|v| self.checked.cheaters.contains(v)) {
            return Err(PeerMisbehaved::MaskRequestCheater { id: *v }.into());
        }
        let t = ctx.config.threshold();
        if partners.len() < t {
            return Err(ProtocolError::TooFewPartners {
                have: partners.len(),
                need: t,
            });
        }
        Ok(())
    }
}

/// `values` masked with `terms` (a copy: the input itself is zeroized when dropped).
fn mask<L: secagg_engine::Lane, E: Backend, R>(
    ctx: &Ctx<'_, E, R>,
    values: &[L],
    terms: &[MaskTerm],
) -> Result<Vec<L>, secagg_engine::EngineError> {
    let mut masked = values.to_vec();
    let result = ctx.engine.apply_masks(
        &mut masked,
        0,
        terms,
        ctx.config.prg(),
        ctx.config.modulus(),
    );
    if result.is_err() {
        bytemuck::cast_slice_mut::<L, u8>(&mut masked).zeroize();
    }
    result.map(|()| masked)
}
