//! The engine contract, written once and instantiated for every engine.
//!
//! Each case draws random inputs from a printed seed and checks the engine against an
//! element-by-element reference computed from `rand_chacha` (the mask specification). The GPU
//! instances run on whatever adapter wgpu finds (lavapipe in CI); with `SECAGG_REQUIRE_GPU=1`
//! they fail rather than skip when none opens. A second GPU instance forces tiny chunks and a
//! 2-D dispatch so chunk boundaries and the row-stride path are crossed on small vectors.
//! Sharded engines (three CPU shards, a GPU and a CPU, two GPUs) run the same contract: a
//! vector split by coordinate range between engines gives the same words. The `wide_` cases
//! (in `wide/`) are the same contract at moduli 2^33 ..= 2^64.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;
mod wide;

use secagg_engine::{
    Accumulate, Backend, CpuEngine, Device, EngineError, Modulus, Prg, Seed, StreamPos,
};
use support::{
    Inputs, PASS_EDGES, as_runs, assert_same, mask_of, pack_bits, reference_apply, spec_stream,
};
use wide::*;

const BITS: [u32; 5] = [1, 7, 17, 31, 32];
const SMALL_LENGTHS: [usize; 8] = [0, 1, 15, 16, 17, 63, 1000, 4099];

/// A random offset: small, just below a 16-word block edge, or far out in the keystream.
fn offset(rng: &mut Inputs) -> u64 {
    match rng.below(4) {
        0 => rng.below(64),
        1 => 16 * rng.below(1 << 20) + 15,
        2 => rng.below(1 << 40) | 1,
        _ => (1u64 << 36) - rng.below(40), // block counter near 2^32
    }
}

fn apply_case<E: Backend>(e: &E, rng: &mut Inputs, len: usize, n_terms: usize) {
    let prg = rng.pick(&Prg::ALL);
    apply_case_with(e, rng, len, n_terms, prg);
}

fn apply_case_with<E: Backend>(e: &E, rng: &mut Inputs, len: usize, n_terms: usize, prg: Prg) {
    let modulus = Modulus::new(rng.pick(&BITS)).unwrap();
    let off = offset(rng);
    let acc = rng.vec(len);
    let (terms, raw) = rng.terms(n_terms);
    let want = reference_apply(&acc, off, &raw, prg, modulus);
    let mut got = acc.clone();
    e.apply_masks(&mut got, off, &terms, prg, modulus).unwrap();
    let what = format!("apply_masks len {len} offset {off} terms {n_terms} {prg} mod {modulus}");
    assert_same(&what, &got, &want);
}

fn apply_masks_small<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for len in SMALL_LENGTHS {
        let many = 1 + rng.below(200) as usize;
        for n_terms in [1, 2, many] {
            apply_case(e, &mut rng, len, n_terms);
        }
    }
}

fn apply_masks_no_terms_reduces<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    let modulus = Modulus::new(7).unwrap();
    let acc = rng.vec(1001);
    let mut got = acc.clone();
    e.apply_masks(&mut got, 3, &[], Prg::ChaCha20, modulus)
        .unwrap();
    let want: Vec<u32> = acc.iter().map(|a| a & 0x7f).collect();
    assert_same("apply_masks with no terms", &got, &want);
}

fn apply_masks_million<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    let len = 1_000_003;
    apply_case(e, &mut rng, len, 1);
    apply_case(e, &mut rng, len, 22);
    if cfg!(not(debug_assertions)) {
        apply_case(e, &mut rng, len, 200);
    }
}

/// Thousands of terms in one call, as a server unmasking a large SecAgg+ round sends (about
/// 7900 at n = 1000 with the semi-malicious planner's k = 78), on either side of each PRG's
/// single-pass edge on llvmpipe (see `PASS_EDGES`; the GPU engine gave wrong sums from 5462
/// ChaCha20 terms on), and 8000.
fn apply_masks_thousands_of_terms<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for (prg, edges) in PASS_EDGES {
        for n_terms in edges {
            apply_case_with(e, &mut rng, 33, n_terms, prg);
        }
    }
    apply_case(e, &mut rng, 33, 8000);
}

