//! The attacks of a malicious server (and of malicious clients), run in the attack laboratory
//! (`secagg_host::sim::lab`) over real sans-IO clients. Each test asserts the honest clients'
//! typed outcome AND tries, as the attacker would, to rebuild the target's input from
//! everything the clients sent ([`Lab::attempt_rebuild`]). One test breaks the bound on
//! purpose and shows that the same rebuild then succeeds, so the rebuild is real.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::CompressedEdwardsY;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use secagg_engine::{CpuEngine, Prg};
use secagg_host::crypto::{
    ADVERTISE_DOMAIN, ClientSecrets, PublicKeys, RoundDigest, advertisement_message,
    nonce_commitment,
};
use secagg_host::identity::{CaKey, IdentityKey};
use secagg_host::messages::{
    ClientMessage, Credential, DealerReport, KeyList, ReportKind, ServerMessage, SignedKeys,
    UnmaskRequest,
};
use secagg_host::plan::Adversary;
use secagg_host::policy::PolicyError;
use secagg_host::server::ServerEvent;
use secagg_host::sim::lab::{
    DealerFault, Forgery, Honest, Lab, NON_CANONICAL_POINT, Rebuild, on_client, on_server,
};
use secagg_host::sim::{SimConfig, parameter_free_policy, sim_ca, sim_client};
use secagg_host::view::committee;
use secagg_host::{
    AbortReason, ClientError, ClientId, ClientPolicy, ClientStatus, CryptoError, DropReason,
    PeerMisbehaved, PointError, ProtocolError, RoundConfig, ServerStatus, Stage, Trust,
};

mod support;
use support::seeded_config;

const TARGET: ClientId = ClientId(0);

