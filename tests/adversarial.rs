//! The attacks of a malicious server (and of malicious clients), run in the attack laboratory
//! (`secagg_host::sim::lab`) over real sans-IO clients. Each test asserts the honest clients'
//! typed outcome AND tries, as the attacker would, to rebuild the target's input from
//! everything the clients sent ([`Lab::attempt_rebuild`]). One test breaks the bound on
//! purpose and shows that the same rebuild then succeeds, so the rebuild is real.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::CompressedEdwardsY;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use secagg::engine::{CpuEngine, Prg, testing};
use secagg::host::crypto::{
    ADVERTISE_DOMAIN, ClientSecrets, PublicKeys, RoundDigest, advertisement_message, cohort_digest,
};
use secagg::host::identity::{CaKey, IdentityKey};
use secagg::host::messages::{
    ClientMessage, Credential, DealerReport, ReportKind, ServerMessage, SignedKeys,
};
use secagg::host::plan::Adversary;
use secagg::host::policy::PolicyError;
use secagg::host::server::ServerEvent;
use secagg::host::sim::lab::{
    DealerFault, Honest, Lab, NON_CANONICAL_POINT, Rebuild, on_client, on_server,
};
use secagg::host::sim::{SimConfig, parameter_free_policy, sim_ca, sim_client};
use secagg::host::view::RoundView;
use secagg::host::{
    AbortReason, ClientError, ClientId, ClientPolicy, ClientStatus, CryptoError, DropReason,
    PeerMisbehaved, PointError, ProtocolError, RoundConfig, ServerStatus, Stage, Trust,
};

const TARGET: ClientId = ClientId(0);

/// A lab of `n` clients, `k` neighbours, threshold `t`, every client enrolled, a policy that
/// checks every signature and list but sets no floor on the parameters.
fn lab_config(test: &str, n: usize, k: usize, t: usize) -> SimConfig {
    let seed = testing::test_seed(test);
    let round = RoundConfig::builder(n, 20)
        .neighbors(k)
        .threshold(t)
        .bits(24)
        .round_id(seed)
        .build()
        .unwrap();
    let mut cfg = SimConfig::new(round);
    cfg.seed = seed;
    cfg
}

fn lab(test: &str, n: usize, k: usize, t: usize) -> Lab {
    Lab::new(lab_config(test, n, k, t)).unwrap()
}

fn aborted(lab: &Lab, id: ClientId) -> ProtocolError {
    match lab.status(id) {
        Some(ClientStatus::Aborted(e)) => e,
        other => panic!("client {id} did not abort: {other:?}"),
    }
}

fn completed(lab: &Lab) {
    assert_eq!(
        lab.server_status(),
        ServerStatus::Completed,
        "{:?}",
        lab.events()
    );
    assert!(
        lab.output_is_exact(),
        "the sum is not the sum of the included inputs"
    );
}

