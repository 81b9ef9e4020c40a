//! Malicious dealers and reporters cannot stop the round: a dealer whose shares do not match,
//! whose dealing has degree t, torsion or non-canonical points, or unreadable bundles is
//! excluded, and a holder that reveals bad shares, reports falsely or accuses falsely costs
//! only itself.

use std::collections::BTreeMap;

use secagg_host::messages::{ClientMessage, DealerReport, ReportKind, ServerMessage};
use secagg_host::server::ServerEvent;
use secagg_host::sim::lab::{DealerFault, Honest, Lab, on_client};
use secagg_host::{
    ClientId, ClientStatus, CryptoError, DropReason, PointError, ProtocolError, Stage,
};

use crate::{completed, dropped, lab, lab_config};

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
