//! The decoders against arbitrary bytes, in CI: nothing a peer sends may panic, and every
//! frame that decodes re-encodes to the same bytes. The same properties are fuzzed with
//! libFuzzer in `host/fuzz` (cargo-fuzz).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use secagg_host::ClientId;
use secagg_host::codec::{self, Limits};
use secagg_host::messages::{
    ClientMessage, Credential, DealerReport, Envelope, ForwardedBundle, IdentityOpening, KeyList,
    ListCommitment, OpenedEntry, Opening, Proof, ReportKind, RevealedShare, SealedBundle,
    ServerMessage, SetOpening, ShareKind, SignedKeys, UnmaskRequest,
};

fn limits() -> Limits {
    Limits {
        max_clients: 64,
        max_neighbors: 12,
        vector_len: 40,
        bits: 19,
    }
}

fn signed_ca() -> secagg_host::identity::CaPublicKey {
    use rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
    secagg_host::identity::CaKey::generate(&mut rng).public()
}

fn signed() -> SignedKeys {
    use rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
    let ca = secagg_host::identity::CaKey::generate(&mut rng);
    let key = secagg_host::identity::IdentityKey::generate(&mut rng);
    SignedKeys {
        keys: secagg_host::crypto::PublicKeys {
            encryption: [1; 32],
            masking: [2; 32],
        },
        commitment: [3; 32],
        credential: Credential::certificate(&ca.issue(ClientId(4), &key.public())),
        signature: [5; 64],
        ticket: Some([6; codec::TICKET_LEN]),
    }
}

/// Every decoder on the same bytes; none may panic.
fn decode_everything(bytes: &[u8]) {
    let l = limits();
    if let Ok(env) = codec::decode_client(bytes, &l) {
        assert_eq!(
            codec::encode_client(&env, l.bits),
            bytes,
            "client message re-encodes"
        );
    }
    if let Ok(env) = codec::decode_server(bytes, &l) {
        assert_eq!(
            codec::encode_server(&env),
            bytes,
            "server message re-encodes"
        );
    }
    if let Ok(h) = codec::decode_hello(bytes) {
        assert_eq!(codec::encode_hello(&h), bytes, "hello re-encodes");
        // What the server does with a hello that decodes: parse its credential and check
        // its signature. Neither may panic.
        if let Some(Ok(cert)) = h.credential.parse_certificate() {
            let _ = cert.verify(&signed_ca());
        }
        if let Ok(key) = h.credential.key() {
            let _ = key.verify(
                codec::HELLO_DOMAIN,
                &h.signed_message(&[1; 32], &[2; 32]),
                &h.signature,
            );
        }
    }
    if let Ok(c) = codec::decode_challenge(bytes) {
        assert_eq!(codec::encode_challenge(&c), bytes, "challenge re-encodes");
    }
    let _ = codec::decode_welcome(bytes);
    let _ = codec::decode_reject(bytes);
    let _ = codec::frame_tag(bytes);
    let mut staging = vec![0u32; l.vector_len];
    for at in [0, 7] {
        // The packed path accepts exactly what the unpacking path accepts, with the same
        // elements.
        let unpacked = codec::decode_chunk_into(bytes, &l, at, &mut staging);
        let packed = codec::decode_chunk_packed(bytes, &l, at);
        assert_eq!(
            unpacked.is_ok(),
            packed.is_ok(),
            "{unpacked:?} vs {packed:?}"
        );
        if let (Ok(p), Ok((q, run))) = (unpacked, packed) {
            assert_eq!(p, q);
            let mut values = vec![0u32; run.count];
            codec::unpack(&run.bytes, l.bits, &mut values).unwrap();
            assert_eq!(values[..], staging[p.offset..p.offset + p.count]);
        }
    }
}

