//! Misbehaving peers, driven through the sans-IO state machines directly: a server that asks
//! for unsafe unmasking gets nothing; clients that send malformed, replayed, wrong-round or
//! forged messages are dropped (or their message refused) while the round completes exactly
//! for everyone else.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg::engine::{CpuEngine, testing};
use secagg::host::messages::{ClientMessage, Envelope, ServerMessage, ShareKind};
use secagg::host::server::ServerEvent;
use secagg::host::{
    Client, ClientId, ClientStatus, CryptoError, DropReason, ProtocolError, RoundConfig, Server,
    ServerStatus, Stage,
};

type TestClient = Client<CpuEngine, ChaCha20Rng>;

/// A server and n clients wired together in memory, with hooks to tamper with traffic.
struct Net {
    server: Server<CpuEngine>,
    clients: Vec<TestClient>,
    /// Quantized inputs, for the plaintext check.
    inputs: Vec<Vec<u32>>,
    /// Clients that stopped talking (aborted or told to stop).
    silent: Vec<bool>,
    now: Duration,
    events: Vec<ServerEvent>,
}

impl Net {
    fn new(test: &str, config: RoundConfig) -> Self {
        let seed = testing::test_seed(test);
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let n = config.clients();
        let mask = config.modulus().mask_u32();
        let mut clients = Vec::new();
        let mut inputs = Vec::new();
        for i in 0..n as u32 {
            let mut c = Client::new(
                ClientId(i),
                config.clone(),
                CpuEngine::new(),
                ChaCha20Rng::seed_from_u64(rng.next_u64()),
            );
            let mut x: Vec<u32> = (0..config.params())
                .map(|_| rng.next_u32() & mask & 0xff)
                .collect();
            x.push(1);
            c.set_quantized_input(x.clone()).unwrap();
            clients.push(c);
            inputs.push(x);
        }
        Self {
            server: Server::new(config, CpuEngine::new(), Duration::ZERO),
            clients,
            inputs,
            silent: vec![false; n],
            now: Duration::ZERO,
            events: Vec::new(),
        }
    }

    /// Client → server, each message through `tamper` (return false to withhold it).
    fn uplink(&mut self, mut tamper: impl FnMut(ClientId, &mut Envelope<ClientMessage>) -> bool) {
        for (i, c) in self.clients.iter_mut().enumerate() {
            while let Some(mut env) = c.poll_transmit() {
                if self.silent[i] {
                    continue;
                }
                if tamper(ClientId(i as u32), &mut env) {
                    self.server
                        .handle_message(ClientId(i as u32), env, self.now);
                }
            }
        }
        while let Some(e) = self.server.poll_event() {
            self.events.push(e);
        }
    }

    /// Server → clients, each message through `tamper`.
    fn downlink(&mut self, mut tamper: impl FnMut(ClientId, &mut Envelope<ServerMessage>) -> bool) {
        while let Some((to, mut env)) = self.server.poll_transmit() {
            let i = to.0 as usize;
            if self.silent[i] || !tamper(to, &mut env) {
                continue;
            }
            self.clients[i].handle_message(env).unwrap();
            if matches!(self.clients[i].status(), ClientStatus::Aborted(_)) {
                self.silent[i] = true;
            }
        }
    }

    fn plain(&mut self) {
        self.uplink(|_, _| true);
        self.downlink(|_, _| true);
    }

    /// Lets every silent client's connection close, so the server need not wait.
    fn disconnect_silent(&mut self) {
        for (i, s) in self.silent.iter().enumerate() {
            if *s {
                self.server.handle_disconnect(ClientId(i as u32), self.now);
            }
        }
    }

    /// Runs plain exchanges until the server finishes.
    fn finish(&mut self) {
        for _ in 0..12 {
            if !matches!(self.server.status(), ServerStatus::Running(_)) {
                break;
            }
            self.disconnect_silent();
            self.plain();
        }
        self.downlink(|_, _| true);
    }

    /// Asserts completion with exactly the plaintext sum of `included`.
    fn assert_sum_of(&self, included: &[u32]) {
        let out = self
            .server
            .output()
            .unwrap_or_else(|| panic!("round did not complete: {:?}", self.server.status()));
        let want_ids: Vec<ClientId> = included.iter().map(|&i| ClientId(i)).collect();
        assert_eq!(out.included, want_ids);
        let cfg = self.server.config();
        let mask = cfg.modulus().mask_u32();
        let mut want = vec![0u32; cfg.vector_len()];
        for &i in included {
            for (w, x) in want.iter_mut().zip(&self.inputs[i as usize]) {
                *w = w.wrapping_add(*x) & mask;
            }
        }
        assert_eq!(out.sum[..], want[..cfg.params()]);
        assert_eq!(out.total_weight, u64::from(want[cfg.params()]));
    }

