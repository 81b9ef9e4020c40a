//! What the codec's tests share: one sample of every message, and the wire format pinned
//! frame by frame.

use std::time::Duration;

use secagg_engine::Prg;

use super::*;
use crate::ClientId;
use crate::config::{Quantization, RoundConfig};
use crate::crypto::{BUNDLE_LEN, PublicKeys};
use crate::identity::CERT_LEN;
use crate::messages::{
    ClientMessage, Credential, DealerReport, Envelope, ForwardedBundle, IdentityOpening, KeyList,
    ListCommitment, OpenedEntry, Opening, PackedRun, Proof, ReportKind, RevealedShare,
    SealedBundle, ServerMessage, SetOpening, ShareKind, SignedKeys, UnmaskRequest,
};

pub(crate) fn limits() -> Limits {
    Limits {
        max_clients: 10,
        max_neighbors: 9,
        vector_len: 5,
        bits: 17,
    }
}

pub(crate) fn signed(cert: bool) -> SignedKeys {
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(5);
    let ca = crate::identity::CaKey::generate(&mut rng);
    let key = crate::identity::IdentityKey::generate(&mut rng);
    let credential = if cert {
        Credential::certificate(&ca.issue(ClientId(3), &key.public()))
    } else {
        Credential::self_asserted(&key.public())
    };
    SignedKeys {
        keys: PublicKeys {
            encryption: [1; 32],
            masking: [2; 32],
        },
        commitment: [3; 32],
        credential,
        signature: [4; 64],
        // Both encodings: with a certificate, also a selection ticket.
        ticket: cert.then_some([6; TICKET_LEN]),
    }
}

/// The client messages the round-trip test checks, one of each, with both credentials.
pub(crate) fn client_samples() -> Vec<ClientMessage> {
    vec![
        ClientMessage::Join(signed(true)),
        ClientMessage::Join(signed(false)),
        ClientMessage::Reveal {
            nonce: [1; 32],
            audit: vec![3, 7],
        },
        ClientMessage::ShareKeys {
            self_key: [6; 32],
            own_point: [7; 32],
            bundles: vec![SealedBundle {
                peer: ClientId(4),
                mask_point: [8; 32],
                self_point: [9; 32],
                ciphertext: vec![5; BUNDLE_LEN],
            }],
            audit: vec![2],
        },
        ClientMessage::ShareCheck(vec![
            DealerReport {
                dealer: ClientId(2),
                kind: ReportKind::Unreadable,
            },
            DealerReport {
                dealer: ClientId(5),
                kind: ReportKind::BadShares {
                    bundle_key: [7; 32],
                },
            },
        ]),
        ClientMessage::MaskedInput(vec![0, 1, 0x1_ffff, 7, 9]),
        ClientMessage::Consistency {
            signature: [3; 64],
            audit: vec![0],
        },
        ClientMessage::UnmaskShares(vec![RevealedShare {
            owner: ClientId(3),
            kind: ShareKind::MaskKey,
            value: [9; 32],
        }]),
    ]
}

/// An opened cohort entry in each form: in full (with a certificate and a ticket), by identity
/// (self-asserted, no ticket).
pub(crate) fn opened_samples() -> Vec<OpenedEntry> {
    vec![
        OpenedEntry {
            index: 1,
            id: ClientId(1),
            opening: Opening::Full(signed(true)),
        },
        OpenedEntry {
            index: 3,
            id: ClientId(3),
            opening: Opening::Identity(IdentityOpening {
                commitment: [2; 32],
                credential: signed(false).credential,
                ticket: None,
                keys_digest: [3; 32],
            }),
        },
    ]
}

/// A proof of `n` digests and `n` splits.
pub(crate) fn proof_sample(n: u8) -> Proof {
    Proof {
        digests: (0..n).map(|i| [i + 1; 32]).collect(),
        splits: (0..u32::from(n)).map(|i| 7 * i + 3).collect(),
    }
}

