//! Distributed DP end to end: repeated simulated rounds whose measured error variance is the
//! noise the DP plan reports (at the plan's b, and at b = 40 and 64 in 64-bit elements; one
//! at b = 48 summed on the GPU engine); a round with colluders that add no noise and clients that drop,
//! where the honest survivors' noise alone still meets the plan; a round that falls below T
//! and reveals nothing; and the clients' refusals of a configuration whose noise rests on
//! more honest survivors than their policy guarantees.
//! Every test draws its inputs from a printed seed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg_engine::{CpuEngine, testing};
use secagg_host::crypto::RoundDigest;
use secagg_host::dp::{DpConfig, DpRound, rotation_seed};
use secagg_host::identity::IdentityKey;
use secagg_host::messages::ServerMessage;
use secagg_host::plan::{DpPlan, DpRequest, DpTarget, plan_dp};
use secagg_host::sim::{self, DropSchedule, SimConfig};
use secagg_host::{
    Client, ClientError, ClientId, ClientIdentity, ClientPolicy, PolicyError, PrivacyFloor,
    RoundConfig, Server, ServerStatus, Stage,
};

fn dp_round(n: usize, d: usize, plan: &DpPlan, round_id: u64) -> RoundConfig {
    RoundConfig::builder(n, d)
        .bits(plan.bits)
        .dp(Some(plan.dp))
        .round_id(round_id)
        .build()
        .unwrap()
}

fn policy(colluders: usize) -> ClientPolicy {
    ClientPolicy {
        colluders,
        min_cohort: 3,
        ..sim::parameter_free_policy()
    }
}

/// Eight rounds of 12 clients (T = 7, c = 2: noise sized for 5 honest survivors), one drop
/// each: the error variance measured over all coordinates of all rounds is the variance of
/// the survivors' noise the plan implies (within five standard errors, plus at most the
/// rounding).
#[test]
fn repeated_rounds_measure_the_noise_the_plan_reports() {
    let plan = rounds_measure_the_plan("dp::repeated_rounds", None);
    assert!(plan.bits <= 32, "b = {}", plan.bits);
}

/// [`repeated_rounds_measure_the_noise_the_plan_reports`] mod 2^40: 64-bit elements, a scale
/// the wider modulus lets grow.
#[test]
fn repeated_rounds_at_40_bits_measure_the_noise_the_plan_reports() {
    let narrow = plan_dp(&repeated_request(None)).unwrap();
    let plan = rounds_measure_the_plan("dp::repeated_rounds_40", Some(40));
    assert_eq!(plan.bits, 40);
    assert!(plan.dp.scale >= narrow.dp.scale, "{plan:?}");
}

/// The same mod 2^64, where the sum's noise wraps around 2^64 and is centred back.
#[test]
fn repeated_rounds_at_64_bits_measure_the_noise_the_plan_reports() {
    let plan = rounds_measure_the_plan("dp::repeated_rounds_64", Some(64));
    assert_eq!(plan.bits, 64);
}

/// One DP round at b = 48 with the GPU engine summing (the clients' CPU engine masks): the
/// 64-bit sum equals the plaintext sum of the re-encoded inputs exactly, and its error is
/// the noise's.
#[test]
fn a_wide_dp_round_sums_on_the_gpu() {
    let seed = testing::test_seed("dp::wide_gpu");
    let Some(gpu) = testing::shared_gpu("dp::wide_gpu") else {
        return;
    };
    let (n, d) = (8, 2048);
    let req = DpRequest {
        bits: Some(48),
        honest: 3,
        ..DpRequest::new(DpTarget::Epsilon(1.0), d, n)
    };
    let plan = plan_dp(&req).unwrap();
    let mut cfg = SimConfig::new(dp_round(n, d, &plan, seed));
    cfg.seed = seed;
    cfg.policy = policy(1);
    let report = sim::run(&cfg, gpu, &|_| {}).unwrap();
    let check = report.check.as_ref().expect("the round completes");
    assert!(check.exact && check.included_ok, "seed {seed}");
    assert!(check.passed(), "{check:?} (seed {seed})");
    let out = report.outcome.as_ref().unwrap();
    assert_eq!((out.sum.len(), out.sum_wide.len()), (0, d));
    let m = report.dp.expect("a DP round is measured");
    assert_eq!(m.inputs, n);
}

