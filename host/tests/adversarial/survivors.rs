//! Survivor lists: split (within and beyond the bound), padded, foreign or with a repeated
//! leaf; unmask requests asked twice or for another list; forged and replayed survivor
//! signatures.

use std::collections::BTreeMap;

use secagg_host::messages::{ClientMessage, ServerMessage, UnmaskRequest};
use secagg_host::sim::lab::{DealerFault, Honest, Lab, Rebuild, on_client, on_server};
use secagg_host::{ClientId, DropReason, PeerMisbehaved, ProtocolError, Stage};

use crate::{TARGET, aborted, bad_proof, completed, dropped, lab, lab_config};

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
pub(crate) fn split_attack_at(
    test: &str,
    (n, k, t): (usize, usize, usize),
    colluders: &[u32],
) -> Lab {
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
