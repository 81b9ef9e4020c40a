//! Driving the sans-IO core with your own transport: the loop a TCP server, a message queue
//! or a Flower app runs around [`Server`] and [`Client`].
//!
//! Neither state machine touches a socket, a clock or a thread. The caller:
//!
//! 1. moves bytes: everything `poll_transmit` returns is encoded with the [`codec`] and
//!    delivered; everything that arrives is decoded and handed to `handle_message`;
//! 2. keeps time: `now` is passed in, `poll_timeout` says when the server next needs
//!    `handle_timeout` (a stage's deadline), and a fake clock works as well as a real one;
//! 3. reports connections: `handle_join` when a client connects, `handle_disconnect` when
//!    its transport closes;
//! 4. watches the outcome: `status` and `poll_event` on the server, `status` on a client.
//!
//! Here six clients run through in-memory queues; client 5 goes silent after its keys, and
//! the server carries on when the stage's deadline passes on the fake clock.
//!
//! Run it with `cargo run --release --example sans_io`.

use std::collections::VecDeque;
use std::time::Duration;

use secagg::engine::CpuEngine;
use secagg::host::codec::{self, Limits};
use secagg::host::identity::IdentityKey;
use secagg::host::server::ServerEvent;
use secagg::host::{
    Client, ClientId, ClientIdentity, ClientPolicy, ClientStatus, RoundConfig, Server,
    ServerStatus, round_rng,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (n, m) = (6, 1000);
    let config = RoundConfig::builder(n, m)
        .stage_timeout(Duration::from_secs(30))
        .build()?;
    let limits = Limits::for_config(&config);
    let bits = config.modulus().bits();

    // The clients: honest-but-curious protocol (no CA), each with its own key and generator.
    // Six clients can only be judged with a colluder budget smaller than the default five:
    // this demonstration budgets for one (T = 3 honest members of six leaves room for it).
    let policy = ClientPolicy {
        min_cohort: 3,
        colluders: 1,
        ..ClientPolicy::curious_unauthenticated()
    };
    let mut clients = Vec::new();
    for i in 0..n as u32 {
        let mut rng = round_rng()?;
        let identity = ClientIdentity::self_asserted(ClientId(i), IdentityKey::generate(&mut rng));
        let mut client = Client::new(
            identity,
            config.clone(),
            policy.clone(),
            CpuEngine::new(),
            rng,
        )?;
        client.set_input(&vec![0.25; m], 1)?;
        clients.push(client);
    }

    // The server, on a fake clock that starts at zero.
    let mut now = Duration::ZERO;
    let mut server = Server::new(config.clone(), CpuEngine::new(), now);
    for i in 0..n as u32 {
        server.handle_join(ClientId(i), now);
    }

    // The "network": frames in flight to the server and to each client.
    let mut to_server: VecDeque<(ClientId, Vec<u8>)> = VecDeque::new();
    let mut to_client: Vec<VecDeque<Vec<u8>>> = vec![VecDeque::new(); n];
    let silent = ClientId(5);

    while matches!(server.status(), ServerStatus::Running(_)) {
        // Clients: deliver what arrived, then send what they have to say.
        for client in &mut clients {
            let id = client.id();
            while let Some(frame) = to_client[id.0 as usize].pop_front() {
                client.handle_message(codec::decode_server(&frame, &limits)?)?;
            }
            while let Some(envelope) = client.poll_transmit() {
                let after_keys = envelope.message.stage() > secagg::host::Stage::AdvertiseKeys;
                if id == silent && after_keys {
                    continue; // client 5's messages after its keys never arrive
                }
                to_server.push_back((id, codec::encode_client(&envelope, bits)));
            }
        }
        // Server: decode and handle each frame (a malformed one costs only its sender).
        let moved = !to_server.is_empty();
        while let Some((from, frame)) = to_server.pop_front() {
            match codec::decode_client(&frame, &limits) {
                Ok(envelope) => server.handle_message(from, envelope, now),
                Err(e) => server.misbehaved(from, e.into(), now),
            }
        }
        while let Some((to, envelope)) = server.poll_transmit() {
            to_client[to.0 as usize].push_back(codec::encode_server(&envelope));
        }
        while let Some(event) = server.poll_event() {
            if let ServerEvent::ClientDropped(d) = event {
                println!(
                    "t = {now:?}: {} dropped at {} ({})",
                    d.client, d.stage, d.reason
                );
            }
        }
        // Nothing in flight: the server is waiting for someone; let its deadline pass.
        let idle = !moved && to_client.iter().all(VecDeque::is_empty);
        if idle {
            if let Some(deadline) = server.poll_timeout() {
                now = deadline;
                server.handle_timeout(now);
            }
        }
    }

    // The server's last messages (the result, or why it aborted) still reach the clients.
    for client in &mut clients {
        while let Some(frame) = to_client[client.id().0 as usize].pop_front() {
            client.handle_message(codec::decode_server(&frame, &limits)?)?;
        }
    }

    let out = server.output().ok_or("the round aborted")?;
    let mean = out.weighted_mean(&config);
    println!(
        "included {:?}; mean[0] = {:.4}",
        out.included.iter().map(|c| c.0).collect::<Vec<_>>(),
        mean[0]
    );
    assert!(!out.included.contains(&silent));
    assert!((mean[0] - 0.25).abs() < 1e-3);
    // The clients learn the outcome too (the silent one never hears back).
    for client in &clients {
        if client.id() != silent {
            assert!(matches!(client.status(), ClientStatus::Completed { .. }));
        }
    }
    Ok(())
}
