//! Fuzzes every wire decoder with the same bytes: no input may panic, and whatever decodes
//! must re-encode to exactly those bytes (one encoding per message).
//!
//! `cd host && cargo fuzz run codec` (see host/fuzz/README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use secagg_host::codec::{self, Limits};
use secagg_host::identity::CaPublicKey;

/// A fixed CA key (any valid point will do: the fuzzer cannot forge its signatures, it can
/// only reach the checks).
fn ca() -> CaPublicKey {
    let base = curve_base();
    CaPublicKey::from_bytes(&base).expect("the base point is a valid key")
}

/// The Ed25519 base point, compressed.
fn curve_base() -> [u8; 32] {
    let mut b = [0x66u8; 32];
    b[0] = 0x58;
    b
}

fuzz_target!(|bytes: &[u8]| {
    // A small round, so that counts and vector lengths are often in range.
    let l = Limits {
        max_clients: 64,
        max_neighbors: 12,
        vector_len: 40,
        bits: 19,
    };
    if let Ok(env) = codec::decode_client(bytes, &l) {
        assert_eq!(codec::encode_client(&env, l.bits), bytes);
    }
    if let Ok(env) = codec::decode_server(bytes, &l) {
        assert_eq!(codec::encode_server(&env), bytes);
    }
    if let Ok(h) = codec::decode_hello(bytes) {
        assert_eq!(codec::encode_hello(&h), bytes);
        // The server's next steps on a hello: parse the credential, check the signature.
        if let Some(Ok(cert)) = h.credential.parse_certificate() {
            let _ = cert.verify(&ca());
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
        assert_eq!(codec::encode_challenge(&c), bytes);
    }
    if let Ok(config) = codec::decode_welcome(bytes) {
        assert_eq!(codec::encode_welcome(&config).len(), bytes.len());
    }
    let _ = codec::decode_reject(bytes);
    let mut staging = vec![0u32; l.vector_len];
    let unpacked = codec::decode_chunk_into(bytes, &l, 0, &mut staging);
    let packed = codec::decode_chunk_packed(bytes, &l, 0);
    assert_eq!(unpacked.is_ok(), packed.is_ok());
});