/// Masking a vector in pieces at their own offsets equals masking it whole.
fn apply_masks_slices_compose<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    let modulus = Modulus::new(rng.pick(&BITS)).unwrap();
    let prg = rng.pick(&Prg::ALL);
    let len = 5000;
    let off = offset(&mut rng);
    let acc = rng.vec(len);
    let (terms, _) = rng.terms(5);
    let mut whole = acc.clone();
    e.apply_masks(&mut whole, off, &terms, prg, modulus)
        .unwrap();
    let mut pieces = acc.clone();
    let cut = 1 + rng.below(len as u64 - 2) as usize;
    let (a, b) = pieces.split_at_mut(cut);
    e.apply_masks(a, off, &terms, prg, modulus).unwrap();
    e.apply_masks(b, off + cut as u64, &terms, prg, modulus)
        .unwrap();
    assert_same(&format!("slices cut at {cut}"), &pieces, &whole);
}

fn expand_matches_spec<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for len in SMALL_LENGTHS {
        let modulus = Modulus::new(rng.pick(&BITS)).unwrap();
        let prg = rng.pick(&Prg::ALL);
        let off = offset(&mut rng);
        let seed = rng.seed_bytes();
        let mask = support::mask_of(modulus);
        let want: Vec<u32> = spec_stream(seed, prg, off, len)
            .iter()
            .map(|w| w & mask)
            .collect();
        let mut got = vec![0xdead_beef; len];
        e.expand(&Seed::from_bytes(seed), prg, off, &mut got, modulus)
            .unwrap();
        assert_same(
            &format!("expand len {len} offset {off} {prg} mod {modulus}"),
            &got,
            &want,
        );
    }
}

fn add_matches_reference<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for len in SMALL_LENGTHS.into_iter().chain([1_000_003]) {
        let modulus = Modulus::new(rng.pick(&BITS)).unwrap();
        let mask = support::mask_of(modulus);
        let a = rng.vec(len);
        let b = rng.vec(len);
        let want: Vec<u32> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| x.wrapping_add(*y) & mask)
            .collect();
        let mut got = a.clone();
        e.add(&mut got, &b, modulus).unwrap();
        assert_same(&format!("add len {len} mod {modulus}"), &got, &want);
    }
}

fn rejects_bad_arguments<E: Backend>(e: &E, _test: &str) {
    let m = Modulus::U32;
    let mut acc = vec![0u32; 10];
    assert!(matches!(
        e.add(&mut acc, &[0u32; 9], m),
        Err(EngineError::LengthMismatch { acc: 10, input: 9 })
    ));
    let wide = Modulus::new(33).unwrap();
    assert!(matches!(
        e.add(&mut acc, &[0u32; 10], wide),
        Err(EngineError::ModulusTooWide {
            bits: 33,
            lane_bits: 32
        })
    ));
    assert!(matches!(
        e.apply_masks(&mut acc, u64::MAX - 3, &[], Prg::ChaCha20, m),
        Err(EngineError::OffsetOverflow { .. })
    ));
    let seed = Seed::from_bytes([1; 32]);
    assert!(matches!(
        e.expand(&seed, Prg::ChaCha8, u64::MAX, &mut acc, m),
        Err(EngineError::OffsetOverflow { .. })
    ));
    let mut odd = vec![0u32; 17];
    assert!(matches!(
        e.keystream_blocks(&seed, Prg::ChaCha20, StreamPos::default(), &mut odd),
        Err(EngineError::PartialBlock { len: 17 })
    ));
    // Nothing was written by the rejected calls.
    assert!(acc.iter().all(|&a| a == 0));
}

