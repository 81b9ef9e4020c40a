//! Round 0 on the client: draw the round's secrets and advertise the two public keys.

use std::collections::VecDeque;

use rand_core::CryptoRng;

use super::r1_share_keys::ExpectKeyList;
use crate::ClientId;
use crate::config::RoundConfig;
use crate::crypto::ClientSecrets;
use crate::messages::{ClientMessage, Envelope};

/// Draws fresh secrets, queues `AdvertiseKeys`, and waits for the key list.
pub(super) fn advertise<R: CryptoRng>(
    id: ClientId,
    config: &RoundConfig,
    rng: &mut R,
    outbox: &mut VecDeque<Envelope<ClientMessage>>,
) -> ExpectKeyList {
    let secrets = ClientSecrets::generate(rng);
    let keys = secrets.public_keys();
    log::trace!(
        "client {id} advertises its keys for round {}",
        config.round_id()
    );
    outbox.push_back(Envelope {
        round: config.round_id(),
        message: ClientMessage::AdvertiseKeys(keys),
    });
    ExpectKeyList::new(secrets, keys)
}
