//! The contract at moduli above 2^32 (instantiated for every engine in conformance.rs): `u64` lanes, two keystream words per element (low, high).
//!
//! Every case checks an engine against references computed here: masks assembled from the
//! `rand_chacha` keystream (the specification) and from the `chacha20` crate, element i being
//! words 2i and 2i + 1 of the stream, sums in plain `u64` arithmetic, packed runs packed bit
//! by bit. Known answers at b = 33, 48, 63 and 64 come from RFC 8439's first keystream test
//! vector (ChaCha20, zero key, zero nonce, counter 0: the state of stream 0, block 0). Inputs
//! are drawn from the printed test seed; the GPU instances fail rather than skip with
//! `SECAGG_REQUIRE_GPU=1`.

use secagg_engine::{
    Accumulate, Backend, CpuEngine, EngineError, MaskTerm, Modulus, Prg, Seed, Sign,
};

use crate::support::{self, Inputs, as_runs, hex, oracle_stream, pack_bits, spec_stream};

/// The widths the issue names, and one more between.
const WIDE_BITS: [u32; 5] = [33, 40, 48, 63, 64];

/// 2^b − 1 for b in 33..=64, computed here.
fn mask64(bits: u32) -> u64 {
    if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Elements `offset .. offset + len` of PRG(seed) at b > 32, from `rand_chacha` words.
fn spec_wide(seed: [u8; 32], prg: Prg, offset: u64, len: usize) -> Vec<u64> {
    let words = spec_stream(seed, prg, 2 * offset, 2 * len);
    words
        .chunks_exact(2)
        .map(|w| u64::from(w[0]) | (u64::from(w[1]) << 32))
        .collect()
}

/// The same from the `chacha20` crate.
fn oracle_wide(seed: [u8; 32], prg: Prg, offset: u64, len: usize) -> Vec<u64> {
    let words = oracle_stream(seed, prg, 0, 2 * u128::from(offset), 2 * len);
    words
        .chunks_exact(2)
        .map(|w| u64::from(w[0]) | (u64::from(w[1]) << 32))
        .collect()
}

fn vec64(rng: &mut Inputs, len: usize) -> Vec<u64> {
    (0..len).map(|_| rng.u64()).collect()
}

/// Odd offsets, small, mid-block, and far out (the word offset 2·o crosses block counter
/// 2^32 and beyond).
fn odd_offset(rng: &mut Inputs) -> u64 {
    match rng.below(4) {
        0 => rng.below(64) | 1,
        1 => 8 * rng.below(1 << 20) + 7,
        2 => rng.below(1 << 40) | 1,
        _ => (1u64 << 35) - (rng.below(40) | 1), // words near block counter 2^32
    }
}

/// Lengths that are not multiples of 16 (or of 8, the elements of one block), and random ones.
fn length(rng: &mut Inputs) -> usize {
    match rng.below(3) {
        0 => rng.pick(&[0usize, 1, 7, 9, 15, 17, 33, 1001]),
        1 => 1 + rng.below(5000) as usize,
        _ => 4096 + 1 + rng.below(9000) as usize,
    }
}

fn assert_same64(what: &str, got: &[u64], want: &[u64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at element {i} of {}: got {:#018x}, want {:#018x}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// `acc + Σ ±PRG(seed)` mod 2^b, element by element from the spec.
fn reference(acc: &[u64], off: u64, raw: &[([u8; 32], Sign)], prg: Prg, bits: u32) -> Vec<u64> {
    let mut out = acc.to_vec();
    for (seed, sign) in raw {
        for (o, k) in out.iter_mut().zip(spec_wide(*seed, prg, off, acc.len())) {
            *o = match sign {
                Sign::Plus => o.wrapping_add(k),
                Sign::Minus => o.wrapping_sub(k),
            };
        }
    }
    out.iter().map(|o| o & mask64(bits)).collect()
}

pub(crate) fn wide_apply_masks_match_spec<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for bits in WIDE_BITS {
        for _ in 0..4 {
            let modulus = Modulus::new(bits).unwrap();
            let (len, off, prg) = (length(&mut rng), odd_offset(&mut rng), rng.pick(&Prg::ALL));
            let many = 1 + rng.below(60) as usize;
            let n_terms = rng.pick(&[1usize, 2, many]);
            let acc = vec64(&mut rng, len);
            let (terms, raw) = rng.terms(n_terms);
            let want = reference(&acc, off, &raw, prg, bits);
            let mut got = acc.clone();
            e.apply_masks(&mut got, off, &terms, prg, modulus).unwrap();
            let what =
                format!("apply_masks b = {bits} len {len} offset {off} terms {n_terms} {prg}");
            assert_same64(&what, &got, &want);
        }
    }
}

/// Known answers: RFC 8439 A.1 test vector 1 is the ChaCha20 keystream of the zero key in
/// stream 0 from block 0, so element i of the zero seed's mask is its words 2i, 2i + 1.
pub(crate) fn wide_known_answers<E: Backend>(e: &E, _test: &str) {
    let ks = hex(
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7
         da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586",
    );
    let elements: Vec<u64> = ks
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    // Written out, so that a change of word order or reduction shows here first.
    assert_eq!(elements[0], 0x903d_f1a0_ade0_b876);
    let fixed: [(u32, u64); 4] = [
        (33, 0x0_ade0_b876),
        (48, 0xf1a0_ade0_b876),
        (63, 0x103d_f1a0_ade0_b876),
        (64, 0x903d_f1a0_ade0_b876),
    ];
    for (bits, want0) in fixed {
        let modulus = Modulus::new(bits).unwrap();
        let mut got = vec![0u64; 8];
        e.expand(
            &Seed::from_bytes([0; 32]),
            Prg::ChaCha20,
            0,
            &mut got,
            modulus,
        )
        .unwrap();
        assert_eq!(got[0], want0, "b = {bits}, element 0");
        let want: Vec<u64> = elements.iter().map(|x| x & mask64(bits)).collect();
        assert_same64(&format!("RFC 8439 A.1 #1 at b = {bits}"), &got, &want);
        // From element 3 on: words 6.. of the same block.
        let mut tail = vec![0u64; 5];
        e.expand(
            &Seed::from_bytes([0; 32]),
            Prg::ChaCha20,
            3,
            &mut tail,
            modulus,
        )
        .unwrap();
        assert_same64(
            &format!("RFC 8439 A.1 #1 from element 3, b = {bits}"),
            &tail,
            &want[3..],
        );
    }
}

/// `expand` against both references at random seeds, odd offsets and every PRG.
pub(crate) fn wide_expand_matches_both_references<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for bits in [33, 48, 63, 64] {
        for prg in Prg::ALL {
            let seed = rng.seed_bytes();
            let (off, len) = (odd_offset(&mut rng), length(&mut rng));
            let spec = spec_wide(seed, prg, off, len);
            let oracle = oracle_wide(seed, prg, off, len);
            assert_same64("rand_chacha vs chacha20 crate", &oracle, &spec);
            let mut got = vec![0u64; len];
            e.expand(
                &Seed::from_bytes(seed),
                prg,
                off,
                &mut got,
                Modulus::new(bits).unwrap(),
            )
            .unwrap();
            let want: Vec<u64> = spec.iter().map(|x| x & mask64(bits)).collect();
            assert_same64(
                &format!("expand b = {bits} {prg} at {off}, {len}"),
                &got,
                &want,
            );
        }
    }
}

pub(crate) fn wide_add_matches_reference<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for bits in WIDE_BITS {
        let len = length(&mut rng);
        let m = mask64(bits);
        // Values near 2^b so that the carry out of the low word, and the wrap, both happen.
        let acc: Vec<u64> = (0..len).map(|_| m - rng.below(1 << 33)).collect();
        let input: Vec<u64> = (0..len).map(|_| rng.u64() & m).collect();
        let want: Vec<u64> = acc
            .iter()
            .zip(&input)
            .map(|(a, b)| a.wrapping_add(*b) & m)
            .collect();
        let mut got = acc.clone();
        e.add(&mut got, &input, Modulus::new(bits).unwrap())
            .unwrap();
        assert_same64(&format!("add b = {bits}, {len}"), &got, &want);
    }
}

/// A term and its opposite cancel, and masks over slices compose with the whole.
pub(crate) fn wide_slices_compose<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    let modulus = Modulus::new(rng.pick(&[33, 48, 63, 64])).unwrap();
    let len = 10_000 + rng.below(5000) as usize;
    let off = odd_offset(&mut rng);
    let (terms, _) = rng.terms(5);
    let mut whole = vec64(&mut rng, len);
    whole.iter_mut().for_each(|x| *x &= mask64(modulus.bits()));
    let plain = whole.clone();
    e.apply_masks(&mut whole, off, &terms, Prg::ChaCha12, modulus)
        .unwrap();
    let mut parts = plain.clone();
    let mut at = 0;
    while at < len {
        let n = (1 + rng.below(3000) as usize).min(len - at);
        e.apply_masks(
            &mut parts[at..at + n],
            off + at as u64,
            &terms,
            Prg::ChaCha12,
            modulus,
        )
        .unwrap();
        at += n;
    }
    assert_same64(&format!("slices vs whole at {modulus}"), &parts, &whole);
    let undo: Vec<MaskTerm> = terms
        .iter()
        .map(|t| match t.sign {
            Sign::Plus => MaskTerm::minus(t.seed.duplicate()),
            Sign::Minus => MaskTerm::plus(t.seed.duplicate()),
        })
        .collect();
    e.apply_masks(&mut whole, off, &undo, Prg::ChaCha12, modulus)
        .unwrap();
    assert_same64("masks removed", &whole, &plain);
}