/// A vector longer than lavapipe's 128 MiB storage binding (32 Mi u32), so the GPU engine
/// must chunk it; masks and addition both checked against the reference.
fn above_32m_elements<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    let len = (32 << 20) + 4097;
    let modulus = Modulus::new(rng.pick(&BITS)).unwrap();
    let off = offset(&mut rng);
    let acc = rng.vec(len);
    let (terms, raw) = rng.terms(2);
    let want = reference_apply(&acc, off, &raw, Prg::ChaCha20, modulus);
    let mut got = acc.clone();
    e.apply_masks(&mut got, off, &terms, Prg::ChaCha20, modulus)
        .unwrap();
    assert_same("apply_masks above 32M", &got, &want);
    let input = rng.vec(len);
    let mask = support::mask_of(modulus);
    let want: Vec<u32> = got
        .iter()
        .zip(&input)
        .map(|(x, y)| x.wrapping_add(*y) & mask)
        .collect();
    e.add(&mut got, &input, modulus).unwrap();
    assert_same("add above 32M", &got, &want);
}

/// The same random job on this engine and on the CPU engine gives identical words.
fn equals_cpu_bit_for_bit<E: Backend>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    let cpu = CpuEngine::new();
    for _ in 0..4 {
        let len = 1 + rng.below(300_000) as usize;
        let modulus = Modulus::new(rng.pick(&BITS)).unwrap();
        let prg = rng.pick(&Prg::ALL);
        let off = offset(&mut rng);
        let acc = rng.vec(len);
        let n_terms = 1 + rng.below(50) as usize;
        let (terms, _) = rng.terms(n_terms);
        let mut on_cpu = acc.clone();
        cpu.apply_masks(&mut on_cpu, off, &terms, prg, modulus)
            .unwrap();
        let mut here = acc;
        e.apply_masks(&mut here, off, &terms, prg, modulus).unwrap();
        assert_same(&format!("{} vs cpu", e.describe()), &here, &on_cpu);
    }
}

// ---- The engine-owned accumulator (`Accumulate`) -------------------------------------------

const PACKED_BITS: [u32; 6] = [1, 7, 17, 26, 31, 32];

/// Adds uploads into a reference vector and into the engine's accumulator: whole uploads at
/// offsets that are not multiples of 16, uploads split into chunks (each packed on its own,
/// as the wire carries them) whose boundaries fall inside packed words, and one unpacked
/// upload (`add_words`).
fn accumulator_add_packed<E: Accumulate>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for bits in PACKED_BITS {
        let modulus = Modulus::new(bits).unwrap();
        let mask = mask_of(modulus);
        let len = 4096 + 1000 + rng.below(3000) as usize;
        let mut want = vec![0u32; len];
        let mut acc = e.accumulator(len, modulus).unwrap();
        for upload in 0..6 {
            let (offset, count) = rng.upload_span(len, upload);
            let values: Vec<u32> = rng.vec(count).into_iter().map(|v| v & mask).collect();
            for (w, v) in want[offset..offset + count].iter_mut().zip(&values) {
                *w = w.wrapping_add(*v) & mask;
            }
            if upload == 4 {
                e.add_words(&mut acc, offset, &values).unwrap();
            } else if upload % 2 == 0 {
                e.add_packed(&mut acc, offset, &pack_bits(&values, bits), count)
                    .unwrap();
            } else {
                // Chunks of 1, 3, 11, … elements: at b = 7, 17, 26, 31 their ends land inside
                // the words of the whole upload's stream.
                let mut done = 0;
                let mut step = 1;
                while done < count {
                    let n = step.min(count - done);
                    let part = &values[done..done + n];
                    e.add_packed(&mut acc, offset + done, &pack_bits(part, bits), n)
                        .unwrap();
                    done += n;
                    step = step * 3 + 2;
                }
            }
        }
        let mut got = vec![0u32; len];
        e.read_out(&acc, &mut got).unwrap();
        assert_eq!(e.accumulator_len(&acc), len);
        assert_same(
            &format!("add_packed b = {bits}, {len} elements"),
            &got,
            &want,
        );
        // The consuming read-out gives the same elements.
        let words = e.read_out_owned(acc).unwrap();
        assert_same(&format!("read_out_owned b = {bits}"), &words, &want);
    }
}

