//! The client journal (`secagg_host::client::journal`): real rounds in which every client is
//! snapshotted and rebuilt from the bytes before each frame it handles, checked against the
//! live client it replaces and against the plaintext sum; a rebuilt client refuses what the
//! original refuses; and bytes that are no journal give their typed error, never a panic.
//!
//! Inputs are drawn from a seed printed by each test (set `SECAGG_TEST_SEED` to replay one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use rand_core::{Rng, SeedableRng};
use secagg_engine::CpuEngine;
use secagg_host::client::{Journal, JournalError, JournaledClient, StaleJournal};
use secagg_host::codec;
use secagg_host::error::CodecError;
use secagg_host::identity::{CaKey, IdentityError, IdentityKey};
use secagg_host::messages::{ClientMessage, Envelope, ServerMessage};
use secagg_host::{ClientError, ClientId, ClientIdentity, ClientPolicy, ClientStatus};
use secagg_host::{PeerMisbehaved, PolicyError, ProtocolError, RoundConfig, Server};
use secagg_host::{ServerStatus, Stage};

type Rng20 = rand_chacha::ChaCha20Rng;
type Jc = JournaledClient<CpuEngine>;

const NOW: Duration = Duration::ZERO;

fn test_seed(name: &str) -> u64 {
    let seed = match std::env::var("SECAGG_TEST_SEED") {
        Ok(s) => s.parse().expect("SECAGG_TEST_SEED is a u64"),
        Err(_) => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).unwrap();
            u64::from_le_bytes(b)
        }
    };
    println!("{name}: seed {seed} (SECAGG_TEST_SEED={seed} replays it)");
    seed
}

fn policy() -> ClientPolicy {
    ClientPolicy {
        min_cohort: 3,
        colluders: 1,
        ..ClientPolicy::curious_unauthenticated()
    }
}

/// What a client does with its input.
#[derive(Clone, Copy, PartialEq)]
enum Input {
    /// Quantized values, given at the masked-input stage (the sum is then exact).
    Quantized,
    /// An `f32` update, given before the round starts to the first incarnation only.
    EarlyFloat,
}

/// One round of journaled clients and a server, routed in memory.
struct Round {
    config: RoundConfig,
    server: Server<CpuEngine>,
    clients: Vec<Jc>,
    /// Each client's quantized input: m values (each level × weight), then the weight.
    values: Vec<Vec<u32>>,
    floats: Vec<Vec<f32>>,
    input: Input,
    /// Status at which a client disconnects.
    drop_at: Vec<Option<ClientStatus>>,
    gone: Vec<bool>,
    /// Whether the client now in `clients` was given its input.
    given: Vec<bool>,
    /// Rebuild each client from its snapshot before each frame it handles.
    restore: bool,
    /// Frames that were handled by a rebuilt client and its live original alike.
    compared: usize,
    /// What each rebuilt client sent, to go out on the next pass.
    pending: Vec<Vec<Envelope<ClientMessage>>>,
}

impl Round {
    fn new(n: usize, m: usize, k: usize, t: usize, input: Input, rng: &mut Rng20) -> Self {
        let config = RoundConfig::builder(n, m)
            .neighbors(k)
            .threshold(t)
            .build()
            .unwrap();
        let welcome = codec::encode_welcome(&config);
        let mut server = Server::new(config.clone(), CpuEngine::new(), NOW);
        let q = config.quantization();
        let mut clients = Vec::new();
        let mut values = Vec::new();
        let mut floats = Vec::new();
        for i in 0..n as u32 {
            let me = ClientIdentity::self_asserted(ClientId(i), IdentityKey::generate(rng));
            let mut c = Jc::new(me, &welcome, policy(), CpuEngine::new(), rng).unwrap();
            let weight = 1 + rng.next_u32() % q.max_weight;
            let mut v: Vec<u32> = (0..m)
                .map(|_| (rng.next_u32() % q.levels) * weight)
                .collect();
            v.push(weight);
            let x: Vec<f32> = (0..m)
                .map(|_| (rng.next_u32() as f32 / u32::MAX as f32 * 2.0 - 1.0) * q.clip)
                .collect();
            if input == Input::EarlyFloat {
                c.set_input(&x, weight).unwrap();
            }
            server.handle_join(ClientId(i), NOW);
            clients.push(c);
            values.push(v);
            floats.push(x);
        }
        Self {
            config,
            server,
            given: vec![input == Input::EarlyFloat; n],
            clients,
            values,
            floats,
            input,
            drop_at: vec![None; n],
            gone: vec![false; n],
            restore: true,
            compared: 0,
            pending: vec![Vec::new(); n],
        }
    }

