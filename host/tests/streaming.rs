//! The simulator's network hands each stage's server messages to the clients a slice at a
//! time (`Network::run`, so that n opened key lists never wait decoded at once): a round run
//! one server frame per exchange must give the same output and the same bytes, stage by
//! stage, as the same round with every message routed at once — and the sum must be the
//! plaintext sum of the clients that sent their masked inputs. Inputs come from a printed
//! seed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg_engine::{CpuEngine, testing};
use secagg_host::identity::IdentityKey;
use secagg_host::server::{RoundOutput, Server, ServerStatus};
use secagg_host::sim::{self, DropMode, DropSchedule, Honest, Network, StageStats};
use secagg_host::{Client, ClientId, ClientIdentity, RoundConfig, Stage};

const N: usize = 24;
const M: usize = 300;
const BITS: u32 = 20;

/// Client `i`'s quantized input (weight 1, sent after the values), from the seed.
fn input(seed: u64, i: usize) -> Vec<u32> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ (0x1_0000 + i as u64));
    (0..M).map(|_| rng.next_u32() >> (32 - BITS)).collect()
}

/// One round of `N` clients, two of whom leave before their masked input, with the network
/// moving `budget` bytes of server frames per exchange.
fn round(seed: u64, budget: usize) -> (RoundOutput, Vec<StageStats>) {
    let config = RoundConfig::builder(N, M)
        .round_id(seed)
        .neighbors(8)
        .threshold(5)
        .min_survivors(12)
        .bits(BITS)
        .build()
        .unwrap();
    let clients: Vec<Client<CpuEngine, ChaCha20Rng>> = (0..N)
        .map(|i| {
            let mut rng = ChaCha20Rng::seed_from_u64(seed ^ (i as u64));
            let id = ClientId(i as u32);
            let identity = ClientIdentity::self_asserted(id, IdentityKey::generate(&mut rng));
            let mut c = Client::new(
                identity,
                config.clone(),
                sim::parameter_free_policy(),
                CpuEngine::new(),
                rng,
            )
            .unwrap();
            let mut values = input(seed, i);
            values.push(1);
            c.set_quantized_input(values).unwrap();
            c
        })
        .collect();
    let server = Server::new(config, CpuEngine::new(), Duration::ZERO);
    let leave = DropSchedule::none().at(Stage::MaskedInput, [ClientId(3), ClientId(17)]);
    let mut net = Network::new(server, clients)
        .with_drops(leave, DropMode::Disconnect)
        .with_route_budget(budget);
    for i in 0..N {
        net.server_mut()
            .handle_join(ClientId(i as u32), Duration::ZERO);
    }
    let status = net.run(&mut Honest, &|_| {}).unwrap();
    assert_eq!(status, ServerStatus::Completed, "budget {budget}");
    let out = net.server_mut().take_output().expect("an output");
    (out, net.stages())
}

#[test]
fn streamed_delivery_changes_no_output_and_no_byte() {
    let seed = testing::test_seed("streaming::streamed_delivery");
    let (streamed, streamed_stats) = round(seed, 1);
    let (whole, whole_stats) = round(seed, usize::MAX);
    // The plaintext sum of everyone but the two who left.
    let included: Vec<ClientId> = (0..N as u32)
        .filter(|i| *i != 3 && *i != 17)
        .map(ClientId)
        .collect();
    let mut want = vec![0u32; M];
    for c in &included {
        for (w, x) in want.iter_mut().zip(input(seed, c.0 as usize)) {
            *w = (*w + x) & ((1 << BITS) - 1);
        }
    }
    for (name, out) in [("streamed", &streamed), ("whole", &whole)] {
        assert_eq!(out.included, included, "{name}");
        assert_eq!(out.sum, want, "{name}: the sum is not the plaintext sum");
        assert_eq!(out.total_weight, included.len() as u64, "{name}");
    }
    assert_eq!(streamed_stats.len(), whole_stats.len());
    for (a, b) in streamed_stats.iter().zip(&whole_stats) {
        let figures = |s: &StageStats| (s.stage, s.senders, s.bytes_up, s.receivers, s.bytes_down);
        assert_eq!(figures(a), figures(b));
    }
}
