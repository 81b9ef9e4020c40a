//! Round 3 on the client: check the survivor list and reveal, for each neighbour whose
//! shares it holds, exactly one share — of the self mask if the neighbour survived, of the
//! mask key if it dropped — and never both for one neighbour in a round.

use std::collections::{BTreeMap, BTreeSet};

use curve25519_dalek::Scalar;
use rand_core::CryptoRng;
use secagg_engine::Backend;
use zeroize::Zeroize;

use super::{Ctx, State};
use crate::crypto::BundlePlaintext;
use crate::error::ProtocolError;
use crate::messages::{ClientMessage, RevealedShare, ShareKind};
use crate::{ClientId, Stage};

/// The two shares held for one neighbour. Zeroized on drop.
pub(super) struct Held {
    mask: Scalar,
    self_mask: Scalar,
}

impl From<&BundlePlaintext> for Held {
    fn from(p: &BundlePlaintext) -> Self {
        Held {
            mask: p.mask_share,
            self_mask: p.self_share,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.mask.zeroize();
        self.self_mask.zeroize();
    }
}

/// Waiting for the list of clients whose masked input arrived.
pub(super) struct ExpectUnmaskRequest {
    held: BTreeMap<ClientId, Held>,
    /// Neighbours that completed share keys but whose bundle failed authentication.
    unreadable: BTreeSet<ClientId>,
    own_self_share: Scalar,
    neighbors: Vec<ClientId>,
}

impl Drop for ExpectUnmaskRequest {
    fn drop(&mut self) {
        self.own_self_share.zeroize();
    }
}

impl ExpectUnmaskRequest {
    pub(super) fn new(
        held: BTreeMap<ClientId, Held>,
        unreadable: BTreeSet<ClientId>,
        own_self_share: Scalar,
        neighbors: Vec<ClientId>,
    ) -> Self {
        Self {
            held,
            unreadable,
            own_self_share,
            neighbors,
        }
    }

    pub(super) fn handle<E: Backend, R: CryptoRng>(
        self,
        ctx: &mut Ctx<'_, E, R>,
        u3: &[ClientId],
    ) -> State {
        match self.reveal(ctx, u3) {
            Ok(revealed) => State::Result(ExpectResult { revealed }),
            Err(e) => State::Aborted(e),
        }
    }

    fn reveal<E: Backend, R: CryptoRng>(
        &self,
        ctx: &mut Ctx<'_, E, R>,
        u3: &[ClientId],
    ) -> Result<BTreeMap<ClientId, ShareKind>, ProtocolError> {
        let me = ctx.id;
        let survivors: BTreeSet<ClientId> = u3.iter().copied().collect();
        if survivors.len() != u3.len() {
            return Err(ProtocolError::UnsafeRequest(
                "survivor list repeats a client".into(),
            ));
        }
        let need = ctx.config.min_survivors();
        if survivors.len() < need {
            return Err(ProtocolError::TooFewClients {
                stage: Stage::MaskedInput,
                have: survivors.len(),
                need,
            });
        }
        if !survivors.contains(&me) {
            return Err(ProtocolError::UnsafeRequest(
                "survivor list leaves out this client, which sent its masked input".into(),
            ));
        }
        // U3 must be within U2: a neighbour that sent us no bundle cannot have survived.
        if let Some(v) = self.neighbors.iter().find(|v| {
            survivors.contains(v) && !self.held.contains_key(v) && !self.unreadable.contains(v)
        }) {
            return Err(ProtocolError::UnsafeRequest(format!(
                "{v} is named a survivor but never completed share keys"
            )));
        }
        let mut shares = Vec::with_capacity(self.held.len() + 1);
        let mut revealed = BTreeMap::new();
        shares.push(RevealedShare {
            owner: me,
            kind: ShareKind::SelfMask,
            value: self.own_self_share.to_bytes(),
        });
        revealed.insert(me, ShareKind::SelfMask);
        for (&v, h) in &self.held {
            let (kind, value) = if survivors.contains(&v) {
                (ShareKind::SelfMask, h.self_mask)
            } else {
                (ShareKind::MaskKey, h.mask)
            };
            revealed.insert(v, kind);
            shares.push(RevealedShare {
                owner: v,
                kind,
                value: value.to_bytes(),
            });
        }
        for &v in &self.unreadable {
            revealed.insert(v, ShareKind::Unreadable);
            shares.push(RevealedShare {
                owner: v,
                kind: ShareKind::Unreadable,
                value: [0; 32],
            });
        }
        ctx.send(ClientMessage::UnmaskShares(shares));
        Ok(revealed)
    }
}

/// Waiting for the server to report the result. The held shares are gone: a second unmask
/// request — for instance one that now names a survivor as dropped — gets nothing.
pub(super) struct ExpectResult {
    revealed: BTreeMap<ClientId, ShareKind>,
}

impl ExpectResult {
    /// The server asked twice; answering could reveal both shares of a peer.
    pub(super) fn refuse_second_request(self) -> State {
        State::Aborted(ProtocolError::UnsafeRequest(format!(
            "second unmask request refused: shares of {} peers were already revealed",
            self.revealed.len()
        )))
    }
}