/// A set opening: two leaves and a digest of proof.
pub(crate) fn set_sample(first: u32) -> SetOpening {
    SetOpening {
        leaves: vec![(first, 3), (first + 1, 5)],
        proof: proof_sample(1),
    }
}

/// The server messages the round-trip test checks, one of each, with both credentials and
/// both kinds of opened entry.
pub(crate) fn server_samples() -> Vec<ServerMessage> {
    let list = |root: u8, len: u32| ListCommitment {
        root: [root; 32],
        len,
    };
    vec![
        ServerMessage::Cohort {
            cohort: list(4, 9),
            position: 2,
            proof: proof_sample(2),
        },
        ServerMessage::KeyList(KeyList {
            reveals: vec![(1, [7; 32])],
            present: list(8, 8),
            presence: set_sample(0),
            entries: opened_samples(),
            proof: proof_sample(2),
        }),
        ServerMessage::ShareBundles {
            bundles: vec![ForwardedBundle {
                sender: ClientId(2),
                self_key: [6; 32],
                mask_point: [8; 32],
                self_point: [9; 32],
                ciphertext: vec![1; BUNDLE_LEN],
            }],
            audit: set_sample(2),
        },
        ServerMessage::MaskRequest(vec![ClientId(1), ClientId(5)]),
        ServerMessage::SurvivorList {
            survivors: list(3, 5),
            opening: set_sample(1),
        },
        ServerMessage::UnmaskRequest(UnmaskRequest {
            survivors: list(3, 5),
            audit: set_sample(3),
            signatures: vec![(1, [2; 64])],
            identities: opened_samples()[1..].to_vec(),
            proof: proof_sample(1),
        }),
        ServerMessage::Completed { included: 7 },
        ServerMessage::Aborted("too few clients".into()),
    ]
}

/// A round configuration with every field away from its default.
pub(crate) fn sample_config(selection: Option<crate::selection::Selection>) -> RoundConfig {
    RoundConfig::builder(50, 1234)
        .neighbors(10)
        .threshold(6)
        .min_survivors(20)
        .bits(24)
        .prg(Prg::ChaCha12)
        .round_id(99)
        .quantization(Quantization {
            clip: 0.25,
            levels: 1000,
            max_weight: 7,
        })
        .stage_timeout(Duration::from_millis(1500))
        .context([0xc7; 32])
        .selection(selection)
        .build()
        .unwrap()
}

/// A DP round's configuration: [`sample_config`]'s shape with a DP setting.
pub(crate) fn sample_dp_config() -> RoundConfig {
    RoundConfig::builder(50, 1234)
        .neighbors(10)
        .threshold(6)
        .min_survivors(20)
        .bits(24)
        .round_id(99)
        .quantization(Quantization {
            clip: 1.0,
            levels: 2,
            max_weight: 3,
        })
        .context([0xc7; 32])
        .dp(Some(crate::dp::DpConfig {
            clip: 0.5,
            scale: 4096.0,
            noise: 12_345.5,
            honest: 14,
            beta: 0.25,
        }))
        .build()
        .unwrap()
}

/// A hello with `credential`.
pub(crate) fn sample_hello(credential: Credential) -> Hello {
    Hello {
        round: 0x0102_0304_0506_0708,
        client: ClientId(77),
        weighted: true,
        params: 123_456,
        layout: [9; 32],
        credential,
        signature: [3; 64],
    }
}

