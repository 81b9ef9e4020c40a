//! Known answers for the ChaCha block function and the mask specification, through both
//! engines: the RFC 8439 block vectors (section 2.3.2 and appendix A.1), and keystreams
//! checked word for word against `rand_chacha` (the specification) and the `chacha20` crate
//! (an independent implementation) for ChaCha20/12/8, at offsets that are not block aligned
//! and at a block counter that crosses 2^32.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use secagg_engine::{Backend, CpuEngine, Modulus, Prg, Seed, StreamPos};
use support::{Inputs, assert_same, hex, oracle_stream, spec_stream};

/// One RFC 8439 block-function vector. The RFC uses a 32-bit counter and a 96-bit nonce;
/// with ChaCha's original 64/64 layout, state words 12..13 are our block counter and words
/// 14..15 our stream id, so (counter, nonce) maps to (block, stream) without loss.
struct BlockVector {
    what: &'static str,
    key: &'static str,
    counter: u32,
    nonce: &'static str,
    block: &'static str,
}

const RFC8439: &[BlockVector] = &[
    BlockVector {
        what: "RFC 8439 2.3.2",
        key: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        counter: 1,
        nonce: "000000090000004a00000000",
        block: "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e
                d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e",
    },
    BlockVector {
        what: "RFC 8439 A.1 #1",
        key: "0000000000000000000000000000000000000000000000000000000000000000",
        counter: 0,
        nonce: "000000000000000000000000",
        block: "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7
                da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586",
    },
    BlockVector {
        what: "RFC 8439 A.1 #2",
        key: "0000000000000000000000000000000000000000000000000000000000000000",
        counter: 1,
        nonce: "000000000000000000000000",
        block: "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed
                29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f",
    },
    BlockVector {
        what: "RFC 8439 A.1 #3",
        key: "0000000000000000000000000000000000000000000000000000000000000001",
        counter: 1,
        nonce: "000000000000000000000000",
        block: "3aeb5224ecf849929b9d828db1ced4dd832025e8018b8160b82284f3c949aa5a
                8eca00bbb4a73bdad192b5c42f73f2fd4e273644c8b36125a64addeb006c13a0",
    },
    BlockVector {
        what: "RFC 8439 A.1 #4",
        key: "00ff000000000000000000000000000000000000000000000000000000000000",
        counter: 2,
        nonce: "000000000000000000000000",
        block: "72d54dfbf12ec44b362692df94137f328fea8da73990265ec1bbbea1ae9af0ca
                13b25aa26cb4a648cb9b9d1be65b2c0924a66c54d545ec1b7374f4872e99f096",
    },
    BlockVector {
        what: "RFC 8439 A.1 #5",
        key: "0000000000000000000000000000000000000000000000000000000000000000",
        counter: 0,
        nonce: "000000000000000000000002",
        block: "c2c64d378cd536374ae204b9ef933fcd1a8b2288b3dfa49672ab765b54ee27c7
                8a970e0e955c14f3a88e741b97c286f75f8fc299e8148362fa198a39531bed6d",
    },
];

fn words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn rfc_blocks<E: Backend>(e: &E) {
    for v in RFC8439 {
        let key: [u8; 32] = hex(v.key).try_into().unwrap();
        let nonce = words(&hex(v.nonce));
        let pos = StreamPos {
            block: u64::from(v.counter) | u64::from(nonce[0]) << 32,
            stream: u64::from(nonce[1]) | u64::from(nonce[2]) << 32,
        };
        let mut got = [0u32; 16];
        e.keystream_blocks(&Seed::from_bytes(key), Prg::ChaCha20, pos, &mut got)
            .unwrap();
        assert_same(v.what, &got, &words(&hex(v.block)));
        // The oracle agrees on the mapping, so the vector checks the engine, not the test.
        let oracle = oracle_stream(
            key,
            Prg::ChaCha20,
            pos.stream,
            u128::from(pos.block) * 16,
            16,
        );
        assert_same(&format!("{} (chacha20 crate)", v.what), &oracle, &got);
    }
}

/// Offsets that start mid-block, and one whose blocks cross counter 2^32 (the carry from
/// state word 12 into word 13).
const OFFSETS: [u64; 5] = [0, 5, 16 * 1000 + 3, (1 << 36) - 37, (1 << 40) + 11];

fn streams_match_spec<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for prg in Prg::ALL {
        for off in OFFSETS {
            let seed = rng.seed_bytes();
            let len = 200 + rng.below(300) as usize;
            let spec = spec_stream(seed, prg, off, len);
            let oracle = oracle_stream(seed, prg, 0, u128::from(off), len);
            assert_same(
                &format!("{prg} at {off}: chacha20 crate vs rand_chacha"),
                &oracle,
                &spec,
            );
            let mut got = vec![0u32; len];
            e.expand(&Seed::from_bytes(seed), prg, off, &mut got, Modulus::U32)
                .unwrap();
            assert_same(&format!("{prg} expand at {off}"), &got, &spec);
        }
    }
}

/// Raw blocks at random counters and streams, against the `chacha20` crate.
fn random_blocks_match_oracle<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for prg in Prg::ALL {
        for _ in 0..8 {
            let seed = rng.seed_bytes();
            let pos = StreamPos {
                block: rng.u64(),
                stream: rng.u64(),
            };
            let blocks = 1 + rng.below(40) as usize;
            let mut got = vec![0u32; blocks * 16];
            e.keystream_blocks(&Seed::from_bytes(seed), prg, pos, &mut got)
                .unwrap();
            // The 68-bit word position of the oracle wraps like our 64-bit block counter only
            // while no block runs past 2^64; keep the check honest by asking block by block.
            let want: Vec<u32> = (0..blocks as u64)
                .flat_map(|i| {
                    let block = pos.block.wrapping_add(i);
                    oracle_stream(seed, prg, pos.stream, u128::from(block) * 16, 16)
                })
                .collect();
            assert_same(&format!("{prg} blocks at {pos:?}"), &got, &want);
        }
    }
}

macro_rules! kats {
    ($module:ident, $engine:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn rfc8439_block_vectors() {
                let Some(e) = $engine(stringify!($module)) else {
                    return;
                };
                rfc_blocks(&e);
            }

            #[test]
            fn rand_chacha_streams() {
                let test = concat!(stringify!($module), "::rand_chacha_streams");
                let Some(e) = $engine(test) else { return };
                streams_match_spec(&e, test);
            }

            #[test]
            fn chacha20_crate_blocks() {
                let test = concat!(stringify!($module), "::chacha20_crate_blocks");
                let Some(e) = $engine(test) else { return };
                random_blocks_match_oracle(&e, test);
            }
        }
    };
}

fn cpu(_: &str) -> Option<CpuEngine> {
    Some(CpuEngine::new())
}

kats!(cpu, cpu);
kats!(gpu, secagg_engine::testing::shared_gpu);