    fn running(&self) -> bool {
        matches!(self.server.status(), ServerStatus::Running(_))
    }

    /// Sends what each client has to send, then hands each of the server's frames to its
    /// client. Returns whether anything moved.
    fn route_once(&mut self) -> bool {
        let mut moved = false;
        for i in 0..self.clients.len() {
            if self.gone[i] {
                continue;
            }
            if self.drop_at[i].as_ref() == Some(&self.clients[i].status()) {
                self.gone[i] = true;
                self.server.handle_disconnect(ClientId(i as u32), NOW);
                moved = true;
                continue;
            }
            let pending = std::mem::take(&mut self.pending[i]);
            let polled = std::iter::from_fn(|| self.clients[i].poll_transmit());
            for env in pending.into_iter().chain(polled.collect::<Vec<_>>()) {
                self.server.handle_message(ClientId(i as u32), env, NOW);
                moved = true;
            }
        }
        while let Some((to, env)) = self.server.poll_transmit() {
            moved = true;
            let i = to.0 as usize;
            if !self.gone[i] {
                self.deliver(i, &codec::encode_server(&env));
            }
        }
        moved
    }

    fn give_input(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if !self.given[i] && c.status() == ClientStatus::Running(Stage::MaskedInput) {
            match self.input {
                Input::Quantized => c.set_quantized_input(self.values[i].clone()).unwrap(),
                Input::EarlyFloat => {
                    let weight = *self.values[i].last().unwrap();
                    c.set_input(&self.floats[i], weight).unwrap();
                }
            }
            self.given[i] = true;
        }
    }

    /// Hands `frame` to client `i`; with `restore`, also to the client rebuilt from its
    /// snapshot, which must act exactly as the live one and then replaces it.
    fn deliver(&mut self, i: usize, frame: &[u8]) {
        if !self.restore {
            self.give_input(i);
            let c = &mut self.clients[i];
            let frame = c.decode(frame).unwrap();
            c.handle(frame).unwrap();
            return;
        }
        let snapshot = self.clients[i].snapshot();
        let journal = Journal::decode(&snapshot).unwrap();
        journal
            .check_step(Some(self.clients[i].journal().step()))
            .unwrap();
        let mut rebuilt = Jc::resume(journal, policy(), CpuEngine::new()).unwrap();
        assert!(
            rebuilt.poll_transmit().is_none(),
            "a rebuilt client sends nothing again"
        );
        assert_eq!(rebuilt.status(), self.clients[i].status());
        assert_eq!(
            &rebuilt.snapshot()[..],
            &snapshot[..],
            "the journal round-trips"
        );
        // Both get the input (the rebuilt one has none), then the frame.
        self.give_input(i);
        let mut live = std::mem::replace(&mut self.clients[i], rebuilt);
        self.given[i] = false;
        self.give_input(i);
        let bits = self.config.modulus().bits();
        let mut outputs = Vec::new();
        for c in [&mut live, &mut self.clients[i]] {
            let decoded = c.decode(frame).unwrap();
            c.handle(decoded).unwrap();
            let mut sent = Vec::new();
            while let Some(env) = c.poll_transmit() {
                sent.push(codec::encode_client(&env, bits));
            }
            outputs.push((c.status(), sent, c.snapshot()));
        }
        let (live_out, rebuilt_out) = (&outputs[0], &outputs[1]);
        assert_eq!(live_out.0, rebuilt_out.0, "client {i}: the same status");
        assert!(
            live_out.1 == rebuilt_out.1,
            "client {i}: the rebuilt client sends exactly what the live one does"
        );
        assert!(
            live_out.2[..] == rebuilt_out.2[..],
            "client {i}: the same journal"
        );
        self.compared += 1;
        // The rebuilt client goes on; its messages go out on the next pass.
        let limits = codec::Limits::for_config(&self.config);
        for bytes in &rebuilt_out.1 {
            let env = codec::decode_client(bytes, &limits).unwrap();
            self.pending[i].push(env);
        }
    }

