//! The client's own policy: the parameters and sizes the server chooses are checked (floors,
//! cohort size, the absolute colluder budget), and clients of different round contexts cannot
//! finish together.

use secagg_engine::{CpuEngine, Prg};
use secagg_host::messages::ClientMessage;
use secagg_host::plan::Adversary;
use secagg_host::policy::PolicyError;
use secagg_host::sim::lab::{Forgery, Honest, Lab, Rebuild, on_client};
use secagg_host::sim::{SimConfig, parameter_free_policy, sim_ca, sim_client};
use secagg_host::{
    ClientError, ClientId, ClientPolicy, DropReason, PeerMisbehaved, ProtocolError, RoundConfig,
    Stage, Trust,
};

use crate::survivors::split_attack_at;
use crate::{TARGET, aborted, completed, dropped, lab_config};

fn enrolled_policy(seed: u64) -> ClientPolicy {
    ClientPolicy::enrolled(sim_ca(seed).public())
}

fn refused(round: RoundConfig, policy: ClientPolicy) -> PolicyError {
    let mut cfg = SimConfig::new(round);
    cfg.seed = 5;
    cfg.policy = policy;
    let ca = sim_ca(cfg.seed);
    match sim_client(&cfg, &ca, ClientId(0), CpuEngine::new()) {
        Err(ClientError::Policy(e)) => e,
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("the client accepted the round"),
    }
}

#[test]
fn a_policy_refuses_parameters_below_its_floors() {
    let p = enrolled_policy(5);
    // A lowered threshold on a sparse graph, and on the complete graph.
    let low_t = RoundConfig::builder(1000, 10)
        .neighbors(52)
        .threshold(2)
        .build()
        .unwrap();
    assert!(matches!(
        refused(low_t, p.clone()),
        PolicyError::Insecure(_)
    ));
    let complete = RoundConfig::builder(40, 10).threshold(21).build().unwrap();
    let e = refused(complete, p.clone());
    assert!(
        matches!(&e, PolicyError::Insecure(why) if why.contains("semi-malicious") || why.contains("split")),
        "{e}"
    );
    // The planner's own semi-malicious pair is accepted.
    let ok = RoundConfig::builder(1000, 10)
        .neighbors(78)
        .threshold(52)
        .build()
        .unwrap();
    let mut cfg = SimConfig::new(ok);
    cfg.seed = 5;
    cfg.policy = p.clone();
    assert!(sim_client(&cfg, &sim_ca(5), ClientId(0), CpuEngine::new()).is_ok());
    // A round smaller than T, a PRG or modulus it does not allow, another context.
    let small = RoundConfig::builder(6, 10).build().unwrap();
    assert!(matches!(
        refused(small, p.clone()),
        PolicyError::Cohort { n: 6, min: 10, .. }
    ));
    let chacha8 = RoundConfig::builder(1000, 10)
        .neighbors(78)
        .threshold(52)
        .prg(Prg::ChaCha8)
        .build()
        .unwrap();
    assert!(matches!(
        refused(chacha8, p.clone()),
        PolicyError::Prg { .. }
    ));
    let narrow = ClientPolicy {
        bits: 28..=32,
        ..p.clone()
    };
    let b24 = RoundConfig::builder(1000, 10)
        .neighbors(78)
        .threshold(52)
        .bits(24)
        .build()
        .unwrap();
    assert!(matches!(
        refused(b24, narrow),
        PolicyError::Bits { b: 24, .. }
    ));
    let expects = ClientPolicy {
        context: Some([7; 32]),
        ..p
    };
    let other_ctx = RoundConfig::builder(1000, 10)
        .neighbors(78)
        .threshold(52)
        .build()
        .unwrap();
    assert_eq!(refused(other_ctx, expects), PolicyError::Context);
    // A malicious-server policy without enrolled identities is incoherent.
    let p = ClientPolicy {
        adversary: Adversary::SemiMalicious,
        trust: Trust::Unauthenticated,
        ..ClientPolicy::curious_unauthenticated()
    };
    assert_eq!(p.validate(), Err(PolicyError::NeedsEnrollment));
}

