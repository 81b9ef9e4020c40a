//! The everyday misbehaviour of clients the server shrugs off (several malicious clients at
//! once, wrong-round messages, silence at every stage), and streamed masked inputs: pieces go
//! into the sum as they arrive, so a sender that stops half-way must end the round (its
//! partial input cannot be taken out), while a sender whose first piece is bad costs only
//! itself.

use std::collections::BTreeMap;

use secagg_host::messages::{ClientMessage, DealerReport, ReportKind};
use secagg_host::sim::lab::{DealerFault, Honest, Lab, on_client};
use secagg_host::{AbortReason, ClientId, DropReason, ProtocolError, ServerStatus, Stage};

use crate::{TARGET, completed, dropped, lab, lab_config};

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