    /// Routes until the round ends.
    fn finish(&mut self) {
        for _ in 0..1000 {
            if !self.running() {
                // The completion notices.
                self.route_once();
                return;
            }
            if !self.route_once() {
                let at = self.server.poll_timeout().expect("a deadline");
                self.server.handle_timeout(at);
            }
        }
        panic!("the round did not end");
    }

    /// The sum of the inputs of `included`, mod 2^b, and their weight.
    fn plaintext_sum(&self, included: &[ClientId]) -> (Vec<u32>, u64) {
        let m = self.config.params();
        let modulus = 1u64 << self.config.modulus().bits();
        let mut sum = vec![0u64; m];
        let mut weight = 0u64;
        for id in included {
            let v = &self.values[id.0 as usize];
            for (s, x) in sum.iter_mut().zip(v) {
                *s = (*s + u64::from(*x)) % modulus;
            }
            weight += u64::from(v[m]);
        }
        (sum.into_iter().map(|s| s as u32).collect(), weight)
    }
}

/// Three distinct clients: one leaves after advertising its keys, one before its masked
/// input, one before unmasking.
fn schedule_dropouts(round: &mut Round, rng: &mut Rng20) -> [usize; 3] {
    let n = round.clients.len();
    let mut picked: Vec<usize> = Vec::new();
    while picked.len() < 3 {
        let c = (rng.next_u32() as usize) % n;
        if !picked.contains(&c) {
            picked.push(c);
        }
    }
    let stages = [Stage::ShareKeys, Stage::MaskedInput, Stage::Unmasking];
    for (c, stage) in picked.iter().zip(stages) {
        round.drop_at[*c] = Some(ClientStatus::Running(stage));
    }
    [picked[0], picked[1], picked[2]]
}

#[test]
fn every_client_rebuilt_before_every_frame_gives_the_exact_sum() {
    let seed = test_seed("rebuilt before every frame");
    let mut rng = Rng20::seed_from_u64(seed);
    let mut round = Round::new(11, 57, 8, 5, Input::Quantized, &mut rng);
    let [early, before_input, before_unmask] = schedule_dropouts(&mut round, &mut rng);
    round.finish();
    assert_eq!(round.server.status(), ServerStatus::Completed);
    let out = round.server.output().unwrap();
    let want: Vec<ClientId> = (0..11u32)
        .filter(|&i| i as usize != early && i as usize != before_input)
        .map(ClientId)
        .collect();
    assert_eq!(
        out.included, want,
        "client {before_unmask}'s input is in the sum"
    );
    let (sum, weight) = round.plaintext_sum(&out.included);
    assert_eq!(out.sum, sum, "the sum is the plaintext sum");
    assert_eq!(out.total_weight, weight);
    // Each of the 8 survivors was rebuilt at each of its 7 frames; the others at fewer.
    assert!(
        round.compared >= 8 * 7,
        "{} frames compared",
        round.compared
    );
    for (i, c) in round.clients.iter().enumerate() {
        if !round.gone[i] {
            assert_eq!(
                c.status(),
                ClientStatus::Completed {
                    included: want.len() as u32
                }
            );
            assert_eq!(c.journal().step(), 8, "seven frames and an input");
        }
    }
}

