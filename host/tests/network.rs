//! Rounds over real TCP (TLS 1.3) on loopback: the tokio transport driving the sans-IO state
//! machines, with a server that admits only clients enrolled by the test CA.
//! Sixty clients as tokio tasks with dropouts at every stage; then a round under attack —
//! garbage, truncated frames, oversized length prefixes, silence, a duplicate id, a
//! wrong-round message, a replay, a small-order masking key and a forged share bundle — that
//! must still complete correctly for everyone else; clients with a certificate from another CA
//! or none, refused at the hello; clients whose own policy refuses the round; stalled,
//! trickled, repeated and unchunked uploads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use curve25519_dalek::constants::EIGHT_TORSION;
use futures_util::{SinkExt, StreamExt};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg_engine::{CpuEngine, testing};
use secagg_host::codec::{self, Limits, tag};
use secagg_host::messages::{ClientMessage, Envelope};
use secagg_host::quantize::error_bound;
use secagg_host::transport::{
    ClientInput, ClientOutcome, Join, Misbehaviour, Refusal, RoundReport, ServeOptions,
    TransportError, frame_codec, serve,
};
use secagg_host::{
    Client, ClientError, ClientId, ClientIdentity, ClientPolicy, ClientStatus, CryptoError,
    DropReason, PointError, ProtocolError, RoundConfig, RoundRng, Stage,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

mod support;
use support::{Deployment, LAYOUT};

fn update(seed: u64, id: u32, m: usize) -> Vec<f32> {
    let mut r = ChaCha20Rng::seed_from_u64(seed ^ u64::from(id) << 32);
    (0..m)
        .map(|_| ((r.next_u32() >> 8) as f32 / (1 << 24) as f32) * 2.4 - 1.2)
        .collect()
}

async fn start(
    config: RoundConfig,
    options: ServeOptions,
) -> (SocketAddr, tokio::task::JoinHandle<RoundReport>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        serve(listener, config, CpuEngine::new(), options)
            .await
            .unwrap()
    });
    (addr, server)
}

/// Runs client `id` of the deployment with `identity` and `policy` as a task, over TLS to
/// `dep`'s server.
#[allow(clippy::too_many_arguments)]
fn spawn_client(
    addr: SocketAddr,
    dep: &Deployment,
    seed: u64,
    m: usize,
    id: u32,
    drop_after: Option<Stage>,
    identity: ClientIdentity,
    policy: ClientPolicy,
) -> tokio::task::JoinHandle<Result<ClientOutcome, TransportError>> {
    let (connector, name) = dep.client_tls();
    let join = join_as(identity, policy, drop_after).tls(connector, name);
    spawn_with(addr, seed, m, id, join)
}

/// Runs client `id` as `join` sets it up, as a task.
fn spawn_with(
    addr: SocketAddr,
    seed: u64,
    m: usize,
    id: u32,
    join: Join,
) -> tokio::task::JoinHandle<Result<ClientOutcome, TransportError>> {
    let x = update(seed, id, m);
    let rng = RoundRng::seed_from_u64(seed.wrapping_add(u64::from(id) + 1));
    tokio::spawn(async move { join.rng(rng).run(addr, &x).await })
}

/// Client `id`, enrolled and under the deployment's permissive policy, as a task.
fn spawn_enrolled(
    addr: SocketAddr,
    dep: &Deployment,
    seed: u64,
    m: usize,
    id: u32,
    drop_after: Option<Stage>,
) -> tokio::task::JoinHandle<Result<ClientOutcome, TransportError>> {
    spawn_client(
        addr,
        dep,
        seed,
        m,
        id,
        drop_after,
        dep.identity(id),
        dep.policy(),
    )
}

/// The stage at which the round dropped `client`, if it did.
fn dropped_at(report: &RoundReport, client: u32) -> Option<Stage> {
    report
        .outcome
        .as_ref()
        .unwrap()
        .dropped
        .iter()
        .find(|d| d.client.0 == client)
        .map(|d| d.stage)
}

