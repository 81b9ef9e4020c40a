//! Thousands of mask terms on GPU engines whose terms buffer is fresh or has been regrown:
//! the reproducer of the wrong sums the GPU engine returned on lavapipe from 5,462 ChaCha20
//! terms on (issue 17, item 7). Each PRG is tried on either side of the edge where one
//! pass of the mask kernel stops being exact on llvmpipe (`PASS_EDGES`), against the CPU
//! engine bit for bit. With `SECAGG_REQUIRE_GPU=1` a missing adapter fails the tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use secagg_engine::{Backend, CpuEngine, GpuEngine, GpuOptions, Modulus, Prg};
use support::{Inputs, PASS_EDGES, assert_same};

/// `n_terms` random terms applied to 33 random elements at a random offset, on `gpu` and on
/// the CPU engine.
fn same_as_cpu(gpu: &GpuEngine, rng: &mut Inputs, n_terms: usize, prg: Prg, what: &str) {
    let modulus = Modulus::new(32 - rng.below(8) as u32).unwrap();
    let off = rng.below(1 << 40);
    let acc = rng.vec(33);
    let (terms, _) = rng.terms(n_terms);
    let mut want = acc.clone();
    CpuEngine::new()
        .apply_masks(&mut want, off, &terms, prg, modulus)
        .unwrap();
    let mut got = acc;
    gpu.apply_masks(&mut got, off, &terms, prg, modulus)
        .unwrap();
    assert_same(
        &format!("{what}: {n_terms} terms {prg} offset {off} mod {modulus}"),
        &got,
        &want,
    );
}

fn fresh(test: &str) -> Option<GpuEngine> {
    secagg_engine::testing::gpu_or_skip(test, GpuOptions::default())
}

/// A fresh engine's first call has more terms than one pass takes on llvmpipe: its terms
/// buffer is created at that size (512 KiB for 5462 ChaCha20 terms), never regrown.
#[test]
fn fresh_engine_above_the_edge() {
    let test = "fresh_engine_above_the_edge";
    let mut rng = Inputs::new(test);
    for (prg, [_, above]) in PASS_EDGES {
        let Some(gpu) = fresh(test) else { return };
        same_as_cpu(&gpu, &mut rng, above, prg, "fresh engine");
    }
}

/// One engine whose terms buffer grows call by call: 64 bytes (one term), 256 KiB (5461 terms
/// of 48 bytes fill 262,128), regrown to 512 KiB (5462), then to 4 MiB; every PRG on both
/// sides of its edge.
#[test]
fn regrown_terms_buffer() {
    let test = "regrown_terms_buffer";
    let Some(gpu) = fresh(test) else { return };
    let mut rng = Inputs::new(test);
    same_as_cpu(&gpu, &mut rng, 1, Prg::ChaCha20, "regrown");
    for (prg, edges) in PASS_EDGES {
        for n_terms in edges {
            same_as_cpu(&gpu, &mut rng, n_terms, prg, "regrown");
        }
    }
    // And back down: a small job after the big ones reads only its own terms.
    same_as_cpu(&gpu, &mut rng, 3, Prg::ChaCha20, "after regrowth");
}