/// The mask pass in place over ranges of an accumulator equals the spec on the same slice.
/// Uploads as runs handed over together (`add_packed_runs`): runs of whole words that an
/// engine may join, ragged runs (3, 11, 37 elements: their bits end inside a word) that must
/// not be joined to what follows, and runs that jump (not consecutive), against the
/// reference sum.
fn accumulator_add_packed_runs<E: Accumulate>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for bits in PACKED_BITS {
        let modulus = Modulus::new(bits).unwrap();
        let mask = mask_of(modulus);
        let len = 20_000 + rng.below(5000) as usize;
        let mut want = vec![0u32; len];
        let mut acc = e.accumulator(len, modulus).unwrap();
        for upload in 0..4 {
            // Run sizes: multiples of 32 (joinable at any b) mixed with ragged ones.
            let mut runs: Vec<(usize, Vec<u8>, usize)> = Vec::new();
            let mut at = if upload == 0 {
                0
            } else {
                rng.below(100) as usize
            };
            while at < len {
                let n = match rng.below(6) {
                    0 => 3,
                    1 => 11,
                    2 => 37,
                    3 => 4096,
                    _ => 32 * (1 + rng.below(64) as usize),
                }
                .min(len - at);
                let values: Vec<u32> = rng.vec(n).into_iter().map(|v| v & mask).collect();
                for (w, v) in want[at..at + n].iter_mut().zip(&values) {
                    *w = w.wrapping_add(*v) & mask;
                }
                runs.push((at, pack_bits(&values, bits), n));
                // Now and then a jump: the next run does not continue this one.
                at += n + if rng.below(8) == 0 {
                    1 + rng.below(50) as usize
                } else {
                    0
                };
            }
            e.add_packed_runs(&mut acc, &as_runs(&runs)).unwrap();
        }
        let mut got = vec![0u32; len];
        e.read_out(&acc, &mut got).unwrap();
        assert_same(
            &format!("add_packed_runs b = {bits}, {len} elements"),
            &got,
            &want,
        );
        // A run whose bytes do not match its count is refused.
        let bad = [(0usize, &[0u8; 3][..], 64usize)];
        assert!(e.add_packed_runs(&mut acc, &bad).is_err());
    }
}

fn accumulator_mask_range<E: Accumulate>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    for bits in PACKED_BITS {
        let modulus = Modulus::new(bits).unwrap();
        let mask = mask_of(modulus);
        let prg = rng.pick(&Prg::ALL);
        let len = 5000 + rng.below(4000) as usize;
        let values: Vec<u32> = rng.vec(len).into_iter().map(|v| v & mask).collect();
        let mut acc = e.accumulator(len, modulus).unwrap();
        e.add_packed(&mut acc, 0, &pack_bits(&values, bits), len)
            .unwrap();
        let mut want = values;
        for _ in 0..3 {
            let start = rng.below(len as u64 / 2) as usize | 1;
            let n = 1 + rng.below((len - start) as u64) as usize;
            let off = offset(&mut rng);
            let n_terms = 1 + rng.below(30) as usize;
            let (terms, raw) = rng.terms(n_terms);
            let slice = reference_apply(&want[start..start + n], off, &raw, prg, modulus);
            want[start..start + n].copy_from_slice(&slice);
            e.mask_range(&mut acc, start, n, off, &terms, prg).unwrap();
        }
        let mut got = vec![0u32; len];
        e.read_out(&acc, &mut got).unwrap();
        assert_same(&format!("mask_range b = {bits} {prg}"), &got, &want);
    }
}