/// Every one of `clients` completes a round of `included` inputs.
async fn all_complete(
    clients: Vec<tokio::task::JoinHandle<Result<ClientOutcome, TransportError>>>,
    included: u32,
) {
    for h in clients {
        let r = h.await.unwrap();
        assert!(
            matches!(r, Ok(ClientOutcome::Completed { included: i }) if i == included),
            "{r:?}"
        );
    }
}

/// Enrolled client `id` over TLS that breaks (or bends) the transport's rules as `how` says.
fn spawn_misbehaving(
    addr: SocketAddr,
    dep: &Deployment,
    seed: u64,
    m: usize,
    id: u32,
    how: Misbehaviour,
) -> tokio::task::JoinHandle<Result<ClientOutcome, TransportError>> {
    let (connector, name) = dep.client_tls();
    let join = join_as(dep.identity(id), dep.policy(), None)
        .tls(connector, name)
        .misbehave(how);
    spawn_with(addr, seed, m, id, join)
}

/// `identity` joining under `policy` in plaintext (until given TLS), leaving after
/// `drop_after` if set.
fn join_as(identity: ClientIdentity, policy: ClientPolicy, drop_after: Option<Stage>) -> Join {
    let join = Join::new(identity, policy, LAYOUT)
        .insecure_plaintext()
        .connect_timeout(Duration::from_secs(10));
    match drop_after {
        Some(stage) => join.drop_after(stage),
        None => join,
    }
}

/// The server's f32 sum against Σ clip(x) over `included`, within the quantization bound.
fn check_sum(report: &RoundReport, config: &RoundConfig, seed: u64, included: &[u32]) {
    let out = report
        .outcome
        .as_ref()
        .unwrap_or_else(|e| panic!("round aborted: {e}"));
    let want_ids: Vec<ClientId> = included.iter().map(|&i| ClientId(i)).collect();
    assert_eq!(out.included, want_ids);
    assert_eq!(out.total_weight, included.len() as u64);
    let got = out.dequantized_sum(config);
    let bound = error_bound(out.total_weight, &config.quantization()) + 1e-3;
    let clip = config.quantization().clip;
    let updates: Vec<Vec<f32>> = included
        .iter()
        .map(|&i| update(seed, i, config.params()))
        .collect();
    for j in 0..config.params() {
        let want: f64 = updates
            .iter()
            .map(|u| f64::from(u[j].clamp(-clip, clip)))
            .sum();
        assert!(
            (f64::from(got[j]) - want).abs() <= bound,
            "element {j}: {} vs {want} (bound {bound})",
            got[j]
        );
    }
}

/// Two clients leave after each stage from join to consistency, so the server sees them miss
/// each of the six stages after join; those that sent their masked input are in the sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_clients_with_dropouts_at_every_stage() {
    let seed = testing::test_seed("sixty_clients_with_dropouts_at_every_stage");
    let dep = Deployment::new(seed);
    let m = 300;
    let config = RoundConfig::builder(60, m)
        .neighbors(14)
        .threshold(7)
        .min_survivors(30)
        .round_id(seed)
        .stage_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let (addr, server) = start(config.clone(), dep.serve_options()).await;
    // The stage each client leaves after; the server sees it miss the next one.
    let fate = |i: u32| match i % 30 {
        1 => Some(Stage::Join),
        4 => Some(Stage::AdvertiseKeys),
        8 => Some(Stage::ShareKeys),
        13 => Some(Stage::ShareCheck),
        19 => Some(Stage::MaskedInput),
        23 => Some(Stage::Consistency),
        _ => None,
    };
    let clients: Vec<_> = (0..60u32)
        .map(|i| spawn_enrolled(addr, &dep, seed, m, i, fate(i)))
        .collect();
    // Leaving before the masked input keeps a client out of the sum.
    let included: Vec<u32> = (0..60)
        .filter(|&i| fate(i).is_none_or(|s| s >= Stage::MaskedInput))
        .collect();
    assert_eq!(included.len(), 52);
    for (i, c) in clients.into_iter().enumerate() {
        let outcome = c
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        match fate(i as u32) {
            Some(s) => assert_eq!(outcome, ClientOutcome::Dropped { after: s }),
            None => assert!(
                matches!(outcome, ClientOutcome::Completed { included: 52 }),
                "{outcome:?}"
            ),
        }
    }
    let report = server.await.unwrap();
    check_sum(&report, &config, seed, &included);
    for i in 0..60u32 {
        let want = match i % 30 {
            1 => Some(Stage::AdvertiseKeys),
            4 => Some(Stage::ShareKeys),
            8 => Some(Stage::ShareCheck),
            13 => Some(Stage::MaskedInput),
            19 => Some(Stage::Consistency),
            23 => Some(Stage::Unmasking),
            _ => None,
        };
        assert_eq!(dropped_at(&report, i), want, "client {i}");
    }
    assert!(report.bytes_received > 0 && report.bytes_sent > 0);
}

