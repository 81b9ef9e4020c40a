//! What the server commits to and forwards before anyone masks: a graph it cannot grind
//! after the keys, key lists whose proofs cannot lie or withhold an entry, a cohort it cannot
//! pad or seat twice, and share bundles it cannot withhold to strip the target's pairwise
//! masks.

use std::collections::BTreeMap;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use secagg_host::crypto::{
    ADVERTISE_DOMAIN, ClientSecrets, RoundDigest, advertisement_message, nonce_commitment,
};
use secagg_host::messages::{ClientMessage, Credential, KeyList, ServerMessage, SignedKeys};
use secagg_host::sim::lab::{Forgery, Lab, Rebuild, on_server};
use secagg_host::view::committee;
use secagg_host::{ClientId, ClientStatus, PeerMisbehaved, ProtocolError, Stage};

use crate::{TARGET, aborted, attacker_keys, bad_proof, completed, lab};

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