/// A lab of `n` clients, `k` neighbours, threshold `t`, every client enrolled, a policy that
/// checks every signature and list but sets no floor on the parameters.
fn lab_config(test: &str, n: usize, k: usize, t: usize) -> SimConfig {
    seeded_config(
        test,
        RoundConfig::builder(n, 20)
            .neighbors(k)
            .threshold(t)
            .bits(24),
    )
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

/// Whether `e` is a proof of the list `list` that failed.
fn bad_proof(e: &ProtocolError, list: &str) -> bool {
    matches!(e, ProtocolError::PeerMisbehaved(PeerMisbehaved::BadProof { what, .. }) if *what == list)
}

// ---------------------------------------------------------------------------------------
// 1. Withheld bundles: the target must not mask when its pairwise masks could be stripped.

#[test]
fn withheld_bundles_stop_the_target_before_it_masks() {
    // The server gives the target no bundles and then no partners to mask with.
    let mut l = lab("withheld_bundles_empty_request", 12, 11, 8);
    let mut t = on_server(|to, m, out: &mut Vec<_>| match m {
        ServerMessage::ShareBundles { audit, .. } if to == TARGET => out.push((
            to,
            ServerMessage::ShareBundles {
                bundles: vec![],
                audit,
            },
        )),
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
        ServerMessage::ShareBundles { bundles, audit } if to == TARGET => out.push((
            to,
            ServerMessage::ShareBundles {
                bundles: bundles.into_iter().take(3).collect(),
                audit,
            },
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

/// Runs a lab in which `forge` rewrites neighbour 1's advertisement in the cohort shown to the
/// target (and the key list that opens it), and checks that the target aborts before sending
/// any share.
fn substituted(
    test: &str,
    forge: impl Fn(&Lab, &SignedKeys, &RoundDigest) -> SignedKeys,
) -> ProtocolError {
    substituted_in(lab_config(test, 8, 7, 5), forge)
}

fn substituted_in(
    cfg: SimConfig,
    forge: impl Fn(&Lab, &SignedKeys, &RoundDigest) -> SignedKeys,
) -> ProtocolError {
    let mut l = Lab::new(cfg).unwrap();
    let cohorts = l.up_to("cohort").unwrap();
    let round = RoundDigest::of(&l.config().round);
    let mut adverts = l.advertisements();
    let honest = adverts[&ClientId(1)].clone();
    adverts.insert(ClientId(1), forge(&l, &honest, &round));
    let forged = Forgery::new(&l.config().round, adverts);
    for (to, m) in cohorts {
        let m = if to == TARGET {
            forged.welcome(TARGET).unwrap()
        } else {
            m
        };
        l.deliver(to, m).unwrap();
    }
    let lists = l.up_to("key-list").unwrap();
    let reveals = l.reveals();
    let roster = forged.roster(&reveals);
    for (to, m) in lists {
        let m = if to == TARGET {
            forged.key_list(&roster, &reveals, TARGET).unwrap()
        } else {
            m
        };
        l.deliver(to, m).unwrap();
    }
    l.flush().unwrap();
    assert!(!l.has_sent(TARGET, "share-keys"), "shares left the target");
    assert_eq!(l.attempt_rebuild(TARGET), Rebuild::NoMaskedInput);
    aborted(&l, TARGET)
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
    let e = substituted("torsion_mask_key_in_key_list", |l, honest, round| {
        let p = CompressedEdwardsY(honest.keys.masking)
            .decompress()
            .unwrap();
        let keys = PublicKeys {
            masking: (p + EIGHT_TORSION[1]).compress().to_bytes(),
            ..honest.keys
        };
        let m = advertisement_message(round, id, &keys, &honest.commitment);
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
    let e = substituted("forged_identity_self_asserted", |_, honest, round| {
        let (secrets, key) = attacker_keys();
        let keys = secrets.public_keys();
        let m = advertisement_message(round, id, &keys, &honest.commitment);
        SignedKeys {
            keys,
            commitment: honest.commitment,
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
    let e = substituted("forged_identity_other_ca", |_, honest, round| {
        let (secrets, key) = attacker_keys();
        let rogue = CaKey::generate(&mut ChaCha20Rng::seed_from_u64(7));
        let keys = secrets.public_keys();
        let m = advertisement_message(round, id, &keys, &honest.commitment);
        SignedKeys {
            keys,
            commitment: honest.commitment,
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
                ClientMessage::Join(s) if *from == id => Some(s.clone()),
                _ => None,
            })
            .unwrap()
    };
    let e = substituted_in(base, |_, honest, _| SignedKeys {
        commitment: honest.commitment,
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
    // drops it when it joins (the advertisement comes with the join), and nobody else has to
    // abort.
    let mut l = lab("server_drops_bad_signature", 8, 7, 5);
    let mut t = on_client(|from, m| match m {
        ClientMessage::Join(mut s) if from == ClientId(3) => {
            s.signature[0] ^= 1;
            Some(ClientMessage::Join(s))
        }
        m => Some(m),
    });
    l.run(&mut t).unwrap();
    completed(&l);
    assert!(matches!(
        dropped(&l, ClientId(3)),
        Some((
            Stage::Join,
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

// ---------------------------------------------------------------------------------------
// 4. Survivor lists: split, padded, asked twice; forged and replayed signatures.

/// Runs an honest lab until the server hands out the survivor list, and withholds it; returns
/// the survivors.
fn up_to_survivor_list(test: &str, n: usize, k: usize, t: usize) -> (Lab, Vec<ClientId>) {
    let mut l = lab(test, n, k, t);
    let held = l.up_to("survivor-list").unwrap();
    let mut u3: Vec<ClientId> = held.iter().map(|(to, _)| *to).collect();
    u3.sort_unstable();
    (l, u3)
}

/// The survivor-set signatures in `sent`, by signer, and the pairs each signer audits.
fn signatures(sent: &[(ClientId, ClientMessage)]) -> Vec<(ClientId, [u8; 64])> {
    let mut s: Vec<(ClientId, [u8; 64])> = sent
        .iter()
        .filter_map(|(id, m)| match m {
            ClientMessage::Consistency { signature, .. } => Some((*id, *signature)),
            _ => None,
        })
        .collect();
    s.sort_by_key(|(id, _)| *id);
    s.dedup_by_key(|(id, _)| *id);
    s
}

fn audits(sent: &[(ClientId, ClientMessage)]) -> BTreeMap<ClientId, Vec<u32>> {
    sent.iter()
        .filter_map(|(id, m)| match m {
            ClientMessage::Consistency { audit, .. } => Some((*id, audit.clone())),
            _ => None,
        })
        .collect()
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
    let replica = l.replica();
    let without: Vec<ClientId> = u3.iter().copied().filter(|c| *c != TARGET).collect();
    let (with, without) = (replica.survivors(&u3), replica.survivors(&without));
    let honest: Vec<ClientId> = (0..n as u32)
        .filter(|i| !colluders.contains(i))
        .map(ClientId)
        .collect();
    // Half the honest holders (the target among them) on list A, the rest on list B.
    let half = honest.len().div_ceil(2);
    let (group_a, group_b) = honest.split_at(half);
    let c_ids: Vec<ClientId> = colluders.iter().map(|&i| ClientId(i)).collect();
    for &u in group_a.iter().chain(&c_ids) {
        l.deliver(u, with.list_for(u)).unwrap();
    }
    for &u in group_b {
        l.deliver(u, without.list_for(u)).unwrap();
    }
    let mut twins = Vec::new();
    let mut b_sent = Vec::new();
    for &c in &c_ids {
        let upto = l.received(c).len() - 1;
        let tw = l.twin(c, upto).unwrap();
        for m in l.twin_deliver(tw, without.list_for(c)).unwrap() {
            b_sent.push((c, m));
        }
        twins.push((c, tw));
    }
    let a_sent: Vec<(ClientId, ClientMessage)> = l.flush().unwrap();
    let sigs_a: Vec<_> = signatures(&a_sent)
        .into_iter()
        .filter(|(s, _)| group_a.contains(s) || c_ids.contains(s))
        .collect();
    let mut b_all = b_sent;
    b_all.extend(a_sent.iter().filter(|(s, _)| group_b.contains(s)).cloned());
    let sigs_b = signatures(&b_all);
    let (audit_a, audit_b) = (audits(&a_sent), audits(&b_all));
    let asked =
        |a: &BTreeMap<ClientId, Vec<u32>>, u: ClientId| a.get(&u).cloned().unwrap_or_default();
    for &u in group_a.iter().chain(&c_ids) {
        l.deliver(u, with.unmask_for(u, &sigs_a, &asked(&audit_a, u)))
            .unwrap();
    }
    for &u in group_b {
        l.deliver(u, without.unmask_for(u, &sigs_b, &asked(&audit_b, u)))
            .unwrap();
    }
    for (c, tw) in twins {
        l.twin_deliver(tw, without.unmask_for(c, &sigs_b, &asked(&audit_b, c)))
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
    // A set that names a client excluded before masking (a cheating dealer): everyone its
    // neighbour refuses, because it did not mask with it.
    let cfg = lab_config("padded_survivor_list", 10, 9, 6);
    let dealers = BTreeMap::from([(ClientId(9), DealerFault::BadShares(vec![ClientId(1)]))]);
    let mut l = Lab::with_dealers(cfg, dealers).unwrap();
    let held = l.up_to("survivor-list").unwrap();
    let mut padded: Vec<ClientId> = held.iter().map(|(to, _)| *to).collect();
    padded.push(ClientId(9));
    let replica = l.replica();
    let set = replica.survivors(&padded);
    for (to, _) in held {
        l.deliver(to, set.list_for(to)).unwrap();
    }
    l.run(&mut Honest).unwrap();
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

    // A set that leaves the recipient out, one with a position outside the ring, and one
    // whose opening hides a member (a leaf skipped).
    let (mut l, u3) = up_to_survivor_list("foreign_survivor_list", 8, 7, 5);
    let replica = l.replica();
    let without_me: Vec<ClientId> = u3.iter().copied().filter(|c| c.0 != 2).collect();
    l.deliver(
        ClientId(2),
        replica.survivors(&without_me).list_for(ClientId(2)),
    )
    .unwrap();
    let stranger = replica.survivors_at((0..7).chain([77]).collect());
    l.deliver(ClientId(3), stranger.list_for(ClientId(3)))
        .unwrap();
    let honest = replica.survivors(&u3);
    let ServerMessage::SurvivorList {
        survivors,
        mut opening,
    } = honest.list_for(ClientId(4))
    else {
        unreachable!()
    };
    opening.leaves.retain(|(i, _)| *i != 3);
    l.deliver(
        ClientId(4),
        ServerMessage::SurvivorList { survivors, opening },
    )
    .unwrap();
    assert!(matches!(
        aborted(&l, ClientId(2)),
        ProtocolError::PeerMisbehaved(PeerMisbehaved::SurvivorListOmitsSelf)
    ));
    assert!(
        matches!(
            aborted(&l, ClientId(3)),
            ProtocolError::PeerMisbehaved(PeerMisbehaved::SetOutOfRange { value: 77, .. })
        ),
        "{:?}",
        aborted(&l, ClientId(3))
    );
    assert!(
        matches!(
            aborted(&l, ClientId(4)),
            ProtocolError::PeerMisbehaved(PeerMisbehaved::BadProof {
                what: "survivor set",
                ..
            })
        ),
        "{:?}",
        aborted(&l, ClientId(4))
    );
    for i in [2, 3, 4] {
        assert!(!l.has_sent(ClientId(i), "consistency"));
    }
}

#[test]
fn a_second_unmask_request_gets_nothing() {
    let mut l = lab("second_unmask_request", 9, 8, 6);
    // Withhold the completion notice, then ask again with another survivor set.
    let mut request = None;
    let mut t = on_server(|to, m, out: &mut Vec<_>| match m {
        ServerMessage::Completed { .. } => {}
        ServerMessage::UnmaskRequest(u) => {
            request.get_or_insert(u.clone());
            out.push((to, ServerMessage::UnmaskRequest(u)))
        }
        m => out.push((to, m)),
    });
    l.run(&mut t).unwrap();
    completed(&l);
    let request = request.unwrap();
    let replica = l.replica();
    let all: Vec<ClientId> = (0..9).map(ClientId).collect();
    let without: Vec<ClientId> = all.iter().copied().filter(|c| *c != TARGET).collect();
    let other = replica.survivors(&without).commitment();
    for i in 1..9 {
        l.deliver(
            ClientId(i),
            ServerMessage::UnmaskRequest(UnmaskRequest {
                survivors: other,
                ..request.clone()
            }),
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
    // Another round's signatures, for the replay (the lab's cohort indices are its ids).
    let replayed = {
        let mut o = lab("survivor_signature_replay_source", 8, 7, 5);
        o.run(&mut Honest).unwrap();
        signatures(o.sent())
    };
    type Signatures = Vec<(u32, [u8; 64])>;
    let forge = |test: &str, change: &dyn Fn(&mut Signatures)| -> ProtocolError {
        let mut l = lab(test, 8, 7, 5);
        let mut t = on_server(|to, m, out: &mut Vec<_>| match m {
            ServerMessage::UnmaskRequest(mut u) if to == ClientId(1) => {
                change(&mut u.signatures);
                out.push((to, ServerMessage::UnmaskRequest(u)))
            }
            m => out.push((to, m)),
        });
        l.run(&mut t).unwrap();
        assert!(!l.has_sent(ClientId(1), "unmask-shares"));
        aborted(&l, ClientId(1))
    };
    // One signer's signature presented as another's (the lab's cohort indices are its ids).
    let victim = std::cell::Cell::new(0);
    let e = forge("survivor_signature_other_client", &|s| {
        s[0].1 = s[1].1;
        victim.set(s[0].0);
    });
    assert!(
        matches!(&e, ProtocolError::PeerMisbehaved(PeerMisbehaved::BadSurvivorSignatures { ids }) if ids == &[ClientId(victim.get())]),
        "{e:?}"
    );
    // A signer's signature from another round.
    let e = forge("survivor_signature_replayed", &|s| {
        let signer = s[0].0;
        s[0].1 = replayed.iter().find(|(id, _)| id.0 == signer).unwrap().1;
    });
    assert!(
        matches!(
            &e,
            ProtocolError::PeerMisbehaved(PeerMisbehaved::BadSurvivorSignatures { .. })
        ),
        "{e:?}"
    );
    // A signature by someone outside the cohort (whose entry the server cannot open), and an
    // unsorted list.
    let e = forge("survivor_signature_stranger", &|s| {
        if let Some(last) = s.last_mut() {
            last.0 = 40;
        }
    });
    assert!(
        matches!(
            &e,
            ProtocolError::PeerMisbehaved(PeerMisbehaved::EntryMissing {
                what: "signer entry",
                index: 40
            })
        ),
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
        ClientMessage::Consistency {
            mut signature,
            audit,
        } if from == ClientId(4) => {
            signature[5] ^= 0x40;
            Some(ClientMessage::Consistency { signature, audit })
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

/// Delivers each client the key list `roster` opens for it (answering its audit), and returns
/// why each aborted (checking that it dealt nothing), `None` for those that went on.
fn deliver_key_lists(
    l: &mut Lab,
    forged: &Forgery,
    roster: &secagg_host::commit::Roster,
    n: u32,
) -> Vec<Option<ProtocolError>> {
    send_key_lists(l, roster, n, |i| {
        forged.cohort().index_of(ClientId(i)).unwrap()
    });
    (0..n)
        .map(|i| match l.status(ClientId(i)) {
            Some(ClientStatus::Aborted(e)) => {
                assert!(!l.has_sent(ClientId(i), "share-keys"), "client {i} dealt");
                Some(e)
            }
            _ => None,
        })
        .collect()
}

/// Delivers each of clients 0..n the key list `roster` opens for it at cohort index
/// `index(i)` (answering its audit), and runs the lab until nothing moves.
fn send_key_lists(
    l: &mut Lab,
    roster: &secagg_host::commit::Roster,
    n: u32,
    index: impl Fn(u32) -> u32,
) {
    let reveals = l.reveals();
    for i in 0..n {
        let audit = reveals[&ClientId(i)].audit.clone();
        l.deliver(
            ClientId(i),
            ServerMessage::KeyList(roster.key_list(index(i), &audit)),
        )
        .unwrap();
    }
    l.flush().unwrap();
}

/// Every client aborted (and dealt nothing).
fn all_aborted(outcomes: Vec<Option<ProtocolError>>) -> Vec<ProtocolError> {
    outcomes
        .into_iter()
        .enumerate()
        .map(|(i, e)| e.unwrap_or_else(|| panic!("client {i} went on")))
        .collect()
}

#[test]
fn the_graph_cannot_be_ground_after_keys() {
    // Colluding clients 5 and 6 hand the server their identity keys. Their round keys went
    // into the cohort with everyone's when they joined, before any nonce was revealed; once the
    // nonces are in, the only ways left to move the graph are to change what the cohort
    // committed to, to change a committee member's nonce, or to leave committee members out —
    // and no client accepts any of them.
    let n = 30u32;
    let mut l = lab("graph_grinding", n as usize, 6, 5);
    l.up_to("key-list").unwrap();
    let replica = l.replica();
    let honest = replica.forgery();
    let target = honest.cohort().index_of(TARGET).unwrap();
    let honest_graph = replica.roster().view().ring.neighbors(target);
    let reveals = l.reveals();
    let round = RoundDigest::of(&l.config().round);
    // Fresh round keys for the colluders after the nonces: another cohort, whose graph would
    // differ — under a root no client holds.
    let mut rng = ChaCha20Rng::seed_from_u64(0x96);
    let mut moved = 0;
    let mut last = None;
    for _ in 0..16 {
        let mut adverts = l.advertisements();
        for sybil in [5u32, 6] {
            let key = l.identity_key(ClientId(sybil));
            let e = adverts.get_mut(&ClientId(sybil)).unwrap();
            e.keys = ClientSecrets::generate(&mut rng).public_keys();
            let m = advertisement_message(&round, ClientId(sybil), &e.keys, &e.commitment);
            e.signature = key.sign(ADVERTISE_DOMAIN, &m);
        }
        let forged = Forgery::new(&l.config().round, adverts);
        let roster = forged.roster(&reveals);
        if roster.view().ring.neighbors(target) != honest_graph {
            moved += 1;
        }
        last = Some((forged, roster));
    }
    assert!(
        moved > 0,
        "16 cohorts, one graph: the keys would not matter"
    );
    let (forged, roster) = last.unwrap();
    for e in all_aborted(deliver_key_lists(&mut l, &forged, &roster, n)) {
        assert!(bad_proof(&e, "cohort entries"), "{e:?}");
    }

    // A committee member's nonce changed (every member of a cohort of 30 is on the committee):
    // the graph moves, and every client refuses the nonce.
    let mut l = lab("graph_grinding_nonce", n as usize, 6, 5);
    l.up_to("key-list").unwrap();
    let replica = l.replica();
    let cohort = std::sync::Arc::new(replica.forgery().cohort().clone());
    let mut reveals: Vec<(u32, [u8; 32])> = replica.roster().reveals().to_vec();
    reveals[5].1[0] ^= 1;
    let tried =
        secagg_host::commit::Roster::with_reveals(&round_of(&l), cohort.clone(), reveals, 0..n, 6)
            .unwrap();
    assert_ne!(
        tried.view().ring.neighbors(target),
        replica.roster().view().ring.neighbors(target)
    );
    for e in all_aborted(deliver_key_lists(&mut l, replica.forgery(), &tried, n)) {
        assert!(
            matches!(
                &e,
                ProtocolError::PeerMisbehaved(PeerMisbehaved::NonceMismatch { id }) if *id == ClientId(5)
            ),
            "{e:?}"
        );
    }

    // A committee member left out of the seed but kept in the round: it, and its neighbours,
    // refuse; leaving out so many that fewer than the quorum remain: everyone refuses.
    let mut l = lab("graph_grinding_withheld", n as usize, 6, 5);
    l.up_to("key-list").unwrap();
    let replica = l.replica();
    let cohort = std::sync::Arc::new(replica.forgery().cohort().clone());
    let all: Vec<(u32, [u8; 32])> = replica.roster().reveals().to_vec();
    let mut fewer = all.clone();
    fewer.remove(7);
    let tried =
        secagg_host::commit::Roster::with_reveals(&round_of(&l), cohort.clone(), fewer, 0..n, 6)
            .unwrap();
    let seven = ClientId(7);
    let near: Vec<u32> = std::iter::once(7)
        .chain(tried.view().ring.neighbors(7))
        .collect();
    let outcomes = deliver_key_lists(&mut l, replica.forgery(), &tried, n);
    for i in near {
        assert!(
            matches!(
                &outcomes[i as usize],
                Some(ProtocolError::PeerMisbehaved(PeerMisbehaved::UnrevealedCommitteeMember { id })) if *id == seven
            ),
            "client {i}: {:?}",
            outcomes[i as usize]
        );
    }
    let mut l = lab("graph_grinding_no_quorum", n as usize, 6, 5);
    l.up_to("key-list").unwrap();
    let replica = l.replica();
    let cohort = std::sync::Arc::new(replica.forgery().cohort().clone());
    // (These clients budget for no colluders, so one revealed committee nonce is a quorum;
    // the server reveals none.)
    let quorum = l
        .config()
        .policy
        .committee_quorum(n as usize, l.config().policy.colluders)
        .unwrap();
    assert_eq!(quorum, 1);
    let tried =
        secagg_host::commit::Roster::with_reveals(&round_of(&l), cohort, Vec::new(), 0..n, 6)
            .unwrap();
    for e in all_aborted(deliver_key_lists(&mut l, replica.forgery(), &tried, n)) {
        assert!(
            matches!(e, ProtocolError::TooFewReveals { have: 0, need: 1 }),
            "{e:?}"
        );
    }
}

fn round_of(l: &Lab) -> RoundDigest {
    RoundDigest::of(&l.config().round)
}

// ---------------------------------------------------------------------------------------
// 5b. Committed lists: a proof that lies, an entry withheld, a round padded, a seat twice.

/// The target's key list as the honest server built it (withheld), the lab, and its replica.
fn up_to_target_key_list(test: &str, n: usize, k: usize, t: usize) -> (Lab, KeyList) {
    let mut l = lab(test, n, k, t);
    let lists = l.up_to("key-list").unwrap();
    let list = lists
        .into_iter()
        .find_map(|(to, m)| match m {
            ServerMessage::KeyList(k) if to == TARGET => Some(k),
            _ => None,
        })
        .unwrap();
    (l, list)
}

/// A twin of the target just before its key list gets `list`: what it sent, and where it
/// stands after.
fn target_twin_given(l: &mut Lab, list: KeyList) -> (Vec<ClientMessage>, ClientStatus) {
    let upto = l.received(TARGET).len();
    let tw = l.twin(TARGET, upto).unwrap();
    let sent = l.twin_deliver(tw, ServerMessage::KeyList(list)).unwrap();
    (sent, l.twin_status(tw).unwrap())
}

#[test]
fn a_lying_proof_or_a_withheld_entry_stops_the_client_before_it_deals() {
    let (mut l, honest) = up_to_target_key_list("lying_proofs", 100, 4, 3);
    // The honest list: the target deals.
    let (sent, _) = target_twin_given(&mut l, honest.clone());
    assert!(sent.iter().any(|m| m.name() == "share-keys"));
    let refused = |l: &mut Lab, list: KeyList| -> ProtocolError {
        let (sent, status) = target_twin_given(l, list);
        assert!(sent.is_empty(), "the target sent {sent:?}");
        match status {
            ClientStatus::Aborted(e) => e,
            other => panic!("the target went on: {other:?}"),
        }
    };
    // A bent digest, a bent split, a proof one digest short.
    for bend in 0..3 {
        let mut list = honest.clone();
        match bend {
            0 => list.proof.digests[0][0] ^= 1,
            1 => list.proof.splits[0] ^= 1,
            _ => {
                list.proof.digests.pop();
            }
        }
        let e = refused(&mut l, list);
        assert!(bad_proof(&e, "cohort entries"), "{e:?}");
    }
    // A neighbour's entry left out, with a valid proof of what remains.
    let replica = l.replica();
    let cohort = replica.forgery().cohort();
    let me = cohort.index_of(TARGET).unwrap();
    let left_out = replica.roster().view().ring.neighbors(me)[0];
    let keep = |full: bool| -> std::collections::BTreeSet<u32> {
        honest
            .entries
            .iter()
            .filter(|e| e.index != left_out && e.opening.full().is_some() == full)
            .map(|e| e.index)
            .collect()
    };
    let (entries, proof) = cohort.open(&keep(true), &keep(false));
    let e = refused(
        &mut l,
        KeyList {
            entries,
            proof,
            ..honest.clone()
        },
    );
    assert!(
        matches!(
            &e,
            ProtocolError::PeerMisbehaved(PeerMisbehaved::EntryMissing { index, .. }) if *index == left_out
        ),
        "{e:?}"
    );
    // The present set opened without the target's own leaf.
    let mut list = honest.clone();
    let my_position = replica.roster().view().ring.position(me).unwrap() as u32;
    list.presence.leaves.retain(|(_, v)| *v != my_position);
    let e = refused(&mut l, list);
    assert!(bad_proof(&e, "present set"), "{e:?}");
}

/// The lab's clients, and whether each opened the cohort entry at `seat` by identity or in full
/// in the key list it was given.
fn opened_by(l: &Lab, n: u32, seat: u32) -> Vec<(ClientId, bool)> {
    (0..n)
        .map(ClientId)
        .map(|id| {
            let opened = l.received(id).iter().any(|e| match &e.message {
                ServerMessage::KeyList(k) => k.entries.iter().any(|e| e.index == seat),
                _ => false,
            });
            (id, opened)
        })
        .collect()
}

#[test]
fn a_padded_cohort_is_caught_by_every_client_that_opens_the_padded_seat() {
    // A round of 100 (its committee of 64 is not the whole cohort), k = 4. The server leaves
    // client 99 out and seats in its place an identity the CA never enrolled, where the
    // committee does not look, and reveals a nonce for it. Its neighbours open its entry in
    // full, and any client whose audit draws it opens it by identity: each of them refuses it
    // before dealing; the others cannot see it.
    let n = 99u32;
    let mut l = lab("padded_cohort", 100, 4, 3);
    l.up_to("cohort").unwrap();
    let round = RoundDigest::of(&l.config().round);
    let (secrets, key) = attacker_keys();
    let keys = secrets.public_keys();
    let (forged, pad, nonce, seat) = (5000u32..)
        .find_map(|id| {
            let pad = ClientId(id);
            let nonce = [id as u8; 32];
            let commitment = nonce_commitment(&round, pad, &nonce);
            let m = advertisement_message(&round, pad, &keys, &commitment);
            let mut adverts = l.advertisements();
            adverts.remove(&ClientId(99));
            adverts.insert(
                pad,
                SignedKeys {
                    keys,
                    commitment,
                    credential: Credential::self_asserted(&key.public()),
                    signature: key.sign(ADVERTISE_DOMAIN, &m),
                    ticket: None,
                },
            );
            let forged = Forgery::new(&l.config().round, adverts);
            let seat = forged.cohort().index_of(pad).unwrap();
            (!committee(&round, &forged.cohort().commitment()).contains(&seat))
                .then_some((forged, pad, nonce, seat))
        })
        .unwrap();
    for i in 0..n {
        l.deliver(ClientId(i), forged.welcome(ClientId(i)).unwrap())
            .unwrap();
    }
    l.flush().unwrap();
    let mut reveals = l.reveals();
    reveals.insert(
        pad,
        secagg_host::sim::lab::Reveal {
            nonce,
            audit: Vec::new(),
        },
    );
    let roster = forged.roster(&reveals);
    for i in 0..n {
        let list = forged.key_list(&roster, &reveals, ClientId(i)).unwrap();
        l.deliver(ClientId(i), list).unwrap();
    }
    l.flush().unwrap();
    let mut caught = 0;
    for (id, opened) in opened_by(&l, n, seat) {
        if opened {
            caught += 1;
            assert!(
                matches!(
                    aborted(&l, id),
                    ProtocolError::PeerMisbehaved(PeerMisbehaved::NoCertificate { id }) if id == pad
                ),
                "client {id}: {:?}",
                l.status(id)
            );
            assert!(!l.has_sent(id, "share-keys"));
        } else {
            assert!(
                l.has_sent(id, "share-keys"),
                "client {id}: {:?}",
                l.status(id)
            );
        }
    }
    // Its four neighbours at least (and, with 16 leaves drawn per client of 101, about 16
    // auditors more).
    assert!(caught >= 4, "{caught}");
}

#[test]
fn a_second_seat_for_one_identity_cannot_be_opened_with_the_first() {
    // The server leaves client 99 out and seats colluding client 50 twice: its advertisement
    // again, at the end of the cohort (where a sorted list looks sorted), with its nonce
    // revealed for both seats. The cohort's tree is keyed by id: one of the two seats breaks a
    // split above it, so every client that opens that seat refuses the list, and no client can
    // be shown both.
    let n = 99u32;
    let mut l = lab("second_seat", 100, 4, 3);
    l.up_to("cohort").unwrap();
    let mut adverts = l.advertisements();
    adverts.remove(&ClientId(99));
    let twin = ClientId(50);
    let mut entries: Vec<(ClientId, SignedKeys)> = adverts.clone().into_iter().collect();
    entries.push((twin, adverts[&twin].clone()));
    let cohort = std::sync::Arc::new(secagg_host::commit::Cohort::in_order(entries).unwrap());
    let (first, second) = (50u32, n);
    for i in 0..n {
        l.deliver(ClientId(i), cohort.welcome(i).unwrap()).unwrap();
    }
    l.flush().unwrap();
    let reveals = l.reveals();
    let mut nonces: BTreeMap<u32, [u8; 32]> =
        reveals.iter().map(|(id, r)| (id.0, r.nonce)).collect();
    nonces.insert(second, reveals[&twin].nonce);
    let round = round_of(&l);
    let roster = secagg_host::commit::Roster::new(&round, cohort.clone(), &nonces, 4).unwrap();
    send_key_lists(&mut l, &roster, n, |i| i);
    // Which seat breaks its split: it cannot be opened alone.
    let alone = |seat: u32| {
        let (entries, proof) = cohort.open(&std::collections::BTreeSet::new(), &[seat].into());
        secagg_host::view::check_entries(&cohort.commitment(), &entries, &proof).is_err()
    };
    let bad = match (alone(first), alone(second)) {
        (true, _) => first,
        (false, true) => second,
        (false, false) => panic!("both seats open alone"),
    };
    let mut caught = 0;
    for (id, opened) in opened_by(&l, n, bad) {
        if opened {
            caught += 1;
            assert!(
                bad_proof(&aborted(&l, id), "cohort entries"),
                "client {id}: {:?}",
                l.status(id)
            );
            assert!(!l.has_sent(id, "share-keys"));
        }
        let both = l.received(id).iter().any(|e| match &e.message {
            ServerMessage::KeyList(k) => {
                k.entries.iter().any(|e| e.index == first)
                    && k.entries.iter().any(|e| e.index == second)
            }
            _ => false,
        });
        assert!(!both || l.status(id) != Some(ClientStatus::Running(Stage::ShareCheck)));
    }
    assert!(caught >= 1, "{caught}");
}

#[test]
fn a_padded_survivor_set_is_caught_by_the_clients_that_open_the_repeated_leaf() {
    // The server repeats one survivor's ring position in the survivor list and leaves another
    // survivor out, so the count still fits the present set: a survivor set that names one
    // client twice. The repeated leaf breaks a split; every client that opens it — around
    // itself, or drawn by its audit — refuses before it reveals anything.
    let n = 100usize;
    let (mut l, u3) = up_to_survivor_list("padded_survivor_set", n, 4, 3);
    let replica = l.replica();
    let ring = &replica.roster().view().ring;
    let cohort = replica.forgery().cohort();
    let mut positions: Vec<u32> = u3
        .iter()
        .map(|id| ring.position(cohort.index_of(*id).unwrap()).unwrap() as u32)
        .collect();
    positions.sort_unstable();
    let left_out = positions.remove(0);
    let at = positions.len() / 2;
    positions.insert(at, positions[at]);
    let padded = replica.survivors_in_order(positions);
    let bad = (0..n as u32).find(|i| !padded.opens(*i)).unwrap();
    for id in &u3 {
        l.deliver(*id, padded.list_for(*id)).unwrap();
    }
    let sent = l.flush().unwrap();
    let sigs = signatures(&sent);
    let asked = audits(&sent);
    for (id, _) in &sigs {
        let audit = asked.get(id).cloned().unwrap_or_default();
        l.deliver(*id, padded.unmask_for(*id, &sigs, &audit))
            .unwrap();
    }
    l.flush().unwrap();
    let shows_bad = |id: ClientId| {
        l.received(id).iter().any(|e| match &e.message {
            ServerMessage::SurvivorList { opening, .. } => {
                opening.leaves.iter().any(|(i, _)| *i == bad)
            }
            ServerMessage::UnmaskRequest(u) => u.audit.leaves.iter().any(|(i, _)| *i == bad),
            _ => false,
        })
    };
    let mut audited = 0;
    for id in &u3 {
        if shows_bad(*id) {
            assert!(
                bad_proof(&aborted(&l, *id), "survivor set"),
                "client {id}: {:?}",
                l.status(*id)
            );
            assert!(!l.has_sent(*id, "unmask-shares"));
            if asked.get(id).is_some_and(|a| a.contains(&bad)) {
                audited += 1;
            }
        }
    }
    // With 16 of 100 leaves drawn by each of ~90 signers, some audit draws it (but with
    // probability (84/100)^90 < 2^-22).
    assert!(
        audited >= 1,
        "no audit drew leaf {bad} (left out {left_out})"
    );
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
                    ServerMessage::ShareBundles { bundles, .. } => {
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
        // Client 2 signed the honest set; the request names another (one fewer member).
        ServerMessage::UnmaskRequest(mut u) if to == ClientId(2) => {
            u.survivors.len -= 1;
            u.survivors.root[0] ^= 1;
            out.push((to, ServerMessage::UnmaskRequest(u)))
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
            audit,
        } if from == ClientId(6) => {
            for b in &mut bundles {
                b.ciphertext[3] ^= 1;
            }
            Some(ClientMessage::ShareKeys {
                self_key,
                own_point,
                bundles,
                audit,
            })
        }
        // Client 7 breaks only two of its bundles: it stays.
        ClientMessage::ShareKeys {
            self_key,
            own_point,
            mut bundles,
            audit,
        } if from == ClientId(7) => {
            for b in bundles.iter_mut().take(2) {
                b.ciphertext[3] ^= 1;
            }
            Some(ClientMessage::ShareKeys {
                self_key,
                own_point,
                bundles,
                audit,
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
        (
            11,
            ClientMessage::Consistency {
                mut signature,
                audit,
            },
        ) => {
            signature[0] ^= 1;
            Some(ClientMessage::Consistency { signature, audit })
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
        (1, ClientMessage::ShareCheck(_)) => Some(ClientMessage::Consistency {
            signature: [0; 64],
            audit: Vec::new(),
        }),
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
fn low_order_keys_are_dropped_when_advertised() {
    let mut l = lab("low_order_keys", 10, 9, 5);
    let mut t = on_client(|from, m| match m {
        // A mask key of order 4; one with a part of order 8; one non-canonically encoded; a
        // small-order encryption key. Each is advertised with the join.
        ClientMessage::Join(mut s) if from == ClientId(2) => {
            s.keys.masking = EIGHT_TORSION[2].compress().to_bytes();
            Some(ClientMessage::Join(s))
        }
        ClientMessage::Join(mut s) if from == ClientId(4) => {
            let p = CompressedEdwardsY(s.keys.masking).decompress().unwrap();
            s.keys.masking = (p + EIGHT_TORSION[5]).compress().to_bytes();
            Some(ClientMessage::Join(s))
        }
        ClientMessage::Join(mut s) if from == ClientId(5) => {
            s.keys.masking = NON_CANONICAL_POINT;
            Some(ClientMessage::Join(s))
        }
        ClientMessage::Join(mut s) if from == ClientId(3) => {
            s.keys.encryption = [0; 32];
            Some(ClientMessage::Join(s))
        }
        m => Some(m),
    });
    l.run(&mut t).unwrap();
    completed(&l);
    assert!(matches!(
        dropped(&l, ClientId(3)),
        Some((
            Stage::Join,
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
                Stage::Join,
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
        (1, "reveal"),
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
        secagg_host::codec::pack(&values[at..end], bits, &mut bytes);
        out.push(ClientMessage::MaskedChunk(
            secagg_host::messages::PackedRun {
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