/// Speaks the protocol through the sans-IO client (enrolled, under the deployment's policy),
/// but lets `tamper` rewrite (or repeat) what it sends. Returns the client's final status, or
/// the transport error.
async fn tampering_client(
    addr: SocketAddr,
    dep: &Deployment,
    id: u32,
    seed: u64,
    m: usize,
    tamper: impl Fn(&mut Envelope<ClientMessage>) -> usize,
) -> Result<ClientStatus, TransportError> {
    let (identity, policy) = (dep.identity(id), dep.policy());
    let (mut framed, config) = dep.handshake(addr, &identity, m).await?;
    let limits = Limits::for_config(&config);
    let bits = config.modulus().bits();
    let mut client = Client::new(
        identity,
        config.clone(),
        policy,
        CpuEngine::new(),
        ChaCha20Rng::seed_from_u64(seed ^ 0xbad),
    )
    .unwrap();
    client
        .set_input(&update(seed, id, config.params()), 1)
        .unwrap();
    loop {
        while let Some(mut env) = client.poll_transmit() {
            let copies = tamper(&mut env);
            for _ in 0..copies {
                let frames = match &env.message {
                    ClientMessage::MaskedInput(v) => {
                        codec::encode_masked_chunks(env.round, v, bits)
                    }
                    _ => vec![codec::encode_client(&env, bits)],
                };
                for f in frames {
                    framed.send(Bytes::from(f)).await?;
                }
            }
        }
        if !matches!(client.status(), ClientStatus::Running(_)) {
            return Ok(client.status());
        }
        let Some(frame) = framed.next().await else {
            return Ok(client.status());
        };
        let env = codec::decode_server(&frame?, &limits)?;
        client.handle_message(env).unwrap();
    }
}