#[test]
fn a_cohort_below_the_policy_is_refused_before_the_nonce() {
    let mut cfg = lab_config("cohort_below_policy", 11, 10, 6);
    cfg.policy = ClientPolicy {
        min_cohort: 10,
        ..parameter_free_policy()
    };
    let mut l = Lab::new(cfg).unwrap();
    // The server lets only nine clients into the cohort.
    let mut t = on_client(|from, m| match m {
        ClientMessage::Join(_) if from.0 >= 9 => None,
        m => Some(m),
    });
    l.run(&mut t).unwrap();
    for i in 0..9 {
        assert!(matches!(
            aborted(&l, ClientId(i)),
            ProtocolError::Policy(PolicyError::Cohort { n: 9, min: 10, .. })
        ));
        assert!(!l.has_sent(ClientId(i), "reveal"));
    }
}

#[test]
fn a_small_round_is_judged_with_the_absolute_colluder_budget() {
    // The attack is real: announce n = 12, k = 11, t = 7 and seat two colluders; the split
    // view needs 2t − k − 1 = 2 of them, and they rebuild the target's input (the lab's
    // clients hold no floor on the parameters).
    let l = split_attack_at("small_round_attack", (12, 11, 7), &[10, 11]);
    assert_eq!(l.attempt_rebuild(TARGET), Rebuild::Rebuilt { exact: true });
    // A client whose deployment may hold two colluding identities judges the round with two
    // colluders in it, however small the server makes it, and refuses before it joins.
    let round = RoundConfig::builder(12, 10)
        .neighbors(11)
        .threshold(7)
        .build()
        .unwrap();
    let two = ClientPolicy {
        colluders: 2,
        min_cohort: 3,
        ..enrolled_policy(5)
    };
    let e = refused(round.clone(), two.clone());
    assert!(
        matches!(&e, PolicyError::Insecure(why) if why.contains("2t - k - 1 = 2")),
        "{e}"
    );
    // With one colluder the same round is secure, and accepted.
    let mut cfg = SimConfig::new(round);
    cfg.seed = 5;
    cfg.policy = ClientPolicy {
        colluders: 1,
        ..two
    };
    assert!(sim_client(&cfg, &sim_ca(5), TARGET, CpuEngine::new()).is_ok());
}

#[test]
fn clients_with_different_round_contexts_cannot_finish_together() {
    let cfg = lab_config("divergent_contexts", 8, 7, 5);
    let mut l = Lab::new(cfg.clone()).unwrap();
    l.reconfigure(TARGET, cfg.round.with_context([9; 32]))
        .unwrap();
    // The honest server cannot verify the target's signature (another round digest).
    l.run(&mut Honest).unwrap();
    completed(&l);
    // Its nonce commitment and its signature were made for another round digest; it sent
    // them with its join.
    assert!(matches!(
        dropped(&l, TARGET),
        Some((Stage::Join, DropReason::Misbehaved(_)))
    ));
    assert_eq!(l.attempt_rebuild(TARGET), Rebuild::NoMaskedInput);

    // A server that seats the target anyway, in the cohort it shows everyone: every member
    // refuses the target's entry, and the target refuses everyone else's.
    let mut l = Lab::new(cfg.clone()).unwrap();
    l.reconfigure(TARGET, cfg.round.with_context([9; 32]))
        .unwrap();
    l.up_to("cohort").unwrap();
    let forged = Forgery::new(&l.config().round, l.advertisements());
    for i in 0..8 {
        l.deliver(ClientId(i), forged.welcome(ClientId(i)).unwrap())
            .unwrap();
    }
    // The attacker keeps the nonces (the honest server, which never seated the target, has no
    // use for them) and answers with key lists of its own.
    l.flush().unwrap();
    let reveals = l.reveals();
    let roster = forged.roster(&reveals);
    for i in 0..8 {
        let list = forged.key_list(&roster, &reveals, ClientId(i)).unwrap();
        l.deliver(ClientId(i), list).unwrap();
    }
    l.flush().unwrap();
    for i in 0..8 {
        let e = aborted(&l, ClientId(i));
        // The target's nonce commitment and signature were made under another round digest
        // (and the target sees everyone else's that way).
        assert!(
            matches!(
                &e,
                ProtocolError::PeerMisbehaved(
                    PeerMisbehaved::ForwardedBadSignatures { .. }
                        | PeerMisbehaved::NonceMismatch { .. }
                )
            ),
            "client {i}: {e:?}"
        );
        assert!(!l.has_sent(ClientId(i), "share-keys"));
    }
}
