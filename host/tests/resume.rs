//! A client rebuilt from its journal (same identity, configuration, policy and seed, fed the
//! server messages it handled before) reaches the same state, and one rebuilt after its
//! masked input went out does not mask or send it again
//! (`Client::resume_after_input`). The Python package's snapshots and the Flower mod rely
//! on this.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg_engine::CpuEngine;
use secagg_host::messages::{ClientMessage, Envelope, ServerMessage};
use secagg_host::sim::{SimConfig, sim_ca, sim_client, sim_server};
use secagg_host::{Client, ClientId, ClientStatus, RoundConfig, ServerStatus, Stage};

mod support;
use support::seeded_config;

type SimClient = Client<CpuEngine, ChaCha20Rng>;

fn config(test: &str, n: usize) -> SimConfig {
    seeded_config(
        test,
        RoundConfig::builder(n, 5000)
            .neighbors(6)
            .threshold(4)
            .bits(26),
    )
}

/// Runs a round where client `rebuilt` is thrown away and rebuilt from its journal before
/// every server message; `leaves` disconnects before its masked input. Returns the server's
/// sum, the inputs and the included clients.
fn round(test: &str, rebuilt: u32, leaves: u32) -> (Vec<u32>, Vec<Vec<u32>>, Vec<ClientId>, usize) {
    let n = 8;
    let cfg = config(test, n);
    let ca = sim_ca(cfg.seed);
    let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed ^ 0x5eed);
    let inputs: Vec<Vec<u32>> = (0..n)
        .map(|_| {
            let mut v: Vec<u32> = (0..5000).map(|_| rng.next_u32() % (1 << 22)).collect();
            v.push(1); // the weight element
            v
        })
        .collect();
    let now = Duration::ZERO;
    let mut server = sim_server(&cfg, &ca, CpuEngine::new(), now);
    let make = |id: u32| sim_client(&cfg, &ca, ClientId(id), CpuEngine::new()).unwrap();
    let mut clients: Vec<Option<SimClient>> = (0..n as u32).map(|i| Some(make(i))).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.as_mut()
            .unwrap()
            .set_quantized_input(inputs[i].clone())
            .unwrap();
        server.handle_join(ClientId(i as u32), now);
    }
    let mut journal: Vec<Envelope<ServerMessage>> = Vec::new();
    let mut sent_input = false;
    let mut rebuilds = 0;
    for _ in 0..100 {
        for (i, slot) in clients.iter_mut().enumerate() {
            let Some(c) = slot else { continue };
            if i as u32 == leaves && c.status() == ClientStatus::Running(Stage::MaskedInput) {
                *slot = None;
                server.handle_disconnect(ClientId(i as u32), now);
                continue;
            }
            while let Some(env) = c.poll_transmit() {
                if i as u32 == rebuilt && matches!(env.message, ClientMessage::MaskedInput(_)) {
                    assert!(
                        !sent_input,
                        "the rebuilt client sent its masked input twice"
                    );
                    sent_input = true;
                }
                server.handle_message(ClientId(i as u32), env, now);
            }
        }
        while let Some((to, env)) = server.poll_transmit() {
            let Some(c) = clients[to.0 as usize].as_mut() else {
                continue;
            };
            if to.0 == rebuilt {
                // Throw the object away; replay the journal into a fresh one.
                let mut fresh = make(rebuilt);
                if sent_input {
                    fresh.resume_after_input();
                } else {
                    fresh
                        .set_quantized_input(inputs[rebuilt as usize].clone())
                        .unwrap();
                }
                for old in &journal {
                    fresh.handle_message(old.clone()).unwrap();
                }
                while let Some(out) = fresh.poll_transmit() {
                    assert!(
                        !matches!(out.message, ClientMessage::MaskedInput(_)) || !sent_input,
                        "a replay re-sent the masked input"
                    );
                }
                assert_eq!(
                    fresh.status(),
                    c.status(),
                    "the replay reached another state"
                );
                *c = fresh;
                rebuilds += 1;
                journal.push(env.clone());
            }
            c.handle_message(env).unwrap();
        }
        if matches!(
            server.status(),
            ServerStatus::Completed | ServerStatus::Aborted(_)
        ) {
            break;
        }
    }
    assert_eq!(server.status(), ServerStatus::Completed);
    assert!(sent_input);
    let out = server.output().unwrap();
    (out.sum.clone(), inputs, out.included.clone(), rebuilds)
}

#[test]
fn a_client_rebuilt_before_every_message_gives_the_exact_sum() {
    let (sum, inputs, included, rebuilds) = round("resume_exact", 3, 6);
    assert!(rebuilds >= 6, "rebuilt {rebuilds} times");
    let want: Vec<u32> = ids(&included).fold(vec![0u32; 5000], |mut acc, i| {
        for (a, x) in acc.iter_mut().zip(&inputs[i]) {
            *a = (*a + x) % (1 << 26);
        }
        acc
    });
    assert_eq!(sum, want);
    assert!(included.contains(&ClientId(3)));
    assert!(!included.contains(&ClientId(6)));
}

fn ids(included: &[ClientId]) -> impl Iterator<Item = usize> + '_ {
    included.iter().map(|c| c.0 as usize)
}

#[test]
fn a_resumed_client_refuses_a_new_input() {
    let cfg = config("resume_refuses", 8);
    let ca = sim_ca(cfg.seed);
    let mut c = sim_client(&cfg, &ca, ClientId(0), CpuEngine::new()).unwrap();
    c.resume_after_input();
    assert!(c.set_quantized_input(vec![0; 5001]).is_err());
}
