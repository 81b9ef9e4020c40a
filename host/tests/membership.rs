//! Who is in the round: the server cannot choose it. A client judges every size it is shown
//! with its absolute colluder budget (a private session around it is refused before it reveals
//! anything), and in a self-selected round every member proves with a VRF of its identity key
//! that the epoch's seed made it eligible (a server that seats anyone else is caught by every
//! honest client that opens that member's entry: its neighbours, everyone when it is on the
//! committee, and any client whose audit draws it). Each test runs real clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg_engine::{CpuEngine, testing};
use secagg_host::messages::{ClientMessage, Envelope, SignedKeys};
use secagg_host::plan::{PlanRequest, colluders_in_cohort, plan};
use secagg_host::policy::DEFAULT_EPOCH_SECS;
use secagg_host::selection::{Selection, SelectionError, epoch_at};
use secagg_host::server::ServerEvent;
use secagg_host::sim::lab::{DealerFault, Forgery, Honest, Lab};
use secagg_host::sim::{self, SimConfig, parameter_free_policy, sim_ca, sim_client};
use secagg_host::{
    Client, ClientError, ClientId, ClientIdentity, ClientPolicy, ClientStatus, DropReason,
    PeerMisbehaved, PolicyError, ProtocolError, RoundConfig, ServerStatus, Stage,
};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The private-session attack: the server announces a round of 1,000 at planner-approved
/// parameters, then shows the target a cohort of itself and the 50 colluders a deployment of
/// 1,000 enrolled clients at 5% may hold. The target's budget is absolute (c = 50), so a
/// cohort of 51 leaves one honest member, below T: it refuses at the cohort, before it reveals
/// its nonce or deals anything (its join carried only public keys).
#[test]
fn a_private_session_around_the_target_is_refused_at_the_cohort() {
    let seed = testing::test_seed("private_session");
    let ca = sim_ca(seed);
    let policy = ClientPolicy {
        colluders: 50,
        ..ClientPolicy::enrolled(ca.public())
    };
    let p = plan(&PlanRequest {
        clients: 1000,
        colluders: Some(50),
        adversary: policy.adversary,
        ..PlanRequest::default()
    })
    .unwrap();
    let round = RoundConfig::builder(1000, 10)
        .neighbors(p.neighbors)
        .threshold(p.threshold)
        .round_id(seed)
        .build()
        .unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let key = secagg_host::identity::IdentityKey::generate(&mut rng);
    let me = ClientId(500);
    let cert = ca.issue(me, &key.public());
    let identity = ClientIdentity::enrolled(key, cert).unwrap();
    let mut client = Client::new(
        identity,
        round.clone(),
        policy.clone(),
        CpuEngine::new(),
        rng,
    )
    .expect("the announced round of 1,000 meets the policy");
    let Some(Envelope {
        message: ClientMessage::Join(mine),
        ..
    }) = client.poll_transmit()
    else {
        panic!("the first message is not a join");
    };
    // The cohort: the target and 50 colluders (their advertisements are the server's to make).
    let mut entries: Vec<(ClientId, SignedKeys)> = (0..50)
        .map(|i| {
            let mut forged = mine.clone();
            rng_fill(seed ^ i, &mut forged.commitment);
            (ClientId(i as u32), forged)
        })
        .collect();
    entries.push((me, mine));
    let cohort = secagg_host::commit::Cohort::new(entries).unwrap();
    let welcome = cohort.welcome(cohort.index_of(me).unwrap()).unwrap();
    client
        .handle_message(Envelope {
            round: round.round_id(),
            message: welcome,
        })
        .unwrap();
    match client.status() {
        ClientStatus::Aborted(ProtocolError::Policy(PolicyError::Cohort {
            n: 51,
            colluders: 50,
            min: 10,
            ..
        })) => {}
        other => panic!("the private session was not refused: {other:?}"),
    }
    assert!(
        client.poll_transmit().is_none(),
        "the target sent something after the cohort"
    );
    // Announcing the private session honestly does not help: refused before joining.
    let small = RoundConfig::builder(51, 10).round_id(seed).build().unwrap();
    let mut cfg = SimConfig::new(small);
    cfg.seed = seed;
    cfg.policy = policy;
    assert!(matches!(
        sim_client(&cfg, &ca, me, CpuEngine::new()),
        Err(ClientError::Policy(PolicyError::Cohort { n: 51, .. }))
    ));
}

fn rng_fill(seed: u64, out: &mut [u8]) {
    ChaCha20Rng::seed_from_u64(seed).fill_bytes(out);
}

/// A simulated round of `members` (the eligible part of an enrolled population) under
/// `policy`.
fn self_selected(
    round: RoundConfig,
    seed: u64,
    members: Vec<ClientId>,
    policy: ClientPolicy,
) -> SimConfig {
    let mut cfg = SimConfig::new(round);
    cfg.seed = seed;
    cfg.members = Some(members);
    cfg.policy = policy;
    cfg
}