#[test]
fn an_input_set_before_the_round_does_not_change_what_a_rebuilt_client_draws() {
    // The input is rounded from a stream of its own: a client that was given its update
    // before its keys were drawn, then rebuilt without it, still holds the keys it
    // advertised (before, the rebuilt client's keys differed and it aborted).
    let seed = test_seed("early input");
    let mut rng = Rng20::seed_from_u64(seed);
    let mut round = Round::new(6, 40, 5, 3, Input::EarlyFloat, &mut rng);
    round.finish();
    assert_eq!(round.server.status(), ServerStatus::Completed);
    let out = round.server.output().unwrap();
    assert_eq!(out.included.len(), 6);
    let mean = out.weighted_mean(&round.config);
    let q = round.config.quantization();
    let step = 2.0 * q.clip / (q.levels - 1) as f32;
    let total: f32 = round.values.iter().map(|v| *v.last().unwrap() as f32).sum();
    for (j, got) in mean.iter().enumerate() {
        let want: f32 = (0..6)
            .map(|i| round.floats[i][j] * *round.values[i].last().unwrap() as f32)
            .sum::<f32>()
            / total;
        assert!((got - want).abs() <= step, "element {j}: {got} vs {want}");
    }
}

/// Client 0's snapshots before each frame it handled, with the step each was at.
type History = Vec<(u64, Vec<u8>)>;

/// Runs a round without rebuilding until client 0 sent its unmask shares, keeping its
/// snapshot before each frame; returns the round, those snapshots and the unmask request
/// it answered.
fn until_unmasked(seed: u64) -> (Round, History, Envelope<ServerMessage>) {
    let mut rng = Rng20::seed_from_u64(seed);
    let mut round = Round::new(7, 20, 6, 4, Input::Quantized, &mut rng);
    round.restore = false;
    let mut history = Vec::new();
    for _ in 0..100 {
        for i in 0..round.clients.len() {
            while let Some(env) = round.clients[i].poll_transmit() {
                round.server.handle_message(ClientId(i as u32), env, NOW);
            }
        }
        while let Some((to, env)) = round.server.poll_transmit() {
            let i = to.0 as usize;
            if i == 0 {
                history.push((
                    round.clients[0].journal().step(),
                    round.clients[0].snapshot().to_vec(),
                ));
            }
            round.deliver(i, &codec::encode_server(&env));
            if i == 0 && matches!(env.message, ServerMessage::UnmaskRequest { .. }) {
                return (round, history, env);
            }
        }
    }
    panic!("client 0 was never asked to unmask");
}

