//! Round 0 on the server: collect each client's two public keys.
//!
//! The stage ends when n clients have advertised, or at the deadline with at least the
//! minimum. Then the server fixes U1, derives the session id and the neighbour graph, and
//! sends every client in U1 the full key list.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use secagg_engine::Backend;

use super::r1_share_keys::ExpectShares;
use super::{Ctx, DropReason, Input, Roll, State};
use crate::crypto::{PublicKeys, SessionId, is_low_order};
use crate::error::{CryptoError, ProtocolError};
use crate::graph::NeighborGraph;
use crate::messages::{ClientMessage, ServerMessage};
use crate::{ClientId, Stage};

/// Waiting for public keys.
pub(super) struct ExpectKeys {
    pub(super) deadline: Duration,
    keys: BTreeMap<ClientId, PublicKeys>,
    /// Clients the transport admitted that have not advertised keys yet.
    joined: BTreeSet<ClientId>,
}

impl ExpectKeys {
    pub(super) fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            keys: BTreeMap::new(),
            joined: BTreeSet::new(),
        }
    }

    pub(super) fn handle<E: Backend>(mut self, ctx: &mut Ctx<'_, E>, input: Input) -> State {
        match input {
            Input::Message(from, ClientMessage::AdvertiseKeys(keys)) => {
                if self.keys.contains_key(&from) {
                    ctx.reject(from, ProtocolError::Duplicate("advertise-keys"));
                } else if ctx.gone.contains_key(&from) {
                    ctx.reject(from, ProtocolError::UnknownClient(from));
                } else if self.keys.len() >= ctx.config.clients() {
                    // The round is full: this client is not part of it.
                    ctx.reject(from, ProtocolError::UnknownClient(from));
                } else if is_low_order(&keys.encryption) || is_low_order(&keys.masking) {
                    let reason = ProtocolError::Crypto(CryptoError::NonContributory { peer: from });
                    self.joined.remove(&from);
                    ctx.drop_client(from, Stage::AdvertiseKeys, DropReason::Misbehaved(reason));
                } else {
                    self.joined.remove(&from);
                    self.keys.insert(from, keys);
                }
            }
            Input::Message(from, other) => {
                let reason = ProtocolError::UnexpectedMessage {
                    got: other.name(),
                    want: "advertise-keys",
                };
                self.joined.remove(&from);
                if self.keys.remove(&from).is_some() || !ctx.gone.contains_key(&from) {
                    ctx.drop_client(from, Stage::AdvertiseKeys, DropReason::Misbehaved(reason));
                } else {
                    ctx.reject(from, reason);
                }
            }
            Input::Gone(c, reason) => {
                self.joined.remove(&c);
                if self.keys.contains_key(&c) {
                    // It advertised and then left: it is in U1 and misses share keys, where
                    // the next stage's roll drops it at once, with this reason.
                    ctx.gone.insert(c, reason);
                } else if !ctx.gone.contains_key(&c) {
                    ctx.drop_client(c, Stage::AdvertiseKeys, reason);
                }
            }
            Input::Joined(c) => {
                if !self.keys.contains_key(&c) && !ctx.gone.contains_key(&c) {
                    self.joined.insert(c);
                }
            }
            Input::Deadline => {
                // Clients that joined but never advertised keys missed this stage.
                for c in std::mem::take(&mut self.joined) {
                    ctx.drop_client(c, Stage::AdvertiseKeys, DropReason::Timeout);
                }
                return self.finish(ctx);
            }
        }
        if self.keys.len() == ctx.config.clients() {
            return self.finish(ctx);
        }
        State::Keys(self)
    }

    fn finish<E: Backend>(self, ctx: &mut Ctx<'_, E>) -> State {
        if let Err(reason) = ctx.close_stage(
            Stage::AdvertiseKeys,
            self.keys.len(),
            self.keys.keys().copied(),
        ) {
            return State::Aborted(reason);
        }
        let list: Vec<(ClientId, PublicKeys)> = self.keys.into_iter().collect();
        let session = SessionId::derive(ctx.config, &list);
        let members: Vec<ClientId> = list.iter().map(|(id, _)| *id).collect();
        let graph = NeighborGraph::new(&session, &members, ctx.config.neighbors());
        let shared: std::sync::Arc<[(ClientId, PublicKeys)]> = list.clone().into();
        for id in &members {
            ctx.send(*id, ServerMessage::KeyList(shared.clone()));
        }
        let roll = Roll::start(ctx, Stage::ShareKeys, members);
        ExpectShares::start(ctx, session, list.into_iter().collect(), graph, roll)
    }
}