/// A self-selected lab: an enrolled population of `population` at rate 1/2 in the current
/// epoch, the eligible members and one ineligible identity that deals honestly.
fn ineligible_lab(test: &str, population: u32) -> (Lab, ClientId) {
    let seed = testing::test_seed(test);
    let now = now();
    let selection = Selection::new(epoch_at(now, DEFAULT_EPOCH_SECS), 0.5).unwrap();
    let eligible = sim::eligible(seed, &selection, population);
    let outsider = (0..population)
        .map(ClientId)
        .find(|id| !eligible.contains(id))
        .expect("someone of the population is not eligible");
    let mut members = eligible.clone();
    members.push(outsider);
    members.sort_unstable();
    let n = members.len();
    let round = RoundConfig::builder(n, 20)
        .bits(24)
        .round_id(seed)
        .selection(Some(selection))
        .build()
        .unwrap();
    let policy = ClientPolicy {
        now: Some(now),
        ..parameter_free_policy()
    };
    let cfg = self_selected(round, seed, members, policy);
    let lab =
        Lab::with_dealers(cfg, BTreeMap::from([(outsider, DealerFault::Ineligible)])).unwrap();
    (lab, outsider)
}

#[test]
fn an_honest_server_leaves_out_an_ineligible_member_and_the_round_completes() {
    let (mut l, outsider) = ineligible_lab("ineligible_dropped", 24);
    l.run(&mut Honest).unwrap();
    assert_eq!(
        l.server_status(),
        ServerStatus::Completed,
        "{:?}",
        l.events()
    );
    assert!(l.output_is_exact());
    let reason = l.events().iter().find_map(|e| match e {
        ServerEvent::ClientDropped(d) if d.client == outsider => Some((d.stage, d.reason.clone())),
        _ => None,
    });
    // It advertises its keys and ticket when it joins, and is dropped there.
    assert!(
        matches!(
            &reason,
            Some((
                Stage::Join,
                DropReason::Misbehaved(ProtocolError::PeerMisbehaved(PeerMisbehaved::Ticket(
                    SelectionError::NotEligible { .. }
                )))
            ))
        ),
        "{reason:?}"
    );
}

#[test]
fn a_server_that_seats_an_ineligible_member_is_caught_by_every_honest_client() {
    let (mut l, outsider) = ineligible_lab("ineligible_seated", 24);
    let members = l.config().member_ids();
    // The server drops the outsider's advertisement as it must, then puts it back into the
    // cohort it commits to: it claims the outsider was eligible. Every member (the outsider
    // too) is shown that cohort, and then the key lists that open it.
    l.up_to("cohort").unwrap();
    let adverts = l.advertisements();
    assert!(
        adverts.contains_key(&outsider),
        "the outsider never advertised"
    );
    let forged = Forgery::new(&l.config().round, adverts);
    for id in &members {
        l.deliver(*id, forged.welcome(*id).unwrap()).unwrap();
    }
    // The attacker keeps the members' nonces (its honest twin answers to its own cohort) and
    // answers with the key lists that open the forged one.
    l.flush().unwrap();
    let reveals = l.reveals();
    let roster = forged.roster(&reveals);
    for id in &members {
        if let Some(list) = forged.key_list(&roster, &reveals, *id) {
            l.deliver(*id, list).unwrap();
        }
    }
    l.run(&mut Honest).unwrap();
    for id in members.iter().filter(|id| **id != outsider) {
        let status = l.status(*id);
        assert!(
            matches!(
                &status,
                Some(ClientStatus::Aborted(ProtocolError::PeerMisbehaved(
                    PeerMisbehaved::IneligibleMember {
                        id,
                        why: SelectionError::NotEligible { .. },
                    }
                ))) if *id == outsider
            ),
            "client {id}: {status:?}"
        );
        assert!(
            !l.has_sent(*id, "share-keys"),
            "client {id} dealt shares in a round with an ineligible member"
        );
    }
    assert!(!l.output_is_exact() || l.server_status() != ServerStatus::Completed);
}

#[test]
fn a_round_of_a_thousand_self_selected_members_completes() {
    let seed = testing::test_seed("thousand_self_selected");
    let now = now();
    let rate = 0.5;
    let selection = Selection::new(epoch_at(now, DEFAULT_EPOCH_SECS), rate).unwrap();
    // An enrolled population of 2,000: about 1,000 are eligible this epoch.
    let members = sim::eligible(seed, &selection, 2000);
    let n = members.len();
    assert!(
        (900..1100).contains(&n),
        "{n} of 2,000 eligible at 1/2 (seed {seed})"
    );
    // c = 100 of the 2,000 enrolled may collude; self-selection bounds those in the round.
    let colluders = 100;
    let in_round = colluders_in_cohort(colluders as u64, rate, 41) as usize;
    assert!(in_round < colluders, "{in_round}");
    let policy = ClientPolicy {
        colluders,
        dropout_rate: 0.05,
        now: Some(now),
        ..ClientPolicy::enrolled(sim_ca(seed).public())
    };
    let p = plan(&PlanRequest {
        clients: n,
        dropout_rate: policy.dropout_rate,
        colluders: Some(in_round),
        adversary: policy.adversary,
        ..PlanRequest::default()
    })
    .unwrap();
    let round = RoundConfig::builder(n, 100)
        .neighbors(p.neighbors)
        .threshold(p.threshold)
        .round_id(seed)
        .selection(Some(selection))
        .build()
        .unwrap();
    let cfg = self_selected(round, seed, members, policy);
    let report = sim::run(&cfg, CpuEngine::new(), &|_| {}).unwrap();
    let out = report.outcome.expect("the round completes");
    assert_eq!(out.included.len(), n);
    assert!(report.check.is_some_and(|c| c.passed()), "seed {seed}");
}
