//! A masked input at b > 32 on the wire: 64-bit elements packed at b bits, whole
//! (MASKED_INPUT) and in upload chunks (CHUNK), decoded with every bound checked before
//! anything is allocated or added: the width, the count, the bytes, the padding bits, the
//! chunk's place in the vector.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use secagg_engine::packed::pack;
use secagg_host::RoundConfig;
use secagg_host::codec::{self, CHUNK_ELEMS, Limits};
use secagg_host::messages::{ClientMessage, Envelope, PackedRun};

/// A round of `len - 1` parameters at `bits`, its limits, and random masked elements below
/// 2^bits, in upload runs of [`CHUNK_ELEMS`].
fn upload(test: &str, bits: u32, len: usize) -> (Limits, Vec<u64>, Vec<PackedRun>) {
    let seed = secagg_engine::testing::test_seed(test);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let config = RoundConfig::builder(5, len - 1).bits(bits).build().unwrap();
    let limits = Limits::for_config(&config);
    assert_eq!(limits.bits, bits);
    let top = if bits == 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    };
    let values: Vec<u64> = (0..len).map(|_| rng.next_u64() & top).collect();
    let runs = values
        .chunks(CHUNK_ELEMS)
        .enumerate()
        .map(|(i, piece)| {
            let mut bytes = Vec::new();
            pack(piece, bits, &mut bytes);
            PackedRun {
                offset: i * CHUNK_ELEMS,
                count: piece.len(),
                bytes,
            }
        })
        .collect();
    (limits, values, runs)
}

#[test]
fn a_wide_masked_input_round_trips_whole_and_in_chunks() {
    for bits in [33, 43, 48, 63, 64] {
        let (limits, values, runs) = upload("wide_wire::round_trip", bits, CHUNK_ELEMS + 777);
        // Chunk frames, as a transport uploads them.
        let mut got = Vec::new();
        for run in &runs {
            let frame = codec::encode_piece(9, run);
            let (placed, back) = codec::decode_chunk_packed(&frame, &limits, run.offset).unwrap();
            assert_eq!(
                (placed.round, placed.offset, placed.count),
                (9, run.offset, run.count)
            );
            assert_eq!(&back, run);
            got.push(back);
        }
        let whole = codec::packed_input(got, &limits).unwrap();
        let ClientMessage::PackedInput(p) = &whole else {
            panic!("not a packed input")
        };
        assert_eq!(p.unpack_lanes::<u64>().unwrap(), values, "b = {bits}");
        // The whole vector as one MASKED_INPUT frame decodes to the same elements.
        let env = Envelope {
            round: 9,
            message: whole,
        };
        let frame = codec::encode_client(&env, bits);
        let back = codec::decode_client(&frame, &limits).unwrap();
        let ClientMessage::PackedInput(q) = &back.message else {
            panic!("not a packed input")
        };
        assert_eq!(
            q.unpack_lanes::<u64>().unwrap(),
            values,
            "b = {bits}, whole"
        );
        assert_eq!(codec::encode_client(&back, bits), frame, "one encoding");
    }
}

#[test]
fn a_wide_masked_input_is_bounds_checked() {
    let bits = 43; // 43 · 777 bits leave padding bits in the last byte
    let (limits, _, runs) = upload("wide_wire::bounds", bits, CHUNK_ELEMS + 777);
    let env = Envelope {
        round: 3,
        message: codec::packed_input(runs.clone(), &limits).unwrap(),
    };
    let frame = codec::encode_client(&env, bits);
    assert!(codec::decode_client(&frame, &limits).is_ok());
    // Every truncation is refused, as is one byte more.
    for cut in [1, 2, 8, frame.len() / 2, frame.len() - 1] {
        assert!(
            codec::decode_client(&frame[..cut], &limits).is_err(),
            "cut at {cut}"
        );
    }
    let mut long = frame.clone();
    long.push(0);
    assert!(
        codec::decode_client(&long, &limits).is_err(),
        "a byte too many"
    );
    // The frame's width must be the round's.
    for other in [32, 42, 44, 64] {
        let (mut l, _, _) = upload("wide_wire::bounds", other, 10);
        l.vector_len = limits.vector_len;
        assert!(codec::decode_client(&frame, &l).is_err(), "b = {other}");
    }
    // The count must be the round's.
    let mut fewer = limits;
    fewer.vector_len -= 1;
    assert!(codec::decode_client(&frame, &fewer).is_err());
    // A set padding bit after the last element is refused.
    let mut padded = frame.clone();
    *padded.last_mut().unwrap() |= 0x80;
    assert!(codec::decode_client(&padded, &limits).is_err(), "padding");
    // Chunks: only where the upload stands, never past the vector, at most CHUNK_ELEMS.
    let first = codec::encode_piece(3, &runs[0]);
    let second = codec::encode_piece(3, &runs[1]);
    assert!(codec::decode_chunk_packed(&first, &limits, 0).is_ok());
    assert!(
        codec::decode_chunk_packed(&second, &limits, 0).is_err(),
        "out of order"
    );
    assert!(codec::decode_chunk_packed(&first[..first.len() - 1], &limits, 0).is_err());
    let mut short = limits;
    short.vector_len = CHUNK_ELEMS + 776;
    assert!(
        codec::decode_chunk_packed(&second, &short, CHUNK_ELEMS).is_err(),
        "past the end"
    );
    let mut padded = second.clone();
    *padded.last_mut().unwrap() |= 0x80;
    assert!(codec::decode_chunk_packed(&padded, &limits, CHUNK_ELEMS).is_err());
}