    fn dropped(&self) -> Vec<(u32, Stage)> {
        self.server
            .dropped()
            .iter()
            .map(|d| (d.client.0, d.stage))
            .collect()
    }

    fn drop_reason(&self, c: u32) -> DropReason {
        self.server
            .dropped()
            .iter()
            .find(|d| d.client.0 == c)
            .map(|d| d.reason.clone())
            .unwrap_or_else(|| panic!("client {c} was not dropped"))
    }
}

fn config(n: usize) -> RoundConfig {
    RoundConfig::builder(n, 40)
        .threshold(4)
        .bits(20)
        .build()
        .unwrap()
}

fn aborted_with(c: &TestClient) -> ProtocolError {
    match c.status() {
        ClientStatus::Aborted(e) => e,
        other => panic!("client {} not aborted: {other:?}", c.id()),
    }
}

/// Runs a round up to the point where every client has the unmask request delivered but has
/// not answered, with client 5 dropped before its masked input.
fn up_to_unmask(test: &str) -> Net {
    let mut net = Net::new(test, config(7));
    net.plain(); // keys -> key list
    net.plain(); // share keys -> bundles
    net.silent[5] = true;
    net.disconnect_silent();
    net.uplink(|_, _| true); // masked inputs
    net
}

#[test]
fn a_second_unmask_request_gets_no_second_share() {
    let mut net = up_to_unmask("a_second_unmask_request_gets_no_second_share");
    let mut first = None;
    net.downlink(|to, env| {
        if to == ClientId(0) {
            first = Some(env.clone());
        }
        true
    });
    // Client 0 answered once: self-mask shares for the survivors, a key share for 5.
    let reply = net.clients[0].poll_transmit().expect("client 0 answers");
    let ClientMessage::UnmaskShares(shares) = &reply.message else {
        panic!("expected unmask shares")
    };
    assert!(
        shares
            .iter()
            .any(|s| s.owner == ClientId(5) && s.kind == ShareKind::MaskKey)
    );
    assert!(
        shares
            .iter()
            .any(|s| s.owner == ClientId(1) && s.kind == ShareKind::SelfMask)
    );
    // A second request that now names client 1 as dropped must get nothing at all.
    let mut second = first.unwrap();
    second.message = ServerMessage::UnmaskRequest(
        [0u32, 2, 3, 4, 6]
            .iter()
            .map(|&i| ClientId(i))
            .collect::<Vec<_>>()
            .into(),
    );
    net.clients[0].handle_message(second).unwrap();
    assert!(
        net.clients[0].poll_transmit().is_none(),
        "a second share was revealed"
    );
    assert!(matches!(
        aborted_with(&net.clients[0]),
        ProtocolError::UnsafeRequest(_)
    ));
}

#[test]
fn unsafe_unmask_requests_are_refused() {
    let mut net = up_to_unmask("unsafe_unmask_requests_are_refused");
    net.downlink(|to, env| {
        let ServerMessage::UnmaskRequest(u3) = &mut env.message else {
            return true;
        };
        let mut list: Vec<ClientId> = u3.to_vec();
        match to.0 {
            // Below the threshold of 4.
            1 => list.truncate(3),
            // Leaves out the recipient itself.
            2 => list.retain(|c| *c != ClientId(2)),
            // Repeats a client.
            3 => list.push(list[0]),
            _ => return true,
        }
        list.sort();
        *u3 = list.into();
        true
    });
    for i in [1, 2, 3] {
        assert!(
            net.clients[i].poll_transmit().is_none(),
            "client {i} answered"
        );
        let e = aborted_with(&net.clients[i]);
        assert!(
            matches!(
                e,
                ProtocolError::UnsafeRequest(_) | ProtocolError::TooFewClients { .. }
            ),
            "client {i}: {e}"
        );
    }
}

#[test]
fn a_survivor_that_never_shared_keys_is_refused() {
    let mut net = Net::new("a_survivor_that_never_shared_keys_is_refused", config(7));
    net.plain();
    net.silent[6] = true; // never sends share keys
    net.disconnect_silent();
    net.plain();
    net.uplink(|_, _| true);
    net.downlink(|to, env| {
        if let ServerMessage::UnmaskRequest(u3) = &mut env.message
            && to == ClientId(0)
        {
            let mut list = u3.to_vec();
            list.push(ClientId(6));
            *u3 = list.into();
        }
        true
    });
    assert!(net.clients[0].poll_transmit().is_none());
    assert!(matches!(
        aborted_with(&net.clients[0]),
        ProtocolError::UnsafeRequest(_)
    ));
}