fn dropped(lab: &Lab, id: ClientId) -> Option<(Stage, DropReason)> {
    lab.events().iter().find_map(|e| match e {
        ServerEvent::ClientDropped(d) if d.client == id => Some((d.stage, d.reason.clone())),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------
// 1. Withheld bundles: the target must not mask when its pairwise masks could be stripped.

#[test]
fn withheld_bundles_stop_the_target_before_it_masks() {
    // The server gives the target no bundles and then no partners to mask with.
    let mut l = lab("withheld_bundles_empty_request", 12, 11, 8);
    let mut t = on_server(|to, m, out: &mut Vec<_>| match m {
        ServerMessage::ShareBundles(_) if to == TARGET => {
            out.push((to, ServerMessage::ShareBundles(vec![])))
        }
        ServerMessage::MaskRequest(_) if to == TARGET => {
            out.push((to, ServerMessage::MaskRequest(vec![])))
        }
        m => out.push((to, m)),
    });
    l.run(&mut t).unwrap();
    assert_eq!(
        aborted(&l, TARGET),
        ProtocolError::TooFewPartners { have: 0, need: 8 }
    );
    assert!(!l.has_sent(TARGET, "masked-input"));
    assert_eq!(l.attempt_rebuild(TARGET), Rebuild::NoMaskedInput);
    // The others finish without it: its mask key is rebuilt from its holders.
    completed(&l);
    assert!(!l.server().output().unwrap().included.contains(&TARGET));

    // The same, but the server names partners whose bundles it withheld.
    let mut l = lab("withheld_bundles_named_partners", 12, 11, 8);
    let mut t = on_server(|to, m, out: &mut Vec<_>| match m {
        ServerMessage::ShareBundles(b) if to == TARGET => out.push((
            to,
            ServerMessage::ShareBundles(b.into_iter().take(3).collect()),
        )),
        m => out.push((to, m)),
    });
    l.run(&mut t).unwrap();
    match aborted(&l, TARGET) {
        ProtocolError::PeerMisbehaved(PeerMisbehaved::MaskRequestUndelivered { .. }) => {}
        e => panic!("{e:?}"),
    }
    assert_eq!(l.attempt_rebuild(TARGET), Rebuild::NoMaskedInput);
}

// ---------------------------------------------------------------------------------------
// 2. Key substitution and forged or replayed advertisements.

/// Runs a lab in which `forge` rewrites neighbour 1's entry of the key list sent to the
/// target, and checks that the target aborts before sending any share.
fn substituted(
    test: &str,
    forge: impl Fn(&Lab, &SignedKeys, &[u8; 32]) -> SignedKeys,
) -> ProtocolError {
    substituted_in(lab_config(test, 8, 7, 5), forge)
}

fn substituted_in(
    cfg: SimConfig,
    forge: impl Fn(&Lab, &SignedKeys, &[u8; 32]) -> SignedKeys,
) -> ProtocolError {
    let mut l = Lab::new(cfg).unwrap();
    let (list, _, digest) = up_to_key_list(&mut l);
    let mut forged: Vec<(ClientId, SignedKeys)> = list.to_vec();
    forged[1].1 = forge(&l, &forged[1].1, &digest);
    for (id, _) in list.iter() {
        let keys: Arc<[_]> = if *id == TARGET {
            forged.clone().into()
        } else {
            list.clone()
        };
        l.deliver(*id, ServerMessage::KeyList(keys)).unwrap();
    }
    l.flush().unwrap();
    assert!(!l.has_sent(TARGET, "share-keys"), "shares left the target");
    assert_eq!(l.attempt_rebuild(TARGET), Rebuild::NoMaskedInput);
    aborted(&l, TARGET)
}

/// Runs a lab until the server hands out the key list, and withholds it. Returns the list,
/// the round digest and the cohort digest (what the attacker needs to forge advertisements).
type KeyList = Arc<[(ClientId, SignedKeys)]>;

fn up_to_key_list(l: &mut Lab) -> (KeyList, RoundDigest, [u8; 32]) {
    let list = RefCell::new(None);
    let cohort = RefCell::new(None);
    let mut t = on_server(|to, m, out: &mut Vec<_>| match m {
        ServerMessage::KeyList(k) => *list.borrow_mut() = Some(k),
        ServerMessage::Cohort(c) => {
            cohort.borrow_mut().get_or_insert(c.clone());
            out.push((to, ServerMessage::Cohort(c)))
        }
        m => out.push((to, m)),
    });
    while list.borrow().is_none() {
        assert!(l.step(&mut t).unwrap(), "the round stalled");
    }
    let round = RoundDigest::of(&l.config().round);
    let digest = cohort_digest(&round, &cohort.into_inner().unwrap());
    (list.into_inner().unwrap(), round, digest)
}

fn attacker_keys() -> (ClientSecrets, IdentityKey) {
    let mut rng = ChaCha20Rng::seed_from_u64(0xa77ac);
    (
        ClientSecrets::generate(&mut rng),
        IdentityKey::generate(&mut rng),
    )
}

#[test]
fn substituted_keys_are_caught_before_any_share_leaves() {
    // The attacker's round keys under client 1's credential and signature.
    let e = substituted("substituted_keys", |_, honest, _| {
        let (secrets, _) = attacker_keys();
        SignedKeys {
            keys: secrets.public_keys(),
            ..honest.clone()
        }
    });
    assert!(
        matches!(&e, ProtocolError::PeerMisbehaved(PeerMisbehaved::ForwardedBadSignatures { ids }) if ids == &[ClientId(1)]),
        "{e:?}"
    );
}

#[test]
fn a_mask_key_with_a_torsion_part_stops_the_client_before_any_share_leaves() {
    // Client 1 colludes: it signs a mask key with a point of order 8 added, and the server
    // forwards it (an honest server refuses it at advertise-keys). The target applies the same
    // rule to its neighbours' keys and aborts before it deals.
    let id = ClientId(1);
    let e = substituted("torsion_mask_key_in_key_list", |l, honest, cohort| {
        let p = CompressedEdwardsY(honest.keys.masking)
            .decompress()
            .unwrap();
        let keys = PublicKeys {
            masking: (p + EIGHT_TORSION[1]).compress().to_bytes(),
            ..honest.keys
        };
        let round = RoundDigest::of(&l.config().round);
        let m = advertisement_message(&round, cohort, id, &keys, &honest.nonce);
        SignedKeys {
            keys,
            signature: l.identity_key(id).sign(ADVERTISE_DOMAIN, &m),
            ..honest.clone()
        }
    });
    assert!(
        matches!(
            &e,
            ProtocolError::PeerMisbehaved(PeerMisbehaved::ForwardedBadMaskKey {
                why: CryptoError::BadPoint {
                    why: PointError::Torsion,
                    ..
                },
                ..
            })
        ),
        "{e:?}"
    );
}

#[test]
fn forged_identities_are_caught_before_any_share_leaves() {
    let id = ClientId(1);
    // Self-asserted: a valid signature under a key the attacker holds, but no certificate.
    let e = substituted("forged_identity_self_asserted", |l, honest, cohort| {
        let (secrets, key) = attacker_keys();
        let keys = secrets.public_keys();
        let round = RoundDigest::of(&l.config().round);
        let m = advertisement_message(&round, cohort, id, &keys, &honest.nonce);
        SignedKeys {
            keys,
            nonce: honest.nonce,
            credential: Credential::self_asserted(&key.public()),
            signature: key.sign(ADVERTISE_DOMAIN, &m),
            ticket: None,
        }
    });
    assert!(
        matches!(&e, ProtocolError::PeerMisbehaved(PeerMisbehaved::NoCertificate { id }) if *id == ClientId(1)),
        "{e:?}"
    );
    // A certificate for client 1 from a CA the attacker made.
    let e = substituted("forged_identity_other_ca", |l, honest, cohort| {
        let (secrets, key) = attacker_keys();
        let rogue = CaKey::generate(&mut ChaCha20Rng::seed_from_u64(7));
        let keys = secrets.public_keys();
        let round = RoundDigest::of(&l.config().round);
        let m = advertisement_message(&round, cohort, id, &keys, &honest.nonce);
        SignedKeys {
            keys,
            nonce: honest.nonce,
            credential: Credential::certificate(&rogue.issue(id, &key.public())),
            signature: key.sign(ADVERTISE_DOMAIN, &m),
            ticket: None,
        }
    });
    assert!(
        matches!(&e, ProtocolError::PeerMisbehaved(PeerMisbehaved::ForwardedBadCertificates { ids }) if ids == &[ClientId(1)]),
        "{e:?}"
    );
    // Client 1's genuine advertisement from another round (same CA, same identity).
    let base = lab_config("forged_identity_replay", 8, 7, 5);
    let other = {
        let mut source = base.clone();
        source.round = RoundConfig::builder(8, 20)
            .neighbors(7)
            .threshold(5)
            .bits(24)
            .round_id(source.round.round_id() ^ 1)
            .build()
            .unwrap();
        let mut o = Lab::new(source).unwrap();
        o.run(&mut Honest).unwrap();
        o.sent()
            .iter()
            .find_map(|(from, m)| match m {
                ClientMessage::AdvertiseKeys(s) if *from == id => Some(s.clone()),
                _ => None,
            })
            .unwrap()
    };
    let e = substituted_in(base, |_, honest, _| SignedKeys {
        nonce: honest.nonce,
        ..other.clone()
    });
    assert!(
        matches!(&e, ProtocolError::PeerMisbehaved(PeerMisbehaved::ForwardedBadSignatures { ids }) if ids == &[ClientId(1)]),
        "{e:?}"
    );
}

#[test]
fn an_enrolled_server_drops_clients_it_cannot_authenticate() {
    // Client 3 signs with a key that is not the one its certificate names: the honest server
    // drops it at advertise-keys, and nobody else has to abort.
    let mut l = lab("server_drops_bad_signature", 8, 7, 5);
    let mut t = on_client(|from, m| match m {
        ClientMessage::AdvertiseKeys(mut s) if from == ClientId(3) => {
            s.signature[0] ^= 1;
            Some(ClientMessage::AdvertiseKeys(s))
        }
        m => Some(m),
    });
    l.run(&mut t).unwrap();
    completed(&l);
    assert!(matches!(
        dropped(&l, ClientId(3)),
        Some((
            Stage::AdvertiseKeys,
            DropReason::Misbehaved(ProtocolError::Identity(_))
        ))
    ));
}

// ---------------------------------------------------------------------------------------
// 3. The client's own policy: parameters and sizes the server chooses are checked.

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
fn a_cohort_below_the_policy_is_refused_before_keys() {
    let mut cfg = lab_config("cohort_below_policy", 11, 10, 6);
    cfg.policy = ClientPolicy {
        min_cohort: 10,
        ..parameter_free_policy()
    };
    let mut l = Lab::new(cfg).unwrap();
    // The server lets only nine clients into the cohort.
    let mut t = on_client(|from, m| match m {
        ClientMessage::Join { .. } if from.0 >= 9 => None,
        m => Some(m),
    });
    l.run(&mut t).unwrap();
    for i in 0..9 {
        assert!(matches!(
            aborted(&l, ClientId(i)),
            ProtocolError::Policy(PolicyError::Cohort { n: 9, min: 10, .. })
        ));
        assert!(!l.has_sent(ClientId(i), "advertise-keys"));
    }
}

// ---------------------------------------------------------------------------------------
// 4. Survivor lists: split, padded, asked twice; forged and replayed signatures.

/// Runs an honest lab until the server hands out the survivor list, and withholds it.
fn up_to_survivor_list(test: &str, n: usize, k: usize, t: usize) -> (Lab, Arc<[ClientId]>) {
    let mut l = lab(test, n, k, t);
    let list = RefCell::new(None);
    let mut tamper = on_server(|to, m, out: &mut Vec<_>| match m {
        ServerMessage::SurvivorList(u3) => {
            list.borrow_mut().get_or_insert(u3);
        }
        m => out.push((to, m)),
    });
    while list.borrow().is_none() {
        assert!(l.step(&mut tamper).unwrap(), "the round stalled");
    }
    (l, list.into_inner().unwrap())
}

fn signatures(sent: &[(ClientId, ClientMessage)]) -> Vec<(ClientId, [u8; 64])> {
    let mut s: Vec<(ClientId, [u8; 64])> = sent
        .iter()
        .filter_map(|(id, m)| match m {
            ClientMessage::Consistency { signature } => Some((*id, *signature)),
            _ => None,
        })
        .collect();
    s.sort_by_key(|(id, _)| *id);
    s.dedup_by_key(|(id, _)| *id);
    s
}

/// The split-view attack on the target with `colluders`: honest holders in group A are told
/// the target survived, those in group B that it dropped; each colluder answers both ways
/// (itself on A, its twin on B). Returns the lab after both groups answered.
fn split_attack(test: &str, colluders: &[u32]) -> Lab {
    split_attack_at(test, (12, 11, 8), colluders)
}

/// [`split_attack`] on a round of `(n, k, t)`.
fn split_attack_at(test: &str, (n, k, t): (usize, usize, usize), colluders: &[u32]) -> Lab {
    let (mut l, u3) = up_to_survivor_list(test, n, k, t);
    assert_eq!(u3.len(), n);
    let with: Arc<[ClientId]> = u3.clone();
    let without: Arc<[ClientId]> = u3.iter().copied().filter(|c| *c != TARGET).collect();
    let honest: Vec<ClientId> = (0..n as u32)
        .filter(|i| !colluders.contains(i))
        .map(ClientId)
        .collect();
    // Half the honest holders (the target among them) on list A, the rest on list B.
    let half = honest.len().div_ceil(2);
    let (group_a, group_b) = honest.split_at(half);
    let c_ids: Vec<ClientId> = colluders.iter().map(|&i| ClientId(i)).collect();
    for &u in group_a.iter().chain(&c_ids) {
        l.deliver(u, ServerMessage::SurvivorList(with.clone()))
            .unwrap();
    }
    for &u in group_b {
        l.deliver(u, ServerMessage::SurvivorList(without.clone()))
            .unwrap();
    }
    let mut twins = Vec::new();
    let mut b_sent = Vec::new();
    for &c in &c_ids {
        let upto = l.received(c).len() - 1;
        let tw = l.twin(c, upto).unwrap();
        for m in l
            .twin_deliver(tw, ServerMessage::SurvivorList(without.clone()))
            .unwrap()
        {
            b_sent.push((c, m));
        }
        twins.push(tw);
    }
    let a_sent: Vec<(ClientId, ClientMessage)> = l.flush().unwrap();
    let sigs_a: Vec<_> = signatures(&a_sent)
        .into_iter()
        .filter(|(s, _)| group_a.contains(s) || c_ids.contains(s))
        .collect();
    let mut b_all = b_sent;
    b_all.extend(a_sent.into_iter().filter(|(s, _)| group_b.contains(s)));
    let sigs_b = signatures(&b_all);
    for &u in group_a.iter().chain(&c_ids) {
        l.deliver(
            u,
            ServerMessage::UnmaskRequest {
                survivors: with.clone(),
                signatures: sigs_a.clone(),
            },
        )
        .unwrap();
    }
    for &u in group_b {
        l.deliver(
            u,
            ServerMessage::UnmaskRequest {
                survivors: without.clone(),
                signatures: sigs_b.clone(),
            },
        )
        .unwrap();
    }
    for tw in twins {
        l.twin_deliver(
            tw,
            ServerMessage::UnmaskRequest {
                survivors: without.clone(),
                signatures: sigs_b.clone(),
            },
        )
        .unwrap();
    }
    l.flush().unwrap();
    l
}

#[test]
fn a_split_survivor_list_gathers_too_few_signatures() {
    // n = 12, complete graph, t = 8: two lists can each gather 8 signatures from the 12
    // holders only if 2·8 − 12 = 4 holders sign both. Three colluders are not enough.
    let l = split_attack("split_survivor_list_three_colluders", &[9, 10, 11]);
    // The holders told "the target dropped" see too few signatures and reveal nothing.
    for i in 5..9 {
        let e = aborted(&l, ClientId(i));
        assert!(
            matches!(
                e,
                ProtocolError::Consistency {
                    have: 7,
                    need: 8,
                    ..
                }
            ),
            "client {i}: {e:?}"
        );
        assert!(!l.has_sent(ClientId(i), "unmask-shares"));
    }
    let r = l.attempt_rebuild(TARGET);
    assert!(!r.exposed(), "{r:?}");
    assert!(matches!(r, Rebuild::PairwiseHidden { .. }), "{r:?}");
}

#[test]
fn breaking_the_bound_exposes_the_input_so_the_rebuild_is_real() {
    // Four colluders: 2t − (k + 1) = 4 holders sign both lists, and the same attack works:
    // this is why the planner keeps the corrupted neighbours below 2t − k − 1.
    let l = split_attack("split_survivor_list_four_colluders", &[8, 9, 10, 11]);
    assert_eq!(l.attempt_rebuild(TARGET), Rebuild::Rebuilt { exact: true });
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
fn padded_and_foreign_survivor_lists_are_refused() {
    // A list that names a client excluded before masking (a cheating dealer): everyone its
    // neighbour refuses, because it did not mask with it.
    let cfg = lab_config("padded_survivor_list", 10, 9, 6);
    let dealers = BTreeMap::from([(ClientId(9), DealerFault::BadShares(vec![ClientId(1)]))]);
    let mut l = Lab::with_dealers(cfg, dealers).unwrap();
    let mut t = on_server(|to, m, out: &mut Vec<_>| match m {
        ServerMessage::SurvivorList(u3) => {
            let mut padded: Vec<ClientId> = u3.to_vec();
            padded.push(ClientId(9));
            out.push((to, ServerMessage::SurvivorList(padded.into())))
        }
        m => out.push((to, m)),
    });
    l.run(&mut t).unwrap();
    for i in 0..9 {
        let e = aborted(&l, ClientId(i));
        assert!(
            matches!(
                &e,
                ProtocolError::PeerMisbehaved(PeerMisbehaved::SurvivorNotPartner { .. })
            ),
            "{e:?}"
        );
        assert!(!l.has_sent(ClientId(i), "consistency"));
    }
    assert_eq!(
        l.attempt_rebuild(TARGET),
        Rebuild::SelfMaskHidden { shares: 0, need: 6 }
    );

    // A list that leaves the recipient out, and one with a client outside the key list.
    let (mut l, u3) = up_to_survivor_list("foreign_survivor_list", 8, 7, 5);
    let without_me: Arc<[ClientId]> = u3.iter().copied().filter(|c| c.0 != 2).collect();
    l.deliver(ClientId(2), ServerMessage::SurvivorList(without_me))
        .unwrap();
    let mut stranger = u3.to_vec();
    if let Some(last) = stranger.last_mut() {
        *last = ClientId(77);
    }
    l.deliver(ClientId(3), ServerMessage::SurvivorList(stranger.into()))
        .unwrap();
    assert!(matches!(
        aborted(&l, ClientId(2)),
        ProtocolError::PeerMisbehaved(PeerMisbehaved::SurvivorListOmitsSelf)
    ));
    assert!(matches!(
        aborted(&l, ClientId(3)),
        ProtocolError::PeerMisbehaved(PeerMisbehaved::SurvivorNotMember { .. })
    ));
}

#[test]
fn a_second_unmask_request_gets_nothing() {
    let mut l = lab("second_unmask_request", 9, 8, 6);
    // Withhold the completion notice, then ask again with the target declared dropped.
    let mut request = None;
    let mut t = on_server(|to, m, out: &mut Vec<_>| match m {
        ServerMessage::Completed { .. } => {}
        ServerMessage::UnmaskRequest {
            survivors,
            signatures,
        } => {
            request.get_or_insert((survivors.clone(), signatures.clone()));
            out.push((
                to,
                ServerMessage::UnmaskRequest {
                    survivors,
                    signatures,
                },
            ))
        }
        m => out.push((to, m)),
    });
    l.run(&mut t).unwrap();
    completed(&l);
    let (survivors, signatures) = request.unwrap();
    let without: Arc<[ClientId]> = survivors.iter().copied().filter(|c| *c != TARGET).collect();
    for i in 1..9 {
        l.deliver(
            ClientId(i),
            ServerMessage::UnmaskRequest {
                survivors: without.clone(),
                signatures: signatures.clone(),
            },
        )
        .unwrap();
        let e = aborted(&l, ClientId(i));
        assert!(
            matches!(
                &e,
                ProtocolError::PeerMisbehaved(PeerMisbehaved::SecondUnmaskRequest { .. })
            ),
            "{e:?}"
        );
    }
    l.flush().unwrap();
    for i in 1..9 {
        let reveals = l
            .sent()
            .iter()
            .filter(|(f, m)| f.0 == i && m.name() == "unmask-shares")
            .count();
        assert_eq!(reveals, 1, "client {i}");
    }
    // The target's mask key was never revealed: only its self mask, which is on the sum.
    assert!(matches!(
        l.attempt_rebuild(TARGET),
        Rebuild::PairwiseHidden { .. }
    ));
}

#[test]
fn forged_and_replayed_survivor_signatures_are_refused() {
    // Another round's signatures, for the replay.
    let replayed = {
        let mut o = lab("survivor_signature_replay_source", 8, 7, 5);
        o.run(&mut Honest).unwrap();
        signatures(o.sent())
    };
    type Signatures = Vec<(ClientId, [u8; 64])>;
    let forge = |test: &str, change: &dyn Fn(&mut Signatures)| -> ProtocolError {
        let mut l = lab(test, 8, 7, 5);
        let mut t = on_server(|to, m, out: &mut Vec<_>| match m {
            ServerMessage::UnmaskRequest {
                survivors,
                mut signatures,
            } if to == ClientId(1) => {
                change(&mut signatures);
                out.push((
                    to,
                    ServerMessage::UnmaskRequest {
                        survivors,
                        signatures,
                    },
                ))
            }
            m => out.push((to, m)),
        });
        l.run(&mut t).unwrap();
        assert!(!l.has_sent(ClientId(1), "unmask-shares"));
        aborted(&l, ClientId(1))
    };
    // Client 3's signature presented as client 2's.
    let e = forge("survivor_signature_other_client", &|s| {
        let sig3 = s.iter().find(|(id, _)| id.0 == 3).unwrap().1;
        s.iter_mut().find(|(id, _)| id.0 == 2).unwrap().1 = sig3;
    });
    assert!(
        matches!(&e, ProtocolError::PeerMisbehaved(PeerMisbehaved::BadSurvivorSignatures { ids }) if ids == &[ClientId(2)]),
        "{e:?}"
    );
    // Client 2's signature from another round.
    let old = replayed.iter().find(|(id, _)| id.0 == 2).unwrap().1;
    let e = forge("survivor_signature_replayed", &|s| {
        s.iter_mut().find(|(id, _)| id.0 == 2).unwrap().1 = old;
    });
    assert!(
        matches!(
            &e,
            ProtocolError::PeerMisbehaved(PeerMisbehaved::BadSurvivorSignatures { .. })
        ),
        "{e:?}"
    );
    // A signature by someone who is not a survivor, and an unsorted list.
    let e = forge("survivor_signature_stranger", &|s| {
        if let Some(last) = s.last_mut() {
            last.0 = ClientId(40);
        }
    });
    assert!(
        matches!(&e, ProtocolError::PeerMisbehaved(PeerMisbehaved::SignerNotSurvivor { signer }) if *signer == ClientId(40)),
        "{e:?}"
    );
    let e = forge("survivor_signature_unsorted", &|s| s.reverse());
    assert!(
        matches!(
            &e,
            ProtocolError::PeerMisbehaved(PeerMisbehaved::SignaturesNotSorted)
        ),
        "{e:?}"
    );
    // Too few signatures: the server withholds some.
    let e = forge("survivor_signature_withheld", &|s| s.truncate(3));
    assert!(
        matches!(
            e,
            ProtocolError::Consistency {
                have: 3,
                need: 5,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn a_bad_survivor_signature_costs_only_its_sender() {
    let mut l = lab("bad_survivor_signature_sender", 9, 8, 5);
    let mut t = on_client(|from, m| match m {
        ClientMessage::Consistency { mut signature } if from == ClientId(4) => {
            signature[5] ^= 0x40;
            Some(ClientMessage::Consistency { signature })
        }
        m => Some(m),
    });
    l.run(&mut t).unwrap();
    completed(&l);
    // Its input is in the sum (it masked); it just reveals nothing.
    assert!(l.server().output().unwrap().included.contains(&ClientId(4)));
    assert!(matches!(
        dropped(&l, ClientId(4)),
        Some((
            Stage::Consistency,
            DropReason::Misbehaved(ProtocolError::Identity(_))
        ))
    ));
}

// ---------------------------------------------------------------------------------------
// 5. Round contexts and graph grinding.

#[test]
fn clients_with_different_round_contexts_cannot_finish_together() {
    let cfg = lab_config("divergent_contexts", 8, 7, 5);
    let mut l = Lab::new(cfg.clone()).unwrap();
    l.reconfigure(TARGET, cfg.round.with_context([9; 32]))
        .unwrap();
    // The honest server cannot verify the target's signature (another round digest).
    l.run(&mut Honest).unwrap();
    completed(&l);
    // Its nonce commitment and its signature were made for another round digest.
    assert!(matches!(
        dropped(&l, TARGET),
        Some((Stage::AdvertiseKeys, DropReason::Misbehaved(_)))
    ));
    assert_eq!(l.attempt_rebuild(TARGET), Rebuild::NoMaskedInput);

    // A server that forwards the target's keys anyway: every neighbour refuses them, and the
    // target refuses everyone else's.
    let mut l = Lab::new(cfg.clone()).unwrap();
    l.reconfigure(TARGET, cfg.round.with_context([9; 32]))
        .unwrap();
    let target_keys: RefCell<Option<SignedKeys>> = RefCell::new(None);
    let mut t = secagg::host::sim::lab::Script {
        server: |to: ClientId, m: ServerMessage, out: &mut Vec<(ClientId, ServerMessage)>| match m {
            ServerMessage::KeyList(list) => {
                let mut v = list.to_vec();
                if let Some(k) = target_keys.borrow().as_ref() {
                    v.push((TARGET, k.clone()));
                    v.sort_by_key(|(id, _)| *id);
                }
                let v: Arc<[_]> = v.into();
                if to == ClientId(1) {
                    // The target, dropped by the honest server, gets the list too.
                    out.push((TARGET, ServerMessage::KeyList(v.clone())));
                }
                out.push((to, ServerMessage::KeyList(v)))
            }
            m => out.push((to, m)),
        },
        client: |from: ClientId, m: ClientMessage| {
            if let ClientMessage::AdvertiseKeys(k) = &m
                && from == TARGET
            {
                *target_keys.borrow_mut() = Some(k.clone());
            }
            Some(m)
        },
    };
    l.run(&mut t).unwrap();
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

#[test]
fn the_graph_cannot_be_ground_after_keys() {
    // Colluding clients 5 and 6 hand the server their identity keys. After seeing every
    // honest key, the server tries fresh round keys for them, hoping for a graph that puts
    // them around the target: the graph does not move.
    let mut l = lab("graph_grinding", 30, 6, 5);
    let (list, round, digest) = up_to_key_list(&mut l);
    let graph_of = |keys: &[(ClientId, SignedKeys)]| {
        RoundView::derive(&round, &digest, keys, 6)
            .graph
            .neighbors(TARGET)
    };
    let honest_graph = graph_of(&list);
    let mut rng = ChaCha20Rng::seed_from_u64(0x96);
    for _ in 0..64 {
        let mut tried = list.to_vec();
        for sybil in [5u32, 6] {
            let key = l.identity_key(ClientId(sybil));
            let secrets = ClientSecrets::generate(&mut rng);
            let keys = secrets.public_keys();
            let e = &mut tried[sybil as usize].1;
            let m = advertisement_message(&round, &digest, ClientId(sybil), &keys, &e.nonce);
            e.keys = keys;
            e.signature = key.sign(ADVERTISE_DOMAIN, &m);
        }
        assert_eq!(
            graph_of(&tried),
            honest_graph,
            "a key choice moved the graph"
        );
    }
    // Changing a colluder's nonce instead would move the graph, but no client accepts a
    // nonce that does not open its commitment in the cohort.
    let mut tried = list.to_vec();
    tried[5].1.nonce[0] ^= 1;
    assert_ne!(graph_of(&tried), honest_graph);
    let tried: Arc<[_]> = tried.into();
    for (id, _) in list.iter() {
        l.deliver(*id, ServerMessage::KeyList(tried.clone()))
            .unwrap();
    }
    l.flush().unwrap();
    for i in 0..30 {
        let e = aborted(&l, ClientId(i));
        assert!(
            matches!(
                &e,
                ProtocolError::PeerMisbehaved(PeerMisbehaved::NonceMismatch { .. })
            ),
            "{e:?}"
        );
        assert!(!l.has_sent(ClientId(i), "share-keys"));
    }
}

// ---------------------------------------------------------------------------------------
// 6. Malicious clients cannot stop the round.

#[test]
fn a_cheating_dealer_is_excluded_and_the_rest_sum_exactly() {
    // Shares that do not match their points: the victims prove it at the share check.
    let cfg = lab_config("cheating_dealer_bad_shares", 10, 9, 6);
    let fault = DealerFault::BadShares(vec![ClientId(1), ClientId(2)]);
    let mut l = Lab::with_dealers(cfg, BTreeMap::from([(ClientId(3), fault)])).unwrap();
    l.run(&mut Honest).unwrap();
    completed(&l);
    let out = l.server().output().unwrap();
    assert!(!out.included.contains(&ClientId(3)));
    assert_eq!(out.included.len(), 9);
    match dropped(&l, ClientId(3)) {
        Some((
            Stage::MaskedInput,
            DropReason::Misbehaved(ProtocolError::CheatingDealer { dealer, holder }),
        )) => {
            assert_eq!(dealer, ClientId(3));
            assert!(holder == ClientId(1) || holder == ClientId(2), "{holder}");
        }
        other => panic!("{other:?}"),
    }
    // Nobody else was dropped, and the dealer was told.
    assert_eq!(out.dropped.len(), 1, "{:?}", out.dropped);
    assert!(matches!(
        l.status(ClientId(3)),
        Some(ClientStatus::Aborted(_))
    ));

    // A self-mask key that is not on the polynomial of the share points: the server sees it
    // in the dealing itself.
    let cfg = lab_config("cheating_dealer_false_commitment", 10, 9, 6);
    let fault = DealerFault::FalseCommitment;
    let mut l = Lab::with_dealers(cfg, BTreeMap::from([(ClientId(3), fault)])).unwrap();
    l.run(&mut Honest).unwrap();
    completed(&l);
    assert_eq!(l.server().output().unwrap().included.len(), 9);
    assert!(matches!(
        dropped(&l, ClientId(3)),
        Some((
            Stage::ShareKeys,
            DropReason::Misbehaved(ProtocolError::Crypto(CryptoError::Commitment(_)))
        ))
    ));
}

#[test]
fn a_dealing_of_degree_t_is_excluded_before_anyone_masks_with_it() {
    // Every share matches its point, but the points lie on a polynomial of degree t, so no t
    // shares rebuild the secret. σ: the dealer then goes silent and the server would have to
    // rebuild σ; β: the dealer masks and survives and the server would have to rebuild β.
    // Either way the server must see it in the dealing, before anyone masks with the dealer.
    for (test, fault, set) in [
        ("degree_t_mask_key", DealerFault::MaskKeyOfDegreeT, "σ"),
        ("degree_t_self_key", DealerFault::SelfKeyOfDegreeT, "β"),
    ] {
        let cfg = lab_config(test, 10, 9, 6);
        let mut l = Lab::with_dealers(cfg, BTreeMap::from([(ClientId(3), fault)])).unwrap();
        l.run(&mut Honest).unwrap();
        completed(&l);
        let out = l.server().output().unwrap();
        assert!(!out.included.contains(&ClientId(3)), "{test}");
        assert_eq!(out.included.len(), 9, "{test}");
        assert_eq!(out.dropped.len(), 1, "{test}: {:?}", out.dropped);
        match dropped(&l, ClientId(3)) {
            Some((
                Stage::ShareKeys,
                DropReason::Misbehaved(ProtocolError::Crypto(CryptoError::Commitment(why))),
            )) => assert!(why.contains(set), "{test}: {why}"),
            other => panic!("{test}: {other:?}"),
        }
        // No honest client was asked to mask with it, or received its bundle.
        for c in (0..10).filter(|c| *c != 3) {
            for env in l.received(ClientId(c)) {
                match &env.message {
                    ServerMessage::MaskRequest(partners) => {
                        assert!(!partners.contains(&ClientId(3)), "{test}: client {c}")
                    }
                    ServerMessage::ShareBundles(bundles) => {
                        assert!(bundles.iter().all(|b| b.sender != ClientId(3)), "{test}")
                    }
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn a_dealer_with_torsion_or_non_canonical_points_is_excluded_and_no_reporter_is_dropped() {
    // A dealer adds a point of order 8 to the published share points of some holders, their
    // shares unchanged: a holder comparing bytes reports a mismatch, a server comparing up to
    // the cofactor would call the report false and drop the holder — and with enough victims
    // (an arc of the ring) abort the round. With one rule for points on both sides the server
    // refuses the dealing itself. The same for a non-canonically encoded point.
    let all_but_dealer: Vec<ClientId> = (0..16).filter(|c| *c != 3).map(ClientId).collect();
    for (test, n, k, t, fault, what, why) in [
        (
            "torsion_dealer_two_victims",
            10,
            9,
            6,
            DealerFault::TorsionPoints(vec![ClientId(1), ClientId(2)]),
            "σ share point",
            PointError::Torsion,
        ),
        (
            "torsion_dealer_five_victims",
            10,
            9,
            6,
            DealerFault::TorsionPoints((4..9).map(ClientId).collect()),
            "σ share point",
            PointError::Torsion,
        ),
        (
            "torsion_dealer_sparse_every_holder",
            16,
            6,
            4,
            DealerFault::TorsionPoints(all_but_dealer.clone()),
            "σ share point",
            PointError::Torsion,
        ),
        (
            "non_canonical_point_dealer",
            10,
            9,
            6,
            DealerFault::NonCanonicalPoint(ClientId(5)),
            "β share point",
            PointError::NonCanonical,
        ),
    ] {
        let cfg = lab_config(test, n, k, t);
        let mut l = Lab::with_dealers(cfg, BTreeMap::from([(ClientId(3), fault)])).unwrap();
        l.run(&mut Honest).unwrap();
        completed(&l);
        let out = l.server().output().unwrap();
        assert_eq!(out.included.len(), n - 1, "{test}: {:?}", out.dropped);
        assert!(!out.included.contains(&ClientId(3)), "{test}");
        // Nobody but the dealer was dropped: no honest holder paid for reporting it.
        assert_eq!(out.dropped.len(), 1, "{test}: {:?}", out.dropped);
        assert_eq!(
            dropped(&l, ClientId(3)),
            Some((
                Stage::ShareKeys,
                DropReason::Misbehaved(ProtocolError::Crypto(CryptoError::BadPoint { what, why }))
            )),
            "{test}"
        );
    }
}

#[test]
fn bad_holders_are_left_out_without_search() {
    // Two holders reveal wrong shares for every owner they hold; the server checks each
    // owner's shares against its commitments, leaves the bad ones out and names them.
    let mut l = lab("bad_holders", 12, 11, 7);
    let mut t = on_client(|from, m| match m {
        ClientMessage::UnmaskShares(mut shares) if from.0 == 4 || from.0 == 5 => {
            for s in &mut shares {
                s.value[0] ^= 1;
            }
            Some(ClientMessage::UnmaskShares(shares))
        }
        m => Some(m),
    });
    l.run(&mut t).unwrap();
    completed(&l);
    assert_eq!(l.server().output().unwrap().included.len(), 12);
    let named: Vec<ClientId> = l
        .events()
        .iter()
        .filter_map(|e| match e {
            ServerEvent::MessageRejected {
                client,
                reason: ProtocolError::Crypto(CryptoError::Mismatch { .. }),
            } => Some(*client),
            _ => None,
        })
        .collect();
    assert!(
        named.contains(&ClientId(4)) && named.contains(&ClientId(5)),
        "{named:?}"
    );
    assert!(named.iter().all(|c| c.0 == 4 || c.0 == 5), "{named:?}");
}

#[test]
fn a_false_report_costs_only_the_reporter() {
    let mut l = lab("false_report", 10, 9, 6);
    let mut t = on_client(|from, m| match m {
        ClientMessage::ShareCheck(mut reports) if from == ClientId(2) => {
            reports.push(DealerReport {
                dealer: ClientId(5),
                kind: ReportKind::BadShares {
                    bundle_key: [3; 32],
                },
            });
            Some(ClientMessage::ShareCheck(reports))
        }
        m => Some(m),
    });
    l.run(&mut t).unwrap();
    completed(&l);
    let out = l.server().output().unwrap();
    assert!(out.included.contains(&ClientId(5)));
    assert!(!out.included.contains(&ClientId(2)));
    assert!(matches!(
        dropped(&l, ClientId(2)),
        Some((
            Stage::ShareCheck,
            DropReason::Misbehaved(ProtocolError::FalseReport {
                dealer: ClientId(5),
                ..
            })
        ))
    ));
}

#[test]
fn a_false_accusation_with_the_genuine_key_costs_only_the_accuser() {
    // Client 4 reveals the real key of its pair with dealer 5: the bundle opens, its shares
    // match their points, so the server drops the accuser and keeps the dealer.
    let cfg = lab_config("false_accusation_genuine_key", 10, 9, 6);
    let fault = DealerFault::FalseAccusation(ClientId(5));
    let mut l = Lab::with_dealers(cfg, BTreeMap::from([(ClientId(4), fault)])).unwrap();
    l.run(&mut Honest).unwrap();
    completed(&l);
    let out = l.server().output().unwrap();
    assert!(out.included.contains(&ClientId(5)));
    assert!(!out.included.contains(&ClientId(4)));
    assert!(matches!(
        dropped(&l, ClientId(4)),
        Some((
            Stage::ShareCheck,
            DropReason::Misbehaved(ProtocolError::FalseReport {
                dealer: ClientId(5),
                why
            })
        )) if why.contains("match their points")
    ));
}

#[test]
fn an_unmask_request_for_another_survivor_list_is_refused() {
    let mut l = lab("unmask_request_other_list", 8, 7, 5);
    let mut t = on_server(|to, m, out: &mut Vec<_>| match m {
        // Client 2 signed the honest list; the request names the target as dropped.
        ServerMessage::UnmaskRequest {
            survivors,
            signatures,
        } if to == ClientId(2) => {
            let other: Arc<[ClientId]> =
                survivors.iter().copied().filter(|c| *c != TARGET).collect();
            out.push((
                to,
                ServerMessage::UnmaskRequest {
                    survivors: other,
                    signatures,
                },
            ))
        }
        m => out.push((to, m)),
    });
    l.run(&mut t).unwrap();
    let e = aborted(&l, ClientId(2));
    assert!(
        matches!(
            &e,
            ProtocolError::PeerMisbehaved(PeerMisbehaved::UnmaskListChanged)
        ),
        "{e:?}"
    );
    assert!(!l.has_sent(ClientId(2), "unmask-shares"));
}

#[test]
fn unreadable_bundles_exclude_a_dealer_only_when_it_cannot_be_rebuilt() {
    // Client 6 corrupts every bundle it deals (a broken AEAD for everyone): no holder can
    // read its shares, so it is excluded before anyone masks with it.
    let mut l = lab("unreadable_dealer", 10, 9, 6);
    let mut t = on_client(|from, m| match m {
        ClientMessage::ShareKeys {
            self_key,
            own_point,
            mut bundles,
        } if from == ClientId(6) => {
            for b in &mut bundles {
                b.ciphertext[3] ^= 1;
            }
            Some(ClientMessage::ShareKeys {
                self_key,
                own_point,
                bundles,
            })
        }
        // Client 7 breaks only two of its bundles: it stays.
        ClientMessage::ShareKeys {
            self_key,
            own_point,
            mut bundles,
        } if from == ClientId(7) => {
            for b in bundles.iter_mut().take(2) {
                b.ciphertext[3] ^= 1;
            }
            Some(ClientMessage::ShareKeys {
                self_key,
                own_point,
                bundles,
            })
        }
        m => Some(m),
    });
    l.run(&mut t).unwrap();
    completed(&l);
    let out = l.server().output().unwrap();
    assert!(!out.included.contains(&ClientId(6)));
    assert!(out.included.contains(&ClientId(7)));
    assert!(matches!(
        dropped(&l, ClientId(6)),
        Some((
            Stage::MaskedInput,
            DropReason::Misbehaved(ProtocolError::UnrecoverableDealer {
                dealer: ClientId(6),
                readable: 0,
                need: 6
            })
        ))
    ));
}

#[test]
fn malicious_clients_together_cannot_stop_the_round() {
    // A cheating dealer, a false reporter, two holders revealing garbage and a forged
    // survivor signature, all in one round: the honest survivors' sum comes out exact.
    let cfg = lab_config("malicious_clients_together", 16, 15, 9);
    let mut l = Lab::with_dealers(
        cfg,
        BTreeMap::from([(ClientId(3), DealerFault::BadShares(vec![ClientId(0)]))]),
    )
    .unwrap();
    let mut t = on_client(|from, m| match (from.0, m) {
        (2, ClientMessage::ShareCheck(mut r)) => {
            r.push(DealerReport {
                dealer: ClientId(9),
                kind: ReportKind::BadShares {
                    bundle_key: [8; 32],
                },
            });
            Some(ClientMessage::ShareCheck(r))
        }
        (4 | 5, ClientMessage::UnmaskShares(mut s)) => {
            for x in &mut s {
                x.value[1] ^= 2;
            }
            Some(ClientMessage::UnmaskShares(s))
        }
        (11, ClientMessage::Consistency { mut signature }) => {
            signature[0] ^= 1;
            Some(ClientMessage::Consistency { signature })
        }
        (_, m) => Some(m),
    });
    l.run(&mut t).unwrap();
    completed(&l);
    let out = l.server().output().unwrap();
    assert!(!out.included.contains(&ClientId(3)) && !out.included.contains(&ClientId(2)));
    assert_eq!(out.included.len(), 14);
}

// ---------------------------------------------------------------------------------------
// 7. The everyday misbehaviour the server shrugs off.

#[test]
fn wrong_round_and_unexpected_messages_drop_only_their_sender() {
    let mut l = lab("wrong_round_and_unexpected", 9, 8, 5);
    let mut t = on_client(|from, m| match (from.0, m) {
        // Client 1 skips its share check and sends its consistency signature instead.
        (1, ClientMessage::ShareCheck(_)) => {
            Some(ClientMessage::Consistency { signature: [0; 64] })
        }
        (_, m) => Some(m),
    });
    l.run(&mut t).unwrap();
    completed(&l);
    assert!(matches!(
        dropped(&l, ClientId(1)),
        Some((
            Stage::ShareCheck,
            DropReason::Misbehaved(ProtocolError::UnexpectedMessage { .. })
        ))
    ));
    assert_eq!(l.server().output().unwrap().dropped.len(), 1);
}

#[test]
fn low_order_keys_are_dropped_at_advertise() {
    let mut l = lab("low_order_keys", 10, 9, 5);
    let mut t = on_client(|from, m| match m {
        // A mask key of order 4; one with a part of order 8; one non-canonically encoded; a
        // small-order encryption key.
        ClientMessage::AdvertiseKeys(mut s) if from == ClientId(2) => {
            s.keys.masking = EIGHT_TORSION[2].compress().to_bytes();
            Some(ClientMessage::AdvertiseKeys(s))
        }
        ClientMessage::AdvertiseKeys(mut s) if from == ClientId(4) => {
            let p = CompressedEdwardsY(s.keys.masking).decompress().unwrap();
            s.keys.masking = (p + EIGHT_TORSION[5]).compress().to_bytes();
            Some(ClientMessage::AdvertiseKeys(s))
        }
        ClientMessage::AdvertiseKeys(mut s) if from == ClientId(5) => {
            s.keys.masking = NON_CANONICAL_POINT;
            Some(ClientMessage::AdvertiseKeys(s))
        }
        ClientMessage::AdvertiseKeys(mut s) if from == ClientId(3) => {
            s.keys.encryption = [0; 32];
            Some(ClientMessage::AdvertiseKeys(s))
        }
        m => Some(m),
    });
    l.run(&mut t).unwrap();
    completed(&l);
    assert!(matches!(
        dropped(&l, ClientId(3)),
        Some((
            Stage::AdvertiseKeys,
            DropReason::Misbehaved(ProtocolError::Crypto(CryptoError::NonContributory { .. }))
        ))
    ));
    for (c, why) in [
        (2, PointError::Torsion),
        (4, PointError::Torsion),
        (5, PointError::NonCanonical),
    ] {
        assert_eq!(
            dropped(&l, ClientId(c)),
            Some((
                Stage::AdvertiseKeys,
                DropReason::Misbehaved(ProtocolError::Crypto(CryptoError::BadPoint {
                    what: "mask-agreement key",
                    why
                }))
            )),
            "client {c}"
        );
    }
}

#[test]
fn silent_clients_are_dropped_at_the_deadline_of_every_stage() {
    // One client goes silent before each stage's message; the deadlines carry the round.
    let mut l = lab("silent_every_stage", 14, 13, 6);
    let silent_at: BTreeMap<u32, &str> = BTreeMap::from([
        (1, "advertise-keys"),
        (2, "share-keys"),
        (3, "share-check"),
        (4, "masked-input"),
        (5, "consistency"),
        (6, "unmask-shares"),
    ]);
    let mut gone = std::collections::BTreeSet::new();
    let mut t = on_client(|from, m| {
        if silent_at.get(&from.0) == Some(&m.name()) {
            gone.insert(from.0);
        }
        (!gone.contains(&from.0)).then_some(m)
    });
    l.run(&mut t).unwrap();
    completed(&l);
    let out = l.server().output().unwrap();
    // Clients silent from consistency on masked their input: it is in the sum.
    for (c, stage) in [
        (1, Stage::AdvertiseKeys),
        (2, Stage::ShareKeys),
        (3, Stage::ShareCheck),
        (4, Stage::MaskedInput),
        (5, Stage::Consistency),
        (6, Stage::Unmasking),
    ] {
        assert_eq!(
            dropped(&l, ClientId(c)).map(|d| d.0),
            Some(stage),
            "client {c}"
        );
        assert_eq!(out.included.contains(&ClientId(c)), c >= 5, "client {c}");
    }
}

// ---------------------------------------------------------------------------------------
// Streamed masked inputs: pieces go into the sum as they arrive, so a sender that stops
// half-way must end the round (its partial input cannot be taken out), while a sender whose
// first piece is bad costs only itself.

/// Runs the lab until the clients have queued their masked inputs, and takes them.
fn masked_inputs(lab: &mut Lab) -> Vec<(ClientId, ClientMessage)> {
    while lab.server_status() != ServerStatus::Running(Stage::MaskedInput) {
        assert!(lab.step(&mut Honest).unwrap(), "the round stalled");
    }
    let sent = lab.flush().unwrap();
    assert!(
        sent.iter()
            .all(|(_, m)| matches!(m, ClientMessage::PackedInput(_))),
        "expected masked inputs"
    );
    sent
}

/// `values` as pieces of the given sizes (the last takes the rest), packed at `bits`.
fn pieces(values: &[u32], bits: u32, sizes: &[usize]) -> Vec<ClientMessage> {
    let mut out = Vec::new();
    let mut at = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let end = if i + 1 == sizes.len() {
            values.len()
        } else {
            at + size
        };
        let mut bytes = Vec::new();
        secagg::host::codec::pack(&values[at..end], bits, &mut bytes);
        out.push(ClientMessage::MaskedChunk(
            secagg::host::messages::PackedRun {
                offset: at,
                count: end - at,
                bytes,
            },
        ));
        at = end;
    }
    out
}

fn split_target(
    lab: &mut Lab,
    sizes: &[usize],
) -> (Vec<(ClientId, ClientMessage)>, Vec<ClientMessage>) {
    let bits = lab.config().round.modulus().bits();
    let mut others = masked_inputs(lab);
    let at = others.iter().position(|(c, _)| *c == TARGET).unwrap();
    let (_, ClientMessage::PackedInput(packed)) = others.remove(at) else {
        unreachable!()
    };
    let values = packed.unpack().unwrap();
    (others, pieces(&values, bits, sizes))
}

#[test]
fn a_streamed_input_in_pieces_sums_exactly() {
    let mut lab = lab("stream::pieces", 8, 4, 3);
    // Odd sizes: at b = 24 the piece boundaries fall inside the packed words.
    let (others, parts) = split_target(&mut lab, &[1, 7, 3]);
    lab.to_server(others);
    lab.to_server(parts.into_iter().map(|m| (TARGET, m)).collect());
    lab.run(&mut Honest).unwrap();
    completed(&lab);
    assert!(lab.server().output().unwrap().included.contains(&TARGET));
}

#[test]
fn a_sender_that_stops_half_way_ends_the_round() {
    let mut lab = lab("stream::partial", 8, 4, 3);
    let (others, parts) = split_target(&mut lab, &[5, 5, 5]);
    lab.to_server(others);
    // Two of three pieces, then silence until the deadline.
    lab.to_server(parts.into_iter().take(2).map(|m| (TARGET, m)).collect());
    let status = lab.run(&mut Honest).unwrap();
    match status {
        ServerStatus::Aborted(AbortReason::PartialInput { client, .. }) => {
            assert_eq!(client, TARGET)
        }
        other => panic!("the round went on with a partial input in the sum: {other:?}"),
    }
    assert!(lab.server().output().is_none());
}

#[test]
fn a_bad_piece_costs_its_sender_before_the_sum_holds_any_and_the_round_after() {
    for bad in ["gap", "twice", "then-whole"] {
        let mut lab = lab(&format!("stream::bad::{bad}"), 8, 4, 3);
        let (others, parts) = split_target(&mut lab, &[4, 4]);
        lab.to_server(others);
        let mut send = parts;
        match bad {
            // Starts at element 4: nothing of it is in the sum yet.
            "gap" => {
                send.remove(0);
            }
            // The same first piece twice: the second does not continue the upload, and the
            // first is already in the sum: the round must end instead.
            "twice" => {
                let first = send[0].clone();
                send.insert(1, first);
            }
            // A whole input after a piece: a second copy would double-count.
            _ => {
                send.truncate(1);
                send.push(ClientMessage::MaskedInput(vec![0; 21]));
            }
        }
        lab.to_server(send.into_iter().map(|m| (TARGET, m)).collect());
        let status = lab.run(&mut Honest).unwrap();
        if bad == "gap" {
            completed(&lab);
            let out = lab.server().output().unwrap();
            assert!(!out.included.contains(&TARGET), "{bad}");
            assert!(
                matches!(
                    dropped(&lab, TARGET),
                    Some((Stage::MaskedInput, DropReason::Misbehaved(_)))
                ),
                "{bad}: {:?}",
                dropped(&lab, TARGET)
            );
        } else {
            assert!(
                matches!(
                    &status,
                    ServerStatus::Aborted(AbortReason::PartialInput { .. })
                ),
                "{bad}: {status:?}"
            );
        }
    }
}
