//! The attacks of a malicious server (and of malicious clients), run in the attack laboratory
//! (`secagg_host::sim::lab`) over real sans-IO clients. Each test asserts the honest clients'
//! typed outcome AND tries, as the attacker would, to rebuild the target's input from
//! everything the clients sent ([`Lab::attempt_rebuild`]). One test breaks the bound on
//! purpose and shows that the same rebuild then succeeds, so the rebuild is real.
//!
//! One module per attack family: `keys` (substituted, forged and low-order keys and
//! identities), `policy` (what a client's own policy refuses: parameters, cohort sizes,
//! colluder budgets, round contexts), `commitments` (the committed cohort and key lists, and
//! the share bundles the server forwards), `survivors` (split, padded and foreign survivor
//! lists; survivor signatures and unmask requests), `dealers` (cheating dealers and false
//! reports) and `clients` (the misbehaviour of clients the server shrugs off, and streamed
//! inputs). This file holds what they share.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use secagg_host::crypto::ClientSecrets;
use secagg_host::identity::IdentityKey;
use secagg_host::server::ServerEvent;
use secagg_host::sim::SimConfig;
use secagg_host::sim::lab::Lab;
use secagg_host::{
    ClientId, ClientStatus, DropReason, PeerMisbehaved, ProtocolError, RoundConfig, ServerStatus,
    Stage,
};

#[path = "../support/mod.rs"]
mod support;
use support::seeded_config;

mod clients;
mod commitments;
mod dealers;
mod keys;
mod policy;
mod survivors;

const TARGET: ClientId = ClientId(0);

/// A lab of `n` clients, `k` neighbours, threshold `t`, every client enrolled, a policy that
/// checks every signature and list but sets no floor on the parameters.
fn lab_config(test: &str, n: usize, k: usize, t: usize) -> SimConfig {
    seeded_config(
        test,
        RoundConfig::builder(n, 20)
            .neighbors(k)
            .threshold(t)
            .bits(24),
    )
}

fn lab(test: &str, n: usize, k: usize, t: usize) -> Lab {
    Lab::new(lab_config(test, n, k, t)).unwrap()
}

fn aborted(lab: &Lab, id: ClientId) -> ProtocolError {
    match lab.status(id) {
        Some(ClientStatus::Aborted(e)) => e,
        other => panic!("client {id} did not abort: {other:?}"),
    }
}

fn completed(lab: &Lab) {
    assert_eq!(
        lab.server_status(),
        ServerStatus::Completed,
        "{:?}",
        lab.events()
    );
    assert!(
        lab.output_is_exact(),
        "the sum is not the sum of the included inputs"
    );
}

fn dropped(lab: &Lab, id: ClientId) -> Option<(Stage, DropReason)> {
    lab.events().iter().find_map(|e| match e {
        ServerEvent::ClientDropped(d) if d.client == id => Some((d.stage, d.reason.clone())),
        _ => None,
    })
}

/// Whether `e` is a proof of the list `list` that failed.
fn bad_proof(e: &ProtocolError, list: &str) -> bool {
    matches!(e, ProtocolError::PeerMisbehaved(PeerMisbehaved::BadProof { what, .. }) if *what == list)
}

fn attacker_keys() -> (ClientSecrets, IdentityKey) {
    let mut rng = ChaCha20Rng::seed_from_u64(0xa77ac);
    (
        ClientSecrets::generate(&mut rng),
        IdentityKey::generate(&mut rng),
    )
}