async fn raw(addr: SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_under_attack_completes_for_the_honest() {
    let seed = testing::test_seed("a_round_under_attack_completes_for_the_honest");
    let dep = Deployment::new(seed);
    let m = 64;
    let n = 16;
    let config = RoundConfig::builder(n, m)
        .threshold(6)
        .round_id(seed)
        .stage_timeout(Duration::from_millis(2500))
        .build()
        .unwrap();
    let (addr, server) = start(config.clone(), dep.serve_options()).await;
    let dep = std::sync::Arc::new(dep);
    let tamperer = |id: u32, tamper: fn(&mut Envelope<ClientMessage>) -> usize| {
        let dep = std::sync::Arc::clone(&dep);
        tokio::spawn(async move { tampering_client(addr, &dep, id, seed, m, tamper).await })
    };

    // Connections that never join: garbage, an oversized length prefix, a truncated frame
    // (none of them TLS), and one that says nothing at all.
    raw(addr, b"GET / HTTP/1.1\r\nHost: secagg\r\n\r\n").await;
    raw(addr, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await;
    raw(addr, &[0, 0, 0, 100, codec::VERSION, tag::HELLO, 0, 0]).await;
    let _mute = TcpStream::connect(addr).await.unwrap();

    let honest: Vec<_> = (0..10u32)
        .map(|i| spawn_enrolled(addr, &dep, seed, m, i, None))
        .collect();
    // 10: its share keys carry the wrong round id.
    let wrong_round = tamperer(10, |env| {
        if matches!(env.message, ClientMessage::ShareKeys { .. }) {
            env.round ^= 1;
        }
        1
    });
    // 11: sends every message twice (the replays are refused, it stays in the round; a
    // second upload would drop it, so the masked input goes once).
    let replayer = tamperer(11, |env| {
        if matches!(env.message, ClientMessage::MaskedInput(_)) {
            1
        } else {
            2
        }
    });
    // 12: advertises a masking key of small order (a point of the 8-torsion subgroup, whose
    // agreement with anyone is predictable) when it joins. The check comes before the
    // signature's, so the stale signature is not what drops it.
    let low_order = tamperer(12, |env| {
        if let ClientMessage::Join(k) = &mut env.message {
            k.keys.masking = EIGHT_TORSION[1].compress().to_bytes();
        }
        1
    });
    // 13: forges its bundle for client 14. That costs 14 the forger's shares, not the round:
    // 14 reports the bundle unreadable and still completes, and both are in the sum.
    let forger = tamperer(13, |env| {
        if let ClientMessage::ShareKeys { bundles, .. } = &mut env.message {
            for b in bundles.iter_mut().filter(|b| b.peer == ClientId(14)) {
                b.ciphertext[5] ^= 1;
            }
        }
        1
    });
    let victim = tamperer(14, |_| 1);
    // 15: says hello, then goes silent (connection open): it never joins.
    let silent = {
        let dep = std::sync::Arc::clone(&dep);
        tokio::spawn(async move {
            let (framed, _) = dep.handshake(addr, &dep.identity(15), m).await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(framed);
        })
    };
    // A second client 3: refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dup = spawn_enrolled(addr, &dep, seed, m, 3, None).await.unwrap();
    assert!(
        matches!(&dup, Err(TransportError::Rejected(r)) if r.contains("already joined")),
        "{dup:?}"
    );

    let report = server.await.unwrap();
    silent.abort();
    for (i, h) in honest.into_iter().enumerate() {
        let r = h
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("honest client {i}: {e}"));
        assert!(matches!(r, ClientOutcome::Completed { .. }), "{r:?}");
    }
    assert!(matches!(
        replayer.await.unwrap(),
        Ok(ClientStatus::Completed { .. })
    ));
    assert!(matches!(
        forger.await.unwrap(),
        Ok(ClientStatus::Completed { .. })
    ));
    // The forged bundle costs its recipient the forger's shares, not the round.
    assert!(
        matches!(victim.await.unwrap(), Ok(ClientStatus::Completed { .. })),
        "the forged bundle's recipient did not complete"
    );
    let _ = wrong_round.await.unwrap();
    let _ = low_order.await.unwrap();

    // Everyone but 10 (wrong round), 12 (small-order key) and 15 (silent) is in the sum.
    let included: Vec<u32> = (0..n as u32)
        .filter(|i| ![10, 12, 15].contains(i))
        .collect();
    check_sum(&report, &config, seed, &included);
    assert_eq!(dropped_at(&report, 10), Some(Stage::ShareKeys));
    assert_eq!(dropped_at(&report, 12), Some(Stage::Join));
    assert_eq!(dropped_at(&report, 13), None);
    assert_eq!(dropped_at(&report, 14), None);
    // The first stage is now join (the nonce commitment), which the silent client misses.
    assert_eq!(dropped_at(&report, 15), Some(Stage::Join));
    let out = report.outcome.as_ref().unwrap();
    let low = out.dropped.iter().find(|d| d.client.0 == 12).unwrap();
    assert!(
        matches!(
            &low.reason,
            DropReason::Misbehaved(ProtocolError::Crypto(CryptoError::BadPoint {
                what: "mask-agreement key",
                why: PointError::Torsion
            }))
        ),
        "{:?}",
        low.reason
    );
    // Three connections that are not TLS, and the duplicate.
    assert!(report.refused.len() >= 4, "{:?}", report.refused);
    assert_eq!(report.refusals.get(&Refusal::DuplicateId), Some(&1));
    assert!(report.refusals.get(&Refusal::TlsHandshake) >= Some(&3));
}

/// An enrolled server refuses, at the hello, a client whose certificate comes from another
/// CA, one with a self-asserted identity, one that presents another client's certificate and
/// one whose hello is replayed from another connection; the round completes for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_certificate_from_the_ca_are_dropped() {
    let seed = testing::test_seed("clients_without_a_certificate_from_the_ca_are_dropped");
    let dep = Deployment::new(seed);
    let other = Deployment::new(seed ^ 0x0123_4567);
    assert_ne!(dep.ca(), other.ca());
    let m = 32;
    let config = RoundConfig::builder(7, m)
        .threshold(3)
        .round_id(seed)
        .stage_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (addr, server) = start(config.clone(), dep.serve_options()).await;
    let honest: Vec<_> = (0..5u32)
        .map(|i| spawn_enrolled(addr, &dep, seed, m, i, None))
        .collect();
    // 5 trusts the other CA, which enrolled it.
    let foreign = spawn_client(
        addr,
        &dep,
        seed,
        m,
        5,
        None,
        other.identity(5),
        other.policy(),
    );
    // 6 asserts its own key (its policy trusts nobody).
    let unauthenticated = spawn_client(
        addr,
        &dep,
        seed,
        m,
        6,
        None,
        dep.self_asserted(6),
        secagg_host::sim::parameter_free_policy(),
    );
    for (c, h, why) in [
        (5, foreign, "not issued by this round's CA"),
        (6, unauthenticated, "no certificate"),
    ] {
        let r = h.await.unwrap();
        assert!(
            matches!(&r, Err(TransportError::Rejected(e)) if e.contains(why)),
            "client {c}: {r:?}"
        );
    }
    // Client 0's certificate with 6's key, claiming to be 0 or 6: refused either way.
    let key6 = dep.self_asserted(6);
    let hello_as = |claim: u32| {
        let cert = dep.identity(0).credential().clone();
        let (connector, name) = dep.client_tls();
        let key6 = &key6;
        async move {
            let socket = TcpStream::connect(addr).await.unwrap();
            let stream = connector.connect(name, socket).await.unwrap();
            let binding = secagg_host::transport::tls::channel_binding(stream.get_ref().1).unwrap();
            let mut framed = Framed::new(stream, frame_codec(1 << 20));
            let challenge =
                codec::decode_challenge(&framed.next().await.unwrap().unwrap()).unwrap();
            let mut hello = codec::Hello {
                round: challenge.round,
                client: ClientId(claim),
                weighted: false,
                params: m as u32,
                layout: LAYOUT,
                credential: cert,
                signature: [0; 64],
            };
            hello.signature = key6.sign(
                codec::HELLO_DOMAIN,
                &hello.signed_message(&challenge.nonce, &binding),
            );
            framed
                .send(Bytes::from(codec::encode_hello(&hello)))
                .await
                .unwrap();
            let answer = framed.next().await.unwrap().unwrap();
            (hello, codec::decode_reject(&answer).unwrap())
        }
    };
    let (_, squat) = hello_as(0).await;
    assert!(squat.contains("signature does not verify"), "{squat}");
    let (_, stolen) = hello_as(6).await;
    assert!(stolen.contains("certificate of client 0"), "{stolen}");
    // A valid hello of client 4, replayed on a new connection: its signature covers the
    // first connection's challenge and TLS session, so it does not verify on the second.
    let replayed = {
        let (connector, name) = dep.client_tls();
        let id4 = dep.identity(4);
        let socket = TcpStream::connect(addr).await.unwrap();
        let stream = connector.connect(name.clone(), socket).await.unwrap();
        let binding = secagg_host::transport::tls::channel_binding(stream.get_ref().1).unwrap();
        let mut first = Framed::new(stream, frame_codec(1 << 20));
        let challenge = codec::decode_challenge(&first.next().await.unwrap().unwrap()).unwrap();
        let mut hello = codec::Hello {
            round: challenge.round,
            client: ClientId(4),
            weighted: false,
            params: m as u32,
            layout: LAYOUT,
            credential: id4.credential().clone(),
            signature: [0; 64],
        };
        hello.signature = id4.sign(
            codec::HELLO_DOMAIN,
            &hello.signed_message(&challenge.nonce, &binding),
        );
        let socket = TcpStream::connect(addr).await.unwrap();
        let stream = connector.connect(name, socket).await.unwrap();
        let mut second = Framed::new(stream, frame_codec(1 << 20));
        let _ = second.next().await.unwrap().unwrap();
        second
            .send(Bytes::from(codec::encode_hello(&hello)))
            .await
            .unwrap();
        codec::decode_reject(&second.next().await.unwrap().unwrap()).unwrap()
    };
    assert!(replayed.contains("signature does not verify"), "{replayed}");
    all_complete(honest, 5).await;
    let report = server.await.unwrap();
    check_sum(&report, &config, seed, &[0, 1, 2, 3, 4]);
    let count = |r: Refusal| report.refusals.get(&r).copied().unwrap_or(0);
    assert_eq!(count(Refusal::NotEnrolled), 2, "{:?}", report.refused);
    assert_eq!(count(Refusal::BadSignature), 2, "{:?}", report.refused);
    assert_eq!(count(Refusal::WrongIdentity), 1, "{:?}", report.refused);
    // None of them ever joined.
    let out = report.outcome.as_ref().unwrap();
    assert!(
        out.dropped.iter().all(|d| d.client.0 < 5),
        "{:?}",
        out.dropped
    );
}

