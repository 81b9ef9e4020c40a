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
    ClientMessage, Credential, DealerReport, Envelope, ForwardedBundle, PackedRun, ReportKind,
    RevealedShare, SealedBundle, ServerMessage, ShareKind, SignedKeys,
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
        nonce: [3; 32],
        credential,
        signature: [4; 64],
        // Both encodings: with a certificate, also a selection ticket.
        ticket: cert.then_some([6; TICKET_LEN]),
    }
}

/// The client messages the round-trip test checks, one of each, with both credentials.
pub(crate) fn client_samples() -> Vec<ClientMessage> {
    vec![
        ClientMessage::Join {
            nonce_commitment: [1; 32],
        },
        ClientMessage::AdvertiseKeys(signed(true)),
        ClientMessage::AdvertiseKeys(signed(false)),
        ClientMessage::ShareKeys {
            self_key: [6; 32],
            own_point: [7; 32],
            bundles: vec![SealedBundle {
                peer: ClientId(4),
                mask_point: [8; 32],
                self_point: [9; 32],
                ciphertext: vec![5; BUNDLE_LEN],
            }],
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
        ClientMessage::Consistency { signature: [3; 64] },
        ClientMessage::UnmaskShares(vec![RevealedShare {
            owner: ClientId(3),
            kind: ShareKind::MaskKey,
            value: [9; 32],
        }]),
    ]
}

/// The server messages the round-trip test checks, one of each, with both credentials.
pub(crate) fn server_samples() -> Vec<ServerMessage> {
    vec![
        ServerMessage::Cohort(vec![(ClientId(1), [4; 32]), (ClientId(2), [5; 32])].into()),
        ServerMessage::KeyList(
            vec![(ClientId(1), signed(true)), (ClientId(3), signed(false))].into(),
        ),
        ServerMessage::ShareBundles(vec![ForwardedBundle {
            sender: ClientId(2),
            self_key: [6; 32],
            mask_point: [8; 32],
            self_point: [9; 32],
            ciphertext: vec![1; BUNDLE_LEN],
        }]),
        ServerMessage::MaskRequest(vec![ClientId(1), ClientId(5)]),
        ServerMessage::SurvivorList(vec![ClientId(1), ClientId(5)].into()),
        ServerMessage::UnmaskRequest {
            survivors: vec![ClientId(1), ClientId(5)].into(),
            signatures: vec![(ClientId(1), [2; 64])],
        },
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

/// The wire format, pinned: SHA-256 of each frame [`every_frame`] writes (computed from
/// the codec at wire version 4 before it was split into modules; the DP round's welcome,
/// flag bit 1 and its 32-byte setting, added with distributed DP, the others unchanged).
/// Any change to these bytes is a new wire version.
#[test]
fn frames_are_byte_for_byte_the_wire_format() {
    use sha2::{Digest, Sha256};
    const GOLDEN: &[&str] = &[
        "join: 42 bytes, 5d8d1645cd58464c4c09ad2c18710b4c5dc78453992c53a0e934beb0838e87a3",
        "advertise-keys: 352 bytes, bab7da49728a3ca2a8f04d49d0dd07ff00e7cce036a91d8902cdaa502fa8b079",
        "advertise-keys: 204 bytes, 500f6133b390d9ae7c6cbeb215ea3b7c1c30c9d4d471746a1de80d3291ea0742",
        "share-keys: 234 bytes, 838b663527f416d5024ee4f887c9ba0f6f442eff4ee1e03e6de084a6ecc5e7a7",
        "share-check: 56 bytes, a0ca0a28682a3d881fd92b2dc246d48b7cfa601bc41b5ef2483216fed389a5d3",
        "masked-input: 26 bytes, 7614da31899ce3c605d544accc7c980f712b66f28b0dd247ab0e1bcc01b1da5e",
        "consistency: 74 bytes, 2c1f8e343c1bac5b0ff67c915d1eb20df71fd221f75d9dd7763e8702e4a3ab23",
        "unmask-shares: 51 bytes, 113117f88ff23ddca0b2d402fe1c6b06e13546b486ddb0de1cac9e11a081ce55",
        "masked-input piece: 25 bytes, 6772b4e980868f407812dffcd074319ab76e55e3e701525c2f6207a2c2ff8f27",
        "unmask-shares: 51 bytes, b74053df4248492ec9c44c2f6acb73a140c68180202cd61596942ff6e2230263",
        "cohort: 86 bytes, 7bd187975b06a87004e8400e1b1aa2a1f4adae2a170e03df14d360fbd88fab31",
        "key-list: 558 bytes, 88064aa0c2ce8d634caba829d8b854891e4a967560583f2bc508decc22c1faa8",
        "share-bundles: 202 bytes, aeae7b334100516d3f7905ca79cc696221b3839a9946a276761933fc90e9f3fa",
        "mask-request: 22 bytes, 48baa8a2ace5b9b8714afff6a9749d32c5fc30e2b42af12f7ccde10d84abc81d",
        "survivor-list: 22 bytes, c952f4a448306ddde223ceb703deda2e0bac808b626b2d4a5ed59fd40d9d5d76",
        "unmask-request: 94 bytes, c4c9301b999ba907c69aaaeee10e80f70b73e806e58c928f872a7f844607b831",
        "completed: 14 bytes, 4ba1ff3591ab519d6b8bf09b3b1af2a93a8eb318f2035c36cd14e132ed6600c0",
        "aborted: 27 bytes, 15b9e550305c4019e290743fbbedcde2287ea36820a511cfd95472df3575da59",
        "aborted: 31 bytes, 3c9a14c504f9788a679143457e945fcbabf7954a1eca33b99c8a292446085370",
        "hello: 216 bytes, 17d1e31eb4b3c987f45d765037b8b743c7c79f741645fd417831bb162df9d794",
        "hello: 148 bytes, 0ee0d3c7f4b1cdfd369da560622c3e6f55172c55d1d31b6e598c31e803a1bb5d",
        "challenge: 42 bytes, 1402641cda5592bbf84d4ce5a19a328cc0b3ee1f8c90b1521c43d05d82754a33",
        "welcome: 104 bytes, db62712e003c642579a4c48cbde22cb8ba45c13552484a3ef5ac9f01ddc1af0e",
        "welcome: 104 bytes, f915a7026b8c4fe6f6c80aba6eb042e80d03724a8295e324a7f5a643295bddec",
        "welcome: 136 bytes, e0612785eff6898b78c72ddddfb934c49c05f918bcd5f59ee4659942a98b0cfc",
        "reject: 24 bytes, 951f1d6c1e5eb5b9c11af6fc688d7d29b87c2fbde94f313f667a8692ca87c6f1",
        "masked chunk: 106514 bytes, ff5ae7da81e4f49abbd6cd82d29bf17337047ec86c6b649dcb925ccfd4a6a1bb",
        "masked chunk: 27 bytes, 01b67468371a63a401a9624f64c817c77b163a6b40bfca0dc0beb448a1f44059",
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
        (tag::ADVERTISE_KEYS, 0x02),
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