/// The request of the repeated-rounds tests, at b (or b chosen).
fn repeated_request(bits: Option<u32>) -> DpRequest {
    let (n, d, t, c) = (12, 4096, 7, 2);
    DpRequest {
        honest: t - c,
        survivors: n - 1,
        bits,
        ..DpRequest::new(DpTarget::Epsilon(2.0), d, n)
    }
}

/// The body of the repeated-rounds tests; returns the plan.
fn rounds_measure_the_plan(name: &str, bits: Option<u32>) -> DpPlan {
    let seed = testing::test_seed(name);
    let (n, d, t, c) = (12, 4096, 7, 2);
    let req = repeated_request(bits);
    let plan = plan_dp(&req).unwrap();
    assert!(plan.epsilon <= 2.0);
    let rounds = 8;
    let (mut measured, mut noise, mut most) = (0.0, 0.0, 0.0);
    for r in 0..rounds {
        let round = dp_round(n, d, &plan, seed.wrapping_add(r));
        assert_eq!(round.threshold(), t);
        let mut cfg = SimConfig::new(round);
        cfg.seed = seed.wrapping_add(r);
        cfg.drops = DropSchedule::random(n, 0.1, Stage::MaskedInput, cfg.seed);
        cfg.policy = policy(c);
        let report = sim::run(&cfg, CpuEngine::new(), &|_| {}).unwrap();
        let out = report.outcome.as_ref().unwrap();
        // The sum comes in the lanes of its modulus: 64-bit above 32 bits.
        let wide = plan.bits > 32;
        assert_eq!(
            (out.sum.is_empty(), out.sum_wide.is_empty()),
            (wide, !wide),
            "b = {}",
            plan.bits
        );
        let check = report.check.as_ref().expect("the round completes");
        assert!(check.exact && check.included_ok, "round {r} (seed {seed})");
        let m = report.dp.expect("a DP round is measured");
        assert_eq!(m.inputs, n - 1);
        // The plan's central noise is h clients'; this sum holds every survivor's.
        let from_plan = plan.noise_std.powi(2) * m.inputs as f64 / req.honest as f64;
        assert!(
            (m.noise_std.powi(2) / from_plan - 1.0).abs() < 1e-6,
            "{} vs {from_plan}",
            m.noise_std.powi(2)
        );
        measured += m.measured_std.powi(2) / rounds as f64;
        noise += m.noise_std.powi(2) / rounds as f64;
        most += m.expected_std_max.powi(2) / rounds as f64;
    }
    let se = (2.0 / (rounds as f64 * d as f64)).sqrt();
    eprintln!("measured variance {measured:.6}, noise {noise:.6} .. {most:.6} (seed {seed})");
    assert!(
        measured > noise * (1.0 - 5.0 * se) && measured < most * (1.0 + 5.0 * se),
        "measured {measured} outside [{noise}, {most}] ± 5 × {se} relative (seed {seed})"
    );
    // The mean's error the plan predicts, at the survivors it was told.
    let mean_error = measured.sqrt() / (n - 1) as f64;
    assert!(
        mean_error < plan.mean_error * (1.0 + 5.0 * se),
        "{mean_error} vs {}",
        plan.mean_error
    );
    plan
}

/// What a client does in [`manual_round`].
enum Part {
    /// An honest client with this update.
    Honest(Vec<f32>),
    /// A colluder: its input carries no noise.
    Colluder(Vec<f32>),
    /// Vanishes before its masked input.
    Drops,
}