/// A client whose own policy the announced round fails — a cohort below its minimum, or a
/// threshold insecure against the semi-malicious server its defaults assume — refuses the
/// round right after the welcome: it never joins, let alone sends keys. The others complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_refuses_a_round_its_policy_fails() {
    let seed = testing::test_seed("a_client_refuses_a_round_its_policy_fails");
    let dep = Deployment::new(seed);
    let m = 32;
    // Complete graph, t = 3 of 6: fine for a curious server, insecure against a
    // semi-malicious one (two survivor lists need 2t - k - 1 = 0 corrupted neighbours).
    let config = RoundConfig::builder(6, m)
        .threshold(3)
        .round_id(seed)
        .stage_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let (addr, server) = start(config.clone(), dep.serve_options()).await;
    let honest: Vec<_> = (0..4u32)
        .map(|i| spawn_enrolled(addr, &dep, seed, m, i, None))
        .collect();
    let big_cohort = ClientPolicy {
        min_cohort: 7,
        ..dep.policy()
    };
    let semi_malicious = ClientPolicy {
        min_cohort: 3,
        colluders: 1,
        ..ClientPolicy::enrolled(dep.ca())
    };
    let refusers = [
        (4, big_cohort, "minimum of 7 honest members"),
        (5, semi_malicious, "semi-malicious"),
    ]
    .map(|(id, policy, why)| {
        (
            id,
            why,
            spawn_client(addr, &dep, seed, m, id, None, dep.identity(id), policy),
        )
    });
    for (id, why, h) in refusers {
        let r = h.await.unwrap();
        assert!(
            matches!(&r, Err(TransportError::Refused(e @ ClientError::Policy(_))) if e.to_string().contains(why)),
            "client {id}: {r:?}"
        );
    }
    all_complete(honest, 4).await;
    let report = server.await.unwrap();
    check_sum(&report, &config, seed, &[0, 1, 2, 3]);
    for c in [4, 5] {
        assert_eq!(dropped_at(&report, c), Some(Stage::Join), "client {c}");
    }
}

