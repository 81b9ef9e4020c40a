//! Stage 0 on the client: draw a fresh graph nonce and commit to it.
//!
//! The nonce is revealed only with the client's keys, after the server has fixed the cohort —
//! every member's commitment — so the neighbour graph, which the nonces seed, is unknown to
//! the server while it can still choose who is in the round.

use std::collections::VecDeque;

use rand_core::CryptoRng;

use super::r1_advertise_keys::ExpectCohort;
use crate::ClientId;
use crate::config::RoundConfig;
use crate::crypto::{RoundDigest, nonce_commitment};
use crate::messages::{ClientMessage, Envelope};

/// Draws the nonce, queues `Join`, and waits for the cohort.
pub(super) fn join<R: CryptoRng>(
    id: ClientId,
    config: &RoundConfig,
    round: &RoundDigest,
    ticket: Option<crate::selection::Ticket>,
    rng: &mut R,
    outbox: &mut VecDeque<Envelope<ClientMessage>>,
) -> ExpectCohort {
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut nonce);
    let commitment = nonce_commitment(round, id, &nonce);
    log::trace!("client {id} joins round {}", config.round_id());
    outbox.push_back(Envelope {
        round: config.round_id(),
        message: ClientMessage::Join {
            nonce_commitment: commitment,
        },
    });
    ExpectCohort::new(nonce, commitment, ticket)
}