#[test]
fn a_rebuilt_client_refuses_what_the_original_refuses() {
    let seed = test_seed("refusals");
    let (mut round, history, request) = until_unmasked(seed);
    let live = &mut round.clients[0];
    assert_eq!(live.status(), ClientStatus::Running(Stage::Unmasking));
    let sent: Vec<_> = std::iter::from_fn(|| live.poll_transmit()).collect();
    assert!(matches!(
        sent.as_slice(),
        [Envelope {
            message: ClientMessage::UnmaskShares(_),
            ..
        }]
    ));
    let after = live.snapshot();
    let after_step = live.journal().step();

    // A second request, committing to one survivor fewer, would ask for the key share of a
    // neighbour whose self-mask share was just revealed: the original refuses it, and so
    // does a client rebuilt from the snapshot taken after the first.
    let ServerMessage::UnmaskRequest(first) = request.message else {
        unreachable!()
    };
    let fewer = secagg_host::messages::UnmaskRequest {
        survivors: secagg_host::messages::ListCommitment {
            len: first.survivors.len - 1,
            ..first.survivors
        },
        ..first
    };
    let second = codec::encode_server(&Envelope {
        round: request.round,
        message: ServerMessage::UnmaskRequest(fewer),
    });
    let mut rebuilt = Jc::restore(&after, policy(), CpuEngine::new()).unwrap();
    assert!(
        rebuilt.poll_transmit().is_none(),
        "the shares are not sent twice"
    );
    for c in [&mut round.clients[0], &mut rebuilt] {
        let frame = c.decode(&second).unwrap();
        c.handle(frame).unwrap();
        assert!(
            matches!(
                c.status(),
                ClientStatus::Aborted(ProtocolError::PeerMisbehaved(
                    PeerMisbehaved::SecondUnmaskRequest { .. }
                ))
            ),
            "{:?}",
            c.status()
        );
        assert!(c.poll_transmit().is_none(), "nothing revealed");
    }

    // Every earlier snapshot is behind the step the client reached: refused.
    let now = round.clients[0].journal().step();
    assert!(history.len() >= 6);
    for (step, old) in &history {
        let journal = Journal::decode(old).unwrap();
        assert_eq!(journal.step(), *step);
        assert_eq!(
            journal.check_step(Some(now)),
            Err(StaleJournal::Overtaken {
                journal: *step,
                stored: now
            })
        );
    }
    assert_eq!(now, after_step + 1);
    let journal = Journal::decode(&after).unwrap();
    assert_eq!(
        journal.check_step(Some(after_step - 1)),
        Err(StaleJournal::StoreBehind {
            journal: after_step,
            stored: after_step - 1
        })
    );
    assert_eq!(journal.check_step(None), Err(StaleJournal::Unknown));
    assert_eq!(journal.check_step(Some(journal.step())), Ok(()));
}

#[test]
fn a_client_rebuilt_after_its_masked_input_does_not_mask_again() {
    let seed = test_seed("after the masked input");
    let (round, history, _) = until_unmasked(seed);
    // The snapshot taken before the survivor list: its client sent its masked input.
    let (_, snapshot) = &history[history.len() - 2];
    let mut rebuilt = Jc::restore(snapshot, policy(), CpuEngine::new()).unwrap();
    assert_eq!(rebuilt.status(), ClientStatus::Running(Stage::Consistency));
    assert!(rebuilt.poll_transmit().is_none());
    // It needs no input, and takes none.
    assert_eq!(
        rebuilt.set_quantized_input(round.values[0].clone()),
        Err(ClientError::InputAlreadySent)
    );
}

/// A journal from the middle of a round (client 0 after its masked input), made once.
fn mid_round_snapshot() -> &'static [u8] {
    static SNAPSHOT: OnceLock<Vec<u8>> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let (_, history, _) = until_unmasked(7);
        history[history.len() - 2].1.clone()
    })
}

/// Offsets in a self-asserted client's journal (see the module docs of the format).
const STEP_AT: usize = 20;
const CERT_FLAG_AT: usize = 96;
const WELCOME_LEN_AT: usize = 97;
const WELCOME_AT: usize = 101;

fn frames_at(bytes: &[u8]) -> usize {
    let welcome = u32::from_le_bytes(bytes[WELCOME_LEN_AT..WELCOME_AT].try_into().unwrap());
    WELCOME_AT + welcome as usize + 1
}

fn decode_err(bytes: &[u8]) -> JournalError {
    match Journal::decode(bytes) {
        Ok(_) => panic!("decoded"),
        Err(e) => e,
    }
}

#[test]
fn every_truncation_is_a_typed_error() {
    let bytes = mid_round_snapshot();
    assert!(Journal::decode(bytes).is_ok());
    for cut in 0..bytes.len() {
        let e = decode_err(&bytes[..cut]);
        assert!(
            matches!(e, JournalError::Truncated { .. }),
            "cut at {cut}: {e}"
        );
    }
}