#[test]
fn wrong_round_and_malformed_messages_drop_only_their_sender() {
    let mut net = Net::new(
        "wrong_round_and_malformed_messages_drop_only_their_sender",
        config(10),
    );
    net.plain();
    net.uplink(|from, env| {
        match (from.0, &mut env.message) {
            (1, _) => env.round += 1,
            // Bundles for someone who is not a neighbour (in the complete graph: itself).
            (2, ClientMessage::ShareKeys { bundles, .. }) => bundles[0].peer = ClientId(2),
            // One bundle missing.
            (3, ClientMessage::ShareKeys { bundles, .. }) => {
                bundles.pop();
            }
            _ => {}
        }
        true
    });
    net.downlink(|_, _| true);
    net.uplink(|from, env| {
        match (from.0, &mut env.message) {
            (4, ClientMessage::MaskedInput(v)) => {
                v.pop();
            }
            (5, ClientMessage::MaskedInput(v)) => v[3] = 1 << 20, // not below 2^20
            // Sends its unmask-stage message now.
            (6, m) => *m = ClientMessage::UnmaskShares(Vec::new()),
            _ => {}
        }
        true
    });
    for i in [1, 2, 3, 4, 5, 6] {
        net.silent[i] = true;
    }
    net.finish();
    assert_eq!(
        net.dropped(),
        vec![
            (1, Stage::ShareKeys),
            (2, Stage::ShareKeys),
            (3, Stage::ShareKeys),
            (4, Stage::MaskedInput),
            (5, Stage::MaskedInput),
            (6, Stage::MaskedInput),
        ]
    );
    assert!(matches!(
        net.drop_reason(1),
        DropReason::Misbehaved(ProtocolError::WrongRound { .. })
    ));
    assert!(matches!(
        net.drop_reason(2),
        DropReason::Misbehaved(ProtocolError::Recipients(_))
    ));
    assert!(matches!(
        net.drop_reason(4),
        DropReason::Misbehaved(ProtocolError::WrongLength { .. })
    ));
    assert!(matches!(
        net.drop_reason(5),
        DropReason::Misbehaved(ProtocolError::OutOfRange { .. })
    ));
    assert!(matches!(
        net.drop_reason(6),
        DropReason::Misbehaved(ProtocolError::UnexpectedMessage { .. })
    ));
    net.assert_sum_of(&[0, 7, 8, 9]);
}

/// A forged or misrouted bundle costs its recipient that sender's shares, not the round: the
/// recipient still masks with the sender, answers "unreadable" for it at unmasking, and the
/// server rebuilds from the other holders and names the sender.
#[test]
fn forged_and_misrouted_bundles_cost_only_those_shares() {
    let mut net = Net::new(
        "forged_and_misrouted_bundles_cost_only_those_shares",
        config(8),
    );
    net.plain();
    net.uplink(|_, _| true);
    let mut spoiled = Vec::new();
    net.downlink(|to, env| {
        if let ServerMessage::ShareBundles(bundles) = &mut env.message {
            match to.0 {
                // A flipped bit.
                1 => {
                    bundles[0].ciphertext[30] ^= 0x40;
                    spoiled.push(bundles[0].peer);
                }
                // A bundle meant for someone else, relabelled.
                2 => {
                    bundles[0].ciphertext = bundles[1].ciphertext.clone();
                    spoiled.push(bundles[0].peer);
                }
                _ => {}
            }
        }
        true
    });
    for i in [1, 2] {
        assert!(
            matches!(net.clients[i].status(), ClientStatus::Running(_)),
            "client {i} gave up: {:?}",
            net.clients[i].status()
        );
    }
    // Client 1's and 2's answers say which bundle they could not read, and reveal nothing for it.
    let mut unreadable = Vec::new();
    net.plain(); // masked inputs, unmask requests
    net.uplink(|from, env| {
        if let ClientMessage::UnmaskShares(shares) = &env.message {
            for s in shares.iter().filter(|s| s.kind == ShareKind::Unreadable) {
                assert_eq!(s.value, [0; 32]);
                unreadable.push((from.0, s.owner));
            }
        }
        true
    });
    assert_eq!(unreadable, vec![(1, spoiled[0]), (2, spoiled[1])]);
    net.finish();
    net.assert_sum_of(&[0, 1, 2, 3, 4, 5, 6, 7]);
    for sender in spoiled {
        assert!(
            net.events.iter().any(|e| matches!(
                e,
                ServerEvent::MessageRejected { client, reason: ProtocolError::Crypto(CryptoError::Decrypt { .. }) } if *client == sender
            )),
            "the server did not name {sender}"
        );
    }
}

