//! Distributed DP on the client, one thread: the Skellam sampler's rate at the noise
//! variances a round uses, and a client's whole DP encoding (rotate, clip, scale, round,
//! noise) of 10^6 parameters, and of 10^8 with `SECAGG_BENCH_DP_1E8=1` (about 1.2 GiB), next
//! to the masking it adds to (the fused pass of 21 masks: 20 neighbours and the self mask).
//!
//! `cargo bench --bench dp`; a filter narrows it, e.g. `cargo bench --bench dp -- skellam`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand_core::{Rng, SeedableRng};
use secagg_engine::{Backend, CpuEngine, MaskTerm, Modulus, Prg, Seed};
use secagg_host::RoundRng;
use secagg_host::dp::skellam::Skellam;
use secagg_host::dp::{DpConfig, DpRound};

/// Draws per measured batch.
const BATCH: usize = 1 << 20;

fn sampler(c: &mut Criterion) {
    let mut g = c.benchmark_group("skellam");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(4));
    g.sample_size(10);
    for variance in [10.0, 1.0e4, 1.0e6, 1.0e8, 4.0e9] {
        let noise = Skellam::new(variance).unwrap();
        let mut rng = RoundRng::from_seed([7; 32]);
        let mut out = vec![0u32; BATCH];
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("var{variance:e}")),
            &variance,
            |b, _| b.iter(|| noise.add_to(&mut rng, &mut out, u32::MAX)),
        );
    }
    g.finish();
}

/// A setting like the planner's for ε = 1 over 100 clients (b = 18 at 10^6 parameters).
fn setting() -> DpConfig {
    DpConfig {
        clip: 1.0,
        scale: 1374.0,
        noise: 3.4e6,
        honest: 13,
        beta: (-0.5f64).exp(),
    }
}

fn client(c: &mut Criterion) {
    let mut sizes = vec![1_000_000usize];
    if std::env::var_os("SECAGG_BENCH_DP_1E8").is_some() {
        sizes.push(100_000_000);
    }
    let mut g = c.benchmark_group("client_1t");
    g.sample_size(10);
    let cpu1 = CpuEngine::with_threads(1).unwrap();
    for d in sizes {
        g.measurement_time(Duration::from_secs(if d > 10_000_000 { 60 } else { 8 }));
        g.throughput(Throughput::Elements(d as u64));
        let round = DpRound::new(setting(), d, 32, 1, [3; 32]);
        let mut rng = RoundRng::from_seed([5; 32]);
        let update: Vec<f32> = (0..d)
            .map(|_| (rng.next_u32() as f32 / u32::MAX as f32 - 0.5) * 1e-3)
            .collect();
        let mut out = Vec::with_capacity(d + 1);
        g.bench_function(BenchmarkId::new("dp_encode", d), |b| {
            b.iter(|| round.encode_into(&update, 1, &mut rng, &mut out).unwrap())
        });
        let mut buf = update.clone();
        g.bench_function(BenchmarkId::new("rotate", d), |b| {
            b.iter(|| round.rotation().forward(&mut buf))
        });
        drop(buf);
        let noise = Skellam::new(setting().noise).unwrap();
        g.bench_function(BenchmarkId::new("noise", d), |b| {
            b.iter(|| noise.add_to(&mut rng, &mut out[..d], u32::MAX))
        });
        // What the client does anyway: 21 keystreams added over the vector.
        let terms: Vec<MaskTerm> = (0..21u8)
            .map(|i| MaskTerm::plus(Seed::from_bytes([i; 32])))
            .collect();
        let mut acc = vec![0u32; d + 1];
        g.bench_function(BenchmarkId::new("masks_21", d), |b| {
            b.iter(|| {
                cpu1.apply_masks(&mut acc, 0, &terms, Prg::ChaCha20, Modulus::U32)
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, sampler, client);
criterion_main!(benches);
