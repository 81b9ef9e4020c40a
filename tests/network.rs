//! Rounds over real TCP on loopback: the tokio transport driving the sans-IO state machines,
//! with a server that admits only clients enrolled by the test CA.
//! Sixty clients as tokio tasks with dropouts at every stage; then a round under attack —
//! garbage, truncated frames, oversized length prefixes, silence, a duplicate id, a
//! wrong-round message, a replay, a small-order masking key and a forged share bundle — that
//! must still complete correctly for everyone else; clients with a certificate from another CA
//! or none; clients whose own policy refuses the round; stalled and unchunked uploads.

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
use secagg::engine::{CpuEngine, testing};
use secagg::host::codec::{self, Hello, Limits, tag};
use secagg::host::messages::{ClientMessage, Envelope};
use secagg::host::quantize::error_bound;
use secagg::host::transport::{
    ClientOptions, ClientOutcome, RoundReport, ServeOptions, TransportError, frame_codec,
    run_client, serve,
};
use secagg::host::{
    Client, ClientId, ClientIdentity, ClientPolicy, ClientStatus, DropReason, RoundConfig, Stage,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

mod support;
use support::Deployment;

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

/// Runs client `id` of the deployment with `identity` and `policy` as a task.
fn spawn_client(
    addr: SocketAddr,
    seed: u64,
    m: usize,
    id: u32,
    drop_after: Option<Stage>,
    identity: ClientIdentity,
    policy: ClientPolicy,
) -> tokio::task::JoinHandle<Result<ClientOutcome, TransportError>> {
    let x = update(seed, id, m);
    let rng = ChaCha20Rng::seed_from_u64(seed.wrapping_add(u64::from(id) + 1));
    tokio::spawn(async move {
        run_client(
            addr,
            options(id, drop_after),
            identity,
            policy,
            &x,
            CpuEngine::new(),
            rng,
        )
        .await
    })
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

fn options(id: u32, drop_after: Option<Stage>) -> ClientOptions {
    ClientOptions {
        id: ClientId(id),
        weight: None,
        layout: vec![7, 7],
        drop_after,
        connect_timeout: Duration::from_secs(10),
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
    for j in 0..config.params() {
        let want: f64 = included
            .iter()
            .map(|&i| f64::from(update(seed, i, config.params())[j].clamp(-clip, clip)))
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
    id: u32,
    seed: u64,
    (identity, policy): (ClientIdentity, ClientPolicy),
    tamper: impl Fn(&mut Envelope<ClientMessage>) -> usize,
) -> Result<ClientStatus, TransportError> {
    let socket = TcpStream::connect(addr).await?;
    let mut framed = Framed::new(socket, frame_codec(1 << 24));
    let hello = Hello {
        client: ClientId(id),
        weighted: false,
        layout: vec![7, 7],
    };
    framed
        .send(Bytes::from(codec::encode_hello(&hello)))
        .await?;
    let first = framed
        .next()
        .await
        .ok_or(TransportError::Closed("welcome"))??;
    if codec::frame_tag(&first)? == tag::REJECT {
        return Err(TransportError::Rejected(codec::decode_reject(&first)?));
    }
    let config = codec::decode_welcome(&first)?;
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
    let creds = |id: u32| (dep.identity(id), dep.policy());

    // Connections that never join: garbage, an oversized length prefix, a truncated frame,
    // and one that says nothing at all.
    raw(addr, b"GET / HTTP/1.1\r\nHost: secagg\r\n\r\n").await;
    raw(addr, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await;
    raw(addr, &[0, 0, 0, 100, codec::VERSION, tag::HELLO, 0, 0]).await;
    let _mute = TcpStream::connect(addr).await.unwrap();

    let honest: Vec<_> = (0..10u32)
        .map(|i| spawn_enrolled(addr, &dep, seed, m, i, None))
        .collect();
    // 10: its share keys carry the wrong round id.
    let wrong_round = tokio::spawn(tampering_client(addr, 10, seed, creds(10), |env| {
        if matches!(env.message, ClientMessage::ShareKeys { .. }) {
            env.round ^= 1;
        }
        1
    }));
    // 11: sends every message twice (the replays are refused, it stays in the round).
    let replayer = tokio::spawn(tampering_client(addr, 11, seed, creds(11), |_| 2));
    // 12: advertises a masking key of small order (a point of the 8-torsion subgroup, whose
    // agreement with anyone is predictable). The check comes before the signature's, so the
    // stale signature is not what drops it.
    let low_order = tokio::spawn(tampering_client(addr, 12, seed, creds(12), |env| {
        if let ClientMessage::AdvertiseKeys(k) = &mut env.message {
            k.keys.masking = EIGHT_TORSION[1].compress().to_bytes();
        }
        1
    }));
    // 13: forges its bundle for client 14. That costs 14 the forger's shares, not the round:
    // 14 reports the bundle unreadable and still completes, and both are in the sum.
    let forger = tokio::spawn(tampering_client(addr, 13, seed, creds(13), |env| {
        if let ClientMessage::ShareKeys { bundles, .. } = &mut env.message {
            for b in bundles.iter_mut().filter(|b| b.peer == ClientId(14)) {
                b.ciphertext[5] ^= 1;
            }
        }
        1
    }));
    let victim = tokio::spawn(tampering_client(addr, 14, seed, creds(14), |_| 1));
    // 15: says hello, then goes silent (connection open): it never joins.
    let silent = tokio::spawn(async move {
        let socket = TcpStream::connect(addr).await.unwrap();
        let mut framed = Framed::new(socket, frame_codec(1 << 24));
        let hello = Hello {
            client: ClientId(15),
            weighted: false,
            layout: vec![7, 7],
        };
        framed
            .send(Bytes::from(codec::encode_hello(&hello)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(framed);
    });
    // A second client 3: refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dup = spawn_enrolled(addr, &dep, seed, m, 3, None).await.unwrap();
    assert!(
        matches!(&dup, Err(TransportError::Rejected(r)) if r.contains("duplicate")),
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
    assert_eq!(dropped_at(&report, 12), Some(Stage::AdvertiseKeys));
    assert_eq!(dropped_at(&report, 13), None);
    assert_eq!(dropped_at(&report, 14), None);
    // The first stage is now join (the nonce commitment), which the silent client misses.
    assert_eq!(dropped_at(&report, 15), Some(Stage::Join));
    let out = report.outcome.as_ref().unwrap();
    let low = out.dropped.iter().find(|d| d.client.0 == 12).unwrap();
    assert!(
        matches!(&low.reason, DropReason::Misbehaved(e) if e.to_string().contains("low-order")),
        "{:?}",
        low.reason
    );
    assert!(report.refused.len() >= 4, "{:?}", report.refused);
}

/// An enrolled server drops a client whose certificate comes from another CA, and one with a
/// self-asserted identity, when they advertise keys; the round completes for the others.
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
    let foreign = spawn_client(addr, seed, m, 5, None, other.identity(5), other.policy());
    // 6 asserts its own key (its policy trusts nobody).
    let unauthenticated = spawn_client(
        addr,
        seed,
        m,
        6,
        None,
        dep.self_asserted(6),
        secagg::host::sim::parameter_free_policy(),
    );
    for h in honest {
        let r = h.await.unwrap();
        assert!(
            matches!(r, Ok(ClientOutcome::Completed { included: 5 })),
            "{r:?}"
        );
    }
    for (c, h) in [(5, foreign), (6, unauthenticated)] {
        let r = h.await.unwrap();
        assert!(r.is_err(), "client {c}: {r:?}");
    }
    let report = server.await.unwrap();
    check_sum(&report, &config, seed, &[0, 1, 2, 3, 4]);
    let out = report.outcome.as_ref().unwrap();
    for c in [5, 6] {
        let d = out.dropped.iter().find(|d| d.client.0 == c).unwrap();
        assert_eq!(d.stage, Stage::AdvertiseKeys, "client {c}");
        assert!(
            matches!(d.reason, DropReason::Misbehaved(_)),
            "client {c}: {:?}",
            d.reason
        );
    }
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
        ..ClientPolicy::enrolled(dep.ca())
    };
    let refusers = [
        (4, big_cohort, "minimum cohort of 7"),
        (5, semi_malicious, "semi-malicious"),
    ]
    .map(|(id, policy, why)| {
        (
            id,
            why,
            spawn_client(addr, seed, m, id, None, dep.identity(id), policy),
        )
    });
    for (id, why, h) in refusers {
        let r = h.await.unwrap();
        assert!(
            matches!(&r, Err(TransportError::Refused(e)) if e.contains(why)),
            "client {id}: {r:?}"
        );
    }
    for h in honest {
        let r = h.await.unwrap();
        assert!(
            matches!(r, Ok(ClientOutcome::Completed { included: 4 })),
            "{r:?}"
        );
    }
    let report = server.await.unwrap();
    check_sum(&report, &config, seed, &[0, 1, 2, 3]);
    for c in [4, 5] {
        assert_eq!(dropped_at(&report, c), Some(Stage::Join), "client {c}");
    }
}

/// Joins, runs the protocol up to its masked input (which follows its share-check frame,
/// tag 0x04), then either sends the whole vector as one unchunked frame (tag 0x05) or starts
/// a chunked upload and stalls.
async fn bad_uploader(
    addr: SocketAddr,
    id: u32,
    seed: u64,
    (identity, policy): (ClientIdentity, ClientPolicy),
    unchunked: bool,
) {
    let socket = TcpStream::connect(addr).await.unwrap();
    let mut framed = Framed::new(socket, frame_codec(1 << 24));
    let hello = Hello {
        client: ClientId(id),
        weighted: false,
        layout: vec![7, 7],
    };
    framed
        .send(Bytes::from(codec::encode_hello(&hello)))
        .await
        .unwrap();
    let first = framed.next().await.unwrap().unwrap();
    let config = codec::decode_welcome(&first).unwrap();
    let limits = Limits::for_config(&config);
    let bits = config.modulus().bits();
    let mut client = Client::new(
        identity,
        config.clone(),
        policy,
        CpuEngine::new(),
        ChaCha20Rng::seed_from_u64(seed),
    )
    .unwrap();
    client
        .set_input(&update(seed, id, config.params()), 1)
        .unwrap();
    loop {
        while let Some(env) = client.poll_transmit() {
            if let ClientMessage::MaskedInput(v) = &env.message {
                let frame = if unchunked {
                    codec::encode_client(&env, bits)
                } else {
                    // The first ten elements only, then silence.
                    codec::encode_masked_chunks(env.round, &v[..10], bits).remove(0)
                };
                let _ = framed.send(Bytes::from(frame)).await;
                tokio::time::sleep(Duration::from_secs(20)).await;
                return;
            }
            framed
                .send(Bytes::from(codec::encode_client(&env, bits)))
                .await
                .unwrap();
        }
        let Some(Ok(frame)) = framed.next().await else {
            return;
        };
        client
            .handle_message(codec::decode_server(&frame, &limits).unwrap())
            .unwrap();
    }
}

/// One upload slot, a client that starts an upload and stalls, one that sends its vector
/// unchunked: both are cut off, and the slot serves the honest clients in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_unchunked_uploads_are_cut_off() {
    let seed = testing::test_seed("stalled_and_unchunked_uploads_are_cut_off");
    let dep = Deployment::new(seed);
    let m = 200;
    let config = RoundConfig::builder(6, m)
        .threshold(3)
        .round_id(seed)
        .stage_timeout(Duration::from_secs(6))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve_options = ServeOptions {
        max_concurrent_uploads: 1,
        ..dep.serve_options()
    };
    let cfg = config.clone();
    let server = tokio::spawn(async move {
        serve(listener, cfg, CpuEngine::new(), serve_options)
            .await
            .unwrap()
    });
    let creds = |id: u32| (dep.identity(id), dep.policy());
    let staller = tokio::spawn(bad_uploader(addr, 4, seed, creds(4), false));
    let unchunked = tokio::spawn(bad_uploader(addr, 5, seed, creds(5), true));
    let honest: Vec<_> = (0..4u32)
        .map(|i| spawn_enrolled(addr, &dep, seed, m, i, None))
        .collect();
    for h in honest {
        assert!(matches!(
            h.await.unwrap(),
            Ok(ClientOutcome::Completed { .. })
        ));
    }
    let report = server.await.unwrap();
    staller.abort();
    unchunked.abort();
    check_sum(&report, &config, seed, &[0, 1, 2, 3]);
    let out = report.outcome.as_ref().unwrap();
    for c in [4, 5] {
        let d = out.dropped.iter().find(|d| d.client.0 == c).unwrap();
        assert_eq!(d.stage, Stage::MaskedInput);
        assert!(
            matches!(d.reason, DropReason::Misbehaved(_)),
            "{c}: {:?}",
            d.reason
        );
    }
    // Cut off well before the 6 s deadline: the stall costs an eighth of it.
    assert!(
        report.elapsed < Duration::from_secs(5),
        "{:?}",
        report.elapsed
    );
}