/// The mask pass in place (the server's unmasking job) with as many terms as
/// [`apply_masks_thousands_of_terms`]: each PRG on either side of its single-pass edge, over
/// a range that starts inside a 16-word block.
fn accumulator_mask_range_thousands_of_terms<E: Accumulate>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    let modulus = Modulus::new(26).unwrap();
    let mask = mask_of(modulus);
    let len = 40;
    for (prg, edges) in PASS_EDGES {
        for n_terms in edges {
            let values: Vec<u32> = rng.vec(len).into_iter().map(|v| v & mask).collect();
            let mut acc = e.accumulator(len, modulus).unwrap();
            e.add_words(&mut acc, 0, &values).unwrap();
            let (start, n) = (3, 33);
            let off = offset(&mut rng);
            let (terms, raw) = rng.terms(n_terms);
            let mut want = values;
            let slice = reference_apply(&want[start..start + n], off, &raw, prg, modulus);
            want[start..start + n].copy_from_slice(&slice);
            e.mask_range(&mut acc, start, n, off, &terms, prg).unwrap();
            let mut got = vec![0u32; len];
            e.read_out(&acc, &mut got).unwrap();
            assert_same(
                &format!("mask_range offset {off} terms {n_terms} {prg}"),
                &got,
                &want,
            );
        }
    }
}

fn accumulator_rejects_bad_arguments<E: Accumulate>(e: &E, _test: &str) {
    let modulus = Modulus::new(17).unwrap();
    let mut acc = e.accumulator(100, modulus).unwrap();
    assert!(matches!(
        e.add_packed(&mut acc, 90, &[0u8; 30], 11),
        Err(EngineError::OutOfRange { .. })
    ));
    assert!(matches!(
        e.add_packed(&mut acc, 0, &[0u8; 5], 3),
        Err(EngineError::PackedLength { .. })
    ));
    assert!(matches!(
        e.add_words(&mut acc, 99, &[1, 2]),
        Err(EngineError::OutOfRange { .. })
    ));
    assert!(matches!(
        e.mask_range(&mut acc, 50, 51, 0, &[], Prg::ChaCha20),
        Err(EngineError::OutOfRange { .. })
    ));
    let mut short = vec![0u32; 99];
    assert!(matches!(
        e.read_out(&acc, &mut short),
        Err(EngineError::LengthMismatch { .. })
    ));
    // Moduli above 2^32 take `u64` lanes (tests/wide.rs): their accumulators refuse `u32`
    // words, in and out, and touch nothing.
    let mut wide = e.accumulator(10, Modulus::new(33).unwrap()).unwrap();
    assert!(matches!(
        e.add_words(&mut wide, 0, &[1]),
        Err(EngineError::ModulusTooWide {
            bits: 33,
            lane_bits: 32
        })
    ));
    assert!(matches!(
        e.read_out(&wide, &mut [0u32; 10]),
        Err(EngineError::ModulusTooWide {
            bits: 33,
            lane_bits: 32
        })
    ));
    assert_eq!(e.read_out_owned_lanes::<u64>(wide).unwrap(), [0; 10]);
}

/// A server's round in miniature at the default chunk size and beyond (the GPU engine's
/// 16 Mi-element chunks): two uploads across the chunk boundary, a mask pass over all,
/// checked against the reference at both ends and around the boundary.
fn accumulator_across_default_chunks<E: Accumulate>(e: &E, test: &str) {
    let mut rng = Inputs::new(test);
    let bits = 26;
    let modulus = Modulus::new(bits).unwrap();
    let mask = mask_of(modulus);
    let len = (16 << 20) + 4099;
    let mut want = vec![0u32; len];
    let mut acc = e.accumulator(len, modulus).unwrap();
    for _ in 0..2 {
        let values: Vec<u32> = rng.vec(len).into_iter().map(|v| v & mask).collect();
        for (w, v) in want.iter_mut().zip(&values) {
            *w = w.wrapping_add(*v) & mask;
        }
        e.add_packed(&mut acc, 0, &pack_bits(&values, bits), len)
            .unwrap();
    }
    let (terms, raw) = rng.terms(3);
    let off = offset(&mut rng);
    let mut got = vec![0u32; len];
    e.mask_range(&mut acc, 0, len, off, &terms, Prg::ChaCha20)
        .unwrap();
    e.read_out(&acc, &mut got).unwrap();
    for (a, b) in [
        (0, 5000),
        ((16 << 20) - 3000, (16 << 20) + 3000),
        (len - 5000, len),
    ] {
        let slice = reference_apply(&want[a..b], off + a as u64, &raw, Prg::ChaCha20, modulus);
        assert_same(&format!("elements {a}..{b}"), &got[a..b], &slice);
    }
}