#[test]
fn replays_and_strangers_are_refused_without_dropping_anyone() {
    let mut net = Net::new(
        "replays_and_strangers_are_refused_without_dropping_anyone",
        config(6),
    );
    let mut first_keys = None;
    net.uplink(|from, env| {
        if from == ClientId(0) {
            first_keys = Some(env.clone());
        }
        true
    });
    net.downlink(|_, _| true);
    // Client 0 replays its keys after sending its bundles (the server is then waiting for
    // masked inputs), and client 1 sends its bundles twice.
    let mut bundles_of_1 = None;
    net.uplink(|from, env| {
        if from == ClientId(1) {
            bundles_of_1 = Some(env.clone());
        }
        true
    });
    net.server
        .handle_message(ClientId(1), bundles_of_1.unwrap(), net.now);
    net.server
        .handle_message(ClientId(0), first_keys.unwrap(), net.now);
    // A stranger (id 50) sends a masked input.
    let stranger = Envelope {
        round: net.server.config().round_id(),
        message: ClientMessage::MaskedInput(vec![0; 41]),
    };
    net.server.handle_message(ClientId(50), stranger, net.now);
    while let Some(e) = net.server.poll_event() {
        net.events.push(e);
    }
    net.finish();
    assert!(
        net.dropped().iter().all(|(c, _)| *c == 50),
        "{:?}",
        net.dropped()
    );
    for c in [0, 1] {
        assert!(net.events.iter().any(|e| matches!(
            e,
            ServerEvent::MessageRejected { client, reason: ProtocolError::Duplicate(_) } if client.0 == c
        )), "no duplicate rejection for {c}: {:?}", net.events);
    }
    net.assert_sum_of(&[0, 1, 2, 3, 4, 5]);
}

#[test]
fn low_order_keys_are_dropped_at_advertise() {
    let mut net = Net::new("low_order_keys_are_dropped_at_advertise", config(6));
    net.uplink(|from, env| {
        if let (3, ClientMessage::AdvertiseKeys(k)) = (from.0, &mut env.message) {
            k.masking = [0; 32];
        }
        true
    });
    net.silent[3] = true;
    net.server.handle_timeout(Duration::from_secs(3600));
    net.finish();
    assert_eq!(net.dropped(), vec![(3, Stage::AdvertiseKeys)]);
    assert!(matches!(
        net.drop_reason(3),
        DropReason::Misbehaved(ProtocolError::Crypto(CryptoError::NonContributory { .. }))
    ));
    net.assert_sum_of(&[0, 1, 2, 4, 5]);
}

#[test]
fn one_corrupt_share_is_left_out_and_named() {
    let mut net = Net::new("one_corrupt_share_is_left_out_and_named", config(7));
    net.plain();
    net.plain();
    net.silent[5] = true;
    net.disconnect_silent();
    net.plain();
    // Client 2 reveals garbage for client 0's self mask and for dropped client 5's key.
    net.uplink(|from, env| {
        if let (2, ClientMessage::UnmaskShares(shares)) = (from.0, &mut env.message) {
            for s in shares
                .iter_mut()
                .filter(|s| s.owner == ClientId(0) || s.owner == ClientId(5))
            {
                s.value = curve25519_dalek::Scalar::from(12345u64).to_bytes();
            }
        }
        true
    });
    net.finish();
    net.assert_sum_of(&[0, 1, 2, 3, 4, 6]);
    let named = net
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                ServerEvent::MessageRejected {
                    client: ClientId(2),
                    reason: ProtocolError::Crypto(CryptoError::Mismatch { .. })
                }
            )
        })
        .count();
    assert_eq!(named, 2, "{:?}", net.events);
}

#[test]
fn deadlines_drop_the_silent() {
    let mut net = Net::new("deadlines_drop_the_silent", config(6));
    net.plain();
    net.silent[4] = true; // silent from share keys on, connection open
    net.plain();
    let deadline = net.server.poll_timeout().expect("a stage is running");
    // Early calls do nothing.
    net.server
        .handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(net.server.status(), ServerStatus::Running(Stage::ShareKeys));
    net.now = deadline;
    net.server.handle_timeout(deadline);
    net.finish();
    assert_eq!(net.dropped(), vec![(4, Stage::ShareKeys)]);
    assert_eq!(net.drop_reason(4), DropReason::Timeout);
    net.assert_sum_of(&[0, 1, 2, 3, 5]);
}