/// The same random jobs here and on the CPU engine give identical elements.
pub(crate) fn wide_equals_cpu_bit_for_bit<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    let cpu = CpuEngine::new();
    for bits in [33, 48, 63, 64] {
        let modulus = Modulus::new(bits).unwrap();
        let len = 1 + rng.below(200_000) as usize;
        let (prg, off) = (rng.pick(&Prg::ALL), odd_offset(&mut rng));
        let acc = vec64(&mut rng, len);
        let n_terms = 1 + rng.below(40) as usize;
        let (terms, _) = rng.terms(n_terms);
        let mut on_cpu = acc.clone();
        cpu.apply_masks(&mut on_cpu, off, &terms, prg, modulus)
            .unwrap();
        let mut here = acc;
        e.apply_masks(&mut here, off, &terms, prg, modulus).unwrap();
        assert_same64(
            &format!("{} vs cpu at b = {bits}", e.describe()),
            &here,
            &on_cpu,
        );
    }
}

/// More terms than one pass of the GPU mask kernel takes on llvmpipe (its loop budget; see
/// `support::PASS_EDGES`): the split into passes keeps the sums exact at b > 32 too.
pub(crate) fn wide_thousands_of_terms<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for (prg, [_, over]) in support::PASS_EDGES.into_iter().take(2) {
        let modulus = Modulus::new(rng.pick(&[33, 48, 63, 64])).unwrap();
        let (len, off) = (1 + rng.below(40) as usize, odd_offset(&mut rng));
        let acc = vec64(&mut rng, len);
        let (terms, raw) = rng.terms(over);
        let want = reference(&acc, off, &raw, prg, modulus.bits());
        let mut got = acc;
        e.apply_masks(&mut got, off, &terms, prg, modulus).unwrap();
        assert_same64(&format!("{over} {prg} terms at {modulus}"), &got, &want);
    }
}