/// Joins, runs the protocol up to its masked input, then sends the whole vector as one
/// unchunked frame (tag 0x05).
async fn unchunked_uploader(addr: SocketAddr, dep: &Deployment, id: u32, seed: u64, m: usize) {
    let identity = dep.identity(id);
    let (mut framed, config) = dep.handshake(addr, &identity, m).await.unwrap();
    let limits = Limits::for_config(&config);
    let bits = config.modulus().bits();
    let mut client = Client::new(
        identity,
        config.clone(),
        dep.policy(),
        CpuEngine::new(),
        ChaCha20Rng::seed_from_u64(seed),
    )
    .unwrap();
    client
        .set_input(&update(seed, id, config.params()), 1)
        .unwrap();
    loop {
        while let Some(env) = client.poll_transmit() {
            let frame = codec::encode_client(&env, bits);
            let masked = matches!(env.message, ClientMessage::MaskedInput(_));
            let _ = framed.send(Bytes::from(frame)).await;
            if masked {
                tokio::time::sleep(Duration::from_secs(20)).await;
                return;
            }
        }
        let Some(Ok(frame)) = framed.next().await else {
            return;
        };
        client
            .handle_message(codec::decode_server(&frame, &limits).unwrap())
            .unwrap();
    }
}

/// One upload slot and four clients that break the upload rules: one stalls after its first
/// chunk (cut off at the upload deadline), one trickles chunks below the minimum size, one
/// sends its vector unchunked (both cut off at once), and one uploads twice (its first
/// upload counts, the second drops it). The slot serves the honest clients in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_trickled_repeated_and_unchunked_uploads_are_cut_off() {
    upload_rules(false).await;
}