/// One frame of every kind the codec writes: the round-trip samples and the encodings
/// they leave out (a streamed piece, a self-mask share, a non-ASCII reason, both hellos,
/// the three welcomes, a vector in chunks).
fn every_frame() -> Vec<(String, Vec<u8>)> {
    let l = limits();
    let client = |message: ClientMessage| {
        let name = message.name().to_string();
        (
            name,
            encode_client(&Envelope { round: 42, message }, l.bits),
        )
    };
    let server = |message: ServerMessage| {
        let name = message.name().to_string();
        (name, encode_server(&Envelope { round: 7, message }))
    };
    let mut piece = Vec::new();
    pack(&[5u32, 6, 7], l.bits, &mut piece);
    let mut frames: Vec<(String, Vec<u8>)> = client_samples().into_iter().map(client).collect();
    frames.push(client(ClientMessage::MaskedChunk(PackedRun {
        offset: 2,
        count: 3,
        bytes: piece,
    })));
    frames.push(client(ClientMessage::UnmaskShares(vec![RevealedShare {
        owner: ClientId(4),
        kind: ShareKind::SelfMask,
        value: [8; 32],
    }])));
    frames.extend(server_samples().into_iter().map(server));
    frames.push(server(ServerMessage::Aborted("too few clients: é".into())));
    for credential in [
        Credential::Certificate([0x5a; CERT_LEN]),
        Credential::SelfAsserted([0xa5; 32]),
    ] {
        frames.push(("hello".into(), encode_hello(&sample_hello(credential))));
    }
    let challenge = Challenge {
        round: 5,
        nonce: [7; 32],
    };
    frames.push(("challenge".into(), encode_challenge(&challenge)));
    let selection = crate::selection::Selection::from_threshold(11, 1 << 62).unwrap();
    for selection in [None, Some(selection)] {
        frames.push(("welcome".into(), encode_welcome(&sample_config(selection))));
    }
    frames.push(("welcome".into(), encode_welcome(&sample_dp_config())));
    frames.push(("reject".into(), encode_reject("duplicate id")));
    let values: Vec<u32> = (0..CHUNK_ELEMS as u32 + 5)
        .map(|i| i.wrapping_mul(7919) & 0x1fff)
        .collect();
    for chunk in encode_masked_chunks(3, &values, 13) {
        frames.push(("masked chunk".into(), chunk));
    }
    frames
}