#[test]
fn each_corruption_gives_its_own_error() {
    let good = mid_round_snapshot().to_vec();
    let with = |at: usize, patch: &[u8]| {
        let mut b = good.clone();
        b[at..at + patch.len()].copy_from_slice(patch);
        decode_err(&b)
    };
    assert!(matches!(with(0, b"XAJ2"), JournalError::NotAJournal));
    assert!(matches!(with(0, b"SAJ1"), JournalError::NoStepCounter));
    assert!(matches!(
        with(0, b"SAJ3"),
        JournalError::UnknownVersion('3')
    ));
    assert!(matches!(
        with(CERT_FLAG_AT, &[2]),
        JournalError::BadFlag {
            field: "certificate",
            value: 2
        }
    ));
    assert!(matches!(
        with(WELCOME_LEN_AT, &u32::MAX.to_le_bytes()),
        JournalError::TooLong {
            field: "welcome",
            ..
        }
    ));
    assert!(matches!(with(WELCOME_AT, &[99]), JournalError::Welcome(_)));
    let frames = frames_at(&good);
    assert!(matches!(
        with(frames - 1, &[7]),
        JournalError::BadFlag {
            field: "input",
            value: 7
        }
    ));
    assert!(matches!(
        with(frames, &65u32.to_le_bytes()),
        JournalError::TooLong {
            field: "frame list",
            len: 65,
            max: 64
        }
    ));
    assert!(matches!(
        with(frames + 4, &(1u32 << 31).to_le_bytes()),
        JournalError::TooLong { field: "frame", .. }
    ));
    let mut longer = good.clone();
    longer.extend_from_slice(&[0, 0, 0]);
    assert!(matches!(
        decode_err(&longer),
        JournalError::TrailingBytes(3)
    ));

    // A frame that no longer decodes is found when the client is rebuilt.
    let mut bad_frame = good.clone();
    bad_frame[frames + 8] = 0xee; // the first frame's wire version
    let e = Jc::restore(&bad_frame, policy(), CpuEngine::new())
        .err()
        .expect("refused");
    assert!(matches!(e, JournalError::Frame { index: 0, .. }), "{e}");

    // The step is not checked by the format, only by `check_step`.
    let mut later = good.clone();
    later[STEP_AT..STEP_AT + 8].copy_from_slice(&99u64.to_le_bytes());
    assert_eq!(Journal::decode(&later).unwrap().step(), 99);

    // A policy the round fails refuses the rebuild, as it refused the first client.
    let strict = ClientPolicy {
        min_cohort: 50,
        ..policy()
    };
    let e = Jc::restore(&good, strict, CpuEngine::new())
        .err()
        .expect("refused");
    assert!(
        matches!(
            e,
            JournalError::Refused(ClientError::Policy(PolicyError::Cohort { .. }))
        ),
        "{e}"
    );
}