/// One round driven by hand (no simulator), so that colluders can send inputs without
/// noise. Returns the server's status and, if it completed, the decoded sum.
fn manual_round(
    config: &RoundConfig,
    policy: &ClientPolicy,
    parts: Vec<Part>,
    seed: u64,
) -> (ServerStatus, Option<Vec<f32>>) {
    let now = Duration::ZERO;
    let mut server = Server::new(config.clone(), CpuEngine::new(), now);
    let mut clients = Vec::new();
    let quiet = DpRound::new(
        DpConfig {
            noise: 2f64.powi(-30),
            ..config.dp().unwrap()
        },
        config.params(),
        config.modulus().bits(),
        1,
        rotation_seed(&RoundDigest::of(config)),
    );
    for (i, part) in parts.iter().enumerate() {
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ (i as u64 + 1));
        let me = ClientIdentity::self_asserted(ClientId(i as u32), IdentityKey::generate(&mut rng));
        let mut client =
            Client::new(me, config.clone(), policy.clone(), CpuEngine::new(), rng).unwrap();
        match part {
            Part::Honest(x) => client.set_input(x, 1).unwrap(),
            Part::Colluder(x) => {
                let mut v = Vec::new();
                quiet
                    .encode_into(x, 1, &mut ChaCha20Rng::seed_from_u64(seed ^ 0xc0), &mut v)
                    .unwrap();
                client.set_quantized_input(v).unwrap();
            }
            Part::Drops => {}
        }
        server.handle_join(ClientId(i as u32), now);
        clients.push(Some(client));
    }
    while let ServerStatus::Running(_) = server.status() {
        let mut moved = false;
        for c in clients.iter_mut().flatten() {
            while let Some(msg) = c.poll_transmit() {
                server.handle_message(c.id(), msg, now);
                moved = true;
            }
        }
        while let Some((to, msg)) = server.poll_transmit() {
            moved = true;
            let i = to.0 as usize;
            if matches!(msg.message, ServerMessage::MaskRequest(_))
                && matches!(parts[i], Part::Drops)
            {
                clients[i] = None;
                server.handle_disconnect(to, now);
                continue;
            }
            if let Some(c) = clients[i].as_mut() {
                c.handle_message(msg).unwrap();
            }
        }
        assert!(moved, "the round stalled");
    }
    let sum = server.output().map(|o| o.dequantized_sum(config));
    (server.status(), sum)
}

/// Ten clients, T = 6, a policy of 2 colluders: the noise is sized for 4 honest survivors.
/// Two colluders send inputs without noise and two clients drop: the six honest survivors'
/// noise is all the sum holds, and it is at least the central variance the accountant used.
/// Five drops leave fewer than T survivors: the round aborts and nothing is decoded.
#[test]
fn colluders_and_dropouts_leave_the_honest_noise_sufficient() {
    let seed = testing::test_seed("dp::colluders_dropouts");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (n, d, c) = (10, 8192, 2);
    let t = n / 2 + 1;
    let req = DpRequest {
        honest: t - c,
        survivors: n - 2,
        ..DpRequest::new(DpTarget::Epsilon(1.0), d, n)
    };
    let plan = plan_dp(&req).unwrap();
    let config = dp_round(n, d, &plan, seed);
    assert_eq!(config.min_survivors(), t);
    let updates: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            (0..d)
                .map(|_| (rng.next_u32() as f32 / u32::MAX as f32 - 0.5) * 0.02)
                .collect()
        })
        .collect();
    let parts = |drops: usize| -> Vec<Part> {
        (0..n)
            .map(|i| match i {
                0 | 1 => Part::Colluder(updates[i].clone()),
                i if i >= n - drops => Part::Drops,
                i => Part::Honest(updates[i].clone()),
            })
            .collect()
    };
    let (status, sum) = manual_round(&config, &policy(c), parts(2), seed);
    assert_eq!(status, ServerStatus::Completed, "seed {seed}");
    let sum = sum.unwrap();
    // Σ clip(x) over the eight survivors (their norms are below c = 1: no clipping).
    let residual: Vec<f64> = (0..d)
        .map(|j| f64::from(sum[j]) - (0..n - 2).map(|i| f64::from(updates[i][j])).sum::<f64>())
        .collect();
    let var = residual.iter().map(|r| r * r).sum::<f64>() / d as f64;
    let s2 = plan.dp.scale * plan.dp.scale;
    let honest_noise = 6.0 * plan.dp.noise / s2;
    let with_rounding = (6.0 * plan.dp.noise + 8.0 / 4.0) / s2;
    let central = plan.dp.central_variance() / s2;
    let se = (2.0 / d as f64).sqrt();
    eprintln!(
        "variance {var:.6}: honest noise {honest_noise:.6}, the accountant's {central:.6} (seed {seed})"
    );
    assert!(
        var > honest_noise * (1.0 - 5.0 * se) && var < with_rounding * (1.0 + 5.0 * se),
        "variance {var} is not six honest clients' noise {honest_noise} (seed {seed})"
    );
    assert!(
        honest_noise >= central,
        "the honest survivors' noise falls short"
    );

    let (status, sum) = manual_round(&config, &policy(c), parts(5), seed);
    assert!(matches!(status, ServerStatus::Aborted(_)), "{status:?}");
    assert!(sum.is_none());
}