/// Each modulus has one lane: `u32` lanes refuse b > 32 and `u64` lanes refuse b ≤ 32.
pub(crate) fn wide_lanes_are_checked<E: Accumulate>(e: &E, _test: &str) {
    let wide = Modulus::new(48).unwrap();
    let narrow = Modulus::new(20).unwrap();
    let seed = Seed::from_bytes([3; 32]);
    assert!(matches!(
        e.expand(&seed, Prg::ChaCha20, 0, &mut [0u32; 4], wide),
        Err(EngineError::ModulusTooWide {
            bits: 48,
            lane_bits: 32
        })
    ));
    assert!(matches!(
        e.expand(&seed, Prg::ChaCha20, 0, &mut [0u64; 4], narrow),
        Err(EngineError::LaneTooWide {
            bits: 20,
            lane_bits: 64
        })
    ));
    assert!(matches!(
        e.add(&mut [0u64; 2], &[1u64], wide),
        Err(EngineError::LengthMismatch { acc: 2, input: 1 })
    ));
    let mut acc = e.accumulator(10, wide).unwrap();
    assert!(e.add_words(&mut acc, 0, &[1, 2]).is_err());
    assert!(matches!(
        e.add_lanes(&mut acc, 9, &[1u64, 2]),
        Err(EngineError::OutOfRange { .. })
    ));
    assert!(e.read_out(&acc, &mut [0u32; 10]).is_err());
    // A run one byte short at 48 bits is refused before anything is added.
    assert!(matches!(
        e.add_packed(&mut acc, 0, &[0u8; 11], 2),
        Err(EngineError::PackedLength {
            bytes: 11,
            count: 2,
            bits: 48
        })
    ));
    let mut out = [7u64; 10];
    e.read_out_lanes(&acc, &mut out).unwrap();
    assert_eq!(out, [0; 10]);
}