/// The wire format, pinned: SHA-256 of each frame [`every_frame`] writes (wire version 5: the
/// committed lists, with Merkle search-tree proofs; the transport's frames and the masked
/// vector are unchanged but for the version byte; the DP round's welcome, flag bit 1 and its
/// 32-byte setting, added with distributed DP at version 4, likewise). Any change to these
/// bytes is a new wire version.
#[test]
fn frames_are_byte_for_byte_the_wire_format() {
    use sha2::{Digest, Sha256};
    const GOLDEN: &[&str] = &[
        "join: 352 bytes, 6cf99353f38d9e56d1f6105db704e44e803743b26787080526f5eb3188a6ffe3",
        "join: 204 bytes, 63f70640e600e5887d3e34cfe0901ee7005359712fcb355de1770964a42567f2",
        "reveal: 54 bytes, e6092c13b873f6710b08a515fabf1960e9cff2ebcd791f016d8111d4dd6b2127",
        "share-keys: 242 bytes, 7d78eac689ac0f24e9f49b691f4623aceb39e9c3f15b3e8c9c81a8910a993dd4",
        "share-check: 56 bytes, 17a2af2bd1577f474ccadb45f280cf3610d9cc5337fe056938596dd38ee4149e",
        "masked-input: 26 bytes, 4496aa78dc5c0c03aa8320a882719447dccf2e1d79b30469cf31f1a4c6a31da5",
        "consistency: 82 bytes, 5ac4a530b26e3b4247802017f781c3418cf572f0e79410404867c919c747fa0f",
        "unmask-shares: 51 bytes, 9711a4e1d4fa587b242bdd7aa6df5fcbe4f124be13ee0416816a099287b105b6",
        "masked-input piece: 25 bytes, fb259b47706e0014799c98b608513a8e5fb3912904a762065ba0b1c30d40f8de",
        "unmask-shares: 51 bytes, e1bcdd0009e7f1306ea31019a07869086b7decf6f366db5e43e6da01ded41aa0",
        "cohort: 130 bytes, 6801b86f71bd55539a436139ddd599d7a3cc55e4deb83d4b3487c42ce6f25024",
        "key-list: 692 bytes, 2984813c59f7e78a8cc9b02fae7b99d6a941d400021465bbd19cf91dd4a6916c",
        "share-bundles: 266 bytes, ce04e7c13e8dc1ef100bf46a2e6bd8e9171e59da0c73e171e005dc302a19b407",
        "mask-request: 22 bytes, 8c7363865b5d379463f4d7ad4c9fc0fcef03a6cf3b0f68812de7a852a2710e58",
        "survivor-list: 110 bytes, 008575fc02c78ca7b9c41e4bade48d46f3b73b936868c8e5aa1f9f65dbd42e5b",
        "unmask-request: 337 bytes, 815205e65d537398321506685838d29f3b25611069996bb2b6fb9454b06b8ad6",
        "completed: 14 bytes, a3a6bf87d3d6dedbe4a0cc7b58f6e19f187fb3a8a8e96f892e4ee22c3fd77386",
        "aborted: 27 bytes, 474c3fb73ec35adf42dd8fb246efd4c72ffa8756ef22f73e0f725c41b8e1303a",
        "aborted: 31 bytes, b610e72eddb4442f9cc9aee9a726b2bdb3c65021fdb5bf0808dccc7c6afb1652",
        "hello: 216 bytes, 769d98e5508c49d666681ac0eecce37e950397e03eb9126b352320aa1873db6f",
        "hello: 148 bytes, ec9d4d431289f0f82b93c363851947509e53347a933aa75fe7e91cc02fd0221a",
        "challenge: 42 bytes, 9e5dac6c5a518efca2d9998b915dccb38b111a7aacf93e2a9ac76a9477999b78",
        "welcome: 104 bytes, 9e3b9115204cebcaba8686a2831f67c70723d64559c797bd1430f6f1fe6dcbaf",
        "welcome: 104 bytes, 26aeaba73f6b8cb09852e3e205f5c089d9b1c225593be738408d60b155d364c0",
        "welcome: 136 bytes, 962307ff33cab8ae4435c699082652d214706e3a570ed9fbd37d75490d6c8b43",
        "reject: 24 bytes, 9f28b1c395a3a817d49fe4442e89ff10933ad89e3252e8f7be59aedccad29552",
        "masked chunk: 106514 bytes, dcf92711d9f1b8fe4b3c81ad6fd91689f7062807ad3c5ccc8bd831215aa82f57",
        "masked chunk: 27 bytes, f7f08f5765c0e3ae591079b9e0624790305da3c3ce9b30c8463394811718e062",
    ];
    let got: Vec<String> = every_frame()
        .into_iter()
        .map(|(what, bytes)| {
            let hex: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("{what}: {} bytes, {hex}", bytes.len())
        })
        .collect();
    assert_eq!(got, GOLDEN);
}

/// The tags are the bytes the module docs' tables give, and no two frames share one.
#[test]
fn tags_are_the_documented_bytes() {
    let tags = [
        (tag::JOIN, 0x01),
        (tag::REVEAL, 0x02),
        (tag::SHARE_KEYS, 0x03),
        (tag::SHARE_CHECK, 0x04),
        (tag::MASKED_INPUT, 0x05),
        (tag::CONSISTENCY, 0x06),
        (tag::UNMASK_SHARES, 0x07),
        (tag::HELLO, 0x10),
        (tag::CHUNK, 0x13),
        (tag::COHORT, 0x80),
        (tag::KEY_LIST, 0x81),
        (tag::SHARE_BUNDLES, 0x82),
        (tag::MASK_REQUEST, 0x83),
        (tag::SURVIVOR_LIST, 0x84),
        (tag::UNMASK_REQUEST, 0x85),
        (tag::COMPLETED, 0x86),
        (tag::ABORTED, 0x87),
        (tag::WELCOME, 0x90),
        (tag::REJECT, 0x91),
        (tag::CHALLENGE, 0x92),
    ];
    for (named, byte) in tags {
        assert_eq!(named, byte);
    }
    let distinct: std::collections::BTreeSet<u8> = tags.iter().map(|t| t.0).collect();
    assert_eq!(distinct.len(), tags.len());
}