macro_rules! conformance {
    ($module:ident, $engine:expr) => {
        mod $module {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[test]
                    fn $name() {
                        let test = concat!(stringify!($module), "::", stringify!($name));
                        let Some(engine) = $engine(test) else { return };
                        super::$name(&engine, test);
                    }
                };
                ($name:ident, release) => {
                    #[test]
                    #[cfg_attr(debug_assertions, ignore = "large: runs in the release test run")]
                    fn $name() {
                        let test = concat!(stringify!($module), "::", stringify!($name));
                        let Some(engine) = $engine(test) else { return };
                        super::$name(&engine, test);
                    }
                };
            }

            case!(apply_masks_small);
            case!(apply_masks_no_terms_reduces);
            case!(apply_masks_million);
            case!(apply_masks_thousands_of_terms);
            case!(apply_masks_slices_compose);
            case!(expand_matches_spec);
            case!(add_matches_reference);
            case!(rejects_bad_arguments);
            case!(equals_cpu_bit_for_bit);
            case!(above_32m_elements, release);
            case!(accumulator_add_packed);
            case!(accumulator_add_packed_runs);
            case!(accumulator_mask_range);
            case!(accumulator_mask_range_thousands_of_terms);
            case!(accumulator_rejects_bad_arguments);
            case!(accumulator_across_default_chunks, release);
            case!(wide_apply_masks_match_spec);
            case!(wide_known_answers);
            case!(wide_expand_matches_both_references);
            case!(wide_add_matches_reference);
            case!(wide_slices_compose);
            case!(wide_equals_cpu_bit_for_bit);
            case!(wide_lanes_are_checked);
            case!(wide_accumulator_round);
            case!(wide_thousands_of_terms);
        }
    };
}

fn cpu(_: &str) -> Option<CpuEngine> {
    Some(CpuEngine::new())
}

fn cpu_one_thread(_: &str) -> Option<CpuEngine> {
    Some(CpuEngine::with_threads(1).unwrap())
}

fn gpu(test: &str) -> Option<&'static secagg_engine::GpuEngine> {
    secagg_engine::testing::shared_gpu(test)
}

/// Chunks of 4096 elements and at most 3 workgroups per dimension: every vector above 4 KiB
/// crosses chunk boundaries with two chunks in flight, and every chunk needs a 2-D grid.
fn gpu_chunked(test: &str) -> Option<secagg_engine::GpuEngine> {
    secagg_engine::testing::gpu_or_skip(
        test,
        secagg_engine::GpuOptions {
            chunk_elems: Some(4096),
            max_workgroups_per_dim: Some(3),
        },
    )
}

/// Three CPU shards of uneven size (1 : 3 : 2).
fn sharded_cpu(test: &str) -> Option<secagg_engine::Sharded<secagg_engine::Engine>> {
    secagg_engine::testing::sharded_or_skip(test, &[Device::Cpu; 3], &[1, 3, 2])
}

/// A GPU shard and a CPU shard, the GPU's range twice the CPU's.
fn sharded_gpu_cpu(test: &str) -> Option<secagg_engine::Sharded<secagg_engine::Engine>> {
    secagg_engine::testing::sharded_or_skip(test, &[Device::Gpu, Device::Cpu], &[2, 1])
}

/// Two GPU engines (two devices on one adapter where there is only one, as with lavapipe).
fn sharded_gpu_gpu(test: &str) -> Option<secagg_engine::Sharded<secagg_engine::Engine>> {
    secagg_engine::testing::sharded_or_skip(test, &[Device::Gpu, Device::Gpu], &[1, 1])
}

conformance!(cpu, cpu);
conformance!(cpu_single_thread, cpu_one_thread);
conformance!(gpu, gpu);
conformance!(gpu_chunked, gpu_chunked);
conformance!(sharded_cpu, sharded_cpu);
conformance!(sharded_gpu_cpu, sharded_gpu_cpu);
conformance!(sharded_gpu_gpu, sharded_gpu_gpu);
