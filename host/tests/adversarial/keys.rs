//! Key substitution and forged or replayed advertisements: the target aborts before any share
//! leaves it; an honest server drops keys and identities it cannot accept when they join.

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::CompressedEdwardsY;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use secagg_host::crypto::{ADVERTISE_DOMAIN, PublicKeys, RoundDigest, advertisement_message};
use secagg_host::identity::CaKey;
use secagg_host::messages::{ClientMessage, Credential, SignedKeys};
use secagg_host::sim::SimConfig;
use secagg_host::sim::lab::{Forgery, Honest, Lab, NON_CANONICAL_POINT, Rebuild, on_client};
use secagg_host::{
    ClientId, CryptoError, DropReason, PeerMisbehaved, PointError, ProtocolError, RoundConfig,
    Stage,
};

use crate::{TARGET, aborted, attacker_keys, completed, dropped, lab, lab_config};

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

#[test]
fn low_order_keys_are_dropped_when_advertised() {
    let mut l = lab("low_order_keys", 10, 9, 5);
    // The members are colluders: each signs its bad key with its own identity key, so the
    // advertisement verifies and only the server's point checks stand in the way.
    let round = RoundDigest::of(&l.config().round);
    let signers: Vec<_> = (2..=5u32)
        .map(|i| (ClientId(i), l.identity_key(ClientId(i))))
        .collect();
    let resign = move |from: ClientId, mut s: SignedKeys| {
        if let Some((_, key)) = signers.iter().find(|(id, _)| *id == from) {
            let m = advertisement_message(&round, from, &s.keys, &s.commitment);
            s.signature = key.sign(ADVERTISE_DOMAIN, &m);
        }
        Some(ClientMessage::Join(s))
    };
    let mut t = on_client(move |from, m| match m {
        // A mask key of order 4; one with a part of order 8; one non-canonically encoded; a
        // small-order encryption key. Each is advertised with the join.
        ClientMessage::Join(mut s) if from == ClientId(2) => {
            s.keys.masking = EIGHT_TORSION[2].compress().to_bytes();
            resign(from, s)
        }
        ClientMessage::Join(mut s) if from == ClientId(4) => {
            let p = CompressedEdwardsY(s.keys.masking).decompress().unwrap();
            s.keys.masking = (p + EIGHT_TORSION[5]).compress().to_bytes();
            resign(from, s)
        }
        ClientMessage::Join(mut s) if from == ClientId(5) => {
            s.keys.masking = NON_CANONICAL_POINT;
            resign(from, s)
        }
        ClientMessage::Join(mut s) if from == ClientId(3) => {
            s.keys.encryption = [0; 32];
            resign(from, s)
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