#[test]
fn clients_refuse_noise_that_rests_on_more_honest_survivors_than_they_are_promised() {
    let seed = testing::test_seed("dp::refusals");
    let (n, d) = (20, 1000);
    // T = 11 (the majority); h = 11 − 2 = 9 honest survivors.
    let req = DpRequest {
        honest: 9,
        ..DpRequest::new(DpTarget::Epsilon(1.0), d, n)
    };
    let plan = plan_dp(&req).unwrap();
    let ok = dp_round(n, d, &plan, seed);
    let try_join = |config: &RoundConfig, policy: ClientPolicy| {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let me = ClientIdentity::self_asserted(ClientId(0), IdentityKey::generate(&mut rng));
        Client::new(me, config.clone(), policy, CpuEngine::new(), rng).map(|_| ())
    };
    // Two colluders: max(11 − 2, 3) = 9 honest guaranteed: accepted.
    try_join(&ok, policy(2)).unwrap();
    // Three: only 8 are: the noise falls short, refused.
    let refused = try_join(&ok, policy(3)).unwrap_err();
    assert!(
        matches!(
            refused,
            ClientError::Policy(PolicyError::NoiseSizedForMore {
                sized_for: 9,
                guaranteed: 8,
                colluders: 3
            })
        ),
        "{refused}"
    );
    // A policy whose own minimum cohort promises 9 honest members accepts again.
    let cohort = ClientPolicy {
        min_cohort: 9,
        ..policy(3)
    };
    try_join(&ok, cohort).unwrap();
    // A server that claims more honest survivors for the same noise is refused.
    let inflated = RoundConfig::builder(n, d)
        .bits(plan.bits)
        .dp(Some(DpConfig {
            honest: 12,
            ..plan.dp
        }))
        .round_id(seed)
        .build()
        .unwrap();
    assert!(try_join(&inflated, policy(2)).is_err());
    // A privacy floor: ε = 1 per round passes at 1.01 and fails at 0.5; no DP fails.
    let floor = |epsilon| ClientPolicy {
        privacy: Some(PrivacyFloor {
            epsilon,
            delta: 1e-6,
        }),
        ..policy(2)
    };
    try_join(&ok, floor(1.01)).unwrap();
    assert!(matches!(
        try_join(&ok, floor(0.5)),
        Err(ClientError::Policy(PolicyError::Privacy(_)))
    ));
    let plain = RoundConfig::builder(n, d).round_id(seed).build().unwrap();
    assert!(matches!(
        try_join(&plain, floor(1.0)),
        Err(ClientError::Policy(PolicyError::NoPrivacy))
    ));

    // Against a semi-malicious server an input can be isolated with k − t + 1 other honest
    // ones: at n = 20, k = 19, t = 15, c = 2 that is 6 in all, below T − c = 13.
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let strict = ClientPolicy {
        colluders: 2,
        min_cohort: 3,
        ..ClientPolicy::enrolled(secagg_host::identity::CaKey::generate(&mut rng).public())
    };
    let shaped = |honest| {
        RoundConfig::builder(n, d)
            .threshold(15)
            .bits(plan.bits)
            .dp(Some(DpConfig { honest, ..plan.dp }))
            .build()
            .unwrap()
    };
    assert_eq!(strict.honest_survivors(&shaped(6), 2), 6);
    strict.check_config(&shaped(6)).unwrap();
    assert!(matches!(
        strict.check_config(&shaped(7)),
        Err(PolicyError::NoiseSizedForMore {
            sized_for: 7,
            guaranteed: 6,
            ..
        })
    ));
    // The curious server cannot: T − c = 13 honest inputs.
    assert_eq!(policy(2).honest_survivors(&shaped(13), 2), 13);
}
