//! Stage 0 on the client: draw the round's keys and a fresh graph nonce, and advertise the keys
//! with a commitment to the nonce, signed with the identity key.
//!
//! The keys go out now, before any cohort exists, so that they are fixed — in the cohort the
//! server commits to — before anyone's nonce is revealed: nothing the graph depends on can be
//! chosen after a nonce is seen. The nonce itself is revealed only after the cohort is fixed.

use std::collections::VecDeque;

use rand_core::CryptoRng;

use super::ClientIdentity;
use super::r1_advertise_keys::ExpectCohort;
use crate::config::RoundConfig;
use crate::crypto::{
    ADVERTISE_DOMAIN, ClientSecrets, RoundDigest, advertisement_message, nonce_commitment,
};
use crate::messages::{ClientMessage, Envelope, SignedKeys};

/// Draws the keys and the nonce, queues `Join`, and waits for the cohort.
pub(super) fn join<R: CryptoRng>(
    identity: &ClientIdentity,
    config: &RoundConfig,
    round: &RoundDigest,
    ticket: Option<crate::selection::Ticket>,
    rng: &mut R,
    outbox: &mut VecDeque<Envelope<ClientMessage>>,
) -> ExpectCohort {
    let id = identity.id;
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut nonce);
    let commitment = nonce_commitment(round, id, &nonce);
    let secrets = ClientSecrets::generate(rng);
    let keys = secrets.public_keys();
    let message = advertisement_message(round, id, &keys, &commitment);
    let signed = SignedKeys {
        keys,
        commitment,
        credential: identity.credential.clone(),
        signature: identity.key.sign(ADVERTISE_DOMAIN, &message),
        ticket,
    };
    log::trace!("client {id} joins round {}", config.round_id());
    outbox.push_back(Envelope {
        round: config.round_id(),
        message: ClientMessage::Join(signed.clone()),
    });
    ExpectCohort::new(secrets, nonce, signed)
}