/// Uploads packed at b > 32 (whole, in ragged chunks, as runs, and unpacked), masks removed
/// in place over ranges at odd offsets, against the plain sum.
pub(crate) fn wide_accumulator_round<E: Accumulate>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for bits in WIDE_BITS {
        let modulus = Modulus::new(bits).unwrap();
        let m = mask64(bits);
        let len = 4096 + 1 + rng.below(6000) as usize;
        let mut want = vec![0u64; len];
        let mut acc = e.accumulator(len, modulus).unwrap();
        for upload in 0..5 {
            let (offset, count) = rng.upload_span(len, upload);
            let values: Vec<u64> = vec64(&mut rng, count).iter().map(|v| v & m).collect();
            for (w, v) in want[offset..offset + count].iter_mut().zip(&values) {
                *w = w.wrapping_add(*v) & m;
            }
            match upload {
                0 | 2 => e
                    .add_packed(&mut acc, offset, &pack_bits(&values, bits), count)
                    .unwrap(),
                3 => e.add_lanes(&mut acc, offset, &values).unwrap(),
                _ => {
                    // Runs of 1, 5, 17, … elements, each packed on its own: their ends fall
                    // inside words of the stream, and a field straddles three words.
                    let mut runs = Vec::new();
                    let (mut done, mut step) = (0, 1);
                    while done < count {
                        let n = step.min(count - done);
                        runs.push((offset + done, pack_bits(&values[done..done + n], bits), n));
                        done += n;
                        step = step * 3 + 2;
                    }
                    e.add_packed_runs(&mut acc, &as_runs(&runs)).unwrap();
                }
            }
        }
        let mut got = vec![0u64; len];
        e.read_out_lanes(&acc, &mut got).unwrap();
        assert_same64(&format!("add_packed b = {bits}, {len}"), &got, &want);
        // Mask a range in place at an odd keystream offset.
        let (start, n) = (1 + rng.below(100) as usize, len - 200);
        let off = odd_offset(&mut rng);
        let n_terms = 1 + rng.below(30) as usize;
        let (terms, raw) = rng.terms(n_terms);
        let prg = rng.pick(&Prg::ALL);
        e.mask_range(&mut acc, start, n, off, &terms, prg).unwrap();
        let masked = reference(&want[start..start + n], off, &raw, prg, bits);
        want[start..start + n].copy_from_slice(&masked);
        let owned: Vec<u64> = e.read_out_owned_lanes(acc).unwrap();
        assert_same64(&format!("mask_range b = {bits}"), &owned, &want);
    }
}

/// The packed codec round-trips at every width above 32 (the engine's `pack` against the
/// bit-by-bit reference, and `unpack` back).
#[test]
fn packed_round_trip_every_wide_width() {
    let mut rng = Inputs::new("wide::packed_round_trip_every_wide_width");
    for bits in 33..=64 {
        let len = 1 + rng.below(300) as usize;
        let values: Vec<u64> = vec64(&mut rng, len)
            .iter()
            .map(|v| v & mask64(bits))
            .collect();
        let mut packed = Vec::new();
        secagg_engine::packed::pack(&values, bits, &mut packed);
        assert_eq!(packed, pack_bits(&values, bits), "pack b = {bits}");
        let mut back = vec![0u64; len];
        secagg_engine::packed::unpack(&packed, bits, &mut back).unwrap();
        assert_same64(&format!("unpack b = {bits}"), &back, &values);
        // A set padding bit is refused.
        if (len * bits as usize) % 8 != 0 {
            let mut bad = packed.clone();
            *bad.last_mut().unwrap() |= 0x80;
            assert!(secagg_engine::packed::unpack(&bad, bits, &mut back).is_err());
        }
    }
}