/// The same with every upload staged in a temporary file (as a large model's are): the sum is
/// exact, the cut-off uploads never reach it, and nothing is left on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_staged_on_disk_obey_the_same_rules_and_leave_nothing_behind() {
    upload_rules(true).await;
}

/// Sixteen enrolled members stall their uploads after the first chunk while four permits
/// serve the round: each staller holds a permit for its fair share of what is left of the
/// stage only (not a quarter of the stage, which four waves of stallers would fill), so the
/// four honest uploads, which wait behind them in arrival order, still land in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalling_members_cannot_jam_the_upload_permits() {
    let seed = testing::test_seed("stalling_members_cannot_jam_the_upload_permits");
    let dep = std::sync::Arc::new(Deployment::new(seed));
    let m = codec::CHUNK_ELEMS + 3 * codec::MIN_CHUNK_ELEMS;
    let n = 20;
    let config = RoundConfig::builder(n, m)
        .threshold(3)
        .round_id(seed)
        .stage_timeout(Duration::from_secs(8))
        .build()
        .unwrap();
    let serve_options = ServeOptions {
        max_concurrent_uploads: 4,
        ..dep.serve_options()
    };
    let (addr, server) = start(config.clone(), serve_options).await;
    // The stallers first: they take every permit as soon as the stage starts.
    let stall = Misbehaviour::StallUpload(Duration::from_secs(30));
    let stallers: Vec<_> = (4..n as u32)
        .map(|id| spawn_misbehaving(addr, &dep, seed, m, id, stall))
        .collect();
    // The honest members start their uploads a moment later, behind every staller.
    let late = Misbehaviour::LateUpload(Duration::from_millis(300));
    let honest: Vec<_> = (0..4u32)
        .map(|id| spawn_misbehaving(addr, &dep, seed, m, id, late))
        .collect();
    all_complete(honest, 4).await;
    let report = server.await.unwrap();
    for h in stallers {
        h.abort();
    }
    check_sum(&report, &config, seed, &[0, 1, 2, 3]);
    let count = |r: Refusal| report.refusals.get(&r).copied().unwrap_or(0);
    assert_eq!(count(Refusal::UploadDeadline), 16, "{:?}", report.refused);
}

