//! Fuzzes every wire decoder with the same bytes: no input may panic, and whatever decodes
//! must re-encode to exactly those bytes (one encoding per message).
//!
//! `cd host && cargo fuzz run codec` (see host/fuzz/README.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use secagg_host::codec::{self, Limits};

fuzz_target!(|bytes: &[u8]| {
    // A small round, so that counts and vector lengths are often in range.
    let l = Limits {
        max_clients: 64,
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
    }
    if let Ok(config) = codec::decode_welcome(bytes) {
        assert_eq!(codec::encode_welcome(&config).len(), bytes.len());
    }
    let _ = codec::decode_reject(bytes);
    let mut staging = vec![0u32; l.vector_len];
    let _ = codec::decode_chunk_into(bytes, &l, 0, &mut staging);
});