#[test]
fn an_enrolled_client_round_trips_and_a_bad_certificate_is_refused() {
    let seed = test_seed("enrolled");
    let mut rng = Rng20::seed_from_u64(seed);
    let ca = CaKey::generate(&mut rng);
    let config = RoundConfig::builder(5, 10).threshold(4).build().unwrap();
    let welcome = codec::encode_welcome(&config);
    let policy = ClientPolicy {
        min_cohort: 3,
        colluders: 1,
        ..ClientPolicy::enrolled(ca.public())
    };
    let key = IdentityKey::generate(&mut rng);
    let me = ClientIdentity::enrolled(
        IdentityKey::from_secret_bytes(&key.to_secret_bytes()),
        ca.issue(ClientId(3), &key.public()),
    )
    .unwrap();
    let client = Jc::new(me, &welcome, policy.clone(), CpuEngine::new(), &mut rng).unwrap();
    let snapshot = client.snapshot();
    let rebuilt = Jc::restore(&snapshot, policy.clone(), CpuEngine::new()).unwrap();
    assert_eq!(rebuilt.client().id(), ClientId(3));
    assert_eq!(&rebuilt.snapshot()[..], &snapshot[..]);

    // The certificate's length, then its key, corrupted.
    let mut short = snapshot.to_vec();
    short[CERT_FLAG_AT + 1..CERT_FLAG_AT + 5].copy_from_slice(&99u32.to_le_bytes());
    assert!(matches!(
        decode_err(&short),
        JournalError::Certificate(IdentityError::CertificateLength { found: 99 })
    ));
    let mut long = snapshot.to_vec();
    long[CERT_FLAG_AT + 1..CERT_FLAG_AT + 5].copy_from_slice(&101u32.to_le_bytes());
    assert!(matches!(
        decode_err(&long),
        JournalError::TooLong {
            field: "certificate",
            ..
        }
    ));
    // Another client's secret key under this certificate.
    let mut other = snapshot.to_vec();
    other[64..96].copy_from_slice(&[5; 32]);
    let e = Jc::restore(&other, policy, CpuEngine::new())
        .err()
        .expect("refused");
    assert!(
        matches!(e, JournalError::Refused(ClientError::Identity(_))),
        "{e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Bytes flipped, cut or overwritten anywhere in a journal: decoding and rebuilding
    /// return, Ok or a typed error, and never panic.
    #[test]
    fn mutated_journals_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut bytes = mid_round_snapshot().to_vec();
        for (at, value, how) in edits {
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] ^= value | 1,
                1 => bytes[i] = value,
                _ => {
                    let end = (i + 4).min(bytes.len());
                    bytes[i..end].fill(value);
                }
            }
        }
        if do_cut {
            let len = cut.index(bytes.len());
            bytes.truncate(len);
        }
        if let Ok(journal) = Journal::decode(&bytes) {
            let _ = journal.check_step(Some(journal.step()));
            if let Ok(mut c) = Jc::resume(journal, policy(), CpuEngine::new()) {
                prop_assert!(c.poll_transmit().is_none());
            }
        }
    }
}

#[test]
fn a_journal_written_by_the_python_binding_at_wire_v4_is_refused_by_its_version() {
    // Bytes written before the journal moved to the host, at wire version 4 (a round whose
    // key list and survivor list named every member). Wire version 5 commits to those lists
    // instead, so no round in flight crosses the upgrade: the snapshot is refused, with a
    // typed error naming the version, before any client is built, and so is the unmask
    // request it was sent. The frames a v5 journal holds round-trip in the tests above.
    let text = include_str!("data/journal-v2.txt");
    let lines: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect();
    let [snapshot, request, _shares] = lines.as_slice() else {
        panic!("three lines")
    };
    assert_eq!(codec::VERSION, 5);
    assert!(
        matches!(
            Journal::decode(snapshot),
            Err(JournalError::Welcome(CodecError::Version(4)))
        ),
        "{:?}",
        Journal::decode(snapshot).err()
    );
    let limits = codec::Limits::for_config(&RoundConfig::builder(5, 12).build().unwrap());
    assert!(matches!(
        codec::decode_server(request, &limits),
        Err(CodecError::Version(4))
    ));
}

#[test]
fn a_dp_round_client_snapshots_and_restores() {
    // A DP round's welcome carries the DP setting (longer than a plain round's): the
    // journal holds it, and a client restored from its snapshot is in the same round.
    let mut rng = Rng20::seed_from_u64(test_seed("a_dp_round_client_snapshots_and_restores"));
    let dp = secagg_host::dp::DpConfig {
        clip: 1.0,
        scale: 64.0,
        noise: 100.0,
        honest: 2,
        beta: 0.0,
    };
    let config = RoundConfig::builder(4, 16)
        .neighbors(3)
        .threshold(3)
        .bits(20)
        .dp(Some(dp))
        .build()
        .unwrap();
    let welcome = codec::encode_welcome(&config);
    assert!(welcome.len() > codec::WELCOME_LEN);
    let me = ClientIdentity::self_asserted(ClientId(0), IdentityKey::generate(&mut rng));
    let client = Jc::new(me, &welcome, policy(), CpuEngine::new(), &mut rng).unwrap();
    let restored = Jc::restore(&client.snapshot(), policy(), CpuEngine::new()).unwrap();
    assert_eq!(restored.client().config().dp(), Some(dp));
    assert_eq!(restored.client().config(), client.client().config());
}