fn samples() -> Vec<Vec<u8>> {
    let l = limits();
    let client = [
        ClientMessage::Join(signed()),
        ClientMessage::Reveal {
            nonce: [1; 32],
            audit: vec![2, 9],
        },
        ClientMessage::ShareKeys {
            self_key: [6; 32],
            own_point: [7; 32],
            bundles: vec![SealedBundle {
                peer: ClientId(4),
                mask_point: [8; 32],
                self_point: [9; 32],
                ciphertext: vec![5; secagg_host::crypto::BUNDLE_LEN],
            }],
            audit: vec![1],
        },
        ClientMessage::ShareCheck(vec![DealerReport {
            dealer: ClientId(2),
            kind: ReportKind::BadShares {
                bundle_key: [4; 32],
            },
        }]),
        ClientMessage::Consistency {
            signature: [7; 64],
            audit: vec![3],
        },
        ClientMessage::MaskedInput((0..40).map(|i| i * 1000 % (1 << 19)).collect()),
        ClientMessage::UnmaskShares(vec![RevealedShare {
            owner: ClientId(3),
            kind: ShareKind::SelfMask,
            value: [9; 32],
        }]),
    ];
    let mut out: Vec<Vec<u8>> = client
        .into_iter()
        .map(|m| {
            codec::encode_client(
                &Envelope {
                    round: 5,
                    message: m,
                },
                l.bits,
            )
        })
        .collect();
    let list = ListCommitment {
        root: [7; 32],
        len: 20,
    };
    let set = SetOpening {
        leaves: vec![(3, 4), (4, 9)],
        proof: Proof {
            digests: vec![[1; 32], [2; 32]],
            splits: vec![4, 5],
        },
    };
    let entries = vec![
        OpenedEntry {
            index: 2,
            id: ClientId(4),
            opening: Opening::Full(signed()),
        },
        OpenedEntry {
            index: 5,
            id: ClientId(7),
            opening: Opening::Identity(IdentityOpening {
                commitment: [3; 32],
                credential: Credential::SelfAsserted([6; 32]),
                ticket: None,
                keys_digest: [8; 32],
            }),
        },
    ];
    for message in [
        ServerMessage::UnmaskRequest(UnmaskRequest {
            survivors: list,
            audit: set.clone(),
            signatures: vec![(1, [3; 64])],
            identities: entries[1..].to_vec(),
            proof: Proof {
                digests: vec![[4; 32]],
                splits: vec![9],
            },
        }),
        ServerMessage::KeyList(KeyList {
            reveals: vec![(2, [5; 32])],
            present: list,
            presence: set.clone(),
            entries,
            proof: Proof {
                digests: vec![[6; 32], [7; 32]],
                splits: vec![3],
            },
        }),
        ServerMessage::Cohort {
            cohort: list,
            position: 3,
            proof: Proof {
                digests: vec![[2; 32]],
                splits: vec![1],
            },
        },
        ServerMessage::ShareBundles {
            bundles: vec![ForwardedBundle {
                sender: ClientId(3),
                self_key: [6; 32],
                mask_point: [8; 32],
                self_point: [9; 32],
                ciphertext: vec![1; secagg_host::crypto::BUNDLE_LEN],
            }],
            audit: set.clone(),
        },
        ServerMessage::SurvivorList {
            survivors: list,
            opening: set,
        },
    ] {
        out.push(codec::encode_server(&Envelope { round: 5, message }));
    }
    out.push(codec::encode_server(&Envelope {
        round: 5,
        message: ServerMessage::Aborted("x".into()),
    }));
    for credential in [signed().credential, Credential::SelfAsserted([6; 32])] {
        out.push(codec::encode_hello(&codec::Hello {
            round: 5,
            client: ClientId(4),
            weighted: false,
            params: 39,
            layout: [3; 32],
            credential,
            signature: [5; 64],
        }));
    }
    out.push(codec::encode_challenge(&codec::Challenge {
        round: 5,
        nonce: [8; 32],
    }));
    out.extend(codec::encode_masked_chunks(5, &[1, 2, 3], l.bits));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(
        which in 0usize..20,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let all = samples();
        let mut bytes = all[which % all.len()].clone();
        for (pos, x) in flips {
            if !bytes.is_empty() {
                let i = pos % bytes.len();
                bytes[i] ^= x;
            }
        }
        let keep = cut % (bytes.len() + 1);
        decode_everything(&bytes[..keep]);
        decode_everything(&bytes);
    }
}