async fn upload_rules(spill: bool) {
    let seed = testing::test_seed(&format!("upload_rules::{spill}"));
    let dep = Deployment::new(seed);
    // More than one minimum-size chunk, so that a stall can come after the first; and more
    // than one wire chunk, so that a staged upload is read back in joined pieces.
    let m = codec::CHUNK_ELEMS + 3 * codec::MIN_CHUNK_ELEMS;
    let config = RoundConfig::builder(8, m)
        .threshold(3)
        .round_id(seed)
        .stage_timeout(Duration::from_secs(8))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spill_dir = std::env::temp_dir().join(format!("secagg-spill-test-{seed}"));
    std::fs::create_dir_all(&spill_dir).unwrap();
    let serve_options = ServeOptions {
        max_concurrent_uploads: 1,
        upload_deadline: Some(Duration::from_millis(800)),
        max_staged_in_memory: if spill { 0 } else { 16 << 20 },
        spill_dir: Some(spill_dir.clone()),
        ..dep.serve_options()
    };
    let cfg = config.clone();
    let server = tokio::spawn(async move {
        serve(listener, cfg, CpuEngine::new(), serve_options)
            .await
            .unwrap()
    });
    let rogue = |id: u32, how: Misbehaviour| spawn_misbehaving(addr, &dep, seed, m, id, how);
    let staller = rogue(4, Misbehaviour::StallUpload(Duration::from_secs(20)));
    let trickler = rogue(5, Misbehaviour::TinyChunks(1));
    let twice = rogue(7, Misbehaviour::UploadTwice);
    let dep = std::sync::Arc::new(dep);
    let unchunked = {
        let dep = std::sync::Arc::clone(&dep);
        tokio::spawn(async move { unchunked_uploader(addr, &dep, 6, seed, m).await })
    };
    let mut honest: Vec<_> = (0..3u32)
        .map(|i| spawn_enrolled(addr, &dep, seed, m, i, None))
        .collect();
    // Client 3 streams its update: read, quantized, masked and sent a piece at a time.
    honest.push({
        let (connector, name) = dep.client_tls();
        let join = join_as(dep.identity(3), dep.policy(), None).tls(connector, name);
        let x = update(seed, 3, m);
        let mut at = 0;
        let read = move |out: &mut [f32]| {
            out.copy_from_slice(&x[at..at + out.len()]);
            at += out.len();
            Ok(())
        };
        let input = ClientInput::Stream {
            params: m,
            read: Box::new(read),
        };
        let rng = RoundRng::seed_from_u64(seed ^ 3);
        tokio::spawn(async move { join.rng(rng).run(addr, input).await })
    });
    for h in honest {
        let r = h.await.unwrap();
        assert!(matches!(r, Ok(ClientOutcome::Completed { .. })), "{r:?}");
    }
    let report = server.await.unwrap();
    for h in [staller, trickler, twice] {
        h.abort();
    }
    unchunked.abort();
    // The repeated upload's first copy is in the sum.
    check_sum(&report, &config, seed, &[0, 1, 2, 3, 7]);
    let out = report.outcome.as_ref().unwrap();
    for c in [4, 5, 6] {
        let d = out.dropped.iter().find(|d| d.client.0 == c).unwrap();
        assert_eq!(d.stage, Stage::MaskedInput, "client {c}");
        assert!(
            matches!(d.reason, DropReason::Misbehaved(_)),
            "{c}: {:?}",
            d.reason
        );
    }
    assert_eq!(dropped_at(&report, 7), Some(Stage::Consistency));
    let count = |r: Refusal| report.refusals.get(&r).copied().unwrap_or(0);
    assert_eq!(count(Refusal::UploadDeadline), 1, "{:?}", report.refused);
    // The trickler's one-element chunk is a bad upload; the unchunked vector (over 65,536
    // elements) is refused at the frame-length limit before it is read.
    assert_eq!(count(Refusal::BadUpload), 1, "{:?}", report.refused);
    assert_eq!(count(Refusal::BadFrame), 1, "{:?}", report.refused);
    assert_eq!(count(Refusal::DuplicateUpload), 1, "{:?}", report.refused);
    // Cut off well before the 8 s stage deadline: the stall costs its upload deadline.
    assert!(
        report.elapsed < Duration::from_secs(6),
        "{:?}",
        report.elapsed
    );
    // Every upload that completed went through the staging asked for.
    assert_eq!(report.staged_on_disk, if spill { 5 } else { 0 });
    // Staged files are unlinked as soon as they are made.
    let left: Vec<_> = std::fs::read_dir(&spill_dir).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&spill_dir).unwrap();
}

/// A server given neither TLS nor `insecure_plaintext` refuses to serve at once instead of
/// running a plaintext round (the library, like the CLI, never falls back to plaintext without
/// being told).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_tls_refuses_to_serve_unless_told_plaintext() {
    let seed = testing::test_seed("a_server_without_tls_refuses_to_serve_unless_told_plaintext");
    let config = RoundConfig::builder(6, 32)
        .threshold(3)
        .round_id(seed)
        .stage_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = ServeOptions::default();
    assert!(options.tls.is_none() && !options.insecure_plaintext);
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        serve(listener, config, CpuEngine::new(), options),
    )
    .await
    .expect("the server should refuse at once, not run a round");
    assert!(
        matches!(refused, Err(TransportError::NoTls)),
        "served without TLS: {refused:?}"
    );
}
